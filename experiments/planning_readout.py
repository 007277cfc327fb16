"""Does an energy that reads the wrist off the latent let the planner reach its subgoals?

The shipped energy, L1 between the predicted and the goal latent, has its minimum at the subgoal but barely orders
hand positions more than ≈ 8 cm away (docs/experiments/2026-12-07-planning-oracle-limits.md, section 4). A
ridge probe from the frame latent to the wrist (fit on play data, the world model's own training draw) is a
linear map of the same latent; adding ‖probe(ẑ) − probe(z*)‖ to the energy gives the search a slope everywhere.

    python experiments/planning_readout.py --mode oracle --episodes 20 --weight 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from tkjepa import paths
from tkjepa.encoder.probe import r2_score, select_and_fit
from tkjepa.planning import cem
from tkjepa.planning.plan import PlanConfig, load_planner, plan_episodes
from tkjepa.planning.world_model import play_data


def fit_probe(encoder, episodes: int):
    data = play_data(1000, episodes, encoder, progress=False)
    X, Y = data["z"].flatten(2).flatten(0, 1).double(), data["wrist"].flatten(0, 1).double()
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    probe, lams = select_and_fit(X[perm], Y[perm], int(0.8 * len(X)), [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    val = play_data(1001, 16, encoder, progress=False)
    Xv, Yv = val["z"].flatten(2).flatten(0, 1).double(), val["wrist"].flatten(0, 1).double()
    return probe, r2_score(Yv, probe.predict(Xv)), lams


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="oracle")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--weight", type=float, nargs="+", default=[1.0])
    ap.add_argument("--play", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    planner = load_planner(paths.PLANNER, paths.ENCODER, need_head=args.mode in ("thinker", "told"))
    t0 = time.perf_counter()
    probe, r2, lams = fit_probe(planner.encoder, args.play)
    print(json.dumps({"probe_r2_heldout_play": r2, "lambdas": lams, "seconds": round(time.perf_counter() - t0, 1)}))
    base = cem.energy
    W, mu_x, mu_y = probe.W.float(), probe.mu_x.float(), probe.mu_y.float()
    for weight in args.weight:
        def energy(pred, goal, weight=weight):
            wp = (pred.flatten(-2) - mu_x) @ W + mu_y
            wg = (goal.flatten()[None] - mu_x) @ W + mu_y
            return base(pred, goal) + weight * (wp - wg).norm(dim=-1)

        cem.energy = energy
        t0 = time.perf_counter()
        r = plan_episodes(PlanConfig(mode=args.mode, seed=args.seed), args.episodes, 2000, planner, progress=False)
        print(json.dumps({"weight": weight, **{k: r[k] for k in ("success_rate", "per_family", "first_subgoal_rate",
                                                                 "median_closest_to_first_cm", "seconds_per_action")},
                          "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    cem.energy = base


if __name__ == "__main__":
    main()
