"""The dual-temporal sampler: which frames each ThinkJEPA branch sees (paper Sec. 3.2).

From one episode of T frames and a forecast start s, ThinkJEPA builds three index sets:

- dense JEPA window: the last k observed frames, s - 1 - stride·(k-1) … s - 1 (fine motion, short span);
- thinker clip: n frames spread uniformly over the whole observed span [0, s) (long context, sparse);
- future target frames: s, s + stride, … (horizon frames), what the predictor must forecast.

The guarantee everything downstream relies on: neither observed branch ever sees an index ≥ s.
The official code splits each episode at s = T // 2, which is `split=0.5` here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

BRANCHES: tuple[str, ...] = ("dense", "thinker", "future")


@dataclass
class SamplerConfig:
    """How many frames each branch gets, at what stride, and where the forecast starts by default."""

    dense_frames: int = 8      # k: frames in the dense JEPA window, ending at the last observed frame s-1
    dense_stride: int = 1      # gap between dense frames; 1 keeps every frame, as in V-JEPA's clips
    thinker_frames: int = 8    # n: frames for the VLM thinker, spread over all of [0, s); needs s ≥ n
    horizon: int = 16          # future target frames to forecast, starting at s
    future_stride: int = 1     # gap between future targets; >1 forecasts further ahead for the same count
    split: float = 0.5         # default forecast start s = floor(split·T); 0.5 is the official T//2
    rounding: str = "half_up"  # thinker indices from linspace(0, s-1, n): "half_up" (floor(x + 0.5)) or
                               # "floor" (numpy's integer linspace, the official code's)

    def __post_init__(self) -> None:
        if self.rounding not in ("half_up", "floor"):
            raise ValueError(f"SamplerConfig.rounding must be half_up or floor, got {self.rounding!r}")
        for name in ("dense_frames", "dense_stride", "thinker_frames", "horizon", "future_stride"):
            value = getattr(self, name)
            # bool is an int subclass; True frames is always a typo
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"SamplerConfig.{name} must be an integer ≥ 1, got {value!r}")
            setattr(self, name, int(value))
        if not 0.0 < float(self.split) < 1.0:
            raise ValueError(f"SamplerConfig.split must lie strictly between 0 and 1 (a fraction of the "
                             f"episode to observe), got {self.split!r}")

    @classmethod
    def tiny(cls) -> SamplerConfig:
        """For 64-frame world episodes: 8 dense + 8 thinker frames from [0, 32), 16 future targets."""
        return cls(dense_frames=8, dense_stride=1, thinker_frames=8, horizon=16, future_stride=1, split=0.5)

    @property
    def dense_span(self) -> int:
        """Frames covered by the dense window, ends included: the observed frames it needs."""
        return self.dense_stride * (self.dense_frames - 1) + 1

    @property
    def future_span(self) -> int:
        """Frames covered by the future targets, ends included: the frames it needs from s on."""
        return self.future_stride * (self.horizon - 1) + 1


def _index_array(values: Any) -> np.ndarray:
    arr = np.array(values, dtype=np.int64).reshape(-1)
    arr.setflags(write=False)  # frozen means frozen: nobody edits a sample's indices in place
    return arr


# eq=False: a generated __eq__/__hash__ would compare numpy arrays, which is ambiguous
@dataclass(frozen=True, eq=False)
class SampleIndices:
    """Frame indices for one training/eval sample.

    Fields:
        dense: [k] int64, the dense JEPA window, all < forecast_start.
        thinker: [n] int64, the thinker clip, strictly increasing from 0, all < forecast_start.
        future: [horizon] int64, the future targets, all in [forecast_start, num_frames).
        forecast_start: s, the first frame neither observed branch may see.
        num_frames: T, the episode length the indices were drawn for.
    """

    dense: np.ndarray
    thinker: np.ndarray
    future: np.ndarray
    forecast_start: int
    num_frames: int

    def __post_init__(self) -> None:
        for name in BRANCHES:
            object.__setattr__(self, name, _index_array(getattr(self, name)))
        object.__setattr__(self, "forecast_start", int(self.forecast_start))
        object.__setattr__(self, "num_frames", int(self.num_frames))

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in BRANCHES}

    def check(self) -> SampleIndices:
        """Re-verify the no-peeking guarantee and basic sanity; raise ValueError on any breach."""
        s, T = self.forecast_start, self.num_frames
        problems = []
        if not 0 < s < T:
            problems.append(f"forecast start {s} is not inside (0, {T})")
        for name in ("dense", "thinker"):
            idx = getattr(self, name)
            if idx.size and (idx.min() < 0 or idx.max() >= s):
                problems.append(f"{name} indices {idx.tolist()} leave [0, {s})")
        if self.future.size and (self.future.min() < s or self.future.max() >= T):
            problems.append(f"future indices {self.future.tolist()} leave [{s}, {T})")
        for name, idx in self.as_dict().items():
            if np.any(np.diff(idx) <= 0):
                problems.append(f"{name} indices {idx.tolist()} are not strictly increasing")
        if problems:
            raise ValueError("invalid SampleIndices: " + "; ".join(problems))
        return self


class DualTemporalSampler:
    """Turns an episode length (and optionally a forecast start) into `SampleIndices`."""

    def __init__(self, config: SamplerConfig | None = None) -> None:
        self.config = config if config is not None else SamplerConfig()

    @property
    def min_forecast_start(self) -> int:
        """Smallest s: the dense window must fit in [0, s) and the thinker needs n distinct frames there."""
        return max(self.config.dense_span, self.config.thinker_frames)

    @property
    def min_frames(self) -> int:
        """Shortest episode with at least one valid forecast start."""
        return self.min_forecast_start + self.config.future_span

    def valid_starts(self, num_frames: int) -> range:
        """All forecast starts s for which `sample(num_frames, s)` succeeds (possibly empty)."""
        return range(self.min_forecast_start, num_frames - self.config.future_span + 1)

    def forecast_start_for(self, num_frames: int) -> int:
        """Default forecast start floor(split·T); the 1e-9 keeps e.g. 0.29·100 = 28.999… at 29."""
        return int(math.floor(self.config.split * num_frames + 1e-9))

    def _check_request(self, num_frames: int, s: int) -> None:
        c = self.config
        if num_frames < self.min_frames:
            raise ValueError(
                f"episode has {num_frames} frames but dense window k={c.dense_frames} (stride {c.dense_stride}) "
                f"+ thinker n={c.thinker_frames} + horizon={c.horizon} (stride {c.future_stride}) needs ≥ "
                f"{self.min_frames}: the forecast start must be ≥ {self.min_forecast_start} and leave "
                f"{c.future_span} frames from it on")
        where = (f"valid forecast starts for {num_frames} frames are "
                 f"{self.min_forecast_start}..{num_frames - c.future_span}")
        if s < c.dense_span:
            raise ValueError(f"forecast start {s} leaves {s} observed frames but dense window k={c.dense_frames} "
                             f"(stride {c.dense_stride}) needs ≥ {c.dense_span}; {where}")
        if s < c.thinker_frames:
            raise ValueError(f"forecast start {s} leaves {s} observed frames but thinker clip "
                             f"n={c.thinker_frames} needs ≥ {c.thinker_frames} distinct frames; {where}")
        if s + c.future_span > num_frames:
            raise ValueError(f"episode has {num_frames} frames but horizon={c.horizon} (stride {c.future_stride}) "
                             f"from forecast start {s} needs ≥ {s + c.future_span}; {where}")

    def sample(self, num_frames: int, forecast_start: int | None = None) -> SampleIndices:
        """Indices for an episode of `num_frames` frames, forecasting from `forecast_start` (default: split).

        Thinker rounding rule: t_i = floor(x_i + 0.5) with x = linspace(0, s-1, n), i.e. round half up
        (not numpy's round-half-to-even), or t_i = floor(x_i) with `rounding="floor"`. Since n ≤ s,
        consecutive x differ by ≥ 1, so the indices are already strictly increasing: no de-duplication is
        ever needed. n = 1 gives [0].
        """
        c = self.config
        T = int(num_frames)
        s = self.forecast_start_for(T) if forecast_start is None else int(forecast_start)
        self._check_request(T, s)
        # the dense window always ends at s-1: the JEPA branch sees the most recent observation
        dense = s - c.dense_span + c.dense_stride * np.arange(c.dense_frames)
        thinker = np.floor(np.linspace(0.0, s - 1.0, c.thinker_frames) + (0.5 if c.rounding == "half_up" else 0.0))
        future = s + c.future_stride * np.arange(c.horizon)
        return SampleIndices(dense, thinker, future, s, T)

    def sample_random(self, num_frames: int, rng: np.random.Generator) -> SampleIndices:
        """Indices at a forecast start drawn uniformly from `valid_starts(num_frames)` (for training)."""
        starts = self.valid_starts(int(num_frames))
        if len(starts) == 0:
            self._check_request(int(num_frames), self.min_forecast_start)  # raises the "too short" error
        return self.sample(num_frames, int(rng.integers(starts.start, starts.stop)))

    def gather(self, frames: Any, idx: SampleIndices) -> dict[str, Any]:
        """Index `frames` ([T, ...]: pixels [T, H, W, 3], latents [T, N, D], a torch tensor …) on axis 0.

        Returns {"dense": [k, ...], "thinker": [n, ...], "future": [horizon, ...]}, same type as `frames`;
        a plain sequence (e.g. a list of PIL images for a VLM processor) gives lists.
        """
        length = int(frames.shape[0]) if hasattr(frames, "shape") else len(frames)
        if length != idx.num_frames:
            raise ValueError(f"frames have length {length} on axis 0 but the indices were sampled "
                             f"for an episode of {idx.num_frames} frames")
        if not hasattr(frames, "shape"):
            return {name: [frames[i] for i in ids.tolist()] for name, ids in idx.as_dict().items()}
        # index with writable copies: torch warns on (and may not honour) read-only numpy indices
        return {name: frames[ids.copy()] for name, ids in idx.as_dict().items()}

    def timeline_figure(self, idx: SampleIndices, title: str | None = None) -> go.Figure:
        """Three marker rows (dense, thinker, future) on a shared frame axis, forecast start marked.

        The dashed line sits at s - 0.5, the boundary between the last observed frame and the first target.
        """
        s, T = idx.forecast_start, idx.num_frames
        rows = {
            "dense": ("dense JEPA window", "#1f77b4", "circle"),
            "thinker": ("thinker clip", "#ff7f0e", "diamond"),
            "future": ("future targets", "#2ca02c", "square"),
        }
        fig = go.Figure()
        for name, ids in idx.as_dict().items():
            label, color, symbol = rows[name]
            fig.add_trace(go.Scatter(
                x=ids, y=[label] * len(ids), mode="markers", name=f"{label} ({len(ids)})",
                marker=dict(color=color, symbol=symbol, size=11, line=dict(width=1, color="white")),
                text=[f"{label} #{i}: frame {f}" for i, f in enumerate(ids.tolist())],
                hovertemplate="%{text}<extra></extra>",
            ))
        fig.add_vrect(x0=-0.5, x1=s - 0.5, fillcolor="grey", opacity=0.08, line_width=0)
        fig.add_vline(x=s - 0.5, line_dash="dash", line_color="black",
                      annotation_text=f"forecast start s={s}", annotation_position="top")
        c = self.config
        fig.update_layout(
            title=title or (f"T={T}, s={s}: k={c.dense_frames} dense (stride {c.dense_stride}), "
                            f"n={c.thinker_frames} thinker, {c.horizon} future (stride {c.future_stride})"),
            xaxis=dict(title="frame index", range=[-1, T], dtick=max(1, T // 16)),
            yaxis=dict(categoryorder="array", categoryarray=[rows[n][0] for n in reversed(BRANCHES)]),
            height=280, margin=dict(l=20, r=20, t=70, b=40),
            showlegend=False,  # the y labels already name the rows
        )
        return fig
