"""Seeds 003 / 004 reproduction: ternary, binary and clustered retraining, exported and simulated.

Usage (from the repository root; needs torch)::

    .venv/bin/python reports/retrain_ternary/run.py                  # the default rows below
    .venv/bin/python reports/retrain_ternary/run.py --runs twn:2 cluster-hc:ward:3 --epochs 5

Each run is ``fxp.workflow.train_model(METHOD, ...)`` (= ``fxp train METHOD MODEL --data
TRAIN --eval EVAL --bits B [--cluster ALGO]``) from the zoo's float model: TWN, Hwang &
Sung (``bits`` -> ``2**bits - 1`` levels; ``hwang-sung:B`` starts from the seed's
output-error step search, ``hwang-sung-l2:B`` from per-layer L2 steps, ``hwang-sung-layer:B``
searches from the per-layer L2 steps) and deterministic BinaryConnect
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
from fxp.fileio import write_text  # noqa: E402

sys.path.insert(0, str(HERE.parent))
from _common import float_accuracy, replace_results_table  # noqa: E402
from _sizes import replace_block  # noqa: E402

DEFAULT_RUNS = ["twn:2", "hwang-sung-l2:2", "hwang-sung:2", "hwang-sung-layer:2",
                "binaryconnect:1", "cluster-kmeans:2", "cluster-kmeans:3", "cluster-kmeans:4",
                "cluster-hc:ward:3"]
QUICK_RUNS = ["hwang-sung-l2:2", "hwang-sung:2"]  # --quick: both Hwang & Sung starts

#: ``hwang-sung[-VARIANT]`` -> ``step_search`` of :func:`fxp.train.ternary.train_hwang_sung`
HS_VARIANTS = {"hwang-sung": "network", "hwang-sung-layer": "layer", "hwang-sung-l2": None}
HS_LABEL = {"network": "Delta_init + output-error search", "layer": "L2 + output-error search",
            None: "L2 step per layer"}

PAPER = {  # top-1 %, the papers' own networks and training (see README.md)
    "twn": "99.35 (LeNet-5)",
    "hwang-sung": "98.92 (1.08% error)",
    "binaryconnect": "98.71 (1.29% error)",
    "cluster": "n/a",
}


def parse_run(spec: str) -> tuple[str, str | None, int]:
    """``twn:2`` -> (twn, None, 2); ``cluster-hc:ward:3`` -> (cluster, hc:ward, 3).

    ``hwang-sung-l2:2`` -> (hwang-sung, l2, 2): the second item is the step search of a Hwang
    & Sung row (``network``, ``layer`` or ``l2``, see :data:`HS_VARIANTS`).
    """
    head, bits = spec.rsplit(":", 1)
    if head.startswith("cluster-"):
        return "cluster", head[len("cluster-"):], int(bits)
    if head in HS_VARIANTS:
        return "hwang-sung", HS_VARIANTS[head] or "l2", int(bits)
    return head, None, int(bits)


def _search(row: dict) -> str | None:
    """A Hwang & Sung row's step search (rows from before the search used the L2 steps)."""
    return row.get("step_search", "l2") if row["method"] == "hwang-sung" else None


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
                    help="smoke run: Hwang & Sung with L2 / searched steps, 64 images, 1 "
                         "epoch, results and README in --out")
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
        args.runs, args.limit, args.eval_limit, args.epochs = QUICK_RUNS, 64, 200, 1
    res_path = Path(args.results)
    rows = json.loads(res_path.read_text()) if res_path.exists() else []
    key = lambda r: (r["model"], r["method"], r.get("cluster"), _search(r), r["bits"],  # noqa: E731
                     r["seed"], r["epochs"], r["limit"], r["lr"])
    have = {key(r) for r in rows}
    base = None
    for spec in args.runs:
        method, algo, bits = parse_run(spec)
        search = algo if method == "hwang-sung" else None
        algo = None if method == "hwang-sung" else algo
        row = {"model": args.model, "method": method, "cluster": algo, "bits": bits,
               "seed": args.seed, "epochs": args.epochs, "limit": args.limit, "lr": args.lr,
               **({"step_search": search} if search else {})}
        if key(row) in have:
            continue
        if base is None:
            base = float_accuracy(args.model, args.eval, args.eval_limit)
        tag = f"{spec.replace(':', '-')}-s{args.seed}-e{args.epochs}-l{args.limit}-lr{args.lr:g}"
        common = dict(bits=bits, seed=args.seed, eval_data=args.eval, limit=args.limit,
                      eval_limit=args.eval_limit, lr=args.lr, cluster=algo or "kmeans",
                      step_search=None if search in (None, "l2") else search)
        before = fw.train_model(method, args.model, args.train,
                                out=Path(args.work) / f"{tag}-e0", epochs=0, verify=False,
                                **common)
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
        if search and search != "l2":
            row["search"] = res["step_search"]
        print(json.dumps({k: v for k, v in row.items() if k not in ("layers", "history")}),
              flush=True)
        rows.append(row)
        write_text(res_path, json.dumps(rows, indent=1) + "\n")
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
        m = _name(r)
        levels = {"twn": 3, "binaryconnect": 2, "hwang-sung": 2 ** r["bits"] - 1}.get(
            r["method"], 2 ** r["bits"])
        fl, acc = 100 * r["float_top1"], 100 * r["fxp_top1"]
        agree = "yes" if r["agreement"] == 1.0 else f"NO ({r['mismatches']})"
        lines.append(f"| {m} | {r['bits']} | {levels} | {r['epochs']} | {r['lr']:g} | {fl:.2f} | "
                     f"{100 * r['before_top1']:.2f} | {acc:.2f} | {100 - acc:.2f} | "
                     f"{acc - fl:+.2f} | {agree} | {_codes(r)} | {PAPER[r['method']]} |")
    replace_results_table(readme, lines)
    replace_block(readme, "sizes", size_lines(rows))
    replace_block(readme, "steps", step_lines(rows))


