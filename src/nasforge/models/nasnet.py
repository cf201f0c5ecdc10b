"""The NASNet network (Zoph et al., "Learning Transferable Architectures"; METHODS §6) for a
fixed genotype, as a plain model.

A cell takes the outputs of the two previous cells (hidden states 0 = ``h_{i-2}`` and 1 =
``h_{i-1}``, each brought to the cell's width by DARTS's preprocessing: a 1×1 ReLU-Conv-BN, or a
FactorizedReduce when the previous cell halved the resolution) and has ``B`` = 5 blocks. Block
``b`` (hidden state ``b + 2``) applies one op to each of two hidden states it picked — the cell
inputs or earlier blocks, possibly the same one twice — and adds the results. The cell output
concatenates every block output no block of the cell reads (NASNet: "all unused hidden states
generated in the cell"), so a cell's width is its number of unused blocks times its ``C``. In
a reduction cell the ops that read a cell input have stride 2.

The network (NASNet's CIFAR design): a 3×3 conv stem to ``3·C`` channels + BN (DARTS's stem),
then ``N`` normal cells, a reduction cell (width doubled), ``N`` normal cells, a reduction
cell, ``N`` normal cells; global average pooling; linear.

What is not computed: a cell input no block reads gets no preprocessing, and a cell whose output
no later cell reads (both following cells ignore that input) is not built — neither changes the
network's function, and every parameter the model has reaches its output.

The 13 ops (NASNet's list) are built from :mod:`nasforge.blocks.cell_ops`, as DARTS defines
them (``SepConv`` is the ReLU-sep-BN unit applied twice, ``DilConv`` the dilated one), plus
the factorised ``1×k then k×1`` conv and the 5×5 / 7×7 max pools that DARTS does not have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from nasforge.blocks.cell_ops import (
    DARTS_OPS,
    DilConv,
    ReLUConvBN,
    SepConv,
    avg_pool_3x3,
    max_pool_3x3,
)
from nasforge.models.darts import STEM_MULTIPLIER, CellSpec, make_stem, preprocess

#: blocks per cell (NASNet's B)
BLOCKS = 5
#: the two cell types, in genotype order
CELLS: tuple[str, str] = ("normal", "reduce")

#: one block: (input a, input b, op a, op b)
Block = tuple[int, int, str, str]


class FactorizedConv(nn.Sequential):
    """ReLU → 1×k conv → k×1 conv → BN (NASNet's "1×k then k×1 conv"; stride split over the
    two convs as DARTS's ``conv_7x1_1x7``)."""

    def __init__(self, c: int, k: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, (1, k), stride=(1, stride), padding=(0, k // 2), bias=False),
            nn.Conv2d(c, c, (k, 1), stride=(stride, 1), padding=(k // 2, 0), bias=False),
            nn.BatchNorm2d(c))


def _max_pool(k: int) -> Callable[[int, int], nn.Module]:
    return lambda c, stride: nn.MaxPool2d(k, stride=stride, padding=k // 2)


#: NASNet's 13 ops, op of ``C`` channels at ``stride`` (the paper's order)
NASNET_OPS: dict[str, Callable[[int, int], nn.Module]] = {
    "identity": lambda c, stride: DARTS_OPS["skip_connect"](c, stride, True),
    "conv_1x3_3x1": lambda c, stride: FactorizedConv(c, 3, stride),
    "conv_1x7_7x1": lambda c, stride: FactorizedConv(c, 7, stride),
    "dil_conv_3x3": lambda c, stride: DilConv(c, c, 3, stride, 2, 2),
    "avg_pool_3x3": lambda c, stride: avg_pool_3x3(stride),
    "max_pool_3x3": lambda c, stride: max_pool_3x3(stride),
    "max_pool_5x5": _max_pool(5),
    "max_pool_7x7": _max_pool(7),
    "conv_1x1": lambda c, stride: ReLUConvBN(c, c, 1, stride, 0),
    "conv_3x3": lambda c, stride: ReLUConvBN(c, c, 3, stride, 1),
    "sep_conv_3x3": lambda c, stride: SepConv(c, c, 3, stride, 1),
    "sep_conv_5x5": lambda c, stride: SepConv(c, c, 5, stride, 2),
    "sep_conv_7x7": lambda c, stride: SepConv(c, c, 7, stride, 3),
}
OPS: tuple[str, ...] = tuple(NASNET_OPS)


def unused(blocks: Sequence[Block]) -> list[int]:
    """The hidden states of the blocks that no block of the cell reads: the cell output."""
    read = {int(s) for b in blocks for s in b[:2]}
    return [b + 2 for b in range(len(blocks)) if b + 2 not in read]


def reads(blocks: Sequence[Block], state: int) -> bool:
    return any(int(s) == state for b in blocks for s in b[:2])


def cell_kinds(cells_per_stage: int) -> list[str]:
    """``N`` normal, reduce, ``N`` normal, reduce, ``N`` normal."""
    return (["normal"] * cells_per_stage + ["reduce"]) * 2 + ["normal"] * cells_per_stage


def cell_plan(genes: dict, cells_per_stage: int, channels: int,
              input_size: int) -> list[CellSpec]:
    """Each cell's input widths, width and input size (cell widths follow the genotype: a
    cell outputs its unused blocks)."""
    mult = {k: len(unused(genes[k])) for k in CELLS}
    c_pp = c_p = STEM_MULTIPLIER * channels
    c, h, reduction_prev = channels, input_size, False
    out = []
    for kind in cell_kinds(cells_per_stage):
        reduction = kind == "reduce"
        if reduction:
            c *= 2
        out.append(CellSpec(c_pp, c_p, c, reduction, reduction_prev, h))
        if reduction:
            h //= 2
        c_pp, c_p, reduction_prev = c_p, mult[kind] * c, reduction
    return out


def live_cells(genes: dict, cells_per_stage: int) -> list[bool]:
    """Whether each cell's output reaches the classifier (the last cell's does; an earlier one
    when the next cell reads state 1 or the one after reads state 0, and that cell is live)."""
    kinds = cell_kinds(cells_per_stage)
    live = [False] * len(kinds)
    live[-1] = True
    for i in range(len(kinds) - 2, -1, -1):
        nxt = i + 1 < len(kinds) and live[i + 1] and reads(genes[kinds[i + 1]], 1)
        after = i + 2 < len(kinds) and live[i + 2] and reads(genes[kinds[i + 2]], 0)
        live[i] = nxt or after
    return live


class NASNetCell(nn.Module):
    """A cell of one genotype half (5 blocks)."""

    def __init__(self, spec: CellSpec, blocks: Sequence[Block]) -> None:
        super().__init__()
        p0, p1 = preprocess(spec)
        self.preprocess0 = p0 if reads(blocks, 0) else None
        self.preprocess1 = p1 if reads(blocks, 1) else None
        self.inputs = [(int(a), int(b)) for a, b, _, _ in blocks]
        self.ops = nn.ModuleList()
        for a, b, op_a, op_b in blocks:
            self.ops.append(NASNET_OPS[op_a](spec.c, spec.stride(int(a))))
            self.ops.append(NASNET_OPS[op_b](spec.c, spec.stride(int(b))))
        self.concat = unused(blocks)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states: list[torch.Tensor | None] = [
            self.preprocess0(s0) if self.preprocess0 is not None else None,
            self.preprocess1(s1) if self.preprocess1 is not None else None]
        for k, (a, b) in enumerate(self.inputs):
            states.append(self.ops[2 * k](states[a]) + self.ops[2 * k + 1](states[b]))
        return torch.cat([states[i] for i in self.concat], dim=1)


class _Unused(nn.Module):
    """Stands where a cell whose output no later cell reads would be (its value is never
    used; it passes ``s1`` on so the network's loop stays one loop)."""

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        return s1


class NASNetNetwork(nn.Module):
    """The network of one genotype (``genes``: ``{"normal": [blocks], "reduce": [blocks]}``,
    each block ``(input a, input b, op a, op b)``)."""

    def __init__(self, genes: dict, num_classes: int, in_channels: int, cells_per_stage: int,
                 channels: int, input_size: int) -> None:
        super().__init__()
        plan = cell_plan(genes, cells_per_stage, channels, input_size)
        live = live_cells(genes, cells_per_stage)
        self.stem = make_stem(in_channels, channels)
        self.cells = nn.ModuleList(
            NASNetCell(s, genes["reduce" if s.reduction else "normal"]) if ok else _Unused()
            for s, ok in zip(plan, live))
        last = plan[-1]
        self.classifier = nn.Linear(len(unused(genes["normal"])) * last.c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(s1.mean((2, 3)))
