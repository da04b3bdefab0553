/* test-zstd: vub's RFC 8878 zstd decoder, proved one clause at a time.
 *
 * Build and run from the repository root:
 *   cc -std=c11 -Wall -Wextra -Werror -O2 tests/test-zstd.c -o /tmp/tz && /tmp/tz
 * An optional argument names the fixture directory (default tests/data/zstd).
 *
 * Every check prints "ok - <clause>" or "not ok - <clause>"; the exit status is
 * non-zero if any failed. Frames come from three places:
 *   1. hand-made: small builders below write frames byte by byte, valid and
 *      malformed, each checked for its exact result and output; together
 *      they produce every result in enum vub_zstd_result;
 *   2. the zstd tool: tests/data/zstd/ holds frames from Debian's zstd (the
 *      libzstd QEMU uses; gen.py), checked by length and CRC-32 against the
 *      data compressed, cut at every byte, and walked here to prove that they
 *      reach every block, literals and sequence mode of the format;
 *   3. mutation: a seeded loop damages those frames and checks that nothing
 *      overruns (run it under -fsanitize=address,undefined) and that the
 *      fast decoder and the reference decoder always agree.
 * Every decode runs on heap copies of exactly the given sizes (input, output
 * and the literals buffer), so an access one byte out of bounds is a
 * sanitizer error, and runs both decoders.
 *
 * The test includes vub.c to reach its static functions; _GNU_SOURCE below
 * is vub.c's own, defined first because this file includes system headers
 * before it.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../vub.c"
#include "unit-tap.h"

/* ---------------------------------------------------------------------------
 * Reporting (unit-tap.h), and which results were seen
 * ------------------------------------------------------------------------- */

/* Which results the hand-made frames have produced, to prove the table is covered. */
static int result_seen[1 - VUB_ZSTD_RESULT_MIN];

/* ---------------------------------------------------------------------------
 * Running the decoder: both decoders, exact-size buffers
 * ------------------------------------------------------------------------- */

struct outcome {
    int result;        /* the fast decoder's result (vub_zstd_decompress's) */
    size_t dst_done;
    size_t src_done;
    uint8_t *out;      /* dst_len bytes, owned; the fast decoder's output */
    int agree;         /* the reference decoder gave the same everything, and
                          wrote nothing past dst_done */
};

static struct vub_zstd_work *work; /* tables; each run gets a fresh literals buffer */

/* Decodes with one decoder. The input is copied to a buffer of exactly
 * src_len bytes, the literals buffer is exactly lit_bytes long, and an empty
 * input or output is passed as NULL, which the decoder must never touch. */
static int run_one(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_len, size_t lit_bytes,
                   size_t *dst_done, size_t *src_done, int fast)
{
    uint8_t *in = src_len ? xmalloc(src_len) : NULL;
    if (src_len)
        memcpy(in, src, src_len);
    uint8_t *lit = lit_bytes ? xmalloc(lit_bytes) : NULL;
    memset(work, 0xa5, sizeof *work); /* no state may leak from one call to the next */
    work->lit = lit;
    work->lit_bytes = lit_bytes;
    int result = vub_zstd_run(dst_len ? dst : NULL, dst_len, dst_done, in, src_len, src_done, work, fast);
    free(lit);
    free(in);
    return result;
}

static struct outcome run_lit(const uint8_t *src, size_t src_len, size_t dst_len, size_t lit_bytes)
{
    struct outcome o;
    uint8_t *ref = xmalloc(dst_len);
    size_t ref_dst, ref_src;
    memset(ref, 0xcd, dst_len);
    int ref_result = run_one(src, src_len, ref, dst_len, lit_bytes, &ref_dst, &ref_src, 0);
    int ref_clean = 1; /* the reference writes nothing past dst_done, error or not */
    for (size_t i = ref_dst; i < dst_len; i++)
        ref_clean &= ref[i] == 0xcd;
    o.out = xmalloc(dst_len);
    o.result = run_one(src, src_len, o.out, dst_len, lit_bytes, &o.dst_done, &o.src_done, 1);
    o.agree = ref_clean && ref_result == o.result && ref_dst == o.dst_done && ref_src == o.src_done &&
              (o.dst_done == 0 || memcmp(ref, o.out, o.dst_done) == 0);
    free(ref);
    return o;
}

static struct outcome run(const uint8_t *src, size_t src_len, size_t dst_len)
{
    return run_lit(src, src_len, dst_len, vub_zstd_lit_bytes(dst_len));
}

static void note_result(int result)
{
    if (result <= 0 && result >= VUB_ZSTD_RESULT_MIN)
        result_seen[result - VUB_ZSTD_RESULT_MIN] = 1;
}

/* One check: decoding src into dst_len bytes gives result want with exactly
 * want_out[0..want_len) written, both decoders agreeing. */
static void expect(const char *clause, const uint8_t *src, size_t src_len, size_t dst_len, int want,
                   const uint8_t *want_out, size_t want_len)
{
    struct outcome o = run(src, src_len, dst_len);
    int pass = o.agree && o.result == want && o.dst_done == want_len &&
               (want_len == 0 || memcmp(o.out, want_out, want_len) == 0);
    note_result(o.result);
    report(pass, "%s", clause);
    if (!pass)
        diag("got %d (%s), dst_done %zu, src_done %zu, decoders %s; want %d (%s), %zu bytes", o.result,
             vub_zstd_strerror(o.result), o.dst_done, o.src_done, o.agree ? "agree" : "DISAGREE", want,
             vub_zstd_strerror(want), want_len);
    free(o.out);
}

/* An error check: the result, whatever the output. */
static void expect_error(const char *clause, const uint8_t *src, size_t src_len, size_t dst_len, int want)
{
    struct outcome o = run(src, src_len, dst_len);
    note_result(o.result);
    report(o.agree && o.result == want, "%s", clause);
    if (!(o.agree && o.result == want))
        diag("got %d (%s), decoders %s; want %d (%s)", o.result, vub_zstd_strerror(o.result),
             o.agree ? "agree" : "DISAGREE", want, vub_zstd_strerror(want));
    free(o.out);
}

/* ---------------------------------------------------------------------------
 * Frame builders: bytes in the order RFC 8878 lays them out
 * ------------------------------------------------------------------------- */

struct buf {
    uint8_t b[8192];
    size_t n;
};

static void put(struct buf *f, const uint8_t *p, size_t n)
{
    if (n == 0)
        return;
    if (f->n + n > sizeof f->b) {
        fprintf(stderr, "frame builder overflow\n");
        exit(2);
    }
    memcpy(f->b + f->n, p, n);
    f->n += n;
}

static void put8(struct buf *f, unsigned v)
{
    uint8_t b = (uint8_t)v;
    put(f, &b, 1);
}

/* Bytes written inline: PUT(f, 0x12, 0x34). */
#define PUT(f, ...)                                                                                      \
    do {                                                                                                 \
        const uint8_t bytes_[] = {__VA_ARGS__};                                                          \
        put((f), bytes_, sizeof bytes_);                                                                 \
    } while (0)

static void put_magic(struct buf *f)
{
    PUT(f, 0x28, 0xb5, 0x2f, 0xfd);
}

/* A frame header with Single_Segment and a 1-byte Frame_Content_Size. */
static void frame_single(struct buf *f, unsigned content_size)
{
    put_magic(f);
    PUT(f, 0x20, (uint8_t)content_size);
}

/* A frame header with a Window_Descriptor and no content size. */
static void frame_window(struct buf *f, unsigned window_descriptor)
{
    put_magic(f);
    PUT(f, 0x00, (uint8_t)window_descriptor);
}

/* Block_Header: Last_Block, Block_Type, Block_Size, little-endian. */
static void block_header(struct buf *f, int last, unsigned type, size_t size)
{
    uint32_t h = (uint32_t)last | type << 1 | (uint32_t)size << 3;
    PUT(f, (uint8_t)h, (uint8_t)(h >> 8), (uint8_t)(h >> 16));
}

static void raw_block(struct buf *f, int last, const uint8_t *data, size_t n)
{
    block_header(f, last, 0, n);
    put(f, data, n);
}

/* A Compressed_Block holding content c. */
static void compressed_block(struct buf *f, int last, const struct buf *c)
{
    block_header(f, last, 2, c->n);
    put(f, c->b, c->n);
}

/* A forward little-endian bit writer, for FSE table descriptions. */
struct bitw {
    struct buf *f;
    uint32_t acc;
    unsigned count;
};

static void bitw_put(struct bitw *w, uint32_t value, unsigned bits)
{
    for (unsigned i = 0; i < bits; i++) {
        w->acc |= (value >> i & 1) << w->count;
        if (++w->count == 8) {
            put8(w->f, w->acc);
            w->acc = 0;
            w->count = 0;
        }
    }
}

static void bitw_flush(struct bitw *w)
{
    if (w->count)
        put8(w->f, w->acc);
    w->acc = 0;
    w->count = 0;
}

static uint8_t ramp[2048]; /* 0, 1, 2, ...: output whose every byte is known */

/* ---------------------------------------------------------------------------
 * XXH64 and repeat offsets, against the values the specifications give
 * ------------------------------------------------------------------------- */

