"""The pytest plugin: profiles registered but not loaded unless asked; fixtures; clean skips."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import settings

from fxp.testing import plugin

INNER = textwrap.dedent("""
    import os
    from hypothesis import settings

    def test_profile():
        print("PROFILE=" + settings.get_current_profile_name())

    def test_fixtures(fxp_strategies, fxp_oracles):
        assert hasattr(fxp_strategies, "tie_values") and hasattr(fxp_oracles, "conv2d")

    def test_compiler(fxp_compile_c):
        lib = fxp_compile_c("int add1(int x) { return x + 1; }", "add1")
        assert lib.add1(41) == 42
""")


class _Config:
    def __init__(self, profile=None):
        self.profile = profile

    def getoption(self, name, default=None):
        return self.profile


def test_profiles_are_registered_with_the_documented_settings():
    assert plugin.register_profiles()
    ci = settings.get_profile("fxp-ci")
    assert ci.derandomize and ci.database is None and ci.deadline is None and ci.print_blob
    dev = settings.get_profile("fxp-dev")
    assert not dev.derandomize and dev.deadline is None and dev.print_blob
    assert settings.get_profile("fxp-nightly").max_examples == 5000
    assert not {"ci", "dev", "nightly"} & set(plugin.PROFILES)  # no clash with tests/conftest.py


def test_configure_changes_the_profile_only_when_asked(monkeypatch):
    before = settings.get_current_profile_name()
    monkeypatch.delenv(plugin.ENV_VAR, raising=False)
    try:
        plugin.pytest_configure(_Config())
        assert settings.get_current_profile_name() == before
        plugin.pytest_configure(_Config("fxp-dev"))
        assert settings.get_current_profile_name() == "fxp-dev"
        monkeypatch.setenv(plugin.ENV_VAR, "fxp-nightly")
        plugin.pytest_configure(_Config())
        assert settings.get_current_profile_name() == "fxp-nightly"
        monkeypatch.setenv(plugin.ENV_VAR, "nightly")
        with pytest.raises(pytest.UsageError, match="choose one of fxp-ci"):
            plugin.pytest_configure(_Config())
    finally:
        settings.load_profile(before)


def _run_pytest(tmp_path, *args, env=None):
    (tmp_path / "test_inner.py").write_text(INNER)
    full_env = {k: v for k, v in os.environ.items() if k not in (plugin.ENV_VAR, "CC")}
    full_env.update(env or {})
    # -p no:fxp then -p fxp.testing.plugin: works whether or not the entry point is installed
    cmd = [sys.executable, "-m", "pytest", "-p", "no:fxp", "-p", "fxp.testing.plugin",
           "-p", "no:cacheprovider", "-s", "-rs", *args, str(tmp_path / "test_inner.py")]
    return subprocess.run(cmd, cwd=tmp_path, env=full_env, capture_output=True, text=True,
                          check=False, timeout=120)


def test_plugin_in_a_fresh_pytest_run(tmp_path):
    # --fxp-profile loads the profile; without a C compiler on PATH the compiler fixtures
    # skip cleanly and nothing fails.  (That the profile is left alone without the option is
    # checked in-process above.)
    res = _run_pytest(tmp_path, "--fxp-profile=fxp-ci", env={"PATH": str(tmp_path / "empty")})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PROFILE=fxp-ci" in res.stdout
    assert "fxp: hypothesis profile fxp-ci" in res.stdout
    assert "2 passed, 1 skipped" in res.stdout
    assert "no C compiler found" in res.stdout
