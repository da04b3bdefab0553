/* cases-robust.c: malformed messages and hostile rings (included by
 * vub-conform.c).
 *
 * The spec rarely says what a back-end must do with input that breaks the
 * rules; it does say the back-end "may close the connection" on errors. So
 * each case accepts every reasonable outcome - an error ack, a closed
 * connection, an error status, the request ignored - and fails only a crash,
 * a hang, lost or corrupted data, or a back-end that no longer accepts a new
 * session. All cases here are "hostile": afterwards the runner connects
 * again, sets a session up and reads the whole shadowed disk back.
 */

/* ---- messages ---------------------------------------------------------------- */

struct vc_bad_msg {
    uint32_t req;
    uint32_t size;      /* the size the header claims and we send */
    unsigned fds;       /* how many fds ride along (eventfds) */
    uint32_t flags;     /* header flags (0: version 1 + NEED_REPLY) */
    uint8_t fill;       /* payload byte */
    int setup;          /* 0: after negotiation; 1: running session */
};

static void r_msg(const struct vc_case *c);

static const struct vc_bad_msg vc_bad_msgs[] = {
    /* 0..14: short payloads, one per request that takes one */
    {VHOST_USER_SET_FEATURES, 4, 0, 0, 0, 0},
    {VHOST_USER_SET_PROTOCOL_FEATURES, 4, 0, 0, 0, 0},
    {VHOST_USER_SET_MEM_TABLE, 36, 1, 0, 0, 0},
    {VHOST_USER_SET_VRING_NUM, 4, 0, 0, 0, 0},
    {VHOST_USER_SET_VRING_ADDR, 32, 0, 0, 0, 0},
    {VHOST_USER_SET_VRING_BASE, 4, 0, 0, 0, 0},
    {VHOST_USER_GET_VRING_BASE, 4, 0, 0, 0, 1},
    {VHOST_USER_SET_VRING_KICK, 4, 1, 0, 0, 0},
    {VHOST_USER_SET_VRING_CALL, 4, 1, 0, 0, 0},
    {VHOST_USER_SET_VRING_ERR, 4, 1, 0, 0, 0},
    {VHOST_USER_SET_VRING_ENABLE, 4, 0, 0, 0, 0},
    {VHOST_USER_GET_CONFIG, 8, 0, 0, 0, 0},
    {VHOST_USER_SET_CONFIG, 8, 0, 0, 0, 0},
    {VHOST_USER_ADD_MEM_REG, 32, 1, 0, 0, 0},
    {VHOST_USER_REM_MEM_REG, 32, 0, 0, 0, 0},
    /* 15..17: empty payloads */
    {VHOST_USER_SET_FEATURES, 0, 0, 0, 0, 0},
    {VHOST_USER_SET_VRING_NUM, 0, 0, 0, 0, 0},
    {VHOST_USER_SET_MEM_TABLE, 0, 1, 0, 0, 0},
    /* 18..21: long payloads */
    {VHOST_USER_SET_FEATURES, 16, 0, 0, 0, 0},
    {VHOST_USER_SET_VRING_NUM, 16, 0, 0, 0, 0},
    {VHOST_USER_SET_VRING_ADDR, 48, 0, 0, 0, 0},
    {VHOST_USER_GET_FEATURES, 8, 0, 0, 0, 0},
    /* 22..24: versions 0, 2, 3 (GET_FEATURES) */
    {VHOST_USER_GET_FEATURES, 0, 0, 0x0 | VC_NEED_REPLY, 0, 0},
    {VHOST_USER_GET_FEATURES, 0, 0, 0x2 | VC_NEED_REPLY, 0, 0},
    {VHOST_USER_GET_FEATURES, 0, 0, 0x3 | VC_NEED_REPLY, 0, 0},
    /* 25..27: stray flag bits */
    {VHOST_USER_GET_FEATURES, 0, 0, 0x1 | (1u << 4), 0, 0},
    {VHOST_USER_GET_FEATURES, 0, 0, 0x1 | (1u << 31), 0, 0},
    {VHOST_USER_GET_FEATURES, 0, 0, 0x1 | VHOST_USER_REPLY_MASK, 0, 0},
    /* 28..32: unknown requests */
    {VHOST_USER_NONE, 0, 0, 0, 0, 0},
    {41, 0, 0, 0, 0, 0},
    {99, 8, 0, 0, 0, 0},
    {1000, 0, 0, 0, 0, 0},
    {0xffffffffu, 0, 0, 0, 0, 0},
    /* 33..35: fd counts */
    {VHOST_USER_GET_FEATURES, 0, 1, 0, 0, 0},            /* an fd where none belongs */
    {VHOST_USER_SET_VRING_CALL, 8, 0, 0, 0, 0},          /* NOFD clear, no fd */
    {VHOST_USER_SET_VRING_CALL, 8, 2, 0, 0, 0},          /* two fds */
    /* 36..37 */
    {VHOST_USER_SET_VRING_KICK, 8, 1, 0, 1, 0},          /* NOFD set (fill 1 -> payload 0x100), plus an fd */
    {VHOST_USER_SET_VRING_CALL, 8, 9, 0, 0, 0},          /* nine fds */
    /* 38..49: requests the back-end did not offer or we did not negotiate */
    {VHOST_USER_SET_LOG_BASE, 16, 1, 0, 0, 1},
    {VHOST_USER_SET_LOG_FD, 0, 1, 0, 0, 1},
    {VHOST_USER_SEND_RARP, 8, 0, 0, 0, 1},
    {VHOST_USER_NET_SET_MTU, 8, 0, 0, 0, 1},
    {VHOST_USER_SET_BACKEND_REQ_FD, 0, 1, 0, 0, 1},
    {VHOST_USER_IOTLB_MSG, 32, 0, 0, 0, 1},
    {VHOST_USER_SET_VRING_ENDIAN, 8, 0, 0, 0, 1},
    {VHOST_USER_GET_INFLIGHT_FD, 24, 0, 0, 0, 1},
    {VHOST_USER_VRING_KICK, 8, 0, 0, 0, 1},
    {VHOST_USER_SET_STATUS, 8, 0, 0, 0, 1},
    {VHOST_USER_GET_STATUS, 0, 0, 0, 0, 1},
    {VHOST_USER_CREATE_CRYPTO_SESSION, 16, 0, 0, 0, 1},
};

/* Is this 8-byte reply an error ack rather than the request's own answer?
 * GET_FEATURES answers the offer; GET_VRING_BASE echoes queue 0; a
 * GET_CONFIG answer is 12 + size bytes. */
static bool vc_reply_is_ack(uint32_t req, const struct vc_reply *r)
{
    if (r->hdr.size != 8)
        return false;
    if (req == VHOST_USER_GET_FEATURES)
        return vc_u64_of(r) != vc.info.features;
    if (req == VHOST_USER_GET_VRING_BASE)
        return vub_le32(r->payload) != 0;
    return req == VHOST_USER_GET_CONFIG;
}

