/* cases-ring.c: split and packed virtqueue cases (included by vub-conform.c).
 *
 * Notification suppression both ways, indirect tables, descriptor framing,
 * ring sizes and wraps, what the device may and may not write.
 */

/* ---- split: notifications ---------------------------------------------------- */

static bool vc_need_event_idx(void) { return vc_need(VIRTIO_F_EVENT_IDX, "EVENT_IDX"); }

/* Submits one read and waits for it; returns the calls seen (after a short
 * grace period for the eventfd write that follows the used index). */
static int vc_read_count_calls(struct vc_sess *s, unsigned q, unsigned quiet_ms)
{
    vc_calls(s, q);
    struct vc_req r;
    vc_req_init(&r, VC_T_IN, 1, 0, 512);
    r.q = q;
    vc_req_run(s, &r);
    if (r.ev != VC_EV_USED) {
        vc_fail("a read: %s", vc_ev_name(r.ev));
        return -1;
    }
    uint64_t n = 0;
    uint64_t end = vc_now_ms() + quiet_ms;
    while (vc_now_ms() < end && (n = vc_calls(s, q)) == 0)
        vc_sleep_ms(2);
    return (int)n;
}

static void s_notify(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    long k = c->param;
    bool ei = k >= 2;
    if (ei && !vc_need_event_idx())
        return;
    o.no_event_idx = !ei;
    if (!vc_open_or_fail(&s, &o))
        return;
    struct vc_q *q = &s.q[0];
    uint8_t *avail = vc_g(q->avail);
    uint8_t *used_event = avail + 4 + 2 * q->size;
    /* a warm-up request: the first decision after a start may notify regardless */
    vub_put_le16(used_event, q->used_seen);
    if (vc_read_count_calls(&s, 0, VC_QUIET_MS) < 0) {
        vc_close(&s);
        return;
    }
    int calls = 0;
    switch (k) {
    case 0: /* flags 0, no EVENT_IDX: MUST notify */
        vub_put_le16(avail, 0);
        calls = vc_read_count_calls(&s, 0, VC_QUIET_MS);
        if (calls > 0)
            vc_pass("with avail flags 0 the driver was notified");
        else if (calls == 0)
            vc_fail("no notification with avail flags 0 (\"If flags is 0, the device MUST send a notification\")");
        break;
    case 1: /* NO_INTERRUPT: SHOULD NOT notify */
        vub_put_le16(avail, VIRTQ_AVAIL_F_NO_INTERRUPT);
        calls = vc_read_count_calls(&s, 0, VC_QUIET_MS);
        if (calls == 0)
            vc_pass("with NO_INTERRUPT set no notification was sent");
        else if (calls > 0)
            vc_warn("notified despite NO_INTERRUPT (\"If flags is 1, the device SHOULD NOT send a notification\")");
        break;
    case 2: /* used_event == next used index: MUST notify */
    case 5: /* ... even with flags 1: "MUST ignore the lower bit of flags" */
        vub_put_le16(avail, k == 5 ? VIRTQ_AVAIL_F_NO_INTERRUPT : 0);
        vub_put_le16(used_event, q->used_seen);
        calls = vc_read_count_calls(&s, 0, VC_QUIET_MS);
        if (calls > 0)
            vc_pass("used_event = %u was reached and the driver was notified%s", q->used_seen - 1,
                    k == 5 ? " (flags 1 ignored)" : "");
        else if (calls == 0)
            vc_fail("no notification when the used index reached used_event%s (EVENT_IDX: \"the device MUST send "
                    "a notification\")", k == 5 ? " with avail flags 1, which MUST be ignored" : "");
        break;
    case 3: /* used_event ahead: SHOULD NOT notify */
        vub_put_le16(used_event, (uint16_t)(q->used_seen + 10));
        calls = vc_read_count_calls(&s, 0, VC_QUIET_MS);
        if (calls == 0)
            vc_pass("used_event 10 entries ahead: no notification");
        else if (calls > 0)
            vc_warn("notified although used_event was 10 entries ahead (\"Otherwise the device SHOULD NOT send a "
                    "notification\")");
        break;
    case 4: { /* crossed inside a batch of 4: MUST notify */
        vub_put_le16(used_event, (uint16_t)(q->used_seen + 2));
        vc_calls(&s, 0);
        struct vc_req r[4];
        for (int i = 0; i < 4; i++) {
            vc_req_init(&r[i], VC_T_IN, (uint64_t)i, 0, 512);
            vc_req_submit(&s, &r[i], NULL);
        }
        vc_kick(&s, 0);
        struct vc_used u;
        for (int i = 0; i < 4; i++)
            if (vc_wait_used(&s, 0, &u, VC_WAIT_MS) != VC_EV_USED) {
                vc_fail("request %d of the batch did not complete", i);
                break;
            }
        uint64_t n = 0, end = vc_now_ms() + VC_QUIET_MS;
        while (!vc_failed() && vc_now_ms() < end && (n = vc_calls(&s, 0)) == 0)
            vc_sleep_ms(2);
        if (vc_failed())
            break;
        if (n > 0)
            vc_pass("a batch of 4 crossing used_event was notified");
        else
            vc_fail("a batch of 4 whose third entry reached used_event was not notified");
        break;
    }
    }
    vc_close(&s);
}

/* The device's used->flags: 0 or 1 without EVENT_IDX, 0 with it. */
static void s_used_flags(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    bool ei = c->param != 0;
    if (ei && !vc_need_event_idx())
        return;
    o.no_event_idx = !ei;
    if (!vc_open_or_fail(&s, &o))
        return;
    for (int i = 0; i < 20 && !vc_failed(); i++) {
        vc_read_check(&s, 0, (uint64_t)i, 512, "read");
        uint16_t f = vub_le16(vc_g(s.q[0].used));
        if ((ei && f != 0) || (!ei && f > 1))
            vc_fail("used->flags is 0x%x %s EVENT_IDX (\"The device MUST set flags to %s\")", f,
                    ei ? "with" : "without", ei ? "0" : "0 or 1");
    }
    if (!vc_failed())
        vc_pass("used->flags stayed %s over 20 requests", ei ? "0" : "0 or 1");
    vc_close(&s);
}

/* A driver that kicks only when the device asks for it (avail_event, or
 * NO_NOTIFY): every request must still be served. */
