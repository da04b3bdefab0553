/* vub-io: drive a vhost-user-blk back-end from the command line with the
 * vub front-end. Build (or `make build/vub-io`):
 *   cc -std=c11 -O2 -I. vub.c examples/vub-io.c examples/client-copy.c -o build/vub-io
 */
#define _GNU_SOURCE
#include "client-copy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (1u << 20) /* bytes per copying call */

static const char usage[] =
    "usage: vub-io --socket PATH [--queues N] [--ring auto|split|packed] [--timeout MS]\n"
    "              [--reconnect MS] [--rounds N] COMMAND\n"
    "       vub-io --help | --version\n"
    "  --queues N         queues to set up, 1..64 (default 1)\n"
    "  --timeout MS       wait this long for each reply (default 10000)\n"
    "  --reconnect MS     verify: when the back-end goes away, wait up to MS ms for\n"
    "                     it to come back on the socket and resubmit what was in flight\n"
    "  --rounds N         verify: run the whole set of passes N times (default 1);\n"
    "                     SIGTERM or SIGINT ends it after the pass under way\n"
    "commands:\n"
    "  info               features, protocol features, configuration, queues\n"
    "  read OFF LEN       disk bytes to stdout\n"
    "  write OFF          stdin to the disk (a multiple of 512 bytes)\n"
    "  dump               the whole disk to stdout\n"
    "  flush              make completed writes durable\n"
    "  discard OFF LEN    discard a range\n"
    "  zero OFF LEN       write zeroes to a range (--unmap: may deallocate)\n"
    "  id                 the disk's serial (GET_ID)\n"
    "  wait-resize MS     wait up to MS ms for the back-end to announce a new size\n"
    "                     (CONFIG_CHANGE_MSG), then write and read back the last 4 KiB\n"
    "  verify             DESTROYS DATA: write random blocks across the disk with\n"
    "                     several sizes and queue depths, read back, compare\n"
    "sizes take K, M, G or T suffixes (powers of 1024); offsets and lengths are multiples of 512;\n"
    "dump shows its progress on stderr when that is a terminal\n";

static struct vub_client *cl;
static bool ring_auto; /* --ring auto (the default): packed rings if offered */
static int reconnect_ms = -1; /* --reconnect; -1: a back-end that goes away ends the run */
static unsigned reconnects;   /* ... how many times it came back */
static volatile sig_atomic_t stop_verify; /* SIGTERM or SIGINT during verify: finish the pass */

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_verify = 1;
}

_Noreturn static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "vub-io: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    vub_client_close(cl);
    exit(1);
}

/* A mistake on the command line: one line naming it, exit status 2. */
__attribute__((format(printf, 1, 2))) _Noreturn static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vub-io: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (try --help)\n");
    va_end(ap);
    vub_client_close(cl);
    exit(2);
}

static uint64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    uint64_t v = strtoull(s, &end, 0), mul = 1;
    switch (*end) {
    case 'K': case 'k': mul = UINT64_C(1) << 10; end++; break;
    case 'M': case 'm': mul = UINT64_C(1) << 20; end++; break;
    case 'G': case 'g': mul = UINT64_C(1) << 30; end++; break;
    case 'T': case 't': mul = UINT64_C(1) << 40; end++; break;
    }
    if (errno || end == s || *end || v > UINT64_MAX / mul || *s == '-')
        usage_error("bad size '%s': a number with an optional K, M, G or T suffix", s);
    return v * mul;
}

/* Exits naming the device status (IOERR/UNSUPP) or the transport error. */
static void check(enum vub_err err, uint8_t status, struct vub_client_queue *q, const char *what,
                  uint64_t off)
{
    char buf[300], st[32];
    if (err == VUB_OK)
        return;
    if (err == VUB_E_IO || err == VUB_E_UNSUPP) /* the back-end's answer */
        snprintf(buf, sizeof buf, "%s at %" PRIu64 ": %s", what, off, copy_status_name(status, st, sizeof st));
    else
        snprintf(buf, sizeof buf, "%s at %" PRIu64 ": %s: %s%s", what, off, vub_strerror(err),
                 vub_client_queue_why(q),
                 err == VUB_E_TIMEOUT && ring_auto && vub_client_info(cl)->packed
                     ? " (--ring auto took the packed ring the back-end offered; try --ring split)"
                     : "");
    die("%s", buf);
}

