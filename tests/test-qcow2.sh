#!/usr/bin/env bash
# tests/test-qcow2.sh - the qcow2 reader against QEMU's.
#
# Builds a corpus of images with qemu-img/qemu-io in a temporary directory and
# checks that `vub-img convert` writes the same disk as `qemu-img convert -O
# raw` for each, then feeds it broken images (named defects in the spirit of
# QEMU's iotest 080, and a seeded random mutation loop) and checks that each
# one is refused with a one-line message or read, never crashes. vub-img is
# built with AddressSanitizer and UndefinedBehaviorSanitizer for all of this;
# a plain -O2 build times the 1 TiB sparse copy.
#
# Prints "ok - ...", "not ok - ..." or "skip - ... (reason)" per case; exits
# non-zero if any case failed. Environment: CC (default cc), FUZZ_SEED
# (default 1), FUZZ_COUNT (images per fuzz base, default 60), KEEP=1 keeps
# the temporary directory.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
T=$(mktemp -d "${TMPDIR:-/tmp}/vub-qcow2.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "# keeping $T"; else trap 'rm -rf "$T"' EXIT; fi
CC=${CC:-cc}
SRC=.
TOOL=(python3 "$ROOT/tests/qcow2-tool.py")
FUZZ_SEED=${FUZZ_SEED:-1}
FUZZ_COUNT=${FUZZ_COUNT:-60}
export ASAN_OPTIONS=exitcode=86:detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=87

n_ok=0 n_fail=0 n_skip=0
ok() { echo "ok - $*"; n_ok=$((n_ok + 1)); }
not_ok() { echo "not ok - $*"; n_fail=$((n_fail + 1)); }
skip() { echo "skip - $*"; n_skip=$((n_skip + 1)); }

# qemu-img is the oracle and qemu-io writes the corpus: without them nothing
# here can be judged, and a suite that quietly shrank to nothing would pass.
for tool in qemu-img qemu-io; do
    if ! command -v $tool >/dev/null; then
        echo "not ok - qcow2 corpus: $tool is missing, so the qcow2 reader has no oracle" \
            "(install qemu-utils; tests/deps.sh does it as root)"
        exit 1
    fi
done

# ---- builds ---------------------------------------------------------------------
CFLAGS=(-std=c11 -Wall -Wextra -Werror -I"$SRC")
$CC "${CFLAGS[@]}" -O2 "$SRC/vub.c" examples/vub-img.c -o "$T/vub-img" || exit 1
$CC "${CFLAGS[@]}" -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
    "$SRC/vub.c" examples/vub-img.c -o "$T/vub-img-san" || exit 1
$CC "${CFLAGS[@]}" -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
    "$SRC/vub.c" tests/qcow2-readv.c -o "$T/qcow2-readv" || exit 1
VUB=$T/vub-img-san

# Runs the sanitized vub-img; leaves $rc, and stderr in $T/err.
vub() {
    timeout 120 "$VUB" "$@" >"$T/out" 2>"$T/err"
    rc=$?
}

# True if the last run crashed or a sanitizer reported (we never want that).
crashed() {
    [ "$rc" -ge 80 ] || grep -q -e 'Sanitizer' -e 'runtime error' "$T/err"
}

first_err() { head -c 300 "$T/err" | head -1; }

# A refusal is exit status 1 and exactly one line on stderr.
one_line_refusal() {
    [ "$rc" = 1 ] && [ "$(wc -l <"$T/err")" = 1 ]
}

# same_as_qemu SENTENCE IMAGE [vub-img options] [-- qemu-img convert options]
# Converts IMAGE with both tools and compares the raw disks. With
# qemu_may_be_longer=1, qemu-img's disk may go on past vub's, with zeros.
same_as_qemu() {
    local what=$1 img=$2
    shift 2
    local vopts=() qopts=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do vopts+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    qopts=("$@")
    rm -f "$T/vub.raw" "$T/qemu.raw"
    if ! qemu-img convert "${qopts[@]}" -O raw "$img" "$T/qemu.raw" 2>"$T/qerr"; then
        not_ok "$what (qemu-img convert failed: $(head -1 "$T/qerr"))"
        return
    fi
    vub convert "${vopts[@]}" "$img" "$T/vub.raw"
    if crashed; then
        not_ok "$what (crashed: $(grep -m1 -e Sanitizer -e 'runtime error' "$T/err"))"
    elif [ "$rc" != 0 ]; then
        not_ok "$what (vub-img: $(first_err))"
    elif "${TOOL[@]}" sparse-cmp "$T/vub.raw" "$T/qemu.raw" ${qemu_may_be_longer:+--b-may-be-longer} >"$T/cmp"; then
        ok "$what"
    else
        not_ok "$what ($(cat "$T/cmp"))"
    fi
}

# refused SENTENCE PATTERN IMAGE [vub-img options]: must fail with one line
# matching PATTERN (grep -E, case-insensitive).
refused() {
    local what=$1 pattern=$2 img=$3
    shift 3
    vub convert "$@" "$img" "$T/vub.raw"
    if crashed; then
        not_ok "$what (crashed: $(grep -m1 -e Sanitizer -e 'runtime error' "$T/err"))"
    elif ! one_line_refusal; then
        not_ok "$what (expected a one-line refusal, got status $rc: $(first_err))"
    elif ! grep -qiE -- "$pattern" "$T/err"; then
        not_ok "$what (message does not match /$pattern/: $(first_err))"
    else
        ok "$what"
    fi
}

# survives SENTENCE IMAGE [vub-img options]: info and convert either succeed
# or refuse with one line; never crash. Sets $outcome to "read" or "refused".
survives() {
    local what=$1 img=$2
    shift 2
    outcome=read
    for cmd in info convert; do
        if [ $cmd = info ]; then vub info "$@" "$img"; else vub convert "$@" "$img" "$T/vub.raw"; fi
        if crashed; then
            not_ok "$what: $cmd crashed ($(grep -m1 -e Sanitizer -e 'runtime error' -e . "$T/err"))"
            outcome=crashed
            return 1
        fi
        if [ "$rc" != 0 ]; then
            if ! one_line_refusal; then
                not_ok "$what: $cmd failed without a one-line message (status $rc)"
                outcome=crashed
                return 1
            fi
            outcome=refused
        fi
    done
    return 0
}

# random_reads SENTENCE IMAGE [--allow-data-file]: 300 reads at random
# offsets into random iovec lists, against qemu-img's raw conversion.
random_reads() {
    local what=$1 img=$2
    shift 2
    qemu-img convert -O raw "$img" "$T/ref.raw" &&
        "$T/qcow2-readv" "$img" "$T/ref.raw" "$FUZZ_SEED" 300 "$@" 2>"$T/err"
    rc=$?
    if [ $rc = 0 ]; then ok "$what"; else not_ok "$what ($(first_err))"; fi
}

cd "$T"
"${TOOL[@]}" pattern data.bin $((8 << 20)) 7

# qio [-f FORMAT] IMAGE COMMAND...: qemu-io commands on an image (qcow2 by
# default). A command that fails is a failed test, not a smaller corpus.
qio() {
    local fmt=qcow2
    if [ "$1" = -f ]; then fmt=$2; shift 2; fi
    local img=$1
    shift
    local args=()
    for c in "$@"; do args+=(-c "$c"); done
    if ! qemu-io -f "$fmt" "${args[@]}" "$img" >"$T/qio" 2>&1; then
        not_ok "qemu-io on $img: $(grep -m1 -iE 'fail|error|no such|.' "$T/qio")"
        return 1
    fi
}

# Writes that exercise a mapping: aligned and unaligned, small and large,
# across cluster and L2-table boundaries, then zeroed and overwritten parts.
scribble() {
    local img=$1 size=$2
    qio "$img" \
        "write -s data.bin 0 64k" \
        "write -P 0x5a 1000 3333" \
        "write -s data.bin $((size / 3)) 300k" \
        "write -P 0x11 $((size / 2 + 512)) 512" \
        "write -P 0x22 $((size - 4096)) 4096" \
        "write -z $((size / 3 + 4096)) 8k" \
        "write -P 0x33 $((size / 3 + 100000)) 777"
}

echo "# corpus: every image must read the same as qemu-img convert -O raw"

# ---- cluster sizes and versions ---------------------------------------------------
# [QCOW2-HDR] [QCOW2-L1-ENTRY] [QCOW2-L2-ENTRY] [QCOW2-L2-ZERO] [QCOW2-EOF-ZEROS] [QCOW2-SIZE]
# [QCOW2-READ-DATA]
for cs in 512 1024 4096 65536 2M; do
    for compat in 0.10 1.1; do
        img=cs-$cs-$compat.qcow2
        qemu-img create -q -f qcow2 -o cluster_size=$cs,compat=$compat $img 6M
        scribble $img $((6 << 20))
        same_as_qemu "cluster size $cs, compat=$compat, scattered and unaligned writes" $img
    done
done

# ---- refcount widths ----------------------------------------------------------------
# [QCOW2-REFCOUNT-BOUNDS]
for bits in 1 2 4 8 16 32 64; do
    img=rc-$bits.qcow2
    qemu-img create -q -f qcow2 -o refcount_bits=$bits $img 4M
    scribble $img $((4 << 20))
    same_as_qemu "refcount_bits=$bits" $img
done

# ---- preallocation --------------------------------------------------------------------
for prealloc in off metadata falloc full; do
    for compat in 0.10 1.1; do
        img=pre-$prealloc-$compat.qcow2
        if ! qemu-img create -q -f qcow2 -o preallocation=$prealloc,compat=$compat $img 3M 2>/dev/null; then
            skip "preallocation=$prealloc compat=$compat (qemu-img cannot create it here)"
            continue
        fi
        scribble $img $((3 << 20))
        same_as_qemu "preallocation=$prealloc, compat=$compat" $img
    done
done

# ---- compressed clusters ----------------------------------------------------------------
# [QCOW2-COMPRESSED] [QCOW2-COMPRESSED-ENTRY] [QCOW2-EOF-ZEROS]
for cs in 512 4096 65536 2M; do
    qemu-img convert -q -f raw -O qcow2 -c -o cluster_size=$cs data.bin cz-$cs.qcow2
    same_as_qemu "qemu-img convert -c, cluster size $cs (deflate of text, noise, zeros)" cz-$cs.qcow2
done
img=cz-mixed.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4096 $img 4M
qio $img "write -c -s data.bin 0 64k" "write -s data.bin 64k 64k" "write -c -P 0x77 128k 4k" \
    "write -P 0x78 8192 100" "write -c -s data.bin 1M 12k" "write -z 1M 4k" "write -c -P 0 200k 4k"
same_as_qemu "compressed clusters mixed with plain, partly overwritten and zeroed ones" $img
img=cz-v2.qcow2
qemu-img convert -q -f raw -O qcow2 -c -o compat=0.10 data.bin $img
same_as_qemu "compressed clusters in a version 2 image" $img
img=cz-tail.qcow2
qemu-img create -q -f qcow2 -o cluster_size=65536 $img 1M
qio $img "write -c -s data.bin 0 64k" "write -c -s data.bin 64k 64k"
same_as_qemu "compressed cluster at the end of the file, last sector partial" $img

# ---- zstd -----------------------------------------------------------------------------------
# [QCOW2-COMPRESSION-TYPE] [QCOW2-ZSTD] [QCOW2-COMPRESSED] [ZSTD-QEMU]
if qemu-img create -q -f qcow2 -o compression_type=zstd zstd-probe.qcow2 1M 2>/dev/null; then
    have_zstd=1
    # Four kinds of data, 4 MiB each: noise (clusters qemu-img stores
    # uncompressed, or zstd raw blocks), text, zeros, and the mixed pattern.
    python3 - <<'PY'
import random
rng = random.Random(15)
open("z-random.bin", "wb").write(rng.randbytes(4 << 20))
words = b"zstd frame block literal sequence offset window cluster qcow2 guest disk".split()
text = bytearray()
while len(text) < 4 << 20:
    text += b" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + b".\n"
open("z-text.bin", "wb").write(text[:4 << 20])
open("z-zero.bin", "wb").write(bytes(4 << 20))
PY
    head -c $((4 << 20)) data.bin >z-mixed.bin
    for cs in 4096 16384 65536 512k 2M; do
        for kind in random text zero mixed; do
            img=z-$cs-$kind.qcow2
            qemu-img convert -q -f raw -O qcow2 -c -o compression_type=zstd,cluster_size=$cs z-$kind.bin $img
            same_as_qemu "zstd, cluster size $cs, $kind data: qemu-img convert -c reads byte-equal" $img
        done
    done
    # Compressed clusters whose bytes cross a host cluster boundary.
    stats=$("${TOOL[@]}" compressed-stats z-4096-mixed.qcow2)
    straddle=$(echo "$stats" | awk '{print $3}')
    if [ "${straddle:-0}" -gt 0 ]; then
        ok "zstd, 4 KiB clusters: $stats host cluster boundaries, and read byte-equal (above)"
    else
        not_ok "zstd, 4 KiB clusters: no compressed cluster crosses a host cluster ($stats)"
    fi
    vub info z-65536-text.qcow2
    if [ "$rc" = 0 ] && grep -q '^compression: zstd' "$T/out"; then
        ok "vub-img info names the compression: zstd"
    else
        not_ok "vub-img info names the compression ($(grep compression "$T/out"))"
    fi
    img=z-mixed-writes.qcow2
    qemu-img create -q -f qcow2 -o compression_type=zstd,cluster_size=4096 $img 4M
    qio $img "write -c -s data.bin 0 64k" "write -s data.bin 64k 64k" "write -c -P 0x77 128k 4k" \
        "write -P 0x78 8192 100" "write -c -s data.bin 1M 12k" "write -z 1M 4k" "write -c -P 0 200k 4k"
    same_as_qemu "zstd clusters mixed with plain, partly overwritten and zeroed ones" $img
    for cs in 16384 65536 2M; do
        img=z-extl2-$cs.qcow2
        qemu-img create -q -f qcow2 -o extended_l2=on,compression_type=zstd,cluster_size=$cs $img 8M
        sc=$(( $(numfmt --from=iec $cs) / 32 ))
        qio $img "write -c -s data.bin 0 $cs" "write -P 0x42 $((3 * sc)) $((2 * sc))" \
            "write -c -s data.bin 2M $((2 * $(numfmt --from=iec $cs)))" "write -z $((2097152 + sc)) $sc" \
            "write -c -P 0x5a 6M $cs"
        same_as_qemu "zstd with extended L2, cluster size $cs: compressed, partial subclusters, zeros" $img
    done
    # Chains that mix the two compression types, each layer compressed.
    qemu-img convert -q -f raw -O qcow2 -c -o compression_type=zstd,cluster_size=65536 z-mixed.bin zc-base.qcow2
    qemu-img create -q -f qcow2 -b zc-base.qcow2 -F qcow2 zc-mid.qcow2 4M
    qio zc-mid.qcow2 "write -c -P 0x31 64k 128k" "write -z 512k 64k" "write -c -s data.bin 1M 256k"
    qemu-img create -q -f qcow2 -o compression_type=zstd -b zc-mid.qcow2 -F qcow2 zc-top.qcow2 4M
    qio zc-top.qcow2 "write -c -P 0x32 128k 64k" "write -P 0x33 3M 4k"
    same_as_qemu "chain over a zstd base: a zlib overlay over zstd, then zstd over both" zc-top.qcow2
    same_as_qemu "a zlib-compressed overlay over a zstd base" zc-mid.qcow2
    qemu-img create -q -f qcow2 zl-base.qcow2 2M
    qio zl-base.qcow2 "write -c -s data.bin 0 1M"
    qemu-img create -q -f qcow2 -o compression_type=zstd -b zl-base.qcow2 -F qcow2 zc-over-zlib.qcow2 2M
    qio zc-over-zlib.qcow2 "write -c -P 0x34 0 64k" "write -z 512k 64k"
    same_as_qemu "a zstd-compressed overlay over a zlib base" zc-over-zlib.qcow2
else
    have_zstd=0
    skip "zstd compression (qemu-img built without zstd)"
fi

# ---- extended L2 entries ------------------------------------------------------------------
# [QCOW2-EXTL2] [QCOW2-SUBCLUSTER]
for cs in 16384 65536 2M; do
    img=extl2-$cs.qcow2
    if ! qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=$cs $img 8M 2>/dev/null; then
        skip "extended L2 with cluster size $cs (qemu-img cannot create it)"
        continue
    fi
    sc=$(( $(numfmt --from=iec $cs) / 32 ))
    qio $img "write -P 0x41 0 $sc" "write -P 0x42 $((3 * sc)) $((2 * sc))" \
        "write -z $((sc * 6)) $sc" "write -P 0x43 $((sc * 7 + 100)) 50" \
        "write -s data.bin 1M 200k" "write -z $((1048576 + sc)) $((3 * sc))" "write -c -s data.bin 4M $cs"
    same_as_qemu "extended L2, cluster size $cs: partial subclusters, zero subclusters, compressed" $img
done
qemu-img create -q -f raw extl2-base.raw 2M
qio -f raw extl2-base.raw "write -s data.bin 0 2M"
qemu-img create -q -f qcow2 -o extended_l2=on -b extl2-base.raw -F raw extl2-over.qcow2 2M
qio extl2-over.qcow2 "write -P 0x61 4096 2048" "write -z 16384 2048" "write -P 0x62 70000 10"
same_as_qemu "extended L2 over a raw backing: unallocated subclusters show the backing" extl2-over.qcow2

# ---- backing chains ---------------------------------------------------------------------------
# [QCOW2-BACKING-READ] [QCOW2-BACKING-RELATIVE] [QCOW2-BACKING-RAW-SIZE] [QCOW2-BACKING-FORMAT]
mkdir -p chain/sub
qemu-img create -q -f raw chain/sub/base.raw 5M
qio -f raw chain/sub/base.raw "write -s data.bin 0 5M"
qemu-img create -q -f qcow2 -b base.raw -F raw chain/sub/mid.qcow2 6M
qio chain/sub/mid.qcow2 "write -P 0x91 64k 128k" "write -z 1M 256k" "write -P 0x92 5M 100k"
qemu-img create -q -f qcow2 -o compat=0.10 -b sub/mid.qcow2 -F qcow2 chain/top.qcow2 8M
qio chain/top.qcow2 "write -P 0x93 100k 10k" "write -P 0x94 7M 4k"
qemu-img create -q -f qcow2 -b top.qcow2 -F qcow2 chain/top2.qcow2 8M
qio chain/top2.qcow2 "write -z 0 64k" "write -z 2M 1M" "write -P 0x95 3M 3k"
same_as_qemu "backing chain: qcow2 over qcow2 over raw, relative names in another directory" chain/top2.qcow2
(cd / && same_as_qemu "backing chain read from another working directory" "$T/chain/top2.qcow2")
same_as_qemu "v2 overlay larger than its backing reads zeros past the backing's end" chain/top.qcow2
qemu-img create -q -f qcow2 -b "$T/chain/sub/base.raw" -F raw abs.qcow2 3M
same_as_qemu "backing file named by an absolute path, overlay smaller than backing" abs.qcow2
head -c 1000000 data.bin >odd.raw
qemu-img create -q -f qcow2 -b odd.raw -F raw odd.qcow2 2M
same_as_qemu "raw backing file whose size is not a multiple of 512" odd.qcow2
qemu-img create -q -f qcow2 cz-base.qcow2 2M
qio cz-base.qcow2 "write -c -s data.bin 0 1M"
qemu-img create -q -f qcow2 -b cz-base.qcow2 -F qcow2 cz-over.qcow2 2M
qio cz-over.qcow2 "write -P 0x55 300k 10k" "write -z 600k 64k"
same_as_qemu "overlay over a compressed qcow2 backing" cz-over.qcow2
"${TOOL[@]}" mutate chain/top2.qcow2 chain/nofmt.qcow2 backing-format-missing
refused "backing file with no recorded format is refused, naming --backing-format" \
    'backing-format' chain/nofmt.qcow2
same_as_qemu "backing file with no recorded format, read with --backing-format qcow2" chain/nofmt.qcow2 \
    --backing-format qcow2 -- -f qcow2

# ---- external data files ---------------------------------------------------------------------
# [QCOW2-DATA-FILE] [QCOW2-DATA-FILE-OFFSET] [QCOW2-BACKING-RELATIVE]
# QEMU 7.2 opens a relative data file name from its working directory, vub
# from the image's directory: build and compare inside the image's directory,
# where both agree, then read it from elsewhere with vub alone.
mkdir -p ext
if (cd ext && qemu-img create -q -f qcow2 -o data_file=ext.data ext.qcow2 4M 2>/dev/null); then
    (cd ext && qio ext.qcow2 "write -s ../data.bin 0 1M" "write -P 0x71 2M 5000" "write -z 3M 64k")
    refused "external data file refused without --allow-data-file" 'allow.data.file' ext/ext.qcow2
    (cd ext && same_as_qemu "external data file (relative name) with --allow-data-file" ext.qcow2 --allow-data-file)
    cp "$T/vub.raw" ext-ref.raw
    cd / && vub convert --allow-data-file "$T/ext/ext.qcow2" "$T/vub.raw"
    cd "$T"
    if [ "$rc" = 0 ] && cmp -s "$T/vub.raw" ext-ref.raw; then
        ok "relative data file name resolved against the image's directory, from any working directory"
    else
        not_ok "relative data file name from another working directory ($(first_err))"
    fi
    (cd ext && qemu-img create -q -f qcow2 -o data_file=ext-raw.data,data_file_raw=on raw.qcow2 4M &&
        qio raw.qcow2 "write -s ../data.bin 0 2M" "write -z 1M 4k" &&
        same_as_qemu "external data file with data_file_raw=on" raw.qcow2 --allow-data-file)
else
    skip "external data files (qemu-img cannot create them)"
fi

# ---- internal snapshots ------------------------------------------------------------------------
# [QCOW2-SNAPSHOT-TABLE] [QCOW2-SNAPSHOT-READ]
img=snap.qcow2
qemu-img create -q -f qcow2 $img 4M
qio $img "write -s data.bin 0 1M"
qemu-img snapshot -c first $img
qio $img "write -P 0xa1 64k 64k" "write -z 512k 64k"
qemu-img snapshot -c second $img
qio $img "write -P 0xa2 0 4k" "write -P 0xa3 3M 1M"
qemu-img resize -q $img 6M
qio $img "write -P 0xa4 5M 4k"
same_as_qemu "active layer of an image with snapshots, resized after them" $img
# qemu-img convert -l keeps the active layer's size (6M); the snapshots are
# of the 4M disk: its tail must be zeros.
qemu_may_be_longer=1 same_as_qemu "--snapshot first (by name), at the disk size it was taken with" \
    $img --snapshot first -- -l snapshot.name=first
qemu_may_be_longer=1 same_as_qemu "--snapshot second (by name)" $img --snapshot second -- -l snapshot.name=second
qemu_may_be_longer=1 same_as_qemu "--snapshot 1 (by id)" $img --snapshot 1 -- -l snapshot.id=1
if [ "$(stat -c %s "$T/vub.raw")" = $((4 << 20)) ]; then
    ok "a snapshot reads with its own disk size (4 MiB), not the resized image's"
else
    not_ok "a snapshot reads with its own disk size ($(stat -c %s "$T/vub.raw") bytes)"
fi
refused "--snapshot of a name the image does not have" 'no snapshot' $img --snapshot third
vub info $img
if [ "$rc" = 0 ] && grep -q 'snapshots: 2' "$T/out" && grep -q 'name first' "$T/out"; then
    ok "info lists the two snapshots"
else
    not_ok "info lists the two snapshots ($(first_err))"
fi
img=snap-v2.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 $img 2M
qio $img "write -s data.bin 0 512k"
qemu-img snapshot -c old $img
qio $img "write -P 0xb1 0 256k"
same_as_qemu "--snapshot in a version 2 image (no disk size in the entry)" $img --snapshot old -- -l snapshot.name=old

# ---- a sparse 1 TiB disk ------------------------------------------------------------------------
# [QCOW2-L1-ENTRY] block status skips unallocated L2 ranges whole
img=huge.qcow2
qemu-img create -q -f qcow2 $img 1T
qio $img "write -P 0xc1 0 64k" "write -P 0xc2 300G 4k" "write -s data.bin 700G 1M" "write -P 0xc3 $(((1 << 40) - 4096)) 4096"
start=$(date +%s%N)
"$T/vub-img" convert $img huge.raw 2>"$T/err"
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
qemu-img convert -O raw $img huge-qemu.raw
if [ $rc = 0 ] && "${TOOL[@]}" sparse-cmp huge.raw huge-qemu.raw >/dev/null && [ $ms -lt 10000 ]; then
    ok "sparse 1 TiB image converts in $ms ms and matches qemu-img"
else
    not_ok "sparse 1 TiB image (status $rc, $ms ms: $(first_err))"
fi
echo "# 1 TiB sparse convert: $ms ms; output uses $(du -k huge.raw | cut -f1) KiB"
rm -f huge.raw huge-qemu.raw

echo "# random unaligned reads into scattered iovecs, and block status, against qemu-img"
random_reads "[QCOW2-READ-DATA] [QCOW2-RDONLY] random reads: 512-byte clusters; opened writable, the image still refuses writes" cs-512-1.1.qcow2
random_reads "random reads: 2 MiB clusters, version 2" cs-2M-0.10.qcow2
random_reads "random reads: compressed 4 KiB clusters" cz-4096.qcow2
random_reads "random reads: compressed mixed with plain and zero clusters" cz-mixed.qcow2
if [ "$have_zstd" = 1 ]; then
    random_reads "random reads: zstd, 4 KiB clusters, mixed data" z-4096-mixed.qcow2
    random_reads "random reads: zstd mixed with plain and zero clusters" z-mixed-writes.qcow2
    random_reads "random reads: zstd and zlib layers in one chain" zc-top.qcow2
fi
random_reads "random reads: extended L2 subclusters" extl2-65536.qcow2
random_reads "random reads: extended L2 over a raw backing" extl2-over.qcow2
random_reads "random reads: three-deep backing chain" chain/top2.qcow2
random_reads "random reads: raw backing with a partial last sector" odd.qcow2
random_reads "random reads: preallocation=metadata" pre-metadata-1.1.qcow2
if [ -f ext/ext.qcow2 ]; then
    cd ext && random_reads "random reads: external data file" ext.qcow2 --allow-data-file
    cd "$T"
fi

echo "# real images vub must refuse"
# [QCOW2-CRYPT] [QCOW2-BACKING-LOOP] [QCOW2-BACKING-DEPTH]
# qemu-img times the LUKS key derivation and sometimes fails with "Unable
# to get accurate CPU usage": three tries before the check is skipped.
for _ in 1 2 3; do
    qemu-img create -q --object secret,id=s0,data=pw -f qcow2 -o encrypt.format=luks,encrypt.key-secret=s0 \
        luks.qcow2 1M 2>luks.err && break
    rm -f luks.qcow2
done
if [ -f luks.qcow2 ]; then
    refused "LUKS-encrypted image refused, naming LUKS" 'LUKS' luks.qcow2
else
    skip "LUKS image (qemu-img cannot create one here: $(head -n 1 luks.err))"
fi
# A backing loop A -> B -> A, and a self loop.
qemu-img create -q -f qcow2 loop-b.qcow2 1M
qemu-img create -q -f qcow2 -b loop-b.qcow2 -F qcow2 loop-a.qcow2 1M
qemu-img rebase -q -u -b loop-a.qcow2 -F qcow2 loop-b.qcow2
refused "backing loop A -> B -> A refused" 'loop' loop-a.qcow2
qemu-img create -q -f qcow2 self.qcow2 1M
qemu-img rebase -q -u -b self.qcow2 -F qcow2 self.qcow2
refused "image that is its own backing file refused" 'loop' self.qcow2
# Depth cap: 64 backing files below the top are fine (qemu-img reads 40),
# 65 are not, and the refusal gives the reason first, then the chain, in
# one bounded line.
qemu-img create -q -f raw deep-0.raw 1M
qio -f raw deep-0.raw "write -P 0xd0 0 4k"
prev=deep-0.raw fmt=raw
for i in $(seq 1 65); do
    qemu-img create -q -f qcow2 -b $prev -F $fmt deep-$i.qcow2 1M
    qio deep-$i.qcow2 "write -P $((i + 1)) $((i * 8192)) 512"
    prev=deep-$i.qcow2 fmt=qcow2
done
same_as_qemu "[QCOW2-BACKING-DEPTH] backing chain 40 files deep (as qemu-img reads) reads" deep-40.qcow2
same_as_qemu "[QCOW2-BACKING-DEPTH] backing chain 64 files deep (the cap) reads" deep-64.qcow2
refused "[QCOW2-BACKING-WHY] backing chain 65 files deep refused, the reason first" \
    '^vub-img: backing chain deeper than 64 images \[QCOW2-BACKING-DEPTH\] \(backing chain: .*deep-65.qcow2 -> \.\.\. -> .*deep-0.raw, 65 deep\)$' deep-65.qcow2
if [ "$(wc -c <"$T/err")" -le 400 ]; then ok "[QCOW2-BACKING-WHY] the depth refusal is bounded ($(wc -c <"$T/err") bytes)"
else not_ok "the depth refusal is $(wc -c <"$T/err") bytes long"; fi
qemu-img create -q -f qcow2 -u -b nowhere.raw -F raw deep-broken-0.qcow2 1M
prev=deep-broken-0.qcow2
for i in 1 2 3; do
    qemu-img create -q -f qcow2 -u -b $prev -F qcow2 deep-broken-$i.qcow2 1M
    prev=deep-broken-$i.qcow2
done
refused "[QCOW2-BACKING-WHY] a missing file deep in a chain: the reason first, then the chain" \
    '^vub-img: cannot open backing file: No such file or directory \[SYS-OPEN\] \(backing chain: .*deep-broken-3.qcow2 -> \.\.\. -> .*nowhere.raw, 4 deep\)$' deep-broken-3.qcow2
qemu-img create -q -f qcow2 -u -b missing.qcow2 -F qcow2 missing.qcow2.top 1M
refused "missing backing file refused, naming it" 'missing.qcow2' missing.qcow2.top

echo "# malformed images (iotest 080 style): refused with a message, or read; never a crash"
# [QCOW2-HDR] [QCOW2-HDR-LENGTH] [QCOW2-TABLE-BOUNDS] [QCOW2-L1-BOUNDS] [QCOW2-L1-SIZE]
# [QCOW2-EXT-BOUNDS] [QCOW2-EXT-ONCE] [QCOW2-INCOMPAT-UNKNOWN] [QCOW2-CORRUPT-BIT] [QCOW2-FEATURES]
# [QCOW2-BACKING-NAME] [QCOW2-L1-ENTRY] [QCOW2-L2-ENTRY] [QCOW2-SUBCLUSTER] [QCOW2-COMPRESSED]
# Bases for the named defects.
qemu-img create -q -f qcow2 -o cluster_size=4096 m-plain.qcow2 1M
qio m-plain.qcow2 "write -s data.bin 0 64k" "write -c -s data.bin 128k 8k"
qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4096 m-v2.qcow2 1M
qio m-v2.qcow2 "write -s data.bin 0 64k"
qemu-img create -q -f qcow2 -o cluster_size=4096 -b m-plain.qcow2 -F qcow2 m-backed.qcow2 1M
qio m-backed.qcow2 "write -P 1 0 4k"
cp m-plain.qcow2 m-snap.qcow2
qemu-img snapshot -c s m-snap.qcow2
qemu-img create -q -f qcow2 -o cluster_size=512 m-512.qcow2 1M
qio m-512.qcow2 "write -c -s data.bin 0 8k" "write -s data.bin 64k 4k"
# 4 KiB-cluster images carry no feature name table; these do.
qemu-img create -q -f qcow2 m-64k.qcow2 1M
qio m-64k.qcow2 "write -s data.bin 0 64k"
qemu-img create -q -f qcow2 -b m-64k.qcow2 -F qcow2 m-backed64.qcow2 1M
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16384 m-extl2.qcow2 1M
qio m-extl2.qcow2 "write -P 3 0 1k" "write -c -s data.bin 256k 16k"
if [ "$have_zstd" = 1 ]; then
    qemu-img create -q -f qcow2 -o cluster_size=4096,compression_type=zstd m-zstd.qcow2 1M
    qio m-zstd.qcow2 "write -s data.bin 0 16k" "write -c -s data.bin 128k 32k" "write -c -P 0x21 512k 8k"
fi

# case BASE EXPECT [PATTERN] [vub-img options]: EXPECT is refuse (must be
# refused, message matching PATTERN) or read (must read like qemu-img).
n_malformed=0
defect() {
    local name=$1 base=$2 expect=$3 pattern=${4:-.}
    shift 4 2>/dev/null || shift $#
    local img=bad-$name.qcow2
    n_malformed=$((n_malformed + 1))
    if ! "${TOOL[@]}" mutate "$base" "$img" "$name" 2>"$T/err"; then
        not_ok "defect $name: cannot build it ($(first_err))"
        return
    fi
    case $expect in
    refuse) refused "defect $name refused" "$pattern" "$img" "$@" ;;
    read) same_as_qemu "defect $name still reads like qemu-img" "$img" "$@" ;;
    esac
}
defect version-1 m-plain.qcow2 refuse 'version 1'
defect version-4 m-plain.qcow2 refuse 'version 4'
defect cluster-bits-8 m-plain.qcow2 refuse 'cluster_bits 8'
defect cluster-bits-22 m-plain.qcow2 refuse 'cluster_bits 22'
defect cluster-bits-huge m-plain.qcow2 refuse 'cluster_bits'
defect header-length-huge m-plain.qcow2 refuse 'header_length'
defect header-length-unaligned m-plain.qcow2 refuse 'header_length'
defect header-length-short m-plain.qcow2 refuse 'header_length'
defect header-length-104 m-plain.qcow2 read . # [QCOW2-HDR-OPTIONAL] compression_type not present: zlib
defect refcount-order-7 m-plain.qcow2 refuse 'refcount_order'
defect truncated-header m-plain.qcow2 refuse 'header|magic'
defect truncated-in-header m-plain.qcow2 refuse 'header'
defect l1-huge m-plain.qcow2 refuse 'L1'
defect l1-too-small m-plain.qcow2 refuse 'too small'
defect l1-misaligned m-plain.qcow2 refuse 'L1'
defect l1-past-eof m-plain.qcow2 refuse 'L1'
defect l1-offset-overflow m-plain.qcow2 refuse 'L1'
defect l1-at-zero m-plain.qcow2 refuse 'L1'
defect refcount-huge m-plain.qcow2 refuse 'refcount table'
defect refcount-misaligned m-plain.qcow2 refuse 'refcount table'
defect refcount-past-eof m-plain.qcow2 refuse 'refcount table'
defect snapshots-too-many m-snap.qcow2 refuse 'snapshots'
defect snapshots-misaligned m-snap.qcow2 refuse 'snapshot table'
defect snapshots-past-eof m-snap.qcow2 refuse 'snapshot table'
defect snapshot-extra-huge m-snap.qcow2 refuse 'snapshot 0'
defect snapshot-l1-misaligned m-snap.qcow2 refuse 'snapshot L1' --snapshot s
defect snapshot-l1-huge m-snap.qcow2 refuse 'snapshot L1' --snapshot s
defect snapshot-l1-too-small m-snap.qcow2 refuse 'too small' --snapshot s
defect snapshot-l1-past-eof m-snap.qcow2 refuse 'snapshot L1' --snapshot s
defect snapshot-l1-misaligned m-snap.qcow2 read . # the active layer does not use it
defect backing-name-too-long m-backed.qcow2 refuse 'backing file name'
defect backing-name-outside-cluster0 m-backed.qcow2 refuse 'backing file name'
defect backing-offset-past-cluster0 m-backed.qcow2 refuse 'backing file name offset'
defect backing-name-newline m-backed.qcow2 refuse 'control character 0x0a'
defect backing-offset-in-header m-backed.qcow2 refuse 'backing file name offset'
defect backing-format-unknown m-backed.qcow2 refuse '\[QCOW2-BACKING-FORMAT\]'
defect backing-format-missing m-backed.qcow2 refuse '--backing-format'
defect ext-huge-unknown m-64k.qcow2 refuse 'overruns'
defect ext-duplicate m-backed64.qcow2 refuse 'twice'
defect ext-crypto-unencrypted m-64k.qcow2 refuse 'encryption'
defect incompat-unknown-named m-64k.qcow2 refuse 'incompatible-bit9 .*\[QCOW2-INCOMPAT-UNKNOWN\] \(the image calls it "test-feature-nine"\)'
defect incompat-unknown-unnamed m-plain.qcow2 refuse 'incompatible-bit40'
defect corrupt-bit m-plain.qcow2 refuse 'marked corrupt'
defect dirty-bit m-plain.qcow2 read .
defect compat-unknown m-plain.qcow2 read .
defect autoclear-unknown m-plain.qcow2 read .
defect features-mixed m-64k.qcow2 read .
# [QCOW2-FEATURES] info names every set bit: vub-img's name for a bit it
# knows, else the image's own (its feature name table), else the number.
vub info bad-features-mixed.qcow2
if [ "$rc" = 0 ] && grep -qE '^features: dirty .*compatible-bit33\("test-compat-33"\).* autoclear-bit20$' "$T/out"; then
    ok "info names feature bits: known by name, unknown by the image's name or by number"
