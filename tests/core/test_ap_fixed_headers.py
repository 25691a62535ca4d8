"""fxp's ``cast`` and ``quantize`` against the real Xilinx ``ap_fixed`` headers.

The headers are the copy shipped in the hls4ml package
(``hls4ml/templates/vivado/ap_types``), compiled at test time with g++.  For
every signed/unsigned target width W in 1..8, integer bits I in
``{-1, 1, W+1}`` and every AP_ quantization x overflow mode (7 x 4), every code
of a ``ap_fixed<12,6>`` source (4,096 values, so rounding and overflow both
occur) is converted by ap_fixed and by fxp; the raw target codes must agree
exactly.  ``quantize`` is checked on the same values as floats.  About 5.5
million comparisons; the issue 15 reproducer (signed W=1 with ``AP_SAT_SYM``:
ap_fixed gives -1) is one of them.  Skips without g++ or hls4ml.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.export.hls4ml_types import O_MODES, Q_MODES
from fxp.ops.fixed import cast, quantize

SRC = QFormat(12, 6, True)
WIDTHS = range(1, 9)
QS = list(Q_MODES.items())
OS = list(O_MODES.items())


def _int_bits(w: int) -> tuple[int, ...]:
    """All fraction (I=-1), one integer bit (I=1), all integer plus one (I=W+1)."""
    return (-1, 1, w + 1)


def _headers() -> Path | None:
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "templates/vivado/ap_types"
    return path if (path / "ap_fixed.h").exists() else None


def _program(signed: bool) -> str:
    t = "ap_fixed" if signed else "ap_ufixed"
    lines = ['#include <cstdio>', '#include <cstdint>', '#include "ap_fixed.h"',
             "template <int W, int I, ap_q_mode Q, ap_o_mode O> void run() {",
             "  static int16_t out[1 << 12];",
             "  for (int c = 0; c < (1 << 12); ++c) {",
             "    ap_fixed<12, 6> s; s.range(11, 0) = c;",
             f"    {t}<W, I, Q, O> y = s;",
             "    out[c] = (int16_t)(y.to_double() * (double)(1LL << (W - I + 8)) / 256.0);",
             "  }",
             "  fwrite(out, sizeof out, 1, stdout);",
             "}",
             "template <int W, int I> void modes() {"]
    lines += [f"  run<W, I, AP_{q}, AP_{o}>();" for _, q in QS for _, o in OS]
    lines += ["}", "int main() {"]
    lines += [f"  modes<{w}, {i}>();" for w in WIDTHS for i in _int_bits(w)]
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def ap_outputs(tmp_path_factory):
    inc = _headers()
    gxx = shutil.which("g++")
    if inc is None or gxx is None:
        pytest.skip("needs g++ and the hls4ml package (its ap_fixed headers)")
    out = {}
    root = tmp_path_factory.mktemp("apfixed")
    procs = {}
    for signed in (True, False):
        src = root / f"ap_{int(signed)}.cpp"
        src.write_text(_program(signed))
        exe = root / f"ap_{int(signed)}"
        procs[signed] = (subprocess.Popen([gxx, "-O0", "-std=c++14", "-w", f"-I{inc}", "-o",
                                           str(exe), str(src)], stderr=subprocess.PIPE), exe)
    for signed, (proc, exe) in procs.items():
        _, err = proc.communicate()
        assert proc.returncode == 0, err.decode()[:2000]
        blob = subprocess.run([str(exe)], capture_output=True, check=True).stdout
        out[signed] = np.frombuffer(blob, np.int16).reshape(-1, 1 << 12).astype(np.int64)
    return out


def _source_codes() -> np.ndarray:
    """Code ``c`` as ``range(11, 0) = c``: the 12-bit pattern, read two's complement."""
    c = np.arange(1 << 12, dtype=np.int64)
    return np.where(c >= 1 << 11, c - (1 << 12), c)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_cast_and_quantize_equal_ap_fixed(ap_outputs, signed):
    got = ap_outputs[signed]
    codes = _source_codes()
    reals = np.ldexp(codes.astype(np.float64), -SRC.frac_bits)
    row = checked = 0
    bad = []
    for w in WIDTHS:
        for i in _int_bits(w):
            dst = QFormat(w, i, signed)
            for rmode, _ in QS:
                for omode, _ in OS:
                    want = got[row]
                    row += 1
                    mine, _ = cast(codes, SRC, dst, rmode, omode)
                    fromf, _ = quantize(reals, dst, rmode, omode)
                    checked += 2 * codes.size
                    for what, val in (("cast", mine), ("quantize", fromf)):
                        n = int(np.count_nonzero(val != want))
                        if n:
                            k = int(np.flatnonzero(val != want)[0])
                            bad.append(f"{what} {dst} {rmode.value}/{omode.value}: {n} differ, "
                                       f"e.g. {reals[k]} -> ap {want[k]}, fxp {val[k]}")
    assert row == len(got)
    assert checked == 2 * 8 * 3 * 28 * 4096 * 2 // 2
    assert not bad, f"{len(bad)} mismatching cases: {bad[:5]}"
