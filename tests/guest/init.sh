#!/bin/sh
# shellcheck disable=SC3043 # busybox sh has "local"
# init.sh - PID 1 of the vub test guest, run by busybox sh. prepare.sh copies
# it into the initramfs as /init, next to busybox, guest-io and the modules.
#
# The kernel command line (set by run.sh) picks what it does:
#   vubmode=probe  say "VUBTEST probe-ok" and power off (the KVM probe)
#   vubmode=test   the full list of checks below
#   vubmode=demo   format, mount, write and read a file, in friendly words
#   vubmode=read   read the whole disk and report its digest (read-only exports)
#   vubmode=resize wait for the disk to grow under the running guest (the host
#                  grows the image and sends vub-serve SIGHUP), then use the new end
#   vubmode=fault  fio and a journal while the host kills the back-end (main_fault)
#
# Every result is one console line that run.sh parses on the host:
#   VUBTEST step NAME               progress, to tell where a hung guest was
#   VUBTEST ok NAME [NOTE]          a check that passed in the guest
#   VUBTEST fail NAME DETAIL        a check that failed in the guest
#   VUBTEST region OFF LEN SHA256   bytes the host must find in the image
#   VUBTEST zero OFF LEN            a range the host must find all zero
#   VUBTEST fs KBYTES               an ext2 fs at offset 0, for e2fsck -fn
#   VUBTEST file PATH SHA256        a file in that fs, for debugfs on the host
#   VUBTEST disk BYTES SHA256       the whole disk, hashed last
#   VUBTEST done STATUS             the end was reached (STATUS: failures,
#                                   capped at 99); power-off follows
#   VUBDEMO TEXT                    a friendly line for the demo

PATH=/bin
export PATH
DEV=/dev/vda
SYS=/sys/block/vda
MIB=1048576
QUEUES=2   # run.sh starts QEMU with num-queues=2 and -smp 2
FAILS=0

ok() { echo "VUBTEST ok $*"; }

# fail NAME DETAIL: DETAIL may be multi-line command output; keep one line.
fail() {
    FAILS=$((FAILS + 1))
    echo "VUBTEST fail $1 $(echo "$2" | tr '\n' ' ')"
}

say() { echo "VUBDEMO $*"; }

# step NAME: progress, with the guest's uptime in seconds.
step() { echo "VUBTEST step $1 $(cut -d' ' -f1 /proc/uptime)"; }

# The kernel gives PID 1 no /dev, /proc or /sys; the console comes from
# devtmpfs, so (re)open it once /dev is there.
setup() {
    mount -t devtmpfs dev /dev
    exec </dev/console >/dev/console 2>&1
    mount -t proc proc /proc
    mount -t sysfs sys /sys
    MODE=$(sed -n 's/.*vubmode=\([a-z]*\).*/\1/p' /proc/cmdline)
}

# prepare.sh wrote the modules in dependency order (from modules.dep), so
# plain insmod in file order works; busybox insmod cannot resolve anything.
load_modules() {
    local mod out
    while read -r mod; do
        if ! out=$(insmod "/lib/modules/$mod.ko" 2>&1); then
            fail modules "insmod $mod: $out"
            return 1
        fi
    done </etc/modules.load
    ok modules "$(tr '\n' ' ' </etc/modules.load)"
}

