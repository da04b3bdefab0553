/* cases-hostile.c: a front-end that attacks the back-end's resources rather
 * than its parser (included by vub-conform.c).
 *
 * Notification fds of the wrong kind (a back-end that polls /dev/null burns
 * a CPU), a call pipe nobody drains (a blocking write wedges the back-end),
 * chains longer than seg_max and than any iovec array (where does the
 * status go?), ring messages out of order, an OUT whose data is writable,
 * and guest memory that shrinks under the back-end. The last one kills back-ends that do not survive it, so it runs
 * last; --spawn restarts the back-end afterwards. All are hostile: the
 * runner checks the back-end and the disk after each.
 */

/* ---- helpers ---------------------------------------------------------------- */

/* CPU time the spawned back-end has used, in ms; -1 if unknown (--socket). */
static long vc_peer_cpu_ms(void)
{
    if (vc.peer.pid <= 0)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)vc.peer.pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the name may hold spaces */
    unsigned long user, sys;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &user, &sys) != 2)
        return -1;
    return (long)((user + sys) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}

/* Does the back-end burn CPU while nobody asks anything of it? 1 yes, 0 no,
 * -1 unknown. Half a second, of which more than 150 ms on the CPU is a spin
 * (an idle back-end uses none; a loaded machine still gives a spinner more). */
static int vc_peer_spins(long *used_ms)
{
    long a = vc_peer_cpu_ms();
    vc_sleep_ms(500);
    long b = vc_peer_cpu_ms();
    *used_ms = b - a;
    return a < 0 || b < 0 ? -1 : b - a > 150;
}

/* A descriptor of the given kind for a notification fd. want_read: the fd
 * the back-end would read (kick); a "wrong end" is the other one. *other
 * gets the pipe's other end (or -1) for the caller to close. */
enum { VC_FD_DEVNULL, VC_FD_DEVZERO, VC_FD_DIR, VC_FD_FILE, VC_FD_DEAD_SOCKET, VC_FD_WRONG_END, VC_FD_KINDS };
static const char *const vc_fd_kind_name[VC_FD_KINDS] = {
    "/dev/null", "/dev/zero", "a directory", "a regular file", "a socket whose peer closed", "the wrong end of a pipe"};

static int vc_bad_fd(int kind, bool want_read, int *other)
{
    int p[2], fd = -1;
    *other = -1;
    switch (kind) {
    case VC_FD_DEVNULL: return open("/dev/null", O_RDWR | O_CLOEXEC);
    case VC_FD_DEVZERO: return open("/dev/zero", O_RDONLY | O_CLOEXEC);
    case VC_FD_DIR: return open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    case VC_FD_FILE: return open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    case VC_FD_DEAD_SOCKET:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0)
            return -1;
        close(p[1]);
        return p[0];
    case VC_FD_WRONG_END:
        if (pipe2(p, O_CLOEXEC) != 0)
            return -1;
        fd = want_read ? p[1] : p[0];
        *other = want_read ? p[0] : p[1];
        return fd;
    }
    return -1;
}

/* Sends a request with NEED_REPLY and reads the ack. Like vc_probe_raw, but
 * an ack whose flags echo request bits (0xd) is still read for its value:
 * that quirk has cases of its own, and here what matters is whether the
 * request was taken. *quirk says so, for a warning. */
static enum vc_probe vc_probe_ack(struct vc_sess *s, uint32_t req, const void *payload, uint32_t size,
                                  const int *fds, unsigned nfds, char *detail, size_t dlen, bool *quirk)
{
    struct vc_reply r;
    detail[0] = '\0';
    *quirk = false;
    if (!vc_send(s, req, VHOST_USER_VERSION | VC_NEED_REPLY, payload, size, fds, nfds)) {
        s->closed = true;
        return VC_PROBE_CLOSED;
    }
    enum vc_rx rx = vc_recv(s->sock, &r, VC_WAIT_MS);
    if (rx == VC_RX_CLOSED || rx == VC_RX_SHORT) {
        s->closed = true;
        return VC_PROBE_CLOSED;
    }
    if (rx == VC_RX_TIMEOUT) {
        enum vc_after af = vc_after(s);
        return af == VC_AFTER_ALIVE ? VC_PROBE_SILENT : af == VC_AFTER_CLOSED ? VC_PROBE_CLOSED : VC_PROBE_HUNG;
    }
    if (r.hdr.request != req || r.hdr.size != 8 || (r.hdr.flags & 7u) != 0x5) {
        snprintf(detail, dlen, "reply request %u flags 0x%x size %u (expected %u, 0x5, 8)", r.hdr.request,
                 r.hdr.flags, r.hdr.size, req);
        return VC_PROBE_BAD;
    }
    *quirk = r.hdr.flags != 0x5;
    return vc_u64_of(&r) == 0 ? VC_PROBE_ACCEPTED : VC_PROBE_REFUSED;
}

