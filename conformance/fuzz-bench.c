/* fuzz-bench.c: the front-end's half of an in-process session, for the
 * libFuzzer targets. Included after ../vub.c (it uses its wire structs,
 * vub_vu_send() and the device's internals).
 *
 * As in tests/test-backend.c, the harness plays the front-end: it owns a
 * socketpair whose other end is attached to a vub_dev, writes messages on
 * its end and calls vub_dev_handle_msg() itself, in one thread, so every
 * run is a deterministic function of its input.
 */
#undef mmap /* the harness's own calls are not the device's: no guards */
#undef munmap
#undef pread
#undef pwrite
#undef preadv
#undef pwritev
#undef fallocate

#define FZ_SERIAL "vub-fuzz-serial"

/* A small raw image in a memfd, opened through its /proc/self/fd path as a
 * user would open a file, with a recognisable pattern (sector number in
 * every byte). The image is registered for the range checks. */
static struct vub_image *fz_image_new(const char *name, uint64_t bytes, bool read_only)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)bytes) != 0)
        fz_die("memfd for the image: %s", strerror(errno));
    static uint8_t sector[512];
    for (uint64_t off = 0; off < bytes; off += sizeof sector) {
        memset(sector, (int)(off / 512) & 0xff, sizeof sector);
        if (pwrite(fd, sector, sizeof sector, (off_t)off) != (ssize_t)sizeof sector)
            fz_die("image write: %s", strerror(errno));
    }
    char path[64], why[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct vub_image *img;
    struct vub_image_opts io = {.read_only = read_only, .format = VUB_FORMAT_RAW};
    if (vub_image_open(&img, path, &io, why, sizeof why) != VUB_OK)
        fz_die("image: %s", why);
    close(fd); /* the image has its own descriptor of the same file */
    fz_image_register(img->fd, vub_image_size(img));
    return img;
}

static struct vub_dev *fz_dev_new(struct vub_image *img, uint16_t num_queues, bool read_only)
{
    struct vub_dev *dev;
    struct vub_dev_config dc = {.image = img, .num_queues = num_queues, .read_only = read_only,
                                .serial = FZ_SERIAL};
    if (vub_dev_new(&dev, &dc) != VUB_OK)
        fz_die("vub_dev_new");
    return dev;
}

/* Attaches a new session; returns the front-end's end of the socket. */
static int fz_attach(struct vub_dev *dev)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        fz_die("socketpair: %s", strerror(errno));
    if (vub_dev_attach(dev, sv[1]) != VUB_OK)
        fz_die("vub_dev_attach");
    return sv[0];
}

/* Poisons whatever the device mapped around each of its regions. Called
 * after every message, since any of them may have changed the table. */
static void fz_poison_regions(const struct vub_dev *dev)
{
    for (unsigned i = 0; i < dev->mem.count; i++)
        fz_poison_outside(dev->mem.regions[i].host, dev->mem.regions[i].size);
}

/* Throws away whatever the device sent us (replies), without blocking, so
 * its socket never fills up. A back-end never sends descriptors; any that
 * came are closed. */
static void fz_drain(int sock)
{
    static uint8_t buf[4096];
    for (;;) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int) * 8)];
        } control;
        struct iovec iov = {buf, sizeof buf};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                            .msg_controllen = sizeof control.buf};
        ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n <= 0)
            return;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
                close(fd);
            }
        }
    }
}

/* White-box invariants of every queue the device would serve (started,
 * enabled, rings mapped), checked after each message and each queue run:
 * what vub_dev_map_ring() and SET_VRING_NUM/BASE checked when the ring was
 * set up must still hold for the ring as it is now. These catch a ring
 * whose layout or position changed under it even when the stray access it
 * leads to stays inside guest memory, where the guards cannot see it. */
