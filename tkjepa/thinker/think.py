"""`tkjepa think`: run a thinker on an episode or a folder and score its "next target".

The ground truth the tiny thinker is trained on, at the forecast start s (the sampler's, T//2):
"holding <held object or nothing> . next <next subgoal's object>", read from the world's `extras`.

Grounded variant (`tkjepa pretrain-thinker --ground-cm 2`, an experiment; the shipped thinker is not grounded):
"... next blue bowl < 2.4 1.6 >" also says *where* the named object stands at the last observed frame, as
Qwen3-VL writes a box when asked: decimetres from the table's left and front edges on a `ground_cm` grid,
spelled with the vocabulary's own numbers and brackets (so the vocabulary, and the plain preset's weights, are
unchanged). A forecaster told only *which* object must still find it in its latent tokens; told *where*, it
can head for it (BENCHMARKS.md, issue 5, measures both and how well the tiny thinker learns to say it).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from tkjepa.episode import Episode
from tkjepa.sampling import DualTemporalSampler, SamplerConfig
from tkjepa.world.scene import TABLE_X, TABLE_Y
from tkjepa.world.stats import next_subgoal

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "data_samples" / "thinker_tiny"


def thinker_indices(ep: Episode, sampler: DualTemporalSampler | None = None):
    """(thinker clip frame indices [n], forecast start s) from the dual-temporal sampler."""
    sample = (sampler or DualTemporalSampler(SamplerConfig.tiny())).sample(ep.num_frames)
    return sample.thinker, sample.forecast_start


def clip_indices(s: int, n: int = 8) -> np.ndarray:
    """The thinker's clip when frames 0 … s−1 are observed: n indices spread uniformly over them (repeats when
    s < n) — the sampler's uniform clip, for any moment, not only its forecast start."""
    if s < 1:
        raise ValueError(f"the thinker needs at least one observed frame, got s={s}")
    return np.linspace(0, s - 1, n).round().astype(np.int64)


ANYTIME = ("uniform", "phases")  # how `tkjepa pretrain-thinker --anytime` picks its moments


