#!/bin/bash
# results.sh: runs vub-conform against vub-serve and qemu-storage-daemon and
# writes conformance/RESULTS.md (the verdict of every case for both).
#
#   bash conformance/results.sh        (after `make` and the vub-conform build)
#
# Each back-end gets a fresh 1 MiB raw image with a known pattern and two
# queues. vub-conform starts it (--spawn) and restarts it when a case kills it.
set -u
cd "$(dirname "$0")/.."
CONFORM=${CONFORM:-build/vub-conform}
SERVE=${SERVE:-build/vub-serve}
QSD=${QSD:-qemu-storage-daemon}
OUT=${OUT:-conformance/RESULTS.md}
TMP=$(mktemp -d /tmp/vub-results-XXXXXX)
trap 'rm -rf "$TMP"' EXIT

for f in "$CONFORM" "$SERVE"; do
    [ -x "$f" ] || { echo "results.sh: $f missing (build it first)" >&2; exit 2; }
done

# A raw image whose sector i holds bytes (7i + j) mod 256.
make_image() {
    python3 - "$1" <<'EOF'
import sys
with open(sys.argv[1], 'wb') as f:
    for i in range(2048):
        f.write(bytes([(i * 7 + j) & 0xff for j in range(512)]))
EOF
}

run() { # name command-template
    make_image "$TMP/$1.img"
    local cmd=${2//IMG/$TMP/$1.img}
    "$CONFORM" --spawn "$cmd" --report "$TMP/$1.md" > "$TMP/$1.tap" 2> "$TMP/$1.err"
    tail -1 "$TMP/$1.tap"
}

VUB_CMD="$SERVE --socket {socket} --queues 2 IMG"
qsd_cmd() { # QSD binary -> its command template
    echo "$1 --blockdev driver=file,node-name=f0,filename=IMG --blockdev driver=raw,node-name=d0,file=f0 --export type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path={socket},writable=on,num-queues=2"
}

vub_total=$(run vub "$VUB_CMD")
echo "vub-serve: $vub_total"
# Two generations of qemu-storage-daemon: Debian 12's (7.2) and 10.0 from
# bookworm-backports, unpacked beside it by tests/backports.sh.
qsds=() # "label binary" pairs that ran
if command -v "$QSD" > /dev/null; then
    qsds+=("7.2 $QSD")
fi
QSD10=${QSD10:-build/guest-cache/qemu10/root/usr/bin/qemu-storage-daemon}
if bash tests/backports.sh >/dev/null 2>&1 && [ -x "$QSD10" ]; then
    qsds+=("10.0 $QSD10")
else
    echo "results.sh: qemu-storage-daemon 10.0 not available (tests/backports.sh failed)" >&2
fi
declare -A qsd_total qsd_version
for q in "${qsds[@]}"; do
    gen=${q%% *} bin=${q#* }
    qsd_total[$gen]=$(run "qsd$gen" "$(qsd_cmd "$bin")")
    qsd_version[$gen]=$("$bin" --version | head -1)
    echo "qemu-storage-daemon $gen: ${qsd_total[$gen]}"
done

{
    echo "# vub-conform results"
    echo
    echo "Produced by \`bash conformance/results.sh\` on $(date -u +%Y-%m-%d) ($(uname -sr))."
    echo "Each back-end exports a fresh 1 MiB raw image with two queues; vub-conform starts it with"
    echo "\`--spawn\` and restarts it whenever a case kills it (the cases are named after each table)."
    echo "Verdicts: pass; fail (a MUST broken, a crash,"
    echo "a hang, lost data); warn (a SHOULD, or a robustness expectation the specs do not state); n/a (the"
    echo "back-end does not offer the feature). Tags are listed in \`conformance/README.md\`."
    echo "qemu-storage-daemon 10.0 comes from Debian's bookworm-backports (\`tests/backports.sh\`)."
    echo
    echo "| back-end | command | result |"
    echo "|---|---|---|"
    echo "| vub-serve | \`$VUB_CMD\` | $vub_total |"
    for q in "${qsds[@]}"; do
        gen=${q%% *}
        echo "| ${qsd_version[$gen]} | \`$(qsd_cmd qemu-storage-daemon)\` | ${qsd_total[$gen]} |"
    done
    echo
    for q in "${qsds[@]}"; do
        gen=${q%% *}
        echo "## qemu-storage-daemon $gen: what did not pass"
        echo
        echo "| case | clause tag | verdict | what was seen |"
        echo "|---|---|---|---|"
        grep -E '\| (fail|warn) \|' "$TMP/qsd$gen.md"
        echo
    done
    # The kill test's table, when tests/guest/fault-matrix.sh has made it.
    if [ -f conformance/kill-test.md ]; then
        cat conformance/kill-test.md
        echo
    fi
    echo "## vub-serve: every case"
    echo
    cat "$TMP/vub.md"
    for q in "${qsds[@]}"; do
        gen=${q%% *}
        echo
        echo "## qemu-storage-daemon $gen: every case"
        echo
        cat "$TMP/qsd$gen.md"
    done
} > "$OUT"
echo "wrote $OUT"
