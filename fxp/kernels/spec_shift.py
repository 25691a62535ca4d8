"""Shift-add conv2d / dense: the readable numpy *specification*.

The jitted kernels in :mod:`fxp.kernels.shift_add` must equal these functions
bit for bit.  Weights are ``(sign, shift)`` pairs (``w = sign * 2**shift``,
``sign = 0`` for a zero weight); inputs are validated by :mod:`fxp.ops.shift`.

One output ``acc[n, co, oy, ox]`` (dense: ``acc[n, o]``), the steps of
:mod:`fxp.kernels.spec_layers` with the product replaced by a shift:

1. ``xs = x - x_zero_point``;
2. ``acc = 0``; for ``ci`` in the group's input channels, ``ky``, ``kx`` (in
   that order; dense ``i = 0 .. In-1``): if the weight is nonzero and the tap
   lies inside the image, ``acc += sign * (xs << shift)`` (exact in int64),
   then the accumulator's overflow mode is applied; a zero weight or a padded
   tap performs no addition (it is skipped);
3. ``acc += bias[co]``, overflow applied;
4. events and the peak ``|acc_before + term|`` are taken over the additions
   performed (see :mod:`fxp.kernels.shift_add` for how they relate to the
   multiply path's).
"""

from __future__ import annotations

import numpy as np

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode
from fxp.kernels.spec_layers import U64, _add_step, _out_size, _pad, _taps

__all__ = ["conv2d_shift", "decode", "dense_shift"]


def decode(sign, shift) -> np.ndarray:
    """Weight codes ``sign * 2**shift`` as int64 (``shift`` <= 62 where ``sign != 0``)."""
    sign = np.asarray(sign, np.int64)
    return np.where(sign != 0, sign << np.asarray(shift, np.int64), 0)


def _shifted(xs, sign, shift):
    """``sign * (xs << shift)`` (broadcast), 0 where ``sign == 0``."""
    k = np.where(sign != 0, shift, 0).astype(np.int64)
    return np.where(sign != 0, (xs << k) * sign.astype(np.int64), 0)


def _accumulate_masked(steps, bias, shape, acc: QFormat, mode: OverflowMode):
    """Step 2-4 over ``(term, performed)`` pairs (channel axis 1), then ``bias``."""
    total = np.zeros(shape, np.int64)
    events = np.zeros(shape, np.int64)
    peak = np.zeros(shape, U64)
    for term, performed in [*steps, (bias, True)]:
        performed = np.broadcast_to(performed, shape)
        new, over, mag = _add_step(total, np.broadcast_to(term, shape), acc, mode)
        total = np.where(performed, new, total)
        events += over & performed
        peak = np.maximum(peak, np.where(performed, mag, U64(0)))
    other = tuple(a for a in range(len(shape)) if a != 1)
    return total, events.sum(axis=other), peak.max(axis=other, initial=U64(0))


def conv2d_shift(x, sign, shift, bias, x_zero_point, strides, pads, dilations, groups,
                 acc: QFormat, overflow: OverflowMode):
    """NCHW shift-add conv: ``(acc [N,Co,Ho,Wo], events [Co], peak uint64 [Co])``."""
    n, _, h, wd = x.shape
    c_out, cg, kh, kw = sign.shape
    ho = _out_size(h, kh, strides[0], dilations[0], pads[0], pads[2])
    wo = _out_size(wd, kw, strides[1], dilations[1], pads[1], pads[3])
    xp = _pad(x - x_zero_point, pads, 0)
    inside = _pad(np.ones((1, 1, h, wd), bool), pads, False)
    first_in = (np.arange(c_out) // (c_out // groups)) * cg  # first input channel of co's group

    def steps():
        for ci in range(cg):
            channel = xp[:, first_in + ci]  # [N, Co, Hp, Wp]
            for ky in range(kh):
                for kx in range(kw):
                    patch = _taps(channel, ky, kx, ho, wo, strides, dilations)
                    real = _taps(inside, ky, kx, ho, wo, strides, dilations)  # [1, 1, Ho, Wo]
                    s = sign[:, ci, ky, kx][None, :, None, None]
                    k = shift[:, ci, ky, kx][None, :, None, None]
                    yield _shifted(patch, s, k), real & (s != 0)

    bias = np.asarray(bias, np.int64)[None, :, None, None]
    return _accumulate_masked(steps(), bias, (n, c_out, ho, wo), acc, overflow)


def dense_shift(x, sign, shift, bias, x_zero_point, acc: QFormat, overflow: OverflowMode):
    """[N, In] x [Out, In] -> ``(acc [N, Out], events [Out], peak uint64 [Out])``."""
    xs = x - x_zero_point
    steps = ((_shifted(xs[:, i][:, None], sign[:, i][None, :], shift[:, i][None, :]),
              sign[:, i][None, :] != 0) for i in range(sign.shape[1]))
    bias = np.asarray(bias, np.int64)[None, :]
    return _accumulate_masked(steps, bias, (x.shape[0], sign.shape[0]), acc, overflow)
