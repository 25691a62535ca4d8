"""Scalar jitted integer primitives, used inside the loop kernels.

Mode codes follow the order of the enums in :mod:`fxp.core.modes`:

rounding: 0 floor, 1 ceil, 2 to_zero, 3 away, 4 half_up, 5 half_down,
6 half_to_zero, 7 half_away, 8 half_even, 9 stochastic;
overflow: 0 wrap, 1 saturate, 2 saturate_symmetric, 3 saturate_zero.

All arithmetic is int64 / uint64 with every literal typed explicitly (mixing
int64 and uint64 in numba silently promotes to float64).
"""

from __future__ import annotations

import numpy as np

from fxp.kernels._jit import jit

U1 = np.uint64(1)
U0 = np.uint64(0)
ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
S30 = np.uint64(30)
S27 = np.uint64(27)
S31 = np.uint64(31)

FLOOR, CEIL, TO_ZERO, AWAY, HALF_UP, HALF_DOWN, HALF_TO_ZERO, HALF_AWAY, HALF_EVEN, STOCHASTIC = range(10)
WRAP, SATURATE, SATURATE_SYMMETRIC, SATURATE_ZERO = range(4)
EXACT, BELOW_HALF, TIE, ABOVE_HALF = 0, 1, 2, 3


def _build_round_table() -> np.ndarray:
    """ROUND_TABLE[mode*16 + cls*4 + neg*2 + odd] = 1 when floor(x/2**s) must be incremented.

    ``cls`` is the remainder class (exact / below half / tie / above half),
    ``neg`` whether the exact value is negative, ``odd`` the parity of the
    floor.  A table lookup keeps the inner loops free of mode branches.
    """
    t = np.zeros(10 * 16, np.int64)
    for cls in range(4):
        for neg in (0, 1):
            for odd in (0, 1):
                nz, tie, above = cls != EXACT, cls == TIE, cls == ABOVE_HALF
                rules = {
                    FLOOR: False, CEIL: nz, TO_ZERO: nz and neg, AWAY: nz and not neg,
                    HALF_UP: tie or above, HALF_DOWN: above,
                    HALF_TO_ZERO: above or (tie and neg), HALF_AWAY: above or (tie and not neg),
                    HALF_EVEN: above or (tie and odd),
                }
                for mode, up in rules.items():
                    t[mode * 16 + cls * 4 + neg * 2 + odd] = int(up)
    return t


ROUND_TABLE = _build_round_table()


@jit
def splitmix64(seed, index):
    """64 random bits for flat element ``index`` (same stream as intmath.random_bits)."""
    z = np.uint64(seed) + (np.uint64(index) + U1) * GOLDEN
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    return z ^ (z >> S31)


@jit
def round_shift(x, s, mode, u):
    """round(x / 2**s) with rounding ``mode``; ``s`` >= 0 (clamped to 127); ``u`` = random bits."""
    if s <= 0:
        return x
    if s > 127:
        s = 127
    ux = np.uint64(x)
    if s < 64:
        q = x >> s
        r = ux & ((U1 << np.uint64(s)) - U1)
        half = U1 << np.uint64(s - 1)
        thr = r << np.uint64(64 - s)
    else:
        q = np.int64(-1) if x < 0 else np.int64(0)
        r = ux
        half = (U1 << np.uint64(63)) if s == 64 else U0
        sh = s - 64
        if sh > 63:
            sh = 63
        thr = np.uint64(x >> sh)
    if r == U0 or (s > 64 and x == 0):
        cls = EXACT
    elif s > 64:
        cls = BELOW_HALF if x > 0 else ABOVE_HALF
    elif r < half:
        cls = BELOW_HALF
    elif r == half:
        cls = TIE
    else:
        cls = ABOVE_HALF
    if mode == STOCHASTIC:
        return q + 1 if u < thr else q
    return q + ROUND_TABLE[mode * 16 + cls * 4 + (2 if x < 0 else 0) + (q & 1)]


@jit
def wrap_bits(v, bits, signed):
    """Two's-complement reduction of the int64 ``v`` (any value) to ``bits`` bits."""
    if bits >= 64:
        return v
    low = np.uint64(v) & ((U1 << np.uint64(bits)) - U1)
    out = np.int64(low)
    if signed:
        sign = np.int64(1) << (bits - 1)
        out = (out ^ sign) - sign  # sign-extend bit bits-1
    return out


@jit
def overflow(v, lo, hi, bits, signed, mode):
    """(code, overflowed) for the int64 ``v`` brought into [lo, hi] with ``mode``."""
    if lo <= v <= hi:
        return v, False
    if mode == WRAP:
        return wrap_bits(v, bits, signed), True
    if mode == SATURATE_ZERO:
        return np.int64(0), True
    return (hi if v > hi else lo), True


@jit
def shift_left(x, k, lo, hi, bits, signed, mode):
    """(code, overflowed) for ``x * 2**k`` (k >= 0) brought into [lo, hi] with ``mode``."""
    if k > 64:
        k = 64
    if k >= 64:
        hi_k = np.int64(0)
        lo_k = np.int64(0)
    else:
        hi_k = hi >> k
        lo_k = -np.int64(np.uint64(-(lo + 1)) + U1 >> np.uint64(k)) if lo < 0 else np.int64(0)
    if lo_k <= x <= hi_k:
        return x << k if k < 64 else np.int64(0), False
    if mode == WRAP:
        if k >= 64:
            return np.int64(0), True
        return wrap_bits(np.int64(np.uint64(x) << np.uint64(k)), bits, signed), True
    if mode == SATURATE_ZERO:
        return np.int64(0), True
    return (hi if x > hi_k else lo), True


@jit
def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values held in int64."""
    if a == -2147483648 and b == -2147483648:
        return np.int64(2147483647)
    ab = a * b
    t = ab + (np.int64(1) << 30) if ab >= 0 else ab + 1 - (np.int64(1) << 30)
    return t >> 31 if t >= 0 else -((-t) >> 31)


@jit
def rdbpot(x, e):
    """gemmlowp RoundingDivideByPOT: x / 2**e rounded half away from zero."""
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > threshold else 0)


@jit
def mbqm(x, multiplier, exponent, single):
    """(value, overflowed): MultiplyByQuantizedMultiplier, double or single rounding."""
    if single:
        total = 31 - exponent
        out = (x * multiplier + (np.int64(1) << (total - 1))) >> total
        return out, out < -2147483648 or out > 2147483647
    left = exponent if exponent > 0 else 0
    right = -exponent if exponent < 0 else 0
    shifted = x << left
    wrapped = ((shifted + (np.int64(1) << 31)) & np.int64(0xFFFFFFFF)) - (np.int64(1) << 31)
    return rdbpot(srdhm(wrapped, multiplier), right), wrapped != shifted
