/* fuzz-seeds: writes the seed corpus of the libFuzzer targets, and the
 * reproducers of what they found, from hand-built inputs.
 *
 *     build/fuzz/fuzz-seeds conformance/fuzz-corpus
 *
 * writes <dir>/<target>/seed-<name> for each target (a plain program, not a
 * fuzzer; `make fuzz-seeds` runs it). Each seed is a small valid input in
 * the target's format (see the comment at the top of each target), so the
 * fuzzer starts from sessions and requests that work and mutates from
 * there. Reproducers are written as crash-<name>; `make fuzz-run` leaves
 * them out of its corpus and `make fuzz-repro` runs them.
 */
#include "../vub.c"

/* ---- output ---- */

static const char *out_dir;

struct buf {
    uint8_t b[16384];
    size_t n;
};

static void put(struct buf *o, const void *p, size_t n)
{
    if (o->n + n > sizeof o->b)
        abort();
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void put8(struct buf *o, uint8_t v) { put(o, &v, 1); }
static void put16(struct buf *o, uint16_t v) { uint8_t b[2]; vub_put_le16(b, v); put(o, b, 2); }
static void put32(struct buf *o, uint32_t v) { uint8_t b[4]; vub_put_le32(b, v); put(o, b, 4); }

static void save(const char *target, const char *name, const struct buf *o)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", out_dir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(o->b, 1, o->n, f) != o->n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    printf("%s (%zu bytes)\n", path, o->n);
}

/* ---- fuzz-msg: an fd plan, then messages ---- */

struct stream {
    struct buf o;
    uint32_t plan;
    unsigned count;
};

enum { NONE, MEMFD, EVENTFD, TWO_MEMFDS };

static void msg(struct stream *s, uint32_t req, uint32_t flags, const void *payload, uint32_t size, unsigned fds)
{
    if (s->o.n == 0)
        put32(&s->o, 0); /* the plan, filled in at the end */
    if (s->count < 16)
        s->plan |= (uint32_t)fds << (2 * s->count);
    s->count++;
    struct vub_vu_header h = {req, flags, size};
    put(&s->o, &h, sizeof h);
    put(&s->o, payload, size);
}

static void msg_u64(struct stream *s, uint32_t req, uint64_t v, unsigned fds)
{
    msg(s, req, VHOST_USER_VERSION, &v, sizeof v, fds);
}

static void msg_state(struct stream *s, uint32_t req, uint32_t index, uint32_t num)
{
    struct vub_vu_vring_state st = {index, num};
    msg(s, req, VHOST_USER_VERSION, &st, sizeof st, NONE);
}

static void msg_save(const char *name, struct stream *s)
{
    vub_put_le32(s->o.b, s->plan);
    save("fuzz-msg", name, &s->o);
}

#define MSG_GPA UINT64_C(0x100000)
#define MSG_UVA UINT64_C(0x7f0000000000)
#define PROTO_ALL (VUB_BIT(VHOST_USER_PROTOCOL_F_MQ) | VUB_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) | \
                   VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIG) | VUB_BIT(VHOST_USER_PROTOCOL_F_RESET_DEVICE) | \
                   VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS))

