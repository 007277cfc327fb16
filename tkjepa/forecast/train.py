"""Training one forecaster on cached forecasting data.

One step: predict `train_windows` windows recursively (each window's context is the last Tc tubelets of
context + predictions so far, as at evaluation), read trajectories off every window with the head, and
minimise the wrist-and-fingers L2 error (metres, ×10) + λ·L1 between predicted and true future latents.
Batches of step s come from `optim.step_generator(seed, s)` and the schedule is a function of s, so a run
resumed from its training state continues exactly as the uninterrupted one.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn as nn

from tkjepa.checkpoint import load_state, save_state
from tkjepa.forecast.data import ForecastData
from tkjepa.forecast.model import Forecaster, ForecasterConfig
from tkjepa.metrics import trajectory_loss
from tkjepa.optim import lr_at, set_lr, step_generator

LOG_EVERY = 50  # steps between log records


def make_optimizer(model: nn.Module, cfg: ForecasterConfig) -> torch.optim.AdamW:
    """AdamW: weight decay on matrices only; the guidance gates in their own group at `gate_lr_scale`× the lr."""
    gates = [p for n, p in model.named_parameters() if n.endswith("gates")]
    rest = [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.endswith("gates")]
    groups = [{"params": [p for _, p in rest if p.ndim >= 2], "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
              {"params": [p for _, p in rest if p.ndim < 2], "weight_decay": 0.0, "lr_scale": 1.0}]
    if gates:
        groups.append({"params": gates, "weight_decay": 0.0, "lr_scale": cfg.gate_lr_scale})
    return torch.optim.AdamW(groups, lr=cfg.lr)


def losses(model: Forecaster, data: ForecastData, idx) -> dict:
    """{"loss", "traj_m" (trajectory L2, metres), "latent" (L1)} of episodes `idx` over `train_windows`."""
    cfg = model.cfg
    w = cfg.train_windows
    Tf = cfg.predictor.future_tubelets
    z, joints = model(data, idx, w)
    T = joints.shape[1]
    traj = trajectory_loss(joints, data.traj[idx][:, :T], data.valid[idx][:, :T].float())
    latent = (z - data.future[idx][:, :w * Tf]).abs().mean()
    return {"loss": 10.0 * traj + cfg.latent_weight * latent, "traj_m": traj, "latent": latent}


def new_forecaster(cfg: ForecasterConfig, data: ForecastData) -> Forecaster:
    """A freshly initialised forecaster (seed `cfg.seed`) whose head is normalised to `data`'s targets."""
    if cfg.model in ("thinkjepa", "vlm_only") and not data.has_thinker:
        raise ValueError(f"model {cfg.model!r} needs thinker features in the data")
    torch.manual_seed(cfg.seed)
    model = Forecaster(cfg, vlm_dim=data.old.shape[-1] if data.has_thinker else 128)
    frames = cfg.predictor.future_tubelets * cfg.head.frames_per_tubelet
    everything = torch.arange(len(data))
    model.head.set_target_stats((data.traj[:, :frames] - model.anchor(data, everything)[:, None])[data.valid[:, :frames]])
    return model


def train(cfg: ForecasterConfig, data: ForecastData, out: str | Path | None = None, resume: bool = False,
          progress: bool = True, until: int | None = None, device: str | torch.device = "cpu"
          ) -> tuple[Forecaster, list[dict]]:
    """Train one model on `data` (all episodes) on `device`; returns it (on the CPU) and a log (one record per
    `LOG_EVERY` steps). With `out`, a resumable training state is written there every `ckpt_every` steps;
    `resume` continues from it. `until`: stop after this many steps (the schedule still spans `cfg.steps`)."""
    from tqdm.auto import tqdm

    model = new_forecaster(cfg, data).to(device)
    data = data.to(device)
    opt = make_optimizer(model, cfg)
    start, history = 0, []
    state_path = Path(out) / "train_state.safetensors" if out is not None else None
    if resume and state_path is not None and state_path.exists():
        start, history = load_state(state_path, model, opt)
    model.train()
    bar = tqdm(range(start, min(cfg.steps, until or cfg.steps)), desc=cfg.model, unit="step", disable=not progress)
    t0 = time.perf_counter()
    for step in bar:
        idx = torch.randint(0, len(data), (cfg.batch_size,), generator=step_generator(cfg.seed, step))
        set_lr(opt, lr_at(step, cfg.steps, cfg.lr, cfg.min_lr, cfg.warmup))

        # forward: recursive windows -> latents and joints
        out_ = losses(model, data, idx.to(device))

        # backward & step
        opt.zero_grad(set_to_none=True)
        out_["loss"].backward()
        opt.step()

        if step == 0 or (step + 1) % LOG_EVERY == 0 or step + 1 == cfg.steps:
            rec = {"step": step + 1, **{k: float(v.detach()) for k, v in out_.items()},
                   "time_s": time.perf_counter() - t0}
            history.append(rec)
            bar.set_postfix(traj_cm=f"{100 * rec['traj_m']:.2f}", latent=f"{rec['latent']:.3f}")
        if state_path is not None and ((step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps):
            save_state(state_path, model, opt, step + 1, history)
    return model.eval().cpu(), history
