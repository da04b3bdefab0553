/* fuzz-session: whole sessions, vub's front-end against vub's back-end in
 * one process, with valid I/O checked against a shadow disk and, at the
 * end, one malformed message (the idea of conformance/fuzz.c, driven by
 * the fuzzer's bytes instead of a seed).
 *
 * The back-end runs in a thread, the way vub-serve runs it: poll() on
 * vub_dev_pollfds(), then vub_dev_dispatch(). The harness thread is the
 * guest and the VMM at once, through the client API: it connects with
 * options from the input, then runs the input's operations.
 *
 * Input:
 *     0      bits 0-1 ring: auto, split, packed (3 = split); bit 2 two
 *            queues (when MQ survives the feature masks); bit 3 the
 *            read-only device
 *     1      queue size: split 4 << (b % 7); packed 4 + b
 *     2      virtio features not to take: bit 0 EVENT_IDX, 1 INDIRECT_DESC,
 *            2 FLUSH, 3 CONFIG_WCE, 4 DISCARD, 5 WRITE_ZEROES, 6 blk MQ,
 *            7 SEG_MAX
 *     3      protocol features not to take: bit 0 REPLY_ACK, 1 MQ,
 *            2 CONFIGURE_MEM_SLOTS (ADD_MEM_REG instead of SET_MEM_TABLE)
 *     then   operations, one byte each and its operands (see fz_op):
 *            read, write, flush, get-id, discard or write-zeroes, a batch
 *            of up to four reads and writes in flight at once, and a
 *            malformed message, which ends the list
 *
 * Checks: before the malformed message every request succeeds (writes
 * fail with IOERR on the read-only device), reads return the shadow's
 * bytes, GET_ID the serial; the back-end ends the session because the
 * client hung up, not because it saw a protocol error; afterwards the
 * image holds exactly what the shadow says, whatever the malformed message
 * did; and no descriptor or mapping is left behind.
 *
 * Before the malformed message the harness zeroes every request header,
 * indirect table and data buffer of the client (not the rings), so
 * whatever the back-end makes of old descriptors afterwards, they describe
 * reads of sector 0: the disk cannot change, and the final comparison
 * holds in every case.
 */
#include "fuzz-guard.c"
#include "../vub.c"
#include "fuzz-bench.c"

#define FZ_DISK_BYTES (128u * 1024)
#define FZ_SECTORS (FZ_DISK_BYTES / 512)
#define FZ_MAX_REQ_SECTORS 16u
#define FZ_BATCH 4u
#define FZ_TIMEOUT_MS 2000
#define FZ_MAX_OPS 64u

static struct vub_image *fz_img_rw, *fz_img_ro;
static struct vub_dev *fz_dev_rw, *fz_dev_ro;
static uint8_t fz_pattern[FZ_DISK_BYTES]; /* what each run starts from */
static uint8_t fz_shadow[FZ_DISK_BYTES];  /* what the disk holds now */
static bool fz_known[FZ_SECTORS];        /* false after a discard */

/* ---- the back-end's thread ---- */

struct fz_server {
    struct vub_dev *dev;
    pthread_t thread;
    enum vub_err end;   /* what ended the session */
    char why[256];
};

static void *fz_serve(void *arg)
{
    struct fz_server *s = arg;
    enum vub_err err = VUB_OK;
    while (err == VUB_OK) {
        struct pollfd pfd[VUB_MAX_POLLFDS];
        size_t n = vub_dev_pollfds(s->dev, pfd, VUB_MAX_POLLFDS);
        int rc = poll(pfd, n, vub_dev_polling(s->dev) ? 1 : 5000);
        if (rc < 0 && errno != EINTR)
            fz_die("poll: %s", strerror(errno));
        if (rc == 0 && !vub_dev_polling(s->dev))
            fz_die("the session went quiet for 5 s");
        err = vub_dev_dispatch(s->dev, pfd, rc > 0 ? n : 0);
        fz_poison_regions(s->dev);
        fz_check_rings(s->dev);
    }
    s->end = err;
    snprintf(s->why, sizeof s->why, "%s", vub_dev_why(s->dev));
    vub_dev_detach(s->dev);
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_img_rw = fz_image_new("fuzz-session-disk", FZ_DISK_BYTES, false);
    fz_img_ro = fz_image_new("fuzz-session-disk-ro", FZ_DISK_BYTES, true);
    fz_dev_rw = fz_dev_new(fz_img_rw, 2, false);
    fz_dev_ro = fz_dev_new(fz_img_ro, 2, true);
    if (pread(fz_img_rw->fd, fz_pattern, sizeof fz_pattern, 0) != (ssize_t)sizeof fz_pattern)
        fz_die("reading the image");
    return 0;
}

