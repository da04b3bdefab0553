/* cases-protocol.c: vhost-user protocol cases (included by vub-conform.c).
 *
 * Header and reply rules, feature negotiation, NEED_REPLY, device config,
 * memory tables, ring lifecycle, multiqueue and reset. Each case opens its
 * own session, so any one can run alone (--case).
 */

static unsigned vc_scratch_next;

/* Proves a session works: a 4 KiB write and its read-back on queue q. */
static bool vc_io_roundtrip(struct vc_sess *s, unsigned q, const char *what)
{
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    return vc_write_check(s, q, sec, 4096, 0x5eed0000u + sec, what) && vc_read_check(s, q, sec, 4096, what);
}

/* ---- header and reply shape ---------------------------------------------- */

static void p_reply_shape(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_reply r;
    char d[200];
    uint32_t req = (uint32_t)c->param;
    if (req == VHOST_USER_GET_PROTOCOL_FEATURES && !vc_need(VHOST_USER_F_PROTOCOL_FEATURES, "PROTOCOL_FEATURES"))
        return;
    if (req == VHOST_USER_GET_QUEUE_NUM && !vc_need_p(VHOST_USER_PROTOCOL_F_MQ, "MQ"))
        return;
    struct vc_setup o = vc_default_setup;
    o.mem = VC_MEM_NONE;
    if (!vc_handshake(&s, &o)) {
        vc_fail("handshake: %s", s.why);
        vc_close(&s);
        return;
    }
    if (vc_call(&s, req, NULL, 0, &r, 8, d, sizeof d))
        vc_pass("%s answered with request %u, flags 0x5, 8 bytes (0x%llx)", vub_vu_request_name(req), req,
                (unsigned long long)vc_u64_of(&r));
    else
        vc_fail("%s", d);
    if (req == VHOST_USER_GET_QUEUE_NUM && !vc_failed() && vc_u64_of(&r) == 0)
        vc_fail("GET_QUEUE_NUM answered 0 queues");
    vc_close(&s);
}

static void p_reply_vring_base(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_reply r;
    char d[200];
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    struct vub_vu_vring_state st = {0, 0};
    if (!vc_call(&s, VHOST_USER_GET_VRING_BASE, &st, sizeof st, &r, 8, d, sizeof d))
        vc_fail("%s", d);
    else if (vub_le32(r.payload) != 0)
        vc_fail("GET_VRING_BASE for queue 0 answered index %u", vub_le32(r.payload));
    else
        vc_pass("GET_VRING_BASE answered 8 bytes, index 0, num %u", vub_le32(r.payload + 4));
    vc_close(&s);
}

static void p_features_version1(const struct vc_case *c)
{
    (void)c;
    if (vc_offers(VIRTIO_F_VERSION_1))
        vc_pass("VERSION_1 offered");
    else
        vc_fail("GET_FEATURES 0x%llx lacks VERSION_1 (\"A device MUST offer VIRTIO_F_VERSION_1\")",
                (unsigned long long)vc.info.features);
}

static void p_features_stable(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    if (!vc_open_or_fail(&s, &o))
        return;
    uint64_t a = 0, b = 0;
    bool ok = vc_get_u64(&s, VHOST_USER_GET_FEATURES, &a) && vc_get_u64(&s, VHOST_USER_GET_FEATURES, &b);
    if (!ok)
        vc_fail("GET_FEATURES during a running session got no proper reply");
    else if (a != vc.info.features || b != a)
        vc_fail("GET_FEATURES changed: 0x%llx at first, now 0x%llx then 0x%llx", (unsigned long long)vc.info.features,
                (unsigned long long)a, (unsigned long long)b);
    else
        vc_pass("GET_FEATURES answers the same offer on every connection and while running");
    vc_close(&s);
}

/* SET_FEATURES with a subset: only VERSION_1 (+ bit 30); then I/O. */
static void p_features_subset(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.no_event_idx = o.no_indirect = o.no_flush = true;
    if (!vc_open(&s, &o)) {
        vc_warn("a session acking a minimal subset of the offer was refused: %s (\"The device SHOULD accept any "
                "valid subset of features the driver accepts\")", s.why);
        vc_close(&s);
        return;
    }
    if (vc_io_roundtrip(&s, 0, "with minimal features"))
        vc_pass("features 0x%llx (a subset) accepted and I/O works", (unsigned long long)s.features);
    vc_close(&s);
}

/* Acks a feature bit that was not offered. */
static void p_features_unoffered(const struct vc_case *c)
{
    struct vc_sess s;
    char d[200];
    bool protocol = c->param != 0;
    if (protocol && !vc_need(VHOST_USER_F_PROTOCOL_FEATURES, "PROTOCOL_FEATURES"))
        return;
    static const unsigned virtio_bits[] = {63, 62, 41, 35, 33, 31, 27, 26, 25, 23, 3};
    static const unsigned proto_bits[] = {63, 40, 31, 20, 19, 18, 17, 16, 14, 11, 8, 7};
    const unsigned *bits = protocol ? proto_bits : virtio_bits;
    size_t nb = protocol ? VUB_ARRAY_LEN(proto_bits) : VUB_ARRAY_LEN(virtio_bits);
    uint64_t offer = protocol ? vc.info.protocol : vc.info.features;
    unsigned bit = 64;
    for (size_t i = 0; i < nb && bit == 64; i++)
        if (!vc_has_f(offer, bits[i]))
            bit = bits[i];
    if (bit == 64) {
        vc_na("every probe bit is offered");
        return;
    }
    struct vc_setup o = vc_default_setup;
    o.mem = VC_MEM_NONE;
    if (!vc_handshake(&s, &o)) {
        vc_fail("handshake: %s", s.why);
        vc_close(&s);
        return;
    }
    uint64_t v = (protocol ? s.protocol : s.features) | VUB_BIT(bit);
    uint32_t req = protocol ? VHOST_USER_SET_PROTOCOL_FEATURES : VHOST_USER_SET_FEATURES;
    enum vc_probe p = vc_probe_raw(&s, req, VHOST_USER_VERSION | VC_NEED_REPLY, &v, 8, NULL, 0, d, sizeof d);
    char what[120];
    snprintf(what, sizeof what, "%s with unoffered bit %u", vub_vu_request_name(req), bit);
    vc_judge_refusal(p, d, false, what);
    if (vc.verdict == VC_WARN)
        vc_warn("the offer is what may be acked (virtio: the driver MUST NOT accept a feature not offered; "
                "the device then fails FEATURES_OK)");
    vc_close(&s);
}

/* GET/SET_PROTOCOL_FEATURES as the very first messages, before SET_FEATURES. */
static void p_protocol_first(const struct vc_case *c)
{
    (void)c;
    struct vc_reply r;
    char d[200];
    if (!vc_need(VHOST_USER_F_PROTOCOL_FEATURES, "PROTOCOL_FEATURES"))
        return;
    struct vc_sess s = {.sock = vc_connect()};
    for (unsigned i = 0; i < VC_MAX_Q; i++)
        s.q[i].kick = s.q[i].call = s.q[i].err = -1;
    if (s.sock < 0) {
        vc_fail("cannot connect");
        return;
    }
    if (!vc_call(&s, VHOST_USER_GET_PROTOCOL_FEATURES, NULL, 0, &r, 8, d, sizeof d)) {
        vc_fail("GET_PROTOCOL_FEATURES as the first message: %s (\"must support this message even before "
                "VHOST_USER_SET_FEATURES\")", d);
    } else {
        uint64_t p = vc_u64_of(&r) & VUB_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK);
        vc_send(&s, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &p, 8, NULL, 0);
        if (vc_ping(&s))
            vc_pass("GET/SET_PROTOCOL_FEATURES served before SET_FEATURES");
        else
            vc_fail("the back-end stopped answering after SET_PROTOCOL_FEATURES before SET_FEATURES");
    }
    vc_close(&s);
}

/* ---- NEED_REPLY ------------------------------------------------------------ */

enum {
    NR_SET_OWNER, NR_SET_FEATURES, NR_SET_PROTOCOL_FEATURES, NR_SET_MEM_TABLE, NR_SET_VRING_NUM,
    NR_SET_VRING_BASE, NR_SET_VRING_ADDR, NR_SET_VRING_CALL, NR_SET_VRING_ERR, NR_SET_VRING_KICK,
    NR_ENABLE_1, NR_ENABLE_0, NR_RESET_DEVICE, NR_ADD_MEM_REG, NR_REM_MEM_REG, NR_SET_CONFIG,
};

/* A valid message with NEED_REPLY, REPLY_ACK negotiated: the back-end MUST
 * answer with a u64, 0 for success ("REPLY_ACK": "the back-end MUST respond
 * with a Payload VhostUserMsg indicating success or failure"). */
