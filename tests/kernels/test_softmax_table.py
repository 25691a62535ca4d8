"""hls4ml's table softmax: Numba kernel = numpy spec = a plain-Python oracle; tables vs libm."""

from __future__ import annotations

import ctypes
import ctypes.util
from fractions import Fraction

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.errors import PlanError
from fxp.kernels.spec_softmax_table import exp_table_codes, reduce_schedule
from fxp.ops.softmax_table import prepare_softmax, softmax_table_int
from fxp.plan.io import plan_from_dict, plan_to_dict
from fxp.plan.plan import LayerPlan, Plan, TensorSpec
from fxp.plan.softmax import ApType, SoftmaxTable

CASES = [
    (QFormat(16, 6), SoftmaxTable(), QFormat(16, 1, False), "floor", "wrap"),
    (QFormat(8, 3), SoftmaxTable(table_size=64, exp_table_t="ap_ufixed<10,1,AP_RND,AP_SAT>",
                                 inv_table_t="ap_ufixed<12,4,AP_RND_CONV,AP_SAT>",
                                 inv_inp_t="ap_ufixed<10,3,AP_TRN,AP_SAT>",
                                 accum_t="ap_ufixed<11,3,AP_RND,AP_WRAP>"),
     QFormat(10, 2), "half_up", "saturate"),
    (QFormat(12, 4), SoftmaxTable(strategy="latency", table_size=512), QFormat(18, 2),
     "half_even", "saturate"),
]


def _oracle_row(x, p, out_fmt):
    """Plain Python ints: the steps of nnet::softmax_stable/latency (floor/wrap output only)."""
    def wrap(v, fmt):
        v &= (1 << fmt.bits) - 1
        return v - (1 << fmt.bits) if fmt.signed and v >> (fmt.bits - 1) else v

    def cast(v, f_src, t):  # exact rational arithmetic, AP_TRN / AP_RND only
        k = t.fmt.frac_bits - f_src
        q = Fraction(v) * Fraction(2) ** k
        assert t.rounding.value in ("floor", "half_up"), "oracle covers AP_TRN and AP_RND"
        r = {"floor": q.__floor__(), "half_up": (q + Fraction(1, 2)).__floor__()}[
            t.rounding.value]
        if t.overflow.value == "wrap":
            return wrap(r, t.fmt)
        return min(max(r, t.fmt.min_code), t.fmt.max_code)

    idx = [(((max(x) - v) if p.stable else v) & ((1 << p.norm_fmt.bits) - 1))
           >> (p.norm_fmt.bits - p.n_exp) for v in x]
    e = [cast(int(p.exp_table[i]), p.exp_t.fmt.frac_bits, p.accum_t) for i in idx]
    slots = list(e)
    for _, a, b in p.schedule:
        slots.append(cast(slots[a] + slots[b], p.accum_t.fmt.frac_bits, p.accum_t))
    total = cast(slots[-1], p.accum_t.fmt.frac_bits, p.inv_inp_t)
    inv = int(p.inv_table[(total & ((1 << p.inv_inp_t.fmt.bits) - 1))
                          >> (p.inv_inp_t.fmt.bits - p.n_inv)])
    return [v * inv for v in e]


@pytest.mark.parametrize("in_fmt, sp, out_fmt, rnd, ovf", CASES)
def test_kernel_equals_spec_and_oracle(in_fmt, sp, out_fmt, rnd, ovf):
    """Numba kernel == numpy spec, and the products before the final cast == a Python oracle."""
    rng = np.random.default_rng(1)
    n = 7
    x = rng.integers(in_fmt.min_code, in_fmt.max_code + 1, size=(300, n))
    x[:5] = in_fmt.min_code  # ties, and the widest max - x
    x[5, 0] = in_fmt.max_code
    p = prepare_softmax(in_fmt, sp, n)
    got, n_sat = softmax_table_int(x, p, out_fmt, rnd, ovf)
    ref, n_ref = softmax_table_int(x, p, out_fmt, rnd, ovf, backend="numpy")
    assert np.array_equal(got, ref) and n_sat == n_ref
    wide = QFormat.from_frac(62, p.accum_t.fmt.frac_bits + p.inv_t.fmt.frac_bits)
    prods, _ = softmax_table_int(x, p, wide, "floor", "wrap", backend="numpy")
    for row in range(0, 300, 37):
        assert prods[row].tolist() == _oracle_row(x[row].tolist(), p, wide)


