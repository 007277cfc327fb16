"""Thinker pretraining: teach the tiny Qwen3-VL to say what the hand holds and what comes next.

From the uniformly sampled observed frames + the metadata prompt, the thinker learns (teacher forcing,
loss on the answer tokens only) the world's ground truth at the forecast start,
"holding <object|nothing> . next <target>" (`tkjepa.thinker.think`; `--ground-cm` adds where it is). Most of
it can be read off the prompt; `marked_pick_place`
("the marked bowl") can only be solved by looking at the early frames, where the bowl is ringed.

`--anytime uniform|phases` (the planner's thinker): each example at a random moment of its episode instead of
the forecast start, with that moment's clip and truth (`think.anytime_indices`); `phases` draws the phase
(before the first subgoal, …, after the last) uniformly and writes the clip's timestamps from another random
moment, because in demonstrations the clock alone tells the phase and in a planned episode it does not.

Seeds: training episodes are `generate_episode(TRAIN_SEED0 + i)`, held-out ones `EVAL_SEED0 + i`
(disjoint ranges; the shipped `data_samples/episodes` use `episode_seed(2026, i)`, also disjoint).
Command (the shipped checkpoint): `tkjepa pretrain-thinker --preset tiny --out data_samples/thinker_tiny`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from tkjepa.thinker.inputs import VideoConfig, collate, encode
from tkjepa.thinker.model import ThinkerConfig, build_thinker
from tkjepa.thinker.think import (ANYTIME, accuracy, anytime_indices, think_episodes, thinker_indices,
                                  thinking_target)
from tkjepa.world.generate import WorldConfig, generate_episode

TRAIN_SEED0 = 100_000  # training episodes: seeds TRAIN_SEED0 … TRAIN_SEED0 + episodes - 1
EVAL_SEED0 = 900_000   # held-out episodes: seeds EVAL_SEED0 … EVAL_SEED0 + eval_episodes - 1
# marked_pick_place is drawn twice as often: the only family that must be learnt from pixels
TRAIN_FAMILIES = ("pick_place", "marked_pick_place", "marked_pick_place", "touch_sequence", "push")


@dataclass
class TrainConfig:
    """Pretraining schedule."""

    episodes: int = 1200        # training episodes generated in memory
    eval_episodes: int = 200    # held-out episodes for the reported accuracy (default mix of families)
    steps: int = 1200           # optimiser steps
    batch_size: int = 16        # episodes per step
    lr: float = 3e-3            # peak AdamW learning rate (cosine decay, linear warm-up)
    warmup: int = 100           # warm-up steps
    weight_decay: float = 0.01  # AdamW weight decay
    seed: int = 0               # model init + batch order
    workers: int = 2            # processes generating episodes (results do not depend on it)
    ground_cm: int = 0          # > 0: also say where the next target is, on this grid (cm); 0 = the shipped
                                # plain target (`tkjepa.thinker.think.thinking_target`)
    anytime: str = ""           # "uniform" | "phases": each example at a random moment of its episode
                                # (`think.anytime_indices`), not at the sampler's forecast start — the planner's
                                # thinker, asked all along; "phases" also writes the clip's timestamps from a
                                # random moment, so the phase must be read off the frames, not the clock
    fumbles: int = 0            # > 0: training episodes with this many slips each (`WorldConfig.fumbles`): the
                                # hand dips and closes on nothing, as a planner's does, and the truth is the env's

    @classmethod
    def tiny(cls) -> TrainConfig:
        return cls()

    @classmethod
    def smoke(cls) -> TrainConfig:
        """Seconds, for tests: the loop runs, nothing is learnt."""
        return cls(episodes=8, eval_episodes=4, steps=3, batch_size=4, workers=1)


_TOKENIZER = None  # set before forking, so workers encode with the same tokenizer


def _example(job) -> dict:
    """One training example, kept small: the encoded clip + prompt + target (no full episode)."""
    seed, family, ground_cm, video, anytime, fumbles = job
    ep = generate_episode(seed, WorldConfig(family=family, fumbles=fumbles))
    rng = np.random.default_rng([seed, 1])
    idx, s = anytime_indices(ep, rng, how=anytime) if anytime else thinker_indices(ep)
    stamps = anytime_indices(ep, rng)[0] if anytime == "phases" else None  # a clock that says nothing
    return encode(_TOKENIZER, ep, idx, video, thinking_target(ep, s, ground_cm), stamps)


def make_examples(cfg: TrainConfig, tokenizer, video: VideoConfig | None = None) -> list[dict]:
    from tqdm.auto import tqdm  # noqa: PLC0415

    global _TOKENIZER
    _TOKENIZER = tokenizer
    video = video or VideoConfig.tiny()
    jobs = [(TRAIN_SEED0 + i, TRAIN_FAMILIES[i % len(TRAIN_FAMILIES)], cfg.ground_cm, video, cfg.anytime,
             cfg.fumbles) for i in range(cfg.episodes)]
    if cfg.workers > 1:
        import multiprocessing as mp  # noqa: PLC0415

        with mp.get_context("fork").Pool(cfg.workers) as pool:
            return list(tqdm(pool.imap(_example, jobs, chunksize=8), total=len(jobs), desc="episodes"))
    return [_example(j) for j in tqdm(jobs, desc="episodes")]


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))


def pretrain(cfg: TrainConfig, model_cfg: ThinkerConfig | None = None, log_every: int = 100):
    """Train a tiny thinker from scratch; returns (model, tokenizer, history of losses)."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    model_cfg = model_cfg or ThinkerConfig.tiny()
    model, tokenizer = build_thinker(model_cfg, seed=cfg.seed)
    examples = make_examples(cfg, tokenizer, model_cfg.video)
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    history = []
    bar = tqdm(range(cfg.steps), desc="pretrain")
    for step in bar:
        pick = torch.randint(len(examples), (cfg.batch_size,), generator=g).tolist()
        batch = collate(tokenizer, [examples[i] for i in pick])
        # forward: next-token loss on the answer tokens only (labels are -100 elsewhere)
        loss = model(**batch).loss
        # backward & step
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append(loss.item())
        if step % log_every == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model, tokenizer, history


