"""The FBNet network (METHODS §1) as a plain model: stem → one candidate block per layer → 1×1
head → pool → classifier. The candidate table and block factory serve the FBNet space's
``build`` and cost tables and the FBNet supernet's mixed ops alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from nasforge.blocks import ConvBNAct, InvertedResidual, Skip
from nasforge.errors import UserError

if TYPE_CHECKING:
    from nasforge.spaces.fbnet import Skeleton

#: name -> (kernel, expansion, groups); ``skip`` is None.
CANDIDATES: dict[str, tuple[int, int, int] | None] = {
    "k3_e1": (3, 1, 1),
    "k3_e1_g2": (3, 1, 2),
    "k3_e3": (3, 3, 1),
    "k3_e6": (3, 6, 1),
    "k5_e1": (5, 1, 1),
    "k5_e1_g2": (5, 1, 2),
    "k5_e3": (5, 3, 1),
    "k5_e6": (5, 6, 1),
    "skip": None,
}


def make_block(name: str, cin: int, cout: int, stride: int) -> nn.Module:
    """One FBNet candidate block; the same factory serves the supernet and ``build``."""
    if name not in CANDIDATES:
        raise UserError(f"unknown FBNet block {name!r}; choose from {list(CANDIDATES)}")
    spec = CANDIDATES[name]
    if spec is None:
        return Skip(cin, cout, stride)
    k, e, g = spec
    return InvertedResidual(cin, cout, kernel=k, stride=stride, hidden=cin * e, groups=g)


class FBNetModel(nn.Module):
    """A standalone FBNet: stem → one block per layer → 1×1 head → pool → classifier."""

    def __init__(self, skeleton: Skeleton, blocks: list[str], num_classes: int,
                 in_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = ConvBNAct(in_channels, skeleton.stem_channels, 3, skeleton.stem_stride)
        self.layers = nn.ModuleList(
            make_block(b, s.cin, s.cout, s.stride)
            for b, s in zip(blocks, skeleton.layer_specs())
        )
        last = skeleton.stages[-1][0]
        self.head = ConvBNAct(last, skeleton.head_channels, 1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(skeleton.head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        x = self.head(x).mean((2, 3))
        return self.classifier(self.dropout(x))


class FBNetHead(nn.Module):
    """The fixed tail (1×1 head conv → pool → classifier), as one LUT item."""

    def __init__(self, cin: int, ch: int, num_classes: int) -> None:
        super().__init__()
        self.head = ConvBNAct(cin, ch, 1)
        self.classifier = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(x).mean((2, 3)))


__all__ = ["CANDIDATES", "FBNetHead", "FBNetModel", "make_block"]
