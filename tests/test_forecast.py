"""Forecasting data, training loop, checkpoints and the bench/evaluate metrics."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tkjepa import bench, forecast
from tkjepa.encoder import EncoderConfig, VideoEncoder
from tkjepa.episode import RIGHT_HAND_JOINTS
from tkjepa.jepa import world_frames
from tkjepa.train import Forecaster, TrainConfig, load_forecaster, model_config, save_forecaster, train


@pytest.fixture(scope="module")
def episodes():
    return world_frames(3, range(6), workers=1)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return VideoEncoder(EncoderConfig.tiny()).eval()


@pytest.fixture(scope="module")
def data(episodes, encoder):
    d, _ = forecast.build(episodes, encoder, None, progress=False)
    g = torch.Generator().manual_seed(0)  # stand-in thinker features: 2 layers, 5 old + 3 new tokens
    E = len(d)
    d.old, d.new = torch.randn(E, 6, 5, 128, generator=g), torch.randn(E, 6, 3, 128, generator=g)
    d.old_mask, d.new_mask = torch.ones(E, 5, dtype=torch.bool), torch.ones(E, 3, dtype=torch.bool)
    return d


def test_build_shapes_and_targets(data, episodes):
    E, cfg = len(episodes), forecast.ForecastConfig()
    assert data.ctx.shape == (E, 4, 16, 96) and data.future.shape == (E, cfg.future_tubelets, 16, 96)
    assert data.traj.shape == (E, 2 * cfg.future_tubelets, len(RIGHT_HAND_JOINTS), 3)
    s = episodes[0].num_frames // 2
    pos = episodes[0].positions(RIGHT_HAND_JOINTS)
    np.testing.assert_allclose(data.traj[0].numpy(), pos[s:s + 32], atol=1e-6)
    np.testing.assert_allclose(data.past[0].numpy(), pos[[s - 2, s - 1]], atol=1e-6)
    assert bool(data.valid.all()) and bool(data.has_oracle.all())
    # layer-normed tokens
    torch.testing.assert_close(data.ctx.pow(2).mean(-1), torch.ones(data.ctx.shape[:3]), atol=1e-3, rtol=0)
    np.testing.assert_allclose(data.actions[0, 0].numpy(), episodes[0].extras["actions"][s:s + 2].reshape(-1),
                               atol=1e-6)


def test_context_never_sees_the_future(episodes, encoder):
    """Scrambling every frame from the forecast start on changes the targets, never the context."""
    ep = episodes[1]
    d1, _ = forecast.build([ep], encoder, None, progress=False)
    s = ep.num_frames // 2
    frames = ep.frames.copy()
    frames[s:] = 255 - frames[s:]
    ep2 = type(ep)(**{**ep.__dict__, "frames": frames})
    d2, _ = forecast.build([ep2], encoder, None, progress=False)
    assert torch.equal(d1.ctx, d2.ctx)
    assert not torch.allclose(d1.future, d2.future)


def test_fine_tokens_are_the_last_observed_tubelet_unpooled(episodes, encoder):
    """ForecastConfig(fine=True) adds the last context tubelet's 8×8 tokens and changes nothing else."""
    ep = episodes[2]
    cfg = forecast.ForecastConfig(fine=True)
    d0, _ = forecast.build([ep], encoder, None, progress=False)
    d1, _ = forecast.build([ep], encoder, None, cfg, progress=False)
    assert d0.fine is None and d1.fine.shape == (1, 64, 96)
    assert torch.equal(d0.ctx, d1.ctx) and torch.equal(d0.future, d1.future)
    torch.testing.assert_close(d1.fine.pow(2).mean(-1), torch.ones(1, 64), atol=1e-3, rtol=0)
    s = ep.num_frames // 2
    frames = ep.frames.copy()
    with torch.no_grad():   # the same tokens as the encoder gives for the dense window's clip, unpooled
        from tkjepa.encoder import frames_to_video

        z = encoder(frames_to_video(frames[None, s - 8:s]))[0, -1]
    torch.testing.assert_close(d1.fine[0], torch.nn.functional.layer_norm(z, (96,)), atol=1e-5, rtol=0)
    frames[s:] = 255 - frames[s:]      # the future: no effect
    d2, _ = forecast.build([type(ep)(**{**ep.__dict__, "frames": frames})], encoder, None, cfg, progress=False)
    assert torch.equal(d1.fine, d2.fine)
    frames[s - 1] = 255 - frames[s - 1]  # the last observed frame: changes them
    d3, _ = forecast.build([type(ep)(**{**ep.__dict__, "frames": frames})], encoder, None, cfg, progress=False)
    assert not torch.allclose(d1.fine, d3.fine)


