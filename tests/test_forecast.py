"""Forecasting data, training loop, checkpoints and the bench/evaluate metrics."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from tkjepa import paths
from tkjepa.backbones import Backbones, load_backbones
from tkjepa.checkpoint import CheckpointError
from tkjepa.cli.forecast import TRAIN_SEED
from tkjepa.encoder import EncoderConfig, VideoEncoder
from tkjepa.episode import RIGHT_HAND_JOINTS
from tkjepa.forecast import bench
from tkjepa.forecast.data import ForecastConfig, build, world_data
from tkjepa.forecast.evaluate import evaluate_checkpoints, predict, score
from tkjepa.forecast.model import Forecaster, load_forecaster, save_forecaster, variant_config
from tkjepa.forecast.train import fit_to_data, losses, train
from tkjepa.metrics import const_velocity, trajectory_scores
from tkjepa.world import WorldConfig, dataset_episodes


@pytest.fixture(scope="module")
def episodes():
    return dataset_episodes(3, range(6), WorldConfig(), workers=1)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return VideoEncoder(EncoderConfig.tiny()).eval()


@pytest.fixture(scope="module")
def data(episodes, encoder):
    d, _ = build(episodes, Backbones(encoder), progress=False)
    g = torch.Generator().manual_seed(0)  # stand-in thinker features: 2 layers, 5 old + 3 new tokens
    E = len(d)
    d.old, d.new = torch.randn(E, 6, 5, 128, generator=g), torch.randn(E, 6, 3, 128, generator=g)
    d.old_mask, d.new_mask = torch.ones(E, 5, dtype=torch.bool), torch.ones(E, 3, dtype=torch.bool)
    return d


def test_build_shapes_and_targets(data, episodes):
    E, cfg = len(episodes), ForecastConfig()
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
    d1, _ = build([ep], Backbones(encoder), progress=False)
    s = ep.num_frames // 2
    frames = ep.frames.copy()
    frames[s:] = 255 - frames[s:]
    ep2 = type(ep)(**{**ep.__dict__, "frames": frames})
    d2, _ = build([ep2], Backbones(encoder), progress=False)
    assert torch.equal(d1.ctx, d2.ctx)
    assert not torch.allclose(d1.future, d2.future)


def test_metrics_on_hand_made_errors():
    true = torch.zeros(2, 16, 7, 3)
    valid = torch.ones(2, 16, dtype=torch.bool)
    m = trajectory_scores(true + torch.tensor([0.03, 0.0, 0.0]), true, valid, 16)
    assert m["ade"] == pytest.approx(0.03) and m["fde"] == pytest.approx(0.03) and m["acc5"] == 1.0
    ramp = true.clone()
    ramp[:, :, :, 2] = torch.linspace(0.015, 0.165, 16)[None, :, None]  # 1.5 cm, then +1 cm per frame
    m = trajectory_scores(ramp, true, valid, 16)
    assert m["ade"] == pytest.approx(0.09) and m["fde"] == pytest.approx(0.165)
    assert m["acc5"] == pytest.approx(4 / 16)                           # 1.5 … 4.5 cm are within 5 cm
    assert trajectory_scores(ramp, true, valid, 8)["fde"] == pytest.approx(0.085)


def test_const_velocity_is_exact_on_straight_lines(data):
    d = data.subset(torch.arange(2))
    v = torch.tensor([0.01, -0.02, 0.005])
    d.past = torch.stack([torch.zeros(2, 7, 3), torch.zeros(2, 7, 3) + v])
    d.past = d.past.transpose(0, 1)
    d.traj = v * torch.arange(2, 34, dtype=torch.float32)[None, :, None, None].expand(2, 32, 7, 1)
    assert score(const_velocity(d.past, 32), d, ForecastConfig())["ade"] < 1e-6


def _tiny(model, steps=4, **kw):
    return variant_config(model, steps=steps, batch_size=4, warmup=2, ckpt_every=2, **kw)


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
    assert torch.equal(predict(model, data), predict(again, data))

    res = evaluate_checkpoints(data, tmp_path, again.cfg.forecast)
    assert set(res["ablations"]) == {"thinkjepa_adaln"} and "const_velocity" in res["models"]
    m = res["ablations"]["thinkjepa_adaln"]
    assert set(m["rollout"]) == {"8", "16", "24", "32"} and 0 < m["ade"] < 1


def test_vlm_only_keeps_the_observed_joints(data):
    """Like-for-like: vlm_only lacks only the JEPA latents; it starts from the last observed joints as every
    learned model does, and moving them moves its forecast by the same offset."""
    torch.manual_seed(0)
    m = Forecaster(_tiny("vlm_only"))
    m.head.set_target_stats(data.traj.reshape(-1, 7, 3))
    idx = torch.arange(2)
    assert torch.equal(m.anchor(data, idx), data.past[idx][:, -1])
    assert torch.equal(m.anchor(data, idx), Forecaster(_tiny("thinkjepa")).anchor(data, idx))
    _, joints = m(data, idx, 2)
    d2 = data.subset(torch.arange(len(data)))
    d2.past = data.past + torch.tensor([0.1, 0.0, 0.0])
    with torch.no_grad():
        m.head.normalize = lambda anchor: torch.zeros_like(anchor)  # isolate the anchor's own effect
        a, b = m(data, idx, 2)[1], m(d2, idx, 2)[1]
    torch.testing.assert_close(b - a, torch.tensor([0.1, 0.0, 0.0]).expand_as(a))
    assert joints.shape == (2, 16, 7, 3)


@pytest.mark.parametrize("detach", [True, False])
def test_stop_gradient_on_what_a_window_hands_the_next(data, detach):
    """With detach_feedback the second window's joints get no gradient through the first window's output
    (latents and end point): here Tc = Tf, so its context is the first window's prediction alone and the
    observed latents reach it only through that. The forecast's values do not change."""
    torch.manual_seed(0)
    m = Forecaster(_tiny("jepa_only", detach_feedback=detach))
    m.head.set_target_stats(data.traj.reshape(-1, 7, 3))
    idx = torch.arange(2)
    d = data.subset(torch.arange(len(data)))
    d.ctx = data.ctx.clone().requires_grad_(True)
    z, joints = m(d, idx, 2)
    joints[:, 8:].sum().backward()
    reached = d.ctx.grad[idx].abs().sum()
    assert (reached == 0) if detach else (reached > 0)
    with torch.no_grad():
        other = Forecaster(_tiny("jepa_only", detach_feedback=not detach))
        other.load_state_dict(m.state_dict())
        torch.testing.assert_close(other(data, idx, 2)[1], joints.detach())


