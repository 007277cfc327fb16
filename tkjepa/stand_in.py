"""Stand-ins for the paper's backbones: randomly initialised models of the real architectures, saved as the
hub checkpoints are, so the real loading code runs with no download.

- `vjepa2_stand_in`: transformers' `VJEPA2Model` with V-JEPA 2's layout (crop 256, patch 16, tubelet 2),
  narrower and shallower than ViT-L (`config.json` + `model.safetensors`, as facebook/vjepa2-vitl-fpc64-256);
- `qwen3vl_stand_in`: transformers' `Qwen3VLForConditionalGeneration` with Qwen3-VL's layout (mrope,
  deepstack, spatial merge 2, patch 16, temporal patch 2), plus what a real checkpoint brings beside its
  weights: a byte-level BPE tokenizer (trained here on the tabletop's words), a chat template that opens the
  assistant's turn with "<think>" as Qwen3-VL-2B-Thinking's does, and a `preprocessor_config.json`.

Their numbers mean nothing (random weights); they exist so that `--encoder` / `--thinker` paths, shapes,
templates and the cache are exercised end to end on a laptop: `tkjepa stand-in --arch vjepa2 --out DIR`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Qwen3-VL's special tokens, by their real names (the tiny thinker uses the same).
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|video_pad|>", "<|image_pad|>", "<think>", "</think>")

# The shape of Qwen's template for one user turn with a video, and a thinking model's generation prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'video' -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n<think>\\n' -}}{%- endif -%}"
)


def vjepa2_stand_in(out: str | Path, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0) -> Path:
    """A random V-JEPA 2 of the real layout (crop 256, patch 16, tubelet 2), saved to `out`."""
    from transformers import VJEPA2Config, VJEPA2Model

    torch.manual_seed(seed)
    cfg = VJEPA2Config(crop_size=256, patch_size=16, tubelet_size=2, frames_per_clip=64, hidden_size=hidden,
                       num_attention_heads=heads, num_hidden_layers=layers, mlp_ratio=4.0,
                       pred_hidden_size=max(32, hidden // 2), pred_num_attention_heads=2, pred_num_hidden_layers=1,
                       num_pooler_layers=1)
    VJEPA2Model(cfg).eval().save_pretrained(out)
    return Path(out)


def _bpe_tokenizer(vocab_size: int = 800):
    """A byte-level BPE tokenizer (as Qwen's) trained on the tabletop's words and the official request."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tkjepa.thinker.tokenizer import WORDS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [" ".join(WORDS), "Describe this video.", "The hand picks up the red cube and puts it in a bowl.",
              *(f"<{i / 10:.1f} seconds>" for i in range(0, 300, 7))] * 4
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(QWEN_SPECIAL), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   padding_side="left")
    fast.add_special_tokens({"additional_special_tokens": [t for t in QWEN_SPECIAL if t not in
                                                           ("<|endoftext|>", "<|im_end|>")]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def qwen3vl_stand_in(out: str | Path, hidden: int = 128, layers: int = 8, vision_depth: int = 2,
                     seed: int = 0) -> Path:
    """A random Qwen3-VL of the real layout with its tokenizer, chat template and preprocessor config."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    out = Path(out)
    tokenizer = _bpe_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    head_dim = 32
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=hidden // head_dim, num_key_value_heads=max(1, hidden // head_dim // 2),
                         head_dim=head_dim, intermediate_size=2 * hidden, max_position_embeddings=4096,
                         rope_parameters=dict(rope_type="default", rope_theta=5e6, mrope_section=[6, 5, 5],
                                              mrope_interleaved=True),
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(depth=vision_depth, hidden_size=64, num_heads=4, intermediate_size=128, patch_size=16,
                           temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=hidden,
                           deepstack_visual_indexes=list(range(vision_depth)), num_position_embeddings=2304),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "patch_size": 16, "merge_size": 2,
        "temporal_patch_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "do_resize": True, "resample": 3}, indent=2))
    return out