else
    not_ok "info names feature bits ($(grep '^features' "$T/out"; first_err))"
fi
defect compression-bit-no-type m-plain.qcow2 refuse 'compression type'
defect compression-type-no-bit m-plain.qcow2 refuse 'compression type'
defect compression-type-unknown m-plain.qcow2 refuse 'compression type 7'
defect crypt-aes m-plain.qcow2 refuse 'AES'
defect crypt-luks m-plain.qcow2 refuse 'LUKS'
defect data-file-bit-no-name m-plain.qcow2 refuse 'data file'
defect extl2-small-clusters m-plain.qcow2 refuse 'extended L2'
defect l1-entry-past-eof m-plain.qcow2 refuse 'L1 entry'
defect l1-entry-unaligned m-plain.qcow2 refuse 'L1 entry'
defect l1-entry-reserved m-plain.qcow2 refuse 'L1 entry'
defect l2-data-past-eof m-plain.qcow2 read . # zeros past end of file, as QEMU reads them [QCOW2-EOF-ZEROS]
defect l2-data-unaligned m-plain.qcow2 refuse 'L2 entry'
defect l2-data-reserved m-plain.qcow2 refuse 'L2 entry'
defect l2-zero-in-v2 m-v2.qcow2 refuse 'version 2'
defect l2-copied-no-offset m-plain.qcow2 refuse 'L2 entry'
defect compressed-past-eof m-plain.qcow2 refuse 'outside the file'
defect compressed-garbage m-plain.qcow2 refuse 'compressed cluster'
defect compressed-high-bits m-512.qcow2 refuse 'compressed cluster'
defect compressed-one-sector m-plain.qcow2 refuse 'compressed cluster'
defect extl2-alloc-and-zero m-extl2.qcow2 refuse 'extended L2 entry'
defect extl2-alloc-no-offset m-extl2.qcow2 refuse 'extended L2 entry'
defect extl2-compressed-bitmap m-extl2.qcow2 refuse 'compressed cluster'
defect extl2-bit0 m-extl2.qcow2 refuse 'extended L2 entry'
if [ "$have_zstd" = 1 ]; then
    for case in compressed-garbage:'not a zstd frame' compressed-one-sector:'zstd input ran out' \
        compressed-past-eof:'outside the file'; do
        n_malformed=$((n_malformed + 1))
        "${TOOL[@]}" mutate m-zstd.qcow2 bad-zstd.qcow2 "${case%%:*}" &&
            refused "zstd image, defect ${case%%:*} refused with the zstd decoder's reason" "${case#*:}" \
                bad-zstd.qcow2
    done
