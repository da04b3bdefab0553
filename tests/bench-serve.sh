#!/usr/bin/env bash
# bench-serve.sh - vub-serve against the other vhost-user-blk back-ends,
# with one client (build/vub-bench) for all of them.
#
# A benchmark, not a test: it prints a table and, unless --quick, writes it
# into BENCHMARKS.md (between the "bench-serve" markers). The peers, each in
# its fastest configuration:
#   - vub-serve (build/), with --aio io_uring, --cache none (disk cases) and
#     --threads when it has them (it says so in --help);
#   - qemu-storage-daemon 7.2 (/usr/bin) and 10.0 (tests/backports.sh):
#     aio=io_uring, cache.direct=on, one iothread;
#   - DPDK's examples/vhost_blk (Debian's dpdk-doc, built here against
#     libdpdk-dev): a RAM disk of 128 MiB served by a polling thread;
#   - fio --ioengine=io_uring --direct=1 on the same file: the bare device,
#     where the case has a file.
# A peer that cannot be had is printed as skipped, with the reason.
#
# The server runs on CPU 0 and the client on CPU 1 (taskset), except in P4,
# where the server may use both; DPDK's worker pins itself to CPU 0 anyway. Each case runs ROUNDS rounds; a round runs
# the job once against every peer, the order alternating, so drift of the
# machine falls on all of them. Medians of the rounds are shown, ratios are
# ratios of medians with the min-max of the per-round ratios. Server CPU per
# request comes from /proc/PID/stat (utime + stime, all threads) around each
# run. The tmpfs cases use a 128 MiB region (DPDK's disk), the disk cases a
# 1 GiB file on / (a disk here; /dev/shm is tmpfs).
#
#   tests/bench-serve.sh            full run (about 8 minutes), writes BENCHMARKS.md
#   tests/bench-serve.sh --quick    1 round of 1 s per peer, prints only
#   ROUNDS=5 RUNTIME=3 tests/bench-serve.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
top=$PWD

quick=0
[ "${1:-}" = --quick ] && quick=1
rounds=${ROUNDS:-$([ $quick = 1 ] && echo 1 || echo 3)}
runtime=${RUNTIME:-$([ $quick = 1 ] && echo 1 || echo 3)}
ramp=${RAMP:-0.5}
server_cpu=0 client_cpu=1
[ "$(nproc)" -ge 2 ] || { server_cpu=0 client_cpu=0; echo "# one CPU only: server and client share it" >&2; }

BENCH=$top/build/vub-bench
SERVE=$top/build/vub-serve
for p in "$BENCH" "$SERVE"; do [ -x "$p" ] || { echo "$p missing: run make" >&2; exit 2; }; done
bash tests/deps.sh bench >&2

tmp=$(mktemp -d /tmp/vub-bench-serve.XXXXXX)   # sockets, logs (a disk file system)
shm=$(mktemp -d /dev/shm/vub-bench-serve.XXXXXX) # the tmpfs images
mkdir -p build/bench
disk_img=$top/build/bench/disk.raw               # the disk case's file, kept between runs
results=$tmp/results.jsonl
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp" "$shm"
}
trap cleanup EXIT
log() { echo "# $*" >&2; }

# ---- The images ----
# One copy per peer, since each locks its image the way QEMU does; fio
# reads vub's copy. The disk copies are kept between runs (1 GiB each).
tmpfs_img=$shm/disk.raw
head -c 128M /dev/urandom >"$tmpfs_img"
if [ ! -f "$disk_img" ] || [ "$(stat -c %s "$disk_img")" != $((1 << 30)) ]; then
    log "writing the 1 GiB disk file $disk_img"
    head -c 1G /dev/urandom >"$disk_img"
fi
image() { # KIND(tmpfs|disk) PEER -> the peer's copy
    local src=$tmpfs_img dst=$shm/$2.raw
    [ "$1" = disk ] && src=$disk_img dst=$top/build/bench/$2.raw
    [ -f "$dst" ] && [ "$(stat -c %s "$dst")" = "$(stat -c %s "$src")" ] || cp "$src" "$dst"
    echo "$dst"
}

