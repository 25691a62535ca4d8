"""The hardware cost models of :mod:`fxp.opt.hardware` applied to a network and its noise table.

:class:`HardwareModel` knows each layer with weights (its weight tensor and
input activation among the optimizer's tensors, weight count, MACs, outputs)
and turns a cost or budget into MILP data
(:class:`~fxp.opt.hardware_budgets.Terms` and
:class:`~fxp.opt.hardware_budgets.Budget`):

* FPGA ``lut``, ``dsp``, ``bram``, ``area`` and MCU ``cycles``: one table per
  layer over its ``(b_w, b_a)`` pairs (:func:`fxp.opt.hardware.fpga_layer`,
  :func:`fxp.opt.hardware.mcu_cycles`);
* MCU ``flash``: packed weight bytes per weight width, plus the biases in the
  accumulator's type per ``(b_w, b_a)`` (the proven accumulator width of
  that pair, read from the plan :func:`fxp.opt.model.plan_for_widths`
  builds, capped at ``acc_saturate``);
* MCU ``ram``: the TFLite Micro arena over the IR tensors
  (:func:`fxp.report.mcu.plan_resources`).  Each buffer's bytes follow the
  width of the activation it carries (a max-pool, ReLU or flatten keeps its
  input's coding), so the sum of the buffers live at one schedule step is
  linear: one row per step.  The greedy planner's head can exceed the largest
  live set; it is the budget's exact value, checked lazily (cuts on the
  activations' bytes per element).  Both reference plans (narrowest and
  widest activations) are checked buffer by buffer against
  :func:`~fxp.report.mcu.plan_resources` when the model is built.

The MILP's tensor indices are those of ``table.names``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import PlanError
from fxp.ir.nodes import (
    AvgPool2D,
    Clip,
    Conv2D,
    Dense,
    Flatten,
    GlobalAvgPool,
    MaxPool2D,
    ReLU,
    Reshape,
)
from fxp.ir.stats import node_macs
from fxp.opt.hardware import HardwareCosts, fpga_layer, fpga_layer_channels, mcu_cycles
from fxp.opt.hardware_budgets import Budget, Terms

__all__ = ["BUDGETS", "HW_COSTS", "HardwareModel", "LayerInfo"]

HW_COSTS = {"lut": "fpga", "dsp": "fpga", "bram": "fpga", "area": "fpga", "flash": "mcu",
            "cycles": "mcu"}
"""Hardware costs the optimizer can minimise, and their profile."""
BUDGETS = {"dsp": ("DSP slices", "--max-dsp"), "lut": ("LUTs", "--max-lut"),
           "bram": ("BRAM18 blocks", "--max-bram"), "flash": ("bytes", "--max-flash"),
           "ram": ("bytes", "--max-ram"), "cycles": ("cycles", "max cycles")}
"""Figures a budget can limit: unit and CLI option."""
_KEEPS_CODING = (MaxPool2D, ReLU, Clip, Flatten, Reshape, AvgPool2D, GlobalAvgPool)


def _stdint_bytes(bits: int) -> int:
    """Bytes of the smallest ``<stdint.h>`` type holding ``bits`` bits."""
    return next(w for w in (1, 2, 4, 8) if bits <= 8 * w)


@dataclass(frozen=True)
class LayerInfo:
    """A layer with weights, as the cost models see it.

    Attributes
    ----------
    name, kind : str
        Layer name; ``"conv"``, ``"depthwise"`` or ``"dense"``.
    weight, act : int
        Indices (in ``table.names``) of its weights and of its input activation.
    n_weights, macs, outputs, n_bias : int
        Weight count, MACs per sample, output elements per sample, bias count.
    """

    name: str
    kind: str
    weight: int
    act: int
    n_weights: int
    macs: int
    outputs: int
    n_bias: int


class HardwareModel:
    """Cost tables of a graph's layers for the bit-allocation MILP (see the module docstring).

    Parameters
    ----------
    graph, table, calib_x
        The canonical graph, its :class:`~fxp.opt.noise.NoiseTable` and the
        calibration samples the plans are built from.
    costs : HardwareCosts
        :func:`fxp.opt.hardware.load_costs`.
    reuse_factor : int, optional
        Overrides the cost file's default FPGA reuse factor.
    acc_saturate : int, optional
        Accumulators are capped at this width (bias type of the flash model).
    """

    def __init__(self, graph, table, calib_x, costs: HardwareCosts, *,
                 reuse_factor: int | None = None, acc_saturate: int | None = None):
        self.graph, self.table, self.calib_x, self.costs = graph, table, calib_x, costs
        self.reuse_default = reuse_factor
        self.acc_saturate = acc_saturate
        self._acc: dict[tuple[int, int], dict[str, int]] = {}
        act_of = {c: i for i, t in enumerate(table.tensors) for c in t.consumers}
        self.layers = []
        self.unmodelled: list[str] = []
        """Layers whose input width is not an optimizer variable (no per-layer costs)."""
        for i, t in enumerate(table.tensors):
            if t.kind != "weight":
                continue
            node = graph.layer(t.layer)
            if t.layer not in act_of:
                self.unmodelled.append(t.layer)
                continue
            out = graph.shapes[node.output]
            kind = "dense" if isinstance(node, Dense) else "depthwise" if (
                isinstance(node, Conv2D) and node.groups > 1 and node.weight.shape[1] == 1) \
                else "conv"
            self.layers.append(LayerInfo(
                t.layer, kind, i, act_of[t.layer], int(node.weight.size),
                int(node_macs(node, out)), int(np.prod(out[1:], dtype=np.int64)),
                int(node.weight.shape[0])))

    # ------------------------------------------------------------------ helpers
    def reuse(self, layer: str) -> int:
        """FPGA reuse factor of ``layer``: the file's per-layer value, else ``reuse_factor``,
        else the file's default."""
        f = self.costs.fpga
        if layer in f.reuse_factor_layers or self.reuse_default is None:
            return f.reuse(layer)
        return int(self.reuse_default)

    def signed(self, index: int, bits: int) -> bool:
        """Whether tensor ``index`` is coded signed at ``bits`` (its measured format)."""
        name = self.table.names[index]
        fmt = self.table.formats.get(name, {}).get(int(bits))
        if fmt is None:
            raise PlanError(f"tensor {name!r} has no measured format at {bits} bits")
        return QFormat.parse(fmt).signed

    def fpga_layer(self, layer: LayerInfo, w_bits: int, a_bits: int) -> dict[str, float]:
        """:func:`fxp.opt.hardware.fpga_layer` of one layer, plus its ``area``."""
        f = self.costs.fpga
        d = fpga_layer(layer.n_weights, w_bits, a_bits, f, reuse=self.reuse(layer.name),
                       w_signed=self.signed(layer.weight, w_bits),
                       a_signed=self.signed(layer.act, a_bits))
        d["area"] = (f.area_weights["lut"] * d["lut"] + f.area_weights["dsp"] * d["dsp"]
                     + f.area_weights["bram"] * d["bram"])
        return d

    @staticmethod
    def channel_groups(layer: LayerInfo, plan) -> dict[int, int] | None:
        """``{width: weight count}`` of ``layer``'s per-channel weight in ``plan``; None when
        the plan gives the layer one weight format."""
        lp = plan.layer(layer.name)
        fmts = None if lp is None or lp.weight is None else lp.weight.channel_formats
        if fmts is None:
            return None
        per = layer.n_weights // len(fmts)
        groups: dict[int, int] = {}
        for f in fmts:
            groups[f.bits] = groups.get(f.bits, 0) + per
        return groups

    def fpga_layer_channels(self, layer: LayerInfo, groups: dict[int, int], a_bits: int,
                            plan) -> dict[str, float]:
        """:func:`fxp.opt.hardware.fpga_layer_channels` of one layer, plus its ``area``."""
        f = self.costs.fpga
        d = fpga_layer_channels(groups, a_bits, f, reuse=self.reuse(layer.name),
                                w_signed=plan.layer(layer.name).weight.fmt.signed,
                                a_signed=self.signed(layer.act, a_bits))
        d["area"] = (f.area_weights["lut"] * d["lut"] + f.area_weights["dsp"] * d["dsp"]
                     + f.area_weights["bram"] * d["bram"])
        return d

    def cycles(self, layer: LayerInfo, w_bits: int, a_bits: int) -> float | None:
        """MCU cycles of one layer (None: no ``w_bits x a_bits`` kernel)."""
        return mcu_cycles(layer.kind, layer.macs, layer.outputs, w_bits, a_bits,
                          self.costs.mcu)

    def mcu_allowed(self) -> dict[str, list[int]]:
        """Per tensor: the widths the MCU kernels support (weights / activations)."""
        m = self.costs.mcu
        return {t.name: list(m.weight_bits if t.kind == "weight" else m.act_bits)
                for t in self.table.tensors}

    def forbid_unsupported(self, widths: list[list[int]]) -> list[tuple[int, int, int, int]]:
        """``(weight, act, b_w, b_a)`` combinations without an MCU kernel."""
        return [(ly.weight, ly.act, bw, ba) for ly in self.layers for bw in widths[ly.weight]
                for ba in widths[ly.act] if self.cycles(ly, bw, ba) is None]

    # ------------------------------------------------------------------ MILP terms
    def _require_modelled(self, what: str) -> None:
        if self.unmodelled:
            more = f" (and {len(self.unmodelled) - 1} more)" if len(self.unmodelled) > 1 else ""
            raise PlanError(f"{what} needs each layer's input width, but the input of layer "
                            f"{self.unmodelled[0]!r}{more} is not one of the optimizer's "
                            f"tensors (a residual add or another op in between); use a proxy "
                            f"cost without budgets")

    def terms(self, metric: str, widths: list[list[int]]) -> Terms:
        """The figure ``metric`` (lut, dsp, bram, area, cycles, flash) as MILP terms."""
        self._require_modelled(f"the hardware figure {metric!r}")
        pair, unary = {}, {}
        forbid = set(self.forbid_unsupported(widths)) if metric == "cycles" else set()
        for ly in self.layers:
            tab = {}
            for bw in widths[ly.weight]:
                for ba in widths[ly.act]:
                    if metric == "cycles":
                        if (ly.weight, ly.act, bw, ba) not in forbid:
                            tab[(bw, ba)] = self.cycles(ly, bw, ba)
                    elif metric == "flash":
                        tab[(bw, ba)] = float(ly.n_bias * _stdint_bytes(self.acc_bits(bw, ba)[
                            ly.name]))
                    elif metric in ("lut", "dsp", "bram", "area"):
                        tab[(bw, ba)] = float(self.fpga_layer(ly, bw, ba)[metric])
                    else:
                        raise PlanError(f"unknown hardware figure {metric!r}; use one of "
                                        f"{sorted(BUDGETS)}")
            self._add(pair, (ly.weight, ly.act), tab)
            if metric == "flash":
                from fxp.report.mcu import packed_bytes

                unary[ly.weight] = {bw: float(packed_bytes(ly.n_weights, bw))
                                    for bw in widths[ly.weight]}
        return Terms(unary, pair)

    @staticmethod
    def _add(pair: dict, key: tuple[int, int], tab: dict) -> None:
        if key in pair:
            for k, v in tab.items():
                pair[key][k] += v
        else:
            pair[key] = tab

    def acc_bits(self, w_bits: int, a_bits: int) -> dict[str, int]:
        """Accumulator bits of every layer with all weights at ``w_bits``, activations at
        ``a_bits`` (the proven width, capped at ``acc_saturate``); cached."""
        key = (int(w_bits), int(a_bits))
        if key not in self._acc:
            from fxp.opt.model import plan_for_widths

            w = {t.name: key[0] if t.kind == "weight" else key[1] for t in self.table.tensors}
            plan = plan_for_widths(self.graph, self.calib_x, self.table, w)
            cap = self.acc_saturate or 64
            self._acc[key] = {ly.name: min(cap, plan.layer(ly.name).acc_bits)
                              for ly in self.layers}
        return self._acc[key]

    # ------------------------------------------------------------------ RAM
    def _source(self, tensor: str) -> int | None:
        """Index of the activation whose coding ``tensor`` carries, or None."""
        names = self.table.names
        while True:
            if tensor in names and self.table.tensors[names.index(tensor)].kind == "act":
                return names.index(tensor)
            node = self.graph.producer(tensor)
            if node is None or not isinstance(node, _KEEPS_CODING):
                return None
            tensor = node.inputs[0]

    def _buffers(self, widths: dict[str, int]):
        from fxp.opt.model import plan_for_widths
        from fxp.report.mcu import plan_resources

        plan = plan_for_widths(self.graph, self.calib_x, self.table, widths)
        return plan_resources(self.graph, plan).arena.buffers

    def ram_budget(self, limit: float, widths: list[list[int]]) -> Budget:
        """Peak activation RAM (TFLM greedy arena head, bytes) ``<= limit`` as a Budget."""
        from fxp.report.arena import Buffer, align_up, plan_arena

        self._require_modelled("the RAM budget")
        names = self.table.names
        refs = [{n: (min(w) if k == 0 else max(w)) for n, w in zip(names, widths, strict=True)}
                for k in (0, 1)]
        ref_bufs = [self._buffers(r) for r in refs]
        layout = []  # (name, elements, source index or None, constant bytes, first, last)
        for b in ref_bufs[0]:
            shape = self.graph.shapes.get(b.name)
            if shape is None:
                raise PlanError(f"the RAM model cannot size tensor {b.name!r} (not in the graph)")
            elems = int(np.prod([d or 1 for d in shape[1:]] or [1]))
            src = self._source(b.name)
            layout.append((b.name, elems, src, b.size, b.first, b.last))

        def size(entry, w: list[int]) -> int:
            _, elems, src, const, _, _ = entry
            return const if src is None else align_up(elems * _stdint_bytes(w[src]))

        for r, bufs in zip(refs, ref_bufs, strict=True):
            w = [r[n] for n in names]
            got = {b.name: b.size for b in bufs}
            for e in layout:
                if got.get(e[0]) != size(e, w):
                    raise PlanError(f"the RAM model cannot follow the bytes of tensor {e[0]!r} "
                                    f"(predicted {size(e, w)}, the plan has {got.get(e[0])})")
        rows, seen = [], set()
        for s in sorted({x for e in layout for x in range(e[4], e[5] + 1)}):
            live = tuple(e for e in layout if e[4] <= s <= e[5])
            key = tuple(e[0] for e in live)
            if key in seen:
                continue
            seen.add(key)
            t = Terms()
            for e in live:
                if e[2] is None:
                    t.constant += e[3]
                else:
                    row = t.unary.setdefault(e[2], {b: 0.0 for b in widths[e[2]]})
                    for b in widths[e[2]]:
                        row[b] += size(e, [b if i == e[2] else 0 for i in range(len(names))])
            rows.append(t)

        def head(w: list[int]) -> float:
            return float(plan_arena([Buffer(e[0], size(e, w), e[4], e[5])
                                     for e in layout]).head_bytes)

        srcs = sorted({e[2] for e in layout if e[2] is not None})
        classes = {i: {b: _stdint_bytes(b) for b in widths[i]} for i in srcs}
        unit, opt = BUDGETS["ram"]
        return Budget("ram", limit, rows, unit, opt, exact=head, classes=classes)

    # ------------------------------------------------------------------ the problem
    def extras(self, widths: list[list[int]], *, cost: str | None = None,
               budgets: dict | None = None, target: str | None = None):
        """``(objective, budgets, forbid)`` for an :class:`~fxp.opt.problem.AllocationProblem`
        over the allowed ``widths`` (one list per tensor of ``table.names``).

        ``cost`` (a key of :data:`HW_COSTS`) gives the objective terms;
        ``budgets`` maps figures of :data:`BUDGETS` to limits; ``target="mcu"``
        or a cycles cost/budget forbids pairs without a kernel.
        """
        buds = []
        for name, limit in (budgets or {}).items():
            if name not in BUDGETS:
                raise PlanError(f"unknown budget {name!r}; use one of {sorted(BUDGETS)}")
            if limit is None:
                continue
            unit, opt = BUDGETS[name]
            if name == "ram":
                buds.append(self.ram_budget(limit, widths))
            else:
                buds.append(Budget(name, limit, [self.terms(name, widths)], unit, opt))
        objective = None
        if cost is not None:
            if cost not in HW_COSTS:
                raise PlanError(f"unknown hardware cost {cost!r}; use one of {sorted(HW_COSTS)}")
            objective = self.terms(cost, widths)
        uses_cycles = cost == "cycles" or "cycles" in (budgets or {})
        if target == "mcu" or uses_cycles:
            self._require_modelled("the MCU kernel restriction")
        forbid = self.forbid_unsupported(widths) if target == "mcu" or uses_cycles else []
        return objective, buds, forbid

    # ------------------------------------------------------------------ report
    def report(self, widths: dict[str, int], plan) -> dict:
        """The chosen plan's figures in every profile (JSON-ready).

        FPGA from the widths, except a layer whose plan weight has per-channel
        formats: costed by :meth:`fpga_layer_channels` at each channel's own
        width (its row's ``w_bits`` is the widest channel, which also picks its
        MCU kernel; ``channel_w_bits`` counts channels per width); MCU flash and RAM
        from the plan itself
        (:func:`fxp.report.mcu.plan_resources`: its real accumulator widths
        and formats); cycles None when a layer has no MCU kernel.
        """
        from fxp.report.arena import max_live_bytes
        from fxp.report.mcu import plan_resources

        names = self.table.names
        fp, cyc, rows = {"lut": 0, "dsp": 0, "bram": 0, "area": 0.0}, 0.0, []
        for ly in self.layers:
            bw, ba = int(widths[names[ly.weight]]), int(widths[names[ly.act]])
            groups = self.channel_groups(ly, plan)
            if groups is None:
                d = self.fpga_layer(ly, bw, ba)
            else:  # per-channel widths: each channel at its own width, not the container's
                bw = max(groups)
                d = self.fpga_layer_channels(ly, groups, ba, plan)
            c = self.cycles(ly, bw, ba)
            cyc = None if (cyc is None or c is None) else cyc + c
            for k in fp:
                fp[k] += d[k]
            rows.append({"layer": ly.name, "kind": ly.kind, "w_bits": bw, "a_bits": ba,
                         "channel_w_bits": None if groups is None else {
                             b: n // (ly.n_weights // ly.n_bias) for b, n in groups.items()},
                         "multipliers": d["multipliers"], "reuse_factor": self.reuse(ly.name),
                         "lut": d["lut"], "dsp": d["dsp"], "bram": d["bram"],
                         "cycles": None if c is None else round(c, 1)})
        res = plan_resources(self.graph, plan)
        f = self.costs.fpga
        if self.unmodelled:  # a layer without a width pair: no per-layer FPGA/cycle figures
            fp, cyc = dict.fromkeys(fp), None
        return {"cost_file": self.costs.source, "unmodelled_layers": list(self.unmodelled),
                "fpga": {"dsp_slice": f.dsp, **fp,
                         "area": None if fp["area"] is None else round(fp["area"], 1)},
                "mcu": {"flash_bytes": res.flash_bytes, "ram_bytes": res.head_bytes,
                        "max_live_bytes": max_live_bytes(res.arena.buffers),
                        "cycles": None if cyc is None else round(cyc, 1)},
                "layers": rows}
