"""Peak memory of training against the number of episodes: streamed from the per-episode store (what
`tkjepa train --data` does) or the whole folder held in memory.

    .venv/bin/python experiments/memory.py --out runs/memory.json

One folder of EgoDex-layout recordings is extracted once (tiny backbones); each measurement is a fresh
process that trains thinkjepa for 20 steps on the first N episodes and reports its peak resident memory
(`ru_maxrss`), so imports and models are the same in every row and only the data differs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from tkjepa import paths


def child(store: str, n: int, mode: str) -> None:
    import torch

    from tkjepa.forecast.model import variant_config
    from tkjepa.forecast.store import ForecastDataset, load_all
    from tkjepa.forecast.train import train

    torch.set_num_threads(2)
    entries = sorted(Path(store).glob("*.safetensors"))[:n]
    data = ForecastDataset(entries) if mode == "streamed" else load_all(entries)[0]
    train(variant_config("thinkjepa", steps=20, batch_size=32, warmup=2), data, progress=False)
    print(json.dumps({"mode": mode, "episodes": n,
                      "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(paths.RUNS / "memory.json"))
    ap.add_argument("--episodes", default="32,128,512")
    ap.add_argument("--child", nargs=3, default=None)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]), args.child[2])
    from tkjepa.backbones import load_backbones
    from tkjepa.forecast.data import ForecastConfig
    from tkjepa.forecast.store import extract_folder
    from tkjepa.world import WorldConfig
    from tkjepa.world.generate import write_dataset

    sizes = [int(v) for v in args.episodes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="tkjepa-memory-"))
    write_dataset(tmp / "rec", max(sizes), seed=3, cfg=WorldConfig(layout="homes", recording=(96, 160)), workers=2,
                  progress=False)
    entries, _ = extract_folder(tmp / "rec", load_backbones(paths.ENCODER, paths.THINKER), ForecastConfig(),
                                tmp / "cache", progress=False)
    entry_mb = sum(e.stat().st_size for e in entries) / len(entries) / 2 ** 20
    rows = []
    for n in sizes:
        for mode in ("streamed", "in_memory"):
            out = subprocess.run([sys.executable, __file__, "--child", str(tmp / "cache" / "episodes"), str(n), mode],
                                 capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    result = {"command": "python experiments/memory.py", "entry_mb": round(entry_mb, 3), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({"entry_mb": result["entry_mb"]}))


if __name__ == "__main__":
    main()
