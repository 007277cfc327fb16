"""Does a thinker know the phase of a task? Its words at random moments, split by phase.

    .venv/bin/python experiments/thinker_phases.py [DIR ...] [--episodes 120] [--out runs/thinker_phases.json]

The planner asks its thinker at every moment of an episode (`tkjepa plan --mode thinker`), not only at the
forecast start the shipped thinker was trained at. This script asks each thinker (default: the shipped one)
once per held-out demonstration (`EVAL_SEED0 + i`, pick_place and touch_sequence alternating) at a random
moment drawn as `tkjepa.thinker.think.anytime_indices(how="phases")` does — before the first subgoal is
achieved, between the first and the second, after the last, a third each — with the true timestamps, and
reports per family and phase how often it names the right next object (`next`) and says the whole text right
(`exact`: what is held, too). BENCHMARKS.md reads the table. Deterministic.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from tkjepa import paths
from tkjepa.thinker.model import load_thinker
from tkjepa.thinker.pretrain import EVAL_SEED0
from tkjepa.thinker.think import anytime_indices, think_episodes
from tkjepa.world.generate import WorldConfig, generate_episode
from tkjepa.world.stats import next_subgoal

FAMILIES = ("pick_place", "touch_sequence")
PHASES = ("before the first subgoal", "after the first", "after the last")


def phase(ep, s: int) -> int:
    """0 before the first subgoal is achieved, 1 between it and the last, 2 once all are (two-subgoal tasks)."""
    return 2 if s - 1 >= ep.extras["subgoal_end"][-1] else next_subgoal(ep, s)


def score(thinker_dir: str, episodes: int) -> dict:
    model, tok = load_thinker(thinker_dir)
    eps = [generate_episode(EVAL_SEED0 + i, WorldConfig(family=FAMILIES[i % 2])) for i in range(episodes)]
    moments = [anytime_indices(ep, np.random.default_rng([EVAL_SEED0 + i, 1]), how="phases")
               for i, ep in enumerate(eps)]
    rows = think_episodes(model, tok, eps, moments=moments)
    table = {}
    for fam in FAMILIES:
        for k, name in enumerate(PHASES):
            sel = [r for r, ep, (_, s) in zip(rows, eps, moments) if ep.task == fam and phase(ep, s) == k]
            table[f"{fam}, {name}"] = {"n": len(sel), "next": float(np.mean([r["correct"] for r in sel])),
                                       "exact": float(np.mean([r["exact"] for r in sel]))}
    return {"thinker": str(thinker_dir), "episodes": episodes, "table": table,
            "next": float(np.mean([r["correct"] for r in rows])), "exact": float(np.mean([r["exact"] for r in rows])),
            "examples": [(r["task"], r["s"], r["text"], r["next_target"]) for r in rows[:6]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("thinkers", nargs="*", default=[str(paths.THINKER)], help="thinker folders")
    p.add_argument("--episodes", type=int, default=120)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    results = [score(d, args.episodes) for d in args.thinkers]
    for r in results:
        print(f"\n{r['thinker']}: next {r['next']:.1%}, whole text {r['exact']:.1%} over {r['episodes']} moments")
        for name, v in r["table"].items():
            print(f"  {name:42s} n={v['n']:3d}  next {v['next']:.0%}  whole text {v['exact']:.0%}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
