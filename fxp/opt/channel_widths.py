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
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from fxp.errors import PlanError
from fxp.opt.channel_noise import ChannelNoise

__all__ = ["ChannelAllocation", "ChannelProblem", "brute_force_channels",
           "build_channel_problem", "channel_plan", "optimize_channel_widths",
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
        res = milp(objective, integrality=np.ones(nvar), bounds=Bounds(0, 1),
                   constraints=[LinearConstraint(onehot, 1, 1),
                                LinearConstraint(row[None, :] * scale, -np.inf, rhs * scale)],
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


@dataclass
class ChannelAllocation:
    """Result of :func:`optimize_channel_widths` (scipy ``OptimizeResult`` shape).

    Attributes
    ----------
    success : bool
        A plan was found and (when verified) its measured SQNR is at least the target
        minus 0.5 dB; with a memory budget, the plan fits it.
    message : str
    plan : Plan or None
    target_sqnr_db, max_weight_bits : float or None
        The goal: an SQNR target, or a weight-memory budget (bits).
    predicted_sqnr_db, measured_sqnr_db : float
        Model prediction; integer-engine measurement on the held-out samples (None unverified).
    float_top1, fixed_top1 : float or None
        Held-out top-1 of the float model and of the plan.
    weight_memory_bits : int
        ``sum_c size_c * b_c`` over every weighted layer.
    channel_bits : dict layer -> int array [C]
    act_bits : dict tensor -> int
    n_variables : int
        Binaries of the MILP after removing dominated widths.
    solve_time_s, total_time_s : float
        MILP solve time (all refinements) and the whole call.
    """

    success: bool
    message: str
    plan: object
    target_sqnr_db: float | None
    max_weight_bits: float | None
    predicted_sqnr_db: float
    measured_sqnr_db: float | None
    float_top1: float | None
    fixed_top1: float | None
    weight_memory_bits: int
    channel_bits: dict
    act_bits: dict
    n_variables: int
    solve_time_s: float
    total_time_s: float

    def to_dict(self) -> dict:
        return {"success": self.success, "message": self.message,
                "target_sqnr_db": self.target_sqnr_db, "max_weight_bits": self.max_weight_bits,
                "predicted_sqnr_db": self.predicted_sqnr_db,
                "measured_sqnr_db": self.measured_sqnr_db, "float_top1": self.float_top1,
                "fixed_top1": self.fixed_top1, "weight_memory_bits": self.weight_memory_bits,
                "channel_bits": {k: [int(b) for b in v] for k, v in self.channel_bits.items()},
                "act_bits": dict(self.act_bits), "n_variables": self.n_variables,
                "solve_time_s": self.solve_time_s, "total_time_s": self.total_time_s}


def _xy(data):
    if hasattr(data, "x"):
        return np.asarray(data.x), np.asarray(data.y)
    if isinstance(data, tuple):
        return np.asarray(data[0]), np.asarray(data[1])
    return np.asarray(data), None


def optimize_channel_widths(graph, data, target_sqnr_db: float | None = None, *,
                            max_weight_bits: float | None = None, widths=range(2, 11),
                            act_widths=range(2, 17), channel_groups: int | None = None,
                            calib: int = 1000, eval_data=None, n_measure: int = 256,
                            n_channel: int = 64, noises: dict | None = None, act_table=None,
                            method: str = "minmax", rounding: str = "half_up",
                            verify: bool = True, tolerance_db: float = 0.25,
                            max_refine: int = 3, time_limit_s: float = 60.0
                            ) -> ChannelAllocation:
    """Cheapest per-channel weight widths (and per-tensor activation widths) for a target.

    Parameters
    ----------
    graph : Graph
        Canonical graph (:func:`fxp.workflow.load_model`).
    data : fxp.workflow.Data, ``(x, y)`` or array x
        The first ``calib`` samples calibrate and measure the noise; the rest (or
        ``eval_data``) is held out for the integer engine's measurement.
    target_sqnr_db : float, optional
        Output (logits) SQNR target (dB); or ``max_weight_bits``: the best SQNR
        whose weight memory is at most that many bits.
    widths, act_widths : iterables of int
        Candidate weight and activation widths.
    channel_groups : int, optional
        ``G`` groups of channels per layer share one width (default: every
        channel its own).
    n_measure, n_channel : int
        Samples of the activation noise table and of the per-channel measurement.
    noises, act_table : optional
        :func:`~fxp.opt.channel_noise.measure_channel_noise` output and an
        activation :class:`~fxp.opt.noise.NoiseTable` measured before (same ``calib``).
    verify, tolerance_db, max_refine :
        As :func:`fxp.opt.solve.optimize_bits`: a measured SQNR more than
        ``tolerance_db`` below the target raises the internal target by the
        shortfall and re-solves (at most ``max_refine`` times).

    Raises
    ------
    PlanError
        Neither or both of ``target_sqnr_db`` and ``max_weight_bits``.
    """
    from fxp.opt.channel_noise import measure_channel_noise
    from fxp.opt.noise import measure_noise, quantizable_tensors
    from fxp.sim.evaluate import simulate

    t_start = time.perf_counter()
    if (target_sqnr_db is None) == (max_weight_bits is None):
        raise PlanError("give exactly one of target_sqnr_db and max_weight_bits")
    x, y = _xy(data)
    cx = x[:calib]
    if eval_data is not None:
        ex, ey = _xy(eval_data)
    else:
        ex, ey = (x[calib:], None if y is None else y[calib:]) if x.shape[0] > calib \
            else (cx, None if y is None else y[:calib])
    if act_table is None:
        acts = [t.name for t in quantizable_tensors(graph) if t.kind == "act"]
        act_table = measure_noise(graph, cx, widths=act_widths, n_measure=n_measure,
                                  method=method, rounding=rounding, tensors=acts)
    if noises is None:
        noises = measure_channel_noise(graph, cx, widths=widths, n_measure=n_channel,
                                       rounding=rounding)
    act_noise = {t.name: {b: act_table.noise(t.name, b) for b in act_table.widths}
                 for t in act_table.tensors if t.kind == "act"}
    goal, solve_s, res = target_sqnr_db, 0.0, None
    for _ in range(max_refine + 1):
        p = build_channel_problem(noises, act_noise, target_db=goal, max_cost=max_weight_bits,
                                  channel_groups=channel_groups)
        t0 = time.perf_counter()
        choice = solve_channel_milp(p, time_limit_s=time_limit_s)
        solve_s += time.perf_counter() - t0
        nvar = sum(len(_pareto(w, n, c)) for w, n, c in zip(p.widths, p.noise, p.cost,
                                                              strict=True))
        if choice is None:
            best = -10 * math.log10(max(math.fsum(min(n) for n in p.noise), 1e-300))
            msg = (f"no widths meet {goal:g} dB (best predicted {best:.2f} dB)"
                   if max_weight_bits is None else
                   f"no widths fit {max_weight_bits:g} weight bits (least "
                   f"{math.fsum(min(c) for c in p.cost):g})")
            return ChannelAllocation(False, msg, None, target_sqnr_db, max_weight_bits, math.nan,
                                     None, None, None, 0, {}, {}, nvar, solve_s,
                                     time.perf_counter() - t_start)
        cost, noise = p.evaluate(choice)
        pred = math.inf if noise == 0 else -10 * math.log10(noise)
        plan, bits = channel_plan(graph, cx, act_table, noises, p, choice,
                                  name=f"channel-widths-{goal if goal else 'budget'}")
        acts = {n: w[j] for (n, ch), w, j in zip(p.items, p.widths, choice, strict=True)
                if ch is None}
        rep = None
        if verify:
            labels = ey if ey is not None else np.zeros(ex.shape[0], np.int64)
            rep = simulate(graph, plan, ex, labels, batch_size=500)
        res = (plan, bits, acts, pred, rep, cost)
        if rep is None or target_sqnr_db is None or \
                rep.output_sqnr_db >= target_sqnr_db - tolerance_db:
            break
        goal += target_sqnr_db - rep.output_sqnr_db
    plan, bits, acts, pred, rep, cost = res
    measured = None if rep is None else float(rep.output_sqnr_db)
    ok = measured is None or target_sqnr_db is None or measured >= target_sqnr_db - 0.5
    msg = ("unverified" if rep is None else
           f"measured {measured:.2f} dB on {ex.shape[0]} held-out samples") + \
        ("" if ok else f", below the target {target_sqnr_db:g} dB by more than 0.5 dB")
    has_y = rep is not None and ey is not None
    return ChannelAllocation(ok, msg, plan, target_sqnr_db, max_weight_bits, pred, measured,
                             float(rep.float_top1) if has_y else None,
                             float(rep.fixed_top1) if has_y else None,
                             weight_memory_bits(graph, plan), bits, acts, nvar, solve_s,
                             time.perf_counter() - t_start)
