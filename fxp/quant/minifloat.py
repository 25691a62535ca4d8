"""Minifloats: sign, p exponent bits, q mantissa bits (Tonin & de Queiroz eq. 3; IEEE 754; OCP FP8).

Bit layout (eq. 3 of ``shared/seeds/001``), codes are these bit patterns::

    s  e_0 .. e_{p-1}  m_0 .. m_{q-1}        bits = 1 + p + q
    exponent field E = 0:      (-1)**s * 0.m * 2**(1 - bias)           (subnormal)
    exponent field E > 0:      (-1)**s * 1.m * 2**(E - bias)           (normal)

``bias = 2**(p-1) - 1`` unless given.  Two conventions for the top codes:

* ``ieee=True`` (IEEE 754 binary16 ``half``, OCP ``e5m2``): ``E = 2**p - 1`` is
  reserved: ``m = 0`` is +-inf, ``m != 0`` NaN.  Largest finite value
  ``2**(2**p - 2 - bias) * (2 - 2**-q)``.
* ``ieee=False`` (OCP FP8 ``e4m3``, "fn": finite only): only ``S.1111.111`` is NaN,
  no infinities, so ``E = 2**p - 1`` holds normal numbers up to mantissa
  ``1...10``: e4m3 reaches ``2**8 * 1.75 = 448``.

Rounding: to nearest, ties to even (IEEE roundTiesToEven), decided exactly:
with ``|x| = f * 2**e`` (``frexp``), the quantum is ``2**(max(e-1, emin) - q)``
and ``|x| / quantum`` is a power-of-two scaling of a float64, hence exact, so
``np.rint`` sees the true value.  Subnormals are kept (``subnormals=False``
rounds ``|x| < 2**emin`` to the nearer of 0 and ``2**emin``, ties to 0).
Overflow (a rounded magnitude above the largest finite): ``"inf"`` gives +-inf
(IEEE; refused for ``ieee=False``), ``"saturate"`` the largest finite value.
The sign is ``signbit(x)``: ``-0.0`` and negative values rounding to zero give
``-0.0`` (pattern ``1 000..0``), as numpy's ``float16`` does.

Scale: ``scale="none"`` quantizes the values as they are (``half`` then equals
``np.float16`` bit for bit); ``scale="pow2"`` first multiplies by ``2**k``, the
largest power of two with ``max|W| * 2**k <= largest finite``, and divides the
reconstruction by it (exact; ``k`` is side information).

Presets: ``half`` (e5m10, bias 15, IEEE), ``bf16`` (e8m7, bias 127, IEEE),
``e5m2`` (OCP FP8, bias 15, IEEE-like, max 57344), ``e4m3`` (OCP FP8, bias 7,
finite only, max 448, saturating).  ``minifloat`` alone picks p from the width
(3: e2m0, 4: e2m1, 5: e2m2, 6: e3m2, 7: e4m2, 8: e4m3-style IEEE, 9-16: e5m(b-6),
17-32: e8m(b-9)), IEEE-like, saturating, with a power-of-two scale.

>>> q = get_preset("half")([1.0, 65520.0, -1e-10, 2.0**-24 * 1.5])
>>> [hex(c) for c in q.codes.tolist()], q.values.tolist()
(['0x3c00', '0x7c00', '0x8000', '0x2'], [1.0, inf, -0.0, 1.1920928955078125e-07])
>>> get_preset("e4m3")([500.0, 0.3]).values.tolist()
[448.0, 0.3125]
"""

from __future__ import annotations

import math

import numpy as np

from fxp.errors import FormatError
from fxp.quant.base import QuantizedTensor, Quantizer, check_bits, register

__all__ = ["PRESETS", "Minifloat", "auto_split", "get_preset", "minifloat"]

PRESETS: dict[str, dict] = {
    "half": dict(p=5, q=10, bias=15, ieee=True, overflow="inf"),
    "bf16": dict(p=8, q=7, bias=127, ieee=True, overflow="inf"),
    "e5m2": dict(p=5, q=2, bias=15, ieee=True, overflow="inf"),
    "e4m3": dict(p=4, q=3, bias=7, ieee=False, overflow="saturate"),
}
"""Named formats: IEEE binary16, bfloat16, OCP FP8 E5M2 and E4M3."""


