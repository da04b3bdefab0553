/* test-client-hostile.c - the vub front-end against back-ends that lie.
 *
 * The test includes vub.c to reach its static functions; build it with
 * `make build/test-client-hostile`. Three parts:
 *   1. the split and the packed ring's driver side against their device
 *      side, in one memfd, without sockets; then used entries no device
 *      should write;
 *   2. the client against the real back-end (vub_dev) on a socketpair;
 *   3. the client against "fake", a back-end written here that speaks just
 *      enough vhost-user and then breaks one rule per test.
 * Every test prints "ok - <sentence>" or "not ok - <sentence>"; the exit
 * status is the number of failures (capped at 100).
 */
#include "vub.c"
#include "../examples/client-copy.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>

static int failures;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void ok(bool cond, const char *fmt, ...)
{
    va_list ap;
    printf("%s - ", cond ? "ok" : "not ok");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    failures += !cond;
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int64_t now_ms(void) { return vub_sys_now_ms(); }

/* ======================================================================== *
 * 1. The split ring, driver against device
 * ======================================================================== */

#define RQ 16                       /* ring size */
#define R_GPA UINT64_C(0x10000000)  /* guest address of the test memory */
#define R_BYTES (1u << 20)
#define R_INDIRECT 0x10000u         /* offsets inside the test memory */
#define R_BUFS 0x40000u

struct rings {
    int memfd;
    uint8_t *mem;                   /* the driver's mapping */
    struct vub_mem devmem;          /* the device's own mapping of the same memfd */
    struct vub_drv drv;
    uint16_t link[RQ];
    struct vub_drv_slot slots[RQ];
    struct vub_vring dev;
    struct iovec iov[300];
    struct vub_error err;
};

static void rings_setup(struct rings *r, bool event_idx, uint16_t indirect_max)
{
    memset(r, 0, sizeof *r);
    r->memfd = memfd_create("rings", MFD_CLOEXEC);
    if (r->memfd < 0 || ftruncate(r->memfd, R_BYTES) != 0)
        abort();
    r->mem = mmap(NULL, R_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
    if (r->mem == MAP_FAILED)
        abort();
    struct vub_vu_mem_region reg = {R_GPA, R_BYTES, (uint64_t)(uintptr_t)r->mem, 0};
    if (vub_mem_add(&r->devmem, &reg, r->memfd, &r->err) != VUB_OK)
        abort();
    uint8_t *desc = r->mem, *avail = r->mem + 16 * RQ, *used = r->mem + 1024;
    vub_drv_init(&r->drv, false, RQ, desc, avail, used, r->link, r->slots);
    r->drv.event_idx = event_idx;
    r->drv.indirect = r->mem + R_INDIRECT;
    r->drv.indirect_addr = R_GPA + R_INDIRECT;
    r->drv.indirect_max = indirect_max;
    /* The device finds the areas by the driver's addresses, as SET_VRING_ADDR gives them. */
    r->dev.size = RQ;
    r->dev.event_idx = event_idx;
    r->dev.indirect = indirect_max > 0;
    r->dev.desc = vub_mem_range(&r->devmem, VUB_UVA, (uintptr_t)desc, 16 * RQ);
    r->dev.driver = vub_mem_range(&r->devmem, VUB_UVA, (uintptr_t)avail, 6 + 2 * RQ);
    r->dev.device = vub_mem_range(&r->devmem, VUB_UVA, (uintptr_t)used, 6 + 8 * RQ);
    r->dev.scratch.chain = r->iov;
    r->dev.scratch.chain_cap = VUB_ARRAY_LEN(r->iov);
}

static void rings_teardown(struct rings *r)
{
    vub_mem_clear(&r->devmem);
    munmap(r->mem, R_BYTES);
    close(r->memfd);
}

/* A virtio-blk-shaped request: 16 readable bytes, `data` writable, 1 status. */
static enum vub_err add_req(struct rings *r, unsigned data_segs, uint32_t seg_bytes, uint16_t *head)
{
    struct vub_desc b[40];
    unsigned n = 0;
    b[n++] = (struct vub_desc){R_GPA + R_BUFS, 16, 0, 0};
    for (unsigned i = 0; i < data_segs; i++)
        b[n++] = (struct vub_desc){R_GPA + R_BUFS + 4096 * (i + 1), seg_bytes, VIRTQ_DESC_F_WRITE, 0};
    b[n++] = (struct vub_desc){R_GPA + R_BUFS + 16, 1, VIRTQ_DESC_F_WRITE, 0};
    return vub_split_add_buf(&r->drv, b, n, head);
}

static bool dev_complete_one(struct rings *r, uint32_t *len_out)
{
    struct vub_chain c;
    if (vub_split_pop(&r->dev, &r->devmem, &c, &r->err) != VUB_OK)
        return false;
    uint32_t len = (uint32_t)c.writable_bytes;
    vub_split_push(&r->dev, &c, len);
    vub_split_publish(&r->dev);
    if (len_out)
        *len_out = len;
    return true;
}

static void test_ring_round_trip(void)
{
    struct rings r;
    struct vub_chain c;
    uint16_t head = 0xffff, got = 0;
    uint32_t len = 0;
    rings_setup(&r, false, 0);
    enum vub_err e = add_req(&r, 2, 512, &head);
    bool popped = vub_split_pop(&r.dev, &r.devmem, &c, &r.err) == VUB_OK;
    ok(e == VUB_OK && popped && c.head == head && c.readable == 1 && c.readable_bytes == 16 &&
           c.writable == 3 && c.writable_bytes == 1025,
       "split driver: a chain of header, two data buffers and status reaches the device as written");
    vub_split_push(&r.dev, &c, 1025);
    vub_split_publish(&r.dev);
    e = vub_split_get_used(&r.drv, &got, &len, &r.err);
    ok(e == VUB_OK && got == head && len == 1025 && r.drv.in_flight == 0 && r.drv.free_count == RQ,
       "split driver: the used entry returns the head and length, and its descriptors go back on the free list");
    ok(vub_split_get_used(&r.drv, &got, &len, &r.err) == VUB_E_AGAIN,
       "split driver: an empty used ring is VUB_E_AGAIN");
    rings_teardown(&r);
}

static void test_ring_chains_fill_and_refill(void)
{
    struct rings r;
    uint16_t head;
    unsigned added = 0;
    rings_setup(&r, false, 0);
    while (add_req(&r, 1, 512, &head) == VUB_OK)
        added++;
    ok(added == RQ / 3 && add_req(&r, 1, 512, &head) == VUB_E_AGAIN,
       "split driver: without INDIRECT_DESC each buffer takes a descriptor; a full ring is VUB_E_AGAIN (%u of %u)",
       added, RQ / 3);
    unsigned done = 0;
    uint32_t len;
    while (dev_complete_one(&r, NULL))
        ;
    while (vub_split_get_used(&r.drv, &head, &len, &r.err) == VUB_OK)
        done++;
    ok(done == added && r.drv.free_count == RQ && add_req(&r, 4, 512, &head) == VUB_OK,
       "split driver: completing every chain frees every descriptor");
    rings_teardown(&r);
}

static void test_ring_indirect(void)
{
    struct rings r;
    uint16_t head;
    unsigned added = 0, right = 0;
    rings_setup(&r, false, 34);
    while (add_req(&r, 32, 512, &head) == VUB_OK)
        added++;
    struct vub_chain c;
    while (vub_split_pop(&r.dev, &r.devmem, &c, &r.err) == VUB_OK) {
        right += c.readable_bytes == 16 && c.writable_bytes == 32 * 512 + 1;
        vub_split_push(&r.dev, &c, (uint32_t)c.writable_bytes);
    }
    vub_split_publish(&r.dev);
    ok(added == RQ && right == RQ,
       "split driver: with INDIRECT_DESC a 34-buffer request costs one ring descriptor (%u in flight)", added);
    uint32_t len;
    unsigned done = 0;
    while (vub_split_get_used(&r.drv, &head, &len, &r.err) == VUB_OK)
        done += len == 32 * 512 + 1;
    ok(done == RQ && r.drv.free_count == RQ, "split driver: indirect requests complete and free their head");
    ok(add_req(&r, 12, 512, &head) == VUB_OK && r.drv.free_count == RQ - 1,
       "split driver: a 14-buffer request uses its head's indirect table");
    r.drv.indirect_max = 5; /* a request too big for the table falls back to a chain */
    ok(add_req(&r, 6, 512, &head) == VUB_OK && r.drv.free_count == RQ - 1 - 8,
       "split driver: a request larger than an indirect table goes as a plain chain");
    rings_teardown(&r);
}

static void test_ring_refusals(void)
{
    struct rings r;
    uint16_t head;
    rings_setup(&r, false, 0);
    ok(add_req(&r, RQ, 512, &head) == VUB_E_INVAL,
       "split driver: a chain longer than the queue size is refused (\"MUST NOT create a descriptor chain longer\")");
    struct vub_desc bad_order[2] = {{R_GPA, 1, VIRTQ_DESC_F_WRITE, 0}, {R_GPA + 8, 16, 0, 0}};
    ok(vub_split_add_buf(&r.drv, bad_order, 2, &head) == VUB_E_INVAL,
       "split driver: a readable buffer after a writable one is refused");
    struct vub_desc empty[1] = {{R_GPA, 0, 0, 0}};
    ok(vub_split_add_buf(&r.drv, empty, 1, &head) == VUB_E_INVAL, "split driver: a zero-length buffer is refused");
    struct vub_desc flags[1] = {{R_GPA, 16, VIRTQ_DESC_F_NEXT, 0}};
    ok(vub_split_add_buf(&r.drv, flags, 1, &head) == VUB_E_INVAL,
       "split driver: callers cannot set NEXT or INDIRECT themselves");
    struct vub_desc big[2] = {{R_GPA, UINT32_MAX, 0, 0}, {R_GPA, 2, VIRTQ_DESC_F_WRITE, 0}};
    ok(vub_split_add_buf(&r.drv, big, 2, &head) == VUB_E_INVAL,
       "split driver: a chain of more than 2^32 bytes is refused");
    ok(r.drv.free_count == RQ && r.drv.split.avail_idx == 0,
       "split driver: refused requests leave the ring untouched");
    rings_teardown(&r);
}

static void test_ring_wraps(void)
{
    struct rings r;
    uint16_t heads[3];
    bool good = true;
    uint32_t total = 0;
    rings_setup(&r, true, 5);
    for (unsigned i = 0; i < 70000 && good; i++) {
        unsigned n = 1 + i % 3;
        total += n;
        for (unsigned k = 0; k < n; k++)
            good &= add_req(&r, 1 + (i + k) % 3, 512, &heads[k]) == VUB_OK;
        for (unsigned k = 0; k < n; k++)
            good &= dev_complete_one(&r, NULL);
        for (unsigned k = 0; k < n; k++) {
            uint16_t h;
            uint32_t len;
            good &= vub_split_get_used(&r.drv, &h, &len, &r.err) == VUB_OK && h == heads[k];
        }
    }
    ok(good && r.drv.in_flight == 0 && r.drv.free_count == RQ && r.drv.split.avail_idx == (uint16_t)total &&
           r.drv.split.last_used == (uint16_t)total,
       "split driver: indexes run past 65535 and wrap with every request accounted for");
    rings_teardown(&r);
}

static void test_ring_kick_suppression(void)
{
    struct rings r;
    uint16_t h;
    rings_setup(&r, true, 0);
    vub_split_enable_kicks(&r.dev); /* avail_event = 0: kick me for entry 0 */
    add_req(&r, 1, 512, &h);
    bool first = vub_split_kick_needed(&r.drv);
    add_req(&r, 1, 512, &h);
    bool second = vub_split_kick_needed(&r.drv);
    ok(first && !second, "[VQ-SPLIT-KICK] EVENT_IDX: the driver kicks when avail_event is crossed, and not again until it moves");
    dev_complete_one(&r, NULL);
    dev_complete_one(&r, NULL);
    vub_split_enable_kicks(&r.dev); /* avail_event = 2 */
    add_req(&r, 1, 512, &h);
    ok(vub_split_kick_needed(&r.drv), "[VQ-SPLIT-KICK] EVENT_IDX: after the device re-arms, the next request kicks");
    ok(!vub_split_kick_needed(&r.drv), "[VQ-SPLIT-KICK] split driver: no new request, no kick");
    rings_teardown(&r);

    rings_setup(&r, false, 0);
    vub_ring_store16(r.dev.device, VIRTQ_USED_F_NO_NOTIFY, memory_order_relaxed);
    add_req(&r, 1, 512, &h);
    bool suppressed = !vub_split_kick_needed(&r.drv);
    vub_split_enable_kicks(&r.dev);
    add_req(&r, 1, 512, &h);
    ok(suppressed && vub_split_kick_needed(&r.drv),
       "[VQ-SPLIT-KICK] no EVENT_IDX: used->flags NO_NOTIFY suppresses kicks, clearing it brings them back");
    rings_teardown(&r);
}

static void test_ring_interrupt_suppression(void)
{
    struct rings r;
    uint16_t h;
    uint32_t len;
    rings_setup(&r, true, 0);
    for (int i = 0; i < 3; i++)
        add_req(&r, 1, 512, &h);
    bool pending = vub_drv_enable_interrupts(&r.drv); /* used_event = 0 */
    dev_complete_one(&r, NULL);
    bool n1 = vub_vring_need_notify(&r.dev);
    dev_complete_one(&r, NULL);
    bool n2 = vub_vring_need_notify(&r.dev);
    ok(!pending && n1 && !n2, "EVENT_IDX: the device notifies once used_event is crossed, then stays quiet");
    vub_split_get_used(&r.drv, &h, &len, &r.err);
    vub_split_get_used(&r.drv, &h, &len, &r.err); /* used_event = 2 */
    dev_complete_one(&r, NULL);
    ok(vub_vring_need_notify(&r.dev), "EVENT_IDX: consuming entries moves used_event, so the next one notifies");
    add_req(&r, 1, 512, &h);
    vub_split_get_used(&r.drv, &h, &len, &r.err);
    dev_complete_one(&r, NULL);
    ok(vub_drv_enable_interrupts(&r.drv),
       "[VQ-SPLIT-IRQ-RACE] split driver: re-arming reports entries that arrived meanwhile (the lost-notification race)");
    rings_teardown(&r);

    rings_setup(&r, false, 0);
    add_req(&r, 1, 512, &h);
    add_req(&r, 1, 512, &h);
    vub_drv_disable_interrupts(&r.drv);
    dev_complete_one(&r, NULL);
    bool quiet = !vub_vring_need_notify(&r.dev);
    vub_drv_enable_interrupts(&r.drv);
    dev_complete_one(&r, NULL);
    ok(quiet && vub_vring_need_notify(&r.dev),
       "no EVENT_IDX: avail->flags NO_INTERRUPT silences the device, clearing it brings notifications back");
    rings_teardown(&r);
}

/* The device writes used entries no honest device would. */
enum used_lie { LIE_ID_RANGE, LIE_ID_IDLE, LIE_ID_TWICE, LIE_LEN_PLUS_ONE, LIE_LEN_HUGE, LIE_IDX_JUMP, LIE_IDX_BACK };

static void test_ring_used_lie(enum used_lie lie, const char *tag, const char *sentence)
{
    struct rings r;
    uint16_t h, got;
    uint32_t len;
    rings_setup(&r, false, 0);
    add_req(&r, 1, 512, &h); /* 513 writable bytes */
    if (lie == LIE_ID_TWICE)
        add_req(&r, 1, 512, &got); /* a second request in flight, so the index alone is plausible */
    uint8_t *used = r.drv.device;
    uint16_t idx = 1;
    uint32_t id = h, l = 513;
    switch (lie) {
    case LIE_ID_RANGE: id = RQ; break;
    case LIE_ID_IDLE: id = (uint32_t)(h + 5) % RQ; break;
    case LIE_LEN_PLUS_ONE: l = 514; break;
    case LIE_LEN_HUGE: l = UINT32_MAX; break;
    case LIE_IDX_JUMP: idx = 40; break;
    case LIE_IDX_BACK: idx = 0xffff; break;
    case LIE_ID_TWICE: break;
    }
    vub_put_le32(used + 4, id);
    vub_put_le32(used + 8, l);
    if (lie == LIE_ID_TWICE) {
        vub_put_le32(used + 12, id);
        vub_put_le32(used + 16, l);
        idx = 2;
    }
    vub_ring_store16(used + 2, idx, memory_order_release);
    enum vub_err e = vub_split_get_used(&r.drv, &got, &len, &r.err);
    if (lie == LIE_ID_TWICE)
        e = e == VUB_OK ? vub_split_get_used(&r.drv, &got, &len, &r.err) : VUB_OK;
    bool sticky = vub_split_get_used(&r.drv, &got, &len, &r.err) == VUB_E_PROTO &&
                  add_req(&r, 1, 512, &h) == VUB_E_PROTO;
    ok(e == VUB_E_PROTO && sticky && strcmp(vub_reasons[r.err.reason].tag, tag) == 0,
       "[%s] used ring: %s is VUB_E_PROTO for exactly that reason and the ring stays broken (reason %s)", tag,
       sentence, vub_reasons[r.err.reason].tag);
    rings_teardown(&r);
}

static void test_ring_table_scribble(void)
{
    struct rings r;
    uint16_t h1, h2;
    uint32_t len;
    rings_setup(&r, false, 0);
    add_req(&r, 2, 512, &h1);
    dev_complete_one(&r, NULL);
    memset(r.mem, 0xee, 16 * RQ); /* a device that "MUST NOT write" the table does */
    bool got = vub_split_get_used(&r.drv, &h2, &len, &r.err) == VUB_OK;
    add_req(&r, 2, 512, &h2);
    struct vub_chain c;
    ok(got && vub_split_pop(&r.dev, &r.devmem, &c, &r.err) == VUB_OK && c.writable_bytes == 1025 &&
           r.drv.free_count == RQ - 4,
       "split driver: the free list lives in host memory, so a scribbled descriptor table cannot corrupt it");
    rings_teardown(&r);
}

/* ======================================================================== *
 * 1b. The packed ring, driver against device
 * ======================================================================== */

#define PQ 5 /* packed ring size: not a power of two, so wraps come often */

struct prings {
    int memfd;
    uint8_t *mem;
    struct vub_mem devmem;
    struct vub_drv drv;
    uint16_t free_ids[PQ];
    struct vub_drv_slot slots[PQ];
    struct vub_vring dev;
    uint16_t batch_ids[PQ];
    uint8_t ids_pending[65536 / 8];
    struct iovec iov[300];
    struct vub_error err;
};

static void prings_setup(struct prings *r, bool event_idx)
{
    memset(r, 0, sizeof *r);
    r->memfd = memfd_create("prings", MFD_CLOEXEC);
    if (r->memfd < 0 || ftruncate(r->memfd, R_BYTES) != 0)
        abort();
    r->mem = mmap(NULL, R_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
    if (r->mem == MAP_FAILED)
        abort();
    struct vub_vu_mem_region reg = {R_GPA, R_BYTES, (uint64_t)(uintptr_t)r->mem, 0};
    if (vub_mem_add(&r->devmem, &reg, r->memfd, &r->err) != VUB_OK)
        abort();
    uint8_t *desc = r->mem, *driver_event = r->mem + 1024, *device_event = r->mem + 1028;
    vub_drv_init(&r->drv, true, PQ, desc, driver_event, device_event, r->free_ids, r->slots);
    r->drv.event_idx = event_idx;
    r->dev.size = PQ;
    r->dev.packed_ring = true;
    r->dev.event_idx = event_idx;
    r->dev.packed.avail_wrap = r->dev.packed.used_wrap = true; /* "initializes its wrap counters to 1" */
    r->dev.desc = vub_mem_range(&r->devmem, VUB_UVA, (uintptr_t)desc, 16 * PQ);
    r->dev.driver = vub_mem_range(&r->devmem, VUB_UVA, (uintptr_t)driver_event, 4);
    r->dev.device = vub_mem_range(&r->devmem, VUB_UVA, (uintptr_t)device_event, 4);
    r->dev.scratch.batch_ids = r->batch_ids;
    r->dev.scratch.ids_pending = r->ids_pending;
    r->dev.scratch.chain = r->iov;
    r->dev.scratch.chain_cap = VUB_ARRAY_LEN(r->iov);
}

static void prings_teardown(struct prings *r)
{
    vub_mem_clear(&r->devmem);
    munmap(r->mem, R_BYTES);
    close(r->memfd);
}

/* Header, one 512-byte data buffer, status: 513 writable bytes, 3 slots. */
static enum vub_err padd_req(struct prings *r, uint16_t *id)
{
    struct vub_desc b[3] = {{R_GPA + R_BUFS, 16, 0, 0},
                            {R_GPA + R_BUFS + 4096, 512, VIRTQ_DESC_F_WRITE, 0},
                            {R_GPA + R_BUFS + 16, 1, VIRTQ_DESC_F_WRITE, 0}};
    return vub_packed_add_buf(&r->drv, b, 3, id);
}

/* The device takes the next buffer and returns it with `len`. */
static bool pdev_complete_one(struct prings *r, uint32_t len)
{
    struct vub_chain c;
    if (vub_packed_pop(&r->dev, &r->devmem, &c, &r->err) != VUB_OK)
        return false;
    vub_packed_push(&r->dev, &c, len);
    vub_packed_publish(&r->dev);
    return true;
}

static void test_packed_round_trip(void)
{
    struct prings r;
    prings_setup(&r, false);
    bool good = true;
    unsigned total = 0;
    for (unsigned i = 0; i < 4 * PQ; i++) { /* 12 laps of a 5-slot ring, 3 slots a request */
        uint16_t id = 0xffff, got = 0xffff;
        uint32_t len = 0;
        struct vub_chain c;
        good &= padd_req(&r, &id) == VUB_OK;
        good &= vub_packed_pop(&r.dev, &r.devmem, &c, &r.err) == VUB_OK && c.head == id &&
                c.readable_bytes == 16 && c.writable_bytes == 513 && c.slots == 3;
        vub_packed_push(&r.dev, &c, 513);
        vub_packed_publish(&r.dev);
        good &= vub_packed_get_used(&r.drv, &got, &len, &r.err) == VUB_OK && got == id && len == 513;
        total += good;
    }
    ok(good && total == 4 * PQ && r.drv.in_flight == 0 && r.drv.free_count == PQ && r.drv.pk.free_ids == PQ,
       "[VQ-PACKED] packed driver and device: %u requests over many wraps of a 5-slot ring, ids and lengths intact",
       total);
    uint16_t got;
    uint32_t len;
    ok(vub_packed_get_used(&r.drv, &got, &len, &r.err) == VUB_E_AGAIN,
       "[VQ-PACKED] packed driver: no used descriptor is VUB_E_AGAIN");
    prings_teardown(&r);
}

/* The device returns a used descriptor no honest device would. */
enum packed_lie { PLIE_ID_IDLE, PLIE_ID_RANGE, PLIE_LEN_PLUS_ONE, PLIE_LEN_HUGE };

static void test_packed_used_lie(enum packed_lie lie, const char *tag, const char *sentence)
{
    struct prings r;
    uint16_t id, got = 0xffff;
    uint32_t len = 0;
    prings_setup(&r, false);
    padd_req(&r, &id);
    struct vub_chain c;
    vub_packed_pop(&r.dev, &r.devmem, &c, &r.err);
    uint32_t l = 513;
    switch (lie) {
    case PLIE_ID_IDLE: c.head = (uint16_t)(id + 1), l = 0; break; /* a free id; no length to catch it by */
    case PLIE_ID_RANGE: c.head = 0x7777; break;
    case PLIE_LEN_PLUS_ONE: l = 514; break;
    case PLIE_LEN_HUGE: l = UINT32_MAX; break;
    }
    vub_packed_push(&r.dev, &c, l);
    vub_packed_publish(&r.dev);
    enum vub_err e = vub_packed_get_used(&r.drv, &got, &len, &r.err);
    bool sticky = vub_packed_get_used(&r.drv, &got, &len, &r.err) == VUB_E_PROTO &&
                  padd_req(&r, &id) == VUB_E_PROTO;
    ok(e == VUB_E_PROTO && sticky && r.drv.in_flight == 1 && strcmp(vub_reasons[r.err.reason].tag, tag) == 0,
       "[%s] packed used ring: %s is VUB_E_PROTO for exactly that reason, nothing is freed and the ring stays "
       "broken (reason %s)", tag, sentence, vub_reasons[r.err.reason].tag);
    prings_teardown(&r);
}

/* "If VIRTQ_DESC_F_WRITE is not set ... the device has not written": len is
 * then reserved and may hold anything. */
static void test_packed_len_without_write(void)
{
    struct prings r;
    uint16_t id, got;
    uint32_t len = 1;
    prings_setup(&r, false);
    padd_req(&r, &id);
    pdev_complete_one(&r, 0); /* WRITE clear */
    vub_put_le32(r.mem + 8, 0xfffffff0u); /* garbage in the reserved len */
    enum vub_err e = vub_packed_get_used(&r.drv, &got, &len, &r.err);
    ok(e == VUB_OK && got == id && len == 0,
       "[VQ-PACKED-USED-LEN] packed driver: a used descriptor without WRITE counts 0 bytes, whatever len holds");
    prings_teardown(&r);
}

static void test_packed_kicks(void)
{
    struct prings r;
    uint16_t id;
    prings_setup(&r, false);
    vub_ring_store16(r.dev.device + 2, RING_EVENT_FLAGS_DISABLE, memory_order_relaxed);
    padd_req(&r, &id);
    bool quiet = !vub_packed_kick_needed(&r.drv);
    bool pending = vub_packed_enable_kicks(&r.dev); /* ENABLE, and the buffer is already there */
    pdev_complete_one(&r, 1);
    uint32_t len;
    vub_packed_get_used(&r.drv, &id, &len, &r.err);
    padd_req(&r, &id);
    bool asked = vub_packed_kick_needed(&r.drv);
    ok(quiet && pending && asked && !vub_packed_kick_needed(&r.drv),
       "[VQ-PACKED-KICK] packed driver: DISABLE in the device event area suppresses kicks, ENABLE brings them "
       "back, and nothing new means no kick");
    prings_teardown(&r);

    prings_setup(&r, true);
    vub_packed_enable_kicks(&r.dev); /* DESC at slot 0 */
    padd_req(&r, &id);
    bool first = vub_packed_kick_needed(&r.drv);
    pdev_complete_one(&r, 1);
    vub_packed_get_used(&r.drv, &id, &len, &r.err);
    padd_req(&r, &id); /* slots 3, 4 and 0 of the next lap: the device asked for slot 0 of the first */
    bool second = vub_packed_kick_needed(&r.drv);
    pdev_complete_one(&r, 1);
    vub_packed_enable_kicks(&r.dev); /* DESC at slot 1 of the second lap, where the device now is */
    vub_packed_get_used(&r.drv, &id, &len, &r.err);
    padd_req(&r, &id); /* slots 1..3 of the second lap */
    bool third = vub_packed_kick_needed(&r.drv);
    ok(first && !second && third,
       "[VQ-PACKED-KICK] EVENT_IDX, packed: the driver kicks when it makes the slot the device named available "
       "(in the lap its wrap bit names), and not for a later one");
    prings_teardown(&r);
}

static void test_packed_interrupts(void)
{
    struct prings r;
    uint16_t id, got;
    uint32_t len;
    prings_setup(&r, false);
    padd_req(&r, &id);
    vub_drv_disable_interrupts(&r.drv);
    pdev_complete_one(&r, 1);
    bool quiet = !vub_vring_need_notify(&r.dev);
    bool meanwhile = vub_drv_enable_interrupts(&r.drv); /* the entry arrived while we were not listening */
    vub_packed_get_used(&r.drv, &got, &len, &r.err);
    bool empty = !vub_drv_enable_interrupts(&r.drv);
    padd_req(&r, &id);
    pdev_complete_one(&r, 1);
    ok(quiet && meanwhile && empty && vub_vring_need_notify(&r.dev),
       "[VQ-PACKED-IRQ-RACE] packed driver: re-arming reports a used descriptor that arrived while notifications "
       "were off, an empty ring reports none, and the device notifies once they are on");
    prings_teardown(&r);
}

/* ======================================================================== *
 * 2. The client against the real back-end, in a thread
 * ======================================================================== */

#define DISK_BYTES (4u << 20)

struct server {
    struct vub_dev *dev;
    struct vub_image *img;
    int fd;
    pthread_t thread;
    char path[64];
};

static void *server_main(void *arg)
{
    struct server *s = arg;
    if (vub_dev_attach(s->dev, s->fd) != VUB_OK)
        return NULL;
    for (;;) {
        struct pollfd p[VUB_MAX_POLLFDS];
        size_t n = vub_dev_pollfds(s->dev, p, VUB_MAX_POLLFDS);
        if (poll(p, (nfds_t)n, 1000) < 0 && errno != EINTR)
            break;
        if (vub_dev_dispatch(s->dev, p, n) != VUB_OK)
            break;
    }
    vub_dev_detach(s->dev);
    return NULL;
}

/* Starts a vub back-end on a fresh image; returns the client's end. */
static int server_start(struct server *s, bool read_only, uint16_t queues)
{
    char why[256];
    int sv[2];
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "/tmp/vub-hostile-XXXXXX");
    int fd = mkstemp(s->path);
    if (fd < 0 || ftruncate(fd, DISK_BYTES) != 0)
        abort();
    for (uint32_t i = 0; i < DISK_BYTES; i += 4096) {
        uint8_t b[4096];
        memset(b, (int)(i / 4096) & 0xff, sizeof b);
        if (pwrite(fd, b, sizeof b, i) != (ssize_t)sizeof b)
            abort();
    }
    close(fd);
    struct vub_image_opts io = {.read_only = read_only};
    if (vub_image_open(&s->img, s->path, &io, why, sizeof why) != VUB_OK) {
        fprintf(stderr, "%s\n", why);
        abort();
    }
    struct vub_dev_config dc = {.image = s->img, .num_queues = queues, .read_only = read_only};
    memcpy(dc.serial, "hostile-test-serial!", 20);
    if (vub_dev_new(&s->dev, &dc) != VUB_OK || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    s->fd = sv[1];
    pthread_create(&s->thread, NULL, server_main, s);
    return sv[0];
}

static void server_stop(struct server *s)
{
    pthread_join(s->thread, NULL);
    vub_dev_free(s->dev);
    vub_image_close(s->img);
    unlink(s->path);
}

static uint8_t disk_byte(uint64_t off) { return (uint8_t)(off / 4096); }

/* ---- A back-end that dies, and another on the same path ---- */

struct life {
    struct vub_dev *dev;
    int lfd;             /* the listening socket both lives accept on */
    bool process;        /* false: serve the control channel, never the rings */
    atomic_bool die;     /* set by the test: drop the connection and end */
    pthread_t thread;
};

static void *life_main(void *arg)
{
    struct life *l = arg;
    if (vub_dev_attach(l->dev, accept4(l->lfd, NULL, NULL, SOCK_CLOEXEC)) != VUB_OK)
        return NULL;
    while (!atomic_load(&l->die)) {
        struct pollfd p[VUB_MAX_POLLFDS];
        size_t n = vub_dev_pollfds(l->dev, p, VUB_MAX_POLLFDS);
        if (!l->process)
            n = 1; /* the socket alone: kicks are never read, requests never popped */
        if (poll(p, (nfds_t)n, 20) < 0 && errno != EINTR)
            break;
        if (vub_dev_dispatch(l->dev, p, n) != VUB_OK)
            break;
    }
    vub_dev_detach(l->dev); /* the connection goes, as in a crash */
    return NULL;
}

static void life_start(struct life *l, struct vub_image *img, int lfd, bool process)
{
    struct vub_dev_config dc = {.image = img, .num_queues = 1};
    l->lfd = lfd;
    l->process = process;
    atomic_store(&l->die, false);
    if (vub_dev_new(&l->dev, &dc) != VUB_OK)
        abort();
    pthread_create(&l->thread, NULL, life_main, l);
}

static void life_end(struct life *l)
{
    atomic_store(&l->die, true);
    pthread_join(l->thread, NULL);
    vub_dev_free(l->dev);
}

/* [CLIENT-RECONNECT] Eight writes are in flight when the back-end goes
 * away without having looked at them; a new back-end on the same socket
 * takes the client back, and each write completes exactly once, with its
 * cookie, and is on the disk. */
static void test_reconnect(enum vub_client_ring ring, const char *label)
{
    char dir[] = "/tmp/vub-reconnect-XXXXXX", sock[64], img_path[64], why[256];
    struct vub_image *img;
    struct vub_image_opts io = {0};
    struct life a, b;
    if (!mkdtemp(dir))
        abort();
    snprintf(sock, sizeof sock, "%s/s", dir);
    snprintf(img_path, sizeof img_path, "%s/img", dir);
    int fd = open(img_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ftruncate(fd, DISK_BYTES) != 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(lfd, 2) != 0 || vub_image_open(&img, img_path, &io, why, sizeof why) != VUB_OK)
        abort();
    close(fd);
    life_start(&a, img, lfd, false);

    struct vub_client *cl;
    struct vub_client_opts o = {.socket_path = sock, .ring = ring, .timeout_ms = 5000};
    enum vub_err e = vub_client_connect(&cl, &o, why, sizeof why);
    ok(e == VUB_OK, "%s: connects by path (%s)", label, e == VUB_OK ? "" : why);
    if (e != VUB_OK)
        abort();
    struct vub_client_queue *q = vub_client_queue(cl, 0);
    uint8_t *buf = vub_client_alloc(cl, 8 * 4096);
    struct iovec iov[8];
    for (unsigned i = 0; i < 8; i++) {
        memset(buf + i * 4096, 0x40 + (int)i, 4096);
        iov[i] = (struct iovec){buf + i * 4096, 4096};
        struct vub_client_req r = {.op = VUB_CLIENT_WRITE, .offset = (uint64_t)(7 - i) * 65536, .iov = &iov[i],
                                   .iov_count = 1, .cookie = 100 + i};
        if (vub_client_submit(q, &r) != VUB_OK)
            abort();
    }
    vub_client_kick(q);
    life_end(&a);
    e = vub_client_wait(q, 5000);
    ok(e == VUB_E_CLOSED && vub_client_in_flight(q) == 8,
       "%s: the back-end dies holding 8 requests: wait says CLOSED (%s), 8 in flight", label, vub_strerror(e));

    life_start(&b, img, lfd, true);
    e = vub_client_reconnect(cl, 5000, why, sizeof why);
    ok(e == VUB_OK, "%s: vub_client_reconnect takes the new back-end on the same path (%s)", label,
       e == VUB_OK ? "" : why);
    unsigned seen[8] = {0}, got = 0, bad = 0;
    while (e == VUB_OK && vub_client_in_flight(q) > 0) {
        struct vub_client_completion c[8];
        unsigned n;
        e = vub_client_reap(q, c, 8, &n);
        for (unsigned k = 0; k < n; k++, got++) {
            if (c[k].cookie < 100 || c[k].cookie >= 108 || c[k].status != VUB_BLK_S_OK)
                bad++;
            else
                seen[c[k].cookie - 100]++;
        }
        if (e == VUB_OK && n == 0)
            e = vub_client_wait(q, 5000);
    }
    bool once = got == 8 && bad == 0;
    for (unsigned i = 0; i < 8; i++)
        once = once && seen[i] == 1;
    ok(once, "%s: each of the 8 requests completes exactly once, OK, with its cookie (%u completions)", label, got);
    uint8_t back[4096];
    bool data = true;
    for (unsigned i = 0; i < 8; i++) {
        data = data && copy_pread(cl, 0, back, sizeof back, (uint64_t)(7 - i) * 65536, NULL) == VUB_OK;
        data = data && back[0] == 0x40 + i && back[4095] == 0x40 + i;
    }
    ok(data, "%s: every resubmitted write is on the disk", label);
    vub_client_close(cl);
    life_end(&b);

    /* A client made from an fd has no path to go back to. */
    life_start(&a, img, lfd, true);
    fd = vub_sys_connect(sock);
    e = fd >= 0 ? vub_client_connect_fd(&cl, fd, &(struct vub_client_opts){.timeout_ms = 5000}, why, sizeof why)
                : VUB_E_IO;
    if (e == VUB_OK) {
        e = vub_client_reconnect(cl, 100, why, sizeof why);
        vub_client_close(cl);
    }
    ok(e == VUB_E_INVAL && strstr(why, "[CLIENT-RECONNECT]"),
       "%s: a client made from an fd has no path to reconnect to: VUB_E_INVAL (%s)", label, why);
    life_end(&a);
    close(lfd);
    vub_image_close(img);
    unlink(sock);
    unlink(img_path);
    rmdir(dir);
}


/* Reads, writes and the other requests through one client configuration. */
static void test_real_backend(const char *label, struct vub_client_opts o)
{
    struct server s;
    struct vub_client *cl;
    char why[256];
    int fds_before = open_fds();
    int fd = server_start(&s, false, 4);
    o.timeout_ms = 5000;
    enum vub_err e = vub_client_connect_fd(&cl, fd, &o, why, sizeof why);
    ok(e == VUB_OK, "%s: connects to the vub back-end (%s)", label, e == VUB_OK ? "" : why);
    if (e != VUB_OK) {
        server_stop(&s);
        return;
    }
    const struct vub_client_info *in = vub_client_info(cl);
    struct vub_client_queue *q = vub_client_queue(cl, in->num_queues - 1);
    ok(in->config.capacity_sectors * 512 == DISK_BYTES && vub_client_queue(cl, in->num_queues) == NULL,
       "%s: GET_CONFIG capacity is the image size", label);

    static uint8_t buf[256 * 1024], back[256 * 1024];
    uint8_t st = 0xee;
    e = copy_pread(cl, in->num_queues - 1, buf, 8192, 4096 * 3, &st);
    ok(e == VUB_OK && st == VUB_BLK_S_OK && buf[0] == 3 && buf[8191] == 4,
       "%s: a copying read returns the image's bytes", label);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 7 + 1);
    e = copy_pwrite(cl, in->num_queues - 1, buf, sizeof buf, 1 << 20, &st);
    if (e == VUB_OK)
        e = copy_pread(cl, in->num_queues - 1, back, sizeof back, 1 << 20, &st);
    ok(e == VUB_OK && memcmp(buf, back, sizeof buf) == 0, "%s: 256 KiB written and read back match", label);

    /* Zero-copy, many in flight, many segments, completions by cookie. */
    /* segments of whole sectors: 4, or the largest power of two the ring allows */
    unsigned depth = in->queue_size < 32 ? in->queue_size : 32, segs = 4;
    while (segs > in->max_segments)
        segs /= 2;
    uint8_t *pool = vub_client_alloc(cl, (size_t)depth * 4096);
    struct iovec iov[32][4];
    uint64_t seen = 0;
    bool good = pool != NULL;
    unsigned next = 0, again = 0;
    while (good && (next < depth || vub_client_in_flight(q) > 0)) {
        while (next < depth) {
            unsigned i = next;
            for (unsigned k = 0; k < segs; k++)
                iov[i][k] = (struct iovec){pool + i * 4096 + k * (4096 / segs), 4096 / segs};
            struct vub_client_req r = {.op = VUB_CLIENT_READ, .offset = (uint64_t)i * 4096, .iov = iov[i],
                                       .iov_count = segs, .cookie = 1000 + i};
            e = vub_client_submit(q, &r);
            if (e == VUB_E_AGAIN) {
                again++;
                break; /* ring full: reap, then go on */
            }
            good &= e == VUB_OK;
            next++;
        }
        struct vub_client_completion c[8];
        unsigned n;
        good &= vub_client_reap(q, c, 8, &n) == VUB_OK;
        for (unsigned k = 0; k < n; k++) {
            unsigned i = (unsigned)(c[k].cookie - 1000);
            good &= i < depth && !(seen >> i & 1) && c[k].status == VUB_BLK_S_OK && c[k].used_bytes == 4097 &&
                    pool[i * 4096] == disk_byte((uint64_t)i * 4096);
            seen |= UINT64_C(1) << i;
        }
        if (good && n == 0)
            good &= vub_client_wait(q, 5000) == VUB_OK;
    }
    ok(good && seen == (depth == 64 ? UINT64_MAX : (UINT64_C(1) << depth) - 1),
       "%s: %u reads of %u segments complete once each, with their cookies (ring full %u times)", label, depth,
       segs, again);
    vub_client_free(cl, pool);

    char id[21];
    e = copy_get_id(cl, in->num_queues - 1, id, &st);
    ok(e == VUB_OK && memcmp(id, "hostile-test-serial!", 20) == 0 && id[20] == 0,
       "%s: GET_ID returns all 20 bytes of the serial, unterminated on the wire", label);
    struct vub_client_completion d;
    struct vub_client_req fl = {.op = VUB_CLIENT_FLUSH};
    ok(vub_client_run(q, &fl, &d) == VUB_OK && d.status == VUB_BLK_S_OK && d.used_bytes == 1,
       "%s: FLUSH completes with OK and a used length of 1", label);
    struct vub_client_req wz = {.op = VUB_CLIENT_WRITE_ZEROES, .offset = 1 << 20, .length = 65536, .unmap = true};
    e = vub_client_run(q, &wz, &d);
    if (e == VUB_OK)
        e = copy_pread(cl, in->num_queues - 1, back, 65536, 1 << 20, &st);
    bool zero = e == VUB_OK;
    for (unsigned i = 0; zero && i < 65536; i++)
        zero = back[i] == 0;
    ok(zero, "%s: WRITE_ZEROES with UNMAP reads back as zeros", label);
    struct vub_client_req dc = {.op = VUB_CLIENT_DISCARD, .offset = 2 << 20, .length = 65536};
    ok(vub_client_run(q, &dc, &d) == VUB_OK, "%s: DISCARD completes with OK", label);
    e = copy_pread(cl, in->num_queues - 1, back, 512, DISK_BYTES, &st);
    ok(e == VUB_E_IO && st == VUB_BLK_S_IOERR, "%s: a read past the capacity is IOERR", label);
    struct vub_client_req odd = {.op = VUB_CLIENT_READ, .offset = 100, .iov = iov[0], .iov_count = 1};
    ok(vub_client_submit(q, &odd) == VUB_E_INVAL && vub_client_in_flight(q) == 0,
       "%s: a misaligned request is refused before it reaches the ring", label);
    struct iovec outside = {buf, 4096};
    struct vub_client_req foreign = {.op = VUB_CLIENT_READ, .iov = &outside, .iov_count = 1};
    ok(vub_client_submit(q, &foreign) == VUB_E_INVAL, "%s: a buffer outside the shared pool is refused", label);
    vub_client_close(cl);
    server_stop(&s);
    ok(open_fds() == fds_before, "%s: close leaves no file descriptor behind", label);
}

static void test_real_backend_read_only(void)
{
    struct server s;
    struct vub_client *cl;
    struct vub_client_opts o = {.timeout_ms = 5000};
    char why[256];
    int fd = server_start(&s, true, 1);
    if (vub_client_connect_fd(&cl, fd, &o, why, sizeof why) != VUB_OK) {
        ok(false, "read-only: connect (%s)", why);
        server_stop(&s);
        return;
    }
    uint8_t buf[4096] = {0}, st = 0;
    enum vub_err e = copy_pwrite(cl, 0, buf, sizeof buf, 0, &st);
    bool ro = vub_has(vub_client_info(cl)->features, VIRTIO_BLK_F_RO);
    vub_client_close(cl);
    server_stop(&s);
    ok(ro && e == VUB_E_IO && st == VUB_BLK_S_IOERR, "read-only: RO is negotiated and a write is IOERR");
}

/* A client of a fresh vub back-end with `queues` queues, or NULL (the
 * failure is reported under `label` and the back-end stopped). */
static struct vub_client *server_client(struct server *s, uint16_t queues, struct vub_client_opts o,
                                        const char *label)
{
    struct vub_client *cl;
    char why[256];
    int fd = server_start(s, false, queues);
    o.timeout_ms = 5000;
    if (vub_client_connect_fd(&cl, fd, &o, why, sizeof why) == VUB_OK)
        return cl;
    ok(false, "%s: connect (%s)", label, why);
    server_stop(s);
    return NULL;
}

/* The write cache through SET_CONFIG, against the real back-end: it starts
 * off ([BLK-WCE-INIT]) and follows each vub_client_set_writeback(). */
static void test_real_backend_writeback(void)
{
    struct server s;
    struct vub_client *cl = server_client(&s, 1, (struct vub_client_opts){0}, "writeback");
    if (!cl)
        return;
    const struct vub_client_info *in = vub_client_info(cl);
    uint8_t start = in->config.writeback;
    enum vub_err on = vub_client_set_writeback(cl, true);
    uint8_t after_on = in->config.writeback;
    enum vub_err off = vub_client_set_writeback(cl, false);
    uint8_t after_off = in->config.writeback;
    struct vub_client_req fl = {.op = VUB_CLIENT_FLUSH};
    enum vub_err still = vub_client_run(vub_client_queue(cl, 0), &fl, NULL);
    bool wce = vub_has(in->features, VUB_VIRTIO_BLK_F_CONFIG_WCE);
    vub_client_close(cl);
    server_stop(&s);
    ok(wce && start == 0 && on == VUB_OK && after_on == 1 &&
           off == VUB_OK && after_off == 0 && still == VUB_OK,
       "[VU-CONFIG-WRITE] writeback: the vub back-end starts write-through, and SET_CONFIG turns the cache on and "
       "off again, as GET_CONFIG then reports (%d %d %d)", start, after_on, after_off);
}

/* [CLIENT-WAIT-MODE] A polling queue stays polling through vub_client_wait();
 * a notified one is re-armed by it. */
static bool ring_interrupts(const struct vub_client_queue *q)
{
    return q->ring.interrupts;
}

static void test_wait_keeps_mode(enum vub_client_ring ring)
{
    struct server s;
    const char *label = ring == VUB_CLIENT_RING_PACKED ? "wait mode, packed" : "wait mode, split";
    struct vub_client *cl = server_client(&s, 1, (struct vub_client_opts){.ring = ring}, label);
    if (!cl)
        return;
    struct vub_client_queue *q = vub_client_queue(cl, 0);
    uint8_t *buf = vub_client_alloc(cl, 4096);
    struct iovec iov = {buf, 4096};
    unsigned done[2] = {0, 0}, wrong_mode[2] = {0, 0};
    for (int polling = 1; polling >= 0; polling--) {
        vub_client_set_polling(q, polling);
        for (unsigned i = 0; i < 64; i++) {
            struct vub_client_req r = {.op = VUB_CLIENT_READ, .offset = (uint64_t)(i % 16) * 4096, .iov = &iov,
                                       .iov_count = 1};
            struct vub_client_completion c;
            unsigned n = 0;
            if (vub_client_submit(q, &r) != VUB_OK)
                break;
            while (vub_client_reap(q, &c, 1, &n) == VUB_OK && n == 0) {
                if (vub_client_wait(q, 5000) != VUB_OK)
                    break;
                wrong_mode[polling] += ring_interrupts(q) == polling;
            }
            done[polling] += n == 1 && c.status == VUB_BLK_S_OK && buf[0] == i % 16;
        }
    }
    vub_client_close(cl);
    server_stop(&s);
    ok(done[1] == 64 && wrong_mode[1] == 0,
       "%s: 64 reads on a polling queue complete and vub_client_wait never re-arms notifications (%u of 64, "
       "re-armed %u times)", label, done[1], wrong_mode[1]);
    ok(done[0] == 64 && wrong_mode[0] == 0,
       "%s: after polling is switched off, vub_client_wait re-arms notifications again (%u of 64)", label,
       done[0]);
}

/* One thread per queue, no lock: each writes its own stripe with its own
 * pattern and reads it back, half of them polling, while the owner thread
 * switches the write cache under them. */
#define MT_QUEUES 4
#define MT_ROUNDS 200

struct mt_worker {
    struct vub_client *cl;
    struct vub_client_queue *q;
    unsigned index;
    uint8_t *buf;    /* 8 x 4 KiB, from the pool */
    unsigned good;   /* rounds whose reads matched */
    enum vub_err err;
};

static enum vub_err mt_drain(struct vub_client_queue *q, unsigned *bad_status)
{
    while (vub_client_in_flight(q) > 0) {
        struct vub_client_completion c[8];
        unsigned n;
        enum vub_err e = vub_client_reap(q, c, 8, &n);
        for (unsigned k = 0; e == VUB_OK && k < n; k++)
            *bad_status += c[k].status != VUB_BLK_S_OK;
        if (e == VUB_OK && n == 0)
            e = vub_client_wait(q, 5000);
        if (e != VUB_OK)
            return e;
    }
    return VUB_OK;
}

static void *mt_main(void *arg)
{
    struct mt_worker *w = arg;
    uint64_t stripe = (uint64_t)w->index * (DISK_BYTES / MT_QUEUES);
    vub_client_set_polling(w->q, w->index % 2 == 1);
    for (unsigned round = 0; round < MT_ROUNDS && w->err == VUB_OK; round++) {
        struct vub_client_req r[8];
        struct iovec iov[8];
        unsigned bad = 0, sent;
        for (int write = 1; write >= 0 && w->err == VUB_OK; write--) {
            for (unsigned i = 0; i < 8; i++) {
                iov[i] = (struct iovec){w->buf + i * 4096, 4096};
                if (write)
                    memset(iov[i].iov_base, (int)(w->index * 64 + round % 64), 4096);
                else
                    memset(iov[i].iov_base, 0, 4096);
                r[i] = (struct vub_client_req){.op = write ? VUB_CLIENT_WRITE : VUB_CLIENT_READ,
                                               .offset = stripe + ((round * 8 + i) % 64) * 4096, .iov = &iov[i],
                                               .iov_count = 1, .cookie = i};
            }
            w->err = vub_client_submit_batch(w->q, r, 8, &sent);
            if (w->err == VUB_OK)
                w->err = mt_drain(w->q, &bad);
        }
        bool same = bad == 0;
        for (unsigned b = 0; same && b < 8 * 4096; b++)
            same = w->buf[b] == (uint8_t)(w->index * 64 + round % 64);
        w->good += same;
    }
    return NULL;
}

static void test_thread_per_queue(void)
{
    struct server s;
    struct vub_client *cl = server_client(&s, MT_QUEUES, (struct vub_client_opts){.num_queues = MT_QUEUES}, "threads");
    if (!cl)
        return;
    struct mt_worker w[MT_QUEUES];
    pthread_t t[MT_QUEUES];
    for (unsigned i = 0; i < MT_QUEUES; i++) {
        w[i] = (struct mt_worker){cl, vub_client_queue(cl, i), i, vub_client_alloc(cl, 8 * 4096), 0, VUB_OK};
        pthread_create(&t[i], NULL, mt_main, &w[i]);
    }
    unsigned switched = 0;
    for (unsigned k = 0; k < 20; k++) /* the owner's control-plane calls meanwhile */
        switched += vub_client_set_writeback(cl, k % 2 == 0) == VUB_OK;
    unsigned good = 0;
    bool errs = false;
    for (unsigned i = 0; i < MT_QUEUES; i++) {
        pthread_join(t[i], NULL);
        good += w[i].good;
        errs |= w[i].err != VUB_OK;
    }
    vub_client_close(cl);
    server_stop(&s);
    ok(good == MT_QUEUES * MT_ROUNDS && !errs && switched == 20,
       "threads: %u queues, one thread each (half polling), write and read back %u batches of 8 with no lock while "
       "the owner sets the write cache 20 times (%u of %u matched)", MT_QUEUES, MT_ROUNDS, good,
       MT_QUEUES * MT_ROUNDS);
}

/* ======================================================================== *
 * 3. A fake back-end that breaks one rule at a time
 * ======================================================================== */

enum ctl_fault {
    CTL_NONE,
    CTL_FLAGS,         /* reply flags = fault_value */
    CTL_SIZE,          /* reply payload size + fault_value (signed) */
    CTL_REQUEST,       /* reply carries request id fault_value */
    CTL_SILENT,        /* no reply at all */
    CTL_STALL,         /* the header of a reply, then nothing */
    CTL_HANG_UP,       /* close instead of replying */
    CTL_WITH_FD,       /* the reply carries a file descriptor */
    CTL_NACK,          /* REPLY_ACK answer fault_value (non-zero) */
    CTL_VALUE,         /* u64 reply payload fault_value */
    CTL_CONFIG_OFFSET, /* GET_CONFIG reply for another offset */
};

enum io_fault {
    IO_HONEST,
    IO_ID_IDLE,      /* used id of a head that is not in flight */
    IO_ID_RANGE,     /* used id beyond the ring */
    IO_ID_TWICE,     /* the right id, returned twice */
    IO_LEN_HUGE,     /* used len 0xffffffff */
    IO_LEN_PLUS_ONE, /* used len one more than writable */
    IO_IDX_JUMP,     /* used idx moves 1000 with no entries */
    IO_NEVER,        /* never completes */
    IO_NO_STATUS,    /* completes, len 0, status byte untouched */
    IO_STATUS_7,     /* writes status 7 */
    IO_HANG_UP,      /* closes the socket on the first kick */
};

struct fake {
    int sock;
    uint64_t features, protocol;    /* offered */
    enum ctl_fault fault;
    uint32_t fault_request;
    uint64_t fault_value;
    enum io_fault io;
    /* what the client did */
    uint64_t features_set, protocol_set;
    unsigned seen[VHOST_USER_REQUEST_COUNT], need_reply[VHOST_USER_REQUEST_COUNT];
    struct vub_vu_mem_region region;
    /* device state */
    struct vub_mem mem;
    struct vub_vring vr;
    struct iovec iov[300];
    uint64_t desc_uva, avail_uva, used_uva;
    int kick_fd, call_fd;
    uint64_t kicks;                 /* notifications received (the eventfd counts them) */
    uint8_t writeback;              /* config byte 32 */
    bool keep_writeback;            /* acknowledge SET_CONFIG and change nothing */
    pthread_t thread;
    struct vub_error err;
};

static const uint64_t fake_features = VUB_BIT(VIRTIO_F_VERSION_1) | VUB_BIT(VHOST_USER_F_PROTOCOL_FEATURES) |
                                      VUB_BIT(VIRTIO_BLK_F_SEG_MAX) | VUB_BIT(VIRTIO_BLK_F_FLUSH) |
                                      VUB_BIT(VIRTIO_F_EVENT_IDX) | VUB_BIT(VIRTIO_F_INDIRECT_DESC);
static const uint64_t fake_protocol = VUB_BIT(VHOST_USER_PROTOCOL_F_MQ) | VUB_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
                                      VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIG);

static bool fake_send(struct fake *f, uint32_t request, const void *payload, uint32_t size)
{
    struct vub_vu_header h = {request, VHOST_USER_REPLY_FLAGS, size};
    int fd = -1;
    bool hit = f->fault != CTL_NONE && request == f->fault_request;
    uint64_t v;
    if (hit) {
        switch (f->fault) {
        case CTL_FLAGS: h.flags = (uint32_t)f->fault_value; break;
        case CTL_SIZE: h.size = (uint32_t)(size + (int64_t)f->fault_value); break;
        case CTL_REQUEST: h.request = (uint32_t)f->fault_value; break;
        case CTL_SILENT: return true;
        case CTL_HANG_UP: return false;
        case CTL_STALL:
            h.size = 8;
            return write(f->sock, &h, sizeof h) == (ssize_t)sizeof h; /* and never the payload */
        case CTL_WITH_FD: fd = eventfd(0, EFD_CLOEXEC); break;
        case CTL_VALUE:
        case CTL_NACK:
            v = f->fault_value;
            payload = &v;
            break;
        default: break;
        }
    }
    static const uint8_t pad[512];
    if (h.size > sizeof pad) /* a header promising more than any payload: send just that */
        return write(f->sock, &h, sizeof h) == (ssize_t)sizeof h;
    if (h.size > size)
        payload = pad; /* a longer payload than the request has: zeros */
    bool sent = vub_vu_send(f->sock, &h, payload, fd >= 0 ? &fd : NULL, fd >= 0) == VUB_OK;
    if (fd >= 0)
        close(fd);
    return sent;
}

static bool fake_u64(struct fake *f, uint32_t request, uint64_t v) { return fake_send(f, request, &v, 8); }

static void fake_map_ring(struct fake *f)
{
    struct vub_vring *vr = &f->vr;
    vr->desc = vub_mem_range(&f->mem, VUB_UVA, f->desc_uva, vub_split_desc_bytes(vr->size));
    vr->driver = vub_mem_range(&f->mem, VUB_UVA, f->avail_uva, vub_split_avail_bytes(vr->size) + 2);
    vr->device = vub_mem_range(&f->mem, VUB_UVA, f->used_uva, vub_split_used_bytes(vr->size) + 2);
    vr->event_idx = vub_has(f->features_set, VIRTIO_F_EVENT_IDX);
    vr->indirect = vub_has(f->features_set, VIRTIO_F_INDIRECT_DESC);
    vr->scratch.chain = f->iov;
    vr->scratch.chain_cap = VUB_ARRAY_LEN(f->iov);
}

/* Handles one front-end message; false ends the fake's session. */
static bool fake_message(struct fake *f, struct vub_msg *m)
{
    uint32_t r = m->hdr.request;
    bool own_reply = false, alive = true;
    if (r < VHOST_USER_REQUEST_COUNT) {
        f->seen[r]++;
        f->need_reply[r] += (m->hdr.flags & VHOST_USER_NEED_REPLY_MASK) != 0;
    }
    uint8_t cfg[12 + 57] = {0};
    switch (r) {
    case VHOST_USER_GET_FEATURES: own_reply = true; alive = fake_u64(f, r, f->features); break;
    case VHOST_USER_GET_PROTOCOL_FEATURES: own_reply = true; alive = fake_u64(f, r, f->protocol); break;
    case VHOST_USER_GET_QUEUE_NUM: own_reply = true; alive = fake_u64(f, r, 1); break;
    case VHOST_USER_GET_MAX_MEM_SLOTS: own_reply = true; alive = fake_u64(f, r, 8); break;
    case VHOST_USER_SET_FEATURES: f->features_set = m->payload.u64; break;
    case VHOST_USER_SET_PROTOCOL_FEATURES: f->protocol_set = m->payload.u64; break;
    case VHOST_USER_GET_CONFIG:
        own_reply = true;
        memcpy(cfg, &m->payload.config, 12); /* offset, size, flags echoed (host order) */
        vub_put_le64(cfg + 12, 2048);    /* capacity: 1 MiB */
        vub_put_le32(cfg + 12 + 12, 8);  /* seg_max */
        vub_put_le16(cfg + 12 + 34, 1);  /* num_queues */
        cfg[12 + 32] = f->writeback;
        if (f->fault == CTL_CONFIG_OFFSET) {
            uint32_t four = 4;
            memcpy(cfg, &four, 4);
        }
        alive = fake_send(f, r, cfg, m->hdr.size);
        break;
    case VHOST_USER_SET_CONFIG:
        if (m->payload.config.offset == 32 && m->payload.config.size == 1 && !f->keep_writeback)
            f->writeback = m->payload.config.data[0];
        break;
    case VHOST_USER_SET_MEM_TABLE:
    case VHOST_USER_ADD_MEM_REG:
        f->region = r == VHOST_USER_ADD_MEM_REG ? m->payload.single.region : m->payload.mem.regions[0];
        if (m->fd_count != 1 || vub_mem_add(&f->mem, &f->region, m->fds[0], &f->err) != VUB_OK)
            alive = false;
        break;
    case VHOST_USER_SET_VRING_NUM: f->vr.size = (uint16_t)m->payload.state.num; break;
    case VHOST_USER_SET_VRING_ADDR:
        f->desc_uva = m->payload.addr.desc_uaddr;
        f->avail_uva = m->payload.addr.avail_uaddr;
        f->used_uva = m->payload.addr.used_uaddr;
        break;
    case VHOST_USER_SET_VRING_CALL:
    case VHOST_USER_SET_VRING_KICK:
        if (m->fd_count == 1) {
            int *slot = r == VHOST_USER_SET_VRING_CALL ? &f->call_fd : &f->kick_fd;
            vub_sys_close(slot);
            *slot = m->fds[0];
            m->fds[0] = -1;
        }
        if (r == VHOST_USER_SET_VRING_KICK)
            fake_map_ring(f);
        break;
    case VHOST_USER_GET_VRING_BASE: {
        own_reply = true;
        struct vub_vu_vring_state s = {m->payload.state.index, f->vr.split.last_avail};
        alive = fake_send(f, r, &s, sizeof s);
        break;
    }
    default: break;
    }
    vub_msg_close_fds(m);
    if (alive && !own_reply && (m->hdr.flags & VHOST_USER_NEED_REPLY_MASK))
        alive = fake_send(f, r, &(uint64_t){0}, 8);
    return alive;
}

/* Completes what the driver made available, the way the fault says. */
static bool fake_kick(struct fake *f)
{
    struct vub_vring *vr = &f->vr;
    struct vub_chain c;
    uint64_t n;
    if (read(f->kick_fd, &n, sizeof n) == (ssize_t)sizeof n)
        f->kicks += n;
    if (f->io == IO_HANG_UP)
        return false;
    while (vr->desc && vub_split_pop(vr, &f->mem, &c, &f->err) == VUB_OK) {
        uint32_t len = (uint32_t)c.writable_bytes;
        uint32_t id = c.head;
        struct iovec *last = c.writable ? &c.iov[c.readable + c.writable - 1] : NULL;
        if (f->io == IO_NEVER)
            continue;
        for (unsigned i = c.readable; i + 1 < c.readable + c.writable; i++)
            memset(c.iov[i].iov_base, 0xa5, c.iov[i].iov_len);
        if (last && f->io != IO_NO_STATUS)
            ((uint8_t *)last->iov_base)[last->iov_len - 1] = f->io == IO_STATUS_7 ? 7 : VIRTIO_BLK_S_OK;
        switch (f->io) {
        case IO_ID_IDLE: id = (id + 1) % vr->size; break;
        case IO_ID_RANGE: id = 0xdeadbeef; break;
        case IO_LEN_HUGE: len = UINT32_MAX; break;
        case IO_LEN_PLUS_ONE: len++; break;
        case IO_NO_STATUS: len = 0; break;
        default: break;
        }
        if (f->io == IO_IDX_JUMP) {
            vr->split.used_idx = (uint16_t)(vr->split.used_idx + 1000);
        } else {
            uint8_t *slot = vr->device + 4 + 8 * (size_t)(vr->split.used_idx % vr->size);
            vub_put_le32(slot, id);
            vub_put_le32(slot + 4, len);
            vr->split.used_idx++;
            if (f->io == IO_ID_TWICE) {
                vub_split_publish(vr);
                vub_split_push(vr, &c, len);
            }
        }
        vub_split_publish(vr);
        vub_sys_signal(f->call_fd);
    }
    return true;
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = f->sock, .events = POLLIN}, {.fd = f->kick_fd, .events = POLLIN}};
        int rc = poll(p, f->kick_fd >= 0 ? 2 : 1, 10000);
        if (rc <= 0)
            break;
        if (p[0].revents) {
            struct vub_msg m;
            if (vub_vu_recv(f->sock, &m, &f->err) != VUB_OK || !fake_message(f, &m))
                break;
        }
        if (f->kick_fd >= 0 && (p[1].revents & POLLIN) && !fake_kick(f))
            break;
    }
    vub_sys_close(&f->sock);
    vub_sys_close(&f->kick_fd);
    vub_sys_close(&f->call_fd);
    vub_mem_clear(&f->mem);
    return NULL;
}

