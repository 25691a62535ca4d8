"""The proven float32 path (``fxp.sim.fast``) equals the ordered integer loop, and its kernels
equal their numpy statements and the pure-Python oracle (issue 17).

Layers are drawn at random (groups, strides, padding, dilation, fused ReLU/Clip, dense),
with random power-of-two plans (weight/activation/accumulator widths, every deterministic
rounding mode, every overflow mode).  ``run_integer`` with ``method="auto"`` (the fast path
where the proof allows it, the loop elsewhere) must give the same codes for every tensor,
the same output saturation counts, and no accumulator overflow where it took the fast path.
Wide operands force the GEMM into several float32 chunks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import CalibrationError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from fxp.kernels.fast_layers import rounding_offsets
from fxp.kernels.scalar import U0, round_shift
from fxp.plan.ptq import ptq_pow2
from fxp.sim.compile import compile_plan
from fxp.sim.fast import fast_layer, storage_dtype
from fxp.sim.integer import run_integer
from tests import oracles

MODES = ["floor", "ceil", "to_zero", "away", "half_up", "half_down", "half_to_zero",
         "half_away", "half_even"]
OVERFLOWS = ["wrap", "saturate", "saturate_symmetric", "saturate_zero"]


@st.composite
def layer_graphs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    f = np.float32
    c = draw(st.integers(1, 4))
    groups = draw(st.sampled_from([1, c]))
    co = groups * draw(st.integers(1, 3))
    k = draw(st.integers(1, 3))
    act = draw(st.sampled_from([None, "relu", (-0.5, 0.75)]))
    conv = Conv2D(name="c1", inputs=("x",), outputs=("h1",),
                  weight=rng.normal(0, .6, (co, c // groups, k, k)).astype(f),
                  bias=rng.normal(0, .2, co).astype(f),
                  strides=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
                  pads=tuple(draw(st.integers(0, 1)) for _ in range(4)),
                  dilations=(draw(st.integers(1, 2)), 1), groups=groups, fused_activation=act)
    ho, wo = _hw(conv, 7, 7)
    pool = MaxPool2D(name="p1", inputs=("h1",), outputs=("h2",), kernel=(2, 2),
                     strides=(draw(st.integers(1, 2)),) * 2,
                     pads=tuple(draw(st.integers(0, 1)) for _ in range(4)))
    (sh, _), (t, left, b, r) = pool.strides, pool.pads
    ho, wo = (ho + t + b - 2) // sh + 1, (wo + left + r - 2) // sh + 1
    nodes, c, last = [conv, pool], co, "h2"
    if draw(st.booleans()):  # a second conv reads the first one's channels-last codes
        if draw(st.booleans()):
            nodes.append(ReLU(name="r1", inputs=(last,), outputs=("h2r",)))
            last = "h2r"
        g2 = draw(st.sampled_from([1, c]))
        c = g2 * draw(st.integers(1, 2))
        k2 = draw(st.integers(1, 3))
        conv2 = Conv2D(name="c2", inputs=(last,), outputs=("h2c",),
                       weight=rng.normal(0, .5, (c, co // g2, k2, k2)).astype(f),
                       bias=rng.normal(0, .2, c).astype(f), pads=(k2 // 2,) * 4, groups=g2,
                       fused_activation=draw(st.sampled_from([None, "relu"])))
        nodes.append(conv2)
        ho, wo, last = *_hw(conv2, ho, wo), "h2c"
    nodes += [Flatten(name="fl", inputs=(last,), outputs=("h3",)),
              Dense(name="d1", inputs=("h3",), outputs=("y",),
                    weight=rng.normal(0, .3, (3, c * ho * wo)).astype(f),
                    bias=rng.normal(0, .2, 3).astype(f))]
    c = conv.weight.shape[1] * conv.groups
    g = Graph(nodes=tuple(nodes), inputs=("x",), input_shapes={"x": (None, c, 7, 7)},
              outputs=("y",))
    x = (rng.normal(0, 1.5, (5, c, 7, 7))).astype(f)
    return g, x


def _hw(conv, h, w):
    (sh, sw), (dh, dw), (t, left, b, r) = conv.strides, conv.dilations, conv.pads
    kh, kw = conv.weight.shape[2:]
    return (h + t + b - ((kh - 1) * dh + 1)) // sh + 1, (w + left + r - ((kw - 1) * dw + 1)) // sw + 1


def _plan(g, x, wb, ab, acc, rounding, ovf, acc_ovf):
    try:
        plan = ptq_pow2(g, x, weight_bits=wb, act_bits=ab, acc_bits=acc, acc_overflow=acc_ovf)
    except CalibrationError:  # a drawn ReLU output that is zero on every sample: no scale
        reject()
    for lp in plan.layers:
        plan = plan.replace_layer(lp.name, rounding=rounding, output_overflow=ovf)
    return plan


def _same(g, plan, x) -> tuple[bool, int]:
    model = compile_plan(g, plan)
    ca, cl = {}, {}
    fast = run_integer(model, x, ca, keep=True, method="auto")
    loop = run_integer(model, x, cl, keep=True, method="loop")
    assert np.array_equal(run_integer(model, x).output, loop.output)  # nothing kept
    for t, v in loop.values.items():
        if not hasattr(v, "codes"):  # a float tensor (softmax)
            assert np.array_equal(fast.values[t].data, v.data), t
            continue
        assert fast.values[t].codes.dtype == np.int64  # what callers see is int64
        assert np.array_equal(fast.values[t].codes, v.codes), t
    for name, c in cl.items():
        assert ca[name].output_saturations == c.output_saturations, name
    used = sum(c.blas_batches for c in ca.values())
    for step in model.steps:
        if step.w_codes is not None and fast_layer(step) is not None:
            assert cl[step.name].acc_overflows == 0  # the proof: nothing overflows
    return True, used


@settings(max_examples=300, deadline=None)
@given(gx=layer_graphs(), wb=st.integers(2, 9), ab=st.integers(2, 10),
       acc=st.sampled_from([12, 20, 32]), rounding=st.sampled_from(MODES),
       ovf=st.sampled_from(OVERFLOWS), acc_ovf=st.sampled_from(["wrap", "saturate"]))
def test_fast_path_equals_ordered_loop(gx, wb, ab, acc, rounding, ovf, acc_ovf):
    g, x = gx
    _same(g, _plan(g, x, wb, ab, acc, rounding, ovf, acc_ovf), x)


@settings(max_examples=40, deadline=None)
@given(gx=layer_graphs(), rounding=st.sampled_from(MODES))
def test_wide_operands_split_into_exact_float32_chunks(gx, rounding):
    """16-bit weights and activations: one product can reach 2**30, so a single float32 GEMM
    is not exact; layers whose single products stay below 2**24 run in several chunks."""
    g, x = gx
    plan = _plan(g, x, 12, 12, 48, rounding, "saturate", "wrap")
    model = compile_plan(g, plan)
    chunks = [len(fl.chunks_for(None)) for s in model.steps if s.w_codes is not None
              for fl in [fast_layer(s)] if fl is not None]
    _same(g, plan, x)
    assert all(n >= 1 for n in chunks)


@settings(max_examples=60, deadline=None)
@given(gx=layer_graphs(), wb=st.integers(2, 8), ab=st.integers(2, 8),
       rounding=st.sampled_from(MODES), ovf=st.sampled_from(OVERFLOWS))
def test_float_gemm_path_equals_ordered_loop_where_vnni_would_run(gx, wb, ab, rounding, ovf):
    """The layers the int8 GEMM takes on a VNNI CPU, on the float32 GEMM instead."""
    from fxp.sim import fast_vnni

    g, x = gx
    plan = _plan(g, x, wb, ab, 32, rounding, ovf, "wrap")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fast_vnni, "_available", lambda: False)
        model = compile_plan(g, plan)
        assert all(fast_layer(s) is None or fast_layer(s).vnni is None for s in model.steps
                   if s.w_codes is not None)
        _same(g, plan, x)


@pytest.mark.parametrize("name", ["mnist_cnn", "resnet_small"])
def test_the_int8_gemm_runs_every_layer_of_an_8_bit_plan(name):
    """On a VNNI CPU every layer of the w8a8 plan takes the int8 GEMM, and every tensor and
    counter equals the ordered loop's. mnist_cnn: signed input codes through the +128
    offset, unsigned ones as they are; resnet_small (channels 1, 7, 13, 19: the padded-runs
    GEMM; 2x2 average pools: the shift division; tensors read by two convolutions after one
    cast): int32 requantization."""
    from fxp import workflow as fw
    from fxp.kernels import vnni

    if not vnni.available():
        pytest.skip("the CPU has no AVX-512 VNNI")
    graph = fw.load_model(name)
    x = np.random.default_rng(2).normal(size=(20, 1, 28, 28)).astype(np.float32)
    plan = ptq_pow2(graph, x, weight_bits=8, act_bits=8, acc_bits=32)
    model = compile_plan(graph, plan)
    vls = [fast_layer(s).vnni for s in model.steps if s.w_codes is not None]
    assert all(v is not None for v in vls) and any(v.narrow for v in vls)
    if name == "mnist_cnn":
        assert {v.offset for v in vls} == {0, 128}
    _same(graph, plan, x)


def test_the_fast_path_runs_and_chunks_on_a_real_model():
    from fxp import workflow as fw

    graph = fw.load_model("mnist_cnn")
    x = np.random.default_rng(0).normal(size=(8, 1, 28, 28)).astype(np.float32)  # < 16:
    for wb, ab, acc in ((8, 8, 32), (12, 12, 48)):  # every layer on the float32 path
        plan = ptq_pow2(graph, x, weight_bits=wb, act_bits=ab, acc_bits=acc)
        model = compile_plan(graph, plan)
        fls = {s.name: fast_layer(s) for s in model.steps if s.w_codes is not None}
        assert all(fl is not None for fl in fls.values()), fls
        if wb == 12:
            assert max(len(fl.chunks_for(None)) for fl in fls.values()) > 1
        _, used = _same(graph, plan, x)
        assert used == len(fls)


def test_layers_the_proof_forbids_take_the_loop():
    """A narrow saturating accumulator that really saturates: no fast path, loop integers."""
    from fxp import workflow as fw

    graph = fw.load_model("mnist_cnn")
    x = np.random.default_rng(1).normal(size=(8, 1, 28, 28)).astype(np.float32) * 3
    plan = ptq_pow2(graph, x, weight_bits=5, act_bits=7, acc_bits=12, acc_overflow="saturate")
    model = compile_plan(graph, plan)
    assert any(fast_layer(s) is None for s in model.steps if s.w_codes is not None)
    c = {}
    run_integer(model, x, c)
    assert sum(v.acc_overflows for v in c.values()) > 0
    _same(graph, plan, x)


@settings(max_examples=500, deadline=None)
@given(y=st.integers(-(1 << 52), 1 << 52), s=st.integers(1, 30), mode=st.sampled_from(MODES))
def test_rounding_offsets_equal_round_shift_and_the_oracle(y, s, mode):
    code = ["floor", "ceil", "to_zero", "away", "half_up", "half_down", "half_to_zero",
            "half_away", "half_even"].index(mode)
    t_pos, t_neg, even = rounding_offsets(s, code)
    got = (y + (t_neg if y < 0 else t_pos) + even * ((y >> s) & 1)) >> s
    assert got == int(round_shift(np.int64(y), s, code, U0))
    from fractions import Fraction

    assert got == oracles.round_fraction(Fraction(y, 2**s), mode)


@pytest.mark.parametrize(("fmt", "dt"), [(QFormat(8, 3), np.int8), (QFormat(8, 3, False), np.uint8),
                                         (QFormat(9, 3, False), np.int16), (QFormat(16, 2, False), np.uint16),
                                         (QFormat(16, 2), np.int16), (QFormat(17, 2), np.int32),
                                         (QFormat(40, 2), np.int64)])
def test_storage_dtype_holds_every_code(fmt, dt):
    assert storage_dtype(fmt) == np.dtype(dt)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.integers(2, 16), frac=st.integers(-4, 12),
       signed=st.booleans(), bits2=st.integers(2, 16), frac2=st.integers(-4, 14),
       signed2=st.booleans(), mode=st.sampled_from(MODES))
def test_fast_cast_equals_the_cast_it_replaces(seed, bits, frac, signed, bits2, frac2, signed2,
                                               mode):
    """The executor's fused input cast equals :func:`fxp.ops.fixed.cast` (saturate): codes
    and the number saturated, for every deterministic rounding and any format pair."""
    from fxp.ops.fixed import cast
    from fxp.sim.fast import cast_plan, fast_cast

    src, dst = QFormat.from_frac(bits, frac, signed), QFormat.from_frac(bits2, frac2, signed2)
    x = np.random.default_rng(seed).integers(src.min_code, src.max_code + 1, 50)
    plan = cast_plan(src, dst, mode)
    assert plan is not None
    got, n = fast_cast(x.astype(storage_dtype(src)), plan)
    want, n_want = cast(x, src, dst, mode, "saturate")
    assert np.array_equal(got, want) and n == n_want
