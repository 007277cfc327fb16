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


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is installed with torch; this environment lacks it")
def test_extract_shards_episodes_across_ranks(tmp_path, monkeypatch):
    """Each rank extracts episodes rank::2; afterwards every entry is there and a rerun computes nothing."""
    from tkjepa import paths
    from tkjepa.backbones import load_backbones
    from tkjepa.forecast import store
    from tkjepa.forecast.data import ForecastConfig
    from tkjepa.world import WorldConfig
    from tkjepa.world.generate import write_dataset

    data = tmp_path / "rec"
    write_dataset(data, 6, seed=11, cfg=WorldConfig(layout="homes", recording=(96, 160)), workers=1, progress=False)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "tkjepa", "extract", "--data",
                          str(data), "--quiet", "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)  # rank 0 alone prints
    assert result["episodes"] == 6 and result["processes"] == 2
    calls = []
    monkeypatch.setattr(store, "episode_arrays", lambda *a: calls.append(a) or 1 / 0)
    entries, _ = store.extract_folder(data, load_backbones(paths.ENCODER, paths.THINKER), ForecastConfig(),
                                      paths.CACHE, progress=False)
    assert len(entries) == 6 and calls == []
