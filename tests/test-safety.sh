#!/usr/bin/env bash
# test-safety.sh - nothing is lost by mistake:
#   - vub-img convert never overwrites its input or a file of its backing
#     chain, and replaces OUT only with a complete copy;
#   - [IMG-LOCK] image locks: vub and QEMU 7.2's tools (qemu-img,
#     qemu-storage-daemon) refuse an image the other holds, both ways;
#   - vub-serve never takes over a socket a live server answers on;
#   - [IMG-PROBE-FOREIGN] images of other formats are refused by name
#     unless --format raw is given.
#
#   tests/test-safety.sh     (VUB_BUILD=dir picks the programs; default build/)
#
# Every process is started and stopped by this script, by PID, under a hard
# timeout. Output: "ok - ...", "not ok - ...", "skip - ... (why)".
set -u
cd "$(dirname "$0")/.."
B=${VUB_BUILD:-$PWD/build}

. tests/lib-tap.sh safety
refuses() { # refuses "sentence" PATTERN command...: fails, and stderr matches
    local what=$1 pat=$2; shift 2
    if "$@" >"$dir/out" 2>"$dir/err"; then
        fail "$what (it succeeded)"
    elif grep -q -- "$pat" "$dir/err"; then
        ok "$what: $(head -n1 "$dir/err")"
    else
        fail "$what (said: $(head -c 300 "$dir/err"))"
    fi
}

for p in vub-img vub-serve vub-io; do
    [ -x "$B/$p" ] || { fail "$B/$p is built (run make)"; exit 1; }
done
if ! command -v qemu-img >/dev/null || ! command -v qemu-storage-daemon >/dev/null; then
    skip "every case here needs qemu-img and qemu-storage-daemon (not installed)"
    exit 0
fi
img() { timeout -k 5 60 "$B/vub-img" "$@"; }
digest() { sha256sum <"$1" | cut -c1-64; }

# ---- convert never overwrites its input ----
qemu-img create -q -f qcow2 "$dir/base.qcow2" 8M
qemu-io -f qcow2 -c 'write -P 0x11 0 1M' "$dir/base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$dir/top.qcow2" 8M
qemu-io -f qcow2 -c 'write -P 0x22 2M 1M' "$dir/top.qcow2" >/dev/null
base_sum=$(digest "$dir/base.qcow2") top_sum=$(digest "$dir/top.qcow2")
ln "$dir/top.qcow2" "$dir/top-link.qcow2"
ln -s top.qcow2 "$dir/top-sym.qcow2"
intact() { [ "$(digest "$dir/base.qcow2")" = "$base_sum" ] && [ "$(digest "$dir/top.qcow2")" = "$top_sum" ]; }

refuses "convert top.qcow2 top.qcow2 is refused" "backing chain" img convert "$dir/top.qcow2" "$dir/top.qcow2"
check "... and top.qcow2 is untouched" intact
refuses "convert to a hard link of the input is refused" "backing chain" \
    img convert "$dir/top.qcow2" "$dir/top-link.qcow2"
refuses "convert to a symbolic link to the input is refused" "backing chain" \
    img convert "$dir/top.qcow2" "$dir/top-sym.qcow2"
refuses "convert to the input by another path (dir/../) is refused" "backing chain" \
    img convert "$dir/top.qcow2" "$dir/../$(basename "$dir")/top.qcow2"
refuses "convert to the backing file of the input is refused" "backing chain" \
    img convert "$dir/top.qcow2" "$dir/base.qcow2"
check "... and every file of the chain is untouched" intact
check "qemu-img still reads the chain as before" \
    qemu-img compare -q -f qcow2 -F qcow2 "$dir/top.qcow2" "$dir/top-link.qcow2"

mkfifo "$dir/fifo"
refuses "convert to something that is not a regular file is refused" "not a regular file" \
    img convert "$dir/top.qcow2" "$dir/fifo"

