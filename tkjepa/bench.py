"""`tkjepa bench` (train + evaluate every model, ≥ 3 seeds) and `tkjepa evaluate` (shipped checkpoints only).

Data: training episodes are world episodes of seed `TRAIN_SEED`; the default test split is world seed
`TEST_SEED` (a disjoint draw), or any EgoDex-format folder given with `--data`. Encoder tokens and thinker
features are computed once per (episodes, encoder, thinker) and cached under `runs/cache/`.

Metrics, over the 7 right-hand joints, on the frames after the forecast start: ADE (mean L2, m), FDE (L2 at
the last frame), Acc@5cm (share of joint positions within 5 cm). The headline horizon is the trained one, one
8-frame predictor window; `rollout` reports 1–4 recursive windows (8 … 32 frames, up to 4× the trained horizon).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tkjepa.forecast import ForecastConfig, ForecastData, build, data_key

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "data_samples" / "forecasters"
CACHE = REPO / "runs" / "cache"
ENCODER = REPO / "data_samples" / "encoder_tiny"
THINKER = REPO / "data_samples" / "thinker_tiny"
TRAIN_SEED, TEST_SEED = 1000, 2000
# The forecasters' world: every colour has its home on the table (world v5), so the thinker's "next blue bowl"
# also says where the hand is going; on scattered scenes a forecaster must find the named object itself.
LAYOUT = "homes"
HEADLINE_FRAMES = 8
HEADLINE = ("thinkjepa", "jepa_only", "vlm_only", "oracle")
# ablations of thinkjepa (one seed each): name -> TrainConfig overrides
ABLATIONS = {"stream_old": {"streams": "old"}, "stream_both": {"streams": "both"},
             "levels_last": {"levels": "last"}, "levels_mid": {"levels": "mid"},
             "inject_film": {"injection": "film"}, "inject_adaln": {"injection": "adaln"}}


# the shipped checkpoints (data_samples/forecasters/<name>): name -> TrainConfig fields
CHECKPOINTS = {"thinkjepa": {"model": "thinkjepa"}, "jepa_only": {"model": "jepa_only"},
               "vlm_only": {"model": "vlm_only"}, "oracle": {"model": "oracle"},
               "thinkjepa_film": {"model": "thinkjepa", "injection": "film"},
               "thinkjepa_adaln": {"model": "thinkjepa", "injection": "adaln"},
               "thinkjepa_levels_mid": {"model": "thinkjepa", "levels": "mid"},
               "thinkjepa_levels_last": {"model": "thinkjepa", "levels": "last"}}
# ablations whose seed-0 model `--save-checkpoints` keeps (the viewer's injection and layer-subset selectors)
SAVED_ABLATIONS = {"inject_film": "thinkjepa_film", "inject_adaln": "thinkjepa_adaln",
                   "levels_mid": "thinkjepa_levels_mid", "levels_last": "thinkjepa_levels_last"}


def shipped_or_trained(name: str, encoder, thinker, steps: int = 60, episodes: int = 200, seed: int = 0,
                       folder=SHIPPED):
    """(model, "shipped" | "stand-in"): the checkpoint `folder/name` if it exists, else a stand-in trained for
    `steps` steps on `episodes` world training episodes (what a lesson does without the shipped files)."""
    from tkjepa.train import load_forecaster, train

    path = Path(folder) / name
    if (path / "config.json").exists():
        return load_forecaster(path), "shipped"
    if name not in CHECKPOINTS:
        raise ValueError(f"no checkpoint {path} and no recipe for {name!r}; known: {', '.join(CHECKPOINTS)}")
    data, _ = world_data(TRAIN_SEED, episodes, encoder, thinker, ForecastConfig(), progress=False)
    recipe = dict(CHECKPOINTS[name])
    model, _ = train(train_config(recipe.pop("model"), seed, steps, **recipe), data, progress=False)
    return model, "stand-in"


def load_models(encoder=ENCODER, thinker=THINKER):
    from tkjepa.encoder import load_encoder
    from tkjepa.thinker.model import load_thinker

    return load_encoder(encoder), load_thinker(thinker)


def checkpoint_digest(path) -> str:
    """sha256 of a checkpoint's weights file (a hub name stands for itself)."""
    import hashlib

    p = Path(path) / "model.safetensors"
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else str(path)


