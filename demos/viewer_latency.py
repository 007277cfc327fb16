"""Latency of the rollout viewer (its budget: a rollout + redraw ≤ 300 ms, an attribution ≤ 3 s).

    .venv/bin/python demos/viewer_latency.py [--browser] [--repeats N]

Serves `demos/rollout_viewer.py`'s `demo` in-process on 127.0.0.1 and times, through gradio_client (HTTP, queue,
compute and the figures' JSON included):

- rollout, cached: another horizon / model set of an episode already shown (what the slider and toggles do);
- rollout, ablation: a layer set not seen before, so the thinkjepa forecast is recomputed (recursive + one-shot);
- attribution: IG + per-layer ablation for an episode not attributed before (it is never cached).

With --browser, also in headless chromium: from a click on an ablation checkbox to the 3D plot redrawn with
the new ablated trace (clicks cycle through layers 0, 2, 3, 5, so the first 7 layer sets are new ones).
Prints a markdown table of median / max milliseconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - t)


def browser_times(url: str, repeats: int) -> list[float]:
    """ms from clicking an ablation checkbox to the 3D plot holding the new ablated trace, `repeats` clicks."""
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--enable-unsafe-swiftshader"]
    names = ("() => document.querySelector('#trajectory .js-plotly-plot').data.map(t => t.name || '').join('|')")
    out = []
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(), executable_path="/usr/bin/chromium",
                                                   headless=True, args=args, viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector("#attribution .js-plotly-plot")
        layers = ["layer 0", "layer 2", "layer 3", "layer 5"]
        for i in range(repeats):  # each click toggles one layer: a layer set not drawn just before
            before = page.evaluate(names)
            t = time.perf_counter()
            page.click(f'#ablate label:has-text("{layers[i % len(layers)]}")')
            page.wait_for_function(f"() => ({names[6:]}) !== {before!r}", polling="raf")
            out.append(1000 * (time.perf_counter() - t))
        ctx.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--browser", action="store_true", help="also time click -> redraw in headless chromium")
    args = ap.parse_args()

    from gradio_client import Client

    from tkjepa.egodex import find_episodes
    from tkjepa.paths import EPISODES
    from tkjepa.viewer.app import launch

    t = time.perf_counter()
    spec = importlib.util.spec_from_file_location("rollout_viewer", ROOT / "demos" / "rollout_viewer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    start_s = time.perf_counter() - t
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = launch(module.demo, port=port, block=False)
    client = Client(url, verbose=False)
    keys = [str(p.relative_to(EPISODES).with_suffix("")) for p in find_episodes(EPISODES)]
    models = ["thinkjepa", "jepa_only", "vlm_only", "oracle", "const_velocity"]

    def rollout(key, horizon=32, ablate=()):
        return client.predict(key, models, horizon, "recursive", "crossattn", "all layers", list(ablate),
                              api_name="/rollout")

    for key in keys[:args.repeats]:   # select each episode once (computes its view), as the page does
        rollout(key)
    times = {
        "rollout, cached (horizon / toggles)": [timed(lambda k=k, h=h: rollout(k, h))
                                                for k, h in zip(keys, range(5, 5 + args.repeats))],
        "rollout, new ablation (forward passes)": [timed(lambda k=k: rollout(k, 32, [0, 3]))
                                                   for k in keys[:args.repeats]],
        "attribution (IG + 6 ablations)": [timed(lambda k=k: client.predict(k, "crossattn", "all layers",
                                                                            api_name="/attribution"))
                                           for k in keys[-args.repeats:]],
    }
    if args.browser:
        times["browser: ablation click -> 3D redraw"] = browser_times(url, args.repeats)
    print(f"viewer built in {start_s:.1f} s; {args.repeats} calls each, ms:\n")
    print("| event | median (ms) | max (ms) |\n|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.0f} | {max(ts):.0f} |")
    module.demo.close()


if __name__ == "__main__":
    main()
