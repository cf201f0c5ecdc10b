"""The DARTS cell space (METHODS §6, issue 12): a normal and a reduction cell, each with 2 input
nodes and 4 intermediate nodes; every intermediate node takes exactly two earlier states, each
through one of DARTS's ops (``none`` is a search-only candidate: a genotype keeps two real
inputs per node). The network is :mod:`nasforge.models.darts`.

Genes are DARTS's genotype as JSON::

    {"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], …8 pairs],
     "normal_concat": [2, 3, 4, 5],
     "reduce": [["max_pool_3x3", 0], …8 pairs], "reduce_concat": [2, 3, 4, 5]}

(two ``[op, input]`` pairs per intermediate node, in node order; node ``i`` reads states
``0 … i + 1``, where 0 and 1 are the cell inputs). Spaces per input size: ``darts-fmnist`` (28²,
1 channel) and ``darts-cifar`` (32², 3 channels), both searched with DARTS's 8 cells of initial
width 16 and trained as DARTS's final network, 20 cells of 36 with the auxiliary head (loss
weight 0.4) and drop path 0.2 (``darts-small``: the short-budget sizes).

Every ``Arch`` the space makes carries both sizes in ``meta["networks"]`` (``{"input_size",
"search": {"cells", "channels"}, "final": {"cells", "channels", "aux_weight", "drop_path"}}``),
so its JSON rebuilds either network (``network``) even if the registry's defaults change; an
arch written beside trained weights also carries ``meta["network"]`` (the sizes those weights
are of: :func:`nasforge.methods.finish.trained_arch`), which ``build`` honours, so ``nasforge
export`` of a DARTS run rebuilds the final network. ``build`` without it is the search-sized
network (what a supernet's weights transfer to). An arch without meta (a hand-written
genotype) gets the space's registered sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb
from typing import Any

import numpy as np
from torch import nn

from nasforge.arch import Arch, thaw
from nasforge.blocks.cell_ops import DARTS_OPS, FactorizedReduce, ReLUConvBN
from nasforge.cost.lut import LutItem, LutKey
from nasforge.errors import UserError
from nasforge.models.darts import (
    CONCAT,
    NUM_EDGES,
    PRIMITIVES,
    STEPS,
    DartsNetwork,
    Gene,
    cell_plan,
    edge_index,
    make_stem,
)
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace

#: the ops a genotype may use (every candidate but ``none``)
CHOICES: tuple[str, ...] = tuple(p for p in PRIMITIVES if p != "none")
CELLS: tuple[str, str] = ("normal", "reduce")
KEYS = ("normal", "normal_concat", "reduce", "reduce_concat")


@dataclass(frozen=True)
class DartsConfig:
    name: str
    input_size: int
    in_channels: int
    num_classes: int = 10
    cells: int = 8  # the search network (DARTS: 8 cells …
    channels: int = 16  # … of initial width 16)
    final_cells: int = 20  # the final-training network (DARTS CIFAR-10: 20 cells, C = 36)
    final_channels: int = 36
    auxiliary: bool = True  # final training: auxiliary head (DARTS: weight 0.4)
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2  # final training: drop path, raised linearly to this

    def __post_init__(self) -> None:
        if self.cells < 3 or self.final_cells < 3:
            raise UserError(f"DARTS space {self.name!r}: cells and final_cells must be ≥ 3 "
                            "(reductions at 1/3 and 2/3 of the depth)")
        if self.channels < 1 or self.final_channels < 1:
            raise UserError(f"DARTS space {self.name!r}: channels must be ≥ 1")
        if self.input_size < 8 or self.input_size % 4:
            raise UserError(f"DARTS space {self.name!r}: input_size must be a multiple of 4 and "
                            f"≥ 8 (two stride-2 reduction cells), got {self.input_size}")


@dataclass(frozen=True)
class CellCostLayout:
    """Every cost item of a cell space's networks: ``fixed``, the parts every network has
    (stem, preprocessing, reduction blocks, head), and per cell ``(cell type, items[edge][op])``
    over every candidate of every edge. The LUT measures :meth:`items`; an architecture costs
    the sum over :meth:`keys`; the supernet's expected cost weighs ``cells`` by its α."""

    fixed: list[LutItem]
    cells: list[tuple[int, list[list[LutItem]]]]

    def items(self) -> list[LutItem]:
        out = {str(i.key): i for i in self.fixed}
        for _, edges in self.cells:
            for row in edges:
                out.update((str(i.key), i) for i in row)
        return list(out.values())

    def keys(self, chosen: Sequence[Sequence[tuple[int, int]]]) -> list[LutKey]:
        """The keys of one architecture: ``chosen[t]`` lists the ``(edge, op index)`` pairs
        every cell of type ``t`` uses."""
        keys = [i.key for i in self.fixed]
        for t, edges in self.cells:
            keys += [edges[e][o].key for e, o in chosen[t]]
        return keys