/* Sends one malformed message and judges what the back-end does with it. */
static void r_msg(const struct vc_case *c)
{
    const struct vc_bad_msg *b = &vc_bad_msgs[c->param];
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    if (b->setup == 0) {
        o.mem = VC_MEM_NONE;
        if (!vc_handshake(&s, &o)) {
            vc_fail("handshake: %s", s.why);
            vc_close(&s);
            return;
        }
    } else if (!vc_open_or_fail(&s, &o)) {
        return;
    }
    uint8_t payload[64];
    memset(payload, b->fill, sizeof payload);
    if (b->req == VHOST_USER_SET_VRING_KICK && b->fill == 1)
        memset(payload, 0, sizeof payload), payload[1] = 1; /* 0x100: NOFD */
    if (b->req == VHOST_USER_SET_LOG_BASE)
        vub_put_le64(payload, 4096);
    int fds[9];
    unsigned nfds = b->fds;
    for (unsigned i = 0; i < nfds; i++)
        fds[i] = eventfd(0, EFD_CLOEXEC);
    uint32_t flags = b->flags ? b->flags : VHOST_USER_VERSION | VC_NEED_REPLY;
    bool has_own_reply = b->req == VHOST_USER_GET_FEATURES || b->req == VHOST_USER_GET_VRING_BASE ||
                         b->req == VHOST_USER_GET_CONFIG || b->req == VHOST_USER_GET_INFLIGHT_FD ||
                         b->req == VHOST_USER_GET_STATUS || b->req == VHOST_USER_IOTLB_MSG ||
                         b->req == VHOST_USER_CREATE_CRYPTO_SESSION;
    bool sent = vc_send(&s, b->req, flags, payload, b->size, fds, nfds);
    for (unsigned i = 0; i < nfds; i++)
        close(fds[i]);
    struct vc_reply r;
    enum vc_rx rx = sent ? vc_recv(s.sock, &r, VC_WAIT_MS) : VC_RX_CLOSED;
    char what[96];
    snprintf(what, sizeof what, "%s (flags 0x%x, %u bytes, %u fds)", vub_vu_request_name(b->req), flags, b->size, nfds);
    const char *outcome;
    enum vc_verdict v = VC_PASS;
    char extra[160] = "";
    bool version_bad = (flags & 3u) != 1u;
    if (rx == VC_RX_CLOSED || rx == VC_RX_SHORT) {
        outcome = "closed the connection";
    } else if (rx == VC_RX_TIMEOUT) {
        enum vc_after af = vc_after(&s);
        if (af == VC_AFTER_HUNG) {
            outcome = "stopped answering";
            v = VC_FAIL;
        } else if (af == VC_AFTER_CLOSED) {
            outcome = "closed the connection";
        } else {
            outcome = "ignored it (no reply) and kept answering";
        }
    } else if (r.hdr.request != b->req || (r.hdr.flags & 7u) != 0x5) {
        outcome = "sent an unexpected reply";
        snprintf(extra, sizeof extra, " (request %u, flags 0x%x, size %u)", r.hdr.request, r.hdr.flags, r.hdr.size);
        v = VC_FAIL;
    } else if (has_own_reply && !vc_reply_is_ack(b->req, &r)) {
        outcome = r.hdr.size == 0 ? "answered with an empty reply" : "answered it as a valid request";
        if (version_bad || (b->req == VHOST_USER_GET_FEATURES && b->size))
            v = VC_WARN;
    } else if (r.hdr.size == 8 && vc_u64_of(&r) != 0) {
        outcome = "refused it with a non-zero ack";
    } else if (r.hdr.size == 8) {
        outcome = "accepted it (ack 0)";
        v = VC_WARN;
    } else {
        outcome = "sent a malformed ack";
        snprintf(extra, sizeof extra, " (size %u)", r.hdr.size);
        v = VC_FAIL;
    }
    if (rx == VC_RX_OK && v != VC_FAIL && r.hdr.flags != 0x5 && (r.hdr.flags & 7u) == 0x5) {
        snprintf(extra, sizeof extra, "; its reply has flags 0x%x, echoing request bits (QEMU accepts only 0x5)",
                 r.hdr.flags);
        v = VC_WARN;
    } else if (rx == VC_RX_OK && v == VC_WARN && r.hdr.size == 8 && vc_u64_of(&r) == 0 && vc_after(&s) == VC_AFTER_CLOSED) {
        snprintf(extra, sizeof extra, ", then closed the connection: refused, but reported as success");
    }
    /* requests that are merely not negotiated, and flag bits the spec does not define: any answer is fine */
    if (c->param >= 38 && v == VC_WARN && r.hdr.flags == 0x5)
        v = VC_PASS;
    /* [VU-HDR-FLAGS] bit 2 is the back-end's REPLY flag and no bit above 3
     * is defined: a request carrying one is malformed, so serving it as
     * valid is a warning (refusing or closing passes). */
    if (c->param >= 25 && c->param <= 27 && v == VC_PASS && rx == VC_RX_OK && !vc_reply_is_ack(b->req, &r)) {
        v = VC_WARN;
        snprintf(extra, sizeof extra, " (%s; expected an error or a closed connection)",
                 c->param == 27 ? "the REPLY bit is the back-end's to send" : "no flag bit above 3 is defined");
    }
    if (v == VC_FAIL)
        vc_fail("%s: the back-end %s%s", what, outcome, extra);
    else if (v == VC_WARN)
        vc_warn("%s: the back-end %s%s%s", what, outcome, extra,
                version_bad ? " (flags bits 0-1 are the version, \"currently 0x01\")" : "");
    else
        vc_pass("%s: the back-end %s%s", what, outcome, extra);
    vc_close(&s);
}

