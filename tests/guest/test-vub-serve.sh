#!/bin/bash
# test-vub-serve.sh - the guest test against vub's own back-end, vub-serve.
#
# The same boot and checks as test-qsd.sh, with build/vub-serve (or
# $VUB_SERVE) serving the image. Usage: tests/guest/test-vub-serve.sh
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

vub_serve=${VUB_SERVE:-$VUB_ROOT/build/vub-serve}

# vub-serve logs to stderr, serves one connection at a time and removes its
# socket on SIGTERM; backend_test checks the last two. VUB_SERVE_ARGS adds
# options (cell.sh's aio cell: the engine, the cache mode, threads).
start_backend() {
    # shellcheck disable=SC2086 # options, one word each
    timeout --foreground -k 60 600 "$vub_serve" ${VUB_SERVE_ARGS:-} --socket "$sock" --queues 2 "$img" \
        </dev/null >"$blog" 2>&1 &
    backend_pid=$!
}

# HOOK: vub-serve's per-session stats. Called after vub-serve has stopped,
# with its whole stderr in $blog; add checks here with tap_check LABEL ...
# (for example that both queues served requests and flushes were seen).
after_backend() {
    local label=$1 console=$VUB_GUEST_CACHE/logs/$1-test.log bits
    # The guest's view: /sys/block/vda/device/features, bit 0 first.
    bits=$(sed -n 's/.*VUBTEST ok features \([01]*\).*/\1/p' "$console" | tail -n 1)
    if [[ ${VUB_EXTRA_DEVICE_OPTS:-} == *packed=on* ]]; then
        tap_check "$label" "guest negotiated RING_PACKED (feature bit 34)" "features '$bits'" \
            [ "${bits:34:1}" = 1 ]
        tap_check "$label" "vub-serve logged RING_PACKED for the running driver" "$(grep features "$blog" | tail -n 1)" \
            grep -q "features:.* RING_PACKED" "$blog"
    else
        tap_check "$label" "guest uses split rings (feature bit 34 clear)" "features '$bits'" \
            [ "${bits:34:1}" = 0 ]
    fi
    if [[ ${VUB_SERVE_ARGS:-} == *"--aio io_uring"* ]]; then
        tap_check "$label" "vub-serve ran the io_uring engine with cache=none" "$(grep "I/O engine" "$blog")" \
            grep -q "I/O engine io_uring, cache none" "$blog"
    fi
    if [[ ${VUB_SERVE_ARGS:-} == *"--threads 2"* ]]; then
        tap_check "$label" "vub-serve served the queues from 2 threads" "$(grep "serving" "$blog")" \
            grep -q "2 queue threads" "$blog"
    fi
    # vub-serve's own count of what it served, from its end-of-session line.
    local last
    last=$(grep "session ended" "$blog" | tail -n 1)
    tap_check "$label" "vub-serve served both queues" "$last" \
        bash -c '[[ $1 =~ q0=[1-9] && $1 =~ q1=[1-9] ]]' _ "$last"
    tap_check "$label" "vub-serve saw FLUSH requests" "$last" bash -c '[[ $1 =~ flushes\ [1-9] ]]' _ "$last"
    tap_check "$label" "vub-serve completed every request without a sanitizer report" \
        "$(grep -m1 -E "ERROR: AddressSanitizer|runtime error" "$blog")" \
        bash -c '! grep -qE "ERROR: AddressSanitizer|runtime error" "$1"' _ "$blog"
}

main() {
    if [ ! -x "$vub_serve" ]; then
        tap_skip vub-serve "binary not built ($vub_serve)"
        return
    fi
    ensure_tools || { tap_skip vub-serve "host tools missing"; return; }
    if [ -n "${VUB_LABEL:-}" ]; then
        backend_test "$VUB_LABEL" # a cell of the matrix (cell.sh)
    elif [[ ${VUB_EXTRA_DEVICE_OPTS:-} == *packed=on* ]]; then
        backend_test vub-serve-packed
    else
        backend_test vub-serve
    fi
}

tap_run main
