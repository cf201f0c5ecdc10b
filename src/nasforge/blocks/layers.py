"""Small layers shared by every space and model: conv-BN-act, activations, shuffle, SE, DropPath,
and the channel mask the FBNetV2 masked supernet multiplies feature maps by."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def get_divisible_by(num: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``num`` to a multiple of ``divisor`` exactly as FBNetV2's seed code does.

    Round half away from zero (py2 rounding); a result more than 5 % below ``num`` gets one
    ``divisor`` added back; the result is at least ``min_value`` (default ``divisor``).
    """
    if divisor <= 0:
        raise ValueError(f"divisor must be positive, got {divisor}")
    min_value = divisor if min_value is None else min_value
    ret = int(num)
    if num % divisor != 0:
        ret = int((math.floor(num / divisor + 0.5) or 1) * divisor)
        if ret < 0.95 * num:
            ret += divisor
    return max(ret, min_value)


def mask_channels(y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``y ∘ M`` over channels: ``m`` is a (C,) vector, cast to ``y``'s dtype (bf16 under
    autocast). The one place a channel mask is applied (blocks and masked search layers)."""
    return y * m.view(1, -1, 1, 1).to(y.dtype)


class HSigmoid(nn.Module):
    """Hard sigmoid relu6(x + 3) / 6 (MobileNetV3 / FBNetV2 SE gate)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.relu6(x + 3.0) / 6.0


class HSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * nn.functional.relu6(x + 3.0) / 6.0


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=False),
    "hswish": HSwish,
    "swish": nn.SiLU,
    "none": nn.Identity,
}


def make_act(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; available: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) → BatchNorm → activation; padding keeps 'same' size for odd kernels."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str = "relu", dilation: int = 1) -> None:
        if cin % groups or cout % groups:
            raise ValueError(f"channels {cin}->{cout} are not divisible by groups={groups}")
        pad = dilation * (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups,
                      bias=False),
            nn.BatchNorm2d(cout),
            make_act(act),
        )


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: (g, c/g) → (c/g, g). A permutation of channels."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = self.groups
        return x.view(b, g, c // g, h, w).transpose(1, 2).reshape(b, c, h, w)


class SqueezeExcite(nn.Module):
    """SE with reduction 4 and a hard-sigmoid gate; hidden width rounded by get_divisible_by."""

    def __init__(self, channels: int, reduction: float = 4.0, divisor: int = 8,
                 mid: int | None = None) -> None:
        super().__init__()
        # ``mid`` fixes the hidden width directly (FBNetV3's ``less_se_channels`` sizes it
        # from the block input instead of the expanded width)
        mid = get_divisible_by(channels / reduction, divisor) if mid is None else mid
        self.fc1 = nn.Conv2d(channels, mid, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(mid, channels, 1)
        self.gate = HSigmoid()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` (the masked supernet only) masks the hidden units after the ReLU."""
        s = x.mean((2, 3), keepdim=True)
        z = self.act(self.fc1(s))
        if mask is not None:
            z = mask_channels(z, mask)
        return x * self.gate(self.fc2(z))


class DropPath(nn.Module):
    """Stochastic depth on a residual branch (identity at eval)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep
