"""`tkjepa viewer` (what `make demo` runs): the Gradio rollout viewer, by default on the shipped checkpoints
and sample episodes."""

from __future__ import annotations

from pathlib import Path

from tkjepa import paths

HOST, PORT = "127.0.0.1", 7860


def add_arguments(command: str, p) -> None:
    p.add_argument("--layout", default="homes", choices=list(paths.LAYOUT_SAMPLES),
                   help="which shipped samples and forecasters: homes (each colour has its place) or scattered "
                        "(objects anywhere; the forecasters trained there)")
    p.add_argument("--data", default=None, help="EgoDex-format folder to list (default: the layout's samples)")
    p.add_argument("--checkpoints", default=None,
                   help="folder of forecaster checkpoints (default: the layout's shipped ones)")
    p.add_argument("--encoder", default=None, help="the encoder the checkpoints were trained on (default: the one "
                   "their thinkjepa checkpoint records, else the shipped tiny encoder)")
    p.add_argument("--thinker", default=None, help="the thinker the checkpoints were trained on (default: as --encoder)")
    p.add_argument("--planner", default=str(paths.PLANNER),
                   help="planner folder whose held-out tabletop episodes the planning panel plays back ('' for none)")
    p.add_argument("--port", type=int, default=PORT, help="port on the host")
    p.add_argument("--host", default=HOST, help="address to listen on (default: this machine only)")


def layout_defaults(args) -> tuple[str, str]:
    """(--data, --checkpoints): as given, else the shipped samples and forecasters of --layout."""
    data, checkpoints = paths.LAYOUT_SAMPLES[args.layout]
    return args.data or str(data), args.checkpoints or str(checkpoints)


def run(command: str, args) -> int:
    from tkjepa.viewer.app import build_demo, launch
    from tkjepa.viewer.compute import ViewerConfig

    from tkjepa.cli.pipeline import backbones_for

    args.data, args.checkpoints = layout_defaults(args)
    print(f"loading the models and the episodes of {args.data} …", flush=True)
    args.device = "cpu"  # the viewer's models are small; its computations are per request
    backbones = backbones_for(args, Path(args.checkpoints) / "thinkjepa")
    config = ViewerConfig(data=Path(args.data), checkpoints=Path(args.checkpoints), encoder=backbones.encoder_source,
                          thinker=backbones.thinker_source, cache=paths.CACHE,
                          planner=Path(args.planner) if args.planner else None, planner_encoder=paths.ENCODER)
    launch(build_demo(config, backbones), args.host, args.port)
    return 0
