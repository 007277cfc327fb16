"""V-JEPA's multi-block spatio-temporal masks, and `apply_masks` to gather the tokens they name.

A clip's tokens form a grid (T', gh, gw), flattened in row order (t, h, w) as the encoder lays them out:
index = t·gh·gw + h·gw + w. A mask sampler draws `num_blocks` boxes (each `spatial_scale` of the frame area,
aspect ratio in `aspect_ratio`, spanning `temporal_scale` of the clip's T'); their union is what the
predictor must predict (`masks_pred`), the rest is what the context encoder sees (`masks_enc`). With full
temporal extent (V-JEPA's default) a masked region is a tube through the whole clip, so it cannot be copied
from a neighbouring frame: the model has to infer *what is there* from the spatial context.

V-JEPA samples two kinds per clip: "short-range" (8 small blocks, ~65% masked on an 8×8 grid) and
"long-range" (2 large blocks, ~85% masked). Each kind gives one (masks_enc, masks_pred) pair. We add a
"future" kind (V-JEPA 2-AC's and ThinkJEPA's task): the last tubelets, whole frames, from the earlier ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class MaskConfig:
    num_blocks: int = 8                                # boxes whose union is predicted
    spatial_scale: tuple[float, float] = (0.15, 0.15)  # range of a box's area as a fraction of the frame
    temporal_scale: tuple[float, float] = (1.0, 1.0)   # range of a box's duration as a fraction of T'
    aspect_ratio: tuple[float, float] = (0.75, 1.5)    # range of a box's height / width
    from_end: bool = False                             # boxes end at the last time step: predict the future
    min_context: int = 4                               # resample when fewer context tokens per clip remain

    @classmethod
    def short_range(cls) -> "MaskConfig":
        return cls(num_blocks=8, spatial_scale=(0.15, 0.15))

    @classmethod
    def long_range(cls) -> "MaskConfig":
        return cls(num_blocks=2, spatial_scale=(0.7, 0.7))

    @classmethod
    def future(cls) -> "MaskConfig":
        """The last 25–50% of the clip's time steps, whole frames: predict the future from the past."""
        return cls(num_blocks=1, spatial_scale=(1.0, 1.0), temporal_scale=(0.25, 0.5), aspect_ratio=(1.0, 1.0),
                   from_end=True)


def _uniform(lo_hi: tuple[float, float], g: torch.Generator) -> float:
    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def sample_block_sizes(grid: tuple[int, int, int], cfg: MaskConfig, g: torch.Generator) -> list[tuple[int, int, int]]:
    """`cfg.num_blocks` box sizes (bt, bh, bw) in tokens, from the scale and aspect-ratio ranges."""
    t, h, w = grid
    sizes = []
    for _ in range(cfg.num_blocks):
        area = _uniform(cfg.spatial_scale, g) * h * w
        ar = math.exp(_uniform((math.log(cfg.aspect_ratio[0]), math.log(cfg.aspect_ratio[1])), g))
        sizes.append((min(t, max(1, round(_uniform(cfg.temporal_scale, g) * t))),
                      min(h, max(1, round(math.sqrt(area * ar)))), min(w, max(1, round(math.sqrt(area / ar))))))
    return sizes


def sample_block_mask(grid: tuple[int, int, int], cfg: MaskConfig, g: torch.Generator,
                      sizes: list[tuple[int, int, int]] | None = None) -> torch.Tensor:
    """One clip's predicted region: bool [T', gh, gw], True = predict (union of boxes of `sizes`, placed at random)."""
    t, h, w = grid
    for _ in range(100):
        pred = torch.zeros(t, h, w, dtype=torch.bool)
        for bt, bh, bw in sizes or sample_block_sizes(grid, cfg, g):
            t0, h0, w0 = (int(torch.randint(0, n - b + 1, (), generator=g)) for n, b in ((t, bt), (h, bh), (w, bw)))
            t0 = t - bt if cfg.from_end else t0
            pred[t0:t0 + bt, h0:h0 + bh, w0:w0 + bw] = True
        if (~pred).sum() >= cfg.min_context:
            return pred
        sizes = None  # these sizes leave too little context here: draw new ones
    raise RuntimeError(f"could not leave {cfg.min_context} context tokens with {cfg}; use fewer or smaller blocks")


def sample_masks(batch_size: int, grid: tuple[int, int, int], cfg: MaskConfig,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(masks_enc [B, Kc], masks_pred [B, Kp]): sorted token indices, disjoint per clip, in [0, T'·gh·gw).

    As V-JEPA's collator, box sizes are drawn once per batch and positions per clip, so the clips' counts
    differ only by how their boxes overlap; every row is then cut to the batch's smallest count by a random
    subset (V-JEPA truncates; a random subset avoids favouring early tokens).
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    sizes = sample_block_sizes(grid, cfg, g)
    preds = [sample_block_mask(grid, cfg, g, sizes).flatten() for _ in range(batch_size)]
    k_enc = min(int((~p).sum()) for p in preds)
    k_pred = min(int(p.sum()) for p in preds)

    def subset(idx: torch.Tensor, k: int) -> torch.Tensor:
        return idx[torch.randperm(len(idx), generator=g)[:k]].sort().values

    masks_enc = torch.stack([subset(torch.nonzero(~p).squeeze(1), k_enc) for p in preds])
    masks_pred = torch.stack([subset(torch.nonzero(p).squeeze(1), k_pred) for p in preds])
    return masks_enc, masks_pred


def apply_masks(x: torch.Tensor, masks: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Gather tokens: x [B, L, D], masks a [B, K] index tensor or a list of M of them -> [M·B, K, D].

    As ijepa's `apply_masks`: with a list, the gathered batches are concatenated along the batch dimension.
    """
    masks = [masks] if torch.is_tensor(masks) else masks
    out = [torch.gather(x, 1, m.to(x.device)[..., None].expand(-1, -1, x.size(-1))) for m in masks]
    return torch.cat(out, dim=0)