static void cmd_info(void)
{
    const struct vub_client_info *in = vub_client_info(cl);
    const struct vub_client_config *c = &in->config;
    char s[1024];
    vub_features_str(in->features_offered, VUB_FEATURES_VIRTIO, s, sizeof s);
    printf("features offered:          %s\n", s);
    vub_features_str(in->features, VUB_FEATURES_VIRTIO, s, sizeof s);
    printf("features taken:            %s\n", s);
    vub_features_str(in->protocol_features_offered, VUB_FEATURES_PROTOCOL, s, sizeof s);
    printf("protocol features offered: %s\n", s);
    vub_features_str(in->protocol_features, VUB_FEATURES_PROTOCOL, s, sizeof s);
    printf("protocol features taken:   %s\n", s);
    printf("config bytes read:         %u\n", in->config_bytes);
    printf("capacity:                  %" PRIu64 " sectors (%" PRIu64 " bytes)\n", c->capacity_sectors,
           c->capacity_sectors * 512);
    printf("blk_size:                  %u\n", c->blk_size_bytes);
    printf("size_max:                  %u%s\n", c->size_max_bytes, c->size_max_bytes ? "" : " (no limit)");
    printf("seg_max:                   %u\n", c->seg_max);
    printf("topology:                  physical_block_exp %u, alignment_offset %u, min_io %u, opt_io %u\n",
           c->physical_block_exp, c->alignment_offset, c->min_io_size_blocks, c->opt_io_size_blocks);
    printf("writeback cache:           %s\n", c->writeback ? "on" : "off");
    printf("discard:                   max %u sectors, %u segments, alignment %u sectors\n",
           c->max_discard_sectors, c->max_discard_seg, c->discard_sector_alignment);
    printf("write zeroes:              max %u sectors, %u segments, may unmap %u\n",
           c->max_write_zeroes_sectors, c->max_write_zeroes_seg, c->write_zeroes_may_unmap);
    printf("queues:                    %u set up; device has %u; back-end allows %u\n", in->num_queues,
           c->num_queues, in->max_queues);
    printf("ring:                      %s, %u entries, %u data segments per request%s\n",
           in->packed ? "packed" : "split", in->queue_size, in->max_segments,
           (in->features_offered >> 34 & 1) ? "" : " (the back-end does not offer packed rings)"); /* RING_PACKED */
    if (in->max_mem_slots)
        printf("memory slots:              %" PRIu64 "\n", in->max_mem_slots);
}

/* "vub-io: dump: 45% (29 of 64 MiB)" on stderr, redrawn as the percentage changes. */
static void progress(bool on, uint64_t done, uint64_t total, int *shown)
{
    int pct = total ? (int)(done * 100 / total) : 100;
    if (!on || pct == *shown)
        return;
    *shown = pct;
    fprintf(stderr, "\rvub-io: dump: %d%% (%" PRIu64 " of %" PRIu64 " MiB)%s", pct, done >> 20, total >> 20,
            done >= total ? "\n" : "");
}

static void cmd_read(uint64_t off, uint64_t len, bool show_progress)
{
    struct vub_client_queue *q = vub_client_queue(cl, 0);
    uint8_t *buf = malloc(CHUNK), status = VUB_BLK_S_NONE;
    int shown = -1;
    if (!buf)
        die("%s", "out of memory");
    for (uint64_t done = 0; done < len; progress(show_progress, done, len, &shown)) {
        size_t n = len - done < CHUNK ? (size_t)(len - done) : CHUNK;
        enum vub_err err = copy_pread(cl, 0, buf, n, off + done, &status);
        check(err, status, q, "read", off + done);
        if (fwrite(buf, 1, n, stdout) != n)
            die("stdout: %s", strerror(errno));
        done += n;
    }
    free(buf);
}

