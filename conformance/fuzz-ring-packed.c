/* fuzz-ring-packed: a packed virtqueue written by the fuzzer; see
 * fuzz-ring.c for the input layout and the checks. */
#define FZ_PACKED 1
#include "fuzz-ring.c"
