/* test-backend: the back-end driven in-process with hand-built vhost-user
 * messages and hand-built split rings, good and hostile.
 *
 * The test plays the front-end and the guest driver at once: it owns a
 * memfd that stands for guest RAM, lays rings and buffers out in it, sends
 * messages over a socketpair, and calls the device's handlers directly, one
 * step at a time, so every case is deterministic. Each case is named after
 * the clause it proves, with the tag used in vub.c and SPEC-NOTES.md.
 */
#include "../vub.c"

#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <dirent.h>
#include <setjmp.h>
#include <pthread.h>
#include <signal.h>

/* ---- reporting ---- */

static int failures;

static void check(bool ok, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s - ", ok ? "ok" : "not ok");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (!ok)
        failures++;
}

/* ---- the bench: a device, a socket, guest memory ---- */

#define GUEST_BYTES (4u << 20)        /* guest RAM: one 4 MiB memfd */
#define GUEST_GPA 0x100000ull         /* where it sits in guest-physical space */
#define GUEST_UVA 0x7f0000000000ull   /* where the "front-end" says it maps it */
#define DISK_BYTES (1u << 20)
#define QSIZE 16u
#define RING_STRIDE 0x2000u           /* per queue: desc, avail, used */
#define DATA_OFF 0x40000u             /* buffers start here */

struct bench {
    int sock;                 /* the front-end's end */
    struct vub_dev *dev;
    struct vub_image *img;
    char path[64];            /* the disk image file */
    int memfd;
    uint8_t *guest;           /* our view of guest RAM */
    int kick[2], call[2];
    uint16_t avail_idx[2];    /* driver's next avail index per queue */
    uint16_t used_seen[2];    /* driver's last seen used index */
    uint64_t features;
};

/* The exact reason the device recorded for its last failure is tag. */
static bool reason_is(const struct bench *b, const char *tag)
{
    return strcmp(vub_reasons[b->dev->err.reason].tag, tag) == 0;
}

static uint8_t *g(struct bench *b, uint64_t gpa) { return b->guest + (gpa - GUEST_GPA); }
static uint64_t desc_gpa(unsigned q) { return GUEST_GPA + q * RING_STRIDE; }
static uint64_t avail_gpa(unsigned q) { return desc_gpa(q) + 16 * QSIZE; }
static uint64_t used_gpa(unsigned q) { return desc_gpa(q) + 0x1000; }
static uint64_t uva(uint64_t gpa) { return gpa - GUEST_GPA + GUEST_UVA; }

