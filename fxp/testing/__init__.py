"""Property-test your own integer arithmetic (C, HLS, firmware) with fxp as the oracle.

Modules
-------
:mod:`fxp.testing.strategies`
    Hypothesis strategies that draw the format first, then values inside it
    (so failures shrink to small, readable examples): formats, codes, code
    arrays, rounding ties, requantization parameters, conv/dense/pool
    geometries and small per-layer plans.  Needs ``hypothesis``; importing it
    without hypothesis raises :class:`~fxp.errors.MissingDependencyError`.
:mod:`fxp.testing.oracles`
    Slow, independent references in Python ints and ``Fraction`` (cast, shift,
    requantize in each runtime convention, dot products with wrap/saturate
    accumulators, conv2d, pooling).  They import none of fxp's kernels.
:func:`assert_bit_exact`
    Exact comparison of integer codes that names the first differing element,
    both codes (decimal and hex), the formats and the inputs behind it.
:mod:`fxp.testing.cc`
    Find the system C compiler and build a shared library for ``ctypes``.
:mod:`fxp.testing.plugin`
    A pytest plugin (entry point ``fxp``): hypothesis profiles ``fxp-ci``,
    ``fxp-dev``, ``fxp-nightly`` (selected with ``--fxp-profile`` or
    ``FXP_HYPOTHESIS_PROFILE``) and the fixtures ``fxp_strategies``,
    ``fxp_oracles``, ``c_compiler`` and ``fxp_compile_c``.

>>> from fxp.testing import assert_bit_exact
>>> assert_bit_exact([1, 2, 3], [1, 2, 3])
"""

from __future__ import annotations

import importlib

from fxp.testing import oracles
from fxp.testing.assertions import assert_bit_exact

__all__ = ["assert_bit_exact", "cc", "oracles", "strategies"]


def __getattr__(name: str):
    if name in ("strategies", "cc", "plugin"):
        return importlib.import_module(f"fxp.testing.{name}")
    raise AttributeError(f"module 'fxp.testing' has no attribute {name!r}")
