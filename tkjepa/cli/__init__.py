"""`tkjepa` command line: the only layer that knows where the shipped files live (`tkjepa.paths`).

Each command module defines `add_arguments(command, parser)` and `run(command, args) -> int`; only the chosen command's module
is imported, so `tkjepa info` does not pay for importing torch. Commands pass data, backbones and
checkpoints down as arguments; a config's fields are changed with `--set FIELD=VALUE` (dotted for nested
configs: `--set predictor.depth=6`), so no option is spelled twice.

Errors: a problem with what the user gave — a value, a file, a checkpoint — is one line on stderr,
`tkjepa <command>: <path>: <problem>`, and exit status 2; `TKJEPA_DEBUG=1` shows its traceback. Anything else is
a bug of ours and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shlex
import sys
import types
import typing

# name -> (module, one-line help), in the data path's order
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("tkjepa.cli.data", "write procedural tabletop episodes in EgoDex format"),
    "info": ("tkjepa.cli.data", "summarise an EgoDex-format episode or folder"),
    "pretrain-encoder": ("tkjepa.cli.encoder", "JEPA-pretrain the tiny video encoder on the tabletop world"),
    "probe": ("tkjepa.cli.encoder", "R² of a linear probe from frozen encoder tokens to the wrist's 3D position"),
    "pretrain-thinker": ("tkjepa.cli.thinker", "pretrain the tiny Qwen3-VL thinker on tabletop episodes"),
    "stand-in": ("tkjepa.cli.backbones", "write a random V-JEPA 2 or Qwen3-VL of the real architecture (no download)"),
    "think": ("tkjepa.cli.thinker", "print a thinker's thinking text per episode and its next-target accuracy"),
    "extract": ("tkjepa.cli.forecast", "encode a folder's episodes + thinker features into the cache (resumable)"),
    "train": ("tkjepa.cli.forecast", "train one forecaster variant (thinkjepa, jepa_only, …) on world episodes"),
    "bench": ("tkjepa.cli.forecast", "train and score every forecaster over seeds + ablations; JSON and a table"),
    "evaluate": ("tkjepa.cli.forecast", "score a folder of forecaster checkpoints on an EgoDex-format folder"),
    "attribute": ("tkjepa.cli.forecast", "which thinker layers the thinkjepa forecaster leans on (IG + ablation)"),
    "train-world-model": ("tkjepa.cli.planning", "train the planner's action-conditioned world model"),
    "train-subgoal-head": ("tkjepa.cli.planning", "train the planner's subgoal head (thinker words -> z*)"),
    "plan": ("tkjepa.cli.planning", "CEM + MPC in the tabletop toward the final frame, thinker subgoals, …"),
    "viewer": ("tkjepa.cli.viewer", "the Gradio rollout viewer on 127.0.0.1 (what `make demo` runs)"),
    "quickstart": ("tkjepa.cli.quickstart", "a two-minute tour on data_samples/ (what `make quickstart` runs)"),
}


class UsageError(Exception):
    """A bad command-line value: printed as one line, exit status 2."""


def _convert(text: str, kind):
    """`text` as a value of the type `kind` (a dataclass field's annotation, resolved)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if text.lower() in ("none", "null") and type(None) in typing.get_args(kind):
            return None
        for k in options:
            try:
                return _convert(text, k)
            except (ValueError, TypeError):
                continue
        raise ValueError(f"{text!r} is none of {options}")
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{text!r} is not a boolean")
    if kind in (int, float, str):
        return kind(text)
    if origin in (tuple, list) or kind in (tuple, list):
        value = json.loads(text) if text.startswith("[") else [t for t in text.split(",") if t]
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        if args and args[0] in (int, float, str):
            value = [args[0](v) for v in value]
        return tuple(value) if (origin or kind) is tuple else list(value)
    return json.loads(text)


def apply_overrides(cfg, pairs: list[str] | None):
    """`cfg` (a dataclass) with each "field=value" of `pairs` applied, in place; dotted names reach nested
    configs. Raises UsageError naming the field when it does not exist or the value does not fit its type."""
    touched = [cfg]
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        if not sep:
            raise UsageError(f"--set {pair!r}: write FIELD=VALUE")
        *parents, leaf = name.strip().split(".")
        target = cfg
        for part in parents:
            if not dataclasses.is_dataclass(getattr(target, part, None)):
                raise UsageError(f"--set {name}: {type(target).__name__} has no nested config {part!r}")
            target = getattr(target, part)
        hints = typing.get_type_hints(type(target))
        known = {f.name for f in dataclasses.fields(target)}
        if leaf not in known:
            raise UsageError(f"--set {name}: {type(target).__name__} has no field {leaf!r}; "
                             f"known: {', '.join(sorted(known))}")
        try:
            setattr(target, leaf, _convert(text, hints[leaf]))
        except (ValueError, TypeError) as e:
            raise UsageError(f"--set {name}={text}: {e}") from None
        touched.append(target)
    for target in reversed(touched if pairs else []):  # re-check the changed configs, innermost first
        if hasattr(target, "__post_init__"):
            try:
                target.__post_init__()
            except ValueError as e:
                raise UsageError(f"--set: {e}") from None
    return cfg


_ARGV: list[str] = []  # the arguments `main` runs, for `command_line`


def command_line() -> str:
    """The command being run ("tkjepa train --variant thinkjepa …"), for metrics files."""
    return "tkjepa " + shlex.join(_ARGV)


def add_common(p: argparse.ArgumentParser, threads: int | None = None, progress: bool = True) -> None:
    """--threads (torch CPU threads) and, for long commands, --quiet (no progress bars)."""
    p.add_argument("--threads", type=int, default=threads,
                   help=f"torch CPU threads (default: {threads or 'torch’s choice'})")
    if progress:
        p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_set(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help=f"change a field of the {what} (dotted for nested configs); repeatable")


def set_threads(args) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def build_parser(command: str | None = None) -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="tkjepa", description="ThinkJEPA teaching toolkit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:  # import only what will run
            modules[name] = importlib.import_module(module)
            modules[name].add_arguments(name, p)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _ARGV[:] = argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser, modules = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(modules[args.command].run(args.command, args) or 0)
    except Exception as e:
        if not is_input_error(e) or os.environ.get("TKJEPA_DEBUG"):
            raise
        print(f"tkjepa {args.command}: {e}", file=sys.stderr)
        return 2


def is_input_error(e: Exception) -> bool:
    """A problem with what the user gave (a value, a file, a checkpoint), not a bug of ours."""
    known = [UsageError, FileNotFoundError]
    for module, name in (("tkjepa.checkpoint", "CheckpointError"), ("tkjepa.egodex", "EgoDexFormatError")):
        if module in sys.modules:  # only what was imported can have been raised
            known.append(getattr(sys.modules[module], name))
    return isinstance(e, tuple(known))

