#!/usr/bin/env bash
# test-usage.sh - every message tells the user what to do. For each program,
# bad arguments give exactly one line on stderr naming the problem, and exit
# status 2; the other messages a first hour meets name their cause.
#
#   tests/test-usage.sh     (VUB_BUILD=dir picks the programs; default build/)
set -u
cd "$(dirname "$0")/.."
B=${VUB_BUILD:-$PWD/build}

. tests/lib-tap.sh usage
for p in vub-serve vub-io vub-img vub-trace vub-bench vub-conform; do
    [ -x "$B/$p" ] || { fail "$B/$p is built (run make)"; exit 1; }
done

# says STATUS PATTERN PROGRAM ARGS...: exit STATUS, one line on stderr that
# matches PATTERN, nothing on stdout.
says() {
    local want=$1 pat=$2 prog=$3; shift 3
    timeout -k 1 20 "$B/$prog" "$@" </dev/null >"$dir/out" 2>"$dir/err"
    local rc=$? lines
    lines=$(wc -l <"$dir/err")
    if [ "$rc" = "$want" ] && [ "$lines" = 1 ] && grep -q -- "$pat" "$dir/err" && [ ! -s "$dir/out" ]; then
        ok "$prog $*: exit $rc, \"$(cat "$dir/err")\""
    else
        fail "$prog $*: want exit $want and one line matching '$pat'; got exit $rc, $lines lines: $(head -c 400 "$dir/err")"
    fi
}
usage() { says 2 "$@"; }

truncate -s 1M "$dir/disk.raw"
: >"$dir/empty.raw"
S=$dir/vub.sock

# ---- vub-serve ----
usage "--socket needs a value" vub-serve "$dir/disk.raw" --socket
usage "unknown option '--bogus'" vub-serve --bogus "$dir/disk.raw"
usage "no IMAGE given" vub-serve
usage "one IMAGE only" vub-serve "$dir/disk.raw" "$dir/disk.raw"
usage "queues wants 1..64, not '0'" vub-serve --queues 0 "$dir/disk.raw"
usage "queues wants 1..64, not '9999'" vub-serve --queues 9999 "$dir/disk.raw"
usage "serial is at most 20 bytes" vub-serve --serial 123456789012345678901 "$dir/disk.raw"
usage "format wants raw or qcow2, not 'vmdk'" vub-serve --format vmdk "$dir/disk.raw"
usage "force-share needs read-only" vub-serve --force-share "$dir/disk.raw"
usage "aio wants sync or io_uring, not 'posix'" vub-serve --aio posix "$dir/disk.raw"
usage "cache wants none or writeback, not 'off'" vub-serve --cache off "$dir/disk.raw"
usage "threads wants 1..64, not '0'" vub-serve --threads 0 "$dir/disk.raw"
says 1 "holds no whole 512-byte sector: nothing to serve" vub-serve --socket "$S" "$dir/empty.raw"
says 1 "snapshot needs a qcow2 image" vub-serve --socket "$S" --snapshot s1 "$dir/disk.raw"
check "vub-serve left no socket behind after refusing" test ! -e "$S"
if command -v qemu-img >/dev/null; then
    # A qcow2 whose backing format extension (0xe2792aca) is renamed to one
    # nobody knows: its backing file's format is then not recorded.
    (cd "$dir" && qemu-img create -q -f qcow2 -b disk.raw -F raw nofmt.qcow2 1M)
    python3 -c 'import sys; p=sys.argv[1]; b=open(p,"rb").read(); i=b.index(bytes.fromhex("e2792aca"), 0, 4096); open(p,"r+b").write(b[:i]+bytes.fromhex("7fffffff")+b[i+4:])' "$dir/nofmt.qcow2"
    says 1 "has no recorded format.*here: --backing-format raw|qcow2" vub-serve --socket "$S" "$dir/nofmt.qcow2"
    # A qcow2 image cut short: its L2 table lies past the end of the file.
    qemu-img create -q -f qcow2 "$dir/cut.qcow2" 4M
    qemu-io -f qcow2 -c 'write -P 1 0 64k' "$dir/cut.qcow2" >/dev/null
    l2=$(python3 -c 'import struct,sys; f=open(sys.argv[1],"rb"); h=f.read(48); f.seek(struct.unpack(">Q",h[40:48])[0]); print(struct.unpack(">Q",f.read(8))[0] & 0xfffffffffe00)' "$dir/cut.qcow2")
    truncate -s "$l2" "$dir/cut.qcow2"
    says 1 "puts its L2 table at byte $l2, past the end of the $l2-byte file (is the image truncated?)" \
        vub-img convert "$dir/cut.qcow2" "$dir/cut.raw"
else
    skip "qcow2 messages (qemu-img not installed)"
fi