static void test_xxh64(void)
{
    const uint8_t abc[] = {'a', 'b', 'c'};
    /* Known answers, and the checksums the zstd tool wrote for "" and "abc". */
    report(vub_xxh64(NULL, 0, 0) == UINT64_C(0xEF46DB3751D8E999),
           "ZSTD-CHECKSUM: XXH64 of no bytes is EF46DB3751D8E999");
    report(vub_xxh64(abc, 3, 0) == UINT64_C(0x44BC2CF5AD770999),
           "ZSTD-CHECKSUM: XXH64 of \"abc\" is 44BC2CF5AD770999 (zstd wrote its low half, AD770999)");
    /* Every length 0..100 through every branch of the tail: the 32-byte
     * stripes and 8/4/1-byte tails must each be used, so compare lengths
     * that differ by one stripe: the hashes must all be distinct. */
    uint64_t seen[101];
    int distinct = 1;
    for (size_t n = 0; n <= 100; n++) {
        seen[n] = vub_xxh64(ramp, n, 0);
        for (size_t k = 0; k < n; k++)
            if (seen[k] == seen[n])
                distinct = 0;
    }
    report(distinct, "ZSTD-CHECKSUM: XXH64 of the first 0..100 bytes of a ramp are 101 distinct hashes");
}

/* The RFC's table in "Repeat Offsets", row by row. */
static void test_repeat_offsets(void)
{
    static const struct { uint32_t value; size_t ll; uint32_t rep[3]; } rows[] = {
        {1114, 11, {1111, 1, 4}}, {1, 22, {1111, 1, 4}},    {2225, 22, {2222, 1111, 1}},
        {1114, 111, {1111, 2222, 1111}}, {3336, 33, {3333, 1111, 2222}}, {2, 22, {1111, 3333, 2222}},
        {3, 33, {2222, 1111, 3333}}, {3, 0, {2221, 2222, 1111}},    {1, 0, {2222, 2221, 1111}},
    };
    uint32_t rep[3] = {1, 4, 8};
    int pass = 1;
    for (size_t i = 0; i < VUB_ARRAY_LEN(rows); i++) {
        uint32_t offset = vub_zstd_offset(rep, rows[i].value, rows[i].ll);
        if (offset != rows[i].rep[0] || memcmp(rep, rows[i].rep, sizeof rep) != 0) {
            pass = 0;
            diag("row %zu: offset %u, repeats %u %u %u", i, offset, rep[0], rep[1], rep[2]);
        }
    }
    report(pass, "ZSTD-REPEAT-OFFSETS: the nine rows of RFC 8878's repeat offset table, in order");
}

/* ---------------------------------------------------------------------------
 * Tables: predefined FSE tables against RFC 8878 Appendix A, Huffman tables
 * against the bit-by-bit reference
 * ------------------------------------------------------------------------- */

/* A state of Appendix A: its symbol, Number_Of_Bits and Base. */
struct appendix_row {
    uint8_t state, symbol, bits, base;
};

static int fse_matches(const struct vub_zstd_fse *cells, enum vub_zstd_kind kind, const struct appendix_row *rows,
                       size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct vub_zstd_fse want;
        vub_zstd_code_value(kind, rows[i].symbol, &want);
        const struct vub_zstd_fse *c = &cells[rows[i].state];
        if (c->base != want.base || c->extra_bits != want.extra_bits || c->state_bits != rows[i].bits ||
            c->next_base != rows[i].base) {
            diag("state %u: base %u extra %u bits %u next %u", rows[i].state, c->base, c->extra_bits,
                 c->state_bits, c->next_base);
            return 0;
        }
    }
    return 1;
}

static void test_fse_tables(void)
{
    static const struct appendix_row of[] = {
        {0, 0, 5, 0},   {1, 6, 4, 0},   {2, 9, 5, 0},   {3, 15, 5, 0},  {4, 21, 5, 0},  {5, 3, 5, 0},
        {6, 7, 4, 0},   {7, 12, 5, 0},  {8, 18, 5, 0},  {9, 23, 5, 0},  {10, 5, 5, 0},  {11, 8, 4, 0},
        {12, 14, 5, 0}, {13, 20, 5, 0}, {14, 2, 5, 0},  {15, 7, 4, 16}, {16, 11, 5, 0}, {17, 17, 5, 0},
        {18, 22, 5, 0}, {19, 4, 5, 0},  {20, 8, 4, 16}, {21, 13, 5, 0}, {22, 19, 5, 0}, {23, 1, 5, 0},
        {24, 6, 4, 16}, {25, 10, 5, 0}, {26, 16, 5, 0}, {27, 28, 5, 0}, {28, 27, 5, 0}, {29, 26, 5, 0},
        {30, 25, 5, 0}, {31, 24, 5, 0}};
    static const struct appendix_row ml[] = {
        {0, 0, 6, 0},   {1, 1, 4, 0},   {2, 2, 5, 32},  {3, 3, 5, 0},   {4, 5, 5, 0},   {5, 6, 5, 0},
        {6, 8, 5, 0},   {7, 10, 6, 0},  {22, 1, 4, 16}, {23, 2, 4, 0},  {43, 1, 4, 32}, {44, 1, 4, 48},
        {45, 2, 4, 16}, {46, 4, 5, 32}, {57, 52, 6, 0}, {63, 46, 6, 0}};
    static const struct appendix_row ll[] = {
        {27, 7, 5, 32}, {28, 8, 5, 0},  {31, 13, 6, 0}, {38, 25, 4, 0}, {39, 25, 4, 16}, {43, 0, 4, 48},
        {44, 1, 4, 16}, {53, 15, 6, 0}, {60, 35, 6, 0}, {63, 32, 6, 0}};
    struct vub_zstd_fse cells[512];
    vub_zstd_fse_build(cells, vub_zstd_of_default, 29, 5, VUB_ZSTD_OF);
    report(fse_matches(cells, VUB_ZSTD_OF, of, VUB_ARRAY_LEN(of)),
           "ZSTD-FSE-BUILD: the predefined offset table equals RFC 8878 Appendix A, all 32 states");
    vub_zstd_fse_build(cells, vub_zstd_ml_default, VUB_ZSTD_ML_CODES, 6, VUB_ZSTD_ML);
    report(fse_matches(cells, VUB_ZSTD_ML, ml, VUB_ARRAY_LEN(ml)),
           "ZSTD-FSE-BUILD: the predefined match length table equals Appendix A at 16 states");
    vub_zstd_fse_build(cells, vub_zstd_ll_default, VUB_ZSTD_LL_CODES, 6, VUB_ZSTD_LL);
    report(fse_matches(cells, VUB_ZSTD_LL, ll, VUB_ARRAY_LEN(ll)),
           "ZSTD-FSE-BUILD: the predefined literals length table equals Appendix A at 10 states");
}

/* For every max_bits-bit input, the table and the bit-by-bit reference
 * must decode the same literal with the same length. */
static int huffman_table_matches_reference(const struct vub_zstd_huf *h)
{
    for (uint32_t v = 0; v < (1u << h->max_bits); v++) {
        /* The input as a stream: v's bits, then the end mark. */
        uint8_t stream[3];
        uint32_t number = 1u << h->max_bits | v;
        stream[0] = (uint8_t)number;
        stream[1] = (uint8_t)(number >> 8);
        stream[2] = (uint8_t)(number >> 16);
        struct vub_zbits b;
        if (vub_zbits_init(&b, stream, (h->max_bits + 8) / 8) != 0)
            return 0;
        size_t before = b.count + 8 * b.byte_pos; /* bits left to read */
        unsigned sym = vub_zstd_huf_decode_ref(h, &b);
        size_t used_bits = before - (b.count + 8 * b.byte_pos);
        struct vub_zstd_huf_cell c = h->cell[v];
        if (sym != c.symbol || used_bits != c.bits) {
            diag("input %u: reference %u in %zu bits, table %u in %u bits", v, sym, used_bits, c.symbol,
                 c.bits);
            return 0;
        }
    }
    return 1;
}

static void test_huffman_tables(void)
{
    /* RFC 8878 "Huffman Tree Description": weights 4, 3, 2, 0, 1 and a
     * deduced 1 for literal 5; Number_of_Bits 1, 2, 3, 0, 4, 4. */
    struct vub_zstd_huf *h = xmalloc(sizeof *h);
    const uint8_t tree[] = {0x84, 0x43, 0x20, 0x10};
    size_t used;
    int rc = vub_zstd_huf_tree(h, tree, sizeof tree, &used);
    static const uint8_t want_bits[6] = {1, 2, 3, 0, 4, 4};
    int lengths_ok = rc == 0 && used == 4 && h->max_bits == 4;
    for (unsigned s = 0; lengths_ok && s < 6; s++) {
        unsigned bits = 0;
        for (unsigned i = 0; i < 16; i++)
            if (h->cell[i].symbol == s)
                bits = h->cell[i].bits;
        lengths_ok = bits == want_bits[s];
    }
    /* "prefix codes": 4 is 0000, 5 is 0001, 2 is 001, 1 is 01, 0 is 1. */
    lengths_ok = lengths_ok && h->cell[0].symbol == 4 && h->cell[1].symbol == 5 && h->cell[2].symbol == 2 &&
                 h->cell[4].symbol == 1 && h->cell[8].symbol == 0;
    report(lengths_ok, "ZSTD-HUF-TREE: the RFC's example weights give its code lengths and prefix codes");
    report(rc == 0 && huffman_table_matches_reference(h),
           "ZSTD-HUF-CODE: the RFC's example: table and bit-by-bit reference agree on all 16 inputs");

    /* Random complete codes: split random leaves of a code tree (depth at
     * most 11) until it has 2..129 leaves, give them to the literals in a
     * random order, and send all weights but the last literal's. */
    uint64_t state = 0x5eed;
    int all = 1;
    unsigned tried = 0;
    for (int round = 0; round < 300; round++) {
        uint8_t depth[129] = {0};
        unsigned leaves = 1;
        state = state * 6364136223846793005u + 1442695040888963407u;
        unsigned target = 2 + (unsigned)(state >> 33) % 128;
        for (int guard = 0; leaves < target && guard < 10000; guard++) {
            state = state * 6364136223846793005u + 1442695040888963407u;
            unsigned k = (unsigned)(state >> 33) % leaves;
            if (depth[k] >= VUB_ZSTD_HUF_MAX_BITS)
                continue;
            depth[k]++;
            depth[leaves++] = depth[k];
        }
        unsigned max_bits = 0;
        for (unsigned k = 0; k < leaves; k++)
            max_bits = depth[k] > max_bits ? depth[k] : max_bits;
        uint8_t t[1 + 65] = {0};
        t[0] = (uint8_t)(127 + leaves - 1);
        for (unsigned i = 0; i + 1 < leaves; i++)
            t[1 + i / 2] |= (uint8_t)((max_bits + 1 - depth[i]) << (i % 2 == 0 ? 4 : 0));
        tried++;
        int rc2 = vub_zstd_huf_tree(h, t, 1 + leaves / 2, &used);
        if (rc2 != 0 || h->max_bits != max_bits || !huffman_table_matches_reference(h)) {
            if (all)
                diag("tree of %u leaves, max_bits %u: result %d, max_bits %u", leaves, max_bits, rc2,
                     h->max_bits);
            all = 0;
        }
    }
    report(all, "ZSTD-HUF-CODE: %u random complete Huffman trees are accepted, and table and reference agree "
                "on every input", tried);
    free(h);
}

