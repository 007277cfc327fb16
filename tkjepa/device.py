"""Where tensors live and at what precision: `--device auto|cpu|cuda|mps`, `--precision fp32|bf16|fp16`.

    device = resolve_device("auto")          # cuda if there is one, else mps, else cpu
    with autocast(device, "bf16"):           # matmuls in bf16, reductions and the loss in fp32
        loss = ...
    scaler = grad_scaler(device, "fp16")     # fp16 only: scales the loss so small gradients survive

fp32 is the default and the only precision whose numbers the shipped results are pinned to; bf16 and fp16
run the same code under `torch.autocast` (the weights and optimiser state stay fp32, as in the official
code's AMP).
"""

from __future__ import annotations

import contextlib

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda, else mps, else cpu; a named device is checked to exist (ValueError says why not)."""
    name = str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (optionally cuda:N), got {name!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this torch sees no CUDA GPU (torch.cuda.is_available() is False)")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ValueError("--device mps: this torch sees no Apple GPU (torch.backends.mps.is_available() is False)")
    return torch.device(name)


def check_precision(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def autocast(device: torch.device | str, precision: str = "fp32"):
    """A `torch.autocast` context for `precision` on `device`'s kind; fp32: a context that changes nothing."""
    dtype = check_precision(precision)
    if dtype is torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def grad_scaler(device: torch.device | str, precision: str = "fp32") -> torch.amp.GradScaler:
    """A loss scaler, enabled for fp16 only (bf16 has fp32's range and needs none)."""
    check_precision(precision)
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


# ---- several processes (torchrun) ---------------------------------------------------------------------------
def world() -> tuple[int, int]:
    """(rank, world size) of this process: torchrun's RANK / WORLD_SIZE, or (0, 1) when run alone."""
    import os

    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: torch.device) -> torch.device:
    """Join torchrun's process group (nccl on CUDA, gloo otherwise) when WORLD_SIZE > 1; on CUDA each process
    takes the GPU LOCAL_RANK. Returns the device this process computes on. A no-op when run alone."""
    import os

    import torch.distributed as dist

    if world()[1] == 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def rank_zero_first():
    """Rank 0 runs the block first (e.g. fills a cache), the other ranks after it (and read what it wrote)."""
    rank, size = world()
    if size > 1 and rank != 0:
        barrier()
    yield
    if size > 1 and rank == 0:
        barrier()


def flop_counter():
    """torch's `FlopCounterMode` (display off) that also counts the CPU's fused attention kernels.

    On CPU, `scaled_dot_product_attention` runs `_scaled_dot_product_flash_attention_for_cpu` (and its
    backward), which torch's counter does not know: a counted step would leave out every attention product —
    most of a step over thousands of tokens. They are counted here as the generic attention they compute.
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out, query, key, value)

    return FlopCounterMode(display=False, custom_mapping={
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward})


def peak_matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    """Measured FLOP/s of an n × n fp32 matmul on this machine's CPU threads: the peak a step is compared to."""
    import time

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0)
