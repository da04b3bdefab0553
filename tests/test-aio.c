/* test-aio: the io_uring engine held to the synchronous one.
 *
 * The synchronous engine is the reference: every test here runs one stream
 * of requests through vub's own client against a back-end on each engine
 * (and with cache=none) and compares what the driver sees and what the disk
 * holds. Where order matters the test steps the back-end itself, in this
 * thread, so it can look inside: which SQEs were filled, how many requests
 * are in flight, in which order completions are taken. Each case is named
 * after the rule it proves, with its tag.
 */
#include "../vub.c"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

static int failures;

__attribute__((format(printf, 2, 3))) static void check(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s - ", ok ? "ok" : "not ok");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    failures += !ok;
}

#define DISK_BYTES (16u << 20)
#define CHUNK_BYTES (256u << 10) /* requests of one batch stay in chunks of their own */
#define MAX_BATCH 16u

/* ---- a back-end on a thread, or stepped by the test ---- */

struct server {
    struct vub_dev *dev;
    struct vub_image *img;
    int fd;                 /* the back-end's end of the socket */
    pthread_t thread;
    atomic_bool stop;       /* the thread returns (without detaching) */
    bool running;
    bool as_disk;           /* a tmpfs image treated as a disk file: its reads go round the ring */
    char path[64];
};

static void *server_main(void *arg)
{
    struct server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p[VUB_MAX_POLLFDS];
        size_t n = vub_dev_pollfds(s->dev, p, VUB_MAX_POLLFDS);
        if (poll(p, (nfds_t)n, 10) < 0 && errno != EINTR)
            break;
        if (vub_dev_dispatch(s->dev, p, n) != VUB_OK)
            break;
    }
    return NULL;
}

static void server_run(struct server *s)
{
    atomic_store(&s->stop, false);
    pthread_create(&s->thread, NULL, server_main, s);
    s->running = true;
}

static void server_pause(struct server *s)
{
    if (!s->running)
        return;
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    s->running = false;
}

/* One dispatch pass by the test: what the server thread would do once. */
static enum vub_err server_step(struct server *s, int timeout_ms)
{
    struct pollfd p[VUB_MAX_POLLFDS];
    size_t n = vub_dev_pollfds(s->dev, p, VUB_MAX_POLLFDS);
    poll(p, (nfds_t)n, timeout_ms);
    return vub_dev_dispatch(s->dev, p, n);
}

/* A fresh disk whose every 4 KiB block holds its own number; in build/,
 * or in memory (/dev/shm) when path already names that directory. */
static void make_disk(char *path, size_t len)
{
    if (strncmp(path, "/dev/shm/", 9) != 0)
        snprintf(path, len, "build/test-aio-XXXXXX");
    int fd = mkstemp(path);
    static uint8_t block[4096];
    for (uint32_t off = 0; fd >= 0 && off < DISK_BYTES; off += sizeof block) {
        memset(block, (int)(off / sizeof block) & 0xff, sizeof block);
        if (pwrite(fd, block, sizeof block, off) != (ssize_t)sizeof block)
            abort();
    }
    if (fd < 0)
        abort();
    close(fd);
}

/* A back-end on the disk at s->path (made fresh if empty). */
static void server_start(struct server *s, enum vub_aio aio, bool direct, uint16_t queues)
{
    char why[256];
    if (!s->path[0] || strcmp(s->path + strlen(s->path) - 6, "XXXXXX") == 0)
        make_disk(s->path, sizeof s->path);
    struct vub_image_opts io = {.direct = direct};
    if (vub_image_open(&s->img, s->path, &io, why, sizeof why) != VUB_OK) {
        fprintf(stderr, "%s\n", why);
        abort();
    }
    if (s->as_disk)
        s->img->in_memory = false; /* tmpfs takes no RWF_NOWAIT: every read is submitted */
    struct vub_dev_config dc = {.image = s->img, .aio = aio, .num_queues = queues, .serial = "aio"};
    int sv[2];
    if (vub_dev_new(&s->dev, &dc) != VUB_OK || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
        vub_dev_attach(s->dev, sv[1]) != VUB_OK)
        abort();
    s->fd = sv[0];
    server_run(s);
}

/* The ring layout every test runs on; main() runs them on both. */
static enum vub_client_ring layout = VUB_CLIENT_RING_SPLIT;

static const char *layout_name(void) { return layout == VUB_CLIENT_RING_SPLIT ? "split" : "packed"; }

static struct vub_client *client_connect(struct server *s, unsigned queues)
{
    struct vub_client_opts o = {.num_queues = queues, .queue_size = 64, .timeout_ms = 5000,
                                .buffer_bytes = 8u << 20, .ring = layout};
    struct vub_client *cl;
    char why[256];
    if (vub_client_connect_fd(&cl, s->fd, &o, why, sizeof why) != VUB_OK) {
        fprintf(stderr, "connect: %s\n", why);
        abort();
    }
    return cl;
}

static void server_stop(struct server *s)
{
    server_pause(s);
    vub_dev_free(s->dev);
    vub_image_close(s->img);
    unlink(s->path);
}

static struct vub_dev_stats stats_of(const struct server *s)
{
    struct vub_dev_stats st;
    vub_dev_stats(s->dev, &st);
    return st;
}

static const char *engine_name(enum vub_aio aio, bool direct)
{
    return aio == VUB_AIO_SYNC ? (direct ? "sync, cache=none" : "sync") : (direct ? "io_uring, cache=none" : "io_uring");
}

/* ---- one request stream, every engine ---- */

/* A small deterministic generator, so every engine sees the same stream. */
static uint32_t rng(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*state >> 33);
}

struct outcome {
    uint8_t status[4096];   /* every request's status, in submission order */
    uint32_t crc[4096];     /* every read's data, as a checksum */
    unsigned count;
    uint32_t disk_crc;      /* the whole disk afterwards */
    uint64_t bounced;
};

