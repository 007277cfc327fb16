"""The thinker's feature pyramid: cached VLM hidden states of several decoder layers -> one guidance per block.

The thinker cache holds, per episode, hidden states of L decoder layers ("rows", in the order of
`ThinkerFeatures.layers`) for two token streams: `old` (prompt + visual tokens: what the VLM *saw*) and `new`
(generated tokens: what it *thought*). Batched: `old [B, L, No, Dv]`, `old_mask [B, No]`, `new [B, L, Nn, Dv]`,
`new_mask [B, Nn]` (mask False = padding; `collate_features` builds them from a list of cache entries).

Per chosen level (row) ℓ, as the official code: each stream is projected (Linear Dv -> dim) and mean-pooled
over its real tokens (computed pool-first, `pooled_projection`: the same vector, ~N× cheaper), then fused as
[o, n, |o−n|, o⊙n] -> LayerNorm -> MLP -> dim. Shallow layers tend to carry what is in the frames, deep ones
what the VLM made of them; giving each predictor block its own level lets early blocks read the scene and late
ones the plan (`level_vectors` shows what each level holds).

Levels and blocks. `levels` picks rows: "all" = 0..L−1; "last" = [L−1]; "mid" = rows k..L−1−k with
k = max(1, L // 3), i.e. the middle third or so, never the first or last row (L=6: [2, 3]; L=8: [2..5]; L=3:
[1]); or an explicit list of row indices. `block_groups(n, num_blocks)` gives each predictor block the levels
it reads, and every level reaches at least one block: with n ≤ num_blocks, block i reads the one level
round(i·(n−1)/(num_blocks−1)) (halves up; `block_levels`), so equal counts map one to one and fewer levels are
spread evenly; with more levels than blocks, the levels are cut into num_blocks contiguous groups, block i
reading levels ⌊i·n/B⌋ … ⌊(i+1)·n/B⌋ − 1 (6 levels, 4 blocks: [0], [1, 2], [3], [4, 5]). A block that reads
several levels reads their mean: the mean fused vector (FiLM, AdaLN) or the token-wise mean of the projected
token sets (cross-attention), so no cached layer is left unread by construction.

Streams. `streams="old"` replaces the new stream's pooled vector by zeros in the fusion (so the fusion
MLP keeps its shape and the ablation changes only what it is fed) and drops the new tokens from `tokens`;
`streams="new"` does the converse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class PyramidConfig:
    vlm_dim: int = 128                 # Dv: thinker hidden size (tiny thinker 128; Qwen3-VL-2B 2048)
    layers: tuple[int, ...] = (0, 1, 2, 3, 4, 5)  # decoder layer of each cached row (ThinkerFeatures.layers); L = len
    dim: int = 128                     # output width = predictor width (GuidedPredictor sets it)
    levels: str | Sequence[int] = "all"  # rows used: "all" | "mid" | "last" | list of row indices (module doc)
    streams: str = "both"              # "both" | "old" (prompt + visual tokens only) | "new" (thinking only)
    num_blocks: int = 4                # predictor blocks, one guidance vector each (GuidedPredictor sets it)
    hidden: int = 128                  # fusion MLP hidden width

    @classmethod
    def tiny(cls) -> "PyramidConfig":
        """For the tiny 6-layer thinker; ~0.7 M parameters."""
        return cls()

    @classmethod
    def paper(cls) -> "PyramidConfig":
        """The official sizes: Qwen3-VL-2B rows 0, 4, …, 24, 27 into a 12-block, 384-wide predictor."""
        return cls(vlm_dim=2048, layers=(0, 4, 8, 12, 16, 20, 24, 27), dim=384, num_blocks=12, hidden=384)


def level_rows(levels: str | Sequence[int], num_rows: int) -> list[int]:
    """Row indices (into the L cached layers) named by `levels`; see the module docstring."""
    L = num_rows
    if levels == "all":
        return list(range(L))
    if levels == "last":
        return [L - 1]
    if levels == "mid":
        if L < 3:
            raise ValueError(f"levels='mid' needs at least 3 cached layers, got {L}")
        k = max(1, L // 3)
        return list(range(k, L - k))
    if isinstance(levels, str):
        raise ValueError(f"levels must be 'all', 'mid', 'last' or a list of row indices, got {levels!r}")
    rows = [int(r) for r in levels]
    if not rows or any(not 0 <= r < L for r in rows):
        raise ValueError(f"levels {rows} must be a non-empty list of row indices in [0, {L})")
    return rows


def block_levels(num_levels: int, num_blocks: int) -> list[int]:
    """Level index of each predictor block when there are no more levels than blocks:
    round(i·(n−1)/(blocks−1)), halves up."""
    if num_levels > num_blocks:
        raise ValueError(f"{num_levels} levels over {num_blocks} blocks: some blocks read several (block_groups)")
    if num_blocks == 1:
        return [0]
    return [int(i * (num_levels - 1) / (num_blocks - 1) + 0.5) for i in range(num_blocks)]


def block_groups(num_levels: int, num_blocks: int) -> list[list[int]]:
    """The levels each predictor block reads (module docstring): one each with n ≤ blocks (`block_levels`),
    else n levels cut into `num_blocks` contiguous groups, so that every level reaches a block."""
    if num_levels < 1 or num_blocks < 1:
        raise ValueError(f"need at least one level and one block, got {num_levels} and {num_blocks}")
    if num_levels <= num_blocks:
        return [[lv] for lv in block_levels(num_levels, num_blocks)]
    cut = [i * num_levels // num_blocks for i in range(num_blocks + 1)]
    return [list(range(cut[i], cut[i + 1])) for i in range(num_blocks)]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x: [B, N, D], mask: [B, N] bool -> [B, D] mean over the True tokens; zeros where none is True.

    `where` rather than multiply, so even NaN/inf in padding cannot leak in.
    """
    s = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(1)
    return s / mask.sum(1, keepdim=True).clamp(min=1).to(x.dtype)


