"""Independent oracles for the second-order noise model (:mod:`fxp.opt.interactions`)."""

from __future__ import annotations

import numpy as np


def dithered_by_walk(graph, tensors) -> np.ndarray:
    """``[T, T]`` bool: for each activation ``j``, walk the graph backwards from its producer
    (node by node, a stack of tensors) and mark ``[i, j]`` for every quantizable tensor ``i``
    met on the way: the weights of the layers visited and the activations read (not the
    activation itself)."""
    index = {t.name: k for k, t in enumerate(tensors)}
    act_of = {t.tensor: t.name for t in tensors if t.kind == "act"}
    weight_of = {t.layer: t.name for t in tensors if t.kind == "weight"}
    producer = {n.output: n for n in graph.nodes}
    d = np.zeros((len(tensors), len(tensors)), bool)
    for t in tensors:
        if t.kind != "act":
            continue
        seen, stack = set(), [t.tensor]
        while stack:
            node = producer.get(stack.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.name in weight_of:
                d[index[weight_of[node.name]], index[t.name]] = True
            for u in node.inputs:
                if u in act_of:
                    d[index[act_of[u]], index[t.name]] = True
                stack.append(u)
    return d


def second_order_noise(table, widths: dict, dithered: np.ndarray) -> float:
    """``(sum_i |e_i|^2 + sum_{i<j} t_ij + caps) / |ref|^2`` in float64, one pair at a time:
    ``t_ij`` is ``2 <e_i, e_j>``, or for a dithered pair (``dithered[i, j]``: ``i``'s error
    reaches activation ``j``) the table's measured term where it has one.  Caps: for each
    upstream ``i``, the negative measured terms of its pairs count down to ``-|e_i|^2`` and
    no further."""
    ref = table.reference.astype(np.float64)
    sig = float(ref @ ref)
    vec = {n: table.errors[table.index(n), table.widths.index(b)].astype(np.float64)
           for n, b in widths.items()}
    names = sorted(widths, key=table.index)
    total = sum(float(v @ v) for v in vec.values())
    pairs = table.pair_noise or {}
    absorbed = {n: 0.0 for n in names}
    for a, na in enumerate(names):
        for nb in names[a + 1:]:
            i, j = table.index(na), table.index(nb)
            term = 2.0 * float(vec[na] @ vec[nb])
            if (dithered[i, j] or dithered[j, i]) and (i, j) in pairs:
                m = pairs[(i, j)][table.widths.index(widths[na]), table.widths.index(widths[nb])]
                if np.isfinite(m):
                    term = m * sig
                    up = na if dithered[i, j] else nb
                    absorbed[up] += min(term, 0.0)
            total += term
    for n in names:
        total += max(0.0, -float(vec[n] @ vec[n]) - absorbed[n])
    return max(total, 0.0) / sig
