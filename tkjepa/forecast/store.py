"""A folder's forecasting data as one file per episode, streamed: memory does not grow with the folder.

`extract_folder` (what `tkjepa extract` runs) writes, for every usable episode, the tensors of
`forecast.data.episode_arrays` plus the thinker's features as `<cache>/episodes/<key>.safetensors`; the key
is a sha256 of the episode files' identities (resolved path, size, modification time), the frame size, both
backbones' weight digests, the ForecastConfig, the precision, the storage dtype and `STORE_VERSION`. A file
that cannot be used gets a small `<key>.json` with its error, so a rerun neither decodes it again nor
forgets it. Entries are written atomically, so an interrupted extraction resumes with whole entries only;
under torchrun each rank extracts its share (`rank::world`).

`ForecastDataset` reads entries one at a time (float tensors back to fp32) and `collate` pads a batch's
thinker tokens, so a `DataLoader` feeds training and scoring with only a batch in memory. Storage dtype:
fp32 (the default, exact) or fp16 (half the disk; the official cache's choice for ViT-L / Qwen3-VL-2B
features, ≈ 26 MB per EgoDex episode at the paper's sizes instead of 52 MB).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import Dataset

from tkjepa.backbones import Backbones
from tkjepa.checkpoint import CheckpointError
from tkjepa.device import autocast
from tkjepa.egodex import EgoDexFormatError, load_episode
from tkjepa.forecast import official
from tkjepa.forecast.entries import DTYPES, STORE_VERSION, EpisodeStore, gather
from tkjepa.forecast.data import (DATA_VERSION, ForecastConfig, ForecastData, pad_stack, episode_arrays,
                                  episode_check, file_identity, for_encoder, frames_needed, split_episodes,
                                  thinker_features)

def entry_key(path: Path, size: int, backbones: Backbones, cfg: ForecastConfig, precision: str, dtype: str) -> str:
    mp4 = path.with_suffix(".mp4")
    parts = [STORE_VERSION, DATA_VERSION, file_identity(path), file_identity(mp4) if mp4.exists() else None, size,
             backbones.digest("encoder"), backbones.digest("thinker"), json.dumps(asdict(cfg), default=str),
             precision, dtype]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def extract_folder(folder, backbones: Backbones, cfg: ForecastConfig, cache_dir, max_episodes=None,
                   split: str | None = None, skipped: list | None = None, strict: bool = False,
                   precision: str = "fp32", dtype: str = "fp32", progress: bool = True, batch_size: int = 16,
                   rank: int = 0, world: int = 1) -> tuple[list[Path], list[str]]:
    """Every usable episode of the folder (or its `split` side) as a store entry: returns the entries' paths
    and the episodes' paths, in folder order; refused ones go to `skipped` ({"path", "error"}) or, with
    `strict`, raise EgoDexFormatError. Entries already there are not computed again. With `world` > 1 this
    process computes only episodes `rank::world` and returns ([], []): call it again with world=1 after a
    barrier for the whole list (it then computes nothing). An official ThinkJEPA bundle (`official.is_bundle`)
    is converted instead, and `backbones` may be None."""
    from tqdm.auto import tqdm

    if dtype not in DTYPES:
        raise ValueError(f"storage dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if official.is_bundle(folder):  # the official release's features: converted, no backbone runs
        return official.bundle_entries(folder, cfg, cache_dir, max_episodes, split, skipped, strict, dtype, progress,
                                       rank, world)
    cfg = for_encoder(cfg, backbones.encoder)
    size = backbones.encoder.input_size or cfg.grid * backbones.encoder.patch_size
    store, check, needed = EpisodeStore(Path(cache_dir) / "episodes"), episode_check(cfg), frames_needed(cfg)
    files = split_episodes(folder, split)[:max_episodes]
    keys = [entry_key(p, size, backbones, cfg, precision, dtype) for p in files]
    todo = [(p, k) for i, (p, k) in enumerate(zip(files, keys)) if i % world == rank and not store.has(k)]
    bar = tqdm(total=len(todo), desc="extract", unit="ep", disable=not progress)
    for start in range(0, len(todo), batch_size):
        chunk, eps = todo[start:start + batch_size], []
        for p, k in chunk:
            try:
                ep = load_episode(p, size=size, needed=needed)
                check(ep)
            except EgoDexFormatError as e:
                store.refuse(k, str(p), str(e).removeprefix(f"{p}: "))
                bar.update()
                continue
            eps.append((ep, k))
        with autocast(backbones.device, precision):
            rows = [episode_arrays(ep, backbones.encoder, cfg) for ep, _ in eps]
        feats = (thinker_features([ep for ep, _ in eps], backbones, cfg.sampler, Path(cache_dir) / "thinker",
                                  progress=False, precision=precision)
                 if backbones.has_thinker and eps else [None] * len(eps))
        for (ep, k), row, f in zip(eps, rows, feats):
            if f is not None:
                row.update(old=f.old.float(), old_mask=f.old_mask, new=f.new.float(), new_mask=f.new_mask)
            store.put(k, row, f.text if f is not None else "", ep.path, dtype)
            bar.update()
    bar.close()
    if world > 1:  # the other ranks' shares may not be there yet: the caller gathers after a barrier
        return [], []
    return gather(store, files, keys, skipped, strict, folder)


class ForecastDataset(Dataset):
    """Store entries as a map-style dataset: item i is episode i's tensors (fp32) and thinker text."""

    def __init__(self, entries: list[Path]):
        self.entries = [Path(e) for e in entries]
        self.store = EpisodeStore(self.entries[0].parent) if self.entries else None

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict:
        got = self.store.get(self.entries[i].stem)
        if got is None:
            raise CheckpointError(f"{self.entries[i]}: store entry missing or unreadable; run `tkjepa extract` again")
        tensors, meta = got
        return {**tensors, "text": meta.get("text", "")}

    def light(self) -> ForecastData:
        """Every episode's targets and observed joints only (traj, valid, past, oracle): what scoring needs
        besides predictions, small enough for any folder."""
        small = ("traj", "valid", "past", "actions", "oracle", "has_oracle", "camera")
        rows = [{k: v for k, v in self[i].items() if k in small} for i in range(len(self))]
        data = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
        return ForecastData(ctx=torch.zeros(len(rows), 0), future=torch.zeros(len(rows), 0), **data)


