"""`tkjepa generate` (procedural tabletop episodes, EgoDex format) and `tkjepa info` (what a file or folder holds)."""

from __future__ import annotations

import json
import time

from tkjepa.cli import UsageError
from tkjepa.egodex import format_summary, summarize
from tkjepa.world.generate import WorldConfig, write_dataset
from tkjepa.world.scene import LAYOUTS
from tkjepa.world.tasks import FAMILIES


def add_arguments(command: str, p) -> None:
    if command == "info":
        p.add_argument("path", help="an episode's .hdf5 file or a folder of episodes")
        p.add_argument("--json", action="store_true", help="print the summary as JSON")
        return
    p.add_argument("--out", required=True, help="output folder (EgoDex layout: <task>/<n>.hdf5 + .mp4)")
    p.add_argument("--episodes", type=int, default=100, help="number of episodes")
    p.add_argument("--seed", type=int, default=0, help="dataset seed; the same seed gives identical files")
    p.add_argument("--frames", type=int, default=64, help="frames per episode")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels")
    p.add_argument("--family", default=None, choices=FAMILIES, help="only this task family (default: a mix)")
    p.add_argument("--layout", default="scattered", choices=LAYOUTS,
                   help="scattered: objects anywhere; homes: each colour has its place on the table (the "
                        "forecasting benchmark's world: test folders for `tkjepa evaluate`)")
    p.add_argument("--workers", type=int, default=2, help="processes (results do not depend on it)")


def run(command: str, args) -> int:
    if command == "info":
        summary = summarize(args.path)
        print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
        return 0
    if args.episodes < 1:
        raise UsageError("--episodes must be ≥ 1")
    try:
        cfg = WorldConfig(num_frames=args.frames, size=args.size, family=args.family, layout=args.layout)
    except ValueError as e:
        raise UsageError(e) from None
    t0 = time.perf_counter()
    paths = write_dataset(args.out, args.episodes, args.seed, cfg, workers=args.workers)
    print(f"wrote {len(paths)} episodes ({cfg.num_frames} frames, {cfg.size}x{cfg.size}) to {args.out} "
          f"in {time.perf_counter() - t0:.1f} s (seed {args.seed}, {args.workers} workers)")
    return 0