def world_data(seed: int, episodes: int, encoder, thinker, cfg: ForecastConfig, progress: bool = True,
               workers: int = 2, layout: str = LAYOUT) -> tuple[ForecastData, list[str]]:
    """ForecastData of world episodes 0..episodes-1 of `seed` (`layout`), from the cache when it is there.

    The cache key holds the digests of the `encoder` and `thinker` (model, tokenizer) weights given, so another
    thinker (e.g. a `tkjepa pretrain-thinker --ground-cm` experiment) gets its own entry.
    """
    from tkjepa.jepa import world_frames
    from tkjepa.thinker.cache import weights_digest
    from tkjepa.world.generate import WORLD_VERSION

    key = data_key([f"world:{seed}:{episodes}:v{WORLD_VERSION}:{layout}"], weights_digest(encoder),
                   weights_digest(thinker[0]) if thinker is not None else None, cfg)
    path = CACHE / f"forecast-{key}.safetensors"
    if path.exists():
        return ForecastData.load(path), json.loads((path.with_suffix(".json")).read_text())
    eps = world_frames(seed, range(episodes), workers=workers, layout=layout)
    data, texts = build(eps, encoder, thinker, cfg, cache_dir=CACHE / "thinker", progress=progress)
    data.save(path)
    path.with_suffix(".json").write_text(json.dumps(texts))
    return data, texts


def folder_data(folder, encoder, thinker, cfg: ForecastConfig, max_episodes=None, progress: bool = True):
    """ForecastData of an EgoDex-format folder (frames decoded at 64×64), and the episode paths."""
    from tkjepa.egodex import find_episodes, load_episode

    paths = find_episodes(folder)[:max_episodes]
    if not paths:
        raise SystemExit(f"{folder}: no EgoDex episodes (<task>/<n>.hdf5 + .mp4) found")
    eps = [load_episode(p) for p in paths]
    data, texts = build(eps, encoder, thinker, cfg, cache_dir=CACHE / "thinker", progress=progress)
    return data, texts, [str(p) for p in paths]


def const_velocity(data: ForecastData, frames: int) -> torch.Tensor:
    """Joints [E, frames, J, 3]: the last observed step repeated."""
    v = data.past[:, 1] - data.past[:, 0]
    k = torch.arange(1, frames + 1, dtype=v.dtype)[None, :, None, None]
    return data.past[:, 1:2] + k * v[:, None]


def metrics(pred: torch.Tensor, true: torch.Tensor, valid: torch.Tensor, frames: int) -> dict:
    """ADE/FDE/Acc@5cm over the first `frames` frames; pred, true [E, T, J, 3]; valid [E, T]."""
    err = (pred[:, :frames] - true[:, :frames]).norm(dim=-1)          # [E, frames, J]
    v = valid[:, :frames].float()
    per_ep = (err.mean(-1) * v).sum(1) / v.sum(1).clamp_min(1)       # [E]
    last = v.sum(1).long().clamp_min(1) - 1
    fde = err[torch.arange(len(err)), last].mean(-1)                   # [E]
    acc = ((err < 0.05).float() * v[..., None]).sum() / (v.sum() * err.shape[-1]).clamp_min(1)
    return {"ade": float(per_ep.mean()), "fde": float(fde.mean()), "acc5": float(acc),
            "ade_per_frame": [float(x) for x in ((err.mean(-1) * v).sum(0) / v.sum(0).clamp_min(1))]}


@torch.no_grad()
def predict(model, data: ForecastData, windows: int = 4, level_scale=None, batch: int = 256) -> torch.Tensor:
    out = []
    for i in range(0, len(data), batch):
        idx = torch.arange(i, min(i + batch, len(data)))
        out.append(model(data, idx, windows, level_scale=level_scale)[1])
    return torch.cat(out)


