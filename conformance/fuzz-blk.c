/* fuzz-blk: the virtio-blk request decoder alone (vub.c section 6,
 * vub_blk_execute), on a chain the fuzzer cuts into pieces.
 *
 * Every piece is its own heap allocation of exactly its length, so ASan
 * sees a byte read or written past any of them. The readable pieces hold
 * the input's bytes (header, data or discard ranges, however they are
 * cut); the writable pieces start filled with FZ_CANARY.
 *
 * Input:
 *     0      bit 0 the device is read-only (offers RO); 1 CONFIG_WCE
 *            negotiated; 2 FLUSH negotiated; 3 writeback = 1; 4 the walker
 *            ran out of iovecs (too_many_segments); 5 the image itself is
 *            opened read-only (implies bit 0, as vub_dev_new does)
 *     1      readable pieces, b % (FZ_MAX_PIECES + 1)
 *     2      writable pieces, likewise
 *     3..    a le16 length per piece, readable ones first, each % 8193
 *     then   the readable bytes, in order (zeros if the input runs out)
 *
 * Checks (vub_blk_execute's contract and VIRTIO "Block Device"):
 *  - no writable byte: used length 0, and nothing written;
 *  - otherwise the used length is 1..writable bytes, the status is the
 *    last writable byte and is OK, IOERR or UNSUPP, and no more bytes
 *    changed than the used length counts;
 *  - readable pieces are never written;
 *  - a read that succeeds returns the image's bytes; one that fails
 *    returns zeros, never stale memory; a write that succeeds is on the
 *    image; GET_ID returns the serial, NUL-padded;
 *  - every image transfer lies inside the disk (fuzz-guard.c).
 */
#include "fuzz-guard.c"
#include "../vub.c"
#include "fuzz-bench.c"

#define FZ_MAX_PIECES 8u
#define FZ_MAX_PIECE_BYTES 8192u
#define FZ_CANARY 0xcd
#define FZ_DISK_BYTES (64u * 1024)

static struct vub_image *fz_img_rw, *fz_img_ro;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_img_rw = fz_image_new("fuzz-blk-disk", FZ_DISK_BYTES, false);
    fz_img_ro = fz_image_new("fuzz-blk-disk-ro", FZ_DISK_BYTES, true);
    return 0;
}

/* The bytes [off, off + len) of a list of pieces, gathered. */
static void fz_gather(const struct iovec *iov, unsigned n, uint64_t off, uint8_t *out, size_t len)
{
    struct vub_iov_cursor c = {iov, n, 0, 0};
    vub_iov_take(&c, off, NULL, 0, NULL);
    vub_iov_copy(&c, out, NULL, len);
}

