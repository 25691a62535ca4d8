"""MCU resources of a model: flash bytes per layer and the TFLite Micro arena (peak activation RAM).

Two sources, one record (:class:`McuResources`):

* :func:`tflite_resources` reads a ``.tflite`` flatbuffer and computes what
  TFLite Micro does with it (:mod:`fxp.report.mcu_tflite`);
* :func:`plan_resources` takes any fxp ``(Graph, Plan)`` (power-of-two or
  affine) with its compiled formats (:func:`fxp.sim.compile.compile_plan`).

**Flash** (read-only memory).  From a ``.tflite``: each operator's constant
tensors at ``element count x bytes per element`` (int8 1, int16 2, int32 4,
int64 8; int4 packed two per byte, as TFLite stores it): ``weights`` (input 1
of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV), ``bias``
(their input 2: int32, int64 for int16x8) and ``other`` constants (shapes,
axes); a tensor shared by several operators counts at its first use.
``quant`` is the payload of those tensors' quantization vectors in the
flatbuffer: float32 ``scale`` and int64 ``zero_point``, one per channel for
per-channel weights and biases.  The file (``file_bytes``) also holds the
graph, tensor descriptions and padding.  From an fxp plan, the layout of
``fxp export c``: weight codes packed by :func:`packed_bytes`, bias codes in
the accumulator's ``<stdint.h>`` type (int32; int64 for 64-bit accumulators),
and per-channel requantization constants in ``quant`` (``int32`` multiplier +
``int8`` exponent, or a float32 scale; none for a power-of-two shift).
A weight with per-channel widths (``TensorSpec.channel_formats``) is sized by
each channel's own width, not the container's: channel ``c``'s codes packed
by :func:`packed_bytes` at ``b_c`` bits (each channel starting on a byte), and
in ``quant`` the three one-byte tables ``fxp export c`` writes per channel
(width, integer bits, left shift to the common LSB; :data:`CHANNEL_TABLE_BYTES`).
(The header itself stores every channel in the ``<stdint.h>`` type of the
widest channel; like 4-bit uniform codes, the flash figure assumes the packed
layout a kernel with per-channel unpacking would read.)

**RAM**.  TFLite Micro's arena *head* holds the non-persistent buffers
(activations and kernels' scratch buffers) placed by its greedy planner
(:mod:`fxp.report.arena`): ``head_bytes`` is the peak activation RAM, exact
for a ``.tflite`` (equal to TFLM's figure on every model tested).  For an fxp
plan the same planner runs over the IR tensors in execution order (batch 1,
each tensor in its format's ``<stdint.h>`` type, float tensors 4 bytes, no
scratch buffers).  The arena *tail* holds persistent allocations; the
per-channel requantization parameters of a ``.tflite`` live there, not in
flash: TFLM computes an ``int32`` multiplier and an ``int32`` shift per
output channel in ``Prepare`` (``arena_param_bytes``).  The rest of the tail
(tensor and node structs, kernels' ``OpData``, allocator objects) depends on
the build's pointer width and struct layouts and is not modelled, so
``arena_lower_bound_bytes = head_bytes + persistent_bytes`` is a **lower
bound** of the arena TFLM needs (int8 ``mnist_cnn``: head 27,040 bytes; the
x86-64 host build's tail is 2,816 bytes, 848 of them these arrays).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from fxp.errors import PlanError, UnsupportedOpError
from fxp.report.arena import ArenaPlan, Buffer, align_up, max_live_bytes, plan_arena

__all__ = ["CHANNEL_TABLE_BYTES", "COLUMNS", "LayerResources", "McuResources", "layer_rows", "model_resources",
           "packed_bytes", "plan_resources", "summary_lines", "tflite_resources"]


@dataclass(frozen=True)
class LayerResources:
    """Resources of one layer (an fxp layer, or a ``.tflite`` operator).

    Attributes
    ----------
    name, op : str
        Layer name (for a ``.tflite``: the fxp IR node implementing the
        operator) and operator / node type.
    weight_bytes, bias_bytes, other_bytes : int
        Flash bytes of the weights, biases and other constants.
    quant_bytes : int
        Flash bytes of quantization / requantization parameters (see the module docstring).
    arena_param_bytes : int
        Persistent arena bytes the kernel's ``Prepare`` fills (TFLM per-channel
        multiplier + shift, softmax tables; ``.tflite`` only).
    live_bytes : int
        Arena head bytes live while the layer runs (aligned buffers, scratch included).
    """

    name: str
    op: str
    weight_bytes: int
    bias_bytes: int
    other_bytes: int
    quant_bytes: int
    arena_param_bytes: int
    live_bytes: int

    @property
    def flash_bytes(self) -> int:
        """Flash bytes of this layer's constants and parameters."""
        return self.weight_bytes + self.bias_bytes + self.other_bytes + self.quant_bytes


