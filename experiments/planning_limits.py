"""What limits the oracle planner: the energy's reach, the grip it cannot see, and a perfect world model.

    .venv/bin/python experiments/planning_limits.py landscape              # 20 held-out scenes, ≈ 20 s
    .venv/bin/python experiments/planning_limits.py grip                   # a ridge probe for the grip, ≈ 15 s
    .venv/bin/python experiments/planning_limits.py ceiling --episodes 10  # the true env as the model, ≈ 50 s each

- `landscape`: the hand moved over an 11 × 11 grid of the workspace at the first phase boundary's height and grip,
  each frame encoded, and the energy of several readings of the latent to the boundary frame's latent: where its
  minimum lies, and how well it orders positions by their distance to the boundary's wrist (Spearman), overall and
  beyond 8 cm.
- `grip`: can a ridge probe on the frame latent tell an open hand from a shut one, with the wrist anywhere?
- `ceiling`: the oracle planner (`tkjepa plan --mode oracle`) with every CEM candidate rendered by the env and
  encoded instead of predicted by the world model: what a perfect world model would give.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from tkjepa import paths
from tkjepa.attribution import spearman
from tkjepa.backbones import load_backbones
from tkjepa.planning import plan as planning
from tkjepa.planning.cem import LatentPlanner, grid_latents
from tkjepa.planning.plan import PlanConfig, demonstration, episode_seeds, load_planner, run_episode
from tkjepa.planning.state import WORKSPACE, env_action, frame_latents

WORLD_SEED = 2000


def readings(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Latents [B, 16, D] (4 × 4 tokens) -> {name: [B, ...]}: the tokens, pooled 2 × 2, the mean token, blurred."""
    grid = z.transpose(1, 2).reshape(z.shape[0], z.shape[2], 4, 4)
    out = {"4x4 tokens (shipped)": grid, "2x2 pooled": F.avg_pool2d(grid, 2), "mean token": F.avg_pool2d(grid, 4)}
    for sigma in (1.0, 2.0):
        r = torch.arange(-3, 4, dtype=torch.float32)
        w = torch.exp(-r ** 2 / (2 * sigma ** 2))
        kernel = (w[:, None] * w[None] / w.sum() ** 2).expand(grid.shape[1], 1, 7, 7)
        out[f"blurred, sigma {sigma:g} tokens"] = F.conv2d(F.pad(grid, (3, 3, 3, 3), mode="replicate"), kernel,
                                                          groups=grid.shape[1])
    return out


def landscape(episodes: int) -> None:
    encoder = load_backbones(paths.ENCODER).encoder
    xs, ys = np.linspace(-0.2, 0.2, 11), np.linspace(0.27, 0.6, 11)
    rows: dict[str, dict[str, list]] = {}
    for seed, family in episode_seeds(WORLD_SEED, episodes):
        demo, env = demonstration(seed, family)
        b = int(demo.extras["subgoal_end"][0])
        wrist = demo.positions(["rightHand"])[b, 0]
        goal = frame_latents(encoder, demo.frames, [b])
        grid = grid_latents(env, encoder, xs, ys, z=wrist[2], grip=float(demo.extras["grip"][b]))
        X, Y = np.meshgrid(xs, ys)
        dist = np.hypot(X - wrist[0], Y - wrist[1]).ravel()
        far = dist > 0.08
        goal_r = readings(goal)
        for name, g in readings(grid).items():
            e = (g - goal_r[name]).abs().mean((1, 2, 3)).numpy()
            r = rows.setdefault(name, {"argmin": [], "rho": [], "rho_far": []})
            r["argmin"].append(dist[e.argmin()])
            r["rho"].append(spearman(e, dist))
            r["rho_far"].append(spearman(e[far], dist[far]))
    print(f"{episodes} held-out scenes, first boundary; energy = mean L1 of each reading")
    for name, r in rows.items():
        a = np.array(r["argmin"])
        print(f"{name:28s} argmin {100 * np.median(a):4.1f} cm (median), within 5 cm {np.mean(a < 0.05):.0%}, "
              f"Spearman(energy, distance) {np.mean(r['rho']):.2f}, beyond 8 cm {np.mean(r['rho_far']):.2f}")


def grip_frames(encoder, world_seed: int, episodes: int, per: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(world_seed)
    X, y = [], []
    for seed, family in episode_seeds(world_seed, episodes):
        _, env = demonstration(seed, family)
        saved, frames = env.clone_state(), []
        for _ in range(per):
            env.state = copy.deepcopy(saved)
            env.state.wrist = rng.uniform(*WORKSPACE)
            env.state.grip = float(rng.random() < 0.5)
            frames.append(env.render())
            y.append(env.state.grip)
        env.state = saved
        X.append(frame_latents(encoder, np.stack(frames)).flatten(1))
    return torch.cat(X), torch.tensor(y)


def grip() -> None:
    encoder = load_backbones(paths.ENCODER).encoder
    Xtr, ytr = grip_frames(encoder, 1000, 60, 10)
    Xte, yte = grip_frames(encoder, WORLD_SEED, 20, 10)
    A, B = (torch.cat([X, torch.ones(len(X), 1)], 1) for X in (Xtr, Xte))
    for lam in (1.0, 10.0, 100.0):
        w = torch.linalg.solve(A.T @ A + lam * torch.eye(A.shape[1]), A.T @ (2 * ytr - 1))
        acc = float(((B @ w > 0).float() == yte).float().mean())
        print(f"ridge {lam:g}: held-out grip accuracy {acc:.3f} ({len(Xtr)} training frames, {len(Xte)} test)")


class EnvModel(LatentPlanner):
    """A LatentPlanner whose "world model" is the env itself: each candidate is stepped, rendered and encoded."""

    env = None

    @torch.no_grad()
    def predict(self, u: torch.Tensor, wrist) -> torch.Tensor:
        saved, frames = self.env.clone_state(), []
        for s in range(u.shape[0]):
            self.env.state = copy.deepcopy(saved)
            for k in range(u.shape[1]):
                for _ in range(2):
                    frame = self.env.step(env_action(u[s, k].numpy()))
            frames.append(frame)
        self.env.state = saved
        return frame_latents(self.encoder, np.stack(frames))[:, None]          # the last tubelet only


def ceiling(episodes: int) -> None:
    torch.set_num_threads(1)
    shown = planning.demonstration

    def demonstration_seen(seed, family):
        demo, env = shown(seed, family)
        EnvModel.env = env
        return demo, env

    planning.demonstration, planning.LatentPlanner = demonstration_seen, EnvModel
    planner = load_planner(paths.PLANNER, paths.ENCODER, need_head=False)
    rows, t0 = [], time.perf_counter()
    for seed, family in episode_seeds(WORLD_SEED, episodes):
        r = run_episode(seed, family, PlanConfig(mode="oracle"), planner)
        rows.append(r)
        print(f"{family:15s} success {r['success']!s:5s} first subgoal {r['first_subgoal']!s:5s} closest "
              f"{r['closest_to_first_cm']:5.1f} cm, {r['steps']} actions, {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"the env as the world model, oracle goals: {sum(r['success'] for r in rows)}/{len(rows)} tasks done, "
          f"first subgoal {sum(r['first_subgoal'] for r in rows)}/{len(rows)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("landscape", "grip", "ceiling"))
    ap.add_argument("--episodes", type=int, default=None, help="scenes (landscape: 20) or episodes (ceiling: 10)")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.what == "landscape":
        landscape(args.episodes or 20)
    elif args.what == "grip":
        grip()
    else:
        ceiling(args.episodes or 10)


if __name__ == "__main__":
    main()
