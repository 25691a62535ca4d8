"""Model-size tables of the seed reports (issue 21), checked against independent counts.

* ``reports/_sizes.py``: bit-packed bytes against numpy's ``packbits``; a plan's bytes against
  the graph's tensor sizes and the plan's formats.
* seed 002: a "b-bit" weight under the seed's eq. 1-3 has ``2**b + 1`` levels and needs
  ``b + 1`` bits (counted on the quantizer's actual codes).
* seed 003: the XNOR speed-up formula in its simplified form equals the paper's unsimplified
  ``c N_W N_I / (c N_W N_I / 64 + N_I)`` for any ``N_I``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"


def _load(name: str, path: Path):
    sys.path.insert(0, str(REPORTS))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def sizes():
    return _load("_sizes_under_test", REPORTS / "_sizes.py")


@pytest.mark.parametrize("n, bits", [(1, 1), (7, 1), (9, 3), (100, 2), (33, 5), (10, 9)])
def test_bitpacked_bytes_is_the_length_of_a_packed_bit_stream(sizes, n, bits):
    stream = np.zeros(n * bits, dtype=np.uint8)
    assert sizes.bitpacked_bytes(n, bits) == len(np.packbits(stream))


def test_plan_sizes_count_the_plan_widths(sizes):
    from fxp import workflow as fw

    g = fw.load_model("mnist_cnn")
    calib = fw.load_data("mnist5k", g, limit=50)
    weights = {n.name: n.weight.size for n in g.nodes if getattr(n, "weight", None) is not None}
    biases = {n.name: n.bias.size for n in g.nodes if getattr(n, "weight", None) is not None}
    assert sizes.float32_bytes(g) == 4 * (sum(weights.values()) + sum(biases.values()))
    whole = sizes.plan_sizes(g, fw.make_plan(g, calib, bits=8, granularity="whole", calib=50))
    assert whole["weight_bytes"] == sum(weights.values())  # one byte per 8-bit weight
    assert whole["bias_bytes"] == 4 * sum(biases.values())  # int32 accumulator type
    assert whole["quant_bytes"] == 0 and whole["n_quant_params"] == 0  # shifts only
    assert whole["flash_bytes"] == whole["weight_bytes"] + whole["bias_bytes"]
    dense = sizes.plan_sizes(g, fw.make_plan(g, calib, bits=8, granularity="dense", calib=50))
    # the conv layers stay float32 (4 bytes a weight), the dense layer is 8-bit
    assert dense["weight_bytes"] == 4 * (weights["conv1"] + weights["conv2"]) + weights["fc1"]
    assert dense["weight_bits"] == {"conv1": 32, "conv2": 32, "fc1": 8}
    affine = sizes.plan_sizes(g, fw.make_plan(g, calib, bits=8, scheme="double", calib=50))
    assert affine["n_quant_params"] == sum(biases.values())  # one per output channel
    assert affine["quant_bytes"] == 5 * affine["n_quant_params"]  # int32 mult + int8 exp


def test_inq_b_bit_weights_need_b_plus_one_bits():
    inq = _load("seed002_run_under_test", REPORTS / "seed002_inq" / "run.py")
    from fxp.quant.pow2 import pow2

    for b in range(2, 9):
        # +-0.75 * 2**-j: max|W| = 0.75 gives n1 = 0 and reaches the top level 2**0 (eq. 1's
        # ceiling); j = 0 .. 2**(b-1) - 1 hit every level 2**-j down to 2**n2, the last j -> 0
        mags = 0.75 * np.ldexp(1.0, -np.arange(2 ** (b - 1) + 1))
        w = np.concatenate([mags, -mags])
        q = pow2(w, bits=b)
        assert (q.params["n1"], q.params["n2"]) == (0, 1 - 2 ** (b - 1))
        distinct = len(np.unique(q.codes))
        assert distinct == 2 ** b + 1  # more than b bits hold
        need = int(np.max(np.abs(q.codes))).bit_length() + 1  # two's complement, sign bit
        assert need == b + 1
        assert inq.storage_bits(w, b) == (2 ** b + 1, b + 1)


def test_inq_size_table_counts_b_plus_one_bits():
    inq = _load("seed002_run_under_test2", REPORTS / "seed002_inq" / "run.py")
    row = {"model": "mnist_cnn", "bits": 3, "formats": {"conv1": "fixed<5,2>",
                                                         "conv2": "fixed<5,2>",
                                                         "fc1": "fixed<5,1>"}}
    lines = inq.size_lines([row])
    ours = [ln for ln in lines if ln.startswith("| mnist_cnn |")]
    assert len(ours) == 1
    cells = [c.strip() for c in ours[0].strip("|").split("|")]
    # 34,720 weights: 3 bits -> 13,020 B, 4 bits (b + 1) -> 17,360 B
    assert cells[5] == "13,020 B" and cells[6] == "17,360 B" and cells[3] == "4"


def test_xnor_formula_is_the_papers():
    xnor = _load("seed003_xnor_run_under_test", REPORTS / "seed003_xnor" / "run.py")
    for c in (1, 16, 64, 256):
        for k in (1, 3, 5, 7):
            nw = k * k
            for ni in (1, 49, 784):
                paper = c * nw * ni / (c * nw * ni / 64 + ni)
                assert xnor.formula(c, k) == pytest.approx(paper, rel=1e-12)
    assert xnor.formula(10 ** 6, 1) == pytest.approx(64, rel=1e-3)  # tends to 64
