"""Per-output-channel weight quantization noise at the network output.

The noise model (first order, with a measured check per layer).  Quantizing
output channel ``c`` of layer ``L`` at width ``b`` changes only channel ``c``
of ``L``'s pre-activation output, by exactly ``dy_c(b) = x * dW_c(b)`` (the
layer is linear in its weights; ``x`` is ``L``'s float input).  Its effect at
the logits is modelled as::

    nsr_c(b) = alpha_L(b) * g_c * E_c(b)

* ``E_c(b)``: the exact energy of ``dy_c(b)`` per sample (float64 sum of
  squares over the calibration samples and output positions, divided by the
  sample count), for every channel and width;
* ``g_c``: the channel's *gain*, measured once: ``dy_c(b_ref)`` is added to
  channel ``c`` alone of the float pre-activation output, the rest of the
  network runs in float32, and the logits' noise-to-signal ratio (as
  :mod:`fxp.opt.noise` measures it) is divided by ``E_c(b_ref)``; a channel
  whose error is 0 at ``b_ref`` gets the gain of a measurement at the
  narrowest width where it is not, or 0 if it never is;
* ``alpha_L(b)``: the check.  The whole layer is quantized (every channel in
  its own format) at each width ``b`` of ``check_widths`` (default: all), the
  logits' NSR measured and divided by ``sum_c g_c E_c(b)``: that ratio is
  ``alpha_L(b)`` (a width not checked takes the nearest checked width's), so a
  layer with every channel at one width predicts exactly its measured noise.
  It absorbs what the first-order sum leaves out: correlation between the
  channels' errors downstream and the activations' non-linearity.  On
  ``vgg7`` it ranges from about -7 dB (``fc1`` at 3 bits: the channels' errors
  add up to 4.6x their separate effects) to +3 dB; the ratios are kept in
  :attr:`ChannelNoise.check` and a plan mixing widths inside a layer is
  predicted with the per-width factors, so it is an approximation that the
  integer engine's measurement checks.

Channel ``c``'s format at width ``b`` is ``fixed<b, I>`` with ``I`` the integer
bits of ``max |W_c|`` or up to ``clip_steps`` fewer, the one with the least
``E_c(b)`` (ties to the wider range): the clip is chosen in the layer's output
domain, per channel.  Weights are rounded half to even and saturated, as the
integer engine codes them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import CalibrationError, PlanError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense
from fxp.opt.f32_kernels import conv_f32, dense_f32
from fxp.opt.noise import _FakeQuant
from fxp.plan.ptq import int_bits_for
from fxp.sim.float_ref import apply_activation

__all__ = ["MAX_INT_BITS_BELOW", "ChannelNoise", "channel_formats", "measure_channel_noise"]


@dataclass
class ChannelNoise:
    """Per-channel noise of one layer's weights (see the module docstring).

    Attributes
    ----------
    layer : str
    widths : tuple of int
        Candidate widths (columns).
    sizes : array [C]
        Weights per output channel.
    formats : list of list of QFormat
        ``formats[j][c]``: channel ``c``'s format at ``widths[j]``.
    energy : array [C, W]
        ``E_c(b)``: pre-activation error energy per sample.
    gain : array [C]
        ``g_c``: logits NSR per unit of ``E_c``.
    alpha : array [W]
        ``alpha_L(b)`` per width.
    check : dict width -> (measured NSR, first-order NSR)
        The whole-layer measurements ``alpha`` comes from.
    ref_width : int
        Width of the gain measurement.
    """

    layer: str
    widths: tuple[int, ...]
    sizes: np.ndarray
    formats: list[list[QFormat]]
    energy: np.ndarray
    gain: np.ndarray
    alpha: np.ndarray
    check: dict
    ref_width: int

    @property
    def n_channels(self) -> int:
        return int(self.sizes.size)

    def noise(self) -> np.ndarray:
        """Predicted logits NSR (linear) per (channel, width): ``alpha(b) * g_c * E_c(b)``."""
        return self.alpha[None, :] * self.gain[:, None] * self.energy

    def format_of(self, channel: int, bits: int) -> QFormat:
        if bits not in self.widths:
            raise PlanError(f"layer {self.layer!r}: width {bits} was not measured; widths: "
                            f"{self.widths}")
        return self.formats[self.widths.index(bits)][channel]

    def check_db(self) -> dict[int, float]:
        """Per checked width: measured minus first-order whole-layer SQNR (dB)."""
        return {b: 10 * math.log10(p / m) for b, (m, p) in self.check.items() if m > 0 and p > 0}


MAX_INT_BITS_BELOW = 8
"""A channel's integer bits stay at most this many below the layer's (``max |W|``): the
container format (and the accumulator) then spans at most ``b + 8`` fraction bits more than
the layer's own, whatever tiny channel it holds."""


