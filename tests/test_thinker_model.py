"""Thinker model: construction, loading without remote code, multi-layer features and their masks."""

import numpy as np
import pytest
import torch
from transformers import Qwen3VLForConditionalGeneration

from tkjepa.thinker import model as thinker_model
from tkjepa.thinker.inputs import VideoConfig, build_inputs
from tkjepa.thinker.model import (ThinkerConfig, build_thinker, default_layers, extract_features,
                                  generated_mask, load_thinker, video_config_of)
from tkjepa.world import generate_episode
from tkjepa.world.generate import WorldConfig

CLIP = [0, 4, 9, 13, 18, 22, 27, 31]


@pytest.fixture(scope="module")
def thinker():
    torch.set_num_threads(1)
    return build_thinker(ThinkerConfig.tiny(), seed=0)


@pytest.fixture(scope="module")
def episodes():
    return [generate_episode(s) for s in range(4)]


def test_default_layers_like_official():
    assert default_layers(28) == [0, 4, 8, 12, 16, 20, 24, 27]
    assert default_layers(6) == [0, 1, 2, 3, 4, 5]


def test_build_is_seeded():
    a, _ = build_thinker(seed=3)
    b, _ = build_thinker(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_generated_mask():
    new = torch.tensor([[5, 3, 0, 0], [5, 6, 7, 8], [3, 3, 3, 3]])
    assert generated_mask(new, eos=3).tolist() == [[True, True, False, False], [True] * 4,
                                                   [True, False, False, False]]


@pytest.mark.parametrize("B", [1, 4])
def test_feature_shapes_and_masks(thinker, episodes, B):
    model, tok = thinker
    feats = extract_features(model, tok, episodes[:B], [CLIP] * B, layers=[0, 2, 5], max_new_tokens=5)
    assert len(feats) == B
    for f, ep in zip(feats, episodes):
        L, n_old, D = f.old.shape
        assert (L, D) == (3, 128) and f.layers == [0, 2, 5]
        assert f.new.shape == (3, 5, 128) and f.new_mask.shape == (5,)
        assert f.old_mask.shape == (n_old,) and f.old_mask[-1]
        # old_mask marks exactly this episode's prompt + visual tokens (left padding is False)
        own = build_inputs(tok, [ep], [CLIP], video_config_of(model))["input_ids"].shape[1]
        assert int(f.old_mask.sum()) == own


def test_batched_features_match_single(thinker, episodes):
    model, tok = thinker
    single = extract_features(model, tok, episodes[1:2], [CLIP], max_new_tokens=4)[0]
    batched = extract_features(model, tok, episodes[:3], [CLIP] * 3, max_new_tokens=4)[1]
    assert single.text == batched.text
    assert torch.allclose(single.old[:, single.old_mask], batched.old[:, batched.old_mask], atol=1e-4)
    assert torch.allclose(single.new, batched.new, atol=1e-4)


def test_layer_index_semantics(thinker, episodes):
    """Layer l is decoder layer l's output; the deepest one is final-normed (transformers' convention)."""
    model, tok = thinker
    seen = {}
    layers = model.model.language_model.layers
    hooks = [layers[i].register_forward_hook(
        lambda m, a, o, i=i: seen.__setitem__(i, o[0] if isinstance(o, tuple) else o))
             for i in (1, 5)]
    try:
        f = extract_features(model, tok, episodes[:1], [CLIP], layers=[1, 5], max_new_tokens=1)[0]
    finally:
        for h in hooks:
            h.remove()
    n_old = f.old.shape[1]
    assert torch.allclose(f.old[0], seen[1][0, :n_old], atol=1e-5)
    normed = model.model.language_model.norm(seen[5])[0, :n_old]
    assert torch.allclose(f.old[1], normed, atol=1e-5)


def test_save_load_round_trip_identical_features(thinker, episodes, tmp_path):
    model, tok = thinker
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model2, tok2 = load_thinker(tmp_path)
    a = extract_features(model, tok, episodes[:2], [CLIP] * 2, max_new_tokens=4)
    b = extract_features(model2, tok2, episodes[:2], [CLIP] * 2, max_new_tokens=4)
    for x, y in zip(a, b):
        assert x.text == y.text
        assert torch.equal(x.old, y.old) and torch.equal(x.new, y.new)
        assert torch.equal(x.old_mask, y.old_mask) and torch.equal(x.new_mask, y.new_mask)


def saved_and_reloaded(folder, **video):
    """A seed-0 tiny thinker reading video with these `VideoConfig` fields, saved to `folder` and loaded back."""
    from dataclasses import replace

    cfg = ThinkerConfig.tiny()
    cfg.video = replace(cfg.video, **video)
    model, tok = build_thinker(cfg, seed=0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return load_thinker(folder)


def test_a_proprio_thinker_keeps_reading_the_hand_after_a_reload(episodes, tmp_path):
    """`VideoConfig.proprio` is saved with the checkpoint; the loaded thinker's prompt carries the hand, and its
    features are a function of it (and the cache keys it)."""
    from tkjepa.checkpoint import weights_digest
    from tkjepa.thinker.cache import episode_key

    model2, tok2 = saved_and_reloaded(tmp_path, proprio=True)
    assert video_config_of(model2).proprio and not video_config_of(build_thinker(seed=0)[0]).proprio
    ep = generate_episode(1)                                       # its own copy: the hand is edited below
    w = weights_digest(model2)
    key = episode_key(w, [0], ep, CLIP, VideoConfig(proprio=True))
    assert key != episode_key(w, [0], ep, CLIP)
    a = extract_features(model2, tok2, [ep], [CLIP], max_new_tokens=2)[0]
    plain = build_inputs(tok2, [ep], [CLIP], VideoConfig())["input_ids"].shape[1]
    assert a.old.shape[1] == plain + 2 + 4 * len(CLIP)           # "hand :" and one "h a c ," per clip frame
    ep.transforms["rightHand"][CLIP[2], 2, 3] += 0.05              # the hand 5 cm higher at one clip frame
    b = extract_features(model2, tok2, [ep], [CLIP], max_new_tokens=2)[0]
    assert not torch.equal(a.old, b.old)
    assert episode_key(w, [0], ep, CLIP, VideoConfig(proprio=True)) != key
    assert episode_key(w, [0], ep, CLIP) == episode_key(w, [0], generate_episode(1), CLIP)  # a plain one ignores it


def test_a_frames_only_thinker_never_reads_the_instruction_after_a_reload(episodes, tmp_path):
    """`VideoConfig.instruction` False is saved with the checkpoint: the loaded thinker's prompt has no
    instruction, its features do not change when the instruction does, and the cache keys it apart."""
    from tkjepa.checkpoint import weights_digest
    from tkjepa.thinker.cache import episode_key
    from tkjepa.thinker.inputs import build_prompt

    model2, tok2 = saved_and_reloaded(tmp_path, instruction=False)
    assert not video_config_of(model2).instruction and video_config_of(build_thinker(seed=0)[0]).instruction
    ep = generate_episode(1)
    told, blind = build_prompt(ep), build_prompt(ep, instruction=False)
    assert "instruction" in told and "instruction" not in blind and told.startswith(blind[:-1])
    a = extract_features(model2, tok2, [ep], [CLIP], max_new_tokens=2)[0]
    ep.instruction = "touch the blue cube"                          # another instruction, the same frames
    b = extract_features(model2, tok2, [ep], [CLIP], max_new_tokens=2)[0]
    assert torch.equal(a.old, b.old) and torch.equal(a.new, b.new)
    w = weights_digest(model2)
    assert episode_key(w, [0], ep, CLIP, VideoConfig(instruction=False)) != episode_key(w, [0], ep, CLIP)


def test_load_never_trusts_remote_code_unless_asked(thinker, tmp_path, monkeypatch):
    model, tok = thinker
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    seen = []
    real = Qwen3VLForConditionalGeneration.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code", "missing"))
        return real(*args, **kwargs)

    monkeypatch.setattr(thinker_model.Qwen3VLForConditionalGeneration, "from_pretrained", spy)
    load_thinker(tmp_path)
    load_thinker(tmp_path, trust_remote_code=True)
    assert seen == [False, True]


def test_pretrain_smoke_then_think_json(tmp_path, capsys):
    """The two commands end to end at smoke size: checkpoint files, metrics, and think's JSON shape."""
    import json
    from pathlib import Path

    from tkjepa.cli import main

    out = tmp_path / "thinker"
    assert main(["pretrain-thinker", "--preset", "smoke", "--out", str(out)]) == 0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "metrics.json"):
        assert (out / name).exists(), name
    assert set(json.loads((out / "metrics.json").read_text())["per_family"]) <= {
        "pick_place", "marked_pick_place", "touch_sequence", "push"}
    capsys.readouterr()
    episode = Path(__file__).resolve().parents[1] / "data_samples" / "episodes" / "push" / "0.hdf5"
    assert main(["think", str(episode), "--thinker", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    row = report["episodes"][0]
    assert set(row) == {"path", "text", "next_target", "correct"} and row["path"].endswith("0.hdf5")
    assert report["accuracy"] in (0.0, 1.0) and isinstance(row["correct"], bool)


def test_pretrain_proprio_writes_a_thinker_that_reads_the_hand(tmp_path):
    import json

    from tkjepa.cli import main

    flags = ["--set", "model.video.proprio=true", "--set", "fumbles=2"]
    for given, out in ((flags, tmp_path / "proprio"), ([], tmp_path / "plain")):
        assert main(["pretrain-thinker", "--preset", "smoke", "--out", str(out), *given]) == 0
    metrics = json.loads((tmp_path / "proprio" / "metrics.json").read_text())
    assert metrics["command"].endswith("--set model.video.proprio=true --set fumbles=2")
    assert metrics["config"]["model"]["video"]["proprio"] and metrics["config"]["fumbles"] == 2
    assert video_config_of(load_thinker(tmp_path / "proprio")[0]).proprio
    assert not video_config_of(load_thinker(tmp_path / "plain")[0]).proprio


def test_thinking_target_from_world_ground_truth():
    from tkjepa.sampling import DualTemporalSampler, SamplerConfig
    from tkjepa.thinker.think import predicted_target, thinker_indices, thinking_target

    sampler = DualTemporalSampler(SamplerConfig.tiny())
    for seed in range(6):
        ep = generate_episode(seed)
        idx, s = thinker_indices(ep, sampler)
        assert idx.max() < s
        text = thinking_target(ep, s)
        names = list(ep.extras["object_names"])
        k = names.index(predicted_target(text))
        if ep.task == "touch_sequence":  # the second object named in the instruction
            assert k == int(ep.extras["subgoal_objects"][1])
    assert predicted_target("holding nothing . next red bowl") == "red bowl"
    assert predicted_target("holding nothing") == ""


def test_anytime_moments_cover_the_episode_and_teach_their_own_answer():
    from tkjepa.thinker.think import anytime_indices, clip_indices, thinker_indices, thinking_target
    from tkjepa.thinker.tokenizer import build_tokenizer, decode_words
    from tkjepa.sampling import DualTemporalSampler, SamplerConfig
    from tkjepa.thinker.pretrain import TRAIN_FAMILIES, TRAIN_SEED0, ThinkerPretrainConfig, make_examples

    sampler = DualTemporalSampler(SamplerConfig.tiny())
    ep = generate_episode(3, WorldConfig(family="pick_place"))
    rng = np.random.default_rng(0)
    moments = [anytime_indices(ep, rng) for _ in range(200)]
    ss = np.array([s for _, s in moments])
    assert (ss % 2 == 0).all() and ss.min() == 2 and ss.max() == ep.num_frames  # every planner moment, no other
    for idx, s in moments:
        assert len(idx) == 8 and idx[0] == 0 and idx[-1] == s - 1 and (np.diff(idx) >= 0).all()
    assert np.array_equal(clip_indices(4), [0, 0, 1, 1, 2, 2, 3, 3]) and clip_indices(64)[-1] == 63
    with pytest.raises(ValueError, match="observed frame"):
        clip_indices(0)
    # both phases of a pick-and-place are taught: before the grasp "next <cube>", after it "next <bowl>"
    texts = {thinking_target(ep, s) for _, s in moments}
    assert len({t.split(" next ")[1] for t in texts}) == 2

    tok = build_tokenizer()
    cfg = ThinkerPretrainConfig(episodes=6, workers=1, anytime="uniform")
    starts = []
    for i, ex in enumerate(make_examples(cfg, tok)):
        e = generate_episode(TRAIN_SEED0 + i, WorldConfig(family=TRAIN_FAMILIES[i % len(TRAIN_FAMILIES)]))
        _, s = anytime_indices(e, np.random.default_rng([TRAIN_SEED0 + i, 1]))
        assert decode_words(tok, ex["target"]) == thinking_target(e, s)  # the answer at its own moment
        starts.append(s != thinker_indices(e, sampler)[1])
    assert any(starts)  # not the sampler's forecast start


def test_think_episodes_scores_the_whole_text(monkeypatch):
    from tkjepa.thinker import think as think_mod
    from tkjepa.thinker.think import accuracy, anytime_indices, think_episodes, thinking_target

    eps = [generate_episode(s, WorldConfig(family="pick_place")) for s in range(4)]
    moments = [anytime_indices(e, np.random.default_rng(i)) for i, e in enumerate(eps)]
    truth = [thinking_target(e, s) for e, (_, s) in zip(eps, moments)]
    said = [truth[0], truth[1].replace("holding", "holding nothing", 1) if "nothing" not in truth[1]
            else truth[1].replace("nothing", "red cube"), "  " + truth[2].replace(" ", "  "), "holding nothing"]
    monkeypatch.setattr(think_mod, "generate", lambda m, t, chunk, idx: (None, None, said[:len(chunk)]))
    rows = think_episodes(None, None, eps, moments=moments)
    assert [r["exact"] for r in rows] == [True, False, True, False]  # spacing does not count against it
    assert [r["correct"] for r in rows] == [True, True, True, False]  # the wrong "holding" still names the next
    assert [r["s"] for r in rows] == [s for _, s in moments]
    acc = accuracy(rows)
    assert acc["overall"] == 0.75 and acc["exact"] == 0.5
    with pytest.raises(ValueError, match="moments"):
        think_episodes(None, None, eps, moments=moments[:2])


def test_phase_balanced_moments_and_a_clock_that_says_nothing():
    from tkjepa.thinker.inputs import VideoConfig, encode, video_layout
    from tkjepa.thinker.think import anytime_indices, thinking_target
    from tkjepa.thinker.tokenizer import build_tokenizer
    from tkjepa.thinker.pretrain import TRAIN_FAMILIES, TRAIN_SEED0, ThinkerPretrainConfig, make_examples
    from tkjepa.world.stats import next_subgoal

    ep = generate_episode(3, WorldConfig(family="pick_place"))
    rng = np.random.default_rng(0)
    phase = lambda s: next_subgoal(ep, s) + (s - 1 >= ep.extras["subgoal_end"][-1])  # noqa: E731  0, 1, 2 = done
    draws = [anytime_indices(ep, rng, how="phases")[1] for _ in range(600)]
    share = np.bincount([phase(s) for s in draws], minlength=3) / len(draws)
    assert np.allclose(share, 1 / 3, atol=0.06)                       # each phase a third of the time
    uniform = [anytime_indices(ep, rng)[1] for _ in range(600)]
    assert np.mean([phase(s) == 0 for s in uniform]) < 0.25           # uniform moments rarely see phase 0
    with pytest.raises(ValueError, match="how"):
        anytime_indices(ep, rng, how="sometimes")

    tok, video = build_tokenizer(), VideoConfig.tiny()
    for i, ex in enumerate(make_examples(ThinkerPretrainConfig(episodes=3, workers=1, anytime="phases"), tok)):
        e = generate_episode(TRAIN_SEED0 + i, WorldConfig(family=TRAIN_FAMILIES[i]))
        rng = np.random.default_rng([TRAIN_SEED0 + i, 1])
        idx, s = anytime_indices(e, rng, how="phases")
        stamps = anytime_indices(e, rng)[0]
        want = encode(tok, e, idx, video, thinking_target(e, s), stamps)  # the frames of s, the clock of another
        assert ex["ids"] == want["ids"] and ex["target"] == want["target"]
        assert torch.equal(ex["pixels"], want["pixels"]) and torch.equal(ex["grid"], want["grid"])
        if not np.array_equal(stamps, idx):
            assert video_layout(stamps, e.fps, video) != video_layout(idx, e.fps, video)
