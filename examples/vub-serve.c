/* vub-serve: export a disk image as a vhost-user-blk device on a unix socket.
 *
 *   vub-serve [--socket PATH] [--read-only] [--queues N] [--serial ID]
 *             [--format raw|qcow2] [--poll-us N] [--snapshot NAME]
 *             [--backing-format raw|qcow2] [--allow-data-file] [--force-share] IMAGE
 *
 * Serves one front-end at a time; after a disconnect it waits for the next,
 * so a VM can restart. SIGINT/SIGTERM exit cleanly and remove the socket.
 * The event loop is plain poll(): vub.c names the fds, this program waits.
 */
#define _GNU_SOURCE
#include "vub.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

/* A front-end that shrinks its memory file under us makes our next access
 * to it raise SIGBUS (see vub_dev_owns_fault in vub.h). The handler jumps
 * back to serve_session(), which ends that session; a SIGBUS anywhere else
 * is a bug and crashes as usual. */
static sigjmp_buf fault_jump;
static struct vub_dev *volatile fault_dev; /* set while a session runs */

static void on_sigbus(int sig, siginfo_t *info, void *context)
{
    (void)context;
    if (fault_dev && vub_dev_owns_fault(fault_dev, info->si_addr))
        siglongjmp(fault_jump, 1);
    signal(sig, SIG_DFL); /* returning re-runs the access: now fatal */
}

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

struct options {
    const char *socket_path;
    const char *image_path;
    const char *serial;
    unsigned queues;
    unsigned poll_us; /* busy-poll this long after the last request before sleeping */
    bool read_only;
    enum vub_format format;
    const char *snapshot;          /* qcow2: serve this internal snapshot */
    enum vub_format backing_format; /* qcow2: for a backing file whose format is not recorded */
    bool allow_data_file;          /* qcow2: follow an external data file the image names */
    bool force_share;              /* read-only: let others write the image meanwhile */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vub-serve [--socket PATH] [--read-only] [--queues N] [--serial ID]\n"
            "                 [--format raw|qcow2] [--poll-us N] [--snapshot NAME]\n"
            "                 [--backing-format raw|qcow2] [--allow-data-file] [--force-share] IMAGE\n"
            "Export IMAGE as a vhost-user-blk device on a unix socket (default vub.sock).\n"
            "  --socket PATH   listen here (a stale socket file is replaced)\n"
            "  --read-only     offer VIRTIO_BLK_F_RO and open the image read-only\n"
            "  --queues N      number of request queues, 1..%d (default 8)\n"
            "  --serial ID     GET_ID answer, up to 20 bytes (default vub)\n"
            "  --format F      image format (default: detected from the file)\n"
            "  --poll-us N     busy-poll the queues for N microseconds after the last\n"
            "                  request before sleeping (default 0: sleep at once)\n"
            "  --force-share   with --read-only: serve an image another process writes\n"
            "The image is locked as QEMU locks images: it is refused while QEMU or\n"
            "qemu-img uses it in a conflicting way, and they refuse it while served.\n"
            "qcow2 images are served read-only (VIRTIO_BLK_F_RO):\n"
            "  --snapshot NAME       serve an internal snapshot (id or name)\n"
            "  --backing-format F    format of a backing file the image does not record\n"
            "  --allow-data-file     follow an external data file named by the image\n",
            VUB_MAX_QUEUES);
}

