/* vub.h - vhost-user-blk in one C file: back-end, front-end, virtqueues, images.
 *
 * Copy vub.c and vub.h into your project and build them with one line:
 *
 *     cc -std=c11 -O2 -c vub.c
 *
 * A whole back-end: it serves ./disk.img on ./vub.sock to one front-end
 * (QEMU, vub-io, the client below) and returns when that front-end leaves.
 * Build it with `cc -std=c11 -O2 vub.c server.c -o server`; `make check`
 * builds and runs this very text. examples/hello-server.c does the same for
 * one front-end after another; examples/vub-serve.c is the full program.
 *
 *     #include "vub.h"
 *     #include <poll.h>
 *     #include <stdio.h>
 *     #include <sys/socket.h>
 *     #include <sys/un.h>
 *     #include <unistd.h>
 *
 *     int main(void)
 *     {
 *         struct vub_image *img;
 *         struct vub_image_opts io = {0};
 *         char why[256];
 *         if (vub_image_open(&img, "disk.img", &io, why, sizeof why) != VUB_OK)
 *             return fprintf(stderr, "%s\n", why), 1;
 *         struct vub_dev_config dc = {.image = img, .num_queues = 1};
 *         struct vub_dev *dev;
 *         if (vub_dev_new(&dev, &dc) != VUB_OK)
 *             return 1;
 *         struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "vub.sock"};
 *         int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
 *         unlink(sa.sun_path);
 *         if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 1) ||
 *             vub_dev_attach(dev, accept(lfd, NULL, NULL)) != VUB_OK)
 *             return perror("vub.sock"), 1;
 *         enum vub_err err = VUB_OK;
 *         while (err == VUB_OK) {      // your loop: poll() the fds vub names
 *             struct pollfd pfd[VUB_MAX_POLLFDS];
 *             size_t n = vub_dev_pollfds(dev, pfd, VUB_MAX_POLLFDS);
 *             poll(pfd, n, vub_dev_polling(dev) ? 1 : -1); // see vub_dev_polling
 *             err = vub_dev_dispatch(dev, pfd, n);
 *         }
 *         printf("session over: %s\n", vub_strerror(err));
 *         vub_dev_free(dev);
 *         vub_image_close(img);
 *         return err == VUB_E_CLOSED ? 0 : 1;
 *     }
 *
 * A client that reads from any back-end is at the front-end section below;
 * examples/hello-client.c and examples/vub-io.c are programs.
 *
 * Conventions of this API (a prototype says so where it differs):
 *  - Errors: every function that can fail returns enum vub_err; VUB_OK is 0.
 *    Functions that take `char *why, size_t why_len` write one line naming
 *    the cause there on failure (always NUL-terminated, cut to fit); the
 *    line ends with the requirement tag of the rule that failed, such as
 *    [VU-MSG-SIZE] or [QCOW2-L2-ENTRY] (SPEC-NOTES.md explains each), and
 *    the *_why() strings read the same way.
 *  - Ownership: objects (image, device, client) are created by a *_new,
 *    *_open or *_connect call into a pointer you pass and released by the
 *    matching *_free, *_close; releasing NULL does nothing. Pointers you pass
 *    in are borrowed for the call only, unless the prototype says "keeps".
 *    Strings and structs returned by pointer belong to their object and live
 *    as long as it does (why-strings: until the next failure on it).
 *  - Memory: setup allocates (open, new, connect), and so do a few control
 *    messages that resize what they describe (SET_VRING_NUM sizes a ring's
 *    scratch arrays, its io_uring and request slots and, for an O_DIRECT
 *    image, its bounce buffers, so a front-end that grows a ring
 *    reallocates them); the request paths (I/O, ring processing, reads of
 *    an image) never do.
 *  - Threads: the library starts none, installs no signal handlers and has
 *    no global state (a server for untrusted front-ends installs a SIGBUS
 *    handler of its own: see vub_dev_owns_fault). One object is used by one thread at a time; a device
 *    calls its image from inside vub_dev_dispatch(), so do not use that
 *    image elsewhere meanwhile. A device's queues and a client's queues
 *    may each have a thread (back-end: "One thread per queue" below).
 *  - File descriptors: vub opens them O_CLOEXEC and closes every one it
 *    owns; an fd you hand over (attach, connect_fd) is owned from then on.
 */
#ifndef VUB_H
#define VUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of vub.c and vub.h (every program's --version says it). */
#define VUB_VERSION "0.2.0"

/* ---- Limits (compile-time configuration) ---------------------------------- */

#ifndef VUB_MAX_QUEUES
#define VUB_MAX_QUEUES 64        /* virtqueues one device can expose */
#endif
#ifndef VUB_MAX_MEM_REGIONS
#define VUB_MAX_MEM_REGIONS 32   /* GET_MAX_MEM_SLOTS answer; SET_MEM_TABLE takes 8 */
#endif
#ifndef VUB_MAX_QUEUE_SIZE
#define VUB_MAX_QUEUE_SIZE 32768 /* the largest ring the specs allow */
#endif
/* A device's poll set: its socket, its back-end channel, per queue a kick
 * fd and (io_uring engine) a completion fd. */
#define VUB_MAX_POLLFDS (2 + 2 * VUB_MAX_QUEUES)

/* ---- Errors ---------------------------------------------------------------- */

enum vub_err {
    VUB_OK = 0,
    VUB_E_PROTO,     /* the peer broke the protocol; the session is over */
    VUB_E_CLOSED,    /* the peer closed the connection */
    VUB_E_INVAL,     /* a bad argument from the caller */
    VUB_E_NOMEM,     /* out of memory (only at setup; never per request) */
    VUB_E_IO,        /* an I/O error from the operating system */
    VUB_E_RANGE,     /* an offset or length outside the disk or image */
    VUB_E_RDONLY,    /* a write to something read-only */
    VUB_E_UNSUPP,    /* a feature or request this build does not support */
    VUB_E_CORRUPT,   /* an image whose metadata is inconsistent */
    VUB_E_AGAIN,     /* nothing to do now; try again later */
    VUB_E_TIMEOUT,   /* the peer did not answer in time */
    VUB_E_BUSY,      /* an image another process holds (its locks conflict with ours) */
};

/* A constant one-line description of an error code; never NULL (unknown
 * codes get a generic line). Static storage, any thread. */
const char *vub_strerror(enum vub_err err);

/* The name of a front-end request code as vhost-user.rst spells it after
 * "VHOST_USER_" ("SET_MEM_TABLE"), or "unknown request". Static storage,
 * any thread. */
const char *vub_vu_request_name(uint32_t request);

