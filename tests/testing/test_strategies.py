"""The strategies of ``fxp.testing.strategies`` themselves: in range, ties at a rate, shrinking.

* every generated code, array and tie lies inside the format it was drawn for;
* ``tie_values`` / ``tie_integers`` produce exact ties on more than 20% of
  draws (about a third by design), and those ties really separate the tie rules;
* requantization parameters, geometries and plans are accepted by fxp;
* ``hypothesis.find`` shrinks each strategy to the simplest example.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from fxp import QFormat
from fxp.ops import fixed, layers
from fxp.plan import Plan, plan_from_dict, plan_to_dict
from fxp.testing import oracles
from fxp.testing import strategies as fs

FIND = settings(database=None, derandomize=True, max_examples=500, deadline=None,
                suppress_health_check=list(HealthCheck))
RATE = settings(database=None, derandomize=True, max_examples=300, deadline=None)


# --------------------------------------------------------------------------- inside the format
@given(st.data())
@settings(max_examples=200)
def test_formats_respect_the_bounds_given(data):
    lo = data.draw(st.integers(1, 40), label="min_bits")
    hi = data.draw(st.integers(lo, 64), label="max_bits")
    f_lo = data.draw(st.integers(-20, 20), label="frac_lo")
    f_hi = data.draw(st.integers(f_lo, 40), label="frac_hi")
    signed = data.draw(st.sampled_from([None, True, False]), label="signed")
    if signed is False and lo > 63:
        return
    fmt = data.draw(fs.formats(lo, hi, (f_lo, f_hi), signed))
    assert lo <= fmt.bits <= (hi if fmt.signed else min(hi, 63))
    assert f_lo <= fmt.frac_bits <= f_hi
    assert signed is None or fmt.signed is signed


@given(fs.formats_and_codes())
@settings(max_examples=200)
def test_codes_lie_inside_their_format(fc):
    fmt, code = fc
    assert fmt.contains_code(code)


@given(st.data())
@settings(max_examples=100)
def test_code_lists_and_arrays_lie_inside_their_format(data):
    fmt = data.draw(fs.formats(max_bits=64))
    assert all(fmt.contains_code(c) for c in data.draw(fs.code_lists(fmt)))
    arr = data.draw(fs.code_arrays(fmt))
    assert arr.dtype == np.int64 and 1 <= arr.ndim <= 3
    assert arr.size == 0 or (arr.min() >= fmt.min_code and arr.max() <= fmt.max_code)
    assert all(fmt.contains_code(c) for c in fs.boundary_codes(fmt))


@given(fs.formats_and_arrays(shape=(2, 3), max_bits=12))
@settings(max_examples=50)
def test_formats_and_arrays_shape(fa):
    fmt, arr = fa
    assert arr.shape == (2, 3) and all(fmt.contains_code(int(c)) for c in arr.ravel())


@given(fs.accumulators(16, signed=False))
def test_accumulators_fit_their_register(x):
    assert 0 <= x < 1 << 16


# --------------------------------------------------------------------------- ties
def _is_tie(v: Fraction, fmt: QFormat) -> bool:
    scaled = v * Fraction(2) ** fmt.frac_bits
    return scaled - (scaled.numerator // scaled.denominator) == Fraction(1, 2)


def test_tie_values_are_exact_ties_at_a_measurable_rate():
    seen = {"n": 0, "ties": 0}

    @given(st.data())
    @RATE
    def draw(data):
        fmt = data.draw(fs.formats(2, 52, (-30, 60)))
        v = data.draw(fs.tie_values(fmt))
        assert Fraction(v) == Fraction(v).limit_denominator(1 << 200)  # finite, exact
        scaled = Fraction(v) * Fraction(2) ** fmt.frac_bits
        assert fmt.min_code <= scaled <= fmt.max_code  # both neighbours are codes
        seen["n"] += 1
        if _is_tie(Fraction(v), fmt):
            seen["ties"] += 1
            # the tie decides: ties-up and ties-down give adjacent codes
            up = oracles.quantize(v, fmt, "half_up", "saturate")[0]
            down = oracles.quantize(v, fmt, "half_down", "saturate")[0]
            assert up == down + 1

    draw()
    assert seen["ties"] / seen["n"] > 0.20, seen
    assert seen["ties"] < seen["n"]  # near=True also draws non-ties


@given(st.data())
@settings(max_examples=100)
def test_tie_values_without_near_are_all_ties(data):
    fmt = data.draw(fs.formats(2, 64, (-70, 140)))
    v = data.draw(fs.tie_values(fmt, near=False, as_fraction=True))
    assert _is_tie(v, fmt)
    assert fmt.min_code <= v * Fraction(2) ** fmt.frac_bits <= fmt.max_code


def test_tie_integers_are_ties_of_the_shift_at_a_measurable_rate():
    seen = {"n": 0, "ties": 0}

    @given(st.data())
    @RATE
    def draw(data):
        s = data.draw(fs.pow2_shifts(1, 31))
        lo = data.draw(st.integers(-(1 << 40), 0))
        hi = data.draw(st.integers(1 << 31, 1 << 40))
        x = data.draw(fs.tie_integers(s, lo, hi))
        assert lo <= x <= hi
        seen["n"] += 1
        if x % (1 << s) == 1 << (s - 1):
            seen["ties"] += 1
            assert oracles.shift_right(x, s, "half_away") != oracles.shift_right(x, s, "half_up") \
                or x > 0

    draw()
    assert seen["ties"] / seen["n"] > 0.20, seen


def test_tie_strategies_refuse_impossible_requests():
    with pytest.raises(ValueError, match="a right shift by 0 has no ties"):
        find(fs.tie_integers(0), lambda x: True, settings=FIND)
    with pytest.raises(ValueError, match=r"no tie of a shift by 4 lies in \[1, 5\]"):
        find(fs.tie_integers(4, 1, 5), lambda x: True, settings=FIND)
    # the smallest formats still have ties: 1-bit unsigned {0, 1} has 1/2
    assert find(fs.tie_values(QFormat(1, 1, False), near=False), lambda v: True,
                settings=FIND) == 0.5


# --------------------------------------------------------------------------- accepted by fxp
@given(st.sampled_from(["double", "single"]).flatmap(
    lambda s: st.tuples(st.just(s), fs.quantized_multipliers(s))), fs.accumulators(16))
@settings(max_examples=100)
def test_quantized_multipliers_are_in_tflite_ranges(sp, acc):
    scheme, (m, e) = sp
    assert 1 << 30 <= m < 1 << 31
    assert -31 <= e <= (30 if scheme == "single" else 31)
    out, _ = fixed.requantize_multiplier([acc], m, e, QFormat.integer(8), scheme=scheme)
    assert out.tolist() == [oracles.requantize_multiplier(acc, m, e, QFormat.integer(8),
                                                          scheme=scheme)[0]]


@given(fs.conv2d_geometries())
@settings(max_examples=100)
def test_conv_geometries_are_consistent(geo):
    x = np.zeros(geo.x_shape, np.int64)
    w = np.ones(geo.w_shape, np.int64)
    acc, _ = layers.conv2d_int(x, w, **geo.kwargs())
    assert acc.shape == geo.out_shape and min(geo.out_shape) >= 1
    ref, *_ = oracles.conv2d(x.tolist(), w.tolist(), [0] * geo.c_out, 0, [0] * geo.c_out,
                             geo.strides, geo.pads, geo.dilations, geo.groups, 32, True,
                             -(1 << 31), (1 << 31) - 1, "wrap")
    assert np.array(ref).shape == geo.out_shape


@given(fs.conv2d_geometries(kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1),
                            dilations=(1, 1), groups=1))
@settings(max_examples=30)
def test_conv_geometries_can_be_pinned(geo):
    assert (geo.kh, geo.kw, geo.strides, geo.pads, geo.dilations, geo.groups) == \
        (3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert geo.out_shape[2:] == (geo.h, geo.w)  # SAME


@given(fs.pool_geometries(), fs.dense_geometries())
@settings(max_examples=100)
def test_pool_and_dense_geometries_are_consistent(pg, dg):
    fmt = QFormat.integer(8)
    out = layers.maxpool2d_int(np.zeros(pg.x_shape, np.int64), fmt, pg.kernel, **pg.kwargs())
    assert out.shape == pg.out_shape
    acc, _ = layers.dense_int(np.zeros(dg.x_shape, np.int64), np.zeros(dg.w_shape, np.int64))
    assert acc.shape == dg.out_shape


@given(fs.plans())
@settings(max_examples=60)
def test_plans_are_valid_and_round_trip(plan):
    assert isinstance(plan, Plan) and 1 <= len(plan.layers) <= 3
    kinds = {lp.requant.value == "pow2" for lp in plan.layers}
    assert len(kinds) == 1  # one convention per plan
    assert plan_from_dict(json.loads(json.dumps(plan_to_dict(plan)))) == plan


# --------------------------------------------------------------------------- shrinking
def test_formats_shrink_to_the_simplest_format():
    assert find(fs.formats(), lambda f: True, settings=FIND) == QFormat(1, 1, False)
    assert find(fs.formats(), lambda f: f.bits >= 12, settings=FIND) == QFormat(12, 12, False)
    assert find(fs.formats(), lambda f: f.frac_bits < -3, settings=FIND) == \
        QFormat.from_frac(1, -4, False)


def test_codes_shrink_to_the_smallest_format_and_a_boundary_code():
    fmt, code = find(fs.formats_and_codes(), lambda fc: fc[1] < -100, settings=FIND)
    assert fmt == QFormat(8, 8, True)  # the narrowest format holding a code below -100
    assert code in (-101, -128)


def test_arrays_shrink_to_the_fewest_elements():
    arr = find(fs.code_arrays(QFormat.integer(8)), lambda a: int(a.sum()) > 300, settings=FIND)
    assert arr.size == 3 and int(arr.sum()) > 300  # 127 * 2 < 300: three codes are needed


def test_ties_shrink_to_the_nearest_tie():
    v = find(fs.tie_values(QFormat(8, 4)), lambda v: v < -1, settings=FIND)
    assert v == -1.03125  # (-17 + 1/2) / 16: the first tie below -1
    x = find(fs.tie_integers(3), lambda x: x < 0, settings=FIND)
    assert x == -4  # -0.5 * 2**3


def test_requant_parameters_and_geometries_shrink():
    assert find(fs.quantized_multipliers(), lambda p: p[1] < 0, settings=FIND) == (1 << 30, -1)
    geo = find(fs.conv2d_geometries(), lambda g: g.groups == 2, settings=FIND)
    assert (geo.n, geo.c_in, geo.c_out, geo.h, geo.w, geo.kh, geo.kw) == (1, 2, 2, 1, 1, 1, 1)
    assert geo.strides == (1, 1) and geo.pads == (0, 0, 0, 0)


# --------------------------------------------------------------------------- no hypothesis
def test_without_hypothesis_strategies_raise_a_clear_error():
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import fxp.testing\n"
        "fxp.testing.assert_bit_exact([1], [1])\n"
        "assert 'hypothesis' not in {k for k, v in sys.modules.items() if v is not None}\n"
        "fast = ('fxp.kernels', 'fxp.ops', 'fxp.core.intmath', 'numba')\n"
        "assert not [m for m in sys.modules if m.startswith(fast)], 'oracles import kernels'\n"
        "from fxp.errors import MissingDependencyError\n"
        "try:\n"
        "    import fxp.testing.strategies\n"
        "except MissingDependencyError as e:\n"
        "    print('OK', e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("OK fxp.testing.strategies needs hypothesis: pip install")


def test_requant_inputs_aim_at_ties_of_the_last_rounding():
    seen = {"n": 0, "ties": 0, "inside": 0}

    @given(fs.requant_inputs())
    @RATE
    def draw(case):
        acc, m, e = case
        assert -(1 << 31) <= acc < 1 << 31 and 1 << 30 <= m < 1 << 31 and -31 <= e <= 0
        seen["n"] += 1
        before_last = Fraction(oracles.srdhm(acc, m), 1 << -e)  # value entering RDBPOT
        if before_last.denominator == 2:
            seen["ties"] += 1
        if -128 <= oracles.mbqm_double(acc, m, e)[0] <= 127:
            seen["inside"] += 1

    draw()
    assert seen["ties"] / seen["n"] > 0.20, seen
    assert seen["inside"] / seen["n"] > 0.5, seen  # not degenerate: most outputs unsaturated
    assert find(fs.requant_inputs(), lambda c: c[0] < 0 and Fraction(
        oracles.srdhm(c[0], c[1]), 1 << -c[2]).denominator == 2, settings=FIND) == \
        (-2, 1 << 30, -1)