static void bench_open(struct bench *b, bool read_only, uint64_t features_off)
{
    memset(b, 0, sizeof *b);
    snprintf(b->path, sizeof b->path, "/tmp/vub-test-%d.img", (int)getpid());
    int fd = open(b->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    for (unsigned i = 0; i < DISK_BYTES; i += 512) {
        uint8_t sector[512];
        memset(sector, (int)(i / 512) & 0xff, sizeof sector);
        pwrite(fd, sector, sizeof sector, i);
    }
    close(fd);
    char why[256];
    struct vub_image_opts io = {.read_only = read_only};
    if (vub_image_open(&b->img, b->path, &io, why, sizeof why) != VUB_OK)
        abort();
    struct vub_dev_config dc = {.image = b->img, .num_queues = 2, .serial = "vub-test-serial",
                                .features_off = features_off};
    vub_dev_new(&b->dev, &dc);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    b->sock = sv[0];
    vub_dev_attach(b->dev, sv[1]);
    b->memfd = (int)syscall(SYS_memfd_create, "guest", 0);
    ftruncate(b->memfd, GUEST_BYTES);
    b->guest = mmap(NULL, GUEST_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, b->memfd, 0);
    for (int q = 0; q < 2; q++) {
        b->kick[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        b->call[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    }
}

static void bench_close(struct bench *b)
{
    vub_dev_free(b->dev);
    vub_image_close(b->img);
    close(b->sock);
    munmap(b->guest, GUEST_BYTES);
    close(b->memfd);
    for (int q = 0; q < 2; q++) {
        close(b->kick[q]);
        close(b->call[q]);
    }
    unlink(b->path);
}

/* Sends one message and lets the device handle it; returns its verdict. */
static enum vub_err send_msg(struct bench *b, uint32_t req, uint32_t flags, const void *payload,
                             uint32_t size, const int *fds, unsigned nfds)
{
    struct vub_vu_header h = {req, flags, size};
    vub_vu_send(b->sock, &h, payload, fds, nfds);
    return vub_dev_handle_msg(b->dev);
}

/* Reads a reply if one is waiting. Returns false if there is none. */
static bool get_reply(struct bench *b, struct vub_vu_header *h, void *payload, size_t cap)
{
    struct pollfd p = {.fd = b->sock, .events = POLLIN};
    if (poll(&p, 1, 0) != 1)
        return false;
    if (recv(b->sock, h, sizeof *h, 0) != (ssize_t)sizeof *h)
        return false;
    if (h->size > cap)
        return false;
    return h->size == 0 || recv(b->sock, payload, h->size, 0) == (ssize_t)h->size;
}

static uint64_t u64_request(struct bench *b, uint32_t req)
{
    struct vub_vu_header h;
    uint64_t v = ~0ull;
    send_msg(b, req, 1, NULL, 0, NULL, 0);
    get_reply(b, &h, &v, sizeof v);
    return v;
}

static enum vub_err send_u64(struct bench *b, uint32_t req, uint64_t v, const int *fds, unsigned nfds)
{
    return send_msg(b, req, 1, &v, sizeof v, fds, nfds);
}

static enum vub_err send_state(struct bench *b, uint32_t req, uint32_t index, uint32_t num)
{
    struct vub_vu_vring_state s = {index, num};
    return send_msg(b, req, 1, &s, sizeof s, NULL, 0);
}

static enum vub_err send_mem_table(struct bench *b)
{
    struct vub_vu_mem_table t = {.nregions = 1};
    t.regions[0] = (struct vub_vu_mem_region){GUEST_GPA, GUEST_BYTES, GUEST_UVA, 0};
    return send_msg(b, VHOST_USER_SET_MEM_TABLE, 1, &t, 8 + 32, &b->memfd, 1);
}

static enum vub_err setup_queue_ex(struct bench *b, unsigned q, uint32_t size, uint32_t base)
{
    struct vub_vu_vring_addr a = {q, 0, uva(desc_gpa(q)), uva(used_gpa(q)), uva(avail_gpa(q)), 0};
    memset(g(b, desc_gpa(q)), 0, RING_STRIDE);
    b->avail_idx[q] = b->used_seen[q] = 0;
    if (send_state(b, VHOST_USER_SET_VRING_NUM, q, size) || send_state(b, VHOST_USER_SET_VRING_BASE, q, base) ||
        send_msg(b, VHOST_USER_SET_VRING_ADDR, 1, &a, sizeof a, NULL, 0) ||
        send_u64(b, VHOST_USER_SET_VRING_CALL, q, &b->call[q], 1) ||
        send_u64(b, VHOST_USER_SET_VRING_KICK, q, &b->kick[q], 1))
        return VUB_E_PROTO;
    return send_state(b, VHOST_USER_SET_VRING_ENABLE, q, 1);
}

static enum vub_err setup_queue(struct bench *b, unsigned q)
{
    return setup_queue_ex(b, q, QSIZE, 0);
}

/* The whole start-up sequence QEMU uses, reduced to what matters. */
static bool bench_start(struct bench *b, uint64_t features)
{
    uint64_t offered = u64_request(b, VHOST_USER_GET_FEATURES);
    uint64_t proto = u64_request(b, VHOST_USER_GET_PROTOCOL_FEATURES);
    b->features = features ? features : offered & ~VUB_BIT(VIRTIO_F_RING_PACKED);
    if (send_u64(b, VHOST_USER_SET_PROTOCOL_FEATURES, proto, NULL, 0) ||
        send_msg(b, VHOST_USER_SET_OWNER, 1, NULL, 0, NULL, 0) ||
        send_u64(b, VHOST_USER_SET_FEATURES, b->features, NULL, 0) || send_mem_table(b))
        return false;
    struct vub_vu_header h;
    uint64_t ack;
    while (get_reply(b, &h, &ack, sizeof ack)) /* drain the NEED_REPLY acks */
        ;
    bool ok = setup_queue(b, 0) == VUB_OK && setup_queue(b, 1) == VUB_OK;
    while (get_reply(b, &h, &ack, sizeof ack))
        ;
    return ok;
}

/* ---- the driver's side of a split ring, by hand ---- */

struct d {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

static void put_desc(uint8_t *table, unsigned i, struct d d)
{
    uint8_t *p = table + 16 * i;
    vub_put_le64(p, d.addr);
    vub_put_le32(p + 8, d.len);
    vub_put_le16(p + 12, d.flags);
    vub_put_le16(p + 14, d.next);
}

/* Writes n descriptors at table slots 0..n-1 of queue q, makes `head`
 * available, kicks, and lets the device run the queue. */
static enum vub_err submit(struct bench *b, unsigned q, const struct d *ds, unsigned n, uint16_t head)
{
    for (unsigned i = 0; i < n; i++)
        put_desc(g(b, desc_gpa(q)), i, ds[i]);
    uint8_t *avail = g(b, avail_gpa(q));
    vub_put_le16(avail + 4 + 2 * (b->avail_idx[q] % QSIZE), head);
    b->avail_idx[q]++;
    atomic_thread_fence(memory_order_release);
    vub_put_le16(avail + 2, b->avail_idx[q]);
    uint64_t one = 1;
    write(b->kick[q], &one, sizeof one);
    return vub_dev_process_queue(b->dev, q);
}

/* Takes the next used entry; false if the device published none. */
static bool take_used(struct bench *b, unsigned q, uint32_t *id, uint32_t *len)
{
    uint8_t *used = g(b, used_gpa(q));
    if (vub_le16(used + 2) == b->used_seen[q])
        return false;
    uint8_t *e = used + 4 + 8 * (b->used_seen[q] % QSIZE);
    *id = vub_le32(e);
    *len = vub_le32(e + 4);
    b->used_seen[q]++;
    return true;
}

static uint64_t call_count(struct bench *b, unsigned q)
{
    uint64_t n = 0;
    if (read(b->call[q], &n, sizeof n) != (ssize_t)sizeof n)
        return 0;
    return n;
}

/* Buffers in guest RAM for one request: header, data, status. */
#define HDR_GPA (GUEST_GPA + DATA_OFF)
#define DATA_GPA (GUEST_GPA + DATA_OFF + 0x1000)
#define STATUS_GPA (GUEST_GPA + DATA_OFF + 0x800)

static void put_hdr(struct bench *b, uint32_t type, uint64_t sector)
{
    uint8_t *h = g(b, HDR_GPA);
    vub_put_le32(h, type);
    vub_put_le32(h + 4, 0);
    vub_put_le64(h + 8, sector);
    *g(b, STATUS_GPA) = 0xee;
}

/* A request in the plain three-descriptor framing. */
static enum vub_err request3(struct bench *b, unsigned q, uint32_t type, uint64_t sector,
                             uint32_t data_len, bool data_writable)
{
    put_hdr(b, type, sector);
    struct d ds[3] = {
        {HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1},
        {DATA_GPA, data_len, (uint16_t)(VIRTQ_DESC_F_NEXT | (data_writable ? VIRTQ_DESC_F_WRITE : 0)), 2},
        {STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0},
    };
    if (data_len == 0) { /* header and status only, as FLUSH and GET_ID-less requests go */
        ds[1] = ds[2];
        ds[0].next = 1;
        return submit(b, q, ds, 2, 0);
    }
    return submit(b, q, ds, 3, 0);
}

/* A FLUSH that the device really served: submitted without error, one used
 * entry for head 0 with length 1 (the status byte), status OK. Checks that
 * count notifications must first know the request ran. */
static bool flush_served(struct bench *b, unsigned q)
{
    uint32_t id = 0xffffffffu, len = 0;
    enum vub_err err = request3(b, q, VIRTIO_BLK_T_FLUSH, 0, 0, false);
    bool got = take_used(b, q, &id, &len);
    return err == VUB_OK && got && id == 0 && len == 1 && *g(b, STATUS_GPA) == VIRTIO_BLK_S_OK;
}

static bool file_bytes(struct bench *b, uint64_t off, void *buf, size_t len)
{
    int fd = open(b->path, O_RDONLY);
    bool ok = pread(fd, buf, len, (off_t)off) == (ssize_t)len;
    close(fd);
    return ok;
}

static int open_fd_count(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

/* ======================================================================== */

static void test_wire(void)
{
    struct bench b;
    struct vub_vu_header h;
    uint64_t v = 0;
    bench_open(&b, false, 0);

    send_msg(&b, VHOST_USER_GET_FEATURES, 1, NULL, 0, NULL, 0);
    bool got = get_reply(&b, &h, &v, sizeof v);
    check(got && h.flags == 0x5 && h.request == VHOST_USER_GET_FEATURES && h.size == 8,
          "[VU-REPLY-FLAGS] a reply carries flags 0x5, the request's id and an 8-byte u64");
    /* Exactly what vub implements for a writable export: nothing else. */
    const uint64_t implemented =
        VUB_BIT(VIRTIO_F_VERSION_1) | VUB_BIT(VIRTIO_F_INDIRECT_DESC) | VUB_BIT(VIRTIO_F_RING_PACKED) |
        VUB_BIT(VIRTIO_F_EVENT_IDX) | VUB_BIT(VHOST_USER_F_PROTOCOL_FEATURES) | VUB_BIT(VIRTIO_BLK_F_SEG_MAX) |
        VUB_BIT(VIRTIO_BLK_F_BLK_SIZE) | VUB_BIT(VIRTIO_BLK_F_FLUSH) | VUB_BIT(VIRTIO_BLK_F_MQ) |
        VUB_BIT(VIRTIO_BLK_F_CONFIG_WCE) | VUB_BIT(VIRTIO_BLK_F_DISCARD) | VUB_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
    check(v == implemented,
          "[VU-SET-FEATURES] GET_FEATURES offers exactly what vub implements (0x%016llx, want 0x%016llx)",
          (unsigned long long)v, (unsigned long long)implemented);

    enum vub_err err = send_msg(&b, VHOST_USER_SET_OWNER, 1 | VHOST_USER_NEED_REPLY_MASK, NULL, 0, NULL, 0);
    got = get_reply(&b, &h, &v, sizeof v);
    check(err == VUB_OK && got && h.size == 8 && v == 0,
          "[VU-NEED-REPLY] NEED_REPLY is answered with 0 even before REPLY_ACK is negotiated");

    uint32_t four = 0;
    err = send_msg(&b, VHOST_USER_SET_FEATURES, 1 | VHOST_USER_NEED_REPLY_MASK, &four, 4, NULL, 0);
    got = get_reply(&b, &h, &v, sizeof v);
    check(err == VUB_OK && got && v != 0,
          "[VU-MSG-SIZE] a payload of the wrong size with NEED_REPLY gets a non-zero ack");
    err = send_msg(&b, VHOST_USER_SET_FEATURES, 1, &four, 4, NULL, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-MSG-SIZE"), "[VU-MSG-SIZE] a payload of the wrong size without NEED_REPLY ends the session");
    bench_close(&b);

    bench_open(&b, false, 0);
    err = send_msg(&b, VHOST_USER_GET_FEATURES, 2, NULL, 0, NULL, 0);
    check(err == VUB_E_PROTO && !get_reply(&b, &h, &v, sizeof v),
          "[VU-HDR-VERSION] a header with version 2 ends the session without a reply");
    bench_close(&b);

    bench_open(&b, false, 0);
    err = send_msg(&b, 99, 1 | VHOST_USER_NEED_REPLY_MASK, NULL, 0, NULL, 0);
    got = get_reply(&b, &h, &v, sizeof v);
    check(err == VUB_OK && got && v != 0, "[VU-DISPATCH] an unknown request with NEED_REPLY gets a non-zero ack");
    err = send_msg(&b, 99, 1, NULL, 0, NULL, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-DISPATCH"), "[VU-DISPATCH] an unknown request without NEED_REPLY ends the session");
    bench_close(&b);

    bench_open(&b, false, 0);
    struct vub_vu_config c = {0, 8, 0, {0}};
    err = send_msg(&b, VHOST_USER_GET_CONFIG, 1, &c, 12 + 8, NULL, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-GATE"), "[VU-GATE] GET_CONFIG before PROTOCOL_F_CONFIG is negotiated is refused");
    bench_close(&b);

    bench_open(&b, false, 0);
    static uint8_t big[4096];
    struct vub_vu_header hh = {VHOST_USER_SET_FEATURES, 1, 4096};
    vub_vu_send(b.sock, &hh, big, NULL, 0);
    err = vub_dev_handle_msg(b.dev);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-MSG-SIZE"), "[VU-MSG-SIZE] a payload larger than any request ends the session");
    bench_close(&b);

    bench_open(&b, false, 0);
    close(b.sock);
    err = vub_dev_handle_msg(b.dev);
    check(err == VUB_E_CLOSED && b.dev->err.reason == VUB_R_VU_CLOSED,
          "[VU-CLOSED] a front-end that hangs up is reported as closed, for that reason, not as an error");
    b.sock = open("/dev/null", O_RDONLY);
    bench_close(&b);
}

static void test_features(void)
{
    struct bench b;
    struct vub_vu_header h;
    uint64_t v;
    bench_open(&b, false, 0);
    uint64_t offered = u64_request(&b, VHOST_USER_GET_FEATURES);
    enum vub_err err = send_u64(&b, VHOST_USER_SET_FEATURES, offered | VUB_BIT(VIRTIO_F_IN_ORDER), NULL, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-SET-FEATURES"), "[VU-SET-FEATURES] acking a feature that was not offered is refused");
    bench_close(&b);

    bench_open(&b, false, 0);
    err = send_msg(&b, VHOST_USER_SET_FEATURES, 1 | VHOST_USER_NEED_REPLY_MASK,
                   &(uint64_t){VUB_BIT(VIRTIO_BLK_F_FLUSH)}, 8, NULL, 0);
    check(err == VUB_OK && get_reply(&b, &h, &v, sizeof v) && v != 0,
          "[VU-SET-FEATURES] a driver without VERSION_1 (legacy) is refused with an error ack");
    uint64_t proto = u64_request(&b, VHOST_USER_GET_PROTOCOL_FEATURES);
    check(proto == (VUB_BIT(0) | VUB_BIT(3) | VUB_BIT(5) | VUB_BIT(9) | VUB_BIT(12) | VUB_BIT(13) | VUB_BIT(15) |
                    VUB_BIT(16)),
          "[VU-PROTOCOL-OFFER] protocol features offered are exactly MQ REPLY_ACK BACKEND_REQ CONFIG "
          "INFLIGHT_SHMFD RESET_DEVICE CONFIGURE_MEM_SLOTS STATUS");
    err = send_u64(&b, VHOST_USER_SET_PROTOCOL_FEATURES, proto | VUB_BIT(1), NULL, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-PROTOCOL-OFFER"), "[VU-PROTOCOL-OFFER] acking a protocol feature that was not offered is refused");
    bench_close(&b);

    bench_open(&b, true, 0);
    offered = u64_request(&b, VHOST_USER_GET_FEATURES);
    check(vub_has(offered, VIRTIO_BLK_F_RO) && !vub_has(offered, VIRTIO_BLK_F_DISCARD),
          "[BLK-RO] a read-only export offers RO and no DISCARD");
    bench_close(&b);
}

static void test_config(void)
{
    struct bench b;
    struct vub_vu_header h;
    struct vub_vu_config c = {0}, r = {0};
    bench_open(&b, false, 0);
    bench_start(&b, 0);

    c = (struct vub_vu_config){0, 57, 0, {0}};
    send_msg(&b, VHOST_USER_GET_CONFIG, 1, &c, 12 + 57, NULL, 0);
    bool got = get_reply(&b, &h, &r, sizeof r);
    check(got && h.size == 12 + 57 && vub_le64(r.data) == DISK_BYTES / 512 && vub_le16(r.data + 34) == 2,
          "[VU-CONFIG-SIZE] GET_CONFIG of 57 bytes gets exactly 57 bytes: capacity and num_queues");
    check(vub_le32(r.data + 36) && vub_le32(r.data + 40) && vub_le32(r.data + 48) && vub_le32(r.data + 52),
          "[BLK-LIMITS-NONZERO] discard and write-zeroes limits are not zero");

    c = (struct vub_vu_config){34, 2, 0, {0}};
    send_msg(&b, VHOST_USER_GET_CONFIG, 1, &c, 12 + 2, NULL, 0);
    got = get_reply(&b, &h, &r, sizeof r);
    check(got && h.size == 14 && r.offset == 34 && vub_le16(r.data) == 2,
          "[VU-CONFIG-RANGE] the offset is relative to the device config space (num_queues at 34)");

    c = (struct vub_vu_config){90, 10, 0, {0}};
    send_msg(&b, VHOST_USER_GET_CONFIG, 1, &c, 12 + 10, NULL, 0);
    got = get_reply(&b, &h, &r, sizeof r);
    check(got && h.size == 0, "[VU-CONFIG-RANGE] a range past the config space gets a reply with no payload");

    c = (struct vub_vu_config){32, 1, 0, {1}};
    enum vub_err err = send_msg(&b, VHOST_USER_SET_CONFIG, 1, &c, 13, NULL, 0);
    c = (struct vub_vu_config){32, 1, 0, {0}};
    send_msg(&b, VHOST_USER_GET_CONFIG, 1, &c, 13, NULL, 0);
    got = get_reply(&b, &h, &r, sizeof r);
    check(err == VUB_OK && got && r.data[0] == 1, "[VU-CONFIG-WRITE] SET_CONFIG writes writeback at offset 32");

    uint64_t ack = 0;
    c = (struct vub_vu_config){0, 1, 0, {7}};
    err = send_msg(&b, VHOST_USER_SET_CONFIG, 1 | VHOST_USER_NEED_REPLY_MASK, &c, 13, NULL, 0);
    got = get_reply(&b, &h, &ack, sizeof ack);
    check(err == VUB_OK && got && ack != 0, "[VU-CONFIG-WRITE] SET_CONFIG to the capacity is refused");
    c = (struct vub_vu_config){32, 1, 0, {2}};
    err = send_msg(&b, VHOST_USER_SET_CONFIG, 1 | VHOST_USER_NEED_REPLY_MASK, &c, 13, NULL, 0);
    got = get_reply(&b, &h, &ack, sizeof ack);
    check(err == VUB_OK && got && ack != 0, "[VU-CONFIG-WRITE] writeback=2 is refused");
    c = (struct vub_vu_config){0, 8, 0, {0}};
    err = send_msg(&b, VHOST_USER_SET_CONFIG, 1 | VHOST_USER_NEED_REPLY_MASK, &c, 12 + 9, NULL, 0);
    got = get_reply(&b, &h, &ack, sizeof ack);
    check(err == VUB_OK && got && ack != 0, "[VU-MSG-SIZE] SET_CONFIG whose size disagrees with its payload is refused");
    bench_close(&b);
}

static void test_vring_messages(void)
{
    struct bench b;
    struct vub_vu_header h;
    uint64_t ack;
    bench_open(&b, false, 0);
    bench_start(&b, 0);

    enum vub_err err = send_state(&b, VHOST_USER_SET_VRING_NUM, 99, 16);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-QUEUE-INDEX"), "[VU-QUEUE-INDEX] SET_VRING_NUM for queue 99 of 2 is refused");
    bench_close(&b);

    uint32_t sizes[] = {0, 3, 65536};
    for (unsigned i = 0; i < 3; i++) {
        bench_open(&b, false, 0);
        err = send_state(&b, VHOST_USER_SET_VRING_NUM, 0, sizes[i]);
        check(err == VUB_E_PROTO && reason_is(&b, "VQ-SPLIT-SIZE"), "[VQ-SPLIT-SIZE] a split ring of size %u is refused", sizes[i]);
        bench_close(&b);
    }
    bench_open(&b, false, 0);
    err = send_state(&b, VHOST_USER_SET_VRING_NUM, 0, 32768);
    check(err == VUB_OK, "[VQ-SPLIT-SIZE] a split ring of 32768 entries is accepted");
    bench_close(&b);

    bench_open(&b, false, 0);
    err = send_u64(&b, VHOST_USER_SET_VRING_KICK, 0 | VHOST_USER_VRING_NOFD_MASK, &b.kick[0], 1);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-VRING-FD"), "[VU-VRING-FD] SET_VRING_KICK with NOFD and an fd is refused");
    bench_close(&b);
    bench_open(&b, false, 0);
    err = send_u64(&b, VHOST_USER_SET_VRING_CALL, 0, NULL, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-VRING-FD"), "[VU-VRING-FD] SET_VRING_CALL without NOFD and without an fd is refused");
    bench_close(&b);
    bench_open(&b, false, 0);
    err = send_u64(&b, VHOST_USER_SET_VRING_ERR, 0x1000, NULL, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-VRING-FD"), "[VU-VRING-FD] SET_VRING_ERR with unknown bits is refused");
    bench_close(&b);

    bench_open(&b, false, 0);
    int before = open_fd_count();
    err = send_msg(&b, VHOST_USER_SET_VRING_CALL, 1 | VHOST_USER_NEED_REPLY_MASK,
                   &(uint64_t){VHOST_USER_VRING_NOFD_MASK}, 8, b.kick, 2);
    get_reply(&b, &h, &ack, sizeof ack);
    check(err == VUB_OK && ack != 0 && open_fd_count() == before,
          "[VU-FDS-CLOSE] fds that come with a refused message are closed");
    bench_close(&b);

    bench_open(&b, false, 0);
    bench_start(&b, 0);
    struct vub_vu_vring_addr a = {0, 0, uva(desc_gpa(0)) + 8, uva(used_gpa(0)), uva(avail_gpa(0)), 0};
    err = send_msg(&b, VHOST_USER_SET_VRING_ADDR, 1, &a, sizeof a, NULL, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VQ-SPLIT-ALIGN"), "[VQ-SPLIT-ALIGN] a descriptor table not aligned to 16 is refused");
    bench_close(&b);

    bench_open(&b, false, 0);
    bench_start(&b, 0);
    a = (struct vub_vu_vring_addr){0, 0, GUEST_UVA + GUEST_BYTES, uva(used_gpa(0)), uva(avail_gpa(0)), 0};
    err = send_msg(&b, VHOST_USER_SET_VRING_ADDR, 1, &a, sizeof a, NULL, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-NO-SHARED-MEM"), "[VQ-SPLIT-ALIGN] a descriptor table outside guest memory is refused");
    bench_close(&b);
}

static void test_memory_table(void)
{
    struct bench b;
    struct vub_vu_mem_table t = {0};
    bench_open(&b, false, 0);
    enum vub_err err = send_msg(&b, VHOST_USER_SET_MEM_TABLE, 1, &t, 8, NULL, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-MSG-SIZE"), "[VU-MEM-TABLE] a memory table with no regions is refused");
    bench_close(&b);

    bench_open(&b, false, 0);
    t.nregions = 2;
    t.regions[0] = (struct vub_vu_mem_region){GUEST_GPA, GUEST_BYTES, GUEST_UVA, 0};
    t.regions[1] = (struct vub_vu_mem_region){GUEST_GPA + 4096, 4096, GUEST_UVA + GUEST_BYTES, 0};
    int fds[2] = {b.memfd, b.memfd};
    err = send_msg(&b, VHOST_USER_SET_MEM_TABLE, 1, &t, 8 + 64, fds, 2);
    check(err == VUB_E_PROTO && reason_is(&b, "MEM-REGION-CHECK"), "[MEM-REGION-CHECK] overlapping guest regions are refused");
    bench_close(&b);

    bench_open(&b, false, 0);
    t.nregions = 1;
    t.regions[0] = (struct vub_vu_mem_region){UINT64_MAX - 4095, 8192, GUEST_UVA, 0};
    err = send_msg(&b, VHOST_USER_SET_MEM_TABLE, 1, &t, 8 + 32, fds, 1);
    check(err == VUB_E_PROTO && reason_is(&b, "MEM-REGION-CHECK"), "[MEM-REGION-CHECK] a region that wraps the address space is refused");
    bench_close(&b);

    bench_open(&b, false, 0);
    t.regions[0] = (struct vub_vu_mem_region){GUEST_GPA, GUEST_BYTES, GUEST_UVA, 0};
    err = send_msg(&b, VHOST_USER_SET_MEM_TABLE, 1, &t, 8 + 32, fds, 2);
    check(err == VUB_E_PROTO && reason_is(&b, "VU-MEM-TABLE"), "[VU-MEM-TABLE] a memory table with more fds than regions is refused");
    bench_close(&b);

    bench_open(&b, false, 0);
    t.regions[0] = (struct vub_vu_mem_region){GUEST_GPA, GUEST_BYTES, GUEST_UVA, 1ull << 40};
    err = send_msg(&b, VHOST_USER_SET_MEM_TABLE, 1, &t, 8 + 32, fds, 1);
    check(err == VUB_E_PROTO && reason_is(&b, "MEM-FILE-SIZE"), "[MEM-REGION-CHECK] a region whose mmap_offset lies past the file is refused");
    bench_close(&b);
}

static void test_io(void)
{
    struct bench b;
    uint32_t id, len;
    uint8_t buf[4096], want[4096];
    bench_open(&b, false, 0);
    check(bench_start(&b, 0), "the start-up sequence (features, memory, two rings) is accepted");

    memset(g(&b, DATA_GPA), 0xa5, 4096);
    enum vub_err err = request3(&b, 0, VIRTIO_BLK_T_OUT, 8, 4096, false);
    bool got = take_used(&b, 0, &id, &len);
    memset(want, 0xa5, sizeof want);
    check(err == VUB_OK && got && id == 0 && len == 1 && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_OK &&
              file_bytes(&b, 8 * 512, buf, 4096) && !memcmp(buf, want, 4096),
          "[BLK-OUT] a 4 KiB write lands in the image; used len is 1 (the status byte)");

    memset(g(&b, DATA_GPA), 0, 4096);
    err = request3(&b, 0, VIRTIO_BLK_T_IN, 7, 4096, true);
    got = take_used(&b, 0, &id, &len);
    file_bytes(&b, 7 * 512, want, 4096);
    check(err == VUB_OK && got && len == 4097 && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_OK &&
              !memcmp(g(&b, DATA_GPA), want, 4096),
          "[VQ-USED-LEN] a 4 KiB read returns the image bytes; used len is data + status = 4097");

    err = request3(&b, 1, VIRTIO_BLK_T_IN, 0, 512, true);
    got = take_used(&b, 1, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_OK,
          "requests on the second queue are served independently");

    err = request3(&b, 0, VIRTIO_BLK_T_IN, DISK_BYTES / 512 - 1, 1024, true);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_IOERR,
          "[BLK-RANGE] a read that runs past the capacity completes with IOERR");
    err = request3(&b, 0, VIRTIO_BLK_T_IN, UINT64_MAX / 512, 512, true);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_IOERR,
          "[BLK-RANGE] a sector number whose byte offset overflows completes with IOERR");
    err = request3(&b, 0, VIRTIO_BLK_T_OUT, 0, 100, false);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_IOERR,
          "[BLK-RANGE] a write that is not a whole number of sectors completes with IOERR");
    err = request3(&b, 0, 77, 0, 512, true);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_UNSUPP,
          "[BLK-UNSUPP] an unknown request type completes with UNSUPP");

    err = request3(&b, 0, VIRTIO_BLK_T_FLUSH, 0, 0, false);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && len == 1 && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_OK,
          "[BLK-FLUSH] FLUSH completes with OK");

    memset(g(&b, DATA_GPA), 0xff, 20);
    err = request3(&b, 0, VIRTIO_BLK_T_GET_ID, 0, 20, true);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && len == 21 && !memcmp(g(&b, DATA_GPA), "vub-test-serial\0\0\0\0\0", 20),
          "[BLK-GET-ID] GET_ID fills 20 bytes with the serial, NUL-padded");

    /* write-zeroes over sectors 8..15 (written with 0xa5 above) */
    uint8_t *seg = g(&b, DATA_GPA);
    vub_put_le64(seg, 8);
    vub_put_le32(seg + 8, 8);
    vub_put_le32(seg + 12, 0);
    err = request3(&b, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false);
    got = take_used(&b, 0, &id, &len);
    memset(want, 0, sizeof want);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_OK && file_bytes(&b, 8 * 512, buf, 4096) &&
              !memcmp(buf, want, 4096),
          "[BLK-WZ-UNMAP] WRITE_ZEROES makes the range read back as zeros");
    vub_put_le32(seg + 12, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
    err = request3(&b, 0, VIRTIO_BLK_T_DISCARD, 0, 16, false);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_UNSUPP,
          "[BLK-DISCARD-FLAGS] DISCARD with the UNMAP flag completes with UNSUPP");
    vub_put_le32(seg + 12, 2);
    err = request3(&b, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, false);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_UNSUPP,
          "[BLK-DISCARD-FLAGS] WRITE_ZEROES with an unknown flag completes with UNSUPP");
    vub_put_le64(seg, 0);
    vub_put_le32(seg + 8, 16);
    vub_put_le32(seg + 12, 0);
    err = request3(&b, 0, VIRTIO_BLK_T_DISCARD, 0, 16, false);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_OK, "[BLK-DISCARD] DISCARD of 16 sectors is OK");
    err = request3(&b, 0, VIRTIO_BLK_T_DISCARD, 0, 15, false);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_IOERR,
          "[BLK-DISCARD] a DISCARD payload that is not whole 16-byte ranges completes with IOERR");
    bench_close(&b);
}

/* [BLK-FRAMING] the header and the status may be cut anywhere: here the
 * 16-byte header, 512 data bytes and the status are one buffer cut into
 * two descriptors at every byte of the readable part. */
static void test_framing(void)
{
    struct bench b;
    uint32_t id, len;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    bool all_ok = true;
    for (uint32_t cut = 1; cut < 16 + 512; cut++) {
        uint8_t *p = g(&b, HDR_GPA);
        vub_put_le32(p, VIRTIO_BLK_T_OUT);
        vub_put_le32(p + 4, 0);
        vub_put_le64(p + 8, 3);
        memset(p + 16, (int)(cut & 0xff), 512);
        *g(&b, STATUS_GPA) = 0xee;
        struct d ds[3] = {{HDR_GPA, cut, VIRTQ_DESC_F_NEXT, 1},
                          {HDR_GPA + cut, 16 + 512 - cut, VIRTQ_DESC_F_NEXT, 2},
                          {STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0}};
        enum vub_err err = submit(&b, 0, ds, 3, 0);
        uint8_t sector[512], want[512];
        memset(want, (int)(cut & 0xff), sizeof want);
        if (err != VUB_OK || !take_used(&b, 0, &id, &len) || *g(&b, STATUS_GPA) != 0 ||
            !file_bytes(&b, 3 * 512, sector, 512) || memcmp(sector, want, 512))
            all_ok = false;
    }
    check(all_ok, "[BLK-FRAMING] a write whose header and data are split at every byte is served");

    /* status byte shares a descriptor with the read data */
    put_hdr(&b, VIRTIO_BLK_T_IN, 2);
    struct d ds[2] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1}, {DATA_GPA, 513, VIRTQ_DESC_F_WRITE, 0}};
    enum vub_err err = submit(&b, 0, ds, 2, 0);
    bool got = take_used(&b, 0, &id, &len);
    uint8_t want[512];
    file_bytes(&b, 2 * 512, want, 512);
    check(err == VUB_OK && got && len == 513 && *g(&b, DATA_GPA + 512) == 0 && !memcmp(g(&b, DATA_GPA), want, 512),
          "[BLK-FRAMING] the status may be the last byte of the data buffer");

    struct d one[1] = {{HDR_GPA, 16, 0, 0}};
    put_hdr(&b, VIRTIO_BLK_T_FLUSH, 0);
    err = submit(&b, 0, one, 1, 0);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && len == 0, "[BLK-NO-STATUS] a request with no writable byte is returned with len 0");

    struct d zero[4] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1},
                        {DATA_GPA, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2},
                        {STATUS_GPA, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3},
                        {DATA_GPA, 0, VIRTQ_DESC_F_WRITE, 0}};
    put_hdr(&b, VIRTIO_BLK_T_FLUSH, 0);
    err = submit(&b, 0, zero, 4, 0);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_OK,
          "[VQ-ZERO-LEN] zero-length descriptors are accepted and carry nothing");

    /* a header shorter than 16 bytes */
    struct d short_hdr[2] = {{HDR_GPA, 8, VIRTQ_DESC_F_NEXT, 1}, {STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0}};
    err = submit(&b, 0, short_hdr, 2, 0);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_IOERR,
          "[BLK-SHORT-HDR] a request whose readable part is shorter than the header completes with IOERR");
    bench_close(&b);
}

