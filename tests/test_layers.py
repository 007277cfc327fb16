"""The package's layering is a checked contract: the import-linter contracts in pyproject.toml hold, and they
catch an import that runs back up the data path (a function-local one too)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"
MAX_LINES = 450


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(REPO / "tkjepa", root / "tkjepa", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root)
    return root


def test_contracts_hold():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("episode.py", "from tkjepa.forecast.model import Forecaster", "the data path runs one way"),
    ("encoder/vit.py", "def f():\n    from tkjepa.thinker import model", "the data path runs one way"),
    ("forecast/data.py", "def f():\n    from tkjepa.paths import EPISODES", "only the command layer"),
])
def test_an_import_back_up_is_caught(copy, module, line, contract):
    path = copy / "tkjepa" / module
    original = path.read_text()
    try:
        path.write_text(original + "\n\n" + line + "\n")
        result = lint(copy)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout


def test_no_module_is_too_long():
    long = {str(p.relative_to(REPO)): n for p in (REPO / "tkjepa").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"
