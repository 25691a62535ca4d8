"""Binary (XNOR-popcount) layers: packing, integer dot products, output transforms.

Validated entry points over :mod:`fxp.kernels.binary`, whose docstring holds
the arithmetic.  In short: +-1 values are packed along the reduction axis into
uint64 words with **bit 0 = +1, bit 1 = -1** (Larq Compute Engine; FINN uses
the opposite), tail bits 0 in both operands, and ``dot = K - 2*popcount(a XOR
w)`` where K counts the real (and, for +-1 padding, padded) bits only.

Padding is an explicit ``pad_value`` in ``{0, +1, -1}`` with no default
(P15): ``0`` is true zero padding (a padded tap contributes 0 and is left out
of K, so K varies per output position), ``+1`` is Larq's one-padding and
``-1`` pads with -1.  Inputs must already be +-1 (see
:func:`fxp.quant.binary.binarize` for ``sign`` with ``sign(0) = +1``).

Output transforms: the integer dot itself; :func:`binary_scale_int`
(``y = a_c * [beta] * dot + b_c`` in fixed point, requantized with fxp's
rounding modes: XNOR-Net's alpha/beta and a folded BatchNorm); and
:func:`binary_threshold` (BatchNorm + sign folded into one integer threshold
per channel, FINN-style; see :func:`fxp.quant.binary.sign_thresholds`).

>>> import numpy as np
>>> ones = np.ones((1, 1, 3, 3), np.int64)        # P15 corner: all +1, 3x3, pad 1
>>> for pad in (0, 1, -1):
...     dot, k = binary_conv2d_int(ones, ones, pad_value=pad, pads=(1, 1, 1, 1))
...     print(pad, dot[0, 0, 0, 0], k[0, 0])
0 4 4
1 9 9
-1 -1 9
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.errors import FormatError, HeadroomError
from fxp.kernels import binary as kb
from fxp.ops import fixed
from fxp.ops.layers import I64_MAX, _window

__all__ = [
    "PackedBits", "binary_conv2d_int", "binary_dense_int", "binary_scale_int",
    "binary_threshold", "conv_k_map", "pack_bits", "pack_conv_input", "pack_conv_weights",
    "unpack_bits",
]

WORD = 64
PAD_VALUES = (0, 1, -1)


@dataclass(frozen=True)
class PackedBits:
    """+-1 values packed along the last axis.

    Attributes
    ----------
    words : uint64 array ``[..., ceil(n_bits/64)]``
        Bit ``c % 64`` of word ``c // 64`` is element ``c``: 0 for +1, 1 for -1;
        tail bits are 0.
    n_bits : int
        Real elements per row (the packed axis length, e.g. input channels).
    layout : str
        ``"rows"`` (``[..., C]``), ``"nhwc"`` (conv input ``[N, H, W, Wc]``) or
        ``"ohwi"`` (conv weights ``[Co, kh, kw, Wc]``).
    """

    words: np.ndarray
    n_bits: int
    layout: str = "rows"


def _pm1(x, what: str) -> np.ndarray:
    """Check that ``x`` holds only -1 and +1 integers; returns a bool 'is -1' array."""
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise FormatError(f"{what} must be an integer array of +-1, got dtype {a.dtype}; "
                          "binarize real values first (fxp.quant.binary.binarize)")
    if a.size and not np.all((a == 1) | (a == -1)):
        bad = int(np.flatnonzero((a != 1) & (a != -1))[0])
        raise FormatError(f"{what} must hold only -1 and +1, got {int(a.flat[bad])} at flat "
                          f"index {bad}")
    return a == -1


def _words(n_bits: int) -> int:
    return -(-n_bits // WORD)


def pack_bits(x) -> PackedBits:
    """Pack +-1 integers along the last axis: ``[..., C] -> PackedBits([..., ceil(C/64)], C)``.

    >>> p = pack_bits([[1, -1, -1, 1]])
    >>> p.words.tolist(), p.n_bits                    # bits 1 and 2 set: 0b0110
    ([[6]], 4)
    >>> unpack_bits(p).tolist()
    [[1, -1, -1, 1]]
    """
    neg = _pm1(x, "x")
    if neg.ndim == 0:
        raise FormatError("pack_bits needs at least one axis (the packed axis)")
    c = neg.shape[-1]
    rows = np.ascontiguousarray(neg.reshape(-1, c))
    words = kb.pack_rows(rows.size, rows, _words(c))
    return PackedBits(words.reshape(*neg.shape[:-1], _words(c)), c)


def unpack_bits(p: PackedBits) -> np.ndarray:
    """Inverse of :func:`pack_bits`: int8 +-1 ``[..., n_bits]`` (same layout as packed)."""
    w = np.ascontiguousarray(p.words)
    if w.dtype != np.uint64 or w.ndim == 0 or w.shape[-1] != _words(p.n_bits):
        raise FormatError(f"packed words must be uint64 [..., {_words(p.n_bits)}] for "
                          f"{p.n_bits} bits, got {w.dtype} {w.shape}")
    rows = w.reshape(-1, w.shape[-1])
    return kb.unpack_rows(rows.size, rows, p.n_bits).reshape(*w.shape[:-1], p.n_bits)


def pack_conv_input(x) -> PackedBits:
    """+-1 NCHW ``[N, C, H, W] -> PackedBits([N, H, W, ceil(C/64)], C, "nhwc")``."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise FormatError(f"x must have 4 dimensions (NCHW), got shape {x.shape}")
    p = pack_bits(np.moveaxis(x, 1, -1))
    return PackedBits(p.words, p.n_bits, "nhwc")


