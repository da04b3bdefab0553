/* fuzz.c: seeded fuzz sessions (included by vub-conform.c).
 *
 * Each session has its own seed (splitmix64 of the run seed and the session
 * number) and is a deterministic function of it: a random set-up (split or
 * packed, ring size, features, memory layout, queues), then steps. A step
 * is either valid I/O checked against the shadow disk, or a mutation: a
 * malformed message or a request whose descriptors were damaged. Damaged
 * requests are always reads (type 0) in a zeroed heap, so whatever the
 * back-end makes of them it has no reason to write the disk.
 *
 * A failure is a crash, a hang, a valid request answered wrongly before any
 * mutation, or a disk whose content differs from the shadow when read on a
 * fresh session after the fuzzed one. It is printed with its session seed
 * and step: --replay SEED:STEP runs that session again, saying each step.
 */

struct vc_fuzz {
    uint64_t rng;
    unsigned step;
    unsigned io, mutations;
    bool tainted;          /* a mutation happened: the session's state is no longer ours to predict */
    bool verbose;
    char fail[400];
    char last[200];        /* the step being done, for the failure message */
};

static void vc_fz_say(struct vc_fuzz *f, const char *fmt, ...) VC_PRINTF(2, 3);
static void vc_fz_say(struct vc_fuzz *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->last, sizeof f->last, fmt, ap);
    va_end(ap);
    if (f->verbose)
        printf("# step %u: %s\n", f->step, f->last);
}

static void vc_fz_fail(struct vc_fuzz *f, const char *fmt, ...) VC_PRINTF(2, 3);
static void vc_fz_fail(struct vc_fuzz *f, const char *fmt, ...)
{
    if (f->fail[0])
        return;
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (snprintf(f->fail, sizeof f->fail, "step %u (%s): %s", f->step, f->last, why) < 0)
        f->fail[0] = '?';
}

/* Random cuts of a request's areas, within a descriptor budget. */
static void vc_fz_framing(struct vc_fuzz *f, struct vc_req *r, unsigned budget)
{
    uint32_t rlen = 16 + r->out_len, wlen = r->in_len + 1;
    r->nrcut = r->nwcut = 0;
    unsigned cuts = (unsigned)vc_rand_below(&f->rng, budget > 2 ? budget - 2 : 1);
    for (unsigned i = 0; i < cuts; i++) {
        bool in_r = vc_rand_below(&f->rng, 2) == 0;
        uint32_t len = in_r ? rlen : wlen;
        if (len < 2)
            continue;
        uint32_t at = 1 + (uint32_t)vc_rand_below(&f->rng, len - 1);
        uint32_t *arr = in_r ? r->rcut : r->wcut;
        unsigned *n = in_r ? &r->nrcut : &r->nwcut;
        unsigned j = *n;
        while (j > 0 && arr[j - 1] > at) { /* keep sorted */
            arr[j] = arr[j - 1];
            j--;
        }
        if (j > 0 && arr[j - 1] == at) { /* duplicate: undo the shift */
            for (unsigned m = j; m < *n; m++)
                arr[m] = arr[m + 1];
            continue;
        }
        arr[j] = at;
        (*n)++;
    }
}

