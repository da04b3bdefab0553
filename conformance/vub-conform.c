/* vub-conform: a spec-clause peer and fuzzer for any vhost-user-blk back-end.
 *
 *   vub-conform --socket PATH | --spawn 'CMD ... {socket} ...'
 *               [--list] [--case PATTERN] [--report FILE.md]
 *               [--fuzz N --seed S] [--replay SEED:STEP] [--disk-bytes N]
 *
 * It plays the front-end (vhost-user messages over the unix socket) and the
 * guest driver (split and packed rings built by hand in a memfd that stands
 * for guest RAM) against a back-end it did not write, and holds what it sees
 * to the clauses of vhost-user.rst and VIRTIO 1.x. Each case is named after a
 * requirement tag (SPEC-NOTES.md and conformance/README.md list them).
 *
 * This tool #includes ../vub.c: it reuses vub's wire structs, request and
 * feature enums, vub_vu_send() and the little-endian helpers, and nothing of
 * vub's back-end logic. A test peer must be able to send anything, so the
 * message and ring builders below are its own and check nothing on the way
 * out.
 *
 * Verdicts: pass; fail (a MUST broken, a crash, a hang, lost or corrupt
 * data); warn (a SHOULD, or a robustness expectation the spec does not
 * state); n/a (the back-end does not offer the feature). Every wait is
 * bounded; the back-end is only ever killed by this tool when --spawn
 * started it, by its PID.
 *
 * Layout of this file: options and reporting, the peer (spawn/connect),
 * guest memory, messages, sessions, the split and packed driver, virtio-blk
 * requests and the shadow disk, the case runner, the fuzzer. The cases
 * live in cases-*.c, included near the end.
 */
#include "../vub.c"

#include <ctype.h>
#include <fnmatch.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

/* ======================================================================== *
 * Constants: guest memory layout, timeouts
 * ======================================================================== */

#define VC_GUEST_BYTES (32u << 20)          /* the memfd: all of "guest RAM" */
#define VC_GPA_BASE 0x40000000ull           /* guest-physical address of byte 0 */
#define VC_UVA_BASE 0x7f3a00000000ull       /* the front-end's "virtual" address of byte 0 */
#define VC_RING_AREA (1u << 20)             /* per queue: room for a 32768-entry ring */
#define VC_MAX_Q 8                          /* queues this tool drives at once */
#define VC_HEAP_OFF (VC_MAX_Q * VC_RING_AREA) /* buffers and indirect tables from here */
#define VC_WAIT_MS 2000                     /* the longest any single wait lasts */
#define VC_QUIET_MS 250                     /* "nothing happened" is judged after this */
#define VC_MAX_SEGS 1100                    /* descriptors in one hand-built request */
#define VC_CHUNK (64u << 10)                /* bytes per read when verifying the disk */

enum vc_verdict { VC_PASS, VC_WARN, VC_NA, VC_FAIL };
static const char *const vc_verdict_name[] = {"pass", "warn", "n/a", "fail"};

/* ======================================================================== *
 * Global state of one run. A test tool, so one context is fine.
 * ======================================================================== */

struct vc_case;

struct vc_opts {
    const char *socket_path;
    const char *spawn_cmd;
    const char *pattern;
    const char *report_path;
    const char *notes_path;   /* SPEC-NOTES.md, for clause coverage */
    const char *log_path;  /* keep the spawned back-end's output here */
    bool list;
    unsigned long fuzz_sessions;
    uint64_t seed;
    bool replay;
    uint64_t replay_seed;
    unsigned long replay_step;
    uint64_t disk_bytes;   /* bytes shadowed and verified (0: default) */
    bool verbose;
    bool check_every;      /* verify the disk after every case, not only hostile ones */
};

/* What the back-end offers, learnt once at the start. */
struct vc_info {
    uint64_t features;        /* GET_FEATURES */
    uint64_t protocol;        /* GET_PROTOCOL_FEATURES (0 without bit 30) */
    unsigned queues;          /* GET_QUEUE_NUM, or 1 */
    bool queue_num_known;
    unsigned config_len;      /* largest GET_CONFIG size answered at offset 0 */
    uint8_t config[256];
    uint64_t capacity;        /* sectors */
    uint32_t seg_max;         /* 0 = no limit known */
    uint32_t size_max;
    uint32_t max_discard_seg, max_wz_seg;
};

struct vc_peer {
    pid_t pid;                /* spawned back-end, -1 if none */
    char dir[64];             /* temp dir with the socket and the log */
    char sock[108];
    char log[128];
    char death[160];          /* how the back-end last died, "" if it did not */
    unsigned restarts;
    const char *restarted_after[32]; /* the cases after which it was restarted (first 32) */
    char restart_why[32][160];       /* how it had died or hung then */
    bool lost;                /* --socket: the back-end no longer accepts */
};

struct vc_disk {
    uint64_t bytes;           /* shadowed bytes, whole sectors */
    uint8_t *data;
    uint8_t *known;           /* per sector: 1 if data[] holds the disk's content */
    bool loaded;
};

struct vc_ctx {
    struct vc_opts opt;
    struct vc_info info;
    struct vc_peer peer;
    struct vc_disk disk;
    /* the case running */
    const struct vc_case *cur;
    enum vc_verdict verdict;
    bool recorded;            /* the case said something: a case that says nothing fails */
    char seen[600];
    char broken_by[400];      /* cases that left the back-end alive but broken */
    bool hostile;             /* the case may break the session: check afterwards */
    /* totals */
    unsigned n, passed, failed, warned, na;
    FILE *report;
    struct { const char *tag; enum vc_verdict verdict; } ran[2048]; /* the first n cases run */
    int memfd;                /* guest RAM, shared by every session */
    uint8_t *guest;
};

static struct vc_ctx vc = {.memfd = -1};

/* ======================================================================== *
 * Verdicts. A case reports what it saw; the worst verdict wins.
 * ======================================================================== */

#if defined(__GNUC__)
#define VC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VC_PRINTF(a, b)
#endif

static void vc_vnote(enum vc_verdict v, const char *fmt, va_list ap)
{
    char line[400];
    vsnprintf(line, sizeof line, fmt, ap);
    vc.recorded = true;
    /* keep the first message of the worst verdict, append others briefly */
    if (v > vc.verdict || vc.seen[0] == '\0') {
        if (v > vc.verdict && vc.seen[0]) {
            char old[sizeof vc.seen];
            snprintf(old, sizeof old, "%s", vc.seen);
            if (snprintf(vc.seen, sizeof vc.seen, "%s; %s", line, old) < 0)
                vc.seen[0] = '\0';
        } else {
            snprintf(vc.seen, sizeof vc.seen, "%s", line);
        }
    } else if (strlen(vc.seen) + strlen(line) + 3 < sizeof vc.seen) {
        strcat(vc.seen, "; ");
        strcat(vc.seen, line);
    }
    if (v > vc.verdict)
        vc.verdict = v;
}

static void vc_pass(const char *fmt, ...) VC_PRINTF(1, 2);
static void vc_pass(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vc_vnote(VC_PASS, fmt, ap);
    va_end(ap);
}

static void vc_warn(const char *fmt, ...) VC_PRINTF(1, 2);
static void vc_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vc_vnote(VC_WARN, fmt, ap);
    va_end(ap);
}

static void vc_na(const char *fmt, ...) VC_PRINTF(1, 2);
static void vc_na(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vc_vnote(VC_NA, fmt, ap);
    va_end(ap);
}

static void vc_fail(const char *fmt, ...) VC_PRINTF(1, 2);
static void vc_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vc_vnote(VC_FAIL, fmt, ap);
    va_end(ap);
}

static bool vc_failed(void) { return vc.verdict == VC_FAIL; }

static uint64_t vc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void vc_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* splitmix64: a deterministic stream per seed, for data patterns and fuzzing. */
static uint64_t vc_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t vc_rand_below(uint64_t *state, uint64_t n) { return n ? vc_rand(state) % n : 0; }

static void vc_fill_pattern(uint8_t *p, size_t len, uint64_t seed)
{
    uint64_t st = seed;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = vc_rand(&st);
        for (size_t j = 0; j < 8 && i + j < len; j++)
            p[i + j] = (uint8_t)(v >> (8 * j));
    }
}

/* ======================================================================== *
 * The peer: a back-end we spawned (and restart), or one at a given socket.
 * ======================================================================== */

static bool vc_peer_alive(void)
{
    if (vc.peer.pid <= 0)
        return !vc.peer.lost;
    int status;
    pid_t r = waitpid(vc.peer.pid, &status, WNOHANG);
    if (r == 0)
        return true;
    if (r == vc.peer.pid) {
        if (WIFSIGNALED(status))
            snprintf(vc.peer.death, sizeof vc.peer.death, "back-end killed by signal %d (%s)",
                     WTERMSIG(status), strsignal(WTERMSIG(status)));
        else
            snprintf(vc.peer.death, sizeof vc.peer.death, "back-end exited with status %d",
                     WEXITSTATUS(status));
        vc.peer.pid = -1;
    }
    return false;
}

/* Did the back-end we spawned die (perhaps noticed and reaped earlier)? */
static bool vc_peer_gone(void)
{
    return vc.opt.spawn_cmd && (vc.peer.pid <= 0 || !vc_peer_alive());
}

/* Stops the back-end we started: SIGTERM, then SIGKILL after 2 s. */
static void vc_peer_stop(void)
{
    if (vc.peer.pid <= 0)
        return;
    kill(vc.peer.pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        if (waitpid(vc.peer.pid, NULL, WNOHANG) == vc.peer.pid) {
            vc.peer.pid = -1;
            return;
        }
        vc_sleep_ms(10);
    }
    kill(vc.peer.pid, SIGKILL);
    waitpid(vc.peer.pid, NULL, 0);
    vc.peer.pid = -1;
}

/* Replaces every {socket} in the template with the socket path. */
static bool vc_peer_command(char *out, size_t cap)
{
    const char *t = vc.opt.spawn_cmd;
    size_t n = 0;
    n += (size_t)snprintf(out, cap, "exec ");
    while (*t && n + 1 < cap) {
        if (!strncmp(t, "{socket}", 8)) {
            n += (size_t)snprintf(out + n, cap - n, "%s", vc.peer.sock);
            t += 8;
        } else {
            out[n++] = *t++;
        }
    }
    if (n >= cap)
        return false;
    out[n] = '\0';
    return true;
}

static bool vc_peer_start(void)
{
    char cmd[4096];
    struct stat st;
    unlink(vc.peer.sock);
    if (!vc_peer_command(cmd, sizeof cmd))
        return false;
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        int fd = open(vc.peer.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (nul >= 0)
            dup2(nul, 0);
        signal(SIGPIPE, SIG_DFL);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    vc.peer.pid = pid;
    vc.peer.death[0] = '\0';
    for (int i = 0; i < 1000; i++) { /* up to 10 s for the socket to appear */
        if (stat(vc.peer.sock, &st) == 0 && S_ISSOCK(st.st_mode))
            return true;
        if (!vc_peer_alive())
            return false;
        vc_sleep_ms(10);
    }
    vc_peer_stop();
    return false;
}

static const char *vc_sock_path(void)
{
    return vc.opt.spawn_cmd ? vc.peer.sock : vc.opt.socket_path;
}

static int vc_connect_errno; /* why the last vc_connect() failed */

/* Connects, retrying while the back-end finishes its previous session. */
static int vc_connect(void)
{
    uint64_t end = vc_now_ms() + VC_WAIT_MS;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", vc_sock_path());
    do {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
            struct timeval tv = {.tv_sec = VC_WAIT_MS / 1000, .tv_usec = 0};
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            return fd;
        }
        vc_connect_errno = errno;
        close(fd);
        if (vc.peer.pid > 0 && !vc_peer_alive())
            return -1;
        vc_sleep_ms(20);
    } while (vc_now_ms() < end);
    return -1;
}

/* ======================================================================== *
 * Guest memory: one memfd mapped here; the back-end gets it as regions.
 * ======================================================================== */