def test_fine_forecaster_trains_and_round_trips(episodes, encoder, tmp_path):
    cfg = forecast.ForecastConfig(fine=True)
    d, _ = forecast.build(episodes, encoder, None, cfg, progress=False)
    model, hist = train(model_config("oracle", steps=30, warmup=5, batch_size=4, forecast=cfg), d, progress=False)
    assert model.predictor.config.fine_grid == 8 and hist[-1]["loss"] < hist[0]["loss"]
    save_forecaster(model, tmp_path / "m")
    again = load_forecaster(tmp_path / "m")
    assert again.predictor.config.fine_grid == 8
    torch.testing.assert_close(bench.predict(again, d), bench.predict(model, d), atol=0, rtol=0)
    idx = torch.arange(len(d))
    with torch.no_grad():
        z0 = model(d, idx, 1)[0]
        d.fine[0] += 1.0                 # the predicted latents read the fine tokens, each episode its own
        z1 = model(d, idx, 1)[0]
    assert (z1[0] - z0[0]).abs().max() > 1e-4 and torch.equal(z1[1:], z0[1:])
    d.fine = None
    with pytest.raises(ValueError, match="ForecastConfig\\(fine=True\\)"):
        bench.predict(model, d)


def test_metrics_on_hand_made_errors():
    true = torch.zeros(2, 16, 7, 3)
    valid = torch.ones(2, 16, dtype=torch.bool)
    m = bench.metrics(true + torch.tensor([0.03, 0.0, 0.0]), true, valid, 16)
    assert m["ade"] == pytest.approx(0.03) and m["fde"] == pytest.approx(0.03) and m["acc5"] == 1.0
    ramp = true.clone()
    ramp[:, :, :, 2] = torch.linspace(0.015, 0.165, 16)[None, :, None]  # 1.5 cm, then +1 cm per frame
    m = bench.metrics(ramp, true, valid, 16)
    assert m["ade"] == pytest.approx(0.09) and m["fde"] == pytest.approx(0.165)
    assert m["acc5"] == pytest.approx(4 / 16)                           # 1.5 … 4.5 cm are within 5 cm
    assert bench.metrics(ramp, true, valid, 8)["fde"] == pytest.approx(0.085)


def test_const_velocity_is_exact_on_straight_lines(data):
    d = data.subset(torch.arange(2))
    v = torch.tensor([0.01, -0.02, 0.005])
    d.past = torch.stack([torch.zeros(2, 7, 3), torch.zeros(2, 7, 3) + v])
    d.past = d.past.transpose(0, 1)
    d.traj = v * torch.arange(2, 34, dtype=torch.float32)[None, :, None, None].expand(2, 32, 7, 1)
    assert bench.score(bench.const_velocity(d, 32), d)["ade"] < 1e-6


def _tiny(model, steps=4, **kw):
    return model_config(model, steps=steps, batch_size=4, warmup=2, ckpt_every=2, **kw)


@pytest.mark.parametrize("model", ["thinkjepa", "jepa_only", "vlm_only", "oracle"])
def test_every_model_trains_and_its_loss_drops(data, model):
    _, hist = train(_tiny(model, steps=12), data, progress=False)
    assert hist[-1]["loss"] < hist[0]["loss"]


def test_vlm_only_ignores_the_dense_window(data):
    m = Forecaster(_tiny("vlm_only"))
    m.predictor.gates.data.fill_(0.5)
    m.head.set_target_stats(data.traj.reshape(-1, 7, 3))
    d2 = data.subset(torch.arange(len(data)))
    d2.ctx = torch.randn_like(d2.ctx)
    idx = torch.arange(2)
    assert torch.equal(m(data, idx, 2)[1], m(d2, idx, 2)[1])
    d2.new = torch.randn_like(d2.new)  # the thinking tokens, which the default (streams="new") reads
    assert not torch.allclose(m(data, idx, 2)[1], m(d2, idx, 2)[1])


def test_resume_is_exact(data, tmp_path):
    full, _ = train(_tiny("thinkjepa", steps=4), data, progress=False)
    train(_tiny("thinkjepa", steps=4), data, out=tmp_path, progress=False, until=2)
    resumed, hist = train(_tiny("thinkjepa", steps=4), data, out=tmp_path, resume=True, progress=False)
    assert [h["step"] for h in hist] == [1, 4]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_checkpoint_round_trip_and_evaluate(data, tmp_path):
    model, _ = train(_tiny("thinkjepa", injection="adaln"), data, progress=False)
    save_forecaster(model, tmp_path / "thinkjepa_adaln")
    again = load_forecaster(tmp_path / "thinkjepa_adaln")
    assert again.cfg.injection == "adaln"
    assert torch.equal(bench.predict(model, data), bench.predict(again, data))
    from tkjepa.evaluate import evaluate

    res = evaluate(data, tmp_path)
    assert set(res["ablations"]) == {"thinkjepa_adaln"} and "const_velocity" in res["models"]
    m = res["ablations"]["thinkjepa_adaln"]
    assert set(m["rollout"]) == {"8", "16", "24", "32"} and 0 < m["ade"] < 1


