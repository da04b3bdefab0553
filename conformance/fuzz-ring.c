/* fuzz-ring.c: the device side of a virtqueue (vub.c sections 5, 5b and 6
 * through vub_dev_process_queue) over guest memory the fuzzer writes.
 * Shared by fuzz-ring-split.c and fuzz-ring-packed.c, which define
 * FZ_PACKED before including it.
 *
 * Each run sets up a session the way a front-end does (SET_FEATURES,
 * SET_MEM_TABLE, SET_VRING_NUM/BASE/ADDR/CALL/ERR/KICK, SET_VRING_ENABLE)
 * with parameters from a 16-byte header, writes the input verbatim over
 * guest memory, lets the device run the queue, then applies the input's
 * patches to guest memory one at a time with a vub_dev_process_queue()
 * after each, as a driver adding buffers and kicking would.
 *
 * Guest memory: one memfd, FZ_MEMFD_BYTES, mapped once by the harness.
 * Region A is FZ_A_BYTES at guest address FZ_A_GPA, starting FZ_A_OFF bytes
 * into the memfd so that neither of its ends is on a page boundary: the
 * bytes the device maps around it are poisoned (fuzz-guard.c), so any
 * access outside it, by the device or by the kernel on its behalf, is
 * reported. Region B, if the header asks for it, follows A in guest
 * physical space (a buffer may straddle the two) but lives elsewhere in
 * the memfd and in the front-end's address space.
 *
 * Input:
 *     0      ring size: split 1 << (b % 8); packed b % 128 + 1
 *     1      virtio features: bit 0 EVENT_IDX, 1 INDIRECT_DESC, 2 FLUSH,
 *            3 CONFIG_WCE, 4 DISCARD, 5 WRITE_ZEROES, 6 PROTOCOL_FEATURES
 *            (rings start disabled; SET_VRING_ENABLE follows), 7 use the
 *            device over the read-only image
 *     2      set-up: bit 0 region B too; 1 SET_VRING_BASE before
 *            SET_VRING_NUM; 2 kick with NOFD (polled ring); 3 no call fd;
 *            4 restart the ring before every patch (GET_VRING_BASE, then
 *            SET_VRING_BASE with its answer and SET_VRING_KICK); 5 an err fd
 *     3..6   SET_VRING_BASE num, le32
 *     7..12  offsets in region A of the descriptor table, the available
 *            ring (packed: driver event area) and the used ring (packed:
 *            device event area), le16 each; reduced to fit and aligned
 *     13..14 image length, le16: that many bytes follow and are copied
 *            over region A then region B
 *     15     reserved
 *     then   patches: le16 offset (into A then B), u8 length, bytes; at
 *            most FZ_MAX_ROUNDS
 *
 * Checks, besides ASan/UBSan and the guards: every image transfer lies
 * inside the disk; the ring keeps a layout and positions that fit
 * (fz_check_rings, after every message and queue run);
 * vub_dev_process_queue() answers VUB_OK or VUB_E_PROTO and returns
 * (libFuzzer's -timeout catches a loop); after detach no mapping or
 * descriptor is left over.
 */
#include "fuzz-guard.c"
#include "../vub.c"
#include "fuzz-bench.c"

#define FZ_MEMFD_BYTES 0x4000u
#define FZ_A_GPA UINT64_C(0x10000)
#define FZ_A_UVA UINT64_C(0x7f5500010000)
#define FZ_A_OFF 0x100u
#define FZ_A_BYTES 0x1000u
#define FZ_B_GPA (FZ_A_GPA + FZ_A_BYTES)
#define FZ_B_UVA UINT64_C(0x7f5500200000)
#define FZ_B_OFF 0x2000u
#define FZ_B_BYTES 0x600u
#define FZ_GUEST_BYTES (FZ_A_BYTES + FZ_B_BYTES) /* the input's view: A then B */
#define FZ_HDR_BYTES 16u
#define FZ_MAX_ROUNDS 16u

static struct vub_dev *fz_dev_rw, *fz_dev_ro;
static int fz_memfd = -1;
static uint8_t *fz_guest;           /* the harness's mapping of the whole memfd */
static int fz_kick = -1, fz_call = -1, fz_err = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_dev_rw = fz_dev_new(fz_image_new("fuzz-ring-disk", 64 * 1024, false), 1, false);
    fz_dev_ro = fz_dev_new(fz_image_new("fuzz-ring-disk-ro", 64 * 1024, true), 1, true);
    fz_memfd = memfd_create("fuzz-ring-guest", MFD_CLOEXEC);
    if (fz_memfd < 0 || ftruncate(fz_memfd, FZ_MEMFD_BYTES) != 0)
        fz_die("memfd: %s", strerror(errno));
    fz_guest = mmap(NULL, FZ_MEMFD_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fz_memfd, 0);
    if (fz_guest == MAP_FAILED)
        fz_die("mmap: %s", strerror(errno));
    fz_kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    fz_call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    fz_err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fz_kick < 0 || fz_call < 0 || fz_err < 0)
        fz_die("eventfd: %s", strerror(errno));
    return 0;
}

