"""The subgoal head: from the object the thinker names and the current frame, the latent of the next subgoal.

At any moment t of an episode the thinker sees its sparse clip (8 frames spread over [0, t)) and the
instruction, and says what the hand holds and what comes next ("holding nothing . next red cube"). The planner
needs that "next" as a goal in the *encoder's* latent space, something it can measure predicted futures against.
`SubgoalHead` gets there in two steps, place first:

1. a *pointer* reads the last observed frame's unpooled 8 × 8 encoder tokens (`state.frame_latents(pool=False)`)
   with the two words the thinker says after "next" (the object: "red cube") added to every token, and says
   where the hand will be at the next phase boundary, the *place* [4] (the wrist in workspace units and the
   grip): a softmax over the tokens, each with a learned anchor place and an offset read there. The pooled 4 × 4
   tokens the world model uses blur which object sits where; the 8 × 8 ones keep it.
2. a *decoder* draws z* [16, D], the pooled latent of the scene with the hand at that place, from the current
   pooled latent z_t and the place (Fourier features).

Training (teacher forcing): demonstrations of the multi-step families `FAMILIES`, asked at their start and every
`query_every` tubelets; the pointer is scored on the boundary's true place (L1, workspace units, each query
weighed by how far the wrist must travel: the far queries are where the named object must be found), and the
decoder on the boundary frame's latent *from the true place*, so it learns what a hand at a place looks like
while the pointer is still wrong. The words are the true ones (`thinker.think.thinking_target`): the head reads
only the object they name, so at planning time it takes the thinker's own words just as well
(`goals.thinker_words`, then `goals.head_goal`), and no thinker needs to run while it trains.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tkjepa.checkpoint import config_from_dict, load_weights, read_json, save_part
from tkjepa.encoder.vit import Block, init_weights
from tkjepa.optim import lr_at, set_lr, step_generator
from tkjepa.planning.state import WORKSPACE, frame_latents
from tkjepa.thinker.think import thinking_target
from tkjepa.thinker.tokenizer import normalize_text
from tkjepa.world.generate import WorldConfig, episode_seed, generate_episode

FAMILIES = ("pick_place", "touch_sequence")  # the multi-step families the planner is scored on


@dataclass
class SubgoalConfig:
    latent_dim: int = 96        # D of the encoder's tokens
    tokens: int = 16            # N: the pooled latent's tokens (what the decoder draws)
    fine_tokens: int = 64       # the unpooled tokens the pointer reads
    dim: int = 128              # head width
    depth: int = 2              # transformer blocks of the pointer and of the decoder
    num_heads: int = 4
    place_freqs: int = 6        # Fourier frequencies of the place fed to the decoder
    name_words: int = 2         # words read after "next": the object's colour and shape
    vocab: int | None = None    # the thinker tokenizer's size (set when training starts)
    next_id: int | None = None  # its id of "next" (set when training starts)
    episodes: int = 2000        # demonstrations (half per family), world seed `seed_data`: finding a named
                                # object takes many scenes
    query_every: int = 6        # tubelets between queries in a demonstration (after one at its start)
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3            # peak AdamW lr, cosine to 1% of it
    weight_decay: float = 0.05
    seed_data: int = 1000       # the demonstrations' world seed (planning is scored on seed 2000's)
    seed: int = 0               # weights and batch order
    val_episodes: int = 100     # held-out demonstrations (world seed `seed_data` + 1) the head is scored on
    place_weight: float = 1.0   # weight of the place's L1 (workspace units) beside the latent's
    travel_scale: float = 0.05  # place loss weight per query ∝ clip(the wrist's way to the boundary / this, ½, 4):
                                # most queries come just before a boundary, where "near the hand" is right


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


def named_ids(tokenizer, texts: list[str], n: int) -> torch.Tensor:
    """[B, n]: the token ids of the n words after the first "next" of each text ("red", "cube" of "holding
    nothing . next red cube"), −1 where a text has no "next" or ends sooner."""
    next_id = tokenizer.convert_tokens_to_ids("next")
    out = torch.full((len(texts), n), -1, dtype=torch.long)
    for b, text in enumerate(texts):
        ids = tokenizer(normalize_text(text))["input_ids"]
        if next_id in ids:
            after = ids[ids.index(next_id) + 1:][:n]
            out[b, :len(after)] = torch.tensor(after, dtype=torch.long)
    return out


class SubgoalHead(nn.Module):
    """where(names [B, 2], zf [B, 64, D]) -> place [B, 4]; decode(z [B, 16, D], place) -> z* [B, 16, D];
    forward(names, zf, z) = decode(z, where(names, zf)). z* is layer-normed per token, like the targets."""

    def __init__(self, cfg: SubgoalConfig):
        super().__init__()
        if cfg.vocab is None:
            raise ValueError("SubgoalConfig.vocab is unset: it is the thinker tokenizer's size (set by training)")
        self.cfg = cfg
        # the pointer: the fine latent tokens + the named object
        self.embed = nn.Linear(cfg.latent_dim, cfg.dim)
        self.pos = nn.Parameter(torch.zeros(1, cfg.fine_tokens, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.num_heads) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        # one table per word after "next": colour and shape keep their roles
        self.name_emb = nn.ModuleList(nn.Embedding(cfg.vocab, cfg.dim) for _ in range(cfg.name_words))
        self.score = nn.Linear(cfg.dim, 1)
        self.offset = nn.Linear(cfg.dim, 4)
        self.anchor = nn.Parameter(token_anchors(cfg.fine_tokens))          # each token's place, learned
        # the decoder: the pooled latent + the place
        self.dec_embed = nn.Linear(cfg.latent_dim, cfg.dim)
        self.dec_pos = nn.Parameter(torch.zeros(1, cfg.tokens, cfg.dim))
        self.dec_place = nn.Sequential(nn.Linear(4 + 8 * cfg.place_freqs, cfg.dim), nn.GELU(),
                                       nn.Linear(cfg.dim, cfg.dim))
        self.dec_blocks = nn.ModuleList(Block(cfg.dim, cfg.num_heads) for _ in range(cfg.depth))
        self.dec_norm = nn.LayerNorm(cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.latent_dim)
        init_weights(self)
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.dec_pos, std=0.02)

    def where(self, names: torch.Tensor, zf: torch.Tensor) -> torch.Tensor:
        """The place [B, 4] (`place_units`) of the next boundary, from the named words' ids [B, name_words]
        (−1 = none) and the last frame's fine tokens zf [B, fine_tokens, D]."""
        if zf.shape[1] != self.cfg.fine_tokens:
            raise ValueError(f"the pointer reads {self.cfg.fine_tokens} unpooled tokens, got {zf.shape[1]}")
        x = self.embed(zf) + self.pos                                           # [B, 64, dim]
        for emb, i in zip(self.name_emb, names.T):
            x = x + (emb(i.clamp(min=0)) * (i >= 0)[:, None].to(x.dtype))[:, None]
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return (self.score(x).softmax(1) * (self.anchor + self.offset(x))).sum(1)

    def decode(self, z: torch.Tensor, place: torch.Tensor) -> torch.Tensor:
        """z* [B, N, D] of the scene z [B, N, D] with the hand at place [B, 4]."""
        ang = place[..., None] * (2.0 ** torch.arange(self.cfg.place_freqs)) * torch.pi     # [B, 4, freqs]
        feats = torch.cat([place, ang.sin().flatten(1), ang.cos().flatten(1)], -1)
        x = self.dec_embed(z) + self.dec_pos + self.dec_place(feats)[:, None]
        for blk in self.dec_blocks:
            x = blk(x)
        return F.layer_norm(z + self.out(self.dec_norm(x)), (z.shape[-1],))

    def forward(self, names: torch.Tensor, zf: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z, self.where(names, zf))


def next_boundary(ep, t: int) -> int:
    """Frame of the next phase boundary once frames 0 … t−1 are observed (the last frame after all subgoals)."""
    ends = np.asarray(ep.extras["subgoal_end"])
    pending = ends[ends > t - 1]
    return int(pending[0]) if len(pending) else ep.num_frames - 1


def head_data(cfg: SubgoalConfig, encoder, tokenizer, seed: int, episodes: int, progress: bool = True) -> dict:
    """Queries of `episodes` demonstrations of world seed `seed`: {"names": [M, 2] the true next object's word
    ids, "zf": [M, 64, D] frame t − 1's unpooled tokens (half precision), "z": [M, 16, D] its pooled latent,
    "target": [M, 16, D] the next phase boundary's latent, "t", "target_frame" [M], "wrist" [M, 3] (m) at t − 1,
    "target_wrist" [M, 3] and "target_grip" [M] at the boundary}."""
    from tqdm.auto import tqdm

    rows: dict[str, list] = {k: [] for k in ("names", "zf", "z", "target", "t", "target_frame", "wrist",
                                             "target_wrist", "target_grip")}
    for i in tqdm(range(episodes), desc="subgoal data", unit="ep", disable=not progress):
        ep = generate_episode(episode_seed(seed, i), WorldConfig(family=FAMILIES[i % len(FAMILIES)]))
        wrist = torch.from_numpy(ep.positions(["rightHand"])[:, 0]).float()       # [T, 3]
        js = range(int(np.random.default_rng([seed, i]).integers(cfg.query_every)), ep.num_frames // 2,
                   cfg.query_every)
        ts = [2 * j + 2 for j in sorted({0, *js})]                                # frames observed: 0 … t−1
        bounds = [next_boundary(ep, t) for t in ts]
        needed = sorted({t - 1 for t in ts} | set(bounds))
        Z = dict(zip(needed, frame_latents(encoder, ep.frames, needed)))          # only the frames used
        Zf = frame_latents(encoder, ep.frames, [t - 1 for t in ts], pool=False).half()
        names = named_ids(tokenizer, [thinking_target(ep, t) for t in ts], cfg.name_words)
        for t, b, zf, name in zip(ts, bounds, Zf, names):
            rows["names"].append(name)
            rows["zf"].append(zf)
            rows["z"].append(Z[t - 1])
            rows["target"].append(Z[b])
            rows["t"].append(t)
            rows["target_frame"].append(b)
            rows["target_wrist"].append(wrist[b])
            rows["wrist"].append(wrist[t - 1])
            rows["target_grip"].append(float(ep.extras["grip"][b]))
    return {k: torch.stack(v) if torch.is_tensor(v[0]) else torch.tensor(v) for k, v in rows.items()}


def _true_place(data: dict, idx) -> torch.Tensor:
    return place_units(data["target_wrist"][idx], data["target_grip"][idx])


def head_loss(head: SubgoalHead, data: dict, idx) -> tuple[torch.Tensor, dict]:
    """Training loss on queries idx and its parts: L1 of the place (workspace units, × `place_weight`, each query
    weighed by how far the wrist has to go) + L1 of z* decoded from the *true* place (teacher forcing)."""
    true = _true_place(data, idx)
    place = (head.where(data["names"][idx], data["zf"][idx].float()) - true).abs().mean(-1)   # [B]
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
        idx = torch.randint(0, M, (cfg.batch_size,), generator=step_generator(cfg.seed, step))
        set_lr(opt, lr_at(step, cfg.steps, cfg.lr, 0.01 * cfg.lr))  # cosine to 1% of the peak

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
    """Held-out L1 of z*, of copying z_t, and of z* with the named objects shuffled across queries; how far the
    head's place lies from the boundary's wrist on the table (xy, median cm, all queries and the far ones where
    the wrist must travel > 10 cm; share within 5 cm), the grip's error, and the L1 of z* decoded from the true
    place (what a perfect pointer would give)."""
    everything = torch.arange(len(data["z"]))
    zf = data["zf"].float()
    pred = head(data["names"], zf, data["z"])
    perm = torch.randperm(len(pred), generator=torch.Generator().manual_seed(0))
    shuffled = head(data["names"][perm], zf, data["z"])
    l1 = lambda p: float((p - data["target"]).abs().mean())  # noqa: E731
    wrist, grip = place_metres(head.where(data["names"], zf))
    xy = (wrist - data["target_wrist"])[:, :2].norm(dim=-1)
    far = (data["target_wrist"] - data["wrist"]).norm(dim=-1) > 0.1
    return {"val_l1": l1(pred), "val_l1_copy_current": l1(data["z"]), "val_l1_shuffled_names": l1(shuffled),
            "val_queries": len(pred), "val_place_xy_cm": round(100 * float(xy.median()), 2),
            "val_place_within_5cm": float((xy < 0.05).float().mean()),
            "val_place_xy_cm_far": round(100 * float(xy[far].median()), 2) if far.any() else None,
            "val_far_queries": int(far.sum()), "val_grip_abs_error": float((grip - data["target_grip"]).abs().mean()),
            "val_l1_true_place": l1(head.decode(data["z"], _true_place(data, everything)))}


def train_from_scratch(cfg: SubgoalConfig, encoder, tokenizer, progress: bool = True) -> tuple[SubgoalHead, dict]:
    """Data from demonstrations, training, held-out scores. The head's config (`head.cfg`, what to save) gets the
    tokenizer's vocabulary size and its id of "next"."""
    from dataclasses import replace

    cfg = replace(cfg, vocab=len(tokenizer), next_id=tokenizer.convert_tokens_to_ids("next"))
    t0 = time.perf_counter()
    data = head_data(cfg, encoder, tokenizer, cfg.seed_data, cfg.episodes, progress)
    val = head_data(cfg, encoder, tokenizer, cfg.seed_data + 1, cfg.val_episodes, progress)
    t_data = time.perf_counter() - t0
    head, history = train_head(cfg, data, progress)
    return head, {"config": asdict(cfg), "history": history, **evaluate_head(head, val),
                  "train_queries": len(data["z"]), "data_s": round(t_data, 1),
                  "params": sum(p.numel() for p in head.parameters())}


def save_head(head: SubgoalHead, folder: str | Path) -> None:
    """`folder`/subgoal_head.safetensors + subgoal_head.json."""
    save_part(folder, "subgoal_head", head, head.cfg)


def load_head(folder: str | Path) -> SubgoalHead:
    folder = Path(folder)
    cfg = config_from_dict(SubgoalConfig, read_json(folder / "subgoal_head.json"), folder / "subgoal_head.json")
    return load_weights(SubgoalHead(cfg), folder / "subgoal_head.safetensors").eval()
