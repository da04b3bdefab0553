/* vub-img: describe a raw or qcow2 image, or copy its disk to a raw file.
 *
 *   vub-img info    [options] IMAGE
 *   vub-img convert [options] IMAGE OUT.raw
 *
 * Every byte of the disk goes through the vub image layer. convert writes a
 * sparse file: it asks vub_image_block_status() where the zero runs are and
 * skips them, skips all-zero blocks in what it reads, then sets the size.
 * It never overwrites its own input: an output that is the image or any
 * file of its backing chain (by device and inode) is refused, and the copy
 * goes to a temporary file renamed over OUT.raw only once it is complete
 * and on disk.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vub.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#define CHUNK_BYTES (1u << 20)           /* one read */
#define BLOCK_BYTES 4096u                /* the unit of "all zero, skip it" */
#define STATUS_BYTES (UINT64_C(1) << 30) /* one block-status question */

static const char usage[] =
    "usage: vub-img info [options] IMAGE\n"
    "       vub-img convert [options] IMAGE OUT.raw\n"
    "options:\n"
    "  --snapshot NAME        read this internal snapshot (id or name) of a qcow2 image\n"
    "  --allow-data-file      follow the external data file a qcow2 image names\n"
    "  --backing-format FMT   raw|qcow2: format of a backing file whose format is not recorded\n"
    "  --format FMT           raw|qcow2: the image's format (default: detected); raw takes\n"
    "                         any file, also one that looks like another format, as it is\n"
    "  -U, --force-share      read an image another process is writing (like qemu-img -U)\n"
    "  --help                 this text\n";

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "vub-img: %s: %s\n", what, why);
    return 1;
}