/* Byte i of the input's view of guest memory, in the harness's mapping. */
static uint8_t *fz_guest_byte(size_t i)
{
    return i < FZ_A_BYTES ? fz_guest + FZ_A_OFF + i : fz_guest + FZ_B_OFF + (i - FZ_A_BYTES);
}

static void fz_guest_write(size_t at, const uint8_t *src, size_t len)
{
    for (size_t i = 0; i < len && at + i < FZ_GUEST_BYTES; i++)
        *fz_guest_byte(at + i) = src[i];
}

/* An offset in region A for an area of `bytes` bytes and the alignment
 * the ring layout requires of it. */
static uint64_t fz_area(uint16_t raw, uint64_t bytes, uint64_t align)
{
    uint64_t room = FZ_A_BYTES - bytes;
    return (raw % (room + 1)) / align * align;
}

static void fz_drain_eventfds(void)
{
    uint64_t v;
    ssize_t n;
    n = read(fz_kick, &v, sizeof v);
    n = read(fz_call, &v, sizeof v);
    n = read(fz_err, &v, sizeof v);
    (void)n;
}

/* The front-end's set-up. false if the device refused a step (it would
 * end the session then). */
static bool fz_setup(struct vub_dev *dev, int sock, const uint8_t *h)
{
    uint16_t size = FZ_PACKED ? (uint16_t)(h[0] % 128 + 1) : (uint16_t)(1u << (h[0] % 8));
    static const unsigned feature_bits[7] = {VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_BLK_F_FLUSH,
                                             VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD,
                                             VIRTIO_BLK_F_WRITE_ZEROES, VHOST_USER_F_PROTOCOL_FEATURES};
    uint64_t features = VUB_BIT(VIRTIO_F_VERSION_1) | (FZ_PACKED ? VUB_BIT(VIRTIO_F_RING_PACKED) : 0);
    for (unsigned i = 0; i < 7; i++)
        if (h[1] & (1u << i))
            features |= VUB_BIT(feature_bits[i]);
    features &= dev->features.offered;
    bool two_regions = h[2] & 1, base_first = h[2] & 2, nofd = h[2] & 4, no_call = h[2] & 8,
         err_fd = h[2] & 32;
    uint32_t base = vub_le32(h + 3);
    uint64_t avail_bytes = FZ_PACKED ? vub_packed_event_bytes() : vub_split_avail_bytes(size);
    uint64_t used_bytes = FZ_PACKED ? vub_packed_event_bytes() : vub_split_used_bytes(size);
    uint64_t desc = fz_area(vub_le16(h + 7), vub_split_desc_bytes(size), 16);
    uint64_t avail = fz_area(vub_le16(h + 9), avail_bytes, FZ_PACKED ? 4 : 2);
    uint64_t used = fz_area(vub_le16(h + 11), used_bytes, 4);

    if (fz_msg_u64(dev, sock, VHOST_USER_SET_FEATURES, features, NULL, 0) != VUB_OK)
        return false;
    struct vub_vu_mem_table t = {.nregions = two_regions ? 2 : 1};
    t.regions[0] = (struct vub_vu_mem_region){FZ_A_GPA, FZ_A_BYTES, FZ_A_UVA, FZ_A_OFF};
    t.regions[1] = (struct vub_vu_mem_region){FZ_B_GPA, FZ_B_BYTES, FZ_B_UVA, FZ_B_OFF};
    int fds[2] = {fz_memfd, fz_memfd};
    if (fz_msg(dev, sock, VHOST_USER_SET_MEM_TABLE, &t, 8 + 32 * t.nregions, fds, t.nregions) != VUB_OK)
        return false;
    for (unsigned step = 0; step < 2; step++) {
        bool num_now = (step == 0) != base_first;
        enum vub_err e = num_now ? fz_msg_state(dev, sock, VHOST_USER_SET_VRING_NUM, 0, size)
                                 : fz_msg_state(dev, sock, VHOST_USER_SET_VRING_BASE, 0, base);
        if (e != VUB_OK)
            return false;
    }
    struct vub_vu_vring_addr a = {0, 0, FZ_A_UVA + desc, FZ_A_UVA + used, FZ_A_UVA + avail, 0};
    if (fz_msg(dev, sock, VHOST_USER_SET_VRING_ADDR, &a, sizeof a, NULL, 0) != VUB_OK)
        return false;
    if (!no_call && fz_msg_u64(dev, sock, VHOST_USER_SET_VRING_CALL, 0, &fz_call, 1) != VUB_OK)
        return false;
    if (err_fd && fz_msg_u64(dev, sock, VHOST_USER_SET_VRING_ERR, 0, &fz_err, 1) != VUB_OK)
        return false;
    /* The kick starts the ring and serves what is already available. */
    enum vub_err e = nofd ? fz_msg_u64(dev, sock, VHOST_USER_SET_VRING_KICK, VHOST_USER_VRING_NOFD_MASK, NULL, 0)
                          : fz_msg_u64(dev, sock, VHOST_USER_SET_VRING_KICK, 0, &fz_kick, 1);
    if (e != VUB_OK)
        return false;
    if (vub_has(features, VHOST_USER_F_PROTOCOL_FEATURES) &&
        fz_msg_state(dev, sock, VHOST_USER_SET_VRING_ENABLE, 0, 1) != VUB_OK)
        return false;
    return true;
}

