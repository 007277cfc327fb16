"""The lessons' helpers: figures that several lessons draw, the exercises' answer check, and the forecasters a
lesson scores (the shipped checkpoint, or a briefly trained stand-in where it is missing).

Figures are plotly `go.Figure`s, returned for the caller to `.show()` (or to hand to `tkjepa.widgets.controls`,
which redraws them when a widget moves). Nothing here knows where the shipped files live: the lessons pass
`tkjepa.paths` locations in, as the command layer does.

- frames: `strip`, `frames_figure`, `image_row` — clips side by side, the way every lesson shows video;
- episodes in 3D: `scene_figure` (the hand's joints and the objects of one episode), `truth_figure` and
  `forecast_figure` (one joint's observed path, its true future and each model's forecast, window by window;
  the rollout viewer draws on `truth_figure` too);
- the thinker's layers in the predictor: `pyramid_figure` (layers -> pyramid levels -> blocks, by the pyramid's
  rules), `wiring_figure` (the row each block of a trained predictor reads, and its gate);
- latents: `pca_2d`, the two principal directions of a set of vectors;
- exercises: `check`;
- forecasters: `shipped_or_trained`, `load_forecasters`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from tkjepa.episode import WRIST, Episode
from tkjepa.pyramid import block_groups, level_rows
from tkjepa.world.scene import COLORS

# the forecasters' colours in every lesson's figures
MODEL_COLOURS = {"thinkjepa": "#d62728", "jepa_only": "#1f77b4", "vlm_only": "#9467bd", "oracle": "#2ca02c",
                 "const_velocity": "#7f7f7f", "thinkjepa_film": "#ff7f0e", "thinkjepa_adaln": "#8c564b",
                 "thinkjepa_levels_mid": "#e377c2", "thinkjepa_levels_last": "#17becf",
                 "thinkjepa_official": "#bcbd22"}


# -- exercises -------------------------------------------------------------------------------------------
def check(answer, expected, name: str, tol: float | None = None) -> None:
    """An exercise's check. `answer` None: not answered yet (a note, no error). Otherwise it must be right:
    equal to `expected`, within `tol` of it (numbers, `tol` given), or — `expected` a function — make
    `expected(answer)` true (for exercises with many right answers)."""
    if answer is None:
        print(f"{name}: not answered yet — fill it in and re-run")
        return
    if callable(expected):
        ok = bool(expected(answer))
    elif tol:
        ok = abs(answer - expected) <= tol
    else:
        ok = answer == expected
    if not ok:
        raise AssertionError(f"{name}: {answer!r} is not right, try again")
    print(f"{name}: correct")


# -- frames ----------------------------------------------------------------------------------------------
def strip(clip: np.ndarray, gap: int = 2) -> np.ndarray:
    """Frames [F, H, W, 3] uint8 -> one image [H, F·(W+gap), 3]: side by side, `gap` white columns between."""
    padded = np.pad(clip, ((0, 0), (0, 0), (0, gap), (0, 0)), constant_values=255)
    return np.concatenate(list(padded), axis=1)


def frames_figure(frames: np.ndarray, title: str = "", height: int = 170) -> go.Figure:
    """A clip [F, H, W, 3] as one strip of frames, without axes."""
    fig = px.imshow(strip(np.asarray(frames)), height=height, title=title)
    fig.update_xaxes(visible=False).update_yaxes(visible=False)
    return fig.update_layout(margin=dict(l=0, r=0, t=40, b=0))


def image_row(images, titles=None, title: str = "", height: int = 260) -> go.Figure:
    """Images [H, W, 3] in one row of subplots, each with its own title (e.g. the frame it shows)."""
    images = list(images)
    fig = make_subplots(rows=1, cols=len(images), subplot_titles=None if titles is None else list(titles))
    for k, img in enumerate(images, 1):
        fig.add_trace(go.Image(z=img), row=1, col=k)
    fig.update_xaxes(visible=False).update_yaxes(visible=False)
    return fig.update_layout(title=title or None, height=height,
                             margin=dict(l=5, r=5, t=70 if title else 30, b=5))


# -- episodes in 3D --------------------------------------------------------------------------------------
_SYMBOLS = {"cube": "square", "ball": "circle", "cylinder": "diamond", "bowl": "circle-open"}


def scene_figure(ep: Episode, title: str | None = None) -> go.Figure:
    """One world episode in 3D: the wrist and fingertips over time (colour = frame), the objects where they
    start (a line where one moves: the held or pushed object), and the forecast start (T // 2) as a black x."""
    pos = ep.positions()                                 # [T, J, 3]
    objs = np.asarray(ep.extras["object_positions"])     # [T, K, 3] base centres
    t_axis = np.arange(ep.num_frames)
    fig = go.Figure()
    for j, name in enumerate(ep.joint_names):
        if name == "rightForearm":
            continue
        wrist = name == WRIST
        fig.add_trace(go.Scatter3d(
            x=pos[:, j, 0], y=pos[:, j, 1], z=pos[:, j, 2], mode="lines+markers", name=name,
            text=[f"t={t}" for t in t_axis], opacity=1.0 if wrist else 0.45,
            line=dict(color=t_axis, colorscale="Viridis", width=6 if wrist else 2),
            marker=dict(size=3 if wrist else 1.5, color=t_axis, colorscale="Viridis", showscale=wrist,
                        colorbar=dict(title="frame", len=0.6) if wrist else None)))
    for k, oname in enumerate(ep.extras["object_names"]):
        color, shape = str(oname).split()
        rgb = "rgb({},{},{})".format(*COLORS[color])
        size = 10 if shape == "bowl" else 7
        path = objs[:, k] if np.linalg.norm(objs[-1, k] - objs[0, k]) > 0.01 else objs[:1, k]
        moved = len(path) > 1
        fig.add_trace(go.Scatter3d(
            x=path[:, 0], y=path[:, 1], z=path[:, 2], mode="lines+markers" if moved else "markers", name=str(oname),
            line=dict(color=rgb, width=4),
            marker=dict(size=[size] + [2] * (len(path) - 1) if moved else size, color=rgb, symbol=_SYMBOLS[shape])))
    w = ep.positions([WRIST])[:, 0]
    half = ep.num_frames // 2
    fig.add_trace(go.Scatter3d(x=[w[half, 0]], y=[w[half, 1]], z=[w[half, 2]], mode="markers",
                               name=f"forecast start (t={half})", marker=dict(size=8, color="black", symbol="x")))
    return fig.update_layout(
        title=title if title is not None else f"“{ep.instruction}”", height=520,
        scene=dict(aspectmode="data", xaxis_title="x (m)", yaxis_title="y (m)", zaxis_title="z (m)",
                   camera=dict(eye=dict(x=0.2, y=-1.6, z=1.1))),
        legend=dict(itemsizing="constant"), margin=dict(l=0, r=0, t=40, b=0))


def truth_figure(past: np.ndarray, future: np.ndarray) -> go.Figure:
    """One joint in 3D before any forecast: its observed path `past` [s, 3], the forecast start (its last point)
    and the true `future` [H, 3] (metres) — what every forecast figure draws its models over."""
    fig = go.Figure()
    fig.add_scatter3d(x=past[:, 0], y=past[:, 1], z=past[:, 2], mode="lines", name="observed",
                      line=dict(color="#aaaaaa", width=4))
    fig.add_scatter3d(x=past[-1:, 0], y=past[-1:, 1], z=past[-1:, 2], mode="markers", name="forecast start",
                      marker=dict(size=6, color="black", symbol="diamond"))
    fig.add_scatter3d(x=future[:, 0], y=future[:, 1], z=future[:, 2], mode="lines+markers", name="true future",
                      line=dict(color="black", width=6), marker=dict(size=2, color="black"))
    return fig


def forecast_figure(past: np.ndarray, future: np.ndarray, forecasts: dict, window: int, labels: dict | None = None,
                    colours: dict | None = None, title: str = "") -> go.Figure:
    """One joint in 3D: its observed path `past` [s, 3] up to the forecast start, the true `future` [H, 3], and
    each forecast {name: [H, 3]} (metres), a line from the last observed position with a dot where each
    `window`-frame predictor window ends. `labels` name the legend entries (default: the names), `colours` the
    lines (default `MODEL_COLOURS`); const_velocity is dashed."""
    labels, colours = labels or {}, colours or MODEL_COLOURS
    ends = np.arange(window, len(future) + 1, window)    # 1-based: the last frame of each window
    fig = truth_figure(past, future)
    for n, path in forecasts.items():
        p = np.concatenate([past[-1:], np.asarray(path)])   # start the line at the last observed position
        c = colours.get(n, "#000000")
        fig.add_scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="lines", name=labels.get(n, n),
                          line=dict(color=c, width=5, dash="dash" if n == "const_velocity" else "solid"))
        fig.add_scatter3d(x=p[ends, 0], y=p[ends, 1], z=p[ends, 2], mode="markers", showlegend=False,
                          hoverinfo="skip", marker=dict(size=3, color=c))
    return fig.update_layout(height=560, width=900, title=dict(text=title, font_size=13),
                             margin=dict(l=0, r=0, t=70, b=0), legend=dict(x=0.7, y=0.9),
                             scene=dict(aspectmode="data", xaxis_title="x (m)", yaxis_title="y (m)",
                                        zaxis_title="z (m)"))