static void cmd_write(uint64_t off)
{
    struct vub_client_queue *q = vub_client_queue(cl, 0);
    uint8_t *buf = malloc(CHUNK), status = VUB_BLK_S_NONE;
    size_t n;
    if (!buf)
        die("%s", "out of memory");
    while ((n = fread(buf, 1, CHUNK, stdin)) > 0) {
        if (n % 512 != 0)
            die("%s", "input is not a multiple of 512 bytes");
        enum vub_err err = copy_pwrite(cl, 0, buf, n, off, &status);
        check(err, status, q, "write", off);
        off += n;
    }
    free(buf);
}

/* DISCARD or WRITE_ZEROES in pieces the back-end accepts. */
static void cmd_range(enum vub_client_op op, uint64_t off, uint64_t len, bool unmap)
{
    const struct vub_client_config *c = &vub_client_info(cl)->config;
    uint64_t max = (op == VUB_CLIENT_DISCARD ? c->max_discard_sectors : c->max_write_zeroes_sectors);
    max = (max ? max : UINT32_MAX) * 512;
    for (uint64_t done = 0; done < len;) {
        uint64_t n = len - done < max ? len - done : max;
        struct vub_client_req r = {.op = op, .offset = off + done, .length = n, .unmap = unmap};
        struct vub_client_completion d;
        enum vub_err err = vub_client_run(vub_client_queue(cl, 0), &r, &d);
        check(err, d.status, vub_client_queue(cl, 0), op == VUB_CLIENT_DISCARD ? "discard" : "zero",
              off + done);
        done += n;
    }
}

/* ---- verify ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* With --reconnect, a back-end that hung up is waited for on its socket
 * and the session set up again; what was in flight goes to the new one.
 * True if so; false if err is not that or --reconnect is off. */
static bool reconnected(enum vub_err err)
{
    char why[256];
    unsigned in_flight = 0;
    if (reconnect_ms < 0 || err != VUB_E_CLOSED)
        return false;
    for (unsigned qi = 0; qi < vub_client_info(cl)->num_queues; qi++)
        in_flight += vub_client_in_flight(vub_client_queue(cl, qi));
    if (vub_client_reconnect(cl, reconnect_ms, why, sizeof why) != VUB_OK)
        die("reconnect: %s", why);
    reconnects++;
    fprintf(stderr, "vub-io: the back-end hung up; reconnected, %u requests resubmitted\n", in_flight);
    return true;
}

/* One pass: `depth` requests of `size` bytes at distinct random offsets,
 * spread over the queues, each split into `segs` buffers; write, then read
 * back and compare. Returns the number of mismatching requests. */
static unsigned verify_pass(uint64_t size, unsigned depth, unsigned segs, uint8_t *wbuf, uint8_t *rbuf)
{
    const struct vub_client_info *in = vub_client_info(cl);
    uint64_t slots = in->config.capacity_sectors * 512 / size, off[64];
    unsigned bad = 0;
    if (depth > slots)
        depth = (unsigned)slots;
    for (unsigned i = 0; i < depth; i++) {
    again:
        off[i] = rng() % slots * size;
        for (unsigned j = 0; j < i; j++)
            if (off[j] == off[i])
                goto again;
        for (uint64_t b = 0; b < size; b += 8) {
            uint64_t v = rng() ^ (off[i] + b);
            memcpy(wbuf + i * size + b, &v, 8);
        }
    }
    for (int write = 1; write >= 0; write--) {
        struct iovec iov[64][16];
        for (unsigned i = 0; i < depth; i++) {
            uint8_t *base = (write ? wbuf : rbuf) + i * size;
            for (unsigned s = 0; s < segs; s++)
                iov[i][s] = (struct iovec){base + s * (size / segs), size / segs};
            struct vub_client_req r = {.op = write ? VUB_CLIENT_WRITE : VUB_CLIENT_READ,
                                       .offset = off[i], .iov = iov[i], .iov_count = segs, .cookie = i};
            struct vub_client_queue *q = vub_client_queue(cl, i % in->num_queues);
            check(vub_client_submit(q, &r), VUB_BLK_S_NONE, q, "submit", off[i]);
        }
        for (unsigned qi = 0; qi < in->num_queues; qi++) {
            struct vub_client_queue *q = vub_client_queue(cl, qi);
            while (vub_client_in_flight(q) > 0) {
                struct vub_client_completion c[64];
                unsigned n = 0;
                check(vub_client_reap(q, c, 64, &n), VUB_BLK_S_NONE, q, "reap", 0);
                for (unsigned k = 0; k < n; k++)
                    if (c[k].status != VUB_BLK_S_OK)
                        check(VUB_E_IO, c[k].status, q, write ? "verify write" : "verify read", off[c[k].cookie]);
                enum vub_err err = n == 0 ? vub_client_wait(q, 10000) : VUB_OK;
                if (err != VUB_OK && !reconnected(err))
                    check(err, VUB_BLK_S_NONE, q, "wait", 0);
            }
        }
    }
    for (unsigned i = 0; i < depth; i++) {
        for (uint64_t b = 0; b < size; b++) {
            if (wbuf[i * size + b] != rbuf[i * size + b]) {
                fprintf(stderr, "vub-io: verify: mismatch at offset %" PRIu64 " (request of %" PRIu64
                        " bytes at %" PRIu64 ")\n", off[i] + b, size, off[i]);
                bad++;
                break;
            }
        }
    }
    return bad;
}

