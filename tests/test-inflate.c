/* test-inflate: vub's RFC 1951 inflate, proved one clause at a time.
 *
 * Build and run from the repository root:
 *   cc -std=c11 -Wall -Wextra -Werror -O2 tests/test-inflate.c -o /tmp/ti && /tmp/ti
 * An optional argument names the fixture directory (default tests/data/inflate).
 *
 * Every check prints "ok - <clause>" or "not ok - <clause>"; the exit status is
 * non-zero if any failed. Streams come from three places:
 *   1. hand-made: a bit writer below builds stored, fixed and dynamic blocks,
 *      valid and malformed, each checked for its exact result and output;
 *   2. zlib: tests/data/inflate/ holds streams from Python's zlib (gen.py), as
 *      QEMU writes them, checked byte for byte against the data compressed;
 *   3. mutation: a seeded loop damages those streams and checks that nothing
 *      overruns (run it under -fsanitize=address,undefined) and that the fast
 *      table decoder and the reference decoder always agree.
 * Every decode runs on heap copies of exactly the given sizes, so an access one
 * byte out of bounds is a sanitizer error, and runs both decoders.
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

/* Which results the hand-made streams have produced, to prove the table is covered. */
static int result_seen[2 - VUB_INFLATE_RESULT_MIN];

/* ---------------------------------------------------------------------------
 * Running the decoder: both decoders, exact-size buffers
 * ------------------------------------------------------------------------- */

struct outcome {
    int result;        /* the table decoder's result (vub_inflate's) */
    size_t dst_done;
    size_t src_done;
    uint8_t *out;      /* dst_len bytes, owned; the table decoder's output */
    int agree;         /* the reference decoder gave the same everything */
};

/* Decodes src into dst with one decoder: vub_inflate() itself, or the
 * reference-only decoder. Copies the input
 * into a buffer of exactly src_len bytes; an empty input or output is passed
 * as a NULL pointer, which the decoder must never touch. */
static int run_one(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_len,
                   size_t *dst_done, size_t *src_done, int use_table)
{
    uint8_t *in = src_len ? xmalloc(src_len) : NULL;
    if (src_len)
        memcpy(in, src, src_len);
    uint8_t *out = dst_len ? dst : NULL;
    int result = use_table ? vub_inflate(out, dst_len, dst_done, in, src_len, src_done)
                           : vub_infl_run(out, dst_len, dst_done, in, src_len, src_done, 0);
    free(in);
    return result;
}

static struct outcome run(const uint8_t *src, size_t src_len, size_t dst_len)
{
    struct outcome o;
    uint8_t *ref = xmalloc(dst_len);
    size_t ref_dst, ref_src;
    int ref_result = run_one(src, src_len, ref, dst_len, &ref_dst, &ref_src, 0);

    o.out = xmalloc(dst_len);
    o.result = run_one(src, src_len, o.out, dst_len, &o.dst_done, &o.src_done, 1);
    o.agree = ref_result == o.result && ref_dst == o.dst_done && ref_src == o.src_done &&
              (o.dst_done == 0 || memcmp(ref, o.out, o.dst_done) == 0);
    free(ref);
    return o;
}

/* One check: decoding src into dst_len bytes gives result want with exactly
 * want_out[0..want_len) written, both decoders agreeing. want_src is the
 * expected src_done, or SIZE_MAX when it does not matter. */
static void expect(const char *clause, const uint8_t *src, size_t src_len, size_t dst_len,
                   int want, const uint8_t *want_out, size_t want_len, size_t want_src)
{
    struct outcome o = run(src, src_len, dst_len);
    int pass = o.agree && o.result == want && o.dst_done == want_len &&
               (want_len == 0 || memcmp(o.out, want_out, want_len) == 0) &&
               (want_src == SIZE_MAX || o.src_done == want_src);
    if (o.result <= 1 && o.result >= VUB_INFLATE_RESULT_MIN)
        result_seen[o.result - VUB_INFLATE_RESULT_MIN] = 1;
    report(pass, "%s", clause);
    if (!pass)
        diag("got %d (%s), dst_done %zu, src_done %zu, decoders %s; want %d, %zu bytes, src_done %zu",
             o.result, vub_inflate_strerror(o.result), o.dst_done, o.src_done,
             o.agree ? "agree" : "DISAGREE", want, want_len, want_src);
    free(o.out);
}

/* ---------------------------------------------------------------------------
 * Bit writer: builds streams the way RFC 1951 3.1.1 packs them
 * ------------------------------------------------------------------------- */

enum { BW_CAPACITY = 80000 };

struct bw {
    uint8_t buf[BW_CAPACITY];
    size_t bit_pos;
};

static struct bw w_storage;

static struct bw *bw_reset(void)
{
    memset(&w_storage, 0, sizeof w_storage);
    return &w_storage;
}

/* A number, least significant bit first (header fields, extra bits). */
static void bw_bits(struct bw *w, uint32_t value, unsigned count)
{
    for (unsigned i = 0; i < count; i++, w->bit_pos++) {
        if (w->bit_pos / 8 >= BW_CAPACITY) {
            fprintf(stderr, "bit writer overflow\n");
            exit(2);
        }
        if (i < 32 && (value >> i & 1))
            w->buf[w->bit_pos / 8] |= (uint8_t)(1u << (w->bit_pos % 8));
    }
}

/* A Huffman code, most significant bit first. */
static void bw_code(struct bw *w, uint32_t code, unsigned len)
{
    for (unsigned i = len; i-- > 0;)
        bw_bits(w, code >> i & 1, 1);
}

/* Pads to a byte boundary with the given bit value (decoders must ignore it). */
static void bw_align(struct bw *w, unsigned pad_bit)
{
    while (w->bit_pos % 8)
        bw_bits(w, pad_bit, 1);
}

static size_t bw_size(const struct bw *w)
{
    return (w->bit_pos + 7) / 8;
}

/* A stored block: header, padding to the byte boundary, LEN, NLEN, data. */
static void put_stored(struct bw *w, int last, const uint8_t *data, size_t len)
{
    bw_bits(w, (uint32_t)last, 1);
    bw_bits(w, 0, 2);
    bw_align(w, 0);
    bw_bits(w, (uint32_t)len, 16);
    bw_bits(w, (uint32_t)len ^ 0xffff, 16);
    for (size_t i = 0; i < len; i++)
        bw_bits(w, data[i], 8);
}

/* ---------------------------------------------------------------------------
 * Tokens: literals and matches, encoded with fixed or dynamic codes
 * ------------------------------------------------------------------------- */

/* A literal (lit >= 0) or a match of len bytes from dist back (lit < 0). */
struct tok {
    int lit;
    unsigned len, dist;
};

#define LIT(c) {(c), 0, 0}
#define MATCH(l, d) {-1, (l), (d)}

/* What a token list must inflate to, appended to out[0..pos); returns the new
 * length. The overlap rule written the obvious way. */
static size_t expand(const struct tok *t, size_t n, uint8_t *out, size_t pos)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i].lit >= 0) {
            out[pos++] = (uint8_t)t[i].lit;
            continue;
        }
        for (unsigned k = 0; k < t[i].len; k++, pos++)
            out[pos] = out[pos - t[i].dist];
    }
    return pos;
}

