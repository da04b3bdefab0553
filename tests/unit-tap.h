/* unit-tap.h: what tests/test-inflate.c and tests/test-zstd.c share.
 *
 * TAP-style reporting ("ok - <clause>", "not ok - <clause>", "#   " for
 * diagnostics, counted for the summary line), a checked malloc, a whole-file
 * reader for fixtures and a CRC-32 to check their output against. Included
 * by each test after ../vub.c; everything here is static.
 */

static int checks_run, checks_failed;

static void report(int pass, const char *fmt, ...)
{
    va_list ap;
    checks_run++;
    if (!pass)
        checks_failed++;
    printf("%s - ", pass ? "ok" : "not ok");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

static void diag(const char *fmt, ...)
{
    va_list ap;
    printf("#   ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* CRC-32 (IEEE), bit by bit: the fixtures' manifests record it. */
static uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = crc >> 1 ^ (0xedb88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

/* Reads dir/name+ext whole into a malloc'd buffer; NULL if it cannot be opened. */
static uint8_t *read_file(const char *dir, const char *name, const char *ext, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, ext);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            uint8_t *bigger = realloc(buf, cap);
            if (!bigger) {
                fprintf(stderr, "out of memory\n");
                exit(2);
            }
            buf = bigger;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}
