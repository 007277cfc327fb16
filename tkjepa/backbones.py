"""The frozen backbones every later stage receives: the video encoder and the VLM thinker.

ThinkJEPA never trains them after pretraining: the forecasters, attribution, the viewer and the planner read
their outputs (encoder tokens, thinker hidden states), computed once and cached. `Backbones` carries both
models, where they were loaded from, and their weight digests, which key every cache built on them, so
features of another encoder or thinker are never served.

    backbones = load_backbones("data_samples/encoder_tiny", "data_samples/thinker_tiny")
    backbones = load_backbones("facebook/vjepa2-vitl-fpc64-256", "Qwen/Qwen3-VL-2B-Thinking", device="cuda")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tkjepa.checkpoint import weights_digest
from tkjepa.encoder import VideoEncoderBase, load_encoder
from tkjepa.thinker.model import load_thinker


@dataclass
class Backbones:
    """encoder: tokens [B, T', N, D] of a clip; thinker + tokenizer: the VLM (None where a stage needs none)."""

    encoder: VideoEncoderBase
    thinker: Any = None                  # a Qwen3VLForConditionalGeneration
    tokenizer: Any = None                # its tokenizer (the tiny one's word-level one, or the real BPE)
    encoder_source: str = ""             # the folder or hub name each was loaded from
    thinker_source: str = ""
    _digests: dict = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def to(self, device: str | torch.device) -> "Backbones":
        self.encoder.to(device)
        if self.thinker is not None:
            self.thinker.to(device)
        return self

    def digest(self, which: str) -> str | None:
        """sha256 of the "encoder"'s or the "thinker"'s weights (None without a thinker), computed once."""
        model = self.encoder if which == "encoder" else self.thinker
        if model is None:
            return None
        if which not in self._digests:
            self._digests[which] = weights_digest(model)
        return self._digests[which]

    @property
    def has_thinker(self) -> bool:
        return self.thinker is not None


def load_backbones(encoder: str | Path, thinker: str | Path | None = None, device: str | torch.device = "cpu"
                   ) -> Backbones:
    """Load the encoder (tkjepa's tiny ViT or a V-JEPA 2, by folder or hub name) and, if given, the thinker
    (the tiny Qwen3-VL or a real one), in eval mode on `device`."""
    model, tokenizer = load_thinker(thinker) if thinker is not None else (None, None)
    return Backbones(load_encoder(encoder).eval(), model, tokenizer, str(encoder),
                     "" if thinker is None else str(thinker)).to(device)