/* One batch of valid requests on queue q, checked. */
static void vc_fz_io(struct vc_fuzz *f, struct vc_sess *s, unsigned q)
{
    static struct vc_req r[8];
    static uint8_t wdata[8][32768];
    unsigned n = 1 + (unsigned)vc_rand_below(&f->rng, s->q[q].size < 8 ? s->q[q].size : 6);
    uint64_t sectors = vc.disk.bytes / 512;
    unsigned budget = vc.info.seg_max && vc.info.seg_max < 16 ? vc.info.seg_max : 16;
    if (s->q[q].size < budget + 2 && !s->q[q].packed)
        budget = s->q[q].size > 3 ? s->q[q].size - 2 : 1;
    if (s->q[q].packed && s->q[q].size < budget + 2)
        budget = s->q[q].size > 3 ? s->q[q].size - 2 : 1;
    if (n * (budget + 2) > s->q[q].size)
        n = 1;
    /* no two writes (or a write and a read) to the same sectors in one batch: completion order is free */
    uint64_t lo[8], hi[8];
    unsigned kinds[8];
    for (unsigned i = 0; i < n; i++) {
        unsigned kind = (unsigned)vc_rand_below(&f->rng, 10); /* 0-4 read, 5-7 write, 8 flush, 9 wz/discard/get-id */
        uint32_t len = 512 * (1 + (uint32_t)vc_rand_below(&f->rng, 64));
        uint64_t sec = vc_rand_below(&f->rng, sectors - len / 512 + 1);
        for (unsigned j = 0; j < i; j++)
            if (sec < hi[j] && lo[j] < sec + len / 512 && (kind >= 5 || kinds[j] >= 5))
                kind = 8; /* overlap: make it a flush */
        kinds[i] = kind;
        lo[i] = sec;
        hi[i] = sec + len / 512;
        if (kind <= 4) {
            vc_req_init(&r[i], VC_T_IN, sec, 0, len);
        } else if (kind <= 7) {
            vc_fill_pattern(wdata[i], len, vc_rand(&f->rng));
            vc_req_init(&r[i], VC_T_OUT, sec, len, 0);
            r[i].out = wdata[i];
        } else if (kind == 8) {
            vc_req_init(&r[i], vc_offers(VIRTIO_BLK_F_FLUSH) ? VC_T_FLUSH : VC_T_GET_ID, 0, 0,
                        vc_offers(VIRTIO_BLK_F_FLUSH) ? 0 : 20);
            hi[i] = lo[i] = 0;
        } else if (vc_offers(VIRTIO_BLK_F_WRITE_ZEROES) && vc_has_f(s->features, VIRTIO_BLK_F_WRITE_ZEROES)) {
            uint8_t *seg = wdata[i];
            uint32_t ns = 1 + (uint32_t)vc_rand_below(&f->rng, 16);
            if (sec + ns > sectors)
                ns = 1;
            vub_put_le64(seg, sec);
            vub_put_le32(seg + 8, ns);
            vub_put_le32(seg + 12, (uint32_t)vc_rand_below(&f->rng, 2));
            vc_req_init(&r[i], VC_T_WZ, 0, 16, 0);
            r[i].out = seg;
            hi[i] = sec + ns;
        } else {
            vc_req_init(&r[i], VC_T_GET_ID, 0, 0, 20);
            hi[i] = lo[i] = 0;
        }
        r[i].q = q;
        vc_fz_framing(f, &r[i], budget);
        if (vc_has_f(s->features, VIRTIO_F_INDIRECT_DESC) && vc_rand_below(&f->rng, 4) == 0)
            r[i].mode = VC_INDIRECT;
    }
    vc_fz_say(f, "%u request(s) on queue %u", n, q);
    int tokens[8];
    unsigned sent = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!vc_req_submit(s, &r[i], &tokens[i]))
            break;
        sent++;
    }
    vc_kick(s, q);
    bool done[8] = {false};
    for (unsigned k = 0; k < sent; k++) {
        struct vc_used u;
        enum vc_ev ev = vc_wait_used(s, q, &u, VC_WAIT_MS);
        if (ev != VC_EV_USED) {
            if (!f->tainted)
                vc_fz_fail(f, "request %u of %u: %s", k + 1, sent, vc_ev_name(ev));
            break;
        }
        for (unsigned i = 0; i < sent; i++)
            if ((uint32_t)tokens[i] == u.id && !done[i]) {
                done[i] = true;
                r[i].used = u;
                break;
            }
    }
    for (unsigned i = 0; i < sent; i++) {
        if (!done[i]) {
            /* never answered (a tainted session may be cut short): a
             * write may still land, or have landed, so its sectors are
             * unknown from here on */
            if (r[i].type == VC_T_OUT)
                vc_disk_forget(r[i].sector, r[i].out_len / 512);
            else if (r[i].type == VC_T_WZ)
                vc_disk_forget(vub_le64(wdata[i]), vub_le32(wdata[i] + 8));
            continue;
        }
        uint8_t st = *vc_g(r[i].w_gpa + r[i].in_len);
        f->io++;
        if (r[i].type == VC_T_OUT || r[i].type == VC_T_WZ) {
            if (st == VC_S_OK && r[i].type == VC_T_OUT) {
                vc_disk_learn(r[i].sector, wdata[i], r[i].out_len);
            } else if (st == VC_S_OK) {
                static uint8_t zero[16 * 512];
                uint64_t zs = vub_le64(wdata[i]);
                vc_disk_learn(zs, zero, (uint64_t)vub_le32(wdata[i] + 8) * 512);
            } else {
                uint64_t fs = r[i].type == VC_T_OUT ? r[i].sector : vub_le64(wdata[i]);
                vc_disk_forget(fs, r[i].type == VC_T_OUT ? r[i].out_len / 512 : vub_le32(wdata[i] + 8));
            }
        }
        if (st != VC_S_OK) {
            if (!f->tainted)
                vc_fz_fail(f, "a valid %s request completed with status %u", r[i].type == VC_T_IN ? "read" : "write", st);
            continue;
        }
        if (r[i].type == VC_T_IN) {
            int64_t bad = vc_disk_check(r[i].sector, vc_req_in(&r[i]), r[i].in_len);
            if (bad >= 0 && !f->tainted)
                vc_fz_fail(f, "a read of %u bytes at sector %llu returned wrong data (byte %lld)", r[i].in_len,
                           (unsigned long long)r[i].sector, (long long)bad);
        }
    }
}

