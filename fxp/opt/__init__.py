"""Bit-width optimization: Lin-style SQNR noise model and an exact MILP allocator.

* :mod:`fxp.opt.noise` -- per-tensor output-noise measurement and Lin's law fit;
* :mod:`fxp.opt.model` -- additive output model, plans for widths, validation;
* :mod:`fxp.opt.problem` -- problem data and cvxpy formulations;
* :mod:`fxp.opt.solve` -- verified solvers and :func:`optimize_bits`.

cvxpy is imported only when a problem is solved.
"""

from fxp.opt.model import ModelValidation, plan_for_widths, predict_sqnr_db, validate_model
from fxp.opt.noise import NoiseTable, QTensor, measure_noise, quantizable_tensors
from fxp.opt.problem import AllocationProblem, ContinuousProblem
from fxp.opt.solve import (
    BitAllocation,
    allocation_problem,
    brute_force,
    lin_closed_form,
    optimize_bits,
    solve_continuous,
    solve_milp,
)

__all__ = ["AllocationProblem", "BitAllocation", "ContinuousProblem", "ModelValidation",
           "NoiseTable", "QTensor", "allocation_problem", "brute_force", "lin_closed_form",
           "measure_noise", "optimize_bits", "plan_for_widths", "predict_sqnr_db",
           "quantizable_tensors", "solve_continuous", "solve_milp", "validate_model"]
