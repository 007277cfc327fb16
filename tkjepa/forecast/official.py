"""The official ThinkJEPA release's cache, read as tkjepa store entries: train and score without extracting.

The official code (`Hai-chao-Zhang/ThinkJEPA`) ships its preprocessed EgoDex features as a *portable bundle*:

    BUNDLE/cache/<task>/<n>.npz              one feature archive per episode (schema "thinkjepa.causal_split.v2")
    BUNDLE/supervision_hdf5/<task>/<n>.hdf5  the episode's EgoDex HDF5 (poses, camera), copied unchanged
    BUNDLE/manifests/portable_v1/            train_cache.txt / test_cache.txt (its group-disjoint split), meta.json

An archive holds V-JEPA 2 ViT-L tokens of the observed and the target clip (`vjepa_input_feats`,
`vjepa_target_feats`: [16 tubelets, 256 tokens, 1024] fp16, from separate forwards), the exact raw frame indices
of both (`vjepa_input_frame_indices`, `vjepa_target_frame_indices`: 32 + 32, linspace over [0, T/2) and
[T/2, T)), Qwen3-VL-2B-Thinking's hooked layers (`layers`: 0, 4, …, 24, 27) for the prompt + visual tokens
(`vlm_old` [L, N_old, 2048]) and the generated tokens (`vlm_new` [L, N_new, 2048]), and provenance scalars.
Supervision is deliberately *not* in the archive: it is read from the bundle's HDF5 at the archive's frames.

`bundle_entries` turns each archive + HDF5 pair into one `forecast.store` entry, exactly the tensors
`tkjepa extract` writes (tokens pooled and layer-normed by `data.finish_tokens`, targets by
`targets.episode_targets`), so `train`, `evaluate` and `attribute` read a bundle as they read any folder. An
archive that breaks the schema — another layout, frames that are not the split the ForecastConfig asks for,
non-finite features, a missing HDF5 — is refused with one line, like a damaged EgoDex file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from tkjepa.egodex import EgoDexFormatError, load_episode
from tkjepa.forecast.data import ForecastConfig, episode_check, episode_frames, file_identity, finish_tokens
from tkjepa.forecast.targets import episode_targets

SCHEMA = "thinkjepa.causal_split.v2"
MANIFESTS = Path("manifests") / "portable_v1"
VERSION = 1  # bump when the conversion changes: entries made by an older one are then misses
REQUIRED = ("vjepa_input_feats", "vjepa_target_feats", "vjepa_input_frame_indices", "vjepa_target_frame_indices",
            "vlm_old", "vlm_new", "layers", "source_video_relpath", "source_total_frames")


def is_bundle(folder) -> bool:
    """Whether `folder` is an official portable bundle (a `cache/` of .npz archives beside `supervision_hdf5/`)."""
    root = Path(folder)
    return (root / "cache").is_dir() and (root / "supervision_hdf5").is_dir()


def _manifest(root: Path, name: str) -> list[Path]:
    path = root / MANIFESTS / name
    if not path.exists():
        raise EgoDexFormatError(f"{root}: no {MANIFESTS / name}, which --split needs (the bundle's own split)")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rel = Path(line)
        if rel.is_absolute() or ".." in rel.parts or rel.suffix != ".npz":
            raise EgoDexFormatError(f"{path}: {line!r} is not a relative .npz path inside the bundle's cache")
        out.append(root / "cache" / rel)
    return out


def bundle_archives(folder, split: str | None = None) -> list[Path]:
    """The bundle's archives (sorted), or the `split` side ("train" / "test") its manifests name."""
    root = Path(folder)
    if split in (None, "all"):
        return sorted((root / "cache").rglob("*.npz"))
    if split not in ("train", "test"):
        raise ValueError(f"split must be all, train or test, got {split!r}")
    return _manifest(root, f"{split}_cache.txt")


def _scalar(archive, key: str):
    v = np.asarray(archive[key]).reshape(-1)
    if v.size != 1:
        raise ValueError(f"{key} is not a scalar ({v.size} values)")
    item = v[0].item() if hasattr(v[0], "item") else v[0]
    return item.decode() if isinstance(item, bytes) else item


