"""Model sizes as stored, for the seed papers' compression tables (``reports/*/run.py``).

One storage convention for every report (the ``fxp export c`` layout,
:mod:`fxp.report.mcu`):

* **weights**: each layer's codes packed by :func:`fxp.report.mcu.packed_bytes`
  (1-bit codes 8 per byte, 2..4-bit codes two per byte as int4, wider codes in
  the smallest ``<stdint.h>`` type); the *bit-packed* figures instead count
  ``ceil(n * bits / 8)`` bytes per layer (a dense bit stream, the papers' own
  arithmetic);
* **biases**: one code per output channel in the accumulator's type (int32 for
  32-bit accumulators, int64 for 64-bit ones);
* **per-layer / per-channel parameters**: what the integer engine needs besides
  the codes (a scale, a step, a codebook, requantization multipliers);
* **float32**: 4 bytes per weight and per bias.

Nothing else is counted: no graph description, no file container, no optimizer
state (the papers' Keras / TFLite *file* sizes include these).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STORAGE_NOTE", "bitpacked_bytes", "float32_bytes", "layer_params",
           "plan_sizes", "replace_block"]

STORAGE_NOTE = (
    "Storage convention (`reports/_sizes.py`, the `fxp export c` layout): weight codes packed "
    "as fxp stores them (1-bit codes 8 per byte, 2..4-bit codes two per byte as int4, wider "
    "codes in the smallest `<stdint.h>` type) or, where marked *bit-packed*, as a dense bit "
    "stream of `ceil(n * bits / 8)` bytes per layer; biases in the accumulator's type; per-layer "
    "or per-channel parameters (scales, steps, codebooks, requantization multipliers) counted "
    "separately; float32 = 4 bytes per weight and bias. Graph, file container and optimizer "
    "state are not counted.")


def layer_params(graph) -> dict[str, tuple[int, int]]:
    """``{layer: (weights, biases)}`` for every node with a weight tensor, in graph order."""
    out = {}
    for n in graph.nodes:
        w = getattr(n, "weight", None)
        if w is None:
            continue
        b = getattr(n, "bias", None)
        out[n.name] = (int(w.size), 0 if b is None else int(b.size))
    return out


def float32_bytes(graph) -> int:
    """Bytes of the float32 model's weights and biases (4 bytes each)."""
    return 4 * sum(w + b for w, b in layer_params(graph).values())


def bitpacked_bytes(n: int, bits: int) -> int:
    """``ceil(n * bits / 8)``: ``n`` codes of ``bits`` bits as one dense bit stream.

    >>> bitpacked_bytes(9, 3), bitpacked_bytes(8, 1), bitpacked_bytes(3, 5)
    (4, 1, 2)
    """
    return -(-n * bits // 8)


def plan_sizes(graph, plan) -> dict:
    """Bytes of ``plan`` over ``graph`` as fxp stores it (:func:`fxp.report.mcu.plan_resources`).

    Returns
    -------
    dict
        ``weight_bytes``, ``bias_bytes``, ``quant_bytes`` (per-channel
        requantization parameters), ``flash_bytes`` (their sum), ``n_weights``,
        ``n_biases``, ``n_quant_params`` (per-channel parameters: one per output
        channel of each layer with per-channel multipliers or scales) and
        ``weight_bits`` (``{layer: bits}`` of the plan's weight formats; 32 for a
        float layer).
    """
    from fxp.report.mcu import plan_resources

    res = plan_resources(graph, plan).to_dict()
    counts = layer_params(graph)
    n_quant = 0
    bits = {}
    for name in counts:
        lp = plan.layer(name)
        if lp is None or lp.float_layer:
            bits[name] = 32
        else:
            bits[name] = int(lp.weight.fmt.bits)
    for row in res["layers"]:
        if row["quant_bytes"] and row["name"] in counts:
            n_quant += counts[row["name"]][1] or 1
    return {"weight_bytes": res["weight_bytes"], "bias_bytes": res["bias_bytes"],
            "quant_bytes": res["quant_bytes"], "flash_bytes": res["flash_bytes"],
            "n_weights": sum(w for w, _ in counts.values()),
            "n_biases": sum(b for _, b in counts.values()), "n_quant_params": n_quant,
            "weight_bits": bits}


def replace_block(readme: Path, name: str, lines: list[str]) -> None:
    """Rewrite the Markdown between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` of ``readme``.

    A README without both markers is left as it is.
    """
    text = readme.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        from fxp.fileio import write_text

        write_text(readme, head + start + "\n" + "\n".join(lines) + "\n" + end + tail)
