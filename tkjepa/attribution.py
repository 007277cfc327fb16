"""Which thinker layers does the forecaster's prediction lean on? Integrated Gradients and layer ablation
(what `tkjepa attribute` reports).

Scalar. For each episode, the progress of the predicted wrist (`rightHand`, joint 1) toward where it truly goes
at the last frame of the trained horizon (frame 8): s = ⟨ŷ_8 − p_0, u⟩, p_0 the last observed wrist position,
u the unit vector of the true displacement y_8 − p_0 (metres). s is linear in the prediction (IG stays
well-behaved) and higher = more of the true motion predicted. Episodes whose true displacement is < 1 mm (u
undefined) or whose frame 8 is not valid are left out, and the JSON says how many (`scalar_undefined`).

Attribution. Captum's `IntegratedGradients` over the two thinker inputs, old [B, L, No, Dv] and new
[B, L, Nn, Dv] (L cached decoder layers), or over the one a forecaster reads (the shipped thinkjepa reads only
the new stream, `ForecasterConfig.streams`; the other then gets zero attribution). Baseline: the per-layer mean
state (over the evaluated episodes and their unmasked tokens, the same vector at every token position), a "no
episode-specific information" reference; zeros would be off-distribution for transformer states. The
per-layer attribution of an episode is the signed sum over that layer's tokens and channels of both streams
(metres of progress); by completeness the
layers sum to s(input) − s(baseline), up to the convergence delta.

Causal check. For each layer l, row l of old and new is replaced by the baseline for every episode (the other
rows kept), one window is predicted, and ΔADE = ADE(ablated) − ADE(full) over the 8 trained frames
(`tkjepa.metrics.trajectory_scores`), and Δs = s(full) − s(ablated), the same ablation on IG's own scalar.
The Spearman rank correlation (average ranks for ties) is taken two ways: per-layer mean *absolute*
attribution against ΔADE (a layer can matter in either direction of s, while removing it should only hurt
ADE), and signed attribution against Δs. The two methods differ in two measured ways: ADE is not s (all joints
and frames, unsigned, against wrist progress at frame 8), and IG moves all layers to the baseline together
where the ablation moves one (their gap is the layers' interaction). Δs separates the two: if IG agrees with
Δs but not with ΔADE, the scalars differ; if it disagrees with Δs too, the layers interact.

Uncertainty. Every per-layer mean and both correlations come with a 95 % bootstrap interval over episodes
(`AttributionConfig.bootstrap` resamples, seeded): which layer "matters" is only a finding where the
intervals separate; across retrained forecasters (training seeds) the spread is larger again.

Read layers. Every cached row reaches a predictor block (`PyramidExtractor.block_rows`: 6 rows into 4 blocks
as [0], [1, 2], [3], [4, 5]) unless a forecaster picks a subset (`levels`); the rows it does not read get exactly
zero attribution and zero ΔADE. `spearman` is over all layers, `spearman_used` over the read ones only.
Deterministic: no sampling, no training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from tkjepa.metrics import trajectory_scores


@dataclass
class AttributionConfig:
    frame: int = 8               # the trained horizon's last frame (1-based): the scalar's target frame
    n_steps: int = 512           # integration points of the IG path integral. On the shipped thinkjepa (16
                                 # sample episodes) the worst completeness gap, relative to |s − s_base|, is
                                 # 115 % at 64 points, 13 % at 128, 0.12 % at 256 and 0.001 % at 512: the
                                 # grounding pointer's softmax over 64 cells bends the path. The report gives
                                 # the worst gap (`completeness_max_rel`) so a retrained model's can be checked
    internal_batch_size: int = 256  # rows per forward pass inside captum (bounds memory)
    min_disp: float = 1e-3       # metres: true displacements below this leave u undefined (episode skipped)
    method: str = "gausslegendre"  # captum's integration rule
    bootstrap: int = 1000        # resamples of the episodes for the 95 % intervals
    seed: int = 0                # of the bootstrap's resampling


def scalar_terms(data, wrist: int, cfg: AttributionConfig | None = None) -> tuple[torch.Tensor, ...]:
    """-> (p0 [E, 3], u [E, 3], keep [E] bool, y [E, 3]) of joint `wrist` (its index among the forecast joints,
    `ForecastConfig.wrist`) at frame `cfg.frame` (8)."""
    cfg = cfg or AttributionConfig()
    p0 = data.past[:, -1, wrist]
    y = data.traj[:, cfg.frame - 1, wrist]
    d = y - p0
    n = d.norm(dim=-1)
    keep = (n >= cfg.min_disp) & data.valid[:, cfg.frame - 1].bool()
    return p0, d / n.clamp_min(cfg.min_disp)[:, None], keep, y


def baseline_states(data) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer mean state over episodes and unmasked tokens, broadcast: (old [1, L, No, Dv], new [1, L, Nn, Dv])."""
    out = []
    for x, m in ((data.old, data.old_mask), (data.new, data.new_mask)):
        w = m.float()[:, None, :, None]                                        # [E, 1, N, 1]
        mean = (x * w).sum((0, 2)) / w.sum((0, 2)).clamp_min(1)               # [L, Dv]
        out.append(mean[None, :, None].expand(1, x.shape[1], x.shape[2], x.shape[3]))
    return out[0], out[1]


