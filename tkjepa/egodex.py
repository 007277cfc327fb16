"""Read and write episodes in EgoDex's on-disk format.

An EgoDex episode is a pair `<root>/<task>/<n>.hdf5` + `<n>.mp4` (real ones: 1920×1080, 30 Hz H.264):

    /camera/intrinsic       (3, 3) float32 pinhole intrinsics of the video
    /transforms/<joint>     (T, 4, 4) float32 SE(3) world pose; /transforms/camera is camera-to-world
    /confidences/<joint>    (T,) float32 in [0, 1] (not every joint has one; the camera has none)
    root attributes         llm_description, llm_description2, which_llm_description, task, environment
                            (real files may lack some)

Files written here add what EgoDex lacks: a root attribute `fps` and a group `/tkjepa` holding `Episode.extras` (numpy
arrays as datasets, list[str] as UTF-8 string datasets, int/float/str/bool scalars as attributes of the group). Real
EgoDex files load with `extras == {}`.

Writing is deterministic (no HDF5 timestamps, single-threaded C-only x264, bit-exact mp4 muxing), so with the same
h5py/PyAV builds the same episode gives byte-identical files; and atomic (temp file + `os.replace`), .mp4 before
.hdf5, so an interrupted run never leaves a half file under a final name. Intrinsics follow the pixel-index
convention: u = column index of a pixel's centre.
"""

from __future__ import annotations

import os
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Sequence

import av
import h5py
import numpy as np
from PIL import Image

from tkjepa.checkpoint import atomic_write
from tkjepa.episode import Episode, square_intrinsic

__all__ = ["EgoDexFormatError", "write_episode", "load_episode", "find_episodes", "summarize",
           "format_summary"]

_CRF = "14"  # near-lossless for small synthetic frames; a 64×64×64 clip stays a few KB
_STR = h5py.string_dtype("utf-8")


class EgoDexFormatError(ValueError):
    """A file that does not follow the EgoDex layout; the message names the file and the problem."""


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (bool, int, float, str, np.bool_, np.integer, np.floating))


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    rate = Fraction(fps).limit_denominator(1001)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.codec_context.thread_count = 1  # frame threading would make output depend on scheduling
        if codec == "libx264":
            # x264's SIMD paths (mbtree) read uninitialised memory: bytes changed from run to run in
            # one process. The C paths are deterministic; "veryfast" keeps a 64×64 clip at ~25 ms with
            # the same size and error as "medium" (measured on world episodes).
            s.options = {"crf": _CRF, "preset": "veryfast", "x264-params": "no-asm=1"}
        else:
            s.bit_rate = 4_000_000
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts, vf.time_base = i, 1 / rate
            c.mux(s.encode(vf))
        c.mux(s.encode())


def _write_hdf5(path: Path, ep: Episode) -> None:
    # track_order keeps joint/extras order on reading; track_times=False keeps bytes reproducible.
    with h5py.File(path, "w", track_order=True) as f:
        for k, v in ep.attrs.items():
            f.attrs[k] = v
        key = "llm_description2" if str(ep.attrs.get("which_llm_description")) == "2" else "llm_description"
        f.attrs[key] = ep.instruction
        f.attrs["task"], f.attrs["environment"], f.attrs["fps"] = ep.task, ep.environment, float(ep.fps)
        f.create_group("camera").create_dataset(
            "intrinsic", data=np.asarray(ep.intrinsic, np.float32), track_times=False)
        for group, arrays in (("transforms", ep.transforms), ("confidences", ep.confidences)):
            g = f.create_group(group, track_order=True)
            for name, arr in arrays.items():
                g.create_dataset(name, data=np.asarray(arr, np.float32), track_times=False)
        g = f.create_group("tkjepa", track_order=True)
        for k, v in ep.extras.items():
            if isinstance(v, np.ndarray) and v.dtype.kind not in "OUS":
                g.create_dataset(k, data=v, track_times=False)
            elif isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
                g.create_dataset(k, data=np.array(v, dtype=_STR), dtype=_STR, track_times=False)
            elif _is_scalar(v):
                g.attrs[k] = v
            else:
                raise TypeError(f"extras[{k!r}]: cannot store {type(v).__name__}; use a numeric numpy "
                                "array, list[str], or an int/float/str/bool scalar")