# -- the thinker's layers in the predictor ---------------------------------------------------------------
def pyramid_figure(levels="all", num_blocks: int = 4, layers=(0, 1, 2, 3, 4, 5)) -> go.Figure:
    """Thinker layers (left) -> pyramid levels (middle) -> predictor blocks (right), by the pyramid's rules:
    `level_rows(levels, L)` picks the cached row of each level, `block_groups` the levels each block reads (the
    nearest by relative depth, or a contiguous group when levels outnumber blocks). Grey: a layer no level uses."""
    L = len(layers)
    rows = level_rows(levels, L)                      # cached row of each level
    groups = block_groups(len(rows), num_blocks)      # levels of each block
    y_row, y_blk = np.linspace(0, 1, L), np.linspace(0, 1, num_blocks)  # heights, shallow at the bottom
    fig = go.Figure()
    for r in rows:
        fig.add_scatter(x=[0, 1], y=[y_row[r]] * 2, mode="lines", line_color="#888", hoverinfo="skip", showlegend=False)
    for i, group in enumerate(groups):
        for lv in group:
            fig.add_scatter(x=[1, 2], y=[y_row[rows[lv]], y_blk[i]], mode="lines", line_color="#d62728",
                            hoverinfo="skip", showlegend=False)
    fig.add_scatter(x=[0] * L, y=list(y_row), mode="markers+text", name="thinker layer",
                    text=[f"layer {l}  " for l in layers], textposition="middle left",
                    marker=dict(size=16, color=["#1f77b4" if r in rows else "lightgrey" for r in range(L)]))
    fig.add_scatter(x=[1] * len(rows), y=[y_row[r] for r in rows], mode="markers+text", name="level (proj, pool, fuse)",
                    text=[f"level {lv}" for lv in range(len(rows))], textposition="top center",
                    marker=dict(size=16, symbol="square",
                                color="#ff7f0e"))
    fig.add_scatter(x=[2] * num_blocks, y=list(y_blk), mode="markers+text",
                    name="predictor block", text=[f"  block {i}" for i in range(num_blocks)],
                    textposition="middle right", marker=dict(size=16, symbol="diamond", color="#2ca02c"))
    return fig.update_layout(
        height=380, width=760, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.05),
        title=f"levels={levels!r}: rows {rows} → blocks read levels {groups} (a group: their mean)",
        xaxis=dict(range=[-0.7, 2.7], tickvals=[0, 1, 2], side="top", showgrid=False, zeroline=False,
                   ticktext=["thinker layers (old + new)", "[o, n, |o−n|, o⊙n] → LN → MLP", "predictor"]),
        yaxis=dict(visible=False, range=[-0.12, 1.12]))