/* ---- Feature bits -------------------------------------------------------------- */

/* Virtio feature bits, as bit numbers, named as the specs name them with
 * VUB_ in front (VIRTIO "Feature Bits" and "Block Device: Feature bits";
 * PROTOCOL_FEATURES is vhost-user's own). Test a mask such as
 * vub_client_info()->features with (mask >> VUB_VIRTIO_BLK_F_RO) & 1. */
enum vub_virtio_feature_bit {
    VUB_VIRTIO_BLK_F_SIZE_MAX = 1,        /* size_max: largest segment */
    VUB_VIRTIO_BLK_F_SEG_MAX = 2,         /* seg_max: segments per request */
    VUB_VIRTIO_BLK_F_GEOMETRY = 4,
    VUB_VIRTIO_BLK_F_RO = 5,              /* the disk is read-only */
    VUB_VIRTIO_BLK_F_BLK_SIZE = 6,        /* blk_size: logical block */
    VUB_VIRTIO_BLK_F_FLUSH = 9,           /* FLUSH requests */
    VUB_VIRTIO_BLK_F_TOPOLOGY = 10,
    VUB_VIRTIO_BLK_F_CONFIG_WCE = 11,     /* the write cache can be switched (writeback) */
    VUB_VIRTIO_BLK_F_MQ = 12,             /* num_queues */
    VUB_VIRTIO_BLK_F_DISCARD = 13,
    VUB_VIRTIO_BLK_F_WRITE_ZEROES = 14,
    VUB_VIRTIO_F_NOTIFY_ON_EMPTY = 24,
    VUB_VHOST_F_LOG_ALL = 26,
    VUB_VIRTIO_F_INDIRECT_DESC = 28,
    VUB_VIRTIO_F_EVENT_IDX = 29,
    VUB_VHOST_USER_F_PROTOCOL_FEATURES = 30,
    VUB_VIRTIO_F_VERSION_1 = 32,
    VUB_VIRTIO_F_ACCESS_PLATFORM = 33,
    VUB_VIRTIO_F_RING_PACKED = 34,
    VUB_VIRTIO_F_IN_ORDER = 35,
};

/* vhost-user protocol feature bits (GET/SET_PROTOCOL_FEATURES), as bit numbers. */
enum vub_protocol_feature_bit {
    VUB_VHOST_USER_PROTOCOL_F_MQ = 0,
    VUB_VHOST_USER_PROTOCOL_F_LOG_SHMFD = 1,
    VUB_VHOST_USER_PROTOCOL_F_RARP = 2,
    VUB_VHOST_USER_PROTOCOL_F_REPLY_ACK = 3,
    VUB_VHOST_USER_PROTOCOL_F_NET_MTU = 4,
    VUB_VHOST_USER_PROTOCOL_F_BACKEND_REQ = 5,
    VUB_VHOST_USER_PROTOCOL_F_CROSS_ENDIAN = 6,
    VUB_VHOST_USER_PROTOCOL_F_CRYPTO_SESSION = 7,
    VUB_VHOST_USER_PROTOCOL_F_PAGEFAULT = 8,
    VUB_VHOST_USER_PROTOCOL_F_CONFIG = 9,
    VUB_VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD = 10,
    VUB_VHOST_USER_PROTOCOL_F_HOST_NOTIFIER = 11,
    VUB_VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD = 12,
    VUB_VHOST_USER_PROTOCOL_F_RESET_DEVICE = 13,
    VUB_VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS = 14,
    VUB_VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS = 15,
    VUB_VHOST_USER_PROTOCOL_F_STATUS = 16,
    VUB_VHOST_USER_PROTOCOL_F_XEN_MMAP = 17,
    VUB_VHOST_USER_PROTOCOL_F_SHARED_OBJECT = 18,
    VUB_VHOST_USER_PROTOCOL_F_DEVICE_STATE = 19,
};

/* ---- Feature names ----------------------------------------------------------- */

enum vub_feature_kind {
    VUB_FEATURES_VIRTIO,     /* GET/SET_FEATURES: virtio and virtio-blk bits */
    VUB_FEATURES_PROTOCOL,   /* GET/SET_PROTOCOL_FEATURES bits */
};

/* Writes the names of the set bits, space-separated, into buf (always
 * NUL-terminated, truncated to len; nothing is written if len is 0).
 * Unknown bits print as "bit<N>". Touches only buf: any thread. */
void vub_features_str(uint64_t bits, enum vub_feature_kind kind, char *buf, size_t len);

/* ---- Images: raw and qcow2 ------------------------------------------------- */

enum vub_format { VUB_FORMAT_AUTO, VUB_FORMAT_RAW, VUB_FORMAT_QCOW2 };

struct vub_image_opts {
    bool read_only;          /* open O_RDONLY; every write fails with VUB_E_RDONLY */
    enum vub_format format;  /* AUTO: qcow2 if the file starts with its magic */
    /* qcow2 only (qcow2 images are always read-only): */
    bool allow_data_file;    /* follow an external data file the image names */
    const char *snapshot;    /* read this internal snapshot (id or name), not the active layer */
    enum vub_format backing_format; /* format of a backing file the image does not
                                       record; AUTO = refuse such images (never probed) */
    bool force_share;        /* read-only opens: let others write meanwhile (qemu-img -U) */
    bool direct;             /* raw images: open O_DIRECT, bypassing the page cache (QEMU's
                                cache=none); reads and writes then need buffers aligned as
                                the file system says, which a device sees to (SPEC-NOTES.md
                                "Direct I/O"); qcow2 refuses it (VUB_E_UNSUPP) */
};

struct vub_image;

/* Opens the image at path (and, for qcow2, its backing chain and data
 * file) and sets *out. path and opts are copied; opts may be NULL (all
 * defaults). Allocates the image and, for qcow2, its caches, all bounded
 * (SPEC-NOTES.md "Memory per image"). On failure *out is NULL, nothing is
 * left open and *why names the cause: VUB_E_IO (cannot open or read),
 * VUB_E_CORRUPT (inconsistent metadata), VUB_E_UNSUPP (a feature vub does
 * not read, named; also a file that starts with another image format's
 * magic, VMDK, VHDX, VDI, QED, VPC, LUKS or qcow version 1, unless
 * opts->format is RAW), VUB_E_BUSY (QEMU, qemu-img, qemu-storage-daemon
 * or another vub holds a conflicting lock: a writer excludes everyone but
 * force_share readers; a reader excludes writers), VUB_E_INVAL (bad
 * arguments), VUB_E_NOMEM. Every file opened is locked the way QEMU locks
 * images, until vub_image_close(). */
