#!/bin/bash
# test-vub-serve-qcow2.sh - a Linux guest reads a qcow2 overlay through vub-serve.
#
# The image: a compressed qcow2 base (random data with a zero stretch), a
# qcow2 overlay on it that writes new data and a zero cluster masking the
# base, and a top overlay with one more write. vub-serve exports the top
# read-only; the guest reads the whole disk and reports its sha256, which
# run.sh compares with `qemu-img convert -O raw` of the same chain.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

vub_serve=${VUB_SERVE:-$VUB_ROOT/build/vub-serve}

# Builds the chain in $work; $img is the top (lib.sh serves and checks $img).
prepare_image() {
    local base=$work/base.qcow2 mid=$work/mid.qcow2 raw=$work/base.raw
    head -c 48M /dev/urandom >"$raw" &&
        dd if=/dev/zero of="$raw" bs=1M seek=16 count=8 conv=notrunc status=none &&
        qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=65536 "$raw" "$base" &&
        qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$mid" 64M &&
        qemu-io -c 'write -P 0x5a 1M 3M' -c 'write -z 20M 1M' -c 'write -P 0x11 50M 2M' "$mid" >/dev/null &&
        qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 "$img" &&
        qemu-io -c 'write -P 0x33 30M 512k' -c 'write -z 2M 64k' "$img" >/dev/null &&
        rm -f "$raw"
}

start_backend() {
    timeout -k 5 600 "$vub_serve" --socket "$sock" --queues 2 "$img" </dev/null >"$blog" 2>&1 &
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
        tap_skip vub-serve-qcow2 "binary not built ($vub_serve)"
        return
    fi
    ensure_tools || { tap_skip vub-serve-qcow2 "host tools missing"; return; }
    command -v qemu-io >/dev/null || { tap_skip vub-serve-qcow2 "qemu-io missing (qemu-utils)"; return; }
    backend_test "${VUB_LABEL:-vub-serve-qcow2}" read
}

tap_run main
