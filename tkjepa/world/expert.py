"""The scripted expert: waypoints per task, minimum-jerk motion between them, executed in `TabletopEnv`.

Timing is the point of the world. Each task has a *decision point*: the moment the hand has finished one
subgoal (holding the lifted cube; just touched the first object; hovering over the object to push) and
has not begun the next. The expert waits there, hovering still, until the episode's middle — the
forecast start — and sets off on the very next frame, so the last observed frames show a hand at rest
whose next destination (which bowl? which object?) only the instruction, or an early visual cue, can tell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tkjepa.world import hand
from tkjepa.world.scene import SceneObject
from tkjepa.world.tasks import Task

HOVER = 0.095  # lift above a grasp/touch pose (m)


@dataclass
class Segment:
    """Move the wrist to `target` [3] over `frames` frames commanding `grip`, then hold `hold` frames."""

    target: np.ndarray
    grip: float
    frames: int
    hold: int
    subgoal: int           # index of the subgoal this segment works toward
    completes: bool = False  # the subgoal is achieved when this segment's motion ends
    min_frames: int = 3      # fewest frames that keep the minimum-jerk peak speed under the env's limit


def grasp_pose(obj: SceneObject) -> np.ndarray:
    """Wrist position that puts the grasp point at the object's centre."""
    return grasp_pose_at(obj.position, obj.height)


def grasp_pose_at(base: np.ndarray, height: float) -> np.ndarray:
    return np.asarray(base, float) + np.array([0.0, 0.0, height / 2]) - hand.GRASP_OFFSET


def touch_pose(obj: SceneObject) -> np.ndarray:
    """Wrist position that rests the open index fingertip on the object's top."""
    return obj.position + np.array([0.0, 0.0, obj.height + 0.004]) - hand.INDEX_TIP_OPEN


def plan(task: Task, objects: list[SceneObject], rng: np.random.Generator) -> tuple[list[Segment], int]:
    """Segments of the whole task and how many of them come before the decision point."""
    up = np.array([0.0, 0.0, HOVER])
    dur = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    z = lambda p: np.array([p[0], p[1], max(p[2], hand.MIN_WRIST_Z)])  # noqa: E731
    if task.family in ("pick_place", "marked_pick_place"):
        obj, bowl = objects[task.subgoals[0][1]], objects[task.subgoals[1][1]]
        g = z(grasp_pose(obj))
        above_bowl = bowl.position + np.array([0.0, 0.0, bowl.height + obj.height / 2 + 0.03]) - hand.GRASP_OFFSET
        pre = [Segment(g + up, 0.0, dur(7, 10), 0, 0), Segment(g, 0.0, dur(4, 5), 1, 0),
               Segment(g, 1.0, 3, 1, 0, completes=True), Segment(g + up, 1.0, dur(5, 6), 0, 0)]
        post = [Segment(above_bowl, 1.0, dur(9, 12), 0, 1), Segment(above_bowl, 0.0, 3, 1, 1, completes=True),
                Segment(above_bowl + 0.8 * up, 0.0, dur(5, 6), 0, 1)]
        return pre + post, len(pre)
    if task.family == "touch_sequence":
        segs = []
        for k, (_, i) in enumerate(task.subgoals):
            t = z(touch_pose(objects[i]))
            segs += [Segment(t + up, 0.0, dur(7, 10), 0, k), Segment(t, 0.0, dur(4, 5), 1, k, completes=True),
                     Segment(t + up, 0.0, dur(4, 5), 0, k)]
        return segs, 3
    obj, bowl = objects[task.subgoals[0][1]], objects[task.subgoals[1][1]]
    d = bowl.position[:2] - obj.position[:2]
    d /= np.linalg.norm(d)
    goal = bowl.position[:2] - d * (bowl.radius + obj.radius + 0.012)

    def wrist_at(g_xy, g_z):  # wrist pose that puts the grasp point at (g_xy, g_z)
        return z(np.array([g_xy[0], g_xy[1], g_z]) - hand.GRASP_OFFSET)

    pre = [Segment(wrist_at(obj.position[:2], 0.10), 0.0, dur(8, 11), 0, 0, completes=True)]
    behind = obj.position[:2] - d * (obj.radius + 0.03)
    post = [Segment(wrist_at(behind, 0.08), 0.0, dur(6, 7), 0, 1), Segment(wrist_at(behind, 0.018), 0.0, 4, 0, 1),
            Segment(wrist_at(goal - d * (obj.radius + 0.016), 0.018), 0.0, dur(9, 12), 0, 1, completes=True),
            Segment(wrist_at(goal - d * (obj.radius + 0.04), 0.10), 0.0, dur(4, 5), 0, 1)]
    return pre + post, len(pre)


def set_speed_limits(start: np.ndarray, segments: list[Segment], max_step: float) -> None:
    """Lengthen segments whose minimum-jerk peak speed (1.875 × mean) would exceed 90% of `max_step`."""
    cur = np.asarray(start, float)
    for s in segments:
        dist = float(np.linalg.norm(s.target - cur))
        s.min_frames = max(3, int(np.ceil(1.875 * dist / (0.9 * max_step))))
        s.frames = max(s.frames, s.min_frames)
        cur = s.target


def fit_timing(segments: list[Segment], n_pre: int, decision: int, num_frames: int) -> int:
    """Stretch/squeeze durations in place so the decision point falls at frame `decision` (or as soon
    after it as the speed limit allows); returns the decision frame used."""
    pre, post = segments[:n_pre], segments[n_pre:]
    decision = max(decision, sum(s.min_frames + s.hold for s in pre))
    _scale(pre, decision)
    used = sum(s.frames + s.hold for s in pre)
    pre[-1].hold += decision - used  # wait at the decision point
    if post:
        _scale(post, num_frames - 1 - decision - 2)
        post[-1].hold += num_frames - 1 - decision - sum(s.frames + s.hold for s in post)
    return decision


def _scale(segs: list[Segment], budget: int) -> None:
    total = sum(s.frames + s.hold for s in segs)
    if total <= budget:
        return
    for s in segs:
        s.frames = max(s.min_frames, int(np.floor(s.frames * budget / total)))
    while sum(s.frames + s.hold for s in segs) > budget:
        longest = max(segs, key=lambda s: s.frames - s.min_frames)
        if longest.frames <= longest.min_frames:
            raise ValueError(f"task does not fit in the episode: shorten it or use more frames (budget {budget})")
        longest.frames -= 1


def desired_path(start: np.ndarray, segments: list[Segment]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame wrist targets [N, 3] and grip commands [N] after `start` (minimum-jerk between waypoints)."""
    pos, grips, cur = [], [], np.asarray(start, float)
    for s in segments:
        tau = np.arange(1, s.frames + 1) / s.frames
        blend = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
        pos.append(cur + blend[:, None] * (s.target - cur))
        pos.append(np.repeat(s.target[None], s.hold, axis=0))
        grips.append(np.full(s.frames + s.hold, s.grip))
        cur = s.target
    return np.concatenate(pos), np.concatenate(grips)


def subgoal_timings(segments: list[Segment], num_subgoals: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames where each subgoal's motion starts and where it is achieved."""
    start, end = np.full(num_subgoals, -1), np.full(num_subgoals, -1)
    t = 0
    for s in segments:
        if start[s.subgoal] < 0:
            start[s.subgoal] = t
        if s.completes:
            end[s.subgoal] = t + s.frames
        t += s.frames + s.hold
    return start, end
