#!/bin/bash
# test-conform.sh: vub-conform against vub-serve (every case must pass; the
# read-only cases also against a read-only export), against
# qemu-storage-daemon (verdicts must match conformance/RESULTS.md, so a change
# in either shows), the restart of a back-end a case left broken, and a short
# seeded fuzz run against vub-serve.
# Builds nothing: build/vub-conform and build/vub-serve must exist.
set -u
cd "$(dirname "$0")/.."
CONFORM=build/vub-conform
SERVE=${VUB_SERVE:-build/vub-serve}
QSD=qemu-storage-daemon
RESULTS=conformance/RESULTS.md
status=0

if [ ! -x "$CONFORM" ] || [ ! -x "$SERVE" ]; then
    echo "skip - conform: build/vub-conform or build/vub-serve missing"
    exit 0
fi
TMP=$(mktemp -d /tmp/vub-test-conform-XXXXXX)
trap 'rm -rf "$TMP"' EXIT

make_image() {
    python3 - "$1" <<'EOF'
import sys
with open(sys.argv[1], 'wb') as f:
    for i in range(2048):
        f.write(bytes([(i * 7 + j) & 0xff for j in range(512)]))
EOF
}

# Every case of a run passed (n/a allowed, no fail, no warn): one line.
all_pass() { # LABEL TAP
    local total
    total=$(tail -1 "$2")
    if grep -qE '^[0-9]+ passed, 0 failed, 0 warned' "$2"; then
        echo "ok - $1: $(echo "$total" | cut -d" " -f1) cases pass ($total)"
    else
        echo "not ok - $1: $total"
        grep -E '^not ok|^#   |# warn' "$2" | sed 's/^/#   /'
        status=1
    fi
}

# 1. vub-serve: every case passes
make_image "$TMP/vub.img"
timeout 300 "$CONFORM" --spawn "$SERVE --socket {socket} --queues 2 $TMP/vub.img" \
    --report "$TMP/vub.md" > "$TMP/vub.tap" 2> "$TMP/vub.err"
all_pass "conform vub-serve" "$TMP/vub.tap"

grep '^# clause coverage' "$TMP/vub.tap"

# 1a. The same cases on each data path: the synchronous engine (the
# reference; the default above is io_uring where it works) and io_uring
# with O_DIRECT and a thread per queue.
for args in "--aio sync" "--aio io_uring --cache none --threads 2"; do
    timeout 300 "$CONFORM" --spawn "$SERVE $args --socket {socket} --queues 2 $TMP/vub.img" > "$TMP/engine.tap" 2>&1
    all_pass "conform vub-serve $args" "$TMP/engine.tap"
done

# 1b. vub-serve --read-only: the read-only cases, which are n/a against a
# writable export, must run (no n/a) and pass.
make_image "$TMP/ro.img"
sha_before=$(sha256sum < "$TMP/ro.img")
timeout 120 "$CONFORM" --spawn "$SERVE --socket {socket} --read-only $TMP/ro.img" --case BLK-RO \
    > "$TMP/ro.tap" 2> "$TMP/ro.err"
ro_total=$(tail -1 "$TMP/ro.tap")
if grep -qE '^[1-9][0-9]* passed, 0 failed, 0 warned, 0 n/a' "$TMP/ro.tap" &&
    [ "$(sha256sum < "$TMP/ro.img")" = "$sha_before" ]; then
    echo "ok - conform vub-serve --read-only: the read-only cases run and pass, the image is unchanged ($ro_total)"
else
    echo "not ok - conform vub-serve --read-only: $ro_total"
    grep -E '^not ok|^#   |# warn|# SKIP' "$TMP/ro.tap" | sed 's/^/#   /'
    status=1
fi

# 1c. the report's coverage table agrees with its case table, tag by tag
if python3 - "$TMP/vub.md" <<'EOF'
import collections, sys
cases, cover = collections.defaultdict(collections.Counter), {}
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("| `"):
        cases[cells[1]][cells[2]] += 1
    elif len(cells) == 7 and cells[1].isdigit():
        cover[cells[0]] = [int(c) for c in cells[1:6]] + [cells[6]]