# ---- The peers ----
help=$("$SERVE" --help 2>&1)
has() { grep -q -- "$1" <<<"$help"; }
qsd72=/usr/bin/qemu-storage-daemon
qsd10=$top/build/guest-cache/qemu10/root/usr/bin/qemu-storage-daemon
skipped=()
command -v "$qsd72" >/dev/null || { skipped+=("qsd7.2: qemu-storage-daemon not installed"); qsd72=; }
if [ -n "$qsd72" ] && out=$(bash tests/backports.sh 2>&1) && [ -x "$qsd10" ]; then :; else
    skipped+=("qsd10.0: not available from bookworm-backports (${out:-no qsd 7.2}) "); qsd10=
fi

# DPDK's vhost_blk, built out of tree from dpdk-doc's copy of the example.
# The patch makes it run against a front-end that checks what it is given:
#  1. A packed ring's SET_VRING_BASE carries the wrap counters in bit 15 of
#     each index; the example splits them off only when INFLIGHT_SHMFD is
#     negotiated, and otherwise starts at descriptor 0x8000 of a 128-entry
#     ring, so packed rings never complete a request.
#  2. A split ring's used length must count the bytes the device wrote
#     (VIRTIO "The Virtqueue Used Ring": data and status for a read, the
#     status byte for a write); the example reports the data length for
#     writes too, which vub's front-end rejects as more than it may write.
# Left as it is: its worker thread pins itself to CPU 0 (our server CPU),
# it tests INFLIGHT_SHMFD in the virtio feature bits instead of the
# protocol ones (bit 12 there is VIRTIO_BLK_F_MQ, never negotiated here),
# and the RAM disk is 128 MiB of 4 KiB blocks without the BLK_SIZE feature.
dpdk_bin=
dpdk_build() {
    local src=/usr/share/dpdk/examples/vhost_blk out=$top/build/dpdk
    [ -f "$src/vhost_blk.c" ] || { skipped+=("dpdk vhost_blk: $src missing (dpdk-doc not installed)"); return; }
    pkg-config --exists libdpdk || { skipped+=("dpdk vhost_blk: libdpdk-dev not installed"); return; }
    rm -rf "$out/src" && mkdir -p "$out" && cp -r "$src" "$out/src"
    (cd "$out/src" && patch -s -p1) <<'PATCH'
--- a/vhost_blk.c
+++ b/vhost_blk.c
@@ -86,7 +86,8 @@
 	 * allocated by the guest VM.
 	 */
 	used->ring[used->idx & (vq->vring.size - 1)].id = task->req_idx;
-	used->ring[used->idx & (vq->vring.size - 1)].len = task->data_len;
+	used->ring[used->idx & (vq->vring.size - 1)].len =
+		task->req->type == VIRTIO_BLK_T_IN ? task->data_len + 1 : 1;
 	rte_atomic_thread_fence(__ATOMIC_SEQ_CST);
 	used->idx++;
 	rte_atomic_thread_fence(__ATOMIC_SEQ_CST);
@@ -658,13 +659,14 @@
 				       ctrlr->vid, i,
 				       &vq->inflight_ring) == 0);
 