static uint8_t *vc_g(uint64_t gpa)
{
    if (gpa < VC_GPA_BASE || gpa - VC_GPA_BASE >= VC_GUEST_BYTES) {
        fprintf(stderr, "vub-conform: internal error: gpa 0x%llx outside guest RAM\n",
                (unsigned long long)gpa);
        abort();
    }
    return vc.guest + (gpa - VC_GPA_BASE);
}

static bool vc_guest_init(void)
{
    vc.memfd = (int)syscall(SYS_memfd_create, "vub-conform-guest", 1u /* MFD_CLOEXEC */);
    if (vc.memfd < 0 || ftruncate(vc.memfd, VC_GUEST_BYTES) != 0)
        return false;
    vc.guest = mmap(NULL, VC_GUEST_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, vc.memfd, 0);
    return vc.guest != MAP_FAILED;
}

/* ======================================================================== *
 * Messages
 * ======================================================================== */

#define VC_NEED_REPLY VHOST_USER_NEED_REPLY_MASK

struct vc_reply {
    struct vub_vu_header hdr;
    uint8_t payload[512];
    uint32_t got;             /* payload bytes kept (hdr.size may be larger) */
    unsigned fds;             /* descriptors that came with it (closed) */
};

enum vc_rx { VC_RX_OK, VC_RX_CLOSED, VC_RX_TIMEOUT, VC_RX_SHORT };

/* Sends raw bytes and descriptors in one sendmsg (then the rest). Used for
 * anything vub_vu_send would not send: 9 fds, torn headers, lies in size. */
static bool vc_send_raw(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 16)];
    } control;
    struct iovec iov = {.iov_base = (void *)(uintptr_t)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 16)
        return false;
    vub_msg_attach_fds(&mh, control.buf, fds, nfds);
    size_t sent = 0;
    while (sent < len || (len == 0 && nfds > 0 && sent == 0)) {
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        sent += (size_t)n;
        if (len == 0)
            break;
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
        iov.iov_base = (uint8_t *)iov.iov_base + n;
        iov.iov_len -= (size_t)n;
    }
    return true;
}

/* Reads exactly len bytes within the deadline. Descriptors that come are
 * counted in *fds and closed, but for the first one when keep is given
 * (and *keep is still -1). */
static enum vc_rx vc_read_full(int sock, void *buf, size_t len, uint64_t deadline, unsigned *fds, int *keep)
{
    size_t done = 0;
    while (done < len) {
        int left = (int)(deadline > vc_now_ms() ? deadline - vc_now_ms() : 0);
        struct pollfd p = {.fd = sock, .events = POLLIN};
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return done ? VC_RX_SHORT : VC_RX_TIMEOUT;
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * 16)];
        } control;
        struct iovec iov = {.iov_base = (uint8_t *)buf + done, .iov_len = len - done};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                            .msg_controllen = sizeof control.buf};
        ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return done ? VC_RX_SHORT : VC_RX_CLOSED;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (keep && *keep < 0)
                    *keep = fd;
                else
                    close(fd);
                if (fds)
                    (*fds)++;
            }
        }
        done += (size_t)n;
    }
    return VC_RX_OK;
}

/* Receives one message from the back-end, whatever it looks like. Payload
 * bytes past the buffer are read and dropped (up to 1 MiB). With keep, the
 * first descriptor that came is kept there (-1 if none). */
static enum vc_rx vc_recv_keep(int sock, struct vc_reply *r, unsigned timeout_ms, int *keep)
{
    uint64_t deadline = vc_now_ms() + timeout_ms;
    memset(r, 0, sizeof *r);
    if (keep)
        *keep = -1;
    enum vc_rx rx = vc_read_full(sock, &r->hdr, sizeof r->hdr, deadline, &r->fds, keep);
    if (rx != VC_RX_OK)
        return rx;
    uint32_t size = r->hdr.size, keep_bytes = size < sizeof r->payload ? size : (uint32_t)sizeof r->payload;
    if (size > (1u << 20))
        return VC_RX_SHORT;
    rx = vc_read_full(sock, r->payload, keep_bytes, deadline, &r->fds, keep);
    if (rx != VC_RX_OK)
        return rx == VC_RX_TIMEOUT ? VC_RX_SHORT : rx;
    r->got = keep_bytes;
    for (uint32_t left = size - keep_bytes; left > 0;) {
        uint8_t junk[512];
        uint32_t step = left < sizeof junk ? left : (uint32_t)sizeof junk;
        rx = vc_read_full(sock, junk, step, deadline, &r->fds, keep);
        if (rx != VC_RX_OK)
            return VC_RX_SHORT;
        left -= step;
    }
    return VC_RX_OK;
}

static enum vc_rx vc_recv(int sock, struct vc_reply *r, unsigned timeout_ms)
{
    return vc_recv_keep(sock, r, timeout_ms, NULL);
}

static const char *vc_rx_name(enum vc_rx rx)
{
    switch (rx) {
    case VC_RX_OK: return "a reply";
    case VC_RX_CLOSED: return "the connection closed";
    case VC_RX_TIMEOUT: return "no reply within 2 s";
    case VC_RX_SHORT: return "a truncated reply";
    }
    return "?";
}

static uint64_t vc_u64_of(const struct vc_reply *r)
{
    uint64_t v = 0;
    memcpy(&v, r->payload, r->got < 8 ? r->got : 8);
    return v;
}

/* ======================================================================== *
 * Sessions: a connection, what was negotiated, and the rings set up.
 * ======================================================================== */

enum vc_mem_layout {
    VC_MEM_ONE,      /* one region: the whole memfd */
    VC_MEM_TWO,      /* two regions, adjacent in guest space, apart in user space, offset != 0 */
    VC_MEM_EIGHT,    /* eight 4 MiB regions */
    VC_MEM_ADD,      /* two regions with ADD_MEM_REG (CONFIGURE_MEM_SLOTS) */
    VC_MEM_NONE,     /* the case sends its own table */
};

struct vc_setup {
    uint32_t queues_mask;     /* queues to set up; 0 = queue 0 */
    uint32_t size;            /* ring size; 0 = default */
    bool packed;              /* ack RING_PACKED */
    bool no_event_idx;        /* do not ack EVENT_IDX */
    bool no_indirect;         /* do not ack INDIRECT_DESC */
    bool wce;                 /* ack CONFIG_WCE */
    bool no_flush;            /* do not ack FLUSH */
    bool no_protocol;         /* do not ack bit 30 nor send protocol messages */
    bool no_reply_ack;        /* do not ack REPLY_ACK */
    bool no_enable;           /* leave the rings disabled */
    bool no_kick;             /* stop before SET_VRING_KICK */
    bool errfd;               /* give each queue an error eventfd */
    bool inflight;            /* ack INFLIGHT_SHMFD (the case sends GET/SET_INFLIGHT_FD) */
    enum vc_mem_layout mem;
    uint16_t base;            /* split: first avail/used index */
};

struct vc_q {
    bool on;
    uint32_t size;
    bool packed;
    uint64_t desc, avail, used; /* GPAs (packed: desc ring, driver area, device area) */
    int kick, call, err;
    /* split driver */
    uint16_t avail_idx;       /* next index we publish */
    uint16_t used_seen;       /* next used index we consume */
    uint16_t *free;           /* free descriptor indexes (a stack) */
    unsigned nfree;
    uint16_t *next_copy;      /* our copy of each descriptor's next, for freeing */
    uint16_t *chain_n;        /* descriptors in the chain headed here */
    /* packed driver */
    uint16_t next_avail;      /* slot we fill next */
    bool avail_wrap;
    uint16_t next_used;       /* slot we read next */
    bool used_wrap;
    unsigned in_ring;         /* descriptors the device holds */
    uint16_t *id_slots;       /* per buffer id: descriptors it used (65536 entries) */
    uint16_t next_id;
};

struct vc_sess {
    int sock;
    bool closed;              /* we saw the back-end hang up */
    uint64_t features;        /* acked */
    uint64_t protocol;        /* acked */
    bool reply_ack;
    struct vc_setup setup;
    struct vc_q q[VC_MAX_Q];
    uint64_t heap;            /* next free byte of the buffer area (offset) */
    char why[300];            /* the first problem seen while setting up */
};

static bool vc_has_f(uint64_t f, unsigned bit) { return vub_has(f, bit); }

static uint64_t vc_uva(uint64_t gpa) { return gpa - VC_GPA_BASE + VC_UVA_BASE; }

/* Region descriptions of each layout (guest, size, user, offset). */
static unsigned vc_layout(enum vc_mem_layout m, struct vub_vu_mem_region *r)
{
    switch (m) {
    case VC_MEM_ONE:
    case VC_MEM_NONE:
        r[0] = (struct vub_vu_mem_region){VC_GPA_BASE, VC_GUEST_BYTES, VC_UVA_BASE, 0};
        return 1;
    case VC_MEM_TWO:
    case VC_MEM_ADD:
        r[0] = (struct vub_vu_mem_region){VC_GPA_BASE, VC_GUEST_BYTES / 2, VC_UVA_BASE, 0};
        r[1] = (struct vub_vu_mem_region){VC_GPA_BASE + VC_GUEST_BYTES / 2, VC_GUEST_BYTES / 2,
                                           VC_UVA_BASE + VC_GUEST_BYTES / 2 + (1ull << 36),
                                           VC_GUEST_BYTES / 2};
        return 2;
    case VC_MEM_EIGHT:
        for (unsigned i = 0; i < 8; i++) {
            uint64_t sz = VC_GUEST_BYTES / 8, off = sz * i;
            r[i] = (struct vub_vu_mem_region){VC_GPA_BASE + off, sz, VC_UVA_BASE + off + (uint64_t)i * (1ull << 34), off};
        }
        return 8;
    }
    return 0;
}

/* The user address of a GPA under a layout. */
static uint64_t vc_layout_uva(enum vc_mem_layout m, uint64_t gpa)
{
    struct vub_vu_mem_region r[8];
    unsigned n = vc_layout(m, r);
    for (unsigned i = 0; i < n; i++)
        if (gpa >= r[i].guest_addr && gpa - r[i].guest_addr < r[i].size)
            return r[i].user_addr + (gpa - r[i].guest_addr);
    return vc_uva(gpa);
}