def wiring_figure(layers, block_rows, gates) -> go.Figure:
    """A trained predictor's wiring: the cached thinker rows each block reads (`PyramidExtractor.block_rows`, a
    list of rows per block), each line as wide as the block's gate |a| = |tanh(gate)|, with a labelled at the
    block; rows no block reads (a forecaster trained on a subset of levels) in grey."""
    L, B = len(layers), len(block_rows)
    y_block = [-b * (L - 1) / max(B - 1, 1) for b in range(B)]    # blocks spread over the rows' height
    fig = go.Figure()
    for b, (rows, a) in enumerate(zip(block_rows, gates)):
        for r in rows:
            fig.add_scatter(x=[0, 1], y=[-r, y_block[b]], mode="lines", showlegend=False,
                            line=dict(width=1 + 40 * abs(a), color="#d62728"), hoverinfo="skip")
        fig.add_annotation(x=0.9, y=y_block[b] + 0.25, text=f"a={a:+.3f}", showarrow=False,
                           bgcolor="white", font_size=11)
    used = {r for rows in block_rows for r in rows}
    fig.add_scatter(x=[0] * L, y=[-r for r in range(L)], mode="markers+text", showlegend=False,
                    text=[f"thinker layer {l}{'' if i in used else ' (unread)'}  " for i, l in enumerate(layers)],
                    textposition="middle left",
                    marker=dict(size=16, color=["#1f77b4" if i in used else "#ccc" for i in range(L)]))
    fig.add_scatter(x=[1] * B, y=y_block, mode="markers+text", showlegend=False,
                    marker=dict(size=16, color="#555", symbol="square"),
                    text=[f"  predictor block {b}" for b in range(B)], textposition="middle right")
    return fig.update_layout(height=380, width=820, title="which thinker rows each predictor block reads "
                             "(line width ∝ |gate|)", xaxis=dict(visible=False, range=[-0.8, 1.6]),
                             yaxis=dict(visible=False), margin=dict(l=10, r=10, t=50, b=10))