/* A header that claims a huge payload, a torn header, a slow header. */
static void r_stream(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.mem = VC_MEM_NONE;
    if (!vc_handshake(&s, &o)) {
        vc_fail("handshake: %s", s.why);
        vc_close(&s);
        return;
    }
    switch (c->param) {
    case 0: { /* size 0x7fffffff, then 64 bytes, then silence */
        uint8_t buf[12 + 64] = {0};
        struct vub_vu_header h = {VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 0x7fffffffu};
        memcpy(buf, &h, 12);
        vc_send_raw(s.sock, buf, sizeof buf, NULL, 0);
        struct vc_reply r;
        enum vc_rx rx = vc_recv(s.sock, &r, VC_WAIT_MS + 500);
        vc_pass("a 2 GiB payload claim: %s", rx == VC_RX_CLOSED || rx == VC_RX_SHORT ? "connection closed"
                                            : rx == VC_RX_TIMEOUT ? "no answer (the back-end waits for the bytes)"
                                                                  : "a reply");
        break;
    }
    case 1: { /* 4096-byte payload, sent in full */
        static uint8_t buf[12 + 4096];
        struct vub_vu_header h = {VHOST_USER_SET_FEATURES, VHOST_USER_VERSION | VC_NEED_REPLY, 4096};
        memcpy(buf, &h, 12);
        if (!vc_send_raw(s.sock, buf, sizeof buf, NULL, 0)) {
            vc_pass("a 4096-byte SET_FEATURES: the back-end closed the connection while it was sent");
            break;
        }
        uint64_t v = 0;
        char d[200];
        enum vc_ack a = vc_get_ack(&s, VHOST_USER_SET_FEATURES, &v, d, sizeof d);
        if (a == VC_ACK_OK)
            vc_warn("a 4096-byte SET_FEATURES was accepted");
        else if (a == VC_ACK_BAD)
            vc_fail("a 4096-byte SET_FEATURES: %s", d);
        else if (a == VC_ACK_NONE && vc_after(&s) == VC_AFTER_HUNG)
            vc_fail("a 4096-byte SET_FEATURES: the back-end stopped answering");
        else
            vc_pass("a 4096-byte SET_FEATURES: %s", vc_ack_name(a));
        break;
    }
    case 2: { /* a torn header, then close */
        uint8_t part[6] = {1, 0, 0, 0, 1, 0};
        vc_send_raw(s.sock, part, sizeof part, NULL, 0);
        vc_pass("a connection closed after 6 header bytes");
        break;
    }
    case 3: { /* GET_FEATURES in three pieces, 100 ms apart */
        struct vub_vu_header h = {VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, 0};
        uint8_t *p = (uint8_t *)&h;
        vc_send_raw(s.sock, p, 5, NULL, 0);
        vc_sleep_ms(100);
        vc_send_raw(s.sock, p + 5, 4, NULL, 0);
        vc_sleep_ms(100);
        vc_send_raw(s.sock, p + 9, 3, NULL, 0);
        struct vc_reply r;
        enum vc_rx rx = vc_recv(s.sock, &r, VC_WAIT_MS);
        if (rx == VC_RX_OK && r.hdr.request == VHOST_USER_GET_FEATURES && r.hdr.size == 8)
            vc_pass("a header arriving in three pieces is reassembled");
        else
            vc_warn("a header arriving in three pieces 100 ms apart: %s (a stream socket may split a message "
                    "anywhere)", vc_rx_name(rx));
        break;
    }
    case 4: { /* SET_VRING_CALL with the fd riding on the payload, not the header */
        struct vc_setup o2 = vc_default_setup;
        vc_close(&s);
        if (!vc_open_or_fail(&s, &o2))
            return;
        struct vub_vu_header h = {VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION | (s.reply_ack ? VC_NEED_REPLY : 0), 8};
        uint64_t v = 0;
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        vc_send_raw(s.sock, &h, 12, NULL, 0);
        vc_sleep_ms(20);
        vc_send_raw(s.sock, &v, 8, &fd, 1);
        int keep = s.q[0].call;
        s.q[0].call = fd;
        enum vc_ack a = s.reply_ack ? vc_get_ack(&s, VHOST_USER_SET_VRING_CALL, NULL, NULL, 0) : VC_ACK_OK;
        if (a != VC_ACK_OK) {
            vc_warn("an fd sent with the payload rather than the header: %s", vc_ack_name(a));
        } else {
            vc_io_roundtrip(&s, 0, "with the new call fd");
            if (vc.verdict == VC_FAIL) { /* not a MUST: SCM_RIGHTS may ride on any byte, QEMU sends them with the header */
                char seen[sizeof vc.seen];
                snprintf(seen, sizeof seen, "%s", vc.seen);
                vc.verdict = VC_PASS;
                vc.seen[0] = '\0';
                vc_warn("an fd sent with the payload bytes (not the header) was not taken: %s", seen);
            } else {
                vc_pass("an fd sent with the payload bytes (not the header) was taken");
            }
        }
        close(keep);
        break;
    }
    }
    vc_close(&s);
}

/* Queue indexes out of range for every vring message. */
static void r_qindex(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.mem = VC_MEM_NONE;
    if (!vc_handshake(&s, &o)) {
        vc_fail("handshake: %s", s.why);
        vc_close(&s);
        return;
    }
    static const uint32_t reqs[] = {VHOST_USER_SET_VRING_NUM, VHOST_USER_SET_VRING_ADDR, VHOST_USER_SET_VRING_BASE,
                                    VHOST_USER_GET_VRING_BASE, VHOST_USER_SET_VRING_ENABLE,
                                    VHOST_USER_SET_VRING_KICK, VHOST_USER_SET_VRING_CALL, VHOST_USER_SET_VRING_ERR};
    uint32_t req = reqs[c->param % 8];
    bool huge = c->param >= 8;
    uint32_t index = huge ? 0xffffffffu : vc.info.queues;
    uint8_t pl[40] = {0};
    uint32_t size = 8;
    int fd = -1;
    unsigned nfds = 0;
    if (req == VHOST_USER_SET_VRING_KICK || req == VHOST_USER_SET_VRING_CALL || req == VHOST_USER_SET_VRING_ERR) {
        uint64_t v = huge ? 0xffu : (index & 0xffu);
        if (!huge && index > 0xff) {
            vc_na("%u queues: no index in bits 0-7 is out of range", vc.info.queues);
            vc_close(&s);
            return;
        }
        memcpy(pl, &v, 8);
        fd = eventfd(0, EFD_CLOEXEC);
        nfds = 1;
        index = (uint32_t)v;
    } else if (req == VHOST_USER_SET_VRING_ADDR) {
        struct vub_vu_vring_addr a = {index, 0, vc_uva(VC_GPA_BASE), vc_uva(VC_GPA_BASE + 8192),
                                      vc_uva(VC_GPA_BASE + 4096), 0};
        memcpy(pl, &a, 40);
        size = 40;
    } else {
        struct vub_vu_vring_state st = {index, req == VHOST_USER_SET_VRING_NUM ? 64u : req == VHOST_USER_SET_VRING_ENABLE};
        memcpy(pl, &st, 8);
    }
    char d[200];
    enum vc_probe p = vc_probe_raw(&s, req, VHOST_USER_VERSION | VC_NEED_REPLY, pl, size, &fd, nfds, d, sizeof d);
    if (fd >= 0)
        close(fd);
    if (req == VHOST_USER_GET_VRING_BASE && p == VC_PROBE_BAD)
        p = VC_PROBE_ACCEPTED; /* answered as if the queue existed */
    char what[96];
    snprintf(what, sizeof what, "%s for queue %u of %u", vub_vu_request_name(req), index, vc.info.queues);
    vc_judge_refusal(p, d, false, what);
    vc_close(&s);
}

