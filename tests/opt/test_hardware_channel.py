"""FPGA cost of per-channel weight widths (fxp.opt.hardware.fpga_layer_channels and
HardwareModel.report): each channel group at its own width, never the container's.

Oracles: hand counts with the shipped coefficients (LUT multiplier = b_w * b_a LUT6;
DSP when b_w + b_a >= 18 and min >= 5; DSP48E2 27x18; LUTRAM up to 64 deep), and
:func:`fxp.opt.hardware.fpga_layer` for a single width group.
"""

from __future__ import annotations

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.errors import PlanError
from fxp.opt.hardware import fpga_layer, fpga_layer_channels, load_costs
from fxp.plan.plan import TensorSpec
from tests.opt.test_end_to_end import tiny_graph

F = load_costs().fpga


def test_channel_groups_by_hand():
    # 60 weights at 4 bits + 40 at 8 bits, 8-bit activations, reuse 1 (weights in logic):
    # 60 * 4*8 + 40 * 8*8 = 4,480 LUTs (the 8-bit container would cost 100 * 64 = 6,400)
    d = fpga_layer_channels({4: 60, 8: 40}, 8, F)
    assert d == {"multipliers": 100, "lut": 4480, "dsp": 0, "bram": 0, "mult_lut": 4480,
                 "storage_lut": 0}
    assert fpga_layer(100, 8, 8, F)["lut"] == 6400
    # reuse 10: 6 four-bit + 4 eight-bit multipliers (6*32 + 4*64 = 448 LUTs); one 10-deep
    # memory of 6*4 + 4*8 = 56-bit words in LUTRAM: 56 LUTs
    d = fpga_layer_channels({4: 60, 8: 40}, 8, F, reuse=10)
    assert (d["multipliers"], d["mult_lut"], d["storage_lut"], d["lut"], d["bram"]) == \
        (10, 448, 56, 504, 0)
    # reuse 100: one multiplier per group, 100 words of 4 + 8 = 12 bits: one BRAM18 (1Kx18)
    d = fpga_layer_channels({4: 60, 8: 40}, 8, F, reuse=100)
    assert (d["multipliers"], d["bram"], d["storage_lut"]) == (2, 1, 0)
    # 4x16 stays in LUTs (4 < 5), 12x16 goes to one DSP48E2 slice each: 10 DSPs, 640 LUTs;
    # the 12-bit container would put all 20 products in slices
    d = fpga_layer_channels({4: 10, 12: 10}, 16, F)
    assert (d["dsp"], d["mult_lut"]) == (10, 640)
    assert fpga_layer(20, 12, 16, F)["dsp"] == 20


@pytest.mark.parametrize(("n", "bits", "a", "reuse"),
                         [(100, 8, 8, 1), (100, 8, 8, 10), (37, 12, 16, 3), (500, 6, 8, 100),
                          (64, 16, 16, 7)])
def test_one_group_is_fpga_layer(n, bits, a, reuse):
    assert fpga_layer_channels({bits: n}, a, F, reuse=reuse) == \
        fpga_layer(n, bits, a, F, reuse=reuse)


def test_no_group_is_refused():
    with pytest.raises(PlanError, match="at least one width group"):
        fpga_layer_channels({}, 8, F)


def test_report_costs_a_per_channel_layer_at_its_channels_widths():
    """tiny_graph's c1 (6 channels x 18 weights) with channels 0-2 at 4 bits, 3-5 at 8:
    FPGA LUTs 54*4*8 + 54*8*8 = 5,184 instead of 108 * 64 = 6,912; flash weight bytes
    3 * ceil(18/2) + 3 * 18 = 81 plus 6 * 3 table bytes; other layers unchanged."""
    from fxp.opt.hardware_model import HardwareModel
    from fxp.opt.model import plan_for_widths
    from fxp.opt.noise import measure_noise

    g = tiny_graph()
    x = np.random.default_rng(0).normal(0, 1, (16, 2, 6, 6)).astype(np.float32)
    nt = measure_noise(g, x, widths=(4, 8), n_measure=16, weight_method="minmax")
    hw = HardwareModel(g, nt, x, load_costs())
    w = {t.name: 8 for t in nt.tensors}
    uni = plan_for_widths(g, x, nt, w)
    c = uni.layer("c1").weight.fmt
    fmts = [QFormat(4, c.int_bits, True)] * 3 + [QFormat(8, c.int_bits, True)] * 3
    plan = uni.replace_layer("c1", weight=TensorSpec.per_channel(fmts))
    rep, ref = hw.report(w, plan), hw.report(w, uni)
    rows = {r["layer"]: r for r in rep["layers"]}
    refs = {r["layer"]: r for r in ref["layers"]}
    assert (rows["c1"]["lut"], refs["c1"]["lut"]) == (5184, 6912)
    assert rows["c1"]["channel_w_bits"] == {4: 3, 8: 3} and rows["c1"]["w_bits"] == 8
    assert refs["c1"]["channel_w_bits"] is None
    for name in ("c2", "d1"):
        assert rows[name] == refs[name]
    assert rep["fpga"]["lut"] == ref["fpga"]["lut"] - 6912 + 5184
    # flash: the plan's own bytes (c1 uniform 8-bit: 108 bytes, no tables)
    assert rep["mcu"]["flash_bytes"] == ref["mcu"]["flash_bytes"] - 108 + 81 + 18
