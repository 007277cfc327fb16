"""`tkjepa pretrain-encoder` (the tiny JEPA encoder on the tabletop world) and `tkjepa probe` (a frozen
encoder's tokens -> the wrist's 3D position, ridge R²)."""

from __future__ import annotations

import json
import time

from tkjepa import paths
from tkjepa.cli import UsageError, add_common, add_set, apply_overrides, command_line, set_threads


def add_arguments(command: str, p) -> None:
    if command == "pretrain-encoder":
        from tkjepa.encoder.pretrain import PRESETS

        p.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model and training size")
        p.add_argument("--out", default=str(paths.RUNS / "encoder_tiny"),
                       help="output folder (checkpoint, metrics, diagnostics)")
        add_set(p, "PretrainConfig (e.g. steps=800, loss=l1, reg_weight=0, use_ema=false, encoder.depth=6)")
        p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.safetensors")
        p.add_argument("--keep-state", action="store_true", help="keep the resumable training state at the end")
        p.add_argument("--probe-baseline", action="store_true",
                       help="also probe the random initialisation, the baseline (≈ 2 min more on 2 cores)")
        add_common(p)
        return
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="EgoDex-format folder (or `tkjepa generate` output)")
    src.add_argument("--world", type=int, metavar="N",
                     help="instead of a folder: N fresh world episodes of --seed, generated in memory")
    p.add_argument("--seed", type=int, default=0, help="world dataset seed for --world (default 0)")
    p.add_argument("--encoder", default=str(paths.ENCODER),
                   help="encoder folder or hub name (default: the shipped tiny encoder); 'random': the tiny "
                        "encoder at its seed-0 initialisation, the baseline")
    p.add_argument("--episodes", type=int, default=None, help="use only the first N episodes found")
    p.add_argument("--heldout", type=int, default=None, metavar="K",
                   help="score R² on the last K episodes, fit on all the others (default: the last third)")
    p.add_argument("--fit", type=int, default=None, metavar="F",
                   help="fit on only the first F of the episodes before the held-out ones (a learning curve on "
                        "one fixed held-out set)")
    p.add_argument("--raw", action="store_true", help="ridge on the raw features (no per-feature standardising)")
    p.add_argument("--baseline", action="store_true",
                   help="also probe the random initialisation of the tiny encoder on the same split (\"random_r2\")")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    add_common(p, progress=False)


def run(command: str, args) -> int:
    set_threads(args)
    return pretrain(args) if command == "pretrain-encoder" else probe(args)


def pretrain(args) -> int:
    from tkjepa.encoder.pretrain import PRESETS, train_and_export

    cfg = apply_overrides(PRESETS[args.preset](), args.set)
    m = train_and_export(cfg, args.out, resume=args.resume, progress=not args.quiet, keep_state=args.keep_state,
                         command=command_line(), baseline=args.probe_baseline)
    p, f = m["probe"]["pretrained"], m["final"]
    r = m["probe"].get("random_init")
    print(f"probe R² (wrist xyz, fit on {p['fit_episodes']}, {p['episodes']} held-out episodes): pretrained "
          f"{p['r2']:.3f}" + (f", random init {r['r2']:.3f}" if r else ""))
    print(f"final: effective rank {f['erank']:.1f} / {cfg.encoder.embed_dim}, per-dim std {f['std_mean']:.3f} "
          f"(min {f['std_min']:.3f}), cos(target, online) {f['cos']:.3f}")
    print(f"wrote {args.out}/ (model.safetensors, metrics.json, diagnostics.json, diagnostics.html) "
          f"in {m['wall_time_s']:.0f} s")
    return 0


def probe(args) -> int:
    from tkjepa.egodex import find_episodes, load_episode
    from tkjepa.encoder import load_encoder
    from tkjepa.encoder.probe import ProbeConfig, probe_r2, random_encoder
    from tkjepa.world import dataset_episodes

    t0 = time.perf_counter()
    encoder = random_encoder() if args.encoder == "random" else load_encoder(args.encoder)
    size = encoder.input_size or 64
    if args.world is not None:
        if size != 64:
            raise UsageError(f"--world renders 64x64 frames; this encoder wants {size}x{size}: use --data")
        episodes = dataset_episodes(args.seed, range(args.world))[:args.episodes]
    else:
        episodes = [load_episode(p, size=size) for p in find_episodes(args.data)[:args.episodes]]
    if len(episodes) < 2:
        raise UsageError(f"{args.data or '--world'}: need at least 2 episodes (some to fit, some to evaluate), "
                         f"found {len(episodes)}")
    cfg = ProbeConfig(standardize=not args.raw)
    n_fit = len(episodes) - args.heldout if args.heldout else round(len(episodes) * cfg.fit_fraction)
    n_fit = min(max(1, n_fit), len(episodes) - 1)
    heldout = episodes[n_fit:]
    if args.fit is not None:
        if not 1 <= args.fit <= n_fit:
            raise UsageError(f"--fit {args.fit}: choose 1 … {n_fit} (the episodes before the held-out ones)")
        n_fit = args.fit
    result = probe_r2(encoder, episodes[:n_fit], heldout, cfg)
    if args.baseline:
        if size != 64:
            raise UsageError(f"--baseline probes the tiny encoder's random initialisation, which reads 64x64 "
                             f"frames; this encoder reads {size}x{size}")
        base = probe_r2(random_encoder(), episodes[:n_fit], heldout, cfg)
        result.update(random_r2=base["r2"], random_r2_xyz=base["r2_xyz"])
    result.update(encoder=str(args.encoder), seconds=round(time.perf_counter() - t0, 2))
    if args.json:
        print(json.dumps(result))
    else:
        xyz = ", ".join(f"{a} {v:.3f}" for a, v in zip("xyz", result["r2_xyz"]))
        lam = ", ".join(f"{v:g}" for v in result["lambda"])
        print(f"probe R² {result['r2']:.3f} ({xyz}) on {result['episodes']} held-out episodes "
              f"(fit on {result['fit_episodes']}, λ = {lam}) in {result['seconds']} s"
              + (f"; random initialisation {result['random_r2']:.3f}" if args.baseline else ""))
    return 0
