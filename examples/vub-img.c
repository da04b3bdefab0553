/* vub-img: describe a raw or qcow2 image, or copy its disk to a raw file.
 *
 *   vub-img info    [--output=json] [options] IMAGE
 *   vub-img convert [-p] [options] IMAGE OUT.raw
 *
 * Every byte of the disk goes through the vub image layer. convert writes a
 * sparse file: it asks vub_image_block_status() where the zero runs are and
 * skips them, skips all-zero blocks in what it reads, then sets the size.
 * It never overwrites its own input: an output that is the image or any
 * file of its backing chain (by device and inode) is refused, and the copy
 * goes to a temporary file renamed over OUT.raw only once it is complete
 * and on disk.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "vub.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#define CHUNK_BYTES (1u << 20)           /* one read */
#define BLOCK_BYTES 4096u                /* the unit of "all zero, skip it" */
#define STATUS_BYTES (UINT64_C(1) << 30) /* one block-status question */

static const char usage[] =
    "usage: vub-img info [--output=human|json] [options] IMAGE\n"
    "       vub-img convert [-p] [options] IMAGE OUT.raw\n"
    "  --output=json          info as JSON, with qemu-img's key names\n"
    "  -p                     convert: show progress (on a terminal)\n"
    "options:\n"
    "  --snapshot NAME        read this internal snapshot (id or name) of a qcow2 image\n"
    "  --allow-data-file      follow the external data file a qcow2 image names\n"
    "  --backing-format FMT   raw|qcow2: format of a backing file whose format is not recorded\n"
    "  --format FMT           raw|qcow2: the image's format (default: detected); raw takes\n"
    "                         any file, also one that looks like another format, as it is\n"
    "  -U, --force-share      read an image another process is writing (like qemu-img -U)\n"
    "  --help, --version      this text; the version\n";

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "vub-img: %s: %s\n", what, why);
    return 1;
}

/* qcow2 feature bits by name, as qemu-img calls them, indexed by the
 * feature name table's "Type of feature" and the bit. */
static const char *const feature_names[3][5] = {
    {"dirty", "corrupt", "data-file", "compression-type", "extended-l2"},
    {"lazy-refcounts"},
    {"bitmaps", "raw-data-file"},
};
static const char *const feature_kinds[3] = {"incompatible", "compatible", "autoclear"};

/* "features: dirty compatible-bit33("name") autoclear-bit20": our name for
 * a bit we know, else the image's own name for it, else its number. */
static void print_features(const struct vub_image *img, const struct vub_image_info *in)
{
    const uint64_t bits[3] = {in->incompatible_features, in->compatible_features, in->autoclear_features};
    bool any = false;
    printf("features:");
    for (unsigned kind = 0; kind < 3; kind++) {
        for (unsigned bit = 0; bit < 64; bit++) {
            char own[47];
            const char *known = bit < 5 ? feature_names[kind][bit] : NULL;
            if (!(bits[kind] >> bit & 1))
                continue;
            any = true;
            if (known)
                printf(" %s", known);
            else if (vub_image_feature_name(img, kind, bit, own))
                printf(" %s-bit%u(\"%s\")", feature_kinds[kind], bit, own);
            else
                printf(" %s-bit%u", feature_kinds[kind], bit);
        }
    }
    printf("%s\n", any ? "" : " (none)");
}

static void print_info(const char *path, const struct vub_image *img)
{
    struct vub_image_info in;
    vub_image_info(img, &in);
    printf("image: %s\nformat: %s\nvirtual size: %llu bytes\nfile size: %llu bytes\n", path,
           in.format == VUB_FORMAT_QCOW2 ? "qcow2" : "raw", (unsigned long long)in.size_bytes,
           (unsigned long long)in.file_bytes);
    if (in.format != VUB_FORMAT_QCOW2)
        return;
    printf("cluster size: %u\nversion: %u\nrefcount bits: %u\ncompression: %s\n", 1u << in.cluster_bits,
           in.version, in.refcount_bits, in.compression);
    print_features(img, &in);
    if (in.data_file)
        printf("data file: %s\n", in.data_file);
    printf("snapshots: %u\n", in.snapshot_count);
    for (uint32_t i = 0; i < in.snapshot_count; i++) {
        struct vub_image_snapshot s;
        if (vub_image_snapshot(img, i, &s) != VUB_OK) {
            printf("  %u: (unreadable)\n", i);
            continue;
        }
        time_t t = (time_t)s.date_sec;
        char date[32] = "?";
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
        printf("%s id %s name %s size %llu vm-state %llu date %s vm-clock %llu.%09llu\n",
               (int32_t)i == in.snapshot_index ? "* (reading)" : " ", s.id, s.name,
               (unsigned long long)s.size_bytes, (unsigned long long)s.vm_state_bytes, date,
               (unsigned long long)(s.vm_clock_nsec / 1000000000u),
               (unsigned long long)(s.vm_clock_nsec % 1000000000u));
    }
    for (unsigned depth = 1; in.backing; depth++) {
        printf("backing file %u: %s (recorded as \"%s\", format %s)\n", depth, in.backing_path,
               in.backing_name, in.backing_format);
        const struct vub_image *b = in.backing;
        vub_image_info(b, &in);
        printf("  format %s, virtual size %llu bytes\n", in.format == VUB_FORMAT_QCOW2 ? "qcow2" : "raw",
               (unsigned long long)in.size_bytes);
    }
}

