"""A tabletop episode dressed as a full EgoDex recording: non-square video, all 68 joints, both hands.

Real EgoDex files differ from the tabletop's in three ways a loader and a forecaster must survive: the video
is wide (1920×1080), every joint of the upper body is tracked, and the world's ground truth (`extras`) does not
exist. `as_recording(ep, (H, W))` turns a tabletop episode into such a file without a new renderer:

- frames: scaled to height H and letterboxed to width W with the frame's own edge colours, so the loader's
  centre crop recovers the rendered square (intrinsics shifted and scaled to match);
- joints: the 7 animated right-hand joints, the other 19 finger joints of the right hand placed along each
  wrist → fingertip line (metacarpal, knuckle, intermediate base/tip at 1/5 … 4/5; the thumb's at 1/4 … 3/4),
  the left hand as the right hand mirrored about the plane x = `MIRROR_X` (so both hands move), and the
  body's 16 joints still, behind the table; every pose a rigid transform with the identity rotation;
- metadata: task, instruction and environment kept, `extras` dropped (a real recording has none).

`tkjepa generate --recording 144x256` writes such folders, for the tests and for trying the real-data path
(`--joints bimanual52`, a V-JEPA 2 encoder) on a laptop.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image

from tkjepa.episode import EGODEX_JOINTS, Episode

MIRROR_X = 0.0  # the left hand mirrors the right one about this plane (world x, metres)
_BODY = {  # still body joints (world metres), behind the near edge of the table
    **{f"spine{i}": (0.0, -0.45, 0.10 + 0.05 * i) for i in range(1, 8)},
    "hip": (0.0, -0.45, 0.05), **{f"neck{i}": (0.0, -0.45, 0.47 + 0.03 * i) for i in range(1, 5)},
    "leftShoulder": (-0.18, -0.42, 0.42), "rightShoulder": (0.18, -0.42, 0.42),
    "leftArm": (-0.22, -0.40, 0.30), "rightArm": (0.22, -0.40, 0.30),
}
_FINGER_PARTS = ("Metacarpal", "Knuckle", "IntermediateBase", "IntermediateTip")
_THUMB_PARTS = ("Knuckle", "IntermediateBase", "IntermediateTip")


def _letterbox(frames: np.ndarray, H: int, W: int) -> tuple[np.ndarray, float, int]:
    """[T, S, S, 3] -> [T, H, W, 3]: scaled to height H, padded left and right with each row's edge colour.
    Returns the frames, the scale and the left padding (pixels)."""
    T, S = frames.shape[0], frames.shape[1]
    if W < H:
        raise ValueError(f"a recording is wider than tall (EgoDex: 1920×1080), got {H}×{W}")
    scaled = np.stack([np.asarray(Image.fromarray(f).resize((H, H), Image.BILINEAR)) for f in frames])
    left = (W - H) // 2
    out = np.empty((T, H, W, 3), np.uint8)
    out[:, :, left:left + H] = scaled
    out[:, :, :left] = scaled[:, :, :1]
    out[:, :, left + H:] = scaled[:, :, -1:]
    return out, H / S, left


def _pose(p: np.ndarray) -> np.ndarray:
    """positions [T, 3] -> identity-rotation transforms [T, 4, 4] float32."""
    m = np.repeat(np.eye(4, dtype=np.float32)[None], len(p), axis=0)
    m[:, :3, 3] = p
    return m


def as_recording(ep: Episode, video_hw: tuple[int, int] = (144, 256)) -> Episode:
    """`ep` (a tabletop episode) as an EgoDex recording with H×W video and the 68 joints (module doc)."""
    H, W = video_hw
    if H % 2 or W % 2:
        raise ValueError(f"H.264 needs an even video size, got {H}×{W}")
    frames, scale, left = _letterbox(ep.frames, H, W)
    K = ep.intrinsic.astype(np.float64).copy()
    K[:2] *= scale                     # pixel-centre convention: (c + 0.5)·s − 0.5
    K[0, 2] += 0.5 * scale - 0.5 + left
    K[1, 2] += 0.5 * scale - 0.5
    pos = {n: ep.transforms[n][:, :3, 3].astype(np.float64) for n in ep.joint_names}
    wrist = pos["rightHand"]
    for finger in ("Index", "Middle", "Ring", "Little"):
        tip = pos[f"right{finger}FingerTip"]
        for k, part in enumerate(_FINGER_PARTS, start=1):
            pos[f"right{finger}Finger{part}"] = wrist + k / 5 * (tip - wrist)
    for k, part in enumerate(_THUMB_PARTS, start=1):
        pos[f"rightThumb{part}"] = wrist + k / 4 * (pos["rightThumbTip"] - wrist)
    for name in [n for n in pos if n.startswith("right")]:
        mirrored = pos[name].copy()
        mirrored[:, 0] = 2 * MIRROR_X - mirrored[:, 0]
        pos["left" + name[len("right"):]] = mirrored
    T = ep.num_frames
    for name, p in _BODY.items():
        pos.setdefault(name, np.repeat(np.asarray(p, float)[None], T, axis=0))
    transforms = {n: _pose(pos[n]) for n in EGODEX_JOINTS}
    if "camera" in ep.transforms:
        transforms["camera"] = ep.transforms["camera"]
    conf = {n: np.ones(T, np.float32) for n in EGODEX_JOINTS}
    return replace(ep, frames=frames, transforms=transforms, confidences=conf, intrinsic=K.astype(np.float32),
                   extras={}, attrs={})
