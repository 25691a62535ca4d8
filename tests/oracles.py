"""Independent references built from Python ints and ``fractions.Fraction``.

The code now lives in the public :mod:`fxp.testing.oracles`; this module
re-exports the scalar oracles under their historical names for the tests.
"""

from __future__ import annotations

from fxp.testing.oracles import (  # noqa: F401
    HALF,
    INT32_MAX,
    INT32_MIN,
    M64,
    accumulate,
    bounds,
    cast,
    dot,
    fit,
    mbqm_double,
    mbqm_single,
    quantize,
    rdbpot,
    requant_float32,
    requantize_multiplier,
    requantize_pow2,
    round_fraction,
    shift_right,
    splitmix64,
    srdhm,
    value,
    wrap32,
)