def pooled_projection(proj: nn.Linear, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """masked_mean(proj(x), mask), computed as proj(masked_mean(x, mask)): [B, N, Dv] -> [B, dim].

    A linear map commutes with a mean, so pooling first gives the same vector while projecting one
    vector per episode instead of N tokens (the prompt + visual stream has ~100). Rows without a real
    token stay zero, as `masked_mean` of the projected tokens would give.
    """
    return proj(masked_mean(x, mask)) * mask.any(1, keepdim=True).to(x.dtype)


def collate_features(features: Sequence) -> dict[str, torch.Tensor]:
    """A list of `ThinkerFeatures` (old [L, No_i, Dv], new [L, Nn_i, Dv]) -> a batch dict, right-padded.

    Returns {"old": [B, L, No, Dv], "old_mask": [B, No], "new": [B, L, Nn, Dv], "new_mask": [B, Nn]}.
    """
    out = {}
    for s in ("old", "new"):
        n = max(getattr(f, s).shape[1] for f in features)
        out[s] = torch.stack([F.pad(getattr(f, s), (0, 0, 0, n - getattr(f, s).shape[1])) for f in features])
        out[s + "_mask"] = torch.stack([F.pad(getattr(f, s + "_mask").bool(), (0, n - getattr(f, s).shape[1]))
                                        for f in features])
    return out


class PyramidExtractor(nn.Module):
    """Multi-layer thinker features -> guidance. See the module docstring.

    forward(old, old_mask, new, new_mask) -> g [B, num_blocks, dim]
    tokens(old, old_mask, new, new_mask) -> (kv [B, num_blocks, M, dim], kv_mask [B, M])
    level_vectors(old, old_mask, new, new_mask) -> [B, n_levels, dim]
    """

    def __init__(self, config: PyramidConfig | None = None):
        super().__init__()
        self.config = c = config or PyramidConfig()
        if c.streams not in ("both", "old", "new"):
            raise ValueError(f"streams must be 'both', 'old' or 'new', got {c.streams!r}")
        self.rows = level_rows(c.levels, len(c.layers))            # cached row of each level
        self.block_groups = block_groups(len(self.rows), c.num_blocks)  # levels read by each predictor block
        n, d = len(self.rows), c.dim
        # PyTorch's default fan-in init, not the ViT's std 0.02: that would leave g ~0.01, and a gate that
        # opens would have next to nothing to pass on. Only the streams in use get projections.
        self.old_proj = nn.ModuleList(nn.Linear(c.vlm_dim, d) for _ in range(n)) if c.streams != "new" else None
        self.new_proj = nn.ModuleList(nn.Linear(c.vlm_dim, d) for _ in range(n)) if c.streams != "old" else None
        self.fuse = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(4 * d), nn.Linear(4 * d, c.hidden), nn.GELU(), nn.Linear(c.hidden, d))
            for _ in range(n))

    @property
    def block_rows(self) -> list[list[int]]:
        """The cached rows each predictor block reads."""
        return [[self.rows[lv] for lv in group] for group in self.block_groups]

    @property
    def read_rows(self) -> list[int]:
        """The cached rows some predictor block reads, sorted (all of them unless `levels` picks a subset)."""
        return sorted(set(self.rows))

    def _check(self, old: torch.Tensor, new: torch.Tensor) -> None:
        L = len(self.config.layers)
        if old.ndim != 4 or new.ndim != 4 or old.shape[1] != L or new.shape[1] != L:
            raise ValueError(f"expected old [B, {L}, No, Dv] and new [B, {L}, Nn, Dv], "
                             f"got {tuple(old.shape)} and {tuple(new.shape)}")

    def _level(self, lv: int, old, old_mask, new, new_mask) -> torch.Tensor:
        """Fused vector [B, dim] of level lv (row self.rows[lv])."""
        r = self.rows[lv]
        o = pooled_projection(self.old_proj[lv], old[:, r], old_mask) if self.old_proj is not None else None
        n = pooled_projection(self.new_proj[lv], new[:, r], new_mask) if self.new_proj is not None else None
        o = o if o is not None else torch.zeros_like(n)
        n = n if n is not None else torch.zeros_like(o)
        return self.fuse[lv](torch.cat([o, n, (o - n).abs(), o * n], dim=-1))

    def level_vectors(self, old, old_mask, new, new_mask) -> torch.Tensor:
        """What each chosen level carries: [B, n_levels, dim]."""
        self._check(old, new)
        return torch.stack([self._level(lv, old, old_mask, new, new_mask) for lv in range(len(self.rows))], 1)

    def forward(self, old, old_mask, new, new_mask) -> torch.Tensor:
        """-> g [B, num_blocks, dim], block i's vector the mean over its levels (self.block_groups[i])."""
        self._check(old, new)
        vec = [self._level(lv, old, old_mask, new, new_mask) for lv in range(len(self.rows))]
        return torch.stack([torch.stack([vec[lv] for lv in group]).mean(0) for group in self.block_groups], dim=1)

    def tokens(self, old, old_mask, new, new_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected token sets for cross-attention: kv [B, num_blocks, M, dim], kv_mask [B, M].

        Block i's set is the old ∥ new tokens of its levels (M = No + Nn; No or Nn alone for one stream), the
        token-wise mean of the levels' projections where it reads several.
        """
        self._check(old, new)
        per_level, masks = {}, []
        if self.old_proj is not None:
            masks.append(old_mask)
        if self.new_proj is not None:
            masks.append(new_mask)
        for lv in range(len(self.rows)):
            r, parts = self.rows[lv], []
            if self.old_proj is not None:
                parts.append(self.old_proj[lv](old[:, r]))
            if self.new_proj is not None:
                parts.append(self.new_proj[lv](new[:, r]))
            per_level[lv] = torch.cat(parts, dim=1)  # [B, M, dim]
        kv = torch.stack([torch.stack([per_level[lv] for lv in group]).mean(0) for group in self.block_groups], 1)
        return kv, torch.cat(masks, dim=1).bool()