def pack_conv_weights(w) -> PackedBits:
    """+-1 OIHW ``[Co, C, kh, kw] -> PackedBits([Co, kh, kw, ceil(C/64)], C, "ohwi")``."""
    w = np.asarray(w)
    if w.ndim != 4:
        raise FormatError(f"w must have 4 dimensions [Co, C, kh, kw], got shape {w.shape}")
    p = pack_bits(np.moveaxis(w, 1, -1))
    return PackedBits(p.words, p.n_bits, "ohwi")


def _packed(v, layout: str, what: str) -> PackedBits:
    p = v if isinstance(v, PackedBits) else (
        pack_conv_input(v) if layout == "nhwc" else pack_conv_weights(v) if layout == "ohwi"
        else pack_bits(v))
    ndim = 2 if layout == "rows" else 4
    if p.layout != layout or p.words.dtype != np.uint64 or p.words.ndim != ndim \
            or p.words.shape[-1] != _words(p.n_bits):
        raise FormatError(f"{what}: expected {layout!r} uint64 words of {ndim} dimensions "
                          f"with {_words(p.n_bits)} words per row, got layout {p.layout!r}, "
                          f"{p.words.dtype} {p.words.shape}")
    return p


def _pad_value(pad_value) -> int:
    if isinstance(pad_value, bool) or not isinstance(pad_value, (int, np.integer)) \
            or int(pad_value) not in PAD_VALUES:
        raise FormatError(f"pad_value must be 0 (zero padding), +1 or -1, got {pad_value!r}")
    return int(pad_value)


def conv_k_map(h: int, w: int, kernel, *, pad_value: int, depth: int, strides=(1, 1),
               pads=(0, 0, 0, 0), dilations=(1, 1)) -> np.ndarray:
    """K per output position ``[Ho, Wo]``: ``depth`` times the taps that count.

    Every tap counts for +-1 padding; only the taps inside the image for zero
    padding.

    >>> conv_k_map(3, 3, (3, 3), pad_value=0, depth=1, pads=(1, 1, 1, 1)).tolist()
    [[4, 6, 4], [6, 9, 6], [4, 6, 4]]
    """
    pv = _pad_value(pad_value)
    probe = np.empty((1, 1, int(h), int(w)))
    k, s, p, d, ho, wo = _window(probe, kernel, strides, pads, dilations, "conv_k_map")
    if pv != 0:
        return np.full((ho, wo), k[0] * k[1] * int(depth), np.int64)

    def inside(n, size, kk, st, pb, dl):
        pos = np.arange(n)[:, None] * st - pb + np.arange(kk)[None, :] * dl
        return ((pos >= 0) & (pos < size)).sum(axis=1)

    rows = inside(ho, h, k[0], s[0], p[0], d[0])
    cols = inside(wo, w, k[1], s[1], p[1], d[1])
    return (rows[:, None] * cols[None, :] * int(depth)).astype(np.int64)


