#!/bin/bash
# backports.sh [CACHE_DIR] - the newer generation of peers, beside Debian 12's.
#
# Fetches QEMU 10.0 (qemu-system-x86, qemu-system-common, qemu-utils,
# qemu-system-data) and a Linux 6.12 kernel from Debian's bookworm-backports
# suite and unpacks them into CACHE_DIR (default build/guest-cache):
#   qemu10/root/usr/bin/...     the QEMU 10 programs, run as they are
#   qemu10/firmware/            the directory for their -L option
#   qemu10/version              "10.0.x ..." (first line of --version)
#   k6.12/debs/*.deb            the kernel (and busybox) for prepare.sh k6.12
# Nothing is installed on the host and no apt state of the host is touched:
# the suite is described in a sources file of our own (derived from the
# machine's Debian source: same URIs, Suites: bookworm-backports), and apt
# keeps its lists and cache inside CACHE_DIR. Prints nothing on stdout;
# exits non-zero (saying why on stderr) when the suite cannot be had.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:-$here/../build/guest-cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
SUITE=bookworm-backports
QEMU_PACKAGES=(qemu-system-x86 qemu-system-common qemu-utils qemu-system-data)

log() { echo "backports: $*" >&2; }

# The deb822 stanza of the machine's Debian archive (URIs ending in
# /debian), with its Suites replaced. A one-line sources.list is read too.
derive_sources() {
    local f out=$cache/apt-etc/$SUITE.sources
    mkdir -p "$cache/apt-etc"
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() {
                if (stanza != "" && uris ~ /\/debian\/?( |$)/) { printf "%s\n", stanza; found = 1 }
                stanza = ""; uris = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            /^URIs:/ { uris = $0 }
            /^Suites:/ { $0 = "Suites: " suite }
            { stanza = stanza $0 "\n" }
            END { flush(); exit !found }' "$f" >"$out.tmp" && break
    done
    if [ ! -s "$out.tmp" ] && [ -r /etc/apt/sources.list ]; then
        awk -v suite="$SUITE" '$1 == "deb" && $2 ~ /\/debian\/?$/ {
                printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n", $2, suite; exit }' \
            /etc/apt/sources.list >"$out.tmp"
    fi
    [ -s "$out.tmp" ] || { log "no Debian archive in /etc/apt to derive $SUITE from"; return 1; }
    mv "$out.tmp" "$out"
}

APT_OPTS=()
apt_setup() {
    mkdir -p "$cache/apt-lists/partial" "$cache/apt-cache/archives/partial"
    APT_OPTS=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$cache/apt-etc"
        -o "Dir::State::Lists=$cache/apt-lists" -o "Dir::Cache=$cache/apt-cache"
        -o APT::Sandbox::User=root)
    # Lists younger than a day are good enough for a test run.
    if [ -z "$(find "$cache/apt-lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
        log "apt-get update for $SUITE"
        apt-get "${APT_OPTS[@]}" update -qq >&2
    fi
}

# The newest linux-image-6.12.*-amd64-unsigned the suite has.
kernel_package() {
    apt-cache "${APT_OPTS[@]}" search --names-only '^linux-image-6\.12\.[^-]*-amd64-unsigned$' |
        awk '{ print $1 }' | sort -V | tail -n 1
}

fetch_qemu() {
    local debs=$cache/debs-qemu10 root=$cache/qemu10/root p
    [ -x "$root/usr/bin/qemu-system-x86_64" ] && [ -s "$cache/qemu10/version" ] && return
    rm -rf "$debs" "$cache/qemu10"
    mkdir -p "$debs" "$root"
    log "downloading ${QEMU_PACKAGES[*]} from $SUITE"
    (cd "$debs" && apt-get "${APT_OPTS[@]}" download -q "${QEMU_PACKAGES[@]/%//$SUITE}" >&2)
    for p in "$debs"/*.deb; do dpkg-deb -x "$p" "$root"; done
    make_firmware_dir
    "$root/usr/bin/qemu-system-x86_64" --version | head -n 1 >"$cache/qemu10/version"
}

# QEMU looks for ROMs in its -L directory first. Debian's qemu-system-data
# holds QEMU's own; the BIOS and the option ROMs come from the seabios and
# ipxe-qemu packages, which QEMU 10 takes from the host as they are. -L gets
# one directory of links: QEMU 10's files first, then the host's.
make_firmware_dir() {
    local fw=$cache/qemu10/firmware dir f name
    rm -rf "$fw"
    mkdir -p "$fw"
    for dir in "$cache/qemu10/root/usr/share/qemu" /usr/share/seabios /usr/lib/ipxe/qemu; do
        for f in "$dir"/*; do
            name=$(basename "$f")
            [ -e "$f" ] && [ ! -e "$fw/$name" ] && ln -s "$f" "$fw/$name"
        done
    done
    for name in bios-256k.bin linuxboot_dma.bin kvmvapic.bin; do
        [ -e "$fw/$name" ] || { log "firmware $name not found for QEMU 10"; return 1; }
    done
}

fetch_kernel() {
    local debs=$cache/k6.12/debs pkg
    compgen -G "$debs/linux-image-6.12*.deb" >/dev/null && return
    pkg=$(kernel_package)
    [ -n "$pkg" ] || { log "no linux-image-6.12.*-amd64-unsigned in $SUITE"; return 1; }
    log "downloading $pkg from $SUITE"
    mkdir -p "$debs"
    (cd "$debs" && apt-get "${APT_OPTS[@]}" download -q "$pkg/$SUITE" >&2)
    # prepare.sh takes busybox from the same directory as the kernel.
    if ! cp "$cache"/debs/busybox-static_*.deb "$debs/" 2>/dev/null; then
        (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root busybox-static >&2)
    fi
}

if [ -x "$cache/qemu10/root/usr/bin/qemu-system-x86_64" ] && [ -s "$cache/qemu10/version" ] &&
    compgen -G "$cache/k6.12/debs/linux-image-6.12*.deb" >/dev/null; then
    exit 0
fi
command -v apt-get >/dev/null || { log "apt-get missing"; exit 1; }
derive_sources
apt_setup
fetch_qemu
fetch_kernel