static int parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){.socket_path = "vub.sock", .serial = "vub", .queues = 8};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--read-only")) {
            o->read_only = true;
        } else if (v && !strcmp(a, "--socket")) {
            o->socket_path = v, i++;
        } else if (v && !strcmp(a, "--serial")) {
            o->serial = v, i++;
        } else if (v && !strcmp(a, "--queues")) {
            char *end;
            unsigned long n = strtoul(v, &end, 10);
            if (*end || n < 1 || n > VUB_MAX_QUEUES) {
                fprintf(stderr, "vub-serve: --queues wants 1..%d, not '%s'\n", VUB_MAX_QUEUES, v);
                return -1;
            }
            o->queues = (unsigned)n, i++;
        } else if (v && !strcmp(a, "--poll-us")) {
            char *end;
            unsigned long n = strtoul(v, &end, 10);
            if (*end || n > 1000000) {
                fprintf(stderr, "vub-serve: --poll-us wants 0..1000000, not '%s'\n", v);
                return -1;
            }
            o->poll_us = (unsigned)n, i++;
        } else if (v && (!strcmp(a, "--format") || !strcmp(a, "--backing-format"))) {
            if (strcmp(v, "raw") && strcmp(v, "qcow2")) {
                fprintf(stderr, "vub-serve: %s wants raw or qcow2, not '%s'\n", a, v);
                return -1;
            }
            enum vub_format f = strcmp(v, "raw") ? VUB_FORMAT_QCOW2 : VUB_FORMAT_RAW;
            if (!strcmp(a, "--format"))
                o->format = f;
            else
                o->backing_format = f;
            i++;
        } else if (v && !strcmp(a, "--snapshot")) {
            o->snapshot = v, i++;
        } else if (!strcmp(a, "--allow-data-file")) {
            o->allow_data_file = true;
        } else if (!strcmp(a, "--force-share")) {
            o->force_share = true;
        } else if (a[0] == '-' || o->image_path) {
            fprintf(stderr, "vub-serve: unexpected argument '%s' (try --help)\n", a);
            return -1;
        } else {
            o->image_path = a;
        }
    }
    if (!o->image_path) {
        fprintf(stderr, "vub-serve: no IMAGE given (try --help)\n");
        return -1;
    }
    if (o->force_share && !o->read_only) {
        fprintf(stderr, "vub-serve: --force-share needs --read-only (a writer never shares)\n");
        return -1;
    }
    return 0;
}

/* True if a server accepts connections on the socket at addr. The probe
 * does not block: a live server whose backlog is full (EAGAIN) is live. */
static bool socket_is_live(const struct sockaddr_un *addr)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return true; /* cannot tell: do not take it over */
    bool live = connect(fd, (const struct sockaddr *)addr, sizeof *addr) == 0 || errno == EAGAIN;
    close(fd);
    return live;
}

/* Binds a listening unix socket. A socket file nobody answers on is stale
 * (its server died) and is replaced; one a live server answers on, and any
 * other kind of file, is left alone. */
