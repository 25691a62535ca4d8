"""TFLite integer ADD / AVERAGE_POOL_2D / MEAN: Numba kernels == numpy spec == Python-int oracle.

300 hypothesis examples per kernel, drawn with tie-prone scales (equal and
power-of-two related), extreme codes and zero points, every fused activation
and both rounding schemes.  No TFLite runtime is installed here: the
definition is the TFLite reference kernel, restated by the oracle from
``add.cc`` / ``add.h``, ``pooling.h``, ``reduce.cc`` / ``mean.h``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import FormatError
from fxp.kernels import spec_tflite
from fxp.ops.pooling import avgpool2d_int
from fxp.ops.tflite import tflite_add, tflite_add_params, tflite_avgpool, tflite_mean_hw
from tests import oracles_qlinear as orc
from tests.strategies_qlinear import (
    INT8,
    activations,
    binary_cases,
    code_arrays,
    pool_cases,
    related_scale,
    scales,
    schemes,
    zero_points,
)

N = 300


def _both(fn, *args, **kwargs):
    got = fn(*args, backend="numba", **kwargs)
    ref = fn(*args, backend="numpy", **kwargs)
    assert np.array_equal(got[0], ref[0]) and got[1] == ref[1]
    return got


@settings(max_examples=N)
@given(binary_cases(), activations(), schemes())
def test_tflite_add_matches_oracle(case, activation, scheme):
    """ADD: parameters from float32 scales, two multiplier stages, the sum, the output
    stage and the activation clamp, element by element against the Python-int oracle."""
    a, b = (np.array(v) for v in np.broadcast_arrays(case.a, case.b))  # same shape only
    got = _both(tflite_add, a, b, activation=activation, scheme=scheme, **case.kwargs())
    act = orc.tflite_activation(activation, case.sy, case.zy, case.fmt.min_code,
                                case.fmt.max_code)
    want = [orc.tflite_add(int(x), int(y), case.sa, case.za, case.sb, case.zb, case.sy,
                           case.zy, *act, scheme == "single")
            for x, y in zip(a, b, strict=True)]
    assert got[0].tolist() == [c for c, _ in want]
    assert got[1] == sum(n for _, n in want)  # 8-bit inputs never wrap int32


@settings(max_examples=N)
@given(pool_cases(pad_below_kernel=False, whole_image=False), activations())
def test_tflite_avgpool_matches_oracle(case, activation):
    """AVERAGE_POOL_2D: raw-code sums over real pixels, C half-away divide, clamp; windows
    made only of padding are refused (TFLite returns an error)."""
    n, c, h, w = case.x.shape
    wins = list(orc.windows(h, w, case.kernel, case.strides, case.pads))
    kwargs = {"strides": case.strides, "pads": case.pads, "fmt": case.fmt, "activation": activation,
              "scale": case.sx, "zero_point": case.zx}
    if any(not taps for _, _, taps, _ in wins):
        with pytest.raises(FormatError, match="covers only padding"):
            tflite_avgpool(case.x, case.kernel, **kwargs)
        return
    got = _both(tflite_avgpool, case.x, case.kernel, **kwargs)
    lo, hi = orc.tflite_activation(activation, case.sx, case.zx, case.fmt.min_code,
                                   case.fmt.max_code)
    want = np.zeros(got[0].shape, np.int64)
    clamped = 0
    for b in range(n):
        for ch in range(c):
            for oy, ox, taps, _ in wins:
                q = orc.c_div_half_away(sum(int(case.x[b, ch, y, x]) for y, x in taps),
                                        len(taps))
                want[b, ch, oy, ox], k = orc.fit(q, lo, hi)
                clamped += k
    assert np.array_equal(got[0], want) and got[1] == clamped


@settings(max_examples=N)
@given(st.data(), schemes())
def test_tflite_mean_matches_oracle(data, scheme):
    """MEAN over H, W: QuantizeMultiplier(s_in / s_out) (left shift when > 1), half-away
    divide by H*W, zero point, clamp."""
    fmt = data.draw(st.sampled_from([INT8, QFormat.integer(16)]))
    s_in = data.draw(scales(-10, 0))
    s_out = data.draw(related_scale(s_in))
    zi, zo = data.draw(zero_points(fmt)), data.draw(zero_points(fmt))
    if fmt.bits == 16:
        zi = zo = 0  # TFLite requires zero points 0 for int16
    shape = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3)),
             data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    x = data.draw(code_arrays(fmt, shape, zi))
    got = _both(tflite_mean_hw, x, x_scale=s_in, x_zero_point=zi, y_scale=s_out,
                y_zero_point=zo, fmt=fmt, scheme=scheme)
    want = [orc.tflite_mean([int(v) for v in plane.ravel()], s_in, zi, s_out, zo,
                            fmt.min_code, fmt.max_code, scheme == "single")
            for plane in x.reshape(-1, *shape[2:])]
    assert got[0].ravel().tolist() == [c for c, _ in want]
    assert got[1] == sum(n for _, n in want)


@settings(max_examples=N)
@given(scales(-14, 2), scales(-14, 2), scales(-12, 2), schemes())
def test_tflite_add_params_match_oracle(s1, s2, so, scheme):
    """add.cc Prepare: the six integers equal the frexp/round oracle of the double ratios."""
    single = scheme == "single"
    f1, f2, fo = float(s1), float(s2), float(so)
    twice = 2.0 * max(f1, f2)
    want = [v for r in (f1 / twice, f2 / twice, twice / (2.0 ** 20 * fo))
            for v in orc.quantize_multiplier(r, single)]
    assert list(tflite_add_params(s1, s2, so, scheme=scheme)) == want


def test_tflite_avgpool_rounds_raw_codes_not_centered():
    """Regression: TFLite rounds the mean of *raw* codes (half away from zero):
    codes (0, 1) with zero point 1 give 1; fxp's avgpool2d_int rounds mean(x - zp) = -0.5
    half away to -1, i.e. code 0 -- the two conventions differ on ties."""
    x = np.array([[[[0, 1]]]])
    codes, _ = tflite_avgpool(x, (1, 2), fmt=INT8)
    assert codes.tolist() == [[[[1]]]]
    assert avgpool2d_int(x, (1, 2), "half_away", zero_point=1).tolist() == [[[[0]]]]


def test_tflite_mean_folds_count_into_multiplier():
    """Hand case: s_in / s_out = 2 gives (2**30, 2); over 2 pixels k = 1, so
    (2**31 / 2, 1) = (2**30, 1): sum(x - zp) = 3 -> 3 * 2**30 * 2 / 2**31 = 3."""
    assert spec_tflite.mean_params(0.5, 0.25, 2) == (1 << 30, 1)
    codes, n = tflite_mean_hw(np.array([[[[1, 2]]]]), x_scale=0.5, x_zero_point=0,
                              y_scale=0.25, y_zero_point=0, fmt=INT8)
    assert codes.tolist() == [[[[3]]]] and n == 0
    codes, _ = tflite_mean_hw(np.array([[[[-1, -2]]]]), x_scale=0.25, x_zero_point=0,
                              y_scale=0.25, y_zero_point=0, fmt=INT8)
    # (2**30, 1) folds to (2**30, 0): SRDHM(-3, 2**30) = trunc((-3 * 2**30 + 1 - 2**30) / 2**31)
    assert codes.tolist() == [[[[-1]]]]  # = -1: gemmlowp's nudge (mean.h's division gives -2)


def test_tflite_mean_regression_tflm_not_mean_h():
    """Regression (issue 16: 1,441 of 24,000 MEAN outputs differed from TFLM): TFLM folds
    ``1/n`` into the multiplier and rounds twice inside one MBQM.  Codes (-13, -13, -14),
    s_in 1, s_out 1.3: (M, e) = QuantizeMultiplier(1/1.3) with e = 0, k = 1,
    M' = floor(2 M / 3), e' = -1: SRDHM(-40, M') = -21 (-20.51), RDBPOT(-21, 1) = -11;
    LiteRT's mean.h (MBQM(-40, M, 0) = -31, then (-31 - 1) / 3 = -10) gives -10."""
    m, e = orc.quantize_multiplier(1.0 / float(np.float32(1.3)))
    assert e == 0 and spec_tflite.mean_params(1.0, 1.3, 3) == ((m << 1) // 3, -1)
    codes, n = tflite_mean_hw(np.array([[[[-13, -13, -14]]]]), x_scale=1.0, x_zero_point=0,
                              y_scale=1.3, y_zero_point=0, fmt=INT8)
    assert codes.tolist() == [[[[-11]]]] and n == 0
    assert orc.c_div_half_away(-31, 3) == -10  # what the mean.h path computes


def test_parallel_builds_match_spec():
    """Inputs above PARALLEL_MIN_ELEMENTS run the prange builds: same codes and counts."""
    from fxp.kernels._jit import PARALLEL_MIN_ELEMENTS

    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, PARALLEL_MIN_ELEMENTS + 7)
    b = rng.integers(-128, 128, a.size)
    x = rng.integers(-128, 128, (2, 16, 48, 48))
    add = {"a_scale": 0.02, "a_zero_point": -5, "b_scale": 0.03, "b_zero_point": 7, "y_scale": 0.01,
           "y_zero_point": 3, "fmt": INT8, "activation": "relu"}
    for run in (lambda be: tflite_add(a, b, backend=be, **add),
                lambda be: tflite_avgpool(x, (3, 3), pads=(1, 1, 1, 1), fmt=INT8,
                                          activation="relu", scale=0.01, zero_point=0,
                                          backend=be),
                lambda be: tflite_mean_hw(x, x_scale=0.5, x_zero_point=-3, y_scale=0.01,
                                          y_zero_point=1, fmt=INT8, backend=be)):
        got, ref = run("numba"), run("numpy")
        assert np.array_equal(got[0], ref[0]) and got[1] == ref[1] and got[1] > 0
