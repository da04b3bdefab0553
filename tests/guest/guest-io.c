/* guest-io.c - the guest's block I/O helper for the vub guest tests.
 *
 * Busybox can copy bytes but cannot issue O_DIRECT I/O at arbitrary byte
 * offsets with a known buffer, nor the BLKZEROOUT/BLKDISCARD ioctls. This
 * small static program does exactly those things and prints SHA-256 digests
 * in lowercase hex, so the host can recompute them from the image file with
 * coreutils' sha256sum (an implementation independent of this one).
 *
 *   guest-io size    DEV               bytes in the block device
 *   guest-io write   DEV OFF LEN       O_DIRECT write of random data, then
 *                                      fdatasync; prints the data's digest
 *   guest-io read    DEV OFF LEN       O_DIRECT read; prints the digest
 *   guest-io zeroout DEV OFF LEN       BLKZEROOUT, then reads the range back
 *   guest-io discard DEV OFF LEN       BLKDISCARD, then reads the range back
 *                                      (both exit 1 unless it reads as zeros)
 *   guest-io sum     DEV               digest of the whole device (O_DIRECT)
 *   guest-io fill    FILE LEN          buffered write of random data to a
 *                                      new regular file, fsync; digest
 *   guest-io journal DEV OFF COUNT STOP
 *                                      writes journal blocks 0, 1, ... of
 *                                      512 bytes at OFF one at a time with
 *                                      O_DIRECT|O_DSYNC, printing "VUBJ N"
 *                                      once block N's write returned; ends
 *                                      after COUNT blocks or when the sector
 *                                      at STOP reads "VUBSTOP" (the host
 *                                      writes it); prints the block format's
 *                                      nonce first, "VUBJ nonce HEX"
 *
 * OFF and LEN are bytes (decimal, or 0x hex) and, for O_DIRECT, must be
 * multiples of the device's logical block size (512 on virtio-blk).
 * Build: gcc -static -O2 -o guest-io guest-io.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 20) /* I/O unit: big enough to be quick, small for RAM */
#define ALIGN 4096u      /* O_DIRECT buffer alignment that suits any device */

/* ---- SHA-256 (FIPS 180-4), written out plainly -------------------------- */

struct sha256 {
    uint32_t h[8];
    uint8_t block[64];
    size_t used;     /* bytes waiting in block */
    uint64_t total;  /* bytes hashed so far */
};

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_init(struct sha256 *s)
{
    static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memcpy(s->h, iv, sizeof iv);
    s->used = 0;
    s->total = 0;
}

/* One 64-byte block through the compression function. */
static void sha256_block(struct sha256 *s, const uint8_t *p)
{
    uint32_t w[64], v[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(v, s->h, sizeof v);
    for (int i = 0; i < 64; i++) {
        uint32_t e = v[4], a = v[0];
        uint32_t t1 = v[7] + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) +
                      ((e & v[5]) ^ (~e & v[6])) + K[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) +
                      ((a & v[1]) ^ (a & v[2]) ^ (v[1] & v[2]));
        memmove(v + 1, v, 7 * sizeof v[0]);
        v[4] += t1;
        v[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++)
        s->h[i] += v[i];
}

static void sha256_update(struct sha256 *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->total += len;
    while (len > 0) {
        size_t n = 64 - s->used < len ? 64 - s->used : len;
        memcpy(s->block + s->used, p, n);
        s->used += n;
        p += n;
        len -= n;
        if (s->used == 64) {
            sha256_block(s, s->block);
            s->used = 0;
        }
    }
}

/* Pads, finishes and writes the digest as 64 hex digits plus NUL. */
static void sha256_hex(struct sha256 *s, char out[65])
{
    uint64_t bits = s->total * 8;
    uint8_t pad[72] = { 0x80 };
    size_t padlen = (s->used < 56 ? 56 : 120) - s->used;
    for (int i = 0; i < 8; i++)
        pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, pad, padlen + 8);
    for (int i = 0; i < 8; i++)
        sprintf(out + 8 * i, "%08" PRIx32, s->h[i]);
}