static void vc_why(struct vc_sess *s, const char *fmt, ...) VC_PRINTF(2, 3);
static void vc_why(struct vc_sess *s, const char *fmt, ...)
{
    if (s->why[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
}

/* Sends a message. vub_vu_send takes at most 8 fds and a truthful size. */
static bool vc_send(struct vc_sess *s, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
                    const int *fds, unsigned nfds)
{
    struct vub_vu_header h = {req, flags, size};
    if (s->sock < 0)
        return false;
    if (nfds <= VUB_VU_MAX_FDS)
        return vub_vu_send(s->sock, &h, payload, fds, nfds) == VUB_OK;
    uint8_t buf[12 + 512];
    if (size > 512)
        return false;
    memcpy(buf, &h, 12);
    if (size)
        memcpy(buf + 12, payload, size);
    return vc_send_raw(s->sock, buf, 12 + size, fds, nfds);
}

/* Outcome of a request that was sent with NEED_REPLY (or that has a reply). */
enum vc_ack { VC_ACK_OK, VC_ACK_ERR, VC_ACK_CLOSED, VC_ACK_NONE, VC_ACK_BAD };

static const char *vc_ack_name(enum vc_ack a)
{
    switch (a) {
    case VC_ACK_OK: return "ack 0 (accepted)";
    case VC_ACK_ERR: return "a non-zero ack (refused)";
    case VC_ACK_CLOSED: return "the back-end closed the connection";
    case VC_ACK_NONE: return "no reply";
    case VC_ACK_BAD: return "a malformed reply";
    }
    return "?";
}

/* Receives the u64 ack of request `req`; checks its shape. */
static enum vc_ack vc_get_ack(struct vc_sess *s, uint32_t req, uint64_t *value, char *detail, size_t dlen)
{
    struct vc_reply r;
    enum vc_rx rx = vc_recv(s->sock, &r, VC_WAIT_MS);
    if (detail && dlen)
        detail[0] = '\0';
    if (rx == VC_RX_CLOSED || rx == VC_RX_SHORT) {
        s->closed = true;
        return VC_ACK_CLOSED;
    }
    if (rx == VC_RX_TIMEOUT)
        return VC_ACK_NONE;
    if (r.hdr.request != req || r.hdr.flags != 0x5 || r.hdr.size != 8) {
        if (detail)
            snprintf(detail, dlen, "reply request %u flags 0x%x size %u (expected %u, 0x5, 8)",
                     r.hdr.request, r.hdr.flags, r.hdr.size, req);
        return VC_ACK_BAD;
    }
    if (value)
        *value = vc_u64_of(&r);
    return vc_u64_of(&r) == 0 ? VC_ACK_OK : VC_ACK_ERR;
}

/* A request without a reply of its own. With REPLY_ACK negotiated it asks
 * for the ack and returns it; otherwise it returns VC_ACK_OK unchecked. */
static enum vc_ack vc_msg(struct vc_sess *s, uint32_t req, const void *payload, uint32_t size,
                          const int *fds, unsigned nfds)
{
    uint32_t flags = VHOST_USER_VERSION | (s->reply_ack ? VC_NEED_REPLY : 0);
    if (!vc_send(s, req, flags, payload, size, fds, nfds)) {
        s->closed = true;
        return VC_ACK_CLOSED;
    }
    if (!s->reply_ack)
        return VC_ACK_OK;
    return vc_get_ack(s, req, NULL, NULL, 0);
}

static enum vc_ack vc_msg_u64(struct vc_sess *s, uint32_t req, uint64_t v, const int *fds, unsigned nfds)
{
    return vc_msg(s, req, &v, sizeof v, fds, nfds);
}

static enum vc_ack vc_msg_state(struct vc_sess *s, uint32_t req, uint32_t index, uint32_t num)
{
    struct vub_vu_vring_state st = {index, num};
    return vc_msg(s, req, &st, sizeof st, NULL, 0);
}

/* A request that has a reply of its own (GET_*). Returns false if the reply
 * is missing or misshapen (request id, flags 0x5, expected size). */
static bool vc_call(struct vc_sess *s, uint32_t req, const void *payload, uint32_t size,
                    struct vc_reply *r, uint32_t want_size, char *detail, size_t dlen)
{
    if (detail && dlen)
        detail[0] = '\0';
    if (!vc_send(s, req, VHOST_USER_VERSION, payload, size, NULL, 0)) {
        s->closed = true;
        if (detail)
            snprintf(detail, dlen, "could not send %s", vub_vu_request_name(req));
        return false;
    }
    enum vc_rx rx = vc_recv(s->sock, r, VC_WAIT_MS);
    if (rx != VC_RX_OK) {
        if (rx != VC_RX_TIMEOUT)
            s->closed = true;
        if (detail)
            snprintf(detail, dlen, "%s answered with %s", vub_vu_request_name(req), vc_rx_name(rx));
        return false;
    }
    if (r->hdr.request != req || r->hdr.flags != 0x5 || (want_size != UINT32_MAX && r->hdr.size != want_size)) {
        if (detail)
            snprintf(detail, dlen, "%s reply has request %u, flags 0x%x, size %u", vub_vu_request_name(req),
                     r->hdr.request, r->hdr.flags, r->hdr.size);
        return false;
    }
    return true;
}

static bool vc_get_u64(struct vc_sess *s, uint32_t req, uint64_t *v)
{
    struct vc_reply r;
    if (!vc_call(s, req, NULL, 0, &r, 8, NULL, 0))
        return false;
    *v = vc_u64_of(&r);
    return true;
}

/* Is the back-end still answering this session? GET_FEATURES as a ping. */
static bool vc_ping(struct vc_sess *s)
{
    uint64_t v;
    return s->sock >= 0 && !s->closed && vc_get_u64(s, VHOST_USER_GET_FEATURES, &v) && v == vc.info.features;
}

static void vc_q_free(struct vc_q *q)
{
    if (q->kick >= 0)
        close(q->kick);
    if (q->call >= 0)
        close(q->call);
    if (q->err >= 0)
        close(q->err);
    free(q->free);
    free(q->next_copy);
    free(q->chain_n);
    free(q->id_slots);
    memset(q, 0, sizeof *q);
    q->kick = q->call = q->err = -1;
}

static void vc_close(struct vc_sess *s)
{
    if (s->sock >= 0)
        close(s->sock);
    s->sock = -1;
    for (unsigned i = 0; i < VC_MAX_Q; i++)
        vc_q_free(&s->q[i]);
}

/* Ring placement for queue i with size n (split or packed). */
static void vc_q_place(struct vc_q *q, unsigned i, uint32_t n, bool packed)
{
    uint64_t base = VC_GPA_BASE + (uint64_t)i * VC_RING_AREA;
    q->desc = base;
    if (packed) {
        q->avail = base + 16ull * n;       /* driver event suppression */
        q->used = q->avail + 64;           /* device event suppression */
    } else {
        q->avail = base + 16ull * n;
        q->used = (q->avail + 6 + 2ull * n + 63) & ~63ull;
    }
}

/* Resets our driver state for queue i and clears its ring memory. */
static bool vc_q_init(struct vc_sess *s, unsigned i, uint32_t n, bool packed, uint16_t base)
{
    struct vc_q *q = &s->q[i];
    vc_q_free(q);
    q->on = true;
    q->size = n;
    q->packed = packed;
    vc_q_place(q, i, n, packed);
    memset(vc_g(q->desc), 0, VC_RING_AREA);
    q->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    q->call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    q->err = -1;
    q->free = calloc(n ? n : 1, sizeof *q->free);
    q->next_copy = calloc(n ? n : 1, sizeof *q->next_copy);
    q->chain_n = calloc(n ? n : 1, sizeof *q->chain_n);
    q->id_slots = calloc(65536, sizeof *q->id_slots);
    if (q->kick < 0 || q->call < 0 || !q->free || !q->next_copy || !q->chain_n || !q->id_slots)
        return false;
    for (uint32_t k = 0; k < n; k++)
        q->free[k] = (uint16_t)(n - 1 - k); /* pop gives 0, 1, 2 ... */
    q->nfree = n;
    q->avail_idx = q->used_seen = base;
    if (!packed) { /* both indexes live in guest memory and start at the base */
        vub_put_le16(vc_g(q->used) + 2, base);
        vub_put_le16(vc_g(q->avail) + 2, base);
    }
    q->next_avail = q->next_used = 0;
    q->avail_wrap = q->used_wrap = true;
    return true;
}

static uint64_t vc_virtio_wanted(const struct vc_setup *o)
{
    uint64_t want = VUB_BIT(VIRTIO_F_VERSION_1) | VUB_BIT(VIRTIO_BLK_F_SIZE_MAX) | VUB_BIT(VIRTIO_BLK_F_SEG_MAX) |
                    VUB_BIT(VIRTIO_BLK_F_GEOMETRY) | VUB_BIT(VIRTIO_BLK_F_RO) | VUB_BIT(VIRTIO_BLK_F_BLK_SIZE) |
                    VUB_BIT(VIRTIO_BLK_F_TOPOLOGY) | VUB_BIT(VIRTIO_BLK_F_MQ) | VUB_BIT(VIRTIO_BLK_F_DISCARD) |
                    VUB_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
    if (!o->no_flush)
        want |= VUB_BIT(VIRTIO_BLK_F_FLUSH);
    if (o->wce)
        want |= VUB_BIT(VIRTIO_BLK_F_CONFIG_WCE);
    if (!o->no_event_idx)
        want |= VUB_BIT(VIRTIO_F_EVENT_IDX);
    if (!o->no_indirect)
        want |= VUB_BIT(VIRTIO_F_INDIRECT_DESC);
    if (!o->no_protocol)
        want |= VUB_BIT(VHOST_USER_F_PROTOCOL_FEATURES);
    if (o->packed)
        want |= VUB_BIT(VIRTIO_F_RING_PACKED);
    return want;
}

/* Protocol features this peer knows how to use. */
static uint64_t vc_protocol_wanted(const struct vc_setup *o)
{
    uint64_t p = VUB_BIT(VHOST_USER_PROTOCOL_F_MQ) | VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIG) |
                 VUB_BIT(VHOST_USER_PROTOCOL_F_RESET_DEVICE) | VUB_BIT(VHOST_USER_PROTOCOL_F_STATUS);
    if (!o->no_reply_ack)
        p |= VUB_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK);
    if (o->mem == VC_MEM_ADD)
        p |= VUB_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS);
    if (o->inflight)
        p |= VUB_BIT(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD);
    return p;
}

static bool vc_ack_ok(struct vc_sess *s, enum vc_ack a, const char *what)
{
    if (a == VC_ACK_OK)
        return true;
    vc_why(s, "%s: %s", what, vc_ack_name(a));
    return false;
}

/* Sends the memory table of the session's layout. */
static bool vc_send_mem(struct vc_sess *s)
{
    struct vub_vu_mem_region r[8];
    unsigned n = vc_layout(s->setup.mem, r);
    if (s->setup.mem == VC_MEM_ADD) {
        for (unsigned i = 0; i < n; i++) {
            struct vub_vu_mem_single one = {0, r[i]};
            if (!vc_ack_ok(s, vc_msg(s, VHOST_USER_ADD_MEM_REG, &one, sizeof one, &vc.memfd, 1), "ADD_MEM_REG"))
                return false;
        }
        return true;
    }
    struct vub_vu_mem_table t = {.nregions = n};
    int fds[8];
    for (unsigned i = 0; i < n; i++) {
        t.regions[i] = r[i];
        fds[i] = vc.memfd;
    }
    return vc_ack_ok(s, vc_msg(s, VHOST_USER_SET_MEM_TABLE, &t, 8 + 32 * n, fds, n), "SET_MEM_TABLE");
}

/* The vring messages that give queue i its addresses; no kick. */
static bool vc_q_configure(struct vc_sess *s, unsigned i, uint32_t base_num)
{
    struct vc_q *q = &s->q[i];
    enum vc_mem_layout m = s->setup.mem;
    struct vub_vu_vring_addr a = {i, 0, vc_layout_uva(m, q->desc), vc_layout_uva(m, q->used),
                                  vc_layout_uva(m, q->avail), 0};
    return vc_ack_ok(s, vc_msg_state(s, VHOST_USER_SET_VRING_NUM, i, q->size), "SET_VRING_NUM") &&
           vc_ack_ok(s, vc_msg_state(s, VHOST_USER_SET_VRING_BASE, i, base_num), "SET_VRING_BASE") &&
           vc_ack_ok(s, vc_msg(s, VHOST_USER_SET_VRING_ADDR, &a, sizeof a, NULL, 0), "SET_VRING_ADDR") &&
           vc_ack_ok(s, vc_msg_u64(s, VHOST_USER_SET_VRING_CALL, i, &q->call, 1), "SET_VRING_CALL") &&
           (q->err < 0 || vc_ack_ok(s, vc_msg_u64(s, VHOST_USER_SET_VRING_ERR, i, &q->err, 1), "SET_VRING_ERR"));
}

static bool vc_q_start(struct vc_sess *s, unsigned i)
{
    struct vc_q *q = &s->q[i];
    if (!vc_ack_ok(s, vc_msg_u64(s, VHOST_USER_SET_VRING_KICK, i, &q->kick, 1), "SET_VRING_KICK"))
        return false;
    if (vc_has_f(s->features, VHOST_USER_F_PROTOCOL_FEATURES) && !s->setup.no_enable)
        return vc_ack_ok(s, vc_msg_state(s, VHOST_USER_SET_VRING_ENABLE, i, 1), "SET_VRING_ENABLE");
    return true;
}

/* Packed base for SET_VRING_BASE: both positions and wrap counters. */
static uint32_t vc_packed_base(const struct vc_q *q)
{
    return (uint32_t)q->next_avail | (uint32_t)q->avail_wrap << 15 | (uint32_t)q->next_used << 16 |
           (uint32_t)q->used_wrap << 31;
}

