#!/usr/bin/env bash
# test-bench.sh - a one-second vub-bench --verify of every mode, against
# vub-serve and qemu-storage-daemon. Not a benchmark: nothing here is timed;
# each run must end with zero errors and real bytes written, read back and
# checked. The server modes (--aio sync|io_uring, --cache none|writeback,
# --threads N) are used when `vub-serve --help` lists them and printed as
# skipped until then; each client mode (--wait eventfd|poll, --ring
# split|packed) is used at least once.
#
#   tests/test-bench.sh                 # the programs in build/
#   VUB_BUILD=build/asan tests/test-bench.sh
set -u
cd "$(dirname "$0")/.."
top=$PWD

. tests/lib-tap.sh bench

build=${VUB_BUILD:-build}
[[ $build == /* ]] || build=$top/$build
BENCH=$build/vub-bench
SERVE=$build/vub-serve
for p in "$BENCH" "$SERVE"; do
    if [ ! -x "$p" ]; then
        fail "$p is built (run make)"
        exit 1
    fi
done
bench() { timeout -k 5 120 "$BENCH" "$@"; }

# The image lives on a disk file system (the scratch directory is under
# /tmp), so O_DIRECT (--cache none) works on it.
img=$dir/disk.raw
truncate -s 32M "$img"

# verified LABEL JSON-FILE [WRITEBACK]: zero errors, reads and writes that
# moved and checked real bytes, and the write cache asked for (on/off).
verified() {
    python3 - "$2" "${3:-}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["result"]
want_wb = {"on": 1, "off": 0}.get(sys.argv[2])
ok = r["errors"] == 0 and r["reads"] > 0 and r["writes"] > 0 and r["verified_bytes"] >= 32 << 20
ok = ok and (want_wb is None or r["writeback"] == want_wb)
print(f'{r["errors"]} errors, {r["reads"]} reads, {r["writes"]} writes, {r["verified_bytes"]} bytes verified, '
      f'{r["iops"]:.0f} IOPS, ring {r["ring"]}, write cache {r["writeback"]}')
sys.exit(0 if ok else 1)
PY
}

# run_case LABEL SOCK BENCH-ARGS...: a 1-second randrw --verify job.
run_case() {
    local label=$1 sock=$2 out wb="" a
    shift 2
    for a in "$@"; do [ "$wb" = next ] && wb=$a; [ "$a" = --writeback ] && wb=next; done
    out=$dir/$(echo "$label" | tr -c 'a-zA-Z0-9\n' '_').json
    if bench --socket "$sock" --rw randrw --runtime 1 --iodepth 16 --verify --json "$@" >"$out" 2>"$out.err" &&
        summary=$(verified "$label" "$out" "$wb"); then
        ok "$label: zero errors, real bytes verified ($summary)"
    else
        fail "$label: $(cat "$out.err") $(verified "$label" "$out" "$wb" 2>&1 | tail -1)"
    fi
}

# serve_case LABEL "SERVE-OPTS" BENCH-ARGS...: a fresh vub-serve with those
# options, one job, stopped.
serve_case() {
    local label=$1 opts=$2 sock
    shift 2
    sock=$dir/serve-$((++n_serve)).sock
    # shellcheck disable=SC2086 # the options are words
    if start "serve-$n_serve" "$sock" "$SERVE" --socket "$sock" --queues 2 $opts "$img"; then
        run_case "$label" "$sock" "$@"
        stop "$pid"
    else
        fail "$label: vub-serve $opts starts"
    fi
}
n_serve=0

check "vub-bench --help names every option" bash -c '"$1" --help | grep -q -- "--compare" && "$1" --help | grep -q -- "--writeback"' _ "$BENCH"
"$BENCH" --socket x --bs 1000 2>"$dir/usage.err"
rc=$?
check "a --bs that is not a multiple of 512 is a usage error (exit 2: $(cat "$dir/usage.err"))" test "$rc" = 2

serve_case "vub-serve, split ring, eventfd" "" --ring split --wait eventfd
serve_case "vub-serve, packed ring, polling, write cache on, FLUSH every 8" "" \
    --ring packed --wait poll --writeback on --flush-every 8
serve_case "vub-serve, 2 queues, a thread each on the client" "" --queues 2 --ring split --wait poll

# The server's own modes, when this vub-serve has them.
help=$("$SERVE" --help 2>&1)
server_mode() { # OPTION VALUE CLIENT-ARGS...
    local opt=$1 val=$2
    shift 2
    if grep -q -- "$opt" <<<"$help"; then
        serve_case "vub-serve $opt $val" "$opt $val" "$@"
    else
        skip "vub-serve $opt $val (this vub-serve has no $opt option: its --help does not list it)"
    fi
}
server_mode --aio sync --ring split --wait eventfd
server_mode --aio io_uring --ring packed --wait eventfd
server_mode --cache none --ring split --wait poll
server_mode --cache writeback --ring packed --wait poll --writeback on --flush-every 16
server_mode --threads 1 --queues 2 --ring packed --wait eventfd
server_mode --threads 2 --queues 2 --ring split --wait poll

# --verify must be able to fail: the image is overwritten behind the
# back-end's front-end in the middle of a read-only run.
sock=$dir/tamper.sock
if start tamper "$sock" "$SERVE" --socket "$sock" "$img"; then
    (sleep 0.5; dd if=/dev/zero of="$img" bs=1M count=32 conv=notrunc status=none) &
    pids+=($!)
    bench --socket "$sock" --rw randread --runtime 2 --verify --json >"$dir/tamper.json" 2>"$dir/tamper.err"
    rc=$?
    check "--verify catches blocks overwritten behind its back: exit 1 and mismatches counted ($(head -c 200 "$dir/tamper.err"))" \
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["result"]; sys.exit(not (int(sys.argv[2]) == 1 and r["mismatches"] > 0 and r["errors"] >= r["mismatches"]))' \
        "$dir/tamper.json" "$rc"
    stop "$pid"
else
    fail "tamper: vub-serve starts"
fi

# qemu-storage-daemon in the configuration the benchmarks use.
qsd_case() { # LABEL BINARY
    local label=$1 bin=$2 sock=$dir/$1.sock qimg=$dir/$1.raw
    truncate -s 32M "$qimg"
    if start "$label" "$sock" "$bin" \
        --blockdev "driver=file,node-name=f0,filename=$qimg,aio=io_uring,cache.direct=on" \
        --object iothread,id=io0 \
        --export "type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=$sock,writable=on,num-queues=2,iothread=io0"; then
        echo "# $label: $("$bin" --version | head -1)"
        run_case "$label, write cache off by SET_CONFIG" "$sock" --ring split --writeback off
        run_case "$label, polling, write cache on, FLUSH every 4" "$sock" --ring split --wait poll --writeback on --flush-every 4
        if [ "$label" = qsd ] && [ -n "${compare_sock:-}" ]; then
            bench --compare "$compare_sock" "$sock" --runtime 0.5 --rounds 2 --ring split >"$dir/compare.out" 2>&1
            rc=$?
            sed 's/^/# /' "$dir/compare.out"
            check "--compare vub-serve and $label: two rows with ratios, zero errors" \
                bash -c '[ "$1" = 0 ] && grep -q "errors: 0$" "$2" && [ "$(grep -c "x (" "$2")" = 2 ]' _ "$rc" "$dir/compare.out"
        fi
        stop "$pid"
    else
        fail "$label: $("$bin" --version | head -1) starts"
    fi
}
if command -v qemu-storage-daemon >/dev/null; then
    compare_sock=$dir/compare.sock
    truncate -s 32M "$dir/compare.raw"
    start compare "$compare_sock" "$SERVE" --socket "$compare_sock" "$dir/compare.raw" || compare_sock=
    compare_pid=$pid
    qsd_case qsd qemu-storage-daemon
    stop "$compare_pid"
else
    skip "qemu-storage-daemon runs (qemu-storage-daemon not installed)"
fi
qsd10=$top/build/guest-cache/qemu10/root/usr/bin/qemu-storage-daemon
if out=$(bash tests/backports.sh 2>&1) && [ -x "$qsd10" ]; then
    qsd_case qsd10 "$qsd10"
else
    skip "qemu-storage-daemon 10.0 runs (not available from bookworm-backports: $(echo "$out" | tail -n 1))"
fi

echo "# $failures failure(s)"
[ "$failures" -eq 0 ]
