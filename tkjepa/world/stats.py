"""How ambiguous is the future at the forecast start? A measured answer, for the world's docstring and
lesson 00.

Four wrist forecasts over the `horizon` frames after the forecast start s, none of them learned:
- `const_velocity`: extrapolate the last observed step (what the last few frames alone suggest);
- `told_next_subgoal`: a minimum-jerk reach from the last observed wrist position to the canonical pose of
  the *true* next subgoal (which bowl / which object), over a fixed duration — the instruction's worth;
- `wrong_candidate`: the same reach to a *different* plausible destination (another bowl or object);
- `candidate_mean`: the average of the reaches to every plausible destination — the best L2 guess of
  someone who sees the scene but not the instruction.
ADE is the mean wrist L2 error in metres over the horizon, averaged over episodes.
"""

from __future__ import annotations

import numpy as np

from tkjepa.episode import WRIST, Episode
from tkjepa.world import expert, hand
from tkjepa.world.scene import HEIGHTS, SIZES

REACH_FRAMES = 12  # duration of the canonical reach (≈ the expert's typical transport)


def next_subgoal(ep: Episode, forecast_start: int) -> int:
    """Index of the first subgoal not achieved before `forecast_start` (the last one if all are): from the
    expert's timings, or for an episode with slips (`WorldConfig.fumbles`) from the env's own record of its
    progress at the last observed frame."""
    if "next_subgoal" in ep.extras:
        return int(ep.extras["next_subgoal"][forecast_start - 1])
    ends = np.asarray(ep.extras["subgoal_end"])
    pending = np.nonzero(ends >= forecast_start)[0]
    return int(pending[0]) if len(pending) else len(ends) - 1


def canonical_pose(ep: Episode, kind: str, target: int, t: int) -> np.ndarray:
    """Wrist pose [3] at which subgoal `kind` on object `target` is achieved, from the scene at frame t."""
    names = ep.extras["object_names"]
    pos = np.asarray(ep.extras["object_positions"][t, target], float)
    shape = names[target].split()[-1]
    h = HEIGHTS[shape]
    if kind == "touch":  # hovering over the object, about to touch it
        return pos + np.array([0.0, 0.0, h + 0.004 + expert.HOVER]) - hand.INDEX_TIP_OPEN
    if kind == "place":
        held = names[int(ep.extras["subgoal_objects"][0])].split()[-1]
        return pos + np.array([0.0, 0.0, h + HEIGHTS[held] / 2 + 0.03]) - hand.GRASP_OFFSET
    if kind == "push":  # behind the object, on the far side from the bowl, ready to push
        pushed = int(ep.extras["subgoal_objects"][0])
        obj = np.asarray(ep.extras["object_positions"][t, pushed], float)
        d = (pos - obj)[:2] / max(np.linalg.norm((pos - obj)[:2]), 1e-9)
        g = obj[:2] - d * (SIZES[names[pushed].split()[-1]] + 0.03)
        return np.array([g[0], g[1], 0.08]) - hand.GRASP_OFFSET
    return expert.grasp_pose_at(pos, h)


def reach(start: np.ndarray, goal: np.ndarray, horizon: int, frames: int = REACH_FRAMES) -> np.ndarray:
    """Minimum-jerk path [horizon, 3] from `start` to `goal` over `frames`, then holding."""
    tau = np.clip(np.arange(1, horizon + 1) / frames, 0, 1)
    s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    return start + s[:, None] * (goal - start)