static void p_need_reply(const struct vc_case *c)
{
    struct vc_sess s;
    if (!vc_need_p(VHOST_USER_PROTOCOL_F_REPLY_ACK, "REPLY_ACK"))
        return;
    struct vc_setup o = vc_default_setup;
    long k = c->param;
    if (k == NR_RESET_DEVICE && !vc_need_p(VHOST_USER_PROTOCOL_F_RESET_DEVICE, "RESET_DEVICE"))
        return;
    if ((k == NR_ADD_MEM_REG || k == NR_REM_MEM_REG) &&
        !vc_need_p(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, "CONFIGURE_MEM_SLOTS"))
        return;
    if (k == NR_SET_CONFIG && (!vc_need_p(VHOST_USER_PROTOCOL_F_CONFIG, "CONFIG") ||
                               !vc_need(VIRTIO_BLK_F_CONFIG_WCE, "CONFIG_WCE") || vc.info.config_len < 33))
        return;
    if (k == NR_ADD_MEM_REG || k == NR_REM_MEM_REG)
        o.mem = VC_MEM_ADD;
    if (k == NR_SET_CONFIG)
        o.wce = true;
    if (k >= NR_SET_VRING_NUM && k <= NR_SET_VRING_KICK)
        o.no_kick = true;
    if (k == NR_ENABLE_1)
        o.no_enable = true;
    if (!vc_open_or_fail(&s, &o))
        return;
    uint32_t req = 0;
    uint8_t pl[64];
    uint32_t size = 0;
    int fds[1] = {-1};
    unsigned nfds = 0;
    struct vc_q *q = &s.q[0];
    struct vub_vu_vring_state st = {0, 0};
    switch (k) {
    case NR_SET_OWNER: req = VHOST_USER_SET_OWNER; break;
    case NR_SET_FEATURES: req = VHOST_USER_SET_FEATURES; memcpy(pl, &s.features, 8); size = 8; break;
    case NR_SET_PROTOCOL_FEATURES: req = VHOST_USER_SET_PROTOCOL_FEATURES; memcpy(pl, &s.protocol, 8); size = 8; break;
    case NR_SET_MEM_TABLE: {
        struct vub_vu_mem_table t = {.nregions = 1};
        vc_layout(VC_MEM_ONE, t.regions);
        req = VHOST_USER_SET_MEM_TABLE;
        memcpy(pl, &t, 40);
        size = 40;
        fds[0] = vc.memfd;
        nfds = 1;
        break;
    }
    case NR_SET_VRING_NUM: req = VHOST_USER_SET_VRING_NUM; st.num = q->size; memcpy(pl, &st, 8); size = 8; break;
    case NR_SET_VRING_BASE: req = VHOST_USER_SET_VRING_BASE; memcpy(pl, &st, 8); size = 8; break;
    case NR_SET_VRING_ADDR: {
        struct vub_vu_vring_addr a = {0, 0, vc_uva(q->desc), vc_uva(q->used), vc_uva(q->avail), 0};
        req = VHOST_USER_SET_VRING_ADDR;
        memcpy(pl, &a, 40);
        size = 40;
        break;
    }
    case NR_SET_VRING_CALL: case NR_SET_VRING_ERR: case NR_SET_VRING_KICK: {
        uint64_t v = 0;
        req = k == NR_SET_VRING_CALL ? VHOST_USER_SET_VRING_CALL
              : k == NR_SET_VRING_ERR ? VHOST_USER_SET_VRING_ERR : VHOST_USER_SET_VRING_KICK;
        memcpy(pl, &v, 8);
        size = 8;
        fds[0] = k == NR_SET_VRING_KICK ? q->kick : q->call;
        if (k == NR_SET_VRING_ERR) {
            q->err = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            fds[0] = q->err;
        }
        nfds = 1;
        break;
    }
    case NR_ENABLE_1: case NR_ENABLE_0:
        req = VHOST_USER_SET_VRING_ENABLE;
        st.num = k == NR_ENABLE_1;
        memcpy(pl, &st, 8);
        size = 8;
        break;
    case NR_RESET_DEVICE: req = VHOST_USER_RESET_DEVICE; break;
    case NR_ADD_MEM_REG: case NR_REM_MEM_REG: {
        struct vub_vu_mem_region r[8];
        vc_layout(VC_MEM_ADD, r);
        if (k == NR_ADD_MEM_REG) { /* remove region 1 quietly first, then add it back with NEED_REPLY */
            struct vub_vu_mem_single one = {0, r[1]};
            if (vc_msg(&s, VHOST_USER_REM_MEM_REG, &one, sizeof one, NULL, 0) != VC_ACK_OK) {
                vc_fail("REM_MEM_REG of a region just added was refused");
                vc_close(&s);
                return;
            }
            fds[0] = vc.memfd;
            nfds = 1;
        }
        struct vub_vu_mem_single one = {0, r[1]};
        req = k == NR_ADD_MEM_REG ? VHOST_USER_ADD_MEM_REG : VHOST_USER_REM_MEM_REG;
        memcpy(pl, &one, 40);
        size = 40;
        break;
    }
    case NR_SET_CONFIG: {
        struct vub_vu_config cf = {32, 1, 0, {1}};
        req = VHOST_USER_SET_CONFIG;
        memcpy(pl, &cf, 13);
        size = 13;
        break;
    }
    }
    if (!vc_send(&s, req, VHOST_USER_VERSION | VC_NEED_REPLY, pl, size, fds, nfds)) {
        vc_fail("could not send %s", vub_vu_request_name(req));
    } else {
        uint64_t v = 0;
        char d[200];
        enum vc_ack a = vc_get_ack(&s, req, &v, d, sizeof d);
        if (a == VC_ACK_OK)
            vc_pass("%s with NEED_REPLY answered with a u64 0", vub_vu_request_name(req));
        else if (a == VC_ACK_BAD)
            vc_fail("%s with NEED_REPLY: %s", vub_vu_request_name(req), d);
        else
            vc_fail("%s with NEED_REPLY (valid, REPLY_ACK negotiated): %s", vub_vu_request_name(req), vc_ack_name(a));
        if (k == NR_SET_CONFIG && a == VC_ACK_OK) { /* put writeback back as it was */
            struct vub_vu_config cf = {32, 1, 0, {vc.info.config[32]}};
            vc_msg(&s, VHOST_USER_SET_CONFIG, &cf, 13, NULL, 0);
        }
    }
    vc_close(&s);
}

/* A request with a reply of its own and NEED_REPLY gets that reply only. */
static void p_need_reply_own(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_reply r1, r2;
    if (!vc_need_p(VHOST_USER_PROTOCOL_F_REPLY_ACK, "REPLY_ACK"))
        return;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    uint32_t req = (uint32_t)c->param;
    struct vub_vu_vring_state st = {0, 0};
    uint32_t size = req == VHOST_USER_GET_VRING_BASE ? 8 : 0;
    vc_send(&s, req, VHOST_USER_VERSION | VC_NEED_REPLY, &st, size, NULL, 0);
    vc_send(&s, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0);
    enum vc_rx a = vc_recv(s.sock, &r1, VC_WAIT_MS), b = a == VC_RX_OK ? vc_recv(s.sock, &r2, VC_WAIT_MS) : a;
    if (a != VC_RX_OK || b != VC_RX_OK)
        vc_fail("%s|NEED_REPLY then GET_FEATURES: %s", vub_vu_request_name(req), vc_rx_name(a != VC_RX_OK ? a : b));
    else if (r1.hdr.request != req || (r1.hdr.flags & 7u) != 0x5 || r1.hdr.size != 8)
        vc_fail("first reply: request %u flags 0x%x size %u", r1.hdr.request, r1.hdr.flags, r1.hdr.size);
    else if (r2.hdr.request != VHOST_USER_GET_FEATURES)
        vc_fail("a second reply to %s (request %u) came before the GET_FEATURES reply (\"for the message types "
                "that already solicit a reply ... need_reply bit ... brings no behavioural change\")",
                vub_vu_request_name(req), r2.hdr.request);
    else if (r1.hdr.flags != 0x5)
        vc_warn("%s with NEED_REPLY got its own reply and no extra ack, but the reply's flags are 0x%x: the "
                "NEED_REPLY bit is echoed (QEMU accepts only 0x5 on a reply)", vub_vu_request_name(req), r1.hdr.flags);
    else
        vc_pass("%s with NEED_REPLY got its own reply and no extra ack", vub_vu_request_name(req));
    vc_close(&s);
}

/* NEED_REPLY before REPLY_ACK is negotiated: answering or not are both
 * allowed, but the stream must stay in step. */
static void p_need_reply_early(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_reply r;
    struct vc_setup o = vc_default_setup;
    o.no_reply_ack = true;
    o.mem = VC_MEM_NONE;
    if (!vc_handshake(&s, &o)) {
        vc_fail("handshake: %s", s.why);
        vc_close(&s);
        return;
    }
    vc_send(&s, VHOST_USER_SET_OWNER, VHOST_USER_VERSION | VC_NEED_REPLY, NULL, 0, NULL, 0);
    vc_send(&s, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0);
    enum vc_rx rx = vc_recv(s.sock, &r, VC_WAIT_MS);
    if (rx != VC_RX_OK) {
        vc_fail("SET_OWNER|NEED_REPLY then GET_FEATURES: %s", vc_rx_name(rx));
    } else if (r.hdr.request == VHOST_USER_SET_OWNER) {
        if (r.hdr.flags != 0x5 || r.hdr.size != 8 || vc_u64_of(&r) != 0)
            vc_fail("the early ack has flags 0x%x size %u value %llu", r.hdr.flags, r.hdr.size,
                    (unsigned long long)vc_u64_of(&r));
        else if (vc_recv(s.sock, &r, VC_WAIT_MS) != VC_RX_OK || r.hdr.request != VHOST_USER_GET_FEATURES)
            vc_fail("the GET_FEATURES reply did not follow the early ack");
        else
            vc_pass("NEED_REPLY answered even before REPLY_ACK was negotiated");
    } else if (r.hdr.request == VHOST_USER_GET_FEATURES && r.hdr.flags == 0x5) {
        vc_pass("NEED_REPLY not answered before REPLY_ACK was negotiated (allowed); the stream stayed in step");
    } else {
        vc_fail("unexpected reply request %u flags 0x%x", r.hdr.request, r.hdr.flags);
    }
    vc_close(&s);
}

/* ---- sessions of other shapes ---------------------------------------------- */

static void p_session_variant(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    switch (c->param) {
    case 0: o.no_reply_ack = true; break;                       /* GET_FEATURES as the barrier */
    case 1: o.no_protocol = true; break;                        /* rings start enabled */
    case 2: o.mem = VC_MEM_TWO; break;                          /* straddling buffers */
    case 3: o.mem = VC_MEM_EIGHT; break;                        /* eight regions */
    case 4:                                                     /* ADD_MEM_REG */
        if (!vc_need_p(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, "CONFIGURE_MEM_SLOTS"))
            return;
        o.mem = VC_MEM_ADD;
        break;
    }
    if (!vc_open(&s, &o)) {
        vc_fail("set-up: %s", s.why);
        vc_close(&s);
        return;
    }
    if (c->param >= 2) {
        /* buffers that cross every region boundary, and one at each region's start */
        struct vub_vu_mem_region r[8];
        unsigned n = vc_layout(o.mem, r);
        for (unsigned i = 1; i < n && !vc_failed(); i++) {
            uint64_t sec = vc_scratch_sector(vc_scratch_next++);
            struct vc_req w, rd;
            uint8_t data[4096];
            vc_fill_pattern(data, sizeof data, 0xab00 + i);
            vc_req_init(&w, VC_T_OUT, sec, 4096, 0);
            w.out = data;
            w.r_gpa = r[i].guest_addr - 16 - 1000; /* header and data cross the boundary */
            w.w_gpa = r[i].guest_addr + 8192;      /* status well past the data */
            vc_req_run(&s, &w);
            if (w.ev != VC_EV_USED || w.status != VC_S_OK) {
                char say[120];
                vc_req_say(&w, say, sizeof say);
                vc_fail("a write whose buffer spans regions %u and %u: %s", i - 1, i, say);
                break;
            }
            vc_disk_learn(sec, data, 4096);
            vc_req_init(&rd, VC_T_IN, sec, 0, 4096);
            rd.w_gpa = r[i].guest_addr - 2048; /* data and status cross the boundary */
            rd.r_gpa = r[i].guest_addr + 8192 + 64;
            vc_req_run(&s, &rd);
            if (rd.ev != VC_EV_USED || rd.status != VC_S_OK || vc_disk_check(sec, vc_req_in(&rd), 4096) >= 0) {
                char say[120];
                vc_req_say(&rd, say, sizeof say);
                vc_fail("a read whose buffer spans regions %u and %u: %s%s", i - 1, i, say,
                        rd.status == VC_S_OK ? ", wrong data" : "");
            }
        }
        if (!vc_failed())
            vc_pass("buffers spanning %u region boundaries are served", n - 1);
    } else if (vc_io_roundtrip(&s, 0, "I/O")) {
        vc_pass(c->param == 0 ? "a session without REPLY_ACK (GET_FEATURES as barrier) serves I/O"
                              : "without PROTOCOL_FEATURES the ring is enabled from the start");
    }
    vc_close(&s);
}

