/* cases-inflight.c: inflight I/O tracking and reconnect (included by vub-conform.c).
 *
 * vhost-user.rst "Inflight I/O tracking": a back-end that offers
 * VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD hands out a shared area with
 * GET_INFLIGHT_FD, records in it what it holds, and takes it back with
 * SET_INFLIGHT_FD after a reconnect, resubmitting what the driver still
 * waits for. The tool plays QEMU: it keeps the area's fd across the drop of
 * a connection (or, with --spawn, a kill -9 of the back-end), reconnects,
 * hands it back, and checks that every request completes exactly once.
 * It also hands back areas a back-end must not trust. A back-end that does
 * not offer the feature gets n/a.
 *
 * The area holds one region per queue; the stride between regions is the
 * back-end's choice, taken here as mmap_size / num_queues (what QEMU's
 * libvhost-user, DPDK and vub do). Cases use one queue, so only region 0,
 * which starts the area, is read.
 */

#define VI_SPLIT_SIZE 128u
#define VI_PACKED_SIZE 64u
#define VI_BURST 32u

struct vi_area {
    int fd;           /* the area's fd, kept as QEMU keeps it; -1 if none */
    uint64_t size;    /* mmap_size */
    uint64_t offset;  /* mmap_offset */
    uint16_t qsize;   /* entries per region */
    uint8_t *map;     /* our mapping of region 0; NULL if none */
};

static bool vi_need(bool packed)
{
    if (!vc_need_p(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD, "INFLIGHT_SHMFD"))
        return false;
    return !packed || vc_need(VIRTIO_F_RING_PACKED, "RING_PACKED");
}

static void vi_area_close(struct vi_area *a)
{
    if (a->map)
        munmap(a->map, a->size);
    if (a->fd >= 0)
        close(a->fd);
    *a = (struct vi_area){.fd = -1};
}

/* Host-order fields of the region (vhost-user numbers are host order). */
static uint16_t vi_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint64_t vi_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void vi_put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void vi_put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Header and entry sizes of the spec's QueueRegionSplit/Packed. */
static uint64_t vi_region_min(bool packed, uint16_t qsize)
{
    return packed ? 32 + 32ull * qsize : 16 + 16ull * qsize;
}

/* GET_INFLIGHT_FD for one queue of qsize entries; maps the area. False,
 * with why in d, if the reply is not one the spec allows. */
static bool vi_get(struct vc_sess *s, uint16_t qsize, struct vi_area *a, char *d, size_t dl)
{
    struct vub_vu_inflight in = {0, 0, 1, qsize, 0}, out;
    struct vc_reply r;
    *a = (struct vi_area){.fd = -1};
    if (!vc_send(s, VHOST_USER_GET_INFLIGHT_FD, VHOST_USER_VERSION, &in, sizeof in, NULL, 0)) {
        snprintf(d, dl, "GET_INFLIGHT_FD could not be sent");
        return false;
    }
    enum vc_rx rx = vc_recv_keep(s->sock, &r, VC_WAIT_MS, &a->fd);
    if (rx != VC_RX_OK || r.hdr.request != VHOST_USER_GET_INFLIGHT_FD || r.hdr.flags != 0x5 ||
        r.hdr.size != sizeof out) {
        snprintf(d, dl, "GET_INFLIGHT_FD: %s (request %u, flags 0x%x, %u bytes; want 0x5 and 24 bytes)",
                 vc_rx_name(rx), r.hdr.request, r.hdr.flags, r.hdr.size);
        return false;
    }
    memcpy(&out, r.payload, sizeof out);
    a->size = out.mmap_size;
    a->offset = out.mmap_offset;
    a->qsize = qsize;
    struct stat st;
    if (a->fd < 0 || out.mmap_size == 0) {
        snprintf(d, dl, "GET_INFLIGHT_FD answered mmap_size %llu with %u fds: no area",
                 (unsigned long long)out.mmap_size, r.fds);
        return false;
    }
    if (fstat(a->fd, &st) != 0 || (uint64_t)st.st_size < out.mmap_offset + out.mmap_size ||
        out.mmap_offset % 4096 != 0) {
        snprintf(d, dl, "the area (%llu bytes at offset %llu) is not a page-aligned part of its %lld-byte fd",
                 (unsigned long long)out.mmap_size, (unsigned long long)out.mmap_offset, (long long)st.st_size);
        return false;
    }
    void *p = mmap(NULL, out.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd, (off_t)out.mmap_offset);
    if (p == MAP_FAILED) {
        snprintf(d, dl, "the area cannot be mapped: %s", strerror(errno));
        return false;
    }
    a->map = p;
    return true;
}

