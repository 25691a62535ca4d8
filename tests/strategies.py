"""Hypothesis strategies: draw the format first, then values inside it (shrinks well)."""

from __future__ import annotations

from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode

DETERMINISTIC = [m.value for m in RoundingMode if m is not RoundingMode.STOCHASTIC]
ROUNDING = [m.value for m in RoundingMode]
OVERFLOW = [m.value for m in OverflowMode]


@st.composite
def formats(draw, min_bits: int = 1, max_bits: int = 64, frac_range=(-70, 140),
            signed: bool | None = None) -> QFormat:
    """A QFormat with 1..64 bits (unsigned up to 63) and a wide range of frac_bits."""
    sgn = draw(st.booleans()) if signed is None else signed
    top = max_bits if sgn else min(max_bits, 63)
    bits = draw(st.integers(min_bits, top))
    frac = draw(st.integers(*frac_range))
    return QFormat.from_frac(bits, frac, sgn)


def boundary_codes(fmt: QFormat) -> list[int]:
    """gemmlowp-style boundary set: +-2**i + {-2..2}, MIN, MIN+1, MIN+2, MAX-2..MAX."""
    vals = {fmt.min_code, fmt.min_code + 1, fmt.min_code + 2, fmt.max_code - 2,
            fmt.max_code - 1, fmt.max_code, 0, 1, -1}
    for i in range(fmt.bits):
        for d in (-2, -1, 0, 1, 2):
            vals.add((1 << i) + d)
            vals.add(-(1 << i) + d)
    return sorted(v for v in vals if fmt.contains_code(v))


def codes(fmt: QFormat):
    """One code of ``fmt``: boundary values or uniform."""
    return st.one_of(st.sampled_from(boundary_codes(fmt)),
                     st.integers(fmt.min_code, fmt.max_code))


@st.composite
def code_lists(draw, fmt: QFormat, max_size: int = 8) -> list[int]:
    return draw(st.lists(codes(fmt), min_size=1, max_size=max_size))


def int32s():
    """int32 values with the edges weighted in."""
    edges = [-(1 << 31), -(1 << 31) + 1, -(1 << 31) + 2, (1 << 31) - 1, (1 << 31) - 2, 0, 1, -1]
    return st.one_of(st.sampled_from(edges), st.integers(-(1 << 31), (1 << 31) - 1))
