"""hls4ml config and C header: the files say exactly what the engine computes."""

from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest

from fxp.cli import main
from fxp.errors import PlanError
from fxp.export.c_header import c_header
from fxp.export.hls4ml import ap_type, hls4ml_config
from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.plan.ptq import ptq_affine, ptq_pow2
from fxp.sim.compile import compile_plan
from fxp.testing.cc import compile_shared, find_c_compiler
from tests.sim.test_integer_engine import tiny_graph


def _plan(seed=3, **kw):
    g = tiny_graph(seed)
    x = np.random.default_rng(seed).normal(size=(16, 2, 6, 6)).astype(np.float32)
    return g, ptq_pow2(g, x, **kw)


@pytest.mark.parametrize(("fmt", "r", "o", "want"), [
    (QFormat(8, 3), RoundingMode.HALF_UP, OverflowMode.SATURATE, "ap_fixed<8,3,AP_RND,AP_SAT>"),
    (QFormat(6, 2, False), RoundingMode.HALF_EVEN, OverflowMode.WRAP,
     "ap_ufixed<6,2,AP_RND_CONV,AP_WRAP>"),
    (QFormat(16, -2), None, None, "ap_fixed<16,-2>"),
])
def test_ap_type_spellings(fmt, r, o, want):
    assert ap_type(fmt, r, o) == want
    assert QFormat.parse(want.split(",AP")[0] + (">" if ",AP" in want else "")) == fmt


def test_hls4ml_config_matches_the_plan():
    """Issue 15: weight/bias types carry RND_CONV,SAT (fxp's weight quantization), the
    accumulator its overflow, the result (or the separate ReLU's) the output modes."""
    from fxp.export.hls4ml_types import hls4ml_slots

    g, plan = _plan(rounding="half_even", acc_bits=24, output_overflow="wrap")
    cfg = hls4ml_config(g, plan, frontend="onnx")
    model = compile_plan(g, plan)
    slots = hls4ml_slots(model)
    entries = list(cfg["LayerName"].values())
    assert len(entries) == len(slots)
    steps = {s.name: s for s in model.steps}
    weighted = 0
    for entry, slot in zip(entries, slots, strict=True):
        p = entry["Precision"]
        if slot.kind != "weighted":
            continue
        weighted += 1
        step, lp = steps[slot.fxp_name], plan.layer(slot.fxp_name)
        w = lp.weight.fmt
        assert p["weight"] == f"fixed<{w.bits},{w.int_bits},RND_CONV,SAT>"
        assert p["accum"] == f"fixed<24,{step.acc_fmt.int_bits},TRN,WRAP>"
        assert p["result"].split(",")[2] == "RND_CONV"
    assert weighted == sum(s.w_codes is not None for s in model.steps)
    assert all(e["Precision"]["result"].endswith(",WRAP>") for e, s in zip(entries, slots)
               if s.kind == "relu")


def test_hls4ml_refuses_affine_plans():
    g = tiny_graph(1)
    x = np.random.default_rng(1).normal(size=(8, 2, 6, 6)).astype(np.float32)
    with pytest.raises(PlanError, match="power-of-two"):
        hls4ml_config(g, ptq_affine(g, x))


@pytest.mark.skipif(find_c_compiler() is None, reason="no C compiler found")
@pytest.mark.parametrize("scheme", ["pow2", "double"])
def test_c_header_compiles_and_holds_the_engine_constants(tmp_path, scheme):
    g = tiny_graph(5)
    x = np.random.default_rng(5).normal(size=(16, 2, 6, 6)).astype(np.float32)
    plan = ptq_pow2(g, x, weight_bits=6) if scheme == "pow2" else ptq_affine(g, x)
    header = tmp_path / "model.h"
    header.write_text(c_header(g, plan, "MODEL_H"))
    model = compile_plan(g, plan)
    steps = [s for s in model.steps if s.w_codes is not None]
    getters = "\n".join(
        f"const void *get_{s.name}_w(void) {{ return {s.name}_w; }}\n"
        f"const void *get_{s.name}_b(void) {{ return {s.name}_b; }}" for s in steps)
    lib = compile_shared(f"#include \"{header}\"\n{getters}\n", tmp_path, name="hdr")
    for s in steps:
        for suffix, want, bits in (("w", s.w_codes, s.plan.weight.fmt.bits),
                                   ("b", s.b_codes, s.plan.acc_bits)):
            fn = getattr(lib, f"get_{s.name}_{suffix}")
            fn.restype = ctypes.c_void_p
            ct = {8: ctypes.c_int8, 16: ctypes.c_int16, 32: ctypes.c_int32}[
                8 if bits <= 8 else 16 if bits <= 16 else 32]
            got = np.ctypeslib.as_array((ct * want.size).from_address(fn()))
            assert np.array_equal(got, want.ravel()), (s.name, suffix)


