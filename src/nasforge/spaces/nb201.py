"""The NAS-Bench-201 cell space (issue 12): one cell of 4 nodes and 6 edges, each edge one of
``none``, ``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3``, ``avg_pool_3x3`` (5⁶ = 15,625
cells), stacked into the benchmark's network (:mod:`nasforge.models.nb201`).

An architecture's genes *are* the benchmark's own string, e.g.
``|nor_conv_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|nor_conv_3x3~1|avg_pool_3x3~2|``
(``op~input`` per edge, nodes separated by ``+``), so a found cell can be looked up in the
published tables as it is. :meth:`NB201Space.decode` reads that string (or an
:meth:`~NB201Space.encode` vector) into an ``Arch``; :func:`to_string` writes it.

Spaces per input size (``nb201-fmnist``: 28², 1 channel; ``nb201-cifar``: 32², 3 channels);
the benchmark's network width (C = 16) and cells per stage (N = 5) are space parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from nasforge.arch import Arch
from nasforge.blocks.cell_ops import NB201_OPS
from nasforge.cost.lut import LutItem, LutKey
from nasforge.errors import UserError
from nasforge.models.nb201 import EDGES, OPS, NB201Network, ResNetBasicBlock, make_stem, stage_plan
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace
from nasforge.spaces.darts import CellCostLayout
from nasforge.spaces.decisions import DecisionSequence

FORMAT = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2| with op one of " + ", ".join(OPS)


def to_string(ops: Sequence[str]) -> str:
    """The benchmark's string of the 6 edge ops (in :data:`EDGES` order)."""
    nodes, k = [], 0
    for i in range(1, 4):
        nodes.append("|" + "|".join(f"{ops[k + j]}~{j}" for j in range(i)) + "|")
        k += i
    return "+".join(nodes)


def parse_string(text: object) -> tuple[str, ...]:
    """The 6 edge ops of a benchmark string; a UserError names what is wrong."""
    if not isinstance(text, str):
        raise UserError(f"a NAS-Bench-201 cell is the benchmark's string ({FORMAT}), got "
                        f"{type(text).__name__}")
    nodes = text.split("+")
    if len(nodes) != 3:
        raise UserError(f"NAS-Bench-201 cell {text!r}: expected 3 nodes separated by '+' "
                        f"({FORMAT})")
    ops: list[str] = []
    for i, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")) or len(node) < 2:
            raise UserError(f"NAS-Bench-201 cell {text!r}: node {i} {node!r} must be written "
                            f"|op~0|…| ({FORMAT})")
        edges = node[1:-1].split("|")
        if len(edges) != i:
            raise UserError(f"NAS-Bench-201 cell {text!r}: node {i} takes {i} input(s), "
                            f"{len(edges)} given")
        for j, edge in enumerate(edges):
            op, sep, src = edge.partition("~")
            if not sep or src != str(j):
                raise UserError(f"NAS-Bench-201 cell {text!r}: edge {edge!r} of node {i} must "
                                f"read op~{j}")
            if op not in OPS:
                raise UserError(f"NAS-Bench-201 cell {text!r}: unknown op {op!r}; choose from "
                                f"{list(OPS)}")
            ops.append(op)
    return tuple(ops)


@dataclass(frozen=True)
class NB201Config:
    name: str
    input_size: int
    in_channels: int
    num_classes: int = 10
    channels: int = 16  # C: the first stage's width (the benchmark's 16)
    cells_per_stage: int = 5  # N (the benchmark's 5)

    def __post_init__(self) -> None:
        if self.channels < 1 or self.cells_per_stage < 1:
            raise UserError(f"NAS-Bench-201 space {self.name!r}: channels and cells_per_stage "
                            "must be ≥ 1")
        if self.input_size < 4 or self.input_size % 4:
            raise UserError(f"NAS-Bench-201 space {self.name!r}: input_size must be a multiple "
                            f"of 4 (two stride-2 reduction blocks), got {self.input_size}")


CONFIGS: Registry[NB201Config] = Registry("NAS-Bench-201 space")
CONFIGS.register("nb201-fmnist", NB201Config("nb201-fmnist", 28, 1))
CONFIGS.register("nb201-cifar", NB201Config("nb201-cifar", 32, 3))
# 28×28 under a short --budget (methods/darts.py): width 8, one cell per stage
CONFIGS.register("nb201-small", NB201Config("nb201-small", 28, 1, channels=8, cells_per_stage=1))