static enum vc_ack vi_set(struct vc_sess *s, int fd, uint64_t size, uint64_t offset, uint16_t qsize)
{
    struct vub_vu_inflight in = {size, offset, 1, qsize, 0};
    return vc_msg(s, VHOST_USER_SET_INFLIGHT_FD, &in, sizeof in, &fd, 1);
}

/* A session with inflight tracking on queue 0. First time: GET_INFLIGHT_FD
 * and a fresh ring. Again (keep != NULL): the ring as the last session left
 * it, and the base QEMU sends after a disconnect (split: used->idx; packed:
 * the base of the first start). The area is handed back either way. */
static bool vi_open(struct vc_sess *s, bool packed, struct vi_area *a, const struct vc_q *keep, char *d, size_t dl)
{
    struct vc_setup o = vc_default_setup;
    o.packed = packed;
    o.inflight = true;
    o.size = packed ? VI_PACKED_SIZE : VI_SPLIT_SIZE;
    if (!vc_handshake(s, &o) || !vc_send_mem(s)) {
        snprintf(d, dl, "session set-up: %s", s->why);
        return false;
    }
    s->heap = VC_HEAP_OFF;
    if (!keep && !vi_get(s, (uint16_t)o.size, a, d, dl))
        return false;
    enum vc_ack ack = vi_set(s, a->fd, a->size, a->offset, a->qsize);
    if (ack != VC_ACK_OK && ack != VC_ACK_NONE) {
        snprintf(d, dl, "SET_INFLIGHT_FD of the area it gave: %s", vc_ack_name(ack));
        return false;
    }
    uint32_t base = packed ? 0x80008000u : 0;
    if (keep) {
        s->q[0] = *keep;
        if (!packed)
            base = vub_le16(vc_g(s->q[0].used) + 2);
    } else if (!vc_q_init(s, 0, o.size, packed, 0)) {
        snprintf(d, dl, "out of memory");
        return false;
    }
    if (!vc_q_configure(s, 0, base) || !vc_q_start(s, 0) || (!s->reply_ack && !vc_ping(s))) {
        snprintf(d, dl, "ring set-up: %s", s->why);
        return false;
    }
    return true;
}

/* Ends a session as a crash would look to the back-end's peer: the socket
 * goes, the ring state and the eventfds stay with "QEMU" (*keep). */
static void vi_drop(struct vc_sess *s, struct vc_q *keep)
{
    *keep = s->q[0];
    memset(&s->q[0], 0, sizeof s->q[0]);
    s->q[0].kick = s->q[0].call = s->q[0].err = -1;
    vc_close(s);
}

/* [INFL-GET] [INFL-BATCH] The area's size and the region's layout, fresh
 * and after one completed request. */
static void i_layout(const struct vc_case *c)
{
    bool packed = c->param != 0;
    if (!vi_need(packed))
        return;
    struct vc_sess s;
    struct vi_area a = {.fd = -1};
    char d[400];
    uint16_t qsize = packed ? VI_PACKED_SIZE : VI_SPLIT_SIZE;
    if (!vi_open(&s, packed, &a, NULL, d, sizeof d)) {
        vc_fail("%s", d);
        vi_area_close(&a);
        vc_close(&s);
        return;
    }
    uint64_t need = vi_region_min(packed, qsize);
    if (a.size < need)
        vc_fail("mmap_size %llu for one queue of %u: the spec's %s region needs %llu",
                (unsigned long long)a.size, qsize, packed ? "packed" : "split", (unsigned long long)need);
    else if (vc_io_roundtrip(&s, 0, "a request with tracking on")) {
        uint8_t *r = a.map;
        uint16_t version = vi_u16(r + 8), desc_num = vi_u16(r + 10);
        unsigned flagged = 0;
        for (unsigned i = 0; i < qsize; i++)
            flagged += (packed ? r + 32 + 32 * i : r + 16 + 16 * i)[0] != 0;
        uint16_t used = packed ? s.q[0].next_used : vub_le16(vc_g(s.q[0].used) + 2);
        uint16_t used_idx = vi_u16(r + (packed ? 16 : 14));
        if (version != 1 || desc_num != qsize)
            vc_fail("after a request the region says version %u, desc_num %u (want 1 and %u)", version, desc_num,
                    qsize);
        else if (flagged)
            vc_fail("%u entries are still marked inflight after every request completed", flagged);
        else if (used_idx != used)
            vc_fail("region used_idx %u, but the %s %u", used_idx,
                    packed ? "device's next used slot is" : "used ring's idx is", used);
        else
            vc_pass("%llu-byte area (%s region needs %llu); after 2 requests: version 1, desc_num %u, nothing "
                    "inflight, used_idx %u as the ring",
                    (unsigned long long)a.size, packed ? "packed" : "split", (unsigned long long)need, qsize, used);
    }
    vi_area_close(&a);
    vc_close(&s);
}

