"""Golden vectors: hex encoding round-trips bit for bit; files match the engine."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fxp.export.golden import export_golden, read_hex, to_hex_lines
from fxp.plan.ptq import ptq_pow2
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer
from tests.sim.test_integer_engine import tiny_graph
from tests.strategies import code_lists, formats


def test_hex_examples():
    assert to_hex_lines(np.array([-3, 0, 127, -128]), 8) == ["fd", "00", "7f", "80"]
    assert to_hex_lines(np.array([5]), 5) == ["05"]


@given(st.data())
def test_hex_round_trip(tmp_path_factory, data):
    fmt = data.draw(formats())
    codes = np.array(data.draw(code_lists(fmt)), np.int64)
    p = tmp_path_factory.mktemp("hex") / "t.hex"
    p.write_text("\n".join(to_hex_lines(codes, fmt.bits)) + "\n")
    assert read_hex(p, fmt.bits, fmt.signed).tolist() == codes.tolist()


def test_export_matches_engine(tmp_path):
    g = tiny_graph(11)
    x = np.random.default_rng(12).normal(size=(3, 2, 6, 6)).astype(np.float32)
    plan = ptq_pow2(g, x, weight_bits=6, act_bits=7)
    out = export_golden(g, plan, x, tmp_path / "gold")
    manifest = json.loads((out / "manifest.json").read_text())
    npz = np.load(out / "golden.npz")
    run = run_integer(compile_plan(g, plan), x, keep=True)
    assert {t["tensor"] for t in manifest["tensors"]} == {"x", "h1", "h2", "h3", "h4", "y"}
    for t in manifest["tensors"]:
        codes = read_hex(out / t["hex"], t["bits"], t["signed"], t["shape"])
        assert np.array_equal(codes, npz[t["tensor"]])
        assert np.array_equal(codes, run.values[t["tensor"]].codes)
