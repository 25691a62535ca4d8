"""Reproduce seed 004 (weight sharing by k-means and hierarchical clustering) on mnist_cnn.

Regenerate (from the repository root, after ``make setup``; about five minutes)::

    .venv/bin/python reports/seed004_clustering/run.py

Two studies, both on the float reference with 2,000 mnist5k images:

1. Whole model: every Conv/Dense weight tensor is replaced by 2**b shared values (codebook +
   index codes) from k-means or hierarchical clustering with ward / complete / average /
   single linkage, for b = 3..6 bits (``fxp sweep``).
2. Per layer, as the seed's Table 1: one layer at a time is clustered (the others stay float);
   per layer, method and width: the change in top-1 error, the relative RMS weight error and
   the clustering wall time (``time.perf_counter`` around ``Quantizer.fit``, median of
   ``--repeats`` runs after one warm-up run).  The seed's own mutual-nearest-neighbour merge
   (``hcfast``) is timed and its weight error measured too (no accuracy column).

Writes ``README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from fxp import workflow as fw
from fxp.fileio import write_text
from fxp.ir.nodes import Conv2D, Dense
from fxp.quant.base import get
from fxp.quant.sweep import accuracy
from fxp.report.render import markdown_table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _common import output_dir  # noqa: E402

QUANTIZERS = "kmeans,hc:ward,hc:complete,hc:average,hc:single"
LINKS = ("ward", "complete", "average", "single")
SHORT = {"ward": "W", "complete": "C", "average": "A", "single": "S"}
# Seed 004, Table 1: top-1 error change (points, + = worse) of AlexNet on CIFAR-10 when one
# layer is clustered by HC with each linkage; per layer {bits: (W, C, A, S)}.
SEED_T1 = {
    "Conv1": {6: (-1.35, -1.13, -1.39, -0.99), 5: (-0.24, -1.40, -0.46, 0.54),
              4: (-0.94, -0.15, 12.10, 5.92), 3: (1.41, 28.25, 27.87, 17.84)},
    "Conv2": {6: (-0.97, -0.99, -0.37, -0.30), 5: (-0.87, 0.37, 1.35, 0.71),
              4: (-0.24, 0.66, 4.02, 3.38), 3: (0.37, 1.99, 10.15, 7.25)},
    "Conv3": {6: (-0.34, 33.59, -0.81, -1.55), 5: (-0.61, 39.52, -1.95, -1.12),
              4: (-1.02, 38.96, 6.47, 0.85), 3: (-1.12, 38.6, 9.81, 0.87)},
    "Conv4": {6: (0.07, 51.93, -0.77, -0.88), 5: (-0.78, 0.43, 0.18, 0.68),
              4: (-0.78, 53.78, 19.22, 0.52), 3: (0.48, 55.22, 49.25, 5.56)},
    "Conv5": {6: (0.40, 50.32, 1.75, 3.40), 5: (0.52, 54.73, 11.38, 6.61),
              4: (1.33, 57.69, 10.30, 13.61), 3: (2.06, 57.56, 48.34, 54.99)},
    "fc1": {6: (0.62, 48.13, 3.65, 2.93), 5: (0.66, 46.91, 6.89, 3.19),
            4: (1.75, 45.87, 14.36, 6.50), 3: (3.27, 51.18, 29.33, 16.84)},
    "fc2": {6: (0.37, 50.86, 4.69, 7.55), 5: (0.70, 50.45, 5.76, 13.67),
            4: (1.44, 53.48, 17.58, 21.32), 3: (2.59, 57.39, 23.17, 38.11)},
}


def _layers(graph):
    return [n for n in graph.nodes if isinstance(n, (Conv2D, Dense))]


def _with_weight(graph, name: str, w: np.ndarray):
    return graph.with_nodes([dataclasses.replace(n, weight=w.astype(np.float32))
                             if n.name == name else n for n in graph.nodes])


def per_layer(graph, data, widths: list[int], repeats: int) -> list[dict]:
    """One row per (layer, method, bits): error change, weight error, clustering time."""
    f1, _ = accuracy(graph, data.x, data.y)
    rows = []
    specs = ["kmeans", *(f"hc:{k}" for k in LINKS), *(f"hcfast:{k}" for k in LINKS)]
    for node in _layers(graph):
        w = np.asarray(node.weight, np.float64)
        for spec in specs:
            q = get(spec)
            for b in widths:
                qt = q(w, b)  # also the warm-up run (Numba compiles on its first call)
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    q.fit(w, b)
                    times.append(time.perf_counter() - t0)
                err = float(np.linalg.norm(qt.values - w) / np.linalg.norm(w))
                row = {"layer": node.name, "n": int(w.size), "method": spec, "bits": b,
                       "rel_err": err, "ms": 1e3 * statistics.median(times),
                       "impl": qt.params.get("method", "lloyd")}
                if not spec.startswith("hcfast"):
                    a1, _ = accuracy(_with_weight(graph, node.name, qt.values), data.x, data.y)
                    row["d_err"] = 100 * (f1 - a1)
                rows.append(row)
    return rows


def _pivot(rows, key: str, fmt: str, widths: list[int], methods=None) -> list[dict]:
    out: dict[tuple, dict] = {}
    for r in rows:
        if key not in r or (methods and r["method"] not in methods):
            continue
        d = out.setdefault((r["layer"], r["method"]), {
            "layer": f"{r['layer']} ({r['n']})", "method": r["method"], "impl": r["impl"]})
        d[f"{r['bits']}b"] = format(r[key], fmt)
    return list(out.values())


def _seed_rows(widths: list[int]) -> list[dict]:
    rows = []
    for layer, by_b in SEED_T1.items():
        for i, link in enumerate(LINKS):
            rows.append({"layer": layer, "method": f"hc:{link}",
                         **{f"{b}b": f"{by_b[b][i]:+.2f}" for b in widths}})
    return rows


def _summary(rows, widths: list[int]) -> list[dict]:
    """Mean and worst error change over layers, per linkage and width: seed beside ours."""
    out = []
    for i, link in enumerate(LINKS):
        d = {"linkage": link}
        for b in widths:
            s = [SEED_T1[layer][b][i] for layer in SEED_T1]
            o = [r["d_err"] for r in rows if r["method"] == f"hc:{link}" and r["bits"] == b]
            d[f"{b}b"] = (f"seed {statistics.mean(s):+.1f} / {max(s):+.1f}; here "
                          f"{statistics.mean(o):+.1f} / {max(o):+.1f}")
        out.append(d)
    return out


def _ranking(rows, widths: list[int]) -> tuple[str, str]:
    """Linkages from most robust to worst by mean error change over layers and widths."""
    seed = {k: statistics.mean(by_b[b][i] for by_b in SEED_T1.values() for b in widths)
            for i, k in enumerate(LINKS)}
    ours = {k: statistics.mean(r["d_err"] for r in rows if r["method"] == f"hc:{k}")
            for k in LINKS}
    return tuple(", ".join(f"{k} {m[k]:+.1f}" for k in sorted(m, key=m.get))
                 for m in (seed, ours))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="seed 004 clustering report")
    ap.add_argument("--quick", action="store_true", help="200 images, 3-4 bits (smoke run)")
    ap.add_argument("--out", default=None, help="output folder (default: this folder)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per fit (median)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    out = output_dir(ap, args, HERE)
    graph = fw.load_model("mnist_cnn")
    data = fw.load_data("mnist5k", graph, limit=200 if args.quick else 2000)
    widths = [4, 3] if args.quick else [6, 5, 4, 3]
    res = fw.sweep_quantizers(graph, data, quantizers=QUANTIZERS,
                              bits="3-4" if args.quick else "3-6").to_dict()
    by_q: dict[str, dict] = {}
    for r in res["rows"]:
        by_q.setdefault(r["quantizer"], {"method": r["quantizer"]})[f"{r['bits']} bits"] = \
            f"{100 * (r['top1'] - res['float_top1']):+.2f}"
    rows = list(by_q.values())
    cols = [("method", "method")] + [(f"{b} bits", f"{b} bits") for b in range(6, 2, -1)
                                     if any(f"{b} bits" in r for r in rows)]
    t0 = time.perf_counter()
    pl = per_layer(graph, data, widths, 1 if args.quick else args.repeats)
    t_pl = time.perf_counter() - t0
    bcols = [(f"{b}b", f"{b} bits") for b in widths]
    lcols = [("layer", "layer (weights)"), ("method", "method")]
    seed_table = markdown_table(_seed_rows(widths), [("layer", "AlexNet layer"),
                                                     ("method", "linkage"), *bcols])
    derr = markdown_table(_pivot(pl, "d_err", "+.2f", widths), lcols + bcols)
    werr = markdown_table(_pivot(pl, "rel_err", ".4f", widths), lcols + bcols)
    tms = markdown_table(_pivot(pl, "ms", ".2f", widths), lcols + [("impl", "implementation")]
                         + bcols)
    rank = _ranking(pl, widths)
    summ = markdown_table(_summary(pl, widths), [("linkage", "linkage"), *bcols])
    text = f"""# Seed 004: weight sharing by k-means and hierarchical clustering, on mnist_cnn

