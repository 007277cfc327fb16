"""Thinker inputs: tokenizer, prompt, Qwen3-VL video layout, pixel packing (parity with transformers)."""

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerFast

from tkjepa.thinker.inputs import VIDEO, VideoConfig, build_inputs, build_prompt, pack_video, video_layout
from tkjepa.thinker.tokenizer import SPECIAL_TOKENS, UNK, build_tokenizer, normalize_text
from tkjepa.world import generate_episode

CLIP = [0, 4, 9, 13, 18, 22, 27, 31]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def episodes():
    return [generate_episode(s) for s in range(4)]


def test_normalize_text():
    assert normalize_text("Put it in the Red bowl, then STOP.") == "put it in the red bowl , then stop ."
    assert normalize_text("<1.5 seconds>") == "< 1.5 seconds >"


def test_special_tokens_are_single_ids_and_unknown_words_map_to_unk(tok):
    for t in SPECIAL_TOKENS:
        assert tok.convert_ids_to_tokens(tok(t)["input_ids"]) == [t]
    ids = tok("zebra red <|video_pad|><|video_pad|>")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == [UNK, "red", "<|video_pad|>", "<|video_pad|>"]
    assert len(tok) <= 512  # fits the tiny model's embedding table comfortably


def test_tokenizer_save_reload_identical(tok, tmp_path, episodes):
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "tokenizer_config.json").exists()
    tok2 = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    text = video_layout(CLIP, 15.0, VideoConfig()) + build_prompt(episodes[0]) + " <|im_end|>"
    assert tok2(text)["input_ids"] == tok(text)["input_ids"]
    assert tok2.get_vocab() == tok.get_vocab()
    assert tok2.pad_token_id == tok.pad_token_id and tok2.eos_token_id == tok.eos_token_id


def test_prompt_carries_metadata(episodes):
    ep = episodes[0]
    p = build_prompt(ep)
    assert p.startswith("describe this video . task ")
    assert ep.task.replace("_", " ") in p and normalize_text(ep.instruction) in p
    assert normalize_text(ep.environment) in p


@pytest.mark.parametrize("patch", [8, 16])
def test_pack_video_matches_qwen2vl_image_processor(patch):
    """A temporal group of two identical frames is what Qwen's image processor makes of one image."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    proc = Qwen2VLImageProcessorPil(do_resize=False, image_mean=[0.5] * 3, image_std=[0.5] * 3, patch_size=patch,
                                    temporal_patch_size=2, merge_size=2)
    x = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ref = proc(images=[x], return_tensors="pt")
    mine, grid = pack_video(np.stack([x, x]), VideoConfig(patch=patch))
    assert torch.allclose(mine, ref["pixel_values"].float(), atol=1e-6)
    assert grid.tolist() == ref["image_grid_thw"][0].tolist()


def test_pack_video_shape_and_resize():
    frames = np.zeros((8, 96, 96, 3), np.uint8)
    px, grid = pack_video(frames, VideoConfig(patch=16))  # resized to 64
    assert px.shape == (4 * 4 * 4, 3 * 2 * 16 * 16) and grid.tolist() == [4, 4, 4]
    px, grid = pack_video(frames, VideoConfig(patch=8))
    assert px.shape == (4 * 8 * 8, 3 * 2 * 8 * 8) and grid.tolist() == [4, 8, 8]
    with pytest.raises(ValueError):
        pack_video(np.zeros((7, 64, 64, 3), np.uint8), VideoConfig())


@pytest.mark.parametrize("patch,per_group", [(16, 4), (8, 16)])
def test_video_layout_counts_and_timestamps(patch, per_group):
    cfg = VideoConfig(patch=patch)
    text = video_layout(CLIP, 15.0, cfg)
    assert cfg.tokens_per_group() == per_group  # (64 / patch)² / merge²
    assert text.count("<|video_pad|>") == 4 * per_group and text.count("<|vision_start|>") == 4
    assert text.count("<|vision_end|>") == 4
    assert text.startswith("<0.1 seconds><|vision_start|>")  # (0 + 4) / 2 / 15 fps ≈ 0.13 s


@pytest.mark.parametrize("B", [1, 4])
def test_build_inputs_shapes_and_placeholders(tok, episodes, B):
    cfg = VideoConfig(patch=16)  # Qwen3-VL's real patch size: 8 frames of 64² -> 16 video tokens
    batch = build_inputs(tok, episodes[:B], [CLIP] * B, cfg)
    ids = batch["input_ids"]
    vid = tok.convert_tokens_to_ids("<|video_pad|>")
    assert ids.shape[0] == B and batch["attention_mask"].shape == ids.shape
    assert batch["video_grid_thw"].tolist() == [[4, 4, 4]] * B
    assert batch["pixel_values_videos"].shape == (B * 64, 1536)
    # one pad per merged visual token: prod(grid) / merge²
    assert ((ids == vid).sum(1) == 16).all()
    assert int((ids == vid).sum()) == int(batch["video_grid_thw"].prod(1).sum()) // 4
    assert torch.equal(batch["mm_token_type_ids"] == VIDEO, ids == vid)
    # left padding: the last column is always a real token
    assert batch["attention_mask"][:, -1].all()
    assert ((ids == tok.pad_token_id) == (batch["attention_mask"] == 0)).all()


def test_labels_cover_only_the_target(tok, episodes):
    batch = build_inputs(tok, episodes[:2], [CLIP] * 2, VideoConfig(), targets=["holding nothing . next red bowl"] * 2)
    lab = batch["labels"]
    n = len(tok("holding nothing . next red bowl <|im_end|>")["input_ids"])
    assert ((lab != -100).sum(1) == n).all()
    assert torch.equal(lab[:, -n:], batch["input_ids"][:, -n:])


def test_proprio_text_reads_height_aperture_and_contacts_from_the_observed_frames_only(tok):
    """One "height aperture contacts" triple per clip frame (whole cm, contacts felt so far); a dip between two
    sampled frames is kept; frames past the clip's last are never read; every word is in the vocabulary."""
    from tkjepa.thinker.inputs import proprio_text
    from tkjepa.world import WorldConfig

    ep = generate_episode(100, WorldConfig(family="pick_place"))
    clip = np.linspace(0, 39, 8).round().astype(int)
    text = proprio_text(ep, clip)
    assert text.startswith("hand : ")
    triples = [p.split() for p in text[len("hand : "):].split(" , ")]
    z = ep.positions(["rightHand"])[:, 0, 2]
    assert [float(h) for h, _, _ in triples] == [round(100 * float(z[a:b + 1].min())) for a, b in
                                                  zip([0, *(clip[:-1] + 1)], clip)]
    shut = np.asarray(ep.extras["grip"])[clip] > 0.5            # the hand's own aperture: 6 cm open, 2 cm shut
    assert shut.any() and not shut.all()
    assert [float(a) for _, a, _ in triples] == [2.0 if h else 6.0 for h in shut]
    grasped = np.asarray(ep.extras["held"])[clip] >= 0          # pick_place: one contact, the grasp, then held
    assert grasped.any() and not grasped.all()
    assert [float(c) for _, _, c in triples] == [1.0 if g else 0.0 for g in grasped]
    assert UNK not in tok.convert_ids_to_tokens(tok(text)["input_ids"])
    # a dip between sampled frames shows; a change after the last one does not
    k = int(clip[3]) + 1
    ep.transforms["rightHand"][k, 2, 3] = 0.031
    ep.transforms["rightHand"][clip[-1] + 1:, 2, 3] = 0.0
    ep.transforms["rightThumbTip"][clip[-1] + 1:, :3, 3] = 0.0
    ep.extras["touches"][clip[-1] + 1:] = 9
    dipped = [p.split() for p in proprio_text(ep, clip)[len("hand : "):].split(" , ")]
    assert dipped[4][0] == "3.0" and dipped[:4] + dipped[5:] == triples[:4] + triples[5:]


