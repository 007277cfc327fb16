"""The figures one lesson draws, one section per lesson (kept here so a lesson's cells stay about the idea)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from tkjepa.episode import Episode
from tkjepa.viz.core import MODEL_COLOURS
from tkjepa.world.scene import COLORS


# -- lesson 00: hand-made forecasts on a frame -----------------------------------------------------------
def tour_reaches_figure(frame: np.ndarray, camera, last: np.ndarray, paths: dict, truth: np.ndarray,
                        title: str = "") -> go.Figure:
    """Wrist paths drawn on a frame [H, W, 3]: `paths` {label: (points [h, 3] world m, colour name)}, dotted,
    and the true path `truth` [h, 3] in white, each starting at `last` [3]; `camera`: a `world.scene.Camera`."""
    to_px = lambda pts: camera.project(np.vstack([last, pts]).astype(np.float64))[0]  # noqa: E731  [h+1, 2]
    fig = go.Figure(go.Image(z=frame))
    for label, (pts, colour) in paths.items():
        uv = to_px(pts)
        fig.add_trace(go.Scatter(x=uv[:, 0], y=uv[:, 1], mode="lines+markers", marker_size=4, name=label,
                                 line=dict(color="rgb({},{},{})".format(*COLORS[colour]), width=3, dash="dot")))
    uv = to_px(truth)
    fig.add_trace(go.Scatter(x=uv[:, 0], y=uv[:, 1], mode="lines+markers", line=dict(color="white", width=3),
                             marker_size=5, name="what the expert did"))
    fig.update_layout(title=title, width=640, height=420, legend=dict(x=1.02, y=1), margin=dict(l=10, r=10, t=40, b=10))
    return fig.update_xaxes(visible=False).update_yaxes(visible=False, scaleanchor="x")


# -- lesson 10 (appendix): joints on a frame -------------------------------------------------------------
def appendix_joints_figure(frame: np.ndarray, uv: np.ndarray, joint_names, title: str = "") -> go.Figure:
    """Projected joints uv [J, 2] (pixels) as open circles on a frame [H, W, 3]: the wrist red, the forearm
    cyan, the fingertips white."""
    colours = {"rightForearm": "cyan", "rightHand": "red"}
    fig = go.Figure(go.Image(z=frame))
    fig.add_trace(go.Scatter(x=uv[:, 0], y=uv[:, 1], mode="markers", text=list(joint_names), hoverinfo="text",
                             marker=dict(size=9, color=[colours.get(n, "white") for n in joint_names],
                                         symbol="circle-open", line_width=2)))
    fig.update_layout(title=title, width=340, height=360, margin=dict(l=10, r=10, t=40, b=10))
    return fig.update_xaxes(visible=False).update_yaxes(visible=False, scaleanchor="x")


# -- lesson 09: planning ---------------------------------------------------------------------------------
def planning_rollout_figure(roll: dict) -> go.Figure:
    """`planning.world_model.rollout_errors` output {"true", "shuffled", "copy"}: [steps] as L1 per tubelet ahead."""
    names = {"true": "true actions", "shuffled": "shuffled actions", "copy": "copy the last state"}
    fig = go.Figure([go.Scatter(x=list(range(1, len(roll[k]) + 1)), y=roll[k], name=n, mode="lines+markers")
                     for k, n in names.items()])
    return fig.update_layout(xaxis_title="tubelets ahead (2 frames each)", yaxis_title="L1 to the true latent",
                             height=320, title="recursive rollout of the world model, held-out play episodes")


def planning_landscapes_figure(land: dict, xs, ys, goal_xy) -> go.Figure:
    """Energy landscapes {name: E [ny, nx]} over wrist positions xs [nx], ys [ny] (m) side by side; white: the
    goal's wrist `goal_xy` [2], red x: each minimum."""
    fig = make_subplots(rows=1, cols=len(land), subplot_titles=list(land))
    for k, E in enumerate(land.values(), 1):
        iy, ix = np.unravel_index(np.argmin(E), np.shape(E))
        fig.add_trace(go.Heatmap(x=xs, y=ys, z=E, colorscale="Viridis", showscale=False), 1, k)
        fig.add_trace(go.Scatter(x=[goal_xy[0]], y=[goal_xy[1]], mode="markers", showlegend=False,
                                 marker=dict(size=11, color="white", line=dict(color="black", width=2))), 1, k)
        fig.add_trace(go.Scatter(x=[xs[ix]], y=[ys[iy]], mode="markers", showlegend=False,
                                 marker=dict(size=11, symbol="x", color="red")), 1, k)
    fig.update_layout(height=340, margin=dict(t=50, b=10), title="energy over the wrist's position (x, y in m)")
    return fig.update_yaxes(scaleanchor="x")