fi
echo "# $n_malformed named defects"

echo "# random mutations (seed $FUZZ_SEED, $FUZZ_COUNT per base): never a crash"
mkdir -p fuzz
n_fuzz=0 n_fuzz_read=0 n_fuzz_refused=0 n_fuzz_bad=0
fuzz_bases="m-plain m-v2 m-backed m-snap m-512 m-extl2 chain/sub/mid"
[ "$have_zstd" = 1 ] && fuzz_bases="$fuzz_bases m-zstd"
for base in $fuzz_bases; do
    dir=fuzz/$(basename $base)
    mkdir -p $dir
    if ! "${TOOL[@]}" fuzz $base.qcow2 $dir "$FUZZ_SEED" "$FUZZ_COUNT"; then
        not_ok "fuzz: cannot damage $base.qcow2"
        continue
    fi
    # Backing names are relative: give each fuzz directory the files they name.
    cp m-plain.qcow2 $dir/ 2>/dev/null
    cp chain/sub/base.raw $dir/ 2>/dev/null
    for img in $dir/fuzz-*.qcow2; do
        n_fuzz=$((n_fuzz + 1))
        opts=()
        [ $base = m-snap ] && [ $((n_fuzz % 2)) = 0 ] && opts=(--snapshot s)
        if survives "fuzz $img" $img "${opts[@]}"; then
            case $outcome in read) n_fuzz_read=$((n_fuzz_read + 1)) ;; *) n_fuzz_refused=$((n_fuzz_refused + 1)) ;; esac
        else
            n_fuzz_bad=$((n_fuzz_bad + 1))
        fi
    done
done
if [ $n_fuzz_bad = 0 ]; then
    ok "$n_fuzz randomly damaged images: $n_fuzz_read read, $n_fuzz_refused refused with one line, no crash"
else
    not_ok "$n_fuzz_bad of $n_fuzz randomly damaged images crashed or failed without a message"
fi

echo "# $n_ok ok, $n_fail not ok, $n_skip skipped"
[ $n_fail = 0 ]
