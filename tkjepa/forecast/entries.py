"""The per-episode store's entries: one `<key>.safetensors` per usable episode (its tensors and thinker text),
one `<key>.json` per refused one (why). `forecast.store` fills it from EgoDex-format folders, and
`forecast.official` from the official release's archives; both read it back through `gather`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from tkjepa.checkpoint import CheckpointError, atomic_write, load_tensors, save_tensors
from tkjepa.egodex import EgoDexFormatError

STORE_VERSION = 1
FLOATS = ("ctx", "future", "old", "new", "fine")  # stored in the store's dtype; the rest as they are
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class EpisodeStore:
    """`root/<key>.safetensors` (an episode's tensors + its thinker text) or `root/<key>.json` (why it is refused)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def tensors_path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def refusal(self, key: str) -> str | None:
        p = self.root / f"{key}.json"
        return json.loads(p.read_text())["error"] if p.exists() else None

    def has(self, key: str) -> bool:
        return self.tensors_path(key).exists() or (self.root / f"{key}.json").exists()

    def put(self, key: str, arrays: dict[str, torch.Tensor], text: str, source: str, dtype: str) -> None:
        tensors = {k: (v.to(DTYPES[dtype]) if k in FLOATS else v).contiguous() for k, v in arrays.items()}
        tensors = {k: (v.to(torch.uint8) if v.dtype == torch.bool else v) for k, v in tensors.items()}
        save_tensors(self.tensors_path(key), tensors, metadata={"text": text, "source": source,
                                                                 "bools": json.dumps([k for k, v in arrays.items()
                                                                                      if v.dtype == torch.bool])})

    def refuse(self, key: str, source: str, error: str) -> None:
        atomic_write(self.root / f"{key}.json",
                     lambda p: Path(p).write_text(json.dumps({"path": source, "error": error})))

    def get(self, key: str) -> tuple[dict[str, torch.Tensor], dict] | None:
        """(fp32 tensors, metadata), or None when there is none or it cannot be read (then removed, and said)."""
        path = self.tensors_path(key)
        if not path.exists():
            return None
        try:
            t, meta = load_tensors(path)
            bools = set(json.loads(meta["bools"]))
        except (CheckpointError, KeyError, ValueError) as e:
            warnings.warn(f"{path}: cannot be read ({e}); removed, it will be rebuilt", stacklevel=2)
            path.unlink(missing_ok=True)
            return None
        return ({k: v.bool() if k in bools else (v.float() if k in FLOATS else v) for k, v in t.items()}, meta)


def gather(store: EpisodeStore, files: list[Path], keys: list[str], skipped: list | None, strict: bool, folder
           ) -> tuple[list[Path], list[str]]:
    """The entries of `files` (all extracted): (entry paths, episode paths) of the usable ones, in order."""
    skipped = [] if skipped is None else skipped
    entries, used = [], []
    for p, k in zip(files, keys):
        error = store.refusal(k)
        if error is not None:
            if strict:
                raise EgoDexFormatError(f"{p}: {error}")
            skipped.append({"path": str(p), "error": error})
        elif store.tensors_path(k).exists():
            entries.append(store.tensors_path(k))
            used.append(str(p))
        else:
            raise RuntimeError(f"{p}: no store entry after extraction (was another rank's share extracted?)")
    if not entries:
        raise EgoDexFormatError(f"{folder}: none of its {len(files)} episodes can be used (the first: "
                                f"{skipped[0]['path']}: {skipped[0]['error']})")
    return entries, used