enum vub_err vub_image_open(struct vub_image **out, const char *path,
                            const struct vub_image_opts *opts, char *why, size_t why_len);

/* Closes every file the image opened (backing files too) and frees it.
 * Nothing may use the image afterwards: a device made with it must be
 * freed first. NULL is ignored. */
void vub_image_close(struct vub_image *img);

/* Facts fixed at open (the size changes only by vub_image_refresh_size());
 * they never fail and may be read from any thread. */
uint64_t vub_image_size(const struct vub_image *img);    /* virtual disk bytes */
bool vub_image_read_only(const struct vub_image *img);   /* qcow2 is always read-only */
enum vub_format vub_image_format(const struct vub_image *img); /* RAW or QCOW2 */

/* Re-reads a raw image's size after the file or block device grew.
 * VUB_E_RANGE if it shrank (the old size is kept: a driver may hold data
 * past the new end), VUB_E_UNSUPP for qcow2; *why says which. */
enum vub_err vub_image_refresh_size(struct vub_image *img, char *why, size_t why_len);

/* Reads or writes exactly the bytes the iovecs describe, at byte offset off;
 * a short transfer is finished piece by piece, never reported as success.
 * The range must lie inside the virtual disk (VUB_E_RANGE otherwise).
 * VUB_E_RDONLY for a write to a read-only image, VUB_E_IO from the system,
 * VUB_E_CORRUPT for bad qcow2 metadata met on the way (vub_image_why()).
 * Allocates nothing; the iovecs are only read. One thread at a time for
 * qcow2 (its reads use the image's caches); raw images take concurrent
 * calls. An image opened with `direct` takes only buffers whose addresses
 * and lengths are aligned as its file system asks for O_DIRECT (the kernel
 * refuses others: VUB_E_IO); a device bounces unaligned guest buffers. Flush is fdatasync; discard punches a hole
 * (a file system that cannot is not an error); write-zeroes leaves zeros,
 * deallocating only if may_unmap. */
enum vub_err vub_image_readv(struct vub_image *img, uint64_t off,
                             const struct iovec *iov, int iov_count);
enum vub_err vub_image_writev(struct vub_image *img, uint64_t off,
                              const struct iovec *iov, int iov_count);
enum vub_err vub_image_flush(struct vub_image *img);      /* fdatasync */
enum vub_err vub_image_discard(struct vub_image *img, uint64_t off, uint64_t len);
enum vub_err vub_image_write_zeroes(struct vub_image *img, uint64_t off, uint64_t len,
                                    bool may_unmap);

/* ---- Images: what is inside, and where the data is ------------------------ */

/* A description of an open image. Filled by vub_image_info(); the strings
 * and the backing pointer belong to the image and live as long as it does. */
struct vub_image_info {
    enum vub_format format;          /* RAW or QCOW2 */
    uint64_t size_bytes;             /* virtual disk bytes (vub_image_size) */
    uint64_t file_bytes;             /* the image file's size when opened */
    /* qcow2 only; zero or NULL for raw images: */
    unsigned version;                /* 2 or 3 */
    unsigned cluster_bits;           /* a cluster is 1 << cluster_bits bytes */
    unsigned refcount_bits;          /* 1 to 64 */
    uint64_t incompatible_features;  /* the header's three feature bitmaps */
    uint64_t compatible_features;
    uint64_t autoclear_features;
    const char *compression;         /* "zlib" or "zstd" */
    bool extended_l2;                /* 32 subclusters per cluster */
    const char *backing_name;        /* backing file name as the image records it */
    const char *backing_path;        /* ... resolved against the image's directory */
    const char *backing_format;      /* "raw" or "qcow2": recorded, or the caller's */
    const struct vub_image *backing; /* the open backing image: walk the chain
                                        with vub_image_info(info.backing) */
    const char *data_file;           /* external data file path, opened */
    uint32_t snapshot_count;         /* internal snapshots: vub_image_snapshot() */
    int32_t snapshot_index;          /* the snapshot being read; -1: active layer */
};

/* Fills the caller's *out. Never fails for an open image (VUB_E_INVAL for
 * NULLs). The strings and `backing` point into the image: valid until
 * vub_image_close(). */
enum vub_err vub_image_info(const struct vub_image *img, struct vub_image_info *out);

/* The image's own name for bit `bit` (0..63) of one of its qcow2 feature
 * bitmaps, kind 0 incompatible, 1 compatible, 2 autoclear (the "Type of
 * feature" of the spec's feature name table): copied into the caller's
 * name[47], NUL-terminated, bytes other than printable ASCII shown as '?'.
 * Returns name, or NULL if the image names no such bit (or is raw). Lets a
 * program name the bits it does not know; nothing else uses the table. */
const char *vub_image_feature_name(const struct vub_image *img, unsigned kind, unsigned bit, char name[47]);

/* One internal snapshot of a qcow2 image (qcow2 "Snapshots"). The id and name
 * are copied NUL-terminated and cut to fit, bytes other than printable ASCII
 * shown as '?'; id_bytes and name_bytes are the recorded lengths, so a
 * caller can tell a cut string from a whole one. */
struct vub_image_snapshot {
    char id[64];
    char name[256];
    uint32_t id_bytes;
    uint32_t name_bytes;
    uint64_t size_bytes;             /* virtual disk bytes of the snapshot */
    uint64_t vm_state_bytes;         /* saved VM state; 0 for a disk-only snapshot */
    uint32_t date_sec;               /* when it was taken, seconds since the Epoch */
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;          /* guest run time when it was taken */
};

/* Reads snapshot `index` (0 .. snapshot_count - 1) from the image's snapshot
 * table. VUB_E_RANGE for a bad index or a raw image, VUB_E_IO on a read
 * error. The table was checked when the image was opened. */
enum vub_err vub_image_snapshot(const struct vub_image *img, uint32_t index,
                                struct vub_image_snapshot *out);

/* Block status: how far the run starting at off goes whose bytes are all
 * known to read as zeros (*zero = true) or may hold data (*zero = false).
 * 0 < *run_bytes <= len. Zero runs come from unallocated or zero clusters
 * (following the backing chain); raw images always answer "data". Lets a
 * copy skip the holes of a sparse disk without reading them. Allocates
 * nothing. VUB_E_RANGE outside the disk, VUB_E_INVAL for len == 0,
 * VUB_E_CORRUPT / VUB_E_IO as vub_image_readv() (vub_image_why() says why). */
enum vub_err vub_image_block_status(struct vub_image *img, uint64_t off, uint64_t len,
                                    uint64_t *run_bytes, bool *zero);

