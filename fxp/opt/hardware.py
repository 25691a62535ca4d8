"""Hardware cost models of a bit-width plan: FPGA (LUT, DSP, BRAM18) and MCU (flash, RAM, cycles).

The coefficients live in a JSON file (``fxp/opt/hw_costs.json``; copy it,
edit it, pass it with ``fxp plan --cost-file``) read by :func:`load_costs`,
which checks every key.  This module holds the per-layer rules; they are
pure functions of a layer's size and its two operand widths (``b_w`` the
weights', ``b_a`` its input activation's), so a tensor split into several
width groups later (per-channel widths) is costed group by group with the
group's weight count.  :mod:`fxp.opt.hardware_model` applies them to a graph.

**FPGA** (an hls4ml-style dataflow layer; Xilinx UltraScale+ / Versal fabric).

* *Parallel multipliers*: ``ceil(n_w / R)`` per layer, ``n_w`` its weight
  count (the MACs of one output position of a convolution, all MACs of a
  dense layer) and ``R`` its reuse factor (hls4ml's ``ReuseFactor``).
* *DSP or LUTs*: a ``b_w x b_a`` product goes to DSP slices when
  ``b_w + b_a >= dsp_min_product_bits`` and ``min(b_w, b_a) >=
  dsp_min_operand_bits`` (a stated threshold standing in for the synthesis
  tool's choice; edit it), otherwise to LUTs.
* *DSPs per product*: the slice multiplies two's complement operands of
  ``(P, Q)`` bits (DSP48E2 27x18, DSP58 27x24, DSP48E1 25x18).  A signed
  ``b``-bit operand needs ``pieces(b, P) = 1`` chunk when ``b <= P``, else
  ``1 + ceil((b - P) / (P - 1))`` (the high chunk signed, the others unsigned
  ``P - 1`` bits); an unsigned ``b``-bit operand (a ReLU output) counts as
  ``b + 1`` signed bits.  The product takes ``min(pieces(b_w, P) *
  pieces(b_a, Q), pieces(b_w, Q) * pieces(b_a, P))`` slices (both
  orientations).  Packing two narrow products into one slice (Xilinx
  WP486) is not modelled.
* *LUT multiplier*: ``ceil(lut_per_product_bit * b_w * b_a + lut_offset)``
  LUT6 per product; the default (1, 0) counts one LUT per partial-product
  bit (the textbook array multiplier on LUTs + carry chains), a first-order
  model: fit the two numbers to your synthesis reports.
* *Weight storage*: with ``R = 1`` the weights are constants in the logic
  (hls4ml's latency strategy; no memory).  Otherwise they form an array of
  depth ``R`` words of ``ceil(n_w / R) * b_w`` bits, kept in LUTRAM when
  ``R <= lutram_max_depth`` (``ceil(depth / 64)`` LUT6 per bit column, the
  64x1 RAM64X1S primitive) and in BRAM18 otherwise (``weight_storage``:
  ``auto``, or force ``bram`` / ``lutram`` / ``logic``).  BRAM18 packing:
  18 Kib blocks configured 16Kx1, 8Kx2, 4Kx4, 2Kx9, 1Kx18 or 512x36; a word
  of ``W <= 36`` bits uses the narrowest port ``p >= W`` and ``ceil(depth /
  depth(p))`` blocks; wider words are split into 36-bit columns (512 deep
  each) plus one column for the remaining bits.
* *Per-channel weight widths* (:func:`fpga_layer_channels`): the channels
  coded at one width form a group with its own ``ceil(n_b / R)`` multipliers
  of that width (never the container's); the weight memory's word is the sum
  of the groups' words.
* *Area* = ``w_lut * LUT + w_dsp * DSP + w_bram * BRAM18`` (``area_weights``).

**MCU** (TFLite Micro / CMSIS-NN style integer kernels).

* Widths are restricted to what the kernels support: ``weight_bits``
  (default 4 and 8) and ``act_bits`` (8 and 16).
* *Flash*: weights packed as :func:`fxp.report.mcu.packed_bytes` stores them
  (4-bit two per byte; per-channel widths channel by channel at each one's
  own width, plus its width/shift tables), biases in the accumulator's ``<stdint.h>`` type
  (int32, or int64 when the proven accumulator needs more than 32 bits), as
  :func:`fxp.report.mcu.plan_resources` counts them.
* *RAM*: the TFLite Micro greedy arena head over the IR tensors
  (:mod:`fxp.report.arena`).
* *Cycles* per layer: ``MACs * cycles_per_mac[kind]["<b_w>x<b_a>"] +
  outputs * cycles_per_output[kind] + cycles_per_layer``, ``kind`` one of
  ``conv``, ``depthwise``, ``dense``.  A pair missing from the table is a
  kernel the MCU does not have: the optimizer never chooses it.  The shipped
  figures are illustrative, not measured.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from fxp.errors import PlanError

__all__ = ["BRAM18_PORTS", "DEFAULT_COST_FILE", "KERNEL_KINDS", "FpgaCosts", "HardwareCosts",
           "McuCosts", "bram18_blocks", "dsps_per_product", "fpga_layer", "fpga_layer_channels",
           "load_costs",
           "lut_multiplier", "lutram_luts", "mcu_cycles", "signed_pieces", "uses_dsp"]

DEFAULT_COST_FILE = Path(__file__).with_name("hw_costs.json")
SCHEMA = "fxp.hw_costs/1"
BRAM18_PORTS = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
"""``(port width bits, depth words)`` of a RAMB18 (18 Kib) block."""
KERNEL_KINDS = ("conv", "depthwise", "dense")
STORAGE = ("auto", "bram", "lutram", "logic")
LUTRAM_DEPTH = 64
"""Words per LUT6 used as distributed RAM (RAM64X1S)."""


# ------------------------------------------------------------------------ FPGA rules
def signed_pieces(bits: int, port: int) -> int:
    """Chunks a signed ``bits``-bit operand needs on a signed ``port``-bit multiplier input.

    >>> signed_pieces(18, 18), signed_pieces(19, 18), signed_pieces(35, 18), signed_pieces(36, 18)
    (1, 2, 2, 3)
    """
    if bits <= port:
        return 1
    return 1 + -(-(bits - port) // (port - 1))


def dsps_per_product(a_bits: int, b_bits: int, ports: tuple[int, int] = (27, 18)) -> int:
    """DSP slices of one ``a_bits x b_bits`` signed product (both orientations tried).

    >>> dsps_per_product(27, 18), dsps_per_product(18, 27), dsps_per_product(28, 18)
    (1, 1, 2)
    >>> dsps_per_product(27, 24, (27, 18)), dsps_per_product(27, 24, (27, 24))
    (2, 1)
    """
    p, q = ports
    return min(signed_pieces(a_bits, p) * signed_pieces(b_bits, q),
               signed_pieces(a_bits, q) * signed_pieces(b_bits, p))


def bram18_blocks(depth: int, width: int) -> int:
    """RAMB18 blocks holding ``depth`` words of ``width`` bits (the packing rule above).

    >>> bram18_blocks(1024, 18), bram18_blocks(1025, 18), bram18_blocks(2048, 9)
    (1, 2, 1)
    >>> bram18_blocks(512, 37), bram18_blocks(512, 72), bram18_blocks(1, 0)
    (2, 2, 0)
    """
    if depth <= 0 or width <= 0:
        return 0
    full, rest = divmod(width, 36) if width > 36 else (0, width)
    blocks = full * -(-depth // 512)
    if rest:
        port_depth = next(d for p, d in BRAM18_PORTS if p >= rest)
        blocks += -(-depth // port_depth)
    return blocks


def lutram_luts(depth: int, width: int) -> int:
    """LUT6 of a ``depth x width`` distributed RAM: ``ceil(depth / 64)`` per bit column.

    >>> lutram_luts(64, 10), lutram_luts(65, 10), lutram_luts(2, 3)
    (10, 20, 3)
    """
    if depth <= 0 or width <= 0:
        return 0
    return -(-depth // LUTRAM_DEPTH) * width


# ------------------------------------------------------------------------ cost files
@dataclass(frozen=True)
class FpgaCosts:
    """FPGA coefficients (see the module docstring for each rule).

    Attributes
    ----------
    dsp : str
        The DSP slice (a key of ``dsp_ports``).
    dsp_ports : dict str -> (int, int)
        Signed multiplier input widths (bits) per slice.
    dsp_min_product_bits, dsp_min_operand_bits : int
        The DSP threshold: ``b_w + b_a`` and ``min(b_w, b_a)`` from which DSPs are used.
    lut_per_product_bit, lut_offset : float
        LUT multiplier ``ceil(a * b_w * b_a + c)`` (LUT6 per product).
    reuse_factor : int
        Default reuse factor (products per multiplier per inference).
    reuse_factor_layers : dict str -> int
        Per-layer reuse factors.
    weight_storage : {"auto", "bram", "lutram", "logic"}
    lutram_max_depth : int
        ``auto``: arrays at most this deep go to LUTRAM, deeper ones to BRAM18.
    area_weights : dict {"lut", "dsp", "bram"} -> float
        LUT-equivalents of one LUT, DSP slice and BRAM18 in the ``area`` cost.
    """

    dsp: str
    dsp_ports: dict
    dsp_min_product_bits: int
    dsp_min_operand_bits: int
    lut_per_product_bit: float
    lut_offset: float
    reuse_factor: int
    reuse_factor_layers: dict
    weight_storage: str
    lutram_max_depth: int
    area_weights: dict

    @property
    def ports(self) -> tuple[int, int]:
        """Signed input widths (bits) of the chosen DSP slice's multiplier."""
        return tuple(self.dsp_ports[self.dsp])

    def reuse(self, layer: str) -> int:
        """Reuse factor of ``layer``."""
        return int(self.reuse_factor_layers.get(layer, self.reuse_factor))