def planning_cem_figure(h: dict, topk: int, direction) -> go.Figure:
    """One CEM iteration `h` (samples [S, H, 4], energy [S], elite_energy): each sample's first (dx, dy),
    coloured by energy, the `topk` elites ringed, and a dashed line along `direction` [2]."""
    u, e = h["samples"][:, 0].numpy(), h["energy"].numpy()
    elite = np.argsort(e)[:topk]
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    fig = go.Figure(go.Scatter(x=u[:, 0], y=u[:, 1], mode="markers", name="samples",
                               marker=dict(color=e, colorscale="Viridis", colorbar=dict(title="energy"))))
    fig.add_trace(go.Scatter(x=u[elite, 0], y=u[elite, 1], mode="markers", name="elites",
                             marker=dict(size=12, color="rgba(0,0,0,0)", line=dict(color="red", width=2))))
    fig.add_trace(go.Scatter(x=[0, d[0]], y=[0, d[1]], mode="lines", name="toward the goal",
                             line=dict(color="black", dash="dash")))
    return fig.update_layout(title=f"best energy {h['elite_energy']:.3f}", height=420,
                             xaxis=dict(title="u dx", range=[-1.05, 1.05]),
                             yaxis=dict(title="u dy", range=[-1.05, 1.05]))


def planning_episode_figure(runs: dict, every: int = 4, title: str = "") -> go.Figure:
    """Planned episodes {mode: run_episode(record=True) result} as one row of frames each, every `every`-th."""
    n = max(len(r["frames"]) for r in runs.values())
    ts = list(range(0, n, every))
    fig = make_subplots(rows=len(runs), cols=len(ts), row_titles=list(runs), subplot_titles=[f"t={t}" for t in ts],
                        vertical_spacing=0.05, horizontal_spacing=0.005)
    for row, r in enumerate(runs.values(), 1):
        for k, t in enumerate(ts, 1):
            if t < len(r["frames"]):
                fig.add_trace(go.Image(z=r["frames"][t]), row, k)
    fig.update_xaxes(visible=False).update_yaxes(visible=False)
    return fig.update_layout(height=150 * len(runs), margin=dict(t=40, b=0, l=0, r=60), title=title)


def planning_success_figure(results: dict) -> go.Figure:
    """Success rates {mode: plan_episodes result} overall and per task family, grouped bars."""
    fams = sorted({f for r in results.values() for f in r["per_family"]})
    fig = go.Figure([go.Bar(name=m, x=["all"] + fams, y=[r["success_rate"]] + [r["per_family"][f] for f in fams])
                     for m, r in results.items()])
    n = next(iter(results.values()))["episodes"]
    return fig.update_layout(barmode="group", yaxis=dict(title="success rate", range=[0, 1]), height=340,
                             title=f"success over {n} held-out episodes per mode")