/* A malformed or unexpected message. Returns false if the session should end. */
static bool vc_fz_message(struct vc_fuzz *f, struct vc_sess *s)
{
    uint8_t pl[80];
    int fds[3] = {-1, -1, -1};
    uint32_t req, flags, size;
    unsigned nfds = 0;
    unsigned kind = (unsigned)vc_rand_below(&f->rng, 3);
    if (kind == 0) { /* an entry of the malformed-message table */
        const struct vc_bad_msg *b = &vc_bad_msgs[vc_rand_below(&f->rng, VUB_ARRAY_LEN(vc_bad_msgs))];
        req = b->req;
        size = b->size;
        flags = b->flags ? b->flags : VHOST_USER_VERSION | VC_NEED_REPLY;
        nfds = b->fds > 3 ? 3 : b->fds;
        memset(pl, b->fill, sizeof pl);
    } else { /* random bytes */
        req = (uint32_t)vc_rand_below(&f->rng, 45);
        flags = vc_rand_below(&f->rng, 8) ? VHOST_USER_VERSION | VC_NEED_REPLY : (uint32_t)vc_rand(&f->rng);
        size = (uint32_t)vc_rand_below(&f->rng, 65);
        vc_fill_pattern(pl, sizeof pl, vc_rand(&f->rng));
        nfds = (unsigned)vc_rand_below(&f->rng, 3);
        if (kind == 2 && size >= 8) { /* keep queue indexes small so it may pass the index check */
            pl[0] = (uint8_t)vc_rand_below(&f->rng, 3);
            pl[1] = pl[2] = pl[3] = 0;
        }
    }
    /* never hand over our guest memory at random addresses: eventfds only */
    for (unsigned i = 0; i < nfds; i++)
        fds[i] = eventfd(0, EFD_CLOEXEC);
    vc_fz_say(f, "message %u (%s), flags 0x%x, %u bytes, %u fds", req, vub_vu_request_name(req), flags, size, nfds);
    f->mutations++;
    f->tainted = true;
    bool sent = vc_send(s, req, flags, pl, size, fds, nfds);
    for (unsigned i = 0; i < nfds; i++)
        close(fds[i]);
    if (!sent)
        return false;
    struct vc_reply r;
    enum vc_rx rx = vc_recv(s->sock, &r, 300);
    if (rx == VC_RX_CLOSED || rx == VC_RX_SHORT)
        return false;
    enum vc_after af = vc_after(s);
    if (af == VC_AFTER_HUNG) {
        vc_fz_fail(f, "the back-end stopped answering messages");
        return false;
    }
    return af == VC_AFTER_ALIVE;
}

