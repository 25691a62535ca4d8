"""Reproduce Lin, Talathi & Annapureddy's SQNR-based bit allocation (seed 003) on mnist_cnn.

Regenerate (from the repository root, after ``make setup``; a few minutes)::

    .venv/bin/python reports/seed003_lin/run.py

For output-SQNR targets of 20, 30 and 40 dB it measures the per-tensor noise on the first
1,000 ``mnist5k`` images, solves the one-hot MILP for the cheapest weight memory, and verifies
each plan with the bit-exact integer engine on the other 4,000 images; the same images are used
for uniform plans of 4..10 bits.  Writes ``README.md``.
"""

from __future__ import annotations

from pathlib import Path

from fxp import workflow as fw
from fxp.report.render import markdown_table

HERE = Path(__file__).resolve().parent


def main() -> None:
    graph = fw.load_model("mnist_cnn")
    data = fw.load_data("mnist5k", graph)
    held = fw.Data(data.x[1000:], data.y[1000:], "mnist5k[1000:]")
    calib = fw.Data(data.x[:1000], data.y[:1000], "mnist5k[:1000]")
    uniform = []
    for b in range(4, 11):
        plan = fw.make_plan(graph, calib, bits=b, calib=1000)
        rep = fw.run_simulation(graph, plan, held, batch_size=500)
        wmem = sum(n.weight.size * b for n in graph.nodes if hasattr(n, "weight")) / 8
        uniform.append({"plan": f"uniform {b} bits", "measured SQNR dB": round(rep.output_sqnr_db, 2),
                        "top-1": f"{rep.fixed_top1:.2%}", "weight bytes": int(wmem)})
    opt = []
    kappas = None
    for target in (20.0, 30.0, 40.0):
        res = fw.optimize_plan(graph, data, target)
        kappas = res.table_rows()
        opt.append({"target dB": target, "widths": ", ".join(f"{k}={v}" for k, v in res.widths.items()),
                    "predicted dB": round(res.predicted_sqnr_db, 2),
                    "measured dB": round(res.measured_sqnr_db, 2),
                    "top-1": f"{res.fixed_top1:.2%}", "weight bytes": res.weight_memory_bits // 8})
    text = f"""# Seed 003 (Lin et al. 2016): SQNR-driven bit allocation on mnist_cnn

Regenerate: `python reports/seed003_lin/run.py` (a few minutes). Equivalent CLI for one
target: `fxp plan mnist_cnn --data mnist5k --target-sqnr 30 --out plan.json`.

Lin et al. model each tensor's quantization noise as `10 log10 gamma_i = kappa b_i + c_i`
(about 6 dB/bit) and the output as `1/gamma_out = sum 1/gamma_i`, and derive per-layer widths
in closed form. fxp measures kappa and c per tensor on calibration data, solves the integer
problem exactly (one-hot MILP with HiGHS), and verifies the plan with the bit-exact integer
engine on held-out images.

## Measured noise slopes (kappa, dB/bit) at the 40 dB plan

{markdown_table(kappas, [(k, k) for k in kappas[0]])}

## Optimized plans (cost: weight memory)

{markdown_table(opt, [(k, k) for k in opt[0]])}

## Uniform plans on the same held-out images

{markdown_table(uniform, [(k, k) for k in uniform[0]])}

Activation widths are free in the weight-memory cost, so the optimizer leaves them wide; use
`--cost bitops` to charge them.
"""
    (HERE / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