/* Submits n writes of fresh data to scratch sectors (three descriptors
 * each); the sector of request k in sec[k]. */
static bool vi_burst(struct vc_sess *s, unsigned n, struct vc_req *r, uint64_t *sec, int *token)
{
    static uint8_t data[VI_BURST][4096];
    for (unsigned k = 0; k < n; k++) {
        sec[k] = vc_scratch_sector(vc_scratch_next++);
        vc_fill_pattern(data[k], 4096, 0x1f11e000u + sec[k]);
        vc_req_init(&r[k], VC_T_OUT, sec[k], 4096, 0);
        r[k].out = data[k];
        if (!vc_req_submit(s, &r[k], &token[k]))
            return false;
    }
    vc_kick(s, 0);
    return true;
}

/* [INFL-RESUBMIT] The story of the spec: requests in flight when the
 * connection goes (param bit 0: the back-end is killed with SIGKILL, with
 * --spawn only) are completed after the reconnect, each exactly once, and
 * the data is on the disk. param bit 1: packed rings. */
static void i_reconnect(const struct vc_case *c)
{
    bool kill9 = (c->param & 1) != 0, packed = (c->param & 2) != 0;
    if (!vi_need(packed))
        return;
    if (kill9 && !vc.opt.spawn_cmd) {
        vc_na("killing the back-end needs --spawn");
        return;
    }
    struct vc_sess s;
    struct vi_area a = {.fd = -1};
    struct vc_q keep;
    struct vc_req r[VI_BURST];
    uint64_t sec[VI_BURST];
    int token[VI_BURST];
    char d[400];
    unsigned burst = packed ? VI_PACKED_SIZE / 4 : VI_BURST; /* three slots each on a packed ring */
    d[0] = '\0';
    if (!vi_open(&s, packed, &a, NULL, d, sizeof d) || !vi_burst(&s, burst, r, sec, token)) {
        vc_fail("%s", d[0] ? d : "the burst did not fit the ring");
        vi_area_close(&a);
        vc_close(&s);
        return;
    }
    if (kill9) {
        kill(vc.peer.pid, SIGKILL);
        waitpid(vc.peer.pid, NULL, 0);
        vc.peer.pid = -1;
    }
    vi_drop(&s, &keep);
    if (kill9 && !vc_peer_start()) {
        vc_fail("the back-end could not be started again");
        vi_area_close(&a);
        vc_q_free(&keep);
        return;
    }
    if (!vi_open(&s, packed, &a, &keep, d, sizeof d)) {
        vc_fail("after the %s: %s", kill9 ? "kill" : "drop", d);
        vi_area_close(&a);
        vc_close(&s);
        return;
    }
    vc_kick(&s, 0);
    unsigned seen[VI_BURST] = {0}, extra = 0, bad = 0, n = 0;
    struct vc_used u;
    for (enum vc_ev ev; n < burst && (ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS)) == VC_EV_USED; n++) {
        unsigned k = 0;
        while (k < burst && (uint32_t)token[k] != u.id)
            k++;
        if (k == burst)
            extra++;
        else if (seen[k]++ || *vc_g(r[k].w_gpa) != VC_S_OK)
            bad++;
    }
    struct vc_used more;
    if (vc_wait_used(&s, 0, &more, VC_QUIET_MS) == VC_EV_USED)
        extra++;
    unsigned missing = 0;
    for (unsigned k = 0; k < burst; k++)
        missing += !seen[k];
    if (extra || bad || missing) {
        vc_fail("after the %s: %u of %u requests completed, %u twice or not OK, %u ids never submitted",
                kill9 ? "kill" : "drop", burst - missing, burst, bad, extra);
    } else {
        for (unsigned k = 0; k < burst; k++)
            vc_disk_learn(sec[k], r[k].out, 4096);
        bool ok = true;
        for (unsigned k = 0; k < burst && ok; k++)
            ok = vc_read_check(&s, 0, sec[k], 4096, "a write of the burst, read back");
        if (ok)
            vc_pass("all %u writes in flight at the %s completed exactly once and are on the disk", burst,
                    kill9 ? "SIGKILL" : "drop of the connection");
    }
    vi_area_close(&a);
    vc_close(&s);
}

/* ---- areas the back-end must not trust ---- */

