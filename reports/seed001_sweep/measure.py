"""Measurements of the seed 001 report: sweep points with real coded sizes, Table 5, fits.

Used by ``run.py`` in this folder.  A point quantizes every Conv2D/Dense weight
tensor of the graph (per tensor), measures top-1/top-5 of the float reference
on the reconstructed weights, the parameter-weighted entropy of the codes
(:mod:`fxp.quant.entropy`) and the bytes real coders write
(:mod:`fxp.quant.entropy_coding`): canonical Huffman per tensor with its code
table, plus float32 side information (steps, scales, codebooks); ``zlib`` and
``lzma`` over the whole model's codes (layer order, narrowest int type) plus the
same side information.

Ranges.  ``fixed`` is the paper's: weights in ``[-1, 1]`` with ``2**b`` levels,
i.e. step ``Delta = 2 / 2**b`` for the uniform family (midtread, midrise,
dead-zone) and ``xmax = 1`` for mu-law; the step is a constant of the format,
not side information (0 side bits).  ``per-tensor`` is fxp's default:
``Delta = max|W_l| / (2**(b-1) - 1)`` and ``xmax = max|W_l|`` per tensor (float32
side information each).
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

from fxp.ir.nodes import Conv2D, Dense
from fxp.quant.base import get
from fxp.quant.entropy import compressed_size, entropy_bits
from fxp.quant.entropy_coding import huffman_decode, huffman_encode, stdlib_sizes
from fxp.quant.sweep import accuracy

UNIFORM = ("midtread", "midrise", "deadzone")


def weight_nodes(graph):
    return [n for n in graph.nodes if isinstance(n, (Conv2D, Dense))]


def fixed_options(spec: str, bits: int) -> dict:
    """The quantizer options of the paper's fixed [-1, 1] range at ``bits``."""
    base = spec.split(":")[0]
    if base in UNIFORM:
        return {"step": 2.0 ** (1 - bits)}
    if base == "mulaw":
        return {"xmax": 1.0}
    raise ValueError(f"no fixed-range form for quantizer {spec!r}")


def quantize(graph, spec: str, bits: int, variant: str):
    """``(graph with X-hat weights, {node: QuantizedTensor})`` for one point."""
    q = get(spec)
    nodes, tensors = [], {}
    for node in graph.nodes:
        if isinstance(node, (Conv2D, Dense)):
            opts = fixed_options(spec, bits) if variant == "fixed" else {}
            qt = q(node.weight, None if q.fixed_bits else bits, **opts)
            if variant == "fixed":  # the step is the format's constant, not side information
                qt = dataclasses.replace(qt, params={**qt.params, "side_bits": 0})
            tensors[node.name] = qt
            node = dataclasses.replace(node, weight=qt.values.astype(np.float32))
        nodes.append(node)
    return graph.with_nodes(nodes), tensors


def coded_sizes(tensors) -> dict:
    """Entropy bound and real coder sizes (bytes) of one point's tensors."""
    ts = list(tensors.values())
    size = compressed_size(ts)
    side = size.side_bits / 8
    huff = sum(len(huffman_encode(t.codes)) for t in ts)
    std = stdlib_sizes(np.concatenate([t.codes.ravel() for t in ts]))
    n = size.n
    return {"n": n, "entropy": size.entropy, "bound_bytes": size.total_bits / 8,
            "huffman_bytes": huff + side, "zlib_bytes": std["zlib"] + side,
            "lzma_bytes": std["lzma"] + side, "raw_bytes": std["raw"] + side,
            "huffman_bpw": 8 * (huff + side) / n, "lzma_bpw": 8 * (std["lzma"] + side) / n,
            "ratio_huffman": 32 * n / (8 * (huff + side))}


def point(graph, x, y, spec: str, bits: int, variant: str, f1: float, f5: float) -> dict:
    qg, tensors = quantize(graph, spec, bits, variant)
    a1, a5 = accuracy(qg, x, y)
    q = get(spec)
    return {"variant": variant, "quantizer": q.name, "spec": spec, "bits": int(q.fixed_bits or bits),
            **coded_sizes(tensors), "top1": a1, "top5": a5, "drop_top1": f1 - a1,
            "drop_top5": f5 - a5}


def best_points(rows: list[dict], tolerance: float = 0.01) -> list[dict]:
    """Per (variant, quantizer): the lowest-entropy point within ``tolerance`` (Table 6)."""
    out = {}
    for r in rows:
        if r["drop_top1"] <= tolerance + 1e-12 and r["drop_top5"] <= tolerance + 1e-12:
            k = (r["variant"], r["quantizer"])
            if k not in out or (r["entropy"], r["bits"]) < (out[k]["entropy"], out[k]["bits"]):
                out[k] = r
    return sorted(out.values(), key=lambda r: (r["variant"], r["entropy"]))


def write_container(graph, spec: str, bits: int, variant: str) -> tuple[bytes, int]:
    """One file holding the model's Huffman-coded weights; checks that it decodes back.

    Layout per Conv2D/Dense tensor: uint16 name length, UTF-8 name, float32 step
    (the decoder's scale), uint32 stream length, :func:`huffman_encode` stream.
    Returns the bytes and the number of weights.
    """
    _, tensors = quantize(graph, spec, bits, variant)
    parts, n = [], 0
    for name, qt in tensors.items():
        s = huffman_encode(qt.codes)
        assert np.array_equal(huffman_decode(s), qt.codes.ravel()), name
        nb = name.encode()
        step = float(qt.params.get("step", qt.params.get("xmax", 0.0)))
        parts.append(struct.pack("<H", len(nb)) + nb + struct.pack("<fI", step, len(s)) + s)
        n += qt.n
    return b"".join(parts), n


def table5(graph, x, y) -> dict:
    """Seed Table 5 for the float model: entropy of the float32 weights and accuracy."""
    ws = [n.weight.astype(np.float32).ravel() for n in weight_nodes(graph)]
    allw = np.concatenate(ws)
    bits = allw.view(np.uint32)
    per = sum(w.size * entropy_bits(w.view(np.uint32)) for w in ws) / allw.size
    a1, a5 = accuracy(graph, x, y)
    return {"n": int(allw.size), "entropy_model": entropy_bits(bits), "entropy_per_tensor": per,
            "distinct": int(np.unique(bits).size), "log2_n": float(np.log2(allw.size)),
            "top1": a1, "top5": a5, "raw_lzma_bpw": 8 * stdlib_sizes(bits.view(np.int32))["lzma"]
            / allw.size}


def fits(graph, dists) -> list[dict]:
    """Tables 2-3: distribution fits of the whole model's weights and of each layer."""
    from fxp.quant.fit import fit_distributions

    out = []
    groups = [("all weights", np.concatenate([n.weight.ravel() for n in weight_nodes(graph)]))]
    groups += [(n.name, n.weight.ravel()) for n in weight_nodes(graph)]
    for name, w in groups:
        rows = fit_distributions(w, dists=dists)
        out.append({"group": name, "n": int(w.size),
                    "rows": [r.to_dict() for r in rows]})
    return out