static void fz_image_bytes(struct vub_image *img, uint64_t off, uint8_t *out, size_t len)
{
    if (pread(img->fd, out, len, (off_t)off) != (ssize_t)len)
        fz_die("pread of the image: %s", strerror(errno));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t cfg = data[0];
    unsigned nr = data[1] % (FZ_MAX_PIECES + 1), nw = data[2] % (FZ_MAX_PIECES + 1);
    size_t at = 3;
    if (size - at < 2 * (size_t)(nr + nw))
        return 0;
    struct iovec iov[2 * FZ_MAX_PIECES], orig[2 * FZ_MAX_PIECES];
    uint64_t rbytes = 0, wbytes = 0;
    for (unsigned i = 0; i < nr + nw; i++, at += 2) {
        size_t len = vub_le16(data + at) % (FZ_MAX_PIECE_BYTES + 1);
        iov[i].iov_base = malloc(len ? len : 1);
        iov[i].iov_len = len;
        if (!iov[i].iov_base)
            fz_die("malloc");
        if (i < nr)
            rbytes += len;
        else
            wbytes += len;
    }
    /* Readable content from the input, writable pieces filled with the canary. */
    for (unsigned i = 0; i < nr + nw; i++) {
        size_t len = iov[i].iov_len, take = 0;
        if (i < nr) {
            take = size - at < len ? size - at : len;
            memcpy(iov[i].iov_base, data + at, take);
            at += take;
        }
        memset((uint8_t *)iov[i].iov_base + take, i < nr ? 0 : FZ_CANARY, len - take);
        orig[i] = iov[i];
    }
    static uint8_t rcopy[FZ_MAX_PIECES * FZ_MAX_PIECE_BYTES];
    fz_gather(orig, nr, 0, rcopy, (size_t)rbytes);

    struct vub_dev_stats stats = {0};
    struct vub_image *img = (cfg & 32) ? fz_img_ro : fz_img_rw;
    struct vub_blk_queue bq = {.stats = &stats};
    struct vub_blk blk = {
        .image = img,
        .capacity = vub_image_size(img) / VIRTIO_BLK_SECTOR_BYTES,
        .num_queues = 1,
        .read_only = (cfg & 1) || (cfg & 32),
        .writeback = (cfg & 8) ? 1 : 0,
        .wce_negotiated = (cfg & 2) != 0,
        .flush_negotiated = (cfg & 4) != 0,
        .serial = FZ_SERIAL,
    };
    struct vub_chain c = {
        .head = 0,
        .slots = 1,
        .iov = iov,
        .readable = nr,
        .writable = nw,
        .readable_bytes = rbytes,
        .writable_bytes = wbytes,
        .too_many_segments = (cfg & 16) != 0,
    };
    /* As the ring walk records it: the status byte of a chain refused whole. */
    for (unsigned i = nr; i < nr + nw; i++)
        if (iov[i].iov_len)
            c.last_writable = (uint8_t *)iov[i].iov_base + iov[i].iov_len - 1;
    uint32_t used = vub_blk_execute(&blk, &bq, &c);

    /* Readable pieces untouched. */
    static uint8_t after[FZ_MAX_PIECES * FZ_MAX_PIECE_BYTES];
    fz_gather(orig, nr, 0, after, (size_t)rbytes);
    if (memcmp(after, rcopy, (size_t)rbytes) != 0)
        fz_die("a device-readable buffer was written");

    const struct iovec *w = orig + nr;
    fz_gather(w, nw, 0, after, (size_t)wbytes);
    uint64_t changed = 0;
    for (uint64_t i = 0; i < wbytes; i++)
        changed += after[i] != FZ_CANARY;
    if (wbytes == 0) {
        if (used != 0 || stats.errors != 1)
            fz_die("a chain with no writable byte: used length %u, %llu errors", used,
                   (unsigned long long)stats.errors);
        goto out;
    }
    uint8_t status = after[wbytes - 1];
    if (used < 1 || used > wbytes)
        fz_die("used length %u for %llu writable bytes", used, (unsigned long long)wbytes);
    if (status > VIRTIO_BLK_S_UNSUPP)
        fz_die("status byte %u", status);
    if (changed > used)
        fz_die("%llu writable bytes changed, used length says %u", (unsigned long long)changed, used);
    if ((status == VIRTIO_BLK_S_OK) != (stats.errors == 0))
        fz_die("status %u with %llu errors counted", status, (unsigned long long)stats.errors);

    /* What the request asked for, decoded again here. */
    if ((cfg & 16) || rbytes < VIRTIO_BLK_HDR_BYTES) {
        if (status != VIRTIO_BLK_S_IOERR || used != 1)
            fz_die("a chain without a whole header: status %u, used %u", status, used);
        goto out;
    }
    uint8_t hdr[VIRTIO_BLK_HDR_BYTES];
    memcpy(hdr, rcopy, sizeof hdr);
    uint32_t type = vub_le32(hdr);
    uint64_t sector = vub_le64(hdr + 8);
    uint64_t data_in = wbytes - 1, data_out = rbytes - VIRTIO_BLK_HDR_BYTES;
    static uint8_t disk[FZ_MAX_PIECES * FZ_MAX_PIECE_BYTES];
    switch (type) {
    case VIRTIO_BLK_T_IN:
        if (used != wbytes)
            fz_die("a read of %llu bytes has used length %u", (unsigned long long)data_in, used);
        if (status == VIRTIO_BLK_S_OK) {
            fz_image_bytes(img, sector * 512, disk, (size_t)data_in);
            if (memcmp(after, disk, (size_t)data_in) != 0)
                fz_die("a read returned bytes that are not the image's");
        } else {
            for (uint64_t i = 0; i < data_in; i++)
                if (after[i] != 0)
                    fz_die("a failed read left byte %llu non-zero", (unsigned long long)i);
        }
        break;
    case VIRTIO_BLK_T_OUT:
        if (used != 1)
            fz_die("a write has used length %u", used);
        if (status == VIRTIO_BLK_S_OK) {
            if (blk.read_only)
                fz_die("a write to a read-only device succeeded");
            fz_image_bytes(img, sector * 512, disk, (size_t)data_out);
            if (memcmp(rcopy + VIRTIO_BLK_HDR_BYTES, disk, (size_t)data_out) != 0)
                fz_die("a write that succeeded is not on the image");
        }
        break;
    case VIRTIO_BLK_T_GET_ID:
        if (status != VIRTIO_BLK_S_OK || used != wbytes)
            fz_die("GET_ID: status %u, used %u", status, used);
        for (uint64_t i = 0; i < data_in; i++)
            if (after[i] != (i < VIRTIO_BLK_ID_BYTES ? (uint8_t)blk.serial[i] : 0))
                fz_die("GET_ID byte %llu is wrong", (unsigned long long)i);
        break;
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        if (used != 1 || (status == VIRTIO_BLK_S_OK && blk.read_only))
            fz_die("discard/write-zeroes: status %u, used %u, read-only %d", status, used, blk.read_only);
        /* [BLK-WZ] every range of a write-zeroes that succeeded reads back as zeros. */
        for (uint64_t r = 0; type == VIRTIO_BLK_T_WRITE_ZEROES && status == VIRTIO_BLK_S_OK &&
                             r < data_out / VIRTIO_BLK_SEGMENT_BYTES; r++) {
            const uint8_t *seg = rcopy + VIRTIO_BLK_HDR_BYTES + r * VIRTIO_BLK_SEGMENT_BYTES;
            uint64_t bytes = (uint64_t)vub_le32(seg + 8) * 512;
            if (bytes > sizeof disk)
                fz_die("write-zeroes range of %llu bytes on a %u-byte disk", (unsigned long long)bytes,
                       FZ_DISK_BYTES);
            fz_image_bytes(img, vub_le64(seg) * 512, disk, (size_t)bytes);
            for (uint64_t i = 0; i < bytes; i++)
                if (disk[i] != 0)
                    fz_die("write-zeroes range %llu: byte %llu is not zero", (unsigned long long)r,
                           (unsigned long long)i);
        }
        break;
    case VIRTIO_BLK_T_FLUSH:
        if (used != 1)
            fz_die("a flush has used length %u", used);
        break;
    default:
        if (status != VIRTIO_BLK_S_UNSUPP || used != 1)
            fz_die("request type %u: status %u, used %u", type, status, used);
        break;
    }
out:
    for (unsigned i = 0; i < nr + nw; i++)
        free(orig[i].iov_base);
    return 0;
}
