"""The V-JEPA 2 adapter: same numbers as transformers' VJEPA2Model, same interface as our encoder, bad sizes rejected.

Offline: a tiny random `VJEPA2Config` saved with `save_pretrained` stands in for facebook/vjepa2-vitl-fpc64-256.
"""

from pathlib import Path

import pytest
import torch
from einops import rearrange
from transformers import VJEPA2Config, VJEPA2Model

from tkjepa.encoder import load_encoder, normalize_video
from tkjepa.encoder.vjepa2 import VJEPA2Encoder

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    cfg = VJEPA2Config(crop_size=32, frames_per_clip=4, tubelet_size=2, patch_size=8, hidden_size=48,
                       num_attention_heads=4, num_hidden_layers=2, pred_hidden_size=24, pred_num_attention_heads=2,
                       pred_num_hidden_layers=1, num_pooler_layers=1)
    model = VJEPA2Model(cfg).eval()
    path = tmp_path_factory.mktemp("vjepa2_tiny")
    model.save_pretrained(path)
    return model, path


@pytest.mark.parametrize("B", [1, 4])
def test_matches_transformers(saved, B):
    model, path = saved
    enc = load_encoder(path)
    assert isinstance(enc, VJEPA2Encoder)
    video = torch.rand(B, 4, 3, 32, 32)
    with torch.no_grad():
        ours = enc(video)
        ref = model(normalize_video(video), skip_predictor=True).last_hidden_state
    assert ours.shape == (B, 2, 16, 48)
    assert enc.grid(4, 32, 32) == (2, 4, 4) and enc.embed_dim == 48
    torch.testing.assert_close(ours, rearrange(ref, "b (t n) d -> b t n d", t=2), rtol=1e-5, atol=1e-5)


def test_more_frames_than_frames_per_clip(saved):
    _, path = saved
    with torch.no_grad():
        assert VJEPA2Encoder.from_pretrained(path)(torch.rand(1, 8, 3, 32, 32)).shape == (1, 4, 16, 48)


@pytest.mark.parametrize("shape", [(1, 4, 3, 64, 64), (1, 4, 3, 32, 48), (1, 3, 3, 32, 32), (1, 4, 32, 32)])
def test_bad_input_sizes_raise(saved, shape):
    _, path = saved
    enc = VJEPA2Encoder.from_pretrained(path)
    with pytest.raises(ValueError):
        enc(torch.rand(*shape))


def test_save_round_trip(saved, tmp_path):
    model, path = saved
    enc = VJEPA2Encoder.from_pretrained(path)
    enc.save_pretrained(tmp_path)
    video = torch.rand(2, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_encoder(tmp_path)(video), enc(video))


def test_an_interrupted_save_leaves_the_folder_as_it_was(saved, tmp_path, monkeypatch):
    _, path = saved
    enc = VJEPA2Encoder.from_pretrained(path)
    out = tmp_path / "enc"
    enc.save_pretrained(out)
    before = {f.name: f.read_bytes() for f in out.iterdir()}

    def dies(folder, *a, **k):  # writes half a file, then the process "dies"
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(enc.model, "save_pretrained", dies)
    with pytest.raises(KeyboardInterrupt):
        enc.save_pretrained(out)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["enc"]  # no temporary folder left behind
