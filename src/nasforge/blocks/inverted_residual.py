"""The inverted residual (MBConv) block, in the FBNet form and the FBNetV2/V3 form.

FBNet (METHODS §1): 1×1 group conv → BN → ReLU → shuffle (g>1) → k×k depthwise (stride) →
BN → ReLU → 1×1 group conv → BN, plus identity when stride 1 and c_in = c_out. FBNetV2/V3 add
optional SE (after the depthwise conv) and hard-swish. ``hidden`` is the expanded width.
"""

from __future__ import annotations

import torch
from torch import nn

from nasforge.blocks.layers import ChannelShuffle, ConvBNAct, DropPath, SqueezeExcite


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.pw is None else self.pw(x)
        if self.shuffle is not None:
            y = self.shuffle(y)
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.pwl(y)
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