/* ---- Helpers ------------------------------------------------------------- */

static void die(const char *what)
{
    fprintf(stderr, "guest-io: %s: %s\n", what, strerror(errno));
    exit(2);
}

static uint64_t num(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end || end == s) {
        fprintf(stderr, "guest-io: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

static void *aligned_buf(size_t len)
{
    void *p;
    if (posix_memalign(&p, ALIGN, len))
        die("posix_memalign");
    return p;
}

/* splitmix64: tiny, fast, good enough to make every run's data unique. */
static uint64_t rng_state;

static void rng_seed(uint64_t off)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) < 0)
        r = 0; /* early boot without entropy: the clock still varies */
    rng_state = r ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ off;
}

static void rng_fill(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        memcpy(p + i, &z, len - i < 8 ? len - i : 8);
    }
}

static int open_dev(const char *path, int flags)
{
    int fd = open(path, flags | O_DIRECT);
    if (fd < 0)
        die(path);
    return fd;
}

static void full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    ssize_t n = pwrite(fd, buf, len, (off_t)off);
    if (n < 0)
        die("pwrite");
    if ((size_t)n != len) {
        fprintf(stderr, "guest-io: short write %zd of %zu at %" PRIu64 "\n", n, len, off);
        exit(2);
    }
}

static void full_pread(int fd, void *buf, size_t len, uint64_t off)
{
    ssize_t n = pread(fd, buf, len, (off_t)off);
    if (n < 0)
        die("pread");
    if ((size_t)n != len) {
        fprintf(stderr, "guest-io: short read %zd of %zu at %" PRIu64 "\n", n, len, off);
        exit(2);
    }
}

/* ---- Commands ------------------------------------------------------------ */

static uint64_t dev_size(int fd)
{
    uint64_t size;
    if (ioctl(fd, BLKGETSIZE64, &size) < 0)
        die("BLKGETSIZE64");
    return size;
}

/* Writes LEN random bytes at OFF chunk by chunk, hashing what it writes.
 * The fdatasync makes the kernel send a FLUSH when the cache is write-back. */
static int cmd_write(const char *dev, uint64_t off, uint64_t len)
{
    int fd = open_dev(dev, O_WRONLY);
    uint8_t *buf = aligned_buf(CHUNK);
    struct sha256 s;
    char hex[65];
    sha256_init(&s);
    rng_seed(off);
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < CHUNK ? (size_t)(len - done) : CHUNK;
        rng_fill(buf, n);
        full_pwrite(fd, buf, n, off + done);
        sha256_update(&s, buf, n);
        done += n;
    }
    if (fdatasync(fd) < 0)
        die("fdatasync");
    sha256_hex(&s, hex);
    printf("%s\n", hex);
    return 0;
}

/* Hashes LEN bytes at OFF; with zeros set, also checks they are all zero. */
static int hash_range(int fd, uint64_t off, uint64_t len, int zeros)
{
    uint8_t *buf = aligned_buf(CHUNK);
    struct sha256 s;
    char hex[65];
    sha256_init(&s);
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < CHUNK ? (size_t)(len - done) : CHUNK;
        full_pread(fd, buf, n, off + done);
        for (size_t i = 0; zeros && i < n; i++) {
            if (buf[i]) {
                printf("nonzero byte at %" PRIu64 "\n", off + done + i);
                return 1;
            }
        }
        sha256_update(&s, buf, n);
        done += n;
    }
    sha256_hex(&s, hex);
    printf("%s\n", zeros ? "zero" : hex);
    return 0;
}

/* BLKZEROOUT or BLKDISCARD over a range, then proves it reads back as zeros. */
static int cmd_unmap(const char *dev, unsigned long req, uint64_t off, uint64_t len)
{
    int fd = open_dev(dev, O_RDWR);
    uint64_t range[2] = { off, len };
    if (ioctl(fd, req, range) < 0)
        die(req == BLKDISCARD ? "BLKDISCARD" : "BLKZEROOUT");
    return hash_range(fd, off, len, 1);
}