def test_the_first_window_is_weighted(data):
    """The trajectory term weights the first window's frames first_window_weight× (a weighted mean)."""
    torch.manual_seed(0)
    cfg = fit_to_data(_tiny("jepa_only", train_windows=2), data)
    m = Forecaster(cfg)
    m.head.set_target_stats(data.traj.reshape(-1, 7, 3))
    idx = torch.arange(4)
    with torch.no_grad():
        _, joints = m(data, idx, 2)
        err = (joints - data.traj[idx][:, :16]).norm(dim=-1).mean(-1) * data.valid[idx][:, :16]
        v = data.valid[idx][:, :16].float()
        for w in (1.0, 6.0):
            m.cfg = replace(cfg, first_window_weight=w)
            k = torch.tensor([w] * 8 + [1.0] * 8)
            want = (err * k).sum() / (v * k).sum()
            torch.testing.assert_close(losses(m, data, idx)["traj_m"], want)
    with pytest.raises(ValueError, match="first_window_weight"):
        _tiny("jepa_only", first_window_weight=0.0)


def test_step_ms_times_every_config_in_turn(data):
    ms = bench.step_ms({"thinkjepa": _tiny("thinkjepa"), "jepa_only": _tiny("jepa_only")}, data, steps=2, rounds=2)
    assert set(ms) == {"thinkjepa", "jepa_only"} and all(0 < v < 60_000 for v in ms.values())


def test_run_bench_schema_saves_and_does_not_depend_on_workers(data, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "ABLATIONS", ("thinkjepa_adaln", "thinkjepa_official"))
    monkeypatch.setattr(bench, "step_ms", lambda cfgs, d, steps=20, rounds=3: {n: 1.0 for n in cfgs})
    kw = dict(seeds=2, steps=3, progress=False)
    one = bench.run_bench(data, data, workers=1, save_dir=tmp_path, **kw)
    two = bench.run_bench(data, data, workers=2, **kw)
    assert set(one["models"]) == {"thinkjepa", "jepa_only", "vlm_only", "oracle", "const_velocity"}
    assert set(one["ablations"]) == {"thinkjepa_adaln", "thinkjepa_official"}
    for name in bench.HEADLINE:
        assert one["models"][name]["seeds"] == 2 and set(one["models"][name]["rollout"]) == {"8", "16", "24", "32"}
        assert one["ade_per_seed"][name] == two["ade_per_seed"][name]
        assert one["ade_per_seed"][name][0] != one["ade_per_seed"][name][1]  # the seeds differ
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*bench.HEADLINE, "thinkjepa_adaln",
                                                                "thinkjepa_official"])
    assert load_forecaster(tmp_path / "thinkjepa_adaln").cfg.injection == "adaln"


