"""Scene layout of the tabletop world: the camera, the table and the objects on it.

World frame (metres): x to the right, y away from the viewer, z up; the table top is the plane z = 0.
Camera frame (OpenCV, as EgoDex's intrinsics assume): x right, y down, z forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TABLE_X = (-0.24, 0.24)  # table extent along x (m)
TABLE_Y = (0.30, 0.66)   # table extent along y (m)
PLACE_X = (-0.17, 0.17)  # where objects are placed: inside the table, so the hand stays in view
COLORS: dict[str, tuple[int, int, int]] = {  # chosen far apart in RGB and from the skin tone
    "red": (205, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 205, 35),
    "purple": (140, 60, 185),
    "cyan": (40, 190, 205),
}
GRASPABLE = ("cube", "ball", "cylinder")
# Layouts: "scattered" puts objects anywhere on the table (`sample_layout`); "homes" (world v5) is a tidy table
# where every colour has its home, so a name ("the blue bowl") also says where the object is: a 3 × 2 grid,
# 11.5 cm apart across and 19 cm deep, each object within a few cm of its colour's home (`home_layout`).
LAYOUTS = ("scattered", "homes")
HOMES: dict[str, tuple[float, float]] = {
    "red": (-0.115, 0.58), "green": (0.0, 0.58), "blue": (0.115, 0.58),
    "yellow": (-0.115, 0.39), "purple": (0.0, 0.39), "cyan": (0.115, 0.39),
}
HOME_JITTER = {"bowl": 0.008, "cube": 0.02, "ball": 0.02, "cylinder": 0.02}  # half-width of the square (m)
# Half-extent used for placement, grasp height and contact (m).
SIZES = {"cube": 0.024, "ball": 0.024, "cylinder": 0.022, "bowl": 0.048}
HEIGHTS = {"cube": 0.048, "ball": 0.048, "cylinder": 0.052, "bowl": 0.026}


@dataclass
class SceneObject:
    """One object. `position` is the centre of its base on the table, [3] metres (updated when moved)."""

    shape: str
    color: str
    position: np.ndarray

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def radius(self) -> float:
        return SIZES[self.shape]

    @property
    def height(self) -> float:
        return HEIGHTS[self.shape]

    @property
    def center(self) -> np.ndarray:
        """Geometric centre [3] (what a grasp closes around)."""
        return self.position + np.array([0.0, 0.0, self.height / 2])


@dataclass(frozen=True)
class Camera:
    """A fixed pinhole camera. `pose` is camera-to-world [4, 4]; `intrinsic` is [3, 3] for `size`×`size`."""

    pose: np.ndarray
    intrinsic: np.ndarray
    size: int

    @staticmethod
    def looking_at(eye, target, size: int, focal: float = 0.95) -> "Camera":
        eye, target = np.asarray(eye, float), np.asarray(target, float)
        fwd = target - eye
        fwd /= np.linalg.norm(fwd)
        right = np.cross(fwd, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        pose = np.eye(4)
        pose[:3, :3] = np.stack([right, down, fwd], axis=1)  # columns: camera axes in world
        pose[:3, 3] = eye
        f = focal * size
        c = (size - 1) / 2  # OpenCV convention: pixel centres at integer coordinates
        K = np.array([[f, 0, c], [0, f, c], [0, 0, 1]])
        return Camera(pose=pose, intrinsic=K, size=size)

    @property
    def eye(self) -> np.ndarray:
        return self.pose[:3, 3]

    def to_camera(self, pts: np.ndarray) -> np.ndarray:
        """World points [..., 3] -> camera coordinates [..., 3]."""
        R, t = self.pose[:3, :3], self.pose[:3, 3]
        return (np.asarray(pts, float) - t) @ R

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [..., 3] -> (pixel coordinates [..., 2], pixel centres at integers; depth [...])."""
        cam = self.to_camera(pts)
        z = cam[..., 2]
        uv = cam[..., :2] / z[..., None] * self.intrinsic[0, 0] + self.intrinsic[:2, 2]
        return uv, z


def default_camera(size: int = 64) -> Camera:
    """The world's one camera: above the table's near edge, looking steeply down (about 60°)."""
    return Camera.looking_at(eye=(0.0, 0.17, 0.50), target=(0.0, 0.475, 0.0), size=size, focal=1.12)


def home_layout(rng: np.random.Generator, shapes_colors: list[tuple[str, str]]) -> list[SceneObject]:
    """Place each object near its colour's home (`HOMES`; colours must be distinct). The jitters keep even two
    bowls in neighbouring homes apart (11.5 − 2 × 0.8 cm > 2 × 4.8 cm), so no rejection is needed."""
    colors = [c for _, c in shapes_colors]
    if len(set(colors)) != len(colors):
        raise ValueError(f"the homes layout needs distinct colours, got {colors}")
    objects = []
    for shape, color in shapes_colors:
        j = HOME_JITTER[shape]
        xy = np.array(HOMES[color]) + rng.uniform(-j, j, 2)
        objects.append(SceneObject(shape, color, np.array([xy[0], xy[1], 0.0])))
    return objects


def sample_layout(rng: np.random.Generator, shapes_colors: list[tuple[str, str]],
                  min_gap: float = 0.03, restarts: int = 100) -> list[SceneObject]:
    """Place objects anywhere on the table without overlap (world v4's "scattered" layout; rejection
    sampling, restarting the layout if stuck)."""
    for _ in range(restarts):
        objects: list[SceneObject] = []
        for shape, color in shapes_colors:
            r = SIZES[shape]
            for _ in range(50):
                xy = np.array([rng.uniform(PLACE_X[0] + r, PLACE_X[1] - r),
                               rng.uniform(TABLE_Y[0] + r + 0.03, TABLE_Y[1] - r - 0.02)])
                if all(np.linalg.norm(xy - o.position[:2]) > r + o.radius + min_gap for o in objects):
                    objects.append(SceneObject(shape, color, np.array([xy[0], xy[1], 0.0])))
                    break
        if len(objects) == len(shapes_colors):
            return objects
    raise RuntimeError(f"could not place {len(shapes_colors)} objects without overlap; use fewer objects")
