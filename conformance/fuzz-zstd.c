/* fuzz-zstd: the zstd decoder alone (vub.c section 13, vub_zstd_decompress),
 * on whatever bytes the fuzzer makes, into an output of a size it picks.
 *
 * The input, the output and the literals buffer are each their own heap
 * allocation of exactly their length, so ASan sees any byte read or written
 * past them.
 *
 * Input:
 *     0..2   the output size, le24 % (2 MiB + 1): a qcow2 cluster is at most
 *            2 MiB
 *     3..    the compressed bytes (a qcow2 compressed extent)
 *
 * Checks (vub_zstd_decompress's contract):
 *  - the result is 0 or one of the numbered errors;
 *  - dst_done <= the output size and src_done <= the input size;
 *  - the reference decoder (one bit at a time, byte-wise copies) gives the
 *    same result, counts and bytes as the fast one;
 *  - the reference decoder writes nothing past dst_done (the fast one may:
 *    its 16-byte copies make the rest of the output scratch).
 */
#include "fuzz-guard.c"
#include "../vub.c"

#define FZ_MAX_OUT (2u << 20)
#define FZ_CANARY 0xcd

static struct vub_zstd_work *fz_work;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_work = malloc(sizeof *fz_work);
    if (!fz_work)
        fz_die("out of memory");
    return 0;
}

static int fz_decode(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_len, size_t *dst_done,
                     size_t *src_done, int fast)
{
    size_t lit_bytes = vub_zstd_lit_bytes(dst_len);
    uint8_t *lit = malloc(lit_bytes ? lit_bytes : 1);
    if (!lit)
        fz_die("out of memory");
    fz_work->lit = lit;
    fz_work->lit_bytes = lit_bytes;
    int rc = vub_zstd_run(dst, dst_len, dst_done, src, src_len, src_done, fz_work, fast);
    free(lit);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t dst_len = ((size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16) % (FZ_MAX_OUT + 1);
    size_t src_len = size - 3;
    uint8_t *src = malloc(src_len ? src_len : 1);
    uint8_t *fast = malloc(dst_len ? dst_len : 1), *ref = malloc(dst_len ? dst_len : 1);
    if (!src || !fast || !ref)
        fz_die("out of memory");
    memcpy(src, data + 3, src_len);
    memset(fast, FZ_CANARY, dst_len);
    memset(ref, FZ_CANARY, dst_len);

    size_t fast_dst, fast_src, ref_dst, ref_src;
    int fast_rc = fz_decode(src, src_len, fast, dst_len, &fast_dst, &fast_src, 1);
    int ref_rc = fz_decode(src, src_len, ref, dst_len, &ref_dst, &ref_src, 0);

    if (fast_rc > 0 || fast_rc < VUB_ZSTD_RESULT_MIN)
        fz_die("result %d is not in the table", fast_rc);
    if (fast_dst > dst_len || fast_src > src_len)
        fz_die("counts out of range: dst_done %zu of %zu, src_done %zu of %zu", fast_dst, dst_len, fast_src,
               src_len);
    if (fast_rc != ref_rc || fast_dst != ref_dst || fast_src != ref_src ||
        memcmp(fast, ref, fast_dst) != 0)
        fz_die("fast and reference decoders disagree: %d/%d, dst %zu/%zu, src %zu/%zu", fast_rc, ref_rc,
               fast_dst, ref_dst, fast_src, ref_src);
    for (size_t i = ref_dst; i < dst_len; i++)
        if (ref[i] != FZ_CANARY)
            fz_die("the reference decoder wrote byte %zu, past dst_done %zu", i, ref_dst);
    free(src);
    free(fast);
    free(ref);
    return 0;
}
