/* vub-serve: export disk images as vhost-user-blk devices on unix sockets.
 *
 *   vub-serve [options] IMAGE
 *   vub-serve [options] --export socket=PATH,image=FILE[,read-only=on][,queues=N][,serial=ID] ...
 *
 * Each export is its own device with its own socket, serving one front-end
 * at a time; after a disconnect it waits for the next, so a VM can restart,
 * while the other exports go on. SIGINT/SIGTERM exit cleanly and remove the
 * sockets; SIGUSR1 logs every export's statistics and goes on serving;
 * SIGHUP re-reads the size of every raw image that grew and tells its guest.
 * The event loop is plain poll(): vub.c names the fds, this program waits.
 */
#define _GNU_SOURCE
#include "vub.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_EXPORTS 16
#define SERIAL_BYTES 20 /* GET_ID's answer */

static volatile sig_atomic_t stop_requested, stats_requested, resize_requested;

/* A front-end that shrinks its memory file under us makes our next access
 * to it raise SIGBUS (see vub_dev_owns_fault in vub.h). The handler jumps
 * back to export_serve(), which ends that session; a SIGBUS anywhere else
 * is a bug and crashes as usual. */
static sigjmp_buf fault_jump;
static struct vub_dev *volatile fault_dev; /* set while a device is being served */

static void on_sigbus(int sig, siginfo_t *info, void *context)
{
    (void)context;
    if (fault_dev && vub_dev_owns_fault(fault_dev, info->si_addr))
        siglongjmp(fault_jump, 1);
    signal(sig, SIG_DFL); /* returning re-runs the access: now fatal */
}

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void on_stats(int sig)
{
    (void)sig;
    stats_requested = 1;
}

static void on_hup(int sig)
{
    (void)sig;
    resize_requested = 1;
}

/* One export: what the command line asked for, then what serves it. */
struct export {
    const char *socket_path;
    const char *image_path;
    const char *serial;
    unsigned queues;
    bool read_only;
    struct vub_image *img;
    struct vub_dev *dev;
    int lfd;                  /* listening socket */
    uint64_t logged_features; /* last logged: firmware and OS negotiate in turn */
    uint64_t rejected;        /* rejected messages already logged */
    uint64_t dropped;         /* dropped notification fds already logged */
    struct pollfd *fds;       /* this export's part of the poll set */
    size_t nfds;
};

struct options {
    struct export exports[MAX_EXPORTS];
    unsigned count;
    struct export single;          /* --socket, --read-only, --queues, --serial, IMAGE */
    unsigned poll_us;              /* busy-poll this long after the last request before sleeping */
    struct vub_image_opts image;   /* --format, --snapshot, --backing-format, ... for every export */
};

static unsigned export_count; /* > 1: log lines name their export */

__attribute__((format(printf, 2, 3))) static void say(const struct export *e, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (export_count > 1)
        fprintf(stderr, "vub-serve: %s: %s\n", e->socket_path, line);
    else
        fprintf(stderr, "vub-serve: %s\n", line);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vub-serve [--socket PATH] [--read-only] [--queues N] [--serial ID] [options] IMAGE\n"
            "       vub-serve [options] --export socket=PATH,image=FILE[,read-only=on][,queues=N][,serial=ID] ...\n"
            "Export IMAGE as a vhost-user-blk device on a unix socket (default vub.sock);\n"
            "--export, repeatable, adds one export per socket, each its own device.\n"
            "  --socket PATH   listen here (a stale socket file is replaced, a live one never)\n"
            "  --read-only     offer VIRTIO_BLK_F_RO and open the image read-only\n"
            "  --queues N      number of request queues, 1..%d (default 8)\n"
            "  --serial ID     GET_ID answer, up to %d bytes (default vub)\n"
            "options, for every export:\n"
            "  --format F      raw|qcow2 (default: detected; raw takes any file as it is)\n"
            "  --poll-us N     busy-poll the queues for N microseconds after the last\n"
            "                  request before sleeping (default 0: sleep at once)\n"
            "  --force-share   with read-only: serve an image another process writes\n"
            "  --version       print the version\n"
            "SIGHUP re-reads the size of a raw image that grew and tells the front-end.\n"
            "qcow2 images are served read-only (VIRTIO_BLK_F_RO):\n"
            "  --snapshot NAME       serve an internal snapshot (id or name)\n"
            "  --backing-format F    format of a backing file the image does not record\n"
            "  --allow-data-file     follow an external data file named by the image\n"
            "Images are locked as QEMU locks them: one QEMU or qemu-img uses in a conflicting\n"
            "way is refused, and they refuse it while it is served. SIGUSR1 logs statistics.\n",
            VUB_MAX_QUEUES, SERIAL_BYTES);
}

