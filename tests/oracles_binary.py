"""Independent references for the binary (+-1) layers: Python ints, Fractions, float64.

Nothing here packs bits or counts them: the references multiply unpacked +-1
values (nested lists of Python ints) tap by tap, exactly as the textbook
convolution, with the padded tap reading ``pad_value`` (0, +1 or -1).  The
float64 reference pads with ``np.pad`` and sums products in float64, which is
exact for integer sums below 2**53.  Thresholds and scaled outputs are decided
with :class:`fractions.Fraction`.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from tests import oracles
from tests.oracles_layers import _window, out_size


def sign(v) -> int:
    """sign with sign(0) = +1 (also for -0.0)."""
    return -1 if v < 0 else 1


def conv2d_pm1(x, w, pad_value, strides, pads, dilations):
    """x [N][C][H][W], w [Co][C][kh][kw] of +-1 -> (dot [N][Co][Ho][Wo], K [Ho][Wo]).

    ``K`` counts the taps whose value is +-1 (every tap for +-1 padding, the
    inside taps for zero padding) times C.
    """
    c, h, wd = len(x[0]), len(x[0][0]), len(x[0][0][0])
    kh, kw = len(w[0][0]), len(w[0][0][0])
    ho = out_size(h, kh, strides[0], dilations[0], pads[0], pads[2])
    wo = out_size(wd, kw, strides[1], dilations[1], pads[1], pads[3])
    out = [[[[0] * wo for _ in range(ho)] for _ in w] for _ in x]
    kmap = [[0] * wo for _ in range(ho)]
    for oy, ox, taps in _window(h, wd, kh, kw, strides, pads, dilations):
        kmap[oy][ox] = sum(c for t in taps if t is not None or pad_value != 0)
        for b, img in enumerate(x):
            for co, filt in enumerate(w):
                total = 0
                for ci in range(c):
                    for k, tap in enumerate(taps):
                        xv = pad_value if tap is None else img[ci][tap[0]][tap[1]]
                        total += xv * filt[ci][k // kw][k % kw]
                out[b][co][oy][ox] = total
    return out, kmap


def conv2d_float64(x: np.ndarray, w: np.ndarray, pad_value, strides, pads, dilations):
    """Float64 convolution of +-1 arrays, padding with ``pad_value`` (np.pad, then windows)."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])),
                constant_values=float(pad_value))
    kh, kw = w.shape[2:]
    ho = out_size(x.shape[2], kh, strides[0], dilations[0], pads[0], pads[2])
    wo = out_size(x.shape[3], kw, strides[1], dilations[1], pads[1], pads[3])
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    wf = w.astype(np.float64)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dilations[0], kx * dilations[1]
            patch = xp[:, :, y0:y0 + (ho - 1) * strides[0] + 1:strides[0],
                       x0:x0 + (wo - 1) * strides[1] + 1:strides[1]]
            out += np.einsum("nchw,oc->nohw", patch, wf[:, :, ky, kx])
    return out


def dense_pm1(x, w):
    """x [N][In], w [Out][In] of +-1 -> dot [N][Out]."""
    return [[sum(a * b for a, b in zip(row, wr, strict=True)) for wr in w] for row in x]


def pack_row(values) -> list[int]:
    """+-1 list -> 64-bit words as Python ints: bit c%64 of word c//64 set iff -1."""
    words = [0] * (-(-len(values) // 64))
    for c, v in enumerate(values):
        if v == -1:
            words[c // 64] |= 1 << (c % 64)
    return words


def threshold(dot: int, a: Fraction, b: Fraction) -> int:
    """sign(a*dot + b) with sign(0) = +1, exactly."""
    return sign(a * dot + b)


def scale_output(dot: int, s: int, fs: int, bias: int | None, fbias: int, beta: int | None,
                 fbeta: int, out_frac: int, bits: int, signed: bool, lo: int, hi: int,
                 rounding: str, overflow: str) -> tuple[int, bool]:
    """round(s*2**-fs * [beta*2**-fbeta] * dot + bias*2**-fbias) into the out format."""
    v = Fraction(s * dot, 1 << fs) if fs >= 0 else Fraction(s * dot * (1 << -fs))
    if beta is not None:
        v *= Fraction(beta, 1 << fbeta) if fbeta >= 0 else beta * (1 << -fbeta)
    if bias is not None:
        v += Fraction(bias, 1 << fbias) if fbias >= 0 else bias * (1 << -fbias)
    q = oracles.round_fraction(v * (Fraction(1 << out_frac) if out_frac >= 0
                                    else Fraction(1, 1 << -out_frac)), rounding)
    return oracles.fit(q, bits, signed, lo, hi, overflow)


def beta_conv(x, x_frac: int, kh: int, kw: int, strides, pads, dilations, beta_frac: int,
              rounding: str) -> list:
    """mean |x| over each receptive field (padded taps 0, divisor kh*kw*C), rounded, unbounded."""
    c, h, wd = len(x[0]), len(x[0][0]), len(x[0][0][0])
    ho = out_size(h, kh, strides[0], dilations[0], pads[0], pads[2])
    wo = out_size(wd, kw, strides[1], dilations[1], pads[1], pads[3])
    out = [[[0] * wo for _ in range(ho)] for _ in x]
    for oy, ox, taps in _window(h, wd, kh, kw, strides, pads, dilations):
        for b, img in enumerate(x):
            s = sum(abs(img[ci][t[0]][t[1]]) for ci in range(c) for t in taps if t is not None)
            v = Fraction(s, kh * kw * c) * Fraction(2) ** (beta_frac - x_frac)
            out[b][oy][ox] = oracles.round_fraction(v, rounding)
    return out
