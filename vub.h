/* vub.h - vhost-user-blk in one C file: back-end, front-end, virtqueues, images.
 *
 * Copy vub.c and vub.h into your project and build them with one line:
 *
 *     cc -std=c11 -O2 -c vub.c
 *
 * Serving an image to QEMU (error handling trimmed; examples/vub-serve.c is
 * the full program):
 *
 *     struct vub_image *img;
 *     struct vub_image_opts io = { .read_only = false };
 *     char why[256];
 *     vub_image_open(&img, "disk.img", &io, why, sizeof why);
 *     struct vub_dev_config dc = { .image = img, .num_queues = 1 };
 *     struct vub_dev *dev;
 *     vub_dev_new(&dev, &dc);
 *     vub_dev_attach(dev, accept(listen_fd, NULL, NULL));
 *     for (;;) {                          // your loop: poll() the fds we name
 *         struct pollfd pfd[VUB_MAX_POLLFDS];
 *         size_t n = vub_dev_pollfds(dev, pfd, VUB_MAX_POLLFDS);
 *         poll(pfd, n, vub_dev_polling(dev) ? 1 : -1);  // see vub_dev_polling
 *         if (vub_dev_dispatch(dev, pfd, n) != VUB_OK) break;  // vub_dev_why()
 *     }
 *
 * Doing I/O against any back-end is shown at the front-end section below
 * (vub_client_connect, vub_client_run); examples/vub-io.c is the program.
 *
 * Conventions of this API:
 *  - Every function that can fail returns enum vub_err; VUB_OK is 0.
 *  - The library starts no threads, installs no signal handlers and keeps no
 *    global state (a server for untrusted front-ends installs a SIGBUS
 *    handler of its own: see vub_dev_owns_fault). One object (device, image)
 *    is used by one thread at a time; a client's queues may each have a
 *    thread of their own.
 *  - Objects are allocated once, when created; nothing allocates per request.
 *  - Strings passed in are copied; strings returned live as long as their object.
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
/* A device's poll set: its socket plus one kick fd per queue. */
#define VUB_MAX_POLLFDS (1 + VUB_MAX_QUEUES)

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

/* A constant one-line description of an error code. */
const char *vub_strerror(enum vub_err err);

/* ---- Feature names ----------------------------------------------------------- */

enum vub_feature_kind {
    VUB_FEATURES_VIRTIO,     /* GET/SET_FEATURES: virtio and virtio-blk bits */
    VUB_FEATURES_PROTOCOL,   /* GET/SET_PROTOCOL_FEATURES bits */
};

/* Writes the names of the set bits, space-separated, into buf (always
 * NUL-terminated, truncated to len). Unknown bits print as "bit<N>". */
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
};

struct vub_image;

/* Opens the image at path. On failure *why holds one line naming the cause.
 * The image owns its file descriptors; vub_image_close() releases them.
 * Format AUTO refuses (VUB_E_UNSUPP) a file that starts with another image
 * format's magic (VMDK, VHDX, VDI, QED, VPC, LUKS, qcow version 1); RAW
 * takes any file as it is. Every file opened is locked the way QEMU locks
 * images: VUB_E_BUSY if QEMU, qemu-img, qemu-storage-daemon or another vub
 * holds it in a way that conflicts (a writer excludes everyone but
 * force_share readers; a reader excludes writers). The locks last until
 * vub_image_close(). */
enum vub_err vub_image_open(struct vub_image **out, const char *path,
                            const struct vub_image_opts *opts, char *why, size_t why_len);
void vub_image_close(struct vub_image *img);

uint64_t vub_image_size(const struct vub_image *img);    /* virtual disk bytes */
bool vub_image_read_only(const struct vub_image *img);
enum vub_format vub_image_format(const struct vub_image *img);

/* Reads or writes exactly the bytes the iovecs describe, at byte offset off.
 * The range must lie inside the virtual disk (VUB_E_RANGE otherwise). */
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
    const char *features;            /* the set bits by name, space-separated */
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

/* Fills *out. Never fails for an open image (VUB_E_INVAL for NULLs). */
enum vub_err vub_image_info(const struct vub_image *img, struct vub_image_info *out);

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
 * (for example which L2 entry is corrupt); "" if none, and for raw images. */
const char *vub_image_why(const struct vub_image *img);

/* ---- Back-end: a vhost-user-blk device ------------------------------------- */

struct vub_dev_config {
    struct vub_image *image;  /* the disk; caller-owned, must outlive the device */
    uint16_t num_queues;      /* 1..VUB_MAX_QUEUES; the GET_QUEUE_NUM answer */
    bool read_only;           /* offer VIRTIO_BLK_F_RO; forced on for read-only images */
    char serial[20];          /* GET_ID answer, NUL-padded (need not be terminated) */
    uint64_t features_off;    /* virtio feature bits never to offer (tests, peers) */
};

