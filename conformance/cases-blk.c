/* cases-blk.c: virtio-blk request cases (included by vub-conform.c).
 *
 * Every request type and its status, ranges and sizes, GET_ID's format,
 * discard and write-zeroes segments and flags, read-only exports, used
 * lengths. Data is always checked against the shadow disk.
 */

/* Runs one request on a fresh default session; the session stays open. */
static bool vc_blk_session(struct vc_sess *s) { return vc_open_or_fail(s, &vc_default_setup); }

/* The status a request ended with, or a fail note if it did not end. */
static bool vc_blk_done(struct vc_req *r, const char *what)
{
    if (r->ev == VC_EV_USED)
        return true;
    vc_fail("%s: %s", what, vc_ev_name(r->ev));
    return false;
}

static void b_in_out(const struct vc_case *c)
{
    struct vc_sess s;
    if (!vc_blk_session(&s))
        return;
    if (c->param == 0) {
        static const uint32_t sizes[] = {512, 4096, 65536, 1024 * 128};
        for (unsigned i = 0; i < VUB_ARRAY_LEN(sizes) && !vc_failed(); i++) {
            uint32_t n = sizes[i];
            if (vc.info.size_max && n > vc.info.size_max)
                continue;
            if ((uint64_t)n > vc.disk.bytes)
                continue;
            vc_read_check(&s, 0, (vc.disk.bytes - n) / 512 / 2, n, "IN");
        }
        if (!vc_failed())
            vc_pass("reads of 512 B to 128 KiB return the disk's content with status OK");
    } else {
        uint64_t sec = vc_scratch_sector(vc_scratch_next++);
        if (vc_write_check(&s, 0, sec, 4096, 0x0517, "OUT") && vc_read_check(&s, 0, sec, 4096, "read back") &&
            vc_write_check(&s, 0, sec + 3, 512, 0x0518, "OUT over part") && vc_read_check(&s, 0, sec, 4096, "read back"))
            vc_pass("writes land and read back, including one overwriting part of an earlier one");
    }
    vc_close(&s);
}

/* Last sector reads; the first past the end does not. */
static void b_range(const struct vc_case *c)
{
    struct vc_sess s;
    uint64_t cap = vc.info.capacity;
    if (cap == 0) {
        vc_na("capacity unknown");
        return;
    }
    if (!vc_blk_session(&s))
        return;
    struct vc_req r;
    uint8_t buf[1024];
    const char *what = "";
    bool write = false;
    switch (c->param) {
    case 0: vc_req_init(&r, VC_T_IN, cap - 1, 0, 512); what = "IN of the last sector"; break;
    case 1: vc_req_init(&r, VC_T_IN, cap, 0, 512); what = "IN of the sector at capacity"; break;
    case 2: vc_req_init(&r, VC_T_IN, cap - 1, 0, 1024); what = "IN of 2 sectors from the last one"; break;
    case 3: /* OUT straddling the end, with the last sector's own content */
        vc_req_init(&r, VC_T_OUT, cap - 1, 1024, 0);
        write = true;
        what = "OUT of 2 sectors from the last one";
        break;
    case 4: vc_req_init(&r, VC_T_IN, UINT64_MAX / 512 + 1, 0, 512); what = "IN at a sector whose byte offset overflows 64 bits"; break;
    case 5: vc_req_init(&r, VC_T_IN, UINT64_MAX, 0, 512); what = "IN at sector 2^64-1"; break;
    case 6: vc_req_init(&r, VC_T_OUT, UINT64_MAX / 512 + 1, 512, 0); write = true; what = "OUT at a sector whose byte offset overflows"; break;
    case 7: vc_req_init(&r, VC_T_IN, cap + 1000000, 0, 512); what = "IN far past the capacity"; break;
    }
    if (write) { /* write what is there: whatever the device does, the disk keeps its content */
        struct vc_req rd;
        vc_req_init(&rd, VC_T_IN, cap - 1, 0, 512);
        vc_req_run(&s, &rd);
        memset(buf, 0, sizeof buf);
        if (rd.ev == VC_EV_USED && rd.status == VC_S_OK)
            memcpy(buf, vc_req_in(&rd), 512);
        r.out = buf;
    }
    vc_req_run(&s, &r);
    if (!vc_blk_done(&r, what)) {
        vc_close(&s);
        return;
    }
    if (c->param == 0) {
        if (r.status != VC_S_OK)
            vc_fail("%s: status %s", what, vc_status_name(r.status));
        else
            vc_pass("%s: OK", what);
    } else if (r.status == VC_S_IOERR) {
        vc_pass("%s: IOERR", what);
    } else {
        vc_fail("%s: status %s (a request outside the disk is a driver error: \"VIRTIO_BLK_S_IOERR for device or "
                "driver error\")", what, vc_status_name(r.status));
    }
    vc_close(&s);
}