/* ---- The command line ---- */

/* Says what is wrong with the command line, in one line. */
__attribute__((format(printf, 1, 2))) static bool bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vub-serve: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (try --help)\n");
    va_end(ap);
    return false;
}

static bool parse_queues(const char *what, const char *v, unsigned *out)
{
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (!*v || *end || n < 1 || n > VUB_MAX_QUEUES)
        return bad("%s wants 1..%d, not '%s'", what, VUB_MAX_QUEUES, v);
    *out = (unsigned)n;
    return true;
}

static bool parse_serial(const char *what, const char *v, const char **out)
{
    if (strlen(v) > SERIAL_BYTES)
        return bad("%s is at most %d bytes (the size of GET_ID's answer), '%s' has %zu", what, SERIAL_BYTES, v,
                   strlen(v));
    *out = v;
    return true;
}

/* socket=PATH,image=FILE[,read-only=on|off][,queues=N][,serial=ID] */
static bool parse_export(char *spec, struct export *e)
{
    *e = (struct export){.serial = "vub", .queues = 8, .lfd = -1};
    for (char *save = NULL, *kv = strtok_r(spec, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *v = strchr(kv, '=');
        if (!v)
            return bad("--export: '%s' is not KEY=VALUE", kv);
        *v++ = '\0';
        if (!strcmp(kv, "socket") && *v)
            e->socket_path = v;
        else if (!strcmp(kv, "image") && *v)
            e->image_path = v;
        else if (!strcmp(kv, "read-only") && (!strcmp(v, "on") || !strcmp(v, "off")))
            e->read_only = !strcmp(v, "on");
        else if (!strcmp(kv, "queues")) {
            if (!parse_queues("--export queues", v, &e->queues))
                return false;
        } else if (!strcmp(kv, "serial")) {
            if (!parse_serial("--export serial", v, &e->serial))
                return false;
        } else
            return bad("--export: unknown key or bad value '%s=%s' (keys: socket, image, read-only=on|off, "
                       "queues, serial)", kv, v);
    }
    if (!e->socket_path || !e->image_path)
        return bad("--export needs socket=PATH and image=FILE");
    return true;
}

static bool parse_format(const char *what, const char *v, enum vub_format *out)
{
    if (strcmp(v, "raw") && strcmp(v, "qcow2"))
        return bad("%s wants raw or qcow2, not '%s'", what, v);
    *out = strcmp(v, "raw") ? VUB_FORMAT_QCOW2 : VUB_FORMAT_RAW;
    return true;
}

/* Options that take a value; one without its value is named as such. */
static const char *const valued[] = {"--socket", "--serial", "--queues", "--poll-us", "--format",
                                     "--backing-format", "--snapshot", "--export"};

static bool parse_option(const char *a, char *v, struct options *o)
{
    struct export *s = &o->single;
    if (!strcmp(a, "--socket"))
        s->socket_path = v;
    else if (!strcmp(a, "--serial"))
        return parse_serial(a, v, &s->serial);
    else if (!strcmp(a, "--queues"))
        return parse_queues(a, v, &s->queues);
    else if (!strcmp(a, "--poll-us")) {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        if (!*v || *end || n > 1000000)
            return bad("%s wants 0..1000000, not '%s'", a, v);
        o->poll_us = (unsigned)n;
    } else if (!strcmp(a, "--format"))
        return parse_format(a, v, &o->image.format);
    else if (!strcmp(a, "--backing-format"))
        return parse_format(a, v, &o->image.backing_format);
    else if (!strcmp(a, "--snapshot"))
        o->image.snapshot = v;
    else if (o->count == MAX_EXPORTS)
        return bad("%s: at most %d exports", a, MAX_EXPORTS);
    else
        return parse_export(v, &o->exports[o->count++]);
    return true;
}

static bool parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){.single = {.socket_path = "vub.sock", .serial = "vub", .queues = 8, .lfd = -1}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool takes_value = false;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
            takes_value |= !strcmp(a, valued[k]);
        if (takes_value) {
            if (i + 1 >= argc)
                return bad("%s needs a value", a);
            if (!parse_option(a, argv[++i], o))
                return false;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--version")) {
            printf("vub-serve %s\n", VUB_VERSION);
            exit(0);
        } else if (!strcmp(a, "--read-only")) {
            o->single.read_only = true;
        } else if (!strcmp(a, "--allow-data-file")) {
            o->image.allow_data_file = true;
        } else if (!strcmp(a, "--force-share")) {
            o->image.force_share = true;
        } else if (a[0] == '-') {
            return bad("unknown option '%s'", a);
        } else if (o->single.image_path) {
            return bad("one IMAGE only, not also '%s'; use --export for more", a);
        } else {
            o->single.image_path = a;
        }
    }
    if (o->single.image_path && o->count == MAX_EXPORTS)
        return bad("at most %d exports", MAX_EXPORTS);
    if (o->single.image_path)
        o->exports[o->count++] = o->single;
    if (o->count == 0)
        return bad("no IMAGE given");
    for (unsigned i = 0; i < o->count; i++)
        if (o->image.force_share && !o->exports[i].read_only)
            return bad("--force-share needs read-only exports: %s is writable (a writer never shares)",
                       o->exports[i].image_path);
    return true;
}

