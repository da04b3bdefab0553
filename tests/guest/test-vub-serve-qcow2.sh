#!/bin/bash
# test-vub-serve-qcow2.sh - a Linux guest reads a qcow2 overlay through vub-serve.
#
# The image: a compressed qcow2 base (random data with a zero stretch), a
# qcow2 overlay on it that writes new data and a zero cluster masking the
# base, and a top overlay with one more write. vub-serve exports the top
# read-only; the guest reads the whole disk and reports its sha256, which
# run.sh compares with `qemu-img convert -O raw` of the same chain.
#
# VUB_QCOW2_COMPRESSION=zstd makes the base zstd-compressed (qemu-img
# convert -c -o compression_type=zstd) and puts zstd-compressed clusters in
# the top overlay too, over a middle layer with zlib-compressed ones: the
# guest then reads zstd clusters of 64 KiB, decoded by vub's own zstd
# decoder, and both compression types in one chain.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

vub_serve=${VUB_SERVE:-$VUB_ROOT/build/vub-serve}
compression=${VUB_QCOW2_COMPRESSION:-zlib}
test_label=vub-serve-qcow2
[ "$compression" = zlib ] || test_label=vub-serve-qcow2-$compression

# Builds the chain in $work; $img is the top (lib.sh serves and checks $img).
prepare_image() {
    local base=$work/base.qcow2 mid=$work/mid.qcow2 raw=$work/base.raw
    local base_opts=cluster_size=65536 top_opts=() top_writes=()
    if [ "$compression" = zstd ]; then
        # Text-like data for the base, so most of its clusters are compressed.
        python3 -c 'import random, sys
rng = random.Random(7)
words = b"zstd guest disk cluster frame block literal match offset window".split()
out = bytearray()
while len(out) < 48 << 20:
    out += b" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + b".\n"
sys.stdout.buffer.write(out[:48 << 20])' >"$raw" || return 1
        base_opts=$base_opts,compression_type=zstd
        top_opts=(-o compression_type=zstd)
        top_writes=(-c 'write -c -P 0x44 40M 1M')
    else
        head -c 48M /dev/urandom >"$raw" || return 1
    fi
    dd if=/dev/zero of="$raw" bs=1M seek=16 count=8 conv=notrunc status=none &&
        qemu-img convert -q -c -f raw -O qcow2 -o "$base_opts" "$raw" "$base" &&
        qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$mid" 64M &&
        qemu-io -c 'write -P 0x5a 1M 3M' -c 'write -z 20M 1M' -c 'write -P 0x11 50M 2M' \
            -c 'write -c -P 0x22 60M 1M' "$mid" >/dev/null &&
        qemu-img create -q -f qcow2 "${top_opts[@]}" -b mid.qcow2 -F qcow2 "$img" &&
        qemu-io -c 'write -P 0x33 30M 512k' -c 'write -z 2M 64k' "${top_writes[@]}" "$img" >/dev/null &&
        rm -f "$raw" || return 1
    if [ "$compression" = zstd ]; then
        qemu-img info "$base" | grep -q 'compression type: zstd' &&
            qemu-img info "$img" | grep -q 'compression type: zstd' || {
            echo "# the chain is not zstd-compressed: $(qemu-img info "$base" | grep -i compression)"
            return 1
        }
    fi
}

start_backend() {
    timeout --foreground -k 60 600 "$vub_serve" --socket "$sock" --queues 2 "$img" </dev/null >"$blog" 2>&1 &
    backend_pid=$!
}

after_backend() {
    tap_check "$1" "vub-serve exported the qcow2 chain read-only" "$(head -n 1 "$blog")" \
        grep -q "qcow2, read-only" "$blog"
    tap_check "$1" "vub-serve completed every request without a sanitizer report" \
        "$(grep -m1 -E "ERROR: AddressSanitizer|runtime error" "$blog")" \
        bash -c '! grep -qE "ERROR: AddressSanitizer|runtime error" "$1"' _ "$blog"
}

main() {
    if [ ! -x "$vub_serve" ]; then
        tap_skip "$test_label" "binary not built ($vub_serve)"
        return
    fi
    ensure_tools || { tap_skip "$test_label" "host tools missing"; return; }
    command -v qemu-io >/dev/null || { tap_skip "$test_label" "qemu-io missing (qemu-utils)"; return; }
    backend_test "${VUB_LABEL:-$test_label}" read
}

tap_run main