/* Length -> symbol and extra bits, worked out from RFC 1951 3.2.5's rule
 * rather than copied from the decoder's tables: 257-264 are 3-10 with no extra
 * bits, then groups of four symbols with 1..5 extra bits, and 285 is 258. */
static void length_symbol(unsigned length, unsigned *sym, unsigned *extra_bits, unsigned *extra)
{
    *sym = 0;
    *extra_bits = 0;
    *extra = 0;
    if (length == 258) {
        *sym = 285;
        return;
    }
    if (length <= 10) {
        *sym = 254 + length;
        return;
    }
    unsigned base = 11, s = 265;
    for (unsigned bits = 1; bits <= 5; bits++) {
        for (unsigned k = 0; k < 4; k++, s++) {
            if (length < base + (1u << bits)) {
                *sym = s;
                *extra_bits = bits;
                *extra = length - base;
                return;
            }
            base += 1u << bits;
        }
    }
}

/* Distance -> symbol and extra bits: 0-3 are 1-4, then pairs with 1..13 bits. */
static void distance_symbol(unsigned dist, unsigned *sym, unsigned *extra_bits, unsigned *extra)
{
    *sym = 0;
    *extra_bits = 0;
    *extra = 0;
    if (dist <= 4) {
        *sym = dist - 1;
        return;
    }
    unsigned base = 5, s = 4;
    for (unsigned bits = 1; bits <= 13; bits++) {
        for (unsigned k = 0; k < 2; k++, s++) {
            if (dist < base + (1u << bits)) {
                *sym = s;
                *extra_bits = bits;
                *extra = dist - base;
                return;
            }
            base += 1u << bits;
        }
    }
}

/* The fixed lit/len code of RFC 1951 3.2.6, written out by range. */
static void put_fixed_symbol(struct bw *w, unsigned sym)
{
    if (sym < 144)
        bw_code(w, 0x30 + sym, 8);
    else if (sym < 256)
        bw_code(w, 0x190 + sym - 144, 9);
    else if (sym < 280)
        bw_code(w, sym - 256, 7);
    else
        bw_code(w, 0xc0 + sym - 280, 8);
}

static void put_fixed_tokens(struct bw *w, const struct tok *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned sym, bits, extra;
        if (t[i].lit >= 0) {
            put_fixed_symbol(w, (unsigned)t[i].lit);
            continue;
        }
        length_symbol(t[i].len, &sym, &bits, &extra);
        put_fixed_symbol(w, sym);
        bw_bits(w, extra, bits);
        distance_symbol(t[i].dist, &sym, &bits, &extra);
        bw_code(w, sym, 5);
        bw_bits(w, extra, bits);
    }
}

/* A whole fixed block: header, tokens, end-of-block. */
static void put_fixed_block(struct bw *w, int last, const struct tok *t, size_t n)
{
    bw_bits(w, (uint32_t)last, 1);
    bw_bits(w, 1, 2);
    put_fixed_tokens(w, t, n);
    put_fixed_symbol(w, 256);
}

/* Canonical codes from lengths, RFC 1951 3.2.2 steps 1-3, done independently. */
static void canonical_codes(const uint8_t *lens, unsigned n, uint16_t *codes)
{
    unsigned bl_count[16] = {0}, next_code[16] = {0};
    for (unsigned i = 0; i < n; i++)
        bl_count[lens[i]]++;
    bl_count[0] = 0;
    unsigned code = 0;
    for (unsigned bits = 1; bits <= 15; bits++) {
        code = (code + bl_count[bits - 1]) << 1;
        next_code[bits] = code;
    }
    for (unsigned i = 0; i < n; i++)
        codes[i] = lens[i] ? (uint16_t)next_code[lens[i]]++ : 0;
}

/* A dynamic block's codes, as the test sees them. */
struct dyn {
    unsigned nlen, ndist;
    uint8_t lens[320];        /* nlen lit/len lengths, then ndist distance lengths */
    uint16_t lit_codes[288], dist_codes[32];
};

static void dyn_init(struct dyn *d, unsigned nlen, unsigned ndist)
{
    memset(d, 0, sizeof *d);
    d->nlen = nlen;
    d->ndist = ndist;
}

static void dyn_codes(struct dyn *d)
{
    canonical_codes(d->lens, d->nlen, d->lit_codes);
    canonical_codes(d->lens + d->nlen, d->ndist, d->dist_codes);
}

/* One code-length symbol with its extra-bit value. */
struct cl_op {
    uint8_t sym, extra;
};

static const uint8_t cl_order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

/* A complete code-length code with every symbol: 0-15 five bits, 16 and 17
 * three bits, 18 two bits (16/32 + 2/8 + 1/4 = 1). */
static const uint8_t cl_all[19] = {5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 3, 3, 2};

/* A dynamic header from explicit parts, so malformed ones can be made: the
 * counts as sent (nlen 257..288, ndist 1..32, ncl 4..19), the code-length
 * lengths, and the code-length symbols. */
static void put_dyn_header_raw(struct bw *w, int last, unsigned nlen, unsigned ndist, unsigned ncl,
                               const uint8_t cl_lens[19], const struct cl_op *ops, size_t op_count)
{
    static const unsigned extra_bits[3] = {2, 3, 7};
    uint16_t cl_codes[19];
    canonical_codes(cl_lens, 19, cl_codes);
    bw_bits(w, (uint32_t)last, 1);
    bw_bits(w, 2, 2);
    bw_bits(w, nlen - 257, 5);
    bw_bits(w, ndist - 1, 5);
    bw_bits(w, ncl - 4, 4);
    for (unsigned i = 0; i < ncl; i++)
        bw_bits(w, cl_lens[cl_order[i]], 3);
    for (size_t i = 0; i < op_count; i++) {
        bw_code(w, cl_codes[ops[i].sym], cl_lens[ops[i].sym]);
        if (ops[i].sym >= 16)
            bw_bits(w, ops[i].extra, extra_bits[ops[i].sym - 16]);
    }
}

/* Run-length encodes d->lens the usual way (17/18 for zeros, 16 after a
 * length), over the lit/len and distance lengths as one sequence. */
static size_t rle_lengths(const struct dyn *d, struct cl_op *ops)
{
    unsigned total = d->nlen + d->ndist, i = 0;
    size_t n = 0;
    while (i < total) {
        unsigned run = 1;
        while (i + run < total && d->lens[i + run] == d->lens[i])
            run++;
        if (d->lens[i] == 0 && run >= 11) {
            run = run > 138 ? 138 : run;
            ops[n++] = (struct cl_op){18, (uint8_t)(run - 11)};
        } else if (d->lens[i] == 0 && run >= 3) {
            ops[n++] = (struct cl_op){17, (uint8_t)(run - 3)};
        } else if (run >= 4) {
            ops[n++] = (struct cl_op){d->lens[i], 0};
            run = run - 1 > 6 ? 7 : run;
            ops[n++] = (struct cl_op){16, (uint8_t)(run - 1 - 3)};
        } else {
            run = 1;
            ops[n++] = (struct cl_op){d->lens[i], 0};
        }
        i += run;
    }
    return n;
}

