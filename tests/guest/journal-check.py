#!/usr/bin/env python3
"""journal-check.py CONSOLE IMAGE OFF - every journal block the guest
acknowledged is in the image.

The guest (guest-io journal) writes 512-byte blocks 0, 1, 2, ... one at a
time and prints "VUBJ N" on the console once block N's write returned, after
"VUBJ nonce HEX". Since each write starts only after the previous one
returned, the highest N printed means blocks 0..N were all acknowledged.
This recomputes each of those blocks (the format is in guest-io.c) and
compares it with the image at OFF + 512 * N. Prints one line:
    acked A lost L [first lost blocks...]
and exits 1 if any acknowledged block is missing or wrong, or if the console
holds no journal at all.
"""
import re
import struct
import sys

MASK = (1 << 64) - 1


def splitmix_fill(state, length):
    out = bytearray()
    while len(out) < length:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        out += struct.pack("<Q", z)
    return bytes(out[:length])


def block(n, nonce):
    return b"VUBJRNL1" + struct.pack("<QQ", n, nonce) + splitmix_fill(nonce ^ n, 512 - 24)


def main():
    console, image, off = sys.argv[1], sys.argv[2], int(sys.argv[3], 0)
    nonce, acked = None, -1
    with open(console, "rb") as f:
        for raw in f:
            line = raw.decode("ascii", "replace").strip("\r\n")
            m = re.fullmatch(r"VUBJ nonce ([0-9a-f]{16})", line)
            if m:
                nonce = int(m.group(1), 16)
            m = re.fullmatch(r"VUBJ (\d+)", line)
            if m:
                acked = max(acked, int(m.group(1)))
    if nonce is None:
        print("no journal on the console")
        return 1
    lost = []
    with open(image, "rb") as f:
        for n in range(acked + 1):
            f.seek(off + 512 * n)
            if f.read(512) != block(n, nonce):
                lost.append(n)
    print("acked %d lost %d%s" % (acked + 1, len(lost), "".join(" %d" % n for n in lost[:10])))
    return 1 if lost or acked < 0 else 0


if __name__ == "__main__":
    sys.exit(main())
