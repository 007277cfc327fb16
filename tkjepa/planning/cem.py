"""Searching action sequences through the world model: the cross-entropy method (CEM) and its energy.

1. encode the current observation: the latent of the last frame (`state.frame_latents`);
2. CEM (`cem`): sample `samples` action sequences of `horizon` tubelets around a Gaussian, roll each out with
   the action-conditioned world model, score it by the *energy* = L1 distance of the last predicted latent to a
   goal latent (`energy`), refit the Gaussian to the `topk` best (with `momentum`), `iters` times;
3. execute the first action of the mean and replan from the new observation (MPC: `plan.run_episode`).

`LatentPlanner` holds the encoder, the world model and the episode's latents; `energy_landscape` draws the
energy over hand positions, the picture of whether a goal latent pulls the hand to the right place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from tkjepa.planning.state import frame_latents, keep_in_workspace, wrist_features, wrist_path
from tkjepa.world.env import MAX_STEP, TabletopEnv


@dataclass
class CEMConfig:
    samples: int = 64         # action sequences per iteration
    topk: int = 8             # elites the Gaussian is refit to
    iters: int = 3            # refits per action
    horizon: int = 2          # tubelets per sequence (≤ the world model's horizon)
    init_std: float = 0.7     # initial std of u (in [−1, 1] units)
    momentum: float = 0.15    # mean/std ← m·old + (1 − m)·elites' (V-JEPA 2-AC's default)
    arrive_cm: float = 1.5    # "there": the best plan's first tubelet moves the wrist less than this

    def __post_init__(self):
        if self.samples < 2 or not 1 <= self.topk <= self.samples:
            raise ValueError(f"need samples ≥ 2 and 1 ≤ topk ≤ samples, got samples={self.samples}, topk={self.topk}")
        if self.iters < 1 or self.horizon < 1:
            raise ValueError(f"iters and horizon must be ≥ 1, got iters={self.iters}, horizon={self.horizon}")
        if not 0 <= self.momentum < 1 or self.init_std <= 0:
            raise ValueError(f"need 0 ≤ momentum < 1 and init_std > 0, got {self.momentum}, {self.init_std}")
        if self.arrive_cm < 0:
            raise ValueError(f"arrive_cm must be ≥ 0, got {self.arrive_cm}")


def cem(energy_fn: Callable[[torch.Tensor], torch.Tensor], cfg: CEMConfig, dim: int = 4,
        init_mean: torch.Tensor | None = None, generator: torch.Generator | None = None):
    """Minimise energy_fn(u [S, H, dim] in [−1, 1]) -> [S] by the cross-entropy method.

    Returns (mean [H, dim], history): one record per iteration with the mean, std, the samples' and the elites'
    energies (what lesson 09 draws). The mean itself is always among the samples, so an iteration never
    loses the current best guess.
    """
    mean = torch.zeros(cfg.horizon, dim) if init_mean is None else init_mean.clone()
    std = torch.full((cfg.horizon, dim), cfg.init_std)
    history = []
    for _ in range(cfg.iters):
        u = mean + std * torch.randn(cfg.samples, cfg.horizon, dim, generator=generator)
        u[0] = mean
        u = u.clamp(-1, 1)
        e = energy_fn(u)                                                    # [S]
        elite = u[torch.topk(e, cfg.topk, largest=False).indices]           # [K, H, dim]
        history.append({"mean": mean.clone(), "std": std.clone(), "samples": u, "energy": e,
                        "elite_energy": float(e.min())})
        mean = cfg.momentum * mean + (1 - cfg.momentum) * elite.mean(0)
        std = cfg.momentum * std + (1 - cfg.momentum) * (elite.std(0) if cfg.topk > 1 else torch.zeros_like(std))
    return mean, history


def energy(pred: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Distance of predicted latents [S, N, D] to a goal [N, D] -> [S]: mean |ẑ − z_goal| over tokens and
    channels (V-JEPA 2-AC's energy)."""
    return (pred - goal).abs().mean((-2, -1))


