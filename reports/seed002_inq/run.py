"""Seed 002 (Shift Quantization / INQ) reproduction: INQ at 8..3 bits, exported and simulated.

Usage (from the repository root; needs torch)::

    .venv/bin/python reports/seed002_inq/run.py                     # mnist_cnn, bits 8..3
    .venv/bin/python reports/seed002_inq/run.py --model vgg7 --limit 2000
    .venv/bin/python reports/seed002_inq/run.py --seeds 0 1 2 3 4 --bits 3
    .venv/bin/python reports/seed002_inq/run.py --quick             # smoke test, temp dir

For every bit width it runs ``fxp.workflow.train_model("inq", ...)`` (= ``fxp
train inq MODEL --data TRAIN --eval EVAL --bits B``): INQ with the schedule
{50, 75, 87.5, 100}% from the zoo's float model, ``--epochs`` retraining epochs
per stage, weights exactly +-2**n (seed eq. 1-3), activations 8-bit power of
two, then exports ONNX + plan and simulates them with fxp on the evaluation
set (the agreement column: fxp top-1 predictions equal to the torch
fake-quantized model's, expected 1.0).  Results are appended to
``results.json`` next to this script (one row per model, bits, seed; a row
already there is not recomputed) and ``README.md``'s tables are regenerated: the results
and the model sizes next to seed Table 2 (bytes as stored, ``reports/_sizes.py``; a
"b-bit" weight of eq. 1-3 takes b+1 bits, :func:`storage_bits`).
Training files (checkpoints, ONNX, plans) go to ``--work``.

``--quick`` is a smoke test: tiny slices (256 training images, a few steps per
stage, 200 evaluation images) and results, README and work files in a fresh
temporary directory (printed); the committed ``results.json`` and ``README.md``
are not touched.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from fxp import workflow as fw  # noqa: E402

sys.path.insert(0, str(HERE.parent))
from _common import float_accuracy, replace_results_table  # noqa: E402
from _sizes import replace_block  # noqa: E402

#: seed 002 Table 2 (size compression of its VGG-7, 3,603,520 trainable weights), MB
SEED_SIZES = {"float32": 14.4, 5: 2.25, 4: 1.9, 3: 1.4}
SEED_WEIGHTS = 3603520

SEED_TABLE = {"float32": 98.45, 8: 98.77, 7: 98.74, 6: 98.66, 5: 98.70, 4: 98.63, 3: 97.76}


def load_rows(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mnist_cnn")
    ap.add_argument("--train", default="mnist-t10k")
    ap.add_argument("--eval", default="mnist5k")
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 7, 6, 5, 4, 3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=1, help="retraining epochs per INQ stage")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--limit", type=int, default=None, help="training images (default all)")
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--steps-per-epoch", type=int, default=None,
                    help="cap the optimizer steps of each epoch (smoke tests)")
    ap.add_argument("--work", default="/tmp/fxp_seed002_inq")
    ap.add_argument("--results", default=str(HERE / "results.json"))
    ap.add_argument("--out", default=None, help="--quick: output folder (default a new temp dir)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny smoke run into a temporary directory (committed files untouched)")
    args = ap.parse_args(argv)
    readme = HERE / "README.md"
    if args.quick:
        tmp = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fxp_seed002_quick_"))
        tmp.mkdir(parents=True, exist_ok=True)
        args.limit = args.limit or 256
        args.eval_limit = args.eval_limit or 200
        args.steps_per_epoch = args.steps_per_epoch or 4
        args.results, args.work = str(tmp / "results.json"), str(tmp / "work")
        readme = tmp / "README.md"
        readme.write_text("**QUICK SMOKE RUN: tiny slices, numbers meaningless.**\n\n"
                          + (HERE / "README.md").read_text())
        print(f"--quick: writing to {tmp}", flush=True)
    res_path = Path(args.results)
    rows = load_rows(res_path)

    def key(r):
        return (r["model"], r["bits"], r["seed"], r["epochs"], r["limit"], r["lr"],
                r.get("steps_per_epoch"))

    have = {key(r) for r in rows}
    base = float_accuracy(args.model, args.eval, args.eval_limit)
    for bits in args.bits:
        for seed in args.seeds:
            row = {"model": args.model, "bits": bits, "seed": seed, "epochs": args.epochs,
                   "limit": args.limit, "lr": args.lr}
            if args.steps_per_epoch is not None:
                row["steps_per_epoch"] = args.steps_per_epoch
            if key(row) in have:
                continue
            t0 = time.perf_counter()
            out = Path(args.work) / (f"{args.model}-w{bits}-s{seed}-e{args.epochs}-l{args.limit}"
                                     f"-lr{args.lr:g}")
            if args.steps_per_epoch is not None:
                out = out.with_name(out.name + f"-st{args.steps_per_epoch}")
            res = fw.train_model("inq", args.model, args.train, bits=bits, out=out,
                                 epochs=args.epochs, seed=seed, eval_data=args.eval,
                                 limit=args.limit, eval_limit=args.eval_limit, lr=args.lr,
                                 steps_per_epoch=args.steps_per_epoch,
                                 eval_each_epoch=False, log=print)
            sim = res["fxp_simulation"]
            row.update(train=args.train, eval=args.eval, n_eval=res["n_eval"],
                       float_top1=base, inq_top1=res["torch_fake_quant_top1"],
                       fxp_top1=sim["fixed_top1"], agreement=sim["agreement_with_torch"],
                       formats={k: v["format"] for k, v in res["formats"].items()},
                       seconds=round(time.perf_counter() - t0, 1))
            print(json.dumps(row), flush=True)
            rows.append(row)
            res_path.write_text(json.dumps(rows, indent=1) + "\n")
    write_table(rows, readme)
    if args.quick:
        print(f"--quick: wrote {res_path} and {readme}")
    return 0


def write_table(rows: list[dict], readme: Path = HERE / "README.md") -> None:
    """Regenerate the results table between the markers of ``readme``."""
    if not readme.exists():
        return
    lines = ["| model | train imgs | epochs/stage | lr | bits | seeds | float top-1 % | "
             "INQ top-1 % (mean ± std) | diff | fxp = torch | s/run | seed 002 Table 1 (diff) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["model"], r["limit"], r["epochs"], r["lr"], r["bits"]), []).append(r)
    for (model, limit, epochs, lr, bits), rs in sorted(
            groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2], kv[0][3], -kv[0][4])):
        accs = [100 * r["fxp_top1"] for r in rs]
        mean = statistics.mean(accs)
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        fl = 100 * rs[0]["float_top1"]
        agree = all(r["agreement"] == 1.0 for r in rs)
        seed_ref = SEED_TABLE.get(bits)
        lines.append(f"| {model} | {limit or 'all'} | {epochs} | {lr:g} | {bits} | {len(rs)} | "
                     f"{fl:.2f} | "
                     f"{mean:.2f}" + (f" ± {std:.2f}" if len(rs) > 1 else "") +
                     f" | {mean - fl:+.2f} | {'yes' if agree else 'NO'} | "
                     f"{statistics.mean(r['seconds'] for r in rs):.0f} | "
                     f"{seed_ref:.2f} ({seed_ref - SEED_TABLE['float32']:+.2f}) |")
    replace_results_table(readme, lines)
    replace_block(readme, "sizes", size_lines(rows))


def storage_bits(w, bits: int) -> tuple[int, int]:
    """``(levels, bits to store one code)`` of seed eq. 1-3 at ``bits`` on the weights ``w``.

    The levels are ``{0, +-2**n2 .. +-2**n1}`` (:func:`fxp.quant.pow2.pow2`); a code
    needs ``ceil(log2(levels))`` bits.
    """
    import math

    from fxp.quant.pow2 import pow2

    p = pow2(w, bits=bits).params
    levels = 2 * (p["n1"] - p["n2"] + 1) + 1
    return levels, math.ceil(math.log2(levels))


def size_lines(rows: list[dict]) -> list[str]:
    """Seed 002 Table 2 next to fxp's bytes as stored, per (model, bits) of ``rows``."""
    from _sizes import bitpacked_bytes, float32_bytes, layer_params

    from fxp.core.format import QFormat
    from fxp.report.mcu import packed_bytes

    lines = [("| model | b | levels | code bits | weights | b bits, bit-packed (seed's rule) | "
              "code bits, bit-packed | code bits, fxp packed | plan's weight formats, as "
              "exported | + biases (int64) + exponents | float32 | float32 / total, bit-packed | "
              "float32 / total, fxp packed | seed Table 2 |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, mb in SEED_SIZES.items():
        if b == "float32":
            continue
        lines.append(f"| seed's VGG-7 (count only) | {b} | {2 ** b + 1} | {b + 1} | "
                     f"{SEED_WEIGHTS:,} | {SEED_WEIGHTS * b / 8e6:.2f} MB | "
                     f"{SEED_WEIGHTS * (b + 1) / 8e6:.2f} MB | "
                     f"{packed_bytes(SEED_WEIGHTS, b + 1) / 1e6:.2f} MB |  |  | "
                     f"{4 * SEED_WEIGHTS / 1e6:.1f} MB | {32 / (b + 1):.1f}x "
                     f"({32 / b:.1f}x at b bits) | "
                     f"{32 / (8 * packed_bytes(1000, b + 1) / 1000):.1f}x | {mb} MB (float32 "
                     f"{SEED_SIZES['float32']}) |")
    graphs: dict = {}
    done = set()
    for r in sorted(rows, key=lambda r: (r["model"], -r["bits"])):
        if (r["model"], r["bits"]) in done:
            continue
        done.add((r["model"], r["bits"]))
        if r["model"] not in graphs:
            graphs[r["model"]] = fw.load_model(r["model"])
        g = graphs[r["model"]]
        counts = layer_params(g)
        weights = {n.name: n.weight for n in g.nodes if n.name in counts}
        b = r["bits"]
        per = {n: storage_bits(weights[n], b) for n in counts}
        cbits = max(cb for _, cb in per.values())
        n_w = sum(w for w, _ in counts.values())
        n_b = sum(bb for _, bb in counts.values())
        dense_b = sum(bitpacked_bytes(counts[n][0], b) for n in counts)
        dense_c = sum(bitpacked_bytes(counts[n][0], per[n][1]) for n in counts)
        packed_c = sum(packed_bytes(counts[n][0], per[n][1]) for n in counts)
        plan_w = sum(packed_bytes(counts[n][0], QFormat.parse(r["formats"][n]).bits)
                     for n in counts if n in r["formats"])
        extra = 8 * n_b + len(counts)
        fl = float32_bytes(g)
        fmts = sorted({r["formats"][n] for n in counts if n in r["formats"]})
        seed = f"{SEED_SIZES[b]} MB" if b in SEED_SIZES else ""
        lines.append(f"| {r['model']} | {b} | {max(lv for lv, _ in per.values())} | {cbits} | "
                     f"{n_w:,} | {dense_b:,} B | {dense_c:,} B | {packed_c:,} B | "
                     f"{plan_w:,} B ({', '.join(fmts)}) | {extra:,} B | {fl:,} B | "
                     f"{fl / (dense_c + extra):.1f}x | {fl / (packed_c + extra):.1f}x | {seed} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