static uint32_t crc_of(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* The disk file as it stands, checksummed through a plain fd. */
static uint32_t disk_crc(const char *path)
{
    static uint8_t disk[DISK_BYTES];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd < 0 ? -1 : pread(fd, disk, sizeof disk, 0);
    if (fd >= 0)
        close(fd);
    return n == (ssize_t)sizeof disk ? crc_of(disk, sizeof disk) : 0;
}

/* Batches of reads, writes and flushes, each request in a chunk of its
 * own within its batch (so no two race), some from buffers not aligned for
 * O_DIRECT (8 bytes off) and some larger than a bounce buffer. */
static void run_stream(enum vub_aio aio, bool direct, uint64_t seed, struct outcome *out)
{
    struct server s = {.dev = NULL};
    server_start(&s, aio, direct, 1);
    struct vub_client *cl = client_connect(&s, 1);
    struct vub_client_queue *q = vub_client_queue(cl, 0);
    uint8_t *pool = vub_client_alloc(cl, MAX_BATCH * (CHUNK_BYTES + 4096));
    memset(out, 0, sizeof *out);
    for (unsigned round = 0; round < 40 && out->count + MAX_BATCH <= 4096; round++) {
        unsigned n = 1 + rng(&seed) % MAX_BATCH, first = out->count;
        struct iovec iov[MAX_BATCH];
        unsigned chunk0 = rng(&seed) % (DISK_BYTES / CHUNK_BYTES - MAX_BATCH);
        bool reads[MAX_BATCH];
        for (unsigned i = 0; i < n; i++) {
            uint32_t kind = rng(&seed) % 8, len = 512u * (1 + rng(&seed) % 64);
            if (rng(&seed) % 8 == 0)
                len = CHUNK_BYTES - 8192; /* larger than one bounce buffer */
            uint8_t *buf = pool + (size_t)i * (CHUNK_BYTES + 4096) + (rng(&seed) % 3 == 0 ? 8 : 0);
            iov[i] = (struct iovec){buf, len};
            struct vub_client_req r = {.offset = (uint64_t)(chunk0 + i) * CHUNK_BYTES + 512u * (rng(&seed) % 8),
                                       .iov = &iov[i], .iov_count = 1, .cookie = out->count + i};
            r.op = kind < 4 ? VUB_CLIENT_READ : kind < 7 ? VUB_CLIENT_WRITE : VUB_CLIENT_FLUSH;
            reads[i] = r.op == VUB_CLIENT_READ;
            if (r.op == VUB_CLIENT_WRITE)
                for (uint32_t b = 0; b < len; b++)
                    buf[b] = (uint8_t)(rng(&seed) >> 8);
            else
                memset(buf, 0xee, len);
            if (vub_client_submit(q, &r) != VUB_OK)
                abort();
        }
        vub_client_kick(q);
        for (unsigned got = 0; got < n;) {
            struct vub_client_completion c[MAX_BATCH];
            unsigned k = 0;
            if (vub_client_wait(q, 5000) != VUB_OK || vub_client_reap(q, c, MAX_BATCH, &k) != VUB_OK)
                abort();
            for (unsigned j = 0; j < k; j++) {
                unsigned i = (unsigned)c[j].cookie - first;
                out->status[c[j].cookie] = c[j].status;
                if (reads[i])
                    out->crc[c[j].cookie] = crc_of(iov[i].iov_base, iov[i].iov_len);
            }
            got += k;
        }
        out->count += n;
    }
    out->bounced = stats_of(&s).bounced;
    vub_client_close(cl);
    server_pause(&s);
    out->disk_crc = disk_crc(s.path);
    server_stop(&s);
}

/* [BLK-AIO] the same stream gives the same statuses, the same read data
 * and the same disk on every engine. */
static void test_engines_agree(void)
{
    static struct outcome ref, got;
    const enum vub_aio aios[] = {VUB_AIO_SYNC, VUB_AIO_IO_URING, VUB_AIO_IO_URING, VUB_AIO_SYNC};
    const bool directs[] = {false, false, true, true};
    for (uint64_t seed = 1; seed <= 3; seed++) {
        for (unsigned e = 0; e < 4; e++) {
            struct outcome *o = e == 0 ? &ref : &got;
            run_stream(aios[e], directs[e], seed, o);
            if (e == 0)
                continue;
            bool same = o->count == ref.count && memcmp(o->status, ref.status, ref.count) == 0 &&
                        memcmp(o->crc, ref.crc, ref.count * sizeof ref.crc[0]) == 0 &&
                        o->disk_crc == ref.disk_crc && o->disk_crc != 0;
            unsigned ok_count = 0;
            for (unsigned i = 0; i < o->count; i++)
                ok_count += o->status[i] == VUB_BLK_S_OK;
            check(same && ok_count == o->count,
                  "[BLK-AIO] %s, seed %llu: %s answers %u requests as the sync engine does (statuses, read data, disk)",
                  layout_name(), (unsigned long long)seed, engine_name(aios[e], directs[e]), o->count);
            if (directs[e])
                check(o->bounced > 0, "[BLK-BOUNCE] seed %llu: %s bounced %llu unaligned transfers",
                      (unsigned long long)seed, engine_name(aios[e], directs[e]),
                      (unsigned long long)o->bounced);
        }
    }
}

/* ---- the engine stepped by hand ---- */

/* Waits until the kernel has posted n completions on the queue's ring. */
static bool wait_cqes(struct vub_dev_queue *dq, unsigned n)
{
    struct vub_uring *u = &dq->aio.ring;
    for (int i = 0; i < 20000; i++) {
        if (vub_uring_load(u->cq_tail) - *u->cq_head >= n)
            return true;
        struct pollfd p = {.fd = u->fd, .events = POLLIN};
        poll(&p, 1, 1);
    }
    return false;
}

/* The last SQE the queue filled. */
static const struct io_uring_sqe *last_sqe(const struct vub_dev_queue *dq, unsigned back)
{
    const struct vub_uring *u = &dq->aio.ring;
    return &u->sqes[(u->sq_filled - 1 - back) & *u->sq_mask];
}

struct stepped {
    struct server s;
    struct vub_client *cl;
    struct vub_client_queue *q;
    struct vub_dev_queue *dq;
    uint8_t *buf;            /* 1 MiB of the client's shared memory */
};

/* Starts the back-end on t->s.path, connects, and leaves the back-end to
 * the test's steps. */
static void stepped_start(struct stepped *t, bool direct)
{
    server_start(&t->s, VUB_AIO_IO_URING, direct, 1);
    t->cl = client_connect(&t->s, 1);
    server_pause(&t->s);
    t->q = vub_client_queue(t->cl, 0);
    t->dq = &t->s.dev->queues[0];
    t->buf = vub_client_alloc(t->cl, 1u << 20);
}

/* A stepped back-end whose every transfer goes round the ring: O_DIRECT on
 * a disk file (direct), or else a tmpfs file taken for a disk file, whose
 * reads the kernel serves from memory, quickly, through its workers. */
static void stepped_open(struct stepped *t, bool direct)
{
    memset(t, 0, sizeof *t);
    if (!direct) {
        snprintf(t->s.path, sizeof t->s.path, "/dev/shm/vub-test-aio-XXXXXX");
        t->s.as_disk = true;
    }
    stepped_start(t, direct);
}

static void stepped_close(struct stepped *t)
{
    server_run(&t->s);
    vub_client_close(t->cl);
    server_stop(&t->s);
}

static void submit(struct stepped *t, enum vub_client_op op, uint64_t off, void *buf, size_t len, uint64_t cookie)
{
    static struct iovec iov[64];
    struct iovec *v = &iov[cookie % 64];
    *v = (struct iovec){buf, len};
    struct vub_client_req r = {.op = op, .offset = off, .iov = v, .iov_count = op == VUB_CLIENT_FLUSH ? 0 : 1,
                               .cookie = cookie};
    if (vub_client_submit(t->q, &r) != VUB_OK)
        abort();
}

/* Takes up to cap completions now, without waiting. */
static unsigned reap(struct stepped *t, struct vub_client_completion *c, unsigned cap)
{
    unsigned n = 0;
    if (vub_client_reap(t->q, c, cap, &n) != VUB_OK)
        return 0;
    return n;
}

/* [BLK-AIO] Requests complete in the order the kernel finishes them: eight
 * reads in flight at once, their completions taken in reverse (the test
 * turns the completion ring around before the engine reads it), come back
 * to the driver in reverse, each with its own data; one pass publishes all
 * eight and notifies once. */
static void test_out_of_order(void)
{
    struct stepped t;
    stepped_open(&t, false);
    for (unsigned i = 0; i < 8; i++)
        submit(&t, VUB_CLIENT_READ, (uint64_t)(i + 1) * 4096 * 3, t.buf + i * 4096, 4096, i);
    vub_client_kick(t.q);
    server_step(&t.s, 1000);
    check(t.dq->aio.in_flight == 8, "[BLK-AIO] eight reads popped in one pass are all in flight at once (%u)",
          t.dq->aio.in_flight);
    bool posted = wait_cqes(t.dq, 8);
    /* Slot i carries request i (all were free, taken in order); the kernel
     * posted the completions in whatever order it finished them: sort
     * them into slot order descending, the reverse of submission. */
    struct vub_uring *u = &t.dq->aio.ring;
    unsigned head = *u->cq_head;
    for (unsigned i = 0; posted && i < 8; i++)
        for (unsigned j = i + 1; j < 8; j++) {
            struct io_uring_cqe *a = &u->cqes[(head + i) & *u->cq_mask], *b = &u->cqes[(head + j) & *u->cq_mask];
            if (b->user_data > a->user_data) {
                struct io_uring_cqe tmp = *a;
                *a = *b;
                *b = tmp;
            }
        }
    struct vub_dev_stats before = stats_of(&t.s);
    server_step(&t.s, 1000);
    struct vub_dev_stats after = stats_of(&t.s);
    struct vub_client_completion c[8];
    unsigned n = reap(&t, c, 8);
    bool reversed = n == 8, data = n == 8;
    for (unsigned i = 0; i < n; i++) {
        reversed &= c[i].cookie == 7 - i && c[i].status == VUB_BLK_S_OK;
        data &= t.buf[c[i].cookie * 4096] == (uint8_t)((c[i].cookie + 1) * 3);
    }
    check(posted && reversed && data,
          "[BLK-AIO] %s: completions taken in reverse reach the driver in reverse, each with its own data",
          layout_name());
    check(after.completion_passes - before.completion_passes == 1 &&
              after.notifications - before.notifications <= 1,
          "[BLK-AIO] one completion pass publishes all eight and notifies at most once (%llu passes, %llu "
          "notifications)",
          (unsigned long long)(after.completion_passes - before.completion_passes),
          (unsigned long long)(after.notifications - before.notifications));

    /* EVENT_IDX honoured by the completion path: the driver's used_event
     * (split) or DISABLE flag (packed) decides. Split: used_event behind
     * the window, no notification; inside it, exactly one. */
    vub_client_set_polling(t.q, true);
    struct vub_drv *sd = &t.q->ring;
    for (int phase = 0; phase < (t.q->ring.packed ? 1 : 2); phase++) {
        if (!t.q->ring.packed)
            vub_ring_store16(sd->driver + 4 + 2 * (size_t)sd->size,
                             (uint16_t)(sd->split.last_used + (phase ? 2 : -1)), memory_order_seq_cst);
        before = stats_of(&t.s);
        for (unsigned i = 0; i < 4; i++)
            submit(&t, VUB_CLIENT_READ, 4096 * i, t.buf + i * 4096, 4096, 100 + i);
        vub_client_kick(t.q);
        unsigned got = 0;
        for (int i = 0; i < 1000 && got < 4; i++) {
            server_step(&t.s, 5);
            got += reap(&t, c, 8);
        }
        after = stats_of(&t.s);
        check(got == 4 && after.notifications - before.notifications == (uint64_t)phase,
              "[%s] %s: 4 completions with the driver's event %s bring %d notification(s) (%llu)",
              t.q->ring.packed ? "VQ-PACKED-NOTIFY" : "VQ-SPLIT-NOTIFY", layout_name(),
              t.q->ring.packed ? "set to DISABLE" : phase ? "inside the window" : "behind the window", phase,
              (unsigned long long)(after.notifications - before.notifications));
    }
    vub_client_set_polling(t.q, false);
    stepped_close(&t);
}

/* [BLK-FLUSH-ASYNC] A flush is an fdatasync submitted like any transfer:
 * it holds back nothing (a write, the flush and a read popped together are
 * in flight together), waits for nothing, and covers the writes completed
 * before it. [BLK-DURABLE] with the write cache off, each write carries
 * RWF_DSYNC instead of a flush of its own; with it on, none. */
static void test_flush_and_write_through(void)
{
    struct stepped t;
    stepped_open(&t, false);
    memset(t.buf, 0x5a, 8192);
    submit(&t, VUB_CLIENT_WRITE, 1 << 20, t.buf, 4096, 1);
    submit(&t, VUB_CLIENT_FLUSH, 0, NULL, 0, 2);
    submit(&t, VUB_CLIENT_READ, 2 << 20, t.buf + 4096, 4096, 3);
    vub_client_kick(t.q);
    uint64_t syncs = stats_of(&t.s).flushes;
    server_step(&t.s, 1000);
    const struct io_uring_sqe *w = last_sqe(t.dq, 2), *f = last_sqe(t.dq, 1);
    check(t.dq->aio.in_flight == 3, "[BLK-FLUSH-ASYNC] a write, a flush and a read are in flight together (%u)",
          t.dq->aio.in_flight);
    check(f->opcode == IORING_OP_FSYNC && f->fsync_flags == IORING_FSYNC_DATASYNC &&
              !(f->flags & (IOSQE_IO_DRAIN | IOSQE_IO_LINK)),
          "[BLK-FLUSH-ASYNC] the flush is IORING_OP_FSYNC with DATASYNC, neither drained nor linked");
    check(w->opcode == IORING_OP_WRITEV && w->rw_flags == RWF_DSYNC,
          "[BLK-DURABLE] write cache off (writeback 0): the write itself carries RWF_DSYNC");
    struct vub_client_completion c[8];
    unsigned got = 0;
    bool ok = true;
    for (int i = 0; i < 1000 && got < 3; i++) {
        server_step(&t.s, 5);
        unsigned n = reap(&t, c, 8);
        for (unsigned k = 0; k < n; k++)
            ok &= c[k].status == VUB_BLK_S_OK;
        got += n;
    }
    check(got == 3 && ok && stats_of(&t.s).flushes == syncs + 1,
          "[BLK-FLUSH-ASYNC] all three complete with OK, one flush counted");

    /* [BLK-DURABLE] a discard with the cache off: its fallocate is done in
     * the pass, the fdatasync after it is submitted like a flush. */
    uint64_t filled = t.dq->aio.ring.sq_filled;
    struct vub_client_req d = {.op = VUB_CLIENT_DISCARD, .offset = 3 << 20, .length = 65536, .cookie = 9};
    if (vub_client_submit(t.q, &d) != VUB_OK)
        abort();
    vub_client_kick(t.q);
    server_step(&t.s, 1000);
    check(t.dq->aio.ring.sq_filled == filled + 1 && last_sqe(t.dq, 0)->opcode == IORING_OP_FSYNC &&
              t.dq->aio.in_flight == 1,
          "[BLK-DURABLE] write cache off: a discard's fdatasync is submitted, not run in the loop");
    got = 0;
    for (int i = 0; i < 1000 && got < 1; i++) {
        server_step(&t.s, 5);
        got += reap(&t, c, 8);
    }
    check(got == 1 && c[0].status == VUB_BLK_S_OK, "[BLK-DURABLE] ... and the discard completes with OK");

    t.s.dev->blk.writeback = 1; /* as SET_CONFIG would turn the cache on */
    submit(&t, VUB_CLIENT_WRITE, 1 << 20, t.buf, 4096, 4);
    vub_client_kick(t.q);
    server_step(&t.s, 1000);
    check(last_sqe(t.dq, 0)->opcode == IORING_OP_WRITEV && last_sqe(t.dq, 0)->rw_flags == 0,
          "[BLK-DURABLE] write cache on: the write goes without RWF_DSYNC (a FLUSH makes it durable)");
    for (int i = 0; i < 1000 && !reap(&t, c, 8); i++)
        server_step(&t.s, 5);

    /* A flush that fails says so: the image fd is swapped for a pipe for
     * the one submission (fdatasync on a pipe is EINVAL). */
    int pipefd[2], saved = dup(t.s.img->fd);
    if (pipe(pipefd) != 0 || saved < 0)
        abort();
    dup2(pipefd[0], t.s.img->fd);
    submit(&t, VUB_CLIENT_FLUSH, 0, NULL, 0, 5);
    vub_client_kick(t.q);
    server_step(&t.s, 1000);
    wait_cqes(t.dq, 1); /* the kernel may look the fd up only when it runs the flush */
    dup2(saved, t.s.img->fd);
    close(saved);
    close(pipefd[0]);
    close(pipefd[1]);
    unsigned n = 0;
    for (int i = 0; i < 1000 && !n; i++) {
        server_step(&t.s, 5);
        n = reap(&t, c, 8);
    }
    check(n == 1 && c[0].status == VUB_BLK_S_IOERR, "[BLK-FLUSH] a failed asynchronous flush completes with IOERR");
    stepped_close(&t);
}

/* [BLK-BOUNCE] With cache=none a buffer not aligned for O_DIRECT goes
 * through a bounce buffer from the queue's pool (counted); an aligned one
 * goes straight to the file. A transfer larger than a pool buffer goes
 * through the reserve, synchronously. Data reads back either way. */
static void test_bounce(void)
{
    struct stepped t;
    stepped_open(&t, true);
    check(t.s.img->direct, "[IMG-DIRECT] cache=none opened the raw image O_DIRECT");
    uint8_t *odd = t.buf + 8, *odd_back = t.buf + (512u << 10) + 8;
    for (unsigned i = 0; i < 4096; i++)
        odd[i] = (uint8_t)(i * 13 + 1);
    uint64_t b0 = stats_of(&t.s).bounced;
    submit(&t, VUB_CLIENT_WRITE, 8 << 20, odd, 4096, 1);
    vub_client_kick(t.q);
    server_step(&t.s, 1000);
    check(t.dq->aio.in_flight == 1 && t.dq->bq.bounce_free != (1u << VUB_BOUNCE_COUNT) - 1,
          "[BLK-BOUNCE] an unaligned write is in flight from a pool buffer");
    struct vub_client_completion c[4];
    unsigned n = 0;
    for (int i = 0; i < 1000 && !n; i++) {
        server_step(&t.s, 5);
        n = reap(&t, c, 4);
    }
    submit(&t, VUB_CLIENT_READ, 8 << 20, odd_back, 4096, 2);
    vub_client_kick(t.q);
    for (int i = 0; i < 1000 && n < 2; i++) {
        server_step(&t.s, 5);
        n += reap(&t, c, 4);
    }
    check(n == 2 && memcmp(odd, odd_back, 4096) == 0 && stats_of(&t.s).bounced == b0 + 2 &&
              t.dq->bq.bounce_free == (1u << VUB_BOUNCE_COUNT) - 1,
          "[BLK-BOUNCE] unaligned write and read: the data round-trips, 2 bounces counted, the pool is whole again");
    submit(&t, VUB_CLIENT_WRITE, 9 << 20, t.buf, 4096, 3);
    vub_client_kick(t.q);
    n = 0;
    for (int i = 0; i < 1000 && !n; i++) {
        server_step(&t.s, 5);
        n = reap(&t, c, 4);
    }
    check(n == 1 && stats_of(&t.s).bounced == b0 + 2, "[BLK-BOUNCE] an aligned buffer is not bounced");
    stepped_close(&t);
}

/* [VU-QUIESCE] A message is handled with nothing in flight: GET_VRING_BASE
 * arriving while eight reads are in the kernel waits for them, pushes
 * them, and only then answers with the ring position. */
static void test_quiesce(void)
{
    struct stepped t;
    stepped_open(&t, false);
    for (unsigned i = 0; i < 8; i++)
        submit(&t, VUB_CLIENT_READ, 4096 * i, t.buf + i * 4096, 4096, i);
    vub_client_kick(t.q);
    server_step(&t.s, 1000);
    unsigned in_flight = t.dq->aio.in_flight;
    struct vub_vu_header h = {VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, sizeof(struct vub_vu_vring_state)};
    struct vub_vu_vring_state st = {0, 0};
    vub_vu_send(t.cl->sock, &h, &st, NULL, 0);
    enum vub_err err = vub_dev_handle_msg(t.s.dev);
    struct vub_client_completion c[8];
    unsigned n = reap(&t, c, 8);
    struct vub_msg reply;
    enum vub_err rerr = vub_vu_recv(t.cl->sock, &reply, NULL);
    uint32_t base = reply.payload.state.num;
    bool packed = vub_client_info(t.cl)->packed;
    bool at_8 = packed ? (base & 0x7fff) == 8 && ((base >> 16) & 0x7fff) == 8 : base == 8;
    check(in_flight == 8 && err == VUB_OK && t.dq->aio.in_flight == 0 && n == 8 && rerr == VUB_OK && at_8,
          "[VU-QUIESCE] %s: GET_VRING_BASE with 8 reads in flight: all 8 completed first, then base 0x%x answered",
          layout_name(), base);
    /* The ring is stopped now; the client's close stops it again, harmlessly. */
    stepped_close(&t);
}

/* [BLK-AIO] A ring that refuses submissions for good stops the queue with
 * a reason (the ring fd is replaced by an eventfd, which io_uring_enter
 * does not take). */
static void test_ring_failure(void)
{
    struct stepped t;
    stepped_open(&t, false);
    int ev = eventfd(0, EFD_CLOEXEC), saved = dup(t.dq->aio.ring.fd);
    dup2(ev, t.dq->aio.ring.fd);
    submit(&t, VUB_CLIENT_READ, 0, t.buf, 4096, 1);
    vub_client_kick(t.q);
    enum vub_err err = server_step(&t.s, 1000);
    check(err == VUB_E_PROTO && t.s.dev->err.reason == VUB_R_BLK_AIO && strstr(vub_dev_why(t.s.dev), "[BLK-AIO]"),
          "[BLK-AIO] io_uring_enter failing for good stops the queue: %s", vub_dev_why(t.s.dev));
    dup2(saved, t.dq->aio.ring.fd);
    close(saved);
    close(ev);
    server_run(&t.s);
    vub_client_close(t.cl);
    server_stop(&t.s);
}

/* [BLK-AIO-QCOW2] qcow2 reads run synchronously on the io_uring engine:
 * nothing is submitted, the read completes inside the pass. */
static void test_qcow2_sync(void)
{
    struct stepped t;
    memset(&t, 0, sizeof t);
    snprintf(t.s.path, sizeof t.s.path, "build/test-aio-%d.qcow2", (int)getpid());
    char cmd[256];
    snprintf(cmd, sizeof cmd, "qemu-img create -q -f qcow2 %s 16M", t.s.path);
    if (system(cmd) != 0) {
        printf("skip - [BLK-AIO-QCOW2] qemu-img cannot make a qcow2 image\n");
        return;
    }
    stepped_start(&t, false);
    memset(t.buf, 0xee, 4096);
    submit(&t, VUB_CLIENT_READ, 4096, t.buf, 4096, 1);
    vub_client_kick(t.q);
    server_step(&t.s, 1000);
    unsigned in_flight = t.dq->aio.in_flight;
    struct vub_client_completion c;
    unsigned n = reap(&t, &c, 1);
    check(in_flight == 0 && n == 1 && c.status == VUB_BLK_S_OK && t.buf[0] == 0 && t.buf[4095] == 0,
          "[BLK-AIO-QCOW2] a qcow2 read on the io_uring engine completes in the pass, nothing submitted");
    stepped_close(&t);
}

/* [IMG-DIRECT] direct I/O is for raw images: a qcow2 image refuses it by name. */
static void test_direct_qcow2(void)
{
    char path[64], why[256];
    snprintf(path, sizeof path, "build/test-aio-XXXXXX");
    int fd = mkstemp(path);
    static const uint8_t head[8] = {'Q', 'F', 'I', 0xfb, 0, 0, 0, 3};
    if (fd < 0 || pwrite(fd, head, sizeof head, 0) != (ssize_t)sizeof head || ftruncate(fd, 65536) != 0)
        abort();
    close(fd);
    struct vub_image *img = NULL;
    struct vub_image_opts io = {.direct = true};
    enum vub_err err = vub_image_open(&img, path, &io, why, sizeof why);
    check(err == VUB_E_UNSUPP && !img && strstr(why, "[IMG-DIRECT]"), "[IMG-DIRECT] qcow2 with direct I/O: %s", why);
    unlink(path);
}

/* [VU-POLL-KICKS] While a queue spins the driver is told not to kick: a
 * request submitted then brings no kick and is served by the spin; one
 * submitted just before the spin ends is served by ending it (re-armed,
 * re-checked); afterwards kicks come again. */
static void test_spin_suppresses_kicks(void)
{
    struct stepped t;
    stepped_open(&t, false);
    struct vub_client_completion c[4];
    struct pollfd kick = {.fd = t.dq->kick_fd, .events = POLLIN};
    vub_dev_queue_set_polling(t.s.dev, 0, true);
    vub_dev_queue_poll(t.s.dev, 0, NULL); /* an empty pass: kicks now suppressed */
    submit(&t, VUB_CLIENT_READ, 0, t.buf, 4096, 1);
    vub_client_kick(t.q);
    bool kicked = poll(&kick, 1, 0) == 1;
    uint64_t served = 0;
    for (int i = 0; i < 1000 && !served; i++)
        vub_dev_queue_poll(t.s.dev, 0, &served);
    unsigned n = 0;
    for (int i = 0; i < 5000 && !n; i++) {
        usleep(1000); /* the kernel's worker takes its time */
        vub_dev_queue_poll(t.s.dev, 0, NULL);
        n = reap(&t, c, 4);
    }
    check(!kicked && served == 1 && n == 1, "[VU-POLL-KICKS] %s: while spinning a request brings no kick and "
          "the spin serves it", layout_name());
    submit(&t, VUB_CLIENT_READ, 4096, t.buf, 4096, 2);
    vub_client_kick(t.q);
    vub_dev_queue_set_polling(t.s.dev, 0, false);
    n = 0;
    for (int i = 0; i < 1000 && !n; i++) {
        struct pollfd ring = {.fd = t.dq->aio.ring.fd, .events = POLLIN};
        poll(&ring, 1, 1);
        if (t.dq->aio.in_flight)
            vub_dev_queue_poll(t.s.dev, 0, NULL); /* completions only: the ring was re-checked already */
        n = reap(&t, c, 4);
    }
    check(n == 1 && c[0].cookie == 2, "[VU-POLL-KICKS] %s: a request that came as the spin ended is served by "
          "ending it (kicks re-armed, ring re-checked)", layout_name());
    for (uint64_t v; read(t.dq->kick_fd, &v, sizeof v) > 0;)
        ; /* the kick of request 2, if the driver sent one */
    submit(&t, VUB_CLIENT_READ, 8192, t.buf, 4096, 3);
    vub_client_kick(t.q);
    check(poll(&kick, 1, 0) == 1, "[VU-POLL-KICKS] %s: after the spin the driver kicks again", layout_name());
    for (int i = 0; i < 1000 && !reap(&t, c, 4); i++)
        server_step(&t.s, 5);
    stepped_close(&t);
}

/* ---- a queue per thread, messages in between ---- */

/* The back-end as a threaded program runs it: a control thread and a
 * thread per queue, the queue threads paused (at a gate) around every
 * message, as vub.h "One thread per queue" asks. */
struct threaded {
    struct server s;
    pthread_t control, queue_threads[2];
    pthread_mutex_t gate[2];   /* held by a queue thread during its round, by the control thread to pause it */
    atomic_bool pause, stop;
    atomic_uint messages;      /* handled by the control thread */
    atomic_uint busy_messages; /* ... with requests in flight when it came */
    atomic_int queue_err;
};

struct queue_thread_arg {
    struct threaded *th;
    unsigned q;
};

static void *queue_thread_main(void *arg)
{
    struct queue_thread_arg *a = arg;
    struct threaded *th = a->th;
    while (!atomic_load(&th->stop)) {
        if (atomic_load(&th->pause)) {
            sched_yield();
            continue;
        }
        pthread_mutex_lock(&th->gate[a->q]);
        struct pollfd p[4];
        size_t n = vub_dev_queue_pollfds(th->s.dev, a->q, p, 4);
        poll(p, (nfds_t)n, 1);
        enum vub_err err = vub_dev_queue_dispatch(th->s.dev, a->q, p, n);
        pthread_mutex_unlock(&th->gate[a->q]);
        if (err != VUB_OK)
            atomic_store(&th->queue_err, (int)err);
    }
    return NULL;
}

static void *control_thread_main(void *arg)
{
    struct threaded *th = arg;
    while (!atomic_load(&th->stop)) {
        struct pollfd p[2];
        size_t n = vub_dev_control_pollfds(th->s.dev, p, 2);
        if (poll(p, (nfds_t)n, 2) <= 0)
            continue;
        atomic_store(&th->pause, true);
        pthread_mutex_lock(&th->gate[0]);
        pthread_mutex_lock(&th->gate[1]);
        bool busy = th->s.dev->queues[0].aio.in_flight + th->s.dev->queues[1].aio.in_flight > 0;
        enum vub_err err = vub_dev_control_dispatch(th->s.dev, p, n);
        atomic_fetch_add(&th->messages, 1);
        atomic_fetch_add(&th->busy_messages, busy);
        pthread_mutex_unlock(&th->gate[1]);
        pthread_mutex_unlock(&th->gate[0]);
        atomic_store(&th->pause, false);
        if (err != VUB_OK)
            break;
    }
    return NULL;
}

struct traffic {
    struct vub_client *cl;
    unsigned q;
    unsigned rounds, mismatches, errors;
};

/* Eight writes of tagged blocks (some from unaligned buffers) in flight at
 * once, then eight reads of them, compared; over and over, on one queue. */
static void *traffic_main(void *arg)
{
    struct traffic *tr = arg;
    struct vub_client_queue *q = vub_client_queue(tr->cl, tr->q);
    uint8_t *buf = vub_client_alloc(tr->cl, 16 * 8192 + 4096);
    for (unsigned r = 0; r < tr->rounds; r++) {
        struct iovec iov[16];
        for (unsigned i = 0; i < 16; i++) {
            bool write = i < 8;
            unsigned slot = i % 8;
            iov[i] = (struct iovec){buf + i * 8192 + (slot % 2 ? 8 : 0), 4096};
            if (write)
                memset(iov[i].iov_base, (int)(tr->q * 64 + r * 8 + slot) & 0xff, 4096);
            struct vub_client_req req = {.op = write ? VUB_CLIENT_WRITE : VUB_CLIENT_READ,
                                         .offset = (uint64_t)(tr->q * 8 + slot) * 65536, .iov = &iov[i],
                                         .iov_count = 1, .cookie = i};
            if (i == 8) { /* the reads go after the writes completed */
                for (unsigned got = 0; got < 8;) {
                    struct vub_client_completion c[8];
                    unsigned k = 0;
                    if (vub_client_wait(q, 5000) != VUB_OK || vub_client_reap(q, c, 8, &k) != VUB_OK)
                        return tr->errors++, NULL;
                    for (unsigned j = 0; j < k; j++)
                        tr->errors += c[j].status != VUB_BLK_S_OK;
                    got += k;
                }
            }
            if (vub_client_submit(q, &req) != VUB_OK)
                return tr->errors++, NULL;
            if (i == 7 || i == 15)
                vub_client_kick(q);
        }
        for (unsigned got = 0; got < 8;) {
            struct vub_client_completion c[8];
            unsigned k = 0;
            if (vub_client_wait(q, 5000) != VUB_OK || vub_client_reap(q, c, 8, &k) != VUB_OK)
                return tr->errors++, NULL;
            for (unsigned j = 0; j < k; j++) {
                unsigned slot = (unsigned)c[j].cookie - 8;
                const uint8_t *p = iov[c[j].cookie].iov_base;
                tr->errors += c[j].status != VUB_BLK_S_OK;
                tr->mismatches += p[0] != ((tr->q * 64 + r * 8 + slot) & 0xff) || p[4095] != p[0];
            }
            got += k;
        }
    }
    return NULL;
}

/* [VU-THREADS] Two queues on two threads under traffic, while the control
 * thread takes messages that change what they use: SET_MEM_TABLE (the
 * same memory mapped afresh: every ring and buffer moves in our address
 * space) and SET_VRING_ENABLE (its handler serves the queue itself).
 * [VU-QUIESCE] each message is handled with the queue threads paused and
 * nothing in flight; no request is lost, misdirected or corrupted. */
static void test_threads_quiesce(bool direct)
{
    static struct threaded th;
    memset(&th, 0, sizeof th);
    server_start(&th.s, VUB_AIO_IO_URING, direct, 2);
    server_pause(&th.s);
    pthread_mutex_init(&th.gate[0], NULL);
    pthread_mutex_init(&th.gate[1], NULL);
    pthread_create(&th.control, NULL, control_thread_main, &th);
    struct vub_client *cl = client_connect(&th.s, 2);
    struct queue_thread_arg qa[2] = {{&th, 0}, {&th, 1}};
    for (unsigned q = 0; q < 2; q++)
        pthread_create(&th.queue_threads[q], NULL, queue_thread_main, &qa[q]);
    struct traffic tr[2] = {{cl, 0, 200, 0, 0}, {cl, 1, 200, 0, 0}};
    pthread_t traffic[2];
    for (unsigned q = 0; q < 2; q++)
        pthread_create(&traffic[q], NULL, traffic_main, &tr[q]);
    /* The messages, sent on the client's socket while its queues run. */
    struct vub_vu_mem_table t = {.nregions = 1, .padding = 0};
    t.regions[0] = (struct vub_vu_mem_region){VUB_CLIENT_GPA_BASE, cl->mem_bytes, (uint64_t)(uintptr_t)cl->mem, 0};
    unsigned answered = 0;
    for (unsigned i = 0; i < 60; i++) {
        struct vub_vu_header h = {VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK,
                                  8 + sizeof t.regions[0]};
        struct vub_vu_vring_state en = {i % 2, 1};
        if (i % 3 == 2)
            h = (struct vub_vu_header){VHOST_USER_SET_VRING_ENABLE, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK,
                                       sizeof en};
        vub_vu_send(cl->sock, &h, h.request == VHOST_USER_SET_VRING_ENABLE ? (const void *)&en : (const void *)&t,
                    h.request == VHOST_USER_SET_MEM_TABLE ? &cl->memfd : NULL,
                    h.request == VHOST_USER_SET_MEM_TABLE ? 1 : 0);
        struct vub_msg reply;
        answered += vub_vu_recv(cl->sock, &reply, NULL) == VUB_OK && reply.hdr.size == 8 && reply.payload.u64 == 0;
        usleep(2000);
    }
    for (unsigned q = 0; q < 2; q++)
        pthread_join(traffic[q], NULL);
    atomic_store(&th.stop, true);
    for (unsigned q = 0; q < 2; q++)
        pthread_join(th.queue_threads[q], NULL);
    pthread_join(th.control, NULL);
    check(answered == 60 && tr[0].errors + tr[1].errors == 0 && tr[0].mismatches + tr[1].mismatches == 0 &&
              atomic_load(&th.queue_err) == VUB_OK,
          "[VU-THREADS] %s%s: 2 queue threads, 2 x 200 rounds of 8 writes and 8 reads, 60 messages in between: "
          "all answered, 0 errors, 0 mismatches", layout_name(), direct ? ", cache=none" : "");
    check(atomic_load(&th.busy_messages) > 0,
          "[VU-QUIESCE] %s: %u of %u messages came with requests in flight, and were handled after them",
          layout_name(), atomic_load(&th.busy_messages), atomic_load(&th.messages));
    server_run(&th.s);
    vub_client_close(cl);
    server_stop(&th.s);
}

/* [BLK-AIO-CACHED] What cannot wait for a device is done at once, not sent
 * round the ring: a read of a cached image whose bytes are in the page
 * cache (RWF_NOWAIT says so), and any transfer of a file in memory. */
static void test_inline_transfers(void)
{
    struct stepped t;
    memset(&t, 0, sizeof t);
    stepped_start(&t, false); /* build/: a disk file system, page cache warm */
    struct vub_client_completion c[4];
    uint64_t before = stats_of(&t.s).inline_transfers;
    submit(&t, VUB_CLIENT_READ, 4096 * 5, t.buf, 4096, 1);
    vub_client_kick(t.q);
    server_step(&t.s, 1000);
    unsigned n = reap(&t, c, 4);
    check(n == 1 && t.dq->aio.in_flight == 0 && stats_of(&t.s).inline_transfers == before + 1 && t.buf[0] == 5,
          "[BLK-AIO-CACHED] a read the page cache holds completes in the pass, not through the ring");
    stepped_close(&t);

    memset(&t, 0, sizeof t);
    snprintf(t.s.path, sizeof t.s.path, "/dev/shm/vub-test-aio-XXXXXX");
    int fd = mkstemp(t.s.path);
    if (fd < 0 || ftruncate(fd, DISK_BYTES) != 0) {
        printf("skip - [BLK-AIO-CACHED] no tmpfs at /dev/shm\n");
        return;
    }
    close(fd);
    stepped_start(&t, false);
    before = stats_of(&t.s).inline_transfers;
    memset(t.buf, 0x77, 4096);
    submit(&t, VUB_CLIENT_WRITE, 4096, t.buf, 4096, 1);
    submit(&t, VUB_CLIENT_READ, 4096, t.buf + 4096, 4096, 2);
    vub_client_kick(t.q);
    server_step(&t.s, 1000);
    n = reap(&t, c, 4);
    check(t.s.img->in_memory && n == 2 && t.dq->aio.in_flight == 0 && stats_of(&t.s).inline_transfers == before + 2 &&
              t.buf[4096] == 0x77,
          "[BLK-AIO-CACHED] on tmpfs a write and a read complete in the pass (the file is memory)");
    stepped_close(&t);
}

/* [MEM-SHRINK] A fault while a write is copied into its bounce buffer
 * (vub-serve's SIGBUS on a shrunk memory file; here the back-end's own
 * mapping of the buffer is made inaccessible, and the test is the program
 * whose handler jumps back) leaves no filled SQE behind (one would be
 * submitted with the next request and complete as a request never made)
 * and no pool buffer taken. */
static sigjmp_buf fault_jump;
static struct vub_dev *volatile fault_dev;
static volatile sig_atomic_t faults;

static void on_fault(int sig, siginfo_t *info, void *context)
{
    (void)context;
    if (fault_dev && vub_dev_owns_fault(fault_dev, info->si_addr)) {
        faults++;
        siglongjmp(fault_jump, 1);
    }
    signal(sig, SIG_DFL);
}

/* One server step with the back-end's mapping of the pages holding
 * [host, host + len) given prot; faults counts what the handler caught. */
static void step_faulting(struct stepped *t, uint8_t *host, size_t len, int prot)
{
    struct sigaction sa = {.sa_sigaction = on_fault, .sa_flags = SA_SIGINFO}, old;
    uint8_t *page = (uint8_t *)((uintptr_t)host & ~(uintptr_t)4095);
    size_t span = ((size_t)(host - page) + len + 4095) & ~(size_t)4095;
    sigaction(SIGSEGV, &sa, &old);
    mprotect(page, span, prot);
    faults = 0;
    if (sigsetjmp(fault_jump, 1) == 0) {
        fault_dev = t->s.dev;
        server_step(&t->s, 1000);
    }
    fault_dev = NULL;
    mprotect(page, span, PROT_READ | PROT_WRITE);
    sigaction(SIGSEGV, &old, NULL);
}

static void test_fault_in_bounce(void)
{
    static struct stepped t; /* static: kept across the jump */
    stepped_open(&t, true);
    uint8_t *odd = t.buf + 8; /* unaligned: bounced */
    const struct vub_mem_region *mr = &t.s.dev->mem.regions[0];
    submit(&t, VUB_CLIENT_WRITE, 8 << 20, odd, 4096, 1);
    vub_client_kick(t.q);
    step_faulting(&t, mr->host + ((uintptr_t)odd - mr->user_addr), 4096, PROT_NONE);
    check(faults == 1 && t.dq->aio.ring.sq_unsubmitted == 0 && t.dq->aio.in_flight == 0 &&
              t.dq->bq.bounce_free == (1u << VUB_BOUNCE_COUNT) - 1,
          "[MEM-SHRINK] %s: a fault copying a write into its bounce buffer leaves no SQE filled (%u) and the pool "
          "whole", layout_name(), t.dq->aio.ring.sq_unsubmitted);
    vub_dev_detach(t.s.dev); /* what vub-serve does after the jump */
    vub_client_close(t.cl);
    server_stop(&t.s);
}


/* [MEM-SHRINK] The same when the fault comes as a completion is finished:
 * a read back from the kernel whose status byte the back-end can no longer
 * write. The request is counted out of flight before guest memory is
 * touched, or the drain at detach would wait for a completion already
 * taken. */
static void test_fault_in_completion(void)
{
    static struct stepped t;
    stepped_open(&t, false);
    submit(&t, VUB_CLIENT_READ, 4096, t.buf, 4096, 1);
    vub_client_kick(t.q);
    server_step(&t.s, 1000);
    bool was_in_flight = t.dq->aio.in_flight == 1;
    uint8_t *status = NULL;
    for (unsigned i = 0; i < t.dq->aio.slot_count && !status; i++)
        if (t.dq->aio.slots[i].chain.last_writable && t.dq->aio.free_head != (int)i)
            status = t.dq->aio.slots[i].chain.last_writable;
    usleep(100 * 1000); /* the kernel's read is done */
    if (status)
        step_faulting(&t, status, 1, PROT_READ);
    unsigned left = t.dq->aio.in_flight;
    check(was_in_flight && status && faults == 1 && left == 0,
          "[MEM-SHRINK] %s: a fault finishing a completion leaves nothing counted in flight (%u)", layout_name(), left);
    t.dq->aio.in_flight = 0; /* so that a failure above is reported, not a hang below */
    vub_dev_detach(t.s.dev);
    vub_client_close(t.cl);
    server_stop(&t.s);
}

int main(void)
{
    char why[256];
    if (!vub_aio_works(VUB_AIO_IO_URING, why, sizeof why)) {
        printf("skip - io_uring engine: %s\n", why);
        return 0;
    }
    for (int l = 0; l < 2; l++) {
        layout = l == 0 ? VUB_CLIENT_RING_SPLIT : VUB_CLIENT_RING_PACKED;
        printf("# %s rings\n", layout_name());
        test_engines_agree();
        test_out_of_order();
        test_flush_and_write_through();
        test_bounce();
        test_fault_in_bounce();
        test_fault_in_completion();
        test_quiesce();
        test_ring_failure();
        test_spin_suppresses_kicks();
        test_threads_quiesce(false);
        test_threads_quiesce(true);
    }
    test_direct_qcow2();
    test_qcow2_sync();
    test_inline_transfers();
    printf("# %d failure(s)\n", failures);
    return failures != 0;
}