static void msg_seeds(void)
{
    uint64_t v1 = VUB_BIT(VIRTIO_F_VERSION_1), pf = VUB_BIT(VHOST_USER_F_PROTOCOL_FEATURES);
    uint32_t need = VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK;

    /* QEMU's start-up order on a split ring, with fds where they belong. */
    struct stream s = {0};
    msg(&s, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NONE);
    msg(&s, VHOST_USER_GET_PROTOCOL_FEATURES, VHOST_USER_VERSION, NULL, 0, NONE);
    msg_u64(&s, VHOST_USER_SET_PROTOCOL_FEATURES, PROTO_ALL & ~VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS),
            NONE);
    msg(&s, VHOST_USER_SET_OWNER, need, NULL, 0, NONE);
    msg(&s, VHOST_USER_GET_QUEUE_NUM, VHOST_USER_VERSION, NULL, 0, NONE);
    uint64_t f = v1 | pf | VUB_BIT(VIRTIO_F_EVENT_IDX) | VUB_BIT(VIRTIO_F_INDIRECT_DESC) |
                 VUB_BIT(VIRTIO_BLK_F_FLUSH) | VUB_BIT(VIRTIO_BLK_F_CONFIG_WCE);
    msg(&s, VHOST_USER_SET_FEATURES, need, &f, 8, NONE);
    struct vub_vu_mem_table t = {.nregions = 1};
    t.regions[0] = (struct vub_vu_mem_region){MSG_GPA, 0x10000, MSG_UVA, 0};
    msg(&s, VHOST_USER_SET_MEM_TABLE, need, &t, 8 + 32, MEMFD);
    msg_state(&s, VHOST_USER_SET_VRING_NUM, 0, 16);
    msg_state(&s, VHOST_USER_SET_VRING_BASE, 0, 0);
    struct vub_vu_vring_addr a = {0, 0, MSG_UVA, MSG_UVA + 0x200, MSG_UVA + 0x100, 0};
    msg(&s, VHOST_USER_SET_VRING_ADDR, VHOST_USER_VERSION, &a, sizeof a, NONE);
    msg_u64(&s, VHOST_USER_SET_VRING_CALL, 0, EVENTFD);
    msg_u64(&s, VHOST_USER_SET_VRING_KICK, 0, EVENTFD);
    msg_state(&s, VHOST_USER_SET_VRING_ENABLE, 0, 1);
    struct vub_vu_config c = {0, 57, 0, {0}};
    msg(&s, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &c, 12 + 57, NONE);
    c = (struct vub_vu_config){32, 1, 0, {1}};
    msg(&s, VHOST_USER_SET_CONFIG, need, &c, 12 + 1, NONE);
    msg_state(&s, VHOST_USER_GET_VRING_BASE, 0, 0);
    msg(&s, VHOST_USER_RESET_DEVICE, need, NULL, 0, NONE);
    msg_save("seed-split-session", &s);

    /* A packed ring of 5, polled (kick with NOFD), no PROTOCOL_FEATURES. */
    s = (struct stream){0};
    t.regions[0] = (struct vub_vu_mem_region){MSG_GPA, 0x10000, MSG_UVA, 0};
    msg(&s, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, &t, 8 + 32, MEMFD);
    msg(&s, VHOST_USER_SET_OWNER, VHOST_USER_VERSION, NULL, 0, NONE);
    f = v1 | VUB_BIT(VIRTIO_F_RING_PACKED) | VUB_BIT(VIRTIO_F_EVENT_IDX);
    msg(&s, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, &f, 8, NONE);
    msg_state(&s, VHOST_USER_SET_VRING_NUM, 1, 5);
    msg_state(&s, VHOST_USER_SET_VRING_BASE, 1, 0x80008000u);
    a = (struct vub_vu_vring_addr){1, 0, MSG_UVA + 0x1000, MSG_UVA + 0x1080, MSG_UVA + 0x1060, 0};
    msg(&s, VHOST_USER_SET_VRING_ADDR, VHOST_USER_VERSION, &a, sizeof a, NONE);
    msg_u64(&s, VHOST_USER_SET_VRING_KICK, 1 | VHOST_USER_VRING_NOFD_MASK, NONE);
    msg_state(&s, VHOST_USER_GET_VRING_BASE, 1, 0);
    msg(&s, VHOST_USER_RESET_OWNER, VHOST_USER_VERSION, NULL, 0, NONE);
    msg_save("seed-packed-polled", &s);

    /* Memory slots: ADD_MEM_REG twice, REM_MEM_REG, a ring in what is left. */
    s = (struct stream){0};
    msg_u64(&s, VHOST_USER_SET_PROTOCOL_FEATURES, PROTO_ALL, NONE);
    msg(&s, VHOST_USER_GET_MAX_MEM_SLOTS, VHOST_USER_VERSION, NULL, 0, NONE);
    struct vub_vu_mem_single one = {0, {MSG_GPA, 0x8000, MSG_UVA, 0x1000}};
    msg(&s, VHOST_USER_ADD_MEM_REG, need, &one, sizeof one, MEMFD);
    struct vub_vu_mem_single two = {0, {MSG_GPA + 0x8000, 0x4000, MSG_UVA + 0x100000, 0}};
    msg(&s, VHOST_USER_ADD_MEM_REG, need, &two, sizeof two, MEMFD);
    f = v1 | pf;
    msg(&s, VHOST_USER_SET_FEATURES, need, &f, 8, NONE);
    msg_state(&s, VHOST_USER_SET_VRING_NUM, 0, 8);
    a = (struct vub_vu_vring_addr){0, 0, MSG_UVA + 0x100000, MSG_UVA + 0x100200, MSG_UVA + 0x100100, 0};
    msg(&s, VHOST_USER_SET_VRING_ADDR, need, &a, sizeof a, NONE);
    msg_u64(&s, VHOST_USER_SET_VRING_ERR, 0, EVENTFD);
    msg_u64(&s, VHOST_USER_SET_VRING_KICK, 0 | VHOST_USER_VRING_NOFD_MASK, NONE);
    msg_state(&s, VHOST_USER_SET_VRING_ENABLE, 0, 1);
    msg(&s, VHOST_USER_REM_MEM_REG, need, &one, sizeof one, NONE);
    msg(&s, VHOST_USER_REM_MEM_REG, need, &two, sizeof two, NONE);
    msg_save("seed-mem-slots", &s);

    /* Two regions in one table, adjacent in guest physical space. */
    s = (struct stream){0};
    t = (struct vub_vu_mem_table){.nregions = 2};
    t.regions[0] = (struct vub_vu_mem_region){MSG_GPA, 0x3000, MSG_UVA, 0x1000};
    t.regions[1] = (struct vub_vu_mem_region){MSG_GPA + 0x3000, 0x2000, MSG_UVA + 0x10000, 0x8000};
    msg(&s, VHOST_USER_SET_MEM_TABLE, need, &t, 8 + 64, TWO_MEMFDS);
    f = v1;
    msg(&s, VHOST_USER_SET_FEATURES, need, &f, 8, NONE);
    msg_state(&s, VHOST_USER_SET_VRING_NUM, 0, 4);
    msg_state(&s, VHOST_USER_SET_VRING_BASE, 0, 0xfffe);
    a = (struct vub_vu_vring_addr){0, 0, MSG_UVA + 0x10000, MSG_UVA + 0x10100, MSG_UVA + 0x10080, 0};
    msg(&s, VHOST_USER_SET_VRING_ADDR, need, &a, sizeof a, NONE);
    msg_u64(&s, VHOST_USER_SET_VRING_CALL, 0 | VHOST_USER_VRING_NOFD_MASK, NONE);
    msg_u64(&s, VHOST_USER_SET_VRING_KICK, 0, EVENTFD);
    msg_save("seed-two-regions", &s);

    /* Messages a back-end must refuse without falling over. */
    s = (struct stream){0};
    msg(&s, 99, need, NULL, 0, NONE);
    msg(&s, VHOST_USER_SET_FEATURES, need, &f, 4, NONE);
    msg(&s, VHOST_USER_GET_CONFIG, need, &c, 12 + 1, NONE);
    msg(&s, VHOST_USER_SET_MEM_TABLE, need, &t, 8 + 64, MEMFD);
    uint64_t call = 0x1ff;
    msg(&s, VHOST_USER_SET_VRING_CALL, need, &call, 8, EVENTFD);
    msg(&s, VHOST_USER_GET_FEATURES, 2, NULL, 0, NONE);
    msg_save("seed-refused", &s);
}