/* Warns about an echoed-flags ack after the case's own verdict. */
static void vc_quirk_note(bool quirk)
{
    if (quirk)
        vc_warn("the ack's flags echo NEED_REPLY (0xd; QEMU accepts only 0x5)");
}

/* ---- notification fds ---------------------------------------------------------- */

/* param: kind + VC_FD_KINDS * (0 kick, 1 call, 2 err). */
static void h_fd_kind(const struct vc_case *c)
{
    static const uint32_t reqs[3] = {VHOST_USER_SET_VRING_KICK, VHOST_USER_SET_VRING_CALL, VHOST_USER_SET_VRING_ERR};
    int kind = (int)(c->param % VC_FD_KINDS), which = (int)(c->param / VC_FD_KINDS);
    struct vc_sess s;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    int other, fd = vc_bad_fd(kind, which == 0, &other);
    if (fd < 0) {
        vc_fail("could not make %s: %s", vc_fd_kind_name[kind], strerror(errno));
        vc_close(&s);
        return;
    }
    char d[200], what[120];
    uint64_t v = 0; /* queue 0, an fd */
    snprintf(what, sizeof what, "%s with %s", vub_vu_request_name(reqs[which]), vc_fd_kind_name[kind]);
    bool quirk;
    enum vc_probe p = vc_probe_ack(&s, reqs[which], &v, 8, &fd, 1, d, sizeof d, &quirk);
    close(fd);
    if (other >= 0)
        close(other);
    long ms = 0;
    int spin = p == VC_PROBE_ACCEPTED || p == VC_PROBE_SILENT ? vc_peer_spins(&ms) : 0;
    if (spin == 1)
        vc_fail("%s: %s, and then burnt %ld ms of CPU in 500 ms while idle (polling an fd that is always ready)",
                what, vc_probe_name(p), ms);
    else if (p == VC_PROBE_ACCEPTED)
        vc_warn("%s: %s (vhost-user \"Introduction\": notifications travel on an eventfd or a pipe)", what,
                vc_probe_name(p));
    else
        vc_judge_refusal(p, d, false, what);
    vc_quirk_note(quirk);
    vc_close(&s);
}

/* A kick pipe whose writer goes away: its read end reports POLLHUP for ever. */
static void h_kick_hangup(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    int p[2];
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        vc_fail("pipe: %s", strerror(errno));
        vc_close(&s);
        return;
    }
    char d[200];
    bool quirk;
    enum vc_probe pr = vc_probe_ack(&s, VHOST_USER_SET_VRING_KICK, &(uint64_t){0}, 8, &p[0], 1, d, sizeof d, &quirk);
    close(p[0]);
    if (pr != VC_PROBE_ACCEPTED && pr != VC_PROBE_SILENT) {
        close(p[1]);
        vc_judge_refusal(pr, d, false, "SET_VRING_KICK with a pipe's read end");
        vc_close(&s);
        return;
    }
    uint64_t one = 1;
    if (write(p[1], &one, sizeof one) != (ssize_t)sizeof one) { /* one kick, then the writer goes */
    }
    close(p[1]);
    long ms = 0;
    int spin = vc_peer_spins(&ms);
    enum vc_after af = vc_after(&s);
    if (spin == 1)
        vc_fail("after the kick pipe's writer closed, the back-end burnt %ld ms of CPU in 500 ms (POLLHUP "
                "reported for ever; the fd should be dropped)", ms);
    else if (af == VC_AFTER_HUNG)
        vc_fail("after the kick pipe's writer closed, the back-end stopped answering");
    else
        vc_pass("a kick pipe whose writer closed: no spin%s (%ld ms of CPU in 500 ms)",
                af == VC_AFTER_CLOSED ? ", the session ended" : ", still answering", ms);
    vc_quirk_note(quirk);
    vc_close(&s);
}

/* A pipe as call fd that nobody drains: after ~512 notifications (a 4 KiB
 * pipe) it is full. Every completion must still arrive. */
