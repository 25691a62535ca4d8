"""Quantizers: float -> integer codes (and their formats or scales)."""

from fxp.quant.base import QuantizedTensor, Quantizer, get, names, register

__all__ = ["QuantizedTensor", "Quantizer", "get", "names", "register"]
