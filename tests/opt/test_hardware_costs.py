"""Hardware cost models (fxp.opt.hardware, fxp.opt.hardware_model) against hand-computed values
and against the MCU figures fxp.report.mcu measures on the plans themselves."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from fxp.errors import PlanError
from fxp.opt.hardware import (
    DEFAULT_COST_FILE,
    bram18_blocks,
    dsps_per_product,
    fpga_layer,
    load_costs,
    lut_multiplier,
    lutram_luts,
    mcu_cycles,
    signed_pieces,
)

DSP48E2, DSP58 = (27, 18), (27, 24)


# ------------------------------------------------------------------ FPGA rules, by hand
@pytest.mark.parametrize(("a", "b", "ports", "want"), [
    # DSP48E2 27x18: both orientations, the port boundaries
    (27, 18, DSP48E2, 1), (18, 27, DSP48E2, 1), (28, 18, DSP48E2, 2), (27, 19, DSP48E2, 2),
    (8, 8, DSP48E2, 1), (35, 18, DSP48E2, 2),  # 35 on the 18-port: 17 unsigned + 18 signed
    (18, 35, DSP48E2, 2), (36, 18, DSP48E2, 2),  # 36 on the 27-port: 26 unsigned + 10 signed
    (27, 24, DSP48E2, 2), (32, 32, DSP48E2, 4), (44, 18, DSP48E2, 2), (54, 18, DSP48E2, 3),
    # DSP58 27x24
    (27, 24, DSP58, 1), (24, 27, DSP58, 1), (27, 25, DSP58, 2), (28, 24, DSP58, 2),
    (28, 25, DSP58, 2),  # 28 on the 24-port (2 pieces) x 25 on the 27-port (1)
    (32, 32, DSP58, 4), (53, 24, DSP58, 2), (54, 24, DSP58, 3),
])
def test_dsps_per_product_at_port_boundaries(a, b, ports, want):
    """A signed b-bit operand on a signed P-bit port: 1 piece if b <= P, else a signed high
    piece plus unsigned (P-1)-bit pieces; the cheaper orientation is taken."""
    assert dsps_per_product(a, b, ports) == want


def test_signed_pieces_cover_exactly_the_operand():
    """pieces(b, P) is the least k with P + (k-1)(P-1) >= b (a signed high piece of P bits)."""
    for port in (18, 24, 27):
        for b in range(2, 120):
            k = signed_pieces(b, port)
            assert port + (k - 1) * (port - 1) >= b
            assert k == 1 or port + (k - 2) * (port - 1) < b


@pytest.mark.parametrize(("depth", "width", "want"), [
    (1024, 18, 1), (1025, 18, 2), (2048, 9, 1), (2049, 9, 2), (4096, 4, 1),
    (4096, 5, 2),  # 5 bits -> the 9-bit port, 2048 deep
    (512, 36, 1), (513, 36, 2), (1024, 19, 2),  # 19 bits -> 36-bit port, 512 deep
    (512, 37, 2),  # one 36-bit column + a 1-bit column
    (600, 72, 4), (16384, 1, 1), (16385, 1, 2), (8192, 2, 1), (1, 8, 1), (0, 8, 0),
    (64, 80, 3),  # 36 + 36 + 8 bits: three blocks
])
def test_bram18_packing(depth, width, want):
    assert bram18_blocks(depth, width) == want


def test_lutram_and_lut_multiplier():
    assert (lutram_luts(64, 10), lutram_luts(65, 10), lutram_luts(1, 1)) == (10, 20, 1)
    f = load_costs().fpga
    assert lut_multiplier(8, 8, f) == 64 and lut_multiplier(3, 5, f) == 15
    g = _edited({"fpga": {"lut_per_product_bit": 0.5, "lut_offset": 3.0}}).fpga
    assert lut_multiplier(8, 8, g) == 35 and lut_multiplier(3, 5, g) == 11  # ceil(10.5)


def test_fpga_layer_by_hand():
    f = load_costs().fpga  # threshold: b_w + b_a >= 18 and min >= 5; DSP48E2
    # 100 weights, reuse 1: 100 multipliers, weights in the logic
    assert fpga_layer(100, 8, 8, f) == {"multipliers": 100, "lut": 6400, "dsp": 0, "bram": 0,
                                        "mult_lut": 6400, "storage_lut": 0}
    assert fpga_layer(100, 9, 9, f)["dsp"] == 100
    assert fpga_layer(100, 4, 16, f)["dsp"] == 0  # a 4-bit operand stays in LUTs
    # an unsigned 18-bit activation needs 19 signed bits: two slices per 27x18 product
    assert fpga_layer(10, 27, 18, f)["dsp"] == 10
    assert fpga_layer(10, 27, 18, f, a_signed=False)["dsp"] == 20
    # reuse 10: 10 multipliers, a 10-deep x 80-bit LUTRAM (80 LUTs)
    d = fpga_layer(100, 8, 8, f, reuse=10)
    assert (d["multipliers"], d["storage_lut"], d["lut"], d["bram"]) == (10, 80, 720, 0)
    # reuse 100: one multiplier, 100 words of 8 bits in BRAM18 (9-bit port, 2048 deep)
    d = fpga_layer(100, 8, 8, f, reuse=100)
    assert (d["multipliers"], d["bram"], d["storage_lut"]) == (1, 1, 0)
    assert fpga_layer(100, 8, 8, f, reuse=3)["multipliers"] == 34


def test_mcu_cycles_by_hand():
    m = load_costs().mcu
    assert mcu_cycles("conv", 1000, 10, 8, 8, m) == 1000 * 1.0 + 10 * 12.0 + 1000.0
    assert mcu_cycles("dense", 200, 5, 4, 8, m) == pytest.approx(200 * 1.1 + 5 * 12.0 + 1000.0)
    assert mcu_cycles("conv", 1000, 10, 4, 16, m) is None  # no int4 x int16 kernel


# ------------------------------------------------------------------ the cost file
def _edited(changes: dict, tmp=None):
    d = json.loads(DEFAULT_COST_FILE.read_text())
    for sec, kv in changes.items():
        if isinstance(kv, dict):
            d[sec].update(kv)
        else:
            d[sec] = kv
    import tempfile
    from pathlib import Path

    p = Path(tempfile.mkdtemp()) / "costs.json"
    p.write_text(json.dumps(d))
    return load_costs(p)


def test_default_cost_file_loads_and_a_copy_is_equal(tmp_path):
    a = load_costs()
    shutil.copy(DEFAULT_COST_FILE, tmp_path / "c.json")
    b = load_costs(tmp_path / "c.json")
    assert a.fpga == b.fpga and a.mcu == b.mcu
    assert a.fpga.ports == (27, 18) and a.mcu.weight_bits == (4, 8)
    assert a.mcu.cycles_per_mac["conv"][(8, 16)] == 1.4


@pytest.mark.parametrize(("changes", "match"), [
    ({"fpga": {"reuse_factor": 0}}, r"fpga\.reuse_factor must be an integer >= 1, got 0"),
    ({"fpga": {"reuse_factor": True}}, r"fpga\.reuse_factor .* got True"),
    ({"fpga": {"dsp": "DSP99"}}, r"fpga\.dsp must name one of .*got 'DSP99'"),
    ({"fpga": {"weight_storage": "flash"}}, r"fpga\.weight_storage .*got 'flash'"),
    ({"fpga": {"dsp_ports": {"DSP48E2": [27]}}}, r"fpga\.dsp_ports\.DSP48E2 must be"),
    ({"fpga": {"lut_per_product_bit": float("nan")}}, r"fpga\.lut_per_product_bit"),
    ({"fpga": {"bogus": 1}}, r"fpga\.bogus is not a known key"),
    ({"fpga": {"area_weights": {"lut": 1}}}, r"fpga\.area_weights\.dsp is missing"),
    ({"fpga": {"reuse_factor_layers": {"conv1": -2}}},
     r"fpga\.reuse_factor_layers\.conv1 .*got -2"),
    ({"mcu": {"weight_bits": [4, 4]}}, r"mcu\.weight_bits must not repeat"),
    ({"mcu": {"act_bits": [1]}}, r"mcu\.act_bits\[0\] must be an integer in 2\.\.32, got 1"),
    ({"mcu": {"cycles_per_mac": {"conv": {"8*8": 1}, "depthwise": {}, "dense": {}}}},
     r"mcu\.cycles_per_mac\.conv\.8\*8 must be a '<weight bits>x<act bits>'"),
    ({"mcu": {"cycles_per_mac": {"conv": {"8x8": -1}, "depthwise": {}, "dense": {}}}},
     r"mcu\.cycles_per_mac\.conv\.8x8 must be a finite number >= 0, got -1"),
    ({"mcu": {"cycles_per_output": {"conv": 1, "dense": 1}}},
     r"mcu\.cycles_per_output\.depthwise is missing"),
    ({"schema": "fxp.hw_costs/9"}, r"schema must be 'fxp.hw_costs/1'"),
    ({"fpga": [1, 2]}, r"fpga must be a JSON object"),
])
def test_cost_file_is_checked_strictly(changes, match):
    with pytest.raises(PlanError, match=r"cost file '.*costs\.json': " + match):
        _edited(changes)


def test_cost_file_unreadable_or_not_json(tmp_path):
    with pytest.raises(PlanError, match="cannot read cost file .*nope.json"):
        load_costs(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PlanError, match="bad.json' is not valid JSON"):
        load_costs(tmp_path / "bad.json")


# ------------------------------------------------------------------ on a network
@pytest.fixture(scope="module")
def mnist():
    """mnist_cnn, 16 random calibration images, a noise table at a few widths."""
    from fxp import workflow as fw
    from fxp.opt.hardware_model import HardwareModel
    from fxp.opt.noise import measure_noise

    g = fw.load_model("mnist_cnn")
    x = np.random.default_rng(0).integers(0, 256, (16, 1, 28, 28)).astype(np.float32)
    nt = measure_noise(g, x, widths=(4, 5, 8, 9, 16), n_measure=16, weight_method="minmax")
    return g, x, nt, HardwareModel(g, nt, x, load_costs())


def _random_widths(nt, rng, choices=None):
    return {t.name: int(rng.choice(choices or nt.widths)) for t in nt.tensors}


def test_uniform_fpga_totals_by_hand(mnist):
    """mnist_cnn: 288 + 18,432 + 16,000 = 34,720 multipliers at reuse 1."""
    _, _, nt, hw = mnist
    widths = [list(nt.widths)] * len(nt.names)
    w8 = [8] * len(nt.names)
    assert hw.terms("lut", widths).value(w8) == 34_720 * 64  # 8x8 products in LUTs
    assert hw.terms("dsp", widths).value(w8) == 0
    # 9-bit weights x 9-bit activations (ReLU outputs unsigned: 10 signed bits): 1 slice each
    assert hw.terms("dsp", widths).value([9] * len(nt.names)) == 34_720
    # 16 x 16 with an unsigned 16-bit activation (17 bits): 1 slice (17 <= 18, 16 <= 27)
    assert hw.terms("dsp", widths).value([16] * len(nt.names)) == 34_720


def test_cycles_terms_match_macs_by_hand(mnist):
    g, _, nt, hw = mnist
    m = load_costs().mcu
    # conv1: 3x3x1 kernel, 32 channels, 26x26 outputs; conv2: 3x3x32, 64, 11x11; fc1 1600x10
    macs = {"conv1": 9 * 32 * 26 * 26, "conv2": 9 * 32 * 64 * 11 * 11, "fc1": 1600 * 10}
    outs = {"conv1": 32 * 26 * 26, "conv2": 64 * 11 * 11, "fc1": 10}
    kinds = {"conv1": "conv", "conv2": "conv", "fc1": "dense"}
    want = sum(macs[k] * m.cycles_per_mac[kinds[k]][(8, 8)] + outs[k] * 12.0 + 1000.0
               for k in macs)
    widths = [[4, 8] if t.kind == "weight" else [8, 16] for t in nt.tensors]
    assert hw.terms("cycles", widths).value([8] * len(nt.names)) == pytest.approx(want)
    forbid = hw.forbid_unsupported(widths)
    assert len(forbid) == 3 and all(f[2:] == (4, 16) for f in forbid)


def test_flash_model_equals_plan_resources(mnist):
    """Packed weights + biases in the proven accumulator's type = what plan_resources counts,
    on random mixed plans (16-bit inputs give accumulators above 32 bits: int64 biases)."""
    from fxp.opt.model import plan_for_widths
    from fxp.report.mcu import plan_resources

    g, x, nt, hw = mnist
    rng = np.random.default_rng(1)
    widths = [list(nt.widths)] * len(nt.names)
    terms = hw.terms("flash", widths)
    seen_int64 = False
    for k in range(10):
        w = _random_widths(nt, rng) if k else {t.name: 16 for t in nt.tensors}
        plan = plan_for_widths(g, x, nt, w)
        seen_int64 |= any(lp.acc_bits > 32 for lp in plan.layers if not lp.float_layer)
        assert terms.value([w[n] for n in nt.names]) == plan_resources(g, plan).flash_bytes
    assert seen_int64


def test_ram_budget_rows_and_exact_head_equal_plan_resources(mnist):
    """Each live-set row is one schedule step's sum; the largest row is max_live_bytes and the
    exact value the greedy head, both as plan_resources finds them on the plan."""
    from fxp.opt.model import plan_for_widths
    from fxp.report.arena import max_live_bytes
    from fxp.report.mcu import plan_resources

    g, x, nt, hw = mnist
    widths = [list(nt.widths)] * len(nt.names)
    bud = hw.ram_budget(10_000, widths)
    rng = np.random.default_rng(2)
    for _ in range(10):
        w = _random_widths(nt, rng)
        res = plan_resources(g, plan_for_widths(g, x, nt, w))
        v = [w[n] for n in nt.names]
        assert bud.linear_value(v) == max_live_bytes(res.arena.buffers)
        assert bud.value(v) == res.head_bytes


def test_hardware_cost_names_agree():
    from fxp.cli_args import PLAN_COSTS
    from fxp.opt.hardware_model import HW_COSTS
    from fxp.opt.solve import COSTS
    from fxp.opt.solve import HW_COSTS as SOLVE_HW

    assert set(HW_COSTS) == set(SOLVE_HW)
    assert set(PLAN_COSTS) == set(COSTS) | set(HW_COSTS)


def test_report_uses_the_plans_own_mcu_figures(mnist):
    from fxp.opt.model import plan_for_widths
    from fxp.report.mcu import plan_resources

    g, x, nt, hw = mnist
    w = {t.name: 8 for t in nt.tensors}
    plan = plan_for_widths(g, x, nt, w)
    rep = hw.report(w, plan)
    res = plan_resources(g, plan)
    assert rep["mcu"]["flash_bytes"] == res.flash_bytes == 35_144
    assert rep["mcu"]["ram_bytes"] == res.head_bytes
    assert rep["fpga"]["lut"] == 34_720 * 64 and rep["fpga"]["dsp"] == 0
    assert math.isfinite(rep["mcu"]["cycles"])
    json.dumps(rep)


def test_layers_behind_a_residual_add_are_reported_not_guessed():
    """resnet_small: layers reading an Add output have no input-width variable; a hardware cost
    or budget is refused (one line), the report leaves their FPGA figures out."""
    from fxp import workflow as fw
    from fxp.opt.hardware_model import HardwareModel
    from fxp.opt.model import plan_for_widths
    from fxp.opt.noise import measure_noise

    g = fw.load_model("resnet_small")
    shape = g.input_shapes[g.inputs[0]]
    x = np.random.default_rng(0).uniform(0, 1, (6, *shape[1:])).astype(np.float32)
    nt = measure_noise(g, x, widths=(8, 16), n_measure=6, weight_method="minmax")
    hw = HardwareModel(g, nt, x, load_costs())
    assert hw.unmodelled and hw.layers
    widths = [list(nt.widths)] * len(nt.names)
    with pytest.raises(PlanError, match=r"the hardware figure 'dsp' needs each layer's input "
                                        r"width, but the input of layer '.*' \(and \d+ more\)"):
        hw.terms("dsp", widths)
    w = {t.name: 8 for t in nt.tensors}
    rep = hw.report(w, plan_for_widths(g, x, nt, w))
    assert rep["fpga"]["lut"] is None and rep["unmodelled_layers"] == hw.unmodelled
    assert rep["mcu"]["flash_bytes"] > 0
