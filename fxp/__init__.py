"""fxp: a bit-exact fixed-point simulator and bit-width optimizer for CNNs.

Integers are the truth and floats a view: every fixed-point value is an
integer *code* (int64) plus a :class:`~fxp.core.format.QFormat` that says how
to read it.  See the README for the tour.
"""

from __future__ import annotations

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import FxpError

__version__ = "0.1.0"

__all__ = ["FxpError", "OverflowMode", "QFormat", "RoundingMode", "__version__"]