/* Starts a fake and connects a client to it; returns the connect result. */
static enum vub_err fake_connect(struct fake *f, struct vub_client **cl, struct vub_client_opts *o, char *why,
                                 size_t why_len)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    f->sock = sv[1];
    f->kick_fd = f->call_fd = -1;
    if (!f->features)
        f->features = fake_features;
    if (!f->protocol)
        f->protocol = fake_protocol;
    if (!o->timeout_ms)
        o->timeout_ms = 300;
    pthread_create(&f->thread, NULL, fake_main, f);
    return vub_client_connect_fd(cl, sv[0], o, why, why_len);
}

static void fake_finish(struct fake *f, struct vub_client *cl)
{
    vub_client_close(cl);
    pthread_join(f->thread, NULL);
}

/* One control-plane fault: connect must fail with `want`, promptly, leaking nothing. */
static void test_ctl_fault(enum ctl_fault fault, uint32_t request, uint64_t value, enum vub_err want,
                           const char *sentence)
{
    struct fake f = {.fault = fault, .fault_request = request, .fault_value = value};
    struct vub_client *cl = NULL;
    struct vub_client_opts o = {0};
    char why[256] = "";
    int fds = open_fds();
    int64_t t0 = now_ms();
    enum vub_err e = fake_connect(&f, &cl, &o, why, sizeof why);
    int64_t took = now_ms() - t0;
    fake_finish(&f, cl);
    ok(e == want && cl == NULL && took < 2000 && open_fds() == fds, "%s: %s (\"%s\", %lld ms)", sentence,
       vub_strerror(e), why, (long long)took);
}