/* Memory regions that must not be mapped as given. */
static void r_mem(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    long k = c->param;
    bool cms = k >= 10;
    if (cms) {
        if (!vc_need_p(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, "CONFIGURE_MEM_SLOTS"))
            return;
        o.mem = VC_MEM_ADD;
        if (!vc_open_or_fail(&s, &o))
            return;
    } else {
        o.mem = VC_MEM_NONE;
        if (!vc_handshake(&s, &o)) {
            vc_fail("handshake: %s", s.why);
            vc_close(&s);
            return;
        }
    }
    struct vub_vu_mem_table t = {.nregions = 1};
    t.regions[0] = (struct vub_vu_mem_region){VC_GPA_BASE, VC_GUEST_BYTES, VC_UVA_BASE, 0};
    int fds[8] = {vc.memfd, vc.memfd, vc.memfd, vc.memfd, vc.memfd, vc.memfd, vc.memfd, vc.memfd};
    unsigned nfds = 1;
    uint32_t size = 40, req = VHOST_USER_SET_MEM_TABLE;
    const char *what = "";
    int tmpfd = -1;
    bool probe_io = false;
    uint8_t pl[8 + 32 * 9];
    switch (k) {
    case 0: t.regions[0].size = 0; what = "a region of size 0"; break;
    case 1: t.regions[0].guest_addr = UINT64_MAX - 4095; t.regions[0].size = 8192; what = "a region whose guest address wraps"; break;
    case 2: t.regions[0].user_addr = UINT64_MAX - 4095; t.regions[0].size = 8192; what = "a region whose user address wraps"; break;
    case 3: t.regions[0].mmap_offset = UINT64_MAX - 4095; t.regions[0].size = 8192; what = "a region whose mmap_offset wraps"; break;
    case 4:
        t.nregions = 2;
        t.regions[1] = (struct vub_vu_mem_region){VC_GPA_BASE + 4096, 4096, VC_UVA_BASE + (1ull << 40), 0};
        size = 8 + 64;
        nfds = 2;
        what = "two regions overlapping in guest space";
        break;
    case 5:
        t.nregions = 2;
        t.regions[1] = (struct vub_vu_mem_region){VC_GPA_BASE + (1ull << 40), 4096, VC_UVA_BASE + 4096, 0};
        size = 8 + 64;
        nfds = 2;
        what = "two regions overlapping in user space";
        break;
    case 6: /* the region runs past the end of its file: touching it would be SIGBUS */
        t.regions[0].mmap_offset = VC_GUEST_BYTES - 65536;
        t.regions[0].size = 1u << 20;
        t.regions[0].guest_addr = VC_GPA_BASE;
        what = "a region extending past the end of its file";
        probe_io = true;
        break;
    case 7: t.nregions = 0; size = 8; nfds = 0; what = "a table of 0 regions"; break;
    case 8: /* nine regions, eight fds */
        t.nregions = 9;
        size = 8 + 32 * 9;
        nfds = 8;
        memset(pl, 0, sizeof pl);
        memcpy(pl, &t, 8);
        for (unsigned i = 0; i < 9; i++) {
            struct vub_vu_mem_region r = {VC_GPA_BASE + i * 4096ull, 4096, VC_UVA_BASE + i * 4096ull, i * 4096ull};
            memcpy(pl + 8 + 32 * i, &r, 32);
        }
        what = "a table of 9 regions";
        break;
    case 9: { /* the fd is not a file */
        tmpfd = eventfd(0, EFD_CLOEXEC);
        fds[0] = tmpfd;
        what = "a region whose fd is an eventfd";
        break;
    }
    case 10: { /* REM_MEM_REG of a region that is not there */
        struct vub_vu_mem_single one = {0, {VC_GPA_BASE + (1ull << 41), 4096, VC_UVA_BASE + (1ull << 41), 0}};
        memcpy(pl, &one, 40);
        req = VHOST_USER_REM_MEM_REG;
        nfds = 0;
        what = "REM_MEM_REG of a region that was never added";
        break;
    }
    case 11: { /* ADD_MEM_REG overlapping an existing region */
        struct vub_vu_mem_single one = {0, {VC_GPA_BASE + 8192, 4096, VC_UVA_BASE + (1ull << 42), 0}};
        memcpy(pl, &one, 40);
        req = VHOST_USER_ADD_MEM_REG;
        what = "ADD_MEM_REG overlapping a region in guest space";
        break;
    }
    case 12: { /* ADD_MEM_REG without its fd */
        struct vub_vu_mem_single one = {0, {VC_GPA_BASE + (1ull << 41), 4096, VC_UVA_BASE + (1ull << 41), 0}};
        memcpy(pl, &one, 40);
        req = VHOST_USER_ADD_MEM_REG;
        nfds = 0;
        what = "ADD_MEM_REG without an fd";
        break;
    }
    }
    if (k < 8 || k == 9)
        memcpy(pl, &t, size);
    char d[200];
    enum vc_probe p = vc_probe_raw(&s, req, VHOST_USER_VERSION | VC_NEED_REPLY, pl, size, fds, nfds, d, sizeof d);
    if (tmpfd >= 0)
        close(tmpfd);
    if (probe_io && p == VC_PROBE_ACCEPTED) {
        vc_warn("%s was accepted (mmap succeeds, but touching the part past the end raises SIGBUS)", what);
        vc_close(&s);
        return;
    }
    vc_judge_refusal(p, d, false, what);
    vc_close(&s);
}

/* Ring sizes no ring can have. */
static void r_ring_size(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    if (!vc_handshake(&s, &o) || !vc_send_mem(&s)) {
        vc_fail("set-up: %s", s.why);
        vc_close(&s);
        return;
    }
    uint32_t n = (uint32_t)c->param;
    struct vub_vu_vring_state st = {0, n};
    char d[200];
    enum vc_probe p = vc_probe_raw(&s, VHOST_USER_SET_VRING_NUM, VHOST_USER_VERSION | VC_NEED_REPLY, &st, 8, NULL, 0,
                                   d, sizeof d);
    char what[64];
    snprintf(what, sizeof what, "SET_VRING_NUM %u on a split ring", n);
    vc_judge_refusal(p, d, false, what);
    vc_close(&s);
}

/* ---- hostile split rings ------------------------------------------------------- */

/* Judges what became of a hostile request on queue 0: any ending but a
 * hang is acceptable; status OK is a warning where the chain was broken. */
static void vc_judge_hostile(struct vc_sess *s, struct vc_req *r, const char *what, bool ok_allowed)
{
    struct vc_used u;
    enum vc_ev ev = vc_wait_used(s, 0, &u, VC_WAIT_MS);
    uint8_t st = r && r->w_gpa ? *vc_g(r->w_gpa + r->in_len) : VC_STATUS_SENTINEL;
    if (ev == VC_EV_USED) {
        if (st == VC_S_OK && !ok_allowed)
            vc_warn("%s: completed with status OK", what);
        else
            vc_pass("%s: completed (status %s, used len %u)", what, vc_status_name(st), u.len);
    } else if (ev == VC_EV_CLOSED || ev == VC_EV_ERRFD) {
        vc_pass("%s: %s", what, vc_ev_name(ev));
    } else {
        enum vc_after af = vc_after(s);
        if (af == VC_AFTER_HUNG)
            vc_fail("%s: the back-end stopped answering messages", what);
        else
            vc_pass("%s: %s (the driver broke a MUST NOT; ignoring the request is allowed)", what,
                    af == VC_AFTER_CLOSED ? "the connection closed" : "not completed, back-end still answering");
    }
}

/* Writes raw split descriptors at table slots, makes `head` available and kicks. */
static void vc_raw_split(struct vc_sess *s, const uint8_t (*descs)[16], unsigned n, uint16_t head, uint16_t idx_step)
{
    struct vc_q *q = &s->q[0];
    uint8_t *table = vc_g(q->desc);
    for (unsigned i = 0; i < n; i++)
        memcpy(table + 16 * i, descs[i], 16);
    q->nfree = 0; /* our free list no longer describes the table */
    uint8_t *avail = vc_g(q->avail);
    vub_put_le16(avail + 4 + 2 * (q->avail_idx % q->size), head);
    q->avail_idx = (uint16_t)(q->avail_idx + idx_step);
    atomic_thread_fence(memory_order_seq_cst);
    vub_ring_store16(avail + 2, q->avail_idx, memory_order_release);
    vc_kick(s, 0);
}