def test_reduce_schedule_is_hls4mls_tree():
    """reduce<N>: left part pow2(floorlog2(N-1)), e.g. N=5 -> ((0+1)+(2+3))+4."""
    assert reduce_schedule(5).tolist() == [[5, 0, 1], [6, 2, 3], [7, 5, 6], [8, 7, 4]]
    assert reduce_schedule(3).tolist() == [[3, 0, 1], [4, 3, 2]]
    assert reduce_schedule(1).shape == (0, 3)


def test_table_sizes_follow_hls4ml():
    """fix_softmax_table_size and the config template: 2**min(W_in, W_inv); stable signed
    input: exp table min(size, 2**(W-1))."""
    p = prepare_softmax(QFormat(8, 3), SoftmaxTable(), 5)
    assert (p.n_inv, p.n_exp, p.norm_fmt) == (8, 7, QFormat(7, 2, False))
    p = prepare_softmax(QFormat(16, 6), SoftmaxTable(), 5)
    assert (p.n_inv, p.n_exp) == (10, 10)
    with pytest.raises(PlanError, match="62 bits"):
        prepare_softmax(QFormat(8, 3), SoftmaxTable(accum_t="ap_fixed<40,8>",
                                                    inv_table_t="ap_fixed<30,8>"), 5)


def test_exp_table_equals_libm_expf():
    """The exp table uses float32 exp as std::exp(float) does (glibc expf), bit for bit."""
    name = ctypes.util.find_library("m")
    if name is None:
        pytest.skip("no libm")
    expf = ctypes.CDLL(name).expf
    expf.restype, expf.argtypes = ctypes.c_float, [ctypes.c_float]
    for fmt, n in ((QFormat(15, 5, False), 10), (QFormat(7, 2, False), 7), (QFormat(12, 4), 9)):
        t = ApType(QFormat(32, 12, False))  # wide: any float difference would show
        codes = exp_table_codes(fmt, n, t, negative=fmt.signed is False)
        step = 2.0 ** (fmt.bits - n - fmt.frac_bits)
        for i in range(1 << n):
            v = (i - (1 << n) if fmt.signed and i >> (n - 1) else i) * step
            e = expf(-v if not fmt.signed else v)
            assert codes[i] == min(int(np.floor(np.ldexp(e, 20))), (1 << 32) - 1), (fmt, i)


def test_defaults_are_installed_hls4mls():
    """SoftmaxTable's defaults are read back from the installed hls4ml's Vivado backend."""
    hls4ml = pytest.importorskip("hls4ml")
    attrs = {a.name: a for a in hls4ml.backends.get_backend("Vivado").attribute_map[
        hls4ml.model.layers.Softmax]}
    d = SoftmaxTable()
    assert attrs["implementation"].default == d.strategy
    for key in ("exp_table_t", "inv_table_t", "inv_inp_t", "accum_t"):
        prec = attrs[key].default
        assert ApType.parse(str(prec)) == getattr(d, key), key
    act = {a.name: a for a in hls4ml.backends.get_backend("Vivado").attribute_map[
        hls4ml.model.layers.Activation]}
    assert act["table_size"].default == d.table_size


def test_plan_json_round_trip_and_strictness():
    """softmax and input_rounding/input_overflow survive JSON; bad values are one-line errors."""
    sp = SoftmaxTable(strategy="latency", table_size=256, exp_table_t="fixed<12,2,RND,SAT,0>")
    plan = Plan(TensorSpec(QFormat(8, 3)), (LayerPlan("sm", output=TensorSpec(QFormat(10, 2)),
                                                      softmax=sp),),
                input_rounding="floor", input_overflow="wrap")
    d = plan_to_dict(plan)
    assert d["input_rounding"] == "floor" and d["layers"][0]["softmax"]["exp_table_t"] == \
        "ap_fixed<12,2,AP_RND,AP_SAT>"
    assert plan_from_dict(d) == plan
    bad = {**d, "layers": [{**d["layers"][0], "softmax": {"impl": "hls4ml", "table_size": 1000}}]}
    with pytest.raises(PlanError, match="layer 'sm'.*power of two"):
        plan_from_dict(bad)
    bad["layers"][0]["softmax"] = {"impl": "hls4ml", "table_size": "1024"}
    with pytest.raises(PlanError, match="'table_size' must be an integer"):
        plan_from_dict(bad)
    bad["layers"][0]["softmax"] = {"impl": "hls4ml", "accum_t": "ap_fixed<18,8,AP_RND,AP_SAT,2>"}
    with pytest.raises(PlanError, match="saturation bits 2"):
        plan_from_dict(bad)
    with pytest.raises(PlanError, match="input_rounding"):
        plan_from_dict({**d, "input_rounding": "stochastic"})
    with pytest.raises(PlanError, match="table softmax needs a power-of-two 'output'"):
        LayerPlan("sm", softmax=sp)