/* Connects and negotiates; no rings. */
static bool vc_handshake(struct vc_sess *s, const struct vc_setup *o)
{
    memset(s, 0, sizeof *s);
    for (unsigned i = 0; i < VC_MAX_Q; i++)
        s->q[i].kick = s->q[i].call = s->q[i].err = -1;
    s->setup = *o;
    s->sock = vc_connect();
    if (s->sock < 0) {
        vc_why(s, "cannot connect to %s: %s", vc_sock_path(), strerror(vc_connect_errno));
        return false;
    }
    uint64_t offered;
    if (!vc_get_u64(s, VHOST_USER_GET_FEATURES, &offered)) {
        vc_why(s, "GET_FEATURES got no proper reply");
        return false;
    }
    s->features = offered & vc_virtio_wanted(o);
    if (vc_has_f(s->features, VHOST_USER_F_PROTOCOL_FEATURES)) {
        uint64_t p;
        if (!vc_get_u64(s, VHOST_USER_GET_PROTOCOL_FEATURES, &p)) {
            vc_why(s, "GET_PROTOCOL_FEATURES got no proper reply");
            return false;
        }
        s->protocol = p & vc_protocol_wanted(o);
        uint64_t v = s->protocol;
        if (!vc_send(s, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &v, 8, NULL, 0)) {
            vc_why(s, "SET_PROTOCOL_FEATURES: send failed");
            return false;
        }
        s->reply_ack = vc_has_f(s->protocol, VHOST_USER_PROTOCOL_F_REPLY_ACK);
        if (vc_has_f(s->protocol, VHOST_USER_PROTOCOL_F_MQ)) {
            uint64_t n;
            if (!vc_get_u64(s, VHOST_USER_GET_QUEUE_NUM, &n)) {
                vc_why(s, "GET_QUEUE_NUM got no proper reply");
                return false;
            }
        }
    }
    if (!vc_ack_ok(s, vc_msg(s, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0), "SET_OWNER") ||
        !vc_ack_ok(s, vc_msg_u64(s, VHOST_USER_SET_FEATURES, s->features, NULL, 0), "SET_FEATURES"))
        return false;
    return true;
}

/* The whole start-up: handshake, memory, rings started and enabled. */
static bool vc_open(struct vc_sess *s, const struct vc_setup *o_in)
{
    struct vc_setup o = *o_in;
    if (o.queues_mask == 0)
        o.queues_mask = 1;
    if (o.size == 0)
        o.size = o.packed ? 64 : 128;
    if (!vc_handshake(s, &o))
        return false;
    if (o.mem != VC_MEM_NONE && !vc_send_mem(s))
        return false;
    s->heap = VC_HEAP_OFF;
    bool packed = vc_has_f(s->features, VIRTIO_F_RING_PACKED);
    for (unsigned i = 0; i < VC_MAX_Q; i++) {
        if (!(o.queues_mask & (1u << i)))
            continue;
        if (!vc_q_init(s, i, o.size, packed, packed ? 0 : o.base)) {
            vc_why(s, "out of memory");
            return false;
        }
        if (o.errfd)
            s->q[i].err = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (!vc_q_configure(s, i, packed ? vc_packed_base(&s->q[i]) : o.base))
            return false;
        if (!o.no_kick && !vc_q_start(s, i))
            return false;
    }
    if (!s->reply_ack && !vc_ping(s)) { /* GET_FEATURES as the barrier */
        vc_why(s, "the back-end stopped answering during set-up");
        return false;
    }
    return true;
}

/* Opens a session or records the failure as the case's verdict. */
static bool vc_open_or_fail(struct vc_sess *s, const struct vc_setup *o)
{
    if (vc_open(s, o))
        return true;
    vc_fail("session set-up failed: %s", s->why);
    vc_close(s);
    return false;
}

/* ======================================================================== *
 * The driver side of the rings
 * ======================================================================== */

/* One buffer of a request: guest address, length, device-writable? Extra
 * raw flag bits can be forced (hostile cases). */
struct vc_seg {
    uint64_t gpa;
    uint32_t len;
    bool write;
};

enum vc_mode { VC_DIRECT, VC_INDIRECT, VC_MIXED };

/* Knobs for cases that need an unusual layout; each is used once and reset:
 * extra flags on the next INDIRECT descriptor, where the next indirect table
 * goes, extra flags on every entry of a packed indirect table. */
static uint16_t vc_ind_extra_flags;
static uint64_t vc_table_gpa_next;
static uint16_t vc_table_extra_flags;

static uint64_t vc_alloc(struct vc_sess *s, uint64_t bytes, uint64_t align)
{
    uint64_t at = (s->heap + align - 1) & ~(align - 1);
    if (at + bytes > VC_GUEST_BYTES) {
        at = VC_HEAP_OFF; /* wrap: callers never hold more than a few MiB */
    }
    s->heap = at + bytes;
    return VC_GPA_BASE + at;
}

static void vc_put_desc(uint8_t *p, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    vub_put_le64(p, addr);
    vub_put_le32(p + 8, len);
    vub_put_le16(p + 12, flags);
    vub_put_le16(p + 14, next);
}

static void vc_put_pdesc(uint8_t *p, uint64_t addr, uint32_t len, uint16_t id, uint16_t flags)
{
    vub_put_le64(p, addr);
    vub_put_le32(p + 8, len);
    vub_put_le16(p + 12, id);
    vub_put_le16(p + 14, flags);
}

/* Writes an indirect table for segs; returns its GPA. */
static uint64_t vc_indirect_table(struct vc_sess *s, const struct vc_seg *segs, unsigned n, bool packed)
{
    uint64_t t = vc_table_gpa_next ? vc_table_gpa_next : vc_alloc(s, 16ull * n, 16);
    vc_table_gpa_next = 0;
    for (unsigned i = 0; i < n; i++) {
        uint16_t f = segs[i].write ? VIRTQ_DESC_F_WRITE : 0;
        if (packed)
            vc_put_pdesc(vc_g(t + 16ull * i), segs[i].gpa, segs[i].len, 0, (uint16_t)(f | vc_table_extra_flags));
        else
            vc_put_desc(vc_g(t + 16ull * i), segs[i].gpa, segs[i].len,
                        (uint16_t)(f | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)), (uint16_t)(i + 1));
    }
    return t;
}

/* Split: builds the chain in free descriptors and publishes its head.
 * Returns the head, or -1 if the ring has no room. */
static int vc_split_add(struct vc_sess *s, unsigned qi, const struct vc_seg *segs, unsigned n,
                        enum vc_mode mode, unsigned ndirect)
{
    struct vc_q *q = &s->q[qi];
    unsigned direct = mode == VC_DIRECT ? n : mode == VC_INDIRECT ? 0 : ndirect;
    unsigned need = direct + (direct < n ? 1 : 0);
    if (need == 0 || need > q->nfree)
        return -1;
    uint16_t idx[VC_MAX_SEGS + 1];
    for (unsigned i = 0; i < need; i++)
        idx[i] = q->free[--q->nfree];
    uint8_t *table = vc_g(q->desc);
    for (unsigned i = 0; i < direct; i++) {
        bool more = i + 1 < need;
        uint16_t f = (uint16_t)((segs[i].write ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0));
        vc_put_desc(table + 16u * idx[i], segs[i].gpa, segs[i].len, f, more ? idx[i + 1] : 0);
        q->next_copy[idx[i]] = more ? idx[i + 1] : 0;
    }
    if (direct < n) {
        uint64_t t = vc_indirect_table(s, segs + direct, n - direct, false);
        vc_put_desc(table + 16u * idx[direct], t, 16u * (n - direct),
                    (uint16_t)(VIRTQ_DESC_F_INDIRECT | vc_ind_extra_flags), 0);
        vc_ind_extra_flags = 0;
        q->next_copy[idx[direct]] = 0;
    }
    q->chain_n[idx[0]] = (uint16_t)need;
    uint8_t *avail = vc_g(q->avail);
    vub_put_le16(avail + 4 + 2 * (q->avail_idx % q->size), idx[0]);
    q->avail_idx++;
    atomic_thread_fence(memory_order_seq_cst); /* ring entry before idx: pairs with the device's acquire */
    vub_ring_store16(avail + 2, q->avail_idx, memory_order_release);
    return idx[0];
}