static void r_split(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    long k = c->param;
    o.size = 16;
    o.errfd = true;
    if (k == 17 || k == 18 || k == 19 || k == 20 || k == 21 || k == 22 || k == 23 || k == 24 || k == 25) {
        if (!vc_need(VIRTIO_F_INDIRECT_DESC, "INDIRECT_DESC"))
            return;
    }
    if (k == 26)
        o.no_indirect = true;
    if (!vc_open_or_fail(&s, &o))
        return;
    /* a normal 512-byte read to start from: header, data, status */
    struct vc_req r;
    static struct vc_seg segs[8];
    vc_req_init(&r, VC_T_IN, 1, 0, 512);
    vc_req_segs(&s, &r, segs);
    uint64_t H = r.r_gpa, D = r.w_gpa, S = r.w_gpa + 512;
    uint8_t d[20][16];
    memset(d, 0, sizeof d);
    const uint16_t N = VIRTQ_DESC_F_NEXT, W = VIRTQ_DESC_F_WRITE, I = VIRTQ_DESC_F_INDIRECT;
    vc_put_desc(d[0], H, 16, N, 1);
    vc_put_desc(d[1], D, 512, N | W, 2);
    vc_put_desc(d[2], S, 1, W, 0);
    unsigned n = 3;
    uint16_t head = 0, step = 1;
    const char *what = "";
    bool ok_allowed = false;
    uint64_t tbl = vc_alloc(&s, 16 * 64, 16);
    switch (k) {
    case 0: head = 16; what = "a head index equal to the ring size"; break;
    case 1: head = 0xffff; what = "head index 65535"; break;
    case 2: vc_put_desc(d[1], D, 512, N | W, 16); what = "a next index equal to the ring size"; break;
    case 3: vc_put_desc(d[0], H, 16, N, 0); what = "a descriptor chained to itself"; break;
    case 4: vc_put_desc(d[2], S, 1, N | W, 1); what = "a two-descriptor loop"; break;
    case 5:
        for (unsigned i = 0; i < 16; i++)
            vc_put_desc(d[i], D, 32, (uint16_t)(N | W), (uint16_t)((i + 1) % 16));
        n = 16;
        what = "a loop through all 16 descriptors";
        break;
    case 6: step = 17; what = "the available index jumping 17 entries in a 16-entry ring"; break;
    case 7: step = 0xffff; what = "the available index moving backwards"; break;
    case 8: vc_put_desc(d[1], VC_GPA_BASE + VC_GUEST_BYTES + (1ull << 30), 512, N | W, 2); what = "a data buffer outside guest memory"; break;
    case 9: vc_put_desc(d[1], UINT64_MAX - 255, 512, N | W, 2); what = "a data buffer whose address wraps"; break;
    case 10: vc_put_desc(d[1], D, 0xffffffffu, N | W, 2); what = "a data buffer of 4 GiB - 1"; break;
    case 11: vc_put_desc(d[0], 16, 16, N, 1); what = "a header at guest address 16 (unmapped)"; break;
    case 12: vc_put_desc(d[2], VC_GPA_BASE - 4096, 1, W, 0); what = "the status byte outside guest memory"; break;
    case 13: /* readable after writable */
        vc_put_desc(d[0], H, 16, N, 1);
        vc_put_desc(d[1], S, 1, N | W, 2);
        vc_put_desc(d[2], D, 512, 0, 0);
        what = "a readable descriptor after a writable one";
        break;
    case 14: vc_put_desc(d[0], H, 16, 0, 0); n = 1; what = "a request with no writable byte"; break;
    case 15: vc_put_desc(d[0], H, 8, N, 1); what = "a header of 8 bytes"; break;
    case 16: memset(d, 0, sizeof d); n = 3; what = "an all-zero descriptor"; break;
    case 17: case 18: case 19: case 20: case 21: case 22: case 23: case 24: case 25: {
        /* indirect tables */
        uint8_t t[64][16];
        memset(t, 0, sizeof t);
        vc_put_desc(t[0], H, 16, N, 1);
        vc_put_desc(t[1], D, 512, N | W, 2);
        vc_put_desc(t[2], S, 1, W, 0);
        uint32_t len = 48;
        uint16_t flags = I;
        uint64_t at = tbl;
        switch (k) {
        case 17: vc_put_desc(t[2], tbl, 48, I, 0); what = "an INDIRECT descriptor inside an indirect table"; break;
        case 18: len = 0; what = "an indirect table of 0 bytes"; break;
        case 19: len = 15; what = "an indirect table of 15 bytes"; break;
        case 20: len = 17; what = "an indirect table of 17 bytes"; break;
        case 21: len = 0xfffffff0u; what = "an indirect table of 4 GiB - 16 bytes"; break;
        case 22: at = VC_GPA_BASE + VC_GUEST_BYTES + 4096; what = "an indirect table outside guest memory"; break;
        case 23: flags = I | N; what = "a descriptor with both INDIRECT and NEXT"; break;
        case 24: vc_put_desc(t[2], S, 1, N | W, 0); what = "a loop inside an indirect table"; break;
        case 25: vc_put_desc(t[2], S, 1, N | W, 3); what = "a next index past the end of the indirect table"; break;
        }
        memcpy(vc_g(tbl), t, sizeof t);
        vc_put_desc(d[0], at, len, flags, 1);
        vc_put_desc(d[1], S, 1, W, 0);
        n = k == 23 ? 2 : 1;
        break;
    }
    case 26: { /* INDIRECT without INDIRECT_DESC negotiated */
        uint8_t t[3][16];
        vc_put_desc(t[0], H, 16, N, 1);
        vc_put_desc(t[1], D, 512, N | W, 2);
        vc_put_desc(t[2], S, 1, W, 0);
        memcpy(vc_g(tbl), t, sizeof t);
        vc_put_desc(d[0], tbl, 48, I, 0);
        n = 1;
        what = "an INDIRECT descriptor without INDIRECT_DESC negotiated";
        ok_allowed = true;
        break;
    }
    case 27: { /* an indirect table longer than the ring (17 entries, no loop) */
        if (!vc_offers(VIRTIO_F_INDIRECT_DESC)) {
            vc_na("INDIRECT_DESC not offered");
            vc_close(&s);
            return;
        }
        uint8_t t[20][16];
        vc_put_desc(t[0], H, 16, N, 1);
        for (unsigned i = 1; i < 17; i++)
            vc_put_desc(t[i], D + 32 * (i - 1), 32, N | W, (uint16_t)(i + 1));
        vc_put_desc(t[17], S, 1, W, 0);
        memcpy(vc_g(tbl), t, sizeof t);
        vc_put_desc(d[0], tbl, 18 * 16, I, 0);
        n = 1;
        what = "an indirect chain of 18 descriptors in a 16-entry ring";
        ok_allowed = true;
        break;
    }
    }
    *vc_g(S) = VC_STATUS_SENTINEL;
    vc_raw_split(&s, (const uint8_t(*)[16])d, n, head, step);
    r.in_len = 512;
    r.w_gpa = D;
    vc_judge_hostile(&s, &r, what, ok_allowed);
    vc_close(&s);
}

/* ---- hostile packed rings ----------------------------------------------------- */

