"""Per-channel weight widths: spec, plan JSON, engine vs Fraction oracle, MILP vs brute force,
optimize_channel_widths (targets and budgets), C header and hls4ml export."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.errors import PlanError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Dense
from fxp.opt.channel_noise import measure_channel_noise
from fxp.opt.channel_optimize import optimize_channel_widths
from fxp.opt.channel_widths import (
    ChannelProblem,
    brute_force_channels,
    build_channel_problem,
    solve_channel_milp,
    weight_memory_bits,
)
from fxp.opt.splits import split_data
from fxp.plan.io import plan_from_dict, plan_to_dict
from fxp.plan.plan import LayerPlan, Plan, RequantScheme, TensorSpec
from fxp.plan.ptq import ptq_pow2
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer
from tests.opt.test_end_to_end import tiny_graph


def _rne_sat(v: Fraction, fmt: QFormat) -> int:
    """Round half to even to fmt's LSB, then saturate (Fraction arithmetic)."""
    q = v * 2 ** fmt.frac_bits
    fl = math.floor(q)
    r = q - fl
    code = fl + (1 if r > Fraction(1, 2) or (r == Fraction(1, 2) and fl % 2) else 0)
    return min(max(code, fmt.min_code), fmt.max_code)


def _random_channel_formats(rng, n: int) -> list[QFormat]:
    return [QFormat(int(rng.integers(2, 9)), int(rng.integers(-2, 3)), True) for _ in range(n)]


def test_per_channel_spec_is_the_container_of_its_channels():
    """fmt's LSB is the finest channel LSB and its integer bits the most of any channel."""
    s = TensorSpec.per_channel(["fixed<3,1>", "fixed<5,-1>", "fixed<2,2>"])
    assert (s.fmt.frac_bits, s.fmt.int_bits) == (6, 2)
    assert s.channel_shifts().tolist() == [6 - 2, 0, 6 - 0]
    with pytest.raises(PlanError, match="must be the container"):
        TensorSpec(QFormat(8, 2, True), channel_formats=(QFormat(3, 1, True),))
    with pytest.raises(PlanError, match="power-of-two 'fixed'"):
        TensorSpec(QFormat(8, 8, True), scales=(0.5,), channel_formats=(QFormat(8, 8, True),))
    with pytest.raises(PlanError, match="mix signed and unsigned"):
        TensorSpec.per_channel(["fixed<3,1>", "ufixed<3,1>"])


def test_plan_json_round_trip_and_bad_channel_formats():
    g = tiny_graph()
    x = np.random.default_rng(0).normal(0, 1, (64, 2, 6, 6)).astype(np.float32)
    plan = ptq_pow2(g, x, weight_bits=8, act_bits=12)
    spec = TensorSpec.per_channel(_random_channel_formats(np.random.default_rng(1), 5))
    plan = plan.replace_layer("d1", weight=spec)
    d = plan_to_dict(plan)
    assert plan_from_dict(d).layer("d1").weight == spec
    d["layers"][-1]["weight"]["channel_formats"] = "fixed<3,1>"
    with pytest.raises(PlanError, match="'channel_formats' must be a non-empty list"):
        plan_from_dict(d)


def _dense_graph(rng, n_in=7, n_out=6) -> Graph:
    w = rng.normal(0, 0.6, (n_out, n_in)).astype(np.float32)
    w[0] *= 0.01  # a small channel: fine LSB
    b = rng.normal(0, 0.2, n_out).astype(np.float32)
    node = Dense(name="fc", inputs=("x",), outputs=("y",), weight=w, bias=b,
                 fused_activation="relu")
    return Graph(nodes=(node,), inputs=("x",), input_shapes={"x": (None, n_in)}, outputs=("y",))


