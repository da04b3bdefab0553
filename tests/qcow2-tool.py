#!/usr/bin/env python3
"""Helpers for tests/test-qcow2.sh.

  qcow2-tool.py mutate IN OUT CASE     write IN with one named defect as OUT
  qcow2-tool.py cases                  list the CASE names
  qcow2-tool.py fuzz IN OUTDIR SEED N  write N randomly damaged copies of IN
  qcow2-tool.py sparse-cmp A B [--b-may-be-longer]
                                       compare two (sparse) files quickly
  qcow2-tool.py pattern OUT BYTES SEED write mixed test data: text, noise, zeros
  qcow2-tool.py compressed-stats IMG   count compressed clusters, and those crossing a host cluster

The mutations follow QEMU's tests/qemu-iotests/080 in spirit: each breaks
one rule of docs/interop/qcow2.txt by editing header fields or table entries
in place. Field offsets are the spec's ("Header", "Snapshot table entry").
"""
import os
import random
import struct
import sys

# ---- a minimal qcow2 reader: just enough to find what to break -------------

HDR = {  # name: (offset, struct format)
    'magic': (0, '>I'), 'version': (4, '>I'), 'backing_file_offset': (8, '>Q'),
    'backing_file_size': (16, '>I'), 'cluster_bits': (20, '>I'), 'size': (24, '>Q'),
    'crypt_method': (32, '>I'), 'l1_size': (36, '>I'), 'l1_table_offset': (40, '>Q'),
    'refcount_table_offset': (48, '>Q'), 'refcount_table_clusters': (56, '>I'),
    'nb_snapshots': (60, '>I'), 'snapshots_offset': (64, '>Q'),
    'incompatible_features': (72, '>Q'), 'compatible_features': (80, '>Q'),
    'autoclear_features': (88, '>Q'), 'refcount_order': (96, '>I'), 'header_length': (100, '>I'),
}
EXT_BACKING_FORMAT = 0xe2792aca
EXT_FEATURE_NAMES = 0x6803f857
EXT_CRYPTO = 0x0537be77
OFFSET_MASK = 0x00fffffffffffe00