/* Data lengths that are not whole sectors. */
static void b_size(const struct vc_case *c)
{
    struct vc_sess s;
    if (!vc_blk_session(&s))
        return;
    struct vc_req r;
    uint8_t buf[1024];
    const char *what = "";
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    switch (c->param) {
    case 0: vc_req_init(&r, VC_T_IN, sec, 0, 100); what = "IN of 100 bytes"; break;
    case 1: /* OUT of 513 bytes: the first 512 equal the disk, so any outcome keeps it */
        vc_read_check(&s, 0, sec, 1024, "before");
        memcpy(buf, vc.disk.data + sec * 512, 1024);
        vc_req_init(&r, VC_T_OUT, sec, 513, 0);
        r.out = buf;
        what = "OUT of 513 bytes";
        break;
    case 2: vc_req_init(&r, VC_T_IN, sec, 0, 0); what = "IN of 0 bytes"; break;
    case 3: vc_req_init(&r, VC_T_IN, sec, 0, 511); what = "IN of 511 bytes"; break;
    }
    vc_req_run(&s, &r);
    if (vc_blk_done(&r, what)) {
        if (c->param == 2) {
            if (r.status == VC_S_OK || r.status == VC_S_IOERR)
                vc_pass("%s: %s (0 is a multiple of 512; either answer is reasonable)", what, vc_status_name(r.status));
            else
                vc_warn("%s: status %s", what, vc_status_name(r.status));
        } else if (r.status == VC_S_IOERR) {
            vc_pass("%s: IOERR", what);
        } else if (r.status == VC_S_UNSUPP) {
            vc_warn("%s: UNSUPP (a malformed request is a driver error: IOERR)", what);
        } else {
            vc_fail("%s: status %s (\"The length of data MUST be a multiple of 512 bytes\"; the device cannot serve "
                    "part of a sector)", what, vc_status_name(r.status));
        }
    }
    vc_close(&s);
}

static void b_flush(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (!vc_need(VIRTIO_BLK_F_FLUSH, "FLUSH") || !vc_blk_session(&s))
        return;
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    vc_write_check(&s, 0, sec, 4096, 0xf1u, "write before the flush");
    struct vc_req r;
    vc_req_init(&r, VC_T_FLUSH, 0, 0, 0);
    vc_req_run(&s, &r);
    if (vc_blk_done(&r, "FLUSH") && !vc_failed()) {
        if (r.status != VC_S_OK)
            vc_fail("FLUSH completed with %s", vc_status_name(r.status));
        else
            vc_pass("FLUSH after a write completed with OK");
    }
    vc_close(&s);
}

