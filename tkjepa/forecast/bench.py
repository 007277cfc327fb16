"""The forecasting benchmark: train every headline model over seeds (+ the ablations, seed 0), score them on
held-out data, time a training step.

`run_bench(train, test)` is what `tkjepa bench` runs once the data is built. The runs are independent, seeded
and use one torch thread each, so `workers` processes train them side by side and the numbers do not depend
on `workers`. `targets` turns a result into the ratios the benchmark's claims are about.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import torch

from tkjepa.forecast.data import ForecastData
from tkjepa.forecast.evaluate import baseline_score, by_family, predict, score
from tkjepa.forecast.model import ABLATIONS, HEADLINE, SHIPPED_ABLATIONS, Forecaster, save_forecaster, variant_config
from tkjepa.forecast.train import losses, make_optimizer, train
from tkjepa.metrics import mean_over_seeds


def step_ms(cfgs: dict, data: ForecastData, steps: int = 20, rounds: int = 3) -> dict[str, float]:
    """{name: median wall time (ms) of one training step} for the ForecasterConfigs `cfgs`, after 3 warm-up steps.

    The models take turns, `steps` steps each per round: a machine that slows down or speeds up during the
    measurement then shifts every model alike, and their ratio is what the benchmark's target is about.
    """
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


_JOB_DATA: dict = {}  # train/test data of the training runs (in a worker: set once by `_set_job_data`)


def _set_job_data(blob: bytes) -> None:
    """A worker's copy of the runs' data, pickled by the parent (tensors travel as bytes, not shared memory)."""
    _JOB_DATA.update(pickle.loads(blob))  # noqa: S301  (the parent process's own data)


def _config(name: str, seed: int, steps: int | None):
    return variant_config(name, seed=seed, **({"steps": steps} if steps else {}))


def _train_job(job: tuple) -> tuple[str, dict]:
    """One (label, variant, seed, steps, save path) training run -> (label, test scores), in a worker."""
    label, name, seed, steps, save = job
    torch.set_num_threads(_JOB_DATA["threads"])
    cfg = _config(name, seed, steps)
    model, _ = train(cfg, _JOB_DATA["train"], progress=False)
    if save is not None:
        save_forecaster(model, save)
    test = _JOB_DATA["test"]
    return label, score(predict(model, test), test, cfg.forecast, _JOB_DATA["families"])


def run_bench(train_data: ForecastData, test: ForecastData, seeds: int = 3, steps: int | None = None,
              ablations: bool = True, save_dir: Path | None = None, progress: bool = True,
              workers: int = 2, families: list[str] | None = None) -> dict:
    """Train every headline model for `seeds` seeds (+ the ablations, seed 0) and score them on `test` (and,
    with `families`, each test episode's task family, per family: "families" {family: {model: scores}}).

    With `save_dir`, the seed-0 headline models and the shipped ablations (`SHIPPED_ABLATIONS`: the viewer's
    injection and layer-subset selectors) are written there, one folder each.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    save = (lambda name: None) if save_dir is None else (lambda name: str(Path(save_dir) / name))
    jobs = [(f"{name}/{seed}", name, seed, steps, save(name) if seed == 0 else None)
            for name in HEADLINE for seed in range(seeds)]
    if ablations:
        jobs += [(f"ablation/{name}", name, 0, steps, save(name) if name in SHIPPED_ABLATIONS else None)
                 for name in ABLATIONS]
    _JOB_DATA.update(train=train_data, test=test, threads=1, families=families)
    bar = tqdm(total=len(jobs), desc="train models", unit="model", disable=not progress)
    scores = {}
    if workers > 1:
        from tkjepa.parallel import process_pool

        with process_pool(workers, initializer=_set_job_data, initargs=(pickle.dumps(dict(_JOB_DATA)),)) as pool:
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
        result["models"][name] = mean_over_seeds(runs)
    result["models"]["const_velocity"] = {**baseline_score(test, _config("thinkjepa", 0, steps).forecast, families),
                                          "ade_std": 0.0, "fde_std": 0.0}
    if ablations:
        result["ablations"] = {name: scores[f"ablation/{name}"] for name in ABLATIONS}
    if families is not None:
        result["families"] = by_family({**result["models"], **result["ablations"]})
    result["train_step_ms"] = step_ms({name: _config(name, 0, steps) for name in ("thinkjepa", "jepa_only")},
                                      train_data)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def targets(result: dict) -> dict:
    """The benchmark's claims as measured ratios (≤ 1 passes for the first three; rollout: thinkjepa < jepa_only)."""
    m = result["models"]
    t, j, v, o = (m[k]["ade"] for k in HEADLINE)
    out = {"thinkjepa/jepa_only (≤ 0.75)": t / j, "thinkjepa/vlm_only (≤ 0.5)": t / v,
           "thinkjepa/oracle (≤ 1.2)": t / o}
    last = max(m["thinkjepa"]["rollout"], key=int)
    fde = {name: m[name]["rollout"][last]["fde"] for name in ("thinkjepa", "jepa_only")}
    out[f"FDE@{last} thinkjepa/jepa_only (< 1)"] = fde["thinkjepa"] / fde["jepa_only"]
    if result.get("train_step_ms"):
        s = result["train_step_ms"]
        out["step thinkjepa/jepa_only (≤ 1.3)"] = s["thinkjepa"] / s["jepa_only"]
    return {k: round(v, 3) for k, v in out.items()}
