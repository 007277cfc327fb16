"""Multi-block masks: context and target disjoint, in bounds, equal counts per batch; apply_masks gathers."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tkjepa.encoder.masks import MaskConfig, apply_masks, sample_block_mask, sample_masks


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 6), t=st.integers(1, 5), h=st.integers(3, 10), w=st.integers(3, 10),
       kind=st.sampled_from(["short", "long"]), seed=st.integers(0, 10_000))
def test_masks_disjoint_and_in_bounds(B, t, h, w, kind, seed):
    cfg = MaskConfig.short_range() if kind == "short" else MaskConfig.long_range()
    cfg.min_context = 1
    masks_enc, masks_pred = sample_masks(B, (t, h, w), cfg, torch.Generator().manual_seed(seed))
    L = t * h * w
    assert masks_enc.shape[0] == masks_pred.shape[0] == B
    assert masks_enc.shape[1] >= 1 and masks_pred.shape[1] >= 1
    for enc, pred in zip(masks_enc, masks_pred):
        assert enc.min() >= 0 and pred.min() >= 0 and enc.max() < L and pred.max() < L
        assert len(set(enc.tolist())) == len(enc) and len(set(pred.tolist())) == len(pred)  # no repeats
        assert not set(enc.tolist()) & set(pred.tolist())                                    # disjoint


def test_full_temporal_extent_makes_tubes():
    pred = sample_block_mask((4, 8, 8), MaskConfig.short_range(), torch.Generator().manual_seed(0))
    assert (pred == pred[:1]).all()  # the same spatial region at every time step
    assert 0 < pred.float().mean() < 1


def test_short_and_long_range_ratios():
    g = torch.Generator().manual_seed(0)
    short = torch.stack([sample_block_mask((4, 8, 8), MaskConfig.short_range(), g) for _ in range(200)])
    long = torch.stack([sample_block_mask((4, 8, 8), MaskConfig.long_range(), g) for _ in range(200)])
    assert 0.5 < short.float().mean() < 0.8 < long.float().mean()


def test_same_seed_same_masks():
    a = sample_masks(4, (4, 8, 8), MaskConfig(), torch.Generator().manual_seed(3))
    b = sample_masks(4, (4, 8, 8), MaskConfig(), torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_apply_masks_gathers_rows():
    x = torch.arange(2 * 5 * 3).view(2, 5, 3)
    m = torch.tensor([[0, 4], [1, 2]])
    out = apply_masks(x, [m, m])
    assert out.shape == (4, 2, 3)
    assert torch.equal(out[0], x[0, [0, 4]]) and torch.equal(out[1], x[1, [1, 2]]) and torch.equal(out[2], out[0])
