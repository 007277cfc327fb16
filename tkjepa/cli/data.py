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
    p.add_argument("--recording", default=None, metavar="HxW",
                   help="write EgoDex recordings instead: HxW video (e.g. 144x256), all 68 joints, both hands, "
                        "no world ground truth (for trying the real-data path)")
    p.add_argument("--workers", type=int, default=2, help="processes (results do not depend on it)")


def run(command: str, args) -> int:
    if command == "info":
        summary = summarize(args.path)
        print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
        return 0
    if args.episodes < 1:
        raise UsageError("--episodes must be ≥ 1")
    try:
        recording = None if args.recording is None else tuple(int(v) for v in args.recording.lower().split("x"))
        cfg = WorldConfig(num_frames=args.frames, size=args.size, family=args.family, layout=args.layout,
                          recording=recording)
    except ValueError as e:
        raise UsageError(f"--recording {args.recording}: {e}" if args.recording else e) from None
    t0 = time.perf_counter()
    paths = write_dataset(args.out, args.episodes, args.seed, cfg, workers=args.workers)
    H, W = cfg.recording or (cfg.size, cfg.size)
    print(f"wrote {len(paths)} episodes ({cfg.num_frames} frames, {H}x{W}) to {args.out} "
          f"in {time.perf_counter() - t0:.1f} s (seed {args.seed}, {args.workers} workers)")
    return 0
