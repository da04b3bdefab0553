/* tests/qcow2-readv.c - random reads through vub_image_readv() against a
 * reference raw file, for tests/test-qcow2.sh.
 *
 *   qcow2-readv IMAGE REFERENCE.raw SEED COUNT [--allow-data-file]
 *
 * Each read starts at a random byte offset, has a random length (often
 * crossing clusters and subclusters) and lands in a random list of iovecs
 * (up to 300, some empty, some one byte), so the extent merging and the
 * iovec cursor of the qcow2 reader see every kind of split. Block status
 * answers are checked too: a run said to be zero must read as zeros.
 * Then the image is opened again asking for write access: a qcow2 image is
 * read-only all the same [QCOW2-RDONLY], and every kind of write fails
 * with VUB_E_RDONLY. Prints one line and exits 1 at the first difference.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vub.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_READ (3u << 20)
#define MAX_IOV 300

static uint64_t rng_state;

static uint64_t rnd(uint64_t n) /* xorshift64*, uniform enough for tests */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return n ? (rng_state * UINT64_C(2685821657736338717)) % n : 0;
}

/* Half the reads start near data: a disk with a few written clusters is
 * mostly holes. The reference file (sparse, as qemu-img writes it) says
 * where the data is, independently of the reader under test. */
static uint64_t near_data(int ref, uint64_t off, uint64_t size)
{
    off_t data = lseek(ref, (off_t)off, SEEK_DATA);
    if (data < 0)
        data = lseek(ref, 0, SEEK_DATA);
    if (data < 0 || (uint64_t)data >= size)
        return rnd(size);
    uint64_t at = (uint64_t)data + rnd(8192), back = rnd(5000);
    at = at > back ? at - back : 0;
    return at < size ? at : rnd(size);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: qcow2-readv IMAGE REFERENCE SEED COUNT [--allow-data-file]\n");
        return 2;
    }
    struct vub_image_opts opts = {.read_only = true, .allow_data_file = argc > 5};
    struct vub_image *img;
    char why[512];
    if (vub_image_open(&img, argv[1], &opts, why, sizeof why) != VUB_OK) {
        fprintf(stderr, "qcow2-readv: %s\n", why);
        return 1;
    }
    int ref = open(argv[2], O_RDONLY);
    rng_state = strtoull(argv[3], NULL, 0) * 2 + 1;
    long count = atol(argv[4]);
    uint64_t size = vub_image_size(img);
    uint8_t *got = malloc(MAX_READ), *want = malloc(MAX_READ);
    struct iovec iov[MAX_IOV];
    if (ref < 0 || !got || !want || size == 0)
        return fprintf(stderr, "qcow2-readv: setup failed\n"), 1;
    for (long i = 0; i < count; i++) {
        uint64_t off = rnd(size);
        if (rnd(2))
            off = near_data(ref, off, size);
        uint64_t len = rnd(8) == 0 ? rnd(MAX_READ) : rnd(70000);
        if (len > size - off)
            len = size - off;
        int n = 0;
        for (uint64_t at = 0; at < len || n == 0;) {
            uint64_t piece = n == MAX_IOV - 1 ? len - at : rnd(4) == 0 ? rnd(3) : rnd(len - at + 1);
            if (piece > len - at)
                piece = len - at;
            iov[n].iov_base = got + at;
            iov[n].iov_len = (size_t)piece;
            at += piece;
            n++;
        }
        memset(got, 0xee, (size_t)len);
        if (vub_image_readv(img, off, iov, n) != VUB_OK)
            return fprintf(stderr, "qcow2-readv: read %llu+%llu: %s\n", (unsigned long long)off,
                           (unsigned long long)len, vub_image_why(img)), 1;
        ssize_t r = pread(ref, want, (size_t)len, (off_t)off);
        if (r < 0 || (uint64_t)r != len || memcmp(got, want, (size_t)len) != 0)
            return fprintf(stderr, "qcow2-readv: read %llu+%llu in %d iovecs differs\n",
                           (unsigned long long)off, (unsigned long long)len, n), 1;
        uint64_t run;
        bool zero;
        if (len > 0 && vub_image_block_status(img, off, len, &run, &zero) == VUB_OK && zero) {
            for (uint64_t k = 0; k < run; k++)
                if (want[k] != 0)
                    return fprintf(stderr, "qcow2-readv: block status calls %llu+%llu zero, it is not\n",
                                   (unsigned long long)off, (unsigned long long)run), 1;
        }
    }
    vub_image_close(img);

    opts.read_only = false;
    if (vub_image_open(&img, argv[1], &opts, why, sizeof why) != VUB_OK)
        return fprintf(stderr, "qcow2-readv: opening for writing: %s\n", why), 1;
    struct iovec one = {got, 512};
    enum vub_err w = vub_image_writev(img, 0, &one, 1), d = vub_image_discard(img, 0, 512),
                 z = vub_image_write_zeroes(img, 0, 512, false);
    bool ro = vub_image_read_only(img);
    vub_image_close(img);
    if (!ro || w != VUB_E_RDONLY || d != VUB_E_RDONLY || z != VUB_E_RDONLY)
        return fprintf(stderr, "qcow2-readv: opened writable, the image says read-only %d; write %s, discard %s, "
                       "write-zeroes %s\n", ro, vub_strerror(w), vub_strerror(d), vub_strerror(z)), 1;
    close(ref);
    free(got);
    free(want);
    return 0;
}
