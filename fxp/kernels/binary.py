"""Binary (XNOR-popcount) kernels on bit-packed +-1 tensors.

Packing convention (Larq Compute Engine, not FINN)::

    bit 0  <=>  +1          bit 1  <=>  -1

A +-1 vector of length C is stored in ``ceil(C/64)`` uint64 words; element
``c`` is bit ``c % 64`` (LSB first) of word ``c // 64``.  The tail bits of
the last word (positions ``C % 64 .. 63`` when ``C % 64 != 0``) are 0 in
*both* operands, so they XOR to 0 and never count.  Two +-1 values agree iff
their bits are equal, so for K real bits::

    dot = sum_i a_i * w_i = (K - P) - P = K - 2 * P,   P = popcount(a XOR w)

Conv layout: activations ``[N, H, W, Wc]`` (channels packed per pixel),
weights ``[Co, kh, kw, Wc]``; the reduction axis is (filter_y, filter_x,
in_channel) in this order, each tap holding ``Wc = ceil(C/64)`` words.  A tap
is therefore either wholly inside the image or wholly padding.  Per output
``(batch, out_y, out_x, out_channel)``:

1. gather the ``kh*kw`` taps' words into ``col``; a tap outside the image is
   padding: ``pad_value = +1`` reads ``pad_words`` (all 0: +1 in every real
   bit), ``-1`` reads ``pad_words`` = the real-bit mask (tail still 0), and
   ``0`` marks the tap invalid;
2. ``P = sum over valid taps and words of popcount(col XOR w)``;
   ``K = C * (number of valid taps)`` (all ``kh*kw`` taps for +-1 padding,
   the taps inside the image for zero padding: a zero-padded tap contributes
   0, which no +-1 bit can express, so it is left out of K and P -- the
   "count valid taps" form of LCE's zero-padding correction);
3. ``dot = K - 2*P``, written to ``[N, Co, Ho, Wo]``.

Bound: ``|dot| <= K <= kh*kw*C`` and ``0 <= P <= K``; int64 holds any layer
whose arrays fit in memory (a 32-bit accumulator holds K < 2**31, a 16-bit
one K < 2**15: LCE falls back to 32 bits for 3072 channels x 5x5).

Popcount is LLVM's ``ctpop.i64`` (one POPCNT instruction on x86-64 with
SSE4.2, VPOPCNTQ when LLVM vectorises on AVX-512 VPOPCNTDQ); with
``NUMBA_DISABLE_JIT=1`` it is Python's ``int.bit_count``.  :func:`popcount_swar`
is the portable bit trick (Hacker's Delight 5-2), kept as a cross-check.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

from fxp.kernels._jit import jit, kernel, prange

__all__ = ["binary_conv2d_dot", "binary_dense_dot", "pack_rows", "popcount", "popcount_swar",
           "threshold_signs", "unpack_rows"]

M1 = np.uint64(0x5555555555555555)
M2 = np.uint64(0x3333333333333333)
M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
H01 = np.uint64(0x0101010101010101)


@intrinsic
def _ctpop(typingctx, x):
    """LLVM ``llvm.ctpop.i64`` on a uint64."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


if numba.config.DISABLE_JIT:  # pragma: no cover - coverage runs only
    def popcount(v):
        """Number of 1 bits of a uint64 (Python fallback)."""
        return int(v).bit_count()
else:
    @jit
    def popcount(v):
        """Number of 1 bits of a uint64 (one POPCNT)."""
        return np.int64(_ctpop(np.uint64(v)))


@jit
def popcount_swar(v):
    """Number of 1 bits of a uint64 by the SWAR bit trick (no POPCNT needed)."""
    v = np.uint64(v)
    v = v - ((v >> np.uint64(1)) & M1)
    v = (v & M2) + ((v >> np.uint64(2)) & M2)
    v = (v + (v >> np.uint64(4))) & M4
    return np.int64((v * H01) >> np.uint64(56))


@kernel
def pack_rows(neg, words):
    """neg bool [M, C] (True: -1) -> uint64 [M, words]; bit c%64 of word c//64, tail 0."""
    rows, depth = neg.shape
    out = np.zeros((rows, words), np.uint64)
    for row in prange(rows):
        for c in range(depth):
            if neg[row, c]:
                out[row, c >> 6] |= np.uint64(1) << np.uint64(c & 63)
    return out