-		if (packed_ring && inflight_shmfd) {
+		if (packed_ring && inflight_shmfd)
 			/* for the reconnection */
 			assert(rte_vhost_get_vring_base_from_inflight(
 				ctrlr->vid, i,
 				&vq->last_avail_idx,
 				&vq->last_used_idx) == 0);
 
+		if (packed_ring) {
 			vq->avail_wrap_counter = vq->last_avail_idx &
 				(1 << 15);
 			vq->last_avail_idx = vq->last_avail_idx &
PATCH
    if make -s -C "$out/src" >"$out/build.log" 2>&1; then
        dpdk_bin=$out/src/build/vhost-blk
    else
        skipped+=("dpdk vhost_blk: the build failed ($(tail -n 1 "$out/build.log"))")
    fi
}
dpdk_build

# serve NAME SOCKET COMMAND...: starts a server on the server CPU under a
# hard timeout and waits for its socket; sets spid to the server's own pid
# (for /proc/PID/stat). Returns 1 if it does not come up.
serve() {
    local name=$1 sock=$2 tpid
    shift 2
    timeout --foreground -k 5 1200 taskset -c "${server_cpus:-$server_cpu}" "$@" >"$tmp/$name.log" 2>&1 &
    tpid=$!
    pids+=("$tpid")
    for _ in $(seq 100); do
        [ -S "$sock" ] && break
        kill -0 "$tpid" 2>/dev/null || break
        sleep 0.1
    done
    spid=$(cat "/proc/$tpid/task/$tpid/children" 2>/dev/null)
    spid=${spid%% *}
    [ -S "$sock" ] && [ -n "$spid" ] && return 0
    log "$name did not start: $(tail -n 3 "$tmp/$name.log")"
    return 1
}
unserve() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# ---- One case ----
# Peers of a case are "LABEL|KIND|SOCKET|PID" lines in $peers; KIND is
# vub-bench or fio. run_case CASE BENCH-ARGS... runs the rounds.
peers=()
start_vub() { # LABEL IMAGE EXTRA-OPTS
    local sock=$tmp/$1.sock
    # shellcheck disable=SC2086
    serve "$1" "$sock" "$SERVE" --socket "$sock" --queues 2 $3 "$2" && peers+=("$1|vub-bench|$sock|$spid|$3")
}
start_qsd() { # LABEL BINARY IMAGE [IOTHREAD-OPTS]
    local sock=$tmp/$1.sock
    [ -n "$2" ] || return 0
    serve "$1" "$sock" "$2" \
        --blockdev "driver=file,node-name=f0,filename=$3,aio=io_uring,cache.direct=on" \
        --object "iothread,id=io0${4:-}" \
        --export "type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=$sock,writable=on,num-queues=2,iothread=io0" &&
        peers+=("$1|vub-bench|$sock|$spid|")
}
start_dpdk() {
    [ -n "$dpdk_bin" ] || return 0
    local d=$tmp/dpdk
    mkdir -p "$d"
    # --no-huge: plain memory instead of hugepages (none are set up here);
    # -m 512 holds the 128 MiB disk; --no-shconf and --no-pci keep it to
    # itself. The socket is ./vhost.socket, so it runs in its own directory.
    pushd "$d" >/dev/null || return
    serve dpdk "$d/vhost.socket" "$dpdk_bin" --no-huge -m 512 --no-pci --no-shconf -l "$server_cpu" \
        --log-level=lib.eal:error && peers+=("dpdk|vub-bench|$d/vhost.socket|$spid|")
    popd >/dev/null || return
}
stop_peers() {
    for p in "${pids[@]}"; do unserve "$p"; done
    pids=() peers=()
}

# fio_row CASE FILE ARGS...: the bare-device reference, same rounds.
fio_job() { # FILE RW BS QD -> json on stdout
    taskset -c "$client_cpu" fio --name=ref --filename="$1" --ioengine=io_uring --direct=1 --rw="$2" --bs="$3" \
        --iodepth="$4" --size=$(($(stat -c %s "$1"))) --runtime="$runtime" --ramp_time="$ramp" --time_based \
        --output-format=json 2>/dev/null | tr -d '\n'
}

# run_case CASE "FIO-ARGS" BENCH-ARGS...: every round, every peer.
run_case() {
    local case=$1 fio_args=$2 r k n order label kind sock pid t0 t1 out
    shift 2
    n=${#peers[@]}
    log "$case: ${n} peers, $rounds rounds of ${runtime}s: vub-bench $*"
    for ((r = 0; r < rounds; r++)); do
        for ((k = 0; k < n; k++)); do
            order=$((r % 2 ? n - 1 - k : k))
            IFS='|' read -r label kind sock pid _ <<<"${peers[$order]}"
            t0=$(cpu_ticks "$pid")
            out=$(taskset -c "$client_cpu" "$BENCH" --socket "$sock" --runtime "$runtime" --ramp "$ramp" --json "$@" \
                2>"$tmp/bench.err") || { log "$case $label: $(cat "$tmp/bench.err")"; }
            t1=$(cpu_ticks "$pid")
            [ -n "$out" ] && printf '{"case": "%s", "peer": "%s", "round": %d, "server_ticks": %d, "bench": %s}\n' \
                "$case" "$label" "$r" $((t1 - t0)) "$out" >>"$results"
        done
        if [ -n "$fio_args" ] && command -v fio >/dev/null; then
            # shellcheck disable=SC2086
            out=$(fio_job $fio_args) && printf '{"case": "%s", "peer": "fio", "round": %d, "fio": %s}\n' \
                "$case" "$r" "$out" >>"$results"
        fi
    done
}

# ---- The cases (issue numbering: P1, P2, P3, P4, P6) ----
vub_fast=""
has --aio && vub_fast+=" --aio io_uring"
vub_direct=$vub_fast
has --cache && vub_direct+=" --cache none"
vub_threads=$vub_fast
has --threads && vub_threads+=" --threads 2"
r128="--size 128M --ring split"

# peers_up KIND "VUB-OPTS" [QSD-IOTHREAD-OPTS] [dpdk]: vub-serve, both
# qemu-storage-daemons and (tmpfs cases only) DPDK, each on its own copy.
peers_up() {
    stop_peers
    start_vub vub "$(image "$1" vub)" "$2"
    start_qsd qsd7.2 "$qsd72" "$(image "$1" qsd7.2)" "${3:-}"
    start_qsd qsd10.0 "$qsd10" "$(image "$1" qsd10.0)" "${3:-}"
    [ "${4:-}" = dpdk ] && start_dpdk
}

# P1: 4 KiB randread QD32, one queue, tmpfs.
peers_up tmpfs "$vub_fast" "" dpdk
run_case P1 "$(image tmpfs vub) randread 4k 32" --rw randread --bs 4k --iodepth 32 $r128
# P2: QD1 4 KiB reads, both sides polling (vub-serve --poll-us, QSD's
# iothread polling up to 1 ms, DPDK always), then with eventfds.
peers_up tmpfs "$vub_fast --poll-us 100000" ",poll-max-ns=1000000" dpdk
run_case P2-poll "" --rw randread --bs 4k --iodepth 1 --wait poll $r128
peers_up tmpfs "$vub_fast"
run_case P2-eventfd "" --rw randread --bs 4k --iodepth 1 --wait eventfd $r128
# P4: 2 queues x QD16 against 1 queue x QD32, the server allowed on both
# CPUs ("2 queues on 2 cores"; vub-serve with --threads 2 when it has it),
# the client's threads on the client CPU. DPDK's example has one queue.
server_cpus=0-$((server_cpu == client_cpu ? 0 : 1))
peers_up tmpfs "$vub_threads"
run_case P4-1q "" --rw randread --bs 4k --iodepth 32 --queues 1 $r128
run_case P4-2q "" --rw randread --bs 4k --iodepth 16 --queues 2 $r128
server_cpus=
# P3: randwrite QD32 with a FLUSH every 64 writes on the disk file, write
# cache on and off (SET_CONFIG). DPDK's RAM disk has no FLUSH: not run.
peers_up disk "$vub_direct"
run_case P3-wb "" --rw randwrite --bs 4k --iodepth 32 --flush-every 64 --writeback on --ring split
run_case P3-wt "" --rw randwrite --bs 4k --iodepth 32 --flush-every 64 --writeback off --ring split
# P6: O_DIRECT 4 KiB randread QD32 on the disk file.
run_case P6 "$(image disk vub) randread 4k 32" --rw randread --bs 4k --iodepth 32 --ring split
stop_peers

# ---- The table ----
machine="$(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, Linux $(uname -r)"
versions="vub $(git describe --always --dirty 2>/dev/null || echo '?') ($(cc --version | head -1));"
versions+=" qemu-storage-daemon $([ -n "$qsd72" ] && "$qsd72" --version | head -1 | awk '{print $3}' || echo skipped)"
versions+=" and $([ -n "$qsd10" ] && "$qsd10" --version | head -1 | awk '{print $3}' || echo skipped);"
versions+=" DPDK $([ -n "$dpdk_bin" ] && pkg-config --modversion libdpdk || echo skipped); $(fio --version 2>/dev/null || echo 'fio skipped')"
table=$(python3 - "$results" "$machine" "$versions" "$(cut -d' ' -f1-3 /proc/loadavg)" "$rounds" "$runtime" \
    "$(date -u +%Y-%m-%d)" "$(getconf CLK_TCK)" "vub-serve options:${vub_fast:- (defaults)}; disk cases:${vub_direct:- (defaults)}; P4:${vub_threads:- (defaults)}" \
    "$(printf '%s; ' "${skipped[@]+"${skipped[@]}"}")" <<'PY'
import json, statistics, sys
path, machine, versions, load, rounds, runtime, date, tck, vubopts, skipped = sys.argv[1:11]
tck = int(tck)
runs = [json.loads(l) for l in open(path)]
def rows(case, peer):
    return sorted((r for r in runs if r["case"] == case and r["peer"] == peer), key=lambda r: r["round"])
def metrics(r):
    if "fio" in r:
        j = r["fio"]["jobs"][0]["read"]
        p = j["clat_ns"]["percentile"]
        return {"iops": j["iops"], "p50": p["50.000000"] / 1000, "p99": p["99.000000"] / 1000,
                "p999": p["99.900000"] / 1000, "cpu": None, "errors": 0}
    b = r["bench"]["result"]
    reqs = b["reads"] + b["writes"] + b["flushes"]
    # the server's ticks cover the ramp and the drain as well: spread over the requests of the whole run
    whole = reqs * (b["seconds"] + r["bench"]["job"]["ramp_s"]) / b["seconds"] if b["seconds"] else 0
    return {"iops": b["iops"], "p50": b["lat_us"]["p50"], "p99": b["lat_us"]["p99"], "p999": b["lat_us"]["p99.9"],
            "cpu": r["server_ticks"] / tck * 1e6 / whole if whole else None, "errors": b["errors"]}
def series(case, peer, m):
    return [metrics(r)[m] for r in rows(case, peer)]
def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None
def ratio(case_a, peer_a, case_b, peer_b, m="iops"):
    a, b = series(case_a, peer_a, m), series(case_b, peer_b, m)
    if not a or not b or not med(b):
        return None
    per = [x / y for x, y in zip(a, b) if y]
    return med(a) / med(b), min(per), max(per)
def fmt_ratio(t):
    return "–" if t is None else f"{t[0]:.2f}× ({t[1]:.2f}–{t[2]:.2f})"
def mm(v, f="{:.0f}"):
    v = [x for x in v if x is not None]
    return "–" if not v else f"{f.format(med(v))} ({f.format(min(v))}–{f.format(max(v))})"
peers = ["vub", "qsd7.2", "qsd10.0", "dpdk", "fio"]
cases = [("P1", "4 KiB randread QD32, 1 queue, tmpfs"), ("P2-poll", "QD1 4 KiB read, both sides polling"),
         ("P2-eventfd", "QD1 4 KiB read, eventfd"), ("P3-wb", "randwrite QD32 + FLUSH every 64, write cache on, disk"),
         ("P3-wt", "the same, write-through (writeback off)"), ("P4-1q", "4 KiB randread, 1 queue × QD32, tmpfs"),
         ("P4-2q", "4 KiB randread, 2 queues × QD16, tmpfs"), ("P6", "O_DIRECT 4 KiB randread QD32, disk file")]
out = []
out.append(f"Run of {date}: `tests/bench-serve.sh` ({rounds} rounds of {runtime} s per peer after a 0.5 s ramp; "
           f"load average before the run {load}).")
out.append("")
out.append(f"Machine: {machine}  ")
out.append(f"Versions: {versions}  ")
out.append(f"{vubopts}  ")
if skipped.strip("; "):
    out.append(f"Skipped: {skipped.strip('; ')}  ")
out.append("")
out.append("| case | peer | IOPS, median (min–max) | p50 µs | p99 µs | p99.9 µs | server CPU µs/request | errors |")
out.append("|---|---|---|---|---|---|---|---|")
errors = 0
for case, title in cases:
    for p in peers:
        rs = rows(case, p)
        if not rs:
            continue
        ms = [metrics(r) for r in rs]
        errors += sum(m["errors"] for m in ms)
        cpu = [m["cpu"] for m in ms]
        out.append(f"| {case}: {title} | {p} | {mm([m['iops'] for m in ms])} | {mm([m['p50'] for m in ms], '{:.1f}')} | "
                   f"{med([m['p99'] for m in ms]):.1f} | {med([m['p999'] for m in ms]):.1f} | "
                   f"{'–' if med(cpu) is None else f'{med(cpu):.2f}'} | {sum(m['errors'] for m in ms)} |")
out.append("")
out.append("Ratios (of medians; min–max of the per-round ratios):")
out.append("")
out.append("| target | measured | met |")
out.append("|---|---|---|")
def target(name, t, goal, higher=True):
    if t is None:
        out.append(f"| {name} (goal {goal}) | not measured (a peer was skipped) | – |")
        return
    met = t[0] >= goal if higher else t[0] <= goal
    miss = "" if met else (f", short by {(1 - t[0] / goal) * 100:.0f} %" if higher else f", over by {(t[0] / goal - 1) * 100:.0f} %")
    out.append(f"| {name} (goal {'≥' if higher else '≤'} {goal}) | {fmt_ratio(t)} | {'yes' if met else 'no' + miss} |")
target("P1 vub / qsd 7.2 IOPS", ratio("P1", "vub", "P1", "qsd7.2"), 2.5)
target("P1 vub / qsd 10.0 IOPS", ratio("P1", "vub", "P1", "qsd10.0"), 2.5)
target("P1 vub / DPDK IOPS", ratio("P1", "vub", "P1", "dpdk"), 1.0)
target("P2 polling p50, vub / DPDK", ratio("P2-poll", "vub", "P2-poll", "dpdk", "p50"), 1.2, higher=False)
p50 = med(series("P2-eventfd", "vub", "p50"))
if p50 is None:
    out.append("| P2 eventfd p50 (goal ≤ 12 µs) | not measured | – |")
else:
    v = series("P2-eventfd", "vub", "p50")
    out.append(f"| P2 eventfd p50 (goal ≤ 12 µs) | {p50:.1f} µs ({min(v):.1f}–{max(v):.1f}) | "
               f"{'yes' if p50 <= 12 else f'no, over by {(p50 / 12 - 1) * 100:.0f} %'} |")
target("P3 vub / qsd 7.2, write cache on", ratio("P3-wb", "vub", "P3-wb", "qsd7.2"), 1.5)
target("P3 vub / qsd 10.0, write cache on", ratio("P3-wb", "vub", "P3-wb", "qsd10.0"), 1.5)
target("P3 vub write-through / write-back", ratio("P3-wt", "vub", "P3-wb", "vub"), 0.5)
target("P4 vub 2 queues / 1 queue", ratio("P4-2q", "vub", "P4-1q", "vub"), 1.8)
for q in ("qsd7.2", "qsd10.0"):
    t = ratio("P4-2q", q, "P4-1q", q)
    if t:
        out.append(f"| P4 {q} 2 queues / 1 queue (for comparison) | {fmt_ratio(t)} | – |")
target("P6 vub / fio", ratio("P6", "vub", "P6", "fio"), 0.9)
target("P6 vub / qsd 7.2", ratio("P6", "vub", "P6", "qsd7.2"), 1.0)
target("P6 vub / qsd 10.0", ratio("P6", "vub", "P6", "qsd10.0"), 1.0)
target("P1 server CPU per request, vub / qsd 7.2", ratio("P1", "vub", "P1", "qsd7.2", "cpu"), 0.5, higher=False)
target("P1 server CPU per request, vub / qsd 10.0", ratio("P1", "vub", "P1", "qsd10.0", "cpu"), 0.5, higher=False)
out.append("")
out.append(f"Errors in all runs: {errors} (a run with any error is invalid).")
print("\n".join(out))
PY
)
commands=$(cat <<EOF
Commands (server on CPU $server_cpu, in P4 on CPUs 0-1, client on CPU $client_cpu, all under \`taskset\`):

    vub-serve --socket S --queues 2 [options above] IMAGE
    qemu-storage-daemon --blockdev driver=file,node-name=f0,filename=IMAGE,aio=io_uring,cache.direct=on \\
        --object iothread,id=io0[,poll-max-ns=1000000 for P2-poll] \\
        --export type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=S,writable=on,num-queues=2,iothread=io0
    vhost-blk --no-huge -m 512 --no-pci --no-shconf -l $server_cpu      (DPDK examples/vhost_blk, patched: see the script)
    vub-bench --socket S --runtime $runtime --ramp $ramp --json --bs 4k --rw randread --iodepth 32 --size 128M --ring split  (P1; the others as the script says)
    fio --ioengine=io_uring --direct=1 --rw=randread --bs=4k --iodepth=32 --filename=IMAGE --time_based --runtime=$runtime
EOF
)
echo "$table"
echo
echo "$commands"
if [ $quick = 0 ]; then
    python3 - BENCHMARKS.md "$table" "$commands" <<'PY'
import sys
path, table, commands = sys.argv[1:4]
text = open(path).read()
begin, end = "<!-- bench-serve: begin -->", "<!-- bench-serve: end -->"
block = f"{begin}\n{table}\n\n{commands}\n{end}"
if begin in text:
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
else:
    text += f"\n## vhost-user-blk back-ends: `tests/bench-serve.sh`\n\n{block}\n"
open(path, "w").write(text)
PY
    log "BENCHMARKS.md updated"
fi
