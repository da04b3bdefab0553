#!/bin/bash
# prepare.sh [CACHE_DIR] - builds the test guest from Debian packages.
#
# Produces, in CACHE_DIR (default build/guest-cache in the repository):
#   vmlinuz             the kernel of Debian's linux-image-amd64
#   initramfs.cpio.gz   busybox, guest-io, the modules and /init (init.sh)
#   initramfs-fault.cpio.gz  the same plus fio and its libraries (test-fault.sh)
# Nothing is installed on the host: the packages are fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` inside the cache.
# Every step is skipped when its output is already there and up to date,
# so a second run takes a fraction of a second.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:-$here/../../build/guest-cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# The modules the guest needs by name; modules.dep adds their dependencies
# (virtio_ring, virtio, virtio_pci_*_dev, jbd2, mbcache, crc16). ext4 asks
# for "crc32c" only as a soft dependency, through the crypto API when it
# mounts a filesystem with checksums, and modules.dep does not list it:
# crc32c_generic is named for that (crc32c-intel needs SSE4.2, which
# QEMU's default CPU model lacks; the generic one always loads).
WANT_MODULES=(virtio_pci virtio_blk crc32c_generic ext4)

log() { echo "prepare: $*" >&2; }

# linux-image-amd64 is a metapackage: its Depends names the versioned image.
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

# apt-cache knows nothing until `apt-get update` has run once on the machine.
resolve_kernel_package() {
    local pkg
    pkg=$(kernel_package)
    if [ -z "$pkg" ]; then
        log "no package lists yet; running apt-get update"
        apt-get update -qq >&2
        pkg=$(kernel_package)
    fi
    [ -n "$pkg" ] || { log "cannot resolve linux-image-amd64"; exit 1; }
    echo "$pkg"
}

# Downloads the two .debs into CACHE/debs unless they are there already.
fetch_debs() {
    local debs=$cache/debs pkg
    if compgen -G "$debs/linux-image-*.deb" >/dev/null &&
        compgen -G "$debs/busybox-static_*.deb" >/dev/null; then
        return
    fi
    pkg=$(resolve_kernel_package)
    log "downloading $pkg and busybox-static"
    mkdir -p "$debs"
    # As root apt would hand the download to its _apt user, which cannot
    # write here; it warns and goes on as root. Say so up front instead.
    (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg" busybox-static >&2)
}

# One .deb of the given name prefix, unpacked into a fresh directory.
unpack() {
    local prefix=$1 dest=$2 deb
    deb=$(compgen -G "$cache/debs/$prefix*.deb" | head -n 1)
    rm -rf "$dest"
    mkdir -p "$dest"
    dpkg-deb -x "$deb" "$dest"
}

# Debian 12 ships /lib/modules; merged-/usr releases ship /usr/lib/modules.
# Prints the directory that depmod -b wants as its base.
modules_base() {
    local tree=$1
    if [ -d "$tree/lib/modules" ]; then echo "$tree"; else echo "$tree/usr"; fi
}

# dep_line NAME: the modules.dep line of module file NAME(.ko[.xz|.zst|.gz]).
dep_line() {
    grep -E "(^|/)$1\.ko(\.xz|\.zst|\.gz)?:" "$moddir/modules.dep" | head -n 1 || true
}

# visit PATH: prints PATH's dependencies (depth first) and then PATH, each
# module once: the order in which insmod can load them.
declare -A visited=()
visit() {
    local path=$1 dep deps
    [ -z "${visited[$path]:-}" ] || return 0
    visited[$path]=1
    deps=$(awk -v p="$path:" '$1 == p { $1 = ""; print }' "$moddir/modules.dep")
    for dep in $deps; do visit "$dep"; done
    echo "$path"
}

# Copies one module out of the tree, decompressed: busybox insmod reads
# only plain .ko files.
install_module() {
    local path=$1 out=$2
    case $path in
    *.ko.xz) xz -dc <"$moddir/$path" ;;
    *.ko.zst) zstd -dqc <"$moddir/$path" ;;
    *.ko.gz) gzip -dc <"$moddir/$path" ;;
    *) cat "$moddir/$path" ;;
    esac >"$out"
}

