/* vub-bench: a benchmark client for any vhost-user-blk back-end, in the
 * spirit of fio, on vub's public client API. Build (or `make build/vub-bench`):
 *   cc -std=c11 -O2 -I. vub.c examples/vub-bench.c -o build/vub-bench -lpthread
 *
 * One thread per queue keeps --iodepth requests in flight: it submits what
 * it can as one batch (one kick), reaps, and waits the way --wait says.
 * Latencies go into a fixed histogram per thread (log-linear buckets, about
 * 3 % wide: no allocation per request), merged at the end. A run with any
 * error (a status other than OK, a transport failure, a block that reads
 * back wrong under --verify) is invalid: it is reported and the exit status
 * is 1.
 *
 * --compare runs the same job against several back-ends in rounds, the
 * order alternating from round to round so that drift of the machine falls
 * on all of them, and prints each back-end's median with the ratio to the
 * first back-end: the ratio of the medians, and the lowest and highest
 * ratio of one round's pair.
 */
#define _GNU_SOURCE
#include "vub.h"
#include "client-copy.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: vub-bench --socket PATH [OPTIONS]\n"
    "       vub-bench --compare PATH PATH... [OPTIONS]\n"
    "       vub-bench --help | --version\n"
    "  --rw MODE          randread (default), randwrite, read, write, randrw (half reads)\n"
    "  --bs SIZE          bytes per request, a multiple of 512 (default 4K)\n"
    "  --iodepth N        requests in flight per queue, 1..1024 (default 32)\n"
    "  --queues N         queues, one thread each (default 1)\n"
    "  --runtime TIME     measured time: seconds, or with an ms suffix (default 10)\n"
    "  --ramp TIME        run this long before measuring (default 0)\n"
    "  --size SIZE        use the first SIZE bytes of the disk (default: all of it)\n"
    "  --flush-every N    a FLUSH after every N writes on each queue (default: none)\n"
    "  --wait MODE        eventfd (sleep until notified, default) or poll (spin, notifications off)\n"
    "  --ring MODE        auto (default), split or packed\n"
    "  --writeback on|off set the device's write cache first (SET_CONFIG; needs CONFIG_WCE)\n"
    "  --verify           tag each write with its offset and a generation and check every\n"
    "                     read against what was written; the stripe is written once before\n"
    "                     and read back once after the measured run (not timed)\n"
    "  --rounds N         --compare: rounds over all back-ends (default 3)\n"
    "  --seed N           random offsets from this seed (default: from the clock)\n"
    "  --timeout MS       give up on a request after MS ms (default 10000)\n"
    "  --reconnect MS     when the back-end goes away, wait up to MS ms for it to come\n"
    "                     back on the socket and resubmit what was in flight\n"
    "  --json             one JSON object on stdout instead of the text report\n"
    "sizes take K, M, G suffixes (powers of 1024); MB/s counts 10^6 bytes; each queue works\n"
    "on its own stripe of the disk; a progress line is printed each second when stdout is a\n"
    "terminal. Exit status: 0 a valid run, 1 errors (the run is invalid), 2 usage.\n";

/* ---- The job ---- */

enum rw { RW_RANDREAD, RW_RANDWRITE, RW_READ, RW_WRITE, RW_RANDRW };
static const char *const rw_names[] = {"randread", "randwrite", "read", "write", "randrw"};

struct job {
    enum rw rw;
    uint32_t bs;
    unsigned iodepth, queues;
    double runtime_s, ramp_s;
    uint64_t size;            /* 0: the whole disk */
    unsigned flush_every;
    bool poll;
    enum vub_client_ring ring;
    int writeback;            /* -1: leave it, 0 off, 1 on */
    bool verify, json;
    unsigned rounds;
    uint64_t seed;
    int timeout_ms;
    int reconnect_ms;         /* --reconnect; -1: a back-end that goes away ends the run */
};

/* ---- Latency histogram: 32 linear buckets per power of two ---- */

#define HIST_SUB 32u
#define HIST_MAX_SHIFT 35u  /* up to 32 << 35 ns, about 1100 s */
#define HIST_BUCKETS (HIST_SUB * (HIST_MAX_SHIFT + 2))

struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t total, sum_ns, max_ns;
};

static unsigned hist_index(uint64_t ns)
{
    if (ns < HIST_SUB)
        return (unsigned)ns;
    unsigned msb = 63u - (unsigned)__builtin_clzll(ns), shift = msb - 5u;
    if (shift > HIST_MAX_SHIFT)
        return HIST_BUCKETS - 1;
    return (shift + 1) * HIST_SUB + (unsigned)((ns >> shift) - HIST_SUB);
}

/* The middle of bucket i, in ns. */
static double hist_value(unsigned i)
{
    if (i < HIST_SUB)
        return i;
    unsigned shift = i / HIST_SUB - 1;
    return (double)((uint64_t)(HIST_SUB + i % HIST_SUB) << shift) + (double)((uint64_t)1 << shift) / 2;
}