/* ---- fuzz-ring-split and fuzz-ring-packed: a header, guest memory, patches ---- */

/* These mirror fuzz-ring.c. */
#define RING_A_GPA UINT64_C(0x10000)
#define RING_A_BYTES 0x1000u
#define RING_B_BYTES 0x600u
#define DATA 0x200u /* where the seeds put buffers, in region A (after rings of up to 16) */

struct ring_seed {
    uint8_t hdr[16];
    uint8_t mem[RING_A_BYTES + RING_B_BYTES];
    size_t mem_len;
    struct buf patches;
    unsigned desc, avail, used; /* offsets in A */
    uint16_t size;
    bool packed;
    uint16_t next;              /* split: next free descriptor; packed: next slot */
    uint16_t avail_idx;         /* split */
    uint16_t data;              /* next free byte for buffers */
};

static void ring_init(struct ring_seed *r, bool packed, uint8_t size_byte, uint8_t features, uint8_t setup,
                      uint32_t base)
{
    memset(r, 0, sizeof *r);
    r->packed = packed;
    r->size = packed ? (uint16_t)(size_byte % 128 + 1) : (uint16_t)(1u << (size_byte % 8));
    r->desc = 0;
    r->avail = 16u * r->size;
    r->used = packed ? r->avail + 4 : (r->avail + 6 + 2u * r->size + 3) / 4 * 4;
    r->data = DATA;
    r->hdr[0] = size_byte;
    r->hdr[1] = features;
    r->hdr[2] = setup;
    vub_put_le32(r->hdr + 3, base);
    vub_put_le16(r->hdr + 7, (uint16_t)r->desc);
    vub_put_le16(r->hdr + 9, (uint16_t)r->avail);
    vub_put_le16(r->hdr + 11, (uint16_t)r->used);
    r->mem_len = DATA;
}

