#!/usr/bin/env bash
# test-serve.sh - vub-serve as a tool: several exports in one process, each
# checked with vub-io, one disconnecting (also abruptly) while another is in
# the middle of a session; statistics on SIGUSR1 without stopping.
#
#   tests/test-serve.sh     (VUB_BUILD=dir picks the programs; default build/)
set -u
cd "$(dirname "$0")/.."
B=${VUB_BUILD:-$PWD/build}

. tests/lib-tap.sh serve
for p in vub-serve vub-io; do
    [ -x "$B/$p" ] || { fail "$B/$p is built (run make)"; exit 1; }
done
io() { timeout -k 5 60 "$B/vub-io" "$@"; }
waitsock() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done; return 1; }

# ---- two exports in one process ----
truncate -s 64M "$dir/a.raw"
head -c 4M /dev/urandom >"$dir/b.raw"
timeout --foreground -k 5 120 "$B/vub-serve" --export "socket=$dir/a.sock,image=$dir/a.raw,queues=2" \
    --export "socket=$dir/b.sock,image=$dir/b.raw,read-only=on,queues=1,serial=bee-disk" \
    2>"$dir/serve.log" &
serve=$!
pids+=("$serve")
if ! waitsock "$dir/a.sock" || ! waitsock "$dir/b.sock"; then
    fail "vub-serve with two --export listens on both sockets ($(cat "$dir/serve.log"))"
    exit 1
fi
ok "vub-serve with two --export listens on both sockets"
vpid=$(pgrep -P "$serve" -x vub-serve) # signals go to vub-serve itself, not to timeout
check "each export logged its own serving line" \
    bash -c 'grep -q "a.sock: serving .*a.raw" "$1" && grep -q "b.sock: serving .*b.raw.*read-only" "$1"' _ "$dir/serve.log"

head -c 1M /dev/urandom >"$dir/data"
check "export a: write 1 MiB at 5 MiB" io --socket "$dir/a.sock" write 5M <"$dir/data"
check "export a: the image file holds it" cmp -s "$dir/data" <(dd if="$dir/a.raw" bs=1M skip=5 count=1 status=none)
check "export a: has 2 queues" bash -c '"$1" --socket "$2" info | grep -q "device has 2"' _ "$B/vub-io" "$dir/a.sock"
check "export b: dump equals its image file" cmp -s "$dir/b.raw" <(io --socket "$dir/b.sock" dump)
check "export b: GET_ID is its own serial" test "$(io --socket "$dir/b.sock" id)" = bee-disk
check "export a: GET_ID is the default serial" test "$(io --socket "$dir/a.sock" id)" = vub
if io --socket "$dir/b.sock" write 0 <"$dir/data" 2>/dev/null; then
    fail "export b: read-only=on refuses writes"
else
    check "export b: read-only=on refuses writes and the file is unchanged" \
        bash -c '! cmp -s "$1" <(head -c 1M "$2")' _ "$dir/data" "$dir/b.raw"
fi

# A long session on a (a dump of 64 MiB into a reader that waits), while
# b's front-ends come and go, one of them killed in the middle of its work.
( io --socket "$dir/a.sock" dump | (sleep 3; cat) >"$dir/a.dump" ) &
dumper=$!
sleep 0.5
check "export b: a session starts and ends while a's session runs" quiet io --socket "$dir/b.sock" read 0 1M
io --socket "$dir/b.sock" --queues 1 dump >/dev/null &
victim=$!
sleep 0.2
kill -KILL "$victim" 2>/dev/null
wait "$victim" 2>/dev/null
check "export b: after a front-end was killed mid-session, the next one is served" \
    cmp -s "$dir/b.raw" <(io --socket "$dir/b.sock" dump)
wait "$dumper"
check "export a: the session that ran meanwhile read the whole disk correctly" cmp -s "$dir/a.raw" "$dir/a.dump"
check "vub-serve is still running" kill -0 "$serve"

# ---- SIGUSR1: statistics without stopping ----
( io --socket "$dir/a.sock" dump | (sleep 2; cat) >/dev/null ) &
dumper=$!
sleep 1
kill -USR1 "$vpid"
sleep 0.5
check "SIGUSR1 logs statistics of the running session, per export" \
    bash -c 'grep -q "a.sock: statistics of this session; requests [1-9][0-9]*: reads [1-9]" "$1" &&
             grep -q "b.sock: statistics (no front-end connected" "$1"' _ "$dir/serve.log"
check "SIGUSR1 statistics name bytes and per-queue counts" \
    bash -c 'grep "statistics of this session" "$1" | grep -q "bytes read [1-9][0-9]* written 0; .* per queue: q0="' _ "$dir/serve.log"
check "vub-serve keeps serving after SIGUSR1" kill -0 "$vpid"
wait "$dumper"
check "... and a new session works" quiet io --socket "$dir/a.sock" read 0 4K
check "the per-session summary still ends each session, with bytes written" \
    grep -q "a.sock: session ended (front-end disconnected); requests .* bytes read 0 written 1048576" "$dir/serve.log"

kill -TERM "$vpid"
wait "$serve"
rc=$?
check "SIGTERM stops vub-serve cleanly (status $rc) and removes both sockets" \
    bash -c '[ "$1" = 0 ] && [ ! -e "$2" ] && [ ! -e "$3" ]' _ "$rc" "$dir/a.sock" "$dir/b.sock"

# ---- --export mistakes: one line naming the problem, exit 2 ----
usage_error() { # sentence pattern args...
    local what=$1 pat=$2; shift 2
    "$B/vub-serve" "$@" >"$dir/out" 2>"$dir/err"
    local rc=$? lines
    lines=$(wc -l <"$dir/err")
    if [ "$rc" = 2 ] && [ "$lines" = 1 ] && grep -q -- "$pat" "$dir/err"; then
        ok "$what: $(cat "$dir/err")"
    else
        fail "$what (exit $rc, $lines lines: $(head -c 300 "$dir/err"))"
    fi
}
usage_error "--export without image= is refused" "needs socket=PATH and image=FILE" --export "socket=$dir/x.sock"
usage_error "--export with an unknown key is refused" "unknown key or bad value 'size=1'" \
    --export "socket=$dir/x.sock,image=$dir/a.raw,size=1"
usage_error "--export with read-only=maybe is refused" "read-only=maybe" \
    --export "socket=$dir/x.sock,image=$dir/a.raw,read-only=maybe"
usage_error "--export with queues=0 is refused" "queues wants 1..64, not '0'" \
    --export "socket=$dir/x.sock,image=$dir/a.raw,queues=0"
"$B/vub-serve" --export "socket=$dir/y.sock,image=$dir/a.raw" --export "socket=$dir/z.sock,image=$dir/a.raw" \
    >/dev/null 2>"$dir/err" &
p=$!
pids+=("$p")
wait "$p"
rc=$?
check "two writable exports of one image: the second is refused (locked) and vub-serve exits 1" \
    bash -c '[ "$1" = 1 ] && grep -q "z.sock: cannot open image: .* is in use" "$2" && [ ! -e "$3" ]' \
    _ "$rc" "$dir/err" "$dir/y.sock"

[ "$failures" -eq 0 ]