static int listen_on(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    struct stat st;
    if (strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "vub-serve: socket path too long (at most %zu bytes): %s\n",
                sizeof addr.sun_path - 1, path);
        return -1;
    }
    strcpy(addr.sun_path, path);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "vub-serve: %s exists and is not a socket; choose another --socket\n", path);
            return -1;
        }
        if (socket_is_live(&addr)) {
            fprintf(stderr, "vub-serve: %s: a server is listening on this socket; stop it or choose "
                            "another --socket\n", path);
            return -1;
        }
        fprintf(stderr, "vub-serve: replacing stale socket %s (nobody listens on it)\n", path);
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1) != 0) {
        fprintf(stderr, "vub-serve: cannot listen on %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void log_features(struct vub_dev *dev)
{
    char virtio[512], protocol[256];
    vub_features_str(vub_dev_features(dev), VUB_FEATURES_VIRTIO, virtio, sizeof virtio);
    vub_features_str(vub_dev_protocol_features(dev), VUB_FEATURES_PROTOCOL, protocol, sizeof protocol);
    fprintf(stderr, "vub-serve: driver started; features: %s; protocol features: %s\n", virtio, protocol);
}

static void log_end(struct vub_dev *dev, enum vub_err err)
{
    struct vub_dev_stats s;
    vub_dev_stats(dev, &s);
    fprintf(stderr,
            "vub-serve: session ended (%s); requests %llu: reads %llu writes %llu flushes %llu "
            "discards %llu write-zeroes %llu get-id %llu errors %llu; notifications %llu; per queue:",
            err == VUB_E_CLOSED ? "front-end disconnected" : vub_dev_why(dev),
            (unsigned long long)s.requests, (unsigned long long)s.reads, (unsigned long long)s.writes,
            (unsigned long long)s.flushes, (unsigned long long)s.discards,
            (unsigned long long)s.write_zeroes, (unsigned long long)s.get_ids,
            (unsigned long long)s.errors, (unsigned long long)s.notifications);
    for (unsigned q = 0; q < VUB_MAX_QUEUES; q++)
        if (s.queue_requests[q])
            fprintf(stderr, " q%u=%llu", q, (unsigned long long)s.queue_requests[q]);
    fprintf(stderr, "\n");
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Spins on the queues until poll_us pass without a request. */
static enum vub_err busy_poll(struct vub_dev *dev, unsigned poll_us)
{
    uint64_t idle_since = now_us();
    while (!stop_requested && now_us() - idle_since < poll_us) {
        uint64_t served = 0;
        enum vub_err err = vub_dev_poll_queues(dev, &served);
        if (err != VUB_OK)
            return err;
        if (served)
            idle_since = now_us();
        struct pollfd sock = {.fd = -1};
        if (vub_dev_pollfds(dev, &sock, 1) == 1 && poll(&sock, 1, 0) > 0)
            return VUB_OK; /* a message is waiting: let the loop handle it */
    }
    return VUB_OK;
}

/* Runs one session until the front-end leaves, breaks the protocol, or a
 * signal asks us to stop. */
static void serve_loop(struct vub_dev *dev, unsigned poll_us)
{
    uint64_t logged = 0; /* features last logged: firmware and OS negotiate in turn */
    uint64_t rejected = 0, dropped = 0;
    enum vub_err err = VUB_OK;
    while (!stop_requested && err == VUB_OK) {
        struct pollfd fds[VUB_MAX_POLLFDS];
        size_t n = vub_dev_pollfds(dev, fds, VUB_MAX_POLLFDS);
        if (poll(fds, n, vub_dev_polling(dev) ? 1 : -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        err = vub_dev_dispatch(dev, fds, n);
        if (err == VUB_OK && poll_us)
            err = busy_poll(dev, poll_us);
        struct vub_dev_stats s;
        vub_dev_stats(dev, &s);
        if (s.rejected_messages != rejected) {
            rejected = s.rejected_messages;
            fprintf(stderr, "vub-serve: rejected a message: %s\n", vub_dev_why(dev));
        }
        if (s.dropped_fds != dropped) {
            dropped = s.dropped_fds;
            fprintf(stderr, "vub-serve: %s\n", vub_dev_why(dev));
        }
        if (vub_dev_queues_started(dev) > 0 && vub_dev_features(dev) != logged) {
            log_features(dev);
            logged = vub_dev_features(dev);
        }
    }
    log_end(dev, stop_requested ? VUB_E_CLOSED : err);
}

static void serve_session(struct vub_dev *dev, unsigned poll_us)
{
    if (sigsetjmp(fault_jump, 1) == 0) {
        fault_dev = dev;
        serve_loop(dev, poll_us);
    } else {
        fprintf(stderr, "vub-serve: session ended: guest memory vanished under us (SIGBUS: the front-end "
                        "shrank a shared memory file after SET_MEM_TABLE)\n");
    }
    fault_dev = NULL;
    vub_dev_detach(dev);
}

int main(int argc, char **argv)
{
    struct options o;
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    char why[512];
    struct vub_image *img;
    struct vub_image_opts io = {.read_only = o.read_only, .format = o.format, .snapshot = o.snapshot,
                                .backing_format = o.backing_format, .allow_data_file = o.allow_data_file,
                                .force_share = o.force_share};
    enum vub_err err = vub_image_open(&img, o.image_path, &io, why, sizeof why);
    if (err != VUB_OK) {
        fprintf(stderr, "vub-serve: cannot open image: %s\n", why);
        return 1;
    }
    struct vub_dev_config dc = {.image = img, .num_queues = (uint16_t)o.queues, .read_only = o.read_only};
    strncpy(dc.serial, o.serial, sizeof dc.serial);
    struct vub_dev *dev;
    if (vub_dev_new(&dev, &dc) != VUB_OK) {
        fprintf(stderr, "vub-serve: cannot create the device\n");
        return 1;
    }
    int lfd = listen_on(o.socket_path);
    if (lfd < 0)
        return 1;
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll must wake */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction bus = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO};
    sigaction(SIGBUS, &bus, NULL);
    fprintf(stderr, "vub-serve: serving %s (%llu bytes, %s%s) on %s with %u queues\n", o.image_path,
            (unsigned long long)vub_image_size(img),
            vub_image_format(img) == VUB_FORMAT_QCOW2 ? "qcow2" : "raw",
            o.read_only || vub_image_read_only(img) ? ", read-only" : "", o.socket_path, o.queues);
    while (!stop_requested) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            fprintf(stderr, "vub-serve: accept: %s\n", strerror(errno));
            break;
        }
        fprintf(stderr, "vub-serve: front-end connected\n");
        vub_dev_attach(dev, fd);
        serve_session(dev, o.poll_us);
    }
    close(lfd);
    unlink(o.socket_path);
    vub_dev_free(dev);
    vub_image_close(img);
    fprintf(stderr, "vub-serve: stopped\n");
    return 0;
}