@dataclass(frozen=True)
class McuCosts:
    """MCU coefficients.

    Attributes
    ----------
    weight_bits, act_bits : tuple of int
        Widths the integer kernels support.
    cycles_per_mac : dict kind -> {(b_w, b_a): float}
        Cycles per MAC of each kernel; a missing pair is an unsupported kernel.
    cycles_per_output : dict kind -> float
        Cycles per output element (requantization, stores).
    cycles_per_layer : float
        Fixed cycles per layer (call, setup).
    """

    weight_bits: tuple
    act_bits: tuple
    cycles_per_mac: dict
    cycles_per_output: dict
    cycles_per_layer: float


@dataclass(frozen=True)
class HardwareCosts:
    """Both profiles, read from ``source`` (a path)."""

    fpga: FpgaCosts
    mcu: McuCosts
    source: str


class _Check:
    """Strict readers: each failure names the file, the key path and the value."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, what: str, value) -> PlanError:
        return PlanError(f"cost file {self.source[:200]!r}: {key} {what}, got {repr(value)[:200]}")

    def obj(self, d, key: str, keys: tuple) -> dict:
        if not isinstance(d, dict):
            raise self.fail(key or "the top level", "must be a JSON object", d)
        extra = sorted(set(d) - set(keys))
        if extra:
            raise self.fail(f"{key + '.' if key else ''}{extra[0]}",
                            f"is not a known key (known: {', '.join(keys)})", d[extra[0]])
        missing = [k for k in keys if k not in d]
        if missing:
            raise self.fail(f"{key + '.' if key else ''}{missing[0]}", "is missing", None)
        return d

    def mapping(self, v, key: str) -> dict:
        if not isinstance(v, dict):
            raise self.fail(key, "must be a JSON object", v)
        return v

    def integer(self, v, key: str, lo: int, hi: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            raise self.fail(key, f"must be an integer {rng}", v)
        return v

    def number(self, v, key: str, lo: float = 0.0) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v < lo:
            raise self.fail(key, f"must be a finite number >= {lo:g}", v)
        return float(v)

    def widths(self, v, key: str) -> tuple:
        if not isinstance(v, list) or not v:
            raise self.fail(key, "must be a non-empty list of widths", v)
        out = tuple(sorted({self.integer(b, f"{key}[{i}]", 2, 32) for i, b in enumerate(v)}))
        if len(out) != len(v):
            raise self.fail(key, "must not repeat a width", v)
        return out


_FPGA_KEYS = ("dsp", "dsp_ports", "dsp_min_product_bits", "dsp_min_operand_bits",
              "lut_per_product_bit", "lut_offset", "reuse_factor", "reuse_factor_layers",
              "weight_storage", "lutram_max_depth", "area_weights")
_MCU_KEYS = ("weight_bits", "act_bits", "cycles_per_mac", "cycles_per_output", "cycles_per_layer")


def _fpga(c: _Check, d) -> FpgaCosts:
    d = c.obj(d, "fpga", _FPGA_KEYS)
    ports = {}
    for name, v in c.mapping(d["dsp_ports"], "fpga.dsp_ports").items():
        if not isinstance(v, list) or len(v) != 2:
            raise c.fail(f"fpga.dsp_ports.{name}", "must be [bits, bits]", v)
        ports[name] = tuple(c.integer(b, f"fpga.dsp_ports.{name}", 2, 64) for b in v)
    if not isinstance(d["dsp"], str) or d["dsp"] not in ports:
        raise c.fail("fpga.dsp", f"must name one of fpga.dsp_ports ({', '.join(ports)})", d["dsp"])
    if d["weight_storage"] not in STORAGE:
        raise c.fail("fpga.weight_storage", f"must be one of {', '.join(STORAGE)}",
                     d["weight_storage"])
    layers = c.mapping(d["reuse_factor_layers"], "fpga.reuse_factor_layers")
    area = c.obj(d["area_weights"], "fpga.area_weights", ("lut", "dsp", "bram"))
    return FpgaCosts(
        d["dsp"], ports, c.integer(d["dsp_min_product_bits"], "fpga.dsp_min_product_bits", 0),
        c.integer(d["dsp_min_operand_bits"], "fpga.dsp_min_operand_bits", 0),
        c.number(d["lut_per_product_bit"], "fpga.lut_per_product_bit"),
        c.number(d["lut_offset"], "fpga.lut_offset", -1e9),
        c.integer(d["reuse_factor"], "fpga.reuse_factor", 1),
        {k: c.integer(v, f"fpga.reuse_factor_layers.{k}", 1) for k, v in layers.items()},
        d["weight_storage"], c.integer(d["lutram_max_depth"], "fpga.lutram_max_depth", 1),
        {k: c.number(area[k], f"fpga.area_weights.{k}") for k in ("lut", "dsp", "bram")})


def _pair_key(c: _Check, text, key: str) -> tuple[int, int]:
    parts = text.split("x") if isinstance(text, str) else []
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 2 for p in parts):
        raise c.fail(key, "must be a '<weight bits>x<act bits>' key like '8x16'", text)
    return int(parts[0]), int(parts[1])


def _mcu(c: _Check, d) -> McuCosts:
    d = c.obj(d, "mcu", _MCU_KEYS)
    cpm = c.obj(d["cycles_per_mac"], "mcu.cycles_per_mac", KERNEL_KINDS)
    cpo = c.obj(d["cycles_per_output"], "mcu.cycles_per_output", KERNEL_KINDS)
    table = {}
    for kind in KERNEL_KINDS:
        row = c.mapping(cpm[kind], f"mcu.cycles_per_mac.{kind}")
        table[kind] = {_pair_key(c, k, f"mcu.cycles_per_mac.{kind}.{k}"):
                       c.number(v, f"mcu.cycles_per_mac.{kind}.{k}") for k, v in row.items()}
    return McuCosts(c.widths(d["weight_bits"], "mcu.weight_bits"),
                    c.widths(d["act_bits"], "mcu.act_bits"), table,
                    {k: c.number(cpo[k], f"mcu.cycles_per_output.{k}") for k in KERNEL_KINDS},
                    c.number(d["cycles_per_layer"], "mcu.cycles_per_layer"))


def load_costs(path: str | Path | None = None) -> HardwareCosts:
    """Read and check a cost file (default: the shipped ``hw_costs.json``).

    Raises
    ------
    PlanError
        Unreadable or invalid JSON, a missing or unknown key, a value out of
        range (the message names the file, the key and the value).
    """
    p = DEFAULT_COST_FILE if path is None else Path(path)
    c = _Check(str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise PlanError(f"cannot read cost file {str(p)[:200]!r}: {why}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"cost file {str(p)[:200]!r} is not valid JSON: {exc}") from None
    d = c.obj(d, "", ("schema", "notes", "fpga", "mcu"))
    if d["schema"] != SCHEMA:
        raise c.fail("schema", f"must be {SCHEMA!r}", d["schema"])
    return HardwareCosts(_fpga(c, d["fpga"]), _mcu(c, d["mcu"]), str(p))


# ------------------------------------------------------------------------ per layer
def uses_dsp(w_bits: int, a_bits: int, fpga: FpgaCosts) -> bool:
    """True when a ``w_bits x a_bits`` product goes to DSP slices (the stated threshold)."""
    return (w_bits + a_bits >= fpga.dsp_min_product_bits
            and min(w_bits, a_bits) >= fpga.dsp_min_operand_bits)


def lut_multiplier(w_bits: int, a_bits: int, fpga: FpgaCosts) -> int:
    """LUT6 of one ``w_bits x a_bits`` LUT multiplier: ``ceil(a * b_w * b_a + c)`` (>= 0)."""
    return max(0, math.ceil(fpga.lut_per_product_bit * w_bits * a_bits + fpga.lut_offset))


def fpga_layer(n_weights: int, w_bits: int, a_bits: int, fpga: FpgaCosts, *, reuse: int = 1,
               w_signed: bool = True, a_signed: bool = True) -> dict[str, int]:
    """LUT, DSP and BRAM18 of a layer (or a weight group) with ``n_weights`` weights.

    Returns ``{"multipliers", "lut", "dsp", "bram", "mult_lut", "storage_lut"}``
    (counts); ``lut = mult_lut + storage_lut``.
    """
    mults = -(-int(n_weights) // int(reuse))
    if uses_dsp(w_bits, a_bits, fpga):
        dsp = mults * dsps_per_product(w_bits + (not w_signed), a_bits + (not a_signed),
                                       fpga.ports)
        mult_lut = 0
    else:
        dsp, mult_lut = 0, mults * lut_multiplier(w_bits, a_bits, fpga)
    bram, store_lut = _storage(reuse, mults * w_bits, fpga)
    return {"multipliers": mults, "lut": mult_lut + store_lut, "dsp": dsp, "bram": bram,
            "mult_lut": mult_lut, "storage_lut": store_lut}


def _storage(reuse: int, width: int, fpga: FpgaCosts) -> tuple[int, int]:
    """(BRAM18 blocks, LUTRAM LUT6) of ``reuse`` words of ``width`` bits (the storage rule)."""
    storage = fpga.weight_storage
    if storage == "auto":
        storage = "logic" if reuse == 1 else "lutram" if reuse <= fpga.lutram_max_depth \
            else "bram"
    return (bram18_blocks(reuse, width) if storage == "bram" else 0,
            lutram_luts(reuse, width) if storage == "lutram" else 0)


def fpga_layer_channels(groups: dict[int, int], a_bits: int, fpga: FpgaCosts, *,
                        reuse: int = 1, w_signed: bool = True,
                        a_signed: bool = True) -> dict[str, int]:
    """:func:`fpga_layer` of a layer with per-channel weight widths.

    ``groups`` maps a weight width ``b`` to the weight count of the channels
    coded at ``b`` bits.  Each width group gets its own ``ceil(n_b / R)``
    multipliers of ``b x b_a`` bits (a multiplier serving channels of
    several widths would be as wide as the widest; grouping by width avoids
    that at the cost of one rounding up per group), costed as
    :func:`fpga_layer` costs them.  The weights form one memory of depth
    ``R`` whose word is the sum of the groups' words, ``sum_b ceil(n_b / R)
    * b`` bits (not one memory per group), stored by the same rule.
    A single group gives exactly :func:`fpga_layer`.
    """
    if not groups:
        raise PlanError("a per-channel layer needs at least one width group")
    out = dict.fromkeys(("multipliers", "lut", "dsp", "bram", "mult_lut", "storage_lut"), 0)
    width = 0
    for bits, n in sorted(groups.items()):
        d = fpga_layer(n, bits, a_bits, fpga, reuse=reuse, w_signed=w_signed,
                       a_signed=a_signed)
        for k in ("multipliers", "dsp", "mult_lut"):
            out[k] += d[k]
        width += d["multipliers"] * bits
    out["bram"], out["storage_lut"] = _storage(reuse, width, fpga)
    out["lut"] = out["mult_lut"] + out["storage_lut"]
    return out


def mcu_cycles(kind: str, macs: int, outputs: int, w_bits: int, a_bits: int,
               mcu: McuCosts) -> float | None:
    """Estimated cycles of one layer; None when the MCU has no ``w_bits x a_bits`` kernel."""
    cpm = mcu.cycles_per_mac[kind].get((int(w_bits), int(a_bits)))
    if cpm is None:
        return None
    return macs * cpm + outputs * mcu.cycles_per_output[kind] + mcu.cycles_per_layer