/* Packed: writes the list, first flags last. Returns the id, or -1. */
static int vc_packed_add(struct vc_sess *s, unsigned qi, const struct vc_seg *segs, unsigned n,
                         enum vc_mode mode, int id_in)
{
    struct vc_q *q = &s->q[qi];
    unsigned slots = mode == VC_DIRECT ? n : 1;
    if (n == 0 || q->in_ring + slots > q->size)
        return -1;
    uint16_t id = id_in >= 0 ? (uint16_t)id_in : q->next_id++;
    uint8_t *ring = vc_g(q->desc);
    uint16_t first = q->next_avail, first_flags = 0;
    for (unsigned i = 0; i < slots; i++) {
        uint16_t slot = q->next_avail;
        uint16_t f = (uint16_t)(q->avail_wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED);
        if (mode == VC_DIRECT) {
            f |= (uint16_t)((segs[i].write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
            vub_put_le64(ring + 16u * slot, segs[i].gpa);
            vub_put_le32(ring + 16u * slot + 8, segs[i].len);
        } else {
            uint64_t t = vc_indirect_table(s, segs, n, true);
            f |= (uint16_t)(VIRTQ_DESC_F_INDIRECT | vc_ind_extra_flags);
            vc_ind_extra_flags = 0;
            vub_put_le64(ring + 16u * slot, t);
            vub_put_le32(ring + 16u * slot + 8, 16u * n);
        }
        vub_put_le16(ring + 16u * slot + 12, id);
        if (i == 0)
            first_flags = f;
        else
            vub_ring_store16(ring + 16u * slot + 14, f, memory_order_relaxed);
        if (++q->next_avail == q->size) {
            q->next_avail = 0;
            q->avail_wrap = !q->avail_wrap;
        }
    }
    atomic_thread_fence(memory_order_seq_cst);
    vub_ring_store16(ring + 16u * first + 14, first_flags, memory_order_release);
    q->in_ring += slots;
    q->id_slots[id] = (uint16_t)slots;
    return id;
}

static int vc_add(struct vc_sess *s, unsigned qi, const struct vc_seg *segs, unsigned n, enum vc_mode mode,
                  unsigned ndirect)
{
    return s->q[qi].packed ? vc_packed_add(s, qi, segs, n, mode == VC_MIXED ? VC_INDIRECT : mode, -1)
                           : vc_split_add(s, qi, segs, n, mode, ndirect);
}

static void vc_kick(struct vc_sess *s, unsigned qi)
{
    uint64_t one = 1;
    if (s->q[qi].kick >= 0 && write(s->q[qi].kick, &one, sizeof one) < 0) {
        /* a saturated eventfd already wakes the device */
    }
}

/* Reads (and clears) the call eventfd: notifications since last read. */
static uint64_t vc_calls(struct vc_sess *s, unsigned qi)
{
    uint64_t n = 0;
    if (s->q[qi].call < 0 || read(s->q[qi].call, &n, sizeof n) != (ssize_t)sizeof n)
        return 0;
    return n;
}

struct vc_used {
    uint32_t id;
    uint32_t len;
    uint16_t flags; /* packed: the used descriptor's flags */
};

/* Takes the next used entry if the device published one. */
static bool vc_take_used(struct vc_sess *s, unsigned qi, struct vc_used *u)
{
    struct vc_q *q = &s->q[qi];
    if (!q->on)
        return false;
    if (!q->packed) {
        uint8_t *used = vc_g(q->used);
        if (vub_ring_load16(used + 2, memory_order_acquire) == q->used_seen)
            return false;
        uint8_t *e = used + 4 + 8 * (q->used_seen % q->size);
        u->id = vub_le32(e);
        u->len = vub_le32(e + 4);
        u->flags = 0;
        q->used_seen++;
        if (u->id < q->size && q->chain_n[u->id]) { /* give the chain's descriptors back */
            uint16_t i = (uint16_t)u->id;
            for (unsigned k = q->chain_n[u->id]; k > 0 && q->nfree < q->size; k--) {
                q->free[q->nfree++] = i;
                i = q->next_copy[i];
            }
            q->chain_n[u->id] = 0;
        }
        return true;
    }
    uint8_t *d = vc_g(q->desc) + 16u * q->next_used;
    uint16_t f = vub_ring_load16(d + 14, memory_order_acquire);
    bool avail = (f & VIRTQ_DESC_F_AVAIL) != 0, usedb = (f & VIRTQ_DESC_F_USED) != 0;
    if (avail != q->used_wrap || usedb != q->used_wrap)
        return false;
    u->id = vub_le16(d + 12);
    u->len = vub_le32(d + 8);
    u->flags = f;
    unsigned slots = q->id_slots[u->id] ? q->id_slots[u->id] : 1;
    q->id_slots[u->id] = 0;
    q->in_ring = q->in_ring >= slots ? q->in_ring - slots : 0;
    unsigned next = q->next_used + slots;
    if (next >= q->size) {
        next -= q->size;
        q->used_wrap = !q->used_wrap;
    }
    q->next_used = (uint16_t)next;
    return true;
}

enum vc_ev { VC_EV_USED, VC_EV_CLOSED, VC_EV_ERRFD, VC_EV_TIMEOUT };

static const char *vc_ev_name(enum vc_ev e)
{
    switch (e) {
    case VC_EV_USED: return "completed";
    case VC_EV_CLOSED: return "the back-end closed the connection";
    case VC_EV_ERRFD: return "the back-end signalled the error fd";
    case VC_EV_TIMEOUT: return "nothing happened within 2 s";
    }
    return "?";
}

/* Waits for the next used entry of queue qi (polling memory as well as the
 * call fd: a back-end may rightly not notify), the socket closing, or the
 * error fd. Bounded by timeout_ms. */
static enum vc_ev vc_wait_used(struct vc_sess *s, unsigned qi, struct vc_used *u, unsigned timeout_ms)
{
    uint64_t end = vc_now_ms() + timeout_ms;
    for (;;) {
        if (vc_take_used(s, qi, u))
            return VC_EV_USED;
        struct pollfd p[2] = {{.fd = s->sock, .events = POLLIN}, {.fd = s->q[qi].err, .events = POLLIN}};
        uint64_t now = vc_now_ms();
        if (now >= end)
            return VC_EV_TIMEOUT;
        int r = poll(p, s->q[qi].err >= 0 ? 2 : 1, 2);
        if (r > 0 && (p[0].revents & (POLLHUP | POLLERR))) {
            s->closed = true;
            return VC_EV_CLOSED;
        }
        if (r > 0 && (p[0].revents & POLLIN)) {
            char c;
            ssize_t n = recv(s->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0) {
                s->closed = true;
                if (vc_take_used(s, qi, u))
                    return VC_EV_USED;
                return VC_EV_CLOSED;
            }
        }
        if (r > 0 && s->q[qi].err >= 0 && (p[1].revents & POLLIN))
            return VC_EV_ERRFD;
    }
}

/* ======================================================================== *
 * virtio-blk requests and the shadow disk
 * ======================================================================== */

#define VC_T_IN 0u
#define VC_T_OUT 1u
#define VC_T_FLUSH 4u
#define VC_T_GET_ID 8u
#define VC_T_DISCARD 11u
#define VC_T_WZ 13u
#define VC_S_OK 0u
#define VC_S_IOERR 1u
#define VC_S_UNSUPP 2u
#define VC_STATUS_SENTINEL 0xa7u /* no status value: tells "never written" */

/* A request: a readable area (header + data out) and a writable area (data
 * in + status), each contiguous in guest memory, cut into descriptors at
 * the given offsets. */
struct vc_req {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
    uint32_t out_len;         /* data the device reads (OUT, segments) */
    uint32_t in_len;          /* data the device writes (IN, GET_ID) */
    const uint8_t *out;       /* the data out (NULL: already in place) */
    unsigned nrcut, nwcut;    /* cuts inside the readable / writable area */
    uint32_t rcut[VC_MAX_SEGS], wcut[VC_MAX_SEGS];
    bool cut_every_byte;      /* one descriptor per byte of both areas */
    enum vc_mode mode;
    unsigned ndirect;
    bool no_status;           /* leave out the status byte */
    uint64_t r_gpa, w_gpa;    /* where the areas are; 0: allocated */
    unsigned q;
    /* results */
    enum vc_ev ev;
    struct vc_used used;
    uint8_t status;
    uint32_t segs;            /* descriptors used */
};

static void vc_req_init(struct vc_req *r, uint32_t type, uint64_t sector, uint32_t out_len, uint32_t in_len)
{
    memset(r, 0, sizeof *r);
    r->type = type;
    r->sector = sector;
    r->out_len = out_len;
    r->in_len = in_len;
    /* the usual framing: header | data out ... data in | status */
    if (out_len)
        r->rcut[r->nrcut++] = 16;
    if (in_len)
        r->wcut[r->nwcut++] = in_len;
}

static uint8_t *vc_req_in(struct vc_req *r) { return vc_g(r->w_gpa); }

/* Lays out the areas and builds the descriptor list. */
static unsigned vc_req_segs(struct vc_sess *s, struct vc_req *r, struct vc_seg *segs)
{
    uint32_t rlen = 16 + r->out_len, wlen = r->in_len + (r->no_status ? 0 : 1);
    if (!r->r_gpa)
        r->r_gpa = vc_alloc(s, rlen, 64);
    if (!r->w_gpa && wlen)
        r->w_gpa = vc_alloc(s, wlen, 64);
    uint8_t *h = vc_g(r->r_gpa);
    vub_put_le32(h, r->type);
    vub_put_le32(h + 4, r->reserved);
    vub_put_le64(h + 8, r->sector);
    if (r->out && r->out_len)
        memcpy(h + 16, r->out, r->out_len);
    if (wlen) {
        memset(vc_g(r->w_gpa), 0xcc, r->in_len);
        if (!r->no_status)
            *vc_g(r->w_gpa + r->in_len) = VC_STATUS_SENTINEL;
    }
    unsigned n = 0;
    uint32_t prev = 0;
    if (r->cut_every_byte) {
        for (uint32_t i = 0; i < rlen && n < VC_MAX_SEGS; i++)
            segs[n++] = (struct vc_seg){r->r_gpa + i, 1, false};
        for (uint32_t i = 0; i < wlen && n < VC_MAX_SEGS; i++)
            segs[n++] = (struct vc_seg){r->w_gpa + i, 1, true};
        return n;
    }
    for (unsigned i = 0; i <= r->nrcut; i++) {
        uint32_t end = i < r->nrcut ? r->rcut[i] : rlen;
        if (end > prev && end <= rlen)
            segs[n++] = (struct vc_seg){r->r_gpa + prev, end - prev, false};
        if (end > prev)
            prev = end;
    }
    prev = 0;
    for (unsigned i = 0; i <= r->nwcut && wlen; i++) {
        uint32_t end = i < r->nwcut ? r->wcut[i] : wlen;
        if (end > prev && end <= wlen)
            segs[n++] = (struct vc_seg){r->w_gpa + prev, end - prev, true};
        if (end > prev)
            prev = end;
    }
    return n;
}

/* Submits a request without waiting. Returns false if the ring is full. */
static bool vc_req_submit(struct vc_sess *s, struct vc_req *r, int *token)
{
    static struct vc_seg segs[VC_MAX_SEGS];
    unsigned n = vc_req_segs(s, r, segs);
    r->segs = n;
    int t = vc_add(s, r->q, segs, n, r->mode, r->ndirect);
    if (t < 0)
        return false;
    if (token)
        *token = t;
    return true;
}

/* Submits, kicks and waits for this request's completion. */
static enum vc_ev vc_req_run(struct vc_sess *s, struct vc_req *r)
{
    int token;
    if (!vc_req_submit(s, r, &token)) {
        r->ev = VC_EV_TIMEOUT;
        return r->ev;
    }
    vc_kick(s, r->q);
    r->ev = vc_wait_used(s, r->q, &r->used, VC_WAIT_MS);
    if (r->ev == VC_EV_USED && r->used.id != (uint32_t)token) {
        /* out of order relative to nothing else: should not happen with one request */
    }
    r->status = (r->no_status || !r->w_gpa) ? VC_STATUS_SENTINEL : *vc_g(r->w_gpa + r->in_len);
    return r->ev;
}

static const char *vc_status_name(uint8_t st)
{
    switch (st) {
    case VC_S_OK: return "OK";
    case VC_S_IOERR: return "IOERR";
    case VC_S_UNSUPP: return "UNSUPP";
    case VC_STATUS_SENTINEL: return "unwritten";
    }
    return "an unknown status";
}

/* Describes a completion for a note. */
static void vc_req_say(const struct vc_req *r, char *buf, size_t len)
{
    if (r->ev != VC_EV_USED)
        snprintf(buf, len, "%s", vc_ev_name(r->ev));
    else
        snprintf(buf, len, "status %s (%u), used len %u", vc_status_name(r->status), r->status, r->used.len);
}

/* ---- the shadow disk ---- */

static bool vc_disk_covers(uint64_t sector, uint64_t bytes)
{
    return vub_range_ok(sector * 512, bytes, vc.disk.bytes) && sector < (UINT64_MAX / 512);
}

static void vc_disk_learn(uint64_t sector, const uint8_t *data, uint64_t bytes)
{
    for (uint64_t i = 0; i < bytes / 512 && vc_disk_covers(sector + i, 512); i++) {
        memcpy(vc.disk.data + (sector + i) * 512, data + i * 512, 512);
        vc.disk.known[sector + i] = 1;
    }
}

static void vc_disk_forget(uint64_t sector, uint64_t sectors)
{
    for (uint64_t i = 0; i < sectors && vc_disk_covers(sector + i, 512); i++)
        vc.disk.known[sector + i] = 0;
}

/* Compares read data with the shadow. Returns the first differing byte
 * offset, or -1 if all known sectors match. Unknown sectors are learnt. */
static int64_t vc_disk_check(uint64_t sector, const uint8_t *data, uint64_t bytes)
{
    for (uint64_t i = 0; i < bytes / 512; i++) {
        uint64_t sec = sector + i;
        if (!vc_disk_covers(sec, 512))
            continue;
        if (!vc.disk.known[sec]) {
            vc_disk_learn(sec, data + i * 512, 512);
            continue;
        }
        const uint8_t *want = vc.disk.data + sec * 512;
        if (memcmp(want, data + i * 512, 512) != 0) {
            for (unsigned b = 0; b < 512; b++)
                if (want[b] != data[i * 512 + b])
                    return (int64_t)(i * 512 + b);
        }
    }
    return -1;
}

/* A read checked against the shadow: false (with a fail note) if it did
 * not complete with OK or returned other bytes than the disk holds. */
static bool vc_read_check(struct vc_sess *s, unsigned q, uint64_t sector, uint32_t bytes, const char *what)
{
    struct vc_req r;
    vc_req_init(&r, VC_T_IN, sector, 0, bytes);
    r.q = q;
    vc_req_run(s, &r);
    if (r.ev != VC_EV_USED || r.status != VC_S_OK) {
        char say[120];
        vc_req_say(&r, say, sizeof say);
        vc_fail("%s: read of %u bytes at sector %llu: %s", what, bytes, (unsigned long long)sector, say);
        return false;
    }
    int64_t bad = vc_disk_check(sector, vc_req_in(&r), bytes);
    if (bad >= 0) {
        uint64_t at = sector + (uint64_t)bad / 512;
        vc_fail("%s: sector %llu differs from what was written there (byte %lld of it)", what,
                (unsigned long long)at, (long long)(bad % 512));
        vc_disk_learn(sector, vc_req_in(&r), bytes); /* report once, then follow the disk */
        return false;
    }
    return true;
}

/* A write of generated data, checked for status OK; the shadow follows. */
static bool vc_write_check(struct vc_sess *s, unsigned q, uint64_t sector, uint32_t bytes, uint64_t seed,
                           const char *what)
{
    static uint8_t buf[1u << 20];
    struct vc_req r;
    if (bytes > sizeof buf)
        return false;
    vc_fill_pattern(buf, bytes, seed);
    vc_req_init(&r, VC_T_OUT, sector, bytes, 0);
    r.out = buf;
    r.q = q;
    vc_req_run(s, &r);
    if (r.ev != VC_EV_USED || r.status != VC_S_OK) {
        char say[120];
        vc_req_say(&r, say, sizeof say);
        vc_fail("%s: write of %u bytes at sector %llu: %s", what, bytes, (unsigned long long)sector, say);
        vc_disk_forget(sector, bytes / 512);
        return false;
    }
    vc_disk_learn(sector, buf, bytes);
    return true;
}

/* Reads the whole shadowed area in chunks; checks (or learns) it. */
static bool vc_disk_verify(struct vc_sess *s, const char *what)
{
    uint32_t chunk = VC_CHUNK;
    if (vc.info.size_max && vc.info.size_max < chunk)
        chunk = vc.info.size_max & ~511u;
    if (chunk < 512)
        chunk = 512;
    for (uint64_t off = 0; off < vc.disk.bytes; off += chunk) {
        uint32_t n = (uint32_t)(vc.disk.bytes - off < chunk ? vc.disk.bytes - off : chunk);
        if (!vc_read_check(s, 0, off / 512, n, what))
            return false;
    }
    return true;
}

/* ======================================================================== *
 * Cases: the table type, shared helpers for outcomes
 * ======================================================================== */

struct vc_case {
    const char *group;
    const char *name;
    const char *tag;
    const char *sentence;
    void (*run)(const struct vc_case *c);
    long param;
    bool hostile; /* may break the session or the back-end: check afterwards */
};

/* What a session looks like after something hostile was done to it. */
enum vc_after { VC_AFTER_ALIVE, VC_AFTER_CLOSED, VC_AFTER_HUNG };

static enum vc_after vc_after(struct vc_sess *s)
{
    if (s->closed || s->sock < 0)
        return VC_AFTER_CLOSED;
    struct vc_reply r;
    /* drain anything pending (a late ack) before the ping */
    for (int i = 0; i < 4; i++) {
        struct pollfd p = {.fd = s->sock, .events = POLLIN};
        if (poll(&p, 1, 0) != 1)
            break;
        if (vc_recv(s->sock, &r, 200) != VC_RX_OK) {
            s->closed = true;
            return VC_AFTER_CLOSED;
        }
    }
    uint64_t v;
    if (!vc_send(s, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0)) {
        s->closed = true;
        return VC_AFTER_CLOSED;
    }
    enum vc_rx rx = vc_recv(s->sock, &r, VC_WAIT_MS);
    if (rx == VC_RX_CLOSED || rx == VC_RX_SHORT) {
        s->closed = true;
        return VC_AFTER_CLOSED;
    }
    if (rx == VC_RX_TIMEOUT)
        return VC_AFTER_HUNG;
    v = vc_u64_of(&r);
    (void)v;
    return VC_AFTER_ALIVE;
}

/* Probes a message the back-end should refuse, with NEED_REPLY set.
 * Acceptable: a non-zero ack, or closing the connection ("may close the
 * connection" on errors, vhost-user.rst "Communication"). A crash or a
 * hang fails; accepting it is judged by the caller (`accepted`). */
enum vc_probe { VC_PROBE_REFUSED, VC_PROBE_CLOSED, VC_PROBE_ACCEPTED, VC_PROBE_SILENT, VC_PROBE_HUNG, VC_PROBE_BAD };

static enum vc_probe vc_probe_raw(struct vc_sess *s, uint32_t req, uint32_t flags, const void *payload,
                                  uint32_t size, const int *fds, unsigned nfds, char *detail, size_t dlen)
{
    detail[0] = '\0';
    if (!vc_send(s, req, flags, payload, size, fds, nfds)) {
        s->closed = true;
        return VC_PROBE_CLOSED;
    }
    uint64_t v = 0;
    enum vc_ack a = vc_get_ack(s, req, &v, detail, dlen);
    switch (a) {
    case VC_ACK_OK: return VC_PROBE_ACCEPTED;
    case VC_ACK_ERR: return VC_PROBE_REFUSED;
    case VC_ACK_CLOSED: return VC_PROBE_CLOSED;
    case VC_ACK_BAD: {
        /* maybe the reply of a request with a reply of its own: judge by caller */
        return VC_PROBE_BAD;
    }
    case VC_ACK_NONE: {
        enum vc_after af = vc_after(s);
        return af == VC_AFTER_ALIVE ? VC_PROBE_SILENT : af == VC_AFTER_CLOSED ? VC_PROBE_CLOSED : VC_PROBE_HUNG;
    }
    }
    return VC_PROBE_BAD;
}

static const char *vc_probe_name(enum vc_probe p)
{
    switch (p) {
    case VC_PROBE_REFUSED: return "refused with a non-zero ack";
    case VC_PROBE_CLOSED: return "closed the connection";
    case VC_PROBE_ACCEPTED: return "accepted it (ack 0)";
    case VC_PROBE_SILENT: return "sent no ack but kept answering";
    case VC_PROBE_HUNG: return "stopped answering";
    case VC_PROBE_BAD: return "sent a malformed reply";
    }
    return "?";
}

/* The usual judgement of a refusal probe. `must` says whether accepting
 * breaks a MUST (fail) or only a robustness expectation (warn). */
static void vc_judge_refusal(enum vc_probe p, const char *detail, bool must, const char *what)
{
    switch (p) {
    case VC_PROBE_REFUSED:
    case VC_PROBE_CLOSED:
        vc_pass("%s: %s", what, vc_probe_name(p));
        break;
    case VC_PROBE_ACCEPTED:
        if (must)
            vc_fail("%s: %s", what, vc_probe_name(p));
        else
            vc_warn("%s: %s", what, vc_probe_name(p));
        break;
    case VC_PROBE_SILENT:
        vc_warn("%s: %s (NEED_REPLY with REPLY_ACK negotiated must be answered)", what, vc_probe_name(p));
        break;
    case VC_PROBE_HUNG:
        vc_fail("%s: %s", what, vc_probe_name(p));
        break;
    case VC_PROBE_BAD:
        vc_fail("%s: %s%s%s", what, vc_probe_name(p), detail[0] ? ": " : "", detail);
        break;
    }
}

/* A session with the defaults (split, queue 0, one region). */
static const struct vc_setup vc_default_setup = {.queues_mask = 1};

static unsigned vc_nq(void)
{
    unsigned n = vc.info.queues;
    return n > VC_MAX_Q ? VC_MAX_Q : n ? n : 1;
}

static bool vc_offers(unsigned bit) { return vc_has_f(vc.info.features, bit); }
static bool vc_offers_p(unsigned bit) { return vc_has_f(vc.info.protocol, bit); }

/* Requires a virtio feature (n/a otherwise). */
static bool vc_need(unsigned bit, const char *name)
{
    if (vc_offers(bit))
        return true;
    vc_na("the back-end does not offer %s", name);
    return false;
}

static bool vc_need_p(unsigned bit, const char *name)
{
    if (vc_offers(VHOST_USER_F_PROTOCOL_FEATURES) && vc_offers_p(bit))
        return true;
    vc_na("the back-end does not offer protocol feature %s", name);
    return false;
}

/* A sector inside the shadowed area that cases may scribble on: the area is
 * split in per-case strips so cases do not rely on each other's data. */
static uint64_t vc_scratch_sector(unsigned k)
{
    uint64_t sectors = vc.disk.bytes / 512;
    return sectors > 64 ? 8 + (k * 8u) % (sectors - 16) : 0;
}

#include "cases-protocol.c"
#include "cases-ring.c"
#include "cases-blk.c"
#include "cases-robust.c"
#include "cases-hostile.c"
#include "cases-inflight.c"

/* In running order; the hostile group is last (its last case may kill). */
static const struct vc_case *const vc_groups[] = {vc_cases_protocol, vc_cases_split, vc_cases_packed,
                                                   vc_cases_blk,      vc_cases_robust, vc_cases_hostile,
                                                   vc_cases_inflight};
static const size_t *const vc_group_counts[] = {&vc_cases_protocol_count, &vc_cases_split_count,
                                                 &vc_cases_packed_count,   &vc_cases_blk_count,
                                                 &vc_cases_robust_count,   &vc_cases_hostile_count,
                                                 &vc_cases_inflight_count};

#include "fuzz.c"

/* ======================================================================== *
 * Discovery: what the back-end offers, and the disk's content
 * ======================================================================== */

static bool vc_discover(void)
{
    struct vc_sess s;
    struct vc_setup o = vc_default_setup;
    o.mem = VC_MEM_NONE;
    if (!vc_handshake(&s, &o)) {
        fprintf(stderr, "vub-conform: cannot talk to the back-end: %s\n", s.why);
        vc_close(&s);
        return false;
    }
    uint64_t f = 0, p = 0, n = 1;
    vc_get_u64(&s, VHOST_USER_GET_FEATURES, &f);
    vc.info.features = f;
    if (vc_has_f(f, VHOST_USER_F_PROTOCOL_FEATURES) && vc_get_u64(&s, VHOST_USER_GET_PROTOCOL_FEATURES, &p))
        vc.info.protocol = p;
    if (vc_has_f(s.protocol, VHOST_USER_PROTOCOL_F_MQ) && vc_get_u64(&s, VHOST_USER_GET_QUEUE_NUM, &n)) {
        vc.info.queue_num_known = true;
    }
    vc.info.queues = n ? (unsigned)n : 1;
    vc_close(&s);
    /* config length: the largest size answered at offset 0 (GET_CONFIG). */
    if (vc_has_f(vc.info.protocol, VHOST_USER_PROTOCOL_F_CONFIG)) {
        for (uint32_t size = 256; size >= 1 && vc.info.config_len == 0; size--) {
            if (s.sock < 0 || s.closed) {
                vc_close(&s);
                if (!vc_handshake(&s, &o))
                    break;
            }
            struct vub_vu_config c = {0, size, 0, {0}};
            struct vc_reply r;
            if (!vc_send(&s, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &c, 12 + size, NULL, 0))
                continue;
            if (vc_recv(s.sock, &r, VC_WAIT_MS) != VC_RX_OK) {
                s.closed = true;
                continue;
            }
            if (r.hdr.size == 12 + size && r.got >= 12 + size) {
                vc.info.config_len = size;
                memcpy(vc.info.config, r.payload + 12, size);
            }
        }
        vc_close(&s);
    }
    const uint8_t *cfg = vc.info.config;
    if (vc.info.config_len >= 8)
        vc.info.capacity = vub_le64(cfg);
    else if (vc.opt.disk_bytes)
        vc.info.capacity = vc.opt.disk_bytes / 512;
    if (vc.info.config_len >= 12 && vc_offers(VIRTIO_BLK_F_SIZE_MAX))
        vc.info.size_max = vub_le32(cfg + 8);
    if (vc.info.config_len >= 16 && vc_offers(VIRTIO_BLK_F_SEG_MAX))
        vc.info.seg_max = vub_le32(cfg + 12);
    if (vc.info.config_len >= 44)
        vc.info.max_discard_seg = vub_le32(cfg + 40);
    if (vc.info.config_len >= 56)
        vc.info.max_wz_seg = vub_le32(cfg + 52);
    uint64_t limit = vc.opt.disk_bytes ? vc.opt.disk_bytes : (4u << 20);
    uint64_t cap_bytes = vc.info.capacity * 512;
    vc.disk.bytes = (cap_bytes < limit ? cap_bytes : limit) & ~511ull;
    vc.disk.data = calloc(1, vc.disk.bytes + 512);
    vc.disk.known = calloc(1, vc.disk.bytes / 512 + 1);
    if (!vc.disk.data || !vc.disk.known)
        return false;
    char fbuf[512], pbuf[512];
    vub_features_str(vc.info.features, VUB_FEATURES_VIRTIO, fbuf, sizeof fbuf);
    vub_features_str(vc.info.protocol, VUB_FEATURES_PROTOCOL, pbuf, sizeof pbuf);
    printf("# back-end offers: %s\n# protocol features: %s\n", fbuf, pbuf);
    printf("# queues %u, config %u bytes, capacity %llu sectors, shadowing %llu bytes\n", vc.info.queues,
           vc.info.config_len, (unsigned long long)vc.info.capacity, (unsigned long long)vc.disk.bytes);
    return true;
}

/* Reads the shadowed area once: from now on every write is tracked. */
static bool vc_disk_load(void)
{
    struct vc_sess s;
    if (vc.disk.bytes == 0)
        return true;
    if (!vc_open(&s, &vc_default_setup)) {
        fprintf(stderr, "vub-conform: cannot set up a session to read the disk: %s\n", s.why);
        vc_close(&s);
        return false;
    }
    vc.verdict = VC_PASS;
    vc.seen[0] = '\0';
    bool ok = vc_disk_verify(&s, "reading the disk");
    vc_close(&s);
    if (!ok)
        fprintf(stderr, "vub-conform: cannot read the disk: %s\n", vc.seen);
    vc.disk.loaded = ok;
    return ok;
}

/* ======================================================================== *
 * The runner
 * ======================================================================== */

/* ---- Clause coverage: which SPEC-NOTES.md tags have a case ---- */

#define VC_MAX_NOTE_TAGS 1024

struct vc_coverage {
    char tags[VC_MAX_NOTE_TAGS][40]; /* the tags SPEC-NOTES.md has entries for */
    bool ran[VC_MAX_NOTE_TAGS];      /* a case for it ran in this run (n/a excluded) */
    unsigned count;
    bool loaded;
};
static struct vc_coverage vc_cov;

/* A requirement tag starts at p: a known prefix, then [A-Z0-9-], not ending in '-'. */
static size_t vc_tag_len(const char *p)
{
    static const char *const prefixes[] = {"VU-", "VQ-", "MEM-", "BLK-", "IMG-", "QCOW2-", "INFL-"};
    bool known = false;
    for (size_t i = 0; i < VUB_ARRAY_LEN(prefixes); i++)
        known |= strncmp(p, prefixes[i], strlen(prefixes[i])) == 0;
    if (!known)
        return 0;
    size_t n = 0;
    while ((p[n] >= 'A' && p[n] <= 'Z') || (p[n] >= '0' && p[n] <= '9') || p[n] == '-')
        n++;
    while (n > 0 && p[n - 1] == '-')
        n--;
    return n < sizeof vc_cov.tags[0] ? n : 0;
}

static void vc_cov_add(const char *p, size_t n)
{
    for (unsigned i = 0; i < vc_cov.count; i++)
        if (strlen(vc_cov.tags[i]) == n && !strncmp(vc_cov.tags[i], p, n))
            return;
    if (vc_cov.count < VC_MAX_NOTE_TAGS)
        snprintf(vc_cov.tags[vc_cov.count++], sizeof vc_cov.tags[0], "%.*s", (int)n, p);
}

/* Reads the entries of SPEC-NOTES.md the way tests/check-tags.sh does: the
 * first cell of a table row, and any tag in brackets. */
static void vc_cov_load(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '|') {
            char *end = strchr(line + 1, '|');
            for (char *p = line + 1; end && p < end; p++) {
                size_t n = (p == line + 1 || !isalnum((unsigned char)p[-1])) ? vc_tag_len(p) : 0;
                if (n)
                    vc_cov_add(p, n), p += n - 1;
            }
        }
        for (char *p = strchr(line, '['); p; p = strchr(p + 1, '[')) {
            size_t n = vc_tag_len(p + 1);
            if (n && p[1 + n] == ']')
                vc_cov_add(p + 1, n);
        }
    }
    fclose(f);
    vc_cov.loaded = true;
}