static void put_dyn_header(struct bw *w, int last, const struct dyn *d)
{
    struct cl_op ops[320];
    size_t n = rle_lengths(d, ops);
    put_dyn_header_raw(w, last, d->nlen, d->ndist, 19, cl_all, ops, n);
}

static void put_dyn_tokens(struct bw *w, const struct dyn *d, const struct tok *t, size_t n)
{
    const uint8_t *dl = d->lens + d->nlen;
    for (size_t i = 0; i < n; i++) {
        unsigned sym, bits, extra;
        if (t[i].lit >= 0) {
            bw_code(w, d->lit_codes[t[i].lit], d->lens[t[i].lit]);
            continue;
        }
        length_symbol(t[i].len, &sym, &bits, &extra);
        bw_code(w, d->lit_codes[sym], d->lens[sym]);
        bw_bits(w, extra, bits);
        distance_symbol(t[i].dist, &sym, &bits, &extra);
        bw_code(w, d->dist_codes[sym], dl[sym]);
        bw_bits(w, extra, bits);
    }
    bw_code(w, d->lit_codes[256], d->lens[256]);
}

/* ---------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1du) >> 32);
}

static uint8_t expected[70000];

/* ---------------------------------------------------------------------------
 * Stored blocks (RFC 1951 3.2.4)
 * ------------------------------------------------------------------------- */

static void test_stored(void)
{
    static const uint8_t hello[] = {0x01, 0x05, 0x00, 0xfa, 0xff, 'h', 'e', 'l', 'l', 'o'};
    expect("INFL-STORED: a final stored block of five bytes is copied unchanged",
           hello, sizeof hello, 5, VUB_INFLATE_OK, hello + 5, 5, sizeof hello);

    static const uint8_t empty[] = {0x01, 0x00, 0x00, 0xff, 0xff};
    expect("INFL-STORED: an empty final stored block produces no output and completes",
           empty, sizeof empty, 16, VUB_INFLATE_OK, NULL, 0, sizeof empty);

    struct bw *w = bw_reset();
    put_stored(w, 0, (const uint8_t *)"ab", 2);
    put_stored(w, 0, NULL, 0);
    put_stored(w, 1, (const uint8_t *)"cd", 2);
    expect("INFL-STORED: non-final stored blocks, one of them empty, run on into the final one",
           w->buf, bw_size(w), 4, VUB_INFLATE_OK, (const uint8_t *)"abcd", 4, bw_size(w));

    /* A fixed block of one literal leaves the stream 3 + 8 + 7 = 18 bits in:
     * the stored block's header takes 3 more, then LEN starts at bit 24. */
    w = bw_reset();
    static const struct tok x[] = {LIT('x')};
    put_fixed_block(w, 0, x, 1);
    bw_bits(w, 1, 1);
    bw_bits(w, 0, 2);
    bw_align(w, 1);
    bw_bits(w, 2, 16);
    bw_bits(w, 2 ^ 0xffff, 16);
    bw_bits(w, 'y', 8);
    bw_bits(w, 'z', 8);
    expect("INFL-STORED-ALIGN: a stored block after a fixed block starts LEN at the next byte "
           "boundary, ignoring the skipped bits even when they are ones",
           w->buf, bw_size(w), 3, VUB_INFLATE_OK, (const uint8_t *)"xyz", 3, bw_size(w));

    w = bw_reset();
    for (size_t i = 0; i < 65535; i++)
        expected[i] = (uint8_t)(i * 7 + (i >> 8));
    put_stored(w, 1, expected, 65535);
    expect("INFL-STORED: a stored block of the largest length, 65535 bytes, is copied",
           w->buf, bw_size(w), 65535, VUB_INFLATE_OK, expected, 65535, bw_size(w));

    static const uint8_t bad_nlen[] = {0x01, 0x05, 0x00, 0xfa, 0xfe, 'h', 'e', 'l', 'l', 'o'};
    expect("INFL-STORED-NLEN: a stored block with NLEN not the complement of LEN is rejected",
           bad_nlen, sizeof bad_nlen, 5, VUB_INFLATE_E_STORED_NLEN, NULL, 0, SIZE_MAX);

    static const uint8_t both_zero[] = {0x01, 0x00, 0x00, 0x00, 0x00};
    expect("INFL-STORED-NLEN: a stored block with LEN and NLEN both zero is rejected",
           both_zero, sizeof both_zero, 5, VUB_INFLATE_E_STORED_NLEN, NULL, 0, SIZE_MAX);

    static const uint8_t cut[] = {0x01, 0x05, 0x00, 0xfa, 0xff, 'h', 'e', 'l'};
    expect("INFL-CUT: a stored block cut inside its data keeps the bytes that arrived and "
           "reports that the input ran out",
           cut, sizeof cut, 5, VUB_INFLATE_E_INPUT, (const uint8_t *)"hel", 3, sizeof cut);

    expect("INFL-FULL: a stored block longer than the output fills it and reports it full",
           hello, sizeof hello, 3, VUB_INFLATE_FULL, (const uint8_t *)"hel", 3, SIZE_MAX);

    static const uint8_t type3[] = {0x07, 0x00};
    expect("INFL-BTYPE3: block type 3 is rejected as reserved",
           type3, sizeof type3, 16, VUB_INFLATE_E_BLOCK_TYPE, NULL, 0, SIZE_MAX);
}

/* ---------------------------------------------------------------------------
 * Fixed Huffman blocks (RFC 1951 3.2.5, 3.2.6)
 * ------------------------------------------------------------------------- */

/* Stored prefix of prefix_len pseudo-random bytes, then a final fixed block
 * with the tokens; checks the exact output. */
static int fixed_after_prefix(size_t prefix_len, const struct tok *t, size_t n, char *why, size_t why_len)
{
    struct bw *w = bw_reset();
    for (size_t i = 0; i < prefix_len; i++)
        expected[i] = (uint8_t)(rng() >> 24);
    if (prefix_len)
        put_stored(w, 0, expected, prefix_len);
    put_fixed_block(w, 1, t, n);
    size_t out_len = expand(t, n, expected, prefix_len);
    struct outcome o = run(w->buf, bw_size(w), out_len);
    int pass = o.agree && o.result == VUB_INFLATE_OK && o.dst_done == out_len &&
               memcmp(o.out, expected, out_len) == 0 && o.src_done == bw_size(w);
    if (!pass)
        snprintf(why, why_len, "result %d, dst_done %zu of %zu, decoders %s",
                 o.result, o.dst_done, out_len, o.agree ? "agree" : "DISAGREE");
    free(o.out);
    return pass;
}

