#!/usr/bin/env bash
# test-reconnect.sh - the front-end survives a back-end that dies under it
# [CLIENT-RECONNECT]: `vub-io --reconnect` runs verify (random writes, read
# back, compared) while this script kills the back-end with SIGKILL at
# moments spread over the run and starts it again on the same socket and
# image after a short pause. The verify must end with zero mismatches and
# one reconnect per kill, each resubmitting what was in flight. Then the
# same for `vub-bench --verify --reconnect` (a thread per queue). Back-ends:
# vub-serve (split and packed rings) and qemu-storage-daemon (7.2, and 10.0
# when tests/backports.sh has it).
#
#   tests/test-reconnect.sh      VUB_BUILD=build/asan for the sanitizer build
set -u
cd "$(dirname "$0")/.."
top=$PWD
. tests/lib-tap.sh reconnect

build=${VUB_BUILD:-build}
VUB_IO=$top/$build/vub-io
VUB_SERVE=$top/$build/vub-serve
VUB_BENCH=$top/$build/vub-bench
KILLS=${VUB_RECONNECT_KILLS:-5}
for p in "$VUB_IO" "$VUB_SERVE" "$VUB_BENCH"; do
    [ -x "$p" ] || { fail "$p is built (run make)"; exit 1; }
done

# The back-end of the moment, started without timeout(1) so that SIGKILL
# reaches the server itself; cleanup (lib-tap.sh) ends it by PID.
backend_start() { # SOCK LOG COMMAND...
    local sock=$1 log=$2
    shift 2
    "$@" </dev/null >>"$log" 2>&1 &
    backend=$!
    pids+=("$backend")
    for _ in $(seq 100); do
        [ -S "$sock" ] && return 0
        kill -0 "$backend" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# on_current ERR KILLS: true once the front-end (its stderr in ERR) is
# connected to the back-end started after the last of KILLS kills: after
# the first kill, vub-io says "reconnected" each time it is back.
on_current() { [ "$2" -eq 0 ] || [ "$(grep -c reconnected "$1")" -ge "$2" ]; }

# kill_run LABEL SOCK RING COMMAND...: verify under KILLS kills; each waits
# until the front-end is back on the current back-end, then a random 0.1 to
# 0.5 s more, so that it lands in the middle of the I/O.
kill_run() {
    local label=$1 sock=$2 ring=$3 log=$dir/$1.log out=$dir/$1.out err=$dir/$1.err io kills=0 i
    shift 3
    : >"$log"
    rm -f "$sock"
    backend_start "$sock" "$log" "$@" || { fail "$label: back-end starts ($(tail -n 2 "$log"))"; return; }
    timeout --foreground -k 5 300 "$VUB_IO" --socket "$sock" --queues 2 --ring "$ring" --reconnect 20000 --rounds 1000 \
        verify >"$out" 2>"$err" &
    io=$!
    pids+=("$io")
    while [ $kills -lt "$KILLS" ] && kill -0 "$io" 2>/dev/null; do
        for i in $(seq 200); do # up to 20 s for the front-end to be back
            on_current "$err" $kills && break
            sleep 0.1
        done
        sleep "0.$((RANDOM % 5 + 1))"
        kill -0 "$io" 2>/dev/null || break
        kill -KILL "$backend"
        wait "$backend" 2>/dev/null
        kills=$((kills + 1))
        sleep 0.2 # the back-end is gone for a moment
        backend_start "$sock" "$log" "$@" || { fail "$label: back-end restarts after kill $kills"; break; }
    done
    # Then the verify runs on; end it politely once it has seen the last restart.
    for i in $(seq 200); do
        on_current "$err" $kills && break
        sleep 0.1
    done
    sleep 0.5
    kill -TERM "$io" 2>/dev/null
    wait "$io"
    local rc=$? resub
    resub=$(sed -n 's/.*reconnected, \([0-9]*\) requests resubmitted/\1/p' "$err" | awk "{ n += \$1 } END { print n + 0 }")
    echo "# $label: $kills kills; $(grep -c reconnected "$err") reconnects, ${resub:-0} requests resubmitted"
    check "$label: the back-end was killed $KILLS times while verify ran" [ "$kills" = "$KILLS" ]
    check "$label: vub-io reconnected once per kill ($(grep -c reconnected "$err") reconnects)" \
        [ "$(grep -c reconnected "$err")" = "$kills" ]
    check "$label: requests in flight were resubmitted (${resub:-0})" [ "${resub:-0}" -gt 0 ]
    check "$label: verify passed: $(cat "$out") (status $rc)" \
        grep -qE "^verify: [1-9][0-9]* passes, 0 mismatches, $kills reconnects$" "$out"
    check "$label: no request failed ($(grep -v reconnected "$err" | tail -n 1))" \
        bash -c '! grep -v reconnected "$1" | grep -q .' _ "$err"
    check "$label: vub-io exits 0 once told to stop" [ "$rc" = 0 ]
    kill -TERM "$backend" 2>/dev/null
    wait "$backend" 2>/dev/null
}

# bench_run LABEL SOCK COMMAND...: vub-bench --verify --reconnect (random
# reads and writes, a FLUSH every 8 writes, each block tagged and checked)
# for 8 s on two queues, one thread each, while the back-end is killed 3
# times; it must count 3 reconnects, 0 mismatches and 0 errors.
bench_run() {
    local label=$1 sock=$2 log=$dir/$1.log out=$dir/$1.out err=$dir/$1.err bp kills=0 i
    shift 2
    : >"$log"
    rm -f "$sock"
    backend_start "$sock" "$log" "$@" || { fail "$label: back-end starts ($(tail -n 2 "$log"))"; return; }
    timeout --foreground -k 5 120 "$VUB_BENCH" --socket "$sock" --queues 2 --rw randrw --iodepth 16 --flush-every 8 --verify \
        --runtime 8 --reconnect 20000 >"$out" 2>"$err" &
    bp=$!
    pids+=("$bp")
    sleep 1.5
    while [ $kills -lt 3 ] && kill -0 "$bp" 2>/dev/null; do
        for i in $(seq 200); do on_current "$err" $kills && break; sleep 0.1; done
        sleep "0.$((RANDOM % 5 + 3))"
        kill -KILL "$backend"
        wait "$backend" 2>/dev/null
        kills=$((kills + 1))
        sleep 0.2
        backend_start "$sock" "$log" "$@" || { fail "$label: back-end restarts after kill $kills"; break; }
    done
    wait "$bp"
    local rc=$?
    echo "# $label: $kills kills; $(grep -E 'reconnects|verify|errors' "$out" | tr -s ' ' | tr '\n' ';')"
    check "$label: vub-bench --verify reconnected after each of 3 kills" grep -qE "^  reconnects $kills " "$out"
    check "$label: every block read back was the generation written (0 mismatches)" \
        grep -qE "^  verify .* 0 mismatches$" "$out"
    check "$label: no request failed (status $rc: $(grep -v reconnected "$err" | tail -n 1))" \
        grep -qE "^  errors     0$" "$out"
    kill -TERM "$backend" 2>/dev/null
    wait "$backend" 2>/dev/null
}

# The same front-end without --reconnect: the first kill ends it. Shows that
# the kills above really hit a back-end in use.
control_run() {
    local sock=$dir/ctl.sock log=$dir/ctl.log err=$dir/ctl.err io
    : >"$log"
    backend_start "$sock" "$log" "$VUB_SERVE" --socket "$sock" --queues 2 "$dir/ctl.img" || return
    timeout --foreground -k 5 120 "$VUB_IO" --socket "$sock" --queues 2 --rounds 1000 verify >/dev/null 2>"$err" &
    io=$!
    pids+=("$io")
    sleep 0.5
    kill -KILL "$backend"
    wait "$backend" 2>/dev/null
    wait "$io"
    local rc=$?
    check "without --reconnect, a killed back-end ends the verify with an error (status $rc: $(tail -n 1 "$err"))" \
        [ "$rc" = 1 ]
}

truncate -s 64M "$dir/disk.img" "$dir/ctl.img"
control_run
for ring in split packed; do
    kill_run "vub-serve-$ring" "$dir/serve.sock" "$ring" \
        "$VUB_SERVE" --socket "$dir/serve.sock" --queues 2 "$dir/disk.img"
    check "vub-serve-$ring: no sanitizer report in any of its lives" \
        bash -c '! grep -qE "ERROR: AddressSanitizer|runtime error" "$1"' _ "$dir/vub-serve-$ring.log"
done

bench_run vub-bench-vub-serve "$dir/bench.sock" "$VUB_SERVE" --socket "$dir/bench.sock" --queues 2 "$dir/disk.img"

# qemu-storage-daemon exporting the same image; it takes the socket path
# over from a killed instance itself.
qsd_run() { # LABEL QSD
    local label=$1 qsd=$2 sock=$dir/qsd.sock
    echo "# $label: $("$qsd" --version | head -n 1)"
    local args=(--blockdev "driver=file,node-name=f0,filename=$dir/disk.img" --blockdev "driver=raw,node-name=d0,file=f0"
        --export "type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$sock,writable=on,num-queues=2")
    kill_run "$label" "$sock" split "$qsd" "${args[@]}"
    bench_run "vub-bench-$label" "$sock" "$qsd" "${args[@]}"
}
if command -v qemu-storage-daemon >/dev/null; then
    qsd_run qsd-7.2 qemu-storage-daemon
else
    skip "qsd-7.2: qemu-storage-daemon not installed"
fi
if out=$(bash tests/backports.sh 2>&1) && [ -x "$top/build/guest-cache/qemu10/root/usr/bin/qemu-storage-daemon" ]; then
    qsd_run qsd-10.0 "$top/build/guest-cache/qemu10/root/usr/bin/qemu-storage-daemon"
else
    skip "qsd-10.0: bookworm-backports QEMU not available: $(echo "$out" | tail -n 1)"
fi
exit $((failures > 0))
