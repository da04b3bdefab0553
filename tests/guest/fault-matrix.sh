#!/bin/bash
# fault-matrix.sh - the kill test (test-fault.sh) on every cell, and its
# summary table for conformance/RESULTS.md.
#
# vub-serve on QEMU 7.2 and 10.0 with split and packed rings (judged: any
# guest I/O error, failed fio verify or lost journal block fails), and
# qemu-storage-daemon 7.2 and 10.0 on split rings (observed only: it has no
# inflight tracking, and no packed rings). Writes conformance/kill-test.md
# (OUT=... for elsewhere), which conformance/results.sh puts into
# RESULTS.md. `make check-long` runs it after `make check`.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/conformance/kill-test.md}
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
status=0
for cell in "vub-serve 7.2 split" "vub-serve 7.2 packed" "vub-serve 10.0 split" "vub-serve 10.0 packed" \
    "qsd 7.2 split" "qsd 10.0 split"; do
    # shellcheck disable=SC2086 # the cell is three words
    "$here/test-fault.sh" $cell | tee -a "$rows" || status=1
done
{
    echo "## Under the kill test"
    echo
    echo "Produced by \`bash tests/guest/fault-matrix.sh\` (\`make check-long\`) on $(date -u +%F)."
    echo "A Linux 6.1 guest runs fio random writes with \`verify=crc32c\` and a journal of O_DSYNC"
    echo "blocks while the back-end is killed with SIGKILL ${VUB_FAULT_KILLS:-20} times and restarted"
    echo "on the same socket and image; QEMU reconnects (\`reconnect=1\`, \`reconnect-ms=1000\`). A stall"
    echo "means the guest's I/O stopped after a restart: requests in flight were lost. \"Lost\" counts"
    echo "journal blocks the guest saw acknowledged that are not in the image (tests/guest/test-fault.sh)."
    echo "qemu-storage-daemon offers no INFLIGHT_SHMFD: its rows are observations, not verdicts."
    echo
    echo "| back-end | front-end | ring | kills | stalls | guest-side failures | fio verify | journal |"
    echo "|---|---|---|---|---|---|---|---|"
    sed -n 's/^# fault-row | \(.*\) |$/| \1 |/p' "$rows" |
        sed 's/^| qsd | QEMU \([0-9.]*\) |/| qemu-storage-daemon \1 | QEMU \1 |/'
    echo
} >"$out"
echo "# wrote $out"
exit $status
