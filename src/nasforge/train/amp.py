"""Device-dependent speed settings in one place: bf16 autocast, channels_last, fused optimizers."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn


def autocast(device: torch.device, enabled: bool = True) -> AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


#: devices whose convolutions run faster in NHWC (channels_last). On the CPU (oneDNN), one
#: training step of a model drawn from each shipped space took 1.0–2.2× less time in NHWC than
#: in NCHW (2 threads, batch 64; docs/supernet_speed.md, "channels_last for every training").
CHANNELS_LAST_DEVICES = ("cuda", "cpu")


def channels_last(device: torch.device) -> bool:
    return device.type in CHANNELS_LAST_DEVICES


def prepare_module(module: nn.Module, device: torch.device) -> nn.Module:
    module = module.to(device)
    if channels_last(device):
        module = module.to(memory_format=torch.channels_last)
    return module


def prepare_input(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4 and channels_last(x.device):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def fused_kwargs(device: torch.device) -> dict[str, bool]:
    """Fused optimizer kernels on CUDA (one launch for all parameters)."""
    return {"fused": True} if device.type == "cuda" else {}