struct vub_dev_stats {
    uint64_t requests;        /* virtio-blk requests completed */
    uint64_t reads, writes, flushes, discards, write_zeroes, get_ids;
    uint64_t errors;          /* completed with a status other than OK */
    uint64_t notifications;   /* used-buffer notifications sent (call fd writes) */
    uint64_t kicks;           /* available-buffer notifications received */
    uint64_t rejected_messages; /* messages answered with an error, session kept */
    uint64_t dropped_fds;     /* kick/call fds closed after a hang-up or error (vub_dev_why says which) */
    uint64_t queue_requests[VUB_MAX_QUEUES];  /* requests per queue */
};

struct vub_dev;

/* Creates a device with no session. Allocates everything it will need. */
enum vub_err vub_dev_new(struct vub_dev **out, const struct vub_dev_config *cfg);
void vub_dev_free(struct vub_dev *dev);

/* Starts a session on a connected vhost-user socket. The device owns fd from
 * now on and closes it when the session ends. It sets a receive timeout on
 * the socket so a peer that stops in the middle of a message cannot hang it.
 * VUB_E_INVAL if a session is already attached. */
enum vub_err vub_dev_attach(struct vub_dev *dev, int fd);

/* Ends the session: closes the socket, unmaps guest memory, closes every fd
 * received and returns the device to its initial state. Safe to call twice. */
void vub_dev_detach(struct vub_dev *dev);

bool vub_dev_attached(const struct vub_dev *dev);

/* Reads and handles one message from the socket (blocking until it is whole).
 * VUB_E_CLOSED when the peer hung up, VUB_E_PROTO when it broke the protocol
 * (vub_dev_why() says how); either way the caller should vub_dev_detach(). */
enum vub_err vub_dev_handle_msg(struct vub_dev *dev);

/* Processes queue q after its kick fd became readable: drains the kick,
 * completes every available request, notifies the driver once. */
enum vub_err vub_dev_process_queue(struct vub_dev *dev, unsigned q);

/* The caller's event loop in two calls: fill a poll set (the socket first,
 * then the kick fd of every started queue) and hand back what poll() saw. */
size_t vub_dev_pollfds(const struct vub_dev *dev, struct pollfd *fds, size_t cap);
enum vub_err vub_dev_dispatch(struct vub_dev *dev, const struct pollfd *fds, size_t n);

/* Guest memory a front-end shrinks under us. A front-end may ftruncate the
 * file it shared after SET_MEM_TABLE; the next access to a page past the
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

/* Queues started (kick fd received, not stopped): a session is running. */
unsigned vub_dev_queues_started(const struct vub_dev *dev);

/* One line describing why the last session ended or the last message failed. */
const char *vub_dev_why(const struct vub_dev *dev);

/* Features negotiated in this session (0 before SET_FEATURES). */
uint64_t vub_dev_features(const struct vub_dev *dev);
uint64_t vub_dev_protocol_features(const struct vub_dev *dev);
void vub_dev_stats(const struct vub_dev *dev, struct vub_dev_stats *out);

/* ---- Front-end: a vhost-user-blk client ------------------------------------
 *
 * Talks to a vhost-user-blk back-end (tested against vub-serve and
 * qemu-storage-daemon) the way a VMM would, with this process as the
 * "guest": its memory is one memfd shared with the back-end, and I/O
 * buffers are carved out of it, so the back-end reads and writes them in
 * place. Ten lines:
 *
 *     struct vub_client_opts o = { .socket_path = "/tmp/vub.sock" };
 *     struct vub_client *cl;
 *     char why[256];
 *     if (vub_client_connect(&cl, &o, why, sizeof why) != VUB_OK)
 *         errx(1, "%s", why);
 *     struct vub_client_queue *q = vub_client_queue(cl, 0);
 *     struct iovec iov = { vub_client_alloc(cl, 4096), 4096 }; // shared memory
 *     struct vub_client_req r = { .op = VUB_CLIENT_READ, .offset = 0,
 *                                 .iov = &iov, .iov_count = 1 };
 *     struct vub_client_completion c;
 *     if (vub_client_run(q, &r, &c) != VUB_OK)   // or submit, kick, wait, reap
 *         errx(1, "read: status %u", c.status);  // iov now holds sector 0
 *     vub_client_close(cl);
 *
 * Threading: the client object is set up and torn down by one thread.
 * In between, each queue may be driven by its own thread with no lock:
 * queue calls touch only that queue. vub_client_alloc()/vub_client_free()
 * may be called from any thread. Nothing here starts a thread.
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
 * memory and starts every queue. On failure *why holds one line and
 * nothing is left open. VUB_E_UNSUPP when the back-end lacks something
 * needed (VERSION_1, PROTOCOL_F_CONFIG, the ring layout asked for). */