static void hist_add(struct hist *h, uint64_t ns)
{
    h->count[hist_index(ns)]++;
    h->total++;
    h->sum_ns += ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

static void hist_merge(struct hist *to, const struct hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        to->count[i] += from->count[i];
    to->total += from->total;
    to->sum_ns += from->sum_ns;
    if (from->max_ns > to->max_ns)
        to->max_ns = from->max_ns;
}

/* The latency below which a fraction p of the requests completed, in µs. */
static double hist_percentile_us(const struct hist *h, double p)
{
    double exact = p * (double)h->total;
    uint64_t want = (uint64_t)exact, seen = 0;
    want += (double)want < exact; /* rounded up: the p50 of 3 is the 2nd */
    for (unsigned i = 0; h->total && i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= want && seen > 0)
            return hist_value(i) / 1000.0;
    }
    return 0;
}

/* ---- What one run measured ---- */

struct result {
    double seconds;            /* the measured window */
    uint64_t reads, writes, flushes, bytes_read, bytes_written;
    uint64_t errors, verified_bytes, mismatches;
    struct hist lat, flush_lat;  /* reads and writes; flushes apart */
    double cpu_s;              /* client CPU (user + system) in the window */
    unsigned reconnects;       /* --reconnect: sessions set up again */
    uint8_t writeback;         /* the device's write cache during the run */
    bool packed;
};

static double iops(const struct result *r) { return r->seconds > 0 ? (double)(r->reads + r->writes) / r->seconds : 0; }
static double mbps(const struct result *r)
{
    return r->seconds > 0 ? (double)(r->bytes_read + r->bytes_written) / r->seconds / 1e6 : 0;
}

/* ---- Small helpers ---- */

__attribute__((format(printf, 1, 2))) _Noreturn static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vub-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (try --help)\n");
    va_end(ap);
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static uint64_t parse_size(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    uint64_t v = strtoull(s, &end, 0), mul = 1;
    switch (*end) {
    case 'K': case 'k': mul = UINT64_C(1) << 10; end++; break;
    case 'M': case 'm': mul = UINT64_C(1) << 20; end++; break;
    case 'G': case 'g': mul = UINT64_C(1) << 30; end++; break;
    }
    if (errno || end == s || *end || *s == '-' || v > UINT64_MAX / mul)
        usage_error("%s: bad size '%s'", opt, s);
    return v * mul;
}

static uint64_t parse_count(const char *opt, const char *s, uint64_t lo, uint64_t hi)
{
    uint64_t v = parse_size(opt, s);
    if (v < lo || v > hi)
        usage_error("%s wants %" PRIu64 "..%" PRIu64 ", not '%s'", opt, lo, hi, s);
    return v;
}

/* "10", "2.5" (seconds) or "500ms". */
static double parse_time(const char *opt, const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (!strcmp(end, "ms"))
        v /= 1000;
    else if (*end && strcmp(end, "s"))
        end = (char *)s;
    if (end == s || !(v >= 0) || v > 86400)
        usage_error("%s: bad time '%s' (seconds, or a number with ms)", opt, s);
    return v;
}

static int pick(const char *opt, const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return i;
    usage_error("%s: unknown value '%s'", opt, s);
}

/* xorshift64*: cheap, good enough for offsets. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(0x2545f4914f6cdd1d);
}

/* ---- --verify: what a written block holds ----
 * Every 512-byte sector starts with a magic, its own disk offset, the
 * block's generation and the run's id; the rest is a pattern of all four,
 * so a sector from another place, another write or another run is caught. */

#define TAG_MAGIC UINT64_C(0x68636e6562627576) /* "vubbench", little-endian */

static uint64_t tag_word(uint64_t off, uint32_t gen, uint64_t run, unsigned i)
{
    uint64_t x = off * UINT64_C(0x9e3779b97f4a7c15) ^ ((uint64_t)gen << 32 | i) ^ run;
    return x ^ x >> 31;
}

static void tag_fill(uint8_t *buf, uint32_t bytes, uint64_t off, uint32_t gen, uint64_t run)
{
    for (uint32_t s = 0; s < bytes; s += 512) {
        uint64_t w[64];
        w[0] = TAG_MAGIC, w[1] = off + s, w[2] = gen, w[3] = run;
        for (unsigned i = 4; i < 64; i++)
            w[i] = tag_word(off + s, gen, run, i);
        memcpy(buf + s, w, sizeof w);
    }
}

static bool tag_check(const uint8_t *buf, uint32_t bytes, uint64_t off, uint32_t gen, uint64_t run)
{
    for (uint32_t s = 0; s < bytes; s += 512) {
        uint64_t w[64];
        memcpy(w, buf + s, sizeof w);
        if (w[0] != TAG_MAGIC || w[1] != off + s || w[2] != gen || w[3] != run)
            return false;
        for (unsigned i = 4; i < 64; i++)
            if (w[i] != tag_word(off + s, gen, run, i))
                return false;
    }
    return true;
}

/* ---- One queue, one thread ---- */

enum phase { PHASE_RAMP, PHASE_MEASURE, PHASE_STOP };

/* The passes of a run: --verify writes every block first and reads every
 * block back at the end, neither of them timed. */
enum pass { PASS_PREFILL, PASS_MAIN, PASS_CHECK };

struct slot {                  /* one request in flight */
    enum vub_client_op op;
    uint64_t block;            /* index in the stripe */
    uint32_t gen;              /* --verify: the generation written, or expected */
    uint64_t start_ns;
    struct iovec iov[4];       /* the buffer, cut at size_max */
    unsigned iov_count;
};

/* --reconnect. vub_client_reconnect() wants the queues idle, so a thread
 * that sees the back-end hang up parks, every other thread parks at its
 * next turn, and the last one in (when each running thread is parked or
 * waiting at the start line, touching no queue) sets the session up again;
 * then all go on with the requests they had in flight, resubmitted. */