/* Rings in the second region: user-address translation with mmap_offset. */
static void p_rings_high(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.mem = VC_MEM_TWO;
    o.no_kick = true;
    if (!vc_open_or_fail(&s, &o))
        return;
    /* move queue 0's rings into region 1 (mmap_offset 16 MiB, far user address) */
    struct vc_q *q = &s.q[0];
    uint64_t base = VC_GPA_BASE + VC_GUEST_BYTES / 2 + VC_RING_AREA;
    memset(vc_g(base), 0, VC_RING_AREA);
    q->desc = base;
    q->avail = base + 16ull * q->size;
    q->used = (q->avail + 6 + 2ull * q->size + 63) & ~63ull;
    struct vub_vu_vring_addr a = {0, 0, vc_layout_uva(o.mem, q->desc), vc_layout_uva(o.mem, q->used),
                                  vc_layout_uva(o.mem, q->avail), 0};
    if (vc_msg(&s, VHOST_USER_SET_VRING_ADDR, &a, sizeof a, NULL, 0) != VC_ACK_OK || !vc_q_start(&s, 0)) {
        vc_fail("rings in a region with mmap_offset 16 MiB were refused: %s", s.why);
    } else if (vc_io_roundtrip(&s, 0, "rings in region 1")) {
        vc_pass("rings at user address 0x%llx (mmap_offset 16 MiB) are translated and served",
                (unsigned long long)a.desc_uaddr);
    }
    vc_close(&s);
}

/* SET_MEM_TABLE again while running (the same memory): rings keep working. */
static void p_mem_replace(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    if (!vc_io_roundtrip(&s, 0, "before")) {
        vc_close(&s);
        return;
    }
    if (!vc_send_mem(&s))
        vc_fail("a second SET_MEM_TABLE was refused: %s", s.why);
    else if (vc_io_roundtrip(&s, 0, "after a second SET_MEM_TABLE"))
        vc_pass("a running ring keeps working after the memory table is sent again");
    vc_close(&s);
}

/* ADD_MEM_REG / REM_MEM_REG: remove the second region, I/O in the first,
 * add it back, I/O across both. */
static void p_mem_add_rem(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (!vc_need_p(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, "CONFIGURE_MEM_SLOTS"))
        return;
    struct vc_setup o = vc_default_setup;
    o.mem = VC_MEM_ADD;
    if (!vc_open_or_fail(&s, &o))
        return;
    uint64_t slots = 0;
    if (!vc_get_u64(&s, VHOST_USER_GET_MAX_MEM_SLOTS, &slots) || slots < 1) {
        vc_fail("GET_MAX_MEM_SLOTS: no proper reply (or 0 slots)");
        vc_close(&s);
        return;
    }
    struct vub_vu_mem_region r[8];
    vc_layout(VC_MEM_ADD, r);
    struct vub_vu_mem_single one = {0, r[1]};
    if (vc_msg(&s, VHOST_USER_REM_MEM_REG, &one, sizeof one, NULL, 0) != VC_ACK_OK) {
        vc_fail("REM_MEM_REG of a region that was added: %s", s.closed ? "connection closed" : "refused");
    } else if (vc_io_roundtrip(&s, 0, "after REM_MEM_REG")) {
        if (vc_msg(&s, VHOST_USER_ADD_MEM_REG, &one, sizeof one, &vc.memfd, 1) != VC_ACK_OK)
            vc_fail("ADD_MEM_REG of the removed region again was refused");
        else if (vc_io_roundtrip(&s, 0, "after ADD_MEM_REG"))
            vc_pass("GET_MAX_MEM_SLOTS %llu; REM_MEM_REG and ADD_MEM_REG keep the table usable",
                    (unsigned long long)slots);
    }
    vc_close(&s);
}

/* REM_MEM_REG with an fd: "the back-end MUST close it without using it". */
static void p_mem_rem_closes_fd(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (!vc_need_p(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, "CONFIGURE_MEM_SLOTS"))
        return;
    struct vc_setup o = vc_default_setup;
    o.mem = VC_MEM_ADD;
    if (!vc_open_or_fail(&s, &o))
        return;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        vc_fail("pipe: %s", strerror(errno));
        vc_close(&s);
        return;
    }
    struct vub_vu_mem_region r[8];
    vc_layout(VC_MEM_ADD, r);
    struct vub_vu_mem_single one = {0, r[1]};
    enum vc_ack a = vc_msg(&s, VHOST_USER_REM_MEM_REG, &one, sizeof one, &p[1], 1);
    close(p[1]);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    bool eof = poll(&pf, 1, VC_WAIT_MS) == 1;
    if (a == VC_ACK_CLOSED)
        vc_pass("REM_MEM_REG with an fd closed the connection (allowed: SHOULD NOT send one)");
    else if (!eof)
        vc_fail("the fd sent with REM_MEM_REG was not closed within 2 s (%s)", vc_ack_name(a));
    else
        vc_pass("REM_MEM_REG with an fd: %s, fd closed", vc_ack_name(a));
    close(p[0]);
    vc_close(&s);
}

/* ---- ring lifecycle -------------------------------------------------------- */

/* GET_VRING_BASE: the next available index, and a stop, not a reset. */
static bool vc_get_base(struct vc_sess *s, unsigned q, uint32_t *num, char *d, size_t dlen)
{
    struct vc_reply r;
    struct vub_vu_vring_state st = {q, 0};
    if (!vc_call(s, VHOST_USER_GET_VRING_BASE, &st, sizeof st, &r, 8, d, dlen))
        return false;
    *num = vub_le32(r.payload + 4);
    return true;
}

/* Restarts queue q at `base` the way QEMU does: num, base, addr, call, kick, enable. */
static bool vc_resume(struct vc_sess *s, unsigned q, uint32_t base)
{
    return vc_q_configure(s, q, base) && vc_q_start(s, q);
}

/* The stop both QEMU generations send after the firmware: SET_VRING_ENABLE
 * 1 and then 0 for every queue, also one never set up, then GET_VRING_BASE
 * for the started ring only. The disabled ring's base is still where it
 * stopped, and the unconfigured queue's flag did no harm. */
static void p_ring_enable_sequence(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    char d[200] = "";
    uint32_t num = 0;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    if (!vc_has_f(s.features, VHOST_USER_F_PROTOCOL_FEATURES)) {
        vc_na("PROTOCOL_FEATURES not negotiated: rings have no enable state");
        vc_close(&s);
        return;
    }
    bool two = vc.info.queues >= 2; /* queue 1 exists but is never set up */
    bool ok = !two || vc_ack_ok(&s, vc_msg_state(&s, VHOST_USER_SET_VRING_ENABLE, 1, 1), "SET_VRING_ENABLE 1 of queue 1");
    for (int i = 0; ok && i < 2; i++)
        ok = vc_read_check(&s, 0, 0, 512, "request on queue 0");
    ok = ok && vc_ack_ok(&s, vc_msg_state(&s, VHOST_USER_SET_VRING_ENABLE, 0, 0), "SET_VRING_ENABLE 0 of queue 0") &&
         (!two || vc_ack_ok(&s, vc_msg_state(&s, VHOST_USER_SET_VRING_ENABLE, 1, 0), "SET_VRING_ENABLE 0 of queue 1"));
    if (!ok)
        vc_fail("%s", s.why);
    else if (!vc_get_base(&s, 0, &num, d, sizeof d))
        vc_fail("GET_VRING_BASE of the disabled ring: %s", d);
    else if (num != 2)
        vc_fail("GET_VRING_BASE of the disabled ring answered %u after 2 requests", num);
    else
        vc_pass("enable/disable of an unconfigured queue was harmless; the disabled ring's base is 2");
    vc_close(&s);
}

static void p_ring_base_value(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    char d[200];
    uint32_t num = 0;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    for (int i = 0; i < 5; i++)
        if (!vc_read_check(&s, 0, 0, 512, "request"))
            break;
    if (!vc_failed()) {
        if (!vc_get_base(&s, 0, &num, d, sizeof d))
            vc_fail("%s", d);
        else if (num != 5)
            vc_fail("GET_VRING_BASE after 5 requests answered %u", num);
        else {
            uint32_t again = 0;
            if (!vc_get_base(&s, 0, &again, d, sizeof d))
                vc_fail("a second GET_VRING_BASE: %s", d);
            else if (again != 5)
                vc_fail("a second GET_VRING_BASE answered %u, not 5 (stop, not reset)", again);
            else
                vc_pass("GET_VRING_BASE answers 5 after 5 requests, and again 5 (a stop, not a reset)");
        }
    }
    vc_close(&s);
}

/* A stopped ring is not processed; after SET_VRING_BASE + kick it resumes,
 * and the used index continues from guest memory. */
