/* fuzz-guard.c: what the libFuzzer targets put in front of ../vub.c.
 *
 * A target includes this file, then ../vub.c, then fuzz-bench.c. This file
 * gives ASan two things it cannot see by itself:
 *
 *  - Guest memory. The back-end maps the front-end's memfd itself
 *    (vub_sys_map), so its view of guest RAM is a plain shared mapping that
 *    ASan knows nothing about: a read one byte past a region would land in
 *    whatever the kernel put next. Here every shared file mapping vub.c
 *    makes is placed inside a PROT_NONE reservation with a 1 MiB guard on
 *    each side, and fz_poison_regions() marks, with ASan's manual
 *    poisoning, the mapped bytes that lie outside the region (the part of
 *    the first page before it and of the last page after it). An access
 *    outside a region is then a "use-after-poison" report, or a SEGV in a
 *    guard, instead of silence. Kernel accesses (preadv into guest memory)
 *    are checked by ASan's interceptors against the same poison.
 *
 *  - The image. The raw image's pread/pwrite/preadv/pwritev/fallocate are
 *    routed through wrappers that abort if a transfer leaves the exported
 *    disk ([0, vub_image_size)) of an image the target registered.
 *
 * The wrapping is done by renaming the calls in vub.c with macros, which
 * is why this file must come first: it includes every system header vub.c
 * includes, so vub.c's own #includes add nothing, and only then defines
 * the macros.
 */
#define _GNU_SOURCE /* the same definition vub.c starts with */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sanitizer/asan_interface.h>

/* A failed harness check: say what, then abort so libFuzzer keeps the input. */
static void fz_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fz_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "\n==fuzz== check failed: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* ---- guarded mappings ---- */

#define FZ_GUARD_BYTES ((size_t)1 << 20)
#define FZ_MAX_MAPS 64

struct fz_map {
    uint8_t *user;     /* what mmap returned to vub.c; NULL if the slot is free */
    size_t span;       /* the mapping, whole pages */
    uint8_t *resv;     /* the reservation: guard, mapping, guard */
    size_t resv_len;
};

static struct fz_map fz_maps[FZ_MAX_MAPS];
static pthread_mutex_t fz_maps_lock = PTHREAD_MUTEX_INITIALIZER; /* fuzz-session has two threads */

