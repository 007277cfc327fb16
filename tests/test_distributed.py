"""`torchrun --nproc_per_node=2 -m tkjepa train …` on the CPU (gloo): two processes, each with half of every
step's batch, end with the weights of one process taking the whole batch (to float tolerance), and only rank
0 writes the checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tkjepa.cli import main

ARGS = ["train", "--variant", "thinkjepa", "--episodes", "16", "--set", "steps=6", "--set", "batch_size=8",
        "--set", "warmup=2", "--quiet", "--threads", "1"]


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is installed with torch; this environment lacks it")
def test_two_processes_match_one(tmp_path):
    assert main([*ARGS, "--out", str(tmp_path / "one")]) == 0  # also fills the cache both ranks then read
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "tkjepa", *ARGS,
                          "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("final train trajectory error") == 1  # rank 0 reports, once
    one, two = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=k)
    meta_one, meta_two = (json.loads((tmp_path / n / "config.json").read_text()) for n in ("one", "two"))
    assert meta_one["pipeline"]["processes"] == 1 and meta_two["pipeline"]["processes"] == 2
    losses = [[r["loss"] for r in m["history"]] for m in (meta_one, meta_two)]
    assert losses[0][0] > losses[0][-1]                      # it trained
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-4, atol=1e-6)
    assert not (tmp_path / "two" / "train_state.safetensors").exists()
