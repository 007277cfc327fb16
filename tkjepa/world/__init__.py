"""The tabletop world: a procedural 3D hand-manipulation world rendered with numpy.

Why it exists: ThinkJEPA's claim is that a dense JEPA predictor, seeing only the last few frames, cannot
know *where* a hand goes next when the destination was decided by something it cannot see — the
instruction, or a cue early in the episode — while a thinker reading a long, sparse clip plus the prompt
can. This world is built so that claim is testable on a laptop:

- Scenes: a table with 4–5 objects — 2–3 graspable ones (cube / ball / cylinder) and 2–3 bowls of
  distinct colours (shapes repeat, so colour matters); a fixed pinhole camera; a right hand with EgoDex
  joint names, drawn with perspective and a shadow cast to the front left, so its height shows (as the
  hand-to-shadow offset).
- Tasks (`tasks.FAMILIES`): `pick_place` ("pick up the red cube and put it in the blue bowl"),
  `marked_pick_place` (the bowl is highlighted only in the first frames and named "the marked bowl"),
  `touch_sequence` ("touch the green ball, then the yellow cube"), `push` ("push the purple cylinder to the
  red bowl").
- Information structure: the expert pauses at a *decision point* — object grasped and lifted, first
  object touched, hand hovering over the object to push — and leaves it exactly at the episode's middle
  (the forecast start, as the official code splits episodes at T//2). The last observed frames then show
  a still hand; the next destination is fixed by the instruction (or the early cue) and not by the
  recent motion. `tkjepa.world.stats.ambiguity_report` measures this: see lesson 00.
"""

from tkjepa.world.env import TabletopEnv, WorldState
from tkjepa.world.generate import (WorldConfig, dataset_episodes, episode_seed, generate_episode, generate_episodes,
                                   write_dataset)
from tkjepa.world.scene import Camera, SceneObject, default_camera
from tkjepa.world.tasks import FAMILIES, Task, sample_task

__all__ = [
    "FAMILIES", "Camera", "SceneObject", "TabletopEnv", "Task", "WorldConfig", "WorldState",
    "dataset_episodes", "default_camera", "episode_seed", "generate_episode", "generate_episodes", "sample_task", "write_dataset",
]
