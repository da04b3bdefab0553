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
 *         poll(pfd, n, -1);
 *         if (vub_dev_dispatch(dev, pfd, n) != VUB_OK) break;  // vub_dev_why()
 *     }
 *
 * Conventions of this API:
 *  - Every function that can fail returns enum vub_err; VUB_OK is 0.
 *  - The library starts no threads, installs no signal handlers and keeps no
 *    global state. One object (device, image) is used by one thread at a time.
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
};

struct vub_image;

/* Opens the image at path. On failure *why holds one line naming the cause.
 * The image owns its file descriptors; vub_image_close() releases them. */
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

/* ==== [HEADER-MARKER: image] ==== */

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

/* True if a queue's kick came with NOFD: nobody will kick it, so the caller
 * must not block in poll() for long (vub_dev_dispatch() polls such queues). */
bool vub_dev_polling(const struct vub_dev *dev);

/* Queues started (kick fd received, not stopped): a session is running. */
unsigned vub_dev_queues_started(const struct vub_dev *dev);

/* One line describing why the last session ended or the last message failed. */
const char *vub_dev_why(const struct vub_dev *dev);

/* Features negotiated in this session (0 before SET_FEATURES). */
uint64_t vub_dev_features(const struct vub_dev *dev);
uint64_t vub_dev_protocol_features(const struct vub_dev *dev);
void vub_dev_stats(const struct vub_dev *dev, struct vub_dev_stats *out);

/* ==== [HEADER-MARKER: front-end] ==== */

#ifdef __cplusplus
}
#endif
#endif /* VUB_H */
