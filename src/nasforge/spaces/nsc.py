"""BlockQNN's Network Structure Code space (METHODS §5).

A block is a DAG written as a list of layers, each a 5-tuple ``[index, type, kernel, pred1,
pred2]``. Index 0 is the block input; layers are numbered 1, 2, … in order; the last layer is
``[n, "terminal", 0, 0, 0]``.

================  =========  =========================  ==========================
type              kernel     predecessors               output channels
================  =========  =========================  ==========================
``conv``          1, 3, 5    pred1 (pred2 = 0)          block width (ReLU-Conv-BN)
``max_pool``      1, 3       pred1 (pred2 = 0)          same as pred1 (stride 1)
``avg_pool``      1, 3       pred1 (pred2 = 0)          same as pred1 (stride 1)
``identity``      0          pred1 (pred2 = 0)          same as pred1
``add``           0          pred1 ≠ pred2              max of the two (the narrower
                                                        one gets a 1×1 ReLU-Conv-BN)
``concat``        0          pred1 ≠ pred2              sum of the two
``terminal``      0          0, 0                       —
================  =========  =========================  ==========================

Rules: predecessors point to earlier layers (``0 ≤ pred < index``) and never at the terminal;
at most ``max_layers`` layers before the terminal. The block output is the concatenation of
every layer output nobody consumes (BlockQNN's "unused outputs are concatenated"), followed by
a 1×1 ReLU-Conv-BN back to the block width so blocks stack.

The network (BlockQNN's CIFAR design): a 3×3 stem, then for each stage ``repeats`` copies of
the block, with a 2×2 max pool and a 1×1 ReLU-Conv-BN widening between stages, then global
pooling and a linear classifier. The same block transfers to other inputs by changing
``repeats`` and the stage widths. The network itself is :mod:`nasforge.models.nsc`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from torch import nn

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.models.nsc import PAIR, Layer, NSCNetwork, format_block
from nasforge.spaces.base import SearchSpace

#: layer type -> allowed kernels
KERNELS: dict[str, tuple[int, ...]] = {
    "conv": (1, 3, 5), "max_pool": (1, 3), "avg_pool": (1, 3), "identity": (0,),
    "add": (0,), "concat": (0,), "terminal": (0,),
}
TYPES: tuple[str, ...] = tuple(KERNELS)
SINGLE = ("conv", "max_pool", "avg_pool", "identity")


def _as_layer(row: object, pos: int) -> Layer:
    if not isinstance(row, (list, tuple)) or len(row) != 5:
        raise UserError(f"NSC layer {pos}: expected a 5-tuple [index, type, kernel, pred1, "
                        f"pred2], got {row!r}")
    idx, typ, k, p1, p2 = row
    if typ not in KERNELS:
        raise UserError(f"NSC layer {pos}: unknown type {typ!r}; choose from {list(TYPES)}")
    for name, v in (("index", idx), ("kernel", k), ("pred1", p1), ("pred2", p2)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise UserError(f"NSC layer {pos}: {name} must be an integer, got {v!r}")
    return (idx, typ, k, p1, p2)


def check_layer(layer: Layer, index: int) -> None:
    """The rules one layer must satisfy at position ``index`` (1-based)."""
    idx, typ, k, p1, p2 = layer
    where = f"NSC layer {list(layer)}"
    if idx != index:
        raise UserError(f"{where}: index must be {index} (layers are numbered 1, 2, … in order)")
    if k not in KERNELS[typ]:
        raise UserError(f"{where}: kernel {k} not allowed for {typ}; use one of "
                        f"{list(KERNELS[typ])}")
    if typ == "terminal":
        if p1 != 0 or p2 != 0:
            raise UserError(f"{where}: the terminal takes no predecessors (write 0, 0)")
        return
    for name, p in (("pred1", p1), ("pred2", p2)):
        if not 0 <= p < index:
            raise UserError(f"{where}: {name}={p} must point to an earlier layer "
                            f"(0 ≤ pred < {index}); the graph must be acyclic")
    if typ in PAIR and p1 == p2:
        raise UserError(f"{where}: {typ} needs two different predecessors (pred1 ≠ pred2)")
    if typ in SINGLE and p2 != 0:
        raise UserError(f"{where}: {typ} takes one predecessor; write pred2 = 0")


def parse_block(genes: object, max_layers: int) -> list[Layer]:
    """Validate a whole code; raises :class:`UserError` naming the first broken rule."""
    if not isinstance(genes, (list, tuple)) or not genes:
        raise UserError("an NSC block is a non-empty list of [index, type, kernel, pred1, pred2]")
    layers = [_as_layer(r, i) for i, r in enumerate(genes)]
    for i, layer in enumerate(layers):
        check_layer(layer, i + 1)
        if layer[1] == "terminal" and i != len(layers) - 1:
            raise UserError(f"NSC layer {list(layer)}: the terminal must be the last layer")
    if layers[-1][1] != "terminal":
        raise UserError("an NSC block must end with [n, 'terminal', 0, 0, 0]")
    if len(layers) < 2:
        raise UserError("an NSC block needs at least one layer before the terminal")
    if len(layers) - 1 > max_layers:
        raise UserError(f"NSC block has {len(layers) - 1} layers; the maximum depth is "
                        f"{max_layers} (raise max_layers or shorten the block)")
    return layers


def valid_next(prefix: list[Layer], max_layers: int) -> list[Layer]:
    """Every layer that may follow ``prefix`` (the Q-learning action set)."""
    index = len(prefix) + 1
    if prefix and prefix[-1][1] == "terminal":
        return []
    if index > max_layers:
        return [(index, "terminal", 0, 0, 0)]
    out: list[Layer] = []
    for typ in SINGLE:
        for k in KERNELS[typ]:
            for p in range(index):
                out.append((index, typ, k, p, 0))
    for typ in PAIR:
        for p1, p2 in itertools.combinations(range(index), 2):
            out.append((index, typ, 0, p1, p2))
    if prefix:
        out.append((index, "terminal", 0, 0, 0))
    return out


def density(layers: list[Layer]) -> float:
    """Edges / nodes of the block DAG (input and layers are nodes; terminal excluded)."""
    body = [lay for lay in layers if lay[1] != "terminal"]
    edges = sum(2 if lay[1] in PAIR else 1 for lay in body)
    return edges / (len(body) + 1)


@dataclass(frozen=True)
class NSCConfig:
    name: str = "nsc"
    max_layers: int = 5
    widths: tuple[int, ...] = (16, 32, 64)
    repeats: int = 1
    stem_stride: int = 1  # 2 quarters the cost on 28×28 inputs (CPU searches)
    input_size: int = 28  # what the space is designed for; the network takes any size


class NSCSpace(SearchSpace):
    """Blocks of at most ``max_layers`` layers; the network macro is part of the space."""

    default_io = (1, 10)

    def __init__(self, cfg: NSCConfig | None = None) -> None:
        self.cfg = cfg or NSCConfig()
        if self.cfg.max_layers < 1 or self.cfg.repeats < 1 or not self.cfg.widths:
            raise UserError("NSC space needs max_layers ≥ 1, repeats ≥ 1 and ≥ 1 stage width")
        self.name = self.cfg.name
        self.max_layers = self.cfg.max_layers
        self.input_size = self.cfg.input_size

    # -- the code ---------------------------------------------------------------------------
    def layers(self, arch: Arch) -> list[Layer]:
        self.check_space(arch)
        return parse_block(arch.genes, self.max_layers)

    def arch(self, layers: list[Layer] | list[list]) -> Arch:
        a = Arch(self.name, [list(lay) for lay in layers])
        self.validate(a)
        return a

    def validate(self, arch: Arch) -> None:
        self.layers(arch)

    def density(self, arch: Arch) -> float:
        """BlockQNN's connection complexity: edges / nodes of the block."""
        return density(self.layers(arch))

    def describe(self, arch: Arch) -> str:
        return format_block(self.layers(arch))

    # -- sequential decisions (Q-learning / REINFORCE) --------------------------------------
    def actions(self, prefix: list) -> list:
        return [list(a) for a in valid_next([tuple(p) for p in prefix], self.max_layers)]

    def is_complete(self, prefix: list) -> bool:
        return bool(prefix) and prefix[-1][1] == "terminal"

    def to_arch(self, prefix: list) -> Arch:
        return self.arch(prefix)

    def from_arch(self, arch: Arch) -> list:
        return [list(lay) for lay in self.layers(arch)]

    def vocabulary(self) -> list:
        """Every layer code at any position, with the index dropped (REINFORCE tokens)."""
        seen: dict[str, list] = {}
        prefix: list[Layer] = []
        for i in range(self.max_layers + 1):
            for a in valid_next(prefix, self.max_layers):
                seen.setdefault(repr(a[1:]), list(a[1:]))
            prefix.append((i + 1, "identity", 0, 0, 0))
        return list(seen.values())

    def token(self, action: list) -> list:
        return list(action[1:])

    # -- SearchSpace --------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        prefix: list[Layer] = []
        while not prefix or prefix[-1][1] != "terminal":
            acts = valid_next(prefix, self.max_layers)
            prefix.append(acts[int(rng.integers(len(acts)))])
        return self.arch(prefix)

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """Replace one layer by another valid one and keep the rest where still valid (a
        suffix that the change invalidates is truncated and regrown at random)."""
        layers = self.layers(arch)
        for _ in range(100):
            pos = int(rng.integers(len(layers)))
            acts = [a for a in valid_next(layers[:pos], self.max_layers) if a != layers[pos]]
            if not acts:
                continue
            new = layers[:pos] + [acts[int(rng.integers(len(acts)))]]
            for old in layers[pos + 1:]:
                if new[-1][1] == "terminal":
                    break
                cand = (len(new) + 1, *old[1:])
                try:
                    check_layer(cand, len(new) + 1)  # type: ignore[arg-type]
                except UserError:
                    break
                if cand[1] == "terminal" or len(new) < self.max_layers:
                    new.append(cand)  # type: ignore[arg-type]
            while new[-1][1] != "terminal":
                acts = valid_next(new, self.max_layers)
                new.append(acts[int(rng.integers(len(acts)))])
            if new != layers:
                return self.arch(new)
        raise UserError("could not mutate the block (is the space a single block?)")

    def encode(self, arch: Arch) -> np.ndarray:
        """One-hot type + kernel + predecessor per position (fixed length)."""
        layers = self.layers(arch)
        n = self.max_layers + 1
        per = len(TYPES) + 6 + 2 * n
        v = np.zeros(n * per, dtype=np.float32)
        for i, (_idx, typ, k, p1, p2) in enumerate(layers):
            o = i * per
            v[o + TYPES.index(typ)] = 1
            v[o + len(TYPES) + (0, 1, 3, 5).index(k)] = 1
            v[o + len(TYPES) + 6 + p1] = 1
            v[o + len(TYPES) + 6 + n + p2] = 1
        return v

    def build(self, arch: Arch, num_classes: int, in_channels: int) -> nn.Module:
        return NSCNetwork(self.layers(arch), self.cfg.widths, self.cfg.repeats, num_classes,
                          in_channels, self.cfg.stem_stride)

    def cardinality(self) -> int:
        """Exact count: the number of non-terminal choices at position i depends on i only,
        and a terminal may follow any non-empty prefix."""
        total, prod = 0, 1
        for i in range(self.max_layers):
            prefix = [(j + 1, "conv", 1, 0, 0) for j in range(i)]
            prod *= sum(1 for a in valid_next(prefix, self.max_layers) if a[1] != "terminal")
            total += prod
        return total


def register_spaces(register) -> None:  # noqa: ANN001 - the registry's register_space
    register("nsc", lambda: NSCSpace(NSCConfig("nsc")))
    register("nsc-n2", lambda: NSCSpace(NSCConfig("nsc-n2", repeats=2)))
    register("nsc-fast", lambda: NSCSpace(NSCConfig("nsc-fast", stem_stride=2)))
    register("nsc-fast-n2", lambda: NSCSpace(NSCConfig("nsc-fast-n2", stem_stride=2, repeats=2)))
