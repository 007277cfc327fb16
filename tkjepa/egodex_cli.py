"""`tkjepa info PATH`: what an EgoDex-format episode or folder contains."""

from __future__ import annotations

import json

from tkjepa.egodex import EgoDexFormatError, format_summary, summarize


def add_arguments(p) -> None:
    p.add_argument("path", help="an episode's .hdf5 file or a folder of episodes")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args) -> int:
    try:
        summary = summarize(args.path)
    except (EgoDexFormatError, FileNotFoundError) as e:
        raise SystemExit(f"tkjepa info: {e}") from None
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0
