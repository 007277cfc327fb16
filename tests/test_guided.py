"""Pyramid, guided predictor and trajectory head: shapes, the zero-gate identity, causality, pooling, metrics."""

from types import SimpleNamespace

import pytest
import torch

from tkjepa.head import TrajectoryHead, TrajectoryHeadConfig
from tkjepa.metrics import trajectory_scores
from tkjepa.predictor import GuidedPredictor, GuidedPredictorConfig
from tkjepa.pyramid import (PyramidConfig, PyramidExtractor, block_groups, block_levels, collate_features, level_rows,
                            masked_mean, pooled_projection)

L, DV, NO, NN = 6, 24, 7, 3  # cached rows, VLM width, old / new tokens


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run fastest on one thread


def pyr_cfg(**kw):
    return PyramidConfig(**{"vlm_dim": DV, "layers": tuple(range(L)), "dim": 32, "num_blocks": 3, "hidden": 32, **kw})


def pred_cfg(**kw):
    kw = {"latent_dim": 16, "dim": 32, "depth": 3, "num_heads": 2, "context_tubelets": 2, "future_tubelets": 2,
          "tokens": 4, "pyramid": pyr_cfg(), **kw}
    return GuidedPredictorConfig(**kw)


def guide(B, seed=0, pad=True):
    g = torch.Generator().manual_seed(seed)
    old_mask, new_mask = torch.ones(B, NO, dtype=torch.bool), torch.ones(B, NN, dtype=torch.bool)
    if pad:
        old_mask[:, -2:] = False  # right padding on every sample, more on the last
        new_mask[-1, -1] = False
    return {"old": torch.randn(B, L, NO, DV, generator=g), "old_mask": old_mask,
            "new": torch.randn(B, L, NN, DV, generator=g), "new_mask": new_mask}


def ctx(B, cfg, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, cfg.context_tubelets, cfg.tokens, cfg.latent_dim, generator=g)


def pair(injection, **kw):
    """A plain predictor and a guided one carrying the plain one's weights."""
    torch.manual_seed(0)
    plain = GuidedPredictor(pred_cfg(injection="none", **kw)).eval()
    guided = GuidedPredictor(pred_cfg(injection=injection, **kw)).eval()
    missing, unexpected = guided.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(("pyramid.", "gates")) or k.split(".")[2] in
                                              ("film", "ada", "norm_x", "cross") for k in missing)
    return plain, guided


# ---------------------------------------------------------------- pyramid

@pytest.mark.parametrize("B", [1, 4])
@pytest.mark.parametrize("streams,M", [("both", NO + NN), ("old", NO), ("new", NN)])
def test_pyramid_shapes(B, streams, M):
    p = PyramidExtractor(pyr_cfg(streams=streams))
    g = guide(B)
    assert p(**g).shape == (B, 3, 32)
    kv, kv_mask = p.tokens(**g)
    assert kv.shape == (B, 3, M, 32) and kv_mask.shape == (B, M) and kv_mask.dtype == torch.bool
    assert p.level_vectors(**g).shape == (B, L, 32)
    with pytest.raises(ValueError):
        p(g["old"][:, :4], g["old_mask"], g["new"], g["new_mask"])


def test_level_selection():
    assert level_rows("all", 6) == [0, 1, 2, 3, 4, 5]
    assert level_rows("last", 6) == [5]
    assert level_rows("mid", 6) == [2, 3]
    assert level_rows("mid", 8) == [2, 3, 4, 5]  # official rows 0,4,…,27 -> layers 8, 12, 16, 20
    assert level_rows("mid", 3) == [1]
    assert level_rows([4, 1], 6) == [4, 1]
    for bad in ([6], [], "middle"):
        with pytest.raises(ValueError):
            level_rows(bad, 6)
    assert block_levels(6, 6) == list(range(6))
    assert block_levels(2, 4) == [0, 0, 1, 1]    # round(0, 1/3, 2/3, 1)
    assert block_levels(1, 4) == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="block_groups"):
        block_levels(6, 4)
    assert block_groups(8, 12) == [[lv] for lv in block_levels(8, 12)]  # the paper: 8 rows, 12 blocks
    assert block_groups(6, 4) == [[0], [1, 2], [3], [4, 5]]              # ⌊i·6/4⌋ = 0, 1, 3, 4, 6
    assert block_groups(6, 3) == [[0, 1], [2, 3], [4, 5]]
    assert block_groups(5, 1) == [[0, 1, 2, 3, 4]]
    for n in range(1, 13):  # every level reaches a block, in order, whatever the counts
        for b in range(1, 13):
            flat = [lv for g in block_groups(n, b) for lv in g]
            assert sorted(set(flat)) == list(range(n)) and flat == sorted(flat) and len(block_groups(n, b)) == b
    p = PyramidExtractor(pyr_cfg(levels="mid", num_blocks=4))
    assert p.rows == [2, 3] and p.block_rows == [[2], [2], [3], [3]] and p.read_rows == [2, 3]
    assert PyramidExtractor(pyr_cfg(levels="last")).block_rows == [[5]] * 3


