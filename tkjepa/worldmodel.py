"""The action-conditioned world model the planner searches with (V-JEPA 2-AC, shrunk to the tabletop).

State. The planner's state is the frozen encoder's *frame latent*: the encoding of one frame shown as a
still clip (the frame repeated 8 times; last tubelet), pooled 2×2 and layer-normed per token as
`forecast.pooled_tokens` does: `z [N=16, D=96]`. Tubelet j's state is the latent of its last frame 2j+1.
Why a still clip and not the sliding 8-frame window: the window's latent also encodes the motion inside the
window, and measured on play data, the window latents of consecutive tubelets of a nearly still hand
(< 0.6 cm per frame) differed by a mean L1 of 0.14 — about the energy between hand positions 10 cm apart. A
goal frame and a predicted state must be comparable as *states*: a frame latent is a function of the frame
alone, the same scene gives the same latent, and a goal image is encoded exactly like an observation.

Actions. Action pair j = the env actions (a_{2j−1}, a_{2j}) that produce tubelet j's two frames, normalised
to [−1, 1] (displacements / MAX_STEP, grip·2 − 1): `[8]`, the forecasting data's two-frames-per-tubelet layout.
Proprioception (`proprio=True`, V-JEPA 2-AC's end-effector state): each tubelet's input also carries the wrist
position at its last frame, normalised to the workspace box (`wrist_features`, `[3]`): `[11]` in all. The
robot knows where its own hand is, and for a candidate action sequence where it *will* be (the wrist moves by
the commanded displacement: `planning.wrist_path`), so the model is told where to draw the hand and spends
its capacity on how the scene looks there — without it, the action's effect had to be inferred from a latent
that places the hand only roughly (issue 3's probe).

Model. `WorldModel`: a `GuidedPredictor(injection="none", action_dim=8, block_causal=True)` — Tc context
states + H future mask tokens carrying the action pairs, so the prediction of tubelet t sees actions ≤ t
only — read as a *change* of the last observed state: ẑ_t = LN(z_last + predictor(…)_t). Most of the scene
does not move, so the network starts at "nothing changes" and spends its capacity on what the actions do.
Trained with V-JEPA 2-AC's L1 teacher-forcing loss on layer-normed latents.

Data. Expert demonstrations alone teach a model to ignore its actions (the action is a function of the
state). So training episodes are *play*: the scripted expert with smooth random perturbations of random
strength and random grip flips (70%), and random waypoint wandering with random grip (30%), over all four
task families; see `play_episode`.

`tkjepa train-planner --out data_samples/planner` trains this model, then the thinker's subgoal head
(`tkjepa.subgoal`), and writes both with a `metrics.json`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file, save_file

from tkjepa.encoder import frames_to_video
from tkjepa.predictor import GuidedPredictor, GuidedPredictorConfig
from tkjepa.world import expert, hand
from tkjepa.world.env import MAX_STEP, TabletopEnv
from tkjepa.world.scene import PLACE_X, TABLE_Y
from tkjepa.world.tasks import FAMILIES

CLIP = 8        # frames per encoder call (the encoder's pretraining clip length)
POOL = 2        # 8×8 encoder tokens -> 4×4
ACTION_DIM = 8  # two frames × [dx, dy, dz, grip] per tubelet
STATE_DIM = 3   # proprioception: the wrist position at the tubelet's last frame
WORKSPACE = (np.array([-0.21, 0.26, hand.MIN_WRIST_Z]), np.array([0.21, 0.62, 0.25]))  # wrist box in view (m)


# -- latents ---------------------------------------------------------------------------------------------
@torch.no_grad()
def frame_latents(encoder, frames: np.ndarray, indices=None, batch: int = 32, pool: bool = True) -> torch.Tensor:
    """frames [T, H, W, 3] uint8 -> latents [len(indices), N, D] of frames `indices` (default: all), each
    encoded alone as a still clip. Reads no frame but the ones indexed. `pool=False`: the encoder's own
    8 × 8 tokens (N = 64), not pooled 2 × 2 to the 4 × 4 the world model and planner use."""
    indices = range(len(frames)) if indices is None else indices
    out = []
    for i in range(0, len(indices), batch):
        still = np.repeat(frames[list(indices[i:i + batch])][:, None], CLIP, axis=1)  # [b, 8, H, W, 3]
        z = encoder(frames_to_video(still))[:, -1]                                 # [b, 64, D]
        if pool:
            g = int(round(z.shape[1] ** 0.5))
            z = F.avg_pool2d(rearrange(z, "b (h w) d -> b d h w", h=g), POOL)
            z = rearrange(z, "b d h w -> b (h w) d")
        out.append(F.layer_norm(z, (z.shape[-1],)))
    return torch.cat(out)


def tubelet_states(encoder, frames: np.ndarray) -> torch.Tensor:
    """frames [T, H, W, 3] (T even) -> states [T/2, N, D]: tubelet j's is the latent of frame 2j+1."""
    return frame_latents(encoder, frames, range(1, len(frames), 2))