class NB201Space(DecisionSequence, SearchSpace):
    """One NAS-Bench-201 cell; ``build`` gives the benchmark's network of that cell."""

    ops: tuple[str, ...] = OPS
    edges: tuple[tuple[int, int], ...] = EDGES

    def __init__(self, config: str | NB201Config = "nb201-cifar") -> None:
        self.cfg = CONFIGS.get(config) if isinstance(config, str) else config
        self.name = self.cfg.name
        self.input_size = self.cfg.input_size
        self.default_io = (self.cfg.in_channels, self.cfg.num_classes)

    # -- the benchmark's string ---------------------------------------------------------------
    def cell(self, arch: Arch) -> tuple[str, ...]:
        """The 6 edge ops of ``arch`` (validated)."""
        self.check_space(arch)
        return parse_string(arch.genes)

    def arch(self, ops: Sequence[str]) -> Arch:
        a = Arch(self.name, to_string(ops))
        self.validate(a)
        return a

    def decode(self, code: str | Sequence[float] | np.ndarray) -> Arch:
        """An ``Arch`` from the benchmark's string or from an :meth:`encode` vector."""
        if isinstance(code, str):
            return self.arch(parse_string(code))
        v = np.asarray(code, dtype=np.float64)
        if v.shape != (len(EDGES) * len(OPS),):
            raise UserError(f"an encoded NAS-Bench-201 cell has {len(EDGES) * len(OPS)} values, "
                            f"got shape {v.shape}")
        return self.arch([OPS[int(i)] for i in v.reshape(len(EDGES), len(OPS)).argmax(1)])

    def to_string(self, arch: Arch) -> str:
        return to_string(self.cell(arch))

    # -- decisions (Q-learning / REINFORCE: one op per edge, in string order) ------------------
    def decisions(self) -> list[tuple[str, list]]:
        return [("op", list(OPS))] * len(EDGES)

    def decision_values(self, arch: Arch) -> list:
        return list(self.cell(arch))

    def from_decision_values(self, values: list) -> Arch:
        return self.arch(values)

    # -- SearchSpace --------------------------------------------------------------------------
    def validate(self, arch: Arch) -> None:
        self.cell(arch)

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.arch([OPS[int(i)] for i in rng.integers(0, len(OPS), len(EDGES))])

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        ops = list(self.cell(arch))
        k = int(rng.integers(len(EDGES)))
        others = [o for o in OPS if o != ops[k]]
        ops[k] = others[int(rng.integers(len(others)))]
        return self.arch(ops)

    def encode(self, arch: Arch) -> np.ndarray:
        """One-hot op per edge (6 × 5, edges in string order)."""
        v = np.zeros((len(EDGES), len(OPS)), dtype=np.float32)
        for k, o in enumerate(self.cell(arch)):
            v[k, OPS.index(o)] = 1.0
        return v.ravel()

    def build(self, arch: Arch, num_classes: int, in_channels: int) -> NB201Network:
        return NB201Network(self.cell(arch), num_classes, in_channels, self.cfg.channels,
                            self.cfg.cells_per_stage)

    def cardinality(self) -> int:
        return len(OPS) ** len(EDGES)

    # -- cost items ---------------------------------------------------------------------------
    def cost_layout(self, num_classes: int, in_channels: int) -> CellCostLayout:
        """Stem, reduction blocks and head (fixed), and per cell its 6 edges × 5 ops (one cell
        type)."""
        c, h = self.cfg.channels, self.input_size
        fixed = [LutItem(LutKey("stem", in_channels, c, h, h, 1),
                         lambda: make_stem(in_channels, c), (in_channels, h, h))]
        cells: list[tuple[int, list[list[LutItem]]]] = []
        for kind, cin, cout in stage_plan(c, self.cfg.cells_per_stage):
            if kind == "reduce":
                fixed.append(LutItem(LutKey("resblock", cin, cout, h, h, 2),
                                     lambda cin=cin, cout=cout: ResNetBasicBlock(cin, cout),
                                     (cin, h, h)))
                h //= 2
                continue
            row = [LutItem(LutKey(o, cout, cout, h, h, 1),
                           lambda o=o, cout=cout: NB201_OPS[o](cout, True), (cout, h, h))
                   for o in OPS]
            cells.append((0, [row] * len(EDGES)))
        last = c * 4
        fixed.append(LutItem(LutKey("head", last, num_classes, h, h, 1),
                             lambda: _Head(last, num_classes), (last, h, h)))
        return CellCostLayout(fixed, cells)

    def lut_items(self, num_classes: int, in_channels: int) -> list[LutItem]:
        return self.cost_layout(num_classes, in_channels).items()

    def lut_keys(self, arch: Arch, num_classes: int, in_channels: int) -> list[LutKey]:
        chosen = [(k, OPS.index(o)) for k, o in enumerate(self.cell(arch))]
        return self.cost_layout(num_classes, in_channels).keys([chosen])


class _Head(nn.Sequential):
    """BN-ReLU, global pooling, linear: the network's head as one measurable item."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(cin, num_classes))


def register_spaces(register) -> None:  # noqa: ANN001 - the registry's register
    for n in CONFIGS.names():
        register(n, lambda n=n: NB201Space(n))