# -- the guided block and the forecaster (lessons 05, 06) ------------------------------------------------
def guidedblock_modes_figure(modes=("film", "adaln", "crossattn")) -> go.Figure:
    """One `GuidedBlock` per injection mode, top to bottom: the plain pre-norm block's steps (grey) and where
    the mode's reader enters (red), each red step scaled by a = tanh(gate), which is 0 at initialisation."""
    steps = [("x: [B, L, dim] residual stream", None), ("FiLM: x ← x·(1 + a·scale) + a·shift", "film"),
             ("h = LN₁(x)", None), ("AdaLN: h ← h·(1 + a·s₁) + a·b₁", "adaln"), ("x ← x + SelfAttn(h)", None),
             ("x ← x + a·CrossAttn(LN(x), kv_l)", "crossattn"), ("h = LN₂(x)", None),
             ("AdaLN: h ← h·(1 + a·s₂) + a·b₂", "adaln"), ("x ← x + MLP(h)", None)]
    reads = {"film": "reads g_l [B, dim] (pooled)", "adaln": "reads g_l [B, dim] (pooled)",
             "crossattn": "reads kv_l [B, M, dim] (tokens)"}
    fig = go.Figure()
    for col, mode in enumerate(modes):
        s = [(i, text, kind) for i, (text, kind) in enumerate(steps) if kind in (None, mode)]
        red = [k is not None for _, _, k in s]
        fig.add_scatter(x=[col] * len(s), y=[-i for i, _, _ in s], mode="lines+markers+text", showlegend=False,
                        hoverinfo="skip", line_color="#bbb", text=[f"  {t}" for _, t, _ in s],
                        textposition="middle right",
                        textfont=dict(color=["#d62728" if r else "#333" for r in red]),
                        marker=dict(size=13, symbol=["diamond" if r else "square" for r in red],
                                    color=["#d62728" if r else "#888" for r in red]))
        fig.add_annotation(x=col, y=1.0, text=f"<b>{mode}</b><br>{reads[mode]}", showarrow=False, xanchor="left",
                           font_color="#d62728")
    return fig.update_layout(height=420, width=980, margin=dict(l=10, r=10, t=40, b=10),
                             title="one guided block per injection mode (red: scaled by a = tanh(gate), 0 at init)",
                             xaxis=dict(visible=False, range=[-0.1, len(modes)]),
                             yaxis=dict(visible=False, range=[-8.6, 1.6]))


def forecasters_results_figure(results: dict, table: str = "models", metric: str = "ade", subtitle: str = ""
                               ) -> go.Figure:
    """The benchmark's table `results[table]` ({model: scores}, as `tkjepa bench` writes results.json) as bars
    of `metric` ("ade", "fde", "acc5" or "fde32", the 32-frame rollout's FDE), the std over seeds as error bars
    where a row has several seeds; for "ablations", thinkjepa's value as a dashed line."""
    names = {"ade": "ADE, 8 frames (m)", "fde": "FDE, 8 frames (m)", "acc5": "Acc@5cm, 8 frames",
             "fde32": "FDE, 32 frames (m)"}

    def value(m: dict) -> float:
        return m["rollout"]["32"]["fde"] if metric == "fde32" else m[metric]

    rows = results[table]
    std = [rows[n].get(f"{metric}_std", 0.0) if rows[n].get("seeds", 1) > 1 else 0.0 for n in rows]
    fig = go.Figure(go.Bar(x=list(rows), y=[value(rows[n]) for n in rows],
                           marker_color=[MODEL_COLOURS.get(n, "#1f77b4") for n in rows],
                           error_y=dict(type="data", array=std, visible=any(std)),
                           hovertext=[f"seeds: {rows[n].get('seeds', 1)}" for n in rows]))
    if table == "ablations":
        ref = results["models"]["thinkjepa"]
        fig.add_hline(y=value(ref), line_dash="dash", annotation_text=f"thinkjepa ({ref.get('seeds', 1)} seed(s))")
    return fig.update_layout(height=380, width=800, yaxis_title=names[metric],
                             title=f"{table}: {names[metric]}<br><sup>{subtitle}</sup>")


# -- rollouts (lesson 07) ----------------------------------------------------------------------------------
ROLLOUTS_CATEGORIES = {"context: observed": "#1f77b4", "context: predicted earlier": "#ffbb78",
                       "predicted by this window": "#d62728", "not read": "#eeeeee"}


