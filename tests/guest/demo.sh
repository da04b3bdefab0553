#!/bin/bash
# demo.sh - `make demo`: one Linux guest whose disk is served by vub-serve.
#
# Makes a fresh 64 MiB image, starts build/vub-serve on it, boots the guest
# in demo mode (it formats the disk, mounts it, writes and reads files, and
# says so), then stops vub-serve and shows what it logged. As root it first
# installs the Debian packages it needs.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

vub_serve=${VUB_SERVE:-$VUB_ROOT/build/vub-serve}

start_backend() {
    echo "Starting $vub_serve on a fresh ${VUB_GUEST_DISK:-64M} image, socket $sock"
    timeout --foreground -k 5 600 "$vub_serve" --socket "$sock" --queues 2 "$img" \
        </dev/null >"$blog" 2>&1 &
    backend_pid=$!
    echo "Booting Linux in QEMU (about half a minute without KVM)"
}

after_backend() {
    echo "vub-serve stopped. Its log:"
    sed 's/^/  | /' "$blog"
}

# Everything that can stop the demo before the guest boots.
preflight() {
    ensure_tools || exit 1
    if [ ! -x "$vub_serve" ]; then
        echo "demo: $vub_serve is not built (run make first)" >&2
        exit 1
    fi
    echo "Building the guest (the first time only; it is kept in $VUB_GUEST_CACHE)"
    "$here/prepare.sh" "$VUB_GUEST_CACHE" || exit 1
}

preflight
results=$(mktemp)
backend_test demo demo | tee "$results"
if tap_summary "$results" >/dev/null; then
    echo "Demo finished: every check passed."
else
    echo "Demo finished with failures: see the 'not ok' lines above."
    exit 1
fi
rm -f "$results"
