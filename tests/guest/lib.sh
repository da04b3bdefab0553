# lib.sh - helpers shared by the guest test scripts (sourced, not run).
#
# Results are TAP-like lines on stdout, one per check:
#   ok - LABEL: CHECK [(NOTE)]
#   not ok - LABEL: CHECK (DETAIL)
#   skip - LABEL: REASON
# Comments start with "# ". A script fails iff it printed a "not ok".
# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are used by the sourcing scripts

FAILED=0
# The repository root; build/ and the guest cache live under it.
VUB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VUB_GUEST_CACHE=${VUB_GUEST_CACHE:-$VUB_ROOT/build/guest-cache}

tap_ok() { echo "ok - $1: $2${3:+ ($3)}"; }

tap_not_ok() {
    FAILED=$((FAILED + 1))
    echo "not ok - $1: $2 (${3:-failed})"
}

tap_skip() { echo "skip - $1: $2"; }

# tap_check LABEL CHECK DETAIL CMD...: ok when CMD succeeds, else not ok.
tap_check() {
    local label=$1 check=$2 detail=$3
    shift 3
    if "$@"; then tap_ok "$label" "$check"; else tap_not_ok "$label" "$check" "$detail"; fi
}

# tap_summary FILE: counts the result lines in FILE, prints the closing line
# CI reads ("guest: N passed, N failed, N skipped") and fails if any failed.
tap_summary() {
    local pass fail skip
    pass=$(grep -c '^ok - ' "$1")
    fail=$(grep -c '^not ok - ' "$1")
    skip=$(grep -c '^skip - ' "$1")
    echo "# guest: $pass ok, $fail not ok, $skip skipped"
    [ "$fail" -eq 0 ]
}

# tap_run FUNC: runs FUNC (a script's main), shows its result lines, then
# the closing line of tap_summary; returns non-zero if any check failed.
tap_run() {
    local results rc
    results=$(mktemp)
    "$1" | tee "$results"
    tap_summary "$results"
    rc=$?
    rm -f "$results"
    return $rc
}

# child_pid PID: the one child of PID (the program a timeout(1) runs).
child_pid() {
    local child=""
    read -r child _ <"/proc/$1/task/$1/children" # no newline there: read says EOF
    echo "$child"
}

# stuck_report PID GRACE: what a process that outlived its grace is doing,
# thread by thread (name, state, where it sleeps in the kernel), as "#"
# lines: a back-end that does not exit is diagnosed from the run's output.
stuck_report() {
    local t
    echo "# process $1 still there ${2} s after SIGTERM; its threads:"
    for t in /proc/"$1"/task/*; do
        echo "#   $(cat "$t/comm" 2>/dev/null) state $(awk '{print $3}' "$t/stat" 2>/dev/null)" \
            "wchan $(cat "$t/wchan" 2>/dev/null) | $(tr '\n' ' ' <"$t/stack" 2>/dev/null | cut -c1-300)"
    done
    for t in /proc/"$1"/task/*/children; do # proc files have no size: read them
        t=$(cat "$t" 2>/dev/null)
        [ -n "$t" ] && echo "#   children: $t"
    done
    if command -v gdb >/dev/null; then
        timeout -k 5 30 gdb -p "$1" -batch -ex 'thread apply all bt 12' 2>/dev/null | grep '^#\|^Thread' |
            head -n 60 | sed 's/^/#   /'
    fi
}

