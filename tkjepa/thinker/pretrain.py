"""Thinker pretraining: teach the tiny Qwen3-VL to say what the hand holds and what comes next.

From the uniformly sampled observed frames + the metadata prompt, the thinker learns (teacher forcing,
loss on the answer tokens only) the world's ground truth at the forecast start,
"holding <object|nothing> . next <target>" (`tkjepa.thinker.think.thinking_target`). Most of it can be read off
the prompt; `marked_pick_place` ("the marked bowl") can only be solved by looking at the early frames, where the
bowl is ringed.

Presets (`ThinkerPretrainConfig.<name>()`, `tkjepa pretrain-thinker --preset`):
- `tiny`: the forecasters' thinker (`data_samples/thinker_tiny`), asked at the sampler's forecast start.
- `planner`: the planner's thinker (`data_samples/planner/thinker`), asked at any moment of an episode
  (`think.anytime_indices`, phases drawn uniformly, the clip's timestamps from another random moment: in
  demonstrations the clock alone tells the phase, in a planned episode it does not); its prompt carries what the
  hand felt (`VideoConfig.proprio`), and its demonstrations slip three times each (`WorldConfig.fumbles`), as a
  planner's hand does, so a dip-and-close is not taken for a grasp.
- `smoke`: seconds, for tests.

Seeds: training episodes are `generate_episode(TRAIN_SEED0 + i)`, held-out ones `EVAL_SEED0 + i`
(disjoint ranges; the shipped `data_samples/episodes` use `episode_seed(2026, i)`, also disjoint).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from tkjepa.optim import lr_at, set_lr
from tkjepa.sampling import DualTemporalSampler, SamplerConfig
from tkjepa.thinker.inputs import collate, encode
from tkjepa.thinker.model import ThinkerConfig, build_thinker
from tkjepa.thinker.think import accuracy, anytime_indices, think_episodes, thinker_indices, thinking_target
from tkjepa.world.generate import WorldConfig, generate_episode

TRAIN_SEED0 = 100_000  # training episodes: seeds TRAIN_SEED0 … TRAIN_SEED0 + episodes - 1
EVAL_SEED0 = 900_000   # held-out episodes: seeds EVAL_SEED0 … EVAL_SEED0 + eval_episodes - 1
# marked_pick_place is drawn twice as often: the only family that must be learnt from pixels
TRAIN_FAMILIES = ("pick_place", "marked_pick_place", "marked_pick_place", "touch_sequence", "push")


@dataclass
class ThinkerPretrainConfig:
    """What the thinker is and how it is pretrained."""

    model: ThinkerConfig = field(default_factory=ThinkerConfig.tiny)  # the tiny Qwen3-VL and the video it reads
    sampler: SamplerConfig = field(default_factory=SamplerConfig.tiny)  # the thinker's clip at the forecast start
    episodes: int = 1200        # training episodes generated in memory
    eval_episodes: int = 200    # held-out episodes for the reported accuracy (default mix of families)
    steps: int = 1200           # optimiser steps
    batch_size: int = 16        # episodes per step
    lr: float = 3e-3            # peak AdamW learning rate (cosine decay to 0, linear warm-up)
    warmup: int = 100           # warm-up steps
    weight_decay: float = 0.01  # AdamW weight decay
    seed: int = 0               # model init + batch order
    workers: int = 2            # processes generating episodes (results do not depend on it)
    anytime: str = ""           # "" (at the sampler's forecast start) | "uniform" | "phases": each example at a
                                # random moment of its episode (`think.anytime_indices`); "phases" also writes
                                # the clip's timestamps from another random moment
    fumbles: int = 0            # > 0: training episodes with this many slips each (`WorldConfig.fumbles`): the
                                # hand dips and closes on nothing, as a planner's does, and the truth is the env's

    @classmethod
    def tiny(cls) -> ThinkerPretrainConfig:
        return cls()

    @classmethod
    def planner(cls) -> ThinkerPretrainConfig:
        """The planner's own thinker: asked at any moment, feels its hand, trained on demonstrations that slip."""
        model = ThinkerConfig.tiny()
        model.video.proprio = True
        return cls(model=model, anytime="phases", fumbles=3, steps=4800)

    @classmethod
    def smoke(cls) -> ThinkerPretrainConfig:
        """Seconds, for tests: the loop runs, nothing is learnt."""
        return cls(episodes=8, eval_episodes=4, steps=3, batch_size=4, workers=1)


