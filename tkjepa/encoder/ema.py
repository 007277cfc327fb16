"""The EMA target encoder: a slowly moving copy of the online encoder that produces JEPA's targets.

The target encoder is never trained by gradients (stop-gradient): after each optimiser step its weights move
a fraction 1 - m towards the online encoder's, `target ← m·target + (1 − m)·online`. Because the targets
change slowly, the predictor has a stable goal; together with stop-gradient this is what keeps JEPA from the
trivial solution where every clip maps to the same vector (see notebooks/02_ema_encoder).

The momentum m is a pure function of the step, so a resumed run recomputes it instead of replaying a
schedule generator as ijepa's training loop would have to.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn


def make_target_encoder(encoder: nn.Module) -> nn.Module:
    """A deep copy of `encoder` with `requires_grad=False` everywhere, in eval mode."""
    target_encoder = copy.deepcopy(encoder)
    for p in target_encoder.parameters():
        p.requires_grad_(False)
    return target_encoder.eval()


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, m: float) -> None:
    """In place: every target parameter ← m·target + (1 − m)·online. m=1 keeps it, m=0 copies online."""
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise ValueError("target and online encoders have different parameter lists")
    torch._foreach_mul_(t_params, m)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - m)


def momentum_at(step: int, total_steps: int, m_start: float = 0.996, m_end: float = 1.0) -> float:
    """EMA momentum at `step` of `total_steps`: cosine from m_start to m_end (BYOL's schedule).

    Early on the target follows the online encoder closely (the features are still poor and changing fast);
    towards the end m → m_end freezes it. Clamped outside [0, total_steps].
    """
    frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return m_end - (m_end - m_start) * (math.cos(math.pi * frac) + 1) / 2
