"""`tkjepa quickstart` (what `make quickstart` runs): a two-minute tour of the shipped samples.

It reads `data_samples/episodes`, shows what the dual-temporal sampler gives each branch, measures how
ambiguous the future is for a forecaster that only sees the last frames, and writes an HTML report.
"""

from __future__ import annotations

import time
from pathlib import Path


from tkjepa import paths
from tkjepa.checkpoint import write_text
from tkjepa.egodex import find_episodes, format_summary, load_episode, summarize
from tkjepa.sampling import DualTemporalSampler, SamplerConfig
from tkjepa.world.stats import ambiguity_figure, ambiguity_report

def add_arguments(command: str, p) -> None:
    p.add_argument("--data", default=str(paths.EPISODES), help="EgoDex-format folder (default: shipped samples)")
    p.add_argument("--out", default=str(paths.RUNS / "quickstart"), help="where to write the HTML report")


def run(command: str, args) -> int:
    t0 = time.perf_counter()
    found = find_episodes(args.data)
    print(format_summary(summarize(args.data)), end="\n\n")

    ep = load_episode(found[0])
    sampler = DualTemporalSampler(SamplerConfig.tiny())
    idx = sampler.sample(ep.num_frames)
    print(f"episode {found[0].relative_to(Path(args.data))}: {ep.instruction!r}")
    print(f"  forecast start  {idx.forecast_start} of {ep.num_frames} frames")
    print(f"  dense JEPA view {idx.dense.tolist()}")
    print(f"  thinker clip    {idx.thinker.tolist()}")
    print(f"  future targets  {idx.future[0]}..{idx.future[-1]}\n")

    episodes = [load_episode(p, load_frames=False) for p in found]
    report = ambiguity_report(episodes, horizon=len(idx.future))
    print(f"wrist error over the next {report['horizon']} frames, {report['episodes']} episodes (cm):")
    for name, ade in report["ade"].items():
        print(f"  {name:<18} {100 * ade:5.1f}")
    print(f"  hand still at the forecast start in {100 * report['share_hand_still_at_start']:.0f}% of episodes")
    ratio = report["ade"]["told_next_subgoal"] / report["ade"]["const_velocity"]
    print(f"knowing the next subgoal cuts the error to {100 * ratio:.0f}% of extrapolating the last frames:\n"
          "that knowledge is in the instruction and the early frames, which only the thinker sees.\n")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    html = out / "quickstart.html"
    figs = [sampler.timeline_figure(idx), ambiguity_figure(report)]
    write_text(html, "<html><body>" + "".join(f.to_html(full_html=False, include_plotlyjs=i == 0)
                                             for i, f in enumerate(figs)) + "</body></html>")
    print(f"report: {html}\nnext: `make lab` opens the lessons (notebooks/00_tour.ipynb first).")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
