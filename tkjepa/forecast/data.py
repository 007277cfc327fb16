"""Forecasting data: what the guided predictor trains and is scored on, computed once and cached.

For each episode, at the dual-temporal sampler's forecast start s (`ForecastConfig.sampler`; T // 2 for the
tiny one):

- `ctx`     [E, Tc, N, D]  the frozen encoder's tokens of the dense window (the last 2·Tc frames before s);
- `future`  [E, Tr, N, D]  its tokens of the frames after s (targets of the latent loss, Tr = 4 windows);
- `traj`    [E, 2·Tr, J, 3] the joints of `ForecastConfig.joints` after s, metres, world frame; `valid`
                            [E, 2·Tr] where the episode has those frames;
- `past`    [E, 2, J, 3]   the joints at s−2, s−1 (the constant-velocity baseline's only input);
- `actions` [E, Tr, 8]     the expert's actions, two frames per tubelet (world episodes; zeros otherwise);
- thinker features `old` [E, L, No, Dv], `new` [E, L, Nn, Dv] with masks (the cached "old"/"new" streams);
- `oracle`  [E, 15]        the true next subgoal as one-hots of its kind, the target's colour and shape
                            (world episodes only): what a perfect thinker would say, told to `oracle`;
- `fine`    [E, G², D]     with `ForecastConfig.fine`: the last observed tubelet's tokens before pooling (8 × 8),
                            where a named object can still be found (`forecast.model.Grounding`);
- `point`   [E]            with it, the pointer's training target, a cell of that G × G grid (`targets.point_cell`):
                            where the next subgoal's object is (tabletop annotations), or, in a folder without
                            them (EgoDex), where the wrist is seen `point_frame` + 1 frames after s (−1: unknown).

Encoder tokens are average-pooled 2×2 (8×8 → 4×4 per tubelet) and layer-normed per token, so the
predictor works on 16 tokens per tubelet: the hand stays locatable, and a training step costs ~4× less.
Neither input sees a frame at or after s (the sampler guarantees it); the targets are the only thing that
does. `world_data` and `store.folder_data` build it for world episodes or an EgoDex-format folder, through a cache
keyed by the episodes, both backbones' weights and the config.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from tkjepa.backbones import Backbones
from tkjepa.device import autocast
from tkjepa.checkpoint import CheckpointError, load_tensors, read_json, save_tensors, write_json
from tkjepa.egodex import EgoDexFormatError, find_episodes
from tkjepa.encoder import frames_to_video
from tkjepa.episode import RIGHT_HAND_JOINTS, WRIST, Episode
from tkjepa.forecast.targets import episode_targets, point_cell
from tkjepa.sampling import DualTemporalSampler, SamplerConfig
from tkjepa.thinker.cache import FeatureCache, unpad, extract_dataset
from tkjepa.thinker.model import extract_features
from tkjepa.thinker.think import thinker_indices
from tkjepa.world.generate import WORLD_VERSION, WorldConfig, dataset_episodes

@dataclass
class ForecastConfig:
    context_tubelets: int = 4   # Tc: the dense window (8 frames at tubelet size 2)
    window_tubelets: int = 4    # Tf: tubelets one predictor pass forecasts (the trained horizon, 8 frames)
    windows: int = 4            # recursive windows stored as targets (4 × the trained horizon = 32 frames)
    pool: int = 2               # average-pool the encoder's token grid by this factor (8×8 -> 4×4)
    clip_frames: int = 8        # frames per encoder call (the encoder's pretraining clip length)
    grid: int = 8               # encoder tokens per side (64-px frames, 8-px patches)
    joints: tuple[str, ...] = RIGHT_HAND_JOINTS  # the joints forecast, in this order (EgoDex names)
    sampler: SamplerConfig = field(default_factory=SamplerConfig.tiny)  # forecast start and the thinker's clip
    frames: str = "dense"       # "dense": the encoder sees the last 2·Tc frames before s, targets are the frames
                                # after s; "linspace" (the official code): 2·Tc frames spread over [0, s) and
                                # 2·Tf·windows targets spread over [s, T)
    coords: str = "world"       # joints in the "world" frame, or the "camera" frame of the last observed frame
                                # (the official head's; `camera` holds that pose, to map predictions back)
    fine: bool = True           # also keep the last observed tubelet's unpooled tokens (`ForecastData.fine`)
    point_frame: int = 11       # without subgoal annotations, the target frame whose wrist cell is
                                # `ForecastData.point` (11: the 12th frame after s, when a typical reach arrives)

    def __post_init__(self):
        if self.frames not in ("dense", "linspace"):
            raise ValueError(f"frames must be dense or linspace, got {self.frames!r}")
        if self.coords not in ("world", "camera"):
            raise ValueError(f"coords must be world or camera, got {self.coords!r}")

    @property
    def tokens(self) -> int:
        """Tokens per tubelet after pooling."""
        return (self.grid // self.pool) ** 2

    @property
    def future_tubelets(self) -> int:
        return self.window_tubelets * self.windows

    @property
    def wrist(self) -> int:
        """Index of the wrist (`episode.WRIST`) among `joints`."""
        return self.joints.index(WRIST)


@dataclass
class ForecastData:
    ctx: torch.Tensor
    future: torch.Tensor
    traj: torch.Tensor
    valid: torch.Tensor
    past: torch.Tensor
    actions: torch.Tensor
    oracle: torch.Tensor
    has_oracle: torch.Tensor
    old: torch.Tensor | None = None
    old_mask: torch.Tensor | None = None
    new: torch.Tensor | None = None
    new_mask: torch.Tensor | None = None
    camera: torch.Tensor | None = None  # [E, 4, 4] camera-to-world at the last observed frame (camera coords)
    fine: torch.Tensor | None = None    # [E, G², D] the last observed tubelet's unpooled tokens (`ForecastConfig.fine`)
    point: torch.Tensor | None = None   # [E] int64 the grounding pointer's target cell (−1: unknown)

    def __len__(self) -> int:
        return len(self.ctx)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def subset(self, idx) -> "ForecastData":
        return ForecastData(**{k: v[idx] for k, v in self.tensors().items()})

    def to(self, device) -> "ForecastData":
        return ForecastData(**{k: v.to(device) for k, v in self.tensors().items()})

    @property
    def has_thinker(self) -> bool:
        return self.old is not None

    def guide(self, idx=slice(None), streams: str = "both") -> tuple | None:
        """The thinker inputs of episodes `idx` as the predictor takes them (None without a thinker). A stream
        the predictor does not read (`streams` "old" or "new") comes with no tokens: [B, L, 0, Dv], not copied."""
        if not self.has_thinker:
            return None
        old, old_mask, new, new_mask = self.old, self.old_mask, self.new, self.new_mask
        if streams == "new":
            old, old_mask = old[:, :, :0], old_mask[:, :0]
        elif streams == "old":
            new, new_mask = new[:, :, :0], new_mask[:, :0]
        return old[idx], old_mask[idx], new[idx], new_mask[idx]

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        save_tensors(path, self.tensors(), metadata={"meta": json.dumps(meta or {})})

    @classmethod
    def load(cls, path: str | Path) -> "ForecastData":
        return cls(**load_tensors(path)[0])


def for_encoder(cfg: ForecastConfig, encoder) -> ForecastConfig:
    """`cfg` with the token grid the encoder gives: an encoder with one accepted input size (V-JEPA 2: its
    crop) sets `grid` = size / patch (256 / 16 = 16); one that takes any size keeps `cfg.grid`. Raises
    ValueError when the data's layout (two frames per tubelet, a grid the pool divides) does not fit it."""
    if encoder.tubelet_size != 2:
        raise ValueError(f"the forecasting data takes two frames per tubelet; this encoder's tubelet_size is "
                         f"{encoder.tubelet_size}")
    grid = encoder.input_size // encoder.patch_size if encoder.input_size else cfg.grid
    if grid % cfg.pool:
        raise ValueError(f"pool={cfg.pool} does not divide the encoder's {grid}×{grid} token grid")
    if cfg.clip_frames % encoder.tubelet_size:
        raise ValueError(f"clip_frames={cfg.clip_frames} is not a multiple of the tubelet size {encoder.tubelet_size}")
    return cfg if grid == cfg.grid else replace(cfg, grid=grid)


