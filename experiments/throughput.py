"""Extraction and training throughput of the backbones' architectures on this machine, and a training step's
achieved FLOP/s against the measured peak of a large fp32 matmul on the same cores.

    .venv/bin/python experiments/throughput.py --out runs/throughput.json

Data: EgoDex-layout recordings (`tkjepa generate --recording 144x256`, homes layout); backbones: the shipped
tiny ones and random stand-ins of V-JEPA 2 / Qwen3-VL with the real layouts (`tkjepa stand-in`), so the
numbers measure the code path and the shapes, not the paper's model sizes (ViT-L and Qwen3-VL-2B are ~20×
and ~1000× larger). Each configuration extracts into an empty cache, then trains thinkjepa for a fixed
number of steps on what it extracted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from tkjepa import paths
from tkjepa.device import flop_counter, peak_matmul_flops
from tkjepa.backbones import load_backbones
from tkjepa.episode import JOINT_SETS
from tkjepa.forecast.data import ForecastConfig, for_encoder
from tkjepa.forecast.store import folder_data
from tkjepa.forecast.model import variant_config
from tkjepa.forecast.train import losses, new_forecaster, train
from tkjepa.stand_in import qwen3vl_stand_in, vjepa2_stand_in
from tkjepa.world import WorldConfig
from tkjepa.world.generate import write_dataset


def step_flops(cfg, data) -> float:
    model = new_forecaster(cfg, data).train()
    idx = torch.arange(min(cfg.batch_size, len(data)))
    with flop_counter() as counter:
        losses(model, data, idx)["loss"].backward()
    return float(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(paths.RUNS / "throughput.json"))
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="tkjepa-throughput-"))
    data_dir = tmp / "recordings"
    write_dataset(data_dir, args.episodes, seed=7, cfg=WorldConfig(layout="homes", recording=(144, 256)), workers=2,
                  progress=False)
    stand = {"vjepa2": vjepa2_stand_in(tmp / "vjepa2"), "qwen3vl": qwen3vl_stand_in(tmp / "qwen3vl")}
    configs = {"tiny encoder + tiny thinker": (paths.ENCODER, paths.THINKER),
               "V-JEPA 2 layout + tiny thinker": (stand["vjepa2"], paths.THINKER),
               "tiny encoder + Qwen3-VL layout": (paths.ENCODER, stand["qwen3vl"])}
    peak = peak_matmul_flops()
    rows = []
    for name, (enc, thk) in configs.items():
        backbones = load_backbones(enc, thk)
        fcfg = for_encoder(ForecastConfig(joints=JOINT_SETS["bimanual52"]), backbones.encoder)
        t0 = time.perf_counter()
        data, _, eps = folder_data(data_dir, backbones, fcfg, tmp / f"cache-{len(rows)}", progress=False)
        extract_s = time.perf_counter() - t0
        cfg = variant_config("thinkjepa", steps=args.steps, warmup=2)
        cfg.forecast = fcfg
        t0 = time.perf_counter()
        train(cfg, data, progress=False)
        train_s = time.perf_counter() - t0
        flops = step_flops(cfg, data)
        rows.append({"backbones": name, "episodes": len(eps), "extract_episodes_per_s": round(len(eps) / extract_s, 2),
                     "train_steps_per_s": round(args.steps / train_s, 2), "batch": cfg.batch_size,
                     "tokens_per_tubelet": fcfg.tokens, "latent_dim": int(data.ctx.shape[-1]),
                     "step_gflop": round(flops / 1e9, 2),
                     "achieved_gflops": round(flops * args.steps / train_s / 1e9, 1)})
        print(json.dumps(rows[-1]), flush=True)
    result = {"command": "python experiments/throughput.py", "threads": torch.get_num_threads(),
              "peak_matmul_gflops": round(peak / 1e9, 1), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))


if __name__ == "__main__":
    main()