struct rejoin {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vub_client *cl;
    int timeout_ms;
    unsigned running;          /* queue threads not finished */
    unsigned parked;           /* ... parked for a reconnect */
    unsigned idle;             /* ... at the start line (the barrier) */
    unsigned generation;       /* reconnects done */
    _Atomic bool wanted;       /* a thread saw the back-end hang up */
    bool failed;               /* the reconnect failed: every queue gives up */
    char why[256];
};

struct worker {
    const struct job *job;
    struct rejoin *rejoin;
    struct vub_client_queue *q;
    unsigned index;
    pthread_t thread;
    _Atomic int *phase;
    pthread_barrier_t *ready;  /* every queue set up (and prefilled): start the clock */
    uint64_t first, blocks;    /* the stripe: first byte, blocks of bs */
    uint64_t next_seq, rng, run_id;
    unsigned writes_since_flush;
    uint32_t *gen;             /* --verify: generation per block, 0 = never written */
    uint8_t *busy;             /* --verify: a request on this block is in flight */
    struct slot *slots;        /* [iodepth], by cookie */
    unsigned *free_slots, free_count;
    struct vub_client_req *batch;
    struct result res;         /* this thread's part; seconds unused */
    _Atomic uint64_t done;     /* completions in the window, for the progress line */
    char why[256];             /* the first failure */
};