static void r_packed(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    long k = c->param;
    o.size = 8;
    o.errfd = true;
    if (!vc_need(VIRTIO_F_RING_PACKED, "RING_PACKED"))
        return;
    if ((k == 1 || k == 2) && !vc_need(VIRTIO_F_INDIRECT_DESC, "INDIRECT_DESC"))
        return;
    o.packed = true;
    if (!vc_open_or_fail(&s, &o))
        return;
    struct vc_q *q = &s.q[0];
    struct vc_req r;
    static struct vc_seg segs[8];
    vc_req_init(&r, VC_T_IN, 1, 0, 512);
    vc_req_segs(&s, &r, segs);
    uint64_t H = r.r_gpa, D = r.w_gpa, S = r.w_gpa + 512;
    const uint16_t A = VIRTQ_DESC_F_AVAIL, N = VIRTQ_DESC_F_NEXT, W = VIRTQ_DESC_F_WRITE, I = VIRTQ_DESC_F_INDIRECT;
    uint8_t *ring = vc_g(q->desc);
    const char *what = "";
    uint64_t tbl = vc_alloc(&s, 16 * 8, 16);
    bool ok_allowed = false;
    switch (k) {
    case 0: /* every descriptor has NEXT: the list never ends */
        for (unsigned i = 0; i < 8; i++)
            vc_put_pdesc(ring + 16 * i, D, 32, 1, (uint16_t)(A | N | W));
        what = "a descriptor list that never ends";
        break;
    case 1:
        vc_put_pdesc(ring, tbl, 48, 1, (uint16_t)(A | I | N));
        vc_put_pdesc(ring + 16, S, 1, 1, (uint16_t)(A | W));
        what = "a descriptor with both INDIRECT and NEXT";
        break;
    case 2:
        vc_put_pdesc(ring, tbl, 15, 1, (uint16_t)(A | I));
        what = "an indirect table of 15 bytes";
        break;
    case 3:
        vc_put_pdesc(ring, H, 16, 1, (uint16_t)(A | N));
        vc_put_pdesc(ring + 16, VC_GPA_BASE + VC_GUEST_BYTES + (1ull << 30), 512, 1, (uint16_t)(A | N | W));
        vc_put_pdesc(ring + 32, S, 1, 1, (uint16_t)(A | W));
        what = "a data buffer outside guest memory";
        break;
    case 4: /* the same buffer id twice in flight */
        vc_put_pdesc(ring, H, 16, 5, (uint16_t)(A | N));
        vc_put_pdesc(ring + 16, D, 513, 5, (uint16_t)(A | W));
        vc_put_pdesc(ring + 32, H, 16, 5, (uint16_t)(A | N));
        vc_put_pdesc(ring + 48, D, 513, 5, (uint16_t)(A | W));
        what = "buffer id 5 made available twice before it was used";
        ok_allowed = true;
        break;
    case 5:
        vc_put_pdesc(ring, H, 16, 1, (uint16_t)(A | N));
        vc_put_pdesc(ring + 16, S, 1, 1, (uint16_t)(A | N | W));
        vc_put_pdesc(ring + 32, D, 512, 1, (uint16_t)A);
        what = "a readable descriptor after a writable one";
        break;
    case 6: { /* SET_VRING_BASE naming a slot outside the ring */
        char dd[200];
        vc_close(&s);
        struct vc_setup o2 = o;
        o2.no_kick = true;
        if (!vc_open_or_fail(&s, &o2))
            return;
        struct vub_vu_vring_state st = {0, 0x80008000u | 200u};
        enum vc_probe p = vc_probe_raw(&s, VHOST_USER_SET_VRING_BASE, VHOST_USER_VERSION | VC_NEED_REPLY, &st, 8,
                                       NULL, 0, dd, sizeof dd);
        vc_judge_refusal(p, dd, false, "SET_VRING_BASE naming slot 200 of an 8-entry packed ring");
        vc_close(&s);
        return;
    }
    }
    *vc_g(S) = VC_STATUS_SENTINEL;
    vc_kick(&s, 0);
    r.in_len = 512;
    r.w_gpa = D;
    vc_judge_hostile(&s, &r, what, ok_allowed);
    vc_close(&s);
}

/* ---- the back-end as a server ----------------------------------------------------- */

static void r_server(const struct vc_case *c)
{
    struct vc_sess s;
    if (c->param == 0) { /* 50 connections opened and closed at once */
        for (int i = 0; i < 50; i++) {
            int fd = vc_connect();
            if (fd < 0) {
                vc_fail("connection %d of 50 was refused", i);
                return;
            }
            close(fd);
        }
        if (vc_open_or_fail(&s, &vc_default_setup)) {
            if (vc_io_roundtrip(&s, 0, "after 50 empty connections"))
                vc_pass("50 connections closed at once, then a session serves I/O");
            vc_close(&s);
        }
        return;
    }
    if (c->param == 1) { /* a session dropped in the middle of I/O */
        if (!vc_open_or_fail(&s, &vc_default_setup))
            return;
        struct vc_req r[16];
        for (int i = 0; i < 16; i++) {
            vc_req_init(&r[i], VC_T_IN, (uint64_t)i, 0, 4096);
            vc_req_submit(&s, &r[i], NULL);
        }
        vc_kick(&s, 0);
        vc_close(&s);
        vc_pass("a session closed with 16 requests in flight");
        return;
    }
    /* the disk as a whole, at the end */
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    if (vc_disk_verify(&s, "the whole disk"))
        vc_pass("the disk holds exactly what this run wrote (%llu bytes checked)", (unsigned long long)vc.disk.bytes);
    vc_close(&s);
}

#define R(name, tag, fn, param, sent) {"robust", name, tag, sent, fn, param, true}