def test_shipped_checkpoint_or_a_trained_variant():
    """A lesson loads the shipped checkpoint, or trains the variant's recipe briefly where none is shipped."""
    model = load_forecaster(paths.FORECASTERS / "thinkjepa")
    assert model.cfg.model == "thinkjepa"
    data, _ = world_data(TRAIN_SEED, 8, load_backbones(paths.ENCODER, paths.THINKER), ForecastConfig(), paths.CACHE,
                         progress=False, workers=1)
    model, _ = train(variant_config("thinkjepa_adaln", steps=2), data, progress=False)
    assert model.cfg.injection == "adaln"
    with pytest.raises(ValueError, match="unknown forecaster variant"):
        variant_config("nonsense")


def test_an_old_format_checkpoint_is_refused(tmp_path):
    """A config.json of the previous layout (no "format", a "train" section) names the problem."""
    old = tmp_path / "thinkjepa"
    shutil.copytree(paths.FORECASTERS / "thinkjepa", old)
    meta = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({"model_type": meta["model_type"], "train": meta["config"]}))
    with pytest.raises(CheckpointError, match="format"):
        load_forecaster(old)


def test_world_data_cache_is_keyed_by_the_models_given(tmp_path, monkeypatch, encoder):
    """Another thinker (or encoder) must not be served the cached features of the shipped one."""
    from tkjepa.thinker.model import build_thinker

    cfg = ForecastConfig()
    a = Backbones(encoder, *build_thinker(seed=0))
    first, _ = world_data(5, 2, a, cfg, tmp_path, progress=False, workers=1)
    again, _ = world_data(5, 2, a, cfg, tmp_path, progress=False, workers=1)  # from the cache
    other, _ = world_data(5, 2, Backbones(encoder, *build_thinker(seed=1)), cfg, tmp_path, progress=False, workers=1)
    assert len(list(tmp_path.glob("forecast-*.safetensors"))) == 2
    assert torch.equal(first.new, again.new) and first.new.shape[0] == 2
    assert not torch.equal(first.old, other.old)  # recomputed with the other thinker's weights


# `tkjepa evaluate --data data_samples/episodes` on the shipped checkpoints (ADE, FDE, Acc@5cm), as measured
# when they were trained; the data path from episode files to scores must keep giving exactly these.
SHIPPED_SCORES = {'jepa_only': (0.0438, 0.1001, 0.643), 'oracle': (0.0219, 0.0376, 0.92), 'thinkjepa': (0.0164, 0.028, 0.985), 'vlm_only': (0.0328, 0.0678, 0.76), 'const_velocity': (0.0563, 0.1306, 0.599), 'thinkjepa_adaln': (0.0328, 0.0614, 0.751), 'thinkjepa_film': (0.0342, 0.0727, 0.731), 'thinkjepa_levels_last': (0.0286, 0.0498, 0.804), 'thinkjepa_levels_mid': (0.0231, 0.0375, 0.913), 'thinkjepa_official': (0.0343, 0.0734, 0.727)}
SCATTERED_SCORES = {'jepa_only': (0.0432, 0.0978, 0.627), 'oracle': (0.0394, 0.0889, 0.666), 'thinkjepa': (0.0278, 0.0581, 0.794), 'vlm_only': (0.0393, 0.0889, 0.674), 'const_velocity': (0.0523, 0.1186, 0.599)}


