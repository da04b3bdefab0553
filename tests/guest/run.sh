#!/bin/bash
# run.sh - boots the test guest on a vhost-user-blk back-end and verifies it.
#
#   run.sh --socket PATH --image PATH --label NAME
#          [--extra-device-opts STR] [--cache DIR] [--mode test|demo|read|resize|fault]
#
# The back-end must already listen on --socket and serve --image. The guest
# (see init.sh) does its I/O and powers off; then this script re-checks on
# the host, from the image file, every range and file the guest reported.
# Output: TAP-like lines (lib.sh); exit 0 iff there is no "not ok".
#
# Environment: VUB_ACCEL=kvm|tcg skips the KVM probe; VUB_GUEST_TIMEOUT
# (seconds, default 180) bounds the boot; VUB_VERBOSE=1 shows the console
# with every kernel message.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

socket="" image="" label="" extra="" cache=$VUB_GUEST_CACHE mode=test
timeout_s=${VUB_GUEST_TIMEOUT:-180}
# The front-end: Debian 12's QEMU unless VUB_QEMU names another binary;
# VUB_QEMU_FIRMWARE is then its -L directory (tests/backports.sh).
qemu=${VUB_QEMU:-qemu-system-x86_64}

# Checks each mode's guest must report, passed or failed; a missing one
# means the guest script stopped early or its output was lost.
# shellcheck disable=SC2034 # read through ${!required}
required_test="modules disk-found features queues cache-write-back rw-512 rw-4k rw-1m
 rw-last-sector cpu0-io cpu1-io queue0-used queue1-used discard write-zeroes
 flush mkfs-mount fs-read/small fs-read/dir/big fs-read/dir/one disk-sum"
# shellcheck disable=SC2034
required_demo="modules disk-found mkfs-mount fs-read/hello.txt fs-read/random.bin"
required_read="modules disk-found features disk-sum"
# shellcheck disable=SC2034
required_resize="modules disk-found rw-before resize rw-new-area rw-across-old-end"
# shellcheck disable=SC2034
required_fault="modules disk-found cache-write-back fault-fio fault-dmesg fault-journal"

usage() {
    echo "usage: $0 --socket PATH --image PATH --label NAME" \
        "[--extra-device-opts STR] [--cache DIR] [--mode test|demo|read|resize|fault]" >&2
    exit 2
}

parse_args() {
    while [ $# -gt 0 ]; do
        [ $# -ge 2 ] || usage
        case $1 in
        --socket) socket=$2 ;;
        --image) image=$2 ;;
        --label) label=$2 ;;
        --extra-device-opts) extra=$2 ;;
        --cache) cache=$2 ;;
        --mode) mode=$2 ;;
        *) usage ;;
        esac
        shift 2
    done
    if [ -z "$socket" ] || [ -z "$image" ] || [ -z "$label" ]; then usage; fi
    case $mode in test | demo | read | resize | fault) ;; *) usage ;; esac
}

# ---- Booting ----------------------------------------------------------------

# qemu_common ACCEL MODE: the arguments every boot shares. The console goes
# to $log; -no-reboot turns the guest's power-off (or a panic, with
# panic=-1) into QEMU exiting.
# Under TCG the CPU is QEMU's default model (qemu64), the most exercised
# one; KVM passes the host CPU through. On the console: errors (loglevel 4
# prints levels 0-3), and a task stuck for 20 s is reported (the default
# 120 s is longer than a whole test). no_timer_check: under TCG on a busy
# host the kernel's IO-APIC timer check can fail and panic the boot.
qemu_common() {
    local hung=sysctl.kernel.hung_task_timeout_secs=20
    local accel=$1 cpu=qemu64 quiet="quiet loglevel=4" initrd=$cache/initramfs.cpio.gz
    # The fault test's guest also carries fio (prepare.sh).
    [ "$2" = fault ] && initrd=$cache/initramfs-fault.cpio.gz
    [ "$accel" = kvm ] && cpu=host
    [ "$accel" = tcg ] && accel=tcg,thread=multi
    [ "${VUB_VERBOSE:-0}" = 1 ] && quiet="loglevel=7"
    qemu_args=(${VUB_QEMU_FIRMWARE:+-L "$VUB_QEMU_FIRMWARE"} -machine pc -accel "$accel" -cpu "$cpu" -smp 2
        -nodefaults -nographic -no-reboot -monitor none -serial "file:$log"
        -kernel "$cache/vmlinuz" -initrd "$initrd"
        -append "console=ttyS0 $quiet panic=-1 no_timer_check $hung vubmode=$2")
}

