/* hello-client: one write and one read through the vub front-end.
 *
 *     cc -std=c11 -O2 -I. vub.c examples/hello-client.c -o hello-client
 *     ./hello-client /tmp/hello.sock      (DESTROYS sector 0 of that disk)
 *
 * One thing: buffers come from vub_client_alloc(), memory the back-end
 * has mapped, so it reads and writes them in place; a request names them
 * and vub_client_run() waits for its status. Any vhost-user-blk back-end
 * will do: hello-server, vub-serve, qemu-storage-daemon. */
#include "vub.h"

#include <stdio.h>
#include <string.h>

static enum vub_err run(struct vub_client_queue *q, enum vub_client_op op, void *buf)
{
    struct iovec iov = {buf, 512};
    struct vub_client_req r = {.op = op, .offset = 0, .iov = &iov, .iov_count = 1};
    struct vub_client_completion c;
    return vub_client_run(q, &r, &c); /* VUB_OK only for status OK */
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return fprintf(stderr, "usage: hello-client SOCKET\n"), 2;
    struct vub_client_opts o = {.socket_path = argv[1]};
    struct vub_client *cl;
    char why[256];
    if (vub_client_connect(&cl, &o, why, sizeof why) != VUB_OK)
        return fprintf(stderr, "hello-client: %s\n", why), 1;
    struct vub_client_queue *q = vub_client_queue(cl, 0);
    char *out = vub_client_alloc(cl, 512), *in = vub_client_alloc(cl, 512);
    snprintf(out, 512, "hello, vhost-user-blk");
    memset(in, 0, 512);
    enum vub_err err = run(q, VUB_CLIENT_WRITE, out);
    if (err == VUB_OK)
        err = run(q, VUB_CLIENT_READ, in);
    if (err == VUB_OK && memcmp(in, out, 512) != 0)
        err = VUB_E_IO;
    printf("%s\n", err == VUB_OK ? in : vub_strerror(err));
    vub_client_close(cl);
    return err != VUB_OK;
}
