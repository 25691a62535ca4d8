"""Worked example: property-test a hand-written C int8 kernel against fxp.

``mcu_kernels.c`` (next to this file) is what an MCU engineer would write:
TFLite's MultiplyByQuantizedMultiplier with zero point and int8 saturation,
and an NCHW 3x3 stride-1 convolution that pads with the input zero point,
accumulates in int32 and requantizes per output channel.  It is compiled at
test time with the system C compiler and called through ctypes; fxp is the
oracle (``fxp.ops.fixed.requantize_multiplier``, ``fxp.ops.layers.conv2d_int``
+ ``requantize_multiplier_per_channel``) and the pure-Python
``fxp.testing.oracles`` check fxp on the same examples.

Two deliberately wrong builds of the same source must be caught, and
hypothesis must shrink each to the minimal counterexample:

* ``-DFXP_BUG_ROUNDING`` (``(x + (1 << (s-1))) >> s`` where ties go away from
  zero): a single accumulator whose value entering the final rounding is the
  tie -0.5 (fxp -1, C 0), e.g. ``acc=-2, M=2**30, shift=-1``;
* ``-DFXP_BUG_ACC16`` (an ``int16_t`` accumulator): a window whose exact sum
  leaves int16 by less than one product term, and no longer does when every
  input (or every weight) code moves one step toward zero.

Skips cleanly when no C compiler is found (``c_compiler`` fixture).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from fxp import QFormat
from fxp.ops import fixed, layers
from fxp.testing import assert_bit_exact, oracles
from fxp.testing import strategies as fs

SOURCE = Path(__file__).with_name("mcu_kernels.c")
INT8 = QFormat.integer(8)
I32P = ctypes.POINTER(ctypes.c_int32)
I8P = ctypes.POINTER(ctypes.c_int8)
# find() settings: reproducible, no example database, enough budget to shrink fully.
FIND = settings(database=None, derandomize=True, max_examples=1000, deadline=None,
                suppress_health_check=list(HealthCheck))


class McuKernels:
    """ctypes bindings of ``mcu_kernels.c`` taking and returning int64 numpy codes."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        lib.requantize_s8.argtypes = [I32P, I8P, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32,
                                      ctypes.c_int32]
        lib.requantize_s8.restype = None
        lib.conv3x3_s8.argtypes = [I8P, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32,
                                   ctypes.c_int32, I8P, ctypes.c_int32, I32P, ctypes.c_int32,
                                   I32P, I32P, ctypes.c_int32, I8P]
        lib.conv3x3_s8.restype = None

    def requantize(self, acc, multiplier: int, shift: int, zero_point: int) -> np.ndarray:
        a = np.ascontiguousarray(acc, np.int32)
        out = np.empty(a.shape, np.int8)
        self.lib.requantize_s8(a.ctypes.data_as(I32P), out.ctypes.data_as(I8P), a.size,
                               multiplier, shift, zero_point)
        return out.astype(np.int64)

    def conv(self, x, w, bias, x_zp, multipliers, shifts, out_zp) -> np.ndarray:
        x8, w8 = np.ascontiguousarray(x, np.int8), np.ascontiguousarray(w, np.int8)
        b32 = np.ascontiguousarray(bias, np.int32)
        m32 = np.ascontiguousarray(multipliers, np.int32)
        s32 = np.ascontiguousarray(shifts, np.int32)
        n, c, h, wd = x8.shape
        out = np.empty((n, w8.shape[0], h, wd), np.int8)
        self.lib.conv3x3_s8(x8.ctypes.data_as(I8P), n, c, h, wd, w8.ctypes.data_as(I8P),
                            w8.shape[0], b32.ctypes.data_as(I32P), x_zp, m32.ctypes.data_as(I32P),
                            s32.ctypes.data_as(I32P), out_zp, out.ctypes.data_as(I8P))
        return out.astype(np.int64)


@pytest.fixture(scope="module")
def mcu(fxp_compile_c):
    return McuKernels(fxp_compile_c(SOURCE, "mcu"))


@pytest.fixture(scope="module")
def mcu_round_bug(fxp_compile_c):
    return McuKernels(fxp_compile_c(SOURCE, "mcu_round_bug",
                                    flags=("-O2", "-std=c99", "-DFXP_BUG_ROUNDING")))


@pytest.fixture(scope="module")
def mcu_acc16_bug(fxp_compile_c):
    return McuKernels(fxp_compile_c(SOURCE, "mcu_acc16_bug",
                                    flags=("-O2", "-std=c99", "-DFXP_BUG_ACC16")))


# --------------------------------------------------------------------------- fxp as the oracle
def fxp_requantize(acc, multiplier: int, shift: int, zero_point: int) -> np.ndarray:
    out, _ = fixed.requantize_multiplier(np.asarray(acc, np.int64), multiplier, shift, INT8,
                                         zero_point=zero_point, scheme="double")
    return out


