"""The figures and helpers several lessons share: the exercises' answer check, clips side by side, episodes
in 3D, the thinker's layers in the predictor, latents in 2D and the forecasters a lesson scores (the shipped
checkpoint, or a briefly trained stand-in where it is missing)."""

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
