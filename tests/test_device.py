"""Device and precision helpers: device names, autocast dtypes, and FLOP counting on the CPU's kernels."""

import pytest
import torch
import torch.nn.functional as F

from tkjepa.device import PRECISIONS, autocast, flop_counter, resolve_device


def test_auto_resolves_to_an_available_device_and_unknown_names_are_refused():
    dev = resolve_device("auto")
    assert dev.type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        assert dev.type != "cuda"
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_bf16_autocast_runs_matmuls_in_bf16_and_fp32_leaves_them_alone():
    a = torch.randn(8, 8)
    with autocast(torch.device("cpu"), "bf16"):
        assert (a @ a).dtype == PRECISIONS["bf16"]
    with autocast(torch.device("cpu"), "fp32"):
        assert (a @ a).dtype == torch.float32


def test_cpu_attention_is_counted_as_the_attention_it_computes():
    """The CPU's fused attention kernel counts as 2·2·B·H·N·M·d forward (QKᵀ and AV), as the math path on
    meta tensors does; without the mapping torch counts 0."""
    B, H, N, d = 2, 3, 40, 16
    q = torch.randn(B, H, N, d, requires_grad=True)
    with flop_counter() as counter:
        out = F.scaled_dot_product_attention(q, q, q)
    assert counter.get_total_flops() == 2 * 2 * B * H * N * N * d
    with flop_counter() as counter:
        out.sum().backward()
    assert counter.get_total_flops() > 2 * 2 * 2 * B * H * N * N * d  # ≥ 4 products of the forward's size