static void test_fixed(void)
{
    char why[200] = "";
    struct tok toks[300];
    int pass = 1;

    for (int i = 0; i < 256; i++)
        toks[i] = (struct tok)LIT(255 - i);
    pass = fixed_after_prefix(0, toks, 256, why, sizeof why);
    report(pass, "INFL-FIXED: each literal 0..255 of the fixed code (8- and 9-bit codes) is its byte");
    if (!pass)
        diag("%s", why);

    pass = 1;
    for (unsigned len = 3; len <= 258 && pass; len++) {
        struct tok t[] = {LIT('a'), LIT('b'), LIT('c'), LIT('d'), LIT('e'), MATCH(len, 5)};
        pass = fixed_after_prefix(0, t, 6, why, sizeof why);
        if (!pass)
            diag("length %u: %s", len, why);
    }
    report(pass, "INFL-LENGTHS: every length from 3 to 258 copies exactly that many bytes");

    /* Symbol 284 with extra bits 31: 227 + 31 = 258, which zlib accepts. */
    struct bw *w = bw_reset();
    bw_bits(w, 1, 1);
    bw_bits(w, 1, 2);
    put_fixed_symbol(w, 'q');
    put_fixed_symbol(w, 284);
    bw_bits(w, 31, 5);
    bw_code(w, 0, 5);
    put_fixed_symbol(w, 256);
    memset(expected, 'q', 259);
    expect("INFL-LEN258: length symbol 284 with extra bits 31 means 258, as zlib decodes it",
           w->buf, bw_size(w), 259, VUB_INFLATE_OK, expected, 259, bw_size(w));

    /* Distances at both ends of every distance symbol's range, and 32768. */
    pass = 1;
    for (unsigned sym = 0; sym < 30 && pass; sym++) {
        unsigned lo = 0, hi = 0;
        for (unsigned d = 1; d <= 32768; d++) {
            unsigned s, b, e;
            distance_symbol(d, &s, &b, &e);
            if (s == sym) {
                lo = lo ? lo : d;
                hi = d;
            }
        }
        unsigned probes[3] = {lo, lo + (lo < hi), hi};
        for (int k = 0; k < 3 && pass; k++) {
            struct tok t[] = {MATCH(4, probes[k]), MATCH(258, probes[k])};
            pass = fixed_after_prefix(32768, t, 2, why, sizeof why);
            if (!pass)
                diag("distance %u: %s", probes[k], why);
        }
    }
    report(pass, "INFL-DISTANCES, INFL-WINDOW: distances at both edges of all 30 distance codes, 1 to 32768 "
                 "(past QEMU's 12-bit window), copy from exactly that far back");

    struct tok run1[] = {LIT('a'), MATCH(258, 1)};
    pass = fixed_after_prefix(0, run1, 2, why, sizeof why);
    report(pass, "INFL-OVERLAP: a copy of 258 at distance 1 repeats the last byte 258 times");

    struct tok run3[] = {LIT('a'), LIT('b'), LIT('c'), MATCH(10, 3), MATCH(3, 13)};
    pass = fixed_after_prefix(0, run3, 5, why, sizeof why);
    report(pass, "INFL-OVERLAP: a copy longer than its distance reads the bytes it has just written, "
                 "and a distance equal to the output so far reaches its first byte");

    w = bw_reset();
    static const struct tok far[] = {LIT('a'), LIT('b'), MATCH(3, 3)};
    put_fixed_block(w, 1, far, 3);
    expect("INFL-DIST-FAR: a distance one beyond the bytes produced so far is rejected",
           w->buf, bw_size(w), 64, VUB_INFLATE_E_DIST_FAR, (const uint8_t *)"ab", 2, SIZE_MAX);

    expect("INFL-FULL: with the output already full, a match is not judged: too far back or not, "
           "the result is output full, where zlib stops too",
           w->buf, bw_size(w), 2, VUB_INFLATE_FULL, (const uint8_t *)"ab", 2, SIZE_MAX);

    w = bw_reset();
    static const struct tok at_start[] = {MATCH(3, 1)};
    put_fixed_block(w, 1, at_start, 1);
    expect("INFL-DIST-FAR: a match before any output is rejected",
           w->buf, bw_size(w), 64, VUB_INFLATE_E_DIST_FAR, NULL, 0, SIZE_MAX);

    for (unsigned sym = 286; sym <= 287; sym++) {
        w = bw_reset();
        bw_bits(w, 1, 1);
        bw_bits(w, 1, 2);
        put_fixed_symbol(w, 'a');
        put_fixed_symbol(w, sym);
        bw_bits(w, 0, 24);
        char clause[120];
        snprintf(clause, sizeof clause, "INFL-SYM-UNUSED: fixed lit/len symbol %u is rejected", sym);
        expect(clause, w->buf, bw_size(w), 64, VUB_INFLATE_E_LEN_SYMBOL, (const uint8_t *)"a", 1, SIZE_MAX);
    }
    for (unsigned sym = 30; sym <= 31; sym++) {
        w = bw_reset();
        bw_bits(w, 1, 1);
        bw_bits(w, 1, 2);
        put_fixed_symbol(w, 'a');
        put_fixed_symbol(w, 257);
        bw_code(w, sym, 5);
        bw_bits(w, 0, 24);
        char clause[120];
        snprintf(clause, sizeof clause, "INFL-SYM-UNUSED: fixed distance symbol %u is rejected", sym);
        expect(clause, w->buf, bw_size(w), 64, VUB_INFLATE_E_DIST_SYMBOL, (const uint8_t *)"a", 1, SIZE_MAX);
    }

    w = bw_reset();
    static const struct tok two[] = {LIT('o'), LIT('k')};
    put_fixed_block(w, 0, two, 2);
    put_fixed_block(w, 1, two, 2);
    expect("INFL-BLOCKS: a non-final fixed block is followed by the next block, unaligned",
           w->buf, bw_size(w), 4, VUB_INFLATE_OK, (const uint8_t *)"okok", 4, bw_size(w));
}

/* ---------------------------------------------------------------------------
 * Dynamic Huffman blocks (RFC 1951 3.2.7)
 * ------------------------------------------------------------------------- */

/* Builds a final dynamic block from d and tokens, and expects it to inflate. */
static void expect_dyn(const char *clause, struct dyn *d, const struct tok *t, size_t n)
{
    struct bw *w = bw_reset();
    dyn_codes(d);
    put_dyn_header(w, 1, d);
    put_dyn_tokens(w, d, t, n);
    size_t out_len = expand(t, n, expected, 0);
    expect(clause, w->buf, bw_size(w), out_len, VUB_INFLATE_OK, expected, out_len, bw_size(w));
}