Regenerate: `python reports/seed004_clustering/run.py` (about five minutes on 2 cores; the
whole-model table alone is the CLI command
`fxp sweep mnist_cnn --data mnist5k --limit 2000 --bits 3-6 --quantizers {QUANTIZERS}`).

Hierarchical clustering (`hc:LINKAGE`) uses scipy for tensors up to 4,096 weights and fxp's
exact one-pair-at-a-time 1-D merge (Numba) above that; it gives scipy's partition (see
fxp/quant/cluster.py). `hcfast:LINKAGE` is the seed's own algorithm (slides 15-16: every
mutual-nearest pair of neighbours merges in the same round).

## Whole model

Change in top-1 accuracy (points, - = worse) versus float ({res['float_top1']:.2%} on
{res['n_images']} mnist5k images) when every layer's weights share 2**b values.

{markdown_table(rows, cols)}

## Per layer: the seed's Table 1 and the linkage study on mnist_cnn

The seed's Table 1 (AlexNet on CIFAR-10): change in top-1 error (points, + = worse) when one
layer is clustered with each linkage (copied from the seed text):

{seed_table}

What the seed's table says: **complete** linkage is its worst -- it loses 33-58 points in
Conv3, Conv4 (except at 5 bits), Conv5, fc1 and fc2 at every width, 6 bits included; average
and single stay within 8 points at 6 bits and lose, in their worst layer, 11-14 points at 5
bits, 19-21 at 4 bits and 49-55 at 3 bits; ward stays within 3.3 points everywhere.

