"""The uint8 x int8 GEMM of the proven path on CPUs with AVX-512 VNNI.

``C[m, n] = sum_k int32(A[m, k]) * int32(B[k, n])`` with ``A`` uint8 codes
(im2col rows) and ``B`` int8 weights, accumulated in int32 by the CPU's
``vpdpbusd`` instruction: each of its 16 int32 lanes adds four exact
``u8 * s8`` products (no intermediate saturation, unlike ``vpmaddubsw``) to
its accumulator, wrapping modulo ``2**32``.  The caller proves that no sum
reaches ``2**31`` (:func:`fxp.sim.fast_vnni.vnni_plan`), so every int32 is
the exact integer; :func:`fxp.kernels.spec_fast_layers.gemm_u8s8` is the
numpy statement this kernel must equal.

Layout (chosen so one ``vpdpbusd`` consumes one aligned group of four ``k``):

* ``a [M_pad, 4*K4]`` uint8, ``M_pad`` a multiple of :data:`MR` rows and the
  row length a multiple of 4; the columns past ``K`` and the rows past ``M``
  may hold anything (their weights are zero / their outputs are ignored);
* ``bp [NB, K4, 16*NV, 4]`` int8 from :func:`pack_weights`: panel ``nb``
  holds columns ``nb*16*NV ..`` with zero columns past ``N`` and zero rows
  past ``K``;
* ``c [M_pad, NB*16*NV]`` int32, written whole.

The microkernel is LLVM IR emitted through a numba intrinsic (numba has no
vector types): ``MR x NV`` 512-bit accumulators live in registers across the
``K4`` loop; each step loads ``NV`` weight vectors, broadcasts four codes of
each row and issues ``MR*NV`` ``vpdpbusd``.  Its implicit-GEMM twin (the tap
microkernel) reads each row's codes through per-tap offsets instead of one row
stride; :mod:`fxp.kernels.vnni_conv` builds the fused convolutions on both.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from fxp.kernels._jit import kernel, prange

__all__ = ["MR", "available", "gemm_u8s8", "pack_weights", "panel_width"]

MR = 4
"""Rows of ``A`` per microkernel call (4 rows x 2 vectors of 16 columns: 8 accumulators)."""
_V16 = ir.VectorType(ir.IntType(32), 16)


def available() -> bool:
    """Whether this process can run :func:`gemm_u8s8`: the host CPU has AVX-512 VNNI, numba
    compiles (``NUMBA_DISABLE_JIT`` unset) and ``FXP_NO_VNNI`` is unset or 0."""
    if os.environ.get("FXP_NO_VNNI", "0") not in ("", "0") or numba.config.DISABLE_JIT:
        return False
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    return bool(features.get("avx512vnni")) and bool(features.get("avx512f"))


def panel_width(n: int) -> int:
    """Vectors of 16 columns per panel for ``n`` output columns (1 up to 16, else 2)."""
    return 1 if n <= 16 else 2


def pack_weights(b: np.ndarray, nv: int) -> np.ndarray:
    """``b [K, N]`` int8 -> ``bp [NB, K4, 16*nv, 4]`` with ``bp[nb, q, j, r] = b[4q + r,
    nb*16*nv + j]`` (zero outside ``b``)."""
    k, n = b.shape
    k4, width = -(-k // 4), 16 * nv
    nb = max(1, -(-n // width))
    padded = np.zeros((4 * k4, nb * width), np.int8)
    padded[:k, :n] = b
    return np.ascontiguousarray(padded.reshape(k4, 4, nb, width).transpose(2, 0, 3, 1))


def _ptr(builder, data, offset, ty):
    """``(ty*)((i8*) data + offset)``."""
    base = builder.bitcast(data, ir.IntType(8).as_pointer())
    return builder.bitcast(builder.gep(base, [offset]), ty.as_pointer())


def _dot_step(builder, dot, accs, w_ptr, row_ptrs, nv):
    """One group of four ``k``: load ``nv`` weight vectors from ``w_ptr``, broadcast four
    codes at each row pointer, ``accs[r*nv + v] += vpdpbusd``."""
    i32 = ir.IntType(32)
    w = [builder.load(builder.gep(builder.bitcast(w_ptr, _V16.as_pointer()),
                                  [ir.Constant(ir.IntType(64), v)]), align=1)
         for v in range(nv)]
    splat = ir.Constant(ir.VectorType(i32, 16), None)  # all-zero shuffle mask
    for r, p in enumerate(row_ptrs):
        four = builder.load(builder.bitcast(p, i32.as_pointer()), align=1)
        vec = builder.insert_element(ir.Constant(_V16, ir.Undefined), four, ir.Constant(i32, 0))
        rows = builder.shuffle_vector(vec, ir.Constant(_V16, ir.Undefined), splat)
        for v in range(nv):
            acc = accs[r * nv + v]
            builder.store(builder.call(dot, [builder.load(acc), rows, w[v]]), acc)


def _begin(builder, nv):
    """``(vpdpbusd, MR*nv zeroed accumulator slots)``."""
    dot = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_V16, [_V16, _V16, _V16]), "llvm.x86.avx512.vpdpbusd.512")
    return dot, [cgutils.alloca_once_value(builder, ir.Constant(_V16, None))
                 for _ in range(MR * nv)]


def _store(builder, accs, c_ptr, ldc, nv):
    """``c[r*ldc + 16*v .. +16] = accs[r*nv + v]`` (``c_ptr`` an int32 pointer)."""
    ity = ldc.type
    for r in range(MR):
        for v in range(nv):
            off = builder.add(builder.mul(ir.Constant(ity, r), ldc), ir.Constant(ity, 16 * v))
            builder.store(builder.load(accs[r * nv + v]),
                          builder.bitcast(builder.gep(c_ptr, [off]), _V16.as_pointer()), align=4)


def _microkernel(nv: int):
    """The intrinsic ``tile(a, a_off, lda, bp, b_off, k4, c, c_off, ldc)``: ``c[r, j] =
    sum`` over the ``k4`` groups for rows ``r < MR`` from byte offset ``a_off`` (row stride
    ``lda``) and the panel at ``b_off``, stored at int32 offset ``c_off`` (row stride ``ldc``)."""

    @intrinsic
    def tile(typingctx, a_t, a_off_t, lda_t, b_t, b_off_t, k4_t, c_t, c_off_t, ldc_t):
        sig = types.void(a_t, types.intp, types.intp, b_t, types.intp, types.intp, c_t,
                         types.intp, types.intp)

        def codegen(context, builder, signature, args):
            a, a_off, lda, b, b_off, k4, c, c_off, ldc = args
            data = [context.make_array(signature.args[j])(context, builder, v).data
                    for j, v in ((0, a), (3, b), (6, c))]
            ity, i8 = a_off.type, ir.IntType(8)
            dot, accs = _begin(builder, nv)
            with cgutils.for_range(builder, k4) as loop:
                q4 = builder.mul(loop.index, ir.Constant(ity, 4))
                rows = [_ptr(builder, data[0], builder.add(
                    a_off, builder.add(builder.mul(ir.Constant(ity, r), lda), q4)), i8)
                    for r in range(MR)]
                w_off = builder.add(b_off, builder.mul(loop.index, ir.Constant(ity, 64 * nv)))
                _dot_step(builder, dot, accs, _ptr(builder, data[1], w_off, i8), rows, nv)
            _store(builder, accs, _ptr(builder, data[2], builder.mul(
                c_off, ir.Constant(ity, 4)), ir.IntType(32)), ldc, nv)
            return context.get_dummy_value()

        return sig, codegen

    return tile


def _tap_microkernel(nv: int):
    """The intrinsic ``tile(x, pad, offs, o_base, t_stride, taps, c4, bp, b_off, c, c_off,
    ldc)`` of the implicit GEMM: row ``r < MR``'s codes of tap ``t`` are the ``4*c4`` bytes at
    ``x + offs[o_base + t*t_stride + r]`` (``pad`` where that offset is negative); ``c[r, j] =``
    the sum over the taps and their ``c4`` groups of four, with the weights of group ``t*c4 +
    q`` at ``bp + b_off`` (as :func:`_microkernel`)."""

    @intrinsic
    def tile(typingctx, x_t, pad_t, offs_t, o_base_t, t_stride_t, taps_t, c4_t, b_t, b_off_t,
             c_t, c_off_t, ldc_t):
        sig = types.void(x_t, pad_t, offs_t, types.intp, types.intp, types.intp, types.intp,
                         b_t, types.intp, c_t, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            x, pad, offs, o_base, t_stride, taps, c4, b, b_off, c, c_off, ldc = args
            data = [context.make_array(signature.args[j])(context, builder, v).data
                    for j, v in ((0, x), (1, pad), (2, offs), (7, b), (9, c))]
            ity, i8 = o_base.type, ir.IntType(8)
            dot, accs = _begin(builder, nv)
            offs_ptr = builder.bitcast(data[2], ity.as_pointer())
            with cgutils.for_range(builder, taps) as tap:
                t = tap.index
                rows = []
                for r in range(MR):
                    at = builder.add(o_base, builder.add(builder.mul(t, t_stride),
                                                         ir.Constant(ity, r)))
                    off = builder.load(builder.gep(offs_ptr, [at]))
                    inside = builder.icmp_signed(">=", off, ir.Constant(ity, 0))
                    rows.append(builder.select(inside, _ptr(builder, data[0], off, i8),
                                               builder.bitcast(data[1], i8.as_pointer())))
                g0 = builder.mul(t, c4)
                with cgutils.for_range(builder, c4) as loop:
                    q4 = builder.mul(loop.index, ir.Constant(ity, 4))
                    step_rows = [builder.gep(p, [q4]) for p in rows]
                    w_off = builder.add(b_off, builder.mul(builder.add(g0, loop.index),
                                                           ir.Constant(ity, 64 * nv)))
                    _dot_step(builder, dot, accs, _ptr(builder, data[3], w_off, i8), step_rows,
                              nv)
            _store(builder, accs, _ptr(builder, data[4], builder.mul(
                c_off, ir.Constant(ity, 4)), ir.IntType(32)), ldc, nv)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile1 = _microkernel(1)
_tile2 = _microkernel(2)
_taps1 = _tap_microkernel(1)
_taps2 = _tap_microkernel(2)


@kernel
def gemm_u8s8(a, bp, c):
    """``c[:, :] = a @ B`` on the layout of the module docstring (``B`` packed as ``bp``);
    rows of :data:`MR` run in parallel in the parallel build."""
    n_panels, k4, width, _ = bp.shape
    lda, ldc = a.shape[1], c.shape[1]
    panel = k4 * width * 4
    for nb in range(n_panels):
        for t in prange(a.shape[0] // MR):
            i = t * MR
            if width == 16:
                _tile1(a, i * lda, lda, bp, nb * panel, k4, c, i * ldc + nb * width, ldc)
            else:
                _tile2(a, i * lda, lda, bp, nb * panel, k4, c, i * ldc + nb * width, ldc)

