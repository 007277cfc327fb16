"""The thinker's subgoal head: from what the thinker made of the clip so far, the latent of the next subgoal.

At any moment t of an episode the thinker sees its sparse clip (8 frames spread over [0, t)) and the
instruction, and says what the hand holds and what comes next ("holding nothing . next red cube"). The planner
needs that "next" as a place in the *encoder's* latent space, a goal it can measure predicted futures
against. `SubgoalHead` maps

    thinker pyramid features (per cached layer: masked-mean of the old and new streams, `pyramid.masked_mean`)
    + the thinker's last-layer tokens (old ∥ new: the prompt, the clip, the thinking), read by cross-attention
    + the latent of the last observed frame z_t [N, D]                      ->  z* [N, D]

trained (L1) to match the latent (`worldmodel.frame_latents`) of the *next phase-boundary frame*:
the frame `subgoal_end[k]` at which the first subgoal not yet achieved by frame t−1 is achieved (grasp closed
on the cube; cube released over the bowl; fingertip on the object), or the episode's last frame once all are.
The head predicts a residual on z_t — most of the scene does not move. Each latent token reads the pooled
vector and cross-attends (`predictor.CrossAttention`, as the guided predictor's cross-attention injection) to
the thinker's tokens, so the token where the named object sits can find its name ("yellow", "cube") among
them and learn to become "a hand is here"; pooled vectors alone mix every word of the prompt together.

Training data: demonstrations (`generate_episode`) of the multi-step families `FAMILIES`, world seed
`seed_data`, queried every 3rd tubelet.

A limit to know (measured, BENCHMARKS.md): the head beats copying z_t on held-out queries (L1), but its z*
does not move the energy's minimum to where the subgoal is: over a grid of hand positions the minimum lies
about as far from the subgoal as the hand's current place (`scripts/subgoal_landscape.py`). That holds with
5× the demonstrations, and with the thinker *told* the true words (`SubgoalConfig.told_text`, `tkjepa plan
--mode told`), so it is the head, not the words. (The words are also wrong before the first subgoal: the tiny
thinker was pretrained to speak at the forecast start, which comes after it.)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tkjepa.encoder import Block, init_weights
from tkjepa.predictor import CrossAttention
from tkjepa.pyramid import masked_mean
from tkjepa.thinker.think import clip_indices, thinking_target
from tkjepa.worldmodel import frame_latents, load_part, save_part

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
    told_text: bool = False     # diagnostic: the thinker is told the true text (`thinking_target`) instead of
                                # generating it; `tkjepa plan --mode told` then tells it the env's truth


class SubgoalHead(nn.Module):
    """forward(thought [B, F], kv [B, M, Dv], kv_mask [B, M], z [B, N, D]) -> z* [B, N, D] (layer-normed per
    token, like the targets). Each of `depth` layers: self-attention over the N latent tokens, then
    cross-attention to the thinker's tokens."""

    def __init__(self, cfg: SubgoalConfig):
        super().__init__()
        self.cfg = cfg
        self.think = nn.Sequential(nn.LayerNorm(cfg.thought_dim), nn.Linear(cfg.thought_dim, cfg.dim))
        # VLM states have a few huge channels: normalise before projecting
        self.kv = nn.Sequential(nn.LayerNorm(cfg.vlm_dim), nn.Linear(cfg.vlm_dim, cfg.dim))
        self.embed = nn.Linear(cfg.latent_dim, cfg.dim)
        self.pos = nn.Parameter(torch.zeros(1, cfg.tokens, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.num_heads) for _ in range(cfg.depth))
        self.cross_norm = nn.ModuleList(nn.LayerNorm(cfg.dim) for _ in range(cfg.depth))
        self.cross = nn.ModuleList(CrossAttention(cfg.dim, cfg.num_heads) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.latent_dim)
        init_weights(self)
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, thought, kv, kv_mask, z) -> torch.Tensor:
        x = self.embed(z) + self.pos + self.think(thought)[:, None]           # [B, N, dim]
        kv = self.kv(kv)                                                        # [B, M, dim]
        for blk, norm, cross in zip(self.blocks, self.cross_norm, self.cross):
            x = blk(x)
            x = x + cross(norm(x), kv, kv_mask)
        return F.layer_norm(z + self.out(self.norm(x)), (z.shape[-1],))


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


def think(model, tokenizer, episodes: list, ts: list[int], told: list[str] | None = None
          ) -> tuple[torch.Tensor, list[torch.Tensor], list[str]]:
    """(thoughts [B, F], last-layer tokens [M_i, Dv] per episode, texts) of `episodes` observed up to frame
    ts[i] − 1 (frames past it are never read); `told`: the thinking to use instead of generating it."""
    from tkjepa.thinker.model import extract_features

    feats = extract_features(model, tokenizer, episodes, [clip_indices(t, THINKER_CLIP) for t in ts], told=told)
    return (torch.stack([thought_vector(f) for f in feats]), [thought_tokens(f)[0] for f in feats],
            [f.text for f in feats])


