"""Flash of per-channel weight widths (fxp.report.mcu): each channel at its own width.

Oracle: counts by hand on a 6x7 Dense layer (42 weights, 7 per channel) and a
container-width reference that the per-channel figure must undercut; the table
bytes are checked against the arrays ``fxp export c`` really writes.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.errors import PlanError
from fxp.export.c_header import c_header
from fxp.ir.graph import Graph
from fxp.ir.nodes import Dense
from fxp.plan.plan import LayerPlan, Plan, RequantScheme, TensorSpec
from fxp.report.mcu import CHANNEL_TABLE_BYTES, plan_resources

# channel widths 2, 3, 4, 5, 8, 10 (container: the widest int bits + the finest LSB)
FMTS = ["fixed<2,1>", "fixed<3,1>", "fixed<4,0>", "fixed<5,2>", "fixed<8,0>", "fixed<10,4>"]


def _graph() -> Graph:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (6, 7)).astype(np.float32)
    b = rng.normal(0, 0.1, 6).astype(np.float32)
    node = Dense(name="fc", inputs=("x",), outputs=("y",), weight=w, bias=b)
    return Graph(nodes=(node,), inputs=("x",), input_shapes={"x": (None, 7)}, outputs=("y",))


def _plan(weight: TensorSpec) -> Plan:
    return Plan(input=TensorSpec(QFormat(8, 3, True)), name="pc",
                layers=(LayerPlan("fc", weight=weight, output=TensorSpec(QFormat(8, 3, True)),
                                  acc_bits=40, requant=RequantScheme.POW2),))


def test_per_channel_flash_by_hand():
    """7 codes per channel: 2-, 3-, 4-bit -> ceil(7/2) = 4 bytes each (int4 packing),
    5- and 8-bit -> 7 bytes, 10-bit -> 14 bytes: 12 + 14 + 14 = 40 bytes, plus 3 table
    bytes per channel (18) in quant; bias 6 x int64 (40-bit accumulator) = 48."""
    spec = TensorSpec.per_channel(FMTS)
    assert spec.fmt.bits > 10  # the container (fixed<12,4>) is wider than any channel
    res = plan_resources(_graph(), _plan(spec))
    (row,) = [r for r in res.layers if r.name == "fc"]
    assert (row.weight_bytes, row.quant_bytes, row.bias_bytes) == (40, 18, 48)
    # the container-width figure the per-channel one replaces: 42 codes in int16/int32
    container = plan_resources(_graph(), _plan(TensorSpec(spec.fmt)))
    (crow,) = [r for r in container.layers if r.name == "fc"]
    per = 2 if spec.fmt.bits <= 16 else 4
    assert crow.weight_bytes == 42 * per > row.weight_bytes + row.quant_bytes
    assert res.flash_bytes == 40 + 18 + 48


def test_uniform_channels_match_a_uniform_plan_plus_tables():
    """Six 4-bit channels with one format: the same code bytes as the per-layer 4-bit
    plan (6 x ceil(7/2) = 24 >= ceil(42/2) = 21: each channel starts on a byte)."""
    spec = TensorSpec.per_channel(["fixed<4,1>"] * 6)
    res = plan_resources(_graph(), _plan(spec))
    uni = plan_resources(_graph(), _plan(TensorSpec(QFormat(4, 1, True))))
    (row,), (urow,) = res.layers, uni.layers
    assert (row.weight_bytes, urow.weight_bytes) == (24, 21)
    assert row.quant_bytes - urow.quant_bytes == 6 * CHANNEL_TABLE_BYTES


def test_table_bytes_match_the_c_header():
    """The per-channel arrays the header writes beside the codes are 6 one-byte entries
    each, and there are exactly CHANNEL_TABLE_BYTES of them."""
    text = c_header(_graph(), _plan(TensorSpec.per_channel(FMTS)))
    arrays = re.findall(r"static const (u?int8_t) fc_w_(\w+)\[(\d+)\]", text)
    assert len(arrays) == CHANNEL_TABLE_BYTES
    assert all(n == "6" for _, _, n in arrays)
    bits = re.search(r"fc_w_bits\[6\] = \{\s*([^}]*)\}", text)[1]
    assert [int(v) for v in bits.split(",")] == [QFormat.parse(f).bits for f in FMTS]


def test_fake_quant_refuses_per_channel_plans():
    """fxp train quantizes one format per weight: a per-channel plan is refused, naming
    the layer, instead of being run at the container format."""
    pytest.importorskip("torch")
    from fxp.train.fake_quant import FxpNet

    with pytest.raises(PlanError, match=r"layer 'fc' has 6 per-channel") as e:
        FxpNet(_graph(), _plan(TensorSpec.per_channel(FMTS)))
    assert "\n" not in str(e.value)