/* True if fd is one of the files the image reads (the same device and
 * inode as the image file, its data file or a file of its backing chain),
 * whatever name it was opened by. Lets a copy refuse to overwrite its own
 * source. */
bool vub_image_uses_file(const struct vub_image *img, int fd);

/* One line naming the cause of the last failed qcow2 read or block status
 * (for example which L2 entry is corrupt); "" if none, and for raw images.
 * The string belongs to the image and changes at its next failure. */
const char *vub_image_why(const struct vub_image *img);

/* ---- Back-end: a vhost-user-blk device ------------------------------------- */

/* How a device carries out reads, writes and flushes. */
enum vub_aio {
    VUB_AIO_SYNC,       /* in the calling thread, one request at a time: the reference */
    VUB_AIO_IO_URING,   /* submitted to an io_uring per queue, completed in any order */
};

/* Does the engine work on this machine? VUB_AIO_SYNC always does; for
 * VUB_AIO_IO_URING a ring is set up and one no-op sent through it. On
 * failure *why (may be NULL) names the cause (a kernel without io_uring,
 * kernel.io_uring_disabled, a seccomp filter). Touches nothing else: any
 * thread. */
bool vub_aio_works(enum vub_aio aio, char *why, size_t why_len);

struct vub_dev_config {
    struct vub_image *image;  /* the disk; kept, not owned: it must outlive the device */
    enum vub_aio aio;         /* VUB_AIO_SYNC (0) by default; see vub_aio_works() */
    uint16_t num_queues;      /* 1..VUB_MAX_QUEUES; the GET_QUEUE_NUM answer */
    bool read_only;           /* offer VIRTIO_BLK_F_RO; forced on for read-only images */
    char serial[20];          /* GET_ID answer, NUL-padded (need not be terminated) */
    uint64_t features_off;    /* virtio feature bits never to offer (tests, peers) */
};

struct vub_dev_stats {
    uint64_t requests;        /* virtio-blk requests completed */
    uint64_t reads, writes, flushes, discards, write_zeroes, get_ids;
    uint64_t bytes_read, bytes_written; /* data moved by reads and writes that succeeded */
    uint64_t errors;          /* completed with a status other than OK */
    uint64_t notifications;   /* used-buffer notifications sent (call fd writes) */
    uint64_t kicks;           /* available-buffer notifications received */
    uint64_t rejected_messages; /* messages answered with an error, session kept */
    uint64_t dropped_fds;     /* kick/call fds closed after a hang-up or error (vub_dev_why says which) */
    uint64_t resubmitted;     /* requests a ring start found in flight in the inflight area and ran again */
    uint64_t bounced;         /* reads and writes that went through a bounce buffer (direct
                                 images, guest buffers not aligned for O_DIRECT) */
    uint64_t completion_passes; /* io_uring: passes that completed requests (each publishes
                                   its used entries once and notifies at most once) */
    uint64_t inline_transfers; /* io_uring: transfers done at once instead, since they cannot
                                  wait for a device (page-cache reads, files in memory) */
    uint64_t queue_requests[VUB_MAX_QUEUES];  /* requests per queue */
};

struct vub_dev;

/* Creates a device with no session and sets *out. cfg is copied (its image
 * pointer is kept). Allocates the device; each ring's scratch arrays are
 * allocated later, when a front-end sets the ring's size. VUB_E_INVAL for a
 * bad config (no image, num_queues outside 1..VUB_MAX_QUEUES), VUB_E_NOMEM. */
enum vub_err vub_dev_new(struct vub_dev **out, const struct vub_dev_config *cfg);

/* Ends any session (as vub_dev_detach()) and frees the device. The image is
 * the caller's and stays open. NULL is ignored. */
void vub_dev_free(struct vub_dev *dev);

/* Starts a session on a connected vhost-user socket, from a freshly reset
 * device. The device owns fd from now on and closes it when the session
 * ends. It sets send and receive timeouts on the socket so a peer that
 * stops in the middle of a message cannot hang it. VUB_E_INVAL if fd < 0
 * (so a failed accept() can be passed straight in) or a session is already
 * attached; fd is then not taken. */
enum vub_err vub_dev_attach(struct vub_dev *dev, int fd);

/* Ends the session: closes the socket, unmaps guest memory, closes every fd
 * received and returns the device to its initial state. Safe to call twice. */
void vub_dev_detach(struct vub_dev *dev);

/* True while a session is attached (between attach and detach). */
bool vub_dev_attached(const struct vub_dev *dev);

/* Reads and handles one message from the socket (blocking until it is whole).
 * VUB_E_CLOSED when the peer hung up, VUB_E_PROTO when it broke the protocol
 * (vub_dev_why() says how); either way the caller should vub_dev_detach(). */
enum vub_err vub_dev_handle_msg(struct vub_dev *dev);

/* Processes queue q after its kick fd became readable: drains the kick,
 * completes available requests (at most a few rings' worth per call, then
 * it re-kicks itself so your loop comes back), notifies once per batch.
 * With VUB_AIO_SYNC requests complete synchronously: the image is read or
 * written inside this call. With VUB_AIO_IO_URING reads, writes and
 * flushes are submitted and complete later, in any order, when
 * vub_dev_dispatch() sees the queue's completion fd readable; each pass
 * publishes its used entries at once and notifies at most once.
 * VUB_E_PROTO if the driver broke a ring rule (the queue stops,
 * vub_dev_why() says which rule); VUB_E_IO if the io_uring failed for
 * good; VUB_E_INVAL for a bad q. */
enum vub_err vub_dev_process_queue(struct vub_dev *dev, unsigned q);

/* The caller's event loop in two calls: fill a poll set (the socket first,
 * the back-end channel while an answer is awaited on it, then the kick fd
 * of every started queue; at most cap entries, returns how many) and hand
 * back what poll() saw. The fds stay the device's: poll them, never close
 * or read them. dispatch handles the socket first, then the queues; it
 * returns what vub_dev_handle_msg() or vub_dev_process_queue() returned,
 * and VUB_OK when nothing was ready. */
size_t vub_dev_pollfds(const struct vub_dev *dev, struct pollfd *fds, size_t cap);
enum vub_err vub_dev_dispatch(struct vub_dev *dev, const struct pollfd *fds, size_t n);

