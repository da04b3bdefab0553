/* fuzz-ring-split: a split virtqueue written by the fuzzer; see fuzz-ring.c
 * for the input layout and the checks. */
#define FZ_PACKED 0
#include "fuzz-ring.c"
