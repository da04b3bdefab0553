#!/usr/bin/env python3
"""Writes the zstd fixtures that tests/test-zstd.c checks vub_zstd_decompress against.

Each fixture NAME is NAME.zst, made by the zstd command line tool (Debian's `zstd`,
the libzstd QEMU links) from data derived from fixed seeds, so it can be rebuilt.
MANIFEST lists them, one per line:

    NAME RAW_LENGTH CRC32_HEX

The data are chosen to reach every part of the format the tool writes: raw blocks
(noise), RLE blocks (zeros), compressed blocks with raw, Huffman and treeless
literals in 1 and 4 streams, direct and FSE-compressed Huffman weights, a block
with no sequences, sequence tables predefined, FSE-described and repeated, frames with and without a
content size and a checksum, windows smaller than the content, several frames one
after another, and a skippable frame. tests/test-zstd.c checks that the corpus as a
whole does reach each of these (it walks the frames itself), so a zstd that encodes
differently cannot quietly shrink the coverage.

Run from anywhere: python3 tests/data/zstd/gen.py
"""

import os
import random
import struct
import subprocess
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

WORDS = (
    "the a cluster sector image guest host block queue ring request reply device "
    "driver virtio vhost user qcow2 table entry offset length bytes read write flush "
    "discard zero backing file header refcount snapshot compressed zstd window frame "
    "literal sequence match stream huffman fse state weight bit byte offset repeat "
    "is are was will may must should not and or of to in on for with from by at"
).split()


def text(seed, size):
    rng = random.Random(seed)
    out, length = [], 0
    while length < size:
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
        sentence = " ".join(words).capitalize() + rng.choice([". ", ". ", "? ", ".\n"])
        out.append(sentence)
        length += len(sentence)
    return "".join(out).encode("ascii")[:size]


def noise(seed, size):
    return random.Random(seed).randbytes(size)


def records(seed, size):
    """Little-endian records with counters and small fields, like metadata."""
    rng = random.Random(seed)
    out, index = bytearray(), 0
    while len(out) < size:
        out += struct.pack("<IQI", index, index * 4096 + 0x10000, rng.choice([0, 0, 1, 0x80000000]))
        out += bytes(rng.choice(b"abc\0") for _ in range(rng.randint(0, 12)))
        index += 1
    return bytes(out[:size])


def mixed(seed, size):
    """Stretches of text (cut from one 64 KiB page, so matches reach far back),
    short noise, zeros, one repeated byte and a small alphabet."""
    rng = random.Random(seed)
    page = text(seed, 65536)
    out = bytearray()
    while len(out) < size:
        n = rng.choice([300, 1000, 4096, 7777, 20000])
        kind = rng.random()
        if kind < 0.4:
            at = rng.randrange(65536 - n)
            out += page[at:at + n]
        elif kind < 0.5:
            out += noise(rng.randrange(1 << 30), min(n, 400))
        elif kind < 0.7:
            out += bytes(n)
        elif kind < 0.85:
            out += bytes([rng.randrange(256)]) * n
        else:
            out += bytes(rng.choice(b"acgt") for _ in range(n))
    return bytes(out[:size])


def zstd(data, *args, stdin=False):
    """Compresses data with the zstd tool; stdin=True hides the size from it."""
    cmd = ["zstd", "-q", "-c", *args]
    if stdin:
        return subprocess.run(cmd, input=data, stdout=subprocess.PIPE, check=True).stdout
    path = os.path.join(HERE, ".input")
    with open(path, "wb") as f:
        f.write(data)
    try:
        return subprocess.run(cmd + [path], stdout=subprocess.PIPE, check=True).stdout
    finally:
        os.unlink(path)


def alphabet(seed, size, letters):
    """Random bytes below `letters`: Huffman pays, matches are rare."""
    rng = random.Random(seed)
    return bytes(rng.randrange(letters) for _ in range(size))


def skippable(payload):
    return struct.pack("<II", 0x184D2A53, len(payload)) + payload


def main():
    t1k, t64k, t256k = text(1, 1000), text(2, 65536), text(3, 262144)
    fixtures = [
        ("empty", b"", zstd(b"")),
        ("text-1k-l1", t1k, zstd(t1k, "-1")),
        ("text-1k-l19", t1k, zstd(t1k, "-19")),
        ("text-64k-fast5", t64k, zstd(t64k, "--fast=5")),
        ("text-64k-l1", t64k, zstd(t64k, "-1")),
        ("text-64k-l3-nocheck", t64k, zstd(t64k, "-3", "--no-check")),
        ("text-64k-l9", t64k, zstd(t64k, "-9")),
        ("text-64k-l19", t64k, zstd(t64k, "-19")),
        ("text-64k-w10", t64k, zstd(t64k, "-6", "--zstd=wlog=10")),
        ("text-64k-stream", t64k, zstd(t64k, "-3", stdin=True)),
        ("text-256k-l19-nocheck", t256k, zstd(t256k, "-19", "--no-check")),
        ("noise-3000", noise(4, 3000), zstd(noise(4, 3000), "-3")),
        ("noise-20k", noise(5, 20000), zstd(noise(5, 20000), "-1")),
        ("zeros-64k", bytes(65536), zstd(bytes(65536), "-3")),
        ("zeros-2m-stream", bytes(2 << 20), zstd(bytes(2 << 20), "-3", stdin=True)),
        ("byte-300k", b"\x5a" * 300000, zstd(b"\x5a" * 300000, "-1", "--no-check")),
        ("records-64k-l12", records(6, 65536), zstd(records(6, 65536), "-12")),
        ("mixed-512k-l3", mixed(7, 524288), zstd(mixed(7, 524288), "-3")),
        ("mixed-512k-l19", mixed(7, 524288), zstd(mixed(7, 524288), "-19", "--long=20")),
        ("mixed-2m-l1", mixed(8, 2 << 20), zstd(mixed(8, 2 << 20), "-1")),
    ]
    s8 = alphabet(12, 150, 8)
    fixtures.append(("alphabet8-150-l1", s8, zstd(s8, "-1")))
    a, b = text(9, 5000), records(10, 7000)
    fixtures.append(("two-frames", a + b, zstd(a, "-3") + zstd(b, "-3", "--no-check")))
    fixtures.append(("skippable-first", a, skippable(b"vub test payload") + zstd(a, "-5")))
    fixtures.append(("skippable-between", a + b, zstd(a, "-1") + skippable(b"") + zstd(b, "-1")))

    with open(os.path.join(HERE, "MANIFEST"), "w") as m:
        for name, raw, packed in fixtures:
            with open(os.path.join(HERE, name + ".zst"), "wb") as f:
                f.write(packed)
            m.write("%s %d %08x\n" % (name, len(raw), zlib.crc32(raw)))


if __name__ == "__main__":
    main()
