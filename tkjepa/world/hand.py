"""The right hand: EgoDex joint positions from two controls, the wrist position and a grip in [0, 1].

The palm faces down and the fingers point away from the viewer (+y), so a grasp closes the fingertips
around a point below and in front of the wrist (`GRASP_OFFSET`). Positions are world metres.
"""

from __future__ import annotations

import numpy as np

# wrist -> point between thumb and fingers where a grasped object's centre sits.
GRASP_OFFSET = np.array([0.0, 0.050, -0.042])
FOREARM_OFFSET = np.array([0.035, -0.125, 0.075])
# Fingertips relative to the wrist, open (grip 0) and closed around the grasp point (grip 1).
_OPEN = {
    "rightThumbTip": (-0.042, 0.030, -0.018),
    "rightIndexFingerTip": (-0.022, 0.082, -0.024),
    "rightMiddleFingerTip": (0.000, 0.088, -0.026),
    "rightRingFingerTip": (0.020, 0.082, -0.024),
    "rightLittleFingerTip": (0.037, 0.066, -0.020),
}
_CLOSED = {
    "rightThumbTip": (-0.024, 0.048, -0.044),
    "rightIndexFingerTip": (-0.010, 0.066, -0.048),
    "rightMiddleFingerTip": (0.004, 0.068, -0.050),
    "rightRingFingerTip": (0.016, 0.064, -0.048),
    "rightLittleFingerTip": (0.026, 0.056, -0.044),
}
FINGERTIPS = tuple(_OPEN)
INDEX_TIP_OPEN = np.array(_OPEN["rightIndexFingerTip"])
# Lowest wrist height that keeps the closed fingertips above the table.
MIN_WRIST_Z = 0.052


def hand_joints(wrist: np.ndarray, grip: float) -> dict[str, np.ndarray]:
    """Joint positions {EgoDex name: [3]} for a wrist position [3] and grip in [0, 1]."""
    wrist = np.asarray(wrist, float)
    joints = {"rightForearm": wrist + FOREARM_OFFSET, "rightHand": wrist.copy()}
    for name in FINGERTIPS:
        tip = (1 - grip) * np.array(_OPEN[name]) + grip * np.array(_CLOSED[name])
        joints[name] = wrist + tip
    return joints


def grasp_point(wrist: np.ndarray) -> np.ndarray:
    return np.asarray(wrist, float) + GRASP_OFFSET