CONFIGS: Registry[DartsConfig] = Registry("DARTS space")
# 28×28 (Fashion-MNIST, digits): the paper's search and final sizes (a small-data final
# training overrides them: ``nasforge train ARCH --cells 8 --channels 16``)
CONFIGS.register("darts-fmnist", DartsConfig("darts-fmnist", 28, 1))
# 32×32 (CIFAR-10): the paper's search and final sizes
CONFIGS.register("darts-cifar", DartsConfig("darts-cifar", 32, 3))
# 28×28 under a short --budget (methods/darts.py): 5 cells searched at width 4, trained at
# width 8, no auxiliary head or drop path (docs/darts.md)
CONFIGS.register("darts-small", DartsConfig("darts-small", 28, 1, cells=5, channels=4,
                                            final_cells=5, final_channels=8, auxiliary=False,
                                            drop_path_prob=0.0))


def _gene(row: object, cell: str, k: int) -> Gene:
    where = f"genotype {cell}[{k}]"
    if not isinstance(row, (list, tuple)) or len(row) != 2:
        raise UserError(f"{where}: expected an [op, input] pair, got {row!r}")
    op, j = row
    if op == "none":
        raise UserError(f"{where}: 'none' is a search-only candidate; a DARTS genotype keeps "
                        "two real inputs per node (derive() drops 'none')")
    if not isinstance(op, str) or op not in CHOICES:
        raise UserError(f"{where}: unknown op {op!r}; choose from {list(CHOICES)}")
    node = k // 2
    if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < node + 2:
        raise UserError(f"{where}: input {j!r} must be an earlier state of intermediate node "
                        f"{node} (an integer in 0 … {node + 1}; 0 and 1 are the cell inputs)")
    return op, j


def parse_genotype(genes: object) -> dict[str, Any]:
    """Validate genotype JSON; returns ``{"normal": [(op, j)×8], "normal_concat": [...], …}``.

    Raises a UserError naming the first broken rule."""
    if not isinstance(genes, dict):
        raise UserError("a DARTS genotype is an object with keys "
                        f"{list(KEYS)}, got {type(genes).__name__}")
    if set(genes) != set(KEYS):
        missing, extra = sorted(set(KEYS) - set(genes)), sorted(set(genes) - set(KEYS))
        raise UserError(f"DARTS genotype keys must be {list(KEYS)} (missing {missing}, "
                        f"unknown {extra})")
    out: dict[str, Any] = {}
    for cell in CELLS:
        rows = genes[cell]
        if not isinstance(rows, (list, tuple)) or len(rows) != 2 * STEPS:
            raise UserError(f"genotype {cell}: expected {2 * STEPS} [op, input] pairs (two per "
                            f"intermediate node), got {rows!r}")
        g = [_gene(r, cell, k) for k, r in enumerate(rows)]
        for i in range(STEPS):
            if g[2 * i][1] == g[2 * i + 1][1]:
                raise UserError(f"genotype {cell}: intermediate node {i} reads state "
                                f"{g[2 * i][1]} twice; its two inputs must differ")
        concat = genes[f"{cell}_concat"]
        if not isinstance(concat, (list, tuple)) or list(concat) != list(CONCAT):
            raise UserError(f"genotype {cell}_concat must be {list(CONCAT)} (the cell output "
                            f"concatenates every intermediate node), got {concat!r}")
        out[cell] = g
        out[f"{cell}_concat"] = list(CONCAT)
    return out