def rollouts_schedule(Tc: int, Tf: int, windows: int) -> list[dict[int, str]]:
    """The recursive rollout's reading rule (`GuidedPredictor.rollout`): for each window, tubelet index
    (0 = the first future tubelet) -> its `ROLLOUTS_CATEGORIES` key. Window k reads the last `Tc` tubelets of
    [observed context ∥ every prediction so far] and predicts the next `Tf`."""
    rows = []
    for k in range(windows):
        row = {t: "not read" for t in range(-Tc, windows * Tf)}
        for t in range(k * Tf - Tc, k * Tf):
            row[t] = "context: observed" if t < 0 else "context: predicted earlier"
        for t in range(k * Tf, (k + 1) * Tf):
            row[t] = "predicted by this window"
        rows.append(row)
    return rows


def rollouts_schedule_figure(Tc: int = 4, Tf: int = 4, windows: int = 4) -> go.Figure:
    """`rollouts_schedule` as a chart: one row per window, one square per tubelet (2 frames)."""
    rows = rollouts_schedule(Tc, Tf, windows)
    fig = go.Figure()
    for cat, colour in ROLLOUTS_CATEGORIES.items():
        pts = [(t, k) for k, row in enumerate(rows) for t, c in row.items() if c == cat]
        fig.add_scatter(x=[t for t, _ in pts], y=[f"window {k + 1}" for _, k in pts], mode="markers", name=cat,
                        marker=dict(symbol="square", size=22, color=colour, line=dict(width=1, color="#555")))
    fig.add_vline(x=-0.5, line_dash="dash", annotation_text="forecast start")
    return fig.update_layout(height=120 + 45 * windows, width=900, margin=dict(t=60),
                             title=f"Tc={Tc}, Tf={Tf}: {windows} windows = {2 * Tf * windows} frames",
                             xaxis=dict(title="tubelet (2 frames) relative to the forecast start", dtick=1),
                             yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.35))