/* Quiesce: waits until no request is in flight on any queue, completing
 * each (used entry pushed, front-end notified) as if it had finished
 * synchronously. vub_dev_handle_msg() does this itself before it handles
 * any message, so no request is ever in flight while a message changes
 * what requests depend on (SET_MEM_TABLE, ADD/REM_MEM_REG, GET_VRING_BASE,
 * RESET_DEVICE, SET_FEATURES, ...), and vub_dev_detach() waits for (and
 * drops) what is in flight before it unmaps guest memory. Call it yourself
 * before reading statistics that must count every request taken. A no-op
 * with VUB_AIO_SYNC. VUB_E_IO if a ring cannot be waited on (that queue is
 * stopped, vub_dev_why() says why). */
enum vub_err vub_dev_quiesce(struct vub_dev *dev);

/* Guest memory a front-end shrinks under us. A front-end may ftruncate the
 * file it shared after SET_MEM_TABLE (or the inflight area it handed back
 * with SET_INFLIGHT_FD); the next access to a page past the
 * new end raises SIGBUS in whatever vub code touches it (ring loads,
 * descriptor and data copies; preadv/pwritev see EFAULT instead). No
 * mapping or size check can prevent that: the file can shrink between any
 * check and the access. vub installs no signal handler (a library must not
 * own process-wide state); a program that serves untrusted front-ends
 * installs one for SIGBUS, and in it asks vub_dev_owns_fault(dev,
 * info->si_addr). True means the fault is the front-end's doing: the
 * handler may siglongjmp() back to the program's loop, which must then call
 * vub_dev_detach() (and nothing else on dev first) to end that session;
 * the device is then ready for the next. False means a real bug: restore
 * the default action and let it crash. Async-signal-safe. vub-serve shows
 * the pattern. */
bool vub_dev_owns_fault(const struct vub_dev *dev, const void *addr);

/* True if a queue's kick came with NOFD, or a queue whose kick fd is a pipe
 * yielded with requests left: nobody will kick it, so the caller must not
 * block in poll() for long (vub_dev_dispatch() runs such queues).
 * Call and err fds may be pipes: a program whose front-end may close one's
 * read end must ignore SIGPIPE (vub-serve does); the write then fails and
 * the fd is dropped (stats.dropped_fds). */
bool vub_dev_polling(const struct vub_dev *dev);

/* Busy polling: serves every started queue once without waiting for a
 * kick; *served (if not NULL) counts the requests completed. A caller that
 * spins on this for a while before blocking in poll() trades a CPU for
 * lower latency. Errors as for vub_dev_process_queue(). */
enum vub_err vub_dev_poll_queues(struct vub_dev *dev, uint64_t *served);

/* ---- One thread per queue ----
 * The library starts no threads, but a program may serve each queue from
 * a thread of its own (vub-serve --threads N does): the calls below touch
 * only the queue they name (its ring, fds, io_uring, counters and bounce
 * buffers) and read what messages set, so threads serving different queues
 * need no lock between them. The rules:
 *  - One thread owns the control side: the socket (vub_dev_control_pollfds
 *    / vub_dev_control_dispatch, or vub_dev_handle_msg), vub_dev_resize,
 *    vub_dev_stats, vub_dev_why, attach and detach.
 *  - Queue q is served by one thread at a time, with the vub_dev_queue_*
 *    calls only.
 *  - [VU-THREADS] Messages change what queues use (memory, ring addresses
 *    and sizes, fds, features), and a message handler may run a queue
 *    itself (SET_VRING_KICK serves what is waiting). So the control thread
 *    quiesces the queue threads around every message it handles and around
 *    detach: it makes them stop at a safe point (between two calls; how is
 *    the program's business: vub-serve parks them on a condition variable
 *    and wakes them with an eventfd), handles the message (which drains
 *    every request in flight before its handler runs, see
 *    vub_dev_quiesce()), and lets them go on, refilling their poll sets:
 *    fds may have changed. The same pause around vub_dev_stats() and
 *    vub_dev_why() gives exact numbers.
 *  - A queue call that fails keeps its reason in the queue; vub_dev_why()
 *    shows it after vub_dev_quiesce() (or any single-thread call such as
 *    vub_dev_dispatch()) has run on the control thread, the queue threads
 *    paused.
 * A SIGBUS from guest memory (see vub_dev_owns_fault) may hit any of these
 * threads; the program's handler must bring that thread back to its loop
 * and the session must end with every queue thread paused. */

/* The control side's poll set: the socket and, while an answer is awaited
 * on it, the back-end channel (at most cap entries; returns how many).
 * vub_dev_control_dispatch() handles what poll() saw there: messages (each
 * drained of in-flight requests first) and the channel's answer; queue fds
 * in the set are ignored. Returns as vub_dev_handle_msg(). */
size_t vub_dev_control_pollfds(const struct vub_dev *dev, struct pollfd *fds, size_t cap);
enum vub_err vub_dev_control_dispatch(struct vub_dev *dev, const struct pollfd *fds, size_t n);

/* Queue q's poll set: its kick fd while started and, with io_uring, its
 * completion fd while requests are in flight (0 to 2 entries; 0 for a bad
 * q). vub_dev_queue_dispatch() handles what poll() saw: completions, the
 * kick, and a run if nobody will kick the queue (vub_dev_queue_unkicked).
 * Other fds in the set are ignored, so one set may hold several queues.
 * Errors as vub_dev_process_queue(). */
size_t vub_dev_queue_pollfds(const struct vub_dev *dev, unsigned q, struct pollfd *fds, size_t cap);
enum vub_err vub_dev_queue_dispatch(struct vub_dev *dev, unsigned q, const struct pollfd *fds, size_t n);

/* vub_dev_polling() for one queue: nobody will kick it, so its thread must
 * not block in poll() for long. */
bool vub_dev_queue_unkicked(const struct vub_dev *dev, unsigned q);

/* Busy polling of one queue: serves what is waiting (and, with io_uring,
 * the completions posted) without a kick or a system call when there is
 * nothing to do; *served (may be NULL) counts requests taken. Errors as
 * vub_dev_process_queue(). */
enum vub_err vub_dev_queue_poll(struct vub_dev *dev, unsigned q, uint64_t *served);

/* [VU-POLL-KICKS] Tells queue q a thread is spinning on it (polling true):
 * from now on a pass that finds the ring empty asks the driver not to kick
 * (VRING_USED_F_NO_NOTIFY, avail_event left behind with EVENT_IDX, or the
 * packed ring's DISABLE), instead of re-arming kicks. Call it with false
 * before sleeping in poll(): kicks are re-armed and the ring checked once
 * more and served, so a request that came just before is not stranded.
 * VUB_E_INVAL for a bad q; otherwise as vub_dev_queue_poll(). */
enum vub_err vub_dev_queue_set_polling(struct vub_dev *dev, unsigned q, bool polling);

