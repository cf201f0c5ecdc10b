"""The DenseNAS derived network (METHODS §4) as a plain model: stem → head block → for each kept
routing block its alignment op then its non-skip layers → 1×1 tail → pool → classifier. The op
table and the factories here serve the DenseNAS space's ``build`` and cost tables and the
DenseNAS supernet alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nasforge.blocks import ConvBNAct, InvertedResidual, Skip
from nasforge.errors import UserError

if TYPE_CHECKING:
    from nasforge.spaces.dense import DenseSpec

#: op name -> (kernel, expansion); ``skip`` is None
OPS: dict[str, tuple[int, int] | None] = {
    "k3_e3": (3, 3), "k3_e6": (3, 6), "k5_e3": (5, 3), "k5_e6": (5, 6),
    "k7_e3": (7, 3), "k7_e6": (7, 6), "skip": None,
}


def make_op(name: str, cin: int, cout: int, stride: int) -> nn.Module:
    """One candidate op; the same factory serves the supernet and ``build``."""
    if name not in OPS:
        raise UserError(f"unknown DenseNAS op {name!r}; choose from {list(OPS)}")
    spec = OPS[name]
    if spec is None:
        return Skip(cin, cout, stride)
    k, e = spec
    return InvertedResidual(cin, cout, kernel=k, stride=stride, hidden=cin * e)


class DerivedBlock(nn.Module):
    """A kept routing block: the alignment op for its one predecessor, then its layers."""

    def __init__(self, align: nn.Module, layers: list[nn.Module]) -> None:
        super().__init__()
        self.align = align
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.align(x))


def make_stem(spec: DenseSpec, in_channels: int) -> nn.Sequential:
    """Stem conv 3×3 → head block (MBConv k3 e1, no expansion conv)."""
    return nn.Sequential(
        ConvBNAct(in_channels, spec.stem_channels, 3, spec.stem_stride),
        InvertedResidual(spec.stem_channels, spec.widths[0], kernel=3, stride=1,
                         hidden=spec.stem_channels, skip_pw_when_equal=True),
    )


def make_tail_align(spec: DenseSpec, i: int) -> ConvBNAct:
    """The tail's branch for predecessor ``i``: 1×1 conv (+BN+ReLU) to ``last_channels``."""
    return ConvBNAct(spec.width(i), spec.last_channels, 1, spec.stride(i, spec.num_blocks))


class DenseModel(nn.Module):
    """The network of one path: ``blocks`` are the arch's genes (``id``, ``align``,
    ``layers``) in path order."""

    def __init__(self, spec: DenseSpec, blocks: list[dict[str, Any]], num_classes: int,
                 in_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = make_stem(spec, in_channels)
        path = [0] + [b["id"] for b in blocks]
        self.blocks = nn.ModuleList(
            DerivedBlock(make_op(b["align"], spec.width(i), spec.width(b["id"]),
                                 spec.stride(i, b["id"])),
                         [make_op(o, spec.width(b["id"]), spec.width(b["id"]), 1)
                          for o in b["layers"] if o != "skip"])
            for i, b in zip(path, blocks)
        )
        self.tail = make_tail_align(spec, path[-1])
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(spec.last_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        x = self.tail(x).mean((2, 3))
        return self.classifier(self.dropout(x))


class PoolFC(nn.Module):
    """The fixed end of the tail (pool → classifier), as one LUT item."""

    def __init__(self, ch: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.mean((2, 3)))


__all__ = ["OPS", "DenseModel", "DerivedBlock", "PoolFC", "make_op", "make_stem",
           "make_tail_align"]
