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