def channel_formats(weight: np.ndarray, bits: int, int_bits_offset: np.ndarray | int = 0
                    ) -> list[QFormat]:
    """``fixed<bits, I_c - offset>`` per output channel, ``I_c`` from ``max |W_c|``.

    ``I_c - offset`` is at least the layer's integer bits minus
    :data:`MAX_INT_BITS_BELOW`; an all-zero channel gets that floor (its codes
    are 0 in any format).

    >>> [str(f) for f in channel_formats(np.array([[0.5, -0.25], [3.0, 1.0]]), 4)]
    ['fixed<4,1>', 'fixed<4,3>']
    """
    w = np.asarray(weight, np.float64).reshape(weight.shape[0], -1)
    peak = np.abs(w).max(axis=1)
    top = float(peak.max())
    floor = (int_bits_for(top, True) if top > 0 else 1) - MAX_INT_BITS_BELOW
    off = np.broadcast_to(np.asarray(int_bits_offset, np.int64), peak.shape)
    return [QFormat(bits, max(floor, (int_bits_for(float(r), True) if r > 0 else floor)
                              - int(k)), True)
            for r, k in zip(peak, off, strict=True)]


def _quantized(w: np.ndarray, fmts: list[QFormat]) -> np.ndarray:
    """Dequantized weights, channel ``c`` in ``fmts[c]`` (half to even, saturate; exact)."""
    w = np.asarray(w, np.float64)
    shape = (-1,) + (1,) * (w.ndim - 1)
    lsb = np.array([2.0 ** -f.frac_bits for f in fmts]).reshape(shape)
    lo = np.array([f.min_code for f in fmts], np.float64).reshape(shape)
    hi = np.array([f.max_code for f in fmts], np.float64).reshape(shape)
    return np.clip(np.rint(w / lsb), lo, hi) * lsb


class _Layer:
    """One layer's float input, its linear map without bias/activation, and the downstream."""

    def __init__(self, fq: _FakeQuant, graph: Graph, node):
        self.fq, self.graph, self.node = fq, graph, node
        self.x = fq.base[node.inputs[0]]
        self.lin_node = dataclasses.replace(node, bias=None, fused_activation=None)
        pre_node = dataclasses.replace(node, fused_activation=None)
        f32 = conv_f32 if isinstance(node, Conv2D) else dense_f32
        self.pre = f32(pre_node, self.x, node.weight)  # the float pass, before its activation
        at = next(i for i, n in enumerate(graph.nodes) if n is node)
        self.after = graph.nodes[at + 1:]

    def linear(self, weight: np.ndarray) -> np.ndarray:
        if isinstance(self.node, Conv2D):
            return conv_f32(self.lin_node, self.x, np.asarray(weight, np.float32))
        flat = self.x.reshape(self.x.shape[0], -1).astype(np.float64)
        return flat @ np.asarray(weight, np.float64).reshape(weight.shape[0], -1).T

    def nsr(self, pre: np.ndarray) -> float:
        """Logits NSR with ``L``'s pre-activation output replaced by ``pre``."""
        env = dict(self.fq.base)
        env[self.node.output] = apply_activation(pre.astype(np.float32),
                                                 self.node.fused_activation)
        dirty = {self.node.output}
        for n in self.after:
            if any(t in dirty for t in n.inputs):
                env[n.output] = self.fq._node(n, [env[t] for t in n.inputs], {})
                dirty.add(n.output)
        s = self.fq.sqnr_db(env)
        return 0.0 if s == math.inf else 10.0 ** (-s / 10.0)


def _energy(dy: np.ndarray) -> np.ndarray:
    """Per-channel error energy per sample of a pre-activation error [N, C, ...]."""
    d = np.asarray(dy, np.float64)
    d = d.reshape(d.shape[0], d.shape[1], -1)
    return np.einsum("ncp,ncp->c", d, d) / d.shape[0]