/* GET_ID: 20 bytes of NUL-padded ASCII. */
static void b_get_id(const struct vc_case *c)
{
    struct vc_sess s;
    if (!vc_blk_session(&s))
        return;
    struct vc_req r;
    vc_req_init(&r, VC_T_GET_ID, 0, 0, 20);
    if (c->param == 1) {
        r.nwcut = 3;
        r.wcut[0] = 7;
        r.wcut[1] = 14;
        r.wcut[2] = 20;
    }
    vc_req_run(&s, &r);
    if (!vc_blk_done(&r, "GET_ID")) {
        vc_close(&s);
        return;
    }
    if (r.status == VC_S_UNSUPP) {
        vc_pass("GET_ID answered UNSUPP (the device has no ID string)");
        vc_close(&s);
        return;
    }
    if (r.status != VC_S_OK) {
        vc_fail("GET_ID completed with %s", vc_status_name(r.status));
        vc_close(&s);
        return;
    }
    /* the driver may rely on the first used.len - 1 bytes (len counts the status byte) */
    const uint8_t *id = vc_req_in(&r);
    uint32_t valid = r.used.len > 0 ? r.used.len - 1 : 0;
    if (valid > 20)
        valid = 20;
    bool nul = false, ok = true;
    char shown[21];
    for (uint32_t i = 0; i < 20; i++) {
        if (i < valid && id[i] == 0)
            nul = true;
        else if (i < valid && (nul || id[i] < 0x20 || id[i] > 0x7e))
            ok = false;
        shown[i] = i >= valid ? '_' : id[i] >= 0x20 && id[i] <= 0x7e ? (char)id[i] : '.';
    }
    shown[20] = 0;
    if (!ok)
        vc_fail("GET_ID bytes \"%s\" (used len %u) are not NUL-padded ASCII (\".\" is a NUL or non-ASCII byte; "
                "\"The device ID string is a NUL-padded ASCII string up to 20 bytes long\")", shown, r.used.len);
    else if (valid < 20 && !nul)
        vc_warn("GET_ID \"%s\": used len %u says only %u bytes were written and none is a NUL terminator", shown,
                r.used.len, valid);
    else
        vc_pass("GET_ID \"%s\" (used len %u%s)", shown, r.used.len, c->param == 1 ? ", buffer in 3 descriptors" : "");
    vc_close(&s);
}

/* Request types the device does not implement: UNSUPP. */
static void b_unsupp(const struct vc_case *c)
{
    struct vc_sess s;
    uint32_t type = (uint32_t)c->param;
    if (type == 10 && vc_offers(15)) { vc_na("LIFETIME offered"); return; }
    if (type == 14 && vc_offers(16)) { vc_na("SECURE_ERASE offered"); return; }
    if (type >= 15 && type <= 26 && vc_offers(17)) { vc_na("ZONED offered"); return; }
    if (!vc_blk_session(&s))
        return;
    struct vc_req r;
    vc_req_init(&r, type, 0, 0, 512); /* a writable buffer, as a read would have */
    vc_req_run(&s, &r);
    char what[64];
    snprintf(what, sizeof what, "request type %u", type);
    if (vc_blk_done(&r, what)) {
        bool zoned = type >= 15 && type <= 26;
        if (r.status == VC_S_UNSUPP)
            vc_pass("%s: UNSUPP", what);
        else
            vc_fail("%s: status %s (%s)", what, vc_status_name(r.status),
                    zoned ? "\"If the VIRTIO_BLK_F_ZONED feature is not negotiated, the device MUST reject ... with "
                            "VIRTIO_BLK_S_UNSUPP\""
                          : "UNSUPP is the status \"for a request unsupported by device\"");
    }
    vc_close(&s);
}

/* ---- discard and write-zeroes ------------------------------------------------ */

struct vc_seg16 {
    uint64_t sector;
    uint32_t num;
    uint32_t flags;
};

/* Sends DISCARD or WRITE_ZEROES with the given segments; optional cut of
 * the payload into two descriptors at byte `cut`. */
static void vc_ranges_req(struct vc_sess *s, struct vc_req *r, uint32_t type, const struct vc_seg16 *sg, unsigned n,
                          uint32_t extra_bytes, uint32_t cut)
{
    static uint8_t payload[16 * 64 + 16];
    memset(payload, 0, sizeof payload);
    for (unsigned i = 0; i < n; i++) {
        vub_put_le64(payload + 16 * i, sg[i].sector);
        vub_put_le32(payload + 16 * i + 8, sg[i].num);
        vub_put_le32(payload + 16 * i + 12, sg[i].flags);
    }
    vc_req_init(r, type, 0, 16 * n + extra_bytes, 0);
    r->out = payload;
    if (cut) {
        r->nrcut = 2;
        r->rcut[0] = 16;
        r->rcut[1] = 16 + cut;
    }
    vc_req_run(s, r);
}