/* ---------------------------------------------------------------------------
 * Hand-made frames: frames and blocks
 * ------------------------------------------------------------------------- */

static void test_frames(void)
{
    struct buf f = {0};
    uint8_t out[64];

    frame_single(&f, 5);
    raw_block(&f, 1, ramp, 5);
    expect("ZSTD-BLOCKS: a single-segment frame with one raw block", f.b, f.n, 5, VUB_ZSTD_OK, ramp, 5);
    expect("ZSTD-TRAILING: output full at the end of a frame: what follows is not read", f.b, f.n + 7, 5,
           VUB_ZSTD_OK, ramp, 5);

    f.n = 0;
    frame_window(&f, 0x00);
    block_header(&f, 0, 1, 6);
    put8(&f, 0x77);
    raw_block(&f, 0, ramp, 3);
    block_header(&f, 1, 1, 0);
    put8(&f, 0x11);
    memset(out, 0x77, 6);
    memcpy(out + 6, ramp, 3);
    expect("ZSTD-BLOCKS: RLE block, raw block, empty RLE block, no content size, 1 KiB window", f.b, f.n, 9,
           VUB_ZSTD_OK, out, 9);
    expect("ZSTD-FRAMES: an output larger than the frames is fine: the caller sees the count", f.b, f.n,
           40, VUB_ZSTD_OK, out, 9);

    /* Two frames, a skippable frame between them. */
    struct buf g = f;
    PUT(&g, 0x5f, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'x', 'y', 'z');
    frame_single(&g, 2);
    raw_block(&g, 1, ramp + 10, 2);
    memcpy(out + 9, ramp + 10, 2);
    expect("ZSTD-SKIPPABLE: frame, skippable frame (magic 0x184D2A5F), frame", g.b, g.n, 11, VUB_ZSTD_OK, out,
           11);

    f.n = 0;
    put_magic(&f);
    PUT(&f, 0xc0 | 0x04, 0x00);                /* 8-byte content size, checksum; window 1 KiB */
    PUT(&f, 5, 0, 0, 0, 0, 0, 0, 0);
    raw_block(&f, 1, (const uint8_t *)"abcde", 5);
    uint32_t sum = (uint32_t)vub_xxh64((const uint8_t *)"abcde", 5, 0);
    PUT(&f, (uint8_t)sum, (uint8_t)(sum >> 8), (uint8_t)(sum >> 16), (uint8_t)(sum >> 24));
    expect("ZSTD-FCS: 8-byte content size with a window descriptor; checksum verified", f.b, f.n, 5,
           VUB_ZSTD_OK, (const uint8_t *)"abcde", 5);
    f.b[f.n - 1] ^= 0x40;
    expect_error("ZSTD-CHECKSUM: a checksum with one bit changed is refused", f.b, f.n, 5, VUB_ZSTD_E_CHECKSUM);

    f.n = 0;
    put_magic(&f);
    PUT(&f, 0x40 | 0x20, 0x00, 0x00); /* 2-byte content size: 0 means 256 */
    block_header(&f, 1, 1, 256);
    put8(&f, 0x42);
    uint8_t b256[256];
    memset(b256, 0x42, sizeof b256);
    expect("ZSTD-FCS: a 2-byte content size has 256 added", f.b, f.n, 256, VUB_ZSTD_OK, b256, 256);

    f.n = 0;
    put_magic(&f);
    PUT(&f, 0x21, 0x00, 0x03); /* single segment, 1-byte Dictionary_ID 0 */
    raw_block(&f, 1, ramp, 3);
    expect("ZSTD-DICT-ID: a Dictionary_ID of 0 means no dictionary", f.b, f.n, 3, VUB_ZSTD_OK, ramp, 3);

    /* Errors of the frame layer, in the order a decoder meets them. */
    f.n = 0;
    put_magic(&f);
    expect_error("ZSTD-CUT: a magic number alone: input ran out", f.b, f.n, 8, VUB_ZSTD_E_INPUT);
    PUT(&f, 0x00, 0x00);
    expect_error("ZSTD-CUT: a frame header with no block", f.b, f.n, 8, VUB_ZSTD_E_INPUT);
    f.n = 0;
    PUT(&f, 0x28, 0xb5, 0x2f, 0xfe, 0x20, 0x00, 0x01, 0x00, 0x00);
    expect_error("ZSTD-FRAMES: an unknown magic number is refused", f.b, f.n, 8, VUB_ZSTD_E_MAGIC);
    f.n = 0;
    PUT(&f, 0x27, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00);
    expect_error("ZSTD-FRAMES: a legacy (v0.7) zstd frame is refused as an unknown magic", f.b, f.n, 8,
                 VUB_ZSTD_E_MAGIC);
    f.n = 0;
    PUT(&f, 0x50, 0x2a, 0x4d, 0x18, 9, 0, 0, 0, 1, 2);
    expect_error("ZSTD-SKIPPABLE: a skippable frame longer than the input", f.b, f.n, 8, VUB_ZSTD_E_INPUT);
    f.n = 0;
    put_magic(&f);
    PUT(&f, 0x28, 0x01);
    raw_block(&f, 1, ramp, 1);
    expect_error("ZSTD-FRAME-HEADER: the reserved bit set is refused", f.b, f.n, 8, VUB_ZSTD_E_RESERVED_BIT);
    f.n = 0;
    put_magic(&f);
    PUT(&f, 0x22, 0x39, 0x30, 0x01); /* 2-byte Dictionary_ID 12345 */
    raw_block(&f, 1, ramp, 1);
    expect_error("ZSTD-DICT-ID: a frame that needs dictionary 12345 is refused by name", f.b, f.n, 8,
                 VUB_ZSTD_E_DICTIONARY);
    f.n = 0;
    frame_single(&f, 9);
    raw_block(&f, 1, ramp, 9);
    expect_error("ZSTD-FCS: a content size larger than the output is refused before decoding", f.b, f.n, 8,
                 VUB_ZSTD_E_TOO_BIG);
    f.n = 0;
    frame_window(&f, 0x00);
    raw_block(&f, 1, ramp, 9);
    expect_error("ZSTD-QEMU: a raw block that does not fit the output is an error, not a truncation", f.b,
                 f.n, 8, VUB_ZSTD_E_TOO_BIG);
    f.n = 0;
    frame_window(&f, 0x88); /* Exponent 17: 2^27 bytes, the largest QEMU's libzstd takes */
    raw_block(&f, 1, ramp, 3);
    expect("ZSTD-WINDOW: a 128 MiB window is accepted", f.b, f.n, 8, VUB_ZSTD_OK, ramp, 3);
    f.b[4 + 1] = 0x89;      /* 2^27 + 2^24 */
    expect_error("ZSTD-WINDOW: a window of 128 MiB + 16 MiB is refused, as QEMU's libzstd does", f.b, f.n, 8,
                 VUB_ZSTD_E_WINDOW);
    f.n = 0;
    frame_single(&f, 1);
    block_header(&f, 1, 3, 0);
    expect_error("ZSTD-BLOCK-TYPE: Block_Type 3 is reserved", f.b, f.n, 8, VUB_ZSTD_E_BLOCK_TYPE);
    f.n = 0;
    frame_single(&f, 4);
    raw_block(&f, 1, ramp, 5);
    expect_error("ZSTD-SINGLE-SEGMENT: a raw block larger than the window, which is the content size",
                 f.b, f.n, 8, VUB_ZSTD_E_BLOCK_SIZE);
    f.n = 0;
    frame_window(&f, 0x00);
    block_header(&f, 1, 1, 1025);
    put8(&f, 1);
    expect_error("ZSTD-BLOCK-MAX: an RLE block of 1025 bytes in a 1 KiB window", f.b, f.n, 4096,
                 VUB_ZSTD_E_BLOCK_SIZE);
    f.n = 0;
    frame_window(&f, 0x58); /* 2 MiB window: the block limit is 128 KiB */
    block_header(&f, 1, 1, VUB_ZSTD_BLOCK_MAX + 1);
    put8(&f, 1);
    expect_error("ZSTD-BLOCK-MAX: an RLE block of 128 KiB + 1 in a 2 MiB window", f.b, f.n, 1 << 20,
                 VUB_ZSTD_E_BLOCK_SIZE);
    f.n = 0;
    frame_single(&f, 3);
    raw_block(&f, 1, ramp, 2);
    expect_error("ZSTD-FCS: a frame shorter than its content size is refused", f.b, f.n, 8,
                 VUB_ZSTD_E_CONTENT_SIZE);
    f.n = 0;
    frame_window(&f, 0x00);
    raw_block(&f, 1, ramp, 2);
    f.b[f.n - 1] = 0;
    struct outcome o = run_lit(f.b, f.n, 8, 0);
    note_result(o.result);
    report(o.agree && o.result == VUB_ZSTD_E_WORK,
           "ZSTD-RESULTS: a literals buffer smaller than vub_zstd_lit_bytes() is the caller's error");
    free(o.out);
}

