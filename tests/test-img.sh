#!/usr/bin/env bash
# test-img.sh - vub-img as a tool: `info --output=json` parsed and compared,
# key by key, with `qemu-img info --output=json` on the same images (every
# key vub-img prints that qemu-img prints too must have qemu-img's value);
# progress for `convert -p` and `vub-io dump` on a terminal, and none when
# stderr is not one.
#
#   tests/test-img.sh     (VUB_BUILD=dir picks the programs; default build/)
set -u
cd "$(dirname "$0")/.."
B=${VUB_BUILD:-$PWD/build}

. tests/lib-tap.sh img
for p in vub-img vub-serve vub-io; do
    [ -x "$B/$p" ] || { fail "$B/$p is built (run make)"; exit 1; }
done
if ! command -v qemu-img >/dev/null; then
    skip "every case here needs qemu-img (not installed)"
    exit 0
fi

# ---- the images: raw, qcow2 v2, v3 with a chain and snapshots, extended L2, a data file ----
cd "$dir"
truncate -s 3M raw.img
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 5M
qemu-img create -q -f qcow2 -o cluster_size=4096,refcount_bits=1 base.qcow2 8M
qemu-io -f qcow2 -c 'write -P 7 0 64k' base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 8M
qemu-img snapshot -c first top.qcow2
qemu-img snapshot -c 'second "quoted" \ name' top.qcow2
qemu-img create -q -f qcow2 -o extended_l2=on,lazy_refcounts=on ext.qcow2 2M
qemu-img create -q -f qcow2 -o data_file=data.raw,data_file_raw=on df.qcow2 1M
qemu-img create -q -f qcow2 -b raw.img -F raw over-raw.qcow2 3M
cd - >/dev/null

for img in raw.img v2.qcow2 top.qcow2 ext.qcow2 df.qcow2 over-raw.qcow2; do
    if ! "$B/vub-img" info --output=json --allow-data-file "$dir/$img" >"$dir/$img.vub.json" 2>"$dir/err"; then
        fail "vub-img info --output=json $img ($(cat "$dir/err"))"
        continue
    fi
    qemu-img info --output=json "$dir/$img" >"$dir/$img.qemu.json"
    if python3 - "$dir/$img.vub.json" "$dir/$img.qemu.json" >"$dir/cmp" 2>&1 <<'EOF'
import json, os, sys
vub, qemu = (json.load(open(p)) for p in sys.argv[1:3])
compared = []
def same(a, b, path):
    if isinstance(a, dict):
        assert isinstance(b, dict), path
        for k in a:
            if k in b:
                same(a[k], b[k], path + [k])
        return
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, path + [str(i)])
        return
    key = path[-1]
    if key in ("filename", "full-backing-filename", "data-file"):
        a, b = os.path.realpath(a), os.path.realpath(os.path.join(os.path.dirname(sys.argv[1]), b))
    assert a == b, "%s: vub %r, qemu-img %r" % ("/".join(path), a, b)
    compared.append("/".join(path))
same(vub, qemu, [])
for must in ("virtual-size", "format", "filename", "dirty-flag"):
    assert must in compared, "missing " + must
print(" ".join(sorted(set(k.split("/")[-1] for k in compared))))
EOF
    then
        ok "info --output=json $img parses and agrees with qemu-img on: $(cat "$dir/cmp")"
    else
        fail "info --output=json $img agrees with qemu-img ($(tail -n 2 "$dir/cmp"))"
    fi
done
check "top.qcow2: the JSON names the backing file and both snapshots" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["backing-filename"] == "base.qcow2" and j["backing-filename-format"] == "qcow2"
assert [s["name"] for s in j["snapshots"]] == ["first", "second \"quoted\" \\ name"]
assert j["cluster-size"] == 65536 and j["format-specific"]["data"]["compat"] == "1.1"
' "$dir/top.qcow2.vub.json"
check "--output=yaml is refused naming the choices" \
    bash -c '"$1" info --output=yaml "$2" 2>&1 >/dev/null | grep -q "wants human or json"' _ "$B/vub-img" "$dir/raw.img"

# ---- progress on a terminal ----
if ! command -v script >/dev/null; then
    skip "progress on a terminal (script(1) not installed)"
else
    qemu-img create -q -f qcow2 "$dir/big.qcow2" 64M
    qemu-io -f qcow2 -c 'write -P 9 0 32M' "$dir/big.qcow2" >/dev/null
    script -qec "'$B/vub-img' convert -p '$dir/big.qcow2' '$dir/big.raw'" /dev/null >"$dir/tty.out"
    check "convert -p on a terminal shows progress up to 100%" \
        bash -c 'tr "\r" "\n" <"$1" | grep -q "(50.00/100%)" && tr "\r" "\n" <"$1" | grep -q "(100.00/100%)"' _ "$dir/tty.out"
    check "... and the copy is right" bash -c 'qemu-img compare -q -f qcow2 -F raw "$1" "$2"' _ "$dir/big.qcow2" "$dir/big.raw"
    "$B/vub-img" convert -p "$dir/big.qcow2" "$dir/big2.raw" 2>"$dir/notty.err"
    check "convert -p with stderr not a terminal prints nothing" test ! -s "$dir/notty.err"

    "$B/vub-serve" --socket "$dir/s.sock" --read-only "$dir/big.raw" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 100); do [ -S "$dir/s.sock" ] && break; sleep 0.1; done
    script -qec "'$B/vub-io' --socket '$dir/s.sock' dump >'$dir/dump.raw'" /dev/null >"$dir/tty.out"
    check "vub-io dump on a terminal shows its progress" \
        bash -c 'tr "\r" "\n" <"$1" | grep -q "dump: 50% (32 of 64 MiB)" && tr "\r" "\n" <"$1" | grep -q "dump: 100%"' _ "$dir/tty.out"
    check "... and the dump is the disk" cmp -s "$dir/dump.raw" "$dir/big.raw"
    "$B/vub-io" --socket "$dir/s.sock" dump 2>"$dir/notty.err" >/dev/null
    check "vub-io dump with stderr not a terminal prints nothing" test ! -s "$dir/notty.err"
fi

[ "$failures" -eq 0 ]