static size_t fz_page(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static size_t fz_maps_live(void)
{
    size_t n = 0;
    pthread_mutex_lock(&fz_maps_lock);
    for (unsigned i = 0; i < FZ_MAX_MAPS; i++)
        n += fz_maps[i].user != NULL;
    pthread_mutex_unlock(&fz_maps_lock);
    return n;
}

/* mmap for vub.c: a shared file mapping at an address of the kernel's
 * choosing goes between two guards; anything else goes straight through.
 * errno is kept, since vub_sys_map retries on EINVAL. */
static void *fz_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    size_t page = fz_page();
    if (addr || fd < 0 || !(flags & MAP_SHARED) || len == 0 || len > SIZE_MAX / 4)
        return mmap(addr, len, prot, flags, fd, off);
    size_t span = (len + page - 1) / page * page;
    size_t resv_len = span + 2 * FZ_GUARD_BYTES;
    uint8_t *resv = mmap(NULL, resv_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (resv == MAP_FAILED)
        return MAP_FAILED;
    void *p = mmap(resv + FZ_GUARD_BYTES, len, prot, flags | MAP_FIXED, fd, off);
    if (p == MAP_FAILED) {
        int saved = errno;
        munmap(resv, resv_len);
        errno = saved;
        return MAP_FAILED;
    }
    pthread_mutex_lock(&fz_maps_lock);
    struct fz_map *slot = NULL;
    for (unsigned i = 0; i < FZ_MAX_MAPS && !slot; i++)
        if (!fz_maps[i].user)
            slot = &fz_maps[i];
    if (!slot)
        fz_die("more than %d guest memory mappings", FZ_MAX_MAPS);
    *slot = (struct fz_map){p, span, resv, resv_len};
    pthread_mutex_unlock(&fz_maps_lock);
    return p;
}

static int fz_munmap(void *addr, size_t len)
{
    pthread_mutex_lock(&fz_maps_lock);
    for (unsigned i = 0; i < FZ_MAX_MAPS; i++) {
        struct fz_map m = fz_maps[i];
        if (m.user && m.user == addr) {
            if ((len + fz_page() - 1) / fz_page() * fz_page() != m.span)
                fz_die("munmap of %zu bytes at %p, which was mapped with %zu", len, addr, m.span);
            fz_maps[i] = (struct fz_map){0};
            pthread_mutex_unlock(&fz_maps_lock);
            ASAN_UNPOISON_MEMORY_REGION(m.user, m.span);
            return munmap(m.resv, m.resv_len);
        }
    }
    pthread_mutex_unlock(&fz_maps_lock);
    return munmap(addr, len);
}

/* Poisons the bytes of the guarded mapping around [host, host + size):
 * everything a region's mapping holds that is not the region. */
static void fz_poison_outside(const void *host, uint64_t size)
{
    const uint8_t *h = host;
    pthread_mutex_lock(&fz_maps_lock);
    for (unsigned i = 0; i < FZ_MAX_MAPS; i++) {
        struct fz_map *m = &fz_maps[i];
        if (!m->user || h < m->user || h >= m->user + m->span)
            continue;
        ASAN_POISON_MEMORY_REGION(m->user, (size_t)(h - m->user));
        if (size < (uint64_t)(m->user + m->span - h))
            ASAN_POISON_MEMORY_REGION(h + size, (size_t)(m->user + m->span - (h + size)));
        break;
    }
    pthread_mutex_unlock(&fz_maps_lock);
}

/* ---- image I/O, range-checked ---- */

#define FZ_MAX_IMAGES 4

static struct {
    int fd;
    uint64_t bytes;
} fz_images[FZ_MAX_IMAGES];
static unsigned fz_image_count;

static void fz_image_register(int fd, uint64_t bytes)
{
    if (fz_image_count == FZ_MAX_IMAGES)
        fz_die("too many images");
    fz_images[fz_image_count].fd = fd;
    fz_images[fz_image_count].bytes = bytes;
    fz_image_count++;
}

static void fz_io_check(const char *what, int fd, off_t off, uint64_t len)
{
    for (unsigned i = 0; i < fz_image_count; i++) {
        if (fz_images[i].fd != fd)
            continue;
        if (off < 0 || (uint64_t)off > fz_images[i].bytes || len > fz_images[i].bytes - (uint64_t)off)
            fz_die("%s of %llu bytes at offset %lld of a %llu-byte image", what, (unsigned long long)len,
                   (long long)off, (unsigned long long)fz_images[i].bytes);
    }
}

static uint64_t fz_iov_bytes(const struct iovec *iov, int count)
{
    uint64_t n = 0;
    for (int i = 0; i < count; i++)
        n += iov[i].iov_len;
    return n;
}

static ssize_t fz_pread(int fd, void *buf, size_t len, off_t off)
{
    fz_io_check("pread", fd, off, len);
    return pread(fd, buf, len, off);
}

static ssize_t fz_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    fz_io_check("pwrite", fd, off, len);
    return pwrite(fd, buf, len, off);
}

static ssize_t fz_preadv(int fd, const struct iovec *iov, int count, off_t off)
{
    fz_io_check("preadv", fd, off, fz_iov_bytes(iov, count));
    return preadv(fd, iov, count, off);
}

static ssize_t fz_pwritev(int fd, const struct iovec *iov, int count, off_t off)
{
    fz_io_check("pwritev", fd, off, fz_iov_bytes(iov, count));
    return pwritev(fd, iov, count, off);
}

static int fz_fallocate(int fd, int mode, off_t off, off_t len)
{
    fz_io_check("fallocate", fd, off, len < 0 ? UINT64_MAX : (uint64_t)len);
    return fallocate(fd, mode, off, len);
}

/* ---- open descriptors ---- */

/* Entries in /proc/self/fd (the directory's own fd included, every time). */
static int fz_fd_count(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        fz_die("opendir /proc/self/fd: %s", strerror(errno));
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

#define mmap fz_mmap
#define munmap fz_munmap
#define pread fz_pread
#define pwrite fz_pwrite
#define preadv fz_preadv
#define pwritev fz_pwritev
#define fallocate fz_fallocate