def _layer_noise(layer: _Layer, widths, clip_steps: int, ref_width: int, check_widths
                 ) -> ChannelNoise:
    node = layer.node
    w = np.asarray(node.weight, np.float64)
    c_out = w.shape[0]
    energy = np.full((c_out, len(widths)), np.inf)
    formats: list[list[QFormat]] = []
    dys: dict[int, np.ndarray] = {}
    for j, b in enumerate(widths):
        best_fmts = [None] * c_out
        for k in range(clip_steps + 1):
            fmts = channel_formats(w, b, k)
            dy = layer.linear(_quantized(w, fmts) - w)
            e = _energy(dy)
            better = e < energy[:, j]
            energy[better, j] = e[better]
            for c in np.flatnonzero(better):
                best_fmts[c] = fmts[c]
        formats.append(best_fmts)
        if b == ref_width or b in check_widths:
            dys[b] = layer.linear(_quantized(w, best_fmts) - w)
    gain = np.zeros(c_out)
    ref_j = widths.index(ref_width)
    for c in range(c_out):
        j = ref_j if energy[c, ref_j] > 0 else next(
            (jj for jj in range(len(widths)) if energy[c, jj] > 0), None)
        if j is None:
            continue  # exact at every width: no noise
        dy = dys[ref_width][:, c] if j == ref_j else layer.linear(
            _quantized(w[c:c + 1], [formats[j][c]]) - w[c:c + 1])[:, 0]
        pre = layer.pre.copy()
        pre[:, c] += dy.astype(pre.dtype)
        gain[c] = layer.nsr(pre) / energy[c, j]
    check = {}
    for b in check_widths:
        measured = layer.nsr(layer.pre + dys[b].astype(layer.pre.dtype))
        predicted = float(np.sum(gain * energy[:, widths.index(b)]))
        check[b] = (measured, predicted)
    ratio = {b: m / p for b, (m, p) in check.items() if m > 0 and p > 0}
    alpha = np.ones(len(widths))
    if ratio:
        for j, b in enumerate(widths):
            alpha[j] = ratio[min(ratio, key=lambda cb: (abs(cb - b), cb))]
    sizes = np.full(c_out, w[0].size, np.int64)
    return ChannelNoise(node.name, tuple(widths), sizes, formats, energy, gain, alpha, check,
                        ref_width)


def measure_channel_noise(graph: Graph, calib_x: np.ndarray, *, widths=range(2, 11),
                          layers: list[str] | None = None, n_measure: int = 64,
                          clip_steps: int = 4, ref_width: int = 4, check_widths=None,
                          rounding: str = "half_up") -> dict[str, ChannelNoise]:
    """Measure :class:`ChannelNoise` for every Conv2D/Dense layer (or ``layers``).

    Parameters
    ----------
    graph : Graph
        Canonical graph.
    calib_x : array [N, ...]
        The first ``n_measure`` samples are used.
    widths : iterable of int
        Candidate weight widths (each >= 2).
    clip_steps : int
        How many integer bits below the channel's min/max format are tried.
    ref_width : int
        Width of the per-channel gain measurement (one of ``widths``).
    check_widths : tuple of int, optional
        Widths of the whole-layer check that sets ``alpha`` (subset of ``widths``;
        default: all of them).

    Raises
    ------
    PlanError
        Bad widths, unknown layers.
    CalibrationError
        An empty calibration set.
    """
    widths = tuple(sorted({int(b) for b in widths}))
    check_widths = widths if check_widths is None else tuple(check_widths)
    if not widths or widths[0] < 2:
        raise PlanError(f"candidate channel widths must be integers >= 2, got {widths}")
    if ref_width not in widths or not set(check_widths) <= set(widths):
        raise PlanError(f"ref_width {ref_width} and check_widths {tuple(check_widths)} must be "
                        f"among the candidate widths {widths}")
    x = np.asarray(calib_x, np.float32)[:n_measure]
    if x.shape[0] == 0:
        raise CalibrationError("calibration set is empty")
    nodes = [n for n in graph.nodes if isinstance(n, (Conv2D, Dense))]
    if layers is not None:
        unknown = sorted(set(layers) - {n.name for n in nodes})
        if unknown:
            raise PlanError(f"unknown weighted layers {unknown[:10]}; layers: "
                            f"{[n.name for n in nodes][:20]}")
        nodes = [n for n in nodes if n.name in set(layers)]
    fq = _FakeQuant(graph, x, rounding)
    return {n.name: _layer_noise(_Layer(fq, graph, n), widths, clip_steps, ref_width,
                                 tuple(check_widths)) for n in nodes}
