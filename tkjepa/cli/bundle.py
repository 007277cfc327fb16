"""An official ThinkJEPA bundle given as --data: what the forecasting commands do differently (no backbones)."""

from __future__ import annotations

from tkjepa.cli import UsageError


def resolve(args):
    from tkjepa.device import resolve_device

    try:
        return resolve_device(args.device)
    except ValueError as e:
        raise UsageError(e) from None


def _bundle(args) -> bool:
    """Whether --data is an official ThinkJEPA bundle (features precomputed: no backbone is loaded)."""
    from tkjepa.forecast.official import is_bundle

    if getattr(args, "data", None) is None or not is_bundle(args.data):
        return False
    if args.encoder or args.thinker:
        raise UsageError(f"{args.data} is an official ThinkJEPA bundle: its features are made already, so "
                         f"--encoder/--thinker do not apply")
    return True


def _bundle_pipeline(args, joints: str) -> dict:
    """What a checkpoint trained on an official bundle records: the models named by the bundle's provenance."""
    from tkjepa.device import world
    from tkjepa.forecast.model import PRESET_BACKBONES
    from tkjepa.forecast.official import bundle_archives, provenance

    got = provenance(bundle_archives(args.data)[0])
    return {"encoder": PRESET_BACKBONES["paper"][0], "encoder_digest": None, "thinker": PRESET_BACKBONES["paper"][1],
            "thinker_digest": None, "features": {"bundle": str(args.data), **got}, "data": str(args.data),
            "split": args.split, "joints": joints, "preset": args.preset, "device": str(resolve(args)),
            "precision": args.precision, "store": args.store, "processes": world()[1]}


def _check_bundle_features(args, checkpoint) -> None:
    """Refuse to score a checkpoint on a bundle whose features come from another configuration than its own."""
    from tkjepa.forecast.model import pipeline_of
    from tkjepa.forecast.official import bundle_archives, provenance

    trained = pipeline_of(checkpoint).get("features")
    if trained is None:
        raise UsageError(f"{checkpoint}: trained on features tkjepa extracted, not on an official bundle's; "
                         f"score it on the EgoDex folder itself")
    got = provenance(bundle_archives(args.data)[0])["configuration"]
    if got != trained.get("configuration"):
        raise UsageError(f"{checkpoint}: trained on bundle features of configuration {trained.get('configuration', '')[:12]}…, "
                         f"but {args.data} holds {got[:12]}…")
