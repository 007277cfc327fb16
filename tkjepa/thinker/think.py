"""`tkjepa think`: run a thinker on an episode or a folder and score its "next target".

The ground truth the tiny thinker is trained on, at the forecast start s (the sampler's, T//2):
"holding <held object or nothing> . next <next subgoal's object>", read from the world's `extras`.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from tkjepa.episode import Episode
from tkjepa.sampling import DualTemporalSampler, SamplerConfig
from tkjepa.world.stats import next_subgoal

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "data_samples" / "thinker_tiny"


def thinker_indices(ep: Episode, sampler: DualTemporalSampler | None = None):
    """(thinker clip frame indices [n], forecast start s) from the dual-temporal sampler."""
    sample = (sampler or DualTemporalSampler(SamplerConfig.tiny())).sample(ep.num_frames)
    return sample.thinker, sample.forecast_start


def next_target(ep: Episode, s: int) -> str:
    """Name of the object the next pending subgoal acts on at forecast start s."""
    names = list(ep.extras["object_names"])
    return str(names[int(ep.extras["subgoal_objects"][next_subgoal(ep, s)])])


def thinking_target(ep: Episode, s: int) -> str:
    """The text the thinker learns to say: "holding red cube . next blue bowl"."""
    held = int(ep.extras["held"][s - 1])
    holding = str(list(ep.extras["object_names"])[held]) if held >= 0 else "nothing"
    return f"holding {holding} . next {next_target(ep, s)}"


def predicted_target(text: str) -> str:
    """What the text names after "next" ("" if it never says next)."""
    words = text.split()
    return " ".join(words[words.index("next") + 1:]).strip(" .") if "next" in words else ""


def think_episodes(model, tokenizer, episodes: list[Episode], batch_size: int = 32) -> list[dict]:
    """Generate thinking text for each episode; score it where the world's ground truth is known."""
    from tkjepa.thinker.model import generate  # noqa: PLC0415

    rows = []
    for i in range(0, len(episodes), batch_size):
        chunk = episodes[i:i + batch_size]
        idx = [thinker_indices(ep) for ep in chunk]
        _, _, texts = generate(model, tokenizer, chunk, [a for a, _ in idx])
        for ep, (_, s), text in zip(chunk, idx, texts):
            row = {"path": ep.path, "task": ep.task, "text": text, "next_target": None, "correct": None}
            if ep.extras.get("subgoal_objects") is not None:
                row["next_target"] = next_target(ep, s)
                row["correct"] = predicted_target(text) == row["next_target"]
            rows.append(row)
    return rows


def accuracy(rows: list[dict]) -> dict:
    """Overall and per-family next-target accuracy over the rows that have ground truth."""
    scored = [r for r in rows if r["correct"] is not None]
    fam = defaultdict(list)
    for r in scored:
        fam[r["task"]].append(r["correct"])
    return {"overall": sum(r["correct"] for r in scored) / max(1, len(scored)), "n": len(scored),
            "per_family": {k: sum(v) / len(v) for k, v in sorted(fam.items())}}


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
                          "episodes": [{k: r[k] for k in ("path", "text", "next_target", "correct")}
                                       for r in rows]}, indent=1))
        return 0
    for r in rows:
        mark = "" if r["correct"] is None else ("  ok" if r["correct"] else f"  WRONG (true: {r['next_target']})")
        print(f"{r['path']}: {r['text']}{mark}")
    if path.is_dir() and acc["n"]:
        fams = ", ".join(f"{k} {v:.0%}" for k, v in acc["per_family"].items())
        print(f"next-target accuracy {acc['overall']:.1%} on {acc['n']} episodes ({fams}) "
              f"in {time.perf_counter() - t0:.1f} s")
    return 0
