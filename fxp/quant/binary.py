"""Binarization: sign with ``sign(0) = +1``, XNOR-Net scaling, BatchNorm+sign thresholds.

Weights (XNOR-Net, Rastegari et al. 2016, section 3.1, eq. 2-3)::

    B = sign(W),   alpha[c] = mean |W[c]| = ||W[c]||_1 / n      (per output channel c)

minimise ``||W - alpha*B||^2``.  ``sign(0) = +1`` everywhere in fxp, as in
Larq Compute Engine and QONNX ``BipolarQuant`` (``x >= 0 -> +1``): an exact 0
in a weight or a pre-sign activation becomes +1 (bit 0 when packed).

Activations: ``H = sign(X)``; XNOR-Net's optional per-position scale
``beta = mean |X|`` over each receptive field (its K matrix,
``K = A * k`` with ``A = mean_c |X|`` and ``k`` the ``kh x kw`` box filter of
``1/(kh*kw)``, zero padded like the convolution), or none (BNN, Courbariaux
et al. 2016).

BatchNorm + sign fold (FINN): ``sign(a*dot + b)`` with ``sign(0) = +1`` is
``dot >= ceil(-b/a)`` for ``a > 0`` and ``dot <= floor(-b/a)`` for ``a < 0``,
computed here with exact rationals (:func:`sign_thresholds`).  In the popcount
domain (``dot = K - 2P``) the first reads ``P <= floor((K - T)/2)``.

>>> binarize([-0.5, 0.0, 2.0, -0.0]).tolist()     # sign(0) = +1, also for -0.0
[-1, 1, 1, 1]
>>> t, d = sign_thresholds([0.5, -2, 0], [-1.25, 3, -1])
>>> t.tolist(), d.tolist()     # dot >= 3; dot <= 1; never (b < 0)
([3, 1, 9223372036854775807], [1, -1, 1])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import FormatError, HeadroomError
from fxp.kernels.spec_layers import rounding_divide
from fxp.ops import fixed

__all__ = ["BinaryWeights", "binarize", "binarize_weights", "fold_batchnorm",
           "sign_thresholds", "xnor_beta", "xnor_beta_dense"]

I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


def _finite(x, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iuf" or a.dtype == np.float16:
        a = a.astype(np.float64)
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise FormatError(f"{what} holds a non-finite value {float(a.flat[bad])!r} at flat "
                          f"index {bad}")
    return a


def binarize(x) -> np.ndarray:
    """``sign(x)`` as int8 +-1 with ``sign(0) = +1`` (reals or integer codes; NaN/Inf refused).

    The sign of a code equals the sign of its real value in any QFormat, so
    codes can be binarized directly.
    """
    a = _finite(x, "x")
    return np.where(a < 0, np.int8(-1), np.int8(1)).astype(np.int8)


@dataclass(frozen=True)
class BinaryWeights:
    """Binarized weights of one layer.

    Attributes
    ----------
    signs : int8 array, the weight's shape
        ``sign(W)`` with ``sign(0) = +1``.
    alpha : int64 array [Co]
        Codes of ``alpha_fmt``: ``mean |W[c]|`` rounded into the format.
    alpha_fmt : QFormat
        The format of ``alpha`` (chosen by the plan).
    """

    signs: np.ndarray
    alpha: np.ndarray
    alpha_fmt: QFormat


def binarize_weights(w, alpha_fmt: QFormat, rounding="half_even",
                     overflow="saturate") -> BinaryWeights:
    """XNOR-Net binarization of ``w [Co, ...]``: signs and per-channel ``alpha = mean|W[c]|``.

    The mean is taken in float64 (``np.mean``; exact for the small sums of
    float32 weights up to float64 rounding), then quantized with
    :func:`fxp.ops.fixed.quantize` (``rounding``, ``overflow``).

    >>> bw = binarize_weights([[0.5, -0.25, 0.0, 1.0]], QFormat.from_frac(8, 4))
    >>> bw.signs.tolist(), bw.alpha.tolist()          # mean 0.4375 = 7/16
    ([[1, -1, 1, 1]], [7])
    """
    a = _finite(w, "w").astype(np.float64)
    if a.ndim < 1 or a.shape[0] == 0 or a.size == 0:
        raise FormatError(f"w must be [Co, ...] with at least one element, got shape {a.shape}")
    alpha = np.abs(a.reshape(a.shape[0], -1)).mean(axis=1)
    codes, _ = fixed.quantize(alpha, alpha_fmt, rounding, overflow)
    return BinaryWeights(binarize(a), codes.astype(np.int64), alpha_fmt)


def _abs_codes(x, x_fmt: QFormat, ndim: int) -> np.ndarray:
    c = intmath._as_codes(x, "x")
    if c.ndim != ndim:
        raise FormatError(f"x must have {ndim} dimensions, got shape {c.shape}")
    intmath._check_in_format(c, x_fmt)
    return np.abs(c)  # |min code| <= 2**63 is checked by the caller's headroom test


def _beta(total: np.ndarray, n: int, x_fmt: QFormat, beta_fmt: QFormat, rounding,
          overflow, peak: int) -> np.ndarray:
    """round(total * 2**-fx / n) into beta_fmt, exactly."""
    mode = RoundingMode.from_string(rounding)
    if mode is RoundingMode.STOCHASTIC:
        raise FormatError("xnor_beta: stochastic rounding is not offered; choose a "
                          "deterministic mode")
    up = beta_fmt.frac_bits - x_fmt.frac_bits
    num_shift, den = max(up, 0), n << max(-up, 0)
    if (peak << num_shift) > I64_MAX or den > I64_MAX:
        raise HeadroomError(f"xnor_beta: a receptive-field sum {peak} scaled by 2**{up} "
                            "leaves int64: narrow the formats")
    q = rounding_divide(total << num_shift, den, mode)
    out, _ = intmath.apply_overflow(q, beta_fmt, OverflowMode.from_string(overflow))
    return out


def xnor_beta(x, x_fmt: QFormat, beta_fmt: QFormat, kernel, *, strides=(1, 1),
              pads=(0, 0, 0, 0), dilations=(1, 1), rounding="half_even",
              overflow="saturate") -> np.ndarray:
    """XNOR-Net ``beta = mean |X|`` per conv receptive field, as codes of ``beta_fmt``.

    ``x`` holds codes of ``x_fmt`` ``[N, C, H, W]`` (the real, pre-sign
    activation).  ``S[n, oy, ox] = sum |x|`` over the taps inside the image
    and all channels (padded taps are real 0, as in the float network), then
    ``beta = round(S * 2**-frac(x) / (kh*kw*C))`` exactly with ``rounding``,
    and ``overflow`` into ``beta_fmt``.  Returns int64 ``[N, Ho, Wo]``.

    >>> x = np.array([[[[4, -4], [0, 8]]]])         # fixed<8,6>: 1, -1, 0, 2
    >>> xnor_beta(x, QFormat.from_frac(8, 2), QFormat.from_frac(8, 4), (2, 2)).tolist()
    [[[16]]]
    """
    from fxp.ops._checks import _window

    a = _abs_codes(x, x_fmt, 4)
    k, s, p, d, ho, wo = _window(a, kernel, strides, pads, dilations, "xnor_beta")
    n_taps = k[0] * k[1] * a.shape[1]
    peak = (max(-x_fmt.min_code, x_fmt.max_code)) * n_taps
    if peak > I64_MAX:
        raise HeadroomError(f"xnor_beta: a receptive-field sum can reach {peak}, beyond int64")
    plane = np.pad(a.sum(axis=1), ((0, 0), (p[0], p[2]), (p[1], p[3])))
    total = np.zeros((a.shape[0], ho, wo), np.int64)
    for ky in range(k[0]):
        for kx in range(k[1]):
            y0, x0 = ky * d[0], kx * d[1]
            total += plane[:, y0:y0 + (ho - 1) * s[0] + 1:s[0], x0:x0 + (wo - 1) * s[1] + 1:s[1]]
    return _beta(total, n_taps, x_fmt, beta_fmt, rounding, overflow, peak)


def xnor_beta_dense(x, x_fmt: QFormat, beta_fmt: QFormat, rounding="half_even",
                    overflow="saturate") -> np.ndarray:
    """``beta[n] = mean_i |x[n, i]|`` of a dense input ``[N, In]`` (codes), as :func:`xnor_beta`."""
    a = _abs_codes(x, x_fmt, 2)
    if a.shape[1] == 0:
        raise FormatError("xnor_beta_dense: x has no features")
    peak = max(-x_fmt.min_code, x_fmt.max_code) * a.shape[1]
    if peak > I64_MAX:
        raise HeadroomError(f"xnor_beta_dense: a row sum can reach {peak}, beyond int64")
    return _beta(a.sum(axis=1), a.shape[1], x_fmt, beta_fmt, rounding, overflow, peak)


def fold_batchnorm(gamma, beta, mean, var, eps: float, scale=1.0) -> tuple[np.ndarray, np.ndarray]:
    """``BN(scale*dot) = a*dot + b`` per channel, in float64.

    ``a = gamma*scale/sqrt(var+eps)``, ``b = beta - gamma*mean/sqrt(var+eps)``;
    ``scale`` is XNOR-Net's alpha (or 1 for a BNN).  Quantize ``a`` and ``b``
    for :func:`fxp.ops.binary.binary_scale_int`, or pass them (or exact
    Fractions of your own) to :func:`sign_thresholds`.
    """
    g, bt, m, v = (_finite(t, n).astype(np.float64) for t, n in
                   ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "var")))
    s = _finite(scale, "scale").astype(np.float64)
    if np.any(v + eps <= 0):
        raise FormatError("fold_batchnorm: var + eps must be > 0 in every channel")
    inv = g / np.sqrt(v + eps)
    return inv * s, bt - inv * m


def _fractions(v, what: str) -> list[Fraction]:
    if isinstance(v, (Fraction, int, float, np.number)):
        v = [v]
    out = []
    for i, e in enumerate(list(v) if not isinstance(v, np.ndarray) else v.ravel().tolist()):
        if isinstance(e, float) and not math.isfinite(e):
            raise FormatError(f"{what}[{i}] is not finite: {e!r}")
        try:
            out.append(Fraction(e))
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{what}[{i}] = {e!r} is not a number") from exc
    return out


def sign_thresholds(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``sign(a[c]*dot + b[c])`` (``sign(0) = +1``) into integer thresholds, exactly.

    ``a`` and ``b`` are per-channel numbers: floats are taken at their exact
    binary value, ints and :class:`fractions.Fraction` as they are.  Returns
    ``(thresholds int64 [C], directions int8 [C])`` for
    :func:`fxp.ops.binary.binary_threshold`:

    * ``a > 0``: direction +1, ``T = ceil(-b/a)`` (+1 iff ``dot >= T``);
    * ``a < 0``: direction -1, ``T = floor(-b/a)`` (+1 iff ``dot <= T``);
    * ``a = 0``: direction +1, ``T = int64 min`` (always +1) if ``b >= 0``,
      else ``int64 max`` (never, since ``|dot| <= K < 2**63 - 1``).

    Thresholds beyond int64 are clamped the same way (always / never).
    """
    fa, fb = _fractions(a, "a"), _fractions(b, "b")
    if len(fa) != len(fb):
        raise FormatError(f"a and b must have one value per channel each, got {len(fa)} and "
                          f"{len(fb)}")
    t, d = [], []
    for ai, bi in zip(fa, fb, strict=True):
        if ai == 0:
            t.append(I64_MIN if bi >= 0 else I64_MAX)
            d.append(1)
            continue
        r = -bi / ai
        t.append(min(max(math.ceil(r) if ai > 0 else math.floor(r), I64_MIN), I64_MAX))
        d.append(1 if ai > 0 else -1)
    return np.array(t, np.int64), np.array(d, np.int8)