static void b_ranges(const struct vc_case *c)
{
    struct vc_sess s;
    long k = c->param;
    bool wz = k >= 100;
    k %= 100;
    if (!vc_need(wz ? VIRTIO_BLK_F_WRITE_ZEROES : VIRTIO_BLK_F_DISCARD, wz ? "WRITE_ZEROES" : "DISCARD"))
        return;
    uint32_t maxseg = wz ? vc.info.max_wz_seg : vc.info.max_discard_seg;
    if (!vc_blk_session(&s))
        return;
    uint32_t type = wz ? VC_T_WZ : VC_T_DISCARD;
    const char *name = wz ? "WRITE_ZEROES" : "DISCARD";
    uint64_t sec = vc_scratch_sector(vc_scratch_next++) & ~7ull;
    struct vc_req r;
    struct vc_seg16 sg[64];
    unsigned n = 1;
    uint32_t extra = 0, cut = 0;
    bool expect_ok = true;
    const char *what = "";
    /* something to zero: known non-zero data in 16 sectors */
    for (unsigned i = 0; i < 2; i++)
        vc_write_check(&s, 0, sec + 8 * i, 4096, 0x2e40 + i, "setup write");
    sg[0] = (struct vc_seg16){sec, 8, 0};
    switch (k) {
    case 0: what = "one 4 KiB segment"; break;
    case 1: what = "with the UNMAP flag"; sg[0].flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP; expect_ok = wz; break;
    case 2: what = "with an unknown flag (bit 1)"; sg[0].flags = 2; expect_ok = false; break;
    case 3: what = "with flag bit 31"; sg[0].flags = 0x80000000u; expect_ok = false; break;
    case 4:
        if (maxseg < 2) {
            vc_na("max_%s_seg is %u", wz ? "write_zeroes" : "discard", maxseg);
            vc_close(&s);
            return;
        }
        n = 2;
        sg[1] = (struct vc_seg16){sec + 8, 8, 0};
        what = "two segments";
        break;
    case 5: what = "a segment split across two descriptors"; cut = 7; break;
    case 6: what = "a payload of 15 bytes (not whole segments)"; n = 0; extra = 15; expect_ok = false; break;
    case 7: what = "a segment past the capacity"; sg[0].sector = vc.info.capacity - 4; expect_ok = false; break;
    case 8:
        if (maxseg == 0 || maxseg >= 64) {
            vc_na("max_%s_seg is %u", wz ? "write_zeroes" : "discard", maxseg);
            vc_close(&s);
            return;
        }
        n = maxseg + 1;
        for (unsigned i = 0; i < n; i++)
            sg[i] = (struct vc_seg16){sec + (i % 2) * 8, 8, 0};
        what = "one segment more than the limit";
        expect_ok = false;
        break;
    }
    vc_ranges_req(&s, &r, type, sg, n, extra, cut);
    char full[120];
    snprintf(full, sizeof full, "%s %s", name, what);
    if (!vc_blk_done(&r, full)) {
        vc_disk_forget(sec, 16);
        vc_close(&s);
        return;
    }
    /* what the disk holds now */
    unsigned nsec = (k == 4 || k == 8) ? 16 : 8;
    if (r.status != VC_S_OK || !wz)
        vc_disk_forget(sec, nsec); /* discard, or a failed request: content is indeterminate */
    if (k == 7)
        vc_disk_forget(vc.info.capacity - 4, 4);
    if (expect_ok) {
        if (r.status != VC_S_OK) {
            vc_fail("%s: status %s", full, vc_status_name(r.status));
        } else if (wz) {
            static uint8_t zero[8192];
            memset(zero, 0, sizeof zero);
            vc_disk_learn(sec, zero, nsec * 512);
            if (vc_read_check(&s, 0, sec, nsec * 512, "reading the zeroed range"))
                vc_pass("%s: OK, and the range reads back as zeros", full);
            else
                vc_fail("after WRITE_ZEROES the range does not read as zeros (\"reads of the specified ranges of "
                        "sectors MUST return zeroes\")");
        } else {
            vc_pass("%s: OK", full);
        }
    } else if (k == 1 || k == 2 || k == 3) {
        if (r.status == VC_S_UNSUPP)
            vc_pass("%s: UNSUPP", full);
        else
            vc_fail("%s: status %s (\"The device MUST set the status byte to VIRTIO_BLK_S_UNSUPP for discard, "
                    "secure erase and write zeroes commands if any unknown flag is set ... for discard commands if "
                    "the unmap flag is set\")", full, vc_status_name(r.status));
    } else {
        if (r.status == VC_S_IOERR || r.status == VC_S_UNSUPP)
            vc_pass("%s: %s", full, vc_status_name(r.status));
        else
            vc_fail("%s: status %s for a request the driver must not send", full, vc_status_name(r.status));
    }
    vc_close(&s);
}