# -- latents ---------------------------------------------------------------------------------------------
def pca_2d(z: torch.Tensor) -> np.ndarray:
    """Vectors [E, D] -> [E, 2]: their coordinates along the two principal directions (centred, float64)."""
    z = torch.as_tensor(z).double()
    z = z - z.mean(0)
    return (z @ torch.linalg.svd(z, full_matrices=False).Vh[:2].T).numpy()


# -- forecasters -----------------------------------------------------------------------------------------
def shipped_or_trained(name: str, backbones, folder: str | Path, steps: int = 60, episodes: int = 200, seed: int = 0,
                       cache_dir: str | Path | None = None):
    """(Forecaster, "shipped" | "stand-in"): the checkpoint `folder/name` where it has a config.json, else a
    stand-in of the variant `name` (`forecast.model.VARIANTS`) trained for `steps` steps on `episodes` world
    training episodes (dataset seed 1000, the benchmark's training draw) encoded by `backbones`. A stand-in
    has barely left its initialisation: its numbers are not the benchmark's."""
    from tkjepa.forecast.data import ForecastConfig, world_data
    from tkjepa.forecast.model import VARIANTS, load_forecaster, variant_config
    from tkjepa.forecast.train import train

    path = Path(folder) / name
    if (path / "config.json").exists():
        return load_forecaster(path), "shipped"
    if name not in VARIANTS:
        raise ValueError(f"no checkpoint {path} and no recipe for {name!r}; known: {', '.join(VARIANTS)}")
    data, _ = world_data(1000, episodes, backbones, ForecastConfig(), cache_dir, progress=False)
    model, _ = train(variant_config(name, seed=seed, steps=steps), data, progress=False)
    return model, "stand-in"


def load_forecasters(names, backbones, folder: str | Path, steps: int = 60, episodes: int = 200, seed: int = 0,
                     cache_dir: str | Path | None = None) -> tuple[dict, dict]:
    """`shipped_or_trained` for each of `names` -> ({name: model}, {name: "shipped" | "stand-in"}), printing
    what each one is and how long it took."""
    models, source = {}, {}
    for name in names:
        t = time.perf_counter()
        models[name], source[name] = shipped_or_trained(name, backbones, folder, steps, episodes, seed, cache_dir)
        how = ("loaded the shipped checkpoint" if source[name] == "shipped"
               else f"no checkpoint: trained a {steps}-step stand-in")
        print(f"{name:22s} {how} ({time.perf_counter() - t:.1f} s)")
    return models, source


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
                             xaxis=dict(title="u dx", range=[-1.05, 1.05]), yaxis=dict(title="u dy", range=[-1.05, 1.05]))


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


