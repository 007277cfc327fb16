"""A frozen-feature linear probe: does the encoder know where the hand is?

For each tubelet of a clip the encoder gives N tokens of width D; the probe is one linear map (ridge
regression, closed form) from those tokens, flattened to N·D features, to the wrist (`rightHand`) 3D position
in world metres at the tubelet's last frame. The encoder is frozen; only the linear map is fitted, on some
episodes, and R² is measured on *other* episodes: the share of the 3D position variance explained
(`r2_score`; per-axis values are reported beside it).

Flattened tokens keep *where* in the frame a feature fires, which a linear map needs to read a position; a
pooled vector would have to encode position in its channels. The price is many features (64 × 96 = 6144 for
the tiny encoder), so the probe needs about a thousand fit episodes (32 tubelets each) before it stops
being data-limited: BENCHMARKS.md shows R² against the number of fit episodes. A randomly initialised
encoder is the baseline: its features are random projections of the pixels, so whatever pretraining adds
shows up as the gap between the two R²s.

`tkjepa probe --data DIR --json` runs the probe on EgoDex-format episodes (real or `tkjepa generate`d);
`tkjepa probe --world N` on N fresh world episodes, generated in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange

from tkjepa.encoder.base import VideoEncoderBase, frames_to_video
from tkjepa.encoder.vit import EncoderConfig, VideoEncoder
from tkjepa.episode import WRIST
from tkjepa.optim import seed_everything


@dataclass
class ProbeConfig:
    clip_frames: int = 8              # frames per encoded clip (the encoder's training clip length)
    max_clips: int = 8                # clips per *fit* episode (non-overlapping, evenly spaced; 8 covers 64 frames)
    eval_clips: int = 8               # clips per held-out episode (8 covers a 64-frame episode)
    joint: str = WRIST                # target joint
    fit_fraction: float = 2 / 3       # share of episodes that fit the probe; the rest are held out
    lambdas: tuple[float, ...] = tuple(10.0 ** k for k in range(-4, 3))  # ridge strengths × mean(s²), by validation
    standardize: bool = True          # scale every feature to unit variance (on the fit rows) before the ridge
    batch_size: int = 16              # clips per encoder call


@torch.no_grad()
def clip_features(encoder: VideoEncoderBase, episodes, cfg: ProbeConfig | None = None, max_clips: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frozen features X [M, N·D], targets Y [M, 3] and episode ids [M], one row per tubelet."""
    cfg = cfg or ProbeConfig()
    max_clips = max_clips or cfg.max_clips
    encoder.eval()
    plans = []  # each episode's clip starts: non-overlapping, evenly spaced
    for ep in episodes:
        n = ep.num_frames // cfg.clip_frames
        plans.append(np.unique(np.linspace(0, n - 1, min(n, max_clips)).round().astype(int)) * cfg.clip_frames)
    X = Y = ids = None
    row, ts = 0, encoder.tubelet_size
    for e, (ep, starts) in enumerate(zip(episodes, plans)):
        pos = torch.from_numpy(ep.positions([cfg.joint])[:, 0])                     # [T, 3]
        for i in range(0, len(starts), cfg.batch_size):
            s = starts[i:i + cfg.batch_size]
            video = frames_to_video(np.stack([ep.frames[t:t + cfg.clip_frames] for t in s]))  # [b, T, 3, H, W]
            z = encoder(video)                                                     # [b, T', N, D]
            if X is None:  # one matrix filled in place: concatenating chunks would need twice its memory
                m = sum(len(p) for p in plans) * z.shape[1]
                X, Y = torch.empty(m, z.shape[2] * z.shape[3]), torch.empty(m, 3)
                ids = torch.empty(m, dtype=torch.long)
            k = z.shape[0] * z.shape[1]
            X[row:row + k] = rearrange(z, "b t n d -> (b t) (n d)")
            last = torch.as_tensor(s)[:, None] + torch.arange(z.shape[1]) * ts + ts - 1      # [b, T']
            Y[row:row + k] = pos[last.flatten()]
            ids[row:row + k] = e
            row += k
    if X is None:
        raise ValueError(f"no episode has {cfg.clip_frames} frames: nothing to probe")
    return X, Y, ids


def r2_score(y: torch.Tensor, y_hat: torch.Tensor) -> dict:
    """R² of positions y [M, 3]: over all coordinates (the headline), their mean and each axis.

    r2 = 1 − Σ‖y − ŷ‖² / Σ‖y − ȳ‖²: the share of the 3D position variance explained. Unlike the mean of
    per-axis R²s it does not change when the world axes are rotated, and it weighs each axis by how much the
    hand moves along it (the wrist's height varies ~2.5× less than x or y on the tabletop).
    """
    y, y_hat = y.double(), y_hat.double()
    ss_res, ss_tot = (y - y_hat).pow(2).sum(0), (y - y.mean(0)).pow(2).sum(0).clamp_min(1e-12)
    r2_xyz = 1 - ss_res / ss_tot
    return {"r2": float(1 - ss_res.sum() / ss_tot.sum()), "r2_mean_xyz": float(r2_xyz.mean()),
            "r2_xyz": [float(v) for v in r2_xyz]}