assert cover and set(cover) == set(cases), "tags differ"
for tag, c in cases.items():
    want = [sum(c.values()), c["pass"], c["warn"], c["n/a"], c["fail"]]
    assert cover[tag][:5] == want, (tag, cover[tag], want)
    verdict = next(v for v in ("fail", "warn", "pass", "n/a") if c[v])
    assert cover[tag][5] == verdict, (tag, cover[tag][5], verdict)
EOF
then
    echo "ok - conform vub-serve: the report's per-tag coverage table agrees with every case ($(grep -c '^| [A-Z]' "$TMP/vub.md") tags)"
else
    echo "not ok - conform vub-serve: the report's per-tag coverage table agrees with every case"
    status=1
fi

# 2. qemu-storage-daemon: the same verdicts as recorded in RESULTS.md
# Cases whose verdict against QSD depends on timing, not on QSD's code: QSD
# completes requests asynchronously, so whether GET_VRING_BASE overtakes a
# completion varies from run to run (pass or warn). A ring message for a
# queue one past the last makes QSD abort in some runs and not in others,
# depending on whether the next connection comes first (fail or warn; index
# 0xffffffff, the "-max" cases, crashes it every time and is compared).
# They are shown, not compared; so is whether QSD is seen spinning on a kick
# fd that is always ready (fail) or not yet (warn), which depends on when
# its main loop polls it.
timing_cases='^(proto\.ring\.drain-before-base|robust\.qindex\.(set|get)-vring-[a-z]+|hostile\.fd\.kick-[a-z-]*) '
verdicts() { # report.md -> "case verdict" lines, sorted
    grep -E '^\| `' "$1" | awk -F'|' '{gsub(/[ `]/, "", $2); gsub(/ /, "", $4); print $2, $4}' |
        grep -vE "$timing_cases" | sort -u
}
# qsd_compare GEN BINARY: runs the cases against that qemu-storage-daemon and
# compares with its "every case" table in RESULTS.md.
qsd_compare() {
    local gen=$1 bin=$2 name="conform qemu-storage-daemon $1" version
    version=$("$bin" --version | sed -n 's/.*version \([0-9.]*\).*/\1/p;q')
    echo "# $name: $("$bin" --version | head -1)"
    if [ ! -f "$RESULTS" ]; then
        echo "skip - $name: $RESULTS missing (run bash conformance/results.sh)"
        return
    elif ! grep -q "qemu-storage-daemon version $version " "$RESULTS"; then
        echo "skip - $name: $version is not the version $RESULTS records"
        return
    fi
    make_image "$TMP/qsd$gen.img"
    timeout 300 "$CONFORM" --spawn "$bin --blockdev driver=file,node-name=f0,filename=$TMP/qsd$gen.img --blockdev driver=raw,node-name=d0,file=f0 --export type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path={socket},writable=on,num-queues=2" \
        --report "$TMP/qsd$gen.md" > "$TMP/qsd$gen.tap" 2> "$TMP/qsd$gen.err"
    grep '^#   restarted after' "$TMP/qsd$gen.tap"
    # the recorded verdicts: this version's "every case" table in RESULTS.md
    sed -n "/^## qemu-storage-daemon $gen: every case/,/^## /p" "$RESULTS" > "$TMP/recorded$gen.md"
    verdicts "$TMP/recorded$gen.md" > "$TMP/want$gen"
    verdicts "$TMP/qsd$gen.md" > "$TMP/got$gen"
    if [ ! -s "$TMP/want$gen" ]; then
        echo "skip - $name: no recorded verdicts in $RESULTS"
    elif grep -E '^\| `' "$TMP/qsd$gen.md" | awk -F'|' '{gsub(/[ `]/, "", $2); gsub(/ /, "", $4); print "#   timing-dependent, not compared:", $2, $4}' |
        grep -E "compared: ${timing_cases#^}"; diff -q "$TMP/want$gen" "$TMP/got$gen" > /dev/null; then
        echo "ok - $name: $(wc -l < "$TMP/got$gen") verdicts match $RESULTS ($(tail -1 "$TMP/qsd$gen.tap"))"
    else
        echo "not ok - $name: verdicts differ from $RESULTS (- recorded, + now)"
        diff "$TMP/want$gen" "$TMP/got$gen" | grep '^[<>]' | sed 's/^</#   -/; s/^>/#   +/'
        status=1
    fi
}

