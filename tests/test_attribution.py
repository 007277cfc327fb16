"""Integrated-Gradients attribution of the thinker layers (tkjepa.attribution) on the shipped thinkjepa model."""

import argparse
import json
import math
from dataclasses import replace

import pytest
import torch

from tkjepa import attribution as A
from tkjepa import paths
from tkjepa.backbones import load_backbones
from tkjepa.forecast.data import ForecastConfig
from tkjepa.forecast.store import folder_data
from tkjepa.forecast.model import load_forecaster
from tkjepa.metrics import trajectory_scores

DATA = paths.EPISODES


@pytest.fixture(scope="module")
def model():
    return load_forecaster(paths.FORECASTERS / "thinkjepa").eval()


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    backbones = load_backbones(paths.ENCODER, paths.THINKER)
    d, _, _ = folder_data(DATA, backbones, ForecastConfig(), max_episodes=4, progress=False)
    return d


@pytest.fixture(scope="module")
def ig(model, data):
    return A.integrated_gradients(model, data.subset(torch.arange(2)))


def test_scalar_is_wrist_progress_toward_the_true_endpoint(model, data):
    with torch.no_grad():
        pred = model(data, torch.arange(len(data)), 1)[1][:, 7, 1]          # frame 8, rightHand
        s = A.ProgressScalar(model, data)(data.old, data.new, torch.arange(len(data)))
    p0, y = data.past[:, -1, 1], data.traj[:, 7, 1]
    u = (y - p0) / (y - p0).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(s, ((pred - p0) * u).sum(-1))
    # a perfect prediction would score the whole true displacement
    assert torch.allclose(((y - p0) * u).sum(-1), (y - p0).norm(dim=-1))


def test_episodes_without_motion_are_skipped(model, data):
    d = replace(data, traj=data.traj.clone())
    d.traj[1, 7, 1] = d.past[1, -1, 1] + 1e-4                               # 0.1 mm: u undefined
    _, _, keep, _ = A.scalar_terms(d, model.cfg.forecast.wrist)
    assert keep.tolist() == [True, False, True, True]


def test_baseline_is_the_masked_per_layer_mean():
    E, L, N, D = 2, 3, 4, 5
    old = torch.arange(E * L * N * D, dtype=torch.float32).view(E, L, N, D)
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    old[mask[:, None, :, None].expand_as(old).logical_not()] = 1e6        # padding must not count
    d = argparse.Namespace(old=old, old_mask=mask, new=old[:, :, :2], new_mask=mask[:, :2])
    b_old, _ = A.baseline_states(d)
    want = (old[0, :, 0] + old[0, :, 1] + old[1, :, 0]) / 3                 # [L, D]
    assert b_old.shape == (1, L, N, D)
    torch.testing.assert_close(b_old[0, :, 2], want)


def test_ig_completeness_on_the_real_model(ig):
    total = A.layer_attribution(ig).sum(1)                                   # [E]
    gap = ig["s"] - ig["s_base"]
    assert gap.abs().min() > 1e-4            # the thinker moves s (0.5-0.6 mm here), far above IG's error
    err = (total - gap).abs()
    assert (err < 0.01 * gap.abs() + 1e-7).all(), (total, gap)               # within 1 % of s(x) − s(baseline)
    torch.testing.assert_close(ig["delta"].abs(), err, atol=1e-6, rtol=1e-3)


def test_rows_that_feed_no_block_get_exactly_zero(model, data, ig):
    rows = model.predictor.pyramid.block_rows
    assert rows == [0, 2, 3, 5]
    per = A.layer_attribution(ig)
    _, dade = A.ablation_delta_ade(model, data)
    for l in (1, 4):
        assert (per[:, l] == 0).all() and dade[l] == 0.0
    assert per[:, 0].abs().min() > 0 and dade[0] != 0.0


def test_an_unread_stream_gets_zero_attribution_and_ig_runs_on_the_read_one(model, data, ig):
    assert A.read_streams(model) == ("new",)                # the shipped thinkjepa reads the thinking tokens
    assert (ig["old"] == 0).all() and ig["new"].abs().sum() > 0
    idx = torch.arange(2)
    scrambled = replace(data.subset(idx), old=torch.randn_like(data.old[idx]))
    with torch.no_grad():                                    # and the old stream indeed changes nothing
        torch.testing.assert_close(model(scrambled, idx, 1)[1], model(data.subset(idx), idx, 1)[1], atol=0, rtol=0)


def test_ablation_delta_ade_matches_a_manual_ablation(model, data):
    full, dade = A.ablation_delta_ade(model, data)
    b_old, b_new = A.baseline_states(data)
    old, new = data.old.clone(), data.new.clone()
    old[:, 3], new[:, 3] = b_old[0, 3], b_new[0, 3]
    idx = torch.arange(len(data))
    with torch.no_grad():
        ade = trajectory_scores(model(replace(data, old=old, new=new), idx, 1)[1], data.traj, data.valid, 8)["ade"]
        ade0 = trajectory_scores(model(data, idx, 1)[1], data.traj, data.valid, 8)["ade"]
    assert full == pytest.approx(ade0) and dade[3] == pytest.approx(ade - ade0, abs=1e-7)


def test_token_attribution_sums_to_the_gap_and_ignores_padding(model, data):
    t = A.token_attribution(model, data, 0)
    assert t["old"].shape == data.old_mask[0].shape and t["new"].shape == data.new_mask[0].shape
    assert (t["old"][~t["old_mask"]] == 0).all() and (t["new"][~t["new_mask"]] == 0).all()
    assert float(t["old"].sum() + t["new"].sum()) == pytest.approx(t["s"] - t["s_base"], abs=1e-3 * abs(t["s"]) + 1e-6)


def test_spearman_on_hand_examples():
    assert A.spearman([1, 2, 3, 4], [10, 20, 30, 100]) == pytest.approx(1.0)
    assert A.spearman([1, 2, 3, 4], [9, 7, 5, -1]) == pytest.approx(-1.0)
    assert A.ranks([5, 1, 3, 3]).tolist() == [4.0, 1.0, 2.5, 2.5]
    # ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]: centred dot 4.5 / sqrt(4.5 · 5)
    assert A.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert A.spearman([0, 0, 0], [1, 2, 3]) != A.spearman([0, 0, 0], [1, 2, 3])  # nan: constant side


def test_cli_writes_json_and_figure(tmp_path):
    from tkjepa.cli import COMMANDS, main

    assert COMMANDS["attribute"][0] == "tkjepa.cli.forecast"
    out = tmp_path / "attribution.json"
    assert main(["attribute", "--data", str(DATA), "--episodes", "4", "--checkpoint",
                 str(paths.FORECASTERS / "thinkjepa"), "--out", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    for k in ("layers", "attribution", "ablation_delta_ade", "spearman", "convergence_delta", "episodes",
              "seconds", "scalar", "baseline", "used", "spearman_used"):
        assert k in r
    assert r["layers"] == [0, 1, 2, 3, 4, 5] and r["used"] == [0, 2, 3, 5] and r["episodes"] == 4
    nums = r["attribution"] + r["ablation_delta_ade"] + [r["convergence_delta"], r["spearman"]]
    assert all(math.isfinite(x) for x in nums)
    assert r["convergence_delta"] < 1e-3
    assert (tmp_path / "attribution.html").stat().st_size > 1000
