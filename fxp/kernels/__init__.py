"""Numba kernels: jitted twins of :mod:`fxp.core.intmath`.

Kernels take arrays and plain integers (mode codes from ``RoundingMode.code`` /
``OverflowMode.code``), return arrays plus overflow counts, never raise and
never allocate formats.  Each kernel's only caller is a thin validating layer
in :mod:`fxp.ops`; the tests pin every kernel to the numpy specification.
"""
