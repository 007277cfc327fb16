"""The VLM thinker branch of ThinkJEPA: a Qwen3-VL that reads the uniform clip + prompt and thinks.

tokenizer (word-level, Qwen3-VL's special tokens) → inputs (prompt, video layout, pixel packing) →
model (tiny config, `load_thinker`, multi-layer "old"/"new" features) → think (its clips, its training truth,
scoring) → cache (content-hashed on disk) → pretrain (what `tkjepa pretrain-thinker` runs).
Import submodules directly (`from tkjepa.thinker.model import load_thinker`); this package stays light.
"""
