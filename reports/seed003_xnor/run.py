"""Seed 003 (XNOR-Net speed-up): fxp's bit-packed XNOR-popcount conv against its int8 conv.

Regenerate (from the repository root, after ``make setup``; about a minute)::

    .venv/bin/python reports/seed003_xnor/run.py
    .venv/bin/python reports/seed003_xnor/run.py --quick --out /tmp/xnor   # smoke run

For 3x3 pad-1 conv layers of 16, 64 and 256 channels it times, in one process, fxp's exact
int8 conv (``conv2d_int``: the ordered loop and the proven-exact BLAS path) and the binary conv
(``binary_conv2d_int`` on packed input, with and without the packing and the BN/sign
threshold), checks on the timed data that the popcount result equals the int8 engine on the
same +-1 codes, and writes ``README.md`` and ``results.json`` with the measured speed-ups next
to XNOR-Net's formula ``S = 64 c N_W / (c N_W + 64)`` (seed 003, section III-B.1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(HERE.parent))

import bench_binary as bb  # noqa: E402
from _common import output_dir  # noqa: E402

from fxp.report.render import markdown_table  # noqa: E402

LAYERS = ((16, 28), (64, 28), (256, 14))  # (channels in = out, map size)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="one small layer, one repeat")
    ap.add_argument("--out", default=None, help="output folder (default: this folder)")
    args = ap.parse_args(argv)
    out = output_dir(ap, args, HERE)
    layers = ((8, 8),) if args.quick else LAYERS
    batch = 1 if args.quick else args.batch
    rows, raw = [], []
    for c, hw in layers:
        m = bb.measure(batch, c, c, hw, 3, quick=args.quick)
        if not m["same"]:
            raise SystemExit(f"XNOR-popcount result differs from the int8 engine at c={c}")
        t = m["times"]
        raw.append({**m, "times": {k: float(v) for k, v in t.items()}})
        rows.append({
            "layer": f"{c}->{c}, 3x3, {hw}x{hw}, N={batch}",
            "int8 loop ms": round(t[bb.LOOP] * 1e3, 2), "int8 BLAS ms": round(t[bb.AUTO] * 1e3, 3),
            "binary ms": round(t[bb.BINARY] * 1e3, 3),
            "vs int8 loop": f"{t[bb.LOOP] / t[bb.BINARY]:.0f}x",
            "vs int8 BLAS": f"{t[bb.AUTO] / t[bb.BINARY]:.1f}x",
            "with packing": f"{t[bb.AUTO] / t['binary, pack +-1 input + conv, pad 0']:.1f}x",
            "with threshold": f"{t[bb.AUTO] / t['binary, packed + BN/sign threshold']:.1f}x",
            "formula S": round(m["formula"], 1)})
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numba "
               f"threads {raw[0]['threads']}")
    (out / "results.json").write_text(json.dumps(
        {"machine": machine, "layers": raw},
        indent=1) + "\n")
    text = f"""# Seed 003: XNOR-Net speed-up of fxp's binary conv

Regenerate: `.venv/bin/python reports/seed003_xnor/run.py` (about a minute). Machine: {machine}.
Times are the best of several runs in one process; the ratios, not the milliseconds, are the
result (these machines are shared and noisy).

XNOR-Net (Rastegari et al. 2016, quoted in seed 003 section III-B.1) estimates the speed-up of a
binary conv over a float one as `S = 64 c N_W / (c N_W + 64)`: one 64-bit XNOR+popcount does 64
binary MACs in the time of one MAC, and the `c N_W` real-valued scaling per output is the
overhead. fxp's binary conv packs 64 channels per word, so the data are the same as in the
formula; for each layer the binary result on the timed data was checked to equal the int8
engine on the same +-1 codes (`tests/kernels/test_binary_kernels.py` proves the kernel against an independent oracle).

{markdown_table(rows, [(k, k) for k in rows[0]])}

* `vs int8 loop`: against fxp's ordered int8 loop (one MAC per step, overflow checked), the
  structure the formula assumes. The ratio exceeds the formula because the loop also carries
  the exact accumulator and overflow bookkeeping that a plain MAC does not.
* `vs int8 BLAS`: against the fastest exact int8 path fxp has (a float64 GEMM whose sums are
  proven exact), which uses the vector units fully: the honest speed-up of XNOR-popcount on
  this CPU. `with packing` adds packing a +-1 input (a binary network keeps activations packed,
  so this is the cost of entering a binary region); `with threshold` adds the fused BN+sign.
* With 16 channels a 64-bit word carries only 16 useful bits, so the binary path wastes 3/4 of
  each XNOR and the gain over BLAS is small; from 64 channels on the words are full.

Where we differ from the paper: XNOR-Net reports 58x for 64-bit words against a single-MAC
baseline, the same regime as our `vs int8 loop` column (which goes far beyond it, because our
loop is exact and checked, not a bare MAC). Against a vectorised BLAS baseline the gain stays
below the formula and grows with the channel count (the table), because the CPU's SIMD units
already do 8-16 MACs per cycle per core while the binary kernel also pays for the sliding-window
indexing and the padding correction.
"""
    (out / "README.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