static void test_negotiation(void)
{
    struct fake f = {.protocol = ~UINT64_C(0), .features = fake_features | VUB_BIT(VIRTIO_F_RING_PACKED) | VUB_BIT(50)};
    struct vub_client *cl;
    struct vub_client_opts o = {0};
    char why[256];
    enum vub_err e = fake_connect(&f, &cl, &o, why, sizeof why);
    const struct vub_client_info in = e == VUB_OK ? *vub_client_info(cl) : (struct vub_client_info){0};
    fake_finish(&f, cl);
    uint64_t want_p = VUB_BIT(VHOST_USER_PROTOCOL_F_MQ) | VUB_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
                      VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIG) | VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
                      VUB_BIT(VHOST_USER_PROTOCOL_F_BACKEND_REQ);
    ok(e == VUB_OK && in.protocol_features_offered == ~UINT64_C(0) && in.protocol_features == want_p &&
           f.protocol_set == want_p,
       "negotiation: of every protocol bit offered the client takes only MQ, REPLY_ACK, BACKEND_REQ, CONFIG, "
       "CONFIGURE_MEM_SLOTS");
    ok(in.features == f.features_set && vub_has(in.features, VIRTIO_F_RING_PACKED) && in.packed &&
           !vub_has(in.features, 50) && vub_has(in.features_offered, 50),
       "[VQ-RING-CHOICE] negotiation: --ring auto takes RING_PACKED when offered; unknown bits are recorded as offered, not taken");
    ok(f.seen[VHOST_USER_ADD_MEM_REG] == 1 && f.seen[VHOST_USER_SET_MEM_TABLE] == 0 &&
           f.seen[VHOST_USER_GET_MAX_MEM_SLOTS] == 1,
       "memory: with CONFIGURE_MEM_SLOTS the memfd goes by ADD_MEM_REG, never SET_MEM_TABLE");
    ok(f.region.guest_addr != f.region.user_addr && f.region.mmap_offset == 0 && f.region.size > 0,
       "memory: the region's guest address differs from the front-end address (the spaces are kept apart)");
    static const uint32_t acked[] = {VHOST_USER_SET_OWNER,      VHOST_USER_SET_FEATURES,   VHOST_USER_ADD_MEM_REG,
                                     VHOST_USER_SET_VRING_NUM,  VHOST_USER_SET_VRING_BASE, VHOST_USER_SET_VRING_ADDR,
                                     VHOST_USER_SET_VRING_CALL, VHOST_USER_SET_VRING_KICK, VHOST_USER_SET_VRING_ENABLE};
    static const uint32_t replied[] = {VHOST_USER_GET_FEATURES, VHOST_USER_GET_PROTOCOL_FEATURES,
                                       VHOST_USER_GET_QUEUE_NUM, VHOST_USER_GET_CONFIG, VHOST_USER_GET_VRING_BASE};
    bool all = true;
    for (unsigned i = 0; i < VUB_ARRAY_LEN(acked); i++)
        all &= f.seen[acked[i]] > 0 && f.need_reply[acked[i]] == f.seen[acked[i]];
    for (unsigned i = 0; i < VUB_ARRAY_LEN(replied); i++)
        all &= f.seen[replied[i]] > 0 && f.need_reply[replied[i]] == 0;
    ok(all && f.need_reply[VHOST_USER_SET_PROTOCOL_FEATURES] == 0,
       "REPLY_ACK: every message without a reply of its own carries NEED_REPLY; GET_* and SET_PROTOCOL_FEATURES do not");

    struct fake g = {.protocol = VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIG)};
    e = fake_connect(&g, &cl, &o, why, sizeof why);
    fake_finish(&g, cl);
    unsigned any = 0;
    for (unsigned i = 0; i < VHOST_USER_REQUEST_COUNT; i++)
        any += g.need_reply[i];
    ok(e == VUB_OK && any == 0 && g.seen[VHOST_USER_SET_MEM_TABLE] == 1 && g.seen[VHOST_USER_ADD_MEM_REG] == 0 &&
           g.seen[VHOST_USER_GET_QUEUE_NUM] == 0,
       "REPLY_ACK off: no NEED_REPLY anywhere; SET_MEM_TABLE without CONFIGURE_MEM_SLOTS; no GET_QUEUE_NUM without MQ");

    struct fake h = {.features = fake_features};
    struct vub_client_opts two = {.num_queues = 2};
    e = fake_connect(&h, &cl, &two, why, sizeof why);
    fake_finish(&h, cl);
    ok(e == VUB_E_INVAL && strstr(why, "queues"), "queues: asking for more queues than the device has fails (%s)", why);
}

