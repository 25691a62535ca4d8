"""The int8 variant of the proven path: uint8 x int8 GEMMs in int32 on AVX-512 VNNI CPUs.

A layer of the proven path (:mod:`fxp.sim.fast`) whose codes fit bytes runs
its GEMM on :func:`fxp.kernels.vnni.gemm_u8s8` instead of float32 chunks:

* every weight code is in ``[-128, 127]`` (int8);
* the input format's codes are in ``[0, 255]`` (stored as they are, offset 0)
  or in ``[-128, 127]`` (stored as ``x + 128``, offset 128); the im2col rows
  pad with the offset (the stored code of a real 0);
* one group; and ``255 * max_co sum_k |w[co, k]| < 2**31``, so no int32 sum of
  stored codes times weights reaches ``2**31``: each int32 is the exact
  ``sum_k (x + offset) * w``.

The offset comes back out through the bias: ``sum_k x*w + bias = sum_k (x +
offset)*w + (bias - offset * sum_k w)``, an exact int64 identity, so the
requantization (:func:`fxp.kernels.fast_layers.requant_rows`) sees the same
accumulator integers as the float path and the ordered loop.  Where the CPU
lacks VNNI (or ``FXP_NO_VNNI=1``) the float path runs; the integers are the
same either way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numba
import numpy as np

from fxp.kernels.vnni_conv import conv_rows_vnni, conv_taps_vnni, narrow_ok
from fxp.kernels.vnni_runs import SLACK, conv_runs_vnni, run_weights

__all__ = ["VnniLayer", "bind_vnni", "packed_for", "run_vnni", "stored_codes", "vnni_plan"]

I32_LIMIT = 1 << 31


@functools.cache
def _available() -> bool:
    from fxp.kernels import vnni

    return vnni.available()


@dataclass
class VnniLayer:
    """What the int8 GEMM precomputes for one layer (packed weights per input order)."""

    offset: int  # 0 or 128: stored code = input code + offset
    nv: int  # 16-column vectors per weight panel (fxp.kernels.vnni.panel_width)
    bias: np.ndarray  # int64 [Co]: bias - offset * sum_k w
    narrow: bool = False  # requantize on int32 lanes (fxp.kernels.vnni_conv.narrow_ok)
    packed: dict = field(default_factory=dict)
    bound: dict = field(default_factory=dict)  # (shape, dtype, geometry) -> bind_vnni(...)


def vnni_plan(fl, in_fmt, top: int) -> VnniLayer | None:
    """The int8 GEMM plan of the proven layer ``fl`` (a :class:`fxp.sim.fast.FastLayer`)
    whose input has format ``in_fmt`` and whose accumulators are bounded by ``|acc| <= top``,
    or None where it does not qualify (module docstring)."""
    from fxp.kernels.vnni import panel_width

    w = fl.w_rows
    if fl.groups != 1 or not w.size or not _available():
        return None
    if int(w.min()) < -128 or int(w.max()) > 127:
        return None
    if in_fmt.min_code >= 0 and in_fmt.max_code <= 255:
        offset = 0
    elif in_fmt.min_code >= -128 and in_fmt.max_code <= 127:
        offset = 128
    else:
        return None
    if 255 * int(np.abs(w).sum(axis=1).max()) >= I32_LIMIT:
        return None
    bias = fl.bias - offset * w.sum(axis=1)
    return VnniLayer(offset, panel_width(w.shape[0]), bias,
                     narrow_ok(top, bias, fl.shift, fl.out_bits))


def packed_for(fl, vl: VnniLayer, chw) -> np.ndarray:
    """The packed int8 weights (:func:`fxp.kernels.vnni.pack_weights`) in the column order
    of :meth:`fxp.sim.fast.FastLayer.rows_for`, or (``chw="runs"``) in the ``(ky, j)``
    order of :func:`fxp.kernels.vnni_runs.conv_runs_vnni`: each kernel row's ``kw*C``
    weights padded with zeros to a multiple of 4."""
    if chw not in vl.packed:
        from fxp.kernels.vnni import pack_weights

        w = fl.rows_for(None if chw == "runs" else chw).T
        if chw == "runs":
            w = run_weights(w, fl.conv[0])
        vl.packed[chw] = pack_weights(w.astype(np.int8), vl.nv)
    return vl.packed[chw]


def stored_codes(x: np.ndarray, offset: int) -> np.ndarray:
    """``x + offset`` as uint8 (the codes fit, :func:`vnni_plan`), same shape."""
    if offset == 0:
        return x if x.dtype == np.uint8 else x.astype(np.uint8)
    if x.dtype == np.int8:
        return x.view(np.uint8) ^ np.uint8(0x80)  # x + 128 modulo 256
    return (x.astype(np.int16) + offset).astype(np.uint8)


def run_vnni(fl, vl: VnniLayer, x: np.ndarray, geo: tuple, y: np.ndarray) -> int:
    """The layer on ``x [N, H, W, C]`` (a Dense: ``[N, F]``) integer codes into ``y [N*pixels,
    Co]``; returns the number the output overflow changed.  A convolution runs
    :func:`fxp.kernels.vnni_conv.conv_taps_vnni` for ``C % 4 == 0`` input channels, else
    :func:`~fxp.kernels.vnni_runs.conv_runs_vnni` on a padded copy where ``dw == 1``, else
    :func:`~fxp.kernels.vnni_conv.conv_rows_vnni` (also every Dense).  The call is bound once
    per input shape and layout (:func:`bind_vnni`, kept in ``vl.bound``)."""
    key = (x.shape[1:], x.dtype, geo)
    run = vl.bound.get(key)
    if run is None:
        run = vl.bound[key] = bind_vnni(fl, vl, x.shape[1:], geo)
    return run(x, y)


def bind_vnni(fl, vl: VnniLayer, shape: tuple, geo: tuple):
    """``run(x, y) -> int``: :func:`run_vnni` for inputs of per-image ``shape``, its kernel's
    constant arguments gathered once (the per-call Python work at batch 1 is most of a
    small layer's time); the serial or parallel build is picked per call by the work size
    (:meth:`fxp.kernels._jit.Kernel.build`)."""
    ho, wo, _, _, _, chw = geo
    tail = (*fl.requant_args, vl.narrow, _workers())
    off, bias = vl.offset, vl.bias
    if fl.conv is None:  # a Dense: one 1x1 "image" of F channels
        return _bind_rows(fl, vl, 1, 1, shape[0], (1, 1, 1, 1, 0, 0, 1, 1), geo, tail)
    kh, kw, sh, sw, t, left, bottom, right, dh, dw = fl.conv
    h, w, c = shape
    if c % 4 == 0:
        packed, pad = packed_for(fl, vl, chw), np.full(c, off, np.uint8)
        rest = (kh, kw, sh, sw, t, left, dh, dw, ho, wo, *tail)
        build = conv_taps_vnni.build

        def run_taps(x, y):
            xs = np.ascontiguousarray(stored_codes(x, off)).reshape(-1)
            return build(y.size)(xs, pad, h, w, packed, bias, y, *rest)
        return run_taps
    if dw == 1:
        hp, wp = h + t + bottom, w + left + right
        packed, per_image = packed_for(fl, vl, "runs"), hp * wp * c
        rest = (kh, sh, sw, dh, ho, wo, *tail)
        build = conv_runs_vnni.build

        def run_runs(x, y):
            xp = np.empty(x.shape[0] * per_image + SLACK, np.uint8)
            return build(y.size)(x, xp, _NO_PAD, off, hp, wp, t, left, packed, bias, y, *rest)
        return run_runs
    return _bind_rows(fl, vl, h, w, c, (kh, kw, sh, sw, t, left, dh, dw), geo, tail)


def _bind_rows(fl, vl: VnniLayer, h: int, w: int, c: int, conv: tuple, geo: tuple, tail: tuple):
    """:func:`bind_vnni`'s closure on im2col rows (:func:`~fxp.kernels.vnni_conv.conv_rows_vnni`;
    ``conv`` is ``(kh, kw, sh, sw, top, left, dh, dw)``)."""
    ho, wo, _, _, _, chw = geo
    packed, bias = packed_for(fl, vl, chw), vl.bias
    rest = (vl.offset, *conv, ho, wo, *tail)
    build = conv_rows_vnni.build

    def run_rows(x, y):
        x = np.ascontiguousarray(x)
        return build(y.size)(x.reshape(x.shape[0] * h, w * c), h, c, packed, bias, y, *rest)
    return run_rows


def _workers() -> int:
    """Scratch-owning workers per kernel call: numba's thread pool size (reading the active
    count costs more than a spare worker block)."""
    return numba.config.NUMBA_NUM_THREADS


_NO_PAD = np.zeros(4, np.uint8)
"""The tap microkernel's pad codes where no read falls outside the input (never read)."""
