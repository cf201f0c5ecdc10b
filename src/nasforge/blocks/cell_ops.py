"""The candidate operations of the cell spaces (DARTS, NAS-Bench-201), defined exactly as their
papers' reference code defines them, so a found cell means the same network here and there.

- ``ReLUConvBN``: ReLU → Conv (no bias) → BN (NAS-Bench-201's ``nor_conv``, DARTS's
  preprocessing).
- ``DilConv``: ReLU → depthwise dilated conv → 1×1 conv → BN (DARTS ``dil_conv``).
- ``SepConv``: two stacked ``DilConv``-like units without dilation (DARTS ``sep_conv``: the
  first may be strided, the second keeps the size).
- ``Zero``: the ``none`` op (zeros, strided like the op it replaces).
- ``FactorizedReduce``: ReLU → two 1×1 stride-2 convs, the second on the input shifted by one
  pixel, concatenated → BN (DARTS's strided ``skip_connect`` and the preprocessing of a cell
  that follows a reduction cell).

``affine=False`` gives BN without learnable scale and shift (DARTS searches that way so that
the mixed op's weights alone scale each candidate); at BN weight 1 and bias 0 an affine op
computes exactly the same, which is how a derived network inherits a supernet's weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, affine: bool = True) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(cin, cout, kernel, stride, padding, dilation, bias=False),
                         nn.BatchNorm2d(cout, affine=affine))


class DilConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool = True) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(cin, cin, kernel, stride, padding, dilation, groups=cin,
                                   bias=False),
                         nn.Conv2d(cin, cout, 1, bias=False),
                         nn.BatchNorm2d(cout, affine=affine))


class SepConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__(DilConv(cin, cin, kernel, stride, padding, 1, affine),
                         DilConv(cin, cout, kernel, 1, padding, 1, affine))


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (it has no parameters and no MACs)."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halves the resolution without losing every other pixel (needs even sizes and cout)."""

    def __init__(self, cin: int, cout: int, affine: bool = True) -> None:
        super().__init__()
        if cout % 2:
            raise ValueError(f"FactorizedReduce needs an even output width, got {cout}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(cin, cout // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(cin, cout // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(cout, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def avg_pool_3x3(stride: int) -> nn.Module:
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


def max_pool_3x3(stride: int) -> nn.Module:
    return nn.MaxPool2d(3, stride=stride, padding=1)


#: DARTS's op of ``C`` channels at ``stride`` (``operations.py`` of the DARTS code); the order
#: is DARTS's ``PRIMITIVES`` (the α columns)
DARTS_OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: max_pool_3x3(stride),
    "avg_pool_3x3": lambda c, stride, affine: avg_pool_3x3(stride),
    "skip_connect": lambda c, stride, affine: (nn.Identity() if stride == 1
                                               else FactorizedReduce(c, c, affine)),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}

#: NAS-Bench-201's op of ``C`` channels inside a cell (stride 1, C in = C out there; its
#: ``cell_operations.py``); the order is the benchmark's op list
NB201_OPS: dict[str, Callable[[int, bool], nn.Module]] = {
    "none": lambda c, affine: Zero(1),
    "skip_connect": lambda c, affine: nn.Identity(),
    "nor_conv_1x1": lambda c, affine: ReLUConvBN(c, c, 1, 1, 0, 1, affine),
    "nor_conv_3x3": lambda c, affine: ReLUConvBN(c, c, 3, 1, 1, 1, affine),
    "avg_pool_3x3": lambda c, affine: avg_pool_3x3(1),
}