class ProgressScalar(torch.nn.Module):
    """forward(old [B, L, No, Dv], new [B, L, Nn, Dv], idx [B]) -> s [B]: wrist progress (m) at frame 8.

    `idx` picks each row's episode (masks, context, anchor, p0, u), so captum's expanded batches work.
    """

    def __init__(self, model, data, cfg: AttributionConfig | None = None):
        super().__init__()
        self.model, self.data, self.frame = model, data, (cfg or AttributionConfig()).frame
        self.wrist = model.cfg.forecast.wrist
        self.p0, self.u, _, _ = scalar_terms(data, self.wrist, cfg)

    def forward(self, old, new, idx):
        d = replace(self.data.subset(idx), old=old, new=new)
        joints = self.model(d, torch.arange(len(idx)), 1)[1]                 # [B, 8, J, 3]
        pred = joints[:, self.frame - 1, self.wrist]
        return ((pred - self.p0[idx]) * self.u[idx]).sum(-1)


def read_streams(model) -> tuple[str, ...]:
    """The thinker streams a forecaster reads, of ("old", "new"). An unread stream has no gradient: its
    attribution is zero by definition, and IG runs over the read ones only."""
    streams = getattr(model.cfg, "streams", "both")
    return ("old", "new") if streams == "both" else (streams,)


def _attribute(f, model, data, inputs, baselines, idx, cfg: AttributionConfig):
    """captum IG of `f(old, new, idx)` over the streams `model` reads -> ((a_old, a_new), delta); the unread
    stream's attribution is zeros and its input stays the episode's own (`data.old[idx]` / `data.new[idx]`)."""
    from captum.attr import IntegratedGradients

    pos = [("old", "new").index(s) for s in read_streams(model)]

    def g(*args):
        *xs, i = args
        full = [data.old[i], data.new[i]]
        for p, x in zip(pos, xs):
            full[p] = x
        return f(*full, i)

    attrs, delta = IntegratedGradients(g).attribute(
        tuple(inputs[p] for p in pos), baselines=tuple(baselines[p] for p in pos), additional_forward_args=(idx,),
        n_steps=cfg.n_steps, method=cfg.method, internal_batch_size=cfg.internal_batch_size,
        return_convergence_delta=True)
    out = [torch.zeros_like(x) for x in inputs]
    for p, a in zip(pos, attrs):
        out[p] = a
    return tuple(out), delta


def integrated_gradients(model, data, cfg: AttributionConfig | None = None, base=None) -> dict:
    """IG of the scalar for every episode of `data` -> {old [E, L, No, Dv], new [E, L, Nn, Dv], delta [E],
    s [E], s_base [E]}. Call on the kept episodes only (see `scalar_terms`). `base`: (old, new) baseline states
    [1, L, 1 or S, Dv] (default: `baseline_states(data)`; the viewer passes its reference episodes' mean)."""
    cfg = cfg or AttributionConfig()
    model.eval().requires_grad_(False)
    f = ProgressScalar(model, data, cfg)
    base = base or baseline_states(data)
    b_old, b_new = (b.expand(1, -1, x.shape[2], -1) for b, x in zip(base, (data.old, data.new)))
    idx = torch.arange(len(data))
    (a_old, a_new), delta = _attribute(f, model, data, (data.old.clone(), data.new.clone()), (b_old, b_new), idx, cfg)
    with torch.no_grad():
        s = f(data.old, data.new, idx)
        s_base = f(b_old.expand_as(data.old), b_new.expand_as(data.new), idx)
    return {"old": a_old.detach(), "new": a_new.detach(), "delta": delta.detach(), "s": s, "s_base": s_base}


def layer_attribution(ig: dict) -> torch.Tensor:
    """Signed per-layer totals [E, L]: attributions summed over tokens and channels of both streams."""
    return ig["old"].sum((2, 3)) + ig["new"].sum((2, 3))


