"""The inverted residual (MBConv) block, in the FBNet form and the FBNetV2/V3 form.

FBNet (METHODS §1): 1×1 group conv → BN → ReLU → shuffle (g>1) → k×k depthwise (stride) →
BN → ReLU → 1×1 group conv → BN, plus identity when stride 1 and c_in = c_out. FBNetV2/V3 add
optional SE (after the depthwise conv) and hard-swish. ``hidden`` is the expanded width.

The FBNetV2 masked supernet runs the same forward at the block's largest width with channel
masks (:class:`IRMasks`); plain models and TorchScript call it without.
"""

# no ``from __future__ import annotations``: TorchScript cannot resolve a NamedTuple's string
# annotations (pytorch#95858), and IRMasks is part of the scripted forward's signature
from typing import NamedTuple

import torch
from torch import nn

from nasforge.blocks.layers import (
    ChannelShuffle,
    ConvBNAct,
    DropPath,
    SqueezeExcite,
    mask_channels,
)


class IRMasks(NamedTuple):
    """Channel masks (each a (C,) vector) for one masked inverted residual.

    ``hidden`` masks the expansion 1×1 and the depthwise conv (the depthwise conv propagates
    C̄_in; its BN shift would otherwise leak into masked channels), ``se`` the SE's hidden
    units (None: unmasked), ``out`` the projection.
    """

    hidden: torch.Tensor
    se: torch.Tensor | None
    out: torch.Tensor


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, *, kernel: int, stride: int, hidden: int,
                 groups: int = 1, se: bool = False, act: str = "relu",
                 skip_pw_when_equal: bool = False, drop_path: float = 0.0,
                 se_mid: int | None = None) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if hidden % groups:
            raise ValueError(f"hidden width {hidden} not divisible by groups={groups}")
        self.cin, self.cout, self.kernel, self.stride = cin, cout, kernel, stride
        self.hidden, self.groups = hidden, groups
        self.pw = (None if skip_pw_when_equal and hidden == cin
                   else ConvBNAct(cin, hidden, 1, groups=groups, act=act))
        self.shuffle = ChannelShuffle(groups) if groups > 1 else None
        self.dw = ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act)
        self.se = SqueezeExcite(hidden, mid=se_mid) if se else None
        self.pwl = ConvBNAct(hidden, cout, 1, groups=groups, act="none")
        self.use_res = stride == 1 and cin == cout
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None

    def forward(self, x: torch.Tensor, masks: IRMasks | None = None) -> torch.Tensor:
        """``masks``: the masked supernet's ``y = b(x) ∘ M`` per searched conv (see IRMasks)."""
        hid: torch.Tensor | None = None
        se_mask: torch.Tensor | None = None
        out: torch.Tensor | None = None
        if masks is not None:
            hid, se_mask, out = masks.hidden, masks.se, masks.out
        y = x
        if self.pw is not None:
            y = self.pw(x)
            if hid is not None:
                y = mask_channels(y, hid)
        if self.shuffle is not None:
            y = self.shuffle(y)
        y = self.dw(y)
        if hid is not None:
            y = mask_channels(y, hid)
        if self.se is not None:
            y = self.se(y, se_mask)
        y = self.pwl(y)
        if out is not None:
            y = mask_channels(y, out)
        if self.use_res:
            if self.drop_path is not None:
                y = self.drop_path(y)
            y = y + x
        return y


class Skip(nn.Module):
    """FBNet's ``skip``: identity when shapes match, else 1×1 conv (stride) + BN to fix them."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.proj = (None if cin == cout and stride == 1
                     else ConvBNAct(cin, cout, 1, stride, act="none"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.proj is None else self.proj(x)
