"""JEPA pretraining of the video encoder on the tabletop world (V-JEPA's recipe, CPU-sized).

One step: sample clips, mask tubes of tokens out, let the `encoder` see only the context tokens
(`masks_enc`), let the `predictor` guess the `target_encoder`'s layer-normed tokens at the masked positions
(`masks_pred`), and move the target encoder towards the encoder by EMA. The loss lives in latent space:
nothing is reconstructed in pixels, so the encoder may drop what it cannot predict (texture noise).

Anti-collapse term. JEPA has a trivial solution: map every clip to the same vector and the prediction is
perfect. EMA + stop-gradient avoid it in practice; we add a VICReg variance/covariance penalty λ·R(Z) on the
context tokens as a cheap, explicit guard whose two parts read directly as the diagnostics we plot
(per-dimension std; decorrelated dimensions -> high effective rank). λ is small (0.01): in 400-step trials
λ = 0 let the content std sink to ~0.04 (partial collapse) and λ = 0.1 spread the tokens but gave a worse
hand probe. SIGReg (LeJEPA: random 1-D projections matched to a Gaussian) is the more principled choice
for large runs; we did not try it here, its value is harder to relate to the per-dimension diagnostics.

Latent loss. V-JEPA uses L1, which is robust to the few tokens nobody can predict. The tiny preset uses L2,
which probed a little better on the tabletop (single runs, BENCHMARKS.md); `--loss l1` gives V-JEPA's choice.
A run is deterministic for a given machine and torch thread count: the shipped checkpoint used `--threads 2`.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from tkjepa.checkpoint import load_state, save_state, write_json, write_text
from tkjepa.encoder.base import frames_to_video
from tkjepa.encoder.ema import ema_update, make_target_encoder, momentum_at
from tkjepa.encoder.masks import MaskConfig, apply_masks, sample_masks
from tkjepa.encoder.vit import Block, EncoderConfig, VideoEncoder, init_weights, sincos_pos_embed_3d
from tkjepa.optim import lr_at, seed_everything, set_lr, step_generator
from tkjepa.world import dataset_episodes


@dataclass
class PredictorConfig:
    embed_dim: int = 96        # D of the encoder: input and output width
    pred_dim: int = 64         # predictor width (narrower than the encoder, as in I-JEPA / V-JEPA)
    depth: int = 2             # transformer blocks
    num_heads: int = 4         # attention heads
    mlp_ratio: float = 4.0     # MLP hidden width = mlp_ratio · pred_dim

    @classmethod
    def tiny(cls) -> "PredictorConfig":
        return cls()


class MaskedPredictor(nn.Module):
    """Context tokens + mask tokens (both with 3D positions) -> predictions of the target tokens.

    forward(z [B, Kc, D], masks_enc [B, Kc], masks_pred [B, Kp], grid (T', gh, gw)) -> [B, Kp, D].
    """

    def __init__(self, config: PredictorConfig | None = None):
        super().__init__()
        self.config = c = config or PredictorConfig()
        self.embed = nn.Linear(c.embed_dim, c.pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.pred_dim))
        self.blocks = nn.ModuleList(Block(c.pred_dim, c.num_heads, c.mlp_ratio) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.pred_dim)
        self.proj = nn.Linear(c.pred_dim, c.embed_dim)
        init_weights(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, z, masks_enc, masks_pred, grid):
        pos = sincos_pos_embed_3d(self.config.pred_dim, *grid).to(z)[None].expand(z.shape[0], -1, -1)  # [B, L, P]
        ctx = self.embed(z) + apply_masks(pos, masks_enc)                         # [B, Kc, P]
        tgt = self.mask_token + apply_masks(pos, masks_pred)                      # [B, Kp, P]
        x = torch.cat([ctx, tgt], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.proj(self.norm(x[:, ctx.shape[1]:]))                         # [B, Kp, D]


def latent_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Mean L1 (V-JEPA's choice: robust to the few tokens that are unpredictable) or L2 in latent space."""
    if kind == "l1":
        return (pred - target).abs().mean()
    if kind == "l2":
        return (pred - target).pow(2).mean()
    raise ValueError(f"loss kind must be 'l1' or 'l2', got {kind!r}")


def vicreg_regularizer(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """VICReg's (variance, covariance) terms of embeddings z [M, D] (rows = samples).

    variance: mean over dims of relu(gamma - std_d) — pushes every dimension to vary across samples.
    covariance: sum of squared off-diagonal covariances / D — pushes dimensions to carry different information.
    """
    z = z - z.mean(0)
    std = torch.sqrt(z.var(0) + eps)
    var_term = F.relu(gamma - std).mean()
    cov = z.T @ z / (z.shape[0] - 1)                          # [D, D]
    off = cov - torch.diag(torch.diagonal(cov))
    return var_term, off.pow(2).sum() / z.shape[1]


def effective_rank(z: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values) of z [M, D] (RankMe); 1 = collapsed, D = isotropic."""
    s = torch.linalg.svdvals(z.double())
    p = s / s.sum().clamp_min(1e-12)
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))


@torch.no_grad()
def collapse_diagnostics(encoder: nn.Module, target_encoder: nn.Module, video: torch.Tensor) -> dict:
    """Collapse diagnostics on a fixed batch video [B, T, C, H, W] (B ≥ 2 clips).

    Tokens are centred per position (t, n) across the B clips before measuring, so what is measured is how
    much the embedding depends on the clip's *content*: positional embeddings alone cannot fake it.
    std_mean / std_min: mean and smallest per-dimension std; erank: effective rank of the centred tokens;
    cos: mean cosine(target token, online token) of the same clip.
    """
    z, zt = encoder(video), target_encoder(video)             # [B, T', N, D]
    resid = z - z.mean(0, keepdim=True)
    std = resid.pow(2).mean(dim=(0, 1, 2)).sqrt()              # [D]
    return {"std_mean": float(std.mean()), "std_min": float(std.min()),
            "erank": effective_rank(rearrange(resid, "b t n d -> (b t n) d")),
            "cos": float(F.cosine_similarity(z, zt, dim=-1).mean())}


@dataclass
class PretrainConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig.tiny)        # the online encoder
    predictor: PredictorConfig = field(default_factory=PredictorConfig.tiny)  # the masked predictor
    masks: list[MaskConfig] = field(default_factory=lambda: [MaskConfig.short_range(), MaskConfig.long_range()])
    data_seed: int = 0          # world dataset seed (episode i has seed tkjepa.world.episode_seed(data_seed, i))
    train_episodes: int = 640   # episodes 0 .. train_episodes-1 are pretraining data
    probe_episodes: int = 2560  # episodes 0 .. probe_episodes-1 fit the frozen probe (≥ train_episodes)
    heldout_episodes: int = 200  # the next ones, never trained on, score the probe
    clip_frames: int = 8        # frames per training clip (T); later stages read 8-frame windows too
    batch_size: int = 16        # clips per step
    steps: int = 1600           # optimiser steps (≈ 5.5 min on 2 quiet cores, 2 threads)
    lr: float = 1e-3            # peak AdamW learning rate (after warmup)
    min_lr: float = 1e-5        # learning rate at the end of the cosine decay
    warmup: int = 100           # linear warmup steps
    weight_decay: float = 0.04  # AdamW weight decay (ijepa's start value)
    ema: tuple[float, float] = (0.99, 1.0)  # momentum cosine schedule (start, end)
    use_ema: bool = True        # False: no EMA, the target is the online encoder itself (m = 0)
    stop_grad: bool = True      # False (only with use_ema=False): gradients also flow through the targets
    loss: str = "l2"            # latent loss: "l1" or "l2" (the tiny preset's choice: BENCHMARKS.md compares them)
    reg_weight: float = 0.01    # λ of the VICReg anti-collapse term (0 disables it)
    log_every: int = 50         # steps between diagnostics
    ckpt_every: int = 200       # steps between resumable training-state checkpoints
    seed: int = 0               # seed of the weights, clip sampling and masks

    @classmethod
    def tiny(cls) -> "PretrainConfig":
        return cls()


def sample_clips(frames: torch.Tensor, batch_size: int, clip_frames: int, g: torch.Generator) -> torch.Tensor:
    """Random clips from frames [E, T, H, W, 3] uint8 -> video [B, clip_frames, 3, H, W] in [0, 1]."""
    E, T = frames.shape[:2]
    ep = torch.randint(0, E, (batch_size,), generator=g)
    t0 = torch.randint(0, T - clip_frames + 1, (batch_size,), generator=g)
    idx = t0[:, None] + torch.arange(clip_frames)                  # [B, clip_frames]
    return frames_to_video(frames[ep[:, None], idx])


class JEPA(nn.Module):
    """The three networks of a JEPA: `encoder`, `target_encoder` (EMA copy, no grad) and `predictor`."""

    def __init__(self, cfg: PretrainConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = VideoEncoder(cfg.encoder)
        self.target_encoder = make_target_encoder(self.encoder)
        self.predictor = MaskedPredictor(PredictorConfig(**{**asdict(cfg.predictor),
                                                            "embed_dim": cfg.encoder.embed_dim}))

    def loss(self, video: torch.Tensor, masks: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
        """video [B, T, C, H, W]; masks: one (masks_enc [B, Kc], masks_pred [B, Kp]) pair per mask kind."""
        cfg = self.cfg
        grid = self.encoder.grid(video.shape[1], video.shape[3], video.shape[4])
        target_net = self.target_encoder if cfg.use_ema else self.encoder
        with torch.set_grad_enabled(not cfg.stop_grad):
            h = target_net(video)                                      # [B, T', N, D]
            h = F.layer_norm(h, (h.shape[-1],))                         # layer-normed targets
            h = rearrange(h, "b t n d -> b (t n) d")
        pred_loss, var_loss, cov_loss = 0.0, 0.0, 0.0
        for masks_enc, masks_pred in masks:
            z = self.encoder(video, masks_enc)                          # [B, Kc, D]
            p = self.predictor(z, masks_enc, masks_pred, grid)          # [B, Kp, D]
            pred_loss = pred_loss + latent_loss(p, apply_masks(h, masks_pred), cfg.loss)
            v, c = vicreg_regularizer(rearrange(z, "b k d -> (b k) d"))
            var_loss, cov_loss = var_loss + v, cov_loss + c
        n = len(masks)
        reg = (var_loss + cov_loss) / n
        return {"loss": pred_loss / n + cfg.reg_weight * reg, "pred": pred_loss / n, "var": var_loss / n,
                "cov": cov_loss / n}


def _optimizer(model: JEPA, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW over encoder + predictor; no weight decay on biases, norms and the mask token (as ijepa)."""
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("target_encoder.")]
    decay = [p for p in params if p.ndim >= 2 and p.shape[:2] != (1, 1)]
    no_decay = [p for p in params if not (p.ndim >= 2 and p.shape[:2] != (1, 1))]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999))


