"""Exhaustive check of the number system on every format of 1..8 bits.

For every width W in 1..8, signed and unsigned, every input code, every shift
(right 0..W+2 and left 1..W+2), every deterministic rounding mode and every
overflow mode, into every destination width 1..8 of the same signedness:
``cast`` (numpy specification and Numba kernel) equals the Fraction oracle,
codes and overflow counts.  A power-of-two requantization is the same
operation between integer formats, so ``requantize_pow2`` is checked on the
right shifts too.  About 5.6 million cases.
"""

from __future__ import annotations

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.ops import fixed
from tests import oracles
from tests.strategies import DETERMINISTIC, OVERFLOW

WIDTHS = range(1, 9)


def _oracle_fit_table(values, dst, omode):
    """Oracle overflow of each distinct rounded value: {value: (code, overflowed)}."""
    lo, hi = oracles.bounds(dst, omode)
    return {v: oracles.fit(v, dst.bits, dst.signed, lo, hi, omode) for v in values}


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("width", WIDTHS)
def test_cast_every_code_shift_mode_and_width(width, signed):
    src = QFormat.from_frac(width, 3, signed)
    codes = np.arange(src.min_code, src.max_code + 1, dtype=np.int64)
    checked = 0
    for shift in range(-(width + 2), width + 3):  # > 0: drop bits (right shift)
        dst_frac = src.frac_bits - shift
        for rmode in DETERMINISTIC:
            rounded = [oracles.round_fraction(
                oracles.value(int(c), src.frac_bits) * oracles.value(1, -dst_frac), rmode)
                for c in codes]
            uniq = sorted(set(rounded))
            for dst_bits in WIDTHS:
                dst = QFormat.from_frac(dst_bits, dst_frac, signed)
                for omode in OVERFLOW:
                    table = _oracle_fit_table(uniq, dst, omode)
                    want = np.array([table[v][0] for v in rounded], np.int64)
                    want_n = sum(table[v][1] for v in rounded)
                    for backend in ("numpy", "numba"):
                        got, n = fixed.cast(codes, src, dst, rmode, omode, backend=backend)
                        if not (np.array_equal(got, want) and n == want_n):
                            bad = np.flatnonzero(got != want)
                            i = int(bad[0]) if bad.size else 0
                            pytest.fail(
                                f"{backend} cast {src}->{dst} {rmode}/{omode}: code {codes[i]} "
                                f"gave {got[i]}, oracle {want[i]}; count {n} vs {want_n}")
                    if shift >= 0 and dst.frac_bits == 0 and src.frac_bits == shift:
                        got, n = fixed.requantize_pow2(codes, shift, dst, rmode, omode)
                        assert np.array_equal(got, want) and n == want_n
                    checked += codes.size
    assert checked == codes.size * (2 * width + 5) * len(DETERMINISTIC) * 8 * len(OVERFLOW)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("width", WIDTHS)
def test_requantize_pow2_every_code_and_shift(width, signed):
    """Integer accumulator codes, shift 0..W+2, into the same width: equals the oracle."""
    fmt = QFormat.integer(width, signed)
    codes = np.arange(fmt.min_code, fmt.max_code + 1, dtype=np.int64)
    for shift in range(width + 3):
        for rmode in DETERMINISTIC:
            for omode in OVERFLOW:
                lo, hi = oracles.bounds(fmt, omode)
                ref = [oracles.fit(oracles.round_fraction(oracles.value(int(c), shift), rmode),
                                   width, signed, lo, hi, omode) for c in codes]
                want = np.array([r[0] for r in ref], np.int64)
                for backend in ("numpy", "numba"):
                    got, n = fixed.requantize_pow2(codes, shift, fmt, rmode, omode, backend=backend)
                    assert np.array_equal(got, want), (backend, shift, rmode, omode)
                    assert n == sum(r[1] for r in ref)
