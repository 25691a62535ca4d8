"""Shared test configuration: hypothesis profiles, markers, paths.

Profiles (select with ``HYPOTHESIS_PROFILE``; ``CI=true`` selects ``ci``):

* ``ci``  -- derandomized, no database, ``deadline=None`` (jitted code compiles on
  first call), blobs printed so any failure can be replayed;
* ``dev`` -- randomized, same example counts;
* ``nightly`` -- randomized, 50x the examples.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

_common = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, database=None, **_common)
settings.register_profile("dev", **_common)
settings.register_profile("nightly", max_examples=5000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (datasets, references); tests using it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present (developer/CI data only)")
    return SHARED