enum vub_err vub_client_connect(struct vub_client **out, const struct vub_client_opts *opts,
                                char *why, size_t why_len);

/* The same over a socket already connected; the client owns fd from now
 * on, also on failure. */
enum vub_err vub_client_connect_fd(struct vub_client **out, int fd, const struct vub_client_opts *opts,
                                   char *why, size_t why_len);

/* Stops the queues (SET_VRING_ENABLE 0, GET_VRING_BASE, which lets the
 * back-end finish what it holds), closes the socket, unmaps and frees
 * everything. Buffers from vub_client_alloc() die with it. NULL is ignored. */
void vub_client_close(struct vub_client *cl);

const struct vub_client_info *vub_client_info(const struct vub_client *cl);
const char *vub_client_why(const struct vub_client *cl); /* the last control-plane failure */

/* Queue 0..info.num_queues-1, or NULL. Lives as long as the client. */
struct vub_client_queue *vub_client_queue(struct vub_client *cl, unsigned index);

/* Page-aligned shared-memory buffers for I/O (zero-copy: the back-end
 * uses them in place). NULL when the pool is exhausted. Thread-safe. */
void *vub_client_alloc(struct vub_client *cl, size_t bytes);
void vub_client_free(struct vub_client *cl, void *buf);

/* ---- Asynchronous I/O on one queue ---- */

/* Makes a request available to the back-end; it is sent at the next
 * vub_client_kick(), vub_client_wait() or vub_client_reap(). VUB_E_AGAIN:
 * the ring is full, reap first. VUB_E_INVAL: a request that can never be
 * sent (misaligned, outside the pool, too many segments). */
enum vub_err vub_client_submit(struct vub_client_queue *q, const struct vub_client_req *req);

/* Notifies the back-end of submitted requests, if it asked to be. */
enum vub_err vub_client_kick(struct vub_client_queue *q);

/* Collects up to cap completions without blocking; *count says how many.
 * Completions come in the back-end's order, not necessarily submission order. */
enum vub_err vub_client_reap(struct vub_client_queue *q, struct vub_client_completion *out,
                             unsigned cap, unsigned *count);

/* Blocks until a completion can be reaped, the back-end hangs up
 * (VUB_E_CLOSED) or timeout_ms passes (VUB_E_TIMEOUT; negative waits
 * forever). VUB_E_INVAL if nothing is in flight. Re-arms notifications. */
enum vub_err vub_client_wait(struct vub_client_queue *q, int timeout_ms);

/* The queue's notification eventfd, for poll/epoll: readable when
 * completions may be ready. Read it (8 bytes) or let vub_client_wait()
 * drain it; vub_client_reap() afterwards. Notifications are hints: some
 * are spurious, and after vub_client_set_polling(q, true) few come. */
int vub_client_queue_fd(const struct vub_client_queue *q);

/* Busy polling: ask the back-end not to notify (a hint it may ignore). */
void vub_client_set_polling(struct vub_client_queue *q, bool polling);

unsigned vub_client_in_flight(const struct vub_client_queue *q);
const char *vub_client_queue_why(const struct vub_client_queue *q);

/* ---- Synchronous conveniences (the queue must have nothing in flight) ---- */

/* Submits one request and waits for it. VUB_OK if the back-end answered
 * VUB_BLK_S_OK; VUB_E_IO for IOERR or any other status, VUB_E_UNSUPP for
 * UNSUPP (done->status has the byte); transport errors as above. */
enum vub_err vub_client_run(struct vub_client_queue *q, const struct vub_client_req *req,
                            struct vub_client_completion *done);

/* Copying reads and writes from any memory, through a per-queue bounce
 * buffer, in as many requests as it takes. *status (if not NULL) gets the
 * status of the last request. */
enum vub_err vub_client_pread(struct vub_client_queue *q, void *buf, size_t len, uint64_t offset,
                              uint8_t *status);
enum vub_err vub_client_pwrite(struct vub_client_queue *q, const void *buf, size_t len,
                               uint64_t offset, uint8_t *status);

/* The disk's serial: GET_ID's 20 bytes, NUL-terminated into id[21]. */
enum vub_err vub_client_get_id(struct vub_client_queue *q, char id[21], uint8_t *status);

/* "OK", "IOERR", "UNSUPP", "NONE" (not written) or "status N". */
const char *vub_client_status_str(uint8_t status, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* VUB_H */