static void p_ring_stopped(const struct vc_case *c)
{
    struct vc_sess s;
    char d[200];
    uint32_t num = 0;
    bool outstanding = c->param != 0;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    for (int i = 0; i < 3; i++)
        vc_read_check(&s, 0, (uint64_t)i, 512, "before the stop");
    if (vc_failed() || !vc_get_base(&s, 0, &num, d, sizeof d)) {
        if (!vc_failed())
            vc_fail("%s", d);
        vc_close(&s);
        return;
    }
    /* requests made available while stopped */
    struct vc_req r[4];
    int n = outstanding ? 4 : 1;
    for (int i = 0; i < n; i++) {
        vc_req_init(&r[i], VC_T_IN, (uint64_t)i, 0, 512);
        vc_req_submit(&s, &r[i], NULL);
    }
    vc_kick(&s, 0);
    vc_sleep_ms(VC_QUIET_MS);
    struct vc_used u;
    if (vc_take_used(&s, 0, &u)) {
        vc_fail("a request on a stopped ring (after GET_VRING_BASE) was processed (\"stopped: the back-end must "
                "not process the ring at all\")");
        vc_close(&s);
        return;
    }
    uint32_t base = num;
    if (!vc_resume(&s, 0, base)) {
        vc_fail("resuming at base %u: %s", base, s.why);
        vc_close(&s);
        return;
    }
    vc_kick(&s, 0);
    int done = 0;
    uint16_t used_before = s.q[0].used_seen;
    for (int i = 0; i < n; i++) {
        enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
        if (ev != VC_EV_USED) {
            vc_fail("after resuming, request %d of %d: %s", i + 1, n, vc_ev_name(ev));
            break;
        }
        done++;
    }
    if (done == n) {
        for (int i = 0; i < n; i++)
            if (vc_disk_check((uint64_t)i, vc_req_in(&r[i]), 512) >= 0 || *vc_g(r[i].w_gpa + 512) != VC_S_OK)
                vc_fail("request %d after resume returned wrong data or status", i);
        if (used_before != (uint16_t)(3))
            vc_fail("internal: used index %u", used_before);
        if (!vc_failed())
            vc_pass("nothing processed while stopped; %d request(s) made available meanwhile completed after "
                    "SET_VRING_BASE %u and a kick, used index continued at 3", n, base);
    }
    vc_close(&s);
}

/* Free-running indexes wrap: start at base 65530. */
static void p_ring_wrap_base(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.base = 65530;
    if (!vc_open_or_fail(&s, &o))
        return;
    for (int i = 0; i < 12 && !vc_failed(); i++)
        vc_read_check(&s, 0, (uint64_t)i, 1024, "across the index wrap");
    char d[200];
    uint32_t num = 0;
    if (!vc_failed()) {
        if (!vc_get_base(&s, 0, &num, d, sizeof d))
            vc_fail("%s", d);
        else if (num != 6)
            vc_fail("GET_VRING_BASE after 12 requests from 65530 answered %u, not 6", num);
        else
            vc_pass("12 requests from base 65530 complete across the 16-bit wrap; base is then 6");
    }
    vc_close(&s);
}

/* GET_VRING_BASE right after a burst: everything taken is completed. */
static void p_ring_drain(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    char d[200];
    uint32_t num = 0;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    struct vc_req r[32];
    for (int i = 0; i < 32; i++) {
        vc_req_init(&r[i], VC_T_IN, (uint64_t)i, 0, 4096);
        vc_req_submit(&s, &r[i], NULL);
    }
    vc_kick(&s, 0);
    if (!vc_get_base(&s, 0, &num, d, sizeof d)) {
        vc_fail("%s", d);
    } else {
        uint16_t used = vub_le16(vc_g(s.q[0].used) + 2);
        if (used != (uint16_t)num)
            vc_warn("GET_VRING_BASE answered %u while only %u requests were completed: in-flight requests were "
                    "not drained before the reply (rule added to vhost-user.rst in 2025)", num, used);
        else
            vc_pass("GET_VRING_BASE answered %u with all %u taken requests completed", num, used);
    }
    vc_close(&s);
}

/* Requests made available before the kick fd are served once it is set. */
static void p_ring_kick_starts(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    bool via_enable = c->param != 0;
    if (via_enable) {
        if (!vc_need(VHOST_USER_F_PROTOCOL_FEATURES, "PROTOCOL_FEATURES"))
            return;
        o.no_enable = true;
    } else {
        o.no_kick = true;
    }
    if (!vc_open_or_fail(&s, &o))
        return;
    struct vc_req r;
    vc_req_init(&r, VC_T_IN, 3, 0, 512);
    vc_req_submit(&s, &r, NULL);
    bool ok = via_enable ? vc_msg_state(&s, VHOST_USER_SET_VRING_ENABLE, 0, 1) == VC_ACK_OK : vc_q_start(&s, 0);
    if (!ok) {
        vc_fail("%s was refused", via_enable ? "SET_VRING_ENABLE" : "SET_VRING_KICK");
        vc_close(&s);
        return;
    }
    vc_kick(&s, 0);
    struct vc_used u;
    enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
    if (ev != VC_EV_USED)
        vc_fail("a request made available before %s: %s", via_enable ? "SET_VRING_ENABLE" : "SET_VRING_KICK",
                vc_ev_name(ev));
    else if (*vc_g(r.w_gpa + 512) != VC_S_OK || vc_disk_check(3, vc_req_in(&r), 512) >= 0)
        vc_fail("completed with status %u or wrong data", *vc_g(r.w_gpa + 512));
    else
        vc_pass("a request made available before %s was served after it and a kick",
                via_enable ? "SET_VRING_ENABLE(1)" : "SET_VRING_KICK");
    vc_close(&s);
}

/* A ring that is started but disabled must cause no side effects. */
static void p_ring_disabled(const struct vc_case *c)
{
    struct vc_sess s;
    if (!vc_need(VHOST_USER_F_PROTOCOL_FEATURES, "PROTOCOL_FEATURES"))
        return;
    struct vc_setup o = vc_default_setup;
    bool never_enabled = c->param == 0;
    o.no_enable = never_enabled;
    o.queues_mask = vc_nq() >= 2 ? 3 : 1;
    if (!vc_open_or_fail(&s, &o))
        return;
    if (!never_enabled && vc_msg_state(&s, VHOST_USER_SET_VRING_ENABLE, 0, 0) != VC_ACK_OK) {
        vc_fail("SET_VRING_ENABLE(0) was refused");
        vc_close(&s);
        return;
    }
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    uint8_t data[512];
    vc_fill_pattern(data, sizeof data, 0xd15ab1ed + sec);
    if (vc.disk.known[sec])
        data[0] = (uint8_t)~vc.disk.data[sec * 512]; /* differ from what the disk holds */
    struct vc_req w;
    vc_req_init(&w, VC_T_OUT, sec, 512, 0);
    w.out = data;
    vc_req_submit(&s, &w, NULL);
    vc_kick(&s, 0);
    vc_sleep_ms(VC_QUIET_MS);
    struct vc_used u;
    bool done = vc_take_used(&s, 0, &u);
    uint8_t st = *vc_g(w.w_gpa);
    bool changed = false;
    if (o.queues_mask == 3) { /* look at the disk through the other queue */
        struct vc_req rd;
        vc_req_init(&rd, VC_T_IN, sec, 0, 512);
        rd.q = 1;
        vc_req_run(&s, &rd);
        changed = rd.ev == VC_EV_USED && rd.status == VC_S_OK && !memcmp(vc_req_in(&rd), data, 512);
    }
    if ((done && st == VC_S_OK) || changed) {
        vc_fail("a write on a %s ring took effect (\"started but disabled: the back-end must process the ring "
                "without causing any side effects\")", never_enabled ? "never enabled" : "disabled");
        vc_disk_learn(sec, data, 512);
        vc_close(&s);
        return;
    }
    if (vc_msg_state(&s, VHOST_USER_SET_VRING_ENABLE, 0, 1) != VC_ACK_OK) {
        vc_fail("SET_VRING_ENABLE(1) was refused");
        vc_close(&s);
        return;
    }
    vc_kick(&s, 0);
    if (done) {
        vc_pass("the write on the disabled ring completed with status %u and no effect", st);
        vc_disk_forget(sec, 1);
    } else {
        enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
        st = *vc_g(w.w_gpa);
        if (ev == VC_EV_USED && st == VC_S_OK) {
            vc_disk_learn(sec, data, 512);
            vc_pass("nothing happened while disabled; the write completed once the ring was enabled");
        } else {
            vc_disk_forget(sec, 1);
            vc_warn("the request made available while disabled never completed after enabling (%s, status %u)",
                    vc_ev_name(ev), st);
        }
    }
    vc_close(&s);
}

/* Replacing the call fd: notifications go to the new one. */
static void p_ring_call_replaced(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.no_event_idx = true;
    if (!vc_open_or_fail(&s, &o))
        return;
    vc_read_check(&s, 0, 0, 512, "first");
    int old = s.q[0].call;
    int fresh = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (vc_msg_u64(&s, VHOST_USER_SET_VRING_CALL, 0, &fresh, 1) != VC_ACK_OK) {
        vc_fail("a second SET_VRING_CALL was refused");
    } else {
        uint64_t junk;
        while (read(old, &junk, sizeof junk) > 0)
            ;
        vc_read_check(&s, 0, 1, 512, "after the new call fd");
        uint64_t n_old = 0, n_new = 0;
        if (read(old, &n_old, sizeof n_old) != 8)
            n_old = 0;
        if (read(fresh, &n_new, sizeof n_new) != 8)
            n_new = 0;
        if (!vc_failed()) {
            if (n_new == 0)
                vc_fail("no notification on the new call fd (old fd got %llu)", (unsigned long long)n_old);
            else if (n_old)
                vc_fail("the replaced call fd was still signalled");
            else
                vc_pass("after SET_VRING_CALL the new fd is signalled and the old one is not");
        }
    }
    close(fresh);
    vc_close(&s);
}

