"""Training the forecasters: a GuidedPredictor + TrajectoryHead on cached encoder tokens and thinker features.

Models (all trained with the same budget; `MODELS`):
- `thinkjepa`  the dense window's latents + the thinker's pyramid guidance (by default cross-attention over the
               thinking tokens of every cached layer: `TrainConfig.injection`, `.streams`);
- `jepa_only`  the same predictor with no guidance;
- `vlm_only`   the guided predictor with the JEPA inputs zeroed (the official code's definition);
- `oracle`     the guidance replaced by an embedding of the true next subgoal (its kind and the target
               object's colour and shape), read by FiLM: a perfect thinker, the lower bound for this predictor
               and head.

The head reads each window's latents and predicts the joints' displacement from where the hand was at the
last observed frame (the JEPA branch observes the tracked joints of its dense window, as EgoDex records
them); the tiny encoder alone places the hand only to a few centimetres (frozen probe R² ≈ 0.9), and the lesson is
about where the hand goes next, not where it is.

One step: predict `train_windows` windows recursively (each window's context is the last Tc tubelets of
context + predictions so far, as at evaluation), read trajectories off every window with the head, and
minimise the wrist-and-fingers L2 error (metres, ×10) + λ·L1 between predicted and true future latents.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from tkjepa.forecast import ORACLE_DIM, ForecastConfig, ForecastData
from tkjepa.head import TrajectoryHead, TrajectoryHeadConfig
from tkjepa.predictor import GuidedPredictor, GuidedPredictorConfig
from tkjepa.pyramid import PyramidConfig

MODELS = ("thinkjepa", "jepa_only", "vlm_only", "oracle")
# Per-model changes to TrainConfig's defaults: the oracle's message is one vector per block, which FiLM reads
# (cross-attention over a single token would reduce to an added bias).
MODEL_DEFAULTS = {"oracle": {"injection": "film"}}


@dataclass
class TrainConfig:
    model: str = "thinkjepa"        # one of MODELS
    injection: str = "crossattn"    # guidance injection: film | adaln | crossattn (ignored by jepa_only). The
                                    # predictor's tokens look up the thinker's tokens: in 600 steps it learns to
                                    # read "next blue bowl" this way, where FiLM's pooled vector blurs the words
                                    # (BENCHMARKS.md, issue 5)
    levels: str | list = "all"      # thinker layers used by the pyramid: all | mid | last | [row indices]
    streams: str = "new"            # thinker streams: new (the thinking tokens) | old | both; ~100 prompt and
                                    # visual tokens beside the ~8 thinking ones dilute what cross-attention finds
    action_conditioned: bool = False  # feed the expert's actions to the future mask tokens (planning)
    steps: int = 600                # optimiser steps
    batch_size: int = 32            # episodes per step
    lr: float = 2e-3                # peak AdamW learning rate
    min_lr: float = 1e-5            # at the end of the cosine decay
    warmup: int = 50                # linear warmup steps
    weight_decay: float = 0.05
    gate_lr_scale: float = 50.0     # the tanh gates' lr multiplier: one scalar each, starting at 0, they would
                                    # open by ~lr per step and stay near 0 for a run this short
    train_windows: int = 1          # recursive windows the loss sees: 1 = the 8-frame trained horizon; longer
                                    # horizons are recursive rollouts (4 windows = 32 frames), as the paper evaluates
    latent_weight: float = 1.0      # λ of the latent L1 term
    seed: int = 0                   # weights and batch order
    ckpt_every: int = 200           # steps between resumable training states
    # one cross-attention head: a step costs ~1.2× jepa_only's instead of ~1.35× with four (BENCHMARKS.md)
    predictor: GuidedPredictorConfig = field(
        default_factory=lambda: GuidedPredictorConfig(dim=64, depth=4, cross_heads=1))
    head: TrajectoryHeadConfig = field(default_factory=lambda: TrajectoryHeadConfig(dim=64, hidden=128, state_dim=21))
    forecast: ForecastConfig = field(default_factory=ForecastConfig)


def model_config(model: str, **overrides) -> "TrainConfig":
    """TrainConfig of `model` with its `MODEL_DEFAULTS` (what `tkjepa train` and `tkjepa bench` use)."""
    return TrainConfig(model=model, **{**MODEL_DEFAULTS.get(model, {}), **overrides})


class Forecaster(nn.Module):
    """predictor (+ pyramid) + trajectory head (+ the oracle's subgoal embedding)."""

    def __init__(self, cfg: TrainConfig, vlm_dim: int = 128):
        super().__init__()
        if cfg.model not in MODELS:
            raise ValueError(f"unknown model {cfg.model!r}; choose from {', '.join(MODELS)}")
        self.cfg = cfg
        pc = cfg.predictor
        injection = "none" if cfg.model == "jepa_only" else cfg.injection
        pyramid = PyramidConfig(vlm_dim=vlm_dim, dim=pc.dim, levels=cfg.levels, streams=cfg.streams,
                                num_blocks=pc.depth)
        n = cfg.forecast.tokens
        self.predictor = GuidedPredictor(GuidedPredictorConfig(**{
            **asdict(pc), "injection": injection, "pyramid": pyramid, "tokens": n,
            "action_dim": 8 if cfg.action_conditioned else 0,
            "fine_grid": cfg.forecast.grid if cfg.forecast.fine else 0}))
        self.head = TrajectoryHead(TrajectoryHeadConfig(**{**asdict(cfg.head), "tokens": n}))
        if cfg.model == "oracle":  # the told next subgoal (kind, colour, shape one-hots) -> one vector per block
            self.subgoal = nn.Sequential(nn.Linear(ORACLE_DIM, pc.dim), nn.GELU(), nn.Linear(pc.dim, pc.depth * pc.dim))

    def forward(self, data: ForecastData, idx, windows: int, level_scale=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents [B, windows·Tf, N, D] and joints [B, windows·Tf·2, J, 3] for episodes `idx`."""
        cfg, pc = self.cfg, self.cfg.predictor
        ctx = data.ctx[idx]
        if cfg.model == "vlm_only":
            ctx = torch.zeros_like(ctx)
        guide = data.guide(idx, cfg.streams) if cfg.model in ("thinkjepa", "vlm_only") else None
        guidance = None
        if cfg.model == "oracle":
            o = data.oracle[idx]
            guidance = self.subgoal(o).view(len(o), pc.depth, pc.dim)
        actions = data.actions[idx][:, :windows * pc.future_tubelets] if cfg.action_conditioned else None
        fine = None
        if cfg.forecast.fine:
            if data.fine is None:
                raise ValueError("this forecaster reads fine tokens: build its data with ForecastConfig(fine=True)")
            fine = torch.zeros_like(data.fine[idx]) if cfg.model == "vlm_only" else data.fine[idx]
        z = self.predictor.rollout(ctx, guide=guide, windows=windows, actions=actions, guidance=guidance,
                                   level_scale=level_scale, fine=fine)
        seq = torch.cat([ctx, z], dim=1)                               # [B, Tc + windows·Tf, N, D]
        Tc, Tf = pc.context_tubelets, pc.future_tubelets
        anchor = self.anchor(data, idx)                                # [B, J, 3]
        joints = []
        absolute = self.cfg.model == "vlm_only"  # no observed joints: every window predicts absolute positions
        for w in range(windows):  # each window moves on from where the previous one ended
            state = torch.zeros_like(anchor.flatten(1)) if absolute else self.head.normalize(anchor).flatten(1)
            step = self.head(seq[:, w * Tf:w * Tf + Tc], seq[:, Tc + w * Tf:Tc + (w + 1) * Tf], state)
            joints.append(anchor[:, None] + step)                      # [B, Tf·2, J, 3]
            if not absolute:
                anchor = joints[-1][:, -1]
        return z, torch.cat(joints, dim=1)

    def anchor(self, data: ForecastData, idx) -> torch.Tensor:
        """Where the hand was at the last observed frame [B, J, 3]: the head predicts displacements from it.

        The joints of the observed frames are part of the JEPA branch's observation (EgoDex tracks them), so
        `vlm_only`, which has no JEPA inputs, gets zeros and must predict absolute positions.
        """
        last = data.past[idx][:, -1]
        return torch.zeros_like(last) if self.cfg.model == "vlm_only" else last


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to min_lr (a pure function of the step: resuming needs no replay)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = min((step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1), 1.0)
    return float(cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + np.cos(np.pi * frac)))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW: weight decay on matrices only; the guidance gates in their own group at `gate_lr_scale`× the lr."""
    gates = [p for n, p in model.named_parameters() if n.endswith("gates")]
    rest = [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.endswith("gates")]
    groups = [{"params": [p for _, p in rest if p.ndim >= 2], "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
              {"params": [p for _, p in rest if p.ndim < 2], "weight_decay": 0.0, "lr_scale": 1.0}]
    if gates:
        groups.append({"params": gates, "weight_decay": 0.0, "lr_scale": cfg.gate_lr_scale})
    return torch.optim.AdamW(groups, lr=cfg.lr)


def trajectory_error(pred: torch.Tensor, true: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean L2 (metres) over valid frames and joints: pred, true [B, T, J, 3]; valid [B, T]."""
    err = (pred - true).norm(dim=-1).mean(-1)                         # [B, T]
    return (err * valid).sum() / valid.sum().clamp_min(1)


def losses(model: Forecaster, data: ForecastData, idx) -> dict:
    cfg = model.cfg
    w = cfg.train_windows
    Tf = cfg.predictor.future_tubelets
    z, joints = model(data, idx, w)
    T = joints.shape[1]
    traj = trajectory_error(joints, data.traj[idx][:, :T], data.valid[idx][:, :T].float())
    latent = (z - data.future[idx][:, :w * Tf]).abs().mean()
    return {"loss": 10.0 * traj + cfg.latent_weight * latent, "traj_m": traj, "latent": latent}


def _state_tensors(model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        tensors.update({f"optim.{i}.{k}": torch.as_tensor(v).contiguous() for k, v in st.items()})
    return tensors


def train(cfg: TrainConfig, data: ForecastData, out: str | Path | None = None, resume: bool = False,
          progress: bool = True, until: int | None = None) -> tuple[Forecaster, list[dict]]:
    """Train one model on `data` (all episodes); returns it and a log (one record per 50 steps).

    Batches of step s come from a generator seeded by (seed, s) and the schedule is a function of s, so a run
    resumed from `out`/train_state.safetensors continues exactly as the uninterrupted one.
    """
    from tqdm.auto import tqdm

    if cfg.model in ("thinkjepa", "vlm_only") and not data.has_thinker:
        raise ValueError(f"model {cfg.model!r} needs thinker features in the data")
    torch.manual_seed(cfg.seed)
    model = Forecaster(cfg, vlm_dim=data.old.shape[-1] if data.has_thinker else 128)
    frames = cfg.predictor.future_tubelets * cfg.head.frames_per_tubelet
    all_ = torch.arange(len(data))
    model.head.set_target_stats((data.traj[:, :frames] - model.anchor(data, all_)[:, None])[data.valid[:, :frames]])
    opt = make_optimizer(model, cfg)
    start, history = 0, []
    state_path = Path(out) / "train_state.safetensors" if out is not None else None
    if resume and state_path is not None and state_path.exists():
        start, history = load_state(state_path, model, opt)
    model.train()
    bar = tqdm(range(start, min(cfg.steps, until or cfg.steps)), desc=cfg.model, unit="step", disable=not progress)
    t0 = time.perf_counter()
    for step in bar:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(0, len(data), (cfg.batch_size,), generator=g)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg) * group["lr_scale"]

        # forward: recursive windows -> latents and joints
        out_ = losses(model, data, idx)

        # backward & step
        opt.zero_grad(set_to_none=True)
        out_["loss"].backward()
        opt.step()

        if step == 0 or (step + 1) % 50 == 0 or step + 1 == cfg.steps:
            rec = {"step": step + 1, **{k: float(v.detach()) for k, v in out_.items()},
                   "time_s": time.perf_counter() - t0}
            history.append(rec)
            bar.set_postfix(traj_cm=f"{100 * rec['traj_m']:.2f}", latent=f"{rec['latent']:.3f}")
        if state_path is not None and ((step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps):
            save_state(state_path, model, opt, step + 1, history)
    model.eval()
    return model, history


def save_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int, history: list) -> None:
    """Atomically write weights + AdamW moments + step + log (write a temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(_state_tensors(model, opt), str(tmp), metadata={"step": str(step), "history": json.dumps(history)})
    os.replace(tmp, path)


def load_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, list]:
    from safetensors import safe_open

    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return int(meta["step"]), json.loads(meta["history"])


def save_forecaster(model: Forecaster, path: str | Path, extra: dict | None = None) -> None:
    """`path`/config.json + model.safetensors, written to a temp folder and renamed into place."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cfg = asdict(model.cfg)
    cfg["predictor"].pop("pyramid", None)
    vlm_dim = model.predictor.config.pyramid.vlm_dim
    (tmp / "config.json").write_text(json.dumps({"model_type": "tkjepa_forecaster", "train": cfg,
                                                 "vlm_dim": vlm_dim, **(extra or {})}, indent=2))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def _config_from_dict(d: dict, pc: dict) -> TrainConfig:
    head = TrajectoryHeadConfig(**d.pop("head"))
    fc = ForecastConfig(**d.pop("forecast"))
    return TrainConfig(**d, predictor=GuidedPredictorConfig(**pc), head=head, forecast=fc)


def load_forecaster(path: str | Path) -> Forecaster:
    meta = json.loads((Path(path) / "config.json").read_text())
    if meta.get("model_type") != "tkjepa_forecaster":
        raise ValueError(f"{path}: not a tkjepa forecaster checkpoint")
    d = dict(meta["train"])
    pc = {k: v for k, v in d.pop("predictor").items() if k != "pyramid"}
    model = Forecaster(_config_from_dict(d, pc), vlm_dim=meta.get("vlm_dim", 128))
    model.load_state_dict(load_file(str(Path(path) / "model.safetensors")))
    return model.eval()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="thinkjepa", choices=MODELS)
    p.add_argument("--out", required=True, help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--injection", default=None, choices=("film", "adaln", "crossattn"),
                   help="default: crossattn (film for the oracle)")
    p.add_argument("--levels", default="all", help="all | mid | last | comma-separated row indices")
    p.add_argument("--streams", default=None, choices=("both", "old", "new"), help="default: new")
    p.add_argument("--action-conditioned", action="store_true", help="condition the predictor on actions")
    p.add_argument("--episodes", type=int, default=1000, help="world training episodes (seed 1000)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.safetensors")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from tkjepa.bench import TRAIN_SEED, load_models, world_data

    if args.threads:
        torch.set_num_threads(args.threads)
    levels = args.levels if args.levels in ("all", "mid", "last") else [int(x) for x in args.levels.split(",")]
    chosen = {k: v for k, v in (("injection", args.injection), ("streams", args.streams)) if v is not None}
    cfg = model_config(args.model, levels=levels, action_conditioned=args.action_conditioned, seed=args.seed,
                       **chosen)
    if args.steps:
        cfg.steps = args.steps
    encoder, thinker = load_models()
    data, _ = world_data(TRAIN_SEED, args.episodes, encoder, thinker, cfg.forecast, progress=not args.quiet)
    model, history = train(cfg, data, out=args.out, resume=args.resume, progress=not args.quiet)
    save_forecaster(model, args.out, extra={"history": history})
    (Path(args.out) / "train_state.safetensors").unlink(missing_ok=True)
    print(f"{args.model}: final train trajectory error {100 * history[-1]['traj_m']:.2f} cm -> {args.out}")
    return 0