# vhost-user needs the guest RAM in shared memory the back-end can map.
# In fault mode the back-end is killed and restarted under the guest, and
# QEMU connects again every second: `reconnect=1` up to 9.1, `reconnect-ms`
# from 9.2 on (where `reconnect` is deprecated).
# shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
vhost_user_args() {
    local chardev="socket,id=vub0,path=$socket" major
    if [ "$mode" = fault ]; then
        major=$("$qemu" --version | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -n 1)
        if [ "${major% *}" -gt 9 ] || [ "$major" = "9 2" ]; then chardev+=",reconnect-ms=1000"; else chardev+=",reconnect=1"; fi
    fi
    qemu_args+=(-m 512 -object memory-backend-memfd,id=mem,size=512M,share=on
        -numa node,memdev=mem
        -chardev "$chardev"
        -device "vhost-user-blk-pci,chardev=vub0,num-queues=2$extra")
}

# boot SECONDS: runs QEMU with qemu_args under a hard timeout and sets
# boot_rc to its exit status (124: timed out). The PID is kept so that an
# interrupted run.sh ends its own QEMU and nothing else.
boot() {
    : >"$log"
    timeout -k 5 "$1" "$qemu" "${qemu_args[@]}" </dev/null >"$log.qemu" 2>&1 &
    qemu_pid=$!
    stream_console &
    boot_rc=0
    # (2>/dev/null: bash would report a QEMU that aborted, as under a broken
    # KVM; the status says it all.)
    wait "$qemu_pid" 2>/dev/null || boot_rc=$?
    qemu_pid=""
    wait # for stream_console
}

# Shows console lines while the guest runs: demo lines in demo mode, all of
# it with VUB_VERBOSE=1. tail --pid stops once QEMU is gone.
stream_console() {
    if [ "${VUB_VERBOSE:-0}" = 1 ]; then
        tail -n +1 -F --pid="$qemu_pid" "$log" 2>/dev/null | sed -u 's/^/# console: /'
    elif [ "$mode" = demo ]; then
        tail -n +1 -F --pid="$qemu_pid" "$log" 2>/dev/null | tr -d '\r' | sed -un 's/^VUBDEMO /  /p'
    fi
}

# A stock kernel can hang early under KVM on these machines although
# /dev/kvm exists, so KVM is used only after a short probe boot reached
# /init. The answer (in $accel) is cached per host boot (boot_id).
pick_accel() {
    local probe=$cache/kvm-probe boot_id log=$cache/logs/kvm-probe.log
    accel=${VUB_ACCEL:-}
    [ -n "$accel" ] && return
    boot_id=$(cat /proc/sys/kernel/random/boot_id)
    if [ -r "$probe" ] && [ "$(sed -n 1p "$probe")" = "$boot_id" ]; then
        accel=$(sed -n 2p "$probe")
        return
    fi
    accel=tcg
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        echo "# probing KVM with a 20 s boot (once per host boot)"
        qemu_common kvm probe
        qemu_args+=(-m 256)
        boot 20
        [ "$boot_rc" = 0 ] && grep -q '^VUBTEST probe-ok' "$log" && accel=kvm
    fi
    printf '%s\n%s\n' "$boot_id" "$accel" >"$probe"
}

# ---- Verifying on the host ----------------------------------------------------

# The image as raw bytes: a qcow2 (or other) image is converted first.
raw_image() {
    local fmt
    fmt=$(qemu-img info "$image" 2>/dev/null | sed -n 's/^file format: //p')
    if [ "$fmt" = raw ] || [ -z "$fmt" ]; then
        echo "$image"
    else
        qemu-img convert -O raw "$image" "$work/image.raw" && echo "$work/image.raw"
    fi
}

# read_range OFF LEN: the image's bytes OFF..OFF+LEN-1 on stdout.
read_range() {
    dd if="$raw" bs=64K iflag=skip_bytes,count_bytes skip="$1" count="$2" status=none
}

sha_of() { sha256sum | cut -d' ' -f1; }

check_region() {
    local got
    got=$(read_range "$1" "$2" | sha_of)
    tap_check "$label" "host: region $1+$2 matches" "image has sha256 $got, guest wrote $3" \
        [ "$got" = "$3" ]
}

