#!/usr/bin/env python3
"""Writes the raw-deflate fixtures that tests/test-inflate.c checks vub_inflate against.

Each fixture NAME is NAME.deflate, produced by the zlib that Python links (the same
deflate QEMU calls), and the output it must inflate to. Small outputs are stored
as RAW.raw, shared by the fixtures that compress the same data; outputs over
16 KiB (a 64 KiB and a 2 MiB cluster, a 32 KiB window test) are described only
by length and CRC-32, to keep the commit small. MANIFEST lists every fixture,
one per line, with "-" for RAW when there is no .raw file:

    NAME RAW RAW_LENGTH CRC32_HEX

Everything is derived from fixed seeds, so running the script again with the same
zlib writes the same files. Run from anywhere: python3 tests/data/inflate/gen.py
"""

import os
import random
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
RAW_FILE_LIMIT = 16 * 1024

WORDS = (
    "the a cluster sector image guest host block queue ring request reply device "
    "driver virtio vhost user qcow2 table entry offset length bytes read write flush "
    "discard zero backing file header refcount snapshot compressed deflate window "
    "code literal distance match stream final stored fixed dynamic huffman bit byte "
    "is are was will may must should not and or of to in on for with from by at "
    "every each one two three first last next previous when then because so that"
).split()


def text(seed, size):
    """Sentences of plausible words: the sort of thing a filesystem is full of."""
    rng = random.Random(seed)
    out = []
    length = 0
    while length < size:
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
        sentence = " ".join(words).capitalize() + rng.choice([". ", ". ", "? ", ".\n"])
        out.append(sentence)
        length += len(sentence)
    return "".join(out).encode("ascii")[:size]


def random_bytes(seed, size):
    rng = random.Random(seed)
    return bytes(rng.getrandbits(8) for _ in range(size))


def binary_records(seed, size):
    """Little-endian records with counters and small fields, like metadata blocks."""
    rng = random.Random(seed)
    out = bytearray()
    index = 0
    while len(out) < size:
        out += index.to_bytes(4, "little")
        out += (index * 4096 + 0x10000).to_bytes(8, "little")
        out += rng.choice([0, 0, 1, 0x80000000]).to_bytes(4, "little")
        out += bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 2, 4])))
        out += bytes(12)
        index += 1
    return bytes(out[:size])


