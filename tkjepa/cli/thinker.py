"""`tkjepa pretrain-thinker` (the tiny Qwen3-VL on tabletop episodes) and `tkjepa think` (what a thinker
says about each episode, scored where the world's truth is known)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from tkjepa import paths
from tkjepa.cli import add_common, add_set, apply_overrides, command_line, set_threads


def add_arguments(command: str, p) -> None:
    if command == "pretrain-thinker":
        from tkjepa.thinker.pretrain import PRESETS

        p.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                       help="tiny: the forecasters' thinker; planner: the planner's (asked at any moment, feels "
                            "its hand, trained on demonstrations that slip); smoke: seconds, for tests")
        p.add_argument("--out", required=True, help="folder for the checkpoint (safetensors + config + tokenizer)")
        add_set(p, "ThinkerPretrainConfig (e.g. steps=2400, episodes=600, seed=1)")
        add_common(p, threads=1)  # one thread: the checkpoint is bit-for-bit reproducible on one CPU
        return
    p.add_argument("path", help="an EgoDex-format .hdf5 episode or a folder of them")
    p.add_argument("--thinker", default=str(paths.THINKER), help="thinker folder or hub name")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--batch-size", type=int, default=32, help="episodes per generate call")
    p.add_argument("--strict", action="store_true", help="stop at the first episode that cannot be used")
    add_common(p, progress=False)


def run(command: str, args) -> int:
    set_threads(args)
    return pretrain(args) if command == "pretrain-thinker" else think(args)


def pretrain(args) -> int:
    import torch

    from tkjepa.checkpoint import atomic_folder, write_json
    from tkjepa.thinker.pretrain import EVAL_SEED0, PRESETS, TRAIN_SEED0, heldout_accuracy, pretrain
    from tkjepa.thinker.think import ANYTIME

    cfg = apply_overrides(PRESETS[args.preset](), args.set)
    t0 = time.perf_counter()
    model, tokenizer, history = pretrain(cfg)
    train_s = time.perf_counter() - t0
    acc = heldout_accuracy(model, tokenizer, cfg.eval_episodes, sampler=cfg.sampler)
    acc_any = {how: heldout_accuracy(model, tokenizer, cfg.eval_episodes, anytime=how) for how in ANYTIME}
    out = Path(args.out)
    metrics = {
        "command": command_line(),
        "accuracy": acc["overall"], "per_family": acc["per_family"], "eval_episodes": acc["n"],
        "exact": acc["exact"],
        "anytime": {how: {"accuracy": a["overall"], "exact": a["exact"], "per_family": a["per_family"]}
                    for how, a in acc_any.items()},
        "eval_seeds": f"{EVAL_SEED0}..{EVAL_SEED0 + cfg.eval_episodes - 1}",
        "train_seeds": f"{TRAIN_SEED0}..{TRAIN_SEED0 + cfg.episodes - 1}",
        "final_loss": sum(history[-50:]) / max(1, len(history[-50:])), "train_seconds": round(train_s, 1),
        "total_seconds": round(time.perf_counter() - t0, 1), "threads": torch.get_num_threads(),
        "config": asdict(cfg),
    }
    with atomic_folder(out) as tmp:  # the checkpoint appears whole, or not at all
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "metrics.json", metrics)
    fams = ", ".join(f"{k} {v:.0%}" for k, v in acc["per_family"].items())
    print(f"held-out next-target accuracy {acc['overall']:.1%} on {acc['n']} episodes ({fams}); "
          + "".join(f"at a random moment ({how}): {a['overall']:.1%}, whole text right {a['exact']:.1%}; "
                    for how, a in acc_any.items())
          + f"wrote {out} in {metrics['total_seconds']} s")
    return 0


def think(args) -> int:
    import torch

    from tkjepa.egodex import EgoDexFormatError, load_folder
    from tkjepa.sampling import DualTemporalSampler, SamplerConfig
    from tkjepa.thinker.model import load_thinker
    from tkjepa.thinker.think import accuracy, think_episodes, thinker_indices

    torch.manual_seed(0)
    t0 = time.perf_counter()
    path = Path(args.path)
    model, tokenizer = load_thinker(args.thinker)
    sampler = DualTemporalSampler(SamplerConfig.tiny())

    def check(ep):  # long enough for the thinker's clip at the sampler's forecast start
        try:
            sampler.sample(ep.num_frames)
        except ValueError as e:
            raise EgoDexFormatError(f"{ep.path}: {e}") from None

    skipped: list[dict] = []
    episodes = load_folder(path, check=check, skipped=skipped, strict=args.strict)
    rows = think_episodes(model, tokenizer, episodes, [thinker_indices(ep, sampler) for ep in episodes],
                          args.batch_size)
    acc = accuracy(rows)
    if args.json:
        print(json.dumps({"accuracy": acc["overall"] if acc["n"] else None, "per_family": acc["per_family"],
                          "exact": acc["exact"] if acc["n"] else None,
                          "episodes": [{k: r[k] for k in ("path", "text", "next_target", "correct")} for r in rows],
                          "skipped": skipped}, indent=1))
        return 0
    for row in skipped:
        print(f"skipped {row['path']}: {row['error']}")
    for r in rows:
        mark = "" if r["correct"] is None else ("  ok" if r["correct"] else f"  WRONG (true: {r['next_target']})")
        print(f"{r['path']}: {r['text']}{mark}")
    if path.is_dir() and acc["n"]:
        fams = ", ".join(f"{k} {v:.0%}" for k, v in acc["per_family"].items())
        print(f"next-target accuracy {acc['overall']:.1%} on {acc['n']} episodes ({fams})"
              + (f", {len(skipped)} skipped" if skipped else "") + " "
              f"in {time.perf_counter() - t0:.1f} s")
    return 0
