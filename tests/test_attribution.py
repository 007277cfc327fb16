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


def test_every_cached_row_is_read_and_a_subsets_unread_rows_get_exactly_zero(model, data, ig):
    assert model.predictor.pyramid.block_rows == [[0], [1, 2], [3], [4, 5]]   # no row unread by construction
    per = A.layer_attribution(ig)
    _, dade = A.ablation_delta_ade(model, data)
    assert all(per[:, l].abs().max() > 0 and dade[l] != 0.0 for l in range(6))
    last = load_forecaster(paths.FORECASTERS / "thinkjepa_levels_last").eval()  # reads row 5 only
    assert last.predictor.pyramid.block_rows == [[5]] * 4
    ig_last = A.integrated_gradients(last, data.subset(torch.arange(2)), A.AttributionConfig(n_steps=8))
    per = A.layer_attribution(ig_last)
    _, dade = A.ablation_delta_ade(last, data)
    for l in range(5):
        assert (per[:, l] == 0).all() and dade[l] == 0.0
    assert per[:, 5].abs().min() > 0 and dade[5] != 0.0


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
    assert r["layers"] == [0, 1, 2, 3, 4, 5] and r["used"] == [0, 1, 2, 3, 4, 5] and r["episodes"] == 4
    for k in ("attribution_ci", "ablation_delta_ade_ci", "ablation_delta_s_ci"):   # [low, high] per layer
        lo, hi = r[k]
        assert len(lo) == len(hi) == 6 and all(a <= b for a, b in zip(lo, hi))
    mean, (lo, hi) = r["ablation_delta_ade"], r["ablation_delta_ade_ci"]
    assert all(a - 1e-9 <= m <= b + 1e-9 for a, m, b in zip(lo, mean, hi))
    nums = r["attribution"] + r["ablation_delta_ade"] + [r["convergence_delta"], r["spearman"]]
    assert all(math.isfinite(x) for x in nums)
    assert r["convergence_delta"] < 1e-3
    assert (tmp_path / "attribution.html").stat().st_size > 1000


def test_bootstrap_interval_of_the_mean_brackets_it_and_narrows_with_more_episodes():
    g = torch.Generator().manual_seed(0)
    small, large = torch.randn(20, 2, generator=g), torch.randn(2000, 2, generator=g)
    (lo, hi), (lo2, hi2) = A.bootstrap_ci(small, n=400), A.bootstrap_ci(large, n=400)
    for j in range(2):
        assert lo[j] < float(small[:, j].mean()) < hi[j]
        assert hi2[j] - lo2[j] < 0.3 * (hi[j] - lo[j])   # ∝ 1/√E: √(20/2000) = 0.1
    assert A.bootstrap_ci(small, n=50, seed=3) == A.bootstrap_ci(small, n=50, seed=3)


# -- known-answer sanity checks ("sanity checks for saliency maps"): a planted signal, then randomised weights
PLANT = 3   # the one thinker row that carries where the hand goes


def _planted_data(E: int, seed: int):
    """Synthetic forecasting data where only thinker row PLANT says where the hand goes: every joint moves
    linearly to a random offset g over the 8 trained frames and stays there. Every row's thinking tokens carry
    a code in their first three channels, uniform in ±1 and the same for each token of an episode; row PLANT's
    is g (scaled), the others' are drawn independently of it. The JEPA latents and the other channels are noise."""
    from tkjepa.forecast.data import ForecastData

    g = torch.Generator().manual_seed(seed)
    r = lambda *sh: torch.randn(*sh, generator=g)  # noqa: E731
    goal = (torch.rand(E, 3, generator=g) - 0.5) * 0.4                           # ±20 cm
    ramp = (torch.arange(1, 33) / 8).clamp(max=1)[None, :, None, None]
    traj = ramp * goal[:, None, None, :].expand(E, 1, 7, 3)
    new = 0.1 * r(E, 6, 4, 128)
    new[..., :3] = (2 * torch.rand(E, 6, 1, 3, generator=g) - 1).expand(E, 6, 4, 3)
    new[:, PLANT, :, :3] = goal[:, None, :] / 0.2
    return ForecastData(ctx=torch.zeros(E, 4, 16, 96), future=torch.zeros(E, 16, 16, 96), traj=traj,
                        valid=torch.ones(E, 32, dtype=torch.bool), past=torch.zeros(E, 2, 7, 3),
                        actions=torch.zeros(E, 16, 8), oracle=torch.zeros(E, 15), has_oracle=torch.zeros(E, dtype=torch.bool),
                        old=0.1 * r(E, 6, 4, 128), old_mask=torch.ones(E, 4, dtype=torch.bool), new=new,
                        new_mask=torch.ones(E, 4, dtype=torch.bool))


@pytest.fixture(scope="module")
def planted():
    from tkjepa.forecast.model import variant_config
    from tkjepa.forecast.train import train

    torch.manual_seed(0)
    torch.set_num_threads(1)  # the trained numbers depend on the thread count (order of float sums)
    # FiLM over the pooled rows, one window: the shortest path from a row to the forecast (≈ 90 s)
    # (no grounding: the planted data has no frames to point into)
    cfg = variant_config("thinkjepa", injection="film", train_windows=1, steps=800, batch_size=32, warmup=20,
                         latent_weight=0.0, grounding=False)
    trained, _ = train(cfg, _planted_data(192, 0), progress=False)
    return trained.eval(), _planted_data(48, 1)


def test_a_signal_planted_in_one_layer_is_attributed_to_that_layer_first(planted):
    model, test = planted
    r = A.attribute(model, test, A.AttributionConfig(n_steps=32, bootstrap=200))
    idx = torch.arange(len(test))
    with torch.no_grad():   # every row at the baseline: the forecast with no thinker information
        blind = A.ablate_layers(test, range(6), A.baseline_states(test))
        unguided = trajectory_scores(model(blind, idx, 1)[1], test.traj, test.valid, 8)["ade"]
    assert r["ade_full"] < 0.75 * unguided                      # it learnt to read the goal (measured 0.62 ×)
    order = sorted(range(6), key=lambda l: -r["attribution_abs"][l])
    assert order[0] == PLANT and int(torch.tensor(r["ablation_delta_ade"]).argmax()) == PLANT
    others = max(r["attribution_abs_ci"][1][l] for l in range(6) if l != PLANT)
    assert r["attribution_abs_ci"][0][PLANT] > 2 * others       # the intervals separate (measured 3 ×)
    assert r["attribution"][PLANT] > 0.5 * r["attribution_abs"][PLANT]   # toward the goal, episode after episode


def test_randomised_guidance_weights_lose_the_planted_structure(planted):
    """The same forecaster with its pyramid (the guidance weights) re-initialised: the attribution no longer
    points at the planted layer with a consistent sign, and ablating that layer no longer costs ADE."""
    import copy

    model, test = planted
    cfg = A.AttributionConfig(n_steps=32, bootstrap=200)
    trained = A.attribute(model, test, cfg)
    rand = copy.deepcopy(model)
    torch.manual_seed(1)
    for m in rand.predictor.pyramid.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    r = A.attribute(rand, test, cfg)
    assert abs(r["attribution"][PLANT]) < 0.2 * trained["attribution"][PLANT]
    assert r["ablation_delta_ade"][PLANT] < 0.2 * trained["ablation_delta_ade"][PLANT]
