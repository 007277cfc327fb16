"""A word-level tokenizer over the tabletop world's language, shaped like Qwen3-VL's.

A real Qwen3-VL ships a 150k-token BPE tokenizer; the tiny thinker needs none of that. Its world speaks a
few dozen words (colours, shapes, task words) plus timestamps, so a `tokenizers` WordLevel model wrapped
as a `PreTrainedTokenizerFast` is enough, and it carries Qwen3-VL's special tokens under their real
names so the video layout (`tkjepa.thinker.inputs`) is the same for the tiny and the real model.
It is saved next to the model (`tokenizer.json` + `tokenizer_config.json`) and reloads identically.
"""

from __future__ import annotations

import re

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tkjepa.world.scene import COLORS, GRASPABLE
from tkjepa.world.tasks import FAMILIES

PAD, UNK, EOS = "<|endoftext|>", "<unk>", "<|im_end|>"
# Qwen3-VL's special tokens, same spelling, so prompts read the same for the tiny and the real model.
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD, UNK, "<|im_start|>", EOS, "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>",
    "<think>", "</think>",
)
# Every word the world's prompts and the thinking text use; anything else maps to <unk>.
WORDS: tuple[str, ...] = (
    *COLORS, *GRASPABLE, "bowl", *(w for f in FAMILIES for w in f.split("_")),
    "describe", "this", "video", "task", "scene", "instruction", "a", "an", "the", "wooden", "table", "with",
    "up", "and", "put", "it", "in", "to", "then", "holding", "nothing", "next", "user", "assistant",
    "seconds", "object", "hand", "of", "is", ".", ",", "<", ">", ":",
)
# Timestamps "<1.3 seconds>" as Qwen3-VL writes them, one token per tenth of a second up to 30 s.
NUMBERS: tuple[str, ...] = tuple(f"{i / 10:.1f}" for i in range(301))
# What the pre-tokenizer keeps: decimals whole, words, and each punctuation mark on its own.
_PIECES = r"\d+\.\d+|\w+|[^\w\s]"


def normalize_text(text: str) -> str:
    """Lower-case and space out punctuation: "Put it in the Red bowl." -> "put it in the red bowl ." """
    return " ".join(re.findall(_PIECES, text.lower()))


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The word-level tokenizer; ids are fixed by the order of SPECIAL_TOKENS, WORDS, NUMBERS."""
    vocab: dict[str, int] = {}
    for w in (*SPECIAL_TOKENS, *WORDS, *NUMBERS):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(_PIECES), behavior="removed", invert=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=UNK, pad_token=PAD, eos_token=EOS,
                                   padding_side="left")  # left padding: batched generate appends on the right
    fast.add_special_tokens({"additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in (PAD, UNK, EOS)]})
    return fast


def decode_words(tokenizer, ids) -> str:
    """Ids -> space-joined words without special tokens (WordLevel has no decoder for spacing)."""
    toks = tokenizer.convert_ids_to_tokens([int(i) for i in ids])
    special = set(tokenizer.all_special_tokens)
    return " ".join(t for t in toks if t not in special)
