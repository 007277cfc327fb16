"""Your data, your models: extract → train → evaluate → attribute through the command line, on EgoDex-layout
recordings (144×256 video, all 68 joints, both hands, no world ground truth), for the tiny backbones, a
randomly initialised V-JEPA 2 of the real layout (crop 256, patch 16, tubelet 2; narrower and shallower than
ViT-L) and a random Qwen3-VL of the real layout with a byte-level BPE tokenizer and a thinking model's chat
template, with the 52-joint bimanual head. Nothing is downloaded: both are built from transformers' own config
classes and saved with `save_pretrained` (`tkjepa stand-in`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tkjepa import paths
from tkjepa.cli import main
from tkjepa.egodex import find_episodes, load_episode
from tkjepa.episode import BIMANUAL_JOINTS, EGODEX_JOINTS
from tkjepa.forecast.data import split_episodes
from tkjepa.world import WorldConfig
from tkjepa.world.generate import generate_episode, write_dataset

STEPS = ["--set", "steps=4", "--set", "batch_size=4", "--set", "warmup=1", "--quiet", "--threads", "2"]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("egodex_layout")
    write_dataset(root, 14, seed=5, cfg=WorldConfig(layout="homes", recording=(144, 256)), workers=1,
                  progress=False)
    return root


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stand_ins")
    for arch in ("vjepa2", "qwen3vl"):
        assert main(["stand-in", "--arch", arch, "--out", str(root / arch)]) == 0
    return {arch: root / arch for arch in ("vjepa2", "qwen3vl")}


def test_the_stand_ins_have_the_real_layouts(stand_ins):
    from transformers import AutoConfig

    v = AutoConfig.from_pretrained(stand_ins["vjepa2"])
    assert (v.model_type, v.crop_size, v.patch_size, v.tubelet_size) == ("vjepa2", 256, 16, 2)
    q = AutoConfig.from_pretrained(stand_ins["qwen3vl"])
    assert q.model_type == "qwen3_vl" and q.vision_config.spatial_merge_size == 2
    assert (stand_ins["qwen3vl"] / "chat_template.jinja").exists() or "chat_template" in json.loads(
        (stand_ins["qwen3vl"] / "tokenizer_config.json").read_text())


def test_a_real_thinker_reads_its_own_chat_template(stand_ins, recordings):
    """The prompt is the model's template around the official request, its thinking opener kept, one video
    placeholder expanded to timestamped groups of 256-px frames; the generated text decodes as BPE."""
    from tkjepa.thinker.inputs import build_inputs
    from tkjepa.thinker.model import extract_features, load_thinker, video_config_of

    model, tok = load_thinker(stand_ins["qwen3vl"])
    video = video_config_of(model)
    assert (video.size, video.chat_prompt) == (256, "Describe this video.")
    ep = load_episode(find_episodes(recordings)[0], size=64)
    idx = np.linspace(0, 31, 8).astype(int)
    batch = build_inputs(tok, [ep], [idx], video)
    text = tok.decode(batch["input_ids"][0])
    assert text.startswith("<|im_start|>user\n<0.1 seconds><|vision_start|>")
    assert text.endswith("Describe this video.<|im_end|>\n<|im_start|>assistant\n<think>\n")
    assert text.count("seconds>") == 4 and int((batch["mm_token_type_ids"] == 2).sum()) == 4 * (256 // 32) ** 2
    assert batch["pixel_values_videos"].shape == (4 * 16 * 16, 3 * 2 * 16 * 16)
    f = extract_features(model, tok, [ep], [idx])[0]
    assert f.new.shape[1] == 16 and f.layers == list(range(8))  # 16 greedy tokens, every layer of 8
    assert "Ġ" not in f.text  # the byte-level decoder, not the tokens' spelling


def test_a_recording_is_an_egodex_file(recordings):
    """All 68 joints, both hands moving, a wide video whose centre crop is the rendered scene."""
    path = find_episodes(recordings)[0]
    native = load_episode(path, size=None)
    assert native.frames.shape[1:] == (144, 256, 3) and native.extras == {}
    assert sorted(native.joint_names) == sorted(EGODEX_JOINTS)
    left, right = native.positions(["leftHand"])[:, 0], native.positions(["rightHand"])[:, 0]
    np.testing.assert_allclose(left[:, 0], -right[:, 0], atol=1e-6)  # mirrored about x = 0
    assert np.ptp(left, axis=0).max() > 0.05                         # and it moves
    ep = load_episode(path, size=64)
    seed = int(path.stem)
    from tkjepa.world.generate import episode_seed

    square = generate_episode(episode_seed(5, seed), WorldConfig(layout="homes"))
    err = np.abs(ep.frames.astype(int) - square.frames.astype(int)).mean()
    assert err < 6, err  # the crop recovers the rendered frames (video coding and two resizes apart)
    np.testing.assert_allclose(ep.intrinsic, square.intrinsic, rtol=0.02, atol=0.3)


def test_split_is_disjoint_by_task_folder(recordings):
    train, test = split_episodes(recordings, "train"), split_episodes(recordings, "test")
    assert set(train).isdisjoint(test) and len(train) + len(test) == len(find_episodes(recordings))
    assert {p.parent.name for p in train}.isdisjoint({p.parent.name for p in test})
    assert split_episodes(recordings, "test") == test  # seeded


@pytest.mark.parametrize("backbone", ["tiny", "vjepa2", "qwen3vl"])
def test_extract_train_evaluate_attribute(recordings, stand_ins, tmp_path, capsys, backbone):
    enc = {"tiny": [], "vjepa2": ["--encoder", str(stand_ins["vjepa2"])],
           "qwen3vl": ["--thinker", str(stand_ins["qwen3vl"])]}[backbone]
    data = ["--data", str(recordings)]
    assert main(["extract", *data, *enc, "--joints", "bimanual52", "--split", "train", "--quiet", "--json"]) == 0
    ext = json.loads(capsys.readouterr().out)
    n_train = len(split_episodes(recordings, "train"))
    grid = 8 if backbone == "vjepa2" else 4  # V-JEPA 2: 256 / 16 = 16 tokens a side, pooled 2×2
    width = 64 if backbone == "vjepa2" else 96
    assert ext["episodes"] == n_train and ext["skipped"] == []
    assert ext["tensors"]["ctx"] == f"{n_train} x 4 x {grid * grid} x {width}"
    assert ext["tensors"]["traj"] == f"{n_train} x 32 x 52 x 3"

    ck = tmp_path / "ck"
    for variant in ("thinkjepa", "jepa_only"):
        assert main(["train", "--variant", variant, *data, "--split", "train", *enc, "--joints", "bimanual52",
                     "--out", str(ck / variant), *STEPS]) == 0
    record = json.loads((ck / "thinkjepa" / "config.json").read_text())
    assert record["pipeline"]["joints"] == "bimanual52" and record["pipeline"]["split"] == "train"
    assert record["config"]["forecast"]["joints"] == list(BIMANUAL_JOINTS)
    assert record["config"]["predictor"]["latent_dim"] == width
    weights = load_file(ck / "thinkjepa" / "model.safetensors")
    assert weights["head.mlp.3.weight"].shape[0] == 2 * 52 * 3       # two frames per tubelet × 52 joints × xyz
    assert weights["head.state.weight"].shape[1] == 52 * 3              # reads the last observed 52 joints
    assert weights["head.embed.weight"].shape[1] == width                 # the encoder's latent width
    capsys.readouterr()

    out = tmp_path / "r.json"  # no --encoder: the checkpoints say which
    assert main(["evaluate", *data, "--split", "test", "--checkpoints", str(ck), "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["test"]["episodes"] == len(split_episodes(recordings, "test"))
    assert set(result["models"]) == {"thinkjepa", "jepa_only", "const_velocity"}
    assert all(np.isfinite(m["ade"]) for m in result["models"].values())

    att = tmp_path / "a.json"
    assert main(["attribute", *data, "--split", "test", "--checkpoint", str(ck / "thinkjepa"), "--out", str(att),
                 "--quiet"]) == 0
    layers = json.loads(att.read_text())["layers"]
    assert len(json.loads(att.read_text())["attribution"]) == len(layers)
    assert len(layers) == (8 if backbone == "qwen3vl" else 6)  # every cached layer of the thinker
    capsys.readouterr()

    if backbone != "tiny":  # another backbone than the recorded one is refused, in one line
        which = "encoder" if backbone == "vjepa2" else "thinker"
        shipped = paths.ENCODER if backbone == "vjepa2" else paths.THINKER
        assert main(["evaluate", *data, "--split", "test", "--checkpoints", str(ck), f"--{which}",
                     str(shipped), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"trained on the {which}" in err and "other weights" in err


def test_train_refuses_a_split_without_data(tmp_path, capsys):
    assert main(["train", "--split", "train", "--out", str(tmp_path / "x"), "--episodes", "8", *STEPS]) == 2
    assert "--split needs --data" in capsys.readouterr().err


def test_streamed_training_is_in_memory_training(recordings, tmp_path):
    """Training from the per-episode store through a DataLoader draws the same batches as from memory and
    ends with the same weights (float tolerance: a streamed batch pads the thinker tokens to its own longest)."""
    from tkjepa.backbones import load_backbones
    from tkjepa.forecast.data import ForecastConfig
    from tkjepa.forecast.model import variant_config
    from tkjepa.forecast.store import ForecastDataset, extract_folder, load_all
    from tkjepa.forecast.train import train

    entries, _ = extract_folder(recordings, load_backbones(paths.ENCODER, paths.THINKER), ForecastConfig(),
                                tmp_path, progress=False)
    cfg = variant_config("thinkjepa", steps=5, batch_size=4, warmup=1)
    streamed, h1 = train(cfg, ForecastDataset(entries), progress=False, workers=1)
    memory, h2 = train(cfg, load_all(entries)[0], progress=False)
    for (k, a), b in zip(streamed.state_dict().items(), memory.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    assert h1[-1]["loss"] == pytest.approx(h2[-1]["loss"], rel=1e-4)


def test_fp16_store_halves_the_entries_and_keeps_the_numbers_close(recordings, tmp_path):
    from tkjepa.backbones import load_backbones
    from tkjepa.forecast.data import ForecastConfig
    from tkjepa.forecast.store import extract_folder, load_all

    backbones = load_backbones(paths.ENCODER, paths.THINKER)
    full, _ = extract_folder(recordings, backbones, ForecastConfig(), tmp_path / "a", progress=False)
    half, _ = extract_folder(recordings, backbones, ForecastConfig(), tmp_path / "b", dtype="fp16", progress=False)
    size = lambda es: sum(e.stat().st_size for e in es)  # noqa: E731
    assert 0.45 < size(half) / size(full) < 0.6
    a, b = load_all(full)[0], load_all(half)[0]
    assert b.ctx.dtype == torch.float32  # read back as fp32
    torch.testing.assert_close(b.ctx, a.ctx, rtol=2e-3, atol=2e-3)
    assert torch.equal(b.traj, a.traj)  # targets are never rounded


def test_paper_layout_frames_and_camera_coordinates(recordings):
    """The paper preset's data: 32 observed frames spread over [0, T/2), 32 targets over [T/2, T), the thinker
    on the same 32 frames, and joints in the last observed camera's frame that map back to world exactly."""
    from tkjepa.backbones import load_backbones
    from tkjepa.forecast.data import build, episode_frames
    from tkjepa.forecast.model import variant_config
    from tkjepa.sampling import DualTemporalSampler

    cfg = variant_config("thinkjepa", "paper").forecast
    obs, fut, s = episode_frames(64, cfg)
    np.testing.assert_array_equal(obs, np.arange(32))            # linspace(0, 31, 32)
    np.testing.assert_array_equal(fut, np.arange(32, 64))
    obs, fut, s = episode_frames(200, cfg)
    assert s == 100 and obs[0] == 0 and obs[-1] == 99 and fut[0] == 100 and fut[-1] == 199 and len(fut) == 32
    np.testing.assert_array_equal(DualTemporalSampler(cfg.sampler).sample(200).thinker, obs)  # the same frames
    ep = load_episode(find_episodes(recordings)[0], size=128)
    cfg.pool = 8  # 16 × 16 tokens pooled to 2 × 2: the geometry, not the cost, is under test
    data, _ = build([ep], load_backbones(paths.ENCODER, None), cfg, progress=False)
    cam = data.camera[0].double()
    world = data.traj[0].double() @ cam[:3, :3].T + cam[:3, 3]
    np.testing.assert_allclose(world.numpy(), ep.positions(cfg.joints)[32:64], atol=1e-5)
    assert data.traj.shape == (1, 32, 52, 3) and data.ctx.shape[1] == 16


