"""Execution of Graph models; the float reference is :mod:`fxp.sim.float_ref`."""
