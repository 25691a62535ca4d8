"""Pure-Python references for the integer layer kernels (Python ints and lists only).

The code now lives in the public :mod:`fxp.testing.oracles`; this module
re-exports the layer oracles under their historical names for the tests
(``accumulate`` here is the variant that also returns the peak partial sum).
"""

from __future__ import annotations

from fxp.testing.oracles import (  # noqa: F401
    _channel,
    _grid,
    _pool,
    _window,
    add_affine,
    add_pow2,
    avgpool2d,
    bound,
    conv2d,
    dense,
    maxpool2d,
    out_size,
    requantize_float32_per_channel,
    requantize_multiplier_per_channel,
    requantize_pow2_per_channel,
)
from fxp.testing.oracles import accumulate_with_peak as accumulate  # noqa: F401
from tests import oracles  # noqa: F401