def write_episode(ep: Episode, root: str | os.PathLike, index: int) -> Path:
    """Write `ep` as `<root>/<ep.task>/<index>.hdf5` + `<index>.mp4`; returns the .hdf5 path.

    frames: [T, H, W, 3] uint8 with even H and W (yuv420p needs them).
    """
    frames = np.asarray(ep.frames)
    T = frames.shape[0]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3 or T == 0:
        raise ValueError(f"frames must be [T>0, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"H264/yuv420p needs even H and W, got {frames.shape[1:3]}")
    for name, arr in ep.transforms.items():
        if np.shape(arr) != (T, 4, 4):
            raise ValueError(f"transforms[{name!r}] has shape {np.shape(arr)}, expected ({T}, 4, 4)")
    folder = Path(root) / ep.task
    folder.mkdir(parents=True, exist_ok=True)
    h5_path, mp4_path = folder / f"{index}.hdf5", folder / f"{index}.mp4"
    # Video first: a .hdf5 under its final name then always has its .mp4 beside it.
    # the temporary names do not end in .hdf5/.mp4, so find_episodes never sees a half-written file
    atomic_write(mp4_path, lambda p: _write_mp4(p, frames, ep.fps))
    atomic_write(h5_path, lambda p: _write_hdf5(p, ep))
    return h5_path


def _open_video(h5: Path) -> tuple[Path, Any]:
    mp4 = h5.with_suffix(".mp4")
    if not mp4.exists():
        raise EgoDexFormatError(f"{h5}: missing video {mp4.name} next to it")
    try:
        c = av.open(str(mp4))
    except (av.error.FFmpegError, OSError, ValueError) as e:  # ValueError: a damaged header's metadata text
        raise EgoDexFormatError(f"{mp4}: cannot decode video (truncated or corrupt?): {e}") from e
    if not c.streams.video:
        c.close()
        raise EgoDexFormatError(f"{mp4}: has no video stream")
    return mp4, c


def _probe_video(h5: Path) -> tuple[int, int, int, float]:
    """(frames, H, W, fps) from the container header; decode-counts when the header has no count."""
    mp4, c = _open_video(h5)
    try:
        with c:
            s = c.streams.video[0]
            n = s.frames or sum(1 for _ in c.decode(s))
            return n, s.codec_context.height, s.codec_context.width, float(s.average_rate or 30.0)
    except (av.error.FFmpegError, AttributeError, ValueError) as e:  # a damaged stream's header or packets
        raise EgoDexFormatError(f"{mp4}: cannot decode video (truncated or corrupt?): {e}") from e


def _decode(h5: Path, size: int | None, needed: Sequence[int] | None = None) -> tuple[np.ndarray, int, int, float]:
    """frames [T, size, size, 3] (or native [T, H, W, 3]) uint8, native H, W, and fps. `needed`: convert only
    these indices (the others stay black, zero pages never allocated) and, when the header gives the frame
    count, decode nothing after the last: converting a 1080p frame costs ~15× decoding it."""
    mp4, c = _open_video(h5)
    want = None if needed is None else {int(i) for i in needed}
    out: list[np.ndarray | None] = []
    try:
        with c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            W, H, fps, total = s.codec_context.width, s.codec_context.height, float(s.average_rate or 30.0), s.frames
            S = min(W, H)
            x0, y0 = (W - S) // 2, (H - S) // 2
            for i, frame in enumerate(c.decode(s)):
                img = None if want is not None and i not in want else frame.to_image()
                if img is not None and size is not None and (W, H) != (size, size):
                    img = img.crop((x0, y0, x0 + S, y0 + S)).resize((size, size), Image.BILINEAR)
                out.append(None if img is None else np.asarray(img, dtype=np.uint8))
                if want is not None and total and i >= max(want, default=-1):
                    break
    except (av.error.FFmpegError, AttributeError, ValueError) as e:  # a damaged stream's header or packets
        raise EgoDexFormatError(f"{mp4}: cannot decode video (truncated or corrupt?): {e}") from e
    first = next((f for f in out if f is not None), None)
    n = total if want is not None and total and len(out) <= total else len(out)
    if first is None or (want and max(want) >= n):
        raise EgoDexFormatError(f"{mp4}: video has no decodable frames (truncated or corrupt?)" if first is None
                                else f"{mp4}: frame {max(want)} is needed but the video has {n} frames")
    frames = np.zeros((n, *first.shape), np.uint8)
    frames[[i for i, f in enumerate(out) if f is not None]] = [f for f in out if f is not None]
    return frames, H, W, fps


MAX_TRANSLATION_M = 1000.0  # a pose farther than this from the world origin is not a tracked hand or camera


def _numeric(path: Path, name: str, ds, shape_tail: tuple = (), expected: str = "") -> np.ndarray:
    """Dataset `name` as float32, checked: a dataset (not a group), numeric dtype, trailing shape `shape_tail`
    (`expected` says the whole shape in the message)."""
    if not isinstance(ds, h5py.Dataset):
        raise EgoDexFormatError(f"{path}: /{name} is not a dataset")
    if not np.issubdtype(ds.dtype, np.number):
        raise EgoDexFormatError(f"{path}: /{name} has dtype {ds.dtype}, expected numbers")
    arr = np.asarray(ds[()], np.float32)
    if shape_tail and arr.shape[-len(shape_tail):] != shape_tail or arr.ndim < len(shape_tail):
        raise EgoDexFormatError(f"{path}: /{name} has shape {arr.shape}, expected {expected or shape_tail}")
    return arr


def _check_poses(path: Path, name: str, arr: np.ndarray) -> None:
    """Finite SE(3) matrices [T, 4, 4]: last row (0, 0, 0, 1), orthonormal rotation with det +1, translation
    within `MAX_TRANSLATION_M`; the message names the first bad frame."""
    bad = ~np.isfinite(arr).all(axis=(1, 2))
    if bad.any():
        raise EgoDexFormatError(f"{path}: NaN/inf pose in /transforms/{name}, first bad frame {int(bad.argmax())}")
    R, rows = arr[:, :3, :3].astype(np.float64), arr[:, 3]
    checks = (("its last row is not (0, 0, 0, 1)", np.abs(rows - [0, 0, 0, 1]).max(-1) > 1e-3),
              ("its rotation is not orthonormal with det +1",
               (np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max((1, 2)) > 1e-2) | (np.linalg.det(R) < 0.9)),
              (f"it lies over {MAX_TRANSLATION_M:g} m from the origin",
               np.linalg.norm(arr[:, :3, 3], axis=-1) > MAX_TRANSLATION_M))
    for what, fails in checks:
        if fails.any():
            raise EgoDexFormatError(f"{path}: /transforms/{name} frame {int(fails.argmax())} is not a rigid pose: "
                                    f"{what}")


def _text(path: Path, key: str, v: Any) -> Any:
    """An attribute as a plain value; bytes that are not UTF-8 are decoded with replacement, with a warning."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            warnings.warn(f"{path}: attribute {key!r} is not valid UTF-8; undecodable bytes replaced", stacklevel=3)
            return v.decode("utf-8", errors="replace")
    return v


def _read_hdf5(path: Path, joints) -> tuple[dict, dict, np.ndarray, dict, dict]:
    """(transforms, confidences, intrinsic, root attributes, extras) of an episode file, validated: any file
    that is not a readable EgoDex episode raises EgoDexFormatError naming it and the problem."""
    if not h5py.is_hdf5(path):
        raise EgoDexFormatError(f"{path}: not an HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:  # truncated, unreadable
        raise EgoDexFormatError(f"{path}: cannot open as HDF5 (truncated or unreadable?): {e}") from None
    try:
        with f:
            return _read_groups(path, f, joints)
    except EgoDexFormatError:
        raise
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, AttributeError) as e:  # h5py on a damaged file
        raise EgoDexFormatError(f"{path}: cannot read its contents (corrupt?): {e}") from None


def _read_groups(path: Path, f, joints) -> tuple[dict, dict, np.ndarray, dict, dict]:
    for key in ("transforms", "camera/intrinsic"):
        if key not in f:
            raise EgoDexFormatError(f"{path}: missing /{key}")
    if not isinstance(f["transforms"], h5py.Group) or not len(f["transforms"]):
        raise EgoDexFormatError(f"{path}: /transforms holds no joints")
    available = list(f["transforms"])
    names = available
    if joints is not None:
        unknown = [j for j in joints if j not in available]
        if unknown:
            raise EgoDexFormatError(f"{path}: no joints {unknown}; available: {sorted(available)}")
        names = (["camera"] if "camera" in available else []) + [j for j in joints if j != "camera"]
    transforms = {n: _numeric(path, f"transforms/{n}", f["transforms"][n], (4, 4), "(T, 4, 4)") for n in names}
    T = -1
    for n, arr in transforms.items():
        if arr.ndim != 3:
            raise EgoDexFormatError(f"{path}: /transforms/{n} has shape {arr.shape}, expected (T, 4, 4)")
        if T < 0:
            T = arr.shape[0]
        elif arr.shape[0] != T:
            raise EgoDexFormatError(f"{path}: /transforms/{n} has {arr.shape[0]} frames, others have {T}")
        _check_poses(path, n, arr)
    conf = f.get("confidences", {})
    confidences = {}
    for n in (n for n in names if n in conf):
        c = _numeric(path, f"confidences/{n}", conf[n])
        if c.shape != (T,):
            raise EgoDexFormatError(f"{path}: /confidences/{n} has shape {c.shape}, expected ({T},)")
        if np.isnan(c).any():
            warnings.warn(f"{path}: /confidences/{n} has {int(np.isnan(c).sum())} NaN values, read as 0",
                          stacklevel=4)
            c = np.nan_to_num(c, nan=0.0)
        if (c < 0).any() or (c > 1).any():
            raise EgoDexFormatError(f"{path}: /confidences/{n} has values outside [0, 1] "
                                    f"({float(c.min()):g} … {float(c.max()):g})")
        confidences[n] = c
    K = _numeric(path, "camera/intrinsic", f["camera/intrinsic"])
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise EgoDexFormatError(f"{path}: /camera/intrinsic must be a finite (3, 3) matrix, got {K.shape}")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(np.linalg.det(K.astype(np.float64))) < 1e-12:
        raise EgoDexFormatError(f"{path}: /camera/intrinsic is not a camera matrix (fx = {K[0, 0]:g}, "
                                f"fy = {K[1, 1]:g}: both must be > 0, and it must be invertible)")
    attrs = {k: _text(path, k, v) for k, v in f.attrs.items()}
    extras: dict[str, Any] = {}
    if "tkjepa" in f:
        g = f["tkjepa"]
        for k, ds in g.items():
            extras[k] = ds.asstr(errors="replace")[()].tolist() if h5py.check_string_dtype(ds.dtype) \
                else np.asarray(ds[()])
        extras.update({k: _text(path, k, v) for k, v in g.attrs.items()})
    return transforms, confidences, K, attrs, extras


def load_episode(hdf5_path: str | os.PathLike, size: int | None = 64, joints: Sequence[str] | None = None,
                 load_frames: bool = True, needed: Callable[[int], Sequence[int]] | None = None) -> Episode:
    """Load one EgoDex pair into an `Episode`.

    size: centre-crop to a square and resize frames to [T, size, size, 3] (intrinsic adjusted to match);
        None keeps native [T, H, W, 3].
    joints: subset of transforms/confidences to keep ("camera" is always kept when present).
    load_frames: False skips video decoding; `frames` is then an empty (0, 0, 0, 3) uint8 array
        (intrinsic is still adjusted for `size`, from the video header).
    needed: T -> the frame indices a stage reads; only those are converted (`frames` keeps all T slots).
    """
    path = Path(hdf5_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    transforms, confidences, K, attrs, extras = _read_hdf5(path, joints)
    T = next(iter(transforms.values())).shape[0]

    try:
        fps = float(attrs.pop("fps", 0.0))
    except (TypeError, ValueError):
        raise EgoDexFormatError(f"{path}: its fps attribute is not a number") from None
    if not np.isfinite(fps) or fps < 0:
        raise EgoDexFormatError(f"{path}: its fps attribute is {fps:g}")
    if load_frames:
        frames, H, W, video_fps = _decode(path, size, None if needed is None else needed(T))
        if frames.shape[0] != T:
            raise EgoDexFormatError(f"{path}: video has {frames.shape[0]} frames but transforms have {T}")
    else:
        frames = np.zeros((0, 0, 0, 3), np.uint8)
        H = W = 0
        video_fps = 30.0
        if size is not None:
            _, H, W, video_fps = _probe_video(path)
    if size is not None and (W, H) != (size, size):
        K = square_intrinsic(K, W, H, size)

    which = attrs.get("which_llm_description")
    key = "llm_description2" if str(which) == "2" and "llm_description2" in attrs else "llm_description"
    if key not in attrs and "llm_description2" in attrs:
        key = "llm_description2"
    instruction = str(attrs.pop(key, ""))
    task = str(attrs.pop("task", "") or path.parent.name)
    environment = str(attrs.pop("environment", ""))
    return Episode(frames=frames, transforms=transforms, confidences=confidences, intrinsic=K, task=task,
                   instruction=instruction, environment=environment, fps=fps or video_fps, extras=extras,
                   attrs=attrs, path=str(path))


def find_episodes(root: str | os.PathLike) -> list[Path]:
    """All .hdf5 files under `root` (recursive), sorted by (task folder, numeric stem); or [root] itself."""
    root = Path(root)
    if root.is_file() and root.suffix == ".hdf5":
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not an .hdf5 file or a folder")

    def key(p: Path) -> tuple:
        return (str(p.parent.relative_to(root)), not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.stem)

    found = sorted(root.rglob("*.hdf5"), key=key)
    if not found:
        raise FileNotFoundError(f"{root}: no EgoDex episodes (*.hdf5) found")
    return found


def load_folder(root: str | os.PathLike, size: int | None = 64, max_episodes: int | None = None,
                check: Callable[[Episode], None] | None = None, skipped: list | None = None, strict: bool = False,
                load_frames: bool = True) -> list[Episode]:
    """The episodes of a folder (or one .hdf5 file, or a list of .hdf5 paths), in `find_episodes` order. A file that does not load, or
    that `check(episode)` refuses (raising EgoDexFormatError: too short for a stage, a joint missing), is
    skipped and recorded in `skipped` as {"path", "error"} — or, with `strict`, stops the load. Raises
    EgoDexFormatError when no episode is left."""
    paths = (list(root) if isinstance(root, (list, tuple)) else find_episodes(root))[:max_episodes]
    skipped = [] if skipped is None else skipped
    episodes = []
    for p in paths:
        try:
            ep = load_episode(p, size=size, load_frames=load_frames)
            if check is not None:
                check(ep)
        except EgoDexFormatError as e:
            if strict:
                raise
            skipped.append({"path": str(p), "error": str(e).removeprefix(f"{p}: ")})
            continue
        episodes.append(ep)
    if not episodes:
        where = os.path.commonpath([str(Path(p).parent) for p in paths]) if isinstance(root, (list, tuple)) else root
        raise EgoDexFormatError(f"{where}: none of its {len(paths)} episodes can be used (the first: "
                                f"{skipped[0]['path']}: {skipped[0]['error']})")
    return episodes


def _pose_frames(ep: Episode) -> int:
    return int(next(iter(ep.transforms.values())).shape[0])


def summarize(path: str | os.PathLike) -> dict[str, Any]:
    """Facts for `tkjepa info`, for one episode (.hdf5 path) or a folder of episodes. Decodes no video."""
    path = Path(path)
    if path.is_file():
        ep = load_episode(path, size=None, load_frames=False)
        n, H, W, _ = _probe_video(path)
        return {"kind": "episode", "path": str(path), "task": ep.task, "instruction": ep.instruction,
                "environment": ep.environment, "frames": n, "pose_frames": _pose_frames(ep), "fps": ep.fps,
                "video_size": (H, W), "joints": ep.joint_names, "extras": list(ep.extras)}
    tasks: dict[str, int] = {}
    lengths: list[int] = []
    joints: set[str] = set()
    examples: list[str] = []
    skipped: list[dict] = []
    for ep in load_folder(path, size=None, skipped=skipped, load_frames=False):
        tasks[ep.task] = tasks.get(ep.task, 0) + 1
        lengths.append(_pose_frames(ep))
        joints.update(ep.joint_names)
        if ep.instruction and ep.instruction not in examples and len(examples) < 3:
            examples.append(ep.instruction)
    return {"kind": "folder", "path": str(path), "episodes": len(lengths), "tasks": dict(sorted(tasks.items())),
            "total_frames": sum(lengths), "min_frames": min(lengths), "max_frames": max(lengths),
            "joints": sorted(joints), "example_instructions": examples, "skipped": skipped}


def format_summary(d: dict[str, Any]) -> str:
    """Human-readable text of a `summarize` result."""
    if d["kind"] == "episode":
        H, W = d["video_size"]
        lines = [f"episode      {d['path']}", f"task         {d['task']}", f"instruction  {d['instruction']}",
                 f"environment  {d['environment']}",
                 f"frames       {d['frames']} @ {d['fps']:g} fps, video {W}x{H} (pose frames {d['pose_frames']})",
                 f"joints       {len(d['joints'])}: {', '.join(d['joints'])}",
                 f"extras       {', '.join(d['extras']) or '(none: real EgoDex data)'}"]
    else:
        lines = [f"folder       {d['path']}", f"episodes     {d['episodes']}",
                 f"frames       {d['total_frames']} total, {d['min_frames']}-{d['max_frames']} per episode",
                 "tasks        " + ", ".join(f"{t} ({n})" for t, n in d["tasks"].items()),
                 f"joints       {len(d['joints'])}: {', '.join(d['joints'])}"]
        lines += [f"example      {s}" for s in d["example_instructions"]]
        lines += [f"skipped      {s['path']}: {s['error']}" for s in d.get("skipped", [])]
    return "\n".join(lines)