/* A buffer of len bytes in A's data area; returns its guest address. */
static uint64_t ring_buf(struct ring_seed *r, const void *src, uint32_t len)
{
    uint64_t gpa = RING_A_GPA + r->data;
    if (src)
        memcpy(r->mem + r->data, src, len);
    r->data = (uint16_t)((r->data + len + 15) / 16 * 16);
    if (r->data > r->mem_len)
        r->mem_len = r->data;
    return gpa;
}

static uint64_t ring_hdr(struct ring_seed *r, uint32_t type, uint64_t sector)
{
    uint8_t h[16] = {0};
    vub_put_le32(h, type);
    vub_put_le64(h + 8, sector);
    return ring_buf(r, h, sizeof h);
}

struct seg {
    uint64_t addr;
    uint32_t len;
    bool write;
};

static void put_desc16(uint8_t *p, uint64_t addr, uint32_t len, uint16_t a, uint16_t b)
{
    vub_put_le64(p, addr);
    vub_put_le32(p + 8, len);
    vub_put_le16(p + 12, a);
    vub_put_le16(p + 14, b);
}

/* Makes a request of n segments available; indirect puts them in a table. */
static void ring_add(struct ring_seed *r, const struct seg *sg, unsigned n, bool indirect, uint16_t id)
{
    if (indirect) {
        uint8_t table[16 * 8];
        for (unsigned i = 0; i < n; i++) {
            uint16_t fl = sg[i].write ? VIRTQ_DESC_F_WRITE : 0;
            if (r->packed)
                put_desc16(table + 16 * i, sg[i].addr, sg[i].len, 0, fl);
            else
                put_desc16(table + 16 * i, sg[i].addr, sg[i].len,
                           (uint16_t)(fl | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)), (uint16_t)(i + 1));
        }
        struct seg one = {ring_buf(r, table, 16 * n), 16 * n, false};
        sg = &one;
        n = 1;
        if (r->packed) {
            put_desc16(r->mem + r->desc + 16 * r->next, one.addr, one.len, id,
                       VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_AVAIL);
            r->next = (uint16_t)((r->next + 1) % r->size);
            return;
        }
        uint16_t head = r->next++;
        put_desc16(r->mem + r->desc + 16 * head, one.addr, one.len, VIRTQ_DESC_F_INDIRECT, 0);
        vub_put_le16(r->mem + r->avail + 4 + 2 * (r->avail_idx % r->size), head);
        vub_put_le16(r->mem + r->avail + 2, ++r->avail_idx);
        return;
    }
    if (r->packed) {
        for (unsigned i = 0; i < n; i++) {
            uint16_t fl = (uint16_t)(VIRTQ_DESC_F_AVAIL | (sg[i].write ? VIRTQ_DESC_F_WRITE : 0) |
                                     (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
            put_desc16(r->mem + r->desc + 16 * r->next, sg[i].addr, sg[i].len, id, fl);
            r->next = (uint16_t)((r->next + 1) % r->size);
        }
        return;
    }
    uint16_t head = r->next;
    for (unsigned i = 0; i < n; i++) {
        uint16_t fl = (uint16_t)((sg[i].write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
        put_desc16(r->mem + r->desc + 16 * r->next, sg[i].addr, sg[i].len, fl, (uint16_t)(r->next + 1));
        r->next++;
    }
    vub_put_le16(r->mem + r->avail + 4 + 2 * (r->avail_idx % r->size), head);
    vub_put_le16(r->mem + r->avail + 2, ++r->avail_idx);
}

static void ring_requests(struct ring_seed *r, bool indirect)
{
    uint8_t range[16] = {0};
    uint64_t status = ring_buf(r, NULL, 16);
    struct seg rd[3] = {{ring_hdr(r, VIRTIO_BLK_T_IN, 3), 16, false}, {ring_buf(r, NULL, 512), 512, true},
                        {status, 1, true}};
    ring_add(r, rd, 3, false, 0);
    struct seg wr[3] = {{ring_hdr(r, VIRTIO_BLK_T_OUT, 5), 16, false}, {rd[1].addr, 512, false},
                        {status + 1, 1, true}};
    ring_add(r, wr, 3, false, 1);
    struct seg fl[2] = {{ring_hdr(r, VIRTIO_BLK_T_FLUSH, 0), 16, false}, {status + 2, 1, true}};
    ring_add(r, fl, 2, false, 2);
    vub_put_le64(range, 7);
    vub_put_le32(range + 8, 2);
    struct seg wz[3] = {{ring_hdr(r, VIRTIO_BLK_T_WRITE_ZEROES, 0), 16, false}, {ring_buf(r, range, 16), 16, false},
                        {status + 3, 1, true}};
    ring_add(r, wz, 3, false, 3);
    struct seg id[3] = {{ring_hdr(r, VIRTIO_BLK_T_GET_ID, 0), 16, false}, {ring_buf(r, NULL, 20), 20, true},
                        {status + 4, 1, true}};
    ring_add(r, id, 3, indirect, 4);
}

static void ring_patch(struct ring_seed *r, uint16_t off, const void *p, uint8_t len)
{
    put16(&r->patches, off);
    put8(&r->patches, len);
    put(&r->patches, p, len);
}

static void ring_save(const char *target, const char *name, struct ring_seed *r)
{
    struct buf o = {0};
    vub_put_le16(r->hdr + 13, (uint16_t)r->mem_len);
    put(&o, r->hdr, sizeof r->hdr);
    put(&o, r->mem, r->mem_len);
    put(&o, r->patches.b, r->patches.n);
    save(target, name, &o);
}

enum { F_EVENT_IDX = 1, F_INDIRECT = 2, F_FLUSH = 4, F_WCE = 8, F_DISCARD = 16, F_WZ = 32, F_PROTO = 64, F_RO = 128 };
enum { S_TWO = 1, S_BASE_FIRST = 2, S_NOFD = 4, S_NO_CALL = 8, S_RESTART = 16, S_ERR = 32 };

static void ring_seeds(void)
{
    static struct ring_seed r;
    uint8_t all = F_EVENT_IDX | F_INDIRECT | F_FLUSH | F_WZ | F_DISCARD;

    /* split, 16 entries, every request type, one indirect; then one more read by patch */
    ring_init(&r, false, 4, all, 0, 0);
    ring_requests(&r, true);
    uint8_t e[2];
    vub_put_le16(e, 0);
    ring_patch(&r, (uint16_t)(r.avail + 4 + 2 * r.avail_idx), e, 2); /* head 0 again */
    vub_put_le16(e, (uint16_t)(r.avail_idx + 1));
    ring_patch(&r, (uint16_t)(r.avail + 2), e, 2);
    ring_save("fuzz-ring-split", "seed-requests", &r);

    /* split of 16 with PROTOCOL_FEATURES, indexes about to wrap, restarts */
    ring_init(&r, false, 4, F_EVENT_IDX | F_PROTO | F_WZ | F_FLUSH, S_RESTART | S_ERR, 0xfffe);
    r.avail_idx = 0xfffe;
    ring_requests(&r, false);
    vub_put_le16(r.mem + r.used + 2, 0xfffe);
    vub_put_le16(e, 0);
    ring_patch(&r, (uint16_t)(r.avail + 4 + 2 * (r.avail_idx % r.size)), e, 2);
    vub_put_le16(e, (uint16_t)(r.avail_idx + 1));
    ring_patch(&r, (uint16_t)(r.avail + 2), e, 2);
    ring_save("fuzz-ring-split", "seed-wrap-restart", &r);

    /* split over two regions: a data buffer straddling them, read-only device, polled */
    ring_init(&r, false, 3, F_RO, S_TWO | S_NOFD, 0);
    uint64_t status = ring_buf(&r, NULL, 16);
    struct seg st[3] = {{ring_hdr(&r, VIRTIO_BLK_T_IN, 1), 16, false},
                        {RING_A_GPA + RING_A_BYTES - 256, 1024, true}, {status, 1, true}};
    ring_add(&r, st, 3, false, 0);
    struct seg wr[3] = {{ring_hdr(&r, VIRTIO_BLK_T_OUT, 1), 16, false},
                        {RING_A_GPA + RING_A_BYTES - 256, 512, false}, {status + 1, 1, true}};
    ring_add(&r, wr, 3, false, 1);
    ring_save("fuzz-ring-split", "seed-straddle-ro", &r);

    /* packed, 13 entries (not a power of two), every request type; then a
     * flush whose list wraps: slot 12 in lap 1, slot 0 in lap 2 */
    ring_init(&r, true, 12, all, 0, 0x80008000u);
    ring_requests(&r, true);
    uint64_t fh = ring_hdr(&r, VIRTIO_BLK_T_FLUSH, 0), fs = ring_buf(&r, NULL, 1);
    uint8_t d[16];
    put_desc16(d, fs, 1, 9, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_USED);
    ring_patch(&r, (uint16_t)r.desc, d, 16);
    put_desc16(d, fh, 16, 9, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_AVAIL);
    ring_patch(&r, (uint16_t)(r.desc + 16 * 12), d, 16);
    ring_save("fuzz-ring-packed", "seed-requests", &r);

    /* packed, 3 entries, PROTOCOL_FEATURES, restarts (GET/SET_VRING_BASE round trip) */
    ring_init(&r, true, 2, F_EVENT_IDX | F_PROTO | F_FLUSH, S_RESTART | S_NO_CALL, 0x80008000u);
    struct seg fl[2] = {{ring_hdr(&r, VIRTIO_BLK_T_FLUSH, 0), 16, false}, {ring_buf(&r, NULL, 1), 1, true}};
    ring_add(&r, fl, 2, false, 5);
    put_desc16(d, fl[0].addr, 16, 6, VIRTQ_DESC_F_NEXT); /* slot 2, not yet available */
    ring_patch(&r, (uint16_t)(r.desc + 16 * 2), d, 16);
    put_desc16(d, fl[1].addr, 1, 6, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_USED); /* slot 0, lap 2 */
    ring_patch(&r, (uint16_t)(r.desc), d, 16);
    vub_put_le16(e, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_AVAIL);
    ring_patch(&r, (uint16_t)(r.desc + 16 * 2 + 14), e, 2);
    ring_save("fuzz-ring-packed", "seed-restart", &r);
}

/* ---- fuzz-blk: config, piece counts and lengths, readable bytes ---- */

static void blk_seed(const char *name, uint8_t cfg, const uint16_t *rl, unsigned nr, const uint16_t *wl,
                     unsigned nw, const uint8_t *rbytes, size_t rlen)
{
    struct buf o = {0};
    put8(&o, cfg);
    put8(&o, (uint8_t)nr);
    put8(&o, (uint8_t)nw);
    for (unsigned i = 0; i < nr; i++)
        put16(&o, rl[i]);
    for (unsigned i = 0; i < nw; i++)
        put16(&o, wl[i]);
    put(&o, rbytes, rlen);
    save("fuzz-blk", name, &o);
}

static void blk_seeds(void)
{
    static uint8_t r[2048];
    memset(r, 0, sizeof r);
    vub_put_le32(r, VIRTIO_BLK_T_IN);
    vub_put_le64(r + 8, 3);
    blk_seed("seed-read", 0, (uint16_t[]){16}, 1, (uint16_t[]){512, 1}, 2, r, 16);
    blk_seed("seed-read-cut", 0, (uint16_t[]){7, 9}, 2, (uint16_t[]){100, 412, 513}, 3, r, 16);
    vub_put_le32(r, VIRTIO_BLK_T_OUT);
    memset(r + 16, 0x5a, 1024);
    blk_seed("seed-write", 4, (uint16_t[]){16, 1024}, 2, (uint16_t[]){1}, 1, r, 16 + 1024);
    blk_seed("seed-write-cut", 0, (uint16_t[]){5, 11, 300, 212}, 4, (uint16_t[]){0, 1}, 2, r, 16 + 512);
    blk_seed("seed-write-ro", 1, (uint16_t[]){16, 512}, 2, (uint16_t[]){1}, 1, r, 16 + 512);
    vub_put_le32(r, VIRTIO_BLK_T_GET_ID);
    blk_seed("seed-get-id", 0, (uint16_t[]){16}, 1, (uint16_t[]){20, 1}, 2, r, 16);
    vub_put_le32(r, VIRTIO_BLK_T_FLUSH);
    vub_put_le64(r + 8, 0);
    blk_seed("seed-flush", 2 | 4 | 8, (uint16_t[]){16}, 1, (uint16_t[]){1}, 1, r, 16);
    vub_put_le32(r, VIRTIO_BLK_T_WRITE_ZEROES);
    vub_put_le64(r + 16, 2);
    vub_put_le32(r + 24, 4);
    vub_put_le32(r + 28, 1);
    vub_put_le64(r + 32, 100);
    vub_put_le32(r + 40, 8);
    vub_put_le32(r + 44, 0);
    blk_seed("seed-write-zeroes", 0, (uint16_t[]){16, 32}, 2, (uint16_t[]){1}, 1, r, 48);
    vub_put_le32(r, VIRTIO_BLK_T_DISCARD);
    vub_put_le32(r + 28, 0);
    blk_seed("seed-discard", 0, (uint16_t[]){24, 24}, 2, (uint16_t[]){1}, 1, r, 48);
    vub_put_le32(r, 7);
    blk_seed("seed-unsupported", 16, (uint16_t[]){16}, 1, (uint16_t[]){1}, 1, r, 16);
}

/* ---- fuzz-session: set-up bytes, then operations ---- */

static void session_seed(const char *name, const uint8_t *b, size_t n)
{
    struct buf o = {0};
    put(&o, b, n);
    save("fuzz-session", name, &o);
}

static void session_seeds(void)
{
    /* Operations (fuzz-session.c): read [0 q n-1 sector16 cut lens..], write [2 ... fill],
     * flush [3 q], get-id [4 q], discard/write-zeroes [5 q wz unmap n-1 sector16],
     * batch [6 q count-2 slot, then per request: write? n-1 cut lens.. (fill)],
     * message [7 request flags size fds payload..]. */
    static const uint8_t split[] = {
        1, 3, 0, 0,                        /* split, 32 entries, every feature */
        2, 0, 7, 10, 0, 2, 2, 2, 0x11,     /* write 8 sectors at 10 in pieces of 3, 3, 2 */
        0, 0, 7, 10, 0, 0,                 /* read them back in one piece */
        3, 0,                              /* flush */
        4, 0,                              /* get-id */
        5, 0, 1, 1, 3, 12, 0,              /* write-zeroes with unmap, 4 sectors at 12 */
        5, 0, 0, 0, 1, 40, 0,              /* discard 2 sectors at 40 */
        0, 0, 15, 0, 0, 3, 0, 4, 1,        /* read 16 sectors at 0 in pieces of 1, 5, 2, 8 */
    };
    session_seed("seed-split", split, sizeof split);
    static const uint8_t packed[] = {
        2 | 4, 3, 0, 0,                    /* packed of 7, two queues */
        6, 1, 2, 2,                        /* a batch of 4 on queue 1 from slot 2: */
        1, 3, 1, 0, 0x22,                  /*   write 4 sectors in pieces of 1, 3 */
        0, 15, 0,                          /*   read 16 */
        1, 0, 0, 0x33,                     /*   write 1 */
        0, 7, 0,                           /*   read 8 */
        0, 1, 3, 20, 0, 0,                 /* read 4 sectors at 20 on queue 1 */
        2, 0, 0, 0, 0, 0, 0x44,            /* write sector 0 on queue 0 */
    };
    session_seed("seed-packed-mq", packed, sizeof packed);
    static const uint8_t small[] = {
        0, 0, 0x03, 0x01,                  /* auto ring of 4, no EVENT_IDX or INDIRECT, no REPLY_ACK */
        2, 0, 1, 5, 0, 1, 0, 0x55,         /* write 2 sectors at 5 in two pieces */
        0, 0, 1, 5, 0, 1, 0,
    };
    session_seed("seed-small-ring", small, sizeof small);
    static const uint8_t ro[] = {
        1 | 8, 2, 0, 0x04,                 /* split, read-only device, SET_MEM_TABLE */
        2, 0, 0, 1, 0, 0, 0x66,            /* a write that must fail */
        0, 0, 3, 1, 0, 0,
        4, 0,
    };
    session_seed("seed-read-only", ro, sizeof ro);
    static const uint8_t mutate[] = {
        1, 2, 0, 0,
        2, 0, 3, 30, 0, 0, 0x77,
        7, VHOST_USER_SET_FEATURES, 1, 8, 0, /* SET_FEATURES again, payload all zeros */
    };
    session_seed("seed-message", mutate, sizeof mutate);
}

/* ---- reproducers of what the fuzzers found ---- */

static void crash_seeds(void)
{
    /* fuzz-ring-packed: SET_VRING_BASE before SET_VRING_NUM. A packed base
     * naming slot 100 is accepted while the ring has no size yet, and not
     * checked again when the size (4) arrives: the device reads flags of
     * slot 100, 1600 bytes into a 64-byte descriptor ring placed at the end
     * of region A. */
    static struct ring_seed r;
    ring_init(&r, true, 3, 0, S_BASE_FIRST, 0x80648064u);
    vub_put_le16(r.hdr + 7, RING_A_BYTES - 64);
    r.mem_len = 0;
    ring_save("fuzz-ring-packed", "crash-base-before-num", &r);

    /* fuzz-msg: SET_FEATURES changes a ring's layout under its mapping.
     * A packed ring of 4 is mapped with 4-byte event areas; SET_FEATURES
     * without RING_PACKED then makes it split, whose used ring is
     * 6 + 8 * 4 bytes: with EVENT_IDX the device writes avail_event 36
     * bytes into a 4-byte area placed at the end of the region. */
    struct stream s = {0};
    struct vub_vu_mem_table t = {.nregions = 1};
    t.regions[0] = (struct vub_vu_mem_region){MSG_GPA, 0x1000, MSG_UVA, 0};
    msg(&s, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, &t, 8 + 32, MEMFD);
    uint64_t f = VUB_BIT(VIRTIO_F_VERSION_1) | VUB_BIT(VIRTIO_F_RING_PACKED) | VUB_BIT(VIRTIO_F_EVENT_IDX);
    msg(&s, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, &f, 8, NONE);
    msg_state(&s, VHOST_USER_SET_VRING_NUM, 0, 4);
    struct vub_vu_vring_addr a = {0, 0, MSG_UVA, MSG_UVA + 0x1000 - 4, MSG_UVA + 0x100, 0};
    msg(&s, VHOST_USER_SET_VRING_ADDR, VHOST_USER_VERSION, &a, sizeof a, NONE);
    f &= ~VUB_BIT(VIRTIO_F_RING_PACKED);
    msg(&s, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, &f, 8, NONE);
    msg_u64(&s, VHOST_USER_SET_VRING_KICK, 0 | VHOST_USER_VRING_NOFD_MASK, NONE);
    msg_save("crash-features-change-layout", &s);

    /* fuzz-msg: a region whose user address is odd while its file offset
     * is even. The ring's user addresses are aligned as the spec asks, so
     * SET_VRING_ADDR accepts them, but our pointer into the mapping is odd
     * by one: every 16-bit index is read and written with a misaligned
     * atomic access (torn across a cache line on x86, an alignment fault
     * on arm64). */
    s = (struct stream){0};
    t.regions[0] = (struct vub_vu_mem_region){MSG_GPA, 0x1000, MSG_UVA + 1, 0};
    msg(&s, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, &t, 8 + 32, MEMFD);
    f = VUB_BIT(VIRTIO_F_VERSION_1);
    msg(&s, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, &f, 8, NONE);
    msg_state(&s, VHOST_USER_SET_VRING_NUM, 0, 8);
    a = (struct vub_vu_vring_addr){0, 0, MSG_UVA + 0x10, MSG_UVA + 0x200, MSG_UVA + 0x100, 0};
    msg(&s, VHOST_USER_SET_VRING_ADDR, VHOST_USER_VERSION, &a, sizeof a, NONE);
    msg_u64(&s, VHOST_USER_SET_VRING_KICK, 0 | VHOST_USER_VRING_NOFD_MASK, NONE);
    msg_save("crash-misaligned-ring", &s);
}

int main(int argc, char **argv)
{
    out_dir = argc > 1 ? argv[1] : "conformance/fuzz-corpus";
    mkdir(out_dir, 0755);
    msg_seeds();
    ring_seeds();
    blk_seeds();
    session_seeds();
    crash_seeds();
    return 0;
}
