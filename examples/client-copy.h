/* client-copy.h - copying I/O over the vub front-end, for programs.
 *
 * vub's requests are zero-copy: they name buffers in the memory the
 * back-end maps (vub_client_alloc()). A program whose data lives anywhere
 * else copies it through such a buffer; these calls do that, and cut a
 * transfer into requests the back-end accepts. They are program code built
 * beside vub.c (vub-io and the front-end tests use them), not part of the
 * library: copy the pair if your program wants them.
 *
 * Each call borrows up to 256 KiB of the client's pool for its duration
 * (VUB_E_NOMEM if the pool has no run that large free) and uses queue
 * `queue`, which must have nothing in flight. Errors are those of
 * vub_client_run() for the first request that fails; *status (if not
 * NULL) gets the status byte of the last request sent. */
#ifndef CLIENT_COPY_H
#define CLIENT_COPY_H

#include "vub.h"

/* len bytes at byte offset of the disk into buf, or from buf to the disk;
 * offset and len are multiples of 512 (VUB_E_INVAL otherwise, before any
 * request is sent). */
enum vub_err copy_pread(struct vub_client *cl, unsigned queue, void *buf, size_t len, uint64_t offset,
                        uint8_t *status);
enum vub_err copy_pwrite(struct vub_client *cl, unsigned queue, const void *buf, size_t len, uint64_t offset,
                         uint8_t *status);

/* The disk's serial (GET_ID): the bytes the back-end wrote, at most 20,
 * NUL-terminated into id[21]. */
enum vub_err copy_get_id(struct vub_client *cl, unsigned queue, char id[21], uint8_t *status);

/* "OK", "IOERR", "UNSUPP", "NONE" (the back-end wrote none) or "status N"
 * in buf (len bytes, the caller's) for any other byte. */
const char *copy_status_name(uint8_t status, char *buf, size_t len);

#endif