/* SET_VRING_KICK with NOFD: "polling should be used instead of waiting for the kick". */
static void p_ring_kick_nofd(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.no_kick = true;
    if (!vc_open_or_fail(&s, &o))
        return;
    enum vc_ack a = vc_msg_u64(&s, VHOST_USER_SET_VRING_KICK, VHOST_USER_VRING_NOFD_MASK, NULL, 0);
    if (a != VC_ACK_OK) {
        vc_warn("SET_VRING_KICK with NOFD (polling): %s", vc_ack_name(a));
        vc_close(&s);
        return;
    }
    if (vc_has_f(s.features, VHOST_USER_F_PROTOCOL_FEATURES))
        vc_msg_state(&s, VHOST_USER_SET_VRING_ENABLE, 0, 1);
    struct vc_req r;
    vc_req_init(&r, VC_T_IN, 2, 0, 512);
    vc_req_submit(&s, &r, NULL); /* no kick: nobody will */
    struct vc_used u;
    enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
    if (ev == VC_EV_USED)
        vc_pass("with NOFD the back-end polled the ring and served a request nobody kicked");
    else if (ev == VC_EV_TIMEOUT && vc_after(&s) == VC_AFTER_ALIVE)
        vc_warn("SET_VRING_KICK NOFD accepted, but a request was not served without a kick");
    else
        vc_fail("SET_VRING_KICK NOFD: %s", vc_ev_name(ev));
    vc_close(&s);
}

/* SET_VRING_CALL with NOFD: the driver polls; requests still complete. */
static void p_ring_call_nofd(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    enum vc_ack a = vc_msg_u64(&s, VHOST_USER_SET_VRING_CALL, VHOST_USER_VRING_NOFD_MASK, NULL, 0);
    if (a != VC_ACK_OK)
        vc_warn("SET_VRING_CALL with NOFD: %s", vc_ack_name(a));
    else if (vc_io_roundtrip(&s, 0, "with no call fd"))
        vc_pass("with SET_VRING_CALL NOFD requests complete (the driver polls the used ring)");
    vc_close(&s);
}

/* ---- multiqueue ------------------------------------------------------------ */

static void p_mq_queue(const struct vc_case *c)
{
    struct vc_sess s;
    unsigned q = (unsigned)c->param;
    if (q >= vc.info.queues) {
        vc_na("the back-end has %u queue(s)", vc.info.queues);
        return;
    }
    if (q >= VC_MAX_Q) {
        vc_na("this tool drives at most %u queues", VC_MAX_Q);
        return;
    }
    struct vc_setup o = vc_default_setup;
    o.queues_mask = (1u << q);
    if (!vc_open_or_fail(&s, &o))
        return;
    if (vc_io_roundtrip(&s, q, "I/O"))
        vc_pass("queue %u alone (others never configured) serves I/O", q);
    vc_close(&s);
}

static void p_mq_all(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    unsigned n = vc_nq();
    if (n < 2) {
        vc_na("the back-end has one queue");
        return;
    }
    struct vc_setup o = vc_default_setup;
    o.queues_mask = (1u << n) - 1;
    if (!vc_open_or_fail(&s, &o))
        return;
    /* a batch on every queue at once, then collect */
    struct vc_req r[VC_MAX_Q][4];
    for (unsigned q = 0; q < n; q++)
        for (unsigned i = 0; i < 4; i++) {
            vc_req_init(&r[q][i], VC_T_IN, q * 4 + i, 0, 512);
            r[q][i].q = q;
            vc_req_submit(&s, &r[q][i], NULL);
        }
    for (unsigned q = 0; q < n; q++)
        vc_kick(&s, q);
    for (unsigned q = 0; q < n && !vc_failed(); q++)
        for (unsigned i = 0; i < 4; i++) {
            struct vc_used u;
            enum vc_ev ev = vc_wait_used(&s, q, &u, VC_WAIT_MS);
            if (ev != VC_EV_USED) {
                vc_fail("queue %u request %u: %s", q, i, vc_ev_name(ev));
                break;
            }
        }
    for (unsigned q = 0; q < n && !vc_failed(); q++)
        for (unsigned i = 0; i < 4; i++)
            if (*vc_g(r[q][i].w_gpa + 512) != VC_S_OK || vc_disk_check(q * 4 + i, vc_req_in(&r[q][i]), 512) >= 0)
                vc_fail("queue %u request %u: status %u or wrong data", q, i, *vc_g(r[q][i].w_gpa + 512));
    /* one queue stopped, the others go on */
    char d[200];
    uint32_t num;
    if (!vc_failed() && vc_get_base(&s, 0, &num, d, sizeof d) && vc_io_roundtrip(&s, 1, "queue 1 with queue 0 stopped"))
        vc_pass("%u queues served batches at once; queue 1 kept working with queue 0 stopped", n);
    vc_close(&s);
}

/* ---- reset ----------------------------------------------------------------- */

static void p_reset_device(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (!vc_need_p(VHOST_USER_PROTOCOL_F_RESET_DEVICE, "RESET_DEVICE"))
        return;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    if (vc_msg(&s, VHOST_USER_RESET_DEVICE, NULL, 0, NULL, 0) != VC_ACK_OK) {
        vc_fail("RESET_DEVICE was refused");
        vc_close(&s);
        return;
    }
    struct vc_req r;
    vc_req_init(&r, VC_T_IN, 0, 0, 512);
    vc_req_submit(&s, &r, NULL);
    vc_kick(&s, 0);
    vc_sleep_ms(VC_QUIET_MS);
    struct vc_used u;
    if (vc_take_used(&s, 0, &u)) {
        vc_fail("a ring was still processed after RESET_DEVICE (\"disable all rings\")");
        vc_close(&s);
        return;
    }
    /* set the device up again on the same connection */
    if (!vc_ack_ok(&s, vc_msg_u64(&s, VHOST_USER_SET_FEATURES, s.features, NULL, 0), "SET_FEATURES") ||
        !vc_send_mem(&s) || !vc_q_init(&s, 0, s.q[0].size, false, 0) || !vc_resume(&s, 0, 0)) {
        vc_fail("set-up after RESET_DEVICE: %s", s.why);
    } else if (vc_io_roundtrip(&s, 0, "after RESET_DEVICE")) {
        vc_pass("RESET_DEVICE stopped the rings; the same connection was set up again and serves I/O");
    }
    vc_close(&s);
}

/* QEMU 10's hand-over from the firmware to the kernel: the ring disabled
 * and stopped, RESET_DEVICE, then SET_FEATURES and the ring messages again,
 * but no memory table (QEMU only sends changes to the table it believes
 * mapped). A back-end that drops the table on a reset cannot find the
 * rings; the guest hangs at boot. */
static void p_reset_keeps_mem(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    char d[200] = "";
    uint32_t num = 0;
    if (!vc_need_p(VHOST_USER_PROTOCOL_F_RESET_DEVICE, "RESET_DEVICE"))
        return;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    if (!vc_read_check(&s, 0, 0, 512, "before the reset")) {
        vc_close(&s);
        return;
    }
    if (!vc_ack_ok(&s, vc_msg_state(&s, VHOST_USER_SET_VRING_ENABLE, 0, 0), "SET_VRING_ENABLE 0") ||
        !vc_get_base(&s, 0, &num, d, sizeof d) ||
        !vc_ack_ok(&s, vc_msg(&s, VHOST_USER_RESET_DEVICE, NULL, 0, NULL, 0), "RESET_DEVICE") ||
        !vc_ack_ok(&s, vc_msg_u64(&s, VHOST_USER_SET_FEATURES, s.features, NULL, 0), "SET_FEATURES") ||
        !vc_q_init(&s, 0, s.q[0].size, false, 0) || !vc_resume(&s, 0, 0))
        vc_fail("the stop, reset and set-up without a memory table: %s%s", s.why, num == 1 ? "" : d);
    else if (vc_io_roundtrip(&s, 0, "after RESET_DEVICE, with the memory table of before"))
        vc_pass("RESET_DEVICE kept the memory table: rings set up again without it serve I/O");
    vc_close(&s);
}

/* SET_STATUS 0 (a device reset) in QEMU 7.2's order: before GET_VRING_BASE.
 * The answer must still be where the ring stopped, or the front-end
 * resumes the ring at the wrong place after a stop/cont. */
static void p_status_zero_base(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    char d[200] = "";
    uint32_t num = 0;
    uint64_t st = 0;
    if (!vc_need_p(VHOST_USER_PROTOCOL_F_STATUS, "STATUS"))
        return;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    if (!vc_ack_ok(&s, vc_msg_u64(&s, VHOST_USER_SET_STATUS, 0xf, NULL, 0), "SET_STATUS 0xf") ||
        !vc_get_u64(&s, VHOST_USER_GET_STATUS, &st) || st != 0xf)
        vc_fail("SET_STATUS 0xf then GET_STATUS answered 0x%llx%s", (unsigned long long)st, s.why);
    for (int i = 0; i < 3 && !vc_failed(); i++)
        vc_read_check(&s, 0, 0, 512, "request");
    if (vc_failed()) {
        vc_close(&s);
        return;
    }
    if (!vc_ack_ok(&s, vc_msg_u64(&s, VHOST_USER_SET_STATUS, 0, NULL, 0), "SET_STATUS 0") ||
        !vc_get_base(&s, 0, &num, d, sizeof d))
        vc_fail("SET_STATUS 0, GET_VRING_BASE: %s%s", s.why, d);
    else if (num != 3)
        vc_fail("GET_VRING_BASE after SET_STATUS 0 answered %u, not 3: the ring position was lost", num);
    else
        vc_pass("GET_STATUS read back 0xf; after SET_STATUS 0, GET_VRING_BASE still answers 3");
    vc_close(&s);
}

static void p_reset_owner(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    char d[200];
    enum vc_probe p = vc_probe_raw(&s, VHOST_USER_RESET_OWNER,
                                   VHOST_USER_VERSION | (s.reply_ack ? VC_NEED_REPLY : 0), NULL, 0, NULL, 0, d,
                                   sizeof d);
    if (!s.reply_ack && p == VC_PROBE_SILENT)
        p = VC_PROBE_ACCEPTED;
    if (p == VC_PROBE_HUNG || p == VC_PROBE_BAD)
        vc_fail("RESET_OWNER (deprecated): %s %s", vc_probe_name(p), d);
    else
        vc_pass("RESET_OWNER (deprecated: ignore or disable rings): %s", vc_probe_name(p));
    vc_close(&s);
}

/* ---- device configuration space -------------------------------------------- */

static bool vc_need_config(void)
{
    if (!vc_need_p(VHOST_USER_PROTOCOL_F_CONFIG, "CONFIG"))
        return false;
    if (vc.info.config_len == 0) {
        vc_fail("GET_CONFIG never answered with data at offset 0 (sizes 1..256 tried)");
        return false;
    }
    return true;
}