def token_attribution(model, data, i: int, cfg: AttributionConfig | None = None) -> dict:
    """One episode's per-token totals (summed over layers and channels): {old [No], new [Nn], old_mask,
    new_mask, s, s_base, delta}. The baseline is the mean over all of `data`; masked tokens get 0."""
    cfg = cfg or AttributionConfig()
    model.eval().requires_grad_(False)
    f = ProgressScalar(model, data, cfg)
    b_old, b_new = baseline_states(data)
    idx = torch.tensor([i])
    (a_old, a_new), delta = _attribute(f, model, data, (data.old[idx].clone(), data.new[idx].clone()),
                                       (b_old, b_new), idx, cfg)
    with torch.no_grad():
        s, s_base = f(data.old[idx], data.new[idx], idx), f(b_old, b_new, idx)
    return {"old": a_old[0].sum((0, 2)), "new": a_new[0].sum((0, 2)), "old_mask": data.old_mask[i],
            "new_mask": data.new_mask[i], "s": float(s), "s_base": float(s_base), "delta": float(delta)}


@torch.no_grad()
def ablation_delta_ade(model, data, cfg: AttributionConfig | None = None, base=None) -> tuple[float, list[float]]:
    """(ADE of the full model, [ΔADE per layer]) over the trained horizon; layer l's old and new rows -> `base`
    (default: `baseline_states(data)`)."""
    cfg = cfg or AttributionConfig()
    model.eval()
    base = base or baseline_states(data)
    idx = torch.arange(len(data))

    def ade(d):
        return trajectory_scores(model(d, idx, 1)[1], d.traj, d.valid, cfg.frame)["ade"]

    full = ade(data)
    return full, [ade(ablate_layers(data, [l], base)) - full for l in range(data.old.shape[1])]


@torch.no_grad()
def ablation_per_episode(model, data, cfg: AttributionConfig | None = None, base=None) -> dict:
    """Per-episode effects of ablating each layer l (its old and new rows -> `base`): {"ade_full" [E],
    "delta_ade" [E, L] (ablated − full, over the trained horizon), "s_full" [E], "delta_s" [E, L] (full −
    ablated wrist progress, IG's scalar: `ProgressScalar`)}. Call on the kept episodes (`scalar_terms`)."""
    from tkjepa.metrics import episode_ade, joint_errors

    cfg = cfg or AttributionConfig()
    model.eval()
    base = base or baseline_states(data)
    idx = torch.arange(len(data))
    f = ProgressScalar(model, data, cfg)

    def run(d):
        j = model(d, idx, 1)[1][:, :cfg.frame]
        return episode_ade(joint_errors(j, d.traj[:, :cfg.frame]), d.valid[:, :cfg.frame]), f(d.old, d.new, idx)

    ade, s = run(data)
    rows = [run(ablate_layers(data, [l], base)) for l in range(data.old.shape[1])]
    return {"ade_full": ade, "delta_ade": torch.stack([a - ade for a, _ in rows], 1), "s_full": s,
            "delta_s": torch.stack([s - b for _, b in rows], 1)}


def bootstrap_ci(per_episode: torch.Tensor, stat=None, n: int = 1000, seed: int = 0) -> list:
    """95 % percentile interval of `stat` (default: the mean over episodes, per column) of [E, …] values,
    resampling episodes with replacement `n` times -> [low, high] (lists for vectors)."""
    g = torch.Generator().manual_seed(seed)
    x = per_episode.double()
    stat = stat or (lambda v: v.mean(0))
    draws = torch.stack([torch.as_tensor(stat(x[torch.randint(0, len(x), (len(x),), generator=g)]),
                                         dtype=torch.float64) for _ in range(n)])
    lo, hi = torch.nanquantile(draws, 0.025, dim=0), torch.nanquantile(draws, 0.975, dim=0)
    return [lo.tolist(), hi.tolist()]


def ablate_layers(data, layers, base: tuple[torch.Tensor, torch.Tensor]):
    """`data` with thinker rows `layers` of both streams replaced by `base` = (old, new) states [1, L, 1 or S, Dv]
    (broadcast over episodes and tokens); no layers: `data` itself."""
    layers = list(layers)
    if not layers:
        return data
    old, new = data.old.clone(), data.new.clone()
    for l in layers:
        old[:, l], new[:, l] = base[0][:, l], base[1][:, l]
    return replace(data, old=old, new=new)


def ranks(x) -> torch.Tensor:
    """1-based ranks, ties sharing their average rank."""
    x = torch.as_tensor(x, dtype=torch.float64)
    order = torch.argsort(x, stable=True)
    r = torch.empty_like(x)
    r[order] = torch.arange(1, len(x) + 1, dtype=torch.float64)
    for v in torch.unique(x):  # average the ranks of tied values
        r[x == v] = r[x == v].mean()
    return r


