"""Stand-ins for :func:`fxp.workflow.optimize_plan` results in the accuracy-search tests."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class FakeOptimizeResult:
    """The fields :func:`fxp.workflow.optimize_for_accuracy` reads from one try."""

    target_sqnr_db: float
    float_top1: float
    fixed_top1: float
    message: str = "solved"
    noise_table: object = "table"
    total_time_s: float = 0.0
    tries: list = dataclasses.field(default_factory=list)
