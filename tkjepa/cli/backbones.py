"""`tkjepa stand-in`: a random model of a real backbone's architecture, saved as its hub checkpoint is (for
trying `--encoder` / `--thinker` with no download; see `tkjepa.stand_in`)."""

from __future__ import annotations


def add_arguments(command: str, p) -> None:
    p.add_argument("--arch", required=True, choices=("vjepa2", "qwen3vl"),
                   help="vjepa2: V-JEPA 2's layout (crop 256, patch 16, tubelet 2); qwen3vl: Qwen3-VL's, with a "
                        "byte-level BPE tokenizer, a thinking model's chat template and a preprocessor config")
    p.add_argument("--out", required=True, help="folder to write (config.json, model.safetensors, …)")
    p.add_argument("--hidden", type=int, default=None, help="width (default: vjepa2 64, qwen3vl 128)")
    p.add_argument("--layers", type=int, default=None, help="depth (default: vjepa2 2, qwen3vl 8)")
    p.add_argument("--seed", type=int, default=0, help="weights")


def run(command: str, args) -> int:
    from tkjepa.checkpoint import atomic_folder
    from tkjepa.stand_in import qwen3vl_stand_in, vjepa2_stand_in

    build = vjepa2_stand_in if args.arch == "vjepa2" else qwen3vl_stand_in
    sizes = {k: v for k, v in (("hidden", args.hidden), ("layers", args.layers)) if v is not None}
    with atomic_folder(args.out) as tmp:
        build(tmp, seed=args.seed, **sizes)
    print(f"wrote a random {args.arch} stand-in to {args.out}")
    return 0