/* ---- read-only exports --------------------------------------------------------- */

static void b_read_only(const struct vc_case *c)
{
    struct vc_sess s;
    if (!vc_need(VIRTIO_BLK_F_RO, "RO (a read-only export)"))
        return;
    if (!vc_blk_session(&s))
        return;
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    vc_read_check(&s, 0, sec, 4096, "before");
    struct vc_req r;
    uint8_t data[4096];
    vc_fill_pattern(data, sizeof data, 0x40 + (uint64_t)c->param);
    data[0] = (uint8_t)~vc.disk.data[sec * 512]; /* differ from what the disk holds */
    const char *what = "OUT";
    if (c->param == 0) {
        vc_req_init(&r, VC_T_OUT, sec, 4096, 0);
        r.out = data;
        vc_req_run(&s, &r);
    } else {
        struct vc_seg16 sg = {sec, 8, 0};
        uint32_t type = c->param == 1 ? VC_T_DISCARD : VC_T_WZ;
        what = c->param == 1 ? "DISCARD" : "WRITE_ZEROES";
        vc_ranges_req(&s, &r, type, &sg, 1, 0, 0);
    }
    if (vc_blk_done(&r, what)) {
        bool same = vc_read_check(&s, 0, sec, 4096, "after");
        if (r.status != VC_S_IOERR && !(c->param && r.status == VC_S_UNSUPP))
            vc_fail("%s on a read-only device: status %s (\"A device MUST set the status byte to VIRTIO_BLK_S_IOERR "
                    "for a write request if the VIRTIO_BLK_F_RO feature if offered\")", what, vc_status_name(r.status));
        else if (!same)
            vc_fail("%s on a read-only device changed the data (\"MUST NOT write any data\")", what);
        else
            vc_pass("%s on a read-only device: %s, nothing written", what, vc_status_name(r.status));
    }
    vc_close(&s);
}

/* ---- used length (a SHOULD: "len" is the bytes written) -------------------- */

static void b_used_len(const struct vc_case *c)
{
    struct vc_sess s;
    if (!vc_blk_session(&s))
        return;
    struct vc_req r;
    uint32_t want = 1;
    const char *what = "";
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    uint8_t data[4096];
    switch (c->param) {
    case 0: vc_req_init(&r, VC_T_IN, 0, 0, 4096); want = 4097; what = "IN of 4096 bytes"; break;
    case 1:
        vc_read_check(&s, 0, sec, 4096, "before");
        memcpy(data, vc.disk.data + sec * 512, 4096);
        vc_req_init(&r, VC_T_OUT, sec, 4096, 0);
        r.out = data;
        what = "OUT";
        break;
    case 2: vc_req_init(&r, VC_T_FLUSH, 0, 0, 0); what = "FLUSH"; break;
    case 3: vc_req_init(&r, VC_T_GET_ID, 0, 0, 20); want = 21; what = "GET_ID"; break;
    case 4: vc_req_init(&r, 0x7777, 0, 0, 512); want = 1; what = "an unsupported request with a 512-byte buffer"; break;
    }
    if (c->param == 2 && !vc_offers(VIRTIO_BLK_F_FLUSH)) {
        vc_na("FLUSH not offered");
        vc_close(&s);
        return;
    }
    vc_req_run(&s, &r);
    if (vc_blk_done(&r, what)) {
        if (r.used.len > r.in_len + 1u)
            vc_fail("%s: used len %u exceeds the %u writable bytes", what, r.used.len, r.in_len + 1);
        else if (r.used.len != want)
            vc_warn("%s: used len %u, %u bytes were written (data + status); len should be the bytes written "
                    "(a driver may rely on it)", what, r.used.len, want);
        else
            vc_pass("%s: used len %u", what, r.used.len);
    }
    vc_close(&s);
}

