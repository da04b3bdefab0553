/* vub-trace: record a vhost-user conversation without changing it.
 *
 *   vub-trace [--log FILE] LISTEN BACKEND
 *
 * Listens on the unix socket LISTEN; for the one front-end that connects it
 * opens BACKEND and relays every message both ways unchanged, file
 * descriptors included, writing one line per message: direction (">"
 * front-end to back-end, "<" the answers, ">>"/"<<" on the back-end's own
 * channel), request name, a short payload summary without addresses, and
 * the number of descriptors. Exits when either side closes. It shows what a
 * front-end sends and in what order (the traces in tests/data/traces/).
 *
 * The channel that SET_BACKEND_REQ_FD hands over is traced too: the relay
 * passes one end of a socket pair of its own in place of the front-end's
 * socket and relays between the two.
 *
 * Build: cc -std=c11 -O2 -I. examples/vub-trace.c vub.c -o vub-trace
 */
#define _GNU_SOURCE
#include "vub.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

enum { HDR = 12, MAX_PAYLOAD = 4096, MAX_FDS = 32, MAX_LINKS = 4 };

/* One direction of relaying: bytes read from `from` go to `to`. */
struct link {
    int from, to;
    const char *tag;  /* ">", "<", ">>" or "<<" */
    bool backend;     /* the back-end's channel: its own request names */
};

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static int unix_socket(const char *path, bool listening)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || strlen(path) >= sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (listening) {
        unlink(path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 1))
            return close(fd), -1;
        int front = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        close(fd);
        return front;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa))
        return close(fd), -1;
    return fd;
}

/* Reads exactly n bytes; descriptors that come along (they travel with the
 * first byte of a message) are appended to fds. false at end of stream. */
static bool read_full(int fd, uint8_t *buf, size_t n, int *fds, size_t *nfds)
{
    for (size_t got = 0; got < n;) {
        char anc[CMSG_SPACE(MAX_FDS * sizeof(int))];
        struct iovec iov = {buf + got, n - got};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
                            .msg_control = anc, .msg_controllen = sizeof anc};
        ssize_t r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int passed;
                memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
                if (*nfds < MAX_FDS)
                    fds[(*nfds)++] = passed;
                else
                    close(passed);
            }
        }
        got += (size_t)r;
    }
    return true;
}