static void test_indirect(void)
{
    struct bench b;
    uint32_t id, len;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    uint64_t table = GUEST_GPA + 0x30000;
    put_hdr(&b, VIRTIO_BLK_T_IN, 5);
    put_desc(g(&b, table), 0, (struct d){HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1});
    put_desc(g(&b, table), 1, (struct d){DATA_GPA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2});
    put_desc(g(&b, table), 2, (struct d){STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0});
    struct d ind = {table, 48, VIRTQ_DESC_F_INDIRECT, 0};
    enum vub_err err = submit(&b, 0, &ind, 1, 0);
    bool got = take_used(&b, 0, &id, &len);
    uint8_t want[512];
    file_bytes(&b, 5 * 512, want, 512);
    check(err == VUB_OK && got && len == 513 && *g(&b, STATUS_GPA) == 0 && !memcmp(g(&b, DATA_GPA), want, 512),
          "[VQ-INDIRECT] a request in an indirect table is served");

    put_desc(g(&b, table), 0, (struct d){DATA_GPA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1});
    put_desc(g(&b, table), 1, (struct d){STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0});
    struct d mixed[2] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1}, {table, 32, VIRTQ_DESC_F_INDIRECT, 0}};
    err = submit(&b, 0, mixed, 2, 0);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == 0 && !memcmp(g(&b, DATA_GPA), want, 512),
          "[VQ-INDIRECT-ANYWHERE] direct descriptors followed by an INDIRECT one are served");
    bench_close(&b);
}

