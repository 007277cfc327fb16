"""The tiny video encoder: shapes at B=1 and B=4, tubelet embedding by hand, masks, save/load, bad inputs."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from tkjepa.encoder import EncoderConfig, VideoEncoder, frames_to_video, load_encoder, normalize_video
from tkjepa.encoder.vit import sincos_pos_embed_3d

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return VideoEncoder(EncoderConfig.tiny()).eval()


@pytest.mark.parametrize("B", [1, 4])
def test_shapes(encoder, B):
    with torch.no_grad():
        z = encoder(torch.rand(B, 8, 3, 64, 64))
    assert z.shape == (B, 4, 64, encoder.embed_dim)
    assert encoder.grid(8, 64, 64) == (4, 8, 8)
    with torch.no_grad():  # other clip lengths and frame sizes (multiples of tubelet and patch) work too
        assert encoder(torch.rand(B, 4, 3, 32, 48)).shape == (B, 2, 24, encoder.embed_dim)


def test_tubelet_embedding_by_hand(encoder):
    """Conv3d with kernel = stride = (2, p, p) is a linear map of each flattened tubelet."""
    video = torch.rand(2, 4, 3, 16, 16)
    x = rearrange(normalize_video(video), "b (t dt) c (h p) (w q) -> b (t h w) (c dt p q)", dt=2, p=8, q=8)
    w = rearrange(encoder.patch_embed.weight, "d c dt p q -> d (c dt p q)")
    mine = x @ w.T + encoder.patch_embed.bias + sincos_pos_embed_3d(encoder.embed_dim, 2, 2, 2)
    torch.testing.assert_close(mine, encoder.tubelet_embed(video), rtol=1e-4, atol=1e-4)


def test_masked_forward_equals_gathering_tokens():
    """Encoding only the context tokens = running the blocks on the gathered tubelet tokens (no leak from others)."""
    torch.manual_seed(0)
    enc = VideoEncoder(EncoderConfig(embed_dim=24, depth=1, num_heads=2)).eval()
    video = torch.rand(2, 4, 3, 16, 16)
    masks = torch.tensor([[0, 3, 5], [1, 2, 7]])
    with torch.no_grad():
        z = enc(video, masks)
        x = torch.stack([enc.tubelet_embed(video)[i, m] for i, m in enumerate(masks)])
        ref = enc.norm(enc.blocks[0](x))
    assert z.shape == (2, 3, 24)
    torch.testing.assert_close(z, ref)


def test_frames_to_video():
    frames = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    v = frames_to_video(frames)
    assert v.shape == (1, 8, 3, 64, 64) and v.dtype == torch.float32 and 0 <= v.min() and v.max() <= 1
    assert torch.equal(v[0, 3, 1], torch.from_numpy(frames[3, :, :, 1]).float() / 255)
    assert frames_to_video(np.stack([frames, frames])).shape == (2, 8, 3, 64, 64)


@pytest.mark.parametrize("shape", [(1, 7, 3, 64, 64), (1, 8, 3, 60, 64), (8, 3, 64, 64), (1, 8, 64, 64, 3)])
def test_bad_inputs_raise(encoder, shape):
    with pytest.raises(ValueError):
        encoder(torch.rand(*shape))


def test_save_load_round_trip(encoder, tmp_path):
    encoder.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "tkjepa_video_encoder"
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))  # safetensors only, no pickle
    loaded = load_encoder(tmp_path)
    assert isinstance(loaded, VideoEncoder) and loaded.config == encoder.config
    video = torch.rand(2, 8, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video), encoder(video), rtol=0, atol=0)


def test_load_encoder_rejects_unknown(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type"):
        load_encoder(tmp_path)


def test_positions_differ_per_token():
    pe = sincos_pos_embed_3d(96, 4, 8, 8)
    assert pe.shape == (256, 96)
    assert torch.cdist(pe, pe).add(torch.eye(256) * 10).min() > 0.1  # every token has its own position
    assert F.cosine_similarity(pe[0], pe[1], dim=0) < 1
