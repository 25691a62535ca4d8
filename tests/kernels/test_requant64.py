"""TFLite's int64 requantization (int16x8): Numba kernel == numpy spec == Python-int oracle.

The oracle restates ``MultiplyByQuantizedMultiplier(int64_t x, int32_t M, int shift)``
from ``tensorflow/lite/kernels/internal/common.cc`` with Python ints: the
16-bit multiplier ``(M + 2**15) >> 16`` (``0x7FFF`` from ``M >= 0x7FFF0000``),
``floor((x * reduced + 2**(14 - shift)) / 2**(15 - shift))``, cast to int32.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.errors import FormatError, HeadroomError, PlanError
from fxp.ops.requant64 import requantize_int64_per_channel

N = 300
X_LIM = 1 << 47


def _oracle(x: int, m: int, shift: int) -> tuple[int, bool]:
    reduced = (m + 2 ** 15) // 2 ** 16 if m < 0x7FFF0000 else 0x7FFF
    total = 15 - shift
    r = (x * reduced + 2 ** (total - 1)) // 2 ** total  # Python // is floor, as C's >>
    w = (r + 2 ** 31) % 2 ** 32 - 2 ** 31
    return w, w != r


@st.composite
def _cases(draw):
    channels = draw(st.integers(1, 3))
    ms = [draw(st.one_of(st.integers(0, (1 << 31) - 1), st.integers(0x7FFE0000, 0x7FFFFFFF),
                         st.integers(1 << 30, (1 << 31) - 1)))
          for _ in range(channels)]
    shifts = [draw(st.integers(-31, 7)) for _ in range(channels)]
    n = draw(st.integers(1, 4))
    tie = draw(st.booleans())
    acc = np.empty((n, channels, 2), np.int64)
    for c in range(channels):
        for i in range(n * 2):
            if tie:  # M = 2**30 -> reduced 2**14: x * 2**14 lands exactly halfway
                ms[c] = 1 << 30
                total = 15 - shifts[c]
                k = max(total - 15, 0)
                j = draw(st.integers(-(X_LIM >> (k + 1)), (X_LIM >> (k + 1)) - 1))
                v = (2 * j + 1) << k if total >= 15 else j
            else:
                v = draw(st.one_of(st.integers(-X_LIM, X_LIM - 1), st.integers(-70000, 70000)))
            acc[i // 2, c, i % 2] = max(min(v, X_LIM - 1), -X_LIM)
    return acc, ms, shifts, draw(st.integers(-5, 5))


@settings(max_examples=N)
@given(_cases())
def test_requant64_matches_oracle(case):
    """Per channel, element by element: values (+ zero point) and the int32 wrap count."""
    acc, ms, shifts, zp = case
    got = requantize_int64_per_channel(acc, ms, shifts, axis=1, zero_point=zp)
    ref = requantize_int64_per_channel(acc, ms, shifts, axis=1, zero_point=zp, backend="numpy")
    assert np.array_equal(got[0], ref[0]) and got[1] == ref[1]
    want = [[[_oracle(int(acc[n, c, k]), ms[c], shifts[c]) for k in range(acc.shape[2])]
             for c in range(acc.shape[1])] for n in range(acc.shape[0])]
    assert got[0].tolist() == [[[v + zp for v, _ in row] for row in ch] for ch in want]
    assert got[1] == sum(w for ch in want for row in ch for _, w in row)


def test_requant64_ties_round_up_and_multiplier_is_16_bit():
    """Hand cases: +-1.5 -> 2, -1 (floor(x + 1/2)); M = 2**30 + 2**15 - 1 rounds down to
    2**14 but 2**30 + 2**15 up to 2**14 + 1; M >= 0x7FFF0000 saturates at 0x7FFF."""
    y, _ = requantize_int64_per_channel(np.array([[6, -6]]), [1 << 30] * 2, [-1] * 2)
    assert y.tolist() == [[2, -1]]
    big = np.array([[1 << 20]])
    assert requantize_int64_per_channel(big, [(1 << 30) + (1 << 15) - 1], [0])[0] == 1 << 19
    assert requantize_int64_per_channel(big, [(1 << 30) + (1 << 15)], [0])[0] == \
        ((1 << 20) * ((1 << 14) + 1) + (1 << 14)) >> 15
    assert requantize_int64_per_channel(big, [0x7FFFFFFF], [0])[0] == \
        ((1 << 20) * 0x7FFF + (1 << 14)) >> 15


def test_requant64_refuses_out_of_contract():
    """TFLite's DCHECKs: |x| < 2**47, shift in [-31, 7], one multiplier per channel."""
    with pytest.raises(HeadroomError, match=r"accumulator 140737488355328 at flat index 1"):
        requantize_int64_per_channel(np.array([[0, 1 << 47]]), [1 << 30] * 2, [0] * 2)
    with pytest.raises(FormatError, match=r"channel 0: multiplier 1073741824 / shift 8"):
        requantize_int64_per_channel(np.array([[1]]), [1 << 30], [8])
    with pytest.raises(FormatError, match=r"2 multipliers and 2 shifts for axis 1 of shape"):
        requantize_int64_per_channel(np.array([[1]]), [1, 1], [0, 0])


def test_engine_runs_int16x8_dense_with_int64_mbqm():
    """An int16-input Dense with acc_bits=64 and requant 'double' is requantized by the
    int64 MBQM (16-bit multiplier): equal to the oracle on a case where the int32 path
    (full multiplier) differs; acc_bits=64 with requant 'float32' is refused."""
    from fxp.ir.graph import Graph
    from fxp.ir.nodes import Dense
    from fxp.plan.plan import LayerPlan, Plan, TensorSpec
    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer

    i16, i8 = QFormat.integer(16), QFormat.integer(8)
    sx, sw, sy = 0.001, 0.0123, 0.00077
    w = (np.arange(-6, 6).reshape(3, 4) * np.float32(sw)).astype(np.float32)
    node = Dense(name="fc", inputs=("x",), outputs=("fc",), weight=w, bias=None)
    graph = Graph(nodes=(node,), inputs=("x",), input_shapes={"x": (None, 4)},
                  outputs=("fc",))
    x_codes = np.random.default_rng(5).integers(-32768, 32768, (300, 4))

    def plan(acc_bits, requant):
        return Plan(input=TensorSpec(i16, (sx,), 0),
                    layers=(LayerPlan("fc", weight=TensorSpec(i8, (sw,), 0),
                                      output=TensorSpec(i16, (sy,), 0), acc_bits=acc_bits,
                                      requant=requant),))
    run = run_integer(compile_plan(graph, plan(64, "double")), x_codes * sx, keep=True)
    m, e = intmath.quantize_multiplier(float(np.float32(sx)) * float(np.float32(sw))
                                       / float(np.float32(sy)))
    acc = x_codes @ np.rint(w / np.float32(sw)).astype(np.int64).T
    want = [[max(min(_oracle(int(a), m, e)[0], 32767), -32768) for a in row] for row in acc]
    assert run.values["fc"].codes.tolist() == want
    full = [[max(min(int(intmath.multiply_by_quantized_multiplier(np.array([int(a)]), m,
                                                                  e)[0][0]), 32767), -32768)
             for a in row] for row in acc]
    assert full != want  # the 16-bit multiplier matters on this case
    with pytest.raises(PlanError, match=r"acc_bits=64"):
        compile_plan(graph, plan(64, "float32"))
