"""The rollout viewer's computations: one episode's forecasts, errors, attributions and figures.

Gradio-free, so it can be tested and timed on its own; `tkjepa.viewer.app` lays it out in a page.

Speed. Everything that does not depend on a control is computed once, when an episode is first selected
(`Viewer.episode`): its `ForecastData` row, the frame strip, and every model's 32-frame forecast both ways —
recursive (each window's predictions fed back as the next window's context) and one-shot windows (each window
starts from the true past, as in lesson 07). Moving the horizon slider or toggling a model then only slices
and draws. An ablated forecast (a few ms) is computed on demand and cached per layer set.

Baseline. Attribution and ablation replace thinker states by the per-layer mean state of the *reference
episodes* (the first `reference_episodes` of the folder), as `tkjepa.attribution` does over its evaluated
episodes: one episode's own mean would carry that episode's information.

Numbers are the benchmark's: the folder's episodes go through `forecast.data.folder_data` and errors through
`tkjepa.metrics`, so an episode's ADE here is its ADE in `tkjepa evaluate`. The forecast geometry, the joints
and the sampler are the `thinkjepa` checkpoint's own (`ForecasterConfig.forecast`).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image, ImageDraw

from tkjepa.attribution import (AttributionConfig, ablate_layers, ablation_delta_ade, baseline_states,
                                integrated_gradients, scalar_terms)
from tkjepa.backbones import Backbones, load_backbones
from tkjepa.checkpoint import CheckpointError
from tkjepa.egodex import EgoDexFormatError, find_episodes, load_episode
from tkjepa.episode import WRIST
from tkjepa.forecast.data import ForecastConfig, ForecastData, build
from tkjepa.forecast.evaluate import checkpoint_folders
from tkjepa.forecast.model import MODELS, ForecasterConfig, load_forecaster
from tkjepa.forecast.store import folder_data
from tkjepa.metrics import const_velocity, trajectory_scores
from tkjepa.sampling import DualTemporalSampler, SampleIndices
from tkjepa.viz import truth_figure
BASELINE = "const_velocity"
FIRST_STEPS, COMPLETE = 128, 0.01  # IG points first tried; the share of |s − s_base| completeness may miss by
COLOURS = {"thinkjepa": "#d62728", "jepa_only": "#1f77b4", "vlm_only": "#9467bd", "oracle": "#2ca02c",
           BASELINE: "#7f7f7f"}
MODES = {"recursive": "recursive: each window's predictions feed the next",
         "one_shot": "one-shot windows: each window starts from the true past"}
STRIP_COLOURS = {"dense": (31, 119, 180), "thinker": (255, 127, 14), "future": (44, 160, 44),
                 "pointer": (214, 39, 40)}


class UploadError(ValueError):
    """An uploaded episode the viewer cannot show; the message says why, in words for the page."""


@dataclass
class ViewerConfig:
    data: Path                      # the EgoDex-format folder listed in the episode picker
    checkpoints: Path               # forecaster checkpoints (<name>/config.json), loaded by folder name
    encoder: str | Path             # the backbones the checkpoints were trained on (folder or hub name)
    thinker: str | Path
    cache: Path | None = None       # encoder tokens and thinker features of the reference episodes
    reference_episodes: int = 48    # the folder's first N episodes: precomputed, and the ablation baseline
    max_upload_mb: float = 50.0     # per uploaded file; larger ones are refused with a message
    cached_episodes: int = 64       # EpisodeViews kept in memory (least recently used dropped first)
    threads: int = 1                # torch CPU threads (the models are tiny; more threads only contend)
    planner: Path | None = None     # a planner folder (tabletop): the planning panel plays its episodes back
    planner_encoder: str | Path | None = None  # the encoder the planner was trained in (needed with `planner`)


@dataclass
class EpisodeView:
    """One episode, with everything the controls only slice. Trajectories are [F, J, 3] metres, F = 32."""

    key: str
    data: ForecastData              # this episode's row (a batch of one)
    text: str                       # the thinker's generated text
    instruction: str
    task: str
    frames: np.ndarray              # [T, H, W, 3] uint8
    positions: np.ndarray           # [T, J, 3] the forecast joints, whole episode
    indices: SampleIndices          # what the dual-temporal sampler gives each branch
    forecasts: dict[str, dict[str, torch.Tensor]]  # model -> mode -> [F, J, 3]
    ablated: OrderedDict = field(default_factory=OrderedDict)  # (checkpoint, layers) -> mode -> [F, J, 3]
    pointer: np.ndarray | None = None  # thinkjepa's grounding weights over the last observed frame's G × G cells

    @property
    def start(self) -> int:
        return self.indices.forecast_start

    @property
    def horizon(self) -> int:
        return int(self.data.traj.shape[1])


def checkpoint_variant(cfg: ForecasterConfig) -> tuple[str, str]:
    """(injection, layer subset) of a thinkjepa checkpoint's config, as the selectors name them."""
    subset = "all layers" if cfg.levels == "all" else f"layers: {cfg.levels}"
    if cfg.streams != ForecasterConfig.streams:
        subset += f", streams: {cfg.streams}"
    return cfg.injection, subset