static bool vc_config_session(struct vc_sess *s)
{
    struct vc_setup o = vc_default_setup;
    o.mem = VC_MEM_NONE;
    if (vc_handshake(s, &o))
        return true;
    vc_fail("handshake: %s", s->why);
    vc_close(s);
    return false;
}

/* GET_CONFIG of [off, off+size): the reply, raw. */
static enum vc_rx vc_get_config(struct vc_sess *s, uint32_t off, uint32_t size, uint32_t claimed, struct vc_reply *r)
{
    struct vub_vu_config cf = {off, size, 0, {0}};
    uint32_t pl = 12 + (claimed < 256 ? claimed : 256);
    if (!vc_send(s, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &cf, pl, NULL, 0)) {
        s->closed = true;
        return VC_RX_CLOSED;
    }
    enum vc_rx rx = vc_recv(s->sock, r, VC_WAIT_MS);
    if (rx != VC_RX_OK)
        s->closed = true;
    return rx;
}

/* Do these config bytes differ from the first full read? writeback (32)
 * is writable and may have been changed by a front-end: not compared. */
static bool vc_config_differs(const uint8_t *got, uint32_t off, uint32_t size)
{
    for (uint32_t i = 0; i < size; i++)
        if (off + i != 32 && got[i] != vc.info.config[off + i])
            return true;
    return false;
}

/* Reads the whole config at offset 0 (as QEMU does) and returns byte `at`. */
static bool vc_config_byte(struct vc_sess *s, uint32_t at, uint8_t *v)
{
    struct vc_reply r;
    uint32_t len = vc.info.config_len;
    if (at >= len || vc_get_config(s, 0, len, len, &r) != VC_RX_OK || r.hdr.size != 12 + len)
        return false;
    *v = r.payload[12 + at];
    return true;
}

static void p_config_size(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_reply r;
    uint32_t size = (uint32_t)c->param;
    if (!vc_need_config() || !vc_config_session(&s))
        return;
    enum vc_rx rx = vc_get_config(&s, 0, size, size, &r);
    if (rx != VC_RX_OK)
        vc_fail("GET_CONFIG of %u bytes: %s", size, vc_rx_name(rx));
    else if (r.hdr.request != VHOST_USER_GET_CONFIG || r.hdr.flags != 0x5)
        vc_fail("reply request %u flags 0x%x", r.hdr.request, r.hdr.flags);
    else if (size > vc.info.config_len)
        vc_pass("a %u-byte GET_CONFIG beyond the %u-byte config answered %s", size, vc.info.config_len,
                r.hdr.size == 0 ? "with a zero-size reply" : "with data");
    else if (r.hdr.size != 12 + size)
        vc_fail("GET_CONFIG of %u bytes answered with a %u-byte payload (\"payload size MUST match the "
                "front-end's request\")", size, r.hdr.size);
    else if (vub_le32(r.payload) != 0 || vub_le32(r.payload + 4) != size)
        vc_fail("reply says offset %u size %u", vub_le32(r.payload), vub_le32(r.payload + 4));
    else if (vc_config_differs(r.payload + 12, 0, size)) {
        uint32_t at = 0;
        while (at < size && (at == 32 || r.payload[12 + at] == vc.info.config[at]))
            at++;
        vc_fail("the %u bytes differ from the same bytes of a %u-byte read (first at offset %u: 0x%02x, not 0x%02x)",
                size, vc.info.config_len, at, r.payload[12 + at], vc.info.config[at]);
    }
    else
        vc_pass("GET_CONFIG of %u bytes answered exactly 12 + %u bytes, consistent with the full read", size, size);
    vc_close(&s);
}

/* Every offset: [off, off+4) read alone equals the same bytes of the full read. */
static void p_config_offsets(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_reply r;
    if (!vc_need_config() || !vc_config_session(&s))
        return;
    uint32_t len = vc.info.config_len, bad = 0, first_bad = 0;
    for (uint32_t off = 1; off < len && !s.closed; off++) {
        uint32_t size = len - off < 4 ? len - off : 4;
        if (vc_get_config(&s, off, size, size, &r) != VC_RX_OK)
            break;
        if (r.hdr.size != 12 + size || vc_config_differs(r.payload + 12, off, size)) {
            if (!bad++)
                first_bad = off;
        }
    }
    if (s.closed)
        vc_fail("the connection closed during the offset sweep");
    else if (bad)
        vc_fail("%u of %u offsets answered other bytes than the config holds there (first: offset %u); the "
                "offset is into the device config space", bad, len - 1, first_bad);
    else
        vc_pass("GET_CONFIG at each offset 1..%u answers the bytes at that offset", len - 1);
    vc_close(&s);
}

/* Ranges outside the config space get a zero-size reply. */
static void p_config_outside(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_reply r;
    if (!vc_need_config() || !vc_config_session(&s))
        return;
    uint32_t len = vc.info.config_len, off = 0, size = 0;
    switch (c->param) {
    case 0: off = len; size = 1; break;                   /* just past the end */
    case 1: off = len - 1; size = 2; break;               /* straddles the end */
    case 2: off = 0xfffffffcu; size = 8; break;           /* offset + size wraps */
    case 3: off = 256; size = 4; break;                   /* past the largest config space */
    }
    enum vc_rx rx = vc_get_config(&s, off, size, size, &r);
    if (rx == VC_RX_CLOSED || rx == VC_RX_SHORT)
        vc_pass("GET_CONFIG [%u, +%u) closed the connection", off, size);
    else if (rx != VC_RX_OK)
        vc_fail("GET_CONFIG [%u, +%u): %s", off, size, vc_rx_name(rx));
    else if (r.hdr.size == 0)
        vc_pass("GET_CONFIG [%u, +%u) beyond the %u-byte config got a zero-size reply", off, size, len);
    else
        vc_fail("GET_CONFIG [%u, +%u) beyond the %u-byte config answered %u bytes of data (errors are a zero-size "
                "reply)", off, size, len, r.hdr.size);
    vc_close(&s);
}

/* virtio-blk config content rules. */
static void p_config_content(const struct vc_case *c)
{
    const uint8_t *cf = vc.info.config;
    uint32_t len = vc.info.config_len;
    if (!vc_need_config())
        return;
    switch (c->param) {
    case 0: /* padding */
        if (len < 60) {
            vc_na("config is %u bytes, padding at 57..59 not present", len);
            return;
        }
        if (cf[33] || cf[57] || cf[58] || cf[59])
            vc_fail("padding bytes unused0 (33) = %u, unused1 (57..59) = %u %u %u (\"MUST initialize padding bytes "
                    "... to 0\")", cf[33], cf[57], cf[58], cf[59]);
        else
            vc_pass("unused0 and unused1 are zero");
        return;
    case 1: /* capacity */
        if (vc.info.capacity == 0)
            vc_fail("capacity is 0");
        else
            vc_pass("capacity %llu sectors", (unsigned long long)vc.info.capacity);
        return;
    case 2: /* blk_size */
        if (!vc_need(VIRTIO_BLK_F_BLK_SIZE, "BLK_SIZE"))
            return;
        {
            uint32_t b = len >= 24 ? vub_le32(cf + 20) : 0;
            if (b < 512 || (b & (b - 1)))
                vc_warn("blk_size %u is not a power of two of at least 512", b);
            else
                vc_pass("blk_size %u", b);
        }
        return;
    case 3: /* discard / write-zeroes limits */
        if (!vc_offers(VIRTIO_BLK_F_DISCARD) && !vc_offers(VIRTIO_BLK_F_WRITE_ZEROES)) {
            vc_na("neither DISCARD nor WRITE_ZEROES offered");
            return;
        }
        if (vc_offers(VIRTIO_BLK_F_DISCARD) && (len < 48 || !vub_le32(cf + 36) || !vub_le32(cf + 40)))
            vc_warn("DISCARD offered with max_discard_sectors or max_discard_seg 0 (a driver can send no discard)");
        if (vc_offers(VIRTIO_BLK_F_WRITE_ZEROES) && (len < 56 || !vub_le32(cf + 48) || !vub_le32(cf + 52)))
            vc_warn("WRITE_ZEROES offered with max_write_zeroes_sectors or _seg 0");
        if (vc.verdict == VC_PASS)
            vc_pass("discard/write-zeroes limits are non-zero");
        return;
    case 4: /* num_queues vs GET_QUEUE_NUM */
        if (!vc_need(VIRTIO_BLK_F_MQ, "VIRTIO_BLK_F_MQ") || len < 36)
            return;
        if (vub_le16(cf + 34) == 0)
            vc_fail("MQ offered with num_queues 0");
        else if (vc.info.queue_num_known && vub_le16(cf + 34) > vc.info.queues)
            vc_fail("num_queues %u exceeds GET_QUEUE_NUM %u", vub_le16(cf + 34), vc.info.queues);
        else
            vc_pass("num_queues %u (GET_QUEUE_NUM %u)", vub_le16(cf + 34), vc.info.queues);
        return;
    }
}

/* FLUSH offered (SHOULD), and MUST be if CONFIG_WCE is. */
static void p_flush_offer(const struct vc_case *c)
{
    (void)c;
    if (vc_offers(VIRTIO_BLK_F_CONFIG_WCE) && !vc_offers(VIRTIO_BLK_F_FLUSH))
        vc_fail("CONFIG_WCE offered without FLUSH (\"MUST offer it if they offer VIRTIO_BLK_F_CONFIG_WCE\")");
    else if (!vc_offers(VIRTIO_BLK_F_FLUSH))
        vc_warn("FLUSH not offered (\"Devices SHOULD always offer VIRTIO_BLK_F_FLUSH\")");
    else
        vc_pass("FLUSH offered%s", vc_offers(VIRTIO_BLK_F_CONFIG_WCE) ? " (with CONFIG_WCE)" : "");
}

/* CONFIG_WCE without FLUSH: writeback starts at 0. */
static void p_wce_no_flush(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_reply r;
    if (!vc_need_config() || !vc_need(VIRTIO_BLK_F_CONFIG_WCE, "CONFIG_WCE"))
        return;
    if (vc.info.config_len < 33) {
        vc_na("config too short for writeback");
        return;
    }
    struct vc_setup o = vc_default_setup;
    o.wce = true;
    o.no_flush = true;
    o.mem = VC_MEM_NONE;
    if (!vc_handshake(&s, &o)) {
        vc_fail("handshake: %s", s.why);
        vc_close(&s);
        return;
    }
    uint8_t wb = 0;
    (void)r;
    if (!vc_config_byte(&s, 32, &wb))
        vc_fail("GET_CONFIG of the whole config: no proper reply");
    else if (wb != 0)
        vc_fail("writeback is %u with CONFIG_WCE negotiated and FLUSH not (\"the device MUST initialize writeback "
                "to 0\")", wb);
    else
        vc_pass("writeback is 0 with CONFIG_WCE and without FLUSH");
    vc_close(&s);
}

