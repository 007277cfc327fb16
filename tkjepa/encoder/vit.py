"""The video encoder of the low-level world model: V-JEPA's tubelet ViT, small enough for a laptop CPU.

A clip `video: [B, T, C, H, W]` (float in [0, 1]) is cut into tubelets of `tubelet_size` frames ×
`patch_size`² pixels; each tubelet becomes one token. A stack of pre-norm transformer blocks with full
spatio-temporal attention mixes them, and the output is reshaped per time step:
`encoder(video) -> [B, T', N, D]` with T' = T / tubelet_size and N = (H / p)·(W / p).

Every encoder in tkjepa (this one, and `tkjepa.encoder.vjepa2.VJEPA2Encoder` over real V-JEPA 2 weights) shares
the interface of `tkjepa.encoder.base.VideoEncoderBase`, so later stages never ask which one they hold;
`tkjepa.encoder.load_encoder(name_or_path)` returns the right one from a folder's config.json or a hub name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from tkjepa.checkpoint import (CheckpointError, config_from_dict, load_weights, read_json, save_tensors,
                               write_json)
from tkjepa.encoder.base import VideoEncoderBase, normalize_video
from tkjepa.encoder.masks import apply_masks

MODEL_TYPE = "tkjepa_video_encoder"  # config.json's "model_type" for our encoder


@dataclass
class EncoderConfig:
    patch_size: int = 8        # p: spatial side of a patch in pixels (64×64 frames -> N = 8×8 = 64 tokens)
    tubelet_size: int = 2      # frames per tubelet (temporal patch), as V-JEPA
    in_chans: int = 3          # RGB
    embed_dim: int = 128       # D: token width
    depth: int = 6             # number of transformer blocks
    num_heads: int = 4         # attention heads (head dim = D / heads)
    mlp_ratio: float = 4.0     # MLP hidden width = mlp_ratio · D
    frames_per_clip: int = 8   # clip length the encoder is trained on (positions extrapolate beyond it)

    @classmethod
    def tiny(cls) -> "EncoderConfig":
        """~0.45 M parameters: B=8 clips of 8 frames at 64×64 encode in a few tens of ms on 2 cores."""
        return cls(patch_size=8, tubelet_size=2, embed_dim=96, depth=4, num_heads=4, mlp_ratio=4.0)


def sincos_pos_embed_3d(dim: int, t: int, h: int, w: int) -> torch.Tensor:
    """Fixed 3D sine-cosine positions [t·h·w, dim] (V-JEPA's `get_3d_sincos_pos_embed`), row order (t, h, w).

    dim is split in three equal parts for time, height and width (any remainder is zero). Being a function of
    the grid and not a learned table, it serves clips of any length or frame size.
    """
    gt, gh, gw = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return sincos_at(dim, torch.stack([gt.flatten(), gh.flatten(), gw.flatten()], dim=1))


def sincos_at(dim: int, coords: torch.Tensor) -> torch.Tensor:
    """`sincos_pos_embed_3d`'s code for any (t, y, x) coordinates [n, 3], fractional ones included -> [n, dim]."""
    d = 2 * (dim // 6)  # per axis, even
    omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d // 2))  # [d/2]
    ang = coords.to(torch.float64)[:, :, None] * omega                             # [n, 3, d/2]
    emb = torch.cat([ang.sin(), ang.cos()], dim=2).flatten(1)                     # [n, 3·d]: t, then y, then x
    return F.pad(emb, (0, dim - 3 * d)).float()


class Attention(nn.Module):
    """Multi-head self-attention through `F.scaled_dot_product_attention`."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, L, D]
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, L, hs)
        return self.proj(rearrange(y, "b h l d -> b l (h d)"))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, L, D]
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """ViT initialisation (truncated normal linears, unit LayerNorms), used by the encoder and predictors."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv3d)):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VideoEncoder(VideoEncoderBase):
    """Tubelet embedding (Conv3d, kernel = stride = tubelet×p×p) + 3D sincos positions + ViT blocks + LN."""

    def __init__(self, config: EncoderConfig | None = None):
        super().__init__()
        self.config = config = config or EncoderConfig()
        self.embed_dim, self.tubelet_size, self.patch_size = config.embed_dim, config.tubelet_size, config.patch_size
        k = (config.tubelet_size, config.patch_size, config.patch_size)
        self.patch_embed = nn.Conv3d(config.in_chans, config.embed_dim, kernel_size=k, stride=k)
        self.blocks = nn.ModuleList(Block(config.embed_dim, config.num_heads, config.mlp_ratio)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.embed_dim)
        init_weights(self)
        # Scale each block's output projections by 1/sqrt(2·layer) (ijepa's `fix_init_weight`).
        for i, blk in enumerate(self.blocks, 1):
            blk.attn.proj.weight.data.div_(math.sqrt(2.0 * i))
            blk.mlp[2].weight.data.div_(math.sqrt(2.0 * i))

    def tubelet_embed(self, video: torch.Tensor) -> torch.Tensor:
        """[B, T, C, H, W] in [0, 1] -> tubelet tokens with positions [B, T'·N, D] (row order t, h, w)."""
        x = self.patch_embed(rearrange(normalize_video(video), "b t c h w -> b c t h w"))  # [B, D, T', gh, gw]
        t, gh, gw = x.shape[2:]
        x = rearrange(x, "b d t h w -> b (t h w) d")
        return x + sincos_pos_embed_3d(self.embed_dim, t, gh, gw).to(x)

    def forward(self, video: torch.Tensor, masks: torch.Tensor | list[torch.Tensor] | None = None) -> torch.Tensor:
        """video: [B, T, C, H, W] in [0, 1].

        masks None -> [B, T', N, D]. masks (index tensors [B, K] into the T'·N tokens, ijepa's `masks_enc`)
        -> only those tokens are encoded, as the JEPA context encoder does: [len(masks)·B, K, D].
        """
        self.check_input(video)
        t, gh, gw = self.grid(video.shape[1], video.shape[3], video.shape[4])
        x = self.tubelet_embed(video)  # [B, L, D], L = T'·N
        if masks is not None:
            x = apply_masks(x, masks)  # [M·B, K, D]
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return x if masks is not None else rearrange(x, "b (t n) d -> b t n d", t=t)

    def save_pretrained(self, path: str | Path) -> None:
        """Write `config.json` + `model.safetensors` to the folder `path` (created if missing), each atomically."""
        path = Path(path)
        save_tensors(path / "model.safetensors", self.state_dict())
        write_json(path / "config.json", {"model_type": MODEL_TYPE, **asdict(self.config)}, indent=2)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "VideoEncoder":
        """Load a folder written by `save_pretrained` (or a hub repo with the same two files)."""
        config_file, weights_file = resolve_file(path, "config.json"), resolve_file(path, "model.safetensors")
        cfg = read_json(config_file)
        if cfg.pop("model_type", MODEL_TYPE) != MODEL_TYPE:
            raise CheckpointError(f"{config_file}: not a tkjepa video encoder (tkjepa.encoder.load_encoder "
                                  "reads V-JEPA 2 folders too)")
        model = cls(config_from_dict(EncoderConfig, cfg, config_file))
        return load_weights(model, weights_file).eval()


def resolve_file(name_or_path: str | Path, filename: str) -> Path:
    """A file of a local folder, or of a hub repo (downloaded through huggingface_hub's cache)."""
    p = Path(name_or_path)
    if p.is_dir():
        if not (p / filename).exists():
            raise CheckpointError(f"{p}: no {filename} in this folder")
        return p / filename
    from huggingface_hub import hf_hub_download
    return Path(hf_hub_download(str(name_or_path), filename))
