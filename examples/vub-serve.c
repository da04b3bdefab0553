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
 * The event loop is plain poll(): vub.c names the fds, this program waits;
 * with --threads N each export's queues get N threads of their own.
 */
#define _GNU_SOURCE
#include "vub.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_EXPORTS 16
#define SERIAL_BYTES 20 /* GET_ID's answer */
#define MAX_THREADS VUB_MAX_QUEUES

static volatile sig_atomic_t stop_requested, stats_requested, resize_requested;

/* A front-end that shrinks its memory file under us makes our next access
 * to it raise SIGBUS (see vub_dev_owns_fault in vub.h), in whichever thread
 * touches it. The handler jumps back to that thread's loop (export_serve()
 * or a queue thread), and the session ends; a SIGBUS anywhere else is a
 * bug and crashes as usual. */
static _Thread_local sigjmp_buf *fault_jump;
static _Thread_local struct vub_dev *volatile fault_dev; /* set while a device is being served */

static void on_sigbus(int sig, siginfo_t *info, void *context)
{
    (void)context;
    if (fault_dev && vub_dev_owns_fault(fault_dev, info->si_addr))
        siglongjmp(*fault_jump, 1);
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

struct export;

/* A queue thread: serves queues index, index + N, index + 2N, ... */
struct worker {
    struct export *e;
    unsigned index;
    pthread_t thread;
    int wake_fd;              /* eventfd: the main loop wants it to look at `paused` */
};

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
    unsigned poll_us;         /* --poll-us */
    /* --threads: the queue threads and how the main loop pauses them */
    unsigned nworkers;        /* 0: the main loop serves the queues itself */
    bool workers_started;
    struct worker workers[MAX_THREADS];
    pthread_mutex_t lock;
    pthread_cond_t parked_cv; /* a thread parked */
    pthread_cond_t resume_cv; /* the main loop lets them go on (or quit) */
    atomic_bool paused;       /* written under lock; spinning threads read it without */
    unsigned parked;          /* threads parked (under lock) */
    bool quit;                /* (under lock) */
    atomic_int failed;        /* a queue thread's error, the first one */
    atomic_bool faulted;      /* ... a SIGBUS in guest memory */
    int notify_fd;            /* eventfd: a queue thread failed */
};

struct options {
    struct export exports[MAX_EXPORTS];
    unsigned count;
    struct export single;          /* --socket, --read-only, --queues, --serial, IMAGE */
    unsigned poll_us;              /* busy-poll this long after the last request before sleeping */
    unsigned threads;              /* --threads: per export, the queues' threads (1: the main loop) */
    unsigned lock_wait;            /* --lock-wait: seconds to wait for an image another holds */
    enum vub_aio aio;              /* --aio: the I/O engine */
    bool aio_set;                  /* ... given on the command line (else: io_uring if it works) */
    struct vub_image_opts image;   /* --format, --snapshot, --backing-format, ... for every export */
};

