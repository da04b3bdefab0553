#!/bin/bash
# cell.sh - one cell of the guest matrix against vub-serve.
#
#   cell.sh QEMU KERNEL RING [IMAGE]
#     QEMU    7.2 (Debian 12's, installed) or 10.0 (bookworm-backports)
#     KERNEL  6.1 (Debian 12's) or 6.12 (bookworm-backports)
#     RING    split or packed
#     IMAGE   raw (default: test-vub-serve.sh, every check), qcow2
#             (test-vub-serve-qcow2.sh, the read-only chain), qcow2-zstd (the
#             same chain, compressed with zstd), resize (test-resize.sh: the
#             raw image grows under the running guest) or aio (raw, every
#             check, with vub-serve pinned to the io_uring engine, O_DIRECT
#             and two threads: --aio io_uring --cache none --threads 2)
#
# The newer generation is fetched and unpacked by tests/backports.sh into
# the guest cache, beside Debian 12's; when it cannot be had the cell prints
# one "skip" line saying why. One guest boot per cell; run.sh prints the
# front-end's and the kernel's versions.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

[ $# -ge 3 ] || { echo "usage: $0 7.2|10.0 6.1|6.12 split|packed [raw|qcow2|qcow2-zstd|resize|aio]" >&2; exit 2; }
qemu_gen=$1 kernel_gen=$2 ring=$3 image=${4:-raw}
label=vub-serve-q$qemu_gen-k$kernel_gen-$ring${4:+-$image}
cache=$VUB_GUEST_CACHE

# The second generation, once per run (backports.sh is quick when done).
backports() {
    local out
    out=$("$VUB_ROOT/tests/backports.sh" "$cache" 2>&1) && return 0
    tap_skip "$label" "bookworm-backports peers not available: $(echo "$out" | tail -n 1)"
    return 1
}

case $qemu_gen in
7.2) unset VUB_QEMU VUB_QEMU_FIRMWARE ;;
10.0)
    backports || exit 0
    export VUB_QEMU=$cache/qemu10/root/usr/bin/qemu-system-x86_64 VUB_QEMU_FIRMWARE=$cache/qemu10/firmware
    ;;
*) echo "cell.sh: unknown QEMU $qemu_gen" >&2; exit 2 ;;
esac
case $kernel_gen in
6.1) ;;
6.12)
    backports || exit 0
    # prepare.sh builds this kernel's guest in its own cache directory.
    mkdir -p "$cache/k6.12/logs"
    [ -e "$cache/k6.12/kvm-probe" ] || cp "$cache/kvm-probe" "$cache/k6.12/" 2>/dev/null
    export VUB_GUEST_CACHE=$cache/k6.12
    ;;
*) echo "cell.sh: unknown kernel $kernel_gen" >&2; exit 2 ;;
esac
case $ring in
split) unset VUB_EXTRA_DEVICE_OPTS ;;
packed) export VUB_EXTRA_DEVICE_OPTS=,packed=on ;;
*) echo "cell.sh: unknown ring $ring" >&2; exit 2 ;;
esac
export VUB_LABEL=$label
case $image in
raw) exec "$here/test-vub-serve.sh" ;;
aio) VUB_SERVE_ARGS="--aio io_uring --cache none --threads 2" exec "$here/test-vub-serve.sh" ;;
qcow2) exec "$here/test-vub-serve-qcow2.sh" ;;
qcow2-zstd) VUB_QCOW2_COMPRESSION=zstd exec "$here/test-vub-serve-qcow2.sh" ;;
resize) exec "$here/test-resize.sh" ;;
*) echo "cell.sh: unknown image $image" >&2; exit 2 ;;
esac