static void test_dynamic_valid(void)
{
    struct dyn d;

    dyn_init(&d, 257, 1);
    d.lens['a'] = d.lens['b'] = d.lens['c'] = d.lens[256] = 2;
    static const struct tok abc[] = {LIT('c'), LIT('a'), LIT('b'), LIT('a'), LIT('c')};
    expect_dyn("INFL-DYNAMIC: a dynamic block with a 4-symbol lit/len code and no distance codes "
               "decodes its literals", &d, abc, 5);

    dyn_init(&d, 258, 1);
    d.lens['x'] = 1;
    d.lens[256] = d.lens[257] = 2;
    d.lens[258] = 1;
    static const struct tok xs[] = {LIT('x'), MATCH(3, 1), LIT('x')};
    expect_dyn("INFL-INCOMPLETE: a single distance code of one bit, the other code unused, is accepted "
               "(RFC 1951 3.2.7)", &d, xs, 3);

    dyn_init(&d, 257, 1);
    d.lens[256] = 1;
    expect_dyn("INFL-INCOMPLETE: a lit/len code of end-of-block alone, one bit, is an empty block, "
               "as zlib accepts", &d, NULL, 0);

    /* Lengths 1, 2, ... 15, 15: the longest codes the format allows, far past
     * the fast table, so the reference decoder takes over inside a stream. */
    dyn_init(&d, 257, 1);
    d.lens[256] = 1;
    for (int i = 0; i < 14; i++)
        d.lens['A' + i] = (uint8_t)(2 + i);
    d.lens['O'] = 15;
    struct tok deep[16];
    for (int i = 0; i < 15; i++)
        deep[i] = (struct tok)LIT('A' + i);
    deep[15] = (struct tok)LIT('O');
    expect_dyn("INFL-HUFF-CANON: a dynamic code with codes of every length up to 15 bits decodes "
               "every symbol", &d, deep, 16);

    /* Fixed, dynamic, fixed: the decoder builds the fixed code once per call
     * and must build it again after a dynamic block has replaced it. */
    dyn_init(&d, 257, 1);
    d.lens['a'] = d.lens['b'] = d.lens['c'] = d.lens[256] = 2;
    dyn_codes(&d);
    struct bw *w = bw_reset();
    static const struct tok f1[] = {LIT('F'), LIT('1')}, f2[] = {LIT('F'), LIT('2')};
    static const struct tok dy[] = {LIT('a'), LIT('b'), LIT('c')};
    for (int i = 0; i < 1000; i++)
        put_fixed_block(w, 0, NULL, 0);
    put_fixed_block(w, 0, f1, 2);
    put_dyn_header(w, 0, &d);
    put_dyn_tokens(w, &d, dy, 3);
    put_fixed_block(w, 1, f2, 2);
    expect("INFL-FIXED: a fixed block after a dynamic block decodes with the fixed code again, "
           "after a thousand empty fixed blocks", w->buf, bw_size(w), 7, VUB_INFLATE_OK,
           (const uint8_t *)"F1abcF2", 7, bw_size(w));

    /* A realistic block: 9-bit literals, a few lengths and 30 distance codes. */
    dyn_init(&d, 286, 30);
    for (int i = 0; i < 256; i++)
        d.lens[i] = 9;
    for (int i = 256; i < 286; i++)
        d.lens[i] = (uint8_t)(i < 258 ? 5 : 6);
    for (int i = 0; i < 30; i++)
        d.lens[286 + i] = (uint8_t)(i < 2 ? 4 : 5);
    struct tok mixed[40];
    size_t n = 0;
    for (int i = 0; i < 20; i++)
        mixed[n++] = (struct tok)LIT("dynamic huffman code"[i]);
    mixed[n++] = (struct tok)MATCH(258, 20);
    mixed[n++] = (struct tok)MATCH(227, 1);
    mixed[n++] = (struct tok)MATCH(3, 500);
    mixed[n++] = (struct tok)MATCH(17, 2);
    expect_dyn("INFL-DYNAMIC: a dynamic block with 286 lit/len and 30 distance codes, repeats in its "
               "header, decodes literals and matches", &d, mixed, n);
}

/* The repeat-code traps, with the code-length symbols written out by hand. */
static void test_dynamic_repeats(void)
{
    /* lit/len: 'a' 'b' 256 257 all 2 bits; distance: 4 codes of 2 bits.
     * Lengths 0..96 zero, 97 and 98 are 2, 99..255 zero, 256 is 2, and one
     * 16 repeats that 2 five times: over 257 and into all four distances. */
    static const struct cl_op ops[] = {
        {18, 97 - 11}, {2, 0}, {2, 0}, {18, 138 - 11}, {18, 19 - 11}, {2, 0}, {16, 5 - 3}};
    struct bw *w = bw_reset();
    put_dyn_header_raw(w, 1, 258, 4, 19, cl_all, ops, sizeof ops / sizeof ops[0]);
    /* codes: 'a' 00, 'b' 01, 256 10, 257 11; distances 1..4: 00 01 10 11 */
    bw_code(w, 0, 2);           /* a */
    bw_code(w, 1, 2);           /* b */
    bw_code(w, 3, 2);           /* length 3 */
    bw_code(w, 1, 2);           /* distance 2 */
    bw_code(w, 3, 2);           /* length 3 */
    bw_code(w, 3, 2);           /* distance 4 */
    bw_code(w, 2, 2);           /* end of block */
    expect("INFL-REPEAT: code 16 repeats the last lit/len length on into the distance lengths, "
           "as one sequence", w->buf, bw_size(w), 8, VUB_INFLATE_OK,
           (const uint8_t *)"abababab", 8, bw_size(w));

    /* HCLEN 14: code-length symbols 2, 14, 1 and 15, last in the order, are
     * not sent. The lengths use only 0, 3, 8, 9 and 16, all sent. */
    struct dyn d;
    dyn_init(&d, 258, 1);
    for (int i = 0; i < 128; i++)
        d.lens[i] = 8;
    for (int i = 128; i < 256; i++)
        d.lens[i] = 9;
    d.lens[256] = d.lens[257] = 3;
    dyn_codes(&d);
    struct cl_op rle[320];
    size_t n = rle_lengths(&d, rle);
    static const uint8_t cl_short[19] = {[0] = 4, [3] = 4, [8] = 2, [9] = 3, [16] = 1};
    w = bw_reset();
    put_dyn_header_raw(w, 1, 258, 1, 14, cl_short, rle, n);
    static const struct tok hi[] = {LIT('h'), LIT(200), LIT('i')};
    put_dyn_tokens(w, &d, hi, 3);
    expect("INFL-CL-ORDER: a header sending 14 code-length lengths in the RFC's order leaves the "
           "last five (2, 14, 1, 15) at zero", w->buf, bw_size(w), 3, VUB_INFLATE_OK,
           (const uint8_t *)"h\310i", 3, bw_size(w));

    /* A repeat that ends exactly on the last length is fine. */
    dyn_init(&d, 257, 3);
    d.lens['z'] = 1;
    d.lens[256] = 1;
    static const struct cl_op exact[] = {{18, 122 - 11}, {1, 0}, {18, 133 - 11}, {1, 0}, {17, 3 - 3}};
    w = bw_reset();
    put_dyn_header_raw(w, 1, 257, 3, 19, cl_all, exact, sizeof exact / sizeof exact[0]);
    bw_code(w, 0, 1);
    bw_code(w, 1, 1);
    expect("INFL-REPEAT: a repeat ending exactly on the last distance length is accepted",
           w->buf, bw_size(w), 1, VUB_INFLATE_OK, (const uint8_t *)"z", 1, bw_size(w));
}

/* A final dynamic block with the given lengths and raw code-length ops, then
 * 40 zero bits so that no malformed case is mistaken for a cut stream. */