static void h_call_pipe_full(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.no_event_idx = true; /* one notification per completion */
    if (!vc_open_or_fail(&s, &o))
        return;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        vc_fail("pipe: %s", strerror(errno));
        vc_close(&s);
        return;
    }
    fcntl(p[1], F_SETPIPE_SZ, 4096);
    char d[200];
    bool quirk;
    enum vc_probe pr = vc_probe_ack(&s, VHOST_USER_SET_VRING_CALL, &(uint64_t){0}, 8, &p[1], 1, d, sizeof d, &quirk);
    close(p[1]);
    if (pr != VC_PROBE_ACCEPTED && pr != VC_PROBE_SILENT) {
        close(p[0]);
        vc_judge_refusal(pr, d, false, "SET_VRING_CALL with a pipe's write end");
        vc_close(&s);
        return;
    }
    unsigned done = 0;
    const unsigned want = 1500;
    for (; done < want; done++) {
        struct vc_req r;
        vc_req_init(&r, VC_T_IN, done % 64, 0, 512);
        if (vc_req_run(&s, &r) != VC_EV_USED || r.status != VC_S_OK)
            break;
    }
    enum vc_after af = done == want ? vc_after(&s) : VC_AFTER_HUNG;
    if (done == want && af == VC_AFTER_ALIVE)
        vc_pass("%u reads completed and the back-end kept answering while nobody drained the call pipe", want);
    else if (done < want)
        vc_fail("with a call pipe nobody drains, request %u of %u did not complete (a blocking write to a full "
                "pipe? a full pipe already holds a notification)", done + 1, want);
    else
        vc_fail("after %u completions into a full call pipe, the back-end %s", want,
                af == VC_AFTER_CLOSED ? "closed the connection" : "stopped answering");
    vc_quirk_note(quirk);
    close(p[0]);
    vc_close(&s);
}

/* ---- chains longer than seg_max and than any iovec array -------------------------- */

/* param 0: seg_max + 1 data segments; 1: 1024. An IN of 512-byte segments
 * in one indirect table (the ring is shorter than the chain). */
static void h_long_chain(const struct vc_case *c)
{
    unsigned n = c->param == 0 ? vc.info.seg_max + 1 : 1024;
    if (!vc_need(VIRTIO_F_INDIRECT_DESC, "INDIRECT_DESC"))
        return;
    if (c->param == 0 && !vc.info.seg_max) {
        vc_na("the back-end gives no seg_max");
        return;
    }
    if ((uint64_t)n * 512 > vc.disk.bytes || n + 2 > VC_MAX_SEGS) {
        vc_na("%u segments of 512 bytes do not fit the shadowed disk", n);
        return;
    }
    struct vc_sess s;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    static struct vc_req r;
    vc_req_init(&r, VC_T_IN, 0, 0, n * 512);
    r.nwcut = n;
    for (unsigned i = 0; i < n; i++)
        r.wcut[i] = 512 * (i + 1);
    r.mode = VC_INDIRECT;
    vc_req_run(&s, &r);
    char what[80];
    snprintf(what, sizeof what, "an IN of %u data segments (seg_max %u)", n, vc.info.seg_max);
    const uint8_t *data = vc_req_in(&r);
    bool untouched = true;
    for (size_t i = 0; i < (size_t)n * 512 && untouched; i++)
        untouched = data[i] == 0xcc;
    if (r.ev == VC_EV_CLOSED || r.ev == VC_EV_ERRFD) {
        vc_pass("%s: refused: %s", what, vc_ev_name(r.ev));
    } else if (r.ev == VC_EV_TIMEOUT) {
        if (vc_after(&s) == VC_AFTER_HUNG)
            vc_fail("%s: the back-end stopped answering", what);
        else
            vc_warn("%s: never completed (a driver waits for ever)", what);
    } else if (r.status == VC_STATUS_SENTINEL) {
        vc_fail("%s: completed (used len %u) but the status byte (the last descriptor's last byte) was never "
                "written%s", what, r.used.len, untouched ? "" : "; a data buffer was written instead");
    } else if (r.status == VC_S_OK) {
        int64_t bad = vc_disk_check(0, data, (uint64_t)n * 512);
        if (bad >= 0)
            vc_fail("%s: status OK but byte %lld differs from the disk", what, (long long)bad);
        else if (r.used.len != n * 512 + 1)
            vc_warn("%s: served, but used len %u is not the %u bytes written", what, r.used.len, n * 512 + 1);
        else
            vc_pass("%s: served whole (used len %u)", what, r.used.len);
    } else if (!untouched) {
        vc_fail("%s: status %s, but data was written into the buffers", what, vc_status_name(r.status));
    } else if (r.used.len != 1) {
        vc_warn("%s: refused with %s in the status byte, but used len %u (1 byte was written)", what,
                vc_status_name(r.status), r.used.len);
    } else {
        vc_pass("%s: refused as a whole: %s in the status byte, used len 1", what, vc_status_name(r.status));
    }
    vc_close(&s);
}

