#!/usr/bin/env bash
# test-examples: the code a reader copies works as given.
#  - the two programs in vub.h's comments (a back-end, a client) and the C
#    block in README.md are extracted verbatim, built with the documented
#    one-line cc command and run: the client prints the disk's first bytes;
#  - examples/hello-server.c and examples/hello-client.c run against each
#    other (twice: the server takes one front-end after another), and
#    hello-client runs against qemu-storage-daemon.
# Every peer process is started here and stopped by PID.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
T=$(mktemp -d "${TMPDIR:-/tmp}/vub-examples.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
CC=${CC:-cc}
fails=0
result() { # status sentence [detail-file]
    if [ "$1" -eq 0 ]; then
        echo "ok - $2"
    else
        echo "not ok - $2"
        fails=$((fails + 1))
        [ -n "${3:-}" ] && [ -f "$3" ] && sed 's/^/#   /' "$3" | head -20
    fi
}

# The programs in vub.h: each is the run of " *     " lines that starts with
# `#include "vub.h"`, the comment's indentation taken off (plain POSIX awk:
# mawk has no {n} intervals).
awk -v dir="$T" '
    /^ \*     #include "vub\.h"$/ { n++; out = dir "/vub-h-" n ".c" }
    out && /^ \*(     .*)?$/ { line = $0; sub(/^ \*(     )?/, "", line); print line > out; next }
    { out = "" }' vub.h
# The C blocks in README.md.
awk -v dir="$T" '
    /^```c$/ { n++; out = dir "/readme-" n ".c"; next }
    /^```$/ { out = ""; next }
    out { print > out }' README.md

build() { # name source: the documented line, warnings as errors
    $CC -std=c11 -Wall -Wextra -Werror -O2 -I"$ROOT" "$ROOT/vub.c" "$2" -o "$T/$1" 2>"$T/$1.err"
    result $? "$(basename "$2") builds with cc -std=c11 -Wall -Wextra -Werror" "$T/$1.err"
}
[ -f "$T/vub-h-1.c" ] && [ -f "$T/vub-h-2.c" ] && [ -f "$T/readme-1.c" ]
result $? "vub.h holds two programs and README.md one C block"
build server "$T/vub-h-1.c"
build client "$T/vub-h-2.c"
build readme-client "$T/readme-1.c"
build hello-server examples/hello-server.c
build hello-client examples/hello-client.c

# A 1 MiB disk whose first bytes are known.
python3 -c "import sys; sys.stdout.buffer.write(bytes((i * 37 + 11) & 0xff for i in range(1 << 20)))" >"$T/disk.img"
want=$(od -An -tx1 -N16 "$T/disk.img" | sed 's/^ //')

wait_socket() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done; return 1; }

# vub.h's back-end serves one front-end in the current directory; each
# client (vub.h's, README's) gets a fresh one.
for client in client readme-client; do
    [ -x "$T/server" ] && [ -x "$T/$client" ] || { result 1 "$client against vub.h's back-end (not built)"; continue; }
    rm -f "$T/vub.sock"
    (cd "$T" && exec timeout --foreground 30 ./server) >"$T/server.out" 2>&1 &
    spid=$!
    pids+=("$spid")
    wait_socket "$T/vub.sock"
    got=$(cd "$T" && timeout 30 "./$client" 2>"$T/client.err")
    crc=$?
    wait "$spid"
    src=$?
    [ "$crc" = 0 ] && [ "$got" = "$want" ] && [ "$src" = 0 ] && grep -q 'session over: the peer closed' "$T/server.out"
    result $? "$client prints the first 16 bytes through vub.h's back-end, which ends cleanly when it leaves (\"$got\")" "$T/client.err"
done

# hello-server takes front-ends one after another; hello-client writes
# sector 0 and reads it back.
if [ -x "$T/hello-server" ] && [ -x "$T/hello-client" ]; then
    cp "$T/disk.img" "$T/hello.img"
    timeout --foreground 60 "$T/hello-server" "$T/hello.sock" "$T/hello.img" >"$T/hs.out" 2>&1 &
    hpid=$!
    pids+=("$hpid")
    wait_socket "$T/hello.sock"
    out1=$(timeout 30 "$T/hello-client" "$T/hello.sock" 2>&1)
    rc1=$?
    out2=$(timeout 30 "$T/hello-client" "$T/hello.sock" 2>&1)
    rc2=$?
    kill "$hpid" 2>/dev/null
    wait "$hpid" 2>/dev/null
    [ "$rc1" = 0 ] && [ "$rc2" = 0 ] && [ "$out1" = "hello, vhost-user-blk" ] && [ "$out2" = "$out1" ] &&
        [ "$(head -c 21 "$T/hello.img")" = "hello, vhost-user-blk" ] &&
        [ "$(grep -c 'session over: the peer closed' "$T/hs.out")" = 2 ]
    result $? "hello-client writes and reads back sector 0 through hello-server, twice in a row (\"$out1\")" "$T/hs.out"
fi

# hello-client against qemu-storage-daemon: a back-end vub did not write.
if ! command -v qemu-storage-daemon >/dev/null; then
    echo "skip - hello-client against qemu-storage-daemon (qemu-storage-daemon is not installed)"
elif [ -x "$T/hello-client" ]; then
    cp "$T/disk.img" "$T/qsd.img"
    timeout 60 qemu-storage-daemon \
        --blockdev driver=file,node-name=f0,filename="$T/qsd.img" \
        --export type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path="$T/qsd.sock",writable=on \
        >"$T/qsd.out" 2>&1 &
    qpid=$!
    pids+=("$qpid")
    wait_socket "$T/qsd.sock"
    out=$(timeout 30 "$T/hello-client" "$T/qsd.sock" 2>&1)
    rc=$?
    kill "$qpid" 2>/dev/null
    wait "$qpid" 2>/dev/null
    [ "$rc" = 0 ] && [ "$out" = "hello, vhost-user-blk" ] && [ "$(head -c 21 "$T/qsd.img")" = "hello, vhost-user-blk" ]
    result $? "hello-client writes and reads back sector 0 through qemu-storage-daemon (\"$out\")" "$T/qsd.out"
fi
[ "$fails" -eq 0 ]
