"""A paper-preset training step at the real sizes on this CPU: measured time and FLOP/s, and what that
measurement says about the official run's 11,250 steps (batch 16) on two H200s.

    .venv/bin/python experiments/paper_step.py --out runs/paper_step.json

The inputs are random tensors of the official cache's shapes (V-JEPA 2 ViT-L: 16 + 16 tubelets × 256 tokens
× 1024; Qwen3-VL-2B: 8 hooked layers × 1280 prompt/visual tokens + 15 thinking tokens × 2048; 52 joints × 32
frames); the forecaster is the paper preset's (12 × 384 predictor, FiLM on both streams over all layers).
The step is `losses` + backward + AdamW, as `train` runs it; FLOPs are counted by `tkjepa.device.flop_counter` on
the same step. The GPU figure is an estimate, not a measurement: the step's FLOPs at the utilisation (share
of peak matmul FLOP/s) this CPU achieves on it, applied to the H200's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tkjepa import paths
from tkjepa.device import flop_counter, peak_matmul_flops
from tkjepa.forecast.data import ForecastData
from tkjepa.forecast.model import variant_config
from tkjepa.forecast.train import losses, make_optimizer, new_forecaster

H200_BF16_DENSE = 989e12  # FLOP/s, NVIDIA's dense bf16 tensor-core figure
OFFICIAL_HOURS = 7.0  # the official run on 2 × H200 (../shared/paper/NOTES.md)


def paper_batch(n: int, g: torch.Generator) -> ForecastData:
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return ForecastData(ctx=r(n, 16, 256, 1024), future=r(n, 16, 256, 1024), traj=r(n, 32, 52, 3) * 0.1,
                        valid=torch.ones(n, 32, dtype=torch.bool), past=r(n, 2, 52, 3) * 0.1,
                        actions=torch.zeros(n, 16, 8), oracle=torch.zeros(n, 15),
                        has_oracle=torch.zeros(n, dtype=torch.bool), old=r(n, 8, 1280, 2048),
                        old_mask=torch.ones(n, 1280, dtype=torch.bool), new=r(n, 8, 15, 2048),
                        new_mask=torch.ones(n, 15, dtype=torch.bool), camera=torch.eye(4).expand(n, 4, 4).clone())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(paths.RUNS / "paper_step.json"))
    ap.add_argument("--batch", type=int, default=1, help="episodes per measured step (the official run uses 16)")
    args = ap.parse_args()
    torch.manual_seed(0)
    data = paper_batch(args.batch, torch.Generator().manual_seed(0))
    cfg = variant_config("thinkjepa", "paper", batch_size=args.batch)
    official_steps, official_batch = variant_config("thinkjepa", "paper").steps, variant_config("thinkjepa", "paper").batch_size
    model = new_forecaster(cfg, data).train()
    opt = make_optimizer(model, model.cfg)
    idx = torch.arange(args.batch)

    def step():
        opt.zero_grad(set_to_none=True)
        losses(model, data, idx)["loss"].backward()
        opt.step()

    with flop_counter() as counter:
        losses(model, data, idx)["loss"].backward()
    flops = float(counter.get_total_flops())
    step()  # warm-up
    t0 = time.perf_counter()
    step()
    step_s = time.perf_counter() - t0
    peak = peak_matmul_flops()
    utilisation = flops / step_s / peak
    total = flops / args.batch * official_batch * official_steps
    gpu_h = total / (2 * H200_BF16_DENSE * utilisation) / 3600
    result = {"command": "python experiments/paper_step.py", "threads": torch.get_num_threads(),
              "batch": args.batch, "step_s": round(step_s, 2), "step_gflop": round(flops / 1e9, 1),
              "achieved_gflops": round(flops / step_s / 1e9, 1), "peak_matmul_gflops": round(peak / 1e9, 1),
              "utilisation": round(utilisation, 3), "official_steps": official_steps,
              "official_batch": official_batch, "official_total_flop": float(f"{total:.3g}"),
              "cpu_hours_official_schedule": round(step_s / args.batch * official_batch * official_steps / 3600, 1),
              "estimated_h200x2_hours_at_this_utilisation": round(gpu_h, 2), "official_hours": OFFICIAL_HOURS}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
