"""Every committed report regenerates: each ``reports/*/run.py`` runs end to end.

The full runs take minutes to an hour (their commands are in each report's README); here each
script runs its ``--quick`` mode (tiny slices) into a scratch folder, and the test checks that
it exits cleanly and writes a README with a results table, without touching the committed
files.  Reports that retrain need torch and skip without it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"

# report folder -> (extra arguments, needs torch, needs the MNIST t10k files of ../shared)
QUICK = {
    "seed000_int8": (["--models", "mnist_cnn"], False, True),
    "seed001_sweep": ([], False, False),
    "seed002_inq": ([], True, True),
    "seed003_lin": (["--models", "mnist_cnn"], False, False),
    "seed003_xnor": ([], False, False),
    "seed004_clustering": ([], False, False),
    "retrain_ternary": ([], True, True),
}


def _have_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _have_t10k() -> bool:
    from fxp.data.sources import load_mnist_t10k
    from fxp.errors import FxpError

    try:
        load_mnist_t10k()
    except FxpError:
        return False
    return True


def test_every_report_folder_is_covered():
    folders = {p.parent.name for p in REPORTS.glob("*/run.py")}
    assert folders == set(QUICK), "add the new report to QUICK (and give it a --quick mode)"


def test_every_report_states_its_command():
    for name in QUICK:
        text = (REPORTS / name / "README.md").read_text()
        assert f"reports/{name}/run.py" in text, name


@pytest.mark.parametrize("name", sorted(QUICK))
def test_report_regenerates_quickly(name, tmp_path):
    extra, needs_torch, needs_t10k = QUICK[name]
    if needs_torch and not _have_torch():
        pytest.skip("needs torch (the train extra)")
    if needs_t10k and not _have_t10k():
        pytest.skip("needs the MNIST t10k files (../shared/datasets)")
    if name == "seed000_int8" and not _have_torch():
        extra = [*extra, "--skip-qat"]  # the post-training rows only
    before = {p: p.read_bytes() for p in (REPORTS / name).rglob("*") if p.is_file()}
    out = tmp_path / name
    proc = subprocess.run([sys.executable, str(REPORTS / name / "run.py"), "--quick", "--out",
                           str(out), *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "README.md").read_text()
    assert "|---" in text
    after = {p: p.read_bytes() for p in (REPORTS / name).rglob("*") if p.is_file()}
    assert after == before, "a --quick run changed the committed report"
