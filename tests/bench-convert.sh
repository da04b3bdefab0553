#!/usr/bin/env bash
# bench-convert.sh - vub-img convert against qemu-img convert, side by side.
#
# A benchmark, not a test: it prints timings and writes nothing to the
# repository. The input is a 1 GiB disk of mixed content (random bytes,
# text-like data, a zero stretch, a hole), written as a plain qcow2 and as
# two compressed ones (qemu-img convert -c, 64 KiB clusters, zlib and
# zstd). Each
# converter turns each image into a raw file RUNS times; the output of every
# run is checked against the first, so a fast wrong answer cannot win.
#
#   tests/bench-convert.sh [SIZE_MIB]      (default 1024; RUNS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${RUNS:-3}
vub_img=build/vub-img
[ -x "$vub_img" ] || { echo "build/vub-img missing: run make" >&2; exit 2; }
dir=$(mktemp -d /tmp/vub-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT

# The disk: per 64 MiB stripe, 24 MiB random, 24 MiB of repeated text, 8
# MiB of zeros written out, 8 MiB left as a hole.
make_disk() {
    local raw=$dir/disk.raw stripe
    truncate -s "${size_mib}M" "$raw"
    python3 - "$raw" "$size_mib" <<'PY'
import os, sys
path, mib = sys.argv[1], int(sys.argv[2])
text = (b"vub reads qcow2 and serves it over vhost-user; " * 64)[:4096]
with open(path, "r+b") as f:
    for stripe in range(0, mib, 64):
        f.seek(stripe << 20)
        f.write(os.urandom(24 << 20))
        f.write(text * ((24 << 20) // len(text)))
        f.write(bytes(8 << 20))
PY
    qemu-img convert -f raw -O qcow2 "$raw" "$dir/plain.qcow2"
    qemu-img convert -c -f raw -O qcow2 "$raw" "$dir/compressed.qcow2"
    qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd "$raw" "$dir/zstd.qcow2"
    cmp_ref=$raw
}

# seconds CMD...: wall-clock seconds of one run, to the millisecond.
seconds() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l | xargs printf '%.3f'
}

median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

bench() { # LABEL IMAGE
    local label=$1 img=$2 q=() v=() i
    for ((i = 0; i < runs; i++)); do
        rm -f "$dir/q.raw" "$dir/v.raw"
        q+=("$(seconds qemu-img convert -O raw "$img" "$dir/q.raw")")
        v+=("$(seconds "$vub_img" convert "$img" "$dir/v.raw")")
        cmp -s "$dir/q.raw" "$cmp_ref" && cmp -s "$dir/v.raw" "$cmp_ref" ||
            { echo "$label: output differs from the source disk" >&2; exit 1; }
    done
    printf '| %s | %s MiB | %s s | %s s |\n' "$label" "$(($(stat -c %s "$img") >> 20))" \
        "$(echo "${q[*]}" | median)" "$(echo "${v[*]}" | median)"
}

make_disk
echo "Load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, Linux $(uname -r)"
echo "qemu-img: $(qemu-img --version | head -1); vub-img: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(cc --version | head -1)"
echo "Disk: ${size_mib} MiB (per 64 MiB: 24 random, 24 text, 8 zeros, 8 hole); median of $runs runs, output checked each run"
echo
echo "| image | file size | qemu-img convert -O raw | vub-img convert |"
echo "|---|---|---|---|"
bench "plain qcow2" "$dir/plain.qcow2"
bench "compressed qcow2 (zlib)" "$dir/compressed.qcow2"
bench "compressed qcow2 (zstd)" "$dir/zstd.qcow2"
