"""The NAS-RL network (Zoph & Le, "Neural Architecture Search with Reinforcement Learning",
its CIFAR-10 space; METHODS §6) for fixed layer choices, as a plain model.

Each layer is a convolution of ``kh × kw`` (``'same'`` padding, ``(kh // 2, kw // 2)``) with
``filters`` output channels and ``stride``, then batch normalisation and ReLU (the paper's
"rectified linear units as non-linearities, batch normalization and skip connections"). Its
input follows the paper's rules for the skip connections the controller chose:

- a layer with several input layers takes them concatenated in depth;
- input layers of different sizes (a strided layer is smaller) are zero-padded to the largest
  height and width before the concatenation (the padding is split evenly, the extra row or
  column after: a choice, the paper does not say where);
- a layer with no input layer takes the image;
- the outputs that no layer takes are concatenated (padded the same way) and sent to the
  classifier: global average pooling, then a linear layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LayerSpec:
    """One layer: kernel ``kh × kw``, ``filters`` outputs, ``stride``, the earlier layers it
    takes (``inputs``; empty: the image)."""

    kh: int
    kw: int
    filters: int
    stride: int
    inputs: tuple[int, ...]


def unconnected(layers: Sequence[LayerSpec]) -> list[int]:
    """The layers no later layer takes: the classifier's input."""
    taken = {j for lay in layers for j in lay.inputs}
    return [i for i in range(len(layers)) if i not in taken]


def join(xs: list[torch.Tensor]) -> torch.Tensor:
    """NAS-RL's merge of several layers: zero-pad each to the largest height and width, then
    concatenate along the depth."""
    if len(xs) == 1:
        return xs[0]
    h = max(x.shape[2] for x in xs)
    w = max(x.shape[3] for x in xs)
    out = []
    for x in xs:
        dh, dw = h - x.shape[2], w - x.shape[3]
        if dh or dw:
            x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
        out.append(x)
    return torch.cat(out, dim=1)


class NASRLLayer(nn.Sequential):
    """Conv ``kh × kw`` (no bias) → BN → ReLU."""

    def __init__(self, cin: int, spec: LayerSpec) -> None:
        super().__init__(
            nn.Conv2d(cin, spec.filters, (spec.kh, spec.kw), stride=spec.stride,
                      padding=(spec.kh // 2, spec.kw // 2), bias=False),
            nn.BatchNorm2d(spec.filters),
            nn.ReLU(inplace=False))


class NASRLNetwork(nn.Module):
    """The network of one list of layers."""

    def __init__(self, layers: Sequence[LayerSpec], num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.inputs = [list(lay.inputs) for lay in layers]
        self.layers = nn.ModuleList(
            NASRLLayer(sum(layers[j].filters for j in lay.inputs) if lay.inputs else in_channels,
                       lay) for lay in layers)
        self.outputs = unconnected(layers)
        self.classifier = nn.Linear(sum(layers[i].filters for i in self.outputs), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for layer, inputs in zip(self.layers, self.inputs):
            outs.append(layer(join([outs[j] for j in inputs]) if inputs else x))
        return self.classifier(join([outs[i] for i in self.outputs]).mean((2, 3)))
