"""The dual-temporal sampler: exact indices, the no-peeking guarantee as a property, errors, gather, figure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tkjepa.sampling import DualTemporalSampler, SampleIndices, SamplerConfig

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tiny_sampler() -> DualTemporalSampler:
    return DualTemporalSampler(SamplerConfig.tiny())


def is_valid(T: int, s: int, c: SamplerConfig) -> bool:
    """Hand-derived oracle, independent of the sampler's own bookkeeping."""
    observed_ok = s >= c.dense_stride * (c.dense_frames - 1) + 1 and s >= c.thinker_frames
    future_ok = s + c.future_stride * (c.horizon - 1) <= T - 1
    return observed_ok and future_ok


def assert_guarantees(idx: SampleIndices, c: SamplerConfig, T: int, s: int) -> None:
    assert idx.num_frames == T and idx.forecast_start == s
    for name in ("dense", "thinker", "future"):
        assert getattr(idx, name).dtype == np.int64
    assert idx.dense.shape == (c.dense_frames,)
    assert idx.thinker.shape == (c.thinker_frames,)
    assert idx.future.shape == (c.horizon,)
    # no observed branch sees index >= s
    assert idx.dense.min() >= 0 and idx.dense.max() < s
    assert idx.thinker.min() >= 0 and idx.thinker.max() < s
    assert idx.future.min() >= s and idx.future.max() < T
    # dense: contiguous at its stride, ending at the last observed frame
    assert idx.dense[-1] == s - 1
    assert np.all(np.diff(idx.dense) == c.dense_stride)
    assert np.all(np.diff(idx.future) == c.future_stride)
    assert idx.future[0] == s
    # thinker: strictly increasing, 0 .. s-1, each within half a frame of the uniform grid
    assert np.all(np.diff(idx.thinker) > 0)
    assert idx.thinker[0] == 0
    if c.thinker_frames >= 2:
        assert idx.thinker[-1] == s - 1
        grid = np.linspace(0, s - 1, c.thinker_frames)
        assert np.all(np.abs(idx.thinker - grid) <= 0.5)
    idx.check()


configs = st.builds(
    SamplerConfig,
    dense_frames=st.integers(1, 16),
    dense_stride=st.integers(1, 4),
    thinker_frames=st.integers(1, 40),
    horizon=st.integers(1, 40),
    future_stride=st.integers(1, 4),
    split=st.floats(0.05, 0.95),
)


@PROPERTY
@given(c=configs, extra_before=st.integers(0, 50), extra_after=st.integers(0, 50))
def test_valid_requests_satisfy_the_guarantee(c: SamplerConfig, extra_before: int, extra_after: int) -> None:
    sampler = DualTemporalSampler(c)
    s = max(c.dense_stride * (c.dense_frames - 1) + 1, c.thinker_frames) + extra_before
    T = s + c.future_stride * (c.horizon - 1) + 1 + extra_after
    assert_guarantees(sampler.sample(T, s), c, T, s)


@PROPERTY
@given(c=configs, T=st.integers(0, 250), s=st.one_of(st.none(), st.integers(-5, 260)))
def test_any_request_succeeds_iff_valid_else_explains(c: SamplerConfig, T: int, s: int | None) -> None:
    sampler = DualTemporalSampler(c)
    start = sampler.forecast_start_for(T) if s is None else s
    if is_valid(T, start, c):
        assert_guarantees(sampler.sample(T, s), c, T, start)
        assert start in sampler.valid_starts(T)
    else:
        with pytest.raises(ValueError, match=r"needs ≥ \d+"):
            sampler.sample(T, s)
        assert start not in sampler.valid_starts(T)