static void s_kick_obey(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    bool ei = c->param != 0;
    if (ei && !vc_need_event_idx())
        return;
    o.no_event_idx = !ei;
    if (!vc_open_or_fail(&s, &o))
        return;
    struct vc_q *q = &s.q[0];
    uint64_t rng = 0x6b1c4;
    unsigned done = 0, kicks = 0, total = 200;
    static struct vc_req r[8];
    while (done < total && !vc_failed()) {
        unsigned k = 1 + (unsigned)vc_rand_below(&rng, 8);
        uint16_t old = q->avail_idx;
        for (unsigned i = 0; i < k; i++) {
            vc_req_init(&r[i], VC_T_IN, (done + i) % 64, 0, 512);
            vc_req_submit(&s, &r[i], NULL);
        }
        atomic_thread_fence(memory_order_seq_cst); /* publish idx, then read the device's wish */
        bool kick;
        if (ei) {
            uint16_t avail_event = vub_ring_load16(vc_g(q->used) + 4 + 8 * q->size, memory_order_relaxed);
            kick = vub_need_event(avail_event, q->avail_idx, old);
        } else {
            kick = !(vub_ring_load16(vc_g(q->used), memory_order_relaxed) & VIRTQ_USED_F_NO_NOTIFY);
        }
        if (kick) {
            vc_kick(&s, 0);
            kicks++;
        }
        for (unsigned i = 0; i < k; i++) {
            struct vc_used u;
            enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
            if (ev != VC_EV_USED) {
                vc_fail("request %u: %s (the driver %s, as %s told it)", done + i, vc_ev_name(ev),
                        kick ? "kicked" : "did not kick", ei ? "avail_event" : "used->flags");
                break;
            }
        }
        done += k;
    }
    if (!vc_failed())
        vc_pass("%u requests served with %u kicks, the driver kicking only when %s asked", total, kicks,
                ei ? "avail_event" : "NO_NOTIFY clear");
    vc_close(&s);
}

/* Kicks with nothing available: "The device MUST handle spurious notifications". */
static void s_spurious(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    for (int i = 0; i < 50; i++) {
        vc_kick(&s, 0);
        vc_sleep_ms(1);
    }
    vc_sleep_ms(50);
    struct vc_used u;
    if (vc_take_used(&s, 0, &u))
        vc_fail("a used entry appeared although nothing was made available");
    else if (vc_after(&s) != VC_AFTER_ALIVE)
        vc_fail("the back-end stopped answering after 50 spurious kicks");
    else if (vc_io_roundtrip(&s, 0, "after spurious kicks"))
        vc_pass("50 spurious kicks changed nothing; the ring then serves I/O");
    vc_close(&s);
}

/* ---- indirect ------------------------------------------------------------- */

static void s_indirect(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    long k = c->param;
    if (!vc_need(VIRTIO_F_INDIRECT_DESC, "INDIRECT_DESC"))
        return;
    if (k == 3)
        o.mem = VC_MEM_TWO;
    if (!vc_open_or_fail(&s, &o))
        return;
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    uint8_t data[2048];
    vc_fill_pattern(data, sizeof data, 0x1d1 + (uint64_t)k);
    struct vc_req w, r;
    vc_req_init(&w, VC_T_OUT, sec, sizeof data, 0);
    w.out = data;
    vc_req_init(&r, VC_T_IN, sec, 0, sizeof data);
    const char *what = "";
    switch (k) {
    case 0: w.mode = r.mode = VC_INDIRECT; what = "a request in one indirect table"; break;
    case 1: /* header direct, the rest indirect */
        w.mode = r.mode = VC_MIXED;
        w.ndirect = r.ndirect = 1;
        what = "a direct header descriptor followed by an INDIRECT one";
        break;
    case 2: w.mode = r.mode = VC_INDIRECT; vc_ind_extra_flags = VIRTQ_DESC_F_WRITE;
        what = "an INDIRECT descriptor with the WRITE flag set (the device MUST ignore it)"; break;
    case 3: w.mode = r.mode = VC_INDIRECT;
        what = "an indirect table spanning two memory regions"; break;
    case 4: { /* many segments */
        unsigned segs = vc.info.seg_max && vc.info.seg_max < 64 ? vc.info.seg_max : 64;
        w.mode = r.mode = VC_INDIRECT;
        w.nrcut = 0;
        for (unsigned i = 1; i <= segs && i * 32 < sizeof data; i++)
            w.rcut[w.nrcut++] = 16 + i * 32;
        r.nwcut = 0;
        for (unsigned i = 1; i <= segs && i * 32 < sizeof data; i++)
            r.wcut[r.nwcut++] = i * 32;
        what = "an indirect table of many small segments";
        break;
    }
    }
    if (k == 3)
        vc_table_gpa_next = VC_GPA_BASE + VC_GUEST_BYTES / 2 - 16 * 2; /* 2 entries below, the rest above */
    vc_req_run(&s, &w);
    if (k == 3)
        vc_table_gpa_next = VC_GPA_BASE + VC_GUEST_BYTES / 2 - 16;
    if (k == 2)
        vc_ind_extra_flags = VIRTQ_DESC_F_WRITE;
    vc_req_run(&s, &r);
    vc_ind_extra_flags = 0;
    vc_table_gpa_next = 0;
    char sw[120], sr[120];
    vc_req_say(&w, sw, sizeof sw);
    vc_req_say(&r, sr, sizeof sr);
    if (w.ev != VC_EV_USED || w.status != VC_S_OK || r.ev != VC_EV_USED || r.status != VC_S_OK) {
        vc_disk_forget(sec, sizeof data / 512);
        vc_fail("%s: write %s; read %s%s", what, sw, sr,
                k == 1 ? " (\"The device MUST handle the case of zero or more normal chained descriptors followed "
                         "by a single descriptor with flags & VIRTQ_DESC_F_INDIRECT\")" : "");
    } else if (memcmp(vc_req_in(&r), data, sizeof data)) {
        vc_disk_forget(sec, sizeof data / 512);
        vc_fail("%s: the data read back differs from the data written", what);
    } else {
        vc_disk_learn(sec, data, sizeof data);
        vc_pass("%s: written and read back", what);
    }
    vc_close(&s);
}

/* ---- framing: where the header, data and status are cut ---------------------- */