enum vi_hostile {
    VI_SMALL,        /* [INFL-SET] an area smaller than the region */
    VI_DESC_NUM,     /* [INFL-HEADER] desc_num not the queue size */
    VI_FLAG_TWO,     /* [INFL-STATE] an inflight byte of 2 */
    VI_HEAD_OUTSIDE, /* [INFL-STATE] head 100 in flight on a 64-entry ring */
    VI_TWIN_COUNTER, /* [INFL-COUNTER] two heads in flight with one counter */
    VI_BATCH_LONG,   /* [INFL-BATCH] a last batch longer than the ring */
    VI_BATCH_HEAD,   /* [INFL-BATCH] a last batch head outside the region */
    VI_FREE_LOOP,    /* [INFL-PACKED-LIST] a packed free list that loops */
};

/* Writes a valid read request at descriptor-table head h (3 descriptors,
 * not made available): what a back-end that trusts the region would run. */
static void vi_plant(struct vc_sess *s, uint16_t h)
{
    uint64_t hdr = vc_alloc(s, 16, 64), st = vc_alloc(s, 513, 64);
    vub_put_le32(vc_g(hdr), VC_T_IN);
    vub_put_le64(vc_g(hdr + 8), 0);
    uint8_t *t = vc_g(s->q[0].desc);
    vc_put_desc(t + 16u * h, hdr, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(h + 1));
    vc_put_desc(t + 16u * (h + 1), st, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, (uint16_t)(h + 2));
    vc_put_desc(t + 16u * (h + 2), st + 512, 1, VIRTQ_DESC_F_WRITE, 0);
}

/* Damages a fresh region (version 0, from GET_INFLIGHT_FD) as kind says. */
static void vi_damage(uint8_t *r, enum vi_hostile kind, uint16_t qsize, bool packed)
{
    vi_put16(r + 8, 1);
    vi_put16(r + 10, kind == VI_DESC_NUM ? (uint16_t)(qsize / 2) : qsize);
    if (packed) {
        for (unsigned i = 0; i < qsize; i++)
            vi_put16(r + 32 + 32 * i + 2, (uint16_t)(kind == VI_FREE_LOOP && i == 9 ? 3 : i + 1));
        r[20] = r[21] = 1;
        return;
    }
    uint8_t *e4 = r + 16 + 16 * 4, *e8 = r + 16 + 16 * 8;
    if (kind == VI_FLAG_TWO)
        e4[0] = 2;
    if (kind == VI_HEAD_OUTSIDE)
        r[16 + 16 * 100] = 1;
    if (kind == VI_TWIN_COUNTER) {
        e4[0] = e8[0] = 1;
        vi_put64(e4 + 8, 5);
        vi_put64(e8 + 8, 5);
    }
    if (kind == VI_BATCH_LONG)
        vi_put16(r + 14, (uint16_t)(0 - 200)); /* used->idx is 0: a batch of 200 */
    if (kind == VI_BATCH_HEAD) {
        vi_put16(r + 14, 0xffff); /* a batch of 1 ... */
        vi_put16(r + 12, 60000);  /* ... headed outside any region */
    }
}