def teacher_window(d: ForecastData, k: int, Tc: int, Tf: int, fpt: int) -> ForecastData:
    """The inputs of window k as if the true past up to it had been observed (window 0: `d` itself).

    Context = the true latents of the Tc tubelets before the window; `past` = the true joints of its last two
    frames, so the head's anchor is where the hand truly was.
    """
    if k == 0:
        return d
    seq = torch.cat([d.ctx, d.future], dim=1)                         # [B, Tc + Tr, N, D]
    f = k * Tf * fpt                                                   # frames already forecast
    return replace(d, ctx=seq[:, k * Tf:k * Tf + Tc], past=d.traj[:, f - 2:f], actions=d.actions[:, k * Tf:])


@torch.no_grad()
def forecast_both(model, d: ForecastData, windows: int) -> dict[str, torch.Tensor]:
    """{"recursive", "one_shot"} -> joints [B, windows·Tf·fpt, J, 3] of a Forecaster on `d`."""
    pc, fpt = model.cfg.predictor, model.cfg.head.frames_per_tubelet
    idx = torch.arange(len(d))
    one_shot = [model(teacher_window(d, k, pc.context_tubelets, pc.future_tubelets, fpt), idx, 1)[1]
                for k in range(windows)]
    return {"recursive": model(d, idx, windows)[1], "one_shot": torch.cat(one_shot, dim=1)}


def const_velocity_both(d: ForecastData, windows: int, frames_per_window: int) -> dict[str, torch.Tensor]:
    """The constant-velocity baseline in both modes (one-shot: restarted from the true past each window)."""
    f = frames_per_window
    one_shot = [const_velocity(d.past if k == 0 else d.traj[:, k * f - 2:k * f], f) for k in range(windows)]
    return {"recursive": const_velocity(d.past, windows * f), "one_shot": torch.cat(one_shot, dim=1)}


def stage_upload(files, max_mb: float, root: Path) -> Path:
    """Check an uploaded .hdf5 + .mp4 pair and copy it under `root` as one episode -> the .hdf5 path.

    Raises UploadError for anything but exactly one .hdf5 and one .mp4, each at most `max_mb` MB.
    """
    paths = [Path(f) for f in (files or [])]
    by_ext = {ext: [p for p in paths if p.suffix.lower() == ext] for ext in (".hdf5", ".mp4")}
    other = [p.name for p in paths if p.suffix.lower() not in by_ext]
    if len(by_ext[".hdf5"]) != 1 or len(by_ext[".mp4"]) != 1 or other:
        got = ", ".join(p.name for p in paths) or "nothing"
        raise UploadError(f"upload one EgoDex episode: exactly one .hdf5 file and its .mp4 video (got {got})")
    for p in paths:
        mb = p.stat().st_size / 2**20
        if mb > max_mb:
            raise UploadError(f"{p.name} is {mb:.1f} MB; the viewer takes files up to {max_mb:g} MB")
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=root))
    stem = by_ext[".hdf5"][0].stem
    for p in paths:  # load_episode finds the video beside the .hdf5 under the same stem
        shutil.copyfile(p, folder / f"{stem}{p.suffix.lower()}")
    return folder / f"{stem}.hdf5"


def reference_data(folder, backbones: Backbones, cfg: ForecastConfig, episodes: int, cache_dir=None
                   ) -> tuple[ForecastData, list, list]:
    """`forecast.data.folder_data` of the folder's first `episodes` usable episodes: data, texts, paths.

    Decoding the videos dominates the viewer's start (~10 s for 48 episodes on a busy laptop); the folder's
    cache entry is keyed by the files' identities and the models' weights, so an edited episode or a retrained
    encoder misses it. An episode that cannot be used is left out (with a warning), so it is not offered.
    """
    skipped: list[dict] = []
    data, texts, paths = folder_data(folder, backbones, cfg, cache_dir, episodes, progress=False, skipped=skipped)
    for row in skipped:
        warnings.warn(f"{row['path']}: {row['error']}; the viewer leaves it out", stacklevel=2)
    return data, texts, paths


