"""XNOR-Net input scaling (``beta``) applied by the integer engine where the plan asks for it.

The network is binary conv (pads 1, zero padding) -> flatten -> binary dense,
both with ``binary_output`` ``"scale"``, alpha and beta.  The reference is
independent of fxp's kernels: Python ints and ``Fraction``s, loops over every
output position: ``H = sign(X)`` of the incoming codes (``sign(0) = +1``),
``dot`` over the padded +-1 taps (a padded tap counts 0), ``alpha = mean |W[c]|``
and ``beta = mean |X|`` over the receptive field (padded taps real 0, all
``C*kh*kw`` taps in the count) each rounded half to even into its format, then
``y = alpha * beta * dot + b`` rounded half to even and saturated.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.errors import PlanError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten
from fxp.plan.io import plan_from_dict, plan_to_dict
from fxp.plan.plan import LayerPlan, Plan, TensorSpec
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer

X_FMT = QFormat.from_frac(8, 4)
ALPHA, BETA = QFormat.from_frac(8, 6, signed=False), QFormat.from_frac(8, 5, signed=False)
OUT = QFormat.from_frac(16, 8)


def _rhe(v: Fraction, frac: int) -> int:
    """Round ``v * 2**frac`` half to even (Python's ``round`` on a Fraction)."""
    return round(v * 2**frac)


def _sat(code: int, fmt: QFormat) -> int:
    return min(max(code, fmt.min_code), fmt.max_code)


def _graph(rng) -> Graph:
    w1 = (rng.integers(-8, 9, (3, 2, 3, 3)) / 8).astype(np.float32)  # mean |W| exact
    w2 = (rng.integers(-8, 9, (4, 3 * 4 * 4)) / 8).astype(np.float32)
    b1 = (rng.integers(-64, 64, 3) / 256).astype(np.float32)
    return Graph(nodes=(
        Conv2D(name="c", inputs=("x",), outputs=("h",), weight=w1, bias=b1,
               strides=(1, 1), pads=(1, 1, 1, 1)),
        Flatten(name="f", inputs=("h",), outputs=("hf",)),
        Dense(name="d", inputs=("hf",), outputs=("y",), weight=w2, bias=None),
    ), inputs=("x",), input_shapes={"x": (None, 2, 4, 4)}, outputs=("y",))


def _plan(beta: bool) -> Plan:
    common = {"weight": TensorSpec.binary(), "alpha": TensorSpec(ALPHA), "output": TensorSpec(OUT),
              "binary_output": "scale", "rounding": "half_even",
              "beta": TensorSpec(BETA) if beta else None}
    return Plan(input=TensorSpec(X_FMT), layers=(LayerPlan("c", pad_value=0, **common),
                                                 LayerPlan("d", **common)))


def _layer_ref(codes: np.ndarray, x_frac: int, w: np.ndarray, bias, pads: int, beta: bool):
    """Reference output codes of one binary 'scale' layer; ``codes`` ``[N, C, H, W]``."""
    n, c, hh, ww = codes.shape
    co, k = w.shape[0], w.shape[2]
    taps = c * k * k
    alpha = [Fraction(_rhe(sum(abs(Fraction(float(v))) for v in w[o].ravel()) / taps,
                           ALPHA.frac_bits), 2**ALPHA.frac_bits) for o in range(co)]
    b_frac = max(ALPHA.frac_bits, OUT.frac_bits)  # the default bias format of a binary layer
    b = [Fraction(_rhe(Fraction(float(v)), b_frac), 2**b_frac) for v in
         (bias if bias is not None else np.zeros(co))]
    ho, wo = hh + 2 * pads - k + 1, ww + 2 * pads - k + 1
    out = np.zeros((n, co, ho, wo), np.int64)
    for i, o, y, xx in itertools.product(range(n), range(co), range(ho), range(wo)):
        dot, s = 0, Fraction(0)
        for ci, ky, kx in itertools.product(range(c), range(k), range(k)):
            r, q = y + ky - pads, xx + kx - pads
            if 0 <= r < hh and 0 <= q < ww:
                v = int(codes[i, ci, r, q])
                dot += (1 if v >= 0 else -1) * (1 if w[o, ci, ky, kx] >= 0 else -1)
                s += Fraction(abs(v), 2**x_frac)
        bt = Fraction(_sat(_rhe(s / taps, BETA.frac_bits), BETA), 2**BETA.frac_bits) \
            if beta else Fraction(1)
        out[i, o, y, xx] = _sat(_rhe(alpha[o] * bt * dot + b[o], OUT.frac_bits), OUT)
    return out


@pytest.mark.parametrize("beta", [True, False])
def test_beta_scales_the_binary_output_exactly(beta):
    """Codes of both layers equal the Fraction reference; beta changes them when asked for."""
    rng = np.random.default_rng(7)
    g = _graph(rng)
    x_codes = rng.integers(-40, 40, (3, 2, 4, 4))
    x_codes[0, 0, 0, :2] = 0  # sign(0) = +1, and |0| in beta
    x = (x_codes / 2**X_FMT.frac_bits).astype(np.float32)
    run = run_integer(compile_plan(g, _plan(beta)), x, {}, keep=True)
    conv, dense = g.nodes[0], g.nodes[2]
    want_h = _layer_ref(x_codes, X_FMT.frac_bits, conv.weight, conv.bias, 1, beta)
    assert run.values["h"].codes.tolist() == want_h.tolist()
    hf = want_h.reshape(3, -1)[:, :, None, None]
    want_y = _layer_ref(hf, OUT.frac_bits, dense.weight[:, :, None, None], None, 0, beta)
    assert run.values["y"].codes.tolist() == want_y.reshape(3, -1).tolist()
    if beta:  # the scaling is really applied: without it the codes differ
        plain = run_integer(compile_plan(g, _plan(False)), x, {}, keep=True)
        assert plain.values["h"].codes.tolist() != want_h.tolist()


def test_beta_json_round_trip_and_refusals():
    plan = _plan(True)
    back = plan_from_dict(plan_to_dict(plan))
    assert back.layer("c").beta == TensorSpec(BETA) and back == plan
    with pytest.raises(PlanError, match=r"layer 'c': beta .* binary_output 'scale', got "
                                        r"binary_output 'threshold'"):
        LayerPlan("c", weight=TensorSpec.binary(), binary_output="threshold",
                  beta=TensorSpec(BETA))
    with pytest.raises(PlanError, match=r"layer 'c': 'beta' is for binary layers only"):
        LayerPlan("c", weight=TensorSpec(QFormat.from_frac(8, 4)), beta=TensorSpec(BETA))
