"""The one exception hierarchy of fxp.

Every error fxp raises on purpose is an :class:`FxpError`.  Each subclass also
derives from the builtin exception it refines, so ``except ValueError`` keeps
working for callers that do not know fxp.  Messages say *what* is wrong,
*where* (file, node, layer, tensor, index), what was expected and what was got.

>>> from fxp.errors import FormatError, FxpError
>>> issubclass(FormatError, ValueError) and issubclass(FormatError, FxpError)
True
"""

from __future__ import annotations

__all__ = [
    "CalibrationError",
    "CheckpointError",
    "ClusterError",
    "DataError",
    "FormatError",
    "FxpError",
    "FxpWarning",
    "GraphError",
    "HeadroomError",
    "InfeasibleTargetError",
    "MissingDependencyError",
    "ModelImportError",
    "OutputError",
    "PlanError",
    "PrecisionWarning",
    "ShiftWeightError",
    "SolverError",
    "UnsupportedOpError",
]


class FxpError(Exception):
    """Base class of every error fxp raises on purpose."""


class FormatError(FxpError, ValueError):
    """A fixed-point format, rounding/overflow mode, shift or scale is invalid."""


class HeadroomError(FxpError, OverflowError):
    """An integer intermediate could exceed int64: fxp refuses instead of wrapping silently."""


class ModelImportError(FxpError, ValueError):
    """A model file cannot be read: corrupt, truncated, missing tensors, bad values."""


class UnsupportedOpError(FxpError, NotImplementedError):
    """A model uses an operator (or an attribute value) fxp does not implement."""


class GraphError(FxpError, ValueError):
    """The model graph is inconsistent (shapes, dangling tensors, cycles)."""


class PlanError(FxpError, ValueError):
    """A per-layer plan is invalid for the model it is applied to."""


class ShiftWeightError(PlanError):
    """A weight marked shift (``TensorSpec.shift``) has a code that is not 0 or +-2**k."""


class DataError(FxpError, ValueError):
    """Input data is missing, malformed, mis-shaped or out of range."""


class CalibrationError(DataError):
    """Calibration data cannot produce ranges (empty set, NaN/Inf, constant tensor)."""


class CheckpointError(DataError):
    """A training checkpoint is not an fxp checkpoint, is corrupt, or belongs to another run."""


class InfeasibleTargetError(FxpError, ValueError):
    """The requested SQNR/accuracy target cannot be met within the allowed widths."""


class SolverError(FxpError, RuntimeError):
    """The optimizer's solver failed or returned an answer that did not verify."""


class MissingDependencyError(FxpError, ImportError):
    """An optional dependency is not installed; the message says what to install."""


class ClusterError(FxpError, RuntimeError):
    """A Dask cluster cannot be reached or started, or lost a task for good (fxp.dist)."""


class OutputError(FxpError, OSError):
    """An output file or folder cannot be written (unwritable, missing parent, name too long)."""


class FxpWarning(UserWarning):
    """Base class of fxp's warnings."""


class PrecisionWarning(FxpWarning):
    """A result may be less precise than asked (e.g. a fallback was taken)."""


class BinaryInputWarning(FxpWarning):
    """A binary layer's input is never negative: ``sign`` makes it a constant +1."""
