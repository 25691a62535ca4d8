"""pytest plugin: fxp's hypothesis profiles and fixtures, with one line of configuration.

Installed with fxp through the entry point ``[project.entry-points.pytest11]
fxp = "fxp.testing.plugin"``, so it is active in every pytest run of an
environment where fxp is installed (disable it with ``-p no:fxp``).  Without
the entry point, add ``pytest_plugins = ["fxp.testing.plugin"]`` to your
root ``conftest.py``.

Profiles (registered, *not* loaded unless asked)
    ``fxp-ci``       derandomized, no example database, ``deadline=None``
                     (Numba compiles on the first call), ``print_blob=True``
                     (every failure prints a ``@reproduce_failure`` blob);
    ``fxp-dev``      randomized, same example counts, ``deadline=None``;
    ``fxp-nightly``  randomized, 5,000 examples per test.

    Select one with ``pytest --fxp-profile=fxp-ci`` or the environment variable
    ``FXP_HYPOTHESIS_PROFILE=fxp-ci``; otherwise the active hypothesis profile
    is left as it is (your conftest or ``--hypothesis-profile`` decides).

Fixtures
    ``fxp_strategies``  the module :mod:`fxp.testing.strategies`;
    ``fxp_oracles``     the module :mod:`fxp.testing.oracles`;
    ``c_compiler``      path of the system C compiler (session); skips the
                        test cleanly when none is found;
    ``fxp_compile_c``   ``compile(source, name="kernel") -> ctypes.CDLL``,
                        building into a per-session temporary directory.

The plugin must not break pytest where hypothesis is missing: profiles are
then not registered, and ``fxp_strategies`` skips the test with the reason.
"""

from __future__ import annotations

import os

import pytest

PROFILES = ("fxp-ci", "fxp-dev", "fxp-nightly")
ENV_VAR = "FXP_HYPOTHESIS_PROFILE"


def register_profiles() -> bool:
    """Register the ``fxp-*`` hypothesis profiles (idempotent); False without hypothesis."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:
        return False
    common = dict(deadline=None, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("fxp-ci", derandomize=True, database=None, **common)
    # explicit derandomize=False: a profile registered after a derandomized one inherits it
    settings.register_profile("fxp-dev", derandomize=False, **common)
    settings.register_profile("fxp-nightly", derandomize=False, max_examples=5000, **common)
    return True


def pytest_addoption(parser) -> None:
    group = parser.getgroup("fxp", "fxp fixed-point testing")
    group.addoption("--fxp-profile", action="store", default=None, choices=PROFILES,
                    help=f"load this fxp hypothesis profile (or set ${ENV_VAR}); "
                         "by default the active profile is left unchanged")


def pytest_configure(config) -> None:
    have = register_profiles()
    name = config.getoption("--fxp-profile", default=None) or os.environ.get(ENV_VAR) or None
    if name is None:
        return
    if name not in PROFILES:
        raise pytest.UsageError(f"${ENV_VAR}={name!r}: choose one of {', '.join(PROFILES)}")
    if not have:
        raise pytest.UsageError(f"fxp profile {name!r} needs hypothesis: pip install hypothesis")
    from hypothesis import settings

    settings.load_profile(name)


def pytest_report_header(config) -> str | None:
    name = config.getoption("--fxp-profile", default=None) or os.environ.get(ENV_VAR)
    return f"fxp: hypothesis profile {name}" if name else None


@pytest.fixture(scope="session")
def fxp_strategies():
    """The :mod:`fxp.testing.strategies` module (skips when hypothesis is missing)."""
    from fxp.errors import MissingDependencyError

    try:
        from fxp.testing import strategies
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    return strategies


@pytest.fixture(scope="session")
def fxp_oracles():
    """The :mod:`fxp.testing.oracles` module (pure Python references)."""
    from fxp.testing import oracles

    return oracles


@pytest.fixture(scope="session")
def c_compiler() -> str:
    """Path of the system C compiler (``$CC``, ``cc``, ``gcc`` or ``clang``); skips if none."""
    from fxp.testing.cc import find_c_compiler

    cc = find_c_compiler()
    if cc is None:
        pytest.skip("no C compiler found (install gcc or clang, or set $CC)")
    return cc


@pytest.fixture(scope="session")
def fxp_compile_c(c_compiler, tmp_path_factory):
    """``compile(source, name="kernel", flags=...) -> ctypes.CDLL`` (session temp dir)."""
    from fxp.testing.cc import DEFAULT_FLAGS, compile_shared

    out = tmp_path_factory.mktemp("fxp_c")

    def compile_c(source, name: str = "kernel", flags=DEFAULT_FLAGS):
        return compile_shared(source, out, name=name, flags=flags, compiler=c_compiler)

    return compile_c
