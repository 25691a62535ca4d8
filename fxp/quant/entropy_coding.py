"""Real entropy coders for quantized weight codes (``shared/seeds/001``): sizes, not estimates.

:mod:`fxp.quant.entropy` gives the zeroth-order entropy ``H`` of the integer
codes, a lower bound for any symbol-by-symbol coder.  This module runs coders on
the actual codes and measures the bytes they write:

* :func:`huffman_encode` -- a canonical Huffman coder over the code histogram
  (ours).  The stream is self-contained: a header (``n`` and the number of
  symbols, uint32 each), the code table (per symbol: int32 value, uint8 code
  length) and the bit stream (MSB first, zero-padded to a byte).  Its size
  therefore includes the table.  A one-symbol histogram gets a 1-bit code.
  Huffman spends between ``H`` and ``H + 1`` bits/weight on the payload.
  :func:`huffman_decode` inverts it exactly.
* :func:`stdlib_sizes` -- Python's ``zlib`` (DEFLATE: LZ77 + Huffman, level 9)
  and ``lzma`` (LZMA2: LZ + range coder, preset 9, raw ``.xz`` container) over
  the codes stored little-endian in the narrowest signed integer type that holds
  them (int8 / int16 / int32).

>>> s = huffman_encode([0, 0, 0, 1, -1, 0])
>>> huffman_decode(s).tolist()
[0, 0, 0, 1, -1, 0]
>>> huffman_lengths({0: 4, 1: 1, -1: 1}) == {0: 1, 1: 2, -1: 2}
True
"""

from __future__ import annotations

import heapq
import lzma
import struct
import zlib

import numpy as np

from fxp.errors import FormatError

__all__ = ["code_bytes", "huffman_decode", "huffman_encode", "huffman_lengths", "stdlib_sizes"]


def huffman_lengths(counts: dict[int, int]) -> dict[int, int]:
    """Huffman code length of each symbol of a histogram ``{symbol: count}`` (counts > 0)."""
    if not counts:
        raise FormatError("Huffman code of an empty histogram is undefined")
    if any(int(c) <= 0 for c in counts.values()):
        raise FormatError(f"Huffman counts must be > 0, got {str(counts)[:200]}")
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    # heap items: (weight, tie-break, symbols of the subtree); merging deepens each symbol by 1
    heap = [(int(c), i, [s]) for i, (s, c) in enumerate(sorted(counts.items()))]
    heapq.heapify(heap)
    depth = dict.fromkeys(counts, 0)
    tie = len(heap)
    while len(heap) > 1:
        w1, _, s1 = heapq.heappop(heap)
        w2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            depth[s] += 1
        heapq.heappush(heap, (w1 + w2, tie, s1 + s2))
        tie += 1
    return depth


def _canonical(lengths: dict[int, int]) -> dict[int, str]:
    """Canonical codewords (bit strings): symbols sorted by (length, value)."""
    out, code, prev = {}, 0, 0
    for s, ln in sorted(lengths.items(), key=lambda kv: (kv[1], kv[0])):
        code <<= ln - prev
        out[s] = format(code, f"0{ln}b")
        code, prev = code + 1, ln
    return out


def _as_codes(codes) -> np.ndarray:
    c = np.asarray(codes)
    if c.size == 0 or not np.issubdtype(c.dtype, np.integer):
        raise FormatError(f"entropy coding needs a non-empty integer array, got dtype {c.dtype} "
                          f"and {c.size} values")
    c = c.ravel().astype(np.int64)
    if c.min() < -(1 << 31) or c.max() >= (1 << 31):
        raise FormatError(f"codes must fit int32, got range [{c.min()}, {c.max()}]")
    return c


def huffman_encode(codes) -> bytes:
    """Canonical Huffman stream of integer ``codes`` with its code table (module docstring)."""
    c = _as_codes(codes)
    sym, cnt = np.unique(c, return_counts=True)
    lengths = huffman_lengths(dict(zip(sym.tolist(), cnt.tolist())))
    book = _canonical(lengths)
    head = struct.pack("<II", c.size, len(book))
    table = b"".join(struct.pack("<iB", s, lengths[s]) for s in sorted(book))
    bits = "".join(book[s] for s in c.tolist())
    nbytes = (len(bits) + 7) // 8
    payload = int(bits.ljust(8 * nbytes, "0"), 2).to_bytes(nbytes, "big")
    return head + table + payload


def huffman_decode(stream: bytes) -> np.ndarray:
    """Inverse of :func:`huffman_encode`: the int64 codes."""
    try:
        n, k = struct.unpack_from("<II", stream, 0)
        entries = [struct.unpack_from("<iB", stream, 8 + 5 * i) for i in range(k)]
    except struct.error:
        raise FormatError(f"truncated Huffman stream ({len(stream)} bytes)") from None
    inverse = {v: s for s, v in _canonical(dict(entries)).items()}
    payload = stream[8 + 5 * k:]
    bits = format(int.from_bytes(payload, "big"), f"0{8 * len(payload)}b") if payload else ""
    out, cur = [], ""
    for b in bits:
        cur += b
        if cur in inverse:
            out.append(inverse[cur])
            cur = ""
            if len(out) == n:
                break
    if len(out) != n:
        raise FormatError(f"Huffman stream decodes to {len(out)} codes, header says {n}")
    return np.asarray(out, np.int64)


def code_bytes(codes) -> bytes:
    """``codes`` little-endian in the narrowest of int8 / int16 / int32 that holds them."""
    c = _as_codes(codes)
    for dt in ("<i1", "<i2", "<i4"):
        info = np.iinfo(np.dtype(dt))
        if info.min <= c.min() and c.max() <= info.max:
            return c.astype(dt).tobytes()
    raise FormatError(f"codes must fit int32, got range [{c.min()}, {c.max()}]")  # unreachable


def stdlib_sizes(codes) -> dict[str, int]:
    """Bytes written by ``zlib`` (level 9) and ``lzma`` (preset 9, .xz) over :func:`code_bytes`."""
    raw = code_bytes(codes)
    return {"raw": len(raw), "zlib": len(zlib.compress(raw, 9)),
            "lzma": len(lzma.compress(raw, preset=9))}
