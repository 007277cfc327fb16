"""Seeding, the learning-rate schedule and per-step random streams, shared by every training loop.

Both the schedule and the random stream of a step are pure functions of the step number, so a run resumed
from a training state (`tkjepa.checkpoint.save_state`) replays nothing and continues exactly as the
uninterrupted run would have.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (weights are drawn from torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random stream of one training step: batches, clips and masks of step `step` of a run seeded `seed`."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def lr_at(step: int, steps: int, peak: float, floor: float = 0.0, warmup: int = 0) -> float:
    """Linear warmup over `warmup` steps to `peak`, then a cosine decay to `floor` at `steps` (held after)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min((step - warmup) / max(steps - warmup, 1), 1.0)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * frac))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate to `lr` × its "lr_scale" (1 when the group has none)."""
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