static void fz_check_rings(const struct vub_dev *dev)
{
    for (unsigned i = 0; i < dev->cfg.num_queues; i++) {
        const struct vub_dev_queue *q = &dev->queues[i];
        const struct vub_vring *vr = &q->ring;
        if (!q->started || !q->enabled || !vr->desc)
            continue;
        const char *kind = vr->packed_ring ? "packed" : "split";
        uint16_t n = vr->size;
        if (n == 0 || (!vr->packed_ring && (n & (n - 1)) != 0))
            fz_die("queue %u is served as a %s ring of size %u", i, kind, n);
        if (vr->packed_ring && (vr->packed.next_avail >= n || vr->packed.next_used >= n))
            fz_die("queue %u is served as a packed ring of %u at slots %u (avail) and %u (used)", i, n,
                   vr->packed.next_avail, vr->packed.next_used);
        /* vub_ring_load16/store16 need 2-byte aligned host pointers (and the
         * spec's 16/2/4 alignments are of guest addresses): a region whose
         * user address and file offset differ in their low bits breaks
         * that even when the guest addresses are aligned. UBSan does not
         * check atomics, so it is checked here. */
        if (((uintptr_t)vr->desc | (uintptr_t)vr->driver | (uintptr_t)vr->device) & 1)
            fz_die("queue %u is served with a misaligned ring in host memory (desc %p, avail %p, used %p)", i,
                   (void *)vr->desc, (void *)vr->driver, (void *)vr->device);
        uint64_t avail_bytes = vr->packed_ring ? vub_packed_event_bytes() : vub_split_avail_bytes(n);
        uint64_t used_bytes = vr->packed_ring ? vub_packed_event_bytes() : vub_split_used_bytes(n);
        if (vr->desc != vub_mem_range(&dev->mem, VUB_UVA, q->desc_addr, vub_split_desc_bytes(n)) ||
            vr->driver != vub_mem_range(&dev->mem, VUB_UVA, q->avail_addr, avail_bytes) ||
            vr->device != vub_mem_range(&dev->mem, VUB_UVA, q->used_addr, used_bytes))
            fz_die("queue %u is served as a %s ring of %u whose areas (desc 0x%llx, avail 0x%llx, used 0x%llx) "
                   "are not where that layout maps in guest memory", i, kind, n,
                   (unsigned long long)q->desc_addr, (unsigned long long)q->avail_addr,
                   (unsigned long long)q->used_addr);
    }
}

/* FUZZ_VERBOSE=1 in the environment: say what each run did (for seeds
 * and reproducers; far too slow for fuzzing). */
static bool fz_verbose(void)
{
    static int v = -1;
    if (v < 0)
        v = getenv("FUZZ_VERBOSE") != NULL;
    return v;
}

static void fz_say_dev(const struct vub_dev *dev, const char *when)
{
    if (!fz_verbose())
        return;
    struct vub_dev_stats st;
    vub_dev_stats(dev, &st);
    fprintf(stderr, "fuzz: %s: %llu requests (%llu reads, %llu writes, %llu errors), %llu notifications, "
            "%llu rejected messages; why: %s\n", when, (unsigned long long)st.requests,
            (unsigned long long)st.reads, (unsigned long long)st.writes, (unsigned long long)st.errors,
            (unsigned long long)st.notifications, (unsigned long long)st.rejected_messages, vub_dev_why(dev));
}

/* Sends one message, lets the device handle it, drops the reply. */
static enum vub_err fz_msg(struct vub_dev *dev, int sock, uint32_t req, const void *payload, uint32_t size,
                           const int *fds, unsigned nfds)
{
    struct vub_vu_header h = {req, VHOST_USER_VERSION, size};
    if (vub_vu_send(sock, &h, payload, fds, nfds) != VUB_OK)
        fz_die("sending message %u", req);
    enum vub_err err = vub_dev_handle_msg(dev);
    fz_poison_regions(dev);
    fz_drain(sock);
    fz_check_rings(dev);
    if (fz_verbose())
        fprintf(stderr, "fuzz: %s: %s%s%s\n", vub_vu_request_name(req), vub_strerror(err),
                err ? ": " : "", err ? vub_dev_why(dev) : "");
    return err;
}

static enum vub_err fz_msg_u64(struct vub_dev *dev, int sock, uint32_t req, uint64_t v, const int *fds,
                               unsigned nfds)
{
    return fz_msg(dev, sock, req, &v, sizeof v, fds, nfds);
}

static enum vub_err fz_msg_state(struct vub_dev *dev, int sock, uint32_t req, uint32_t index, uint32_t num)
{
    struct vub_vu_vring_state s = {index, num};
    return fz_msg(dev, sock, req, &s, sizeof s, NULL, 0);
}

/* Ends the session and checks that it left nothing behind: every mapping
 * of guest memory gone. (Descriptors are counted by the callers, around
 * the whole run.) */
static void fz_detach(struct vub_dev *dev, int sock)
{
    fz_say_dev(dev, "end of session");
    vub_dev_detach(dev);
    close(sock);
    if (fz_maps_live() != 0)
        fz_die("%zu guest memory mappings left after detach", fz_maps_live());
}

/* The queue calls may only answer these. */
static void fz_check_queue_err(enum vub_err err, const char *what)
{
    if (err != VUB_OK && err != VUB_E_PROTO)
        fz_die("%s returned %s", what, vub_strerror(err));
}