def _name(r: dict) -> str:
    """Row label: method, cluster algorithm, Hwang & Sung step search."""
    if r["method"] == "hwang-sung":
        s = _search(r)
        return f"hwang-sung ({HS_LABEL[None if s == 'l2' else s]})"
    return r["method"] + (f" {r['cluster']}" if r.get("cluster") else "")


def step_lines(rows: list[dict]) -> list[str]:
    """Hwang & Sung rows: the steps per layer and the calibration output errors."""
    lines = [("| start | bits | epochs | network Delta_init | steps per layer (searched / L2) | "
              "output error: L2 steps | output error: start | output error: searched | "
              "before retraining % | retrained (fxp) % | error % | paper error % |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    # the L2 steps' output error, measured by the search rows on the same calibration batch
    l2_err = {(r["model"], r["bits"], r["limit"]): r["search"]["l2_error"]
              for r in rows if r.get("search")}
    for r in rows:
        if r["method"] != "hwang-sung":
            continue
        s = r.get("search") or ({"l2_error": l2_err[k], "initial_error": l2_err[k]}
                                if (k := (r["model"], r["bits"], r["limit"])) in l2_err else None)
        steps = ", ".join(f"{n} {info['step']:.4g}" + (f" / {info['l2_step']:.4g}"
                                                       if "l2_step" in info else "")
                          for n, info in r["layers"].items())
        e_l2, e_start, e_found = (f"{s[k]:.4f}" if s and k in s else "-"
                                  for k in ("l2_error", "initial_error", "error"))
        init = f"{s['init_step']:.4g}" if s and s.get("init_step") else "-"
        acc = 100 * r["fxp_top1"]
        lines.append(f"| {HS_LABEL[None if _search(r) == 'l2' else _search(r)]} | {r['bits']} | "
                     f"{r['epochs']} | {init} | {steps} | {e_l2} | {e_start} | {e_found} | "
                     f"{100 * r['before_top1']:.2f} | {acc:.2f} | {100 - acc:.2f} | 1.08 |")
    return lines


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
        m = _name(r)
        bits = "/".join(sorted({str(lay[n]["code_bits"]) for n in lay}))
        lines.append(f"| {m} | {r['bits']} | {bits} | {n_w:,} | {fw32:,} B | {dense:,} B | "
                     f"{packed:,} B | {plan:,} B | {params} B | {bias:,} B | "
                     f"{fw32 / dense:.1f}x | {fl / (dense + params + bias):.1f}x | "
                     f"{fl / (packed + params + bias):.1f}x | "
                     f"{SEED_COMPRESSION.get(r['method'], 'n/a')} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
