"""Pure-Python references for the integer layer kernels (Python ints and lists only).

Each function restates the documented semantics of :mod:`fxp.kernels.spec_layers`
one output at a time with unbounded Python integers: no numpy arithmetic, no
int64 tricks.  Tensors are nested lists (``array.tolist()``); results are
nested lists plus Python-int statistics.  Rounding of exact rationals comes
from :func:`tests.oracles.round_fraction`, overflow from :func:`tests.oracles.fit`.
"""

from __future__ import annotations

from fractions import Fraction

from tests import oracles


def out_size(size: int, k: int, stride: int, dilation: int, pb: int, pe: int) -> int:
    return (size + pb + pe - ((k - 1) * dilation + 1)) // stride + 1


def _window(h, w, kh, kw, strides, pads, dilations):
    """Yield (oy, ox, [(iy, ix) or None for each tap in ky, kx order])."""
    ho = out_size(h, kh, strides[0], dilations[0], pads[0], pads[2])
    wo = out_size(w, kw, strides[1], dilations[1], pads[1], pads[3])
    for oy in range(ho):
        for ox in range(wo):
            taps = []
            for ky in range(kh):
                for kx in range(kw):
                    iy = oy * strides[0] - pads[0] + ky * dilations[0]
                    ix = ox * strides[1] - pads[1] + kx * dilations[1]
                    taps.append((iy, ix) if 0 <= iy < h and 0 <= ix < w else None)
            yield oy, ox, taps


def _grid(n, c, ho, wo):
    return [[[[0] * wo for _ in range(ho)] for _ in range(c)] for _ in range(n)]


def accumulate(terms, bits, signed, lo, hi, mode):
    """Ordered accumulation: (sum, events, peak |exact partial sum|)."""
    total = events = peak = 0
    for t in terms:
        peak = max(peak, abs(total + t))
        total, over = oracles.fit(total + t, bits, signed, lo, hi, mode)
        events += over
    return total, events, peak