if command -v "$QSD" > /dev/null; then
    qsd_compare 7.2 "$QSD"
else
    echo "skip - conform qemu-storage-daemon 7.2: $QSD not installed"
fi
QSD10=build/guest-cache/qemu10/root/usr/bin/qemu-storage-daemon
if out=$(bash tests/backports.sh 2>&1) && [ -x "$QSD10" ]; then
    qsd_compare 10.0 "$QSD10"
else
    echo "skip - conform qemu-storage-daemon 10.0: bookworm-backports peers not available: $(echo "$out" | tail -n 1)"
fi

# 3. a back-end left alive but broken by one case is restarted before the next.
# The wrapper's first vub-serve has its image scribbled on without pause
# from before it starts, so a disk check after one of the first cases fails
# (and would after every later case); the restarted one is left alone. Only
# that case may fail, and the run must name it.
cat > "$TMP/breaks.sh" <<'WRAPPER'
#!/bin/bash
sock=$1 img=$2 flag=$3 serve=$4
[ -e "$flag" ] && exec "$serve" --socket "$sock" "$img"
touch "$flag"
python3 -c 'import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, os.urandom(4096), 4096)
open(sys.argv[2], "w").close()
while True:
    os.pwrite(fd, os.urandom(4096), 4096)
    time.sleep(0.001)' "$img" "$flag.ready" &
scribbler=$!
for _ in $(seq 200); do [ -e "$flag.ready" ] && break; sleep 0.05; done
"$serve" --socket "$sock" "$img" &
pid=$!
trap 'kill $scribbler $pid; wait' TERM
wait $pid
WRAPPER
make_image "$TMP/breaks.img"
timeout 120 "$CONFORM" --spawn "bash $TMP/breaks.sh {socket} $TMP/breaks.img $TMP/breaks.flag $SERVE" \
    --case 'robust.request.*' > "$TMP/breaks.tap" 2> "$TMP/breaks.err"
broke=$(sed -n 's/^# alive but broken (disk check failed), restarted after: \(robust\.request\.[a-z0-9]*\)$/\1/p' "$TMP/breaks.tap")
if grep -qE '^[0-9]+ passed, 1 failed' "$TMP/breaks.tap" && [ -n "$broke" ] &&
    grep -q "^#   $broke: .*left the back-end broken: restarted" "$TMP/breaks.tap"; then
    echo "ok - conform: a back-end left alive but broken is restarted before the next case, naming it ($broke; $(tail -1 "$TMP/breaks.tap"))"
else
    echo "not ok - conform: a back-end left alive but broken was not restarted, or not named: $(tail -1 "$TMP/breaks.tap")"
    grep -E '^not ok|^#' "$TMP/breaks.tap" | sed 's/^/#   /'
    status=1
fi

# 4. a short seeded fuzz run against vub-serve
make_image "$TMP/fuzz.img"
timeout 120 "$CONFORM" --spawn "$SERVE --socket {socket} --queues 2 $TMP/fuzz.img" --fuzz 40 --seed 1 \
    > "$TMP/fuzz.tap" 2> "$TMP/fuzz.err"
if grep -qE '^[0-9]+ passed, 0 failed' "$TMP/fuzz.tap"; then
    echo "ok - conform fuzz vub-serve: $(tail -1 "$TMP/fuzz.tap") (--fuzz 40 --seed 1)"
else
    echo "not ok - conform fuzz vub-serve: $(tail -1 "$TMP/fuzz.tap")"
    grep -A1 '^not ok' "$TMP/fuzz.tap" | sed 's/^/#   /'
    status=1
fi
exit $status