static bool send_all(int fd, const uint8_t *buf, size_t n, const int *fds, size_t nfds)
{
    char anc[CMSG_SPACE(MAX_FDS * sizeof(int))] = {0};
    struct iovec iov = {(void *)buf, n};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        mh.msg_control = anc;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        *c = (struct cmsghdr){.cmsg_len = CMSG_LEN(nfds * sizeof(int)),
                              .cmsg_level = SOL_SOCKET, .cmsg_type = SCM_RIGHTS};
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    ssize_t w;
    while ((w = sendmsg(fd, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (w < 0)
        return false;
    /* Descriptors went with the first chunk; a short send ends without them. */
    return (size_t)w == n || send_all(fd, buf + w, n - (size_t)w, NULL, 0);
}

/* A short, stable description of a payload: counts and indices, no
 * addresses, so that traces of two runs can be compared line by line. */
static void summary(char *out, size_t len, uint32_t req, bool reply, const uint8_t *p, uint32_t size)
{
    uint32_t a = size >= 4 ? le32(p) : 0, b = size >= 8 ? le32(p + 4) : 0;
    if (reply && size == 8 && req != 11)
        snprintf(out, len, "0x%llx", (unsigned long long)le64(p));
    else if ((req == 8 || req == 10 || req == 11 || req == 18) && size >= 8)
        snprintf(out, len, "index=%u num=%u", a, b);
    else if (req >= 12 && req <= 14 && size >= 8)
        snprintf(out, len, "index=%u%s", a & 0xff, a & 0x100 ? " nofd" : "");
    else if ((req <= 2 || req == 15 || req == 16 || req == 17 || req == 36 || req >= 39) && size >= 8)
        snprintf(out, len, "0x%llx", (unsigned long long)le64(p));
    else if (req == 9 && size >= 8)
        snprintf(out, len, "index=%u flags=%u", a, b);
    else if (req == 5 && size >= 4)
        snprintf(out, len, "regions=%u", a);
    else if ((req == 24 || req == 25) && size >= 8)
        snprintf(out, len, "offset=%u size=%u", a, b);
    else if ((req == 37 || req == 38) && size >= 24)
        snprintf(out, len, "size=%llu", (unsigned long long)le64(p + 16));
    else
        snprintf(out, len, "%u bytes", size);
}

static const char *backend_name(uint32_t req)
{
    static const char *const names[] = {"unknown request", "IOTLB_MSG", "CONFIG_CHANGE_MSG",
                                        "VRING_HOST_NOTIFIER_MSG"};
    return names[req < 4 ? req : 0];
}

/* Moves one whole message along l and logs it. A SET_BACKEND_REQ_FD socket
 * is swapped for one end of a pair of ours; the new links go into links. */
static bool relay(struct link *l, FILE *log, struct link *links, size_t *nlinks)
{
    static uint8_t msg[HDR + MAX_PAYLOAD];
    int fds[MAX_FDS], mine[2] = {-1, -1};
    size_t nfds = 0;
    bool ok = read_full(l->from, msg, HDR, fds, &nfds);
    uint32_t req = le32(msg), flags = le32(msg + 4), size = le32(msg + 8);
    if (ok && size > MAX_PAYLOAD)
        fprintf(log, "# %s message of %u bytes: more than a vhost-user message holds\n", l->tag, size);
    ok = ok && size <= MAX_PAYLOAD && read_full(l->from, msg + HDR, size, fds, &nfds);
    if (ok && !l->backend && req == 21 && l->tag[0] == '>' && nfds && *nlinks + 2 <= MAX_LINKS &&
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, mine) == 0) {
        links[(*nlinks)++] = (struct link){mine[0], fds[0], "<<", true};
        links[(*nlinks)++] = (struct link){fds[0], mine[0], ">>", true};
        fds[0] = mine[1];
    }
    ok = ok && send_all(l->to, msg, HDR + size, fds, nfds);
    for (size_t i = 0; i < nfds; i++) /* the receiver has its own copies now */
        close(fds[i]);
    if (!ok)
        return false;
    char what[64];
    summary(what, sizeof what, req, flags & 4, msg + HDR, size);
    fprintf(log, "%s %s%s %s%s", l->tag, l->backend ? backend_name(req) : vub_vu_request_name(req),
            flags & 4 ? " reply" : "", what, flags & 8 ? " need_reply" : "");
    fprintf(log, nfds ? " fds=%zu\n" : "\n", nfds);
    fflush(log);
    return true;
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "vub-trace: %s%s%s (try --help)\n", what, arg ? " " : "", arg ? arg : "");
    return 2;
}

int main(int argc, char **argv)
{
    FILE *log = stderr;
    const char *paths[2];
    int npaths = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: vub-trace [--log FILE] LISTEN BACKEND\n"
                   "Relay one vhost-user front-end that connects to LISTEN to the back-end\n"
                   "socket BACKEND, unchanged, logging one line per message (default stderr).\n");
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("vub-trace %s\n", VUB_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--log")) {
            if (++i == argc)
                return usage_error("--log needs a FILE", NULL);
            if (log != stderr)
                fclose(log);
            if (!(log = fopen(argv[i], "w")))
                return fprintf(stderr, "vub-trace: %s: %s\n", argv[i], strerror(errno)), 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("unknown option", argv[i]);
        } else if (npaths == 2) {
            return usage_error("one LISTEN and one BACKEND socket only, not also", argv[i]);
        } else {
            paths[npaths++] = argv[i];
        }
    }
    if (npaths != 2)
        return usage_error("wants LISTEN and BACKEND sockets", NULL);
    int front = unix_socket(paths[0], true), back = front < 0 ? -1 : unix_socket(paths[1], false);
    if (front < 0 || back < 0) {
        fprintf(stderr, "vub-trace: %s: %s\n", front < 0 ? paths[0] : paths[1], strerror(errno));
        return 1;
    }
    struct link links[MAX_LINKS] = {{front, back, ">", false}, {back, front, "<", false}};
    size_t nlinks = 2;
    for (;;) {
        struct pollfd pf[MAX_LINKS];
        for (size_t i = 0; i < nlinks; i++)
            pf[i] = (struct pollfd){.fd = links[i].from, .events = POLLIN};
        if (poll(pf, nlinks, -1) < 0 && errno != EINTR)
            return perror("poll"), 1;
        for (size_t i = 0; i < nlinks; i++) {
            if (!pf[i].revents || relay(&links[i], log, links, &nlinks))
                continue;
            if (i < 2) { /* the main connection ends the trace */
                fprintf(log, "# %s closed\n", i == 0 ? "front-end" : "back-end");
                return 0;
            }
            close(links[2].from), close(links[3].from); /* the back-end channel ended */
            nlinks = 2;
            break;
        }
    }
}