/* One data-plane fault: a READ on a connected client must end as `want`. */
static void test_io_fault_on(enum io_fault io, bool packed, bool polling, enum vub_err want, uint8_t want_status,
                             const char *sentence)
{
    struct fake f = {.io = io, .features = packed ? fake_features | VUB_BIT(VIRTIO_F_RING_PACKED) : 0};
    struct vub_client *cl;
    struct vub_client_opts o = {.ring = VUB_CLIENT_RING_AUTO};
    char why[256];
    int fds = open_fds();
    if (fake_connect(&f, &cl, &o, why, sizeof why) != VUB_OK) {
        ok(false, "%s: connect (%s)", sentence, why);
        fake_finish(&f, NULL);
        return;
    }
    struct vub_client_queue *q = vub_client_queue(cl, 0);
    vub_client_set_polling(q, polling);
    uint8_t *buf = vub_client_alloc(cl, 8192);
    memset(buf, 0x11, 8192);
    struct iovec iov = {buf, 4096};
    struct vub_client_req r = {.op = VUB_CLIENT_READ, .offset = 0, .iov = &iov, .iov_count = 1, .cookie = 9};
    struct vub_client_completion c;
    int64_t t0 = now_ms();
    enum vub_err e = vub_client_run(q, &r, &c);
    int64_t took = now_ms() - t0;
    bool untouched = true; /* the page after the buffer is not the device's to write */
    for (unsigned i = 4096; i < 8192; i++)
        untouched &= buf[i] == 0x11;
    if (io == IO_ID_TWICE && e == VUB_OK) { /* the first copy may be taken before the second lands */
        enum vub_err w = vub_client_wait(q, 1000);
        e = w != VUB_OK ? w : vub_client_reap(q, &c, 1, &(unsigned){0});
    }
    bool after = true; /* a broken ring stays broken: nothing more is submitted or reaped */
    if (want == VUB_E_PROTO)
        after = vub_client_submit(q, &r) == VUB_E_PROTO && vub_client_reap(q, &c, 1, &(unsigned){0}) == VUB_E_PROTO;
    char qwhy[256];
    snprintf(qwhy, sizeof qwhy, "%s", vub_client_queue_why(q));
    fake_finish(&f, cl);
    ok(e == want && (want_status == 0xee || c.status == want_status) && after && untouched && took < 2000 &&
           open_fds() == fds,
       "%s: %s (\"%s\", %lld ms)", sentence, vub_strerror(e), qwhy, (long long)took);
}