static int vc_cov_find(const char *tag)
{
    for (unsigned i = 0; i < vc_cov.count; i++)
        if (!strcmp(vc_cov.tags[i], tag))
            return (int)i;
    return -1;
}

/* "covered": some case of the suite names the tag. */
static void vc_cov_print(bool run)
{
    if (!vc_cov.loaded) {
        printf("# clause coverage: %s not found (give --notes FILE)\n", vc.opt.notes_path);
        return;
    }
    unsigned covered = 0, ran = 0, unknown = 0;
    for (unsigned i = 0; i < vc_cov.count; i++) {
        bool any = false;
        for (size_t g = 0; g < VUB_ARRAY_LEN(vc_groups) && !any; g++)
            for (size_t k = 0; k < *vc_group_counts[g] && !any; k++)
                any = !strcmp(vc_groups[g][k].tag, vc_cov.tags[i]);
        covered += any;
        ran += vc_cov.ran[i];
    }
    for (size_t g = 0; g < VUB_ARRAY_LEN(vc_groups); g++)
        for (size_t k = 0; k < *vc_group_counts[g]; k++)
            unknown += vc_cov_find(vc_groups[g][k].tag) < 0;
    printf("# clause coverage: the cases name %u of the %u tags in %s (%u%%)", covered, vc_cov.count,
           vc.opt.notes_path, vc_cov.count ? 100 * covered / vc_cov.count : 0);
    if (run)
        printf("; this run checked %u of them", ran);
    if (unknown)
        printf("; %u cases name a tag %s lacks", unknown, vc.opt.notes_path);
    printf("\n");
}

