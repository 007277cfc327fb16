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


def test_a_killed_extraction_leaves_whole_entries_and_resumes(thinker, tmp_path):
    """Kill `extract_dataset` in another process midway: every entry it left loads, and a rerun computes only
    the missing ones, giving the same features as one uninterrupted run."""
    import subprocess
    import sys
    import time

    model, tok = thinker
    model.save_pretrained(tmp_path / "thinker")
    tok.save_pretrained(tmp_path / "thinker")
    script = f"""
import time
from tkjepa.sampling import DualTemporalSampler, SamplerConfig
from tkjepa.thinker import cache as c
from tkjepa.thinker.model import load_thinker
from tkjepa.world import generate_episode
model, tok = load_thinker({str(tmp_path / "thinker")!r})
real = c.extract_features
def slow(*a, **k):
    time.sleep(0.3)
    return real(*a, **k)
c.extract_features = slow
eps = [generate_episode(s) for s in range(12)]
c.extract_dataset(eps, model, tok, c.FeatureCache({str(tmp_path / "cache")!r}),
                  DualTemporalSampler(SamplerConfig.tiny()), batch_size=1, max_new_tokens=2, progress=False)
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    cache = FeatureCache(tmp_path / "cache")
    deadline = time.time() + 120
    while len(list((tmp_path / "cache").glob("*.safetensors"))) < 3 and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    left = sorted((tmp_path / "cache").glob("*.safetensors"))
    assert 3 <= len(left) < 12
    assert all(cache.get(p.stem) is not None for p in left)       # whole entries only
    eps = [generate_episode(s) for s in range(12)]
    keys = extract_dataset(eps, model, tok, cache, SAMPLER, batch_size=4, max_new_tokens=2, progress=False)
    assert len(cache) == 12 and {p.stem for p in left} <= set(keys)
    fresh = FeatureCache(tmp_path / "fresh")
    assert extract_dataset(eps, model, tok, fresh, SAMPLER, batch_size=4, max_new_tokens=2, progress=False) == keys
    for k in keys:
        assert torch.allclose(cache.get(k).new, fresh.get(k).new, atol=1e-5)


def test_an_unreadable_entry_is_rebuilt(thinker, episodes, tmp_path):
    model, tok = thinker
    cache = FeatureCache(tmp_path)
    f = cached_features(model, tok, cache, episodes[0], CLIP, max_new_tokens=2)
    (entry,) = tmp_path.glob("*.safetensors")
    entry.write_bytes(b"not safetensors")
    with pytest.warns(UserWarning, match="rebuilt"):
        g = cached_features(model, tok, cache, episodes[0], CLIP, max_new_tokens=2)
    assert torch.equal(f.new, g.new) and cache.get(entry.stem) is not None
    assert episode_key("w", [0], episodes[0], CLIP, max_new_tokens=2) != episode_key("w", [0], episodes[0], CLIP)
