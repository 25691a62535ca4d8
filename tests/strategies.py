"""Hypothesis strategies: draw the format first, then values inside it (shrinks well).

The code now lives in the public :mod:`fxp.testing.strategies`; this module
re-exports the names the tests have always used.
"""

from __future__ import annotations

from fxp.testing.strategies import (  # noqa: F401
    DETERMINISTIC,
    OVERFLOW,
    ROUNDING,
    boundary_codes,
    code_lists,
    codes,
    formats,
    int32s,
)


def window_geometry(draw, max_extra: int = 3):
    """Kernel, strides, dilations, pads and an input size that leaves >= 1 output position.

    ``draw`` is a hypothesis ``draw`` (call from inside an ``@st.composite``).
    Returns ``((kh, kw), strides, dilations, pads, (h, w))``.
    """
    import hypothesis.strategies as st

    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    span_h, span_w = (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1
    h = draw(st.integers(max(1, span_h - pads[0] - pads[2]), span_h + max_extra))
    w = draw(st.integers(max(1, span_w - pads[1] - pads[3]), span_w + max_extra))
    return (kh, kw), strides, dil, pads, (h, w)


def accumulator_width(draw, need: int):
    """``(bits, holds, overflow mode)``: mostly a width around ``need`` (the proven width of
    the layer, so overflow happens in some draws and not others), sometimes any width."""
    import hypothesis.strategies as st

    mode = draw(st.sampled_from(OVERFLOW))
    if draw(st.integers(0, 9)) == 0:
        return draw(st.integers(1, 63)), False, mode
    bits = draw(st.one_of(st.integers(max(1, need - 6), min(64, need + 1)), st.just(64)))
    return bits, True, mode