/* ---- the input, consumed a byte at a time (zeros once it runs out) ---- */

struct fz_in {
    const uint8_t *p;
    size_t left;
};

static uint8_t fz_u8(struct fz_in *in)
{
    if (in->left == 0)
        return 0;
    in->left--;
    return *in->p++;
}

static uint16_t fz_u16(struct fz_in *in)
{
    uint16_t lo = fz_u8(in);
    return (uint16_t)(lo | fz_u8(in) << 8);
}

/* ---- one session ---- */

struct fz_run {
    struct vub_client *cl;
    struct vub_dev *dev;
    bool read_only;
    unsigned queues;
    uint64_t features;
};

static void fz_fill(uint8_t *buf, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed + i * 131 + (i >> 9));
}

/* Cuts [0, sectors) into up to four whole-sector iovecs over buf, no more
 * than the client's max_segments. */
static unsigned fz_cut(const struct fz_run *r, struct fz_in *in, uint8_t *buf, unsigned sectors,
                       struct iovec *iov)
{
    unsigned most = vub_client_info(r->cl)->max_segments < 4 ? vub_client_info(r->cl)->max_segments : 4;
    unsigned n = 0, at = 0, want = 1 + fz_u8(in) % most;
    while (at < sectors) {
        unsigned len = n + 1 == want ? sectors - at : 1 + fz_u8(in) % (sectors - at);
        iov[n++] = (struct iovec){buf + at * 512, len * 512};
        at += len;
    }
    return n;
}

/* Compares a read's bytes with the shadow, known sectors only. */
static void fz_check_read(const char *what, uint64_t sector, const uint8_t *buf, unsigned sectors)
{
    for (unsigned s = 0; s < sectors; s++)
        if (fz_known[sector + s] && memcmp(buf + s * 512, fz_shadow + (sector + s) * 512, 512) != 0)
            fz_die("%s: sector %llu differs from the shadow", what, (unsigned long long)(sector + s));
}

static void fz_learn(uint64_t sector, const uint8_t *buf, unsigned sectors)
{
    memcpy(fz_shadow + sector * 512, buf, (size_t)sectors * 512);
    for (unsigned s = 0; s < sectors; s++)
        fz_known[sector + s] = true;
}

/* One read or write with vub_client_run. */
static void fz_rw(struct fz_run *r, struct fz_in *in, bool write)
{
    struct vub_client_queue *q = vub_client_queue(r->cl, fz_u8(in) % r->queues);
    unsigned sectors = 1 + fz_u8(in) % FZ_MAX_REQ_SECTORS;
    uint64_t sector = fz_u16(in) % (FZ_SECTORS - sectors + 1);
    uint8_t *buf = vub_client_alloc(r->cl, (size_t)sectors * 512);
    if (!buf)
        fz_die("vub_client_alloc");
    struct iovec iov[4];
    unsigned n = fz_cut(r, in, buf, sectors, iov);
    if (write)
        fz_fill(buf, (size_t)sectors * 512, fz_u8(in));
    struct vub_client_req req = {.op = write ? VUB_CLIENT_WRITE : VUB_CLIENT_READ, .offset = sector * 512,
                                 .iov = iov, .iov_count = n};
    struct vub_client_completion done;
    enum vub_err err = vub_client_run(q, &req, &done);
    if (write && r->read_only) {
        if (err != VUB_E_IO || done.status != VUB_BLK_S_IOERR)
            fz_die("a write to the read-only disk: %s, status %u", vub_strerror(err), done.status);
    } else if (err != VUB_OK) {
        fz_die("a %s of %u sectors at %llu: %s, status %u (%s)", write ? "write" : "read", sectors,
               (unsigned long long)sector, vub_strerror(err), done.status, vub_client_queue_why(q));
    } else if (write) {
        fz_learn(sector, buf, sectors);
    } else {
        fz_check_read("a read", sector, buf, sectors);
    }
    vub_client_free(r->cl, buf);
}