/* An OUT of 512 bytes with the header cut at byte k, then read back. */
static void s_hdr_cut(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    bool packed = c->param >= 100;
    uint32_t k = (uint32_t)(c->param % 100);
    if (packed) {
        if (!vc_need(VIRTIO_F_RING_PACKED, "RING_PACKED"))
            return;
        o.packed = true;
    }
    if (!vc_open_or_fail(&s, &o))
        return;
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    uint8_t data[512];
    vc_fill_pattern(data, sizeof data, 0xc07 + k);
    struct vc_req w;
    vc_req_init(&w, VC_T_OUT, sec, 512, 0);
    w.out = data;
    w.nrcut = 0;
    w.rcut[w.nrcut++] = k;
    w.rcut[w.nrcut++] = 16;
    vc_req_run(&s, &w);
    if (w.ev != VC_EV_USED || w.status != VC_S_OK) {
        char say[120];
        vc_req_say(&w, say, sizeof say);
        vc_disk_forget(sec, 1);
        vc_fail("a write whose 16-byte header is cut at byte %u: %s (\"The device MUST NOT make assumptions about "
                "the particular arrangement of descriptors\")", k, say);
    } else {
        vc_disk_learn(sec, data, 512);
        if (vc_read_check(&s, 0, sec, 512, "read back"))
            vc_pass("header cut into %u + %u bytes: written and read back", k, 16 - k);
    }
    vc_close(&s);
}

/* Sweeps: every cut of an OUT's readable part, every cut of an IN's
 * writable part (data | status), on a split or packed ring. */
static void s_every_cut(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    bool packed = c->param >= 100, in = c->param % 100 != 0;
    if (packed) {
        if (!vc_need(VIRTIO_F_RING_PACKED, "RING_PACKED"))
            return;
        o.packed = true;
    }
    if (!vc_open_or_fail(&s, &o))
        return;
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    uint8_t data[512];
    unsigned bad = 0, first = 0, n = 0;
    char say[120] = "";
    for (uint32_t cut = 1; cut < (in ? 513u : 528u) && !s.closed; cut++, n++) {
        struct vc_req r;
        if (in) {
            vc_req_init(&r, VC_T_IN, sec, 0, 512);
            r.nwcut = 1;
            r.wcut[0] = cut;
        } else {
            vc_fill_pattern(data, sizeof data, 0xe0c + cut);
            vc_req_init(&r, VC_T_OUT, sec, 512, 0);
            r.out = data;
            r.nrcut = 1;
            r.rcut[0] = cut;
        }
        vc_req_run(&s, &r);
        bool ok = r.ev == VC_EV_USED && r.status == VC_S_OK;
        if (ok && in)
            ok = vc_disk_check(sec, vc_req_in(&r), 512) < 0;
        if (!in) {
            if (r.ev == VC_EV_USED && r.status == VC_S_OK)
                vc_disk_learn(sec, data, 512);
            else
                vc_disk_forget(sec, 1);
        }
        if (!ok && !bad++) {
            first = cut;
            vc_req_say(&r, say, sizeof say);
        }
    }
    if (bad)
        vc_fail("%u of %u cuts failed; first at byte %u: %s", bad, n, first, say);
    else if (!in && !vc_read_check(&s, 0, sec, 512, "read back"))
        ;
    else
        vc_pass("%u placements of the cut, each served correctly", n);
    vc_close(&s);
}

/* Other framings of one request. */
static void s_framing(const struct vc_case *c)
{
    struct vc_sess s;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    uint8_t data[4096];
    vc_fill_pattern(data, sizeof data, 0xf7a + (uint64_t)c->param);
    struct vc_req r;
    const char *what = "";
    bool is_in = true;
    uint32_t len = 512;
    switch (c->param) {
    case 0: /* IN: data and status in one writable descriptor */
        vc_req_init(&r, VC_T_IN, sec, 0, 512);
        r.nwcut = 0;
        what = "IN with the status byte as the last byte of the data descriptor";
        break;
    case 1: /* OUT: header and data in one readable descriptor */
        vc_req_init(&r, VC_T_OUT, sec, 512, 0);
        r.out = data;
        r.nrcut = 0;
        is_in = false;
        what = "OUT with the header and the data in one descriptor";
        break;
    case 2: /* IN: header as 16 one-byte descriptors */
        vc_req_init(&r, VC_T_IN, sec, 0, 512);
        r.nrcut = 0;
        for (uint32_t i = 1; i < 16; i++)
            r.rcut[r.nrcut++] = i;
        r.nwcut = 0;
        for (uint32_t i = 1; i < 4; i++)
            r.wcut[r.nwcut++] = i * 128;
        r.wcut[r.nwcut++] = 512;
        what = "IN with the header in 16 one-byte descriptors";
        break;
    case 3: /* OUT: 4 KiB data in 32 descriptors */
        len = 4096;
        vc_req_init(&r, VC_T_OUT, sec, 4096, 0);
        r.out = data;
        for (uint32_t i = 1; i < 32; i++)
            r.rcut[r.nrcut++] = 16 + i * 128;
        is_in = false;
        what = "OUT of 4 KiB in 32 data descriptors";
        break;
    case 4: /* IN: 4 KiB, data in odd-sized pieces, status in the last piece */
        len = 4096;
        vc_req_init(&r, VC_T_IN, sec, 0, 4096);
        r.nwcut = 0;
        for (uint32_t at = 1000; at < 4096; at += 1000)
            r.wcut[r.nwcut++] = at;
        what = "IN of 4 KiB in pieces of 1000 bytes, the status inside the last";
        break;
    case 5: /* OUT: header split 8+8 and the data joined to the second half */
        vc_req_init(&r, VC_T_OUT, sec, 512, 0);
        r.out = data;
        r.nrcut = 1;
        r.rcut[0] = 8;
        is_in = false;
        what = "OUT with the header cut 8 + (8 + data)";
        break;
    }
    if (!is_in) {
        vc_req_run(&s, &r);
        if (r.ev != VC_EV_USED || r.status != VC_S_OK) {
            char say[120];
            vc_req_say(&r, say, sizeof say);
            vc_disk_forget(sec, len / 512);
            vc_fail("%s: %s", what, say);
        } else {
            vc_disk_learn(sec, data, len);
            if (vc_read_check(&s, 0, sec, len, "read back"))
                vc_pass("%s: served", what);
        }
    } else {
        vc_req_run(&s, &r);
        char say[120];
        vc_req_say(&r, say, sizeof say);
        if (r.ev != VC_EV_USED || r.status != VC_S_OK)
            vc_fail("%s: %s", what, say);
        else if (vc_disk_check(sec, vc_req_in(&r), len) >= 0)
            vc_fail("%s: the data differs from the disk", what);
        else
            vc_pass("%s: served", what);
    }
    vc_close(&s);
}