def spearman(a, b) -> float:
    """Spearman's ρ (Pearson of average ranks); nan when either side is constant."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = (ra.norm() * rb.norm()).item()
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def attribute(model, data, cfg: AttributionConfig | None = None) -> dict:
    """The whole report (the JSON's fields) for a thinkjepa forecaster on `data`."""
    cfg = cfg or AttributionConfig()
    _, _, keep, _ = scalar_terms(data, model.cfg.forecast.wrist, cfg)
    kept = data.subset(torch.nonzero(keep).flatten())
    ig = integrated_gradients(model, kept, cfg)
    per = layer_attribution(ig)                                              # [E, L]
    abl = ablation_per_episode(model, kept, cfg)
    full = float(abl["ade_full"].mean())
    delta_ade = abl["delta_ade"].mean(0).tolist()
    used = model.predictor.pyramid.read_rows
    mean_abs = per.abs().mean(0).tolist()
    nan = lambda v: None if v != v else round(v, 4)  # noqa: E731  (JSON has no NaN)
    ci = lambda x, stat=None: bootstrap_ci(x, stat, cfg.bootstrap, cfg.seed)  # noqa: E731
    u = torch.tensor(used)

    def rho_abs(rows):   # per-layer mean |attribution| vs mean ΔADE over the read layers, on resampled rows
        return spearman(rows[:, 0].abs().mean(0)[u], rows[:, 1].mean(0)[u])

    def rho_signed(rows):
        return spearman(rows[:, 0].mean(0)[u], rows[:, 2].mean(0)[u])

    stacked = torch.stack([per.double(), abl["delta_ade"].double(), abl["delta_s"].double()], 1)  # [E, 3, L]
    unread = [l for l in range(len(mean_abs)) if l not in used]
    return {
        "layers": list(model.predictor.pyramid.config.layers), "used": used,
        "attribution": per.mean(0).tolist(), "attribution_ci": ci(per),
        "attribution_abs": mean_abs, "attribution_abs_ci": ci(per.abs()),
        "ablation_delta_ade": delta_ade, "ablation_delta_ade_ci": ci(abl["delta_ade"]),
        "ablation_delta_s": abl["delta_s"].mean(0).tolist(), "ablation_delta_s_ci": ci(abl["delta_s"]),
        "block_rows": model.predictor.pyramid.block_rows,  # the rows each predictor block reads
        "block_gates": torch.tanh(model.predictor.gates).tolist(),  # each block's guidance gate tanh(α)
        "spearman": nan(spearman(mean_abs, delta_ade)),
        "spearman_used": nan(spearman([mean_abs[l] for l in used], [delta_ade[l] for l in used])),
        "spearman_used_ci": ci(stacked, rho_abs),
        "spearman_signed_delta_s": nan(rho_signed(stacked)), "spearman_signed_delta_s_ci": ci(stacked, rho_signed),
        "spearman_of": "spearman*: per-layer mean |attribution| vs ΔADE (average ranks); spearman_signed_delta_s: "
                       "signed attribution vs Δs (the same scalar, one layer ablated at a time), read layers",
        "convergence_delta": float(ig["delta"].abs().mean()),
        "completeness_max_rel": float((ig["delta"].abs() / (ig["s"] - ig["s_base"]).abs().clamp_min(1e-9)).max())
        if len(kept) else None,  # worst |Σ IG − (s − s_base)| / |s − s_base| over the episodes
        "s_mean": float(ig["s"].mean()), "s_baseline_mean": float(ig["s_base"].mean()), "ade_full": full,
        "episodes": len(kept), "scalar_undefined": int((~keep).sum()),
        "scalar": f"wrist progress <y_hat_{cfg.frame} - p0, u> (m), u = unit true displacement of the wrist "
                  f"(rightHand) from the last observed frame to frame {cfg.frame}",
        "baseline": "per-layer mean thinker state over the evaluated episodes' unmasked tokens (old and new streams)",
        "method": f"captum IntegratedGradients, {cfg.n_steps} steps ({cfg.method}); 95 % bootstrap intervals over "
                  f"episodes ({cfg.bootstrap} resamples, seed {cfg.seed})",
        **({"note": f"rows {unread} feed no predictor block (PyramidExtractor.block_rows): their attribution "
                    "and ΔADE are exactly 0"} if unread else {}),
    }


def figure(result: dict):
    """Plotly figure: per-layer mean |attribution| and signed mean (top), ablation ΔADE (bottom)."""
    from plotly.subplots import make_subplots

    x = [f"layer {l}" + ("" if i in result["used"] else " (unused)") for i, l in enumerate(result["layers"])]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=(
        "IG attribution to wrist progress (m)", "ΔADE when the layer's guidance is ablated (m)"))
    fig.add_bar(x=x, y=result["attribution_abs"], name="mean |attribution|", row=1, col=1)
    fig.add_bar(x=x, y=result["attribution"], name="mean signed attribution", row=1, col=1)
    fig.add_bar(x=x, y=result["ablation_delta_ade"], name="ablation ΔADE", row=2, col=1)
    fig.update_layout(title=f"thinker layer attribution ({result['episodes']} episodes; Spearman "
                            f"{result['spearman']}, used layers {result['spearman_used']})", height=600)
    return fig