def evaluate(model, tokenizer, n: int, anytime: str = "") -> dict:
    """Next-target accuracy on held-out episodes (seeds EVAL_SEED0 …, the default family mix), at the sampler's
    forecast start, or with `anytime` ("uniform" | "phases") at one random moment per episode
    (`think.anytime_indices`; the true timestamps)."""
    episodes = [generate_episode(EVAL_SEED0 + i) for i in range(n)]
    moments = [anytime_indices(ep, np.random.default_rng([EVAL_SEED0 + i, 1]), how=anytime)
               for i, ep in enumerate(episodes)] if anytime else None
    return accuracy(think_episodes(model, tokenizer, episodes, moments=moments))


PRESETS = {"tiny": TrainConfig.tiny, "smoke": TrainConfig.smoke}


def add_arguments(p) -> None:
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="training schedule")
    p.add_argument("--out", required=True, help="folder for the checkpoint (safetensors + config + tokenizer)")
    p.add_argument("--steps", type=int, default=None, help="override the preset's optimiser steps")
    p.add_argument("--episodes", type=int, default=None, help="override the preset's training episodes")
    p.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    p.add_argument("--vision-patch", type=int, default=None,
                   help="experiment: the vision tower's patch side in pixels (default 16, Qwen3-VL's; 8 gives 4× "
                        "the visual tokens)")
    p.add_argument("--ground-cm", type=int, default=None,
                   help="experiment: also say where the next target is, on this grid in cm (e.g. 2); default: not")
    p.add_argument("--anytime", default=None, choices=ANYTIME,
                   help="learn to speak at every moment of an episode (the planner's thinker), not only at the "
                        "forecast start: moments uniform in time, or phase-balanced with uninformative timestamps")
    p.add_argument("--proprio", action="store_true",
                   help="the prompt also carries the hand's proprioception over the clip (wrist height, grip "
                        "aperture and contacts felt per clip frame, `tkjepa.thinker.inputs.proprio_text`): a "
                        "planner's thinker, which must tell the phase of a task at any moment")
    p.add_argument("--fumbles", type=int, default=None,
                   help="training episodes slip this many times each (the hand dips and closes on nothing, as a "
                        "planner's does; `WorldConfig.fumbles`), labelled with the env's true progress: a "
                        "planner's thinker, which must not take every dip-and-close for a grasp")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: one thread makes the checkpoint bit-for-bit reproducible)")


