"""Files that must never be half-written or silently wrong: atomic writes, checkpoints, training states, digests.

Every file tkjepa writes goes through `atomic_write`: the bytes go to a hidden temporary name beside the
target (`.<name>.partial`, which no reader globs for) and `os.replace` moves them into place, so an interrupted
command leaves either the old file or the whole new one. `atomic_folder` does the same for a checkpoint folder.

A checkpoint is a config dataclass (JSON) + a state dict (safetensors: no pickle, nothing executed on load).
`config_from_dict` and `load_weights` check both against the code that reads them and raise one
`CheckpointError` that names the file and what is wrong (unknown or missing config fields, missing, unexpected
or mis-shaped tensors, a file that is not safetensors).

A training state (`save_state` / `load_state`) holds the weights, the optimiser's moments, the step and the
log, so a resumed run continues exactly where the interrupted one stopped (the schedules and per-step
generators of `tkjepa.optim` are pure functions of the step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:  # torch is imported where tensors are handled, so `tkjepa info` runs without it
    import torch
    import torch.nn as nn


class CheckpointError(ValueError):
    """A checkpoint or cache file that this code cannot use; the message names the file and the problem."""


# ---- atomic writes ----------------------------------------------------------------------------------------
def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` to produce the file, then move it to `path` in one step; returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, default=str))


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces `path` (an existing folder is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
                 ) -> Path:
    """A safetensors file, written atomically (tensors made contiguous, detached)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; CheckpointError if it is missing or not safetensors."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


# ---- configs ----------------------------------------------------------------------------------------------
def config_from_dict(cls, d: dict, source: str | os.PathLike = "config") -> Any:
    """Rebuild dataclass `cls` (nested dataclasses included) from `asdict`-style JSON, strictly: a field the
    code does not know, or a required one that is missing, raises CheckpointError naming `source`."""
    if not isinstance(d, dict):
        raise CheckpointError(f"{source}: expected a JSON object for {cls.__name__}, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise CheckpointError(f"{source}: {cls.__name__} has no field(s) {unknown} (written by another version "
                              "of tkjepa?)")
    missing = [n for n, f in fields.items() if n not in d and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise CheckpointError(f"{source}: {cls.__name__} lacks the field(s) {missing}")
    return cls(**{k: _typed(hints[k], v, source) for k, v in d.items()})


def _typed(hint, value, source):
    """JSON value -> the field's type: nested dataclasses rebuilt, lists back to tuples where declared."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for h in options:
        if dataclasses.is_dataclass(h) and isinstance(value, dict):
            return config_from_dict(h, value, source)
        if typing.get_origin(h) is tuple and isinstance(value, list):
            return tuple(value)
    return value


# ---- weights ----------------------------------------------------------------------------------------------
def load_weights(module: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a safetensors state dict into `module`, strictly; CheckpointError names what does not fit."""
    tensors, _ = load_tensors(path)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    shapes = [f"{k} {tuple(tensors[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
              if k in tensors and tensors[k].shape != v.shape]
    problems = ([f"missing tensors {_few(missing)}"] if missing else []) + \
               ([f"unexpected tensors {_few(extra)}"] if extra else []) + \
               ([f"wrong shapes: {_few(shapes)}"] if shapes else [])
    if problems:
        raise CheckpointError(f"{path}: does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(tensors)
    return module


def _few(items: list, n: int = 4) -> str:
    return ", ".join(map(str, items[:n])) + (f" … (+{len(items) - n})" if len(items) > n else "")


def save_part(folder: str | os.PathLike, stem: str, module: nn.Module, config: Any) -> None:
    """`folder/stem.safetensors` + `folder/stem.json` (the config dataclass), weights first, each atomic."""
    folder = Path(folder)
    save_tensors(folder / f"{stem}.safetensors", module.state_dict())
    write_json(folder / f"{stem}.json", dataclasses.asdict(config))


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file, or CheckpointError naming it when it is missing or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


# ---- resumable training states ----------------------------------------------------------------------------
def save_state(path: str | os.PathLike, model: nn.Module, opt: torch.optim.Optimizer, step: int,
               history: list) -> None:
    """Weights + AdamW moments + step + log as one safetensors file, written atomically."""
    import torch

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        tensors.update({f"optim.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
    save_tensors(path, tensors, metadata={"step": str(step), "history": json.dumps(history)})


def load_state(path: str | os.PathLike, model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, list]:
    """Restore `save_state`'s weights and optimiser moments in place -> (step, history)."""
    tensors, meta = load_tensors(path)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        state: dict = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
        opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
        return int(meta["step"]), json.loads(meta["history"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: not a training state of this model ({e})") from None


# ---- digests ----------------------------------------------------------------------------------------------
def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint's weights: a folder's model.safetensors, or the file itself; a hub name or a
    path that holds neither stands for itself."""
    p = Path(path)
    p = p / "model.safetensors" if p.is_dir() else p
    if not p.is_file():
        return str(path)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_digest(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (names, dtypes, shapes, bytes), in name order."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