def ambiguity_report(episodes: list[Episode], horizon: int = 16, forecast_start: int | None = None) -> dict:
    """Per-predictor wrist ADE (m) over `horizon` frames after the forecast start (default T // 2)."""
    errs: dict[str, list[float]] = {k: [] for k in
                                    ("const_velocity", "told_next_subgoal", "wrong_candidate", "candidate_mean")}
    still = []
    for ep in episodes:
        s = forecast_start if forecast_start is not None else ep.num_frames // 2
        if s + horizon > ep.num_frames:
            raise ValueError(f"{ep.path or 'episode'}: {ep.num_frames} frames, horizon {horizon} from {s} does not fit")
        w = ep.positions([WRIST])[:, 0].astype(float)  # [T, 3]
        truth, last = w[s:s + horizon], w[s - 1]
        ade = lambda pred: float(np.linalg.norm(pred - truth, axis=-1).mean())  # noqa: E731
        errs["const_velocity"].append(ade(last + np.arange(1, horizon + 1)[:, None] * (w[s - 1] - w[s - 2])))
        k = next_subgoal(ep, s)
        kind, target = ep.extras["subgoal_kinds"][k], int(ep.extras["subgoal_objects"][k])
        errs["told_next_subgoal"].append(ade(reach(last, canonical_pose(ep, kind, target, s - 1), horizon)))
        cands = [int(c) for c in ep.extras["candidates"]]
        preds = {c: reach(last, canonical_pose(ep, kind, c, s - 1), horizon) for c in cands}
        errs["wrong_candidate"].append(np.mean([ade(p) for c, p in preds.items() if c != target]))
        errs["candidate_mean"].append(ade(np.mean(list(preds.values()), axis=0)))
        still.append(float(np.linalg.norm(w[s - 1] - w[s - 4])) < 0.01)
    return {
        "episodes": len(episodes),
        "horizon": horizon,
        "ade": {k: float(np.mean(v)) for k, v in errs.items()},
        "ade_per_episode": {k: [float(x) for x in v] for k, v in errs.items()},
        "share_hand_still_at_start": float(np.mean(still)),
    }


def ambiguity_figure(report: dict):
    """Bar chart of the report's ADEs (plotly)."""
    import plotly.graph_objects as go  # noqa: PLC0415

    names = list(report["ade"])
    per_ep = report["ade_per_episode"]
    fig = go.Figure(go.Bar(
        x=names, y=[100 * report["ade"][n] for n in names],
        error_y=dict(type="data", array=[100 * np.std(per_ep[n]) / np.sqrt(len(per_ep[n])) for n in names]),
        marker_color=["#888", "#2a9d8f", "#e76f51", "#f4a261"]))
    fig.update_layout(title=f"Wrist error over the next {report['horizon']} frames "
                            f"({report['episodes']} episodes)", yaxis_title="ADE (cm)", height=380)
    return fig


def image_position_ceiling(episodes: list[Episode], size: int = 64, shadow: bool = False) -> dict:
    """How much of the wrist's 3D position is linear in exact image positions — the frozen probe's ceiling.

    The best affine map from the wrist's pixel coordinates (u, v) to its world (x, y, z), fitted and scored
    on every frame of `episodes`. An encoder whose tokens say exactly *where in the image* the hand is, and
    nothing about its height, gives a linear probe at most this R². The camera looks steeply down, so one
    image row holds many (depth, height) pairs: x reads off u, but y and z share v.
    shadow=True adds the pixel position of the hand's shadow, which falls `render.SHADOW_SHEAR` per metre of
    height to the front left of the point under the palm: the hand-to-shadow offset is the height, and the
    map becomes (almost) exact. The gap between the two is what an encoder gains by seeing the shadow.
    Returns {"r2_xyz": [3], "r2": variance-weighted R² (the probe's headline number), "frames": n}.
    """
    from tkjepa.world.render import PALM, SHADOW_SHEAR  # noqa: PLC0415
    from tkjepa.world.scene import default_camera  # noqa: PLC0415

    cam = default_camera(size)
    p = np.concatenate([ep.positions([WRIST])[:, 0] for ep in episodes]).astype(float)   # [n, 3]
    feats = [cam.project(p)[0]]
    if shadow:
        s = p + PALM
        s[:, :2] += SHADOW_SHEAR * p[:, 2:]
        s[:, 2] = 0.0
        feats.append(cam.project(s)[0])
    f = np.concatenate([*feats, np.ones((len(p), 1))], axis=1)
    resid = p - f @ np.linalg.lstsq(f, p, rcond=None)[0]
    ss_res, ss_tot = (resid ** 2).sum(0), ((p - p.mean(0)) ** 2).sum(0)
    return {"r2_xyz": [float(r) for r in 1 - ss_res / ss_tot], "r2": float(1 - ss_res.sum() / ss_tot.sum()),
            "frames": len(p)}
