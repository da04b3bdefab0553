#!/bin/bash
# test-resize.sh - the disk grows under a running guest (live resize).
#
# vub-serve serves a 64 MiB image; once the guest says it is waiting, the
# host grows the file to 96 MiB and sends vub-serve SIGHUP. vub-serve sends
# CONFIG_CHANGE_MSG on the back-end channel, QEMU reads the new capacity
# with GET_CONFIG and interrupts the guest; the guest must see the new
# /sys/block/vda/size without a reboot and do I/O past the old end, which
# the host then finds in the image. Run with QEMU 10 through cell.sh-like
# variables: VUB_QEMU, VUB_QEMU_FIRMWARE, VUB_LABEL.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

vub_serve=${VUB_SERVE:-$VUB_ROOT/build/vub-serve}
grow_to=$((96 * 1024 * 1024))
expected_size=$grow_to

start_backend() {
    timeout --foreground -k 60 600 "$vub_serve" --socket "$sock" --queues 2 "$img" </dev/null >"$blog" 2>&1 &
    backend_pid=$!
}

# Waits (up to the boot's own timeout) for the guest's "resize-wait" step.
during_boot() {
    local console=$VUB_GUEST_CACHE/logs/$label-resize.log i=0
    while ! grep -qa 'VUBTEST step resize-wait' "$console" 2>/dev/null; do
        [ $i -lt $((${VUB_GUEST_TIMEOUT:-180} * 10)) ] || return
        sleep 0.1
        i=$((i + 1))
    done
    truncate -s "$grow_to" "$img"
    # to vub-serve itself, not to timeout(1), which would arm its SIGKILL
    kill -HUP "$(child_pid "$backend_pid")"
}

after_backend() {
    local line
    line=$(grep "SIGHUP" "$blog" | head -n 1)
    tap_check "$1" "vub-serve logged the old and new capacity and notified the front-end" "${line:-no SIGHUP line}" \
        bash -c '[[ $1 == *"capacity 131072 -> 196608 sectors"*"front-end notified"* ]]' _ "$line"
    tap_check "$1" "vub-serve completed every request without a sanitizer report" \
        "$(grep -m1 -E "ERROR: AddressSanitizer|runtime error|rejected a message" "$blog")" \
        bash -c '! grep -qE "ERROR: AddressSanitizer|runtime error|rejected a message" "$1"' _ "$blog"
}

main() {
    local label=${VUB_LABEL:-vub-serve-resize}
    if [ ! -x "$vub_serve" ]; then
        tap_skip "$label" "binary not built ($vub_serve)"
        return
    fi
    ensure_tools || { tap_skip "$label" "host tools missing"; return; }
    rm -f "$VUB_GUEST_CACHE/logs/$label-resize.log"
    backend_test "$label" resize
}

tap_run main