@pytest.mark.parametrize("tokens", [False, True])
def test_block_reads_its_levels(tokens):
    """6 rows into 3 blocks: block i reads the mean of rows 2i and 2i+1, and changes only when they change."""
    p = PyramidExtractor(pyr_cfg(levels="all", num_blocks=3))
    assert p.block_rows == [[0, 1], [2, 3], [4, 5]] and p.read_rows == list(range(L))
    out = (lambda g: p.tokens(**g)[0]) if tokens else (lambda g: p(**g))
    g = guide(2)
    base = out(g)
    g["old"] = g["old"].clone()
    g["old"][:, 3] += 1.0
    moved = out(g)
    assert torch.equal(base[:, [0, 2]], moved[:, [0, 2]]) and not torch.allclose(base[:, 1], moved[:, 1])
    # the block's value is the mean of its two levels' own values
    if tokens:
        lv = [torch.cat([p.old_proj[i](g["old"][:, i]), p.new_proj[i](g["new"][:, i])], 1) for i in (2, 3)]
    else:
        lv = list(p.level_vectors(**g)[:, [2, 3]].unbind(1))
    assert torch.allclose(moved[:, 1], (lv[0] + lv[1]) / 2, atol=1e-6)


def test_masked_pooling_ignores_padding():
    x = torch.randn(2, 5, 4)
    m = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    out = masked_mean(x, m)
    assert torch.allclose(out[0], x[0, :2].mean(0)) and torch.equal(out[1], torch.zeros(4))
    p = PyramidExtractor(pyr_cfg())
    g = guide(3)
    base, (kv, _) = p(**g), p.tokens(**g)
    g["old"] = g["old"].clone()
    g["old"][:, :, -2:] = float("nan")  # padded old tokens: not even NaN gets through
    g["new"] = g["new"].clone()
    g["new"][-1, :, -1] = 1e6
    assert torch.equal(p(**g), base)
    g["old_mask"][:] = False
    g["new_mask"][:] = False
    assert torch.isfinite(p(**guide(3) | {"old_mask": g["old_mask"], "new_mask": g["new_mask"]})).all()


def test_pool_first_equals_project_then_pool():
    """The pyramid pools before projecting; a Linear commutes with a mean, so it is the official order's value."""
    torch.manual_seed(0)
    proj = torch.nn.Linear(DV, 8)
    x = torch.randn(3, 7, DV)
    m = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1] * 7, [0] * 7], dtype=torch.bool)
    assert torch.allclose(pooled_projection(proj, x, m), masked_mean(proj(x), m), atol=1e-6)
    assert torch.equal(pooled_projection(proj, x, m)[2], torch.zeros(8))  # no real token: zeros, not the bias


def test_single_stream_ignores_the_other():
    p = PyramidExtractor(pyr_cfg(streams="old"))
    g = guide(2)
    base = p(**g)
    assert torch.equal(p(**g | {"new": torch.randn_like(g["new"])}), base)
    assert not torch.allclose(p(**g | {"old": torch.randn_like(g["old"])}), base)
    assert p.new_proj is None


