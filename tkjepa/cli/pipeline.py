"""Which backbones a forecasting command runs on (`backbones_for`: the flags, else what a checkpoint records,
else the shipped tiny ones) and what a checkpoint records of its pipeline (`_pipeline`)."""

from __future__ import annotations

from pathlib import Path

from tkjepa import paths
from tkjepa.cli import UsageError


def _device(args):
    from tkjepa.device import resolve_device

    try:
        return resolve_device(args.device)
    except ValueError as e:
        raise UsageError(e) from None


def _source(recorded: str) -> str:
    """A recorded backbone source as this machine finds it: a path as given, else under the repository (the
    shipped backbones are recorded relative to it), else the hub name it is."""
    if Path(recorded).exists() or Path(recorded).is_absolute():
        return recorded
    inside = paths.REPO / recorded
    return str(inside) if inside.exists() else recorded


def backbones_for(args, checkpoint: str | Path | None = None):
    """The backbones a command runs on: --encoder/--thinker, else those `checkpoint` records, else the shipped
    tiny ones; moved to --device. A given backbone whose weights are not the recorded ones is refused."""
    from tkjepa.backbones import load_backbones
    from tkjepa.forecast.model import PRESET_BACKBONES, pipeline_of

    record = pipeline_of(checkpoint) if checkpoint is not None else {}
    defaults = PRESET_BACKBONES.get(getattr(args, "preset", "tiny"), (paths.ENCODER, paths.THINKER))
    chosen = {}
    for which, given, default in (("encoder", args.encoder, defaults[0]), ("thinker", args.thinker, defaults[1])):
        chosen[which] = given or (_source(record[which]) if record.get(which) else default)
    try:
        backbones = load_backbones(chosen["encoder"], chosen["thinker"])
    except OSError as e:  # a hub name this machine cannot download, a folder without the model's files
        raise UsageError(f"cannot load the backbones {chosen['encoder']} / {chosen['thinker']}: "
                         f"{str(e).splitlines()[0]}") from None
    for which in ("encoder", "thinker"):
        want = record.get(f"{which}_digest")
        if want and backbones.digest(which) != want:
            raise UsageError(f"{checkpoint}: trained on the {which} {record[which]} (weights sha256 {want[:12]}…), "
                             f"but {getattr(backbones, which + '_source')} has other weights "
                             f"({backbones.digest(which)[:12]}…); give --{which} the one it was trained on")
    return backbones.to(_device(args))


def _pipeline(args, backbones, data_source: str, joints: str) -> dict:
    """What a checkpoint records so that `evaluate`/`viewer` rebuild the same pipeline from it alone."""
    from tkjepa.device import world

    def source(s):  # the shipped backbones relative to the repository, so a clone elsewhere finds them
        p = Path(s).resolve()
        return str(p.relative_to(paths.REPO)) if p.is_relative_to(paths.REPO) and p.exists() else str(s)

    return {"encoder": source(backbones.encoder_source), "encoder_digest": backbones.digest("encoder"),
            "thinker": source(backbones.thinker_source), "thinker_digest": backbones.digest("thinker"),
            "data": data_source, "split": getattr(args, "split", "all"), "joints": joints,
            "preset": getattr(args, "preset", "tiny"),
            "device": str(backbones.device), "precision": args.precision, "store": getattr(args, "store", "fp32"),
            "processes": world()[1]}