/* ---------------------------------------------------------------------------
 * Hand-made frames: literals
 * ------------------------------------------------------------------------- */

/* A frame of one compressed block: content c, content size (256 or more) known. */
static void one_block_frame(struct buf *f, size_t content_size, const struct buf *c)
{
    f->n = 0;
    put_magic(f);
    /* 2-byte Frame_Content_Size (256 added) and a 16 KiB window */
    PUT(f, 0x40, 0x20, (uint8_t)(content_size - 256), (uint8_t)((content_size - 256) >> 8));
    compressed_block(f, 1, c);
}

/* Compressed_Literals_Block header, 3-byte form: format 0 (1 stream) or 1. */
static void lit_header3(struct buf *c, unsigned type, unsigned format, unsigned regen, unsigned csize)
{
    uint32_t h = type | format << 2 | regen << 4 | csize << 14;
    PUT(c, (uint8_t)h, (uint8_t)(h >> 8), (uint8_t)(h >> 16));
}

static void test_literals(void)
{
    struct buf f, c = {0};
    uint8_t want[600];

    /* Raw literals in each header size, no sequences: the literals are the block. */
    c.n = 0;
    PUT(&c, 0x05 << 3); /* raw, 1-byte header, 5 literals */
    put(&c, ramp, 5);
    PUT(&c, 0x00);       /* Number_of_Sequences 0 */
    f.n = 0;
    frame_window(&f, 0x00);
    compressed_block(&f, 1, &c);
    expect("ZSTD-LIT-RAW: raw literals with a 1-byte header, no sequences", f.b, f.n, 5, VUB_ZSTD_OK, ramp, 5);
    f.n = 0;
    frame_single(&f, 5);
    compressed_block(&f, 1, &c);
    expect_error("ZSTD-SINGLE-SEGMENT: a compressed block of 7 bytes where the window (content size) is 5", f.b, f.n,
                 5, VUB_ZSTD_E_BLOCK_SIZE);

    c.n = 0;
    PUT(&c, 0x04 | (300 & 15) << 4, 300 >> 4); /* raw, 2-byte header, 300 literals */
    put(&c, ramp, 300);
    PUT(&c, 0x00);
    one_block_frame(&f, 300, &c);
    expect("ZSTD-LIT-HEADER: raw literals with a 2-byte header (300)", f.b, f.n, 300, VUB_ZSTD_OK, ramp, 300);

    c.n = 0;
    PUT(&c, 0x0c | (2000 & 15) << 4, (2000 >> 4) & 0xff, 2000 >> 12); /* raw, 3-byte header */
    put(&c, ramp, 2000);
    PUT(&c, 0x00);
    one_block_frame(&f, 2000, &c);
    expect("ZSTD-LIT-HEADER: raw literals with a 3-byte header (2000)", f.b, f.n, 2000, VUB_ZSTD_OK, ramp,
           2000);

    c.n = 0;
    PUT(&c, 0x01 | 0x04 | (600 & 15) << 4, 600 >> 4, 0xee); /* RLE, 2-byte header, 600 of 0xee */
    PUT(&c, 0x00);
    one_block_frame(&f, 600, &c);
    memset(want, 0xee, 600);
    expect("ZSTD-LIT-RLE: RLE literals, 600 of one byte", f.b, f.n, 600, VUB_ZSTD_OK, want, 600);

    /* Huffman: weights [1] (direct) give literals 0 and 1 one bit each:
     * bit 0 is literal 0, bit 1 literal 1. Stream 0x06 holds, read from
     * the end, 1 then 0 after the end mark. */
    c.n = 0;
    lit_header3(&c, 2, 0, 2, 3);
    PUT(&c, 0x80, 0x10, 0x06);
    PUT(&c, 0x00);
    f.n = 0;
    frame_window(&f, 0x00);
    compressed_block(&f, 1, &c);
    const uint8_t one_zero[] = {1, 0};
    expect("ZSTD-HUF-TREE: direct weights, a 1-stream Huffman block decodes 1, 0", f.b, f.n, 2, VUB_ZSTD_OK,
           one_zero, 2);

    /* The same tree used again by a treeless block in the next block. */
    struct buf t = {0};
    lit_header3(&t, 3, 0, 3, 1);
    PUT(&t, 0x0d); /* 1, 0, 1 after the mark: 0b1101 */
    PUT(&t, 0x00);
    f.n = 0;
    frame_window(&f, 0x00);
    compressed_block(&f, 0, &c);
    compressed_block(&f, 1, &t);
    const uint8_t five[] = {1, 0, 1, 0, 1};
    expect("ZSTD-LIT-TREELESS: treeless literals reuse the previous block's Huffman table", f.b, f.n, 5,
           VUB_ZSTD_OK, five, 5);
    f.n = 0;
    frame_window(&f, 0x00);
    compressed_block(&f, 1, &c);
    frame_window(&f, 0x00);
    compressed_block(&f, 1, &t);
    expect_error("ZSTD-FRAME: a Huffman table does not carry over into the next frame (treeless refused)", f.b, f.n, 5,
                 VUB_ZSTD_E_NO_HUFFMAN);

    /* 4 streams: 8 literals, 2 per stream; streams "01" "10" "11" "00" after
     * each mark. Literal order: stream 1 first. */
    c.n = 0;
    lit_header3(&c, 2, 1, 8, 2 + 6 + 4);
    PUT(&c, 0x80, 0x10, 1, 0, 1, 0, 1, 0, 0x05, 0x06, 0x07, 0x04);
    PUT(&c, 0x00);
    f.n = 0;
    frame_window(&f, 0x00);
    compressed_block(&f, 1, &c);
    const uint8_t eight[] = {0, 1, 1, 0, 1, 1, 0, 0};
    expect("ZSTD-LIT-4STREAMS: 4 Huffman streams with a jump table, 2 literals each", f.b, f.n, 8, VUB_ZSTD_OK,
           eight, 8);

    /* FSE-compressed weights: Accuracy_Log 5 and all 32 points on symbol 1
     * (weight 1). Distribution bits: log 0 (4 bits); symbol 0's value 1,
     * probability 0 (5 bits: 1 is below 2^6 - 1 - 33 = 30); no repeat (2
     * bits); symbol 1's value 33 (6 bits: 63, which is 33 + 30). With an
     * empty bitstream both initial states overflow at once, which ends the
     * list after two weights: [1, 1], and the last literal gets weight 2.
     * Codes: literal 0 is 00, 1 is 01, 2 is 1; the stream 0x31 holds 1 00
     * 01 after its mark: literals 2, 0, 1. */
    struct buf dist = {0};
    struct bitw bw = {&dist, 0, 0};
    bitw_put(&bw, 0, 4);
    bitw_put(&bw, 1, 5);
    bitw_put(&bw, 0, 2);
    bitw_put(&bw, 63, 6);
    bitw_flush(&bw);
    c.n = 0;
    lit_header3(&c, 2, 0, 3, (unsigned)(1 + dist.n + 1 + 1));
    put8(&c, (unsigned)dist.n + 1);
    put(&c, dist.b, dist.n);
    PUT(&c, 0x01, 0x31, 0x00);
    f.n = 0;
    frame_window(&f, 0x00);
    compressed_block(&f, 1, &c);
    const uint8_t two_zero_one[] = {2, 0, 1};
    expect("ZSTD-HUF-FSE: FSE-compressed weights end when a state overflows; literals 2, 0, 1", f.b, f.n, 3,
           VUB_ZSTD_OK, two_zero_one, 3);
    /* The same distribution with 10 bits of stream: the states use them up
     * exactly and then read 0 bits for ever: no overflow ever ends it. */
    c.n = 0;
    lit_header3(&c, 2, 0, 3, (unsigned)(1 + dist.n + 2 + 1));
    put8(&c, (unsigned)dist.n + 2);
    put(&c, dist.b, dist.n);
    PUT(&c, 0x00, 0x04, 0x31, 0x00);
    f.n = 0;
    frame_window(&f, 0x00);
    compressed_block(&f, 1, &c);
    expect_error("ZSTD-HUF-FSE: a weight stream that never overflows stops at 255 weights", f.b, f.n, 3,
                 VUB_ZSTD_E_HUF_WEIGHT);

    /* Literals errors, each in a one-block frame of content size 3. */
    static const struct {
        const char *clause;
        uint8_t bytes[16];
        size_t n;
        int want;
    } bad[] = {
        {"ZSTD-LIT-HEADER: raw literals running past the block", {0x18, 1}, 2, VUB_ZSTD_E_LIT_SIZE},
        {"ZSTD-LIT-HEADER: a 3-byte literals header cut by the block's end", {0x0c, 0}, 2, VUB_ZSTD_E_LIT_SIZE},
        {"ZSTD-LIT-RLE: RLE literals with no byte", {0x19}, 1, VUB_ZSTD_E_LIT_SIZE},
        {"ZSTD-LIT-HUF: Compressed_Size past the block", {0x32, 0x40, 0x01, 0x80}, 4, VUB_ZSTD_E_LIT_SIZE},
        {"ZSTD-LIT-4STREAMS: 4 streams for 5 literals", {0x56, 0xc0, 0x00, 0x80, 0x10, 0}, 6,
         VUB_ZSTD_E_LIT_STREAMS},
        {"ZSTD-LIT-4STREAMS: stream sizes that leave nothing for stream 4",
         {0x86, 0x00, 0x03, 0x80, 0x10, 4, 0, 4, 0, 4, 0, 5, 5, 5, 5, 0}, 16, VUB_ZSTD_E_LIT_STREAMS},
        {"ZSTD-LIT-TREELESS: treeless literals in the first block of a frame", {0x13, 0x40, 0x00, 0x06, 0}, 5,
         VUB_ZSTD_E_NO_HUFFMAN},
        {"ZSTD-HUF-TREE: 2 direct weights with no byte for them", {0x12, 0x40, 0x00, 0x81, 0}, 5,
         VUB_ZSTD_E_HUF_TREE},
        {"ZSTD-HUF-TREE: FSE weights longer than the literals", {0x12, 0x80, 0x00, 0x05, 0, 0}, 6,
         VUB_ZSTD_E_HUF_TREE},
        {"ZSTD-HUF-WEIGHTS: a weight of 12", {0x12, 0x80, 0x00, 0x80, 0xc0, 0}, 6, VUB_ZSTD_E_HUF_WEIGHT},
        {"ZSTD-HUF-WEIGHTS: all weights 0", {0x12, 0x80, 0x00, 0x80, 0x00, 0}, 6, VUB_ZSTD_E_HUF_POWER},
        {"ZSTD-HUF-WEIGHTS: weights 2, 2, 1 leave 3, not a power of 2", {0x12, 0xc0, 0x00, 0x82, 0x22, 0x10, 0},
         7, VUB_ZSTD_E_HUF_POWER},
        {"ZSTD-HUF-WEIGHTS: weights 11, 11 need 12-bit codes", {0x12, 0x80, 0x00, 0x81, 0xbb, 0}, 6,
         VUB_ZSTD_E_HUF_MAX_BITS},
        {"ZSTD-HUF-WEIGHTS: weight 2 and a deduced 2: no literal of weight 1", {0x12, 0x80, 0x00, 0x80, 0x20, 0},
         6, VUB_ZSTD_E_HUF_WEIGHT1},
        {"ZSTD-HUF-STREAM: a stream one bit short", {0x12, 0xc0, 0x00, 0x80, 0x10, 0x01, 0}, 7,
         VUB_ZSTD_E_HUF_STREAM},
        {"ZSTD-HUF-STREAM: a stream with one bit left over", {0x12, 0xc0, 0x00, 0x80, 0x10, 0x06, 0}, 7,
         VUB_ZSTD_E_HUF_STREAM},
        {"ZSTD-STREAM-PAD: a Huffman stream whose last byte is 0", {0x12, 0xc0, 0x00, 0x80, 0x10, 0x00, 0}, 7,
         VUB_ZSTD_E_PADDING},
        {"ZSTD-FSE-LOG: FSE weights with Accuracy_Log 7 (limit 6)", {0x12, 0xc0, 0x00, 0x01, 0x02, 0}, 6,
         VUB_ZSTD_E_FSE_LOG},
        {"ZSTD-FSE-DESC: an FSE weight distribution cut short", {0x12, 0xc0, 0x00, 0x01, 0x10, 0}, 6,
         VUB_ZSTD_E_FSE_DESC},
    };
    for (size_t i = 0; i < VUB_ARRAY_LEN(bad); i++) {
        /* One-literal Huffman cases decode 1 literal (regen 1) in the 1-byte
         * stream at index 5; the others need only the bytes given. */
        c.n = 0;
        put(&c, bad[i].bytes, bad[i].n);
        f.n = 0;
        frame_window(&f, 0x00);
        compressed_block(&f, 1, &c);
        expect_error(bad[i].clause, f.b, f.n, 64, bad[i].want);
    }
}