# ---- vub-io ----
usage "no --socket PATH given" vub-io info
usage "no command given" vub-io --socket "$S"
usage "unknown command 'bogus'" vub-io --socket "$S" bogus
usage "wrong operands: the command is 'read OFF LEN'" vub-io --socket "$S" read 0
usage "unknown option '--bogus'" vub-io --bogus --socket "$S" info
usage "queues wants 1..64, not '9999'" vub-io --socket "$S" --queues 9999 info
usage "queues wants 1..64, not '0'" vub-io --socket "$S" --queues 0 info
usage "bad size '2x'" vub-io --socket "$S" read 0 2x
usage "--timeout needs a value" vub-io --socket "$S" --timeout
usage "--ring wants auto, split or packed" vub-io --socket "$S" --ring circular info
check "vub-io --version says its version" bash -c '[[ $("$1" --version) == "vub-io "* ]]' _ "$B/vub-io"
check "vub-io's synopsis names --timeout" bash -c '"$1" --help | head -n1 | grep -q -- --timeout' _ "$B/vub-io"
"$B/vub-serve" --socket "$S" "$dir/disk.raw" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -S "$S" ] && break; sleep 0.1; done
usage "read 0 2147483648: past the end of the disk (capacity 1048576 bytes)" vub-io --socket "$S" read 0 2G
usage "discard 0 2147483648: past the end of the disk (capacity 1048576 bytes)" vub-io --socket "$S" discard 0 2G
kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null
"$B/vub-serve" --read-only --socket "$S" "$dir/disk.raw" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -S "$S" ] && break; sleep 0.1; done
head -c 512 /dev/zero >"$dir/sector"
if "$B/vub-io" --socket "$S" write 0 <"$dir/sector" 2>"$dir/err"; then
    fail "vub-io write to a read-only export fails"
else
    check "vub-io write to a read-only export says read-only: $(cat "$dir/err")" grep -q "the disk is read-only" "$dir/err"
fi
kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null

# ---- vub-bench ----
usage "give either --socket PATH or --compare PATH PATH" vub-bench
usage "unknown option '--bogus'" vub-bench --bogus
usage "--rw: unknown value 'sideways'" vub-bench --socket "$S" --rw sideways
usage "--iodepth wants 1..1024, not '0'" vub-bench --socket "$S" --iodepth 0
usage "--runtime: bad time '1h'" vub-bench --socket "$S" --runtime 1h
usage "--compare wants two or more sockets" vub-bench --compare "$S"
usage "--wait needs a value" vub-bench --socket "$S" --wait
says 1 "vub-bench: $dir/none.sock: " vub-bench --socket "$dir/none.sock"

# ---- vub-trace ----
usage "wants LISTEN and BACKEND sockets" vub-trace
usage "unknown option --bogus" vub-trace --bogus a b
usage "--log needs a FILE" vub-trace a b --log
usage "one LISTEN and one BACKEND socket only" vub-trace a b c
says 1 "vub-trace: $dir/no/such/dir/x.sock:" vub-trace "$dir/no/such/dir/x.sock" "$dir/b.sock"

# ---- vub-img ----
usage "no command" vub-img
usage "unknown command (info or convert): show" vub-img show "$dir/disk.raw"
usage "info takes one IMAGE" vub-img info
usage "convert takes IMAGE OUT.raw" vub-img convert "$dir/disk.raw"
usage "unknown option --bogus" vub-img info --bogus "$dir/disk.raw"
usage "--snapshot needs a value" vub-img info "$dir/disk.raw" --snapshot
usage "--format wants raw or qcow2, not 'vmdk'" vub-img info --format vmdk "$dir/disk.raw"
usage "--output wants human or json, not 'xml'" vub-img info --output=xml "$dir/disk.raw"
says 1 "snapshot needs a qcow2 image" vub-img info --snapshot s1 "$dir/disk.raw"

# ---- vub-conform ----
usage "give exactly one of --socket and --spawn" vub-conform
usage "--socket needs a value" vub-conform --socket
usage "unexpected argument '--bogus'" vub-conform --bogus
usage "--fuzz wants a number, not 'many'" vub-conform --socket "$S" --fuzz many
usage "no case matches 'nomatch\*' (--list shows them)" vub-conform --socket "$S" --case 'nomatch*'
says 1 "cannot connect to $dir/none.sock: No such file or directory" vub-conform --socket "$dir/none.sock" --case 'blk.*'
says 1 "did not start (back-end exited with status 127); it said: .*no-such-backend.*not found" \
    vub-conform --spawn 'no-such-backend --socket {socket}'
says 1 "did not start (back-end exited with status 1); it said: vub-serve: .*empty.raw holds no whole 512-byte sector" \
    vub-conform --spawn "$B/vub-serve --socket {socket} $dir/empty.raw"

# README's qemu-storage-daemon line for vub-conform, taken as printed, works.
if command -v qemu-storage-daemon >/dev/null; then
    awk '/^build\/vub-conform --spawn .qemu-storage-daemon/ { on = 1 } on { print } on && /--report report.md/ { exit }' \
        README.md >"$dir/readme-conform.sh"
    check "README.md has the vub-conform line for qemu-storage-daemon" grep -q 'addr.path={socket}' "$dir/readme-conform.sh"
    (cd "$dir" && truncate -s 4M scratch.img &&
        B=$B sed "s|^build/|$B/|; s|--report report.md|--report report.md --case 'blk.flush*'|" readme-conform.sh |
        timeout -k 5 120 bash) >"$dir/readme-conform.out" 2>&1
    check "README's vub-conform line runs against qemu-storage-daemon: $(tail -n1 "$dir/readme-conform.out")" \
        grep -qE '^[1-9][0-9]* passed, 0 failed' "$dir/readme-conform.out"
else
    skip "README's qemu-storage-daemon line (qemu-storage-daemon not installed)"
fi

[ "$failures" -eq 0 ]