/* SET_CONFIG of a read-only field: MUST NOT be accepted (flags 0). */
static void p_config_set_ro(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_reply r;
    static const struct { uint32_t off, size; const char *name; } fields[] = {
        {0, 8, "capacity"}, {12, 4, "seg_max"}, {20, 4, "blk_size"}, {34, 2, "num_queues"},
        {36, 4, "max_discard_sectors"},
    };
    unsigned k = (unsigned)c->param;
    if (!vc_need_config() || !vc_config_session(&s))
        return;
    uint32_t off = fields[k].off, size = fields[k].size;
    if (off + size > vc.info.config_len) {
        vc_na("config is %u bytes", vc.info.config_len);
        vc_close(&s);
        return;
    }
    struct vub_vu_config cf = {off, size, 0, {0}};
    memcpy(cf.data, vc.info.config + off, size);
    cf.data[0] ^= 0x5a;
    char d[200];
    enum vc_probe p = vc_probe_raw(&s, VHOST_USER_SET_CONFIG,
                                   VHOST_USER_VERSION | (s.reply_ack ? VC_NEED_REPLY : 0), &cf, 12 + size, NULL, 0,
                                   d, sizeof d);
    if (!s.reply_ack && p == VC_PROBE_SILENT)
        p = VC_PROBE_ACCEPTED; /* no ack possible: judge by the content */
    bool changed = false;
    (void)r;
    if (p == VC_PROBE_ACCEPTED && vc_after(&s) == VC_AFTER_CLOSED)
        p = VC_PROBE_BAD; /* acked 0, then hung up */
    if (!s.closed && s.sock >= 0) {
        for (uint32_t i = 0; i < size; i++) {
            uint8_t v;
            if (vc_config_byte(&s, off + i, &v) && v != vc.info.config[off + i])
                changed = true;
        }
    }
    if (changed)
        vc_fail("SET_CONFIG changed read-only %s (\"MUST NOT accept SET_CONFIG for read-only configuration space "
                "fields unless the live migration bit is set\")", fields[k].name);
    else if (p == VC_PROBE_ACCEPTED && s.reply_ack)
        vc_fail("SET_CONFIG of read-only %s was acked with 0 (accepted)", fields[k].name);
    else if (p == VC_PROBE_BAD && !d[0])
        vc_warn("SET_CONFIG of read-only %s was acked with 0 (success), then the back-end closed the connection: "
                "refused, but reported as accepted", fields[k].name);
    else if (p == VC_PROBE_HUNG || p == VC_PROBE_BAD)
        vc_fail("SET_CONFIG of read-only %s: %s %s", fields[k].name, vc_probe_name(p), d);
    else
        vc_pass("SET_CONFIG of read-only %s: %s; value unchanged", fields[k].name, vc_probe_name(p));
    vc_close(&s);
}

/* SET_CONFIG of writeback with CONFIG_WCE: the guest's cache switch. */
static void p_config_set_writeback(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_reply r;
    if (!vc_need_config() || !vc_need(VIRTIO_BLK_F_CONFIG_WCE, "CONFIG_WCE"))
        return;
    struct vc_setup o = vc_default_setup;
    o.wce = true;
    o.mem = VC_MEM_NONE;
    if (!vc_handshake(&s, &o)) {
        vc_fail("handshake: %s", s.why);
        vc_close(&s);
        return;
    }
    uint8_t want = 1, now = 0;
    (void)r;
    if (vc_config_byte(&s, 32, &now))
        want = now ? 0 : 1;
    struct vub_vu_config cf = {32, 1, 0, {want}};
    enum vc_ack a = vc_msg(&s, VHOST_USER_SET_CONFIG, &cf, 13, NULL, 0);
    if (a != VC_ACK_OK) {
        vc_warn("SET_CONFIG writeback=%u (CONFIG_WCE negotiated): %s", want, vc_ack_name(a));
    } else if (!vc_config_byte(&s, 32, &now)) {
        vc_fail("GET_CONFIG after SET_CONFIG: no proper reply");
    } else if (now != want) {
        vc_warn("writeback reads %u after SET_CONFIG of %u", now, want);
    } else {
        vc_pass("SET_CONFIG writeback=%u took effect", want);
        cf.data[0] = (uint8_t)!want; /* put it back */
        vc_msg(&s, VHOST_USER_SET_CONFIG, &cf, 13, NULL, 0);
    }
    vc_close(&s);
}

#define P(name, tag, fn, param, sent) {"protocol", name, tag, sent, fn, param, false}
#define PH(name, tag, fn, param, sent) {"protocol", name, tag, sent, fn, param, true}