class LatentPlanner:
    """The encoder + action-conditioned predictor as a planner's world model, with the episode's latents."""

    def __init__(self, encoder, world_model, cem_cfg: CEMConfig):
        c = world_model.config
        if cem_cfg.horizon > c.future_tubelets:
            raise ValueError(f"CEM horizon {cem_cfg.horizon} exceeds the world model's {c.future_tubelets} tubelets")
        self.encoder, self.model, self.cfg = encoder, world_model, cem_cfg
        self.latents: list[torch.Tensor] = []

    def observe(self, frames: np.ndarray) -> torch.Tensor:
        """Append the state of the last tubelet of frames [T, H, W, 3] (T even): its last frame's latent [N, D]."""
        z = frame_latents(self.encoder, frames, [len(frames) - 1])[0]
        self.latents.append(z)
        return z

    def context(self) -> torch.Tensor:
        """The last Tc latents [Tc, N, D] (the first one repeated at the episode's start)."""
        Tc = self.model.config.context_tubelets
        lat = [self.latents[0]] * max(0, Tc - len(self.latents)) + self.latents[-Tc:]
        return torch.stack(lat)

    @torch.no_grad()
    def predict(self, u: torch.Tensor, wrist) -> torch.Tensor:
        """u [S, H, 4] -> predicted latents [S, H, N, D] from the current context (same action both frames);
        `wrist` [3] (m): where the hand is now, so the world model is told where each u takes it."""
        c = self.model.config
        S, H = u.shape[:2]
        w = torch.from_numpy(wrist_features(wrist_path(u, wrist).numpy()))
        acts = torch.cat([u, u, w], -1)
        acts = torch.cat([acts, acts[:, -1:].expand(S, c.future_tubelets - H, acts.shape[-1])], 1)  # pad to H
        return self.model(self.context()[None].expand(S, -1, -1, -1), actions=acts)[:, :H]

    def plan(self, goal: torch.Tensor, generator: torch.Generator, wrist, init_mean=None,
             holding: bool | None = None, goal_grip: float | None = None):
        """CEM toward `goal` [N, D] from the hand at `wrist` [3] -> (mean [H, 4], history); every sampled path
        stays in WORKSPACE (the returned mean is already bounded).

        Given `holding` (proprioception: the hand holds an object) and `goal_grip` (the goal's grip, 0 open … 1
        shut), position first, grip when there: CEM searches displacements only, with the grip kept (shut while
        holding, open otherwise); once the best plan's first tubelet moves the wrist less than `arrive_cm`,
        the hand stays and takes the goal's grip. Without them CEM searches the grip too."""
        def bound(u):
            return keep_in_workspace(u, wrist)

        if holding is None or goal_grip is None:
            mean, hist = cem(lambda u: energy(self.predict(bound(u), wrist)[:, -1], goal), self.cfg,
                             init_mean=init_mean, generator=generator)
            return bound(mean[None])[0], hist
        keep = 1.0 if holding else -1.0

        def moves(u):
            u = bound(u)
            u[..., 3] = keep
            return u

        mean, hist = cem(lambda u: energy(self.predict(moves(u), wrist)[:, -1], goal), self.cfg,
                         init_mean=init_mean, generator=generator)
        # "there" is judged on the plan as searched, before the workspace bound: a hand pressed against the edge
        # of the view by a goal beyond it is stopped, not there
        arrived = float(mean[0, :3].clamp(-1, 1).norm()) * 2 * MAX_STEP * 100 < self.cfg.arrive_cm
        mean = moves(mean[None])[0]
        hist[-1]["arrived"] = arrived
        if arrived:
            mean = torch.zeros_like(mean)
            mean[:, 3] = 2 * float(goal_grip) - 1
        return mean, hist


@torch.no_grad()
def grid_latents(env: TabletopEnv, encoder, xs, ys, z: float | None = None, grip: float | None = None
                 ) -> torch.Tensor:
    """Latents [len(ys) · len(xs), N, D] of the *encoded* frame with the wrist moved to each (x, y, z) (z, grip
    default to the current ones), everything else as in env's state (y-major). The env is left unchanged."""
    saved = env.clone_state()
    frames = []
    for y in ys:
        for x in xs:
            env.state = env.clone_state()
            env.state.wrist = np.array([x, y, saved.wrist[2] if z is None else z])
            env.state.grip = saved.grip if grip is None else grip
            frames.append(env.render())
    env.state = saved
    return frame_latents(encoder, np.stack(frames))


def energy_landscape(env: TabletopEnv, goal: torch.Tensor, encoder, xs, ys, z: float | None = None,
                     grip: float | None = None) -> np.ndarray:
    """Energy [len(ys), len(xs)] of the `grid_latents` to a goal: is the energy lowest where the goal's hand is?"""
    return energy(grid_latents(env, encoder, xs, ys, z, grip), goal).view(len(ys), len(xs)).numpy()
