"""The installation stays what the README promises: pinned CPU torch, no torchvision, one consistent set of
extras across pyproject.toml / environment.yml, a working `tkjepa` command and notebooks committed clean."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def conda_pip() -> list[str]:
    """The entries of environment.yml's `pip:` section, in order."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs exactly one `pip:` section"
    return [str(line).strip() for line in sections[0]]


def constraint_pins(text: str) -> dict[str, str]:
    """`name==version` lines of a constraints / requirements text, comments and options skipped."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            pins[req.name.lower()] = specs[0].version
    return pins


def torch_pin() -> str:
    pins = constraint_pins((ROOT / "constraints.txt").read_text())
    assert "torch" in pins, "constraints.txt must pin torch==<version>"
    return pins["torch"]


# ---- (a) environment.yml agrees with pyproject.toml and constraints.txt ------------------------------


def test_environment_python_satisfies_requires_python(pyproject):
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "tkjepa"
    assert "conda-forge" in env["channels"]
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and re.match(r"python\b", d)]
    assert len(pythons) == 1, f"environment.yml should list python once, got {pythons}"
    m = re.fullmatch(r"python\s*=+\s*(\d+\.\d+(?:\.\d+)?)", pythons[0])
    assert m, f"expected `python=X.Y`, got {pythons[0]!r}"
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    assert requires.contains(m.group(1)), f"python {m.group(1)} does not satisfy requires-python {requires}"
    assert "pip" in env["dependencies"]


def test_environment_installs_package_with_exactly_pyprojects_extras(pyproject, conda_pip):
    editable = [line for line in conda_pip if line.startswith(("-e ", "--editable "))]
    assert len(editable) == 1, f"expected one `-e .[...]` line in the pip section, got {editable}"
    target = shlex.split(editable[0])[1]
    m = re.fullmatch(r"\.\[([^\]]*)\]", target)
    assert m, f"expected the repository itself with extras, `.[...]`, got {target!r}"
    listed = [e.strip() for e in m.group(1).split(",") if e.strip()]
    defined = set(pyproject["project"]["optional-dependencies"])
    assert len(listed) == len(set(listed)), f"extra listed twice: {listed}"
    assert not set(listed) - defined, f"environment.yml names extras pyproject lacks: {set(listed) - defined}"
    assert not defined - set(listed), f"environment.yml misses pyproject extras: {defined - set(listed)}"


def test_environment_uses_constraints_and_the_same_torch_pin(conda_pip):
    options = [shlex.split(line) for line in conda_pip if line.startswith(("-c", "--constraint"))]
    assert options, "environment.yml's pip section must install through constraints.txt"
    files = [opt[-1].removeprefix("--constraint=") for opt in options]
    assert files == ["constraints.txt"], files
    env_pins = constraint_pins("\n".join(conda_pip))
    assert env_pins.get("torch") == torch_pin(), (
        f"environment.yml pins torch {env_pins.get('torch')}, constraints.txt {torch_pin()}"
    )


# ---- (b) + (c) the installed environment -------------------------------------------------------------


def test_torchvision_is_not_installed():
    assert importlib.util.find_spec("torchvision") is None, (
        "torchvision is installed: its only build here is CUDA's and it breaks `import transformers`; "
        "pip uninstall -y torchvision"
    )


def test_constraints_pin_torch_and_installed_torch_matches():
    assert torch_pin() == "2.13.0"
    installed = md.version("torch")
    assert installed.split("+")[0] == torch_pin(), f"installed torch {installed}, pinned {torch_pin()}"
    cuda = [d.metadata["Name"] for d in md.distributions() if (d.metadata["Name"] or "").startswith("nvidia-")]
    assert not cuda, f"CUDA packages installed (torch installed without constraints.txt?): {cuda}"


# ---- (d) the console script ---------------------------------------------------------------------------


def test_tkjepa_console_script_resolves(pyproject):
    declared = pyproject["project"]["scripts"]
    assert declared.get("tkjepa") == "tkjepa.cli:main"
    eps = [ep for ep in md.entry_points(group="console_scripts") if ep.name == "tkjepa"]
    assert eps, "no `tkjepa` console script installed; re-run `make venv`"
    assert {ep.value for ep in eps} == {declared["tkjepa"]}, "installed entry point differs from pyproject"
    main = eps[0].load()
    assert callable(main)


def test_python_m_tkjepa_is_the_command():
    """`python -m tkjepa …` (tkjepa/__main__.py) runs the same command line, listing every command."""
    from tkjepa.cli import COMMANDS

    assert (ROOT / "tkjepa" / "__main__.py").is_file()
    r = subprocess.run([sys.executable, "-m", "tkjepa", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: tkjepa") and all(name in r.stdout for name in COMMANDS), r.stdout


# ---- (e) notebooks are committed valid and clean ------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_valid_and_has_no_outputs(path):
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4, f"{path.name}: nbformat {nb.nbformat}, expected 4"
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; clear them before committing"


def test_ci_entry_point_runs_make_test():
    run = ROOT / ".ci" / "run"
    assert os.access(run, os.X_OK), ".ci/run must be executable"
    text = run.read_text()
    assert "set -euo pipefail" in text and re.search(r"^exec make test$", text, re.M)