class Viewer:
    """The loaded models, the reference episodes and a cache of EpisodeViews; thread-safe."""

    def __init__(self, config: ViewerConfig, backbones: Backbones | None = None):
        self.config = c = config
        torch.set_num_threads(c.threads)
        self.models = {p.name: load_forecaster(p).requires_grad_(False) for p in checkpoint_folders(c.checkpoints)}
        missing = [n for n in ("thinkjepa", "jepa_only") if n not in self.models]
        if missing:
            raise CheckpointError(f"{c.checkpoints}: no forecaster checkpoints {missing}; "
                                  "`tkjepa bench --save-checkpoints DIR` trains them")
        self.fcfg = self.models["thinkjepa"].cfg.forecast
        self.backbones = backbones or load_backbones(c.encoder, c.thinker)
        # (injection, layer subset) -> checkpoint name, for every thinkjepa checkpoint
        self.variants = {checkpoint_variant(m.cfg): n for n, m in sorted(self.models.items())
                         if m.cfg.model == "thinkjepa"}
        # (injection, layer subset) of the `thinkjepa` checkpoint: the selectors' first choices
        self.default_variant = checkpoint_variant(self.models["thinkjepa"].cfg)
        self.paths = {self._key(p): p for p in find_episodes(c.data)}
        ref, texts, ref_paths = reference_data(c.data, self.backbones, self.fcfg, c.reference_episodes, c.cache)
        self.reference = {self._key(Path(p)): (i, texts[i]) for i, p in enumerate(ref_paths)}
        for p in find_episodes(c.data)[:c.reference_episodes]:  # the reference load refused these: not offered
            if str(p) not in ref_paths:
                self.paths.pop(self._key(p), None)
        self.ref_data = ref
        self.base = tuple(b[:, :, :1] for b in baseline_states(ref))   # ([1, L, 1, Dv], [1, L, 1, Dv])
        self.sampler = DualTemporalSampler(self.fcfg.sampler)
        self.upload_root = Path(tempfile.mkdtemp(prefix="tkjepa-viewer-"))
        self._views: OrderedDict[str, EpisodeView] = OrderedDict()
        self._lock = threading.RLock()

    def _key(self, path: Path) -> str:
        """An episode's name in the picker: its path under the folder, without the suffix."""
        root = Path(self.config.data)
        rel = path.relative_to(root) if root.is_dir() else Path(path.name)
        return str(rel.with_suffix(""))

    # ---- choices ---------------------------------------------------------------------------------
    @property
    def episode_keys(self) -> list[str]:
        return list(self.paths)

    def shown_models(self) -> list[str]:
        """The models the page can toggle: shipped headline checkpoints, then the constant-velocity baseline."""
        return [n for n in MODELS if n in self.models] + [BASELINE]

    def injections(self) -> list[str]:
        return sorted({inj for inj, _ in self.variants}, key=lambda s: (s != self.default_variant[0], s))

    def subsets(self) -> list[str]:
        return sorted({sub for _, sub in self.variants}, key=lambda s: (s != self.default_variant[1], s))

    def checkpoint(self, injection: str | None, subset: str | None) -> tuple[str, str]:
        """(checkpoint name, note): the thinkjepa checkpoint shipped for this combination, else the default."""
        name = self.variants.get((injection, subset))
        if name is not None:
            return name, ""
        return "thinkjepa", (f"no shipped thinkjepa checkpoint for injection {injection!r} with {subset!r}: "
                             "showing the default `thinkjepa`")

    def layers(self, checkpoint: str = "thinkjepa") -> tuple[list[int], list[int]]:
        """(decoder layer of each cached thinker row, rows the checkpoint's predictor reads)."""
        pyr = self.models[checkpoint].predictor.pyramid
        return list(pyr.config.layers), pyr.read_rows

    # ---- episodes --------------------------------------------------------------------------------
    def add_upload(self, files) -> str:
        """Validate and register an uploaded episode (computing its view) -> its key; UploadError if unusable."""
        h5 = stage_upload(files, self.config.max_upload_mb, self.upload_root)
        key = f"upload/{h5.parent.name.removeprefix('upload-')}/{h5.stem}"
        try:
            with self._lock:
                self.paths[key] = h5
                self.episode(key)
        except Exception as e:  # unregister it whatever went wrong; explain what a bad file causes
            with self._lock:
                self.paths.pop(key, None)
            shutil.rmtree(h5.parent, ignore_errors=True)
            if not isinstance(e, (EgoDexFormatError, OSError, KeyError, ValueError)):
                raise
            msg = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
            raise UploadError(msg.replace(f"{h5.parent}/", "")) from e
        return key

    def episode(self, key: str) -> EpisodeView:
        """The view of episode `key`, computed on first use (~0.1 s) and kept in an LRU cache."""
        with self._lock:
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key]
            if key not in self.paths:
                raise KeyError(f"unknown episode {key!r}; known: the folder's episodes and uploads")
            view = self._compute(key)
            self._views[key] = view
            while len(self._views) > self.config.cached_episodes:
                self._views.popitem(last=False)
            return view

    def _compute(self, key: str) -> EpisodeView:
        ep = load_episode(self.paths[key], size=self.backbones.encoder.input_size
                          or self.fcfg.grid * self.backbones.encoder.patch_size)
        if key in self.reference:  # the benchmark's own row: same numbers as `tkjepa evaluate`
            i, text = self.reference[key]
            d = self.ref_data.subset([i])
        else:
            cache = None if self.config.cache is None else Path(self.config.cache) / "thinker"
            d, texts = build([ep], self.backbones, self.fcfg, cache_dir=cache, progress=False)
            text = texts[0]
        windows = self.fcfg.windows
        # every checkpoint (the thinkjepa variants too: the selectors switch between them); the oracle only
        # where the episode has the world's subgoal annotations it is told
        forecasts = {n: {mode: p[0] for mode, p in forecast_both(m, d, windows).items()}
                     for n, m in self.models.items() if m.cfg.model != "oracle" or bool(d.has_oracle.all())}
        fpw = d.traj.shape[1] // windows
        forecasts[BASELINE] = {mode: p[0] for mode, p in const_velocity_both(d, windows, fpw).items()}
        pointer = None
        if getattr(self.models["thinkjepa"], "grounding", None) is not None:
            with torch.no_grad():
                pointer = self.models["thinkjepa"](d, torch.arange(1), 1, pointer=True)[2][0].numpy()
        return EpisodeView(key=key, data=d, text=text, instruction=ep.instruction, task=ep.task, frames=ep.frames,
                           positions=ep.positions(list(self.fcfg.joints)), indices=self.sampler.sample(ep.num_frames),
                           forecasts=forecasts, pointer=pointer)

    def forecast(self, view: EpisodeView, model: str, mode: str, checkpoint: str = "thinkjepa",
                 ablated: tuple[int, ...] = ()) -> torch.Tensor:
        """[F, J, 3]: `model`'s forecast ("thinkjepa" = the selected `checkpoint`, with `ablated` rows)."""
        if model != "thinkjepa":
            return view.forecasts[model][mode]
        if not ablated:
            return view.forecasts[checkpoint][mode]
        key = (checkpoint, tuple(sorted(ablated)))
        with self._lock:
            if key not in view.ablated:
                d = ablate_layers(view.data, key[1], self.base)
                view.ablated[key] = {m: p[0] for m, p in forecast_both(self.models[checkpoint], d,
                                                                       self.fcfg.windows).items()}
                while len(view.ablated) > 32:
                    view.ablated.popitem(last=False)
            return view.ablated[key][mode]

    def errors(self, view: EpisodeView, pred: torch.Tensor, frames: int) -> dict:
        """`metrics.trajectory_scores` of one forecast [F, J, 3] over its first `frames` frames (metres)."""
        d = view.data
        return trajectory_scores(pred[None], d.traj, d.valid, frames)

    # ---- attribution -----------------------------------------------------------------------------
    def attribution(self, view: EpisodeView, checkpoint: str = "thinkjepa",
                    cfg: AttributionConfig | None = None) -> dict:
        """Per-layer IG of the wrist-progress scalar (`tkjepa.attribution`) and ΔADE of ablating each layer.

        {"layers", "used", "attribution" [L] (m, signed), "ablation_delta_ade" [L] (m), "ade_full", "s",
        "s_base", "delta", "n_steps"}; or {"skipped": reason} when the scalar is undefined for this episode.
        IG takes `FIRST_STEPS` points, and `cfg.n_steps` where that misses completeness by over `COMPLETE`.
        """
        cfg = cfg or AttributionConfig()
        model, d = self.models[checkpoint], view.data
        layers, used = self.layers(checkpoint)
        _, _, keep, _ = scalar_terms(d, model.cfg.forecast.wrist, cfg)
        if not bool(keep[0]):
            return {"layers": layers, "used": used, "skipped": "the wrist moves < 1 mm by frame "
                    f"{cfg.frame} (or frame {cfg.frame} is missing): the attribution scalar is undefined"}
        for n in sorted({min(cfg.n_steps, FIRST_STEPS), cfg.n_steps}):  # few points first, all of them if needed
            ig = integrated_gradients(model, d, replace(cfg, n_steps=n), base=self.base)
            if float(ig["delta"].abs().max()) <= COMPLETE * float((ig["s"] - ig["s_base"]).abs().max()) + 1e-7:
                break
        a_old, a_new, delta = ig["old"], ig["new"], ig["delta"]
        s, s_base = float(ig["s"][0]), float(ig["s_base"][0])
        full, delta_ade = ablation_delta_ade(model, d, cfg, base=self.base)
        per_layer = (a_old.sum((2, 3)) + a_new.sum((2, 3)))[0]       # [L] signed, metres of progress
        return {"layers": layers, "used": used, "attribution": per_layer.tolist(), "ablation_delta_ade": delta_ade,
                "ade_full": full, "s": s, "s_base": s_base, "delta": float(delta.abs().max()), "n_steps": n}

    # ---- figures ---------------------------------------------------------------------------------
    def frame_strip(self, view: EpisodeView, cell: int = 56, cols: int = 16) -> np.ndarray:
        """[H, W, 3] uint8: frames 0 … s+F−1 in a grid; a blue frame marks the dense JEPA window, an orange
        bar the thinker's uniform frames, a green bar the forecast targets (the dual-temporal sampler); a red
        square on the last observed frame, the cell thinkjepa's pointer weighs most (where it found the named
        object). Longer episodes show only the frames either branch reads and the targets."""
        s, F = view.start, view.horizon
        dense, thinker = set(view.indices.dense.tolist()), set(view.indices.thinker.tolist())
        end = min(len(view.frames), s + F)
        shown = list(range(end)) if end <= 4 * cols else sorted(dense | thinker | set(range(s, end)))
        pad, label = 4, 12
        w, h = cell + 2 * pad, cell + 2 * pad + label + 5
        rows = -(-len(shown) // cols)
        img = Image.new("RGB", (cols * w, rows * h), "white")
        draw = ImageDraw.Draw(img)
        for i, t in enumerate(shown):
            x, y = (i % cols) * w, (i // cols) * h
            tile = Image.fromarray(view.frames[t]).resize((cell, cell), Image.NEAREST)
            if t >= s:  # targets: never seen by either branch
                tile = Image.blend(tile, Image.new("RGB", tile.size, "white"), 0.35)
            img.paste(tile, (x + pad, y + pad))
            if t in dense:
                draw.rectangle([x + 1, y + 1, x + w - 2, y + cell + 2 * pad - 2], outline=STRIP_COLOURS["dense"],
                               width=3)
            bar = "thinker" if t in thinker else "future" if t >= s else None
            if bar:
                draw.rectangle([x + pad, y + cell + 2 * pad, x + pad + cell, y + cell + 2 * pad + 4],
                               fill=STRIP_COLOURS[bar])
            draw.text((x + pad, y + cell + 2 * pad + 5), f"{t}" + (" start" if t == s else ""), fill=(60, 60, 60))
            if t == s - 1 and view.pointer is not None:
                g = int(round(len(view.pointer) ** 0.5))
                r, c = divmod(int(view.pointer.argmax()), g)
                x0, y0 = x + pad + c * cell / g, y + pad + r * cell / g
                draw.rectangle([x0, y0, x0 + cell / g, y0 + cell / g], outline=STRIP_COLOURS["pointer"], width=2)
        return np.asarray(img)

    def trajectory_figure(self, view: EpisodeView, models, horizon: int, mode: str, checkpoint: str = "thinkjepa",
                          ablated: tuple[int, ...] = (), joint: str = WRIST) -> go.Figure:
        """3D hand trajectory: observed, true future and each selected model's forecast, `horizon` frames."""
        j = list(self.fcfg.joints).index(joint)
        s, pos = view.start, view.positions
        past, true = pos[:s, j], view.data.traj[0, :horizon, j].numpy()
        fig = truth_figure(past, true)
        for n in models:
            if n not in view.forecasts:
                continue
            full = self.forecast(view, n, mode, checkpoint)
            traces = [(full, n if n != "thinkjepa" or not ablated else f"{n} (all layers)", "solid")]
            if n == "thinkjepa" and ablated:
                traces.append((self.forecast(view, n, mode, checkpoint, ablated), f"{n}, ablated {list(ablated)}",
                               "dash"))
            for pred, name, dash in traces:
                p = np.concatenate([past[-1:], pred[:horizon, j].numpy()])  # start at the last observed frame
                fig.add_scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="lines", name=name,
                                  line=dict(color=COLOURS[n], width=5, dash="dash" if n == BASELINE else dash))
        return fig.update_layout(
            height=480, margin=dict(l=0, r=0, t=30, b=0), legend=dict(x=0.01, y=0.98, font_size=11),
            title=dict(text=f"{joint}: {s} observed + {horizon} forecast frames ({mode.replace('_', '-')})",
                       font_size=13),
            uirevision=view.key,  # redraws keep the camera where the user turned it
            scene=dict(aspectmode="data", xaxis_title="x (m)", yaxis_title="y (m)", zaxis_title="z (m)",
                       camera=dict(eye=dict(x=1.4, y=1.4, z=0.9))))

    def error_figure(self, view: EpisodeView, models, horizon: int, mode: str, checkpoint: str = "thinkjepa",
                     ablated: tuple[int, ...] = ()) -> go.Figure:
        """Per-frame error (cm, over the forecast joints) of each selected model against the horizon, this episode."""
        F, fpw = view.horizon, view.horizon // self.fcfg.windows
        x = np.arange(1, F + 1)
        fig = go.Figure()
        for n in models:
            if n not in view.forecasts:
                continue
            runs = [("", self.forecast(view, n, mode, checkpoint), "solid")]
            if n == "thinkjepa" and ablated:
                runs.append((f", ablated {list(ablated)}", self.forecast(view, n, mode, checkpoint, ablated), "dot"))
            for suffix, pred, dash in runs:
                y = 100 * np.asarray(self.errors(view, pred, F)["ade_per_frame"])
                fig.add_scatter(x=x, y=y, name=n + suffix, mode="lines",
                                line=dict(color=COLOURS[n], dash="dash" if n == BASELINE else dash))
        fig.add_vrect(x0=0.5, x1=fpw + 0.5, fillcolor="#2ca02c", opacity=0.08, line_width=0,
                      annotation_text="one predictor call", annotation_position="top left")
        fig.add_vline(x=horizon, line_color="black", line_width=1)
        return fig.update_layout(height=360, margin=dict(l=50, r=10, t=40, b=40),
                                 title=f"error vs horizon (line: the slider's {horizon} frames)",
                                 xaxis=dict(title="frames after the forecast start", range=[0.5, F + 0.5]),
                                 yaxis_title="ADE per frame (cm)", legend=dict(orientation="h", y=-0.25, font_size=11))

    @staticmethod
    def attribution_figure(result: dict) -> go.Figure:
        """Bars per thinker layer: signed IG attribution and ΔADE when the layer is ablated (mm)."""
        x = [f"layer {l}" + ("" if r in result["used"] else " (unread)") for r, l in enumerate(result["layers"])]
        fig = go.Figure()
        if "skipped" in result:
            return fig.update_layout(height=360, title=result["skipped"])
        fig.add_bar(x=x, y=[1e3 * v for v in result["attribution"]], name="IG attribution to wrist progress",
                    marker_color="#1f77b4")
        fig.add_bar(x=x, y=[1e3 * v for v in result["ablation_delta_ade"]], name="ΔADE when ablated",
                    marker_color="#ff7f0e")
        return fig.update_layout(height=360, barmode="group", margin=dict(l=50, r=10, t=40, b=40),
                                 title=f"thinker layers, {result.get('episode', 'this episode')} (mm)",
                                 yaxis_title="mm",
                                 legend=dict(orientation="h", y=-0.2, font_size=11))