def provenance(npz: Path) -> dict:
    """The archive's model and configuration identities (what a checkpoint trained on it records)."""
    with np.load(npz, allow_pickle=False) as a:
        get = lambda k: str(_scalar(a, k)) if k in a.files else ""  # noqa: E731
        return {"schema": get("cache_schema_name"), "configuration": get("cache_config_fingerprint"),
                "vjepa_checkpoint_sha256": get("vjepa_checkpoint_sha256"), "qwen_checkpoint_sha": get("qwen_checkpoint_sha")}


def bundle_config(cfg: ForecastConfig, folder) -> ForecastConfig:
    """`cfg` with the token grid of the bundle's archives (16 × 16 for ViT-L at 256 px), checked against the
    archives' layout: 32 observed + 32 target frames as linspace, so `cfg` must be the paper preset's geometry
    (`model.paper_forecast`, any pool that divides the grid, any joints); EgoDexFormatError otherwise."""
    archives = bundle_archives(folder)
    if not archives:
        raise EgoDexFormatError(f"{folder}: its cache/ holds no .npz archive")
    with np.load(archives[0], allow_pickle=False) as a:
        if "vjepa_input_feats" not in a.files:
            raise EgoDexFormatError(f"{archives[0]}: no vjepa_input_feats: not a {SCHEMA} archive")
        t, n, _ = a["vjepa_input_feats"].shape
    grid = int(round(n ** 0.5))
    if grid * grid != n or grid % cfg.pool:
        raise EgoDexFormatError(f"{folder}: its {n} tokens per tubelet are not a square grid that pool={cfg.pool} "
                                f"divides")
    if cfg.frames != "linspace" or cfg.context_tubelets != t or cfg.future_tubelets != t or cfg.coords != "camera":
        raise EgoDexFormatError(f"{folder}: an official bundle holds {2 * t} observed + {2 * t} target frames spread "
                                f"over the two halves of each episode, supervised in the camera frame: use it with "
                                f"--preset paper")
    return replace(cfg, grid=grid)


def _check_archive(a, npz: Path, cfg: ForecastConfig) -> tuple[int, np.ndarray, np.ndarray]:
    missing = [k for k in REQUIRED if k not in a.files]
    if missing:
        raise EgoDexFormatError(f"{npz}: not a {SCHEMA} archive: no {', '.join(missing)}")
    if "cache_schema_name" in a.files and str(_scalar(a, "cache_schema_name")) != SCHEMA:
        raise EgoDexFormatError(f"{npz}: schema {_scalar(a, 'cache_schema_name')!r}, this reader reads {SCHEMA!r}")
    T = int(_scalar(a, "source_total_frames"))
    obs = np.asarray(a["vjepa_input_frame_indices"], np.int64).reshape(-1)
    fut = np.asarray(a["vjepa_target_frame_indices"], np.int64).reshape(-1)
    try:
        want_obs, want_fut, _ = episode_frames(T, cfg)
    except ValueError as e:
        raise EgoDexFormatError(f"{npz}: {e}") from None
    if not (np.array_equal(obs, want_obs) and np.array_equal(fut, want_fut)):
        raise EgoDexFormatError(f"{npz}: its frames {obs[:3].tolist()}… / {fut[:3].tolist()}… are not the split "
                                f"the config asks for ({want_obs[:3].tolist()}… / {want_fut[:3].tolist()}…)")
    shapes = {k: a[k].shape for k in ("vjepa_input_feats", "vjepa_target_feats", "vlm_old", "vlm_new")}
    t, n = cfg.context_tubelets, cfg.grid ** 2
    if shapes["vjepa_input_feats"][:2] != (t, n) or shapes["vjepa_target_feats"][:2] != (cfg.future_tubelets, n):
        raise EgoDexFormatError(f"{npz}: V-JEPA tokens {shapes['vjepa_input_feats']} / {shapes['vjepa_target_feats']}"
                                f", expected [{t}, {n}, D] each")
    L = len(np.asarray(a["layers"]).reshape(-1))
    if (len(shapes["vlm_old"]) != 3 or len(shapes["vlm_new"]) != 3 or shapes["vlm_old"][0] != L
            or shapes["vlm_new"][0] != L or shapes["vlm_old"][2] != shapes["vlm_new"][2]):
        raise EgoDexFormatError(f"{npz}: thinker states old {shapes['vlm_old']} / new {shapes['vlm_new']} do not "
                                f"hold [{L} layers, tokens, width] each")
    return T, obs, fut


