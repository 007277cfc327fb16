"""Training one forecaster on cached forecasting data.

One step: predict `train_windows` windows recursively (each window's context is the last Tc tubelets of
context + predictions so far, as at evaluation; stop-gradient on what one window hands the next with
`detach_feedback`), read trajectories off every window with the head, and minimise the wrist-and-fingers L2
error (metres, ×10; the first window's frames weighted `first_window_weight`×) + λ·L1 between predicted and
true future latents.
Batches of step s come from `optim.step_generator(seed, s)` and the schedule is a function of s, so a run
resumed from its training state continues exactly as the uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from tkjepa.checkpoint import load_state, save_state
from tkjepa.device import autocast, grad_scaler, init_distributed, world
from tkjepa.forecast.data import ForecastData
from tkjepa.forecast.model import Forecaster, ForecasterConfig
from tkjepa.forecast.store import ForecastDataset, collate
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


def losses(model, data: ForecastData, idx, cfg: ForecasterConfig | None = None) -> dict:
    """{"loss", "traj_m" (trajectory L2, metres), "latent"} (+ "pointer", the grounding pointer's cross-entropy
    to where the wrist is seen `point_frame` frames on) of episodes `idx` over `train_windows`.
    `model` may be wrapped (DistributedDataParallel); `cfg` is then the wrapped Forecaster's."""
    cfg = cfg or model.cfg
    w = cfg.train_windows
    Tf = cfg.predictor.future_tubelets
    z, joints, weights = model(data, idx, w, pointer=True)
    T = joints.shape[1]
    valid = data.valid[idx][:, :T].float()
    weight = torch.ones(T, device=valid.device)
    weight[:Tf * cfg.head.frames_per_tubelet] = cfg.first_window_weight
    valid = valid * weight                                             # a weighted mean over the valid frames
    traj = trajectory_loss(joints.float(), data.traj[idx][:, :T], valid)
    dz = z.float() - data.future[idx][:, :w * Tf]
    latent = dz.abs().mean() if cfg.latent_loss == "l1" else dz.square().mean()
    fit = traj
    if cfg.traj_loss == "mse":  # over the valid frames' joints and coordinates
        sq = (joints.float() - data.traj[idx][:, :T]).square().mean((-1, -2))
        fit = (sq * valid).sum() / valid.sum().clamp_min(1)
    out = {"loss": cfg.traj_weight * fit + cfg.latent_weight * latent, "traj_m": traj, "latent": latent}
    if weights is not None and data.point is not None:  # the pointer learns where the wrist goes
        point = data.point[idx]
        known = point >= 0
        nll = -torch.log(weights.float().gather(1, point.clamp_min(0)[:, None])[:, 0] + 1e-8)
        out["pointer"] = (nll * known).sum() / known.sum().clamp_min(1)
        out["loss"] = out["loss"] + cfg.grounding_weight * out["pointer"]
    return out


def fit_to_data(cfg: ForecasterConfig, data: ForecastData) -> ForecasterConfig:
    """`cfg` with the sizes `data` fixes: the latent width D (the encoder's), the tokens per tubelet, the
    observed and forecast tubelets (the ForecastConfig's) and the head's state (the last observed joints, 3·J);
    the checkpoint records them, so a loaded model rebuilds."""
    D, N, J = data.ctx.shape[-1], data.ctx.shape[2], data.past.shape[2]
    if N != cfg.forecast.tokens or J != len(cfg.forecast.joints):
        raise ValueError(f"the data has {N} tokens per tubelet and {J} joints; the config expects "
                         f"{cfg.forecast.tokens} and {len(cfg.forecast.joints)} (its ForecastConfig must be the data's)")
    f = cfg.forecast
    return replace(cfg, predictor=replace(cfg.predictor, latent_dim=D, context_tubelets=f.context_tubelets,
                                          future_tubelets=f.window_tubelets),
                   head=replace(cfg.head, latent_dim=D, state_dim=3 * J))


def _views(data) -> tuple[ForecastData, ForecastData]:
    """(one batch that shows the sizes, the targets and observed joints of every episode) of in-memory data
    or a streamed `ForecastDataset`."""
    if isinstance(data, ForecastDataset):
        return collate([data[0]]), data.light()
    return data, data


class StepBatches(torch.utils.data.Sampler):
    """For a DataLoader: the indices of each step's batch (this process's share), drawn exactly as the
    in-memory loop draws them (`optim.step_generator`), for steps `start` … `stop` − 1."""

    def __init__(self, cfg: ForecasterConfig, n: int, start: int, stop: int, rank: int = 0, world: int = 1):
        self.cfg, self.n, self.start, self.stop, self.rank, self.world = cfg, n, start, stop, rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        share = self.cfg.batch_size // self.world
        for step in range(self.start, self.stop):
            idx = torch.randint(0, self.n, (self.cfg.batch_size,), generator=step_generator(self.cfg.seed, step))
            yield idx[self.rank * share:(self.rank + 1) * share].tolist()