/* Live resize: re-reads the image size (vub_image_refresh_size()) and, if
 * it grew, sets the new capacity and tells an attached front-end with
 * CONFIG_CHANGE_MSG on the back-end channel (BACKEND_REQ negotiated);
 * *notified says whether it was told. The answer, when REPLY_ACK asks for
 * one, is read by vub_dev_dispatch() later: never waited for, since the
 * front-end asks GET_CONFIG first. *old_sectors and *new_sectors (each may be
 * NULL) get the capacity before and after. A shrink is refused
 * (VUB_E_RANGE) and the capacity kept; vub_dev_why() says why. */
enum vub_err vub_dev_resize(struct vub_dev *dev, uint64_t *old_sectors, uint64_t *new_sectors, bool *notified);

/* Queues started (kick fd received, not stopped): a session is running. */
unsigned vub_dev_queues_started(const struct vub_dev *dev);

/* One line describing why the last session ended or the last message failed;
 * "" if nothing failed. Belongs to the device; changes at its next failure. */
const char *vub_dev_why(const struct vub_dev *dev);

/* Features negotiated in this session (0 before SET_FEATURES), and the
 * counters since the session began, copied into the caller's *out. */
uint64_t vub_dev_features(const struct vub_dev *dev);
uint64_t vub_dev_protocol_features(const struct vub_dev *dev);
void vub_dev_stats(const struct vub_dev *dev, struct vub_dev_stats *out);

/* ---- Front-end: a vhost-user-blk client ------------------------------------
 *
 * Talks to a vhost-user-blk back-end (tested against vub-serve and
 * qemu-storage-daemon) the way a VMM would, with this process as the
 * "guest": its memory is one memfd shared with the back-end, and I/O
 * buffers are carved out of it, so the back-end reads and writes them in
 * place. A whole program that prints the first 16 bytes of the disk served
 * on ./vub.sock (the back-end at the top of this file, vub-serve or
 * qemu-storage-daemon); `make check` builds and runs it:
 *
 *     #include "vub.h"
 *     #include <stdio.h>
 *
 *     int main(void)
 *     {
 *         struct vub_client_opts o = {.socket_path = "vub.sock"};
 *         struct vub_client *cl;
 *         char why[256];
 *         if (vub_client_connect(&cl, &o, why, sizeof why) != VUB_OK)
 *             return fprintf(stderr, "%s\n", why), 1;
 *         struct vub_client_queue *q = vub_client_queue(cl, 0);
 *         struct iovec iov = {vub_client_alloc(cl, 4096), 4096}; // shared memory
 *         struct vub_client_req r = {.op = VUB_CLIENT_READ, .offset = 0,
 *                                    .iov = &iov, .iov_count = 1};
 *         struct vub_client_completion c;
 *         enum vub_err err = vub_client_run(q, &r, &c); // or submit, kick, wait, reap
 *         for (int i = 0; err == VUB_OK && i < 16; i++)
 *             printf("%02x%s", ((unsigned char *)iov.iov_base)[i], i < 15 ? " " : "\n");
 *         if (err == VUB_E_IO || err == VUB_E_UNSUPP)   // the back-end's status byte
 *             fprintf(stderr, "read: status %u\n", c.status);
 *         else if (err != VUB_OK)                       // no answer: why
 *             fprintf(stderr, "read: %s\n", vub_client_queue_why(q));
 *         vub_client_close(cl);
 *         return err != VUB_OK;
 *     }
 *
 * Threading: the client object is set up and torn down by one thread (the
 * owner), which also makes the control-plane calls (set_writeback,
 * handle_backend). In between, each queue may be driven by its own thread
 * with no lock: queue calls (submit, submit_batch, kick, reap, wait, run,
 * set_polling, in_flight, queue_fd, queue_why) touch only that queue and
 * read nothing the owner's calls change, so the owner may run its calls
 * meanwhile. vub_client_alloc()/vub_client_free() may be called from any
 * thread. Two threads on one queue need a lock of the caller's. Nothing
 * here starts a thread.
 *
 * Errors: every call returns enum vub_err. Anything the back-end does wrong
 * (a malformed or late reply, a used ring entry it had no right to write)
 * ends in VUB_E_PROTO, VUB_E_TIMEOUT or VUB_E_CLOSED and a line from
 * vub_client_why() or vub_client_queue_why(); such a queue stays broken.
 * No back-end behaviour makes the client crash, hang past its timeout, or
 * write outside memory it owns.
 *
 * Not checked on purpose: a request's range against the capacity and
 * writes to a read-only disk. The back-end is the authority on both (the
 * capacity can change under a running client) and answers with
 * VUB_BLK_S_IOERR; this also lets the client probe back-ends.
 * ---- */

/* What a request asks for (virtio-blk request types). */
enum vub_client_op {
    VUB_CLIENT_READ,          /* VIRTIO_BLK_T_IN: disk -> iov */
    VUB_CLIENT_WRITE,         /* VIRTIO_BLK_T_OUT: iov -> disk */
    VUB_CLIENT_FLUSH,         /* VIRTIO_BLK_T_FLUSH: completed writes become durable */
    VUB_CLIENT_DISCARD,       /* VIRTIO_BLK_T_DISCARD of [offset, offset + length) */
    VUB_CLIENT_WRITE_ZEROES,  /* VIRTIO_BLK_T_WRITE_ZEROES of the same; see unmap */
    VUB_CLIENT_GET_ID,        /* VIRTIO_BLK_T_GET_ID: 20-byte serial -> iov */
};

/* The status byte a back-end writes at the end of each request. */
enum {
    VUB_BLK_S_OK = 0,
    VUB_BLK_S_IOERR = 1,
    VUB_BLK_S_UNSUPP = 2,
    VUB_BLK_S_NONE = 0xff,    /* the back-end completed without writing one */
};

enum vub_client_ring {
    VUB_CLIENT_RING_AUTO,     /* packed if the back-end offers it, else split */
    VUB_CLIENT_RING_SPLIT,    /* split, even if packed is offered */
    VUB_CLIENT_RING_PACKED,   /* packed; connect fails with VUB_E_UNSUPP if not offered */
};

struct vub_client_opts {
    const char *socket_path;  /* vub_client_connect(): the back-end's unix socket */
    unsigned num_queues;      /* 0 means 1; at most the back-end's queue count */
    uint16_t queue_size;      /* ring size 4..32768, a power of two unless the ring is
                                 packed; 0 means 128 */
    size_t buffer_bytes;      /* shared memory for vub_client_alloc(); 0 means 4 MiB */
    int timeout_ms;           /* for every reply and every vub_client_run(); 0 means 10 s */
    enum vub_client_ring ring;
    uint64_t features_off;    /* virtio feature bits never to take (VERSION_1 is kept) */
    uint64_t protocol_features_off; /* protocol feature bits never to take */
};

