#!/usr/bin/env bash
# test-client.sh - the vub front-end (build/vub-io) against real back-ends:
# qemu-storage-daemon exporting a raw and a qcow2 image, and vub-serve when
# it has been built. Bytes are checked on the host side: raw images with cmp
# on the file, qcow2 images through `qemu-img convert -U -O raw` after a
# FLUSH (QSD keeps qcow2 metadata cached until then) and again after QSD quit.
#
#   tests/test-client.sh            # builds build/vub-io if needed
#   VUB_IO=path tests/test-client.sh
#
# Every back-end runs under a hard timeout and is started and stopped by
# this script, by PID. Output: "ok - ...", "not ok - ...", "skip - ... (why)".
set -u
cd "$(dirname "$0")/.."
top=$PWD

. tests/lib-tap.sh client

# ---- the program under test (built by make) ----
VUB_IO=${VUB_IO:-$top/build/vub-io}
if [ ! -x "$VUB_IO" ]; then
    fail "$VUB_IO is built (run make)"
    exit 1
fi
# RING (split, packed or auto) picks the ring layout for the whole suite.
io() { timeout -k 5 120 "$VUB_IO" ${RING:+--ring "$RING"} "$@"; }

if ! command -v qemu-storage-daemon >/dev/null || ! command -v qemu-img >/dev/null; then
    skip "qemu-storage-daemon tests (qemu-storage-daemon or qemu-img not installed)"
    have_qsd=0
else
    have_qsd=1
fi

qsd_start() { # NAME SOCK IMAGE FORMAT WRITABLE [EXTRA-EXPORT-OPTS]
    local name=$1 sock=$2 img=$3 fmt=$4 writable=$5 extra=${6:-}
    start "$name" "$sock" "$QSD_BIN" \
        --blockdev "driver=file,node-name=f0,filename=$img,discard=unmap" \
        --blockdev "driver=$fmt,node-name=d0,file=f0,discard=unmap" \
        --export "type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$sock,writable=$writable,num-queues=2$extra"
}

# host_raw LABEL IMAGE FORMAT OUT: the image's guest-visible bytes, read on the host.
host_raw() {
    if [ "$3" = raw ]; then cp "$2" "$4"; else qemu-img convert -U -f qcow2 -O raw "$2" "$4"; fi
}

zeros() { cmp -s "$1" <(head -c "$(stat -c %s "$1")" /dev/zero); }

# ---- the suite, run against each writable back-end ----
# suite LABEL SOCK IMAGE FORMAT SIZE
suite() {
    local L=$1 S=$2 img=$3 fmt=$4 size=$5 out
    out=$dir/$L
    mkdir -p "$out"

    if io --socket "$S" --queues 2 info >"$out/info" 2>&1; then
        ok "$L: info negotiates and reads the config"
        sed "s/^/# $L: /" "$out/info"
    else
        fail "$L: info ($(cat "$out/info"))"
        return
    fi
    check "$L: info reports the image size as capacity" grep -q "capacity: *$((size / 512)) sectors" "$out/info"

    head -c 1M /dev/urandom >"$out/data"
    check "$L: write of 1 MiB at 3 MiB succeeds" io --socket "$S" write 3M <"$out/data"
    check "$L: FLUSH succeeds" io --socket "$S" flush
    host_raw "$L" "$img" "$fmt" "$out/host.raw"
    check "$L: the host image holds the written bytes" \
        cmp -s "$out/data" <(dd if="$out/host.raw" bs=1M skip=3 count=1 status=none)
    check "$L: read returns the written bytes" cmp -s "$out/data" <(io --socket "$S" read 3M 1M)
    check "$L: read on the second queue returns them too" \
        cmp -s "$out/data" <(io --socket "$S" --queues 2 read 3M 1M)
    check "$L: dump equals the host view of the whole disk" cmp -s "$out/host.raw" <(io --socket "$S" dump)

    if io --socket "$S" read "$size" 512 >/dev/null 2>"$out/past"; then
        fail "$L: a read past the capacity fails"
    else
        check "$L: a read past the capacity is refused naming it ($(cat "$out/past"))" \
            grep -q "past the end of the disk (capacity $size bytes)" "$out/past"
    fi

    io --socket "$S" id >"$out/id" 2>&1
    local id
    id=$(cat "$out/id")
    check "$L: GET_ID gives printable ASCII of 1-20 bytes: \"$id\"" \
        bash -c '[[ $(wc -c <"$1") -ge 2 && $(wc -c <"$1") -le 21 ]] && ! LC_ALL=C grep -q "[^ -~]" "$1"' _ "$out/id"

    check "$L: write-zeroes (--unmap) of 256 KiB succeeds" io --socket "$S" zero 3M 256K --unmap
    check "$L: write-zeroes without unmap of 256 KiB succeeds" io --socket "$S" zero 3584K 256K
    io --socket "$S" read 3M 256K >"$out/z1"
    io --socket "$S" read 3584K 256K >"$out/z2"
    check "$L: write-zeroes ranges read back as zeros" bash -c 'cmp -s "$1" <(head -c 262144 /dev/zero) && cmp -s "$2" <(head -c 262144 /dev/zero)' _ "$out/z1" "$out/z2"
    check "$L: discard of 64 KiB succeeds" io --socket "$S" discard 3328K 64K
    io --socket "$S" read 3328K 64K >"$out/d1"
    if zeros "$out/d1"; then
        ok "$L: the discarded range reads back as zeros"
    else
        fail "$L: the discarded range reads back as zeros"
    fi
    if io --socket "$S" --queues 2 verify >"$out/verify" 2>&1; then
        ok "$L: verify over 2 queues finds no mismatch ($(cat "$out/verify"))"
    else
        fail "$L: verify over 2 queues finds no mismatch ($(cat "$out/verify"))"
    fi
    io --socket "$S" dump >"$out/last-dump"
}

