"""Float32 kernels of the fake-quant passes of :mod:`fxp.opt.noise` (im2col convolution,
strided max-pool, dense): the same arithmetic as :func:`fxp.sim.float_ref.run_node`, faster."""

from __future__ import annotations

import numpy as np

from fxp.ir.nodes import Conv2D, Dense, MaxPool2D
from fxp.sim.float_ref import _pad, apply_activation

__all__ = ["conv_f32", "dense_f32", "maxpool_f32"]


GROUPED_MAX_CHANNELS = 4
"""Grouped convolutions with at most this many input channels per group (depthwise: 1) run
as one multiply-add per kernel offset over every group at once (:func:`_grouped_f32`)."""


def conv_f32(node: Conv2D, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Float32 convolution on NHWC: one matmul per group over an im2col built by kernel
    offsets (:func:`_im2col_f32`), or, for grouped convolutions with few channels per group,
    one multiply-add per kernel offset (:func:`_grouped_f32`); then bias and activation."""
    kh, kw = weight.shape[2:]
    (sh, sw), (dh, dw) = node.strides, node.dilations
    xt = np.ascontiguousarray(_pad(x, node.pads, 0.0).transpose(0, 2, 3, 1), np.float32)
    oh = (xt.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xt.shape[2] - (kw - 1) * dw - 1) // sw + 1
    grouped = node.groups > 1 and weight.shape[1] <= GROUPED_MAX_CHANNELS
    out = (_grouped_f32 if grouped else _im2col_f32)(node, xt, weight, oh, ow)
    if node.bias is not None:
        out += node.bias.astype(np.float32)
    y = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    return apply_activation(y, node.fused_activation)


def _im2col_f32(node: Conv2D, xt: np.ndarray, weight: np.ndarray, oh: int, ow: int
                ) -> np.ndarray:
    """``[N, oh, ow, Cout]`` float32 on padded NHWC ``xt``: per group, the im2col columns
    (built by kernel offsets, in sample chunks) times the group's weight matrix."""
    n, g = xt.shape[0], node.groups
    cout, cg, kh, kw = weight.shape
    (sh, sw), (dh, dw) = node.strides, node.dilations
    out = np.empty((n, oh, ow, cout), np.float32)
    step = max(1, (1 << 24) // max(1, oh * ow * kh * kw * cg))
    for gi in range(g):
        wg = weight[gi * (cout // g):(gi + 1) * (cout // g)].astype(np.float32)
        wm = wg.transpose(2, 3, 1, 0).reshape(kh * kw * cg, cout // g)
        for s0 in range(0, n, step):
            xs = xt[s0:s0 + step, :, :, gi * cg:(gi + 1) * cg]
            m = xs.shape[0]
            cols = np.empty((m, oh, ow, kh, kw, cg), np.float32)
            for i in range(kh):
                for j in range(kw):
                    cols[:, :, :, i, j, :] = xs[:, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                                                j * dw:j * dw + sw * (ow - 1) + 1:sw, :]
            out[s0:s0 + m, :, :, gi * (cout // g):(gi + 1) * (cout // g)] = (
                cols.reshape(m * oh * ow, -1) @ wm).reshape(m, oh, ow, -1)
    return out


def _grouped_f32(node: Conv2D, xt: np.ndarray, weight: np.ndarray, oh: int, ow: int
                 ) -> np.ndarray:
    """``[N, oh, ow, Cout]`` float32 of a grouped convolution on padded NHWC ``xt``: per
    kernel offset ``(i, j)``, ``out[..., g, o] += sum_c x[..., g, c] * w[g, o, c, i, j]`` for
    every group at once (a depthwise layer's im2col would make one small matmul per
    channel)."""
    n = xt.shape[0]
    g = node.groups
    cout, cg, kh, kw = weight.shape
    (sh, sw), (dh, dw) = node.strides, node.dilations
    w = weight.astype(np.float32).reshape(g, cout // g, cg, kh, kw)
    out = np.zeros((n, oh, ow, g, cout // g), np.float32)
    step = max(1, (1 << 24) // max(1, oh * ow * cout * max(1, cg)))
    for s0 in range(0, n, step):
        xs = xt[s0:s0 + step].reshape(-1, xt.shape[1], xt.shape[2], g, cg)
        acc = out[s0:s0 + step]
        for i in range(kh):
            for j in range(kw):
                v = xs[:, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                       j * dw:j * dw + sw * (ow - 1) + 1:sw]  # [m, oh, ow, g, cg]
                if cg == 1:
                    acc += v * w[:, :, 0, i, j]
                else:
                    acc += np.einsum("nhwgc,goc->nhwgo", v, w[:, :, :, i, j])
    return out.reshape(n, oh, ow, cout)


def maxpool_f32(node: MaxPool2D, x: np.ndarray) -> np.ndarray:
    """Max-pool as a running maximum over the kernel offsets (strided slices)."""
    (kh, kw), (sh, sw) = node.kernel, node.strides
    xp = _pad(x, node.pads, -np.inf)
    oh = (xp.shape[2] - kh) // sh + 1
    ow = (xp.shape[3] - kw) // sw + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            v = xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            out = v.copy() if out is None else np.maximum(out, v, out=out)
    return out.astype(np.float32, copy=False)


def dense_f32(node: Dense, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    acc = x.reshape(x.shape[0], -1).astype(np.float32) @ weight.T.astype(np.float32)
    if node.bias is not None:
        acc = acc + node.bias.astype(np.float32)
    return apply_activation(acc.astype(np.float32), node.fused_activation)
