"""How far a forecast trajectory is from the truth: the paper's ADE, FDE and Acc@5cm, per-horizon curves,
the constant-velocity baseline and the forecasters' training loss — one set, used by every stage.

Trajectories are joints over frames, `pred, true: [E, T, J, 3]` in metres; `valid: [E, T]` marks the frames an
episode really has (a short episode's last targets repeat its last frame and are not scored).

- ADE: per episode, the mean L2 over its valid frames and the joints; then the mean over episodes.
- FDE: the mean L2 over the joints at each episode's last valid frame; mean over episodes.
- Acc@5cm: the share of valid (frame, joint) positions within 5 cm.
"""

from __future__ import annotations

import numpy as np
import torch

ACC_THRESHOLD = 0.05  # metres: Acc@5cm


def joint_errors(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """[E, T, J, 3] × 2 -> L2 errors [E, T, J] (metres)."""
    if pred.shape != true.shape or pred.shape[-1] != 3:
        raise ValueError(f"pred and true must both be [E, T, J, 3], got {tuple(pred.shape)}, {tuple(true.shape)}")
    return (pred - true).norm(dim=-1)


def episode_ade(err: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-episode ADE [E] from L2 errors [E, T, J] and valid [E, T]: the mean over valid frames and joints."""
    v = valid.float()
    return (err.mean(-1) * v).sum(1) / v.sum(1).clamp_min(1)


def trajectory_scores(pred: torch.Tensor, true: torch.Tensor, valid: torch.Tensor, frames: int | None = None,
                      joints=None) -> dict:
    """{"ade", "fde", "acc5", "ade_per_frame" [frames], "acc5_per_frame" [frames]} over the first `frames`
    frames (default all) and the joint indices `joints` (default all)."""
    frames = pred.shape[1] if frames is None else frames
    pred, true = pred[:, :frames], true[:, :frames]
    if joints is not None:
        idx = torch.as_tensor(joints, dtype=torch.long, device=pred.device)
        pred, true = pred.index_select(-2, idx), true.index_select(-2, idx)
    err = joint_errors(pred, true)                                     # [E, frames, J]
    v = valid[:, :frames].float()
    per_ep = episode_ade(err, v)                                        # [E]
    last = v.sum(1).long().clamp_min(1) - 1
    fde = err[torch.arange(len(err)), last].mean(-1)                    # [E]
    hit = (err < ACC_THRESHOLD).float() * v[..., None]
    acc = hit.sum() / (v.sum() * err.shape[-1]).clamp_min(1)
    per_frame = v.sum(0).clamp_min(1)
    return {"ade": float(per_ep.mean()), "fde": float(fde.mean()), "acc5": float(acc),
            "ade_per_frame": [float(x) for x in ((err.mean(-1) * v).sum(0) / per_frame)],
            "acc5_per_frame": [float(x) for x in hit.mean(-1).sum(0) / per_frame]}


def rollout_scores(pred: torch.Tensor, true: torch.Tensor, valid: torch.Tensor, window: int) -> dict:
    """The headline scores over the first `window` frames (one predictor call: the trained horizon), plus
    "rollout" {frames: {"ade", "fde"}} for every whole number of windows in `pred` (recursive rollouts)."""
    out = trajectory_scores(pred, true, valid, window)
    out["rollout"] = {}
    for w in range(1, pred.shape[1] // window + 1):
        m = trajectory_scores(pred, true, valid, window * w)
        out["rollout"][str(window * w)] = {"ade": m["ade"], "fde": m["fde"]}
    return out


def mean_over_seeds(runs: list[dict]) -> dict:
    """`rollout_scores` of several training seeds -> their mean, with the standard deviation of ADE and FDE."""
    out = {k: float(np.mean([r[k] for r in runs])) for k in ("ade", "fde", "acc5")}
    out.update({f"{k}_std": float(np.std([r[k] for r in runs])) for k in ("ade", "fde")})
    out["rollout"] = {h: {k: float(np.mean([r["rollout"][h][k] for r in runs])) for k in ("ade", "fde")}
                      for h in runs[0]["rollout"]}
    out["ade_per_frame"] = list(np.mean([r["ade_per_frame"] for r in runs], axis=0).round(5))
    out["seeds"] = len(runs)
    if "families" in runs[0]:
        out["families"] = {f: {**{k: float(np.mean([r["families"][f][k] for r in runs])) for k in ("ade", "fde", "acc5")},
                               "rollout": {h: {k: float(np.mean([r["families"][f]["rollout"][h][k] for r in runs]))
                                               for k in ("ade", "fde")} for h in fm["rollout"]},
                               "episodes": fm["episodes"]}
                           for f, fm in runs[0]["families"].items()}
    return out


def const_velocity(past: torch.Tensor, frames: int) -> torch.Tensor:
    """The constant-velocity forecast [E, frames, J, 3] from the last two observed frames past [E, 2, J, 3]."""
    v = past[:, 1] - past[:, 0]
    k = torch.arange(1, frames + 1, dtype=v.dtype, device=v.device)[None, :, None, None]
    return past[:, 1:2] + k * v[:, None]


def trajectory_loss(pred: torch.Tensor, true: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The forecasters' trajectory loss: mean L2 (metres) over all valid frames and joints of the batch
    (pred, true [B, T, J, 3]; valid [B, T] float), differentiable."""
    err = (pred - true).norm(dim=-1).mean(-1)                          # [B, T]
    return (err * valid).sum() / valid.sum().clamp_min(1)