def fxp_conv(x, w, bias, x_zp, multipliers, shifts, out_zp) -> np.ndarray:
    acc, _ = layers.conv2d_int(x, w, bias, x_zero_point=x_zp, pads=(1, 1, 1, 1))
    out, _ = layers.requantize_multiplier_per_channel(acc, multipliers, shifts, INT8, axis=1,
                                                      zero_point=out_zp, scheme="double")
    return out


# --------------------------------------------------------------------------- strategies
@st.composite
def requant_cases(draw, max_size: int = 16):
    """(multiplier, shift), zero point, then the accumulators: parameters first, values last."""
    multiplier, shift = draw(fs.quantized_multipliers("double", max_exponent=0))
    zp = draw(st.integers(-128, 127))
    acc = draw(st.lists(fs.accumulators(32), min_size=1, max_size=max_size))
    return (multiplier, shift), zp, acc


@dataclass(frozen=True)
class ConvCase:
    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray
    x_zp: int
    multipliers: tuple[int, ...]
    shifts: tuple[int, ...]
    out_zp: int

    def args(self):
        return (self.x, self.w, self.bias, self.x_zp, self.multipliers, self.shifts, self.out_zp)


@st.composite
def conv_cases(draw, max_channels: int = 3, max_extra: int = 4):
    """Geometry, then per-channel requantization and zero points, then the tensors."""
    geo = draw(fs.conv2d_geometries(kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1),
                                    dilations=(1, 1), groups=1, max_channels=max_channels,
                                    max_extra=max_extra))
    req = [draw(fs.quantized_multipliers("double", min_exponent=-16, max_exponent=0))
           for _ in range(geo.c_out)]
    x_zp, out_zp = draw(st.integers(-128, 127)), draw(st.integers(-128, 127))
    x = draw(fs.code_arrays(INT8, geo.x_shape))
    w = draw(fs.code_arrays(INT8, geo.w_shape))
    bias = draw(fs.code_arrays(QFormat.integer(20), (geo.c_out,)))
    return ConvCase(x, w, bias, x_zp, tuple(m for m, _ in req), tuple(s for _, s in req), out_zp)


# --------------------------------------------------------------------------- the correct kernel
@given(requant_cases())
@settings(max_examples=200)
def test_c_requantize_matches_fxp(mcu, case):
    (multiplier, shift), zp, acc = case
    expected = fxp_requantize(acc, multiplier, shift, zp)
    actual = mcu.requantize(acc, multiplier, shift, zp)
    assert_bit_exact(expected, actual, fmt=INT8, what="requantize_s8 (C) vs fxp",
                     inputs={"acc": acc, "multiplier": multiplier, "shift": shift,
                             "zero_point": zp})
    # fxp itself against the pure-Python oracle, on the same example
    ref = [oracles.requantize_multiplier(a, multiplier, shift, INT8, zp)[0] for a in acc]
    assert_bit_exact(ref, expected, fmt=INT8, what="fxp vs oracle")


@pytest.mark.parametrize(("acc", "multiplier", "shift", "expected"), [
    (7984, 1583594044, -9, 12),       # TF #25087: double rounding gives 12 (single gives 11)
    (-49, (1 << 30) + 1, -1, -13),     # exact -12.25000001: double rounding -13
    (-2, 1 << 30, -1, -1),             # the tie -0.5 goes away from zero
    (-(1 << 31), 1 << 30, -31, -1),    # INT32_MIN / 2**32 = -0.5
    ((1 << 31) - 1, (1 << 31) - 1, 0, 127),
])
def test_c_requantize_known_vectors(mcu, acc, multiplier, shift, expected):
    got = mcu.requantize([acc], multiplier, shift, 0)
    assert_bit_exact([expected], fxp_requantize([acc], multiplier, shift, 0))
    assert_bit_exact([expected], got, fmt=INT8, inputs={"acc": acc})


@given(conv_cases())
@settings(max_examples=120)
def test_c_conv3x3_matches_fxp(mcu, case):
    expected = fxp_conv(*case.args())
    actual = mcu.conv(*case.args())
    assert_bit_exact(expected, actual, fmt=INT8, what="conv3x3_s8 (C) vs fxp",
                     inputs=lambda idx: {"x_zp": case.x_zp, "bias": int(case.bias[idx[1]]),
                                         "multiplier": case.multipliers[idx[1]],
                                         "shift": case.shifts[idx[1]], "out_zp": case.out_zp})
    # fxp's integer conv against the pure-Python oracle, on the same example
    c_out = case.w.shape[0]
    acc, *_ = oracles.conv2d(case.x.tolist(), case.w.tolist(), case.bias.tolist(), case.x_zp,
                             [0] * c_out, (1, 1), (1, 1, 1, 1), (1, 1), 1, 32, True,
                             oracles.INT32_MIN, oracles.INT32_MAX, "wrap")
    fxp_acc, _ = layers.conv2d_int(case.x, case.w, case.bias, x_zero_point=case.x_zp,
                                   pads=(1, 1, 1, 1))
    assert_bit_exact(acc, fxp_acc, what="conv2d_int vs oracle")