/* Stops the ring and starts it again where it stopped, as a front-end
 * does around a migration or a reconnection. */
static bool fz_restart(struct vub_dev *dev, int sock, bool nofd)
{
    struct vub_vu_vring_state s = {0, 0};
    struct vub_vu_header h = {VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, sizeof s};
    struct vub_vu_header rh;
    if (vub_vu_send(sock, &h, &s, NULL, 0) != VUB_OK || vub_dev_handle_msg(dev) != VUB_OK)
        return false;
    if (recv(sock, &rh, sizeof rh, MSG_DONTWAIT) != (ssize_t)sizeof rh || rh.size != sizeof s ||
        recv(sock, &s, sizeof s, MSG_DONTWAIT) != (ssize_t)sizeof s)
        fz_die("GET_VRING_BASE got no proper reply");
    if (fz_msg_state(dev, sock, VHOST_USER_SET_VRING_BASE, 0, s.num) != VUB_OK)
        fz_die("SET_VRING_BASE refused the base 0x%x GET_VRING_BASE gave", s.num);
    return (nofd ? fz_msg_u64(dev, sock, VHOST_USER_SET_VRING_KICK, VHOST_USER_VRING_NOFD_MASK, NULL, 0)
                 : fz_msg_u64(dev, sock, VHOST_USER_SET_VRING_KICK, 0, &fz_kick, 1)) == VUB_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FZ_HDR_BYTES)
        return 0;
    int fds_before = fz_fd_count();
    const uint8_t *h = data;
    struct vub_dev *dev = (h[1] & 0x80) ? fz_dev_ro : fz_dev_rw;
    size_t at = FZ_HDR_BYTES;
    size_t image = vub_le16(h + 13);
    if (image > size - at)
        image = size - at;
    memset(fz_guest, 0, FZ_MEMFD_BYTES);
    fz_guest_write(0, data + at, image);
    at += image;

    int sock = fz_attach(dev);
    if (fz_setup(dev, sock, h)) {
        bool restart = h[2] & 16, nofd = h[2] & 4;
        enum vub_err err = vub_dev_process_queue(dev, 0);
        fz_check_queue_err(err, "vub_dev_process_queue");
        fz_check_rings(dev);
        for (unsigned round = 0; round < FZ_MAX_ROUNDS && err == VUB_OK && size - at >= 3; round++) {
            size_t off = vub_le16(data + at), len = data[at + 2];
            at += 3;
            if (len > size - at)
                len = size - at;
            fz_guest_write(off % FZ_GUEST_BYTES, data + at, len);
            at += len;
            if (restart && !fz_restart(dev, sock, nofd))
                break;
            uint64_t one = 1;
            if (write(fz_kick, &one, sizeof one) != (ssize_t)sizeof one)
                fz_die("kick: %s", strerror(errno));
            err = vub_dev_process_queue(dev, 0);
            fz_check_queue_err(err, "vub_dev_process_queue");
            fz_check_rings(dev);
            fz_say_dev(dev, "after a patch");
        }
        fz_msg_state(dev, sock, VHOST_USER_GET_VRING_BASE, 0, 0);
    }
    fz_detach(dev, sock);
    fz_drain_eventfds();
    int fds_after = fz_fd_count();
    if (fds_after != fds_before)
        fz_die("%d file descriptors before the run, %d after", fds_before, fds_after);
    return 0;
}
