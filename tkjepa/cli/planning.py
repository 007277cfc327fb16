"""`tkjepa train-world-model`, `tkjepa train-subgoal-head` and `tkjepa plan`: the planner, part by part.

A planner folder holds world_model.{safetensors,json} + world_model_metrics.json, subgoal_head.{safetensors,
json} + subgoal_head_metrics.json, and `thinker/`, the thinker the head's words come from at planning time.
The metrics files record the digests of the encoder (and thinker) each part was trained with, so `tkjepa
plan` warns when it is given others. No command here deletes anything in the folder.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from tkjepa import paths
from tkjepa.cli import UsageError, add_common, add_set, apply_overrides, command_line, set_threads

ROLLOUT_STEPS = 8  # tubelets of the recursive rollout whose per-step error the world model's metrics record
HELD_OUT_WORLD_SEED = 2000  # planning is scored on this world seed's episodes; the parts train on 1000, 1001


def add_arguments(command: str, p) -> None:
    p.add_argument("--encoder", default=str(paths.ENCODER),
                   help="the encoder whose latents the planner works in (default: the tiny one)")
    if command == "train-world-model":
        p.add_argument("--out", required=True, help="planner folder (e.g. data_samples/planner)")
        add_set(p, "WorldModelConfig (e.g. steps=1000, episodes=160, depth=6, seed=1)")
    elif command == "train-subgoal-head":
        p.add_argument("--planner", required=True, help="planner folder the head is written to")
        p.add_argument("--thinker", default=str(paths.PLANNER_THINKER),
                       help="the thinker whose words the head will read (its tokenizer names the objects); "
                            "copied to PLANNER/thinker when that folder has none")
        add_set(p, "SubgoalConfig (e.g. steps=1500, episodes=500, seed=1)")
    else:  # plan
        from tkjepa.planning.goals import MODES

        p.add_argument("--planner", default=str(paths.PLANNER), help="planner folder (world model + subgoal head)")
        p.add_argument("--thinker", default=None, help="thinker folder (default: PLANNER/thinker)")
        p.add_argument("--mode", default="thinker", choices=MODES,
                       help="goal: the final frame (flat), the thinker's subgoals, the same with the true words "
                            "(told, a diagnostic), the true next subgoal latent (oracle, a diagnostic)")
        p.add_argument("--episodes", type=int, default=30, help="held-out episodes (families alternate)")
        p.add_argument("--seed", type=int, default=0, help="CEM sampling seed")
        p.add_argument("--world-seed", type=int, default=HELD_OUT_WORLD_SEED,
                       help="held-out episode draw (the parts train on 1000, 1001)")
        p.add_argument("--out", default=None, help="write the result JSON here")
        add_set(p, "PlanConfig (e.g. max_steps=48, ask_every=1, cem.samples=128, cem.iters=5, cem.horizon=1)")
    add_common(p, threads=1)  # one thread: training is bit-for-bit reproducible, planning does not contend


def run(command: str, args) -> int:
    set_threads(args)
    return {"train-world-model": train_world_model, "train-subgoal-head": train_subgoal_head,
            "plan": plan}[command](args)


def _machine() -> str:
    import torch

    return f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"


def train_world_model(args) -> int:
    from tkjepa.backbones import load_backbones
    from tkjepa.checkpoint import write_json
    from tkjepa.planning import world_model as wm
    from tkjepa.planning.plan import WORLD_MODEL_METRICS

    t0 = time.perf_counter()
    cfg = apply_overrides(wm.WorldModelConfig(), args.set)
    backbones = load_backbones(args.encoder)
    data = wm.play_data(cfg.seed_data, cfg.episodes, backbones.encoder, progress=not args.quiet)
    val = wm.play_data(cfg.seed_data + 1, 48, backbones.encoder, progress=not args.quiet)
    t_data = time.perf_counter() - t0
    model, history = wm.train_world_model(cfg, data, val, progress=not args.quiet)
    wm.save_world_model(model, cfg, args.out)
    metrics = {"command": command_line(), "wall_time_s": round(time.perf_counter() - t0, 1),
               "time_s": {"data": round(t_data, 1), "train": round(time.perf_counter() - t0 - t_data, 1)},
               "machine": _machine(), "config": asdict(cfg), "final": history[-1], "history": history,
               "rollout_l1": wm.rollout_errors(model, val, steps=ROLLOUT_STEPS),
               "params": sum(p.numel() for p in model.parameters()),
               "encoder": backbones.encoder_source, "encoder_digest": backbones.digest("encoder")}
    write_json(Path(args.out) / WORLD_MODEL_METRICS, metrics)
    f, r = history[-1], metrics["rollout_l1"]
    print(f"world model: val L1 {f['val_l1']:.3f} (shuffled actions {f['val_l1_shuffled_actions']:.3f}, "
          f"copy-last {f['val_l1_copy_last']:.3f}); {metrics['wall_time_s']} s -> {args.out}")
    print("rollout L1 per tubelet (true / shuffled actions / copy): "
          + ", ".join(f"{a:.3f}/{b:.3f}/{c:.3f}" for a, b, c in zip(r["true"], r["shuffled"], r["copy"])))
    return 0


def train_subgoal_head(args) -> int:
    import warnings

    from tkjepa.backbones import load_backbones
    from tkjepa.checkpoint import weights_digest, write_json
    from tkjepa.planning import subgoal
    from tkjepa.planning.plan import SUBGOAL_HEAD_METRICS
    from tkjepa.thinker.model import load_thinker

    t0 = time.perf_counter()
    folder, thinker = Path(args.planner), Path(args.thinker)
    if not (thinker / "model.safetensors").exists():
        raise UsageError(f"{thinker}: no thinker (model.safetensors)")
    cfg = apply_overrides(subgoal.SubgoalConfig(), args.set)
    backbones = load_backbones(args.encoder, thinker)
    head, metrics = subgoal.train_from_scratch(cfg, backbones.encoder, backbones.tokenizer, progress=not args.quiet)
    subgoal.save_head(head, folder)
    own = folder / "thinker"
    if not (own / "model.safetensors").exists():
        shutil.copytree(thinker, own, dirs_exist_ok=True)  # the folder carries the thinker its head reads
    elif own.resolve() != thinker.resolve() and weights_digest(load_thinker(own)[0]) != backbones.digest("thinker"):
        warnings.warn(f"{own} holds another thinker than {thinker}, which this head was trained for; "
                      f"`tkjepa plan` reads {own} unless given --thinker", stacklevel=1)
    metrics = {"command": command_line(), "wall_time_s": round(time.perf_counter() - t0, 1), "machine": _machine(),
               **metrics, "encoder": backbones.encoder_source, "encoder_digest": backbones.digest("encoder"),
               "thinker": backbones.thinker_source, "thinker_digest": backbones.digest("thinker")}
    write_json(folder / SUBGOAL_HEAD_METRICS, metrics)
    print(f"subgoal head: val L1 {metrics['val_l1']:.3f} (copy-current {metrics['val_l1_copy_current']:.3f}), its "
          f"place {metrics['val_place_xy_cm']:.1f} cm from the boundary's wrist (median); "
          f"{metrics['wall_time_s']} s -> {folder}")
    return 0


def plan(args) -> int:
    from tkjepa.checkpoint import write_json
    from tkjepa.planning.plan import PlanConfig, load_planner, plan_episodes

    if args.episodes < 1:
        raise UsageError("--episodes must be ≥ 1")
    if args.world_seed in (1000, 1001):
        raise UsageError(f"--world-seed {args.world_seed} is a training draw; use a held-out one "
                         f"({HELD_OUT_WORLD_SEED})")
    cfg = apply_overrides(PlanConfig(mode=args.mode, seed=args.seed), args.set)
    t0 = time.perf_counter()
    planner = load_planner(args.planner, args.encoder, args.thinker, need_head=cfg.mode in ("thinker", "told"))
    if cfg.cem.horizon > planner.world_model.config.future_tubelets:
        raise UsageError(f"cem.horizon {cfg.cem.horizon} exceeds the world model's "
                         f"{planner.world_model.config.future_tubelets} tubelets")
    result = plan_episodes(cfg, args.episodes, args.world_seed, planner, progress=not args.quiet)
    result.update(seconds=round(time.perf_counter() - t0, 1), command=command_line())
    if args.out:
        write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("success_rate", "episodes", "mean_steps", "seconds_per_action",
                                             "per_family", "first_subgoal_rate", "median_closest_to_first_cm",
                                             "seconds")}))
    return 0
