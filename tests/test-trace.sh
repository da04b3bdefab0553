#!/usr/bin/env bash
# test-trace.sh - build/vub-trace between a front-end and a back-end: the
# conversation passes unchanged (the front-end's verify still succeeds) and
# the log names what went by, descriptors and the back-end channel included.
#
#   tests/test-trace.sh      # after make
set -u
cd "$(dirname "$0")/.."
. tests/lib-tap.sh trace

io() { timeout -k 5 120 build/vub-io "$@"; }
# trace NAME BACKEND-SOCKET: starts vub-trace on $dir/NAME.sock, log $dir/NAME.trace
trace() {
    start "$1-relay" "$dir/$1.sock" build/vub-trace --log "$dir/$1.trace" "$dir/$1.sock" "$2"
}
has() { grep -q -- "$2" "$dir/$1.trace"; }

for f in vub-trace vub-serve vub-io; do
    [ -x "build/$f" ] || { fail "build/$f is built (run make)"; exit 1; }
done

# Usage errors are exit status 2, as in the other programs.
build/vub-trace >/dev/null 2>&1
check "vub-trace: no arguments is a usage error (status 2)" test $? = 2

# vub-io verify through the relay to vub-serve, then a resize announced on
# the back-end channel, which the relay swaps for a pair of its own.
img=$dir/disk.raw
truncate -s 8M "$img"
if start serve "$dir/serve.sock" build/vub-serve --socket "$dir/serve.sock" --queues 1 "$img" &&
    spid=$pid && trace verify "$dir/serve.sock"; then
    out=$(io --socket "$dir/verify.sock" verify 2>&1)
    check "vub-io verify through vub-trace: $out" grep -q ", 0 mismatches" <<<"$out"
    for _ in $(seq 50); do has verify "# front-end closed" && break; sleep 0.1; done
    check "trace: feature negotiation with the back-end's answer" has verify "^< GET_FEATURES reply 0x"
    check "trace: a memory region passed with its descriptor" has verify "^> \(ADD_MEM_REG\|SET_MEM_TABLE\) .*fds=1"
    check "trace: the kick descriptor" has verify "^> SET_VRING_KICK index=0 need_reply fds=1"
    check "trace: the ring base read back at the end" has verify "^< GET_VRING_BASE reply index=0"
    check "trace: the end of the conversation" has verify "^# front-end closed"

    # the signal goes to vub-serve itself, not to the timeout(1) around it
    read -r serve_pid _ <"/proc/$spid/task/$spid/children"
    trace resize "$dir/serve.sock"
    io --socket "$dir/resize.sock" wait-resize 20000 >"$dir/resize.out" 2>&1 &
    iopid=$!
    for _ in $(seq 100); do grep -q "waiting for a resize" "$dir/resize.out" && break; sleep 0.1; done
    truncate -s 12M "$img"
    kill -HUP "$serve_pid"
    wait "$iopid"
    check "vub-io saw the resize through vub-trace" grep -q -- "16384 -> 24576 sectors" "$dir/resize.out"
    check "trace: CONFIG_CHANGE_MSG on the back-end channel" has resize "^<< CONFIG_CHANGE_MSG"
else
    fail "vub-serve and vub-trace start"
fi

# The same relay in front of a back-end vub did not write.
if command -v qemu-storage-daemon >/dev/null; then
    qimg=$dir/qsd.raw
    truncate -s 8M "$qimg"
    if start qsd "$dir/qsd.sock" qemu-storage-daemon \
        --blockdev "driver=file,node-name=f0,filename=$qimg" \
        --export "type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=$dir/qsd.sock,writable=on" &&
        trace qsd-relay "$dir/qsd.sock"; then
        out=$(io --socket "$dir/qsd-relay.sock" verify 2>&1)
        check "vub-io verify through vub-trace to qemu-storage-daemon: $out" grep -q ", 0 mismatches" <<<"$out"
    else
        fail "qemu-storage-daemon and vub-trace start"
    fi
else
    skip "vub-trace in front of qemu-storage-daemon (not installed)"
fi
[ "$failures" -eq 0 ]
