"""What every video encoder in tkjepa shares: the input convention and the `VideoEncoderBase` interface.

A clip `video: [B, T, C, H, W]` is float in [0, 1]; each encoder normalises it inside (ImageNet statistics,
V-JEPA's convention) and returns tokens `[B, T', N, D]`, T' = T / tubelet_size, N = (H / p)·(W / p). Later
stages only ever see this interface, so the tiny ViT (`vit.VideoEncoder`) and V-JEPA 2
(`vjepa2.VJEPA2Encoder`) are interchangeable.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from einops import rearrange

# Input normalisation (V-JEPA's convention: ImageNet statistics), applied inside every encoder.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def frames_to_video(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] or [B, T, H, W, 3] -> float video [B, T, 3, H, W] in [0, 1]."""
    x = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3] or [B, T, H, W, 3], got {tuple(x.shape)}")
    return rearrange(x.float() / 255.0, "b t h w c -> b t c h w").contiguous()


def normalize_video(video: torch.Tensor) -> torch.Tensor:
    """[B, T, C, H, W] in [0, 1] -> ImageNet-normalised, same shape."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=video.dtype, device=video.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=video.dtype, device=video.device).view(1, 1, 3, 1, 1)
    return (video - mean) / std


class VideoEncoderBase(nn.Module):
    """What every tkjepa encoder offers. Subclasses set `embed_dim`, `tubelet_size`, `patch_size`.

    forward(video: [B, T, C, H, W] float in [0, 1]) -> tokens [B, T', N, D]; normalisation happens inside.
    """

    embed_dim: int
    tubelet_size: int
    patch_size: int
    input_size: int | None = None  # the one frame side the encoder accepts (V-JEPA 2: its crop); None = any

    def grid(self, T: int, H: int, W: int) -> tuple[int, int, int]:
        """Token grid (T', H/p, W/p) of a T×H×W clip; N = (H/p)·(W/p)."""
        return T // self.tubelet_size, H // self.patch_size, W // self.patch_size

    def check_input(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be [B, T, 3, H, W] float in [0, 1], got {tuple(video.shape)}"
                             " (uint8 frames [T, H, W, 3]: use tkjepa.encoder.frames_to_video)")
        T, H, W = video.shape[1], video.shape[3], video.shape[4]
        if T < self.tubelet_size or T % self.tubelet_size:
            raise ValueError(f"T={T} frames is not a positive multiple of tubelet_size={self.tubelet_size}")
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"frame size {H}×{W} is not a multiple of patch_size={self.patch_size}")