def new_forecaster(cfg: ForecasterConfig, data) -> Forecaster:
    """A freshly initialised forecaster (seed `cfg.seed`) whose head is normalised to `data`'s targets
    (in-memory ForecastData or a streamed ForecastDataset)."""
    data, stats = _views(data)
    if cfg.model in ("thinkjepa", "vlm_only") and not data.has_thinker:
        raise ValueError(f"model {cfg.model!r} needs thinker features in the data")
    if cfg.grounding and cfg.model == "thinkjepa" and data.fine is None:
        raise ValueError("grounding points into the last observed frame's unpooled tokens, which this data lacks "
                         "(ForecastConfig(fine=True) builds them); or train without it: --set grounding=false")
    cfg = fit_to_data(cfg, data)
    torch.manual_seed(cfg.seed)
    rows = data.old.shape[1] if data.has_thinker else None  # the thinker's cached layers: one pyramid row each
    model = Forecaster(cfg, vlm_dim=data.old.shape[-1] if data.has_thinker else 128,
                       vlm_layers=None if rows in (None, 6) else tuple(range(rows)))
    frames = cfg.predictor.future_tubelets * cfg.head.frames_per_tubelet
    everything = torch.arange(len(stats))
    model.head.set_target_stats((stats.traj[:, :frames] - model.anchor(stats, everything)[:, None])
                                [stats.valid[:, :frames]])
    return model


def train(cfg: ForecasterConfig, data, out: str | Path | None = None, resume: bool = False,
          progress: bool = True, until: int | None = None, device: str | torch.device = "cpu",
          precision: str = "fp32", workers: int = 0) -> tuple[Forecaster, list[dict]]:
    """Train one model on `data` (all episodes) on `device` at `precision` (`tkjepa.device`); returns it (on
    the CPU) and a log (one record per `LOG_EVERY` steps). With `out`, a resumable training state is written
    there every `ckpt_every` steps; `resume` continues from it. `until`: stop after this many steps (the
    schedule still spans `cfg.steps`). `data`: ForecastData in memory, or a `store.ForecastDataset`, streamed
    by a DataLoader (`workers` processes) so that only a batch is in memory; both draw the same batches.

    Under torchrun (WORLD_SIZE > 1) each process takes an equal share of every step's batch (the batch drawn
    from the step's stream is the same everywhere) and DistributedDataParallel averages the gradients, so N
    processes compute the single-process step to float tolerance; rank 0 writes the states and the log.
    """
    from tqdm.auto import tqdm

    device = init_distributed(torch.device(device))
    rank, size = world()
    if cfg.batch_size % size:
        raise ValueError(f"batch_size={cfg.batch_size} does not split over {size} processes")
    core = new_forecaster(cfg, data).to(device)
    cfg = core.cfg
    model = core
    if size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # a variant leaves some modules unread (e.g. the old stream's projection): their gradients stay None
        model = DistributedDataParallel(core, device_ids=[device.index] if device.type == "cuda" else None,
                                        find_unused_parameters=True)
    streamed = isinstance(data, ForecastDataset)
    data = data if streamed else data.to(device)
    opt = make_optimizer(core, cfg)
    scaler = grad_scaler(device, precision)
    start, history = 0, []
    state_path = Path(out) / "train_state.safetensors" if out is not None else None
    if resume and state_path is not None and state_path.exists():
        start, history = load_state(state_path, core, opt)
    model.train()
    stop = min(cfg.steps, until or cfg.steps)
    bar = tqdm(range(start, stop), desc=cfg.model, unit="step",
               disable=not progress or rank != 0)
    t0 = time.perf_counter()
    batches = None
    if streamed:
        batches = iter(DataLoader(data, batch_sampler=StepBatches(cfg, len(data), start, stop, rank, size),
                                  collate_fn=collate, num_workers=workers, pin_memory=device.type == "cuda"))
    for step in bar:
        if streamed:  # this step's batch, read from the store
            batch = next(batches).to(device)
            idx = torch.arange(len(batch))
        else:
            batch = data
            idx = torch.randint(0, len(data), (cfg.batch_size,), generator=step_generator(cfg.seed, step))
            idx = idx[rank * (cfg.batch_size // size):(rank + 1) * (cfg.batch_size // size)]  # this process's share
        set_lr(opt, lr_at(step, cfg.steps, cfg.lr, cfg.min_lr, cfg.warmup))

        # forward: recursive windows -> latents and joints
        with autocast(device, precision):
            out_ = losses(model, batch, idx.to(device), cfg)

        # backward & step (the scaler is a pass-through unless fp16)
        opt.zero_grad(set_to_none=True)
        scaler.scale(out_["loss"]).backward()
        scaler.step(opt)
        scaler.update()

        if step == 0 or (step + 1) % LOG_EVERY == 0 or step + 1 == cfg.steps:
            values = torch.stack([v.detach().float() for v in out_.values()])
            if size > 1:  # the log holds the whole batch's means
                import torch.distributed as dist

                dist.all_reduce(values)
                values /= size
            rec = {"step": step + 1, **{k: float(v) for k, v in zip(out_, values)},
                   "time_s": time.perf_counter() - t0}
            history.append(rec)
            bar.set_postfix(traj_cm=f"{100 * rec['traj_m']:.2f}", latent=f"{rec['latent']:.3f}")
        if state_path is not None and rank == 0 and ((step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps):
            save_state(state_path, core, opt, step + 1, history)
    return core.eval().cpu(), history