# stop_pid PID [GRACE]: SIGTERM a process this shell started, SIGKILL it if
# it is still there after GRACE seconds (default 5), reap it and set
# stop_rc to its exit status. Not in $(...): only the parent can reap it.
# Processes are only ever ended by the PID we got from "&".
stop_pid() {
    local pid=$1 grace=${2:-5} i=0
    stop_rc=0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ $i -lt $((grace * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        stuck_report "$pid" "$grace"
        local child
        child=$(child_pid "$pid" 2>/dev/null)
        if [ -n "$child" ]; then
            stuck_report "$child" "$grace"
            kill -KILL "$child" 2>/dev/null # a timeout(1) killed leaves its command running
        fi
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || stop_rc=$?
}

# wait_socket PATH PID SECONDS: true once PATH is a socket; false if PID
# exits or SECONDS pass first.
wait_socket() {
    local path=$1 pid=$2 i=0
    while [ $i -lt $(($3 * 10)) ]; do
        [ -S "$path" ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# ---- One back-end, one guest boot ---------------------------------------------
#
# backend_test LABEL [MODE]: the flow test-qsd.sh, test-vub-serve.sh and
# demo.sh share: a fresh image, the back-end on it, one guest boot in MODE
# (run.sh --mode, default test), the back-end stopped and checked. The
# caller defines start_backend, which starts the back-end in the background
# on $sock and $img, logging to $blog, and sets backend_pid; and may define
# after_backend, called once the back-end has stopped; and during_boot, run
# in the background while the guest runs (it may change the image: it then
# sets expected_size beforehand). Set VUB_GUEST_CACHE,
# VUB_GUEST_DISK (image size, default 64M) and VUB_EXTRA_DEVICE_OPTS to vary.

backend_test() {
    local here cache mode=${2:-test} rc
    label=$1
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    cache=$VUB_GUEST_CACHE
    # A short /tmp path: unix socket paths are limited to 107 bytes.
    work=$(mktemp -d /tmp/vub-guest.XXXXXX)
    img=$work/disk.img sock=$work/vub.sock blog=$work/backend.log
    trap 'backend_cleanup' EXIT
    # A test may bring its own image (prepare_image writes $img); else a blank one.
    if declare -F prepare_image >/dev/null; then
        prepare_image || { tap_not_ok "$label" "image prepared" "see above"; return; }
    else
        truncate -s "${VUB_GUEST_DISK:-64M}" "$img"
    fi
    img_size=$(stat -c %s "$img")
    start_backend
    if ! wait_socket "$sock" "$backend_pid" 10; then
        tap_not_ok "$label" "back-end listens on its socket" "$(tail -n 3 "$blog" | tr '\n' ' ')"
        return
    fi
    tap_ok "$label" "back-end listens on its socket"
    local during=""
    if declare -F during_boot >/dev/null; then
        during_boot &
        during=$!
    fi
    "$here/run.sh" --socket "$sock" --image "$img" --label "$label" --cache "$cache" --mode "$mode" \
        ${VUB_EXTRA_DEVICE_OPTS:+--extra-device-opts "$VUB_EXTRA_DEVICE_OPTS"}
    # run.sh exits 1 after a "not ok" it printed; anything else (usage,
    # interrupted) has no result line yet.
    rc=$?
    [ -n "$during" ] && wait "$during"
    [ "$rc" -le 1 ] || tap_not_ok "$label" "run.sh finished" "exit status $rc"
    # ASan builds run the leak check at exit: slow on a loaded machine. The
    # back-ends run under "timeout -k 60": 50 s lets stop_pid see one stuck.
    stop_pid "$backend_pid" 50
    backend_pid=""
    backend_checks "$label" "$stop_rc"
    if declare -F after_backend >/dev/null; then after_backend "$label"; fi
}

# backend_checks LABEL STATUS: what must hold once the back-end is stopped.
backend_checks() {
    local size
    tap_check "$1" "back-end exits cleanly on SIGTERM" "status $2: $(tail -n 3 "$blog" | tr '\n' ' ')" \
        [ "$2" = 0 ]
    tap_check "$1" "back-end removed its socket" "$sock still there" [ ! -e "$sock" ]
    size=$(stat -c %s "$img")
    tap_check "$1" "image kept its size" "now $size bytes, was $img_size" [ "$size" = "${expected_size:-$img_size}" ]
}

# Keeps the back-end's log next to the console logs, then removes the rest.
backend_cleanup() {
    [ -n "${backend_pid:-}" ] && stop_pid "$backend_pid"
    mkdir -p "$VUB_GUEST_CACHE/logs"
    [ -f "$blog" ] && cp "$blog" "$VUB_GUEST_CACHE/logs/$label-backend.log"
    rm -rf "$work"
}

# ---- Host tools ------------------------------------------------------------------

# The Debian package behind each command the guest tests run on the host.
declare -A TOOL_PACKAGE=(
    [qemu-system-x86_64]=qemu-system-x86 [qemu-storage-daemon]=qemu-system-common
    [qemu-img]=qemu-utils [e2fsck]=e2fsprogs [debugfs]=e2fsprogs [cpio]=cpio
    [gcc]=gcc [xz]=xz-utils [zstd]=zstd [dpkg-deb]=dpkg [apt-get]=apt
)

# ensure_tools: installs (as root, with apt-get) the packages of any missing
# command, since a fresh machine or CI may lack them. VUB_NO_INSTALL=1 only
# reports. Returns false if something is still missing.
ensure_tools() {
    local cmd missing=()
    for cmd in "${!TOOL_PACKAGE[@]}"; do
        command -v "$cmd" >/dev/null || missing+=("${TOOL_PACKAGE[$cmd]}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || [ "${VUB_NO_INSTALL:-0}" = 1 ]; then
        echo "# missing packages: ${missing[*]} (apt-get install them as root)"
        return 1
    fi
    echo "# installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >&2 ||
        { apt-get update -qq >&2 && apt-get install -y -qq "${missing[@]}" >&2; }
}