static void expect_dyn_error(const char *clause, unsigned nlen, unsigned ndist, unsigned ncl,
                             const uint8_t cl_lens[19], const struct cl_op *ops, size_t n, int want)
{
    struct bw *w = bw_reset();
    put_dyn_header_raw(w, 1, nlen, ndist, ncl, cl_lens, ops, n);
    bw_bits(w, 0, 40);
    expect(clause, w->buf, bw_size(w), 64, want, NULL, 0, SIZE_MAX);
}

/* Lengths in d, written with the standard code-length code, then the bits
 * given (a code the header made invalid, say), then zero padding. */
static void expect_dyn_lens_error(const char *clause, struct dyn *d, uint32_t tail, unsigned tail_bits,
                                  int want, const char *want_out)
{
    struct bw *w = bw_reset();
    put_dyn_header(w, 1, d);
    bw_code(w, tail, tail_bits);
    bw_bits(w, 0, 40);
    size_t out_len = want_out ? strlen(want_out) : 0;
    expect(clause, w->buf, bw_size(w), 64, want, (const uint8_t *)want_out, out_len, SIZE_MAX);
}

static void test_dynamic_errors(void)
{
    static const struct cl_op none[1] = {{0, 0}};
    expect_dyn_error("INFL-COUNTS: HLIT of 29 (287 lit/len codes) is rejected",
                     287, 1, 19, cl_all, none, 0, VUB_INFLATE_E_TOO_MANY_LENS);
    expect_dyn_error("INFL-COUNTS: HLIT of 31 (288 lit/len codes) is rejected",
                     288, 1, 19, cl_all, none, 0, VUB_INFLATE_E_TOO_MANY_LENS);
    expect_dyn_error("INFL-COUNTS: HDIST of 30 (31 distance codes) is rejected",
                     257, 31, 19, cl_all, none, 0, VUB_INFLATE_E_TOO_MANY_DISTS);
    expect_dyn_error("INFL-COUNTS: HDIST of 31 (32 distance codes) is rejected",
                     257, 32, 19, cl_all, none, 0, VUB_INFLATE_E_TOO_MANY_DISTS);

    static const uint8_t cl_over[19] = {[0] = 1, [1] = 1, [18] = 1};
    expect_dyn_error("INFL-CL-COMPLETE: an over-subscribed code-length code is rejected",
                     257, 1, 19, cl_over, none, 0, VUB_INFLATE_E_CL_OVER);
    static const uint8_t cl_one[19] = {[0] = 1};
    expect_dyn_error("INFL-CL-COMPLETE: a code-length code of a single one-bit code is rejected as "
                     "incomplete, unlike a distance code", 257, 1, 19, cl_one, none, 0,
                     VUB_INFLATE_E_CL_INCOMPLETE);
    static const uint8_t cl_zero[19] = {0};
    expect_dyn_error("INFL-CL-COMPLETE: a code-length code with no codes at all is rejected as incomplete",
                     257, 1, 19, cl_zero, none, 0, VUB_INFLATE_E_CL_INCOMPLETE);

    static const struct cl_op first16[] = {{16, 0}};
    expect_dyn_error("INFL-REPEAT: code 16 as the first code length, with nothing to repeat, is rejected",
                     257, 1, 19, cl_all, first16, 1, VUB_INFLATE_E_REPEAT_FIRST);
    /* 257 + 1 = 258 lengths: 138 + 116 zeros leave 4, then a run of 5. */
    static const struct cl_op past[] = {{18, 138 - 11}, {18, 116 - 11}, {17, 5 - 3}};
    expect_dyn_error("INFL-REPEAT: a zero run of 5 with only 4 lengths left is rejected",
                     257, 1, 19, cl_all, past, 3, VUB_INFLATE_E_REPEAT_PAST);
    /* 138 + 117 zeros and a 1 leave 2, then 16 repeats it 3 times. */
    static const struct cl_op past16[] = {{18, 138 - 11}, {18, 117 - 11}, {1, 0}, {16, 0}};
    expect_dyn_error("INFL-REPEAT: code 16 repeating a length 3 times with only 2 lengths left is rejected",
                     257, 1, 19, cl_all, past16, 4, VUB_INFLATE_E_REPEAT_PAST);

    struct dyn d;
    dyn_init(&d, 257, 1);
    d.lens['a'] = 1;
    d.lens['b'] = 1;
    expect_dyn_lens_error("INFL-EOB: a lit/len code without an end-of-block code is rejected",
                          &d, 0, 0, VUB_INFLATE_E_NO_EOB, NULL);

    dyn_init(&d, 257, 1);
    d.lens['a'] = d.lens['b'] = d.lens[256] = 1;
    expect_dyn_lens_error("INFL-HUFF-COMPLETE: an over-subscribed lit/len code is rejected",
                          &d, 0, 0, VUB_INFLATE_E_LEN_OVER, NULL);
    dyn_init(&d, 257, 1);
    d.lens['a'] = d.lens[256] = 2;
    expect_dyn_lens_error("INFL-HUFF-COMPLETE: an incomplete lit/len code with 2-bit codes is rejected",
                          &d, 0, 0, VUB_INFLATE_E_LEN_INCOMPLETE, NULL);
    dyn_init(&d, 257, 3);
    d.lens['a'] = d.lens[256] = 1;
    d.lens[257] = d.lens[258] = d.lens[259] = 1;
    expect_dyn_lens_error("INFL-HUFF-COMPLETE: an over-subscribed distance code is rejected",
                          &d, 0, 0, VUB_INFLATE_E_DIST_OVER, NULL);
    dyn_init(&d, 257, 2);
    d.lens['a'] = d.lens[256] = 1;
    d.lens[257] = d.lens[258] = 2;
    expect_dyn_lens_error("INFL-HUFF-COMPLETE: an incomplete distance code with 2-bit codes is rejected",
                          &d, 0, 0, VUB_INFLATE_E_DIST_INCOMPLETE, NULL);

    dyn_init(&d, 257, 1);
    d.lens[256] = 1;
    expect_dyn_lens_error("INFL-CODE: the unused half of a one-bit end-of-block-only lit/len code is "
                          "rejected as no code", &d, 1, 1, VUB_INFLATE_E_LEN_CODE, NULL);

    /* 'a' 0, 256 10, 257 11; one distance code "0": send a, length 3, code "1". */
    dyn_init(&d, 258, 1);
    d.lens['a'] = 1;
    d.lens[256] = d.lens[257] = 2;
    d.lens[258] = 1;
    expect_dyn_lens_error("INFL-CODE: the unused half of a single one-bit distance code is rejected "
                          "as no code", &d, 0x7, 4, VUB_INFLATE_E_DIST_CODE, "a");
    dyn_init(&d, 258, 1);
    d.lens['a'] = 1;
    d.lens[256] = d.lens[257] = 2;
    expect_dyn_lens_error("INFL-CODE: a match in a block whose distance code is empty is rejected "
                          "as no code", &d, 0x3, 3, VUB_INFLATE_E_DIST_CODE, "a");
}

/* ---------------------------------------------------------------------------
 * Stopping: full output, cut input, bytes after the stream
 * ------------------------------------------------------------------------- */