PRESETS = {"tiny": ThinkerPretrainConfig.tiny, "planner": ThinkerPretrainConfig.planner,
           "smoke": ThinkerPretrainConfig.smoke}


_TOKENIZER = None  # the tokenizer `_example` encodes with (in a worker: set by `_set_tokenizer`)


def _set_tokenizer(tokenizer) -> None:
    global _TOKENIZER
    _TOKENIZER = tokenizer


def _example(job) -> dict:
    """One training example, kept small: the encoded clip + prompt + target (no full episode)."""
    seed, family, cfg = job
    ep = generate_episode(seed, WorldConfig(family=family, fumbles=cfg.fumbles))
    rng = np.random.default_rng([seed, 1])
    if cfg.anytime:
        idx, s = anytime_indices(ep, rng, how=cfg.anytime)
    else:
        idx, s = thinker_indices(ep, DualTemporalSampler(cfg.sampler))
    stamps = anytime_indices(ep, rng)[0] if cfg.anytime == "phases" else None  # a clock that says nothing
    return encode(_TOKENIZER, ep, idx, cfg.model.video, thinking_target(ep, s), stamps)


def make_examples(cfg: ThinkerPretrainConfig, tokenizer) -> list[dict]:
    """The encoded training examples of `cfg.episodes` world episodes (families in `TRAIN_FAMILIES`' rotation)."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    _set_tokenizer(tokenizer)
    jobs = [(TRAIN_SEED0 + i, TRAIN_FAMILIES[i % len(TRAIN_FAMILIES)], cfg) for i in range(cfg.episodes)]
    if cfg.workers > 1:
        from tkjepa.parallel import process_pool  # noqa: PLC0415

        with process_pool(cfg.workers, initializer=_set_tokenizer, initargs=(tokenizer,)) as pool:
            return list(tqdm(pool.imap(_example, jobs, chunksize=8), total=len(jobs), desc="episodes"))
    return [_example(j) for j in tqdm(jobs, desc="episodes")]


def pretrain(cfg: ThinkerPretrainConfig, log_every: int = 100, progress: bool = True):
    """Train a tiny thinker from scratch; returns (model, tokenizer, history of losses)."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    model, tokenizer = build_thinker(cfg.model, seed=cfg.seed)
    examples = make_examples(cfg, tokenizer)
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    history = []
    bar = tqdm(range(cfg.steps), desc="pretrain", disable=not progress)
    for step in bar:
        pick = torch.randint(len(examples), (cfg.batch_size,), generator=g).tolist()
        batch = collate(tokenizer, [examples[i] for i in pick])

        # forward: next-token loss on the answer tokens only (labels are -100 elsewhere)
        loss = model(**batch).loss

        # backward & step
        set_lr(opt, lr_at(step, cfg.steps, cfg.lr, warmup=cfg.warmup))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append(loss.item())
        if step % log_every == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model, tokenizer, history


def heldout_accuracy(model, tokenizer, n: int, anytime: str = "", sampler: SamplerConfig | None = None) -> dict:
    """Next-target accuracy on held-out episodes (seeds EVAL_SEED0 …, the default family mix), at the sampler's
    forecast start (`sampler`, default the tiny one), or with `anytime` ("uniform" | "phases") at one random
    moment per episode (`think.anytime_indices`; the true timestamps)."""
    episodes = [generate_episode(EVAL_SEED0 + i) for i in range(n)]
    if anytime:
        moments = [anytime_indices(ep, np.random.default_rng([EVAL_SEED0 + i, 1]), how=anytime)
                   for i, ep in enumerate(episodes)]
    else:
        sample = DualTemporalSampler(sampler or SamplerConfig.tiny())
        moments = [thinker_indices(ep, sample) for ep in episodes]
    return accuracy(think_episodes(model, tokenizer, episodes, moments))
