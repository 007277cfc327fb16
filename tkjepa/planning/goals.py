"""Where the planner's goal latents come from: one small goal source per planning mode.

- `flat`: the latent of the demonstration's final frame — the goal image. A short-horizon search toward a far
  goal is greedy: it heads for where the hand ends (over the bowl; over the second object) and skips what must
  happen first (the grasp; the first touch).
- `thinker`: every `ask_every` actions the thinker looks at its clip of the frames so far and says what is next
  ("holding nothing . next red cube"); the subgoal head turns the object it names and the last frame into z*,
  the latent of the next phase boundary, and the planner solves toward z* until it asks again.
- `told` (a diagnostic: a thinker that never errs in words): as `thinker`, with the true words read off the
  env's state (`told_text`). thinker < told says better words would help; told ≈ thinker says the subgoal head
  or the planner is the limit.
- `oracle` (a diagnostic: a perfect thinker and head): the latent of the demonstration's frame where the
  subgoal that the env's true state says is next was achieved (`oracle_boundary`) — what the subgoal head is
  trained to predict, so flat < thinker ≤ oracle separates the thinker's share of the failures from the
  planner's.

Every source is called once per action with what the planner has seen so far and returns z* [N, D] and, when
it asked anew, what it was told: {"text": the words, "place": [x, y, z, grip] where the head sends the hand}
(None otherwise). Its `grip` is then the goal's grip (0 open … 1 shut), which the planner takes once the hand
is there (`cem.LatentPlanner.plan`): the goal frame's for flat and oracle, the head's for thinker and told.
"""

from __future__ import annotations

import numpy as np
import torch

from tkjepa.episode import Episode
from tkjepa.planning.state import frame_latents
from tkjepa.planning.subgoal import named_ids, place_metres
from tkjepa.thinker.model import generate
from tkjepa.thinker.think import clip_indices
from tkjepa.world.env import TabletopEnv
from tkjepa.world.generate import joint_transforms

MODES = ("flat", "thinker", "told", "oracle")
THINKER_CLIP = 8  # frames in the thinker's clip of what the planner has seen


def oracle_subgoal(env: TabletopEnv, demo: Episode) -> int:
    """Index of the subgoal the env's true progress (held object, touches; for push, the hand at the
    demonstration's first boundary) says is next."""
    k = env.progress()
    if k is not None:
        return k
    first = demo.positions(["rightHand"])[int(demo.extras["subgoal_end"][0]), 0]
    return 0 if np.linalg.norm(env.state.wrist[:2] - first[:2]) > 0.02 else 1


def oracle_boundary(env: TabletopEnv, demo: Episode) -> int:
    """Demo frame of the next phase boundary given the env's true progress (held object, touches, success)."""
    if env.success():
        return demo.num_frames - 1
    return int(demo.extras["subgoal_end"][oracle_subgoal(env, demo)])


def told_text(env: TabletopEnv, demo: Episode) -> str:
    """What a thinker that never errs would say now: "holding <held or nothing> . next <next subgoal's object>"
    from the env's true state (the words the thinker is trained on, read off the env instead of a demo)."""
    names = [o.name for o in env.state.objects]
    holding = names[env.state.held] if env.state.held >= 0 else "nothing"
    return f"holding {holding} . next {names[env.task.subgoals[oracle_subgoal(env, demo)][1]]}"


def felt(env: TabletopEnv) -> dict:
    """The hand's proprioception now, as a thinker reads it (`thinker.inputs.proprio_text`): its joint positions,
    the object it holds (−1: none) and how many objects it has touched."""
    return {"joints": env.joints(), "held": int(env.state.held), "touches": len(env.state.touched)}


def seen_episode(demo: Episode, frames: np.ndarray, hand: list[dict] | None = None) -> Episode:
    """What the planner has seen, as an Episode a thinker reads: the frames [T, H, W, 3], the instruction and scene
    from `demo`, and — given `hand`, what the hand felt at each frame (`felt`) — its joint transforms and
    `extras["held"]`, `extras["touches"]` (what `thinker.inputs.proprio_text` reads)."""
    if hand is not None and len(hand) != len(frames):
        raise ValueError(f"{len(hand)} hand poses for {len(frames)} frames")
    transforms, extras = {}, {}
    if hand:
        transforms = joint_transforms([h["joints"] for h in hand])
        extras = {k: np.array([h[k] for h in hand], np.int64) for k in ("held", "touches")}
    return Episode(frames=frames, transforms=transforms, confidences={}, intrinsic=demo.intrinsic, task=demo.task,
                   instruction=demo.instruction, environment=demo.environment, fps=demo.fps, extras=extras)