def auto_split(bits: int) -> tuple[int, int]:
    """``(p, q)`` used by the width-generic ``minifloat`` (module docstring)."""
    bits = check_bits(bits, 3, 32)
    p = {3: 2, 4: 2, 5: 2, 6: 3, 7: 4, 8: 4}.get(bits, 5 if bits <= 16 else 8)
    return p, bits - 1 - p


class Minifloat(Quantizer):
    """Minifloat with ``p`` exponent and ``q`` mantissa bits (module docstring).

    ``p=None`` makes the width-generic quantizer (p, q from ``bits``).
    """

    min_bits = 3

    def __init__(self, p: int | None = None, q: int | None = None, *, bias: int | None = None,
                 ieee: bool = True, subnormals: bool = True, overflow: str = "saturate",
                 scale: str = "none", name: str | None = None) -> None:
        if overflow not in ("inf", "saturate"):
            raise FormatError(f"overflow must be 'inf' or 'saturate', got {overflow!r}")
        if overflow == "inf" and not ieee:
            raise FormatError("this minifloat has no infinities (ieee=False): use "
                              "overflow='saturate'")
        if scale not in ("none", "pow2"):
            raise FormatError(f"scale must be 'none' or 'pow2', got {scale!r}")
        if p is not None:
            p, q = check_bits(p, 1, 11, "p"), check_bits(q, 0, 52, "q")
            self.fixed_bits = 1 + p + q
            self._check(self._layout(p, q, bias, ieee))
        self.p, self.q, self.bias, self.ieee = p, q, bias, ieee
        self.subnormals, self.overflow, self.scale = subnormals, overflow, scale
        self.name = name or ("minifloat" if p is None else f"minifloat:e{p}m{q}")

    @staticmethod
    def _layout(p: int, q: int, bias: int | None, ieee: bool) -> dict:
        bias = (1 << (p - 1)) - 1 if bias is None else int(bias)
        pmax = (((1 << p) - 2) << q) | ((1 << q) - 1) if ieee else (1 << (p + q)) - 2
        return {"p": p, "q": q, "bias": bias, "emin": 1 - bias, "ieee": ieee, "pmax": pmax}

    @staticmethod
    def _check(lay: dict) -> None:
        if lay["pmax"] < 1:
            raise FormatError(f"e{lay['p']}m{lay['q']} ({'IEEE' if lay['ieee'] else 'finite'}) "
                              "has no nonzero finite value")

    def fit(self, w: np.ndarray, bits: int, scale: str | None = None) -> dict:
        p, q = (self.p, self.q) if self.p is not None else auto_split(bits)
        lay = self._layout(p, q, self.bias, self.ieee)
        self._check(lay)
        lay.update(bits=1 + p + q, subnormals=self.subnormals, overflow=self.overflow, k=0)
        lay["maxfinite"] = float(_decode_mag(np.array([lay["pmax"]]), lay)[0])
        mode = self.scale if scale is None else scale
        m = float(np.max(np.abs(w)))
        if mode == "pow2" and m > 0:
            k = math.floor(math.log2(lay["maxfinite"]) - math.log2(m))
            while math.ldexp(m, k) > lay["maxfinite"]:
                k -= 1
            while math.ldexp(m, k + 1) <= lay["maxfinite"]:
                k += 1
            lay["k"] = k
        elif mode not in ("none", "pow2"):
            raise FormatError(f"scale must be 'none' or 'pow2', got {mode!r}")
        return lay

    def side_bits(self, p: dict) -> int:
        return 8 if self.scale == "pow2" else 0

    def encode(self, w: np.ndarray, p: dict) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is handled below
            return self._encode(w, p)

    def _encode(self, w: np.ndarray, p: dict) -> np.ndarray:
        x = np.ldexp(np.abs(w), p["k"])
        q, emin = p["q"], p["emin"]
        _, e = np.frexp(x)
        qe = np.maximum(e.astype(np.int64) - 1, emin) - q          # quantum exponent
        n = np.rint(np.ldexp(x, -qe))                              # exact scaling, ties even
        if not p["subnormals"]:
            sub = x < math.ldexp(1.0, emin)
            n = np.where(sub, 0.0, n)
            up = sub & (x > math.ldexp(1.0, emin - 1))
            n = np.where(up, math.ldexp(1.0, q), n)
            qe = np.where(sub, emin - q, qe)
        v = np.ldexp(n, qe)                                        # rounded magnitude, exact
        _, ev = np.frexp(v)
        ev = ev.astype(np.int64) - 1
        normal = v >= math.ldexp(1.0, emin)
        mant = np.where(normal, np.ldexp(v, np.where(normal, q - ev, 0)) - (1 << q), n)
        efield = np.where(normal, ev + p["bias"], 0)
        mag = (efield << q) | mant.astype(np.int64)
        over = v > p["maxfinite"]
        if p["overflow"] == "inf":
            mag = np.where(over, ((1 << p["p"]) - 1) << q, mag)
        else:
            mag = np.where(over, p["pmax"], mag)
        return np.where(np.signbit(w), mag | (1 << (p["p"] + q)), mag).astype(np.int64)

    def decode(self, codes: np.ndarray, p: dict) -> np.ndarray:
        sign_bit = 1 << (p["p"] + p["q"])
        mag = np.asarray(codes, np.int64) & (sign_bit - 1)
        v = np.ldexp(_decode_mag(mag, p), -p["k"])
        return np.where((np.asarray(codes) & sign_bit) != 0, -v, v)

    def levels(self, p: dict) -> np.ndarray | None:
        if p["bits"] > 16:
            return None
        mag = np.arange(p["pmax"] + 1, dtype=np.int64)
        pos = np.ldexp(_decode_mag(mag, p), -p["k"])
        return np.unique(np.concatenate([-pos, pos]))