static const struct vc_case vc_cases_protocol[] = {
    P("proto.reply.get-features", "VU-REPLY-FLAGS", p_reply_shape, VHOST_USER_GET_FEATURES,
      "GET_FEATURES is answered with its request id, flags 0x5 and an 8-byte u64"),
    P("proto.reply.get-protocol-features", "VU-REPLY-FLAGS", p_reply_shape, VHOST_USER_GET_PROTOCOL_FEATURES,
      "GET_PROTOCOL_FEATURES is answered with its request id, flags 0x5 and 8 bytes"),
    P("proto.reply.get-queue-num", "VU-REPLY-FLAGS", p_reply_shape, VHOST_USER_GET_QUEUE_NUM,
      "GET_QUEUE_NUM is answered with flags 0x5, 8 bytes, at least one queue"),
    P("proto.reply.get-vring-base", "VU-REPLY-FLAGS", p_reply_vring_base, 0,
      "GET_VRING_BASE is answered with flags 0x5, 8 bytes and the queue's index"),
    P("proto.features.version-1", "VU-FEATURES", p_features_version1, 0,
      "the back-end offers VIRTIO_F_VERSION_1"),
    P("proto.features.stable", "VU-FEATURES", p_features_stable, 0,
      "GET_FEATURES answers the same offer on every connection and while running"),
    P("proto.features.subset", "VU-SET-FEATURES", p_features_subset, 0,
      "a front-end acking a minimal subset of the offer is served"),
    P("proto.features.unoffered-virtio", "VU-SET-FEATURES", p_features_unoffered, 0,
      "SET_FEATURES with a bit that was not offered is refused"),
    P("proto.features.unoffered-protocol", "VU-PROTOCOL-OFFER", p_features_unoffered, 1,
      "SET_PROTOCOL_FEATURES with a bit that was not offered is refused"),
    P("proto.features.protocol-first", "VU-PROTOCOL-EARLY", p_protocol_first, 0,
      "GET/SET_PROTOCOL_FEATURES work as the first messages, before SET_FEATURES"),
    P("proto.need-reply.set-owner", "VU-NEED-REPLY", p_need_reply, NR_SET_OWNER,
      "SET_OWNER with NEED_REPLY is acked with 0"),
    P("proto.need-reply.set-features", "VU-NEED-REPLY", p_need_reply, NR_SET_FEATURES,
      "SET_FEATURES (re-sent while running) with NEED_REPLY is acked with 0"),
    P("proto.need-reply.set-protocol-features", "VU-NEED-REPLY", p_need_reply, NR_SET_PROTOCOL_FEATURES,
      "SET_PROTOCOL_FEATURES (re-sent) with NEED_REPLY is acked with 0"),
    P("proto.need-reply.set-mem-table", "VU-NEED-REPLY", p_need_reply, NR_SET_MEM_TABLE,
      "SET_MEM_TABLE with NEED_REPLY is acked with 0"),
    P("proto.need-reply.set-vring-num", "VU-NEED-REPLY", p_need_reply, NR_SET_VRING_NUM,
      "SET_VRING_NUM with NEED_REPLY is acked with 0"),
    P("proto.need-reply.set-vring-base", "VU-NEED-REPLY", p_need_reply, NR_SET_VRING_BASE,
      "SET_VRING_BASE with NEED_REPLY is acked with 0"),
    P("proto.need-reply.set-vring-addr", "VU-NEED-REPLY", p_need_reply, NR_SET_VRING_ADDR,
      "SET_VRING_ADDR with NEED_REPLY is acked with 0"),
    P("proto.need-reply.set-vring-call", "VU-NEED-REPLY", p_need_reply, NR_SET_VRING_CALL,
      "SET_VRING_CALL with NEED_REPLY is acked with 0"),
    P("proto.need-reply.set-vring-err", "VU-NEED-REPLY", p_need_reply, NR_SET_VRING_ERR,
      "SET_VRING_ERR with NEED_REPLY is acked with 0"),
    P("proto.need-reply.set-vring-kick", "VU-NEED-REPLY", p_need_reply, NR_SET_VRING_KICK,
      "SET_VRING_KICK with NEED_REPLY is acked with 0"),
    P("proto.need-reply.enable-1", "VU-NEED-REPLY", p_need_reply, NR_ENABLE_1,
      "SET_VRING_ENABLE(1) with NEED_REPLY is acked with 0"),
    P("proto.need-reply.enable-0", "VU-NEED-REPLY", p_need_reply, NR_ENABLE_0,
      "SET_VRING_ENABLE(0) with NEED_REPLY is acked with 0"),
    P("proto.need-reply.reset-device", "VU-NEED-REPLY", p_need_reply, NR_RESET_DEVICE,
      "RESET_DEVICE with NEED_REPLY is acked with 0"),
    P("proto.need-reply.add-mem-reg", "VU-NEED-REPLY", p_need_reply, NR_ADD_MEM_REG,
      "ADD_MEM_REG with NEED_REPLY is acked with 0"),
    P("proto.need-reply.rem-mem-reg", "VU-NEED-REPLY", p_need_reply, NR_REM_MEM_REG,
      "REM_MEM_REG with NEED_REPLY is acked with 0"),
    P("proto.need-reply.set-config", "VU-NEED-REPLY", p_need_reply, NR_SET_CONFIG,
      "SET_CONFIG of writeback with NEED_REPLY is acked with 0"),
    P("proto.need-reply.own-reply-get-features", "VU-NEED-REPLY", p_need_reply_own, VHOST_USER_GET_FEATURES,
      "GET_FEATURES with NEED_REPLY gets its own reply and no extra ack"),
    P("proto.need-reply.own-reply-get-vring-base", "VU-NEED-REPLY", p_need_reply_own, VHOST_USER_GET_VRING_BASE,
      "GET_VRING_BASE with NEED_REPLY gets its own reply and no extra ack"),
    P("proto.need-reply.before-reply-ack", "VU-NEED-REPLY", p_need_reply_early, 0,
      "NEED_REPLY before REPLY_ACK is negotiated keeps the stream in step (answered or not)"),
    P("proto.session.no-reply-ack", "VU-ORDER", p_session_variant, 0,
      "without REPLY_ACK, messages are applied in order (GET_FEATURES as a barrier)"),
    P("proto.session.no-protocol-features", "VU-RING-ENABLED", p_session_variant, 1,
      "without PROTOCOL_FEATURES the ring starts enabled and serves I/O"),
    P("proto.mem.two-regions", "MEM-STRADDLE", p_session_variant, 2,
      "buffers spanning two regions (second at mmap_offset 16 MiB) are served"),
    P("proto.mem.eight-regions", "MEM-STRADDLE", p_session_variant, 3,
      "a table of eight regions is accepted and buffers across every boundary are served"),
    P("proto.mem.add-mem-reg-session", "VU-MEM-SLOTS", p_session_variant, 4,
      "a table built with ADD_MEM_REG serves buffers across its regions"),
    P("proto.mem.rings-mmap-offset", "MEM-XLATE", p_rings_high, 0,
      "rings in a region with a non-zero mmap_offset are found by user address"),
    P("proto.mem.table-again", "MEM-REMAP", p_mem_replace, 0,
      "SET_MEM_TABLE sent again while running keeps the rings working"),
    P("proto.mem.add-rem", "VU-MEM-SLOTS", p_mem_add_rem, 0,
      "GET_MAX_MEM_SLOTS, REM_MEM_REG and ADD_MEM_REG keep the table usable"),
    P("proto.mem.rem-closes-fd", "MEM-REM", p_mem_rem_closes_fd, 0,
      "an fd sent with REM_MEM_REG is closed unused"),
    P("proto.ring.enable-sequence", "VU-VRING-ENABLE", p_ring_enable_sequence, 0,
      "QEMU's stop: enable and disable every queue (one never set up), GET_VRING_BASE of the disabled ring"),
    P("proto.ring.base-value", "VU-GET-VRING-BASE", p_ring_base_value, 0,
      "GET_VRING_BASE answers the next available index and does not reset it"),
    P("proto.ring.stopped-not-processed", "VU-RING-STOPPED", p_ring_stopped, 0,
      "a stopped ring is not processed; SET_VRING_BASE and a kick resume it"),
    P("proto.ring.resume-outstanding", "VU-VRING-BASE", p_ring_stopped, 1,
      "requests made available while stopped complete after the ring is resumed"),
    P("proto.ring.wrap-base", "VU-VRING-BASE", p_ring_wrap_base, 0,
      "a ring started at base 65530 wraps its 16-bit indexes"),
    P("proto.ring.drain-before-base", "VU-GET-VRING-BASE", p_ring_drain, 0,
      "GET_VRING_BASE answers only after the requests it counts are completed"),
    P("proto.ring.kick-starts", "VU-VRING-KICK", p_ring_kick_starts, 0,
      "requests made available before SET_VRING_KICK are served after it"),
    P("proto.ring.enable-serves-pending", "VU-VRING-ENABLE", p_ring_kick_starts, 1,
      "requests made available before SET_VRING_ENABLE(1) are served after it"),
    P("proto.ring.starts-disabled", "VU-VRING-ENABLE", p_ring_disabled, 0,
      "with PROTOCOL_FEATURES a ring starts disabled: a write has no effect until enabled"),
    P("proto.ring.disable-no-side-effects", "VU-VRING-ENABLE", p_ring_disabled, 1,
      "after SET_VRING_ENABLE(0) a write has no effect"),
    P("proto.ring.call-replaced", "VU-VRING-FD", p_ring_call_replaced, 0,
      "a new SET_VRING_CALL fd replaces the old one"),
    P("proto.ring.kick-nofd", "VU-VRING-KICK", p_ring_kick_nofd, 0,
      "SET_VRING_KICK with NOFD makes the back-end poll the ring"),
    P("proto.ring.call-nofd", "VU-VRING-FD", p_ring_call_nofd, 0,
      "SET_VRING_CALL with NOFD is accepted and requests still complete"),
    P("proto.mq.queue-0", "VU-MQ", p_mq_queue, 0, "queue 0 alone serves I/O"),
    P("proto.mq.queue-1", "VU-MQ", p_mq_queue, 1, "queue 1 alone (queue 0 never configured) serves I/O"),
    P("proto.mq.queue-2", "VU-MQ", p_mq_queue, 2, "queue 2 alone serves I/O"),
    P("proto.mq.queue-3", "VU-MQ", p_mq_queue, 3, "queue 3 alone serves I/O"),
    P("proto.mq.all-queues", "VU-MQ", p_mq_all, 0,
      "every queue serves a batch at once; one stopped queue does not stop the others"),
    P("proto.reset.device", "VU-RESET", p_reset_device, 0,
      "RESET_DEVICE stops every ring and the connection can be set up again"),
    P("proto.reset.keeps-memory", "VU-RESET-KEEP", p_reset_keeps_mem, 0,
      "after RESET_DEVICE the rings are set up again without a new memory table, as QEMU 10 does"),
    P("proto.status.zero-keeps-base", "VU-STATUS", p_status_zero_base, 0,
      "GET_STATUS reads back SET_STATUS; status 0 before GET_VRING_BASE (QEMU 7.2) keeps the ring position"),
    PH("proto.reset.owner", "VU-RESET", p_reset_owner, 0,
       "the deprecated RESET_OWNER is ignored or disables the rings, without harm"),
    P("proto.config.size-1", "VU-CONFIG-SIZE", p_config_size, 1, "GET_CONFIG of 1 byte answers exactly 13 bytes"),
    P("proto.config.size-8", "VU-CONFIG-SIZE", p_config_size, 8, "GET_CONFIG of 8 bytes (capacity) answers 20 bytes"),
    P("proto.config.size-12", "VU-CONFIG-SIZE", p_config_size, 12, "GET_CONFIG of 12 bytes answers 24 bytes"),
    P("proto.config.size-36", "VU-CONFIG-SIZE", p_config_size, 36, "GET_CONFIG of 36 bytes (QEMU base) answers 48 bytes"),
    P("proto.config.size-48", "VU-CONFIG-SIZE", p_config_size, 48, "GET_CONFIG of 48 bytes (QEMU +discard) answers 60 bytes"),
    P("proto.config.size-57", "VU-CONFIG-SIZE", p_config_size, 57, "GET_CONFIG of 57 bytes (QEMU default) answers 69 bytes"),
    P("proto.config.size-60", "VU-CONFIG-SIZE", p_config_size, 60, "GET_CONFIG of 60 bytes answers 72 bytes"),
    P("proto.config.size-96", "VU-CONFIG-SIZE", p_config_size, 96, "GET_CONFIG of 96 bytes (with zoned) answers 108 bytes"),
    P("proto.config.offsets", "VU-CONFIG-RANGE", p_config_offsets, 0,
      "GET_CONFIG at every offset answers the bytes at that offset of the device config"),
    P("proto.config.past-end", "VU-CONFIG-RANGE", p_config_outside, 0,
      "GET_CONFIG just past the config space gets a zero-size reply"),
    P("proto.config.straddles-end", "VU-CONFIG-RANGE", p_config_outside, 1,
      "GET_CONFIG straddling the end of the config space gets a zero-size reply"),
    P("proto.config.offset-wraps", "VU-CONFIG-RANGE", p_config_outside, 2,
      "GET_CONFIG whose offset + size wraps 32 bits gets a zero-size reply"),
    P("proto.config.offset-256", "VU-CONFIG-RANGE", p_config_outside, 3,
      "GET_CONFIG at offset 256 gets a zero-size reply"),
    P("proto.config.padding", "BLK-CONFIG-PAD", p_config_content, 0, "config padding bytes read as zero"),
    P("proto.config.capacity", "BLK-CONFIG", p_config_content, 1, "capacity is non-zero"),
    P("proto.config.blk-size", "BLK-CONFIG", p_config_content, 2, "blk_size is a power of two of at least 512"),
    P("proto.config.limits", "BLK-LIMITS-NONZERO", p_config_content, 3,
      "discard and write-zeroes limits are non-zero when offered"),
    P("proto.config.num-queues", "BLK-CONFIG", p_config_content, 4,
      "num_queues is non-zero and within GET_QUEUE_NUM"),
    P("proto.config.flush-offered", "BLK-FLUSH-OFFER", p_flush_offer, 0,
      "FLUSH is offered (SHOULD), and always with CONFIG_WCE (MUST)"),
    P("proto.config.wce-without-flush", "BLK-WCE-INIT", p_wce_no_flush, 0,
      "with CONFIG_WCE but not FLUSH negotiated, writeback reads 0"),
    P("proto.config.set-capacity", "VU-CONFIG-WRITE", p_config_set_ro, 0,
      "SET_CONFIG of read-only capacity is not accepted"),
    P("proto.config.set-seg-max", "VU-CONFIG-WRITE", p_config_set_ro, 1,
      "SET_CONFIG of read-only seg_max is not accepted"),
    P("proto.config.set-blk-size", "VU-CONFIG-WRITE", p_config_set_ro, 2,
      "SET_CONFIG of read-only blk_size is not accepted"),
    P("proto.config.set-num-queues", "VU-CONFIG-WRITE", p_config_set_ro, 3,
      "SET_CONFIG of read-only num_queues is not accepted"),
    P("proto.config.set-max-discard", "VU-CONFIG-WRITE", p_config_set_ro, 4,
      "SET_CONFIG of read-only max_discard_sectors is not accepted"),
    P("proto.config.set-writeback", "VU-CONFIG-WRITE", p_config_set_writeback, 0,
      "SET_CONFIG of writeback (CONFIG_WCE) takes effect"),
};
static const size_t vc_cases_protocol_count = VUB_ARRAY_LEN(vc_cases_protocol);