@pytest.mark.parametrize("seed", range(4))
def test_engine_matches_fraction_oracle_with_per_channel_clip(seed):
    """Every weight code lies within its channel's width (low bits zero in the container),
    and the layer's output codes equal a Fraction reference that quantizes each channel in
    its own format (half to even, saturate), accumulates exactly, adds the bias, rounds half
    up to the output LSB, applies ReLU and saturates."""
    rng = np.random.default_rng(seed)
    g = _dense_graph(rng)
    node = g.nodes[0]
    fmts = _random_channel_formats(rng, 6)
    fin, fout = QFormat(8, 3, True), QFormat(8, 3, False)
    spec = TensorSpec.per_channel(fmts)
    plan = Plan(input=TensorSpec(fin), name="pc", layers=(LayerPlan("fc", weight=spec, output=TensorSpec(fout),
                                                  acc_bits=40, requant=RequantScheme.POW2),))
    model = compile_plan(g, plan)
    codes = model.steps[0].w_codes
    for c, f in enumerate(fmts):
        sh = spec.fmt.frac_bits - f.frac_bits
        own = codes[c] >> sh
        assert np.array_equal(own << sh, codes[c])  # nothing below the channel's LSB
        assert own.min() >= f.min_code and own.max() <= f.max_code
        want = [_rne_sat(Fraction(float(v)), f) for v in node.weight[c]]
        assert own.tolist() == want
    x = rng.normal(0, 2, (20, 7)).astype(np.float32)
    got = run_integer(model, x, keep=True).values["y"].codes
    f_acc = fin.frac_bits + spec.fmt.frac_bits
    for n in range(x.shape[0]):
        xq = [Fraction(_rne_sat(Fraction(float(v)), fin), 2 ** fin.frac_bits) for v in x[n]]
        for c, f in enumerate(fmts):
            wq = [Fraction(_rne_sat(Fraction(float(v)), f), 2 ** f.frac_bits)
                  for v in node.weight[c]]
            acc = sum(a * b for a, b in zip(xq, wq, strict=True))
            acc += Fraction(_rne_sat(Fraction(float(node.bias[c])), QFormat(40, 40 - f_acc)),
                            2 ** f_acc)
            y = math.floor(acc * 2 ** fout.frac_bits + Fraction(1, 2))  # half up
            y = min(max(y, 0, fout.min_code), fout.max_code)  # ReLU, saturate
            assert got[n, c] == y, (n, c)


def test_compile_refuses_misplaced_channel_formats():
    rng = np.random.default_rng(0)
    g = _dense_graph(rng)
    spec = TensorSpec.per_channel(_random_channel_formats(rng, 6))
    base = dict(weight=spec, output=TensorSpec(QFormat(8, 3, False)), acc_bits=40)
    with pytest.raises(PlanError, match="per-channel formats need requant 'pow2'"):
        compile_plan(g, Plan(input=TensorSpec(QFormat(8, 3)), name="p", layers=(
            LayerPlan("fc", **base, requant=RequantScheme.DOUBLE),)))
    with pytest.raises(PlanError, match="'fc' output: per-channel formats are for"):
        compile_plan(g, Plan(input=TensorSpec(QFormat(8, 3)), name="p", layers=(
            LayerPlan("fc", **{**base, "output": TensorSpec.per_channel(["ufixed<8,3>"] * 6)}),)))
    short = TensorSpec.per_channel(["fixed<4,1>"] * 5)
    with pytest.raises(PlanError, match="5 channel weight formats for 6 output channels"):
        compile_plan(g, Plan(input=TensorSpec(QFormat(8, 3)), name="p", layers=(
            LayerPlan("fc", **{**base, "weight": short}),)))


def _random_problem(rng, target: bool) -> ChannelProblem:
    n = int(rng.integers(1, 6))
    widths, noise, cost, items = [], [], [], []
    for i in range(n):
        ws = sorted(int(b) for b in rng.choice(np.arange(2, 9), int(rng.integers(1, 5)),
                                               replace=False))
        size = float(rng.integers(0, 50)) if rng.random() < 0.8 else 0.0
        sq = rng.uniform(4, 6.5) * np.asarray(ws) + rng.uniform(-10, 10) + rng.normal(0, 2, len(ws))
        items.append((f"t{i}", (i,)))
        widths.append(ws)
        noise.append(list(10.0 ** (-sq / 10)))
        cost.append([size * b for b in ws])
    if target:
        best = math.fsum(min(v) for v in noise)
        return ChannelProblem(items, widths, noise, cost,
                              target_db=-10 * math.log10(best) - rng.uniform(-1, 15))
    least = math.fsum(min(c) for c in cost)
    return ChannelProblem(items, widths, noise, cost, max_cost=least + rng.uniform(-5, 200))