/* Up to four reads and writes in flight at once, on disjoint ranges (their
 * completion order is the back-end's to choose). */
static void fz_batch(struct fz_run *r, struct fz_in *in)
{
    struct vub_client_queue *q = vub_client_queue(r->cl, fz_u8(in) % r->queues);
    unsigned count = 2 + fz_u8(in) % (FZ_BATCH - 1);
    unsigned first = fz_u8(in) % (FZ_SECTORS / FZ_MAX_REQ_SECTORS);
    struct {
        struct vub_client_req req;
        struct iovec iov[4];
        uint8_t *buf;
        uint64_t sector;
        unsigned sectors;
        bool done;
    } b[FZ_BATCH];
    unsigned sent = 0;
    for (unsigned i = 0; i < count; i++) {
        bool write = fz_u8(in) & 1;
        b[i].sectors = 1 + fz_u8(in) % FZ_MAX_REQ_SECTORS;
        b[i].sector = (uint64_t)((first + i) % (FZ_SECTORS / FZ_MAX_REQ_SECTORS)) * FZ_MAX_REQ_SECTORS;
        b[i].buf = vub_client_alloc(r->cl, (size_t)b[i].sectors * 512);
        if (!b[i].buf)
            fz_die("vub_client_alloc");
        unsigned n = fz_cut(r, in, b[i].buf, b[i].sectors, b[i].iov);
        if (write)
            fz_fill(b[i].buf, (size_t)b[i].sectors * 512, fz_u8(in));
        b[i].req = (struct vub_client_req){.op = write ? VUB_CLIENT_WRITE : VUB_CLIENT_READ,
                                           .offset = b[i].sector * 512, .iov = b[i].iov, .iov_count = n,
                                           .cookie = i};
        b[i].done = false;
        enum vub_err err = vub_client_submit(q, &b[i].req);
        if (err == VUB_E_AGAIN) { /* the ring is full: send what fits */
            vub_client_free(r->cl, b[i].buf);
            break;
        }
        if (err != VUB_OK)
            fz_die("vub_client_submit: %s (%s)", vub_strerror(err), vub_client_queue_why(q));
        sent++;
    }
    for (unsigned got = 0; got < sent;) {
        struct vub_client_completion c[FZ_BATCH];
        unsigned n = 0;
        enum vub_err err = vub_client_reap(q, c, FZ_BATCH, &n);
        if (err == VUB_OK && n == 0)
            err = vub_client_wait(q, FZ_TIMEOUT_MS);
        if (err != VUB_OK)
            fz_die("a batch of %u, %u completed: %s (%s)", sent, got, vub_strerror(err), vub_client_queue_why(q));
        for (unsigned k = 0; k < n; k++) {
            if (c[k].cookie >= sent || b[c[k].cookie].done)
                fz_die("completion with cookie %llu", (unsigned long long)c[k].cookie);
            unsigned i = (unsigned)c[k].cookie;
            bool write = b[i].req.op == VUB_CLIENT_WRITE;
            b[i].done = true;
            got++;
            uint8_t want = write && r->read_only ? VUB_BLK_S_IOERR : VUB_BLK_S_OK;
            if (c[k].status != want)
                fz_die("request %u of a batch: status %u", i, c[k].status);
            if (write && !r->read_only)
                fz_learn(b[i].sector, b[i].buf, b[i].sectors);
            else if (!write)
                fz_check_read("a read in a batch", b[i].sector, b[i].buf, b[i].sectors);
        }
    }
    for (unsigned i = 0; i < sent; i++)
        vub_client_free(r->cl, b[i].buf);
}