def normalize_actions(actions: np.ndarray) -> np.ndarray:
    """Env actions [..., 4] -> [..., 4] in [−1, 1]: displacement / MAX_STEP, grip·2 − 1."""
    a = np.asarray(actions, np.float32)
    return np.concatenate([np.clip(a[..., :3] / MAX_STEP, -1, 1), a[..., 3:] * 2 - 1], -1)


def wrist_features(wrist) -> np.ndarray:
    """Wrist positions [..., 3] (m) -> [..., 3], the workspace box mapped to [−1, 1]."""
    lo, hi = WORKSPACE
    return ((np.asarray(wrist, np.float64) - (lo + hi) / 2) / ((hi - lo) / 2)).astype(np.float32)


def action_pairs(actions: np.ndarray) -> np.ndarray:
    """Per-frame env actions [T, 4] (a_t makes frame t+1) -> normalised pairs [T/2, 8]; pair j makes tubelet j.

    Pair 0's first action precedes the episode: a no-op (still, grip open).
    """
    a = normalize_actions(actions)
    first = normalize_actions(np.zeros(4))[None]
    prev = np.concatenate([first, a[:-1]])                                    # a_{t-1}
    return rearrange(prev, "(j two) a -> j (two a)", two=2)


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

    from tkjepa.world.generate import episode_seed

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
    seed_data: int = 1000       # = bench.TRAIN_SEED: planning is evaluated on seed 2000's episodes
    seed: int = 0               # weights and batch order
    proprio: bool = True        # each future tubelet's input also holds its wrist position (STATE_DIM)

    @property
    def input_dim(self) -> int:
        return ACTION_DIM + (STATE_DIM if self.proprio else 0)

    def predictor_config(self) -> GuidedPredictorConfig:
        return GuidedPredictorConfig(latent_dim=self.latent_dim, dim=self.dim, depth=self.depth,
                                     num_heads=self.num_heads, context_tubelets=self.context,
                                     future_tubelets=self.horizon, tokens=self.tokens, injection="none",
                                     action_dim=self.input_dim, block_causal=True)


class WorldModel(nn.Module):
    """forward(ctx [B, Tc, N, D], actions [B, H, input_dim]) -> predicted states [B, H, N, D].

    With proprioception, actions[..., 8:11] are `wrist_features` of the wrist at each future tubelet's end."""

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
    inputs = data["actions"][e, f]
    if cfg.proprio:
        inputs = torch.cat([inputs, data["wrist"][e, f]], -1)
    return data["z"][e, c], inputs, data["z"][e, f]


def _lr(step: int, cfg: WorldModelConfig) -> float:
    if step < 100:
        return cfg.lr * (step + 1) / 100
    frac = (step - 100) / max(1, cfg.steps - 100)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * frac)))


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
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(0, E, (cfg.batch_size,), generator=g)
        start = torch.randint(0, J - cfg.horizon, (cfg.batch_size,), generator=g)
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg)

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


