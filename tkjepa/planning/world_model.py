"""The action-conditioned world model the planner searches with (V-JEPA 2-AC, shrunk to the tabletop).

Model. `WorldModel`: a `GuidedPredictor(injection="none", action_dim=11, block_causal=True)` — Tc context
states (`state.frame_latents`) + H future mask tokens carrying the action pairs and the wrist position at each
tubelet's end (proprioception, `state.wrist_features`), so the prediction of tubelet t sees actions ≤ t only —
read as a *change* of the last observed state: ẑ_t = LN(z_last + predictor(…)_t). Most of the scene does not
move, so the network starts at "nothing changes" and spends its capacity on what the actions do. Trained with
V-JEPA 2-AC's L1 teacher-forcing loss on layer-normed latents.

Data. Expert demonstrations alone teach a model to ignore its actions (the action is a function of the
state). So training episodes are *play*: the scripted expert with smooth random perturbations of random
strength and random grip flips (70%), and random waypoint wandering with random grip (30%), over all four
task families; see `play_episode`. `tkjepa train-world-model` trains it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tkjepa.checkpoint import config_from_dict, load_weights, read_json, save_part
from tkjepa.optim import lr_at, set_lr, step_generator
from tkjepa.planning.state import ACTION_DIM, STATE_DIM, action_pairs, tubelet_states, wrist_features
from tkjepa.predictor import GuidedPredictor, GuidedPredictorConfig
from tkjepa.world import expert, hand
from tkjepa.world.env import MAX_STEP, TabletopEnv
from tkjepa.world.generate import episode_seed
from tkjepa.world.scene import PLACE_X, TABLE_Y
from tkjepa.world.tasks import FAMILIES

# -- play data -------------------------------------------------------------------------------------------
def play_episode(seed: int, family: str, num_frames: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames [T, 64, 64, 3] uint8, env actions [T, 4], wrist [T, 3] at each frame) of one perturbed-expert or
    wandering episode."""
    rng = np.random.default_rng([seed, 11])
    env = TabletopEnv(family=family, num_frames=num_frames)
    for attempt in range(20):
        frames = [env.reset([seed, attempt] if attempt else seed)]
        try:
            segs, n_pre = expert.plan(env.task, env.state.objects, rng)
            expert.set_speed_limits(env.state.wrist, segs, MAX_STEP)
            expert.fit_timing(segs, n_pre, num_frames // 2 + int(rng.integers(-2, 4)), num_frames)
            break
        except ValueError:
            continue
    targets, grips = expert.desired_path(env.state.wrist, segs)
    wander = rng.random() < 0.3
    if wander:  # random waypoints, each held for a few frames, with a random grip
        n = num_frames // 6 + 1
        way = np.stack([rng.uniform(*PLACE_X, n), rng.uniform(TABLE_Y[0], TABLE_Y[1] - 0.05, n),
                        rng.uniform(hand.MIN_WRIST_Z, 0.22, n)], 1)
        targets = np.repeat(way, 6, axis=0)[:num_frames]
        grips = np.repeat((rng.random(n) < 0.4).astype(float), 6)[:num_frames]
    sigma = rng.uniform(0.0, 0.025)
    drift, flip, actions, wrists = np.zeros(3), 0, [], [env.state.wrist.copy()]
    for t in range(num_frames - 1):
        drift = 0.8 * drift + rng.normal(0.0, sigma, 3)
        move = targets[t] - env.state.wrist
        if wander:
            move = move / max(1.0, np.linalg.norm(move) / (0.7 * MAX_STEP))
        if flip == 0 and rng.random() < 0.06:
            flip = int(rng.integers(2, 7))
        g = grips[t] if flip == 0 else 1.0 - grips[t]
        flip = max(0, flip - 1)
        a = np.concatenate([np.clip(move + drift, -MAX_STEP, MAX_STEP), [g]])
        actions.append(a)
        frames.append(env.step(a))
        wrists.append(env.state.wrist.copy())
    actions.append(np.array([0.0, 0.0, 0.0, env.state.grip]))
    return np.stack(frames), np.stack(actions).astype(np.float32), np.stack(wrists).astype(np.float32)


def play_data(seed: int, episodes: int, encoder, progress: bool = True) -> dict[str, torch.Tensor]:
    """{"z": [E, T/2, N, D] tubelet states, "actions": [E, T/2, 8] pairs, "wrist": [E, T/2, 3] wrist features
    at each tubelet's last frame} of `episodes` play episodes."""
    from tqdm.auto import tqdm

    zs, acts, wrists = [], [], []
    for i in tqdm(range(episodes), desc="play data", unit="ep", disable=not progress):
        frames, actions, wrist = play_episode(episode_seed(seed, i), FAMILIES[i % len(FAMILIES)])
        zs.append(tubelet_states(encoder, frames))
        acts.append(torch.from_numpy(action_pairs(actions)))
        wrists.append(torch.from_numpy(wrist_features(wrist[1::2])))
    return {"z": torch.stack(zs), "actions": torch.stack(acts), "wrist": torch.stack(wrists)}


# -- the model -------------------------------------------------------------------------------------------
@dataclass
class WorldModelConfig:
    latent_dim: int = 96        # D of the encoder's tokens
    tokens: int = 16            # N tokens per tubelet after 2×2 pooling
    dim: int = 64               # predictor width
    depth: int = 4              # predictor blocks
    num_heads: int = 4
    context: int = 2            # Tc: observed tubelets the prediction starts from (4 frames: position + velocity)
    horizon: int = 2            # H: tubelets predicted per call = the planning horizon (4 frames)
    steps: int = 2500           # optimiser steps
    batch_size: int = 64        # windows per step
    lr: float = 1.5e-3          # peak AdamW lr (warmup 100 steps, cosine to 1% of it)
    weight_decay: float = 0.04
    episodes: int = 320         # play episodes (world seed `seed_data`)
    seed_data: int = 1000       # play episodes' world seed (planning is scored on seed 2000's)
    seed: int = 0               # weights and batch order

    @property
    def input_dim(self) -> int:
        return ACTION_DIM + STATE_DIM  # the action pair, then the wrist at the tubelet's end

    def predictor_config(self) -> GuidedPredictorConfig:
        return GuidedPredictorConfig(latent_dim=self.latent_dim, dim=self.dim, depth=self.depth,
                                     num_heads=self.num_heads, context_tubelets=self.context,
                                     future_tubelets=self.horizon, tokens=self.tokens, injection="none",
                                     action_dim=self.input_dim, block_causal=True)


class WorldModel(nn.Module):
    """forward(ctx [B, Tc, N, D], actions [B, H, input_dim]) -> predicted states [B, H, N, D].

    actions[..., 8:11] are the `wrist_features` of the wrist at each future tubelet's end."""

    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        self.predictor = GuidedPredictor(cfg.predictor_config())

    @property
    def config(self) -> GuidedPredictorConfig:
        return self.predictor.config

    def forward(self, ctx: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        delta = self.predictor(ctx, actions=actions)                            # [B, H, N, D]
        return F.layer_norm(ctx[:, -1:] + delta, (ctx.shape[-1],))


def windows(data: dict, idx: torch.Tensor, start: torch.Tensor, cfg: WorldModelConfig):
    """(ctx [B, Tc, N, D], inputs [B, H, input_dim], target [B, H, N, D]) of windows whose last context
    tubelet is `start` in episodes `idx`; context before tubelet 0 repeats tubelet 0."""
    c = torch.clamp(start[:, None] + torch.arange(-cfg.context + 1, 1), min=0)         # [B, Tc]
    f = start[:, None] + torch.arange(1, cfg.horizon + 1)                              # [B, H]
    e = idx[:, None]
    inputs = torch.cat([data["actions"][e, f], data["wrist"][e, f]], -1)
    return data["z"][e, c], inputs, data["z"][e, f]


def train_world_model(cfg: WorldModelConfig, data: dict, val: dict | None = None,
                      progress: bool = True) -> tuple[WorldModel, list[dict]]:
    """L1 teacher forcing on random windows; a log record every 250 steps (+ validation when given)."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    model = WorldModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    E, J = data["z"].shape[:2]
    history = []
    t0 = time.perf_counter()
    for step in tqdm(range(cfg.steps), desc="world model", disable=not progress):
        g = step_generator(cfg.seed, step)
        idx = torch.randint(0, E, (cfg.batch_size,), generator=g)
        start = torch.randint(0, J - cfg.horizon, (cfg.batch_size,), generator=g)
        set_lr(opt, lr_at(step, cfg.steps, cfg.lr, 0.01 * cfg.lr, warmup=100))  # cosine to 1% of the peak

        # forward: predict H tubelets from Tc latents + H action pairs
        ctx, act, target = windows(data, idx, start, cfg)
        loss = (model(ctx, actions=act) - target).abs().mean()

        # backward & step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

        if (step + 1) % 250 == 0 or step + 1 == cfg.steps:
            rec = {"step": step + 1, "loss": loss.item(), "time_s": round(time.perf_counter() - t0, 1)}
            if val is not None:
                rec.update(evaluate_world_model(model, val, cfg))
            history.append(rec)
    return model.eval(), history


@torch.no_grad()
def evaluate_world_model(model: WorldModel, data: dict, cfg: WorldModelConfig, n: int = 1024) -> dict:
    """Held-out L1 of the prediction with the true actions, with actions (and wrist states) shuffled across
    windows (how much the model reads them), and of copying the last context latent (how much it predicts)."""
    g = torch.Generator().manual_seed(123)
    E, J = data["z"].shape[:2]
    idx, start = torch.randint(0, E, (n,), generator=g), torch.randint(0, J - cfg.horizon, (n,), generator=g)
    ctx, act, target = windows(data, idx, start, cfg)
    l1 = lambda p: float((p - target).abs().mean())  # noqa: E731
    return {"val_l1": l1(model(ctx, actions=act)),
            "val_l1_shuffled_actions": l1(model(ctx, actions=act[torch.randperm(n, generator=g)])),
            "val_l1_copy_last": l1(ctx[:, -1:].expand_as(target))}


@torch.no_grad()
def rollout_errors(model: WorldModel, data: dict, steps: int = 8, n: int = 512) -> dict:
    """Per-step held-out L1 of a recursive rollout over `steps` tubelets (the predictions of each call become
    the next call's context, the model's horizon at a time) with the true actions, with actions (and wrist
    states) of another window, and of copying the last observed latent: {"true", "shuffled", "copy"}: [steps]."""
    context, horizon = model.config.context_tubelets, model.config.future_tubelets
    g = torch.Generator().manual_seed(321)
    E, J = data["z"].shape[:2]
    if steps + 1 > J:
        raise ValueError(f"a {steps}-tubelet rollout needs episodes longer than {J} tubelets")
    idx = torch.randint(0, E, (n,), generator=g)
    start = torch.randint(0, J - steps, (n,), generator=g)
    f = start[:, None] + torch.arange(1, steps + 1)                                    # [n, steps]
    target = data["z"][idx[:, None], f]
    inputs = torch.cat([data["actions"][idx[:, None], f], data["wrist"][idx[:, None], f]], -1)
    c = torch.clamp(start[:, None] + torch.arange(-context + 1, 1), min=0)
    ctx0 = data["z"][idx[:, None], c]

    def roll(inp):
        ctx, out = ctx0, []
        for k in range(0, steps, horizon):
            a = inp[:, k:k + horizon]
            if a.shape[1] < horizon:
                a = torch.cat([a, a[:, -1:].expand(-1, horizon - a.shape[1], -1)], 1)
            pred = model(ctx, actions=a)
            out.append(pred)
            ctx = torch.cat([ctx, pred], 1)[:, -context:]
        return torch.cat(out, 1)[:, :steps]

    l1 = lambda p: (p - target).abs().mean((0, 2, 3)).tolist()  # noqa: E731
    return {"true": l1(roll(inputs)), "shuffled": l1(roll(inputs[torch.randperm(n, generator=g)])),
            "copy": l1(ctx0[:, -1:].expand_as(target))}


def save_world_model(model: WorldModel, cfg: WorldModelConfig, folder: str | Path) -> None:
    """`folder`/world_model.safetensors + world_model.json."""
    save_part(folder, "world_model", model, cfg)


def load_world_model(folder: str | Path) -> tuple[WorldModel, WorldModelConfig]:
    folder = Path(folder)
    cfg = config_from_dict(WorldModelConfig, read_json(folder / "world_model.json"), folder / "world_model.json")
    return load_weights(WorldModel(cfg), folder / "world_model.safetensors").eval(), cfg