def forecaster_diagram_figure(shapes: dict | None = None) -> go.Figure:
    """The forecaster's data path as boxes and arrows: frozen encoder -> cached latents -> guided predictor <-
    pyramid <- cached thinker features (old/new streams) <- frozen thinker; the observed and predicted latents and the last
    observed joints -> trajectory head -> joints (m). Grey: frozen, computed once and cached; colour: trained.
    `shapes` {box name: text} adds a line (e.g. a measured tensor shape) under a box's name."""
    shapes, w, h = shapes or {}, 0.44, 0.3   # half width and half height of a box
    boxes = {"dense window": (0, 1, "#eee"), "frozen encoder": (1, 1, "#ccc"), "cached latents ctx": (2, 1, "#ddd"),
             "guided predictor": (3, 1, "#8fd18f"), "predicted z": (4, 1, "#d4efd4"),
             "trajectory head": (5, 1, "#ffb366"), "joints (m)": (6, 1, "#ffe0c2"),
             "clip + prompt": (0, 0, "#eee"), "frozen thinker": (1, 0, "#ccc"),
             "thinker features": (2, 0, "#ddd"), "pyramid": (3, 0, "#8fbfe6"),
             "last observed joints": (5.5, 2, "#eee")}
    names = list(boxes)
    fig = go.Figure()

    def arrow(x0, y0, x1, y1):
        fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="",
                           showarrow=True, arrowhead=3, arrowwidth=1.5, arrowcolor="#555")

    for row in (names[:7], names[7:11]):      # left to right along each row
        for a, b in zip(row, row[1:]):
            arrow(boxes[a][0] + w, boxes[a][1], boxes[b][0] - w, boxes[b][1])
    arrow(3, h, 3, 1 - h)                     # pyramid -> guided predictor
    arrow(5.5, 2 - h, 5.2, 1 + h)             # last observed joints -> head
    fig.add_scatter(x=[2, 2, 4.8], y=[1 + h, 1.55, 1.55], mode="lines", line_color="#555", hoverinfo="skip",
                    showlegend=False)         # the observed latents go to the head too, around the predictor
    arrow(4.8, 1.55, 4.8, 1 + h)
    fig.add_annotation(x=3.4, y=1.55, text="observed latents", showarrow=False, yshift=8, font_size=10)
    for name, (x, y, colour) in boxes.items():
        fig.add_shape(type="rect", x0=x - w, x1=x + w, y0=y - h, y1=y + h, fillcolor=colour, line_color="#555",
                      layer="below")
        extra = f"<br><span style='font-size:10px'>{shapes[name]}</span>" if name in shapes else ""
        fig.add_annotation(x=x, y=y, text=f"{name}{extra}", showarrow=False, font_size=11)
    return fig.update_layout(height=360, width=1000, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white",
                             title="the forecaster (grey: frozen, run once and cached; colour: trained)",
                             xaxis=dict(visible=False, range=[-0.5, 6.5]), yaxis=dict(visible=False, range=[-0.4, 2.4]))


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
                        line=dict(color=MODEL_COLOURS.get(n, "#000"), dash="dash" if n == "const_velocity" else "solid"))
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


def pyramid_probe_figure(hits: dict, baseline: np.ndarray, layers, keep=None, subset: str = "all families") -> go.Figure:
    """Held-out probe accuracy per thinker layer, one bar series per stream: `hits` {"old" | "new" | "fused":
    [L, n_test] bool, True where the probe was right}, `baseline` [n_test] bool (the majority class right),
    `keep` [n_test] bool the held-out episodes to average over (default all), `subset` names them in the title."""
    keep = np.ones(len(baseline), bool) if keep is None else np.asarray(keep)
    fig = go.Figure([go.Bar(x=[f"layer {l}" for l in layers], y=np.asarray(hits[s])[:, keep].mean(1), name=name,
                            marker_color=c) for s, (name, c) in PYRAMID_PROBE_SERIES.items() if s in hits])
    fig.add_hline(y=np.asarray(baseline)[keep].mean(), line_dash="dash", annotation_text="majority class")
    return fig.update_layout(height=340, width=760, yaxis=dict(range=[0, 1.05], title="held-out accuracy"),
                             title=f"next-target colour from each layer — {subset} ({int(keep.sum())} held-out)")