/* Zero-length descriptors: the spec does not forbid them. */
static void s_zero_len(const struct vc_case *c)
{
    struct vc_sess s;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    static struct vc_seg segs[8];
    struct vc_req r;
    vc_req_init(&r, VC_T_IN, 2, 0, 512);
    vc_req_segs(&s, &r, segs); /* lays out and fills header/status */
    uint64_t spare = vc_alloc(&s, 64, 64);
    unsigned n;
    if (c->param == 0) { /* header, zero-length readable, data+status */
        segs[0] = (struct vc_seg){r.r_gpa, 16, false};
        segs[1] = (struct vc_seg){spare, 0, false};
        segs[2] = (struct vc_seg){r.w_gpa, 512, true};
        segs[3] = (struct vc_seg){r.w_gpa + 512, 1, true};
        n = 4;
    } else { /* header, data, zero-length writable in the middle, status */
        segs[0] = (struct vc_seg){r.r_gpa, 16, false};
        segs[1] = (struct vc_seg){r.w_gpa, 512, true};
        segs[2] = (struct vc_seg){spare, 0, true};
        segs[3] = (struct vc_seg){r.w_gpa + 512, 1, true};
        n = 4;
    }
    vc_add(&s, 0, segs, n, VC_DIRECT, 0);
    vc_kick(&s, 0);
    struct vc_used u;
    enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
    uint8_t st = *vc_g(r.w_gpa + 512);
    if (ev == VC_EV_USED && st == VC_S_OK) {
        if (vc_disk_check(2, vc_req_in(&r), 512) >= 0)
            vc_fail("served with OK but the data differs from the disk");
        else
            vc_pass("a chain with a zero-length descriptor was served correctly");
    } else if (ev == VC_EV_TIMEOUT && vc_after(&s) == VC_AFTER_HUNG) {
        vc_fail("the back-end stopped answering");
    } else {
        vc_pass("a zero-length descriptor was refused (%s, status %u): the spec neither forbids nor requires them",
                vc_ev_name(ev), st);
    }
    vc_close(&s);
}

/* What the device must not write; what it must report. */
static void s_device_writes(const struct vc_case *c)
{
    struct vc_sess s;
    if (!vc_open_or_fail(&s, &vc_default_setup))
        return;
    struct vc_q *q = &s.q[0];
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    static struct vc_req r[8];
    uint8_t data[8][1024];
    int heads[8];
    for (int i = 0; i < 8; i++) {
        bool out = i % 2 == 0;
        vc_fill_pattern(data[i], sizeof data[i], 0xdead + (uint64_t)i);
        if (out) {
            vc_req_init(&r[i], VC_T_OUT, sec + 2 * (uint64_t)i, 1024, 0);
            r[i].out = data[i];
            if (i == 4) { r[i].nrcut = 2; r[i].rcut[0] = 7; r[i].rcut[1] = 500; }
        } else {
            vc_req_init(&r[i], VC_T_IN, sec + 2 * (uint64_t)(i - 1), 0, 1024);
            if (i == 3) { r[i].nwcut = 2; r[i].wcut[0] = 100; r[i].wcut[1] = 1024; }
        }
        vc_req_submit(&s, &r[i], &heads[i]);
    }
    static uint8_t table_before[16 * 128], hdr_before[8][16 + 1024];
    memcpy(table_before, vc_g(q->desc), 16u * q->size);
    for (int i = 0; i < 8; i++)
        memcpy(hdr_before[i], vc_g(r[i].r_gpa), 16 + r[i].out_len);
    vc_kick(&s, 0);
    int seen[8] = {0};
    for (int i = 0; i < 8; i++) {
        struct vc_used u;
        enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
        if (ev != VC_EV_USED) {
            vc_fail("request %d of 8: %s", i, vc_ev_name(ev));
            break;
        }
        int which = -1;
        for (int j = 0; j < 8; j++)
            if ((uint32_t)heads[j] == u.id)
                which = j;
        if (which < 0 || seen[which]++) {
            vc_fail("used id %u is not the head of a chain in flight (\"id indicates the head entry of the "
                    "descriptor chain\")", u.id);
            continue;
        }
        uint32_t writable = r[which].in_len + 1;
        if (c->param == 1 && u.len > writable)
            vc_fail("used len %u exceeds the %u writable bytes (\"The device MUST write at least len bytes\")",
                    u.len, writable);
    }
    for (int i = 0; i < 8; i += 2) {
        if (*vc_g(r[i].w_gpa) == VC_S_OK)
            vc_disk_learn(r[i].sector, data[i], 1024);
        else
            vc_disk_forget(r[i].sector, 2);
    }
    if (!vc_failed()) {
        if (c->param == 0 && memcmp(table_before, vc_g(q->desc), 16u * q->size))
            vc_fail("the descriptor table changed (\"A device MUST NOT write to any descriptor table entry\")");
        for (int i = 0; i < 8 && c->param == 2; i++)
            if (memcmp(hdr_before[i], vc_g(r[i].r_gpa), 16 + r[i].out_len))
                vc_fail("request %d: a device-readable buffer changed (\"A device MUST NOT write to a "
                        "device-readable buffer\")", i);
    }
    if (!vc_failed())
        vc_pass(c->param == 0   ? "8 requests in flight: the descriptor table was not written"
                : c->param == 1 ? "8 requests: every used id is a head in flight, each once, len within bounds"
                                : "8 requests: headers and write data were not written by the device");
    vc_close(&s);
}

