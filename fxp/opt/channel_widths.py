"""Per-channel (or per-group) weight widths: an exact MILP over channels and widths.

The problem.  Items are the output channels of every Conv2D/Dense layer (or,
with ``channel_groups=G``, ``G`` groups of channels per layer: the channels
sorted by their noise at the reference width and cut into ``G`` runs of nearly
equal size, so a group holds channels of similar sensitivity) plus the
activation tensors of :func:`fxp.opt.noise.measure_noise`.  Item ``i`` at
width ``b`` has a noise ``n_ib`` (logits NSR, linear:
:mod:`fxp.opt.channel_noise` for weights, the measured table for activations)
and a cost ``c_ib`` (weight bits: ``weights in the item * b``; activations cost
nothing).  With one binary ``x_ib`` per item and width::

    minimise   sum c_ib x_ib
    subject to sum_b x_ib = 1            for every item
               sum n_ib x_ib <= 10**(-target_db / 10)

or, with ``max_weight_bits`` instead of a target, minimise the noise under
``sum c_ib x_ib <= max_weight_bits``.  A width that another width of the same
item beats in both cost and noise is removed first (it cannot be in any
optimum), then HiGHS solves the MILP (:func:`scipy.optimize.milp`,
``mip_rel_gap=0``): the optimum of the model, not a heuristic.  The answer is
re-checked with :func:`math.fsum`; a noise row violated by the solver's
feasibility tolerance is tightened and re-solved.

The plan.  Each weighted layer gets a per-channel weight spec
(:meth:`fxp.plan.plan.TensorSpec.per_channel`: channel ``c`` in its own
``fixed<b_c, I_c>``, the engine computing in the container LSB), activations
the formats of :func:`fxp.opt.model.plan_for_widths`, accumulators the
narrowest width that provably cannot overflow.

The search that turns a target into a plan (calibration check, selection and held-out
splits) is :func:`fxp.opt.channel_optimize.optimize_channel_widths`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from fxp.errors import PlanError
from fxp.opt.channel_noise import ChannelNoise

__all__ = ["ChannelProblem", "brute_force_channels", "build_channel_problem", "channel_plan",
           "solve_channel_milp", "weight_memory_bits"]


@dataclass
class ChannelProblem:
    """Items, their width choices, noises and costs (see the module docstring).

    Attributes
    ----------
    items : list of (layer or tensor, tuple of channel indices or None)
        ``None`` channels: an activation tensor.
    widths, noise, cost : list of lists
        Per item, the candidate widths and each one's noise (linear NSR) and cost (bits).
    target_db : float or None
        Output SQNR target; or ``max_cost`` (bits).
    """

    items: list
    widths: list
    noise: list
    cost: list
    target_db: float | None = None
    max_cost: float | None = None

    @property
    def noise_budget(self) -> float:
        return 10.0 ** (-self.target_db / 10.0)

    def evaluate(self, choice) -> tuple[float, float]:
        """``(cost, noise)`` of one width index per item, summed exactly (fsum)."""
        return (math.fsum(self.cost[i][j] for i, j in enumerate(choice)),
                math.fsum(self.noise[i][j] for i, j in enumerate(choice)))

    def feasible(self, choice) -> bool:
        cost, noise = self.evaluate(choice)
        if self.target_db is not None:
            return noise <= self.noise_budget
        return cost <= self.max_cost


def _pareto(widths, noise, cost) -> list[int]:
    """Indices of the choices no other choice beats in both cost and noise (ties: first)."""
    keep = []
    for j in range(len(widths)):
        dominated = any((cost[k] <= cost[j] and noise[k] <= noise[j]) and
                        (cost[k] < cost[j] or noise[k] < noise[j] or k < j)
                        for k in range(len(widths)) if k != j)
        if not dominated:
            keep.append(j)
    return keep


def build_channel_problem(noises: dict[str, ChannelNoise], act_noise: dict[str, dict[int, float]],
                          *, target_db: float | None = None, max_cost: float | None = None,
                          channel_groups: int | None = None) -> ChannelProblem:
    """The MILP's data; ``act_noise``: tensor -> {width: NSR} for the activations."""
    if (target_db is None) == (max_cost is None):
        raise PlanError("give exactly one of an SQNR target and a weight-memory budget")
    if channel_groups is not None and channel_groups < 1:
        raise PlanError(f"channel_groups must be >= 1, got {channel_groups}")
    items, widths, noise, cost = [], [], [], []
    for name, cn in noises.items():
        nm = cn.noise()
        if channel_groups is None or channel_groups >= cn.n_channels:
            groups = [np.array([c]) for c in range(cn.n_channels)]
        else:
            order = np.argsort(nm[:, cn.widths.index(cn.ref_width)] / cn.sizes, kind="stable")
            groups = [np.sort(g) for g in np.array_split(order, channel_groups)]
        for g in groups:
            items.append((name, tuple(int(c) for c in g)))
            widths.append(list(cn.widths))
            noise.append([float(math.fsum(nm[g, j])) for j in range(len(cn.widths))])
            cost.append([float(int(cn.sizes[g].sum()) * b) for b in cn.widths])
    for t, table in act_noise.items():
        items.append((t, None))
        ws = sorted(table)
        widths.append(ws)
        noise.append([float(table[b]) for b in ws])
        cost.append([0.0] * len(ws))
    return ChannelProblem(items, widths, noise, cost, target_db, max_cost)