# -- architecture diagrams ----------------------------------------------------------------------------------
def diagram_figure(boxes: dict, arrows, title: str = "", height: int = 320) -> go.Figure:
    """Boxes and arrows: `boxes` {name: (x, y, colour)} (a box is 0.88 × 0.6 around its centre), `arrows`
    [(from, to, label)] drawn between the boxes' edges, dashed where the label starts with "no grad"."""
    w, h = 0.44, 0.3
    fig = go.Figure()
    for a, b, label in arrows:
        (x0, y0, _), (x1, y1, _) = boxes[a], boxes[b]
        dx, dy = x1 - x0, y1 - y0
        s = min(w / abs(dx) if dx else np.inf, h / abs(dy) if dy else np.inf)   # leave each box at its edge
        fig.add_annotation(x=x1 - s * dx, y=y1 - s * dy, ax=x0 + s * dx, ay=y0 + s * dy, xref="x", yref="y",
                           axref="x", ayref="y", text="", showarrow=True, arrowhead=3, arrowwidth=1.5,
                           arrowcolor="#999" if label.startswith("no grad") else "#555")
        if label:
            fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=label, showarrow=False, font_size=10,
                               yshift=9, bgcolor="rgba(255,255,255,0.8)")
    for name, (x, y, colour) in boxes.items():
        fig.add_shape(type="rect", x0=x - w, x1=x + w, y0=y - h, y1=y + h, fillcolor=colour, line_color="#555",
                      layer="below")
        fig.add_annotation(x=x, y=y, text=name, showarrow=False, font_size=11)
    xs, ys = [b[0] for b in boxes.values()], [b[1] for b in boxes.values()]
    return fig.update_layout(height=height, width=1000, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white",
                             title=title, xaxis=dict(visible=False, range=[min(xs) - 0.6, max(xs) + 0.6]),
                             yaxis=dict(visible=False, range=[min(ys) - 0.5, max(ys) + 0.5]))


def jepa_diagram_figure() -> go.Figure:
    """The JEPA pretraining step: the context encoder sees the unmasked tubelets, the predictor fills in the
    masked ones' latents, and the EMA target encoder (no gradient) encodes the whole clip for the loss."""
    boxes = {"clip (tubelets)": (0, 0.5, "#eee"), "context encoder<br>(visible tokens)": (1.3, 1, "#8fd18f"),
             "predictor<br>(+ mask tokens)": (2.6, 1, "#8fd18f"), "L1 on masked<br>+ VICReg": (3.9, 0.5, "#ffb366"),
             "EMA target encoder<br>(all tokens)": (1.3, 0, "#ccc"), "target latents": (2.6, 0, "#ddd")}
    n = list(boxes)
    return diagram_figure(boxes, [(n[0], n[1], "mask"), (n[1], n[2], ""), (n[2], n[3], "prediction"),
                                  (n[0], n[4], ""), (n[4], n[5], "no grad"), (n[5], n[3], "no grad"),
                                  (n[1], n[4], "no grad: EMA of weights")],
                          "JEPA pretraining (green: trained by the loss; grey: the EMA copy, no gradient)")


def planner_diagram_figure() -> go.Figure:
    """Planning toward a subgoal: the thinker's words name a subgoal, the subgoal head draws its latent z*, and
    CEM scores candidate actions by rolling the action-conditioned world model to ‖ẑ_{t+H} − z*‖; the first
    action of the best plan runs in the world, which answers with the next frame (MPC)."""
    boxes = {"frames so far": (0, 1, "#eee"), "frozen encoder": (1.3, 1, "#ccc"), "z<sub>t</sub>": (2.6, 1, "#ddd"),
             "world model<br>ẑ<sub>t+1</sub> = g(z<sub>t</sub>, a<sub>t</sub>)": (3.9, 1, "#8fd18f"), "energy<br>‖ẑ<sub>t+H</sub> − z*‖": (5.2, 1, "#ffb366"),
             "thinker": (1.3, 0, "#ccc"), "subgoal head → z*": (2.6, 0, "#8fbfe6"), "CEM over actions": (3.9, 2, "#ffe0c2"),
             "world (one action)": (5.2, 2, "#eee")}
    n = list(boxes)
    return diagram_figure(boxes, [(n[0], n[1], ""), (n[1], n[2], ""), (n[2], n[3], ""), (n[3], n[4], "H steps"),
                                  (n[0], n[5], "uniform clip"), (n[5], n[6], "words"), (n[6], n[4], "z*"),
                                  (n[4], n[7], "scores"), (n[7], n[3], "candidates"), (n[7], n[8], "best first action"),
                                  (n[8], n[0], "next frame")],
                          "planning toward the thinker's subgoal (model-predictive control)", height=380)