/* Every size, depth and segment count once; adds to *passes and *bad. */
static void verify_round(uint8_t *wbuf, uint8_t *rbuf, unsigned *passes, unsigned *bad)
{
    static const uint64_t sizes[] = {512, 4096, 65536, 262144};
    static const unsigned depths[] = {1, 4, 16, 64};
    const struct vub_client_info *in = vub_client_info(cl);
    for (unsigned s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        if (sizes[s] > in->config.capacity_sectors * 512 || sizes[s] % in->config.blk_size_bytes != 0)
            continue; /* bigger than the disk, or not whole logical blocks */
        for (unsigned d = 0; d < sizeof depths / sizeof depths[0]; d++) {
            unsigned depth = depths[d] < in->queue_size ? depths[d] : in->queue_size;
            for (unsigned segs = 1; segs <= 16 && !stop_verify; segs *= 4) {
                if (segs > in->max_segments || sizes[s] / segs < 512 ||
                    (in->config.size_max_bytes && sizes[s] / segs > in->config.size_max_bytes))
                    continue;
                *bad += verify_pass(sizes[s], depth, segs, wbuf, rbuf);
                (*passes)++;
            }
        }
    }
}

static void cmd_verify(unsigned rounds)
{
    uint8_t *wbuf = vub_client_alloc(cl, 64 * 262144), *rbuf = vub_client_alloc(cl, 64 * 262144);
    unsigned bad = 0, passes = 0;
    if (!wbuf || !rbuf)
        die("%s", "shared buffer pool too small");
    rng_state ^= (uint64_t)getpid();
    /* A long verify is ended with SIGTERM or SIGINT: the pass under way
     * is finished and counted, then the summary is printed as usual. */
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    for (unsigned round = 0; round < rounds && !stop_verify; round++)
        verify_round(wbuf, rbuf, &passes, &bad);
    if (reconnect_ms >= 0)
        printf("verify: %u passes, %u mismatches, %u reconnects\n", passes, bad, reconnects);
    else
        printf("verify: %u passes, %u mismatches\n", passes, bad);
    if (bad)
        die("%s", "verify failed");
}

/* The commands: name, operands, and whether they change the disk. */
static const struct command {
    const char *name;
    int operands;
    const char *synopsis;
    bool writes;
} commands[] = {
    {"info", 0, "info", false},        {"read", 2, "read OFF LEN", false},
    {"write", 1, "write OFF", true},   {"dump", 0, "dump", false},
    {"flush", 0, "flush", false},      {"discard", 2, "discard OFF LEN", true},
    {"zero", 2, "zero OFF LEN", true}, {"id", 0, "id", false},
    {"verify", 0, "verify", true},     {"wait-resize", 1, "wait-resize MS", false},
};

static const struct command *find_command(const char *name, int nargs)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, name) != 0)
            continue;
        if (nargs != commands[i].operands)
            usage_error("wrong operands: the command is '%s'", commands[i].synopsis);
        return &commands[i];
    }
    usage_error("unknown command '%s' (info, read, write, dump, flush, discard, zero, id, wait-resize, verify)", name);
}

