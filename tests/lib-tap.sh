# Sourced by the shell tests:  . tests/lib-tap.sh NAME
# Gives "ok - ...", "not ok - ..." and "skip - ..." lines (ok, fail, skip,
# check "sentence" command..., quiet command...), $failures, a scratch
# directory $dir (/tmp/vub-NAME-test.XXXXXX), and pids: every process the
# test starts in the background goes in it and is stopped, by PID, at exit;
# start and stop run such a server.
failures=0
ok()   { echo "ok - $*"; }
fail() { echo "not ok - $*"; failures=$((failures + 1)); }
skip() { echo "skip - $*"; }
quiet() { "$@" >/dev/null; }
check() { # check "sentence" command...: ok if the command succeeds
    local what=$1; shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

dir=$(mktemp -d "/tmp/vub-$1-test.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT

# start NAME SOCKET COMMAND...: runs a server in the background under a hard
# timeout, its output in $dir/NAME.log, and waits for its socket to appear.
# Sets $pid. Fails (printing the log) if the server exits or never listens.
# timeout(1) runs with --foreground wherever a test later stops it with a
# signal: without it, timeout passes the signal on to the server, then to
# the whole process group, each followed by a SIGCONT. An ASan server that
# is already exiting may then be in LeakSanitizer's stop-the-world, whose
# helper has just sent it a stop; the SIGCONT cancels that stop, the helper
# waits for it for ever and the server spins waiting for the helper (seen
# in the guest cells: killed 60 s after SIGTERM, spinning in sched_yield).
start() {
    local name=$1 sock=$2; shift 2
    timeout --foreground -k 5 300 "$@" >"$dir/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
        [ -S "$sock" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$dir/$name.log"
    return 1
}
stop() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
