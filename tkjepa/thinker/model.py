"""The thinker: a Qwen3-VL (tiny and trained here, or real by name), and its multi-layer features.

`Qwen3VLForConditionalGeneration` from transformers is used as is. The tiny one is built from
`ThinkerConfig.tiny()`; `load_thinker` loads either it (a folder written by `save_pretrained`) or a real
Qwen3-VL (e.g. "Qwen/Qwen3-VL-2B-Thinking"), never running remote code unless asked.

Features follow the official code: greedy generation of a few tokens, then the hidden states of chosen
decoder layers for the prompt + visual tokens ("old") and for the generated tokens ("new").
Caveat: transformers' `hidden_states` holds the embeddings then one entry per layer, and its *last* entry
is after the final RMSNorm (a forward hook on the last decoder layer, as the official code uses, sees the
un-normed state). Layer l here is `hidden_states[l + 1]`; for a real Qwen3-VL the last layer's entry is
replaced by what a forward hook on that layer sees, so every layer is raw as in the official cache (the tiny
thinker keeps the final-normed last layer it was trained and attributed with).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast, Qwen3VLConfig, Qwen3VLForConditionalGeneration

from tkjepa.episode import Episode
from tkjepa.thinker.inputs import VideoConfig, build_inputs
from tkjepa.thinker.tokenizer import build_tokenizer, decode_words

# greedy thinking length: "holding red cube . next blue bowl" is 7 words + eos; a few more for the longer
# object names and slack
MAX_NEW_TOKENS = 12
REAL_PROMPT = "Describe this video."  # the official request to a real Qwen3-VL
REAL_FRAME_SIZE = 256                 # the official frame side for a real Qwen3-VL (a multiple of patch × merge)
REAL_NEW_TOKENS = 16                  # the official greedy thinking length for a real Qwen3-VL


def thinking_tokens(model) -> int:
    """How many tokens `model` thinks: the official 16 for a real Qwen3-VL, `MAX_NEW_TOKENS` for the tiny one."""
    return int(getattr(model.config, "tkjepa_new_tokens", MAX_NEW_TOKENS))


@dataclass
class ThinkerConfig:
    """Size of the tiny Qwen3-VL (text decoder + vision tower) and the video it reads. (How long it thinks is
    `MAX_NEW_TOKENS`, an argument of `generate`/`extract_features`.)"""

    hidden: int = 128            # text hidden size D (Qwen3-VL-2B: 2048)
    layers: int = 6              # decoder layers; 6 gives the feature pyramid several levels
    heads: int = 4               # attention heads
    kv_heads: int = 2            # grouped-query KV heads, as Qwen3
    head_dim: int = 32           # per-head size; mrope sections below sum to head_dim/2
    intermediate: int = 256      # MLP width
    vision_depth: int = 2        # vision transformer blocks
    vision_hidden: int = 64      # vision width
    vision_heads: int = 4        # vision heads
    video: VideoConfig = field(default_factory=VideoConfig)  # pixels and video tokens

    @classmethod
    def tiny(cls) -> ThinkerConfig:
        return cls()

    def to_hf(self, tokenizer) -> Qwen3VLConfig:
        v = self.video
        ids = tokenizer.convert_tokens_to_ids
        config = Qwen3VLConfig(
            text_config=dict(
                vocab_size=len(tokenizer), hidden_size=self.hidden, num_hidden_layers=self.layers,
                num_attention_heads=self.heads, num_key_value_heads=self.kv_heads, head_dim=self.head_dim,
                intermediate_size=self.intermediate, max_position_embeddings=1024,
                rope_parameters=dict(rope_type="default", rope_theta=1e4, mrope_section=[6, 5, 5],
                                     mrope_interleaved=True),
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            ),
            vision_config=dict(
                depth=self.vision_depth, hidden_size=self.vision_hidden, num_heads=self.vision_heads,
                intermediate_size=2 * self.vision_hidden, patch_size=v.patch, temporal_patch_size=v.temporal_patch,
                spatial_merge_size=v.merge, out_hidden_size=self.hidden,
                deepstack_visual_indexes=list(range(self.vision_depth)), num_position_embeddings=64,
            ),
            image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
            tie_word_embeddings=True,
        )
        config.tkjepa_frame_size = v.size  # saved in config.json, so a loaded thinker packs frames the same way
        config.tkjepa_proprio = v.proprio  # … and builds its prompt the same way
        if not v.instruction:              # (absent: the instruction is read, as every earlier checkpoint did)
            config.tkjepa_instruction = False
        return config


def build_thinker(cfg: ThinkerConfig | None = None, seed: int = 0):
    """A freshly initialised tiny thinker and its tokenizer (same seed -> same weights)."""
    cfg = cfg or ThinkerConfig.tiny()
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(cfg.to_hf(tokenizer)).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def load_thinker(name_or_path: str | Path, trust_remote_code: bool = False, **kwargs):
    """(model, tokenizer) from a folder written by `save_pretrained` or a hub name.

    A real Qwen3-VL brings its own tokenizer/processor (AutoProcessor); the tiny one has our word-level
    tokenizer saved beside it. `trust_remote_code` is passed through and stays False unless asked:
    Qwen3-VL is a native transformers class and needs no remote code.
    """
    model = Qwen3VLForConditionalGeneration.from_pretrained(
        str(name_or_path), trust_remote_code=trust_remote_code, **kwargs).eval()
    if hasattr(model.config, "tkjepa_frame_size"):  # the tiny thinker: our word-level tokenizer beside it
        return model, PreTrainedTokenizerFast.from_pretrained(str(name_or_path), padding_side="left")
    # a real Qwen3-VL: its own BPE tokenizer and chat template (AutoProcessor would also build the video
    # processor, which needs torchvision; the pixels are packed here, as its image processor would)
    from transformers import AutoTokenizer  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code,
                                              padding_side="left")
    if tokenizer.chat_template is None:
        raise ValueError(f"{name_or_path}: a Qwen3-VL without a chat template (chat_template.jinja or "
                         "tokenizer_config.json's chat_template)")
    factor = model.config.vision_config.patch_size * model.config.vision_config.spatial_merge_size
    model.config.tkjepa_frame_size = max(factor, REAL_FRAME_SIZE // factor * factor)
    model.config.tkjepa_chat_prompt = REAL_PROMPT
    model.config.tkjepa_new_tokens = REAL_NEW_TOKENS
    model.config.tkjepa_raw_layers = True  # every hooked layer raw, as the official forward hooks see them
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def default_layers(num_layers: int) -> list[int]:
    """Spread over the depth like the official 0, 4, …, 24, 27 of 28 layers (step ≈ depth/7, plus the last)."""
    step = max(1, num_layers // 7)
    return sorted(set(range(0, num_layers, step)) | {num_layers - 1})


@dataclass
class ThinkerFeatures:
    """Hidden states of one episode at the chosen layers.

    old: [L, N_old, D] prompt + visual token states; old_mask [N_old] bool (False on padding).
    new: [L, N_new, D] generated token states; new_mask [N_new] bool (False after eos).
    layers: the decoder layer indices of the L rows; text: the generated thinking text.
    """

    old: torch.Tensor
    old_mask: torch.Tensor
    new: torch.Tensor
    new_mask: torch.Tensor
    layers: list[int]
    text: str


def video_config_of(model) -> VideoConfig:
    """How `model` reads video: the tiny thinker's settings are in its config.json; a real Qwen3-VL gets the
    official 256-px frames and "Describe this video." through its chat template (`load_thinker` sets them)."""
    vc, c = model.config.vision_config, model.config
    return VideoConfig(size=getattr(c, "tkjepa_frame_size", 64), patch=vc.patch_size,
                       temporal_patch=vc.temporal_patch_size, merge=vc.spatial_merge_size,
                       proprio=bool(getattr(c, "tkjepa_proprio", False)),
                       instruction=bool(getattr(c, "tkjepa_instruction", True)),
                       chat_prompt=getattr(c, "tkjepa_chat_prompt", None))


@torch.no_grad()
def generate(model, tokenizer, episodes: list[Episode], frame_indices: list,
             max_new_tokens: int | None = None):
    """Greedy thinking (`max_new_tokens`, default `thinking_tokens(model)`). Returns (batch inputs, generated
    ids [B, N_new], texts)."""
    max_new_tokens = max_new_tokens or thinking_tokens(model)
    batch = {k: v.to(model.device) for k, v in build_inputs(tokenizer, episodes, frame_indices,
                                                            video_config_of(model)).items()}
    # an untrained thinker may emit vision placeholders, which would break the features' forward pass
    vision = ["<|video_pad|>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>"]
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                         suppress_tokens=tokenizer.convert_tokens_to_ids(vision),
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    new = out[:, batch["input_ids"].shape[1]:]
    return batch, new, [decode_text(tokenizer, row) for row in new]


def decode_text(tokenizer, ids) -> str:
    """Generated ids -> text without special tokens: the real tokenizer's own decoder (byte-level BPE), or the
    tiny one's space-joined words."""
    if tokenizer.chat_template is not None:
        return tokenizer.decode([int(i) for i in ids], skip_special_tokens=True).strip()
    return decode_words(tokenizer, ids)


