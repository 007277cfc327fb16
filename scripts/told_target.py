"""Where does a forecaster lose the subgoal? Oracles told more and more, with and without the latent loss.

    .venv/bin/python scripts/told_target.py [--set latent|location|thinker|said|fine|headline] [--thinker DIR]
                                            [--layout homes|scattered] [--steps 600] [--workers 2]
                                            [--out runs/told_target.json]

The benchmark's `oracle` is told the true next subgoal as one-hots of its kind, colour and shape ("grasp the
yellow cube"): *which* object, not *where* it is, so it must still find the object in the latent tokens. This
script trains, with the benchmark's recipe (seed 0, 600 steps, world seeds 1000 / 2000), the same forecaster
told also *where*: the 3D offset from the last observed wrist to the wrist pose that achieves the subgoal
(`tkjepa.world.stats.canonical_pose`, the ideal forecasters' destination), and each of them with the latent
L1 term of the loss on (λ = 1, the benchmark's) and off (λ = 0), beside thinkjepa and jepa_only at λ = 0
(`--set latent`, the default). `--set location` tells the oracle instead what a grounded thinker would say
(`tkjepa pretrain-thinker --ground-cm`): the named object's position on the table at the last observed frame,
rounded to a 2 cm or a 10 cm grid, at λ = 0.3, beside thinkjepa and jepa_only at λ = 0.3; `--thinker` swaps in
another thinker (e.g. a grounded one) for every run, and `--set thinker` trains just the benchmark's thinkjepa
(FiLM and cross-attention injection, λ = 1) on its features; `--set said`, with a grounded thinker, tells the
oracle the place that thinker *says* (parsed from its text, 0 where it says none): the place as words, without
going through the thinker's hidden states; `--set fine` trains thinkjepa (both injections), jepa_only and the
oracle (which) with the last observed tubelet's unpooled 8×8 tokens added to their context (λ = 1), where the
grounding probe finds a named object 2× closer than in the pooled 4×4. These sets were measured before world v5
and keep its setting: scattered scenes, thinkjepa with FiLM over both thinker streams (`BEFORE_V5`). `--set
headline` (world v5, homes) trains the benchmark's models, thinkjepa's injection × streams variants and
its cross-attention with 4 heads or with only the mask tokens querying, at λ = 1 (and three at 0.3). Test ADE over the 8 trained frames, in cm,
on the benchmark's 200 test episodes. BENCHMARKS.md (issue 5) reads the tables. Deterministic: one torch thread per run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import tkjepa.train as T
from tkjepa.bench import TEST_SEED, TRAIN_SEED, load_models, predict, score, train_config, world_data
from tkjepa.episode import WRIST
from tkjepa.forecast import ForecastConfig
from tkjepa.jepa import world_frames
from tkjepa.thinker.think import predicted_location, target_location
from tkjepa.world.stats import canonical_pose, next_subgoal

FINE = {"forecast": ForecastConfig(fine=True)}  # TrainConfig overrides of `--set fine`
PRED = T.TrainConfig().predictor  # the benchmark's predictor (one cross-attention head, every token queries)
FOUR_HEADS = {"predictor": replace(PRED, cross_heads=0)}
FUTURE_QUERIES = {"predictor": replace(PRED, cross_queries="future")}
SETS = {  # label, model, what the oracle is told besides which (None / "where" / "grid<cm>"), latent weight λ
    "latent": (
        ("oracle (which), λ=1", "oracle", None, 1.0),
        ("oracle (which + where), λ=1", "oracle", "where", 1.0),
        ("oracle (which), λ=0", "oracle", None, 0.0),
        ("oracle (which + where), λ=0", "oracle", "where", 0.0),
        ("thinkjepa, λ=0", "thinkjepa", None, 0.0),
        ("jepa_only, λ=0", "jepa_only", None, 0.0),
    ),
    "location": (
        ("oracle (which), λ=0.3", "oracle", None, 0.3),
        ("oracle (which + location, 2 cm grid), λ=0.3", "oracle", "grid2", 0.3),
        ("oracle (which + location, 10 cm grid), λ=0.3", "oracle", "grid10", 0.3),
        ("thinkjepa, λ=0.3", "thinkjepa", None, 0.3),
        ("jepa_only, λ=0.3", "jepa_only", None, 0.3),
    ),
    "thinker": (  # with --thinker: what another thinker gives the benchmark's thinkjepa (λ = 1), both injections
        ("thinkjepa (FiLM), λ=1", "thinkjepa", None, 1.0),
        ("thinkjepa (cross-attention), λ=1", "thinkjepa", None, 1.0, {"injection": "crossattn"}),
    ),
    "headline": (  # world v5 (homes): the benchmark's models, seed 0, and thinkjepa's injection × streams
        ("thinkjepa (cross-attention, thinking tokens: the benchmark's), λ=1", "thinkjepa", None, 1.0),
        ("thinkjepa (the same, 4 cross-attention heads), λ=1", "thinkjepa", None, 1.0, FOUR_HEADS),
        ("thinkjepa (the same, only the mask tokens query), λ=1", "thinkjepa", None, 1.0, FUTURE_QUERIES),
        ("thinkjepa (cross-attention, both streams), λ=1", "thinkjepa", None, 1.0, {"streams": "both"}),
        ("thinkjepa (FiLM, thinking tokens), λ=1", "thinkjepa", None, 1.0, {"injection": "film"}),
        ("thinkjepa (FiLM, both streams: until 2026-12-03), λ=1", "thinkjepa", None, 1.0,
         {"injection": "film", "streams": "both"}),
        ("jepa_only, λ=1", "jepa_only", None, 1.0),
        ("oracle (which), λ=1", "oracle", None, 1.0),
        ("thinkjepa (cross-attention, thinking tokens), λ=0.3", "thinkjepa", None, 0.3),
        ("jepa_only, λ=0.3", "jepa_only", None, 0.3),
        ("oracle (which), λ=0.3", "oracle", None, 0.3),
    ),
    "fine": (  # every model also reads the last observed tubelet's unpooled 8×8 tokens
        ("thinkjepa (FiLM), fine tokens, λ=1", "thinkjepa", None, 1.0, FINE),
        ("jepa_only, fine tokens, λ=1", "jepa_only", None, 1.0, FINE),
        ("oracle (which), fine tokens, λ=1", "oracle", None, 1.0, FINE),
        ("thinkjepa (cross-attention), fine tokens, λ=1", "thinkjepa", None, 1.0, {**FINE, "injection": "crossattn"}),
    ),
    "said": (  # with a grounded --thinker: the oracle told the place the thinker *says*, parsed from its text
        ("oracle (which + the thinker's spoken location), λ=0.3", "oracle", "said", 0.3),
        ("oracle (which + the thinker's spoken location), λ=1", "oracle", "said", 1.0),
    ),
}
# Every set but "headline" was measured before world v5 (2026-12-02): on scattered scenes, with the forecasters'
# recipe of then (FiLM over both thinker streams). They keep both, so their BENCHMARKS.md tables reproduce.
BEFORE_V5 = {"injection": "film", "streams": "both"}
SET_LAYOUT = {"headline": "homes"}  # the rest: "scattered"
_DATA: dict = {}


def where(seed: int, n: int) -> torch.Tensor:
    """[n, 3]: canonical wrist pose of the next subgoal minus the last observed wrist, ×10 (≈ unit scale)."""
    out = []
    for ep in world_frames(seed, range(n), layout=_DATA["layout"]):
        s = ep.num_frames // 2
        k = next_subgoal(ep, s)
        goal = canonical_pose(ep, ep.extras["subgoal_kinds"][k], int(ep.extras["subgoal_objects"][k]), s - 1)
        out.append(goal - ep.positions([WRIST])[s - 1, 0])
    return 10 * torch.tensor(np.array(out), dtype=torch.float32)


def true_location(seed: int, n: int) -> np.ndarray:
    """[n, 2] metres: the next target's table position at the last observed frame (what `--ground-cm` says)."""
    eps = world_frames(seed, range(n), layout=_DATA["layout"])
    return np.array([target_location(ep, ep.num_frames // 2) for ep in eps])


def location(seed: int, n: int, grid_cm: int) -> torch.Tensor:
    """[n, 2]: what a grounded thinker says, the next target's table position on a `grid_cm` grid, in dm."""
    return torch.tensor(np.round(true_location(seed, n) * 100 / grid_cm) * grid_cm / 10, dtype=torch.float32)


def said(texts: list[str]) -> torch.Tensor:
    """[n, 2]: the place each thinker text says ("< x y >"), in dm; zeros where it says none."""
    out = [predicted_location(t) for t in texts]
    if all(o is None for o in out):
        raise SystemExit("--set said needs a grounded thinker (tkjepa pretrain-thinker --ground-cm): "
                         "this one names no place")
    return 10 * torch.tensor(np.array([o if o is not None else np.zeros(2) for o in out]), dtype=torch.float32)


def told(kind: str, seed: int, n: int, texts: list[str]) -> torch.Tensor:
    if kind == "said":
        return said(texts)
    return where(seed, n) if kind == "where" else location(seed, n, int(kind.removeprefix("grid")))


def job(run: tuple) -> dict:
    label, model, kind, lam, *over = run
    torch.set_num_threads(1)
    train, test = _DATA[kind or "plain"]
    T.ORACLE_DIM = train.oracle.shape[1]  # the oracle's input width (15, + 3 when told where, + 2 the location)
    over = {**_DATA["base"], **(over[0] if over else {})}
    m, _ = T.train(train_config(model, 0, _DATA["steps"], latent_weight=lam, **over), train, progress=False)
    s = score(predict(m, test), test)
    return {"label": label, "ade_cm": round(100 * s["ade"], 3), "fde_cm": round(100 * s["fde"], 3),
            "fde32_cm": round(100 * s["rollout"]["32"]["fde"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="latent", choices=sorted(SETS), help="which table to train")
    ap.add_argument("--thinker", default=None, help="thinker folder (default: the shipped one)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--layout", default=None, choices=("homes", "scattered"),
                    help="world layout (default: homes for --set headline, scattered for the sets measured before it)")
    ap.add_argument("--out", default="runs/told_target.json")
    args = ap.parse_args()
    layout = args.layout or SET_LAYOUT.get(args.set, "scattered")
    t0 = time.perf_counter()
    runs = SETS[args.set]
    encoder, thinker = load_models(**({"thinker": args.thinker} if args.thinker else {}))
    cfg = ForecastConfig(fine=args.set == "fine")
    train, train_texts = world_data(TRAIN_SEED, 1000, encoder, thinker, cfg, layout=layout)
    test, test_texts = world_data(TEST_SEED, 200, encoder, thinker, cfg, layout=layout)
    _DATA.update(plain=(train, test), steps=args.steps, layout=layout,
                 base={} if args.set in SET_LAYOUT else BEFORE_V5)
    for kind in {r[2] for r in runs} - {None}:
        pair = []
        for d, seed, texts in ((train, TRAIN_SEED, train_texts), (test, TEST_SEED, test_texts)):
            e = d.subset(slice(None))
            e.oracle = torch.cat([d.oracle, told(kind, seed, len(d), texts)], dim=1)
            pair.append(e)
        _DATA[kind] = tuple(pair)
    extra = {}
    if "said" in _DATA:  # how far the spoken places are from the truth on the test split (cm)
        err = np.linalg.norm(said(test_texts).numpy() / 10 - true_location(TEST_SEED, len(test)), axis=1)
        extra["said_error_cm"] = {"mean": round(100 * float(err.mean()), 2),
                                  "median": round(100 * float(np.median(err)), 2),
                                  "within_4cm": round(float((err < 0.04).mean()), 3)}
        print(f"the thinker's spoken place on the test split: off by {extra['said_error_cm']['mean']} cm on average, "
              f"median {extra['said_error_cm']['median']} cm, within 4 cm {extra['said_error_cm']['within_4cm']:.0%}")
    with mp.get_context("fork").Pool(args.workers) as pool:
        rows = pool.map(job, runs, chunksize=1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"set": args.set, "layout": layout, "thinker": args.thinker, "runs": rows, **extra,
                               "seconds": round(time.perf_counter() - t0, 1)}, indent=1))
    print("| forecaster | ADE (cm) | FDE (cm) | FDE after 32 frames (cm) |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['label']} | {r['ade_cm']:.2f} | {r['fde_cm']:.2f} | {r['fde32_cm']:.1f} |")
    print(f"{time.perf_counter() - t0:.0f} s -> {out}")


if __name__ == "__main__":
    main()
