"""The VLM thinker branch of ThinkJEPA: a Qwen3-VL that reads the uniform clip + prompt and thinks.

tokenizer (word-level, Qwen3-VL's special tokens) → inputs (prompt, video layout, pixel packing) →
model (tiny config, `load_thinker`, multi-layer "old"/"new" features) → cache (content-hashed on disk);
train (`tkjepa pretrain-thinker`) and think (`tkjepa think`) are the commands on top.
Import submodules directly (`from tkjepa.thinker.model import load_thinker`); this package stays light.
"""
