"""The forecasters: a GuidedPredictor (+ its pyramid) and a TrajectoryHead over cached encoder tokens and
thinker features, and the named variants the benchmark trains.

Models (`MODELS`), all with the same budget:
- `thinkjepa`  the dense window's latents + the thinker's pyramid guidance (cross-attention over the thinking
               tokens of every cached layer: `ForecasterConfig.injection`, `.streams`) + a pointer that finds the
               object the thinker names in the last frame's unpooled tokens and hands its place to the head and
               every block (`Grounding`, `ForecasterConfig.grounding`): on scattered scenes the name alone does
               not say where the hand goes;
- `jepa_only`  the same predictor with no guidance;
- `vlm_only`   the guided predictor with the JEPA latents zeroed (the official code's definition); like every
               learned model it keeps the observed joints, so the one input it lacks is the dense window's video;
- `oracle`     the guidance replaced by an embedding of the true next subgoal (its kind and the target
               object's colour and shape), read by FiLM: a perfect thinker, the lower bound for this predictor
               and head.

The head reads each window's latents and predicts the joints' displacement from where the hand was at the
last observed frame (every model observes the tracked joints of the dense window, as EgoDex records them);
the tiny encoder alone places the hand only to a few centimetres (frozen probe R² ≈ 0.9), and the lesson is
about where the hand goes next, not where it is.

Training sees `train_windows` recursive windows (4 = 32 frames, the longest evaluated rollout), with
stop-gradient on what one window feeds the next (latents and the joints it ends at: `detach_feedback`) and the
first window's frames weighted `first_window_weight`× in the trajectory term, so the trained horizon stays
as sharp as with one window while later windows learn to continue from the model's own predictions.

A variant is a name for a set of config changes (`VARIANTS`): the headline models, and thinkjepa read in other
ways (the ablations). `variant_config(name)` is what `tkjepa train --variant` and `tkjepa bench` build.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn

from tkjepa.checkpoint import (CheckpointError, atomic_folder, config_from_dict, load_weights, read_json,
                               save_tensors, write_json)
from tkjepa.forecast.data import ForecastConfig, ForecastData
from tkjepa.forecast.targets import ORACLE_DIM
from tkjepa.head import TrajectoryHead, TrajectoryHeadConfig
from tkjepa.encoder.vit import sincos_pos_embed_3d
from tkjepa.predictor import CrossAttention, GuidedPredictor, GuidedPredictorConfig
from tkjepa.pyramid import PyramidConfig

MODELS = ("thinkjepa", "jepa_only", "vlm_only", "oracle")
MODEL_TYPE = "tkjepa_forecaster"  # config.json's "model_type"
FORMAT = 2                        # config.json's layout version


@dataclass
class ForecasterConfig:
    model: str = "thinkjepa"        # one of MODELS
    injection: str = "crossattn"    # guidance injection: film | adaln | crossattn (ignored by jepa_only). The
                                    # predictor's tokens look up the thinker's tokens: in 600 steps it learns to
                                    # read "next blue bowl" this way, where FiLM's pooled vector blurs the words
    grounding: bool = False         # thinkjepa (the recipe's variant turns it on): point at where the named
                                    # object is in the last frame's unpooled tokens (`Grounding`; needs
                                    # forecast.fine) and hand that token to the head and every block
    grounding_weight: float = 1.0   # weight of the pointer's cross-entropy to the wrist's cell 12 frames on
    levels: str | list = "all"      # thinker layers used by the pyramid: all | mid | last | [row indices]
    streams: str = "new"            # thinker streams: new (the thinking tokens) | old | both; ~100 prompt and
                                    # visual tokens beside the ~8 thinking ones dilute what cross-attention finds
    steps: int = 600                # optimiser steps
    batch_size: int = 32            # episodes per step
    lr: float = 2e-3                # peak AdamW learning rate
    min_lr: float = 1e-5            # at the end of the cosine decay
    warmup: int = 50                # linear warmup steps
    weight_decay: float = 0.05
    gate_lr_scale: float = 50.0     # the tanh gates' lr multiplier: one scalar each, starting at 0, they would
                                    # open by ~lr per step and stay near 0 for a run this short
    train_windows: int = 4          # recursive windows the loss sees (4 = 32 frames, the longest rollout scored);
                                    # with 1 (the 8-frame horizon only) FDE at 32 frames drifts past const velocity
    detach_feedback: bool = True    # stop-gradient on the latents and joints one window hands the next
    first_window_weight: float = 6.0  # weight of the first window's frames in the trajectory term (others 1)
    latent_weight: float = 1.0      # λ of the latent term
    traj_loss: str = "l2"           # "l2": mean L2 distance (metres); "mse": mean squared error (the official code)
    latent_loss: str = "l1"         # "l1" | "mse" (the official code) between predicted and target latents
    traj_weight: float = 10.0       # weight of the trajectory term
    seed: int = 0                   # weights and batch order
    ckpt_every: int = 200           # steps between resumable training states
    # one cross-attention head: a step costs ~1.2× jepa_only's instead of ~1.35× with four
    predictor: GuidedPredictorConfig = field(
        default_factory=lambda: GuidedPredictorConfig(dim=64, depth=4, cross_heads=1))
    head: TrajectoryHeadConfig = field(default_factory=lambda: TrajectoryHeadConfig(dim=64, hidden=128, state_dim=21))
    forecast: ForecastConfig = field(default_factory=ForecastConfig)

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        if self.train_windows < 1 or self.first_window_weight <= 0:
            raise ValueError(f"train_windows must be ≥ 1 and first_window_weight > 0, got {self.train_windows}, "
                             f"{self.first_window_weight}")
        if self.grounding and not self.forecast.fine:
            raise ValueError("grounding reads the unpooled tokens: it needs forecast=ForecastConfig(fine=True)")
        if self.traj_loss not in ("l2", "mse") or self.latent_loss not in ("l1", "mse"):
            raise ValueError(f"traj_loss must be l2 or mse and latent_loss l1 or mse, got {self.traj_loss!r}, "
                             f"{self.latent_loss!r}")


# name -> ForecasterConfig changes. The oracle's message is one vector per block, which FiLM reads
# (cross-attention over a single token would reduce to an added bias).
VARIANTS: dict[str, dict] = {
    "thinkjepa": {"model": "thinkjepa", "grounding": True},
    "jepa_only": {"model": "jepa_only"},
    "vlm_only": {"model": "vlm_only"},
    "oracle": {"model": "oracle", "injection": "film"},
    "thinkjepa_film": {"model": "thinkjepa", "injection": "film"},
    "thinkjepa_adaln": {"model": "thinkjepa", "injection": "adaln"},
    "thinkjepa_levels_mid": {"model": "thinkjepa", "levels": "mid"},
    "thinkjepa_levels_last": {"model": "thinkjepa", "levels": "last"},
    "thinkjepa_official": {"model": "thinkjepa", "injection": "film", "streams": "both", "levels": "all"},
}
HEADLINE = MODELS                                       # trained over seeds in the benchmark
ABLATIONS = tuple(v for v in VARIANTS if v not in HEADLINE)  # thinkjepa read another way, seed 0
SHIPPED_ABLATIONS = ("thinkjepa_film", "thinkjepa_adaln", "thinkjepa_levels_mid", "thinkjepa_levels_last",
                     "thinkjepa_official")


def paper_forecast() -> ForecastConfig:
    """The official data layout: 32 observed frames spread over [0, T/2), 32 targets over [T/2, T), every one of
    V-JEPA 2's 16 × 16 tokens per tubelet (no pooling; 32 frames per encoder call), both hands' 52 joints in the
    camera frame of the last observed frame, and the thinker reading the same 32 frames."""
    from tkjepa.episode import BIMANUAL_JOINTS
    from tkjepa.sampling import SamplerConfig

    return ForecastConfig(context_tubelets=16, window_tubelets=16, windows=1, pool=1, clip_frames=32, grid=16,
                          fine=False, joints=BIMANUAL_JOINTS, frames="linspace", coords="camera",
                          sampler=SamplerConfig(dense_frames=32, thinker_frames=32, horizon=32, split=0.5,
                                                rounding="floor"))


# `--preset NAME`: ForecasterConfig changes (on top of a variant) and the backbones a preset runs on by default.
PRESETS: dict[str, dict] = {
    "tiny": {},
    # the official configuration (../paper notes): FiLM on both streams over every cached layer into a 12 × 384
    # predictor, MSE + MSE, batch 16 per GPU; 11,250 steps ≈ 200 epochs of 1,800 training episodes on 2 GPUs
    "paper": {"injection": "film", "streams": "both", "levels": "all", "train_windows": 1, "steps": 11250,
              "batch_size": 16, "lr": 1e-4, "min_lr": 1e-6, "warmup": 500, "traj_loss": "mse", "latent_loss": "mse",
              "traj_weight": 1.0, "gate_lr_scale": 10.0, "ckpt_every": 1000,
              "predictor": GuidedPredictorConfig(latent_dim=1024, dim=384, depth=12, num_heads=6),
              "head": TrajectoryHeadConfig(latent_dim=1024, dim=384, hidden=768, state_dim=156, tokens=256),
              "forecast": paper_forecast()},
}
PRESET_BACKBONES = {"paper": ("facebook/vjepa2-vitl-fpc64-256", "Qwen/Qwen3-VL-2B-Thinking")}


def variant_config(name: str, preset: str = "tiny", **overrides) -> ForecasterConfig:
    """The ForecasterConfig of variant `name` (`VARIANTS`) in `preset` (`PRESETS`), with `overrides` (e.g.
    seed=1, steps=60) on top."""
    if name not in VARIANTS:
        raise ValueError(f"unknown forecaster variant {name!r}; known: {', '.join(VARIANTS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if preset != "tiny" and name == "oracle":
        raise ValueError("the oracle reads the tabletop's subgoal annotations, which EgoDex has not: it exists "
                         "in the tiny preset only")
    settings = {k: (replace(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in PRESETS[preset].items()}
    variant = dict(VARIANTS[name])
    if preset != "tiny":  # the other presets are the official configuration, which reads no unpooled frame
        variant.pop("grounding", None)
    return ForecasterConfig(**{**settings, **variant, **overrides})


class Grounding(nn.Module):
    """Finds the object the thinker names in the last observed tubelet's unpooled tokens (`ForecastData.fine`).

    A learned query reads the name from the thinker's projected tokens (one cross-attention head), each of the
    G² tokens is scored against it, and their softmax-weighted position (x, y in [−1, 1]) and feature become
    one token: forward(fine [B, G², D], kv [B, M, dim], kv_mask [B, M]) -> ([B, 1, dim], weights [B, G²]).
    The pooled 4 × 4 tokens the predictor reads blur a small object into its neighbours; at 8 × 8 it is one or
    two tokens.
    """

    def __init__(self, latent_dim: int, dim: int, grid: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.name = CrossAttention(dim, 1)
        self.embed = nn.Linear(latent_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.q, self.k = nn.Linear(dim, dim), nn.Linear(dim, dim, bias=False)  # a key bias: the same logit
                                                                              # shift for every cell
        self.out = nn.Sequential(nn.Linear(dim + 2, dim), nn.GELU(), nn.Linear(dim, dim))
        self.register_buffer("pos", sincos_pos_embed_3d(dim, 1, grid, grid).view(grid * grid, dim), persistent=False)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, grid), torch.linspace(-1, 1, grid), indexing="ij")
        self.register_buffer("xy", torch.stack([xs, ys], -1).view(grid * grid, 2), persistent=False)

    def forward(self, fine: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor):
        name = self.name(self.query.expand(len(fine), -1, -1), kv, kv_mask)          # [B, 1, dim]
        f = self.norm(self.embed(fine) + self.pos)                                    # [B, G², dim]
        w = torch.softmax(self.q(name) @ self.k(f).transpose(1, 2) / f.shape[-1] ** 0.5, dim=-1)  # [B, 1, G²]
        return self.out(torch.cat([w @ f, w @ self.xy], dim=-1)), w[:, 0]


class Forecaster(nn.Module):
    """predictor (+ pyramid) + trajectory head (+ the oracle's subgoal embedding)."""

    def __init__(self, cfg: ForecasterConfig, vlm_dim: int = 128, vlm_layers: tuple[int, ...] | None = None):
        super().__init__()
        self.cfg = cfg
        pc = cfg.predictor
        injection = "none" if cfg.model == "jepa_only" else cfg.injection
        pyramid = PyramidConfig(vlm_dim=vlm_dim, dim=pc.dim, levels=cfg.levels, streams=cfg.streams,
                                num_blocks=pc.depth, **({} if vlm_layers is None else {"layers": tuple(vlm_layers)}))
        n = cfg.forecast.tokens
        self.predictor = GuidedPredictor(replace(pc, injection=injection, pyramid=pyramid, tokens=n))
        self.head = TrajectoryHead(replace(cfg.head, tokens=n, joints=len(cfg.forecast.joints)))
        if cfg.model == "oracle":  # the told next subgoal (kind, colour, shape one-hots) -> one vector per block
            self.subgoal = nn.Sequential(nn.Linear(ORACLE_DIM, pc.dim), nn.GELU(), nn.Linear(pc.dim, pc.depth * pc.dim))
        self.grounding = None
        if cfg.grounding and cfg.model == "thinkjepa":
            self.grounding = Grounding(pc.latent_dim, pc.dim, cfg.forecast.grid)
            self.ground_head = nn.Linear(pc.dim, cfg.head.dim)  # the token, as the head's context: zero at
            nn.init.zeros_(self.ground_head.weight)                  # init, as the gated guidance, so training
            nn.init.zeros_(self.ground_head.bias)                    # starts from the unguided forecaster

    def forward(self, data: ForecastData, idx, windows: int, level_scale=None, pointer: bool = False):
        """Latents [B, windows·Tf, N, D] and joints [B, windows·Tf·2, J, 3] for episodes `idx` (+ the
        grounding pointer's weights [B, G²] with `pointer`: None without grounding)."""
        cfg, pc = self.cfg, self.cfg.predictor
        ctx = data.ctx[idx]
        if cfg.model == "vlm_only":
            ctx = torch.zeros_like(ctx)
        guide = data.guide(idx, cfg.streams) if cfg.model in ("thinkjepa", "vlm_only") else None
        guidance = None
        if cfg.model == "oracle":
            o = data.oracle[idx]
            guidance = self.subgoal(o).view(len(o), pc.depth, pc.dim)
        where = weights = None
        if self.grounding is not None:
            if data.fine is None:
                raise ValueError("this forecaster grounds the named object: its data needs ForecastConfig(fine=True)")
            kv, kv_mask = self.predictor.pyramid.tokens(*guide)
            where, weights = self.grounding(data.fine[idx], kv[:, -1], kv_mask)       # [B, 1, dim], [B, G²]
        detach = cfg.detach_feedback and torch.is_grad_enabled()
        z = self.predictor.rollout(ctx, guide=guide, windows=windows, guidance=guidance, level_scale=level_scale,
                                   detach_feedback=detach, extra=where if cfg.injection == "crossattn" else None)
        seq = torch.cat([ctx, z], dim=1)                               # [B, Tc + windows·Tf, N, D]
        fed = torch.cat([ctx, z.detach()], dim=1) if detach else seq   # what a window is handed as its past
        Tc, Tf = pc.context_tubelets, pc.future_tubelets
        anchor = self.anchor(data, idx)                                # [B, J, 3]
        context = None if where is None else self.ground_head(where[:, 0])
        joints = []
        for w in range(windows):  # each window moves on from where the previous one ended
            step = self.head(fed[:, w * Tf:w * Tf + Tc], seq[:, Tc + w * Tf:Tc + (w + 1) * Tf],
                             self.head.normalize(anchor).flatten(1), context)
            joints.append(anchor[:, None] + step)                      # [B, Tf·2, J, 3]
            anchor = joints[-1][:, -1].detach() if detach else joints[-1][:, -1]
        out = (z, torch.cat(joints, dim=1))
        return (*out, weights) if pointer else out

    def anchor(self, data: ForecastData, idx) -> torch.Tensor:
        """Where the hand was at the last observed frame [B, J, 3]: the head predicts displacements from it.
        The observed joints are part of every model's observation (EgoDex tracks them)."""
        return data.past[idx][:, -1]


def save_forecaster(model: Forecaster, path: str | Path, extra: dict | None = None) -> None:
    """`path`/config.json + model.safetensors, written into a temporary folder that then replaces `path`."""
    cfg = asdict(model.cfg)
    cfg["predictor"].pop("pyramid")  # the Forecaster builds it from levels, streams and vlm_dim
    meta = {"model_type": MODEL_TYPE, "format": FORMAT, "config": cfg,
            "vlm_dim": model.predictor.config.pyramid.vlm_dim,
            "vlm_layers": list(model.predictor.config.pyramid.layers), **(extra or {})}
    with atomic_folder(path) as tmp:
        write_json(tmp / "config.json", meta, indent=2)
        save_tensors(tmp / "model.safetensors", model.state_dict())


def pipeline_of(path: str | Path) -> dict:
    """What a checkpoint records of the pipeline it was trained in (`tkjepa train`): the backbones' sources and
    weight digests, the data, split, joints, device and precision; {} for a checkpoint that records none."""
    return read_json(Path(path) / "config.json").get("pipeline", {})


def load_forecaster(path: str | Path) -> Forecaster:
    """A folder written by `save_forecaster`, checked against this code (CheckpointError names the problem)."""
    path = Path(path)
    meta = read_json(path / "config.json")
    if meta.get("model_type") != MODEL_TYPE:
        raise CheckpointError(f"{path / 'config.json'}: not a tkjepa forecaster checkpoint "
                              f"(model_type {meta.get('model_type')!r})")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path / 'config.json'}: forecaster format {meta.get('format')!r}, this tkjepa "
                              f"reads format {FORMAT}")
    cfg = config_from_dict(ForecasterConfig, meta["config"], path / "config.json")
    model = Forecaster(cfg, vlm_dim=meta.get("vlm_dim", 128), vlm_layers=meta.get("vlm_layers"))
    return load_weights(model, path / "model.safetensors").eval()