/* The client knows the capacity and whether the disk is read-only: say so
 * before asking the back-end something it must refuse. */
static void check_request(const struct command *c, uint64_t off, uint64_t len)
{
    const struct vub_client_info *in = vub_client_info(cl);
    uint64_t capacity = in->config.capacity_sectors * 512;
    char line[200];
    if (!strcmp(c->name, "wait-resize")) /* its operand is a time, not an offset */
        return;
    if (c->writes && (in->features >> VUB_VIRTIO_BLK_F_RO & 1)) {
        snprintf(line, sizeof line, "%s: the disk is read-only (the back-end offers VIRTIO_BLK_F_RO)", c->name);
        die("%s", line);
    }
    if ((c->operands == 2 && (off > capacity || len > capacity - off)) || (c->operands == 1 && off >= capacity)) {
        if (c->operands == 2)
            snprintf(line, sizeof line, "%s %" PRIu64 " %" PRIu64 ": past the end of the disk (capacity %" PRIu64
                     " bytes)", c->name, off, len, capacity);
        else
            snprintf(line, sizeof line, "%s at %" PRIu64 ": past the end of the disk (capacity %" PRIu64 " bytes)",
                     c->name, off, capacity);
        fprintf(stderr, "vub-io: %s\n", line);
        vub_client_close(cl);
        exit(2);
    }
}

/* Waits on the back-end's channel for a new capacity, then shows that the
 * new end of the disk takes a write and gives it back. */
static void cmd_wait_resize(uint64_t ms)
{
    const struct vub_client_info *in = vub_client_info(cl);
    uint64_t before = in->config.capacity_sectors;
    struct vub_client_queue *q = vub_client_queue(cl, 0);
    if (vub_client_backend_fd(cl) < 0)
        die("%s", "the back-end took no back-end channel (protocol feature BACKEND_REQ)");
    printf("capacity %" PRIu64 " sectors; waiting for a resize\n", before);
    fflush(stdout);
    while (in->config.capacity_sectors == before) {
        struct pollfd p = {.fd = vub_client_backend_fd(cl), .events = POLLIN};
        if (poll(&p, 1, ms > INT32_MAX ? -1 : (int)ms) != 1)
            die("%s", "no resize was announced in time");
        bool changed;
        if (vub_client_handle_backend(cl, &changed) != VUB_OK)
            die("back-end channel: %s", vub_client_why(cl));
    }
    uint64_t after = in->config.capacity_sectors, off = after * 512 - 4096;
    printf("capacity %" PRIu64 " -> %" PRIu64 " sectors\n", before, after);
    uint8_t out[4096], back[4096], status = VUB_BLK_S_NONE;
    for (size_t k = 0; k < sizeof out; k++)
        out[k] = (uint8_t)(k * 31 + after);
    check(copy_pwrite(cl, 0, out, sizeof out, off, &status), status, q, "write at the new end", off);
    check(copy_pread(cl, 0, back, sizeof back, off, &status), status, q, "read at the new end", off);
    if (memcmp(out, back, sizeof out) != 0)
        die("%s", "the last 4 KiB read back differ from what was written");
    printf("wrote and read back 4096 bytes at %" PRIu64 "\n", off);
}

