"""`tkjepa evaluate --data DIR --out results.json`: the shipped forecasters on any EgoDex-format folder.

No training: thinker features and encoder tokens are computed (thinker features cached under runs/cache/),
then every checkpoint in `data_samples/forecasters/` is scored with `tkjepa.bench`'s metrics and written in
the bench's JSON schema. The `oracle` needs the world's subgoal annotations; on other data it is skipped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from tkjepa.bench import SHIPPED, const_velocity, folder_data, load_models, markdown_table, predict, score
from tkjepa.forecast import ForecastConfig


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="EgoDex-format folder (<task>/<n>.hdf5 + .mp4)")
    p.add_argument("--out", default="runs/evaluate/results.json", help="results JSON (+ a .md table beside it)")
    p.add_argument("--checkpoints", default=str(SHIPPED), help="folder of forecaster checkpoints")
    p.add_argument("--episodes", type=int, default=None, help="use only the first N episodes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def evaluate(data, checkpoints, windows: int = 4) -> dict:
    from tkjepa.train import load_forecaster

    result = {"models": {}, "ablations": {}}
    for ckpt in sorted(p for p in Path(checkpoints).iterdir() if (p / "config.json").exists()):
        model = load_forecaster(ckpt)
        if model.cfg.model == "oracle" and not bool(data.has_oracle.all()):
            result.setdefault("skipped", {})[ckpt.name] = "no subgoal annotations in this data"
            continue
        m = {**score(predict(model, data, windows), data), "seeds": 1}
        (result["models"] if ckpt.name in ("thinkjepa", "jepa_only", "vlm_only", "oracle") else
         result["ablations"])[ckpt.name] = m
    result["models"]["const_velocity"] = {**score(const_velocity(data, data.traj.shape[1]), data), "seeds": 0}
    return result


def run(args) -> int:
    t0 = time.perf_counter()
    if not Path(args.checkpoints).is_dir():
        raise SystemExit(f"{args.checkpoints}: no such folder of forecaster checkpoints")
    encoder, thinker = load_models()
    data, _, paths = folder_data(args.data, encoder, thinker, ForecastConfig(), args.episodes, not args.quiet)
    with torch.no_grad():
        result = evaluate(data, args.checkpoints)
    result.update(seconds=round(time.perf_counter() - t0, 1), test={"data": str(args.data), "episodes": len(paths)})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown_table(result))
    print(markdown_table(result))
    print(f"{len(paths)} episodes in {result['seconds']} s; results: {out}")
    return 0
