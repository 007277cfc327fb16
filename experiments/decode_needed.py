"""Loading a 1080p EgoDex-layout episode at 256 px: every frame vs only the frames the forecasting data reads.

    .venv/bin/python experiments/decode_needed.py   # writes a 300-frame 1920×1080 recording under runs/, times both
"""

from __future__ import annotations

import time

import numpy as np

from tkjepa import paths
from tkjepa.egodex import find_episodes, load_episode
from tkjepa.forecast.data import ForecastConfig, frames_needed
from tkjepa.forecast.model import paper_forecast
from tkjepa.world import WorldConfig
from tkjepa.world.generate import write_dataset


def main() -> None:
    root = paths.RUNS / "decode_1080p"
    if not (root.exists() and find_episodes(root)):
        write_dataset(root, 1, seed=3, cfg=WorldConfig(num_frames=300, recording=(1080, 1920)), workers=1,
                      progress=False)
    h5 = find_episodes(root)[0]
    t = time.perf_counter()
    full = load_episode(h5, size=256)
    every = time.perf_counter() - t
    print(f"| every frame (300) | {every:.2f} s |")
    for name, cfg in (("paper", paper_forecast()), ("tiny", ForecastConfig())):
        t = time.perf_counter()
        ep = load_episode(h5, size=256, needed=frames_needed(cfg))
        dt = time.perf_counter() - t
        idx = frames_needed(cfg)(300)
        assert np.array_equal(ep.frames[idx], full.frames[idx])
        print(f"| {name} preset's frames ({len(idx)}) | {dt:.2f} s ({every / dt:.1f}× faster) |")


if __name__ == "__main__":
    main()