static void test_stopping(void)
{
    static const uint8_t nothing[1] = {0};
    expect("INFL-CUT: an empty input reports that the input ran out",
           nothing, 0, 16, VUB_INFLATE_E_INPUT, NULL, 0, 0);
    expect("INFL-FULL: an empty input with no room for output reports the output full, "
           "not a cut stream", nothing, 0, 0, VUB_INFLATE_FULL, NULL, 0, 0);

    struct bw *w = bw_reset();
    static const struct tok t[] = {LIT('a'), LIT('b'), MATCH(100, 2), LIT('c')};
    put_fixed_block(w, 1, t, 4);
    size_t len = expand(t, 4, expected, 0);
    size_t stream = bw_size(w);

    expect("INFL-FULL: a stream that fills the output exactly completes",
           w->buf, stream, len, VUB_INFLATE_OK, expected, len, stream);
    expect("INFL-FULL: output one byte short stops at the last literal and reports it full",
           w->buf, stream, len - 1, VUB_INFLATE_FULL, expected, len - 1, SIZE_MAX);
    expect("INFL-FULL: output ending inside a match copies what fits and reports it full",
           w->buf, stream, 50, VUB_INFLATE_FULL, expected, 50, SIZE_MAX);
    expect("INFL-FULL: a zero-length output reports full at the first literal",
           w->buf, stream, 0, VUB_INFLATE_FULL, NULL, 0, SIZE_MAX);

    w->buf[stream] = 0xff;
    w->buf[stream + 1] = 0x5a;
    expect("INFL-TRAILING: bytes after the final block are left unread and not counted in src_done",
           w->buf, stream + 2, len, VUB_INFLATE_OK, expected, len, stream);
    w->buf[stream] = w->buf[stream + 1] = 0;

    /* Cut just before the end-of-block code: all output is there, the stream
     * is not; zlib says Z_BUF_ERROR with no room left, which QEMU accepts. */
    w = bw_reset();
    put_fixed_block(w, 1, t, 4);
    /* 50 bits: 'c' ends at bit 43, so 6 bytes hold it and 5 of the 7 end-of-block bits. */
    size_t before_eob = w->bit_pos / 8;
    expect("INFL-CUT: a stream cut after the output is full reports the output full",
           w->buf, before_eob, len, VUB_INFLATE_FULL, expected, len, SIZE_MAX);
    expect("INFL-CUT: the same cut with room to spare reports that the input ran out",
           w->buf, before_eob, len + 1, VUB_INFLATE_E_INPUT, expected, len, SIZE_MAX);
}

/* Cuts a valid stream at every byte position (or at `samples` spread
 * positions when nonzero) and checks each cut: input ran out, or output full
 * when everything fit; the output so far always a prefix of the right one. */
