"""The thinker's subgoal head: from what the thinker made of the clip so far, the latent of the next subgoal.

At any moment t of an episode the thinker sees its sparse clip (8 frames spread over [0, t)) and the
instruction, and says what the hand holds and what comes next ("holding nothing . next red cube"). The planner
needs that "next" as a place in the *encoder's* latent space, a goal it can measure predicted futures
against. `SubgoalHead` maps

    thinker pyramid features (per cached layer: masked-mean of the old and new streams, `pyramid.masked_mean`)
    + the thinker's last-layer tokens (old ∥ new: the prompt, the clip, the thinking), read by cross-attention
    + the latent of the last observed frame z_t [N, D]                      ->  z* [N, D]

trained to match the latent (`worldmodel.frame_latents`) of the *next phase-boundary frame*:
the frame `subgoal_end[k]` at which the first subgoal not yet achieved by frame t−1 is achieved (grasp closed
on the cube; cube released over the bowl; fingertip on the object), or the episode's last frame once all are.
Each latent token reads the pooled vector and cross-attends (`predictor.CrossAttention`, as the guided
predictor's cross-attention injection) to the thinker's tokens, so the token where the named object sits can
find its name ("yellow", "cube") among them; pooled vectors alone mix every word of the prompt together.

Two heads (`SubgoalConfig.place`):
- *residual* (the default, shipped): z* = z_t + a residual, trained for the L1 of z* alone. Measured
  (BENCHMARKS.md, `scripts/subgoal_landscape.py`): it beats copying z_t in L1, but over a grid of hand
  positions its energy minimum lies about as far from the subgoal as the hand's current place, with 5× the
  demonstrations and with the thinker *told* the true words alike. A mean L1 copies the still tokens and blurs
  the few where the hand goes.
- *place first* (`SubgoalConfig.placed()`, `tkjepa train-planner --place-head`): the head first says where the
  hand will be at the boundary, the *place* (wrist position and grip), by pointing at one of the latent tokens
  and reading an offset there; it is scored on that place (L1 against the demonstration's). A decoder then
  draws z* from z_t and the place; it learns, on the true places, what a hand at a place looks like in the
  latent. It also reads the thinker's words as tokens. Measured: the decoder works (given the true place,
  `tkjepa plan --mode true-place` plans nearly as well as the oracle), the pointer does not: it does not find
  the named object in z_t, even told the true words, so its z* plans no better than the residual head's. The
  pooled 4 × 4 tokens are what lose the object: told its name, a probe finds it in the encoder's 8 × 8 tokens
  (`scripts/grounding_probe.py`). `SubgoalConfig.fine` (`--fine-pointer`) points over those instead: the last
  frame's unpooled 64 tokens, which the planner hands over (`planning.thinker_goal(..., encoder=)`). That alone
  does not find the object, nor does adding the object's name to every token (`name_words`, `--read-name`)
  while the trunk also reads the thinker's hidden states. What does is the probe's own design: a trunk that
  reads *only* the fine tokens and the named object (`named_pointer`, `--named-pointer`). Told the true words
  its place is 2.7 cm from the boundary's (held out), and its goals plan about like the true places. With
  the thinker's own words it inherits the thinker's mistakes: before the first subgoal the tiny thinker names
  the second object (BENCHMARKS.md, issue 6).

Training data: demonstrations (`generate_episode`) of the multi-step families `FAMILIES`, world seed
`seed_data`, queried every `query_every` tubelets from a random offset: 200 demonstrations for the residual
head; 2000 for the place-first recipe, since finding a named object in z_t takes many scenes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tkjepa.encoder import Block, init_weights
from tkjepa.predictor import CrossAttention
from tkjepa.pyramid import masked_mean
from tkjepa.thinker.think import clip_indices, thinking_target
from tkjepa.worldmodel import WORKSPACE, frame_latents, load_part, save_part

FAMILIES = ("pick_place", "touch_sequence")  # the multi-step families the planner is scored on
THINKER_CLIP = 8  # frames in the thinker's clip (SamplerConfig.tiny().thinker_frames)


@dataclass
class SubgoalConfig:
    thought_dim: int = 1536     # F: thinker rows × 2 streams × Dv (tiny thinker: 6 × 2 × 128)
    vlm_dim: int = 128          # Dv of the thinker tokens the head cross-attends to (its last cached layer)
    latent_dim: int = 96        # D
    tokens: int = 16            # N
    dim: int = 128              # head width
    depth: int = 2              # transformer blocks over the N tokens
    num_heads: int = 4
    episodes: int = 200         # demonstrations (half per family), world seed `seed_data`
    query_every: int = 3        # tubelets between queries in a demonstration
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed_data: int = 1000       # = bench.TRAIN_SEED
    seed: int = 0
    val_episodes: int = 40      # held-out demonstrations (world seed `seed_data` + 1) the head is scored on
    told_text: bool = False     # diagnostic: the thinker is told the true text (`thinking_target`) instead of
                                # generating it; `tkjepa plan --mode told` then tells it the env's truth
    place: bool = False         # place first: predict the boundary's wrist and grip, then decode z* from them
    place_weight: float = 1.0   # weight of the place's L1 (workspace units) beside the latent's
    place_freqs: int = 6        # Fourier frequencies of the place fed to the decoder
    vocab: int | None = 0       # > 0: the head also reads the thinker's words (the token ids of its text, embedded
                                # here) beside its hidden states; None: the thinker's vocabulary, set when training
                                # starts; 0: no words
    max_words: int = 16         # words read (the thinking is ~7: "holding nothing . next red cube")
    ask_at_start: bool = False  # also query each demonstration at its start (t = 2), as the planner first asks
    fine: bool = False          # the pointer reads the last frame's unpooled 8 × 8 tokens
                                # (`frame_latents(pool=False)`), where a named object can be found; the decoder
                                # keeps the pooled 4 × 4 (place-first heads only)
    fine_tokens: int = 64       # tokens the pointer reads with `fine`
    name_words: int = 0         # > 0: the words the thinker says after "next" (the object: "red cube"), this many,
                                # are embedded and added to every trunk token, as the grounding probe is told the name
    next_id: int | None = None  # the thinker tokenizer's id of "next" (set when training starts, with name_words)
    named_pointer: bool = False # the trunk reads only the latent tokens and the named object (name_words), no hidden
                                # states or cross-attention: the grounding probe's design (scripts/grounding_probe.py)
    name_states: bool = False   # the named object enters as the thinker's own hidden states at its words, every
                                # cached layer, mixed by learned per-layer weights (a pyramid over the name),
                                # instead of a word-embedding table (`named_states`)
    travel_scale: float = 0.05  # place loss weight per query ∝ clip(the wrist's way to the boundary / this, ½, 4):
                                # most queries come just before a boundary, where "near the hand" is right; the
                                # far ones are where the named object must be found (0: unweighted)

    def __post_init__(self):
        if self.fine and not self.place:
            raise ValueError("SubgoalConfig(fine=True) is a place-first pointer option: set place=True too")
        if self.name_words and self.vocab == 0:
            raise ValueError("SubgoalConfig(name_words > 0) reads the thinker's words: vocab must not be 0")
        if self.named_pointer and not (self.place and self.name_words):
            raise ValueError("SubgoalConfig(named_pointer=True) points at the named object: set place=True and "
                             "name_words > 0")
        if self.name_states and not self.name_words:
            raise ValueError("SubgoalConfig(name_states=True) reads the named words' states: set name_words > 0")

    @property
    def vlm_layers(self) -> int:
        """Cached thinker layers (the thought vector holds each one's old and new means)."""
        return self.thought_dim // (2 * self.vlm_dim)

    @property
    def trunk_tokens(self) -> int:
        """Tokens the trunk (and the place-first pointer) reads: the fine grid's or the pooled one's."""
        return self.fine_tokens if self.fine else self.tokens

    @classmethod
    def placed(cls, **kw) -> "SubgoalConfig":
        """The place-first recipe (`tkjepa train-planner --place-head`): the pointer and decoder, the thinker's
        words, 10× the demonstrations (finding a named object takes many scenes), each also asked at its start."""
        return cls(**{**dict(place=True, vocab=None, ask_at_start=True, episodes=2000, query_every=6, steps=3000,
                             val_episodes=100), **kw})


def place_units(wrist: torch.Tensor, grip: torch.Tensor) -> torch.Tensor:
    """wrist [..., 3] (m), grip [...] in [0, 1] -> place [..., 4]: the wrist in workspace units (0 … 1 across
    `WORKSPACE`), then the grip."""
    lo, hi = (torch.as_tensor(b, dtype=wrist.dtype) for b in WORKSPACE)
    return torch.cat([(wrist - lo) / (hi - lo), grip[..., None].to(wrist.dtype)], -1)


def place_metres(place: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """place [..., 4] -> (wrist [..., 3] in metres, grip [...]): the inverse of `place_units`."""
    lo, hi = (torch.as_tensor(b, dtype=place.dtype) for b in WORKSPACE)
    return place[..., :3] * (hi - lo) + lo, place[..., 3]


def token_anchors(tokens: int) -> torch.Tensor:
    """[tokens, 4] first guess of the place under each latent token (row-major g × g grid of the image): x runs
    with the image's columns, y against its rows (the camera looks at the table from the near side), height
    and grip mid-range. Distinct starting places break the pointer's symmetry: were all equal, no token would
    be better to point at than another, and the pointer would learn only the mean place."""
    g = int(round(tokens ** 0.5))
    i = torch.arange(tokens)
    return torch.stack([(i % g + 0.5) / g, 1 - (i // g + 0.5) / g, torch.full((tokens,), 0.5),
                        torch.full((tokens,), 0.5)], -1)


class SubgoalHead(nn.Module):
    """forward(thought [B, F], kv [B, M, Dv], kv_mask [B, M], z [B, N, D]) -> z* [B, N, D] (layer-normed per
    token, like the targets).

    The trunk: `depth` layers of self-attention over the N latent tokens, then cross-attention to the thinker's
    tokens. Without `cfg.place` (the default), the trunk's tokens give a residual on z_t directly. With it the
    head says *where* first: `where` points at one of the N tokens (softmax over them) and reads an offset
    there, giving the place [B, 4] — the wrist in workspace units and the grip at the next boundary — which is
    scored on its own (`place_units` of the demonstration's); `decode` then draws z* from z_t and that place,
    a second small transformer that learns where in the latent a hand at that place shows. A plain residual
    head trained for L1 blurs the few tokens where the hand goes; this one must commit to a place."""

    def __init__(self, cfg: SubgoalConfig):
        super().__init__()
        self.cfg = cfg
        reads_thinker = not cfg.named_pointer  # the named pointer's trunk reads only the latent and the name
        if reads_thinker:
            self.think = nn.Sequential(nn.LayerNorm(cfg.thought_dim), nn.Linear(cfg.thought_dim, cfg.dim))
            # VLM states have a few huge channels: normalise before projecting
            self.kv = nn.Sequential(nn.LayerNorm(cfg.vlm_dim), nn.Linear(cfg.vlm_dim, cfg.dim))
        self.embed = nn.Linear(cfg.latent_dim, cfg.dim)
        self.pos = nn.Parameter(torch.zeros(1, cfg.trunk_tokens, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.num_heads) for _ in range(cfg.depth))
        if reads_thinker:
            self.cross_norm = nn.ModuleList(nn.LayerNorm(cfg.dim) for _ in range(cfg.depth))
            self.cross = nn.ModuleList(CrossAttention(cfg.dim, cfg.num_heads) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        if cfg.vocab and reads_thinker:
            self.word_emb = nn.Embedding(cfg.vocab, cfg.dim)
            self.word_pos = nn.Parameter(torch.zeros(1, cfg.max_words, cfg.dim))
        if cfg.name_words and cfg.name_states:  # the thinker's states at the named words, a pyramid over its layers
            self.name_layer = nn.Parameter(torch.zeros(cfg.vlm_layers))   # softmax weights, uniform at init
            self.name_proj = nn.ModuleList(nn.Sequential(nn.LayerNorm(cfg.vlm_dim), nn.Linear(cfg.vlm_dim, cfg.dim))
                                           for _ in range(cfg.name_words))
        elif cfg.name_words:  # one table per word after "next": colour and shape keep their roles
            self.name_emb = nn.ModuleList(nn.Embedding(cfg.vocab, cfg.dim) for _ in range(cfg.name_words))
        if cfg.place:
            self.score = nn.Linear(cfg.dim, 1)
            self.offset = nn.Linear(cfg.dim, 4)
            self.anchor = nn.Parameter(token_anchors(cfg.trunk_tokens))     # each token's place, learned
            self.dec_embed = nn.Linear(cfg.latent_dim, cfg.dim)
            self.dec_pos = nn.Parameter(torch.zeros(1, cfg.tokens, cfg.dim))
            self.dec_place = nn.Sequential(nn.Linear(4 + 8 * cfg.place_freqs, cfg.dim), nn.GELU(),
                                           nn.Linear(cfg.dim, cfg.dim))
            self.dec_blocks = nn.ModuleList(Block(cfg.dim, cfg.num_heads) for _ in range(cfg.depth))
            self.dec_norm = nn.LayerNorm(cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.latent_dim)
        init_weights(self)
        nn.init.trunc_normal_(self.pos, std=0.02)
        if cfg.place:
            nn.init.trunc_normal_(self.dec_pos, std=0.02)
        if cfg.vocab and reads_thinker:
            nn.init.trunc_normal_(self.word_pos, std=0.02)

    def read(self, thought, kv, kv_mask, z, words=None, names=None) -> torch.Tensor:
        """The trunk: latent tokens [B, N, dim] after reading the thinker (and its words [B, W], −1 = none); z is
        [B, N, D], N = `cfg.trunk_tokens` (the fine tokens for a `fine` head). A `name_states` head also reads
        names [B, L, name_words, Dv], the thinker's states at the named words (`named_states`)."""
        if z.shape[1] != self.cfg.trunk_tokens:
            raise ValueError(f"the trunk reads {self.cfg.trunk_tokens} latent tokens, got {z.shape[1]}"
                             + (": pass the fine tokens (zf)" if self.cfg.fine else ""))
        x = self.embed(z) + self.pos                                           # [B, N, dim]
        if not self.cfg.named_pointer:
            x = x + self.think(thought)[:, None]
        if self.cfg.name_words:
            if words is None:
                raise ValueError("this subgoal head reads the object the thinker names: pass its word ids")
            ids = named_ids(words, self.cfg.next_id, self.cfg.name_words)            # [B, n], −1 = none
            if self.cfg.name_states:
                if names is None:
                    raise ValueError("this subgoal head reads the thinker's states at the named words: pass them "
                                     "(`named_states`)")
                # each layer's states normalised before the mix: a few huge channels would carry it otherwise
                names = F.layer_norm(names.to(x.dtype), (names.shape[-1],))
                mixed = torch.einsum("l,blnd->bnd", self.name_layer.softmax(0), names)             # [B, n, Dv]
                for k, proj in enumerate(self.name_proj):
                    x = x + (proj(mixed[:, k]) * (ids[:, k] >= 0)[:, None].to(x.dtype))[:, None]
            else:
                for emb, i in zip(self.name_emb, ids.T):
                    x = x + (emb(i.clamp(min=0)) * (i >= 0)[:, None].to(x.dtype))[:, None]
        if self.cfg.named_pointer:      # the latent tokens and the name only
            for blk in self.blocks:
                x = blk(x)
            return self.norm(x)
        kv = self.kv(kv)                                                        # [B, M, dim]
        if self.cfg.vocab:
            if words is None:
                raise ValueError("this subgoal head reads the thinker's words: pass their ids (`word_ids`)")
            words = words[:, :self.cfg.max_words]
            w = self.word_emb(words.clamp(min=0)) + self.word_pos[:, :words.shape[1]]
            kv, kv_mask = torch.cat([kv, w], 1), torch.cat([kv_mask, words >= 0], 1)
        for blk, norm, cross in zip(self.blocks, self.cross_norm, self.cross):
            x = blk(x)
            x = x + cross(norm(x), kv, kv_mask)
        return self.norm(x)

    def where(self, thought, kv, kv_mask, z, words=None, zf=None, names=None) -> torch.Tensor:
        """The predicted place [B, 4] (`place_units`) of the next boundary: a soft pointer over the trunk's
        tokens, z's [B, N, D] or, for a `fine` head, zf's [B, 64, D] (the same frame unpooled)."""
        if self.cfg.fine and zf is None:
            raise ValueError("this subgoal head points over the fine 8 × 8 tokens: pass zf "
                             "(`frame_latents(..., pool=False)` of the last observed frame)")
        x = self.read(thought, kv, kv_mask, zf if self.cfg.fine else z, words, names)
        return (self.score(x).softmax(1) * (self.anchor + self.offset(x))).sum(1)

    def decode(self, z, place) -> torch.Tensor:
        """z* [B, N, D] of the scene z [B, N, D] with the hand at place [B, 4]."""
        ang = place[..., None] * (2.0 ** torch.arange(self.cfg.place_freqs)) * torch.pi     # [B, 4, freqs]
        feats = torch.cat([place, ang.sin().flatten(1), ang.cos().flatten(1)], -1)
        x = self.dec_embed(z) + self.dec_pos + self.dec_place(feats)[:, None]
        for blk in self.dec_blocks:
            x = blk(x)
        return F.layer_norm(z + self.out(self.dec_norm(x)), (z.shape[-1],))

    def forward(self, thought, kv, kv_mask, z, words=None, zf=None, names=None) -> torch.Tensor:
        if self.cfg.place:
            return self.decode(z, self.where(thought, kv, kv_mask, z, words, zf, names))
        return F.layer_norm(z + self.out(self.read(thought, kv, kv_mask, z, words, names)), (z.shape[-1],))


def named_ids(words: torch.Tensor, next_id: int, n: int) -> torch.Tensor:
    """words [B, W] (token ids, −1 after the end) -> [B, n]: the n ids after the first `next_id` ("red", "cube"
    of "holding nothing . next red cube"), −1 where the text has no "next" or ends sooner."""
    is_next = words == next_id
    at = is_next.int().argmax(1)                                                 # first "next" (0 if none)
    idx = at[:, None] + 1 + torch.arange(n)                                      # [B, n]
    ids = words.gather(1, idx.clamp(max=words.shape[1] - 1))
    ok = is_next.any(1)[:, None] & (idx < words.shape[1])
    return torch.where(ok, ids, torch.full_like(ids, -1))


def named_states(feats, words: torch.Tensor, next_id: int, n: int) -> torch.Tensor:
    """ThinkerFeatures + the token ids of its text [W] (`word_ids`, −1 after the end) -> [L, n, Dv]: the new
    stream's states, every cached layer, at the n words after the first "next" (the position of a word in the
    text is its position in the new stream); zeros where the text names nothing there."""
    L, Nn, Dv = feats.new.shape
    is_next = (words == next_id).nonzero()
    out = torch.zeros(L, n, Dv)
    if len(is_next):
        for k in range(n):
            pos = int(is_next[0, 0]) + 1 + k
            if pos < min(Nn, len(words)) and words[pos] >= 0 and bool(feats.new_mask[pos]):
                out[:, k] = feats.new[:, pos]
    return out


def thought_vector(feats) -> torch.Tensor:
    """ThinkerFeatures (old [L, No, Dv], new [L, Nn, Dv]) -> [L·2·Dv]: each row's masked means, old then new."""
    old = masked_mean(feats.old, feats.old_mask[None].expand(feats.old.shape[0], -1))  # [L, Dv]
    new = masked_mean(feats.new, feats.new_mask[None].expand(feats.new.shape[0], -1))
    return torch.stack([old, new], 1).flatten()


def thought_tokens(feats) -> tuple[torch.Tensor, torch.Tensor]:
    """The last cached layer's tokens, old ∥ new, real ones only: [M_i, Dv] and an all-True mask [M_i]."""
    tok = torch.cat([feats.old[-1][feats.old_mask.bool()], feats.new[-1][feats.new_mask.bool()]])
    return tok, torch.ones(len(tok), dtype=torch.bool)


def pad_tokens(tokens: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[M_i, Dv] each -> right-padded [B, M, Dv] and mask [B, M]."""
    M = max(len(t) for t in tokens)
    kv = torch.stack([F.pad(t, (0, 0, 0, M - len(t))) for t in tokens])
    mask = torch.stack([torch.arange(M) < len(t) for t in tokens])
    return kv, mask


def word_ids(tokenizer, texts: list[str], width: int) -> torch.Tensor:
    """The thinker's texts -> their token ids [B, width] (its own tokenizer; cut at `width`, −1 after the end)."""
    from tkjepa.thinker.tokenizer import normalize_text

    rows = [tokenizer(normalize_text(t))["input_ids"][:width] for t in texts]
    return torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.long)


def think(model, tokenizer, episodes: list, ts: list[int], told: list[str] | None = None, features: bool = False
          ) -> tuple:
    """(thoughts [B, F], last-layer tokens [M_i, Dv] per episode, texts) of `episodes` observed up to frame
    ts[i] − 1 (frames past it are never read); `told`: the thinking to use instead of generating it;
    `features`: also the ThinkerFeatures themselves (a fourth item)."""
    from tkjepa.thinker.model import extract_features

    feats = extract_features(model, tokenizer, episodes, [clip_indices(t, THINKER_CLIP) for t in ts], told=told)
    out = (torch.stack([thought_vector(f) for f in feats]), [thought_tokens(f)[0] for f in feats],
           [f.text for f in feats])
    return (*out, feats) if features else out


def next_boundary(ep, t: int) -> int:
    """Frame of the next phase boundary once frames 0 … t−1 are observed (the last frame after all subgoals)."""
    ends = np.asarray(ep.extras["subgoal_end"])
    pending = ends[ends > t - 1]
    return int(pending[0]) if len(pending) else ep.num_frames - 1


def head_data(cfg: SubgoalConfig, encoder, thinker, seed: int, episodes: int, progress: bool = True) -> dict:
    """{"thought": [M, F], "kv": [M, K, Dv], "kv_mask": [M, K], "z": [M, N, D], "target": [M, N, D], "t": [M],
    "target_frame": [M], "wrist": [M, 3] (m), "target_wrist": [M, 3] (m), "target_grip": [M], "words": [M, W]}
    from demos: the target is the next phase boundary's latent, and where the wrist is and how closed the grip at
    that boundary; "wrist" is where it is at t − 1; the words are the token ids of what the thinker said
    (`word_ids`); a `fine` head's data also holds "zf" [M, 64, D], frame t − 1's unpooled tokens, and a
    `name_states` head's "names" [M, L, name_words, Dv], the thinker's states at the named words (half precision)."""
    from tqdm.auto import tqdm

    from tkjepa.world.generate import WorldConfig, episode_seed, generate_episode

    rows: dict[str, list] = {k: [] for k in ("thought", "tokens", "words", "z", "target", "t", "target_frame",
                                             "wrist", "target_wrist", "target_grip")}
    for i in tqdm(range(episodes), desc="subgoal data", unit="ep", disable=not progress):
        ep = generate_episode(episode_seed(seed, i), WorldConfig(family=FAMILIES[i % len(FAMILIES)]))
        wrist = torch.from_numpy(ep.positions(["rightHand"])[:, 0]).float()       # [T, 3]
        js = list(range(int(np.random.default_rng([seed, i]).integers(cfg.query_every)), ep.num_frames // 2,
                        cfg.query_every))
        js = sorted({0, *js}) if cfg.ask_at_start else js
        ts = [2 * j + 2 for j in js]                                              # frames observed: 0 … t−1
        needed = sorted({t - 1 for t in ts} | {next_boundary(ep, t) for t in ts})
        Z = dict(zip(needed, frame_latents(encoder, ep.frames, needed)))          # only the frames used
        if cfg.fine:
            Zf = dict(zip(ts, frame_latents(encoder, ep.frames, [t - 1 for t in ts], pool=False).half()))
        told = [thinking_target(ep, t) for t in ts] if cfg.told_text else None
        if cfg.name_states:
            thought, tokens, texts, feats = think(*thinker, [ep] * len(ts), ts, told, features=True)
        else:
            (thought, tokens, texts), feats = think(*thinker, [ep] * len(ts), ts, told), [None] * len(ts)
        for t, th, tok, words, f in zip(ts, thought, tokens, word_ids(thinker[1], texts, cfg.max_words), feats):
            b = next_boundary(ep, t)
            if cfg.name_states:
                rows.setdefault("names", []).append(named_states(f, words, cfg.next_id, cfg.name_words).half())
            rows["thought"].append(th)
            rows["tokens"].append(tok.half())  # halves the memory of the largest array
            rows["words"].append(words)
            rows["z"].append(Z[t - 1])
            if cfg.fine:
                rows.setdefault("zf", []).append(Zf[t])
            rows["target"].append(Z[b])
            rows["t"].append(t)
            rows["target_frame"].append(b)
            rows["target_wrist"].append(wrist[b])
            rows["wrist"].append(wrist[t - 1])
            rows["target_grip"].append(float(ep.extras["grip"][b]))
    kv, kv_mask = pad_tokens(rows.pop("tokens"))
    out = {k: torch.stack(v) if torch.is_tensor(v[0]) else torch.tensor(v) for k, v in rows.items()}
    return {**out, "kv": kv, "kv_mask": kv_mask}


def _inputs(data: dict, idx, z_idx=None) -> tuple:
    """The head's inputs for queries idx (thoughts and words of idx, latents of z_idx, default idx)."""
    zi = idx if z_idx is None else z_idx
    zf = data["zf"][zi].float() if "zf" in data else None
    names = data["names"][idx].float() if "names" in data else None
    return (data["thought"][idx], data["kv"][idx].float(), data["kv_mask"][idx], data["z"][zi], data["words"][idx], zf,
            names)


def _true_place(data: dict, idx) -> torch.Tensor:
    return place_units(data["target_wrist"][idx], data["target_grip"][idx])


def head_loss(head: SubgoalHead, data: dict, idx) -> tuple[torch.Tensor, dict]:
    """Training loss on queries idx and its parts. Residual head: L1 of z*. Place-first head: L1 of the place
    (workspace units, × `place_weight`) + L1 of z* decoded from the *true* place (teacher forcing: the decoder
    learns what a hand at a place looks like while the pointer is still wrong). The place term weighs each query
    by how far the wrist has to go (`SubgoalConfig.travel_scale`)."""
    if not head.cfg.place:
        loss = (head(*_inputs(data, idx)) - data["target"][idx]).abs().mean()
        return loss, {"loss": loss.item()}
    true = _true_place(data, idx)
    place = (head.where(*_inputs(data, idx)) - true).abs().mean(-1)                        # [B]
    if head.cfg.travel_scale > 0:
        travel = (data["target_wrist"][idx] - data["wrist"][idx]).norm(dim=-1)
        weight = (travel / head.cfg.travel_scale).clamp(0.5, 4.0)
        place = (weight * place).sum() / weight.sum()
    else:
        place = place.mean()
    latent = (head.decode(data["z"][idx], true) - data["target"][idx]).abs().mean()
    return latent + head.cfg.place_weight * place, {"loss": latent.item() + head.cfg.place_weight * place.item(),
                                                    "latent": latent.item(), "place": place.item()}


def train_head(cfg: SubgoalConfig, data: dict, progress: bool = True) -> tuple[SubgoalHead, list[dict]]:
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    head = SubgoalHead(cfg)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    M, history = len(data["z"]), []
    for step in tqdm(range(cfg.steps), desc="subgoal head", disable=not progress):
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(0, M, (cfg.batch_size,), generator=g)
        for group in opt.param_groups:  # cosine decay
            group["lr"] = cfg.lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * step / cfg.steps)))

        # forward
        loss, parts = head_loss(head, data, idx)

        # backward & step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 250 == 0:
            history.append({"step": step + 1, **{k: round(v, 5) for k, v in parts.items()}})
    return head.eval(), history


@torch.no_grad()
def evaluate_head(head: SubgoalHead, data: dict) -> dict:
    """Held-out L1 of z*, of copying z_t, and of z* with the thoughts shuffled across queries. A place-first
    head also: how far its place's wrist lies from the boundary's, on the table (xy, median cm; share within
    5 cm), the grip's error, and the L1 of z* decoded from the true place (what a perfect pointer would give)."""
    everything = torch.arange(len(data["z"]))
    pred = head(*_inputs(data, everything))
    perm = torch.randperm(len(pred), generator=torch.Generator().manual_seed(0))
    shuffled = head(*_inputs(data, perm, everything))
    l1 = lambda p: float((p - data["target"]).abs().mean())  # noqa: E731
    out = {"val_l1": l1(pred), "val_l1_copy_current": l1(data["z"]), "val_l1_shuffled_thoughts": l1(shuffled),
           "val_queries": len(pred)}
    if head.cfg.place:
        wrist, grip = place_metres(head.where(*_inputs(data, everything)))
        xy = (wrist - data["target_wrist"])[:, :2].norm(dim=-1)
        far = (data["target_wrist"] - data["wrist"]).norm(dim=-1) > 0.1
        out.update(val_place_xy_cm=round(100 * float(xy.median()), 2),
                   val_place_within_5cm=float((xy < 0.05).float().mean()),
                   val_place_xy_cm_far=round(100 * float(xy[far].median()), 2) if far.any() else None,
                   val_far_queries=int(far.sum()),
                   val_grip_abs_error=float((grip - data["target_grip"]).abs().mean()),
                   val_l1_true_place=l1(head.decode(data["z"], _true_place(data, everything))))
    return out


def train_from_scratch(cfg: SubgoalConfig, encoder, thinker, progress: bool = True) -> tuple[SubgoalHead, dict]:
    """Data from demonstrations, training, held-out scores. The head's config (`head.cfg`, what to save) has
    `vocab` set to the thinker's vocabulary if it was None."""
    if cfg.vocab is None:
        cfg = replace(cfg, vocab=len(thinker[1]))
    if cfg.name_words and cfg.next_id is None:
        cfg = replace(cfg, next_id=thinker[1].convert_tokens_to_ids("next"))
    t0 = time.perf_counter()
    data = head_data(cfg, encoder, thinker, cfg.seed_data, cfg.episodes, progress)
    val = head_data(cfg, encoder, thinker, cfg.seed_data + 1, cfg.val_episodes, progress)
    t_data = time.perf_counter() - t0
    head, history = train_head(cfg, data, progress)
    return head, {"config": asdict(cfg), "history": history, **evaluate_head(head, val),
                  "train_queries": len(data["z"]), "data_s": round(t_data, 1),
                  "params": sum(p.numel() for p in head.parameters())}


def save_head(head: SubgoalHead, cfg: SubgoalConfig, path: str | Path) -> None:
    save_part(head, cfg, path, "subgoal_head")


def load_head(path: str | Path) -> SubgoalHead:
    fields, state = load_part(path, "subgoal_head")
    head = SubgoalHead(SubgoalConfig(**{"place": False, "vocab": 0, **fields}))  # older heads lack these fields
    head.load_state_dict(state)
    return head.eval()