def ridge_solve(G: torch.Tensor, rhs: torch.Tensor, lam) -> torch.Tensor | None:
    """coef [r, k] solving (G + λ_j·mean eig(G)·I) coef_j = rhs_j for each output j (λ a float or k of them),
    one Cholesky factorisation per distinct λ; None when G + λ'·I is not positive definite in floating point."""
    lam_y = torch.as_tensor(lam, dtype=G.dtype).expand(rhs.shape[1])
    scale = G.diagonal().mean()  # the mean eigenvalue, trace / r
    eye = torch.eye(len(G), dtype=G.dtype)
    coef = torch.empty_like(rhs)
    for lam_v in lam_y.unique():
        L, info = torch.linalg.cholesky_ex(G + lam_v * scale * eye)
        if info:
            return None
        cols = lam_y == lam_v
        coef[:, cols] = torch.cholesky_solve(rhs[:, cols], L)
    return coef


class RidgeProbe:
    """y ≈ (x − μ_x) W + μ_y with W = (XᵀX + λ'·I)⁻¹ Xᵀ Y on centred X [M, F], Y [M, 3]; λ' = λ·mean eigenvalue.

    λ is relative to the features' mean squared singular value, so one grid of λ suits any encoder's scale;
    it may differ per output coordinate (three independent ridge regressions). One eigendecomposition of the
    smaller Gram matrix (M×M when M < F, else F×F) serves every λ (`fit_path`), so choosing λ on a
    validation split costs almost nothing. standardize=True divides each centred feature by its std first
    (folded into W, so the probe stays one linear map of the raw tokens): the ridge penalty then treats a
    rarely active channel — a hand-sized feature fires in one token of 64 — like a busy one.
    """

    def __init__(self, standardize: bool = False):
        self.standardize = standardize

    def fit_path(self, X: torch.Tensor, Y: torch.Tensor, lambdas) -> list["RidgeProbe"]:
        """One probe per λ in `lambdas` (a float or one per output each), from one eigendecomposition."""
        mu_x, mu_y, Xc, Yc, sd, dual = self._centre(X, Y)
        evals, V = torch.linalg.eigh(Xc @ Xc.T if dual else Xc.T @ Xc)  # [r], [r, r]
        evals = evals.clamp_min(0)
        VtY = V.T @ (Yc if dual else Xc.T @ Yc)                          # [r, 3]
        probes = []
        for lam in lambdas:
            lam_y = torch.as_tensor(lam, dtype=X.dtype).expand(Y.shape[1])  # one λ per output
            coef = V @ (VtY / (evals[:, None] + lam_y[None] * evals.mean()))  # [r, 3]
            probes.append(RidgeProbe(self.standardize)._set(mu_x, mu_y, (Xc.T @ coef if dual else coef) / sd[:, None],
                                                            lam))
        return probes

    def fit(self, X: torch.Tensor, Y: torch.Tensor, lam) -> "RidgeProbe":
        """One λ (a float, or one per output): a Cholesky solve per distinct λ, far cheaper than the
        eigendecomposition `fit_path` shares between many λs, for the same solution."""
        mu_x, mu_y, Xc, Yc, sd, dual = self._centre(X, Y)
        G = Xc @ Xc.T if dual else Xc.T @ Xc                                # [r, r]
        coef = ridge_solve(G, Yc if dual else Xc.T @ Yc, lam)              # [r, 3]
        if coef is None:  # too ill-conditioned to factor
            return self.fit_path(X, Y, [lam])[0]
        return self._set(mu_x, mu_y, (Xc.T @ coef if dual else coef) / sd[:, None], lam)

    def _centre(self, X: torch.Tensor, Y: torch.Tensor) -> tuple:
        """(μ_x, μ_y, Xc, Yc, sd, dual): centred (and, with standardize, unit-variance) copies of X, Y; dual when
        there are fewer rows than features (then the M×M Gram matrix is the smaller one)."""
        mu_x, mu_y = X.mean(0), Y.mean(0)
        Xc, Yc = X - mu_x, Y - mu_y
        sd = Xc.std(0).clamp_min(1e-6) if self.standardize and len(X) > 1 else torch.ones_like(mu_x)
        Xc /= sd  # in place on the copy: X can be gigabytes
        return mu_x, mu_y, Xc, Yc, sd, Xc.shape[0] < Xc.shape[1]

    def _set(self, mu_x, mu_y, W, lam) -> "RidgeProbe":
        self.mu_x, self.mu_y, self.W = mu_x, mu_y, W                        # W [F, 3] in raw-feature units
        self.lam = [float(v) for v in torch.as_tensor(lam, dtype=W.dtype).expand(W.shape[1])]
        return self

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        return (X - self.mu_x) @ self.W + self.mu_y