def derive_genotype(weights: Sequence[np.ndarray]) -> dict[str, Any]:
    """DARTS's derivation from per-edge op weights (``weights[c]``: 14 × 8 for the normal and
    the reduction cell): per node keep the two inputs whose strongest non-``none`` op weighs
    most, each with that op (ties: the earlier input, the earlier op — as DARTS's sort)."""
    none = PRIMITIVES.index("none")
    genes: dict[str, Any] = {}
    for cell, w in zip(CELLS, weights):
        w = np.asarray(w, dtype=np.float64)
        if w.shape != (NUM_EDGES, len(PRIMITIVES)):
            raise UserError(f"DARTS weights of the {cell} cell have shape {w.shape}, expected "
                            f"{(NUM_EDGES, len(PRIMITIVES))}")
        real = np.delete(w, none, axis=1)
        g: list[list] = []
        for i in range(STEPS):
            rows = real[edge_index(i, 0):edge_index(i, 0) + i + 2]
            best = sorted(range(i + 2), key=lambda j: -rows[j].max())[:2]
            g += [[CHOICES[int(rows[j].argmax())], j] for j in best]
        genes[cell] = g
        genes[f"{cell}_concat"] = list(CONCAT)
    return genes


class DartsSpace(SearchSpace):
    """A DARTS normal + reduction cell; ``build`` gives the search-sized network."""

    ops: tuple[str, ...] = PRIMITIVES
    choices: tuple[str, ...] = CHOICES

    def __init__(self, config: str | DartsConfig = "darts-cifar") -> None:
        self.cfg = CONFIGS.get(config) if isinstance(config, str) else config
        self.name = self.cfg.name
        self.input_size = self.cfg.input_size
        self.default_io = (self.cfg.in_channels, self.cfg.num_classes)

    # -- genotype -----------------------------------------------------------------------------
    def genotype(self, arch: Arch) -> dict[str, Any]:
        """The validated genotype of ``arch`` (plain lists and ``(op, input)`` tuples)."""
        self.check_space(arch)
        return parse_genotype(thaw(arch.genes))

    def arch(self, genes: dict[str, Any]) -> Arch:
        a = Arch(self.name, {k: ([list(g) for g in v] if k in CELLS else list(v))
                             for k, v in genes.items()}, meta={"networks": self.networks()})
        self.validate(a)
        return a

    # -- the two networks ---------------------------------------------------------------------
    def networks(self) -> dict[str, Any]:
        """The search- and the final-network sizes (what ``meta["networks"]`` records)."""
        c = self.cfg
        return {"input_size": c.input_size,
                "search": {"cells": c.cells, "channels": c.channels},
                "final": {"cells": c.final_cells, "channels": c.final_channels,
                          "aux_weight": c.auxiliary_weight if c.auxiliary else 0.0,
                          "drop_path": c.drop_path_prob}}

    def sizes(self, arch: Arch, which: str) -> dict[str, Any]:
        """``which`` (``search``/``final``) network of ``arch``: its ``meta["networks"]``
        entry, or the space's own for an arch without one (checked: a UserError names a bad
        field)."""
        if which not in ("search", "final"):
            raise UserError(f"network must be 'search' or 'final', got {which!r}")
        own = self.networks()
        meta = arch.meta.get("networks") if isinstance(arch.meta, dict) else None
        if meta is None:
            return dict(own[which])
        where = f"arch meta.networks of space {self.name!r}"
        if not isinstance(meta, dict) or not isinstance(meta.get(which), dict):
            raise UserError(f"{where}: expected an object with a {which!r} object, got "
                            f"{meta!r}; drop 'meta' to use the space's sizes")
        if meta.get("input_size", self.input_size) != self.input_size:
            raise UserError(f"{where}: input_size {meta.get('input_size')!r} is not the "
                            f"space's {self.input_size}")
        out = {**own[which], **meta[which]}
        _check_size(out, where + f".{which}")
        return out

    def network(self, arch: Arch, num_classes: int, in_channels: int, which: str = "final", *,
                cells: int | None = None, channels: int | None = None) -> DartsNetwork:
        """The ``which`` network of ``arch`` (``final``: with the auxiliary head when its
        ``aux_weight`` > 0), ``cells``/``channels`` overriding its depth and width (small data:
        a final network smaller than DARTS's 20 × 36)."""
        size = self.sizes(arch, which)
        size.update({k: v for k, v in (("cells", cells), ("channels", channels))
                     if v is not None})
        _check_size(size, "network size")
        return DartsNetwork(self.genotype(arch), num_classes, in_channels, size["cells"],
                            size["channels"], self.input_size,
                            auxiliary=which == "final" and size.get("aux_weight", 0.0) > 0)

    def final_recipe(self, arch: Arch) -> dict[str, float]:
        """The final training's DARTS recipe fields of ``arch`` (auxiliary loss weight, drop
        path), for :class:`~nasforge.train.trainer.Recipe`."""
        f = self.sizes(arch, "final")
        return {"aux_weight": float(f["aux_weight"]), "drop_path": float(f["drop_path"])}

    def decode(self, code: dict[str, Any] | Sequence[float] | np.ndarray) -> Arch:
        """An ``Arch`` from genotype JSON or from an :meth:`encode` vector (read by the
        derivation rule: per node the two edges with the largest entries)."""
        if isinstance(code, dict):
            return self.arch(parse_genotype(code))
        v = np.asarray(code, dtype=np.float64)
        n = len(CELLS) * NUM_EDGES * len(PRIMITIVES)
        if v.shape != (n,):
            raise UserError(f"an encoded DARTS genotype has {n} values, got shape {v.shape}")
        return self.arch(derive_genotype(v.reshape(len(CELLS), NUM_EDGES, len(PRIMITIVES))))

    # -- SearchSpace --------------------------------------------------------------------------
    def validate(self, arch: Arch) -> None:
        self.genotype(arch)

    def sample(self, rng: np.random.Generator) -> Arch:
        genes: dict[str, Any] = {}
        for cell in CELLS:
            g = []
            for i in range(STEPS):
                for j in sorted(int(j) for j in rng.choice(i + 2, 2, replace=False)):
                    g.append([CHOICES[int(rng.integers(len(CHOICES)))], j])
            genes[cell] = g
            genes[f"{cell}_concat"] = list(CONCAT)
        return self.arch(genes)

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """Change one op, or one input of one node (to a state the node does not read yet)."""
        genes = self.genotype(arch)
        cell = CELLS[int(rng.integers(2))]
        k = int(rng.integers(2 * STEPS))
        node, (op, j) = k // 2, genes[cell][k]
        other = genes[cell][k ^ 1][1]
        free = [s for s in range(node + 2) if s not in (j, other)]
        if free and rng.random() < 0.5:
            genes[cell][k] = (op, free[int(rng.integers(len(free)))])
        else:
            ops = [o for o in CHOICES if o != op]
            genes[cell][k] = (ops[int(rng.integers(len(ops)))], j)
        return self.arch(genes)

    def encode(self, arch: Arch) -> np.ndarray:
        """One-hot op per (cell, edge) over DARTS's 8 candidates (2 × 14 × 8; edges a genotype
        does not use are zero) — the layout of the supernet's α."""
        return self.one_hot(arch).ravel()

    def one_hot(self, arch: Arch) -> np.ndarray:
        genes = self.genotype(arch)
        v = np.zeros((len(CELLS), NUM_EDGES, len(PRIMITIVES)), dtype=np.float32)
        for c, cell in enumerate(CELLS):
            for k, (op, j) in enumerate(genes[cell]):
                v[c, edge_index(k // 2, j), PRIMITIVES.index(op)] = 1.0
        return v

    def build(self, arch: Arch, num_classes: int, in_channels: int) -> DartsNetwork:
        """The network ``arch``'s weights are of when ``meta["network"]`` says
        (:func:`~nasforge.methods.finish.trained_arch`), else the search-sized one (no
        auxiliary head: what a supernet's weights transfer to)."""
        trained = arch.meta.get("network") if isinstance(arch.meta, dict) else None
        if trained is None:
            return self.network(arch, num_classes, in_channels, "search")
        where = f"arch meta.network of space {self.name!r}"
        if not isinstance(trained, dict):
            raise UserError(f"{where}: expected {{cells, channels, auxiliary}}, got "
                            f"{trained!r}")
        _check_size(trained, where)
        return DartsNetwork(self.genotype(arch), num_classes, in_channels, trained["cells"],
                            trained["channels"], self.input_size,
                            auxiliary=bool(trained.get("auxiliary", False)))

    def build_final(self, arch: Arch, num_classes: int, in_channels: int, *,
                    cells: int | None = None, channels: int | None = None) -> DartsNetwork:
        """The final-training network (``arch``'s final depth and width, the auxiliary head
        if its weight is > 0; drop path starts at 0 — the training loop raises it)."""
        return self.network(arch, num_classes, in_channels, "final", cells=cells,
                            channels=channels)

    def cardinality(self) -> int:
        """(Π_i C(i + 2, 2) · 7²)² over the 4 nodes: ≈ 1.1·10¹⁸ (DARTS: "≈ 10¹⁸")."""
        per_cell = 1
        for i in range(STEPS):
            per_cell *= comb(i + 2, 2) * len(CHOICES) ** 2
        return per_cell ** 2

    # -- cost items ---------------------------------------------------------------------------
    def cost_layout(self, num_classes: int, in_channels: int) -> CellCostLayout:
        """Stem, each cell's preprocessing and the head (fixed), and per cell (0 normal,
        1 reduce) all 14 edges × 8 candidates."""
        c0, h0 = self.cfg.channels, self.input_size
        plan = cell_plan(self.cfg.cells, c0, h0)
        fixed = [LutItem(LutKey("stem", in_channels, 3 * c0, h0, h0, 1),
                         lambda: make_stem(in_channels, c0), (in_channels, h0, h0))]
        cells: list[tuple[int, list[list[LutItem]]]] = []
        for s in plan:
            if s.reduction_prev:
                fixed.append(LutItem(
                    LutKey("factorized_reduce", s.c_prev_prev, s.c, 2 * s.h, 2 * s.h, 2),
                    lambda s=s: FactorizedReduce(s.c_prev_prev, s.c),
                    (s.c_prev_prev, 2 * s.h, 2 * s.h)))
            else:
                fixed.append(_conv1x1_item(s.c_prev_prev, s.c, s.h))
            fixed.append(_conv1x1_item(s.c_prev, s.c, s.h))
            edges = []
            for i in range(STEPS):
                for j in range(i + 2):
                    st, h = s.stride(j), s.size(j)
                    edges.append([LutItem(LutKey(op, s.c, s.c, h, h, st),
                                          lambda op=op, c=s.c, st=st: DARTS_OPS[op](c, st, True),
                                          (s.c, h, h)) for op in PRIMITIVES])
            cells.append((int(s.reduction), edges))
        last = plan[-1]
        cl, hl = len(CONCAT) * last.c, last.h // (2 if last.reduction else 1)
        fixed.append(LutItem(LutKey("head", cl, num_classes, hl, hl, 1),
                             lambda: _Head(cl, num_classes), (cl, hl, hl)))
        return CellCostLayout(fixed, cells)

    def lut_items(self, num_classes: int, in_channels: int) -> list[LutItem]:
        return self.cost_layout(num_classes, in_channels).items()

    def lut_keys(self, arch: Arch, num_classes: int, in_channels: int) -> list[LutKey]:
        genes = self.genotype(arch)
        return self.cost_layout(num_classes, in_channels).keys(
            [[(edge_index(k // 2, j), PRIMITIVES.index(op)) for k, (op, j) in
              enumerate(genes[cell])] for cell in CELLS])


def _check_size(size: dict[str, Any], where: str) -> None:
    for k, least in (("cells", 3), ("channels", 1)):
        v = size.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < least:
            why = " (reductions at 1/3 and 2/3 of the depth)" if k == "cells" else ""
            raise UserError(f"{where}: {k} must be an integer ≥ {least}{why}, got {v!r}")


def _conv1x1_item(cin: int, cout: int, h: int) -> LutItem:
    return LutItem(LutKey("relu_conv_bn_1x1", cin, cout, h, h, 1),
                   lambda: ReLUConvBN(cin, cout, 1, 1, 0), (cin, h, h))


class _Head(nn.Sequential):
    """Global pooling + linear: the network's head as one measurable item."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))


def register_spaces(register) -> None:  # noqa: ANN001 - the registry's register
    for n in CONFIGS.names():
        register(n, lambda n=n: DartsSpace(n))
