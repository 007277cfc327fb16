"""The guided predictor: JEPA's future predictor, steered block by block by the thinker's feature pyramid.

Context latents `ctx [B, Tc, N, D]` (Tc tubelets of N tokens from the encoder) and Tf·N learned mask tokens
for the future tubelets, all with fixed 3D sincos positions over (Tc + Tf, h, w), pass through `depth`
pre-norm transformer blocks; a LayerNorm and a Linear back to D give `pred [B, Tf, N, D]`.

Guidance. `self.pyramid` (a `PyramidExtractor` with `num_blocks = depth` and `dim = dim`, owned here unless
`injection="none"`) turns the cached thinker features into one vector g_l per block l, and block l reads it
in one of three ways, always scaled by a = tanh(gate_l) with gate_l a learnable scalar that starts at 0:
  film:      before block l     x <- x·(1 + a·scale_l) + a·shift_l,  (scale_l, shift_l) = Linear(g_l)
  adaln:     inside block l     LN(x) <- LN(x)·(1 + a·scale) + a·shift, for both LayerNorms (own scale/shift)
  crossattn: after self-attn    x <- x + a·CrossAttn(LN(x), kv_l)  over the pyramid's projected tokens
With a = 0 every injection is the identity, so an untrained guided predictor computes exactly what the plain
one (`injection="none"`, same shared weights) does, and training opens the gate only as far as the thinker
helps. `level_scale [depth]` or `[B, depth]` multiplies a per block (0 = ablate that block's guidance);
`guide=None` applies no guidance at all. `guidance=[B, depth, dim]` bypasses the pyramid (an oracle that
embeds the true subgoal); cross-attention then attends to that one vector per block.

Actions (`action_dim > 0`): actions [B, Tf, A] of the future tubelets are embedded and added to their mask
tokens. `block_causal`: a token of tubelet t attends only to tubelets ≤ t (V-JEPA 2-AC), so the prediction of
future tubelet t depends on the context and the earlier future tubelets only, never on later actions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from tkjepa.encoder.vit import Attention, init_weights, sincos_pos_embed_3d
from tkjepa.pyramid import PyramidConfig, PyramidExtractor

INJECTIONS = ("film", "adaln", "crossattn", "none")


@dataclass
class GuidedPredictorConfig:
    latent_dim: int = 96           # D: encoder token width, input and output
    dim: int = 128                 # predictor width
    depth: int = 4                 # transformer blocks (= guidance levels handed out by the pyramid)
    num_heads: int = 4             # attention heads
    mlp_ratio: float = 4.0         # MLP hidden width = mlp_ratio · dim
    context_tubelets: int = 4      # Tc: observed tubelets given as context
    future_tubelets: int = 4       # Tf: tubelets predicted per call
    tokens: int = 16               # N: tokens per tubelet
    grid_hw: tuple[int, int] | None = None  # (h, w) of the token grid, h·w = N; None = square √N × √N
    injection: str = "film"        # "film" | "adaln" | "crossattn" | "none" (module doc)
    action_dim: int = 0            # A: per-future-tubelet action size; 0 = not action-conditioned
    block_causal: bool = False     # tubelet t attends only to tubelets ≤ t
    cross_heads: int = 0           # crossattn heads; 0 = num_heads. One head over a few thinking tokens costs
                                   # ~2× less on a CPU than four (many tiny per-head products)
    pyramid: PyramidConfig = field(default_factory=PyramidConfig)  # its dim/num_blocks are set to dim/depth

    def __post_init__(self):
        if self.injection not in INJECTIONS:
            raise ValueError(f"injection must be one of {INJECTIONS}, got {self.injection!r}")
        if self.cross_heads < 0 or (self.cross_heads and self.dim % self.cross_heads):
            raise ValueError(f"cross_heads must be 0 or divide dim={self.dim}, got {self.cross_heads}")
        self.pyramid = replace(self.pyramid, dim=self.dim, num_blocks=self.depth)

    @property
    def grid(self) -> tuple[int, int]:
        if self.grid_hw is not None:
            h, w = self.grid_hw
        else:
            h = w = math.isqrt(self.tokens)
        if h * w != self.tokens:
            raise ValueError(f"grid {h}×{w} does not hold tokens={self.tokens}")
        return h, w

    @classmethod
    def tiny(cls, **kw) -> "GuidedPredictorConfig":
        """~1.6 M parameters with its pyramid; a B=8 step takes tens of ms on 2 cores."""
        return cls(**kw)

    @classmethod
    def paper(cls, **kw) -> "GuidedPredictorConfig":
        """The official predictor: 12 blocks, 384 wide, 6 heads, over V-JEPA 2 ViT-L tokens."""
        return cls(latent_dim=1024, dim=384, depth=12, num_heads=6, tokens=256, pyramid=PyramidConfig.paper(), **kw)


class SelfAttention(Attention):
    """The encoder's attention with an optional mask (True = may attend), for block-causal prediction."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # [B, L, D]
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, L, hs)
        return self.proj(rearrange(y, "b h l d -> b l (h d)"))