def next_boundary(ep, t: int) -> int:
    """Frame of the next phase boundary once frames 0 … t−1 are observed (the last frame after all subgoals)."""
    ends = np.asarray(ep.extras["subgoal_end"])
    pending = ends[ends > t - 1]
    return int(pending[0]) if len(pending) else ep.num_frames - 1


def head_data(cfg: SubgoalConfig, encoder, thinker, seed: int, episodes: int, progress: bool = True) -> dict:
    """{"thought": [M, F], "kv": [M, K, Dv], "kv_mask": [M, K], "z": [M, N, D], "target": [M, N, D], "t": [M],
    "target_frame": [M]} from demos."""
    from tqdm.auto import tqdm

    from tkjepa.world.generate import WorldConfig, episode_seed, generate_episode

    rows: dict[str, list] = {k: [] for k in ("thought", "tokens", "z", "target", "t", "target_frame")}
    for i in tqdm(range(episodes), desc="subgoal data", unit="ep", disable=not progress):
        ep = generate_episode(episode_seed(seed, i), WorldConfig(family=FAMILIES[i % len(FAMILIES)]))
        Z = frame_latents(encoder, ep.frames)                                     # [T, N, D]
        js = list(range(int(np.random.default_rng([seed, i]).integers(cfg.query_every)), ep.num_frames // 2,
                        cfg.query_every))
        ts = [2 * j + 2 for j in js]                                              # frames observed: 0 … t−1
        told = [thinking_target(ep, t) for t in ts] if cfg.told_text else None
        thought, tokens, _ = think(*thinker, [ep] * len(ts), ts, told)
        for t, th, tok in zip(ts, thought, tokens):
            b = next_boundary(ep, t)
            rows["thought"].append(th)
            rows["tokens"].append(tok.half())  # halves the memory of the largest array
            rows["z"].append(Z[t - 1])
            rows["target"].append(Z[b])
            rows["t"].append(t)
            rows["target_frame"].append(b)
    kv, kv_mask = pad_tokens(rows.pop("tokens"))
    out = {k: torch.stack(v) if torch.is_tensor(v[0]) else torch.tensor(v) for k, v in rows.items()}
    return {**out, "kv": kv, "kv_mask": kv_mask}


def _inputs(data: dict, idx) -> tuple:
    return data["thought"][idx], data["kv"][idx].float(), data["kv_mask"][idx], data["z"][idx]


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
        loss = (head(*_inputs(data, idx)) - data["target"][idx]).abs().mean()

        # backward & step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 250 == 0:
            history.append({"step": step + 1, "loss": loss.item()})
    return head.eval(), history


@torch.no_grad()
def evaluate_head(head: SubgoalHead, data: dict) -> dict:
    """Held-out L1 of z*, of copying z_t, and of z* with the thoughts shuffled across queries."""
    everything = torch.arange(len(data["z"]))
    pred = head(*_inputs(data, everything))
    perm = torch.randperm(len(pred), generator=torch.Generator().manual_seed(0))
    shuffled = head(*_inputs(data, perm)[:3], data["z"])
    l1 = lambda p: float((p - data["target"]).abs().mean())  # noqa: E731
    return {"val_l1": l1(pred), "val_l1_copy_current": l1(data["z"]), "val_l1_shuffled_thoughts": l1(shuffled),
            "val_queries": len(pred)}


def train_from_scratch(cfg: SubgoalConfig, encoder, thinker, progress: bool = True) -> tuple[SubgoalHead, dict]:
    t0 = time.perf_counter()
    data = head_data(cfg, encoder, thinker, cfg.seed_data, cfg.episodes, progress)
    val = head_data(cfg, encoder, thinker, cfg.seed_data + 1, 40, progress)
    t_data = time.perf_counter() - t0
    head, history = train_head(cfg, data, progress)
    return head, {"config": asdict(cfg), "history": history, **evaluate_head(head, val),
                  "train_queries": len(data["z"]), "data_s": round(t_data, 1),
                  "params": sum(p.numel() for p in head.parameters())}


def save_head(head: SubgoalHead, cfg: SubgoalConfig, path: str | Path) -> None:
    save_part(head, cfg, path, "subgoal_head")


def load_head(path: str | Path) -> SubgoalHead:
    fields, state = load_part(path, "subgoal_head")
    head = SubgoalHead(SubgoalConfig(**fields))
    head.load_state_dict(state)
    return head.eval()