def _decode_mag(mag: np.ndarray, p: dict) -> np.ndarray:
    """Magnitude bit patterns (no sign) -> float64, with inf/NaN for the reserved codes."""
    q = p["q"]
    e = mag >> q
    m = (mag & ((1 << q) - 1)).astype(np.float64)
    sub = e == 0
    v = np.where(sub, np.ldexp(m, p["emin"] - q),
                 np.ldexp(m + (1 << q), np.where(sub, 0, e - p["bias"] - q)))
    if p["ieee"]:
        top = e == (1 << p["p"]) - 1
        v = np.where(top & (m == 0), np.inf, np.where(top, np.nan, v))
    else:
        v = np.where(mag == (1 << (p["p"] + q)) - 1, np.nan, v)
    return v


def get_preset(name: str, **kw) -> Minifloat:
    """A preset minifloat (``half``, ``bf16``, ``e5m2``, ``e4m3``) or ``eXmY`` (IEEE-like)."""
    if name in PRESETS:
        return Minifloat(**{**PRESETS[name], **kw}, name=f"minifloat:{name}")
    import re

    m = re.fullmatch(r"e(\d+)m(\d+)", name)
    if not m:
        raise FormatError(f"unknown minifloat {name!r}; use one of {sorted(PRESETS)} or "
                          "eXmY (X exponent bits, Y mantissa bits)")
    return Minifloat(int(m.group(1)), int(m.group(2)), **{"overflow": "saturate", **kw})


def minifloat(w, fmt: str = "half", *, axis: int | None = None, **kw) -> QuantizedTensor:
    """Round ``w`` to the minifloat ``fmt`` (a preset name or ``eXmY``)."""
    return get_preset(fmt, **kw)(w, axis=axis)


def _spec(name: str | None = None, scale: str = "none") -> Minifloat:
    if name is None:
        return Minifloat(scale="pow2")
    return get_preset(name, scale=scale)


register("minifloat", "minifloat[:half|bf16|e5m2|e4m3|eXmY[:pow2]]; alone: width from bits, "
         "pow2 scale")(_spec)
