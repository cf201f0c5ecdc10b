"""The NAS-Bench-201 network (its ``TinyNetwork`` for a fixed cell), as a plain model.

Macro skeleton (the benchmark's): a 3×3 conv stem to ``C`` channels + BN; three stages of
``N`` cells at ``C``, ``2C``, ``4C`` channels with a residual reduction block (the ResNet basic
block, stride 2) between stages; BN-ReLU; global average pooling; linear classifier.

The cell is a DAG of 4 nodes: node 0 is the cell input, node ``i`` (1..3) is the sum of one op
applied to every earlier node, and node 3 is the cell output. Its 6 edges are listed in the
benchmark's string order: ``1←0 | 2←0 2←1 | 3←0 3←1 3←2`` (:data:`EDGES`).
"""

from __future__ import annotations

import torch
from torch import nn

from nasforge.blocks.cell_ops import NB201_OPS, ReLUConvBN

#: the op names in the benchmark's order
OPS: tuple[str, ...] = tuple(NB201_OPS)
#: (node, input) of each edge, in the benchmark's string order
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


class ResNetBasicBlock(nn.Module):
    """The benchmark's reduction block: ReLUConvBN 3×3 (stride 2) → ReLUConvBN 3×3, plus a
    2×2 average pool → 1×1 conv shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 2) -> None:
        super().__init__()
        if stride != 2:
            raise ValueError("the NAS-Bench-201 reduction block has stride 2")
        self.conv_a = ReLUConvBN(cin, cout, 3, stride, 1)
        self.conv_b = ReLUConvBN(cout, cout, 3, 1, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2, 0),
                                        nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Cell(nn.Module):
    """One cell with a fixed op per edge (``ops[k]`` on ``EDGES[k]``)."""

    def __init__(self, ops: tuple[str, ...] | list[str], channels: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.edges = nn.ModuleList(NB201_OPS[o](channels, affine) for o in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        k = 0
        for i in range(1, 4):
            s = self.edges[k](nodes[0])
            for j in range(1, i):
                s = s + self.edges[k + j](nodes[j])
            k += i
            nodes.append(s)
        return nodes[3]


def stage_plan(channels: int, cells_per_stage: int) -> list[tuple[str, int, int]]:
    """The network's body as ``(kind, cin, cout)`` rows, kind ``cell`` or ``reduce``."""
    rows: list[tuple[str, int, int]] = []
    c_prev = channels
    for s in range(3):
        c = channels * 2 ** s
        if s:
            rows.append(("reduce", c_prev, c))
        rows += [("cell", c, c)] * cells_per_stage
        c_prev = c
    return rows


def make_stem(in_channels: int, channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(channels))


class NB201Network(nn.Module):
    """The benchmark's network of one cell (``ops``: the 6 edge ops in string order)."""

    def __init__(self, ops: tuple[str, ...] | list[str], num_classes: int, in_channels: int,
                 channels: int = 16, cells_per_stage: int = 5) -> None:
        super().__init__()
        self.stem = make_stem(in_channels, channels)
        self.cells = nn.ModuleList(
            NB201Cell(ops, cout) if kind == "cell" else ResNetBasicBlock(cin, cout)
            for kind, cin, cout in stage_plan(channels, cells_per_stage))
        last = channels * 4
        self.lastact = nn.Sequential(nn.BatchNorm2d(last), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.classifier(self.lastact(x).mean((2, 3)))