Same layout on mnist_cnn (layers {', '.join(n.name for n in _layers(graph))}: one layer clustered, the
others float; float top-1 {res['float_top1']:.2%} on {res['n_images']} images). Change in top-1 error
(points, + = worse):

{derr}

Mean / worst change in top-1 error over layers, per linkage -- seed (7 AlexNet layers) and
here (mnist_cnn ({len(_layers(graph))} layers)):

{summ}

Relative RMS weight error `||w_hat - w|| / ||w||` of the clustered layer:

{werr}

Clustering wall time (ms): `time.perf_counter` around `Quantizer.fit` (the clustering and
codebook, not the encode), median of {1 if args.quick else args.repeats} runs after one
warm-up run, on a shared 2-core machine with other jobs running (expect noise of tens of per
cent). `implementation` says what ran: `scipy` (`linkage` + `fcluster`), `sequential` (fxp's
exact merge), `mutual` (the seed's round merge), `lloyd` (k-means). The per-layer study took
{t_pl:.0f} s in all.

{tms}

## Reading the results against the seed

- Linkages from most robust to worst, by the mean change in top-1 error (points) over all
  layers and widths of the per-layer tables:
  seed {rank[0]};
  mnist_cnn {rank[1]}.
  On {res['n_images']} images one image is {100 / res['n_images']:.2f} points, so the gaps among ward, complete and average here
  are a few images.
- The seed finds complete linkage worst; on mnist_cnn **single** linkage is the worst. (An
  earlier version of this report said single was also the seed's worst; that was wrong: the
  seed's worst is complete.) Single linkage collapses on 1-D weights: cutting its dendrogram
  into k clusters splits at the k-1 largest gaps between sorted weights, which isolates
  a few outliers in the tails and leaves nearly every weight in one central cluster whose
  shared value is close to 0 (chaining): its relative weight error is near 1 on conv2 and fc1.
  In the whole-model table the collapse is total at every width because each
  tensor's tails are sparse. The seed's own round merge (`hcfast:single`) collapses less at
  6 bits (see the weight-error table). The seed's single-linkage losses are smaller than its
  complete-linkage losses (worst 54.99 against 57.69 points; mean over layers lower at
  every width).
- The seed shows a "Training Time" comparison of HC against k-means as a figure whose numbers
  are not in the seed text, so the timing table has no seed column; it compares the
  implementations here only: on conv1 scipy is several times slower than k-means and the
  seed's round merge; on conv2 and fc1 every method takes tens of milliseconds or less, and
  differences below a factor of two are within this shared machine's noise.

## Deviations from the seed's method

- Model and data: mnist_cnn (3 weight layers) on 2,000 mnist5k images, not AlexNet on
  CIFAR-10 (7 layers); the float reference runs the clustered weights (no integer engine).
- Accuracy columns use the exact greedy agglomeration (scipy's algorithm, one merge at a time),
  not the seed's mutual-nearest-neighbour rounds; the seed's algorithm (`hcfast`) is timed and
  its weight error given, but its accuracy is not measured (time budget). Its rounds can merge a
  pair before a closer one elsewhere, so its partition can differ from scipy's.
- The seed does not say whether Table 1 clusters one layer with the others float, or whether
  it fine-tunes after clustering; here one layer at a time is clustered and nothing is
  fine-tuned.
- One codebook per tensor (per layer), 2**b clusters; biases stay float.
- k-means (Lloyd, linear initialisation) is a reference row; the seed's Table 1 has none.
- Timing: the `hc` rows use scipy for conv1 (288 weights) and fxp's Numba merge for conv2
  and fc1 (scipy's distance matrix for 18,432 weights would need 1.4 GB), so times across
  layers compare different implementations; scipy is not timed on the large layers.
"""
    write_text(out / "README.md", text)
    print(text)


if __name__ == "__main__":
    main()