/* Ring sizes (split: powers of two up to 32768). */
static void s_ring_size(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    uint32_t n = (uint32_t)c->param;
    bool packed = false;
    if (n >= 100000) {
        n -= 100000;
        packed = true;
        if (!vc_need(VIRTIO_F_RING_PACKED, "RING_PACKED"))
            return;
    }
    o.size = n;
    o.packed = packed;
    if (!vc_open(&s, &o)) {
        bool pow2 = (n & (n - 1)) == 0;
        if (n == 32768 || (packed && !pow2))
            vc_warn("a %s ring of %u entries was refused: %s", packed ? "packed" : "split", n, s.why);
        else
            vc_fail("a %s ring of %u entries was refused: %s", packed ? "packed" : "split", n, s.why);
        vc_close(&s);
        return;
    }
    /* several laps: batches of up to 16 in flight. A read takes 3
     * descriptors, 2 with data and status joined, 1 as an indirect table. */
    unsigned per = n >= 3 ? 3 : n;
    if (per == 1 && !vc_has_f(s.features, VIRTIO_F_INDIRECT_DESC)) {
        vc_na("a 1-entry ring needs INDIRECT_DESC to carry a request");
        vc_close(&s);
        return;
    }
    unsigned total = 3 * n + 2 < 200 ? 3 * n + 2 : 200, done = 0;
    static struct vc_req r[16];
    while (done < total && !vc_failed()) {
        unsigned k = n / per < 16 ? n / per : 16;
        if (k > total - done)
            k = total - done;
        for (unsigned i = 0; i < k; i++) {
            vc_req_init(&r[i], VC_T_IN, (done + i) % 32, 0, 512);
            if (per < 3)
                r[i].nwcut = 0;
            if (per == 1)
                r[i].mode = VC_INDIRECT;
            vc_req_submit(&s, &r[i], NULL);
        }
        vc_kick(&s, 0);
        for (unsigned i = 0; i < k; i++) {
            struct vc_used u;
            enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
            if (ev != VC_EV_USED) {
                vc_fail("request %u: %s", done + i, vc_ev_name(ev));
                break;
            }
        }
        for (unsigned i = 0; i < k && !vc_failed(); i++)
            if (*vc_g(r[i].w_gpa + 512) != VC_S_OK || vc_disk_check(r[i].sector, vc_req_in(&r[i]), 512) >= 0)
                vc_fail("request %u: status %u or wrong data", done + i, *vc_g(r[i].w_gpa + 512));
        done += k;
    }
    if (!vc_failed())
        vc_pass("a %s ring of %u entries served %u requests (%u laps)", packed ? "packed" : "split", n, total,
                (total + n - 1) / n);
    vc_close(&s);
}

/* A full ring in one kick. */
static void s_full_ring(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.size = 128;
    o.packed = c->param != 0;
    if (o.packed && !vc_need(VIRTIO_F_RING_PACKED, "RING_PACKED"))
        return;
    if (!vc_open_or_fail(&s, &o))
        return;
    static struct vc_req r[128];
    unsigned n = 0;
    for (unsigned i = 0; i < 128; i++) {
        vc_req_init(&r[i], VC_T_IN, i % 64, 0, 512);
        if (!vc_req_submit(&s, &r[i], NULL))
            break;
        n++;
    }
    vc_kick(&s, 0);
    for (unsigned i = 0; i < n; i++) {
        struct vc_used u;
        enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
        if (ev != VC_EV_USED) {
            vc_fail("request %u of %u: %s", i, n, vc_ev_name(ev));
            break;
        }
    }
    for (unsigned i = 0; i < n && !vc_failed(); i++)
        if (*vc_g(r[i].w_gpa + 512) != VC_S_OK || vc_disk_check(r[i].sector, vc_req_in(&r[i]), 512) >= 0)
            vc_fail("request %u: status %u or wrong data", i, *vc_g(r[i].w_gpa + 512));
    if (!vc_failed())
        vc_pass("%u requests made available at once (a full ring) all completed correctly", n);
    vc_close(&s);
}

/* ---- packed ------------------------------------------------------------------ */

static bool vc_open_packed(struct vc_sess *s, struct vc_setup *o)
{
    if (!vc_need(VIRTIO_F_RING_PACKED, "RING_PACKED"))
        return false;
    o->packed = true;
    return vc_open_or_fail(s, o);
}

static void k_io(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    if (!vc_open_packed(&s, &o))
        return;
    if (vc_io_roundtrip(&s, 0, "packed") && vc_io_roundtrip(&s, 0, "packed, again"))
        vc_pass("writes and reads over a packed ring are correct");
    vc_close(&s);
}

/* A list of several descriptors: the device must skip as many slots. */
static void k_chain(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.size = 16;
    if (c->param == 1) {
        if (!vc_need(VIRTIO_F_INDIRECT_DESC, "INDIRECT_DESC"))
            return;
    }
    if (!vc_open_packed(&s, &o))
        return;
    for (int round = 0; round < 12 && !vc_failed(); round++) {
        struct vc_req r;
        vc_req_init(&r, VC_T_IN, (uint64_t)round, 0, 2048);
        r.nrcut = 1;
        r.rcut[0] = 9;
        r.nwcut = 0;
        for (uint32_t at = 512; at <= 2048; at += 512)
            r.wcut[r.nwcut++] = at;
        if (c->param == 1) {
            r.mode = VC_INDIRECT;
            if (round % 2)
                vc_table_extra_flags = VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT;
        }
        vc_req_run(&s, &r);
        vc_table_extra_flags = 0;
        char say[120];
        vc_req_say(&r, say, sizeof say);
        if (r.ev != VC_EV_USED || r.status != VC_S_OK)
            vc_fail("round %d: %s%s", round, say,
                    c->param == 1 && round % 2 ? " (flags other than WRITE inside a packed indirect table \"are "
                                                 "reserved and are ignored by the device\")" : "");
        else if (vc_disk_check((uint64_t)round, vc_req_in(&r), 2048) >= 0)
            vc_fail("round %d: wrong data", round);
    }
    if (!vc_failed())
        vc_pass(c->param == 0 ? "6-descriptor lists on a 16-slot ring: each used descriptor found where the "
                                "driver expects it, across wraps"
                              : "indirect tables over a packed ring, with reserved NEXT/INDIRECT bits inside "
                                "the table ignored");
    vc_close(&s);
}

/* The used descriptor: id echoed (any 16-bit value), WRITE set iff data written. */
static void k_used_desc(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    if (!vc_open_packed(&s, &o))
        return;
    static const uint16_t ids[] = {40000, 65535, 0, 7};
    for (unsigned i = 0; i < VUB_ARRAY_LEN(ids) && !vc_failed(); i++) {
        static struct vc_seg segs[4];
        struct vc_req r;
        vc_req_init(&r, VC_T_IN, i, 0, 512);
        unsigned n = vc_req_segs(&s, &r, segs);
        int id = vc_packed_add(&s, 0, segs, n, VC_DIRECT, ids[i]);
        vc_kick(&s, 0);
        struct vc_used u;
        enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
        if (ev != VC_EV_USED)
            vc_fail("buffer id %u: %s", ids[i], vc_ev_name(ev));
        else if (u.id != (uint32_t)id)
            vc_fail("buffer id %u came back as %u (the id is the driver's, \"Buffer ID\")", ids[i], u.id);
        else if (!(u.flags & VIRTQ_DESC_F_WRITE))
            vc_fail("a read's used descriptor lacks WRITE (\"In a used descriptor, this bit is used to specify "
                    "whether any data has been written\"); len %u is then reserved", u.len);
        else if (u.len < 1 || u.len > 513)
            vc_fail("used len %u for a 512-byte read", u.len);
        else if (*vc_g(r.w_gpa + 512) != VC_S_OK || vc_disk_check(i, vc_req_in(&r), 512) >= 0)
            vc_fail("buffer id %u: status or data wrong", ids[i]);
    }
    if (!vc_failed())
        vc_pass("ids 40000, 65535, 0 and 7 echoed; used descriptors carry WRITE and a length");
    vc_close(&s);
}