def conv2d(x, w, bias, zx, zw, strides, pads, dilations, groups, bits, signed, lo, hi, mode):
    """x [N][C][H][W], w [Co][Cg][kh][kw], bias [Co], zw [Co] -> (acc, events[Co], peak[Co])."""
    n, c_out, cg = len(x), len(w), len(w[0])
    h, wd, kh, kw = len(x[0][0]), len(x[0][0][0]), len(w[0][0]), len(w[0][0][0])
    ho = out_size(h, kh, strides[0], dilations[0], pads[0], pads[2])
    wo = out_size(wd, kw, strides[1], dilations[1], pads[1], pads[3])
    out = _grid(n, c_out, ho, wo)
    events, peaks = [0] * c_out, [0] * c_out
    for b in range(n):
        for co in range(c_out):
            first = (co // (c_out // groups)) * cg
            for oy, ox, taps in _window(h, wd, kh, kw, strides, pads, dilations):
                terms = []
                for ci in range(cg):
                    for k, tap in enumerate(taps):
                        xv = zx if tap is None else x[b][first + ci][tap[0]][tap[1]]  # pad = zx
                        terms.append((xv - zx) * (w[co][ci][k // kw][k % kw] - zw[co]))
                total, ev, pk = accumulate(terms + [bias[co]], bits, signed, lo, hi, mode)
                out[b][co][oy][ox] = total
                events[co] += ev
                peaks[co] = max(peaks[co], pk)
    return out, events, peaks


def dense(x, w, bias, zx, zw, bits, signed, lo, hi, mode):
    """x [N][In], w [Out][In] -> (acc [N][Out], events[Out], peak[Out])."""
    out, events, peaks = [], [0] * len(w), [0] * len(w)
    for row in x:
        res = []
        for o, wrow in enumerate(w):
            terms = [(xi - zx) * (wi - zw[o]) for xi, wi in zip(row, wrow, strict=True)]
            total, ev, pk = accumulate(terms + [bias[o]], bits, signed, lo, hi, mode)
            res.append(total)
            events[o] += ev
            peaks[o] = max(peaks[o], pk)
        out.append(res)
    return out, events, peaks


def bound(w_flat_rows, zw, x_lo, x_hi, zx, bias) -> list[int]:
    """max|x - zx| * sum|w - zw| + |bias| per output channel."""
    mx = max(abs(x_lo - zx), abs(x_hi - zx))
    return [mx * sum(abs(v - z) for v in row) + abs(b)
            for row, z, b in zip(w_flat_rows, zw, bias, strict=True)]


def _pool(x, kernel, strides, pads, dilations, reduce):
    n, c, h, wd = len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])
    ho = out_size(h, kernel[0], strides[0], dilations[0], pads[0], pads[2])
    wo = out_size(wd, kernel[1], strides[1], dilations[1], pads[1], pads[3])
    out = _grid(n, c, ho, wo)
    for b in range(n):
        for ch in range(c):
            for oy, ox, taps in _window(h, wd, *kernel, strides, pads, dilations):
                vals = [None if t is None else x[b][ch][t[0]][t[1]] for t in taps]
                out[b][ch][oy][ox] = reduce(vals)
    return out


def maxpool2d(x, pad_code, kernel, strides, pads, dilations):
    return _pool(x, kernel, strides, pads, dilations,
                 lambda vals: max(pad_code if v is None else v for v in vals))


def avgpool2d(x, zp, kernel, strides, pads, dilations, include_pad, mode):
    """round(mean of (x - zp) over the window, real 0 for padding) + zp."""
    def reduce(vals):
        real = [v - zp for v in vals if v is not None]
        count = kernel[0] * kernel[1] if include_pad else len(real)
        if count == 0:
            return zp
        return oracles.round_fraction(Fraction(sum(real), count), mode) + zp
    return _pool(x, kernel, strides, pads, dilations, reduce)


def add_pow2(a, a_fmt, b, b_fmt, out, rmode, omode, us):
    """Exact real sum of two fixed-point values, rounded and fitted into ``out``."""
    lo, hi = oracles.bounds(out, omode)
    res, n = [], 0
    for av, bv, u in zip(a, b, us, strict=True):
        v = oracles.value(av, a_fmt.frac_bits) + oracles.value(bv, b_fmt.frac_bits)
        code, over = oracles.fit(oracles.round_fraction(v * Fraction(2) ** out.frac_bits,
                                                        rmode, u),
                                 out.bits, out.signed, lo, hi, omode)
        res.append(code)
        n += over
    return res, n


def add_affine(a, b, azp, bzp, am, ae, bm, be, om, oe, ozp, ls, out, scheme, omode):
    """TFLite int8 Add from its stages, with Python ints."""
    mbqm = oracles.mbqm_single if scheme == "single" else oracles.mbqm_double
    lo, hi = oracles.bounds(out, omode)
    res, n = [], 0
    for av, bv in zip(a, b, strict=True):
        ya, o1 = mbqm((av - azp) * (1 << ls), am, ae)
        yb, o2 = mbqm((bv - bzp) * (1 << ls), bm, be)
        raw = oracles.wrap32(ya + yb)
        y, o4 = mbqm(raw, om, oe)
        code, o5 = oracles.fit(y + ozp, out.bits, out.signed, lo, hi, omode)
        res.append(code)
        n += o1 + o2 + (raw != ya + yb) + o4 + o5
    return res, n


def _channel(i: int, shape: list[int], axis: int) -> int:
    inner = 1
    for d in shape[axis + 1:]:
        inner *= d
    return (i // inner) % shape[axis]


def requantize_pow2_per_channel(flat, shape, axis, shifts, out, rmode, omode, us):
    """Channel c: round(acc / 2**shift[c]) (exact rational), then overflow."""
    lo, hi = oracles.bounds(out, omode)
    res, n = [], 0
    for i, (v, u) in enumerate(zip(flat, us, strict=True)):
        s = shifts[_channel(i, shape, axis)]
        q = oracles.round_fraction(Fraction(v) / Fraction(2) ** s, rmode, u) if s >= 0 \
            else v * 2 ** -s
        code, over = oracles.fit(q, out.bits, out.signed, lo, hi, omode)
        res.append(code)
        n += over
    return res, n


def requantize_multiplier_per_channel(flat, shape, axis, mults, exps, out, zp, scheme, omode):
    mbqm = oracles.mbqm_single if scheme == "single" else oracles.mbqm_double
    lo, hi = oracles.bounds(out, omode)
    res, n = [], 0
    for i, v in enumerate(flat):
        c = _channel(i, shape, axis)
        y, o1 = mbqm(v, mults[c], exps[c])
        code, o2 = oracles.fit(y + zp, out.bits, out.signed, lo, hi, omode)
        res.append(code)
        n += o1 + o2
    return res, n


def requantize_float32_per_channel(flat, shape, axis, scales, out, zp):
    res, n = [], 0
    for i, v in enumerate(flat):
        code, over = oracles.requant_float32(v, scales[_channel(i, shape, axis)], zp,
                                             out.min_code, out.max_code)
        res.append(code)
        n += over
    return res, n