/* ---- ring messages out of order ---------------------------------------------------- */

/* SET_VRING_ADDR outside guest memory before SET_VRING_NUM. */
static void h_addr_before_num(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    if (!vc_handshake(&s, &o) || !vc_send_mem(&s)) {
        vc_fail("set-up: %s", s.why);
        vc_close(&s);
        return;
    }
    uint64_t out = VC_UVA_BASE + VC_GUEST_BYTES + (1u << 20);
    struct vub_vu_vring_addr a = {0, 0, out, out + 0x4000, out + 0x2000, 0};
    char d[200];
    bool quirk;
    enum vc_probe p = vc_probe_ack(&s, VHOST_USER_SET_VRING_ADDR, &a, sizeof a, NULL, 0, d, sizeof d, &quirk);
    if (p != VC_PROBE_ACCEPTED) {
        vc_judge_refusal(p, d, false, "SET_VRING_ADDR outside guest memory, before SET_VRING_NUM");
        vc_close(&s);
        return;
    }
    struct vub_vu_vring_state st = {0, 128};
    p = vc_probe_ack(&s, VHOST_USER_SET_VRING_NUM, &st, sizeof st, NULL, 0, d, sizeof d, &quirk);
    if (p == VC_PROBE_ACCEPTED)
        vc_warn("SET_VRING_ADDR outside guest memory and then SET_VRING_NUM were both acked: the ring can "
                "never run, and nobody was told");
    else
        vc_judge_refusal(p, d, false, "SET_VRING_NUM after SET_VRING_ADDR outside guest memory");
    vc_quirk_note(quirk);
    vc_close(&s);
}

/* ---- requests and tables the driver got wrong ---------------------------------------- */

/* An OUT whose data buffer is device-writable. The buffer holds what the
 * disk holds, so a back-end that writes it anyway changes nothing. */
static void h_out_writable(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    if (!vc_read_check(&s, 0, sec, 4096, "reading the sectors first")) {
        vc_close(&s);
        return;
    }
    static struct vc_seg segs[4];
    struct vc_req r;
    vc_req_init(&r, VC_T_OUT, sec, 0, 4096);
    unsigned n = vc_req_segs(&s, &r, segs);
    memcpy(vc_g(r.w_gpa), vc.disk.data + sec * 512, 4096);
    if (vc_add(&s, 0, segs, n, VC_DIRECT, 0) < 0) {
        vc_fail("the ring had no room");
        vc_close(&s);
        return;
    }
    vc_kick(&s, 0);
    struct vc_used u;
    enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
    uint8_t st = ev == VC_EV_USED ? *vc_g(r.w_gpa + 4096) : VC_STATUS_SENTINEL;
    if (ev == VC_EV_USED && st == VC_S_OK)
        vc_warn("an OUT whose data buffer is device-writable completed OK (its data is device-readable: "
                "\"Device Operation\"; IOERR expected)");
    else
        vc_judge_hostile(&s, &r, "an OUT whose data buffer is device-writable", false);
    vc_close(&s);
}

/* ---- guest memory that shrinks (last: it kills back-ends) ----------------------------- */

/* The front-end cuts its memory file down to the rings after SET_MEM_TABLE,
 * then offers a request whose buffers lay beyond the new end. A back-end
 * that touches them gets SIGBUS; it should end that session, not die. Our
 * own mapping of the buffers is not touched until the size is restored. */