/* A descriptor that was never made available must not be used. */
static void k_not_avail(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    if (!vc_open_packed(&s, &o))
        return;
    struct vc_q *q = &s.q[0];
    struct vc_req r;
    static struct vc_seg segs[4];
    vc_req_init(&r, VC_T_IN, 0, 0, 512);
    unsigned n = vc_req_segs(&s, &r, segs);
    uint8_t *ring = vc_g(q->desc);
    /* lap 1: available means AVAIL=1 USED=0; write AVAIL=USED (looks used) or both 0 */
    uint16_t bits = c->param == 0 ? (VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED) : 0;
    for (unsigned i = 0; i < n; i++)
        vc_put_pdesc(ring + 16 * i, segs[i].gpa, segs[i].len, 1,
                     (uint16_t)(bits | (segs[i].write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)));
    uint8_t before[64];
    memcpy(before, ring, sizeof before);
    vc_kick(&s, 0);
    vc_sleep_ms(VC_QUIET_MS);
    if (memcmp(before, ring, sizeof before) || *vc_g(r.w_gpa + 512) != VC_STATUS_SENTINEL)
        vc_fail("a descriptor with AVAIL/USED = %u/%u in the first lap was used (\"A device MUST NOT use a "
                "descriptor unless it observes the VIRTQ_DESC_F_AVAIL bit in its flags being changed\")",
                c->param == 0, c->param == 0);
    else
        vc_pass("descriptors not made available were left alone");
    vc_close(&s);
}

/* Driver event suppression: ENABLE notifies, DISABLE does not, DESC at off. */
static void k_notify(const struct vc_case *c)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    long k = c->param;
    if (k == 2 && !vc_need_event_idx())
        return;
    if (!vc_open_packed(&s, &o))
        return;
    struct vc_q *q = &s.q[0];
    uint8_t *drv = vc_g(q->avail);
    vc_read_count_calls(&s, 0, VC_QUIET_MS); /* warm-up */
    int calls = 0;
    switch (k) {
    case 0:
        vub_put_le16(drv + 2, RING_EVENT_FLAGS_ENABLE);
        calls = vc_read_count_calls(&s, 0, VC_QUIET_MS);
        if (calls > 0)
            vc_pass("driver event flags ENABLE: notified");
        else if (calls == 0)
            vc_fail("driver event flags ENABLE but no notification");
        break;
    case 1:
        vub_put_le16(drv + 2, RING_EVENT_FLAGS_DISABLE);
        calls = vc_read_count_calls(&s, 0, VC_QUIET_MS);
        if (calls == 0)
            vc_pass("driver event flags DISABLE: not notified");
        else if (calls > 0)
            vc_warn("notified although the driver event flags say DISABLE");
        break;
    case 2:
        vub_put_le16(drv, (uint16_t)(q->next_used | (q->used_wrap ? 0x8000u : 0)));
        vub_put_le16(drv + 2, RING_EVENT_FLAGS_DESC);
        calls = vc_read_count_calls(&s, 0, VC_QUIET_MS);
        if (calls > 0)
            vc_pass("driver event DESC at the next used slot: notified");
        else if (calls == 0)
            vc_fail("driver event DESC named the slot that was used, but no notification");
        break;
    }
    vc_close(&s);
}

/* Device event suppression: a driver that does not kick when told DISABLE. */
static void k_kick_obey(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.size = 32;
    if (!vc_open_packed(&s, &o))
        return;
    struct vc_q *q = &s.q[0];
    uint64_t rng = 0x9ac4;
    unsigned done = 0, kicks = 0, total = 150;
    static struct vc_req r[8];
    while (done < total && !vc_failed()) {
        unsigned k = 1 + (unsigned)vc_rand_below(&rng, 8);
        for (unsigned i = 0; i < k; i++) {
            vc_req_init(&r[i], VC_T_IN, (done + i) % 64, 0, 512);
            vc_req_submit(&s, &r[i], NULL);
        }
        atomic_thread_fence(memory_order_seq_cst);
        uint16_t flags = vub_ring_load16(vc_g(q->used) + 2, memory_order_relaxed) & 3u;
        bool kick = flags != RING_EVENT_FLAGS_DISABLE;
        if (kick) {
            vc_kick(&s, 0);
            kicks++;
        }
        for (unsigned i = 0; i < k; i++) {
            struct vc_used u;
            enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
            if (ev != VC_EV_USED) {
                vc_fail("request %u: %s (device event flags %u, driver %s)", done + i, vc_ev_name(ev), flags,
                        kick ? "kicked" : "did not kick");
                break;
            }
        }
        done += k;
    }
    if (!vc_failed())
        vc_pass("%u requests served with %u kicks, the driver obeying the device event suppression", total, kicks);
    vc_close(&s);
}