def collate(items: list[dict]) -> ForecastData:
    """A batch of dataset items -> ForecastData (thinker tokens right-padded to the batch's longest)."""
    keys = ("ctx", "future", "traj", "valid", "past", "actions", "oracle", "has_oracle", "camera", "fine", "point")
    data = {k: torch.stack([it[k] for it in items]) for k in keys if k in items[0]}
    if "old" in items[0]:
        data.update({k: pad_stack([it[k] for it in items], 1 if k in ("old", "new") else 0)
                     for k in ("old", "old_mask", "new", "new_mask")})
    return ForecastData(**data)


def load_all(entries: list[Path]) -> tuple[ForecastData, list[str]]:
    """Every entry in memory (for attribution, the viewer and small folders): ForecastData and texts."""
    ds = ForecastDataset(entries)
    items = [ds[i] for i in range(len(ds))]
    return collate(items), [it["text"] for it in items]


def folder_data(folder, backbones: Backbones, cfg: ForecastConfig, cache_dir=None, max_episodes=None,
                progress: bool = True, skipped: list | None = None, strict: bool = False, split: str | None = None,
                precision: str = "fp32", dtype: str = "fp32") -> tuple[ForecastData, list[str], list[str]]:
    """ForecastData of an EgoDex-format folder in memory, its thinker texts and the episode paths, through the
    per-episode store under `cache_dir` (`forecast.store`; `tkjepa extract` fills it; None: a temporary one):
    an episode whose files, backbones and config are unchanged is not decoded again. Frames are decoded at the
    encoder's input size, or the size that gives `cfg.grid` tokens per side (64 px for the tiny encoder's 8-px
    patches). An episode that cannot be used is left out and recorded in `skipped` ({"path", "error"}), or
    with `strict` raises EgoDexFormatError. `split`: "train" or "test" side of the group-disjoint split by task
    folder (`split_episodes`), or None for all. For a folder too large for memory, stream the store instead
    (`store.extract_folder` + `store.ForecastDataset`)."""
    import contextlib
    import tempfile

    with (tempfile.TemporaryDirectory(prefix="tkjepa-store-") if cache_dir is None
          else contextlib.nullcontext(cache_dir)) as root:
        entries, paths = extract_folder(folder, backbones, cfg, root, max_episodes, split, skipped, strict,
                                        precision, dtype, progress)
        data, texts = load_all(entries)
    return data, texts, paths
