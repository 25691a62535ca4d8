"""hls4ml's table softmax: table sizes and tables worked out once, then run on codes.

:func:`prepare_softmax` does what hls4ml 1.3.0 does before the C++ runs:

* ``fix_softmax_table_size`` (``backends/fpga/passes``): a ``table_size``
  above ``2**min(W_in, W_inv_table)`` is lowered to that;
* the softmax config template (``backends/vivado/passes/core_templates.py``):
  ``inv_table_size = table_size``; for ``stable``, ``inp_norm_t =
  ap_ufixed<W_in - s, I_in - s>`` and, for a signed input, ``exp_table_size =
  min(table_size, 2**(W_in - 1))``; for ``latency`` the exp table is indexed
  by the input type itself;
* ``init_exp_table`` / ``init_invert_table``: the tables
  (:mod:`fxp.kernels.spec_softmax_table`).

:func:`softmax_table_int` then runs the Numba kernel
(:mod:`fxp.kernels.softmax_table`) or the numpy specification on rows of codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import PlanError
from fxp.kernels import spec_softmax_table as spec
from fxp.plan.softmax import ApType, SoftmaxTable

__all__ = ["PreparedSoftmax", "prepare_softmax", "softmax_table_int"]


@dataclass(frozen=True)
class PreparedSoftmax:
    """Everything hls4ml fixes before the softmax runs (see the module docstring)."""

    in_fmt: QFormat
    stable: bool
    norm_fmt: QFormat  # inp_norm_t (stable) or the input type (latency)
    n_exp: int  # address bits of the exp table
    n_inv: int  # address bits of the inverse table
    exp_table: np.ndarray  # codes of exp_t
    inv_table: np.ndarray  # codes of inv_t
    exp_t: ApType
    inv_t: ApType
    inv_inp_t: ApType
    accum_t: ApType
    schedule: np.ndarray  # reduce_schedule(n)


def prepare_softmax(in_fmt: QFormat, sp: SoftmaxTable, n: int, where: str = "softmax"
                    ) -> PreparedSoftmax:
    """Table sizes, types and tables for ``n`` logits coded in ``in_fmt``.

    Raises
    ------
    PlanError
        A table index would need more bits than its type has, or a product
        ``accum * inv_table`` would not fit 62 bits.
    """
    if n < 1:
        raise PlanError(f"{where}: a softmax over {n} values")
    size = min(sp.table_size, 1 << min(in_fmt.bits, sp.inv_table_t.fmt.bits))
    inv_size = exp_size = size
    if sp.strategy == "stable":
        s = int(in_fmt.signed)
        if in_fmt.bits - s < 1:
            raise PlanError(f"{where}: input {in_fmt} leaves no bits for hls4ml's inp_norm_t")
        norm = QFormat(in_fmt.bits - s, in_fmt.int_bits - s, False)
        if in_fmt.signed:
            exp_size = min(size, 1 << norm.bits)
    else:
        norm = in_fmt
    n_exp, n_inv = exp_size.bit_length() - 1, inv_size.bit_length() - 1
    n_exp, n_inv = max(n_exp, 1), max(n_inv, 1)  # hls4ml's ceillog2(1) is 1
    if n_exp > norm.bits or n_inv > sp.inv_inp_t.fmt.bits:
        raise PlanError(f"{where}: tables of {exp_size} / {inv_size} entries need more address "
                        f"bits than {norm} / {sp.inv_inp_t.fmt} have")
    if sp.accum_t.fmt.bits + sp.inv_table_t.fmt.bits > 62:
        raise PlanError(f"{where}: accum_t {sp.accum_t} times inv_table_t {sp.inv_table_t} "
                        "needs more than 62 bits")
    return PreparedSoftmax(
        in_fmt, sp.strategy == "stable", norm, n_exp, n_inv,
        spec.exp_table_codes(norm, n_exp, sp.exp_table_t, negative=sp.strategy == "stable"),
        spec.inv_table_codes(sp.inv_inp_t.fmt, n_inv, sp.inv_table_t), sp.exp_table_t,
        sp.inv_table_t, sp.inv_inp_t, sp.accum_t, spec.reduce_schedule(n))


def _cast_params(src_frac: int, fmt: QFormat, rounding: RoundingMode,
                 overflow: OverflowMode) -> np.ndarray:
    lo, hi = intmath._range_for(fmt, overflow)
    return np.array([fmt.frac_bits - src_frac, rounding.code, lo, hi, fmt.bits,
                     int(fmt.signed), overflow.code], np.int64)


def softmax_table_int(codes: np.ndarray, p: PreparedSoftmax, out_fmt: QFormat,
                      rounding: RoundingMode | str = "floor", overflow: OverflowMode | str =
                      "wrap", *, backend: str = "numba") -> tuple[np.ndarray, int]:
    """hls4ml's softmax over the last axis of ``codes`` ``[N, n]`` (codes of ``p.in_fmt``).

    The result is cast into ``out_fmt`` with ``rounding`` / ``overflow`` (hls4ml's
    result type); returns (codes, number of output overflows).
    """
    rounding, overflow = RoundingMode.from_string(rounding), OverflowMode.from_string(overflow)
    x = np.ascontiguousarray(np.asarray(codes, np.int64))
    if x.ndim != 2 or x.shape[1] != len(p.schedule) + 1:
        raise PlanError(f"softmax table: expected codes [N, {len(p.schedule) + 1}], got "
                        f"shape {x.shape}")
    if backend == "numpy":
        return spec.softmax_table_spec(x, p, out_fmt, rounding, overflow)
    if backend != "numba":
        raise PlanError(f"backend must be 'numba' or 'numpy', got {backend!r}")
    from fxp.kernels.softmax_table import softmax_table_rows

    acc, inv_inp = p.accum_t, p.inv_inp_t
    acc_p = _cast_params(p.exp_t.fmt.frac_bits, acc.fmt, acc.rounding, acc.overflow)
    inv_p = _cast_params(acc.fmt.frac_bits, inv_inp.fmt, inv_inp.rounding, inv_inp.overflow)
    out_p = _cast_params(acc.fmt.frac_bits + p.inv_t.fmt.frac_bits, out_fmt, rounding,
                         overflow)
    out = np.empty_like(x)
    n_sat = softmax_table_rows(x.size, x, p.stable, p.in_fmt.bits, p.norm_fmt.bits, p.n_exp,
                               p.n_inv, p.exp_table, p.inv_table, p.schedule, acc_p, inv_p,
                               out_p, out)
    return out, int(n_sat)