/* ---- info --output=json: qemu-img's key names where the meaning is the same ---- */

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void json_snapshots(const struct vub_image *img, uint32_t count)
{
    printf(",\n    \"snapshots\": [");
    for (uint32_t i = 0; i < count; i++) {
        struct vub_image_snapshot s;
        if (vub_image_snapshot(img, i, &s) != VUB_OK)
            continue;
        printf("%s\n        {\"id\": ", i ? "," : "");
        json_string(s.id);
        printf(", \"name\": ");
        json_string(s.name);
        printf(", \"vm-state-size\": %llu, \"date-sec\": %u, \"date-nsec\": %u, \"vm-clock-sec\": %llu, "
               "\"vm-clock-nsec\": %llu}",
               (unsigned long long)s.vm_state_bytes, s.date_sec, s.date_nsec,
               (unsigned long long)(s.vm_clock_nsec / 1000000000u), (unsigned long long)(s.vm_clock_nsec % 1000000000u));
    }
    printf("\n    ]");
}

/* qcow2 header feature bits, as qemu-img names them in "format-specific". */
#define QCOW2_DIRTY_BIT 0
#define QCOW2_CORRUPT_BIT 1
#define QCOW2_LAZY_REFCOUNTS_BIT 0

static void print_json(const char *path, const struct vub_image *img)
{
    struct vub_image_info in;
    struct stat st;
    vub_image_info(img, &in);
    bool qcow2 = in.format == VUB_FORMAT_QCOW2;
    printf("{\n    \"filename\": ");
    json_string(path);
    printf(",\n    \"format\": \"%s\",\n    \"virtual-size\": %llu", qcow2 ? "qcow2" : "raw",
           (unsigned long long)in.size_bytes);
    if (stat(path, &st) == 0)
        printf(",\n    \"actual-size\": %llu", (unsigned long long)st.st_blocks * 512);
    printf(",\n    \"dirty-flag\": %s", in.incompatible_features >> QCOW2_DIRTY_BIT & 1 ? "true" : "false");
    if (qcow2) {
        printf(",\n    \"cluster-size\": %u", 1u << in.cluster_bits);
        printf(",\n    \"format-specific\": {\n        \"type\": \"qcow2\",\n        \"data\": {\n"
               "            \"compat\": \"%s\",\n            \"compression-type\": \"%s\",\n"
               "            \"refcount-bits\": %u",
               in.version >= 3 ? "1.1" : "0.10", in.compression, in.refcount_bits);
        if (in.version >= 3)
            printf(",\n            \"lazy-refcounts\": %s,\n            \"corrupt\": %s,\n"
                   "            \"extended-l2\": %s",
                   in.compatible_features >> QCOW2_LAZY_REFCOUNTS_BIT & 1 ? "true" : "false",
                   in.incompatible_features >> QCOW2_CORRUPT_BIT & 1 ? "true" : "false",
                   in.extended_l2 ? "true" : "false");
        if (in.data_file) {
            printf(",\n            \"data-file\": ");
            json_string(in.data_file);
        }
        printf("\n        }\n    }");
        if (in.backing_name) {
            printf(",\n    \"backing-filename\": ");
            json_string(in.backing_name);
            printf(",\n    \"full-backing-filename\": ");
            json_string(in.backing_path);
            if (in.backing_format) {
                printf(",\n    \"backing-filename-format\": ");
                json_string(in.backing_format);
            }
        }
        if (in.snapshot_count)
            json_snapshots(img, in.snapshot_count);
    }
    printf("\n}\n");
}

/* ---- convert ---- */