static void test_io_fault(enum io_fault io, enum vub_err want, uint8_t want_status, const char *sentence)
{
    test_io_fault_on(io, false, false, want, want_status, sentence);
}

/* Several requests, one kick: the fake counts the notifications its kick
 * eventfd received. Without EVENT_IDX and with NO_NOTIFY clear, every kick
 * with something new is sent, so the counts are exact. */
static void test_submit_batch(void)
{
    struct fake f = {.features = fake_features & ~VUB_BIT(VIRTIO_F_EVENT_IDX)};
    struct vub_client *cl;
    struct vub_client_opts o = {.timeout_ms = 2000};
    char why[256];
    if (fake_connect(&f, &cl, &o, why, sizeof why) != VUB_OK) {
        ok(false, "batch: connect (%s)", why);
        fake_finish(&f, NULL);
        return;
    }
    struct vub_client_queue *q = vub_client_queue(cl, 0);
    uint8_t *buf = vub_client_alloc(cl, 8 * 4096);
    struct vub_client_req r[8];
    struct iovec iov[8];
    for (unsigned i = 0; i < 8; i++) {
        iov[i] = (struct iovec){buf + i * 4096, 4096};
        r[i] = (struct vub_client_req){.op = VUB_CLIENT_READ, .offset = i * 4096, .iov = &iov[i], .iov_count = 1,
                                       .cookie = i};
    }
    unsigned sent = 0, got = 0, bad_status = 0;
    enum vub_err batch = vub_client_submit_batch(q, r, 8, &sent);
    enum vub_err drained = mt_drain(q, &bad_status);
    for (unsigned i = 0; i < 8; i++) { /* the same eight, one kick each */
        if (vub_client_submit(q, &r[i]) == VUB_OK && vub_client_kick(q) == VUB_OK)
            got++;
    }
    enum vub_err drained2 = mt_drain(q, &bad_status);
    struct vub_client_req bad[3] = {r[0], r[1], r[2]};
    bad[1].offset = 100; /* misaligned: refused, and the first is still sent */
    unsigned partial = 9;
    enum vub_err refused = vub_client_submit_batch(q, bad, 3, &partial);
    bool one_in_flight = vub_client_in_flight(q) == 1;
    enum vub_err drained3 = mt_drain(q, &bad_status);
    fake_finish(&f, cl);
    ok(batch == VUB_OK && sent == 8 && drained == VUB_OK && got == 8 && drained2 == VUB_OK && bad_status == 0 &&
           f.kicks == 1 + 8 + 1,
       "batch: eight requests by vub_client_submit_batch cost one kick, eight submit+kick pairs cost eight "
       "(%llu kicks in all, want 10)", (unsigned long long)f.kicks);
    ok(refused == VUB_E_INVAL && partial == 1 && one_in_flight && drained3 == VUB_OK,
       "batch: a batch stops at a request that can never be sent, and the ones before it are sent and kicked");
}

