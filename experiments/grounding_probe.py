"""Can the current latent say where a *named* object is? A probe told the true name, on 4 × 4 or 8 × 8 tokens.

    .venv/bin/python experiments/grounding_probe.py [--episodes 2000] [--grid 4 8] [--steps 3000]
                                                [--out runs/grounding_probe.json]

The place-first subgoal head (`tkjepa train-subgoal-head`) must point at where the hand goes next, and a
pointer over the pooled latent z_t does not find the named object. Is the latent the limit? This probe is
given what a perfect thinker would give — the true name of the next subgoal's object ("cyan cube"), as two
learned word embeddings added to every token — and the encoder's latent of the last observed frame, either
pooled to 4 × 4 tokens as the planner uses (`planning.state.frame_latents`) or the encoder's own 8 × 8. Two
transformer blocks, then the subgoal head's soft pointer (`planning.subgoal.token_anchors` + offsets), predict where
the wrist is at the next phase boundary (x, y). Training: demonstrations of world seed 1000 (pick_place and
touch_sequence alternating), queried every 3rd tubelet as `planning.subgoal.head_data` does; scored on 100 of seed
1001, also split into "far" queries (the wrist must travel more than 10 cm: the object must be found) and
"near". Deterministic; one torch thread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from tkjepa import paths
from tkjepa.encoder import load_encoder
from tkjepa.encoder.vit import Block, init_weights
from tkjepa.planning.plan import demonstration
from tkjepa.planning.state import WORKSPACE, frame_latents
from tkjepa.planning.subgoal import FAMILIES, next_boundary, token_anchors
from tkjepa.world.generate import episode_seed

FAR_M = 0.10


def queries(encoder, seed: int, episodes: int) -> dict:
    """Per query: latents of frame t − 1 (4 × 4 and 8 × 8), the next subgoal's object name, the wrist then and
    at the next boundary."""
    rows: dict[str, list] = {k: [] for k in ("z4", "z8", "name", "wrist", "target")}
    for i in range(episodes):
        demo, env = demonstration(episode_seed(seed, i), FAMILIES[i % len(FAMILIES)])
        names, ends = [o.name for o in env.state.objects], np.asarray(demo.extras["subgoal_end"])
        wrist = demo.positions(["rightHand"])[:, 0]
        js = range(int(np.random.default_rng([seed, i]).integers(3)), demo.num_frames // 2, 3)
        ts = [2 * j + 2 for j in js]
        rows["z4"].append(frame_latents(encoder, demo.frames, [t - 1 for t in ts]))
        rows["z8"].append(frame_latents(encoder, demo.frames, [t - 1 for t in ts], pool=False))
        for t in ts:
            k = int(np.searchsorted(ends, t - 1, side="right"))       # first subgoal not achieved by frame t − 1
            rows["name"].append(names[env.task.subgoals[min(k, len(ends) - 1)][1]])
            rows["wrist"].append(wrist[t - 1])
            rows["target"].append(wrist[next_boundary(demo, t)])
    return {"z4": torch.cat(rows["z4"]), "z8": torch.cat(rows["z8"]), "name": rows["name"],
            "wrist": torch.tensor(np.array(rows["wrist"]), dtype=torch.float32),
            "target": torch.tensor(np.array(rows["target"]), dtype=torch.float32)}


class Probe(nn.Module):
    def __init__(self, words: int, tokens: int, latent_dim: int = 96, dim: int = 128):
        super().__init__()
        self.words = nn.Embedding(words, dim)
        self.embed = nn.Linear(latent_dim, dim)
        self.pos = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.ModuleList(Block(dim, 4) for _ in range(2))
        self.norm = nn.LayerNorm(dim)
        self.score, self.offset = nn.Linear(dim, 1), nn.Linear(dim, 2)
        init_weights(self)
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.anchor = nn.Parameter(token_anchors(tokens)[:, :2])

    def forward(self, z, word_ids):  # -> (x, y) in workspace units [B, 2]
        x = self.embed(z) + self.pos + self.words(word_ids).sum(1)[:, None]
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return (self.score(x).softmax(1) * (self.anchor + self.offset(x))).sum(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=2000, help="training demonstrations (world seed 1000)")
    p.add_argument("--val-episodes", type=int, default=100, help="held-out demonstrations (world seed 1001)")
    p.add_argument("--grid", type=int, nargs="+", default=[4, 8], choices=[4, 8], help="token grids to probe")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    encoder = load_encoder(paths.ENCODER).eval()
    train, val = queries(encoder, 1000, args.episodes), queries(encoder, 1001, args.val_episodes)
    vocab = {w: i for i, w in enumerate(sorted({w for n in train["name"] + val["name"] for w in n.split()}))}
    ids = lambda names: torch.tensor([[vocab[w] for w in n.split()] for n in names])  # noqa: E731
    lo, hi = (torch.tensor(b[:2], dtype=torch.float32) for b in WORKSPACE)
    y = (train["target"][:, :2] - lo) / (hi - lo)
    far = (val["target"] - val["wrist"]).norm(dim=-1) > FAR_M
    result = {"train_queries": len(y), "val_queries": len(far), "val_far": int(far.sum()),
              "data_s": round(time.perf_counter() - t0, 1)}
    for g in args.grid:
        key = f"z{g}"
        torch.manual_seed(0)
        probe = Probe(len(vocab), g * g)
        opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=0.05)
        t1 = time.perf_counter()
        for step in range(args.steps):
            idx = torch.randint(0, len(y), (64,), generator=torch.Generator().manual_seed(step))
            for group in opt.param_groups:  # cosine decay
                group["lr"] = 1e-3 * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * step / args.steps)))
            loss = (probe(train[key][idx], ids([train["name"][i] for i in idx])) - y[idx]).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            xy = probe.eval()(val[key], ids(val["name"])) * (hi - lo) + lo
        err = (xy - val["target"][:, :2]).norm(dim=-1)
        cm = lambda e: round(100 * float(e.median()), 1)  # noqa: E731
        result[f"{g}x{g}"] = {"median_cm": cm(err), "far_median_cm": cm(err[far]), "near_median_cm": cm(err[~far]),
                              "within_5cm": float((err < 0.05).float().mean()),
                              "far_within_5cm": float((err[far] < 0.05).float().mean()),
                              "train_s": round(time.perf_counter() - t1, 1)}
        print(f"{g}x{g} tokens: {json.dumps(result[f'{g}x{g}'])}", flush=True)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
