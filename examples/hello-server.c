/* hello-server: a vhost-user-blk back-end in your own event loop.
 *
 *     cc -std=c11 -O2 -I. vub.c examples/hello-server.c -o hello-server
 *     ./hello-server /tmp/hello.sock disk.img
 *
 * One thing: the device never blocks you. vub_dev_pollfds() names the fds
 * it waits on (the socket, then each started queue's kick eventfd); you
 * poll() them with whatever else you wait for, and vub_dev_dispatch()
 * handles what poll() saw. When a front-end leaves, the next one is
 * accepted: the device starts each session from scratch. */
#include "vub.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (argc != 3 || strlen(argv[1]) >= sizeof sa.sun_path)
        return fprintf(stderr, "usage: hello-server SOCKET IMAGE\n"), 2;
    strcpy(sa.sun_path, argv[1]);

    struct vub_image *img;
    struct vub_image_opts io = {0};
    char why[256];
    if (vub_image_open(&img, argv[2], &io, why, sizeof why) != VUB_OK)
        return fprintf(stderr, "hello-server: %s\n", why), 1;
    struct vub_dev_config dc = {.image = img, .num_queues = 1};
    struct vub_dev *dev;
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    unlink(sa.sun_path);
    if (vub_dev_new(&dev, &dc) != VUB_OK || bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 1))
        return perror("hello-server"), 1;

    for (;;) { /* one front-end at a time, for ever */
        if (vub_dev_attach(dev, accept(lfd, NULL, NULL)) != VUB_OK)
            return perror("hello-server: accept"), 1;
        enum vub_err err = VUB_OK;
        while (err == VUB_OK) {
            struct pollfd pfd[VUB_MAX_POLLFDS];
            size_t n = vub_dev_pollfds(dev, pfd, VUB_MAX_POLLFDS);
            if (poll(pfd, n, -1) > 0)
                err = vub_dev_dispatch(dev, pfd, n);
        }
        /* VUB_E_CLOSED: the front-end left; anything else: it broke the protocol */
        printf("hello-server: session over: %s%s%s\n", vub_strerror(err), err == VUB_E_CLOSED ? "" : ": ",
               err == VUB_E_CLOSED ? "" : vub_dev_why(dev));
        fflush(stdout);
        vub_dev_detach(dev);
    }
}
