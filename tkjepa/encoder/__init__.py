"""The dense JEPA branch: video encoders, their masks, EMA target, pretraining and probe.

base (the interface every encoder shares) → vit (the tiny tubelet ViT trained here) | vjepa2 (transformers'
V-JEPA 2) → masks, ema → pretrain (`tkjepa pretrain-encoder`) → probe. `load_encoder` picks the class from a
checkpoint's config.json, so every later stage takes "an encoder" and never asks which.
"""

from __future__ import annotations

from pathlib import Path

from tkjepa.checkpoint import CheckpointError, read_json
from tkjepa.encoder.base import VideoEncoderBase, frames_to_video, normalize_video
from tkjepa.encoder.vit import MODEL_TYPE, EncoderConfig, VideoEncoder, resolve_file

__all__ = ["EncoderConfig", "VideoEncoder", "VideoEncoderBase", "frames_to_video", "load_encoder",
           "normalize_video"]


def load_encoder(name_or_path: str | Path, **kwargs) -> VideoEncoderBase:
    """Our `VideoEncoder` or a `VJEPA2Encoder`, chosen by config.json's `model_type` (folder or hub repo);
    kwargs go to transformers for V-JEPA 2 (e.g. torch_dtype)."""
    config = resolve_file(name_or_path, "config.json")
    model_type = read_json(config).get("model_type")
    if model_type == MODEL_TYPE:
        return VideoEncoder.from_pretrained(name_or_path)
    if model_type == "vjepa2":
        from tkjepa.encoder.vjepa2 import VJEPA2Encoder
        return VJEPA2Encoder.from_pretrained(name_or_path, **kwargs)
    raise CheckpointError(f"{config}: model_type {model_type!r} is neither {MODEL_TYPE!r} (tkjepa's tiny ViT) "
                          "nor 'vjepa2'")
