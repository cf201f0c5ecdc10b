"""FBNetV2's masked search layers (METHODS §2): channel options by masking one wide layer.

:func:`channel_masks` builds the option masks ``l_i`` (the first ``c_i`` ones) from which a
sample's ``M = Σ_i g_i l_i`` is one matmul; :class:`MaskedConvBNAct` is one searchable conv
layer by masking, :class:`BranchedConvBNAct` the naive one-conv-per-option form it replaces
(benchmarks and tests). A masked inverted residual is the block's own forward with
:class:`nasforge.blocks.IRMasks`. The choice is always an argument, never module state.
"""

from __future__ import annotations

import torch
from torch import nn

from nasforge.blocks import ConvBNAct, HSwish, mask_channels


def channel_masks(widths: tuple[int, ...] | list[int], cmax: int) -> torch.Tensor:
    """``L`` (K×cmax): row i is ``l_i`` — ``widths[i]`` ones, then zeros."""
    L = torch.zeros(len(widths), cmax)
    for i, c in enumerate(widths):
        L[i, :c] = 1.0
    return L


class MaskedConvBNAct(nn.Module):
    """A searchable conv layer by channel masking: one conv-BN-act at the largest width,
    ``y = b(x) ∘ M`` with ``M = Σ_i g_i l_i`` (``g`` given to ``forward``). One forward pass
    and one feature map whatever the number of width options."""

    def __init__(self, cin: int, widths: tuple[int, ...] | list[int], kernel: int = 3,
                 stride: int = 1, act: str = "relu") -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.conv = ConvBNAct(cin, max(widths), kernel, stride, act=act)
        self.register_buffer("L", channel_masks(self.widths, max(widths)), persistent=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return mask_channels(self.conv(x), g @ self.L)

    def plain(self, width: int) -> ConvBNAct:
        """The standalone conv of one option, with this layer's weights sliced to it."""
        c = ConvBNAct(self.conv[0].in_channels, width, self.conv[0].kernel_size[0],
                      self.conv[0].stride[0], act="relu" if isinstance(self.conv[2], nn.ReLU)
                      else "hswish" if isinstance(self.conv[2], HSwish) else "none")
        src = self.conv.state_dict()
        c.load_state_dict({k: (v[:width] if v.dim() else v) for k, v in src.items()})
        return c


class BranchedConvBNAct(nn.Module):
    """The naive alternative DMaskingNAS replaces (for benchmarks and tests): one conv per
    width option, each output zero-padded to the largest width, summed with the weights."""

    def __init__(self, cin: int, widths: tuple[int, ...] | list[int], kernel: int = 3,
                 stride: int = 1, act: str = "relu") -> None:
        super().__init__()
        self.widths, self.cmax = tuple(widths), max(widths)
        self.branches = nn.ModuleList(ConvBNAct(cin, c, kernel, stride, act=act)
                                      for c in self.widths)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        out = None
        for i, (b, c) in enumerate(zip(self.branches, self.widths)):
            y = nn.functional.pad(b(x), (0, 0, 0, 0, 0, self.cmax - c)) * g[i]
            out = y if out is None else out + y
        return out


__all__ = ["BranchedConvBNAct", "MaskedConvBNAct", "channel_masks"]
