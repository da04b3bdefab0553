#!/usr/bin/env bash
# Runs every test of the project and ends with one line:
#   N passed, N failed, N skipped
# Each test prints "ok - ...", "not ok - ..." or "skip - ..." lines; a test
# that exits non-zero without printing a "not ok" line counts as one failure.
# Set VUB_TESTS="unit qcow2" (words from the list below) to run a subset.
set -u
cd "$(dirname "$0")/.."
log=$(mktemp)
failures=$(mktemp)
trap 'rm -f "$log" "$failures"' EXIT
pass=0 fail=0 skip=0
bash tests/deps.sh

run() {
    local name=$1
    shift
    if [ -n "${VUB_TESTS:-}" ] && ! [[ " $VUB_TESTS " == *" ${name%%:*} "* ]]; then
        return
    fi
    echo "# ${name}: $*"
    "$@" </dev/null 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    local p f s
    p=$(grep -c '^ok\b' "$log")
    f=$(grep -c '^not ok\b' "$log")
    s=$(grep -c '^skip\b' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - ${name} exited with status $rc" | tee -a "$log"
        f=1
    fi
    # Kept for the end, so that the last lines of a long run name what failed
    # or was skipped.
    grep -E '^(not ok|skip)\b' "$log" | sed "s|^|# ${name}: |" >>"$failures"
    pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
}

run tags bash tests/check-tags.sh
run build bash tests/test-build.sh
run install bash tests/test-install.sh
run examples bash tests/test-examples.sh
run unit:plain build/test-backend
run unit:asan build/asan/test-backend
run unit:plain build/test-client-hostile
run unit:asan build/asan/test-client-hostile
run unit:plain build/test-inflate
run unit:asan build/asan/test-inflate
run unit:plain build/test-zstd
run unit:asan build/asan/test-zstd
run unit:plain build/test-aio
run unit:asan build/asan/test-aio
run qcow2 bash tests/test-qcow2.sh
run safety bash tests/test-safety.sh
run safety:asan env VUB_BUILD=build/asan bash tests/test-safety.sh
run serve bash tests/test-serve.sh
run serve:asan env VUB_BUILD=build/asan bash tests/test-serve.sh
run img bash tests/test-img.sh
run usage bash tests/test-usage.sh
run client bash tests/test-client.sh
run trace bash tests/test-trace.sh
run client:asan env VUB_IO=build/asan/vub-io bash tests/test-client.sh
run bench bash tests/test-bench.sh
run bench:asan env VUB_BUILD=build/asan bash tests/test-bench.sh
run fs-faults bash tests/test-fs-faults.sh
run fs-faults:asan env VUB_BUILD=build/asan bash tests/test-fs-faults.sh
run reconnect bash tests/test-reconnect.sh
run reconnect:asan env VUB_BUILD=build/asan bash tests/test-reconnect.sh
run conform env VUB_SERVE=build/asan/vub-serve bash tests/test-conform.sh
run guest:qsd bash tests/guest/test-qsd.sh
# The guest matrix against the ASan vub-serve, one boot per cell: QEMU 7.2
# and 10.0 (tests/backports.sh) x split and packed on Linux 6.1, QEMU 10.0
# on Linux 6.12, the qcow2 chain on both QEMUs, a zstd-compressed qcow2 and
# a live resize on 10.0, and the io_uring engine with O_DIRECT and two
# threads pinned on 7.2 (the other cells take vub-serve's default engine).
for cell in "7.2 6.1 split" "7.2 6.1 packed" "10.0 6.1 split" "10.0 6.1 packed" "10.0 6.12 split" \
    "7.2 6.1 split qcow2" "10.0 6.1 split qcow2" "10.0 6.1 split qcow2-zstd" "10.0 6.1 split resize" \
    "7.2 6.1 packed aio"; do
    # shellcheck disable=SC2086 # the cell is four words
    run guest:matrix env VUB_SERVE=build/asan/vub-serve bash tests/guest/cell.sh $cell
done
# The kill test: vub-serve killed 20 times under a guest running fio and a
# journal (tests/guest/test-fault.sh); zero guest I/O errors, zero lost
# acknowledged blocks. The full matrix, qemu-storage-daemon beside it, is
# `make check-long`.
for cell in "7.2 split" "7.2 packed" "10.0 split"; do
    # shellcheck disable=SC2086 # the cell is two words
    run guest:fault env VUB_SERVE=build/asan/vub-serve bash tests/guest/test-fault.sh vub-serve $cell
done
run guest:no-share env VUB_SERVE=build/asan/vub-serve bash tests/guest/test-no-share.sh 7.2
run guest:no-share env VUB_SERVE=build/asan/vub-serve bash tests/guest/test-no-share.sh 10.0

if [ -s "$failures" ]; then
    echo "# what failed or was skipped:"
    cat "$failures"
fi
echo "${pass} passed, ${fail} failed, ${skip} skipped"
[ "$fail" -eq 0 ]