@dataclass(frozen=True)
class McuResources:
    """Flash and RAM of one model (see the module docstring for what each figure counts).

    Attributes
    ----------
    source : {"tflite", "plan"}
        A ``.tflite`` read as TFLite Micro would run it, or an fxp plan over IR tensors.
    layers : tuple of LayerResources
    arena : ArenaPlan
        The greedy planner's buffers, offsets and head size (bytes).
    persistent_bytes : int
        Modelled persistent (tail) bytes: per-channel arrays, tables, variables.
    file_bytes : int or None
        Size of the ``.tflite`` file (None for a plan).
    notes : tuple of str
        What the figures leave out for this model.
    """

    source: str
    layers: tuple[LayerResources, ...]
    arena: ArenaPlan
    persistent_bytes: int
    file_bytes: int | None = None
    notes: tuple[str, ...] = ()

    def _total(self, key: str) -> int:
        return sum(getattr(r, key) for r in self.layers)

    @property
    def flash_bytes(self) -> int:
        """Weights + biases + other constants + quantization parameters, bytes."""
        return self._total("flash_bytes")

    @property
    def head_bytes(self) -> int:
        """Peak activation RAM: TFLM's arena head as its greedy planner sizes it, bytes."""
        return self.arena.head_bytes

    @property
    def arena_lower_bound_bytes(self) -> int:
        """``head_bytes + persistent_bytes``: a lower bound of TFLM's whole arena, bytes."""
        return self.arena.head_bytes + self.persistent_bytes

    def to_dict(self) -> dict:
        """JSON-ready dict: totals, per-layer rows and the planned buffers."""
        keys = ("weight_bytes", "bias_bytes", "other_bytes", "quant_bytes", "arena_param_bytes")
        return {"source": self.source, "flash_bytes": self.flash_bytes,
                **{k: self._total(k) for k in keys}, "file_bytes": self.file_bytes,
                "arena_head_bytes": self.head_bytes,
                "max_live_bytes": max_live_bytes(self.arena.buffers),
                "persistent_bytes": self.persistent_bytes,
                "arena_lower_bound_bytes": self.arena_lower_bound_bytes,
                "notes": list(self.notes),
                "layers": layer_rows(self),
                "buffers": [{**asdict(b), "offset": o}
                            for b, o in zip(self.arena.buffers, self.arena.offsets)]}


