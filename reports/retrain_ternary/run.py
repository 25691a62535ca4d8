"""Seeds 003 / 004 reproduction: ternary, binary and clustered retraining, exported and simulated.

Usage (from the repository root; needs torch)::

    .venv/bin/python reports/retrain_ternary/run.py                  # the default rows below
    .venv/bin/python reports/retrain_ternary/run.py --runs twn:2 cluster-hc:ward:3 --epochs 5

Each run is ``fxp.workflow.train_model(METHOD, ...)`` (= ``fxp train METHOD MODEL --data
TRAIN --eval EVAL --bits B [--cluster ALGO]``) from the zoo's float model: TWN, Hwang &
Sung (``bits`` -> ``2**bits - 1`` levels) and deterministic BinaryConnect
(:mod:`fxp.train.ternary`), clustered fine-tuning with k-means or hierarchical codebooks
(:mod:`fxp.train.cluster`); activations 8-bit power of two, per-layer scales / codebook
entries in 8 bits.  The exported ONNX + plan are simulated by fxp on the evaluation set
("agreement": fxp top-1 predictions equal to the torch fake-quantized model's, expected
1.0).  "before" is the same projection and plan with no retraining (``epochs=0``).
Rows go to ``results.json`` next to this script (a row already there is not recomputed)
and ``README.md``'s tables are regenerated (results, and the model sizes as stored next to
seed 003's 16x / 32x, ``reports/_sizes.py``); training files go to ``--work``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from fxp import workflow as fw  # noqa: E402

sys.path.insert(0, str(HERE.parent))
from _common import float_accuracy, replace_results_table  # noqa: E402
from _sizes import replace_block  # noqa: E402

DEFAULT_RUNS = ["twn:2", "hwang-sung:2", "binaryconnect:1", "cluster-kmeans:2",
                "cluster-kmeans:3", "cluster-kmeans:4", "cluster-hc:ward:3"]

PAPER = {  # top-1 %, the papers' own networks and training (see README.md)
    "twn": "99.35 (LeNet-5)",
    "hwang-sung": "98.92 (1.08% error)",
    "binaryconnect": "98.71 (1.29% error)",
    "cluster": "n/a",
}


def parse_run(spec: str) -> tuple[str, str | None, int]:
    """``twn:2`` -> (twn, None, 2); ``cluster-hc:ward:3`` -> (cluster, hc:ward, 3)."""
    head, bits = spec.rsplit(":", 1)
    if head.startswith("cluster-"):
        return "cluster", head[len("cluster-"):], int(bits)
    return head, None, int(bits)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mnist_cnn")
    ap.add_argument("--train", default="mnist-t10k")
    ap.add_argument("--eval", default="mnist5k")
    ap.add_argument("--runs", nargs="+", default=DEFAULT_RUNS,
                    help="METHOD:BITS or cluster-ALGO:BITS (ALGO kmeans, hc:ward, ...)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="training images (default all)")
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--work", default="/tmp/fxp_retrain_ternary")
    ap.add_argument("--results", default=str(HERE / "results.json"))
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: twn only, 200 images, 1 epoch, results and README in --out")
    ap.add_argument("--out", default=None, help="folder for README.md / results.json (--quick)")
    args = ap.parse_args(argv)
    readme = HERE / "README.md"
    if args.quick:
        if args.out is None:
            ap.error("--quick writes to a scratch folder: give --out")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "README.md").write_text(readme.read_text())
        readme = out / "README.md"
        args.results = str(out / "results.json")
        args.work = str(out / "work")
        args.runs, args.limit, args.eval_limit, args.epochs = ["twn:2"], 200, 200, 1
    res_path = Path(args.results)
    rows = json.loads(res_path.read_text()) if res_path.exists() else []
    key = lambda r: (r["model"], r["method"], r.get("cluster"), r["bits"], r["seed"],  # noqa: E731
                     r["epochs"], r["limit"], r["lr"])
    have = {key(r) for r in rows}
    base = None
    for spec in args.runs:
        method, algo, bits = parse_run(spec)
        row = {"model": args.model, "method": method, "cluster": algo, "bits": bits,
               "seed": args.seed, "epochs": args.epochs, "limit": args.limit, "lr": args.lr}
        if key(row) in have:
            continue
        if base is None:
            base = float_accuracy(args.model, args.eval, args.eval_limit)
        tag = f"{spec.replace(':', '-')}-s{args.seed}-e{args.epochs}-l{args.limit}-lr{args.lr:g}"
        common = dict(bits=bits, seed=args.seed, eval_data=args.eval, limit=args.limit,
                      eval_limit=args.eval_limit, lr=args.lr, cluster=algo or "kmeans")
        before = fw.train_model(method, args.model, args.train, out=Path(args.work) / f"{tag}-e0",
                                epochs=0, verify=False, **common)
        t0 = time.perf_counter()
        res = fw.train_model(method, args.model, args.train, out=Path(args.work) / tag,
                             epochs=args.epochs, eval_each_epoch=True, log=print, **common)
        sim = res["fxp_simulation"]
        row.update(train=args.train, eval=args.eval, n_eval=res["n_eval"], float_top1=base,
                   before_top1=before["torch_fake_quant_top1"],
                   torch_top1=res["torch_fake_quant_top1"], fxp_top1=sim["fixed_top1"],
                   agreement=sim["agreement_with_torch"], mismatches=sim["mismatches"],
                   history=[{k: h[k] for k in ("epoch", "loss", "eval_top1")}
                            for h in res["history"]],
                   layers={n: {k: v for k, v in info.items() if k != "centroids"}
                           for n, info in res["layers"].items()},
                   seconds=round(time.perf_counter() - t0, 1))
        print(json.dumps({k: v for k, v in row.items() if k not in ("layers", "history")}),
              flush=True)
        rows.append(row)
        res_path.write_text(json.dumps(rows, indent=1) + "\n")
    write_table(rows, readme)
    return 0


def _codes(r: dict) -> str:
    """Per-layer distinct weight codes, compactly (k for ternary / binary)."""
    out = []
    for name, info in r["layers"].items():
        c = info.get("codes")
        if r["method"] in ("twn", "binaryconnect") or (r["method"] == "hwang-sung"
                                                       and r["bits"] == 2):
            out.append(f"{name} ±{max(c)}" if c else f"{name} ?")
        else:
            out.append(f"{name} {info['distinct_codes']}")
    return ", ".join(out)


def write_table(rows: list[dict], readme: Path = HERE / "README.md") -> None:
    """Regenerate the results table between the markers of ``readme``."""
    if not readme.exists():
        return
    lines = ["| method | bits | levels | epochs | lr | float % | before retraining % | "
             "retrained (fxp) % | error % | diff | fxp = torch | weight codes per layer | "
             "paper |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["method"] + (f" {r['cluster']}" if r.get("cluster") else "")
        levels = {"twn": 3, "binaryconnect": 2, "hwang-sung": 2 ** r["bits"] - 1}.get(
            r["method"], 2 ** r["bits"])
        fl, acc = 100 * r["float_top1"], 100 * r["fxp_top1"]
        agree = "yes" if r["agreement"] == 1.0 else f"NO ({r['mismatches']})"
        lines.append(f"| {m} | {r['bits']} | {levels} | {r['epochs']} | {r['lr']:g} | {fl:.2f} | "
                     f"{100 * r['before_top1']:.2f} | {acc:.2f} | {100 - acc:.2f} | "
                     f"{acc - fl:+.2f} | {agree} | {_codes(r)} | {PAPER[r['method']]} |")
    replace_results_table(readme, lines)
    replace_block(readme, "sizes", size_lines(rows))


#: seed 003 Table I, model compression of ternary (2-bit) and binary (1-bit) weights
SEED_COMPRESSION = {"twn": "16x", "hwang-sung": "16x (ternary)", "binaryconnect": "32x"}


def size_lines(rows: list[dict]) -> list[str]:
    """Bytes as stored of each retrained row's weights (``reports/_sizes.py``) next to seed 003."""
    from _sizes import bitpacked_bytes, layer_params

    from fxp.core.format import QFormat
    from fxp.report.mcu import packed_bytes

    lines = [("| method | bits | code bits | weights | float32 weights | codes, bit-packed | "
              "codes, fxp packed | plan's 8-bit codes, as exported | scales / codebooks | "
              "biases (int32) | weights only: float32 / bit-packed | whole model: float32 / "
              "bit-packed | whole model: float32 / fxp packed | seed 003 |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    graphs: dict = {}
    for r in rows:
        if r["model"] not in graphs:
            graphs[r["model"]] = layer_params(fw.load_model(r["model"]))
        counts = graphs[r["model"]]
        lay = r["layers"]
        n_w = sum(counts[n][0] for n in lay)
        n_b = sum(counts[n][1] for n in lay)
        dense = sum(bitpacked_bytes(counts[n][0], lay[n]["code_bits"]) for n in lay)
        packed = sum(packed_bytes(counts[n][0], lay[n]["code_bits"]) for n in lay)
        plan = sum(packed_bytes(counts[n][0], QFormat.parse(lay[n]["format"]).bits) for n in lay)
        # one signed 8-bit scale / step per layer, or a codebook of 2**bits 8-bit entries
        params = sum(2 ** lay[n]["code_bits"] if r["method"] == "cluster" else 1 for n in lay)
        bias = 4 * n_b
        fw32, fl = 4 * n_w, 4 * (n_w + n_b)
        m = r["method"] + (f" {r['cluster']}" if r.get("cluster") else "")
        bits = "/".join(sorted({str(lay[n]["code_bits"]) for n in lay}))
        lines.append(f"| {m} | {r['bits']} | {bits} | {n_w:,} | {fw32:,} B | {dense:,} B | "
                     f"{packed:,} B | {plan:,} B | {params} B | {bias:,} B | "
                     f"{fw32 / dense:.1f}x | {fl / (dense + params + bias):.1f}x | "
                     f"{fl / (packed + params + bias):.1f}x | "
                     f"{SEED_COMPRESSION.get(r['method'], 'n/a')} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
