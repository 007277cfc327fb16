"""Planning with the latent world model: CEM over action sequences, MPC in the tabletop, goals from the thinker.

The loop (V-JEPA 2-AC's, on our tiny models):
1. encode the current observation: the latent of the last frame (`worldmodel.frame_latents`);
2. CEM (`cem`): sample `samples` action sequences of `horizon` tubelets around a Gaussian, roll each out with
   the action-conditioned predictor, score it by the *energy* = L1 distance of the last predicted latent to a
   goal latent (`energy`), refit the Gaussian to the `topk` best (with `momentum`), `iters` times;
3. execute the first action of the mean (one tubelet = 2 env frames with the same [dx, dy, dz, grip]), then
   replan from the new observation (MPC), until `env.success()` or `max_steps` actions.

Sources of goal latents (`MODES`):
- `flat`: the latent of the demonstration's final frame — the goal image. A short-horizon search
  toward a far goal is greedy: it heads for where the hand ends (over the bowl; over the second object) and
  skips what must happen first (the grasp; the first touch).
- `thinker`: every `ask_every` actions the thinker looks at its clip of the frames so far and says what is
  next ("holding nothing . next red cube"); the subgoal head (`tkjepa.subgoal`) turns its pyramid features
  into z*, the latent of the next phase boundary, and the planner solves toward z* until it asks again.
- `oracle` (a diagnostic: a perfect thinker): the latent of the demonstration's frame where the subgoal that
  the *true* env state says is next was achieved (`oracle_boundary`) — what the subgoal head is trained to
  predict, so flat < thinker ≤ oracle separates the thinker's share of the failures from the planner's.
  With `waypoints`, the goals are the expert's intermediate poses too (above the cube, around it, gripping:
  `oracle_waypoint`), to test whether the planner's short horizon is what stops it.
- `told` (a diagnostic: a thinker that never errs in words): as `thinker`, but the thinker is told the true
  text from the env's state (`told_text`) instead of generating it; needs a head trained on told texts
  (`tkjepa train-planner --told-text`). thinker < told says better words would help; told ≈ thinker says the
  subgoal head or the planner is the limit. A named pointer (`--named-pointer`) reads only the object the
  words name, so one trained on told texts also plans in `thinker` mode, with the thinker's words.
- `true-place` (a diagnostic for a place-first head, `tkjepa train-planner --place-head`): z* is the head's
  decoder's drawing of the scene with the hand at the *true* place of the oracle's boundary (its wrist and
  grip in the demonstration). Against `oracle`, it tells whether the decoder's goals plan as well as the true
  latents; against `thinker`, how much the head's own pointer costs.

A planner folder may carry its own thinker (`tkjepa train-planner --thinker DIR` copies it to `folder/thinker`,
`worldmodel.planner_thinker`): e.g. one pretrained to speak at every moment of an episode
(`tkjepa pretrain-thinker --anytime phases`) rather than at the forecast start only.

Action space: u ∈ [−1, 1]^4 per tubelet: displacement u[:3]·MAX_STEP per frame, grip (u[3] + 1)/2 —
exactly the world model's normalised actions, so a plan needs no conversion. Like a robot's joint limits,
the planner knows where its own wrist is (proprioception, as V-JEPA 2-AC's end-effector state) and keeps
every sampled path inside `WORKSPACE`, the part of the table the camera sees (`keep_in_workspace`). Without
it the search finds a cheap trick: a hand out of view differs from the goal frame in one place (the goal's
hand is missing), a hand in the wrong place in two, so hiding the hand lowers the energy. The same
proprioception feeds the world model: for each candidate, `wrist_path` gives the wrist at the end of every
tubelet (exact inside the workspace), and a proprioceptive world model reads it beside the actions.

`tkjepa plan --episodes N --mode flat|thinker --seed S --out plan.json`: held-out episodes (world seed
`--world-seed`, default bench.TEST_SEED = 2000) of the multi-step families `subgoal.FAMILIES`, alternating.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from tkjepa.episode import Episode
from tkjepa.subgoal import FAMILIES
from tkjepa.world.env import MAX_STEP, TabletopEnv
from tkjepa.worldmodel import ACTION_DIM, STATE_DIM, WORKSPACE, frame_latents, wrist_features

MODES = ("flat", "thinker", "told", "oracle", "true-place")
ENERGIES = ("l1", "l2", "pooled")
PLANNER = Path(__file__).resolve().parent.parent / "data_samples" / "planner"


@dataclass
class CEMConfig:
    samples: int = 64         # action sequences per iteration
    topk: int = 8             # elites the Gaussian is refit to
    iters: int = 3            # refits per action
    horizon: int = 2          # tubelets per sequence (≤ the world model's horizon)
    init_std: float = 0.7     # initial std of u (in [−1, 1] units)
    momentum: float = 0.15    # mean/std ← m·old + (1 − m)·elites' (V-JEPA 2-AC's default)

    def __post_init__(self):
        if self.samples < 2 or not 1 <= self.topk <= self.samples:
            raise ValueError(f"need samples ≥ 2 and 1 ≤ topk ≤ samples, got samples={self.samples}, topk={self.topk}")
        if self.iters < 1 or self.horizon < 1:
            raise ValueError(f"iters and horizon must be ≥ 1, got iters={self.iters}, horizon={self.horizon}")
        if not 0 <= self.momentum < 1 or self.init_std <= 0:
            raise ValueError(f"need 0 ≤ momentum < 1 and init_std > 0, got {self.momentum}, {self.init_std}")


def cem(energy_fn: Callable[[torch.Tensor], torch.Tensor], cfg: CEMConfig, dim: int = 4,
        init_mean: torch.Tensor | None = None, generator: torch.Generator | None = None):
    """Minimise energy_fn(u [S, H, dim] in [−1, 1]) -> [S] by the cross-entropy method.

    Returns (mean [H, dim], history): one record per iteration with the mean, std, the samples' and the elites'
    energies (what lesson 08 draws). The mean itself is always among the samples, so an iteration never
    loses the current best guess.
    """
    mean = torch.zeros(cfg.horizon, dim) if init_mean is None else init_mean.clone()
    std = torch.full((cfg.horizon, dim), cfg.init_std)
    history = []
    for _ in range(cfg.iters):
        u = mean + std * torch.randn(cfg.samples, cfg.horizon, dim, generator=generator)
        u[0] = mean
        u = u.clamp(-1, 1)
        e = energy_fn(u)                                                    # [S]
        elite = u[torch.topk(e, cfg.topk, largest=False).indices]           # [K, H, dim]
        history.append({"mean": mean.clone(), "std": std.clone(), "samples": u, "energy": e,
                        "elite_energy": float(e.min())})
        mean = cfg.momentum * mean + (1 - cfg.momentum) * elite.mean(0)
        std = cfg.momentum * std + (1 - cfg.momentum) * (elite.std(0) if cfg.topk > 1 else torch.zeros_like(std))
    return mean, history


def keep_in_workspace(u: torch.Tensor, wrist, box=WORKSPACE) -> torch.Tensor:
    """u [S, H, 4] -> u with each tubelet's displacement shortened so the wrist path (2 frames per tubelet,
    from `wrist` [3]) stays in the box; grip untouched."""
    lo, hi = (torch.as_tensor(b, dtype=u.dtype) for b in box)
    pos, out = torch.as_tensor(np.asarray(wrist), dtype=u.dtype).expand(u.shape[0], 3), u.clone()
    for k in range(u.shape[1]):
        nxt = torch.minimum(torch.maximum(pos + 2 * MAX_STEP * u[:, k, :3], lo), hi)
        out[:, k, :3] = (nxt - pos) / (2 * MAX_STEP)
        pos = nxt
    return out


def wrist_path(u: torch.Tensor, wrist) -> torch.Tensor:
    """u [S, H, 4] (kept in the workspace) -> the wrist [S, H, 3] at the end of each tubelet, from `wrist` [3]:
    each action moves it by its displacement, twice per tubelet (the env's kinematics inside the workspace)."""
    start = torch.as_tensor(np.asarray(wrist), dtype=u.dtype)
    return start + torch.cumsum(2 * MAX_STEP * u[..., :3], dim=1)


def env_action(u) -> np.ndarray:
    """u [4] in [−1, 1] -> the env action [dx, dy, dz, grip]."""
    u = np.asarray(u, float)
    return np.concatenate([u[:3] * MAX_STEP, [(u[3] + 1) / 2]])


def energy(pred: torch.Tensor, goal: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Distance of predicted latents [S, N, D] to a goal [N, D] -> [S].

    l1: mean |ẑ − z_goal| over tokens and channels (V-JEPA 2-AC); l2: mean squared; pooled: L1 of the
    token means (position-blind: only what is in the scene, not where).
    """
    if kind == "l1":
        return (pred - goal).abs().mean((-2, -1))
    if kind == "l2":
        return (pred - goal).pow(2).mean((-2, -1))
    if kind == "pooled":
        return (pred.mean(-2) - goal.mean(-2)).abs().mean(-1)
    raise ValueError(f"energy must be one of {ENERGIES}, got {kind!r}")


class LatentPlanner:
    """The encoder + action-conditioned predictor as a planner's world model, with the episode's latents."""

    def __init__(self, encoder, world_model, cem_cfg: CEMConfig, energy_kind: str = "l1"):
        if energy_kind not in ENERGIES:
            raise ValueError(f"energy must be one of {ENERGIES}, got {energy_kind!r}")
        c = world_model.config
        if cem_cfg.horizon > c.future_tubelets:
            raise ValueError(f"CEM horizon {cem_cfg.horizon} exceeds the world model's {c.future_tubelets} tubelets")
        self.encoder, self.model, self.cfg, self.energy_kind = encoder, world_model, cem_cfg, energy_kind
        self.latents: list[torch.Tensor] = []

    def observe(self, frames: np.ndarray) -> torch.Tensor:
        """Append the state of the last tubelet of frames [T, H, W, 3] (T even): its last frame's latent [N, D]."""
        z = frame_latents(self.encoder, frames, [len(frames) - 1])[0]
        self.latents.append(z)
        return z

    def context(self) -> torch.Tensor:
        """The last Tc latents [Tc, N, D] (the first one repeated at the episode's start)."""
        Tc = self.model.config.context_tubelets
        lat = [self.latents[0]] * max(0, Tc - len(self.latents)) + self.latents[-Tc:]
        return torch.stack(lat)

    @property
    def proprio(self) -> bool:
        """Does the world model read the wrist state (ACTION_DIM + STATE_DIM inputs per tubelet)?"""
        return self.model.config.action_dim == ACTION_DIM + STATE_DIM

    @torch.no_grad()
    def predict(self, u: torch.Tensor, wrist=None) -> torch.Tensor:
        """u [S, H, 4] -> predicted latents [S, H, N, D] from the current context (same action both frames).
        A proprioceptive world model also needs the current `wrist` [3] (m) to know where each u takes it."""
        c = self.model.config
        S, H = u.shape[:2]
        acts = torch.cat([u, u], -1)
        if self.proprio:
            if wrist is None:
                raise ValueError("this world model reads the wrist state: pass the current wrist position")
            w = torch.from_numpy(wrist_features(wrist_path(u, wrist).numpy()))
            acts = torch.cat([acts, w], -1)
        acts = torch.cat([acts, acts[:, -1:].expand(S, c.future_tubelets - H, acts.shape[-1])], 1)  # pad to H
        return self.model(self.context()[None].expand(S, -1, -1, -1), actions=acts)[:, :H]

    def plan(self, goal: torch.Tensor, generator: torch.Generator, init_mean=None, wrist=None):
        """CEM toward `goal` [N, D] -> (mean [H, 4], history); with `wrist` [3], paths stay in WORKSPACE
        (the returned mean is already bounded)."""
        bound = (lambda u: u) if wrist is None else (lambda u: keep_in_workspace(u, wrist))  # noqa: E731
        mean, hist = cem(lambda u: energy(self.predict(bound(u), wrist)[:, -1], goal, self.energy_kind), self.cfg,
                         init_mean=init_mean, generator=generator)
        return bound(mean[None])[0], hist


@dataclass
class PlanConfig:
    mode: str = "thinker"        # flat | thinker
    max_steps: int = 32          # planner actions (tubelets) per episode: 64 frames, the demonstrations' length
    ask_every: int = 2           # thinker mode: actions between two questions to the thinker
    energy: str = "l1"           # l1 | l2 | pooled
    seed: int = 0                # CEM sampling
    waypoints: bool = False      # oracle mode: goals at the expert's waypoints, not only at subgoal boundaries
    cem: CEMConfig = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.max_steps < 1 or self.ask_every < 1:
            raise ValueError(f"max_steps and ask_every must be ≥ 1, got {self.max_steps}, {self.ask_every}")
        self.cem = self.cem or CEMConfig()


@torch.no_grad()
def grid_latents(env: TabletopEnv, encoder, xs, ys, z: float | None = None, grip: float | None = None
                 ) -> torch.Tensor:
    """Latents [len(ys) · len(xs), N, D] of the *encoded* frame with the wrist moved to each (x, y, z) (z, grip
    default to the current ones), everything else as in env's state (y-major). The env is left unchanged."""
    saved = env.clone_state()
    frames = []
    for y in ys:
        for x in xs:
            env.state = env.clone_state()
            env.state.wrist = np.array([x, y, saved.wrist[2] if z is None else z])
            env.state.grip = saved.grip if grip is None else grip
            frames.append(env.render())
    env.state = saved
    return frame_latents(encoder, np.stack(frames))


def energy_landscape(env: TabletopEnv, goal: torch.Tensor, encoder, xs, ys, z: float | None = None,
                     grip: float | None = None, kind: str = "l1") -> np.ndarray:
    """Energy [len(ys), len(xs)] of the `grid_latents` to a goal: is the energy lowest where the goal's hand is?"""
    return energy(grid_latents(env, encoder, xs, ys, z, grip), goal, kind).view(len(ys), len(xs)).numpy()


def oracle_subgoal(env: TabletopEnv, demo) -> int:
    """Index of the subgoal the env's true progress (held object, touches; for push, the hand at the
    demonstration's first boundary) says is next."""
    k = env.progress()
    if k is not None:
        return k
    first = demo.positions(["rightHand"])[int(demo.extras["subgoal_end"][0]), 0]
    return 0 if np.linalg.norm(env.state.wrist[:2] - first[:2]) > 0.02 else 1


def oracle_boundary(env: TabletopEnv, demo) -> int:
    """Demo frame of the next phase boundary given the env's true progress (held object, touches, success)."""
    if env.success():
        return demo.num_frames - 1
    return int(demo.extras["subgoal_end"][oracle_subgoal(env, demo)])


def told_text(env: TabletopEnv, demo) -> str:
    """What a thinker that never errs would say now: "holding <held or nothing> . next <next subgoal's object>"
    from the env's true state (the words `thinking_target` teaches, read off the env instead of a demo)."""
    names = [o.name for o in env.state.objects]
    holding = names[env.state.held] if env.state.held >= 0 else "nothing"
    return f"holding {holding} . next {names[env.task.subgoals[oracle_subgoal(env, demo)][1]]}"


def waypoint_frames(demo) -> list[tuple[int, int, bool]]:
    """(frame, subgoal, completes) where each of the expert's moves ends (`expert.Segment`): for a grasp, the
    hover above the cube, the open hand around it, then the closed grip (the subgoal's own boundary)."""
    from tkjepa.world.generate import expert_segments

    out, t = [], 0
    for seg in expert_segments(demo):
        t += seg.frames
        out.append((t, seg.subgoal, seg.completes))
        t += seg.hold
    return out


def oracle_waypoint(env: TabletopEnv, demo, reached: set[int], reach_m: float = 0.025, waypoints=None) -> int:
    """Demo frame of the next *waypoint* given the env's true progress: the first move of the next subgoal
    whose end pose the wrist has not yet come within `reach_m` of (`reached`, updated here), else the subgoal's
    boundary. The oracle with waypoints: is the planner's horizon too short for a whole subgoal?
    `waypoints`: `waypoint_frames(demo)`, if already computed."""
    if env.success():
        return demo.num_frames - 1
    k, wrist = oracle_subgoal(env, demo), demo.positions(["rightHand"])[:, 0]
    for f, sub, completes in waypoints or waypoint_frames(demo):
        if sub != k:
            continue
        if completes:
            return f
        if f not in reached and np.linalg.norm(env.state.wrist - wrist[f]) < reach_m:
            reached.add(f)
        if f not in reached:
            return f
    return int(demo.extras["subgoal_end"][k])


def first_subgoal_done(env: TabletopEnv) -> bool:
    """Partial progress: the cube grasped (pick_place) or the first object touched (touch_sequence)."""
    kind, obj = env.task.subgoals[0]
    return env.state.held == obj if kind == "grasp" else obj in env.state.touched


def demonstration(seed: int, family: str):
    """The expert's episode on world seed `seed` (its last frame is the flat goal) and the env reset on its scene."""
    from tkjepa.world.generate import WorldConfig, generate_episode

    demo = generate_episode(seed, WorldConfig(family=family))
    env = TabletopEnv(family=family)
    attempt = demo.extras["attempt"]
    env.reset([seed, attempt] if attempt else seed)
    return demo, env


def felt(env: TabletopEnv) -> dict:
    """The hand's proprioception now, as a thinker reads it (`thinker.inputs.proprio_text`): its joint positions,
    the object it holds (−1: none) and how many objects it has touched."""
    return {"joints": env.joints(), "held": int(env.state.held), "touches": len(env.state.touched)}


def seen_episode(demo, frames: np.ndarray, hand: list[dict] | None = None) -> Episode:
    """What the planner has seen, as an Episode a thinker reads: the frames [T, H, W, 3], the instruction and scene
    from `demo`, and — given `hand`, what the hand felt at each frame (`felt`) — its joint transforms and
    `extras["held"]`, `extras["touches"]` (what `thinker.inputs.proprio_text` reads)."""
    from tkjepa.world.generate import joint_transforms

    if hand is not None and len(hand) != len(frames):
        raise ValueError(f"{len(hand)} hand poses for {len(frames)} frames")
    transforms, extras = {}, {}
    if hand:
        transforms = joint_transforms([h["joints"] for h in hand])
        extras = {k: np.array([h[k] for h in hand], np.int64) for k in ("held", "touches")}
    return Episode(frames=frames, transforms=transforms, confidences={}, intrinsic=demo.intrinsic, task=demo.task,
                   instruction=demo.instruction, environment=demo.environment, fps=demo.fps, extras=extras)


@torch.no_grad()
def thinker_goal(head, thinker, demo, frames: np.ndarray, z_last: torch.Tensor, told: str | None = None,
                 encoder=None, hand: list[dict] | None = None) -> tuple[torch.Tensor, str, np.ndarray | None]:
    """Ask the thinker with frames [T, H, W, 3] observed (the instruction and scene from `demo`): its subgoal
    latent z* [N, D] (the head reads its thoughts and z_last [N, D], the latent of the last frame), its words,
    and — for a place-first head — the place z* was drawn from: [x, y, z, grip] (metres; grip 0 open … 1 shut),
    else None. `told`: the words to think instead of generating them (`--mode told`). A head whose pointer reads
    the fine tokens (`SubgoalConfig.fine`) needs the `encoder` to compute them from the last frame. `hand`: what
    the hand felt at each observed frame (`felt(env)`: joint positions, held object, touches so far), for a
    thinker that reads proprioception (`pretrain-thinker --proprio`)."""
    from tkjepa.subgoal import named_states, place_metres, think, word_ids

    seen = seen_episode(demo, frames, hand)
    thought, tokens, text, feats = think(*thinker, [seen], [len(frames)], None if told is None else [told],
                                         features=True)
    zf = None
    if head.cfg.fine:
        if encoder is None:
            raise ValueError("this subgoal head points over the fine tokens: pass the encoder to thinker_goal")
        zf = frame_latents(encoder, frames, [len(frames) - 1], pool=False)
    words = word_ids(thinker[1], text, head.cfg.max_words)
    names = named_states(feats[0], words[0], head.cfg.next_id, head.cfg.name_words)[None] \
        if head.cfg.name_states else None
    inputs = (thought, tokens[0][None], torch.ones(1, len(tokens[0]), dtype=torch.bool), z_last[None], words, zf,
              names)
    if not head.cfg.place:
        return head(*inputs)[0], text[0], None
    place = head.where(*inputs)
    wrist, grip = place_metres(place[0])
    return head.decode(z_last[None], place)[0], text[0], np.append(wrist.numpy(), grip.item())


@torch.no_grad()
def true_place_goal(head, demo, b: int, z_last: torch.Tensor) -> torch.Tensor:
    """z* [N, D] a place-first head's decoder draws from z_last [N, D] with the hand where it is, and gripping as
    it does, at demo frame b (`--mode true-place`)."""
    from tkjepa.subgoal import place_units

    wrist = torch.as_tensor(demo.positions(["rightHand"])[b, 0], dtype=torch.float32)
    return head.decode(z_last[None], place_units(wrist[None], torch.tensor([float(demo.extras["grip"][b])])))[0]


def run_episode(seed: int, family: str, cfg: PlanConfig, encoder, world_model, head=None, thinker=None,
                record: bool = False) -> dict:
    """Plan one held-out episode; returns success, actions used, planning seconds (+ frames, what the hand felt
    at each (`felt`) and subgoal texts when `record`)."""
    demo, env = demonstration(seed, family)
    planner = LatentPlanner(encoder, world_model, cfg.cem, cfg.energy)
    frames = [env.render()]
    hand = [felt(env)]                                               # what the hand felt at each frame
    frames.append(env.step([0.0, 0.0, 0.0, 0.0]))                   # tubelet 0: the start, still
    hand.append(felt(env))
    planner.observe(np.stack(frames))
    flat_goal = frame_latents(encoder, demo.frames, [demo.num_frames - 1])[0]
    g = torch.Generator().manual_seed(seed * 7919 + cfg.seed)
    mean, goal, texts, places, energies, success, steps = None, flat_goal, [], [], [], False, 0
    demo_latents: dict[int, torch.Tensor] = {}
    waypoints = waypoint_frames(demo) if cfg.mode == "oracle" and cfg.waypoints else None
    reached: set[int] = set()  # waypoints (demo frames) the wrist has come to, oracle mode with waypoints
    first_wrist = demo.positions(["rightHand"])[int(demo.extras["subgoal_end"][0]), 0]  # where subgoal 0 is done
    first_done, closest = False, float(np.linalg.norm(env.state.wrist - first_wrist))
    t0 = time.perf_counter()
    for step in range(cfg.max_steps):
        if cfg.mode in ("thinker", "told") and step % cfg.ask_every == 0:
            goal, text, place = thinker_goal(head, thinker, demo, np.stack(frames), planner.latents[-1],
                                             told_text(env, demo) if cfg.mode == "told" else None, encoder,
                                             hand)
            texts.append((step, text))
            if place is not None:
                places.append((step, [round(float(v), 4) for v in place]))
        if cfg.mode == "oracle":
            b = oracle_waypoint(env, demo, reached, waypoints=waypoints) if waypoints else oracle_boundary(env, demo)
            goal = demo_latents.setdefault(b, frame_latents(encoder, demo.frames, [b])[0])
        if cfg.mode == "true-place" and step % cfg.ask_every == 0:
            goal = true_place_goal(head, demo, oracle_boundary(env, demo), planner.latents[-1])
        init = None if mean is None else torch.cat([mean[1:], mean[-1:]])  # warm start: the plan shifted by one
        mean, hist = planner.plan(goal, g, init, wrist=env.state.wrist)
        energies.append(hist[-1]["elite_energy"])
        for _ in range(2):
            frames.append(env.step(env_action(mean[0])))
            hand.append(felt(env))
            success = success or env.success()
            first_done = first_done or first_subgoal_done(env)
            closest = min(closest, float(np.linalg.norm(env.state.wrist - first_wrist)))
        steps += 1
        if success:
            break
        planner.observe(np.stack(frames))
    seconds = time.perf_counter() - t0
    out = {"seed": int(seed), "family": family, "success": bool(success), "steps": steps,
           "seconds": round(seconds, 3), "final_energy": round(energies[-1], 4),
           "first_subgoal": bool(first_done), "closest_to_first_cm": round(100 * closest, 1)}
    if cfg.mode in ("thinker", "told"):
        out["subgoal_texts"] = texts
        if places:  # a place-first head: where it sent the hand, [x, y, z, grip], at each question
            out["subgoal_places"] = places
    if record:
        out.update(frames=np.stack(frames), hand=hand, energies=energies, flat_goal=flat_goal, demo=demo)
    return out


def episode_seeds(world_seed: int, episodes: int) -> list[tuple[int, str]]:
    """(seed, family) of held-out episode i: world seed `world_seed`'s i-th episode, families alternating."""
    from tkjepa.world.generate import episode_seed

    return [(episode_seed(world_seed, i), FAMILIES[i % len(FAMILIES)]) for i in range(episodes)]


def head_mode_problem(cfg, mode: str) -> str | None:
    """Why a subgoal head (its `SubgoalConfig`) cannot plan in `mode` ("thinker" | "told"), or None if it can.
    A head that reads the thinker's states must be trained on the texts it will see: its own thinker's for
    `thinker`, the true ones for `told`. A named pointer reads only the latent and the object the words name, so
    one trained on the true words (teacher forcing) takes the thinker's as well."""
    if mode == "told" and not cfg.told_text:
        return "on the thinker's own texts; --mode told needs one trained with `tkjepa train-planner --told-text`"
    if mode == "thinker" and cfg.told_text and not cfg.named_pointer:
        return "on told texts: use --mode told"
    return None


def load_planner(folder=PLANNER, need_head: bool = True):
    """(encoder, world model, subgoal head or None, (thinker, tokenizer) or None) for `tkjepa plan`."""
    from tkjepa.bench import load_models
    from tkjepa.subgoal import load_head
    from tkjepa.worldmodel import load_world_model

    folder = Path(folder)
    if not (folder / "world_model.safetensors").exists():
        raise SystemExit(f"{folder}: no planner checkpoint; train it with `tkjepa train-planner --out {folder}`")
    from tkjepa.bench import ENCODER, checkpoint_digest
    from tkjepa.worldmodel import planner_thinker

    trained_on = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
    thinker_path = planner_thinker(folder)
    for name, path in (("encoder", ENCODER), ("thinker", thinker_path)):
        if trained_on.get(f"{name}_sha256") not in (None, checkpoint_digest(path)):
            print(f"warning: {folder} was trained with another {name} than {path}; retrain it with "
                  f"`tkjepa train-planner --out {folder}`")
    encoder, thinker = load_models(thinker=thinker_path)
    world_model, _ = load_world_model(folder)
    head = load_head(folder) if need_head else None
    return encoder, world_model, head, thinker if need_head else None


def evaluate(cfg: PlanConfig, episodes: int, world_seed: int, models, progress: bool = True) -> dict:
    """Success rate, mean actions and seconds per action over `episodes` held-out episodes."""
    from tqdm.auto import tqdm

    encoder, world_model, head, thinker = models
    rows = [run_episode(s, fam, cfg, encoder, world_model, head, thinker)
            for s, fam in tqdm(episode_seeds(world_seed, episodes), desc=cfg.mode, unit="ep", disable=not progress)]
    per_family = {f: float(np.mean([r["success"] for r in rows if r["family"] == f]))
                  for f in FAMILIES if any(r["family"] == f for r in rows)}
    return {"success_rate": float(np.mean([r["success"] for r in rows])), "episodes": len(rows),
            "mean_steps": float(np.mean([r["steps"] for r in rows])),
            "first_subgoal_rate": float(np.mean([r["first_subgoal"] for r in rows])),
            "median_closest_to_first_cm": float(np.median([r["closest_to_first_cm"] for r in rows])),
            "seconds_per_action": sum(r["seconds"] for r in rows) / max(1, sum(r["steps"] for r in rows)),
            "mode": cfg.mode, "per_family": per_family, "world_seed": world_seed,
            "config": {**asdict(cfg), "cem": asdict(cfg.cem)}, "per_episode": rows}


def add_arguments(p) -> None:
    p.add_argument("--episodes", type=int, default=30, help="held-out episodes (families alternate)")
    p.add_argument("--mode", default="thinker", choices=MODES,
                   help="goal: final frame (flat), thinker subgoals, the thinker told the true text (told, a "
                        "diagnostic), the true next subgoal latent (oracle, a diagnostic), or a place-first head's "
                        "drawing of the hand at the true next place (true-place, a diagnostic)")
    p.add_argument("--seed", type=int, default=0, help="CEM sampling seed")
    p.add_argument("--world-seed", type=int, default=2000, help="held-out episode draw (training uses 1000, 1001)")
    p.add_argument("--out", default=None, help="write the result JSON here")
    p.add_argument("--planner", default=str(PLANNER), help="folder written by `tkjepa train-planner`")
    p.add_argument("--samples", type=int, default=CEMConfig.samples, help="CEM samples per iteration")
    p.add_argument("--topk", type=int, default=CEMConfig.topk, help="CEM elites")
    p.add_argument("--iters", type=int, default=CEMConfig.iters, help="CEM iterations per action")
    p.add_argument("--horizon", type=int, default=CEMConfig.horizon, help="planning horizon in tubelets")
    p.add_argument("--momentum", type=float, default=CEMConfig.momentum, help="CEM momentum")
    p.add_argument("--max-steps", type=int, default=PlanConfig.max_steps, help="actions (tubelets) per episode")
    p.add_argument("--ask-every", type=int, default=PlanConfig.ask_every, help="thinker mode: actions per question")
    p.add_argument("--energy", default="l1", choices=ENERGIES, help="latent distance to the goal")
    p.add_argument("--waypoints", action="store_true",
                   help="oracle mode: goals at each of the expert's waypoints (e.g. above the cube, then around it, "
                        "then gripping), not only at subgoal boundaries")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from tkjepa.bench import TRAIN_SEED

    torch.set_num_threads(args.threads)
    if args.episodes < 1:
        raise SystemExit("tkjepa plan: --episodes must be ≥ 1")
    if args.world_seed in (TRAIN_SEED, TRAIN_SEED + 1):
        raise SystemExit(f"tkjepa plan: --world-seed {args.world_seed} is a training draw; use a held-out one (2000)")
    try:
        cem_cfg = CEMConfig(samples=args.samples, topk=args.topk, iters=args.iters, horizon=args.horizon,
                            momentum=args.momentum)
        cfg = PlanConfig(mode=args.mode, max_steps=args.max_steps, ask_every=args.ask_every, energy=args.energy,
                         seed=args.seed, waypoints=args.waypoints, cem=cem_cfg)
    except ValueError as e:
        raise SystemExit(f"tkjepa plan: {e}") from None
    t0 = time.perf_counter()
    models = load_planner(args.planner, need_head=args.mode in ("thinker", "told", "true-place"))
    if args.mode == "true-place" and not models[2].cfg.place:
        raise SystemExit(f"tkjepa plan: --mode true-place needs a place-first subgoal head; the one in {args.planner} "
                         "is not (`tkjepa train-planner --place-head`)")
    problem = head_mode_problem(models[2].cfg, args.mode) if models[2] is not None else None
    if problem:
        raise SystemExit(f"tkjepa plan: the subgoal head in {args.planner} was trained {problem}")
    if cem_cfg.horizon > models[1].config.future_tubelets:
        raise SystemExit(f"tkjepa plan: --horizon {cem_cfg.horizon} exceeds the world model's "
                         f"{models[1].config.future_tubelets} tubelets")
    result = evaluate(cfg, args.episodes, args.world_seed, models, progress=not args.quiet)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("success_rate", "episodes", "mean_steps", "seconds_per_action",
                                             "per_family", "first_subgoal_rate", "median_closest_to_first_cm",
                                             "seconds")}))
    return 0