static void print_info(const char *path, const struct vub_image *img)
{
    struct vub_image_info in;
    vub_image_info(img, &in);
    printf("image: %s\nformat: %s\nvirtual size: %llu bytes\nfile size: %llu bytes\n", path,
           in.format == VUB_FORMAT_QCOW2 ? "qcow2" : "raw", (unsigned long long)in.size_bytes,
           (unsigned long long)in.file_bytes);
    if (in.format != VUB_FORMAT_QCOW2)
        return;
    printf("cluster size: %u\nversion: %u\nrefcount bits: %u\ncompression: %s\nfeatures: %s\n",
           1u << in.cluster_bits, in.version, in.refcount_bits, in.compression,
           in.features[0] ? in.features : "(none)");
    if (in.data_file)
        printf("data file: %s\n", in.data_file);
    printf("snapshots: %u\n", in.snapshot_count);
    for (uint32_t i = 0; i < in.snapshot_count; i++) {
        struct vub_image_snapshot s;
        if (vub_image_snapshot(img, i, &s) != VUB_OK) {
            printf("  %u: (unreadable)\n", i);
            continue;
        }
        time_t t = (time_t)s.date_sec;
        char date[32] = "?";
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
        printf("%s id %s name %s size %llu vm-state %llu date %s vm-clock %llu.%09llu\n",
               (int32_t)i == in.snapshot_index ? "* (reading)" : " ", s.id, s.name,
               (unsigned long long)s.size_bytes, (unsigned long long)s.vm_state_bytes, date,
               (unsigned long long)(s.vm_clock_nsec / 1000000000u),
               (unsigned long long)(s.vm_clock_nsec % 1000000000u));
    }
    for (unsigned depth = 1; in.backing; depth++) {
        printf("backing file %u: %s (recorded as \"%s\", format %s)\n", depth, in.backing_path,
               in.backing_name, in.backing_format);
        const struct vub_image *b = in.backing;
        vub_image_info(b, &in);
        printf("  format %s, virtual size %llu bytes\n", in.format == VUB_FORMAT_QCOW2 ? "qcow2" : "raw",
               (unsigned long long)in.size_bytes);
    }
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Writes the non-zero blocks of buf[0..n) to out at off. */
static bool write_sparse(int out, const uint8_t *buf, size_t n, uint64_t off)
{
    for (size_t at = 0; at < n;) {
        size_t len = n - at < BLOCK_BYTES ? n - at : BLOCK_BYTES;
        if (all_zero(buf + at, len)) {
            at += len;
            continue;
        }
        size_t end = at + len; /* grow the run over the following non-zero blocks */
        while (end < n) {
            size_t next = n - end < BLOCK_BYTES ? n - end : BLOCK_BYTES;
            if (all_zero(buf + end, next))
                break;
            end += next;
        }
        for (size_t w = at; w < end;) {
            ssize_t r = pwrite(out, buf + w, end - w, (off_t)(off + w));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return false;
            w += (size_t)r;
        }
        at = end;
    }
    return true;
}

/* Refuses an existing output that the image reads, or that is not a
 * regular file (a rename would replace a device node, not fill it). */
static int check_output(const struct vub_image *img, const char *out_path)
{
    int fd = open(out_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 0 : fail(out_path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (vub_image_uses_file(img, fd))
        rc = fail(out_path, "is the image itself or a file of its backing chain; "
                            "choose another output, or it would be overwritten");
    else if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = fail(out_path, "exists and is not a regular file; convert writes regular files only");
    close(fd);
    return rc;
}

/* A temporary file beside out_path, with the mode a new file would get. */
static int create_temp(const char *out_path, char **tmp_path)
{
    if (asprintf(tmp_path, "%s.vub-XXXXXX", out_path) < 0)
        return -1;
    int fd = mkostemp(*tmp_path, O_CLOEXEC);
    if (fd < 0) {
        free(*tmp_path);
        *tmp_path = NULL;
        return -1;
    }
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    return fd;
}

static int convert(const char *path, struct vub_image *img, const char *out_path)
{
    if (check_output(img, out_path) != 0)
        return 1;
    uint64_t size = vub_image_size(img);
    uint8_t *buf = malloc(CHUNK_BYTES);
    char *tmp_path = NULL;
    int out = buf ? create_temp(out_path, &tmp_path) : -1;
    if (out < 0) {
        free(buf);
        return fail(out_path, strerror(errno));
    }
    int rc = 0;
    for (uint64_t off = 0; off < size && rc == 0;) {
        uint64_t run;
        bool zero;
        enum vub_err err = vub_image_block_status(img, off, size - off < STATUS_BYTES ? size - off : STATUS_BYTES,
                                                  &run, &zero);
        if (err != VUB_OK) {
            rc = fail(path, vub_image_why(img)[0] ? vub_image_why(img) : vub_strerror(err));
            break;
        }
        for (uint64_t done = 0; !zero && done < run && rc == 0;) {
            size_t n = run - done < CHUNK_BYTES ? (size_t)(run - done) : CHUNK_BYTES;
            struct iovec iov = {buf, n};
            err = vub_image_readv(img, off + done, &iov, 1);
            if (err != VUB_OK)
                rc = fail(path, vub_image_why(img)[0] ? vub_image_why(img) : vub_strerror(err));
            else if (!write_sparse(out, buf, n, off + done))
                rc = fail(out_path, strerror(errno));
            done += n;
        }
        off += run;
    }
    /* Durable before it replaces anything: a crash leaves the old OUT.raw. */
    if (rc == 0 && (ftruncate(out, (off_t)size) != 0 || fdatasync(out) != 0))
        rc = fail(tmp_path, strerror(errno));
    if (close(out) != 0 && rc == 0)
        rc = fail(tmp_path, strerror(errno));
    if (rc == 0 && rename(tmp_path, out_path) != 0)
        rc = fail(out_path, strerror(errno));
    if (rc != 0)
        unlink(tmp_path);
    free(tmp_path);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    struct vub_image_opts opts = {.read_only = true};
    const char *args[3];
    int nargs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--allow-data-file") == 0) {
            opts.allow_data_file = true;
        } else if (strcmp(a, "--force-share") == 0 || strcmp(a, "-U") == 0) {
            opts.force_share = true;
        } else if (strcmp(a, "--snapshot") == 0 && i + 1 < argc) {
            opts.snapshot = argv[++i];
        } else if ((strcmp(a, "--backing-format") == 0 || strcmp(a, "--format") == 0) && i + 1 < argc) {
            const char *f = argv[++i];
            if (strcmp(f, "raw") != 0 && strcmp(f, "qcow2") != 0) {
                fprintf(stderr, "vub-img: %s wants raw or qcow2, not '%s'\n", a, f);
                return 2;
            }
            enum vub_format fmt = strcmp(f, "raw") == 0 ? VUB_FORMAT_RAW : VUB_FORMAT_QCOW2;
            *(strcmp(a, "--format") == 0 ? &opts.format : &opts.backing_format) = fmt;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "vub-img: unknown option %s (try --help)\n", a);
            return 2;
        } else if (nargs < 3) {
            args[nargs++] = a;
        } else {
            fprintf(stderr, "vub-img: too many arguments (try --help)\n");
            return 2;
        }
    }
    bool info = nargs == 2 && strcmp(args[0], "info") == 0;
    bool conv = nargs == 3 && strcmp(args[0], "convert") == 0;
    if (!info && !conv) {
        fprintf(stderr, "vub-img: expected info IMAGE or convert IMAGE OUT.raw (try --help)\n");
        return 2;
    }
    struct vub_image *img;
    char why[512] = "";
    enum vub_err err = vub_image_open(&img, args[1], &opts, why, sizeof why);
    if (err != VUB_OK) {
        fprintf(stderr, "vub-img: %s\n", why[0] ? why : vub_strerror(err));
        return 1;
    }
    int rc = 0;
    if (opts.snapshot && vub_image_format(img) != VUB_FORMAT_QCOW2)
        rc = fail(args[1], "--snapshot needs a qcow2 image");
    else if (info)
        print_info(args[1], img);
    else
        rc = convert(args[1], img, args[2]);
    vub_image_close(img);
    return rc;
}
