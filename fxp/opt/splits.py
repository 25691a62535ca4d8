"""The three disjoint splits of the optimizer's data: calibration, selection, held-out.

``--data`` (N samples) is cut in consecutive index ranges:

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fxp.errors import PlanError

__all__ = ["DEFAULT_SELECTION", "DataSplits", "split_data"]

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

    def to_dict(self) -> dict:
        def part(r, role, size=None):
            d = {"size": size if r is None else r[1] - r[0], "role": role}
            if r is None:
                d["source"] = "eval_data (separate samples)"
            else:
                d["start"], d["stop"] = int(r[0]), int(r[1])
            return d

        return {"n_data": self.n,
                "calibration": part(self.calibration, "formats, noise table, interaction check"),
                "selection": part(self.selection, "integer-engine checks that may trigger "
                                  "re-solves with a raised internal target"),
                "held_out": part(self.held_out, "final check only", self.held_out_size)}

    def describe(self) -> str:
        def rng(r):
            return f"{r[0]}..{r[1] - 1}" if r[1] > r[0] else "empty"

        ho = (f"held-out {rng(self.held_out)} ({self.held_out_size})" if self.held_out
              else f"held-out: eval_data ({self.held_out_size})")
        return (f"calibration {rng(self.calibration)} ({self.calibration[1]}), selection "
                f"{rng(self.selection)} ({self.selection[1] - self.selection[0]}), {ho}")


def split_data(n: int, calib: int, selection: int | None = None,
               eval_size: int | None = None) -> DataSplits:
    """Cut ``n`` samples into the three splits (``eval_size``: a separate held-out set)."""
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
        return DataSplits(n, (0, c), (c, c + s), None, int(eval_size))
    return DataSplits(n, (0, c), (c, c + s), (c + s, n), n - c - s)
