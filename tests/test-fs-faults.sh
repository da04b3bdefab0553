#!/usr/bin/env bash
# test-fs-faults.sh - vub-serve when the file system under its image fails it.
#
#  - The image on a file system that fills up (an 8 MiB tmpfs, mounted under
#    the scratch directory and unmounted at exit even on failure): writes of
#    1 MiB go on until one fails; it must fail with IOERR, never OK with
#    the data missing; every write acknowledged before it reads back, over
#    vhost-user and from the file; vub-serve keeps serving reads and FLUSH.
#  - The image truncated under a running vub-serve: reads past the new end
#    get IOERR, reads before it still work, and vub-serve survives.
# Needs root for the mount; prints a skip line otherwise.
#
#   tests/test-fs-faults.sh      VUB_BUILD=build/asan for the sanitizer build
set -u
cd "$(dirname "$0")/.."
top=$PWD
. tests/lib-tap.sh fs-faults

build=${VUB_BUILD:-build}
VUB_IO=$top/$build/vub-io
VUB_SERVE=$top/$build/vub-serve
for p in "$VUB_IO" "$VUB_SERVE"; do
    [ -x "$p" ] || { fail "$p is built (run make)"; exit 1; }
done
io() { timeout -k 5 60 "$VUB_IO" "$@"; }
alive() { kill -0 "$1" 2>/dev/null; }

# ---- a file system that fills up ----
full_fs() {
    local mnt=$dir/small img sock=$dir/full.sock n acked=0 failed="" out
    mkdir -p "$mnt"
    if ! mount -t tmpfs -o size=8m vub-fs-faults "$mnt" 2>"$dir/mount.err"; then
        skip "full file system: cannot mount a tmpfs ($(head -n 1 "$dir/mount.err"); needs root)"
        return
    fi
    mounted=$mnt
    img=$mnt/disk.img
    truncate -s 64M "$img"
    start full "$sock" "$VUB_SERVE" --socket "$sock" --queues 1 "$img" || { fail "vub-serve starts on the tmpfs image"; return; }
    local serve=$pid
    for n in $(seq 0 15); do # 16 MiB into 8 MiB of room
        head -c 1M /dev/urandom >"$dir/chunk$n"
        if io --socket "$sock" write $((n << 20)) <"$dir/chunk$n" 2>"$dir/err$n"; then
            [ -z "$failed" ] && acked=$((acked + 1))
            [ -n "$failed" ] && { fail "a write after the file system filled up was acknowledged (MiB $n)"; }
        else
            [ -z "$failed" ] && failed=$n
        fi
    done
    echo "# full file system: $acked MiB acknowledged, first failure at MiB ${failed:-none}: $(cat "$dir/err${failed:-0}")"
    check "the file system filled up: a write failed" [ -n "$failed" ]
    check "the failed write was refused with IOERR ($(cat "$dir/err${failed:-0}"))" grep -q "IOERR" "$dir/err${failed:-0}"
    check "vub-serve still runs after ENOSPC" alive "$serve"
    check "FLUSH after ENOSPC succeeds" io --socket "$sock" flush
    for n in $(seq 0 $((acked - 1))); do
        cmp -s "$dir/chunk$n" <(io --socket "$sock" read $((n << 20)) 1M) || { fail "acknowledged MiB $n reads back over vhost-user"; out=1; }
        cmp -s "$dir/chunk$n" <(dd if="$img" bs=1M skip="$n" count=1 status=none) || { fail "acknowledged MiB $n is in the image file"; out=1; }
    done
    [ -z "${out:-}" ] && ok "every acknowledged write ($acked MiB) reads back, over vhost-user and from the file"
    check "vub-serve keeps serving reads of the whole disk" quiet io --socket "$sock" dump
    check "vub-serve still runs at the end" alive "$serve"
    stop "$serve"
    check "vub-serve logged no sanitizer report" bash -c '! grep -qE "ERROR: AddressSanitizer|runtime error" "$1"' _ "$dir/full.log"
}

# ---- an image truncated under vub-serve ----
truncated() {
    local img=$dir/trunc.img sock=$dir/trunc.sock
    head -c 32M /dev/urandom >"$img"
    start trunc "$sock" "$VUB_SERVE" --socket "$sock" --queues 1 "$img" || { fail "vub-serve starts"; return; }
    local serve=$pid
    truncate -s 16M "$img"
    if io --socket "$sock" read 20M 4096 >/dev/null 2>"$dir/past"; then
        fail "a read past the new end of a truncated image fails"
    else
        check "a read past the new end of a truncated image gets IOERR ($(cat "$dir/past"))" grep -q IOERR "$dir/past"
    fi
    if io --socket "$sock" read $(((16 << 20) - 4096)) 8192 >/dev/null 2>"$dir/across"; then
        fail "a read across the new end fails"
    else
        check "a read across the new end gets IOERR" grep -q IOERR "$dir/across"
    fi
    check "a read before the new end still returns the file's bytes" \
        cmp -s <(io --socket "$sock" read 4M 1M) <(dd if="$img" bs=1M skip=4 count=1 status=none)
    check "vub-serve survives the truncation" alive "$serve"
    stop "$serve"
    check "vub-serve logged no sanitizer report" bash -c '! grep -qE "ERROR: AddressSanitizer|runtime error" "$1"' _ "$dir/trunc.log"
}

mounted=""
# Unmount before lib-tap.sh removes the directory, whatever happened.
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
      [ -n "$mounted" ] && umount "$mounted"; cleanup' EXIT
full_fs
truncated
exit $((failures > 0))
