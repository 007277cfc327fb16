"""What an episode's row is scored against or told, besides the encoder's tokens: the future joints, the
observed ones, the expert's actions, the oracle's one-hots of the true next subgoal and the grounding
pointer's target cell (`forecast.data` documents every field). Needs the episode's annotations, never its video.
Every `cfg` is a `forecast.data.ForecastConfig` (not imported: `forecast.data` imports this module).
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange

from tkjepa.episode import WRIST, Episode
from tkjepa.world.scene import COLORS, HEIGHTS
from tkjepa.world.stats import next_subgoal

SUBGOAL_KINDS = ("grasp", "place", "touch", "approach", "push")
ORACLE_DIM = len(SUBGOAL_KINDS) + len(COLORS) + len(HEIGHTS)


def subgoal_onehot(kind: str, name: str) -> torch.Tensor:
    """[ORACLE_DIM]: one-hots of a subgoal's kind and its object's colour and shape ("red cube")."""
    colour, shape = name.split()[-2:]
    v = torch.zeros(ORACLE_DIM)
    v[SUBGOAL_KINDS.index(kind)] = 1
    v[len(SUBGOAL_KINDS) + list(COLORS).index(colour)] = 1
    v[len(SUBGOAL_KINDS) + len(COLORS) + list(HEIGHTS).index(shape)] = 1
    return v


def point_cell(ep: Episode, s: int, fut: np.ndarray, cfg) -> int:
    """The grounding pointer's target for forecast start s: the cell where the next subgoal's object is seen at
    s − 1 (episodes with subgoal annotations: the tabletop's), else where the wrist is seen at target frame
    `cfg.point_frame` (any episode with a camera pose); −1 when neither is known."""
    if ep.extras.get("subgoal_end") is not None and "object_positions" in ep.extras:
        k = next_subgoal(ep, s)
        obj = np.asarray(ep.extras["object_positions"][s - 1, int(ep.extras["subgoal_objects"][k])], np.float64)
        return image_cell(ep, obj, s - 1, cfg.grid)
    if cfg.point_frame >= len(fut) or fut[cfg.point_frame] >= ep.num_frames:
        return -1
    t = int(fut[cfg.point_frame])
    return image_cell(ep, ep.positions([WRIST])[t, 0].astype(np.float64), t, cfg.grid)


def image_cell(ep: Episode, point: np.ndarray, t: int, grid: int) -> int:
    """The cell (row-major) of a grid × grid split of frame t where the world point [3] is seen, or −1 when it
    is outside the image or behind the camera, or the episode has no camera pose."""
    if "camera" not in ep.transforms:
        return -1
    pose = ep.transforms["camera"][t].astype(np.float64)          # camera-to-world
    cam = (point - pose[:3, 3]) @ pose[:3, :3]
    if cam[2] <= 0:
        return -1
    u, v = (ep.intrinsic.astype(np.float64) @ cam)[:2] / cam[2]
    H, W = ep.frames.shape[1:3]
    col, row = int(np.floor((u + 0.5) / W * grid)), int(np.floor((v + 0.5) / H * grid))
    return row * grid + col if 0 <= col < grid and 0 <= row < grid else -1


def episode_targets(ep: Episode, cfg, obs: np.ndarray, fut: np.ndarray, s: int) -> dict:
    """Everything of an episode's row but the encoder's tokens (targets, observed joints, actions, oracle,
    camera), for observed frames `obs`, target frames `fut` and forecast start `s`: needs no video."""
    T = ep.num_frames
    Tr = cfg.future_tubelets
    pos = ep.positions(cfg.joints)                              # [T, J, 3]
    camera = None
    if cfg.coords == "camera":  # x_cam = Rᵀ (x_world − t), with the camera-to-world pose at the last observed frame
        camera = ep.transforms["camera"][obs[-1]].astype(np.float64)
        pos = (pos - camera[:3, 3]) @ camera[:3, :3]
    pos = torch.from_numpy(np.ascontiguousarray(pos)).float()
    acts = np.zeros((2 * Tr, 4), np.float32)
    a = ep.extras.get("actions")
    if a is not None:
        ok = fut < len(a)
        acts[ok] = np.asarray(a)[fut[ok]]
    oracle, has_oracle = torch.zeros(ORACLE_DIM), False
    if ep.extras.get("subgoal_end") is not None:
        k = next_subgoal(ep, s)
        kind, target = ep.extras["subgoal_kinds"][k], int(ep.extras["subgoal_objects"][k])
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        name = ep.extras["object_names"][target]
        oracle = subgoal_onehot(kind, name.decode() if isinstance(name, bytes) else str(name))
        has_oracle = True
    out = {"traj": pos[np.minimum(fut, T - 1)], "valid": torch.from_numpy(fut < T),
           "past": pos[obs[-2:]], "actions": torch.from_numpy(rearrange(acts, "(t two) a -> t (two a)", two=2)),
           "oracle": oracle, "has_oracle": torch.tensor(has_oracle)}
    if camera is not None:
        out["camera"] = torch.from_numpy(camera).float()
    return out
