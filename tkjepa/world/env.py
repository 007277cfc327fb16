"""The interactive tabletop environment: state, kinematic physics and success checks.

Action (per frame): `[dx, dy, dz, grip]` — the wrist's displacement in metres (clipped to `MAX_STEP`) and a
grip command in [0, 1] (0 open, 1 closed). The physics is kinematic and deterministic: closing the grip
near an object attaches it to the grasp point; opening drops it (into a bowl when above one); an open
hand low on the table pushes objects out of its way; an open index fingertip on an object's top touches it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from tkjepa.world import hand
from tkjepa.world.scene import TABLE_X, TABLE_Y, Camera, SceneObject, default_camera
from tkjepa.world.tasks import Task, sample_task

MAX_STEP = 0.06   # m per frame (0.9 m/s at 15 fps)
GRIP_RATE = 0.34  # largest grip change per frame
FALL_STEP = 0.03  # m per frame


@dataclass
class WorldState:
    objects: list[SceneObject]
    wrist: np.ndarray
    grip: float = 0.0
    held: int = -1                  # index of the attached object, -1 if none
    touched: list[int] = field(default_factory=list)
    t: int = 0


class TabletopEnv:
    """`reset(seed)` → frame, `step(action)` → frame, `render()`, `success()`; deterministic by seed."""

    def __init__(self, size: int = 64, family: str | None = None, num_frames: int = 64, layout: str = "scattered"):
        from tkjepa.world.render import Renderer  # noqa: PLC0415  (render imports hand/scene only)

        self.camera: Camera = default_camera(size)
        self.renderer = Renderer(self.camera)
        self.family, self.num_frames, self.layout = family, num_frames, layout
        self.state: WorldState | None = None
        self.task: Task | None = None

    # -- episode control ---------------------------------------------------------------------------
    def reset(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        objects, self.task = sample_task(rng, self.family, self.num_frames, self.layout)
        start = np.array([rng.uniform(-0.06, 0.06), rng.uniform(0.30, 0.36), rng.uniform(0.15, 0.19)])
        self.state = WorldState(objects=objects, wrist=start)
        return self.render()

    def clone_state(self) -> WorldState:
        return copy.deepcopy(self.state)

    def step(self, action) -> np.ndarray:
        s = self._require_state()
        a = np.asarray(action, float)
        if a.shape != (4,) or not np.all(np.isfinite(a)):
            raise ValueError(f"action must be 4 finite numbers [dx, dy, dz, grip], got {action!r}")
        prev_grip, prev_wrist = s.grip, s.wrist.copy()
        s.wrist = s.wrist + np.clip(a[:3], -MAX_STEP, MAX_STEP)
        s.wrist[0] = np.clip(s.wrist[0], TABLE_X[0] - 0.05, TABLE_X[1] + 0.05)
        s.wrist[1] = np.clip(s.wrist[1], TABLE_Y[0] - 0.12, TABLE_Y[1])
        s.wrist[2] = np.clip(s.wrist[2], hand.MIN_WRIST_Z, 0.30)
        s.grip = float(np.clip(s.grip + np.clip(a[3] - s.grip, -GRIP_RATE, GRIP_RATE), 0.0, 1.0))
        g = hand.grasp_point(s.wrist)
        if s.held < 0 and s.grip >= 0.6 > prev_grip:
            self._try_grasp(g)
        elif s.held >= 0 and s.grip < 0.4:
            s.held = -1
        if s.held >= 0:
            obj = s.objects[s.held]
            obj.position = g - np.array([0.0, 0.0, obj.height / 2])
        self._settle()
        if s.grip < 0.5 and s.held < 0:
            self._push(g, s.wrist - prev_wrist)
            self._touch(s.wrist + hand.INDEX_TIP_OPEN)
        s.t += 1
        return self.render()

    def render(self, cue: bool | None = None) -> np.ndarray:
        """[H, W, 3] uint8 frame. `cue` defaults to the task's cue window."""
        s = self._require_state()
        if cue is None:
            lo, hi = self.task.cue_frames
            cue = lo <= s.t < hi
        return self.renderer.render(s, cue_object=self.task.cue_object if cue else -1)

    def joints(self) -> dict[str, np.ndarray]:
        s = self._require_state()
        return hand.hand_joints(s.wrist, s.grip)

    # -- success -----------------------------------------------------------------------------------
    def success(self) -> bool:
        s, task = self._require_state(), self.task
        kind, first = task.subgoals[0]
        if task.family in ("pick_place", "marked_pick_place"):
            return s.held < 0 and self.in_bowl(first, task.goal_bowl)
        if task.family == "touch_sequence":
            order = [i for _, i in task.subgoals]
            return s.touched[-len(order):] == order if len(s.touched) >= len(order) else False
        obj, bowl = s.objects[first], s.objects[task.goal_bowl]
        gap = np.linalg.norm(obj.position[:2] - bowl.position[:2]) - bowl.radius - obj.radius
        return bool(gap < 0.03)

    def progress(self) -> int | None:
        """Index of the subgoal the true state says is next (the last once the task succeeds): the grasp until
        the first object is held, then the place (pick_place, marked_pick_place); the first object of the touch
        order not yet touched in order (touch_sequence: the longest prefix touched so far). None for push, whose
        progress has no event of its own."""
        s, task = self._require_state(), self.task
        if self.success():
            return len(task.subgoals) - 1
        if task.family in ("pick_place", "marked_pick_place"):
            return 1 if s.held == task.subgoals[0][1] else 0
        if task.family == "touch_sequence":
            order, done = [i for _, i in task.subgoals], 0
            for i in s.touched:
                done = done + 1 if done < len(order) and i == order[done] else (1 if i == order[0] else 0)
            return min(done, len(order) - 1)
        return None

    def in_bowl(self, obj_index: int, bowl_index: int) -> bool:
        obj, bowl = self.state.objects[obj_index], self.state.objects[bowl_index]
        return bool(np.linalg.norm(obj.position[:2] - bowl.position[:2]) < bowl.radius * 0.8
                    and obj.position[2] < bowl.height)

    # -- physics -----------------------------------------------------------------------------------
    def _require_state(self) -> WorldState:
        if self.state is None:
            raise RuntimeError("call reset(seed) before using the environment")
        return self.state

    def _try_grasp(self, g: np.ndarray) -> None:
        s = self.state
        dists = [np.linalg.norm(o.center - g) if o.shape != "bowl" else np.inf for o in s.objects]
        i = int(np.argmin(dists))
        if dists[i] < 0.035:
            s.held = i

    def _settle(self) -> None:
        """Objects not held fall to rest: on the table, or inside a bowl they are above."""
        s = self.state
        for i, o in enumerate(s.objects):
            if i == s.held or o.shape == "bowl":
                continue
            rest = 0.0
            for b in s.objects:
                if b.shape == "bowl" and np.linalg.norm(o.position[:2] - b.position[:2]) < b.radius * 0.8:
                    rest = 0.006
            if o.position[2] > rest:
                o.position[2] = max(rest, o.position[2] - FALL_STEP)

    def _push(self, g: np.ndarray, move: np.ndarray) -> None:
        """The open hand, low over the table, acts as a paddle ~6 cm wide: objects it sweeps into from
        outside are carried ahead of the grasp point along the motion. A point contact would be unstable
        (the object slides off sideways); vertical motion (a grasp's descent) pushes nothing."""
        step = move[:2]
        dist = np.linalg.norm(step)
        if dist < 0.003 or abs(move[2]) > dist:
            return
        u = step / dist
        for o in self.state.objects:
            if o.shape == "bowl" or g[2] > o.height + 0.01:
                continue
            rel = o.position[:2] - g[:2]
            along, reach = rel @ u, o.radius + 0.016
            lateral = np.linalg.norm(rel - along * u)
            if lateral < 0.03 and along < reach and along + dist >= 0.75 * reach:
                o.position[:2] += u * (reach - along)

    def _touch(self, tip: np.ndarray) -> None:
        s = self.state
        for i, o in enumerate(s.objects):
            top = o.position + np.array([0.0, 0.0, o.height])
            if np.linalg.norm(tip[:2] - top[:2]) < o.radius and abs(tip[2] - top[2]) < 0.012:
                if not s.touched or s.touched[-1] != i:
                    s.touched.append(i)
