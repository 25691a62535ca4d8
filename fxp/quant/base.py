"""Quantizer protocol, the :class:`QuantizedTensor` result, and the registry.

Every quantizer is a :class:`Quantizer` subclass with three per-tensor steps:

* ``fit(w, bits, **options) -> params`` -- the data-dependent parameters
  (step, scale, codebook, exponent range ...) as a dict of Python scalars or
  small arrays;
* ``encode(w, params) -> codes`` (int64) and ``decode(codes, params) -> values``
  (float64 reconstruction).

``q(w, bits, axis=None)`` fits, encodes and decodes per tensor, or per slice
along ``axis`` (per channel: ``axis=0`` for ``[Cout, ...]`` weights).
``q.apply(x, qt)`` quantizes new values with the parameters frozen in an
earlier result ``qt``: idempotence is ``q.apply(qt.values, qt) == qt``.

Names go through one registry (larq ``quantizers.get``)::

    >>> q = get("deadzone:0.4")
    >>> qt = q([0.1, -0.5, 1.0], bits=3)
    >>> qt.codes.tolist(), qt.params["step"]
    ([0, -2, 3], 0.3333333333333333)
    >>> get("nope")
    Traceback (most recent call last):
    ...
    fxp.errors.FormatError: unknown quantizer 'nope'; valid names: ...

Specs are ``name`` or ``name:arg[:arg]`` (``deadzone:0.4``, ``mulaw:255``,
``minifloat:e4m3``, ``hc:ward``); see :func:`names`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FormatError

__all__ = ["QuantizedTensor", "Quantizer", "as_weights", "get", "names", "register"]


@dataclass(frozen=True)
class QuantizedTensor:
    """Integer codes plus everything needed to reconstruct them.

    Attributes
    ----------
    codes : int64 array, the input's shape
        What an encoder stores (and entropy-codes).  Their meaning depends on
        the quantizer: signed step counts (uniform, mu-law), bit patterns
        (minifloat), ``sign * exponent index`` (pow2), cluster indices.
    values : float64 array, the input's shape
        The decoder's reconstruction ``X-hat``.
    name : str
        The registry spec of the quantizer that made it.
    params : dict
        The fitted parameters (``bits``, ``step``, ``scale`` ...).  Per channel
        (``axis`` given) it also holds ``axis`` and ``channels``, the tuple of
        per-slice parameter dicts, and each scalar parameter stacked into an
        array over channels.  ``side_bits`` is the number of bits of side
        information (scales, codebooks; float32 each) a decoder needs.
    codebook : float64 array or None
        The sorted distinct reconstruction levels when they form a small table
        (at most 2**16 entries; per channel: ``[C, K]`` when every channel has K
        levels); None when there are more or they are only given by a formula.
        For clustering the codes index it directly.
    fmt : QFormat or None
        Set when ``codes`` are codes of this fixed-point format, i.e.
        ``values == codes * 2**-fmt.frac_bits`` exactly (midtread with a
        power-of-two step): the tensor is then directly a fixed-point tensor.
    """

    codes: np.ndarray
    values: np.ndarray
    name: str
    params: dict = field(default_factory=dict)
    codebook: np.ndarray | None = None
    fmt: QFormat | None = None

    def __post_init__(self) -> None:
        for arr in (self.codes, self.values, self.codebook):
            if isinstance(arr, np.ndarray):
                arr.setflags(write=False)

    @property
    def n(self) -> int:
        """Number of quantized values."""
        return int(self.codes.size)


MAX_CODEBOOK = 1 << 16
"""Largest level table carried in :attr:`QuantizedTensor.codebook`."""


def as_weights(w, what: str = "w") -> np.ndarray:
    """float64 copy of ``w``; refuses empty or non-finite input (FormatError naming the index)."""
    a = np.asarray(w)
    if a.dtype.kind not in "iuf":
        raise FormatError(f"{what} must be a real array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.size == 0:
        raise FormatError(f"{what} is empty: nothing to quantize")
    if not np.all(np.isfinite(a)):
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise FormatError(f"{what} holds a non-finite value {float(a.flat[bad])!r} at flat "
                          f"index {bad}")
    return a


def check_bits(bits, lo: int = 1, hi: int = 32, what: str = "bits") -> int:
    """``bits`` as an int in ``lo..hi`` or FormatError."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not lo <= bits <= hi:
        raise FormatError(f"{what} must be an integer in {lo}..{hi}, got {bits!r}")
    return int(bits)


