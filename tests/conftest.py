"""Shared fixtures. `viewer_url`: the rollout viewer (demos/rollout_viewer.py) served in-process, once per run;
`one_thread`: torch on one thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`);
`chromium`: Debian's chromium for the browser tests (Playwright drives it; its own browser downloads are never
used), installed with apt-get when missing (CI runs `make test` as root on a fresh machine)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_script(relative: str):
    """A repository script outside the package (demos/, docs/) imported by its path."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def viewer_module():
    """demos/rollout_viewer.py imported by path (demos/ is not a package): its module-level `demo` is built."""
    return load_script("demos/rollout_viewer.py")


@pytest.fixture(scope="session")
def viewer_url(viewer_module):
    from tkjepa.viewer.app import launch

    url = launch(viewer_module.demo, port=free_port(), block=False)
    yield url
    viewer_module.demo.close()


@pytest.fixture(scope="module")
def one_thread():
    """Tensors this small only lose to thread hand-offs (4× slower on a busy 2-core machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


CHROMIUM = Path("/usr/bin/chromium")
# Headless and offline: no sandbox (root in containers), no GPU (software WebGL draws plotly's 3D scene), and
# none of the background traffic (updates, sync, component downloads) a fresh profile would start.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-unsafe-swiftshader"]


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing; pytest.fail (never skip) when that fails."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing and installing it needs root: run `sudo apt-get install -y chromium`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        log.append(f"$ {' '.join(cmd)} -> exit {r.returncode}\n{(r.stdout + r.stderr)[-1500:]}")
        if r.returncode:
            break
    if not CHROMIUM.exists():
        pytest.fail("could not install Debian's chromium for the browser test:\n" + "\n".join(log))
    return CHROMIUM