static void h_shrunk_memory(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    struct vc_req r;
    vc_req_init(&r, VC_T_IN, 2, 0, 4096);
    if (!vc_req_submit(&s, &r, NULL)) {
        vc_fail("the ring had no room");
        vc_close(&s);
        return;
    }
    if (ftruncate(vc.memfd, VC_HEAP_OFF) != 0) {
        vc_fail("ftruncate: %s", strerror(errno));
        vc_close(&s);
        return;
    }
    vc_kick(&s, 0);
    struct pollfd p = {.fd = s.sock, .events = POLLIN};
    bool closed = false;
    for (uint64_t end = vc_now_ms() + VC_WAIT_MS; !closed && vc_now_ms() < end && !vc_peer_gone();) {
        char ch;
        if (poll(&p, 1, 20) == 1)
            closed = (p.revents & (POLLHUP | POLLERR)) || recv(s.sock, &ch, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }
    if (closed)
        vc_sleep_ms(100); /* a back-end that died closed the socket too: let it be reaped */
    bool died = vc_peer_gone();
    if (ftruncate(vc.memfd, VC_GUEST_BYTES) != 0)
        vc_fail("restoring the memory file: %s", strerror(errno));
    if (died)
        vc_fail("the back-end died when its guest memory shrank"); /* the runner adds how */
    else if (closed)
        vc_pass("the back-end ended the session when its guest memory shrank, and lived");
    else if (vc_after(&s) == VC_AFTER_HUNG)
        vc_fail("the back-end stopped answering when its guest memory shrank");
    else
        vc_pass("the back-end lived and kept answering when its guest memory shrank");
    s.closed = closed;
    vc_close(&s);
}

#define H(name, tag, fn, param, sent) {"hostile", name, tag, sent, fn, param, true}
#define H_FD(which, wname, an, tag)                                                                               \
    H("hostile.fd." wname "-devnull", tag, h_fd_kind, VC_FD_DEVNULL + VC_FD_KINDS * (which),                     \
      an " " wname " fd that is /dev/null is refused or harmless"),                                               \
    H("hostile.fd." wname "-devzero", tag, h_fd_kind, VC_FD_DEVZERO + VC_FD_KINDS * (which),                     \
      an " " wname " fd that is /dev/zero is refused or harmless"),                                               \
    H("hostile.fd." wname "-directory", tag, h_fd_kind, VC_FD_DIR + VC_FD_KINDS * (which),                       \
      an " " wname " fd that is a directory is refused or harmless"),                                             \
    H("hostile.fd." wname "-regular-file", tag, h_fd_kind, VC_FD_FILE + VC_FD_KINDS * (which),                   \
      an " " wname " fd that is a regular file is refused or harmless"),                                          \
    H("hostile.fd." wname "-dead-socket", tag, h_fd_kind, VC_FD_DEAD_SOCKET + VC_FD_KINDS * (which),             \
      an " " wname " fd that is a socket whose peer closed is refused or harmless"),                              \
    H("hostile.fd." wname "-wrong-pipe-end", tag, h_fd_kind, VC_FD_WRONG_END + VC_FD_KINDS * (which),            \
      an " " wname " fd that is the wrong end of a pipe is refused or harmless")

static const struct vc_case vc_cases_hostile[] = {
    H_FD(0, "kick", "a", "VU-EVENT-FD"),
    H_FD(1, "call", "a", "VU-EVENT-FD"),
    H_FD(2, "err", "an", "VU-EVENT-FD"),
    H("hostile.fd.kick-hangup", "VU-EVENT-FD", h_kick_hangup, 0,
      "a kick pipe whose writer closes does not make the back-end spin"),
    H("hostile.fd.call-pipe-full", "VU-CALL-NONBLOCK", h_call_pipe_full, 0,
      "a call pipe nobody drains does not stop completions"),
    H("hostile.chain.seg-max-plus-one", "BLK-SEG-MAX", h_long_chain, 0,
      "a request of seg_max + 1 data segments is served or refused with the status in its last byte"),
    H("hostile.chain.1024-segments", "BLK-SEG-MAX", h_long_chain, 1,
      "a request of 1024 data segments is served or refused with the status in its last byte"),
    H("hostile.ring.addr-before-num", "VQ-RING-STATE", h_addr_before_num, 0,
      "SET_VRING_ADDR outside guest memory before SET_VRING_NUM is not silently acked"),
    H("hostile.blk.out-writable-data", "BLK-OUT-DIR", h_out_writable, 0,
      "an OUT whose data buffer is device-writable is not completed OK"),
    /* keep last: a back-end that does not survive it is killed */
    H("hostile.mem.shrunk", "MEM-SHRINK", h_shrunk_memory, 0,
      "guest memory shrunk after SET_MEM_TABLE ends the session, not the back-end"),
};
static const size_t vc_cases_hostile_count = VUB_ARRAY_LEN(vc_cases_hostile);
