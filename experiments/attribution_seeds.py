"""Layer attribution across training seeds: how much of "which layer matters" is the model, how much the seed.

    .venv/bin/python experiments/attribution_seeds.py --seeds 3 --out runs/attribution_seeds.json

Trains thinkjepa (the shipped recipe, `tkjepa bench`'s data: 1000 homes episodes of world seed 1000) for each
seed — seed 0 is the shipped checkpoint when it is there — and attributes each on the 200 held-out episodes of
world seed 2000 (`tkjepa.attribution.attribute`: IG per layer, one-layer ablation ΔADE and Δs, 95 % bootstrap
intervals over episodes). Prints, per seed, the read layers' mean |IG| and ΔADE with their intervals and both
rank correlations, then the per-layer spread across seeds.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import torch

from tkjepa import paths
from tkjepa.attribution import AttributionConfig, attribute
from tkjepa.backbones import load_backbones
from tkjepa.cli.forecast import TEST_SEED, TRAIN_SEED
from tkjepa.forecast.data import ForecastConfig, world_data
from tkjepa.forecast.model import load_forecaster, variant_config
from tkjepa.forecast.train import train
from tkjepa.parallel import process_pool

DATA: dict = {}


def _set_data(blob: bytes) -> None:
    DATA.update(pickle.loads(blob))  # noqa: S301  (the parent process's own data)


def job(seed: int) -> tuple[int, dict]:
    torch.set_num_threads(1)
    shipped = paths.FORECASTERS / "thinkjepa"
    if seed == 0 and (shipped / "config.json").exists():
        model = load_forecaster(shipped)
    else:
        model, _ = train(variant_config("thinkjepa", seed=seed), DATA["train"], progress=False)
    return seed, attribute(model.eval(), DATA["test"], AttributionConfig())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(paths.RUNS / "attribution_seeds.json"))
    args = ap.parse_args()
    backbones = load_backbones(paths.ENCODER, paths.THINKER)
    DATA["train"], _ = world_data(TRAIN_SEED, 1000, backbones, ForecastConfig(), paths.CACHE)
    DATA["test"], _ = world_data(TEST_SEED, 200, backbones, ForecastConfig(), paths.CACHE)
    with process_pool(args.workers, initializer=_set_data, initargs=(pickle.dumps(DATA),)) as pool:
        runs = dict(pool.imap_unordered(job, range(args.seeds)))
    keep = ("layers", "used", "attribution", "attribution_ci", "attribution_abs", "attribution_abs_ci",
            "ablation_delta_ade", "ablation_delta_ade_ci", "ablation_delta_s", "ablation_delta_s_ci", "block_gates",
            "spearman_used", "spearman_used_ci", "spearman_signed_delta_s", "spearman_signed_delta_s_ci",
            "ade_full", "episodes")
    result = {"seeds": {s: {k: runs[s][k] for k in keep} for s in sorted(runs)}}
    for s in sorted(runs):
        r = runs[s]
        print(f"seed {s}: ADE {1e3 * r['ade_full']:.1f} mm; Spearman |IG| vs ΔADE {r['spearman_used']} "
              f"{np.round(r['spearman_used_ci'], 2).tolist()}; IG vs Δs {r['spearman_signed_delta_s']} "
              f"{np.round(r['spearman_signed_delta_s_ci'], 2).tolist()}")
        for l in r["used"]:
            print(f"   layer {l}: |IG| {1e3 * r['attribution_abs'][l]:6.2f} mm "
                  f"[{1e3 * r['attribution_abs_ci'][0][l]:.2f}, {1e3 * r['attribution_abs_ci'][1][l]:.2f}]  "
                  f"ΔADE {1e3 * r['ablation_delta_ade'][l]:6.2f} mm "
                  f"[{1e3 * r['ablation_delta_ade_ci'][0][l]:.2f}, {1e3 * r['ablation_delta_ade_ci'][1][l]:.2f}]")
    L = len(runs[0]["layers"])
    for k in ("attribution_abs", "ablation_delta_ade"):
        v = np.array([runs[s][k] for s in sorted(runs)])
        result[f"{k}_across_seeds"] = {"mean": v.mean(0).tolist(), "min": v.min(0).tolist(), "max": v.max(0).tolist()}
    ranks = [list(np.argsort(-np.array(runs[s]["attribution_abs"]))) for s in sorted(runs)]
    result["top_layer_per_seed"] = [int(r[0]) for r in ranks]
    print("top layer by |IG| per seed:", result["top_layer_per_seed"], f"(of {L})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
