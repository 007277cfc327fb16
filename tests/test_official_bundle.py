"""The official ThinkJEPA release's portable bundle (cache/*.npz + supervision_hdf5/ + manifests) read without
extracting: converted entries hold the archives' features and the targets tkjepa computes from the HDF5, the
bundle's own split is used, a damaged archive is refused with one line, and train → evaluate → attribute run
on it with no backbone loaded. The bundle is written here in the official schema (smaller widths: V-JEPA tokens
of 64, thinker states of 32; the real layout's 16 tubelets × 256 tokens and 8 hooked layers)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tkjepa import paths
from tkjepa.cli import main
from tkjepa.egodex import EgoDexFormatError, find_episodes, load_episode
from tkjepa.forecast.data import finish_tokens
from tkjepa.forecast.targets import episode_targets
from tkjepa.forecast.model import variant_config
from tkjepa.forecast.official import bundle_archives, bundle_config, bundle_entries, is_bundle
from tkjepa.forecast.store import load_all
from tkjepa.world import WorldConfig
from tkjepa.world.generate import write_dataset

LAYERS = np.array([0, 4, 8, 12, 16, 20, 24, 27], np.int32)
SMALL = ["--set", "predictor.depth=2", "--set", "predictor.dim=64", "--set", "predictor.num_heads=2",
         "--set", "forecast.pool=4", "--set", "steps=4", "--set", "batch_size=4", "--set", "warmup=1",
         "--quiet", "--threads", "2"]


def write_archive(path: Path, rel_mp4: str, T: int, rng: np.random.Generator) -> None:
    """One feature archive with the official schema's members (random features of the official layout)."""
    m = T // 2
    config = json.dumps({"schema_name": "thinkjepa.causal_split.v2", "schema_version": 2})
    fingerprint = hashlib.sha256(config.encode()).hexdigest()
    tokens = rng.integers(40, 60)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, cache_schema_name=np.array("thinkjepa.causal_split.v2"), cache_schema_version=np.array(2),
             extractor_version=np.array("2.0.5"), source_video_relpath=np.array(rel_mp4),
             source_total_frames=np.array(T), split_raw_index=np.array(m),
             vjepa_input_frame_indices=np.linspace(0, m - 1, 32, dtype=np.int64),
             vjepa_target_frame_indices=np.linspace(m, T - 1, 32, dtype=np.int64),
             vjepa_input_feats=rng.normal(size=(16, 256, 64)).astype(np.float16),
             vjepa_target_feats=rng.normal(size=(16, 256, 64)).astype(np.float16),
             layers=LAYERS, vlm_old=rng.normal(size=(8, tokens, 32)).astype(np.float16),
             vlm_new=rng.normal(size=(8, 15, 32)).astype(np.float16), token_ids=np.arange(16),
             configuration_json=np.array(config), cache_config_fingerprint=np.array(fingerprint),
             qwen_checkpoint_sha=np.array("q" * 40), vjepa_checkpoint_sha256=np.array("v" * 64))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """EgoDex-layout recordings of 90 frames (so linspace lands between frames) as a portable bundle."""
    raw = tmp_path_factory.mktemp("raw")
    write_dataset(raw, 8, seed=11, cfg=WorldConfig(layout="homes", num_frames=90, recording=(144, 256)),
                  workers=1, progress=False)
    root = tmp_path_factory.mktemp("bundle")
    rng = np.random.default_rng(0)
    groups: dict[str, list[str]] = {}
    for h5 in find_episodes(raw):
        rel = h5.relative_to(raw)
        (root / "supervision_hdf5" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(h5, root / "supervision_hdf5" / rel)  # the bundle has no video
        write_archive(root / "cache" / rel.with_suffix(".npz"), rel.with_suffix(".mp4").as_posix(), 90, rng)
        groups.setdefault(rel.parent.as_posix(), []).append(rel.with_suffix(".npz").as_posix())
    names = sorted(groups)
    manifests = root / "manifests" / "portable_v1"
    manifests.mkdir(parents=True)
    (manifests / "test_cache.txt").write_text("".join(f"{r}\n" for r in groups[names[0]]))
    (manifests / "train_cache.txt").write_text("".join(f"{r}\n" for n in names[1:] for r in groups[n]))
    return root


def paper_cfg(pool: int = 4):
    cfg = variant_config("thinkjepa", "paper").forecast
    cfg.pool = pool
    return cfg


def test_an_entry_holds_the_archive_features_and_the_hdf5_targets(bundle, tmp_path):
    assert is_bundle(bundle) and not is_bundle(bundle / "cache")
    cfg = bundle_config(paper_cfg(), bundle)
    entries, used = bundle_entries(bundle, cfg, tmp_path, progress=False)
    assert len(entries) == 8 and used == [str(p) for p in bundle_archives(bundle)]
    data, _ = load_all(entries)
    npz = np.load(used[0])
    want = finish_tokens(torch.from_numpy(npz["vjepa_input_feats"].astype(np.float32)), cfg)
    assert data.ctx.shape == (8, 16, 16, 64)   # 16 tubelets, 16 × 16 tokens pooled 4× → 16, width 64
    torch.testing.assert_close(data.ctx[0], want, rtol=0, atol=0)
    assert data.old.shape[:2] == (8, 8) and data.new.shape[1:] == (8, 15, 32)
    n_old = npz["vlm_old"].shape[1]
    assert bool(data.old_mask[0, :n_old].all()) and not bool(data.old_mask[0, n_old:].any())
    # the targets: the HDF5's joints at the archive's own frames (numpy's integer linspace, as the official
    # code samples), in the last observed camera's frame
    ep = load_episode(bundle / "supervision_hdf5" / Path(used[0]).relative_to(bundle / "cache").with_suffix(".hdf5"),
                      size=None, load_frames=False)
    obs, fut = npz["vjepa_input_frame_indices"], npz["vjepa_target_frame_indices"]
    assert obs[1] == 1 and obs[-1] == 44 and fut[1] == 46 and fut[-1] == 89   # linspace(0, 44, 32) truncated
    row = episode_targets(ep, cfg, obs, fut, 45)
    torch.testing.assert_close(data.traj[0], row["traj"])
    cam = data.camera[0].double()
    world = data.traj[0].double() @ cam[:3, :3].T + cam[:3, 3]
    np.testing.assert_allclose(world.numpy(), ep.positions(cfg.joints)[fut], atol=1e-5)


def test_the_bundle_split_is_its_manifests(bundle, tmp_path):
    cfg = bundle_config(paper_cfg(), bundle)
    test = bundle_entries(bundle, cfg, tmp_path, split="test", progress=False)[1]
    train = bundle_entries(bundle, cfg, tmp_path, split="train", progress=False)[1]
    assert len(test) + len(train) == 8 and not set(test) & set(train)
    assert {Path(p).parent.name for p in test}.isdisjoint({Path(p).parent.name for p in train})


def test_a_damaged_archive_is_refused_with_one_line(bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    archives = bundle_archives(bad)
    a = dict(np.load(archives[0]))
    a["vjepa_input_frame_indices"] = a["vjepa_input_frame_indices"] + 1
    np.savez(archives[0], **a)
    b = dict(np.load(archives[1]))
    b["vjepa_target_feats"][3, 5, 7] = np.nan
    np.savez(archives[1], **b)
    archives[2].write_bytes(b"not a zip")
    (bad / "supervision_hdf5" / archives[3].relative_to(bad / "cache").with_suffix(".hdf5")).unlink()
    c = dict(np.load(archives[4]))
    del c["vlm_new"]
    np.savez(archives[4], **c)
    skipped: list[dict] = []
    entries, _ = bundle_entries(bad, bundle_config(paper_cfg(), bad), tmp_path / "store", skipped=skipped,
                                progress=False)
    errors = {Path(s["path"]).name: s["error"] for s in skipped}
    assert len(entries) == 3 and len(errors) == 5
    assert "are not the split the config asks for" in errors[archives[0].name]
    assert errors[archives[1].name] == "non-finite values in vjepa_target_feats"
    assert errors[archives[2].name].startswith("cannot read as .npz")
    assert errors[archives[3].name].startswith("no supervision ")
    assert errors[archives[4].name] == "not a thinkjepa.causal_split.v2 archive: no vlm_new"
    with pytest.raises(EgoDexFormatError, match="are not the split"):
        bundle_entries(bad, bundle_config(paper_cfg(), bad), tmp_path / "store", strict=True, progress=False)


def test_the_tiny_geometry_is_refused(bundle, capsys):
    assert main(["extract", "--data", str(bundle), "--quiet"]) == 2
    assert "use it with --preset paper" in capsys.readouterr().err


def test_train_evaluate_attribute_on_a_bundle(bundle, tmp_path, capsys, monkeypatch):
    """No --encoder/--thinker and nothing downloaded: the bundle's features are all training reads."""
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    ck = tmp_path / "ck"
    assert main(["train", "--preset", "paper", "--data", str(bundle), "--split", "train",
                 "--out", str(ck / "thinkjepa"), *SMALL]) == 0
    pipe = json.loads((ck / "thinkjepa" / "config.json").read_text())["pipeline"]
    assert pipe["features"]["vjepa_checkpoint_sha256"] == "v" * 64 and pipe["encoder_digest"] is None
    assert pipe["encoder"] == "facebook/vjepa2-vitl-fpc64-256"
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(bundle), "--split", "test", "--checkpoints", str(ck), "--out", str(out),
                 "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["test"]["episodes"] == len((bundle / "manifests/portable_v1/test_cache.txt").read_text().split())
    assert np.isfinite(result["models"]["thinkjepa"]["ade"])
    att = tmp_path / "a.json"
    assert main(["attribute", "--data", str(bundle), "--split", "test", "--checkpoint", str(ck / "thinkjepa"),
                 "--out", str(att), "--quiet"]) == 0
    assert len(json.loads(att.read_text())["attribution"]) == 8   # one per hooked layer
    capsys.readouterr()
    assert main(["train", "--preset", "paper", "--data", str(bundle), "--encoder", str(paths.ENCODER),
                 "--out", str(tmp_path / "x"), *SMALL]) == 2
    assert "--encoder/--thinker do not apply" in capsys.readouterr().err