/* ---------------------------------------------------------------------------
 * Hand-made frames: sequences
 * ------------------------------------------------------------------------- */

/* A frame: a raw block of `history` ramp bytes (if any), then a compressed
 * block of raw literals lits[0..n_lits) and the sequences section seq. */
static void seq_frame(struct buf *f, unsigned window_descriptor, size_t history, const uint8_t *lits,
                      size_t n_lits, const uint8_t *seq, size_t seq_len)
{
    struct buf c = {0};
    f->n = 0;
    frame_window(f, window_descriptor);
    for (size_t done = 0; done < history;) {
        size_t n = history - done < 1024 ? history - done : 1024;
        raw_block(f, 0, ramp + done % 1024, n);
        done += n;
    }
    PUT(&c, (uint8_t)(n_lits << 3));
    put(&c, lits, n_lits);
    put(&c, seq, seq_len);
    compressed_block(f, 1, &c);
}

static void test_sequences(void)
{
    struct buf f;
    uint8_t want[4096];
    const uint8_t abcd[] = {'a', 'b', 'c', 'd'};

    /* All three codes RLE (modes 0x54): literals length code 4 (4), offset
     * code 2 (Offset_Value 4 + 2 extra bits), match length code 5 (8). The
     * bitstream holds the offset's extra bits 01 (Offset_Value 5: offset 2)
     * under the end mark: 0b101. */
    const uint8_t rle[] = {1, 0x54, 4, 2, 5, 0x05};
    seq_frame(&f, 0x00, 0, abcd, 4, rle, sizeof rle);
    memcpy(want, "abcdcdcdcdcd", 12);
    expect("ZSTD-SEQ-RLE: one sequence, all codes RLE: 4 literals, then 8 bytes from 2 back", f.b, f.n, 12,
           VUB_ZSTD_OK, want, 12);
    expect("ZSTD-OVERLAP: a match longer than its offset repeats what it has just written", f.b, f.n, 12,
           VUB_ZSTD_OK, (const uint8_t *)"abcdcdcdcdcd", 12);

    /* Repeat offsets: literals length 0 and Offset_Value 1 means
     * Repeated_Offset2, which starts at 4. */
    const uint8_t rep2[] = {1, 0x54, 0, 0, 0, 0x01};
    seq_frame(&f, 0x00, 8, NULL, 0, rep2, sizeof rep2);
    memcpy(want, ramp, 8);
    memcpy(want + 8, ramp + 4, 3);
    expect("ZSTD-REPEAT-OFFSETS: with no literals, Offset_Value 1 is Repeated_Offset2 (4)", f.b, f.n, 11,
           VUB_ZSTD_OK, want, 11);

    /* Predefined tables (modes 0): states literals length 0 (code 0), offset
     * 0 (code 0), match length 0 (code 0), 6 + 5 + 6 bits, all 0; one
     * sequence reads no more. Literals 0, Offset_Value 1 with literals 0 ->
     * offset 4; match 3. */
    const uint8_t predefined[] = {1, 0x00, 0x00, 0x00, 0x02};
    seq_frame(&f, 0x00, 8, NULL, 0, predefined, sizeof predefined);
    expect("ZSTD-SEQ-PREDEFINED: predefined tables, initial states all 0", f.b, f.n, 11, VUB_ZSTD_OK, want, 11);

    /* Repeat_Mode in the next block reuses RLE tables: a second compressed
     * block with modes 0xfc (all Repeat). */
    {
        struct buf c = {0};
        f.n = 0;
        frame_window(&f, 0x00);
        raw_block(&f, 0, ramp, 8);
        PUT(&c, 0x00, 1, 0x54, 0, 0, 0, 0x01);
        compressed_block(&f, 0, &c);
        c.n = 0;
        PUT(&c, 0x00, 1, 0xfc, 0x01);
        compressed_block(&f, 1, &c);
        /* Block 2: offset value 1, no literals: Repeated_Offset2 again. After
         * block 1 the repeats are 4, 1, 8: the offset is 1. */
        memcpy(want, ramp, 8);
        memcpy(want + 8, ramp + 4, 3);
        memset(want + 11, ramp[6], 3);
        expect("ZSTD-SEQ-REPEAT: Repeat_Mode reuses the previous block's tables, repeat offsets carry over", f.b,
               f.n, 14, VUB_ZSTD_OK, want, 14);
    }

    /* FSE_Compressed_Mode for the literals lengths: Accuracy_Log 5, symbol 0
     * with all 32 points (value 33: 6 bits 63), the others RLE. */
    {
        struct buf seq = {0};
        struct bitw bw = {&seq, 0, 0};
        PUT(&seq, 1, 0x94, 0, 0); /* LL FSE, OF RLE code 0, ML RLE code 0: tables follow in LL, OF, ML order */
        seq.n -= 2;
        bitw_put(&bw, 0, 4);
        bitw_put(&bw, 63, 6);
        bitw_flush(&bw);
        PUT(&seq, 0, 0);
        /* initial LL state: 5 bits, any: 0; the mark */
        PUT(&seq, 0x20);
        seq_frame(&f, 0x00, 8, NULL, 0, seq.b, seq.n);
        memcpy(want, ramp, 8);
        memcpy(want + 8, ramp + 4, 3);
        expect("ZSTD-SEQ-FSE: an FSE-described literals length table (one symbol, Accuracy_Log 5)", f.b, f.n, 11,
               VUB_ZSTD_OK, want, 11);
    }

    {
        /* Sequence tables do not carry over into the next frame either. */
        struct buf g = {0}, c = {0};
        frame_window(&g, 0x00);
        raw_block(&g, 0, ramp, 8);
        PUT(&c, 0x00, 1, 0x54, 0, 0, 0, 0x01);
        compressed_block(&g, 1, &c);
        frame_window(&g, 0x00);
        raw_block(&g, 0, ramp, 8);
        c.n = 0;
        PUT(&c, 0x00, 1, 0xfc, 0x01);
        compressed_block(&g, 1, &c);
        expect_error("ZSTD-FRAME: Repeat_Mode in a new frame has no table to repeat", g.b, g.n, 64,
                     VUB_ZSTD_E_SEQ_REPEAT);
    }

    /* Errors. */
    const uint8_t none[] = {0};
    seq_frame(&f, 0x00, 0, abcd, 4, none, 0);
    expect_error("ZSTD-SEQ-HEADER: a block that ends after its literals", f.b, f.n, 64, VUB_ZSTD_E_SEQ_HEADER);
    const uint8_t cut2[] = {0x85};
    seq_frame(&f, 0x00, 0, abcd, 4, cut2, 1);
    expect_error("ZSTD-SEQ-COUNT: a 2-byte sequence count cut short", f.b, f.n, 64, VUB_ZSTD_E_SEQ_HEADER);
    const uint8_t extra[] = {0, 0x00};
    seq_frame(&f, 0x00, 0, abcd, 4, extra, 2);
    expect_error("ZSTD-SEQ-COUNT: a byte after a sequence count of 0", f.b, f.n, 64, VUB_ZSTD_E_SEQ_EXTRA);
    const uint8_t reserved[] = {1, 0x55, 0, 0, 0, 1};
    seq_frame(&f, 0x00, 0, abcd, 4, reserved, sizeof reserved);
    expect_error("ZSTD-SEQ-MODES: reserved bits of the modes byte set", f.b, f.n, 64, VUB_ZSTD_E_SEQ_RESERVED);
    const uint8_t rle36[] = {1, 0x54, 36, 0, 0, 1};
    seq_frame(&f, 0x00, 0, abcd, 4, rle36, sizeof rle36);
    expect_error("ZSTD-SEQ-RLE: literals length code 36 does not exist", f.b, f.n, 64, VUB_ZSTD_E_SEQ_RLE_SYMBOL);
    const uint8_t rle_cut[] = {1, 0x54, 0};
    seq_frame(&f, 0x00, 0, abcd, 4, rle_cut, sizeof rle_cut);
    expect_error("ZSTD-SEQ-RLE: the RLE bytes cut by the block's end", f.b, f.n, 64, VUB_ZSTD_E_SEQ_HEADER);
    const uint8_t repeat_first[] = {1, 0xd4, 0, 0, 1};
    seq_frame(&f, 0x00, 0, abcd, 4, repeat_first, sizeof repeat_first);
    expect_error("ZSTD-SEQ-REPEAT: Repeat_Mode in a frame's first block", f.b, f.n, 64, VUB_ZSTD_E_SEQ_REPEAT);
    const uint8_t log10[] = {1, 0x94, 0x05, 0xff, 0xff, 0, 0, 1};
    seq_frame(&f, 0x00, 0, abcd, 4, log10, sizeof log10);
    expect_error("ZSTD-FSE-LOG: a literals length table with Accuracy_Log 10 (limit 9)", f.b, f.n, 64,
                 VUB_ZSTD_E_FSE_LOG);
    {
        /* Offsets: log 5, symbol 0 probability 0, then zero repeats of 3
         * until past code 31. */
        struct buf seq = {0};
        struct bitw bw = {&seq, 0, 0};
        PUT(&seq, 1, 0x64, 0);
        bitw_put(&bw, 0, 4);
        bitw_put(&bw, 1, 5);
        for (int i = 0; i < 11; i++)
            bitw_put(&bw, 3, 2);
        bitw_flush(&bw);
        PUT(&seq, 0, 1);
        seq_frame(&f, 0x00, 0, abcd, 4, seq.b, seq.n);
        expect_error("ZSTD-FSE-DESC: an offset distribution that runs past code 31", f.b, f.n, 64,
                     VUB_ZSTD_E_FSE_SYMBOLS);
    }
    const uint8_t desc_cut[] = {1, 0x94, 0x00};
    seq_frame(&f, 0x00, 0, abcd, 4, desc_cut, sizeof desc_cut);
    expect_error("ZSTD-FSE-DESC: a distribution cut by the block's end", f.b, f.n, 64, VUB_ZSTD_E_FSE_DESC);
    const uint8_t no_stream[] = {1, 0x54, 0, 0, 0};
    seq_frame(&f, 0x00, 8, NULL, 0, no_stream, sizeof no_stream);
    expect_error("ZSTD-STREAM-PAD: sequences with an empty bitstream", f.b, f.n, 64, VUB_ZSTD_E_PADDING);
    const uint8_t left_over[] = {1, 0x54, 0, 0, 0, 0x02};
    seq_frame(&f, 0x00, 8, NULL, 0, left_over, sizeof left_over);
    expect_error("ZSTD-SEQ-DECODE: a sequence bitstream with one bit left over", f.b, f.n, 64,
                 VUB_ZSTD_E_SEQ_STREAM);
    const uint8_t short_bits[] = {1, 0x54, 0, 2, 0, 0x01};
    seq_frame(&f, 0x00, 8, NULL, 0, short_bits, sizeof short_bits);
    expect_error("ZSTD-SEQ-DECODE: a sequence bitstream one bit short", f.b, f.n, 64, VUB_ZSTD_E_SEQ_STREAM);
    const uint8_t overrun[] = {1, 0x54, 5, 0, 0, 0x01};
    seq_frame(&f, 0x00, 8, abcd, 4, overrun, sizeof overrun);
    expect_error("ZSTD-SEQ-EXEC: a literals length of 5 with 4 literals", f.b, f.n, 64, VUB_ZSTD_E_LIT_OVERRUN);
    const uint8_t overrun2[] = {2, 0x54, 4, 0, 0, 0x01};
    seq_frame(&f, 0x00, 8, abcd, 4, overrun2, sizeof overrun2);
    memcpy(want, ramp, 8);
    memcpy(want + 8, "abcdddd", 7);
    expect("ZSTD-SEQ-EXEC: a second sequence that runs out of literals: the first one's 7 bytes are counted", f.b,
           f.n, 64, VUB_ZSTD_E_LIT_OVERRUN, want, 15);
    const uint8_t zero[] = {1, 0x54, 0, 1, 0, 0x03};
    seq_frame(&f, 0x00, 8, NULL, 0, zero, sizeof zero);
    expect_error("ZSTD-REPEAT-OFFSETS: Offset_Value 3 with no literals and Repeated_Offset1 1 gives 0", f.b, f.n,
                 64, VUB_ZSTD_E_OFFSET_ZERO);
    const uint8_t far[] = {1, 0x54, 0, 0, 0, 0x01};
    seq_frame(&f, 0x00, 3, NULL, 0, far, sizeof far);
    expect_error("ZSTD-OFFSET-FAR: offset 4 after 3 bytes of output", f.b, f.n, 64, VUB_ZSTD_E_OFFSET_FAR);
    {
        /* Offset reaching into the previous frame's output is as far. */
        struct buf g = {0};
        frame_single(&g, 8);
        raw_block(&g, 1, ramp, 8);
        seq_frame(&f, 0x00, 0, NULL, 0, far, sizeof far);
        put(&g, f.b, f.n);
        expect_error("ZSTD-OFFSET-FAR: an offset cannot reach into an earlier frame", g.b, g.n, 64,
                     VUB_ZSTD_E_OFFSET_FAR);
    }
    /* Window 1 KiB, 2048 bytes of history: Offset_Value 1503 (code 10, extra
     * 479) is offset 1500. */
    const uint8_t window[] = {1, 0x54, 0, 10, 0, 0xdf, 0x05};
    seq_frame(&f, 0x00, 2048, NULL, 0, window, sizeof window);
    expect_error("ZSTD-OFFSET-WINDOW: offset 1500 in a 1 KiB window, 2048 bytes produced", f.b, f.n, 4096,
                 VUB_ZSTD_E_OFFSET_WINDOW);
    const uint8_t window_ok[] = {1, 0x54, 0, 10, 0, 0x03, 0x04}; /* Offset_Value 1027: offset 1024 */
    seq_frame(&f, 0x00, 2048, NULL, 0, window_ok, sizeof window_ok);
    for (size_t i = 0; i < 2048; i++)
        want[i] = ramp[i % 1024];
    memcpy(want + 2048, want + 1024, 3);
    expect("ZSTD-OFFSET-WINDOW: offset 1024 in a 1 KiB window is in reach", f.b, f.n, 2051, VUB_ZSTD_OK, want,
           2051);
    /* Window_Descriptor 0x01: 2^10 + 1 * 2^10 / 8 = 1152 bytes. */
    const uint8_t w1152[] = {1, 0x54, 0, 10, 0, 0x83, 0x04}, w1153[] = {1, 0x54, 0, 10, 0, 0x84, 0x04};
    seq_frame(&f, 0x01, 2048, NULL, 0, w1152, sizeof w1152);
    for (size_t i = 0; i < 2048; i++)
        want[i] = ramp[i % 1024];
    memcpy(want + 2048, want + 2048 - 1152, 3);
    expect("ZSTD-WINDOW: Window_Descriptor 0x01 is 1152 bytes: offset 1152 is in reach", f.b, f.n, 2051,
           VUB_ZSTD_OK, want, 2051);
    seq_frame(&f, 0x01, 2048, NULL, 0, w1153, sizeof w1153);
    expect_error("ZSTD-WINDOW: Window_Descriptor 0x01 is 1152 bytes: offset 1153 is not", f.b, f.n, 4096,
                 VUB_ZSTD_E_OFFSET_WINDOW);
    const uint8_t big[] = {1, 0x54, 0, 0, 52, 0x00, 0x00, 0x01}; /* match length 65539 + 16 bits */
    seq_frame(&f, 0x00, 8, NULL, 0, big, sizeof big);
    expect_error("ZSTD-BLOCK-MAX: a match of 65539 bytes in a block of at most 1 KiB", f.b, f.n, 1 << 17,
                 VUB_ZSTD_E_BLOCK_SIZE);
    seq_frame(&f, 0x58, 8, NULL, 0, big, sizeof big);
    expect_error("ZSTD-QEMU: a match that passes the end of the output", f.b, f.n, 4096, VUB_ZSTD_E_TOO_BIG);
}