def pooled_tokens(encoder, frames: np.ndarray, cfg: ForecastConfig, batch: int = 16) -> torch.Tensor:
    """frames [K·clip, H, W, 3] uint8 -> pooled, layer-normed tokens [K·clip/2, N', D] (N' = N / pool²).
    Square frames of another size than the encoder's one input size (V-JEPA 2's crop) are resized to it."""
    clips = rearrange(np.ascontiguousarray(frames), "(k t) h w c -> k t h w c", t=cfg.clip_frames)
    out = []
    device = next(encoder.parameters()).device
    size = encoder.input_size
    with torch.no_grad():
        for i in range(0, len(clips), batch):
            video = frames_to_video(clips[i:i + batch]).to(device)               # [b, T, 3, H, W]
            if size and video.shape[-2:] != (size, size):
                b, t = video.shape[:2]
                video = F.interpolate(video.flatten(0, 1), size=(size, size), mode="bilinear",
                                      align_corners=False, antialias=True).view(b, t, 3, size, size)
            z = encoder(video)                                                     # [b, T', N, D]
            out.append(finish_tokens(z.flatten(0, 1), cfg).cpu())
    return torch.cat(out)


def finish_tokens(z: torch.Tensor, cfg: ForecastConfig) -> torch.Tensor:
    """An encoder's tokens [n, N, D] of a square grid -> average-pooled by `cfg.pool`, layer-normed per token
    [n, N / pool², D] (fp32): what the forecaster reads, whoever ran the encoder."""
    g = int(round(z.shape[1] ** 0.5))
    if g * g != z.shape[1]:
        raise ValueError(f"{z.shape[1]} tokens per tubelet are not a square grid")
    z = rearrange(z.float(), "n (h w) d -> n d h w", h=g)
    z = F.avg_pool2d(z, cfg.pool) if cfg.pool > 1 else z
    z = rearrange(z, "n d h w -> n (h w) d")
    return F.layer_norm(z, (z.shape[-1],))