def pretrain(cfg: PretrainConfig, frames: torch.Tensor | None = None, out: str | Path | None = None,
             resume: bool = False, progress: bool = True, until: int | None = None) -> tuple[JEPA, list[dict]]:
    """Train a JEPA; returns it and the diagnostics log (one dict per `log_every` steps).

    until: stop after this many steps (the schedules still span cfg.steps): train in chunks, or interrupt.
    frames: [E, T, H, W, 3] uint8 training episodes (default: the world's first `cfg.train_episodes`).
    Clips and masks of step s come from a generator seeded by (cfg.seed, s), so a run resumed from `out`'s
    training state continues exactly as the uninterrupted run would have.
    """
    from tqdm.auto import tqdm

    seed_everything(cfg.seed)
    if frames is None:
        frames = torch.from_numpy(np.stack([e.frames for e in dataset_episodes(cfg.data_seed, range(cfg.train_episodes))]))
    model = JEPA(cfg)
    opt = _optimizer(model, cfg)
    start, history = 0, []
    state_path = Path(out) / "train_state.safetensors" if out is not None else None
    if resume and state_path is not None and state_path.exists():
        start, history = load_state(state_path, model, opt)
    diag_video = sample_clips(frames, 32, cfg.clip_frames, torch.Generator().manual_seed(cfg.seed + 7919))
    t_start = time.perf_counter()
    bar = tqdm(range(start, min(cfg.steps, until or cfg.steps)), desc="pretrain", unit="step", disable=not progress)
    for step in bar:
        g = step_generator(cfg.seed, step)
        video = sample_clips(frames, cfg.batch_size, cfg.clip_frames, g)             # [B, T, 3, H, W]
        grid = model.encoder.grid(video.shape[1], video.shape[3], video.shape[4])
        masks = [sample_masks(cfg.batch_size, grid, mc, g) for mc in cfg.masks]
        lr = lr_at(step, cfg.steps, cfg.lr, cfg.min_lr, cfg.warmup)
        set_lr(opt, lr)

        # forward: context tokens -> predictor -> distance to the layer-normed target tokens (+ λ·R)
        losses = model.loss(video, masks)

        # backward & step: only the encoder and the predictor receive gradients
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()

        # EMA update: the target encoder follows the encoder (m = 0 copies it: the no-EMA ablation)
        m = momentum_at(step, cfg.steps, *cfg.ema) if cfg.use_ema else 0.0
        ema_update(model.target_encoder, model.encoder, m)

        if step == 0 or (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            rec = {"step": step + 1, **{k: float(v.detach()) for k, v in losses.items()}, "lr": lr,
                   "momentum": m, **collapse_diagnostics(model.encoder, model.target_encoder, diag_video),
                   "time_s": time.perf_counter() - t_start}
            history.append(rec)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", erank=f"{rec['erank']:.1f}", std=f"{rec['std_mean']:.3f}")
            if progress:
                bar.write(format_record(rec))
        if state_path is not None and ((step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps):
            state_path.parent.mkdir(parents=True, exist_ok=True)
            save_state(state_path, model, opt, step + 1, history)
    return model, history


def format_record(rec: dict) -> str:
    return (f"step {rec['step']:5d}  loss {rec['loss']:.4f}  pred {rec['pred']:.4f}  var {rec['var']:.3f}  "
            f"cov {rec['cov']:.3f}  std {rec['std_mean']:.3f} (min {rec['std_min']:.3f})  "
            f"erank {rec['erank']:.1f}  cos {rec['cos']:.3f}  m {rec['momentum']:.4f}")


def diagnostics_figure(runs: dict[str, list[dict]]):
    """Plotly subplots of the diagnostics of one or more runs {name: history} (curves side by side)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = [("pred", "latent loss"), ("std_mean", "per-dim std (content)"), ("erank", "effective rank"),
              ("cos", "cos(target, online)")]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for _, t in panels])
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    for r, (name, hist) in enumerate(runs.items()):
        for c, (key, _) in enumerate(panels, 1):
            fig.add_trace(go.Scatter(x=[h["step"] for h in hist], y=[h[key] for h in hist], name=name,
                                     legendgroup=name, showlegend=c == 1, line=dict(color=colors[r % 4])),
                          row=1, col=c)
    fig.update_xaxes(title_text="step")
    fig.update_layout(height=320, width=1100, margin=dict(t=40, b=40, l=40, r=20))
    return fig


PRESETS = {"tiny": PretrainConfig.tiny}


def train_and_export(cfg: PretrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
                     keep_state: bool = False, command: str = "", baseline: bool = True) -> dict:
    """World episodes -> `pretrain` -> probe (and, with `baseline`, the same network at init) -> files in `out`.

    Writes config.json + model.safetensors (the *target* encoder, which V-JEPA also evaluates and ships: the
    EMA average is smoother than the last online weights), metrics.json, diagnostics.json/.html.
    The probe is fitted on the first `cfg.probe_episodes` episodes (the pretraining ones and more: pretraining
    never saw their labels, and the 6144-feature probe needs many) and scored on `cfg.heldout_episodes` further
    episodes nobody trained on.
    """
    from tkjepa.encoder.probe import probe_r2

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_fit = max(cfg.probe_episodes, cfg.train_episodes)
    episodes = dataset_episodes(cfg.data_seed, range(n_fit + cfg.heldout_episodes))
    train_eps, fit_eps, heldout = episodes[:cfg.train_episodes], episodes[:n_fit], episodes[n_fit:]
    t_data = time.perf_counter() - t0
    frames = torch.from_numpy(np.stack([e.frames for e in train_eps]))
    model, history = pretrain(cfg, frames, out, resume=resume, progress=progress)
    t_train = time.perf_counter() - t0 - t_data
    # The weights are final, so the probes may use every core (pretraining keeps its thread count: the
    # checkpoint's bytes depend on it); their R² then depends on the core count in the last digits only.
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or threads)
    try:
        probe = {"pretrained": probe_r2(model.target_encoder, fit_eps, heldout)}
        if baseline:
            seed_everything(cfg.seed)
            random_init = VideoEncoder(cfg.encoder)  # the very weights pretraining started from
            probe["random_init"] = probe_r2(random_init, fit_eps, heldout)
    finally:
        torch.set_num_threads(threads)
    t_probe = time.perf_counter() - t0 - t_data - t_train
    model.target_encoder.save_pretrained(out)
    metrics = {"command": command, "wall_time_s": round(time.perf_counter() - t0, 1),
               "time_s": {"world": round(t_data, 1), "pretrain": round(t_train, 1), "probes": round(t_probe, 1)},
               "machine": (f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, "
                           f"torch {torch.__version__}"),
               "probe": probe, "final": history[-1], "config": asdict(cfg)}
    write_json(out / "metrics.json", metrics, indent=2)
    write_json(out / "diagnostics.json", history, indent=2)
    write_text(out / "diagnostics.html", diagnostics_figure({"pretrain": history}).to_html(include_plotlyjs="cdn"))
    state = out / "train_state.safetensors"
    if state.exists() and not keep_state:
        state.unlink()
    return metrics