# ---- error paths that need no particular back-end ----
check "vub-io --help exits 0 and names the commands" bash -c '"$1" --help | grep -q verify' _ "$VUB_IO"
if "$VUB_IO" --socket "$dir/none.sock" info 2>"$dir/nosock"; then
    fail "connecting to a missing socket fails"
else
    ok "connecting to a missing socket fails ($(cat "$dir/nosock"))"
fi
if "$VUB_IO" --socket x read 1Q 512 2>/dev/null; then fail "a bad size suffix is refused"; else ok "a bad size suffix is refused"; fi

# ---- qemu-storage-daemon, both generations ----
# qsd_checks LABEL BINARY: every check against one qemu-storage-daemon.
qsd_checks() {
    local Q=$1 size raw q2 ro bs qpid before
    QSD_BIN=$2
    echo "# $Q: $("$QSD_BIN" --version | head -1)"
    size=$((32 << 20))
    raw=$dir/$Q-disk.raw
    truncate -s $size "$raw"
    head -c 2M /dev/urandom | dd of="$raw" conv=notrunc status=none
    if qsd_start "$Q-raw" "$dir/$Q-raw.sock" "$raw" raw on; then
        qpid=$pid
        suite "$Q raw" "$dir/$Q-raw.sock" "$raw" raw $size
        if io --socket "$dir/$Q-raw.sock" --ring packed info 2>"$dir/$Q-packed"; then
            fail "$Q raw: --ring packed is refused"
        else
            check "$Q raw: --ring packed is refused with a reason ($(cat "$dir/$Q-packed"))" \
                grep -q "does not offer RING_PACKED" "$dir/$Q-packed"
        fi
        io --socket "$dir/$Q-raw.sock" --ring auto info >"$dir/$Q-auto.info" 2>&1
        check "$Q raw: --ring auto falls back to split rings and says so" \
            grep -q "^ring: *split.*does not offer packed rings" "$dir/$Q-auto.info"
        if io --socket "$dir/$Q-raw.sock" --queues 3 info 2>"$dir/$Q-q3"; then
            fail "$Q raw: more queues than exported are refused"
        else
            ok "$Q raw: more queues than exported are refused ($(cat "$dir/$Q-q3"))"
        fi
        stop "$qpid"
        check "$Q raw: after QSD quits, the file equals the last dump" cmp -s "$raw" "$dir/$Q raw/last-dump"
    else
        fail "$Q raw: $("$QSD_BIN" --version | head -1) starts"
    fi

    q2=$dir/$Q-disk.qcow2
    qemu-img create -q -f qcow2 "$q2" $size
    if qsd_start "$Q-qcow2" "$dir/$Q-q2.sock" "$q2" qcow2 on; then
        qpid=$pid
        suite "$Q qcow2" "$dir/$Q-q2.sock" "$q2" qcow2 $size
        head -c 64K /dev/urandom >"$dir/$Q-late"
        io --socket "$dir/$Q-q2.sock" write 5M <"$dir/$Q-late"
        stop "$qpid"
        qemu-img convert -f qcow2 -O raw "$q2" "$dir/$Q-q2-after.raw"
        check "$Q qcow2: after QSD quits, qemu-img sees the last write" \
            cmp -s "$dir/$Q-late" <(dd if="$dir/$Q-q2-after.raw" bs=64K skip=80 count=1 status=none)
        check "$Q qcow2: qemu-img check finds the image clean" qemu-img check -q "$q2"
    else
        fail "$Q qcow2: $("$QSD_BIN" --version | head -1) starts"
    fi

    ro=$dir/$Q-ro.raw
    truncate -s 4M "$ro"
    head -c 1M /dev/urandom | dd of="$ro" conv=notrunc status=none
    before=$(sha256sum <"$ro")
    if qsd_start "$Q-ro" "$dir/$Q-ro.sock" "$ro" raw off; then
        qpid=$pid
        io --socket "$dir/$Q-ro.sock" info >"$dir/$Q-ro.info" 2>&1
        check "$Q read-only: the RO feature is offered" grep -q "features offered:.* RO " "$dir/$Q-ro.info"
        if head -c 4096 /dev/zero | io --socket "$dir/$Q-ro.sock" write 0 2>"$dir/$Q-ro.err"; then
            fail "$Q read-only: a write fails"
        else
            check "$Q read-only: a write is refused as read-only ($(cat "$dir/$Q-ro.err"))" grep -q "read-only" "$dir/$Q-ro.err"
        fi
        check "$Q read-only: reads still work" cmp -s <(head -c 1M "$ro") <(io --socket "$dir/$Q-ro.sock" read 0 1M)
        stop "$qpid"
        check "$Q read-only: the image is unchanged" test "$before" = "$(sha256sum <"$ro")"
    else
        fail "$Q read-only: $("$QSD_BIN" --version | head -1) starts"
    fi

    bs=$dir/$Q-bs.raw
    truncate -s 4M "$bs"
    if qsd_start "$Q-4k" "$dir/$Q-bs.sock" "$bs" raw on ",logical-block-size=4096"; then
        qpid=$pid
        io --socket "$dir/$Q-bs.sock" info >"$dir/$Q-bs.info" 2>&1
        check "$Q 4K blocks: blk_size 4096 is reported" grep -q "blk_size: *4096" "$dir/$Q-bs.info"
        check "$Q 4K blocks: verify (whole 4 KiB blocks only) passes" bash -c '"$1" --socket "$2" verify >/dev/null' _ "$VUB_IO" "$dir/$Q-bs.sock"
        if io --socket "$dir/$Q-bs.sock" read 512 512 >/dev/null 2>"$dir/$Q-bs.err"; then
            fail "$Q 4K blocks: a 512-byte read inside a block fails"
        else
            check "$Q 4K blocks: a 512-byte read inside a block is IOERR ($(cat "$dir/$Q-bs.err"))" \
                grep -q IOERR "$dir/$Q-bs.err"
        fi
        stop "$qpid"
    else
        fail "$Q 4K blocks: $("$QSD_BIN" --version | head -1) starts"
    fi
}

