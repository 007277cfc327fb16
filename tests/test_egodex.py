"""EgoDex reader/writer: round trips, determinism, resizing geometry and malformed-file errors."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from tkjepa.egodex import (EgoDexFormatError, find_episodes, format_summary, load_episode, summarize,
                           write_episode)
from tkjepa.episode import Episode

JOINTS = ("rightHand", "rightIndexFingerTip", "leftHand")


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation [3, 3]."""
    a = axis / np.linalg.norm(axis)
    A = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * A + (1 - np.cos(angle)) * A @ A


def _poses(rng: np.random.Generator, T: int, centre: np.ndarray) -> np.ndarray:
    """Smooth SE(3) trajectory [T, 4, 4] float32 around `centre`."""
    axis, w = rng.normal(size=3), rng.uniform(0.01, 0.05)
    out = np.tile(np.eye(4), (T, 1, 1))
    for t in range(T):
        out[t, :3, :3] = _rot(axis, w * t)
        out[t, :3, 3] = centre + 0.05 * np.array([np.sin(0.1 * t), np.cos(0.07 * t), 0.0])
    return out.astype(np.float32)


def _frames(rng: np.random.Generator, T: int, H: int, W: int) -> np.ndarray:
    """Smooth colour blocks [T, H, W, 3] uint8: a bilinearly upsampled 4×4 colour grid drifting sideways."""
    grid = rng.integers(30, 225, size=(4, 4, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(grid).resize((2 * W, H), Image.BILINEAR))
    return np.stack([big[:, t % W: t % W + W] for t in range(T)])


def make_episode(seed: int = 0, T: int = 64, H: int = 64, W: int = 64, task: str = "pick_place") -> Episode:
    rng = np.random.default_rng(seed)
    transforms = {"camera": _poses(rng, T, np.array([0.0, 0.0, -0.6]))}
    transforms.update({j: _poses(rng, T, rng.normal(scale=0.1, size=3)) for j in JOINTS})
    confidences = {j: rng.uniform(0, 1, T).astype(np.float32) for j in JOINTS[:2]}
    K = np.array([[60.0, 0, W / 2 - 0.5], [0, 60.0, H / 2 - 0.5], [0, 0, 1]], np.float32)
    extras = {"actions": rng.normal(size=(T, 4)).astype(np.float32),
              "object_positions": rng.normal(size=(T, 2, 3)),
              "object_names": ["red cube", "tasse à café"], "subgoal_frames": np.array([10, 40], np.int64),
              "seed": seed, "scale": 0.25, "note": "synthetic", "flag": True}
    return Episode(frames=_frames(rng, T, H, W), transforms=transforms, confidences=confidences, intrinsic=K,
                   task=task, instruction=f"put the cube in the bowl ({seed})", environment="kitchen table",
                   fps=30.0, extras=extras, attrs={"llm_description2": "move the cube", "which_llm_description": 1})


def test_round_trip(tmp_path: Path) -> None:
    ep = make_episode()
    h5 = write_episode(ep, tmp_path, 3)
    assert h5 == tmp_path / "pick_place" / "3.hdf5" and h5.with_suffix(".mp4").exists()
    assert sorted(p.name for p in h5.parent.iterdir()) == ["3.hdf5", "3.mp4"]  # no temp leftovers
    got = load_episode(h5, size=None)
    assert got.path == str(h5) and got.num_frames == 64 and got.frames.dtype == np.uint8
    assert list(got.transforms) == list(ep.transforms)
    for k, v in ep.transforms.items():
        assert got.transforms[k].dtype == np.float32 and np.array_equal(got.transforms[k], v)
    assert set(got.confidences) == set(ep.confidences)
    for k, v in ep.confidences.items():
        assert np.array_equal(got.confidences[k], v)
    assert np.array_equal(got.intrinsic, ep.intrinsic)
    assert (got.task, got.instruction, got.environment, got.fps) == (ep.task, ep.instruction, ep.environment, 30.0)
    assert got.attrs == ep.attrs
    err = np.abs(got.frames.astype(np.int16) - ep.frames.astype(np.int16)).mean()
    assert got.frames.shape == ep.frames.shape and err < 3.0, err
    # size=64 on a 64×64 video is a no-op, intrinsics included.
    same = load_episode(h5)
    assert np.array_equal(same.frames, got.frames) and np.array_equal(same.intrinsic, ep.intrinsic)


def test_extras_types(tmp_path: Path) -> None:
    ep = make_episode()
    got = load_episode(write_episode(ep, tmp_path, 0), load_frames=False)
    assert list(got.extras) == list(ep.extras)
    for k, v in ep.extras.items():
        g = got.extras[k]
        assert type(g) is type(v), k
        if isinstance(v, np.ndarray):
            assert g.dtype == v.dtype and np.array_equal(g, v)
        else:
            assert g == v
    assert got.extras["object_names"] == ["red cube", "tasse à café"]
    with pytest.raises(TypeError, match="extras\\['bad'\\]"):
        write_episode(Episode(**{**ep.__dict__, "extras": {"bad": [1, 2]}}), tmp_path, 1)


def test_rewrite_is_byte_identical(tmp_path: Path) -> None:
    ep = make_episode(T=16)
    a = write_episode(ep, tmp_path / "a", 0)
    first = {s: a.with_suffix(s).read_bytes() for s in (".hdf5", ".mp4")}
    time.sleep(1.1)  # HDF5/mp4 timestamps have one-second resolution
    b = write_episode(ep, tmp_path / "b", 0)
    write_episode(ep, tmp_path / "a", 0)  # overwrite in place
    for s, data in first.items():
        assert b.with_suffix(s).read_bytes() == data, s
        assert a.with_suffix(s).read_bytes() == data, s
    sizes = {s: len(d) for s, d in first.items()}
    assert sizes[".mp4"] < 40_000 and sizes[".hdf5"] < 60_000, sizes


def _blob_centroid(img: np.ndarray, u: float, v: float, r: int = 4) -> np.ndarray:
    """Brightness-weighted centroid (u, v) of the blob near (u, v) in a grey image [H, W]."""
    y0, x0 = int(round(v)) - r, int(round(u)) - r
    win = img[y0: y0 + 2 * r + 1, x0: x0 + 2 * r + 1].astype(np.float64)
    w = np.clip(win - np.median(img), 0, None)
    ys, xs = np.mgrid[y0: y0 + win.shape[0], x0: x0 + win.shape[1]]
    return np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


def test_resize_keeps_projection_on_the_pixels(tmp_path: Path) -> None:
    """A 48×80 video with white dots where two joints project; after crop+resize to 32² they still do."""
    T, H, W = 4, 48, 80
    K = np.array([[40.0, 0, 40.0], [0, 40.0, 24.0], [0, 0, 1]], np.float32)
    targets = {"rightHand": (50, 20), "rightIndexFingerTip": (30, 30)}  # exact integer pixels (u, v)
    frames = np.full((T, H, W, 3), 20, np.uint8)
    transforms = {"camera": np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))}
    for name, (u, v) in targets.items():
        frames[:, v - 2: v + 3, u - 2: u + 3] = 235
        pose = np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))
        pose[:, :3, 3] = [(u - 40.0) / 40.0 * 2.0, (v - 24.0) / 40.0 * 2.0, 2.0]  # depth 2 m
        transforms[name] = pose
    ep = Episode(frames=frames, transforms=transforms, confidences={}, intrinsic=K, task="dots", instruction="")
    h5 = write_episode(ep, tmp_path, 0)
    assert np.allclose(load_episode(h5, size=None).project(), [[[50, 20], [30, 30]]] * T, atol=1e-4)
    got = load_episode(h5, size=32)
    assert got.frames.shape == (T, 32, 32, 3)
    s = 32 / 48  # crop 48×48 starting at x=16, then scale
    assert np.allclose(got.intrinsic, [[40 * s, 0, (24 + 0.5) * s - 0.5], [0, 40 * s, (24 + 0.5) * s - 0.5],
                                       [0, 0, 1]], atol=1e-5)
    uv = got.project(list(targets))[0]
    grey = got.frames[0].mean(axis=2)
    for j, name in enumerate(targets):
        c = _blob_centroid(grey, *uv[j])
        # Measured ~0.02 px; ignoring the half-pixel shift of the resize would be off by 0.17 px.
        assert np.linalg.norm(c - uv[j]) < 0.08, (name, c, uv[j])
    meta = load_episode(h5, size=32, load_frames=False)  # no decoding, same geometry
    assert meta.frames.shape == (0, 0, 0, 3) and np.array_equal(meta.intrinsic, got.intrinsic)