/* The reserved (legacy ioprio) header field is ignored. */
static void b_reserved(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (!vc_blk_session(&s))
        return;
    struct vc_req r;
    vc_req_init(&r, VC_T_IN, 5, 0, 512);
    r.reserved = 0x12345678;
    vc_req_run(&s, &r);
    if (vc_blk_done(&r, "IN with reserved = 0x12345678")) {
        if (r.status == VC_S_OK && vc_disk_check(5, vc_req_in(&r), 512) < 0)
            vc_pass("a non-zero reserved field is ignored");
        else
            vc_warn("IN with a non-zero reserved (legacy ioprio) field: status %s", vc_status_name(r.status));
    }
    vc_close(&s);
}

/* Writes on one queue are seen by reads on another. */
static void b_cross_queue(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (vc_nq() < 2) {
        vc_na("one queue");
        return;
    }
    struct vc_setup o = vc_default_setup;
    o.queues_mask = 3;
    if (!vc_open_or_fail(&s, &o))
        return;
    uint64_t sec = vc_scratch_sector(vc_scratch_next++);
    if (vc_write_check(&s, 1, sec, 4096, 0xc0de, "write on queue 1") && vc_read_check(&s, 0, sec, 4096, "read on queue 0"))
        vc_pass("a write on queue 1 is read back on queue 0");
    vc_close(&s);
}

/* A large request in many segments, within seg_max. */
static void b_large(const struct vc_case *c)
{
    (void)c;
    struct vc_sess s;
    if (!vc_blk_session(&s))
        return;
    uint32_t segs = vc.info.seg_max && vc.info.seg_max < 120 ? vc.info.seg_max : 120;
    uint32_t len = segs * 4096;
    if (vc.info.size_max && vc.info.size_max < 4096) {
        vc_na("size_max below 4096");
        vc_close(&s);
        return;
    }
    if (len > vc.disk.bytes)
        len = (uint32_t)vc.disk.bytes & ~4095u, segs = len / 4096;
    struct vc_req r;
    vc_req_init(&r, VC_T_IN, 0, 0, len);
    r.nwcut = 0;
    for (uint32_t i = 1; i <= segs; i++)
        r.wcut[r.nwcut++] = i * 4096;
    vc_req_run(&s, &r);
    if (vc_blk_done(&r, "a large read")) {
        if (r.status != VC_S_OK)
            vc_fail("a read of %u bytes in %u segments: %s", len, segs, vc_status_name(r.status));
        else if (vc_disk_check(0, vc_req_in(&r), len) >= 0)
            vc_fail("a read of %u bytes in %u segments returned wrong data", len, segs);
        else
            vc_pass("a read of %u bytes in %u data segments (seg_max %u) is correct", len, segs, vc.info.seg_max);
    }
    vc_close(&s);
}

#define B(name, tag, fn, param, sent) {"blk", name, tag, sent, fn, param, false}