static void i_hostile(const struct vc_case *c)
{
    enum vi_hostile kind = (enum vi_hostile)c->param;
    bool packed = kind == VI_FREE_LOOP;
    if (!vi_need(packed))
        return;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    struct vi_area a = {.fd = -1};
    char d[400];
    uint16_t qsize = packed ? VI_PACKED_SIZE : VI_SPLIT_SIZE;
    o.packed = packed;
    o.inflight = true;
    o.size = kind == VI_HEAD_OUTSIDE ? 64 : qsize;
    if (!vc_handshake(&s, &o) || !vc_send_mem(&s) || !vi_get(&s, qsize, &a, d, sizeof d)) {
        vc_fail("set-up: %s", s.why[0] ? s.why : d);
        vi_area_close(&a);
        vc_close(&s);
        return;
    }
    s.heap = VC_HEAP_OFF;
    int fd = a.fd;
    uint64_t size = a.size;
    if (kind == VI_SMALL) { /* a memfd of 64 bytes: touching byte 64 is SIGBUS */
        fd = memfd_create("vub-conform-small", MFD_CLOEXEC);
        size = 64;
        if (fd < 0 || ftruncate(fd, 64) != 0)
            vc_fail("cannot make the small area");
    } else {
        vi_damage(a.map, kind, qsize, packed);
    }
    vc_q_init(&s, 0, o.size, packed, 0);
    if (!packed)
        for (uint32_t h = 0; h + 2 < o.size; h += 3)
            vi_plant(&s, (uint16_t)h);
    enum vc_ack ack = vc_failed() ? VC_ACK_BAD : vi_set(&s, fd, size, a.offset, qsize);
    if (kind == VI_SMALL && fd >= 0)
        close(fd);
    if (vc_failed()) {
        /* already judged */
    } else if (ack == VC_ACK_ERR || ack == VC_ACK_CLOSED) {
        vc_pass("SET_INFLIGHT_FD refused it: %s", vc_ack_name(ack));
    } else if (!vc_q_configure(&s, 0, packed ? 0x80008000u : 0) || !vc_q_start(&s, 0) || !vc_ping(&s)) {
        vc_pass("the ring start was refused: %s", s.why);
    } else {
        struct vc_req r;
        vc_req_init(&r, VC_T_IN, 0, 0, 512);
        enum vc_ev ev = vc_req_run(&s, &r);
        struct vc_used more;
        bool extra = ev == VC_EV_USED && vc_wait_used(&s, 0, &more, VC_QUIET_MS) == VC_EV_USED;
        if (ev == VC_EV_CLOSED || ev == VC_EV_ERRFD)
            vc_pass("the ring was refused once started: %s", vc_ev_name(ev));
        else if (ev != VC_EV_USED)
            vc_fail("a read after the area was handed back: %s", vc_ev_name(ev));
        else if (r.used.id != 0 || extra)
            vc_warn("the back-end trusted the area: it completed id %u%s, which the driver never made available",
                    r.used.id != 0 ? r.used.id : more.id, extra ? " besides the read" : "");
        else
            vc_warn("the area was accepted and ignored; the read completed (status %u)", r.status);
    }
    vi_area_close(&a);
    vc_close(&s);
}

#define I(name, tag, fn, param, sent) {"inflight", name, tag, sent, fn, param, false}
#define IH(name, tag, fn, param, sent) {"inflight", name, tag, sent, fn, param, true}

static const struct vc_case vc_cases_inflight[] = {
    I("inflight.layout.split", "INFL-GET", i_layout, 0,
      "GET_INFLIGHT_FD answers 24 bytes and an fd holding the spec's split region; after I/O it reads version 1, "
      "nothing inflight, used_idx as the ring"),
    I("inflight.layout.packed", "INFL-GET", i_layout, 1,
      "the same for the packed region (n/a without RING_PACKED)"),
    IH("inflight.reconnect.drop-split", "INFL-RESUBMIT", i_reconnect, 0,
       "writes in flight when the connection drops complete exactly once after a reconnect hands the area back"),
    IH("inflight.reconnect.drop-packed", "INFL-RESUBMIT", i_reconnect, 2,
       "the same on a packed ring"),
    IH("inflight.reconnect.kill-split", "INFL-RECOVER", i_reconnect, 1,
       "writes in flight when the back-end is killed (SIGKILL) complete exactly once after its restart (--spawn)"),
    IH("inflight.reconnect.kill-packed", "INFL-RECOVER", i_reconnect, 3,
       "the same on a packed ring (--spawn)"),
    IH("inflight.hostile.small-area", "INFL-SET", i_hostile, VI_SMALL,
       "an area of 64 bytes, too small for its queue, is refused or ignored, never overrun"),
    IH("inflight.hostile.desc-num", "INFL-HEADER", i_hostile, VI_DESC_NUM,
       "a region whose desc_num is not the queue size is refused"),
    IH("inflight.hostile.flag-two", "INFL-STATE", i_hostile, VI_FLAG_TWO,
       "an inflight byte of 2 is refused"),
    IH("inflight.hostile.head-outside", "INFL-STATE", i_hostile, VI_HEAD_OUTSIDE,
       "head 100 in flight on a 64-entry ring is not resubmitted"),
    IH("inflight.hostile.twin-counter", "INFL-COUNTER", i_hostile, VI_TWIN_COUNTER,
       "two heads in flight with one counter (no order) are refused"),
    IH("inflight.hostile.batch-long", "INFL-BATCH", i_hostile, VI_BATCH_LONG,
       "a split last batch of 200 entries on a 128-entry ring is refused"),
    IH("inflight.hostile.batch-head", "INFL-BATCH", i_hostile, VI_BATCH_HEAD,
       "a split last batch headed at entry 60000 is refused, never followed"),
    IH("inflight.hostile.free-loop", "INFL-PACKED-LIST", i_hostile, VI_FREE_LOOP,
       "a packed free list that loops is refused (n/a without RING_PACKED)"),
};
static const size_t vc_cases_inflight_count = VUB_ARRAY_LEN(vc_cases_inflight);