/* Creates FILE with LEN random bytes through the page cache, then fsync. */
static int cmd_fill(const char *path, uint64_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    uint8_t *buf = aligned_buf(CHUNK);
    struct sha256 s;
    char hex[65];
    if (fd < 0)
        die(path);
    sha256_init(&s);
    rng_seed(len);
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < CHUNK ? (size_t)(len - done) : CHUNK;
        rng_fill(buf, n);
        if (write(fd, buf, n) != (ssize_t)n)
            die("write");
        sha256_update(&s, buf, n);
        done += n;
    }
    if (fsync(fd) < 0 || close(fd) < 0)
        die("fsync");
    sha256_hex(&s, hex);
    printf("%s\n", hex);
    return 0;
}

/* ---- The journal: each block acknowledged only once its write returned --
 *
 * Block N (512 bytes): "VUBJRNL1", le64 N, le64 nonce, then 488 bytes of
 * splitmix64 output seeded with nonce ^ N. The host recomputes every block
 * the console says was acknowledged and finds it in the image, so a block
 * a crashed back-end acknowledged and lost shows up by number. O_DSYNC
 * makes each write durable before it returns: with a write-back cache the
 * kernel follows each with a FLUSH. */
#define JOURNAL_BLOCK 512u

static void journal_block(uint8_t *b, uint64_t n, uint64_t nonce)
{
    memcpy(b, "VUBJRNL1", 8);
    for (int i = 0; i < 8; i++) {
        b[8 + i] = (uint8_t)(n >> (8 * i));
        b[16 + i] = (uint8_t)(nonce >> (8 * i));
    }
    rng_state = nonce ^ n;
    rng_fill(b + 24, JOURNAL_BLOCK - 24);
}

static int cmd_journal(const char *dev, uint64_t off, uint64_t count, uint64_t stop_off)
{
    int fd = open_dev(dev, O_RDWR | O_DSYNC);
    uint8_t *b = aligned_buf(ALIGN), *stop = aligned_buf(ALIGN);
    uint64_t nonce;
    rng_seed(off);
    rng_fill((uint8_t *)&nonce, sizeof nonce);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("VUBJ nonce %016" PRIx64 "\n", nonce);
    for (uint64_t n = 0; n < count; n++) {
        full_pread(fd, stop, JOURNAL_BLOCK, stop_off);
        if (!memcmp(stop, "VUBSTOP", 7))
            break;
        journal_block(b, n, nonce);
        full_pwrite(fd, b, JOURNAL_BLOCK, off + n * JOURNAL_BLOCK);
        printf("VUBJ %" PRIu64 "\n", n);
    }
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: guest-io size|sum DEV\n"
                    "       guest-io write|read|zeroout|discard DEV OFF LEN\n"
                    "       guest-io fill FILE LEN\n"
                    "       guest-io journal DEV OFF COUNT STOP\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    const char *cmd = argv[1], *path = argv[2];
    if (argc == 3 && !strcmp(cmd, "size")) {
        printf("%" PRIu64 "\n", dev_size(open_dev(path, O_RDONLY)));
        return 0;
    }
    if (argc == 3 && !strcmp(cmd, "sum")) {
        int fd = open_dev(path, O_RDONLY);
        return hash_range(fd, 0, dev_size(fd), 0);
    }
    if (argc == 4 && !strcmp(cmd, "fill"))
        return cmd_fill(path, num(argv[3]));
    if (argc == 6 && !strcmp(cmd, "journal"))
        return cmd_journal(path, num(argv[3]), num(argv[4]), num(argv[5]));
    if (argc != 5)
        return usage();
    uint64_t off = num(argv[3]), len = num(argv[4]);
    if (!strcmp(cmd, "write"))
        return cmd_write(path, off, len);
    if (!strcmp(cmd, "read"))
        return hash_range(open_dev(path, O_RDONLY), off, len, 0);
    if (!strcmp(cmd, "zeroout"))
        return cmd_unmap(path, BLKZEROOUT, off, len);
    if (!strcmp(cmd, "discard"))
        return cmd_unmap(path, BLKDISCARD, off, len);
    return usage();
}