/* Each hostile ring must end the session with VUB_E_PROTO, not crash, not
 * hang, and not touch memory outside guest RAM. */
static void hostile(const char *name, const struct d *ds, unsigned n, uint16_t head, uint16_t avail_bump)
{
    struct bench b;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    put_hdr(&b, VIRTIO_BLK_T_IN, 0);
    b.avail_idx[0] = (uint16_t)(b.avail_idx[0] + avail_bump);
    enum vub_err err = submit(&b, 0, ds, n, head);
    uint32_t id, len;
    bool got = take_used(&b, 0, &id, &len);
    check(err == VUB_E_PROTO && !got, "%s", name);
    bench_close(&b);
}

static void test_hostile_rings(void)
{
    uint64_t table = GUEST_GPA + 0x30000;
    struct d loop[2] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1}, {DATA_GPA, 512, VIRTQ_DESC_F_NEXT, 0}};
    hostile("[VQ-SPLIT-LOOP] a descriptor chain that loops is refused", loop, 2, 0, 0);
    struct d selfloop[1] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 0}};
    hostile("[VQ-SPLIT-LOOP] a descriptor that points at itself is refused", selfloop, 1, 0, 0);
    struct d ok1[1] = {{HDR_GPA, 16, 0, 0}};
    hostile("[VQ-SPLIT-HEAD] a head index equal to the ring size is refused", ok1, 1, QSIZE, 0);
    hostile("[VQ-SPLIT-AVAIL-IDX] an available index more than a ring ahead is refused", ok1, 1, 0, QSIZE + 1);
    struct d next_oob[1] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, QSIZE}};
    hostile("[VQ-SPLIT-NEXT] a next index outside the ring is refused", next_oob, 1, 0, 0);
    struct d order[3] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1},
                         {STATUS_GPA, 1, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2},
                         {DATA_GPA, 512, 0, 0}};
    hostile("[VQ-SPLIT-ORDER] a readable descriptor after a writable one is refused", order, 3, 0, 0);
    struct d unmapped[2] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1}, {GUEST_GPA + GUEST_BYTES, 1, VIRTQ_DESC_F_WRITE, 0}};
    hostile("[MEM-XLATE] a buffer outside guest memory is refused", unmapped, 2, 0, 0);
    struct d straddle_end[2] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1},
                                {GUEST_GPA + GUEST_BYTES - 1, 2, VIRTQ_DESC_F_WRITE, 0}};
    hostile("[MEM-XLATE] a buffer that runs off the end of guest memory is refused", straddle_end, 2, 0, 0);
    struct d wrap[2] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1}, {UINT64_MAX - 7, 16, VIRTQ_DESC_F_WRITE, 0}};
    hostile("[MEM-WRAP] a buffer whose address wraps is refused", wrap, 2, 0, 0);
    struct d ind_next[2] = {{table, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1}, {STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0}};
    hostile("[VQ-INDIRECT-NEXT] a descriptor with both INDIRECT and NEXT is refused", ind_next, 2, 0, 0);
    struct d ind_len[1] = {{table, 40, VIRTQ_DESC_F_INDIRECT, 0}};
    hostile("[VQ-INDIRECT-LEN] an indirect table whose length is not a multiple of 16 is refused", ind_len, 1, 0, 0);
    struct d ind_zero[1] = {{table, 0, VIRTQ_DESC_F_INDIRECT, 0}};
    hostile("[VQ-INDIRECT-LEN] an empty indirect table is refused", ind_zero, 1, 0, 0);
    struct d ind_out[1] = {{GUEST_GPA + GUEST_BYTES - 16, 32, VIRTQ_DESC_F_INDIRECT, 0}};
    hostile("[VQ-INDIRECT] an indirect table that runs off guest memory is refused", ind_out, 1, 0, 0);

    /* nested indirect and a loop inside a table need the table filled */
    struct bench b;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    put_desc(g(&b, table), 0, (struct d){HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1});
    put_desc(g(&b, table), 1, (struct d){table, 32, VIRTQ_DESC_F_INDIRECT, 0});
    struct d ind = {table, 32, VIRTQ_DESC_F_INDIRECT, 0};
    enum vub_err err = submit(&b, 0, &ind, 1, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VQ-INDIRECT-NESTED"), "[VQ-INDIRECT-NESTED] an INDIRECT descriptor inside an indirect table is refused");
    bench_close(&b);

    bench_open(&b, false, 0);
    bench_start(&b, 0);
    put_desc(g(&b, table), 0, (struct d){HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1});
    put_desc(g(&b, table), 1, (struct d){DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 0});
    err = submit(&b, 0, &ind, 1, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VQ-SPLIT-LOOP"), "[VQ-SPLIT-LOOP] a loop inside an indirect table is refused");
    bench_close(&b);

    bench_open(&b, false, VUB_BIT(VIRTIO_F_INDIRECT_DESC));
    bench_start(&b, 0);
    put_desc(g(&b, table), 0, (struct d){HDR_GPA, 16, 0, 0});
    err = submit(&b, 0, &ind, 1, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VQ-INDIRECT"), "[VQ-INDIRECT] INDIRECT without INDIRECT_DESC negotiated is refused");
    bench_close(&b);
}

static void test_read_only(void)
{
    struct bench b;
    uint32_t id, len;
    bench_open(&b, true, 0);
    bench_start(&b, 0);
    uint8_t before[4096], after[4096];
    file_bytes(&b, 0, before, sizeof before);
    memset(g(&b, DATA_GPA), 0x11, 4096);
    enum vub_err err = request3(&b, 0, VIRTIO_BLK_T_OUT, 0, 4096, false);
    bool got = take_used(&b, 0, &id, &len);
    file_bytes(&b, 0, after, sizeof after);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_IOERR && !memcmp(before, after, 4096),
          "[BLK-RO] a write to a read-only export completes with IOERR and changes nothing");
    bench_close(&b);
}

static void test_notifications(void)
{
    struct bench b;
    bench_open(&b, false, VUB_BIT(VIRTIO_F_EVENT_IDX));
    bench_start(&b, 0);
    call_count(&b, 0);
    vub_put_le16(g(&b, avail_gpa(0)), VIRTQ_AVAIL_F_NO_INTERRUPT);
    bool served = flush_served(&b, 0);
    check(served && call_count(&b, 0) == 0,
          "[VQ-SPLIT-NOTIFY] without EVENT_IDX, NO_INTERRUPT suppresses the call (the request was served)");
    vub_put_le16(g(&b, avail_gpa(0)), 0);
    served = flush_served(&b, 0);
    check(served && call_count(&b, 0) == 1,
          "[VQ-SPLIT-NOTIFY] without EVENT_IDX and without NO_INTERRUPT the driver is called");
    bench_close(&b);

    bench_open(&b, false, 0);
    bench_start(&b, 0);
    call_count(&b, 0);
    uint8_t *used_event = g(&b, avail_gpa(0)) + 4 + 2 * QSIZE;
    vub_put_le16(used_event, 0); /* notify after the first used entry (index 0) */
    served = flush_served(&b, 0);
    check(served && call_count(&b, 0) == 1, "[VQ-SPLIT-NOTIFY] with EVENT_IDX, crossing used_event calls the driver");
    vub_put_le16(used_event, 5);
    served = flush_served(&b, 0);
    check(served && call_count(&b, 0) == 0,
          "[VQ-SPLIT-NOTIFY] with EVENT_IDX, an entry before used_event is not notified (the request was served)");
    uint16_t avail_event = vub_le16(g(&b, used_gpa(0)) + 4 + 8 * QSIZE);
    check(avail_event == b.avail_idx[0], "[VQ-SPLIT-KICK-RACE] avail_event asks for a kick at the next new entry");
    bench_close(&b);
}

/* [VU-GET-VRING-BASE] stop returns where the device stopped and does not
 * reset; a restart from that base resumes exactly. */
static void test_stop_resume(void)
{
    struct bench b;
    struct vub_vu_header h;
    struct vub_vu_vring_state s;
    uint32_t id, len;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    for (int i = 0; i < 3; i++) {
        request3(&b, 0, VIRTIO_BLK_T_FLUSH, 0, 0, false);
        take_used(&b, 0, &id, &len);
    }
    send_state(&b, VHOST_USER_GET_VRING_BASE, 0, 0);
    bool got = get_reply(&b, &h, &s, sizeof s);
    check(got && h.size == 8 && s.index == 0 && s.num == 3, "[VU-GET-VRING-BASE] GET_VRING_BASE answers the next avail index (3)");

    /* a request made available while stopped is not served: no used entry,
     * its status byte untouched, and no error (the device just waits) */
    enum vub_err stopped = request3(&b, 0, VIRTIO_BLK_T_FLUSH, 0, 0, false);
    check(stopped == VUB_OK && !take_used(&b, 0, &id, &len) && *g(&b, STATUS_GPA) == 0xee,
          "[VU-RING-STOPPED] a stopped ring is not processed");

    send_state(&b, VHOST_USER_SET_VRING_BASE, 0, 3);
    int kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    enum vub_err err = send_u64(&b, VHOST_USER_SET_VRING_KICK, 0, &kick, 1);
    got = take_used(&b, 0, &id, &len);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == 0,
          "[VU-VRING-KICK] restarting from base 3 serves the request left waiting");
    close(kick);
    bench_close(&b);
}

