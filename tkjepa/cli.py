"""`tkjepa` command line. Each subcommand lives in the module that owns its work.

A command module defines `add_arguments(parser)` and `run(args) -> int`. Only the chosen command's module
is imported, so `tkjepa info` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Keep in the data path's order.
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("tkjepa.world.generate", "write procedural tabletop episodes in EgoDex format"),
    "info": ("tkjepa.egodex_cli", "summarise an EgoDex-format episode or folder"),
    "pretrain-encoder": ("tkjepa.jepa", "JEPA-pretrain the tiny video encoder on the tabletop world (V-JEPA recipe)"),
    "probe": ("tkjepa.probe", "R² of a linear probe from frozen encoder tokens to the wrist's 3D position"),
    "pretrain-thinker": ("tkjepa.thinker.train", "pretrain the tiny Qwen3-VL thinker on tabletop episodes"),
    "think": ("tkjepa.thinker.think", "print a thinker's thinking text per episode and its next-target accuracy"),
    "train": ("tkjepa.train", "train one forecaster (thinkjepa, jepa_only, vlm_only, oracle) on world episodes"),
    "bench": ("tkjepa.bench", "train and score every forecaster over seeds + ablations; writes JSON and a table"),
    "evaluate": ("tkjepa.evaluate", "score the shipped forecasters on any EgoDex-format folder (no training)"),
    "attribute": ("tkjepa.attribution", "which thinker layers the thinkjepa forecaster leans on (IG + ablation)"),
    "train-planner": ("tkjepa.worldmodel", "train the planner: action-conditioned world model + thinker subgoal head"),
    "plan": ("tkjepa.planning", "CEM + MPC in the tabletop toward the final frame (flat) or thinker subgoals"),
    "viewer": ("tkjepa.viewer_app", "the Gradio rollout viewer on 127.0.0.1 (what `make demo` runs)"),
    "quickstart": ("tkjepa.quickstart", "a two-minute tour on data_samples/ (what `make quickstart` runs)"),
}


def build_parser(command: str | None = None) -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="tkjepa", description="ThinkJEPA teaching toolkit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:  # import only what will run
            modules[name] = importlib.import_module(module)
            modules[name].add_arguments(p)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser, modules = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
