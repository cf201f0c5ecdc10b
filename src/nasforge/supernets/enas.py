"""ENAS's shared weights (Pham et al., ICML 2018; METHODS §6): one set of parameters for every
architecture of a cell space, run one architecture at a time.

The networks are the DARTS supernets' (:mod:`nasforge.supernets.darts`): every edge holds one
module per candidate op, so an architecture's op on an edge is always the *same* module, in
every architecture that picks it. ENAS differs only in the forward: a single path, where only
the chosen op of each chosen edge runs (``forward_arch``), instead of the softmax mixture of
all of them. The α tensors of the DARTS relaxation are there but unused (ENAS has no
continuous architecture parameters; its policy is the controller,
:mod:`nasforge.strategies.enas_controller`).

Unlike DARTS's search cells, the BNs are affine (ENAS's child BNs are ordinary ones): an
extracted architecture (``extract``) then inherits every tensor of the shared weights, which
is what lets the final training start from them (``nasforge search enas --final-init shared``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nasforge.arch import Arch
from nasforge.models import darts as dm
from nasforge.models import nb201 as nm
from nasforge.spaces.darts import CELLS, DartsSpace
from nasforge.spaces.nb201 import NB201Space
from nasforge.supernets.darts import DartsSupernet, NB201Supernet

#: a darts path: per cell type (normal, reduce), per edge of the genotype, (edge index, op
#: index) in the supernet's 14 × 8 layout
DartsPath = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]
#: an nb201 path: the op index of each of the 6 edges
NB201Path = tuple[int, ...]


def candidate(edge: nn.Module, op: int) -> nn.Module:
    """The shared module of candidate ``op`` on a supernet edge (the one place that knows how
    the DARTS supernet stores them)."""
    return edge.blocks[op]


class SharedDarts(DartsSupernet):
    """The ``darts`` space's shared weights: DARTS's 8-op search network, single path."""

    def __init__(self, space: DartsSpace, num_classes: int, in_channels: int) -> None:
        super().__init__(space, num_classes, in_channels, affine=True)

    def path(self, arch: Arch) -> DartsPath:
        """``arch`` as the (edge, op) pairs each cell type runs."""
        genes = self.space.genotype(arch)
        return tuple(tuple((dm.edge_index(k // 2, j), dm.PRIMITIVES.index(op))
                           for k, (op, j) in enumerate(genes[c])) for c in CELLS)

    def _cell(self, cell: nn.Module, s0: torch.Tensor, s1: torch.Tensor,
              pairs: tuple[tuple[int, int], ...]) -> torch.Tensor:
        states = [cell.preprocess0(s0), cell.preprocess1(s1)]
        for i in range(dm.STEPS):
            node = None
            for e, o in pairs[2 * i:2 * i + 2]:
                h = candidate(cell.edges[e], o)(states[e - dm.EDGE_OFFSETS[i]])
                node = h if node is None else node + h
            states.append(node)
        return torch.cat(states[2:], dim=1)

    def forward_arch(self, x: torch.Tensor, path: DartsPath) -> torch.Tensor:
        """The logits of the architecture ``path`` (only its ops run)."""
        normal, reduce = path
        s0 = s1 = self.stem(x)
        for cell, red in zip(self.cells, self.reduction):
            s0, s1 = s1, self._cell(cell, s0, s1, reduce if red else normal)
        return self.classifier(s1.mean((2, 3)))


class SharedNB201(NB201Supernet):
    """The ``nb201`` space's shared weights: the benchmark's network, one op per edge.
    ``none`` edges are skipped (they add zeros); a node all of whose edges are ``none`` is
    zero, as in the benchmark."""

    def __init__(self, space: NB201Space, num_classes: int, in_channels: int) -> None:
        super().__init__(space, num_classes, in_channels, affine=True)
        self._none = nm.OPS.index("none")

    def path(self, arch: Arch) -> NB201Path:
        return tuple(nm.OPS.index(o) for o in self.space.cell(arch))

    def _cell(self, cell: nn.Module, x: torch.Tensor, ops: NB201Path) -> torch.Tensor:
        nodes = [x]
        for i in range(1, 4):
            s = None
            for j in range(i):
                k = nm.EDGES.index((i, j))
                if ops[k] == self._none:
                    continue
                h = candidate(cell.edges[k], ops[k])(nodes[j])
                s = h if s is None else s + h
            nodes.append(torch.zeros_like(x) if s is None else s)
        return nodes[3]

    def forward_arch(self, x: torch.Tensor, path: NB201Path) -> torch.Tensor:
        x = self.stem(x)
        for cell, searched in zip(self.cells, self.searched):
            x = self._cell(cell, x, path) if searched else cell(x)
        return self.classifier(self.lastact(x).mean((2, 3)))


SharedNet = SharedDarts | SharedNB201


def shared_for(space: Any, num_classes: int, in_channels: int) -> SharedNet:
    """The shared weights of ``space`` (a :class:`DartsSpace` or an :class:`NB201Space`)."""
    if isinstance(space, DartsSpace):
        return SharedDarts(space, num_classes, in_channels)
    if isinstance(space, NB201Space):
        return SharedNB201(space, num_classes, in_channels)
    raise TypeError(f"ENAS shares weights over the darts and nb201 cell spaces, not {space!r}")


def inherit(model: nn.Module, source: nn.Module) -> list[str]:
    """Copy into ``model`` every tensor of ``source`` with the same name and shape; returns the
    names of ``model``'s tensors left as they were (e.g. an auxiliary head the search network
    does not have)."""
    src = source.state_dict()
    state = model.state_dict()
    kept = []
    for k, v in state.items():
        if k in src and src[k].shape == v.shape:
            state[k] = src[k]
        else:
            kept.append(k)
    model.load_state_dict(state)
    return kept


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> None:
    """Give ``model``'s BNs its own running statistics: reset, then the exact average over
    ``x`` in batches (train-mode forwards). A model extracted from shared weights needs it: the
    shared running statistics mix every sampled architecture — on nb201 an all-skip cell sums
    its input 4× per cell, 5 cells a stage, so one such child sets the last BN's running
    variance to ~1e13 and an inherited network evaluated with it is at chance."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    old = [m.momentum for m in bns]
    was = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        for m, mo in zip(bns, old):
            m.momentum = mo
        model.train(was)