# virtio_blk creates vda while it probes; devtmpfs may show it a moment later.
wait_disk() {
    local i=0
    while [ ! -b $DEV ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if [ ! -b $DEV ]; then
        fail disk-found "no $DEV after 10 s; block devices: $(ls /sys/block)"
        return 1
    fi
    SIZE=$(guest-io size $DEV)
    ok disk-found "$DEV, $SIZE bytes"
    # The feature bits the driver negotiated, as a string of 0/1 with bit 0
    # first; the host checks the ones it expects (e.g. 34, RING_PACKED).
    ok features "$(cat /sys/block/vda/device/features 2>/dev/null)"
}

# One directory per hardware queue in mq/.
nqueues() {
    set -- $SYS/mq/*
    echo $#
}

check_queues() {
    local n
    n=$(nqueues)
    if [ "$n" -eq $QUEUES ]; then
        ok queues "$n hardware queues in $SYS/mq"
    else
        fail queues "$n entries in $SYS/mq, want $QUEUES"
    fi
}

# In write-back mode the block layer turns fsync into a virtio-blk FLUSH.
set_write_back() {
    local was now
    was=$(cat $SYS/cache_type)
    echo "write back" >$SYS/cache_type 2>/dev/null
    now=$(cat $SYS/cache_type)
    if [ "$now" = "write back" ]; then
        ok cache-write-back "was: $was"
    else
        fail cache-write-back "cache_type is still '$now'"
    fi
}

# Field 16 of the stat file counts completed flush requests.
flushes() { awk '{ print $16 }' $SYS/stat; }

# on_cpu CPU CMD...: run CMD pinned to CPU, or unpinned when CPU is "any".
on_cpu() {
    local cpu="$1"
    shift
    if [ "$cpu" = any ]; then "$@"; else taskset -c "$cpu" "$@"; fi
}

# raw_rw NAME OFF LEN [CPU]: O_DIRECT write of random bytes, read them back,
# compare digests; the host then re-hashes the same bytes in the image file.
raw_rw() {
    local w r
    if ! w=$(on_cpu "${4:-any}" guest-io write $DEV "$2" "$3" 2>&1); then
        fail "$1" "write: $w"
        return
    fi
    if ! r=$(on_cpu "${4:-any}" guest-io read $DEV "$2" "$3" 2>&1); then
        fail "$1" "read: $r"
        return
    fi
    if [ "$w" = "$r" ]; then ok "$1" "$3 bytes at $2"; else fail "$1" "wrote $w, read $r"; fi
    echo "VUBTEST region $2 $3 $w"
}

# unmap_check NAME zeroout|discard OFF LEN: fill the range with random data
# first, so zeros cannot come from a never-written sparse image, then zero
# or discard it and demand zeros back.
unmap_check() {
    local out
    if ! out=$(guest-io write $DEV "$3" "$4" 2>&1); then
        fail "$1" "prefill: $out"
        return
    fi
    if out=$(guest-io "$2" $DEV "$3" "$4" 2>&1) && [ "$out" = zero ]; then
        ok "$1" "$4 bytes at $3 read back as zeros"
        echo "VUBTEST zero $3 $4"
    else
        fail "$1" "$out"
    fi
}

# irqs N: interrupts so far for virtqueue N of vda's virtio device. Each
# request queue has its own MSI-X vector, named like "virtio0-req.1".
irqs() {
    local vdev
    vdev=$(basename "$(readlink $SYS/device)")
    awk -v q="$vdev-req.$1" '$NF == q {
        for (i = 2; $i ~ /^[0-9]+$/; i++) n += $i
        print n + 0 }' /proc/interrupts
}

# With 2 CPUs and 2 queues the block layer maps CPU n to queue n, so I/O
# pinned to each CPU must raise completions on each queue's own vector.
queue_io() {
    local base="$1" cpu=0 before after
    while [ $cpu -lt $QUEUES ]; do
        before=$(irqs $cpu)
        raw_rw "cpu$cpu-io" $((base + cpu * 2 * MIB)) $MIB $cpu
        after=$(irqs $cpu)
        if [ "${after:-0}" -gt "${before:-0}" ]; then
            ok "queue$cpu-used" "$((after - before)) interrupts on virtqueue $cpu"
        else
            fail "queue$cpu-used" "no interrupt on virtqueue $cpu (count '$after')"
        fi
        cpu=$((cpu + 1))
    done
}

# The raw checks live in the second half of the disk; the first half is
# left to the filesystem (fs_check), so the host can verify both.
raw_checks() {
    local r=$((SIZE / 2)) f0 f1
    f0=$(flushes)
    raw_rw rw-512 $((r + 512)) 512
    raw_rw rw-4k $((r + 64 * 1024)) 4096
    raw_rw rw-1m $((r + MIB + 4096)) $MIB
    raw_rw rw-last-sector $((SIZE - 512)) 512
    queue_io $((r + 4 * MIB))
    unmap_check discard discard $((r + 8 * MIB)) $MIB
    unmap_check write-zeroes zeroout $((r + 10 * MIB)) $((MIB + 3 * 512))
    f1=$(flushes)
    if [ "$f1" -gt "$f0" ]; then
        ok flush "$((f1 - f0)) flush requests"
    else
        fail flush "no flush request completed (stat field 16 stayed at $f1)"
    fi
}

# fill_file PATH LEN: a file of random bytes; its digest goes to HASH.
fill_file() {
    if HASH=$(guest-io fill "$1" "$2" 2>&1); then
        return 0
    fi
    fail fs-write "$1: $HASH"
    return 1
}

# readback PATH SHA256: busybox sha256sum, an implementation independent of
# guest-io's, must agree with the digest of the bytes written.
readback() {
    local got
    got=$(sha256sum "/mnt$1" 2>&1)
    got=${got%% *}
    if [ "$got" = "$2" ]; then
        ok "fs-read$1"
        echo "VUBTEST file $1 $2"
    else
        fail "fs-read$1" "sha256 $got, wrote $2"
    fi
}

# mkfs_mount KBYTES: a fresh ext2 of KBYTES at offset 0, mounted on /mnt.
mkfs_mount() {
    local out
    if ! out=$(mke2fs -L vubtest $DEV "$1" 2>&1); then
        fail mkfs "$out"
        return 1
    fi
    echo "VUBTEST fs $1"
    if ! out=$(mount -t ext4 $DEV /mnt 2>&1); then
        fail mount "$out"
        return 1
    fi
    ok mkfs-mount "$1 KiB ext2 at offset 0"
}

# remount: unmount (writing everything back) and mount again, so reads come
# from the disk and not from the page cache.
remount() {
    umount /mnt && mount -t ext4 -o ro $DEV /mnt
}

fs_check() {
    local a b c out
    mkfs_mount $((SIZE / 2 / 1024)) || return
    mkdir -p /mnt/dir
    fill_file /mnt/small 4096 || return
    a=$HASH
    fill_file /mnt/dir/big $((3 * MIB + 123)) || return
    b=$HASH
    fill_file /mnt/dir/one 1 || return
    c=$HASH
    sync
    if ! out=$(remount 2>&1); then
        fail remount "$out"
        return
    fi
    readback /small "$a"
    readback /dir/big "$b"
    readback /dir/one "$c"
    umount /mnt
}

disk_sum() {
    local h
    if h=$(guest-io sum $DEV 2>&1); then
        ok disk-sum
        echo "VUBTEST disk $SIZE $h"
    else
        fail disk-sum "$h"
    fi
}

main_test() {
    step modules
    load_modules || return
    step disk
    wait_disk || return
    if [ "$SIZE" -lt $((32 * MIB)) ]; then
        fail disk-size "$SIZE bytes; the checks need at least 32 MiB"
        return
    fi
    check_queues
    set_write_back
    step raw
    raw_checks
    step fs
    fs_check
    step disk-sum
    disk_sum
}

# Read-only exports: the whole disk's digest is all there is to compare.
main_read() {
    step modules
    load_modules || return
    step disk
    wait_disk || return
    step disk-sum
    disk_sum
}

# Live resize: the size in /sys/block/vda/size (512-byte sectors) changes
# without a reboot once the device's config-change interrupt arrived; then
# the new end of the disk must take I/O. "resize-wait" tells the host to
# grow the image now.
main_resize() {
    local before now i=0
    step modules
    load_modules || return
    step disk
    wait_disk || return
    before=$(cat $SYS/size)
    raw_rw rw-before $((before * 512 - 2 * MIB)) $MIB
    step resize-wait
    now=$before
    while [ "$now" = "$before" ] && [ $i -lt 600 ]; do
        sleep 0.1
        i=$((i + 1))
        now=$(cat $SYS/size)
    done
    if [ "$now" -gt "$before" ]; then
        ok resize "$SYS/size $before -> $now sectors after $((i / 10)) s, no reboot"
    else
        fail resize "$SYS/size still $now sectors after 60 s"
        return
    fi
    raw_rw rw-new-area $((now * 512 - MIB)) $MIB
    raw_rw rw-across-old-end $((before * 512 - 4096)) 8192
}

# The fault test (tests/guest/test-fault.sh): while the host kills the
# back-end with SIGKILL and starts it again, again and again, fio writes
# 4 KiB blocks at random with crc32c headers over the first 32 MiB (16 in
# flight, an fsync, so a FLUSH, every 32 writes, each block read back and
# checked within 256 writes and all of them at the end), and guest-io
# writes a journal of O_DSYNC blocks from 32 MiB on, one at a time. Both
# stop once the host writes "VUBSTOP" into the last sector. Then: fio's
# verdict, the kernel log (no I/O error of any kind), and the journal's
# place for the host, which checks every block the console acknowledged.
JOURNAL_OFF=$((32 * MIB))
main_fault() {
    local jrc frc errs
    step modules
    load_modules || return
    step disk
    wait_disk || return
    set_write_back
    mkdir -p /tmp
    /usr/bin/fio --name=fault --filename=$DEV --offset=0 --size=$((32 * MIB)) --rw=randwrite --bs=4k \
        --direct=1 --ioengine=libaio --iodepth=16 --fsync=32 --verify=crc32c --verify_backlog=256 \
        --verify_fatal=1 --time_based --runtime=900 --trigger-file=/tmp/fio-stop --trigger=true \
        --output=/tmp/fio.out >/tmp/fio.err 2>&1 &
    local fio_pid=$!
    step fault-io
    guest-io journal $DEV $JOURNAL_OFF $(((SIZE - JOURNAL_OFF) / 512 - 1)) $((SIZE - 512))
    jrc=$?
    step fault-stop
    touch /tmp/fio-stop
    wait $fio_pid
    frc=$?
    if [ $jrc -eq 0 ]; then ok fault-journal-writes "every journal write returned without error"; else fail fault-journal-writes "guest-io journal exited with status $jrc"; fi
    if [ $frc -eq 0 ] && grep -q "err= 0" /tmp/fio.out; then
        ok fault-fio "$(grep -E '^ *(READ|WRITE):' /tmp/fio.out | sed 's/,.*io=/ io=/; s/,.*//' | tr '\n' ' ')"
    else
        fail fault-fio "status $frc: $(cat /tmp/fio.err; grep -iE 'err=|verify|error' /tmp/fio.out | head -n 5)"
    fi
    errs=$(dmesg | grep -iE "I/O error|blk_update_request|critical (medium|target)|blocked for more than [0-9]+ seconds|is not a head|virtio.*(error|broken)" | head -n 5)
    if [ -z "$errs" ]; then ok fault-dmesg "no block error in the kernel log"; else fail fault-dmesg "$errs"; fi
    ok fault-journal "journal at $JOURNAL_OFF"
    echo "VUBTEST journal $JOURNAL_OFF"
}

# The demo: the same building blocks, narrated.
main_demo() {
    local hello before
    say "Guest kernel $(uname -r) is up; loading the virtio modules"
    load_modules || return
    wait_disk || return
    say "Found $DEV: $((SIZE / MIB)) MiB, served over vhost-user with $(nqueues) queues"
    say "Formatting $DEV as ext2 with busybox mke2fs and mounting it on /mnt"
    mkfs_mount $((SIZE / 1024)) || return
    echo "Hello from the guest, through vhost-user-blk!" >/mnt/hello.txt
    hello=$(sha256sum /mnt/hello.txt | cut -d' ' -f1)
    fill_file /mnt/random.bin $((4 * MIB)) || return
    say "Wrote /mnt/hello.txt and /mnt/random.bin (4 MiB of random bytes)"
    remount || return
    say "Unmounted and mounted again; hello.txt reads: $(cat /mnt/hello.txt)"
    before=$FAILS
    readback /hello.txt "$hello"
    readback /random.bin "$HASH"
    if [ "$FAILS" = "$before" ]; then
        say "Both files read back with the sha256 they were written with"
    else
        say "A file read back DIFFERENT from what was written"
    fi
    umount /mnt
    say "Unmounted; powering off"
}

# main: the checks of the chosen mode; exits with the number of failures.
main() {
    case $MODE in
    probe) echo "VUBTEST probe-ok" ;;
    demo) main_demo ;;
    test) main_test ;;
    read) main_read ;;
    resize) main_resize ;;
    fault) main_fault ;;
    *) fail mode "unknown vubmode '$MODE'" ;;
    esac
    exit $((FAILS > 99 ? 99 : FAILS))
}

setup
echo # SeaBIOS leaves the cursor mid-line: start our output on a fresh one
step "init-$MODE"
# A subshell, so that even a shell error in the checks gets to power-off.
(main)
status=$?
[ $status -ne 0 ] && dmesg | tail -n 40
echo "VUBTEST done $status"
step power-off
sync
poweroff -f
