"""Input preprocessing: ``(raw * scale - mean) / std``, then layout.

The same parameters travel with a model as ONNX ``metadata_props``
(string values) under the keys ``fxp.preprocess.scale``,
``fxp.preprocess.mean``, ``fxp.preprocess.std`` and
``fxp.preprocess.layout``.  ``mean`` and ``std`` are a scalar or one value per
channel (comma-separated in the metadata).

>>> p = Preprocess(scale=1 / 255, mean=0.5, std=0.5)
>>> Preprocess.from_metadata(p.to_metadata()) == p
True
>>> import numpy as np
>>> p.apply(np.array([[[[0.0, 255.0]]]], np.float32)).tolist()
[[[[-1.0, 1.0]]]]
>>> Preprocess.from_metadata({"fxp.preprocess.scale": "1/255"}).scale == 1 / 255
True
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from fxp.errors import DataError, ModelImportError

__all__ = ["METADATA_PREFIX", "Preprocess", "read_model_preprocess"]

METADATA_PREFIX = "fxp.preprocess."
_LAYOUTS = ("NCHW", "NHWC")
_FIELDS = ("scale", "mean", "std", "layout")

Floats = float | tuple[float, ...]


def _parse_number(text: str, key: str) -> float:
    t = text.strip()
    try:
        value = float(Fraction(t)) if "/" in t else float(t)
    except (ValueError, ZeroDivisionError):
        raise DataError(
            f"{key}: cannot parse {text!r} as a number (e.g. '0.5' or '1/255')"
        ) from None
    return value


def _as_floats(value: object, key: str) -> Floats:
    """Normalize a scalar, sequence or comma-separated string to float / tuple."""
    if isinstance(value, str):
        parts = [_parse_number(s, key) for s in value.split(",")]
    elif isinstance(value, (int, float, np.integer, np.floating)):
        parts = [float(value)]
    else:
        try:
            parts = [float(v) for v in value]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise DataError(
                f"{key}: expected a number or a list of numbers, got {value!r}"
            ) from None
    if not parts:
        raise DataError(f"{key}: empty value")
    if not all(math.isfinite(v) for v in parts):
        raise DataError(f"{key}: values must be finite, got {parts}")
    return parts[0] if len(parts) == 1 else tuple(parts)


def _fmt(value: Floats) -> str:
    vals = value if isinstance(value, tuple) else (value,)
    return ",".join(repr(float(v)) for v in vals)


@dataclass(frozen=True)
class Preprocess:
    """Affine pixel normalization and output layout.

    Parameters
    ----------
    scale : float
        Multiplies raw pixels first (e.g. ``1/255``).
    mean : float or tuple of float
        Subtracted after scaling; a tuple gives one value per channel.
    std : float or tuple of float
        Divides after subtracting the mean; must be non-zero.
    layout : {"NCHW", "NHWC"}
        Layout of the arrays :meth:`apply` returns (input is always NCHW).
    """

    scale: float = 1.0
    mean: Floats = 0.0
    std: Floats = 1.0
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        scale = _as_floats(self.scale, "scale")
        if isinstance(scale, tuple):
            raise DataError(f"scale must be a single number, got {scale}")
        if scale == 0:
            raise DataError("scale must be non-zero")
        mean = _as_floats(self.mean, "mean")
        std = _as_floats(self.std, "std")
        if any(v == 0 for v in (std if isinstance(std, tuple) else (std,))):
            raise DataError(f"std must be non-zero, got {std}")
        layout = str(self.layout).upper()
        if layout not in _LAYOUTS:
            raise DataError(f"layout must be one of {_LAYOUTS}, got {self.layout!r}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "layout", layout)

    @classmethod
    def identity(cls) -> Preprocess:
        """The no-op preprocessing."""
        return cls()

    @classmethod
    def from_metadata(
        cls, props: Mapping[str, str], *, default: Preprocess | None = None
    ) -> Preprocess:
        """Build from a string dict such as ONNX ``metadata_props``.

        Keys other than ``fxp.preprocess.*`` are ignored; missing keys come
        from ``default`` (identity when ``None``).

        Raises
        ------
        DataError
            A value does not parse, or an unknown ``fxp.preprocess.*`` key.
        """
        base = default or cls()
        kwargs: dict[str, object] = {}
        for key, value in props.items():
            if not key.startswith(METADATA_PREFIX):
                continue
            name = key[len(METADATA_PREFIX):]
            if name not in _FIELDS:
                raise DataError(f"unknown preprocessing key {key!r} (known: {', '.join(_FIELDS)})")
            kwargs[name] = value if name == "layout" else _as_floats(value, key)
        return replace(base, **kwargs)

    def to_metadata(self) -> dict[str, str]:
        """Return the ``fxp.preprocess.*`` string dict (round-trips exactly)."""
        return {
            METADATA_PREFIX + "scale": _fmt(self.scale),
            METADATA_PREFIX + "mean": _fmt(self.mean),
            METADATA_PREFIX + "std": _fmt(self.std),
            METADATA_PREFIX + "layout": self.layout,
        }

    def override(self, **changes: object) -> Preprocess:
        """Return a copy with the given fields replaced; ``None`` values are ignored."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise DataError(f"unknown preprocessing field(s) {sorted(unknown)} (known: {_FIELDS})")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def _channel(self, value: Floats, channels: int, key: str) -> np.ndarray:
        if isinstance(value, tuple):
            if len(value) != channels:
                raise DataError(
                    f"{key} has {len(value)} values but the images have {channels} channels"
                )
            return np.asarray(value, np.float64).reshape(1, channels, 1, 1)
        return np.asarray(value, np.float64)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalize raw NCHW pixels; returns float32 in :attr:`layout`.

        Raises
        ------
        DataError
            ``x`` is not 4-D, or per-channel values do not match its channels.
        """
        a = np.asarray(x)
        if a.ndim != 4:
            raise DataError(f"preprocessing expects NCHW images (4-D), got shape {a.shape}")
        mean = self._channel(self.mean, a.shape[1], "mean")
        std = self._channel(self.std, a.shape[1], "std")
        out = ((a.astype(np.float64) * self.scale - mean) / std).astype(np.float32)
        if self.layout == "NHWC":
            out = np.ascontiguousarray(out.transpose(0, 2, 3, 1))
        return out


def read_model_preprocess(
    path: str | os.PathLike[str], *, default: Preprocess | None = None
) -> Preprocess:
    """Read the ``fxp.preprocess.*`` metadata of an ONNX model file.

    Parameters
    ----------
    path : path-like
        ONNX file.
    default : Preprocess, optional
        Used for keys the model does not carry.

    Raises
    ------
    ModelImportError
        The file cannot be read as ONNX.
    """
    import onnx

    p = Path(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # onnx raises assorted errors on bad files
        raise ModelImportError(f"{p}: cannot read ONNX model: {exc}") from exc
    props = {m.key: m.value for m in model.metadata_props}
    return Preprocess.from_metadata(props, default=default)
