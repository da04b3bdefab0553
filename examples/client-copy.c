/* client-copy.c - copying I/O over the vub front-end (see client-copy.h). */
#include "client-copy.h"

#include <stdio.h>
#include <string.h>

#define COPY_BOUNCE_BYTES (256u * 1024) /* shared memory one call borrows, at most */
#define COPY_MAX_SEGMENTS 256u          /* vub never allows more per request */
#define COPY_ID_BYTES 20u               /* GET_ID's serial */

/* Covers the first `want` bytes of bounce with iovecs a request may carry:
 * each at most size_max bytes (whole sectors), at most max_segments of
 * them. Returns the bytes covered, a multiple of 512 when want is. */
static size_t copy_segments(const struct vub_client_info *in, uint8_t *bounce, size_t want, struct iovec *iov,
                            unsigned *count)
{
    size_t seg = in->config.size_max_bytes ? in->config.size_max_bytes : COPY_BOUNCE_BYTES, done = 0;
    seg -= seg % 512;
    if (seg == 0)
        seg = 512; /* size_max under a sector: nothing better to do */
    *count = 0;
    while (done < want && *count < in->max_segments && *count < COPY_MAX_SEGMENTS) {
        size_t n = want - done < seg ? want - done : seg;
        iov[(*count)++] = (struct iovec){bounce + done, n};
        done += n;
    }
    return done;
}

/* The copy loop of both directions: a bounce buffer from the pool, filled
 * from buf before each write or emptied into buf after each read. */
static enum vub_err copy_through(struct vub_client *cl, unsigned queue, bool write, uint8_t *buf, size_t len,
                                 uint64_t offset, uint8_t *status)
{
    struct vub_client_queue *q = vub_client_queue(cl, queue);
    struct vub_client_completion c = {0, VUB_BLK_S_NONE, 0};
    struct iovec iov[COPY_MAX_SEGMENTS];
    enum vub_err err = VUB_OK;
    if (status)
        *status = VUB_BLK_S_NONE;
    if (!q || (!buf && len > 0) || len % 512 != 0 || offset % 512 != 0)
        return VUB_E_INVAL;
    uint8_t *bounce = len ? vub_client_alloc(cl, len < COPY_BOUNCE_BYTES ? len : COPY_BOUNCE_BYTES) : NULL;
    if (len && !bounce)
        return VUB_E_NOMEM;
    for (size_t done = 0; err == VUB_OK && done < len;) {
        unsigned count;
        size_t want = len - done < COPY_BOUNCE_BYTES ? len - done : COPY_BOUNCE_BYTES;
        size_t n = copy_segments(vub_client_info(cl), bounce, want, iov, &count);
        struct vub_client_req r = {.op = write ? VUB_CLIENT_WRITE : VUB_CLIENT_READ, .offset = offset + done,
                                   .iov = iov, .iov_count = count};
        if (write)
            memcpy(bounce, buf + done, n);
        err = vub_client_run(q, &r, &c);
        if (err == VUB_OK && !write)
            memcpy(buf + done, bounce, n);
        done += n;
    }
    vub_client_free(cl, bounce);
    if (status)
        *status = c.status;
    return err;
}

enum vub_err copy_pread(struct vub_client *cl, unsigned queue, void *buf, size_t len, uint64_t offset,
                        uint8_t *status)
{
    return copy_through(cl, queue, false, buf, len, offset, status);
}

enum vub_err copy_pwrite(struct vub_client *cl, unsigned queue, const void *buf, size_t len, uint64_t offset,
                         uint8_t *status)
{
    return copy_through(cl, queue, true, (uint8_t *)(uintptr_t)buf, len, offset, status);
}

enum vub_err copy_get_id(struct vub_client *cl, unsigned queue, char id[21], uint8_t *status)
{
    struct vub_client_completion c = {0, VUB_BLK_S_NONE, 0};
    uint8_t *bounce = vub_client_alloc(cl, COPY_ID_BYTES);
    struct iovec iov = {bounce, COPY_ID_BYTES};
    struct vub_client_req r = {.op = VUB_CLIENT_GET_ID, .iov = &iov, .iov_count = 1};
    if (bounce)
        memset(bounce, 0, COPY_ID_BYTES);
    enum vub_err err = bounce ? vub_client_run(vub_client_queue(cl, queue), &r, &c) : VUB_E_NOMEM;
    /* NUL-padded, not terminated when all 20 bytes are used (virtio-blk
     * "Device Operation"). Only the bytes the back-end says it wrote count:
     * the used length less the status byte. */
    size_t n = c.used_bytes > 0 ? c.used_bytes - 1 : 0;
    memset(id, 0, COPY_ID_BYTES + 1);
    if (err == VUB_OK)
        memcpy(id, bounce, n < COPY_ID_BYTES ? n : COPY_ID_BYTES);
    vub_client_free(cl, bounce);
    if (status)
        *status = c.status;
    return err;
}

const char *copy_status_name(uint8_t status, char *buf, size_t len)
{
    static const char *const names[] = {[VUB_BLK_S_OK] = "OK", [VUB_BLK_S_IOERR] = "IOERR",
                                        [VUB_BLK_S_UNSUPP] = "UNSUPP"};
    if (status < sizeof names / sizeof names[0])
        return names[status];
    if (status == VUB_BLK_S_NONE)
        return "NONE";
    snprintf(buf, len, "status %u", status);
    return buf;
}