@PROPERTY
@given(c=configs, T=st.integers(0, 250), seed=st.integers(0, 2**32 - 1))
def test_random_starts_are_valid(c: SamplerConfig, T: int, seed: int) -> None:
    sampler = DualTemporalSampler(c)
    rng = np.random.default_rng(seed)
    if T < sampler.min_frames:
        with pytest.raises(ValueError, match=f"episode has {T} frames"):
            sampler.sample_random(T, rng)
        return
    idx = sampler.sample_random(T, rng)
    assert is_valid(T, idx.forecast_start, c)
    assert_guarantees(idx, c, T, idx.forecast_start)


def test_tiny_exact_indices() -> None:
    idx = tiny_sampler().sample(64)
    assert idx.forecast_start == 32
    assert idx.dense.tolist() == list(range(24, 32))
    # linspace(0, 31, 8) = 0, 4.43, 8.86, 13.29, 17.71, 22.14, 26.57, 31
    assert idx.thinker.tolist() == [0, 4, 9, 13, 18, 22, 27, 31]
    assert idx.future.tolist() == list(range(32, 48))


def test_strides_and_explicit_start() -> None:
    c = SamplerConfig(dense_frames=4, dense_stride=2, thinker_frames=5, horizon=4, future_stride=3)
    idx = DualTemporalSampler(c).sample(64, forecast_start=20)
    assert idx.dense.tolist() == [13, 15, 17, 19]
    assert idx.thinker.tolist() == [0, 5, 10, 14, 19]  # linspace(0, 19, 5) = 0, 4.75, 9.5, 14.25, 19
    assert idx.future.tolist() == [20, 23, 26, 29]


def test_thinker_rounds_half_up_and_official_setup_takes_every_observed_frame() -> None:
    c = SamplerConfig(dense_frames=1, thinker_frames=3, horizon=1)
    assert DualTemporalSampler(c).sample(20, 10).thinker.tolist() == [0, 5, 9]  # 4.5 -> 5, not 4
    assert DualTemporalSampler(SamplerConfig(thinker_frames=1)).sample(64).thinker.tolist() == [0]
    official = DualTemporalSampler(SamplerConfig(dense_frames=32, thinker_frames=32, horizon=32))
    idx = official.sample(64)
    assert idx.thinker.tolist() == list(range(32)) and idx.future.tolist() == list(range(32, 64))


def test_forecast_start_for_matches_official_split() -> None:
    sampler = tiny_sampler()
    assert [sampler.forecast_start_for(T) for T in (24, 63, 64, 65, 100)] == [12, 31, 32, 32, 50]
    assert DualTemporalSampler(SamplerConfig(split=0.29)).forecast_start_for(100) == 29


def test_bounds_and_valid_starts() -> None:
    sampler = tiny_sampler()
    assert sampler.min_forecast_start == 8
    assert sampler.min_frames == 24
    assert sampler.valid_starts(64) == range(8, 49)
    assert len(sampler.valid_starts(23)) == 0


def test_error_messages_say_what_is_needed() -> None:
    sampler = tiny_sampler()
    with pytest.raises(ValueError, match="episode has 20 frames .* needs ≥ 24"):
        sampler.sample(20)
    with pytest.raises(ValueError, match=r"forecast start 5 .* dense window k=8 .* needs ≥ 8; valid .* 8\.\.48"):
        sampler.sample(64, 5)
    with pytest.raises(ValueError, match="horizon=16 .* from forecast start 60 needs ≥ 76"):
        sampler.sample(64, 60)
    with pytest.raises(ValueError, match="thinker clip n=12 needs ≥ 12"):
        DualTemporalSampler(SamplerConfig(thinker_frames=12)).sample(64, 10)
    # the default split start can be invalid even when the episode is long enough
    with pytest.raises(ValueError, match=r"from forecast start 15 needs ≥ 31; valid .* 8\.\.14"):
        sampler.sample(30)


@pytest.mark.parametrize("field", ["dense_frames", "dense_stride", "thinker_frames", "horizon", "future_stride"])
@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_invalid_integer_fields_raise(field: str, bad: object) -> None:
    with pytest.raises(ValueError, match=f"SamplerConfig.{field} must be an integer ≥ 1"):
        SamplerConfig(**{field: bad})


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5, math.nan])
def test_invalid_split_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="SamplerConfig.split must lie strictly between 0 and 1"):
        SamplerConfig(split=bad)


