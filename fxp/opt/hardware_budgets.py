"""Linear cost terms and budgets of the bit-allocation MILP (hardware costs as constraints).

A hardware figure of a plan (DSP slices, LUTs, flash bytes, ...) is a sum of
per-layer figures, each a function of at most two widths (a layer's weights
and its input activation).  :class:`Terms` stores such a function as tables
indexed by *width values*:

    value(b) = constant + sum_i unary[i][b_i] + sum_(i,j) pair[(i,j)][(b_i, b_j)]

which the one-hot MILP represents exactly (a unary table is a dot product
with tensor ``i``'s one-hot vector; a pair table a dot product with the
linearised outer product of two one-hot vectors, see
:func:`fxp.opt.problem.milp_problem`).  A tensor split into several width
variables later (per-channel groups) simply contributes one unary or pair
table per variable.

A :class:`Budget` is ``max_r rows[r](b) <= limit``: one row for a sum (DSP
slices), one row per schedule step for a peak (activation RAM is the
largest sum of the buffers live at one step).  A budget may also carry an
``exact`` evaluator (TFLite Micro's greedy arena head, which can exceed the
largest live set when buffers fragment); the figure is then
``max(rows, exact)``.  ``exact`` must depend on the widths only through
``classes`` (e.g. the bytes per element of each activation): the solver
checks each optimum against it and cuts off the offending combination of
width classes (:meth:`Budget.cut`) until the optimum satisfies it, which
removes only points whose ``exact`` value is the same, over the limit --
the answer stays the exact optimum.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fxp.errors import PlanError

__all__ = ["Budget", "Terms"]


@dataclass
class Terms:
    """A function of the widths that the MILP represents exactly (see the module docstring).

    Attributes
    ----------
    unary : dict int -> {width: float}
        Tensor index -> value per allowed width.
    pair : dict (int, int) -> {(width_i, width_j): float}
        Tensor pair -> value per combination of their allowed widths
        (combinations listed in the problem's ``forbid`` may be missing).
    constant : float
    """

    unary: dict = field(default_factory=dict)
    pair: dict = field(default_factory=dict)
    constant: float = 0.0

    def value(self, widths: Sequence[int]) -> float:
        """Exact value (``math.fsum``) for one width per tensor."""
        parts = [self.constant]
        parts += [t[int(widths[i])] for i, t in self.unary.items()]
        parts += [t[(int(widths[i]), int(widths[j]))] for (i, j), t in self.pair.items()]
        return math.fsum(parts)

    def coefficients(self) -> list[float]:
        return [v for t in self.unary.values() for v in t.values()] + \
            [v for t in self.pair.values() for v in t.values()]

    @property
    def integral(self) -> bool:
        """True when every value (and the constant) is an integer: rows get an exact margin."""
        return all(float(v).is_integer() for v in [self.constant, *self.coefficients()])

    def check(self, widths: list[list[int]], names: list[str], forbid: set, where: str) -> None:
        """Every allowed width (pair of widths, unless forbidden) has a finite value."""
        n = len(widths)
        if not math.isfinite(self.constant):
            raise PlanError(f"{where}: constant {self.constant!r} is not finite")
        for i, t in self.unary.items():
            if not (isinstance(i, int) and 0 <= i < n):
                raise PlanError(f"{where}: unary term names tensor index {i!r} (0..{n - 1})")
            for b in widths[i]:
                if b not in t or not math.isfinite(t[b]):
                    raise PlanError(f"{where}: no finite value for {names[i]!r} at {b} bits "
                                    f"(got {t.get(b)!r})")
        for (i, j), t in self.pair.items():
            if not (0 <= i < n and 0 <= j < n) or i == j:
                raise PlanError(f"{where}: pair term ({i}, {j}) is invalid")
            for bi in widths[i]:
                for bj in widths[j]:
                    if (i, j, bi, bj) in forbid:
                        continue
                    v = t.get((bi, bj))
                    if v is None or not math.isfinite(v):
                        raise PlanError(f"{where}: no finite value for {names[i]!r} at {bi} "
                                        f"bits with {names[j]!r} at {bj} bits (got {v!r})")


@dataclass
class Budget:
    """``max_r rows[r](widths) <= limit`` (and ``exact(widths) <= limit`` when given).

    Attributes
    ----------
    name : str
        The figure, e.g. ``"dsp"`` or ``"ram"``.
    limit : float
    rows : list of Terms
        Linear rows; the figure is their maximum (one row for a sum).
    unit : str
        Unit for messages (``"DSP slices"``, ``"bytes"``).
    option : str
        How the user set it (``"--max-dsp"``), for messages.
    exact : callable widths -> float, optional
        Checked lazily by the solver; the figure is ``max(rows, exact)``.
    classes : dict int -> {width: hashable}, optional
        With ``exact``: ``exact`` depends on the widths only through these
        classes of these tensors (the lazy cuts exclude whole classes).
    """

    name: str
    limit: float
    rows: list
    unit: str = ""
    option: str = ""
    exact: Callable[[list[int]], float] | None = None
    classes: dict | None = None

    def __post_init__(self) -> None:
        try:
            self.limit = float(self.limit)
        except (TypeError, ValueError):
            raise PlanError(f"budget {self.name!r}: limit must be a number, got "
                            f"{self.limit!r}") from None
        if not math.isfinite(self.limit) or self.limit < 0:
            raise PlanError(f"budget {self.name!r}: limit must be finite and >= 0, got "
                            f"{self.limit!r}")
        if not self.rows:
            raise PlanError(f"budget {self.name!r} has no rows")
        if (self.exact is None) != (self.classes is None):
            raise PlanError(f"budget {self.name!r}: give both exact and classes, or neither")

    @property
    def label(self) -> str:
        """``"dsp <= 40 DSP slices (--max-dsp)"`` for messages."""
        opt = f" ({self.option})" if self.option else ""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} <= {self.limit:,.10g}{unit}{opt}"

    def linear_value(self, widths: Sequence[int]) -> float:
        """Largest row value (what the MILP constrains directly)."""
        return max(r.value(widths) for r in self.rows)

    def value(self, widths: Sequence[int]) -> float:
        """The figure: the largest row, or ``exact`` when that is larger."""
        v = self.linear_value(widths)
        return max(v, float(self.exact(list(widths)))) if self.exact is not None else v

    def cut(self, widths: Sequence[int], allowed: list[list[int]]) -> list[tuple[int, list[int]]]:
        """``[(tensor, widths of the same class)]``: the combination a violated ``exact`` excludes.

        The MILP then requires ``sum_i sum_(b in group_i) x_i[b] <= len(groups) - 1``.
        """
        return [(i, [b for b in allowed[i] if cls[b] == cls[int(widths[i])]])
                for i, cls in sorted(self.classes.items())]