static const struct vc_case vc_cases_robust[] = {
    R("robust.msg.short-set-features", "VU-MSG-SIZE", r_msg, 0, "SET_FEATURES with a 4-byte payload is refused"),
    R("robust.msg.short-set-protocol-features", "VU-MSG-SIZE", r_msg, 1, "SET_PROTOCOL_FEATURES with 4 bytes is refused"),
    R("robust.msg.short-set-mem-table", "VU-MSG-SIZE", r_msg, 2, "SET_MEM_TABLE with 36 bytes is refused"),
    R("robust.msg.short-set-vring-num", "VU-MSG-SIZE", r_msg, 3, "SET_VRING_NUM with 4 bytes is refused"),
    R("robust.msg.short-set-vring-addr", "VU-MSG-SIZE", r_msg, 4, "SET_VRING_ADDR with 32 bytes is refused"),
    R("robust.msg.short-set-vring-base", "VU-MSG-SIZE", r_msg, 5, "SET_VRING_BASE with 4 bytes is refused"),
    R("robust.msg.short-get-vring-base", "VU-MSG-SIZE", r_msg, 6, "GET_VRING_BASE with 4 bytes is refused"),
    R("robust.msg.short-set-vring-kick", "VU-MSG-SIZE", r_msg, 7, "SET_VRING_KICK with 4 bytes is refused"),
    R("robust.msg.short-set-vring-call", "VU-MSG-SIZE", r_msg, 8, "SET_VRING_CALL with 4 bytes is refused"),
    R("robust.msg.short-set-vring-err", "VU-MSG-SIZE", r_msg, 9, "SET_VRING_ERR with 4 bytes is refused"),
    R("robust.msg.short-set-vring-enable", "VU-MSG-SIZE", r_msg, 10, "SET_VRING_ENABLE with 4 bytes is refused"),
    R("robust.msg.short-get-config", "VU-MSG-SIZE", r_msg, 11, "GET_CONFIG with 8 bytes is refused"),
    R("robust.msg.short-set-config", "VU-MSG-SIZE", r_msg, 12, "SET_CONFIG with 8 bytes is refused"),
    R("robust.msg.short-add-mem-reg", "VU-MSG-SIZE", r_msg, 13, "ADD_MEM_REG with 32 bytes is refused"),
    R("robust.msg.short-rem-mem-reg", "VU-MSG-SIZE", r_msg, 14, "REM_MEM_REG with 32 bytes is refused"),
    R("robust.msg.empty-set-features", "VU-MSG-SIZE", r_msg, 15, "SET_FEATURES with no payload is refused"),
    R("robust.msg.empty-set-vring-num", "VU-MSG-SIZE", r_msg, 16, "SET_VRING_NUM with no payload is refused"),
    R("robust.msg.empty-set-mem-table", "VU-MSG-SIZE", r_msg, 17, "SET_MEM_TABLE with no payload is refused"),
    R("robust.msg.long-set-features", "VU-MSG-SIZE", r_msg, 18, "SET_FEATURES with 16 bytes is refused"),
    R("robust.msg.long-set-vring-num", "VU-MSG-SIZE", r_msg, 19, "SET_VRING_NUM with 16 bytes is refused"),
    R("robust.msg.long-set-vring-addr", "VU-MSG-SIZE", r_msg, 20, "SET_VRING_ADDR with 48 bytes is refused"),
    R("robust.msg.long-get-features", "VU-MSG-SIZE", r_msg, 21, "GET_FEATURES with an 8-byte payload is refused"),
    R("robust.hdr.version-0", "VU-HDR-VERSION", r_msg, 22, "a message of version 0 is not served as version 1"),
    R("robust.hdr.version-2", "VU-HDR-VERSION", r_msg, 23, "a message of version 2 is not served as version 1"),
    R("robust.hdr.version-3", "VU-HDR-VERSION", r_msg, 24, "a message of version 3 is not served as version 1"),
    R("robust.hdr.flag-bit-4", "VU-HDR-FLAGS", r_msg, 25, "a stray flag bit 4 is not served as a valid request"),
    R("robust.hdr.flag-bit-31", "VU-HDR-FLAGS", r_msg, 26, "a stray flag bit 31 is not served as a valid request"),
    R("robust.hdr.reply-bit-on-request", "VU-HDR-FLAGS", r_msg, 27, "the REPLY bit on a request is not served as a valid request"),
    R("robust.request.none", "VU-DISPATCH", r_msg, 28, "request 0 (NONE) is refused"),
    R("robust.request.41", "VU-DISPATCH", r_msg, 29, "unknown request 41 is refused"),
    R("robust.request.99", "VU-DISPATCH", r_msg, 30, "unknown request 99 is refused"),
    R("robust.request.1000", "VU-DISPATCH", r_msg, 31, "unknown request 1000 is refused"),
    R("robust.request.max", "VU-DISPATCH", r_msg, 32, "unknown request 0xffffffff is refused"),
    R("robust.fds.get-features-with-fd", "VU-FDS", r_msg, 33, "an fd on GET_FEATURES is handled without harm"),
    R("robust.fds.call-missing-fd", "VU-VRING-FD", r_msg, 34, "SET_VRING_CALL without NOFD and without an fd is refused"),
    R("robust.fds.call-two-fds", "VU-FDS", r_msg, 35, "SET_VRING_CALL with two fds is refused"),
    R("robust.fds.kick-nofd-with-fd", "VU-VRING-FD", r_msg, 36, "SET_VRING_KICK with NOFD and an fd is refused"),
    R("robust.fds.nine-fds", "VU-FDS", r_msg, 37, "a message with nine fds is refused"),
    R("robust.gate.set-log-base", "VU-GATE", r_msg, 38, "SET_LOG_BASE without LOG_SHMFD negotiated is handled without harm"),
    R("robust.gate.set-log-fd", "VU-GATE", r_msg, 39, "SET_LOG_FD without logging is handled without harm"),
    R("robust.gate.send-rarp", "VU-GATE", r_msg, 40, "SEND_RARP (net only) is handled without harm"),
    R("robust.gate.net-set-mtu", "VU-GATE", r_msg, 41, "NET_SET_MTU (net only) is handled without harm"),
    R("robust.gate.set-backend-req-fd", "VU-GATE", r_msg, 42, "SET_BACKEND_REQ_FD without BACKEND_REQ is handled without harm"),
    R("robust.gate.iotlb-msg", "VU-GATE", r_msg, 43, "IOTLB_MSG without ACCESS_PLATFORM is handled without harm"),
    R("robust.gate.set-vring-endian", "VU-GATE", r_msg, 44, "SET_VRING_ENDIAN without CROSS_ENDIAN is handled without harm"),
    R("robust.gate.get-inflight-fd", "VU-GATE", r_msg, 45, "GET_INFLIGHT_FD without INFLIGHT_SHMFD is handled without harm"),
    R("robust.gate.vring-kick", "VU-GATE", r_msg, 46, "VRING_KICK without INBAND_NOTIFICATIONS is handled without harm"),
    R("robust.gate.set-status", "VU-GATE", r_msg, 47, "SET_STATUS without STATUS negotiated is handled without harm"),
    R("robust.gate.get-status", "VU-GATE", r_msg, 48, "GET_STATUS without STATUS negotiated is handled without harm"),
    R("robust.gate.crypto-session", "VU-GATE", r_msg, 49, "CREATE_CRYPTO_SESSION (crypto only) is handled without harm"),
    R("robust.stream.huge-size", "VU-MSG-SIZE", r_stream, 0, "a header claiming a 2 GiB payload does no harm"),
    R("robust.stream.4k-payload", "VU-MSG-SIZE", r_stream, 1, "SET_FEATURES with a 4096-byte payload is refused"),
    R("robust.stream.torn-header", "VU-MSG-SIZE", r_stream, 2, "a connection closed inside a header does no harm"),
    R("robust.stream.slow-header", "VU-STREAM", r_stream, 3, "a header arriving in three pieces is reassembled"),
    R("robust.stream.fd-on-payload", "VU-FDS", r_stream, 4, "an fd riding on the payload bytes is taken"),
    R("robust.qindex.set-vring-num", "VU-QUEUE-INDEX", r_qindex, 0, "SET_VRING_NUM for a queue past the last is refused"),
    R("robust.qindex.set-vring-addr", "VU-QUEUE-INDEX", r_qindex, 1, "SET_VRING_ADDR for a queue past the last is refused"),
    R("robust.qindex.set-vring-base", "VU-QUEUE-INDEX", r_qindex, 2, "SET_VRING_BASE for a queue past the last is refused"),
    R("robust.qindex.get-vring-base", "VU-QUEUE-INDEX", r_qindex, 3, "GET_VRING_BASE for a queue past the last is refused"),
    R("robust.qindex.set-vring-enable", "VU-QUEUE-INDEX", r_qindex, 4, "SET_VRING_ENABLE for a queue past the last is refused"),
    R("robust.qindex.set-vring-kick", "VU-QUEUE-INDEX", r_qindex, 5, "SET_VRING_KICK for a queue past the last is refused"),
    R("robust.qindex.set-vring-call", "VU-QUEUE-INDEX", r_qindex, 6, "SET_VRING_CALL for a queue past the last is refused"),
    R("robust.qindex.set-vring-err", "VU-QUEUE-INDEX", r_qindex, 7, "SET_VRING_ERR for a queue past the last is refused"),
    R("robust.qindex.set-vring-num-max", "VU-QUEUE-INDEX", r_qindex, 8, "SET_VRING_NUM for queue 0xffffffff is refused"),
    R("robust.qindex.set-vring-addr-max", "VU-QUEUE-INDEX", r_qindex, 9, "SET_VRING_ADDR for queue 0xffffffff is refused"),
    R("robust.qindex.set-vring-base-max", "VU-QUEUE-INDEX", r_qindex, 10, "SET_VRING_BASE for queue 0xffffffff is refused"),
    R("robust.qindex.get-vring-base-max", "VU-QUEUE-INDEX", r_qindex, 11, "GET_VRING_BASE for queue 0xffffffff is refused"),
    R("robust.qindex.set-vring-enable-max", "VU-QUEUE-INDEX", r_qindex, 12, "SET_VRING_ENABLE for queue 0xffffffff is refused"),
    R("robust.qindex.set-vring-kick-255", "VU-QUEUE-INDEX", r_qindex, 13, "SET_VRING_KICK for queue 255 is refused"),
    R("robust.qindex.set-vring-call-255", "VU-QUEUE-INDEX", r_qindex, 14, "SET_VRING_CALL for queue 255 is refused"),
    R("robust.qindex.set-vring-err-255", "VU-QUEUE-INDEX", r_qindex, 15, "SET_VRING_ERR for queue 255 is refused"),
    R("robust.mem.zero-size", "MEM-REGION-CHECK", r_mem, 0, "a region of size 0 is refused"),
    R("robust.mem.guest-wraps", "MEM-REGION-CHECK", r_mem, 1, "a region whose guest address range wraps is refused"),
    R("robust.mem.user-wraps", "MEM-REGION-CHECK", r_mem, 2, "a region whose user address range wraps is refused"),
    R("robust.mem.offset-wraps", "MEM-REGION-CHECK", r_mem, 3, "a region whose mmap_offset + size wraps is refused"),
    R("robust.mem.overlap-guest", "MEM-REGION-CHECK", r_mem, 4, "regions overlapping in guest space are refused"),
    R("robust.mem.overlap-user", "MEM-REGION-CHECK", r_mem, 5, "regions overlapping in user space are refused"),
    R("robust.mem.past-eof", "MEM-FILE-SIZE", r_mem, 6, "a region running past the end of its file is refused"),
    R("robust.mem.no-regions", "VU-MEM-TABLE", r_mem, 7, "a memory table of 0 regions is refused"),
    R("robust.mem.nine-regions", "VU-MEM-TABLE", r_mem, 8, "a memory table of 9 regions is refused"),
    R("robust.mem.not-a-file", "MEM-FILE-SIZE", r_mem, 9, "a region whose fd cannot be mapped is refused"),
    R("robust.mem.rem-unknown", "MEM-REM", r_mem, 10, "REM_MEM_REG of a region never added is refused"),
    R("robust.mem.add-overlap", "MEM-REGION-CHECK", r_mem, 11, "ADD_MEM_REG overlapping a region is refused"),
    R("robust.mem.add-no-fd", "VU-FDS", r_mem, 12, "ADD_MEM_REG without an fd is refused"),
    R("robust.ring.size-0", "VQ-SPLIT-SIZE", r_ring_size, 0, "a split ring of size 0 is refused"),
    R("robust.ring.size-3", "VQ-SPLIT-SIZE", r_ring_size, 3, "a split ring of size 3 (not a power of two) is refused"),
    R("robust.ring.size-32769", "VQ-SPLIT-SIZE", r_ring_size, 32769, "a split ring of size 32769 is refused"),
    R("robust.ring.size-65536", "VQ-SPLIT-SIZE", r_ring_size, 65536, "a split ring of size 65536 is refused"),
    R("robust.split.head-eq-size", "VQ-SPLIT-HEAD", r_split, 0, "a head index equal to the ring size does no harm"),
    R("robust.split.head-max", "VQ-SPLIT-HEAD", r_split, 1, "head index 65535 does no harm"),
    R("robust.split.next-eq-size", "VQ-SPLIT-NEXT", r_split, 2, "a next index equal to the ring size does no harm"),
    R("robust.split.loop-self", "VQ-SPLIT-LOOP", r_split, 3, "a descriptor chained to itself does no harm"),
    R("robust.split.loop-two", "VQ-SPLIT-LOOP", r_split, 4, "a two-descriptor loop does no harm"),
    R("robust.split.loop-ring", "VQ-SPLIT-LOOP", r_split, 5, "a loop through the whole ring does no harm"),
    R("robust.split.avail-jump", "VQ-SPLIT-AVAIL-IDX", r_split, 6, "an available index jumping past the ring size does no harm"),
    R("robust.split.avail-backwards", "VQ-SPLIT-AVAIL-IDX", r_split, 7, "an available index moving backwards does no harm"),
    R("robust.split.addr-outside", "MEM-XLATE", r_split, 8, "a buffer outside guest memory does no harm"),
    R("robust.split.addr-wraps", "MEM-WRAP", r_split, 9, "a buffer whose address wraps does no harm"),
    R("robust.split.len-huge", "MEM-XLATE", r_split, 10, "a buffer of 4 GiB - 1 does no harm"),
    R("robust.split.header-outside", "MEM-XLATE", r_split, 11, "a header outside guest memory does no harm"),
    R("robust.split.status-outside", "MEM-XLATE", r_split, 12, "a status byte outside guest memory does no harm"),
    R("robust.split.readable-after-writable", "VQ-SPLIT-ORDER", r_split, 13, "a readable descriptor after a writable one does no harm"),
    R("robust.split.no-status", "BLK-NO-STATUS", r_split, 14, "a request with no writable byte does no harm"),
    R("robust.split.short-header", "BLK-SHORT-HDR", r_split, 15, "a header of 8 bytes does no harm"),
    R("robust.split.zero-descriptor", "VQ-ZERO-LEN", r_split, 16, "an all-zero descriptor does no harm"),
    R("robust.split.indirect-nested", "VQ-INDIRECT-NESTED", r_split, 17, "a nested INDIRECT descriptor does no harm"),
    R("robust.split.indirect-len-0", "VQ-INDIRECT-LEN", r_split, 18, "an indirect table of 0 bytes does no harm"),
    R("robust.split.indirect-len-15", "VQ-INDIRECT-LEN", r_split, 19, "an indirect table of 15 bytes does no harm"),
    R("robust.split.indirect-len-17", "VQ-INDIRECT-LEN", r_split, 20, "an indirect table of 17 bytes does no harm"),
    R("robust.split.indirect-len-huge", "VQ-INDIRECT-LEN", r_split, 21, "an indirect table of 4 GiB - 16 bytes does no harm"),
    R("robust.split.indirect-outside", "VQ-INDIRECT", r_split, 22, "an indirect table outside guest memory does no harm"),
    R("robust.split.indirect-and-next", "VQ-INDIRECT-NEXT", r_split, 23, "INDIRECT together with NEXT does no harm"),
    R("robust.split.indirect-loop", "VQ-SPLIT-LOOP", r_split, 24, "a loop inside an indirect table does no harm"),
    R("robust.split.indirect-next-out", "VQ-SPLIT-NEXT", r_split, 25, "a next index past the indirect table does no harm"),
    R("robust.split.indirect-unnegotiated", "VQ-INDIRECT", r_split, 26, "INDIRECT without INDIRECT_DESC negotiated does no harm"),
    R("robust.split.indirect-longer-than-ring", "VQ-SPLIT-LOOP", r_split, 27, "an indirect chain longer than the ring does no harm"),
    R("robust.packed.endless-list", "VQ-PACKED-LIST", r_packed, 0, "a packed list that never ends does no harm"),
    R("robust.packed.indirect-and-next", "VQ-PACKED-INDIRECT", r_packed, 1, "packed INDIRECT with NEXT does no harm"),
    R("robust.packed.indirect-len-15", "VQ-INDIRECT-LEN", r_packed, 2, "a packed indirect table of 15 bytes does no harm"),
    R("robust.packed.addr-outside", "MEM-XLATE", r_packed, 3, "a packed buffer outside guest memory does no harm"),
    R("robust.packed.id-twice", "VQ-PACKED-ID", r_packed, 4, "a buffer id made available twice does no harm"),
    R("robust.packed.readable-after-writable", "VQ-SPLIT-ORDER", r_packed, 5, "a packed readable-after-writable list does no harm"),
    R("robust.packed.base-out-of-ring", "VU-PACKED-BASE", r_packed, 6, "SET_VRING_BASE naming a slot outside a packed ring is refused"),
    R("robust.server.connection-storm", "VU-SERVER", r_server, 0, "50 connections closed at once, then a session works"),
    R("robust.server.drop-mid-io", "VU-SERVER", r_server, 1, "a session dropped with requests in flight does no harm"),
    R("robust.disk-intact", "BLK-DATA", r_server, 2, "at the end the disk holds exactly what this run wrote"),
};
static const size_t vc_cases_robust_count = VUB_ARRAY_LEN(vc_cases_robust);
