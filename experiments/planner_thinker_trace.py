"""What does the planner's thinker feel and say in a planned episode, against a demonstration at the same moment?

    .venv/bin/python experiments/planner_thinker_trace.py [PLANNER_DIR] [--episodes 4] [--asks 3]
                                                      [--out runs/planner_thinker_trace.json]

Plans the first held-out episodes in thinker mode (`planning.plan.run_episode`, world seed 2000, the default
`PlanConfig`) and prints, at each of the first `--asks` questions, the thinker's words and the proprioception
its prompt carried (`thinker.inputs.proprio_text`: wrist height, aperture, contacts per clip frame), then the
same proprioception in the demonstration of that scene at the same moment. A thinker trained only on
demonstrations has never felt a hand dip and close on nothing, which a planner's does. Needs a planner whose
thinker reads proprioception (`tkjepa pretrain-thinker --preset planner`). Deterministic.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tkjepa import paths
from tkjepa.planning.goals import seen_episode
from tkjepa.planning.plan import PlanConfig, episode_seeds, load_planner, run_episode
from tkjepa.thinker.inputs import proprio_text
from tkjepa.thinker.think import clip_indices


def trace(planner: str, episodes: int, asks: int) -> list[dict]:
    models = load_planner(planner, paths.ENCODER)
    rows = []
    for seed, family in episode_seeds(2000, episodes):
        r = run_episode(seed, family, PlanConfig(mode="thinker"), models, record=True)
        demo = r["demo"]
        seen = seen_episode(demo, r["frames"], r["hand"])
        for step, text in r["subgoal_texts"][:asks]:
            s = 2 + 2 * step                     # frames observed when asked: tubelet 0, then 2 per action
            clip = clip_indices(s)
            rows.append({"seed": seed, "family": family, "instruction": demo.instruction, "frames": s,
                         "said": text, "felt": proprio_text(seen, clip), "demo_felt": proprio_text(demo, clip),
                         "success": r["success"]})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("planner", nargs="?", default=str(paths.PLANNER), help="planner folder (default: the shipped one)")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--asks", type=int, default=3, help="questions shown per episode")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = trace(args.planner, args.episodes, args.asks)
    for r in rows:
        if r["frames"] == 2:
            print(f"\n{r['family']} {r['seed']}: {r['instruction']} (success {r['success']})")
        print(f"  after {r['frames']:2d} frames, said: {r['said']}\n    felt: {r['felt']}\n"
              f"    a demonstration felt: {r['demo_felt']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
