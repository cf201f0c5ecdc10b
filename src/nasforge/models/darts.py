"""The DARTS network (DARTS's ``NetworkCIFAR`` for a fixed genotype), as a plain model.

A cell has 2 input nodes (the outputs of the two previous cells, each preprocessed to the
cell's width: a 1×1 ReLUConvBN, or a FactorizedReduce when the previous cell halved the
resolution) and 4 intermediate nodes; intermediate node ``i`` (state ``i + 2``) is the sum of
two ops, each on an earlier state; the cell's output is the concatenation of the intermediate
nodes (``concat``, ``[2, 3, 4, 5]``). In a reduction cell the ops that read an input node have
stride 2. A genotype is ``normal``/``reduce``: 8 ``(op, input)`` pairs each (two per node, in
node order), with ``normal_concat``/``reduce_concat``.

The network: a 3×3 conv stem to ``3·C`` channels + BN, ``L`` cells with the width doubled in
the reduction cells at ``L//3`` and ``2L//3``, global pooling, linear. For final training it
can carry DARTS's auxiliary head (after cell ``2L//3``, evaluated in train mode only:
:meth:`DartsNetwork.forward_with_aux`) and drop path on every op that is not an identity
(:attr:`DartsNetwork.drop_path_prob`, which the training loop raises over the epochs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nasforge.blocks import DropPath
from nasforge.blocks.cell_ops import DARTS_OPS, FactorizedReduce, ReLUConvBN

#: DARTS's PRIMITIVES, in its order (the α columns)
PRIMITIVES: tuple[str, ...] = tuple(DARTS_OPS)
#: intermediate nodes per cell
STEPS = 4
#: the cell output: every intermediate node
CONCAT: tuple[int, ...] = tuple(range(2, 2 + STEPS))
#: the first edge of each intermediate node (node i reads states 0 … i + 1)
EDGE_OFFSETS: tuple[int, ...] = tuple(sum(2 + t for t in range(i)) for i in range(STEPS))
#: edges of the search cell (2 + 3 + 4 + 5)
NUM_EDGES = EDGE_OFFSETS[-1] + STEPS + 1
STEM_MULTIPLIER = 3

#: one gene: (op, input state)
Gene = tuple[str, int]


def edge_index(node: int, source: int) -> int:
    """Index of the edge ``source → intermediate node`` in the search cell (node-major)."""
    return EDGE_OFFSETS[node] + source


@dataclass(frozen=True)
class CellSpec:
    """One cell's place in the network: input widths, width, whether it (or its predecessor)
    reduces, and the size ``h`` of its (preprocessed) input states."""

    c_prev_prev: int
    c_prev: int
    c: int
    reduction: bool
    reduction_prev: bool
    h: int

    def stride(self, source: int) -> int:
        return 2 if self.reduction and source < 2 else 1

    def size(self, source: int) -> int:
        """The input size of an op reading state ``source`` (a reduction cell's own nodes are
        already at half the size)."""
        return self.h // 2 if self.reduction and source >= 2 else self.h


def reduction_cells(cells: int) -> tuple[int, int]:
    return cells // 3, 2 * cells // 3


def cell_plan(cells: int, channels: int, input_size: int) -> list[CellSpec]:
    """The cells of a network of ``cells`` cells and initial width ``channels`` (the plan both
    the derived network and the supernet are built from)."""
    c_pp = c_p = STEM_MULTIPLIER * channels
    c, h, reduction_prev = channels, input_size, False
    out = []
    for i in range(cells):
        reduction = i in reduction_cells(cells)
        if reduction:
            c *= 2
        out.append(CellSpec(c_pp, c_p, c, reduction, reduction_prev, h))
        if reduction:
            h //= 2
        c_pp, c_p, reduction_prev = c_p, len(CONCAT) * c, reduction
    return out


def make_stem(in_channels: int, channels: int) -> nn.Sequential:
    c = STEM_MULTIPLIER * channels
    return nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))


def preprocess(spec: CellSpec, affine: bool = True) -> tuple[nn.Module, nn.Module]:
    p0 = (FactorizedReduce(spec.c_prev_prev, spec.c, affine) if spec.reduction_prev
          else ReLUConvBN(spec.c_prev_prev, spec.c, 1, 1, 0, affine=affine))
    return p0, ReLUConvBN(spec.c_prev, spec.c, 1, 1, 0, affine=affine)


class DartsCell(nn.Module):
    """A cell of a fixed genotype half (8 genes, two per intermediate node)."""

    def __init__(self, spec: CellSpec, genes: Sequence[Gene], concat: Sequence[int]) -> None:
        super().__init__()
        self.preprocess0, self.preprocess1 = preprocess(spec)
        self.ops = nn.ModuleList(DARTS_OPS[op](spec.c, spec.stride(j), True) for op, j in genes)
        self.indices = [int(j) for _, j in genes]
        self.concat = [int(i) for i in concat]
        self.identity = [isinstance(op, nn.Identity) for op in self.ops]
        self.drop = DropPath(0.0)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(STEPS):
            node = None
            for k in (2 * i, 2 * i + 1):
                h = self.ops[k](states[self.indices[k]])
                if not self.identity[k]:
                    h = self.drop(h)
                node = h if node is None else node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS's auxiliary classifier: ReLU → 5×5 average pool to 2×2 → 1×1 conv 128 + BN + ReLU
    → 2×2 conv 768 + BN + ReLU → linear. DARTS pools 8×8 maps with stride 3; here the stride
    is ``size − 5`` (3 at 8×8, 2 at 7×7), the kernel shrinking below 6×6, so every input size
    ends at 2×2."""

    def __init__(self, channels: int, num_classes: int, size: int) -> None:
        super().__init__()
        if size < 2:
            raise ValueError(f"the auxiliary head needs at least 2×2 inputs, got {size}×{size}")
        k = min(5, size - 1)
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(k, stride=size - k, padding=0, count_include_pad=False),
            nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """The network of one genotype (``genes``: the thawed JSON genotype)."""

    def __init__(self, genes: dict, num_classes: int, in_channels: int, cells: int,
                 channels: int, input_size: int, auxiliary: bool = False) -> None:
        super().__init__()
        plan = cell_plan(cells, channels, input_size)
        self.stem = make_stem(in_channels, channels)
        self.cells = nn.ModuleList(
            DartsCell(s, genes["reduce"] if s.reduction else genes["normal"],
                      genes["reduce_concat"] if s.reduction else genes["normal_concat"])
            for s in plan)
        self.aux_index = reduction_cells(cells)[1]
        self.auxiliary_head = None
        if auxiliary:
            aux = plan[self.aux_index]
            self.auxiliary_head = AuxiliaryHead(len(CONCAT) * aux.c, num_classes,
                                                aux.h // (2 if aux.reduction else 1))
        self.classifier = nn.Linear(len(CONCAT) * plan[-1].c, num_classes)
        self._size = {"cells": int(cells), "channels": int(channels),
                      "auxiliary": self.auxiliary_head is not None}

    def describe_network(self) -> dict:
        """The size this network was built at (``cells``, ``channels``, ``auxiliary``): what an
        ``arch.json`` beside its weights records, so the same network is rebuilt to load them."""
        return dict(self._size)

    @property
    def drop_path_prob(self) -> float:
        return self.cells[0].drop.p

    @drop_path_prob.setter
    def drop_path_prob(self, p: float) -> None:
        for cell in self.cells:
            cell.drop.p = float(p)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and, in train mode with the auxiliary head, the auxiliary logits."""
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        return self.classifier(s1.mean((2, 3))), aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(s1.mean((2, 3)))
