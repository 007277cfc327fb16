"""The Gradio rollout viewer's page (what `tkjepa viewer` and `make demo` serve).

The page is `build_demo()`; `demos/rollout_viewer.py` exposes it as a module-level `demo`. The computations
live in `tkjepa.viewer.compute`; this module only lays them out and wires the controls. Every event has an
`api_name`, so each view is also an HTTP endpoint (`gradio_client.Client(url).predict(..., api_name=...)`):

- `/episode`      episode -> frame strip, instruction and thinker text;
- `/rollout`      episode, models, horizon, mode, injection, layer subset, ablated layers -> 3D trajectory and
                  error-vs-horizon curves (plotly JSON figures), the scores table and its numbers (metres);
- `/attribution`  episode, injection, layer subset -> per-layer IG + ablation ΔADE chart and its numbers;
- `/upload`       an .hdf5 + .mp4 pair -> a message, and the episode picker (the new episode selected);
- `/plan`         (with a planner folder) held-out tabletop episode, goal mode -> the energy per action with a
                  band per subgoal, the last planned frame beside its goal, a summary, the frame slider;
- `/plan_frame`   episode, mode, frame -> that planned frame beside the goal it was heading for.

`draw` (page-only, no endpoint) then puts the rollout's figures into their plotly divs; see DRAW.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from tkjepa.checkpoint import CheckpointError

from tkjepa.viewer.compute import BASELINE, MODES, UploadError, Viewer, ViewerConfig
from tkjepa.viewer.playback import PLAN_MODES, Playback

HOST, PORT = "127.0.0.1", 7860
# Uploads above the viewer's own limit reach the handler, which explains the refusal in the page; this hard
# ceiling only keeps absurd files off the disk (gradio then answers with its own error).
MAX_FILE_SIZE = "200mb"
CONCURRENCY = 2       # events computed at once per listener: the machine has 2 cores, each handler 1 thread
QUEUE_SIZE = 64       # requests waiting beyond that; more are refused
# Draws the rollout's two figures into persistent divs. gr.Plot re-mounts its plot on every new value: for the
# 3D scene a new WebGL context per redraw (~1 s with software GL) and a camera reset. Plotly.react on the same
# div redraws in tens of ms and keeps the camera (`uirevision`). window.Plotly arrives with the page's gr.Plot
# (the attribution chart), hence the wait.
DRAW = """(trajectory, curves) => {
  const draw = (id, fig) => {
    const el = document.getElementById(id);
    if (!window.Plotly || !el) return setTimeout(() => draw(id, fig), 50);
    window.Plotly.react(el, fig.data, fig.layout, {responsive: true, displaylogo: false});
  };
  if (trajectory) draw("trajectory-plot", trajectory);
  if (curves) draw("curves-plot", curves);
}"""
INTRO = """# ThinkJEPA rollout viewer
Pick an episode (or upload an EgoDex `.hdf5` + `.mp4` pair). The strip shows what the **dual-temporal sampler**
gives each branch: the JEPA's dense recent window (blue frames), the thinker's uniform frames over the whole
past (orange bars), and the frames to forecast (green bars); the red square on the last observed frame is
where thinkjepa's pointer found the object the thinker names. Below, the forecasters' hand trajectories, their
error against the horizon, and which thinker layers the thinkjepa forecast leans on — tick a layer to ablate it.
At the bottom, a held-out tabletop episode planned toward the thinker's subgoals, played back."""


def _scores_table(numbers: dict) -> str:
    h = numbers["horizon"]
    rows = [f"| model | ADE@{h} (cm) | FDE@{h} (cm) |", "|---|---|---|"]
    rows += [f"| {n} | {100 * m['ade']:.2f} | {100 * m['fde']:.2f} |" for n, m in numbers["models"].items()]
    if "thinkjepa_ablated" in numbers:
        m = numbers["thinkjepa_ablated"]
        rows.append(f"| thinkjepa, layers {numbers['ablated_layers']} ablated | {100 * m['ade']:.2f} | "
                    f"{100 * m['fde']:.2f} |")
    note = f"\n\n*{numbers['note']}*" if numbers.get("note") else ""
    return "\n".join(rows) + f"\n\nthinkjepa checkpoint: `{numbers['checkpoint']}`" + note