/* ---------------------------------------------------------------------------
 * Cuts: a frame cut anywhere is an error or a clean stop between frames,
 * never a wrong byte
 * ------------------------------------------------------------------------- */

/* Cuts src at every byte (or at `samples` positions spread over it) and
 * checks each cut: the result is an error or OK short of want_len, and the
 * bytes produced are a prefix of want. */
static int check_cuts(const uint8_t *src, size_t src_len, const uint8_t *want, size_t want_len, size_t samples,
                      char *why, size_t why_len)
{
    size_t step = samples && src_len > samples ? src_len / samples : 1;
    size_t dst_len = want_len ? want_len : 16; /* an empty frame is read only into room */
    for (size_t cut = 0; cut < src_len; cut += step) {
        struct outcome o = run(src, cut, dst_len);
        int good = o.agree && o.dst_done <= want_len && memcmp(o.out, want, o.dst_done) == 0 &&
                   (o.result < 0 || (o.result == VUB_ZSTD_OK && (o.dst_done < want_len || want_len == 0)));
        if (!good) {
            snprintf(why, why_len, "cut at %zu: result %d (%s), %zu bytes, decoders %s", cut, o.result,
                     vub_zstd_strerror(o.result), o.dst_done, o.agree ? "agree" : "DISAGREE");
            free(o.out);
            return 0;
        }
        free(o.out);
    }
    return 1;
}

