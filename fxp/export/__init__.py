"""Files other toolchains read: golden vectors, hls4ml configs and C headers."""

from __future__ import annotations

from fxp.errors import UnsupportedOpError

__all__ = ["fixed_point_steps"]


def fixed_point_steps(model):
    """The compiled integer layers with weights, for exporters of fixed-point layers.

    Skips float layers and weightless steps; refuses binary (XNOR-popcount)
    layers, whose arithmetic a plain weight array plus shift cannot describe.
    """
    for step in model.steps:
        lp = step.plan
        if lp is None or lp.float_layer or step.w_codes is None:
            continue
        if lp.is_binary:
            raise UnsupportedOpError(f"layer {step.name!r} is binary (XNOR-popcount); this "
                                     "export writes fixed-point layers only")
        yield step
