"""The DenseNAS densely connected space (METHODS §4), described as data.

A :class:`DenseSpec` lists routing blocks of increasing width with their output feature size
and their number of basic layers. Block 0 is the fixed *head block* (stem → MBConv k3 e1);
after the last routing block comes the fixed *tail* (1×1 conv to ``last_channels`` → pool →
classifier). Block ``i`` connects to its next ``connect`` (M) blocks, the tail included, but
only where the feature size stays or halves (the official code's rule; with ``stages`` set a
connection may also not skip a stage, which forces at least one block per stage — the
official MobileNetV2 space does this).

A routing block = one *shape-alignment branch* per incoming predecessor (each a choice of the
six MBConv ops, mapping that predecessor's width and resolution to the block's; stride 2 when
the resolution halves) followed by its basic layers (six MBConv ops or ``skip``; skip removes
the layer, so depth is searched).

An architecture is the path and the ops on it::

    {"blocks": [{"id": 2, "align": "k5_e6", "layers": ["k3_e3", "skip"]}, ...]}

— the routing blocks after the head block in path order; the path is
``[0, *ids, tail]`` and every kept block has exactly one successor. ``build`` turns it into a
plain network with no search machinery (:class:`nasforge.models.densenas.DenseModel`): stem,
head block, for each kept block its alignment op then its non-skip layers, tail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from torch import nn

from nasforge.arch import Arch
from nasforge.cost.chained import BlockDAG
from nasforge.cost.flops import Counts, conv_macs
from nasforge.cost.lut import LatencyTable, LutItem, LutKey
from nasforge.errors import UserError
from nasforge.models.densenas import OPS, DenseModel, PoolFC, make_op, make_stem, make_tail_align
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace

LAYER_OPS: tuple[str, ...] = tuple(OPS)  # basic layers: six MBConv + skip
ALIGN_OPS: tuple[str, ...] = tuple(o for o in OPS if o != "skip")  # alignment: no skip


def _out(h: int, stride: int) -> int:
    return (h + stride - 1) // stride


@dataclass(frozen=True)
class DenseSpec:
    """The supernet as data. ``widths``/``sizes``/``layers`` have one entry per routing block
    (entry 0 is the head block, which has no searchable layers); ``stages``, when given, has
    one more entry, for the tail."""

    name: str
    input_size: int
    stem_channels: int
    stem_stride: int
    widths: tuple[int, ...]
    sizes: tuple[int, ...]
    layers: tuple[int, ...]
    last_channels: int
    connect: int = 4  # M
    stages: tuple[int, ...] | None = None
    in_channels: int = 3  # defaults for LUT building without a data set
    num_classes: int = 10

    def __post_init__(self) -> None:
        n = len(self.widths)
        if n < 2:
            raise UserError(f"space {self.name!r}: need at least the head block and one "
                            "routing block")
        if len(self.sizes) != n or len(self.layers) != n:
            raise UserError(f"space {self.name!r}: widths, sizes and layers must have the same "
                            f"length ({n}, {len(self.sizes)}, {len(self.layers)})")
        if self.stages is not None and len(self.stages) != n + 1:
            raise UserError(f"space {self.name!r}: stages needs {n + 1} entries (blocks + tail)")
        if self.sizes[0] != _out(self.input_size, self.stem_stride):
            raise UserError(f"space {self.name!r}: block 0 size {self.sizes[0]} != input "
                            f"{self.input_size} / stem stride {self.stem_stride}")
        if self.layers[0] != 0:
            raise UserError(f"space {self.name!r}: the head block has no searchable layers")
        if any(b < a for a, b in zip(self.widths, self.widths[1:])):
            raise UserError(f"space {self.name!r}: widths must not decrease")
        if any(b > a for a, b in zip(self.sizes, self.sizes[1:])):
            raise UserError(f"space {self.name!r}: sizes must not increase")
        if self.connect < 1:
            raise UserError(f"space {self.name!r}: connect (M) must be ≥ 1")
        dag = self.dag  # validates connectivity
        preds = dag.predecessors()
        for j in range(1, dag.num_blocks):
            if not preds[j]:
                raise UserError(f"space {self.name!r}: block {j} has no predecessor")

    @property
    def num_blocks(self) -> int:
        """Routing blocks including the head block (the tail is DAG node ``num_blocks``)."""
        return len(self.widths)

    def width(self, j: int) -> int:
        return self.last_channels if j == self.num_blocks else self.widths[j]

    def size(self, j: int) -> int:
        return self.sizes[min(j, self.num_blocks - 1)]

    def stride(self, i: int, j: int) -> int:
        return self.size(i) // self.size(j)

    @cached_property
    def dag(self) -> BlockDAG:
        """Block i → its next M blocks (tail = node ``num_blocks``) while the size stays or
        halves and (with stages) no stage is skipped."""
        n = self.num_blocks + 1
        succ: list[tuple[int, ...]] = []
        for i in range(n - 1):
            out = []
            for j in range(i + 1, min(n, i + 1 + self.connect)):
                if self.stages is not None and self.stages[j] - self.stages[i] > 1:
                    break
                if self.size(i) not in (self.size(j), 2 * self.size(j)):
                    break
                out.append(j)
            succ.append(tuple(out))
        succ.append(())
        return BlockDAG(tuple(succ))


SPECS: Registry[DenseSpec] = Registry("DenseNAS space")
# Official MobileNetV2-based ImageNet space (DenseNAS code, configs/imagenet_search_cfg_mbv2):
# 16 routing blocks after the head block, M = 4, up to 3 basic layers, stage rule, 1984 tail.
SPECS.register("dense-imagenet", DenseSpec(
    "dense-imagenet", 224, 16, 2,
    widths=(16, 24, 32, 40, 48, 56, 64, 72, 96, 112, 128, 160, 176, 192, 320, 352, 384),
    sizes=(112, 56, 28, 28, 28, 14, 14, 14, 14, 14, 14, 7, 7, 7, 7, 7, 7),
    layers=(0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0),
    last_channels=1984, connect=4,
    stages=(0, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7),
    in_channels=3, num_classes=1000,
))
# 28×28 (Fashion-MNIST, digits): stride-2 stem to 14², three blocks at 14² (head included),
# three at 7²; where the resolution drops and how many blocks each size gets follow from the
# path. Narrow and shallow so supernet epochs fit a CPU budget (same scale as fbnet-fmnist).
SPECS.register("dense-fmnist", DenseSpec(
    "dense-fmnist", 28, 16, 2,
    widths=(16, 24, 32, 48, 64, 80),
    sizes=(14, 14, 14, 7, 7, 7),
    layers=(0, 1, 1, 2, 2, 1),
    last_channels=256, connect=3, in_channels=1,
))
# 28×28 under a short search budget (methods/densenas.py picks it for `--space auto` when the
# planned search is short): head block at 14², three routing blocks at 7², M = 2, so that its
# weight steps can run every op (figures in docs/densenas.md).
SPECS.register("dense-small", DenseSpec(
    "dense-small", 28, 16, 2,
    widths=(16, 24, 32, 48),
    sizes=(14, 7, 7, 7),
    layers=(0, 1, 1, 1),
    last_channels=128, connect=2, in_channels=1,
))
# 32×32 (CIFAR-10): stem at full size, blocks at 32², 16², 8², 4².
SPECS.register("dense-cifar", DenseSpec(
    "dense-cifar", 32, 16, 1,
    widths=(16, 24, 32, 40, 48, 64, 80, 96, 112, 160, 192, 240),
    sizes=(32, 32, 16, 16, 16, 8, 8, 8, 8, 4, 4, 4),
    layers=(0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1),
    last_channels=640, connect=4,
))


# -- the space --------------------------------------------------------------------------------
class DenseSpace(SearchSpace):
    def __init__(self, spec: str | DenseSpec = "dense-fmnist") -> None:
        self.spec = SPECS.get(spec) if isinstance(spec, str) else spec
        self.name = self.spec.name
        self.dag = self.spec.dag
        self.preds = self.dag.predecessors()
        self.tail = self.dag.tail
        self.default_io = (self.spec.in_channels, self.spec.num_classes)
        self.input_size = self.spec.input_size
        self._costs: dict[tuple[int, int], DenseCosts] = {}

    # -- genes <-> path -------------------------------------------------------------------------
    def path(self, arch: Arch) -> list[int]:
        return [0] + [b["id"] for b in arch.genes["blocks"]] + [self.tail]

    def arch(self, blocks: list[dict[str, Any]]) -> Arch:
        a = Arch(self.name, {"blocks": [dict(b) for b in blocks]})
        self.validate(a)
        return a

    def _random_block(self, j: int, rng: np.random.Generator) -> dict[str, Any]:
        return {"id": j, "align": ALIGN_OPS[int(rng.integers(len(ALIGN_OPS)))],
                "layers": [LAYER_OPS[int(rng.integers(len(LAYER_OPS)))]
                           for _ in range(self.spec.layers[j])]}

    def _walk(self, start: int, rng: np.random.Generator) -> list[int]:
        path = [start]
        while path[-1] != self.tail:
            s = self.dag.successors[path[-1]]
            path.append(s[int(rng.integers(len(s)))])
        return path

    def sample(self, rng: np.random.Generator) -> Arch:
        path = self._walk(0, rng)
        return self.arch([self._random_block(j, rng) for j in path[1:-1]])

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """Change one op, or re-route the path from a random kept block onwards."""
        self.validate(arch)
        blocks = [dict(b, layers=list(b["layers"])) for b in arch.genes["blocks"]]
        for _ in range(50):
            if blocks and rng.random() < 0.5:
                new = [dict(b, layers=list(b["layers"])) for b in blocks]
                b = new[int(rng.integers(len(new)))]
                slot = int(rng.integers(len(b["layers"]) + 1))
                if slot == len(b["layers"]):
                    b["align"] = ALIGN_OPS[int(rng.integers(len(ALIGN_OPS)))]
                else:
                    b["layers"][slot] = LAYER_OPS[int(rng.integers(len(LAYER_OPS)))]
            else:
                path = self.path(arch)
                k = int(rng.integers(len(path) - 1))
                keep = {b["id"]: b for b in blocks}
                tail = self._walk(path[k], rng)
                new = blocks[:k] + [keep.get(j) or self._random_block(j, rng)
                                    for j in tail[1:-1]]
            cand = self.arch(new)
            if cand != arch:
                return cand
        return arch  # a space with a single architecture

    def encode(self, arch: Arch) -> np.ndarray:
        """Per routing block: on-path flag, one-hot alignment op, one-hot op per layer."""
        self.validate(arch)
        on = {b["id"]: b for b in arch.genes["blocks"]}
        parts = []
        for j in range(1, self.spec.num_blocks):
            v = np.zeros(1 + len(ALIGN_OPS) + self.spec.layers[j] * len(LAYER_OPS), np.float32)
            if j in on:
                v[0] = 1.0
                v[1 + ALIGN_OPS.index(on[j]["align"])] = 1.0
                for li, o in enumerate(on[j]["layers"]):
                    v[1 + len(ALIGN_OPS) + li * len(LAYER_OPS) + LAYER_OPS.index(o)] = 1.0
            parts.append(v)
        return np.concatenate(parts)

    def validate(self, arch: Arch) -> None:
        self.check_space(arch)
        g = arch.genes
        if (not isinstance(g, dict) or set(g) != {"blocks"}
                or not isinstance(g["blocks"], (list, tuple))):
            raise UserError("arch field 'genes' must be {\"blocks\": [{\"id\", \"align\", "
                            "\"layers\"}, ...]}")
        prev = 0
        for k, b in enumerate(g["blocks"]):
            where = f"genes.blocks[{k}]"
            if not isinstance(b, dict) or set(b) != {"id", "align", "layers"}:
                raise UserError(f"arch field {where} must have exactly 'id', 'align', 'layers'")
            j = b["id"]
            if not isinstance(j, int) or not 1 <= j < self.spec.num_blocks:
                raise UserError(f"arch field {where}.id must be a routing block in "
                                f"[1, {self.spec.num_blocks - 1}], got {j!r}")
            if j not in self.dag.successors[prev]:
                raise UserError(f"arch field {where}.id: block {prev} does not connect to "
                                f"block {j} (it feeds {list(self.dag.successors[prev])})")
            if b["align"] not in ALIGN_OPS:
                raise UserError(f"arch field {where}.align: unknown op {b['align']!r}; choose "
                                f"from {list(ALIGN_OPS)}")
            if (not isinstance(b["layers"], (list, tuple))
                    or len(b["layers"]) != self.spec.layers[j]):
                raise UserError(f"arch field {where}.layers must list {self.spec.layers[j]} "
                                f"op(s) for block {j}")
            for li, o in enumerate(b["layers"]):
                if o not in LAYER_OPS:
                    raise UserError(f"arch field {where}.layers[{li}]: unknown op {o!r}; "
                                    f"choose from {list(LAYER_OPS)}")
            prev = j
        if self.tail not in self.dag.successors[prev]:
            raise UserError(f"arch field 'genes': the path ends at block {prev}, which does not "
                            f"connect to the tail (blocks {list(self.preds[self.tail])} do)")

    def build(self, arch: Arch, num_classes: int, in_channels: int,
              dropout: float = 0.0) -> DenseModel:
        self.validate(arch)
        return DenseModel(self.spec, arch.genes["blocks"], num_classes, in_channels, dropout)

    def cardinality(self) -> int:
        """Σ over paths of Π over kept blocks of (align choices × layer choices)."""
        count = [0] * (self.tail + 1)
        count[0] = 1
        for j in range(1, self.tail + 1):
            ways = (1 if j == self.tail
                    else len(ALIGN_OPS) * len(LAYER_OPS) ** self.spec.layers[j])
            count[j] = ways * sum(count[i] for i in self.preds[j])
        return count[self.tail]

    def describe(self, arch: Arch, num_classes: int | None = None) -> str:
        """The path in words: which blocks, widths, strides, ops."""
        self.validate(arch)
        sp = self.spec
        lines = [f"space {self.name}: path {' → '.join(map(str, self.path(arch)))}",
                 f"stem    3×3 conv s{sp.stem_stride} → {sp.stem_channels} ch, head block "
                 f"MBConv k3 e1 → {sp.widths[0]} ch @ {sp.sizes[0]}×{sp.sizes[0]}"]
        prev = 0
        for b in arch.genes["blocks"]:
            j = b["id"]
            layers = [o for o in b["layers"] if o != "skip"]
            lines.append(
                f"block {j:<2} {sp.width(prev):>4} → {sp.width(j):<4} ch  "
                f"{sp.size(prev)}×{sp.size(prev)} → {sp.size(j)}×{sp.size(j)} "
                f"(stride {sp.stride(prev, j)})  align {b['align']}  "
                f"layers [{', '.join(layers) or '-'}]"
                + (f" ({len(b['layers']) - len(layers)} skipped)" if len(layers) < len(b["layers"])
                   else ""))
            prev = j
        lines.append(f"tail    1×1 conv {sp.width(prev)} → {sp.last_channels} ch (stride "
                     f"{sp.stride(prev, self.tail)}), pool, classifier"
                     + (f" → {num_classes}" if num_classes else ""))
        return "\n".join(lines)

    def costs(self, num_classes: int, in_channels: int) -> DenseCosts:
        """The cost tables for this I/O (computed once per (classes, channels))."""
        key = (num_classes, in_channels)
        if key not in self._costs:
            self._costs[key] = dense_costs(self, num_classes, in_channels)
        return self._costs[key]

    def lut_items(self, num_classes: int, in_channels: int) -> list:
        return self.costs(num_classes, in_channels).items()

    def lut_keys(self, arch: Arch, num_classes: int, in_channels: int) -> list:
        self.validate(arch)
        return self.costs(num_classes, in_channels).arch_keys(arch)


# -- cost tables -------------------------------------------------------------------------------
def _bn(c: int) -> int:
    return 2 * c


def op_counts(name: str, cin: int, cout: int, stride: int, h: int) -> Counts:
    """Analytic MACs/params of a candidate op (cross-checked against count_module in tests)."""
    spec = OPS[name]
    if spec is None:
        if cin == cout and stride == 1:
            return Counts(0, 0)
        ho = _out(h, stride)
        return Counts(conv_macs(cin, cout, 1, 1, ho, ho), cin * cout + _bn(cout))
    k, e = spec
    hid, ho = cin * e, _out(h, stride)
    macs = (conv_macs(cin, hid, 1, 1, h, h) + conv_macs(hid, hid, k, hid, ho, ho)
            + conv_macs(hid, cout, 1, 1, ho, ho))
    params = cin * hid + _bn(hid) + k * k * hid + _bn(hid) + hid * cout + _bn(cout)
    return Counts(macs, params)


@dataclass
class DenseCosts:
    """LUT keys of every candidate of the supernet, and MACs/params per key.

    ``align[j][b][o]``: op ``o`` of block ``j``'s branch for its ``b``-th predecessor;
    ``layers[j][l][o]``: op ``o`` of layer ``l`` of block ``j`` (``None`` for skip: a removed
    layer costs nothing); ``tail[b]``: the tail's branch for its ``b``-th predecessor;
    ``head``/``end``: the fixed stem + head block and pool + classifier.
    """

    space: DenseSpace
    align: list[list[list[LutKey]]]
    layers: list[list[list[LutKey | None]]]
    tail: list[LutKey]
    head: LutKey
    end: LutKey
    counts: dict[str, Counts]
    builders: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = field(repr=False)

    def items(self) -> list[LutItem]:
        return [LutItem(LutKey.parse(k), b, shape) for k, (b, shape) in self.builders.items()]

    def arch_keys(self, arch: Arch) -> list[LutKey]:
        sp = self.space
        path = sp.path(arch)
        keys = [self.head]
        for i, b in zip(path, arch.genes["blocks"]):
            j = b["id"]
            keys.append(self.align[j][sp.preds[j].index(i)][ALIGN_OPS.index(b["align"])])
            for li, o in enumerate(b["layers"]):
                k = self.layers[j][li][LAYER_OPS.index(o)]
                if k is not None:
                    keys.append(k)
        keys += [self.tail[sp.preds[sp.tail].index(path[-2])], self.end]
        return keys

    def arch_macs(self, arch: Arch) -> int:
        return sum(self.counts[str(k)].macs for k in self.arch_keys(arch))

    def arch_params(self, arch: Arch) -> int:
        return sum(self.counts[str(k)].params for k in self.arch_keys(arch))

    def arch_latency_us(self, lut: LatencyTable, arch: Arch, mode: str = "corrected") -> float:
        return lut.predict(self.arch_keys(arch), mode)

    def value_fn(self, cost: str, lut: LatencyTable | None = None) -> Callable[[LutKey], float]:
        """Cost of one key: ``latency`` = corrected LUT µs, ``flops`` = kMACs (both keep
        log(cost) > 0 for a whole network)."""
        if cost == "latency":
            if lut is None:
                raise UserError("latency cost needs a latency table")
            return lut.corrected
        if cost == "flops":
            return lambda k: self.counts[str(k)].macs / 1e3
        raise UserError(f"unknown cost {cost!r}; use latency or flops")

    def fixed_overhead(self, cost: str, lut: LatencyTable | None = None) -> float:
        """What a network pays once besides its ops (the LUT's per-call runtime overhead)."""
        return lut.overhead_us if cost == "latency" and lut is not None else 0.0


def dense_costs(space: DenseSpace, num_classes: int, in_channels: int) -> DenseCosts:
    sp = space.spec
    counts: dict[str, Counts] = {}
    builders: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = {}

    def add(key: LutKey, c: Counts, build: Callable[[], nn.Module],
            shape: tuple[int, int, int]) -> LutKey:
        k = str(key)
        if k not in counts:
            counts[k] = c
            builders[k] = (build, shape)
        return key

    h0 = sp.input_size
    s1 = sp.sizes[0]
    head_c = (Counts(conv_macs(in_channels, sp.stem_channels, 3, 1, s1, s1),
                     9 * in_channels * sp.stem_channels + _bn(sp.stem_channels))
              + Counts(conv_macs(sp.stem_channels, sp.stem_channels, 3, sp.stem_channels, s1, s1)
                       + conv_macs(sp.stem_channels, sp.widths[0], 1, 1, s1, s1),
                       9 * sp.stem_channels + _bn(sp.stem_channels)
                       + sp.stem_channels * sp.widths[0] + _bn(sp.widths[0])))
    head = add(LutKey("stem", in_channels, sp.widths[0], h0, h0, sp.stem_stride,
                      extra=f"c{sp.stem_channels}"), head_c,
               lambda: make_stem(sp, in_channels), (in_channels, h0, h0))
    align: list[list[list[LutKey]]] = [[]]
    layers: list[list[list[LutKey | None]]] = [[]]
    for j in range(1, sp.num_blocks):
        cout = sp.width(j)
        rows = []
        for i in space.preds[j]:
            cin, s, h = sp.width(i), sp.stride(i, j), sp.size(i)
            rows.append([add(LutKey(o, cin, cout, h, h, s), op_counts(o, cin, cout, s, h),
                             lambda o=o, cin=cin, cout=cout, s=s: make_op(o, cin, cout, s),
                             (cin, h, h))
                         for o in ALIGN_OPS])
        align.append(rows)
        h = sp.size(j)
        row: list[LutKey | None] = [
            None if OPS[o] is None else
            add(LutKey(o, cout, cout, h, h, 1), op_counts(o, cout, cout, 1, h),
                lambda o=o, cout=cout: make_op(o, cout, cout, 1), (cout, h, h))
            for o in LAYER_OPS]
        layers.append([row] * sp.layers[j])
    tail = []
    last, hl = sp.last_channels, sp.sizes[-1]
    for i in space.preds[space.tail]:
        cin, s, h = sp.width(i), sp.stride(i, space.tail), sp.size(i)
        tail.append(add(LutKey("tail1x1", cin, last, h, h, s),
                        Counts(conv_macs(cin, last, 1, 1, _out(h, s), _out(h, s)),
                               cin * last + _bn(last)),
                        lambda i=i: make_tail_align(sp, i), (cin, h, h)))
    end = add(LutKey("classifier", last, num_classes, hl, hl, 1),
              Counts(last * num_classes, last * num_classes + num_classes),
              lambda: PoolFC(last, num_classes), (last, hl, hl))
    return DenseCosts(space, align, layers, tail, head, end, counts, builders)


def register_spaces(register: Callable[[str, Callable[[], SearchSpace]], None]) -> None:
    for n in SPECS.names():
        register(n, lambda n=n: DenseSpace(n))