printf 'old contents\n' >"$dir/out.raw"
check "convert over an existing output succeeds" img convert "$dir/top.qcow2" "$dir/out.raw"
qemu-img convert -f qcow2 -O raw "$dir/top.qcow2" "$dir/oracle.raw"
check "... and the output equals qemu-img's conversion" cmp -s "$dir/out.raw" "$dir/oracle.raw"
check "... and no temporary file is left beside it" \
    bash -c '! ls "$1"/out.raw.vub-* >/dev/null 2>&1' _ "$dir"

# A conversion that fails half-way must leave the old output as it was:
# a qcow2 image whose L2 entry for 2 MiB has reserved bits set, so the copy
# fails after the first 2 MiB were written.
qemu-img create -q -f qcow2 "$dir/bad.qcow2" 8M
qemu-io -f qcow2 -c 'write -P 0x33 0 4M' "$dir/bad.qcow2" >/dev/null
python3 - "$dir/bad.qcow2" <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(72)
cluster = 1 << struct.unpack(">I", h[20:24])[0]
l1 = struct.unpack(">Q", h[40:48])[0]
f.seek(l1); l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
entry = l2 + 8 * (2 * 1024 * 1024 // cluster)
f.seek(entry); e = struct.unpack(">Q", f.read(8))[0]
f.seek(entry); f.write(struct.pack(">Q", e | 0x1ff))
PY
printf 'old contents\n' >"$dir/keep.raw"
if img convert "$dir/bad.qcow2" "$dir/keep.raw" 2>"$dir/err"; then
    fail "converting an image corrupt at 2 MiB fails"
else
    ok "converting an image corrupt at 2 MiB fails: $(head -n1 "$dir/err")"
fi
check "... and the old output is still there, unchanged" \
    bash -c '[ "$(cat "$1")" = "old contents" ]' _ "$dir/keep.raw"
check "... and no temporary file is left beside it" \
    bash -c '! ls "$1"/keep.raw.vub-* >/dev/null 2>&1' _ "$dir"

# ---- [IMG-LOCK] vub holds the image: QEMU's tools refuse it ----
truncate -s 16M "$dir/disk.raw"
if start serve "$dir/s1.sock" "$B/vub-serve" --socket "$dir/s1.sock" "$dir/disk.raw"; then
    serve=$pid
    refuses "IMG-LOCK: qemu-img convert refuses an image vub-serve serves writable" \
        'Failed to get shared "write" lock' qemu-img convert -f raw -O raw "$dir/disk.raw" "$dir/c.raw"
    check "IMG-LOCK: qemu-img convert -U reads it" qemu-img convert -U -f raw -O raw "$dir/disk.raw" "$dir/c.raw"
    refuses "IMG-LOCK: qemu-io (writable) refuses it" 'lock' \
        timeout -k 1 5 qemu-io -f raw -c 'write 0 512' "$dir/disk.raw"
    refuses "IMG-LOCK: qemu-storage-daemon refuses to export it writable" 'lock' \
        timeout -k 1 5 qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$dir/disk.raw" \
        --export "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=$dir/q0.sock,writable=on"
    refuses "IMG-LOCK: a second vub-serve refuses it" 'in use' \
        timeout -k 1 5 "$B/vub-serve" --lock-wait 0 --socket "$dir/s2.sock" "$dir/disk.raw"
    refuses "IMG-LOCK: a second vub-serve refuses it read-only too" 'in use' \
        timeout -k 1 5 "$B/vub-serve" --lock-wait 0 --read-only --socket "$dir/s2.sock" "$dir/disk.raw"
    refuses "IMG-LOCK: vub-img info refuses it" 'in use' img info "$dir/disk.raw"
    check "IMG-LOCK: vub-img info --force-share reads it" quiet img info --force-share "$dir/disk.raw"
    check "IMG-LOCK: vub-serve --read-only --force-share serves it" \
        bash -c '"$1" --read-only --force-share --socket "$2" "$3" 2>/dev/null & p=$!; for i in $(seq 50); do [ -S "$2" ] && break; sleep 0.1; done; "$4" --socket "$2" read 0 4K >/dev/null; r=$?; kill $p; wait $p; exit $r' \
        _ "$B/vub-serve" "$dir/s3.sock" "$dir/disk.raw" "$B/vub-io"
    check "the served disk still works" quiet "$B/vub-io" --socket "$dir/s1.sock" verify
    refuses "IMG-LOCK: with --lock-wait 1, a second vub-serve gives up after waiting" 'cannot open image: .*in use' \
        timeout -k 1 10 "$B/vub-serve" --lock-wait 1 --socket "$dir/s2.sock" "$dir/disk.raw"
    # A vub-serve started while the image is still held (as by one killed a
    # moment ago) waits for it, and serves it once the holder has gone.
    timeout --foreground -k 5 300 "$B/vub-serve" --lock-wait 30 --socket "$dir/s5.sock" "$dir/disk.raw" 2>"$dir/wait.err" &
    waiter=$!
    pids+=("$waiter")
    for _ in $(seq 100); do grep -q 'waiting' "$dir/wait.err" && break; sleep 0.1; done
    check "IMG-LOCK: a vub-serve started on the held image waits (--lock-wait)" grep -q 'in use; waiting' "$dir/wait.err"
    stop "$serve"
    check "... and serves it once the first vub-serve has stopped" \
        bash -c 'for i in $(seq 100); do [ -S "$1" ] && exit 0; sleep 0.1; done; exit 1' _ "$dir/s5.sock"
    check "... and its disk works" quiet "$B/vub-io" --socket "$dir/s5.sock" verify
    stop "$waiter"
    check "IMG-LOCK: once vub-serve stopped, qemu-img convert reads the image" \
        qemu-img convert -f raw -O raw "$dir/disk.raw" "$dir/c.raw"
else
    fail "vub-serve starts on disk.raw"
fi

# ---- [IMG-LOCK] QEMU holds the image: vub refuses it ----
qsd() { # SOCK FILE FORMAT WRITABLE(on|off): off opens the nodes read-only too
    local ro=off
    [ "$4" = off ] && ro=on
    start qsd "$1" qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$2,read-only=$ro" \
        --blockdev "driver=$3,node-name=d,file=f,read-only=$ro" \
        --export "type=vhost-user-blk,id=e,node-name=d,addr.type=unix,addr.path=$1,writable=$4"
}
if qsd "$dir/q1.sock" "$dir/disk.raw" raw on; then
    refuses "IMG-LOCK: vub-serve refuses an image qemu-storage-daemon exports writable" 'in use' \
        timeout -k 1 5 "$B/vub-serve" --lock-wait 0 --socket "$dir/s4.sock" "$dir/disk.raw"
    refuses "IMG-LOCK: vub-serve --read-only refuses it too (it would change underneath)" 'in use' \
        timeout -k 1 5 "$B/vub-serve" --lock-wait 0 --read-only --socket "$dir/s4.sock" "$dir/disk.raw"
    refuses "IMG-LOCK: vub-img convert refuses it" 'in use' img convert "$dir/disk.raw" "$dir/c.raw"
    check "IMG-LOCK: vub-img convert --force-share reads it" img convert -U "$dir/disk.raw" "$dir/c.raw"
    stop "$pid"
else
    fail "qemu-storage-daemon starts on disk.raw"
fi
qemu-img create -q -f qcow2 "$dir/q.qcow2" 8M
if qsd "$dir/q2.sock" "$dir/q.qcow2" qcow2 on; then
    refuses "IMG-LOCK: vub-img info refuses a qcow2 image qemu-storage-daemon exports writable" 'in use' \
        img info "$dir/q.qcow2"
    check "IMG-LOCK: vub-img info -U reads it" quiet img info -U "$dir/q.qcow2"
    stop "$pid"
else
    fail "qemu-storage-daemon starts on q.qcow2"
fi
if qsd "$dir/q3.sock" "$dir/top.qcow2" qcow2 off; then
    check "IMG-LOCK: vub-img info reads a chain qemu-storage-daemon exports read-only (readers share)" \
        quiet img info "$dir/top.qcow2"
    stop "$pid"
else
    fail "qemu-storage-daemon starts on top.qcow2"
fi
# A backing file is locked as well: while vub-serve reads the chain,
# qemu-io cannot write its base.
if start chain "$dir/s5.sock" "$B/vub-serve" --socket "$dir/s5.sock" "$dir/top.qcow2"; then
    refuses "IMG-LOCK: qemu-io refuses to write the backing file of a chain vub-serve serves" 'lock' \
        timeout -k 1 5 qemu-io -f qcow2 -c 'write 0 512' "$dir/base.qcow2"
    stop "$pid"
else
    fail "vub-serve starts on top.qcow2"
fi

# ---- vub-serve never takes over a live socket ----
truncate -s 1M "$dir/a.raw" "$dir/b.raw"
if start live "$dir/live.sock" "$B/vub-serve" --socket "$dir/live.sock" "$dir/a.raw"; then
    live=$pid
    refuses "a second vub-serve on a live socket refuses to take it over" 'a server is listening' \
        timeout -k 1 5 "$B/vub-serve" --socket "$dir/live.sock" "$dir/b.raw"
    check "... and the first server still answers on it" quiet "$B/vub-io" --socket "$dir/live.sock" verify
    stop "$live"
else
    fail "vub-serve starts on a.raw"
fi
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$dir/stale.sock"
if start stale "$dir/stale.sock" "$B/vub-serve" --socket "$dir/stale.sock" "$dir/a.raw"; then
    sleep 0.2
    check "a stale socket (nobody listens) is replaced, with a log line" \
        grep -q "replacing stale socket" "$dir/stale.log"
    check "... and the new server answers on it" quiet "$B/vub-io" --socket "$dir/stale.sock" verify
    stop "$pid"
else
    fail "vub-serve starts on a stale socket"
fi

# ---- [IMG-PROBE-FOREIGN] other formats are not raw ----
for f in vmdk vhdx vdi qed vpc qcow luks; do
    x=$dir/x.$f
    secret=()
    [ $f = luks ] && secret=(--object secret,id=k,data=pw -o key-secret=k)
    # LUKS creation times its key derivation, and qemu-img sometimes fails
    # with "Unable to get accurate CPU usage": three tries, then a format
    # qemu-img cannot make here is skipped, saying why.
    for _ in 1 2 3; do
        rm -f "$x"
        qemu-img create -q -f "$f" "${secret[@]}" "$x" 1M 2>"$dir/create.err" && break
        rm -f "$x"
    done
    if [ ! -f "$x" ]; then
        skip "IMG-PROBE-FOREIGN: $f (qemu-img cannot create one here: $(head -n 1 "$dir/create.err"))"
        continue
    fi
    name=$f
    case $f in vpc) name=VPC ;; qcow) name='qcow (version 1)' ;; *) name=${f^^} ;; esac
    refuses "IMG-PROBE-FOREIGN: vub-img info names a $f image" "is a $name" img info "$x"
    refuses "IMG-PROBE-FOREIGN: vub-serve refuses a $f image" "is a $name" \
        timeout -k 1 5 "$B/vub-serve" --socket "$dir/f.sock" "$x"
    if img info --format raw "$x" >"$dir/out" 2>&1 && grep -q "format: raw" "$dir/out"; then
        ok "IMG-PROBE-FOREIGN: --format raw takes the $f file as raw"
    else
        fail "IMG-PROBE-FOREIGN: --format raw takes the $f file as raw ($(cat "$dir/out"))"
    fi
done
printf '# Disk DescriptorFile\nversion=1\n' >"$dir/desc.vmdk"
refuses "IMG-PROBE-FOREIGN: a VMDK text descriptor is named" "VMDK (text descriptor)" img info "$dir/desc.vmdk"

[ "$failures" -eq 0 ]