# --------------------------------------------------------------------------- the wrong variants
def test_rounding_bug_is_caught_and_shrinks_to_a_single_minus_half_tie(mcu_round_bug):
    def differs(case):
        (multiplier, shift), zp, acc = case
        return not np.array_equal(mcu_round_bug.requantize(acc, multiplier, shift, zp),
                                  fxp_requantize(acc, multiplier, shift, zp))

    (multiplier, shift), zp, acc = find(requant_cases(), differs, settings=FIND)
    # Minimal: one accumulator and zero point 0 ...
    assert (len(acc), zp) == (1, 0)
    # ... whose value entering the final rounding (SRDHM / 2**-shift) is exactly the tie
    # -1/2: the smallest value on which the two tie rules differ.
    assert Fraction(oracles.srdhm(acc[0], multiplier), 1 << -shift) == Fraction(-1, 2)
    assert fxp_requantize(acc, multiplier, shift, 0).tolist() == [-1]     # away from zero
    assert mcu_round_bug.requantize(acc, multiplier, shift, 0).tolist() == [0]  # toward +inf


def test_rounding_bug_shrinks_to_acc_minus_2_with_the_requant_inputs_strategy(mcu_round_bug):
    def differs(case):
        acc, multiplier, shift = case
        return not np.array_equal(mcu_round_bug.requantize([acc], multiplier, shift, 0),
                                  fxp_requantize([acc], multiplier, shift, 0))

    # requant_inputs aims at ties of the last rounding, so the shrinker reaches the
    # textbook counterexample: -2 * 2**30 / 2**31 = -1, then -1 / 2 = -0.5 (fxp -1, C 0).
    assert find(fs.requant_inputs(INT8, "double"), differs, settings=FIND) == (-2, 1 << 30, -1)


def test_rounding_bug_fails_a_given_test_with_a_readable_report(mcu_round_bug):
    @given(requant_cases())
    @settings(FIND, max_examples=300, print_blob=False)
    def inner(case):
        (multiplier, shift), zp, acc = case
        assert_bit_exact(fxp_requantize(acc, multiplier, shift, zp),
                         mcu_round_bug.requantize(acc, multiplier, shift, zp), fmt=INT8,
                         what="requantize_s8 (C) vs fxp",
                         inputs={"acc": acc, "multiplier": multiplier, "shift": shift})

    with pytest.raises(AssertionError) as info:
        inner()
    text = str(info.value)
    assert "requantize_s8 (C) vs fxp: 1 of 1 elements differ; first at index (0,)" in text
    assert "expected: -1 (0xff) = -1.0 in fixed<8,8>" in text
    assert "actual:   0 (0x00) = 0.0 in fixed<8,8>" in text
    assert "inputs at (0,): acc=" in text


def _all_one_step_simpler(case: ConvCase):
    """The case with every input code moved one step toward the zero point; same for weights."""
    x = case.x - np.sign(case.x - case.x_zp)
    w = case.w - np.sign(case.w)
    return ConvCase(**{**case.__dict__, "x": x}), ConvCase(**{**case.__dict__, "w": w})


def test_acc16_bug_is_caught_and_shrinks_to_the_smallest_int16_overflow(mcu_acc16_bug):
    def differs(case):
        return not np.array_equal(mcu_acc16_bug.conv(*case.args()), fxp_conv(*case.args()))

    case = find(conv_cases(max_channels=1, max_extra=1), differs, settings=FIND)
    assert not case.bias.any()  # the bias is added in int32 after the loop: irrelevant
    # The exact window sum at the first differing output has left int16 ...
    acc, _ = layers.conv2d_int(case.x, case.w, None, x_zero_point=case.x_zp, pads=(1, 1, 1, 1))
    bad = tuple(np.argwhere(mcu_acc16_bug.conv(*case.args()) != fxp_conv(*case.args()))[0])
    overshoot = abs(int(acc[bad])) - (1 << 15 if acc[bad] > 0 else (1 << 15) + 1)
    assert overshoot >= 0
    # ... by less than one product term: the smallest magnitude these codes can overflow with,
    biggest = int(np.abs(case.x - case.x_zp).max()) * int(np.abs(case.w).max())
    assert overshoot < biggest
    # and one step less on every input, or on every weight, no longer overflows.
    assert not any(differs(simpler) for simpler in _all_one_step_simpler(case))
