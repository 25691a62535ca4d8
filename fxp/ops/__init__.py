"""Validated, dispatching Python layer over the Numba kernels."""