def test_contacts_felt_count_grasps_and_touches():
    """A touch sequence's hand feels one contact per object touched, when the env records it; a grasp counts once
    while held, and again after a release and a new grasp."""
    from tkjepa.thinker.inputs import contacts_felt, proprio_text
    from tkjepa.world import WorldConfig

    ep = generate_episode(101, WorldConfig(family="touch_sequence"))
    felt = contacts_felt(ep.extras["held"], ep.extras["touches"])
    ends = np.asarray(ep.extras["subgoal_end"])
    assert felt[0] == 0 and felt[-1] == len(ends) and (np.diff(felt) >= 0).all()
    assert [int(felt[e]) for e in ends] == list(range(1, len(ends) + 1))   # each touch felt by its boundary
    last = proprio_text(ep, [ep.num_frames - 1]).split()[-1]
    assert last == f"{len(ends)}.0"
    np.testing.assert_array_equal(contacts_felt([-1, 2, 2, -1, -1, 0, 0], [0, 0, 0, 0, 1, 1, 1]),
                                  [0, 1, 1, 1, 2, 3, 3])
    with pytest.raises(ValueError, match="two \\[T\\] arrays"):
        contacts_felt([-1, 0], [0])


def test_proprio_prompt_and_its_errors(tok, episodes):
    from tkjepa.thinker.inputs import encode, proprio_text

    ep = episodes[0]
    plain, told = build_prompt(ep), build_prompt(ep, CLIP)
    assert told == f"{plain} {proprio_text(ep, CLIP)} ."
    on, off = (encode(tok, ep, CLIP, VideoConfig(proprio=p)) for p in (True, False))
    assert len(on["ids"]) == len(off["ids"]) + 2 + 4 * len(CLIP)   # "hand :", then "h a c ," per frame and "."
    torch.testing.assert_close(on["pixels"], off["pixels"])
    bare = generate_episode(0)
    bare.transforms = {}
    with pytest.raises(ValueError, match="proprioception"):
        build_prompt(bare, CLIP)
    unfelt = generate_episode(0)
    del unfelt.extras["touches"]                                # an episode written before the touch record
    with pytest.raises(ValueError, match="'touches'"):
        build_prompt(unfelt, CLIP)
    with pytest.raises(ValueError, match="non-empty"):
        proprio_text(ep, [])