/* ---- Sockets ---- */

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
static int listen_on(const struct export *e)
{
    const char *path = e->socket_path;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    struct stat st;
    if (strlen(path) >= sizeof addr.sun_path) {
        say(e, "socket path too long (at most %zu bytes): %s", sizeof addr.sun_path - 1, path);
        return -1;
    }
    strcpy(addr.sun_path, path);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            say(e, "%s exists and is not a socket; choose another socket path", path);
            return -1;
        }
        if (socket_is_live(&addr)) {
            say(e, "%s: a server is listening on this socket; stop it or choose another --socket", path);
            return -1;
        }
        say(e, "replacing stale socket %s (nobody listens on it)", path);
        unlink(path);
    }
    /* Bound under a temporary name and linked into place once listening, so
     * the socket file never exists without a listener behind it (a script
     * that waits for the file then connects at once is not refused); link()
     * never replaces a file that appeared meanwhile. */
    struct sockaddr_un tmp = addr;
    int len = snprintf(tmp.sun_path, sizeof tmp.sun_path, "%s.%d", path, (int)getpid());
    bool staged = len > 0 && (size_t)len < sizeof tmp.sun_path;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)(staged ? &tmp : &addr), sizeof addr) != 0 || listen(fd, 1) != 0 ||
        (staged && link(tmp.sun_path, path) != 0)) {
        say(e, "cannot listen on %s: %s", path, strerror(errno));
        if (staged)
            unlink(tmp.sun_path);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (staged)
        unlink(tmp.sun_path);
    return fd;
}

/* ---- One export: open, serve, log, close ---- */

static bool export_open(struct export *e, const struct vub_image_opts *common)
{
    char why[512];
    struct vub_image_opts io = *common;
    io.read_only = e->read_only;
    if (vub_image_open(&e->img, e->image_path, &io, why, sizeof why) != VUB_OK) {
        say(e, "cannot open image: %s%s", why,
            strstr(why, "no recorded format") ? "; here: --backing-format raw|qcow2" : "");
        return false;
    }
    if (common->snapshot && vub_image_format(e->img) != VUB_FORMAT_QCOW2) {
        say(e, "--snapshot needs a qcow2 image; %s is raw", e->image_path);
        return false;
    }
    if (vub_image_size(e->img) == 0) {
        say(e, "%s holds no whole 512-byte sector: nothing to serve (give it a size: truncate -s 1G %s)",
            e->image_path, e->image_path);
        return false;
    }
    struct vub_dev_config dc = {.image = e->img, .num_queues = (uint16_t)e->queues, .read_only = e->read_only};
    memcpy(dc.serial, e->serial, strlen(e->serial));
    if (vub_dev_new(&e->dev, &dc) != VUB_OK) {
        say(e, "cannot create the device (out of memory)");
        return false;
    }
    e->lfd = listen_on(e);
    if (e->lfd < 0)
        return false;
    say(e, "serving %s (%llu bytes, %s%s) on %s with %u queues", e->image_path,
        (unsigned long long)vub_image_size(e->img), vub_image_format(e->img) == VUB_FORMAT_QCOW2 ? "qcow2" : "raw",
        e->read_only || vub_image_read_only(e->img) ? ", read-only" : "", e->socket_path, e->queues);
    return true;
}