def test_joint_subset_and_unknown_joint(tmp_path: Path) -> None:
    h5 = write_episode(make_episode(T=8), tmp_path, 0)
    got = load_episode(h5, joints=["rightIndexFingerTip"], load_frames=False)
    assert list(got.transforms) == ["camera", "rightIndexFingerTip"]
    assert list(got.confidences) == ["rightIndexFingerTip"] and got.joint_names == ["rightIndexFingerTip"]
    with pytest.raises(EgoDexFormatError, match="leftPinky.*available.*leftHand"):
        load_episode(h5, joints=["leftPinky"])


def test_real_egodex_layout(tmp_path: Path) -> None:
    """A file without our extras/fps and with which_llm_description=2 loads like real EgoDex data."""
    h5 = write_episode(make_episode(T=8), tmp_path, 0)
    with h5py.File(h5, "r+") as f:
        del f["tkjepa"], f.attrs["fps"], f.attrs["task"]
        f.attrs["which_llm_description"] = 2
    got = load_episode(h5, load_frames=False)
    assert got.extras == {} and got.task == "pick_place" and got.instruction == "move the cube"
    assert got.fps == 30.0 and got.attrs["llm_description"] == "put the cube in the bowl (0)"


def _break(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """Write a good episode, break it in one way; returns (path to load, expected message fragment)."""
    h5 = write_episode(make_episode(T=8), tmp_path, 0)
    mp4 = h5.with_suffix(".mp4")
    if kind == "not_hdf5":
        h5.write_bytes(b"this is not an HDF5 file\n" * 10)
        return h5, "not an HDF5 file"
    if kind == "no_mp4":
        mp4.unlink()
        return h5, "missing video 0.mp4"
    if kind == "truncated_mp4":
        data = mp4.read_bytes()
        mp4.write_bytes(data[: len(data) // 2])
        return h5, "cannot decode video"
    if kind == "frame_count":
        other = write_episode(make_episode(T=6), tmp_path, 1)
        shutil.copy(other.with_suffix(".mp4"), mp4)
        return h5, "video has 6 frames but transforms have 8"
    with h5py.File(h5, "r+") as f:
        if kind == "no_transforms":
            del f["transforms"]
            return h5, "missing /transforms"
        if kind == "no_intrinsic":
            del f["camera/intrinsic"]
            return h5, "missing /camera/intrinsic"
        if kind == "nan_pose":
            f["transforms/rightHand"][5, 0, 3] = np.nan
            return h5, "NaN/inf pose in /transforms/rightHand, first bad frame 5"
        if kind == "bad_shape":
            del f["transforms/leftHand"]
            f["transforms"].create_dataset("leftHand", data=np.zeros((8, 3, 4), np.float32))
            return h5, "/transforms/leftHand has shape (8, 3, 4), expected (T, 4, 4)"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["not_hdf5", "no_mp4", "truncated_mp4", "frame_count", "no_transforms",
                                  "no_intrinsic", "nan_pose", "bad_shape"])
def test_malformed_files_raise_clear_errors(kind: str, tmp_path: Path) -> None:
    path, fragment = _break(kind, tmp_path)
    with pytest.raises(EgoDexFormatError) as info:
        load_episode(path)
    msg = str(info.value)
    assert fragment in msg, msg
    assert "0.hdf5" in msg or "0.mp4" in msg, msg


def test_find_episodes_order(tmp_path: Path) -> None:
    for task, stems in {"b_task": ["2"], "a_task": ["10", "2", "1"]}.items():
        (tmp_path / task).mkdir()
        for s in stems:
            (tmp_path / task / f"{s}.hdf5").touch()
    (tmp_path / "a_task" / ".3.hdf5.partial").touch()  # an interrupted write is not an episode
    found = find_episodes(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a_task/1.hdf5", "a_task/2.hdf5", "a_task/10.hdf5", "b_task/2.hdf5"]
    assert find_episodes(found[0]) == [found[0]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no EgoDex episodes"):
        find_episodes(tmp_path / "empty")


def test_summarize(tmp_path: Path) -> None:
    for i, (task, T) in enumerate([("pick_place", 8), ("pick_place", 12), ("stack", 6)]):
        write_episode(make_episode(seed=i, T=T, task=task), tmp_path, i)
    d = summarize(tmp_path)
    assert d["episodes"] == 3 and d["tasks"] == {"pick_place": 2, "stack": 1}
    assert (d["total_frames"], d["min_frames"], d["max_frames"]) == (26, 6, 12)
    assert d["joints"] == sorted(JOINTS)
    assert d["example_instructions"] == [f"put the cube in the bowl ({i})" for i in range(3)]
    text = format_summary(d)
    assert "episodes     3" in text and "pick_place (2), stack (1)" in text
    one = summarize(tmp_path / "pick_place" / "1.hdf5")
    assert (one["task"], one["frames"], one["pose_frames"], one["video_size"], one["fps"]) == (
        "pick_place", 12, 12, (64, 64), 30.0)
    assert one["joints"] == list(JOINTS) and "object_names" in one["extras"]
    assert "64x64" in format_summary(one)


def test_only_the_needed_frames_are_converted(tmp_path):
    """`needed` converts the sampled frames only (the same pixels as a full decode), leaves the rest black and
    keeps every slot, so indices mean what they mean in the file."""
    from tkjepa.forecast.data import ForecastConfig, frames_needed
    from tkjepa.world import WorldConfig
    from tkjepa.world.generate import write_dataset

    write_dataset(tmp_path, 1, seed=2, cfg=WorldConfig(num_frames=90, recording=(72, 128)), workers=1, progress=False)
    h5 = find_episodes(tmp_path)[0]
    full = load_episode(h5, size=64)
    part = load_episode(h5, size=64, needed=frames_needed(ForecastConfig()))
    idx = frames_needed(ForecastConfig())(90)
    assert part.frames.shape == full.frames.shape == (90, 64, 64, 3)
    np.testing.assert_array_equal(part.frames[idx], full.frames[idx])
    rest = np.setdiff1d(np.arange(90), idx)
    assert len(rest) > 40 and not part.frames[rest].any() and full.frames[rest].any()