@pytest.mark.parametrize("target", [True, False])
def test_milp_equals_brute_force(target):
    """Over random small instances the MILP's objective is the exhaustive optimum, its choice
    meets the target (or budget) exactly, and infeasible instances are reported as None."""
    rng = np.random.default_rng(7 if target else 8)
    for _ in range(40):
        p = _random_problem(rng, target)
        bf = brute_force_channels(p)
        choice = solve_channel_milp(p)
        if bf is None:
            assert choice is None
            continue
        assert choice is not None and p.feasible(choice)
        cost, noise = p.evaluate(choice)
        got = cost if target else noise
        assert got <= bf[0] * (1 + 1e-9) + 1e-12


def _noises_and_acts(g, x):
    from fxp.opt.noise import measure_noise, quantizable_tensors

    acts = [t.name for t in quantizable_tensors(g) if t.kind == "act"]
    table = measure_noise(g, x, widths=range(4, 13), n_measure=200, tensors=acts)
    noises = measure_channel_noise(g, x, widths=range(2, 9), n_measure=64)
    return noises, table


@pytest.fixture(scope="module")
def tiny():
    g = tiny_graph()
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (500, 2, 6, 6)).astype(np.float32)
    y = rng.integers(0, 5, 500)
    noises, table = _noises_and_acts(g, x[split_data(500, 250).indices("calibration")])
    return g, x, y, noises, table


def test_groups_problem_equals_brute_force(tiny):
    """With two channel groups per layer the grouped MILP (14 items) still equals brute force
    restricted to a few layers, and each group's noise is the sum of its channels'."""
    g, x, y, noises, table = tiny
    sub = {"d1": noises["d1"]}
    p = build_channel_problem(sub, {}, target_db=30.0, channel_groups=2)
    assert len(p.items) == 2 and sorted(sum((list(c) for _, c in p.items), [])) == list(range(5))
    nm = noises["d1"].noise()
    assert math.isclose(p.noise[0][0], float(nm[list(p.items[0][1]), 0].sum()), rel_tol=1e-12)
    bf = brute_force_channels(p)
    choice = solve_channel_milp(p)
    assert (bf is None) == (choice is None)
    if bf is not None:
        assert p.evaluate(choice)[0] <= bf[0] * (1 + 1e-9)


def test_optimize_meets_target_and_budget(tiny):
    """A target plan's success is its held-out SQNR at or above the target, and a budget
    plan's weight memory is within the budget; the plan carries exactly the chosen widths."""
    g, x, y, noises, table = tiny
    data = (x, y)
    r = optimize_channel_widths(g, data, 25.0, calib=250, noises=noises, act_table=table)
    assert r.success == (r.measured_sqnr_db >= 25.0) and r.status in ("optimal",
                                                                      "target_not_met")
    assert r.solve_time_s < 10
    for name, bits in r.channel_bits.items():
        assert [f.bits for f in r.plan.layer(name).weight.channel_formats] == bits.tolist()
    assert weight_memory_bits(g, r.plan) == r.weight_memory_bits == sum(
        int(noises[n].sizes[0]) * int(b.sum()) for n, b in r.channel_bits.items())
    budget = 0.8 * r.weight_memory_bits
    rb = optimize_channel_widths(g, data, max_weight_bits=budget, calib=250, noises=noises,
                                 act_table=table)
    assert rb.plan is not None and rb.weight_memory_bits <= budget
    tiny_budget = optimize_channel_widths(g, data, max_weight_bits=10, calib=250, noises=noises,
                                          act_table=table, verify=False)
    assert not tiny_budget.success and "no widths fit 10 weight bits" in tiny_budget.message
    with pytest.raises(PlanError, match="exactly one of"):
        optimize_channel_widths(g, data, 20.0, max_weight_bits=1e4, noises=noises,
                                act_table=table)