def test_collate_features():
    f = [SimpleNamespace(old=torch.randn(L, n, DV), old_mask=torch.ones(n, dtype=torch.bool),  # ThinkerFeatures
                         new=torch.randn(L, 2, DV), new_mask=torch.tensor([True, False])) for n in (3, 5)]
    b = collate_features(f)
    assert b["old"].shape == (2, L, 5, DV) and b["new"].shape == (2, L, 2, DV)
    assert b["old_mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert torch.equal(b["old"][0, :, :3], f[0].old) and b["new_mask"].tolist() == [[True, False]] * 2


# ---------------------------------------------------------------- predictor

@pytest.mark.parametrize("B", [1, 4])
@pytest.mark.parametrize("injection", ["film", "adaln", "crossattn", "none"])
def test_predictor_shapes(B, injection):
    cfg = pred_cfg(injection=injection, action_dim=3, block_causal=True, future_tubelets=3)
    m = GuidedPredictor(cfg)
    y = m(ctx(B, cfg), guide(B), torch.randn(B, 3, 3))
    assert y.shape == (B, 3, 4, 16)
    assert m.rollout(ctx(B, cfg), guide(B), windows=2, actions=torch.randn(B, 6, 3)).shape == (B, 6, 4, 16)
    with pytest.raises(ValueError):
        m(ctx(B, cfg), guide(B))  # action-conditioned without actions


@pytest.mark.parametrize("injection", ["film", "adaln", "crossattn"])
def test_zero_gate_is_the_plain_predictor(injection):
    plain, guided = pair(injection)
    x, g1, g2 = ctx(4, plain.config), guide(4, seed=1), guide(4, seed=2)
    with torch.no_grad():
        ref = plain(x)
        assert torch.equal(guided(x, g1), ref)
        assert torch.equal(guided(x, None), ref)  # guide=None: no guidance at all
        guided.gates.fill_(0.5)
        y1, y2 = guided(x, g1), guided(x, g2)
        assert torch.equal(guided(x, None), ref)
        assert (y1 - ref).abs().max() > 1e-4 and (y1 - y2).abs().max() > 1e-4
        # level_scale: all zeros is no guidance; per sample, [0…] keeps sample 0 plain and [1…] is full guidance
        assert torch.equal(guided(x, g1, level_scale=torch.zeros(3)), ref)
        ls = torch.tensor([[0.0] * 3, [1.0] * 3, [1.0] * 3, [1.0] * 3])
        y = guided(x, g1, level_scale=ls)
        assert torch.equal(y[0], ref[0]) and torch.allclose(y[1:], y1[1:], atol=1e-6)
        assert (guided(x, g1, level_scale=torch.tensor([1.0, 0.0, 1.0])) - y1).abs().max() > 1e-5


@pytest.mark.parametrize("injection", ["film", "adaln", "crossattn"])
def test_oracle_guidance_vectors(injection):
    plain, guided = pair(injection)
    x, v = ctx(2, plain.config), torch.randn(2, 3, 32)
    with torch.no_grad():
        assert torch.equal(guided(x, guidance=v), plain(x))
        guided.gates.fill_(0.5)
        assert not torch.allclose(guided(x, guidance=v), guided(x, guidance=-v))
    with pytest.raises(ValueError):
        guided(x, guidance=torch.randn(2, 2, 32))


def test_cross_attention_heads_of_their_own():
    plain, guided = pair("crossattn", cross_heads=1)
    assert all(b.cross.num_heads == 1 and b.attn.num_heads == 2 for b in guided.blocks)
    x, g = ctx(2, plain.config), guide(2)
    with torch.no_grad():
        assert torch.equal(guided(x, g), plain(x))        # the gate starts closed whatever the heads
        guided.gates.fill_(0.5)
        assert not torch.allclose(guided(x, g), plain(x))
    with pytest.raises(ValueError, match="cross_heads"):
        pred_cfg(cross_heads=3)                            # 32 is not divisible by 3


@pytest.mark.parametrize("injection", ["film", "crossattn"])
def test_gradients(injection):
    _, m = pair(injection)
    x, g = ctx(2, m.config), guide(2)
    g["old"].requires_grad_(True)
    g["new"].requires_grad_(True)
    m(x, g).square().sum().backward()
    assert m.gates.grad.abs().min() > 0  # a closed gate still learns to open
    with torch.no_grad():
        m.gates.fill_(0.5)
    m.zero_grad()
    m(x, g).square().sum().backward()
    for s in ("old", "new"):
        assert g[s].grad.abs().sum() > 0 and torch.isfinite(g[s].grad).all()
    assert g["old"].grad[:, :, -2:].abs().sum() == 0  # padding gets no attribution


@pytest.mark.parametrize("causal", [True, False])
def test_block_causal_future(causal):
    cfg = pred_cfg(action_dim=2, block_causal=causal, future_tubelets=4)
    m = GuidedPredictor(cfg).eval()
    x, a = ctx(2, cfg), torch.randn(2, 4, 2)
    b = a.clone()
    b[:, 3] += 1.0
    with torch.no_grad():
        m.gates.fill_(0.5)
        ya, yb = m(x, guide(2), a), m(x, guide(2), b)
    assert (ya[:, 3] - yb[:, 3]).abs().max() > 1e-5
    if causal:
        assert torch.equal(ya[:, :3], yb[:, :3])
    else:
        assert (ya[:, 0] - yb[:, 0]).abs().max() > 1e-5


@pytest.mark.parametrize("tc,tf", [(3, 2), (2, 3)])
def test_rollout_feeds_back_predictions(tc, tf):
    cfg = pred_cfg(context_tubelets=tc, future_tubelets=tf, action_dim=2)
    m = GuidedPredictor(cfg).eval()
    x, g, a = ctx(2, cfg), guide(2), torch.randn(2, 3 * tf, 2)
    with torch.no_grad():
        m.gates.fill_(0.5)
        assert torch.equal(m.rollout(x, g, windows=1, actions=a[:, :tf]), m(x, g, a[:, :tf]))
        r = m.rollout(x, g, windows=3, actions=a)
        assert r.shape == (2, 3 * tf, cfg.tokens, cfg.latent_dim)
        seq = x
        for k in range(3):
            p = m(seq[:, -tc:], g, a[:, k * tf:(k + 1) * tf])
            assert torch.allclose(r[:, k * tf:(k + 1) * tf], p, atol=1e-6)
            seq = torch.cat([seq, p], dim=1)


def test_sincos_at_matches_the_grid_code():
    from tkjepa.encoder.vit import sincos_at, sincos_pos_embed_3d

    grid = sincos_pos_embed_3d(40, 2, 3, 4)
    t, y, x = torch.meshgrid(torch.arange(2), torch.arange(3), torch.arange(4), indexing="ij")
    assert torch.equal(sincos_at(40, torch.stack([t.flatten(), y.flatten(), x.flatten()], 1)), grid)
    assert grid[:, -(40 - 3 * 12):].abs().max() == 0        # the remainder of dim not divisible by 6 is zero


# ---------------------------------------------------------------- head and metrics

@pytest.mark.parametrize("B", [1, 4])
def test_head_shapes_and_locality(B):
    h = TrajectoryHead(TrajectoryHeadConfig(latent_dim=16, dim=32, tokens=4, num_heads=2, hidden=32))
    obs, fut = torch.randn(B, 3, 4, 16), torch.randn(B, 2, 4, 16)
    y = h(obs, fut)
    assert y.shape == (B, 4, 7, 3)
    obs2, fut2 = obs.clone(), fut.clone()
    obs2[:, 0] += 1.0  # only the last observed tubelet is read
    fut2[:, 1] += 1.0  # tubelet 1 fills frames 2, 3 only
    y2 = h(obs2, fut2)
    assert torch.equal(y2[:, :2], y[:, :2]) and not torch.allclose(y2[:, 2:], y[:, 2:])


def test_head_denormalisation():
    h = TrajectoryHead(TrajectoryHeadConfig(latent_dim=16, dim=32, tokens=4, num_heads=2, hidden=32))
    pos = torch.randn(50, 8, 7, 3) * torch.tensor([0.1, 0.2, 0.05]) + torch.tensor([0.3, -0.1, 0.9])
    h.set_target_stats(pos)
    assert torch.allclose(h.mean, pos.mean((0, 1))) and torch.allclose(h.std, pos.std((0, 1), unbiased=False))
    assert torch.allclose(h.normalize(pos).mean((0, 1)), torch.zeros(7, 3), atol=1e-5)
    with torch.no_grad():
        h.mlp[-1].weight.zero_()
        h.mlp[-1].bias.zero_()
    y = h(torch.randn(2, 2, 4, 16), torch.randn(2, 3, 4, 16))
    assert torch.allclose(y, h.mean.expand(2, 6, 7, 3))
    assert "mean" in h.state_dict() and "std" in h.state_dict()


def test_metrics_hand_made():
    true = torch.randn(2, 4, 7, 3)
    valid = torch.ones(2, 4, dtype=torch.bool)
    off = torch.tensor([0.0, 0.03, 0.0])  # 3 cm
    m = trajectory_scores(true + off, true, valid)
    assert m["ade"] == pytest.approx(0.03, abs=1e-6) and m["fde"] == pytest.approx(0.03, abs=1e-6) and m["acc5"] == 1
    assert trajectory_scores(true + 2 * off, true, valid)["acc5"] == 0  # 6 cm
    last = true.clone()
    last[:, -1] += torch.tensor([0.1, 0.0, 0.0])  # only the last frame is off, by 10 cm
    m = trajectory_scores(last, true, valid)
    assert m["fde"] == pytest.approx(0.1, abs=1e-6)
    assert m["ade"] == pytest.approx(0.1 / 4, abs=1e-6)
    assert m["acc5"] == pytest.approx(0.75)
    grow = true + torch.arange(4.0).view(1, 4, 1, 1) * torch.tensor([0.0, 0.0, 0.02])  # 0, 2, 4, 6 cm
    ph = trajectory_scores(grow, true, valid)
    assert torch.allclose(torch.tensor(ph["ade_per_frame"]), torch.tensor([0.0, 0.02, 0.04, 0.06]), atol=1e-6)
    assert ph["acc5_per_frame"] == [1.0, 1.0, 1.0, 0.0]
    wrist_off = true.clone()
    wrist_off[..., 1, :] += 0.2  # only joint 1 (rightHand) is wrong
    assert trajectory_scores(wrist_off, true, valid, joints=[0, 2])["ade"] == 0
    assert trajectory_scores(wrist_off, true, valid, joints=[1])["ade"] == pytest.approx(0.2 * 3 ** 0.5, abs=1e-5)