/* The write cache against a back-end without CONFIG_WCE, and one that
 * acknowledges SET_CONFIG but keeps the old value. */
static void test_writeback_refusals(void)
{
    struct fake f = {0};
    struct vub_client *cl;
    struct vub_client_opts o = {0};
    char why[256];
    enum vub_err e = fake_connect(&f, &cl, &o, why, sizeof why);
    enum vub_err set = e == VUB_OK ? vub_client_set_writeback(cl, false) : e;
    snprintf(why, sizeof why, "%s", e == VUB_OK ? vub_client_why(cl) : "");
    fake_finish(&f, cl);
    ok(set == VUB_E_UNSUPP && f.seen[VHOST_USER_SET_CONFIG] == 0 && strstr(why, "CONFIG_WCE"),
       "writeback: without CONFIG_WCE offered no SET_CONFIG is sent and the call says why (%s)", why);

    struct fake g = {.features = fake_features | VUB_BIT(VIRTIO_BLK_F_CONFIG_WCE), .keep_writeback = true};
    e = fake_connect(&g, &cl, &o, why, sizeof why);
    set = e == VUB_OK ? vub_client_set_writeback(cl, true) : e;
    snprintf(why, sizeof why, "%s", e == VUB_OK ? vub_client_why(cl) : "");
    fake_finish(&g, cl);
    ok(set == VUB_E_UNSUPP && g.seen[VHOST_USER_SET_CONFIG] == 1 && g.need_reply[VHOST_USER_SET_CONFIG] == 1 &&
           strstr(why, "still says 0"),
       "writeback: a SET_CONFIG acknowledged but not taken is reported, not believed (%s)", why);

    struct fake h = {.features = fake_features | VUB_BIT(VIRTIO_BLK_F_CONFIG_WCE)};
    e = fake_connect(&h, &cl, &o, why, sizeof why);
    set = e == VUB_OK ? vub_client_set_writeback(cl, true) : e;
    uint8_t now = e == VUB_OK ? vub_client_info(cl)->config.writeback : 9;
    fake_finish(&h, cl);
    ok(set == VUB_OK && h.writeback == 1 && now == 1,
       "[VU-CONFIG-WRITE] writeback: SET_CONFIG carries one byte at offset 32, the only write qemu-storage-daemon takes");
}

