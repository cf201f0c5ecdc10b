"""Analytic MAC and parameter counts.

Convention: FLOPs here are multiply-accumulates (MACs) of convolutions and linear layers,
``k² · h_out · w_out · C_in · C_out / groups`` and ``in · out`` — the figure papers report as
"FLOPs". ``torch.utils.flop_counter`` counts 2 FLOPs per MAC; tests cross-check the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Counts:
    macs: int
    params: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.macs + other.macs, self.params + other.params)


def conv_macs(cin: int, cout: int, kernel: int | tuple[int, int], groups: int, h_out: int,
              w_out: int) -> int:
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return kh * kw * h_out * w_out * (cin // groups) * cout


def count_module(module: nn.Module, input_shape: tuple[int, ...]) -> Counts:
    """Count MACs (conv + linear) by recording each layer's output shape on one forward pass.

    ``input_shape`` excludes the batch dimension. Params are every parameter of ``module``.
    """
    macs = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        macs += conv_macs(m.in_channels, m.out_channels, m.kernel_size, m.groups,
                          out.shape[-2], out.shape[-1])

    def linear_hook(m: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        macs += m.in_features * m.out_features * (out.numel() // out.shape[-1] // out.shape[0])

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    try:
        p = next(module.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
        with torch.no_grad():
            module(torch.zeros((1, *input_shape), device=dev))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    params = sum(p.numel() for p in module.parameters())
    return Counts(int(macs), int(params))


def flop_counter_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs according to ``torch.utils.flop_counter`` (its FLOPs / 2), for cross-checks."""
    from torch.utils.flop_counter import FlopCounterMode

    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        module(torch.zeros((1, *input_shape)))
    return int(fc.get_total_flops() // 2)
