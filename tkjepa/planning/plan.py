"""Planning episodes in the tabletop: MPC with CEM through the world model, toward goals from a goal source.

Each action (one tubelet = 2 env frames with the same [dx, dy, dz, grip]): the goal source (`goals`) gives z*,
CEM (`cem.LatentPlanner.plan`) finds the action sequence whose last predicted latent lies nearest to it, the
first action of the mean is executed, and the planner replans from the new observation, until `env.success()`
or `max_steps` actions.

Action space: u ∈ [−1, 1]^4 per tubelet: displacement u[:3]·MAX_STEP per frame, grip (u[3] + 1)/2 — exactly
the world model's normalised actions. Like a robot's joint limits, the planner knows where its own wrist is
(proprioception, as V-JEPA 2-AC's end-effector state) and keeps every sampled path inside `WORKSPACE`, the part
of the table the camera sees. Without it the search finds a cheap trick: a hand out of view differs from the
goal frame in one place (the goal's hand is missing), a hand in the wrong place in two.

A planner folder holds the world model (`tkjepa train-world-model`), the subgoal head (`tkjepa
train-subgoal-head`), their metrics files, and the thinker the head was trained with, in `folder/thinker`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tkjepa.backbones import load_backbones
from tkjepa.checkpoint import CheckpointError, read_json
from tkjepa.planning.cem import CEMConfig, LatentPlanner
from tkjepa.planning.goals import MODES, felt, goal_source
from tkjepa.planning.state import env_action, frame_latents
from tkjepa.planning.subgoal import FAMILIES, load_head
from tkjepa.planning.world_model import load_world_model
from tkjepa.world.env import TabletopEnv
from tkjepa.world.generate import WorldConfig, episode_seed, generate_episode

WORLD_MODEL_METRICS = "world_model_metrics.json"
SUBGOAL_HEAD_METRICS = "subgoal_head_metrics.json"


@dataclass
class PlanConfig:
    mode: str = "thinker"        # flat | thinker | told | oracle (`goals.MODES`)
    max_steps: int = 32          # planner actions (tubelets) per episode: 64 frames, the demonstrations' length
    ask_every: int = 2           # thinker and told modes: actions between two questions
    seed: int = 0                # CEM sampling
    cem: CEMConfig = field(default_factory=CEMConfig)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.max_steps < 1 or self.ask_every < 1:
            raise ValueError(f"max_steps and ask_every must be ≥ 1, got {self.max_steps}, {self.ask_every}")


@dataclass
class Planner:
    """What `tkjepa plan` needs: the encoder, the world model, and (thinker and told modes) the subgoal head,
    with the thinker and its tokenizer."""

    encoder: Any
    world_model: Any
    head: Any = None
    thinker: Any = None
    tokenizer: Any = None


def first_subgoal_done(env: TabletopEnv) -> bool:
    """Partial progress: the cube grasped (pick_place) or the first object touched (touch_sequence)."""
    kind, obj = env.task.subgoals[0]
    return env.state.held == obj if kind == "grasp" else obj in env.state.touched


def demonstration(seed: int, family: str):
    """The expert's episode on world seed `seed` (its last frame is the flat goal) and the env reset on its scene."""
    demo = generate_episode(seed, WorldConfig(family=family))
    env = TabletopEnv(family=family)
    attempt = demo.extras["attempt"]
    env.reset([seed, attempt] if attempt else seed)
    return demo, env


def run_episode(seed: int, family: str, cfg: PlanConfig, planner: Planner, record: bool = False) -> dict:
    """Plan one held-out episode; returns success, actions used, planning seconds (+ frames, what the hand felt
    at each (`goals.felt`), the energies and the goal of each action in words when `record`)."""
    demo, env = demonstration(seed, family)
    mpc = LatentPlanner(planner.encoder, planner.world_model, cfg.cem)
    source = goal_source(cfg.mode, planner.encoder, planner.head, planner.tokenizer, planner.thinker,
                         cfg.ask_every)
    source.start(demo)
    frames, hand = [env.render()], [felt(env)]
    frames.append(env.step([0.0, 0.0, 0.0, 0.0]))                   # tubelet 0: the start, still
    hand.append(felt(env))
    mpc.observe(np.stack(frames))
    g = torch.Generator().manual_seed(seed * 7919 + cfg.seed)
    mean, texts, places, energies, goals, success, steps = None, [], [], [], [], False, 0
    first_wrist = demo.positions(["rightHand"])[int(demo.extras["subgoal_end"][0]), 0]  # where subgoal 0 is done
    first_done, closest = False, float(np.linalg.norm(env.state.wrist - first_wrist))
    t0 = time.perf_counter()
    for step in range(cfg.max_steps):
        goal, asked = source(step, env, demo, np.stack(frames), hand, mpc.latents[-1])
        if asked is not None:
            texts.append((step, asked["text"]))
            places.append((step, [round(float(v), 4) for v in asked["place"]]))
        init = None if mean is None else torch.cat([mean[1:], mean[-1:]])  # warm start: the plan shifted by one
        mean, hist = mpc.plan(goal, g, env.state.wrist, init, holding=env.state.held >= 0, goal_grip=source.grip)
        energies.append(hist[-1]["elite_energy"])
        goals.append(source.label)
        for _ in range(2):
            frames.append(env.step(env_action(mean[0])))
            hand.append(felt(env))
            success = success or env.success()
            first_done = first_done or first_subgoal_done(env)
            closest = min(closest, float(np.linalg.norm(env.state.wrist - first_wrist)))
        steps += 1
        if success:
            break
        mpc.observe(np.stack(frames))
    seconds = time.perf_counter() - t0
    out = {"seed": int(seed), "family": family, "success": bool(success), "steps": steps,
           "seconds": round(seconds, 3), "final_energy": round(energies[-1], 4),
           "first_subgoal": bool(first_done), "closest_to_first_cm": round(100 * closest, 1)}
    if cfg.mode in ("thinker", "told"):
        out["subgoal_texts"] = texts
        out["subgoal_places"] = places  # where the head sent the hand, [x, y, z, grip], at each question
    if record:
        flat = frame_latents(planner.encoder, demo.frames, [demo.num_frames - 1])[0]
        out.update(frames=np.stack(frames), hand=hand, energies=energies, goals=goals, flat_goal=flat, demo=demo)
    return out


