"""LiteRT's integer SOFTMAX (optimized int8 float table; int16 tables built in double).

Oracle for the int8 kernel: every float32 operation of ``optimized_ops::Softmax``
emulated exactly with ``Fraction`` (``tests/oracles_runtime.py``), given the
Prepare-time table; the table itself is ``f32(exp(f32(k * d)))`` with Python's
``math.exp`` standing for ``expf`` (correctly rounded float32 exp assumed, as
in the spec).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import FormatError
from fxp.kernels import spec_litert_softmax as spec
from fxp.kernels import spec_tflite_softmax as tspec
from fxp.ops.litert import litert_softmax
from tests import oracles_runtime as O

N = 300
I8, I16 = QFormat.integer(8), QFormat.integer(16)


def _oracle_int8(rows: list[list[int]], x_scale: float) -> list[list[int]]:
    k = O.f32(-Fraction(float(np.float32(x_scale))))
    table = {d: O.f32(Fraction(math.exp(float(O.f32(k * d))))) for d in range(256)}
    out = []
    for row in rows:
        m = max(row)
        e = [table[m - v] for v in row]
        total = Fraction(0)
        for v in e:
            total = O.f32(total + v)
        inv = O.f32(1 / O.f32(total * Fraction(1, 256)))
        out.append([max(-128, min(127, O.round_away(O.f32(v * inv)) - 128)) for v in e])
    return out


@settings(max_examples=N)
@given(st.lists(st.lists(st.integers(-128, 127), min_size=1, max_size=12), min_size=1,
                max_size=4).filter(lambda r: len({len(x) for x in r}) == 1),
       st.floats(2.0 ** -8, 2.0, width=32))
def test_int8_float_table_matches_oracle(rows, x_scale):
    """Row by row the optimized kernel equals its float32 oracle; Numba equals the spec."""
    x = np.array(rows, np.int64)
    got, n = litert_softmax(x, x_scale=x_scale, fmt=I8, kernels="opt")
    ref, n_ref = litert_softmax(x, x_scale=x_scale, fmt=I8, kernels="opt", backend="numpy")
    assert np.array_equal(got, ref) and n == n_ref
    assert got.tolist() == _oracle_int8(rows, x_scale)


def test_int8_kernels_differ_from_tflm_where_predicted():
    """The float table and TFLM's gemmlowp kernel disagree on some rows (the reference set is
    TFLM's exactly); on 20,000 random rows of 10 classes they differ, by 1 code."""
    from fxp.ops.tflite_softmax import tflite_softmax

    x = np.random.default_rng(4).integers(-128, 128, (20000, 10))
    opt, _ = litert_softmax(x, x_scale=0.1, fmt=I8, kernels="opt")
    ref, _ = litert_softmax(x, x_scale=0.1, fmt=I8, kernels="ref")
    tflm, _ = tflite_softmax(x, x_scale=0.1, fmt=I8)
    assert np.array_equal(ref, tflm)
    diff = opt != tflm
    assert diff.any() and int(np.abs(opt - tflm).max()) == 1


def test_int16_tables_built_in_double():
    """LiteRT's int16 tables: the end points (exp(0) and 1/(1+0) saturate at 32767), every
    entry within 1.5 of the exact function times 32768; the ``1/(1+x)`` table differs from
    TFLM's float32-built one in entries 160 and 294 (by 1), which made 2 of 10,000 int16
    SOFTMAX outputs of ``residual_mean_int16x8`` differ between LiteRT and TFLM."""
    for kind, func, lo, hi in (("exp", math.exp, -10.0, 0.0),
                               ("recip", lambda v: 1 / (1 + v), 0.0, 1.0)):
        lut = spec.lut_int16_double(kind)
        assert lut.shape == (513,) and lut[-1 if kind == "exp" else 0] == 32767
        xs = lo + (hi - lo) * np.arange(513) / 512
        assert np.all(np.abs(lut - np.minimum([func(v) * 32768 for v in xs], 32767)) <= 1.5)
    diff = spec.lut_int16_double("recip") - tspec.gen_lut_int16("recip")
    assert np.flatnonzero(diff).tolist() == [160, 294] and set(diff[[160, 294]]) == {1, -1}
    assert np.array_equal(spec.lut_int16_double("exp"), tspec.gen_lut_int16("exp"))
    with pytest.raises(ValueError, match=r"'exp' or 'recip'"):
        spec.lut_int16_double("log")


def test_int16_softmax_numba_equals_spec():
    """int16 rows: the Numba kernel with LiteRT's tables equals the numpy spec."""
    x = np.random.default_rng(5).integers(-32768, 32768, (300, 10))
    got = litert_softmax(x, x_scale=0.0003, fmt=I16)
    assert np.array_equal(got[0], litert_softmax(x, x_scale=0.0003, fmt=I16,
                                                 backend="numpy")[0])


def test_refuses_bad_input():
    """Unknown kernel set, a format other than int8 / int16, codes outside it, not 2-D."""
    with pytest.raises(FormatError, match=r"kernels must be one of \('ref', 'opt'\)"):
        litert_softmax(np.zeros((1, 2), np.int64), x_scale=0.1, fmt=I8, kernels="fast")
    with pytest.raises(FormatError, match=r"fmt must be int8 or int16"):
        litert_softmax(np.zeros((1, 2), np.int64), x_scale=0.1, fmt=QFormat.integer(4))
    with pytest.raises(FormatError, match=r"x must be \[N, n\] codes of"):
        litert_softmax(np.full((1, 2), 300), x_scale=0.1, fmt=I8)