static void export_close(struct export *e)
{
    if (e->lfd >= 0) {
        close(e->lfd);
        unlink(e->socket_path);
    }
    vub_dev_free(e->dev);
    vub_image_close(e->img);
}

/* One line: request counts by type, errors, bytes, notifications, per queue. */
static void log_stats(const struct export *e, const char *what)
{
    struct vub_dev_stats s;
    char queues[VUB_MAX_QUEUES * 24] = "";
    size_t used = 0;
    vub_dev_stats(e->dev, &s);
    for (unsigned q = 0; q < VUB_MAX_QUEUES && used < sizeof queues; q++)
        if (s.queue_requests[q])
            used += (size_t)snprintf(queues + used, sizeof queues - used, " q%u=%llu", q,
                                     (unsigned long long)s.queue_requests[q]);
    say(e,
        "%s; requests %llu: reads %llu writes %llu flushes %llu discards %llu write-zeroes %llu get-id %llu "
        "errors %llu; bytes read %llu written %llu; notifications %llu; per queue:%s",
        what, (unsigned long long)s.requests, (unsigned long long)s.reads, (unsigned long long)s.writes,
        (unsigned long long)s.flushes, (unsigned long long)s.discards, (unsigned long long)s.write_zeroes,
        (unsigned long long)s.get_ids, (unsigned long long)s.errors, (unsigned long long)s.bytes_read,
        (unsigned long long)s.bytes_written, (unsigned long long)s.notifications, queues);
    if (s.resubmitted)
        say(e, "%llu requests found in flight after a restart were run again", (unsigned long long)s.resubmitted);
}

static void end_session(struct export *e, enum vub_err err)
{
    char what[600];
    snprintf(what, sizeof what, "session ended (%s)", err == VUB_E_CLOSED ? "front-end disconnected" : vub_dev_why(e->dev));
    log_stats(e, what);
    vub_dev_detach(e->dev);
}

/* Logs what changed in the session: a rejected message, new features. */
static void log_changes(struct export *e)
{
    struct vub_dev_stats s;
    vub_dev_stats(e->dev, &s);
    if (s.rejected_messages != e->rejected) {
        e->rejected = s.rejected_messages;
        say(e, "rejected a message: %s", vub_dev_why(e->dev));
    }
    if (s.dropped_fds != e->dropped) {
        e->dropped = s.dropped_fds;
        say(e, "%s", vub_dev_why(e->dev));
    }
    if (vub_dev_queues_started(e->dev) > 0 && vub_dev_features(e->dev) != e->logged_features) {
        char virtio[512], protocol[256];
        e->logged_features = vub_dev_features(e->dev);
        vub_features_str(e->logged_features, VUB_FEATURES_VIRTIO, virtio, sizeof virtio);
        vub_features_str(vub_dev_protocol_features(e->dev), VUB_FEATURES_PROTOCOL, protocol, sizeof protocol);
        say(e, "driver started; features: %s; protocol features: %s", virtio, protocol);
    }
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

/* SIGHUP: follow the image's new size. Growing is announced to the
 * front-end; shrinking is refused, since the guest may hold data there. */
static void follow_resize(const struct export *e)
{
    struct vub_dev *dev = e->dev;
    uint64_t before, after;
    bool told;
    enum vub_err err = vub_dev_resize(dev, &before, &after, &told);
    if (err != VUB_OK)
        say(e, "SIGHUP: resize refused: %s; capacity stays %llu sectors", vub_dev_why(dev),
               (unsigned long long)before);
    else if (before == after)
        say(e, "SIGHUP: capacity unchanged, %llu sectors", (unsigned long long)after);
    else
        say(e, "SIGHUP: capacity %llu -> %llu sectors (%llu -> %llu bytes); %s",
               (unsigned long long)before, (unsigned long long)after, (unsigned long long)before * 512,
               (unsigned long long)after * 512,
               told ? "front-end notified" : vub_dev_attached(dev) ? "the front-end has no back-end channel"
                                                           : "no front-end connected");
}

/* Handles what poll() saw for this export: a new front-end, or messages
 * and kicks of the running session. */
static void export_serve(struct export *e, unsigned poll_us)
{
    if (!vub_dev_attached(e->dev)) {
        if (!(e->fds[0].revents & POLLIN))
            return;
        int fd = accept4(e->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN)
                say(e, "accept: %s", strerror(errno));
            return;
        }
        say(e, "front-end connected");
        e->logged_features = e->rejected = e->dropped = 0;
        vub_dev_attach(e->dev, fd);
        return;
    }
    if (sigsetjmp(fault_jump, 1) != 0) {
        fault_dev = NULL;
        say(e, "session ended: guest memory vanished under us (SIGBUS: the front-end shrank a shared "
               "memory file after SET_MEM_TABLE)");
        vub_dev_detach(e->dev);
        return;
    }
    fault_dev = e->dev;
    enum vub_err err = vub_dev_dispatch(e->dev, e->fds, e->nfds);
    if (err == VUB_OK && poll_us)
        err = busy_poll(e->dev, poll_us);
    fault_dev = NULL;
    log_changes(e);
    if (err != VUB_OK)
        end_session(e, err);
}

