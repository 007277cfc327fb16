"""EMA target encoder: m=1 keeps it, m=0 copies, no gradient reaches it, momentum is a pure function of the step."""

import torch

from tkjepa.encoder.ema import ema_update, make_target_encoder, momentum_at
from tkjepa.encoder import EncoderConfig, VideoEncoder

torch.set_num_threads(2)
TINY = EncoderConfig(embed_dim=24, depth=1, num_heads=2)


def _pair():
    torch.manual_seed(0)
    online = VideoEncoder(TINY)
    target = make_target_encoder(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))  # make online and target differ
    return online, target


def test_target_is_a_frozen_deep_copy():
    online = VideoEncoder(TINY)
    target = make_target_encoder(online)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    for a, b in zip(online.parameters(), target.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_m1_leaves_target_unchanged():
    online, target = _pair()
    before = [p.clone() for p in target.parameters()]
    ema_update(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters()))


def test_m0_copies_online():
    online, target = _pair()
    ema_update(target, online, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(online.parameters(), target.parameters()))


def test_update_is_the_convex_combination():
    online, target = _pair()
    expect = [0.9 * t + 0.1 * o for t, o in zip(target.parameters(), online.parameters())]
    ema_update(target, online, 0.9)
    for e, t in zip(expect, target.parameters()):
        torch.testing.assert_close(t, e)


def test_no_gradient_reaches_the_target():
    online, target = _pair()
    video = torch.rand(2, 4, 3, 16, 16)
    loss = (online(video) - target(video)).pow(2).mean()
    loss.backward()
    assert all(p.grad is None for p in target.parameters())
    assert all(p.grad is not None for p in online.parameters())


def test_momentum_schedule():
    assert momentum_at(0, 100, 0.99, 1.0) == 0.99
    assert momentum_at(100, 100, 0.99, 1.0) == 1.0
    ms = [momentum_at(s, 100, 0.99, 1.0) for s in range(101)]
    assert all(a <= b for a, b in zip(ms, ms[1:]))  # monotone
    assert momentum_at(500, 100) == 1.0 and momentum_at(-5, 100, 0.9) == 0.9  # clamped


def test_resume_mid_schedule_gives_the_same_momentum():
    full = [momentum_at(s, 1000) for s in range(1000)]
    resumed = [momentum_at(s, 1000) for s in range(437, 1000)]  # a fresh process starting at step 437
    assert resumed == full[437:]