def _solve_or_raise(G: torch.Tensor, rhs: torch.Tensor, lam) -> torch.Tensor:
    coef = ridge_solve(G, rhs, lam)
    if coef is None:
        raise ValueError(f"ridge λ = {lam} leaves the Gram matrix singular; use larger lambdas")
    return coef


def select_and_fit(X: torch.Tensor, Y: torch.Tensor, n_tr: int, lambdas, standardize: bool = True
                   ) -> tuple[RidgeProbe, list[float]]:
    """λ per output coordinate chosen on rows n_tr: (fitted on rows :n_tr), then the probe refitted on every row.

    The same result as `RidgeProbe.fit_path(X[:n_tr], …)` scored on X[n_tr:] followed by `RidgeProbe.fit(X, …)`,
    computed from one F×F Gram matrix when there are more rows than features: the training rows' Gram matrix
    serves every λ (one Cholesky solve each) and, plus the validation rows' and a rank-one correction of the
    mean and scale, the refit. X is standardised in place (it can be gigabytes).
    n_tr = len(X): λ is chosen on the fit rows themselves.
    """
    tr, va = slice(0, n_tr), slice(n_tr if n_tr < len(X) else 0, None)
    if n_tr < X.shape[1]:  # fewer rows than features: the M×M (dual) path of RidgeProbe is the cheap one
        scores = torch.tensor([r2_score(Y[va], p.predict(X[va]))["r2_xyz"]
                               for p in RidgeProbe(standardize).fit_path(X[tr], Y[tr], lambdas)])  # [n_λ, 3]
        lam = [lambdas[i] for i in scores.argmax(0)]
        return RidgeProbe(standardize).fit(X, Y, lam), lam
    # standardise every row with the training rows' mean and std
    mu, y_tr = X[tr].mean(0), Y[tr].mean(0)
    X -= mu
    sd = X[tr].std(0).clamp_min(1e-6) if standardize else torch.ones_like(mu)
    X /= sd
    G = X[tr].T @ X[tr]                                                    # [F, F]
    rhs = X[tr].T @ (Y[tr] - y_tr)                                         # [F, 3]
    scores = [r2_score(Y[va], X[va] @ _solve_or_raise(G, rhs, lam_v) + y_tr)["r2_xyz"] for lam_v in lambdas]
    lam = [lambdas[i] for i in torch.tensor(scores).argmax(0)]
    # refit on every row: Gram of all rows about their own mean, rescaled to their own std
    if n_tr < len(X):
        G += X[va].T @ X[va]
    n, d = len(X), X.mean(0)                                               # d: all rows' mean, in training units
    G -= n * torch.outer(d, d)
    sd_all = (sd * (G.diagonal() / max(n - 1, 1)).clamp_min(0).sqrt()).clamp_min(1e-6) if standardize else sd
    r = sd_all / sd                                                        # all rows' std in training units
    y_bar = Y.mean(0)
    coef = _solve_or_raise(G / torch.outer(r, r), (X.T @ (Y - y_bar)) / r[:, None], lam)
    return RidgeProbe(standardize)._set(mu + sd * d, y_bar, coef / sd_all[:, None], lam), lam


def probe_r2(encoder: VideoEncoderBase, fit_episodes, eval_episodes, cfg: ProbeConfig | None = None) -> dict:
    """Fit the ridge probe on `fit_episodes` (λ per coordinate chosen on their last fifth), R² on `eval_episodes`."""
    cfg = cfg or ProbeConfig()
    X, Y, ids = clip_features(encoder, fit_episodes, cfg)
    n_val = len(fit_episodes) // 5
    # rows are in episode order, so the validation episodes (the last fifth) are the last rows
    # (with under 5 fit episodes, λ is chosen on the fit data itself)
    n_tr = int((ids < len(fit_episodes) - n_val).sum()) if n_val else len(X)
    probe, lam = select_and_fit(X, Y, n_tr, cfg.lambdas, cfg.standardize)
    del X
    Xe, Ye, _ = clip_features(encoder, eval_episodes, cfg, cfg.eval_clips)
    return {**r2_score(Ye, probe.predict(Xe)), "episodes": len(eval_episodes), "fit_episodes": len(fit_episodes),
            "samples": int(len(Ye)), "lambda": lam, "joint": cfg.joint}


def random_encoder(seed: int = 0) -> VideoEncoderBase:
    """The tiny encoder as pretraining starts it (seed `seed`): the probe's baseline."""
    seed_everything(seed)
    return VideoEncoder(EncoderConfig.tiny())
