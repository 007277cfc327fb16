"""Scoring forecasters: their rollouts on forecasting data, and every checkpoint of a folder at once.

The headline horizon is the trained one, one predictor window (8 frames for the tiny geometry); "rollout"
reports 1–4 recursive windows (8 … 32 frames, up to 4× the trained horizon). `evaluate_checkpoints` is what
`tkjepa evaluate` runs: no training, the benchmark's metrics and JSON schema.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tkjepa.device import autocast
from tkjepa.forecast.data import ForecastConfig, ForecastData
from tkjepa.forecast.model import HEADLINE, Forecaster, load_forecaster
from tkjepa.forecast.store import ForecastDataset, collate
from tkjepa.metrics import const_velocity, rollout_scores


def window_frames(cfg: ForecastConfig) -> int:
    """Frames one predictor window forecasts (the trained horizon): its tubelets × 2 frames each."""
    return 2 * cfg.window_tubelets


@torch.no_grad()
def predict(model: Forecaster, data: ForecastData, windows: int = 4, level_scale=None, batch: int = 256,
            precision: str = "fp32") -> torch.Tensor:
    """Joints [E, windows·window_frames, J, 3] (fp32, on the CPU) of `windows` recursive windows for every
    episode of `data`, computed where the model and data are (`precision`: `tkjepa.device.autocast`)."""
    out = []
    device = next(model.parameters()).device
    for i in range(0, len(data), batch):
        idx = torch.arange(i, min(i + batch, len(data)), device=device)
        with autocast(device, precision):
            out.append(model(data, idx, windows, level_scale=level_scale)[1].float().cpu())
    return torch.cat(out)


def score(pred: torch.Tensor, data: ForecastData, cfg: ForecastConfig, families: list[str] | None = None) -> dict:
    """Headline metrics + the rollout table {frames: {ade, fde}} for predictions [E, ≥ window, J, 3]; with
    `families` (each episode's task family), also "families": {family: the same scores over its episodes}."""
    window = window_frames(cfg)
    out = rollout_scores(pred, data.traj, data.valid, window)
    if families is not None:
        if len(families) != len(pred):
            raise ValueError(f"{len(families)} family names for {len(pred)} episodes")
        out["families"] = {}
        for fam in sorted(set(families)):
            idx = torch.tensor([i for i, f in enumerate(families) if f == fam])
            m = rollout_scores(pred[idx], data.traj[idx], data.valid[idx], window)
            out["families"][fam] = {"ade": m["ade"], "fde": m["fde"], "acc5": m["acc5"], "rollout": m["rollout"],
                                    "episodes": len(idx)}
    return out


def by_family(models: dict[str, dict]) -> dict:
    """{model: scores with "families"} -> {family: {model: {"ade", "fde", "acc5", "rollout", "episodes"}}}."""
    out: dict = {}
    for name, m in models.items():
        for fam, f in m.get("families", {}).items():
            out.setdefault(fam, {})[name] = f
    return dict(sorted(out.items()))


def baseline_score(data: ForecastData, cfg: ForecastConfig, families: list[str] | None = None) -> dict:
    """The constant-velocity baseline's scores over every stored future frame."""
    return {**score(const_velocity(data.past, data.traj.shape[1]), data, cfg, families), "seeds": 0}


def checkpoint_folders(folder: str | Path) -> list[Path]:
    """The forecaster checkpoints (sub-folders with a config.json) of `folder`, by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of forecaster checkpoints")
    return sorted(p for p in folder.iterdir() if (p / "config.json").exists())


@torch.no_grad()
def evaluate_checkpoints(data, checkpoints: str | Path, cfg: ForecastConfig, device: str | torch.device = "cpu",
                         precision: str = "fp32", batch: int = 64, families: list[str] | None = None) -> dict:
    """Every checkpoint of the folder on `data` (ForecastData, or a `store.ForecastDataset` streamed `batch`
    episodes at a time), run on `device` at `precision`: {"models": {headline name:
    scores}, "ablations": {…}}, plus the constant-velocity baseline; the `oracle` is skipped (and said so)
    where the data has no subgoal annotations. With `families` (each episode's task family) every model's
    scores carry its per-family ones, and "families" holds them by family ({family: {model: scores}})."""
    result: dict = {"models": {}, "ablations": {}}
    streamed = isinstance(data, ForecastDataset)
    light = data.light() if streamed else data  # targets and observed joints: all scoring needs beside predictions
    on_device = None if streamed else data.to(device)
    for ckpt in checkpoint_folders(checkpoints):
        model = load_forecaster(ckpt)
        if model.cfg.model == "oracle" and not bool(light.has_oracle.all()):
            result.setdefault("skipped_models", {})[ckpt.name] = "no subgoal annotations in this data"
            continue
        model.to(device)
        if streamed:  # a batch of episodes in memory at a time
            loader = DataLoader(data, batch_size=batch, collate_fn=collate)
            pred = torch.cat([predict(model, b.to(device), cfg.windows, precision=precision) for b in loader])
        else:
            pred = predict(model, on_device, cfg.windows, precision=precision)
        m = {**score(pred, light, cfg, families), "seeds": 1}
        (result["models"] if ckpt.name in HEADLINE else result["ablations"])[ckpt.name] = m
    result["models"]["const_velocity"] = baseline_score(light, cfg, families)
    if families is not None:
        result["families"] = by_family({**result["models"], **result["ablations"]})
    return result


def markdown_table(result: dict) -> str:
    """The results JSON of `tkjepa bench` / `tkjepa evaluate` as markdown tables (metres): the headline metrics
    and the endpoint error at every rollout horizon, then the ablations, then ADE per task family."""
    horizons = list(next(iter(result["models"].values())).get("rollout", {}))
    rows = ["| model | ADE (m) | FDE (m) | Acc@5cm | " + " | ".join(f"FDE @{h}" for h in horizons) + " | seeds |",
            "|---|---|---|---|" + "---|" * len(horizons) + "---|"]
    for name, m in result["models"].items():
        std = f" ± {m['ade_std']:.4f}" if m.get("seeds", 1) > 1 else ""
        fdes = " | ".join(f"{m['rollout'][h]['fde']:.4f}" if h in m.get("rollout", {}) else "" for h in horizons)
        rows.append(f"| {name} | {m['ade']:.4f}{std} | {m['fde']:.4f} | {m['acc5']:.3f} | {fdes} | {m.get('seeds', '')} |")
    if result.get("ablations"):
        rows += ["", "| ablation (thinkjepa, seed 0) | ADE (m) | FDE (m) | Acc@5cm |", "|---|---|---|---|"]
        rows += [f"| {n} | {m['ade']:.4f} | {m['fde']:.4f} | {m['acc5']:.3f} |" for n, m in result["ablations"].items()]
    if result.get("families"):
        names = list(next(iter(result["families"].values())))
        rows += ["", "| family (episodes) | " + " | ".join(f"{n} ADE" for n in names) + " |",
                 "|---|" + "---|" * len(names)]
        for fam, by in result["families"].items():
            n = next(iter(by.values()))["episodes"]
            rows.append(f"| {fam} ({n}) | " + " | ".join(f"{by[k]['ade']:.4f}" if k in by else "" for k in names) + " |")
    return "\n".join(rows) + "\n"