def rollouts_curves_figure(curves: dict, window: int, title: str = "", yaxis: str = "ADE (cm)") -> go.Figure:
    """Per-frame curves {label: (y [H], colour, dash)} over frames 1..H after the forecast start, with the
    trained horizon (the first `window` frames) shaded and the start of every later window marked."""
    fig = go.Figure()
    for label, (y, colour, dash) in curves.items():
        fig.add_scatter(x=np.arange(1, len(y) + 1), y=y, name=label, line=dict(color=colour, dash=dash))
    H = max(len(y) for y, _, _ in curves.values())
    fig.add_vrect(x0=0.5, x1=window + 0.5, fillcolor="#2ca02c", opacity=0.08, line_width=0,
                  annotation_text="trained horizon", annotation_position="top left")
    for k in range(1, H // window):
        fig.add_vline(x=k * window + 0.5, line_dash="dot", line_color="#888",
                      annotation_text=f"window {k + 1}", annotation_position="top right")
    return fig.update_layout(height=380, width=820, title=title, yaxis_title=yaxis,
                             xaxis_title="frames after the forecast start")


def rollouts_horizon_figure(rollout: dict, metric: str = "fde", title: str = "") -> go.Figure:
    """A rollout table {model: {"8": {"ade", "fde"}, "16": …}} (metres, `tkjepa.forecast.evaluate.score`'s
    "rollout") as `metric` (cm) against the horizon, one line per model; const_velocity dashed."""
    fig = go.Figure()
    for n, r in rollout.items():
        hs = sorted(r, key=int)
        fig.add_scatter(x=[int(h) for h in hs], y=[100 * r[h][metric] for h in hs], name=n, mode="lines+markers",
                        line=dict(color=MODEL_COLOURS.get(n, "#000"),
                                  dash="dash" if n == "const_velocity" else "solid"))
    return fig.update_layout(height=380, width=760, title=title, yaxis_title=f"{metric.upper()} (cm)",
                             xaxis=dict(title="horizon (frames)", tickvals=[int(h) for h in hs]))


# -- the thinker's pathway (lesson 03) ---------------------------------------------------------------------
def thinker_pathway_figure(layers=(0, 1, 2, 3, 4, 5), n_old: int = 7, n_new: int = 4, frames: int = 8,
                           model: str = "tiny Qwen3-VL, 6 layers") -> go.Figure:
    """The thinker branch as a diagram: the uniform clip (`frames` frames) and the prompt go into the VLM
    (`model`), which thinks a few tokens; the hidden states of the cached `layers` come out as a grid,
    one row per layer, `n_old` "old" (visual + prompt) tokens then `n_new` "new" (generated) ones, and go to the
    feature cache. Token counts are schematic."""
    L = len(layers)
    fig = go.Figure()

    def box(x0, x1, y0, y1, text, colour):
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, fillcolor=colour, opacity=0.25, line_color=colour)
        fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=text, showarrow=False, font_size=12)

    def arrow(x0, y0, x1, y1, text=""):
        fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text=text,
                           showarrow=True, arrowhead=3, arrowwidth=1.5, font_size=11)

    box(0, 2.4, 3.4, 5.0, f"thinker clip<br>{frames} uniform frames of [0, s)", "#1f77b4")
    box(0, 2.4, 0.6, 2.2, "prompt<br>“describe this video.”<br>+ task, scene, instruction", "#7f7f7f")
    box(3.0, 5.2, 1.0, 4.6, f"VLM<br>({model})<br><br>greedy thinking:<br>“holding … next …”", "#9467bd")
    arrow(2.4, 4.2, 3.0, 3.4)
    arrow(2.4, 1.4, 3.0, 2.2)
    x_tok = 6.9 + 0.32 * np.arange(n_old + n_new)
    y_lay = np.linspace(0.6, 5.0, L)
    for name, sl, colour in (("old: visual + prompt tokens", slice(0, n_old), "#1f77b4"),
                             ("new: generated tokens", slice(n_old, None), "#ff7f0e")):
        xs = np.repeat(x_tok[sl][None], L, 0).ravel()
        fig.add_scatter(x=xs, y=np.repeat(y_lay, len(x_tok[sl])), mode="markers", name=name, hoverinfo="skip",
                        marker=dict(symbol="square", size=13, color=colour))
    for l, y in zip(layers, y_lay):
        fig.add_annotation(x=x_tok[0] - 0.25, y=y, text=f"layer {l}", showarrow=False, xanchor="right", font_size=11)
    arrow(5.2, 2.8, 6.05, 2.8)
    fig.add_annotation(x=x_tok.mean(), y=5.55, text="hidden states [L, N_old + N_new, D]", showarrow=False)
    x_c = x_tok[-1] + 0.6
    arrow(x_tok[-1] + 0.2, 2.8, x_c, 2.8)
    box(x_c, x_c + 2.1, 1.6, 4.0, "FeatureCache<br>key: sha256(weights,<br>layers, prompt, frames)", "#2ca02c")
    return fig.update_layout(height=360, width=900, margin=dict(l=10, r=10, t=40, b=10),
                             title="the thinker: clip + prompt → VLM → multi-layer hidden states → cache",
                             legend=dict(orientation="h", y=-0.02), plot_bgcolor="white",
                             xaxis=dict(visible=False, range=[-0.2, x_c + 2.3]),
                             yaxis=dict(visible=False, range=[0.2, 5.9]))