class Quantizer:
    """Base class: subclasses set ``name`` and implement ``fit``, ``encode``, ``decode``.

    Attributes
    ----------
    name : str
        Registry spec (``"deadzone:0.4"``).
    fixed_bits : int or None
        Width of a fixed-width quantizer (minifloat presets, TWN, binary); a
        sweep runs those once.  None when ``bits`` is a free argument.
    default_bits : int
        ``bits`` when the caller gives none.
    min_bits : int
        Smallest width the quantizer accepts (a sweep skips narrower ones).
    """

    name: str = "?"
    fixed_bits: int | None = None
    default_bits: int = 8
    min_bits: int = 1
    float_params: ClassVar[tuple[str, ...]] = ()
    """Per-slice float parameters a decoder needs (each costs 32 side bits)."""

    # -- per-tensor steps (override) -------------------------------------------------------
    def fit(self, w: np.ndarray, bits: int, **options: Any) -> dict:
        raise NotImplementedError

    def encode(self, w: np.ndarray, params: dict) -> np.ndarray:
        raise NotImplementedError

    def decode(self, codes: np.ndarray, params: dict) -> np.ndarray:
        raise NotImplementedError

    def levels(self, params: dict) -> np.ndarray | None:
        """Every reconstruction level (sorted) when cheap to list, else None."""
        return None

    def fmt(self, params: dict) -> QFormat | None:
        return None

    def side_bits(self, params: dict) -> int:
        """Bits of side information of one slice: float32 per float parameter."""
        return 32 * len(self.float_params)

    # -- driver ----------------------------------------------------------------------------
    def __call__(self, w, bits: int | None = None, *, axis: int | None = None,
                 **options: Any) -> QuantizedTensor:
        """Quantize ``w`` per tensor (``axis=None``) or per slice along ``axis``."""
        a = as_weights(w)
        if self.fixed_bits is not None:
            if bits is not None and bits != self.fixed_bits:
                raise FormatError(f"quantizer {self.name!r} has a fixed width of "
                                  f"{self.fixed_bits} bits; got bits={bits}")
            bits = self.fixed_bits
        bits = self.default_bits if bits is None else check_bits(bits, self.min_bits)
        if axis is None:
            p = self.fit(a, bits, **options)
            return self._result(a, p)
        ax = _axis(axis, a.ndim)
        chans = tuple(self.fit(np.take(a, c, axis=ax), bits, **options)
                      for c in range(a.shape[ax]))
        return self._result(a, _stack_params(chans, ax))

    def apply(self, x, qt: QuantizedTensor) -> QuantizedTensor:
        """Quantize ``x`` with the parameters frozen in ``qt`` (same shape per channel)."""
        a = as_weights(x, "x")
        if "channels" in qt.params and a.shape != qt.codes.shape:
            raise FormatError(f"per-channel parameters fit shape {qt.codes.shape}; x has "
                              f"shape {a.shape}")
        return self._result(a, qt.params)

    def _result(self, a: np.ndarray, p: dict) -> QuantizedTensor:
        if "channels" not in p:
            codes = np.asarray(self.encode(a, p), np.int64)
            values = np.asarray(self.decode(codes, p), np.float64)
            lv = self.levels(p)
            p = {**p, "side_bits": self.side_bits(p)}
            return QuantizedTensor(codes, values, self.name, p, _small(lv), self.fmt(p))
        ax, chans = p["axis"], p["channels"]
        codes = np.empty(a.shape, np.int64)
        values = np.empty(a.shape, np.float64)
        books, fmts = [], set()
        for c, pc in enumerate(chans):
            idx = (slice(None),) * ax + (c,)
            codes[idx] = self.encode(a[idx], pc)
            values[idx] = self.decode(codes[idx], pc)
            books.append(self.levels(pc))
            fmts.add(self.fmt(pc))
        book = None
        if all(b is not None for b in books) and len({len(b) for b in books}) == 1:
            book = _small(np.stack(books))
        fmt = fmts.pop() if len(fmts) == 1 else None
        p = {**p, "side_bits": sum(self.side_bits(pc) for pc in chans)}
        return QuantizedTensor(codes, values, self.name, p, book, fmt)

    def __repr__(self) -> str:
        return f"<quantizer {self.name}>"


def _small(levels) -> np.ndarray | None:
    if levels is None:
        return None
    lv = np.asarray(levels, np.float64)
    return lv if lv.size <= MAX_CODEBOOK * (lv.shape[0] if lv.ndim == 2 else 1) else None


def _axis(axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise FormatError(f"axis must be an integer in {-ndim}..{ndim - 1} for a "
                          f"{ndim}-d tensor, got {axis!r}")
    return int(axis) % ndim


def _stack_params(chans: tuple[dict, ...], ax: int) -> dict:
    out: dict = {"axis": ax, "channels": chans}
    for k, v in chans[0].items():
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            out[k] = np.array([c[k] for c in chans])
    return out


# ------------------------------------------------------------------ registry
_REGISTRY: dict[str, tuple[Callable[..., Quantizer], str]] = {}


def register(name: str, help: str = "") -> Callable:
    """Decorator: register ``factory(*args: str) -> Quantizer`` under ``name``."""
    def deco(factory: Callable[..., Quantizer]) -> Callable[..., Quantizer]:
        _REGISTRY[name] = (factory, help)
        return factory
    return deco


def _load_all() -> None:
    # importing the modules runs their @register decorators
    from fxp.quant import cluster, companding, minifloat, pow2, ternary, uniform  # noqa: F401


def names() -> dict[str, str]:
    """Registered quantizer names -> one-line description (spec syntax)."""
    _load_all()
    return {k: v[1] for k, v in sorted(_REGISTRY.items())}


def get(spec: str | Quantizer) -> Quantizer:
    """The quantizer for ``spec`` (``"name"`` or ``"name:arg[:arg]"``), or a Quantizer as is.

    Raises
    ------
    FormatError
        Unknown name (the message lists every valid name) or a bad argument.
    """
    if isinstance(spec, Quantizer):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise FormatError(f"a quantizer spec must be a non-empty string, got {spec!r}")
    _load_all()
    name, *args = spec.strip().split(":")
    if name not in _REGISTRY:
        valid = ", ".join(f"{k} ({v[1]})" if v[1] else k for k, v in sorted(_REGISTRY.items()))
        raise FormatError(f"unknown quantizer {name!r}; valid names: {valid}")
    try:
        return _REGISTRY[name][0](*args)
    except TypeError as exc:
        raise FormatError(f"quantizer {name!r}: bad arguments {args} ({exc}); "
                          f"syntax: {_REGISTRY[name][1]}") from None
