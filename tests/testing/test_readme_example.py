"""The README's "Test your own kernels against fxp" example runs, and catches the planted bug."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

README = Path(__file__).resolve().parents[2] / "README.md"
CORRECT = "return (x >> e) + ((x & mask) > (mask >> 1) + (x < 0));"
WRONG = "(void)mask; return e ? (int32_t)(((int64_t)x + (1LL << (e - 1))) >> e) : x;"


def _example() -> str:
    text = README.read_text()
    section = text.split("## Test your own kernels against fxp", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run(code: str, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.mkdtemp", lambda: str(tmp_path))
    ns: dict = {}
    exec(compile(code, "<README example>", "exec"), ns)  # noqa: S102 - our own README
    test = ns["test_requant"]
    return settings(database=None, derandomize=True, max_examples=200, deadline=None,
                    suppress_health_check=list(HealthCheck))(test)


def test_readme_example_passes(c_compiler, tmp_path, monkeypatch):
    code = _example()
    assert CORRECT in code
    _run(code, tmp_path, monkeypatch)()


def test_readme_example_catches_the_wrong_tie_rule(c_compiler, tmp_path, monkeypatch):
    test = _run(_example().replace(CORRECT, WRONG), tmp_path, monkeypatch)
    with pytest.raises(AssertionError) as info:
        test()
    text = str(info.value)
    assert "1 of 1 elements differ; first at index (0,):" in text
    assert "expected: -1 (0xff) = -1.0 in fixed<8,8>" in text
    assert "actual:   0 (0x00)" in text
    # the README shows this exact report: the requant_inputs strategy shrinks to the -0.5 tie
    readme = README.read_text()
    assert text.strip() in readme, text
