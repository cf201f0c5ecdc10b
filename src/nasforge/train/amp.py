"""Device-dependent speed settings in one place: bf16 autocast, channels_last, fused optimizers."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn


def autocast(device: torch.device, enabled: bool = True) -> AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def prepare_module(module: nn.Module, device: torch.device) -> nn.Module:
    module = module.to(device)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return module


def prepare_input(x: torch.Tensor) -> torch.Tensor:
    if x.is_cuda and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def fused_kwargs(device: torch.device) -> dict[str, bool]:
    """Fused optimizer kernels on CUDA (one launch for all parameters)."""
    return {"fused": True} if device.type == "cuda" else {}