/* [MEM-STRADDLE] two regions from two memfds, adjacent in guest space: a
 * buffer across the boundary is served as two pieces. Uses ADD_MEM_REG. */
static void test_mem_slots(void)
{
    struct bench b;
    struct vub_vu_header h;
    uint64_t ack;
    uint32_t id, len;
    bench_open(&b, false, 0);
    uint64_t proto = u64_request(&b, VHOST_USER_GET_PROTOCOL_FEATURES);
    send_u64(&b, VHOST_USER_SET_PROTOCOL_FEATURES, proto, NULL, 0);
    uint64_t slots = u64_request(&b, VHOST_USER_GET_MAX_MEM_SLOTS);
    check(slots == VUB_MAX_MEM_REGIONS, "[VU-MEM-SLOTS] GET_MAX_MEM_SLOTS answers %u", VUB_MAX_MEM_REGIONS);
    send_u64(&b, VHOST_USER_SET_FEATURES, u64_request(&b, VHOST_USER_GET_FEATURES) & ~VUB_BIT(VIRTIO_F_RING_PACKED),
             NULL, 0);

    int second = (int)syscall(SYS_memfd_create, "guest2", 0);
    ftruncate(second, 1 << 20);
    uint8_t *hi = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, second, 0);
    struct vub_vu_mem_single r1 = {0, {GUEST_GPA, GUEST_BYTES, GUEST_UVA, 0}};
    struct vub_vu_mem_single r2 = {0, {GUEST_GPA + GUEST_BYTES, 1 << 20, GUEST_UVA + GUEST_BYTES, 0}};
    enum vub_err e1 = send_msg(&b, VHOST_USER_ADD_MEM_REG, 1 | VHOST_USER_NEED_REPLY_MASK, &r1, sizeof r1, &b.memfd, 1);
    get_reply(&b, &h, &ack, sizeof ack);
    enum vub_err e2 = send_msg(&b, VHOST_USER_ADD_MEM_REG, 1, &r2, sizeof r2, &second, 1);
    check(e1 == VUB_OK && ack == 0 && e2 == VUB_OK, "[VU-MEM-SLOTS] ADD_MEM_REG adds two regions");
    setup_queue(&b, 0);
    while (get_reply(&b, &h, &ack, sizeof ack))
        ;

    /* 4 KiB of data: the first 1 KiB at the end of region 1, the rest in region 2 */
    uint64_t data = GUEST_GPA + GUEST_BYTES - 1024;
    for (int i = 0; i < 4096; i++)
        *(i < 1024 ? g(&b, data + (uint64_t)i) : hi + (i - 1024)) = (uint8_t)(i * 7);
    put_hdr(&b, VIRTIO_BLK_T_OUT, 40);
    struct d ds[3] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1}, {data, 4096, VIRTQ_DESC_F_NEXT, 2},
                      {STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0}};
    enum vub_err err = submit(&b, 0, ds, 3, 0);
    bool got = take_used(&b, 0, &id, &len);
    uint8_t buf[4096];
    bool same = file_bytes(&b, 40 * 512, buf, sizeof buf);
    for (int i = 0; i < 4096 && same; i++)
        same = buf[i] == (uint8_t)(i * 7);
    check(err == VUB_OK && got && *g(&b, STATUS_GPA) == 0 && same,
          "[MEM-STRADDLE] a buffer that spans two regions is written whole");

    err = send_msg(&b, VHOST_USER_REM_MEM_REG, 1, &r2, sizeof r2, NULL, 0);
    check(err == VUB_OK, "[MEM-REM] REM_MEM_REG removes a region named by its addresses and size");
    err = submit(&b, 0, ds, 3, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "MEM-XLATE"), "[MEM-REMAP] after REM_MEM_REG the removed memory is no longer reachable");
    munmap(hi, 1 << 20);
    close(second);
    bench_close(&b);
}

/* [VU-POLL] a busy-polling caller serves requests that were never kicked. */
static void test_busy_poll(void)
{
    struct bench b;
    uint32_t id, len;
    uint64_t served = 0;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    put_hdr(&b, VIRTIO_BLK_T_FLUSH, 0);
    struct d ds[2] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1}, {STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0}};
    for (unsigned i = 0; i < 2; i++)
        put_desc(g(&b, desc_gpa(1)), i, ds[i]);
    uint8_t *avail = g(&b, avail_gpa(1));
    vub_put_le16(avail + 4, 0);
    vub_put_le16(avail + 2, ++b.avail_idx[1]); /* no kick */
    enum vub_err err = vub_dev_poll_queues(b.dev, &served);
    bool got = take_used(&b, 1, &id, &len);
    check(err == VUB_OK && served == 1 && got && *g(&b, STATUS_GPA) == 0,
          "[VU-POLL] vub_dev_poll_queues serves a request nobody kicked");
    bench_close(&b);
}

static void test_fuzz_regressions(void)
{
    struct bench b;
    bench_open(&b, false, 0);
    struct vub_vu_mem_table t = {.nregions = 1};
    t.regions[0] = (struct vub_vu_mem_region){GUEST_GPA, GUEST_BYTES, GUEST_UVA + 1, 0};
    u64_request(&b, VHOST_USER_GET_FEATURES);
    send_u64(&b, VHOST_USER_SET_FEATURES, u64_request(&b, VHOST_USER_GET_FEATURES) & ~VUB_BIT(VIRTIO_F_RING_PACKED),
             NULL, 0);
    send_msg(&b, VHOST_USER_SET_MEM_TABLE, 1, &t, 8 + 32, &b.memfd, 1);
    send_state(&b, VHOST_USER_SET_VRING_NUM, 0, QSIZE);
    struct vub_vu_vring_addr a = {0, 0, uva(desc_gpa(0)) + 1, uva(used_gpa(0)) + 1, uva(avail_gpa(0)) + 1, 0};
    a.desc_uaddr = (a.desc_uaddr + 15) & ~15ull; /* aligned as the front-end sees it, odd in our mapping */
    a.used_uaddr = (a.used_uaddr + 3) & ~3ull;
    a.avail_uaddr = (a.avail_uaddr + 1) & ~1ull;
    enum vub_err err = send_msg(&b, VHOST_USER_SET_VRING_ADDR, 1, &a, sizeof a, NULL, 0);
    check(err == VUB_E_PROTO && reason_is(&b, "VQ-HOST-ALIGN"), "[VQ-HOST-ALIGN] rings that would be misaligned in the back-end's mapping are refused");
    bench_close(&b);

    struct d zw[3] = {{STATUS_GPA, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1},
                      {HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 2},
                      {STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0}};
    hostile("[VQ-SPLIT-ORDER] a readable descriptor after an empty writable one is refused", zw, 3, 0, 0);
}

/* QEMU 10's hand-over from the firmware to the kernel, as it is on the
 * wire: the firmware's rings are disabled (queue 1, never set up, too) and
 * queue 0 stopped; RESET_DEVICE; then SET_FEATURES, SET_VRING_CALL and the
 * ring messages again, but not the memory table and not SET_VRING_ERR. */
static void test_reset_keeps_connection(void)
{
    struct bench b;
    uint32_t id, len;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    int err_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    bool ok = send_u64(&b, VHOST_USER_SET_VRING_ERR, 0, &err_fd, 1) == VUB_OK &&
              request3(&b, 0, VIRTIO_BLK_T_IN, 1, 512, true) == VUB_OK && take_used(&b, 0, &id, &len);
    for (unsigned q = 0; q < 2; q++)
        ok = ok && send_state(&b, VHOST_USER_SET_VRING_ENABLE, q, 0) == VUB_OK;
    ok = ok && send_state(&b, VHOST_USER_GET_VRING_BASE, 0, 0) == VUB_OK;
    struct vub_vu_header h;
    struct vub_vu_vring_state base;
    ok = ok && get_reply(&b, &h, &base, sizeof base) && base.num == 1;
    ok = ok && send_msg(&b, VHOST_USER_RESET_DEVICE, 1, NULL, 0, NULL, 0) == VUB_OK &&
         send_u64(&b, VHOST_USER_SET_FEATURES, b.features, NULL, 0) == VUB_OK &&
         setup_queue(&b, 0) == VUB_OK && setup_queue(&b, 1) == VUB_OK;
    memset(g(&b, DATA_GPA), 0, 512);
    ok = ok && request3(&b, 1, VIRTIO_BLK_T_IN, 3, 512, true) == VUB_OK && take_used(&b, 1, &id, &len) &&
         *g(&b, STATUS_GPA) == VIRTIO_BLK_S_OK && *g(&b, DATA_GPA) == 3;
    check(ok, "[VU-RESET] RESET_DEVICE keeps the memory table: rings set up again without it serve I/O");
    /* a ring the driver breaks after the reset signals the error fd set before it */
    struct d loop[2] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1}, {DATA_GPA, 512, VIRTQ_DESC_F_NEXT, 0}};
    put_hdr(&b, VIRTIO_BLK_T_IN, 0);
    uint64_t signalled = 0;
    check(submit(&b, 0, loop, 2, 0) == VUB_E_PROTO && read(err_fd, &signalled, sizeof signalled) == 8,
          "[VU-RESET] RESET_DEVICE keeps the error fd: a ring broken after it is reported there");
    close(err_fd);
    bench_close(&b);
}

/* SET_STATUS/GET_STATUS, and status 0 in QEMU 7.2's order: before the
 * front-end asks where the ring stopped. */