static void fz_simple(struct fz_run *r, struct fz_in *in, unsigned kind)
{
    struct vub_client_queue *q = vub_client_queue(r->cl, fz_u8(in) % r->queues);
    struct vub_client_completion done;
    enum vub_err err;
    if (kind == 0) { /* flush, if negotiated */
        if (!vub_has(r->features, VIRTIO_BLK_F_FLUSH))
            return;
        struct vub_client_req req = {.op = VUB_CLIENT_FLUSH};
        err = vub_client_run(q, &req, &done);
        if (err != VUB_OK)
            fz_die("flush: %s, status %u", vub_strerror(err), done.status);
    } else if (kind == 1) { /* GET_ID: 20 bytes, NUL-padded */
        char *id = vub_client_alloc(r->cl, 21);
        struct iovec iov = {id, 20};
        struct vub_client_req req = {.op = VUB_CLIENT_GET_ID, .iov = &iov, .iov_count = 1};
        if (!id)
            fz_die("GET_ID: %s", "no shared buffer");
        memset(id, 0, 21);
        err = vub_client_run(q, &req, &done);
        if (err != VUB_OK || strcmp(id, FZ_SERIAL) != 0)
            fz_die("GET_ID: %s, status %u, \"%s\"", vub_strerror(err), done.status, id);
        vub_client_free(r->cl, id);
    } else { /* discard or write-zeroes */
        bool wz = fz_u8(in) & 1, unmap = fz_u8(in) & 1;
        unsigned sectors = 1 + fz_u8(in) % FZ_MAX_REQ_SECTORS;
        uint64_t sector = fz_u16(in) % (FZ_SECTORS - sectors + 1);
        if (!vub_has(r->features, wz ? VIRTIO_BLK_F_WRITE_ZEROES : VIRTIO_BLK_F_DISCARD))
            return;
        struct vub_client_req req = {.op = wz ? VUB_CLIENT_WRITE_ZEROES : VUB_CLIENT_DISCARD,
                                     .offset = sector * 512, .length = (uint64_t)sectors * 512,
                                     .unmap = wz && unmap};
        err = vub_client_run(q, &req, &done);
        if (err != VUB_OK)
            fz_die("%s of %u sectors at %llu: %s, status %u", wz ? "write-zeroes" : "discard", sectors,
                   (unsigned long long)sector, vub_strerror(err), done.status);
        if (wz) {
            static const uint8_t zeros[FZ_MAX_REQ_SECTORS * 512];
            fz_learn(sector, zeros, sectors);
        } else {
            for (unsigned s = 0; s < sectors; s++)
                fz_known[sector + s] = false; /* "MAY ... not deallocate": either content */
        }
    }
}

/* Zeroes every request header, indirect table and pool buffer of the
 * client, leaving the rings: see the comment at the top. */
static void fz_zero_client(struct vub_client *cl)
{
    const struct vub_client_info *info = vub_client_info(cl);
    for (unsigned i = 0; i < info->num_queues; i++) {
        struct vub_client_queue *q = &cl->queues[i];
        uint8_t *table = q->ring.indirect;
        uint16_t per = q->ring.indirect_max;
        memset(q->slots, 0, (size_t)info->queue_size * VUB_CLIENT_SLOT_BYTES);
        if (table)
            memset(table, 0, (size_t)info->queue_size * per * VIRTQ_DESC_BYTES);
    }
    memset(cl->pool, 0, info->buffer_bytes);
}