static bool vc_match(const struct vc_case *c)
{
    const char *p = vc.opt.pattern;
    if (!p)
        return true;
    if (strpbrk(p, "*?["))
        return fnmatch(p, c->name, 0) == 0 || fnmatch(p, c->tag, 0) == 0;
    return strstr(c->name, p) || strstr(c->tag, p) || strstr(c->group, p);
}

static void vc_md_cell(FILE *f, const char *text)
{
    for (const char *t = text; *t; t++) {
        if (*t == '|')
            fputs("\\|", f);
        else if (*t == '\n')
            fputc(' ', f);
        else
            fputc(*t, f);
    }
}

/* A case after which the back-end was alive but broken (the disk check
 * failed): it is restarted, and the case is named in the verdict and in
 * the run's summary. */
static void vc_note_broken(const char *name)
{
    size_t len = strlen(vc.seen);
    snprintf(vc.seen + len, sizeof vc.seen - len, "%sthis case left the back-end broken: restarted",
             len ? "; " : "");
    len = strlen(vc.broken_by);
    if (len + strlen(name) + 3 < sizeof vc.broken_by)
        snprintf(vc.broken_by + len, sizeof vc.broken_by - len, "%s%s", len ? ", " : "", name);
}

/* Records which case brought the back-end down, so the report can name it. */
static void vc_note_restart(void)
{
    if (vc.peer.restarts < VUB_ARRAY_LEN(vc.peer.restarted_after)) {
        vc.peer.restarted_after[vc.peer.restarts] = vc.cur->name;
        snprintf(vc.peer.restart_why[vc.peer.restarts], sizeof vc.peer.restart_why[0], "%s",
                 vc.peer.death[0] ? vc.peer.death : "died");
    }
    vc.peer.restarts++;
}

/* Checks that the back-end survived the case: still alive, still accepts
 * a connection, and the disk is intact. Restarts a spawned back-end. */
static void vc_after_case(void)
{
    if (vc.opt.spawn_cmd) {
        if (vc_peer_gone()) {
            vc_fail("%s", vc.peer.death[0] ? vc.peer.death : "back-end died");
            vc_note_restart();
            if (!vc_peer_start()) {
                fprintf(stderr, "vub-conform: cannot restart the back-end\n");
                vc.peer.lost = true;
            }
            return;
        }
    }
    if (!vc.hostile || vc.peer.lost)
        return;
    struct vc_sess s;
    if (!vc_open(&s, &vc_default_setup)) {
        vc_close(&s);
        if (vc_peer_gone()) {
            vc_fail("afterwards: %s", vc.peer.death);
        } else {
            vc_fail("afterwards a new session could not be set up: %s", s.why);
            if (vc.peer.pid > 0) { /* hung: stop it and start afresh */
                vc_peer_stop();
                snprintf(vc.peer.death, sizeof vc.peer.death, "back-end hung and was killed");
            } else {
                vc.peer.lost = true;
                return;
            }
        }
        vc_note_restart();
        if (vc.opt.spawn_cmd && !vc_peer_start())
            vc.peer.lost = true;
        return;
    }
    bool intact = !vc.disk.loaded || vc_disk_verify(&s, "afterwards, the disk");
    vc_close(&s);
    if (!intact && vc.opt.spawn_cmd) {
        /* Alive but broken: every later case would fail for this one's
         * sake. Start afresh, and say which case it was. */
        vc_note_broken(vc.cur->name);
        vc_peer_stop();
        snprintf(vc.peer.death, sizeof vc.peer.death, "alive, but the disk check failed");
        vc_note_restart();
        enum vc_verdict verdict = vc.verdict;
        char seen[sizeof vc.seen];
        memcpy(seen, vc.seen, sizeof seen);
        memset(vc.disk.known, 0, vc.disk.bytes / 512); /* learn the disk afresh */
        if (!vc_peer_start() || !vc_disk_load())
            vc.peer.lost = true;
        vc.verdict = verdict;
        memcpy(vc.seen, seen, sizeof seen);
        return;
    }
    vc_sleep_ms(1);
    if (vc_peer_gone()) {
        vc_fail("afterwards: %s", vc.peer.death);
        vc_note_restart();
        if (!vc_peer_start())
            vc.peer.lost = true;
    }
}

/* Names the cases that killed (or hung) the back-end, on stdout and after
 * the report's table, so a run that went on past them still says so. */
static void vc_report_restarts(void)
{
    unsigned n = vc.peer.restarts < VUB_ARRAY_LEN(vc.peer.restarted_after) ? vc.peer.restarts
                                                                           : (unsigned)VUB_ARRAY_LEN(vc.peer.restarted_after);
    if (n && vc.report)
        fprintf(vc.report, "\nThe back-end was restarted %u times, after these cases:\n\n", vc.peer.restarts);
    for (unsigned i = 0; i < n; i++) {
        printf("#   restarted after %s: %s\n", vc.peer.restarted_after[i], vc.peer.restart_why[i]);
        if (vc.report) {
            fprintf(vc.report, "- `%s`: ", vc.peer.restarted_after[i]);
            vc_md_cell(vc.report, vc.peer.restart_why[i]);
            fputc('\n', vc.report);
        }
    }
}

static void vc_run_case(const struct vc_case *c)
{
    vc.cur = c;
    vc.verdict = VC_PASS;
    vc.recorded = false;
    vc.seen[0] = '\0';
    vc.hostile = c->hostile || vc.opt.check_every;
    vc.n++;
    if (vc.peer.lost) {
        vc_fail("the back-end no longer accepts connections");
    } else {
        c->run(c);
        /* Passing is something a case says, never the default: a case whose
         * checks were all skipped would otherwise count as proof. */
        if (!vc.recorded)
            vc_fail("the case recorded no verdict (a defect of the case)");
        vc_after_case();
    }
    switch (vc.verdict) {
    case VC_PASS:
        vc.passed++;
        printf("ok %u - %s: %s\n", vc.n, c->tag, c->sentence);
        if (vc.opt.verbose && vc.seen[0])
            printf("#   %s: %s\n", c->name, vc.seen);
        break;
    case VC_WARN:
        vc.warned++;
        printf("ok %u - %s: %s # warn: %s\n", vc.n, c->tag, c->sentence, vc.seen);
        break;
    case VC_NA:
        vc.na++;
        printf("ok %u - %s: %s # SKIP n/a: %s\n", vc.n, c->tag, c->sentence, vc.seen);
        break;
    case VC_FAIL:
        vc.failed++;
        printf("not ok %u - %s: %s\n#   %s: %s\n", vc.n, c->tag, c->sentence, c->name, vc.seen);
        break;
    }
    fflush(stdout);
    if (vc.n <= VUB_ARRAY_LEN(vc.ran)) {
        vc.ran[vc.n - 1].tag = c->tag;
        vc.ran[vc.n - 1].verdict = vc.verdict;
    }
    if (vc.verdict != VC_NA && vc_cov_find(c->tag) >= 0)
        vc_cov.ran[vc_cov_find(c->tag)] = true;
    if (vc.report) {
        fprintf(vc.report, "| `%s` | %s | %s | ", c->name, c->tag, vc_verdict_name[vc.verdict]);
        vc_md_cell(vc.report, vc.seen[0] ? vc.seen : c->sentence);
        fprintf(vc.report, " |\n");
    }
}

/* The report's second table: for each requirement tag the cases run,
 * how many ended with each verdict, and the tag's verdict: fail if any
 * case failed, else warn if any warned, else pass if any passed, else n/a. */
