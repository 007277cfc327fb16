"""The planner's state, actions and proprioception: what the world model reads and the planner searches over.

State. The planner's state is the frozen encoder's *frame latent*: the encoding of one frame shown as a
still clip (the frame repeated 8 times; last tubelet), pooled 2×2 and layer-normed per token as
`forecast.data.pooled_tokens` does: `z [N=16, D=96]`. Tubelet j's state is the latent of its last frame 2j+1.
Why a still clip and not the sliding 8-frame window: the window's latent also encodes the motion inside the
window, and measured on play data, the window latents of consecutive tubelets of a nearly still hand
(< 0.6 cm per frame) differed by a mean L1 of 0.14 — about the energy between hand positions 10 cm apart. A
goal frame and a predicted state must be comparable as *states*: a frame latent is a function of the frame
alone, the same scene gives the same latent, and a goal image is encoded exactly like an observation.

Actions. Action pair j = the env actions (a_{2j−1}, a_{2j}) that produce tubelet j's two frames, normalised
to [−1, 1] (displacements / MAX_STEP, grip·2 − 1): `[8]`, the forecasting data's two-frames-per-tubelet layout.
The planner's own action space is u ∈ [−1, 1]^4 per tubelet, the same action for both frames (`env_action`).

Proprioception (V-JEPA 2-AC's end-effector state): each tubelet's input also carries the wrist position at its
last frame, normalised to the workspace box (`wrist_features`, `[3]`): `[11]` in all. The robot knows where its
own hand is, and for a candidate action sequence where it *will* be (`wrist_path`), so the world model is told
where to draw the hand and spends its capacity on how the scene looks there. Like a robot's joint limits, the
planner keeps every sampled path inside `WORKSPACE`, the part of the table the camera sees
(`keep_in_workspace`): a hand out of view differs from a goal frame in one place (the goal's hand is missing),
a hand in the wrong place in two, so without the bound the search learns to hide the hand.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from tkjepa.encoder import frames_to_video
from tkjepa.world import hand
from tkjepa.world.env import MAX_STEP

CLIP = 8        # frames per encoder call (the encoder's pretraining clip length)
POOL = 2        # 8×8 encoder tokens -> 4×4
ACTION_DIM = 8  # two frames × [dx, dy, dz, grip] per tubelet
STATE_DIM = 3   # proprioception: the wrist position at the tubelet's last frame
WORKSPACE = (np.array([-0.21, 0.26, hand.MIN_WRIST_Z]), np.array([0.21, 0.62, 0.25]))  # wrist box in view (m)


# -- latents ---------------------------------------------------------------------------------------------
@torch.no_grad()
def frame_latents(encoder, frames: np.ndarray, indices=None, batch: int = 32, pool: bool = True) -> torch.Tensor:
    """frames [T, H, W, 3] uint8 -> latents [len(indices), N, D] of frames `indices` (default: all), each
    encoded alone as a still clip. Reads no frame but the ones indexed. `pool=False`: the encoder's own
    8 × 8 tokens (N = 64), not pooled 2 × 2 to the 4 × 4 the world model and planner use."""
    indices = range(len(frames)) if indices is None else indices
    out = []
    for i in range(0, len(indices), batch):
        still = np.repeat(frames[list(indices[i:i + batch])][:, None], CLIP, axis=1)  # [b, 8, H, W, 3]
        z = encoder(frames_to_video(still))[:, -1]                                 # [b, 64, D]
        if pool:
            g = int(round(z.shape[1] ** 0.5))
            z = F.avg_pool2d(rearrange(z, "b (h w) d -> b d h w", h=g), POOL)
            z = rearrange(z, "b d h w -> b (h w) d")
        out.append(F.layer_norm(z, (z.shape[-1],)))
    return torch.cat(out)


def tubelet_states(encoder, frames: np.ndarray) -> torch.Tensor:
    """frames [T, H, W, 3] (T even) -> states [T/2, N, D]: tubelet j's is the latent of frame 2j+1."""
    return frame_latents(encoder, frames, range(1, len(frames), 2))


def normalize_actions(actions: np.ndarray) -> np.ndarray:
    """Env actions [..., 4] -> [..., 4] in [−1, 1]: displacement / MAX_STEP, grip·2 − 1."""
    a = np.asarray(actions, np.float32)
    return np.concatenate([np.clip(a[..., :3] / MAX_STEP, -1, 1), a[..., 3:] * 2 - 1], -1)


def wrist_features(wrist) -> np.ndarray:
    """Wrist positions [..., 3] (m) -> [..., 3], the workspace box mapped to [−1, 1]."""
    lo, hi = WORKSPACE
    return ((np.asarray(wrist, np.float64) - (lo + hi) / 2) / ((hi - lo) / 2)).astype(np.float32)


def action_pairs(actions: np.ndarray) -> np.ndarray:
    """Per-frame env actions [T, 4] (a_t makes frame t+1) -> normalised pairs [T/2, 8]; pair j makes tubelet j.

    Pair 0's first action precedes the episode: a no-op (still, grip open).
    """
    a = normalize_actions(actions)
    first = normalize_actions(np.zeros(4))[None]
    prev = np.concatenate([first, a[:-1]])                                    # a_{t-1}
    return rearrange(prev, "(j two) a -> j (two a)", two=2)


def keep_in_workspace(u: torch.Tensor, wrist, box=WORKSPACE) -> torch.Tensor:
    """u [S, H, 4] -> u with each tubelet's displacement shortened so the wrist path (2 frames per tubelet,
    from `wrist` [3]) stays in the box; grip untouched."""
    lo, hi = (torch.as_tensor(b, dtype=u.dtype) for b in box)
    pos, out = torch.as_tensor(np.asarray(wrist), dtype=u.dtype).expand(u.shape[0], 3), u.clone()
    for k in range(u.shape[1]):
        nxt = torch.minimum(torch.maximum(pos + 2 * MAX_STEP * u[:, k, :3], lo), hi)
        out[:, k, :3] = (nxt - pos) / (2 * MAX_STEP)
        pos = nxt
    return out


def wrist_path(u: torch.Tensor, wrist) -> torch.Tensor:
    """u [S, H, 4] (kept in the workspace) -> the wrist [S, H, 3] at the end of each tubelet, from `wrist` [3]:
    each action moves it by its displacement, twice per tubelet (the env's kinematics inside the workspace)."""
    start = torch.as_tensor(np.asarray(wrist), dtype=u.dtype)
    return start + torch.cumsum(2 * MAX_STEP * u[..., :3], dim=1)


def env_action(u) -> np.ndarray:
    """u [4] in [−1, 1] -> the env action [dx, dy, dz, grip]."""
    u = np.asarray(u, float)
    return np.concatenate([u[:3] * MAX_STEP, [(u[3] + 1) / 2]])