def test_evaluate_gives_the_shipped_numbers(tmp_path, capsys):
    from tkjepa.cli import main

    out = tmp_path / "results.json"
    assert main(["evaluate", "--data", str(paths.EPISODES), "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    scores = {**result["models"], **result["ablations"]}
    assert set(scores) == set(SHIPPED_SCORES)
    got = {name: (round(m["ade"], 4), round(m["fde"], 4), round(m["acc5"], 3)) for name, m in scores.items()}
    assert got == SHIPPED_SCORES
    assert result["test"]["episodes"] == 48
    assert "| thinkjepa | 0.0164 | 0.0280 | 0.985 |" in out.with_suffix(".md").read_text()


def test_the_same_seed_gives_bit_identical_metrics(data):
    scores = [score(predict(train(_tiny("thinkjepa", steps=3), data, progress=False)[0], data), data, ForecastConfig())
              for _ in range(2)]
    assert scores[0] == scores[1]


def test_an_interrupted_train_command_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """`tkjepa train` stopped after its first training-state checkpoint, then rerun with --resume, runs only the
    remaining steps and ends with the bytes of an uninterrupted run."""
    import tkjepa.forecast.train as forecast_train
    from tkjepa.cli import main
    from tkjepa.forecast.data import world_data

    args = ["train", "--variant", "jepa_only", "--episodes", "16", "--set", "steps=6", "--set", "ckpt_every=3",
            "--quiet"]
    assert main(args + ["--out", str(tmp_path / "whole")]) == 0
    cfg = variant_config("jepa_only", steps=6, ckpt_every=3)
    d, _ = world_data(TRAIN_SEED, 16, load_backbones(paths.ENCODER, paths.THINKER), cfg.forecast, paths.CACHE,
                      progress=False)
    train(cfg, d, out=tmp_path / "cut", progress=False, until=3)          # killed after the step-3 checkpoint
    assert (tmp_path / "cut" / "train_state.safetensors").exists()
    steps, real = [], forecast_train.losses
    monkeypatch.setattr(forecast_train, "losses", lambda *a: steps.append(1) or real(*a))
    assert main(args + ["--out", str(tmp_path / "cut"), "--resume"]) == 0
    assert len(steps) == 3                                                # steps 4–6 only
    whole, cut = (load_forecaster(tmp_path / n).state_dict() for n in ("whole", "cut"))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert not (tmp_path / "cut" / "train_state.safetensors").exists()


def test_scores_per_family_are_the_scores_of_each_familys_episodes(data):
    """`score(..., families)` scores each family's episodes alone; `by_family` regroups them by family."""
    from tkjepa.forecast.evaluate import by_family

    cfg = ForecastConfig()
    pred = const_velocity(data.past, data.traj.shape[1])
    fams = ["a" if i % 3 else "b" for i in range(len(data))]
    got = score(pred, data, cfg, fams)
    b = torch.tensor([i for i, f in enumerate(fams) if f == "b"])
    alone = score(pred[b], data.subset(b), cfg)
    assert got["families"]["b"]["ade"] == alone["ade"] and got["families"]["b"]["episodes"] == len(b)
    assert got["families"]["b"]["rollout"] == alone["rollout"]
    assert got["families"]["a"]["ade"] != got["families"]["b"]["ade"]
    grouped = by_family({"cv": got, "again": got})
    assert set(grouped) == {"a", "b"} and grouped["a"]["cv"] == got["families"]["a"]
    with pytest.raises(ValueError, match="family names"):
        score(pred, data, cfg, fams[:-1])


def test_fine_tokens_and_the_pointer_target(data, episodes, encoder):
    """`fine` is the last observed tubelet unpooled; `point` the cell where the next subgoal's object is seen
    (tabletop annotations), or without them where the wrist is seen 12 frames after the forecast start."""
    from tkjepa.episode import WRIST
    from tkjepa.world.stats import next_subgoal

    assert data.fine.shape == (len(episodes), 64, 96) and data.point.dtype == torch.int64
    cam = lambda ep, p, t: (p - ep.transforms["camera"][t][:3, 3]) @ ep.transforms["camera"][t][:3, :3]  # noqa: E731
    for ep, point in zip(episodes, data.point.tolist()):
        s = ep.num_frames // 2
        obj = ep.extras["object_positions"][s - 1, int(ep.extras["subgoal_objects"][next_subgoal(ep, s)])]
        c = cam(ep, obj.astype(float), s - 1)
        u, v = (ep.intrinsic @ c)[:2] / c[2]
        assert point == int((v + 0.5) // 8) * 8 + int((u + 0.5) // 8)
    bare = type(episodes[0])(**{**episodes[0].__dict__, "extras": {}})  # an EgoDex recording: no annotations
    plain, _ = build([bare], Backbones(encoder), progress=False)
    s = bare.num_frames // 2
    u, v = bare.project([WRIST])[s + 11, 0]
    assert int(plain.point) == int((v + 0.5) // 8) * 8 + int((u + 0.5) // 8) and not bool(plain.has_oracle)
    torch.testing.assert_close(plain.fine, data.fine[:1])
    plain, _ = build(episodes[:1], Backbones(encoder), ForecastConfig(fine=False), progress=False)
    assert plain.fine is None and plain.point is None


def test_the_grounding_pointer_finds_a_planted_object():
    """Each episode plants the named object's feature (the one its thinking tokens carry) at a random cell
    among distractors: trained on the cell, the pointer finds it in held-out episodes."""
    from tkjepa.forecast.model import Grounding

    torch.manual_seed(0)
    names = torch.randn(6, 96)                        # six objects' appearance in the frame
    words = torch.randn(6, 32)                        # and the thinker's state when it names them

    def batch(n):
        which, cell = torch.randint(0, 6, (n,)), torch.randint(0, 64, (n,))
        fine = 0.3 * torch.randn(n, 64, 96)
        other = (which + torch.randint(1, 6, (n,))) % 6  # a distractor object elsewhere
        fine[torch.arange(n), (cell + 17) % 64] += names[other]
        fine[torch.arange(n), cell] += names[which]
        return fine, words[which][:, None], cell

    g = Grounding(96, 32, 8)
    opt = torch.optim.Adam(g.parameters(), lr=3e-3)
    for _ in range(300):
        fine, kv, cell = batch(64)
        _, w = g(fine, kv, torch.ones(64, 1, dtype=torch.bool))
        loss = -torch.log(w.gather(1, cell[:, None]) + 1e-8).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    fine, kv, cell = batch(200)
    with torch.no_grad():
        token, w = g(fine, kv, torch.ones(200, 1, dtype=torch.bool))
    assert token.shape == (200, 1, 32)
    assert (w.argmax(-1) == cell).float().mean() > 0.9   # chance: 1/64, the distractor: 1/2


def test_grounded_thinkjepa_starts_as_the_ungrounded_one_and_trains_its_pointer(data):
    cfg = _tiny("thinkjepa")
    assert cfg.grounding and not variant_config("thinkjepa", preset="paper").grounding
    torch.manual_seed(0)
    grounded = Forecaster(fit_to_data(cfg, data))
    torch.manual_seed(0)
    plain = Forecaster(fit_to_data(replace(cfg, grounding=False), data))
    plain.load_state_dict(grounded.state_dict(), strict=False)
    idx = torch.arange(3)
    torch.testing.assert_close(grounded(data, idx, 2)[1], plain(data, idx, 2)[1])  # gates and context at zero
    out = losses(grounded, data, idx)
    assert "pointer" in out and float(out["pointer"].detach()) > 0
    out["pointer"].backward()
    assert grounded.grounding.k.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="fine=True"):
        replace(cfg, forecast=ForecastConfig(fine=False)).__post_init__()


def test_the_scattered_forecasters_find_the_named_object(tmp_path):
    """The forecasters shipped for scattered scenes (`tkjepa viewer --layout scattered`): on the 48 scattered
    samples thinkjepa, which must find the object the thinker names, beats jepa_only by the benchmark's margin."""
    from tkjepa.cli import build_parser, main
    from tkjepa.cli.viewer import layout_defaults

    parser, _ = build_parser("viewer")
    args = parser.parse_args(["viewer", "--layout", "scattered"])
    assert layout_defaults(args) == (str(paths.EPISODES_SCATTERED), str(paths.FORECASTERS_SCATTERED))
    args = parser.parse_args(["viewer", "--data", "x"])
    assert layout_defaults(args) == ("x", str(paths.FORECASTERS))
    out = tmp_path / "results.json"
    assert main(["evaluate", "--data", str(paths.EPISODES_SCATTERED), "--checkpoints",
                 str(paths.FORECASTERS_SCATTERED), "--out", str(out), "--quiet"]) == 0
    models = json.loads(out.read_text())["models"]
    got = {name: (round(m["ade"], 4), round(m["fde"], 4), round(m["acc5"], 3)) for name, m in models.items()}
    assert got == SCATTERED_SCORES
    assert models["thinkjepa"]["ade"] <= 0.8 * models["jepa_only"]["ade"]
