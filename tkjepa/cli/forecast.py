"""`tkjepa train`, `bench`, `evaluate` and `attribute`: the forecasters, trained on world episodes, scored on
world episodes or any EgoDex-format folder, and their thinker layers attributed.

World data: training episodes are world seed `TRAIN_SEED`'s, held-out ones `TEST_SEED`'s (homes layout);
encoder tokens and thinker features are cached under runs/cache, keyed by both backbones' weights.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tkjepa import paths
from tkjepa.cli import UsageError, add_common, add_set, apply_overrides, set_threads
from tkjepa.cli.bundle import _bundle, _bundle_pipeline, _check_bundle_features
from tkjepa.cli.pipeline import _device, _pipeline, backbones_for

TRAIN_SEED = 1000  # world seed of the forecasters' training episodes (1001: validation, where used)
TEST_SEED = 2000   # world seed of the held-out test episodes


def add_backbones(p) -> None:
    p.add_argument("--encoder", default=None,
                   help="encoder folder or hub name: the tiny one, or a V-JEPA 2 (e.g. facebook/vjepa2-vitl-fpc64-256) "
                        "(default: the one the checkpoint records, else the shipped tiny encoder)")
    p.add_argument("--thinker", default=None,
                   help="thinker folder or hub name: the tiny one, or a Qwen3-VL (default: the one the checkpoint "
                        "records, else the shipped tiny thinker)")


def add_runtime(p) -> None:
    from tkjepa.device import DEVICES, PRECISIONS

    p.add_argument("--device", default="auto", choices=DEVICES, help="auto: cuda, else mps, else cpu")
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                   help="fp32 (the shipped numbers), or bf16/fp16 under autocast (fp16 with a loss scaler)")


def add_strict(p) -> None:
    p.add_argument("--strict", action="store_true",
                   help="stop at the first episode that cannot be used (default: skip it, list it under \"skipped\")")


def add_split(p, default: str) -> None:
    from tkjepa.forecast.data import SPLIT_SEED, SPLIT_TEST

    p.add_argument("--split", default=default, choices=("all", "train", "test"),
                   help=f"which side of --data: every episode, or the train / test side of a split by task folder "
                        f"({100 * (1 - SPLIT_TEST):.0f}%%/{100 * SPLIT_TEST:.0f}%% of the folders, seed {SPLIT_SEED}, as the official "
                        f"code; no task on both sides)")


def add_store(p) -> None:
    p.add_argument("--store", default=None, choices=("fp32", "fp16"),
                   help="dtype of the per-episode cache entries: fp32 (exact; the tiny preset's) or fp16 (half "
                        "the disk, as the official cache; the paper preset's)")


def add_preset(p) -> None:
    from tkjepa.forecast.model import PRESETS

    p.add_argument("--preset", default="tiny", choices=list(PRESETS),
                   help="tiny: the toolkit's recipe (the shipped numbers); paper: the official configuration "
                        "(V-JEPA 2 ViT-L + Qwen3-VL-2B-Thinking by default, 32/32 linspace frames, 12 × 384 "
                        "predictor, FiLM on both streams, 52 joints in the camera frame, MSE + MSE)")


def add_joints(p) -> None:
    from tkjepa.episode import JOINT_SETS

    p.add_argument("--joints", default=None, choices=list(JOINT_SETS),
                   help="joints forecast: right7 (the right hand's wrist, forearm and fingertips; the tiny "
                        "preset's) or bimanual52 (both hands' 26 joints; the paper preset's)")


def add_arguments(command: str, p) -> None:
    from tkjepa.forecast.model import VARIANTS

    add_backbones(p)
    add_runtime(p)
    if command != "train":
        add_strict(p)
    if command == "train":
        p.add_argument("--variant", default="thinkjepa", choices=list(VARIANTS), help="what to train")
        p.add_argument("--out", required=True, help="checkpoint folder (config.json + model.safetensors)")
        p.add_argument("--data", default=None,
                       help=f"EgoDex-format training folder, or an official ThinkJEPA bundle (cache/ + "
                            f"supervision_hdf5/; its manifests give --split) (default: generated world episodes "
                            f"of seed {TRAIN_SEED})")
        add_split(p, "all")
        add_preset(p)
        add_joints(p)
        add_store(p)
        p.add_argument("--loader-workers", type=int, default=0,
                       help="DataLoader processes reading --data's cache entries (0: in the training process)")
        p.add_argument("--episodes", type=int, default=None,
                       help="training episodes (default: every one of --data, or 1000 world episodes)")
        p.add_argument("--seed", type=int, default=0, help="weights and batch order")
        add_set(p, "ForecasterConfig (e.g. steps=300, injection=film, levels=mid, predictor.depth=6)")
        p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.safetensors")
    elif command == "bench":
        p.add_argument("--data", default=None,
                       help=f"EgoDex-format test folder (default: world episodes of seed {TEST_SEED})")
        p.add_argument("--out", default=str(paths.RUNS / "bench" / "results.json"),
                       help="results JSON (a .md table is written beside it)")
        p.add_argument("--seeds", type=int, default=3, help="seeds per headline model")
        p.add_argument("--train-episodes", type=int, default=1000, help=f"world training episodes (seed {TRAIN_SEED})")
        p.add_argument("--test-episodes", type=int, default=200, help="generated test episodes (without --data)")
        p.add_argument("--steps", type=int, default=None, help="optimiser steps per model (default: the variant's)")
        p.add_argument("--no-ablations", action="store_true", help="skip the ablations")
        p.add_argument("--save-checkpoints", default=None,
                       help="write the seed-0 models here (e.g. data_samples/forecasters)")
        p.add_argument("--workers", type=int, default=2, help="models trained side by side (one thread each)")
    if command in ("train", "bench"):
        from tkjepa.world.scene import LAYOUTS

        p.add_argument("--layout", default="homes", choices=LAYOUTS,
                       help="tabletop layout of the generated world episodes: homes (each colour has its place, so "
                            "the named object says where the hand goes; the shipped forecasters) or scattered "
                            "(objects anywhere: the forecaster must find the named one; "
                            "data_samples/forecasters/scattered)")
    elif command == "evaluate":
        p.add_argument("--data", required=True,
                       help="EgoDex-format folder (<task>/<n>.hdf5 + .mp4), or an official ThinkJEPA bundle")
        add_split(p, "all")
        add_store(p)
        p.add_argument("--out", default=str(paths.RUNS / "evaluate" / "results.json"),
                       help="results JSON (+ a .md table beside it)")
        p.add_argument("--checkpoints", default=str(paths.FORECASTERS), help="folder of forecaster checkpoints")
        p.add_argument("--episodes", type=int, default=None, help="use only the first N episodes")
    elif command == "extract":
        p.add_argument("--data", required=True,
                       help="EgoDex-format folder (<task>/<n>.hdf5 + .mp4), or an official ThinkJEPA bundle")
        add_split(p, "all")
        add_preset(p)
        add_joints(p)
        add_store(p)
        p.add_argument("--episodes", type=int, default=None, help="use only the first N episodes")
        p.add_argument("--checkpoint", default=None,
                       help="a forecaster checkpoint whose geometry, joints, sampler and backbones to extract for "
                            "(default: ForecastConfig's, changed with --joints and --set)")
        add_set(p, "ForecastConfig (e.g. pool=1, sampler.thinker_frames=16)")
        p.add_argument("--json", action="store_true", help="print one JSON object")
    else:  # attribute
        p.add_argument("--data", required=True,
                       help="EgoDex-format folder (<task>/<n>.hdf5 + .mp4), or an official ThinkJEPA bundle")
        add_split(p, "all")
        p.add_argument("--episodes", type=int, default=None, help="use only the first N episodes")
        p.add_argument("--checkpoint", default=str(paths.FORECASTERS / "thinkjepa"),
                       help="a thinkjepa forecaster checkpoint")
        p.add_argument("--out", default=str(paths.RUNS / "attribute" / "attribution.json"),
                       help="JSON (+ attribution.html beside it)")
    add_common(p)


def run(command: str, args) -> int:
    set_threads(args)
    return {"extract": extract, "train": train, "bench": bench, "evaluate": evaluate,
            "attribute": attribute}[command](args)


def _write_results(out: str | Path, result: dict) -> str:
    from tkjepa.checkpoint import write_json, write_text
    from tkjepa.forecast.evaluate import markdown_table

    out = Path(out)
    write_json(out, result)
    table = markdown_table(result)
    write_text(out.with_suffix(".md"), table)
    return table


def report_skipped(skipped: list[dict]) -> None:
    """One line per episode a folder command left out, on stderr."""
    import sys

    for row in skipped:
        print(f"skipped {row['path']}: {row['error']}", file=sys.stderr)


def extract(args) -> int:
    from tkjepa.device import barrier, init_distributed, world
    from tkjepa.episode import JOINT_SETS
    from tkjepa.forecast.model import load_forecaster, variant_config
    from tkjepa.forecast.store import extract_folder

    t0 = time.perf_counter()
    if args.checkpoint is not None and (args.set or args.joints or args.preset != "tiny"):
        raise UsageError("--checkpoint with --set, --joints or --preset: the checkpoint's config is used as it is")
    if args.checkpoint:
        cfg = load_forecaster(args.checkpoint).cfg.forecast
    else:
        cfg = variant_config("thinkjepa", args.preset).forecast
        if args.joints:
            cfg.joints = JOINT_SETS[args.joints]
        cfg = apply_overrides(cfg, args.set)
    args.store = args.store or ("fp16" if args.preset == "paper" else "fp32")
    if _bundle(args):
        backbones = None
        init_distributed(_device(args))
    else:
        backbones = backbones_for(args, args.checkpoint)
        backbones.to(init_distributed(backbones.device))
    rank, size = world()
    skipped: list[dict] = []
    kwargs = dict(max_episodes=args.episodes, split=args.split, skipped=skipped, strict=args.strict,
                  precision=args.precision, dtype=args.store, progress=not args.quiet and rank == 0)
    entries, episodes = extract_folder(args.data, backbones, cfg, paths.CACHE, rank=rank, world=size,
                                       **(kwargs if size == 1 else {**kwargs, "skipped": [], "strict": False}))
    if size > 1:  # every rank has done its share: rank 0 reads the whole list
        barrier()
        if rank != 0:
            return 0
        entries, episodes = extract_folder(args.data, backbones, cfg, paths.CACHE, **kwargs)
    from tkjepa.forecast.store import ForecastDataset, collate

    first = collate([ForecastDataset(entries)[0]])
    result = {"data": str(args.data), "split": args.split, "episodes": len(episodes), "skipped": skipped,
              "cache": str(paths.CACHE / "episodes"), "store": args.store, "processes": size,
              "tensors": {k: " x ".join(map(str, [len(entries), *v.shape[1:]])) for k, v in first.tensors().items()},
              "seconds": round(time.perf_counter() - t0, 1)}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    report_skipped(skipped)
    print(f"{len(episodes)} episodes extracted" + (f", {len(skipped)} skipped" if skipped else "")
          + f" in {result['seconds']} s; cache: {result['cache']}")
    return 0


def train(args) -> int:
    from tkjepa.device import rank_zero_first, world
    from tkjepa.episode import JOINT_SETS
    from tkjepa.forecast.data import for_encoder, world_data
    from tkjepa.forecast.model import save_forecaster, variant_config
    from tkjepa.forecast.train import train as train_model

    try:
        cfg = variant_config(args.variant, args.preset, seed=args.seed)
    except ValueError as e:
        raise UsageError(e) from None
    if args.joints:
        cfg.forecast.joints = JOINT_SETS[args.joints]
    joints = next(name for name, js in JOINT_SETS.items() if tuple(js) == tuple(cfg.forecast.joints))
    cfg = apply_overrides(cfg, args.set)
    args.store = args.store or ("fp16" if args.preset == "paper" else "fp32")
    if args.preset != "tiny" and args.data is None:
        raise UsageError(f"--preset {args.preset} trains on an EgoDex-format folder: give --data")
    bundle = _bundle(args)
    if bundle:  # the official release's features: nothing to load, the bundle fixes the token grid
        from tkjepa.forecast.official import bundle_config

        backbones, device = None, _device(args)
        cfg.forecast = bundle_config(cfg.forecast, args.data)
    else:
        backbones = backbones_for(args)
        device = backbones.device
        try:
            cfg.forecast = for_encoder(cfg.forecast, backbones.encoder)
        except ValueError as e:
            raise UsageError(f"--encoder {backbones.encoder_source}: {e}") from None
    progress = not args.quiet and world()[0] == 0
    with rank_zero_first():  # one process fills the cache, the others read it
        if args.data is None:
            if args.split != "all":
                raise UsageError("--split needs --data (world episodes have their own seeds)")
            data, _ = world_data(TRAIN_SEED, args.episodes or 1000, backbones, cfg.forecast, paths.CACHE,
                                 layout=args.layout, progress=progress, precision=args.precision)
            source = f"world seed {TRAIN_SEED}, {args.layout} layout"
        else:  # streamed from the per-episode cache: memory does not grow with the folder
            from tkjepa.forecast.store import ForecastDataset, extract_folder

            skipped: list[dict] = []
            entries, _ = extract_folder(args.data, backbones, cfg.forecast, paths.CACHE, args.episodes, args.split,
                                        skipped, False, args.precision, args.store, progress)
            data = ForecastDataset(entries)
            report_skipped(skipped if world()[0] == 0 else [])
            source = str(args.data)
    try:
        model, history = train_model(cfg, data, out=args.out, resume=args.resume, progress=progress,
                                     device=device, precision=args.precision, workers=args.loader_workers)
    except ValueError as e:
        raise UsageError(e) from None
    if world()[0] == 0:
        pipeline = _bundle_pipeline(args, joints) if bundle else _pipeline(args, backbones, source, joints)
        save_forecaster(model, args.out, extra={"history": history, "pipeline": pipeline})
        (Path(args.out) / "train_state.safetensors").unlink(missing_ok=True)
        print(f"{args.variant}: final train trajectory error {100 * history[-1]['traj_m']:.2f} cm on "
              f"{len(data)} episodes -> {args.out}")
    return 0


def bench(args) -> int:
    from tkjepa.forecast.bench import run_bench, targets
    from tkjepa.forecast.data import ForecastConfig, world_data
    from tkjepa.forecast.store import folder_data

    t0 = time.perf_counter()
    cfg, backbones, progress = ForecastConfig(), backbones_for(args), not args.quiet
    if args.precision != "fp32" or backbones.device.type != "cpu":
        raise UsageError("bench trains its models side by side on CPU threads in fp32; use `tkjepa train "
                         "--device/--precision` for one model on a GPU")
    train_data, _ = world_data(TRAIN_SEED, args.train_episodes, backbones, cfg, paths.CACHE, layout=args.layout,
                               progress=progress)
    skipped: list[dict] = []
    if args.data:
        test, _, files = folder_data(args.data, backbones, cfg, paths.CACHE, progress=progress, skipped=skipped,
                                     strict=args.strict)
        families = [Path(f).parent.name for f in files]  # the task folder
    else:
        from tkjepa.world import WorldConfig
        from tkjepa.world.generate import episode_family, episode_seed

        test, _ = world_data(TEST_SEED, args.test_episodes, backbones, cfg, paths.CACHE, layout=args.layout,
                             progress=progress)
        families = [episode_family(episode_seed(TEST_SEED, i), WorldConfig(layout=args.layout))
                    for i in range(args.test_episodes)]
    t_data = time.perf_counter() - t0
    result = run_bench(train_data, test, seeds=args.seeds, steps=args.steps, ablations=not args.no_ablations,
                       save_dir=args.save_checkpoints, progress=progress, workers=args.workers, families=families)
    result.update(seconds=round(time.perf_counter() - t0, 1), data_seconds=round(t_data, 1), targets=targets(result),
                  test={"data": args.data or f"world seed {TEST_SEED}, {args.layout} layout", "episodes": len(test)},
                  train={"data": f"world seed {TRAIN_SEED}, {args.layout} layout", "episodes": len(train_data)},
                  skipped=skipped)
    print(_write_results(args.out, result))
    report_skipped(skipped)
    print(json.dumps(result["targets"], indent=1))
    print(f"{result['seconds']} s (data {result['data_seconds']} s); results: {args.out}")
    return 0


def evaluate(args) -> int:
    from tkjepa.forecast.store import ForecastDataset, extract_folder
    from tkjepa.forecast.evaluate import checkpoint_folders, evaluate_checkpoints
    from tkjepa.forecast.model import load_forecaster

    t0 = time.perf_counter()
    found = checkpoint_folders(args.checkpoints)
    if not found:
        raise UsageError(f"{args.checkpoints}: no forecaster checkpoints (sub-folders with a config.json)")
    cfg = load_forecaster(found[0]).cfg.forecast  # the geometry, joints and sampler the checkpoints were trained on
    if _bundle(args):
        _check_bundle_features(args, found[0])
        backbones, device = None, _device(args)
    else:
        backbones = backbones_for(args, found[0])
        device = backbones.device
    from tkjepa.forecast.model import pipeline_of

    args.store = args.store or pipeline_of(found[0]).get("store", "fp32")  # the entries training read, if cached
    skipped: list[dict] = []
    entries, episodes = extract_folder(args.data, backbones, cfg, paths.CACHE, args.episodes, args.split, skipped,
                                       args.strict, args.precision, args.store, not args.quiet)
    result = evaluate_checkpoints(ForecastDataset(entries), args.checkpoints, cfg, device=device,
                                  precision=args.precision, families=[Path(e).parent.name for e in episodes])
    result.update(seconds=round(time.perf_counter() - t0, 1), skipped=skipped,
                  test={"data": str(args.data), "split": args.split, "episodes": len(episodes)})
    print(_write_results(args.out, result))
    report_skipped(skipped)
    print(f"{len(episodes)} episodes scored" + (f", {len(skipped)} skipped" if skipped else "")
          + f" in {result['seconds']} s; results: {args.out}")
    return 0


def attribute(args) -> int:
    import torch

    from tkjepa.attribution import attribute as attribute_layers
    from tkjepa.attribution import figure
    from tkjepa.checkpoint import write_json, write_text
    from tkjepa.forecast.store import folder_data
    from tkjepa.forecast.model import load_forecaster

    t0 = time.perf_counter()
    model = load_forecaster(args.checkpoint)
    if model.cfg.model != "thinkjepa":
        raise UsageError(f"{args.checkpoint}: a {model.cfg.model} forecaster reads no thinker layers")
    skipped: list[dict] = []
    if _bundle(args):
        _check_bundle_features(args, args.checkpoint)
    backbones = None if _bundle(args) else backbones_for(args, args.checkpoint)
    data, _, _ = folder_data(args.data, backbones, model.cfg.forecast, paths.CACHE,
                             args.episodes, not args.quiet, skipped, args.strict, args.split, args.precision)
    torch.manual_seed(0)
    result = attribute_layers(model, data)
    result.update(seconds=round(time.perf_counter() - t0, 1), skipped=skipped)
    report_skipped(skipped)
    out = Path(args.out)
    write_json(out, result)
    write_text(out.with_name("attribution.html"), figure(result).to_html(include_plotlyjs=True))
    print(json.dumps({k: result[k] for k in ("layers", "attribution", "ablation_delta_ade", "spearman",
                                             "spearman_used", "convergence_delta", "completeness_max_rel", "episodes",
                                             "seconds")}))
    return 0
