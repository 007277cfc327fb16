"""A feature cache on disk that can never serve stale thinker features.

ThinkJEPA caches the VLM's hidden states once and trains the predictor on them many times. A stale cache
(features from an older model or prompt) would silently poison every later result, so an entry's file
name *is* a sha256 of everything that determines it: the model weights' digest, the chosen layers, the
prompt text, the frame indices and the frame bytes, the thinking length, and `FEATURES_VERSION` (the code that
computes them). Change any of them and the key changes. An entry that cannot be read is removed and rebuilt,
with a warning.

Entries are safetensors files written atomically (temp file + os.replace), so an interrupted
`extract_dataset` leaves only whole entries and a rerun skips them (resumable).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from tkjepa.checkpoint import CheckpointError, load_tensors, save_tensors, weights_digest
from tkjepa.episode import Episode
from tkjepa.sampling import DualTemporalSampler
from tkjepa.thinker.inputs import VideoConfig, thinker_prompt
from tkjepa.thinker.model import (MAX_NEW_TOKENS, ThinkerFeatures, default_layers, extract_features,
                                  thinking_tokens, video_config_of)
from tkjepa.thinker.think import thinker_indices


FEATURES_VERSION = 2  # bump when the features' computation changes: every older entry is then a miss


def feature_key(weights: str, layers, prompt: str, frame_indices, frames: np.ndarray,
                max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """Content hash of one cache entry. frames: the clip's pixels [n, H, W, 3] uint8."""
    frames = np.ascontiguousarray(frames)
    h = hashlib.sha256()
    h.update(json.dumps({"version": FEATURES_VERSION, "max_new_tokens": int(max_new_tokens),
                         "weights": weights, "layers": [int(l) for l in layers], "prompt": prompt,
                         "indices": [int(i) for i in frame_indices], "frames_shape": list(frames.shape),
                         "frames_dtype": str(frames.dtype)}, sort_keys=True).encode())
    h.update(hashlib.sha256(frames.tobytes()).digest())
    return h.hexdigest()


class FeatureCache:
    """A folder of `<key>.safetensors` entries, one per (model, layers, prompt, clip)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def __len__(self) -> int:
        return len(list(self.root.glob("*.safetensors")))

    def get(self, key: str) -> ThinkerFeatures | None:
        """The entry, or None when there is none — or when it cannot be read (then it is removed, and said)."""
        if key not in self:
            return None
        try:
            t, meta = load_tensors(self.path(key))
            if not {"old", "old_mask", "new", "new_mask"} <= set(t) or not {"layers", "text"} <= set(meta):
                raise CheckpointError(f"{self.path(key)}: not a thinker-feature entry")
        except CheckpointError as e:
            warnings.warn(f"{e}: removed; it will be rebuilt", stacklevel=2)
            self.path(key).unlink(missing_ok=True)
            return None
        return ThinkerFeatures(old=t["old"], old_mask=t["old_mask"].bool(), new=t["new"],
                               new_mask=t["new_mask"].bool(), layers=json.loads(meta["layers"]), text=meta["text"])

    def put(self, key: str, feats: ThinkerFeatures) -> None:
        """Store one entry atomically: readers see no entry or the whole one."""
        tensors = {"old": feats.old, "old_mask": feats.old_mask.to(torch.uint8), "new": feats.new,
                   "new_mask": feats.new_mask.to(torch.uint8)}
        save_tensors(self.path(key), tensors, metadata={"layers": json.dumps(feats.layers), "text": feats.text})


def episode_key(weights: str, layers, ep: Episode, frame_indices, video: VideoConfig | None = None,
                max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """The key of one episode's clip for a thinker reading video as `video` says (its prompt and frame size;
    default: the tiny thinker's)."""
    idx, video = np.asarray(frame_indices), video or VideoConfig()
    prompt = thinker_prompt(ep, idx, video)
    if video.chat_prompt is not None or video.size != 64:  # the tiny thinker's keys stay as they were
        prompt = f"{prompt}\n[frames {video.size} px, chat template: {video.chat_prompt is not None}]"
    return feature_key(weights, layers, prompt, idx, ep.frames[idx], max_new_tokens)


def cached_features(model, tokenizer, cache: FeatureCache, ep: Episode, frame_indices, layers=None,
                    weights: str | None = None, max_new_tokens: int | None = None) -> ThinkerFeatures:
    """Features of one episode from the cache, computed and stored on a miss."""
    layers = list(layers) if layers is not None else default_layers(model.config.text_config.num_hidden_layers)
    max_new_tokens = max_new_tokens or thinking_tokens(model)
    key = episode_key(weights or weights_digest(model), layers, ep, frame_indices, video_config_of(model),
                      max_new_tokens)
    hit = cache.get(key)
    if hit is not None:
        return hit
    feats = extract_features(model, tokenizer, [ep], [frame_indices], layers, max_new_tokens)[0]
    cache.put(key, feats)
    return feats


def extract_dataset(paths, model, tokenizer, cache: FeatureCache, sampler: DualTemporalSampler, layers=None,
                    batch_size: int = 8, max_new_tokens: int | None = None, progress: bool = True,
                    load=None, variant: str = "") -> list[str]:
    """Features of every episode's thinker clip (paths or Episode objects; the clip drawn by `sampler`) into
    `cache`; returns their keys.

    Entries already cached are skipped, so rerunning after an interruption only does what is missing.
    `load` turns a path into an Episode (default `tkjepa.egodex.load_episode`). `variant` (e.g. "bf16": how
    the features were computed) joins the weights' digest in the key, so such entries are never mixed up.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    if load is None:
        from tkjepa.egodex import load_episode as load  # noqa: PLC0415
    layers = list(layers) if layers is not None else default_layers(model.config.text_config.num_hidden_layers)
    weights, video = weights_digest(model) + (f":{variant}" if variant else ""), video_config_of(model)
    max_new_tokens = max_new_tokens or thinking_tokens(model)
    keys, todo = [], []
    bar = tqdm(total=len(paths), desc="thinker features", unit="ep", disable=not progress)

    def flush():
        feats = extract_features(model, tokenizer, [e for e, _, _ in todo], [i for _, i, _ in todo],
                                 layers, max_new_tokens)
        for (_, _, key), f in zip(todo, feats):
            cache.put(key, unpad(f))
        bar.update(len(todo))
        todo.clear()

    for p in paths:
        ep = p if isinstance(p, Episode) else load(p)
        idx, _ = thinker_indices(ep, sampler)
        key = episode_key(weights, layers, ep, idx, video, max_new_tokens)
        keys.append(key)
        if key in cache:
            bar.update()
            continue
        todo.append((ep, idx, key))
        if len(todo) >= batch_size:
            flush()
    if todo:
        flush()
    bar.close()
    return keys


def unpad(f: ThinkerFeatures) -> ThinkerFeatures:
    """Drop the batch's left padding from `old`, so an entry does not depend on its batch-mates."""
    keep = f.old_mask
    return ThinkerFeatures(old=f.old[:, keep].clone(), old_mask=f.old_mask[keep].clone(), new=f.new,
                           new_mask=f.new_mask, layers=f.layers, text=f.text)
