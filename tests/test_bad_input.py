"""Bad input at the command layer: a folder of good episodes and damaged ones of every kind is scored with
the damaged ones listed under "skipped"; each damaged file alone gets one line naming it and exit status 2;
a folder with nothing usable fails the same way; --strict stops at the first bad episode."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tkjepa import paths
from tkjepa.cli import COMMANDS, main
from tkjepa.egodex import write_episode
from tkjepa.world import WorldConfig, generate_episode


def _h5(f, edit):
    with h5py.File(f, "r+") as h:
        edit(h)


def _set(name, index, value):
    return lambda h: h[name].__setitem__(index, value)


def _retype(name):
    def edit(h):
        n = len(h[name])
        del h[name]
        h.create_dataset(name, data=np.array(["x"] * n, dtype=h5py.string_dtype()))
    return edit


DAMAGE = {  # name -> how the copy of a good episode is damaged, and a fragment of the message it gets
    "not_hdf5": (lambda h5: h5.write_bytes(b"this is not an episode" * 40), "not an HDF5 file"),
    "truncated_hdf5": (lambda h5: h5.write_bytes(h5.read_bytes()[:len(h5.read_bytes()) // 3]), "cannot"),
    "truncated_mp4": (lambda h5: h5.with_suffix(".mp4").write_bytes(h5.with_suffix(".mp4").read_bytes()[:900]),
                      "video"),
    "missing_mp4": (lambda h5: h5.with_suffix(".mp4").unlink(), "missing video"),
    "nan_pose": (lambda h5: _h5(h5, _set("transforms/rightHand", (3, 0, 3), np.nan)), "NaN/inf pose"),
    "not_rigid": (lambda h5: _h5(h5, _set("transforms/rightHand", (3, 0, 0), 3.0)), "not a rigid pose"),
    "bad_intrinsic": (lambda h5: _h5(h5, _set("camera/intrinsic", (0, 0), -1.0)), "fx = -1"),
    "text_dtype": (lambda h5: _h5(h5, _retype("transforms/rightThumbTip")), "expected numbers"),
    "confidence_range": (lambda h5: _h5(h5, _set("confidences/rightHand", 5, 7.0)), "outside [0, 1]"),
    "no_forecast_joint": (lambda h5: _h5(h5, lambda h: h.__delitem__("transforms/rightIndexFingerTip")),
                          "forecast joints"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, dict]:
    """4 good sample episodes + one damaged copy per kind of damage + an episode too short for the sampler."""
    root = tmp_path_factory.mktemp("mixed")
    good = sorted((paths.EPISODES / "pick_place").glob("*.hdf5"))[:4]
    for i, h5 in enumerate(good):
        for suffix in (".hdf5", ".mp4"):
            (root / "good").mkdir(exist_ok=True)
            shutil.copy(h5.with_suffix(suffix), root / "good" / f"{i}{suffix}")
    bad = {}
    for k, (name, (damage, message)) in enumerate(DAMAGE.items()):
        (root / "bad").mkdir(exist_ok=True)
        h5 = root / "bad" / f"{k}.hdf5"
        shutil.copy(good[0], h5)
        shutil.copy(good[0].with_suffix(".mp4"), h5.with_suffix(".mp4"))
        damage(h5)
        bad[str(h5)] = (name, message)
    ep = generate_episode(7, WorldConfig(num_frames=32))
    cut = lambda d: {k: v[:12] for k, v in d.items()}  # noqa: E731  (12 frames: fewer than the sampler needs)
    short = write_episode(replace(ep, frames=ep.frames[:12], transforms=cut(ep.transforms),
                                  confidences=cut(ep.confidences), extras={}), root / "short", 0)
    bad[str(short)] = ("too_short", "too few")
    return root, bad


def test_evaluate_scores_the_good_and_lists_the_bad(folder, tmp_path, capsys):
    root, bad = folder
    out = tmp_path / "results.json"
    assert main(["evaluate", "--data", str(root), "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["test"]["episodes"] == 4
    skipped = {row["path"]: row["error"] for row in result["skipped"]}
    assert set(skipped) == set(bad)
    for path, (name, message) in bad.items():
        assert message in skipped[path], (name, skipped[path])
    captured = capsys.readouterr()
    assert f"4 episodes scored, {len(bad)} skipped" in captured.out
    assert sum(line.startswith("skipped ") for line in captured.err.splitlines()) == len(bad)
    assert np.isfinite(result["models"]["thinkjepa"]["ade"])


def test_each_damaged_file_gets_one_line_and_exit_2(folder, capsys):
    _, bad = folder
    for path, (name, message) in bad.items():
        if name in ("too_short", "no_forecast_joint"):  # valid episodes: only a forecasting stage refuses them
            continue
        assert main(["info", path]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"tkjepa info: {path.removesuffix('.hdf5')}") and message in err[0], (name, err)


def test_strict_stops_and_nothing_usable_fails(folder, tmp_path, capsys):
    root, bad = folder
    assert main(["evaluate", "--data", str(root), "--strict", "--quiet", "--out", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("tkjepa evaluate: ")
    assert not (tmp_path / "r.json").exists()
    assert main(["evaluate", "--data", str(root / "bad"), "--quiet", "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tkjepa evaluate: ") and "none of its" in err


def test_extract_caches_the_good_and_a_later_command_does_not_decode_again(folder, tmp_path, capsys, monkeypatch):
    import os

    import tkjepa.forecast.store as store

    root, bad = folder
    work = tmp_path / "copy"
    shutil.copytree(root, work)  # its own files: fresh identities, so the first extract is a miss
    assert main(["extract", "--data", str(work), "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 4 and len(result["skipped"]) == len(bad)
    assert result["tensors"]["ctx"].startswith("4 x ")
    loads = []
    real = store.load_episode
    monkeypatch.setattr(store, "load_episode", lambda p, **k: loads.append(Path(p)) or real(p, **k))
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(work), "--out", str(out), "--quiet"]) == 0
    assert loads == [] and len(json.loads(out.read_text())["skipped"]) == len(bad)  # from the store, bad ones too
    good = sorted((work / "good").glob("*.hdf5"))[0]
    os.utime(good, ns=(good.stat().st_atime_ns, good.stat().st_mtime_ns + 10**9))  # an edited episode: a miss
    assert main(["evaluate", "--data", str(work), "--out", str(out), "--quiet"]) == 0
    assert loads == [good]  # only that one is decoded again


def test_an_interrupted_extraction_resumes_with_whole_entries(folder, tmp_path, monkeypatch):
    """Killed after its first batch, a rerun computes only what is missing and ends as an uninterrupted run."""
    import tkjepa.forecast.store as store
    from tkjepa.backbones import load_backbones
    from tkjepa.forecast.data import ForecastConfig

    root, _ = folder
    backbones = load_backbones(paths.ENCODER, paths.THINKER)
    cfg = ForecastConfig()
    whole, _ = store.extract_folder(root / "good", backbones, cfg, tmp_path / "a", progress=False)
    calls = []
    real = store.episode_arrays

    def dies_on_the_third(ep, *a):
        calls.append(ep.path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(ep, *a)

    monkeypatch.setattr(store, "episode_arrays", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        store.extract_folder(root / "good", backbones, cfg, tmp_path / "b", progress=False, batch_size=2)
    assert len(list((tmp_path / "b" / "episodes").glob("*.safetensors"))) == 2  # the first batch, whole
    calls.clear()
    monkeypatch.setattr(store, "episode_arrays", lambda ep, *a: calls.append(ep.path) or real(ep, *a))
    resumed, _ = store.extract_folder(root / "good", backbones, cfg, tmp_path / "b", progress=False, batch_size=2)
    assert len(calls) == 2  # only the missing half
    a, b = store.load_all(whole)[0], store.load_all(resumed)[0]
    for k, v in a.tensors().items():
        assert torch.equal(v, b.tensors()[k]), k


def test_a_bug_keeps_its_traceback(monkeypatch):
    import tkjepa.cli.data as data_cli

    monkeypatch.setattr(data_cli, "summarize", lambda path: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["info", str(paths.EPISODES)])


def test_debug_shows_the_traceback_of_an_input_error(monkeypatch):
    from tkjepa.egodex import EgoDexFormatError

    monkeypatch.setenv("TKJEPA_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["info", "/nowhere.hdf5"])
    assert issubclass(EgoDexFormatError, ValueError)


def _tensors(path):
    from safetensors.torch import load_file, save_file
    return load_file(str(path)), lambda t: save_file(t, str(path))


def _drop(path):
    t, save = _tensors(path)
    save({k: v for k, v in list(t.items())[1:]})


def _extra(path):
    import torch

    t, save = _tensors(path)
    save({**t, "surplus.weight": torch.zeros(2)})


def _reshape(path):
    t, save = _tensors(path)
    k = next(k for k, v in t.items() if v.ndim == 2)
    save({**t, k: t[k][:, :1].contiguous()})


def _old_format(folder):
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "format": 1}))


def _unknown_field(folder):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["config"]["action_conditioned"] = False
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("damage, file, message", [
    (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64), "model.safetensors", "not a readable safetensors"),
    (lambda d: _drop(d / "model.safetensors"), "model.safetensors", "missing tensors"),
    (lambda d: _extra(d / "model.safetensors"), "model.safetensors", "unexpected tensors surplus.weight"),
    (lambda d: _reshape(d / "model.safetensors"), "model.safetensors", "wrong shapes"),
    (_old_format, "config.json", "format 1"),
    (_unknown_field, "config.json", "action_conditioned"),
])
def test_a_broken_checkpoint_gets_one_line_naming_the_file(tmp_path, capsys, damage, file, message):
    folder = tmp_path / "ckpts" / "jepa_only"
    shutil.copytree(paths.FORECASTERS / "jepa_only", folder)
    damage(folder)
    assert main(["evaluate", "--data", str(paths.EPISODES), "--checkpoints", str(folder.parent), "--episodes", "2",
                 "--quiet", "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"tkjepa evaluate: {folder / file}") and message in err, err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_prints_its_help(command, capsys):
    """argparse formats help strings with %: a literal one in a help text breaks `--help` alone."""
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tkjepa {command}") and "options:" in out