static void worker_error(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void worker_error(struct worker *w, const char *fmt, ...)
{
    w->res.errors++;
    if (w->why[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->why, sizeof w->why, fmt, ap);
    va_end(ap);
}

/* The next block for a request: random or sequential; under --verify, one
 * with nothing in flight (false if none was found quickly). */
static bool next_block(struct worker *w, uint64_t *block)
{
    bool rnd = w->job->rw == RW_RANDREAD || w->job->rw == RW_RANDWRITE || w->job->rw == RW_RANDRW;
    for (unsigned tries = 0; tries < 16; tries++) {
        *block = rnd ? rng_next(&w->rng) % w->blocks : w->next_seq++ % w->blocks;
        if (!w->busy || !w->busy[*block])
            return true;
    }
    return false;
}

/* Prepares the next request in slot si and *req; false if none can be
 * made now. */
static bool prepare(struct worker *w, unsigned si, enum pass pass, struct vub_client_req *req)
{
    const struct job *j = w->job;
    struct slot *s = &w->slots[si];
    bool write = pass == PASS_PREFILL ||
                 (pass == PASS_MAIN && (j->rw == RW_RANDWRITE || j->rw == RW_WRITE ||
                                        (j->rw == RW_RANDRW && (rng_next(&w->rng) & 1))));
    if (pass == PASS_MAIN && j->flush_every && w->writes_since_flush >= j->flush_every) {
        w->writes_since_flush = 0;
        s->op = VUB_CLIENT_FLUSH;
        *req = (struct vub_client_req){.op = VUB_CLIENT_FLUSH, .cookie = si};
        return true;
    }
    if (pass != PASS_MAIN)
        s->block = w->next_seq++;
    else if (!next_block(w, &s->block))
        return false;
    s->op = write ? VUB_CLIENT_WRITE : VUB_CLIENT_READ;
    uint64_t off = w->first + s->block * j->bs;
    if (w->gen) {
        w->busy[s->block] = 1;
        s->gen = write ? w->gen[s->block] + 1 : w->gen[s->block];
        if (write)
            tag_fill(s->iov[0].iov_base, j->bs, off, s->gen, w->run_id);
    }
    w->writes_since_flush += write;
    *req = (struct vub_client_req){.op = s->op, .offset = off, .iov = s->iov, .iov_count = s->iov_count,
                                   .cookie = si};
    return true;
}

/* Books one completion: latency, bytes, status, and under --verify the
 * block's contents and generation. */
static void complete(struct worker *w, const struct vub_client_completion *c, uint64_t now, bool measure)
{
    const struct job *j = w->job;
    struct slot *s = &w->slots[c->cookie];
    uint64_t off = w->first + s->block * j->bs;
    w->free_slots[w->free_count++] = (unsigned)c->cookie;
    if (c->status != VUB_BLK_S_OK) {
        char st[32];
        worker_error(w, "queue %u: %s at %" PRIu64 ": %s", w->index,
                     s->op == VUB_CLIENT_FLUSH ? "flush" : s->op == VUB_CLIENT_READ ? "read" : "write", off,
                     copy_status_name(c->status, st, sizeof st));
    } else if (w->gen && s->op != VUB_CLIENT_FLUSH) {
        if (s->op == VUB_CLIENT_WRITE) {
            w->gen[s->block] = s->gen;
        } else if (s->gen != 0) {
            if (tag_check(s->iov[0].iov_base, j->bs, off, s->gen, w->run_id)) {
                w->res.verified_bytes += j->bs;
            } else {
                w->res.mismatches++;
                worker_error(w, "queue %u: verify: the %u bytes at %" PRIu64 " are not generation %u of this run",
                             w->index, j->bs, off, s->gen);
            }
        }
    }
    if (w->gen && s->op != VUB_CLIENT_FLUSH)
        w->busy[s->block] = 0;
    if (!measure)
        return;
    if (s->op == VUB_CLIENT_FLUSH) {
        w->res.flushes++;
        hist_add(&w->res.flush_lat, now - s->start_ns);
        return;
    }
    hist_add(&w->res.lat, now - s->start_ns);
    if (s->op == VUB_CLIENT_READ)
        w->res.reads++, w->res.bytes_read += j->bs;
    else
        w->res.writes++, w->res.bytes_written += j->bs;
    atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
}

/* Reconnects if every running thread is parked or idle. Lock held. */
static void rejoin_maybe(struct rejoin *r)
{
    if (!atomic_load(&r->wanted) || r->parked == 0 || r->parked + r->idle != r->running)
        return;
    if (vub_client_reconnect(r->cl, r->timeout_ms, r->why, sizeof r->why) == VUB_OK) {
        r->generation++;
        fprintf(stderr, "vub-bench: the back-end hung up; reconnected\n");
    } else {
        r->failed = true;
    }
    atomic_store(&r->wanted, false);
    pthread_cond_broadcast(&r->cond);
}

/* Parks until the session is back; false if the reconnect failed. */
static bool rejoin(struct worker *w)
{
    struct rejoin *r = w->rejoin;
    pthread_mutex_lock(&r->lock);
    unsigned gen = r->generation;
    atomic_store(&r->wanted, true);
    r->parked++;
    rejoin_maybe(r);
    while (r->generation == gen && !r->failed)
        pthread_cond_wait(&r->cond, &r->lock);
    r->parked--;
    bool ok = !r->failed;
    pthread_mutex_unlock(&r->lock);
    return ok;
}

/* idle: +1 entering the start line, -1 leaving it; running -1 at the end. */
static void rejoin_count(struct rejoin *r, int idle, int running)
{
    pthread_mutex_lock(&r->lock);
    r->idle = (unsigned)((int)r->idle + idle);
    r->running = (unsigned)((int)r->running + running);
    rejoin_maybe(r);
    pthread_mutex_unlock(&r->lock);
}

/* A transport failure ends this queue's run: the back-end broke a rule,
 * went away or stopped answering (with --reconnect, one that hung up and
 * did not come back in time). */
static void queue_failed(struct worker *w, const char *what, enum vub_err err)
{
    worker_error(w, "queue %u: %s: %s: %s", w->index, what, vub_strerror(err), vub_client_queue_why(w->q));
}

/* Keeps iodepth requests in flight until told to stop (or, for the
 * prefill and the check, until every block of the stripe is done once),
 * then drains. */
static void run_queue(struct worker *w, enum pass pass)
{
    bool prefill = pass != PASS_MAIN; /* a pass over the stripe, not timed */
    const struct job *j = w->job;
    struct vub_client_completion done[1024];
    unsigned depth = j->iodepth;
    for (;;) {
        if (atomic_load(&w->rejoin->wanted) && !rejoin(w))
            return worker_error(w, "queue %u: reconnect: %s", w->index, w->rejoin->why);
        int phase = atomic_load_explicit(w->phase, memory_order_relaxed);
        bool more = prefill ? w->next_seq < w->blocks : phase != PHASE_STOP;
        bool measure = !prefill && phase == PHASE_MEASURE;
        unsigned n = 0;
        uint64_t t = now_ns();
        while (more && w->free_count > 0 && n < depth && (!prefill || w->next_seq < w->blocks)) {
            unsigned si = w->free_slots[w->free_count - 1];
            if (!prepare(w, si, pass, &w->batch[n]))
                break;
            w->slots[si].start_ns = t;
            w->free_count--;
            n++;
        }
        if (n > 0) {
            unsigned sent = 0;
            enum vub_err e = vub_client_submit_batch(w->q, w->batch, n, &sent);
            for (unsigned k = sent; k < n; k++) /* the ring was full: give the rest back */
                w->free_slots[w->free_count++] = (unsigned)w->batch[k].cookie;
            if (e != VUB_OK && e != VUB_E_AGAIN)
                return queue_failed(w, "submit", e);
        }
        if (vub_client_in_flight(w->q) == 0) {
            if (!more || (prefill && w->next_seq >= w->blocks))
                return;
            continue;
        }
        unsigned got = 0;
        enum vub_err e = vub_client_reap(w->q, done, depth, &got);
        if (e != VUB_OK)
            return queue_failed(w, "reap", e);
        uint64_t now = now_ns();
        for (unsigned k = 0; k < got; k++)
            complete(w, &done[k], now, measure);
        if (got == 0 && (e = vub_client_wait(w->q, j->timeout_ms)) == VUB_E_CLOSED && j->reconnect_ms >= 0) {
            if (!rejoin(w))
                return worker_error(w, "queue %u: reconnect: %s", w->index, w->rejoin->why);
        } else if (got == 0 && e != VUB_OK) {
            return queue_failed(w, "wait", e);
        }
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    vub_client_set_polling(w->q, w->job->poll);
    if (w->gen) {
        run_queue(w, PASS_PREFILL);
        w->next_seq = 0;
        w->writes_since_flush = 0;
    }
    rejoin_count(w->rejoin, 1, 0);
    pthread_barrier_wait(w->ready);
    rejoin_count(w->rejoin, -1, 0);
    if (!w->why[0])
        run_queue(w, PASS_MAIN);
    if (w->gen && !w->why[0]) {
        w->next_seq = 0;
        run_queue(w, PASS_CHECK);
    }
    rejoin_count(w->rejoin, 0, -1);
    return NULL;
}

/* ---- One run against one back-end ---- */

static void progress_line(struct worker *w, unsigned n, double elapsed, uint64_t *last, double *last_t)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += atomic_load_explicit(&w[i].done, memory_order_relaxed);
    double dt = elapsed - *last_t;
    printf("\r[%5.1fs] %10.0f IOPS %9.1f MB/s ", elapsed, dt > 0 ? (double)(total - *last) / dt : 0,
           dt > 0 ? (double)(total - *last) * w->job->bs / dt / 1e6 : 0);
    fflush(stdout);
    *last = total;
    *last_t = elapsed;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Runs the job against the back-end at path; false (with *why) if it
 * could not even start. */
static bool run_job(const struct job *j, const char *path, struct result *out, char *why, size_t why_len)
{
    struct vub_client_opts o = {.socket_path = path, .num_queues = j->queues, .ring = j->ring,
                                .timeout_ms = j->timeout_ms};
    unsigned qs = 128;
    while (qs < 2 * j->iodepth)
        qs *= 2;
    o.queue_size = (uint16_t)qs;
    o.buffer_bytes = (size_t)j->queues * j->iodepth * j->bs + (1u << 20);
    struct vub_client *cl;
    memset(out, 0, sizeof *out);
    if (vub_client_connect(&cl, &o, why, why_len) != VUB_OK)
        return false;
    const struct vub_client_info *in = vub_client_info(cl);
    uint64_t disk = in->config.capacity_sectors * 512, size = j->size ? j->size : disk;
    uint64_t stripe_blocks = size / j->queues / j->bs;
    uint32_t seg = in->config.size_max_bytes ? in->config.size_max_bytes / 512 * 512 : j->bs;
    bool ok = true;
    if (seg == 0 || seg > j->bs)
        seg = j->bs;
    if (size > disk || stripe_blocks == 0)
        ok = !snprintf(why, why_len, "%s: the disk has %" PRIu64 " bytes: too small for %u queue(s) of %u-byte blocks%s",
                       path, disk, j->queues, j->bs, j->size ? " in --size" : "");
    else if ((j->bs + seg - 1) / seg > 4 || (j->bs + seg - 1) / seg > in->max_segments)
        ok = !snprintf(why, why_len, "%s: --bs %u needs more segments than the back-end takes (size_max %u)",
                       path, j->bs, in->config.size_max_bytes);
    else if (j->rw != RW_RANDREAD && j->rw != RW_READ && (in->features >> VUB_VIRTIO_BLK_F_RO & 1))
        ok = !snprintf(why, why_len, "%s: the disk is read-only: --rw %s writes", path, rw_names[j->rw]);
    else if (j->writeback >= 0 && in->config.writeback != j->writeback &&
             vub_client_set_writeback(cl, j->writeback) != VUB_OK)
        ok = !snprintf(why, why_len, "%s: --writeback %s: %s", path, j->writeback ? "on" : "off", vub_client_why(cl));
    if (!ok) {
        vub_client_close(cl);
        return false;
    }
    out->writeback = in->config.writeback;
    out->packed = in->packed;

    _Atomic int phase = j->ramp_s > 0 ? PHASE_RAMP : PHASE_MEASURE;
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, j->queues + 1);
    struct worker *w = calloc(j->queues, sizeof *w);
    struct rejoin rj = {.cl = cl, .timeout_ms = j->reconnect_ms, .running = j->queues};
    pthread_mutex_init(&rj.lock, NULL);
    pthread_cond_init(&rj.cond, NULL);
    uint64_t run_id = now_ns() ^ (uint64_t)getpid() << 32;
    for (unsigned i = 0; w && i < j->queues; i++) {
        struct worker *x = &w[i];
        x->job = j, x->rejoin = &rj, x->q = vub_client_queue(cl, i), x->index = i, x->phase = &phase, x->ready = &ready;
        x->first = i * stripe_blocks * j->bs, x->blocks = stripe_blocks;
        x->rng = j->seed * 0x100000001b3u + i + 1, x->run_id = run_id;
        x->slots = calloc(j->iodepth, sizeof *x->slots);
        x->free_slots = calloc(j->iodepth, sizeof *x->free_slots);
        x->batch = calloc(j->iodepth + 1, sizeof *x->batch);
        uint8_t *buf = vub_client_alloc(cl, (size_t)j->iodepth * j->bs);
        if (j->verify) {
            x->gen = calloc(stripe_blocks, sizeof *x->gen);
            x->busy = calloc(stripe_blocks, 1);
        }
        if (!x->slots || !x->free_slots || !x->batch || !buf || (j->verify && (!x->gen || !x->busy))) {
            fprintf(stderr, "vub-bench: out of memory\n");
            exit(1);
        }
        for (unsigned k = 0; k < j->iodepth; k++) {
            struct slot *s = &x->slots[k];
            for (uint32_t at = 0; at < j->bs; at += seg)
                s->iov[s->iov_count++] = (struct iovec){buf + (size_t)k * j->bs + at, j->bs - at < seg ? j->bs - at : seg};
            x->free_slots[x->free_count++] = j->iodepth - 1 - k;
        }
    }
    if (!w) {
        fprintf(stderr, "vub-bench: out of memory\n");
        exit(1);
    }
    for (unsigned i = 0; i < j->queues; i++)
        pthread_create(&w[i].thread, NULL, worker_main, &w[i]);

    /* The window is timed here: ramp, then measure with a progress line
     * each second on a terminal. A --verify prefill runs before the
     * barrier, so it is neither timed nor counted. */
    bool tty = isatty(STDOUT_FILENO) && !j->json;
    pthread_barrier_wait(&ready);
    sleep_s(j->ramp_s);
    atomic_store(&phase, PHASE_MEASURE);
    double cpu0 = cpu_seconds(), last_t = 0;
    uint64_t t0 = now_ns(), last = 0;
    for (double left = j->runtime_s; left > 0; left -= 1) {
        sleep_s(left < 1 ? left : 1);
        if (tty)
            progress_line(w, j->queues, (double)(now_ns() - t0) / 1e9, &last, &last_t);
    }
    atomic_store(&phase, PHASE_STOP);
    out->seconds = (double)(now_ns() - t0) / 1e9;
    out->cpu_s = cpu_seconds() - cpu0;
    if (tty)
        printf("\r%60s\r", "");
    why[0] = 0;
    for (unsigned i = 0; i < j->queues; i++) {
        struct worker *x = &w[i];
        pthread_join(x->thread, NULL);
        out->reads += x->res.reads, out->writes += x->res.writes, out->flushes += x->res.flushes;
        out->bytes_read += x->res.bytes_read, out->bytes_written += x->res.bytes_written;
        out->errors += x->res.errors, out->verified_bytes += x->res.verified_bytes;
        out->mismatches += x->res.mismatches;
        hist_merge(&out->lat, &x->res.lat);
        hist_merge(&out->flush_lat, &x->res.flush_lat);
        if (x->why[0] && !why[0])
            snprintf(why, why_len, "%s", x->why);
        free(x->slots), free(x->free_slots), free(x->batch), free(x->gen), free(x->busy);
    }
    free(w);
    out->reconnects = rj.generation;
    pthread_mutex_destroy(&rj.lock);
    pthread_cond_destroy(&rj.cond);
    pthread_barrier_destroy(&ready);
    vub_client_close(cl);
    return true;
}

/* ---- Reports ---- */

static void print_job(const struct job *j, FILE *f)
{
    fprintf(f, "%s bs=%u iodepth=%u queues=%u runtime=%gs wait=%s", rw_names[j->rw], j->bs, j->iodepth,
            j->queues, j->runtime_s, j->poll ? "poll" : "eventfd");
    if (j->flush_every)
        fprintf(f, " flush-every=%u", j->flush_every);
    if (j->writeback >= 0)
        fprintf(f, " writeback=%s", j->writeback ? "on" : "off");
    if (j->verify)
        fprintf(f, " verify");
}

static void report_text(const struct job *j, const char *path, const struct result *r)
{
    printf("vub-bench: ");
    print_job(j, stdout);
    printf("\n  back-end   %s (%s ring, write cache %s)\n", path, r->packed ? "packed" : "split",
           r->writeback ? "on" : "off");
    printf("  total      %.0f IOPS, %.1f MB/s in %.2f s\n", iops(r), mbps(r), r->seconds);
    if (r->reads)
        printf("  reads      %.0f IOPS, %.1f MB/s\n", (double)r->reads / r->seconds,
               (double)r->bytes_read / r->seconds / 1e6);
    if (r->writes)
        printf("  writes     %.0f IOPS, %.1f MB/s\n", (double)r->writes / r->seconds,
               (double)r->bytes_written / r->seconds / 1e6);
    printf("  latency    p50 %.1f us, p99 %.1f us, p99.9 %.1f us, mean %.1f us, max %.1f us\n",
           hist_percentile_us(&r->lat, 0.5), hist_percentile_us(&r->lat, 0.99), hist_percentile_us(&r->lat, 0.999),
           r->lat.total ? (double)r->lat.sum_ns / (double)r->lat.total / 1000 : 0, (double)r->lat.max_ns / 1000);
    if (r->flushes)
        printf("  flushes    %" PRIu64 ", p50 %.1f us, p99 %.1f us\n", r->flushes,
               hist_percentile_us(&r->flush_lat, 0.5), hist_percentile_us(&r->flush_lat, 0.99));
    if (j->verify)
        printf("  verify     %" PRIu64 " bytes read back and checked, %" PRIu64 " mismatches\n", r->verified_bytes,
               r->mismatches);
    if (j->reconnect_ms >= 0)
        printf("  reconnects %u (the back-end went away and came back; what was in flight went again)\n",
               r->reconnects);
    uint64_t reqs = r->reads + r->writes + r->flushes;
    printf("  client cpu %.1f %% of one CPU, %.2f us per request\n", r->seconds > 0 ? 100 * r->cpu_s / r->seconds : 0,
           reqs ? r->cpu_s * 1e6 / (double)reqs : 0);
    printf("  errors     %" PRIu64 "%s\n", r->errors, r->errors ? " (the run is invalid)" : "");
}

static void json_result(const struct result *r, FILE *f)
{
    uint64_t reqs = r->reads + r->writes + r->flushes;
    fprintf(f, "{\"seconds\": %.4f, \"iops\": %.1f, \"mbps\": %.3f, \"reads\": %" PRIu64 ", \"writes\": %" PRIu64
            ", \"flushes\": %" PRIu64 ", \"bytes_read\": %" PRIu64 ", \"bytes_written\": %" PRIu64,
            r->seconds, iops(r), mbps(r), r->reads, r->writes, r->flushes, r->bytes_read, r->bytes_written);
    fprintf(f, ", \"lat_us\": {\"p50\": %.2f, \"p99\": %.2f, \"p99.9\": %.2f, \"mean\": %.2f, \"max\": %.2f}",
            hist_percentile_us(&r->lat, 0.5), hist_percentile_us(&r->lat, 0.99), hist_percentile_us(&r->lat, 0.999),
            r->lat.total ? (double)r->lat.sum_ns / (double)r->lat.total / 1000 : 0, (double)r->lat.max_ns / 1000);
    fprintf(f, ", \"flush_lat_us\": {\"p50\": %.2f, \"p99\": %.2f}", hist_percentile_us(&r->flush_lat, 0.5),
            hist_percentile_us(&r->flush_lat, 0.99));
    fprintf(f, ", \"errors\": %" PRIu64 ", \"verified_bytes\": %" PRIu64 ", \"mismatches\": %" PRIu64
            ", \"cpu_s\": %.4f, \"cpu_us_per_request\": %.3f, \"writeback\": %u, \"ring\": \"%s\"}",
            r->errors, r->verified_bytes, r->mismatches, r->cpu_s, reqs ? r->cpu_s * 1e6 / (double)reqs : 0,
            r->writeback, r->packed ? "packed" : "split");
}

static void json_job(const struct job *j, FILE *f)
{
    fprintf(f, "{\"rw\": \"%s\", \"bs\": %u, \"iodepth\": %u, \"queues\": %u, \"runtime_s\": %g, \"ramp_s\": %g, "
            "\"flush_every\": %u, \"wait\": \"%s\", \"writeback\": %d, \"verify\": %s}",
            rw_names[j->rw], j->bs, j->iodepth, j->queues, j->runtime_s, j->ramp_s, j->flush_every,
            j->poll ? "poll" : "eventfd", j->writeback, j->verify ? "true" : "false");
}

/* ---- --compare ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* metric 0: IOPS, 1: p50 latency (µs) */
static double metric(const struct result *r, int m) { return m == 0 ? iops(r) : hist_percentile_us(&r->lat, 0.5); }

static int compare(const struct job *j, char **paths, unsigned n)
{
    struct result *res = calloc((size_t)n * j->rounds, sizeof *res);
    double *v = calloc(j->rounds, sizeof *v);
    uint64_t errors = 0;
    char why[512];
    if (!res || !v)
        return fprintf(stderr, "vub-bench: out of memory\n"), 1;
    for (unsigned r = 0; r < j->rounds; r++) {
        for (unsigned k = 0; k < n; k++) {
            unsigned b = r % 2 ? n - 1 - k : k; /* the order alternates */
            struct result *x = &res[(size_t)r * n + b];
            if (!run_job(j, paths[b], x, why, sizeof why)) {
                fprintf(stderr, "vub-bench: %s\n", why);
                return 1;
            }
            errors += x->errors;
            if (why[0])
                fprintf(stderr, "vub-bench: %s: %s\n", paths[b], why);
            if (!j->json)
                fprintf(stderr, "vub-bench: round %u, %s: %.0f IOPS, p50 %.1f us\n", r + 1, paths[b], iops(x),
                        hist_percentile_us(&x->lat, 0.5));
        }
    }
    if (j->json) {
        printf("{\"job\": ");
        json_job(j, stdout);
        printf(", \"backends\": [");
    } else {
        printf("vub-bench --compare: ");
        print_job(j, stdout);
        printf(", %u rounds\n  %-40s %12s %9s %22s %22s\n", j->rounds, "back-end", "IOPS", "p50 us",
               "IOPS ratio (min-max)", "p50 ratio (min-max)");
    }
    for (unsigned b = 0; b < n; b++) {
        double med[2], ratio[2], lo[2], hi[2];
        for (int m = 0; m < 2; m++) {
            for (unsigned r = 0; r < j->rounds; r++)
                v[r] = metric(&res[(size_t)r * n + b], m);
            med[m] = median(v, j->rounds);
            for (unsigned r = 0; r < j->rounds; r++)
                v[r] = metric(&res[(size_t)r * n], m);
            double base = median(v, j->rounds);
            ratio[m] = base > 0 ? med[m] / base : 0;
            lo[m] = 1e300, hi[m] = 0;
            for (unsigned r = 0; r < j->rounds; r++) {
                double d = metric(&res[(size_t)r * n], m), q = d > 0 ? metric(&res[(size_t)r * n + b], m) / d : 0;
                lo[m] = q < lo[m] ? q : lo[m];
                hi[m] = q > hi[m] ? q : hi[m];
            }
        }
        if (j->json) {
            printf("%s{\"socket\": \"%s\", \"iops_median\": %.1f, \"p50_us_median\": %.2f, \"iops_ratio\": %.4f, "
                   "\"iops_ratio_min\": %.4f, \"iops_ratio_max\": %.4f, \"p50_ratio\": %.4f, \"p50_ratio_min\": %.4f, "
                   "\"p50_ratio_max\": %.4f, \"rounds\": [", b ? ", " : "", paths[b], med[0], med[1], ratio[0], lo[0],
                   hi[0], ratio[1], lo[1], hi[1]);
            for (unsigned r = 0; r < j->rounds; r++) {
                printf("%s", r ? ", " : "");
                json_result(&res[(size_t)r * n + b], stdout);
            }
            printf("]}");
        } else {
            char a[64], p[64];
            snprintf(a, sizeof a, "%.2fx (%.2f-%.2f)", ratio[0], lo[0], hi[0]);
            snprintf(p, sizeof p, "%.2fx (%.2f-%.2f)", ratio[1], lo[1], hi[1]);
            printf("  %-40s %12.0f %9.1f %22s %22s\n", paths[b], med[0], med[1], a, p);
        }
    }
    if (j->json)
        printf("], \"errors\": %" PRIu64 "}\n", errors);
    else
        printf("  errors: %" PRIu64 "%s\n", errors, errors ? " (the comparison is invalid)" : "");
    free(res);
    free(v);
    return errors ? 1 : 0;
}

/* ---- Command line ---- */

int main(int argc, char **argv)
{
    struct job j = {.rw = RW_RANDREAD, .bs = 4096, .iodepth = 32, .queues = 1, .runtime_s = 10, .writeback = -1,
                    .rounds = 3, .timeout_ms = 10000, .reconnect_ms = -1};
    const char *socket_path = NULL;
    char **compare_paths = NULL;
    unsigned compare_n = 0;
    bool seeded = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        static const char *const valued[] = {"--socket", "--rw", "--bs", "--iodepth", "--queues", "--runtime",
                                             "--ramp", "--size", "--flush-every", "--wait", "--ring", "--writeback",
                                             "--rounds", "--seed", "--timeout", "--reconnect"};
        bool takes_value = false;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
            takes_value |= strcmp(a, valued[k]) == 0;
        if (takes_value && !v)
            usage_error("%s needs a value", a);
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("vub-bench %s\n", VUB_VERSION);
            return 0;
        } else if (!strcmp(a, "--verify")) {
            j.verify = true;
        } else if (!strcmp(a, "--json")) {
            j.json = true;
        } else if (!strcmp(a, "--compare")) {
            compare_paths = &argv[i + 1];
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                i++, compare_n++;
            if (compare_n < 2)
                usage_error("--compare wants two or more sockets");
            continue;
        } else if (!strcmp(a, "--socket")) {
            socket_path = v;
        } else if (!strcmp(a, "--rw")) {
            j.rw = (enum rw)pick(a, v, rw_names, 5);
        } else if (!strcmp(a, "--bs")) {
            uint64_t bs = parse_size(a, v);
            if (bs == 0 || bs % 512 || bs > (4u << 20))
                usage_error("--bs wants a multiple of 512 up to 4M, not '%s'", v);
            j.bs = (uint32_t)bs;
        } else if (!strcmp(a, "--iodepth")) {
            j.iodepth = (unsigned)parse_count(a, v, 1, 1024);
        } else if (!strcmp(a, "--queues")) {
            j.queues = (unsigned)parse_count(a, v, 1, VUB_MAX_QUEUES);
        } else if (!strcmp(a, "--runtime")) {
            j.runtime_s = parse_time(a, v);
        } else if (!strcmp(a, "--ramp")) {
            j.ramp_s = parse_time(a, v);
        } else if (!strcmp(a, "--size")) {
            j.size = parse_size(a, v);
        } else if (!strcmp(a, "--flush-every")) {
            j.flush_every = (unsigned)parse_count(a, v, 1, 1u << 30);
        } else if (!strcmp(a, "--wait")) {
            j.poll = pick(a, v, (const char *const[]){"eventfd", "poll"}, 2) == 1;
        } else if (!strcmp(a, "--ring")) {
            j.ring = (enum vub_client_ring)pick(a, v, (const char *const[]){"auto", "split", "packed"}, 3);
        } else if (!strcmp(a, "--writeback")) {
            j.writeback = pick(a, v, (const char *const[]){"off", "on"}, 2);
        } else if (!strcmp(a, "--rounds")) {
            j.rounds = (unsigned)parse_count(a, v, 1, 100);
        } else if (!strcmp(a, "--seed")) {
            j.seed = parse_size(a, v);
            seeded = true;
        } else if (!strcmp(a, "--timeout")) {
            j.timeout_ms = (int)parse_count(a, v, 1, 3600000);
        } else if (!strcmp(a, "--reconnect")) {
            j.reconnect_ms = (int)parse_count(a, v, 0, 3600000);
        } else {
            usage_error("unknown option '%s'", a);
        }
        i += takes_value;
    }
    if (!socket_path == !compare_paths)
        usage_error("give either --socket PATH or --compare PATH PATH...");
    if (j.runtime_s <= 0)
        usage_error("--runtime must be more than 0");
    if (!seeded)
        j.seed = now_ns();
    if (compare_paths)
        return compare(&j, compare_paths, compare_n);

    struct result r;
    char why[512];
    if (!run_job(&j, socket_path, &r, why, sizeof why)) {
        fprintf(stderr, "vub-bench: %s\n", why);
        return 1;
    }
    if (why[0])
        fprintf(stderr, "vub-bench: %s\n", why);
    if (j.json) {
        printf("{\"job\": ");
        json_job(&j, stdout);
        printf(", \"socket\": \"%s\", \"result\": ", socket_path);
        json_result(&r, stdout);
        printf("}\n");
    } else {
        report_text(&j, socket_path, &r);
    }
    return r.errors ? 1 : 0;
}