def generated_mask(new: torch.Tensor, eos: int) -> torch.Tensor:
    """new [B, N] generated ids -> [B, N] bool: True up to and including the first eos, False after
    (generate pads finished rows, and those pads are not thinking)."""
    is_eos = (new == eos).long()
    return (torch.cumsum(is_eos, dim=1) - is_eos) == 0


@torch.no_grad()
def extract_features(model, tokenizer, episodes: list[Episode], frame_indices: list,
                     layers: list[int] | None = None, max_new_tokens: int | None = None) -> list[ThinkerFeatures]:
    """Generate, then one forward over prompt + generated tokens with output_hidden_states=True."""
    layers = list(layers) if layers is not None else default_layers(model.config.text_config.num_hidden_layers)
    batch, new, texts = generate(model, tokenizer, episodes, frame_indices, max_new_tokens)
    new_mask = generated_mask(new, tokenizer.eos_token_id)
    ids = torch.cat([batch["input_ids"], new], dim=1)
    fwd = dict(batch, input_ids=ids,
               attention_mask=torch.cat([batch["attention_mask"], new_mask.long()], dim=1),
               mm_token_type_ids=torch.cat([batch["mm_token_type_ids"], torch.zeros_like(new)], dim=1))
    raw = {}
    hook = None
    if getattr(model.config, "tkjepa_raw_layers", False):  # the official forward hooks' view of the last layer
        last = model.model.language_model.layers[-1]
        hook = last.register_forward_hook(lambda m, i, o: raw.__setitem__("last", o[0] if isinstance(o, tuple) else o))
    try:
        hs = list(model(**fwd, output_hidden_states=True).hidden_states)  # (1 + num_layers) × [B, L, D]
    finally:
        if hook is not None:
            hook.remove()
    if "last" in raw:
        hs[-1] = raw["last"]  # un-normed, as a forward hook sees it (hidden_states' last entry is final-normed)
    stack = torch.stack([hs[l + 1] for l in layers], dim=1)       # [B, L_sel, L_tok, D]
    n_old = batch["input_ids"].shape[1]
    old_mask = batch["attention_mask"].bool()
    stack, old_mask, new_mask = stack.float().cpu(), old_mask.cpu(), new_mask.cpu()
    return [ThinkerFeatures(old=stack[b, :, :n_old].clone(), old_mask=old_mask[b].clone(),
                            new=stack[b, :, n_old:].clone(), new_mask=new_mask[b].clone(),
                            layers=layers, text=texts[b]) for b in range(len(episodes))]