def run(args) -> int:
    torch.set_num_threads(args.threads)
    cfg = PRESETS[args.preset]()
    for name in ("steps", "episodes", "seed", "ground_cm", "fumbles"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    cfg.anytime = args.anytime or ""
    t0 = time.perf_counter()
    model_cfg = ThinkerConfig.tiny()
    if args.vision_patch is not None:
        model_cfg.video = replace(model_cfg.video, patch=args.vision_patch)
    if args.proprio:
        model_cfg.video = replace(model_cfg.video, proprio=True)
    model, tokenizer, history = pretrain(cfg, model_cfg)
    train_s = time.perf_counter() - t0
    acc = evaluate(model, tokenizer, cfg.eval_episodes)
    acc_any = {how: evaluate(model, tokenizer, cfg.eval_episodes, anytime=how) for how in ANYTIME}
    out = Path(args.out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    metrics = {
        "command": f"tkjepa pretrain-thinker --preset {args.preset} --out {args.out}"
                   + "".join(f" --{k.replace('_', '-')} {getattr(args, k)}" for k in ("steps", "episodes", "seed",
                             "vision_patch", "ground_cm", "fumbles") if getattr(args, k) is not None)
                   + (f" --anytime {cfg.anytime}" if cfg.anytime else "") + (" --proprio" if args.proprio else "")
                   + (f" --threads {args.threads}" if args.threads != 1 else ""),
        "accuracy": acc["overall"], "per_family": acc["per_family"], "eval_episodes": acc["n"],
        "exact": acc["exact"],
        "anytime": {how: {"accuracy": a["overall"], "exact": a["exact"], "per_family": a["per_family"]}
                    for how, a in acc_any.items()},
        **({k: acc[k] for k in ("located", "location_error_m", "location_median_m", "location_within_4cm",
                                "location_chance_m")}
           if cfg.ground_cm else {}),
        "eval_seeds": f"{EVAL_SEED0}..{EVAL_SEED0 + cfg.eval_episodes - 1}",
        "train_seeds": f"{TRAIN_SEED0}..{TRAIN_SEED0 + cfg.episodes - 1}",
        "final_loss": sum(history[-50:]) / max(1, len(history[-50:])), "train_seconds": round(train_s, 1),
        "total_seconds": round(time.perf_counter() - t0, 1), "threads": torch.get_num_threads(),
        "train_config": asdict(cfg), "model_config": asdict(model_cfg),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    fams = ", ".join(f"{k} {v:.0%}" for k, v in acc["per_family"].items())
    where = (f"; spoken location off by {100 * acc['location_error_m']:.1f} cm on average (always saying the "
             f"average place: {100 * acc['location_chance_m']:.1f} cm), within 4 cm {acc['location_within_4cm']:.0%}"
             if acc["located"] else "")
    print(f"held-out next-target accuracy {acc['overall']:.1%} on {acc['n']} episodes ({fams}){where}; "
          + "".join(f"at a random moment ({how}): {a['overall']:.1%}, whole text right {a['exact']:.1%}; "
                    for how, a in acc_any.items())
          + f"wrote {out} in {metrics['total_seconds']} s")
    return 0