def spread(a: int, b: int, n: int, rounding: str = "floor") -> np.ndarray:
    """n frame indices spread evenly over [a, b]: `floor` is numpy's integer linspace (the official code's
    `np.linspace(a, b, n, dtype=np.int64)`), `half_up` rounds floor(x + 0.5)."""
    x = np.linspace(float(a), float(b), n)
    return np.floor(x + (0.5 if rounding == "half_up" else 0.0)).astype(np.int64)


def episode_frames(T: int, cfg: ForecastConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """(observed frames [2·Tc], target frames [2·Tr], forecast start s) of a T-frame episode (`cfg.frames`)."""
    s = DualTemporalSampler(cfg.sampler).sample(T).forecast_start
    Tc, Tr = cfg.context_tubelets, cfg.future_tubelets
    if cfg.frames == "linspace":
        if s < 2 * Tc or T - s < 2 * Tr:
            raise ValueError(f"{T} frames split at {s} hold fewer than {2 * Tc} observed or {2 * Tr} target frames")
        r = cfg.sampler.rounding
        return spread(0, s - 1, 2 * Tc, r), spread(s, T - 1, 2 * Tr, r), s
    if s - 2 * Tc < 0:
        raise ValueError(f"forecast start {s} leaves fewer than {2 * Tc} observed frames")
    return np.arange(s - 2 * Tc, s), np.arange(s, s + 2 * Tr), s


def frames_needed(cfg: ForecastConfig):
    """T -> every frame index the forecasting data of a T-frame episode reads (encoder and thinker), for
    `egodex.load_episode(needed=...)`; an episode too short for `cfg` gets every frame (the check refuses it)."""
    sampler = DualTemporalSampler(cfg.sampler)

    def needed(T: int) -> np.ndarray:
        try:
            obs, fut, _ = episode_frames(T, cfg)
            thinker = sampler.sample(T).thinker
        except ValueError:
            return np.arange(T)
        return np.unique(np.minimum(np.concatenate([obs, fut, thinker]), T - 1))
    return needed


def episode_arrays(ep: Episode, encoder, cfg: ForecastConfig) -> dict:
    """One episode's tensors (no thinker features): see the module docstring."""
    T = ep.num_frames
    try:
        obs, fut, s = episode_frames(T, cfg)
    except ValueError as e:
        raise ValueError(f"{ep.path or 'episode'}: {e}") from None
    t = np.minimum(np.concatenate([obs, fut]), T - 1)          # frames past the end repeat the last one
    z = pooled_tokens(encoder, ep.frames[t], cfg)               # [Tc + Tr, N', D]
    Tc = cfg.context_tubelets
    out = {"ctx": z[:Tc], "future": z[Tc:], **episode_targets(ep, cfg, obs, fut, s)}
    if cfg.fine:  # the last encoder clip of the dense window again, unpooled: its last tubelet's G² tokens
        out["fine"] = pooled_tokens(encoder, ep.frames[obs[-cfg.clip_frames:]], replace(cfg, pool=1))[-1]
        out["point"] = torch.tensor(point_cell(ep, s, fut, cfg))
    return out


def pad_stack(xs: list[torch.Tensor], dim: int) -> torch.Tensor:
    """Right-pad along `dim` to the longest, then stack (masks pad with False, states with 0)."""
    n = max(x.shape[dim] for x in xs)
    out = []
    for x in xs:
        pad = [0, 0] * (x.ndim - 1 - dim) + [0, n - x.shape[dim]]
        out.append(F.pad(x, pad))
    return torch.stack(out)


def build(episodes, backbones: Backbones, cfg: ForecastConfig | None = None, cache_dir: str | Path | None = None,
          progress: bool = True, precision: str = "fp32") -> tuple[ForecastData, list[str]]:
    """ForecastData (fp32) for `episodes` (Episode objects) and the thinker's texts ("" without a thinker),
    the backbones run where they are, at `precision` (`tkjepa.device.autocast`).

    Thinker features go through `tkjepa.thinker.cache` when `cache_dir` is given (content-hashed, resumable).
    """
    from tqdm.auto import tqdm

    cfg = cfg or ForecastConfig()
    backbones.encoder.eval()
    with autocast(backbones.device, precision):
        rows = [episode_arrays(ep, backbones.encoder, cfg)
                for ep in tqdm(episodes, desc="encode", unit="ep", disable=not progress)]
    data = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    texts = [""] * len(episodes)
    if backbones.has_thinker:
        with autocast(backbones.device, precision):
            feats = thinker_features(episodes, backbones, cfg.sampler, cache_dir=cache_dir, progress=progress,
                                     precision=precision)
        data.update(old=pad_stack([f.old.float() for f in feats], 1),
                    old_mask=pad_stack([f.old_mask for f in feats], 0),
                    new=pad_stack([f.new.float() for f in feats], 1),
                    new_mask=pad_stack([f.new_mask for f in feats], 0))
        texts = [f.text for f in feats]
    return ForecastData(**data), texts


def thinker_features(episodes, backbones: Backbones, sampler: SamplerConfig, cache_dir=None, progress: bool = True,
                     batch_size: int = 16, precision: str = "fp32"):
    """The thinker's ThinkerFeatures for each episode's clip, through the on-disk cache when `cache_dir` is set
    (features computed at another `precision` than fp32 have keys of their own)."""
    model, tokenizer, sample = backbones.thinker, backbones.tokenizer, DualTemporalSampler(sampler)
    if cache_dir is not None:
        cache = FeatureCache(cache_dir)
        keys = extract_dataset(list(episodes), model, tokenizer, cache, sample, batch_size=batch_size,
                               progress=progress, variant="" if precision == "fp32" else precision)
        return [cache.get(k) for k in keys]
    out = []
    for i in range(0, len(episodes), batch_size):
        chunk = episodes[i:i + batch_size]
        out += [unpad(f) for f in extract_features(model, tokenizer, chunk,
                                                    [thinker_indices(e, sample)[0] for e in chunk])]
    return out


DATA_VERSION = 3  # bump when ForecastData's computation changes: older cached entries are then misses


def data_key(episode_ids: list[str], *parts) -> str:
    """A short content key for a cached ForecastData (episode identities + model digests + config + the code's
    `DATA_VERSION`)."""
    h = hashlib.sha256(json.dumps([DATA_VERSION, episode_ids, [str(p) for p in parts]]).encode())
    return h.hexdigest()[:16]


def cached_data(cache_dir: str | Path | None, prefix: str, key: str, make) -> tuple[ForecastData, object]:
    """`make()` -> (ForecastData, info) with `info` any JSON value (the thinker's texts, a folder's episode
    list), stored as `cache_dir/<prefix>-<key>.safetensors` + `.json` and served from there next time (no
    cache_dir: always made). An entry that cannot be read is rebuilt, with a warning."""
    if cache_dir is None:
        return make()
    path = Path(cache_dir) / f"{prefix}-{key}.safetensors"
    if path.exists() and path.with_suffix(".json").exists():
        try:
            return ForecastData.load(path), read_json(path.with_suffix(".json"))
        except (CheckpointError, TypeError) as e:  # unreadable, or not this code's fields
            warnings.warn(f"{path}: cannot be read ({e}); rebuilding it", stacklevel=2)
    data, info = make()
    data.save(path)
    write_json(path.with_suffix(".json"), info, indent=None)
    return data, info


def world_data(seed: int, episodes: int, backbones: Backbones, cfg: ForecastConfig, cache_dir=None,
               layout: str = "homes", progress: bool = True, workers: int = 2, precision: str = "fp32"
               ) -> tuple[ForecastData, list[str]]:
    """ForecastData of world episodes 0..episodes-1 of dataset `seed` (`layout`), from the cache when it is
    there. The key holds both backbones' weight digests, so another encoder or thinker gets its own entry."""
    cfg = for_encoder(cfg, backbones.encoder)
    key = data_key([f"world:{seed}:{episodes}:v{WORLD_VERSION}:{layout}"], backbones.digest("encoder"),
                   backbones.digest("thinker"), cfg, *([] if precision == "fp32" else [precision]))

    def make():
        eps = dataset_episodes(seed, range(episodes), WorldConfig(layout=layout), workers=workers)
        return build(eps, backbones, cfg, None if cache_dir is None else Path(cache_dir) / "thinker", progress,
                     precision)

    return cached_data(cache_dir, "forecast", key, make)


def episode_check(cfg: ForecastConfig):
    """check(episode) for `egodex.load_folder`: raises EgoDexFormatError when the episode lacks a forecast joint
    or is too short for the sampler and the dense window."""
    sampler = DualTemporalSampler(cfg.sampler)

    def check(ep: Episode) -> None:
        missing = [j for j in cfg.joints if j not in ep.transforms]
        if missing:
            raise EgoDexFormatError(f"{ep.path}: no transforms for the forecast joints {missing}")
        if cfg.coords == "camera" and "camera" not in ep.transforms:
            raise EgoDexFormatError(f"{ep.path}: no /transforms/camera, which camera coordinates need")
        try:
            sampler.sample(ep.num_frames)
            episode_frames(ep.num_frames, cfg)
        except ValueError:
            need = (max(sampler.min_frames, 4 * cfg.context_tubelets) if cfg.frames == "dense"
                    else 2 * max(2 * cfg.context_tubelets, 2 * cfg.future_tubelets))
            raise EgoDexFormatError(f"{ep.path}: {ep.num_frames} frames are too few: the sampler needs at least "
                                    f"{need}") from None
    return check


SPLIT_SEED, SPLIT_TEST = 42, 0.1  # the official split: 90/10, group-disjoint by task folder, seed 42


def split_episodes(folder, split: str | None = None, seed: int = SPLIT_SEED, test: float = SPLIT_TEST) -> list[Path]:
    """The folder's episodes (`find_episodes` order), or one side of a group-disjoint split: whole task folders
    go to "test" (a `test` fraction of them, at least one, drawn with `seed`) or "train" (the rest), so no task
    is seen on both sides."""
    paths = find_episodes(folder)
    if split is None or split == "all":
        return paths
    if split not in ("train", "test"):
        raise ValueError(f"split must be all, train or test, got {split!r}")
    root = Path(folder)
    groups = sorted({str(p.parent.relative_to(root)) for p in paths})
    if len(groups) < 2:
        raise ValueError(f"{folder}: a split by task folder needs at least two task folders, found {groups}")
    order = np.random.default_rng(seed).permutation(len(groups))
    held = {groups[i] for i in order[:max(1, int(np.ceil(test * len(groups))))]}
    return [p for p in paths if (str(p.parent.relative_to(root)) in held) == (split == "test")]


def file_identity(path: Path) -> list:
    """What says a file is unchanged without reading it: its resolved path, size and modification time."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]
