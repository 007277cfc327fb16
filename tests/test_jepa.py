"""JEPA pretraining: predictor shapes, losses by hand, diagnostics, determinism, exact resume, probe, CLIs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tkjepa.encoder import EncoderConfig, VideoEncoder, frames_to_video, load_encoder
from tkjepa.encoder.masks import MaskConfig, sample_masks
from tkjepa.encoder.pretrain import (JEPA, MaskedPredictor, PredictorConfig, PretrainConfig, collapse_diagnostics,
                                     effective_rank, latent_loss, pretrain, train_and_export, vicreg_regularizer)
from tkjepa.encoder.probe import ProbeConfig, RidgeProbe, clip_features, r2_score, select_and_fit
from tkjepa.optim import lr_at

torch.set_num_threads(2)


def small_cfg(**kw) -> PretrainConfig:
    cfg = PretrainConfig(encoder=EncoderConfig(embed_dim=24, depth=1, num_heads=2),
                         predictor=PredictorConfig(pred_dim=16, depth=1, num_heads=2),
                         batch_size=2, steps=4, warmup=2, log_every=2, ckpt_every=2, clip_frames=4)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def frames():
    """Stand-in episodes [E, T, H, W, 3]: a bright disk moving smoothly over a noisy background."""
    rng = np.random.default_rng(0)
    E, T, S = 3, 12, 32
    f = rng.integers(0, 80, (E, T, S, S, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:S, :S]
    for e in range(E):
        for t in range(T):
            cx, cy = 8 + t + 4 * e, 16 + 6 * np.sin(t / 3 + e)
            f[e, t][(xx - cx) ** 2 + (yy - cy) ** 2 < 16] = (230, 200, 160)
    return torch.from_numpy(f)


@pytest.mark.parametrize("B", [1, 4])
def test_predictor_shapes(B):
    pred = MaskedPredictor(PredictorConfig(embed_dim=24, pred_dim=16, depth=1, num_heads=2))
    masks_enc, masks_pred = sample_masks(B, (2, 4, 4), MaskConfig.short_range(), torch.Generator().manual_seed(0))
    out = pred(torch.randn(B, masks_enc.shape[1], 24), masks_enc, masks_pred, (2, 4, 4))
    assert out.shape == (B, masks_pred.shape[1], 24)


def test_latent_losses_by_hand():
    p, t = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, 0.0]])
    assert latent_loss(p, t, "l1") == 1.5 and latent_loss(p, t, "l2") == 2.5
    with pytest.raises(ValueError):
        latent_loss(p, t, "huber")


def test_vicreg_terms():
    g = torch.Generator().manual_seed(0)
    var_c, cov_c = vicreg_regularizer(torch.ones(256, 8))                    # collapsed: every std is 0
    var_w, cov_w = vicreg_regularizer(torch.randn(4096, 8, generator=g) * 2)  # white, std 2 > gamma
    assert var_c > 0.95 and var_w == 0 and cov_c == 0 and cov_w < 0.05


def test_effective_rank():
    g = torch.Generator().manual_seed(0)
    assert abs(effective_rank(torch.randn(4000, 16, generator=g)) - 16) < 1
    assert abs(effective_rank(torch.randn(100, 1, generator=g) * torch.randn(1, 16, generator=g)) - 1) < 1e-4


def test_diagnostics_detect_collapse():
    enc = VideoEncoder(EncoderConfig(embed_dim=24, depth=1, num_heads=2)).eval()
    video = torch.rand(4, 4, 3, 16, 16)
    healthy = collapse_diagnostics(enc, enc, video)
    with torch.no_grad():
        enc.patch_embed.weight.zero_()  # every clip now maps to the same tokens
    collapsed = collapse_diagnostics(enc, enc, video)
    assert healthy["erank"] > 5 and healthy["std_mean"] > 0.05 and healthy["cos"] == pytest.approx(1)
    assert collapsed["std_mean"] < 1e-5 and collapsed["erank"] <= 1.0 + 1e-6


def test_no_gradient_into_target(frames):
    cfg = small_cfg()
    model = JEPA(cfg)
    from tkjepa.encoder import frames_to_video
    video = frames_to_video(frames[:2, :4])
    masks = [sample_masks(2, (2, 4, 4), MaskConfig.short_range(), torch.Generator().manual_seed(0))]
    model.loss(video, masks)["loss"].backward()
    assert all(p.grad is None for p in model.target_encoder.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_same_seed_same_losses(frames):
    _, h1 = pretrain(small_cfg(steps=2, log_every=1), frames, progress=False)
    _, h2 = pretrain(small_cfg(steps=2, log_every=1), frames, progress=False)
    _, h3 = pretrain(small_cfg(steps=2, log_every=1, seed=1), frames, progress=False)
    assert [h["loss"] for h in h1] == [h["loss"] for h in h2] != [h["loss"] for h in h3]


def test_resume_continues_exactly(frames, tmp_path):
    full, h_full = pretrain(small_cfg(), frames, progress=False)
    pretrain(small_cfg(), frames, out=tmp_path, until=2, progress=False)  # interrupted after step 2
    resumed, h_res = pretrain(small_cfg(), frames, out=tmp_path, resume=True, progress=False)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert [h["loss"] for h in h_res] == [h["loss"] for h in h_full]


def test_lr_schedule():
    cfg = small_cfg(steps=100, warmup=10, lr=1e-3, min_lr=1e-5)

    def lr(step):  # what pretraining sets at `step`
        return lr_at(step, cfg.steps, cfg.lr, cfg.min_lr, cfg.warmup)

    assert lr(0) == pytest.approx(1e-4) and lr(9) == pytest.approx(1e-3)
    assert lr(100) == pytest.approx(1e-5)


def test_ridge_probe_recovers_a_linear_map():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 50, generator=g)
    Y = X @ torch.randn(50, 3, generator=g) + 0.01 * torch.randn(300, 3, generator=g)
    for Xf in (X, X[:40]):  # primal (M > F) and dual (M < F) paths
        Yf = Y[:len(Xf)]
        probe = RidgeProbe().fit(Xf, Yf, 1e-6)
        assert r2_score(Yf, probe.predict(Xf))["r2"] > 0.999
    r = r2_score(Y, Y.mean(0).expand_as(Y))
    assert abs(r["r2"]) < 1e-9 and r["r2_xyz"] == pytest.approx([0, 0, 0], abs=1e-9)


def test_ridge_fit_solves_what_fit_path_decomposes():
    """`fit` (one Cholesky solve per distinct λ) and `fit_path` (one eigendecomposition for every λ) give the
    same map, in the primal and the dual form, with one λ per output coordinate."""
    g = torch.Generator().manual_seed(2)
    X = torch.randn(120, 40, generator=g, dtype=torch.float64)
    Y = (X[:, :3] @ torch.randn(3, 3, generator=g, dtype=torch.float64)
         + torch.randn(120, 3, generator=g, dtype=torch.float64))
    lam = [0.01, 1.0, 0.01]
    for n in (120, 30):  # M > F, then M < F
        for standardize in (False, True):
            a = RidgeProbe(standardize).fit(X[:n], Y[:n], lam)
            b = RidgeProbe(standardize).fit_path(X[:n], Y[:n], [1.0, lam])[1]
            assert a.lam == b.lam == lam
            torch.testing.assert_close(a.W, b.W, rtol=1e-6, atol=1e-9)
            torch.testing.assert_close(a.predict(X), b.predict(X), rtol=1e-6, atol=1e-9)
    # a different λ per output really differs from one shared λ
    shared = RidgeProbe().fit(X[:30], Y[:30], 1.0)
    assert not torch.allclose(shared.W[:, 0], RidgeProbe().fit(X[:30], Y[:30], lam).W[:, 0])


def test_select_and_fit_matches_the_two_step_probe():
    """The one-Gram path of `select_and_fit` (more rows than features) chooses the same λs and fits the same map
    as scoring `fit_path` on the validation rows, then `fit` on every row."""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(200, 30, generator=g, dtype=torch.float64) * torch.linspace(0.1, 5.0, 30, dtype=torch.float64) + 2.0
    Y = (X[:, :3] * torch.tensor([1.0, -0.5, 0.2], dtype=torch.float64)
         + torch.randn(200, 3, generator=g, dtype=torch.float64))
    lambdas = tuple(10.0 ** k for k in range(-3, 3))
    for standardize in (True, False):
        for n_tr in (150, 200):  # a validation split, then λ chosen on the fit rows themselves
            va = slice(n_tr if n_tr < 200 else 0, None)
            scores = torch.tensor([r2_score(Y[va], p.predict(X[va]))["r2_xyz"]
                                   for p in RidgeProbe(standardize).fit_path(X[:n_tr], Y[:n_tr], lambdas)])
            lam = [lambdas[i] for i in scores.argmax(0)]
            ref = RidgeProbe(standardize).fit(X, Y, lam)
            probe, chosen = select_and_fit(X.clone(), Y, n_tr, lambdas, standardize)
            assert chosen == lam
            torch.testing.assert_close(probe.predict(X), ref.predict(X), rtol=1e-8, atol=1e-8)
            torch.testing.assert_close(probe.W, ref.W, rtol=1e-7, atol=1e-9)
    assert probe.lam == chosen


def test_standardised_ridge_ignores_feature_scales():
    """Scaling one feature column changes what the plain ridge predicts but not the standardised one."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(80, 60, generator=g, dtype=torch.float64)
    Y = X[:, :3] + 0.5 * torch.randn(80, 3, generator=g, dtype=torch.float64)
    Xs = X.clone()
    Xs[:, 0] *= 100.0
    Xe = torch.randn(20, 60, generator=g, dtype=torch.float64)
    Xes = Xe.clone()
    Xes[:, 0] *= 100.0
    for dual in (False, True):  # 80 rows > 60 features, then 40 < 60
        n = 40 if dual else 80
        std = [RidgeProbe(standardize=True).fit(x[:n], Y[:n], 1.0) for x in (X, Xs)]
        torch.testing.assert_close(std[0].predict(Xe), std[1].predict(Xes))
        raw = [RidgeProbe().fit(x[:n], Y[:n], 1.0) for x in (X, Xs)]
        assert (raw[0].predict(Xe) - raw[1].predict(Xes)).abs().max() > 1e-2