int main(void)
{
    alarm(300); /* nothing here should take long: a hang is a failure */
    signal(SIGPIPE, SIG_IGN);

    test_ring_round_trip();
    test_ring_chains_fill_and_refill();
    test_ring_indirect();
    test_ring_refusals();
    test_ring_wraps();
    test_ring_kick_suppression();
    test_ring_interrupt_suppression();
    test_ring_used_lie(LIE_ID_RANGE, "VQ-USED-ID", "an id beyond the ring");
    test_ring_used_lie(LIE_ID_IDLE, "VQ-USED-ID", "an id that is not in flight");
    test_ring_used_lie(LIE_ID_TWICE, "VQ-USED-ID", "an id returned twice");
    test_ring_used_lie(LIE_LEN_PLUS_ONE, "VQ-USED-LEN", "a length one byte over the writable size");
    test_ring_used_lie(LIE_LEN_HUGE, "VQ-USED-LEN", "a length of 0xffffffff");
    test_ring_used_lie(LIE_IDX_JUMP, "VQ-USED-IDX", "an index that jumps past what is in flight");
    test_ring_used_lie(LIE_IDX_BACK, "VQ-USED-IDX", "an index that moves backwards");
    test_ring_table_scribble();
    test_packed_round_trip();
    test_packed_used_lie(PLIE_ID_IDLE, "VQ-PACKED-USED-ID", "an id that is not in flight");
    test_packed_used_lie(PLIE_ID_RANGE, "VQ-PACKED-USED-ID", "an id beyond the ring");
    test_packed_used_lie(PLIE_LEN_PLUS_ONE, "VQ-PACKED-USED-LEN", "a length one byte over the writable size");
    test_packed_used_lie(PLIE_LEN_HUGE, "VQ-PACKED-USED-LEN", "a length of 0xffffffff");
    test_packed_len_without_write();
    test_packed_kicks();
    test_packed_interrupts();

    /* Every configuration on both ring layouts ("auto" takes packed: vub offers it). */
    static const enum vub_client_ring rings[2] = {VUB_CLIENT_RING_SPLIT, VUB_CLIENT_RING_PACKED};
    for (unsigned r = 0; r < 2; r++) {
        enum vub_client_ring ring = rings[r];
        bool packed = ring == VUB_CLIENT_RING_PACKED;
        test_real_backend(packed ? "vub back-end, packed, defaults" : "vub back-end, split, defaults",
                          (struct vub_client_opts){.ring = ring});
        test_real_backend(packed ? "vub back-end, packed, 2 queues of 1024" : "vub back-end, split, 2 queues of 1024",
                          (struct vub_client_opts){.ring = ring, .num_queues = 2, .queue_size = 1024});
        test_real_backend(packed ? "vub back-end, packed, ring of 5 (not a power of two)"
                                 : "vub back-end, split, ring of 4",
                          (struct vub_client_opts){.ring = ring, .queue_size = (uint16_t)(packed ? 5 : 4)});
        test_real_backend(packed ? "vub back-end, packed, no EVENT_IDX or INDIRECT_DESC"
                                 : "vub back-end, split, no EVENT_IDX or INDIRECT_DESC",
                          (struct vub_client_opts){.ring = ring,
                                                   .features_off = VUB_BIT(VIRTIO_F_EVENT_IDX) |
                                                                   VUB_BIT(VIRTIO_F_INDIRECT_DESC)});
    }
    test_real_backend("vub back-end, no REPLY_ACK or CONFIGURE_MEM_SLOTS",
                      (struct vub_client_opts){.protocol_features_off =
                                                   VUB_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
                                                   VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)});
    test_real_backend_read_only();
    test_real_backend_writeback();
    test_wait_keeps_mode(VUB_CLIENT_RING_SPLIT);
    test_wait_keeps_mode(VUB_CLIENT_RING_PACKED);
    test_thread_per_queue();
    test_reconnect(VUB_CLIENT_RING_SPLIT, "reconnect, split");
    test_reconnect(VUB_CLIENT_RING_PACKED, "reconnect, packed");

    test_negotiation();
    test_ctl_fault(CTL_FLAGS, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, VUB_E_PROTO,
                   "[VU-REPLY-CHECK] reply flags without REPLY (0x1)");
    test_ctl_fault(CTL_FLAGS, VHOST_USER_GET_FEATURES, VHOST_USER_REPLY_FLAGS | VHOST_USER_NEED_REPLY_MASK,
                   VUB_E_PROTO, "[VU-REPLY-CHECK] reply flags with NEED_REPLY as well (0xd)");
    test_ctl_fault(CTL_FLAGS, VHOST_USER_GET_FEATURES, 0x6, VUB_E_PROTO, "[VU-REPLY-CHECK] reply of version 2");
    test_ctl_fault(CTL_SIZE, VHOST_USER_GET_FEATURES, (uint64_t)-4, VUB_E_PROTO, "[VU-REPLY-CHECK] GET_FEATURES reply of 4 bytes");
    test_ctl_fault(CTL_SIZE, VHOST_USER_GET_PROTOCOL_FEATURES, 8, VUB_E_PROTO,
                   "[VU-REPLY-CHECK] GET_PROTOCOL_FEATURES reply of 16 bytes");
    test_ctl_fault(CTL_SIZE, VHOST_USER_GET_CONFIG, (uint64_t)-1, VUB_E_PROTO, "[VU-REPLY-CHECK] GET_CONFIG reply one byte short");
    test_ctl_fault(CTL_SIZE, VHOST_USER_GET_CONFIG, (uint64_t)-(12 + 57), VUB_E_PROTO,
                   "[VU-REPLY-CHECK] GET_CONFIG reply of size 0 (the back-end's error answer)");
    test_ctl_fault(CTL_CONFIG_OFFSET, VHOST_USER_GET_CONFIG, 0, VUB_E_PROTO, "[VU-REPLY-CHECK] GET_CONFIG reply for another offset");
    test_ctl_fault(CTL_SIZE, VHOST_USER_GET_FEATURES, 0x10000, VUB_E_PROTO, "[VU-REPLY-CHECK] a reply larger than any payload");
    test_ctl_fault(CTL_REQUEST, VHOST_USER_GET_FEATURES, VHOST_USER_GET_PROTOCOL_FEATURES, VUB_E_PROTO,
                   "[VU-REPLY-CHECK] a reply with another request's id");
    test_ctl_fault(CTL_SILENT, VHOST_USER_GET_FEATURES, 0, VUB_E_TIMEOUT, "[VU-REPLY-TIMEOUT] GET_FEATURES never answered");
    test_ctl_fault(CTL_SILENT, VHOST_USER_SET_VRING_ADDR, 0, VUB_E_TIMEOUT, "[VU-REPLY-TIMEOUT] an ack that never comes");
    test_ctl_fault(CTL_STALL, VHOST_USER_GET_CONFIG, 0, VUB_E_TIMEOUT, "[VU-REPLY-TIMEOUT] a reply header whose payload never comes");
    test_ctl_fault(CTL_HANG_UP, VHOST_USER_GET_PROTOCOL_FEATURES, 0, VUB_E_CLOSED, "hang-up instead of a reply");
    test_ctl_fault(CTL_WITH_FD, VHOST_USER_GET_FEATURES, 0, VUB_E_PROTO,
                   "[VU-REPLY-CHECK] a reply carrying a file descriptor (closed, not leaked)");
    test_ctl_fault(CTL_NACK, VHOST_USER_SET_MEM_TABLE, 1, VUB_E_PROTO, "SET_MEM_TABLE acked with 1 (refused)");
    test_ctl_fault(CTL_VALUE, VHOST_USER_GET_QUEUE_NUM, 0, VUB_E_PROTO, "GET_QUEUE_NUM of 0");
    test_ctl_fault(CTL_VALUE, VHOST_USER_GET_FEATURES, VUB_BIT(VHOST_USER_F_PROTOCOL_FEATURES), VUB_E_UNSUPP,
                   "[VU-FEATURES] a back-end without VERSION_1");
    test_ctl_fault(CTL_VALUE, VHOST_USER_GET_PROTOCOL_FEATURES, VUB_BIT(VHOST_USER_PROTOCOL_F_MQ), VUB_E_UNSUPP,
                   "[VU-CONFIG-REQUIRED] a back-end without PROTOCOL_F_CONFIG");
    test_ctl_fault(CTL_VALUE, VHOST_USER_GET_FEATURES, VUB_BIT(VIRTIO_F_VERSION_1), VUB_E_UNSUPP,
                   "[VU-CONFIG-REQUIRED] a back-end without PROTOCOL_FEATURES at all (no config space)");
    {
        struct fake f = {0};
        struct vub_client *cl;
        struct vub_client_opts o = {.ring = VUB_CLIENT_RING_PACKED};
        char why[256] = "";
        enum vub_err e = fake_connect(&f, &cl, &o, why, sizeof why);
        fake_finish(&f, cl);
        ok(e == VUB_E_UNSUPP && strstr(why, "does not offer RING_PACKED"),
           "[VQ-RING-CHOICE] packed: asking for packed rings from a back-end without RING_PACKED says so (%s)", why);
        struct fake g = {.features = fake_features | VUB_BIT(VIRTIO_F_RING_PACKED)};
        e = fake_connect(&g, &cl, &o, why, sizeof why);
        fake_finish(&g, cl);
        ok(e == VUB_OK && vub_has(g.features_set, VIRTIO_F_RING_PACKED),
           "[VQ-RING-CHOICE] packed: with RING_PACKED offered, asking for packed rings takes it (%s)", vub_strerror(e));
    }
    {
        struct fake f = {.fault = CTL_SILENT, .fault_request = VHOST_USER_GET_VRING_BASE};
        struct vub_client *cl;
        struct vub_client_opts o = {0};
        char why[256];
        enum vub_err e = fake_connect(&f, &cl, &o, why, sizeof why);
        int64_t t0 = now_ms();
        fake_finish(&f, cl);
        ok(e == VUB_OK && now_ms() - t0 < 2000, "close: a GET_VRING_BASE never answered does not hang close");
    }

    test_io_fault(IO_HONEST, VUB_OK, VUB_BLK_S_OK, "data path: an honest completion");
    test_io_fault(IO_ID_IDLE, VUB_E_PROTO, 0xee, "[VQ-USED-ID] data path: a used id never submitted");
    test_io_fault(IO_ID_RANGE, VUB_E_PROTO, 0xee, "[VQ-USED-ID] data path: a used id beyond the ring");
    test_io_fault(IO_ID_TWICE, VUB_E_PROTO, 0xee, "[VQ-USED-ID] data path: an id returned twice");
    test_io_fault(IO_LEN_HUGE, VUB_E_PROTO, 0xee, "[VQ-USED-LEN] data path: a used length of 0xffffffff");
    test_io_fault(IO_LEN_PLUS_ONE, VUB_E_PROTO, 0xee, "[VQ-USED-LEN] data path: a used length one over the writable bytes");
    test_io_fault(IO_IDX_JUMP, VUB_E_PROTO, 0xee, "[VQ-USED-IDX] data path: a used index that jumps 1000");
    test_io_fault(IO_NEVER, VUB_E_TIMEOUT, 0xee, "data path: a request never completed");
    test_io_fault_on(IO_NEVER, true, false, VUB_E_TIMEOUT, 0xee,
                     "data path, --ring auto on a back-end whose packed ring never answers: a timeout");
    test_io_fault_on(IO_HONEST, false, true, VUB_OK, VUB_BLK_S_OK, "data path, polling: an honest completion");
    test_io_fault_on(IO_NEVER, false, true, VUB_E_TIMEOUT, 0xee,
                     "data path, polling: a request never completed times out (the spin has a deadline)");
    test_io_fault_on(IO_HANG_UP, false, true, VUB_E_CLOSED, 0xee,
                     "data path, polling: a back-end that hangs up is seen while spinning");
    test_io_fault_on(IO_ID_RANGE, false, true, VUB_E_PROTO, 0xee,
                     "[VQ-USED-ID] data path, polling: a used id beyond the ring ends the spin");
    test_submit_batch();
    test_writeback_refusals();
    test_io_fault(IO_NO_STATUS, VUB_E_IO, VUB_BLK_S_NONE, "data path: a completion without a status byte");
    test_io_fault(IO_STATUS_7, VUB_E_IO, 7, "data path: a status byte of 7");
    test_io_fault(IO_HANG_UP, VUB_E_CLOSED, 0xee, "data path: a back-end that hangs up with I/O in flight");

    char buf[16];
    ok(strcmp(copy_status_name(7, buf, sizeof buf), "status 7") == 0 &&
           strcmp(copy_status_name(1, buf, sizeof buf), "IOERR") == 0,
       "status names: IOERR by name, unknown bytes by number");
    printf("%s - %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures > 100 ? 100 : failures;
}
