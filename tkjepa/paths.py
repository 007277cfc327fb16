"""Every location tkjepa ships or writes by default, in one place.

Only the command layer (`tkjepa.cli`) and the lessons read these: the library below takes its data,
backbones and checkpoints as arguments, so the same code runs on the shipped samples, on a researcher's
EgoDex copy, or on real V-JEPA 2 / Qwen3-VL weights.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data_samples"
EPISODES = SAMPLES / "episodes"            # 48 tabletop episodes (homes layout), EgoDex format
ENCODER = SAMPLES / "encoder_tiny"         # the tiny JEPA video encoder
THINKER = SAMPLES / "thinker_tiny"         # the tiny Qwen3-VL thinker
FORECASTERS = SAMPLES / "forecasters"      # the benchmark's seed-0 forecasters (homes layout)
EPISODES_SCATTERED = SAMPLES / "episodes_scattered"        # 48 episodes of the scattered layout
FORECASTERS_SCATTERED = FORECASTERS / "scattered"          # the seed-0 forecasters trained on scattered scenes
LAYOUT_SAMPLES = {"homes": (EPISODES, FORECASTERS), "scattered": (EPISODES_SCATTERED, FORECASTERS_SCATTERED)}
PLANNER = SAMPLES / "planner"              # world model, subgoal head and the planner's own thinker
PLANNER_THINKER = PLANNER / "thinker"

RUNS = REPO / "runs"                       # what commands write by default
CACHE = RUNS / "cache"                     # encoder tokens and thinker features, content-hashed
