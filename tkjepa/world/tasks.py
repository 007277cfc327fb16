"""Tasks of the tabletop world: a small grammar of instructions over the scene's objects.

Every task is a sequence of subgoals, each naming the object it heads to: ("grasp", cube) then
("place", bowl); ("touch", a) then ("touch", b) …; ("approach", obj) then ("push", bowl).
`marked_pick_place` names its bowl only as "the marked bowl": the bowl is highlighted in the first frames
(`cue_frames`) and never again — a white ring and marker at the bowl, and the back wall lit in the bowl's colour.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tkjepa.world.scene import COLORS, GRASPABLE, LAYOUTS, SceneObject, home_layout, sample_layout

FAMILIES = ("pick_place", "marked_pick_place", "touch_sequence", "push")


@dataclass
class Task:
    """A sampled task. `subgoals`: [(kind, object index)]; `goal_bowl`: the destination (-1 if none)."""

    family: str
    instruction: str
    subgoals: list[tuple[str, int]]
    goal_bowl: int = -1
    cue_object: int = -1
    cue_frames: tuple[int, int] = (0, 0)
    # Objects a future could plausibly head to at the decision point (used by the ambiguity statistic).
    candidates: list[int] = field(default_factory=list)


def _sample_objects(rng: np.random.Generator, n_graspable: int, n_bowls: int,
                    distinct: bool = False) -> list[tuple[str, str]]:
    colors = list(COLORS)
    if distinct:  # one object per colour (the homes layout): the colour alone names the object
        drawn = [str(c) for c in rng.choice(colors, size=n_graspable + n_bowls, replace=False)]
        graspable = [(str(rng.choice(GRASPABLE)), c) for c in drawn[:n_graspable]]
        return graspable + [("bowl", c) for c in drawn[n_graspable:]]
    bowl_colors = rng.choice(colors, size=n_bowls, replace=False)
    # Draw distinct (shape, colour) pairs; repeated shapes make colour necessary to tell objects apart.
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n_graspable:
        pair = (str(rng.choice(GRASPABLE)), str(rng.choice(colors)))
        if pair not in pairs:
            pairs.append(pair)
    return pairs + [("bowl", str(c)) for c in bowl_colors]


def sample_task(rng: np.random.Generator, family: str | None = None, num_frames: int = 64,
                layout: str = "scattered") -> tuple[list[SceneObject], Task]:
    """Sample a scene and a task on it. `family=None` draws one of `FAMILIES` uniformly. `layout`:
    "scattered" (anywhere on the table) or "homes" (distinct colours, each object near its colour's home)."""
    family = family or str(rng.choice(FAMILIES))
    if family not in FAMILIES:
        raise ValueError(f"unknown task family {family!r}; choose one of {FAMILIES}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    n_graspable = int(rng.integers(2, 4))
    n_bowls = 2 if n_graspable == 3 else int(rng.integers(2, 4))  # 4–5 objects in all
    pairs = _sample_objects(rng, n_graspable, n_bowls, distinct=layout == "homes")
    objects = home_layout(rng, pairs) if layout == "homes" else sample_layout(rng, pairs)
    graspables = [i for i, o in enumerate(objects) if o.shape != "bowl"]
    bowls = [i for i, o in enumerate(objects) if o.shape == "bowl"]
    name = lambda i: objects[i].name  # noqa: E731

    if family in ("pick_place", "marked_pick_place"):
        obj, bowl = int(rng.choice(graspables)), int(rng.choice(bowls))
        subgoals = [("grasp", obj), ("place", bowl)]
        if family == "pick_place":
            text = f"pick up the {name(obj)} and put it in the {name(bowl)}"
            return objects, Task(family, text, subgoals, goal_bowl=bowl, candidates=bowls)
        text = f"pick up the {name(obj)} and put it in the marked bowl"
        cue_end = int(rng.integers(num_frames // 8, num_frames // 8 + 4))  # long enough for a uniform clip
        return objects, Task(family, text, subgoals, goal_bowl=bowl, cue_object=bowl,
                             cue_frames=(0, cue_end), candidates=bowls)
    if family == "touch_sequence":
        k = 2 if num_frames < 96 else int(rng.integers(2, 4))  # three touches need a longer episode
        order = [int(i) for i in rng.choice(len(objects), size=k, replace=False)]
        text = "touch the " + ", then the ".join(name(i) for i in order)
        return objects, Task(family, text, [("touch", i) for i in order],
                             candidates=[i for i in range(len(objects)) if i != order[0]])
    obj, bowl = int(rng.choice(graspables)), int(rng.choice(bowls))
    text = f"push the {name(obj)} to the {name(bowl)}"
    # First hover over the object (its side of approach is not yet chosen), then push it to the bowl.
    return objects, Task(family, text, [("approach", obj), ("push", bowl)], goal_bowl=bowl, candidates=bowls)
