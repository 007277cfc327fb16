"""The viewer's planning panel: one held-out episode planned toward a mode's goals, played back frame by frame.

Gradio-free, like `compute`. `Playback.run(index, mode)` plans episode `index` of the held-out world seed
(`plan.episode_seeds`) with the shipped planner and keeps the result; `frame(result, t)` draws planned frame
t beside the goal the planner was heading for then (the demonstration's frame for flat and oracle goals; the
thinker's words for thinker goals, whose z* is a latent, not a frame); `timeline(result)` draws the CEM energy
of each action with a band per subgoal, so each switch of goal is marked where it happened.
"""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw

from tkjepa.planning.plan import PlanConfig, episode_seeds, load_planner, run_episode

PLAN_MODES = ("thinker", "flat", "oracle")
BANDS = ("#fde0c5", "#d4e6f1", "#d5f5e3", "#f5d5e0", "#e8daef")
SCALE = 4  # the 64-px frames drawn 4× larger


class Playback:
    """Plans and draws held-out episodes with the planner in `folder` (world model, subgoal head, thinker)."""

    def __init__(self, folder: str | Path, encoder: str | Path, world_seed: int = 2000, cfg: PlanConfig | None = None,
                 episodes: int = 10):
        self.folder, self.encoder, self.world_seed = Path(folder), encoder, world_seed
        self.cfg = cfg or PlanConfig()
        self.seeds = episode_seeds(world_seed, episodes)
        self._planner, self._cache, self._lock = None, {}, threading.Lock()

    def choices(self) -> list[tuple[str, int]]:
        """(label, index) of the episodes the panel offers."""
        return [(f"{i}: {fam} (seed {s})", i) for i, (s, fam) in enumerate(self.seeds)]

    def run(self, index: int, mode: str) -> dict:
        """`run_episode(..., record=True)` of episode `index` toward `mode`'s goals (cached)."""
        if mode not in PLAN_MODES:
            raise ValueError(f"mode must be one of {PLAN_MODES}, got {mode!r}")
        if not 0 <= index < len(self.seeds):
            raise ValueError(f"episode index must be in 0…{len(self.seeds) - 1}, got {index}")
        with self._lock:
            if (index, mode) not in self._cache:
                if self._planner is None:
                    self._planner = load_planner(self.folder, self.encoder)
                seed, family = self.seeds[index]
                self._cache[index, mode] = run_episode(seed, family, replace(self.cfg, mode=mode), self._planner,
                                                       record=True)
            return self._cache[index, mode]

    @staticmethod
    def goal_at(result: dict, t: int) -> str:
        """The goal the planner was heading for when it produced frame t (frames 0, 1: the still start)."""
        goals = result["goals"]
        return goals[min(max(t - 2, 0) // 2, len(goals) - 1)]

    def frame(self, result: dict, t: int) -> np.ndarray:
        """Planned frame t [H, W, 3] uint8 (4× larger) beside its goal: the demonstration's frame for frame goals,
        else the goal's words under the planned frame."""
        frames = result["frames"]
        t = int(np.clip(t, 0, len(frames) - 1))
        big = lambda f: Image.fromarray(f).resize((f.shape[1] * SCALE, f.shape[0] * SCALE), Image.NEAREST)  # noqa: E731
        left, label = big(frames[t]), self.goal_at(result, t)
        m, demo = re.fullmatch(r"demonstration frame (\d+)", label), result["demo"].frames
        goal = big(demo[int(m.group(1))]) if m else big(demo[-1]) if label == "final frame" else None
        w, h = left.width * (2 if goal else 1) + (8 if goal else 0), left.height + 22
        canvas = Image.new("RGB", (w, h), (255, 255, 255))
        canvas.paste(left, (0, 0))
        if goal:
            canvas.paste(goal, (left.width + 8, 0))
        ImageDraw.Draw(canvas).text((2, left.height + 5), f"frame {t} · goal: {label}"[:80], fill=(0, 0, 0))
        return np.asarray(canvas)

    @staticmethod
    def timeline(result: dict) -> go.Figure:
        """Best CEM energy per action, a shaded band per stretch with the same goal, labelled with it."""
        e, goals = result["energies"], result["goals"]
        fig = go.Figure(go.Scatter(x=list(range(len(e))), y=e, mode="lines+markers", name="best energy"))
        start, band = 0, 0
        for k in range(1, len(goals) + 1):
            if k == len(goals) or goals[k] != goals[start]:
                fig.add_vrect(x0=start - 0.5, x1=k - 0.5, fillcolor=BANDS[band % len(BANDS)], opacity=0.6,
                              line_width=0, layer="below", annotation_text=goals[start][:28],
                              annotation_position="top left", annotation_font_size=10)
                start, band = k, band + 1
        verdict = "task done" if result["success"] else "not done"
        fig.update_layout(title=f"{result['family']}: {verdict} in {result['steps']} actions · one band per goal",
                          xaxis_title="action (2 frames each)", yaxis_title="energy to the goal", height=320,
                          margin=dict(l=50, r=10, t=50, b=40), showlegend=False)
        return fig