def solve_channel_milp(p: ChannelProblem, *, time_limit_s: float = 60.0) -> list[int] | None:
    """The optimal width index per item, or None when no choice is feasible."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix

    from fxp.opt.solve import _quiet_stdout

    keeps = [_pareto(w, n, c) for w, n, c in zip(p.widths, p.noise, p.cost, strict=True)]
    cols = [(i, j) for i, kj in enumerate(keeps) for j in kj]
    nvar = len(cols)
    noise = np.array([p.noise[i][j] for i, j in cols])
    cost = np.array([p.cost[i][j] for i, j in cols])
    rows = np.array([i for i, _ in cols])
    onehot = csr_matrix((np.ones(nvar), (rows, np.arange(nvar))), shape=(len(keeps), nvar))
    if p.target_db is not None:
        cap = p.noise_budget
        if math.fsum(min(n) for n in p.noise) > cap:
            return None
        scale, objective, row = 1.0 / cap, cost / max(1.0, cost.max()), noise
    else:
        cap = p.max_cost
        if math.fsum(min(c) for c in p.cost) > cap:
            return None
        scale, objective, row = 1.0 / max(cap, 1.0), noise / max(noise.max(), 1e-300), cost
    rhs = cap
    for _ in range(5):
        with _quiet_stdout(True):  # HiGHS prints a stray line from C, even when silent
            res = milp(objective, integrality=np.ones(nvar), bounds=Bounds(0, 1),
                       constraints=[LinearConstraint(onehot, 1, 1),
                                    LinearConstraint(row[None, :] * scale, -np.inf,
                                                     rhs * scale)],
                       options={"mip_rel_gap": 0.0, "time_limit": time_limit_s})
        if res.x is None:
            return None
        x = np.round(res.x).astype(int)
        choice = [0] * len(keeps)
        for (i, j), v in zip(cols, x, strict=True):
            if v:
                choice[i] = j
        if p.feasible(choice):
            return choice
        used = p.evaluate(choice)[0 if p.target_db is None else 1]
        rhs -= (used - cap) * 1.0001 + cap * 1e-12  # solver tolerance: tighten and re-solve
    raise PlanError("the channel-width MILP kept violating its budget by the solver's "
                    "feasibility tolerance; loosen the target")


def brute_force_channels(p: ChannelProblem) -> tuple[float, list[int]] | None:
    """Exhaustive optimum ``(objective, choice)`` (small problems only; for tests)."""
    best = None
    for choice in itertools.product(*[range(len(w)) for w in p.widths]):
        if not p.feasible(choice):
            continue
        cost, noise = p.evaluate(choice)
        obj = cost if p.target_db is not None else noise
        if best is None or obj < best[0]:
            best = (obj, list(choice))
    return best


def weight_memory_bits(graph, plan) -> int:
    """Weight bits of a power-of-two plan: per channel ``size_c * b_c``, else ``size * b``."""
    total = 0
    for node in graph.nodes:
        lp = plan.layer(node.name)
        if lp is None or lp.weight is None or lp.float_layer:
            continue
        if lp.weight.channel_formats is not None:
            per = node.weight[0].size
            total += per * sum(f.bits for f in lp.weight.channel_formats)
        else:
            total += node.weight.size * lp.weight.fmt.bits
    return int(total)


def channel_plan(graph, calib_x, act_table, noises: dict[str, ChannelNoise],
                 p: ChannelProblem, choice, *, name: str | None = None):
    """The plan of a solved problem: per-channel weight specs, measured activation formats."""
    from fxp.opt.model import plan_for_widths
    from fxp.plan.plan import TensorSpec
    from fxp.sim.compile import compile_plan

    bits: dict[str, np.ndarray] = {n: np.zeros(cn.n_channels, np.int64)
                                   for n, cn in noises.items()}
    acts = {}
    for (name_i, chans), ws, j in zip(p.items, p.widths, choice, strict=True):
        if chans is None:
            acts[name_i] = ws[j]
        else:
            bits[name_i][list(chans)] = ws[j]
    plan = plan_for_widths(graph, calib_x, act_table, acts, acc_bits=64, name=name)
    for layer, cn in noises.items():
        fmts = [cn.format_of(c, int(b)) for c, b in enumerate(bits[layer])]
        plan = plan.replace_layer(layer, weight=TensorSpec.per_channel(fmts))
    for s in compile_plan(graph, plan).steps:
        if s.worst_case_bits is not None:
            if s.worst_case_bits > 64:
                raise PlanError(f"layer {s.name!r}: the per-channel weights need a "
                                f"{s.worst_case_bits}-bit accumulator (more than 64)")
            plan = plan.replace_layer(s.name, acc_bits=max(2, s.worst_case_bits))
    return plan, bits