/* The device configuration space (struct virtio_blk_config) as read with
 * GET_CONFIG, decoded. A field is meaningful only if its feature bit was
 * offered; vub_client_connect() fills in the spec's defaults otherwise. */
struct vub_client_config {
    uint64_t capacity_sectors;         /* disk size in 512-byte sectors, always */
    uint32_t size_max_bytes;           /* SIZE_MAX: largest segment; 0 = no limit */
    uint32_t seg_max;                  /* SEG_MAX: data segments per request; 0 = none given */
    uint16_t cylinders;                /* GEOMETRY */
    uint8_t heads, sectors;
    uint32_t blk_size_bytes;           /* BLK_SIZE: logical block; 512 if not offered */
    uint8_t physical_block_exp;        /* TOPOLOGY: physical block = blk_size << exp */
    uint8_t alignment_offset;
    uint16_t min_io_size_blocks;
    uint32_t opt_io_size_blocks;
    uint8_t writeback;                 /* CONFIG_WCE: 1 = write cache on, FLUSH needed */
    uint16_t num_queues;               /* MQ: queues the device has; 1 if not offered */
    uint32_t max_discard_sectors;      /* DISCARD limits */
    uint32_t max_discard_seg;
    uint32_t discard_sector_alignment;
    uint32_t max_write_zeroes_sectors; /* WRITE_ZEROES limits */
    uint32_t max_write_zeroes_seg;
    uint8_t write_zeroes_may_unmap;
};

/* What was negotiated, for display and for callers that adapt to it. */
struct vub_client_info {
    uint64_t features_offered;          /* GET_FEATURES answer */
    uint64_t features;                  /* what SET_FEATURES took */
    uint64_t protocol_features_offered; /* GET_PROTOCOL_FEATURES answer; 0 if none */
    uint64_t protocol_features;         /* what SET_PROTOCOL_FEATURES took */
    unsigned max_queues;                /* GET_QUEUE_NUM answer, or 1 without MQ */
    uint64_t max_mem_slots;             /* GET_MAX_MEM_SLOTS answer; 0 if not asked */
    unsigned num_queues;                /* queues set up */
    uint16_t queue_size;
    bool packed;                        /* the rings are packed (RING_PACKED taken) */
    unsigned max_segments;              /* data segments one request may have */
    uint32_t config_bytes;              /* config bytes GET_CONFIG asked for and got */
    struct vub_client_config config;
    size_t buffer_bytes;                /* size of the vub_client_alloc() pool */
};

/* One request. The iovecs must lie inside buffers from vub_client_alloc()
 * and stay untouched until the request completes. offset and every length
 * are bytes; they must be multiples of 512. */
struct vub_client_req {
    enum vub_client_op op;
    uint64_t offset;           /* READ, WRITE, DISCARD, WRITE_ZEROES */
    uint64_t length;           /* DISCARD, WRITE_ZEROES only (READ/WRITE: the iovecs) */
    const struct iovec *iov;   /* READ, WRITE, GET_ID (at least 20 bytes) */
    unsigned iov_count;        /* 1..info.max_segments */
    bool unmap;                /* WRITE_ZEROES: the back-end may deallocate */
    uint64_t cookie;           /* the caller's; handed back with the completion */
};

struct vub_client_completion {
    uint64_t cookie;           /* as submitted */
    uint8_t status;            /* VUB_BLK_S_*, or whatever other byte the back-end wrote */
    uint32_t used_bytes;       /* the back-end's count of bytes written, status included */
};

struct vub_client;
struct vub_client_queue;

/* Connects to socket_path, negotiates, reads the configuration, shares
 * memory and starts every queue, then sets *out. opts is copied. Allocates
 * the client, its shared-memory pool (a memfd of buffer_bytes plus the
 * rings) and per-queue bookkeeping (with a host copy of each request's
 * buffer list, queue_size x (max_segments + 2) x 16 bytes, from which
 * vub_client_reconnect() resubmits); nothing later allocates. On failure
 * *out is NULL, *why holds one line and nothing is left open:
 * VUB_E_UNSUPP when the back-end lacks something needed (VERSION_1,
 * PROTOCOL_F_CONFIG, the ring layout asked for), VUB_E_INVAL for options
 * the back-end cannot meet (more queues than it has, a bad queue size),
 * VUB_E_PROTO / VUB_E_TIMEOUT / VUB_E_CLOSED when it misbehaves, VUB_E_IO
 * when the socket cannot be reached, VUB_E_NOMEM. */
enum vub_err vub_client_connect(struct vub_client **out, const struct vub_client_opts *opts,
                                char *why, size_t why_len);

/* The same over a socket already connected; the client owns fd from now
 * on, also on failure. */
enum vub_err vub_client_connect_fd(struct vub_client **out, int fd, const struct vub_client_opts *opts,
                                   char *why, size_t why_len);

/* The device's write cache (VIRTIO "Block Device": writeback): on, the
 * back-end may acknowledge a write before it is durable and FLUSH makes it
 * so; off, every write is durable when it completes. Sends SET_CONFIG for
 * the one writable config byte and reads the config space again, so
 * info.config.writeback says what the device now reports. Owner thread;
 * queue threads may go on meanwhile. VUB_E_UNSUPP when the back-end did not
 * offer VIRTIO_BLK_F_CONFIG_WCE (the mode is fixed: info.config.writeback
 * says which) or acknowledged and kept the old value; VUB_E_PROTO /
 * VUB_E_TIMEOUT / VUB_E_CLOSED as for connect (vub_client_why()). */
enum vub_err vub_client_set_writeback(struct vub_client *cl, bool on);

/* Reconnects to a back-end restarted on the socket path connect was given
 * (a client made by vub_client_connect_fd has none: VUB_E_INVAL), after
 * the old one died: a queue call ended in VUB_E_CLOSED or VUB_E_TIMEOUT.
 * Tries every 20 ms until a back-end accepts and the session is set up
 * again, or timeout_ms passes (VUB_E_TIMEOUT; negative: no limit; a
 * back-end that goes away during the attempt is tried again too). The
 * negotiation is repeated and must end in the same features as before
 * (else VUB_E_UNSUPP: the memory layout depends on them); the config is
 * read again; the same memory is shared; each ring starts from a clean
 * state, as the new back-end has none of the old one's; and every request
 * submitted and not yet reaped is made available again, once, in the order
 * it was first submitted, with its cookie. A request the old back-end had
 * completed but that was not reaped runs again (writes write the same
 * bytes: the buffers are untouched until reaped). INFLIGHT_SHMFD is not
 * used. Buffers from vub_client_alloc() stay valid. Call it from the
 * thread that owns the client while no other thread uses its queues, and
 * only once the old back-end is gone (one still running could write to
 * the shared memory). Allocates nothing. On failure *why holds one line,
 * the requests are still in flight and another call may try again;
 * vub_client_close() always works. */