def build_demo(config: ViewerConfig, backbones=None) -> gr.Blocks:
    """The viewer's page over the folder, checkpoints and backbones of `config` (or the loaded `backbones`)."""
    v = Viewer(config, backbones)
    models = v.shown_models()
    layers, used = v.layers()
    first = v.episode_keys[0]

    def view(key: str):
        if key not in v.paths:
            raise gr.Error(f"unknown episode {key!r}: pick one from the list or upload it")
        return v.episode(key)

    def show_episode(key: str):
        ev = view(key)
        s, idx = ev.start, ev.indices
        info = (f"**{ev.key}** · task `{ev.task}` · {len(ev.frames)} frames, forecast start s = {s}\n\n"
                f"**instruction:** “{ev.instruction}”\n\n**thinker's text:** “{ev.text}”\n\n"
                f"dense JEPA window: frames {idx.dense.min()}–{idx.dense.max()} · thinker frames: "
                f"{', '.join(map(str, idx.thinker.tolist()))} · forecast: frames {s}–{s + ev.horizon - 1}")
        return v.frame_strip(ev), info

    def rollout(key: str, shown: list[str], horizon: float, mode: str, injection: str, subset: str,
                ablated: list[int]):
        ev = view(key)
        h = int(min(max(horizon, 1), ev.horizon))
        ckpt, note = v.checkpoint(injection, subset)
        abl = tuple(sorted(int(r) for r in ablated or ()))
        shown = [n for n in shown if n in ev.forecasts]
        numbers = {"episode": key, "horizon": h, "mode": mode, "checkpoint": ckpt, "note": note,
                   "ablated_layers": list(abl),
                   "models": {n: {k: v.errors(ev, v.forecast(ev, n, mode, ckpt), h)[k] for k in ("ade", "fde")}
                              for n in shown}}
        if abl and "thinkjepa" in shown:
            e = v.errors(ev, v.forecast(ev, "thinkjepa", mode, ckpt, abl), h)
            numbers["thinkjepa_ablated"] = {"ade": e["ade"], "fde": e["fde"]}
        return (json.loads(v.trajectory_figure(ev, shown, h, mode, ckpt, abl).to_json()),
                json.loads(v.error_figure(ev, shown, h, mode, ckpt, abl).to_json()),
                _scores_table(numbers), numbers)

    def attribution(key: str, injection: str, subset: str):
        ev = view(key)
        ckpt, _ = v.checkpoint(injection, subset)
        result = {"episode": key, "checkpoint": ckpt, **v.attribution(ev, ckpt)}
        if "skipped" in result:
            return v.attribution_figure(result), f"*{result['skipped']}*", result
        top = max(range(len(layers)), key=lambda r: abs(result["attribution"][r]))
        unread = [r for r in range(len(layers)) if r not in result["used"]]
        text = (f"`{ckpt}` on this episode: wrist progress s = {1e3 * result['s']:.1f} mm "
                f"(baseline {1e3 * result['s_base']:.1f} mm); layer {result['layers'][top]} carries the largest "
                f"|attribution|; " + (f"rows {unread} are not read." if unread else "every row is read."))
        return v.attribution_figure(result), text, result

    def upload(files):
        try:
            key = v.add_upload(files)
        except UploadError as e:
            return f"**Upload rejected.** {e}", gr.update()
        ev = v.episode(key)
        return (f"**Loaded** `{key}`: “{ev.instruction}”",
                gr.update(choices=v.episode_keys, value=key))

    playback = None
    if config.planner is not None and (Path(config.planner) / "world_model.safetensors").exists():
        if config.planner_encoder is None:
            raise ValueError(f"ViewerConfig.planner {config.planner} needs planner_encoder, the encoder it plans in")
        playback = Playback(config.planner, config.planner_encoder)

    def planned(index, mode: str) -> dict:
        try:
            return playback.run(int(index), mode)
        except (CheckpointError, ValueError, TypeError) as e:
            raise gr.Error(f"cannot plan that episode: {e}") from e

    def plan(index: int, mode: str):
        r = planned(index, mode)
        last = len(r["frames"]) - 1
        switches = sum(a != b for a, b in zip(r["goals"], r["goals"][1:]))
        text = (f"**{'task done' if r['success'] else 'not done'}** in {r['steps']} actions "
                f"({r['seconds']:.1f} s of planning); first subgoal {'done' if r['first_subgoal'] else 'not done'}; "
                f"{switches} switch(es) of goal. Each band of the chart is one goal; drag the slider to play the "
                f"episode back.")
        return (playback.timeline(r), playback.frame(r, last), text,
                gr.update(maximum=last, value=last, interactive=True))

    def plan_frame(index: int, mode: str, t: float):
        return playback.frame(planned(index, mode), int(t))

    with gr.Blocks(title="tkjepa rollout viewer", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            episode = gr.Dropdown(v.episode_keys, value=first, label="episode", allow_custom_value=True, scale=2,
                                  elem_id="episode")
            files = gr.File(file_count="multiple", file_types=[".hdf5", ".mp4"], scale=2, height=110,
                            label=f"upload an EgoDex .hdf5 + .mp4 pair (≤ {config.max_upload_mb:g} MB each)")
            status = gr.Markdown(elem_id="upload-status")
        gr.Markdown("**frames** — blue frame: the dense JEPA window · orange bar: the thinker's frames · "
                    "green bar, faded: the frames to forecast (neither branch sees them)")
        strip = gr.Image(show_label=False, interactive=False, format="png", buttons=[], elem_id="strip")
        info = gr.Markdown(elem_id="episode-info")
        with gr.Row():
            with gr.Column(scale=3):
                gr.HTML('<div id="trajectory-plot" style="height: 480px"></div>', elem_id="trajectory",
                        container=True, padding=True)
                trajectory = gr.JSON(visible=False)   # the figure; DRAW puts it in the div above
            with gr.Column(scale=2):
                shown = gr.CheckboxGroup(models, value=[n for n in models if n not in ("oracle", BASELINE)],
                                         label="models", elem_id="models")
                horizon = gr.Slider(1, 32, value=32, step=1, label="rollout horizon (frames)", elem_id="horizon",
                                    info="1–8: one predictor call; beyond: further windows")
                mode = gr.Radio([(label, k) for k, label in MODES.items()], value="recursive", label="rollout")
                with gr.Row():
                    injection = gr.Dropdown(v.injections(), value=v.default_variant[0],
                                            label="injection mode (thinkjepa)", interactive=len(v.injections()) > 1)
                    subset = gr.Dropdown(v.subsets(), value=v.default_variant[1], label="layer subset (thinkjepa)",
                                         interactive=len(v.subsets()) > 1)
                scores = gr.Markdown(elem_id="scores")
        with gr.Row():
            gr.HTML('<div id="curves-plot" style="height: 360px"></div>', elem_id="curves", container=True,
                    padding=True)
            curves = gr.JSON(visible=False)
            with gr.Column():
                attr_plot = gr.Plot(label="layer attribution", elem_id="attribution")
                ablate = gr.CheckboxGroup([(f"layer {l}" + ("" if r in used else " (unread)"), r)
                                           for r, l in enumerate(layers)], value=[], elem_id="ablate",
                                          label="ablate thinker layers (state -> the reference episodes' mean)")
                attr_text = gr.Markdown()
        with gr.Accordion("numbers (metres)", open=False):
            numbers = gr.JSON(label="rollout")
            attr_numbers = gr.JSON(label="attribution")
        if playback is not None:
            with gr.Accordion("planning: a held-out tabletop episode, planned and played back", open=False):
                gr.Markdown("CEM through the action-conditioned world model toward the thinker's subgoals, the "
                            "final frame (flat) or the true next subgoal (oracle). Planning one episode takes a few "
                            "seconds.")
                with gr.Row():
                    plan_episode = gr.Dropdown(playback.choices(), value=0, label="held-out episode",
                                               elem_id="plan-episode")
                    plan_mode = gr.Radio(list(PLAN_MODES), value="thinker", label="goals", elem_id="plan-mode")
                    plan_button = gr.Button("plan", variant="primary", elem_id="plan-button")
                with gr.Row():
                    with gr.Column():
                        plan_image = gr.Image(show_label=False, interactive=False, format="png", buttons=[],
                                              elem_id="plan-frame")
                        plan_slider = gr.Slider(0, 1, value=0, step=1, label="frame", interactive=False,
                                                elem_id="plan-slider")
                    with gr.Column():
                        plan_plot = gr.Plot(label="energy per action, one band per goal", elem_id="plan-timeline")
                        plan_text = gr.Markdown(elem_id="plan-text")
                plan_button.click(plan, [plan_episode, plan_mode], [plan_plot, plan_image, plan_text, plan_slider],
                                  api_name="plan")
                plan_slider.release(plan_frame, [plan_episode, plan_mode, plan_slider], [plan_image],
                                    api_name="plan_frame")

        variant = [injection.change, subset.change]
        gr.on([demo.load, episode.change], show_episode, [episode], [strip, info], api_name="episode")
        gr.on([demo.load, episode.change, shown.change, horizon.release, mode.change, ablate.change, *variant],
              rollout, [episode, shown, horizon, mode, injection, subset, ablate],
              [trajectory, curves, scores, numbers], api_name="rollout", trigger_mode="always_last",
              show_progress="hidden").then(None, [trajectory, curves], None, js=DRAW, api_name="draw")
        gr.on([demo.load, episode.change, *variant], attribution, [episode, injection, subset],
              [attr_plot, attr_text, attr_numbers], api_name="attribution", trigger_mode="always_last")
        files.upload(upload, [files], [status, episode], api_name="upload")
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def launch(demo: gr.Blocks, host: str = HOST, port: int | None = PORT, block: bool = True) -> str:
    """Serve `demo` on http://host:port (port None: a free one) -> the URL; `block` waits until Ctrl-C."""
    _, url, _ = demo.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
                            max_file_size=MAX_FILE_SIZE, footer_links=["api"], show_error=True)
    if block:
        print(f"rollout viewer: {url}  (Ctrl-C stops it)", flush=True)
        demo.block_thread()
    return url
