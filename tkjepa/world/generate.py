"""Episodes of the tabletop world: the expert executed in `TabletopEnv`, recorded as `Episode`s.

`write_dataset` (what `tkjepa generate` runs) writes them in EgoDex's layout, in parallel, deterministically:
episode i of dataset seed S always gets the seed `episode_seed(S, i)`, whatever the number of workers;
`dataset_episodes` gives the same episodes in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tkjepa.episode import Episode
from tkjepa.world import expert, hand
from tkjepa.world.env import MAX_STEP, TabletopEnv
from tkjepa.world.scene import LAYOUTS
from tkjepa.world.tasks import FAMILIES

# 2: a wall sign in the marked bowl's colour during the cue; 3: the whole wall lit in it; 4: the hand leaves
# the decision point exactly at the forecast start, and shadows fall to the front left (height is visible);
# 5: adds the "homes" layout (`scene.HOMES`), where every colour has its place, so naming an object says where
# it is (the forecasting benchmark's world; "scattered", the default, draws the same scenes as v4)
WORLD_VERSION = "5"


@dataclass
class WorldConfig:
    num_frames: int = 64      # frames per episode
    size: int = 64            # rendered frame side (pixels)
    fps: float = 15.0         # frames per second (stored in the files)
    family: str | None = None  # task family, or None for a uniform mix of all
    split: float = 0.5        # forecast start as a fraction of num_frames (the official code splits at T//2)
    noise: float = 0.0015     # std of the expert's per-frame tracking noise (m)
    layout: str = "scattered"  # "scattered" (objects anywhere, as in v4) or "homes" (each colour has its place:
                               # the forecasting benchmark's world)
    fumbles: int = 0          # brief slips per episode: the hand dips and, when empty, half-closes on nothing
                              # (`fumble_plan`; pick_place, marked_pick_place, touch_sequence only)
    recording: tuple[int, int] | None = None  # (H, W): write it as an EgoDex recording (`recording.as_recording`:
                                              # H×W video, all 68 joints, both hands, no extras)

    def __post_init__(self):
        if self.num_frames < 32:
            raise ValueError(f"num_frames must be ≥ 32 for the tasks to fit, got {self.num_frames}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.fumbles < 0:
            raise ValueError(f"fumbles must be ≥ 0, got {self.fumbles}")
        if self.recording is not None and (len(self.recording) != 2 or min(self.recording) < 16
                                           or any(v % 2 for v in self.recording)
                                           or self.recording[1] < self.recording[0]):
            raise ValueError(f"recording must be (H, W), even, ≥ 16 and W ≥ H, got {self.recording}")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even number ≥ 16 (H.264 stores colour at half resolution), "
                             f"got {self.size}")


def episode_seed(seed: int, index: int) -> int:
    """Independent, reproducible per-episode seeds from one dataset seed."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def joint_transforms(joints: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-frame joint positions ({name: [3]} per frame, as `TabletopEnv.joints`) -> EgoDex transforms
    {name: [T, 4, 4]}: the hand is tracked by position, its orientation world-aligned."""
    T = len(joints)
    transforms = {n: np.repeat(np.eye(4, dtype=np.float32)[None], T, axis=0) for n in joints[0]}
    for n, m in transforms.items():
        m[:, :3, 3] = np.stack([j[n] for j in joints])
    return transforms


def episode_family(seed: int, cfg: WorldConfig | None = None) -> str:
    """The task family of `generate_episode(seed, cfg)`, without generating it."""
    cfg = cfg or WorldConfig()
    return cfg.family or FAMILIES[int(np.random.default_rng([seed, 7]).integers(len(FAMILIES)))]


def generate_episode(seed: int, cfg: WorldConfig | None = None, max_attempts: int = 20) -> Episode:
    """Run the expert on a sampled scene and task; frames [T, S, S, 3], poses for every frame.

    Like a real data collection that keeps successful demonstrations, a scene whose task does not fit
    the episode or whose execution fails is redrawn (deterministically: attempt k uses seed [seed, k]);
    `extras["attempt"]` records how many were needed.
    """
    cfg = cfg or WorldConfig()
    family = episode_family(seed, cfg)
    for attempt in range(max_attempts):
        try:
            ep = _rollout(seed, attempt, family, cfg)
        except ValueError:  # the task does not fit in num_frames
            continue
        if ep.extras["success"]:
            if cfg.recording is not None:
                from tkjepa.world.recording import as_recording  # noqa: PLC0415

                ep = as_recording(ep, tuple(cfg.recording))
            return ep
    raise RuntimeError(f"no successful episode for seed {seed} in {max_attempts} attempts")


def _expert(env: TabletopEnv, seed: int, attempt: int, cfg: WorldConfig):
    """(segments, decision frame, the expert's random stream) for the env just reset on ([seed, attempt])."""
    rng = np.random.default_rng([seed, attempt, 1])  # the expert's own stream
    segments, n_pre = expert.plan(env.task, env.state.objects, rng)
    expert.set_speed_limits(env.state.wrist, segments, MAX_STEP)
    # The hand leaves the decision point at the forecast start itself (later only if the first subgoal takes
    # longer): a random onset would make *when* the hand moves as uncertain as *where*, and the where is
    # what the thinker knows and the lesson is about.
    decision = expert.fit_timing(segments, n_pre, int(round(cfg.split * cfg.num_frames)), cfg.num_frames)
    return segments, decision, rng


def expert_segments(ep: Episode, cfg: WorldConfig | None = None) -> list[expert.Segment]:
    """The expert's segments (waypoints, grips, timings) behind a generated episode, replayed from its seed."""
    cfg = cfg or WorldConfig(family=ep.task, layout=episode_layout(ep))
    seed, attempt = int(ep.extras["seed"]), int(ep.extras["attempt"])
    env = TabletopEnv(size=cfg.size, family=ep.task, num_frames=cfg.num_frames, layout=cfg.layout)
    env.reset([seed, attempt] if attempt else seed)
    return _expert(env, seed, attempt, cfg)[0]


def episode_layout(ep: Episode) -> str:
    """The layout a generated episode was drawn with (episodes before world v5 are "scattered")."""
    return str(ep.extras.get("layout", "scattered"))


FUMBLE_FAMILIES = ("pick_place", "marked_pick_place", "touch_sequence")  # progress read off the env


def fumble_plan(rng: np.random.Generator, num_frames: int, n: int) -> list[tuple[int, int, float, float]]:
    """n slips (start frame, frames, dip in m, grip command): 2–6 frames long, the wrist 2–10 cm below the
    expert's path, the grip (applied only while the hand is empty and the expert's is open) 0.3–1.0.

    A planner's hand does what a demonstrator's never does: it dips and closes on nothing. A thinker trained on
    clean demonstrations reads any dip-and-close as a grasp; slips teach it what did happen, since with slips
    the episode records its true progress frame by frame (`extras["next_subgoal"]`, `TabletopEnv.progress`)."""
    starts = rng.integers(1, num_frames - 8, n)
    return [(int(f), int(rng.integers(2, 7)), float(rng.uniform(0.02, 0.10)), float(rng.uniform(0.3, 1.0)))
            for f in starts]


def _rollout(seed: int, attempt: int, family: str, cfg: WorldConfig) -> Episode:
    T = cfg.num_frames
    env = TabletopEnv(size=cfg.size, family=family, num_frames=T, layout=cfg.layout)
    frames = [env.reset([seed, attempt] if attempt else seed)]
    task, objects = env.task, env.state.objects
    segments, decision, rng = _expert(env, seed, attempt, cfg)
    targets, grips = expert.desired_path(env.state.wrist, segments)
    start, end = expert.subgoal_timings(segments, len(task.subgoals))

    joints = [env.joints()]
    obj_pos = [np.stack([o.position for o in objects])]
    grip, held, touches, actions = [env.state.grip], [env.state.held], [len(env.state.touched)], []
    slips = fumble_plan(np.random.default_rng([seed, attempt, 3]), T, cfg.fumbles) \
        if cfg.fumbles and family in FUMBLE_FAMILIES else []
    progress = [env.progress()] if slips else []   # the env's own record, kept only when the timings may lie
    drift = np.zeros(3)
    for t in range(T - 1):
        drift = 0.7 * drift + rng.normal(0.0, cfg.noise, 3)  # smooth tracking noise, not white jitter
        target, g = targets[t].copy(), grips[t]
        for f0, n, dip, slip_grip in slips:
            if f0 <= t < f0 + n:
                target[2] = max(hand.MIN_WRIST_Z, target[2] - dip)
                g = slip_grip if env.state.held < 0 and grips[t] < 0.5 else g
        a = np.concatenate([target - env.state.wrist + drift, [g]])
        actions.append(a)
        frames.append(env.step(a))
        if slips:
            progress.append(env.progress())
        joints.append(env.joints())
        obj_pos.append(np.stack([o.position for o in objects]))
        grip.append(env.state.grip)
        held.append(env.state.held)
        touches.append(len(env.state.touched))
    actions.append(np.array([0.0, 0.0, 0.0, grip[-1]]))

    names = list(joints[0])
    transforms = joint_transforms(joints)
    transforms["camera"] = np.repeat(env.camera.pose.astype(np.float32)[None], T, axis=0)
    scene = ", ".join(f"a {o.name}" for o in objects)
    extras = {
        "actions": np.stack(actions).astype(np.float32),
        "object_positions": np.stack(obj_pos).astype(np.float32),
        "object_names": [o.name for o in objects],
        "grip": np.array(grip, np.float32),
        "held": np.array(held, np.int64),
        "touches": np.array(touches, np.int64),  # objects touched so far (the env's count, repeats apart)
        "subgoal_kinds": [k for k, _ in task.subgoals],
        "subgoal_objects": np.array([i for _, i in task.subgoals], np.int64),
        "subgoal_start": start.astype(np.int64),
        "subgoal_end": end.astype(np.int64),
        "candidates": np.array(task.candidates, np.int64),
        "goal_bowl": int(task.goal_bowl),
        "cue_object": int(task.cue_object),
        "cue_start": int(task.cue_frames[0]),
        "cue_end": int(task.cue_frames[1]),
        "decision_frame": int(decision),
        "success": bool(env.success()),
        "seed": int(seed),
        "attempt": int(attempt),
        "world_version": WORLD_VERSION,
        "layout": cfg.layout,
    }
    if slips:  # the expert's timings no longer say when a subgoal is achieved: the env does, frame by frame
        extras["next_subgoal"] = np.array(progress, np.int64)
        extras["fumbles"] = np.array(slips, np.float32)
    ep = Episode(
        frames=np.stack(frames), transforms=transforms,
        confidences={n: np.ones(T, np.float32) for n in names},
        intrinsic=env.camera.intrinsic.astype(np.float32), task=task.family, instruction=task.instruction,
        environment=f"a wooden table with {scene}", fps=cfg.fps, extras=extras,
    )
    return ep


def generate_episodes(seeds, cfg: WorldConfig | None = None) -> list[Episode]:
    """One episode per raw seed (`generate_episode`), in order."""
    return [generate_episode(int(s), cfg) for s in seeds]


def dataset_episodes(seed: int, indices, cfg: WorldConfig | None = None, workers: int = 2) -> list[Episode]:
    """Episodes `indices` of world dataset `seed`, in memory, exactly as `tkjepa generate --seed seed` writes
    them (episode i has the seed `episode_seed(seed, i)`), generated by `workers` processes."""
    from functools import partial  # noqa: PLC0415

    seeds = [episode_seed(seed, int(i)) for i in indices]
    make = partial(generate_episode, cfg=cfg or WorldConfig())
    if workers <= 1 or len(seeds) < 8:
        return [make(s) for s in seeds]
    from tkjepa.parallel import process_pool  # noqa: PLC0415

    with process_pool(workers) as pool:
        return pool.map(make, seeds, chunksize=4)


def _write_one(job) -> tuple[int, str, int]:
    from tkjepa.egodex import write_episode  # noqa: PLC0415  (imported in each worker)

    out, index, seed, cfg = job
    ep = generate_episode(episode_seed(seed, index), cfg)
    path = write_episode(ep, out, index)
    return index, str(path), ep.num_frames


def write_dataset(out, episodes: int, seed: int, cfg: WorldConfig | None = None, workers: int = 2,
                  progress: bool = True) -> list[Path]:
    """Write `episodes` episodes as `<out>/<task>/<i>.hdf5` + `.mp4`; returns the .hdf5 paths in index order."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    cfg = cfg or WorldConfig()
    jobs = [(str(out), i, seed, cfg) for i in range(episodes)]
    Path(out).mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=episodes, desc="generate", unit="ep", disable=not progress)
    results = []
    if workers <= 1:
        for job in jobs:
            results.append(_write_one(job))
            bar.update()
    else:
        from tkjepa.parallel import process_pool  # noqa: PLC0415

        with process_pool(workers) as pool:
            for r in pool.imap_unordered(_write_one, jobs, chunksize=4):
                results.append(r)
                bar.update()
    bar.close()
    return [Path(p) for _, p, _ in sorted(results)]