/* A read whose descriptors are damaged at random. Always ends the session. */
static void vc_fz_damage(struct vc_fuzz *f, struct vc_sess *s, unsigned q)
{
    memset(vc_g(VC_GPA_BASE + VC_HEAP_OFF), 0, VC_GUEST_BYTES - VC_HEAP_OFF);
    s->heap = VC_HEAP_OFF;
    static struct vc_seg segs[VC_MAX_SEGS];
    struct vc_req r;
    vc_req_init(&r, VC_T_IN, vc_rand_below(&f->rng, vc.disk.bytes / 512), 0, 512);
    r.q = q;
    vc_fz_framing(f, &r, 6);
    unsigned n = vc_req_segs(s, &r, segs);
    unsigned which = (unsigned)vc_rand_below(&f->rng, n);
    unsigned field = (unsigned)vc_rand_below(&f->rng, 5);
    uint64_t bits = vc_rand(&f->rng);
    switch (field) {
    case 0: segs[which].gpa ^= UINT64_C(1) << (bits % 64); break;
    case 1: segs[which].len ^= (uint32_t)1 << (bits % 32); break;
    case 2: segs[which].len = (uint32_t)bits; break;
    case 3: segs[which].write = !segs[which].write; break;
    case 4: segs[which].gpa = bits; break;
    }
    struct vc_q *qq = &s->q[q];
    int token = vc_add(s, q, segs, n, r.mode, 0);
    if (token >= 0 && !qq->packed && vc_rand_below(&f->rng, 3) == 0) {
        /* damage the table itself: a next index, flags, or the available index */
        uint8_t *d = vc_g(qq->desc) + 16u * (uint16_t)token;
        unsigned how = (unsigned)vc_rand_below(&f->rng, 3);
        if (how == 0)
            vub_put_le16(d + 14, (uint16_t)vc_rand(&f->rng));
        else if (how == 1)
            vub_put_le16(d + 12, (uint16_t)(vub_le16(d + 12) ^ (1u << vc_rand_below(&f->rng, 3))));
        else
            vub_ring_store16(vc_g(qq->avail) + 2, (uint16_t)(qq->avail_idx + vc_rand_below(&f->rng, 70000)),
                             memory_order_release);
    }
    vc_fz_say(f, "a read with descriptor %u of %u damaged (field %u, 0x%llx)", which, n, field,
              (unsigned long long)bits);
    f->mutations++;
    f->tainted = true;
    vc_kick(s, q);
    struct vc_used u;
    enum vc_ev ev = vc_wait_used(s, q, &u, 1000);
    if (ev == VC_EV_TIMEOUT && vc_after(s) == VC_AFTER_HUNG)
        vc_fz_fail(f, "the back-end stopped answering messages");
}