def repetitive(size):
    """Runs and short periods: overlapping copies with distances 1..7."""
    out = bytearray()
    period = 1
    while len(out) < size:
        unit = bytes(range(0x41, 0x41 + period))
        out += unit * (300 // period + 1)
        out += b"\0" * 517
        period = period % 7 + 1
    return bytes(out[:size])


def far_matches(seed):
    """A 1 KiB random block, 30 KiB of filler, then the same block again:
    matches about 31 KiB back, inside a 32 KiB window but outside a 4 KiB one."""
    block = random_bytes(seed, 1024)
    filler = text(seed + 1, 2048) + bytes(29 * 1024)
    return block + filler + block + text(seed + 2, 512)


def cluster_2m(seed):
    """A 2 MiB cluster (the largest qcow2 allows): mostly zeros, with a short text
    record and a 1 KiB binary table every 128 KiB, as a sparse filesystem might be."""
    out = bytearray(2 * 1024 * 1024)
    for i, at in enumerate(range(0, len(out), 128 * 1024)):
        record = text(seed + i, 200)
        table = binary_records(seed + i, 1024)
        out[at:at + len(record)] = record
        out[at + 4096:at + 4096 + len(table)] = table
    return bytes(out)


def deflate(data, level, wbits, strategy=zlib.Z_DEFAULT_STRATEGY):
    """Raw deflate (negative wbits: no zlib header or trailer), as QEMU writes it."""
    c = zlib.compressobj(level, zlib.DEFLATED, wbits, 8, strategy)
    return c.compress(data) + c.flush(zlib.Z_FINISH)


def deflate_with_flushes(data, level, wbits):
    """Several blocks, including the empty stored blocks a sync or full flush writes."""
    c = zlib.compressobj(level, zlib.DEFLATED, wbits)
    out = bytearray()
    modes = [zlib.Z_SYNC_FLUSH, zlib.Z_FULL_FLUSH, zlib.Z_NO_FLUSH, zlib.Z_SYNC_FLUSH]
    piece = len(data) // len(modes)
    for i, mode in enumerate(modes):
        out += c.compress(data[i * piece:(i + 1) * piece])
        if mode != zlib.Z_NO_FLUSH:
            out += c.flush(mode)
    out += c.compress(data[len(modes) * piece:])
    out += c.flush(zlib.Z_SYNC_FLUSH)  # an empty stored block after the data
    out += c.flush(zlib.Z_FINISH)
    return bytes(out)


def fixtures():
    """(fixture name, name of its raw data, raw data, deflate stream)."""
    t6k = text(1, 6 * 1024)
    t2k = t6k[:2048]
    r3k = random_bytes(2, 3000)
    r2k = random_bytes(3, 2000)
    rep8k = repetitive(8192)
    rep4k = repetitive(4096)
    bin12k = binary_records(4, 12288)
    far = far_matches(5)
    big = cluster_2m(6)
    zero = bytes(65536)
    return [
        ("text-l1-w12", "text-6k", t6k, deflate(t6k, 1, -12)),
        ("text-l6-w12", "text-6k", t6k, deflate(t6k, 6, -12)),
        ("text-l9-w12", "text-6k", t6k, deflate(t6k, 9, -12)),
        ("text-l9-w15", "text-6k", t6k, deflate(t6k, 9, -15)),
        ("random-l6-w12", "random-3000", r3k, deflate(r3k, 6, -12)),
        ("random-l0-w15", "random-2000", r2k, deflate(r2k, 0, -15)),
        ("repeat-l9-w12", "repeat-8k", rep8k, deflate(rep8k, 9, -12)),
        ("binary-l6-w12", "binary-12k", bin12k, deflate(bin12k, 6, -12)),
        ("fixed-l6-w12", "text-2k", t2k, deflate(t2k, 6, -12, zlib.Z_FIXED)),
        ("huffman-only-l6-w15", "text-6k", t6k, deflate(t6k, 6, -15, zlib.Z_HUFFMAN_ONLY)),
        ("rle-l6-w12", "repeat-4k", rep4k, deflate(rep4k, 6, -12, zlib.Z_RLE)),
        ("flushes-l6-w15", "text-6k", t6k, deflate_with_flushes(t6k, 6, -15)),
        ("empty-l6-w15", "empty", b"", deflate(b"", 6, -15)),
        ("zero-64k-l6-w12", "-", zero, deflate(zero, 6, -12)),
        ("far-l9-w15", "-", far, deflate(far, 9, -15)),
        ("cluster-2m-l6-w12", "-", big, deflate(big, 6, -12)),
        ("cluster-2m-l1-w15", "-", big, deflate(big, 1, -15)),
    ]


def main():
    for old in os.listdir(HERE):
        if old.endswith((".deflate", ".raw")):
            os.remove(os.path.join(HERE, old))
    manifest = []
    for name, raw_name, raw, packed in fixtures():
        # Every fixture must round-trip through zlib itself before it can judge vub.
        assert zlib.decompress(packed, -15) == raw, name
        assert (raw_name == "-") == (len(raw) > RAW_FILE_LIMIT), name
        with open(os.path.join(HERE, name + ".deflate"), "wb") as f:
            f.write(packed)
        if raw_name != "-":
            with open(os.path.join(HERE, raw_name + ".raw"), "wb") as f:
                f.write(raw)
        manifest.append("%s %s %d %08x" % (name, raw_name, len(raw), zlib.crc32(raw)))
        print("%-20s %8d -> %6d bytes" % (name, len(raw), len(packed)))
    with open(os.path.join(HERE, "MANIFEST"), "w") as f:
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