def test_export_cli(tmp_path, capsys):
    data = tmp_path / "d.npz"  # the CLI reads ONNX models: use the zoo's mnist_cnn
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.integers(0, 256, (16, 1, 28, 28)).astype(np.float32),
             y=rng.integers(0, 10, 16))
    plan = tmp_path / "plan.json"
    assert main(["plan", "mnist_cnn", "--data", f"npz:{data}", "--out", str(plan)]) == 0
    assert main(["export", "hls4ml", "mnist_cnn", "--plan", str(plan), "--out",
                 str(tmp_path / "h.json")]) == 0
    cfg = json.loads((tmp_path / "h.json").read_text())
    assert set(cfg["LayerName"]) >= {"conv1", "conv2", "fc1"}
    assert main(["export", "c", "mnist_cnn", "--plan", str(plan), "--out",
                 str(tmp_path / "m.h")]) == 0
    assert "static const int8_t conv2_w[18432]" in (tmp_path / "m.h").read_text()
    assert main(["plan", "mnist_cnn", "--data", "digits", "--limit", "8"]) == 2  # 8x8 digits
    assert "expects (1, 28, 28)" in capsys.readouterr().err


def test_exports_refuse_binary_layers():
    from fxp.errors import BinaryInputWarning, UnsupportedOpError

    g = tiny_graph(2)
    x = np.random.default_rng(2).normal(size=(16, 2, 6, 6)).astype(np.float32)
    with pytest.warns(BinaryInputWarning, match="'c2'"):  # c2 reads a ReLU output
        plan = ptq_pow2(g, x, binary_layers=("c2",))
    with pytest.raises(UnsupportedOpError, match="layer 'c2' is binary"):
        c_header(g, plan)
    with pytest.raises(UnsupportedOpError, match="layer 'c2' is binary"):
        hls4ml_config(g, plan)


def test_c_header_gives_the_product_shift_of_a_fine_or_coarse_accumulator():
    """A layer whose accumulator is finer than its products (a bias coded below the output
    LSB, ``acc_frac_bits`` > F_x + F_w) gets ``NAME_PRODUCT_LSHIFT``, a coarser one
    ``NAME_PRODUCT_RSHIFT``, each equal to the engine's product shift; a plan at the
    products' LSB gets neither."""
    import re

    g = tiny_graph(5)
    x = np.random.default_rng(5).normal(size=(16, 2, 6, 6)).astype(np.float32)
    plain = ptq_pow2(g, x, weight_bits=4, act_bits=4)
    assert "PRODUCT_" not in c_header(g, plain)
    steps = [s for s in compile_plan(g, plain).steps if s.w_codes is not None]
    fine = plain.replace_layer(steps[0].name, acc_frac_bits=steps[0].acc_fmt.frac_bits + 3)
    fine = fine.replace_layer(steps[1].name, acc_frac_bits=steps[1].acc_fmt.frac_bits - 2)
    text = c_header(g, fine)
    shifts = {s.name: s.product_shift for s in compile_plan(g, fine).steps
              if s.w_codes is not None}
    assert shifts[steps[0].name] == -3 and shifts[steps[1].name] == 2
    for name, k in shifts.items():
        n = name.upper()
        acc = re.search(rf"#define {n}_ACC_FRAC_BITS (-?\d+)", text)
        assert acc is not None
        lsh = re.search(rf"#define {n}_PRODUCT_LSHIFT (\d+)", text)
        rsh = re.search(rf"#define {n}_PRODUCT_RSHIFT (\d+)", text)
        assert (int(lsh.group(1)) if lsh else 0) == max(0, -k)
        assert (int(rsh.group(1)) if rsh else 0) == max(0, k)
