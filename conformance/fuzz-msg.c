/* fuzz-msg: the back-end's message reader and dispatcher (vub.c sections 3,
 * 4 and 8) fed a byte stream.
 *
 * Input:
 *     bytes 0..3   fd plan, le32: two bits per message for the first 16
 *                  messages of the stream, saying which descriptors ride
 *                  with that message's first byte:
 *                      0 none, 1 a memfd, 2 an eventfd, 3 two memfds
 *     bytes 4..    the stream, verbatim, as the front-end's socket carries it
 *
 * File descriptors cannot come from raw bytes, so the harness walks the
 * stream by the headers' size fields only to know where message k begins,
 * and sends that part with the planned descriptors (fresh ones each run:
 * memfds of FZ_MEMFD_BYTES zeroed bytes, eventfds at 0). The device sees
 * exactly the input's bytes, whatever the size fields say.
 *
 * The whole stream is written before the device reads any of it, and the
 * write side is then shut down: a message cut short reads EOF at once
 * instead of waiting out the device's 2 s receive timeout. The device then
 * handles messages until one fails or the stream ends; after each one it
 * also serves its started queues (vub_dev_poll_queues, as vub-serve --poll
 * does), so ring state the messages set up is used, not just stored.
 *
 * Checks, besides ASan/UBSan: guest memory is only touched inside regions
 * (fuzz-guard.c); every image transfer lies inside the disk; every queue
 * the device would serve still has a ring that fits guest memory and its
 * own size (fz_check_rings); after detach no mapping is left and the
 * process has exactly the descriptors it had before the run.
 */
#include "fuzz-guard.c"
#include "../vub.c"
#include "fuzz-bench.c"

#define FZ_MEMFD_BYTES (64u * 1024)
#define FZ_PLAN_MESSAGES 16u
#define FZ_MAX_MESSAGES 4096u /* a bound only: every message is at least 12 bytes */

static struct vub_dev *fz_dev;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_dev = fz_dev_new(fz_image_new("fuzz-msg-disk", 64 * 1024, false), 2, false);
    return 0;
}

static int fz_memfd(void)
{
    int fd = memfd_create("fuzz-msg-guest", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, FZ_MEMFD_BYTES) != 0)
        fz_die("memfd: %s", strerror(errno));
    return fd;
}

/* Sends stream bytes [from, to) with the descriptors of plan code `code`. */
static void fz_send_part(int sock, const uint8_t *stream, size_t from, size_t to, unsigned code)
{
    int fds[2] = {-1, -1};
    unsigned nfds = 0;
    if (code == 1 || code == 3)
        fds[nfds++] = fz_memfd();
    if (code == 3)
        fds[nfds++] = fz_memfd();
    if (code == 2 && (fds[nfds++] = eventfd(0, EFD_CLOEXEC)) < 0)
        fz_die("eventfd: %s", strerror(errno));
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof fds)];
    } control;
    size_t sent = from;
    while (sent < to) {
        struct iovec iov = {(void *)(uintptr_t)(stream + sent), to - sent};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (nfds > 0 && sent == from) {
            memset(&control, 0, sizeof control);
            mh.msg_control = control.buf;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
            struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
            memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
        }
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (n <= 0)
            fz_die("sendmsg: %s", strerror(errno));
        sent += (size_t)n;
    }
    for (unsigned i = 0; i < nfds; i++)
        close(fds[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    int fds_before = fz_fd_count();
    uint32_t plan = vub_le32(data);
    const uint8_t *stream = data + 4;
    size_t len = size - 4;

    int sock = fz_attach(fz_dev);
    /* Cut the stream where planned messages begin. */
    size_t at = 0, part = 0;
    unsigned part_code = 0;
    for (unsigned k = 0; k < FZ_PLAN_MESSAGES && at < len; k++) {
        unsigned code = (plan >> (2 * k)) & 3u;
        if (code != 0) {
            fz_send_part(sock, stream, part, at, part_code);
            part = at;
            part_code = code;
        }
        if (len - at < sizeof(struct vub_vu_header))
            break;
        uint32_t body = vub_le32(stream + at + 8);
        if (body > len - at - sizeof(struct vub_vu_header))
            break;
        at += sizeof(struct vub_vu_header) + body;
    }
    fz_send_part(sock, stream, part, len, part_code);
    shutdown(sock, SHUT_WR);

    for (unsigned n = 0; n < FZ_MAX_MESSAGES; n++) {
        enum vub_err err = vub_dev_handle_msg(fz_dev);
        fz_poison_regions(fz_dev);
        fz_drain(sock);
        fz_check_rings(fz_dev);
        if (fz_verbose())
            fprintf(stderr, "fuzz: message %u (%s): %s%s%s\n", fz_dev->msg.hdr.request,
                    vub_vu_request_name(fz_dev->msg.hdr.request), vub_strerror(err), err ? ": " : "",
                    err ? vub_dev_why(fz_dev) : "");
        if (err != VUB_OK) {
            if (err != VUB_E_PROTO && err != VUB_E_CLOSED)
                fz_die("vub_dev_handle_msg returned %s", vub_strerror(err));
            break;
        }
        err = vub_dev_poll_queues(fz_dev, NULL);
        fz_check_queue_err(err, "vub_dev_poll_queues");
        fz_check_rings(fz_dev);
        if (err != VUB_OK)
            break; /* a broken ring ends the session, as in vub-serve */
    }
    fz_detach(fz_dev, sock);
    int fds_after = fz_fd_count();
    if (fds_after != fds_before)
        fz_die("%d file descriptors before the run, %d after", fds_before, fds_after);
    return 0;
}
