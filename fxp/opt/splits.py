"""The three disjoint splits of the optimizer's data: calibration, selection, held-out.

``--data`` (N samples) is first put in a seeded random order (``seed``, 0 by default;
``seed=None`` keeps the order given) and that order cut in consecutive ranges:

* **calibration** ``[0, calib)``: activation ranges, the per-tensor noise
  table, its error vectors and the interaction check
  (:mod:`fxp.opt.interactions`) -- everything the MILP's coefficients come from;
* **selection** ``[calib, calib + selection)``: the integer engine measures
  each plan here; a plan short of the target raises the internal target and
  the MILP is solved again (so this split is *not* held out);
* **held-out** ``[calib + selection, N)`` (or ``eval_data``): the final
  integer-engine measurement of the returned plan, and nothing else.  "met"
  is decided here.

By default the selection split takes ``min(1000, (N - calib) // 2)``
samples and the held-out split the rest.

Why a random order.  Datasets are often stored in an order: by class, by source,
by writer.  A contiguous range is then a biased sample, and a plan's SQNR measured
on one range predicts another worse than its standard error says.  On the reference
data (``benchmarks/bench_split_order.py``, one uniform plan per model) five consecutive
1,000-sample ranges spread 1.2-1.8 times the standard error
(:attr:`fxp.sim.evaluate.SimulationReport.output_sqnr_se_db`); over 200 random orders the
calibration-to-held-out difference spreads as the standard errors predict (0.08-0.19 dB
against 0.08-0.21 dB; section 12 of ``reports/optimizer_fidelity``).  A random order
makes every split a sample of the same data, so the calibration measurement's standard
error says how far the held-out one may fall (:func:`fxp.opt.measured_goal.held_out_margin_db`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fxp.errors import PlanError

__all__ = ["DEFAULT_SELECTION", "DataSplits", "check_table_samples", "split_data"]

DEFAULT_SELECTION = 1000
"""Most samples of the default selection split."""


@dataclass
class DataSplits:
    """Index ranges ``[start, stop)`` of the three splits (``held_out`` None: ``eval_data``)."""

    n: int
    calibration: tuple[int, int]
    selection: tuple[int, int]
    held_out: tuple[int, int] | None
    held_out_size: int
    seed: int | None = None
    """Seed of the random order (None: the order given)."""

    @property
    def order(self) -> np.ndarray:
        """``int64 [n]``: the sample order the ranges are positions in."""
        if self.seed is None:
            return np.arange(self.n, dtype=np.int64)
        return np.random.default_rng(self.seed).permutation(self.n).astype(np.int64)

    def indices(self, part: str) -> np.ndarray:
        """Sorted sample indices of ``part`` ("calibration", "selection", "held_out")."""
        r = getattr(self, part)
        if r is None:
            raise PlanError(f"the {part} split is eval_data, not samples of --data")
        return np.sort(self.order[r[0]:r[1]])

    def to_dict(self) -> dict:
        def part(r, role, size=None):
            d = {"size": size if r is None else r[1] - r[0], "role": role}
            if r is None:
                d["source"] = "eval_data (separate samples)"
            else:
                d["start"], d["stop"] = int(r[0]), int(r[1])
            return d

        order = ("as given" if self.seed is None
                 else f"random permutation of the samples (numpy default_rng({self.seed}))")
        return {"n_data": self.n, "order": order, "seed": self.seed,
                "calibration": part(self.calibration, "formats, noise table, interaction check"),
                "selection": part(self.selection, "integer-engine checks that may trigger "
                                  "re-solves with a raised internal target"),
                "held_out": part(self.held_out, "final check only", self.held_out_size)}

    def describe(self) -> str:
        def rng(r):
            return f"{r[0]}..{r[1] - 1}" if r[1] > r[0] else "empty"

        ho = (f"held-out {rng(self.held_out)} ({self.held_out_size})" if self.held_out
              else f"held-out: eval_data ({self.held_out_size})")
        order = "" if self.seed is None else f" of the order shuffled with seed {self.seed}"
        return (f"positions{order}: calibration {rng(self.calibration)} "
                f"({self.calibration[1]}), selection {rng(self.selection)} "
                f"({self.selection[1] - self.selection[0]}), {ho}")


def split_data(n: int, calib: int, selection: int | None = None,
               eval_size: int | None = None, seed: int | None = 0) -> DataSplits:
    """Cut ``n`` samples into the three splits (``eval_size``: a separate held-out set),
    in the order shuffled with ``seed`` (None: the order given)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise PlanError(f"split seed must be an integer >= 0 or None, got {seed!r}")
    if isinstance(calib, bool) or not isinstance(calib, (int, np.integer)) or calib < 1:
        raise PlanError(f"calib (calibration samples) must be an integer >= 1, got {calib!r}")
    c = min(int(calib), n)
    rest = n - c
    if selection is None:
        s = min(DEFAULT_SELECTION, rest // 2) if eval_size is None else min(DEFAULT_SELECTION,
                                                                          rest)
    else:
        if isinstance(selection, bool) or not isinstance(selection, (int, np.integer)) \
                or selection < 0:
            raise PlanError(f"selection samples must be an integer >= 0, got {selection!r}")
        s = int(selection)
        if eval_size is None and s > rest:
            raise PlanError(f"selection={s} samples leave none held out: --data has {n}, "
                            f"{c} calibrate")
        s = min(s, rest)
    if eval_size is not None:
        return DataSplits(n, (0, c), (c, c + s), None, int(eval_size), seed)
    return DataSplits(n, (0, c), (c, c + s), (c + s, n), n - c - s, seed)


def check_table_samples(graph, table, calibration_x: np.ndarray) -> None:
    """Raise :class:`~fxp.errors.PlanError` when a given noise ``table`` was not measured
    on ``calibration_x`` (its first ``table.n_samples`` samples): its kept float logits
    (:attr:`~fxp.opt.noise.NoiseTable.reference`) must be the float model's logits of
    those samples (relative difference <= 1e-4).  A table without kept logits (too large
    to keep) is not checked."""
    from fxp.opt.noise import logits_of
    from fxp.sim.float_ref import run_float

    ref = getattr(table, "reference", None)
    if ref is None:
        return
    n = int(table.n_samples)
    if n > len(calibration_x):
        raise PlanError(f"the noise table was measured on {n} samples, more than the "
                        f"{len(calibration_x)} of the calibration split")
    got = np.asarray(run_float(graph, calibration_x[:n], tensors=[logits_of(graph)])
                     [logits_of(graph)], np.float64).ravel()
    ref = np.asarray(ref, np.float64)
    scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-30)
    if got.shape != ref.shape or float(np.max(np.abs(got - ref))) > 1e-4 * scale:
        raise PlanError("the noise table was measured on other samples than the calibration "
                        "split: measure it on data.x[split_data(...).indices('calibration')] "
                        "(the splits are cut from a shuffled order; split_seed=None keeps the "
                        "data's order)")