def score(pred: torch.Tensor, data: ForecastData) -> dict:
    """Headline metrics + the rollout table {frames: {ade, fde}} for predictions [E, ≥32, J, 3]."""
    head = metrics(pred, data.traj, data.valid, HEADLINE_FRAMES)
    roll = {}
    for w in range(1, pred.shape[1] // 8 + 1):
        m = metrics(pred, data.traj, data.valid, 8 * w)
        roll[str(8 * w)] = {"ade": m["ade"], "fde": m["fde"]}
    return {**head, "rollout": roll}


def summarise(runs: list[dict]) -> dict:
    """Mean over seeds, with the standard deviation of ADE/FDE."""
    keys = ("ade", "fde", "acc5")
    out = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    out.update({f"{k}_std": float(np.std([r[k] for r in runs])) for k in ("ade", "fde")})
    out["rollout"] = {h: {k: float(np.mean([r["rollout"][h][k] for r in runs])) for k in ("ade", "fde")}
                      for h in runs[0]["rollout"]}
    out["ade_per_frame"] = list(np.mean([r["ade_per_frame"] for r in runs], axis=0).round(5))
    out["seeds"] = len(runs)
    return out


def markdown_table(result: dict) -> str:
    rows = ["| model | ADE (m) | FDE (m) | Acc@5cm | FDE @32 frames (m) | seeds |", "|---|---|---|---|---|---|"]
    for name, m in result["models"].items():
        std = f" ± {m['ade_std']:.4f}" if m.get("seeds", 1) > 1 else ""
        f32 = m.get("rollout", {}).get("32", {}).get("fde")
        rows.append(f"| {name} | {m['ade']:.4f}{std} | {m['fde']:.4f} | {m['acc5']:.3f} | "
                    f"{'' if f32 is None else f'{f32:.4f}'} | {m.get('seeds', '')} |")
    if result.get("ablations"):
        rows += ["", "| ablation (thinkjepa, seed 0) | ADE (m) | FDE (m) | Acc@5cm |", "|---|---|---|---|"]
        rows += [f"| {n} | {m['ade']:.4f} | {m['fde']:.4f} | {m['acc5']:.3f} |" for n, m in result["ablations"].items()]
    return "\n".join(rows) + "\n"


def step_ms(cfgs: dict, data: ForecastData, steps: int = 20, rounds: int = 3) -> dict[str, float]:
    """{name: median wall time (ms) of one training step} for the TrainConfigs `cfgs`, after 3 warm-up steps.

    The models take turns, `steps` steps each per round: a machine that slows down or speeds up during the
    measurement then shifts every model alike, and their ratio is what the benchmark's target is about.
    """
    from tkjepa.train import Forecaster, losses, make_optimizer

    runs = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(0)
        model = Forecaster(cfg, vlm_dim=data.old.shape[-1] if data.has_thinker else 128)
        model.head.set_target_stats(data.traj[data.valid])
        runs[name] = (model, make_optimizer(model, cfg), cfg.batch_size)
    times: dict[str, list[float]] = {name: [] for name in cfgs}
    for r in range(rounds):
        for name, (model, opt, batch) in runs.items():
            for s in range(steps + (3 if r == 0 else 0)):
                idx = torch.randint(0, len(data), (batch,), generator=torch.Generator().manual_seed(s))
                t = time.perf_counter()
                loss = losses(model, data, idx)["loss"]
                opt.zero_grad()
                loss.backward()
                opt.step()
                if r > 0 or s >= 3:
                    times[name].append(1000 * (time.perf_counter() - t))
    return {name: float(np.median(v)) for name, v in times.items()}


def train_config(name: str, seed: int, steps: int | None = None, **overrides):
    from tkjepa.train import model_config

    cfg = model_config(name, seed=seed, **overrides)
    return replace(cfg, steps=steps) if steps else cfg


_JOB_DATA: dict = {}  # train/test data for the training workers (set before forking, shared copy-on-write)


def _train_job(job: tuple) -> tuple[str, dict]:
    """One (label, model, seed, steps, overrides, save path) training run -> (label, test scores), in a worker."""
    from tkjepa.train import save_forecaster
    from tkjepa.train import train as train_model

    label, name, seed, steps, over, save = job
    torch.set_num_threads(_JOB_DATA["threads"])
    model, _ = train_model(train_config(name, seed, steps, **over), _JOB_DATA["train"], progress=False)
    if save is not None:
        save_forecaster(model, save)
    return label, score(predict(model, _JOB_DATA["test"]), _JOB_DATA["test"])


def run_bench(train: ForecastData, test: ForecastData, seeds: int = 3, steps: int | None = None,
              ablations: bool = True, save_dir: Path | None = None, progress: bool = True,
              workers: int = 2) -> dict:
    """Train every headline model for `seeds` seeds (+ ablations, seed 0) and score them on `test`.

    The runs are independent, seeded and use one torch thread each, so `workers` processes train them side by
    side and the numbers do not depend on `workers`.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    save = (lambda sub: None) if save_dir is None else (lambda sub: str(Path(save_dir) / sub))
    jobs = [(f"{name}/{seed}", name, seed, steps, {}, save(name) if seed == 0 else None)
            for name in HEADLINE for seed in range(seeds)]
    if ablations:
        jobs += [(f"ablation/{abl}", "thinkjepa", 0, steps, over,
                  save(SAVED_ABLATIONS[abl]) if abl in SAVED_ABLATIONS else None)
                 for abl, over in ABLATIONS.items()]
    _JOB_DATA.update(train=train, test=test, threads=1)
    bar = tqdm(total=len(jobs), desc="train models", unit="model", disable=not progress)
    scores = {}
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            for label, sc in pool.imap_unordered(_train_job, jobs):
                scores[label] = sc
                bar.update()
    else:
        for job in jobs:
            label, sc = _train_job(job)
            scores[label] = sc
            bar.update()
    bar.close()
    result = {"models": {}, "ablations": {}, "train_step_ms": {}, "ade_per_seed": {}}
    for name in HEADLINE:
        runs = [scores[f"{name}/{seed}"] for seed in range(seeds)]
        result["ade_per_seed"][name] = [r["ade"] for r in runs]
        result["models"][name] = summarise(runs)
    cv = const_velocity(test, test.traj.shape[1])
    result["models"]["const_velocity"] = {**score(cv, test), "ade_std": 0.0, "fde_std": 0.0, "seeds": 0}
    if ablations:
        result["ablations"] = {abl: scores[f"ablation/{abl}"] for abl in ABLATIONS}
    result["train_step_ms"] = step_ms({name: train_config(name, 0, steps) for name in ("thinkjepa", "jepa_only")},
                                      train)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def targets(result: dict) -> dict:
    """The issue's targets, as measured ratios (≤ 1 passes for the first three; rollout: thinkjepa < jepa_only)."""
    m = result["models"]
    t, j, v, o = (m[k]["ade"] for k in ("thinkjepa", "jepa_only", "vlm_only", "oracle"))
    out = {"thinkjepa/jepa_only (≤ 0.75)": t / j, "thinkjepa/vlm_only (≤ 0.5)": t / v,
           "thinkjepa/oracle (≤ 1.2)": t / o}
    last = max(m["thinkjepa"]["rollout"], key=int)
    fde = {name: m[name]["rollout"][last]["fde"] for name in ("thinkjepa", "jepa_only")}
    out[f"FDE@{last} thinkjepa/jepa_only (< 1)"] = fde["thinkjepa"] / fde["jepa_only"]
    if result.get("train_step_ms"):
        s = result["train_step_ms"]
        out["step thinkjepa/jepa_only (≤ 1.3)"] = s["thinkjepa"] / s["jepa_only"]
    return {k: round(v, 3) for k, v in out.items()}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="EgoDex-format test folder (default: world episodes of seed "
                   f"{TEST_SEED}, disjoint from training)")
    p.add_argument("--out", default="runs/bench/results.json", help="results JSON (a .md table is written beside it)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per headline model")
    p.add_argument("--train-episodes", type=int, default=1000, help="world training episodes (seed 1000)")
    p.add_argument("--test-episodes", type=int, default=200, help="generated test episodes (without --data)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per model (default: TrainConfig's)")
    p.add_argument("--no-ablations", action="store_true", help="skip the ablations")
    p.add_argument("--save-checkpoints", default=None,
                   help="write the seed-0 models here (e.g. data_samples/forecasters)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=2, help="models trained side by side (one thread each)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cfg = ForecastConfig()
    encoder, thinker = load_models()
    train, _ = world_data(TRAIN_SEED, args.train_episodes, encoder, thinker, cfg, progress=not args.quiet)
    if args.data:
        test, _, _ = folder_data(args.data, encoder, thinker, cfg, progress=not args.quiet)
    else:
        test, _ = world_data(TEST_SEED, args.test_episodes, encoder, thinker, cfg, progress=not args.quiet)
    t_data = time.perf_counter() - t0
    result = run_bench(train, test, seeds=args.seeds, steps=args.steps, ablations=not args.no_ablations,
                       save_dir=args.save_checkpoints, progress=not args.quiet, workers=args.workers)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["data_seconds"] = round(t_data, 1)
    result["targets"] = targets(result)
    result["test"] = {"data": args.data or f"world seed {TEST_SEED}", "episodes": len(test)}
    result["train"] = {"data": f"world seed {TRAIN_SEED}", "episodes": len(train)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    table = markdown_table(result)
    out.with_suffix(".md").write_text(table)
    print(table)
    print(json.dumps(result["targets"], indent=1))
    print(f"{result['seconds']} s (data {result['data_seconds']} s); results: {out}")
    return 0