static int check_cuts(const uint8_t *src, size_t src_len, const uint8_t *want, size_t want_len,
                      size_t samples, char *why, size_t why_len)
{
    size_t step = samples ? (src_len / samples ? src_len / samples : 1) : 1;
    for (size_t cut = 0; cut < src_len; cut += step) {
        struct outcome o = run(src, cut, want_len);
        int want_result = o.dst_done == want_len ? VUB_INFLATE_FULL : VUB_INFLATE_E_INPUT;
        int pass = o.agree && o.result == want_result && o.dst_done <= want_len &&
                   o.src_done <= cut && memcmp(o.out, want, o.dst_done) == 0;
        if (!pass)
            snprintf(why, why_len, "cut at %zu of %zu: result %d, dst_done %zu, decoders %s",
                     cut, src_len, o.result, o.dst_done, o.agree ? "agree" : "DISAGREE");
        free(o.out);
        if (!pass)
            return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------------------
 * The fast table against the reference decoder
 * ------------------------------------------------------------------------- */

/* For every 16-bit input, both decoders must give the same symbol or error
 * and consume the same bits. Inputs of 2 bytes, then of 1 byte, so that the
 * table also meets the end of the input. */
static int table_matches_reference(const struct vub_infl_huff *h, int no_code_err)
{
    for (unsigned avail = 1; avail <= 2; avail++) {
        for (uint32_t bits = 0; bits < (avail == 2 ? 65536u : 256u); bits++) {
            uint8_t in[2] = {(uint8_t)bits, (uint8_t)(bits >> 8)};
            struct vub_infl a, b;
            memset(&a, 0, sizeof a);
            a.src = in;
            a.src_len = avail;
            b = a;
            b.use_table = 1;
            int sa = vub_infl_decode(&a, h, no_code_err);
            int sb = vub_infl_decode(&b, h, no_code_err);
            size_t used_a = a.src_pos * 8 - a.bit_count, used_b = b.src_pos * 8 - b.bit_count;
            if (sa != sb || (sa >= 0 && used_a != used_b)) {
                diag("bits %04x of %u bytes: reference %d after %zu bits, table %d after %zu bits",
                     bits, avail, sa, used_a, sb, used_b);
                return 0;
            }
        }
    }
    return 1;
}

static void test_fast_table(void)
{
    struct vub_infl s;
    memset(&s, 0, sizeof s);
    uint8_t lens[288];
    for (int i = 0; i < 288; i++)
        lens[i] = (uint8_t)(i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8);
    vub_infl_build(&s.lit_len, lens, 288);
    report(table_matches_reference(&s.lit_len, VUB_INFLATE_E_LEN_CODE),
           "INFL-FAST: the fast table and the reference agree on every input for the fixed lit/len code");

    memset(lens, 0, sizeof lens);
    lens[256] = 1;
    for (int i = 0; i < 14; i++)
        lens['A' + i] = (uint8_t)(2 + i);
    lens['O'] = 15;
    vub_infl_build(&s.lit_len, lens, 257);
    report(table_matches_reference(&s.lit_len, VUB_INFLATE_E_LEN_CODE),
           "INFL-FAST: the fast table and the reference agree on every input for a code 15 bits deep");

    memset(lens, 0, sizeof lens);
    lens[3] = 1;
    vub_infl_build(&s.dist, lens, 30);
    report(table_matches_reference(&s.dist, VUB_INFLATE_E_DIST_CODE),
           "INFL-FAST: the fast table and the reference agree on every input for a single one-bit code");

    memset(lens, 0, sizeof lens);
    vub_infl_build(&s.dist, lens, 30);
    report(table_matches_reference(&s.dist, VUB_INFLATE_E_DIST_CODE),
           "INFL-FAST: the fast table and the reference agree on every input for an empty code");
}

/* ---------------------------------------------------------------------------
 * zlib fixtures
 * ------------------------------------------------------------------------- */

/* A fixture, kept for the mutation loop when small. */
struct fixture {
    char name[64];
    uint8_t *packed, *raw;
    size_t packed_len, raw_len;
};

static struct fixture fixtures[64];
static size_t fixture_count;

static void test_fixture(const char *dir, const char *name, const char *raw_name,
                         size_t raw_len, uint32_t crc)
{
    size_t packed_len = 0, file_raw_len = 0;
    uint8_t *packed = read_file(dir, name, ".deflate", &packed_len);
    uint8_t *raw = strcmp(raw_name, "-") ? read_file(dir, raw_name, ".raw", &file_raw_len) : NULL;
    if (!packed || (strcmp(raw_name, "-") && (!raw || file_raw_len != raw_len))) {
        report(0, "INFL-ZLIB: fixture %s is readable", name);
        free(packed);
        free(raw);
        return;
    }

    struct outcome o = run(packed, packed_len, raw_len);
    int pass = o.agree && o.result == VUB_INFLATE_OK && o.dst_done == raw_len &&
               o.src_done == packed_len && crc32(o.out, raw_len) == crc &&
               (!raw || memcmp(o.out, raw, raw_len) == 0);
    report(pass, "INFL-ZLIB: zlib's %s (%zu -> %zu bytes) inflates to exactly the bytes compressed",
           name, packed_len, raw_len);
    if (!pass)
        diag("result %d (%s), dst_done %zu, src_done %zu, decoders %s", o.result,
             vub_inflate_strerror(o.result), o.dst_done, o.src_done, o.agree ? "agree" : "DISAGREE");

    if (raw_len > 0) {
        /* qcow2: the compressed extent is rounded up to sectors, and the output
         * buffer is the cluster; give it a whole sector of trailing garbage. */
        uint8_t *padded = xmalloc(packed_len + 512);
        memcpy(padded, packed, packed_len);
        for (size_t i = 0; i < 512; i++)
            padded[packed_len + i] = (uint8_t)rng();
        struct outcome p = run(padded, packed_len + 512, raw_len);
        report(p.agree && p.result == VUB_INFLATE_OK && p.dst_done == raw_len &&
                   p.src_done == packed_len && memcmp(p.out, o.out, raw_len) == 0,
               "INFL-TRAILING: %s followed by a sector of other data inflates the same and stops "
               "at its own end", name);
        free(p.out);

        struct outcome q = run(packed, packed_len, raw_len - 1);
        report(q.agree && q.result == VUB_INFLATE_FULL && q.dst_done == raw_len - 1 &&
                   memcmp(q.out, o.out, raw_len - 1) == 0,
               "INFL-FULL: %s into a buffer one byte too small fills it and reports it full", name);
        free(q.out);
        free(padded);
    }

    char why[200] = "";
    int cuts_ok = check_cuts(packed, packed_len, o.out, raw_len, raw_len > 16384 ? 64 : 0,
                             why, sizeof why);
    report(cuts_ok, "INFL-CUT: %s cut at %s reports input ran out or output full, with a "
                    "correct prefix", name, raw_len > 16384 ? "64 positions spread over it" : "every byte");
    if (!cuts_ok)
        diag("%s", why);

    if (raw_len <= 65536 && fixture_count < sizeof fixtures / sizeof fixtures[0]) {
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
    free(raw);
}

static void test_fixtures(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    FILE *m = fopen(path, "r");
    report(m != NULL, "INFL-ZLIB: the fixture manifest %s is present", path);
    if (!m)
        return;
    char name[64], raw_name[64];
    size_t raw_len;
    unsigned crc;
    int count = 0;
    while (fscanf(m, "%63s %63s %zu %x", name, raw_name, &raw_len, &crc) == 4) {
        test_fixture(dir, name, raw_name, raw_len, crc);
        count++;
    }
    fclose(m);
    report(count >= 17, "INFL-ZLIB: the manifest lists all %d fixtures (levels 0/1/6/9, windows 12 "
                        "and 15, stored, fixed, flushes, 64 KiB and 2 MiB clusters)", count);
}

/* ---------------------------------------------------------------------------
 * Mutation: damaged streams never crash, never overrun, decoders agree
 * ------------------------------------------------------------------------- */

static void test_mutations(unsigned iterations)
{
    size_t disagreements = 0, out_of_range = 0, seen_valid = 0, seen_error = 0;
    for (unsigned it = 0; it < iterations && fixture_count > 0; it++) {
        const struct fixture *f = &fixtures[rng() % fixture_count];
        size_t len = f->packed_len;
        uint8_t *s = xmalloc(len);
        memcpy(s, f->packed, len);
        unsigned damage = 1 + rng() % 4;
        for (unsigned k = 0; k < damage && len > 0; k++) {
            size_t at = rng() % len;
            switch (rng() % 4) {
            case 0: s[at] ^= (uint8_t)(1u << (rng() % 8)); break;
            case 1: s[at] = (uint8_t)rng(); break;
            case 2: len = at; break;                       /* truncate */
            default: /* a run of random bytes */
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
        if (o.dst_done > dst_len || o.src_done > len || o.result > 1 || o.result < VUB_INFLATE_RESULT_MIN)
            out_of_range++;
        if (o.result >= 0)
            seen_valid++;
        else
            seen_error++;
        free(o.out);
        free(s);
    }
    report(disagreements == 0 && out_of_range == 0 && seen_error > 0,
           "INFL-FAST: %u mutated or truncated zlib streams stay in bounds, return a listed result, "
           "and get the same answer from both decoders", iterations);
    if (disagreements || out_of_range)
        diag("%zu disagreements, %zu out of range", disagreements, out_of_range);
    diag("mutations: %zu decoded to OK/FULL, %zu rejected", seen_valid, seen_error);

    size_t bad = 0;
    for (unsigned it = 0; it < iterations; it++) {
        size_t len = rng() % 64, dst_len = rng() % 512;
        uint8_t junk[64];
        for (size_t i = 0; i < len; i++)
            junk[i] = (uint8_t)rng();
        struct outcome o = run(junk, len, dst_len);
        if (!o.agree || o.dst_done > dst_len || o.src_done > len)
            bad++;
        free(o.out);
    }
    report(bad == 0, "INFL-FAST: %u streams of random bytes stay in bounds and both decoders agree",
           iterations);
}

/* ---------------------------------------------------------------------------
 * The result table
 * ------------------------------------------------------------------------- */

static void test_result_table(void)
{
    int distinct = 1, covered = 1;
    for (int a = VUB_INFLATE_RESULT_MIN; a <= 1; a++) {
        const char *ma = vub_inflate_strerror(a);
        if (strcmp(ma, vub_inflate_strerror(-100)) == 0)
            distinct = 0;
        for (int b = a + 1; b <= 1; b++)
            if (strcmp(ma, vub_inflate_strerror(b)) == 0)
                distinct = 0;
        if (!result_seen[a - VUB_INFLATE_RESULT_MIN]) {
            covered = 0;
            diag("no hand-made stream produced result %d (%s)", a, ma);
        }
    }
    report(distinct, "INFL-RESULTS: every result from %d to 1 has a message of its own",
           VUB_INFLATE_RESULT_MIN);
    report(covered, "INFL-RESULTS: every result in the table is produced by at least one hand-made stream");
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data/inflate";
    test_stored();
    test_fixed();
    test_dynamic_valid();
    test_dynamic_repeats();
    test_dynamic_errors();
    test_stopping();
    test_result_table();
    test_fast_table();
    test_fixtures(dir);
    test_mutations(4000);
    printf("# %d checks, %d failed\n", checks_run, checks_failed);
    return checks_failed ? 1 : 0;
}