def anytime_indices(ep: Episode, rng: np.random.Generator, n: int = 8, how: str = "uniform"):
    """(clip [n], s) at a random moment of `ep`, s among the even frame counts 2, 4, …, T — the moments at
    which the planner asks (`tkjepa.planning`: one action = 2 frames).

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


def target_location(ep: Episode, s: int) -> np.ndarray:
    """[2] (x, y) in metres from the table's left and front edges: where the next subgoal's object stands at
    the last observed frame s - 1."""
    k = int(ep.extras["subgoal_objects"][next_subgoal(ep, s)])
    x, y = np.asarray(ep.extras["object_positions"][s - 1, k], float)[:2]
    return np.array([x - TABLE_X[0], y - TABLE_Y[0]])


def spoken_location(xy: np.ndarray, grid_cm: int) -> str:
    """(x, y) metres -> "< 2.4 1.6 >" (word-spaced, as the thinker's text decodes): decimetres on a `grid_cm`
    grid, clipped to the vocabulary's numbers 0.0 … 30.0."""
    if grid_cm <= 0:
        raise ValueError(f"grid_cm must be a positive number of centimetres, got {grid_cm}")
    cells = np.clip(np.round(np.asarray(xy) * 100 / grid_cm), 0, 300 // grid_cm) * grid_cm / 10
    return "< " + " ".join(f"{v:.1f}" for v in cells) + " >"


def thinking_target(ep: Episode, s: int, ground_cm: int = 0) -> str:
    """The text the thinker learns to say: "holding red cube . next blue bowl", and with `ground_cm` > 0
    where that object is: "holding red cube . next blue bowl < 2.4 1.6 >"."""
    held = int(ep.extras["held"][s - 1])
    holding = str(list(ep.extras["object_names"])[held]) if held >= 0 else "nothing"
    text = f"holding {holding} . next {next_target(ep, s)}"
    return f"{text} {spoken_location(target_location(ep, s), ground_cm)}" if ground_cm else text


def predicted_target(text: str) -> str:
    """What the text names after "next", up to a location ("" if it never says next)."""
    words = text.split()
    if "next" not in words:
        return ""
    words = words[words.index("next") + 1:]
    return " ".join(words[:words.index("<")] if "<" in words else words).strip(" .")


def predicted_location(text: str) -> np.ndarray | None:
    """The (x, y) metres of the text's "< x y >" after "next", or None if it says none."""
    words = text.split()
    words = words[words.index("next") + 1:] if "next" in words else []
    if "<" not in words:
        return None
    xy = words[words.index("<") + 1:][:2]
    try:
        return np.array([float(w) / 10 for w in xy]).reshape(2)
    except ValueError:
        return None


def think_episodes(model, tokenizer, episodes: list[Episode], batch_size: int = 32, moments: list | None = None
                   ) -> list[dict]:
    """Generate thinking text for each episode; score it where the world's ground truth is known.

    `moments`: one (clip indices, s) per episode; default the sampler's (`thinker_indices`). Rows with ground
    truth also say whether the whole text is right (`exact`: what is held *and* what is next)."""
    from tkjepa.thinker.model import generate  # noqa: PLC0415

    moments = moments or [thinker_indices(ep) for ep in episodes]
    if len(moments) != len(episodes):
        raise ValueError(f"{len(moments)} moments for {len(episodes)} episodes")
    rows = []
    for i in range(0, len(episodes), batch_size):
        chunk, idx = episodes[i:i + batch_size], moments[i:i + batch_size]
        _, _, texts = generate(model, tokenizer, chunk, [a for a, _ in idx])
        for ep, (_, s), text in zip(chunk, idx, texts):
            row = {"path": ep.path, "task": ep.task, "text": text, "next_target": None, "correct": None,
                   "exact": None, "location_error_m": None, "s": int(s)}
            if ep.extras.get("subgoal_objects") is not None:
                row["next_target"] = next_target(ep, s)
                row["correct"] = predicted_target(text) == row["next_target"]
                words = text.split()
                row["exact"] = (words[:words.index("<")] if "<" in words else words) == thinking_target(ep, s).split()
                said = predicted_location(text)  # None for a thinker that names no place (the plain one)
                if said is not None:
                    row["target_xy"] = target_location(ep, s).tolist()
                    row["location_error_m"] = float(np.linalg.norm(said - row["target_xy"]))
            rows.append(row)
    return rows


def accuracy(rows: list[dict]) -> dict:
    """Overall and per-family next-target accuracy over the rows that have ground truth; for the rows whose
    text says a location, how far it is from the named target (mean and median metres, the fraction within
    4 cm) and how many said one (`located`); `location_chance_m` is the mean error of always saying the
    average target position of those rows, the score of a thinker that does not look."""
    scored = [r for r in rows if r["correct"] is not None]
    fam = defaultdict(list)
    for r in scored:
        fam[r["task"]].append(r["correct"])
    located = [r for r in scored if r.get("location_error_m") is not None]
    err = np.array([r["location_error_m"] for r in located], float)
    xy = np.array([r["target_xy"] for r in located], float).reshape(-1, 2)
    return {"overall": sum(r["correct"] for r in scored) / max(1, len(scored)), "n": len(scored),
            "exact": sum(bool(r.get("exact")) for r in scored) / max(1, len(scored)),
            "per_family": {k: sum(v) / len(v) for k, v in sorted(fam.items())}, "located": len(err),
            "location_error_m": float(err.mean()) if len(err) else None,
            "location_median_m": float(np.median(err)) if len(err) else None,
            "location_within_4cm": float((err < 0.04).mean()) if len(err) else None,
            "location_chance_m": float(np.linalg.norm(xy - xy.mean(0), axis=1).mean()) if len(err) else None}


def add_arguments(p) -> None:
    p.add_argument("path", help="an EgoDex-format .hdf5 episode or a folder of them")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="thinker folder or hub name")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--batch-size", type=int, default=32, help="episodes per generate call")


def run(args) -> int:
    import torch  # noqa: PLC0415

    from tkjepa.egodex import find_episodes, load_episode  # noqa: PLC0415
    from tkjepa.thinker.model import load_thinker  # noqa: PLC0415

    torch.manual_seed(0)
    t0 = time.perf_counter()
    path = Path(args.path)
    paths = find_episodes(path) if path.is_dir() else [path]
    model, tokenizer = load_thinker(args.checkpoint)
    episodes = [load_episode(p) for p in paths]
    rows = think_episodes(model, tokenizer, episodes, args.batch_size)
    acc = accuracy(rows)
    if args.json:
        print(json.dumps({"accuracy": acc["overall"] if acc["n"] else None, "per_family": acc["per_family"],
                          "location_error_m": acc["location_error_m"],
                          "episodes": [{k: r[k] for k in ("path", "text", "next_target", "correct",
                                                          "location_error_m")} for r in rows]}, indent=1))
        return 0
    for r in rows:
        mark = "" if r["correct"] is None else ("  ok" if r["correct"] else f"  WRONG (true: {r['next_target']})")
        print(f"{r['path']}: {r['text']}{mark}")
    if path.is_dir() and acc["n"]:
        fams = ", ".join(f"{k} {v:.0%}" for k, v in acc["per_family"].items())
        where = (f"; spoken location off by {100 * acc['location_error_m']:.1f} cm on average ({acc['located']} "
                 "episodes)" if acc["located"] else "")
        print(f"next-target accuracy {acc['overall']:.1%} on {acc['n']} episodes ({fams}){where} "
              f"in {time.perf_counter() - t0:.1f} s")
    return 0