def archive_row(npz: Path, hdf5: Path, cfg: ForecastConfig) -> dict:
    """One archive + its HDF5 as a store entry's tensors (fp32; thinker masks all true)."""
    try:
        a = np.load(npz, allow_pickle=False)
    except (OSError, ValueError) as e:  # not a zip, truncated, or pickled objects
        raise EgoDexFormatError(f"{npz}: cannot read as .npz ({e})") from None
    with a:
        T, obs, fut = _check_archive(a, npz, cfg)
        try:
            arrays = {k: torch.from_numpy(np.asarray(a[k], np.float32))
                      for k in ("vjepa_input_feats", "vjepa_target_feats", "vlm_old", "vlm_new")}
        except (OSError, ValueError) as e:
            raise EgoDexFormatError(f"{npz}: cannot read its arrays ({e})") from None
    bad = [k for k, v in arrays.items() if not torch.isfinite(v).all()]
    if bad:
        raise EgoDexFormatError(f"{npz}: non-finite values in {', '.join(bad)}")
    if not hdf5.exists():
        raise EgoDexFormatError(f"{npz}: no supervision {hdf5} for it")
    ep = load_episode(hdf5, size=None, load_frames=False)
    episode_check(cfg)(ep)
    if ep.num_frames != T:
        raise EgoDexFormatError(f"{npz}: made from {T} frames, but {hdf5} has {ep.num_frames}")
    row = {"ctx": finish_tokens(arrays["vjepa_input_feats"], cfg),
           "future": finish_tokens(arrays["vjepa_target_feats"], cfg), **episode_targets(ep, cfg, obs, fut, T // 2)}
    old, new = arrays["vlm_old"], arrays["vlm_new"]
    row.update(old=old, old_mask=torch.ones(old.shape[1], dtype=torch.bool),
               new=new, new_mask=torch.ones(new.shape[1], dtype=torch.bool))
    return row


def _key(npz: Path, hdf5: Path, cfg: ForecastConfig, dtype: str) -> str:
    from tkjepa.forecast.entries import STORE_VERSION

    parts = ["official", VERSION, STORE_VERSION, file_identity(npz), file_identity(hdf5) if hdf5.exists() else None,
             json.dumps(asdict(cfg), default=str), dtype]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def bundle_entries(folder, cfg: ForecastConfig, cache_dir, max_episodes=None, split: str | None = None,
                   skipped: list | None = None, strict: bool = False, dtype: str = "fp32", progress: bool = True,
                   rank: int = 0, world: int = 1) -> tuple[list[Path], list[str]]:
    """`store.extract_folder` for an official bundle: every usable archive as a store entry (converted once,
    then served from the store), returned as (entry paths, archive paths) in bundle order; the contract on
    `skipped`, `strict`, `rank`/`world` is extract_folder's."""
    from tqdm.auto import tqdm

    from tkjepa.forecast.entries import EpisodeStore, gather

    root = Path(folder)
    cfg = bundle_config(cfg, root)
    store = EpisodeStore(Path(cache_dir) / "episodes")
    files = bundle_archives(root, split)[:max_episodes]
    pairs = [(npz, root / "supervision_hdf5" / npz.relative_to(root / "cache").with_suffix(".hdf5"))
             for npz in files]
    keys = [_key(npz, h5, cfg, dtype) for npz, h5 in pairs]
    todo = [(p, k) for i, (p, k) in enumerate(zip(pairs, keys)) if i % world == rank and not store.has(k)]
    for (npz, h5), k in tqdm(todo, desc="convert", unit="ep", disable=not progress):
        try:
            row = archive_row(npz, h5, cfg)
        except EgoDexFormatError as e:
            store.refuse(k, str(npz), str(e).removeprefix(f"{npz}: "))
            continue
        store.put(k, row, "", str(npz), dtype)
    if world > 1:
        return [], []
    return gather(store, files, keys, skipped, strict, folder)
