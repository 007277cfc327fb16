"""Real V-JEPA 2 behind tkjepa's encoder interface: transformers' `VJEPA2Model`, reshaped to [B, T', N, D].

`VJEPA2Encoder.from_pretrained("facebook/vjepa2-vitl-fpc64-256")` (or a local folder holding a
`save_pretrained` copy) gives the same `forward(video [B, T, C, H, W] in [0, 1]) -> [B, T', N, D]` as our
`VideoEncoder`, so every later stage can swap the tiny encoder for the paper's ViT-L.

Two things transformers does not check, and we do:
- frame size: the model lays out its 3D RoPE positions on a (crop_size / patch)² grid whatever the input is,
  so a 64×64 clip into a crop_size=256 model runs and returns tokens with *wrong positions*. We reject any
  H×W other than crop_size×crop_size (resize or crop first, e.g. `F.interpolate` per frame).
- frame count: T must be a positive multiple of tubelet_size (Conv3d would silently drop a last odd frame).
  More frames than `frames_per_clip` is fine: RoPE positions extrapolate in time.
Normalisation (ImageNet mean/std, what `VJEPA2VideoProcessor` applies) happens inside, as in `VideoEncoder`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange

from tkjepa.encoder.base import VideoEncoderBase, normalize_video


class VJEPA2Encoder(VideoEncoderBase):
    """Wraps a `transformers.VJEPA2Model` (its encoder only; the pretraining predictor is skipped)."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()
        self.config = c = model.config
        self.embed_dim, self.tubelet_size = c.hidden_size, c.tubelet_size
        self.patch_size = c.patch_size if isinstance(c.patch_size, int) else c.patch_size[0]
        self.crop_size = self.input_size = c.crop_size

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs) -> "VJEPA2Encoder":
        """A hub name (e.g. "facebook/vjepa2-vitl-fpc64-256") or a local folder; kwargs go to transformers."""
        from transformers import VJEPA2Model

        return cls(VJEPA2Model.from_pretrained(str(name_or_path), **kwargs))

    def save_pretrained(self, path: str | Path) -> None:
        """transformers' files, written beside `path` and each moved into it whole (os.replace), so an
        interrupted save leaves the folder as it was or complete, never a half-written file."""
        import os
        import tempfile

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
            self.model.save_pretrained(tmp)
            for f in sorted(Path(tmp).iterdir()):
                os.replace(f, path / f.name)

    def check_input(self, video: torch.Tensor) -> None:
        super().check_input(video)
        H, W = video.shape[-2:]
        if (H, W) != (self.crop_size, self.crop_size):
            raise ValueError(
                f"this V-JEPA 2 model places token positions on a {self.crop_size}×{self.crop_size} grid "
                f"(config.crop_size); a {H}×{W} input would get wrong positions silently. Resize or crop the "
                f"frames to {self.crop_size}×{self.crop_size} first.")

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, T, C, H, W] in [0, 1], H = W = crop_size -> tokens [B, T/tubelet, (H/p)·(W/p), D]."""
        self.check_input(video)
        t, gh, gw = self.grid(video.shape[1], video.shape[3], video.shape[4])
        x = normalize_video(video).to(self.model.dtype)
        h = self.model(pixel_values_videos=x, skip_predictor=True).last_hidden_state  # [B, T'·N, D], order (t, h, w)
        return rearrange(h, "b (t n) d -> b t n d", t=t, n=gh * gw)
