#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use (with the argument
# `bench`, also those of tests/bench-serve.sh), when run as root
# on Debian and something is missing. Otherwise says what is missing; the
# tests that need it then print "skip - ..." lines, never silently.
set -u
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have cc || need+=(build-essential)
have clang || need+=(clang)
have qemu-system-x86_64 || need+=(qemu-system-x86)
have qemu-storage-daemon || need+=(qemu-system-common)
have qemu-img || need+=(qemu-utils)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || need+=(busybox-static)
have e2fsck || need+=(e2fsprogs)
have cpio || need+=(cpio)
have xz || need+=(xz-utils)
have zstd || need+=(zstd)
have python3 || need+=(python3)
have fio || need+=(fio)
have pkg-config || need+=(pkg-config)
# `deps.sh bench`: what tests/bench-serve.sh adds (fio, DPDK's vhost_blk example)
if [ "${1:-}" = bench ]; then
    have fio || need+=(fio)
    dpkg-query -W -f='${Status}' libdpdk-dev 2>/dev/null | grep -q "ok installed" || need+=(libdpdk-dev)
    [ -d /usr/share/dpdk/examples/vhost_blk ] || need+=(dpdk-doc)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && have apt-get; then
    echo "# installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
else
    echo "# missing Debian packages (install them as root): ${need[*]}"
fi
exit 0