enum vub_err vub_client_reconnect(struct vub_client *cl, int timeout_ms, char *why, size_t why_len);

/* Stops the queues (SET_VRING_ENABLE 0, GET_VRING_BASE, which lets the
 * back-end finish what it holds), closes the socket, unmaps and frees
 * everything. Buffers from vub_client_alloc() die with it. NULL is ignored. */
void vub_client_close(struct vub_client *cl);

/* The back-end's request channel (BACKEND_REQ), for poll: readable when the
 * back-end sent a request; -1 if the back-end did not take one. Then call
 * vub_client_handle_backend() from the thread that owns the client: for
 * CONFIG_CHANGE_MSG it reads the config space again (a disk that grew has
 * a new info.config.capacity_sectors; *config_changed is set) and answers.
 * A closed or broken channel is closed and reported; the queues go on. */
int vub_client_backend_fd(const struct vub_client *cl);
enum vub_err vub_client_handle_backend(struct vub_client *cl, bool *config_changed);

/* What was negotiated; points into the client, valid until vub_client_close(). */
const struct vub_client_info *vub_client_info(const struct vub_client *cl);

/* One line naming the last control-plane failure, "" if none; belongs to
 * the client. */
const char *vub_client_why(const struct vub_client *cl);

/* Queue 0..info.num_queues-1, or NULL. Lives as long as the client. */
struct vub_client_queue *vub_client_queue(struct vub_client *cl, unsigned index);

/* Page-aligned shared-memory buffers for I/O (zero-copy: the back-end
 * uses them in place), carved from the pool made at connect: no system
 * allocation. NULL when the pool has no run of free pages that large.
 * A buffer lives until vub_client_free() or vub_client_close(); free it
 * only when no request in flight names it (free of NULL or of a pointer
 * not from alloc is ignored). Thread-safe: a spin lock guards the pool. */
void *vub_client_alloc(struct vub_client *cl, size_t bytes);
void vub_client_free(struct vub_client *cl, void *buf);

/* ---- Asynchronous I/O on one queue ---- */

/* Makes a request available to the back-end; it is sent at the next
 * vub_client_kick(), vub_client_wait() or vub_client_reap(). VUB_E_AGAIN:
 * the ring is full, reap first. VUB_E_INVAL: a request that can never be
 * sent (misaligned, outside the pool, too many segments). VUB_E_PROTO: the
 * queue is broken (vub_client_queue_why()). The request struct is copied;
 * the buffers its iovecs name are the back-end's to use until reaped. */
enum vub_err vub_client_submit(struct vub_client_queue *q, const struct vub_client_req *req);

/* Submits reqs[0..count-1] in order, then kicks once: the whole batch costs
 * at most one notification (an eventfd write) however large it is. Stops
 * at the first request that fails and returns its error (VUB_E_AGAIN:
 * the ring is full); the ones before it are submitted and kicked all the
 * same. *submitted (may be NULL) says how many went in. The array is only
 * read; as for vub_client_submit(), the buffers are the back-end's until
 * reaped. */
enum vub_err vub_client_submit_batch(struct vub_client_queue *q, const struct vub_client_req *reqs,
                                     unsigned count, unsigned *submitted);

/* Notifies the back-end of submitted requests, if it asked to be (event
 * suppression decides; a kick nobody asked for is skipped, and so is one
 * with nothing new since the last). Submitting several and kicking once
 * is how a batch shares one notification. VUB_E_PROTO on a broken ring. */
enum vub_err vub_client_kick(struct vub_client_queue *q);

/* Collects up to cap completions into the caller's out[] without blocking;
 * *count says how many (0 is not an error). Completions come in the
 * back-end's order, not necessarily submission order. VUB_E_PROTO once the
 * back-end wrote a used entry it had no right to (vub_client_queue_why());
 * completions taken before that are still delivered, and the queue stays
 * broken: every later call fails the same way. */
enum vub_err vub_client_reap(struct vub_client_queue *q, struct vub_client_completion *out,
                             unsigned cap, unsigned *count);

/* Kicks, then waits until a completion can be reaped, the back-end hangs
 * up (VUB_E_CLOSED) or timeout_ms passes (VUB_E_TIMEOUT; negative waits
 * forever). VUB_E_INVAL if nothing is in flight. It waits the way the
 * caller chose with vub_client_set_polling(): by default it re-arms
 * notifications and sleeps in poll() on the queue's eventfd; on a polling
 * queue it spins on the used ring with notifications left off, using the
 * thread's CPU until something completes. */
enum vub_err vub_client_wait(struct vub_client_queue *q, int timeout_ms);

/* The queue's notification eventfd, for poll/epoll: readable when
 * completions may be ready. Read it (8 bytes) or let vub_client_wait()
 * drain it; vub_client_reap() afterwards. Notifications are hints: some
 * are spurious, and after vub_client_set_polling(q, true) few come. */
int vub_client_queue_fd(const struct vub_client_queue *q);

/* Busy polling on (true) or off (false, the default) for this queue: asks
 * the back-end not to notify (a hint it may ignore) and makes
 * vub_client_wait() spin instead of sleep, until switched off again. */
void vub_client_set_polling(struct vub_client_queue *q, bool polling);

/* Requests submitted and not yet reaped. */
unsigned vub_client_in_flight(const struct vub_client_queue *q);

/* One line naming why the queue broke, "" if it has not; belongs to the queue. */
const char *vub_client_queue_why(const struct vub_client_queue *q);

/* ---- One request, waited for (the queue must have nothing in flight) ---- */

/* Submits one request and waits for it (up to the client's timeout_ms:
 * VUB_E_TIMEOUT). VUB_OK if the back-end answered VUB_BLK_S_OK; VUB_E_IO
 * for IOERR or any other status, VUB_E_UNSUPP for UNSUPP (done->status has
 * the byte); VUB_E_INVAL if requests are already in flight or the request
 * can never be sent (done->status is then VUB_BLK_S_NONE); transport errors
 * as above. done may be NULL. */
enum vub_err vub_client_run(struct vub_client_queue *q, const struct vub_client_req *req,
                            struct vub_client_completion *done);

#ifdef __cplusplus
}
#endif
#endif /* VUB_H */