/* "    (45.00/100%)" on stderr, as qemu-img -p shows it, when asked for and
 * stderr is a terminal; redrawn only when the hundredths change. */
struct progress {
    bool on;
    uint64_t total;
    long shown;
};

static void progress(struct progress *p, uint64_t done)
{
    if (!p->on)
        return;
    long now = p->total ? (long)((double)done * 10000.0 / (double)p->total) : 10000;
    if (now == p->shown)
        return;
    p->shown = now;
    fprintf(stderr, "\r    (%ld.%02ld/100%%)%s", now / 100, now % 100, done >= p->total ? "\n" : "");
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Writes the non-zero blocks of buf[0..n) to out at off. */
static bool write_sparse(int out, const uint8_t *buf, size_t n, uint64_t off)
{
    for (size_t at = 0; at < n;) {
        size_t len = n - at < BLOCK_BYTES ? n - at : BLOCK_BYTES;
        if (all_zero(buf + at, len)) {
            at += len;
            continue;
        }
        size_t end = at + len; /* grow the run over the following non-zero blocks */
        while (end < n) {
            size_t next = n - end < BLOCK_BYTES ? n - end : BLOCK_BYTES;
            if (all_zero(buf + end, next))
                break;
            end += next;
        }
        for (size_t w = at; w < end;) {
            ssize_t r = pwrite(out, buf + w, end - w, (off_t)(off + w));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return false;
            w += (size_t)r;
        }
        at = end;
    }
    return true;
}

/* Refuses an existing output that the image reads, or that is not a
 * regular file (a rename would replace a device node, not fill it). */
static int check_output(const struct vub_image *img, const char *out_path)
{
    int fd = open(out_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 0 : fail(out_path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (vub_image_uses_file(img, fd))
        rc = fail(out_path, "is the image itself or a file of its backing chain; "
                            "choose another output, or it would be overwritten");
    else if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = fail(out_path, "exists and is not a regular file; convert writes regular files only");
    close(fd);
    return rc;
}

/* A temporary file beside out_path, with the mode a new file would get. */
static int create_temp(const char *out_path, char **tmp_path)
{
    if (asprintf(tmp_path, "%s.vub-XXXXXX", out_path) < 0)
        return -1;
    int fd = mkostemp(*tmp_path, O_CLOEXEC);
    if (fd < 0) {
        free(*tmp_path);
        *tmp_path = NULL;
        return -1;
    }
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    return fd;
}

static int convert(const char *path, struct vub_image *img, const char *out_path, bool show_progress)
{
    if (check_output(img, out_path) != 0)
        return 1;
    uint64_t size = vub_image_size(img);
    struct progress pr = {show_progress && isatty(STDERR_FILENO), size, -1};
    uint8_t *buf = malloc(CHUNK_BYTES);
    char *tmp_path = NULL;
    int out = buf ? create_temp(out_path, &tmp_path) : -1;
    if (out < 0) {
        free(buf);
        return fail(out_path, strerror(errno));
    }
    int rc = 0;
    for (uint64_t off = 0; off < size && rc == 0;) {
        uint64_t run;
        bool zero;
        enum vub_err err = vub_image_block_status(img, off, size - off < STATUS_BYTES ? size - off : STATUS_BYTES,
                                                  &run, &zero);
        if (err != VUB_OK) {
            rc = fail(path, vub_image_why(img)[0] ? vub_image_why(img) : vub_strerror(err));
            break;
        }
        for (uint64_t done = 0; !zero && done < run && rc == 0;) {
            size_t n = run - done < CHUNK_BYTES ? (size_t)(run - done) : CHUNK_BYTES;
            struct iovec iov = {buf, n};
            err = vub_image_readv(img, off + done, &iov, 1);
            if (err != VUB_OK)
                rc = fail(path, vub_image_why(img)[0] ? vub_image_why(img) : vub_strerror(err));
            else if (!write_sparse(out, buf, n, off + done))
                rc = fail(out_path, strerror(errno));
            done += n;
            progress(&pr, off + done);
        }
        off += run;
        progress(&pr, off);
    }
    /* Durable before it replaces anything: a crash leaves the old OUT.raw. */
    if (rc == 0 && (ftruncate(out, (off_t)size) != 0 || fdatasync(out) != 0))
        rc = fail(tmp_path, strerror(errno));
    if (close(out) != 0 && rc == 0)
        rc = fail(tmp_path, strerror(errno));
    if (rc == 0 && rename(tmp_path, out_path) != 0)
        rc = fail(out_path, strerror(errno));
    if (rc != 0)
        unlink(tmp_path);
    free(tmp_path);
    free(buf);
    return rc;
}

/* Says what is wrong with the command line, in one line; exit status 2. */
static int usage_error(const char *what, const char *value)
{
    fprintf(stderr, "vub-img: %s%s%s (try --help)\n", what, value ? " " : "", value ? value : "");
    return 2;
}

struct cli {
    struct vub_image_opts opts;
    const char *args[3]; /* COMMAND IMAGE [OUT.raw] */
    int nargs;
    bool json;           /* info --output=json */
    bool progress;       /* convert -p */
};

static int parse_format(const char *opt, const char *v, enum vub_format *out)
{
    if (strcmp(v, "raw") != 0 && strcmp(v, "qcow2") != 0) {
        fprintf(stderr, "vub-img: %s wants raw or qcow2, not '%s' (try --help)\n", opt, v);
        return 2;
    }
    *out = strcmp(v, "raw") == 0 ? VUB_FORMAT_RAW : VUB_FORMAT_QCOW2;
    return 0;
}

static int parse_output(const char *v, bool *json)
{
    if (strcmp(v, "json") != 0 && strcmp(v, "human") != 0) {
        fprintf(stderr, "vub-img: --output wants human or json, not '%s' (try --help)\n", v);
        return 2;
    }
    *json = strcmp(v, "json") == 0;
    return 0;
}

/* Returns 0 to go on, 2 for a usage error, -1 after --help/--version. */
static int parse_args(int argc, char **argv, struct cli *c)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool valued = !strcmp(a, "--snapshot") || !strcmp(a, "--format") || !strcmp(a, "--backing-format") ||
                      !strcmp(a, "--output");
        if (valued && !v)
            return usage_error(a, "needs a value");
        int rc = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return -1;
        } else if (!strcmp(a, "--version")) {
            printf("vub-img %s\n", VUB_VERSION);
            return -1;
        } else if (!strcmp(a, "--allow-data-file")) {
            c->opts.allow_data_file = true;
        } else if (!strcmp(a, "--force-share") || !strcmp(a, "-U")) {
            c->opts.force_share = true;
        } else if (!strcmp(a, "-p")) {
            c->progress = true;
        } else if (!strncmp(a, "--output=", 9)) {
            rc = parse_output(a + 9, &c->json);
        } else if (valued) {
            i++;
            if (!strcmp(a, "--snapshot"))
                c->opts.snapshot = v;
            else if (!strcmp(a, "--output"))
                rc = parse_output(v, &c->json);
            else
                rc = parse_format(a, v, !strcmp(a, "--format") ? &c->opts.format : &c->opts.backing_format);
        } else if (a[0] == '-' && a[1] != '\0') {
            return usage_error("unknown option", a);
        } else if (c->nargs < 3) {
            c->args[c->nargs++] = a;
        } else {
            return usage_error("too many arguments, from", a);
        }
        if (rc)
            return rc;
    }
    if (c->nargs == 0)
        return usage_error("no command: info IMAGE or convert IMAGE OUT.raw", NULL);
    if (strcmp(c->args[0], "info") && strcmp(c->args[0], "convert"))
        return usage_error("unknown command (info or convert):", c->args[0]);
    if (!strcmp(c->args[0], "info") ? c->nargs != 2 : c->nargs != 3)
        return usage_error(!strcmp(c->args[0], "info") ? "info takes one IMAGE" : "convert takes IMAGE OUT.raw",
                           NULL);
    return 0;
}

int main(int argc, char **argv)
{
    struct cli c = {.opts = {.read_only = true}};
    int rc = parse_args(argc, argv, &c);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *path = c.args[1];
    struct vub_image *img;
    char why[512] = "";
    enum vub_err err = vub_image_open(&img, path, &c.opts, why, sizeof why);
    if (err != VUB_OK) {
        fprintf(stderr, "vub-img: %s%s\n", why[0] ? why : vub_strerror(err),
                strstr(why, "no recorded format") ? "; here: --backing-format raw|qcow2" : "");
        return 1;
    }
    if (c.opts.snapshot && vub_image_format(img) != VUB_FORMAT_QCOW2)
        rc = fail(path, "--snapshot needs a qcow2 image; this one is raw");
    else if (!strcmp(c.args[0], "convert"))
        rc = convert(path, img, c.args[2], c.progress);
    else if (c.json)
        print_json(path, img);
    else
        print_info(path, img);
    vub_image_close(img);
    return rc;
}
