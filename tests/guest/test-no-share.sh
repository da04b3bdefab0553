#!/bin/bash
# test-no-share.sh QEMU - a front-end whose guest RAM is not shared memory.
#
# QEMU started without a share=on memory backend has no fd for guest RAM
# and sends vub-serve no memory regions; the rings then point nowhere. The
# check: vub-serve's log names the likely cause (share=on). QEMU is stopped
# as soon as vub-serve has ended the session, so no boot is waited for.
#   QEMU: 7.2 (installed) or 10.0 (tests/backports.sh)
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

gen=${1:-7.2}
label=vub-serve-q$gen-no-share
vub_serve=${VUB_SERVE:-$VUB_ROOT/build/vub-serve}
cache=$VUB_GUEST_CACHE
qemu=qemu-system-x86_64 firmware=()
if [ "$gen" = 10.0 ]; then
    if ! out=$("$VUB_ROOT/tests/backports.sh" "$cache" 2>&1); then
        tap_skip "$label" "bookworm-backports peers not available: $(echo "$out" | tail -n 1)"
        exit 0
    fi
    qemu=$cache/qemu10/root/usr/bin/qemu-system-x86_64 firmware=(-L "$cache/qemu10/firmware")
fi
[ -x "$vub_serve" ] || { tap_skip "$label" "binary not built ($vub_serve)"; exit 0; }
"$here/prepare.sh" "$cache" >/dev/null 2>&1 || { tap_not_ok "$label" "prepare guest" "prepare.sh failed"; exit 1; }
echo "# $label: front-end $("$qemu" --version | head -n 1)"

work=$(mktemp -d /tmp/vub-noshare.XXXXXX)
trap 'rm -rf "$work"' EXIT
truncate -s 16M "$work/disk.img"
timeout --foreground -k 5 120 "$vub_serve" --socket "$work/vub.sock" --queues 1 "$work/disk.img" >"$work/serve.log" 2>&1 &
spid=$!
wait_socket "$work/vub.sock" "$spid" 10 || { tap_not_ok "$label" "vub-serve listens" "$(cat "$work/serve.log")"; exit 1; }
# Plain -m: guest RAM is anonymous memory, private to QEMU.
timeout -k 5 60 "$qemu" "${firmware[@]}" -machine pc -accel tcg -m 256 -nodefaults -nographic -no-reboot \
    -monitor none -serial "file:$work/console.log" -kernel "$cache/vmlinuz" -initrd "$cache/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1 vubmode=read" -chardev "socket,id=v,path=$work/vub.sock" \
    -device vhost-user-blk-pci,chardev=v,num-queues=1 </dev/null >"$work/qemu.log" 2>&1 &
qpid=$!
for _ in $(seq 600); do
    grep -q "session ended" "$work/serve.log" && break
    kill -0 "$qpid" 2>/dev/null || break
    sleep 0.1
done
stop_pid "$qpid"
stop_pid "$spid" 10
line=$(grep "session ended" "$work/serve.log" | head -n 1)
tap_check "$label" "vub-serve names the likely cause (share=on)" "${line:-no session-ended line}" \
    bash -c '[[ $1 == *"shared no memory"*"share=on"* ]]' _ "$line"
