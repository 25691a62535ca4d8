"""Weight entropy and the estimated size of an entropy-coded model (``shared/seeds/001``).

Tonin & de Queiroz (section 3) measure "the entropy of the NN weights, which
estimates how many bits in average an encoder would spend to encode each
quantized weight": the empirical zeroth-order entropy of the codes, base 2::

    H = - sum_c p(c) log2 p(c),     p(c) = #{codes == c} / n         (bits/weight)

An ideal entropy coder (arithmetic coding, within a few bytes; Huffman within 1
bit/weight) then needs about ``n * H`` bits, plus the side information a decoder
needs (float32 scales or steps, codebooks: :attr:`QuantizedTensor.params`
``["side_bits"]``).  The baseline is float32: ``32 n`` bits.  Over several
tensors (a model), entropies are averaged weighted by parameter count
(``sum n_l H_l / sum n_l``), which is how a per-layer coder would spend bits.

>>> entropy_bits([0, 0, 1, -1])
1.5
>>> s = compressed_size(QuantizedTensor(np.array([0, 0, 1, -1]), np.zeros(4), "x",
...                                     {"side_bits": 32}))
>>> s.total_bits, s.float32_bits
(38.0, 128)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from fxp.errors import FormatError
from fxp.quant.base import QuantizedTensor

__all__ = ["CompressedSize", "compressed_size", "entropy_bits"]


def entropy_bits(codes) -> float:
    """Empirical entropy of ``codes`` in bits per value (0 for a constant tensor)."""
    c = np.asarray(codes)
    if c.size == 0:
        raise FormatError("entropy of an empty tensor is undefined")
    _, counts = np.unique(c.ravel(), return_counts=True)
    p = counts / c.size
    return float(max(0.0, -np.sum(p * np.log2(p))))


@dataclass(frozen=True)
class CompressedSize:
    """Estimated size of entropy-coded quantized tensors.

    Attributes
    ----------
    n : int
        Number of weights.
    entropy : float
        Bits/weight: ``payload_bits / n`` (parameter-weighted mean over tensors).
    payload_bits : float
        ``sum n_l H_l``: the entropy-coded codes.
    side_bits : int
        Scales, steps and codebooks (float32 each) needed to decode.
    total_bits : float
        ``payload_bits + side_bits``.
    float32_bits : int
        ``32 n``.
    ratio : float
        ``float32_bits / total_bits`` (the compression factor; inf if 0 bits).
    bits_per_weight : float
        ``total_bits / n``.
    """

    n: int
    entropy: float
    payload_bits: float
    side_bits: int
    total_bits: float
    float32_bits: int
    ratio: float
    bits_per_weight: float

    def to_dict(self) -> dict:
        return asdict(self)


def compressed_size(tensors: QuantizedTensor | Iterable[QuantizedTensor]) -> CompressedSize:
    """Entropy-coded size of one quantized tensor or of several (module docstring)."""
    ts = [tensors] if isinstance(tensors, QuantizedTensor) else list(tensors)
    if not ts:
        raise FormatError("compressed_size needs at least one quantized tensor")
    n = sum(t.n for t in ts)
    payload = float(sum(t.n * entropy_bits(t.codes) for t in ts))
    side = int(sum(int(t.params.get("side_bits", 0)) for t in ts))
    total = payload + side
    return CompressedSize(n=n, entropy=payload / n, payload_bits=payload, side_bits=side,
                          total_bits=total, float32_bits=32 * n,
                          ratio=(32 * n / total) if total > 0 else float("inf"),
                          bits_per_weight=total / n)