static void test_status(void)
{
    struct bench b;
    uint32_t id, len;
    struct vub_vu_header h;
    bench_open(&b, false, 0);
    u64_request(&b, VHOST_USER_GET_FEATURES);
    send_u64(&b, VHOST_USER_SET_PROTOCOL_FEATURES, u64_request(&b, VHOST_USER_GET_PROTOCOL_FEATURES), NULL, 0);
    send_u64(&b, VHOST_USER_SET_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK,
             NULL, 0);
    check(u64_request(&b, VHOST_USER_GET_STATUS) == (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER),
          "[VU-STATUS] FEATURES_OK before SET_FEATURES is left clear, as a device does for features it refuses");
    check(send_u64(&b, VHOST_USER_SET_STATUS, 0x100, NULL, 0) == VUB_E_PROTO,
          "[VU-STATUS] SET_STATUS wider than the status byte is refused");
    bench_close(&b);

    bench_open(&b, false, 0);
    bench_start(&b, 0);
    uint64_t all = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                   VIRTIO_STATUS_DRIVER_OK;
    send_u64(&b, VHOST_USER_SET_STATUS, all, NULL, 0);
    check(u64_request(&b, VHOST_USER_GET_STATUS) == all, "[VU-STATUS] GET_STATUS answers the status set");
    bool ok = request3(&b, 0, VIRTIO_BLK_T_IN, 0, 512, true) == VUB_OK && take_used(&b, 0, &id, &len) &&
              request3(&b, 0, VIRTIO_BLK_T_IN, 1, 512, true) == VUB_OK && take_used(&b, 0, &id, &len);
    ok = ok && send_u64(&b, VHOST_USER_SET_STATUS, 0, NULL, 0) == VUB_OK;
    ok = ok && request3(&b, 0, VIRTIO_BLK_T_IN, 2, 512, true) == VUB_OK && !take_used(&b, 0, &id, &len);
    check(ok && vub_dev_queues_started(b.dev) == 0, "[VU-STATUS] status 0 stops every ring");
    struct vub_vu_vring_state base = {0, 0};
    send_state(&b, VHOST_USER_GET_VRING_BASE, 0, 0);
    check(get_reply(&b, &h, &base, sizeof base) && base.num == 2,
          "[VU-STATUS] after status 0, GET_VRING_BASE still answers where the ring stopped (QEMU 7.2's order)");
    check(u64_request(&b, VHOST_USER_GET_STATUS) == 0, "[VU-STATUS] status 0 reads back as 0");
    send_u64(&b, VHOST_USER_SET_STATUS, all, NULL, 0);
    send_msg(&b, VHOST_USER_RESET_DEVICE, 1, NULL, 0, NULL, 0);
    check(u64_request(&b, VHOST_USER_GET_STATUS) == 0, "[VU-STATUS] RESET_DEVICE clears the status");
    bench_close(&b);
}

/* Live resize: the image grows, the device says so on the back-end
 * channel, and the front-end's answer is read by the loop, not waited for. */
static void test_resize(void)
{
    struct bench b;
    struct vub_vu_header h;
    struct vub_vu_config c = {0, 8, 0, {0}}, r = {0};
    uint64_t before = 0, after = 0, ack = 0;
    bool told = false;
    uint32_t id, len;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    check(send_msg(&b, VHOST_USER_SET_BACKEND_REQ_FD, 1, NULL, 0, &sv[1], 1) == VUB_OK,
          "[VU-BACKEND-REQ] SET_BACKEND_REQ_FD with one socket is taken");
    close(sv[1]);
    truncate(b.path, 2 * DISK_BYTES);
    enum vub_err err = vub_dev_resize(b.dev, &before, &after, &told);
    struct vub_msg m;
    struct vub_error e;
    bool sent = vub_vu_recv(sv[0], &m, &e) == VUB_OK &&
                m.hdr.request == VHOST_USER_BACKEND_CONFIG_CHANGE_MSG && m.hdr.size == 0 &&
                (m.hdr.flags & VHOST_USER_NEED_REPLY_MASK);
    check(err == VUB_OK && told && before == DISK_BYTES / 512 && after == 2 * DISK_BYTES / 512 && sent,
          "[VU-CONFIG-CHANGE] a grown image sends CONFIG_CHANGE_MSG with NEED_REPLY (REPLY_ACK negotiated)");
    send_msg(&b, VHOST_USER_GET_CONFIG, 1, &c, 12 + 8, NULL, 0);
    check(get_reply(&b, &h, &r, sizeof r) && vub_le64(r.data) == 2 * DISK_BYTES / 512,
          "[BLK-RESIZE] GET_CONFIG answers the new capacity while the answer is outstanding");
    struct pollfd pfd[VUB_MAX_POLLFDS];
    size_t n = vub_dev_pollfds(b.dev, pfd, VUB_MAX_POLLFDS);
    bool polled = false;
    for (size_t i = 0; i < n; i++)
        polled = polled || pfd[i].fd == b.dev->backend_fd;
    struct vub_vu_header reply = {VHOST_USER_BACKEND_CONFIG_CHANGE_MSG, VHOST_USER_REPLY_FLAGS, 8};
    vub_vu_send(sv[0], &reply, &ack, NULL, 0);
    for (size_t i = 0; i < n; i++)
        pfd[i].revents = (short)(poll(&pfd[i], 1, 0) > 0 ? pfd[i].revents : 0);
    struct vub_dev_stats st;
    err = vub_dev_dispatch(b.dev, pfd, n);
    vub_dev_stats(b.dev, &st);
    check(polled && err == VUB_OK && !b.dev->backend_ack_pending && st.rejected_messages == 0,
          "[VU-CONFIG-CHANGE] the channel is in the poll set until the ack, which vub_dev_dispatch reads");
    memset(g(&b, DATA_GPA), 0xab, 512);
    check(request3(&b, 0, VIRTIO_BLK_T_OUT, 2 * DISK_BYTES / 512 - 1, 512, false) == VUB_OK &&
              take_used(&b, 0, &id, &len) && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_OK,
          "[BLK-RESIZE] the last sector of the grown disk takes a write");
    truncate(b.path, DISK_BYTES);
    err = vub_dev_resize(b.dev, &before, &after, &told);
    check(err == VUB_E_RANGE && after == 2 * DISK_BYTES / 512 && !told && strstr(vub_dev_why(b.dev), "shrank"),
          "[BLK-RESIZE] a shrink is refused and the capacity kept: the driver may hold data there");
    close(sv[0]);
    bench_close(&b);
}

/* QEMU without share=on sends no memory regions; the rings then point
 * nowhere and the log line must say why that usually happens. */
static void test_no_shared_memory(void)
{
    struct bench b;
    bench_open(&b, false, 0);
    u64_request(&b, VHOST_USER_GET_FEATURES);
    send_u64(&b, VHOST_USER_SET_PROTOCOL_FEATURES, u64_request(&b, VHOST_USER_GET_PROTOCOL_FEATURES), NULL, 0);
    send_u64(&b, VHOST_USER_SET_FEATURES, VUB_BIT(VIRTIO_F_VERSION_1) | VUB_BIT(VHOST_USER_F_PROTOCOL_FEATURES),
             NULL, 0);
    struct vub_vu_vring_addr a = {0, 0, uva(desc_gpa(0)), uva(used_gpa(0)), uva(avail_gpa(0)), 0};
    send_state(&b, VHOST_USER_SET_VRING_NUM, 0, QSIZE);
    enum vub_err err = send_msg(&b, VHOST_USER_SET_VRING_ADDR, 1, &a, sizeof a, NULL, 0);
    check(err == VUB_E_PROTO && strstr(vub_dev_why(b.dev), "shared no memory") &&
              strstr(vub_dev_why(b.dev), "share=on"),
          "[VU-NO-SHARED-MEM] rings with no memory table are refused naming share=on (%s)", vub_dev_why(b.dev));
    bench_close(&b);
}

static void test_reset(void)
{
    struct bench b;
    uint32_t id, len;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    bool before = flush_served(&b, 0); /* the ring did run */
    enum vub_err err = send_msg(&b, VHOST_USER_RESET_DEVICE, 1, NULL, 0, NULL, 0);
    enum vub_err after = request3(&b, 0, VIRTIO_BLK_T_FLUSH, 0, 0, false);
    check(before && err == VUB_OK && after == VUB_OK && !take_used(&b, 0, &id, &len) &&
              *g(&b, STATUS_GPA) == 0xee && vub_dev_queues_started(b.dev) == 0,
          "[VU-RESET] after RESET_DEVICE no ring runs (it did before)");
    check(bench_start(&b, 0), "[VU-RESET] the device can be set up again after RESET_DEVICE");
    bench_close(&b);
    test_reset_keeps_connection();
}


/* Sends SET_VRING_KICK/CALL/ERR for queue 0 with fd and NEED_REPLY; true if
 * the device acked it with 0 (accepted). The fd is ours to close. */
static bool vring_fd_accepted(struct bench *b, uint32_t req, int fd)
{
    struct vub_vu_header h;
    uint64_t ack = ~0ull;
    send_msg(b, req, 1 | VHOST_USER_NEED_REPLY_MASK, &(uint64_t){0}, 8, &fd, 1);
    return get_reply(b, &h, &ack, sizeof ack) && ack == 0;
}

/* [VU-EVENT-FD] a kick fd is an eventfd or a pipe's read end, a call or err
 * fd an eventfd or a pipe's write end; anything else is refused, since it
 * would never signal or would signal forever. */
static void test_event_fd_kinds(void)
{
    struct bench b;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    int sv[2], p[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    close(sv[1]);
    if (pipe(p) != 0)
        abort();
    struct { const char *what; int fd; } bad[] = {
        {"/dev/null", open("/dev/null", O_RDWR)},
        {"/dev/zero", open("/dev/zero", O_RDONLY)},
        {"a directory", open("/", O_RDONLY | O_DIRECTORY)},
        {"a regular file", open(b.path, O_RDONLY)},
        {"a socket whose peer closed", sv[0]},
    };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        check(!vring_fd_accepted(&b, VHOST_USER_SET_VRING_KICK, bad[i].fd),
              "[VU-EVENT-FD] a kick fd that is %s is refused", bad[i].what);
        check(!vring_fd_accepted(&b, VHOST_USER_SET_VRING_CALL, bad[i].fd),
              "[VU-EVENT-FD] a call fd that is %s is refused", bad[i].what);
        check(!vring_fd_accepted(&b, VHOST_USER_SET_VRING_ERR, bad[i].fd),
              "[VU-EVENT-FD] an err fd that is %s is refused", bad[i].what);
        close(bad[i].fd);
    }
    check(!vring_fd_accepted(&b, VHOST_USER_SET_VRING_KICK, p[1]),
          "[VU-EVENT-FD] a kick fd that is a pipe's write end is refused");
    check(!vring_fd_accepted(&b, VHOST_USER_SET_VRING_CALL, p[0]),
          "[VU-EVENT-FD] a call fd that is a pipe's read end is refused");
    check(vring_fd_accepted(&b, VHOST_USER_SET_VRING_CALL, p[1]) &&
              vring_fd_accepted(&b, VHOST_USER_SET_VRING_ERR, p[1]),
          "[VU-EVENT-FD] call and err fds that are a pipe's write end are accepted");
    close(p[0]);
    close(p[1]);
    if (pipe(p) != 0) /* a pipe of its own: the device still holds the last one as err fd */
        abort();
    check(vring_fd_accepted(&b, VHOST_USER_SET_VRING_KICK, p[0]),
          "[VU-EVENT-FD] a kick fd that is a pipe's read end is accepted");
    check(vring_fd_accepted(&b, VHOST_USER_SET_VRING_CALL, b.call[0]),
          "[VU-EVENT-FD] a call fd that is an eventfd is accepted");

    /* The kick pipe's writer goes away: poll reports POLLHUP for good. */
    struct pollfd fds[VUB_MAX_POLLFDS];
    size_t before = vub_dev_pollfds(b.dev, fds, VUB_MAX_POLLFDS);
    close(p[1]);
    close(p[0]);
    int ready = poll(fds, before, 0);
    enum vub_err err = vub_dev_dispatch(b.dev, fds, before);
    size_t after = vub_dev_pollfds(b.dev, fds, VUB_MAX_POLLFDS);
    int again = poll(fds, after, 0);
    check(ready == 1 && err == VUB_OK && after == before - 1 && again == 0,
          "[VU-EVENT-FD] a kick pipe that hung up is dropped: the next poll has nothing ready (no spin)");
    check(strstr(vub_dev_why(b.dev), "kick fd hung up") != NULL,
          "[VU-EVENT-FD] the dropped kick fd is named for one log line: %s", vub_dev_why(b.dev));
    bench_close(&b);
}