/* Fills the poll set: a listening socket for each export waiting for a
 * front-end, the device's fds for each one serving. */
static size_t fill_pollfds(struct export *exports, unsigned count, struct pollfd *fds, bool *polling)
{
    size_t n = 0;
    *polling = false;
    for (unsigned i = 0; i < count; i++) {
        struct export *e = &exports[i];
        e->fds = fds + n;
        if (vub_dev_attached(e->dev)) {
            e->nfds = vub_dev_pollfds(e->dev, e->fds, VUB_MAX_POLLFDS);
            *polling |= vub_dev_polling(e->dev);
        } else {
            e->fds[0] = (struct pollfd){.fd = e->lfd, .events = POLLIN};
            e->nfds = 1;
        }
        n += e->nfds;
    }
    return n;
}

static void serve(struct export *exports, unsigned count, unsigned poll_us)
{
    static struct pollfd fds[MAX_EXPORTS * VUB_MAX_POLLFDS];
    while (!stop_requested) {
        if (resize_requested) {
            resize_requested = 0;
            for (unsigned i = 0; i < count; i++)
                follow_resize(&exports[i]);
        }
        if (stats_requested) {
            stats_requested = 0;
            for (unsigned i = 0; i < count; i++)
                log_stats(&exports[i], vub_dev_attached(exports[i].dev)
                                           ? "statistics of this session"
                                           : "statistics (no front-end connected; of the last session)");
        }
        bool polling;
        size_t n = fill_pollfds(exports, count, fds, &polling);
        if (poll(fds, n, polling ? 1 : -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "vub-serve: poll: %s\n", strerror(errno));
            break;
        }
        for (unsigned i = 0; i < count && !stop_requested; i++)
            export_serve(&exports[i], poll_us);
    }
    for (unsigned i = 0; i < count; i++)
        if (vub_dev_attached(exports[i].dev))
            end_session(&exports[i], VUB_E_CLOSED);
}

int main(int argc, char **argv)
{
    static struct options o;
    if (!parse_args(argc, argv, &o))
        return 2;
    export_count = o.count;
    int rc = 0;
    for (unsigned i = 0; i < o.count && rc == 0; i++)
        if (!export_open(&o.exports[i], &o.image))
            rc = 1;
    if (rc == 0) {
        struct sigaction stop = {.sa_handler = on_stop}, stats = {.sa_handler = on_stats};
        sigaction(SIGINT, &stop, NULL); /* no SA_RESTART: poll must wake */
        sigaction(SIGTERM, &stop, NULL);
        sigaction(SIGUSR1, &stats, NULL);
        struct sigaction hup = {.sa_handler = on_hup};
        sigaction(SIGHUP, &hup, NULL);
        signal(SIGPIPE, SIG_IGN);
        struct sigaction bus = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO};
        sigaction(SIGBUS, &bus, NULL);
        serve(o.exports, o.count, o.poll_us);
    }
    for (unsigned i = 0; i < o.count; i++)
        export_close(&o.exports[i]);
    if (rc == 0)
        fprintf(stderr, "vub-serve: stopped\n");
    return rc;
}
