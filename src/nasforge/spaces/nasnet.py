"""The NASNet search space (METHODS §6, issue 12): a normal and a reduction cell of ``B`` = 5
blocks; each block picks two hidden states (the cell's two inputs or earlier blocks' outputs)
and one of NASNet's 13 ops for each, and adds the two results; the unused block outputs are
concatenated as the cell output. The network is :mod:`nasforge.models.nasnet`.

Genes are the genotype as JSON, blocks in order, each ``[input a, input b, op a, op b]``::

    {"normal": [[1, 1, "sep_conv_3x3", "identity"], [0, 1, "sep_conv_5x5", "sep_conv_3x3"],
                …5 blocks],
     "reduce": [[0, 1, "max_pool_3x3", "sep_conv_7x7"], …5 blocks]}

(hidden states: 0 = ``h_{i-2}``, 1 = ``h_{i-1}``, block ``b`` = ``b + 2``; block ``b`` reads
states ``0 … b + 1``). The decisions are made in NASNet's order — per block: hidden state a,
hidden state b, op a, op b; normal cell first — which is the sequential view Q-learning and
REINFORCE walk (:class:`~nasforge.spaces.decisions.DecisionSequence`).

``nasnet``: ``N`` = 1 normal cell per stage, ``C`` = 8 (stem 24), sized for CPU searches on
28×28 or 32×32 inputs (the network takes any input size of at least 4; the space is declared
at 32²). NASNet's own searches used larger ``N`` and ``C``; both are space parameters
(:class:`NASNetConfig`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasforge.arch import Arch, thaw
from nasforge.errors import UserError
from nasforge.models.nasnet import BLOCKS, CELLS, OPS, Block, NASNetNetwork, unused
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace
from nasforge.spaces.decisions import DecisionSequence

#: the most hidden states a block can pick from (the last block: 2 inputs + 4 blocks)
MAX_STATES = BLOCKS + 1
#: encode(): per block, one-hot input a and b over MAX_STATES, op a and b over the 13 ops
PER_BLOCK = 2 * MAX_STATES + 2 * len(OPS)


@dataclass(frozen=True)
class NASNetConfig:
    name: str
    input_size: int = 32
    in_channels: int = 3
    num_classes: int = 10
    cells_per_stage: int = 1  # N: normal cells per stage (3 stages, 2 reduction cells)
    channels: int = 8  # C: the first stage's cell width (the stem has 3·C)

    def __post_init__(self) -> None:
        if self.cells_per_stage < 1 or self.channels < 1:
            raise UserError(f"NASNet space {self.name!r}: cells_per_stage and channels must be "
                            "≥ 1")
        if self.input_size < 4:
            raise UserError(f"NASNet space {self.name!r}: input_size must be ≥ 4 (two stride-2 "
                            f"reduction cells), got {self.input_size}")


CONFIGS: Registry[NASNetConfig] = Registry("NASNet space")
CONFIGS.register("nasnet", NASNetConfig("nasnet"))


def _block(row: object, cell: str, b: int) -> Block:
    where = f"NASNet genotype {cell}[{b}]"
    if not isinstance(row, (list, tuple)) or len(row) != 4:
        raise UserError(f"{where}: expected a block [input a, input b, op a, op b], got {row!r}")
    a, s, op_a, op_b = row
    for name, j in (("input a", a), ("input b", s)):
        if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < b + 2:
            raise UserError(f"{where}: {name} {j!r} must be a hidden state block {b} can read: "
                            f"an integer in 0 … {b + 1} (0, 1: the cell inputs; k ≥ 2: block "
                            f"k − 2)")
    for name, op in (("op a", op_a), ("op b", op_b)):
        if not isinstance(op, str) or op not in OPS:
            raise UserError(f"{where}: {name} {op!r} is not a NASNet op; choose from "
                            f"{list(OPS)}")
    return a, s, op_a, op_b


def parse_genotype(genes: object) -> dict[str, list[Block]]:
    """Validate genotype JSON into ``{"normal": [block × 5], "reduce": [block × 5]}``; a
    UserError names the first broken rule."""
    if not isinstance(genes, dict) or set(genes) != set(CELLS):
        got = sorted(genes) if isinstance(genes, dict) else type(genes).__name__
        raise UserError(f"a NASNet genotype is an object with keys {list(CELLS)} (a list of "
                        f"{BLOCKS} blocks each), got {got}")
    out = {}
    for cell in CELLS:
        rows = genes[cell]
        if not isinstance(rows, (list, tuple)) or len(rows) != BLOCKS:
            raise UserError(f"NASNet genotype {cell}: expected {BLOCKS} blocks [input a, input b,"
                            f" op a, op b], got {rows!r}")
        out[cell] = [_block(r, cell, b) for b, r in enumerate(rows)]
    return out


class NASNetSpace(DecisionSequence, SearchSpace):
    """A NASNet normal + reduction cell; ``build`` gives the stacked network."""

    ops: tuple[str, ...] = OPS

    def __init__(self, config: str | NASNetConfig = "nasnet") -> None:
        self.cfg = CONFIGS.get(config) if isinstance(config, str) else config
        self.name = self.cfg.name
        self.input_size = self.cfg.input_size
        self.default_io = (self.cfg.in_channels, self.cfg.num_classes)

    # -- genotype -----------------------------------------------------------------------------
    def genotype(self, arch: Arch) -> dict[str, list[Block]]:
        self.check_space(arch)
        return parse_genotype(thaw(arch.genes))

    def arch(self, genes: dict[str, Sequence[Sequence[Any]]]) -> Arch:
        a = Arch(self.name, genes)
        self.validate(a)
        return a

    def decode(self, code: dict[str, Any] | Sequence[float] | np.ndarray) -> Arch:
        """An ``Arch`` from genotype JSON or from an :meth:`encode` vector (per decision the
        largest entry among the choices that block has)."""
        if isinstance(code, dict):
            return self.arch(parse_genotype(code))
        v = np.asarray(code, dtype=np.float64)
        n = len(CELLS) * BLOCKS * PER_BLOCK
        if v.shape != (n,):
            raise UserError(f"an encoded NASNet genotype has {n} values, got shape {v.shape}")
        v = v.reshape(len(CELLS), BLOCKS, PER_BLOCK)
        m, k = MAX_STATES, len(OPS)
        genes = {cell: [[int(v[c, b, :b + 2].argmax()), int(v[c, b, m:m + b + 2].argmax()),
                         OPS[int(v[c, b, 2 * m:2 * m + k].argmax())],
                         OPS[int(v[c, b, 2 * m + k:].argmax())]] for b in range(BLOCKS)]
                 for c, cell in enumerate(CELLS)}
        return self.arch(genes)

    def concat(self, arch: Arch) -> dict[str, list[int]]:
        """The hidden states each cell concatenates as its output (its unused blocks)."""
        g = self.genotype(arch)
        return {cell: unused(g[cell]) for cell in CELLS}

    def describe(self, arch: Arch) -> str:
        g, out = self.genotype(arch), []
        for cell in CELLS:
            out.append(f"{cell} cell (output: concat{tuple(unused(g[cell]))})")
            for b, (a, s, op_a, op_b) in enumerate(g[cell]):
                out.append(f"  {b + 2}  {op_a}({a}) + {op_b}({s})")
        return "\n".join(out)

    # -- decisions (the sequential view) --------------------------------------------------------
    def decisions(self) -> list[tuple[str, list]]:
        out: list[tuple[str, list]] = []
        for _ in CELLS:
            for b in range(BLOCKS):
                states = list(range(b + 2))
                out += [("input", states), ("input", states), ("op", list(OPS)),
                        ("op", list(OPS))]
        return out

    def decision_values(self, arch: Arch) -> list:
        g = self.genotype(arch)
        return [v for cell in CELLS for block in g[cell] for v in block]

    def from_decision_values(self, values: list) -> Arch:
        if len(values) != 4 * BLOCKS * len(CELLS):
            raise UserError(f"a NASNet genotype takes {4 * BLOCKS * len(CELLS)} decisions, got "
                            f"{len(values)}")
        it = iter(values)
        blocks = [[next(it) for _ in range(4)] for _ in range(BLOCKS * len(CELLS))]
        return self.arch({"normal": blocks[:BLOCKS], "reduce": blocks[BLOCKS:]})

    # -- SearchSpace --------------------------------------------------------------------------
    def validate(self, arch: Arch) -> None:
        self.genotype(arch)

    def sample(self, rng: np.random.Generator) -> Arch:
        genes = {cell: [[int(rng.integers(b + 2)), int(rng.integers(b + 2)),
                         OPS[int(rng.integers(len(OPS)))], OPS[int(rng.integers(len(OPS)))]]
                        for b in range(BLOCKS)] for cell in CELLS}
        return self.arch(genes)

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """Change one decision: a hidden state or an op of one block of one cell (NASNet's
        mutation in its evolution baseline; the new value always differs)."""
        g = {c: [list(b) for b in blocks] for c, blocks in self.genotype(arch).items()}
        cell = CELLS[int(rng.integers(len(CELLS)))]
        b = int(rng.integers(BLOCKS))
        k = int(rng.integers(4))
        block = g[cell][b]
        choices = list(range(b + 2)) if k < 2 else list(OPS)
        others = [x for x in choices if x != block[k]]
        block[k] = others[int(rng.integers(len(others)))]
        return self.arch(g)

    def encode(self, arch: Arch) -> np.ndarray:
        """One-hot per decision: input a, input b (over the 6 states the last block has), op a,
        op b (over the 13 ops); 2 cells × 5 blocks × 38 values."""
        g = self.genotype(arch)
        v = np.zeros((len(CELLS), BLOCKS, PER_BLOCK), dtype=np.float32)
        m, k = MAX_STATES, len(OPS)
        for c, cell in enumerate(CELLS):
            for b, (a, s, op_a, op_b) in enumerate(g[cell]):
                v[c, b, a] = v[c, b, m + s] = 1.0
                v[c, b, 2 * m + OPS.index(op_a)] = v[c, b, 2 * m + k + OPS.index(op_b)] = 1.0
        return v.ravel()

    def build(self, arch: Arch, num_classes: int, in_channels: int) -> NASNetNetwork:
        return NASNetNetwork(self.genotype(arch), num_classes, in_channels,
                             self.cfg.cells_per_stage, self.cfg.channels, self.input_size)

    def cardinality(self) -> int:
        """Per cell Π_b (b + 2)² · 13² over the 5 blocks; two cells."""
        per_cell = 1
        for b in range(BLOCKS):
            per_cell *= (b + 2) ** 2 * len(OPS) ** 2
        return per_cell ** len(CELLS)


def register_spaces(register) -> None:  # noqa: ANN001 - the registry's register
    for n in CONFIGS.names():
        register(n, lambda n=n: NASNetSpace(n))
