#!/bin/bash
# test-qsd.sh - the guest test against qemu-storage-daemon.
#
# QEMU's own vhost-user-blk export is the reference back-end: whatever fails
# here is a harness bug, not a vub bug. Usage: tests/guest/test-qsd.sh
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

# discard=unmap on both nodes: by default QSD ignores discards, and the
# guest demands zeros back after BLKDISCARD.
start_backend() {
    timeout -k 5 600 qemu-storage-daemon \
        --blockdev "driver=file,node-name=file0,filename=$img,discard=unmap" \
        --blockdev "driver=raw,node-name=disk0,file=file0,discard=unmap" \
        --export "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=$sock,writable=on,num-queues=2" \
        </dev/null >"$blog" 2>&1 &
    backend_pid=$!
}

main() {
    ensure_tools || { tap_skip qsd "host tools missing"; return; }
    backend_test qsd
}

tap_run main
