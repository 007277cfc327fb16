"""The lessons' helpers (`core`: shared; `lessons`: one lesson's figures each; `diagrams`: architecture
diagrams), all importable from `tkjepa.viz`: figures that several lessons draw, the exercises' answer check,
and the forecasters a lesson scores (the shipped checkpoint, or a briefly trained stand-in where it is missing).

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

from tkjepa.viz.core import (
    MODEL_COLOURS,
    check,
    forecast_figure,
    frames_figure,
    image_row,
    load_forecasters,
    pca_2d,
    pyramid_figure,
    scene_figure,
    shipped_or_trained,
    strip,
    truth_figure,
    wiring_figure,
)
from tkjepa.viz.diagrams import diagram_figure, forecaster_diagram_figure, jepa_diagram_figure, planner_diagram_figure
from tkjepa.viz.lessons import (
    PYRAMID_PROBE_SERIES,
    ROLLOUTS_CATEGORIES,
    appendix_joints_figure,
    ema_mask_figure,
    ema_wrist_figure,
    forecasters_results_figure,
    guidedblock_modes_figure,
    planning_cem_figure,
    planning_episode_figure,
    planning_landscapes_figure,
    planning_rollout_figure,
    planning_success_figure,
    pyramid_probe_figure,
    rollouts_curves_figure,
    rollouts_horizon_figure,
    rollouts_schedule,
    rollouts_schedule_figure,
    thinker_pathway_figure,
    tour_reaches_figure,
)

__all__ = [
    "MODEL_COLOURS", "PYRAMID_PROBE_SERIES", "ROLLOUTS_CATEGORIES", "appendix_joints_figure", "check",
    "diagram_figure", "ema_mask_figure", "ema_wrist_figure", "forecast_figure", "forecaster_diagram_figure",
    "forecasters_results_figure", "frames_figure", "guidedblock_modes_figure", "image_row",
    "jepa_diagram_figure", "load_forecasters", "pca_2d", "planner_diagram_figure", "planning_cem_figure",
    "planning_episode_figure", "planning_landscapes_figure", "planning_rollout_figure",
    "planning_success_figure", "pyramid_figure", "pyramid_probe_figure", "rollouts_curves_figure",
    "rollouts_horizon_figure", "rollouts_schedule", "rollouts_schedule_figure", "scene_figure",
    "shipped_or_trained", "strip", "thinker_pathway_figure", "tour_reaches_figure", "truth_figure",
    "wiring_figure",
]