def binary_conv2d_int(x, w, *, pad_value: int, strides=(1, 1), pads=(0, 0, 0, 0),
                      dilations=(1, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Binary 2-D convolution by XNOR-popcount: ``dot = K - 2*popcount(x XOR w)``.

    Parameters
    ----------
    x : +-1 integers ``[N, C, H, W]`` or :class:`PackedBits` from :func:`pack_conv_input`.
    w : +-1 integers ``[Co, C, kh, kw]`` or :class:`PackedBits` from :func:`pack_conv_weights`.
    pad_value : 0, +1 or -1 (required): the value of a padded tap (module docstring).
    strides, dilations : ``(along H, along W)``; ``pads``: ``(top, left, bottom, right)``.

    Returns
    -------
    (dot int64 [N, Co, Ho, Wo], K int64 [Ho, Wo])
        ``dot`` equals the integer convolution of the +-1 tensors with the
        chosen padding, exactly; ``K`` is the number of bits counted at each
        output position (``|dot| <= K``, ``dot = K mod 2``).

    Raises
    ------
    FormatError
        Values other than +-1, a pad_value outside {0, +1, -1}, channel or
        shape mismatches, a window that does not fit.
    """
    pv = _pad_value(pad_value)
    xp, wp = _packed(x, "nhwc", "x"), _packed(w, "ohwi", "w")
    if xp.n_bits != wp.n_bits:
        raise FormatError(f"x has {xp.n_bits} channels but w expects {wp.n_bits} "
                          "([Co, C, kh, kw])")
    n, h, wd, _ = xp.words.shape
    co, kh, kw, words = wp.words.shape
    probe = np.empty((n, xp.n_bits, h, wd))
    k, s, p, d, ho, wo = _window(probe, (kh, kw), strides, pads, dilations, "binary_conv2d_int")
    pad_words = np.zeros(words, np.uint64)
    if pv == -1:  # -1 in every real bit, tail bits still 0
        full = xp.n_bits // WORD
        pad_words[:full] = np.uint64(0xFFFFFFFFFFFFFFFF)
        if xp.n_bits % WORD:
            pad_words[full] = np.uint64((1 << (xp.n_bits % WORD)) - 1)
    work = n * co * ho * wo * kh * kw * words
    dot = kb.binary_conv2d_dot(work, np.ascontiguousarray(xp.words),
                               np.ascontiguousarray(wp.words), xp.n_bits, pv, pad_words,
                               s[0], s[1], p[0], p[1], d[0], d[1], ho, wo)
    kmap = conv_k_map(h, wd, (kh, kw), pad_value=pv, depth=xp.n_bits, strides=s, pads=p,
                      dilations=d)
    return dot, kmap


def binary_dense_int(x, w) -> tuple[np.ndarray, int]:
    """Binary dense layer ``[N, In] x [Out, In] -> (dot int64 [N, Out], K = In)``.

    ``x`` and ``w`` are +-1 integers or :class:`PackedBits` from :func:`pack_bits`.

    >>> dot, k = binary_dense_int([[1, -1, 1]], [[1, 1, 1], [1, -1, 1]])
    >>> dot.tolist(), k
    ([[1, 3]], 3)
    """
    xp, wp = _packed(x, "rows", "x"), _packed(w, "rows", "w")
    if xp.n_bits != wp.n_bits:
        raise FormatError(f"x has {xp.n_bits} features but w expects {wp.n_bits} ([Out, In])")
    a, b = np.ascontiguousarray(xp.words), np.ascontiguousarray(wp.words)
    return kb.binary_dense_dot(a.size * b.shape[0], a, b, xp.n_bits), xp.n_bits


# --------------------------------------------------------------------------- output transforms
def _per_channel(values, c: int, what: str) -> np.ndarray:
    v = intmath._as_codes(values, what).ravel()
    if v.shape != (c,):
        raise FormatError(f"{what} must hold {c} values (one per output channel), got "
                          f"{np.asarray(values).shape}")
    return np.ascontiguousarray(v)


def _dot(dot) -> np.ndarray:
    d = np.ascontiguousarray(intmath._as_codes(dot, "dot"))
    if d.ndim not in (2, 4):
        raise FormatError(f"dot must be [N, C] or [N, C, Ho, Wo], got shape {d.shape}")
    return d


def _max_abs(a: np.ndarray) -> int:
    return max(abs(int(a.min())), abs(int(a.max()))) if a.size else 0


def binary_scale_int(dot, scale, scale_fmt: QFormat, out: QFormat, *, bias=None,
                     bias_fmt: QFormat | None = None, beta=None, beta_fmt: QFormat | None = None,
                     rounding="half_even", overflow="saturate") -> tuple[np.ndarray, int]:
    """Fixed-point output ``y = scale[c] * [beta[n, pos]] * dot + bias[c]``, rounded into ``out``.

    ``scale`` holds codes of ``scale_fmt`` per output channel (XNOR-Net alpha,
    or alpha times a folded BatchNorm gain); ``bias`` codes of ``bias_fmt``
    (the folded BatchNorm offset); ``beta`` codes of ``beta_fmt``, ``[N, Ho, Wo]``
    for a conv dot or ``[N]`` for a dense one (XNOR-Net's K matrix, from
    :func:`fxp.quant.binary.xnor_beta`).  The exact sum is formed in int64 at
    ``F = max(frac(scale) + frac(beta), frac(bias), frac(out))`` fractional
    bits (headroom proven from the operands, else :class:`HeadroomError`),
    then :func:`fxp.ops.fixed.requantize_pow2` drops ``F - frac(out)`` bits
    with ``rounding`` and applies ``overflow``.  Returns ``(codes, n_overflow)``.

    >>> q6, q4 = QFormat.from_frac(8, 6), QFormat.from_frac(8, 4)
    >>> y, n = binary_scale_int([[3, -5]], [3, 3], q6, q4, bias=[1, 1], bias_fmt=q6)
    >>> y.tolist(), n      # (9+1)/64 = 2.5/16 -> 2; (-15+1)/64 = -3.5/16 -> -4 (half_even)
    ([[2, -4]], 0)
    """
    d = _dot(dot)
    c = d.shape[1]
    bshape = (1, c) + (1,) * (d.ndim - 2)
    sc = _per_channel(scale, c, "scale")
    intmath._check_in_format(sc, scale_fmt)
    f, top = scale_fmt.frac_bits, _max_abs(d) * _max_abs(sc)
    bt = None
    if beta is not None:
        if beta_fmt is None:
            raise FormatError("beta needs beta_fmt (the QFormat of its codes)")
        bt = intmath._as_codes(beta, "beta")
        want = (d.shape[0],) + d.shape[2:]
        if bt.shape != want:
            raise FormatError(f"beta must have shape {want} (one value per batch and output "
                              f"position), got {bt.shape}")
        intmath._check_in_format(bt, beta_fmt)
        f, top = f + beta_fmt.frac_bits, top * _max_abs(bt)
    f_all, bs = max(f, out.frac_bits), None
    if bias is not None:
        if bias_fmt is None:
            raise FormatError("bias needs bias_fmt (the QFormat of its codes)")
        bs = _per_channel(bias, c, "bias")
        intmath._check_in_format(bs, bias_fmt)
        f_all = max(f_all, bias_fmt.frac_bits)
    b_top = 0 if bs is None else _max_abs(bs) << (f_all - bias_fmt.frac_bits)
    total = (top << (f_all - f)) + b_top
    if total > I64_MAX or f_all - out.frac_bits > 64:
        raise HeadroomError(f"binary_scale_int: |scale*beta*dot| << {f_all - f} + |bias| can "
                            f"reach {total} (> int64) or the shift {f_all - out.frac_bits} "
                            "exceeds 64: narrow the formats")
    acc = d * sc.reshape(bshape)
    if bt is not None:
        acc = acc * np.expand_dims(bt, 1)
    acc = acc << (f_all - f)
    if bs is not None:
        acc = acc + (bs.reshape(bshape) << (f_all - bias_fmt.frac_bits))
    return fixed.requantize_pow2(acc, f_all - out.frac_bits, out, rounding, overflow)


def binary_threshold(dot, thresholds, directions) -> np.ndarray:
    """BatchNorm + sign folded: int8 +-1 per element of ``dot`` (channels on axis 1).

    ``directions[c] = +1``: output +1 iff ``dot >= thresholds[c]`` (a positive
    BN gain; ``>=`` because ``sign(0) = +1``); ``directions[c] = -1``: +1 iff
    ``dot <= thresholds[c]`` (a negative gain).  A zero gain is encoded by
    :func:`fxp.quant.binary.sign_thresholds` as direction +1 with an
    always/never threshold (int64 min / max).

    >>> binary_threshold([[3, 3], [-1, -1]], [2, 2], [1, -1]).tolist()
    [[1, -1], [-1, 1]]
    """
    d = _dot(dot)
    c = d.shape[1]
    t = _per_channel(thresholds, c, "thresholds")
    dr = _per_channel(directions, c, "directions")
    if not np.all((dr == 1) | (dr == -1)):
        raise FormatError(f"directions must be +1 or -1 per channel, got {dr.tolist()}")
    inner = int(np.prod(d.shape[2:], dtype=np.int64))
    return kb.threshold_signs(d.size, d.reshape(d.shape[0], c, inner), t,
                              dr).reshape(d.shape)