def thinker_words(thinker, tokenizer, demo: Episode, frames: np.ndarray, hand: list[dict] | None = None) -> str:
    """What the thinker says with frames [T, H, W, 3] observed (its clip of them, the instruction from `demo`,
    and what the hand felt, for a thinker that reads proprioception)."""
    seen = seen_episode(demo, frames, hand)
    return generate(thinker, tokenizer, [seen], [clip_indices(len(frames), THINKER_CLIP)])[2][0]


@torch.no_grad()
def head_goal(head, tokenizer, encoder, frames: np.ndarray, z_last: torch.Tensor, text: str
              ) -> tuple[torch.Tensor, np.ndarray]:
    """(z* [N, D], place [4]) the subgoal head draws from the object `text` names, the last frame's unpooled
    tokens and its pooled latent z_last [N, D]: the latent of the scene with the hand where the head points, and
    that place, [x, y, z] (metres) and the grip (0 open … 1 shut)."""
    names = named_ids(tokenizer, [text], head.cfg.name_words)
    zf = frame_latents(encoder, frames, [len(frames) - 1], pool=False)
    place = head.where(names, zf)
    wrist, grip = place_metres(place[0])
    return head.decode(z_last[None], place)[0], np.append(wrist.numpy(), grip.item())


class GoalSource:
    """Called once per action: (step, env, demo, frames [T, H, W, 3] so far, what the hand felt, z_last [N, D])
    -> (z* [N, D], {"text", "place"} when it asked anew, else None)."""

    mode = ""
    grip = 0.0   # the current goal's grip, 0 open … 1 shut
    label = ""   # the current goal in words: "final frame", "demonstration frame 16", or the thinker's words

    def __init__(self, encoder):
        self.encoder = encoder

    def start(self, demo: Episode) -> None:
        """A new episode begins."""


class FlatGoal(GoalSource):
    mode = "flat"

    def start(self, demo):
        self.goal = frame_latents(self.encoder, demo.frames, [demo.num_frames - 1])[0]
        self.grip = float(demo.extras["grip"][-1])
        self.label = "final frame"

    def __call__(self, step, env, demo, frames, hand, z_last):
        return self.goal, None


class OracleGoal(GoalSource):
    mode = "oracle"

    def start(self, demo):
        self.cache: dict[int, torch.Tensor] = {}

    def __call__(self, step, env, demo, frames, hand, z_last):
        b = oracle_boundary(env, demo)
        self.grip, self.label = float(demo.extras["grip"][b]), f"demonstration frame {b}"
        if b not in self.cache:
            self.cache[b] = frame_latents(self.encoder, demo.frames, [b])[0]
        return self.cache[b], None


class ThinkerGoal(GoalSource):
    """Asks every `ask_every` actions (the thinker, or — `told` — the env's true words) and keeps z* between."""

    mode = "thinker"

    def __init__(self, encoder, head, tokenizer, thinker=None, ask_every: int = 2):
        super().__init__(encoder)
        if head is None or tokenizer is None:
            raise ValueError(f"{self.mode} goals need a subgoal head and the thinker's tokenizer")
        if self.mode == "thinker" and thinker is None:
            raise ValueError("thinker goals need the thinker")
        self.head, self.tokenizer, self.thinker, self.ask_every = head, tokenizer, thinker, ask_every

    def words(self, env, demo, frames, hand) -> str:
        return thinker_words(self.thinker, self.tokenizer, demo, frames, hand)

    def start(self, demo):
        self.goal = None

    def __call__(self, step, env, demo, frames, hand, z_last):
        if step % self.ask_every:
            return self.goal, None
        text = self.words(env, demo, frames, hand)
        self.goal, place = head_goal(self.head, self.tokenizer, self.encoder, frames, z_last, text)
        self.grip, self.label = float(place[3]), text
        return self.goal, {"text": text, "place": place}


class ToldGoal(ThinkerGoal):
    mode = "told"

    def words(self, env, demo, frames, hand) -> str:
        return told_text(env, demo)


def goal_source(mode: str, encoder, head=None, tokenizer=None, thinker=None, ask_every: int = 2) -> GoalSource:
    """The goal source of a planning mode (`MODES`)."""
    if mode == "flat":
        return FlatGoal(encoder)
    if mode == "oracle":
        return OracleGoal(encoder)
    if mode == "thinker":
        return ThinkerGoal(encoder, head, tokenizer, thinker, ask_every)
    if mode == "told":
        return ToldGoal(encoder, head, tokenizer, None, ask_every)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