static void test_cuts(void)
{
    struct buf f = {0};
    char why[200] = "";
    frame_single(&f, 5);
    raw_block(&f, 0, ramp, 3);
    block_header(&f, 1, 1, 2);
    put8(&f, 9);
    frame_window(&f, 0x00);
    PUT(&f, 0x5e, 0x2a, 0x4d, 0x18, 1, 0, 0, 0, 7);
    raw_block(&f, 1, ramp, 4);
    uint8_t want[9];
    memcpy(want, ramp, 3);
    memset(want + 3, 9, 2);
    memcpy(want + 5, ramp, 4);
    int ok = check_cuts(f.b, f.n, want, 9, 0, why, sizeof why);
    report(ok, "ZSTD-CUT: two hand-made frames around a skippable one, cut at every byte");
    if (!ok)
        diag("%s", why);
}

/* ---------------------------------------------------------------------------
 * Fixtures from the zstd tool, and what they cover
 * ------------------------------------------------------------------------- */

/* What the fixtures contain, tallied by walking their frames here. */
enum {
    SEEN_RAW_BLOCK, SEEN_RLE_BLOCK, SEEN_COMPRESSED_BLOCK,
    SEEN_LIT_RAW, SEEN_LIT_RLE, SEEN_LIT_HUF1, SEEN_LIT_HUF4, SEEN_LIT_TREELESS,
    SEEN_WEIGHTS_DIRECT, SEEN_WEIGHTS_FSE, SEEN_NO_SEQUENCES,
    SEEN_MODE_FIRST, /* + 3 * mode + table (LL, OF, ML) */
    SEEN_SINGLE_SEGMENT = SEEN_MODE_FIRST + 12, SEEN_WINDOW, SEEN_NO_FCS, SEEN_CHECKSUM, SEEN_SKIPPABLE,
    SEEN_COUNT
};
static const char *seen_name[SEEN_COUNT] = {
    "raw block", "RLE block", "compressed block", "raw literals", "RLE literals", "Huffman literals, 1 stream",
    "Huffman literals, 4 streams", "treeless literals", "direct Huffman weights", "FSE Huffman weights",
    "a block without sequences", "LL predefined", "OF predefined", "ML predefined", "LL RLE", "OF RLE",
    "ML RLE", "LL FSE", "OF FSE", "ML FSE", "LL repeat", "OF repeat", "ML repeat", "single-segment frame",
    "window descriptor", "frame without content size", "content checksum", "skippable frame"};
static unsigned seen[SEEN_COUNT];

/* Walks the frames of a (valid) input and counts the parts of the format
 * it uses; an independent reading of the headers, not the decoder's. */
static void walk(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i + 4 <= n) {
        uint32_t magic = vub_le32(p + i);
        i += 4;
        if ((magic & ~15u) == 0x184D2A50u) {
            seen[SEEN_SKIPPABLE]++;
            i += 4 + vub_le32(p + i);
            continue;
        }
        unsigned fhd = p[i++];
        unsigned single = fhd >> 5 & 1, fcs = fhd >> 6;
        seen[single ? SEEN_SINGLE_SEGMENT : SEEN_WINDOW]++;
        if (!single && fcs == 0)
            seen[SEEN_NO_FCS]++;
        i += !single + (size_t)(const uint8_t[]){0, 1, 2, 4}[fhd & 3] +
             (size_t)(fcs == 0 ? single : 1u << fcs);
        for (int last = 0; !last;) {
            uint32_t h = p[i] | p[i + 1] << 8 | (uint32_t)p[i + 2] << 16;
            i += 3;
            last = h & 1;
            unsigned type = h >> 1 & 3;
            size_t size = h >> 3;
            seen[type == 0 ? SEEN_RAW_BLOCK : type == 1 ? SEEN_RLE_BLOCK : SEEN_COMPRESSED_BLOCK]++;
            if (type == 2) {
                const uint8_t *b = p + i;
                unsigned lt = b[0] & 3, sf = b[0] >> 2 & 3;
                size_t lit_size;
                if (lt < 2) {
                    size_t hb = sf == 1 ? 2 : sf == 3 ? 3 : 1;
                    size_t regen = hb == 1 ? b[0] >> 3 : hb == 2 ? (size_t)(b[0] >> 4) + ((size_t)b[1] << 4)
                                                                 : (size_t)(b[0] >> 4) + ((size_t)b[1] << 4) +
                                                                       ((size_t)b[2] << 12);
                    lit_size = hb + (lt == 0 ? regen : 1);
                    seen[lt == 0 ? SEEN_LIT_RAW : SEEN_LIT_RLE]++;
                } else {
                    size_t hb = sf < 2 ? 3 : sf + 2, width = sf < 2 ? 10 : sf == 2 ? 14 : 18;
                    uint64_t v = 0;
                    for (size_t k = 0; k < hb; k++)
                        v |= (uint64_t)b[k] << (8 * k);
                    lit_size = hb + (size_t)(v >> (4 + width) & ((1u << width) - 1));
                    seen[lt == 3 ? SEEN_LIT_TREELESS : sf == 0 ? SEEN_LIT_HUF1 : SEEN_LIT_HUF4]++;
                    if (lt == 3 && sf != 0)
                        seen[SEEN_LIT_HUF4]++;
                    if (lt == 2)
                        seen[b[hb] >= 128 ? SEEN_WEIGHTS_DIRECT : SEEN_WEIGHTS_FSE]++;
                }
                const uint8_t *s = b + lit_size;
                size_t nseq = s[0] < 128 ? s[0] : s[0] < 255 ? (size_t)(s[0] - 128) << 8 | s[1] : 1;
                if (nseq == 0) {
                    seen[SEEN_NO_SEQUENCES]++;
                } else {
                    unsigned modes = s[s[0] < 128 ? 1 : s[0] < 255 ? 2 : 3];
                    seen[SEEN_MODE_FIRST + 3 * (modes >> 6) + 0]++;
                    seen[SEEN_MODE_FIRST + 3 * (modes >> 4 & 3) + 1]++;
                    seen[SEEN_MODE_FIRST + 3 * (modes >> 2 & 3) + 2]++;
                }
            }
            i += type == 1 ? 1 : size;
        }
        if (fhd & 4) {
            seen[SEEN_CHECKSUM]++;
            i += 4;
        }
    }
}

/* A fixture, kept for the mutation loop when small. */
struct fixture {
    char name[64];
    uint8_t *packed, *raw;
    size_t packed_len, raw_len;
};

static struct fixture fixtures[64];
static size_t fixture_count;