def test_first_order_model_checked_per_layer(tiny):
    """alpha(b) makes a layer quantized at one width predict its measured NSR exactly."""
    _, _, _, noises, _ = tiny
    for cn in noises.values():
        for b, (measured, predicted) in cn.check.items():
            j = cn.widths.index(b)
            if predicted > 0:
                assert math.isclose(float(cn.noise()[:, j].sum()), measured, rel_tol=1e-9)


def _parse_array(text: str, name: str) -> list[int]:
    m = re.search(rf"static const \w+ {name}\[\d+\] = \{{(.*?)\}};", text, re.DOTALL)
    return [int(v.rstrip("L")) for v in m.group(1).replace("\n", " ").split(",")]


def test_c_header_writes_each_channel_in_its_width_and_hls4ml_refuses(tiny):
    from fxp.export.c_header import c_header
    from fxp.export.hls4ml import hls4ml_config

    g, x, y, noises, table = tiny
    r = optimize_channel_widths(g, (x, y), 20.0, calib=250, noises=noises, act_table=table,
                                verify=False)
    text = c_header(g, r.plan)
    step = next(s for s in compile_plan(g, r.plan).steps if s.name == "d1")
    spec = r.plan.layer("d1").weight
    codes = np.array(_parse_array(text, "d1_w")).reshape(step.w_codes.shape)
    bits = _parse_array(text, "d1_w_bits")
    shift = _parse_array(text, "d1_w_lshift")
    assert bits == [f.bits for f in spec.channel_formats]
    for c in range(codes.shape[0]):
        assert -(1 << (bits[c] - 1)) <= codes[c].min() and codes[c].max() < 1 << (bits[c] - 1)
        assert np.array_equal(codes[c] << shift[c], step.w_codes[c])
    ctype = "int8_t" if max(bits) <= 8 else "int16_t"
    assert f"static const {ctype} d1_w[" in text and "#define D1_W_PER_CHANNEL 1" in text
    with pytest.raises(PlanError, match="layer 'c1' has per-channel weight widths"):
        hls4ml_config(g, r.plan)


def _npz(tmp_path, n=48):
    rng = np.random.default_rng(0)
    p = tmp_path / "data.npz"
    np.savez(p, x=rng.integers(0, 256, (n, 1, 28, 28)).astype(np.float32),
             y=rng.integers(0, 10, n))
    return f"npz:{p}"


def test_cli_per_channel_weights(tmp_path, capsys):
    """`fxp plan --target-sqnr T --per-channel-weights` writes a per-channel plan that
    `fxp simulate` runs; misuse is one line naming the option."""
    from fxp.cli import main
    from fxp.plan.io import load_plan

    data, out = _npz(tmp_path), tmp_path / "pc.json"
    rc = main(["plan", "mnist_cnn", "--data", data, "--target-sqnr", "20", "--calib", "24",
               "--per-channel-weights", "--channel-groups", "4", "--out", str(out)])
    text = capsys.readouterr().out
    assert "per-channel weight widths for 20 dB" in text and "channels (" in text, text
    assert rc in (0, 1)
    plan = load_plan(out)
    assert all(lp.weight.channel_formats is not None for lp in plan.layers
               if lp.weight is not None and not lp.float_layer)
    assert main(["simulate", "mnist_cnn", "--plan", str(out), "--data", data, "--json"]) == 0
    capsys.readouterr()
    assert main(["plan", "mnist_cnn", "--data", data, "--per-channel-weights",
                 "--max-accuracy-drop", "0.2"]) == 2
    assert "--per-channel-weights needs --target-sqnr" in capsys.readouterr().err
    assert main(["plan", "mnist_cnn", "--data", data, "--target-sqnr", "20",
                 "--channel-groups", "4"]) == 2
    assert "--channel-groups 4 needs --per-channel-weights" in capsys.readouterr().err
