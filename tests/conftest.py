"""Shared fixtures. `viewer_url`: the rollout viewer (demos/rollout_viewer.py) served in-process, once per run;
`one_thread`: torch on one thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`)."""

from __future__ import annotations

import importlib.util
import socket
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