# Kernel step: vmlinuz plus the needed modules (CACHE/modules/*.ko and their
# load order in CACHE/modules/load-order). The 400 MB tree is then dropped.
build_kernel() {
    [ -s "$cache/vmlinuz" ] && [ -s "$cache/modules/load-order" ] && return
    local tree=$cache/kernel-tree base version name path
    log "unpacking the kernel"
    unpack linux-image- "$tree"
    base=$(modules_base "$tree")
    version=$(basename "$(compgen -G "$base/lib/modules/*" | head -n 1)")
    moddir=$base/lib/modules/$version
    # The package has no modules.dep (its postinst runs depmod); busybox,
    # just unpacked too, makes one without kmod on the host. It reads plain
    # and .ko.xz modules (what Debian ships), not .ko.zst.
    "$cache/busybox" depmod -b "$base" "$version"
    rm -rf "$cache/modules"
    mkdir -p "$cache/modules"
    for name in "${WANT_MODULES[@]}"; do
        path=$(dep_line "$name")
        if [ -z "$path" ] && grep -qE "(^|/)$name\.ko\$" "$moddir/modules.builtin"; then
            continue # built into this kernel (virtio_pci is, from 6.12 on)
        fi
        [ -n "$path" ] || { log "module $name not in modules.dep"; exit 1; }
        visit "${path%%:*}"
    done | while read -r path; do
        name=$(basename "$path")
        name=${name%%.ko*}
        install_module "$path" "$cache/modules/$name.ko"
        echo "$name"
    done >"$cache/modules/load-order.tmp"
    cp "$tree/boot/vmlinuz-$version" "$cache/vmlinuz"
    echo "$version" >"$cache/kernel-version"
    mv "$cache/modules/load-order.tmp" "$cache/modules/load-order"
    rm -rf "$tree"
    log "kernel $version, modules: $(tr '\n' ' ' <"$cache/modules/load-order")"
}

build_busybox() {
    [ -x "$cache/busybox" ] && return
    unpack busybox-static_ "$cache/busybox-tree"
    cp "$cache/busybox-tree/bin/busybox" "$cache/busybox"
    rm -rf "$cache/busybox-tree"
}

# guest-io is rebuilt when its source changes.
build_guest_io() {
    [ "$cache/guest-io" -nt "$here/guest-io.c" ] && return
    log "compiling guest-io"
    gcc -static -O2 -Wall -Wextra -o "$cache/guest-io" "$here/guest-io.c"
}

# True when the initramfs is newer than everything that goes into it.
initramfs_fresh() {
    local out=$cache/initramfs.cpio.gz f
    [ -s "$out" ] || return 1
    for f in "$here/init.sh" "$here/prepare.sh" "$cache/guest-io" \
        "$cache/busybox" "$cache/modules/load-order"; do
        [ "$out" -nt "$f" ] || return 1
    done
}

# The initramfs root: busybox with one symlink per applet, guest-io, the
# modules and their load order, and /init.
stage_root() {
    local root=$1 applet
    rm -rf "$root"
    mkdir -p "$root"/{bin,dev,proc,sys,mnt,etc,lib/modules}
    cp "$cache/busybox" "$cache/guest-io" "$root/bin/"
    for applet in $("$cache/busybox" --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    cp "$cache"/modules/*.ko "$root/lib/modules/"
    cp "$cache/modules/load-order" "$root/etc/modules.load"
    install -m 755 "$here/init.sh" "$root/init"
}

build_initramfs() {
    initramfs_fresh && return
    local root=$cache/initramfs-root
    log "building initramfs.cpio.gz"
    stage_root "$root"
    # newc is the cpio format the kernel unpacks; everything owned by root.
    (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --owner=0:0) |
        gzip -6 >"$cache/initramfs.cpio.gz.tmp"
    mv "$cache/initramfs.cpio.gz.tmp" "$cache/initramfs.cpio.gz"
    rm -rf "$root"
}

# The fault test's guest runs Debian's fio too (installed on the host by
# tests/deps.sh): the binary, every shared library ldd lists and the
# dynamic loader, each at its own path, in a second archive. The kernel
# unpacks concatenated archives one after the other, so
# initramfs-fault.cpio.gz is simply the first one followed by this one;
# the other boots do not carry fio's 80 MB of libraries.
build_fio_initramfs() {
    local fio part=$cache/fio.cpio.gz out=$cache/initramfs-fault.cpio.gz root=$cache/fio-root f
    fio=$(command -v fio) || { log "fio is not installed: no initramfs-fault.cpio.gz"; return 0; }
    if ! [ -s "$part" ] || ! [ "$part" -nt "$fio" ]; then
        log "building fio.cpio.gz ($fio and its libraries)"
        rm -rf "$root"
        for f in "$fio" $(ldd "$fio" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
            mkdir -p "$root$(dirname "$f")"
            cp -L "$f" "$root$f"
        done
        (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --owner=0:0) | gzip -1 >"$part.tmp"
        mv "$part.tmp" "$part"
        rm -rf "$root"
    fi
    [ -s "$out" ] && [ "$out" -nt "$part" ] && [ "$out" -nt "$cache/initramfs.cpio.gz" ] && return
    cat "$cache/initramfs.cpio.gz" "$part" >"$out.tmp"
    mv "$out.tmp" "$out"
}

fetch_debs
build_busybox
build_kernel
build_guest_io
build_initramfs
build_fio_initramfs