def episode_seeds(world_seed: int, episodes: int) -> list[tuple[int, str]]:
    """(seed, family) of held-out episode i: world seed `world_seed`'s i-th episode, families alternating."""
    return [(episode_seed(world_seed, i), FAMILIES[i % len(FAMILIES)]) for i in range(episodes)]


def plan_episodes(cfg: PlanConfig, episodes: int, world_seed: int, planner: Planner, progress: bool = True) -> dict:
    """Success rate, mean actions and seconds per action over `episodes` held-out episodes."""
    from tqdm.auto import tqdm

    if episodes < 1:
        raise ValueError(f"episodes must be ≥ 1, got {episodes}")
    rows = [run_episode(s, fam, cfg, planner)
            for s, fam in tqdm(episode_seeds(world_seed, episodes), desc=cfg.mode, unit="ep", disable=not progress)]
    per_family = {f: float(np.mean([r["success"] for r in rows if r["family"] == f]))
                  for f in FAMILIES if any(r["family"] == f for r in rows)}
    return {"success_rate": float(np.mean([r["success"] for r in rows])), "episodes": len(rows),
            "mean_steps": float(np.mean([r["steps"] for r in rows])),
            "first_subgoal_rate": float(np.mean([r["first_subgoal"] for r in rows])),
            "median_closest_to_first_cm": float(np.median([r["closest_to_first_cm"] for r in rows])),
            "seconds_per_action": sum(r["seconds"] for r in rows) / max(1, sum(r["steps"] for r in rows)),
            "mode": cfg.mode, "per_family": per_family, "world_seed": world_seed,
            "config": asdict(cfg), "per_episode": rows}


def planner_thinker(folder: str | Path) -> Path | None:
    """The thinker a planner folder's subgoal head was trained with (`folder/thinker`), or None."""
    own = Path(folder) / "thinker"
    return own if (own / "model.safetensors").exists() else None


def load_planner(folder: str | Path, encoder: str | Path, thinker: str | Path | None = None, need_head: bool = True
                 ) -> Planner:
    """The planner in `folder` with the encoder it plans in; with `need_head`, also its subgoal head and the
    thinker (default: the folder's own, `planner_thinker`). Warns when the encoder or thinker differs from the
    one the parts were trained with (their metrics files record the weights' digests)."""
    folder = Path(folder)
    if not (folder / "world_model.safetensors").exists():
        raise CheckpointError(f"{folder}: no world model; train one with `tkjepa train-world-model --out {folder}`")
    if need_head and not (folder / "subgoal_head.safetensors").exists():
        raise CheckpointError(f"{folder}: no subgoal head; train one with "
                              f"`tkjepa train-subgoal-head --planner {folder}`")
    thinker = thinker if thinker is not None else planner_thinker(folder)
    if need_head and thinker is None:
        raise CheckpointError(f"{folder}: no thinker in {folder / 'thinker'}; pass the one its head was trained with")
    backbones = load_backbones(encoder, thinker if need_head else None)
    parts = [(WORLD_MODEL_METRICS, "encoder")] + ([(SUBGOAL_HEAD_METRICS, "encoder"),
                                                    (SUBGOAL_HEAD_METRICS, "thinker")] if need_head else [])
    for name, which in parts:
        recorded = read_json(folder / name).get(f"{which}_digest") if (folder / name).exists() else None
        if recorded not in (None, backbones.digest(which)):
            warnings.warn(f"{folder / name}: trained with another {which} than "
                          f"{getattr(backbones, which + '_source')}; its plans may be meaningless", stacklevel=2)
    world_model, _ = load_world_model(folder)
    head = load_head(folder) if need_head else None
    return Planner(backbones.encoder, world_model, head, backbones.thinker, backbones.tokenizer)