/* [VU-CALL-NONBLOCK] a call pipe that nobody drains fills up; writes to it
 * never block, so the device keeps completing requests (the full pipe
 * already holds a pending notification). */
static void on_wedged(int sig)
{
    (void)sig;
    static const char msg[] = "not ok - [VU-CALL-NONBLOCK] the device blocked writing to a full call pipe\n";
    write(1, msg, sizeof msg - 1);
    _exit(1);
}

static void test_call_pipe_full(void)
{
    struct bench b;
    uint32_t id, len;
    int p[2];
    bench_open(&b, false, VUB_BIT(VIRTIO_F_EVENT_IDX)); /* one call per completion */
    bench_start(&b, 0);
    if (pipe(p) != 0)
        abort();
    fcntl(p[1], F_SETPIPE_SZ, 4096); /* 512 signals fill it */
    check(vring_fd_accepted(&b, VHOST_USER_SET_VRING_CALL, p[1]), "a call pipe is accepted");
    signal(SIGALRM, on_wedged);
    alarm(20);
    unsigned done = 0;
    for (unsigned i = 0; i < 2000; i++) {
        request3(&b, 0, VIRTIO_BLK_T_IN, 0, 512, true);
        done += take_used(&b, 0, &id, &len) && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_OK;
    }
    alarm(0);
    check(done == 2000, "[VU-CALL-NONBLOCK] 2000 requests complete while nobody drains the call pipe (%u)", done);
    close(p[0]);
    close(p[1]);
    bench_close(&b);
}


/* An IN request of one header, `data` 512-byte writable segments and a
 * status byte, all in one indirect table. Returns the used length. */
static uint32_t long_chain(struct bench *b, unsigned data, bool *got)
{
    uint64_t table = GUEST_GPA + 0x30000;
    uint32_t id, len = ~0u;
    put_hdr(b, VIRTIO_BLK_T_IN, 0);
    memset(g(b, DATA_GPA), 0x77, (size_t)data * 512);
    put_desc(g(b, table), 0, (struct d){HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1});
    for (unsigned i = 0; i < data; i++)
        put_desc(g(b, table), 1 + i,
                 (struct d){DATA_GPA + 512ull * i, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, (uint16_t)(2 + i)});
    put_desc(g(b, table), 1 + data, (struct d){STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0});
    struct d ind = {table, 16 * (data + 2), VIRTQ_DESC_F_INDIRECT, 0};
    submit(b, 0, &ind, 1, 0);
    *got = take_used(b, 0, &id, &len);
    return len;
}

static bool data_untouched(struct bench *b, unsigned data)
{
    for (size_t i = 0; i < (size_t)data * 512; i++)
        if (g(b, DATA_GPA)[i] != 0x77)
            return false;
    return true;
}

/* [BLK-SEG-MAX] a request with more data segments than the seg_max vub
 * advertises is refused as a whole: IOERR in the status byte (the last byte
 * of the last writable descriptor, wherever the iovec array ended), used
 * length 1, no data written - however many iovecs vub could have held. */
static void test_long_chains(void)
{
    struct bench b;
    bool got;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    uint32_t len = long_chain(&b, VUB_BLK_SEG_MAX, &got);
    check(got && len == VUB_BLK_SEG_MAX * 512 + 1 && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_OK,
          "[BLK-SEG-MAX] a request of exactly seg_max (%u) data segments is served", VUB_BLK_SEG_MAX);
    len = long_chain(&b, VUB_BLK_SEG_MAX + 1, &got);
    check(got && len == 1 && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_IOERR && data_untouched(&b, VUB_BLK_SEG_MAX + 1),
          "[BLK-SEG-MAX] seg_max + 1 data segments: IOERR, used.len 1, no data written (len %u, status %u)",
          len, *g(&b, STATUS_GPA));
    len = long_chain(&b, 198, &got);
    check(got && len == 1 && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_IOERR && data_untouched(&b, 198),
          "[BLK-SEG-MAX] 198 data segments, past the iovec array: IOERR in the real status byte, used.len 1 (len %u, status %u)",
          len, *g(&b, STATUS_GPA));
    len = long_chain(&b, 1, &got);
    check(got && len == 513 && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_OK, "[BLK-SEG-MAX] the ring is served normally after a refusal");
    bench_close(&b);
}


/* [MEM-SHRINK] the front-end shrinks its memory file after SET_MEM_TABLE:
 * the device's next access past the new end raises SIGBUS. This test is
 * the program: its handler asks vub_dev_owns_fault() and jumps back, the
 * session is detached, and the same device serves the next session. */
static sigjmp_buf shrink_jump;
static struct vub_dev *volatile shrink_dev;
static volatile sig_atomic_t shrink_faults;

static void on_shrink_sigbus(int sig, siginfo_t *info, void *context)
{
    (void)context;
    if (shrink_dev && vub_dev_owns_fault(shrink_dev, info->si_addr)) {
        shrink_faults++;
        siglongjmp(shrink_jump, 1);
    }
    signal(sig, SIG_DFL);
}

static void test_shrunk_memory(void)
{
    static struct bench b; /* static: kept across the jump */
    uint32_t id, len;
    struct sigaction sa = {.sa_sigaction = on_shrink_sigbus, .sa_flags = SA_SIGINFO}, old;
    sigaction(SIGBUS, &sa, &old);
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    check(!vub_dev_owns_fault(b.dev, &b) && !vub_dev_owns_fault(b.dev, g(&b, DATA_GPA)) &&
              vub_dev_owns_fault(b.dev, b.dev->mem.regions[0].host + DATA_OFF),
          "[MEM-SHRINK] vub_dev_owns_fault knows the device's guest mappings from the rest of the process");
    /* A read whose header lies past where the file will end. */
    put_hdr(&b, VIRTIO_BLK_T_IN, 0);
    struct d ds[3] = {{HDR_GPA, 16, VIRTQ_DESC_F_NEXT, 1},
                      {DATA_GPA, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2},
                      {STATUS_GPA, 1, VIRTQ_DESC_F_WRITE, 0}};
    for (unsigned i = 0; i < 3; i++)
        put_desc(g(&b, desc_gpa(0)), i, ds[i]);
    uint8_t *avail = g(&b, avail_gpa(0));
    vub_put_le16(avail + 4, 0);
    vub_put_le16(avail + 2, 1);
    ftruncate(b.memfd, DATA_OFF / 2); /* the rings stay, the buffers go */
    if (sigsetjmp(shrink_jump, 1) == 0) {
        shrink_dev = b.dev;
        vub_dev_process_queue(b.dev, 0);
    }
    shrink_dev = NULL;
    check(shrink_faults == 1, "[MEM-SHRINK] touching the shrunk memory raised SIGBUS, and the handler recovered");
    vub_dev_detach(b.dev);

    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    close(b.sock);
    b.sock = sv[0];
    ftruncate(b.memfd, GUEST_BYTES);
    enum vub_err err = vub_dev_attach(b.dev, sv[1]);
    bool started = err == VUB_OK && bench_start(&b, 0);
    err = request3(&b, 0, VIRTIO_BLK_T_IN, 3, 512, true);
    bool got = take_used(&b, 0, &id, &len);
    uint8_t want[512];
    file_bytes(&b, 3 * 512, want, sizeof want);
    check(started && err == VUB_OK && got && len == 513 && !memcmp(g(&b, DATA_GPA), want, 512),
          "[MEM-SHRINK] after the faulting session is detached, the device serves the next one");
    bench_close(&b);
    sigaction(SIGBUS, &old, NULL);
}


/* [VU-HDR-FLAGS] a request carries only the version and NEED_REPLY: the
 * REPLY bit, or a bit the spec does not define, is refused (an error ack
 * with NEED_REPLY, else the session ends). */
static void test_request_flags(void)
{
    struct bench b;
    struct vub_vu_header h;
    uint64_t v = 0;
    uint32_t bad[] = {VHOST_USER_REPLY_MASK, 1u << 4, 1u << 31};
    for (unsigned i = 0; i < 3; i++) {
        bench_open(&b, false, 0);
        enum vub_err err = send_msg(&b, VHOST_USER_SET_OWNER, 1 | VHOST_USER_NEED_REPLY_MASK | bad[i], NULL, 0, NULL, 0);
        bool got = get_reply(&b, &h, &v, sizeof v);
        check(err == VUB_OK && got && v != 0, "[VU-HDR-FLAGS] SET_OWNER with flag bit 0x%x and NEED_REPLY gets an error ack", bad[i]);
        err = send_msg(&b, VHOST_USER_GET_FEATURES, 1 | bad[i], NULL, 0, NULL, 0);
        got = get_reply(&b, &h, &v, sizeof v);
        check(err == VUB_E_PROTO && !got, "[VU-HDR-FLAGS] GET_FEATURES with flag bit 0x%x ends the session unanswered", bad[i]);
        bench_close(&b);
    }
}

/* [VQ-RING-STATE] SET_VRING_ADDR may come before SET_VRING_NUM: the areas
 * are checked against guest memory with what is known then, and again when
 * the size arrives; a ring that does not fit is refused, not acked and left
 * unusable. */
static void test_addr_before_num(void)
{
    struct bench b;
    struct vub_vu_header h;
    uint64_t ack = 0;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    struct vub_vu_vring_addr a = {0, 0, GUEST_UVA + GUEST_BYTES + 0x1000, uva(used_gpa(0)), uva(avail_gpa(0)), 0};
    vub_dev_reset_session(b.dev); /* rings forgotten, size 0 */
    send_mem_table(&b);
    enum vub_err err = send_msg(&b, VHOST_USER_SET_VRING_ADDR, 1 | VHOST_USER_NEED_REPLY_MASK, &a, sizeof a, NULL, 0);
    bool got = get_reply(&b, &h, &ack, sizeof ack);
    check(err == VUB_OK && got && ack != 0, "[VQ-RING-STATE] SET_VRING_ADDR outside guest memory before SET_VRING_NUM is refused");
    a.desc_uaddr = GUEST_UVA + GUEST_BYTES - 64; /* 4 descriptors fit, 16 do not */
    err = send_msg(&b, VHOST_USER_SET_VRING_ADDR, 1 | VHOST_USER_NEED_REPLY_MASK, &a, sizeof a, NULL, 0);
    got = get_reply(&b, &h, &ack, sizeof ack);
    check(err == VUB_OK && got && ack == 0, "[VQ-RING-STATE] SET_VRING_ADDR whose areas start in memory is accepted before the size");
    struct vub_vu_vring_state st = {0, QSIZE};
    err = send_msg(&b, VHOST_USER_SET_VRING_NUM, 1 | VHOST_USER_NEED_REPLY_MASK, &st, sizeof st, NULL, 0);
    got = get_reply(&b, &h, &ack, sizeof ack);
    check(err == VUB_OK && got && ack != 0, "[VQ-RING-STATE] a SET_VRING_NUM that makes the table run out of memory is refused");
    bench_close(&b);
}