if [ "$have_qsd" = 1 ]; then
    qsd_checks qsd qemu-storage-daemon
fi
# QEMU 10.0's, from bookworm-backports (tests/backports.sh), beside 7.2's.
qsd10=$top/build/guest-cache/qemu10/root/usr/bin/qemu-storage-daemon
if [ "$have_qsd" = 1 ] && out=$(bash tests/backports.sh 2>&1) && [ -x "$qsd10" ]; then
    qsd_checks qsd10 "$qsd10"
else
    skip "qsd10 tests (qemu-storage-daemon 10.0 from bookworm-backports not available: $(echo "${out:-qemu-img missing}" | tail -n 1))"
fi

# ---- vub-serve, when the lead's back-end has been built ----
if [ -x build/vub-serve ]; then
    size=$((16 << 20))
    img=$dir/serve.raw
    truncate -s $size "$img"
    if start vub-serve "$dir/serve.sock" build/vub-serve --socket "$dir/serve.sock" --queues 2 "$img"; then
        spid=$pid
        RING=split suite "vub-serve raw split" "$dir/serve.sock" "$img" raw $size
        RING=packed suite "vub-serve raw packed" "$dir/serve.sock" "$img" raw $size
        RING=packed io --socket "$dir/serve.sock" info >"$dir/packed.info" 2>&1
        check "vub-serve: --ring packed negotiates RING_PACKED" grep -q "^ring: *packed" "$dir/packed.info"
        check "vub-serve: verify over packed rings on two queues" \
            io --socket "$dir/serve.sock" --ring packed --queues 2 verify
        stop "$spid"
    else
        fail "vub-serve: starts"
    fi
    if start vub-serve-poll "$dir/poll.sock" build/vub-serve --socket "$dir/poll.sock" --poll-us 500 "$img"; then
        spid=$pid
        check "vub-serve --poll-us 500: verify passes while the back-end busy-polls" \
            io --socket "$dir/poll.sock" --queues 1 verify
        stop "$spid"
    else
        fail "vub-serve --poll-us: starts"
    fi
    before=$(sha256sum <"$img")
    if start vub-serve-ro "$dir/serve-ro.sock" build/vub-serve --socket "$dir/serve-ro.sock" --read-only "$img"; then
        spid=$pid
        if head -c 4096 /dev/zero | io --socket "$dir/serve-ro.sock" write 0 2>"$dir/sro.err"; then
            fail "vub-serve read-only: a write fails"
        else
            check "vub-serve read-only: a write is refused as read-only ($(cat "$dir/sro.err"))" grep -q "read-only" "$dir/sro.err"
        fi
        stop "$spid"
        check "vub-serve read-only: the image is unchanged" test "$before" = "$(sha256sum <"$img")"
    else
        fail "vub-serve read-only: starts"
    fi
    # Live resize: the image grows, SIGHUP, and vub-io (waiting on the
    # back-end channel) sees the new capacity and uses the new end; then a
    # shrink is refused with a log line.
    rimg=$dir/resize.raw
    truncate -s 8M "$rimg"
    if start vub-serve-resize "$dir/resize.sock" build/vub-serve --socket "$dir/resize.sock" --queues 1 "$rimg"; then
        spid=$pid
        io --socket "$dir/resize.sock" wait-resize 20000 >"$dir/resize.out" 2>&1 &
        iopid=$!
        for _ in $(seq 100); do grep -q "waiting for a resize" "$dir/resize.out" && break; sleep 0.1; done
        # the signal goes to vub-serve itself: timeout(1) would take a second
        # signal as the cue to SIGKILL its child
        read -r serve_pid _ <"/proc/$spid/task/$spid/children"
        truncate -s 12M "$rimg"
        kill -HUP "$serve_pid"
        wait "$iopid"
        rc=$?
        check "vub-serve resize: vub-io saw CONFIG_CHANGE_MSG, capacity 16384 -> 24576 sectors, and used the new end" \
            test "$rc" = 0 -a -n "$(grep -- "16384 -> 24576 sectors" "$dir/resize.out")"
        check "vub-serve resize: the image's new last 4 KiB hold what vub-io wrote" python3 -c '
import sys
data = open(sys.argv[1], "rb").read()[-4096:]
sys.exit(data != bytes((k * 31 + 24576) & 0xff for k in range(4096)))' "$rimg"
        check "vub-serve resize: vub-serve logged the old and new capacity" \
            grep -q "SIGHUP: capacity 16384 -> 24576 sectors.*front-end notified" "$dir/vub-serve-resize.log"
        truncate -s 4M "$rimg"
        kill -HUP "$serve_pid"
        for _ in $(seq 50); do grep -q "resize refused" "$dir/vub-serve-resize.log" && break; sleep 0.1; done
        check "vub-serve resize: a shrink is refused with a log line ($(grep -o "resize refused: the image shrank[^;]*" "$dir/vub-serve-resize.log"))" \
            grep -q "resize refused: the image shrank" "$dir/vub-serve-resize.log"
        stop "$spid"
    else
        fail "vub-serve resize: starts"
    fi
else
    skip "vub-serve tests (build/vub-serve not built: run make)"
fi

echo "# $failures failure(s)"
[ "$failures" -eq 0 ]