class CrossAttention(nn.Module):
    """Queries from the latent tokens, keys/values from a (layer-normed) thinker token set."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm_kv = nn.LayerNorm(dim)  # VLM states have a few huge channels; normalise before mixing
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        with torch.no_grad():
            self.kv.bias[:dim].zero_()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        """x: [B, L, dim], kv: [B, M, dim], kv_mask: [B, M] bool -> [B, L, dim]; zeros where no key is valid.

        The keys carry no bias (the first half of `kv.bias` is not used): a key bias b adds q·b to all of a
        query's logits alike, which the softmax ignores, so its true gradient is zero and what it gets is float
        noise that Adam scales up to full-size steps (and that differs between one process and several)."""
        q = rearrange(self.q(x), "b l (h d) -> b h l d", h=self.num_heads)
        b = self.kv.bias
        b = torch.cat([torch.zeros_like(b[: len(b) // 2]), b[len(b) // 2:]])
        k, v = rearrange(F.linear(self.norm_kv(kv), self.kv.weight, b), "b m (two h d) -> two b h m d", two=2,
                         h=self.num_heads)
        valid = kv_mask.any(1)  # [B]
        mask = (kv_mask | ~valid[:, None])[:, None, None]  # all-padding rows attend everywhere, then are zeroed
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(rearrange(y, "b h l d -> b l (h d)")) * valid[:, None, None].to(x.dtype)


class GuidedBlock(nn.Module):
    """Pre-norm block (the encoder's `Block` layout, so plain weights load) + this block's guidance reader."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, injection: str, cross_heads: int = 0):
        super().__init__()
        self.injection = injection
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        if injection == "film":
            self.film = nn.Linear(dim, 2 * dim)
        elif injection == "adaln":
            self.ada = nn.Linear(dim, 4 * dim)
        elif injection == "crossattn":
            self.norm_x = nn.LayerNorm(dim)
            self.cross = CrossAttention(dim, cross_heads or num_heads)

    def forward(self, x, mask=None, g=None, a=None, kv=None, kv_mask=None):
        """x: [B, L, dim]; g: [B, dim] guidance (None = none); a: [B, 1, 1] gate; kv/kv_mask for crossattn."""
        on = g is not None or kv is not None
        if on and self.injection == "film":
            scale, shift = self.film(g)[:, None].chunk(2, dim=-1)  # [B, 1, dim] each
            x = x * (1 + a * scale) + a * shift
        h = self.norm1(x)
        if on and self.injection == "adaln":
            s1, b1, s2, b2 = self.ada(g)[:, None].chunk(4, dim=-1)
            h = h * (1 + a * s1) + a * b1
        x = x + self.attn(h, mask)
        if on and self.injection == "crossattn":
            x = x + a * self.cross(self.norm_x(x), kv, kv_mask)
        h = self.norm2(x)
        if on and self.injection == "adaln":
            h = h * (1 + a * s2) + a * b2
        return x + self.mlp(h)


class GuidedPredictor(nn.Module):
    """forward(ctx [B, Tc, N, D], guide=None, actions=None, *, guidance=None, level_scale=None) -> [B, Tf, N, D].

    guide: the batched thinker features, a dict with keys old, old_mask, new, new_mask (`collate_features`),
    a 4-tuple in that order, or an object with those attributes. Ignored when injection="none".
    """

    def __init__(self, config: GuidedPredictorConfig | None = None):
        super().__init__()
        self.config = c = config or GuidedPredictorConfig()
        h, w = c.grid
        self.embed = nn.Linear(c.latent_dim, c.dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, c.dim))
        self.action_embed = nn.Linear(c.action_dim, c.dim) if c.action_dim else None
        self.blocks = nn.ModuleList(GuidedBlock(c.dim, c.num_heads, c.mlp_ratio, c.injection, c.cross_heads)
                                    for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim)
        self.proj = nn.Linear(c.dim, c.latent_dim)
        init_weights(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        for i, blk in enumerate(self.blocks, 1):  # ijepa's depth-scaled output projections
            blk.attn.proj.weight.data.div_(math.sqrt(2.0 * i))
            blk.mlp[2].weight.data.div_(math.sqrt(2.0 * i))
        # The guidance readers keep PyTorch's fan-in init (as the pyramid): with std 0.02 their output would be
        # ~1% of the residual stream's scale, too quiet to matter once the gate opens.
        for name, m in self.blocks.named_modules():
            if isinstance(m, nn.Linear) and name.split(".")[1] in ("film", "ada", "cross"):
                m.reset_parameters()
        if c.injection != "none":
            self.pyramid = PyramidExtractor(c.pyramid)
            self.gates = nn.Parameter(torch.zeros(c.depth))  # tanh(0) = 0: starts as the plain predictor
        T = c.context_tubelets + c.future_tubelets
        self.register_buffer("pos", sincos_pos_embed_3d(c.dim, T, h, w).view(T, h * w, c.dim), persistent=False)
        t = torch.arange(T).repeat_interleave(h * w)
        self.register_buffer("causal_mask", t[:, None] >= t[None, :], persistent=False)  # [L, L], True = attend

    def _guidance(self, guide, guidance):
        """-> (g [B, depth, dim] or None, kv [B, depth, M, dim] or None, kv_mask [B, M] or None)."""
        c = self.config
        if c.injection == "none" or (guide is None and guidance is None):
            return None, None, None
        if guidance is not None:  # oracle vectors; as cross-attention keys: one token per block
            if guidance.shape[1:] != (c.depth, c.dim):
                raise ValueError(f"guidance must be [B, {c.depth}, {c.dim}], got {tuple(guidance.shape)}")
            if c.injection == "crossattn":
                return None, guidance[:, :, None], torch.ones(guidance.shape[0], 1, dtype=torch.bool,
                                                                device=guidance.device)
            return guidance, None, None
        if isinstance(guide, dict):
            feats = (guide["old"], guide["old_mask"], guide["new"], guide["new_mask"])
        elif isinstance(guide, (tuple, list)):
            feats = tuple(guide)
        else:
            feats = (guide.old, guide.old_mask, guide.new, guide.new_mask)
        if c.injection == "crossattn":
            kv, kv_mask = self.pyramid.tokens(*feats)
            return None, kv, kv_mask
        return self.pyramid(*feats), None, None

    def _predict(self, ctx, g, kv, kv_mask, actions, level_scale):
        c = self.config
        B, Tc, N, _ = ctx.shape
        if (Tc, N, ctx.shape[-1]) != (c.context_tubelets, c.tokens, c.latent_dim):
            raise ValueError(f"ctx must be [B, {c.context_tubelets}, {c.tokens}, {c.latent_dim}], "
                             f"got {tuple(ctx.shape)}")
        fut = self.mask_token.expand(B, c.future_tubelets, N, c.dim)  # [B, Tf, N, dim]
        if self.action_embed is not None:
            if actions is None or actions.shape[1:] != (c.future_tubelets, c.action_dim):
                raise ValueError(f"actions must be [B, {c.future_tubelets}, {c.action_dim}]")
            fut = fut + self.action_embed(actions)[:, :, None]
        x = torch.cat([self.embed(ctx), fut], dim=1) + self.pos  # [B, Tc+Tf, N, dim]
        x = rearrange(x, "b t n d -> b (t n) d")
        mask = self.causal_mask if c.block_causal else None
        a = None
        if g is not None or kv is not None:
            a = torch.tanh(self.gates).expand(B, c.depth)
            if level_scale is not None:
                a = a * torch.as_tensor(level_scale).to(a).expand(B, c.depth)
        for l, blk in enumerate(self.blocks):
            x = blk(x, mask, g=None if g is None else g[:, l], a=None if a is None else a[:, l, None, None],
                    kv=None if kv is None else kv[:, l], kv_mask=kv_mask)
        x = self.proj(self.norm(x[:, Tc * N:]))
        return rearrange(x, "b (t n) d -> b t n d", n=N)  # [B, Tf, N, D]

    def _with_extra(self, g, kv, kv_mask, extra):
        """Cross-attention's key sets with `extra` [B, K, dim] (tokens every block may read, e.g. where the
        named object is) appended to each block's set."""
        if extra is None or kv is None:
            if extra is not None and self.config.injection != "none":
                raise ValueError("extra guidance tokens need injection='crossattn' and thinker features")
            return g, kv, kv_mask
        kv = torch.cat([kv, extra[:, None].expand(-1, kv.shape[1], -1, -1)], dim=2)
        return g, kv, torch.cat([kv_mask, torch.ones(extra.shape[:2], dtype=torch.bool, device=extra.device)], 1)

    def forward(self, ctx, guide=None, actions=None, *, guidance=None, level_scale=None,
                extra=None) -> torch.Tensor:
        """ctx: [B, Tc, N, D]; actions: [B, Tf, A]; guidance: [B, depth, dim] oracle vectors; extra: [B, K, dim]
        tokens appended to every block's cross-attention set -> [B, Tf, N, D]."""
        return self._predict(ctx, *self._with_extra(*self._guidance(guide, guidance), extra), actions, level_scale)

    def rollout(self, ctx, guide=None, windows: int = 1, actions=None, *, guidance=None,
                level_scale=None, detach_feedback: bool = False, extra=None) -> torch.Tensor:
        """Predict `windows` windows recursively -> [B, windows·Tf, N, D]; actions: [B, windows·Tf, A].

        Each window's context is the last Tc tubelets of [ctx ∥ predictions so far]; the guidance (from the
        observed clip) is computed once and reused. `detach_feedback`: the predictions fed back as context carry
        no gradient (stop-gradient), so a later window's loss trains the predictor to continue from what it was
        given, not to bend the earlier window's prediction toward an easier continuation.
        """
        c = self.config
        g, kv, kv_mask = self._with_extra(*self._guidance(guide, guidance), extra)
        preds, context = [], ctx
        for k in range(windows):
            act = None if actions is None else actions[:, k * c.future_tubelets:(k + 1) * c.future_tubelets]
            preds.append(self._predict(context, g, kv, kv_mask, act, level_scale))
            fed = [p.detach() for p in preds] if detach_feedback else preds
            context = torch.cat([ctx, *fed], dim=1)[:, -c.context_tubelets:]
        return torch.cat(preds, dim=1)