check_zero() {
    tap_check "$label" "host: region $1+$2 is zero" "nonzero bytes in the image" \
        cmp -s -n "$2" <(read_range "$1" "$2") /dev/zero
}

# The fs starts at offset 0 and may be smaller than the disk; e2fsck is
# happy with a file bigger than the fs it holds.
check_fs() {
    local out
    if out=$(e2fsck -fn "$raw" 2>&1); then
        tap_ok "$label" "host: e2fsck -fn" "$1 KiB"
    else
        tap_not_ok "$label" "host: e2fsck -fn" "$(echo "$out" | tail -n 3 | tr '\n' ' ')"
    fi
}

# debugfs reads the file straight out of the image, without mounting it.
check_file() {
    local got
    got=$(debugfs -R "cat $1" "$raw" 2>/dev/null | sha_of)
    tap_check "$label" "host: file $1 matches" "image has sha256 $got, guest wrote $2" \
        [ "$got" = "$2" ]
}

check_disk() {
    local size got
    size=$(stat -c %s "$raw")
    got=$(sha_of <"$raw")
    tap_check "$label" "host: whole disk matches" \
        "image: $size bytes, sha256 $got; guest: $1 bytes, $2" \
        [ "$size $got" = "$1 $2" ]
}

# One VUBTEST line from the console, turned into a result line.
handle_line() {
    local kind=$1 name=${2:-}
    shift
    case $kind in
    ok) seen+=" $name "; shift; tap_ok "$label" "$name" "$*" ;;
    fail) seen+=" $name "; shift; tap_not_ok "$label" "$name" "$*" ;;
    region) check_region "$@" ;;
    zero) check_zero "$@" ;;
    fs) check_fs "$@" ;;
    file) check_file "$@" ;;
    disk) check_disk "$@" ;;
    done) done_seen=1 ;;
    step) last_step=$name ;;
    esac
}

# Reads the console log: serial lines end in \r\n, and a line can start
# with what the firmware or the kernel printed before it.
verify() {
    local required=$1 tag rest name
    seen="" done_seen=0 last_step="(none: the kernel never ran /init)"
    raw=$(raw_image) || { tap_not_ok "$label" "host: read image" "qemu-img convert failed"; return; }
    while read -r tag rest; do
        # shellcheck disable=SC2086 # word splitting into fields is wanted
        [ "$tag" = VUBTEST ] && handle_line $rest
    done < <(tr -d '\r' <"$log" | grep -ao 'VUBTEST .*')
    for name in $required; do
        case $seen in *" $name "*) ;; *) tap_not_ok "$label" "$name" "the guest never reported it" ;; esac
    done
    tap_check "$label" "guest reached the end" \
        "no 'VUBTEST done'; last step: $last_step; see $log" [ "$done_seen" = 1 ]
}

# QEMU exits 0 when the guest powers off; 124 is the timeout's doing.
check_qemu_exit() {
    local why="status $boot_rc"
    [ "$boot_rc" = 124 ] && why="killed after $timeout_s s"
    tap_check "$label" "QEMU ran and exited" "$why: $(tail -n 2 "$log.qemu" | tr '\n' ' ')" \
        [ "$boot_rc" = 0 ]
}

# ---- Main -----------------------------------------------------------------------

cleanup() {
    [ -n "${qemu_pid:-}" ] && stop_pid "$qemu_pid"
    rm -rf "$work"
}

main() {
    local start required
    parse_args "$@"
    "$here/prepare.sh" "$cache" || { tap_not_ok "$label" "prepare guest" "prepare.sh failed"; return 1; }
    cache=$(cd "$cache" && pwd)
    work=$(mktemp -d)
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    mkdir -p "$cache/logs"
    pick_accel
    log=$cache/logs/$label-$mode.log
    qemu_common "$accel" "$mode"
    vhost_user_args
    echo "# $label: front-end $("$qemu" --version | head -n 1); guest kernel $(cat "$cache/kernel-version")"
    echo "# $label: booting the guest with accel=$accel (console: $log)"
    start=$(date +%s)
    boot "$timeout_s"
    echo "# $label: QEMU exited with status $boot_rc after $(($(date +%s) - start)) s"
    check_qemu_exit
    required=required_$mode
    verify "${!required}"
    [ "$FAILED" -eq 0 ] || { echo "# $label: last console lines:"; tr -d '\r' <"$log" | tail -n 15 | sed 's/^/#   /'; }
    [ "$FAILED" -eq 0 ]
}

main "$@"