static void vc_report_coverage(FILE *f)
{
    unsigned n = vc.n < VUB_ARRAY_LEN(vc.ran) ? vc.n : (unsigned)VUB_ARRAY_LEN(vc.ran);
    unsigned tags = 0, tags_by[4] = {0};
    fprintf(f, "\n### Coverage by requirement tag\n\n"
               "| tag | cases | pass | warn | n/a | fail | tag verdict |\n|---|---|---|---|---|---|---|\n");
    for (unsigned i = 0; i < n; i++) {
        bool first = true;
        for (unsigned j = 0; j < i && first; j++)
            first = strcmp(vc.ran[j].tag, vc.ran[i].tag) != 0;
        if (!first)
            continue;
        unsigned count[4] = {0}, cases = 0;
        static const unsigned rank[] = {[VC_NA] = 0, [VC_PASS] = 1, [VC_WARN] = 2, [VC_FAIL] = 3};
        enum vc_verdict worst = VC_NA;
        for (unsigned j = i; j < n; j++) {
            if (strcmp(vc.ran[j].tag, vc.ran[i].tag) != 0)
                continue;
            count[vc.ran[j].verdict]++;
            cases++;
            if (rank[vc.ran[j].verdict] > rank[worst])
                worst = vc.ran[j].verdict;
        }
        tags++;
        tags_by[worst]++;
        fprintf(f, "| %s | %u | %u | %u | %u | %u | %s |\n", vc.ran[i].tag, cases, count[VC_PASS], count[VC_WARN],
                count[VC_NA], count[VC_FAIL], vc_verdict_name[worst]);
    }
    fprintf(f, "\n%u tags covered by %u cases: %u pass, %u warn, %u n/a, %u fail (a tag takes its worst "
               "case's verdict: fail, warn, pass, n/a in that order).\n", tags, n, tags_by[VC_PASS], tags_by[VC_WARN], tags_by[VC_NA], tags_by[VC_FAIL]);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vub-conform (--socket PATH | --spawn 'CMD ... {socket} ...') [options]\n"
            "  --socket PATH      a back-end already listening at PATH\n"
            "  --spawn CMD        start the back-end with /bin/sh -c CMD, {socket} replaced by a\n"
            "                     temporary socket path; restarted whenever a case kills it\n"
            "  --list             list the cases and exit\n"
            "  --case PATTERN     run the cases whose name, tag or group contains PATTERN\n"
            "                     (a glob if it has * ? or [)\n"
            "  --report FILE.md   also write a Markdown table of verdicts\n"
            "  --fuzz N --seed S  run N seeded fuzz sessions instead of the cases\n"
            "  --replay SEED:STEP replay one fuzz session up to STEP, verbosely\n"
            "  --disk-bytes N     shadow and verify only the first N bytes (default 4 MiB)\n"
            "  --verbose          say what was seen for passing cases too\n"
            "  --check-every      verify the whole disk after every case (slower)\n"
            "  --log FILE         append the spawned back-end's output to FILE\n"
            "  --notes FILE       SPEC-NOTES.md, for the clause coverage line (default ./SPEC-NOTES.md)\n");
}

static bool vc_number(const char *opt, const char *v, unsigned long long *out)
{
    char *end;
    errno = 0;
    *out = strtoull(v, &end, 0);
    if (errno || !*v || *end || *v == '-') {
        fprintf(stderr, "vub-conform: %s wants a number, not '%s' (try --help)\n", opt, v);
        return false;
    }
    return true;
}

static bool vc_parse(int argc, char **argv)
{
    unsigned long long n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--version")) {
            printf("vub-conform %s\n", VUB_VERSION);
            exit(0);
        } else if (!strcmp(a, "--list")) {
            vc.opt.list = true;
        } else if (!strcmp(a, "--check-every")) {
            vc.opt.check_every = true;
        } else if (!strcmp(a, "--verbose")) {
            vc.opt.verbose = true;
        } else if (v && !strcmp(a, "--socket")) {
            vc.opt.socket_path = v, i++;
        } else if (v && !strcmp(a, "--spawn")) {
            vc.opt.spawn_cmd = v, i++;
        } else if (v && !strcmp(a, "--case")) {
            vc.opt.pattern = v, i++;
        } else if (v && !strcmp(a, "--log")) {
            vc.opt.log_path = v, i++;
        } else if (v && !strcmp(a, "--notes")) {
            vc.opt.notes_path = v, i++;
        } else if (v && !strcmp(a, "--report")) {
            vc.opt.report_path = v, i++;
        } else if (v && !strcmp(a, "--fuzz")) {
            if (!vc_number(a, v, &n))
                return false;
            vc.opt.fuzz_sessions = (unsigned long)n, i++;
        } else if (v && !strcmp(a, "--seed")) {
            if (!vc_number(a, v, &n))
                return false;
            vc.opt.seed = n, i++;
        } else if (v && !strcmp(a, "--disk-bytes")) {
            if (!vc_number(a, v, &n))
                return false;
            if (n < 512) {
                fprintf(stderr, "vub-conform: --disk-bytes wants at least 512, not '%s' (try --help)\n", v);
                return false;
            }
            vc.opt.disk_bytes = n & ~511ull, i++;
        } else if (v && !strcmp(a, "--replay")) {
            char *colon;
            vc.opt.replay_seed = strtoull(v, &colon, 0);
            if (*colon != ':') {
                fprintf(stderr, "vub-conform: --replay wants SEED:STEP\n");
                return false;
            }
            vc.opt.replay_step = strtoul(colon + 1, NULL, 0);
            vc.opt.replay = true, i++;
        } else if (!v && (!strcmp(a, "--socket") || !strcmp(a, "--spawn") || !strcmp(a, "--case") ||
                          !strcmp(a, "--log") || !strcmp(a, "--report") || !strcmp(a, "--fuzz") ||
                          !strcmp(a, "--seed") || !strcmp(a, "--disk-bytes") || !strcmp(a, "--replay"))) {
            fprintf(stderr, "vub-conform: %s needs a value (try --help)\n", a);
            return false;
        } else {
            fprintf(stderr, "vub-conform: unexpected argument '%s' (try --help)\n", a);
            return false;
        }
    }
    if (!vc.opt.list && !vc.opt.socket_path == !vc.opt.spawn_cmd) {
        fprintf(stderr, "vub-conform: give exactly one of --socket and --spawn (try --help)\n");
        return false;
    }
    unsigned matching = 0;
    for (size_t g = 0; g < VUB_ARRAY_LEN(vc_groups); g++)
        for (size_t i = 0; i < *vc_group_counts[g]; i++)
            matching += vc_match(&vc_groups[g][i]);
    if (vc.opt.pattern && matching == 0) {
        fprintf(stderr, "vub-conform: no case matches '%s' (--list shows them)\n", vc.opt.pattern);
        return false;
    }
    return true;
}

/* The end of the back-end's output, its lines joined with "; ": why it
 * did not start (a shell's "not found", the back-end's own complaint). */
static void vc_log_tail(char *out, size_t len)
{
    char buf[300];
    size_t n = 0, used = 0;
    FILE *f = fopen(vc.peer.log, "r");
    out[0] = '\0';
    if (!f)
        return;
    if (fseek(f, -(long)sizeof buf, SEEK_END) != 0)
        rewind(f);
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    while (n > 0 && buf[n - 1] == '\n')
        n--;
    for (size_t i = 0; i < n && used + 3 < len; i++) {
        if (buf[i] == '\n') {
            out[used++] = ';';
            out[used++] = ' ';
        } else {
            out[used++] = buf[i];
        }
    }
    out[used] = '\0';
}

static void vc_cleanup(void)
{
    vc_peer_stop();
    if (vc.peer.dir[0]) {
        unlink(vc.peer.sock);
        if (!vc.opt.log_path)
            unlink(vc.peer.log);
        rmdir(vc.peer.dir);
    }
}

int main(int argc, char **argv)
{
    if (!vc_parse(argc, argv))
        return 2;
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!vc.opt.notes_path)
        vc.opt.notes_path = "SPEC-NOTES.md";
    vc_cov_load(vc.opt.notes_path);
    if (vc.opt.list) {
        for (size_t g = 0; g < VUB_ARRAY_LEN(vc_groups); g++)
            for (size_t i = 0; i < *vc_group_counts[g]; i++) {
                const struct vc_case *c = &vc_groups[g][i];
                if (vc_match(c))
                    printf("%-8s %-44s %-22s %s\n", c->group, c->name, c->tag, c->sentence);
            }
        vc_cov_print(false);
        return 0;
    }
    if (!vc_guest_init()) {
        fprintf(stderr, "vub-conform: cannot create guest memory: %s\n", strerror(errno));
        return 1;
    }
    vc.peer.pid = -1;
    if (vc.opt.spawn_cmd) {
        snprintf(vc.peer.dir, sizeof vc.peer.dir, "/tmp/vub-conform-XXXXXX");
        if (!mkdtemp(vc.peer.dir)) {
            fprintf(stderr, "vub-conform: mkdtemp: %s\n", strerror(errno));
            return 1;
        }
        snprintf(vc.peer.sock, sizeof vc.peer.sock, "%s/vu.sock", vc.peer.dir);
        snprintf(vc.peer.log, sizeof vc.peer.log, "%s", vc.opt.log_path ? vc.opt.log_path : "");
        if (!vc.opt.log_path)
            snprintf(vc.peer.log, sizeof vc.peer.log, "%s/backend.log", vc.peer.dir);
        if (!vc_peer_start()) {
            char tail[400];
            vc_log_tail(tail, sizeof tail);
            fprintf(stderr, "vub-conform: the back-end did not start (%s)%s%s\n",
                    vc.peer.death[0] ? vc.peer.death : "no socket after 10 s", tail[0] ? "; it said: " : "",
                    tail);
            vc_cleanup();
            return 1;
        }
    }
    int rc = 1;
    if (!vc_discover() || !vc_disk_load())
        goto out;
    if (vc.opt.fuzz_sessions || vc.opt.replay) {
        rc = vc_fuzz_main();
        goto out;
    }
    if (vc.opt.report_path) {
        vc.report = fopen(vc.opt.report_path, "w");
        if (!vc.report) {
            fprintf(stderr, "vub-conform: cannot write %s: %s\n", vc.opt.report_path, strerror(errno));
            goto out;
        }
        fprintf(vc.report, "| case | clause tag | verdict | what was seen |\n|---|---|---|---|\n");
    }
    unsigned total = 0;
    for (size_t g = 0; g < VUB_ARRAY_LEN(vc_groups); g++)
        for (size_t i = 0; i < *vc_group_counts[g]; i++)
            total += vc_match(&vc_groups[g][i]);
    printf("1..%u\n", total);
    bool tty = isatty(2);
    uint64_t t0 = vc_now_ms();
    for (size_t g = 0; g < VUB_ARRAY_LEN(vc_groups); g++)
        for (size_t i = 0; i < *vc_group_counts[g]; i++) {
            const struct vc_case *c = &vc_groups[g][i];
            if (!vc_match(c))
                continue;
            if (vc.peer.lost) {
                printf("Bail out! the back-end at %s stopped accepting connections; %u cases not run\n",
                       vc_sock_path(), total - vc.n);
                goto done;
            }
            if (tty)
                fprintf(stderr, "\r[%u/%u] %-60.60s", vc.n + 1, total, c->name);
            else if (vc.n % 25 == 0)
                fprintf(stderr, "vub-conform: %u/%u cases, %llu s\n", vc.n, total,
                        (unsigned long long)(vc_now_ms() - t0) / 1000);
            vc_run_case(c);
        }
done:
    if (tty)
        fprintf(stderr, "\r%80s\r", "");
    if (vc.peer.restarts)
        printf("# the back-end was restarted %u times\n", vc.peer.restarts);
    vc_report_restarts();
    if (vc.broken_by[0]) {
        printf("# alive but broken (disk check failed), restarted after: %s\n", vc.broken_by);
        if (vc.report)
            fprintf(vc.report, "\nThe back-end was left alive but broken (the disk check failed) and restarted "
                               "after: %s.\n", vc.broken_by);
    }
    vc_cov_print(true);
    printf("%u passed, %u failed, %u warned, %u n/a\n", vc.passed, vc.failed, vc.warned, vc.na);
    if (vc.report) {
        vc_report_coverage(vc.report);
        fclose(vc.report);
    }
    rc = vc.failed ? 1 : 0;
out:
    vc_cleanup();
    return rc;
}
