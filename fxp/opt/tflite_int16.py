"""Which layers of an int8 ``.tflite`` need int16x8: an exhaustive, measured search.

``fxp plan m.tflite --target-sqnr T --data D`` calls :func:`explore_int16x8`.
The weights stay the model's int8 codes; the only choice is, per weighted
layer, int8 or int16x8 (16-bit activations), closed downstream as
:mod:`fxp.plan.tflite_int16` explains.  Every feasible choice
(:func:`~fxp.plan.tflite_int16.closed_choices`: ``n + 1`` of them for a chain
of ``n`` weighted layers) is run by the integer engine, bit-exact for TFLite
Micro's kernels, so no noise model stands between the plan and its SQNR.

Two disjoint splits of the data (first samples first):

* **selection** (``selection`` samples): each choice's output SQNR against
  the float model (the graph with the dequantized weights) is measured here,
  and the cheapest choice meeting the target is picked;
* **held-out** (the rest): the picked plan is measured once more; ``met``
  means its held-out SQNR is at least the target.  Nothing is tuned on it.

Cost, compared in this order: peak activation RAM (TFLite Micro's greedy
arena head over the IR tensors, :func:`fxp.report.mcu.plan_resources`, plus
each switch point's int16 copy, live with the layer it feeds: an upper bound
of what the QUANTIZE adds), then flash bytes (int16x8 layers store int64
biases), then the number of int16x8 layers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fxp.errors import DataError, InfeasibleTargetError, PlanError
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan
from fxp.plan.tflite_int16 import closed_choices, describe, switch_points, widen_plan
from fxp.report.arena import Buffer, align_up, plan_arena

__all__ = ["Int16Choice", "Int16Search", "explore_int16x8", "peak_ram_bytes"]


@dataclass(frozen=True)
class Int16Choice:
    """One measured choice: its int16x8 layers, its costs and its selection SQNR (dB)."""

    wide: tuple[str, ...]
    ram_bytes: int
    flash_bytes: int
    selection_sqnr_db: float

    def key(self) -> tuple[int, int, int]:
        """Cost order: RAM, flash, number of int16x8 layers."""
        return self.ram_bytes, self.flash_bytes, len(self.wide)


@dataclass
class Int16Search:
    """Result of :func:`explore_int16x8` (``to_dict()`` is what ``--json`` prints)."""

    target_sqnr_db: float
    plan: Plan
    chosen: Int16Choice
    choices: list[Int16Choice]
    layers: list[dict]
    selection: tuple[int, int]
    held_out: tuple[int, int]
    held_out_sqnr_db: float
    held_out_top1: float
    float_top1: float
    total_time_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        """True when the held-out SQNR reaches the target."""
        return self.held_out_sqnr_db >= self.target_sqnr_db

    def to_dict(self) -> dict:
        """JSON-ready summary (the plan itself is printed beside it by the CLI)."""
        def row(c: Int16Choice) -> dict:
            return {"int16x8_layers": list(c.wide), "ram_bytes": c.ram_bytes,
                    "flash_bytes": c.flash_bytes, "selection_sqnr_db": c.selection_sqnr_db}

        return {"target_sqnr_db": self.target_sqnr_db, "met": self.met,
                "status": "met" if self.met else "missed on held-out data",
                "splits": {"selection": list(self.selection), "held_out": list(self.held_out)},
                "chosen": row(self.chosen), "held_out_sqnr_db": self.held_out_sqnr_db,
                "held_out_top1": self.held_out_top1, "float_top1": self.float_top1,
                "choices_measured": [row(c) for c in self.choices], "layers": self.layers,
                "total_time_s": self.total_time_s, "notes": self.notes}


def peak_ram_bytes(graph: Graph, plan: Plan, wide) -> tuple[int, int]:
    """``(peak activation RAM, flash)`` in bytes of the plan with ``wide`` layers int16x8.

    The arena is TFLite Micro's greedy planner over the IR tensors
    (:func:`fxp.report.mcu.plan_resources`) plus, for each switch point, the
    int16 copy the QUANTIZE writes, live in the scope of the layer it feeds.
    """
    from fxp.report.mcu import plan_resources

    widened = widen_plan(graph, plan, wide)
    res = plan_resources(graph, widened)
    buffers = list(res.arena.buffers)
    scope = {b.name: b.last for b in buffers}
    for p in switch_points(graph, plan, wide):
        n = int(np.prod([d or 1 for d in graph.shapes[p.tensor][1:]]))
        at = next((k for k, r in enumerate(res.layers, start=1) if r.name == p.layer),
                  scope.get(p.tensor, 0))
        buffers.append(Buffer(f"{p.tensor} (int16 copy)", align_up(2 * n), at, at))
    return plan_arena(buffers).head_bytes, res.flash_bytes


def explore_int16x8(graph: Graph, plan: Plan, x: np.ndarray, y: np.ndarray,
                    target_sqnr_db: float, *, selection: int = 256,
                    batch_size: int = 256) -> Int16Search:
    """Cheapest int8 / int16x8 mix of an int8 ``.tflite`` meeting an output SQNR target.

    Parameters
    ----------
    graph, plan : Graph, Plan
        The int8 model as :func:`fxp.frontends.tflite.load_tflite` reads it.
    x, y : ndarray
        Preprocessed samples (NCHW) and labels; the first ``selection`` pick
        the plan, the rest check it (at least one sample each).
    target_sqnr_db : float
        Output SQNR target (dB) against the float model.

    Raises
    ------
    InfeasibleTargetError
        No choice reaches the target on the selection split (the message
        gives the best one).
    DataError
        Too few samples for both splits.
    """
    from fxp.sim.evaluate import simulate

    t0 = time.perf_counter()
    if not np.isfinite(target_sqnr_db):
        raise PlanError(f"target SQNR must be finite, got {target_sqnr_db!r}")
    if len(x) < selection + 1:
        raise DataError(f"the int16x8 search needs more than {selection} samples (selection "
                        f"split) plus a held-out split; the data has {len(x)}")
    sel, held = slice(0, selection), slice(selection, len(x))
    choices = []
    for wide in closed_choices(graph):
        rep = simulate(graph, widen_plan(graph, plan, wide), x[sel], y[sel],
                       batch_size=batch_size)
        ram, flash = peak_ram_bytes(graph, plan, wide)
        order = [n.name for n in graph.nodes if n.name in wide]
        choices.append(Int16Choice(tuple(order), ram, flash, float(rep.output_sqnr_db)))
    ok = [c for c in choices if c.selection_sqnr_db >= target_sqnr_db]
    if not ok:
        best = max(choices, key=lambda c: c.selection_sqnr_db)
        raise InfeasibleTargetError(
            f"model {graph.name!r}: no int8/int16x8 mix reaches {target_sqnr_db:g} dB on the "
            f"selection split (first {selection} samples); the best is "
            f"{best.selection_sqnr_db:.2f} dB with {len(best.wide)} int16x8 layers")
    chosen = min(ok, key=Int16Choice.key)
    final = widen_plan(graph, plan, chosen.wide)
    rep = simulate(graph, final, x[held], y[held], batch_size=batch_size)
    notes = [("16-bit activations are symmetric and cover each int8 tensor's float range; "
              "weights keep the model's int8 codes")]
    if switch_points(graph, plan, chosen.wide):
        notes.append("deploying it needs a QUANTIZE (int8 -> int16, exact: 128 x (code - zero "
                     "point)) before each layer listed with one, and that layer's bias codes "
                     "x 128 at the int16 input scale")
    return Int16Search(float(target_sqnr_db), final, chosen, choices,
                       describe(graph, plan, chosen.wide), (0, selection), (selection, len(x)),
                       float(rep.output_sqnr_db), float(rep.fixed_top1), float(rep.float_top1),
                       time.perf_counter() - t0, notes)
