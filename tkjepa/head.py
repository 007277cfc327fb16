"""The trajectory head: latents -> 3D hand joint positions in metres.

For each future tubelet the head pools that tubelet's N tokens into one vector by attention (a learned query;
fixed 2D sincos positions are added to the tokens first, so *where* a token sits in the frame is readable by
the pooling), concatenates the same pooled summary of the last observed tubelet (where the hand was, a
reference the prediction is relative to), and an MLP outputs the `frames_per_tubelet` × J × 3 coordinates of
that tubelet's frames. It works per tubelet, so it reads rollouts of any length.

The network predicts normalised coordinates; buffers `mean`, `std` [J, 3], set from the training targets by
`set_target_stats`, turn them into metres (world frame), so the last layer's scale is the same for every axis.
How far off they are is `tkjepa.metrics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from tkjepa.encoder.vit import init_weights, sincos_pos_embed_3d


@dataclass
class TrajectoryHeadConfig:
    latent_dim: int = 96               # D: latent token width
    dim: int = 128                     # head width
    joints: int = 7                    # J: joints per frame (the forecast data's joint set: 7 of the right hand)
    frames_per_tubelet: int = 2        # video frames one tubelet covers (encoder tubelet_size)
    tokens: int = 16                   # N: tokens per tubelet
    grid_hw: tuple[int, int] | None = None  # (h, w) of the token grid; None = square √N × √N
    num_heads: int = 4                 # attention-pooling heads
    hidden: int = 256                  # MLP hidden width
    state_dim: int = 0                 # size of an optional state vector (e.g. the last observed joints), 0 = none

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.grid_hw if self.grid_hw is not None else (math.isqrt(self.tokens),) * 2
        if h * w != self.tokens:
            raise ValueError(f"grid {h}×{w} does not hold tokens={self.tokens}")
        return h, w

    @classmethod
    def tiny(cls, **kw) -> "TrajectoryHeadConfig":
        return cls(**kw)


class AttentionPool(nn.Module):
    """A learned query per head attends over a token set: [B, N, dim] -> [B, dim]."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Parameter(torch.zeros(1, num_heads, 1, dim // num_heads))
        self.norm = nn.LayerNorm(dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, v = rearrange(self.kv(self.norm(x)), "b n (two h d) -> two b h n d", two=2, h=self.num_heads)
        y = F.scaled_dot_product_attention(self.query.expand(x.shape[0], -1, -1, -1), k, v)  # (B, nh, 1, hs)
        return self.proj(rearrange(y, "b h 1 d -> b (h d)"))


class TrajectoryHead(nn.Module):
    """forward(observed [B, Tc, N, D], future [B, Tf, N, D]) -> positions [B, Tf·frames_per_tubelet, J, 3] (m)."""

    def __init__(self, config: TrajectoryHeadConfig | None = None):
        super().__init__()
        self.config = c = config or TrajectoryHeadConfig()
        h, w = c.grid
        self.embed = nn.Linear(c.latent_dim, c.dim)
        self.pool = AttentionPool(c.dim, c.num_heads)
        self.state = nn.Linear(c.state_dim, c.dim) if c.state_dim else None
        self.mlp = nn.Sequential(nn.LayerNorm(2 * c.dim), nn.Linear(2 * c.dim, c.hidden), nn.GELU(),
                                 nn.Linear(c.hidden, c.frames_per_tubelet * c.joints * 3))
        init_weights(self)
        nn.init.trunc_normal_(self.pool.query, std=0.02)
        self.register_buffer("pos", sincos_pos_embed_3d(c.dim, 1, h, w), persistent=False)  # [N, dim]
        self.register_buffer("mean", torch.zeros(c.joints, 3))
        self.register_buffer("std", torch.ones(c.joints, 3))

    @torch.no_grad()
    def set_target_stats(self, positions: torch.Tensor, min_std: float = 1e-3) -> None:
        """positions: [..., J, 3] training targets (m) -> per joint and axis mean and std (≥ min_std)."""
        p = torch.as_tensor(positions, dtype=self.mean.dtype).reshape(-1, *self.mean.shape)
        self.mean.copy_(p.mean(0))
        self.std.copy_(p.std(0, unbiased=False).clamp(min=min_std))

    def normalize(self, positions: torch.Tensor) -> torch.Tensor:
        """[..., J, 3] metres -> the normalised coordinates the network predicts (for a balanced loss)."""
        return (positions - self.mean) / self.std

    def summarise(self, tubelets: torch.Tensor) -> torch.Tensor:
        """[B, T, N, D] -> one pooled vector per tubelet [B, T, dim]."""
        B = tubelets.shape[0]
        x = self.embed(rearrange(tubelets, "b t n d -> (b t) n d")) + self.pos
        return rearrange(self.pool(x), "(b t) d -> b t d", b=B)

    def forward(self, observed: torch.Tensor, future: torch.Tensor, state: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """state: [B, state_dim] (when configured) embedded, and context [B, dim] as it is, both added to the last
        observed tubelet's summary."""
        c = self.config
        fut = self.summarise(future)                              # [B, Tf, dim]
        last = self.summarise(observed[:, -1:])                   # [B, 1, dim]: where the hand was
        if self.state is not None:
            if state is None or state.shape[-1] != c.state_dim:
                raise ValueError(f"this head needs state [B, {c.state_dim}]")
            last = last + self.state(state)[:, None]
        if context is not None:
            last = last + context[:, None]
        last = last.expand_as(fut)
        y = self.mlp(torch.cat([fut, last], dim=-1))              # [B, Tf, f·J·3]
        y = rearrange(y, "b t (f j x) -> b (t f) j x", f=c.frames_per_tubelet, j=c.joints, x=3)
        return y * self.std + self.mean