/* A malformed or unexpected message on the client's socket. */
static void fz_mutate(struct fz_run *r, struct fz_in *in)
{
    uint32_t req = fz_u8(in) % (VHOST_USER_REQUEST_COUNT + 4);
    uint8_t f = fz_u8(in);
    uint32_t flags = (f & 7) ? VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK : f;
    uint32_t size = fz_u8(in) % 81;
    unsigned nfds = fz_u8(in) % 3;
    uint8_t payload[80];
    for (unsigned i = 0; i < sizeof payload; i++)
        payload[i] = fz_u8(in);
    int fds[2] = {-1, -1};
    for (unsigned i = 0; i < nfds; i++)
        if ((fds[i] = eventfd(0, EFD_CLOEXEC)) < 0)
            fz_die("eventfd: %s", strerror(errno));
    fz_zero_client(r->cl);
    struct vub_vu_header h = {req, flags, size};
    vub_vu_send(r->cl->sock, &h, payload, fds, nfds); /* the back-end may have gone: fine */
    for (unsigned i = 0; i < nfds; i++)
        close(fds[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    int fds_before = fz_fd_count();
    struct fz_in in = {data, size};
    uint8_t setup = fz_u8(&in), qsize = fz_u8(&in), foff = fz_u8(&in), poff = fz_u8(&in);
    static const enum vub_client_ring rings[4] = {VUB_CLIENT_RING_AUTO, VUB_CLIENT_RING_SPLIT,
                                                  VUB_CLIENT_RING_PACKED, VUB_CLIENT_RING_SPLIT};
    static const unsigned fbits[8] = {VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_BLK_F_FLUSH,
                                      VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES,
                                      VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_SEG_MAX};
    static const unsigned pbits[3] = {VHOST_USER_PROTOCOL_F_REPLY_ACK, VHOST_USER_PROTOCOL_F_MQ,
                                      VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS};
    struct vub_client_opts o = {.ring = rings[setup & 3], .buffer_bytes = 64 * 1024, .timeout_ms = FZ_TIMEOUT_MS};
    o.queue_size = o.ring == VUB_CLIENT_RING_PACKED ? (uint16_t)(4 + qsize) : (uint16_t)(4u << (qsize % 7));
    for (unsigned i = 0; i < 8; i++)
        if (foff & (1u << i))
            o.features_off |= VUB_BIT(fbits[i]);
    for (unsigned i = 0; i < 3; i++)
        if (poff & (1u << i))
            o.protocol_features_off |= VUB_BIT(pbits[i]);
    bool mq = !(foff & 64) && !(poff & 2);
    o.num_queues = (setup & 4) && mq ? 2 : 1;

    struct fz_run r = {.read_only = (setup & 8) != 0, .queues = o.num_queues};
    r.dev = r.read_only ? fz_dev_ro : fz_dev_rw;
    struct vub_image *img = r.read_only ? fz_img_ro : fz_img_rw;
    /* Every run starts from the same disk. */
    if (!r.read_only && pwrite(img->fd, fz_pattern, sizeof fz_pattern, 0) != (ssize_t)sizeof fz_pattern)
        fz_die("resetting the image: %s", strerror(errno));
    memcpy(fz_shadow, fz_pattern, sizeof fz_shadow);
    for (unsigned s = 0; s < FZ_SECTORS; s++)
        fz_known[s] = true;

    struct fz_server srv = {.dev = r.dev};
    int sock = fz_attach(r.dev);
    if (pthread_create(&srv.thread, NULL, fz_serve, &srv) != 0)
        fz_die("pthread_create");
    char why[256];
    enum vub_err err = vub_client_connect_fd(&r.cl, sock, &o, why, sizeof why);
    if (err != VUB_OK)
        fz_die("connect (ring %d, size %u, features off 0x%llx, protocol off 0x%llx): %s", (int)o.ring,
               o.queue_size, (unsigned long long)o.features_off, (unsigned long long)o.protocol_features_off,
               why);
    r.features = vub_client_info(r.cl)->features;
    bool mutated = false;
    for (unsigned n = 0; n < FZ_MAX_OPS && in.left > 0 && !mutated; n++) {
        uint8_t op = fz_u8(&in);
        switch (op % 8) {
        case 0: case 1: fz_rw(&r, &in, false); break;
        case 2: fz_rw(&r, &in, true); break;
        case 3: fz_simple(&r, &in, 0); break;
        case 4: fz_simple(&r, &in, 1); break;
        case 5: fz_simple(&r, &in, 2); break;
        case 6: fz_batch(&r, &in); break;
        case 7: fz_mutate(&r, &in); mutated = true; break;
        }
    }
    vub_client_close(r.cl);
    pthread_join(srv.thread, NULL);
    fz_say_dev(r.dev, mutated ? "after a malformed message" : "after a valid session");
    if (!mutated && srv.end != VUB_E_CLOSED)
        fz_die("a valid session ended with %s: %s", vub_strerror(srv.end), srv.why);
    if (fz_maps_live() != 0)
        fz_die("%zu mappings left after the session", fz_maps_live());

    /* The disk holds what the shadow says. */
    static uint8_t disk[FZ_DISK_BYTES];
    if (pread(img->fd, disk, sizeof disk, 0) != (ssize_t)sizeof disk)
        fz_die("reading the image back");
    for (unsigned s = 0; s < FZ_SECTORS; s++)
        if (fz_known[s] && memcmp(disk + s * 512, fz_shadow + s * 512, 512) != 0)
            fz_die("after the session, sector %u differs from the shadow%s", s,
                   mutated ? " (after a malformed message)" : "");
    int fds_after = fz_fd_count();
    if (fds_after != fds_before)
        fz_die("%d file descriptors before the run, %d after", fds_before, fds_after);
    return 0;
}
