"""Per-layer plans: what word length and arithmetic each layer uses."""

from __future__ import annotations

from fxp.plan.io import load_plan, plan_from_dict, plan_to_dict, save_plan
from fxp.plan.plan import SCHEMA_VERSION, LayerPlan, Plan, RequantScheme, TensorSpec

__all__ = ["SCHEMA_VERSION", "LayerPlan", "Plan", "RequantScheme", "TensorSpec", "load_plan",
           "plan_from_dict", "plan_to_dict", "save_plan"]
