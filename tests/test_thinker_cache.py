"""Feature cache: content-hash keys that change with weights, layers, prompt and frames; resumable batches."""

import pytest
import torch

from tkjepa.thinker import cache as cache_mod
from tkjepa.checkpoint import weights_digest
from tkjepa.sampling import DualTemporalSampler, SamplerConfig
from tkjepa.thinker.cache import FeatureCache, cached_features, episode_key, extract_dataset
from tkjepa.thinker.model import build_thinker
from tkjepa.world import generate_episode

SAMPLER = DualTemporalSampler(SamplerConfig.tiny())

CLIP = [0, 4, 9, 13, 18, 22, 27, 31]


@pytest.fixture(scope="module")
def thinker():
    torch.set_num_threads(1)
    return build_thinker(seed=0)


@pytest.fixture(scope="module")
def episodes():
    return [generate_episode(s) for s in range(5)]


def test_key_changes_with_every_input(thinker, episodes):
    model, _ = thinker
    ep = episodes[0]
    w = weights_digest(model)
    base = episode_key(w, [0, 5], ep, CLIP)
    assert episode_key(w, [0, 5], ep, CLIP) == base  # deterministic
    assert episode_key(w, [0, 4], ep, CLIP) != base  # layers
    assert episode_key(w, [0, 5], ep, [1, *CLIP[1:]]) != base  # frame indices
    ep2 = generate_episode(0)
    ep2.instruction += " now"
    assert episode_key(w, [0, 5], ep2, CLIP) != base  # prompt
    ep3 = generate_episode(0)
    ep3.frames = ep3.frames.copy()
    ep3.frames[CLIP[3], 10, 10, 0] ^= 1  # one bit of one pixel
    assert episode_key(w, [0, 5], ep3, CLIP) != base
    model2, _ = build_thinker(seed=0)
    with torch.no_grad():
        next(model2.parameters()).view(-1)[0] += 1e-3
    assert episode_key(weights_digest(model2), [0, 5], ep, CLIP) != base  # weights


def test_put_get_round_trip_and_atomic(thinker, episodes, tmp_path):
    model, tok = thinker
    cache = FeatureCache(tmp_path)
    f = cached_features(model, tok, cache, episodes[0], CLIP, layers=[0, 5], max_new_tokens=3)
    assert len(cache) == 1 and not list(tmp_path.glob("*.tmp"))
    g = cached_features(model, tok, cache, episodes[0], CLIP, layers=[0, 5], max_new_tokens=3)
    assert torch.equal(f.old, g.old) and torch.equal(f.new, g.new) and f.text == g.text
    assert torch.equal(f.old_mask, g.old_mask) and torch.equal(f.new_mask, g.new_mask) and g.layers == [0, 5]


def test_changed_weights_never_serve_stale(thinker, episodes, tmp_path):
    model, tok = thinker
    cache = FeatureCache(tmp_path)
    cached_features(model, tok, cache, episodes[0], CLIP, max_new_tokens=2)
    other, _ = build_thinker(seed=1)
    cached_features(other, tok, cache, episodes[0], CLIP, max_new_tokens=2)
    assert len(cache) == 2


def test_extract_dataset_is_resumable(thinker, episodes, tmp_path, monkeypatch):
    model, tok = thinker
    cache = FeatureCache(tmp_path)
    calls = []
    real = cache_mod.extract_features

    def counting(model, tok, eps, *a, **k):
        calls.append(len(eps))
        return real(model, tok, eps, *a, **k)

    monkeypatch.setattr(cache_mod, "extract_features", counting)
    keys = extract_dataset(episodes[:3], model, tok, cache, SAMPLER, batch_size=2, max_new_tokens=2, progress=False)
    assert calls == [2, 1] and len(cache) == 3
    calls.clear()
    # "interrupted" run: two of five done; the rerun computes only the missing three
    keys5 = extract_dataset(episodes, model, tok, cache, SAMPLER, batch_size=8, max_new_tokens=2, progress=False)
    assert keys5[:3] == keys and calls == [2] and len(cache) == 5
    calls.clear()
    extract_dataset(episodes, model, tok, cache, SAMPLER, max_new_tokens=2, progress=False)
    assert calls == []
    f = cache.get(keys5[4])
    assert f.old_mask.all() and f.old.shape[1] == int(f.old_mask.sum())  # batch padding was dropped
