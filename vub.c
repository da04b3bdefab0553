/* vub.c - vhost-user-blk in one C file: back-end, front-end, virtqueues, images.
 *
 * Read it top to bottom beside the specifications it implements:
 *   - vhost-user: QEMU docs/interop/vhost-user.rst
 *   - VIRTIO 1.x: "Virtqueues" (split and packed), "Block Device"
 *   - qcow2: QEMU docs/interop/qcow2.txt; deflate: RFC 1951; zstd: RFC 8878
 *
 * Sections, in order:
 *   1. Conventions: byte order, checked arithmetic, reasons for errors, feature bits,
 *      the iovec cursor
 *   2. Linux glue: every system call vub makes
 *   3. vhost-user wire format
 *   4. Guest memory
 *   5. Split virtqueue: device side, then driver side
 *   6. Packed virtqueue: device side, then driver side
 *   7. virtio-blk requests, device side
 *   8. Images: the image layer (probing, locks) and raw images
 *   9. qcow2 images, read-only
 *   10. Inflate (raw deflate), for compressed qcow2 clusters
 *   11. Zstandard decoding, for zstd-compressed qcow2 clusters
 *   12. Back-end: the vhost-user-blk device
 *   13. Front-end: a vhost-user-blk client
 *
 * Requirement tags such as [VU-MSG-SIZE] or [VQ-SPLIT-LOOP] name one rule
 * each; SPEC-NOTES.md lists them with the clause they come from, and the
 * tests that prove them carry the same tag. A failure names its tag too
 * (section 1, "Reasons").
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE /* fallocate(), memfd_create(), MAP_* on older libcs */
#include "vub.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h> /* not used here; kept for code that includes vub.c */
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <sys/syscall.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <linux/magic.h>

/* ======================================================================== *
 * 1. Conventions: byte order, checked arithmetic, reasons, feature bits,
 *    the iovec cursor
 *
 * Virtio structures are little-endian (VIRTIO 1.x, "Basic Facilities of a
 * Virtio Device": "little-endian" for every field once VERSION_1 is
 * negotiated); qcow2 is big-endian; vhost-user messages are in host order.
 * Guest and image bytes are never cast to host structs: they are decoded
 * with the helpers below, one byte at a time, so the code is the same on
 * every host and never makes an unaligned access. Every failure is one
 * reason of one table; every list of buffers is walked by one cursor.
 * ======================================================================== */

#define VUB_BIT(n) (UINT64_C(1) << (n))
#define VUB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define VUB_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VUB_MAX(a, b) ((a) > (b) ? (a) : (b))

static inline bool vub_has(uint64_t bits, unsigned bit)
{
    return bit < 64 && ((bits >> bit) & 1) != 0;
}

static inline uint16_t vub_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t vub_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t vub_le64(const uint8_t *p)
{
    return (uint64_t)vub_le32(p) | (uint64_t)vub_le32(p + 4) << 32;
}

static inline void vub_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void vub_put_le32(uint8_t *p, uint32_t v)
{
    vub_put_le16(p, (uint16_t)v);
    vub_put_le16(p + 2, (uint16_t)(v >> 16));
}

static inline void vub_put_le64(uint8_t *p, uint64_t v)
{
    vub_put_le32(p, (uint32_t)v);
    vub_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t vub_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t vub_be64(const uint8_t *p)
{
    return (uint64_t)vub_be32(p) << 32 | vub_be32(p + 4);
}

/* Ring indexes and flags are written by the other side while we run, so
 * they are read and written as whole 16-bit atomics: a byte-wise read could
 * see half of an update (0x00ff -> 0x0100 read as 0x01ff). The atomic moves
 * the two bytes as they lie in the ring; vub_le16() orders them. The pointer
 * must be 2-byte aligned; ring setup checks the alignments the spec requires. */
static inline uint16_t vub_ring_load16(const uint8_t *p, memory_order order)
{
    uint16_t raw = atomic_load_explicit((_Atomic uint16_t *)(uintptr_t)p, order);
    return vub_le16((const uint8_t *)&raw);
}

static inline void vub_ring_store16(uint8_t *p, uint16_t v, memory_order order)
{
    uint16_t raw;
    vub_put_le16((uint8_t *)&raw, v);
    atomic_store_explicit((_Atomic uint16_t *)(uintptr_t)p, raw, order);
}

/* Checked arithmetic: every length and offset a peer or an image gives us
 * goes through these before it is used. */
static inline bool vub_add_ok(uint64_t a, uint64_t b, uint64_t *sum)
{
    if (a > UINT64_MAX - b)
        return false;
    *sum = a + b;
    return true;
}

/* True if [off, off + len) lies inside [0, limit). */
static inline bool vub_range_ok(uint64_t off, uint64_t len, uint64_t limit)
{
    return off <= limit && len <= limit - off;
}

static const char *const vub_err_text[] = {
    [VUB_OK] = "success", [VUB_E_PROTO] = "the peer broke the protocol",
    [VUB_E_CLOSED] = "the peer closed the connection", [VUB_E_INVAL] = "invalid argument",
    [VUB_E_NOMEM] = "out of memory", [VUB_E_IO] = "input/output error",
    [VUB_E_RANGE] = "offset or length out of range", [VUB_E_RDONLY] = "read-only",
    [VUB_E_UNSUPP] = "not supported", [VUB_E_CORRUPT] = "corrupt image metadata",
    [VUB_E_AGAIN] = "try again", [VUB_E_TIMEOUT] = "timed out", [VUB_E_BUSY] = "in use by another process",
};

const char *vub_strerror(enum vub_err err)
{
    if ((unsigned)err < VUB_ARRAY_LEN(vub_err_text) && vub_err_text[err])
        return vub_err_text[err];
    return "unknown error";
}

/* ---- Reasons: which rule a failure broke ------------------------------------
 *
 * Every failure vub detects is recorded as one reason and up to two numbers
 * (struct vub_error). The table is the only place a reason's requirement tag
 * (as in SPEC-NOTES.md), its line of text and its enum vub_err class are
 * written, so a rule cannot get two texts or two classes. vub_error_format()
 * prints the text, then the tag in brackets; tests compare the reason itself.
 * For class VUB_E_IO the second number is errno, which the text does not print. */
#define VUB_REASONS(X) \
    /* 2. Linux glue */ \
    X(SYS_CALL, "SYS-CALL", IO, "a system call failed after %llu bytes") \
    X(SYS_NOMEM, "SYS-NOMEM", NOMEM, "out of memory for %llu bytes") \
    /* 3. Wire format */ \
    X(VU_CLOSED, "VU-CLOSED", CLOSED, "peer closed the connection (%llu requests in flight)") \
    X(VU_MSG_CUT, "VU-STREAM", PROTO, "peer closed the connection %llu bytes into a message") \
    X(VU_MSG_STALL, "VU-STREAM", TIMEOUT, "peer stalled %llu bytes into a message") \
    X(VU_FDS, "VU-FDS", PROTO, "more than %llu file descriptors in one message") \
    X(VU_HDR_VERSION, "VU-HDR-VERSION", PROTO, "message %s has version %llu, expected 1") \
    X(VU_MSG_SIZE, "VU-MSG-SIZE", PROTO, "message %s has a %llu-byte payload, outside its bounds") \
    /* 4. Guest memory */ \
    X(MEM_XLATE, "MEM-XLATE", PROTO, "guest address 0x%llx (%llu bytes) is not mapped") \
    X(MEM_WRAP, "MEM-WRAP", PROTO, "guest range 0x%llx + %llu wraps the address space") \
    X(MEM_SLOTS, "VU-MEM-SLOTS", PROTO, "more than %llu memory regions") \
    X(MEM_REGION_CHECK, "MEM-REGION-CHECK", PROTO, "memory region 0x%llx + %llu is empty, wraps or overlaps one") \
    X(MEM_FILE_SIZE, "MEM-FILE-SIZE", PROTO, "memory region at 0x%llx is not inside its %llu-byte file") \
    X(MEM_MAP, "SYS-MMAP", IO, "cannot map the memory region at 0x%llx") \
    X(MEM_REM, "MEM-REM", PROTO, "REM_MEM_REG names no mapped region (guest 0x%llx, %llu bytes)") \
    X(VU_MEM_TABLE, "VU-MEM-TABLE", PROTO, "memory table of %llu regions came with %llu fds or bytes") \
    /* 5, 6. Virtqueues, device side: chains */ \
    X(VQ_SPLIT_ORDER, "VQ-SPLIT-ORDER", PROTO, "chain %llu has a readable buffer after a writable one") \
    X(VQ_SPLIT_LOOP, "VQ-SPLIT-LOOP", PROTO, "chain %llu is longer than its %llu-entry table (a loop?)") \
    X(VQ_SPLIT_NEXT, "VQ-SPLIT-NEXT", PROTO, "descriptor next %llu is outside the %llu-entry ring") \
    X(VQ_SPLIT_AVAIL_IDX, "VQ-SPLIT-AVAIL-IDX", PROTO, "available index moved %llu in a %llu-entry ring") \
    X(VQ_SPLIT_HEAD, "VQ-SPLIT-HEAD", PROTO, "available ring offers head %llu of a %llu-entry ring") \
    /* ... indirect tables */ \
    X(VQ_INDIRECT, "VQ-INDIRECT", PROTO, "chain %llu is INDIRECT without INDIRECT_DESC negotiated") \
    X(VQ_INDIRECT_LEN, "VQ-INDIRECT-LEN", PROTO, "indirect table of %llu bytes: not 1..%llu descriptors") \
    X(VQ_INDIRECT_NESTED, "VQ-INDIRECT-NESTED", PROTO, "chain %llu nests an indirect descriptor") \
    X(VQ_INDIRECT_TABLE_NEXT, "VQ-SPLIT-LOOP", PROTO, "indirect next %llu is outside its %llu-entry table") \
    X(VQ_INDIRECT_NEXT, "VQ-INDIRECT-NEXT", PROTO, "descriptor %llu has both INDIRECT and NEXT") \
    /* ... packed lists */ \
    X(VQ_PACKED_LIST, "VQ-PACKED-LIST", PROTO, "descriptor list at slot %llu is longer than the ring") \
    X(VQ_PACKED_INDIRECT, "VQ-PACKED-INDIRECT", PROTO, "INDIRECT descriptor at slot %llu inside a list") \
    X(VQ_PACKED_ID, "VQ-PACKED-ID", PROTO, "buffer id %llu is made available twice before it was used") \
    /* 5, 6. Virtqueues, device side: the inflight region handed back */ \
    X(INFL_HEADER, "INFL-HEADER", PROTO, "inflight queue region: version %llu, or features, layout or desc_num %llu wrong for its ring") \
    X(INFL_STATE, "INFL-STATE", PROTO, "inflight entry %llu has inflight %llu: not 0 or 1, or not a head of the ring") \
    X(INFL_COUNTER, "INFL-COUNTER", PROTO, "inflight entries %llu and %llu share a counter, or one is at its limit") \
    X(INFL_BATCH, "INFL-BATCH", PROTO, "split last batch of %llu entries (at head %llu) is not inside the ring") \
    X(INFL_PACKED, "INFL-PACKED", PROTO, "packed inflight position %llu is out of range (limit %llu)") \
    X(INFL_PACKED_LIST, "INFL-PACKED-LIST", PROTO, "packed inflight lists loop, cross or lose entries at %llu (%llu entries)") \
    X(INFL_REGION_FULL, "INFL-REGION-FULL", PROTO, "more descriptors in flight than the %llu-entry inflight region holds") \
    /* 5, 6. Virtqueues, driver side */ \
    X(VQ_USED_IDX, "VQ-USED-IDX", PROTO, "used index moved %llu entries with %llu requests in flight") \
    X(VQ_USED_ID, "VQ-USED-ID", PROTO, "used ring returns id %llu, which is not in flight (%llu)") \
    X(VQ_USED_LEN, "VQ-USED-LEN", PROTO, "used ring reports %llu bytes written for id %llu, too many") \
    X(VQ_PACKED_USED_ID, "VQ-PACKED-USED-ID", PROTO, "used descriptor at slot %llu returns id %llu, not in flight") \
    X(VQ_PACKED_USED_LEN, "VQ-PACKED-USED-LEN", PROTO, "used descriptor reports %llu bytes for id %llu, too many") \
    /* 8. Images */ \
    X(IMG_OPEN, "SYS-OPEN", IO, "cannot open the file") \
    X(IMG_KIND, "SYS-FILE", IO, "not a regular file or block device") \
    X(IMG_PROBE_FOREIGN, "IMG-PROBE-FOREIGN", UNSUPP, "is a %s image, which vub does not read (it reads raw and qcow2); convert it with qemu-img, or open it as raw to use its bytes as they are") \
    X(IMG_LOCK_FAIL, "IMG-LOCK", IO, "cannot lock byte %llu") \
    X(IMG_RESIZE_QCOW2, "BLK-RESIZE", UNSUPP, "only raw images change size; a qcow2 image's size is in its header") \
    X(IMG_SHRANK, "BLK-RESIZE", RANGE, "the image shrank from %llu to %llu bytes: refused, the driver may hold data there") \
    X(IMG_DIRECT_QCOW2, "IMG-DIRECT", UNSUPP, "direct I/O (cache=none) is for raw images; qcow2 images are read through their caches") \
    X(IMG_DIRECT_OPEN, "IMG-DIRECT", IO, "cannot open for direct I/O (O_DIRECT)") \
    X(IMG_DIRECT_ALIGN, "IMG-DIRECT", UNSUPP, "direct I/O here needs offsets aligned to %llu bytes; vub's sectors are 512 (use cache=writeback)") \
    X(IMG_BUSY, "IMG-LOCK", BUSY, "is in use: another process (QEMU, qemu-img or vub) holds or does not share its \"%s\" permission") \
    /* 9. qcow2: header */ \
    X(QCOW2_MAGIC, "QCOW2-HDR", CORRUPT, "not a qcow2 image: bad magic 0x%08llx") \
    X(QCOW2_VERSION, "QCOW2-HDR", UNSUPP, "qcow2 version %llu is not supported (only 2 and 3)") \
    X(QCOW2_CLUSTER_BITS, "QCOW2-HDR", CORRUPT, "cluster_bits %llu is below the minimum of 9") \
    X(QCOW2_CLUSTER_BIG, "QCOW2-HDR", UNSUPP, "cluster_bits %llu: clusters over 2 MiB are not supported") \
    X(QCOW2_HDR_LENGTH, "QCOW2-HDR-LENGTH", CORRUPT, "header_length %llu: not 8n in [104, a cluster], or past EOF") \
    X(QCOW2_REFCOUNT_ORDER, "QCOW2-HDR", CORRUPT, "refcount_order %llu exceeds 6") \
    X(QCOW2_CRYPT, "QCOW2-CRYPT", UNSUPP, "encrypted images are not supported (crypt_method %llu: 1 AES, 2 LUKS)") \
    X(QCOW2_BACKING_NAME, "QCOW2-BACKING-NAME", CORRUPT, "backing file name offset %llu (%llu bytes) leaves cluster 0") \
    /* ... header extensions and names */ \
    X(QCOW2_EXT_BOUNDS, "QCOW2-EXT-BOUNDS", CORRUPT, "header extension at byte %llu (%llu bytes) overruns the area") \
    X(QCOW2_EXT_ONCE, "QCOW2-EXT-ONCE", CORRUPT, "header extension 0x%08llx appears twice") \
    X(QCOW2_NAME_CHARS, "QCOW2-BACKING-NAME", CORRUPT, "a file name the image records has control character 0x%02llx") \
    X(QCOW2_BACKING_UNRECORDED, "QCOW2-BACKING-FORMAT", UNSUPP, "backing file has no recorded format and vub does not probe it; name its format (raw or qcow2) when opening, or record it in the image (qemu-img rebase -u -b NAME -F FORMAT)") \
    X(QCOW2_BACKING_FORMAT, "QCOW2-BACKING-FORMAT", UNSUPP, "the recorded backing file format is not raw or qcow2") \
    /* ... feature bits */ \
    X(QCOW2_INCOMPAT_UNKNOWN, "QCOW2-INCOMPAT-UNKNOWN", UNSUPP, "unsupported incompatible feature: incompatible-bit%llu") \
    X(QCOW2_CORRUPT_BIT, "QCOW2-CORRUPT-BIT", CORRUPT, "the image is marked corrupt; repair it with qemu-img check -r") \
    X(QCOW2_COMPRESSION_TYPE, "QCOW2-COMPRESSION-TYPE", CORRUPT, "compression type %llu does not match its feature bit") \
    X(QCOW2_COMPRESSION_UNKNOWN, "QCOW2-COMPRESSION-TYPE", UNSUPP, "unknown compression type %llu") \
    X(QCOW2_EXTL2, "QCOW2-EXTL2", CORRUPT, "extended L2 entries need 16 KiB clusters or more (cluster_bits %llu)") \
    X(QCOW2_CRYPTO_EXT, "QCOW2-CRYPT", CORRUPT, "encryption header extension in an unencrypted image") \
    /* ... external data file */ \
    X(QCOW2_DATA_FILE, "QCOW2-DATA-FILE", UNSUPP, "external data file: not followed unless allowed (--allow-data-file)") \
    X(QCOW2_DATA_FILE_NAME, "QCOW2-DATA-FILE", UNSUPP, "the image uses an external data file but records no name") \
    X(QCOW2_DATA_FILE_LONG, "QCOW2-DATA-FILE", CORRUPT, "data file name of %llu bytes is too long") \
    X(QCOW2_DATA_FILE_SNAPSHOTS, "QCOW2-DATA-FILE", CORRUPT, "%llu internal snapshots with an external data file") \
    /* ... metadata tables */ \
    X(QCOW2_L1_BIG, "QCOW2-L1-BOUNDS", UNSUPP, "active L1 table at %llu: %llu entries exceed 32 MiB") \
    X(QCOW2_L1_SIZE, "QCOW2-L1-SIZE", CORRUPT, "active L1 table at %llu: %llu entries are too small for the disk") \
    X(QCOW2_L1_PLACE, "QCOW2-TABLE-BOUNDS", CORRUPT, "active L1 table at %llu (%llu entries) is unaligned or past EOF") \
    X(QCOW2_SNAPSHOT_L1, "QCOW2-L1-BOUNDS", CORRUPT, "snapshot L1 table at %llu (%llu entries) is too small, big or misplaced") \
    X(QCOW2_REFCOUNT_BIG, "QCOW2-REFCOUNT-BOUNDS", UNSUPP, "refcount table of %llu clusters exceeds 8 MiB") \
    X(QCOW2_REFCOUNT_PLACE, "QCOW2-REFCOUNT-BOUNDS", CORRUPT, "refcount table at %llu is unaligned or outside the file") \
    /* ... snapshots */ \
    X(QCOW2_SNAPSHOTS_MANY, "QCOW2-SNAPSHOT-TABLE", CORRUPT, "%llu snapshots exceed the limit of %llu") \
    X(QCOW2_SNAPSHOT_TABLE, "QCOW2-SNAPSHOT-TABLE", CORRUPT, "snapshot table at %llu is unaligned or outside the file") \
    X(QCOW2_SNAPSHOT_ENTRY, "QCOW2-SNAPSHOT-TABLE", CORRUPT, "snapshot %llu is past EOF or 64 MiB, or has %llu extra bytes") \
    X(QCOW2_SNAPSHOT_NAME, "QCOW2-SNAPSHOT-READ", INVAL, "no snapshot with the id or name asked for") \
    /* ... reading clusters */ \
    X(QCOW2_READ, "SYS-READ", IO, "reading the image at byte %llu") \
    X(QCOW2_L1_ENTRY, "QCOW2-L1-ENTRY", CORRUPT, "invalid L1 entry %llu: 0x%016llx") \
    X(QCOW2_L1_TRUNCATED, "QCOW2-L1-ENTRY", CORRUPT, "an L1 entry puts its L2 table at byte %llu, past the end of the %llu-byte file (is the image truncated?)") \
    X(QCOW2_L2_ENTRY, "QCOW2-L2-ENTRY", CORRUPT, "invalid L2 entry 0x%016llx at guest offset %llu") \
    X(QCOW2_L2_ZERO, "QCOW2-L2-ZERO", CORRUPT, "zero cluster at guest offset %llu in a version 2 image") \
    X(QCOW2_SUBCLUSTER, "QCOW2-SUBCLUSTER", CORRUPT, "invalid extended L2 entry bitmap 0x%016llx at offset %llu") \
    X(QCOW2_COMPRESSED_ENTRY, "QCOW2-COMPRESSED-ENTRY", CORRUPT, "invalid compressed cluster entry at offset %llu") \
    X(QCOW2_COMPRESSED, "QCOW2-COMPRESSED", CORRUPT, "compressed cluster at host offset %llu: outside the file, or %llu bytes") \
    X(QCOW2_INFLATE, "QCOW2-COMPRESSED", CORRUPT, "compressed cluster at host offset %llu: deflate result %lld") \
    X(QCOW2_ZSTD, "QCOW2-ZSTD", CORRUPT, "compressed cluster at host offset %llu: zstd result %lld") \
    /* ... backing files */ \
    X(QCOW2_BACKING_DEPTH, "QCOW2-BACKING-DEPTH", UNSUPP, "backing chain deeper than %llu images") \
    X(QCOW2_BACKING_OPEN, "SYS-OPEN", IO, "cannot open backing file") \
    X(QCOW2_BACKING_KIND, "SYS-FILE", IO, "raw backing file is not a regular file or block device") \
    X(QCOW2_BACKING_LOOP, "QCOW2-BACKING-LOOP", CORRUPT, "backing chain loops: a file is already in it") \
    /* 12. Back-end: the io_uring engine */ \
    X(BLK_AIO_SETUP, "BLK-AIO", IO, "cannot set up an io_uring for %llu requests in flight") \
    X(BLK_AIO, "BLK-AIO", IO, "io_uring_enter failed (ring %llu)") \
    /* 12. Back-end: the message table */ \
    X(VU_DISPATCH, "VU-DISPATCH", PROTO, "request %s is not supported") \
    X(VU_GATE, "VU-GATE", PROTO, "%s without its protocol feature (bit %llu) negotiated") \
    X(VU_FDS_COUNT, "VU-FDS", PROTO, "%s came with %llu fds, not what it takes") \
    X(VU_QUEUE_INDEX, "VU-QUEUE-INDEX", PROTO, "queue index %llu, the device has %llu") \
    X(VU_HDR_FLAGS, "VU-HDR-FLAGS", PROTO, "%s with header flags 0x%llx: REPLY or undefined bits are set") \
    /* ... features */ \
    X(VU_SET_FEATURES, "VU-SET-FEATURES", PROTO, "front-end acked features 0x%llx that were not offered") \
    X(VU_VERSION_1, "VU-SET-FEATURES", UNSUPP, "front-end did not ack VERSION_1 (0x%llx): no legacy virtio") \
    X(VU_PROTOCOL_FEATURES, "VU-PROTOCOL-OFFER", PROTO, "front-end acked protocol features 0x%llx not offered") \
    X(VQ_LAYOUT_CHANGE, "VQ-LAYOUT-CHANGE", PROTO, "SET_FEATURES changes the layout of running queue %llu") \
    /* ... rings */ \
    X(VU_RING_STOPPED, "VU-RING-STOPPED", PROTO, "%s on running queue %llu") \
    X(VQ_SPLIT_SIZE, "VQ-SPLIT-SIZE", PROTO, "split ring size %llu is not a power of two in 1..%llu") \
    X(VQ_PACKED_SIZE, "VQ-PACKED-SIZE", PROTO, "packed ring size %llu is not in 1..%llu") \
    X(VQ_SPLIT_ALIGN, "VQ-SPLIT-ALIGN", PROTO, "queue %llu ring areas are misaligned (flags 0x%llx)") \
    X(VQ_HOST_ALIGN, "VQ-HOST-ALIGN", PROTO, "queue %llu rings would be misaligned in our mapping (region offset and address disagree)") \
    X(VQ_PACKED_ALIGN, "VQ-PACKED-ALIGN", PROTO, "queue %llu packed event areas are not 4-byte aligned") \
    X(VU_VRING_BASE, "VU-VRING-BASE", PROTO, "ring base 0x%llx is not a position in the %llu-entry ring") \
    X(VQ_RING_STATE, "VQ-RING-STATE", PROTO, "ring size %llu or base 0x%llx is wrong for its layout") \
    X(VU_VRING_FD, "VU-VRING-FD", PROTO, "vring fd payload 0x%llx with %llu fds") \
    X(VU_EVENT_FD, "VU-EVENT-FD", PROTO, "%s: the fd is not an eventfd or the right end of a pipe") \
    X(VU_CALL_NONBLOCK, "VU-CALL-NONBLOCK", IO, "cannot make the notification fd non-blocking") \
    X(VU_KICK_DROPPED, "VU-EVENT-FD", CLOSED, "queue %llu: kick fd hung up or failed; dropped it") \
    X(VU_CALL_DROPPED, "VU-EVENT-FD", CLOSED, "queue %llu: call fd hung up or failed; dropped it") \
    X(VQ_RING_FIT, "VQ-RING-STATE", PROTO, "queue %llu: a %llu-entry ring at the addresses given does not fit in guest memory") \
    X(VU_VRING_ENABLE, "VU-VRING-ENABLE", PROTO, "SET_VRING_ENABLE %llu: not 0 or 1, or before PROTOCOL_FEATURES") \
    X(VU_NO_SHARED_MEM, "VU-NO-SHARED-MEM", PROTO, "queue %llu rings are not inside guest memory: the front-end shared no memory at all; is guest RAM a shared memory backend? (QEMU: -object memory-backend-memfd,id=mem,size=...,share=on -numa node,memdev=mem)") \
    X(VU_PART_SHARED_MEM, "VU-NO-SHARED-MEM", PROTO, "queue %llu rings are not inside guest memory (%llu regions shared); part of the guest RAM may not be shared memory (QEMU: share=on on every memory backend)") \
    X(VU_STATUS, "VU-STATUS", PROTO, "SET_STATUS 0x%llx is wider than the status byte") \
    /* ... inflight tracking */ \
    X(INFL_GET, "INFL-GET", PROTO, "GET_INFLIGHT_FD for %llu queues of %llu entries: answered with no area") \
    X(INFL_SET, "INFL-SET", PROTO, "SET_INFLIGHT_FD area of %llu bytes: the queues need %llu, page-aligned, inside the file") \
    X(INFL_SHM, "SYS-MEMFD", IO, "cannot create the %llu-byte inflight area") \
    /* ... the back-end's request channel */ \
    X(VU_CONFIG_CHANGE, "VU-CONFIG-CHANGE", IO, "CONFIG_CHANGE_MSG could not be sent") \
    X(VU_BACKEND_REPLY, "VU-BACKEND-REQ", PROTO, "the front-end answered CONFIG_CHANGE_MSG with request %llu, value %llu") \
    X(VU_BACKEND_UNKNOWN, "VU-BACKEND-REQ", PROTO, "back-end request %llu on its channel is not taken") \
    /* ... config space */ \
    X(VU_CONFIG_RANGE, "VU-CONFIG-RANGE", PROTO, "config access of %llu bytes at offset %llu") \
    X(VU_CONFIG_WRITE, "VU-CONFIG-WRITE", PROTO, "SET_CONFIG writes %llu to config byte %llu") \
    /* 13. Front-end: replies and negotiation */ \
    X(VU_REPLY_TIMEOUT, "VU-REPLY-TIMEOUT", TIMEOUT, "back-end did not answer %s within %llu ms") \
    X(VU_REPLY_CHECK, "VU-REPLY-CHECK", PROTO, "reply to %s does not match (request and flags 0x%llx)") \
    X(VU_ANSWER, "VU-REPLY-CHECK", PROTO, "back-end answered %s with %llu, which is out of range") \
    X(VU_NEED_REPLY, "VU-NEED-REPLY", PROTO, "back-end refused %s (ack %llu)") \
    X(VU_FEATURES, "VU-FEATURES", UNSUPP, "back-end does not offer VERSION_1 (features 0x%llx)") \
    X(VQ_RING_CHOICE, "VQ-RING-CHOICE", UNSUPP, "packed rings: the back-end does not offer RING_PACKED") \
    X(VU_CONFIG_REQUIRED, "VU-CONFIG-REQUIRED", UNSUPP, "back-end does not offer PROTOCOL_F_CONFIG: no disk size") \
    X(BLK_MQ, "BLK-MQ", INVAL, "asked for %llu queues; the back-end has %llu") \
    /* ... the caller's requests */ \
    X(CLIENT_OPTS, "CLIENT-OPTS", INVAL, "option value %llu is out of range (limit %llu)") \
    X(CLIENT_SEGMENTS, "CLIENT-REQ", INVAL, "a request needs 1..%llu non-empty buffers in the pool, each <= size_max %llu") \
    X(CLIENT_ALIGN, "CLIENT-REQ", INVAL, "offset %llu and length %llu are not multiples of 512, or the range is bad") \
    X(CLIENT_GET_ID, "BLK-GET-ID", INVAL, "GET_ID needs a 20-byte buffer (got %llu bytes)") \
    X(CLIENT_REQ, "CLIENT-REQ", INVAL, "op %llu is unknown, or has unmap (write-zeroes only), or never fits the ring") \
    X(CLIENT_IDLE, "CLIENT-REQ", INVAL, "nothing in flight to wait for") \
    X(CLIENT_BUSY, "CLIENT-REQ", INVAL, "vub_client_run on a queue with %llu requests in flight") \
    X(CLIENT_WAIT, "CLIENT-WAIT", TIMEOUT, "no completion within %llu ms (%llu in flight)") \
    X(CLIENT_WCE, "CLIENT-WCE", UNSUPP, "cannot set writeback %llu: the back-end does not offer CONFIG_WCE (writeback stays %llu)") \
    X(CLIENT_WCE_KEPT, "CLIENT-WCE", UNSUPP, "SET_CONFIG writeback %llu was acknowledged, but the config space still says %llu") \
    /* ... reconnecting */ \
    X(CLIENT_RECONNECT_PATH, "CLIENT-RECONNECT", INVAL, "reconnect needs the socket path of vub_client_connect (fd %llu)") \
    X(CLIENT_RECONNECT_TIMEOUT, "CLIENT-RECONNECT", TIMEOUT, "no back-end took the connection again within %llu ms (errno %llu)") \
    X(CLIENT_RECONNECT_CHANGED, "CLIENT-RECONNECT", UNSUPP, "the restarted back-end negotiates features 0x%llx, not 0x%llx as before")

enum vub_reason {
    VUB_R_NONE, /* nothing failed */
#define VUB_REASON_ENUM(name, tag, err, text) VUB_R_##name,
    VUB_REASONS(VUB_REASON_ENUM)
#undef VUB_REASON_ENUM
    VUB_R_COUNT
};

static const struct vub_reason_row {
    const char *tag;  /* requirement tag, as in SPEC-NOTES.md */
    enum vub_err err; /* the class a caller acts on */
    const char *text; /* one line; prints a and b (unsigned long long) */
} vub_reasons[VUB_R_COUNT] = {
    [VUB_R_NONE] = {"", VUB_OK, "no error"},
#define VUB_REASON_ROW(name, tag, err, text) [VUB_R_##name] = {tag, VUB_E_##err, text},
    VUB_REASONS(VUB_REASON_ROW)
#undef VUB_REASON_ROW
};

/* A failure as vub records it. */
struct vub_error {
    enum vub_reason reason; /* which rule; VUB_R_NONE if nothing failed */
    uint64_t a, b;          /* the numbers its text names */
};

/* Records a reason (e may be NULL) and returns its class. */
static enum vub_err vub_fail(struct vub_error *e, enum vub_reason reason, uint64_t a, uint64_t b)
{
    if (e)
        *e = (struct vub_error){reason, a, b};
    return vub_reasons[reason].err;
}

/* The one formatter, "<prefix>: <text> [<TAG>]", is in section 8, after the names it uses. */
static void vub_error_format(const struct vub_error *e, const char *prefix, char *buf, size_t len);

/* ---- Feature bits (VIRTIO "Feature Bits", vhost-user "Protocol features") */

/* One row per bit: the name printed is what follows "_F_". */
#define VUB_VIRTIO_FEATURES(X) \
    /* virtio-blk device features ("Block Device", "Feature bits") */ \
    X(VIRTIO_BLK_F_SIZE_MAX, 1) X(VIRTIO_BLK_F_SEG_MAX, 2) X(VIRTIO_BLK_F_GEOMETRY, 4) \
    X(VIRTIO_BLK_F_RO, 5) X(VIRTIO_BLK_F_BLK_SIZE, 6) X(VIRTIO_BLK_F_FLUSH, 9) \
    X(VIRTIO_BLK_F_TOPOLOGY, 10) X(VIRTIO_BLK_F_CONFIG_WCE, 11) X(VIRTIO_BLK_F_MQ, 12) \
    X(VIRTIO_BLK_F_DISCARD, 13) X(VIRTIO_BLK_F_WRITE_ZEROES, 14) \
    /* reserved feature bits shared by all devices ("Reserved Feature Bits"); \
     * LOG_ALL is vhost's dirty logging, PROTOCOL_FEATURES vhost-user's own */ \
    X(VIRTIO_F_NOTIFY_ON_EMPTY, 24) X(VHOST_F_LOG_ALL, 26) X(VIRTIO_F_INDIRECT_DESC, 28) \
    X(VIRTIO_F_EVENT_IDX, 29) X(VHOST_USER_F_PROTOCOL_FEATURES, 30) X(VIRTIO_F_VERSION_1, 32) \
    X(VIRTIO_F_ACCESS_PLATFORM, 33) X(VIRTIO_F_RING_PACKED, 34) X(VIRTIO_F_IN_ORDER, 35)

#define VUB_PROTOCOL_FEATURES(X) \
    X(VHOST_USER_PROTOCOL_F_MQ, 0) X(VHOST_USER_PROTOCOL_F_LOG_SHMFD, 1) \
    X(VHOST_USER_PROTOCOL_F_RARP, 2) X(VHOST_USER_PROTOCOL_F_REPLY_ACK, 3) \
    X(VHOST_USER_PROTOCOL_F_NET_MTU, 4) X(VHOST_USER_PROTOCOL_F_BACKEND_REQ, 5) \
    X(VHOST_USER_PROTOCOL_F_CROSS_ENDIAN, 6) X(VHOST_USER_PROTOCOL_F_CRYPTO_SESSION, 7) \
    X(VHOST_USER_PROTOCOL_F_PAGEFAULT, 8) X(VHOST_USER_PROTOCOL_F_CONFIG, 9) \
    X(VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD, 10) X(VHOST_USER_PROTOCOL_F_HOST_NOTIFIER, 11) \
    X(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD, 12) X(VHOST_USER_PROTOCOL_F_RESET_DEVICE, 13) \
    X(VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS, 14) X(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, 15) \
    X(VHOST_USER_PROTOCOL_F_STATUS, 16) X(VHOST_USER_PROTOCOL_F_XEN_MMAP, 17) \
    X(VHOST_USER_PROTOCOL_F_SHARED_OBJECT, 18) X(VHOST_USER_PROTOCOL_F_DEVICE_STATE, 19)

/* The device status byte (VIRTIO "Device Status Field"): masks, not bits;
 * vhost-user carries it in SET_STATUS/GET_STATUS. */
enum {
    VIRTIO_STATUS_ACKNOWLEDGE = 1, VIRTIO_STATUS_DRIVER = 2, VIRTIO_STATUS_DRIVER_OK = 4,
    VIRTIO_STATUS_FEATURES_OK = 8, VIRTIO_STATUS_DEVICE_NEEDS_RESET = 64, VIRTIO_STATUS_FAILED = 128,
};

#define VUB_FEATURE_ENUM(name, bit) name = bit,
#define VUB_FEATURE_NAME(name, bit) [bit] = #name,
enum { VUB_VIRTIO_FEATURES(VUB_FEATURE_ENUM) };
enum { VUB_PROTOCOL_FEATURES(VUB_FEATURE_ENUM) };
/* vub.h spells the same bits for callers; the two lists must agree. */
#define VUB_FEATURE_PUBLIC(name, bit) _Static_assert((int)VUB_##name == (int)name, "vub.h: VUB_" #name);
VUB_VIRTIO_FEATURES(VUB_FEATURE_PUBLIC)
VUB_PROTOCOL_FEATURES(VUB_FEATURE_PUBLIC)
static const char *const vub_virtio_feature_names[64] = {VUB_VIRTIO_FEATURES(VUB_FEATURE_NAME)};
static const char *const vub_protocol_feature_names[64] = {VUB_PROTOCOL_FEATURES(VUB_FEATURE_NAME)};

void vub_features_str(uint64_t bits, enum vub_feature_kind kind, char *buf, size_t len)
{
    const char *const *names =
        kind == VUB_FEATURES_PROTOCOL ? vub_protocol_feature_names : vub_virtio_feature_names;
    size_t used = 0;
    if (!buf || len == 0)
        return;
    snprintf(buf, len, "(none)"); /* the first name overwrites it */
    for (unsigned bit = 0; bit < 64 && used < len; bit++) {
        if (!vub_has(bits, bit))
            continue;
        int n = names[bit] ? snprintf(buf + used, len - used, "%s%s", used ? " " : "", strstr(names[bit], "_F_") + 3)
                           : snprintf(buf + used, len - used, "%sbit%u", used ? " " : "", bit);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* ---- The one iovec cursor ---------------------------------------------------
 *
 * Guest buffers and image reads are lists of pieces. Everything that walks
 * such a list goes through this cursor: it hands out the next bytes of the
 * list as iovecs, a batch at a time, without changing the list. */

#define VUB_IOV_BATCH 64 /* iovecs one batch holds */

struct vub_iov_cursor {
    const struct iovec *iov;
    unsigned count;
    unsigned index; /* current iovec */
    size_t at;      /* bytes of it already taken */
};

static uint64_t vub_iov_bytes(const struct iovec *iov, unsigned count)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < count; i++)
        total += iov[i].iov_len;
    return total;
}

/* Takes up to `want` bytes off the front as at most `cap` iovecs into out;
 * returns the bytes taken (fewer only when out is full or the list ends).
 * With out NULL the bytes are skipped. */
static uint64_t vub_iov_take(struct vub_iov_cursor *c, uint64_t want, struct iovec *out, unsigned cap,
                             unsigned *out_count)
{
    uint64_t taken = 0;
    unsigned n = 0;
    while (taken < want && c->index < c->count && (!out || n < cap)) {
        const struct iovec *v = &c->iov[c->index];
        size_t step = (size_t)VUB_MIN((uint64_t)(v->iov_len - c->at), want - taken);
        if (out && step > 0)
            out[n++] = (struct iovec){(uint8_t *)v->iov_base + c->at, step};
        taken += step;
        c->at += step;
        if (c->at == v->iov_len) {
            c->index++;
            c->at = 0;
        }
    }
    if (out_count)
        *out_count = n;
    return taken;
}

/* Copies bytes between the next `bytes` of the list and flat memory: out of
 * the list into dst, or into the list from src (zeros when src is NULL).
 * Returns the bytes moved. */
static uint64_t vub_iov_copy(struct vub_iov_cursor *c, uint8_t *dst, const uint8_t *src, uint64_t bytes)
{
    struct iovec piece;
    uint64_t done = 0;
    while (done < bytes && vub_iov_take(c, bytes - done, &piece, 1, NULL) > 0) {
        if (dst)
            memcpy(dst + done, piece.iov_base, piece.iov_len);
        else if (src)
            memcpy(piece.iov_base, src + done, piece.iov_len);
        else
            memset(piece.iov_base, 0, piece.iov_len);
        done += piece.iov_len;
    }
    return done;
}

/* ======================================================================== *
 * 2. Linux glue
 *
 * Every system call vub makes is in this section, so rings, qcow2 and
 * inflate above the glue are plain C, and a port to another kernel starts
 * here. Each wrapper restarts on EINTR and reports failure as a reason with
 * errno as its number.
 * ======================================================================== */

/* Signals an eventfd (or writes to a pipe): the 8-byte value carries no
 * meaning (vhost-user "Introduction": "the 8-value itself has no meaning").
 * The fd is non-blocking ([VU-CALL-NONBLOCK]): EAGAIN means a saturated
 * counter or a full pipe, so a signal is pending and the peer will wake
 * anyway. False only if the fd is broken (a pipe with no reader, EBADF). */
static bool vub_sys_signal(int fd)
{
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(fd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
    return n >= 0 || errno == EAGAIN;
}

/* Consumes pending signals on a non-blocking eventfd or pipe. A pipe may
 * hold more than one 8-byte signal; a bounded number of reads keeps a
 * peer that writes without pause from holding us here. False if the fd
 * reached end of file (the writer is gone) or fails for good. */
static bool vub_sys_drain(int fd)
{
    uint64_t count;
    for (unsigned i = 0; i < 64; i++) {
        ssize_t n = read(fd, &count, sizeof count);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 && errno == EAGAIN;
    }
    return true;
}

/* [VU-EVENT-FD] Is fd something a ring notification can travel on? An
 * eventfd, or where the front-end lacks one a pipe (vhost-user
 * "Introduction": "Either eventfd or pipe/pipe2"), whose end must suit the
 * direction: kicks are read, calls and errors written. A file, a directory,
 * /dev/null or a socket would either never signal or signal forever.
 * eventfds are anonymous inodes, told apart by their /proc name; without
 * /proc, any anonymous inode is taken on trust. */
static bool vub_sys_event_fd_ok(int fd, bool read_end, bool *is_pipe)
{
    struct stat st;
    int flags = fcntl(fd, F_GETFL);
    if (fstat(fd, &st) != 0 || flags < 0)
        return false;
    int mode = flags & O_ACCMODE;
    *is_pipe = S_ISFIFO(st.st_mode);
    if (*is_pipe)
        return mode == O_RDWR || mode == (read_end ? O_RDONLY : O_WRONLY);
    char link[64], name[32];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, name, sizeof name - 1);
    if (n < 0)
        return errno == ENOENT && (st.st_mode & S_IFMT) == 0;
    name[n] = '\0';
    return strcmp(name, "anon_inode:[eventfd]") == 0;
}

static void vub_sys_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static bool vub_sys_set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

static int vub_sys_open(const char *path, bool read_only)
{
    return open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
}

/* The same file again, bypassing the page cache (O_DIRECT). */
static int vub_sys_open_direct(const char *path, bool read_only)
{
    return open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_DIRECT);
}

/* Which file fd is: identity (for loop checks) and size. A regular file, or
 * with block_ok a block device; anything else is refused. */
static bool vub_sys_stat(int fd, bool block_ok, uint64_t *size, dev_t *dev, ino_t *ino)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return false;
    if (dev)
        *dev = st.st_dev;
    if (ino)
        *ino = st.st_ino;
    if (block_ok && S_ISBLK(st.st_mode))
        return ioctl(fd, BLKGETSIZE64, size) == 0;
    if (!S_ISREG(st.st_mode) || st.st_size < 0) {
        errno = EINVAL;
        return false;
    }
    *size = (uint64_t)st.st_size;
    return true;
}

/* Open-file-description byte locks (fcntl F_OFD_SETLK): they belong to the
 * open file, not the process, so two opens in one process conflict like two
 * processes, and closing the fd drops them. vub takes only shared (read)
 * locks on single bytes, as QEMU does; see "Image locks" in section 8.
 * Returns 0, or an errno: EAGAIN/EACCES when another open file holds a
 * conflicting lock, EINVAL/ENOLCK/EOPNOTSUPP where the file system has no
 * such locks. */
static int vub_sys_lock_byte(int fd, uint64_t byte)
{
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = (off_t)byte, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : errno;
}

/* True if another open file holds a lock on the byte (our own open file's
 * locks never conflict with themselves, so they are not seen). */
static bool vub_sys_byte_held_elsewhere(int fd, uint64_t byte)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)byte, .l_len = 1};
    return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

/* True if both fds are the same file: same device and inode, whatever
 * names (hard links, symbolic links, other paths) led to them. */
static bool vub_sys_same_file(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Maps len bytes of fd starting at byte offset off, shared and writable.
 * mmap wants a page-aligned file offset: map from the page boundary below
 * and return a pointer to the first requested byte. A file system that needs
 * a larger alignment (hugetlbfs) refuses with EINVAL; then map from offset 0,
 * as the vhost-user spec's reference back-ends do. */
static uint8_t *vub_sys_map(int fd, uint64_t off, uint64_t len, void **base, size_t *base_len)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t starts[2] = {off - off % page, 0};
    for (unsigned i = 0; i < 2; i++) {
        uint64_t delta = off - starts[i], total;
        if (!vub_add_ok(len, delta, &total) || total > SIZE_MAX || starts[i] > (uint64_t)INT64_MAX)
            return NULL;
        void *p = mmap(NULL, (size_t)total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)starts[i]);
        if (p != MAP_FAILED) {
            *base = p;
            *base_len = (size_t)total;
            return (uint8_t *)p + delta;
        }
        if (errno != EINVAL)
            return NULL;
    }
    return NULL;
}

static void vub_sys_unmap(void *base, size_t len)
{
    if (base)
        munmap(base, len);
}

/* vhost-user carries at most this many descriptors in one message. */
#define VUB_VU_MAX_FDS 8

/* Attaches count descriptors to mh as one SCM_RIGHTS control message, in
 * control (room for CMSG_SPACE(count * sizeof(int)) bytes, suitably
 * aligned). Nothing is attached when count is 0. */
static void vub_msg_attach_fds(struct msghdr *mh, char *control, const int *fds, unsigned count)
{
    if (count == 0)
        return;
    memset(control, 0, CMSG_SPACE(sizeof(int) * count));
    mh->msg_control = control;
    mh->msg_controllen = CMSG_SPACE(sizeof(int) * count);
    struct cmsghdr *c = CMSG_FIRSTHDR(mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * count);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
}

/* One call of the transfer loop: a socket (off < 0) with descriptors, or a
 * file at off. Sent: fds[0..*fd_count); received: appended to fds (room
 * for VUB_VU_MAX_FDS), the rest closed, and a truncated control message
 * reported through *cut. */
static ssize_t vub_sys_xfer_once(int fd, bool write, int64_t off, struct iovec *iov, unsigned count,
                                 int *fds, unsigned *fd_count, bool *cut)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * VUB_VU_MAX_FDS)];
    } control;
    int n_iov = (int)VUB_MIN(count, (unsigned)IOV_MAX);
    if (off >= 0)
        return write ? pwritev(fd, iov, n_iov, (off_t)off) : preadv(fd, iov, n_iov, (off_t)off);
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n_iov};
    if (write) {
        vub_msg_attach_fds(&mh, control.buf, fds, fd_count ? *fd_count : 0);
        return sendmsg(fd, &mh, MSG_NOSIGNAL);
    }
    mh.msg_control = control.buf;
    mh.msg_controllen = sizeof control.buf;
    ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    for (struct cmsghdr *c = n < 0 ? NULL : CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
            if (fd_count && *fd_count < VUB_VU_MAX_FDS)
                fds[(*fd_count)++] = got;
            else
                close(got);
        }
    }
    if (n >= 0 && (mh.msg_flags & MSG_CTRUNC))
        *cut = true;
    return n;
}

/* The one transfer loop, for files and sockets alike: moves every byte of
 * the list, in as many calls as it takes (at most IOV_MAX iovecs a call;
 * short transfers resume where they stopped). *done counts the bytes
 * moved. Stops early, with VUB_OK, when a read meets the end of the file or
 * the peer's close: the caller decides what a short read means. Socket
 * descriptors go with the first byte sent; received ones are collected. */
static enum vub_err vub_sys_xfer(int fd, bool write, int64_t off, const struct iovec *iov, unsigned count,
                                 int *fds, unsigned *fd_count, uint64_t *done, struct vub_error *e)
{
    struct vub_iov_cursor c = {iov, count, 0, 0};
    struct iovec batch[VUB_IOV_BATCH];
    unsigned n;
    bool cut = false;
    *done = 0;
    for (uint64_t want = vub_iov_bytes(iov, count); *done < want;) {
        struct vub_iov_cursor peek = c; /* c moves only past what was moved */
        vub_iov_take(&peek, want - *done, batch, VUB_IOV_BATCH, &n);
        ssize_t got = vub_sys_xfer_once(fd, write, off < 0 ? -1 : off + (int64_t)*done, batch, n, fds, fd_count,
                                        &cut);
        if (got < 0 && errno == EINTR)
            continue;
        if (cut)
            return vub_fail(e, VUB_R_VU_FDS, VUB_VU_MAX_FDS, 0);
        if (got < 0 && off < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return vub_fail(e, write ? VUB_R_SYS_CALL : VUB_R_VU_MSG_STALL, *done, (uint64_t)errno);
        if (got < 0 && (errno == EPIPE || errno == ECONNRESET))
            return vub_fail(e, VUB_R_VU_CLOSED, 0, 0);
        if (got < 0 || (got == 0 && write))
            return vub_fail(e, VUB_R_SYS_CALL, *done, got < 0 ? (uint64_t)errno : (uint64_t)EIO);
        if (got == 0)
            return VUB_OK; /* end of file, or the peer closed */
        if (write && fd_count)
            *fd_count = 0; /* sent with the first byte */
        *done += (uint64_t)got;
        vub_iov_take(&c, (uint64_t)got, NULL, 0, NULL);
    }
    return VUB_OK;
}

/* Reads exactly len bytes at off; bytes past the end of the file read as
 * zeros (what qcow2 wants, see [QCOW2-EOF-ZEROS]), a failure is VUB_E_IO. */
static enum vub_err vub_sys_pread_zero(int fd, void *buf, size_t len, uint64_t off, struct vub_error *e)
{
    struct iovec iov = {buf, len};
    uint64_t done = 0;
    if (off > (uint64_t)INT64_MAX - len)
        return vub_fail(e, VUB_R_SYS_CALL, off, EOVERFLOW);
    enum vub_err err = vub_sys_xfer(fd, false, (int64_t)off, &iov, 1, NULL, NULL, &done, e);
    if (err == VUB_OK)
        memset((uint8_t *)buf + done, 0, len - (size_t)done);
    return err;
}

static enum vub_err vub_sys_fdatasync(int fd)
{
    int rc;
    do {
        rc = fdatasync(fd);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? VUB_OK : VUB_E_IO;
}

/* Deallocates (punch) or zeroes a byte range of a file; false with errno
 * EOPNOTSUPP when the file system can do neither. */
static bool vub_sys_fallocate(int fd, bool punch, uint64_t off, uint64_t len)
{
    int mode = (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE;
    if (fallocate(fd, mode, (off_t)off, (off_t)len) == 0)
        return true;
    if (errno == ENOSYS)
        errno = EOPNOTSUPP;
    return false;
}

/* The alignment O_DIRECT wants of fd: of buffer addresses and lengths
 * (*mem_bytes) and of file offsets (*offset_bytes), from statx
 * STATX_DIOALIGN (Linux 6.1). A kernel or file system that does not say
 * gets the page size for memory and 512 for offsets, the usual logical
 * block. False if fd cannot do direct I/O at all. */
static bool vub_sys_dio_align(int fd, uint32_t *mem_bytes, uint32_t *offset_bytes)
{
    struct statx sx;
    *mem_bytes = (uint32_t)sysconf(_SC_PAGESIZE);
    *offset_bytes = 512;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) != 0 || !(sx.stx_mask & STATX_DIOALIGN))
        return true;
    if (sx.stx_dio_mem_align == 0 || sx.stx_dio_offset_align == 0)
        return false; /* the file system says: no direct I/O here */
    *mem_bytes = sx.stx_dio_mem_align;
    *offset_bytes = sx.stx_dio_offset_align;
    return true;
}

/* A read that takes only what the page cache holds (RWF_NOWAIT): true if
 * all `bytes` were there and are now in the buffers; false if any would
 * have to wait for the device (or the kernel cannot say), then nothing is
 * to be trusted and the read goes the slow way. */
static bool vub_sys_read_cached(int fd, const struct iovec *iov, unsigned count, uint64_t off, uint64_t bytes)
{
    if (count > IOV_MAX || off > (uint64_t)INT64_MAX)
        return false;
    ssize_t n;
    do {
        n = preadv2(fd, iov, (int)count, (off_t)off, RWF_NOWAIT);
    } while (n < 0 && errno == EINTR);
    return n >= 0 && (uint64_t)n == bytes;
}

/* True if fd's file lives in memory (tmpfs, ramfs): reading it never waits
 * for a device. tmpfs takes no RWF_NOWAIT (EOPNOTSUPP), so this is how a
 * read of it is known to be only a copy. */
static bool vub_sys_in_memory(int fd)
{
    struct statfs sf;
    return fstatfs(fd, &sf) == 0 && (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC);
}

/* Page-aligned memory that O_DIRECT accepts whatever the file system asks
 * (the page size is the largest dio_mem_align Linux reports); NULL on
 * failure. Freed with vub_sys_unmap(). */
static void *vub_sys_alloc_aligned(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* ---- io_uring (Linux 5.1; "io_uring_setup(2)", "io_uring_enter(2)") ----
 *
 * Two rings shared with the kernel, mapped from the ring fd: we fill
 * submission queue entries (SQEs) and move the SQ tail, the kernel posts
 * completion queue entries (CQEs) and moves the CQ tail, and each side
 * moves the head of the ring it consumes. One io_uring_enter() call submits
 * every SQE filled since the last; waiting for completions is poll() on
 * the ring fd, which is readable while a CQE is waiting. No liburing: the
 * three system calls and <linux/io_uring.h> are the whole interface.
 *
 * Format notes:
 *  - The SQ ring holds indexes into the SQE array, not SQEs; vub keeps
 *    them the identity (slot i names SQE i), written once at setup.
 *  - Heads and tails are free-running 32-bit counters; the slot is
 *    counter & mask. The kernel's tails are read with acquire (the CQE
 *    was written before the tail), ours are written with release (the SQE
 *    is complete before the kernel can see the new tail).
 *  - With IORING_FEAT_SINGLE_MMAP (Linux 5.4) both rings are one mapping;
 *    older kernels map them separately at their own offsets.
 *  - CQSIZE asks for a completion ring as big as the requests we keep in
 *    flight, so completions never overflow it.
 *  - A completion often needs the submitting thread to pass through the
 *    kernel before its CQE is posted (task work): one asleep in poll() is
 *    woken for it, one busy polling in user space is not. COOP_TASKRUN
 *    with TASKRUN_FLAG (Linux 5.19) makes the kernel say so in the SQ
 *    ring's flags (IORING_SQ_TASKRUN), and only then does a spinning
 *    reaper enter the kernel; older kernels get an enter whenever requests
 *    are in flight and no CQE is visible. */

struct vub_uring {
    int fd;                       /* the ring; -1 when not set up */
    unsigned sq_entries;          /* SQEs the kernel gave us */
    void *sq_map, *cq_map;        /* the ring mappings (the same with SINGLE_MMAP) */
    size_t sq_map_bytes, cq_map_bytes;
    struct io_uring_sqe *sqes;    /* the SQE array, its own mapping */
    size_t sqes_bytes;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_cqe *cqes;
    unsigned *sq_flags;           /* the kernel's: IORING_SQ_TASKRUN */
    bool taskrun_flag;            /* ... which it keeps (COOP_TASKRUN | TASKRUN_FLAG taken) */
    unsigned sq_filled;           /* our SQ tail: SQEs filled, published at submit */
    unsigned sq_unsubmitted;      /* filled and not yet handed to io_uring_enter */
};

static unsigned vub_uring_load(const unsigned *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void vub_uring_store(unsigned *p, unsigned v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static void vub_uring_exit(struct vub_uring *u)
{
    if (u->sqes)
        munmap(u->sqes, u->sqes_bytes);
    if (u->cq_map && u->cq_map != u->sq_map)
        munmap(u->cq_map, u->cq_map_bytes);
    if (u->sq_map)
        munmap(u->sq_map, u->sq_map_bytes);
    vub_sys_close(&u->fd);
    *u = (struct vub_uring){.fd = -1};
}

static void *vub_uring_map(int fd, size_t len, uint64_t off)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, (off_t)off);
    return p == MAP_FAILED ? NULL : p;
}

/* Sets up a ring for `entries` requests in flight (rounded up to a power
 * of two by the kernel). 0, or an errno: ENOSYS (no io_uring in this
 * kernel), EPERM (kernel.io_uring_disabled, a seccomp filter), ENOMEM. */
static int vub_uring_init(struct vub_uring *u, unsigned entries)
{
    const unsigned taskrun = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE | taskrun, .cq_entries = entries};
    *u = (struct vub_uring){.fd = -1};
    int fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    if (fd < 0 && errno == EINVAL) { /* a kernel before 5.19 */
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE, .cq_entries = entries};
        fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    }
    if (fd < 0)
        return errno;
    u->taskrun_flag = (p.flags & taskrun) == taskrun;
    u->fd = fd;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    u->sq_entries = p.sq_entries;
    u->sq_map_bytes = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    u->cq_map_bytes = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP)
        u->sq_map_bytes = u->cq_map_bytes = VUB_MAX(u->sq_map_bytes, u->cq_map_bytes);
    u->sq_map = vub_uring_map(fd, u->sq_map_bytes, IORING_OFF_SQ_RING);
    u->cq_map = !u->sq_map || (p.features & IORING_FEAT_SINGLE_MMAP)
                    ? u->sq_map
                    : vub_uring_map(fd, u->cq_map_bytes, IORING_OFF_CQ_RING);
    u->sqes_bytes = p.sq_entries * sizeof(struct io_uring_sqe);
    u->sqes = u->cq_map ? vub_uring_map(fd, u->sqes_bytes, IORING_OFF_SQES) : NULL;
    if (!u->sqes) {
        int err = errno;
        vub_uring_exit(u);
        return err;
    }
    uint8_t *sq = u->sq_map, *cq = u->cq_map;
    u->sq_head = (unsigned *)(void *)(sq + p.sq_off.head);
    u->sq_tail = (unsigned *)(void *)(sq + p.sq_off.tail);
    u->sq_mask = (unsigned *)(void *)(sq + p.sq_off.ring_mask);
    u->sq_array = (unsigned *)(void *)(sq + p.sq_off.array);
    u->sq_flags = (unsigned *)(void *)(sq + p.sq_off.flags);
    u->cq_head = (unsigned *)(void *)(cq + p.cq_off.head);
    u->cq_tail = (unsigned *)(void *)(cq + p.cq_off.tail);
    u->cq_mask = (unsigned *)(void *)(cq + p.cq_off.ring_mask);
    u->cqes = (struct io_uring_cqe *)(void *)(cq + p.cq_off.cqes);
    for (unsigned i = 0; i < p.sq_entries; i++)
        u->sq_array[i] = i;
    u->sq_filled = *u->sq_tail;
    return 0;
}

/* Whether vub_uring_sqe() has an SQE to give. */
static bool vub_uring_sq_room(const struct vub_uring *u)
{
    return u->sq_filled - vub_uring_load(u->sq_head) < u->sq_entries;
}

/* The next free SQE, zeroed, or NULL when the SQ is full (submit first). */
static struct io_uring_sqe *vub_uring_sqe(struct vub_uring *u)
{
    if (!vub_uring_sq_room(u))
        return NULL;
    struct io_uring_sqe *sqe = &u->sqes[u->sq_filled & *u->sq_mask];
    memset(sqe, 0, sizeof *sqe);
    u->sq_filled++;
    u->sq_unsubmitted++;
    return sqe;
}

/* Hands every filled SQE to the kernel and, with wait, blocks until at
 * least one completion is posted. 0 or an errno (EBUSY/EAGAIN: the kernel
 * is short of resources, try again after reaping). */
static int vub_uring_enter(struct vub_uring *u, bool wait)
{
    vub_uring_store(u->sq_tail, u->sq_filled);
    while (u->sq_unsubmitted > 0 || wait) {
        long n = syscall(__NR_io_uring_enter, u->fd, u->sq_unsubmitted, wait ? 1u : 0u,
                         wait ? IORING_ENTER_GETEVENTS : 0u, NULL, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        u->sq_unsubmitted -= (unsigned)n;
        wait = false;
    }
    return 0;
}

/* Lets completions that wait for this thread's pass through the kernel be
 * posted (see the format notes); a system call only when there are some,
 * or, on kernels that cannot say, when none is visible. */
static void vub_uring_run_tasks(struct vub_uring *u)
{
    bool pending = u->taskrun_flag ? (__atomic_load_n(u->sq_flags, __ATOMIC_RELAXED) & IORING_SQ_TASKRUN) != 0
                                   : *u->cq_head == vub_uring_load(u->cq_tail);
    if (pending)
        syscall(__NR_io_uring_enter, u->fd, 0u, 0u, IORING_ENTER_GETEVENTS, NULL, 0);
}

/* Takes the oldest completion: its user_data and result (bytes moved, or
 * -errno). False when none is waiting. */
static bool vub_uring_reap(struct vub_uring *u, uint64_t *user_data, int32_t *res)
{
    unsigned head = *u->cq_head;
    if (head == vub_uring_load(u->cq_tail))
        return false;
    const struct io_uring_cqe *cqe = &u->cqes[head & *u->cq_mask];
    *user_data = cqe->user_data;
    *res = cqe->res;
    vub_uring_store(u->cq_head, head + 1);
    return true;
}

/* Does io_uring work here? A ring is set up and one no-op goes through it.
 * 0, or the errno that says why not. */
static int vub_uring_probe(void)
{
    struct vub_uring u;
    int err = vub_uring_init(&u, 2);
    struct io_uring_sqe *sqe = err ? NULL : vub_uring_sqe(&u);
    uint64_t data;
    int32_t res;
    if (sqe) {
        sqe->opcode = IORING_OP_NOP;
        err = vub_uring_enter(&u, true);
        if (!err && (!vub_uring_reap(&u, &data, &res) || res != 0))
            err = EIO;
    }
    vub_uring_exit(&u);
    return err;
}

/* Send and receive timeouts, so a peer that stops in the middle of a
 * message cannot hang us. */
static void vub_sys_socket_timeouts(int sock, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int64_t vub_sys_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll() until deadline_ms (negative: forever), restarting on EINTR with
 * the time that is left. Returns poll's result, 0 on timeout. */
static int vub_sys_poll(struct pollfd *fds, nfds_t n, int64_t deadline_ms)
{
    for (;;) {
        int left = -1;
        if (deadline_ms >= 0) {
            int64_t d = deadline_ms - vub_sys_now_ms();
            left = d < 0 ? 0 : d > INT_MAX ? INT_MAX : (int)d;
        }
        int rc = poll(fds, n, left);
        if (rc >= 0 || errno != EINTR)
            return rc;
    }
}

/* A new memfd of len zero bytes, for memory another process maps too (the
 * name shows in /proc/PID/maps); -1 on failure (errno says why). */
static int vub_sys_memfd_new(const char *name, uint64_t len)
{
    int fd = len > (uint64_t)INT64_MAX ? -1 : memfd_create(name, MFD_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, (off_t)len) != 0)
        vub_sys_close(&fd);
    return fd;
}

/* Shared memory for a front-end: a memfd of len bytes, mapped; NULL on
 * failure (errno says why). */
static uint8_t *vub_sys_memfd(size_t len, int *fd)
{
    *fd = vub_sys_memfd_new("vub-client", len);
    if (*fd < 0)
        return NULL;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

static int vub_sys_eventfd(void)
{
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

/* A connected pair of unix stream sockets; false on failure (errno). */
static bool vub_sys_socketpair(int sv[2])
{
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0;
}

/* A connected unix stream socket, or -1 (errno says why). */
static int vub_sys_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        vub_sys_close(&fd);
    return fd;
}

/* ======================================================================== *
 * 3. vhost-user wire format  (vhost-user.rst "Message Specification")
 *
 * Every message is a 12-byte header followed by `size` payload bytes, in the
 * host's byte order (both ends run on one host), with file descriptors as
 * SCM_RIGHTS ancillary data. The structs below hold wire fields only.
 * ======================================================================== */

/* Request codes, one row each: "Front-end message types". */
#define VUB_VU_REQUESTS(X) \
    X(NONE, 0) X(GET_FEATURES, 1) X(SET_FEATURES, 2) X(SET_OWNER, 3) X(RESET_OWNER, 4) \
    X(SET_MEM_TABLE, 5) X(SET_LOG_BASE, 6) X(SET_LOG_FD, 7) X(SET_VRING_NUM, 8) \
    X(SET_VRING_ADDR, 9) X(SET_VRING_BASE, 10) X(GET_VRING_BASE, 11) X(SET_VRING_KICK, 12) \
    X(SET_VRING_CALL, 13) X(SET_VRING_ERR, 14) X(GET_PROTOCOL_FEATURES, 15) \
    X(SET_PROTOCOL_FEATURES, 16) X(GET_QUEUE_NUM, 17) X(SET_VRING_ENABLE, 18) X(SEND_RARP, 19) \
    X(NET_SET_MTU, 20) X(SET_BACKEND_REQ_FD, 21) X(IOTLB_MSG, 22) X(SET_VRING_ENDIAN, 23) \
    X(GET_CONFIG, 24) X(SET_CONFIG, 25) X(CREATE_CRYPTO_SESSION, 26) X(CLOSE_CRYPTO_SESSION, 27) \
    X(POSTCOPY_ADVISE, 28) X(POSTCOPY_LISTEN, 29) X(POSTCOPY_END, 30) X(GET_INFLIGHT_FD, 31) \
    X(SET_INFLIGHT_FD, 32) X(GPU_SET_SOCKET, 33) X(RESET_DEVICE, 34) X(VRING_KICK, 35) \
    X(GET_MAX_MEM_SLOTS, 36) X(ADD_MEM_REG, 37) X(REM_MEM_REG, 38) X(SET_STATUS, 39) \
    X(GET_STATUS, 40)

enum vub_vu_request {
#define VUB_VU_REQUEST_ENUM(name, code) VHOST_USER_##name = code,
    VUB_VU_REQUESTS(VUB_VU_REQUEST_ENUM)
#undef VUB_VU_REQUEST_ENUM
    VHOST_USER_REQUEST_COUNT, /* one past the last request vub knows */
};

static const char *const vub_vu_request_names[VHOST_USER_REQUEST_COUNT] = {
#define VUB_VU_REQUEST_NAME(name, code) [code] = #name,
    VUB_VU_REQUESTS(VUB_VU_REQUEST_NAME)
#undef VUB_VU_REQUEST_NAME
};

/* Requests the back-end sends on the channel SET_BACKEND_REQ_FD gives it
 * ("Back-end message types"); the front-end answers them there. vub sends
 * only this one. */
enum vub_vu_backend_request {
    VHOST_USER_BACKEND_CONFIG_CHANGE_MSG = 2,
};

const char *vub_vu_request_name(uint32_t request)
{
    if (request < VHOST_USER_REQUEST_COUNT && vub_vu_request_names[request])
        return vub_vu_request_names[request];
    return "unknown request";
}

/* Header "flags": bits 0-1 version, bit 2 reply, bit 3 need-reply. */
#define VHOST_USER_VERSION 0x1u
#define VHOST_USER_VERSION_MASK 0x3u
#define VHOST_USER_REPLY_MASK (1u << 2)
#define VHOST_USER_NEED_REPLY_MASK (1u << 3)
/* [VU-REPLY-FLAGS] a back-end's reply carries version 1 and REPLY: 0x5. */
#define VHOST_USER_REPLY_FLAGS (VHOST_USER_VERSION | VHOST_USER_REPLY_MASK)

/* SET_VRING_KICK/CALL/ERR u64: queue index in bits 0-7, bit 8 "no fd". */
#define VHOST_USER_VRING_IDX_MASK 0xffu
#define VHOST_USER_VRING_NOFD_MASK (1u << 8)

struct vub_vu_header {
    uint32_t request; /* enum vub_vu_request */
    uint32_t flags;   /* version, REPLY, NEED_REPLY */
    uint32_t size;    /* payload bytes that follow */
};

struct vub_vu_vring_state {
    uint32_t index; /* virtqueue index */
    uint32_t num;   /* ring size, base index or enable flag, per request */
};

struct vub_vu_vring_addr {
    uint32_t index;       /* virtqueue index */
    uint32_t flags;       /* bit 0: log used-ring writes (VHOST_VRING_F_LOG) */
    uint64_t desc_uaddr;  /* descriptor table, front-end virtual address */
    uint64_t used_uaddr;  /* used ring (packed: device event area) - before avail! */
    uint64_t avail_uaddr; /* available ring (packed: driver event area) */
    uint64_t log_gpa;     /* where to log used-ring writes, guest physical */
};

struct vub_vu_mem_region {
    uint64_t guest_addr;  /* guest physical address of the first byte */
    uint64_t size;        /* bytes */
    uint64_t user_addr;   /* front-end virtual address of the first byte */
    uint64_t mmap_offset; /* offset of the first byte in the fd */
};

struct vub_vu_mem_table {
    uint32_t nregions; /* regions that follow; one fd each */
    uint32_t padding;
    struct vub_vu_mem_region regions[VUB_VU_MAX_FDS];
};

struct vub_vu_mem_single {
    uint64_t padding;
    struct vub_vu_mem_region region;
};

#define VUB_VU_CONFIG_MAX 256 /* "config space ... at most 256 bytes" */

struct vub_vu_config {
    uint32_t offset; /* into the device-specific config space */
    uint32_t size;   /* bytes of data[] used */
    uint32_t flags;  /* SET_CONFIG: 0 = writable fields, 1 = migration */
    uint8_t data[VUB_VU_CONFIG_MAX];
};

/* The inflight description of GET_INFLIGHT_FD and SET_INFLIGHT_FD. */
struct vub_vu_inflight {
    uint64_t mmap_size;   /* bytes of the tracking area; 0 in a reply: no area */
    uint64_t mmap_offset; /* where the area starts in the fd */
    uint16_t num_queues;  /* queue regions in the area */
    uint16_t queue_size;  /* entries in each region */
    uint32_t padding;     /* C's tail padding: QEMU and rust-vmm send 24 bytes */
};

_Static_assert(sizeof(struct vub_vu_header) == 12, "vhost-user header is 12 bytes");
_Static_assert(sizeof(struct vub_vu_inflight) == 24, "inflight description is 24 bytes");
_Static_assert(sizeof(struct vub_vu_vring_state) == 8, "vring state is 8 bytes");
_Static_assert(sizeof(struct vub_vu_vring_addr) == 40, "vring address is 40 bytes");
_Static_assert(sizeof(struct vub_vu_mem_region) == 32, "memory region is 32 bytes");
_Static_assert(sizeof(struct vub_vu_mem_table) == 8 + 8 * 32, "memory table is 8 + 32n bytes");
_Static_assert(sizeof(struct vub_vu_mem_single) == 40, "single region is 40 bytes");
_Static_assert(sizeof(struct vub_vu_config) == 12 + 256, "config is 12 + size bytes");

/* A message as one side holds it: the wire header and payload, and the
 * descriptors that came with it (host state, not wire format). */
struct vub_msg {
    struct vub_vu_header hdr;
    union {
        uint64_t u64;
        struct vub_vu_vring_state state;
        struct vub_vu_vring_addr addr;
        struct vub_vu_mem_table mem;
        struct vub_vu_mem_single single;
        struct vub_vu_config config;
        struct vub_vu_inflight inflight;
        uint8_t bytes[sizeof(struct vub_vu_config)];
    } payload;
    int fds[VUB_VU_MAX_FDS]; /* received descriptors; -1 once taken or closed */
    unsigned fd_count;
};

#define VUB_VU_MAX_PAYLOAD (sizeof(((struct vub_msg *)0)->payload))

static void vub_msg_close_fds(struct vub_msg *m)
{
    for (unsigned i = 0; i < m->fd_count; i++)
        vub_sys_close(&m->fds[i]);
    m->fd_count = 0;
}

/* Reads exactly len bytes of a message. [VU-STREAM] a message may arrive
 * in pieces: the transfer loop goes on until it has all of it. [VU-FDS]
 * fds may come with the header or the payload; more than VUB_VU_MAX_FDS, or a truncated control
 * message, is a protocol error. [VU-CLOSED] A clean EOF before the first byte is
 * VUB_E_CLOSED; EOF inside a message is a protocol error. */
static enum vub_err vub_vu_recv_exact(int sock, void *buf, size_t len, struct vub_msg *m, bool first,
                                      struct vub_error *e)
{
    struct iovec iov = {buf, len};
    uint64_t done = 0;
    enum vub_err err = vub_sys_xfer(sock, false, -1, &iov, 1, m->fds, &m->fd_count, &done, e);
    if (err == VUB_OK && done < len)
        return first && done == 0 ? vub_fail(e, VUB_R_VU_CLOSED, 0, 0) : vub_fail(e, VUB_R_VU_MSG_CUT, done, 0);
    return err;
}

/* Receives one whole message. [VU-HDR-FLAGS] only the version, REPLY and
 * NEED_REPLY bits mean anything; the others are ignored here (the back-end
 * refuses them in requests). [VU-HDR-VERSION] [VU-MSG-SIZE]: a header with
 * another version or a payload larger than any request vub knows ends the
 * session, since the stream cannot be resynchronised safely. On any error
 * every descriptor received is closed. */
static enum vub_err vub_vu_recv(int sock, struct vub_msg *m, struct vub_error *e)
{
    m->fd_count = 0;
    enum vub_err err = vub_vu_recv_exact(sock, &m->hdr, sizeof m->hdr, m, true, e);
    if (err == VUB_OK && (m->hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION)
        err = vub_fail(e, VUB_R_VU_HDR_VERSION, m->hdr.request, m->hdr.flags & VHOST_USER_VERSION_MASK);
    if (err == VUB_OK && m->hdr.size > VUB_VU_MAX_PAYLOAD)
        err = vub_fail(e, VUB_R_VU_MSG_SIZE, m->hdr.request, m->hdr.size);
    if (err == VUB_OK && m->hdr.size > 0)
        err = vub_vu_recv_exact(sock, &m->payload, m->hdr.size, m, false, e);
    if (err != VUB_OK)
        vub_msg_close_fds(m);
    return err;
}

/* Sends a header, its payload and optional descriptors as one message. */
static enum vub_err vub_vu_send(int sock, const struct vub_vu_header *hdr, const void *payload,
                                const int *fds, unsigned fd_count)
{
    struct iovec iov[2] = {{(void *)(uintptr_t)hdr, sizeof *hdr}, {(void *)(uintptr_t)payload, hdr->size}};
    int send[VUB_VU_MAX_FDS];
    uint64_t done;
    if (fd_count > VUB_VU_MAX_FDS)
        return VUB_E_INVAL;
    if (fd_count)
        memcpy(send, fds, sizeof(int) * fd_count);
    return vub_sys_xfer(sock, true, -1, iov, hdr->size ? 2 : 1, send, &fd_count, &done, NULL);
}

/* ======================================================================== *
 * 4. Guest memory  (vhost-user.rst "Memory access", SET_MEM_TABLE,
 *    ADD_MEM_REG, REM_MEM_REG)
 *
 * The front-end shares guest RAM as file descriptors. Each region is known
 * by three addresses: its guest physical address (descriptors and indirect
 * tables use these), the front-end's virtual address (SET_VRING_ADDR uses
 * these) and our own mapping. Every guest address vub touches goes through
 * vub_mem_find(): it refuses unmapped bytes, wrapping ranges and lengths
 * past a region's end, and tells the caller how much is contiguous.
 * ======================================================================== */

struct vub_mem_region {
    uint64_t guest_addr; /* guest physical address of the first byte */
    uint64_t user_addr;  /* front-end virtual address of the first byte */
    uint64_t size;       /* bytes */
    uint8_t *host;       /* our address of the first byte */
    void *map_base;      /* what munmap() needs */
    size_t map_len;
};

struct vub_mem {
    struct vub_mem_region regions[VUB_MAX_MEM_REGIONS];
    unsigned count;
};

enum vub_addr_space { VUB_GPA, VUB_UVA };

/* [MEM-XLATE] The one translator: finds the region holding addr in the given
 * address space, returns our pointer to it and, in *contig, how many bytes
 * from addr to the region's end. NULL if addr is not mapped. */
static uint8_t *vub_mem_find(const struct vub_mem *mem, enum vub_addr_space space, uint64_t addr,
                             uint64_t *contig)
{
    for (unsigned i = 0; i < mem->count; i++) {
        const struct vub_mem_region *r = &mem->regions[i];
        uint64_t start = space == VUB_GPA ? r->guest_addr : r->user_addr;
        if (addr >= start && addr - start < r->size) {
            *contig = r->size - (addr - start);
            return r->host + (addr - start);
        }
    }
    return NULL;
}

/* A range that must be contiguous in one region (ring areas): NULL unless
 * all of [addr, addr + len) is mapped in a single region. */
static uint8_t *vub_mem_range(const struct vub_mem *mem, enum vub_addr_space space, uint64_t addr,
                              uint64_t len)
{
    uint64_t contig = 0;
    uint8_t *p = vub_mem_find(mem, space, addr, &contig);
    return p && len <= contig ? p : NULL;
}

/* The one guest-address walker: covers guest-physical [gpa, gpa + len) with
 * iovecs appended to iov[*count..cap), or with iov NULL only checks that
 * every byte is mapped. [MEM-STRADDLE] a buffer may span adjacent regions:
 * it becomes one iovec per region. [MEM-WRAP] a range may not wrap.
 * VUB_E_RANGE (no reason) when the iovec array is full. */
static enum vub_err vub_mem_walk(const struct vub_mem *mem, uint64_t gpa, uint64_t len, struct iovec *iov,
                                 unsigned cap, unsigned *count, struct vub_error *e)
{
    uint64_t end, at = gpa;
    if (!vub_add_ok(gpa, len, &end))
        return vub_fail(e, VUB_R_MEM_WRAP, gpa, len);
    while (at < end) {
        uint64_t contig = 0;
        uint8_t *p = vub_mem_find(mem, VUB_GPA, at, &contig);
        if (!p)
            return vub_fail(e, VUB_R_MEM_XLATE, gpa, len);
        uint64_t step = VUB_MIN(end - at, contig);
        if (iov && *count >= cap)
            return VUB_E_RANGE;
        if (iov)
            iov[(*count)++] = (struct iovec){p, (size_t)step};
        at += step;
    }
    return VUB_OK;
}

/* Copies a descriptor (len <= 16) out of guest memory, across region
 * boundaries if need be. */
static enum vub_err vub_mem_read(const struct vub_mem *mem, uint64_t gpa, uint8_t *dst, size_t len,
                                 struct vub_error *e)
{
    struct iovec pieces[16];
    unsigned n = 0;
    enum vub_err err = vub_mem_walk(mem, gpa, len, pieces, 16, &n, e);
    struct vub_iov_cursor c = {pieces, n, 0, 0};
    if (err == VUB_OK)
        vub_iov_copy(&c, dst, NULL, len);
    return err;
}

static bool vub_ranges_overlap(uint64_t a, uint64_t a_len, uint64_t b, uint64_t b_len)
{
    return a < b + b_len && b < a + a_len; /* callers checked both ends for wrap */
}

/* [MEM-REGION-CHECK] A region is usable if it is non-empty, no address of it
 * wraps, and it overlaps no region already in the table in either space. */
static bool vub_mem_region_ok(const struct vub_mem *mem, const struct vub_vu_mem_region *w)
{
    uint64_t end;
    if (w->size == 0 || !vub_add_ok(w->guest_addr, w->size, &end) || !vub_add_ok(w->user_addr, w->size, &end) ||
        !vub_add_ok(w->mmap_offset, w->size, &end))
        return false;
    for (unsigned i = 0; i < mem->count; i++) {
        const struct vub_mem_region *r = &mem->regions[i];
        if (vub_ranges_overlap(w->guest_addr, w->size, r->guest_addr, r->size) ||
            vub_ranges_overlap(w->user_addr, w->size, r->user_addr, r->size))
            return false;
    }
    return true;
}

/* Checks and maps one region. The fd stays the caller's: a mapping does not
 * need its descriptor once made. */
static enum vub_err vub_mem_add(struct vub_mem *mem, const struct vub_vu_mem_region *w, int fd,
                                struct vub_error *e)
{
    if (mem->count >= VUB_MAX_MEM_REGIONS)
        return vub_fail(e, VUB_R_MEM_SLOTS, VUB_MAX_MEM_REGIONS, 0);
    if (!vub_mem_region_ok(mem, w))
        return vub_fail(e, VUB_R_MEM_REGION_CHECK, w->guest_addr, w->size);
    /* [MEM-FILE-SIZE] mmap succeeds past the end of a file, but touching
     * those pages raises SIGBUS: the region must lie inside the file. */
    uint64_t file_size = 0;
    if (!vub_sys_stat(fd, false, &file_size, NULL, NULL) || !vub_range_ok(w->mmap_offset, w->size, file_size))
        return vub_fail(e, VUB_R_MEM_FILE_SIZE, w->guest_addr, file_size);
    struct vub_mem_region *r = &mem->regions[mem->count];
    r->host = vub_sys_map(fd, w->mmap_offset, w->size, &r->map_base, &r->map_len);
    if (!r->host)
        return vub_fail(e, VUB_R_MEM_MAP, w->guest_addr, (uint64_t)errno);
    r->guest_addr = w->guest_addr;
    r->user_addr = w->user_addr;
    r->size = w->size;
    mem->count++;
    return VUB_OK;
}

/* [MEM-REM] REM_MEM_REG names a region by guest address, user address and
 * size; mmap_offset is not compared (vhost-user.rst REM_MEM_REG). */
static bool vub_mem_remove(struct vub_mem *mem, const struct vub_vu_mem_region *w)
{
    for (unsigned i = 0; i < mem->count; i++) {
        struct vub_mem_region *r = &mem->regions[i];
        if (r->guest_addr == w->guest_addr && r->user_addr == w->user_addr && r->size == w->size) {
            vub_sys_unmap(r->map_base, r->map_len);
            *r = mem->regions[--mem->count]; /* the last region fills the hole */
            memset(&mem->regions[mem->count], 0, sizeof *r);
            return true;
        }
    }
    return false;
}

static void vub_mem_clear(struct vub_mem *mem)
{
    for (unsigned i = 0; i < mem->count; i++)
        vub_sys_unmap(mem->regions[i].map_base, mem->regions[i].map_len);
    memset(mem, 0, sizeof *mem);
}

/* ======================================================================== *
 * 5. Split virtqueue, device side  (VIRTIO 1.x "Split Virtqueues") [VQ-SPLIT]
 *
 * Three areas in guest memory, all little-endian:
 *   descriptor table  16 bytes x size: le64 addr; le32 len; le16 flags; le16 next
 *   available ring    le16 flags; le16 idx; le16 ring[size]; le16 used_event
 *   used ring         le16 flags; le16 idx; {le32 id; le32 len}[size]; le16 avail_event
 * Indexes are free-running 16-bit counters; the slot is index % size.
 *
 * The device takes heads from the available ring, walks each chain into
 * iovecs (copying every descriptor out of guest memory once and checking
 * the copy), and returns heads through the used ring.
 * ======================================================================== */

#define VIRTQ_DESC_F_NEXT 1u
#define VIRTQ_DESC_F_WRITE 2u
#define VIRTQ_DESC_F_INDIRECT 4u
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u
#define VIRTQ_USED_F_NO_NOTIFY 1u
#define VIRTQ_DESC_BYTES 16u

/* Area sizes and alignments ("Virtqueue Part Sizes" table). */
static uint64_t vub_split_desc_bytes(uint16_t size) { return (uint64_t)VIRTQ_DESC_BYTES * size; }
static uint64_t vub_split_avail_bytes(uint16_t size) { return 6 + 2 * (uint64_t)size; }
static uint64_t vub_split_used_bytes(uint16_t size) { return 6 + 8 * (uint64_t)size; }

/* One split descriptor, decoded from its 16 wire bytes. The driver side
 * also uses it to list a request's buffers (next unused there). */
struct vub_desc {
    uint64_t addr;  /* guest physical address of the buffer */
    uint32_t len;   /* buffer bytes (indirect: table bytes) */
    uint16_t flags; /* NEXT, WRITE, INDIRECT */
    uint16_t next;  /* next descriptor index when NEXT is set */
};

/* A request as the device sees it once its chain is walked: iovecs over
 * guest memory, device-readable ones first, then device-writable ones. */
struct vub_chain {
    uint16_t head;           /* id returned in the used ring */
    uint16_t slots;          /* ring slots the chain used (packed rings) */
    struct iovec *iov;       /* readable [0, readable), writable [readable, +writable) */
    unsigned readable;       /* iovec counts */
    unsigned writable;
    uint64_t readable_bytes; /* byte totals (64-bit: a chain can exceed 4 GiB) */
    uint64_t writable_bytes;
    bool too_many_segments;  /* well-formed, but more iovecs than vub keeps */
    bool writable_seen;      /* a writable descriptor came, even an empty or dropped one */
    uint32_t descriptors;    /* buffer descriptors walked (an INDIRECT one not counted) */
    uint8_t *last_writable;  /* last byte of the last non-empty writable buffer: the
                                status byte, found even when the iovecs ran out */
    uint16_t inflight_head;  /* packed, tracked: the region entry heading its copy */
    uint16_t inflight_last;  /* ... and the entry of its last descriptor */
};

/* Host memory a ring needs, allocated when its size is set and kept for
 * the device's lifetime (a reset does not free it). */
struct vub_vring_scratch {
    struct iovec *iov;    /* one chain's iovecs; iov_cap entries */
    unsigned iov_cap;
    struct iovec *chain;  /* where a pop puts its chain's iovecs: iov, or a request's own */
    unsigned chain_cap;   /* ... and how many fit there */
    uint16_t *batch_ids;  /* packed: ids of the batch not yet published; iov_cap entries */
    uint16_t *batch_heads; /* tracked: split heads / packed head entries of that batch */
    uint16_t *batch_lasts; /* tracked, packed: the last entry of each */
    uint8_t *ids_pending; /* packed: bitmap of 65536 ids taken and not yet published */
    struct vub_inflight_order *inflight_order; /* [inflight_cap] heads to resubmit */
    uint16_t *inflight_next; /* [inflight_cap] packed: our copy of the entries' next links */
    uint8_t *inflight_seen;  /* [inflight_cap / 8 + 1] packed: entries met while checking */
    unsigned inflight_cap;   /* region entries the three arrays hold */
};

/* One request the region says the driver still waits for. */
struct vub_inflight_order {
    uint64_t counter; /* when it was first taken: resubmission goes by this */
    uint16_t entry;   /* split: the head; packed: the entry heading its copy */
    uint16_t num;     /* packed: descriptors (ring slots) in the copy */
    uint16_t last;    /* packed: the entry of its last descriptor */
};

/* Host state of a ring's inflight tracking (vhost-user.rst "Inflight I/O
 * tracking"); the region itself is the spec's, below and in section 6. */
struct vub_vring_inflight {
    uint8_t *region;         /* this queue's region in the shared area; NULL: not tracked */
    uint16_t desc_num;       /* its entries: the queue size of SET_INFLIGHT_FD */
    bool packed;             /* laid out for packed rings */
    uint64_t counter;        /* the order number the next request taken gets */
    unsigned resubmit_count; /* requests recovered at start, in scratch.inflight_order */
    unsigned resubmit_at;    /* ... of which this many were handed out again */
    uint16_t last_batch_head; /* split: our copy of the region's field */
    uint16_t free_head;      /* packed: our copy of the region's free list head */
};

/* Device-side state of one ring. The areas are the spec's Descriptor Area,
 * Driver Area (written by the driver: split available ring, packed driver
 * event suppression) and Device Area (written by us: split used ring,
 * packed device event suppression); the positions are per layout. */
struct vub_vring {
    uint16_t size;           /* descriptors in the ring (SET_VRING_NUM) */
    bool packed_ring;        /* VIRTIO_F_RING_PACKED negotiated: which union member is live */
    bool event_idx;          /* VIRTIO_F_EVENT_IDX negotiated */
    bool indirect;           /* VIRTIO_F_INDIRECT_DESC negotiated */
    uint8_t *desc;           /* Descriptor Area; NULL until mapped */
    uint8_t *driver;         /* Driver Area */
    uint8_t *device;         /* Device Area */
    uint16_t signalled_used; /* our used position at the last notification decision */
    bool signalled_valid;    /* false until the first decision: notify then */
    struct vub_vring_inflight inflight;
    union {
        struct {
            uint16_t last_avail;     /* next available index to take (free-running) */
            uint16_t used_idx;       /* next used index to fill (free-running) */
            uint16_t published_used; /* used_idx as the driver can see it */
        } split;
        struct {
            uint16_t next_avail; /* slot of the next available descriptor */
            uint16_t next_used;  /* slot of the next used descriptor */
            bool avail_wrap;     /* driver wrap counter the next available one carries */
            bool used_wrap;      /* our wrap counter for the next used one */
            uint16_t batch_slot; /* slot of the unpublished batch's first used descriptor */
            uint16_t batch_flags; /* its flags word, stored last */
            uint16_t batch_count; /* used descriptors in the batch */
        } packed;
    };
    struct vub_vring_scratch scratch;
};

/* Chooses the layout and puts the ring at its start: split indexes 0,
 * packed slots 0 with "wrap counters ... initialized to 1". */
static void vub_vring_set_layout(struct vub_vring *vr, bool packed)
{
    vr->packed_ring = packed;
    memset(&vr->packed, 0, sizeof vr->packed);
    memset(&vr->split, 0, sizeof vr->split);
    if (packed)
        vr->packed.avail_wrap = vr->packed.used_wrap = true;
}

/* The index the driver will write next into the available ring. Acquire:
 * pairs with the driver's write barrier between filling ring[] and
 * publishing idx, so the slots we read next are the ones it wrote. */
static uint16_t vub_split_avail_idx(const struct vub_vring *vr)
{
    return vub_ring_load16(vr->driver + 2, memory_order_acquire);
}

/* Adds one data buffer to the chain. [VQ-ZERO-LEN] a zero-length buffer is
 * legal and carries nothing. [VQ-SPLIT-ORDER] the driver puts
 * device-readable buffers before device-writable ones ("Message Framing");
 * a readable one after a writable one is a broken chain. */
static enum vub_err vub_chain_add(struct vub_chain *c, const struct vub_mem *mem, uint64_t addr, uint32_t len,
                                  bool writable, unsigned cap, struct vub_error *e)
{
    if (!writable && c->writable_seen)
        return vub_fail(e, VUB_R_VQ_SPLIT_ORDER, c->head, 0);
    unsigned count = c->readable + c->writable;
    enum vub_err err = vub_mem_walk(mem, addr, len, c->iov, cap, &count, e);
    if (err == VUB_E_RANGE) {
        c->too_many_segments = true; /* keep walking: the chain must still be checked */
        count = c->readable + c->writable;
        err = vub_mem_walk(mem, addr, len, NULL, 0, NULL, e);
    }
    if (err != VUB_OK)
        return err;
    c->descriptors++;
    if (writable) {
        uint64_t contig;
        c->writable_seen = true;
        c->writable = count - c->readable;
        c->writable_bytes += len;
        if (len > 0)
            c->last_writable = vub_mem_find(mem, VUB_GPA, addr + len - 1, &contig);
    } else {
        c->readable = count;
        c->readable_bytes += len;
    }
    return VUB_OK;
}

/* The one indirect-table validator and walker, for both layouts ("Indirect
 * Descriptors"). [VQ-INDIRECT] only with INDIRECT_DESC negotiated, the
 * whole table mapped. [VQ-INDIRECT-LEN] len is a non-zero multiple of 16, at
 * most VUB_MAX_QUEUE_SIZE descriptors, all in guest memory. Split tables
 * are chains: [VQ-INDIRECT-NESTED] no INDIRECT inside, [VQ-SPLIT-LOOP]
 * next stays in the table and the walk is no longer than the table. Packed tables are len/16 descriptors in a row, where only WRITE
 * means anything ("The VIRTQ_DESC_F_WRITE flags bit is the only valid flag
 * for descriptors in the indirect table"): [VQ-PACKED-INDIRECT-FLAGS] an
 * INDIRECT or NEXT bit there is ignored ("Others are reserved and are
 * ignored by the device"), unlike split rings, where a nested table is
 * refused. Descriptors are copied out one at a time, so a table may
 * straddle regions. */
static enum vub_err vub_walk_indirect(struct vub_chain *c, const struct vub_mem *mem, uint64_t addr,
                                      uint32_t len, bool packed, unsigned cap, struct vub_error *e)
{
    if (len == 0 || len % VIRTQ_DESC_BYTES != 0 || len / VIRTQ_DESC_BYTES > VUB_MAX_QUEUE_SIZE)
        return vub_fail(e, VUB_R_VQ_INDIRECT_LEN, len, VUB_MAX_QUEUE_SIZE);
    enum vub_err err = vub_mem_walk(mem, addr, len, NULL, 0, NULL, e);
    uint32_t entries = len / VIRTQ_DESC_BYTES, i = 0;
    for (uint32_t walked = 0; err == VUB_OK; walked++) {
        uint8_t raw[VIRTQ_DESC_BYTES];
        if (walked >= entries)
            return packed ? VUB_OK : vub_fail(e, VUB_R_VQ_SPLIT_LOOP, c->head, entries);
        if ((err = vub_mem_read(mem, addr + (uint64_t)i * VIRTQ_DESC_BYTES, raw, sizeof raw, e)) != VUB_OK)
            return err;
        /* The two layouts keep flags at different offsets: 12 split, 14 packed. */
        uint16_t flags = vub_le16(raw + (packed ? 14 : 12)), next = vub_le16(raw + 14);
        if (!packed && (flags & VIRTQ_DESC_F_INDIRECT))
            return vub_fail(e, VUB_R_VQ_INDIRECT_NESTED, c->head, 0);
        err = vub_chain_add(c, mem, vub_le64(raw), vub_le32(raw + 8), flags & VIRTQ_DESC_F_WRITE, cap, e);
        if (err != VUB_OK || (!packed && !(flags & VIRTQ_DESC_F_NEXT)))
            return err;
        if (!packed && next >= entries)
            return vub_fail(e, VUB_R_VQ_INDIRECT_TABLE_NEXT, next, entries);
        i = packed ? i + 1 : next;
    }
    return err;
}

/* Walks the chain starting at head. [VQ-SPLIT-NEXT] every next index is
 * below the ring size; [VQ-SPLIT-LOOP] a chain visits at most `size`
 * descriptors of the main table, so a loop is caught; [VQ-INDIRECT-ANYWHERE]
 * zero or more direct descriptors may be followed by one INDIRECT one (the
 * device MUST accept that, "Indirect Descriptors"); [VQ-INDIRECT-NEXT] an
 * INDIRECT descriptor with NEXT set is refused. [VQ-DESC-RO] descriptors are
 * copied out and only read: the device never writes the table. */
static enum vub_err vub_split_walk(struct vub_vring *vr, const struct vub_mem *mem, uint16_t head,
                                   struct vub_chain *c, struct vub_error *e)
{
    *c = (struct vub_chain){.head = head, .slots = 1, .iov = vr->scratch.chain};
    unsigned cap = vr->scratch.chain_cap;
    uint16_t i = head;
    for (unsigned walked = 0;; walked++) {
        if (walked >= vr->size)
            return vub_fail(e, VUB_R_VQ_SPLIT_LOOP, head, vr->size);
        const uint8_t *p = vr->desc + (size_t)i * VIRTQ_DESC_BYTES;
        struct vub_desc d = {vub_le64(p), vub_le32(p + 8), vub_le16(p + 12), vub_le16(p + 14)};
        if ((d.flags & VIRTQ_DESC_F_INDIRECT) && !vr->indirect)
            return vub_fail(e, VUB_R_VQ_INDIRECT, head, 0);
        if ((d.flags & VIRTQ_DESC_F_INDIRECT) && (d.flags & VIRTQ_DESC_F_NEXT))
            return vub_fail(e, VUB_R_VQ_INDIRECT_NEXT, i, 0);
        if (d.flags & VIRTQ_DESC_F_INDIRECT)
            return vub_walk_indirect(c, mem, d.addr, d.len, false, cap, e);
        enum vub_err err = vub_chain_add(c, mem, d.addr, d.len, d.flags & VIRTQ_DESC_F_WRITE, cap, e);
        if (err != VUB_OK || !(d.flags & VIRTQ_DESC_F_NEXT))
            return err;
        if (d.next >= vr->size)
            return vub_fail(e, VUB_R_VQ_SPLIT_NEXT, d.next, vr->size);
        i = d.next;
    }
}

/* ---- Inflight I/O tracking, split layout (vhost-user.rst "Inflight I/O
 *      tracking") ----
 *
 * The back-end creates a region of shared memory (GET_INFLIGHT_FD); the
 * front-end keeps it while the back-end dies and restarts, and hands it to
 * the next back-end (SET_INFLIGHT_FD). In it the device records which heads
 * it holds, in which order it took them, and which batch of used entries it
 * was publishing, so that the next back-end can resubmit exactly the
 * requests the driver is still waiting for, and none it already completed.
 * One region per queue, laid out as the spec's C structs in the host's byte
 * order (like every vhost-user number). During a session vub only writes
 * it; at ring start it is read, checked and acted on once.
 *
 * The order of the stores is the whole point: a back-end may die between
 * any two of them, and the next one must then find either the request
 * still marked in flight (it resubmits it) or its used entry published (it
 * does not). So every store a later recovery depends on is a release: it
 * is not moved before the stores above it (the compiler and CPU may not
 * reorder it), and a recovery reads them in the opposite order.
 *
 * Format notes:
 *  - Only heads have meaningful inflight and counter fields; `next` links
 *    the heads of the last batch of used entries, newest first, from
 *    last_batch_head. The list is never terminated: recovery walks only as
 *    many entries as the batch had (used->idx - used_idx).
 *  - used_idx lags the used ring's idx while a batch is being published;
 *    any difference means "that batch was published, clear its flags".
 *  - After recovery the next available index is used->idx plus the number
 *    of heads in flight: whatever SET_VRING_BASE said (QEMU sends used->idx
 *    after a disconnect, having lost the back-end's own position).
 *  - Version 0 is a region never used: vub initialises it at ring start. */

#define VUB_INFLIGHT_VERSION 1u
#define VUB_INFLIGHT_ALIGN 64u /* each queue region starts on a cache line */

/* DescStateSplit: one entry per descriptor-table index. */
struct vub_inflight_desc_split {
    uint8_t inflight;   /* 1 while the driver waits for this head */
    uint8_t padding[5];
    uint16_t next;      /* the head published before this one (last batch list) */
    uint64_t counter;   /* the order it was taken in (the queue's counter then) */
};

/* QueueRegionSplit: one queue's region. */
struct vub_inflight_split {
    uint64_t features;        /* region features: none are defined, so 0 */
    uint16_t version;         /* 1; 0 means never used */
    uint16_t desc_num;        /* entries in desc[]: the queue size */
    uint16_t last_batch_head; /* newest head of the last batch of used entries */
    uint16_t used_idx;        /* the used ring's idx once that batch was complete */
    struct vub_inflight_desc_split desc[]; /* by head index */
};

_Static_assert(sizeof(struct vub_inflight_desc_split) == 16, "DescStateSplit is 16 bytes");
_Static_assert(offsetof(struct vub_inflight_split, desc) == 16, "QueueRegionSplit header is 16 bytes");

/* The region is host memory in host order, shared with the front-end: it is
 * accessed as whole atomics, so neither a torn value nor a reordered store
 * can reach a later recovery. */
static void vub_infl_put8(uint8_t *p, uint8_t v, memory_order o) { atomic_store_explicit((_Atomic uint8_t *)p, v, o); }
static void vub_infl_put16(uint16_t *p, uint16_t v, memory_order o) { atomic_store_explicit((_Atomic uint16_t *)p, v, o); }
static void vub_infl_put64(uint64_t *p, uint64_t v) { atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_relaxed); }
static uint8_t vub_infl_get8(const uint8_t *p) { return atomic_load_explicit((_Atomic uint8_t *)(uintptr_t)p, memory_order_acquire); }
static uint16_t vub_infl_get16(const uint16_t *p) { return atomic_load_explicit((_Atomic uint16_t *)(uintptr_t)p, memory_order_acquire); }
static uint64_t vub_infl_get64(const uint64_t *p) { return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)p, memory_order_acquire); }

/* Bytes of one queue's region, its header and entries (16 bytes each split,
 * 32 packed), rounded up to a cache line: the spec leaves the stride between
 * regions to the back-end, which both creates the area and reads it back. */
static uint64_t vub_inflight_queue_bytes(uint16_t queue_size, bool packed)
{
    uint64_t bytes = packed ? 32 + 32 * (uint64_t)queue_size : 16 + 16 * (uint64_t)queue_size;
    return (bytes + VUB_INFLIGHT_ALIGN - 1) / VUB_INFLIGHT_ALIGN * VUB_INFLIGHT_ALIGN;
}

static struct vub_inflight_split *vub_inflight_split(const struct vub_vring *vr)
{
    return (struct vub_inflight_split *)(void *)vr->inflight.region;
}

/* The next request to hand out again, or NULL once all were. */
static const struct vub_inflight_order *vub_inflight_resubmit(struct vub_vring *vr)
{
    struct vub_vring_inflight *t = &vr->inflight;
    if (!t->region || t->resubmit_at >= t->resubmit_count)
        return NULL;
    return &vr->scratch.inflight_order[t->resubmit_at++];
}

static int vub_inflight_order_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct vub_inflight_order *)a)->counter, y = ((const struct vub_inflight_order *)b)->counter;
    return x < y ? -1 : x > y;
}

/* [INFL-ORDER] Puts the n requests found in flight in the order they were
 * first taken ("Resubmit inflight ... in order of their counter value").
 * [INFL-COUNTER] two requests with one counter have no order, and a
 * counter at UINT64_MAX leaves none for the next request: both refused. */
static enum vub_err vub_inflight_sort(struct vub_vring *vr, unsigned n, struct vub_error *e)
{
    struct vub_inflight_order *o = vr->scratch.inflight_order;
    qsort(o, n, sizeof *o, vub_inflight_order_cmp);
    for (unsigned k = 1; k < n; k++)
        if (o[k].counter == o[k - 1].counter)
            return vub_fail(e, VUB_R_INFL_COUNTER, o[k - 1].entry, o[k].entry);
    if (n > 0 && o[n - 1].counter == UINT64_MAX)
        return vub_fail(e, VUB_R_INFL_COUNTER, o[n - 1].entry, o[n - 1].entry);
    vr->inflight.counter = n > 0 ? o[n - 1].counter + 1 : 0;
    vr->inflight.resubmit_count = n;
    vr->inflight.resubmit_at = 0;
    return VUB_OK;
}

/* [INFL-HEADER] A region handed back describes this queue: version 1, no
 * features, desc_num the queue size it was made for and no smaller than
 * the ring, the layout of the ring. */
static enum vub_err vub_inflight_header_ok(const struct vub_vring *vr, const uint8_t *region, struct vub_error *e)
{
    const struct vub_inflight_split *h = (const struct vub_inflight_split *)(const void *)region;
    uint16_t version = vub_infl_get16(&h->version), desc_num = vub_infl_get16(&h->desc_num);
    if (version != VUB_INFLIGHT_VERSION || vub_infl_get64(&h->features) != 0 ||
        desc_num != vr->inflight.desc_num || desc_num < vr->size || vr->inflight.packed != vr->packed_ring)
        return vub_fail(e, VUB_R_INFL_HEADER, version, desc_num);
    return VUB_OK;
}

/* A fresh region, split: every head free, used_idx where the used ring is
 * (vub_vring_start() adds desc_num and the version). */
static void vub_inflight_split_init(struct vub_vring *vr)
{
    struct vub_inflight_split *r = vub_inflight_split(vr);
    memset(r, 0, sizeof *r + sizeof r->desc[0] * vr->inflight.desc_num);
    vub_infl_put16(&r->used_idx, vr->split.used_idx, memory_order_relaxed);
    vr->inflight.last_batch_head = 0;
}

/* [INFL-TAKE] "When receiving available buffers": the head gets the next
 * counter, then its flag. Release: the counter is in place before the flag
 * that makes it count; pairs with the acquire loads of the flag, then the
 * counter, in vub_inflight_split_recover(). */
static void vub_inflight_split_take(struct vub_vring *vr, uint16_t head)
{
    struct vub_inflight_split *r = vub_inflight_split(vr);
    vub_infl_put64(&r->desc[head].counter, vr->inflight.counter++);
    vub_infl_put8(&r->desc[head].inflight, 1, memory_order_release);
}

/* [INFL-BATCH] "When supplying used buffers", steps 1-3: the head joins the
 * last batch list. These stores are ordered before the used ring's idx by
 * the release in vub_split_publish(), which pairs with the acquire load of
 * used->idx in vub_split_start(): a recovery that sees the new idx sees the
 * list that leads to the batch. */
static void vub_inflight_split_push(struct vub_vring *vr, uint16_t head)
{
    struct vub_inflight_split *r = vub_inflight_split(vr);
    vr->scratch.batch_heads[(uint16_t)(vr->split.used_idx - vr->split.published_used)] = head;
    vub_infl_put16(&r->desc[head].next, vr->inflight.last_batch_head, memory_order_relaxed);
    vub_infl_put16(&r->last_batch_head, head, memory_order_relaxed);
    vr->inflight.last_batch_head = head;
}

/* The rest of "When supplying used buffers", once used->idx is published:
 * clear the batch's flags, then store used_idx. Release on each: the used
 * ring's idx (stored just before) is visible before a flag clears, and the
 * flags before used_idx. They pair with vub_inflight_split_recover()'s
 * acquire loads of used_idx and the flags: it compares used_idx with
 * used->idx and clears what a death in between left set. */
static void vub_inflight_split_publish(struct vub_vring *vr, uint16_t from, uint16_t to)
{
    struct vub_inflight_split *r = vub_inflight_split(vr);
    for (uint16_t k = 0; k < (uint16_t)(to - from); k++)
        vub_infl_put8(&r->desc[vr->scratch.batch_heads[k]].inflight, 0, memory_order_release);
    vub_infl_put16(&r->used_idx, to, memory_order_release);
}

/* [INFL-RECOVER] The spec's steps "When reconnecting", split layout, run at
 * ring start once used->idx is read (vub_split_start):
 *  1. [INFL-BATCH] if used_idx differs from used->idx the last batch was
 *     published before the old back-end could clear its flags: clear them
 *     along the list from last_batch_head (the difference is its length,
 *     at most the ring size, every head inside the ring), then store used_idx;
 *  2. [INFL-STATE] every entry still marked (inflight exactly 1, a head of
 *     the ring) is resubmitted, in counter order ([INFL-ORDER]), and the
 *     ring goes on from used->idx plus their number. */
static enum vub_err vub_inflight_split_recover(struct vub_vring *vr, struct vub_error *e)
{
    struct vub_inflight_split *r = vub_inflight_split(vr);
    enum vub_err err;
    uint16_t used = vr->split.used_idx, head = vub_infl_get16(&r->last_batch_head);
    uint16_t batch = (uint16_t)(used - vub_infl_get16(&r->used_idx));
    if (batch > vr->size)
        return vub_fail(e, VUB_R_INFL_BATCH, batch, head);
    /* Each link is read once, into batch_heads (at least size entries):
     * the front-end shares the region and may change a link between a
     * check and a second read of it. */
    for (uint16_t k = 0, h = head; k < batch; k++, h = vub_infl_get16(&r->desc[h].next)) {
        if (h >= vr->size)
            return vub_fail(e, VUB_R_INFL_BATCH, batch, h);
        vr->scratch.batch_heads[k] = h;
    }
    vub_inflight_split_publish(vr, (uint16_t)(used - batch), used); /* as the old one would have */
    unsigned n = 0;
    for (uint32_t i = 0; i < vr->inflight.desc_num; i++) {
        uint8_t f = vub_infl_get8(&r->desc[i].inflight);
        if (f > 1 || (f == 1 && i >= vr->size))
            return vub_fail(e, VUB_R_INFL_STATE, i, f);
        if (f == 1)
            vr->scratch.inflight_order[n++] = (struct vub_inflight_order){vub_infl_get64(&r->desc[i].counter),
                                                                          (uint16_t)i, 1, (uint16_t)i};
    }
    if ((err = vub_inflight_sort(vr, n, e)) != VUB_OK)
        return err;
    vr->inflight.last_batch_head = head;
    vr->split.last_avail = (uint16_t)(used + n);
    return VUB_OK;
}

/* Takes the next available chain. VUB_E_AGAIN if the ring is empty.
 * [VQ-SPLIT-AVAIL-IDX] the driver never makes more than `size` buffers
 * available at once; [VQ-SPLIT-HEAD] a head index is below the ring size. */
static enum vub_err vub_split_pop(struct vub_vring *vr, const struct vub_mem *mem, struct vub_chain *c,
                                  struct vub_error *e)
{
    /* [INFL-RESUBMIT] requests recovered from the inflight region come
     * first, still marked, with their old counters. */
    const struct vub_inflight_order *again = vub_inflight_resubmit(vr);
    if (again)
        return vub_split_walk(vr, mem, again->entry, c, e);
    uint16_t pending = (uint16_t)(vub_split_avail_idx(vr) - vr->split.last_avail);
    if (pending == 0)
        return VUB_E_AGAIN;
    if (pending > vr->size)
        return vub_fail(e, VUB_R_VQ_SPLIT_AVAIL_IDX, pending, vr->size);
    uint16_t head = vub_le16(vr->driver + 4 + 2 * (size_t)(vr->split.last_avail % vr->size));
    if (head >= vr->size)
        return vub_fail(e, VUB_R_VQ_SPLIT_HEAD, head, vr->size);
    vr->split.last_avail++;
    enum vub_err err = vub_split_walk(vr, mem, head, c, e);
    if (err == VUB_OK && vr->inflight.region)
        vub_inflight_split_take(vr, head);
    return err;
}

/* Fills the next used slot; the driver sees it at vub_split_publish().
 * [VQ-USED-LEN] len is the number of bytes written into the chain. */
static void vub_split_push(struct vub_vring *vr, const struct vub_chain *c, uint32_t len)
{
    uint8_t *slot = vr->device + 4 + 8 * (size_t)(vr->split.used_idx % vr->size);
    vub_put_le32(slot, c->head);
    vub_put_le32(slot + 4, len);
    if (vr->inflight.region)
        vub_inflight_split_push(vr, c->head);
    vr->split.used_idx++;
}

/* Makes every pushed entry visible at once (a batch). Release: pairs with
 * the driver's read barrier after it reads used->idx, so the id/len stores
 * above are seen before the new index. */
static void vub_split_publish(struct vub_vring *vr)
{
    vub_ring_store16(vr->device + 2, vr->split.used_idx, memory_order_release);
    if (vr->inflight.region)
        vub_inflight_split_publish(vr, vr->split.published_used, vr->split.used_idx);
    vr->split.published_used = vr->split.used_idx;
}

/* "vring_need_event": notify if the peer's event index lies in the window
 * of entries published since the last decision, (old, new]. Both event
 * fields name the index of the entry *after which* the peer wants a
 * notification; the 16-bit arithmetic wraps. */
static bool vub_need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

/* Should the driver be notified of the entries published in (old, now]?
 * [VQ-SPLIT-NOTIFY] without EVENT_IDX: unless the driver set NO_INTERRUPT;
 * with EVENT_IDX: if used_event was crossed (always, at the first decision:
 * !valid). vub_vring_need_notify() keeps the window and has the fence. */
static bool vub_split_need_notify(const struct vub_vring *vr, uint16_t old, uint16_t now, bool valid)
{
    if (!vr->event_idx)
        return !(vub_ring_load16(vr->driver, memory_order_relaxed) & VIRTQ_AVAIL_F_NO_INTERRUPT);
    uint16_t used_event = vub_ring_load16(vr->driver + 4 + 2 * (size_t)vr->size, memory_order_relaxed);
    return !valid || vub_need_event(used_event, now, old);
}

/* Asks the driver to kick when it makes the next buffer available, then
 * reports whether one arrived meanwhile. [VQ-SPLIT-USED-FLAGS] used->flags
 * is 0 with EVENT_IDX and 0 or NO_NOTIFY without it. [VQ-SPLIT-KICK-RACE] with EVENT_IDX
 * we write avail_event = last_avail; the fence pairs with the driver's fence
 * between publishing avail->idx and reading avail_event, so either it sees
 * our request and kicks, or we see its new index here. */
static bool vub_split_enable_kicks(struct vub_vring *vr)
{
    if (vr->event_idx)
        vub_ring_store16(vr->device + 4 + 8 * (size_t)vr->size, vr->split.last_avail, memory_order_relaxed);
    else
        vub_ring_store16(vr->device, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    return vub_split_avail_idx(vr) != vr->split.last_avail;
}

/* Tells the driver not to kick (the device is busy polling): NO_NOTIFY in
 * used->flags, or with EVENT_IDX avail_event one behind last_avail, a
 * position the driver's index has already passed, so it kicks again only
 * after a full wrap. A hint: the driver may kick anyway. */
static void vub_split_disable_kicks(struct vub_vring *vr)
{
    if (vr->event_idx)
        vub_ring_store16(vr->device + 4 + 8 * (size_t)vr->size, (uint16_t)(vr->split.last_avail - 1),
                         memory_order_relaxed);
    else
        vub_ring_store16(vr->device, VIRTQ_USED_F_NO_NOTIFY, memory_order_relaxed);
}

/* [VQ-SPLIT-USED-IDX] the used index is not sent by the front-end: it lives
 * in guest memory and is read when the ring starts. */
static void vub_split_start(struct vub_vring *vr)
{
    vr->split.used_idx = vr->split.published_used = vub_ring_load16(vr->device + 2, memory_order_acquire);
    vr->signalled_valid = false;
}

/* ---- Split virtqueue, driver side (section 5 continued; VIRTIO 1.x
 *      "Supplying Buffers to The Device", "Receiving Used Buffers")
 *
 * The same three areas seen from the other end: the driver fills
 * descriptors and the available ring, and reads the used ring. The front-end
 * (section 13) is the driver here; the functions line up with the device
 * side above:
 *
 *     driver                          device
 *     vub_split_add_buf         ->    vub_split_pop
 *     vub_split_kick_needed     <->   vub_split_enable_kicks
 *     vub_split_get_used        <-    vub_split_push + vub_split_publish
 *     vub_drv_enable_interrupts <->   vub_split_need_notify
 *
 * Which descriptors are free, how long each chain is and how many bytes
 * of it the device may write are kept in host memory the device cannot
 * reach. The driver writes the descriptor table but never reads it back, so
 * a device that scribbles on it (it "MUST NOT write to any descriptor table
 * entry") cannot corrupt the free list. The used ring is the one thing the
 * device writes, and every entry is checked before it is believed.
 *
 * Format notes:
 *  - A chain is at most the queue size long, direct or indirect ("A driver
 *    MUST NOT create a descriptor chain longer than the Queue Size"), and
 *    at most 2^32 bytes in total.
 *  - INDIRECT and NEXT never go together on one descriptor, and a table
 *    never holds an INDIRECT descriptor.
 *  - With EVENT_IDX the device kicks-suppression field is avail_event at the
 *    end of the used ring; ours is used_event at the end of the available
 *    ring. Without it, used->flags bit 0 and avail->flags bit 0 do the job.
 * ---- */

/* Host-side record of one request in flight, by split head or packed
 * buffer id. */
struct vub_drv_slot {
    bool in_flight;          /* made available and not yet returned */
    uint16_t desc_count;     /* ring descriptors (packed: slots) it holds; 1 if indirect */
    uint16_t last;           /* split: the chain's last ring descriptor, to splice it back */
    uint32_t writable_bytes; /* the most the device may report as written */
};

/* Driver-side state of one ring, either layout (section 6 has the packed
 * half). The areas, the indirect tables and the two host arrays are the
 * caller's: this struct only points at them. */
struct vub_drv {
    bool packed;                 /* VIRTIO_F_RING_PACKED: which union member is live */
    uint16_t size;               /* descriptors in the ring: split a power of two, packed 1..32768 */
    bool event_idx;              /* VIRTIO_F_EVENT_IDX negotiated */
    uint8_t *desc;               /* descriptor table (packed: ring), our mapping */
    uint8_t *driver;             /* Driver Area: available ring / driver event suppression */
    uint8_t *device;             /* Device Area: used ring / device event suppression */
    uint8_t *indirect;           /* size tables of indirect_max entries; NULL: none */
    uint64_t indirect_addr;      /* device address of the first table */
    uint16_t indirect_max;       /* entries per table; 0 when INDIRECT_DESC is off */
    uint16_t *free_link;         /* [size] split: the next free descriptor after each free
                                    one; packed: a stack of unused buffer ids */
    struct vub_drv_slot *slots;  /* [size] by head (split) or buffer id (packed) */
    uint16_t free_count;         /* ring descriptors no request holds */
    uint16_t kicked_avail;       /* the available position at the last kick decision */
    uint16_t in_flight;          /* requests the device holds */
    bool interrupts;             /* asking for used-buffer notifications */
    bool broken;                 /* the device broke the ring; sticky */
    union {
        struct {
            uint16_t free_head;  /* first free descriptor, valid if free_count > 0 */
            uint16_t avail_idx;  /* next available index to publish */
            uint16_t last_used;  /* next used index to consume */
        } split;
        struct {
            uint16_t free_ids;   /* ids on the free_link stack */
            uint16_t next_avail; /* slot for the next descriptor we write */
            bool avail_wrap;     /* wrap counter that descriptor carries */
            uint16_t next_used;  /* slot where the next used descriptor appears */
            bool used_wrap;      /* wrap counter a used descriptor there carries */
            uint16_t added;      /* buffers made available since the last kick decision */
        } pk;
    };
};

/* Prepares a ring whose areas are zeroed shared memory ("The driver MUST
 * initialize flags in the used ring to 0"; a zeroed packed descriptor is
 * neither available nor used, a zeroed event area means ENABLE), packed
 * wrap counters at 1 ("initializes its wrap counters to 1"). Every
 * descriptor is free: split ones on a list in index order, packed ids on a
 * stack that pops 0, 1, 2, ... */
static void vub_drv_init(struct vub_drv *d, bool packed, uint16_t size, uint8_t *desc, uint8_t *driver,
                         uint8_t *device, uint16_t *free_link, struct vub_drv_slot *slots)
{
    *d = (struct vub_drv){.packed = packed, .size = size, .desc = desc, .driver = driver, .device = device,
                          .free_link = free_link, .slots = slots, .free_count = size, .interrupts = true};
    if (packed) {
        d->pk.free_ids = size;
        d->pk.avail_wrap = d->pk.used_wrap = true;
    }
    for (uint32_t i = 0; i < size; i++) {
        free_link[i] = (uint16_t)(packed ? size - 1 - i : i + 1);
        slots[i] = (struct vub_drv_slot){0};
    }
}

/* Writes one descriptor, split (flags at 12, next at 14) or packed (id at
 * 12, flags at 14). */
static void vub_desc_encode(uint8_t *p, uint64_t addr, uint32_t len, uint16_t at12, uint16_t at14)
{
    vub_put_le64(p, addr);
    vub_put_le32(p + 8, len);
    vub_put_le16(p + 12, at12);
    vub_put_le16(p + 14, at14);
}

/* How a request will be laid out in a ring of either layout. */
struct vub_drv_plan {
    uint64_t writable; /* bytes the device may write: the most it may report */
    bool indirect;     /* in the head's indirect table */
    unsigned need;     /* ring descriptors (slots) it takes */
};

/* Checks a request's buffer list, for either ring layout: at least one
 * buffer, only WRITE in the flags, device-readable buffers first ("The
 * driver MUST place any device-writable descriptor elements after any
 * device-readable descriptor elements"), at most 2^32 - 1 bytes in all.
 * [VQ-ZERO-LEN] Zero-length buffers are legal in the spec but QEMU and
 * libvhost-user refuse them, so the driver never makes one. A request of
 * several buffers goes into an indirect table when the ring has them (one
 * ring descriptor), else it takes one per buffer. VUB_E_PROTO on a broken
 * ring, VUB_E_INVAL for a request the ring can never carry, VUB_E_AGAIN if
 * not enough descriptors are free now. */
static enum vub_err vub_drv_plan(const struct vub_drv *d, const struct vub_desc *bufs, unsigned count,
                                 struct vub_drv_plan *p)
{
    uint64_t total = 0;
    *p = (struct vub_drv_plan){0, count > 1 && count <= d->indirect_max, 0};
    p->need = p->indirect ? 1 : count;
    if (d->broken)
        return VUB_E_PROTO;
    for (unsigned i = 0; i < count; i++) {
        bool w = (bufs[i].flags & VIRTQ_DESC_F_WRITE) != 0;
        if ((bufs[i].flags & ~VIRTQ_DESC_F_WRITE) || bufs[i].len == 0 || (!w && p->writable > 0))
            return VUB_E_INVAL;
        total += bufs[i].len;
        p->writable += w ? bufs[i].len : 0;
    }
    if (count == 0 || total > UINT32_MAX || p->need > d->size)
        return VUB_E_INVAL;
    return p->need > d->free_count ? VUB_E_AGAIN : VUB_OK;
}

/* Makes one request available. bufs lists its buffers by device address
 * (see vub_drv_plan, which also says what fails); an indirect request's
 * table is the head's own, a direct one is a chain of free descriptors.
 * On success *head names the request until vub_split_get_used() returns
 * it. */
static enum vub_err vub_split_add_buf(struct vub_drv *d, const struct vub_desc *bufs,
                                      unsigned count, uint16_t *head)
{
    struct vub_drv_plan p;
    enum vub_err err = vub_drv_plan(d, bufs, count, &p);
    if (err != VUB_OK)
        return err;

    uint16_t h = d->split.free_head, last = h;
    if (p.indirect) {
        /* The table of head h is ours alone while h is in flight. */
        uint64_t table_off = (uint64_t)h * d->indirect_max * VIRTQ_DESC_BYTES;
        uint8_t *table = d->indirect + table_off;
        for (unsigned i = 0; i < count; i++) {
            bool more = i + 1 < count;
            vub_desc_encode(table + (size_t)i * VIRTQ_DESC_BYTES, bufs[i].addr, bufs[i].len,
                            (uint16_t)(bufs[i].flags | (more ? VIRTQ_DESC_F_NEXT : 0)),
                            (uint16_t)(more ? i + 1 : 0));
        }
        vub_desc_encode(d->desc + (size_t)h * VIRTQ_DESC_BYTES, d->indirect_addr + table_off,
                        count * VIRTQ_DESC_BYTES, VIRTQ_DESC_F_INDIRECT, 0);
    } else {
        /* The free list is already linked in the order we take it: the
         * chain's next fields are simply the free list's links. */
        uint16_t i = h;
        for (unsigned k = 0; k < count; k++) {
            bool more = k + 1 < count;
            vub_desc_encode(d->desc + (size_t)i * VIRTQ_DESC_BYTES, bufs[k].addr, bufs[k].len,
                            (uint16_t)(bufs[k].flags | (more ? VIRTQ_DESC_F_NEXT : 0)),
                            more ? d->free_link[i] : 0);
            last = i;
            i = d->free_link[i];
        }
    }
    d->split.free_head = d->free_link[last];
    d->free_count = (uint16_t)(d->free_count - p.need);
    d->slots[h] = (struct vub_drv_slot){true, (uint16_t)p.need, last, (uint32_t)p.writable};
    d->in_flight++;

    vub_put_le16(d->driver + 4 + 2 * (size_t)(d->split.avail_idx % d->size), h);
    d->split.avail_idx++;
    /* Release: the descriptors and the ring slot are visible before the new
     * index. Pairs with the acquire in the device's vub_split_avail_idx(). */
    vub_ring_store16(d->driver + 2, d->split.avail_idx, memory_order_release);
    *head = h;
    return VUB_OK;
}

/* Must the device be kicked for what was added since the last decision?
 * [VQ-SPLIT-KICK] without EVENT_IDX: unless the device set NO_NOTIFY; with
 * it: if avail_event lies among the entries added since, (old, new]. The
 * full fence orders our avail->idx store before the loads of avail_event and
 * flags ("a suitable memory barrier before reading flags or avail_event");
 * it pairs with the fence in the device's vub_split_enable_kicks(), so
 * either the device sees our index or we see its request for a kick. */
static bool vub_split_kick_needed(struct vub_drv *d)
{
    uint16_t old = d->kicked_avail, now = d->split.avail_idx;
    if (old == now)
        return false; /* nothing added since the last decision */
    d->kicked_avail = now;
    atomic_thread_fence(memory_order_seq_cst);
    if (!d->event_idx)
        return !(vub_ring_load16(d->device, memory_order_relaxed) & VIRTQ_USED_F_NO_NOTIFY);
    uint16_t avail_event = vub_ring_load16(d->device + 4 + 8 * (size_t)d->size, memory_order_relaxed);
    return vub_need_event(avail_event, now, old);
}

/* Takes the next used entry. VUB_E_AGAIN if there is none. The device is
 * not trusted: [VQ-USED-IDX] the used index never runs ahead of what is in
 * flight; [VQ-USED-ID] the id is a head the device holds; [VQ-USED-LEN] the
 * length is no more than the writable bytes of that request. Any of these
 * breaks the ring for good (VUB_E_PROTO), with nothing freed. */
static enum vub_err vub_split_get_used(struct vub_drv *d, uint16_t *head, uint32_t *len,
                                       struct vub_error *e)
{
    if (d->broken)
        return VUB_E_PROTO;
    /* Acquire: pairs with the release in the device's vub_split_publish(),
     * so the entry read below is the one written before the index moved. */
    uint16_t used_idx = vub_ring_load16(d->device + 2, memory_order_acquire);
    uint16_t ready = (uint16_t)(used_idx - d->split.last_used);
    if (ready == 0)
        return VUB_E_AGAIN;
    const uint8_t *entry = d->device + 4 + 8 * (size_t)(d->split.last_used % d->size);
    uint32_t id = vub_le32(entry), l = vub_le32(entry + 4); /* copied once, then checked */
    d->broken = true; /* unless every check below passes */
    if (ready > d->in_flight)
        return vub_fail(e, VUB_R_VQ_USED_IDX, ready, d->in_flight);
    if (id >= d->size || !d->slots[id].in_flight)
        return vub_fail(e, VUB_R_VQ_USED_ID, id, d->size);
    struct vub_drv_slot *s = &d->slots[id];
    if (l > s->writable_bytes)
        return vub_fail(e, VUB_R_VQ_USED_LEN, l, id);
    d->broken = false;
    d->free_link[s->last] = d->split.free_head;
    d->split.free_head = (uint16_t)id;
    d->free_count = (uint16_t)(d->free_count + s->desc_count);
    s->in_flight = false;
    d->in_flight--;
    d->split.last_used++;
    /* Ask for a notification when the next entry is used. A plain store: a
     * caller about to sleep re-arms with vub_drv_enable_interrupts(), which
     * has the fence. */
    if (d->event_idx && d->interrupts)
        vub_ring_store16(d->driver + 4 + 2 * (size_t)d->size, d->split.last_used, memory_order_relaxed);
    *head = (uint16_t)id;
    *len = l;
    return VUB_OK;
}

/* ======================================================================== *
 * 6. Packed virtqueue, device side  (VIRTIO 1.x "Packed Virtqueues")
 *
 * [VQ-PACKED] the same requests over the other layout, offered as
 * VIRTIO_F_RING_PACKED.
 * One descriptor ring does both jobs: the driver writes descriptors into
 * it in order, the device overwrites them in order with used descriptors.
 *   descriptor       le64 addr; le32 len; le16 id; le16 flags   (16 bytes)
 *   event areas      le16 off_wrap; le16 flags                  (4 bytes each)
 * Nobody keeps an index in memory: each side keeps its own position and a
 * one-bit wrap counter, flipped each time it passes the end of the ring,
 * and a descriptor's AVAIL and USED flag bits say whose it is.
 *
 * Format notes:
 *  - Both wrap counters start at 1. A descriptor is available when AVAIL
 *    equals the driver's counter and USED does not; used when both equal
 *    the device's counter.
 *  - The buffer id is in the last descriptor of a list, is chosen by the
 *    driver (the spec puts no bound on it), and is only echoed.
 *  - A used descriptor goes in the slot where its buffer's first
 *    descriptor was; the next one goes as many slots further as the
 *    buffer used, so the device must remember that count.
 *  - The ring size need not be a power of two.
 * ======================================================================== */

#define VIRTQ_DESC_F_AVAIL (1u << 7)
#define VIRTQ_DESC_F_USED (1u << 15)
#define RING_EVENT_FLAGS_ENABLE 0u
#define RING_EVENT_FLAGS_DISABLE 1u
#define RING_EVENT_FLAGS_DESC 2u
#define VUB_PACKED_IDS 65536u /* buffer ids are 16-bit */

static uint64_t vub_packed_event_bytes(void) { return 4; }

/* One packed descriptor, decoded from its 16 wire bytes. */
struct vub_packed_desc {
    uint64_t addr;  /* guest physical address of the buffer */
    uint32_t len;   /* buffer bytes (indirect: table bytes) */
    uint16_t id;    /* buffer id, meaningful in a list's last descriptor */
    uint16_t flags; /* NEXT, WRITE, INDIRECT, AVAIL, USED */
};

/* Decodes slot i. The flags word is read first and once, with acquire: it
 * pairs with the driver's write barrier before it flips a list's first
 * flags, so the rest of the descriptor (written earlier) is what we read. */
static struct vub_packed_desc vub_packed_desc_read(const struct vub_vring *vr, uint16_t i)
{
    const uint8_t *p = vr->desc + (size_t)i * VIRTQ_DESC_BYTES;
    uint16_t flags = vub_ring_load16(p + 14, memory_order_acquire);
    return (struct vub_packed_desc){vub_le64(p), vub_le32(p + 8), vub_le16(p + 12), flags};
}

/* Whether flags mark a descriptor the given wrap counter owns: available
 * (AVAIL == wrap, USED != wrap) or used (both == wrap). */
static bool vub_packed_owned(uint16_t flags, bool wrap, bool used_too)
{
    bool avail = (flags & VIRTQ_DESC_F_AVAIL) != 0, used = (flags & VIRTQ_DESC_F_USED) != 0;
    return avail == wrap && used == (used_too ? wrap : !wrap);
}

/* Steps a position n slots on, flipping the wrap counter past the end. */
static void vub_packed_advance(uint16_t *pos, bool *wrap, unsigned n, uint16_t size)
{
    unsigned next = (unsigned)*pos + n;
    if (next >= size) {
        next -= size;
        *wrap = !*wrap;
    }
    *pos = (uint16_t)next;
}

/* Sets bit i of a bitmap; true if it was set already. */
static bool vub_bit_test_set(uint8_t *map, unsigned i)
{
    bool was = (map[i / 8] >> (i % 8)) & 1u;
    map[i / 8] |= (uint8_t)(1u << (i % 8));
    return was;
}

/* [VQ-PACKED-ID] a buffer id must not be taken twice before it is used. */
static enum vub_err vub_packed_take_id(struct vub_vring *vr, uint16_t id, struct vub_error *e)
{
    return vub_bit_test_set(vr->scratch.ids_pending, id) ? vub_fail(e, VUB_R_VQ_PACKED_ID, id, 0) : VUB_OK;
}

/* ---- Inflight I/O tracking, packed layout (vhost-user.rst "Inflight I/O
 *      tracking") ----
 *
 * A packed ring keeps no copy of what the device took: the device's used
 * descriptors overwrite the driver's, out of order. So the region copies
 * every descriptor taken into an entry of its own, kept on a free list;
 * the entries of one buffer are linked by `next` from its head entry. The
 * old_* fields are the state as of the last whole step (a buffer taken, a
 * batch published): a recovery rolls an unfinished step back to them, or,
 * if the ring shows the batch was published, commits it first.
 *
 * Format notes:
 *  - A fetch must start from a free list whose head is old_free_head (the
 *    entry that becomes the buffer's head); vub therefore returns used
 *    entries to the free list only when their batch is published, never
 *    between a push and its publish.
 *  - [INFL-FREE-END] The spec does not say where the free list ends. vub
 *    ends it with next = 0xffff, so a recovery can tell the free entries
 *    from the buffers in flight: every entry is on exactly one of them.
 *  - The ring positions after recovery come from the region: the next used
 *    slot is old_used_idx (wrap old_used_wrap_counter), the next available
 *    one as many slots further as the buffers in flight hold. */

#define VUB_INFLIGHT_END 0xffffu /* next of the free list's last entry */

/* DescStatePacked: one entry per descriptor taken (a copy of it). */
struct vub_inflight_desc_packed {
    uint8_t inflight;  /* heads: 1 while the driver waits for the buffer */
    uint8_t padding;
    uint16_t next;     /* the next free entry, or the buffer's next descriptor */
    uint16_t last;     /* heads: the entry of the buffer's last descriptor */
    uint16_t num;      /* heads: descriptors (ring slots) in the buffer */
    uint64_t counter;  /* heads: the order the buffer was taken in */
    uint16_t id;       /* the descriptor copied: buffer id */
    uint16_t flags;    /* ... its flags */
    uint32_t len;      /* ... its length */
    uint64_t addr;     /* ... its guest address */
};

/* QueueRegionPacked: one queue's region. */
struct vub_inflight_packed {
    uint64_t features;             /* region features: none are defined, so 0 */
    uint16_t version;              /* 1; 0 means never used */
    uint16_t desc_num;             /* entries in desc[]: the queue size */
    uint16_t free_head;            /* first free entry (0xffff: none) */
    uint16_t old_free_head;        /* ... as of the last whole step */
    uint16_t used_idx;             /* the device's next used slot */
    uint16_t old_used_idx;         /* ... as of the last whole step */
    uint8_t used_wrap_counter;     /* the device's wrap counter there */
    uint8_t old_used_wrap_counter; /* ... as of the last whole step */
    uint8_t padding[7];
    struct vub_inflight_desc_packed desc[]; /* by entry */
};

_Static_assert(sizeof(struct vub_inflight_desc_packed) == 32, "DescStatePacked is 32 bytes");
_Static_assert(offsetof(struct vub_inflight_packed, desc) == 32, "QueueRegionPacked header is 32 bytes");

static struct vub_inflight_packed *vub_inflight_packed(const struct vub_vring *vr)
{
    return (struct vub_inflight_packed *)(void *)vr->inflight.region;
}

/* A fresh region, packed: every entry free, in index order, the last one
 * ending the list; positions where the ring starts. */
static void vub_inflight_packed_init(struct vub_vring *vr)
{
    struct vub_inflight_packed *r = vub_inflight_packed(vr);
    uint16_t n = vr->inflight.desc_num;
    memset(r, 0, sizeof *r + sizeof r->desc[0] * n);
    for (uint32_t i = 0; i < n; i++) {
        uint16_t next = i + 1 < n ? (uint16_t)(i + 1) : VUB_INFLIGHT_END;
        r->desc[i].next = vr->scratch.inflight_next[i] = next;
    }
    vub_infl_put16(&r->used_idx, vr->packed.next_used, memory_order_relaxed);
    vub_infl_put16(&r->old_used_idx, vr->packed.next_used, memory_order_relaxed);
    vub_infl_put8(&r->used_wrap_counter, vr->packed.used_wrap, memory_order_relaxed);
    vub_infl_put8(&r->old_used_wrap_counter, vr->packed.used_wrap, memory_order_relaxed);
    vr->inflight.free_head = 0;
}

/* Steps 1-2 of "When reconnecting", packed, on the positions as read and
 * checked once by the caller (the front-end shares the region and may
 * change them after the check): if the last step was not whole
 * (used_idx or its wrap counter moved past old_*), look at the ring: a
 * descriptor at old_used_idx that no longer looks available in lap
 * old_used_wrap_counter was published, so the step is committed (old_* =
 * current); then everything rolls back to old_*. Returns the free head. */
static uint16_t vub_inflight_packed_rollback(struct vub_vring *vr, const uint16_t heads[2], const uint16_t slots[2],
                                             const uint8_t wraps[2])
{
    struct vub_inflight_packed *r = vub_inflight_packed(vr);
    uint16_t fh = heads[0], ofh = heads[1], ui = slots[0], oui = slots[1];
    bool w = wraps[0] != 0, ow = wraps[1] != 0;
    if (ui != oui || w != ow) {
        uint16_t flags = vub_ring_load16(vr->desc + (size_t)oui * VIRTQ_DESC_BYTES + 14, memory_order_acquire);
        if (!vub_packed_owned(flags, ow, false)) {
            ofh = fh;
            oui = ui;
            ow = w;
        }
    }
    vub_infl_put16(&r->free_head, ofh, memory_order_relaxed);
    vub_infl_put16(&r->used_idx, oui, memory_order_relaxed);
    vub_infl_put8(&r->used_wrap_counter, ow, memory_order_relaxed);
    vub_infl_put16(&r->old_free_head, ofh, memory_order_relaxed);
    vub_infl_put16(&r->old_used_idx, oui, memory_order_relaxed);
    vub_infl_put8(&r->old_used_wrap_counter, ow, memory_order_release);
    vr->packed.next_used = oui;
    vr->packed.used_wrap = ow;
    return ofh;
}

/* Step 3: walks the free list from its head, clearing every flag on it (a
 * head published, or half taken, when the old back-end died) and copying
 * the links. [INFL-PACKED-LIST] it ends at 0xffff within desc_num entries. */
static enum vub_err vub_inflight_packed_free_walk(struct vub_vring *vr, uint16_t at, unsigned *count,
                                                  struct vub_error *e)
{
    struct vub_inflight_packed *r = vub_inflight_packed(vr);
    for (*count = 0; at != VUB_INFLIGHT_END; (*count)++) {
        if (at >= vr->inflight.desc_num || vub_bit_test_set(vr->scratch.inflight_seen, at))
            return vub_fail(e, VUB_R_INFL_PACKED_LIST, at, vr->inflight.desc_num);
        vub_infl_put8(&r->desc[at].inflight, 0, memory_order_relaxed);
        at = vr->scratch.inflight_next[at] = vub_infl_get16(&r->desc[at].next);
    }
    return VUB_OK;
}

/* Step 4 prepared: every head still marked is a buffer in flight; its copy
 * is num entries linked from it, ending at `last`, none of them free or in
 * another buffer. [INFL-STATE] flags are 0 or 1. */
static enum vub_err vub_inflight_packed_heads(struct vub_vring *vr, unsigned *n_out, unsigned *held,
                                              struct vub_error *e)
{
    struct vub_inflight_packed *r = vub_inflight_packed(vr);
    unsigned n = 0;
    *held = 0;
    for (uint32_t i = 0; i < vr->inflight.desc_num; i++) {
        uint8_t f = vub_infl_get8(&r->desc[i].inflight);
        if (f > 1)
            return vub_fail(e, VUB_R_INFL_STATE, i, f);
        if (f == 0 || (vr->scratch.inflight_seen[i / 8] & (1u << (i % 8))))
            continue;
        uint16_t num = vub_infl_get16(&r->desc[i].num), last = vub_infl_get16(&r->desc[i].last), at = (uint16_t)i;
        if (num == 0 || num > vr->size)
            return vub_fail(e, VUB_R_INFL_PACKED_LIST, i, num);
        for (uint16_t k = 0;; k++) {
            if (at >= vr->inflight.desc_num || vub_bit_test_set(vr->scratch.inflight_seen, at))
                return vub_fail(e, VUB_R_INFL_PACKED_LIST, at, num);
            vr->scratch.inflight_next[at] = vub_infl_get16(&r->desc[at].next);
            if (k + 1 == num)
                break;
            at = vr->scratch.inflight_next[at];
        }
        if (at != last)
            return vub_fail(e, VUB_R_INFL_PACKED_LIST, last, num);
        vr->scratch.inflight_order[n++] = (struct vub_inflight_order){vub_infl_get64(&r->desc[i].counter),
                                                                      (uint16_t)i, num, last};
        *held += num;
    }
    *n_out = n;
    return VUB_OK;
}

/* [INFL-RECOVER] The spec's steps "When reconnecting", packed layout, run at
 * ring start. [INFL-PACKED] positions are inside the ring and the region,
 * wrap counters 0 or 1; [INFL-PACKED-LIST] every entry is free or in one
 * buffer, and the buffers hold at most the ring's slots. */
static enum vub_err vub_inflight_packed_recover(struct vub_vring *vr, struct vub_error *e)
{
    struct vub_inflight_packed *r = vub_inflight_packed(vr);
    enum vub_err err;
    uint16_t n_entries = vr->inflight.desc_num;
    const uint16_t heads[2] = {vub_infl_get16(&r->free_head), vub_infl_get16(&r->old_free_head)};
    const uint16_t slots[2] = {vub_infl_get16(&r->used_idx), vub_infl_get16(&r->old_used_idx)};
    const uint8_t wraps[2] = {vub_infl_get8(&r->used_wrap_counter), vub_infl_get8(&r->old_used_wrap_counter)};
    for (unsigned k = 0; k < 2; k++) {
        if (heads[k] >= n_entries && heads[k] != VUB_INFLIGHT_END)
            return vub_fail(e, VUB_R_INFL_PACKED, heads[k], n_entries);
        if (slots[k] >= vr->size || wraps[k] > 1)
            return vub_fail(e, VUB_R_INFL_PACKED, slots[k] >= vr->size ? slots[k] : wraps[k], vr->size);
    }
    memset(vr->scratch.inflight_seen, 0, (size_t)n_entries / 8 + 1);
    unsigned free_count, n, held;
    uint16_t free_head = vub_inflight_packed_rollback(vr, heads, slots, wraps);
    if ((err = vub_inflight_packed_free_walk(vr, free_head, &free_count, e)) != VUB_OK ||
        (err = vub_inflight_packed_heads(vr, &n, &held, e)) != VUB_OK)
        return err;
    if (free_count + held != n_entries || held > vr->size)
        return vub_fail(e, VUB_R_INFL_PACKED_LIST, free_count + held, n_entries);
    if ((err = vub_inflight_sort(vr, n, e)) != VUB_OK)
        return err;
    vr->inflight.free_head = free_head;
    vr->packed.next_avail = vr->packed.next_used;
    vr->packed.avail_wrap = vr->packed.used_wrap;
    vub_packed_advance(&vr->packed.next_avail, &vr->packed.avail_wrap, held, vr->size);
    return VUB_OK;
}

/* [INFL-TAKE] "When receiving available buffers", packed: descriptor d, the
 * chain's c->slots-th, is copied into the first free entry; a head entry
 * gets num 0, the next counter and its flag first. [INFL-REGION-FULL] a driver
 * that makes more slots available than the ring has (reusing slots the
 * device holds) runs out of entries. Releases: the copy is whole before the
 * entry leaves the free list (free_head), and the buffer's entries before
 * old_free_head makes the step whole; a recovery that finds old_free_head
 * behind free_head rolls the half-taken buffer back. Both pair with the acquire
 * loads in vub_inflight_packed_rollback(). */
static enum vub_err vub_inflight_packed_take(struct vub_vring *vr, struct vub_chain *c,
                                             const struct vub_packed_desc *d, bool last, struct vub_error *e)
{
    struct vub_inflight_packed *r = vub_inflight_packed(vr);
    uint16_t at = vr->inflight.free_head;
    if (at >= vr->inflight.desc_num)
        return vub_fail(e, VUB_R_INFL_REGION_FULL, vr->inflight.desc_num, 0);
    if (c->slots == 1) {
        c->inflight_head = at;
        vub_infl_put16(&r->desc[at].num, 0, memory_order_relaxed);
        vub_infl_put64(&r->desc[at].counter, vr->inflight.counter++);
        vub_infl_put8(&r->desc[at].inflight, 1, memory_order_release);
    }
    struct vub_inflight_desc_packed *x = &r->desc[at];
    vub_infl_put64(&x->addr, d->addr);
    atomic_store_explicit((_Atomic uint32_t *)&x->len, d->len, memory_order_relaxed);
    vub_infl_put16(&x->flags, d->flags, memory_order_relaxed);
    vub_infl_put16(&x->id, d->id, memory_order_relaxed);
    vub_infl_put16(&r->desc[c->inflight_head].num, c->slots, memory_order_relaxed);
    if (last) {
        vub_infl_put16(&r->desc[c->inflight_head].last, at, memory_order_relaxed);
        c->inflight_last = at;
    }
    vr->inflight.free_head = vr->scratch.inflight_next[at];
    vub_infl_put16(&r->free_head, vr->inflight.free_head, memory_order_release);
    if (last)
        vub_infl_put16(&r->old_free_head, vr->inflight.free_head, memory_order_release);
    return VUB_OK;
}

/* A buffer refused half-way, or whole but with an id already in flight,
 * was never taken: its entries go back to the free list, free_head and
 * old_free_head naming its head again (the ring is broken; this keeps the
 * region whole for whoever looks at it next). */
static void vub_inflight_packed_untake(struct vub_vring *vr, const struct vub_chain *c, unsigned taken)
{
    struct vub_inflight_packed *r = vub_inflight_packed(vr);
    if (taken == 0)
        return;
    vub_infl_put8(&r->desc[c->inflight_head].inflight, 0, memory_order_relaxed);
    vr->inflight.free_head = c->inflight_head;
    vub_infl_put16(&r->free_head, c->inflight_head, memory_order_relaxed);
    vub_infl_put16(&r->old_free_head, c->inflight_head, memory_order_release);
}

/* "When supplying used buffers", packed, steps 1-5, before the batch's
 * first flags word is stored: each buffer's entries go back on the free
 * list, and used_idx/used_wrap_counter move to where the batch ends.
 * Release on the last: a recovery that finds used_idx ahead of
 * old_used_idx finds these links too (pairs with the acquire load of
 * used_idx in vub_inflight_packed_rollback()). */
static void vub_inflight_packed_complete(struct vub_vring *vr)
{
    struct vub_inflight_packed *r = vub_inflight_packed(vr);
    for (unsigned k = 0; k < vr->packed.batch_count; k++) {
        uint16_t head = vr->scratch.batch_heads[k], last = vr->scratch.batch_lasts[k];
        vub_infl_put16(&r->desc[last].next, vr->inflight.free_head, memory_order_relaxed);
        vr->scratch.inflight_next[last] = vr->inflight.free_head;
        vr->inflight.free_head = head;
        vub_infl_put16(&r->free_head, head, memory_order_relaxed);
    }
    vub_infl_put8(&r->used_wrap_counter, vr->packed.used_wrap, memory_order_relaxed);
    vub_infl_put16(&r->used_idx, vr->packed.next_used, memory_order_release);
}

/* Steps 6-7, once the batch's first flags word is stored: the heads'
 * flags clear, then old_* catch up (the step is whole). Release: the flags
 * word is visible before any flag clears, and the flags before old_*. They
 * pair with vub_inflight_packed_rollback()'s acquire loads of old_* and of
 * the ring's flags at old_used_idx: a recovery that finds a flag still set
 * and the ring published commits the step and clears it. */
static void vub_inflight_packed_commit(struct vub_vring *vr)
{
    struct vub_inflight_packed *r = vub_inflight_packed(vr);
    for (unsigned k = 0; k < vr->packed.batch_count; k++)
        vub_infl_put8(&r->desc[vr->scratch.batch_heads[k]].inflight, 0, memory_order_release);
    vub_infl_put16(&r->old_free_head, vr->inflight.free_head, memory_order_relaxed);
    vub_infl_put16(&r->old_used_idx, vr->packed.next_used, memory_order_relaxed);
    vub_infl_put8(&r->old_used_wrap_counter, vr->packed.used_wrap, memory_order_release);
}

/* Adds descriptor d, met at ring slot (or region entry) i, to the buffer.
 * [VQ-PACKED-LIST] a list is at most `size` descriptors and must not
 * contain an INDIRECT one; [VQ-PACKED-INDIRECT] an INDIRECT descriptor is
 * a whole buffer on its own, in one slot. True in *last for the buffer's
 * last descriptor. */
static enum vub_err vub_packed_chain_add(struct vub_vring *vr, const struct vub_mem *mem, struct vub_chain *c,
                                         const struct vub_packed_desc *d, uint16_t i, bool *last,
                                         struct vub_error *e)
{
    enum vub_err err;
    if (c->slots++ >= vr->size)
        return vub_fail(e, VUB_R_VQ_PACKED_LIST, vr->packed.next_avail, 0);
    if ((d->flags & VIRTQ_DESC_F_INDIRECT) && !vr->indirect)
        return vub_fail(e, VUB_R_VQ_INDIRECT, i, 0);
    if ((d->flags & VIRTQ_DESC_F_INDIRECT) && ((d->flags & VIRTQ_DESC_F_NEXT) || c->slots > 1))
        return vub_fail(e, VUB_R_VQ_PACKED_INDIRECT, i, 0);
    if (d->flags & VIRTQ_DESC_F_INDIRECT)
        err = vub_walk_indirect(c, mem, d->addr, d->len, true, vr->scratch.chain_cap, e);
    else
        err = vub_chain_add(c, mem, d->addr, d->len, d->flags & VIRTQ_DESC_F_WRITE, vr->scratch.chain_cap, e);
    *last = !(d->flags & VIRTQ_DESC_F_NEXT) || (d->flags & VIRTQ_DESC_F_INDIRECT);
    return err;
}

/* [INFL-RESUBMIT] A buffer recovered from the inflight region, walked from
 * its copy: each entry copied out once and checked as a ring descriptor
 * would be; [INFL-PACKED-LIST] the copy ends where its count says. */
static enum vub_err vub_packed_resubmit(struct vub_vring *vr, const struct vub_mem *mem,
                                        const struct vub_inflight_order *o, struct vub_chain *c, struct vub_error *e)
{
    struct vub_inflight_packed *r = vub_inflight_packed(vr);
    *c = (struct vub_chain){.iov = vr->scratch.chain, .inflight_head = o->entry, .inflight_last = o->last};
    uint16_t at = o->entry, id = 0;
    for (uint16_t k = 0; k < o->num; k++, at = vr->scratch.inflight_next[at]) {
        const struct vub_inflight_desc_packed *x = &r->desc[at];
        struct vub_packed_desc d = {vub_infl_get64(&x->addr),
                                    atomic_load_explicit((_Atomic uint32_t *)(uintptr_t)&x->len, memory_order_relaxed),
                                    vub_infl_get16(&x->id), vub_infl_get16(&x->flags)};
        bool last;
        enum vub_err err = vub_packed_chain_add(vr, mem, c, &d, at, &last, e);
        if (err != VUB_OK)
            return err;
        if (last != (k + 1 == o->num))
            return vub_fail(e, VUB_R_INFL_PACKED_LIST, at, o->num);
        id = d.id;
    }
    c->head = id;
    return vub_packed_take_id(vr, id, e);
}

/* Takes the next available buffer. VUB_E_AGAIN if none.
 * [VQ-PACKED-AVAIL] availability is judged on the flags, read first; the
 * list rules are vub_packed_chain_add's. With inflight tracking each
 * descriptor is copied into the region as it is taken, and recovered
 * buffers are handed out first. */
static enum vub_err vub_packed_pop(struct vub_vring *vr, const struct vub_mem *mem, struct vub_chain *c,
                                   struct vub_error *e)
{
    const struct vub_inflight_order *again = vub_inflight_resubmit(vr);
    if (again)
        return vub_packed_resubmit(vr, mem, again, c, e);
    uint16_t i = vr->packed.next_avail;
    struct vub_packed_desc d = vub_packed_desc_read(vr, i);
    if (!vub_packed_owned(d.flags, vr->packed.avail_wrap, false))
        return VUB_E_AGAIN;
    *c = (struct vub_chain){.iov = vr->scratch.chain};
    unsigned taken = 0;
    enum vub_err err;
    for (bool last = false;;) {
        err = vub_packed_chain_add(vr, mem, c, &d, i, &last, e);
        if (err == VUB_OK && vr->inflight.region && (err = vub_inflight_packed_take(vr, c, &d, last, e)) == VUB_OK)
            taken++;
        if (err != VUB_OK || last)
            break;
        i = (uint16_t)(i + 1 == vr->size ? 0 : i + 1);
        d = vub_packed_desc_read(vr, i);
    }
    if (err == VUB_OK)
        err = vub_packed_take_id(vr, d.id, e);
    if (err != VUB_OK) {
        vub_inflight_packed_untake(vr, c, taken); /* nothing to do if nothing was taken */
        return err;
    }
    c->head = d.id; /* the buffer id, from the last descriptor */
    vub_packed_advance(&vr->packed.next_avail, &vr->packed.avail_wrap, c->slots, vr->size);
    return VUB_OK;
}

/* Writes a used descriptor; the batch becomes visible at vub_packed_publish.
 * [VQ-PACKED-USED] id and len are stored before flags (release), and the
 * batch's first flags word is held back and stored last, so the driver,
 * which reads in order, never sees a partial batch. WRITE is set iff
 * bytes were written (len is reserved otherwise). */
static void vub_packed_push(struct vub_vring *vr, const struct vub_chain *c, uint32_t len)
{
    uint8_t *d = vr->desc + (size_t)vr->packed.next_used * VIRTQ_DESC_BYTES;
    uint16_t flags = (uint16_t)((vr->packed.used_wrap ? VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED : 0) |
                                (len ? VIRTQ_DESC_F_WRITE : 0));
    vub_put_le32(d + 8, len);
    vub_put_le16(d + 12, c->head);
    if (vr->packed.batch_count == 0) {
        vr->packed.batch_slot = vr->packed.next_used;
        vr->packed.batch_flags = flags;
    } else {
        vub_ring_store16(d + 14, flags, memory_order_release);
    }
    if (vr->inflight.region) {
        vr->scratch.batch_heads[vr->packed.batch_count] = c->inflight_head;
        vr->scratch.batch_lasts[vr->packed.batch_count] = c->inflight_last;
    }
    vr->scratch.batch_ids[vr->packed.batch_count++] = c->head;
    vub_packed_advance(&vr->packed.next_used, &vr->packed.used_wrap, c->slots, vr->size);
}

static void vub_packed_publish(struct vub_vring *vr)
{
    if (vr->packed.batch_count == 0)
        return;
    if (vr->inflight.region)
        vub_inflight_packed_complete(vr);
    vub_ring_store16(vr->desc + (size_t)vr->packed.batch_slot * VIRTQ_DESC_BYTES + 14, vr->packed.batch_flags,
                     memory_order_release);
    if (vr->inflight.region)
        vub_inflight_packed_commit(vr);
    for (unsigned i = 0; i < vr->packed.batch_count; i++) {
        uint16_t id = vr->scratch.batch_ids[i];
        vr->scratch.ids_pending[id / 8] &= (uint8_t)~(1u << (id % 8));
    }
    vr->packed.batch_count = 0;
}

/* The one event-window helper for packed rings, used by both sides: does
 * the peer's event suppression area ask to hear about positions (old, now]?
 * DISABLE no; ENABLE yes; DESC (only with EVENT_IDX, and only once a window
 * exists: `windowed`) if off_wrap's slot lies in the window, in the lap its
 * wrap bit names, where `wrap` is our counter at `now`. The reserved value
 * 3 counts as yes: a spurious notification is harmless, a missing one hangs.
 *
 * Format notes: positions are slots, not free-running indexes, so both the
 * window's start and the event slot are moved back one lap (minus size)
 * when they lie before the wrap, and then vub_need_event's 16-bit window
 * arithmetic holds. */
static bool vub_packed_event_wants(const uint8_t *area, bool windowed, uint16_t old, uint16_t now, bool wrap,
                                   uint16_t size)
{
    uint16_t flags = vub_ring_load16(area + 2, memory_order_relaxed) & 3u;
    if (flags == RING_EVENT_FLAGS_DISABLE)
        return false;
    if (flags != RING_EVENT_FLAGS_DESC || !windowed)
        return true;
    uint16_t off_wrap = vub_ring_load16(area, memory_order_relaxed), off = off_wrap & 0x7fffu;
    if (now <= old)
        old = (uint16_t)(old - size); /* the window crossed the end of the ring */
    if ((off_wrap >> 15) != wrap)
        off = (uint16_t)(off - size); /* off is in the previous lap */
    return vub_need_event(off, now, old);
}

/* Writes our own event suppression area: DESC at position pos of lap wrap
 * with EVENT_IDX, else ENABLE. */
static void vub_packed_event_arm(uint8_t *area, bool event_idx, uint16_t pos, bool wrap)
{
    if (event_idx) {
        vub_ring_store16(area, (uint16_t)(pos | (wrap ? 0x8000u : 0)), memory_order_relaxed);
        vub_ring_store16(area + 2, RING_EVENT_FLAGS_DESC, memory_order_relaxed);
    } else {
        vub_ring_store16(area + 2, RING_EVENT_FLAGS_ENABLE, memory_order_relaxed);
    }
}

/* [VQ-PACKED-NOTIFY] Should the driver hear about the used descriptors
 * published in slots (old, now]? What its event area says. */
static bool vub_packed_need_notify(const struct vub_vring *vr, uint16_t old, uint16_t now, bool valid)
{
    return vub_packed_event_wants(vr->driver, vr->event_idx && valid, old, now, vr->packed.used_wrap, vr->size);
}

/* Asks for a kick at the next descriptor, then reports whether it is
 * already available. [VQ-PACKED-KICK-RACE] the fence pairs with the
 * driver's fence between making a descriptor available and reading our
 * event area. */
static bool vub_packed_enable_kicks(struct vub_vring *vr)
{
    vub_packed_event_arm(vr->device, vr->event_idx, vr->packed.next_avail, vr->packed.avail_wrap);
    atomic_thread_fence(memory_order_seq_cst);
    uint16_t flags = vub_ring_load16(vr->desc + (size_t)vr->packed.next_avail * VIRTQ_DESC_BYTES + 14,
                                     memory_order_acquire);
    return vub_packed_owned(flags, vr->packed.avail_wrap, false);
}

/* Tells the driver not to kick: the device event area says DISABLE. */
static void vub_packed_disable_kicks(struct vub_vring *vr)
{
    vub_ring_store16(vr->device + 2, RING_EVENT_FLAGS_DISABLE, memory_order_relaxed);
}

/* [VU-PACKED-BASE] vhost-user's encoding of a packed ring's position in
 * SET/GET_VRING_BASE: bits 0-14 next available slot, bit 15 driver wrap
 * counter, bits 16-30 next used slot, bit 31 device wrap counter. */
static uint32_t vub_packed_base(const struct vub_vring *vr)
{
    return (uint32_t)vr->packed.next_avail | (uint32_t)vr->packed.avail_wrap << 15 |
           (uint32_t)vr->packed.next_used << 16 | (uint32_t)vr->packed.used_wrap << 31;
}

static bool vub_packed_set_base(struct vub_vring *vr, uint32_t base)
{
    uint16_t avail = base & 0x7fffu, used = (base >> 16) & 0x7fffu;
    if (vr->size && (avail >= vr->size || used >= vr->size))
        return false;
    vr->packed.next_avail = avail;
    vr->packed.avail_wrap = (base >> 15) & 1u;
    vr->packed.next_used = used;
    vr->packed.used_wrap = (base >> 31) & 1u;
    return true;
}

/* ---- Packed virtqueue, driver side (section 6 continued; VIRTIO 1.x
 *      "Supplying Buffers to The Device", "Receiving Used Buffers From The
 *      Device", packed) ----
 *
 * The front-end's half of a packed ring, lined up with the split driver
 * (section 5's table holds, with _packed for _split). Buffer ids are ours
 * to choose: vub hands out ids below the ring size from a free stack, so an
 * id from the device can be checked against a table of what is in flight.
 * Ring slots are counted separately: a buffer takes one slot if it is
 * indirect, else one per descriptor.
 *
 * Format notes:
 *  - The first descriptor's flags are written last (release), and a used
 *    descriptor's id and len read after its flags (acquire).
 *  - With WRITE clear in a used descriptor, len is reserved: count it 0.
 * ---- */

/* Writes one ring descriptor at next_avail and steps past it. The flags
 * word of the list's first descriptor is returned, not written. */
static uint16_t vub_packed_put(struct vub_drv *d, uint64_t addr, uint32_t len, uint16_t id, uint16_t flags,
                               bool first)
{
    uint16_t f = (uint16_t)(flags | (d->pk.avail_wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED));
    uint8_t *p = d->desc + (size_t)d->pk.next_avail * VIRTQ_DESC_BYTES;
    vub_desc_encode(p, addr, len, id, first ? vub_le16(p + 14) : f);
    vub_packed_advance(&d->pk.next_avail, &d->pk.avail_wrap, 1, d->size);
    return f;
}

/* Makes one request available, as vub_split_add_buf() does; *id names it
 * until vub_packed_get_used() returns it. */
static enum vub_err vub_packed_add_buf(struct vub_drv *d, const struct vub_desc *bufs, unsigned count,
                                       uint16_t *id_out)
{
    struct vub_drv_plan p;
    enum vub_err err = vub_drv_plan(d, bufs, count, &p); /* a free slot means a free id too */
    if (err != VUB_OK)
        return err;

    uint16_t id = d->free_link[--d->pk.free_ids], head = d->pk.next_avail, head_flags = 0;
    if (p.indirect) {
        uint64_t table_off = (uint64_t)id * d->indirect_max * VIRTQ_DESC_BYTES;
        for (unsigned i = 0; i < count; i++)
            vub_desc_encode(d->indirect + table_off + (size_t)i * VIRTQ_DESC_BYTES, bufs[i].addr, bufs[i].len, 0,
                            bufs[i].flags);
        head_flags = vub_packed_put(d, d->indirect_addr + table_off, count * VIRTQ_DESC_BYTES, id,
                                    VIRTQ_DESC_F_INDIRECT, true);
    } else {
        for (unsigned i = 0; i < count; i++) {
            uint16_t f = (uint16_t)(bufs[i].flags | (i + 1 < count ? VIRTQ_DESC_F_NEXT : 0));
            uint16_t w = vub_packed_put(d, bufs[i].addr, bufs[i].len, id, f, i == 0);
            if (i == 0)
                head_flags = w;
        }
    }
    d->slots[id] = (struct vub_drv_slot){true, (uint16_t)p.need, 0, (uint32_t)p.writable};
    d->free_count = (uint16_t)(d->free_count - p.need);
    d->in_flight++;
    d->pk.added++;
    /* Release: every other descriptor of the list, and the indirect table,
     * are visible before the first one turns available. Pairs with the
     * acquire in the device's vub_packed_desc_read(). */
    vub_ring_store16(d->desc + (size_t)head * VIRTQ_DESC_BYTES + 14, head_flags, memory_order_release);
    *id_out = id;
    return VUB_OK;
}

/* Must the device be kicked? [VQ-PACKED-KICK] what the device event area
 * says about the slots made available since the last decision. The fence
 * pairs with the one in the device's vub_packed_enable_kicks(). */
static bool vub_packed_kick_needed(struct vub_drv *d)
{
    atomic_thread_fence(memory_order_seq_cst);
    uint16_t old = d->kicked_avail, now = d->pk.next_avail;
    bool added = d->pk.added > 0;
    d->kicked_avail = now;
    d->pk.added = 0;
    return added && vub_packed_event_wants(d->device, d->event_idx, old, now, d->pk.avail_wrap, d->size);
}

/* Takes the next used descriptor. VUB_E_AGAIN if there is none. The device
 * is not trusted: [VQ-PACKED-USED-ID] the id is one we gave and is in
 * flight; [VQ-PACKED-USED-LEN] len is within that buffer's writable bytes.
 * Either breaks the ring for good, with nothing freed. */
static enum vub_err vub_packed_get_used(struct vub_drv *d, uint16_t *id_out, uint32_t *len_out,
                                        struct vub_error *e)
{
    if (d->broken)
        return VUB_E_PROTO;
    const uint8_t *p = d->desc + (size_t)d->pk.next_used * VIRTQ_DESC_BYTES;
    /* Acquire: pairs with the release in the device's vub_packed_push/publish. */
    uint16_t flags = vub_ring_load16(p + 14, memory_order_acquire);
    if (!vub_packed_owned(flags, d->pk.used_wrap, true))
        return VUB_E_AGAIN;
    uint16_t id = vub_le16(p + 12);
    uint32_t len = (flags & VIRTQ_DESC_F_WRITE) ? vub_le32(p + 8) : 0;
    d->broken = true; /* unless both checks pass */
    if (id >= d->size || !d->slots[id].in_flight)
        return vub_fail(e, VUB_R_VQ_PACKED_USED_ID, d->pk.next_used, id);
    struct vub_drv_slot *s = &d->slots[id];
    if (len > s->writable_bytes)
        return vub_fail(e, VUB_R_VQ_PACKED_USED_LEN, len, id);
    d->broken = false;
    vub_packed_advance(&d->pk.next_used, &d->pk.used_wrap, s->desc_count, d->size);
    d->free_count = (uint16_t)(d->free_count + s->desc_count);
    d->free_link[d->pk.free_ids++] = id;
    s->in_flight = false;
    d->in_flight--;
    if (d->event_idx && d->interrupts)
        vub_packed_event_arm(d->driver, true, d->pk.next_used, d->pk.used_wrap);
    *id_out = id;
    *len_out = len;
    return VUB_OK;
}

/* ---- Either layout: the one place the layout is chosen ------------------
 *
 * The back-end (device side) and the front-end (driver side) call these;
 * each picks the split or packed function by the ring's layout. */

static enum vub_err vub_vring_pop(struct vub_vring *vr, const struct vub_mem *mem, struct vub_chain *c,
                                  struct vub_error *e)
{
    return vr->packed_ring ? vub_packed_pop(vr, mem, c, e) : vub_split_pop(vr, mem, c, e);
}

/* Starts a ring: a split ring reads its used index from guest memory;
 * with inflight tracking a fresh region (version 0) is then initialised,
 * and one handed back is checked ([INFL-HEADER]) and recovered from
 * ([INFL-RECOVER]), which may move the ring's positions. */
static enum vub_err vub_vring_start(struct vub_vring *vr, struct vub_error *e)
{
    if (!vr->packed_ring)
        vub_split_start(vr);
    if (!vr->inflight.region)
        return VUB_OK;
    /* features, version and desc_num sit at the same offsets in both layouts */
    struct vub_inflight_split *h = vub_inflight_split(vr);
    if (vub_infl_get16(&h->version) == 0) {
        (vr->packed_ring ? vub_inflight_packed_init : vub_inflight_split_init)(vr);
        vr->inflight.counter = vr->inflight.resubmit_count = vr->inflight.resubmit_at = 0;
        vub_infl_put16(&h->desc_num, vr->inflight.desc_num, memory_order_relaxed);
        /* Last (release): a region that has its version is whole. */
        vub_infl_put16(&h->version, VUB_INFLIGHT_VERSION, memory_order_release);
        return VUB_OK;
    }
    enum vub_err err = vub_inflight_header_ok(vr, vr->inflight.region, e);
    if (err != VUB_OK)
        return err;
    return vr->packed_ring ? vub_inflight_packed_recover(vr, e) : vub_inflight_split_recover(vr, e);
}

static void vub_vring_push(struct vub_vring *vr, const struct vub_chain *c, uint32_t len)
{
    (vr->packed_ring ? vub_packed_push : vub_split_push)(vr, c, len);
}

static void vub_vring_publish(struct vub_vring *vr)
{
    (vr->packed_ring ? vub_packed_publish : vub_split_publish)(vr);
}

/* Should the driver be notified of what was published since the last
 * decision? The full fence pairs with the driver's fence between writing
 * its event suppression and re-reading the ring: either it sees our new
 * entries or we see its new event. */
static bool vub_vring_need_notify(struct vub_vring *vr)
{
    atomic_thread_fence(memory_order_seq_cst);
    uint16_t old = vr->signalled_used, now = vr->packed_ring ? vr->packed.next_used : vr->split.published_used;
    bool valid = vr->signalled_valid;
    vr->signalled_used = now;
    vr->signalled_valid = true;
    return (vr->packed_ring ? vub_packed_need_notify : vub_split_need_notify)(vr, old, now, valid);
}

static bool vub_vring_enable_kicks(struct vub_vring *vr)
{
    return (vr->packed_ring ? vub_packed_enable_kicks : vub_split_enable_kicks)(vr);
}

static void vub_vring_disable_kicks(struct vub_vring *vr)
{
    (vr->packed_ring ? vub_packed_disable_kicks : vub_split_disable_kicks)(vr);
}

/* A driver-side ring of either layout (struct vub_drv, section 5). */
static enum vub_err vub_drv_add(struct vub_drv *d, const struct vub_desc *bufs, unsigned n, uint16_t *head)
{
    return (d->packed ? vub_packed_add_buf : vub_split_add_buf)(d, bufs, n, head);
}

static bool vub_drv_kick_needed(struct vub_drv *d)
{
    return (d->packed ? vub_packed_kick_needed : vub_split_kick_needed)(d);
}

static enum vub_err vub_drv_get_used(struct vub_drv *d, uint16_t *head, uint32_t *len, struct vub_error *e)
{
    return (d->packed ? vub_packed_get_used : vub_split_get_used)(d, head, len, e);
}

/* Notifications from the device are where the layouts differ least, so
 * one function each serves both. */

/* True if the device has used an entry not yet taken: the question a busy
 * poller asks. A relaxed load is enough: get_used loads the used index
 * (split) or the descriptor's flags (packed) again with acquire before it
 * believes the entry. */
static bool vub_drv_used_ready(const struct vub_drv *d)
{
    if (!d->packed)
        return vub_ring_load16(d->device + 2, memory_order_relaxed) != d->split.last_used;
    uint16_t flags = vub_ring_load16(d->desc + (size_t)d->pk.next_used * VIRTQ_DESC_BYTES + 14,
                                     memory_order_relaxed);
    return vub_packed_owned(flags, d->pk.used_wrap, true);
}

/* Re-arms used-buffer notifications before the driver sleeps and reports
 * whether entries arrived meanwhile (then it must not sleep): split, with
 * EVENT_IDX used_event = the next used index, else avail->flags 0; packed,
 * our event area (vub_packed_event_arm). [VQ-SPLIT-IRQ-RACE]
 * [VQ-PACKED-IRQ-RACE] The fence orders that store before the reload of
 * the used position and pairs with the fence in the device's
 * vub_vring_need_notify(): either it sees our request or we see its entry. */
static bool vub_drv_enable_interrupts(struct vub_drv *d)
{
    d->interrupts = true;
    if (d->packed)
        vub_packed_event_arm(d->driver, d->event_idx, d->pk.next_used, d->pk.used_wrap);
    else if (d->event_idx)
        vub_ring_store16(d->driver + 4 + 2 * (size_t)d->size, d->split.last_used, memory_order_relaxed);
    else
        vub_ring_store16(d->driver, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    return vub_drv_used_ready(d);
}

/* Asks the device not to notify (busy polling). Only a hint: split without
 * EVENT_IDX the NO_INTERRUPT flag "SHOULD" be honoured; with it used_event
 * is simply no longer advanced, so at most one more notification comes
 * until the index wraps; packed, the event area says DISABLE. Either way
 * the driver must tolerate spurious ones. */
static void vub_drv_disable_interrupts(struct vub_drv *d)
{
    d->interrupts = false;
    if (d->packed)
        vub_ring_store16(d->driver + 2, RING_EVENT_FLAGS_DISABLE, memory_order_relaxed);
    else if (!d->event_idx)
        vub_ring_store16(d->driver, VIRTQ_AVAIL_F_NO_INTERRUPT, memory_order_relaxed);
}

/* ======================================================================== *
 * 7. virtio-blk requests, device side  (VIRTIO 1.x "Block Device")
 *
 * A request is a 16-byte device-readable header (le32 type; le32 reserved;
 * le64 sector; [BLK-RESERVED] the middle field, legacy ioprio, is ignored),
 * then data, then one device-writable status byte: "the
 * final byte of the device-writable part". [BLK-FRAMING] Nothing says how
 * the driver cuts this into descriptors, so the header is gathered from
 * however many buffers carry it and the status is simply the last writable
 * byte. Sectors are always 512 bytes, whatever blk_size says.
 * ======================================================================== */

/* Request types ("Device Operation") and status values. */
enum {
    VIRTIO_BLK_T_IN = 0, VIRTIO_BLK_T_OUT = 1, VIRTIO_BLK_T_FLUSH = 4,
    VIRTIO_BLK_T_GET_ID = 8, VIRTIO_BLK_T_DISCARD = 11, VIRTIO_BLK_T_WRITE_ZEROES = 13,
};

enum { VIRTIO_BLK_S_OK = 0, VIRTIO_BLK_S_IOERR = 1, VIRTIO_BLK_S_UNSUPP = 2 };

#define VIRTIO_BLK_SECTOR_BYTES 512u
#define VIRTIO_BLK_HDR_BYTES 16u
#define VIRTIO_BLK_ID_BYTES 20u
#define VIRTIO_BLK_SEGMENT_BYTES 16u /* discard / write-zeroes range */
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1u
#define VIRTIO_BLK_CONFIG_BYTES 96u  /* the whole struct virtio_blk_config */

/* Limits vub publishes. [BLK-LIMITS-NONZERO] discard and write-zeroes
 * limits are never 0 (some drivers divide by them). */
#define VUB_BLK_SEG_MAX 126u                 /* data segments: QEMU's default ring 128 - 2 */
#define VUB_BLK_MAX_RANGE_SECTORS (1u << 22) /* 2 GiB per discard/write-zeroes range */
#define VUB_BLK_MAX_RANGES 16u               /* ranges per discard/write-zeroes request */
#define VUB_BLK_RANGE_ALIGN_SECTORS 8u       /* 4 KiB: what a file system can punch */

/* The device half of virtio-blk: its disk and its configuration. */
struct vub_blk {
    struct vub_image *image;
    uint64_t capacity;       /* 512-byte sectors */
    uint16_t num_queues;
    bool read_only;          /* VIRTIO_BLK_F_RO offered */
    uint8_t writeback;       /* config "writeback": 1 = cache on, needs FLUSH */
    bool wce_negotiated;     /* VIRTIO_BLK_F_CONFIG_WCE */
    bool flush_negotiated;   /* VIRTIO_BLK_F_FLUSH */
    char serial[VIRTIO_BLK_ID_BYTES];
};

/* One discard / write-zeroes range, decoded from 16 wire bytes. */
struct vub_blk_range {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

/* Writes the device configuration space, every field little-endian and
 * every unused byte zero ("struct virtio_blk_config"). [BLK-CONFIG] capacity,
 * blk_size 512 and num_queues as configured; [BLK-CONFIG-PAD] the padding
 * bytes unused0 and unused1 are 0. */
static void vub_blk_config_encode(const struct vub_blk *blk, uint8_t cfg[VIRTIO_BLK_CONFIG_BYTES])
{
    memset(cfg, 0, VIRTIO_BLK_CONFIG_BYTES);
    vub_put_le64(cfg + 0, blk->capacity);
    vub_put_le32(cfg + 12, VUB_BLK_SEG_MAX);
    vub_put_le32(cfg + 20, VIRTIO_BLK_SECTOR_BYTES); /* blk_size */
    cfg[32] = blk->writeback;
    vub_put_le16(cfg + 34, blk->num_queues);
    vub_put_le32(cfg + 36, VUB_BLK_MAX_RANGE_SECTORS); /* max_discard_sectors */
    vub_put_le32(cfg + 40, VUB_BLK_MAX_RANGES);        /* max_discard_seg */
    vub_put_le32(cfg + 44, VUB_BLK_RANGE_ALIGN_SECTORS);
    vub_put_le32(cfg + 48, VUB_BLK_MAX_RANGE_SECTORS); /* max_write_zeroes_sectors */
    vub_put_le32(cfg + 52, VUB_BLK_MAX_RANGES);        /* max_write_zeroes_seg */
    cfg[56] = 1;                                       /* write_zeroes_may_unmap */
}

/* Fills the list from src, zero-filling past src_len. */
static void vub_iov_fill(const struct iovec *iov, unsigned count, const void *src, size_t src_len)
{
    struct vub_iov_cursor c = {iov, count, 0, 0};
    uint64_t copied = vub_iov_copy(&c, NULL, src, src_len);
    vub_iov_copy(&c, NULL, NULL, vub_iov_bytes(iov, count) - copied);
}

/* ---- request execution ---- */

/* [BLK-RANGE] a transfer of `bytes` at `sector` must lie inside the disk,
 * checked without overflow, and be whole sectors. */
static bool vub_blk_range_ok(const struct vub_blk *blk, uint64_t sector, uint64_t bytes)
{
    if (bytes % VIRTIO_BLK_SECTOR_BYTES != 0)
        return false;
    uint64_t sectors = bytes / VIRTIO_BLK_SECTOR_BYTES;
    return sector <= blk->capacity && sectors <= blk->capacity - sector;
}

/* [BLK-DURABLE] a completed write must already be stable when the driver
 * cannot ask for a flush: CONFIG_WCE negotiated with writeback 0, or neither
 * FLUSH nor CONFIG_WCE negotiated ("Device Operation", device requirements). */
static bool vub_blk_write_through(const struct vub_blk *blk)
{
    return blk->wce_negotiated ? blk->writeback == 0 : !blk->flush_negotiated;
}

/* Finds the status byte (the last writable byte) and removes it from the
 * writable list. NULL if the chain has no writable byte at all. */
static uint8_t *vub_blk_take_status(struct vub_chain *c)
{
    struct iovec *w = c->iov + c->readable;
    unsigned n = c->writable;
    while (n > 0 && w[n - 1].iov_len == 0)
        n--;
    if (n == 0)
        return NULL;
    struct iovec *last = &w[n - 1];
    uint8_t *status = (uint8_t *)last->iov_base + last->iov_len - 1;
    last->iov_len--;
    c->writable = last->iov_len ? n : n - 1;
    c->writable_bytes--;
    return status;
}

/* ---- Requests in two steps: decode, then carry out ----
 * vub_blk_prepare() copies the header out, checks everything a request
 * says against the disk, and either completes it at once (GET_ID, discard,
 * write-zeroes, every malformed request) or leaves a checked transfer for
 * an engine: a read, a write or a flush. vub_blk_finish() writes the status
 * and counts the result. The synchronous engine (vub_blk_execute, the
 * reference) runs the transfer in between with vub_blk_io_sync(); the
 * io_uring engine (section 12) submits it and finishes on its completion,
 * in whatever order completions come. Both share every check. */

#define VUB_BLK_T_NONE 0xffffffffu /* no header read (the request is malformed) */
#define VUB_BOUNCE_BYTES (128u << 10) /* one bounce buffer */
#define VUB_BOUNCE_COUNT 16u          /* per queue; buffer 0 is the synchronous reserve */

/* What one queue brings to the requests it runs: its own counters and, for
 * a disk opened O_DIRECT, its bounce buffers, so that queues served by
 * different threads share nothing they write. */
struct vub_blk_queue {
    struct vub_dev_stats *stats; /* this queue's counters */
    uint8_t *bounce;             /* VUB_BOUNCE_COUNT page-aligned buffers; NULL if not direct */
    uint32_t bounce_free;        /* bit i set: pool buffer i is free (bit 0, the reserve, is never
                                    handed out) */
};

/* A request decoded and checked. */
struct vub_blk_req {
    uint32_t type;         /* VIRTIO_BLK_T_*, or VUB_BLK_T_NONE */
    uint8_t *status;       /* the status byte in guest memory; NULL if the chain has none */
    bool io;               /* a read, write or fdatasync is due: the engine's to do */
    bool write_through;    /* a write that must be stable before it completes ([BLK-DURABLE]) */
    enum vub_err err;      /* the result, when no I/O is due */
    uint64_t offset;       /* disk bytes (read, write) */
    struct iovec *iov;     /* the data buffers (read: writable, write: readable); guest memory */
    unsigned count;
    uint64_t bytes;
    uint64_t data_in;      /* bytes the device writes into the guest (read, GET_ID) */
    int bounce;            /* the pool buffer carrying the data; -1 if none */
};

static bool vub_image_direct_ok(const struct vub_image *img, const struct iovec *iov, unsigned count);

/* The I/O a request leaves is an fdatasync: a FLUSH, or a discard or
 * write-zeroes done with the write cache off. */
static bool vub_blk_req_syncs(const struct vub_blk_req *r)
{
    return r->type == VIRTIO_BLK_T_FLUSH || r->type == VIRTIO_BLK_T_DISCARD || r->type == VIRTIO_BLK_T_WRITE_ZEROES;
}

/* Copies and checks every range before acting on any: the guest could
 * change its buffer between two reads, and a bad last range should not
 * leave the first ones done. [BLK-DISCARD] whole 16-byte ranges, at most
 * VUB_BLK_MAX_RANGES. [BLK-DISCARD-FLAGS] unknown flags, or UNMAP on
 * a discard, are UNSUPP; [BLK-WZ-UNMAP] write-zeroes may carry UNMAP. */
static enum vub_err vub_blk_ranges(struct vub_blk *blk, struct vub_blk_queue *bq, uint32_t type,
                                   const struct iovec *iov, unsigned count, uint64_t bytes)
{
    struct vub_blk_range r[VUB_BLK_MAX_RANGES];
    uint32_t allowed = type == VIRTIO_BLK_T_WRITE_ZEROES ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
    if (blk->read_only)
        return VUB_E_RDONLY;
    if (bytes == 0 || bytes % VIRTIO_BLK_SEGMENT_BYTES != 0 ||
        bytes / VIRTIO_BLK_SEGMENT_BYTES > VUB_BLK_MAX_RANGES)
        return VUB_E_RANGE;
    unsigned n = (unsigned)(bytes / VIRTIO_BLK_SEGMENT_BYTES);
    struct vub_iov_cursor cur = {iov, count, 0, 0};
    for (unsigned i = 0; i < n; i++) {
        uint8_t raw[VIRTIO_BLK_SEGMENT_BYTES];
        vub_iov_copy(&cur, raw, NULL, sizeof raw);
        r[i] = (struct vub_blk_range){vub_le64(raw), vub_le32(raw + 8), vub_le32(raw + 12)};
        if (r[i].flags & ~allowed)
            return VUB_E_UNSUPP;
        if (r[i].num_sectors > VUB_BLK_MAX_RANGE_SECTORS ||
            !vub_blk_range_ok(blk, r[i].sector, (uint64_t)r[i].num_sectors * VIRTIO_BLK_SECTOR_BYTES))
            return VUB_E_RANGE;
    }
    for (unsigned i = 0; i < n; i++) {
        uint64_t off = r[i].sector * VIRTIO_BLK_SECTOR_BYTES;
        uint64_t len = (uint64_t)r[i].num_sectors * VIRTIO_BLK_SECTOR_BYTES;
        enum vub_err err = type == VIRTIO_BLK_T_DISCARD
                               ? vub_image_discard(blk->image, off, len)
                               : vub_image_write_zeroes(blk->image, off, len,
                                                        r[i].flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
        if (err != VUB_OK)
            return err;
    }
    if (type == VIRTIO_BLK_T_DISCARD)
        bq->stats->discards++;
    else
        bq->stats->write_zeroes++;
    return VUB_OK; /* [BLK-DURABLE] the engine makes it durable when the cache is off */
}

/* Decodes and checks the chain's request. [BLK-SEG-MAX] more data segments
 * than the seg_max we advertise (a header and a status descriptor
 * besides), or more iovecs than we keep: refused as a whole, the status
 * byte being the chain's last writable byte, found during the walk, since
 * the iovecs may have stopped short of it. [BLK-NO-STATUS] a chain with no
 * writable byte cannot carry a status: it completes with length 0, counted
 * as an error. */
static void vub_blk_prepare(struct vub_blk *blk, struct vub_blk_queue *bq, struct vub_chain *c,
                            struct vub_blk_req *r)
{
    uint8_t hdr[VIRTIO_BLK_HDR_BYTES];
    *r = (struct vub_blk_req){.type = VUB_BLK_T_NONE, .status = vub_blk_take_status(c), .bounce = -1};
    bq->stats->requests++;
    if (c->too_many_segments || c->descriptors > VUB_BLK_SEG_MAX + 2) {
        r->status = c->last_writable;
        r->err = VUB_E_RANGE;
        return;
    }
    if (!r->status || c->readable_bytes < VIRTIO_BLK_HDR_BYTES) {
        r->err = VUB_E_RANGE; /* [BLK-SHORT-HDR] */
        return;
    }
    /* Copy the header out, then drop it from the front of the list. */
    unsigned rcount = c->readable, wcount = c->writable;
    struct iovec *rd = c->iov, *wr = c->iov + c->readable;
    struct vub_iov_cursor cur = {rd, rcount, 0, 0};
    vub_iov_copy(&cur, hdr, NULL, sizeof hdr);
    rd += cur.index;
    rcount -= cur.index;
    if (rcount > 0) {
        rd->iov_base = (uint8_t *)rd->iov_base + cur.at;
        rd->iov_len -= cur.at;
    }
    uint64_t rbytes = c->readable_bytes - VIRTIO_BLK_HDR_BYTES, wbytes = c->writable_bytes;
    uint64_t sector = vub_le64(hdr + 8);
    r->type = vub_le32(hdr);
    r->offset = sector * VIRTIO_BLK_SECTOR_BYTES;
    switch (r->type) {
    case VIRTIO_BLK_T_IN:
        /* [BLK-IN] a read returns the disk's bytes with status OK; a failed
         * one zero-fills the buffers so the used length stays true. */
        bq->stats->reads++;
        *r = (struct vub_blk_req){VIRTIO_BLK_T_IN, r->status, true, false, VUB_OK, r->offset, wr, wcount,
                                  wbytes, wbytes, -1};
        if (!vub_blk_range_ok(blk, sector, wbytes))
            r->io = false, r->err = VUB_E_RANGE;
        break;
    case VIRTIO_BLK_T_OUT:
        /* [BLK-OUT] writes go from guest memory straight to the image;
         * [BLK-DATA] once acknowledged they are there. [BLK-RO] a read-only
         * device fails every write and writes nothing. [BLK-OUT-DIR] the
         * data of a write is device-readable; a writable data buffer is a
         * driver error, not an empty write. */
        r->err = wbytes ? VUB_E_RANGE : blk->read_only ? VUB_E_RDONLY
                 : !vub_blk_range_ok(blk, sector, rbytes) ? VUB_E_RANGE : VUB_OK;
        if (r->err == VUB_OK) {
            bq->stats->writes++;
            *r = (struct vub_blk_req){VIRTIO_BLK_T_OUT, r->status, true, vub_blk_write_through(blk), VUB_OK,
                                      r->offset, rd, rcount, rbytes, 0, -1};
        }
        break;
    case VIRTIO_BLK_T_FLUSH:
        bq->stats->flushes++;
        r->io = true;
        break;
    case VIRTIO_BLK_T_GET_ID:
        /* [BLK-GET-ID] up to 20 bytes, NUL-padded, no terminator needed. */
        bq->stats->get_ids++;
        vub_iov_fill(wr, wcount, blk->serial, sizeof blk->serial);
        r->data_in = wbytes;
        break;
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        /* The ranges are done here (fallocate); with the write cache off
         * an fdatasync is due before completion, the engine's to run. */
        r->err = vub_blk_ranges(blk, bq, r->type, rd, rcount, rbytes);
        r->io = r->err == VUB_OK && vub_blk_write_through(blk);
        break;
    default:
        r->err = VUB_E_UNSUPP; /* [BLK-UNSUPP]; [BLK-ZONED-UNSUPP] zone requests too */
        break;
    }
}

/* Writes the status of a request whose I/O ended with err (or that had
 * none), counts it, and returns the used length: the bytes written into
 * the chain's writable part, status byte included. [VQ-READABLE-RO]
 * nothing is ever written into the readable part. The data bytes of a read
 * count as written even when it failed: they were zero-filled. */
static uint32_t vub_blk_finish(struct vub_blk_queue *bq, struct vub_blk_req *r, enum vub_err err)
{
    if (r->type == VIRTIO_BLK_T_IN && err != VUB_OK)
        vub_iov_fill(r->iov, r->count, NULL, 0); /* never hand back stale guest bytes */
    else if (r->type == VIRTIO_BLK_T_IN && r->iov)
        bq->stats->bytes_read += r->bytes;
    else if (r->type == VIRTIO_BLK_T_OUT && err == VUB_OK && r->io)
        bq->stats->bytes_written += r->bytes;
    if (r->bounce >= 0)
        bq->bounce_free |= 1u << r->bounce;
    r->bounce = -1;
    if (err != VUB_OK)
        bq->stats->errors++;
    if (!r->status)
        return 0;
    *r->status = err == VUB_OK         ? VIRTIO_BLK_S_OK
                 : err == VUB_E_UNSUPP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR;
    uint64_t used = r->data_in + 1;
    return used > UINT32_MAX ? UINT32_MAX : (uint32_t)used;
}

static uint8_t *vub_blk_bounce_buf(const struct vub_blk_queue *bq, int i)
{
    return bq->bounce + (size_t)i * VUB_BOUNCE_BYTES;
}

/* [BLK-BOUNCE] A disk opened O_DIRECT takes only buffers aligned as its
 * file system asks; guest buffers need not be. Such a transfer goes
 * through the queue's reserve bounce buffer, one VUB_BOUNCE_BYTES piece at
 * a time, copied to or from guest memory (stats.bounced counts them). */
static enum vub_err vub_blk_bounce_sync(struct vub_blk *blk, struct vub_blk_queue *bq, const struct vub_blk_req *r)
{
    struct vub_iov_cursor cur = {r->iov, r->count, 0, 0};
    uint8_t *buf = vub_blk_bounce_buf(bq, 0);
    bool write = r->type == VIRTIO_BLK_T_OUT;
    bq->stats->bounced++;
    for (uint64_t done = 0; done < r->bytes;) {
        size_t n = (size_t)VUB_MIN(r->bytes - done, VUB_BOUNCE_BYTES);
        struct iovec piece = {buf, n};
        if (write)
            vub_iov_copy(&cur, buf, NULL, n);
        enum vub_err err = write ? vub_image_writev(blk->image, r->offset + done, &piece, 1)
                                 : vub_image_readv(blk->image, r->offset + done, &piece, 1);
        if (err != VUB_OK)
            return err;
        if (!write)
            vub_iov_copy(&cur, NULL, buf, n);
        done += n;
    }
    return VUB_OK;
}

/* The synchronous engine's transfer: the reference the io_uring engine is
 * tested against. [BLK-DURABLE] a write-through write is followed by
 * fdatasync before it completes. */
static enum vub_err vub_blk_io_sync(struct vub_blk *blk, struct vub_blk_queue *bq, const struct vub_blk_req *r)
{
    enum vub_err err;
    if (vub_blk_req_syncs(r))
        return vub_image_flush(blk->image);
    if (bq->bounce && !vub_image_direct_ok(blk->image, r->iov, r->count))
        err = vub_blk_bounce_sync(blk, bq, r);
    else if (r->type == VIRTIO_BLK_T_IN)
        err = vub_image_readv(blk->image, r->offset, r->iov, (int)r->count);
    else
        err = vub_image_writev(blk->image, r->offset, r->iov, (int)r->count);
    if (err == VUB_OK && r->write_through)
        err = vub_image_flush(blk->image);
    return err;
}

/* Executes one request synchronously, writes its status and returns the
 * used length (vub_blk_finish). */
static uint32_t vub_blk_execute(struct vub_blk *blk, struct vub_blk_queue *bq, struct vub_chain *c)
{
    struct vub_blk_req r;
    vub_blk_prepare(blk, bq, c, &r);
    return vub_blk_finish(bq, &r, r.io ? vub_blk_io_sync(blk, bq, &r) : r.err);
}

/* ======================================================================== *
 * 8. Images: the image layer (format probing, locks) and raw images
 *
 * An image is what the back-end exports: a virtual disk of `size` bytes.
 * Raw images map disk bytes to file bytes one to one, so reads and writes
 * go straight between the file and guest memory with preadv/pwritev, with
 * no copy in between. [IMG-RAW-SIZE] the capacity is the file size rounded
 * down to whole 512-byte sectors; a partial last sector is not exported.
 * qcow2 images (section 9) are read-only and map clusters to file offsets.
 * Opening probes the format ([IMG-PROBE-FOREIGN]) and locks the file the
 * way QEMU does ([IMG-LOCK]), whatever the format.
 * ======================================================================== */

struct vub_qcow2;

struct vub_image {
    enum vub_format format;  /* RAW or QCOW2, never AUTO once open */
    int fd;                  /* the image file */
    uint64_t size;           /* virtual disk bytes */
    bool read_only;          /* opened O_RDONLY; writes fail */
    bool direct;             /* opened O_DIRECT ([IMG-DIRECT]) */
    bool in_memory;          /* the file is on tmpfs or ramfs: reading it is a copy */
    uint32_t dio_mem_bytes;  /* ... buffer addresses and lengths must be multiples of this */
    struct vub_qcow2 *qcow2; /* qcow2 state; NULL for raw */
};

/* Provided by the qcow2, inflate and zstd sections further down. */
static int vub_inflate(uint8_t *dst, size_t dst_len, size_t *dst_done, const uint8_t *src, size_t src_len,
                       size_t *src_done);
static const char *vub_inflate_strerror(int result);
struct vub_zstd_work;
static struct vub_zstd_work *vub_zstd_work_new(size_t dst_len);
static int vub_zstd_decompress(uint8_t *dst, size_t dst_len, size_t *dst_done, const uint8_t *src,
                               size_t src_len, size_t *src_done, struct vub_zstd_work *w);
static const char *vub_zstd_strerror(int result);
static enum vub_err vub_qcow2_open(struct vub_image *img, const char *path, const struct vub_image_opts *opts,
                                   struct vub_image **out, char *why, size_t why_len);
static enum vub_err vub_qcow2_readv(struct vub_image *img, uint64_t off, const struct iovec *iov, int count);
static void vub_qcow2_close(struct vub_image *img);

#define VUB_QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */

/* Moves the bytes of the list between guest memory and the file. A read
 * that meets the end of the file (it shrank under us) is an error: raw
 * images have no holes past their size. */
static enum vub_err vub_raw_xfer(int fd, bool write, uint64_t off, const struct iovec *iov, int count)
{
    uint64_t done = 0;
    enum vub_err err = vub_sys_xfer(fd, write, (int64_t)off, iov, (unsigned)count, NULL, NULL, &done, NULL);
    return err == VUB_OK && done < vub_iov_bytes(iov, (unsigned)count) ? VUB_E_IO : err;
}

/* Writes zeros the slow way, from a constant buffer: no allocation. */
static enum vub_err vub_raw_write_zeros(int fd, uint64_t off, uint64_t len)
{
    static _Alignas(4096) const uint8_t zeros[65536]; /* aligned for O_DIRECT */
    enum vub_err err = VUB_OK;
    for (size_t n; len > 0 && err == VUB_OK; off += n, len -= n) {
        n = (size_t)VUB_MIN(len, sizeof zeros);
        struct iovec iov = {.iov_base = (void *)(uintptr_t)zeros, .iov_len = n};
        err = vub_raw_xfer(fd, true, off, &iov, 1);
    }
    return err;
}

/* ---- Format probing ----
 * [IMG-PROBE-FOREIGN] A file is qcow2 if it starts with the qcow2 magic and
 * a version above 1. A file that starts with another image format's magic
 * is not taken as raw: served raw, a guest would see (and could overwrite)
 * that format's metadata. It is refused, naming the format, unless the
 * caller asks for RAW explicitly. The magics are those each format's own
 * specification puts first in the file (VDI's signature is at byte 64). */
static const struct vub_foreign_magic {
    const char *name;
    uint32_t offset;     /* where the magic is */
    const char *bytes;   /* the magic itself */
    uint32_t len;
} vub_foreign_magics[] = {
    {"qcow (version 1)", 0, "QFI\xfb", 4}, /* a qcow2 magic with a version below 2 */
    {"VMDK (sparse extent)", 0, "KDMV", 4}, {"VMDK (ESX COW disk)", 0, "COWD", 4},
    {"VMDK (text descriptor)", 0, "# Disk DescriptorFile", 21}, {"VHDX", 0, "vhdxfile", 8},
    {"VDI", 64, "\x7f\x10\xda\xbe", 4}, /* 0xbeda107f, little-endian */
    {"QED", 0, "QED\0", 4}, {"VPC/VHD", 0, "conectix", 8}, {"LUKS", 0, "LUKS\xba\xbe", 6},
};

#define VUB_PROBE_BYTES 72u /* covers every magic above */

/* Tells qcow2 from raw by the first bytes, and refuses another known
 * format found instead. */
static enum vub_err vub_image_probe(struct vub_image *img, struct vub_error *e)
{
    uint8_t head[VUB_PROBE_BYTES];
    img->format = VUB_FORMAT_RAW;
    if (vub_sys_pread_zero(img->fd, head, sizeof head, 0, NULL) != VUB_OK)
        return VUB_OK;
    if (vub_be32(head) == VUB_QCOW2_MAGIC && vub_be32(head + 4) >= 2)
        img->format = VUB_FORMAT_QCOW2;
    for (size_t i = 0; img->format == VUB_FORMAT_RAW && i < VUB_ARRAY_LEN(vub_foreign_magics); i++) {
        const struct vub_foreign_magic *m = &vub_foreign_magics[i];
        if (memcmp(head + m->offset, m->bytes, m->len) == 0)
            return vub_fail(e, VUB_R_IMG_PROBE_FOREIGN, i, 0);
    }
    return VUB_OK;
}

/* ---- Image locks ----
 * [IMG-LOCK] vub takes the byte-range locks QEMU's file driver takes
 * (RAW_LOCK_PERM_BASE, RAW_LOCK_SHARED_BASE), so that QEMU, qemu-img,
 * qemu-storage-daemon and vub all see each other. Every block permission
 * has a bit: 0 consistent read, 1 write, 2 write unchanged, 3 resize. An
 * open file holds a shared lock on byte 100 + bit for each permission it
 * uses, and on byte 200 + bit for each permission it does not let others
 * have. Opening conflicts if another open file holds byte 200 + bit for a
 * permission we use, or byte 100 + bit for one we do not share. Our bytes
 * are taken before the check (as QEMU does), so two openers racing each
 * other cannot both miss the other.
 *   vub reading:  uses read;         shares read, write unchanged
 *   vub writing:  uses read, write;  shares read, write unchanged
 *   force_share:  uses read;         shares everything (qemu-img -U)
 * Backing files and data files are read. A file system without OFD locks
 * is served unlocked, as QEMU's locking=auto does. */
enum {
    VUB_PERM_CONSISTENT_READ_BIT = 0,
    VUB_PERM_WRITE_BIT = 1,
    VUB_PERM_WRITE_UNCHANGED_BIT = 2,
    VUB_PERM_RESIZE_BIT = 3,
    VUB_PERM_BITS = 4,
};
#define VUB_LOCK_PERM_BASE 100u   /* byte 100 + bit: "I use this permission" */
#define VUB_LOCK_SHARED_BASE 200u /* byte 200 + bit: "nobody else may use it" */

static const char *const vub_perm_names[VUB_PERM_BITS] = {"consistent read", "write", "write unchanged",
                                                          "resize"};

static enum vub_err vub_image_lock(int fd, bool write, bool force_share, struct vub_error *e)
{
    unsigned used = 1u << VUB_PERM_CONSISTENT_READ_BIT | (write ? 1u << VUB_PERM_WRITE_BIT : 0);
    unsigned unshared = force_share ? 0 : 1u << VUB_PERM_WRITE_BIT | 1u << VUB_PERM_RESIZE_BIT;
    for (unsigned bit = 0; bit < VUB_PERM_BITS; bit++) {
        int err = 0;
        if (used & 1u << bit)
            err = vub_sys_lock_byte(fd, VUB_LOCK_PERM_BASE + bit);
        if (err == 0 && unshared & 1u << bit)
            err = vub_sys_lock_byte(fd, VUB_LOCK_SHARED_BASE + bit);
        if (err == EINVAL || err == ENOLCK || err == EOPNOTSUPP)
            return VUB_OK; /* no OFD locks here: unlocked, as QEMU's locking=auto */
        if (err != 0)
            return vub_fail(e, VUB_R_IMG_LOCK_FAIL, VUB_LOCK_PERM_BASE + bit, (uint64_t)err);
    }
    for (unsigned bit = 0; bit < VUB_PERM_BITS; bit++)
        if ((used & 1u << bit && vub_sys_byte_held_elsewhere(fd, VUB_LOCK_SHARED_BASE + bit)) ||
            (unshared & 1u << bit && vub_sys_byte_held_elsewhere(fd, VUB_LOCK_PERM_BASE + bit)))
            return vub_fail(e, VUB_R_IMG_BUSY, bit, 0);
    return VUB_OK;
}

/* ---- Names for numbers, and the one formatter ----
 * A reason whose text has "%s" prints its first number as a name: an image
 * format vub recognises, a lock permission or, for every other such reason,
 * a request code. */
static const char *vub_reason_a_name(enum vub_reason reason, uint64_t a, char num[24])
{
    const char *name;
    if (!strstr(vub_reasons[reason].text, "%s"))
        return NULL;
    if (reason == VUB_R_IMG_PROBE_FOREIGN)
        name = a < VUB_ARRAY_LEN(vub_foreign_magics) ? vub_foreign_magics[a].name : NULL;
    else if (reason == VUB_R_IMG_BUSY)
        name = a < VUB_PERM_BITS ? vub_perm_names[a] : NULL;
    else
        name = a < VHOST_USER_REQUEST_COUNT ? vub_vu_request_names[a] : NULL;
    if (!name)
        snprintf(num, 24, "%llu", (unsigned long long)a);
    return name ? name : num;
}

static void vub_error_format(const struct vub_error *e, const char *prefix, char *buf, size_t len)
{
    enum vub_reason reason = e->reason < VUB_R_COUNT ? e->reason : VUB_R_NONE;
    const struct vub_reason_row *r = &vub_reasons[reason];
    char num[24];
    const char *name = vub_reason_a_name(reason, e->a, num);
    if (!buf || len == 0)
        return;
    int n = snprintf(buf, len, "%s%s", prefix ? prefix : "", prefix && prefix[0] ? ": " : "");
    if (n >= 0 && (size_t)n < len && name)
        n += snprintf(buf + n, len - (size_t)n, r->text, name, (unsigned long long)e->b);
    else if (n >= 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, r->text, (unsigned long long)e->a, (unsigned long long)e->b);
    if (r->err == VUB_E_IO && e->b != 0 && n >= 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, ": %s", strerror((int)e->b));
    if (reason == VUB_R_QCOW2_INFLATE && n >= 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, ": %s", vub_inflate_strerror((int)e->b));
    if (reason == VUB_R_QCOW2_ZSTD && n >= 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, ": %s", vub_zstd_strerror((int)e->b));
    if (r->tag[0] && n >= 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, " [%s]", r->tag);
}

/* Opens the probed file again as the caller asked: for writing (a raw
 * image; vub never writes qcow2), or [IMG-DIRECT] with O_DIRECT (QEMU's
 * cache=none), which the probe cannot use (it reads into an unaligned
 * buffer). vub's sectors are 512 bytes, so a file whose direct I/O wants
 * larger offsets (a 4 KiB-sector disk) is refused; buffers the file system
 * wants aligned more than the guest's are bounced by the device
 * ([BLK-BOUNCE]). qcow2 metadata is read into unaligned caches: refused. */
static enum vub_err vub_image_reopen(struct vub_image *img, const char *path, bool write, bool direct,
                                     struct vub_error *e)
{
    uint32_t offset_bytes = 0;
    if (direct && img->format != VUB_FORMAT_RAW)
        return vub_fail(e, VUB_R_IMG_DIRECT_QCOW2, 0, 0);
    int fd = direct ? vub_sys_open_direct(path, !write) : vub_sys_open(path, !write);
    if (fd < 0)
        return vub_fail(e, direct ? VUB_R_IMG_DIRECT_OPEN : VUB_R_IMG_OPEN, 0, (uint64_t)errno);
    vub_sys_close(&img->fd);
    img->fd = fd;
    img->direct = direct;
    if (direct && (!vub_sys_dio_align(fd, &img->dio_mem_bytes, &offset_bytes) ||
                   offset_bytes > VIRTIO_BLK_SECTOR_BYTES))
        return vub_fail(e, VUB_R_IMG_DIRECT_ALIGN, offset_bytes, 0);
    return VUB_OK;
}

/* Can the list go to a direct image as it is? Every buffer's address and
 * length a multiple of the file system's alignment; always for a cached
 * image. */
static bool vub_image_direct_ok(const struct vub_image *img, const struct iovec *iov, unsigned count)
{
    uint32_t align = VUB_MAX(img->dio_mem_bytes, VIRTIO_BLK_SECTOR_BYTES);
    for (unsigned i = 0; img->direct && i < count; i++)
        if ((uintptr_t)iov[i].iov_base % align || iov[i].iov_len % align)
            return false;
    return true;
}

enum vub_err vub_image_open(struct vub_image **out, const char *path,
                            const struct vub_image_opts *opts, char *why, size_t why_len)
{
    static const struct vub_image_opts defaults;
    struct vub_error e = {VUB_R_NONE, 0, 0};
    if (!out || !path)
        return VUB_E_INVAL;
    if (!opts)
        opts = &defaults;
    *out = NULL;
    struct vub_image *img = calloc(1, sizeof *img);
    if (!img)
        return VUB_E_NOMEM;
    img->read_only = opts->read_only;
    img->fd = vub_sys_open(path, true); /* to probe; vub_image_reopen() opens it as asked */
    enum vub_err err = img->fd < 0 ? vub_fail(&e, VUB_R_IMG_OPEN, 0, (uint64_t)errno) : VUB_OK;
    img->format = opts->format;
    if (err == VUB_OK && opts->format == VUB_FORMAT_AUTO)
        err = vub_image_probe(img, &e);
    bool write = img->format == VUB_FORMAT_RAW && !opts->read_only;
    if (err == VUB_OK && (write || opts->direct))
        err = vub_image_reopen(img, path, write, opts->direct, &e);
    if (err == VUB_OK)
        err = vub_image_lock(img->fd, write, opts->force_share && !write, &e);
    if (err == VUB_OK && img->format == VUB_FORMAT_QCOW2)
        return vub_qcow2_open(img, path, opts, out, why, why_len);
    /* [IMG-RAW-SIZE] whole sectors only */
    if (err == VUB_OK && !vub_sys_stat(img->fd, true, &img->size, NULL, NULL))
        err = vub_fail(&e, VUB_R_IMG_KIND, 0, (uint64_t)errno);
    if (err != VUB_OK) {
        vub_error_format(&e, path, why, why_len);
        vub_image_close(img);
        return err;
    }
    img->size -= img->size % VIRTIO_BLK_SECTOR_BYTES;
    img->in_memory = vub_sys_in_memory(img->fd);
    *out = img;
    return VUB_OK;
}

void vub_image_close(struct vub_image *img)
{
    if (!img)
        return;
    vub_qcow2_close(img); /* nothing for raw */
    vub_sys_close(&img->fd);
    free(img);
}

/* [BLK-RESIZE] a raw image may grow under a running device; it may not
 * shrink, since the driver may hold data past the new end. */
enum vub_err vub_image_refresh_size(struct vub_image *img, char *why, size_t why_len)
{
    struct vub_error e = {VUB_R_NONE, 0, 0};
    uint64_t bytes = 0;
    enum vub_err err = VUB_OK;
    if (!img)
        return VUB_E_INVAL;
    if (img->format != VUB_FORMAT_RAW)
        err = vub_fail(&e, VUB_R_IMG_RESIZE_QCOW2, 0, 0);
    else if (!vub_sys_stat(img->fd, true, &bytes, NULL, NULL))
        err = vub_fail(&e, VUB_R_IMG_KIND, 0, (uint64_t)errno);
    else if ((bytes -= bytes % VIRTIO_BLK_SECTOR_BYTES) < img->size)
        err = vub_fail(&e, VUB_R_IMG_SHRANK, img->size, bytes);
    if (err != VUB_OK)
        vub_error_format(&e, NULL, why, why_len);
    else
        img->size = bytes;
    return err;
}

uint64_t vub_image_size(const struct vub_image *img) { return img->size; }
bool vub_image_read_only(const struct vub_image *img) { return img->read_only; }
enum vub_format vub_image_format(const struct vub_image *img) { return img->format; }

enum vub_err vub_image_readv(struct vub_image *img, uint64_t off, const struct iovec *iov, int count)
{
    if (count < 0 || !vub_range_ok(off, vub_iov_bytes(iov, (unsigned)count), img->size))
        return VUB_E_RANGE;
    if (img->format == VUB_FORMAT_QCOW2)
        return vub_qcow2_readv(img, off, iov, count);
    return vub_raw_xfer(img->fd, false, off, iov, count);
}

/* A write of len bytes at off may go ahead: a writable raw image, and the
 * range inside the disk. */
static enum vub_err vub_image_check_write(const struct vub_image *img, uint64_t off, uint64_t len)
{
    if (img->read_only || img->format != VUB_FORMAT_RAW)
        return VUB_E_RDONLY;
    return vub_range_ok(off, len, img->size) ? VUB_OK : VUB_E_RANGE;
}

enum vub_err vub_image_writev(struct vub_image *img, uint64_t off, const struct iovec *iov, int count)
{
    enum vub_err err = count < 0 ? VUB_E_RANGE : vub_image_check_write(img, off, vub_iov_bytes(iov, (unsigned)count));
    return err != VUB_OK ? err : vub_raw_xfer(img->fd, true, off, iov, count);
}

/* [BLK-FLUSH] FLUSH is fdatasync: when it returns, every write that
 * completed before it is on stable storage. Its failure is reported. */
enum vub_err vub_image_flush(struct vub_image *img)
{
    return img->read_only ? VUB_OK : vub_sys_fdatasync(img->fd);
}

/* Discard is a hint: a file system that cannot punch holes keeps the data,
 * which is allowed ("the device MAY ... not deallocate"). */
enum vub_err vub_image_discard(struct vub_image *img, uint64_t off, uint64_t len)
{
    enum vub_err err = vub_image_check_write(img, off, len);
    if (err != VUB_OK || len == 0 || vub_sys_fallocate(img->fd, true, off, len))
        return err;
    return errno == EOPNOTSUPP ? VUB_OK : VUB_E_IO;
}

/* [BLK-WZ] write-zeroes must read back as zeros afterwards. Punching a hole does
 * that and frees space (allowed when the driver says UNMAP); ZERO_RANGE
 * keeps the space allocated; a file system with neither gets written zeros. */
enum vub_err vub_image_write_zeroes(struct vub_image *img, uint64_t off, uint64_t len, bool may_unmap)
{
    enum vub_err err = vub_image_check_write(img, off, len);
    if (err != VUB_OK || len == 0 || vub_sys_fallocate(img->fd, may_unmap, off, len))
        return err;
    return errno == EOPNOTSUPP || errno == EINVAL ? vub_raw_write_zeros(img->fd, off, len) : VUB_E_IO;
}

/* ======================================================================== *
 * 9. qcow2 images, read-only  (QEMU docs/interop/qcow2.txt)
 *
 * A qcow2 file is cut into clusters of 2^cluster_bits bytes. Cluster 0
 * holds the header, the header extensions and the backing file name. The
 * virtual disk is mapped in two levels ("Cluster mapping"): the L1 table, a
 * contiguous run of big-endian 64-bit entries, points at L2 tables of one
 * cluster each, whose entries say where each guest cluster is:
 *
 *   guest offset = | l1_index | l2_index | offset in cluster |
 *                               (l2_bits)   (cluster_bits)
 *
 * An L2 entry describes a plain cluster (in the image, or in an external
 * data file), a compressed cluster, a cluster that reads as zeros, or
 * nothing, and then the backing file (or zeros) shows through. With
 * extended L2 entries a cluster has 32 subclusters, each with its own
 * "allocated" and "reads as zeros" bits.
 *
 * vub reads qcow2 and never writes it. Refcounts, lazy refcounts, the dirty
 * bit and bitmaps describe host allocation and change tracking, not the
 * disk's contents, so the L1/L2 tables alone decide what the guest reads.
 *
 * The image is input from someone else. Every value read from it is checked
 * before use: offsets, sizes and shifts go through checked arithmetic,
 * tables must lie inside the file, reserved bits must be zero, and memory is
 * sized at open from bounded fields (the L1 table at most 32 MiB as in QEMU,
 * an L2 cache of a fixed number of clusters, one compressed cluster), never
 * per request. Paths the image names (backing file, data file) are opened
 * only when their format is known and, for data files, when the caller
 * allows it: an image must not make vub open any file it likes.
 * ======================================================================== */

/* ---- 9.1 Header ("Header") ------------------------------------------------ */

#define VUB_QCOW2_V2_HEADER_BYTES 72u
#define VUB_QCOW2_V3_HEADER_BYTES 104u   /* through header_length */
#define VUB_QCOW2_HEADER_READ_BYTES 112u /* v3 header with compression_type, padded */
#define VUB_QCOW2_MIN_CLUSTER_BITS 9u    /* "Must not be less than 9" */
#define VUB_QCOW2_MAX_CLUSTER_BITS 21u   /* QEMU's "implementation limit of 2 MB" */
#define VUB_QCOW2_MAX_REFCOUNT_ORDER 6u  /* "may not exceed 6" */
#define VUB_QCOW2_MAX_BACKING_NAME 1023u /* "Must not be longer than 1023 bytes" */

/* Implementation limits, QEMU's where it has one (block/qcow2.h), so an
 * image QEMU opens is one vub opens, and a hostile one costs bounded memory. */
#define VUB_QCOW2_MAX_L1_BYTES (UINT64_C(32) << 20)       /* QCOW_MAX_L1_SIZE */
#define VUB_QCOW2_MAX_REFTABLE_BYTES (UINT64_C(8) << 20)  /* QCOW_MAX_REFTABLE_SIZE */
#define VUB_QCOW2_MAX_SNAPSHOTS 65536u                    /* QCOW_MAX_SNAPSHOTS */
#define VUB_QCOW2_MAX_SNAPSHOT_TABLE_BYTES (UINT64_C(64) << 20)
#define VUB_QCOW2_MAX_SNAPSHOT_EXTRA 1024u                /* extra data per entry */
#define VUB_QCOW2_MAX_CHAIN 64u           /* backing files below the opened image (qemu-img
                                             reads chains 40 deep; QEMU has no fixed cap) */
#define VUB_QCOW2_MAX_NAME 4095u          /* data file name bytes */
#define VUB_QCOW2_L2_CACHE_BYTES (UINT64_C(4) << 20)      /* L2 cache budget */
#define VUB_QCOW2_L2_CACHE_MIN_SLOTS 2u
#define VUB_QCOW2_L2_CACHE_MAX_SLOTS 16u

/* The header as the file stores it: image fields only, decoded from bytes.
 * Comments give each field's byte offset in the spec's table. */
struct vub_qcow2_header {
    uint32_t magic;                   /*   0 "QFI\xfb" */
    uint32_t version;                 /*   4 2 or 3 */
    uint64_t backing_file_offset;     /*   8 0: no backing file */
    uint32_t backing_file_size;       /*  16 name bytes, not NUL-terminated */
    uint32_t cluster_bits;            /*  20 */
    uint64_t size;                    /*  24 virtual disk bytes */
    uint32_t crypt_method;            /*  32 0 none, 1 AES-CBC, 2 LUKS */
    uint32_t l1_size;                 /*  36 entries in the active L1 table */
    uint64_t l1_table_offset;         /*  40 */
    uint64_t refcount_table_offset;   /*  48 */
    uint32_t refcount_table_clusters; /*  56 */
    uint32_t nb_snapshots;            /*  60 */
    uint64_t snapshots_offset;        /*  64 */
    /* version 3 and later: */
    uint64_t incompatible_features;   /*  72 */
    uint64_t compatible_features;     /*  80 */
    uint64_t autoclear_features;      /*  88 */
    uint32_t refcount_order;          /*  96 */
    uint32_t header_length;           /* 100 */
    uint8_t compression_type;         /* 104 optional: 0 zlib, 1 zstd */
};

/* Decodes the first VUB_QCOW2_HEADER_READ_BYTES of the file. Version 2 has
 * none of the later fields, which then take the values the spec assumes:
 * "the order is always assumed to be 4", "the length is always assumed to be
 * 72 bytes". [QCOW2-HDR-OPTIONAL] a v3 field lies past header_length is "not
 * present" and reads as 0 ("An explicit value of 0 will have the same
 * behavior as when the field is not present"). */
static void vub_qcow2_header_decode(const uint8_t *p, struct vub_qcow2_header *h)
{
    bool v3 = vub_be32(p + 4) >= 3;
    uint32_t header_length = v3 ? vub_be32(p + 100) : VUB_QCOW2_V2_HEADER_BYTES;
    *h = (struct vub_qcow2_header){
        /* one line per group of the spec's table */
        .magic = vub_be32(p + 0), .version = vub_be32(p + 4),
        .backing_file_offset = vub_be64(p + 8), .backing_file_size = vub_be32(p + 16),
        .cluster_bits = vub_be32(p + 20), .size = vub_be64(p + 24), .crypt_method = vub_be32(p + 32),
        .l1_size = vub_be32(p + 36), .l1_table_offset = vub_be64(p + 40),
        .refcount_table_offset = vub_be64(p + 48), .refcount_table_clusters = vub_be32(p + 56),
        .nb_snapshots = vub_be32(p + 60), .snapshots_offset = vub_be64(p + 64),
        .incompatible_features = v3 ? vub_be64(p + 72) : 0,
        .compatible_features = v3 ? vub_be64(p + 80) : 0,
        .autoclear_features = v3 ? vub_be64(p + 88) : 0,
        .refcount_order = v3 ? vub_be32(p + 96) : 4,
        .header_length = header_length,
        .compression_type = header_length > 104 ? p[104] : 0,
    };
}

/* Reads len bytes at off. [QCOW2-EOF-ZEROS] bytes past the end of the file
 * read as zeros, as QEMU's file layer returns them: the last data cluster
 * of an image is often only partly written, and a compressed cluster may
 * end inside a sector the file does not reach. */
static enum vub_err vub_qcow2_pread(int fd, void *buf, size_t len, uint64_t off, struct vub_error *e)
{
    enum vub_err err = vub_sys_pread_zero(fd, buf, len, off, e);
    return err == VUB_OK ? VUB_OK : vub_fail(e, VUB_R_QCOW2_READ, off, e ? e->b : EIO);
}

/* [QCOW2-TABLE-BOUNDS] A metadata table at offset of bytes length: "Must be
 * aligned to a cluster boundary", not over the header in cluster 0, and
 * inside the file without overflow (QEMU validate_table_offset, plus the
 * end-of-file check QEMU leaves to the read). An empty table is fine. */
static bool vub_qcow2_table_ok(uint64_t offset, uint64_t bytes, uint64_t cluster_bytes, uint64_t file_bytes)
{
    if (bytes == 0)
        return true;
    return offset != 0 && (offset & (cluster_bytes - 1)) == 0 && vub_range_ok(offset, bytes, file_bytes);
}

/* [QCOW2-HDR] The checks on the fixed header fields (qcow2.txt "Header";
 * QEMU qcow2_do_open). Fields that depend on header extensions, such as
 * unknown feature bits, are checked once the extensions are read. */
static enum vub_err vub_qcow2_check_header(const struct vub_qcow2_header *h, uint64_t file_bytes,
                                           struct vub_error *e)
{
    if (h->magic != VUB_QCOW2_MAGIC)
        return vub_fail(e, VUB_R_QCOW2_MAGIC, h->magic, 0);
    if (h->version != 2 && h->version != 3)
        return vub_fail(e, VUB_R_QCOW2_VERSION, h->version, 0);
    if (h->cluster_bits < VUB_QCOW2_MIN_CLUSTER_BITS)
        return vub_fail(e, VUB_R_QCOW2_CLUSTER_BITS, h->cluster_bits, 0);
    if (h->cluster_bits > VUB_QCOW2_MAX_CLUSTER_BITS)
        return vub_fail(e, VUB_R_QCOW2_CLUSTER_BIG, h->cluster_bits, 0);
    uint64_t cluster_bytes = UINT64_C(1) << h->cluster_bits;
    /* [QCOW2-HDR-LENGTH] v3: "at least 104 bytes and must be a multiple of
     * 8"; it must also leave cluster 0 to hold it (QEMU: "Header length too
     * large"), and the file must hold it. */
    if ((h->version == 3 && (h->header_length < VUB_QCOW2_V3_HEADER_BYTES || h->header_length % 8 != 0 ||
                             h->header_length > cluster_bytes)) || file_bytes < h->header_length)
        return vub_fail(e, VUB_R_QCOW2_HDR_LENGTH, h->header_length, file_bytes);
    if (h->refcount_order > VUB_QCOW2_MAX_REFCOUNT_ORDER)
        return vub_fail(e, VUB_R_QCOW2_REFCOUNT_ORDER, h->refcount_order, 0);
    /* [QCOW2-CRYPT] "0 for no encryption, 1 for AES, 2 for LUKS". */
    if (h->crypt_method != 0)
        return vub_fail(e, VUB_R_QCOW2_CRYPT, h->crypt_method, 0);
    /* [QCOW2-BACKING-NAME] the name sits in cluster 0 after the extensions
     * ("the remaining space between the end of the header extension area
     * and the end of the first cluster"), at most 1023 bytes. */
    if (h->backing_file_offset != 0 &&
        (h->backing_file_offset < h->header_length || h->backing_file_offset > cluster_bytes ||
         h->backing_file_size > VUB_QCOW2_MAX_BACKING_NAME ||
         h->backing_file_size > cluster_bytes - h->backing_file_offset))
        return vub_fail(e, VUB_R_QCOW2_BACKING_NAME, h->backing_file_offset, h->backing_file_size);
    /* [QCOW2-REFCOUNT-BOUNDS] vub never reads refcounts, but checks the
     * table the way QEMU does at open ("Reference count table too large",
     * "Invalid reference count table offset"), so both accept the same
     * images. The table is whole clusters, but the file may end right after
     * the part in use: its first entry must be in the file. */
    uint64_t refcount_bytes = (uint64_t)h->refcount_table_clusters << h->cluster_bits;
    if (refcount_bytes > VUB_QCOW2_MAX_REFTABLE_BYTES)
        return vub_fail(e, VUB_R_QCOW2_REFCOUNT_BIG, h->refcount_table_clusters, 0);
    if (!vub_qcow2_table_ok(h->refcount_table_offset, refcount_bytes ? 8 : 0, cluster_bytes, file_bytes))
        return vub_fail(e, VUB_R_QCOW2_REFCOUNT_PLACE, h->refcount_table_offset, 0);
    return VUB_OK;
}

/* ---- 9.2 Header extensions ("Header extensions") --------------------------- */

/* Extension types (macros: 0xe2792aca does not fit an enum's int). */
#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_NAMES 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_CRYPTO 0x0537be77u      /* full disk encryption header pointer */
#define QCOW2_EXT_DATA_FILE 0x44415441u   /* external data file name */

#define VUB_QCOW2_FEATURE_NAME_ENTRY 48u /* "Feature name table": type, bit, name[46] */

/* One extension found in cluster 0: a pointer into the caller's copy of
 * cluster 0, valid while it is. Strings are not NUL-terminated. */
struct vub_qcow2_ext {
    const uint8_t *data;
    uint32_t len;
    bool seen;
};

/* The extensions vub knows. */
struct vub_qcow2_exts {
    struct vub_qcow2_ext backing_format; /* "raw", "qcow2", ... */
    struct vub_qcow2_ext feature_names;  /* 48-byte entries */
    struct vub_qcow2_ext data_file;      /* external data file name */
    struct vub_qcow2_ext bitmaps;        /* present; ignored when reading */
    struct vub_qcow2_ext crypto;         /* full disk encryption header pointer */
};

/* Walks the extensions in cluster 0: "u32 type; u32 length; data; padding
 * to a multiple of 8", ended by type 0. [QCOW2-EXT-BOUNDS] the area runs
 * from header_length to the backing file name if there is one, else to the
 * end of cluster 0 (QEMU qcow2_read_extensions); an extension whose header
 * or data overruns it is corrupt (QEMU: "Header extension too large").
 * [QCOW2-EXT-ONCE] "each header extension type shall appear at most once";
 * unknown types "can be safely ignored". */
static enum vub_err vub_qcow2_read_exts(const uint8_t *cluster0, const struct vub_qcow2_header *h,
                                        uint64_t cluster_bytes, struct vub_qcow2_exts *x, struct vub_error *e)
{
    memset(x, 0, sizeof *x);
    uint64_t pos = h->header_length;
    uint64_t end = h->backing_file_offset != 0 ? h->backing_file_offset : cluster_bytes;
    while (pos < end) {
        if (end - pos < 8)
            return vub_fail(e, VUB_R_QCOW2_EXT_BOUNDS, pos, 8);
        uint32_t type = vub_be32(cluster0 + pos);
        uint32_t len = vub_be32(cluster0 + pos + 4);
        pos += 8;
        if (type == QCOW2_EXT_END)
            return VUB_OK;
        if (len > end - pos)
            return vub_fail(e, VUB_R_QCOW2_EXT_BOUNDS, pos - 8, len);
        struct vub_qcow2_ext *slot = type == QCOW2_EXT_BACKING_FORMAT ? &x->backing_format
                                     : type == QCOW2_EXT_FEATURE_NAMES ? &x->feature_names
                                     : type == QCOW2_EXT_DATA_FILE     ? &x->data_file
                                     : type == QCOW2_EXT_BITMAPS       ? &x->bitmaps
                                     : type == QCOW2_EXT_CRYPTO        ? &x->crypto
                                                                       : NULL;
        if (slot && slot->seen)
            return vub_fail(e, VUB_R_QCOW2_EXT_ONCE, type, 0);
        if (slot)
            *slot = (struct vub_qcow2_ext){cluster0 + pos, len, true};
        pos += ((uint64_t)len + 7) & ~UINT64_C(7); /* len <= 2 MiB: no overflow */
    }
    return VUB_OK;
}

/* Copies a name the image records into buf for a message, NUL-terminated
 * and cut to fit, with bytes that are not printable ASCII shown as '?', so
 * an image cannot put a line break or a terminal escape into our output. */
static const char *vub_qcow2_printable(char *buf, size_t cap, const uint8_t *src, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
    buf[n] = '\0';
    return buf;
}

/* Copies a file name the image records (backing file, data file) into a
 * NUL-terminated heap string. These strings "are not '\0' terminated". One
 * with a NUL or any other control character inside is refused: with a NUL
 * every user of the name would see a different string, and no honest path
 * needs the others. [QCOW2-BACKING-RELATIVE] Given image_path, a relative
 * name is made relative to the directory of the image that names it, not
 * to the current directory (QEMU bdrv_get_full_backing_filename). */
static enum vub_err vub_qcow2_name(const char *image_path, const uint8_t *src, size_t len, char **out,
                                   struct vub_error *e)
{
    for (size_t i = 0; i < len; i++)
        if (src[i] < 0x20 || src[i] == 0x7f)
            return vub_fail(e, VUB_R_QCOW2_NAME_CHARS, src[i], 0);
    const char *slash = image_path ? strrchr(image_path, '/') : NULL;
    size_t dir = !slash || (len > 0 && src[0] == '/') ? 0 : (size_t)(slash - image_path) + 1;
    char *s = malloc(dir + len + 1);
    if (!s)
        return VUB_E_NOMEM;
    memcpy(s, dir ? image_path : "", dir);
    memcpy(s + dir, src, len);
    s[dir + len] = '\0';
    *out = s;
    return VUB_OK;
}

/* ---- 9.3 Feature bits (header fields 72-95) -------------------------------- */

enum {
    /* incompatible_features: "must fail to open an image if an unknown bit is set" */
    QCOW2_INCOMPAT_DIRTY_BIT = 0,
    QCOW2_INCOMPAT_CORRUPT_BIT = 1,
    QCOW2_INCOMPAT_DATA_FILE_BIT = 2,
    QCOW2_INCOMPAT_COMPRESSION_BIT = 3,
    QCOW2_INCOMPAT_EXTL2_BIT = 4,
    QCOW2_INCOMPAT_KNOWN_BITS = 5,
    /* compatible_features a reader "can safely ignore", and autoclear_features
     * (bitmaps, raw data file) a reader that never writes may ignore too. */
};

enum { QCOW2_COMPRESSION_ZLIB = 0, QCOW2_COMPRESSION_ZSTD = 1 };

/* [QCOW2-FEATURES] What the feature bits allow us to do.
 *  - [QCOW2-INCOMPAT-UNKNOWN] an unknown incompatible bit: refuse, naming
 *    the lowest one by number and by the image's own name for it if its
 *    feature name table has one (vub_qcow2_open; vub_image_feature_name()
 *    names any bit of an image that opens).
 *  - dirty: fine for reading ("refcounts may be inconsistent"; a reader
 *    does not use refcounts).
 *  - [QCOW2-CORRUPT-BIT] corrupt: refused. The bit means QEMU found the
 *    metadata inconsistent; vub checks every entry it uses, which keeps it
 *    safe but not right, and a device has no way to warn its guest.
 *  - [QCOW2-COMPRESSION-TYPE] bit 3 and compression_type agree: "must be
 *    present and non-zero" with the bit, "must not be present or must be
 *    zero" without. 0 is deflate (section 10), 1 zstd (section 11).
 *  - [QCOW2-EXTL2] extended L2 needs "cluster_bits ... at least 14".
 *  - [QCOW2-DATA-FILE] an external data file only if the caller allows it. */
static enum vub_err vub_qcow2_check_features(const struct vub_qcow2_header *h, const struct vub_qcow2_exts *x,
                                             const struct vub_image_opts *opts, struct vub_error *e)
{
    uint64_t in = h->incompatible_features;
    uint64_t unknown = in & ~(VUB_BIT(QCOW2_INCOMPAT_KNOWN_BITS) - 1);
    if (unknown != 0) /* the lowest */
        return vub_fail(e, VUB_R_QCOW2_INCOMPAT_UNKNOWN, (uint64_t)__builtin_ctzll(unknown), unknown);
    if (vub_has(in, QCOW2_INCOMPAT_CORRUPT_BIT))
        return vub_fail(e, VUB_R_QCOW2_CORRUPT_BIT, 0, 0);
    if (vub_has(in, QCOW2_INCOMPAT_COMPRESSION_BIT) != (h->compression_type != QCOW2_COMPRESSION_ZLIB))
        return vub_fail(e, VUB_R_QCOW2_COMPRESSION_TYPE, h->compression_type, 0);
    if (h->compression_type != QCOW2_COMPRESSION_ZLIB && h->compression_type != QCOW2_COMPRESSION_ZSTD)
        return vub_fail(e, VUB_R_QCOW2_COMPRESSION_UNKNOWN, h->compression_type, 0);
    if (vub_has(in, QCOW2_INCOMPAT_EXTL2_BIT) && h->cluster_bits < 14)
        return vub_fail(e, VUB_R_QCOW2_EXTL2, h->cluster_bits, 0);
    if (x->crypto.seen)
        return vub_fail(e, VUB_R_QCOW2_CRYPTO_EXT, 0, 0);
    if (!vub_has(in, QCOW2_INCOMPAT_DATA_FILE_BIT))
        return VUB_OK;
    if (!x->data_file.seen)
        return vub_fail(e, VUB_R_QCOW2_DATA_FILE_NAME, 0, 0);
    if (!opts->allow_data_file)
        return vub_fail(e, VUB_R_QCOW2_DATA_FILE, 0, 0);
    /* "neither compressed clusters nor internal snapshots are supported" */
    if (h->nb_snapshots != 0)
        return vub_fail(e, VUB_R_QCOW2_DATA_FILE_SNAPSHOTS, h->nb_snapshots, 0);
    return VUB_OK;
}

/* ---- 9.4 Cluster mapping: L1 and L2 tables ("Cluster mapping") ------------ */

/* Entry bits. "Bit 0 - 8: Reserved", "9 - 55: ... offset", "56 - 62:
 * Reserved", "63: ... refcount is exactly one" (L1); the L2 entry keeps bit
 * 62 for "compressed clusters" and, in standard descriptors, bit 0 for
 * "reads as all zeros". */
#define QCOW2_OFFSET_MASK UINT64_C(0x00fffffffffffe00)       /* bits 9-55 */
#define QCOW2_L1_RESERVED_MASK UINT64_C(0x7f000000000001ff)  /* bits 0-8, 56-62 */
#define QCOW2_L2_RESERVED_MASK UINT64_C(0x3f000000000001fe)  /* bits 1-8, 56-61 */
#define QCOW2_DESCRIPTOR_MASK ((UINT64_C(1) << 62) - 1)      /* bits 0-61 */
enum { QCOW2_ZERO_BIT = 0, QCOW2_COMPRESSED_BIT = 62, QCOW2_COPIED_BIT = 63 };
#define VUB_QCOW2_SUBCLUSTERS 32u /* "divided into 32 subclusters of the same size" */

/* One slot of the L2 cache: a whole L2 table, as raw big-endian bytes. */
struct vub_qcow2_l2_slot {
    uint64_t offset;   /* file offset of the table; 0: the slot is empty */
    uint64_t last_use; /* for least-recently-used replacement */
    uint8_t *table;    /* cluster_bytes bytes */
};

/* An open qcow2 image. Everything is allocated at open; reads allocate
 * nothing. */
struct vub_qcow2 {
    /* The header, checked at open, and the geometry it gives */
    struct vub_qcow2_header hdr;
    unsigned cluster_bits;
    uint64_t cluster_bytes;
    unsigned l2_bits;             /* log2 of entries per L2 table */
    unsigned l2_entry_bytes;      /* 8, or 16 with extended L2 */
    bool extended_l2;
    uint64_t file_bytes;          /* image file size when opened */
    uint8_t *feature_table;       /* the image's feature name table (a copy), */
    uint32_t feature_table_bytes; /* ... for vub_image_feature_name() */

    /* The mapping being read: the active L1 table, or a snapshot's */
    uint64_t *l1;                 /* decoded entries */
    uint32_t l1_size;

    /* L2 cache: a fixed number of cluster-sized slots */
    struct vub_qcow2_l2_slot *l2_slots; /* followed by their tables */
    unsigned l2_slot_count;
    uint64_t l2_clock;            /* use counter for last_use */

    /* Compressed clusters: the compressed bytes of one cluster, and the last
     * cluster decompressed (reads of its other parts reuse it) */
    uint8_t *cluster;             /* cluster_bytes; also cluster 0 during open */
    uint8_t *zbuf;                /* 2 * cluster_bytes after it: the longest extent */
    struct vub_zstd_work *zstd;   /* zstd images: decoder tables and literals */
    uint64_t cluster_descriptor;  /* which compressed cluster is in `cluster` */
    bool cluster_valid;

    /* External data file ("External data file bit") */
    int data_fd;                  /* -1: clusters are in the image file */
    char *data_path;

    /* Backing file */
    struct vub_image *backing;    /* NULL: unallocated clusters read as zeros */
    char *backing_name;           /* as recorded */
    char *backing_path;           /* resolved against the image's directory */

    /* Snapshots ("Snapshots") */
    uint32_t snapshot_count;
    uint64_t *snapshot_offsets;   /* file offset of each table entry */
    int32_t snapshot_index;       /* the one being read; -1: active layer */

    struct vub_error err;         /* why the last read failed */
    char why[256];                /* ... formatted, for vub_image_why() */
};

/* Records why a read failed, for vub_image_why(), and returns its class. */
static enum vub_err vub_qcow2_fail(struct vub_qcow2 *q, enum vub_reason reason, uint64_t a, uint64_t b)
{
    enum vub_err err = vub_fail(&q->err, reason, a, b);
    vub_error_format(&q->err, NULL, q->why, sizeof q->why);
    return err;
}

/* [QCOW2-L1-BOUNDS] An L1 table of `entries` at offset that must map at
 * least covers_bytes of the disk: at most 32 MiB (QEMU's QCOW_MAX_L1_SIZE),
 * large enough, aligned and inside the file. Checked for the active table
 * even when a snapshot's is read, as QEMU does at open.
 * [QCOW2-L1-SIZE] Large enough is ceil(covers_bytes / bytes one L2 table
 * maps), as QEMU refuses a smaller one ("L1 table is too small"). */
static enum vub_err vub_qcow2_check_l1(const struct vub_qcow2 *q, uint64_t offset, uint32_t entries,
                                       uint64_t covers_bytes, bool snapshot, struct vub_error *e)
{
    uint64_t bytes = (uint64_t)entries * 8;
    unsigned shift = q->cluster_bits + q->l2_bits;
    uint64_t needed = (covers_bytes >> shift) + ((covers_bytes & ((UINT64_C(1) << shift) - 1)) != 0);
    bool placed = vub_qcow2_table_ok(offset, bytes, q->cluster_bytes, q->file_bytes);
    enum vub_reason r = bytes > VUB_QCOW2_MAX_L1_BYTES ? VUB_R_QCOW2_L1_BIG
                        : entries < needed           ? VUB_R_QCOW2_L1_SIZE
                        : !placed                    ? VUB_R_QCOW2_L1_PLACE
                                                     : VUB_R_NONE;
    return r == VUB_R_NONE ? VUB_OK : vub_fail(e, snapshot ? VUB_R_QCOW2_SNAPSHOT_L1 : r, offset, entries);
}

/* Checks, reads and decodes the L1 table the image will be read through. */
static enum vub_err vub_qcow2_load_l1(struct vub_image *img, uint64_t offset, uint32_t entries,
                                      uint64_t covers_bytes, bool snapshot, struct vub_error *e)
{
    struct vub_qcow2 *q = img->qcow2;
    uint64_t bytes = (uint64_t)entries * 8;
    enum vub_err err = vub_qcow2_check_l1(q, offset, entries, covers_bytes, snapshot, e);
    if (err != VUB_OK)
        return err;
    q->l1 = malloc(bytes ? (size_t)bytes : 1);
    if (!q->l1)
        return VUB_E_NOMEM;
    q->l1_size = entries;
    uint8_t *raw = (uint8_t *)q->l1;
    if ((err = vub_qcow2_pread(img->fd, raw, (size_t)bytes, offset, e)) != VUB_OK)
        return err;
    for (uint32_t i = 0; i < entries; i++) /* in place: entry i only reads bytes 8i..8i+7 */
        q->l1[i] = vub_be64(raw + (size_t)i * 8);
    return VUB_OK;
}

/* Returns the L2 table at offset (checked by the caller; never 0, which marks
 * an empty slot), from the cache or read into the least recently used slot. */
static enum vub_err vub_qcow2_l2_get(struct vub_image *img, uint64_t offset, const uint8_t **table)
{
    struct vub_qcow2 *q = img->qcow2;
    struct vub_qcow2_l2_slot *s = &q->l2_slots[0]; /* the slot with the table, else the oldest */
    for (unsigned i = 1; i < q->l2_slot_count && s->offset != offset; i++)
        if (q->l2_slots[i].offset == offset || q->l2_slots[i].last_use < s->last_use)
            s = &q->l2_slots[i];
    if (s->offset != offset) {
        s->offset = 0; /* empty until the read succeeds */
        if (vub_qcow2_pread(img->fd, s->table, (size_t)q->cluster_bytes, offset, &q->err) != VUB_OK)
            return vub_qcow2_fail(q, VUB_R_QCOW2_READ, offset, q->err.b);
        s->offset = offset;
    }
    s->last_use = ++q->l2_clock;
    *table = s->table;
    return VUB_OK;
}

/* What a stretch of the guest disk reads as. */
enum vub_qcow2_kind {
    VUB_QCOW2_UNALLOCATED, /* the backing file shows through, or zeros */
    VUB_QCOW2_ZERO,        /* zeros; the backing file is not consulted */
    VUB_QCOW2_DATA,        /* plain data at host_offset */
    VUB_QCOW2_COMPRESSED,  /* part of one compressed cluster */
};

/* A stretch of the guest disk with one kind (and, for data, contiguous in
 * the file): what vub_qcow2_map() answers. */
struct vub_qcow2_extent {
    enum vub_qcow2_kind kind;
    uint64_t guest_offset; /* first byte */
    uint64_t bytes;        /* length; never 0 */
    uint64_t host_offset;  /* DATA: file offset of the first byte;
                              COMPRESSED: the cluster descriptor (bits 0-61) */
};

/* The kind of subcluster sc from its bitmap ("Subcluster Allocation
 * Bitmap": bits 0-31 allocated, bits 32-63 reads as zeros). */
static enum vub_qcow2_kind vub_qcow2_subcluster_kind(uint64_t bitmap, unsigned sc)
{
    if (vub_has(bitmap, 32 + sc))
        return VUB_QCOW2_ZERO;
    return vub_has(bitmap, sc) ? VUB_QCOW2_DATA : VUB_QCOW2_UNALLOCATED;
}

/* The kind of the subclusters from guest offset off on ("Extended L2
 * Entries"), extending e over the following subclusters of the same kind.
 * [QCOW2-SUBCLUSTER] a subcluster both allocated and zero is invalid ("the
 * allocation status bit must be unset"; QEMU checks the whole bitmap); an
 * allocated subcluster needs a host offset ("must contain a valid offset");
 * bit 0 of the descriptor is reserved here ("with extended L2 entries ...
 * this is always 0"). */
static enum vub_err vub_qcow2_classify_subclusters(struct vub_qcow2 *q, uint64_t off, uint64_t entry,
                                                   uint64_t bitmap, bool allocated,
                                                   struct vub_qcow2_extent *e)
{
    uint32_t alloc = (uint32_t)bitmap, zero = (uint32_t)(bitmap >> 32);
    if (vub_has(entry, QCOW2_ZERO_BIT) || (alloc & zero) != 0 || (alloc != 0 && !allocated))
        return vub_qcow2_fail(q, VUB_R_QCOW2_SUBCLUSTER, bitmap, off);
    unsigned sc_bits = q->cluster_bits - 5;
    uint64_t in_cluster = off & (q->cluster_bytes - 1);
    unsigned sc = (unsigned)(in_cluster >> sc_bits), last = sc;
    e->kind = vub_qcow2_subcluster_kind(bitmap, sc);
    while (last + 1 < VUB_QCOW2_SUBCLUSTERS && vub_qcow2_subcluster_kind(bitmap, last + 1) == e->kind)
        last++;
    e->bytes = ((uint64_t)(last + 1) << sc_bits) - in_cluster;
    return VUB_OK;
}

/* Classifies the L2 entry (and, with extended L2, its bitmap) for guest
 * offset off. [QCOW2-L2-ENTRY] reserved bits are zero; a host offset is
 * cluster aligned ("Must be aligned to a cluster boundary"; QEMU calls an
 * unaligned one corrupt); "If the offset is 0 and bit 63 is clear, the
 * cluster is unallocated"; offset 0 with bit 63 set only "when an external
 * data file is used"; with a data file, "The offset field ... must match the
 * guest offset" [QCOW2-DATA-FILE-OFFSET].
 * [QCOW2-L2-ZERO] in a standard entry ("Standard Cluster Descriptor") bit 0
 * reads as zeros, "nor is data read from the backing file"; "With version 2
 * ... this is always 0" (QEMU: "Zero cluster entry found in pre-v3 image",
 * corrupt). */
static enum vub_err vub_qcow2_classify(struct vub_qcow2 *q, uint64_t off, uint64_t entry, uint64_t bitmap,
                                       struct vub_qcow2_extent *e)
{
    uint64_t in_cluster = off & (q->cluster_bytes - 1);
    e->guest_offset = off;
    e->bytes = q->cluster_bytes - in_cluster;
    if (vub_has(entry, QCOW2_COMPRESSED_BIT)) {
        /* [QCOW2-COMPRESSED-ENTRY] no compressed clusters with a data file;
         * "Compressed clusters don't have subclusters": bitmap reserved. */
        if (q->data_fd >= 0 || bitmap != 0)
            return vub_qcow2_fail(q, VUB_R_QCOW2_COMPRESSED_ENTRY, off, q->data_fd >= 0);
        e->kind = VUB_QCOW2_COMPRESSED;
        e->host_offset = entry & QCOW2_DESCRIPTOR_MASK;
        return VUB_OK;
    }
    uint64_t host_cluster = entry & QCOW2_OFFSET_MASK;
    bool copied = vub_has(entry, QCOW2_COPIED_BIT);
    bool allocated = host_cluster != 0 || (q->data_fd >= 0 && copied);
    bool zero = vub_has(entry, QCOW2_ZERO_BIT);
    if ((entry & QCOW2_L2_RESERVED_MASK) != 0 || (host_cluster & (q->cluster_bytes - 1)) != 0 ||
        (host_cluster == 0 && copied && q->data_fd < 0) ||
        (allocated && q->data_fd >= 0 && host_cluster != off - in_cluster))
        return vub_qcow2_fail(q, VUB_R_QCOW2_L2_ENTRY, entry, off);
    e->host_offset = host_cluster + in_cluster; /* used for DATA only */
    if (q->extended_l2)
        return vub_qcow2_classify_subclusters(q, off, entry, bitmap, allocated, e);
    if (zero && q->hdr.version < 3)
        return vub_qcow2_fail(q, VUB_R_QCOW2_L2_ZERO, off, 0);
    e->kind = zero ? VUB_QCOW2_ZERO : allocated ? VUB_QCOW2_DATA : VUB_QCOW2_UNALLOCATED;
    return VUB_OK;
}

/* Maps guest offset off: what the bytes from off on read as, for at most
 * max_bytes and never past the cluster (or the run of like subclusters).
 * [QCOW2-L1-ENTRY] an L1 entry of offset 0 leaves "all clusters described
 * by this L2 table ... unallocated"; reserved bits are zero; the L2 table is
 * aligned and wholly inside the file. An index past the L1 table (a
 * snapshot's table may map less than the disk) is unallocated too. */
static enum vub_err vub_qcow2_map(struct vub_image *img, uint64_t off, uint64_t max_bytes,
                                  struct vub_qcow2_extent *e)
{
    struct vub_qcow2 *q = img->qcow2;
    unsigned span_bits = q->cluster_bits + q->l2_bits;
    uint64_t l1_index = off >> span_bits;
    uint64_t l1_entry = l1_index < q->l1_size ? q->l1[l1_index] : 0;
    uint64_t l2_offset = l1_entry & QCOW2_OFFSET_MASK;
    if ((l1_entry & QCOW2_L1_RESERVED_MASK) != 0 || (l2_offset & (q->cluster_bytes - 1)) != 0)
        return vub_qcow2_fail(q, VUB_R_QCOW2_L1_ENTRY, l1_index, l1_entry);
    if (l2_offset != 0 && !vub_range_ok(l2_offset, q->cluster_bytes, q->file_bytes))
        return vub_qcow2_fail(q, VUB_R_QCOW2_L1_TRUNCATED, l2_offset, q->file_bytes);
    if (l2_offset == 0) {
        uint64_t span = UINT64_C(1) << span_bits;
        *e = (struct vub_qcow2_extent){VUB_QCOW2_UNALLOCATED, off, span - (off & (span - 1)), 0};
    } else {
        const uint8_t *table = NULL;
        enum vub_err err = vub_qcow2_l2_get(img, l2_offset, &table);
        if (err != VUB_OK)
            return err;
        size_t at = (size_t)((off >> q->cluster_bits) & ((UINT64_C(1) << q->l2_bits) - 1)) * q->l2_entry_bytes;
        uint64_t bitmap = q->extended_l2 ? vub_be64(table + at + 8) : 0;
        err = vub_qcow2_classify(q, off, vub_be64(table + at), bitmap, e);
        if (err != VUB_OK)
            return err;
    }
    e->bytes = VUB_MIN(e->bytes, max_bytes);
    return VUB_OK;
}

/* ---- 9.5 Reading clusters -------------------------------------------------- */

/* [QCOW2-READ-DATA] A plain data extent: the bytes are at host_offset in
 * the image file, or in the external data file ("Guest clusters are then
 * stored in the external data file"). */
static enum vub_err vub_qcow2_read_data(struct vub_image *img, const struct vub_qcow2_extent *e,
                                        struct vub_iov_cursor *c)
{
    struct vub_qcow2 *q = img->qcow2;
    int fd = q->data_fd >= 0 ? q->data_fd : img->fd;
    struct iovec batch[VUB_IOV_BATCH];
    unsigned n;
    uint64_t off = e->host_offset, bytes = e->bytes, done;
    for (uint64_t taken; bytes > 0; off += taken, bytes -= taken) {
        taken = vub_iov_take(c, bytes, batch, VUB_IOV_BATCH, &n);
        if (off > (uint64_t)INT64_MAX ||
            vub_sys_xfer(fd, false, (int64_t)off, batch, n, NULL, NULL, &done, &q->err) != VUB_OK)
            return vub_qcow2_fail(q, VUB_R_QCOW2_READ, off, q->err.b);
        /* [QCOW2-EOF-ZEROS] past the end of the file, zeros */
        struct vub_iov_cursor rest = {batch, n, 0, 0};
        vub_iov_take(&rest, done, NULL, 0, NULL);
        vub_iov_copy(&rest, NULL, NULL, taken - done);
    }
    return VUB_OK;
}

/* [QCOW2-COMPRESSED] Decompresses the cluster a compressed descriptor names
 * into q->cluster ("Compressed Clusters Descriptor", x = 62 - (cluster_bits
 * - 8)): bits 0..x-1 are the host byte offset, "usually _not_ aligned";
 * bits x..61 the "Number of additional 512-byte sectors". The compressed
 * bytes run from the offset to the end of the last sector:
 * (sectors + 1) * 512 - (offset % 512), at most two clusters.
 * Format notes:
 *  - the data is raw deflate (RFC 1951), no zlib header or checksum, or
 *    with compression_type 1 zstd frames (RFC 8878), which QEMU decodes
 *    frame after frame until the cluster is full [QCOW2-ZSTD];
 *  - "decompression stops when it has produced a cluster of data": the last
 *    sector may hold the start of another compressed cluster, so input left
 *    over is fine; output short of a whole cluster is corrupt (and output
 *    can never exceed one, which bounds a decompression bomb);
 *  - the extent may run past the end of the file (the last sector need not
 *    be whole): those bytes read as zeros [QCOW2-EOF-ZEROS], but an extent
 *    starting past the end is corrupt;
 *  - "If cluster_bits is small enough that this field includes bits beyond
 *    55, those upper bits must be set to 0". */
static enum vub_err vub_qcow2_inflate_cluster(struct vub_image *img, uint64_t descriptor)
{
    struct vub_qcow2 *q = img->qcow2;
    if (q->cluster_valid && q->cluster_descriptor == descriptor)
        return VUB_OK;
    unsigned x = 62 - (q->cluster_bits - 8);
    uint64_t offset = descriptor & ((UINT64_C(1) << x) - 1);
    uint64_t sectors = (descriptor >> x) + 1;
    uint64_t bytes = sectors * 512 - (offset % 512);
    if ((offset >> 56) != 0 || offset >= q->file_bytes)
        return vub_qcow2_fail(q, VUB_R_QCOW2_COMPRESSED, offset, 0);
    q->cluster_valid = false;
    if (vub_qcow2_pread(img->fd, q->zbuf, (size_t)bytes, offset, &q->err) != VUB_OK)
        return vub_qcow2_fail(q, VUB_R_QCOW2_READ, offset, q->err.b);
    size_t produced = 0;
    int rc = q->zstd ? vub_zstd_decompress(q->cluster, (size_t)q->cluster_bytes, &produced, q->zbuf,
                                           (size_t)bytes, NULL, q->zstd)
                     : vub_inflate(q->cluster, (size_t)q->cluster_bytes, &produced, q->zbuf, (size_t)bytes, NULL);
    if (rc < 0)
        return vub_qcow2_fail(q, q->zstd ? VUB_R_QCOW2_ZSTD : VUB_R_QCOW2_INFLATE, offset,
                              (uint64_t)(int64_t)rc);
    if (produced != q->cluster_bytes)
        return vub_qcow2_fail(q, VUB_R_QCOW2_COMPRESSED, offset, produced);
    q->cluster_descriptor = descriptor;
    q->cluster_valid = true;
    return VUB_OK;
}

/* A read of the backing file failed: its reason is ours, after its path. */
static enum vub_err vub_qcow2_backing_fail(struct vub_qcow2 *q, enum vub_err err)
{
    const struct vub_qcow2 *b = q->backing->qcow2;
    char prefix[300];
    q->err = b && b->err.reason ? b->err : (struct vub_error){VUB_R_QCOW2_READ, 0, 0};
    snprintf(prefix, sizeof prefix, "backing file %s", q->backing_path);
    vub_error_format(&q->err, prefix, q->why, sizeof q->why);
    return err;
}

/* [QCOW2-BACKING-READ] Unallocated bytes "shall read the data from the
 * backing file ... If there is no backing file or the backing file is
 * smaller than the image, they shall read zeros for all parts that are not
 * covered by the backing file." */
static enum vub_err vub_qcow2_read_backing(struct vub_image *img, const struct vub_qcow2_extent *e,
                                           struct vub_iov_cursor *c)
{
    struct vub_qcow2 *q = img->qcow2;
    uint64_t off = e->guest_offset, bytes = e->bytes;
    uint64_t covered = q->backing && off < q->backing->size ? VUB_MIN(q->backing->size - off, bytes) : 0;
    struct iovec batch[VUB_IOV_BATCH];
    unsigned n;
    for (uint64_t taken; covered > 0; off += taken, covered -= taken, bytes -= taken) {
        taken = vub_iov_take(c, covered, batch, VUB_IOV_BATCH, &n);
        enum vub_err err = vub_image_readv(q->backing, off, batch, (int)n);
        if (err != VUB_OK)
            return vub_qcow2_backing_fail(q, err);
    }
    vub_iov_copy(c, NULL, NULL, bytes);
    return VUB_OK;
}

/* Fills the cursor with the bytes of one extent. */
static enum vub_err vub_qcow2_read_extent(struct vub_image *img, const struct vub_qcow2_extent *e,
                                          struct vub_iov_cursor *c)
{
    struct vub_qcow2 *q = img->qcow2;
    enum vub_err err;
    switch (e->kind) {
    case VUB_QCOW2_ZERO:
        vub_iov_copy(c, NULL, NULL, e->bytes);
        return VUB_OK;
    case VUB_QCOW2_DATA:
        return vub_qcow2_read_data(img, e, c);
    case VUB_QCOW2_COMPRESSED:
        err = vub_qcow2_inflate_cluster(img, e->host_offset);
        if (err == VUB_OK)
            vub_iov_copy(c, NULL, q->cluster + (e->guest_offset & (q->cluster_bytes - 1)), e->bytes);
        return err;
    case VUB_QCOW2_UNALLOCATED:
        return vub_qcow2_read_backing(img, e, c);
    }
    return VUB_E_INVAL;
}

/* ---- 9.6 Backing files ("backing_file_offset", "Backing file format name") */

/* [QCOW2-BACKING-FORMAT] The backing file's format: the one the image
 * records, else the caller's. Never probed: a raw backing file whose guest
 * wrote a qcow2 header into it would otherwise point us at any host file. */
static enum vub_err vub_qcow2_backing_format(const struct vub_qcow2_exts *x,
                                             const struct vub_image_opts *opts, enum vub_format *fmt,
                                             struct vub_error *e)
{
    const struct vub_qcow2_ext *f = &x->backing_format;
    if (!f->seen && opts->backing_format != VUB_FORMAT_AUTO)
        *fmt = opts->backing_format;
    else if (f->seen && f->len == 3 && memcmp(f->data, "raw", 3) == 0)
        *fmt = VUB_FORMAT_RAW;
    else if (f->seen && f->len == 5 && memcmp(f->data, "qcow2", 5) == 0)
        *fmt = VUB_FORMAT_QCOW2;
    else
        return vub_fail(e, f->seen ? VUB_R_QCOW2_BACKING_FORMAT : VUB_R_QCOW2_BACKING_UNRECORDED, 0, 0);
    return VUB_OK;
}

static enum vub_err vub_qcow2_open_chain(struct vub_image *img, const char *path,
                                         const struct vub_image_opts *opts, const struct vub_image *top,
                                         unsigned depth, struct vub_error *e);

/* Opens the backing file into a new read-only image, depth files below
 * top, the image the caller opened.
 * [QCOW2-BACKING-LOOP] a file already in the chain (the same file, by any
 * name) is a loop; [QCOW2-BACKING-DEPTH] at most VUB_QCOW2_MAX_CHAIN files
 * below top. [QCOW2-BACKING-RAW-SIZE] a raw backing file is as long as the
 * file, to the byte: QEMU reads a partial last sector of it (and zeros
 * after), so the sector rounding of raw disks does not apply.
 * [QCOW2-BACKING-WHY] The new image hangs from q before anything can fail,
 * and opening it is the last step of opening q: so the deepest image of a
 * chain that failed to open is the one that failed, and vub_qcow2_open
 * names it. Backing images are opened here rather than with
 * vub_image_open(), which has no way to carry the chain. */
static enum vub_err vub_qcow2_open_backing(struct vub_qcow2 *q, enum vub_format fmt,
                                           const struct vub_image_opts *opts, const struct vub_image *top,
                                           unsigned depth, struct vub_error *e)
{
    struct vub_image *b = calloc(1, sizeof *b);
    if (!b)
        return VUB_E_NOMEM;
    *b = (struct vub_image){.format = fmt, .fd = -1, .read_only = true};
    q->backing = b; /* vub_qcow2_close() frees it on any failure below */
    if (depth > VUB_QCOW2_MAX_CHAIN)
        return vub_fail(e, VUB_R_QCOW2_BACKING_DEPTH, VUB_QCOW2_MAX_CHAIN, 0);
    if ((b->fd = vub_sys_open(q->backing_path, true)) < 0)
        return vub_fail(e, VUB_R_QCOW2_BACKING_OPEN, 0, (uint64_t)errno);
    if (!vub_sys_stat(b->fd, true, &b->size, NULL, NULL))
        return vub_fail(e, VUB_R_QCOW2_BACKING_KIND, 0, 0);
    for (const struct vub_image *above = top; above != b; above = above->qcow2->backing)
        if (vub_sys_same_file(above->fd, b->fd))
            return vub_fail(e, VUB_R_QCOW2_BACKING_LOOP, 0, 0);
    enum vub_err err = vub_image_lock(b->fd, false, opts->force_share, e);
    if (err != VUB_OK || fmt == VUB_FORMAT_RAW)
        return err;
    struct vub_image_opts bo = {.read_only = true,
                                .format = VUB_FORMAT_QCOW2,
                                .allow_data_file = opts->allow_data_file,
                                .snapshot = NULL, /* a snapshot is of the image named, not its backing */
                                .backing_format = opts->backing_format,
                                .force_share = opts->force_share};
    return vub_qcow2_open_chain(b, q->backing_path, &bo, top, depth, e);
}

/* Walks every file the image reads: its own, its data file, its backing
 * chain. The chain was checked for loops and depth when it was opened. */
bool vub_image_uses_file(const struct vub_image *img, int fd)
{
    for (; img; img = img->qcow2 ? img->qcow2->backing : NULL) {
        if (vub_sys_same_file(img->fd, fd))
            return true;
        if (img->qcow2 && img->qcow2->data_fd >= 0 && vub_sys_same_file(img->qcow2->data_fd, fd))
            return true;
    }
    return false;
}

/* ---- 9.7 Snapshots ("Snapshots") ------------------------------------------ */

#define VUB_QCOW2_SNAPSHOT_FIXED_BYTES 40u  /* entry bytes 0-39 */

/* One snapshot table entry as the file stores it, image fields only. The
 * extra data fields are 0 when extra_data_size does not cover them. */
struct vub_qcow2_snapshot_header {
    uint64_t l1_table_offset;     /*  0 */
    uint32_t l1_size;             /*  8 */
    uint16_t id_str_size;         /* 12 */
    uint16_t name_size;           /* 14 */
    uint32_t date_sec;            /* 16 */
    uint32_t date_nsec;           /* 20 */
    uint64_t vm_clock_nsec;       /* 24 */
    uint64_t vm_state_size;       /* 32, or extra 0-7 (entry 40-47) if present */
    uint32_t extra_data_size;     /* 36 */
    uint64_t disk_size;           /* extra 8-15 (entry 48-55) */
};

/* Reads and decodes the entry at offset (checked by the caller). */
static enum vub_err vub_qcow2_snapshot_read(int fd, uint64_t offset, struct vub_qcow2_snapshot_header *s,
                                           struct vub_error *e)
{
    uint8_t p[VUB_QCOW2_SNAPSHOT_FIXED_BYTES + 16];
    enum vub_err err = vub_qcow2_pread(fd, p, sizeof p, offset, e);
    if (err != VUB_OK)
        return err;
    uint32_t extra = vub_be32(p + 36);
    *s = (struct vub_qcow2_snapshot_header){
        /* one line per group of the spec's table */
        .l1_table_offset = vub_be64(p + 0), .l1_size = vub_be32(p + 8),
        .id_str_size = (uint16_t)(p[12] << 8 | p[13]), .name_size = (uint16_t)(p[14] << 8 | p[15]),
        .date_sec = vub_be32(p + 16), .date_nsec = vub_be32(p + 20), .vm_clock_nsec = vub_be64(p + 24),
        /* "If this field is present, the 32-bit value in bytes 32-35 is ignored." */
        .vm_state_size = extra >= 8 ? vub_be64(p + 40) : vub_be32(p + 32), .extra_data_size = extra,
        .disk_size = extra >= 16 ? vub_be64(p + 48) : 0,
    };
    return VUB_OK;
}

/* True if the id (or name) of str_bytes at str_offset is the string want,
 * compared a piece at a time. */
static bool vub_qcow2_snapshot_is(int fd, uint64_t str_offset, uint16_t str_bytes, const char *want)
{
    uint8_t piece[256];
    if (!want || strlen(want) != str_bytes)
        return false;
    for (size_t at = 0, n; at < str_bytes; at += n) {
        n = VUB_MIN(sizeof piece, (size_t)str_bytes - at);
        if (vub_qcow2_pread(fd, piece, n, str_offset + at, NULL) != VUB_OK ||
            memcmp(piece, want + at, n) != 0)
            return false;
    }
    return true;
}

/* [QCOW2-SNAPSHOT-TABLE] Walks the snapshot table once at open: at most
 * 65536 entries (QEMU "Too many snapshots") and 64 MiB, each inside the
 * file, extra data at most 1 KiB (QEMU "Too much extra metadata"). Records
 * where each entry starts, and finds the one opts->snapshot names: an
 * entry whose id matches wins over one whose name does, as with QEMU's
 * snapshot lookup (*found is -1 without want; with it, no match fails).
 * Format note: an entry is its fixed part, extra data, id and name, then
 * "Padding to round up the snapshot table entry size to the next multiple
 * of 8"; QEMU does not write the padding of the last entry, so the file may
 * end before it. */
static enum vub_err vub_qcow2_read_snapshots(struct vub_image *img, const struct vub_qcow2_header *h,
                                             const char *want, int32_t *found, struct vub_error *e)
{
    struct vub_qcow2 *q = img->qcow2;
    int32_t by_id = -1, by_name = -1;
    if (h->nb_snapshots > VUB_QCOW2_MAX_SNAPSHOTS)
        return vub_fail(e, VUB_R_QCOW2_SNAPSHOTS_MANY, h->nb_snapshots, VUB_QCOW2_MAX_SNAPSHOTS);
    if (!vub_qcow2_table_ok(h->snapshots_offset, (uint64_t)h->nb_snapshots * VUB_QCOW2_SNAPSHOT_FIXED_BYTES,
                            q->cluster_bytes, q->file_bytes))
        return vub_fail(e, VUB_R_QCOW2_SNAPSHOT_TABLE, h->snapshots_offset, 0);
    if (!(q->snapshot_offsets = calloc(h->nb_snapshots + 1, sizeof *q->snapshot_offsets))) /* never 0 */
        return VUB_E_NOMEM;
    uint64_t at = h->snapshots_offset;
    for (uint32_t i = 0; i < h->nb_snapshots; i++) {
        struct vub_qcow2_snapshot_header s;
        enum vub_err err = vub_qcow2_snapshot_read(img->fd, at, &s, e); /* past EOF: zeros */
        if (err != VUB_OK)
            return err;
        uint64_t id_at = at + VUB_QCOW2_SNAPSHOT_FIXED_BYTES + s.extra_data_size; /* at <= file_bytes + 7 */
        uint64_t end = id_at + s.id_str_size + s.name_size;
        if (s.extra_data_size > VUB_QCOW2_MAX_SNAPSHOT_EXTRA || end > q->file_bytes ||
            end - h->snapshots_offset > VUB_QCOW2_MAX_SNAPSHOT_TABLE_BYTES)
            return vub_fail(e, VUB_R_QCOW2_SNAPSHOT_ENTRY, i, s.extra_data_size);
        q->snapshot_offsets[i] = at;
        if (by_id < 0 && vub_qcow2_snapshot_is(img->fd, id_at, s.id_str_size, want))
            by_id = (int32_t)i;
        if (by_name < 0 && vub_qcow2_snapshot_is(img->fd, id_at + s.id_str_size, s.name_size, want))
            by_name = (int32_t)i;
        at = (end + 7) & ~UINT64_C(7);
    }
    q->snapshot_count = h->nb_snapshots;
    *found = by_id >= 0 ? by_id : by_name;
    return want && *found < 0 ? vub_fail(e, VUB_R_QCOW2_SNAPSHOT_NAME, 0, 0) : VUB_OK;
}

/* [QCOW2-SNAPSHOT-READ] Reading a snapshot is reading through its L1 table
 * ("switch the active L1 table"), as the disk was when it was taken: of the
 * "Virtual disk size of the snapshot in bytes" when the extra data records
 * it (v3 always does), else of the image's size. Its L1 table is checked
 * like the active one, except that a snapshot without a recorded size may
 * have an L1 table smaller than the image has grown since; the clusters
 * past it are unallocated.
 * Format note: qemu-img convert -l keeps the active layer's size instead,
 * so its output is longer than vub's when the image grew after the snapshot. */
static enum vub_err vub_qcow2_select_snapshot(struct vub_image *img, int32_t index, uint64_t header_size,
                                              uint64_t *disk_bytes, struct vub_error *e)
{
    struct vub_qcow2 *q = img->qcow2;
    struct vub_qcow2_snapshot_header s;
    enum vub_err err = vub_qcow2_snapshot_read(img->fd, q->snapshot_offsets[index], &s, e);
    if (err != VUB_OK)
        return err;
    bool recorded = s.extra_data_size >= 16;
    *disk_bytes = recorded ? s.disk_size : header_size;
    q->snapshot_index = index;
    return vub_qcow2_load_l1(img, s.l1_table_offset, s.l1_size, recorded ? *disk_bytes : 0, true, e);
}

/* ---- 9.8 Opening and reading ------------------------------------------------ */

/* Starts img's qcow2 state from its checked header: the geometry, every
 * buffer reads use (the L2 cache, a fixed number of slots within
 * VUB_QCOW2_L2_CACHE_BYTES; the compressed cluster and its input; the zstd
 * decoder's work area), and cluster 0 (header, extensions, backing name)
 * in q->cluster, which no compressed cluster uses until open is over. */
static enum vub_err vub_qcow2_start(struct vub_image *img, const struct vub_qcow2_header *h,
                                    uint64_t file_bytes, struct vub_qcow2_exts *x, struct vub_error *e)
{
    struct vub_qcow2 *q = calloc(1, sizeof *q);
    if (!q)
        return VUB_E_NOMEM;
    img->qcow2 = q;
    q->hdr = *h;
    q->data_fd = -1;
    q->snapshot_index = -1;
    q->file_bytes = file_bytes;
    q->cluster_bits = h->cluster_bits;
    q->cluster_bytes = UINT64_C(1) << h->cluster_bits;
    q->extended_l2 = vub_has(h->incompatible_features, QCOW2_INCOMPAT_EXTL2_BIT);
    /* "l2_entries = (cluster_size / sizeof(uint64_t))", or "(cluster_size /
     * (2 * sizeof(uint64_t)))" with extended L2 entries. */
    q->l2_entry_bytes = q->extended_l2 ? 16 : 8;
    q->l2_bits = h->cluster_bits - (q->extended_l2 ? 4 : 3);
    uint64_t slots = VUB_QCOW2_L2_CACHE_BYTES >> q->cluster_bits;
    slots = VUB_MIN(VUB_MAX(slots, VUB_QCOW2_L2_CACHE_MIN_SLOTS), VUB_QCOW2_L2_CACHE_MAX_SLOTS);
    q->l2_slot_count = (unsigned)slots;
    q->l2_slots = calloc(1, (size_t)(slots * sizeof *q->l2_slots + (slots << q->cluster_bits)));
    q->cluster = malloc((size_t)(3 * q->cluster_bytes));
    if (h->compression_type == QCOW2_COMPRESSION_ZSTD)
        q->zstd = vub_zstd_work_new((size_t)q->cluster_bytes);
    if (!q->l2_slots || !q->cluster || (h->compression_type == QCOW2_COMPRESSION_ZSTD && !q->zstd))
        return VUB_E_NOMEM;
    for (unsigned i = 0; i < q->l2_slot_count; i++)
        q->l2_slots[i].table = (uint8_t *)(q->l2_slots + slots) + ((size_t)i << q->cluster_bits);
    q->zbuf = q->cluster + q->cluster_bytes;
    enum vub_err err = vub_qcow2_pread(img->fd, q->cluster, (size_t)q->cluster_bytes, 0, e);
    if (err != VUB_OK || (err = vub_qcow2_read_exts(q->cluster, h, q->cluster_bytes, x, e)) != VUB_OK ||
        !x->feature_names.seen)
        return err;
    /* the feature name table is copied: cluster 0 is reused after open */
    if (!(q->feature_table = malloc(x->feature_names.len ? x->feature_names.len : 1)))
        return VUB_E_NOMEM;
    memcpy(q->feature_table, x->feature_names.data, x->feature_names.len);
    q->feature_table_bytes = x->feature_names.len;
    return VUB_OK;
}

/* Takes the names cluster 0 records: opens the data file, and leaves the
 * backing file (its path and format in *fmt) for the last step of open. */
static enum vub_err vub_qcow2_take_names(struct vub_image *img, const char *path,
                                         const struct vub_qcow2_header *h, const struct vub_qcow2_exts *x,
                                         const struct vub_image_opts *opts, enum vub_format *fmt,
                                         struct vub_error *e)
{
    struct vub_qcow2 *q = img->qcow2;
    const uint8_t *name = q->cluster + h->backing_file_offset;
    enum vub_err err;
    if (x->data_file.seen && vub_has(h->incompatible_features, QCOW2_INCOMPAT_DATA_FILE_BIT)) {
        if (x->data_file.len > VUB_QCOW2_MAX_NAME)
            return vub_fail(e, VUB_R_QCOW2_DATA_FILE_LONG, x->data_file.len, 0);
        if ((err = vub_qcow2_name(path, x->data_file.data, x->data_file.len, &q->data_path, e)) != VUB_OK)
            return err;
        if ((q->data_fd = vub_sys_open(q->data_path, true)) < 0)
            return vub_fail(e, VUB_R_IMG_OPEN, 0, (uint64_t)errno);
        if ((err = vub_image_lock(q->data_fd, false, opts->force_share, e)) != VUB_OK)
            return err;
    }
    if (h->backing_file_offset == 0 || h->backing_file_size == 0)
        return VUB_OK; /* an empty name is no backing file, as in QEMU */
    if ((err = vub_qcow2_name(NULL, name, h->backing_file_size, &q->backing_name, e)) != VUB_OK ||
        (err = vub_qcow2_name(path, name, h->backing_file_size, &q->backing_path, e)) != VUB_OK)
        return err;
    return vub_qcow2_backing_format(x, opts, fmt, e);
}

/* Opens img (fd open, format QCOW2) as the image depth files below top:
 * header, extensions, features, tables, the data file, the L1 table it
 * reads and, last, its backing file. */
static enum vub_err vub_qcow2_open_chain(struct vub_image *img, const char *path,
                                         const struct vub_image_opts *opts, const struct vub_image *top,
                                         unsigned depth, struct vub_error *e)
{
    uint8_t raw[VUB_QCOW2_HEADER_READ_BYTES];
    struct vub_qcow2_header h;
    struct vub_qcow2_exts x;
    uint64_t file_bytes, disk_bytes;
    enum vub_format backing_format = VUB_FORMAT_AUTO;
    img->read_only = true; /* [QCOW2-RDONLY] vub never writes qcow2 */
    if (!vub_sys_stat(img->fd, true, &file_bytes, NULL, NULL))
        return vub_fail(e, VUB_R_IMG_KIND, 0, (uint64_t)errno);
    enum vub_err err = vub_qcow2_pread(img->fd, raw, sizeof raw, 0, e);
    if (err != VUB_OK)
        return err;
    vub_qcow2_header_decode(raw, &h);
    if ((err = vub_qcow2_check_header(&h, file_bytes, e)) != VUB_OK ||
        (err = vub_qcow2_start(img, &h, file_bytes, &x, e)) != VUB_OK)
        return err;
    struct vub_qcow2 *q = img->qcow2;
    if ((err = vub_qcow2_check_features(&h, &x, opts, e)) != VUB_OK)
        return err;
    int32_t index;
    if ((err = vub_qcow2_read_snapshots(img, &h, opts->snapshot, &index, e)) != VUB_OK ||
        (err = vub_qcow2_take_names(img, path, &h, &x, opts, &backing_format, e)) != VUB_OK)
        return err;
    disk_bytes = h.size;
    if (!opts->snapshot)
        err = vub_qcow2_load_l1(img, h.l1_table_offset, h.l1_size, h.size, false, e);
    else if ((err = vub_qcow2_check_l1(q, h.l1_table_offset, h.l1_size, h.size, false, e)) == VUB_OK)
        err = vub_qcow2_select_snapshot(img, index, h.size, &disk_bytes, e);
    /* [QCOW2-SIZE] whole 512-byte sectors, as QEMU's qcow2 driver exports. */
    img->size = disk_bytes - disk_bytes % 512;
    if (err != VUB_OK || !q->backing_path)
        return err;
    return vub_qcow2_open_backing(q, backing_format, opts, top, depth + 1, e);
}

/* Opens img (its fd open and locked) as qcow2; on failure formats *why:
 * "path: reason", or for a failure in the backing chain the reason first
 * and the chain after ([QCOW2-BACKING-WHY]), and closes img. */
static enum vub_err vub_qcow2_open(struct vub_image *img, const char *path, const struct vub_image_opts *opts,
                                   struct vub_image **out, char *why, size_t why_len)
{
    struct vub_error e = {VUB_R_NONE, 0, 0};
    enum vub_err err = vub_qcow2_open_chain(img, path, opts, img, 0, &e);
    if (err == VUB_OK) {
        *out = img;
        return VUB_OK;
    }
    /* The deepest image is the one that failed (vub_qcow2_open_backing). */
    const struct vub_image *failed = img;
    const char *failed_path = path;
    unsigned depth = 0;
    for (; failed->qcow2 && failed->qcow2->backing; depth++) {
        failed_path = failed->qcow2->backing_path;
        failed = failed->qcow2->backing;
    }
    size_t used = 0;
    if (e.reason == VUB_R_NONE) /* the allocations of open name no reason of their own */
        vub_fail(&e, VUB_R_SYS_NOMEM, 0, 0);
    vub_error_format(&e, depth ? NULL : path, why, why_len);
    /* [QCOW2-INCOMPAT-UNKNOWN] the failing image's own name for the bit */
    char own[47];
    if (why && e.reason == VUB_R_QCOW2_INCOMPAT_UNKNOWN && vub_image_feature_name(failed, 0, (unsigned)e.a, own) &&
        (used = strlen(why)) < why_len)
        snprintf(why + used, why_len - used, " (the image calls it \"%s\")", own);
    if (why && depth && (used = strlen(why)) < why_len)
        snprintf(why + used, why_len - used, " (backing chain: %s -> %s%s, %u deep)", path,
                 depth > 1 ? "... -> " : "", failed_path, depth);
    vub_image_close(img);
    return err;
}

/* Reads [off, off + bytes of iov) (checked against img->size by the image
 * layer): maps it extent by extent, merging neighbours that one read can
 * serve (a run of contiguous data clusters is one preadv; a run of
 * unallocated clusters is one backing read). */
static enum vub_err vub_qcow2_readv(struct vub_image *img, uint64_t off, const struct iovec *iov, int count)
{
    struct vub_qcow2 *q = img->qcow2;
    struct vub_iov_cursor c = {iov, (unsigned)count, 0, 0};
    uint64_t left = vub_iov_bytes(iov, (unsigned)count);
    struct vub_qcow2_extent run = {0}, next; /* run.bytes 0: no run yet */
    q->why[0] = '\0';
    q->err.reason = VUB_R_NONE;
    while (left > 0) {
        enum vub_err err = vub_qcow2_map(img, off, left, &next);
        if (err != VUB_OK)
            return err;
        /* One read serves both when next has the run's kind and, for data,
         * the next bytes of the file. A compressed cluster is read alone. */
        if (run.bytes && next.kind == run.kind && run.kind != VUB_QCOW2_COMPRESSED &&
            (run.kind != VUB_QCOW2_DATA || run.host_offset + run.bytes == next.host_offset)) {
            run.bytes += next.bytes;
        } else {
            if (run.bytes && (err = vub_qcow2_read_extent(img, &run, &c)) != VUB_OK)
                return err;
            run = next;
        }
        off += next.bytes;
        left -= next.bytes;
    }
    return run.bytes ? vub_qcow2_read_extent(img, &run, &c) : VUB_OK;
}

static void vub_qcow2_close(struct vub_image *img)
{
    struct vub_qcow2 *q = img->qcow2;
    if (!q)
        return;
    vub_image_close(q->backing);
    vub_sys_close(&q->data_fd);
    free(q->l1);
    free(q->l2_slots);
    free(q->zstd);
    free(q->cluster);
    free(q->data_path);
    free(q->backing_name);
    free(q->backing_path);
    free(q->snapshot_offsets);
    free(q->feature_table);
    free(q);
    img->qcow2 = NULL;
}

/* ---- 9.9 Image queries: info, snapshots, block status ---------------------- */

enum vub_err vub_image_info(const struct vub_image *img, struct vub_image_info *out)
{
    if (!img || !out)
        return VUB_E_INVAL;
    *out = (struct vub_image_info){.format = img->format, .size_bytes = img->size, .snapshot_index = -1};
    const struct vub_qcow2 *q = img->qcow2;
    if (!q) {
        uint64_t bytes;
        out->file_bytes = vub_sys_stat(img->fd, true, &bytes, NULL, NULL) ? bytes : 0;
        return VUB_OK;
    }
    out->file_bytes = q->file_bytes;
    out->version = q->hdr.version;
    out->cluster_bits = q->cluster_bits;
    out->refcount_bits = 1u << q->hdr.refcount_order;
    out->incompatible_features = q->hdr.incompatible_features;
    out->compatible_features = q->hdr.compatible_features;
    out->autoclear_features = q->hdr.autoclear_features;
    out->compression = q->hdr.compression_type == QCOW2_COMPRESSION_ZLIB ? "zlib" : "zstd";
    out->extended_l2 = q->extended_l2;
    out->backing_name = q->backing_name;
    out->backing_path = q->backing_path;
    out->backing_format = !q->backing ? NULL : q->backing->format == VUB_FORMAT_RAW ? "raw" : "qcow2";
    out->backing = q->backing;
    out->data_file = q->data_path;
    out->snapshot_count = q->snapshot_count;
    out->snapshot_index = q->snapshot_index;
    return VUB_OK;
}

/* The feature name table ("It can be used by applications that don't know
 * the respective feature ... to display a useful error message"): entries of
 * type, bit and a name of 46 bytes at most, "not necessarily null
 * terminated if it has full length". */
const char *vub_image_feature_name(const struct vub_image *img, unsigned kind, unsigned bit, char name[47])
{
    const struct vub_qcow2 *q = img ? img->qcow2 : NULL;
    const uint8_t *table = q ? q->feature_table : NULL;
    for (uint32_t at = 0; table && name && q->feature_table_bytes - at >= VUB_QCOW2_FEATURE_NAME_ENTRY;
         at += VUB_QCOW2_FEATURE_NAME_ENTRY) {
        const uint8_t *entry = table + at;
        if (entry[0] != kind || entry[1] != bit)
            continue;
        const uint8_t *end = memchr(entry + 2, '\0', 46);
        vub_qcow2_printable(name, 47, entry + 2, end ? (size_t)(end - (entry + 2)) : 46);
        return name[0] ? name : NULL;
    }
    return NULL;
}

enum vub_err vub_image_snapshot(const struct vub_image *img, uint32_t index, struct vub_image_snapshot *out)
{
    if (!img || !out)
        return VUB_E_INVAL;
    const struct vub_qcow2 *q = img->qcow2;
    if (!q || index >= q->snapshot_count)
        return VUB_E_RANGE;
    struct vub_qcow2_snapshot_header s;
    uint64_t at = q->snapshot_offsets[index];
    if (vub_qcow2_snapshot_read(img->fd, at, &s, NULL) != VUB_OK)
        return VUB_E_IO;
    memset(out, 0, sizeof *out);
    uint64_t id_at = at + VUB_QCOW2_SNAPSHOT_FIXED_BYTES + s.extra_data_size;
    size_t id_n = VUB_MIN(s.id_str_size, sizeof out->id - 1);
    size_t name_n = VUB_MIN(s.name_size, sizeof out->name - 1);
    if (vub_qcow2_pread(img->fd, out->id, id_n, id_at, NULL) != VUB_OK ||
        vub_qcow2_pread(img->fd, out->name, name_n, id_at + s.id_str_size, NULL) != VUB_OK)
        return VUB_E_IO;
    /* cut to fit, made printable in place */
    vub_qcow2_printable(out->id, sizeof out->id, (const uint8_t *)out->id, id_n);
    vub_qcow2_printable(out->name, sizeof out->name, (const uint8_t *)out->name, name_n);
    out->id_bytes = s.id_str_size;
    out->name_bytes = s.name_size;
    out->vm_state_bytes = s.vm_state_size;
    out->size_bytes = s.disk_size;
    out->date_sec = s.date_sec;
    out->date_nsec = s.date_nsec;
    out->vm_clock_nsec = s.vm_clock_nsec;
    return VUB_OK;
}

enum vub_err vub_image_block_status(struct vub_image *img, uint64_t off, uint64_t len, uint64_t *run_bytes,
                                    bool *zero)
{
    if (!img || !run_bytes || !zero || len == 0)
        return VUB_E_INVAL;
    if (!vub_range_ok(off, len, img->size))
        return VUB_E_RANGE;
    struct vub_qcow2 *q = img->qcow2;
    *run_bytes = len;
    *zero = false;
    if (!q)
        return VUB_OK; /* raw: holes are not looked for */
    q->why[0] = '\0';
    q->err.reason = VUB_R_NONE;
    uint64_t done = 0;
    while (done < len) {
        struct vub_qcow2_extent e;
        enum vub_err err = vub_qcow2_map(img, off + done, len - done, &e);
        if (err != VUB_OK)
            return err;
        bool z = e.kind == VUB_QCOW2_ZERO || e.kind == VUB_QCOW2_UNALLOCATED;
        /* an unallocated extent asks the backing file, trimming e to the part
         * that answers the same way; past its end it reads zeros */
        if (e.kind == VUB_QCOW2_UNALLOCATED && q->backing && e.guest_offset < q->backing->size) {
            uint64_t covered = VUB_MIN(q->backing->size - e.guest_offset, e.bytes);
            if ((err = vub_image_block_status(q->backing, e.guest_offset, covered, &e.bytes, &z)) != VUB_OK)
                return vub_qcow2_backing_fail(q, err);
        }
        if (done == 0)
            *zero = z;
        else if (z != *zero)
            break;
        done += e.bytes;
    }
    *run_bytes = done;
    return VUB_OK;
}

const char *vub_image_why(const struct vub_image *img)
{
    return img && img->qcow2 ? img->qcow2->why : "";
}

/* ======================================================================== *
 * 10. Inflate: raw deflate  (RFC 1951 "DEFLATE Compressed Data Format",
 * version 1.3)
 *
 * A qcow2 compressed cluster with compression_type 0 is raw deflate: no zlib
 * header and no Adler-32 trailer (qcow2.txt, "Compressed Clusters Descriptor").
 * This section turns one such stream back into one cluster, decoding straight
 * into the caller's cluster buffer. Read it beside RFC 1951: it follows the
 * RFC bottom-up, from bits (3.1.1) to the block loop (3.2.3). Each
 * function's comment says why it exists and ends, where the RFC has traps
 * for an implementation written from it alone, with "Format notes".
 *
 * The engine does no I/O, never allocates and writes nothing static (it
 * needs only <stdint.h>, <stddef.h> and <string.h>): its state is one struct
 * on the caller's stack, about 8 KiB, so any number of threads may inflate.
 *
 * Two Huffman decoders live side by side: the reference walks the canonical
 * code a bit at a time, as the RFC defines it; the fast one looks bits up in
 * a table first. The tests run both on every stream and compare the output.
 * ======================================================================== */

/* Results of vub_inflate(), numbered like a table (the numbers are stable):
 * 0 and 1 stop cleanly, each negative value is one kind of malformed input.
 * The one list makes the enum and the sentences for logs. [INFL-RESULTS] */
#define VUB_INFLATE_RESULTS(X) \
    X(VUB_INFLATE_OK, 0, "deflate stream complete") \
    X(VUB_INFLATE_FULL, 1, "output buffer full before the deflate stream ended") \
    X(VUB_INFLATE_E_INPUT, -1, "deflate input ran out before the stream ended") \
    X(VUB_INFLATE_E_BLOCK_TYPE, -2, "deflate block type 3 is reserved") \
    X(VUB_INFLATE_E_STORED_NLEN, -3, "stored block NLEN is not the complement of LEN") \
    X(VUB_INFLATE_E_TOO_MANY_LENS, -4, "dynamic block declares more than 286 literal/length codes") \
    X(VUB_INFLATE_E_TOO_MANY_DISTS, -5, "dynamic block declares more than 30 distance codes") \
    X(VUB_INFLATE_E_CL_OVER, -6, "code-length code is over-subscribed") \
    X(VUB_INFLATE_E_CL_INCOMPLETE, -7, "code-length code is incomplete") \
    X(VUB_INFLATE_E_REPEAT_FIRST, -8, "code-length repeat with no previous length") \
    X(VUB_INFLATE_E_REPEAT_PAST, -9, "code-length repeat runs past the last length") \
    X(VUB_INFLATE_E_NO_EOB, -10, "literal/length code has no end-of-block code") \
    X(VUB_INFLATE_E_LEN_OVER, -11, "literal/length code is over-subscribed") \
    X(VUB_INFLATE_E_LEN_INCOMPLETE, -12, "literal/length code is incomplete") \
    X(VUB_INFLATE_E_DIST_OVER, -13, "distance code is over-subscribed") \
    X(VUB_INFLATE_E_DIST_INCOMPLETE, -14, "distance code is incomplete") \
    X(VUB_INFLATE_E_LEN_CODE, -15, "input bits match no literal/length code") \
    X(VUB_INFLATE_E_DIST_CODE, -16, "input bits match no distance code") \
    X(VUB_INFLATE_E_LEN_SYMBOL, -17, "length symbol 286 or 287 used") \
    X(VUB_INFLATE_E_DIST_SYMBOL, -18, "distance symbol 30 or 31 used") \
    X(VUB_INFLATE_E_DIST_FAR, -19, "distance reaches back before the start of the output")

enum vub_inflate_result {
#define VUB_INFL_ENUM(name, value, line) name = value,
    VUB_INFLATE_RESULTS(VUB_INFL_ENUM)
#undef VUB_INFL_ENUM
    VUB_INFLATE_RESULT_MIN = -19 /* lowest result; for tests and tables */
};

static const char *vub_inflate_strerror(int result)
{
#define VUB_INFL_TEXT(name, value, line) [(value) - VUB_INFLATE_RESULT_MIN] = line,
    static const char *const text[] = {VUB_INFLATE_RESULTS(VUB_INFL_TEXT)};
#undef VUB_INFL_TEXT
    unsigned i = (unsigned)(result - VUB_INFLATE_RESULT_MIN);
    return i < VUB_ARRAY_LEN(text) && text[i] ? text[i] : "unknown inflate result";
}

/* Sizes fixed by the format (RFC 1951 3.2.5-3.2.7), plus the fast table's width. */
enum {
    VUB_INFL_MAX_BITS = 15,        /* longest Huffman code */
    VUB_INFL_LIT_LEN_CODES = 288,  /* fixed code: 0-255 literals, 256 end, 257-287 lengths */
    VUB_INFL_DIST_CODES = 32,      /* fixed code: 30 real distances, 2 unusable */
    VUB_INFL_DYN_LIT_LEN_MAX = 286, /* most lit/len lengths a dynamic header may send */
    VUB_INFL_DYN_DIST_MAX = 30,    /* most distance lengths a dynamic header may send */
    VUB_INFL_CL_CODES = 19,        /* code-length alphabet: 0-15 lengths, 16-18 repeats */
    VUB_INFL_END_OF_BLOCK = 256,
    VUB_INFL_FAST_BITS = 10,       /* fast table covers codes up to this long */
    VUB_INFL_FAST_LEN_SHIFT = 9,   /* fast entry: symbol in bits 0-8, code length above */
    VUB_INFL_FAST_SYMBOL_MASK = 0x1ff
};

/* One Huffman code, in the form both decoders read. */
struct vub_infl_huff {
    uint16_t count[VUB_INFL_MAX_BITS + 1];     /* codes of each length; [0] unused */
    uint16_t symbol[VUB_INFL_LIT_LEN_CODES];   /* symbols in code order: by length, then value */
    uint16_t fast[1u << VUB_INFL_FAST_BITS];   /* next fast_bits bits -> symbol | length << 9, or 0 */
    unsigned fast_bits;                        /* entries in use: 1 << fast_bits */
    unsigned max_len;                          /* longest code in use; 0 = empty code */
};

/* The decoder's whole state. Lives on the stack of vub_infl_run(). */
struct vub_infl {
    const uint8_t *src;        /* compressed input */
    size_t src_len;            /* never read src[src_len] or beyond */
    size_t src_pos;            /* next byte of src to load into bit_buf */
    uint64_t bit_buf;          /* loaded, unconsumed bits; next stream bit in bit 0 */
    unsigned bit_count;        /* valid bits in bit_buf (at most 63); above them all 0 */
    uint8_t *dst;              /* output, and the window distances point into */
    size_t dst_len;            /* never write dst[dst_len] or beyond */
    size_t dst_pos;            /* bytes produced so far */
    int use_table;             /* 1: try the fast table first; 0: reference decode only */
    int codes_are_fixed;       /* lit_len and dist hold the fixed codes already */
    struct vub_infl_huff lit_len; /* literal/length code of the current block */
    struct vub_infl_huff dist;    /* distance code of the current block */
};

/* ---- Bits (RFC 1951 3.1.1 "Packing into bytes") ---- */

/* Tops the bit buffer up to at least 56 bits, or to the end of the input;
 * bytes loaded ahead are not counted as used (vub_infl_unload()). Works on
 * local copies: a store to s->bit_buf may alias the input and force reloads.
 *
 * Format notes: the first bit of the stream is bit 0 of the first byte. */
static void vub_infl_fill(struct vub_infl *s)
{
    uint64_t buf = s->bit_buf;
    unsigned count = s->bit_count;
    size_t pos = s->src_pos;
    while (count < 56 && pos < s->src_len) {
        buf |= (uint64_t)s->src[pos++] << count;
        count += 8;
    }
    s->bit_buf = buf;
    s->bit_count = count;
    s->src_pos = pos;
}

/* Takes the next bit_count (0..16) bits as a number (never negative), or
 * VUB_INFLATE_E_INPUT exactly when the stream needs a bit the input lacks.
 *
 * Format notes: fields other than Huffman codes are packed starting with their
 * least significant bit, so the first bit taken is the value's bit 0. A
 * 16-bit field read this way on a byte boundary is little-endian, which is
 * what stored blocks' LEN and NLEN are. [INFL-CUT] */
static int vub_infl_bits(struct vub_infl *s, unsigned bit_count)
{
    if (s->bit_count < bit_count) {
        vub_infl_fill(s);
        if (s->bit_count < bit_count)
            return VUB_INFLATE_E_INPUT;
    }
    int value = (int)(s->bit_buf & ((1u << bit_count) - 1));
    s->bit_buf >>= bit_count;
    s->bit_count -= bit_count;
    return value;
}

/* Gives whole bytes unread in the bit buffer back to src (they were only
 * looked ahead at) and drops the rest of a partly used byte, which counts as
 * used: then src_pos is the bytes used, and stored bytes can be read from src. */
static void vub_infl_unload(struct vub_infl *s)
{
    s->src_pos -= s->bit_count / 8;
    s->bit_buf = 0;
    s->bit_count = 0;
}

/* ---- Stored blocks (RFC 1951 3.2.4 "Non-compressed blocks (BTYPE=00)") ---- */

/* Copies a stored block's bytes, as many as fit: VUB_INFLATE_FULL if the
 * output fills first (a full output wins: a complete cluster is complete),
 * VUB_INFLATE_E_INPUT if the input ends first.
 *
 * Format notes: LEN starts on the byte boundary after the 3 header bits,
 * which may end anywhere in a byte; the bits skipped are ignored, whatever
 * their value [INFL-STORED-ALIGN]. LEN is followed by NLEN, its ones'
 * complement, both 16-bit little-endian. LEN 0 is valid (zlib writes empty
 * stored blocks to flush), and so is a stored block that is not the last.
 * [INFL-STORED] [INFL-STORED-NLEN] [INFL-FULL] */
static int vub_infl_stored(struct vub_infl *s)
{
    vub_infl_unload(s);
    int len = vub_infl_bits(s, 16);
    if (len < 0)
        return len;
    int nlen = vub_infl_bits(s, 16);
    if (nlen < 0)
        return nlen;
    if (nlen != (len ^ 0xffff))
        return VUB_INFLATE_E_STORED_NLEN;
    vub_infl_unload(s); /* the block's first bytes may be in the bit buffer */

    size_t room = s->dst_len - s->dst_pos;
    size_t n = VUB_MIN((size_t)len, VUB_MIN(room, s->src_len - s->src_pos));
    if (n > 0)
        memcpy(s->dst + s->dst_pos, s->src + s->src_pos, n);
    s->dst_pos += n;
    s->src_pos += n;
    if (n == (size_t)len)
        return 0;
    return n == room ? VUB_INFLATE_FULL : VUB_INFLATE_E_INPUT;
}

/* ---- Huffman codes (RFC 1951 3.2.2 "Use of Huffman coding in the deflate format") ---- */

/* Fills the fast table: a code no longer than fast_bits owns every slot
 * whose low bits are its code as it arrives (the higher bits belong to what
 * comes next). Longer codes, and bits that start no code, leave 0. The table
 * is only as wide as the longest code needs: a hostile stream of tiny blocks
 * must not cost 1024 stores each.
 *
 * Format notes: the canonical code of 3.2.2: codes of one length are
 * consecutive numbers in symbol order, and the first code of length n+1 is
 * (first code of length n + number of codes of length n) shifted left by
 * one. Codes are defined MSB-first but arrive LSB-first, so each is
 * reversed to index the table. Only called for codes that are not
 * over-subscribed. [INFL-FAST] */
static void vub_infl_build_fast(struct vub_infl_huff *h)
{
    h->fast_bits = VUB_MIN(h->max_len, (unsigned)VUB_INFL_FAST_BITS);
    unsigned slots = 1u << h->fast_bits;
    memset(h->fast, 0, slots * sizeof h->fast[0]);
    unsigned code = 0, index = 0;
    for (unsigned len = 1; len <= h->fast_bits; len++) {
        for (unsigned i = 0; i < h->count[len]; i++, code++, index++) {
            uint16_t entry = (uint16_t)(h->symbol[index] | len << VUB_INFL_FAST_LEN_SHIFT);
            unsigned reversed = 0;
            for (unsigned bit = 0; bit < len; bit++)
                reversed |= ((code >> bit) & 1) << (len - 1 - bit);
            for (unsigned slot = reversed; slot < slots; slot += 1u << len)
                h->fast[slot] = entry;
        }
        code <<= 1;
    }
}

/* Builds a code from its code lengths (0 = symbol unused). Returns the
 * number of unused 15-bit code slots: 0 for a complete code, more for an
 * incomplete one, or -1 if the lengths ask for more codes than exist
 * (over-subscribed); the caller decides what it accepts.
 *
 * Format notes: the code is fixed by the lengths alone (3.2.2): shorter
 * codes come first, and within a length, smaller symbols get smaller codes.
 * So symbol[] listed by (length, symbol) plus count[] is the whole code.
 * [INFL-HUFF-CANON] */
static int vub_infl_build(struct vub_infl_huff *h, const uint8_t *lengths, unsigned symbol_count)
{
    memset(h->count, 0, sizeof h->count);
    h->max_len = 0;
    for (unsigned sym = 0; sym < symbol_count; sym++) {
        h->count[lengths[sym]]++;
        h->max_len = VUB_MAX(h->max_len, lengths[sym]);
    }
    h->count[0] = 0;

    /* Each code of length n uses 2^(15-n) of the 2^15 slots of length 15. */
    int unused = 1;
    for (unsigned len = 1; len <= VUB_INFL_MAX_BITS; len++) {
        unused = unused * 2 - h->count[len];
        if (unused < 0)
            return -1;
    }

    uint16_t next[VUB_INFL_MAX_BITS + 1]; /* next free symbol[] slot per length */
    next[1] = 0;
    for (unsigned len = 1; len < VUB_INFL_MAX_BITS; len++)
        next[len + 1] = (uint16_t)(next[len] + h->count[len]);
    for (unsigned sym = 0; sym < symbol_count; sym++)
        if (lengths[sym] != 0)
            h->symbol[next[lengths[sym]]++] = (uint16_t)sym;

    vub_infl_build_fast(h);
    return unused;
}

/* Checks a built lit/len or distance code: complete, or the one permitted
 * kind of incomplete.
 *
 * Format notes: 3.2.7 lets a single used distance code have a 1-bit code,
 * leaving the other unused. zlib applies the rule to both codes: any code
 * whose longest length is at most 1 may be incomplete, so a distance code
 * may also be empty (literals only) and a lit/len code end-of-block alone
 * (an empty block). vub accepts exactly what zlib accepts.
 * [INFL-HUFF-COMPLETE] [INFL-INCOMPLETE] */
static int vub_infl_check(const struct vub_infl_huff *h, int unused, int over_err, int incomplete_err)
{
    if (unused < 0)
        return over_err;
    if (unused > 0 && h->max_len > 1)
        return incomplete_err;
    return 0;
}

/* Reference decoder: reads a code one bit at a time and returns its symbol,
 * VUB_INFLATE_E_INPUT, or no_code_err if the bits start no code (possible
 * only in an incomplete code). Needs nothing but count[] and symbol[].
 *
 * Format notes: Huffman codes are the exception to LSB-first packing
 * (3.1.1): their first bit on the wire is the code's most significant bit.
 * The codes of each length are the numbers first .. first + count - 1.
 * [INFL-CODE] */
static int vub_infl_decode_slow(struct vub_infl *s, const struct vub_infl_huff *h, int no_code_err)
{
    int code = 0;  /* bits read so far, first bit most significant */
    int first = 0; /* first code of the current length */
    int index = 0; /* position in symbol[] of that first code */
    for (unsigned len = 1; len <= h->max_len; len++) {
        int bit = vub_infl_bits(s, 1);
        if (bit < 0)
            return bit;
        code = (code << 1) | bit;
        int count = h->count[len];
        if (code - first < count)
            return h->symbol[index + (code - first)];
        index += count;
        first = (first + count) << 1;
    }
    return no_code_err;
}

/* Decodes one symbol, through the fast table if enabled, else through the
 * reference; both give the same symbol, bits consumed and errors (tested).
 *
 * Format notes: a table entry is trusted only if its code length fits in
 * the bits actually loaded; near the end of the input the rest of the
 * index is zero padding, not stream bits. [INFL-FAST] */
static int vub_infl_decode(struct vub_infl *s, const struct vub_infl_huff *h, int no_code_err)
{
    if (s->use_table) {
        if (s->bit_count < VUB_INFL_MAX_BITS)
            vub_infl_fill(s);
        unsigned entry = h->fast[s->bit_buf & ((1u << h->fast_bits) - 1)];
        unsigned len = entry >> VUB_INFL_FAST_LEN_SHIFT;
        if (entry != 0 && len <= s->bit_count) {
            s->bit_buf >>= len;
            s->bit_count -= len;
            return (int)(entry & VUB_INFL_FAST_SYMBOL_MASK);
        }
    }
    return vub_infl_decode_slow(s, h, no_code_err);
}

/* ---- Compressed blocks (RFC 1951 3.2.5 "Compressed blocks (length and distance codes)") ---- */

/* Base values and extra-bit counts of lengths (symbols 257..285) and
 * distances (symbols 0..29), from the tables in RFC 1951 3.2.5. */
static const uint16_t vub_infl_len_base[29] = {
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
    35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t vub_infl_len_extra[29] = {
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
    3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t vub_infl_dist_base[30] = {
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
    257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t vub_infl_dist_extra[30] = {
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
    7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/* Copies length bytes from distance bytes back in the output, as many as
 * fit; VUB_INFLATE_FULL if not all did. With no room left at all the match
 * is not judged: zlib stops there too, so a cluster QEMU reads is a cluster
 * vub reads.
 *
 * Format notes: the distance may be shorter than the length (3.2.3: "the
 * referenced string may overlap the current position"): the copy then reads
 * bytes it has just written, so it goes forward one byte at a time (memset
 * when the distance is 1). The output buffer is the whole window, across
 * blocks: nothing before its first byte exists, so reaching further back is
 * an error, not zeros. [INFL-WINDOW] any distance up to 32768 is accepted,
 * bounded only by the bytes produced so far. [INFL-OVERLAP] [INFL-DIST-FAR]
 * [INFL-FULL] */
static int vub_infl_copy(struct vub_infl *s, size_t distance, size_t length)
{
    size_t room = s->dst_len - s->dst_pos;
    if (room == 0)
        return VUB_INFLATE_FULL;
    if (distance > s->dst_pos)
        return VUB_INFLATE_E_DIST_FAR;
    size_t n = VUB_MIN(length, room);
    uint8_t *to = s->dst + s->dst_pos;
    const uint8_t *from = to - distance;
    if (distance >= n) {
        memcpy(to, from, n);
    } else if (distance == 1) {
        memset(to, *from, n); /* a run of one byte: the usual way zeros come */
    } else {
        for (size_t i = 0; i < n; i++)
            to[i] = from[i];
    }
    s->dst_pos += n;
    return n == length ? 0 : VUB_INFLATE_FULL;
}

/* Finishes a length/distance pair once its length symbol (257..287) is read.
 *
 * Format notes: symbols 286 and 287 and distances 30 and 31 have codes in
 * the fixed code (3.2.6) but no meaning; only a fixed block can send them.
 * Length 258 has its own symbol, 285, with no extra bits, although 284 with
 * extra bits 31 also reaches 258; the RFC's table stops 284 at 257, but zlib
 * decodes 284+31 as 258 without complaint, and so does vub (no encoder emits
 * it). [INFL-LENGTHS] [INFL-DISTANCES] [INFL-LEN258] [INFL-SYM-UNUSED] */
static int vub_infl_match(struct vub_infl *s, int len_symbol)
{
    unsigned li = (unsigned)len_symbol - 257;
    if (li >= 29)
        return VUB_INFLATE_E_LEN_SYMBOL;
    int extra = vub_infl_bits(s, vub_infl_len_extra[li]);
    if (extra < 0)
        return extra;
    size_t length = vub_infl_len_base[li] + (size_t)extra;

    int di = vub_infl_decode(s, &s->dist, VUB_INFLATE_E_DIST_CODE);
    if (di < 0)
        return di;
    if (di >= 30)
        return VUB_INFLATE_E_DIST_SYMBOL;
    extra = vub_infl_bits(s, vub_infl_dist_extra[di]);
    if (extra < 0)
        return extra;
    size_t distance = vub_infl_dist_base[di] + (size_t)extra;
    return vub_infl_copy(s, distance, length);
}

/* Decodes a compressed block's data with the codes in s->lit_len and
 * s->dist, up to and including its end-of-block code. The room check before
 * each literal keeps a hostile stream inside the cluster buffer. [INFL-FULL]
 *
 * Format notes: 3.2.5: one alphabet carries literals (0..255), end of block
 * (256) and lengths (257..285); a distance code follows only a length. */
static int vub_infl_codes(struct vub_infl *s)
{
    for (;;) {
        int sym = vub_infl_decode(s, &s->lit_len, VUB_INFLATE_E_LEN_CODE);
        if (sym < 0)
            return sym;
        if (sym < VUB_INFL_END_OF_BLOCK) {
            if (s->dst_pos == s->dst_len)
                return VUB_INFLATE_FULL;
            s->dst[s->dst_pos++] = (uint8_t)sym;
        } else if (sym == VUB_INFL_END_OF_BLOCK) {
            return 0;
        } else {
            int err = vub_infl_match(s, sym);
            if (err)
                return err;
        }
    }
}

/* ---- Fixed Huffman codes (RFC 1951 3.2.6 "Compression with fixed Huffman codes (BTYPE=01)") ---- */

/* Builds the fixed codes, at most once per vub_inflate() call (a dynamic
 * block overwrites them), then decodes the block. Rebuilding them for each
 * block would let a 4 MiB extent of 10-bit empty fixed blocks cost seconds.
 *
 * Format notes: lit/len lengths are 8 for 0-143, 9 for 144-255, 7 for
 * 256-279 and 8 for 280-287; all 32 distance codes are 5 bits. The unusable
 * symbols are in the codes too, so both are complete and 286/287 and 30/31
 * decode (and are then rejected by name) instead of matching no code.
 * [INFL-FIXED] [INFL-SYM-UNUSED] */
static int vub_infl_fixed(struct vub_infl *s)
{
    if (!s->codes_are_fixed) {
        uint8_t lengths[VUB_INFL_LIT_LEN_CODES];
        for (unsigned sym = 0; sym < VUB_INFL_LIT_LEN_CODES; sym++)
            lengths[sym] = sym < 144 ? 8 : sym < 256 ? 9 : sym < 280 ? 7 : 8;
        vub_infl_build(&s->lit_len, lengths, VUB_INFL_LIT_LEN_CODES);
        memset(lengths, 5, VUB_INFL_DIST_CODES);
        vub_infl_build(&s->dist, lengths, VUB_INFL_DIST_CODES);
        s->codes_are_fixed = 1;
    }
    return vub_infl_codes(s);
}

/* ---- Dynamic Huffman codes (RFC 1951 3.2.7 "Compression with dynamic Huffman codes (BTYPE=10)") ---- */

/* The order in which a dynamic header sends code-length code lengths. */
static const uint8_t vub_infl_cl_order[VUB_INFL_CL_CODES] = {
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

/* Reads the code-length code: HCLEN + 4 lengths of 3 bits each.
 *
 * Format notes: the lengths come in the order above (most often used
 * first), not 0..18; the ones not sent are 0. This code must be complete:
 * zlib allows no incomplete code-length code, not even a single one-bit
 * code. [INFL-CL-ORDER] [INFL-CL-COMPLETE] */
static int vub_infl_cl_code(struct vub_infl *s, struct vub_infl_huff *cl, unsigned cl_count)
{
    uint8_t lengths[VUB_INFL_CL_CODES] = {0};
    for (unsigned i = 0; i < cl_count; i++) {
        int len = vub_infl_bits(s, 3);
        if (len < 0)
            return len;
        lengths[vub_infl_cl_order[i]] = (uint8_t)len;
    }
    int unused = vub_infl_build(cl, lengths, VUB_INFL_CL_CODES);
    if (unused < 0)
        return VUB_INFLATE_E_CL_OVER;
    return unused > 0 ? VUB_INFLATE_E_CL_INCOMPLETE : 0;
}

/* Symbols 16, 17 and 18 of the code-length alphabet: the extra bits of
 * their repeat count, and the count those bits add to. */
static const uint8_t vub_infl_repeat_extra[3] = {2, 3, 7};
static const uint8_t vub_infl_repeat_base[3] = {3, 3, 11};

/* Reads length_count code lengths (lit/len then distance) with the
 * code-length code.
 *
 * Format notes: symbols 0-15 are lengths; 16 repeats the previous length
 * 3-6 times, 17 writes 3-10 zeros and 18 writes 11-138 zeros. The lit/len
 * and distance lengths form one sequence, so a repeat may run from the one
 * into the other, but never past the end of both, and 16 needs a length
 * before it. [INFL-REPEAT] */
static int vub_infl_lengths(struct vub_infl *s, const struct vub_infl_huff *cl,
                            uint8_t *lengths, unsigned length_count)
{
    unsigned done = 0;
    while (done < length_count) {
        /* The code-length code is complete, so this error cannot occur. */
        int sym = vub_infl_decode(s, cl, VUB_INFLATE_E_CL_INCOMPLETE);
        if (sym < 0)
            return sym;
        if (sym < 16) {
            lengths[done++] = (uint8_t)sym;
            continue;
        }
        if (sym == 16 && done == 0)
            return VUB_INFLATE_E_REPEAT_FIRST;
        int extra = vub_infl_bits(s, vub_infl_repeat_extra[sym - 16]);
        if (extra < 0)
            return extra;
        unsigned repeat = vub_infl_repeat_base[sym - 16] + (unsigned)extra;
        if (repeat > length_count - done)
            return VUB_INFLATE_E_REPEAT_PAST;
        memset(lengths + done, sym == 16 ? lengths[done - 1] : 0, repeat);
        done += repeat;
    }
    return 0;
}

/* Reads a dynamic block's header, builds its two codes, and decodes the
 * block.
 *
 * Format notes: HLIT (5 bits) + 257 lit/len lengths, HDIST (5 bits) + 1
 * distance lengths, HCLEN (4 bits) + 4 code-length lengths. The fields can
 * say 288 and 32, but more than 286 and 30 is an error: zlib rejects them.
 * End-of-block must have a code, or the block could never end. Checks run in
 * this order: counts, code-length code, lengths, end-of-block, lit/len
 * code, distance code; tests rely on it. [INFL-DYNAMIC] [INFL-COUNTS]
 * [INFL-EOB] */
static int vub_infl_dynamic(struct vub_infl *s)
{
    /* HLIT, HDIST and HCLEN are 5 + 5 + 4 bits in a row, LSB first: one
     * 14-bit number with HLIT in its low bits. */
    int counts = vub_infl_bits(s, 14);
    if (counts < 0)
        return counts;
    unsigned hclen = (unsigned)counts >> 10;
    unsigned lit_len_count = 257 + ((unsigned)counts & 31);
    unsigned dist_count = 1 + (((unsigned)counts >> 5) & 31);
    if (lit_len_count > VUB_INFL_DYN_LIT_LEN_MAX)
        return VUB_INFLATE_E_TOO_MANY_LENS;
    if (dist_count > VUB_INFL_DYN_DIST_MAX)
        return VUB_INFLATE_E_TOO_MANY_DISTS;

    s->codes_are_fixed = 0;
    struct vub_infl_huff cl;
    int err = vub_infl_cl_code(s, &cl, 4 + hclen);
    if (err)
        return err;
    uint8_t lengths[VUB_INFL_DYN_LIT_LEN_MAX + VUB_INFL_DYN_DIST_MAX];
    err = vub_infl_lengths(s, &cl, lengths, lit_len_count + dist_count);
    if (err)
        return err;
    if (lengths[VUB_INFL_END_OF_BLOCK] == 0)
        return VUB_INFLATE_E_NO_EOB;

    int unused = vub_infl_build(&s->lit_len, lengths, lit_len_count);
    err = vub_infl_check(&s->lit_len, unused, VUB_INFLATE_E_LEN_OVER, VUB_INFLATE_E_LEN_INCOMPLETE);
    if (err)
        return err;
    unused = vub_infl_build(&s->dist, lengths + lit_len_count, dist_count);
    err = vub_infl_check(&s->dist, unused, VUB_INFLATE_E_DIST_OVER, VUB_INFLATE_E_DIST_INCOMPLETE);
    if (err)
        return err;
    return vub_infl_codes(s);
}

/* ---- Blocks and the stream (RFC 1951 3.2.3 "Details of block format") ---- */

/* vub_inflate() with the choice of decoder (tests run both and compare):
 * decodes blocks until the one marked last has ended, or something stops it.
 *
 * Format notes: each block starts with BFINAL (1 bit) then BTYPE (2 bits,
 * one LSB-first number: 0 stored, 1 fixed, 2 dynamic, 3 reserved). Only a
 * stored block's body is byte-aligned. Bits after the last block (padding,
 * or the next cluster's data) are not used. The stream has no length field:
 * only the last block's end says it is over, and a cut is known only when a
 * bit is missing. A cut after the output is full is VUB_INFLATE_FULL, as
 * QEMU accepts zlib's Z_BUF_ERROR with no output space left. [INFL-BLOCKS]
 * [INFL-BTYPE3] [INFL-TRAILING] [INFL-CUT] [INFL-FULL] */
static int vub_infl_run(uint8_t *dst, size_t dst_len, size_t *dst_done,
                        const uint8_t *src, size_t src_len, size_t *src_done, int use_table)
{
    struct vub_infl s = {.src = src, .src_len = src_len, .dst = dst, .dst_len = dst_len};
    s.use_table = use_table;
    int result = VUB_INFLATE_OK, last = 0;
    while (result == VUB_INFLATE_OK && !last) {
        last = vub_infl_bits(&s, 1);
        int type = vub_infl_bits(&s, 2);
        if (last < 0 || type < 0)
            result = VUB_INFLATE_E_INPUT;
        else if (type == 0)
            result = vub_infl_stored(&s);
        else if (type == 1)
            result = vub_infl_fixed(&s);
        else if (type == 2)
            result = vub_infl_dynamic(&s);
        else
            result = VUB_INFLATE_E_BLOCK_TYPE;
    }
    if (result == VUB_INFLATE_E_INPUT && s.dst_pos == s.dst_len)
        result = VUB_INFLATE_FULL;
    if (dst_done)
        *dst_done = s.dst_pos;
    vub_infl_unload(&s);
    if (src_done)
        *src_done = s.src_pos;
    return result;
}

/* Decodes the raw deflate stream in src[0..src_len) into dst[0..dst_len).
 *
 * Returns VUB_INFLATE_OK when the last block ended, VUB_INFLATE_FULL when dst
 * filled first (or the input ran out after it filled), or a negative
 * vub_inflate_result naming the malformed input. In every case *dst_done
 * gets the bytes written (dst[0..*dst_done) is the stream's output so far,
 * byte-identical to zlib's) and *src_done the bytes of src used, counting a
 * partly used last byte; either pointer may be NULL. Bytes after the stream
 * are never used (the table decoder may look at up to 7 of them). Never
 * reads src or writes dst outside the given lengths.
 *
 * qcow2 use: a compressed cluster is good when the result is OK or FULL
 * and *dst_done equals the cluster size. [INFL-ZLIB] */
static int vub_inflate(uint8_t *dst, size_t dst_len, size_t *dst_done,
                       const uint8_t *src, size_t src_len, size_t *src_done)
{
    return vub_infl_run(dst, dst_len, dst_done, src, src_len, src_done, 1);
}

/* ======================================================================== *
 * 11. Zstandard decoding  (RFC 8878 "Zstandard Compression and the
 * 'application/zstd' Media Type")
 *
 * It sits beside inflate because qcow2 (section 9) uses both.
 *
 * A qcow2 compressed cluster with compression_type 1 is zstd (qcow2.txt,
 * "compression type"). QEMU writes each cluster as one frame and reads it
 * back by decoding frame after frame into the cluster buffer until the
 * buffer is full; the frame that fills it must then have ended. This section
 * does the same, decoding straight into the caller's cluster buffer, which
 * is also the window that matches copy from.
 *
 * Read it beside RFC 8878, bottom-up: the XXH64 content checksum, the
 * backward bitstream that FSE and Huffman streams share ("FSE", "Huffman-
 * Coded Streams"), FSE table descriptions and decoding tables ("FSE Table
 * Description"), Huffman tree descriptions ("Huffman Tree Description"),
 * the literals section ("Literals Section"), the sequences section
 * ("Sequences Section"), sequence execution and repeat offsets ("Sequence
 * Execution", "Repeat Offsets"), blocks ("Blocks"), the frame header
 * ("Frame Header") and frames ("Frames", "Skippable Frames"). Each
 * function's comment ends with "Format notes": the traps.
 *
 * The engine does no I/O and never allocates. Tables that outlive a block
 * (the Huffman table that treeless literals reuse, the three sequence tables
 * that Repeat_Mode reuses) live in a caller-owned struct vub_zstd_work,
 * about 12 KiB, together with a caller-owned literals buffer of
 * vub_zstd_lit_bytes(dst_len) bytes (at most 128 KiB); the qcow2 reader
 * allocates both once, at open, from the cluster size. Nothing static is
 * written, so any number of threads may decode at once, each with its own
 * work area.
 *
 * Every outcome has its own number in enum vub_zstd_result: 0 is success,
 * negative values are one per kind of malformed input, in the order the
 * format meets them.
 *
 * Two decoders live side by side: the plain one is the reference and the
 * fast one is tested against it. The reference decodes a
 * Huffman code one bit at a time from the per-weight symbol counts, the
 * RFC's "prefix codes are distributed in sequential order" turned into a
 * loop, and copies matches byte by byte. The fast path looks Huffman codes
 * up in a table, several symbols per refill of the bit buffer, and copies
 * matches with memcpy, 16 bytes at a time where the output has room (the
 * bytes past the current position are scratch until written for real).
 * The tests decode every frame both ways and compare.
 * ======================================================================== */

/* Result of vub_zstd_decompress(), numbered like a table; the numbers are
 * stable. [ZSTD-RESULTS] */
enum vub_zstd_result {
    VUB_ZSTD_OK = 0,                 /* frames decoded up to a full output or the input's end */
    VUB_ZSTD_E_INPUT = -1,           /* input ran out inside a frame */
    VUB_ZSTD_E_MAGIC = -2,           /* neither a Zstandard frame nor a skippable frame */
    VUB_ZSTD_E_RESERVED_BIT = -3,    /* Frame_Header_Descriptor's reserved bit is set */
    VUB_ZSTD_E_DICTIONARY = -4,      /* the frame needs a dictionary (Dictionary_ID not 0) */
    VUB_ZSTD_E_TOO_BIG = -5,         /* output would pass dst_len (the cluster size) */
    VUB_ZSTD_E_BLOCK_TYPE = -6,      /* Block_Type 3, reserved */
    VUB_ZSTD_E_BLOCK_SIZE = -7,      /* a block or its output exceeds Block_Maximum_Size */
    VUB_ZSTD_E_CONTENT_SIZE = -8,    /* frame output differs from Frame_Content_Size */
    VUB_ZSTD_E_CHECKSUM = -9,        /* Content_Checksum does not match the output */
    VUB_ZSTD_E_LIT_SIZE = -10,       /* literals section runs past the end of its block */
    VUB_ZSTD_E_LIT_STREAMS = -11,    /* 4 streams with under 6 literals, or a bad jump table */
    VUB_ZSTD_E_NO_HUFFMAN = -12,     /* treeless literals with no earlier Huffman table */
    VUB_ZSTD_E_HUF_TREE = -13,       /* Huffman tree description runs past the literals */
    VUB_ZSTD_E_HUF_WEIGHT = -14,     /* a weight above 11, or more than 255 weights */
    VUB_ZSTD_E_HUF_POWER = -15,      /* weights cannot be completed to a power of 2 */
    VUB_ZSTD_E_HUF_MAX_BITS = -16,   /* Max_Number_of_Bits above 11 */
    VUB_ZSTD_E_HUF_WEIGHT1 = -17,    /* no literal has weight 1 */
    VUB_ZSTD_E_HUF_STREAM = -18,     /* a Huffman stream is not consumed exactly */
    VUB_ZSTD_E_PADDING = -19,        /* a bitstream is empty or its last byte is 0 (no end mark) */
    VUB_ZSTD_E_FSE_LOG = -20,        /* FSE Accuracy_Log above the table's limit */
    VUB_ZSTD_E_FSE_SYMBOLS = -21,    /* FSE distribution goes past the last symbol of its alphabet */
    VUB_ZSTD_E_FSE_DESC = -22,       /* FSE distribution runs past the end of its section */
    VUB_ZSTD_E_SEQ_HEADER = -23,     /* Sequences_Section_Header runs past the block */
    VUB_ZSTD_E_SEQ_RESERVED = -24,   /* reserved bits of the symbol compression modes set */
    VUB_ZSTD_E_SEQ_RLE_SYMBOL = -25, /* RLE_Mode symbol past the last code */
    VUB_ZSTD_E_SEQ_REPEAT = -26,     /* Repeat_Mode with no earlier table in the frame */
    VUB_ZSTD_E_SEQ_EXTRA = -27,      /* bytes after a Number_of_Sequences of 0 */
    VUB_ZSTD_E_SEQ_STREAM = -28,     /* the sequence bitstream is not consumed exactly */
    VUB_ZSTD_E_LIT_OVERRUN = -29,    /* sequences use more literals than the block has */
    VUB_ZSTD_E_OFFSET_ZERO = -30,    /* a repeat offset works out to 0 */
    VUB_ZSTD_E_OFFSET_FAR = -31,     /* an offset reaches before the frame's first byte */
    VUB_ZSTD_E_OFFSET_WINDOW = -32,  /* an offset is larger than Window_Size */
    VUB_ZSTD_E_WORK = -33,           /* caller's literals buffer is smaller than vub_zstd_lit_bytes() */
    VUB_ZSTD_E_WINDOW = -34,         /* Window_Size above VUB_ZSTD_WINDOW_MAX (libzstd's limit) */
    VUB_ZSTD_RESULT_MIN = -34        /* lowest result; for tests and tables */
};

/* One sentence per result, for logs and test output. */
static const char *vub_zstd_strerror(int result)
{
    switch (result) {
    case VUB_ZSTD_OK: return "zstd frames decoded";
    case VUB_ZSTD_E_INPUT: return "zstd input ran out inside a frame";
    case VUB_ZSTD_E_MAGIC: return "not a zstd frame (unknown magic number)";
    case VUB_ZSTD_E_RESERVED_BIT: return "zstd frame header reserved bit is set";
    case VUB_ZSTD_E_DICTIONARY: return "zstd frame needs a dictionary, which qcow2 cannot provide";
    case VUB_ZSTD_E_TOO_BIG: return "zstd output is larger than the cluster";
    case VUB_ZSTD_E_BLOCK_TYPE: return "zstd block type 3 is reserved";
    case VUB_ZSTD_E_BLOCK_SIZE: return "zstd block exceeds the maximum block size";
    case VUB_ZSTD_E_CONTENT_SIZE: return "zstd frame output differs from its declared content size";
    case VUB_ZSTD_E_CHECKSUM: return "zstd content checksum does not match";
    case VUB_ZSTD_E_LIT_SIZE: return "zstd literals section runs past the end of its block";
    case VUB_ZSTD_E_LIT_STREAMS: return "zstd 4-stream literals: under 6 literals or a bad jump table";
    case VUB_ZSTD_E_NO_HUFFMAN: return "zstd treeless literals with no earlier Huffman table";
    case VUB_ZSTD_E_HUF_TREE: return "zstd Huffman tree description runs past the literals section";
    case VUB_ZSTD_E_HUF_WEIGHT: return "zstd Huffman weight above 11, or more than 255 weights";
    case VUB_ZSTD_E_HUF_POWER: return "zstd Huffman weights cannot be completed to a power of 2";
    case VUB_ZSTD_E_HUF_MAX_BITS: return "zstd Huffman code longer than 11 bits";
    case VUB_ZSTD_E_HUF_WEIGHT1: return "zstd Huffman tree has no literal of weight 1";
    case VUB_ZSTD_E_HUF_STREAM: return "zstd Huffman stream not consumed exactly";
    case VUB_ZSTD_E_PADDING: return "zstd bitstream is empty or has no end mark";
    case VUB_ZSTD_E_FSE_LOG: return "zstd FSE accuracy log above the limit for its table";
    case VUB_ZSTD_E_FSE_SYMBOLS: return "zstd FSE distribution goes past the last symbol of its alphabet";
    case VUB_ZSTD_E_FSE_DESC: return "zstd FSE distribution runs past the end of its section";
    case VUB_ZSTD_E_SEQ_HEADER: return "zstd sequences section header runs past the block";
    case VUB_ZSTD_E_SEQ_RESERVED: return "zstd sequence compression modes have reserved bits set";
    case VUB_ZSTD_E_SEQ_RLE_SYMBOL: return "zstd RLE_Mode symbol is past the last code";
    case VUB_ZSTD_E_SEQ_REPEAT: return "zstd Repeat_Mode with no earlier table in the frame";
    case VUB_ZSTD_E_SEQ_EXTRA: return "zstd bytes after a sequence count of zero";
    case VUB_ZSTD_E_SEQ_STREAM: return "zstd sequence bitstream not consumed exactly";
    case VUB_ZSTD_E_LIT_OVERRUN: return "zstd sequences use more literals than the block has";
    case VUB_ZSTD_E_OFFSET_ZERO: return "zstd repeat offset works out to zero";
    case VUB_ZSTD_E_OFFSET_FAR: return "zstd offset reaches before the start of the frame's output";
    case VUB_ZSTD_E_OFFSET_WINDOW: return "zstd offset is larger than the window";
    case VUB_ZSTD_E_WORK: return "zstd literals buffer is smaller than vub_zstd_lit_bytes()";
    case VUB_ZSTD_E_WINDOW: return "zstd window larger than 128 MiB, which QEMU's libzstd refuses";
    default: return "unknown zstd result";
    }
}

/* Sizes fixed by the format. */
#define VUB_ZSTD_MAGIC UINT32_C(0xFD2FB528)      /* "Magic_Number" */
#define VUB_ZSTD_SKIP_MAGIC UINT32_C(0x184D2A50) /* skippable frames: 0x184D2A50..5F */
#define VUB_ZSTD_WINDOW_MAX (UINT64_C(1) << 27) /* libzstd's default window limit */
enum {
    VUB_ZSTD_BLOCK_MAX = 128 * 1024,      /* "Block_Maximum_Size": at most 128 KB */
    VUB_ZSTD_HUF_MAX_BITS = 11,           /* "limits maximum code length to 11 bits" */
    VUB_ZSTD_HUF_WEIGHTS_MAX = 255,       /* weights sent: literals 0..254; 255's is deduced */
    VUB_ZSTD_HUF_WEIGHT_LOG_MAX = 6,      /* "maximum accuracy log is 6 bits" for weights */
    VUB_ZSTD_LL_LOG_MAX = 9,              /* literals length and match length tables: 9 */
    VUB_ZSTD_ML_LOG_MAX = 9,
    VUB_ZSTD_OF_LOG_MAX = 8,              /* offsets table: 8 */
    VUB_ZSTD_LL_CODES = 36,               /* literals length codes 0..35 */
    VUB_ZSTD_ML_CODES = 53,               /* match length codes 0..52 */
    VUB_ZSTD_OF_CODES = 32,               /* offset codes 0..31, as the reference decoder */
    VUB_ZSTD_FSE_SYMBOLS_MAX = 256        /* largest alphabet an FSE table describes */
};

/* ---- State ---- */

/* One cell of an FSE decoding table ("From normalized distribution to
 * decoding tables"), with the symbol already turned into what the decoder
 * needs: for a sequence code, its Baseline and Number_of_Bits; for a
 * Huffman weight table, the weight in `base`. */
struct vub_zstd_fse {
    uint32_t base;       /* value = base + read(extra_bits) */
    uint8_t extra_bits;
    uint8_t state_bits;  /* next state = next_base + read(state_bits) */
    uint16_t next_base;
};

/* One cell of the fast Huffman table: the next max_bits stream bits index
 * it. */
struct vub_zstd_huf_cell {
    uint8_t symbol;
    uint8_t bits;        /* length of the code that starts with these bits */
};

/* The literals' Huffman code, in the forms both decoders read. */
struct vub_zstd_huf {
    struct vub_zstd_huf_cell cell[1u << VUB_ZSTD_HUF_MAX_BITS];
    uint8_t by_weight[256];       /* symbols sorted by weight, then value */
    uint16_t first[VUB_ZSTD_HUF_MAX_BITS + 2];  /* per weight: its first index in by_weight */
    uint16_t count[VUB_ZSTD_HUF_MAX_BITS + 2];  /* per weight: symbols with it */
    uint16_t code_start[VUB_ZSTD_HUF_MAX_BITS + 2]; /* per weight: its first code value */
    unsigned max_bits;            /* Max_Number_of_Bits; 0 = no table in this frame yet */
};

/* One sequence table in use: a table of cells and its accuracy log. */
struct vub_zstd_table {
    struct vub_zstd_fse *cells;   /* into struct vub_zstd_work */
    unsigned log;                 /* Accuracy_Log; 0 for RLE_Mode (one cell) */
    int valid;                    /* set in this frame, so Repeat_Mode may use it */
    int predefined;               /* cells hold the predefined table (built in this call) */
};

/* What survives from block to block, owned by the caller (see above). */
struct vub_zstd_work {
    struct vub_zstd_huf huf;
    struct vub_zstd_fse ll[1u << VUB_ZSTD_LL_LOG_MAX];
    struct vub_zstd_fse ml[1u << VUB_ZSTD_ML_LOG_MAX];
    struct vub_zstd_fse of[1u << VUB_ZSTD_OF_LOG_MAX];
    uint8_t *lit;                 /* caller's literals buffer */
    size_t lit_bytes;             /* its size: at least vub_zstd_lit_bytes(dst_len) */
};

/* The decoder's state for one call. Lives on the stack of vub_zstd_run(). */
struct vub_zstd {
    const uint8_t *src;           /* compressed input */
    size_t src_len;               /* never read src[src_len] or beyond */
    size_t src_pos;               /* next byte of src */
    uint8_t *dst;                 /* output: the cluster, and the window */
    size_t dst_len;               /* never write dst[dst_len] or beyond */
    size_t dst_pos;               /* bytes produced so far */
    int fast;                     /* 1: table Huffman and memcpy copies; 0: reference only */
    struct vub_zstd_work *w;

    /* The current frame */
    size_t frame_start;           /* dst_pos where this frame's output starts */
    uint64_t window_bytes;        /* Window_Size */
    size_t block_max;             /* Block_Maximum_Size */
    uint32_t rep[3];              /* Repeated_Offset1..3 */
    struct vub_zstd_table ll, of, ml;

    /* The current block's literals */
    const uint8_t *lit;           /* into src (raw literals) or w->lit */
    size_t lit_len;
};

/* ---- Helpers ---- */

/* Position of the highest set bit of v (v > 0): floor(log2(v)). */
static unsigned vub_zstd_highbit(uint32_t v)
{
    unsigned n = 0;
    while (v >>= 1)
        n++;
    return n;
}

/* ---- The content checksum: XXH64 ("Content_Checksum": "xxh64() ... with a
 * seed of zero") ---- */

#define VUB_XXH64_P1 UINT64_C(0x9E3779B185EBCA87)
#define VUB_XXH64_P2 UINT64_C(0xC2B2AE3D27D4EB4F)
#define VUB_XXH64_P3 UINT64_C(0x165667B19E3779F9)
#define VUB_XXH64_P4 UINT64_C(0x85EBCA77C2B2AE63)
#define VUB_XXH64_P5 UINT64_C(0x27D4EB2F165667C5)

static uint64_t vub_rotl64(uint64_t x, unsigned r)
{
    return x << r | x >> (64 - r);
}

/* One lane of input folded into one of the four accumulators. */
static uint64_t vub_xxh64_round(uint64_t acc, uint64_t lane)
{
    return vub_rotl64(acc + lane * VUB_XXH64_P2, 31) * VUB_XXH64_P1;
}

static uint64_t vub_xxh64_merge(uint64_t hash, uint64_t acc)
{
    return (hash ^ vub_xxh64_round(0, acc)) * VUB_XXH64_P1 + VUB_XXH64_P4;
}

/* XXH64 of p[0..len), the hash zstd frames carry the low 32 bits of.
 *
 * Format notes: input is read as little-endian 64-bit lanes; 32-byte
 * stripes feed four accumulators, only when there are 32 bytes or more; the
 * length is added before the tail (8-byte lanes, then one 4-byte word, then
 * single bytes), and a final avalanche mixes the bits. [ZSTD-CHECKSUM] */
static uint64_t vub_xxh64(const uint8_t *p, size_t len, uint64_t seed)
{
    size_t i = 0;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = seed + VUB_XXH64_P1 + VUB_XXH64_P2, v2 = seed + VUB_XXH64_P2;
        uint64_t v3 = seed, v4 = seed - VUB_XXH64_P1;
        for (; len - i >= 32; i += 32) {
            v1 = vub_xxh64_round(v1, vub_le64(p + i));
            v2 = vub_xxh64_round(v2, vub_le64(p + i + 8));
            v3 = vub_xxh64_round(v3, vub_le64(p + i + 16));
            v4 = vub_xxh64_round(v4, vub_le64(p + i + 24));
        }
        h = vub_rotl64(v1, 1) + vub_rotl64(v2, 7) + vub_rotl64(v3, 12) + vub_rotl64(v4, 18);
        h = vub_xxh64_merge(h, v1);
        h = vub_xxh64_merge(h, v2);
        h = vub_xxh64_merge(h, v3);
        h = vub_xxh64_merge(h, v4);
    } else {
        h = seed + VUB_XXH64_P5;
    }
    h += (uint64_t)len;
    for (; len - i >= 8; i += 8)
        h = vub_rotl64(h ^ vub_xxh64_round(0, vub_le64(p + i)), 27) * VUB_XXH64_P1 + VUB_XXH64_P4;
    if (len - i >= 4) {
        h = vub_rotl64(h ^ (uint64_t)vub_le32(p + i) * VUB_XXH64_P1, 23) * VUB_XXH64_P2 + VUB_XXH64_P3;
        i += 4;
    }
    for (; i < len; i++)
        h = vub_rotl64(h ^ p[i] * VUB_XXH64_P5, 11) * VUB_XXH64_P1;
    h ^= h >> 33;
    h *= VUB_XXH64_P2;
    h ^= h >> 29;
    h *= VUB_XXH64_P3;
    h ^= h >> 32;
    return h;
}

/* ---- Backward bitstreams ("FSE", "Huffman-Coded Streams") ---- */

/* A bitstream read from its end towards its start. Think of the stream as
 * one little-endian number: reading n bits takes its n highest unread bits.
 * buf holds the next `count` bits in its low end, the next bit to read
 * highest; bytes are loaded from src[byte_pos - 1] downwards. */
struct vub_zbits {
    const uint8_t *src;    /* the stream's first byte */
    size_t byte_pos;       /* src[0..byte_pos) not loaded yet */
    uint64_t buf;          /* low `count` bits are unread; bits above are stale */
    unsigned count;        /* at most 63 */
    unsigned overread;     /* bits read past the stream's start, as zeros */
};

/* Starts a stream of len bytes: skips the zero bits of padding and the 1
 * bit that mark its end.
 *
 * Format notes: "the compressor writes a single 1-bit and then fills the
 * byte with 0-7 0 bits of padding": the last byte is never 0, and an empty
 * stream has no end mark at all; both are corrupt. [ZSTD-STREAM-PAD] */
static int vub_zbits_init(struct vub_zbits *b, const uint8_t *src, size_t len)
{
    if (len == 0 || src[len - 1] == 0)
        return VUB_ZSTD_E_PADDING;
    b->src = src;
    b->byte_pos = len - 1;
    b->buf = src[len - 1];
    b->count = vub_zstd_highbit(src[len - 1]);
    b->overread = 0;
    return 0;
}

/* Loads whole bytes until buf holds at least 56 bits or the stream's start
 * is reached: one 64-bit load when 8 bytes remain, else byte by byte.
 *
 * Format notes: none; this only moves bytes into the buffer earlier. */
static inline void vub_zbits_refill(struct vub_zbits *b)
{
    unsigned k = (63 - b->count) >> 3; /* whole bytes that fit */
    if (k == 0)
        return;
    if (b->byte_pos >= 8) {
        uint64_t word = vub_le64(b->src + b->byte_pos - 8);
        b->buf = b->buf << (8 * k) | word >> (64 - 8 * k);
        b->count += 8 * k;
        b->byte_pos -= k;
        return;
    }
    while (k-- > 0 && b->byte_pos > 0) {
        b->buf = b->buf << 8 | b->src[--b->byte_pos];
        b->count += 8;
    }
}

/* The next n (0..32) bits without taking them; bits past the start read
 * as zeros. */
static inline uint32_t vub_zbits_peek(struct vub_zbits *b, unsigned n)
{
    if (b->count < n) {
        vub_zbits_refill(b);
        if (b->count < n)
            return (uint32_t)((b->buf << (n - b->count)) & ((UINT64_C(1) << n) - 1));
    }
    return (uint32_t)((b->buf >> (b->count - n)) & ((UINT64_C(1) << n) - 1));
}

/* Drops n bits that vub_zbits_peek() has shown. */
static inline void vub_zbits_skip(struct vub_zbits *b, unsigned n)
{
    if (n > b->count) {
        b->overread += n - b->count;
        b->count = 0;
    } else {
        b->count -= n;
    }
}

/* Takes the next n (0..32) bits as a number.
 *
 * Format notes: fields are read "in little-endian fashion" from the end:
 * the first bit read is the value's most significant. Reading past the
 * stream's start is not an error here; it yields zeros and is counted, and
 * each user decides (the Huffman weight stream ends that way, the others
 * must not). */
static inline uint32_t vub_zbits_read(struct vub_zbits *b, unsigned n)
{
    uint32_t v = vub_zbits_peek(b, n);
    vub_zbits_skip(b, n);
    return v;
}

/* Takes n (0..32) bits that the caller knows are in the buffer: the fast
 * path's read, after one refill for several fields. */
static inline uint32_t vub_zbits_take(struct vub_zbits *b, unsigned n)
{
    b->count -= n;
    return (uint32_t)((b->buf >> b->count) & ((UINT64_C(1) << n) - 1));
}

/* One read of a sequence field: take (unchecked) when the fast path has
 * refilled enough bits for the whole sequence, else read (checked). */
static inline uint32_t vub_zbits_get(struct vub_zbits *b, unsigned n, bool unchecked)
{
    return unchecked ? vub_zbits_take(b, n) : vub_zbits_read(b, n);
}

/* True if every bit was read and none past the start. */
static int vub_zbits_done(const struct vub_zbits *b)
{
    return b->count == 0 && b->byte_pos == 0 && b->overread == 0;
}

/* ---- FSE tables ("FSE Table Description", "From normalized distribution
 * to decoding tables") ---- */

/* Which table a distribution is for: fixes its alphabet, its accuracy log
 * limit and what a cell's base and extra bits mean. */
enum vub_zstd_kind { VUB_ZSTD_LL, VUB_ZSTD_ML, VUB_ZSTD_OF, VUB_ZSTD_WEIGHT };

/* Baseline and Number_of_Bits of literals length codes 16..35 and match
 * length codes 32..52 ("Literals length codes", "Match length codes"); the
 * codes below them stand for themselves (plus 3 for match lengths). */
static const uint32_t vub_zstd_ll_base[VUB_ZSTD_LL_CODES - 16] = {
    16, 18, 20, 22, 24, 28, 32, 40, 48, 64, 128, 256, 512, 1024, 2048, 4096,
    8192, 16384, 32768, 65536};
static const uint8_t vub_zstd_ll_bits[VUB_ZSTD_LL_CODES - 16] = {
    1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint32_t vub_zstd_ml_base[VUB_ZSTD_ML_CODES - 32] = {
    35, 37, 39, 41, 43, 47, 51, 59, 67, 83, 99, 131, 259, 515, 1027, 2051,
    4099, 8195, 16387, 32771, 65539};
static const uint8_t vub_zstd_ml_bits[VUB_ZSTD_ML_CODES - 32] = {
    1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* "Default Distributions", for Predefined_Mode. */
static const int16_t vub_zstd_ll_default[VUB_ZSTD_LL_CODES] = {
    4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1,
    -1, -1, -1, -1};
static const int16_t vub_zstd_ml_default[VUB_ZSTD_ML_CODES] = {
    1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1,
    -1, -1, -1, -1, -1};
static const int16_t vub_zstd_of_default[29] = {
    1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1};

/* What symbol `symbol` of a table of this kind decodes to. */
static void vub_zstd_code_value(enum vub_zstd_kind kind, unsigned symbol, struct vub_zstd_fse *cell)
{
    switch (kind) {
    case VUB_ZSTD_LL:
        cell->base = symbol < 16 ? symbol : vub_zstd_ll_base[symbol - 16];
        cell->extra_bits = symbol < 16 ? 0 : vub_zstd_ll_bits[symbol - 16];
        break;
    case VUB_ZSTD_ML:
        cell->base = symbol < 32 ? symbol + 3 : vub_zstd_ml_base[symbol - 32];
        cell->extra_bits = symbol < 32 ? 0 : vub_zstd_ml_bits[symbol - 32];
        break;
    case VUB_ZSTD_OF: /* "Offset_Value = (1 << offsetCode) + readNBits(offsetCode)" */
        cell->base = UINT32_C(1) << symbol;
        cell->extra_bits = (uint8_t)symbol;
        break;
    case VUB_ZSTD_WEIGHT:
        cell->base = symbol;
        cell->extra_bits = 0;
        break;
    }
}

/* Builds a decoding table of 1 << log cells from a normalized distribution
 * of symbol_count probabilities (-1 meaning "less than 1").
 *
 * Format notes: "less than 1" symbols take one cell each from the end of
 * the table, in symbol order, and reset the state fully (Accuracy_Log
 * bits). The others are spread with position += (size >> 1) + (size >> 3)
 * + 3, skipping those end cells; the step is odd, so the walk visits every
 * cell. Then each symbol's cells, in state order, get next-state values
 * counting up from its probability: a cell with value v reads log -
 * highbit(v) bits and adds (v << bits) - size, so the lowest states read
 * one bit more. [ZSTD-FSE-BUILD] */
static void vub_zstd_fse_build(struct vub_zstd_fse *cells, const int16_t *prob, unsigned symbol_count,
                               unsigned log, enum vub_zstd_kind kind)
{
    uint32_t size = UINT32_C(1) << log;
    uint16_t next[VUB_ZSTD_FSE_SYMBOLS_MAX];
    uint8_t symbol_at[1u << VUB_ZSTD_LL_LOG_MAX];
    int high = (int)size - 1;
    for (unsigned s = 0; s < symbol_count; s++) {
        if (prob[s] == -1) {
            symbol_at[high--] = (uint8_t)s;
            next[s] = 1;
        } else {
            next[s] = (uint16_t)prob[s];
        }
    }
    uint32_t pos = 0, step = (size >> 1) + (size >> 3) + 3;
    for (unsigned s = 0; s < symbol_count; s++) {
        for (int i = 0; i < prob[s]; i++) {
            symbol_at[pos] = (uint8_t)s;
            do
                pos = (pos + step) & (size - 1);
            while ((int)pos > high);
        }
    }
    for (uint32_t u = 0; u < size; u++) {
        unsigned s = symbol_at[u];
        uint32_t v = next[s]++;
        unsigned bits = log - vub_zstd_highbit(v);
        vub_zstd_code_value(kind, s, &cells[u]);
        cells[u].state_bits = (uint8_t)bits;
        cells[u].next_base = (uint16_t)((v << bits) - size);
    }
}

/* A forward little-endian bit reader over one section, for distributions. */
struct vub_zfwd {
    const uint8_t *p;
    size_t len;
    size_t bit_pos;
};

/* The next n (1..16) bits, zeros past the end. */
static uint32_t vub_zfwd_peek(const struct vub_zfwd *r, unsigned n)
{
    size_t at = r->bit_pos >> 3;
    uint32_t v = 0;
    for (unsigned i = 0; i < 4 && at + i < r->len; i++)
        v |= (uint32_t)r->p[at + i] << (8 * i);
    return (v >> (r->bit_pos & 7)) & ((UINT32_C(1) << n) - 1);
}

static int vub_zfwd_skip(struct vub_zfwd *r, unsigned n)
{
    r->bit_pos += n;
    return r->bit_pos > r->len * 8 ? VUB_ZSTD_E_FSE_DESC : 0;
}

/* Reads a distribution from p[0..len): the Accuracy_Log, then one
 * probability per symbol until they add up to 1 << log. Returns the bytes
 * used (the description ends on a byte boundary), or an error.
 *
 * Format notes: each value is sent in just enough bits for the largest
 * value still possible (remaining points + 1), and the smallest values in
 * one bit less: with T bits and `low` = 2^T - 1 - max_value, a (T-1)-bit
 * read below `low` is the value; otherwise T bits are read and those at or
 * above 2^(T-1) lose `low`. Probability = value - 1, so -1 ("less than 1")
 * costs one point. A 0 is followed by 2-bit repeat counts of more zeros, a
 * count of 3 meaning another count follows. The encoding cannot overshoot
 * the total; it can name symbols past the alphabet, which is corrupt.
 * [ZSTD-FSE-DESC] [ZSTD-FSE-LOG] */
static int vub_zstd_fse_read(const uint8_t *p, size_t len, unsigned max_log, unsigned symbol_max, int16_t *prob, unsigned *symbol_count, unsigned *log_out,
                             size_t *used)
{
    struct vub_zfwd r = {p, len, 0};
    int err;
    if (len == 0)
        return VUB_ZSTD_E_FSE_DESC;
    unsigned log = vub_zfwd_peek(&r, 4) + 5;
    if ((err = vub_zfwd_skip(&r, 4)) != 0)
        return err;
    if (log > max_log)
        return VUB_ZSTD_E_FSE_LOG;
    int32_t remaining = (INT32_C(1) << log) + 1; /* points left, plus one */
    uint32_t threshold = UINT32_C(1) << log;
    unsigned bits = log + 1;
    unsigned s = 0;
    while (remaining > 1) {
        if (s >= symbol_max)
            return VUB_ZSTD_E_FSE_SYMBOLS;
        uint32_t low = 2 * threshold - 1 - (uint32_t)remaining;
        uint32_t v = vub_zfwd_peek(&r, bits);
        int32_t value;
        if ((v & (threshold - 1)) < low) {
            value = (int32_t)(v & (threshold - 1));
            err = vub_zfwd_skip(&r, bits - 1);
        } else {
            value = (int32_t)(v >= threshold ? v - low : v);
            err = vub_zfwd_skip(&r, bits);
        }
        if (err)
            return err;
        int32_t pr = value - 1;
        prob[s++] = (int16_t)pr;
        remaining -= pr < 0 ? 1 : pr;
        if (pr == 0) {
            unsigned repeat;
            do {
                repeat = vub_zfwd_peek(&r, 2);
                if ((err = vub_zfwd_skip(&r, 2)) != 0)
                    return err;
                for (unsigned i = 0; i < repeat; i++) {
                    if (s >= symbol_max)
                        return VUB_ZSTD_E_FSE_SYMBOLS;
                    prob[s++] = 0;
                }
            } while (repeat == 3);
        }
        while ((uint32_t)remaining < threshold) {
            bits--;
            threshold >>= 1;
        }
    }
    *symbol_count = s;
    *log_out = log;
    *used = (r.bit_pos + 7) / 8;
    return 0;
}

/* ---- Huffman codes ("Huffman Tree Description", "Huffman-Coded Streams") ---- */

/* Reads weights sent as FSE: a distribution (Accuracy_Log at most 6), then
 * one backward bitstream in which two states take turns.
 *
 * Format notes: State1 decodes the even-numbered weights and is read
 * first, then State2. The end is found by overflow: when a state update
 * needs more bits than remain (the missing ones read as 0), the other
 * state's symbol is the last weight. More than 255 weights is corrupt.
 * [ZSTD-HUF-FSE] */
static int vub_zstd_huf_fse_weights(const uint8_t *p, size_t len, uint8_t *weights, unsigned *count)
{
    int16_t prob[VUB_ZSTD_FSE_SYMBOLS_MAX];
    struct vub_zstd_fse cells[1u << VUB_ZSTD_HUF_WEIGHT_LOG_MAX];
    unsigned symbols, log;
    size_t used;
    int err = vub_zstd_fse_read(p, len, VUB_ZSTD_HUF_WEIGHT_LOG_MAX, VUB_ZSTD_FSE_SYMBOLS_MAX,
                                prob, &symbols, &log, &used);
    if (err)
        return err;
    vub_zstd_fse_build(cells, prob, symbols, log, VUB_ZSTD_WEIGHT);
    struct vub_zbits b;
    if ((err = vub_zbits_init(&b, p + used, len - used)) != 0)
        return err;
    uint32_t state[2];
    state[0] = vub_zbits_read(&b, log);
    state[1] = vub_zbits_read(&b, log);
    unsigned n = 0;
    for (unsigned turn = 0;; turn ^= 1) {
        const struct vub_zstd_fse *c = &cells[state[turn]];
        if (n == VUB_ZSTD_HUF_WEIGHTS_MAX)
            return VUB_ZSTD_E_HUF_WEIGHT;
        weights[n++] = (uint8_t)c->base;
        state[turn] = c->next_base + vub_zbits_read(&b, c->state_bits);
        if (b.overread) {
            if (n == VUB_ZSTD_HUF_WEIGHTS_MAX)
                return VUB_ZSTD_E_HUF_WEIGHT;
            weights[n++] = (uint8_t)cells[state[turn ^ 1]].base;
            break;
        }
    }
    *count = n;
    return 0;
}

/* Reads a Huffman_Tree_Description from p[0..len) into h; *used gets its
 * size.
 *
 * Format notes: a header byte of 128 or more means header - 127 weights of
 * 4 bits, two per byte, the first in the high nibble; below 128 it is the
 * byte size of an FSE-compressed list. The last literal's weight is not
 * sent: it is what brings the sum of 2^(weight-1) up to the next power of
 * two, which must take exactly one weight. That power is 2^Max_Number_of_
 * Bits, at most 2^11; Number_of_Bits = Max_Number_of_Bits + 1 - weight. At
 * least one literal must have weight 1 (the longest code). [ZSTD-HUF-TREE]
 * [ZSTD-HUF-WEIGHTS] */
static int vub_zstd_huf_tree(struct vub_zstd_huf *h, const uint8_t *p, size_t len, size_t *used)
{
    uint8_t weights[256];
    unsigned n;
    if (len == 0)
        return VUB_ZSTD_E_HUF_TREE;
    unsigned header = p[0];
    if (header >= 128) {
        n = header - 127;
        size_t bytes = (n + 1) / 2;
        if (bytes > len - 1)
            return VUB_ZSTD_E_HUF_TREE;
        for (unsigned i = 0; i < n; i++)
            weights[i] = (uint8_t)(i % 2 == 0 ? p[1 + i / 2] >> 4 : p[1 + i / 2] & 15);
        *used = 1 + bytes;
    } else {
        if (header > len - 1)
            return VUB_ZSTD_E_HUF_TREE;
        int err = vub_zstd_huf_fse_weights(p + 1, header, weights, &n);
        if (err)
            return err;
        *used = 1 + (size_t)header;
    }

    uint32_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        if (weights[i] > VUB_ZSTD_HUF_MAX_BITS)
            return VUB_ZSTD_E_HUF_WEIGHT;
        if (weights[i])
            total += UINT32_C(1) << (weights[i] - 1);
    }
    if (total == 0)
        return VUB_ZSTD_E_HUF_POWER;
    unsigned max_bits = vub_zstd_highbit(total) + 1;
    if (max_bits > VUB_ZSTD_HUF_MAX_BITS)
        return VUB_ZSTD_E_HUF_MAX_BITS;
    uint32_t rest = (UINT32_C(1) << max_bits) - total;
    if ((rest & (rest - 1)) != 0)
        return VUB_ZSTD_E_HUF_POWER;
    weights[n++] = (uint8_t)(vub_zstd_highbit(rest) + 1);

    memset(h->count, 0, sizeof h->count);
    for (unsigned s = 0; s < n; s++)
        h->count[weights[s]]++;
    if (h->count[1] == 0)
        return VUB_ZSTD_E_HUF_WEIGHT1;

    /* Codes go out lowest weight (longest code) first, in symbol order; in
     * the 2^max_bits table, a symbol of weight w covers 2^(w-1) cells. */
    uint32_t cell = 0;
    uint16_t index = 0;
    for (unsigned wt = 1; wt <= max_bits; wt++) {
        h->first[wt] = index;
        h->code_start[wt] = (uint16_t)(cell >> (wt - 1));
        index = (uint16_t)(index + h->count[wt]);
        cell += (uint32_t)h->count[wt] << (wt - 1);
    }
    uint16_t fill[VUB_ZSTD_HUF_MAX_BITS + 2];
    memcpy(fill, h->first, sizeof fill);
    for (unsigned s = 0; s < n; s++)
        if (weights[s])
            h->by_weight[fill[weights[s]]++] = (uint8_t)s;
    cell = 0;
    for (unsigned i = 0; i < index; i++) {
        unsigned s = h->by_weight[i];
        unsigned wt = weights[s];
        struct vub_zstd_huf_cell c = {(uint8_t)s, (uint8_t)(max_bits + 1 - wt)};
        for (uint32_t k = 0; k < (UINT32_C(1) << (wt - 1)); k++)
            h->cell[cell++] = c;
    }
    h->max_bits = max_bits;
    return 0;
}

/* Reference decoder: one symbol, one bit at a time. A code of
 * Number_of_Bits n belongs to weight max_bits + 1 - n, whose codes are the
 * count[w] numbers from code_start[w], in by_weight order.
 *
 * Format notes: the code's first bit is the first one read from the
 * backward stream, its most significant. The code is complete, so a symbol
 * is always found by max_bits bits. [ZSTD-HUF-CODE] */
static unsigned vub_zstd_huf_decode_ref(const struct vub_zstd_huf *h, struct vub_zbits *b)
{
    uint32_t code = 0;
    for (unsigned len = 1; len <= h->max_bits; len++) {
        code = code << 1 | vub_zbits_read(b, 1);
        unsigned wt = h->max_bits + 1 - len;
        if (h->count[wt] && code - h->code_start[wt] < h->count[wt])
            return h->by_weight[h->first[wt] + (code - h->code_start[wt])];
    }
    return 0; /* unreachable: the code is complete */
}

/* Decodes exactly n literals from one Huffman-coded stream p[0..len).
 *
 * The fast path takes as many symbols as 56 buffered bits surely hold
 * (5 of at most 11 bits) per refill while 8 bytes remain, then one at a
 * time with the bounds-checked peek.
 *
 * Format notes: "If a bitstream is not entirely and exactly consumed ...
 * the decoding process is considered faulty": bits left over and bits read
 * past the start are both errors. [ZSTD-HUF-STREAM] */
static int vub_zstd_huf_stream(const struct vub_zstd *z, const uint8_t *p, size_t len, uint8_t *out, size_t n)
{
    const struct vub_zstd_huf *h = &z->w->huf;
    struct vub_zbits b;
    int err = vub_zbits_init(&b, p, len);
    if (err)
        return err;
    size_t i = 0;
    unsigned max_bits = h->max_bits;
    if (z->fast) {
        unsigned per_refill = 56 / max_bits;
        while (n - i >= per_refill && b.byte_pos >= 8) {
            vub_zbits_refill(&b);
            for (unsigned k = 0; k < per_refill; k++) {
                struct vub_zstd_huf_cell c =
                    h->cell[(b.buf >> (b.count - max_bits)) & ((1u << max_bits) - 1)];
                out[i++] = c.symbol;
                b.count -= c.bits;
            }
        }
        for (; i < n; i++) {
            struct vub_zstd_huf_cell c = h->cell[vub_zbits_peek(&b, max_bits)];
            out[i] = c.symbol;
            vub_zbits_skip(&b, c.bits);
        }
    } else {
        for (; i < n; i++)
            out[i] = (uint8_t)vub_zstd_huf_decode_ref(h, &b);
    }
    return vub_zbits_done(&b) ? 0 : VUB_ZSTD_E_HUF_STREAM;
}

/* ---- Literals ("Literals Section") ---- */

/* Decodes Huffman literals: the tree (unless treeless), then 1 or 4
 * streams, into the work area's literals buffer.
 *
 * Format notes: Compressed_Size counts the tree description too. With 4
 * streams a 6-byte jump table gives the first three streams' sizes; the
 * fourth is what is left and must be at least 1 byte. Each stream decodes
 * (Regenerated_Size + 3) / 4 literals, the last one the rest, so at least
 * 6 literals are needed (with 5, the last stream's share is negative).
 * Treeless literals reuse the last Huffman table of this frame.
 * [ZSTD-LIT-HUF] [ZSTD-LIT-4STREAMS] [ZSTD-LIT-TREELESS] */
static int vub_zstd_lit_huffman(struct vub_zstd *z, const uint8_t *p, size_t len, size_t regen,
                                int treeless, int four)
{
    struct vub_zstd_work *w = z->w;
    int err;
    if (four && regen < 6)
        return VUB_ZSTD_E_LIT_STREAMS;
    if (treeless) {
        if (w->huf.max_bits == 0)
            return VUB_ZSTD_E_NO_HUFFMAN;
    } else {
        size_t used;
        w->huf.max_bits = 0;
        if ((err = vub_zstd_huf_tree(&w->huf, p, len, &used)) != 0)
            return err;
        p += used;
        len -= used;
    }
    z->lit = w->lit;
    z->lit_len = regen;
    if (!four)
        return vub_zstd_huf_stream(z, p, len, w->lit, regen);
    if (len < 6)
        return VUB_ZSTD_E_LIT_STREAMS;
    size_t sizes[4] = {vub_le16(p), vub_le16(p + 2), vub_le16(p + 4), 0};
    size_t used = 6 + sizes[0] + sizes[1] + sizes[2];
    if (used >= len)
        return VUB_ZSTD_E_LIT_STREAMS;
    sizes[3] = len - used;
    size_t share = (regen + 3) / 4;
    p += 6;
    for (unsigned k = 0; k < 4; k++) {
        size_t count = k < 3 ? share : regen - 3 * share;
        if ((err = vub_zstd_huf_stream(z, p, sizes[k], w->lit + k * share, count)) != 0)
            return err;
        p += sizes[k];
    }
    return 0;
}

/* Reads the Literals_Section_Header and the literals of one block from
 * p[0..len); *used gets the section's size.
 *
 * Format notes: the header is a little-endian bit field: 2 bits of type,
 * then Size_Format (1 bit for raw and RLE when its low bit is 0, else 2),
 * then Regenerated_Size (5, 12 or 20 bits) and, for Huffman literals,
 * Compressed_Size of the same width (10, 10, 14 or 18 bits, 1 stream only
 * for format 0). Literals can never exceed the block's maximum size, and
 * since every literal is output in this block, more literals than the
 * output has room for is already too big. Raw literals are used in place.
 * [ZSTD-LIT-HEADER] [ZSTD-LIT-RAW] [ZSTD-LIT-RLE] */
static int vub_zstd_literals(struct vub_zstd *z, const uint8_t *p, size_t len, size_t *used)
{
    if (len == 0)
        return VUB_ZSTD_E_LIT_SIZE;
    unsigned type = p[0] & 3, format = (p[0] >> 2) & 3;
    size_t header, regen, csize = 0;
    if (type < 2) {
        static const uint8_t header_bytes[4] = {1, 2, 1, 3};
        header = header_bytes[format];
        if (header > len)
            return VUB_ZSTD_E_LIT_SIZE;
        if (header == 1)
            regen = p[0] >> 3;
        else if (header == 2)
            regen = (size_t)(p[0] >> 4) + ((size_t)p[1] << 4);
        else
            regen = (size_t)(p[0] >> 4) + ((size_t)p[1] << 4) + ((size_t)p[2] << 12);
    } else {
        header = format < 2 ? 3 : format + 2;
        if (header > len)
            return VUB_ZSTD_E_LIT_SIZE;
        uint64_t v = 0;
        for (size_t i = 0; i < header; i++)
            v |= (uint64_t)p[i] << (8 * i);
        unsigned width = format < 2 ? 10 : format == 2 ? 14 : 18;
        regen = (size_t)((v >> 4) & ((UINT64_C(1) << width) - 1));
        csize = (size_t)((v >> (4 + width)) & ((UINT64_C(1) << width) - 1));
    }
    if (regen > z->block_max)
        return VUB_ZSTD_E_BLOCK_SIZE;
    if (regen > z->dst_len - z->dst_pos)
        return VUB_ZSTD_E_TOO_BIG;
    p += header;
    len -= header;
    switch (type) {
    case 0:
        if (regen > len)
            return VUB_ZSTD_E_LIT_SIZE;
        z->lit = p;
        z->lit_len = regen;
        *used = header + regen;
        return 0;
    case 1:
        if (len < 1)
            return VUB_ZSTD_E_LIT_SIZE;
        memset(z->w->lit, p[0], regen);
        z->lit = z->w->lit;
        z->lit_len = regen;
        *used = header + 1;
        return 0;
    default:
        if (csize > len)
            return VUB_ZSTD_E_LIT_SIZE;
        *used = header + csize;
        return vub_zstd_lit_huffman(z, p, csize, regen, type == 3, format != 0);
    }
}

/* ---- Sequences ("Sequences Section") ---- */

/* Sets up one of the three sequence tables for its Compression_Mode,
 * reading its description (if any) from *p, at most up to end.
 *
 * Format notes: Predefined_Mode uses the "Default Distributions" (logs 6,
 * 6 and 5); RLE_Mode is one byte, a code used for every sequence (a table
 * of one cell that reads no bits); FSE_Compressed_Mode sends a
 * distribution, with Accuracy_Log at most 9 for lengths and 8 for offsets;
 * Repeat_Mode reuses the table of the last block that had sequences, which
 * must exist in this frame, and includes an RLE or predefined one.
 * [ZSTD-SEQ-MODES] [ZSTD-SEQ-PREDEFINED] [ZSTD-SEQ-RLE] [ZSTD-SEQ-FSE]
 * [ZSTD-SEQ-REPEAT] [ZSTD-FSE-LOG] */
static int vub_zstd_seq_table(struct vub_zstd_table *t, enum vub_zstd_kind kind, unsigned mode,
                              const uint8_t **p, const uint8_t *end)
{
    static const unsigned max_log[3] = {VUB_ZSTD_LL_LOG_MAX, VUB_ZSTD_ML_LOG_MAX, VUB_ZSTD_OF_LOG_MAX};
    static const unsigned codes[3] = {VUB_ZSTD_LL_CODES, VUB_ZSTD_ML_CODES, VUB_ZSTD_OF_CODES};
    if (mode == 1 || mode == 2)
        t->predefined = 0;
    switch (mode) {
    case 0:
        if (t->predefined)
            break; /* still built from an earlier block: tables are never changed in place */
        t->predefined = 1;
        if (kind == VUB_ZSTD_LL)
            vub_zstd_fse_build(t->cells, vub_zstd_ll_default, VUB_ZSTD_LL_CODES, 6, kind);
        else if (kind == VUB_ZSTD_ML)
            vub_zstd_fse_build(t->cells, vub_zstd_ml_default, VUB_ZSTD_ML_CODES, 6, kind);
        else
            vub_zstd_fse_build(t->cells, vub_zstd_of_default, 29, 5, kind);
        t->log = kind == VUB_ZSTD_OF ? 5 : 6;
        break;
    case 1:
        if (*p == end)
            return VUB_ZSTD_E_SEQ_HEADER;
        if (**p >= codes[kind])
            return VUB_ZSTD_E_SEQ_RLE_SYMBOL;
        vub_zstd_code_value(kind, **p, &t->cells[0]);
        t->cells[0].state_bits = 0;
        t->cells[0].next_base = 0;
        t->log = 0;
        (*p)++;
        break;
    case 2: {
        int16_t prob[VUB_ZSTD_FSE_SYMBOLS_MAX];
        unsigned symbols, log;
        size_t used;
        int err = vub_zstd_fse_read(*p, (size_t)(end - *p), max_log[kind], codes[kind], prob, &symbols,
                                    &log, &used);
        if (err)
            return err;
        vub_zstd_fse_build(t->cells, prob, symbols, log, kind);
        t->log = log;
        *p += used;
        break;
    }
    default:
        if (!t->valid)
            return VUB_ZSTD_E_SEQ_REPEAT;
        break;
    }
    t->valid = 1;
    return 0;
}

/* Reads the Sequences_Section_Header and the tables; *count gets
 * Number_of_Sequences and *p is left at the bitstream.
 *
 * Format notes: the count takes 1 byte below 128, 2 bytes ((byte0 - 128)
 * << 8 + byte1) below 255, and 3 bytes (byte1 + byte2 << 8 + 0x7F00) at
 * 255. A count of 0 ends the section: no modes byte follows, tables are
 * left as they were, and nothing else may follow. The modes byte holds
 * literals length, offset and match length modes from the top, in that
 * order, and 2 reserved bits that must be 0; the tables follow in the
 * same order. [ZSTD-SEQ-HEADER] [ZSTD-SEQ-COUNT] */
static int vub_zstd_seq_header(struct vub_zstd *z, const uint8_t **p, const uint8_t *end, size_t *count)
{
    const uint8_t *q = *p;
    if (q == end)
        return VUB_ZSTD_E_SEQ_HEADER;
    size_t n = q[0];
    if (n < 128) {
        q += 1;
    } else if (n < 255) {
        if (end - q < 2)
            return VUB_ZSTD_E_SEQ_HEADER;
        n = ((n - 128) << 8) + q[1];
        q += 2;
    } else {
        if (end - q < 3)
            return VUB_ZSTD_E_SEQ_HEADER;
        n = (size_t)q[1] + ((size_t)q[2] << 8) + 0x7F00;
        q += 3;
    }
    *count = n;
    if (n == 0) {
        *p = q;
        return q == end ? 0 : VUB_ZSTD_E_SEQ_EXTRA;
    }
    if (q == end)
        return VUB_ZSTD_E_SEQ_HEADER;
    unsigned modes = *q++;
    if (modes & 3)
        return VUB_ZSTD_E_SEQ_RESERVED;
    int err;
    if ((err = vub_zstd_seq_table(&z->ll, VUB_ZSTD_LL, modes >> 6, &q, end)) != 0 ||
        (err = vub_zstd_seq_table(&z->of, VUB_ZSTD_OF, (modes >> 4) & 3, &q, end)) != 0 ||
        (err = vub_zstd_seq_table(&z->ml, VUB_ZSTD_ML, (modes >> 2) & 3, &q, end)) != 0)
        return err;
    *p = q;
    return 0;
}

/* ---- Sequence execution ("Sequence Execution", "Repeat Offsets") ---- */

/* Turns an Offset_Value into an offset and updates the repeat offsets.
 * Returns the offset, or 0 when a repeat offset works out to 0.
 *
 * Format notes: values above 3 are offset + 3. Values 1..3 name
 * Repeated_Offset1..3, except when literals_length is 0: then they are
 * shifted by one, and 3 means Repeated_Offset1 - 1. A new offset (and that
 * "- 1" one) pushes the others back; a repeated one moves to the front,
 * the ones before it moving back one; Repeated_Offset1 itself changes
 * nothing. [ZSTD-REPEAT-OFFSETS] */
static uint32_t vub_zstd_offset(uint32_t *rep, uint32_t value, size_t literals_length)
{
    uint32_t offset;
    if (value > 3) {
        offset = value - 3;
    } else {
        unsigned index = value - 1 + (literals_length == 0);
        if (index == 0)
            return rep[0];
        offset = index == 3 ? rep[0] - 1 : rep[index];
        if (index == 1) {
            rep[1] = rep[0];
            rep[0] = offset;
            return offset;
        }
    }
    rep[2] = rep[1];
    rep[1] = rep[0];
    rep[0] = offset;
    return offset;
}

/* Copies length bytes from offset back in the output. The caller has
 * checked that it fits and that offset is in range.
 *
 * Format notes: an offset shorter than the length copies bytes the same
 * match has just written. The reference goes byte by byte; the fast path
 * copies from as far back as a whole number of repeats allows, so each
 * memcpy has source and destination apart, doubling its reach each time.
 * [ZSTD-OVERLAP] */
static void vub_zstd_match(const struct vub_zstd *z, uint8_t *to, size_t offset, size_t length)
{
    if (!z->fast) {
        const uint8_t *from = to - offset;
        for (size_t i = 0; i < length; i++)
            to[i] = from[i];
    } else if (offset >= length) {
        memcpy(to, to - offset, length);
    } else if (offset == 1) {
        memset(to, to[-1], length);
    } else {
        size_t reach = offset;
        while (length > 0) {
            size_t n = length < reach ? length : reach;
            memcpy(to, to - reach, n);
            to += n;
            length -= n;
            reach *= 2;
        }
    }
}

/* The fast path's match copy when the offset is at least 16 but shorter
 * than the match, and 16 bytes of room follow it: 16-byte copies, each of bytes already final
 * (the offset keeps every source chunk before its destination), the last
 * one running up to 15 bytes past the match into output not yet written.
 *
 * Format notes: none beyond vub_zstd_match()'s; the bytes past the match
 * are overwritten by what follows it, or left as scratch past dst_done. */
static void vub_zstd_match16(uint8_t *to, size_t offset, size_t length)
{
    const uint8_t *from = to - offset;
    for (size_t i = 0; i < length; i += 16)
        memcpy(to + i, from + i, 16);
}

/* Decodes count sequences from the bitstream p[0..len) and executes each:
 * literals_length literals, then the match; then the literals left over.
 *
 * Format notes: the initial states are read literals length, offset, match
 * length; each sequence then reads its offset, match length and literals
 * length extra bits, in that order, and, except after the last, updates
 * the literals length, match length and offset states, in that order. The
 * stream must then be used up exactly. An offset may reach only into this
 * frame's output and no further than Window_Size; a block's output may not
 * pass Block_Maximum_Size. [ZSTD-SEQ-DECODE] [ZSTD-SEQ-EXEC]
 * [ZSTD-OFFSET-FAR] [ZSTD-OFFSET-WINDOW] [ZSTD-BLOCK-MAX] */
static int vub_zstd_sequences(struct vub_zstd *z, const uint8_t *p, size_t len, size_t count)
{
    struct vub_zbits b;
    int err = vub_zbits_init(&b, p, len);
    if (err)
        return err;
    const struct vub_zstd_fse *ll_cells = z->ll.cells, *of_cells = z->of.cells, *ml_cells = z->ml.cells;
    uint32_t ll_state = vub_zbits_read(&b, z->ll.log);
    uint32_t of_state = vub_zbits_read(&b, z->of.log);
    uint32_t ml_state = vub_zbits_read(&b, z->ml.log);
    const uint8_t *lit = z->lit, *lit_end = z->lit + z->lit_len;
    size_t block_end = z->dst_pos + z->block_max; /* no overflow: block_max <= 128 KiB */
    size_t limit = block_end < z->dst_len ? block_end : z->dst_len;
    uint8_t *out = z->dst + z->dst_pos;
    const uint8_t *dst_end = z->dst + z->dst_len;

    for (size_t i = 0; i < count; i++) {
        const struct vub_zstd_fse *llc = &ll_cells[ll_state], *ofc = &of_cells[of_state],
                                  *mlc = &ml_cells[ml_state];
        unsigned need = 0u + ofc->extra_bits + mlc->extra_bits + llc->extra_bits + llc->state_bits +
                        mlc->state_bits + ofc->state_bits;
        /* The fast path: one refill, then reads that cannot run short. */
        bool unchecked = z->fast && (vub_zbits_refill(&b), need <= b.count);
        uint32_t of_value = ofc->base + vub_zbits_get(&b, ofc->extra_bits, unchecked);
        size_t ml = mlc->base + vub_zbits_get(&b, mlc->extra_bits, unchecked);
        size_t ll = llc->base + vub_zbits_get(&b, llc->extra_bits, unchecked);
        if (i + 1 < count) {
            ll_state = llc->next_base + vub_zbits_get(&b, llc->state_bits, unchecked);
            ml_state = mlc->next_base + vub_zbits_get(&b, mlc->state_bits, unchecked);
            of_state = ofc->next_base + vub_zbits_get(&b, ofc->state_bits, unchecked);
        }
        size_t offset = vub_zstd_offset(z->rep, of_value, ll);

        size_t pos = (size_t)(out - z->dst);
        if (ll > (size_t)(lit_end - lit)) {
            z->dst_pos = pos;
            return VUB_ZSTD_E_LIT_OVERRUN;
        }
        if (ll + ml > limit - pos) {
            z->dst_pos = pos;
            return ll + ml > block_end - pos ? VUB_ZSTD_E_BLOCK_SIZE : VUB_ZSTD_E_TOO_BIG;
        }
        if (z->fast && ll <= 16 && lit_end - lit >= 16 && dst_end - out >= 16)
            memcpy(out, lit, 16); /* whole 16 bytes: a fixed-size copy; the excess is scratch */
        else
            memcpy(out, lit, ll);
        out += ll;
        lit += ll;
        size_t produced = (size_t)(out - z->dst) - z->frame_start;
        if (offset == 0 || offset > produced || offset > z->window_bytes) {
            z->dst_pos = (size_t)(out - z->dst);
            return offset == 0 ? VUB_ZSTD_E_OFFSET_ZERO
                   : offset > produced ? VUB_ZSTD_E_OFFSET_FAR : VUB_ZSTD_E_OFFSET_WINDOW;
        }
        if (z->fast && offset >= 16 && ml <= 32 && dst_end - out >= 32) {
            memcpy(out, out - offset, 16); /* short matches: two fixed-size copies */
            memcpy(out + 16, out + 16 - offset, 16);
        } else if (z->fast && offset >= 16 && offset < ml && (size_t)(dst_end - out) >= ml + 16) {
            vub_zstd_match16(out, offset, ml);
        } else {
            vub_zstd_match(z, out, offset, ml);
        }
        out += ml;
    }
    z->dst_pos = (size_t)(out - z->dst);
    if (!vub_zbits_done(&b))
        return VUB_ZSTD_E_SEQ_STREAM;
    size_t rest = (size_t)(lit_end - lit);
    if (rest > limit - z->dst_pos)
        return rest > block_end - z->dst_pos ? VUB_ZSTD_E_BLOCK_SIZE : VUB_ZSTD_E_TOO_BIG;
    if (rest > 0)
        memcpy(z->dst + z->dst_pos, lit, rest);
    z->dst_pos += rest;
    return 0;
}

/* ---- Blocks ("Blocks", "Compressed Blocks") ---- */

/* Decodes one Compressed_Block, p[0..len): literals, sequences, execution.
 *
 * Format notes: the sequences section is whatever follows the literals
 * section in the block. With no sequences, the literals are the block. */
static int vub_zstd_compressed(struct vub_zstd *z, const uint8_t *p, size_t len)
{
    size_t lit_used, count;
    int err = vub_zstd_literals(z, p, len, &lit_used);
    if (err)
        return err;
    const uint8_t *q = p + lit_used, *end = p + len;
    if ((err = vub_zstd_seq_header(z, &q, end, &count)) != 0)
        return err;
    if (count == 0) {
        memcpy(z->dst + z->dst_pos, z->lit, z->lit_len); /* fits: checked with the literals */
        z->dst_pos += z->lit_len;
        return 0;
    }
    return vub_zstd_sequences(z, q, (size_t)(end - q), count);
}

/* Decodes the blocks of one frame, up to and including the last.
 *
 * Format notes: the 3-byte little-endian Block_Header holds Last_Block
 * (bit 0), Block_Type (bits 1-2) and Block_Size (bits 3-23). For raw and
 * compressed blocks Block_Size counts content bytes, for RLE blocks the
 * bytes to produce from one content byte; all of them are limited by
 * Block_Maximum_Size, and so is a compressed block's output. Type 3 is
 * reserved. [ZSTD-BLOCKS] [ZSTD-BLOCK-TYPE] [ZSTD-BLOCK-MAX] */
static int vub_zstd_blocks(struct vub_zstd *z)
{
    int last;
    do {
        if (z->src_len - z->src_pos < 3)
            return VUB_ZSTD_E_INPUT;
        const uint8_t *h = z->src + z->src_pos;
        uint32_t header = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16;
        z->src_pos += 3;
        last = header & 1;
        unsigned type = (header >> 1) & 3;
        size_t size = header >> 3;
        if (type == 3)
            return VUB_ZSTD_E_BLOCK_TYPE;
        if (size > z->block_max)
            return VUB_ZSTD_E_BLOCK_SIZE;
        size_t content = type == 1 ? 1 : size;
        if (content > z->src_len - z->src_pos)
            return VUB_ZSTD_E_INPUT;
        const uint8_t *p = z->src + z->src_pos;
        int err = 0;
        if (type == 2) {
            err = vub_zstd_compressed(z, p, size);
        } else if (size > z->dst_len - z->dst_pos) {
            err = VUB_ZSTD_E_TOO_BIG;
        } else {
            if (type == 0)
                memcpy(z->dst + z->dst_pos, p, size);
            else
                memset(z->dst + z->dst_pos, p[0], size);
            z->dst_pos += size;
        }
        if (err)
            return err;
        z->src_pos += content;
    } while (!last);
    return 0;
}

/* ---- Frames ("Frame Header", "Frames", "Skippable Frames") ---- */

/* Reads a Zstandard frame's header (after the magic number) and sets up
 * the frame's state; *content_size gets Frame_Content_Size, or UINT64_MAX
 * when the frame does not say.
 *
 * Format notes: Frame_Header_Descriptor: FCS flag (bits 7-6),
 * Single_Segment (5), unused (4, ignored), reserved (3, must be 0),
 * checksum flag (2), Dictionary_ID flag (1-0). With Single_Segment there is
 * no Window_Descriptor, Frame_Content_Size is always present (1 byte when
 * its flag is 0) and is the window. A 2-byte content size has 256 added.
 * Window_Size = 2^(10 + Exponent) * (1 + Mantissa / 8). A nonzero
 * Dictionary_ID needs a dictionary, which qcow2 has no way to name; 0 means
 * none. vub needs no window buffer (the output is the window), but a
 * decoder "is allowed to reject" windows beyond its range, and QEMU's
 * libzstd refuses those above 2^27 bytes, so vub does too; the content
 * size must fit the output.
 * [ZSTD-FRAME-HEADER] [ZSTD-WINDOW] [ZSTD-SINGLE-SEGMENT] [ZSTD-DICT-ID]
 * [ZSTD-FCS] */
static int vub_zstd_frame_header(struct vub_zstd *z, uint64_t *content_size, int *has_checksum)
{
    static const uint8_t did_bytes[4] = {0, 1, 2, 4};
    static const uint8_t fcs_bytes[4] = {0, 2, 4, 8};
    if (z->src_pos == z->src_len)
        return VUB_ZSTD_E_INPUT;
    unsigned fhd = z->src[z->src_pos];
    unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1, did_flag = fhd & 3;
    size_t fcs_len = fcs_flag == 0 && single ? 1 : fcs_bytes[fcs_flag];
    size_t header = 1 + (single ? 0 : 1) + did_bytes[did_flag] + fcs_len;
    if (header > z->src_len - z->src_pos)
        return VUB_ZSTD_E_INPUT;
    const uint8_t *p = z->src + z->src_pos + 1;
    if (fhd & 8)
        return VUB_ZSTD_E_RESERVED_BIT;
    uint64_t window = 0;
    if (!single) {
        unsigned window_log = 10 + (p[0] >> 3);
        window = (UINT64_C(1) << window_log) + (UINT64_C(1) << (window_log - 3)) * (p[0] & 7);
        p++;
    }
    uint32_t dict_id = 0;
    for (unsigned i = 0; i < did_bytes[did_flag]; i++)
        dict_id |= (uint32_t)p[i] << (8 * i);
    if (dict_id != 0)
        return VUB_ZSTD_E_DICTIONARY;
    p += did_bytes[did_flag];
    uint64_t fcs = UINT64_MAX;
    if (fcs_len > 0) {
        fcs = 0;
        for (size_t i = 0; i < fcs_len; i++)
            fcs |= (uint64_t)p[i] << (8 * i);
        if (fcs_len == 2)
            fcs += 256;
        if (fcs > z->dst_len - z->dst_pos)
            return VUB_ZSTD_E_TOO_BIG;
    }
    if (single)
        window = fcs;
    if (window > VUB_ZSTD_WINDOW_MAX)
        return VUB_ZSTD_E_WINDOW;
    z->src_pos += header;
    z->window_bytes = window;
    z->block_max = window < VUB_ZSTD_BLOCK_MAX ? (size_t)window : VUB_ZSTD_BLOCK_MAX;
    *content_size = fcs;
    *has_checksum = (fhd >> 2) & 1;
    return 0;
}

/* Decodes one Zstandard frame (its magic number already read).
 *
 * Format notes: everything a frame carries over between blocks starts
 * afresh: repeat offsets 1, 4, 8 and no Huffman or sequence tables. After
 * the last block, the output must equal Frame_Content_Size if given, and
 * Content_Checksum, if flagged, is the low 32 bits of XXH64 of this
 * frame's output, little-endian. [ZSTD-FRAME] [ZSTD-FCS] [ZSTD-CHECKSUM] */
static int vub_zstd_frame(struct vub_zstd *z)
{
    uint64_t content_size;
    int has_checksum;
    int err = vub_zstd_frame_header(z, &content_size, &has_checksum);
    if (err)
        return err;
    z->frame_start = z->dst_pos;
    z->rep[0] = 1;
    z->rep[1] = 4;
    z->rep[2] = 8;
    z->w->huf.max_bits = 0;
    z->ll.valid = z->of.valid = z->ml.valid = 0;
    if ((err = vub_zstd_blocks(z)) != 0)
        return err;
    size_t produced = z->dst_pos - z->frame_start;
    if (content_size != UINT64_MAX && produced != content_size)
        return VUB_ZSTD_E_CONTENT_SIZE;
    if (has_checksum) {
        if (z->src_len - z->src_pos < 4)
            return VUB_ZSTD_E_INPUT;
        uint32_t want = vub_le32(z->src + z->src_pos);
        z->src_pos += 4;
        if ((uint32_t)vub_xxh64(z->dst + z->frame_start, produced, 0) != want)
            return VUB_ZSTD_E_CHECKSUM;
    }
    return 0;
}

/* Literals buffer a caller must provide for an output of dst_len bytes:
 * one block's literals, never more than the output or a block holds. */
static size_t vub_zstd_lit_bytes(size_t dst_len)
{
    return dst_len < VUB_ZSTD_BLOCK_MAX ? dst_len : VUB_ZSTD_BLOCK_MAX;
}

/* A work area for outputs of up to dst_len bytes, in one allocation: the
 * tables, then one block's literals. free() releases it; NULL if out of
 * memory. (The decoder itself never allocates; its caller does, once.) */
static struct vub_zstd_work *vub_zstd_work_new(size_t dst_len)
{
    size_t lit_bytes = vub_zstd_lit_bytes(dst_len);
    struct vub_zstd_work *w = malloc(sizeof *w + lit_bytes);
    if (w) {
        w->lit = (uint8_t *)(w + 1);
        w->lit_bytes = lit_bytes;
    }
    return w;
}

/* vub_zstd_decompress() with the choice of decoder; tests run both.
 *
 * Format notes: frames follow one another; skippable frames (magic
 * 0x184D2A50..5F, then a 4-byte little-endian size) are passed over. QEMU
 * stops once the output is full, so whatever follows the frame that
 * filled it is never read (it is the rest of the last sector). Any other
 * magic, legacy zstd formats included, is refused. [ZSTD-FRAMES]
 * [ZSTD-SKIPPABLE] [ZSTD-TRAILING] [ZSTD-CUT] */
static int vub_zstd_run(uint8_t *dst, size_t dst_len, size_t *dst_done, const uint8_t *src, size_t src_len,
                        size_t *src_done, struct vub_zstd_work *w, int fast)
{
    struct vub_zstd z;
    memset(&z, 0, sizeof z);
    z.src = src;
    z.src_len = src_len;
    z.dst = dst;
    z.dst_len = dst_len;
    z.fast = fast;
    z.w = w;
    z.ll.cells = w->ll;
    z.of.cells = w->of;
    z.ml.cells = w->ml;
    int result = VUB_ZSTD_OK;
    if (w->lit_bytes < vub_zstd_lit_bytes(dst_len))
        result = VUB_ZSTD_E_WORK;
    while (result == VUB_ZSTD_OK && z.dst_pos < dst_len && z.src_pos < src_len) {
        if (src_len - z.src_pos < 4) {
            result = VUB_ZSTD_E_INPUT;
            break;
        }
        uint32_t magic = vub_le32(src + z.src_pos);
        z.src_pos += 4;
        if (magic == VUB_ZSTD_MAGIC) {
            result = vub_zstd_frame(&z);
        } else if ((magic & 0xFFFFFFF0u) == VUB_ZSTD_SKIP_MAGIC) {
            if (src_len - z.src_pos < 4) {
                result = VUB_ZSTD_E_INPUT;
                break;
            }
            uint32_t size = vub_le32(src + z.src_pos);
            z.src_pos += 4;
            if (size > src_len - z.src_pos)
                result = VUB_ZSTD_E_INPUT;
            else
                z.src_pos += size;
        } else {
            result = VUB_ZSTD_E_MAGIC;
        }
    }
    if (dst_done)
        *dst_done = z.dst_pos;
    if (src_done)
        *src_done = z.src_pos;
    return result;
}

/* Decodes the zstd frames in src[0..src_len) into dst[0..dst_len), frame
 * after frame, until dst is full at the end of a frame or the input ends
 * between frames.
 *
 * Returns VUB_ZSTD_OK or a negative vub_zstd_result naming the malformed
 * input. Output that would go past dst_len is an error (E_TOO_BIG), not a
 * truncation, as in QEMU. In every case *dst_done gets the bytes produced
 * and *src_done the bytes of src used; either pointer may be NULL. The
 * bytes of dst after *dst_done are scratch: the fast path copies in whole
 * 16-byte pieces where there is room, so it may have written there. w is
 * the caller's work area, with w->lit pointing to at least
 * vub_zstd_lit_bytes(dst_len) bytes; its contents need no setting up and
 * are scratch after the call. Never reads src or writes dst outside the
 * given lengths, never allocates: reentrant, given one w per thread.
 *
 * qcow2 use: a compressed cluster is good when the result is OK and
 * *dst_done equals the cluster size. [ZSTD-QEMU] */
static int vub_zstd_decompress(uint8_t *dst, size_t dst_len, size_t *dst_done, const uint8_t *src,
                               size_t src_len, size_t *src_done, struct vub_zstd_work *w)
{
    return vub_zstd_run(dst, dst_len, dst_done, src, src_len, src_done, w, 1);
}

/* ======================================================================== *
 * 12. Back-end: the vhost-user-blk device  (vhost-user.rst "Front-end
 *    message types", "Ring states"; VIRTIO "Block Device")
 *
 * The device is a state machine driven by two inputs: messages on the
 * socket and kicks on the queues' eventfds. The caller owns the loop; each
 * message is handled to completion before the next is read, which is the
 * ordering the protocol relies on ([VU-ORDER]: QEMU uses a GET_FEATURES
 * reply as a barrier when REPLY_ACK is off). Requests run on one of two
 * engines: synchronously inside the queue pass, or on an io_uring per
 * queue, completing later. Either way no request is in flight while a
 * message is handled ([VU-QUIESCE]): in-flight ones are completed first.
 * ======================================================================== */

#define VUB_SOCKET_TIMEOUT_MS 2000 /* a message must arrive whole within this */
#define VUB_IOV_SLACK 64           /* extra iovecs for buffers that straddle regions */
#define VUB_QUEUE_BUDGET_RINGS 4   /* requests per run, in ring sizes, before yielding */

/* ---- the io_uring engine ----
 * [BLK-AIO] With VUB_AIO_IO_URING each queue has its own io_uring and a
 * slot per request it may keep in flight, allocated when the ring's size
 * is set (never per request): the slot holds the popped chain, its iovecs
 * and the decoded request. A pass of the queue (vub_dev_run_queue) hands
 * its submissions to the kernel in one io_uring_enter() and publishes its
 * used entries at once, notifying at most once. Requests complete in the
 * order the kernel finishes them: the used ring says which head each entry
 * returns ("Used Buffer Notification": the device may use buffers in any
 * order unless IN_ORDER, which vub does not offer). Completions wake the
 * caller's poll() through the ring's fd, which vub_dev_pollfds() lists
 * while requests are in flight.
 *
 * What is submitted: reads and writes of raw images (RWF_DSYNC when the
 * write cache is off, [BLK-DURABLE]) and flushes (fdatasync as
 * IORING_OP_FSYNC). [BLK-FLUSH-ASYNC] A flush covers the writes completed
 * before it ("Device Operation"), each of which had its CQE taken before
 * the flush was submitted: a plain fdatasync does, and nothing is drained.
 * Everything else runs synchronously inside the pass: GET_ID, discard and
 * write-zeroes (fallocate), malformed requests, and [BLK-AIO-QCOW2] every
 * qcow2 read (see SPEC-NOTES.md). */

#define VUB_AIO_MAX_SLOTS 1024u /* requests in flight per queue, at most */
#define VUB_SLOT_IOVS (VUB_BLK_SEG_MAX + 2 + VUB_IOV_SLACK) /* a request's iovecs */

/* One request in flight. */
struct vub_dev_slot {
    struct vub_chain chain;   /* as popped; chain.iov is this slot's own array */
    struct vub_blk_req req;   /* decoded and checked */
    struct iovec bounce_iov;  /* the bounce buffer, as the SQE names it */
    int next_free;            /* free list; -1 ends it */
};

/* One queue's engine state. */
struct vub_dev_aio {
    struct vub_uring ring;       /* fd -1 for the synchronous engine */
    struct vub_dev_slot *slots;  /* slot_count of them */
    struct iovec *iov;           /* VUB_SLOT_IOVS per slot, in the slots' block */
    unsigned slot_count;
    int free_head;               /* first free slot; -1: all busy */
    unsigned in_flight;          /* submitted, completion not yet taken */
};

/* Host state of one virtqueue in a session; a device reset clears all of
 * it except the ring's scratch memory and the call and error fds. */
struct vub_dev_queue {
    struct vub_vring ring;
    uint64_t desc_addr;  /* SET_VRING_ADDR, in the front-end's address space */
    uint64_t avail_addr;
    uint64_t used_addr;
    bool addr_set;
    bool addr_before_num; /* SET_VRING_ADDR came while the size was unknown */
    bool started;        /* kick fd received, not stopped by GET_VRING_BASE */
    bool enabled;        /* SET_VRING_ENABLE(1), or no PROTOCOL_FEATURES */
    bool polled;         /* the kick came with NOFD: nobody will kick us */
    bool used_synced;    /* used_idx re-read from guest memory since start */
    bool kick_pipe;      /* the kick fd is a pipe's read end: we cannot kick ourselves */
    bool backlog;        /* yielded with requests left and no way to kick ourselves */
    int kick_fd;         /* driver -> device notifications; -1 if none */
    int call_fd;         /* device -> driver notifications; -1 if none */
    int err_fd;          /* device -> front-end error signal; -1 if none */
    bool spinning;       /* busy-polled: kicks stay suppressed ([VU-POLL-KICKS]) */
    bool needs_reset;    /* broke a ring rule; vub_dev_collect() tells the device status */
    struct vub_error err; /* the queue's last failure ([VU-THREADS]) ... */
    char why[256];        /* ... formatted */
    struct vub_dev_stats stats; /* this queue's counters; vub_dev_stats() adds them up */
    struct vub_blk_queue bq;     /* what its requests use: the counters above, bounce buffers */
    struct vub_dev_aio aio;      /* the io_uring engine; ring.fd -1 for the synchronous one */
};

/* A feature word, virtio or protocol: what GET_* offers and SET_* takes. */
struct vub_dev_word {
    uint64_t offered;           /* the GET_* answer */
    uint64_t acked;             /* the SET_* word, 0 until then */
    bool set;                   /* SET_* seen */
};

struct vub_dev {
    struct vub_dev_config cfg;
    int sock;                   /* the session's socket; -1 when detached */
    struct vub_dev_word features; /* virtio device features */
    struct vub_dev_word protocol; /* vhost-user protocol features */
    uint8_t status;             /* SET_STATUS: the VIRTIO device status byte */
    int backend_fd;             /* SET_BACKEND_REQ_FD: our requests to the front-end; -1 if none */
    bool backend_ack_pending;   /* a request with NEED_REPLY was sent there, no answer yet */
    struct vub_mem mem;
    struct {                    /* SET_INFLIGHT_FD: the inflight area, mapped */
        void *map_base;         /* what munmap() needs; NULL when none */
        size_t map_len;
    } inflight;
    struct vub_dev_queue queues[VUB_MAX_QUEUES];
    struct vub_blk blk;
    struct vub_dev_stats stats;
    struct vub_msg msg;         /* the message being handled */
    struct vub_msg reply;
    struct vub_error err;       /* the last failure: which rule, and its numbers */
    char why[256];              /* ... formatted, for vub_dev_why() */
};

/* ---- the message table ---- */

/* What a request must look like before its handler runs. */
struct vub_dev_rule {
    enum vub_err (*handle)(struct vub_dev *dev, struct vub_msg *m);
    uint16_t min_size, max_size; /* payload bytes accepted ([VU-MSG-SIZE]) */
    uint8_t min_fds, max_fds;    /* descriptors accepted ([VU-FDS]) */
    int8_t gate;                 /* protocol feature that must be negotiated, or -1 */
    bool has_reply;              /* always answered with a payload of its own */
};

#define VUB_GATE_NONE (-1)

/* Fills the reply header; handlers with a payload reply call this. */
static void *vub_dev_reply(struct vub_dev *dev, uint32_t size)
{
    dev->reply.hdr.size = size;
    return &dev->reply.payload;
}

static enum vub_err vub_dev_reply_u64(struct vub_dev *dev, uint64_t v)
{
    memcpy(vub_dev_reply(dev, sizeof v), &v, sizeof v);
    return VUB_OK;
}

/* [VU-QUEUE-INDEX] every index from the wire is checked before use; with
 * stopped, m is a message that may only change a stopped ring. */
static struct vub_dev_queue *vub_dev_queue(struct vub_dev *dev, const struct vub_msg *m, uint32_t index,
                                           bool stopped)
{
    if (index >= dev->cfg.num_queues)
        vub_fail(&dev->err, VUB_R_VU_QUEUE_INDEX, index, dev->cfg.num_queues);
    else if (stopped && dev->queues[index].started)
        vub_fail(&dev->err, VUB_R_VU_RING_STOPPED, m->hdr.request, index);
    else
        return &dev->queues[index];
    return NULL;
}

/* Maps the ring areas from the front-end's addresses; VUB_R_NONE, or why
 * not. [VQ-SPLIT-ALIGN] the areas are aligned 16/2/4 and each lies whole in
 * one region; [VU-NO-SHARED-MEM] an area outside every region usually means
 * guest RAM the front-end did not share: it has no fd to send for it, so
 * QEMU leaves it out of the table (which is empty if all RAM is private). */
static enum vub_reason vub_dev_map_ring(struct vub_dev *dev, struct vub_dev_queue *q)
{
    struct vub_vring *vr = &q->ring;
    bool packed = vr->packed_ring;
    vr->desc = vr->driver = vr->device = NULL;
    if (!q->addr_set || vr->size == 0)
        return VUB_R_VQ_RING_STATE;
    if (packed && (q->avail_addr % 4 || q->used_addr % 4))
        return VUB_R_VQ_PACKED_ALIGN; /* event areas are 4-byte aligned */
    uint8_t *desc = vub_mem_range(&dev->mem, VUB_UVA, q->desc_addr, vub_split_desc_bytes(vr->size));
    uint8_t *driver = vub_mem_range(&dev->mem, VUB_UVA, q->avail_addr,
                                    packed ? vub_packed_event_bytes() : vub_split_avail_bytes(vr->size));
    uint8_t *device = vub_mem_range(&dev->mem, VUB_UVA, q->used_addr,
                                    packed ? vub_packed_event_bytes() : vub_split_used_bytes(vr->size));
    if (!desc || !driver || !device)
        return dev->mem.count ? VUB_R_VU_PART_SHARED_MEM : VUB_R_VU_NO_SHARED_MEM;
    /* [VQ-HOST-ALIGN] our pointer takes its low bits from the region's
     * mmap_offset, not from the front-end's address: a region whose two
     * disagree would give misaligned 16-bit ring atomics. */
    if ((uintptr_t)desc % 16 || (uintptr_t)driver % (packed ? 4 : 2) || (uintptr_t)device % 4)
        return VUB_R_VQ_HOST_ALIGN;
    vr->desc = desc;
    vr->driver = driver;
    vr->device = device;
    return VUB_R_NONE;
}

/* [MEM-REMAP] after any change to the memory table, every ring is
 * translated again; a ring whose memory went away is not processed. */
static void vub_dev_remap_rings(struct vub_dev *dev)
{
    for (unsigned i = 0; i < dev->cfg.num_queues; i++)
        vub_dev_map_ring(dev, &dev->queues[i]);
}

static void vub_dev_inflight_unmap(struct vub_dev *dev)
{
    vub_sys_unmap(dev->inflight.map_base, dev->inflight.map_len);
    dev->inflight.map_base = NULL;
    dev->inflight.map_len = 0;
    for (unsigned i = 0; i < VUB_MAX_QUEUES; i++)
        dev->queues[i].ring.inflight = (struct vub_vring_inflight){0};
}

/* [VU-RESET] RESET_DEVICE returns the *device* to its initial state: every
 * ring stopped, disabled and unconfigured (size, base, addresses, kick fd),
 * virtio features and `writeback` forgotten. [VU-RESET-KEEP] What describes
 * the connection is kept: the protocol features, the memory table, the call
 * and error fds, and each ring's scratch memory. QEMU 10 sends neither the
 * table nor SET_VRING_ERR again after its reset, and the spec's note on
 * RESET_OWNER agrees: discarding connection state "would lead to bugs". */
static void vub_dev_reset_device(struct vub_dev *dev)
{
    vub_dev_inflight_unmap(dev); /* [INFL-SET] the front-end sends it again before a start */
    for (unsigned i = 0; i < VUB_MAX_QUEUES; i++) {
        struct vub_dev_queue *q = &dev->queues[i];
        vub_sys_close(&q->kick_fd);
        *q = (struct vub_dev_queue){.ring = {.scratch = q->ring.scratch}, .kick_fd = -1, .call_fd = q->call_fd,
                                    .err_fd = q->err_fd, .stats = q->stats, .bq = q->bq, .aio = q->aio};
        if (q->ring.scratch.ids_pending)
            memset(q->ring.scratch.ids_pending, 0, VUB_PACKED_IDS / 8);
    }
    dev->features = (struct vub_dev_word){.offered = dev->features.offered};
    dev->status = 0;
    dev->blk.writeback = 0;
    dev->blk.wce_negotiated = dev->blk.flush_negotiated = false;
}

/* A new or ended connection: the device reset, and the connection's
 * memory, eventfds and protocol features dropped too. */
static void vub_dev_reset_session(struct vub_dev *dev)
{
    vub_dev_reset_device(dev);
    dev->protocol = (struct vub_dev_word){.offered = dev->protocol.offered};
    for (unsigned i = 0; i < VUB_MAX_QUEUES; i++) {
        vub_sys_close(&dev->queues[i].call_fd);
        vub_sys_close(&dev->queues[i].err_fd);
    }
    vub_sys_close(&dev->backend_fd);
    dev->backend_ack_pending = false;
    vub_mem_clear(&dev->mem);
}

/* ---- queue processing ---- */

/* [VU-EVENT-FD] A notification fd that hung up or fails is closed and
 * forgotten, with the reason kept for the caller's one log line
 * (stats.dropped_fds counts them): polling it again would report it ready
 * forever. The session goes on; the front-end may send a new fd. */
static void vub_dev_drop_fd(struct vub_dev *dev, int *fd, unsigned index, bool call)
{
    struct vub_dev_queue *q = &dev->queues[index];
    vub_sys_close(fd);
    vub_fail(&q->err, call ? VUB_R_VU_CALL_DROPPED : VUB_R_VU_KICK_DROPPED, index, 0);
    vub_error_format(&q->err, NULL, q->why, sizeof q->why);
    q->stats.dropped_fds++;
}

/* A ring the driver broke is stopped for good (until reset) and the
 * front-end is told through the error fd; the session then ends. */
static enum vub_err vub_dev_queue_broken(struct vub_dev *dev, unsigned index)
{
    struct vub_dev_queue *q = &dev->queues[index];
    char prefix[32];
    snprintf(prefix, sizeof prefix, "queue %u", index);
    vub_error_format(&q->err, prefix, q->why, sizeof q->why);
    q->started = false;
    q->needs_reset = true;
    if (q->err_fd >= 0)
        vub_sys_signal(q->err_fd); /* the session ends: nothing to drop it for */
    return VUB_E_PROTO;
}

/* [VU-THREADS] A queue keeps its own failures (so queues on different
 * threads never write the device); this brings the last one into the
 * device's why and status. Called where one thread has the whole device:
 * the single-thread entry points, message handlers, vub_dev_quiesce(). */
static void vub_dev_collect(struct vub_dev *dev, unsigned index)
{
    struct vub_dev_queue *q = &dev->queues[index];
    if (q->needs_reset)
        dev->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    q->needs_reset = false;
    if (q->err.reason == VUB_R_NONE)
        return;
    dev->err = q->err;
    memcpy(dev->why, q->why, sizeof dev->why);
    q->err.reason = VUB_R_NONE;
}


/* [VQ-RING-STATE] what the ring messages set must agree before the ring
 * runs, whatever order they came in: a size valid for the layout, and for
 * packed rings both positions inside the ring (a base may have been set
 * before a smaller SET_VRING_NUM). */
static bool vub_dev_ring_consistent(struct vub_error *err, const struct vub_vring *vr)
{
    bool bad = vr->packed_ring ? vr->packed.next_avail >= vr->size || vr->packed.next_used >= vr->size
                               : (vr->size & (vr->size - 1)) != 0;
    if (bad)
        vub_fail(err, VUB_R_VQ_RING_STATE, vr->size, vr->packed_ring ? vub_packed_base(vr) : 0);
    return !bad;
}

/* Every slot free, in order. */
static void vub_dev_aio_free_all(struct vub_dev_aio *a)
{
    a->free_head = -1;
    a->in_flight = 0;
    for (unsigned i = a->slot_count; i-- > 0;) {
        a->slots[i] = (struct vub_dev_slot){.next_free = a->free_head};
        a->free_head = (int)i;
    }
}

/* Sizes the queue's engine for a ring of num entries: slots (and their
 * iovecs) and the io_uring, made again only when they must grow. Called
 * with nothing in flight (the ring is stopped). */
static enum vub_err vub_dev_aio_size(struct vub_dev *dev, struct vub_dev_queue *q, uint32_t num)
{
    struct vub_dev_aio *a = &q->aio;
    unsigned want = VUB_MIN(num, VUB_AIO_MAX_SLOTS);
    bool grow = want > a->slot_count;
    if (dev->cfg.aio != VUB_AIO_IO_URING)
        return VUB_OK;
    if (grow) {
        size_t bytes = want * (sizeof *a->slots + VUB_SLOT_IOVS * sizeof *a->iov);
        struct vub_dev_slot *slots = realloc(a->slots, bytes);
        if (!slots)
            return vub_fail(&dev->err, VUB_R_SYS_NOMEM, bytes, 0);
        a->slots = slots;
        a->iov = (struct iovec *)(void *)(slots + want);
        a->slot_count = want;
    }
    vub_dev_aio_free_all(a);
    if (a->ring.fd < 0 || grow) {
        vub_uring_exit(&a->ring);
        int rc = vub_uring_init(&a->ring, a->slot_count);
        if (rc != 0)
            return vub_fail(&dev->err, VUB_R_BLK_AIO_SETUP, a->slot_count, (uint64_t)rc);
    }
    return VUB_OK;
}

/* Pops the next request into a free slot (NULL for the synchronous
 * engine: into *local). The ring layer walks a chain into
 * vr->scratch.chain, which points at the slot's own iovecs, since a
 * chain's iovecs must live as long as its request. It is set before every
 * pop and never restored after one: a SIGBUS may jump out of the pop, and
 * the ring's own block (scratch.iov) must stay what is freed. */
static enum vub_err vub_dev_pop(struct vub_dev *dev, struct vub_dev_queue *q, struct vub_dev_slot *s,
                                struct vub_chain *local)
{
    struct vub_vring_scratch *sc = &q->ring.scratch;
    sc->chain = s ? q->aio.iov + (size_t)(s - q->aio.slots) * VUB_SLOT_IOVS : sc->iov;
    sc->chain_cap = s ? VUB_SLOT_IOVS : sc->iov_cap;
    return vub_vring_pop(&q->ring, &dev->mem, s ? &s->chain : local, &q->err);
}

/* Fills an SQE for the slot's transfer. False if it is not the engine's
 * to submit (then it runs synchronously): a qcow2 image, a flush of a
 * read-only one, a buffer that needs bouncing when no pool buffer is free
 * or it is larger than one, a full submission queue. */
static bool vub_dev_aio_submit(struct vub_dev *dev, struct vub_dev_queue *q, struct vub_dev_slot *s)
{
    struct vub_blk_req *r = &s->req;
    struct vub_image *img = dev->blk.image;
    struct vub_blk_queue *bq = &q->bq;
    const struct iovec *iov = r->iov;
    unsigned count = r->count;
    bool flush = vub_blk_req_syncs(r);
    if (img->format != VUB_FORMAT_RAW || (flush && img->read_only))
        return false;
    bool bounce = !flush && !vub_image_direct_ok(img, r->iov, r->count);
    if (bounce && (r->bytes > VUB_BOUNCE_BYTES || (bq->bounce_free & ~1u) == 0))
        return false;
    if (!vub_uring_sq_room(&q->aio.ring))
        return false;
    /* The copy from guest memory comes before anything is taken: it may
     * fault (SIGBUS on a shrunk memory file), and the program's handler
     * then jumps out of here, which must leave no filled SQE nor pool
     * buffer behind (a zeroed SQE would complete as slot 0). */
    if (bounce) {
        int i = __builtin_ctz(bq->bounce_free & ~1u);
        s->bounce_iov = (struct iovec){vub_blk_bounce_buf(bq, i), (size_t)r->bytes};
        if (r->type == VIRTIO_BLK_T_OUT)
            vub_iov_copy(&(struct vub_iov_cursor){r->iov, r->count, 0, 0}, s->bounce_iov.iov_base, NULL,
                         r->bytes);
        r->bounce = i;
        bq->bounce_free &= ~(1u << i);
        bq->stats->bounced++;
        iov = &s->bounce_iov;
        count = 1;
    }
    struct io_uring_sqe *sqe = vub_uring_sqe(&q->aio.ring);
    sqe->fd = img->fd;
    sqe->user_data = (uint64_t)(s - q->aio.slots);
    if (flush) {
        sqe->opcode = IORING_OP_FSYNC;
        sqe->fsync_flags = IORING_FSYNC_DATASYNC;
        return true;
    }
    sqe->opcode = r->type == VIRTIO_BLK_T_IN ? IORING_OP_READV : IORING_OP_WRITEV;
    sqe->addr = (uint64_t)(uintptr_t)iov;
    sqe->len = count;
    sqe->off = r->offset;
    sqe->rw_flags = r->write_through ? RWF_DSYNC : 0;
    return true;
}

/* What a completion means for its request. A short transfer (the kernel
 * may stop early, as preadv may) is done again whole, synchronously:
 * reading or writing the same bytes twice is harmless, and it is rare. */
static enum vub_err vub_dev_aio_result(struct vub_dev *dev, struct vub_dev_queue *q, struct vub_dev_slot *s,
                                       int32_t res)
{
    struct vub_blk_req *r = &s->req;
    if (res < 0)
        return VUB_E_IO;
    if (!vub_blk_req_syncs(r) && (uint64_t)res < r->bytes)
        return vub_blk_io_sync(&dev->blk, &q->bq, r);
    if (r->bounce >= 0 && r->type == VIRTIO_BLK_T_IN)
        vub_iov_copy(&(struct vub_iov_cursor){r->iov, r->count, 0, 0}, NULL, s->bounce_iov.iov_base,
                     r->bytes);
    return VUB_OK;
}

/* Takes every completion waiting on the queue's ring; each request is
 * finished and pushed (or, with discard, dropped: the session is over).
 * Returns how many were pushed. */
static unsigned vub_dev_aio_reap(struct vub_dev *dev, struct vub_dev_queue *q, bool discard)
{
    struct vub_dev_aio *a = &q->aio;
    unsigned pushed = 0;
    uint64_t data;
    int32_t res;
    if (a->in_flight > 0)
        vub_uring_run_tasks(&a->ring);
    while (a->in_flight > 0 && vub_uring_reap(&a->ring, &data, &res)) {
        if (data >= a->slot_count)
            continue; /* not ours: only slot numbers are ever submitted */
        struct vub_dev_slot *s = &a->slots[data];
        /* Counted out first: finishing touches guest memory, which may
         * fault, and a handler's jump out of here must not leave a request
         * counted in flight that the kernel has already given back (the
         * drain at detach would wait for it for ever). The slot is not
         * reused before the next pop. */
        s->next_free = a->free_head;
        a->free_head = (int)data;
        a->in_flight--;
        if (discard) {
            if (s->req.bounce >= 0) /* guest memory is not touched: it may be gone */
                q->bq.bounce_free |= 1u << s->req.bounce;
        } else {
            enum vub_err err = vub_dev_aio_result(dev, q, s, res);
            vub_vring_push(&q->ring, &s->chain, vub_blk_finish(&q->bq, &s->req, err));
            pushed++;
        }
    }
    return pushed;
}

/* Hands the pass's submissions to the kernel. [BLK-AIO] a ring that
 * refuses for good (not a passing EAGAIN/EBUSY shortage, retried at the
 * next pass) stops the queue. */
static bool vub_dev_aio_enter(struct vub_dev *dev, struct vub_dev_queue *q, bool wait)
{
    int rc = q->aio.ring.fd >= 0 ? vub_uring_enter(&q->aio.ring, wait) : 0;
    if (rc == 0 || rc == EAGAIN || rc == EBUSY)
        return true;
    vub_fail(&q->err, VUB_R_BLK_AIO, (uint64_t)(q - dev->queues), (uint64_t)rc);
    return false;
}

/* Publishes the pushed entries, if any, and notifies if the driver asks. */
static void vub_dev_publish(struct vub_dev *dev, struct vub_dev_queue *q, unsigned *batch)
{
    if (*batch == 0)
        return;
    vub_vring_publish(&q->ring);
    if (vub_vring_need_notify(&q->ring) && q->call_fd >= 0) {
        if (!vub_sys_signal(q->call_fd))
            vub_dev_drop_fd(dev, &q->call_fd, (unsigned)(q - dev->queues), true);
        q->stats.notifications++;
    }
    q->stats.completion_passes += q->aio.ring.fd >= 0;
    *batch = 0;
}

/* [VU-QUIESCE] Waits until the queue has no request in flight. Each is
 * completed and pushed, as if it had finished synchronously, or with
 * discard dropped unseen (the session is over and guest memory may be
 * gone). A ring that cannot be waited on is torn down: closing it lets
 * the kernel finish or cancel what it holds on its own. */
static enum vub_err vub_dev_drain(struct vub_dev *dev, unsigned index, bool discard)
{
    struct vub_dev_queue *q = &dev->queues[index];
    unsigned batch = 0;
    while (q->aio.in_flight > 0) {
        if (!vub_dev_aio_enter(dev, q, true)) {
            vub_uring_exit(&q->aio.ring);
            vub_dev_aio_free_all(&q->aio);
            if (q->bq.bounce)
                q->bq.bounce_free = (1u << VUB_BOUNCE_COUNT) - 1;
            return discard ? VUB_OK : vub_dev_queue_broken(dev, index);
        }
        batch += vub_dev_aio_reap(dev, q, discard);
    }
    vub_dev_publish(dev, q, &batch);
    return VUB_OK;
}

/* Starts one request: the io_uring engine submits its transfer and keeps
 * the slot; anything else completes here and is pushed. True if pushed. */
static bool vub_dev_start(struct vub_dev *dev, struct vub_dev_queue *q, struct vub_dev_slot *s,
                          struct vub_chain *c)
{
    if (!s) {
        vub_vring_push(&q->ring, c, vub_blk_execute(&dev->blk, &q->bq, c));
        return true;
    }
    struct vub_blk_req *r = &s->req;
    struct vub_image *img = dev->blk.image;
    vub_blk_prepare(&dev->blk, &q->bq, c, r);
    /* [BLK-AIO-CACHED] a transfer that cannot wait for a device is only a
     * copy, done at once for less than the ring's round trip: any of a file
     * in memory (tmpfs), and a read RWF_NOWAIT finds all in the page cache. */
    bool now = r->io && img->in_memory;
    enum vub_err err = now ? vub_blk_io_sync(&dev->blk, &q->bq, r) : VUB_OK;
    if (!now) /* a file in memory was read just above: not a second time */
        now = r->io && r->type == VIRTIO_BLK_T_IN && img->format == VUB_FORMAT_RAW && !img->direct &&
              vub_sys_read_cached(img->fd, r->iov, r->count, r->offset, r->bytes);
    if (now) {
        q->stats.inline_transfers++;
        vub_vring_push(&q->ring, c, vub_blk_finish(&q->bq, r, err));
        return true;
    }
    if (r->io && vub_dev_aio_submit(dev, q, s)) {
        q->aio.free_head = s->next_free;
        q->aio.in_flight++;
        return false;
    }
    vub_vring_push(&q->ring, c, vub_blk_finish(&q->bq, r, r->io ? vub_blk_io_sync(&dev->blk, &q->bq, r) : r->err));
    return true;
}

/* Serves the queue: takes the completions waiting, then every available
 * request, publishing used entries in batches and notifying once per
 * batch. [VU-RING-STOPPED] a stopped ring is not touched. [VQ-BUDGET]
 * after a few rings' worth it yields, kicking itself so the caller's loop
 * comes back: a busy guest cannot starve the control socket. With every
 * io_uring slot busy it stops taking requests (and leaves kicks as they
 * are): the completions bring it back. */
static enum vub_err vub_dev_run_queue(struct vub_dev *dev, unsigned index)
{
    struct vub_dev_queue *q = &dev->queues[index];
    struct vub_vring *vr = &q->ring;
    q->backlog = false;
    if (!q->started || !q->enabled || !vr->desc)
        return VUB_OK;
    if (!vub_dev_ring_consistent(&q->err, vr))
        return vub_dev_queue_broken(dev, index);
    if (!q->used_synced) {
        if (vub_vring_start(vr, &q->err) != VUB_OK)
            return vub_dev_queue_broken(dev, index);
        q->stats.resubmitted += vr->inflight.resubmit_count;
    }
    q->used_synced = true;
    unsigned budget = VUB_QUEUE_BUDGET_RINGS * (unsigned)vr->size, batch = vub_dev_aio_reap(dev, q, false);
    enum vub_err err = VUB_OK;
    for (;;) {
        struct vub_chain local;
        bool aio = q->aio.ring.fd >= 0; /* then the request goes in a free slot */
        if (aio && q->aio.free_head < 0)
            break;
        struct vub_dev_slot *s = aio ? &q->aio.slots[q->aio.free_head] : NULL;
        err = budget == 0 ? VUB_E_AGAIN : vub_dev_pop(dev, q, s, &local);
        if (err == VUB_E_AGAIN) {
            err = VUB_OK;
            if (!vub_dev_aio_enter(dev, q, false))
                break;
            vub_dev_publish(dev, q, &batch);
            if (budget == 0) {
                /* An eventfd kick is ours to write; a pipe's read end is
                 * not, so that queue is left for vub_dev_dispatch(). */
                q->backlog = q->kick_pipe || q->kick_fd < 0;
                if (q->kick_fd >= 0 && !q->kick_pipe)
                    vub_sys_signal(q->kick_fd);
                break;
            }
            if (q->spinning) { /* [VU-POLL-KICKS] the spinner comes back, not a kick */
                vub_vring_disable_kicks(vr);
                break;
            }
            if (!vub_vring_enable_kicks(vr))
                break;
            continue;
        }
        if (err != VUB_OK)
            break;
        q->stats.queue_requests[index]++;
        budget--;
        batch += vub_dev_start(dev, q, s, s ? &s->chain : &local);
        if (batch >= vr->size) /* publish at least once per ring's worth */
            vub_dev_publish(dev, q, &batch);
    }
    bool entered = vub_dev_aio_enter(dev, q, false);
    vub_dev_publish(dev, q, &batch); /* what was completed stays completed */
    return err != VUB_OK || !entered ? vub_dev_queue_broken(dev, index) : VUB_OK;
}

/* A queue run from a message handler, its failure the handler's. */
static enum vub_err vub_dev_run_collect(struct vub_dev *dev, unsigned index)
{
    enum vub_err err = vub_dev_run_queue(dev, index);
    vub_dev_collect(dev, index);
    return err;
}

/* ---- message handlers, in request-number order ---- */

/* The requests answered with one number: GET_FEATURES;
 * [VU-PROTOCOL-EARLY] GET_PROTOCOL_FEATURES, at any time, before
 * SET_FEATURES too; [VU-MQ] GET_QUEUE_NUM, every queue up to which works,
 * alone or together; GET_MAX_MEM_SLOTS; GET_STATUS. */
static enum vub_err vub_h_get_u64(struct vub_dev *dev, struct vub_msg *m)
{
    uint32_t r = m->hdr.request;
    return vub_dev_reply_u64(dev, r == VHOST_USER_GET_FEATURES            ? dev->features.offered
                                  : r == VHOST_USER_GET_PROTOCOL_FEATURES ? dev->protocol.offered
                                  : r == VHOST_USER_GET_QUEUE_NUM         ? dev->cfg.num_queues
                                  : r == VHOST_USER_GET_MAX_MEM_SLOTS     ? VUB_MAX_MEM_REGIONS
                                                                          : dev->status);
}

/* What the virtio feature word sets up. [VU-SET-FEATURES] VERSION_1 is
 * required (vub has no legacy interface); the word never disables rings -
 * it is re-sent while running (e.g. to toggle logging). [VU-RING-ENABLED]
 * Without PROTOCOL_FEATURES every ring is enabled at once ("Ring states"). */
static enum vub_err vub_dev_use_features(struct vub_dev *dev, uint64_t f)
{
    bool packed = vub_has(f, VIRTIO_F_RING_PACKED);
    if (!vub_has(f, VIRTIO_F_VERSION_1))
        return vub_fail(&dev->err, VUB_R_VU_VERSION_1, f, 0);
    for (unsigned i = 0; i < dev->cfg.num_queues; i++)
        if (dev->queues[i].ring.packed_ring != packed && dev->queues[i].started)
            return vub_fail(&dev->err, VUB_R_VQ_LAYOUT_CHANGE, i, 0);
    dev->blk.wce_negotiated = vub_has(f, VIRTIO_BLK_F_CONFIG_WCE);
    dev->blk.flush_negotiated = vub_has(f, VIRTIO_BLK_F_FLUSH);
    for (unsigned i = 0; i < dev->cfg.num_queues; i++) {
        struct vub_dev_queue *q = &dev->queues[i];
        q->ring.event_idx = vub_has(f, VIRTIO_F_EVENT_IDX);
        q->ring.indirect = vub_has(f, VIRTIO_F_INDIRECT_DESC);
        if (q->ring.packed_ring != packed) {
            /* [VQ-LAYOUT-CHANGE] size, base and areas were checked for the
             * other layout: forget them; the front-end sends them again
             * (QEMU does, after the firmware's split ring). */
            vub_vring_set_layout(&q->ring, packed);
            q->ring.size = 0;
            q->addr_set = false;
            q->ring.desc = q->ring.driver = q->ring.device = NULL;
        }
        if (!vub_has(f, VHOST_USER_F_PROTOCOL_FEATURES))
            q->enabled = true;
    }
    return VUB_OK;
}

/* SET_FEATURES and SET_PROTOCOL_FEATURES: a word of offered bits only
 * ([VU-SET-FEATURES], [VU-PROTOCOL-OFFER]), kept once accepted. */
static enum vub_err vub_h_set_features(struct vub_dev *dev, struct vub_msg *m)
{
    bool virtio = m->hdr.request == VHOST_USER_SET_FEATURES;
    struct vub_dev_word *w = virtio ? &dev->features : &dev->protocol;
    uint64_t f = m->payload.u64;
    if (f & ~w->offered)
        return vub_fail(&dev->err, virtio ? VUB_R_VU_SET_FEATURES : VUB_R_VU_PROTOCOL_FEATURES,
                        f & ~w->offered, 0);
    enum vub_err err = virtio ? vub_dev_use_features(dev, f) : VUB_OK;
    if (err != VUB_OK)
        return err;
    w->acked = f;
    w->set = true;
    return VUB_OK;
}

/* SET_OWNER, RESET_OWNER and RESET_DEVICE. The connection is the owner, so
 * SET_OWNER records nothing. RESET_OWNER, deprecated ("ignore this message,
 * or use it to disable all rings"), resets the device as RESET_DEVICE does,
 * keeping the connection's state. */
static enum vub_err vub_h_owner(struct vub_dev *dev, struct vub_msg *m)
{
    if (m->hdr.request != VHOST_USER_SET_OWNER)
        vub_dev_reset_device(dev);
    return VUB_OK;
}

/* [VU-MEM-TABLE] n regions with exactly n fds replace the whole table. The
 * new table is built beside the old one, so a bad region leaves the old
 * table in place. */
static enum vub_err vub_h_set_mem_table(struct vub_dev *dev, struct vub_msg *m)
{
    const struct vub_vu_mem_table *t = &m->payload.mem;
    struct vub_mem fresh = {.count = 0};
    if (t->nregions == 0 || t->nregions > VUB_VU_MAX_FDS ||
        m->hdr.size != 8 + t->nregions * sizeof(struct vub_vu_mem_region))
        return vub_fail(&dev->err, VUB_R_VU_MEM_TABLE, t->nregions, m->hdr.size);
    if (m->fd_count != t->nregions)
        return vub_fail(&dev->err, VUB_R_VU_MEM_TABLE, t->nregions, m->fd_count);
    for (unsigned i = 0; i < t->nregions; i++) {
        enum vub_err err = vub_mem_add(&fresh, &t->regions[i], m->fds[i], &dev->err);
        if (err != VUB_OK) {
            vub_mem_clear(&fresh);
            return err;
        }
    }
    vub_mem_clear(&dev->mem);
    dev->mem = fresh;
    vub_dev_remap_rings(dev);
    return VUB_OK;
}

/* Scratch a ring needs, allocated when its size is set (never per request):
 * one block of iovecs for one chain and the batch's ids, heads and last
 * entries, and the packed ring's bitmap of ids pending. */
static enum vub_err vub_dev_alloc_ring(struct vub_dev *dev, struct vub_dev_queue *q, uint32_t num)
{
    unsigned cap = (num > VUB_BLK_SEG_MAX + 2 ? num : VUB_BLK_SEG_MAX + 2) + VUB_IOV_SLACK;
    struct vub_vring_scratch *s = &q->ring.scratch;
    if (cap > s->iov_cap) {
        size_t bytes = cap * (sizeof *s->iov + 3 * sizeof *s->batch_ids);
        struct iovec *iov = realloc(s->iov, bytes);
        if (!iov)
            return vub_fail(&dev->err, VUB_R_SYS_NOMEM, bytes, 0);
        s->iov = iov;
        s->batch_ids = (uint16_t *)(void *)(iov + cap);
        s->batch_heads = s->batch_ids + cap;
        s->batch_lasts = s->batch_heads + cap;
        s->iov_cap = cap;
    }
    s->chain = s->iov;
    s->chain_cap = s->iov_cap;
    if (!s->ids_pending && !(s->ids_pending = calloc(VUB_PACKED_IDS / 8, 1)))
        return vub_fail(&dev->err, VUB_R_SYS_NOMEM, VUB_PACKED_IDS / 8, 0);
    /* [BLK-BOUNCE] a direct image's bounce buffers, once per queue */
    if (dev->blk.image->direct && !q->bq.bounce) {
        q->bq.bounce = vub_sys_alloc_aligned((size_t)VUB_BOUNCE_COUNT * VUB_BOUNCE_BYTES);
        if (!q->bq.bounce)
            return vub_fail(&dev->err, VUB_R_SYS_NOMEM, (uint64_t)VUB_BOUNCE_COUNT * VUB_BOUNCE_BYTES, 0);
        q->bq.bounce_free = (1u << VUB_BOUNCE_COUNT) - 1;
    }
    return vub_dev_aio_size(dev, q, num);
}

static enum vub_err vub_h_set_vring_num(struct vub_dev *dev, struct vub_msg *m)
{
    struct vub_dev_queue *q = vub_dev_queue(dev, m, m->payload.state.index, true);
    if (!q)
        return VUB_E_PROTO;
    uint32_t num = m->payload.state.num;
    bool packed = q->ring.packed_ring;
    /* [VQ-SPLIT-SIZE] a power of two no larger than 32768;
     * [VQ-PACKED-SIZE] packed rings: any size in 1..32768. */
    if (num == 0 || num > VUB_MAX_QUEUE_SIZE || (!packed && (num & (num - 1)) != 0))
        return vub_fail(&dev->err, packed ? VUB_R_VQ_PACKED_SIZE : VUB_R_VQ_SPLIT_SIZE, num, VUB_MAX_QUEUE_SIZE);
    enum vub_err err = vub_dev_alloc_ring(dev, q, num);
    if (err != VUB_OK)
        return err;
    uint16_t old_size = q->ring.size;
    q->ring.size = (uint16_t)num;
    /* [VQ-RING-STATE] addresses sent before the size are checked now; ones
     * from an earlier start are not (QEMU sends SET_VRING_ADDR next). */
    if (vub_dev_map_ring(dev, q) != VUB_R_NONE && q->addr_before_num) {
        q->ring.size = old_size;
        vub_dev_map_ring(dev, q);
        return vub_fail(&dev->err, VUB_R_VQ_RING_FIT, m->payload.state.index, num);
    }
    q->addr_before_num = false;
    return VUB_OK;
}

static enum vub_err vub_h_set_vring_addr(struct vub_dev *dev, struct vub_msg *m)
{
    const struct vub_vu_vring_addr *a = &m->payload.addr;
    struct vub_dev_queue *q = vub_dev_queue(dev, m, a->index, false);
    if (!q)
        return VUB_E_PROTO;
    if ((a->flags & ~1u) || a->desc_uaddr % 16 || a->avail_uaddr % 2 || a->used_uaddr % 4)
        return vub_fail(&dev->err, VUB_R_VQ_SPLIT_ALIGN, a->index, a->flags);
    /* [VQ-RING-STATE] before SET_VRING_NUM only the areas' first bytes can
     * be checked (a one-entry ring); SET_VRING_NUM checks the rest. */
    uint16_t size = q->ring.size;
    if (!size && (!vub_mem_range(&dev->mem, VUB_UVA, a->desc_uaddr, VIRTQ_DESC_BYTES) ||
                  !vub_mem_range(&dev->mem, VUB_UVA, a->avail_uaddr, 4) ||
                  !vub_mem_range(&dev->mem, VUB_UVA, a->used_uaddr, 4)))
        return vub_fail(&dev->err, dev->mem.count ? VUB_R_VU_PART_SHARED_MEM : VUB_R_VU_NO_SHARED_MEM, a->index,
                        dev->mem.count);
    q->desc_addr = a->desc_uaddr;
    q->avail_addr = a->avail_uaddr;
    q->used_addr = a->used_uaddr;
    q->addr_set = true;
    q->addr_before_num = !size;
    enum vub_reason r = size ? vub_dev_map_ring(dev, q) : VUB_R_NONE;
    return r == VUB_R_NONE ? VUB_OK : vub_fail(&dev->err, r, a->index, dev->mem.count);
}

/* [VU-VRING-BASE] split rings: the next available index, bits 16-31 zero;
 * packed rings: both positions and wrap counters ([VU-PACKED-BASE]). */
static enum vub_err vub_h_set_vring_base(struct vub_dev *dev, struct vub_msg *m)
{
    struct vub_dev_queue *q = vub_dev_queue(dev, m, m->payload.state.index, true);
    uint32_t base = m->payload.state.num;
    if (!q)
        return VUB_E_PROTO;
    if (q->ring.packed_ring ? !vub_packed_set_base(&q->ring, base) : base > 0xffff)
        return vub_fail(&dev->err, VUB_R_VU_VRING_BASE, base, q->ring.size);
    if (!q->ring.packed_ring)
        q->ring.split.last_avail = (uint16_t)base;
    return VUB_OK;
}

/* [VU-GET-VRING-BASE] stops the ring - it is not reset - and answers with
 * where the device stopped; every request taken from the ring has been
 * completed by now ([VU-QUIESCE]). */
static enum vub_err vub_h_get_vring_base(struct vub_dev *dev, struct vub_msg *m)
{
    struct vub_dev_queue *q = vub_dev_queue(dev, m, m->payload.state.index, false);
    if (!q)
        return VUB_E_PROTO;
    q->started = false;
    q->polled = false;
    q->used_synced = false;
    vub_sys_close(&q->kick_fd);
    struct vub_vu_vring_state *s = vub_dev_reply(dev, sizeof *s);
    s->index = m->payload.state.index;
    s->num = q->ring.packed_ring ? vub_packed_base(&q->ring) : q->ring.split.last_avail;
    return VUB_OK;
}

/* [VU-VRING-FD] SET_VRING_KICK, SET_VRING_CALL and SET_VRING_ERR: queue
 * index in bits 0-7, bit 8 set means no fd; no other bits; exactly one fd
 * when bit 8 is clear. [VU-EVENT-FD] a kick fd must be readable as an event
 * source, a call or err fd writable as one; [VU-CALL-NONBLOCK] every one is
 * made non-blocking, so a front-end that never drains its call pipe cannot
 * block the device (a full pipe already holds a pending signal). The fd
 * replaces the one held before; a refused one is closed with the message.
 * [VU-VRING-KICK] A kick fd starts the ring ("Ring states": started once
 * the kick fd is set); requests already waiting are served at once, since
 * their kick may have gone to the previous fd. */
static enum vub_err vub_h_set_vring_fd(struct vub_dev *dev, struct vub_msg *m)
{
    uint64_t v = m->payload.u64;
    bool nofd = (v & VHOST_USER_VRING_NOFD_MASK) != 0, kick = m->hdr.request == VHOST_USER_SET_VRING_KICK;
    bool pipe = false;
    if ((v & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK)) ||
        m->fd_count != (nofd ? 0u : 1u))
        return vub_fail(&dev->err, VUB_R_VU_VRING_FD, v, m->fd_count);
    struct vub_dev_queue *q = vub_dev_queue(dev, m, (uint32_t)(v & VHOST_USER_VRING_IDX_MASK), false);
    if (!q)
        return VUB_E_PROTO;
    if (!nofd && !vub_sys_event_fd_ok(m->fds[0], kick, &pipe))
        return vub_fail(&dev->err, VUB_R_VU_EVENT_FD, m->hdr.request, 0);
    if (!nofd && !vub_sys_set_nonblock(m->fds[0]))
        return vub_fail(&dev->err, VUB_R_VU_CALL_NONBLOCK, 0, (uint64_t)errno);
    int *slot = kick ? &q->kick_fd : m->hdr.request == VHOST_USER_SET_VRING_CALL ? &q->call_fd : &q->err_fd;
    vub_sys_close(slot);
    *slot = nofd ? -1 : m->fds[0];
    m->fds[0] = -1; /* kept */
    if (!kick)
        return VUB_OK;
    q->kick_pipe = pipe;
    q->polled = nofd;
    q->started = true;
    q->used_synced = false;
    q->ring.signalled_valid = false;
    return vub_dev_run_collect(dev, (unsigned)(q - dev->queues));
}

/* [VU-VRING-ENABLE] "should be sent only when PROTOCOL_FEATURES has been
 * negotiated": vub accepts it once either feature word says so. */
static enum vub_err vub_h_set_vring_enable(struct vub_dev *dev, struct vub_msg *m)
{
    struct vub_dev_queue *q = vub_dev_queue(dev, m, m->payload.state.index, false);
    if (!q)
        return VUB_E_PROTO;
    if ((!dev->protocol.set && !vub_has(dev->features.acked, VHOST_USER_F_PROTOCOL_FEATURES)) ||
        m->payload.state.num > 1)
        return vub_fail(&dev->err, VUB_R_VU_VRING_ENABLE, m->payload.state.num, dev->features.acked);
    q->enabled = m->payload.state.num == 1;
    return vub_dev_run_collect(dev, m->payload.state.index);
}

/* [VU-CONFIG-RANGE] offset is relative to the device config space; any
 * range inside it is valid ([VU-CONFIG-SIZE] QEMU asks for 36, 48, 57 or 60
 * bytes depending on its own properties). A bad range gets a reply with no
 * payload, the spec's error signal for GET_CONFIG. */
static bool vub_dev_config_range(struct vub_dev *dev, const struct vub_msg *m)
{
    const struct vub_vu_config *c = &m->payload.config;
    if (m->hdr.size == 12 + (uint64_t)c->size && c->size <= VUB_VU_CONFIG_MAX &&
        vub_range_ok(c->offset, c->size, VIRTIO_BLK_CONFIG_BYTES))
        return true;
    vub_fail(&dev->err, VUB_R_VU_CONFIG_RANGE, c->size, c->offset);
    return false;
}

static enum vub_err vub_h_get_config(struct vub_dev *dev, struct vub_msg *m)
{
    uint8_t cfg[VIRTIO_BLK_CONFIG_BYTES];
    const struct vub_vu_config *in = &m->payload.config;
    if (!vub_dev_config_range(dev, m)) {
        vub_dev_reply(dev, 0);
        dev->stats.rejected_messages++;
        return VUB_OK;
    }
    vub_blk_config_encode(&dev->blk, cfg);
    struct vub_vu_config *out = vub_dev_reply(dev, 12 + in->size);
    *out = *in; /* offset, size and flags as asked */
    memcpy(out->data, cfg + in->offset, in->size);
    return VUB_OK;
}

/* [VU-CONFIG-WRITE] only `writeback` (offset 32) is writable, and only 0 or
 * 1 with CONFIG_WCE negotiated. Bytes of read-only fields may be "written"
 * with their current value (a migration restore does that). */
static enum vub_err vub_h_set_config(struct vub_dev *dev, struct vub_msg *m)
{
    const struct vub_vu_config *in = &m->payload.config;
    uint8_t cfg[VIRTIO_BLK_CONFIG_BYTES];
    if (!vub_dev_config_range(dev, m))
        return VUB_E_PROTO;
    vub_blk_config_encode(&dev->blk, cfg);
    for (uint32_t i = 0; i < in->size; i++) {
        uint32_t at = in->offset + i;
        uint8_t v = in->data[i];
        bool writable = at == 32 && dev->blk.wce_negotiated && v <= 1;
        if (v != cfg[at] && !writable)
            return vub_fail(&dev->err, VUB_R_VU_CONFIG_WRITE, v, at);
    }
    if (vub_range_ok(in->offset, 0, 32) && 32 - in->offset < in->size)
        dev->blk.writeback = in->data[32 - in->offset];
    return VUB_OK;
}

static enum vub_err vub_h_add_mem_reg(struct vub_dev *dev, struct vub_msg *m)
{
    enum vub_err err = vub_mem_add(&dev->mem, &m->payload.single.region, m->fds[0], &dev->err);
    if (err == VUB_OK)
        vub_dev_remap_rings(dev);
    return err;
}

/* An fd that comes with REM_MEM_REG is allowed and closed unused. */
static enum vub_err vub_h_rem_mem_reg(struct vub_dev *dev, struct vub_msg *m)
{
    const struct vub_vu_mem_region *r = &m->payload.single.region;
    if (!vub_mem_remove(&dev->mem, r))
        return vub_fail(&dev->err, VUB_R_MEM_REM, r->guest_addr, r->size);
    vub_dev_remap_rings(dev);
    return VUB_OK;
}

/* [VU-STATUS] SET_STATUS carries the VIRTIO device status byte. vub keeps
 * it for GET_STATUS and acts on it only where that is safe whichever order
 * the front-end uses (SPEC-NOTES.md shows QEMU's):
 *  - FEATURES_OK is kept only if SET_FEATURES was accepted (VIRTIO "Device
 *    Initialization": the device leaves it clear for features it refuses).
 *  - status 0 (a device reset) stops every ring as GET_VRING_BASE does,
 *    keeping the positions: QEMU 7.2 sends it *before* GET_VRING_BASE.
 *  - DEVICE_NEEDS_RESET is set by vub when a ring breaks; only a reset
 *    clears it. */
static enum vub_err vub_h_set_status(struct vub_dev *dev, struct vub_msg *m)
{
    uint64_t v = m->payload.u64;
    if (v > 0xff)
        return vub_fail(&dev->err, VUB_R_VU_STATUS, v, 0);
    uint8_t status = (uint8_t)v;
    if ((status & VIRTIO_STATUS_FEATURES_OK) && !dev->features.set)
        status &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
    for (unsigned i = 0; status == 0 && i < dev->cfg.num_queues; i++) {
        struct vub_dev_queue *q = &dev->queues[i]; /* a reset: stop, keep the positions */
        q->started = q->polled = q->used_synced = false;
        vub_sys_close(&q->kick_fd);
    }
    dev->status = status == 0 ? 0 : (uint8_t)(status | (dev->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET));
    return VUB_OK;
}

/* [VU-BACKEND-REQ] the back-end's own channel: a socket, kept across
 * RESET_DEVICE like the other connection state, replaced by a new one. */
static enum vub_err vub_h_set_backend_req_fd(struct vub_dev *dev, struct vub_msg *m)
{
    vub_sys_close(&dev->backend_fd);
    dev->backend_fd = m->fds[0];
    m->fds[0] = -1;
    dev->backend_ack_pending = false;
    vub_sys_socket_timeouts(dev->backend_fd, VUB_SOCKET_TIMEOUT_MS);
    return VUB_OK;
}

/* [INFL-GET] GET_INFLIGHT_FD: a zeroed memfd holding num_queues regions of
 * queue_size entries, laid out for the ring layout negotiated so far (QEMU
 * sends SET_FEATURES first for that reason). A request vub cannot serve is
 * answered with mmap_size 0 and no fd, which the spec's front-end reads as
 * "no inflight area" and goes on without one. The area is not used until
 * SET_INFLIGHT_FD hands it back. */
static enum vub_err vub_h_get_inflight_fd(struct vub_dev *dev, struct vub_msg *m)
{
    const struct vub_vu_inflight in = m->payload.inflight;
    struct vub_vu_inflight *out = vub_dev_reply(dev, sizeof *out);
    bool packed = vub_has(dev->features.acked, VIRTIO_F_RING_PACKED);
    uint64_t bytes = in.num_queues * vub_inflight_queue_bytes(in.queue_size, packed);
    *out = (struct vub_vu_inflight){0, 0, in.num_queues, in.queue_size, 0};
    int fd = -1;
    if (in.num_queues == 0 || in.num_queues > dev->cfg.num_queues || in.queue_size == 0 ||
        in.queue_size > VUB_MAX_QUEUE_SIZE)
        vub_fail(&dev->err, VUB_R_INFL_GET, in.num_queues, in.queue_size);
    else if ((fd = vub_sys_memfd_new("vub-inflight", bytes)) < 0)
        vub_fail(&dev->err, VUB_R_INFL_SHM, bytes, (uint64_t)errno);
    if (fd < 0) {
        vub_error_format(&dev->err, "GET_INFLIGHT_FD", dev->why, sizeof dev->why);
        dev->stats.rejected_messages++;
        return VUB_OK;
    }
    out->mmap_size = bytes;
    dev->reply.fds[0] = fd;
    dev->reply.fd_count = 1;
    return VUB_OK;
}

/* Host memory a queue needs to recover from a region of n entries: one
 * block of the order, the next links and the seen bits. */
static enum vub_err vub_dev_alloc_inflight(struct vub_dev *dev, struct vub_vring_scratch *s, unsigned n)
{
    size_t bytes = n * (sizeof *s->inflight_order + sizeof *s->inflight_next) + n / 8 + 1;
    if (n <= s->inflight_cap)
        return VUB_OK;
    struct vub_inflight_order *order = realloc(s->inflight_order, bytes);
    if (!order)
        return vub_fail(&dev->err, VUB_R_SYS_NOMEM, bytes, 0);
    s->inflight_order = order;
    s->inflight_next = (uint16_t *)(void *)(order + n);
    s->inflight_seen = (uint8_t *)(s->inflight_next + n);
    s->inflight_cap = n;
    return VUB_OK;
}

/* [INFL-SET] SET_INFLIGHT_FD: the area must be exactly num_queues regions
 * of queue_size entries for the ring layout negotiated (the back-end that
 * made it chose that size), start on a page in the fd and lie inside the
 * file. Each region is either fresh (version 0) or has a header that
 * matches ([INFL-HEADER]); its entries are checked when its ring starts,
 * against the ring. Only stopped rings take a new area; a refused one
 * leaves the old in place. */
static enum vub_err vub_h_set_inflight_fd(struct vub_dev *dev, struct vub_msg *m)
{
    const struct vub_vu_inflight in = m->payload.inflight;
    bool packed = vub_has(dev->features.acked, VIRTIO_F_RING_PACKED);
    uint64_t stride = vub_inflight_queue_bytes(in.queue_size, packed), need = in.num_queues * stride, file = 0;
    for (unsigned i = 0; i < dev->cfg.num_queues; i++)
        if (!vub_dev_queue(dev, m, i, true))
            return VUB_E_PROTO;
    if (in.num_queues == 0 || in.num_queues > dev->cfg.num_queues || in.queue_size == 0 ||
        in.queue_size > VUB_MAX_QUEUE_SIZE || in.mmap_size != need || in.mmap_offset % 4096 != 0 ||
        !vub_sys_stat(m->fds[0], false, &file, NULL, NULL) || !vub_range_ok(in.mmap_offset, need, file))
        return vub_fail(&dev->err, VUB_R_INFL_SET, in.mmap_size, need);
    for (unsigned i = 0; i < in.num_queues; i++) {
        enum vub_err err = vub_dev_alloc_inflight(dev, &dev->queues[i].ring.scratch, in.queue_size);
        if (err != VUB_OK)
            return err;
    }
    void *base;
    size_t len;
    uint8_t *area = vub_sys_map(m->fds[0], in.mmap_offset, need, &base, &len);
    if (!area)
        return vub_fail(&dev->err, VUB_R_MEM_MAP, in.mmap_offset, (uint64_t)errno);
    for (unsigned i = 0; i < in.num_queues; i++) {
        const struct vub_inflight_split *h = (const void *)(area + i * stride);
        uint16_t version = vub_infl_get16(&h->version), desc_num = vub_infl_get16(&h->desc_num);
        if (version != 0 && (version != VUB_INFLIGHT_VERSION || desc_num != in.queue_size ||
                             vub_infl_get64(&h->features) != 0)) {
            vub_sys_unmap(base, len);
            return vub_fail(&dev->err, VUB_R_INFL_HEADER, version, desc_num);
        }
    }
    vub_dev_inflight_unmap(dev);
    dev->inflight.map_base = base;
    dev->inflight.map_len = len;
    for (unsigned i = 0; i < in.num_queues; i++)
        dev->queues[i].ring.inflight = (struct vub_vring_inflight){.region = area + i * stride,
                                                                   .desc_num = in.queue_size, .packed = packed};
    return VUB_OK;
}

#define VUB_STATE sizeof(struct vub_vu_vring_state)
#define VUB_CONFIG_MIN 12
#define VUB_CONFIG_MAX (12 + VUB_VU_CONFIG_MAX)
#define VUB_MEM_MIN (8 + sizeof(struct vub_vu_mem_region))
#define VUB_MEM_MAX sizeof(struct vub_vu_mem_table)
#define VUB_SINGLE sizeof(struct vub_vu_mem_single)

/* [VU-DISPATCH] one row per request vub serves; anything else is unknown. */
static const struct vub_dev_rule vub_dev_rules[VHOST_USER_REQUEST_COUNT] = {
    [VHOST_USER_GET_FEATURES] = {vub_h_get_u64, 0, 0, 0, 0, VUB_GATE_NONE, true},
    [VHOST_USER_SET_FEATURES] = {vub_h_set_features, 8, 8, 0, 0, VUB_GATE_NONE, false},
    [VHOST_USER_SET_OWNER] = {vub_h_owner, 0, 0, 0, 0, VUB_GATE_NONE, false},
    [VHOST_USER_RESET_OWNER] = {vub_h_owner, 0, 0, 0, 0, VUB_GATE_NONE, false},
    [VHOST_USER_SET_MEM_TABLE] = {vub_h_set_mem_table, VUB_MEM_MIN, VUB_MEM_MAX, 1, VUB_VU_MAX_FDS,
                                  VUB_GATE_NONE, false},
    [VHOST_USER_SET_VRING_NUM] = {vub_h_set_vring_num, VUB_STATE, VUB_STATE, 0, 0, VUB_GATE_NONE, false},
    [VHOST_USER_SET_VRING_ADDR] = {vub_h_set_vring_addr, 40, 40, 0, 0, VUB_GATE_NONE, false},
    [VHOST_USER_SET_VRING_BASE] = {vub_h_set_vring_base, VUB_STATE, VUB_STATE, 0, 0, VUB_GATE_NONE, false},
    [VHOST_USER_GET_VRING_BASE] = {vub_h_get_vring_base, VUB_STATE, VUB_STATE, 0, 0, VUB_GATE_NONE, true},
    [VHOST_USER_SET_VRING_KICK] = {vub_h_set_vring_fd, 8, 8, 0, 1, VUB_GATE_NONE, false},
    [VHOST_USER_SET_VRING_CALL] = {vub_h_set_vring_fd, 8, 8, 0, 1, VUB_GATE_NONE, false},
    [VHOST_USER_SET_VRING_ERR] = {vub_h_set_vring_fd, 8, 8, 0, 1, VUB_GATE_NONE, false},
    [VHOST_USER_GET_PROTOCOL_FEATURES] = {vub_h_get_u64, 0, 0, 0, 0, VUB_GATE_NONE, true},
    [VHOST_USER_SET_PROTOCOL_FEATURES] = {vub_h_set_features, 8, 8, 0, 0, VUB_GATE_NONE, false},
    [VHOST_USER_GET_QUEUE_NUM] = {vub_h_get_u64, 0, 0, 0, 0, VHOST_USER_PROTOCOL_F_MQ, true},
    [VHOST_USER_SET_VRING_ENABLE] = {vub_h_set_vring_enable, VUB_STATE, VUB_STATE, 0, 0, VUB_GATE_NONE, false},
    [VHOST_USER_SET_BACKEND_REQ_FD] = {vub_h_set_backend_req_fd, 0, 0, 1, 1, VHOST_USER_PROTOCOL_F_BACKEND_REQ,
                                       false},
    [VHOST_USER_GET_CONFIG] = {vub_h_get_config, VUB_CONFIG_MIN, VUB_CONFIG_MAX, 0, 0,
                               VHOST_USER_PROTOCOL_F_CONFIG, true},
    [VHOST_USER_SET_CONFIG] = {vub_h_set_config, VUB_CONFIG_MIN, VUB_CONFIG_MAX, 0, 0,
                               VHOST_USER_PROTOCOL_F_CONFIG, false},
    [VHOST_USER_RESET_DEVICE] = {vub_h_owner, 0, 0, 0, 0, VHOST_USER_PROTOCOL_F_RESET_DEVICE, false},
    [VHOST_USER_GET_MAX_MEM_SLOTS] = {vub_h_get_u64, 0, 0, 0, 0,
                                      VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, true},
    [VHOST_USER_ADD_MEM_REG] = {vub_h_add_mem_reg, VUB_SINGLE, VUB_SINGLE, 1, 1,
                                VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, false},
    [VHOST_USER_REM_MEM_REG] = {vub_h_rem_mem_reg, VUB_SINGLE, VUB_SINGLE, 0, 1,
                                VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, false},
    [VHOST_USER_SET_STATUS] = {vub_h_set_status, 8, 8, 0, 0, VHOST_USER_PROTOCOL_F_STATUS, false},
    [VHOST_USER_GET_STATUS] = {vub_h_get_u64, 0, 0, 0, 0, VHOST_USER_PROTOCOL_F_STATUS, true},
    [VHOST_USER_GET_INFLIGHT_FD] = {vub_h_get_inflight_fd, 24, 24, 0, 0, VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD, true},
    [VHOST_USER_SET_INFLIGHT_FD] = {vub_h_set_inflight_fd, 24, 24, 1, 1, VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD,
                                    false},
};

/* The checks every request passes before its handler: known, with sane
 * header flags ([VU-HDR-FLAGS]: the version and at most NEED_REPLY; the
 * REPLY bit is the back-end's to send, and no other bit is defined),
 * negotiated ([VU-GATE]: the gating protocol feature negotiated, not merely
 * offered), the right payload size, the right number of fds. */
static const struct vub_dev_rule *vub_dev_check(struct vub_dev *dev, const struct vub_msg *m)
{
    uint32_t r = m->hdr.request;
    const struct vub_dev_rule *rule = r < VHOST_USER_REQUEST_COUNT ? &vub_dev_rules[r] : NULL;
    if (!rule || !rule->handle)
        vub_fail(&dev->err, VUB_R_VU_DISPATCH, r, 0);
    else if (m->hdr.flags & ~(VHOST_USER_VERSION_MASK | VHOST_USER_NEED_REPLY_MASK))
        vub_fail(&dev->err, VUB_R_VU_HDR_FLAGS, r, m->hdr.flags);
    else if (rule->gate != VUB_GATE_NONE && !vub_has(dev->protocol.acked, (unsigned)rule->gate))
        vub_fail(&dev->err, VUB_R_VU_GATE, r, (uint64_t)rule->gate);
    else if (m->hdr.size < rule->min_size || m->hdr.size > rule->max_size)
        vub_fail(&dev->err, VUB_R_VU_MSG_SIZE, r, m->hdr.size);
    else if (m->fd_count < rule->min_fds || m->fd_count > rule->max_fds)
        vub_fail(&dev->err, VUB_R_VU_FDS_COUNT, r, m->fd_count);
    else
        return rule;
    return NULL;
}

/* Runs one request and answers it. [VU-NEED-REPLY] a request that has no
 * reply of its own but carries NEED_REPLY is answered with a u64, 0 for
 * success - whether or not REPLY_ACK was negotiated, since a front-end
 * that sets the flag waits for the answer. A failed request that cannot be
 * answered ends the session. */
static enum vub_err vub_dev_handle(struct vub_dev *dev, struct vub_msg *m)
{
    const struct vub_dev_rule *rule = vub_dev_check(dev, m);
    bool need_reply = (m->hdr.flags & VHOST_USER_NEED_REPLY_MASK) != 0;
    enum vub_err err = rule ? rule->handle(dev, m) : VUB_E_PROTO;

    dev->reply.hdr.request = m->hdr.request;
    dev->reply.hdr.flags = VHOST_USER_REPLY_FLAGS;
    if (err != VUB_OK)
        vub_error_format(&dev->err, vub_vu_request_name(m->hdr.request), dev->why, sizeof dev->why);
    bool own = rule && rule->has_reply;
    if (own ? err != VUB_OK : !need_reply)
        return err == VUB_OK ? VUB_OK : VUB_E_PROTO;
    if (!own) {
        dev->stats.rejected_messages += err != VUB_OK;
        vub_dev_reply_u64(dev, err == VUB_OK ? 0 : 1);
    }
    err = vub_vu_send(dev->sock, &dev->reply.hdr, &dev->reply.payload, dev->reply.fds, dev->reply.fd_count);
    vub_msg_close_fds(&dev->reply); /* ours were sent: the front-end holds its own copies */
    return err;
}

/* ---- public API ---- */

/* [BLK-FLUSH-OFFER] FLUSH is always offered, so CONFIG_WCE never comes alone;
 * [BLK-WCE-INIT] writeback starts at 0 (vub_dev_reset_device). */
static uint64_t vub_dev_offer(const struct vub_dev_config *cfg, bool read_only)
{
    uint64_t f = VUB_BIT(VIRTIO_F_VERSION_1) | VUB_BIT(VIRTIO_F_INDIRECT_DESC) | VUB_BIT(VIRTIO_F_RING_PACKED) |
                 VUB_BIT(VIRTIO_F_EVENT_IDX) | VUB_BIT(VHOST_USER_F_PROTOCOL_FEATURES) |
                 VUB_BIT(VIRTIO_BLK_F_SEG_MAX) | VUB_BIT(VIRTIO_BLK_F_BLK_SIZE) |
                 VUB_BIT(VIRTIO_BLK_F_FLUSH) | VUB_BIT(VIRTIO_BLK_F_MQ);
    if (read_only)
        f |= VUB_BIT(VIRTIO_BLK_F_RO);
    else
        f |= VUB_BIT(VIRTIO_BLK_F_CONFIG_WCE) | VUB_BIT(VIRTIO_BLK_F_DISCARD) |
             VUB_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
    return f & ~cfg->features_off;
}

/* [VU-PROTOCOL-OFFER] only what vub honours: QEMU uses whatever is offered. */
static const uint64_t vub_dev_protocol_offer =
    VUB_BIT(VHOST_USER_PROTOCOL_F_MQ) | VUB_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
    VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIG) | VUB_BIT(VHOST_USER_PROTOCOL_F_RESET_DEVICE) |
    VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) | VUB_BIT(VHOST_USER_PROTOCOL_F_STATUS) |
    VUB_BIT(VHOST_USER_PROTOCOL_F_BACKEND_REQ) | VUB_BIT(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD);

enum vub_err vub_dev_new(struct vub_dev **out, const struct vub_dev_config *cfg)
{
    if (!out || !cfg || !cfg->image || cfg->num_queues == 0 || cfg->num_queues > VUB_MAX_QUEUES)
        return VUB_E_INVAL;
    struct vub_dev *dev = calloc(1, sizeof *dev);
    if (!dev)
        return VUB_E_NOMEM;
    dev->cfg = *cfg;
    dev->sock = dev->backend_fd = -1;
    for (unsigned i = 0; i < VUB_MAX_QUEUES; i++) {
        struct vub_dev_queue *q = &dev->queues[i];
        q->kick_fd = q->call_fd = q->err_fd = q->aio.ring.fd = -1;
        q->bq.stats = &q->stats;
    }
    bool read_only = cfg->read_only || vub_image_read_only(cfg->image);
    dev->features.offered = vub_dev_offer(cfg, read_only);
    dev->protocol.offered = vub_dev_protocol_offer;
    dev->blk = (struct vub_blk){.image = cfg->image, .num_queues = cfg->num_queues, .read_only = read_only,
                                .capacity = vub_image_size(cfg->image) / VIRTIO_BLK_SECTOR_BYTES};
    memcpy(dev->blk.serial, cfg->serial, sizeof dev->blk.serial);
    *out = dev;
    return VUB_OK;
}

void vub_dev_free(struct vub_dev *dev)
{
    if (!dev)
        return;
    vub_dev_detach(dev);
    for (unsigned i = 0; i < VUB_MAX_QUEUES; i++) {
        struct vub_dev_queue *q = &dev->queues[i];
        struct vub_vring_scratch *s = &q->ring.scratch;
        free(s->iov); /* with the batch arrays */
        free(s->ids_pending);
        free(s->inflight_order); /* with next and seen */
        vub_uring_exit(&q->aio.ring);
        free(q->aio.slots); /* with their iovecs */
        vub_sys_unmap(q->bq.bounce, (size_t)VUB_BOUNCE_COUNT * VUB_BOUNCE_BYTES);
    }
    free(dev);
}

/* [VU-SERVER] a new front-end starts from a fresh device, however the last
 * session ended. */
enum vub_err vub_dev_attach(struct vub_dev *dev, int fd)
{
    if (!dev || fd < 0 || dev->sock >= 0)
        return VUB_E_INVAL;
    vub_sys_socket_timeouts(fd, VUB_SOCKET_TIMEOUT_MS);
    dev->sock = fd;
    memset(&dev->stats, 0, sizeof dev->stats);
    for (unsigned i = 0; i < VUB_MAX_QUEUES; i++)
        memset(&dev->queues[i].stats, 0, sizeof dev->queues[i].stats);
    dev->err = (struct vub_error){VUB_R_NONE, 0, 0};
    dev->why[0] = '\0';
    vub_dev_reset_session(dev);
    return VUB_OK;
}

void vub_dev_detach(struct vub_dev *dev)
{
    if (!dev)
        return;
    vub_msg_close_fds(&dev->msg); /* a request cut short by a fault may hold fds */
    for (unsigned i = 0; i < dev->cfg.num_queues; i++)
        vub_dev_drain(dev, i, true); /* [VU-QUIESCE] before the memory goes */
    vub_dev_reset_session(dev);
    vub_sys_close(&dev->sock);
}

bool vub_dev_attached(const struct vub_dev *dev) { return dev->sock >= 0; }

enum vub_err vub_dev_handle_msg(struct vub_dev *dev)
{
    if (dev->sock < 0)
        return VUB_E_INVAL;
    struct vub_msg *m = &dev->msg;
    enum vub_err err = vub_vu_recv(dev->sock, m, &dev->err);
    if (err == VUB_OK)
        err = vub_dev_quiesce(dev);
    if (err == VUB_OK) {
        err = vub_dev_handle(dev, m);
        vub_msg_close_fds(m); /* [VU-FDS-CLOSE] whatever a handler did not keep */
    } else {
        vub_error_format(&dev->err, NULL, dev->why, sizeof dev->why);
    }
    return err == VUB_OK || err == VUB_E_CLOSED ? err : VUB_E_PROTO;
}

/* A kick: drained, counted, and the queue served. */
static enum vub_err vub_dev_kicked(struct vub_dev *dev, unsigned q)
{
    if (dev->queues[q].kick_fd >= 0 && !vub_sys_drain(dev->queues[q].kick_fd))
        vub_dev_drop_fd(dev, &dev->queues[q].kick_fd, q, false);
    dev->queues[q].stats.kicks++;
    return vub_dev_run_queue(dev, q);
}

enum vub_err vub_dev_process_queue(struct vub_dev *dev, unsigned q)
{
    if (q >= dev->cfg.num_queues)
        return VUB_E_INVAL;
    enum vub_err err = vub_dev_kicked(dev, q);
    vub_dev_collect(dev, q);
    return err;
}

/* [VU-CONFIG-CHANGE] tells the front-end its config space changed. The
 * answer REPLY_ACK asks for is not waited for: QEMU sends GET_CONFIG on the
 * main socket before it answers, so waiting would deadlock with it.
 * vub_dev_dispatch() reads the answer when it comes. */
static enum vub_err vub_dev_config_changed(struct vub_dev *dev, bool *notified)
{
    bool ack = vub_has(dev->protocol.acked, VHOST_USER_PROTOCOL_F_REPLY_ACK);
    struct vub_vu_header h = {VHOST_USER_BACKEND_CONFIG_CHANGE_MSG,
                              VHOST_USER_VERSION | (ack ? VHOST_USER_NEED_REPLY_MASK : 0), 0};
    *notified = false;
    if (dev->backend_fd < 0 || !vub_has(dev->protocol.acked, VHOST_USER_PROTOCOL_F_CONFIG))
        return VUB_OK;
    if (vub_vu_send(dev->backend_fd, &h, NULL, NULL, 0) != VUB_OK) {
        enum vub_err err = vub_fail(&dev->err, VUB_R_VU_CONFIG_CHANGE, 0, (uint64_t)errno);
        vub_error_format(&dev->err, NULL, dev->why, sizeof dev->why);
        vub_sys_close(&dev->backend_fd);
        return err;
    }
    dev->backend_ack_pending = ack;
    *notified = true;
    return VUB_OK;
}

/* The front-end's answer on the back-end channel: 0 for success. A bad or
 * missing answer is logged and the channel dropped; the session goes on. */
static void vub_dev_backend_reply(struct vub_dev *dev)
{
    struct vub_msg *m = &dev->msg;
    dev->backend_ack_pending = false;
    enum vub_err err = vub_vu_recv(dev->backend_fd, m, &dev->err);
    if (err == VUB_OK) {
        bool ok = m->hdr.request == VHOST_USER_BACKEND_CONFIG_CHANGE_MSG &&
                  (m->hdr.flags & VHOST_USER_REPLY_MASK) && m->hdr.size == 8 && m->payload.u64 == 0;
        vub_msg_close_fds(m);
        if (ok)
            return;
        vub_fail(&dev->err, VUB_R_VU_BACKEND_REPLY, m->hdr.request, m->hdr.size == 8 ? m->payload.u64 : 0);
    }
    vub_error_format(&dev->err, err == VUB_OK ? NULL : "no answer to CONFIG_CHANGE_MSG", dev->why,
                     sizeof dev->why);
    dev->stats.rejected_messages++;
    vub_sys_close(&dev->backend_fd);
}

enum vub_err vub_dev_resize(struct vub_dev *dev, uint64_t *old_sectors, uint64_t *new_sectors, bool *notified)
{
    bool told = false;
    if (!dev)
        return VUB_E_INVAL;
    uint64_t before = dev->blk.capacity;
    enum vub_err err = vub_image_refresh_size(dev->cfg.image, dev->why, sizeof dev->why);
    uint64_t after = vub_image_size(dev->cfg.image) / VIRTIO_BLK_SECTOR_BYTES;
    if (err == VUB_OK && after != before) {
        dev->blk.capacity = after;
        if (dev->sock >= 0)
            err = vub_dev_config_changed(dev, &told);
    }
    if (old_sectors)
        *old_sectors = before;
    if (new_sectors)
        *new_sectors = dev->blk.capacity;
    if (notified)
        *notified = told;
    return err;
}

size_t vub_dev_control_pollfds(const struct vub_dev *dev, struct pollfd *fds, size_t cap)
{
    size_t n = 0;
    if (dev->sock >= 0 && n < cap)
        fds[n++] = (struct pollfd){.fd = dev->sock, .events = POLLIN};
    if (dev->backend_ack_pending && n < cap)
        fds[n++] = (struct pollfd){.fd = dev->backend_fd, .events = POLLIN};
    return n;
}

size_t vub_dev_queue_pollfds(const struct vub_dev *dev, unsigned q, struct pollfd *fds, size_t cap)
{
    size_t n = 0;
    if (q >= dev->cfg.num_queues)
        return 0;
    const struct vub_dev_queue *dq = &dev->queues[q];
    if (dq->started && dq->kick_fd >= 0 && n < cap)
        fds[n++] = (struct pollfd){.fd = dq->kick_fd, .events = POLLIN};
    if (dq->aio.in_flight > 0 && n < cap) /* completions: the ring fd is readable */
        fds[n++] = (struct pollfd){.fd = dq->aio.ring.fd, .events = POLLIN};
    return n;
}

size_t vub_dev_pollfds(const struct vub_dev *dev, struct pollfd *fds, size_t cap)
{
    size_t n = vub_dev_control_pollfds(dev, fds, cap);
    for (unsigned q = 0; q < dev->cfg.num_queues; q++)
        n += vub_dev_queue_pollfds(dev, q, fds + n, cap - n);
    return n;
}

/* A queue nobody will kick: NOFD, or a pipe kick with a backlog. */
bool vub_dev_queue_unkicked(const struct vub_dev *dev, unsigned q)
{
    const struct vub_dev_queue *dq = q < dev->cfg.num_queues ? &dev->queues[q] : NULL;
    return dq && dq->started && (dq->polled || dq->backlog);
}

bool vub_dev_polling(const struct vub_dev *dev)
{
    for (unsigned i = 0; i < dev->cfg.num_queues; i++)
        if (vub_dev_queue_unkicked(dev, i))
            return true;
    return false;
}

enum vub_err vub_dev_control_dispatch(struct vub_dev *dev, const struct pollfd *fds, size_t n)
{
    enum vub_err err = VUB_OK;
    for (size_t i = 0; i < n && err == VUB_OK; i++)
        if (fds[i].fd == dev->sock && fds[i].revents)
            err = vub_dev_handle_msg(dev);
    for (size_t i = 0; i < n && err == VUB_OK; i++)
        if (dev->backend_ack_pending && fds[i].fd == dev->backend_fd && fds[i].revents)
            vub_dev_backend_reply(dev);
    return err;
}

/* One queue's share of a poll set: its completions, its kick, and a run if
 * nobody will kick it. [VU-EVENT-FD] a hung-up kick fd is served once,
 * then dropped. Touches only queue q (and reads what messages set): safe
 * on the queue's own thread while other queues run on theirs. */
enum vub_err vub_dev_queue_dispatch(struct vub_dev *dev, unsigned q, const struct pollfd *fds, size_t n)
{
    if (q >= dev->cfg.num_queues)
        return VUB_E_INVAL;
    struct vub_dev_queue *dq = &dev->queues[q];
    enum vub_err err = VUB_OK;
    for (size_t i = 0; i < n && err == VUB_OK; i++) {
        if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL)))
            continue; /* the socket's and other queues' fds match neither test below */
        if (fds[i].fd == dq->aio.ring.fd && dq->aio.in_flight > 0)
            err = vub_dev_run_queue(dev, q); /* completions */
        if (err != VUB_OK || fds[i].fd != dq->kick_fd)
            continue;
        err = vub_dev_kicked(dev, q);
        if (dq->kick_fd >= 0 && (fds[i].revents & (POLLERR | POLLHUP | POLLNVAL)))
            vub_dev_drop_fd(dev, &dq->kick_fd, q, false);
    }
    if (err == VUB_OK && vub_dev_queue_unkicked(dev, q))
        err = vub_dev_run_queue(dev, q);
    return err;
}

/* Messages first: one may stop or re-plumb a queue whose kick is also
 * pending. [VQ-SPURIOUS-KICK] a stale kick is harmless: the ring is only
 * ever served for what it holds. */
enum vub_err vub_dev_dispatch(struct vub_dev *dev, const struct pollfd *fds, size_t n)
{
    enum vub_err err = vub_dev_control_dispatch(dev, fds, n);
    for (unsigned q = 0; q < dev->cfg.num_queues && err == VUB_OK; q++) {
        err = vub_dev_queue_dispatch(dev, q, fds, n);
        vub_dev_collect(dev, q);
    }
    return err;
}

/* [VU-POLL] Busy polling: serve whatever is waiting without a kick. */
enum vub_err vub_dev_queue_poll(struct vub_dev *dev, unsigned q, uint64_t *served)
{
    if (q >= dev->cfg.num_queues)
        return VUB_E_INVAL;
    uint64_t before = dev->queues[q].stats.requests;
    enum vub_err err = vub_dev_run_queue(dev, q);
    if (served)
        *served = dev->queues[q].stats.requests - before;
    return err;
}

enum vub_err vub_dev_poll_queues(struct vub_dev *dev, uint64_t *served)
{
    uint64_t total = 0, one = 0;
    enum vub_err err = VUB_OK;
    for (unsigned q = 0; q < dev->cfg.num_queues && err == VUB_OK; q++) {
        err = vub_dev_queue_poll(dev, q, &one);
        vub_dev_collect(dev, q);
        total += one;
    }
    if (served)
        *served = total;
    return err;
}

/* [VU-POLL-KICKS] While a queue spins, a pass that finds the ring empty
 * leaves kicks suppressed (vub.h says how). Ending the spin runs the queue
 * once more: its check after the re-arm closes the race with a driver that
 * looked just before. */
enum vub_err vub_dev_queue_set_polling(struct vub_dev *dev, unsigned q, bool polling)
{
    if (q >= dev->cfg.num_queues)
        return VUB_E_INVAL;
    dev->queues[q].spinning = polling;
    return polling ? VUB_OK : vub_dev_run_queue(dev, q);
}

/* [MEM-SHRINK] The hook for a program's SIGBUS handler: is addr in a file
 * of the front-end's that the device maps, a guest memory region or the
 * inflight area (either can shrink under us)? Reads only the region table
 * (no locks, no allocation), so it is async-signal-safe. */
bool vub_dev_owns_fault(const struct vub_dev *dev, const void *addr)
{
    const uint8_t *a = addr;
    for (unsigned i = 0; dev && i < dev->mem.count; i++) {
        const struct vub_mem_region *r = &dev->mem.regions[i];
        const uint8_t *base = r->map_base;
        if (a >= base && (size_t)(a - base) < r->map_len)
            return true;
    }
    const uint8_t *infl = dev ? dev->inflight.map_base : NULL;
    return infl && a >= infl && (size_t)(a - infl) < dev->inflight.map_len;
}

const char *vub_dev_why(const struct vub_dev *dev) { return dev->why; }
uint64_t vub_dev_features(const struct vub_dev *dev) { return dev->features.acked; }
uint64_t vub_dev_protocol_features(const struct vub_dev *dev) { return dev->protocol.acked; }

unsigned vub_dev_queues_started(const struct vub_dev *dev)
{
    unsigned n = 0;
    for (unsigned i = 0; i < dev->cfg.num_queues; i++)
        n += dev->queues[i].started;
    return n;
}

/* The device's counters plus every queue's: the struct is all uint64_t,
 * so it is added up as an array. */
_Static_assert(sizeof(struct vub_dev_stats) % sizeof(uint64_t) == 0, "vub_dev_stats is uint64_t only");
void vub_dev_stats(const struct vub_dev *dev, struct vub_dev_stats *out)
{
    uint64_t sum[sizeof *out / sizeof(uint64_t)];
    memcpy(sum, &dev->stats, sizeof sum);
    for (unsigned q = 0; q < VUB_MAX_QUEUES; q++) {
        uint64_t part[sizeof *out / sizeof(uint64_t)];
        memcpy(part, &dev->queues[q].stats, sizeof part);
        for (size_t i = 0; i < VUB_ARRAY_LEN(sum); i++)
            sum[i] += part[i];
    }
    memcpy(out, sum, sizeof sum);
}

/* [VU-QUIESCE] Every queue's requests in flight completed and pushed. */
enum vub_err vub_dev_quiesce(struct vub_dev *dev)
{
    enum vub_err err = VUB_OK;
    for (unsigned q = 0; q < dev->cfg.num_queues; q++) {
        if (err == VUB_OK)
            err = vub_dev_drain(dev, q, false);
        vub_dev_collect(dev, q);
    }
    return err;
}

bool vub_aio_works(enum vub_aio aio, char *why, size_t why_len)
{
    int rc = aio == VUB_AIO_SYNC ? 0 : aio == VUB_AIO_IO_URING ? vub_uring_probe() : EINVAL;
    if (rc != 0 && why && why_len > 0)
        snprintf(why, why_len, "io_uring does not work here: %s%s", strerror(rc),
                 rc == EPERM ? " (kernel.io_uring_disabled, or a seccomp filter)" : "");
    return rc == 0;
}


/* ======================================================================== *
 * 13. Front-end: a vhost-user-blk client  (vhost-user.rst "Front-end
 *     message types", "Ring states", "Memory access"; VIRTIO "Block
 *     Device", driver requirements)
 *
 * A front-end plays the VMM: it owns the "guest" memory, drives the rings
 * as the virtio driver, and tells the back-end where everything is. Here
 * the guest memory is one memfd, mapped once by us and once by the
 * back-end. Its layout, one block per queue and then the buffer pool:
 *
 *     per queue   descriptor table | available ring | used ring
 *                 | request slots (header, range, status per request)
 *                 | indirect tables (one per head)
 *     pool        page-granular buffers for vub_client_alloc()
 *
 * Ring addresses go to the back-end as our virtual addresses (SET_VRING_ADDR
 * takes "front-end virtual addresses"), buffer addresses inside descriptors
 * as guest physical addresses. The two spaces are kept apart on purpose:
 * the region's guest address is VUB_CLIENT_GPA_BASE, never our pointer, so a
 * back-end that mixes them up fails at once instead of by luck.
 *
 * The session, in the order QEMU's vhost-user-blk device uses:
 *     GET_FEATURES, [GET/SET_PROTOCOL_FEATURES], [GET_QUEUE_NUM],
 *     [GET_MAX_MEM_SLOTS], SET_OWNER, SET_FEATURES, GET_CONFIG,
 *     SET_MEM_TABLE or ADD_MEM_REG, then per queue SET_VRING_NUM,
 *     SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_CALL, SET_VRING_KICK,
 *     [SET_VRING_ENABLE]; at close SET_VRING_ENABLE 0 and GET_VRING_BASE.
 *
 * Format notes:
 *  - [VU-NEED-REPLY] With REPLY_ACK negotiated, every message that has no
 *    reply of its own carries NEED_REPLY and we wait for the u64 ack (0 =
 *    success). Messages that do have a reply never carry it: that reply is
 *    the only one. SET_PROTOCOL_FEATURES itself goes without: REPLY_ACK is
 *    not negotiated until it has been processed.
 *  - [VU-REPLY-CHECK] a reply has flags exactly version|REPLY (0x5), the
 *    request's id, exactly the payload size that request's reply has, and
 *    no file descriptors. Anything else ends the session: the stream can
 *    no longer be trusted to be in step.
 *  - [VU-REPLY-TIMEOUT] every reply is awaited with poll() and a timeout,
 *    and the socket has SO_RCVTIMEO as well, so a back-end that stops in the
 *    middle of a message cannot hang us either.
 *  - GET_CONFIG asks for 57 bytes (through write_zeroes_may_unmap), what
 *    QEMU asks by default, so back-ends have seen this size before; the
 *    reply must be exactly 12 + 57 bytes and echo offset and size.
 *  - Without VHOST_USER_F_PROTOCOL_FEATURES rings start enabled; with it
 *    they start disabled and SET_VRING_ENABLE turns them on ("Ring states").
 *  - Framing: header, range, data and status each get their own
 *    descriptor, as Linux does. VERSION_1 lets any split, but some
 *    back-ends have assumed this one (VIRTIO "Message Framing").
 *  - The status byte is set to VUB_BLK_S_NONE before each submit, so a
 *    back-end that completes without writing it is seen as such.
 * ======================================================================== */

#define VUB_CLIENT_GPA_BASE UINT64_C(0x40000000) /* guest address of the memfd's first byte */
#define VUB_CLIENT_PAGE_BYTES 4096u
#define VUB_CLIENT_SLOT_BYTES 64u     /* per request: header 0..15, range 16..31, status 32 */
#define VUB_CLIENT_SLOT_RANGE 16u
#define VUB_CLIENT_SLOT_STATUS 32u
#define VUB_CLIENT_CONFIG_BYTES 57u   /* GET_CONFIG size, see format notes */
#define VUB_CLIENT_MAX_SEGMENTS 254u  /* data segments per request: 256-entry tables */
#define VUB_CLIENT_DEFAULT_QUEUE_SIZE 128u
#define VUB_CLIENT_DEFAULT_BUFFER_BYTES ((size_t)4 << 20)
#define VUB_CLIENT_DEFAULT_TIMEOUT_MS 10000

/* Virtio features the client can use; it takes those the back-end offers.
 * RING_PACKED is added when the caller's ring choice allows it. */
static const uint64_t vub_client_wanted_features =
    VUB_BIT(VIRTIO_BLK_F_SIZE_MAX) | VUB_BIT(VIRTIO_BLK_F_SEG_MAX) | VUB_BIT(VIRTIO_BLK_F_GEOMETRY) |
    VUB_BIT(VIRTIO_BLK_F_RO) | VUB_BIT(VIRTIO_BLK_F_BLK_SIZE) | VUB_BIT(VIRTIO_BLK_F_FLUSH) |
    VUB_BIT(VIRTIO_BLK_F_TOPOLOGY) | VUB_BIT(VIRTIO_BLK_F_CONFIG_WCE) | VUB_BIT(VIRTIO_BLK_F_MQ) |
    VUB_BIT(VIRTIO_BLK_F_DISCARD) | VUB_BIT(VIRTIO_BLK_F_WRITE_ZEROES) |
    VUB_BIT(VIRTIO_F_INDIRECT_DESC) | VUB_BIT(VIRTIO_F_EVENT_IDX) |
    VUB_BIT(VHOST_USER_F_PROTOCOL_FEATURES) | VUB_BIT(VIRTIO_F_VERSION_1);

/* Protocol features the client implements. BACKEND_REQ for config-change
 * messages (a disk that grows); not INFLIGHT_SHMFD (it never reconnects),
 * nor STATUS. */
static const uint64_t vub_client_wanted_protocol =
    VUB_BIT(VHOST_USER_PROTOCOL_F_MQ) | VUB_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
    VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIG) | VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
    VUB_BIT(VHOST_USER_PROTOCOL_F_BACKEND_REQ);

/* The host record of one request in flight, by request slot. The copies
 * are what vub_client_reconnect() makes it available again from: the
 * back-end may have written over the shared ones (a packed ring's used
 * descriptors land on the slots its own requests held). */
struct vub_client_request {
    uint64_t cookie;                     /* the caller's */
    uint64_t seq;                        /* submission order on its queue, for resubmission */
    uint8_t hdr[VUB_CLIENT_SLOT_STATUS]; /* the slot's header and range as written */
    uint16_t buf_count;                  /* entries at bufs + slot * bufs_per_req */
};

struct vub_client_queue {
    struct vub_client *cl;             /* owner; read-only after connect */
    unsigned index;
    struct vub_drv ring;               /* the driver side of the ring, split or packed */
    int kick_fd;                       /* eventfd we signal: "buffers available" */
    int call_fd;                       /* eventfd the back-end signals: "buffers used" */
    bool started;                      /* SET_VRING_KICK sent: stop it at close */
    bool polling;                      /* the caller chose busy polling: wait spins */
    unsigned max_segments;             /* info.max_segments and config.size_max_bytes, */
    uint32_t size_max_bytes;           /*   copied: queue calls never read cl->info */
    uint8_t *slots;                    /* request slots, [size] x VUB_CLIENT_SLOT_BYTES */
    uint64_t slots_addr;               /* their guest address */
    uint16_t *slot_free;               /* stack of free request slots */
    uint16_t slot_free_count;
    uint64_t submitted;                /* requests submitted so far: the next seq */
    struct vub_client_request *reqs;   /* [size] by request slot; one allocation with the arrays below */
    uint16_t *head_slot;               /* [size] by head: the request slot it carries */
    uint16_t *order;                   /* [size] scratch: slots in flight, in seq order */
    struct vub_desc *bufs;             /* [size x bufs_per_req] each request's buffers, by slot */
    unsigned bufs_per_req;             /* max_segments (at least 1) + 2: header, data..., status */
    uint16_t *free_link;               /* ring bookkeeping, [size] each (host memory): */
    struct vub_drv_slot *ring_slots;   /*   free list or id stack, and requests in flight */
    struct vub_error err;              /* the queue's last failure */
    char why[192];                     /* ... formatted */
};

struct vub_client {
    int sock;                  /* the vhost-user connection */
    struct vub_client_opts opts; /* as given; socket_path points at path (NULL: connect_fd) */
    char path[108];            /* the socket path, for vub_client_reconnect() */
    int backend_fd;            /* our end of the back-end's request channel; -1 if none */
    int timeout_ms;
    bool broken;               /* the control channel is out of step: send nothing more */
    struct vub_client_info info;
    int memfd;                 /* the shared memory */
    uint8_t *mem;
    size_t mem_bytes;
    uint8_t *pool;             /* the vub_client_alloc() pool, inside mem */
    size_t pool_pages;
    uint32_t *page_run;        /* [pool_pages]: pages of the allocation starting here, 0 = none */
    atomic_flag pool_lock;
    struct vub_client_queue *queues; /* [info.num_queues] */
    struct vub_error err;      /* the last control-plane failure */
    char why[256];             /* ... formatted */
};

/* Records a control-plane failure of cl and returns its class. */
static enum vub_err vub_client_fail(struct vub_client *cl, enum vub_reason reason, uint64_t a, uint64_t b)
{
    enum vub_err err = vub_fail(&cl->err, reason, a, b);
    vub_error_format(&cl->err, NULL, cl->why, sizeof cl->why);
    return err;
}

/* The same for one queue. */
static enum vub_err vub_client_queue_fail(struct vub_client_queue *q, enum vub_reason reason, uint64_t a,
                                          uint64_t b)
{
    enum vub_err err = vub_fail(&q->err, reason, a, b);
    vub_error_format(&q->err, NULL, q->why, sizeof q->why);
    return err;
}

/* ---- The control channel ---- */

/* Receives the reply to `request` of `size` payload bytes, checked and
 * timed as the format notes say ([VU-REPLY-CHECK], [VU-REPLY-TIMEOUT]). */
static enum vub_err vub_client_recv_reply(struct vub_client *cl, uint32_t request, struct vub_msg *m,
                                          uint32_t size)
{
    struct pollfd p = {.fd = cl->sock, .events = POLLIN};
    int rc = vub_sys_poll(&p, 1, vub_sys_now_ms() + cl->timeout_ms);
    if (rc <= 0)
        return rc == 0 ? vub_client_fail(cl, VUB_R_VU_REPLY_TIMEOUT, request, (uint64_t)cl->timeout_ms)
                       : vub_client_fail(cl, VUB_R_SYS_CALL, 0, (uint64_t)errno);
    enum vub_err err = vub_vu_recv(cl->sock, m, &cl->err);
    if (err != VUB_OK) {
        vub_error_format(&cl->err, NULL, cl->why, sizeof cl->why);
        return err;
    }
    bool ok = m->fd_count == 0 && m->hdr.request == request && m->hdr.flags == VHOST_USER_REPLY_FLAGS &&
              m->hdr.size == size;
    vub_msg_close_fds(m);
    if (!ok)
        return vub_client_fail(cl, VUB_R_VU_REPLY_CHECK, request,
                               (uint64_t)m->hdr.request << 32 | m->hdr.flags);
    return VUB_OK;
}

/* Sends a request and takes its answer: the reply of exactly reply_size
 * bytes it has, or, with reply NULL, [VU-NEED-REPLY] the u64 ack if
 * REPLY_ACK is negotiated (nothing if not). A failure breaks the channel:
 * nothing more is sent on it. */
static enum vub_err vub_client_call(struct vub_client *cl, uint32_t request, const void *payload,
                                    uint32_t size, const int *fds, unsigned nfds, struct vub_msg *reply,
                                    uint32_t reply_size)
{
    bool ack = !reply && vub_has(cl->info.protocol_features, VHOST_USER_PROTOCOL_F_REPLY_ACK);
    struct vub_vu_header hdr = {request, VHOST_USER_VERSION | (ack ? VHOST_USER_NEED_REPLY_MASK : 0), size};
    struct vub_msg m;
    if (cl->broken)
        return VUB_E_PROTO;
    enum vub_err err = vub_vu_send(cl->sock, &hdr, payload, fds, nfds);
    if (err != VUB_OK)
        vub_client_fail(cl, err == VUB_E_CLOSED ? VUB_R_VU_CLOSED : VUB_R_SYS_CALL, request, (uint64_t)errno);
    if (err == VUB_OK && reply)
        err = vub_client_recv_reply(cl, request, reply, reply_size);
    if (err == VUB_OK && ack)
        err = vub_client_recv_reply(cl, request, &m, sizeof m.payload.u64);
    if (err == VUB_OK && ack && m.payload.u64 != 0)
        err = vub_client_fail(cl, VUB_R_VU_NEED_REPLY, request, m.payload.u64);
    cl->broken = err != VUB_OK;
    return err;
}

/* Sends a message that has no reply of its own. */
static enum vub_err vub_client_send(struct vub_client *cl, uint32_t request, const void *payload,
                                    uint32_t size, const int *fds, unsigned nfds)
{
    return vub_client_call(cl, request, payload, size, fds, nfds, NULL, 0);
}

static enum vub_err vub_client_get_u64(struct vub_client *cl, uint32_t request, uint64_t *out)
{
    struct vub_msg m;
    enum vub_err err = vub_client_call(cl, request, NULL, 0, NULL, 0, &m, sizeof m.payload.u64);
    if (err == VUB_OK)
        *out = m.payload.u64;
    return err;
}

static enum vub_err vub_client_send_u64(struct vub_client *cl, uint32_t request, uint64_t v,
                                        const int *fds, unsigned nfds)
{
    return vub_client_send(cl, request, &v, sizeof v, fds, nfds);
}

static enum vub_err vub_client_send_state(struct vub_client *cl, uint32_t request, uint32_t index,
                                          uint32_t num)
{
    struct vub_vu_vring_state s = {.index = index, .num = num};
    return vub_client_send(cl, request, &s, sizeof s, NULL, 0);
}

/* ---- Negotiation ---- */

/* [VU-BACKEND-REQ] a socket pair: one end goes to the back-end with
 * SET_BACKEND_REQ_FD, ours is read by vub_client_handle_backend(). */
static enum vub_err vub_client_backend_channel(struct vub_client *cl)
{
    int sv[2];
    if (!vub_sys_socketpair(sv))
        return vub_client_fail(cl, VUB_R_SYS_CALL, 0, (uint64_t)errno);
    cl->backend_fd = sv[0];
    vub_sys_socket_timeouts(sv[0], cl->timeout_ms);
    enum vub_err err = vub_client_send(cl, VHOST_USER_SET_BACKEND_REQ_FD, NULL, 0, &sv[1], 1);
    vub_sys_close(&sv[1]);
    return err;
}

/* Reads and decodes the config space ("struct virtio_blk_config", every
 * field little-endian). Fields of features not offered get the spec's
 * meaning of "absent". */
static enum vub_err vub_client_read_config(struct vub_client *cl)
{
    struct vub_vu_config req = {.offset = 0, .size = VUB_CLIENT_CONFIG_BYTES, .flags = 0};
    struct vub_msg m;
    uint32_t bytes = 12 + VUB_CLIENT_CONFIG_BYTES;
    enum vub_err err = vub_client_call(cl, VHOST_USER_GET_CONFIG, &req, bytes, NULL, 0, &m, bytes);
    if (err != VUB_OK)
        return err;
    if (m.payload.config.offset != 0 || m.payload.config.size != VUB_CLIENT_CONFIG_BYTES) {
        cl->broken = true;
        return vub_client_fail(cl, VUB_R_VU_ANSWER, VHOST_USER_GET_CONFIG,
                               (uint64_t)m.payload.config.offset << 32 | m.payload.config.size);
    }
    const uint8_t *c = m.payload.config.data;
    uint64_t f = cl->info.features;
    struct vub_client_config *k = &cl->info.config;
    cl->info.config_bytes = VUB_CLIENT_CONFIG_BYTES;
    memset(k, 0, sizeof *k);
    k->capacity_sectors = vub_le64(c);
    k->size_max_bytes = vub_has(f, VIRTIO_BLK_F_SIZE_MAX) ? vub_le32(c + 8) : 0;
    k->seg_max = vub_has(f, VIRTIO_BLK_F_SEG_MAX) ? vub_le32(c + 12) : 0;
    if (vub_has(f, VIRTIO_BLK_F_GEOMETRY)) {
        k->cylinders = vub_le16(c + 16);
        k->heads = c[18];
        k->sectors = c[19];
    }
    k->blk_size_bytes = vub_has(f, VIRTIO_BLK_F_BLK_SIZE) ? vub_le32(c + 20) : VIRTIO_BLK_SECTOR_BYTES;
    if (vub_has(f, VIRTIO_BLK_F_TOPOLOGY)) {
        k->physical_block_exp = c[24];
        k->alignment_offset = c[25];
        k->min_io_size_blocks = vub_le16(c + 26);
        k->opt_io_size_blocks = vub_le32(c + 28);
    }
    /* Without CONFIG_WCE the cache mode is fixed: write-back if FLUSH is
     * there to be used, else write-through ("Device Operation"). */
    k->writeback = vub_has(f, VIRTIO_BLK_F_CONFIG_WCE) ? c[32] : vub_has(f, VIRTIO_BLK_F_FLUSH);
    k->num_queues = vub_has(f, VIRTIO_BLK_F_MQ) ? vub_le16(c + 34) : 1;
    if (vub_has(f, VIRTIO_BLK_F_DISCARD)) {
        k->max_discard_sectors = vub_le32(c + 36);
        k->max_discard_seg = vub_le32(c + 40);
        k->discard_sector_alignment = vub_le32(c + 44);
    }
    if (vub_has(f, VIRTIO_BLK_F_WRITE_ZEROES)) {
        k->max_write_zeroes_sectors = vub_le32(c + 48);
        k->max_write_zeroes_seg = vub_le32(c + 52);
        k->write_zeroes_may_unmap = c[56];
    }
    return VUB_OK;
}

/* [VU-FEATURES] offered vs taken are both kept; we take what we implement
 * and the caller did not switch off. VERSION_1 is required (vub has no
 * legacy layout). Ends with the config space read. */
static enum vub_err vub_client_negotiate(struct vub_client *cl, const struct vub_client_opts *o)
{
    struct vub_client_info *in = &cl->info;
    enum vub_err err = vub_client_get_u64(cl, VHOST_USER_GET_FEATURES, &in->features_offered);
    if (err != VUB_OK)
        return err;
    if (!vub_has(in->features_offered, VIRTIO_F_VERSION_1))
        return vub_client_fail(cl, VUB_R_VU_FEATURES, in->features_offered, 0);
    /* [VQ-RING-CHOICE] auto takes a packed ring when offered, split never does. */
    bool offered = vub_has(in->features_offered, VIRTIO_F_RING_PACKED);
    if (o->ring == VUB_CLIENT_RING_PACKED && !offered)
        return vub_client_fail(cl, VUB_R_VQ_RING_CHOICE, 0, 0);
    in->packed = offered && o->ring != VUB_CLIENT_RING_SPLIT;
    if (vub_has(in->features_offered, VHOST_USER_F_PROTOCOL_FEATURES)) {
        err = vub_client_get_u64(cl, VHOST_USER_GET_PROTOCOL_FEATURES, &in->protocol_features_offered);
        uint64_t take = in->protocol_features_offered & vub_client_wanted_protocol & ~o->protocol_features_off;
        if (err == VUB_OK)
            err = vub_client_send_u64(cl, VHOST_USER_SET_PROTOCOL_FEATURES, take, NULL, 0);
        if (err != VUB_OK)
            return err;
        in->protocol_features = take; /* from now on REPLY_ACK applies, if taken */
    }
    if (vub_has(in->protocol_features, VHOST_USER_PROTOCOL_F_BACKEND_REQ) &&
        (err = vub_client_backend_channel(cl)) != VUB_OK)
        return err;
    /* [VU-CONFIG-REQUIRED] the capacity lives in the config space. */
    if (!vub_has(in->protocol_features, VHOST_USER_PROTOCOL_F_CONFIG))
        return vub_client_fail(cl, VUB_R_VU_CONFIG_REQUIRED, 0, 0);
    in->max_queues = 1;
    if (vub_has(in->protocol_features, VHOST_USER_PROTOCOL_F_MQ)) {
        uint64_t n = 0;
        if ((err = vub_client_get_u64(cl, VHOST_USER_GET_QUEUE_NUM, &n)) != VUB_OK)
            return err;
        if (n == 0 || n > UINT16_MAX) {
            cl->broken = true;
            return vub_client_fail(cl, VUB_R_VU_ANSWER, VHOST_USER_GET_QUEUE_NUM, n);
        }
        in->max_queues = (unsigned)n;
    }
    if (vub_has(in->protocol_features, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
        if ((err = vub_client_get_u64(cl, VHOST_USER_GET_MAX_MEM_SLOTS, &in->max_mem_slots)) != VUB_OK)
            return err;
        if (in->max_mem_slots == 0) {
            cl->broken = true;
            return vub_client_fail(cl, VUB_R_VU_ANSWER, VHOST_USER_GET_MAX_MEM_SLOTS, 0);
        }
    }
    if ((err = vub_client_send(cl, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0)) != VUB_OK)
        return err;
    uint64_t wanted = vub_client_wanted_features | (in->packed ? VUB_BIT(VIRTIO_F_RING_PACKED) : 0);
    in->features = (in->features_offered & wanted & ~o->features_off) | VUB_BIT(VIRTIO_F_VERSION_1);
    in->packed = vub_has(in->features, VIRTIO_F_RING_PACKED);
    if ((err = vub_client_send_u64(cl, VHOST_USER_SET_FEATURES, in->features, NULL, 0)) != VUB_OK)
        return err;
    return vub_client_read_config(cl);
}

/* ---- Shared memory ---- */

static size_t vub_client_align(size_t v, size_t a) { return (v + a - 1) / a * a; }

/* Where each part of a queue block lies, in bytes from the block's start. */
struct vub_client_layout {
    size_t avail, used, slots, indirect, block;
};

/* Entries in each queue's indirect tables; 0 without INDIRECT_DESC. */
static uint16_t vub_client_indirect_max(const struct vub_client_info *in)
{
    return vub_has(in->features, VIRTIO_F_INDIRECT_DESC) ? (uint16_t)(in->max_segments + 2) : 0;
}

/* Split: descriptor table, available ring, used ring. Packed: descriptor
 * ring, then the driver and device event areas in the avail/used places. */
static struct vub_client_layout vub_client_layout(const struct vub_client_info *in)
{
    struct vub_client_layout l;
    uint16_t size = in->queue_size, indirect_max = vub_client_indirect_max(in);
    uint64_t avail_bytes = in->packed ? vub_packed_event_bytes() : vub_split_avail_bytes(size);
    uint64_t used_bytes = in->packed ? vub_packed_event_bytes() : vub_split_used_bytes(size);
    l.avail = (size_t)vub_split_desc_bytes(size);                  /* desc at 0, align 16 */
    l.used = vub_client_align(l.avail + (size_t)avail_bytes, 64);
    l.slots = vub_client_align(l.used + (size_t)used_bytes, 64);
    l.indirect = l.slots + (size_t)size * VUB_CLIENT_SLOT_BYTES;
    l.block = vub_client_align(l.indirect + (size_t)size * indirect_max * VIRTQ_DESC_BYTES,
                               VUB_CLIENT_PAGE_BYTES);
    return l;
}

/* Sets up the driver side of queue q's ring over its block, whose ring
 * areas are zeroed first (a reconnect reuses them): every descriptor
 * free, every index 0. */
static void vub_client_ring_init(struct vub_client *cl, struct vub_client_queue *q)
{
    const struct vub_client_info *in = &cl->info;
    struct vub_client_layout l = vub_client_layout(in);
    uint8_t *b = q->slots - l.slots;
    memset(b, 0, l.slots); /* descriptors, driver and device areas */
    vub_drv_init(&q->ring, in->packed, in->queue_size, b, b + l.avail, b + l.used, q->free_link,
                 q->ring_slots);
    q->ring.event_idx = vub_has(in->features, VIRTIO_F_EVENT_IDX);
    q->ring.indirect = b + l.indirect;
    q->ring.indirect_addr = VUB_CLIENT_GPA_BASE + (uint64_t)(b - cl->mem) + l.indirect;
    q->ring.indirect_max = vub_client_indirect_max(in);
}

/* Creates and maps the memfd and carves it up. All of it starts zeroed:
 * the rings need flags and indexes 0. */
static enum vub_err vub_client_map(struct vub_client *cl, size_t pool_bytes)
{
    struct vub_client_info *in = &cl->info;
    uint16_t size = in->queue_size;
    struct vub_client_layout l = vub_client_layout(in);
    if (pool_bytes > SIZE_MAX / 4 || in->num_queues > (SIZE_MAX / 4) / l.block)
        return vub_client_fail(cl, VUB_R_SYS_NOMEM, pool_bytes, 0);
    cl->pool_pages = vub_client_align(pool_bytes, VUB_CLIENT_PAGE_BYTES) / VUB_CLIENT_PAGE_BYTES;
    in->buffer_bytes = cl->pool_pages * VUB_CLIENT_PAGE_BYTES;
    cl->mem_bytes = l.block * in->num_queues + in->buffer_bytes;

    cl->mem = vub_sys_memfd(cl->mem_bytes, &cl->memfd);
    if (!cl->mem)
        return vub_client_fail(cl, VUB_R_SYS_NOMEM, cl->mem_bytes, 0);
    cl->pool = cl->mem + l.block * in->num_queues;
    cl->page_run = calloc(cl->pool_pages ? cl->pool_pages : 1, sizeof *cl->page_run);
    if (!cl->page_run)
        return VUB_E_NOMEM;

    for (unsigned i = 0; i < in->num_queues; i++) {
        struct vub_client_queue *q = &cl->queues[i];
        q->slots = cl->mem + l.block * i + l.slots;
        q->slots_addr = VUB_CLIENT_GPA_BASE + (uint64_t)(q->slots - cl->mem);
        /* The host bookkeeping, [size] of each, in one allocation, the
         * most aligned types first; the saved buffer lists in another. */
        q->reqs = calloc(size, sizeof *q->reqs + sizeof *q->ring_slots + 4 * sizeof *q->free_link);
        /* header, data or a discard range, status: at least 3 */
        q->bufs_per_req = (in->max_segments > 1 ? in->max_segments : 1) + 2;
        q->bufs = calloc((size_t)size * q->bufs_per_req, sizeof *q->bufs);
        if (!q->reqs || !q->bufs)
            return VUB_E_NOMEM;
        q->ring_slots = (struct vub_drv_slot *)(void *)(q->reqs + size);
        q->free_link = (uint16_t *)(void *)(q->ring_slots + size);
        q->slot_free = q->free_link + size;
        q->head_slot = q->slot_free + size;
        q->order = q->head_slot + size;
        vub_client_ring_init(cl, q);
        for (uint16_t s = 0; s < size; s++)
            q->slot_free[s] = (uint16_t)(size - 1 - s);
        q->slot_free_count = size;
    }
    return VUB_OK;
}

/* Hands the memfd to the back-end: one region, guest address
 * VUB_CLIENT_GPA_BASE, our mapping as its user address. [VU-MEM-SLOTS]
 * With CONFIGURE_MEM_SLOTS negotiated ADD_MEM_REG is used instead of
 * SET_MEM_TABLE, as QEMU does. */
static enum vub_err vub_client_share(struct vub_client *cl)
{
    struct vub_vu_mem_region r = {
        .guest_addr = VUB_CLIENT_GPA_BASE,
        .size = cl->mem_bytes,
        .user_addr = (uint64_t)(uintptr_t)cl->mem,
        .mmap_offset = 0,
    };
    if (vub_has(cl->info.protocol_features, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
        struct vub_vu_mem_single one = {.padding = 0, .region = r};
        return vub_client_send(cl, VHOST_USER_ADD_MEM_REG, &one, sizeof one, &cl->memfd, 1);
    }
    struct vub_vu_mem_table t = {.nregions = 1, .padding = 0};
    t.regions[0] = r;
    return vub_client_send(cl, VHOST_USER_SET_MEM_TABLE, &t, 8 + sizeof r, &cl->memfd, 1);
}

/* Tells the back-end where queue q is and starts it ("Starting and stopping
 * rings": a ring starts when its kick fd is set). The call fd goes first so
 * the back-end can notify from its first completion. */
static enum vub_err vub_client_start_queue(struct vub_client *cl, struct vub_client_queue *q)
{
    struct vub_vu_vring_addr a = {
        .index = q->index,
        .flags = 0,
        .desc_uaddr = (uint64_t)(uintptr_t)q->ring.desc,
        .used_uaddr = (uint64_t)(uintptr_t)q->ring.device,
        .avail_uaddr = (uint64_t)(uintptr_t)q->ring.driver,
        .log_gpa = 0,
    };
    if (q->kick_fd < 0) /* made once; a reconnect hands the same ones over again */
        q->kick_fd = vub_sys_eventfd();
    if (q->call_fd < 0)
        q->call_fd = vub_sys_eventfd();
    if (q->kick_fd < 0 || q->call_fd < 0)
        return vub_client_fail(cl, VUB_R_SYS_CALL, 0, (uint64_t)errno);
    enum vub_err err = vub_client_send_state(cl, VHOST_USER_SET_VRING_NUM, q->index, cl->info.queue_size);
    if (err == VUB_OK)
        err = vub_client_send_state(cl, VHOST_USER_SET_VRING_BASE, q->index,
                                    q->ring.packed ? 0x80008000u : 0); /* [VU-PACKED-BASE] wraps start at 1 */
    if (err == VUB_OK)
        err = vub_client_send(cl, VHOST_USER_SET_VRING_ADDR, &a, sizeof a, NULL, 0);
    if (err == VUB_OK)
        err = vub_client_send_u64(cl, VHOST_USER_SET_VRING_CALL, q->index, &q->call_fd, 1);
    if (err == VUB_OK)
        err = vub_client_send_u64(cl, VHOST_USER_SET_VRING_KICK, q->index, &q->kick_fd, 1);
    q->started = err == VUB_OK;
    if (err == VUB_OK && vub_has(cl->info.features, VHOST_USER_F_PROTOCOL_FEATURES))
        err = vub_client_send_state(cl, VHOST_USER_SET_VRING_ENABLE, q->index, 1);
    return err;
}

/* Checks the caller's options. */
static enum vub_err vub_client_opts_check(const struct vub_client_opts *o, struct vub_error *e)
{
    if (!o)
        return vub_fail(e, VUB_R_CLIENT_OPTS, 0, 0);
    uint16_t size = o->queue_size ? o->queue_size : VUB_CLIENT_DEFAULT_QUEUE_SIZE;
    bool pow2 = (size & (size - 1)) == 0;
    if (size < 4 || size > VUB_MAX_QUEUE_SIZE || (!pow2 && o->ring != VUB_CLIENT_RING_PACKED))
        return vub_fail(e, VUB_R_CLIENT_OPTS, size, VUB_MAX_QUEUE_SIZE);
    if (o->num_queues > VUB_MAX_QUEUES || o->timeout_ms < 0)
        return vub_fail(e, VUB_R_CLIENT_OPTS, o->num_queues, VUB_MAX_QUEUES);
    return VUB_OK;
}

/* How many data segments one request may have: the back-end's seg_max
 * and size_max rules and our own table size. A ring holds a request's
 * header and status too, so never more than size - 2. */
static unsigned vub_client_max_segments(const struct vub_client_info *in)
{
    unsigned n = in->queue_size - 2u;
    if (in->config.seg_max != 0 && in->config.seg_max < n)
        n = in->config.seg_max;
    return n < VUB_CLIENT_MAX_SEGMENTS ? n : VUB_CLIENT_MAX_SEGMENTS;
}

enum vub_err vub_client_connect_fd(struct vub_client **out, int fd, const struct vub_client_opts *o,
                                   char *why, size_t why_len)
{
    struct vub_error e = {VUB_R_NONE, 0, 0};
    enum vub_err err = vub_client_opts_check(o, &e);
    struct vub_client *cl = NULL;
    if (out)
        *out = NULL;
    if (err == VUB_OK && !out)
        err = VUB_E_INVAL;
    if (err == VUB_OK && !(cl = calloc(1, sizeof *cl)))
        err = vub_fail(&e, VUB_R_SYS_NOMEM, sizeof *cl, 0);
    if (err != VUB_OK) {
        vub_error_format(&e, NULL, why, why_len);
        vub_sys_close(&fd);
        return err;
    }
    cl->sock = fd;
    cl->opts = *o;
    cl->opts.socket_path = NULL; /* vub_client_connect() sets it: only it has a path */
    cl->memfd = cl->backend_fd = -1;
    cl->timeout_ms = o->timeout_ms ? o->timeout_ms : VUB_CLIENT_DEFAULT_TIMEOUT_MS;
    atomic_flag_clear(&cl->pool_lock);
    vub_sys_socket_timeouts(fd, cl->timeout_ms);

    struct vub_client_info *in = &cl->info;
    unsigned want = o->num_queues ? o->num_queues : 1;
    in->queue_size = o->queue_size ? o->queue_size : VUB_CLIENT_DEFAULT_QUEUE_SIZE;
    err = vub_client_negotiate(cl, o);
    /* [BLK-MQ] without VIRTIO_BLK_F_MQ the device has one queue. */
    unsigned have = VUB_MIN(in->config.num_queues, in->max_queues);
    if (err == VUB_OK && want > have)
        err = vub_client_fail(cl, VUB_R_BLK_MQ, want, have);
    if (err == VUB_OK) {
        in->num_queues = want;
        in->max_segments = vub_client_max_segments(in);
        cl->queues = calloc(want, sizeof *cl->queues);
        if (!cl->queues)
            err = VUB_E_NOMEM;
        for (unsigned i = 0; cl->queues && i < want; i++) {
            cl->queues[i] = (struct vub_client_queue){.cl = cl, .index = i, .kick_fd = -1, .call_fd = -1,
                                                      .max_segments = in->max_segments,
                                                      .size_max_bytes = in->config.size_max_bytes};
        }
    }
    if (err == VUB_OK)
        err = vub_client_map(cl, o->buffer_bytes ? o->buffer_bytes : VUB_CLIENT_DEFAULT_BUFFER_BYTES);
    if (err == VUB_OK)
        err = vub_client_share(cl);
    for (unsigned i = 0; err == VUB_OK && i < want; i++)
        err = vub_client_start_queue(cl, &cl->queues[i]);
    if (err != VUB_OK) {
        snprintf(why ? why : (char[1]){0}, why ? why_len : 1, "%s", cl->why[0] ? cl->why : vub_strerror(err));
        cl->broken = true; /* nothing more on the wire: close without GET_VRING_BASE */
        vub_client_close(cl);
        return err;
    }
    *out = cl;
    return VUB_OK;
}

enum vub_err vub_client_connect(struct vub_client **out, const struct vub_client_opts *o, char *why,
                                size_t why_len)
{
    struct vub_error e = {VUB_R_NONE, 0, 0};
    int fd = o && o->socket_path ? vub_sys_connect(o->socket_path) : -1;
    if (fd < 0) {
        vub_fail(&e, VUB_R_SYS_CALL, 0, o && o->socket_path ? (uint64_t)errno : EINVAL);
        vub_error_format(&e, o && o->socket_path ? o->socket_path : "socket path", why, why_len);
        return o && o->socket_path ? VUB_E_IO : VUB_E_INVAL;
    }
    enum vub_err err = vub_client_connect_fd(out, fd, o, why, why_len);
    if (err == VUB_OK) { /* vub_sys_connect() took it: it fits */
        memcpy((*out)->path, o->socket_path, strlen(o->socket_path) + 1);
        (*out)->opts.socket_path = (*out)->path;
    }
    return err;
}

/* Stops a queue politely: disable, then GET_VRING_BASE, after which the
 * back-end has finished with the ring ("Ring states": stopped). */
static enum vub_err vub_client_stop_queue(struct vub_client *cl, struct vub_client_queue *q)
{
    struct vub_vu_vring_state s = {.index = q->index, .num = 0};
    struct vub_msg m;
    enum vub_err err = VUB_OK;
    if (vub_has(cl->info.features, VHOST_USER_F_PROTOCOL_FEATURES))
        err = vub_client_send_state(cl, VHOST_USER_SET_VRING_ENABLE, q->index, 0);
    if (err == VUB_OK)
        err = vub_client_call(cl, VHOST_USER_GET_VRING_BASE, &s, sizeof s, NULL, 0, &m,
                              sizeof m.payload.state);
    if (err == VUB_OK && m.payload.state.index != q->index) {
        cl->broken = true;
        err = vub_client_fail(cl, VUB_R_VU_ANSWER, VHOST_USER_GET_VRING_BASE, m.payload.state.index);
    }
    q->started = false;
    return err;
}

void vub_client_close(struct vub_client *cl)
{
    if (!cl)
        return;
    for (unsigned i = 0; cl->queues && i < cl->info.num_queues; i++)
        if (cl->queues[i].started && !cl->broken)
            vub_client_stop_queue(cl, &cl->queues[i]);
    vub_sys_close(&cl->sock);
    vub_sys_close(&cl->backend_fd);
    for (unsigned i = 0; cl->queues && i < cl->info.num_queues; i++) {
        struct vub_client_queue *q = &cl->queues[i];
        vub_sys_close(&q->kick_fd);
        vub_sys_close(&q->call_fd);
        free(q->reqs); /* and the other host arrays with it */
        free(q->bufs);
    }
    free(cl->queues);
    vub_sys_unmap(cl->mem, cl->mem_bytes);
    vub_sys_close(&cl->memfd);
    free(cl->page_run);
    free(cl);
}

/* ---- Reconnecting to a restarted back-end ----
 *
 * [CLIENT-RECONNECT] A back-end that died took its ring state with it, and
 * without INFLIGHT_SHMFD (which the client does not take) nothing tells a
 * new one what the old one had read. The client knows better: every
 * request it submitted and has not reaped is still its own. So each ring
 * starts again from a clean state (split indexes 0, packed wrap counters
 * 1, as SET_VRING_BASE says) and those requests are made available again,
 * once each, in the order they were first submitted. A request the old
 * back-end had finished but we had not reaped runs twice, which is safe:
 * its buffers are untouched until reaped, so a write writes the same
 * bytes again and a read reads them again.
 * ---- */

/* Makes queue q's requests in flight available again on its fresh ring,
 * from the host copies made at submit. Each keeps its slot, cookie and
 * buffers; only its head changes. Busy polling, if asked for, stays. */
static enum vub_err vub_client_requeue(struct vub_client *cl, struct vub_client_queue *q)
{
    uint16_t size = cl->info.queue_size, n = 0;
    bool interrupts = q->ring.interrupts;
    for (uint32_t h = 0; h < size; h++)
        if (q->ring.slots[h].in_flight)
            q->order[n++] = q->head_slot[h];
    for (uint16_t i = 1; i < n; i++) { /* insertion sort by seq: once per reconnect */
        uint16_t slot = q->order[i], j = i;
        for (; j > 0 && q->reqs[q->order[j - 1]].seq > q->reqs[slot].seq; j--)
            q->order[j] = q->order[j - 1];
        q->order[j] = slot;
    }
    vub_client_ring_init(cl, q);
    if (!interrupts)
        vub_drv_disable_interrupts(&q->ring);
    q->err = (struct vub_error){VUB_R_NONE, 0, 0};
    q->why[0] = '\0';
    for (uint16_t i = 0; i < n; i++) {
        uint16_t slot = q->order[i], head;
        uint8_t *s = q->slots + (size_t)slot * VUB_CLIENT_SLOT_BYTES;
        memcpy(s, q->reqs[slot].hdr, sizeof q->reqs[slot].hdr);
        s[VUB_CLIENT_SLOT_STATUS] = VUB_BLK_S_NONE;
        /* These requests all fitted this ring at once before, so they fit
         * the empty one again; a failure would be a bug of ours. */
        enum vub_err err = vub_drv_add(&q->ring, q->bufs + (size_t)slot * q->bufs_per_req,
                                       q->reqs[slot].buf_count, &head);
        if (err != VUB_OK)
            return vub_client_queue_fail(q, VUB_R_CLIENT_REQ, slot, 0);
        q->head_slot[head] = slot;
    }
    return VUB_OK;
}

/* One attempt over a connected socket: the same negotiation as at connect,
 * which must end in the same features (the memory layout depends on them),
 * then the same memory, then each queue requeued and started. On failure
 * the info is as before and the requests are still in flight. */
static enum vub_err vub_client_resume(struct vub_client *cl, int fd)
{
    struct vub_client_info *in = &cl->info, old = cl->info;
    cl->sock = fd;
    cl->broken = false;
    cl->err = (struct vub_error){VUB_R_NONE, 0, 0};
    vub_sys_socket_timeouts(fd, cl->timeout_ms);
    enum vub_err err = vub_client_negotiate(cl, &cl->opts);
    if (err == VUB_OK && (in->features != old.features || vub_client_max_segments(in) < old.max_segments ||
                          in->config.num_queues < old.num_queues || in->max_queues < old.num_queues))
        err = vub_client_fail(cl, VUB_R_CLIENT_RECONNECT_CHANGED, in->features, old.features);
    if (err != VUB_OK) {
        *in = old;
        return err;
    }
    err = vub_client_share(cl);
    for (unsigned i = 0; err == VUB_OK && i < in->num_queues; i++) {
        struct vub_client_queue *q = &cl->queues[i];
        err = vub_client_requeue(cl, q);
        if (err == VUB_OK)
            err = vub_client_start_queue(cl, q);
        if (err == VUB_OK && q->ring.in_flight > 0)
            vub_sys_signal(q->kick_fd); /* a kick it may not need; never one missing */
    }
    return err;
}

/* Failures worth another attempt: nobody listening yet, or a back-end that
 * went away again while we talked to it. */
static bool vub_client_retry(enum vub_err err)
{
    return err == VUB_E_AGAIN || err == VUB_E_CLOSED || err == VUB_E_IO || err == VUB_E_TIMEOUT;
}

enum vub_err vub_client_reconnect(struct vub_client *cl, int timeout_ms, char *why, size_t why_len)
{
    enum vub_err err = VUB_E_AGAIN;
    uint64_t last_errno = 0;
    if (!cl)
        return VUB_E_INVAL;
    int64_t deadline = timeout_ms < 0 ? -1 : vub_sys_now_ms() + timeout_ms;
    if (!cl->opts.socket_path)
        err = vub_client_fail(cl, VUB_R_CLIENT_RECONNECT_PATH, (uint64_t)cl->sock, 0);
    while (vub_client_retry(err)) {
        vub_sys_close(&cl->sock);
        vub_sys_close(&cl->backend_fd);
        for (unsigned i = 0; i < cl->info.num_queues; i++)
            cl->queues[i].started = false;
        int fd = vub_sys_connect(cl->opts.socket_path);
        last_errno = fd < 0 ? (uint64_t)errno : 0;
        err = fd < 0 ? VUB_E_AGAIN : vub_client_resume(cl, fd);
        if (!vub_client_retry(err))
            break;
        int64_t now = vub_sys_now_ms();
        if (deadline >= 0 && now >= deadline)
            break;
        vub_sys_poll(NULL, 0, deadline >= 0 && deadline < now + 20 ? deadline : now + 20);
    }
    if (err == VUB_E_AGAIN)
        err = vub_client_fail(cl, VUB_R_CLIENT_RECONNECT_TIMEOUT, (uint64_t)timeout_ms, last_errno);
    if (err != VUB_OK) {
        cl->broken = true; /* nothing more on this socket; another reconnect may follow */
        snprintf(why ? why : (char[1]){0}, why ? why_len : 1, "%s", cl->why[0] ? cl->why : vub_strerror(err));
    }
    return err;
}

int vub_client_backend_fd(const struct vub_client *cl) { return cl->backend_fd; }

/* [VU-CONFIG-CHANGE] CONFIG_CHANGE_MSG: the config space is read again
 * (the capacity is what changes when a disk grows), then answered if the
 * back-end asked, 0 when the new config was read. Other requests are not
 * taken and, if asked, answered with 1. */
enum vub_err vub_client_handle_backend(struct vub_client *cl, bool *config_changed)
{
    struct vub_msg m;
    if (config_changed)
        *config_changed = false;
    if (!cl || cl->backend_fd < 0)
        return VUB_E_INVAL;
    enum vub_err err = vub_vu_recv(cl->backend_fd, &m, &cl->err);
    if (err != VUB_OK) {
        vub_error_format(&cl->err, NULL, cl->why, sizeof cl->why);
        vub_sys_close(&cl->backend_fd);
        return err;
    }
    vub_msg_close_fds(&m);
    uint64_t answer = 1;
    if (m.hdr.request == VHOST_USER_BACKEND_CONFIG_CHANGE_MSG && !(m.hdr.flags & VHOST_USER_REPLY_MASK)) {
        err = vub_client_read_config(cl);
        answer = err != VUB_OK;
        if (config_changed)
            *config_changed = err == VUB_OK;
    } else {
        vub_client_fail(cl, VUB_R_VU_BACKEND_UNKNOWN, m.hdr.request, 0); /* logged; not an error */
    }
    if (m.hdr.flags & VHOST_USER_NEED_REPLY_MASK) {
        struct vub_vu_header h = {m.hdr.request, VHOST_USER_REPLY_FLAGS, sizeof answer};
        enum vub_err sent = vub_vu_send(cl->backend_fd, &h, &answer, NULL, 0);
        if (err == VUB_OK)
            err = sent;
    }
    return err;
}

/* [VU-CONFIG-WRITE] (front-end) The write cache mode is the one field of
 * the virtio-blk config space a driver may write ("writeback", byte 32),
 * and only with VIRTIO_BLK_F_CONFIG_WCE. SET_CONFIG writes that byte
 * alone, as QEMU does (qemu-storage-daemon accepts no other offset or size),
 * and GET_CONFIG then reads back what the device now says. */
enum vub_err vub_client_set_writeback(struct vub_client *cl, bool on)
{
    if (!cl)
        return VUB_E_INVAL;
    if (!vub_has(cl->info.features, VIRTIO_BLK_F_CONFIG_WCE))
        return vub_client_fail(cl, VUB_R_CLIENT_WCE, on, cl->info.config.writeback);
    struct vub_vu_config c = {.offset = 32, .size = 1, .flags = 0};
    c.data[0] = on;
    enum vub_err err = vub_client_send(cl, VHOST_USER_SET_CONFIG, &c, 12 + 1, NULL, 0);
    if (err == VUB_OK)
        err = vub_client_read_config(cl);
    if (err == VUB_OK && cl->info.config.writeback != on)
        err = vub_client_fail(cl, VUB_R_CLIENT_WCE_KEPT, on, cl->info.config.writeback);
    return err;
}

const struct vub_client_info *vub_client_info(const struct vub_client *cl) { return &cl->info; }
const char *vub_client_why(const struct vub_client *cl) { return cl->why; }

struct vub_client_queue *vub_client_queue(struct vub_client *cl, unsigned index)
{
    return cl && index < cl->info.num_queues ? &cl->queues[index] : NULL;
}

/* ---- The buffer pool: first fit over pages, a spin lock around it ---- */

void *vub_client_alloc(struct vub_client *cl, size_t bytes)
{
    size_t pages = vub_client_align(bytes ? bytes : 1, VUB_CLIENT_PAGE_BYTES) / VUB_CLIENT_PAGE_BYTES;
    void *found = NULL;
    if (!cl || bytes > cl->info.buffer_bytes)
        return NULL;
    while (atomic_flag_test_and_set_explicit(&cl->pool_lock, memory_order_acquire))
        ;
    /* Every page the walk lands on is free or starts an allocation, which
     * it then steps over whole. */
    for (size_t start = 0, run = 0; start + pages <= cl->pool_pages;) {
        if (cl->page_run[start + run]) {
            start += run + cl->page_run[start + run];
            run = 0;
        } else if (++run == pages) {
            cl->page_run[start] = (uint32_t)pages;
            found = cl->pool + start * VUB_CLIENT_PAGE_BYTES;
            break;
        }
    }
    atomic_flag_clear_explicit(&cl->pool_lock, memory_order_release);
    return found;
}

void vub_client_free(struct vub_client *cl, void *buf)
{
    if (!cl || !buf)
        return;
    uintptr_t off = (uintptr_t)buf - (uintptr_t)cl->pool;
    if ((uintptr_t)buf < (uintptr_t)cl->pool || off % VUB_CLIENT_PAGE_BYTES != 0 ||
        off / VUB_CLIENT_PAGE_BYTES >= cl->pool_pages)
        return; /* not ours: ignore rather than corrupt the pool */
    size_t page = off / VUB_CLIENT_PAGE_BYTES;
    while (atomic_flag_test_and_set_explicit(&cl->pool_lock, memory_order_acquire))
        ;
    cl->page_run[page] = 0;
    atomic_flag_clear_explicit(&cl->pool_lock, memory_order_release);
}

/* ---- The data path ---- */

/* The guest address of [p, p + len) if it lies in the buffer pool; false
 * otherwise. */
static bool vub_client_buf_addr(const struct vub_client *cl, const void *p, size_t len, uint64_t *addr)
{
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)cl->pool;
    if (a < lo || a - lo > cl->info.buffer_bytes || len > cl->info.buffer_bytes - (a - lo))
        return false;
    *addr = VUB_CLIENT_GPA_BASE + (uint64_t)(a - (uintptr_t)cl->mem);
    return true;
}

/* Fills bufs[] with the data segments of r after checking them: inside our
 * memory, non-empty, within size_max, no more than max_segments. */
static enum vub_err vub_client_data_bufs(struct vub_client_queue *q, const struct vub_client_req *r,
                                         bool device_writes, struct vub_desc *bufs, unsigned *n,
                                         uint64_t *bytes)
{
    if (!r->iov || r->iov_count == 0 || r->iov_count > q->max_segments)
        return vub_client_queue_fail(q, VUB_R_CLIENT_SEGMENTS, q->max_segments, q->size_max_bytes);
    for (unsigned i = 0; i < r->iov_count; i++) {
        uint64_t addr;
        size_t len = r->iov[i].iov_len;
        if (len == 0 || len > UINT32_MAX || !vub_client_buf_addr(q->cl, r->iov[i].iov_base, len, &addr) ||
            (q->size_max_bytes != 0 && len > q->size_max_bytes))
            return vub_client_queue_fail(q, VUB_R_CLIENT_SEGMENTS, q->max_segments, q->size_max_bytes);
        bufs[(*n)++] = (struct vub_desc){addr, (uint32_t)len, device_writes ? VIRTQ_DESC_F_WRITE : 0, 0};
        *bytes += len;
    }
    return VUB_OK;
}

enum vub_err vub_client_submit(struct vub_client_queue *q, const struct vub_client_req *r)
{
    unsigned n = 0;
    uint64_t data_bytes = 0;
    uint32_t type;
    enum vub_err err = VUB_OK;
    if (!q || !r)
        return VUB_E_INVAL;
    if (q->ring.broken)
        return VUB_E_PROTO;
    if (q->slot_free_count == 0)
        return VUB_E_AGAIN;
    uint16_t slot = q->slot_free[q->slot_free_count - 1];
    /* The buffer list is built where vub_client_reconnect() finds it: the
     * free slot's own entries (header, at most max_segments, status). */
    struct vub_desc *bufs = q->bufs + (size_t)slot * q->bufs_per_req;
    uint8_t *s = q->slots + (size_t)slot * VUB_CLIENT_SLOT_BYTES;
    uint64_t s_addr = q->slots_addr + (uint64_t)slot * VUB_CLIENT_SLOT_BYTES;
    uint64_t sector = r->offset / VIRTIO_BLK_SECTOR_BYTES;

    bufs[n++] = (struct vub_desc){s_addr, VIRTIO_BLK_HDR_BYTES, 0, 0};
    switch (r->op) {
    case VUB_CLIENT_READ:
    case VUB_CLIENT_WRITE:
        type = r->op == VUB_CLIENT_READ ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT;
        err = vub_client_data_bufs(q, r, r->op == VUB_CLIENT_READ, bufs, &n, &data_bytes);
        if (err == VUB_OK && (r->offset % VIRTIO_BLK_SECTOR_BYTES != 0 || data_bytes % VIRTIO_BLK_SECTOR_BYTES != 0))
            return vub_client_queue_fail(q, VUB_R_CLIENT_ALIGN, r->offset, data_bytes);
        break;
    case VUB_CLIENT_FLUSH:
        type = VIRTIO_BLK_T_FLUSH;
        sector = 0; /* "sector ... MUST be 0 for FLUSH" (driver) */
        break;
    case VUB_CLIENT_GET_ID:
        type = VIRTIO_BLK_T_GET_ID;
        sector = 0;
        err = vub_client_data_bufs(q, r, true, bufs, &n, &data_bytes);
        if (err == VUB_OK && data_bytes < VIRTIO_BLK_ID_BYTES)
            return vub_client_queue_fail(q, VUB_R_CLIENT_GET_ID, data_bytes, 0);
        break;
    case VUB_CLIENT_DISCARD:
    case VUB_CLIENT_WRITE_ZEROES:
        type = r->op == VUB_CLIENT_DISCARD ? VIRTIO_BLK_T_DISCARD : VIRTIO_BLK_T_WRITE_ZEROES;
        if (r->offset % VIRTIO_BLK_SECTOR_BYTES != 0 || r->length % VIRTIO_BLK_SECTOR_BYTES != 0 ||
            r->length == 0 || r->length / VIRTIO_BLK_SECTOR_BYTES > UINT32_MAX)
            return vub_client_queue_fail(q, VUB_R_CLIENT_ALIGN, r->offset, r->length);
        if (r->unmap && r->op != VUB_CLIENT_WRITE_ZEROES)
            return vub_client_queue_fail(q, VUB_R_CLIENT_REQ, r->op, 0);
        /* One 16-byte range: le64 sector, le32 num_sectors, le32 flags. */
        vub_put_le64(s + VUB_CLIENT_SLOT_RANGE, sector);
        vub_put_le32(s + VUB_CLIENT_SLOT_RANGE + 8, (uint32_t)(r->length / VIRTIO_BLK_SECTOR_BYTES));
        vub_put_le32(s + VUB_CLIENT_SLOT_RANGE + 12, r->unmap ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0);
        bufs[n++] = (struct vub_desc){s_addr + VUB_CLIENT_SLOT_RANGE, VIRTIO_BLK_SEGMENT_BYTES, 0, 0};
        sector = 0; /* the header's sector is unused for these */
        break;
    default:
        return vub_client_queue_fail(q, VUB_R_CLIENT_REQ, r->op, 0);
    }
    if (err != VUB_OK)
        return err;
    vub_put_le32(s, type);
    vub_put_le32(s + 4, 0);
    vub_put_le64(s + 8, sector);
    s[VUB_CLIENT_SLOT_STATUS] = VUB_BLK_S_NONE;
    bufs[n++] = (struct vub_desc){s_addr + VUB_CLIENT_SLOT_STATUS, 1, VIRTQ_DESC_F_WRITE, 0};

    uint16_t head;
    err = vub_drv_add(&q->ring, bufs, n, &head);
    if (err == VUB_E_INVAL)
        return vub_client_queue_fail(q, VUB_R_CLIENT_REQ, r->op, 0);
    if (err != VUB_OK)
        return err;
    q->slot_free_count--;
    q->head_slot[head] = slot;
    q->reqs[slot] = (struct vub_client_request){r->cookie, q->submitted++, {0}, (uint16_t)n};
    memcpy(q->reqs[slot].hdr, s, sizeof q->reqs[slot].hdr); /* what a reconnect resubmits */
    return VUB_OK;
}

/* Several requests, one notification: each is made available as
 * vub_client_submit() does (nothing reaches the back-end's notifier yet),
 * then a single kick covers them all, if the back-end asked for one. */
enum vub_err vub_client_submit_batch(struct vub_client_queue *q, const struct vub_client_req *reqs,
                                     unsigned count, unsigned *submitted)
{
    enum vub_err err = VUB_OK;
    unsigned n = 0;
    if (submitted)
        *submitted = 0;
    if (!q || (!reqs && count > 0))
        return VUB_E_INVAL;
    while (n < count && (err = vub_client_submit(q, &reqs[n])) == VUB_OK)
        n++;
    if (submitted)
        *submitted = n;
    enum vub_err kicked = n > 0 ? vub_client_kick(q) : VUB_OK;
    return err != VUB_OK ? err : kicked;
}

enum vub_err vub_client_kick(struct vub_client_queue *q)
{
    if (q->ring.broken)
        return VUB_E_PROTO;
    if (vub_drv_kick_needed(&q->ring))
        vub_sys_signal(q->kick_fd);
    return VUB_OK;
}

enum vub_err vub_client_reap(struct vub_client_queue *q, struct vub_client_completion *out, unsigned cap,
                             unsigned *count)
{
    enum vub_err err = vub_client_kick(q);
    *count = 0;
    while (err == VUB_OK && *count < cap) {
        uint16_t head;
        uint32_t len;
        err = vub_drv_get_used(&q->ring, &head, &len, &q->err);
        if (err == VUB_E_PROTO)
            vub_error_format(&q->err, NULL, q->why, sizeof q->why);
        if (err != VUB_OK)
            break;
        uint16_t slot = q->head_slot[head];
        const uint8_t *status = q->slots + (size_t)slot * VUB_CLIENT_SLOT_BYTES + VUB_CLIENT_SLOT_STATUS;
        out[(*count)++] = (struct vub_client_completion){q->reqs[slot].cookie, *status, len};
        q->slot_free[q->slot_free_count++] = slot;
    }
    /* Completions already taken are delivered; a broken ring says so on
     * the next call (the ring's broken flag is sticky). */
    return err == VUB_E_AGAIN || (*count > 0 && err == VUB_E_PROTO) ? VUB_OK : err;
}

/* Sleeping on the call eventfd: re-arm notifications, look once more (the
 * back-end may have used an entry before it saw them armed), then poll(). */
static enum vub_err vub_client_wait_notified(struct vub_client_queue *q, int timeout_ms, int64_t deadline)
{
    for (;;) {
        if (vub_drv_enable_interrupts(&q->ring))
            return VUB_OK; /* something to reap (or a broken index: reap says so) */
        if (q->ring.in_flight == 0)
            return vub_client_queue_fail(q, VUB_R_CLIENT_IDLE, 0, 0);
        /* The socket is watched for hang-up only: a back-end that dies
         * would otherwise leave us waiting for the whole timeout. */
        struct pollfd p[2] = {{.fd = q->call_fd, .events = POLLIN}, {.fd = q->cl->sock, .events = 0}};
        int rc = vub_sys_poll(p, 2, deadline);
        if (rc == 0)
            return vub_client_queue_fail(q, VUB_R_CLIENT_WAIT, (uint64_t)timeout_ms, q->ring.in_flight);
        if (rc < 0)
            return vub_client_queue_fail(q, VUB_R_SYS_CALL, 0, (uint64_t)errno);
        if (p[0].revents & POLLIN)
            vub_sys_drain(q->call_fd);
        else if (p[1].revents & (POLLHUP | POLLERR | POLLNVAL))
            return vub_client_queue_fail(q, VUB_R_VU_CLOSED, q->ring.in_flight, 0);
    }
}

/* Busy polling: notifications stay off and the used ring is re-read with
 * no system call; the clock (no system call either, where the C library
 * reads it from the vDSO) is read every spin for the deadline, and the
 * socket is asked about hang-up once a millisecond. */
static enum vub_err vub_client_wait_polled(struct vub_client_queue *q, int timeout_ms, int64_t deadline)
{
    int64_t next_hangup_check = 0;
    for (;;) {
        if (vub_drv_used_ready(&q->ring) || q->ring.broken)
            return VUB_OK;
        if (q->ring.in_flight == 0)
            return vub_client_queue_fail(q, VUB_R_CLIENT_IDLE, 0, 0);
        int64_t now = vub_sys_now_ms();
        if (deadline >= 0 && now >= deadline)
            return vub_client_queue_fail(q, VUB_R_CLIENT_WAIT, (uint64_t)timeout_ms, q->ring.in_flight);
        if (now >= next_hangup_check) {
            struct pollfd p = {.fd = q->cl->sock, .events = 0};
            if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL)))
                return vub_client_queue_fail(q, VUB_R_VU_CLOSED, q->ring.in_flight, 0);
            next_hangup_check = now + 1;
        }
    }
}

/* [CLIENT-WAIT-MODE] The caller's choice of vub_client_set_polling() holds:
 * a polling queue is never re-armed here, so the back-end is not asked for
 * notifications nobody will read. */
enum vub_err vub_client_wait(struct vub_client_queue *q, int timeout_ms)
{
    enum vub_err err = vub_client_kick(q);
    int64_t deadline = timeout_ms < 0 ? -1 : vub_sys_now_ms() + timeout_ms;
    if (err != VUB_OK)
        return err;
    return q->polling ? vub_client_wait_polled(q, timeout_ms, deadline)
                      : vub_client_wait_notified(q, timeout_ms, deadline);
}

int vub_client_queue_fd(const struct vub_client_queue *q) { return q->call_fd; }
unsigned vub_client_in_flight(const struct vub_client_queue *q) { return q->ring.in_flight; }
const char *vub_client_queue_why(const struct vub_client_queue *q) { return q->why; }

void vub_client_set_polling(struct vub_client_queue *q, bool polling)
{
    q->polling = polling;
    if (polling)
        vub_drv_disable_interrupts(&q->ring);
    else
        vub_drv_enable_interrupts(&q->ring);
}

/* ---- One request, waited for ---- */

enum vub_err vub_client_run(struct vub_client_queue *q, const struct vub_client_req *r,
                            struct vub_client_completion *done)
{
    struct vub_client_completion c = {r ? r->cookie : 0, VUB_BLK_S_NONE, 0};
    unsigned got = 0;
    if (done)
        *done = c;
    if (q && q->ring.in_flight != 0)
        return vub_client_queue_fail(q, VUB_R_CLIENT_BUSY, q->ring.in_flight, 0);
    enum vub_err err = vub_client_submit(q, r);
    while (err == VUB_OK && (err = vub_client_reap(q, &c, 1, &got)) == VUB_OK && got == 0)
        err = vub_client_wait(q, q->cl->timeout_ms);
    if (err != VUB_OK)
        return err;
    if (done)
        *done = c;
    return c.status == VUB_BLK_S_OK ? VUB_OK : c.status == VUB_BLK_S_UNSUPP ? VUB_E_UNSUPP : VUB_E_IO;
}