/* Runs one fuzz session; returns false on failure (f->fail says why). */
static bool vc_fuzz_session(uint64_t seed, unsigned max_step, bool verbose, char *fail, size_t fail_len,
                            unsigned *steps_out)
{
    struct vc_fuzz f = {.rng = seed, .verbose = verbose};
    struct vc_setup o = vc_default_setup;
    static const uint32_t sizes[] = {4, 8, 16, 64, 128, 256};
    static const enum vc_mem_layout mems[] = {VC_MEM_ONE, VC_MEM_TWO, VC_MEM_EIGHT};
    o.packed = vc_offers(VIRTIO_F_RING_PACKED) && vc_rand_below(&f.rng, 4) == 0;
    o.size = sizes[vc_rand_below(&f.rng, VUB_ARRAY_LEN(sizes))];
    o.no_event_idx = vc_rand_below(&f.rng, 2) == 0;
    o.no_indirect = vc_rand_below(&f.rng, 4) == 0;
    o.mem = mems[vc_rand_below(&f.rng, VUB_ARRAY_LEN(mems))];
    unsigned nq = vc_nq();
    o.queues_mask = (uint32_t)(1 + vc_rand_below(&f.rng, (1u << nq) - 1));
    unsigned steps = 5 + (unsigned)vc_rand_below(&f.rng, 40);
    if (max_step && steps > max_step + 1)
        steps = max_step + 1;
    if (verbose)
        printf("# session seed 0x%016llx: %s ring of %u, event_idx %d, indirect %d, memory layout %d, queues 0x%x, %u steps\n",
               (unsigned long long)seed, o.packed ? "packed" : "split", o.size, !o.no_event_idx, !o.no_indirect,
               (int)o.mem, o.queues_mask, steps);
    struct vc_sess s;
    snprintf(f.last, sizeof f.last, "set-up");
    vc.verdict = VC_PASS;
    vc.seen[0] = '\0';
    if (!vc_open(&s, &o)) {
        vc_fz_fail(&f, "set-up: %s", s.why);
    } else {
        for (f.step = 0; f.step < steps && !f.fail[0] && !s.closed; f.step++) {
            unsigned q;
            do
                q = (unsigned)vc_rand_below(&f.rng, nq);
            while (!(o.queues_mask & (1u << q)));
            uint64_t dice = vc_rand_below(&f.rng, 100);
            if (dice < 80) {
                vc_fz_io(&f, &s, q);
                if (f.tainted && !f.fail[0] && s.closed)
                    break;
            } else if (dice < 92) {
                if (!vc_fz_message(&f, &s))
                    break;
            } else {
                vc_fz_damage(&f, &s, q);
                break;
            }
        }
    }
    unsigned last_step = f.step;
    vc_close(&s);
    /* afterwards: the back-end is alive and the disk is what we wrote */
    if (vc_peer_gone()) {
        vc_fz_fail(&f, "%s", vc.peer.death);
        vc.peer.restarts++;
        vc_peer_start();
    } else if (!f.fail[0]) {
        snprintf(f.last, sizeof f.last, "verifying the disk on a new session");
        struct vc_sess v;
        if (!vc_open(&v, &vc_default_setup)) {
            vc_fz_fail(&f, "a new session could not be set up: %s", v.why);
            if (vc.peer.pid > 0) {
                vc_peer_stop();
                vc.peer.restarts++;
                vc_peer_start();
            }
        } else {
            vc.verdict = VC_PASS;
            vc.seen[0] = '\0';
            if (!vc_disk_verify(&v, "disk after the session"))
                vc_fz_fail(&f, "%s", vc.seen);
        }
        vc_close(&v);
        if (vc_peer_gone()) {
            vc_fz_fail(&f, "%s", vc.peer.death);
            vc.peer.restarts++;
            vc_peer_start();
        }
    }
    if (verbose)
        printf("# %u steps, %u requests, %u mutations\n", last_step, f.io, f.mutations);
    *steps_out = last_step;
    snprintf(fail, fail_len, "%s", f.fail);
    return f.fail[0] == '\0';
}

static int vc_fuzz_main(void)
{
    char fail[400];
    unsigned steps;
    if (vc.opt.replay) {
        printf("1..1\n");
        bool ok = vc_fuzz_session(vc.opt.replay_seed, (unsigned)vc.opt.replay_step, true, fail, sizeof fail, &steps);
        printf("%s 1 - replay of session 0x%016llx up to step %lu%s%s\n", ok ? "ok" : "not ok",
               (unsigned long long)vc.opt.replay_seed, vc.opt.replay_step, ok ? "" : ": ", fail);
        printf("%d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
        return ok ? 0 : 1;
    }
    unsigned passed = 0, failed = 0;
    printf("1..%lu\n", vc.opt.fuzz_sessions);
    for (unsigned long i = 0; i < vc.opt.fuzz_sessions; i++) {
        uint64_t st = vc.opt.seed ^ (0xa0761d6478bd642full * (i + 1));
        uint64_t seed = vc_rand(&st);
        bool ok = vc_fuzz_session(seed, 0, false, fail, sizeof fail, &steps);
        if (ok) {
            passed++;
            printf("ok %lu - fuzz session %lu (seed 0x%016llx): %u steps\n", i + 1, i, (unsigned long long)seed, steps);
        } else {
            failed++;
            unsigned at = steps;
            printf("not ok %lu - fuzz session %lu (seed 0x%016llx): %s\n# reproduce: --replay 0x%016llx:%u\n", i + 1, i,
                   (unsigned long long)seed, fail, (unsigned long long)seed, at);
        }
        fflush(stdout);
        if (!isatty(2) && i % 10 == 9)
            fprintf(stderr, "vub-conform: %lu/%lu fuzz sessions\n", i + 1, vc.opt.fuzz_sessions);
    }
    printf("%u passed, %u failed\n", passed, failed);
    return failed ? 1 : 0;
}
