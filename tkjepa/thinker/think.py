"""What the thinker is asked and what it should say: its clips, its training truth, and how it is scored.

The ground truth the tiny thinker is trained on, at the forecast start s (the sampler's, T//2):
"holding <held object or nothing> . next <next subgoal's object>", read from the world's `extras`.
`think_episodes` runs a thinker over episodes (what `tkjepa think` prints) and `accuracy` scores it: the share
of episodes where it names the right next object, per task family, and where its whole text is right.
The planner's thinker is asked at any moment of an episode (`anytime_indices`), not only at the forecast start.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from tkjepa.episode import Episode
from tkjepa.sampling import DualTemporalSampler
from tkjepa.thinker.model import generate
from tkjepa.world.stats import next_subgoal


def thinker_indices(ep: Episode, sampler: DualTemporalSampler):
    """(thinker clip frame indices [n], forecast start s) of `ep` from the dual-temporal sampler."""
    sample = sampler.sample(ep.num_frames)
    return sample.thinker, sample.forecast_start


def clip_indices(s: int, n: int = 8) -> np.ndarray:
    """The thinker's clip when frames 0 … s−1 are observed: n indices spread uniformly over them (repeats when
    s < n) — the sampler's uniform clip, for any moment, not only its forecast start."""
    if s < 1:
        raise ValueError(f"the thinker needs at least one observed frame, got s={s}")
    return np.linspace(0, s - 1, n).round().astype(np.int64)


ANYTIME = ("uniform", "phases")  # how `ThinkerPretrainConfig.anytime` picks its moments


def anytime_indices(ep: Episode, rng: np.random.Generator, n: int = 8, how: str = "uniform"):
    """(clip [n], s) at a random moment of `ep`, s among the even frame counts 2, 4, …, T — the moments at
    which the planner asks (`tkjepa.planning.plan`: one action = 2 frames).

    `uniform`: s uniform. `phases`: first a phase uniformly — before the first subgoal is achieved, between
    it and the second, …, after the last — then s uniform inside it. A demonstration finishes its first
    subgoal within ~15 of 64 frames, so uniform moments rarely show a thinker the phase the planner spends
    most of its time in."""
    T = ep.num_frames
    if how == "uniform":
        s = 2 * int(rng.integers(1, T // 2 + 1))
    elif how == "phases":
        ends = np.asarray(ep.extras["subgoal_end"])
        edges = [1, *ends.tolist(), T]  # phase k: edges[k] < s ≤ edges[k + 1] (next_subgoal(ep, s) == k)
        evens = np.arange(2, T + 1, 2)
        phases = [evens[(evens > lo) & (evens <= hi)] for lo, hi in zip(edges[:-1], edges[1:])]
        phases = [p for p in phases if len(p)]
        s = int(rng.choice(phases[int(rng.integers(len(phases)))]))
    else:
        raise ValueError(f"how must be one of {ANYTIME}, got {how!r}")
    return clip_indices(s, n), s


def next_target(ep: Episode, s: int) -> str:
    """Name of the object the next pending subgoal acts on at forecast start s."""
    names = list(ep.extras["object_names"])
    return str(names[int(ep.extras["subgoal_objects"][next_subgoal(ep, s)])])


def thinking_target(ep: Episode, s: int) -> str:
    """The text the thinker learns to say at forecast start s: "holding red cube . next blue bowl"."""
    held = int(ep.extras["held"][s - 1])
    holding = str(list(ep.extras["object_names"])[held]) if held >= 0 else "nothing"
    return f"holding {holding} . next {next_target(ep, s)}"


def predicted_target(text: str) -> str:
    """What the text names after "next" ("" if it never says next)."""
    words = text.split()
    if "next" not in words:
        return ""
    return " ".join(words[words.index("next") + 1:]).strip(" .")


def think_episodes(model, tokenizer, episodes: list[Episode], moments: list, batch_size: int = 32) -> list[dict]:
    """Generate thinking text for each episode at its moment; score it where the world's ground truth is known.

    `moments`: one (clip indices, s) per episode (e.g. `thinker_indices`). Rows with ground truth say whether
    the next object is right (`correct`) and whether the whole text is (`exact`: what is held *and* next)."""
    if len(moments) != len(episodes):
        raise ValueError(f"{len(moments)} moments for {len(episodes)} episodes")
    rows = []
    for i in range(0, len(episodes), batch_size):
        chunk, idx = episodes[i:i + batch_size], moments[i:i + batch_size]
        _, _, texts = generate(model, tokenizer, chunk, [a for a, _ in idx])
        for ep, (_, s), text in zip(chunk, idx, texts):
            row = {"path": ep.path, "task": ep.task, "text": text, "next_target": None, "correct": None,
                   "exact": None, "s": int(s)}
            if ep.extras.get("subgoal_objects") is not None:
                row["next_target"] = next_target(ep, s)
                row["correct"] = predicted_target(text) == row["next_target"]
                row["exact"] = text.split() == thinking_target(ep, s).split()
            rows.append(row)
    return rows


def accuracy(rows: list[dict]) -> dict:
    """Overall and per-family next-target accuracy, and the share of whole texts right, over the rows that
    have ground truth (`n` of them)."""
    scored = [r for r in rows if r["correct"] is not None]
    fam = defaultdict(list)
    for r in scored:
        fam[r["task"]].append(r["correct"])
    return {"overall": sum(r["correct"] for r in scored) / max(1, len(scored)), "n": len(scored),
            "exact": sum(bool(r.get("exact")) for r in scored) / max(1, len(scored)),
            "per_family": {k: sum(v) / len(v) for k, v in sorted(fam.items())}}
