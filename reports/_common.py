"""Helpers shared by the report scripts (``reports/*/run.py``): output folder and float accuracy."""

from __future__ import annotations

import argparse
from pathlib import Path


def output_dir(ap: argparse.ArgumentParser, args: argparse.Namespace, here: Path) -> Path:
    """The folder a report writes to: ``--out`` or the report's own folder.

    ``--quick`` runs must name a scratch folder, so that a smoke run never
    overwrites the committed report.
    """
    if args.quick and args.out is None:
        ap.error("--quick writes to a scratch folder: give --out")
    out = Path(args.out) if args.out else here
    out.mkdir(parents=True, exist_ok=True)
    return out


def float_accuracy(model: str, eval_spec: str, eval_limit: int | None) -> float:
    """Top-1 of the float reference of zoo/ONNX ``model`` on a data spec."""
    import numpy as np

    from fxp import workflow as fw
    from fxp.sim.float_ref import run_float

    g = fw.load_model(model)
    d = fw.load_data(eval_spec, g, limit=eval_limit)
    logits = np.concatenate([run_float(g, d.x[i:i + 500]) for i in range(0, len(d.x), 500)])
    return float(np.mean(logits.argmax(1) == d.y))


def replace_results_table(readme: Path, lines: list[str]) -> None:
    """Rewrite the Markdown between ``<!-- results:start -->`` and ``<!-- results:end -->``."""
    text = readme.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + tail)
