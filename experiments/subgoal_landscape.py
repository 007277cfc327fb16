"""Where does a subgoal latent point? The energy's minimum over hand positions, against where the subgoal is.

    .venv/bin/python experiments/subgoal_landscape.py [PLANNER_DIR ...] [--episodes 30] [--grid 11]
                                                      [--out runs/subgoal_landscape.json]

At the start of each held-out planning episode (`planning.plan.episode_seeds(2000, N)`, pick_place and
touch_sequence alternating; `--world-seed 1000`: the subgoal head's own training scenes), the scene is
rendered with the wrist moved over a grid of table positions (at the height and grip of the demonstration's
first phase boundary), each frame encoded, and its energy (`planning.cem.energy`, L1) to a goal latent
computed. The planner is drawn toward the grid's minimum, so the distance from that minimum to the
demonstration's wrist at the boundary says where a goal sends the hand:
- `oracle`: the boundary frame's own latent (`tkjepa plan --mode oracle`);
- each planner folder's subgoal head, from its thinker's words (`<dir>`, as `tkjepa plan --mode thinker`) and
  from the true words (`<dir>:told`, as `--mode told`);
- `<dir>:place`: how far the head's own place (its predicted wrist) lies from the subgoal's wrist on the table;
- `<dir>:true place`: the minimum for z* decoded from the *true* place (the subgoal's wrist and grip): what the
  head's decoder gives a perfect pointer;
- `current`: the start frame itself, a goal that says "stay".
Deterministic; one torch thread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from tkjepa import paths
from tkjepa.planning.cem import energy, grid_latents
from tkjepa.planning.goals import felt, head_goal, thinker_words, told_text
from tkjepa.planning.plan import demonstration, episode_seeds, load_planner
from tkjepa.planning.state import WORKSPACE, frame_latents
from tkjepa.planning.subgoal import place_units


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("planners", nargs="*", default=[str(paths.PLANNER)], help="planner folders")
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--world-seed", type=int, default=2000,
                   help="episode draw: 2000 = the planner's held-out episodes; 1000 = the head's training scenes")
    p.add_argument("--grid", type=int, default=11, help="positions per axis over the workspace")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    planners = {d: load_planner(d, paths.ENCODER) for d in args.planners}
    encoder = next(iter(planners.values())).encoder
    xs = np.linspace(WORKSPACE[0][0], WORKSPACE[1][0], args.grid)
    ys = np.linspace(WORKSPACE[0][1], WORKSPACE[1][1], args.grid)
    rows = []
    for seed, family in episode_seeds(args.world_seed, args.episodes):
        demo, env = demonstration(seed, family)
        frames, hand = [env.render()], [felt(env)]  # the planner's first view (tubelet 0)
        frames.append(env.step([0.0, 0.0, 0.0, 0.0]))
        hand.append(felt(env))
        frames = np.stack(frames)
        b = int(demo.extras["subgoal_end"][0])
        target = demo.positions(["rightHand"])[b, 0]
        current = frame_latents(encoder, frames, [len(frames) - 1])[0]
        goals = {"oracle": frame_latents(encoder, demo.frames, [b])[0], "current": current}
        row = {"seed": int(seed), "family": family}
        grip = float(demo.extras["grip"][b])
        for d, pl in planners.items():  # as `run_episode` asks at its first step
            said = thinker_words(pl.thinker, pl.tokenizer, demo, frames, hand)
            goals[d], place = head_goal(pl.head, pl.tokenizer, encoder, frames, current, said)
            goals[f"{d}:told"], _ = head_goal(pl.head, pl.tokenizer, encoder, frames, current, told_text(env, demo))
            row[f"{d}:place"] = float(np.hypot(*(place[:2] - target[:2])))
            with torch.no_grad():
                true = place_units(torch.as_tensor(target, dtype=torch.float32)[None], torch.tensor([grip]))
                goals[f"{d}:true place"] = pl.head.decode(current[None], true)[0]
        lat = grid_latents(env, encoder, xs, ys, z=float(target[2]), grip=grip)
        for name, goal in goals.items():
            e = energy(lat, goal).view(len(ys), len(xs)).numpy()
            iy, ix = np.unravel_index(np.argmin(e), e.shape)
            row[name] = float(np.hypot(xs[ix] - target[0], ys[iy] - target[1]))
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    names = [k for k in rows[0] if k not in ("seed", "family")]
    summary = {n: {"median_cm": round(100 * float(np.median([r[n] for r in rows])), 1),
                   "within_5cm": float(np.mean([r[n] < 0.05 for r in rows]))} for n in names}
    cell = 100 * float(xs[1] - xs[0])
    print(f"\nminimum of the energy (`:place`: the head's own place) vs the first boundary's wrist, "
          f"over {len(rows)} episodes (grid cell {cell:.1f} cm):")
    for n, s in summary.items():
        print(f"  {n:40s} median {s['median_cm']:5.1f} cm   within 5 cm {s['within_5cm']:.0%}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"summary": summary, "grid_cell_cm": cell, "episodes": rows}, indent=1))


if __name__ == "__main__":
    main()