def packed_bytes(n: int, bits: int) -> int:
    """Flash bytes of ``n`` codes of ``bits`` bits.

    Packing rule: 1-bit (binary) codes 8 per byte; 2..4-bit codes two per
    byte (TFLite's int4 layout, low nibble first; TFLM has no narrower type,
    so 2- and 3-bit codes are stored as int4); wider codes in the smallest
    ``<stdint.h>`` type (8, 16, 32 or 64 bits).

    >>> packed_bytes(9, 1), packed_bytes(9, 4), packed_bytes(9, 8), packed_bytes(9, 12)
    (2, 5, 9, 18)
    """
    if bits <= 1:
        return -(-n // 8)
    if bits <= 4:
        return -(-n // 2)
    return n * next(w for w in (1, 2, 4, 8) if bits <= 8 * w)


CHANNEL_TABLE_BYTES = 3
"""Flash bytes per output channel of a per-channel weight's tables, as ``fxp export c``
writes them: ``NAME_w_bits`` (uint8), ``NAME_w_int_bits`` (int8), ``NAME_w_lshift`` (uint8)."""


def _live(buffers: tuple[Buffer, ...], scope: int) -> int:
    return sum(b.size for b in buffers if b.first <= scope <= b.last)


def tflite_resources(source: str | os.PathLike | bytes, graph=None) -> McuResources:
    """Flash and TFLite Micro arena of a ``.tflite`` model (one subgraph).

    Parameters
    ----------
    source : path or bytes
        The flatbuffer.
    graph : Graph, optional
        The model as :func:`fxp.frontends.tflite.load_tflite` read it: rows
        are then named by its IR nodes (else ``op<i>``).

    Raises
    ------
    ModelImportError
        Unreadable file, several subgraphs, a tensor type without a byte size.
    MissingDependencyError
        The ``tflite`` package is not installed.
    """
    from fxp.report.mcu_tflite import read_tflite_resources

    return read_tflite_resources(source, graph)


# --------------------------------------------------------------------------- fxp plans
def _elem_bytes(spec) -> int:
    """Bytes per activation element: the format's ``<stdint.h>`` type; float 4."""
    if spec is None:
        return 4
    return next(w for w in (1, 2, 4, 8) if spec.fmt.bits <= 8 * w)


def plan_resources(graph, plan) -> McuResources:
    """Flash (``fxp export c`` layout) and the greedy arena over IR tensors of ``(graph, plan)``.

    Raises
    ------
    PlanError, UnsupportedOpError
        The plan does not compile against the graph (:func:`fxp.sim.compile.compile_plan`).
    """
    from fxp.sim.compile import compile_plan

    model = compile_plan(graph, plan)
    g = model.graph
    inp = g.inputs[0]
    spec_of = {inp: plan.input}
    first, last = {inp: 0}, {inp: 0}
    for k, step in enumerate(model.steps, start=1):
        spec_of[step.node.output] = step.out_spec
        first.setdefault(step.node.output, k)
        for t in (*step.node.inputs, step.node.output):
            if t in first:
                last[t] = k
    for t in g.outputs:
        last[t] = len(model.steps)
    buffers = tuple(Buffer(t, align_up(int(np.prod([d or 1 for d in g.shapes[t][1:]] or [1]))
                                       * _elem_bytes(spec_of[t])), first[t], last[t])
                    for t in first)
    rows = [LayerResources(s.name, type(s.node).__name__, *_step_flash(s), 0,
                           _live(buffers, k)) for k, s in enumerate(model.steps, start=1)]
    return McuResources("plan", tuple(rows), plan_arena(buffers), 0)


def _step_flash(step) -> tuple[int, int, int, int]:
    """(weight, bias, other, quant) flash bytes of one compiled step."""
    lp = step.plan
    if lp is None or (step.w_codes is None and step.w_packed is None and not lp.float_layer):
        return 0, 0, 0, 0
    node = step.node
    if lp.float_layer:
        w = getattr(node, "weight", None)
        b = getattr(node, "bias", None)
        return (0 if w is None else 4 * w.size), (0 if b is None else 4 * b.size), 0, 0
    acc = next(w for w in (1, 2, 4, 8) if lp.acc_bits <= 8 * w)
    if step.is_binary:
        if step.thresholds is not None:  # int64 thresholds, int8 directions
            bias, quant = 8 * step.thresholds.size, step.directions.size
        else:  # bias codes in their format, alpha scale codes in theirs
            bias = 0 if step.b_codes is None else packed_bytes(step.b_codes.size,
                                                               max(step.b_fmt.bits, 8))
            quant = 0 if step.scale_codes is None else packed_bytes(step.scale_codes.size,
                                                                    max(step.scale_fmt.bits, 8))
        return packed_bytes(node.weight.size, 1), bias, 0, quant
    weight, quant = _weight_flash(step.w_codes.size, lp.weight)
    bias = 0 if step.b_codes is None else acc * step.b_codes.size
    if step.f32_scales is not None:
        quant += 4 * np.size(step.f32_scales)
    elif step.multipliers is not None:
        quant += 4 * np.size(step.multipliers) + np.size(step.exponents)
    return weight, bias, 0, int(quant)


def _weight_flash(n: int, spec) -> tuple[int, int]:
    """(weight code bytes, per-channel table bytes) of ``n`` weight codes coded by ``spec``.

    A per-channel spec (``spec.channel_formats``) stores channel ``c``'s
    ``n / C`` codes at its own width (:func:`packed_bytes`, each channel from
    a byte boundary) plus :data:`CHANNEL_TABLE_BYTES` per channel; otherwise
    all ``n`` codes at the format's width and no table.
    """
    fmts = spec.channel_formats
    if fmts is None:
        return packed_bytes(n, spec.fmt.bits), 0
    if n % len(fmts):
        raise PlanError(f"{n} weight codes do not split into {len(fmts)} channels")
    per = n // len(fmts)
    return sum(packed_bytes(per, f.bits) for f in fmts), CHANNEL_TABLE_BYTES * len(fmts)


# --------------------------------------------------------------------------- entry points
COLUMNS = [("name", "layer"), ("op", "op"), ("weight_bytes", "weights B"), ("bias_bytes", "bias B"),
           ("quant_bytes", "quant B"), ("other_bytes", "other B"), ("flash_bytes", "flash B"),
           ("arena_param_bytes", "arena params B"), ("live_bytes", "live RAM B")]
"""``[(key, header)]`` of :func:`layer_rows` for a text table."""


def model_resources(graph, plan, tflite_file: str | os.PathLike | None = None
                    ) -> tuple[McuResources | None, str | None]:
    """``(resources, None)``, or ``(None, reason)`` when none can be computed (for the CLI).

    ``tflite_file`` (a ``.tflite`` path) is read as TFLM runs it
    (:func:`tflite_resources`); otherwise ``plan`` over ``graph``
    (:func:`plan_resources`).  A float model without a plan, or a plan the
    integer engine cannot compile, gives the reason instead of raising.
    """
    if tflite_file is not None and str(tflite_file).lower().endswith(".tflite"):
        return tflite_resources(tflite_file, graph), None
    if plan is None:
        return None, "a float model has no integer formats; give a plan (fxp simulate --plan)"
    try:
        return plan_resources(graph, plan), None
    except (PlanError, UnsupportedOpError) as e:
        return None, f"the plan does not compile: {str(e)[:200]}"


def layer_rows(res: McuResources) -> list[dict]:
    """One dict per layer with the keys of :data:`COLUMNS`."""
    return [{**asdict(r), "flash_bytes": r.flash_bytes} for r in res.layers]


def summary_lines(res: McuResources) -> list[str]:
    """Text summary (the per-layer table is printed by the caller)."""
    d = res.to_dict()
    what = "TFLite Micro, this .tflite" if res.source == "tflite" else \
        "the plan's formats, IR tensors, batch 1"
    file = f" (file {d['file_bytes']:,} bytes)" if d["file_bytes"] is not None else ""
    lines = [f"MCU resources ({what}):",
             (f"  flash {d['flash_bytes']:,} bytes: weights {d['weight_bytes']:,}, biases "
              f"{d['bias_bytes']:,}, other constants {d['other_bytes']:,}, quantization "
              f"parameters {d['quant_bytes']:,}{file}"),
             (f"  peak activation RAM (TFLM greedy arena head, {len(res.arena.buffers)} "
              f"buffers, 16-byte aligned) {d['arena_head_bytes']:,} bytes; max live "
              f"{d['max_live_bytes']:,} bytes")]
    if res.source == "tflite":
        lines.append(f"  TFLM arena >= {d['arena_lower_bound_bytes']:,} bytes (lower bound: "
                     f"head + {d['persistent_bytes']:,} bytes of per-channel multiplier/shift "
                     f"arrays and tables; tensor/node structs and OpData not counted)")
    lines += [f"  note: {n}" for n in res.notes]
    return lines

