"""The one container every stage of tkjepa passes around: an episode in EgoDex's vocabulary.

An `Episode` holds exactly what an EgoDex pair (`<n>.hdf5` + `<n>.mp4`) holds — frames, per-joint world
SE(3) transforms (with `camera` = camera-to-world), confidences, intrinsics and the text metadata — plus
`extras`, the ground truth our procedural world knows and EgoDex does not (actions, object positions,
subgoal timings). Real EgoDex episodes load with `extras == {}`.

Shapes: T frames, H×W pixels, J joints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

# EgoDex joint names of the right hand that the tabletop world animates (a subset of EgoDex's 68).
RIGHT_HAND_JOINTS: tuple[str, ...] = (
    "rightForearm",
    "rightHand",
    "rightThumbTip",
    "rightIndexFingerTip",
    "rightMiddleFingerTip",
    "rightRingFingerTip",
    "rightLittleFingerTip",
)
# The wrist: the joint the world's actions move and the default joint of quick statistics.
WRIST = "rightHand"

_FINGERS = tuple(f"Thumb{p}" for p in ("Knuckle", "IntermediateBase", "IntermediateTip", "Tip")) + tuple(
    f"{f}Finger{p}" for f in ("Index", "Middle", "Ring", "Little")
    for p in ("Metacarpal", "Knuckle", "IntermediateBase", "IntermediateTip", "Tip"))


def _hand(side: str) -> tuple[str, ...]:
    """One hand's 26 EgoDex joints: forearm, hand (the wrist) and its 24 finger joints."""
    return (f"{side}Forearm", f"{side}Hand") + tuple(side + f for f in _FINGERS)


# Both hands, as the paper's head predicts them: 2 × (forearm, hand, 24 finger joints) = 52.
BIMANUAL_JOINTS: tuple[str, ...] = _hand("right") + _hand("left")
# Every joint an EgoDex file tracks (68): the body's 12, each side's shoulder and arm, and both hands.
EGODEX_JOINTS: tuple[str, ...] = (("hip",) + tuple(f"spine{i}" for i in range(1, 8)) + tuple(f"neck{i}" for i in range(1, 5))
                                  + tuple(f"{s}{j}" for s in ("left", "right") for j in ("Shoulder", "Arm"))
                                  + BIMANUAL_JOINTS)
# `--joints NAME`: the joint sets a forecaster can predict.
JOINT_SETS: dict[str, tuple[str, ...]] = {"right7": RIGHT_HAND_JOINTS, "bimanual52": BIMANUAL_JOINTS}


@dataclass
class Episode:
    """One recorded episode.

    Fields:
        frames: [T, H, W, 3] uint8 RGB.
        transforms: joint name -> [T, 4, 4] float32 SE(3) pose in world coordinates (metres). Contains
            "camera" (camera-to-world) whenever the source has it.
        confidences: joint name -> [T] float32 in [0, 1].
        intrinsic: [3, 3] float32 pinhole intrinsics *for `frames` as stored in this object* (a loader that
            resizes frames rescales this too).
        task: task family; EgoDex's task folder name (e.g. "pick_place").
        instruction: natural-language description (EgoDex `llm_description`).
        environment: scene description (EgoDex `environment`).
        fps: frames per second.
        extras: world-only ground truth, e.g. "actions" [T, 4], "object_positions" [T, K, 3], "object_names"
            list[str], "subgoal_frames" [S], "subgoal_objects" [S]; {} for real EgoDex data.
        attrs: any further root attributes of the source file (e.g. `llm_description2`).
        path: where it was loaded from, if anywhere.
    """

    frames: np.ndarray
    transforms: dict[str, np.ndarray]
    confidences: dict[str, np.ndarray]
    intrinsic: np.ndarray
    task: str
    instruction: str
    environment: str = ""
    fps: float = 30.0
    extras: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def num_frames(self) -> int:
        """Length of the episode: the frames', or the poses' when frames were not loaded."""
        if self.frames.shape[0] == 0 and self.transforms:
            return int(next(iter(self.transforms.values())).shape[0])
        return int(self.frames.shape[0])

    @property
    def joint_names(self) -> list[str]:
        """Names of the tracked joints (every transform except the camera's)."""
        return [k for k in self.transforms if k != "camera"]

    def positions(self, joints: Sequence[str] | None = None) -> np.ndarray:
        """World positions [T, J, 3] of `joints` (default: all tracked joints, in stored order)."""
        names = list(joints) if joints is not None else self.joint_names
        missing = [n for n in names if n not in self.transforms]
        if missing:
            raise KeyError(f"{self.path or 'episode'}: no transforms for joints {missing}; "
                           f"available: {sorted(self.transforms)}")
        return np.stack([self.transforms[n][:, :3, 3] for n in names], axis=1).astype(np.float32)

    def positions_camera(self, joints: Sequence[str] | None = None) -> np.ndarray:
        """Positions [T, J, 3] in each frame's camera coordinates (x right, y down, z forward)."""
        if "camera" not in self.transforms:
            raise KeyError(f"{self.path or 'episode'}: no camera transform to express joints in camera frame")
        world = self.positions(joints)                              # [T, J, 3]
        cam_to_world = self.transforms["camera"].astype(np.float64)  # [T, 4, 4]
        R, t = cam_to_world[:, :3, :3], cam_to_world[:, :3, 3]
        # world = R @ cam + t  =>  cam = R^T (world - t)
        cam = np.einsum("tji,tkj->tki", R, world - t[:, None, :])
        return cam.astype(np.float32)

    def project(self, joints: Sequence[str] | None = None) -> np.ndarray:
        """Pixel coordinates [T, J, 2] (u, v) of `joints` in `frames`, through `intrinsic`."""
        cam = self.positions_camera(joints).astype(np.float64)
        uvw = cam @ self.intrinsic.astype(np.float64).T
        return (uvw[..., :2] / uvw[..., 2:3]).astype(np.float32)


def square_intrinsic(K: np.ndarray, W: int, H: int, size: int) -> np.ndarray:
    """Intrinsics after a centre crop to min(W, H)² and a resize to size² (pixel-centre convention)."""
    S = min(W, H)
    x0, y0, s = (W - S) // 2, (H - S) // 2, size / S
    K = K.astype(np.float64).copy()
    K[0, 2] -= x0
    K[1, 2] -= y0
    K[0, 0] *= s
    K[1, 1] *= s
    # Pixel centres sit at (i + 0.5) in continuous coordinates, so centres scale about -0.5.
    K[:2, 2] = (K[:2, 2] + 0.5) * s - 0.5
    return K.astype(np.float32)
