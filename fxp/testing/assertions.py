"""``assert_bit_exact``: exact equality of integer codes, with a report a human can act on.

>>> from fxp import QFormat
>>> assert_bit_exact([[1, -3]], [[1, -2]], fmt=QFormat(8, 3), inputs={"acc": [[40, -97]]},
...                  what="requantize")
Traceback (most recent call last):
...
AssertionError: requantize: 1 of 2 elements differ; first at index (0, 1):
  expected: -3 (0xfd) = -0.09375 in fixed<8,3>
  actual:   -2 (0xfe) = -0.0625 in fixed<8,3>
  inputs at (0, 1): acc=-97 (0x9f)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction

import numpy as np

__all__ = ["assert_bit_exact"]

_MAX_LISTED = 5


def _as_codes(x, side: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind == "b":
        return a.astype(np.int64)
    if a.dtype.kind in "iu":
        if a.dtype == np.uint64:
            return a.astype(object)
        return a.astype(np.int64, copy=False)
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            i = tuple(int(v) for v in np.argwhere(bad)[0])
            raise AssertionError(f"{side} holds a non-integer value {a[i].item()!r} at index {i} "
                                 f"(dtype {a.dtype}); codes must be integers")
        return np.vectorize(int, otypes=[object])(a) if a.size else a.astype(object)
    if a.dtype.kind == "O":
        flat = a.ravel()
        for j, v in enumerate(flat):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                i = np.unravel_index(j, a.shape) if a.shape else ()
                raise AssertionError(f"{side} holds {v!r} ({type(v).__name__}) at index "
                                     f"{tuple(int(k) for k in i)}; codes must be integers")
        return np.vectorize(int, otypes=[object])(a) if a.size else a
    raise AssertionError(f"{side} is not an array of integer codes (dtype {a.dtype})")


def _width(fmt, codes) -> int:
    if fmt is not None:
        return int(fmt.bits)
    for w in (8, 16, 32, 64):
        if all(-(1 << (w - 1)) <= c < (1 << w) for c in codes):
            return w
    return max(int(c).bit_length() for c in codes) + 1


def _hex(code: int, bits: int) -> str:
    if not -(1 << (bits - 1)) <= code < (1 << bits):
        return hex(code)  # does not fit the width: show the signed value
    digits = max(1, (bits + 3) // 4)
    return f"0x{code & ((1 << bits) - 1):0{digits}x}"


def _describe(code: int, fmt, bits: int) -> str:
    text = f"{code} ({_hex(code, bits)})"
    if fmt is None:
        return text
    lo, hi = fmt.min_code, fmt.max_code
    if not lo <= code <= hi:
        return f"{text} -- outside {fmt} [{lo}, {hi}]"
    real = Fraction(code) * Fraction(2) ** -fmt.frac_bits
    shown = float(real) if real.denominator < (1 << 60) else real
    return f"{text} = {shown} in {fmt}"


def _input_text(name: str, v, idx: tuple, shape: tuple) -> str:
    a = np.asarray(v) if not isinstance(v, (str, bytes)) else None
    if a is None or a.dtype.kind not in "iubfO":
        return f"{name}={v!r}"
    if a.ndim == 0:
        item = a.item()
    elif a.shape == shape:
        item = a[idx].item() if hasattr(a[idx], "item") else a[idx]
    elif a.size <= 16:
        return f"{name}={a.tolist()!r}"
    else:
        return f"{name}=<array of shape {a.shape}, not elementwise with the output {shape}>"
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        item = int(item)
        return f"{name}={item} ({_hex(item, _width(None, [item]))})"
    return f"{name}={item!r}"


def assert_bit_exact(expected, actual, *, fmt=None, inputs=None, what: str = "") -> None:
    """Assert two arrays of integer codes are identical, element for element.

    Parameters
    ----------
    expected, actual : array-likes of integer codes (numpy integer arrays,
        nested lists of Python ints, scalars).  Floats are accepted only
        when every value is an integer.
    fmt : QFormat, or a pair ``(expected_fmt, actual_fmt)``, optional
        Format(s) of the codes: used to print hex at the format's width, the
        exact real value, and to flag codes outside the format.
    inputs : mapping ``name -> value`` or callable ``index -> mapping``, optional
        What produced the outputs.  Arrays with the output's shape are shown
        at the differing index, scalars and small arrays in full; a callable
        receives the index tuple of the first difference (use it for layers
        whose output depends on a window of the input).
    what : str
        A label for the message (e.g. ``"conv2d C vs fxp"``).

    Raises
    ------
    AssertionError
        On a shape mismatch, non-integer codes, or any differing element; the
        message gives the number of differing elements, the first index, both
        codes in decimal and hex, the formats and the inputs at that index.
    """
    label = f"{what}: " if what else ""
    exp = _as_codes(expected, "expected")
    act = _as_codes(actual, "actual")
    if exp.shape != act.shape:
        raise AssertionError(f"{label}shapes differ: expected {exp.shape}, actual {act.shape}")
    if exp.dtype == object or act.dtype == object:
        diff = np.frompyfunc(lambda p, q: int(p) != int(q), 2, 1)(exp, act).astype(bool)
    else:
        diff = exp != act
    diff = np.asarray(diff)
    n = int(np.count_nonzero(diff))
    if n == 0:
        return
    idx = tuple(int(i) for i in np.argwhere(diff)[0]) if diff.ndim else ()
    e, a = int(exp[idx]), int(act[idx])
    if isinstance(fmt, (tuple, list)):
        efmt, afmt = fmt
    else:
        efmt = afmt = fmt
    lines = [f"{label}{n} of {diff.size} elements differ; first at index {idx}:",
             f"  expected: {_describe(e, efmt, _width(efmt or afmt, [e, a]))}",
             f"  actual:   {_describe(a, afmt, _width(afmt or efmt, [e, a]))}"]
    if inputs is not None:
        given = inputs(idx) if isinstance(inputs, Callable) else inputs
        if isinstance(given, Mapping):
            parts = [_input_text(str(k), v, idx, exp.shape) for k, v in given.items()]
        else:
            parts = [repr(given)]
        lines.append(f"  inputs at {idx}: " + ", ".join(parts))
    if n > 1:
        more = [tuple(int(i) for i in j) for j in np.argwhere(diff)[1:_MAX_LISTED]]
        listed = ", ".join(f"{j}: {int(exp[j])} != {int(act[j])}" for j in more)
        lines.append(f"  next differences: {listed}" + (" ..." if n > _MAX_LISTED else ""))
    raise AssertionError("\n".join(lines))