# -- lesson 02: the EMA target encoder -------------------------------------------------------------------
def ema_mask_figure(video: torch.Tensor, kinds: dict, seed: int = 0, patch: int = 8, tubelet: int = 2) -> go.Figure:
    """One clip video [1, T, 3, H, W] in [0, 1] under JEPA masks: one row per mask kind of `kinds`
    {label: `encoder.masks.MaskConfig`}, the last frame of each tubelet, the tokens to predict darkened."""
    from einops import rearrange

    from tkjepa.encoder.masks import sample_masks

    T, H, W = video.shape[1], video.shape[3], video.shape[4]
    grid = (T // tubelet, H // patch, W // patch)
    g = torch.Generator().manual_seed(seed)
    fig = make_subplots(rows=len(kinds), cols=grid[0], horizontal_spacing=0.01, vertical_spacing=0.08,
                        subplot_titles=[f"t'={t} ({label})" for label in kinds for t in range(grid[0])])
    for row, cfg in enumerate(kinds.values(), 1):
        _, masks_pred = sample_masks(1, grid, cfg, g)
        hidden = torch.zeros(grid[0] * grid[1] * grid[2], dtype=torch.bool)
        hidden[masks_pred[0]] = True
        hidden = rearrange(hidden, "(t h w) -> t h w", t=grid[0], h=grid[1])
        for t in range(grid[0]):
            img = video[0, tubelet * (t + 1) - 1].permute(1, 2, 0)                     # [H, W, 3]
            shade = hidden[t].repeat_interleave(patch, 0).repeat_interleave(patch, 1)[..., None]
            img = torch.where(shade, img * 0.25, img)
            fig.add_trace(go.Image(z=(img * 255).byte().numpy()), row=row, col=t + 1)
    fig.update_xaxes(visible=False).update_yaxes(visible=False)
    return fig.update_layout(height=190 * len(kinds), width=900, margin=dict(t=40, b=10, l=10, r=10),
                             title="Context (bright) and tokens to predict (dark)")


def ema_wrist_figure(ep: Episode, pred_xyz: np.ndarray, true_xyz: np.ndarray, tubelet: int) -> go.Figure:
    """A probe's wrist position against the truth on one frame of `ep`: pred_xyz, true_xyz [M, 3] world metres,
    one row per tubelet of 2 frames (its last frame, 1, 3, 5, ...), drawn through the first camera pose."""
    def to_pixels(xyz: np.ndarray) -> np.ndarray:                                      # [M, 3] -> [M, 2]
        cam_to_world = ep.transforms["camera"][0].astype(np.float64)
        uvw = ((xyz - cam_to_world[:3, 3]) @ cam_to_world[:3, :3]) @ ep.intrinsic.astype(np.float64).T
        return uvw[:, :2] / uvw[:, 2:3]

    (pu, pv), (tu, tv) = to_pixels(pred_xyz[tubelet:tubelet + 1])[0], to_pixels(true_xyz[tubelet:tubelet + 1])[0]
    f = go.Figure(go.Image(z=ep.frames[2 * tubelet + 1]))
    f.add_scatter(x=[tu], y=[tv], mode="markers", name="true wrist",
                  marker=dict(size=12, symbol="circle-open", color="lime", line_width=2))
    f.add_scatter(x=[pu], y=[pv], mode="markers", name="probe", marker=dict(size=12, symbol="x", color="magenta"))
    err = np.linalg.norm(pred_xyz[tubelet] - true_xyz[tubelet]) * 100
    return f.update_layout(width=420, height=420, title=f"frame {2 * tubelet + 1}: 3D error {err:.1f} cm")


# -- what each pyramid level carries (lesson 04) -----------------------------------------------------------
PYRAMID_PROBE_SERIES = {"old": ("old stream (saw)", "#1f77b4"), "new": ("new stream (thought)", "#ff7f0e"),
                        "fused": ("fused level vector (untrained pyramid)", "#2ca02c")}


def pyramid_probe_figure(hits: dict, baseline: np.ndarray, layers, keep=None,
                         subset: str = "all families") -> go.Figure:
    """Held-out probe accuracy per thinker layer, one bar series per stream: `hits` {"old" | "new" | "fused":
    [L, n_test] bool, True where the probe was right}, `baseline` [n_test] bool (the majority class right),
    `keep` [n_test] bool the held-out episodes to average over (default all), `subset` names them in the title."""
    keep = np.ones(len(baseline), bool) if keep is None else np.asarray(keep)
    fig = go.Figure([go.Bar(x=[f"layer {l}" for l in layers], y=np.asarray(hits[s])[:, keep].mean(1), name=name,
                            marker_color=c) for s, (name, c) in PYRAMID_PROBE_SERIES.items() if s in hits])
    fig.add_hline(y=np.asarray(baseline)[keep].mean(), line_dash="dash", annotation_text="majority class")
    return fig.update_layout(height=340, width=760, yaxis=dict(range=[0, 1.05], title="held-out accuracy"),
                             title=f"next-target colour from each layer — {subset} ({int(keep.sum())} held-out)")