def test_vlm_only_windows_are_absolute(data):
    """vlm_only predicts absolute positions: a later window must not be shifted by the previous one's end."""
    m = Forecaster(_tiny("vlm_only"))
    m.head.set_target_stats(data.traj.reshape(-1, 7, 3))
    idx = torch.arange(2)
    _, joints = m(data, idx, 2)
    seq = torch.cat([torch.zeros_like(data.ctx[idx]), m.predictor.rollout(torch.zeros_like(data.ctx[idx]),
                     guide=data.guide(idx), windows=2)], dim=1)
    Tc, Tf = 4, 4
    second = m.head(seq[:, Tf:Tf + Tc], seq[:, Tc + Tf:Tc + 2 * Tf], torch.zeros(2, 21))
    torch.testing.assert_close(joints[:, 8:], second)


def test_step_ms_times_every_config_in_turn(data):
    ms = bench.step_ms({"thinkjepa": _tiny("thinkjepa"), "jepa_only": _tiny("jepa_only")}, data, steps=2, rounds=2)
    assert set(ms) == {"thinkjepa", "jepa_only"} and all(0 < v < 60_000 for v in ms.values())


def test_run_bench_schema_saves_and_does_not_depend_on_workers(data, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "ABLATIONS", {"inject_adaln": {"injection": "adaln"}, "stream_old": {"streams": "old"}})
    monkeypatch.setattr(bench, "step_ms", lambda cfgs, d, steps=20, rounds=3: {n: 1.0 for n in cfgs})
    kw = dict(seeds=2, steps=3, progress=False)
    one = bench.run_bench(data, data, workers=1, save_dir=tmp_path, **kw)
    two = bench.run_bench(data, data, workers=2, **kw)
    assert set(one["models"]) == {"thinkjepa", "jepa_only", "vlm_only", "oracle", "const_velocity"}
    assert set(one["ablations"]) == {"inject_adaln", "stream_old"}
    for name in bench.HEADLINE:
        assert one["models"][name]["seeds"] == 2 and set(one["models"][name]["rollout"]) == {"8", "16", "24", "32"}
        assert one["ade_per_seed"][name] == two["ade_per_seed"][name]
        assert one["ade_per_seed"][name][0] != one["ade_per_seed"][name][1]  # the seeds differ
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*bench.HEADLINE, "thinkjepa_adaln"])
    assert load_forecaster(tmp_path / "thinkjepa_adaln").cfg.injection == "adaln"


def test_shipped_or_trained(tmp_path):
    encoder, thinker = bench.load_models()
    model, src = bench.shipped_or_trained("thinkjepa", encoder, thinker)
    assert src == "shipped" and model.cfg.model == "thinkjepa"
    model, src = bench.shipped_or_trained("thinkjepa_adaln", encoder, thinker, steps=2, episodes=8, folder=tmp_path)
    assert src == "stand-in" and model.cfg.injection == "adaln"
    with pytest.raises(ValueError, match="no recipe"):
        bench.shipped_or_trained("nonsense", encoder, thinker, folder=tmp_path)


def test_world_data_cache_is_keyed_by_the_models_given(tmp_path, monkeypatch, encoder):
    """Another thinker (or encoder) must not be served the cached features of the shipped one."""
    from tkjepa.thinker.model import build_thinker

    monkeypatch.setattr(bench, "CACHE", tmp_path)
    cfg = forecast.ForecastConfig()
    a = build_thinker(seed=0)
    first, _ = bench.world_data(5, 2, encoder, a, cfg, progress=False, workers=1)
    again, _ = bench.world_data(5, 2, encoder, a, cfg, progress=False, workers=1)  # from the cache
    other, _ = bench.world_data(5, 2, encoder, build_thinker(seed=1), cfg, progress=False, workers=1)
    assert len(list(tmp_path.glob("forecast-*.safetensors"))) == 2
    assert torch.equal(first.new, again.new) and first.new.shape[0] == 2
    assert not torch.equal(first.old, other.old)  # recomputed with the other thinker's weights