def test_paper_preset_trains_and_evaluates(recordings, stand_ins, tmp_path, capsys):
    """`--preset paper` through the same commands (V-JEPA 2 layout, shrunk predictor for the CPU)."""
    ck = tmp_path / "ck"
    small = ["--set", "predictor.depth=2", "--set", "predictor.dim=64", "--set", "predictor.num_heads=2",
             "--set", "forecast.pool=4"]
    assert main(["train", "--preset", "paper", "--data", str(recordings), "--split", "train", "--encoder",
                 str(stand_ins["vjepa2"]), "--thinker", str(paths.THINKER), "--out", str(ck / "thinkjepa"),
                 *small, *STEPS]) == 0
    meta = json.loads((ck / "thinkjepa" / "config.json").read_text())
    assert meta["pipeline"]["preset"] == "paper" and meta["pipeline"]["store"] == "fp16"
    c = meta["config"]
    assert (c["injection"], c["streams"], c["traj_loss"], c["latent_loss"]) == ("film", "both", "mse", "mse")
    assert c["forecast"]["frames"] == "linspace" and c["forecast"]["coords"] == "camera"
    assert c["predictor"]["context_tubelets"] == 16 and c["predictor"]["future_tubelets"] == 16
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(recordings), "--split", "test", "--checkpoints", str(ck), "--out",
                 str(out), "--quiet"]) == 0
    assert np.isfinite(json.loads(out.read_text())["models"]["thinkjepa"]["ade"])
    assert main(["train", "--preset", "paper", "--variant", "oracle", "--data", str(recordings), "--out",
                 str(ck / "o"), *STEPS]) == 2
    assert "tiny preset only" in capsys.readouterr().err
