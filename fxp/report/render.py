"""Write a simulation report: ``report.md`` plus PNG figures (matplotlib, imported lazily).

Figures: per-layer word lengths, per-layer SQNR (dB), accumulator overflows and
output saturations per layer, float vs fixed-point confusion matrices, and
weight histograms with their quantization levels.

Model, data, plan and layer names come from user files: in Markdown they go
through :func:`fxp.export.names.md_cell` / ``md_code`` (no table split, link,
HTML or heading can be injected), in figures through ``plot_label`` (no
mathtext), and the figure file names are fixed.  Files are written atomically
through :mod:`fxp.fileio` (:class:`~fxp.errors.OutputError` if they cannot be).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from fxp.errors import MissingDependencyError
from fxp.export.names import md_cell, md_code, md_code_block, plot_label
from fxp.fileio import ensure_dir, write_text, write_with
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense
from fxp.plan.plan import Plan
from fxp.sim.evaluate import SimulationReport

__all__ = ["confusion_matrix", "markdown_table", "write_report"]


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is in the test extra
        raise MissingDependencyError("reports need matplotlib: pip install 'fxp[report]'") from exc
    return plt


def markdown_table(rows: list[dict], cols: list[tuple[str, str]], *, escape: bool = True) -> str:
    """A Markdown table of ``rows`` with columns ``[(key, header)]``.

    With ``escape`` (the default) every cell and header goes through
    :func:`~fxp.export.names.md_cell`: ``|``, backticks, ``[``, ``]``, a ``<`` that
    could open a tag, backslashes and control characters cannot split the table or
    add markup (``fixed<8,3>`` stays as it is).
    ``escape=False`` is for callers whose cells are their own Markdown.
    """
    esc = md_cell if escape else str

    def cell(v) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return "inf" if math.isinf(v) else f"{v:.4g}"
        return esc(v)

    head = "| " + " | ".join(esc(h) for _, h in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    body = ["| " + " | ".join(cell(r.get(k)) for k, _ in cols) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """Counts ``[true, predicted]``."""
    m = np.zeros((n, n), np.int64)
    np.add.at(m, (np.asarray(y), np.asarray(pred)), 1)
    return m


def _bar(plt, path: Path, labels, series: dict[str, list], ylabel: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(labels) + 2), 3.2))
    width = 0.8 / max(1, len(series))
    for i, (name, vals) in enumerate(series.items()):
        xs = np.arange(len(labels)) + i * width
        ax.bar(xs, [0 if v is None else v for v in vals], width, label=name)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, [plot_label(s) for s in labels],
                  rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    _save(plt, fig, path)


def _save(plt, fig, path: Path) -> None:
    try:
        fig.tight_layout()
        write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)


def write_report(graph: Graph, plan: Plan, rep: SimulationReport, y: np.ndarray, out_dir,
                 *, title: str | None = None, command: str | None = None,
                 extra_md: str = "") -> Path:
    """Write ``report.md``, ``report.json`` and figures for one simulation into ``out_dir``."""
    plt = _plt()
    out = ensure_dir(out_dir)
    weighted = [lp for lp in plan.layers if not lp.float_layer]
    names = [lp.name for lp in weighted]
    _bar(plt, out / "bits.png", names,
         {"weight bits": [lp.weight.fmt.bits for lp in weighted],
          "output bits": [lp.output.fmt.bits for lp in weighted],
          "accumulator bits": [lp.acc_bits for lp in weighted]}, "bits", "Word length per layer")
    rows = [r for r in rep.layers if r.sqnr_db is not None]
    _bar(plt, out / "sqnr.png", [r.name for r in rows],
         {"SQNR": [min(r.sqnr_db, 200.0) for r in rows]}, "dB",
         "SQNR of each layer's output vs the float model")
    _bar(plt, out / "overflow.png", [r.name for r in rep.layers],
         {"accumulator overflows": [r.acc_overflows for r in rep.layers],
          "output saturations": [r.output_saturations for r in rep.layers]}, "count",
         "Overflow and saturation events")
    if rep.float_predictions is not None:
        n = int(max(y.max(), rep.float_predictions.max(), rep.fixed_predictions.max())) + 1
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        for ax, pred, name in ((axes[0], rep.float_predictions, "float"),
                               (axes[1], rep.fixed_predictions, "fixed point")):
            m = confusion_matrix(y, pred, n)
            ax.imshow(m, cmap="Blues")
            ax.set_title(f"{name}: top-1 {np.mean(pred == y):.4f}")
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
        _save(plt, fig, out / "confusion.png")
    layers = [n for n in graph.nodes if isinstance(n, (Conv2D, Dense))]
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 2.8), squeeze=False)
    for ax, node in zip(axes[0], layers, strict=True):
        ax.hist(node.weight.ravel(), bins=80, color="gray")
        lp = plan.layer(node.name)
        if lp is not None and not lp.float_layer and lp.weight.is_pow2:
            lsb = 2.0 ** -lp.weight.fmt.frac_bits
            ax.set_title(f"{plot_label(node.name)}: {lp.weight.fmt}, LSB {lsb:g}", fontsize=8)
        else:
            ax.set_title(plot_label(node.name), fontsize=8)
    _save(plt, fig, out / "weights.png")
    summary = [{"metric": k, "value": getattr(rep, k)} for k in
               ("n", "float_top1", "fixed_top1", "agreement", "float_top5", "fixed_top5",
                "output_sqnr_db")]
    md = [f"# {md_cell(title or f'{rep.model} with plan {rep.plan}')}", ""]
    if command:
        md += ["Regenerate with:", "", md_code_block(command), ""]
    md += [f"Data: {md_cell(rep.data)} ({rep.n} images). Plan: {md_code(plan.name)}.", "",
           markdown_table(summary, [("metric", "metric"), ("value", "value")]), "",
           "## Per layer", "",
           markdown_table([r.__dict__ for r in rep.layers],
                          [("name", "layer"), ("op", "op"), ("weight", "weight"),
                           ("output", "output"), ("acc_bits", "acc bits"),
                           ("acc_overflows", "acc overflows"),
                           ("output_saturations", "saturations"),
                           ("acc_bits_worst_case", "acc bits (worst case)"),
                           ("sqnr_db", "SQNR dB")]), "",
           "![bits](bits.png)", "", "![sqnr](sqnr.png)", "", "![overflow](overflow.png)", ""]
    if rep.float_predictions is not None:
        md += ["![confusion](confusion.png)", ""]
    md += ["![weights](weights.png)", ""]
    if extra_md:
        md += [extra_md, ""]
    write_text(out / "report.md", "\n".join(md))
    write_text(out / "report.json", json.dumps(rep.to_dict(), indent=2) + "\n")
    return out