int main(int argc, char **argv)
{
    struct vub_client_opts o = {.num_queues = 1, .buffer_bytes = 2 * 64 * 262144};
    bool unmap = false;
    unsigned rounds = 1;
    char why[256];
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("vub-io %s\n", VUB_VERSION);
            return 0;
        } else if (!strcmp(a, "--unmap")) {
            unmap = true;
        } else if (strcmp(a, "--socket") && strcmp(a, "--queues") && strcmp(a, "--timeout") && strcmp(a, "--ring") &&
                   strcmp(a, "--reconnect") && strcmp(a, "--rounds")) {
            usage_error("unknown option '%s'", a);
        } else if (!v) {
            usage_error("%s needs a value", a);
        } else if (!strcmp(a, "--socket")) {
            o.socket_path = argv[++i];
        } else if (!strcmp(a, "--queues")) {
            uint64_t n = parse_size(argv[++i]);
            if (n < 1 || n > VUB_MAX_QUEUES)
                usage_error("--queues wants 1..%d, not '%s'", VUB_MAX_QUEUES, argv[i]);
            o.num_queues = (unsigned)n;
        } else if (!strcmp(a, "--reconnect")) {
            uint64_t ms = parse_size(argv[++i]);
            if (ms > 3600000)
                usage_error("--reconnect wants 0..3600000 milliseconds, not '%s'", argv[i]);
            reconnect_ms = (int)ms;
        } else if (!strcmp(a, "--rounds")) {
            uint64_t n = parse_size(argv[++i]);
            if (n < 1 || n > 1000)
                usage_error("--rounds wants 1..1000, not '%s'", argv[i]);
            rounds = (unsigned)n;
        } else if (!strcmp(a, "--timeout")) {
            uint64_t ms = parse_size(argv[++i]);
            if (ms < 1 || ms > 3600000)
                usage_error("--timeout wants 1..3600000 milliseconds, not '%s'", argv[i]);
            o.timeout_ms = (int)ms;
        } else {
            v = argv[++i];
            o.ring = !strcmp(v, "split") ? VUB_CLIENT_RING_SPLIT
                     : !strcmp(v, "packed") ? VUB_CLIENT_RING_PACKED
                     : !strcmp(v, "auto") ? VUB_CLIENT_RING_AUTO
                                          : (usage_error("--ring wants auto, split or packed, not '%s'", v), 0);
        }
    }
    ring_auto = o.ring == VUB_CLIENT_RING_AUTO;
    /* --unmap may also follow the command's arguments */
    for (int j = i; j < argc; j++)
        if (!strcmp(argv[j], "--unmap")) {
            unmap = true;
            for (int k = j; k + 1 < argc; k++)
                argv[k] = argv[k + 1];
            argc--;
        }
    if (i >= argc)
        usage_error("no command given");
    if (!o.socket_path)
        usage_error("no --socket PATH given");
    const struct command *c = find_command(argv[i], argc - i - 1);
    uint64_t off = c->operands >= 1 ? parse_size(argv[i + 1]) : 0;
    uint64_t len = c->operands == 2 ? parse_size(argv[i + 2]) : 0;
    enum vub_err err = vub_client_connect(&cl, &o, why, sizeof why);
    if (err != VUB_OK)
        die("%s", why);
    check_request(c, off, len);
    uint8_t status = VUB_BLK_S_NONE;
    if (!strcmp(c->name, "info")) {
        cmd_info();
    } else if (!strcmp(c->name, "read")) {
        cmd_read(off, len, false);
    } else if (!strcmp(c->name, "write")) {
        cmd_write(off);
    } else if (!strcmp(c->name, "dump")) {
        cmd_read(0, vub_client_info(cl)->config.capacity_sectors * 512, isatty(STDERR_FILENO));
    } else if (!strcmp(c->name, "flush")) {
        struct vub_client_req r = {.op = VUB_CLIENT_FLUSH};
        struct vub_client_completion d;
        err = vub_client_run(vub_client_queue(cl, 0), &r, &d);
        check(err, d.status, vub_client_queue(cl, 0), "flush", 0);
    } else if (!strcmp(c->name, "discard") || !strcmp(c->name, "zero")) {
        cmd_range(c->name[0] == 'd' ? VUB_CLIENT_DISCARD : VUB_CLIENT_WRITE_ZEROES, off, len, unmap);
    } else if (!strcmp(c->name, "id")) {
        char id[21];
        err = copy_get_id(cl, 0, id, &status);
        check(err, status, vub_client_queue(cl, 0), "get-id", 0);
        printf("%s\n", id);
    } else if (!strcmp(c->name, "wait-resize")) {
        cmd_wait_resize(off); /* its one operand is a time in ms */
    } else {
        cmd_verify(rounds);
    }
    if (fflush(stdout) != 0)
        die("stdout: %s", strerror(errno));
    vub_client_close(cl);
    return 0;
}