/* GET_VRING_BASE of a packed ring, and a resume with requests outstanding. */
static void k_base(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.size = 16;
    if (!vc_open_packed(&s, &o))
        return;
    struct vc_q *q = &s.q[0];
    for (int i = 0; i < 21 && !vc_failed(); i++)
        vc_read_check(&s, 0, (uint64_t)i, 512, "before the stop");
    char d[200];
    uint32_t num = 0;
    if (vc_failed() || !vc_get_base(&s, 0, &num, d, sizeof d)) {
        if (!vc_failed())
            vc_fail("%s", d);
        vc_close(&s);
        return;
    }
    uint32_t avail_half = (uint32_t)q->next_avail | (uint32_t)q->avail_wrap << 15;
    uint32_t used_half = (uint32_t)q->next_used | (uint32_t)q->used_wrap << 15;
    if ((num & 0xffff) != avail_half)
        vc_fail("GET_VRING_BASE 0x%x: bits 0-15 should be 0x%x (next avail slot %u, wrap %u)", num, avail_half,
                q->next_avail, q->avail_wrap);
    else if ((num >> 16) != used_half && (num >> 16) != 0)
        vc_fail("GET_VRING_BASE 0x%x: bits 16-31 should be 0x%x (next used slot, wrap)", num, used_half);
    if (vc_failed()) {
        vc_close(&s);
        return;
    }
    bool used_half_missing = (num >> 16) == 0 && used_half != 0;
    uint32_t base = vc_packed_base(q); /* where the device stopped: our own record of both halves */
    struct vc_req r[3];
    for (int i = 0; i < 3; i++) {
        vc_req_init(&r[i], VC_T_IN, (uint64_t)i, 0, 512);
        vc_req_submit(&s, &r[i], NULL);
    }
    if (!vc_resume(&s, 0, base)) {
        vc_fail("resume: %s", s.why);
    } else {
        vc_kick(&s, 0);
        for (int i = 0; i < 3; i++) {
            struct vc_used u;
            enum vc_ev ev = vc_wait_used(&s, 0, &u, VC_WAIT_MS);
            if (ev != VC_EV_USED) {
                vc_fail("after resume, request %d: %s", i, vc_ev_name(ev));
                break;
            }
            if (*vc_g(r[i].w_gpa + 512) != VC_S_OK || vc_disk_check((uint64_t)i, vc_req_in(&r[i]), 512) >= 0)
                vc_fail("after resume, request %d: status or data wrong", i);
        }
    }
    if (!vc_failed()) {
        if (used_half_missing)
            vc_warn("GET_VRING_BASE 0x%x carries only the available half (bits 16-31 for the used position are 0)",
                    num);
        else
            vc_pass("GET_VRING_BASE 0x%08x encodes both positions and wrap counters; resumed with 3 outstanding", num);
    }
    vc_close(&s);
}

#define S(name, tag, fn, param, sent) {"split", name, tag, sent, fn, param, false}
#define SH(name, tag, fn, param, sent) {"split", name, tag, sent, fn, param, true}
#define K(name, tag, fn, param, sent) {"packed", name, tag, sent, fn, param, false}

static const struct vc_case vc_cases_split[] = {
    S("split.notify.flags-0", "VQ-SPLIT-NOTIFY", s_notify, 0,
      "without EVENT_IDX and with avail flags 0 the driver is notified"),
    S("split.notify.no-interrupt", "VQ-SPLIT-NOTIFY", s_notify, 1,
      "without EVENT_IDX, NO_INTERRUPT suppresses the notification"),
    S("split.notify.used-event-reached", "VQ-SPLIT-NOTIFY", s_notify, 2,
      "with EVENT_IDX, reaching used_event notifies"),
    S("split.notify.used-event-ahead", "VQ-SPLIT-NOTIFY", s_notify, 3,
      "with EVENT_IDX, used_event ahead suppresses the notification"),
    S("split.notify.used-event-in-batch", "VQ-SPLIT-NOTIFY", s_notify, 4,
      "with EVENT_IDX, a batch crossing used_event notifies"),
    S("split.notify.event-idx-ignores-flags", "VQ-SPLIT-NOTIFY", s_notify, 5,
      "with EVENT_IDX the NO_INTERRUPT bit is ignored"),
    S("split.used-flags", "VQ-SPLIT-USED-FLAGS", s_used_flags, 0,
      "without EVENT_IDX the device sets used->flags to 0 or 1"),
    S("split.used-flags-event-idx", "VQ-SPLIT-USED-FLAGS", s_used_flags, 1,
      "with EVENT_IDX the device keeps used->flags at 0"),
    S("split.kick.avail-event", "VQ-SPLIT-KICK-RACE", s_kick_obey, 1,
      "a driver that kicks only when avail_event asks is always served"),
    S("split.kick.no-notify", "VQ-SPLIT-KICK-RACE", s_kick_obey, 0,
      "a driver that does not kick while NO_NOTIFY is set is always served"),
    S("split.kick.spurious", "VQ-SPURIOUS-KICK", s_spurious, 0,
      "spurious kicks with nothing available change nothing"),
    S("split.indirect.head", "VQ-INDIRECT", s_indirect, 0, "a request in a single indirect table is served"),
    S("split.indirect.after-direct", "VQ-INDIRECT-ANYWHERE", s_indirect, 1,
      "direct descriptors followed by an INDIRECT one are served"),
    S("split.indirect.write-flag", "VQ-INDIRECT", s_indirect, 2,
      "the WRITE flag on an INDIRECT descriptor is ignored"),
    S("split.indirect.straddle", "VQ-INDIRECT", s_indirect, 3,
      "an indirect table spanning two memory regions is read whole"),
    S("split.indirect.many", "VQ-INDIRECT", s_indirect, 4,
      "an indirect table of many small segments is served"),
    S("split.framing.hdr-cut-1", "BLK-FRAMING", s_hdr_cut, 1, "a header cut 1 + 15 is gathered"),
    S("split.framing.hdr-cut-2", "BLK-FRAMING", s_hdr_cut, 2, "a header cut 2 + 14 is gathered"),
    S("split.framing.hdr-cut-3", "BLK-FRAMING", s_hdr_cut, 3, "a header cut 3 + 13 is gathered"),
    S("split.framing.hdr-cut-4", "BLK-FRAMING", s_hdr_cut, 4, "a header cut after type is gathered"),
    S("split.framing.hdr-cut-5", "BLK-FRAMING", s_hdr_cut, 5, "a header cut 5 + 11 is gathered"),
    S("split.framing.hdr-cut-6", "BLK-FRAMING", s_hdr_cut, 6, "a header cut 6 + 10 is gathered"),
    S("split.framing.hdr-cut-7", "BLK-FRAMING", s_hdr_cut, 7, "a header cut 7 + 9 is gathered"),
    S("split.framing.hdr-cut-8", "BLK-FRAMING", s_hdr_cut, 8, "a header cut before sector is gathered"),
    S("split.framing.hdr-cut-9", "BLK-FRAMING", s_hdr_cut, 9, "a header cut 9 + 7 (inside sector) is gathered"),
    S("split.framing.hdr-cut-10", "BLK-FRAMING", s_hdr_cut, 10, "a header cut 10 + 6 is gathered"),
    S("split.framing.hdr-cut-11", "BLK-FRAMING", s_hdr_cut, 11, "a header cut 11 + 5 is gathered"),
    S("split.framing.hdr-cut-12", "BLK-FRAMING", s_hdr_cut, 12, "a header cut 12 + 4 is gathered"),
    S("split.framing.hdr-cut-13", "BLK-FRAMING", s_hdr_cut, 13, "a header cut 13 + 3 is gathered"),
    S("split.framing.hdr-cut-14", "BLK-FRAMING", s_hdr_cut, 14, "a header cut 14 + 2 is gathered"),
    S("split.framing.hdr-cut-15", "BLK-FRAMING", s_hdr_cut, 15, "a header cut 15 + 1 is gathered"),
    S("split.framing.every-cut-out", "BLK-FRAMING", s_every_cut, 0,
      "a write cut into two readable descriptors at each of its 527 inner bytes is served"),
    S("split.framing.every-cut-in", "BLK-FRAMING", s_every_cut, 1,
      "a read whose data + status is cut at each of its 512 inner bytes is served"),
    S("split.framing.status-in-data", "BLK-FRAMING", s_framing, 0,
      "the status byte may be the last byte of the data descriptor"),
    S("split.framing.header-with-data", "BLK-FRAMING", s_framing, 1,
      "the header and the write data may share one descriptor"),
    S("split.framing.header-bytewise", "BLK-FRAMING", s_framing, 2,
      "a header in 16 one-byte descriptors is gathered"),
    S("split.framing.data-32-pieces", "BLK-FRAMING", s_framing, 3, "write data in 32 descriptors is gathered"),
    S("split.framing.odd-pieces", "BLK-FRAMING", s_framing, 4,
      "read data in 1000-byte pieces with the status inside the last is served"),
    S("split.framing.header-8-8", "BLK-FRAMING", s_framing, 5,
      "a header cut 8 + (8 + data) is gathered"),
    SH("split.zero-len-readable", "VQ-ZERO-LEN", s_zero_len, 0,
       "a zero-length readable descriptor is served or refused, without harm"),
    SH("split.zero-len-writable", "VQ-ZERO-LEN", s_zero_len, 1,
       "a zero-length writable descriptor is served or refused, without harm"),
    S("split.no-descriptor-writes", "VQ-DESC-RO", s_device_writes, 0,
      "the device does not write the descriptor table"),
    S("split.used-id-and-len", "VQ-USED-ID", s_device_writes, 1,
      "used ids are heads in flight, each once, and len never exceeds the writable bytes"),
    S("split.no-readable-writes", "VQ-READABLE-RO", s_device_writes, 2,
      "the device does not write device-readable buffers"),
    S("split.size-1", "VQ-SPLIT-SIZE", s_ring_size, 1, "a split ring of 1 entry works across many laps"),
    S("split.size-2", "VQ-SPLIT-SIZE", s_ring_size, 2, "a split ring of 2 entries works across laps"),
    S("split.size-256", "VQ-SPLIT-SIZE", s_ring_size, 256, "a split ring of 256 entries works"),
    S("split.size-1024", "VQ-SPLIT-SIZE", s_ring_size, 1024, "a split ring of 1024 entries works"),
    S("split.size-32768", "VQ-SPLIT-SIZE", s_ring_size, 32768, "a split ring of 32768 entries (the maximum) works"),
    S("split.full-ring", "VQ-SPLIT", s_full_ring, 0, "a full ring of 128 requests in one kick all complete"),
};
static const size_t vc_cases_split_count = VUB_ARRAY_LEN(vc_cases_split);