def save_part(model: nn.Module, cfg, path: str | Path, stem: str) -> None:
    """`path/stem.json` (the config dataclass) + `path/stem.safetensors`, each written to a temporary name and
    renamed, so an interrupted save never leaves a half-written file under the final name."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp_json, tmp_st = path / f".{stem}.json.tmp", path / f".{stem}.safetensors.tmp"
    tmp_json.write_text(json.dumps(asdict(cfg), indent=1))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp_st))
    os.replace(tmp_st, path / f"{stem}.safetensors")
    os.replace(tmp_json, path / f"{stem}.json")


def load_part(path: str | Path, stem: str) -> tuple[dict, dict]:
    """(config fields, state dict) saved by `save_part` (safetensors: no pickle)."""
    path = Path(path)
    return json.loads((path / f"{stem}.json").read_text()), load_file(str(path / f"{stem}.safetensors"))


def save_world_model(model: WorldModel, cfg: WorldModelConfig, path: str | Path) -> None:
    save_part(model, cfg, path, "world_model")


def load_world_model(path: str | Path) -> tuple[WorldModel, WorldModelConfig]:
    fields, state = load_part(path, "world_model")
    cfg = WorldModelConfig(**{"proprio": False, **fields})  # files from before proprioception lack the field
    model = WorldModel(cfg)
    model.load_state_dict(state)
    return model.eval(), cfg


# `tkjepa train-planner` options of the place-first subgoal head (BENCHMARKS.md, issue 6, says what each measured)
PLACE_HEAD_OPTIONS = {
    "--fine-pointer": "the pointer reads the last frame's unpooled 8×8 tokens, where the named object can be found "
                      "(the decoder keeps the pooled 4×4)",
    "--read-name": "the pointer is also given the object the thinker names after 'next' (its two words, embedded and "
                   "added to every latent token)",
    "--named-pointer": "the pointer reads only the latent tokens and the named object (implies --read-name), as "
                       "scripts/grounding_probe.py; no hidden states",
    "--name-states": "the named object enters as the thinker's hidden states at its two words, all cached layers "
                     "mixed by learned weights, instead of a word-embedding table (implies --read-name)",
}


def add_arguments(p) -> None:
    p.add_argument("--out", default="data_samples/planner", help="folder for the planner's weights + metrics.json")
    p.add_argument("--episodes", type=int, default=None, help="play episodes for the world model (default 320)")
    p.add_argument("--steps", type=int, default=None, help="world-model optimiser steps (default 2500)")
    p.add_argument("--head-episodes", type=int, default=None,
                   help="demonstrations for the subgoal head (default 200; --place-head 2000)")
    p.add_argument("--head-steps", type=int, default=None,
                   help="subgoal-head optimiser steps (default 1500; --place-head 3000)")
    p.add_argument("--seed", type=int, default=0, help="weights and batch order; the data seeds are fixed")
    p.add_argument("--thinker", default=None,
                   help="thinker checkpoint for the subgoal head (default: the shipped forecasting thinker); "
                        "another one is copied into OUT/thinker, where `tkjepa plan` finds it")
    p.add_argument("--told-text", action="store_true",
                   help="train the subgoal head on the thinker told the true text: a diagnostic for `plan --mode "
                        "told`; with --named-pointer, which reads only the object named, also a head for "
                        "`plan --mode thinker` (trained on the true words, given the thinker's)")
    p.add_argument("--place-head", action="store_true",
                   help="experimental: a subgoal head that first points at where the hand goes, then draws z* there "
                        "(`subgoal.SubgoalConfig.placed`: 2000 demonstrations, 3000 steps by default)")
    for flag, text in PLACE_HEAD_OPTIONS.items():
        p.add_argument(flag, action="store_true", help=f"with --place-head: {text}")
    p.add_argument("--reuse-world-model", action="store_true",
                   help="keep the world model already in --out and train only the subgoal head")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: reproducible, no oversubscription)")
    p.add_argument("--quiet", action="store_true")


def planner_thinker(folder: str | Path) -> Path:
    """The thinker a planner folder was trained with: its own copy `folder/thinker` if it has one, else the
    shipped forecasting thinker."""
    from tkjepa.bench import THINKER

    own = Path(folder) / "thinker"
    return own if (own / "model.safetensors").exists() else THINKER


def run(args) -> int:
    import platform

    from tkjepa import subgoal
    from tkjepa.bench import ENCODER, THINKER, checkpoint_digest, load_models

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = Path(args.out)
    cfg = WorldModelConfig(seed=args.seed)
    cfg.episodes = args.episodes or cfg.episodes
    cfg.steps = args.steps or cfg.steps
    thinker_path = Path(args.thinker) if args.thinker else THINKER
    if not (thinker_path / "model.safetensors").exists():
        raise SystemExit(f"tkjepa train-planner: {thinker_path} holds no thinker (model.safetensors)")
    encoder, thinker = load_models(thinker=thinker_path)
    if args.reuse_world_model:
        if not (out / "world_model.safetensors").exists() or not (out / "metrics.json").exists():
            raise SystemExit(f"tkjepa train-planner: --reuse-world-model needs a trained planner in {out}")
        previous = json.loads((out / "metrics.json").read_text())
        wm_metrics, t_data, t_wm = previous["world_model"], 0.0, 0.0
        command_wm = previous.get("world_model_command") or previous["command"]
    else:
        data = play_data(cfg.seed_data, cfg.episodes, encoder, progress=not args.quiet)
        val = play_data(cfg.seed_data + 1, 48, encoder, progress=not args.quiet)
        t_data = time.perf_counter() - t0
        model, history = train_world_model(cfg, data, val, progress=not args.quiet)
        save_world_model(model, cfg, out)
        t_wm = time.perf_counter() - t0 - t_data
        wm_metrics = {"config": asdict(cfg), "final": history[-1], "history": history,
                      "params": sum(p.numel() for p in model.parameters())}
        command_wm = None  # set below: this very command

    given = [f for f in PLACE_HEAD_OPTIONS if getattr(args, f[2:].replace("-", "_"))]
    if given and not args.place_head:
        raise SystemExit(f"tkjepa train-planner: {', '.join(given)}: options of the place-first head; add --place-head")
    named = args.read_name or args.named_pointer or args.name_states
    hcfg = (subgoal.SubgoalConfig.placed(fine=args.fine_pointer, name_words=2 if named else 0,
                                         named_pointer=args.named_pointer, name_states=args.name_states)
            if args.place_head else subgoal.SubgoalConfig())
    hcfg.seed = args.seed
    hcfg.episodes = args.head_episodes or hcfg.episodes
    hcfg.steps = args.head_steps or hcfg.steps
    hcfg.told_text = args.told_text
    head, head_metrics = subgoal.train_from_scratch(hcfg, encoder, thinker, progress=not args.quiet)
    subgoal.save_head(head, head.cfg, out)
    own = out / "thinker"
    if thinker_path.resolve() != own.resolve():
        if own.exists():  # a stale copy would be loaded instead of the thinker this head was trained with
            shutil.rmtree(own)
        if thinker_path.resolve() != THINKER.resolve():
            shutil.copytree(thinker_path, own)  # the planner folder carries the thinker its head reads
    t_head = time.perf_counter() - t0 - t_data - t_wm
    command = (f"tkjepa train-planner --out {out}"
               + "".join(f" --{k.replace('_', '-')} {getattr(args, k)}"
                         for k in ("episodes", "steps", "head_episodes", "head_steps") if getattr(args, k) is not None)
               + (f" --seed {args.seed}" if args.seed else "") + (f" --thinker {args.thinker}" if args.thinker else "")
               + (" --told-text" if hcfg.told_text else "") + (" --place-head" if args.place_head else "")
               + "".join(f" {f}" for f in given)
               + (" --reuse-world-model" if args.reuse_world_model else ""))
    used = planner_thinker(out)  # == thinker_path, as `tkjepa plan` will find it
    metrics = {
        "command": command,
        "world_model_command": command_wm or command,  # what trained the world model
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "time_s": {"world_model_data": round(t_data, 1), "world_model_train": round(t_wm, 1),
                   "subgoal_head": round(t_head, 1)},
        "machine": f"{platform.machine()}, {args.threads} torch thread(s), torch {torch.__version__}",
        "world_model": wm_metrics,
        "subgoal_head": head_metrics,
        "encoder": str(ENCODER.name), "thinker": str(used.name),
        "encoder_sha256": checkpoint_digest(ENCODER), "thinker_sha256": checkpoint_digest(used),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    f = wm_metrics["final"]
    print(f"world model: val L1 {f['val_l1']:.3f} (shuffled actions {f['val_l1_shuffled_actions']:.3f}, "
          f"copy-last {f['val_l1_copy_last']:.3f}); subgoal head: val L1 {head_metrics['val_l1']:.3f} "
          f"(copy-current {head_metrics['val_l1_copy_current']:.3f})"
          + (f", its place {head_metrics['val_place_xy_cm']:.1f} cm from the boundary's wrist (median)"
             if "val_place_xy_cm" in head_metrics else "") + f"; {metrics['wall_time_s']} s -> {out}")
    return 0