static const struct vc_case vc_cases_blk[] = {
    B("blk.in", "BLK-IN", b_in_out, 0, "reads return the disk's content with status OK"),
    B("blk.out", "BLK-OUT", b_in_out, 1, "writes land and read back"),
    B("blk.range.last-sector", "BLK-RANGE", b_range, 0, "the last sector reads with OK"),
    B("blk.range.at-capacity", "BLK-RANGE", b_range, 1, "a read at sector = capacity completes with IOERR"),
    B("blk.range.straddles-end", "BLK-RANGE", b_range, 2, "a read running past the capacity completes with IOERR"),
    B("blk.range.write-straddles-end", "BLK-RANGE", b_range, 3, "a write running past the capacity completes with IOERR"),
    B("blk.range.offset-overflow", "BLK-RANGE", b_range, 4, "a sector whose byte offset overflows completes with IOERR"),
    B("blk.range.sector-max", "BLK-RANGE", b_range, 5, "sector 2^64-1 completes with IOERR"),
    B("blk.range.write-offset-overflow", "BLK-RANGE", b_range, 6, "a write whose byte offset overflows completes with IOERR"),
    B("blk.range.far-past-end", "BLK-RANGE", b_range, 7, "a read far past the capacity completes with IOERR"),
    B("blk.size.in-100", "BLK-RANGE", b_size, 0, "a read of 100 bytes (not whole sectors) completes with IOERR"),
    B("blk.size.out-513", "BLK-RANGE", b_size, 1, "a write of 513 bytes completes with IOERR"),
    B("blk.size.in-0", "BLK-RANGE", b_size, 2, "a read of 0 bytes completes (OK or IOERR)"),
    B("blk.size.in-511", "BLK-RANGE", b_size, 3, "a read of 511 bytes completes with IOERR"),
    B("blk.flush", "BLK-FLUSH", b_flush, 0, "FLUSH completes with OK"),
    B("blk.get-id", "BLK-GET-ID", b_get_id, 0, "GET_ID writes 20 bytes of NUL-padded ASCII"),
    B("blk.get-id-split", "BLK-GET-ID", b_get_id, 1, "GET_ID into a buffer of 3 descriptors"),
    B("blk.unsupp.type-2", "BLK-UNSUPP", b_unsupp, 2, "type 2 (legacy SCSI) completes with UNSUPP"),
    B("blk.unsupp.type-3", "BLK-UNSUPP", b_unsupp, 3, "type 3 (legacy SCSI out) completes with UNSUPP"),
    B("blk.unsupp.type-5", "BLK-UNSUPP", b_unsupp, 5, "type 5 (legacy FLUSH_OUT) completes with UNSUPP"),
    B("blk.unsupp.type-6", "BLK-UNSUPP", b_unsupp, 6, "type 6 completes with UNSUPP"),
    B("blk.unsupp.type-7", "BLK-UNSUPP", b_unsupp, 7, "type 7 completes with UNSUPP"),
    B("blk.unsupp.type-9", "BLK-UNSUPP", b_unsupp, 9, "type 9 completes with UNSUPP"),
    B("blk.unsupp.get-lifetime", "BLK-UNSUPP", b_unsupp, 10, "GET_LIFETIME without LIFETIME completes with UNSUPP"),
    B("blk.unsupp.type-12", "BLK-UNSUPP", b_unsupp, 12, "type 12 completes with UNSUPP"),
    B("blk.unsupp.secure-erase", "BLK-UNSUPP", b_unsupp, 14, "SECURE_ERASE without the feature completes with UNSUPP"),
    B("blk.unsupp.type-255", "BLK-UNSUPP", b_unsupp, 255, "type 255 completes with UNSUPP"),
    B("blk.unsupp.type-max", "BLK-UNSUPP", b_unsupp, 0x7fffffff, "type 0x7fffffff completes with UNSUPP"),
    B("blk.zoned.append", "BLK-ZONED-UNSUPP", b_unsupp, 15, "ZONE_APPEND without ZONED completes with UNSUPP"),
    B("blk.zoned.report", "BLK-ZONED-UNSUPP", b_unsupp, 16, "ZONE_REPORT without ZONED completes with UNSUPP"),
    B("blk.zoned.open", "BLK-ZONED-UNSUPP", b_unsupp, 18, "ZONE_OPEN without ZONED completes with UNSUPP"),
    B("blk.zoned.close", "BLK-ZONED-UNSUPP", b_unsupp, 20, "ZONE_CLOSE without ZONED completes with UNSUPP"),
    B("blk.zoned.finish", "BLK-ZONED-UNSUPP", b_unsupp, 22, "ZONE_FINISH without ZONED completes with UNSUPP"),
    B("blk.zoned.reset", "BLK-ZONED-UNSUPP", b_unsupp, 24, "ZONE_RESET without ZONED completes with UNSUPP"),
    B("blk.zoned.reset-all", "BLK-ZONED-UNSUPP", b_unsupp, 26, "ZONE_RESET_ALL without ZONED completes with UNSUPP"),
    B("blk.discard", "BLK-DISCARD", b_ranges, 0, "DISCARD of one segment completes with OK"),
    B("blk.discard.unmap-flag", "BLK-DISCARD-FLAGS", b_ranges, 1, "DISCARD with the UNMAP flag completes with UNSUPP"),
    B("blk.discard.unknown-flag", "BLK-DISCARD-FLAGS", b_ranges, 2, "DISCARD with flag bit 1 completes with UNSUPP"),
    B("blk.discard.flag-31", "BLK-DISCARD-FLAGS", b_ranges, 3, "DISCARD with flag bit 31 completes with UNSUPP"),
    B("blk.discard.two-segments", "BLK-DISCARD", b_ranges, 4, "DISCARD of two segments completes with OK"),
    B("blk.discard.split-segment", "BLK-DISCARD", b_ranges, 5, "a DISCARD segment split across descriptors is gathered"),
    B("blk.discard.partial-segment", "BLK-DISCARD", b_ranges, 6, "a DISCARD payload of 15 bytes is an error"),
    B("blk.discard.past-end", "BLK-DISCARD", b_ranges, 7, "a DISCARD segment past the capacity is an error"),
    B("blk.discard.too-many", "BLK-DISCARD", b_ranges, 8, "a DISCARD with max_discard_seg + 1 segments is an error"),
    B("blk.wz", "BLK-WZ", b_ranges, 100, "WRITE_ZEROES makes the range read as zeros"),
    B("blk.wz.unmap", "BLK-WZ-UNMAP", b_ranges, 101, "WRITE_ZEROES with UNMAP also reads back as zeros"),
    B("blk.wz.unknown-flag", "BLK-DISCARD-FLAGS", b_ranges, 102, "WRITE_ZEROES with flag bit 1 completes with UNSUPP"),
    B("blk.wz.flag-31", "BLK-DISCARD-FLAGS", b_ranges, 103, "WRITE_ZEROES with flag bit 31 completes with UNSUPP"),
    B("blk.wz.two-segments", "BLK-WZ", b_ranges, 104, "WRITE_ZEROES of two segments zeroes both"),
    B("blk.wz.split-segment", "BLK-WZ", b_ranges, 105, "a WRITE_ZEROES segment split across descriptors is gathered"),
    B("blk.wz.partial-segment", "BLK-WZ", b_ranges, 106, "a WRITE_ZEROES payload of 15 bytes is an error"),
    B("blk.wz.past-end", "BLK-WZ", b_ranges, 107, "a WRITE_ZEROES segment past the capacity is an error"),
    B("blk.wz.too-many", "BLK-WZ", b_ranges, 108, "a WRITE_ZEROES with max_write_zeroes_seg + 1 segments is an error"),
    B("blk.ro.out", "BLK-RO", b_read_only, 0, "OUT on a read-only export completes with IOERR and writes nothing"),
    B("blk.ro.discard", "BLK-RO", b_read_only, 1, "DISCARD on a read-only export fails and changes nothing"),
    B("blk.ro.write-zeroes", "BLK-RO", b_read_only, 2, "WRITE_ZEROES on a read-only export fails and changes nothing"),
    B("blk.used-len.in", "VQ-USED-LEN", b_used_len, 0, "an IN's used len is data + 1"),
    B("blk.used-len.out", "VQ-USED-LEN", b_used_len, 1, "an OUT's used len is 1"),
    B("blk.used-len.flush", "VQ-USED-LEN", b_used_len, 2, "a FLUSH's used len is 1"),
    B("blk.used-len.get-id", "VQ-USED-LEN", b_used_len, 3, "a GET_ID's used len is 21"),
    B("blk.used-len.unsupp", "VQ-USED-LEN", b_used_len, 4, "an unsupported request's used len is 1"),
    B("blk.reserved-field", "BLK-RESERVED", b_reserved, 0, "a non-zero reserved header field is ignored"),
    B("blk.cross-queue", "BLK-MQ", b_cross_queue, 0, "a write on one queue is read back on another"),
    B("blk.large", "BLK-IN", b_large, 0, "a read in up to seg_max data segments is correct"),
};
static const size_t vc_cases_blk_count = VUB_ARRAY_LEN(vc_cases_blk);