class Image:
    def __init__(self, data):
        self.d = bytearray(data)

    def get(self, name):
        off, fmt = HDR[name]
        return struct.unpack_from(fmt, self.d, off)[0]

    def set(self, name, value):
        off, fmt = HDR[name]
        struct.pack_into(fmt, self.d, off, value)

    def u64(self, off):
        return struct.unpack_from('>Q', self.d, off)[0]

    def put64(self, off, v):
        struct.pack_into('>Q', self.d, off, v & (2**64 - 1))

    @property
    def cluster(self):
        return 1 << self.get('cluster_bits')

    @property
    def extl2(self):
        return self.get('version') >= 3 and (self.get('incompatible_features') >> 4) & 1

    def header_length(self):
        return 72 if self.get('version') < 3 else self.get('header_length')

    def extensions(self):
        """(offset of the extension header, type, length) for each."""
        pos = self.header_length()
        end = self.get('backing_file_offset') or self.cluster
        out = []
        while pos + 8 <= end:
            t, n = struct.unpack_from('>II', self.d, pos)
            if t == 0:
                break
            out.append((pos, t, n))
            pos += 8 + ((n + 7) & ~7)
        return out

    def l2_entries(self):
        """(file offset of the entry, entry) for every L2 entry in use."""
        out = []
        l1 = self.get('l1_table_offset')
        esize = 16 if self.extl2 else 8
        for i in range(self.get('l1_size')):
            l2 = self.u64(l1 + 8 * i) & OFFSET_MASK
            if not l2 or l2 + self.cluster > len(self.d):
                continue
            for j in range(self.cluster // esize):
                at = l2 + j * esize
                e = self.u64(at)
                if e or (esize == 16 and self.u64(at + 8)):
                    out.append((at, e))
        return out

    def first_entry(self, want):
        for at, e in self.l2_entries():
            compressed = (e >> 62) & 1
            if want == 'compressed' and compressed:
                return at, e
            if want == 'data' and not compressed and e & OFFSET_MASK:
                return at, e
            if want == 'zero' and not compressed and e & 1:
                return at, e
        raise SystemExit('no %s L2 entry in this image' % want)

    def snapshot0(self):
        off = self.get('snapshots_offset')
        if not self.get('nb_snapshots'):
            raise SystemExit('no snapshots in this image')
        return off


# ---- named defects -----------------------------------------------------------

def feature_table_rename(img, bit, name, kind=0):
    for pos, t, n in img.extensions():
        if t == EXT_FEATURE_NAMES and n >= 48:
            img.d[pos + 8] = kind
            img.d[pos + 9] = bit
            raw = name.encode()[:46]
            img.d[pos + 10:pos + 56] = raw + bytes(46 - len(raw))
            return
    raise SystemExit('no feature name table')


def set_ext_type(img, old, new, which=0):
    found = [p for p, t, n in img.extensions() if t == old]
    struct.pack_into('>I', img.d, found[which], new)


def duplicate_backing_format(img):
    exts = img.extensions()
    pos, t, n = [e for e in exts if e[1] == EXT_BACKING_FORMAT][0]
    # Turn the feature name table, if it comes later, into a second backing format.
    for p, t2, n2 in exts:
        if t2 == EXT_FEATURE_NAMES:
            struct.pack_into('>II', img.d, p, EXT_BACKING_FORMAT, 3)
            img.d[p + 8:p + 11] = b'raw'
            return
    raise SystemExit('no second extension to reuse')


def add_crypto_ext(img):
    for p, t, n in img.extensions():
        if t == EXT_FEATURE_NAMES:
            struct.pack_into('>II', img.d, p, EXT_CRYPTO, 16)
            return
    raise SystemExit('no extension to reuse')


def huge_unknown_ext(img):
    for p, t, n in img.extensions():
        struct.pack_into('>II', img.d, p, 0x12345678, 0xfffffff0)
        return
    raise SystemExit('no extension')


def l2_set(img, kind, fn):
    at, e = img.first_entry(kind)
    img.put64(at, fn(e, img))


def bitmap_set(img, kind, value):
    at, e = img.first_entry(kind)
    img.put64(at + 8, value)


def snap_field(img, off, fmt, value):
    struct.pack_into(fmt, img.d, img.snapshot0() + off, value)


def alloc_without_offset(img):
    at, e = img.first_entry('data')
    img.put64(at, 0)
    img.put64(at + 8, 1)


def rewrite_ext(img, kind, data):
    pos = [p for p, t, n in img.extensions() if t == kind][0]
    struct.pack_into('>I', img.d, pos + 4, len(data))
    img.d[pos + 8:pos + 8 + len(data)] = data


def truncate_to(img, n):
    del img.d[n:]


CASES = {
    # header fields
    'version-1': lambda i: i.set('version', 1),
    'version-4': lambda i: i.set('version', 4),
    'cluster-bits-8': lambda i: i.set('cluster_bits', 8),
    'cluster-bits-22': lambda i: i.set('cluster_bits', 22),
    'cluster-bits-huge': lambda i: i.set('cluster_bits', 0xffffffff),
    'header-length-huge': lambda i: i.set('header_length', 0xfffffff8),
    'header-length-unaligned': lambda i: i.set('header_length', 105),
    'header-length-short': lambda i: i.set('header_length', 96),
    # header_length 104 leaves compression_type (byte 104) out of the header: it is
    # "not present" and means zlib, and bytes 104..111 become an (unknown, empty)
    # extension header. A reader that looks at byte 104 anyway sees zstd.
    'header-length-104': lambda i: (i.set('header_length', 104), i.d.__setitem__(104, 1)),
    'refcount-order-7': lambda i: i.set('refcount_order', 7),
    'truncated-header': lambda i: truncate_to(i, 50),
    'truncated-in-header': lambda i: truncate_to(i, 90),
    # tables
    'l1-huge': lambda i: i.set('l1_size', 0x10000000),
    'l1-too-small': lambda i: i.set('l1_size', 0),
    'l1-misaligned': lambda i: i.set('l1_table_offset', i.get('l1_table_offset') + 8),
    'l1-past-eof': lambda i: i.set('l1_table_offset', (len(i.d) + i.cluster) & ~(i.cluster - 1)),
    'l1-offset-overflow': lambda i: i.set('l1_table_offset', 2**64 - i.cluster),
    'l1-at-zero': lambda i: i.set('l1_table_offset', 0),
    'refcount-huge': lambda i: i.set('refcount_table_clusters', 0xffffff),
    'refcount-misaligned': lambda i: i.set('refcount_table_offset', i.get('refcount_table_offset') + 1),
    'refcount-past-eof': lambda i: i.set('refcount_table_offset', 2**62),
    'snapshots-too-many': lambda i: i.set('nb_snapshots', 0x7fffffff),
    'snapshots-misaligned': lambda i: i.set('snapshots_offset', i.get('snapshots_offset') + 8),
    'snapshots-past-eof': lambda i: i.set('snapshots_offset', 2**60),
    'snapshot-extra-huge': lambda i: snap_field(i, 36, '>I', 0x100000),
    'snapshot-l1-misaligned': lambda i: snap_field(i, 0, '>Q', 0x200 + 8),
    'snapshot-l1-huge': lambda i: snap_field(i, 8, '>I', 0x10000000),
    'snapshot-l1-too-small': lambda i: snap_field(i, 8, '>I', 0),
    'snapshot-l1-past-eof': lambda i: snap_field(i, 0, '>Q', 2**50),
    # backing file name
    'backing-name-too-long': lambda i: i.set('backing_file_size', 1024),
    'backing-name-outside-cluster0': lambda i: (i.set('backing_file_offset', i.cluster - 4)),
    'backing-offset-past-cluster0': lambda i: i.set('backing_file_offset', i.cluster + 512),
    'backing-name-newline': lambda i: i.d.__setitem__(i.get('backing_file_offset'), 10),
    'backing-offset-in-header': lambda i: i.set('backing_file_offset', 16),
    'backing-format-unknown': lambda i: rewrite_ext(i, EXT_BACKING_FORMAT, b'vmdk'),
    'backing-format-missing': lambda i: set_ext_type(i, EXT_BACKING_FORMAT, 0x7e57ab1e),
    # extensions
    'ext-huge-unknown': huge_unknown_ext,
    'ext-duplicate': duplicate_backing_format,
    'ext-crypto-unencrypted': add_crypto_ext,
    # feature bits
    'incompat-unknown-named': lambda i: (feature_table_rename(i, 9, 'test-feature-nine'),
                                         i.set('incompatible_features', i.get('incompatible_features') | 1 << 9)),
    'incompat-unknown-unnamed': lambda i: i.set('incompatible_features', i.get('incompatible_features') | 1 << 40),
    'corrupt-bit': lambda i: i.set('incompatible_features', i.get('incompatible_features') | 2),
    'dirty-bit': lambda i: i.set('incompatible_features', i.get('incompatible_features') | 1),
    'compat-unknown': lambda i: i.set('compatible_features', i.get('compatible_features') | 1 << 33),
    'autoclear-unknown': lambda i: i.set('autoclear_features', i.get('autoclear_features') | 1 << 20),
    # dirty (known), compatible bit 33 named by the image, autoclear bit 20 named by nobody
    'features-mixed': lambda i: (feature_table_rename(i, 33, 'test-compat-33', 1),
                                 i.set('incompatible_features', i.get('incompatible_features') | 1),
                                 i.set('compatible_features', i.get('compatible_features') | 1 << 33),
                                 i.set('autoclear_features', i.get('autoclear_features') | 1 << 20)),
    'compression-bit-no-type': lambda i: i.set('incompatible_features', i.get('incompatible_features') | 8),
    'compression-type-no-bit': lambda i: i.d.__setitem__(104, 1),
    'compression-type-unknown': lambda i: (i.d.__setitem__(104, 7),
                                           i.set('incompatible_features', i.get('incompatible_features') | 8)),
    'crypt-aes': lambda i: i.set('crypt_method', 1),
    'crypt-luks': lambda i: i.set('crypt_method', 2),
    'data-file-bit-no-name': lambda i: i.set('incompatible_features', i.get('incompatible_features') | 4),
    'extl2-small-clusters': lambda i: i.set('incompatible_features', i.get('incompatible_features') | 16),
    # L1 and L2 entries
    'l1-entry-past-eof': lambda i: i.put64(i.get('l1_table_offset'), 2**54),
    'l1-entry-unaligned': lambda i: i.put64(i.get('l1_table_offset'), i.u64(i.get('l1_table_offset')) + 512),
    'l1-entry-reserved': lambda i: i.put64(i.get('l1_table_offset'), i.u64(i.get('l1_table_offset')) | 1 << 60),
    'l2-data-past-eof': lambda i: l2_set(i, 'data', lambda e, im: (e & ~OFFSET_MASK) | 2**54),
    'l2-data-unaligned': lambda i: l2_set(i, 'data', lambda e, im: e + 512),
    'l2-data-reserved': lambda i: l2_set(i, 'data', lambda e, im: e | 1 << 57),
    'l2-zero-in-v2': lambda i: l2_set(i, 'data', lambda e, im: e | 1),
    'l2-copied-no-offset': lambda i: l2_set(i, 'data', lambda e, im: 1 << 63),
    'compressed-past-eof': lambda i: l2_set(i, 'compressed', lambda e, im: (e & ~((1 << (62 - (im.get('cluster_bits') - 8))) - 1)) | (len(im.d) + 4096)),
    'compressed-garbage': lambda i: l2_set(i, 'compressed', lambda e, im: (e & ~((1 << (62 - (im.get('cluster_bits') - 8))) - 1)) | 8),
    'compressed-high-bits': lambda i: l2_set(i, 'compressed', lambda e, im: e | 1 << 58),
    'compressed-one-sector': lambda i: l2_set(i, 'compressed', lambda e, im: e & ((1 << (62 - (im.get('cluster_bits') - 8))) - 1) | 1 << 62),
    'extl2-alloc-and-zero': lambda i: bitmap_set(i, 'data', 0x0000000100000001),
    'extl2-alloc-no-offset': alloc_without_offset,
    'extl2-compressed-bitmap': lambda i: bitmap_set(i, 'compressed', 1),
    'extl2-bit0': lambda i: l2_set(i, 'data', lambda e, im: e | 1),
}


def mutate(src, dst, case):
    img = Image(open(src, 'rb').read())
    CASES[case](img)
    with open(dst, 'wb') as f:
        f.write(img.d)


# ---- random damage -------------------------------------------------------------

def fuzz(src, outdir, seed, count):
    base = Image(open(src, 'rb').read())
    rng = random.Random(seed)
    hot = list(range(0, 112)) + [p + k for p, t, n in base.extensions() for k in range(8)]
    l1 = base.get('l1_table_offset')
    hot += [l1 + k for k in range(8 * min(base.get('l1_size'), 8))]
    hot += [at + k for at, e in base.l2_entries()[:64] for k in range(16 if base.extl2 else 8)]
    if base.get('nb_snapshots'):
        hot += [base.get('snapshots_offset') + k for k in range(64)]
    for n in range(count):
        img = Image(bytes(base.d))
        for _ in range(rng.choice([1, 1, 2, 3, 5])):
            how = rng.random()
            pos = rng.choice(hot) if rng.random() < 0.8 else rng.randrange(len(img.d))
            if pos >= len(img.d):  # cut short by an earlier damage
                continue
            if how < 0.4:
                img.d[pos] ^= 1 << rng.randrange(8)
            elif how < 0.7:
                img.d[pos] = rng.choice([0, 0xff, 0x80, 0x7f, 1, rng.randrange(256)])
            elif how < 0.9 and pos + 8 <= len(img.d):
                img.put64(pos & ~7, rng.choice([0, 2**64 - 1, 2**63, 2**56, 2**55 + 512, len(img.d),
                                                 len(img.d) - 512, rng.getrandbits(64)]))
            else:
                del img.d[rng.randrange(len(img.d) // 2, len(img.d)):]
        with open(os.path.join(outdir, 'fuzz-%04d.qcow2' % n), 'wb') as f:
            f.write(img.d)


# ---- comparing sparse files without reading their holes --------------------------

def segments(fd, size):
    """Data segments of a file, by SEEK_DATA/SEEK_HOLE."""
    out, pos = [], 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        out.append((start, end))
        pos = end
    return out


def sparse_cmp(a, b, b_may_be_longer=False):
    """0 if the files hold the same bytes. With b_may_be_longer, B may go on
    past the end of A, with zeros only."""
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    sa, sb = os.fstat(fa).st_size, os.fstat(fb).st_size
    if sa != sb and not (b_may_be_longer and sa < sb):
        print('%s: %d bytes, %s: %d bytes' % (a, sa, b, sb))
        return 1
    for start, end in sorted(segments(fa, sa) + segments(fb, sb)):
        pos = start
        while pos < end:
            n = min(end - pos, 1 << 20)
            x, y = os.pread(fa, n, pos), os.pread(fb, n, pos)
            if pos + n > sa:  # past A's end: B must be zeros
                x += bytes(len(y) - len(x))
            if x != y:
                print('%s and %s differ in [%d, %d)' % (a, b, pos, pos + n))
                return 1
            pos += n
    return 0


# ---- test data that compresses in every way deflate can ---------------------------

WORDS = b'the quick brown fox jumps over lazy dogs qcow2 cluster virtio vhost'.split()


def pattern(out, size, seed):
    rng = random.Random(seed)
    data = bytearray()
    while len(data) < size:
        kind = rng.random()
        n = rng.choice([512, 1000, 4096, 7777, 65536])
        if kind < 0.35:    # text: dynamic Huffman blocks with matches
            block = b' '.join(rng.choice(WORDS) for _ in range(n // 4))
        elif kind < 0.55:  # noise: stored blocks
            block = rng.randbytes(n)
        elif kind < 0.7:   # zeros
            block = bytes(n)
        elif kind < 0.85:  # one byte repeated: long matches
            block = bytes([rng.randrange(256)]) * n
        else:              # small alphabet: fixed-ish codes
            block = bytes(rng.choice(b'abcd') for _ in range(n))
        data += block[:n]
    with open(out, 'wb') as f:
        f.write(data[:size])


def compressed_stats(path):
    """Counts compressed clusters, and those whose compressed bytes cross a
    host cluster boundary (the reader must read them as one extent)."""
    with open(path, 'rb') as f:
        img = Image(f.read())
    bits = img.get('cluster_bits')
    x = 62 - (bits - 8)
    total = straddle = 0
    for _, e in img.l2_entries():
        if not (e >> 62) & 1:
            continue
        total += 1
        off = e & ((1 << x) - 1)
        sectors = ((e & ((1 << 62) - 1)) >> x) + 1
        end = off + sectors * 512 - (off % 512)
        # the last byte actually used may be short of `end`; the descriptor's
        # first and last sector lie in different host clusters
        if off >> bits != (end - 1) >> bits:
            straddle += 1
    print('%d compressed %d straddle' % (total, straddle))


def main(argv):
    if len(argv) >= 5 and argv[1] == 'mutate':
        mutate(argv[2], argv[3], argv[4])
    elif len(argv) == 2 and argv[1] == 'cases':
        print('\n'.join(CASES))
    elif len(argv) == 6 and argv[1] == 'fuzz':
        fuzz(argv[2], argv[3], int(argv[4]), int(argv[5]))
    elif len(argv) == 3 and argv[1] == 'compressed-stats':
        compressed_stats(argv[2])
    elif len(argv) == 5 and argv[1] == 'pattern':
        pattern(argv[2], int(argv[3]), int(argv[4]))
    elif len(argv) in (4, 5) and argv[1] == 'sparse-cmp':
        return sparse_cmp(argv[2], argv[3], argv[4:] == ['--b-may-be-longer'])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