@kernel
def unpack_rows(packed, depth):
    """uint64 [M, words] -> int8 +-1 [M, depth] (bit 0: +1, bit 1: -1)."""
    rows = packed.shape[0]
    out = np.empty((rows, depth), np.int8)
    for row in prange(rows):
        for c in range(depth):
            bit = (packed[row, c >> 6] >> np.uint64(c & 63)) & np.uint64(1)
            out[row, c] = np.int8(-1) if bit else np.int8(1)
    return out


@kernel
def binary_conv2d_dot(xp, wp, depth, pad_value, pad_words, sh, sw, pad_top, pad_left, dh, dw,
                      out_h, out_w):
    """xp [N,H,W,Wc], wp [Co,kh,kw,Wc] uint64 -> dot int64 [N,Co,Ho,Wo] (steps 1-3 above).

    The weights are transposed to ``[kh*kw*Wc, Co]`` so that the innermost
    loop runs over output channels on contiguous words (LLVM vectorises the
    XOR + popcount, e.g. with AVX-512 VPOPCNTQ).
    """
    batches, in_h, in_w, words = xp.shape
    out_depth, filter_h, filter_w, _ = wp.shape
    taps = filter_h * filter_w
    wt = np.ascontiguousarray(wp.reshape(out_depth, taps * words).T)
    dot = np.empty((batches, out_depth, out_h, out_w), np.int64)
    for job in prange(batches * out_h):
        batch = job // out_h
        out_y = job % out_h
        col = np.zeros(taps * words, np.uint64)
        valid = np.zeros(taps, np.bool_)
        mism = np.zeros(out_depth, np.int64)
        for out_x in range(out_w):
            n_valid = 0
            for filter_y in range(filter_h):
                in_y = out_y * sh - pad_top + filter_y * dh
                for filter_x in range(filter_w):
                    in_x = out_x * sw - pad_left + filter_x * dw
                    t = filter_y * filter_w + filter_x
                    if 0 <= in_y < in_h and 0 <= in_x < in_w:
                        for q in range(words):
                            col[t * words + q] = xp[batch, in_y, in_x, q]
                        valid[t] = True
                        n_valid += 1
                    elif pad_value != 0:
                        for q in range(words):
                            col[t * words + q] = pad_words[q]
                        valid[t] = True
                        n_valid += 1
                    else:
                        valid[t] = False
            k = np.int64(n_valid) * depth
            mism[:] = 0
            for t in range(taps):
                if valid[t]:
                    for q in range(words):
                        i = t * words + q
                        a = col[i]
                        for out_channel in range(out_depth):
                            mism[out_channel] += popcount(a ^ wt[i, out_channel])
            for out_channel in range(out_depth):
                dot[batch, out_channel, out_y, out_x] = k - 2 * mism[out_channel]
    return dot


@kernel
def binary_dense_dot(xp, wp, n_bits):
    """xp [N, Wi], wp [Out, Wi] uint64 -> dot int64 [N, Out] = n_bits - 2*popcount(x XOR w)."""
    batches, words = xp.shape
    out_depth = wp.shape[0]
    dot = np.empty((batches, out_depth), np.int64)
    for batch in prange(batches):
        for out_channel in range(out_depth):
            mism = np.int64(0)
            for q in range(words):
                mism += popcount(xp[batch, q] ^ wp[out_channel, q])
            dot[batch, out_channel] = n_bits - 2 * mism
    return dot


@kernel
def threshold_signs(dot, thresholds, directions):
    """dot [outer, C, inner] -> int8 +-1 of the same shape.

    ``directions[c] = +1``: +1 iff ``dot >= thresholds[c]``; ``-1``: +1 iff
    ``dot <= thresholds[c]``.
    """
    outer, depth, inner = dot.shape
    out = np.empty((outer, depth, inner), np.int8)
    for job in prange(outer * depth):
        o = job // depth
        c = job % depth
        t = thresholds[c]
        if directions[c] > 0:
            for i in range(inner):
                out[o, c, i] = 1 if dot[o, c, i] >= t else -1
        else:
            for i in range(inner):
                out[o, c, i] = 1 if dot[o, c, i] <= t else -1
    return out