def test_check_catches_peeking_and_indices_are_read_only() -> None:
    good = tiny_sampler().sample(64)
    assert good.check() is good
    with pytest.raises(ValueError):
        good.dense[0] = 40
    leaky = SampleIndices(dense=[30, 31, 32], thinker=[0, 16, 31], future=[32, 33],
                          forecast_start=32, num_frames=64)
    with pytest.raises(ValueError, match=r"dense indices \[30, 31, 32\] leave \[0, 32\)"):
        leaky.check()
    early = SampleIndices(dense=[30, 31], thinker=[0, 31], future=[31, 32], forecast_start=32, num_frames=64)
    with pytest.raises(ValueError, match=r"future indices \[31, 32\] leave \[32, 64\)"):
        early.check()


def test_random_starts_are_uniform_over_valid_range_and_seeded() -> None:
    sampler = tiny_sampler()
    starts = [sampler.sample_random(30, np.random.default_rng(i)).forecast_start for i in range(400)]
    assert sorted(set(starts)) == list(range(8, 15))
    counts = np.bincount(starts)[8:]
    assert counts.min() > 30  # 400 / 7 ≈ 57 each
    a = sampler.sample_random(64, np.random.default_rng(7))
    b = sampler.sample_random(64, np.random.default_rng(7))
    assert a.forecast_start == b.forecast_start and np.array_equal(a.dense, b.dense)


@pytest.mark.parametrize("B", [1, 4])
def test_gather_shapes_and_values(B: int) -> None:
    sampler = tiny_sampler()
    idx = sampler.sample(64)
    frames = np.broadcast_to(np.arange(64, dtype=np.uint8)[:, None, None, None], (64, 8, 8, 3)).copy()
    out = sampler.gather(frames, idx)
    assert {k: v.shape for k, v in out.items()} == {
        "dense": (8, 8, 8, 3), "thinker": (8, 8, 8, 3), "future": (16, 8, 8, 3)}
    for name in ("dense", "thinker", "future"):
        assert out[name][:, 0, 0, 0].tolist() == getattr(idx, name).tolist()
    # latents for a batch of episodes laid out time-first: [T, B, N, D]
    latents = torch.arange(64, dtype=torch.float32)[:, None, None, None].expand(64, B, 5, 6)
    lat = sampler.gather(latents, idx)
    assert isinstance(lat["future"], torch.Tensor)
    assert lat["dense"].shape == (8, B, 5, 6) and lat["future"].shape == (16, B, 5, 6)
    assert lat["thinker"][:, 0, 0, 0].tolist() == [0.0, 4.0, 9.0, 13.0, 18.0, 22.0, 27.0, 31.0]
    names = sampler.gather([f"frame{t}" for t in range(64)], idx)
    assert names["dense"] == [f"frame{t}" for t in range(24, 32)] and len(names["future"]) == 16
    with pytest.raises(ValueError, match="length 63 .* episode of 64 frames"):
        sampler.gather(frames[:63], idx)


def test_timeline_figure() -> None:
    sampler = tiny_sampler()
    idx = sampler.sample(64)
    fig = sampler.timeline_figure(idx)
    assert len(fig.data) == 3
    assert [list(tr.x) for tr in fig.data] == [idx.dense.tolist(), idx.thinker.tolist(), idx.future.tolist()]
    assert [tr.name for tr in fig.data] == ["dense JEPA window (8)", "thinker clip (8)", "future targets (16)"]
    assert fig.data[1].text[2] == "thinker clip #2: frame 9"
    lines = [sh for sh in fig.layout.shapes if sh.type == "line"]
    assert len(lines) == 1 and lines[0].x0 == lines[0].x1 == 31.5
    assert any("forecast start s=32" in a.text for a in fig.layout.annotations)