/* [BLK-OUT-DIR] an OUT's data must be device-readable: a device-writable
 * data buffer is IOERR and nothing is written. */
static void test_out_writable_data(void)
{
    struct bench b;
    uint32_t id, len;
    uint8_t before[4096], after[4096];
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    file_bytes(&b, 8 * 512, before, sizeof before);
    memset(g(&b, DATA_GPA), 0x5c, 4096);
    request3(&b, 0, VIRTIO_BLK_T_OUT, 8, 4096, true);
    bool got = take_used(&b, 0, &id, &len);
    file_bytes(&b, 8 * 512, after, sizeof after);
    check(got && *g(&b, STATUS_GPA) == VIRTIO_BLK_S_IOERR && len == 1 && !memcmp(before, after, sizeof before),
          "[BLK-OUT-DIR] an OUT with a device-writable data buffer gets IOERR and writes nothing (status %u, len %u)",
          *g(&b, STATUS_GPA), len);
    bench_close(&b);
}

#include "test-backend-packed.inc"
#include "test-backend-inflight.inc"

/* [VQ-SPLIT-USED-IDX] the front-end never sends the used index: a ring
 * that starts again (after a migration, say) continues from the used->idx
 * it finds in guest memory, not from the device's own count. */
static void test_used_idx_from_memory(void)
{
    struct bench b;
    struct vub_vu_header h;
    struct vub_vu_vring_state st;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    bool first = flush_served(&b, 0); /* the device has used 1 entry */
    send_state(&b, VHOST_USER_GET_VRING_BASE, 0, 0);
    get_reply(&b, &h, &st, sizeof st);
    /* the ring as another device left it: 7 entries made available and used */
    vub_put_le16(g(&b, avail_gpa(0)) + 2, 7);
    vub_put_le16(g(&b, used_gpa(0)) + 2, 7);
    b.avail_idx[0] = b.used_seen[0] = 7;
    enum vub_err err = send_state(&b, VHOST_USER_SET_VRING_BASE, 0, 7);
    if (!err)
        err = send_u64(&b, VHOST_USER_SET_VRING_KICK, 0, &b.kick[0], 1);
    bool next = err == VUB_OK && flush_served(&b, 0);
    check(first && next && vub_le16(g(&b, used_gpa(0)) + 2) == 8,
          "[VQ-SPLIT-USED-IDX] a restarted ring continues from the used index in guest memory (7, then 8)");
    bench_close(&b);
}

/* [IMG-RAW-SIZE] a raw image is whole 512-byte sectors: a partial last one
 * is not exported, so the capacity never reaches past the file. */
static void test_raw_size(void)
{
    char path[64], why[256];
    snprintf(path, sizeof path, "/tmp/vub-test-size-%d.img", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    bool made = fd >= 0 && ftruncate(fd, 3 * 512 + 100) == 0;
    if (fd >= 0)
        close(fd);
    struct vub_image *img = NULL;
    struct vub_image_opts io = {0};
    enum vub_err err = made ? vub_image_open(&img, path, &io, why, sizeof why) : VUB_E_IO;
    uint64_t size = err == VUB_OK ? vub_image_size(img) : 0;
    uint8_t sector[512];
    struct iovec iov = {sector, sizeof sector};
    enum vub_err last = err == VUB_OK ? vub_image_readv(img, 3 * 512, &iov, 1) : VUB_OK;
    check(err == VUB_OK && size == 3 * 512 && last == VUB_E_RANGE,
          "[IMG-RAW-SIZE] a raw file of 1636 bytes is a disk of 3 sectors; the partial fourth is outside it");
    vub_image_close(img);
    unlink(path);
}

/* [BLK-DURABLE] when a completed write must already be on stable storage:
 * whenever the driver has no way to ask for a flush, or asked for
 * write-through. The device derives it from what was negotiated. */
static void test_durable(void)
{
    struct vub_blk k = {0};
    k.wce_negotiated = true, k.writeback = 0;
    bool wce_through = vub_blk_write_through(&k);
    k.writeback = 1;
    bool wce_back = vub_blk_write_through(&k);
    k.wce_negotiated = false, k.flush_negotiated = true;
    bool flush_only = vub_blk_write_through(&k);
    k.flush_negotiated = false;
    bool neither = vub_blk_write_through(&k);
    check(wce_through && !wce_back && !flush_only && neither,
          "[BLK-DURABLE] writes are write-through with CONFIG_WCE and writeback 0, or with neither FLUSH nor "
          "CONFIG_WCE; write-back otherwise");

    struct bench b;
    bench_open(&b, false, 0);
    uint64_t offered = u64_request(&b, VHOST_USER_GET_FEATURES);
    bench_start(&b, offered & ~(VUB_BIT(VIRTIO_BLK_F_FLUSH) | VUB_BIT(VIRTIO_BLK_F_CONFIG_WCE) |
                                VUB_BIT(VIRTIO_F_RING_PACKED)));
    bool session_neither = vub_blk_write_through(&b.dev->blk);
    bench_close(&b);
    bench_open(&b, false, 0);
    bench_start(&b, offered & ~(VUB_BIT(VIRTIO_BLK_F_CONFIG_WCE) | VUB_BIT(VIRTIO_F_RING_PACKED)));
    bool session_flush = vub_blk_write_through(&b.dev->blk);
    bench_close(&b);
    check(session_neither && !session_flush,
          "[BLK-DURABLE] a session without FLUSH writes through; one with FLUSH (and no CONFIG_WCE) may cache");
}

/* A driver thread that keeps queue 0 full without ever kicking, until
 * `total` requests have been made available. Head i is an indirect FLUSH
 * with a status byte of its own, so the thread sees each request executed
 * the moment the device writes that byte and makes it available again at
 * once, without waiting for the used index, which the device publishes
 * only once per ring's worth. (A real driver waits for the used entry;
 * the device does not track heads, and this keeps it busy.) */
#define BUDGET_TABLES (GUEST_GPA + DATA_OFF + 0x10000)  /* 2 descriptors per head */
#define BUDGET_HDRS (GUEST_GPA + DATA_OFF + 0x11000)    /* 16 bytes per head */
#define BUDGET_STATUS (GUEST_GPA + DATA_OFF + 0x12000)  /* 1 byte per head */

struct feeder {
    struct bench *b;
    unsigned total;
    atomic_uint added;
};

static void feeder_offer(struct bench *b, uint16_t idx)
{
    uint16_t head = idx % QSIZE;
    atomic_store_explicit((_Atomic uint8_t *)(uintptr_t)g(b, BUDGET_STATUS + head), 0xee, memory_order_relaxed);
    vub_put_le16(g(b, avail_gpa(0)) + 4 + 2 * head, head);
    vub_ring_store16(g(b, avail_gpa(0)) + 2, (uint16_t)(idx + 1), memory_order_release);
}

static void *feeder_main(void *arg)
{
    struct feeder *f = arg;
    int64_t deadline = vub_sys_now_ms() + 5000;
    for (unsigned spins = 0, idx = QSIZE; idx < f->total; spins++) {
        _Atomic uint8_t *status = (_Atomic uint8_t *)(uintptr_t)g(f->b, BUDGET_STATUS + idx % QSIZE);
        if (atomic_load_explicit(status, memory_order_acquire) == 0xee) { /* not executed yet */
            if (spins % 65536 == 0 && vub_sys_now_ms() > deadline)
                break;
            continue;
        }
        feeder_offer(f->b, (uint16_t)idx++);
        atomic_fetch_add(&f->added, 1);
    }
    return NULL;
}

/* [VQ-BUDGET] a ring that never runs dry does not hold the device: one run
 * serves at most VUB_QUEUE_BUDGET_RINGS rings' worth, then kicks itself so
 * the caller's loop comes back (to the control socket first). */
static void test_budget(void)
{
    struct bench b;
    bench_open(&b, false, 0);
    bench_start(&b, 0);
    for (unsigned h = 0; h < QSIZE; h++) {
        uint8_t *hdr = g(&b, BUDGET_HDRS + 16 * h);
        vub_put_le32(hdr, VIRTIO_BLK_T_FLUSH);
        vub_put_le32(hdr + 4, 0);
        vub_put_le64(hdr + 8, 0);
        put_desc(g(&b, BUDGET_TABLES), 2 * h, (struct d){BUDGET_HDRS + 16 * h, 16, VIRTQ_DESC_F_NEXT, 1});
        put_desc(g(&b, BUDGET_TABLES), 2 * h + 1, (struct d){BUDGET_STATUS + h, 1, VIRTQ_DESC_F_WRITE, 0});
        put_desc(g(&b, desc_gpa(0)), h, (struct d){BUDGET_TABLES + 32 * h, 32, VIRTQ_DESC_F_INDIRECT, 0});
    }
    const unsigned budget = VUB_QUEUE_BUDGET_RINGS * QSIZE;
    struct feeder f = {&b, budget + 4 * QSIZE, QSIZE};
    for (uint16_t idx = 0; idx < QSIZE; idx++) /* the ring is full before the device looks */
        feeder_offer(&b, idx);
    pthread_t t;
    pthread_create(&t, NULL, feeder_main, &f);
    uint8_t *used = g(&b, used_gpa(0));
    enum vub_err err = vub_dev_process_queue(b.dev, 0);
    unsigned first = vub_ring_load16(used + 2, memory_order_acquire);
    uint64_t self_kick = 0;
    bool kicked = read(b.kick[0], &self_kick, sizeof self_kick) == (ssize_t)sizeof self_kick && self_kick > 0;
    int64_t deadline = vub_sys_now_ms() + 5000;
    while (err == VUB_OK && vub_ring_load16(used + 2, memory_order_acquire) < f.total &&
           vub_sys_now_ms() < deadline)
        err = vub_dev_process_queue(b.dev, 0);
    pthread_join(t, NULL);
    unsigned all = vub_ring_load16(used + 2, memory_order_acquire);
    /* A feeder that did not get a CPU lets the ring run dry before the
     * budget; then nothing is asserted about the kick. */
    check(err == VUB_OK && first <= budget && (first < budget || kicked) && all == f.total,
          "[VQ-BUDGET] a ring kept full serves at most %u requests in one run (%u here), then kicks itself; all %u "
          "complete", budget, first, f.total);
    bench_close(&b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    test_wire();
    test_features();
    test_config();
    test_vring_messages();
    test_memory_table();
    test_io();
    test_framing();
    test_indirect();
    test_hostile_rings();
    test_read_only();
    test_notifications();
    test_stop_resume();
    test_mem_slots();
    test_reset();
    test_used_idx_from_memory();
    test_raw_size();
    test_durable();
    test_budget();
    test_status();
    test_resize();
    test_no_shared_memory();
    test_busy_poll();
    test_fuzz_regressions();
    test_packed();
    test_inflight();
    test_event_fd_kinds();
    test_call_pipe_full();
    test_long_chains();
    test_shrunk_memory();
    test_request_flags();
    test_addr_before_num();
    test_out_writable_data();
    return failures ? 1 : 0;
}