static const struct vc_case vc_cases_packed[] = {
    K("packed.io", "VQ-PACKED", k_io, 0, "writes and reads over a packed ring are correct"),
    K("packed.size-1", "VQ-PACKED-SIZE", s_ring_size, 100001, "a packed ring of 1 entry works across laps"),
    K("packed.size-3", "VQ-PACKED-SIZE", s_ring_size, 100003,
      "a packed ring of 3 entries (not a power of two) works across laps"),
    K("packed.size-64", "VQ-PACKED-SIZE", s_ring_size, 100064, "a packed ring of 64 entries works"),
    K("packed.size-1000", "VQ-PACKED-SIZE", s_ring_size, 101000, "a packed ring of 1000 entries works"),
    K("packed.full-ring", "VQ-PACKED", s_full_ring, 1, "a full packed ring of 128 in one kick all complete"),
    K("packed.chain", "VQ-PACKED-LIST", k_chain, 0, "descriptor lists are skipped as a whole, across wraps"),
    K("packed.indirect", "VQ-PACKED-INDIRECT", k_chain, 1,
      "indirect tables work and reserved bits inside them are ignored"),
    K("packed.used-descriptor", "VQ-PACKED-USED", k_used_desc, 0,
      "used descriptors echo any buffer id and set WRITE when data was written"),
    K("packed.not-available-used", "VQ-PACKED-AVAIL", k_not_avail, 0,
      "a descriptor flagged AVAIL=USED in the first lap is not used"),
    K("packed.not-available-zero", "VQ-PACKED-AVAIL", k_not_avail, 1,
      "a descriptor with AVAIL=USED=0 in the first lap is not used"),
    K("packed.notify.enable", "VQ-PACKED-NOTIFY", k_notify, 0, "driver event flags ENABLE notify"),
    K("packed.notify.disable", "VQ-PACKED-NOTIFY", k_notify, 1, "driver event flags DISABLE suppress notifications"),
    K("packed.notify.desc", "VQ-PACKED-NOTIFY", k_notify, 2, "driver event DESC at the used slot notifies"),
    K("packed.kick.device-event", "VQ-PACKED-KICK-RACE", k_kick_obey, 0,
      "a driver obeying the device event suppression is always served"),
    K("packed.base", "VU-PACKED-BASE", k_base, 0,
      "GET_VRING_BASE encodes both positions and wraps; resume with requests outstanding"),
    K("packed.framing.hdr-cut-4", "BLK-FRAMING", s_hdr_cut, 104, "packed: a header cut after type is gathered"),
    K("packed.framing.hdr-cut-8", "BLK-FRAMING", s_hdr_cut, 108, "packed: a header cut before sector is gathered"),
    K("packed.framing.hdr-cut-13", "BLK-FRAMING", s_hdr_cut, 113, "packed: a header cut 13 + 3 is gathered"),
    K("packed.framing.every-cut-out", "BLK-FRAMING", s_every_cut, 100,
      "packed: a write cut at each inner byte is served"),
    K("packed.framing.every-cut-in", "BLK-FRAMING", s_every_cut, 101,
      "packed: a read whose data + status is cut at each inner byte is served"),
};
static const size_t vc_cases_packed_count = VUB_ARRAY_LEN(vc_cases_packed);