static unsigned export_count; /* > 1: log lines name their export */
static char engine[128];      /* which I/O engine and cache mode serve, for the log */

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
            "  --aio E         sync|io_uring: requests one at a time in the loop, or many in\n"
            "                  flight on an io_uring per queue (default io_uring where it works)\n"
            "  --cache C       writeback|none: none opens raw images O_DIRECT, bypassing the\n"
            "                  page cache (default writeback)\n"
            "  --threads N     serve each export's queues from N threads of their own, queue q\n"
            "                  on thread q %% N (default 1: the main loop serves them)\n"
            "  --force-share   with read-only: serve an image another process writes\n"
            "  --lock-wait S   wait up to S seconds for an image in use to be let go of, as\n"
            "                  one just killed is for a moment (default 5; 0: fail at once)\n"
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
                                     "--backing-format", "--snapshot", "--export", "--aio", "--cache",
                                     "--threads", "--lock-wait"};

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
    } else if (!strcmp(a, "--lock-wait")) {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        if (!*v || *end || n > 3600)
            return bad("%s wants 0..3600 seconds, not '%s'", a, v);
        o->lock_wait = (unsigned)n;
    } else if (!strcmp(a, "--threads")) {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        if (!*v || *end || n < 1 || n > MAX_THREADS)
            return bad("%s wants 1..%d, not '%s'", a, MAX_THREADS, v);
        o->threads = (unsigned)n;
    } else if (!strcmp(a, "--aio")) {
        if (strcmp(v, "sync") && strcmp(v, "io_uring"))
            return bad("%s wants sync or io_uring, not '%s'", a, v);
        o->aio = strcmp(v, "sync") ? VUB_AIO_IO_URING : VUB_AIO_SYNC;
        o->aio_set = true;
    } else if (!strcmp(a, "--cache")) {
        if (strcmp(v, "none") && strcmp(v, "writeback"))
            return bad("%s wants none or writeback, not '%s'", a, v);
        o->image.direct = !strcmp(v, "none");
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
    *o = (struct options){.single = {.socket_path = "vub.sock", .serial = "vub", .queues = 8, .lfd = -1},
                          .threads = 1, .lock_wait = 5};
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

/* Opens the image; one that is in use is tried again every 50 ms for up to
 * lock_wait seconds. A vub-serve killed a moment ago can still hold the
 * image's locks: the kernel lets go of the files of a dead process's
 * io_uring only once the requests it had in flight are done, after the
 * process has been reaped. A restarted vub-serve must not fail on that. */
static enum vub_err image_open_waiting(struct export *e, const struct vub_image_opts *io, unsigned lock_wait,
                                       char *why, size_t why_len)
{
    enum vub_err err;
    bool said = false;
    for (unsigned tries = lock_wait * 20;; tries--) {
        err = vub_image_open(&e->img, e->image_path, io, why, why_len);
        if (err != VUB_E_BUSY || tries == 0 || stop_requested)
            return err;
        if (!said)
            say(e, "%s is in use; waiting up to %u s for it (--lock-wait)", e->image_path, lock_wait);
        said = true;
        nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
    }
}

static bool export_open(struct export *e, const struct vub_image_opts *common, enum vub_aio aio,
                        unsigned lock_wait)
{
    char why[512];
    struct vub_image_opts io = *common;
    io.read_only = e->read_only;
    if (image_open_waiting(e, &io, lock_wait, why, sizeof why) != VUB_OK) {
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
    struct vub_dev_config dc = {.image = e->img, .aio = aio, .num_queues = (uint16_t)e->queues,
                                .read_only = e->read_only};
    memcpy(dc.serial, e->serial, strlen(e->serial));
    if (vub_dev_new(&e->dev, &dc) != VUB_OK) {
        say(e, "cannot create the device (out of memory)");
        return false;
    }
    e->lfd = listen_on(e);
    if (e->lfd < 0)
        return false;
    char threads[48] = "";
    if (e->nworkers)
        snprintf(threads, sizeof threads, "; %u queue threads", e->nworkers);
    say(e, "serving %s (%llu bytes, %s%s) on %s with %u queues; %s%s", e->image_path,
        (unsigned long long)vub_image_size(e->img), vub_image_format(e->img) == VUB_FORMAT_QCOW2 ? "qcow2" : "raw",
        e->read_only || vub_image_read_only(e->img) ? ", read-only" : "", e->socket_path, e->queues, engine,
        threads);
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
        "errors %llu; bytes read %llu written %llu; notifications %llu; bounced %llu; completion passes %llu; "
        "inline %llu; per queue:%s",
        what, (unsigned long long)s.requests, (unsigned long long)s.reads, (unsigned long long)s.writes,
        (unsigned long long)s.flushes, (unsigned long long)s.discards, (unsigned long long)s.write_zeroes,
        (unsigned long long)s.get_ids, (unsigned long long)s.errors, (unsigned long long)s.bytes_read,
        (unsigned long long)s.bytes_written, (unsigned long long)s.notifications, (unsigned long long)s.bounced,
        (unsigned long long)s.completion_passes, (unsigned long long)s.inline_transfers, queues);
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

/* Spins on the queues until poll_us pass without a request, with kicks
 * suppressed meanwhile ([VU-POLL-KICKS]) and re-armed at the end, which
 * serves what came in between. An idle spin makes no system call (the
 * clock is read through the vDSO) except a look at the socket every 64
 * rounds. */
static enum vub_err busy_poll(const struct export *e, unsigned poll_us)
{
    struct vub_dev *dev = e->dev;
    enum vub_err err = VUB_OK;
    for (unsigned q = 0; q < e->queues && err == VUB_OK; q++)
        err = vub_dev_queue_set_polling(dev, q, true);
    uint64_t idle_since = now_us();
    for (unsigned round = 1; err == VUB_OK && !stop_requested && now_us() - idle_since < poll_us; round++) {
        uint64_t served = 0;
        err = vub_dev_poll_queues(dev, &served);
        if (served)
            idle_since = now_us();
        struct pollfd sock = {.fd = -1};
        if (round % 64 == 0 && vub_dev_control_pollfds(dev, &sock, 1) == 1 && poll(&sock, 1, 0) > 0)
            break; /* a message is waiting: let the loop handle it */
    }
    for (unsigned q = 0; q < e->queues; q++) {
        enum vub_err off = vub_dev_queue_set_polling(dev, q, false);
        err = err == VUB_OK ? off : err;
    }
    return err;
}
/* ---- Queue threads (--threads N) ----
 * With N > 1 each export's queues are spread over N threads of their own
 * (queue q on thread q % N) and the main loop keeps the control side: the
 * listening socket, the vhost-user socket, signals. vub.h "One thread per
 * queue" gives the rules; here is how this program keeps them. Before the
 * main loop handles a message (or stats, a resize, the end of a session)
 * it pauses the export's threads: it sets `paused`, wakes each thread's
 * eventfd, and waits until all are parked on the condition variable,
 * between two vub calls. Then it quiesces the device (every request in
 * flight completed) and does its work, and lets them go; they refill their
 * poll sets, since the message may have changed the fds. A thread whose
 * queue call fails parks itself and tells the main loop through the
 * export's eventfd, which then ends the session. */

static void *worker_main(void *arg);

static bool workers_start(struct export *e)
{
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->parked_cv, NULL);
    pthread_cond_init(&e->resume_cv, NULL);
    atomic_store(&e->paused, true);
    e->workers_started = true;
    e->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    for (unsigned i = 0; i < e->nworkers; i++) {
        struct worker *w = &e->workers[i];
        *w = (struct worker){.e = e, .index = i, .wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
        if (w->wake_fd < 0 || e->notify_fd < 0 || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            say(e, "cannot start queue thread %u: %s", i, strerror(errno));
            e->nworkers = i;
            return false;
        }
    }
    return true;
}

static void wake(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN)
        perror("vub-serve: eventfd");
}

static void drain(int fd)
{
    uint64_t n;
    while (read(fd, &n, sizeof n) > 0)
        ;
}

/* Stops the export's queue threads at a safe point; returns once every
 * one is parked. */
static void workers_pause(struct export *e)
{
    if (e->nworkers == 0)
        return;
    pthread_mutex_lock(&e->lock);
    atomic_store(&e->paused, true);
    for (unsigned i = 0; i < e->nworkers; i++)
        wake(e->workers[i].wake_fd);
    while (e->parked < e->nworkers)
        pthread_cond_wait(&e->parked_cv, &e->lock);
    pthread_mutex_unlock(&e->lock);
}

static void workers_resume(struct export *e)
{
    if (e->nworkers == 0)
        return;
    pthread_mutex_lock(&e->lock);
    atomic_store(&e->paused, false);
    pthread_cond_broadcast(&e->resume_cv);
    pthread_mutex_unlock(&e->lock);
}

static void workers_stop(struct export *e)
{
    if (!e->workers_started)
        return;
    pthread_mutex_lock(&e->lock);
    e->quit = true;
    pthread_cond_broadcast(&e->resume_cv);
    pthread_mutex_unlock(&e->lock);
    for (unsigned i = 0; i < e->nworkers; i++) {
        wake(e->workers[i].wake_fd);
        pthread_join(e->workers[i].thread, NULL);
        close(e->workers[i].wake_fd);
    }
    close(e->notify_fd);
}

/* A queue thread's failure: the first one is kept, the threads park, the
 * main loop is told. */
static void worker_failed(struct worker *w, enum vub_err err)
{
    struct export *e = w->e;
    int none = VUB_OK;
    atomic_compare_exchange_strong(&e->failed, &none, (int)err);
    atomic_store(&e->paused, true);
    wake(e->notify_fd);
}

/* Spins on the thread's queues until poll_us pass without a request or the
 * main loop wants them: no system call while nothing comes, and kicks are
 * suppressed meanwhile ([VU-POLL-KICKS]); ending the spin re-arms them and
 * serves what came in between. */
static enum vub_err worker_spin(struct worker *w, unsigned poll_us)
{
    struct export *e = w->e;
    enum vub_err err = VUB_OK;
    for (unsigned q = w->index; q < e->queues && err == VUB_OK; q += e->nworkers)
        err = vub_dev_queue_set_polling(e->dev, q, true);
    for (uint64_t idle_since = now_us(); err == VUB_OK && !atomic_load(&e->paused) && !stop_requested &&
                                         now_us() - idle_since < poll_us;) {
        for (unsigned q = w->index; q < e->queues && err == VUB_OK; q += e->nworkers) {
            uint64_t served = 0;
            err = vub_dev_queue_poll(e->dev, q, &served);
            if (served)
                idle_since = now_us();
        }
    }
    for (unsigned q = w->index; q < e->queues; q += e->nworkers) {
        enum vub_err off = vub_dev_queue_set_polling(e->dev, q, false);
        err = err == VUB_OK ? off : err;
    }
    return err;
}

/* One round of a queue thread: poll its queues' fds and its wake-up fd,
 * serve what is ready, spin if asked to. */
static enum vub_err worker_round(struct worker *w)
{
    struct export *e = w->e;
    struct pollfd fds[1 + 2 * VUB_MAX_QUEUES];
    size_t n = 1;
    bool unkicked = false;
    fds[0] = (struct pollfd){.fd = w->wake_fd, .events = POLLIN};
    for (unsigned q = w->index; q < e->queues; q += e->nworkers) {
        n += vub_dev_queue_pollfds(e->dev, q, fds + n, sizeof fds / sizeof fds[0] - n);
        unkicked |= vub_dev_queue_unkicked(e->dev, q);
    }
    if (poll(fds, (nfds_t)n, unkicked ? 1 : -1) < 0 && errno != EINTR)
        return VUB_E_IO;
    if (fds[0].revents)
        drain(w->wake_fd);
    enum vub_err err = VUB_OK;
    for (unsigned q = w->index; q < e->queues && err == VUB_OK && !atomic_load(&e->paused); q += e->nworkers)
        err = vub_dev_queue_dispatch(e->dev, q, fds + 1, n - 1);
    if (err == VUB_OK && e->poll_us && !atomic_load(&e->paused))
        err = worker_spin(w, e->poll_us);
    return err;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct export *e = w->e;
    sigjmp_buf jump;
    for (;;) {
        pthread_mutex_lock(&e->lock);
        while (atomic_load(&e->paused) && !e->quit) {
            e->parked++;
            pthread_cond_broadcast(&e->parked_cv);
            pthread_cond_wait(&e->resume_cv, &e->lock);
            e->parked--;
        }
        bool quit = e->quit;
        pthread_mutex_unlock(&e->lock);
        if (quit)
            return NULL;
        if (sigsetjmp(jump, 1) != 0) {
            fault_dev = NULL;
            e->faulted = true;
            worker_failed(w, VUB_E_IO);
            continue;
        }
        fault_jump = &jump;
        fault_dev = e->dev;
        enum vub_err err = worker_round(w);
        fault_dev = NULL;
        if (err != VUB_OK)
            worker_failed(w, err);
    }
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

/* The main loop's share of a threaded export: messages, and the news that
 * a queue thread failed. False if neither came, or the session is over (a
 * queue thread met a SIGBUS); otherwise the queue threads are paused and
 * *err holds a queue thread's failure, if any. */
static bool workers_take(struct export *e, enum vub_err *err)
{
    bool ready = false;
    for (size_t i = 0; i < e->nfds; i++)
        ready |= e->fds[i].revents != 0;
    if (!ready)
        return false;
    workers_pause(e);
    drain(e->notify_fd);
    *err = (enum vub_err)atomic_exchange(&e->failed, VUB_OK);
    if (!atomic_exchange(&e->faulted, false))
        return true;
    say(e, "session ended: guest memory vanished under a queue thread (SIGBUS: the front-end shrank a "
           "shared memory file after SET_MEM_TABLE)");
    vub_dev_detach(e->dev);
    return false;
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
        workers_resume(e);
        return;
    }
    enum vub_err err = VUB_OK;
    if (e->nworkers && !workers_take(e, &err))
        return;
    sigjmp_buf jump;
    fault_jump = &jump;
    if (sigsetjmp(jump, 1) != 0) {
        fault_dev = NULL;
        say(e, "session ended: guest memory vanished under us (SIGBUS: the front-end shrank a shared "
               "memory file after SET_MEM_TABLE)");
        vub_dev_detach(e->dev);
        return;
    }
    fault_dev = e->dev;
    if (e->nworkers) {
        /* the queue threads are paused: drain what is in flight (which
         * also brings a queue's failure into vub_dev_why), then messages */
        enum vub_err quiet = vub_dev_quiesce(e->dev);
        err = err != VUB_OK ? err : quiet;
        if (err == VUB_OK)
            err = vub_dev_control_dispatch(e->dev, e->fds, e->nfds);
    } else {
        err = vub_dev_dispatch(e->dev, e->fds, e->nfds);
        if (err == VUB_OK && poll_us)
            err = busy_poll(e, poll_us);
    }
    fault_dev = NULL;
    log_changes(e);
    if (err != VUB_OK)
        end_session(e, err); /* queue threads stay paused until the next front-end */
    else
        workers_resume(e);
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
        if (vub_dev_attached(e->dev) && e->nworkers) {
            e->nfds = vub_dev_control_pollfds(e->dev, e->fds, VUB_MAX_POLLFDS - 1);
            e->fds[e->nfds++] = (struct pollfd){.fd = e->notify_fd, .events = POLLIN};
        } else if (vub_dev_attached(e->dev)) {
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
            for (unsigned i = 0; i < count; i++) {
                workers_pause(&exports[i]);
                follow_resize(&exports[i]);
                if (vub_dev_attached(exports[i].dev))
                    workers_resume(&exports[i]);
            }
        }
        if (stats_requested) {
            stats_requested = 0;
            for (unsigned i = 0; i < count; i++) {
                bool attached = vub_dev_attached(exports[i].dev);
                workers_pause(&exports[i]);
                log_stats(&exports[i], attached ? "statistics of this session"
                                                : "statistics (no front-end connected; of the last session)");
                if (attached)
                    workers_resume(&exports[i]);
            }
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
    for (unsigned i = 0; i < count; i++) {
        workers_pause(&exports[i]);
        if (vub_dev_attached(exports[i].dev))
            end_session(&exports[i], VUB_E_CLOSED);
    }
}

int main(int argc, char **argv)
{
    static struct options o;
    if (!parse_args(argc, argv, &o))
        return 2;
    export_count = o.count;
    int rc = 0;
    char why[256];
    if (!o.aio_set)
        o.aio = vub_aio_works(VUB_AIO_IO_URING, why, sizeof why) ? VUB_AIO_IO_URING : VUB_AIO_SYNC;
    else if (!vub_aio_works(o.aio, why, sizeof why)) {
        fprintf(stderr, "vub-serve: --aio io_uring: %s\n", why);
        return 1;
    }
    snprintf(engine, sizeof engine, "I/O engine %s%s, cache %s", o.aio == VUB_AIO_IO_URING ? "io_uring" : "sync",
             o.aio_set || o.aio == VUB_AIO_IO_URING ? "" : " (io_uring does not work here)",
             o.image.direct ? "none (O_DIRECT)" : "writeback");
    for (unsigned i = 0; i < o.count && rc == 0; i++) {
        struct export *e = &o.exports[i];
        e->poll_us = o.poll_us;
        e->nworkers = o.threads > 1 ? (o.threads < e->queues ? o.threads : e->queues) : 0;
        if (!export_open(e, &o.image, o.aio, o.lock_wait))
            rc = 1;
    }
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
        for (unsigned i = 0; i < o.count && rc == 0; i++)
            if (o.exports[i].nworkers && !workers_start(&o.exports[i]))
                rc = 1;
        if (rc == 0)
            serve(o.exports, o.count, o.poll_us);
    }
    for (unsigned i = 0; i < o.count; i++)
        workers_stop(&o.exports[i]);
    for (unsigned i = 0; i < o.count; i++)
        export_close(&o.exports[i]);
    if (rc == 0)
        fprintf(stderr, "vub-serve: stopped\n");
    return rc;
}