static void test_fixture(const char *dir, const char *name, size_t raw_len, uint32_t crc)
{
    size_t packed_len = 0;
    uint8_t *packed = read_file(dir, name, ".zst", &packed_len);
    if (!packed) {
        report(0, "ZSTD-QEMU: fixture %s is readable", name);
        return;
    }
    walk(packed, packed_len);

    struct outcome o = run(packed, packed_len, raw_len ? raw_len : 16);
    int pass = o.agree && o.result == VUB_ZSTD_OK && o.dst_done == raw_len && o.src_done == packed_len &&
               crc32(o.out, raw_len) == crc;
    report(pass, "ZSTD-QEMU: zstd's %s (%zu -> %zu bytes) decodes to exactly the bytes compressed", name,
           packed_len, raw_len);
    if (!pass)
        diag("result %d (%s), dst_done %zu, src_done %zu, decoders %s", o.result, vub_zstd_strerror(o.result),
             o.dst_done, o.src_done, o.agree ? "agree" : "DISAGREE");

    if (raw_len > 0) {
        /* qcow2: the extent is rounded up to sectors: a sector of other data follows. */
        uint8_t *padded = xmalloc(packed_len + 512);
        memcpy(padded, packed, packed_len);
        for (size_t i = 0; i < 512; i++)
            padded[packed_len + i] = (uint8_t)(i * 7 + 1);
        struct outcome p = run(padded, packed_len + 512, raw_len);
        report(p.agree && p.result == VUB_ZSTD_OK && p.dst_done == raw_len && p.src_done == packed_len &&
                   memcmp(p.out, o.out, raw_len) == 0,
               "ZSTD-TRAILING: %s followed by a sector of other data decodes the same and stops at its end", name);
        free(p.out);
        struct outcome q = run(packed, packed_len, raw_len - 1);
        report(q.agree && q.result == VUB_ZSTD_E_TOO_BIG && q.dst_done <= raw_len - 1 &&
                   memcmp(q.out, o.out, q.dst_done) == 0,
               "ZSTD-QEMU: %s into a buffer one byte too small is refused as too big", name);
        note_result(q.result);
        free(q.out);
        free(padded);
    }

    char why[200] = "";
    size_t samples = packed_len > 6000 ? 256 : 0;
    int cuts_ok = check_cuts(packed, packed_len, o.out, raw_len, samples, why, sizeof why);
    report(cuts_ok, "ZSTD-CUT: %s cut at %s is refused or stops short, with a correct prefix", name,
           samples ? "256 positions spread over it" : "every byte");
    if (!cuts_ok)
        diag("%s", why);

    if (raw_len <= 300000 && packed_len <= 40000 && fixture_count < VUB_ARRAY_LEN(fixtures)) {
        struct fixture *f = &fixtures[fixture_count++];
        snprintf(f->name, sizeof f->name, "%s", name);
        f->packed = packed;
        f->packed_len = packed_len;
        f->raw = o.out;
        f->raw_len = raw_len;
        packed = NULL;
        o.out = NULL;
    }
    free(o.out);
    free(packed);
}

static void test_fixtures(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    FILE *m = fopen(path, "r");
    report(m != NULL, "ZSTD-QEMU: the fixture manifest %s is present", path);
    if (!m)
        return;
    char name[64];
    size_t raw_len;
    unsigned crc;
    int count = 0;
    while (fscanf(m, "%63s %zu %x", name, &raw_len, &crc) == 3) {
        test_fixture(dir, name, raw_len, crc);
        count++;
    }
    fclose(m);
    report(count >= 20, "ZSTD-QEMU: the manifest lists all %d fixtures", count);
    /* The zstd tool writes RLE literals and RLE sequence tables only for
     * long runs of one literal or one code, which the data here do not
     * produce; hand-made frames above cover those (ZSTD-LIT-RLE,
     * ZSTD-SEQ-RLE). Everything else must come from the tool too. */
    int all = 1;
    for (int k = 0; k < SEEN_COUNT; k++) {
        if (k == SEEN_LIT_RLE || (k >= SEEN_MODE_FIRST + 3 && k < SEEN_MODE_FIRST + 6))
            continue;
        if (!seen[k]) {
            all = 0;
            diag("no fixture has %s", seen_name[k]);
        }
    }
    report(all, "ZSTD-BLOCKS: the fixtures use every block type, literals type but RLE, stream count, weight "
                "encoding and every sequence mode but RLE of each table (%u blocks walked)",
           seen[SEEN_RAW_BLOCK] + seen[SEEN_RLE_BLOCK] + seen[SEEN_COMPRESSED_BLOCK]);
    diag("walked: %u raw, %u RLE, %u compressed blocks; literals %u raw, %u RLE, %u 1-stream, %u 4-stream, "
         "%u treeless; modes LL %u/%u/%u/%u OF %u/%u/%u/%u ML %u/%u/%u/%u",
         seen[SEEN_RAW_BLOCK], seen[SEEN_RLE_BLOCK], seen[SEEN_COMPRESSED_BLOCK], seen[SEEN_LIT_RAW],
         seen[SEEN_LIT_RLE], seen[SEEN_LIT_HUF1], seen[SEEN_LIT_HUF4], seen[SEEN_LIT_TREELESS],
         seen[SEEN_MODE_FIRST], seen[SEEN_MODE_FIRST + 3], seen[SEEN_MODE_FIRST + 6], seen[SEEN_MODE_FIRST + 9],
         seen[SEEN_MODE_FIRST + 1], seen[SEEN_MODE_FIRST + 4], seen[SEEN_MODE_FIRST + 7],
         seen[SEEN_MODE_FIRST + 10], seen[SEEN_MODE_FIRST + 2], seen[SEEN_MODE_FIRST + 5],
         seen[SEEN_MODE_FIRST + 8], seen[SEEN_MODE_FIRST + 11]);
}

/* ---------------------------------------------------------------------------
 * Mutation: damaged frames never crash, never overrun, decoders agree
 * ------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static void test_mutations(unsigned iterations)
{
    size_t disagreements = 0, out_of_range = 0, seen_ok = 0, seen_error = 0;
    int seen_code[1 - VUB_ZSTD_RESULT_MIN] = {0};
    for (unsigned it = 0; it < iterations && fixture_count > 0; it++) {
        const struct fixture *f = &fixtures[rng() % fixture_count];
        size_t len = f->packed_len;
        uint8_t *s = xmalloc(len);
        memcpy(s, f->packed, len);
        unsigned damage = 1 + rng() % 4;
        for (unsigned k = 0; k < damage && len > 0; k++) {
            size_t at = rng() % len;
            switch (rng() % 5) {
            case 0: s[at] ^= (uint8_t)(1u << (rng() % 8)); break;
            case 1: s[at] = (uint8_t)rng(); break;
            case 2: len = at; break; /* truncate */
            case 3: /* near the front, where the headers are */
                at %= len < 64 ? len : 64;
                s[at] ^= (uint8_t)(1u << (rng() % 8));
                break;
            default:
                for (size_t i = at; i < len && i < at + 16; i++)
                    s[i] = (uint8_t)rng();
            }
        }
        size_t dst_len;
        switch (rng() % 3) {
        case 0: dst_len = f->raw_len; break;
        case 1: dst_len = rng() % (f->raw_len + 1); break;
        default: dst_len = f->raw_len + rng() % 70000; break;
        }
        struct outcome o = run(s, len, dst_len);
        if (!o.agree)
            disagreements++;
        if (o.dst_done > dst_len || o.src_done > len || o.result > 0 || o.result < VUB_ZSTD_RESULT_MIN)
            out_of_range++;
        else
            seen_code[o.result - VUB_ZSTD_RESULT_MIN] = 1;
        if (o.result == 0)
            seen_ok++;
        else
            seen_error++;
        free(o.out);
        free(s);
    }
    int kinds = 0;
    for (int k = 0; k < 1 - VUB_ZSTD_RESULT_MIN; k++)
        kinds += seen_code[k];
    report(disagreements == 0 && out_of_range == 0 && seen_error > 0,
           "ZSTD-RESULTS: %u mutated or truncated zstd frames stay in bounds, return a listed result, and get "
           "the same answer from both decoders", iterations);
    if (disagreements || out_of_range)
        diag("%zu disagreements, %zu out of range", disagreements, out_of_range);
    diag("mutations: %zu decoded, %zu refused, %d distinct results", seen_ok, seen_error, kinds);

    size_t bad = 0;
    for (unsigned it = 0; it < iterations; it++) {
        uint8_t junk[64];
        size_t len = 4 + rng() % 60, dst_len = rng() % 512;
        for (size_t i = 0; i < len; i++)
            junk[i] = (uint8_t)rng();
        vub_put_le32(junk, VUB_ZSTD_MAGIC); /* random bytes after a real magic number */
        struct outcome o = run(junk, len, dst_len);
        if (!o.agree || o.dst_done > dst_len || o.src_done > len)
            bad++;
        free(o.out);
    }
    report(bad == 0, "ZSTD-RESULTS: %u frames of random bytes stay in bounds and both decoders agree", iterations);
}

/* ---------------------------------------------------------------------------
 * The result table
 * ------------------------------------------------------------------------- */

static void test_result_table(void)
{
    int distinct = 1, covered = 1;
    for (int a = VUB_ZSTD_RESULT_MIN; a <= 0; a++) {
        const char *ma = vub_zstd_strerror(a);
        if (strcmp(ma, vub_zstd_strerror(-100)) == 0)
            distinct = 0;
        for (int b = a + 1; b <= 0; b++)
            if (strcmp(ma, vub_zstd_strerror(b)) == 0)
                distinct = 0;
        if (!result_seen[a - VUB_ZSTD_RESULT_MIN]) {
            covered = 0;
            diag("no hand-made frame produced result %d (%s)", a, ma);
        }
    }
    report(distinct, "ZSTD-RESULTS: every result from %d to 0 has a message of its own", VUB_ZSTD_RESULT_MIN);
    report(covered, "ZSTD-RESULTS: every result in the table is produced by at least one hand-made frame");
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data/zstd";
    work = xmalloc(sizeof *work);
    for (size_t i = 0; i < sizeof ramp; i++)
        ramp[i] = (uint8_t)(i * 37 + i / 256);
    test_xxh64();
    test_repeat_offsets();
    test_fse_tables();
    test_huffman_tables();
    test_frames();
    test_literals();
    test_sequences();
    test_cuts();
    test_result_table();
    test_fixtures(dir);
    test_mutations(5000);
    printf("# %d checks, %d failed\n", checks_run, checks_failed);
    free(work);
    return checks_failed ? 1 : 0;
}