def test_train_and_export_then_probe_cli(tmp_path):
    """The whole pipeline at toy size: world episodes -> pretrain -> checkpoint + metrics -> `tkjepa probe`."""
    from tkjepa.world import write_dataset

    cfg = small_cfg(train_episodes=3, probe_episodes=4, heldout_episodes=2, steps=2, clip_frames=8)
    metrics = train_and_export(cfg, tmp_path / "enc", progress=False)
    assert {"config.json", "model.safetensors", "metrics.json", "diagnostics.json", "diagnostics.html"} <= {
        p.name for p in (tmp_path / "enc").iterdir()}
    assert not (tmp_path / "enc" / "train_state.safetensors").exists()
    saved = json.loads((tmp_path / "enc" / "metrics.json").read_text())
    assert saved["probe"]["pretrained"]["episodes"] == 2 and "erank" in saved["final"]
    assert saved["probe"]["pretrained"]["fit_episodes"] == 4  # the probe fits on more than the 3 trained on
    assert metrics["probe"]["random_init"]["r2"] == saved["probe"]["random_init"]["r2"]
    assert isinstance(load_encoder(tmp_path / "enc"), VideoEncoder)

    write_dataset(tmp_path / "data", episodes=3, seed=5, progress=False, workers=1)
    out = subprocess.run([sys.executable, "-m", "tkjepa", "probe", "--data", str(tmp_path / "data"),
                          "--encoder", str(tmp_path / "enc"), "--json"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert set(result) >= {"r2", "episodes"} and result["episodes"] == 1 and np.isfinite(result["r2"])
    out = subprocess.run([sys.executable, "-m", "tkjepa", "probe", "--world", "5", "--heldout", "2",
                          "--encoder", "random", "--json"], capture_output=True, text=True, check=True)
    world = json.loads(out.stdout)
    assert world["episodes"] == 2 and world["fit_episodes"] == 3 and world["encoder"] == "random"
    # --baseline: the random initialisation on the same split; for the random encoder itself, the same number
    out = subprocess.run([sys.executable, "-m", "tkjepa", "probe", "--world", "5", "--heldout", "2",
                          "--encoder", "random", "--baseline", "--json"], capture_output=True, text=True, check=True)
    based = json.loads(out.stdout)
    assert based["random_r2"] == based["r2"] == world["r2"]
    # --fit: fewer fit episodes, the same held-out ones (the same rows are scored: same sample count)
    out = subprocess.run([sys.executable, "-m", "tkjepa", "probe", "--world", "5", "--heldout", "2", "--fit", "2",
                          "--encoder", "random", "--json"], capture_output=True, text=True, check=True)
    fewer = json.loads(out.stdout)
    assert fewer["fit_episodes"] == 2 and fewer["episodes"] == 2 and fewer["samples"] == world["samples"]
    assert fewer["r2"] != world["r2"]
    bad = subprocess.run([sys.executable, "-m", "tkjepa", "probe", "--world", "5", "--heldout", "2", "--fit", "4",
                          "--encoder", "random"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--fit 4: choose 1 … 3" in bad.stderr


def test_pretrain_encoder_cli_probe_flags(tmp_path, monkeypatch, capsys):
    """`tkjepa pretrain-encoder` options (a toy preset): `--set probe_episodes=N` fits the probe on N episodes,
    `--set train_episodes=…` and `--set loss=…` reach the config, the random-init baseline is skipped unless
    `--probe-baseline` asks for it, and the probes' time is recorded."""
    import tkjepa.encoder.pretrain as jepa
    from tkjepa.cli import main

    monkeypatch.setitem(jepa.PRESETS, "tiny", lambda: small_cfg(train_episodes=3, probe_episodes=4, heldout_episodes=2,
                                                                steps=2, clip_frames=8))
    torch.set_num_threads(1)  # the probes may take every core, and must hand the caller's count back
    try:
        assert main(["pretrain-encoder", "--out", str(tmp_path / "enc"), "--set", "probe_episodes=5", "--quiet",
                     "--set", "train_episodes=2", "--set", "loss=l1"]) == 0
        assert torch.get_num_threads() == 1
        assert main(["pretrain-encoder", "--out", str(tmp_path / "base"), "--probe-baseline", "--quiet"]) == 0
    finally:
        torch.set_num_threads(2)
    saved = json.loads((tmp_path / "enc" / "metrics.json").read_text())
    assert list(saved["probe"]) == ["pretrained"] and saved["probe"]["pretrained"]["fit_episodes"] == 5
    assert saved["config"]["probe_episodes"] == 5 and saved["time_s"]["probes"] >= 0
    assert (saved["config"]["train_episodes"], saved["config"]["loss"]) == (2, "l1")
    out = capsys.readouterr().out
    assert "fit on 5, 2 held-out episodes): pretrained" in out and out.count("random init") == 1  # the 2nd run's
    base = json.loads((tmp_path / "base" / "metrics.json").read_text())
    assert list(base["probe"]) == ["pretrained", "random_init"] and base["probe"]["pretrained"]["fit_episodes"] == 4


class _ToyEpisode:
    """What `clip_features` reads of an episode: frames, their count, and a joint's positions per frame."""

    def __init__(self, frames: int, seed: int):
        g = np.random.default_rng(seed)
        self.frames = g.integers(0, 256, (frames, 32, 32, 3), dtype=np.uint8)
        self.num_frames = frames
        self._pos = g.normal(size=(frames, 1, 3)).astype(np.float32)

    def positions(self, joints):
        return self._pos


def test_clip_features_rows_follow_episodes_clips_and_tubelets():
    """One row per tubelet, in episode / clip / tubelet order: the tokens of that tubelet (as encoding the
    clip alone gives them), the joint at the tubelet's last frame, and the episode's index."""
    torch.manual_seed(0)
    enc = VideoEncoder(EncoderConfig(patch_size=8, embed_dim=16, depth=1, num_heads=2)).eval()
    eps = [_ToyEpisode(24, 0), _ToyEpisode(17, 1)]                    # 3 clips of 8, then 2 (one frame left over)
    X, Y, ids = clip_features(enc, eps, ProbeConfig(batch_size=2))    # batches split the first episode's clips
    assert X.shape == (5 * 4, 16 * 16) and Y.shape == (20, 3) and ids.tolist() == [0] * 12 + [1] * 8
    for r, (e, t0) in enumerate([(0, 0), (0, 8), (0, 16), (1, 0), (1, 8)]):
        with torch.no_grad():
            z = enc(frames_to_video(eps[e].frames[t0:t0 + 8]))[0]     # [4, 16, 16]
        torch.testing.assert_close(X[4 * r:4 * r + 4], z.flatten(1), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(Y[4 * r:4 * r + 4], torch.from_numpy(eps[e]._pos[t0 + 1:t0 + 8:2, 0]))
    with pytest.raises(ValueError, match="no episode has 8 frames"):
        clip_features(enc, [_ToyEpisode(7, 2)])
