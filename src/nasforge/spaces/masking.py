"""FBNetV2 DMaskingNAS search space (METHODS §2): searched widths, expansions, resolution.

A skeleton (:class:`MaskingSkeleton`, data) fixes the macro-architecture — stages of inverted
residuals with kernel, stride, repeats, SE and activation — and gives *options*: input
resolutions, stem widths, one width per stage (shared by the stage's blocks, whose residual
connections tie them) and one expansion rate per block. An architecture's genes::

    {"resolution": 21, "stem": 16, "widths": [24, 32, 48, 96], "expansions": [3, 4, 4, ...]}

``build`` turns them into a plain FBNetV2/V3 model (:mod:`nasforge.models.fbnetv2`): no masks,
an ``InputResize`` first layer when the resolution is below the data's, hidden widths
``get_divisible_by(c_in · e, 8)``, and the expansion 1×1 always present (so a searched layer
at e = 1 is the same conv in the supernet and in the derived model).

The masked search layers are search machinery and live in
:mod:`nasforge.supernets.masking_layers`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from nasforge.arch import Arch
from nasforge.blocks import ConvBNAct, get_divisible_by
from nasforge.blocks.resample import InputResize
from nasforge.cost.effective import conv_out
from nasforge.cost.lut import LutItem, LutKey
from nasforge.errors import UserError
from nasforge.models.fbnetv2 import (
    FBNetV2Head,
    FBNetV2Model,
    ModelSetting,
    hidden_width,
    make_block,
    se_width,
)
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace


@dataclass(frozen=True)
class StageOptions:
    kernel: int
    widths: tuple[int, ...]
    stride: int
    repeats: int
    expansions: tuple[float, ...]
    se: bool = False
    act: str = "relu"


@dataclass(frozen=True)
class MaskingSkeleton:
    name: str
    input_size: int
    resolutions: tuple[int, ...]  # input resolutions (the first is the data's size)
    stem: tuple[int, ...]  # stem width options
    stages: tuple[StageOptions, ...]
    last_pw: float = 6.0
    last_fc: int = 256
    dropout: float = 0.0
    stem_stride: int = 2
    in_channels: int = 3
    num_classes: int = 10

    def __post_init__(self) -> None:
        if not self.resolutions or max(self.resolutions) != self.input_size:
            raise UserError(f"skeleton {self.name!r}: the largest resolution must be the input "
                            f"size {self.input_size}, got {self.resolutions}")
        prev, prev_name = self.stem, "stem"
        for i, st in enumerate(self.stages):
            if not st.widths or not st.expansions:
                raise UserError(f"skeleton {self.name!r} stage {i}: empty options")
            # a stride-1 stage whose width could equal its input's would get a residual in
            # the derived model but not in the supernet (or vice versa): keep them apart
            if st.stride == 1 and set(st.widths) & set(prev):
                raise UserError(f"skeleton {self.name!r} stage {i} (stride 1) shares width "
                                f"options with {prev_name}: {sorted(set(st.widths) & set(prev))}"
                                "; make them disjoint")
            prev, prev_name = st.widths, f"stage {i}"


SKELETONS: Registry[MaskingSkeleton] = Registry("FBNetV2 skeleton")
H, R = "hswish", "relu"
# 28×28 (Fashion-MNIST, digits): 3 resolutions, 2·2·3·4·2 widths, 6 searched expansions.
SKELETONS.register("fbnetv2-fmnist", MaskingSkeleton(
    "fbnetv2-fmnist", 28, (28, 21, 14), (8, 16), (
        StageOptions(3, (12, 24), 1, 1, (1, 2, 3)),
        StageOptions(3, (16, 24, 32), 2, 2, (2, 3, 4, 6)),
        StageOptions(5, (40, 48, 56, 64), 2, 2, (2, 3, 4, 6), se=True, act=H),
        StageOptions(3, (72, 96), 1, 1, (3, 4, 6), se=True, act=H),
    ), last_pw=6.0, last_fc=256, in_channels=1,
))
# 32×32 (CIFAR-10): stride-1 stem, three stride-2 stages.
SKELETONS.register("fbnetv2-cifar", MaskingSkeleton(
    "fbnetv2-cifar", 32, (32, 24, 16), (16, 24), (
        StageOptions(3, (8, 12), 1, 1, (1, 3)),
        StageOptions(3, (24, 32, 40), 2, 2, (2, 4, 6)),
        StageOptions(5, (48, 56, 64), 2, 3, (2, 4, 6), se=True, act=H),
        StageOptions(3, (80, 96, 112, 128), 1, 3, (2, 4, 6), se=True, act=H),
        StageOptions(5, (160, 192, 224), 2, 2, (4, 6), se=True, act=H),
    ), last_pw=6.0, last_fc=512, stem_stride=1,
))
# ImageNet, in the spirit of the FBNetV2 paper's space (widths around FBNetV2-F4/L1).
SKELETONS.register("fbnetv2-imagenet", MaskingSkeleton(
    "fbnetv2-imagenet", 224, (224, 192, 160, 128), (8, 12, 16), (
        StageOptions(3, (20, 24, 28), 1, 1, (1,), act=H),
        StageOptions(5, (16, 24, 32), 2, 3, (1, 2, 3, 4, 5, 6), act=H),
        StageOptions(5, (40, 48, 56), 2, 4, (1, 2, 3, 4, 5, 6), se=True, act=H),
        StageOptions(5, (64, 72, 80, 88, 96, 104), 2, 4, (1, 2, 3, 4, 5, 6), act=H),
        StageOptions(5, (112, 120, 128, 136, 144), 1, 6, (1, 2, 3, 4, 5, 6), se=True, act=H),
        StageOptions(3, (184, 200, 216, 232, 248), 2, 5, (1, 2, 3, 4, 5, 6), se=True, act=H),
    ), last_pw=6.0, last_fc=1984, dropout=0.2, in_channels=3, num_classes=1000,
))


@dataclass(frozen=True)
class BlockSpec:
    """One searched inverted residual: which decisions set its input and output widths."""

    stage: int
    index: int  # block index (its expansion decision)
    kernel: int
    stride: int
    se: bool
    act: str
    in_decision: str  # "stem" or "stage{i}"
    out_decision: str
    in_widths: tuple[int, ...]
    out_widths: tuple[int, ...]
    expansions: tuple[float, ...]

    def hidden_table(self) -> list[list[int]]:
        """hidden[j][i] = get_divisible_by(in_widths[j] · expansions[i], 8)."""
        return [[hidden_width(c, e) for e in self.expansions] for c in self.in_widths]

    def se_table(self) -> list[list[int]]:
        return [[se_width(h, e, False) for h, e in zip(row, self.expansions)]
                for row in self.hidden_table()]


def family_stem_item(prefix: str, sk: Any, c: int, r: int, in_channels: int) -> LutItem:
    """The FBNetV2/V3 family's stem at width ``c``, input resized to ``r`` (``sk``: any
    skeleton with ``input_size`` and ``stem_stride``; ``prefix`` names the space's keys)."""
    key = LutKey(f"{prefix}stem", in_channels, c, sk.input_size, sk.input_size, sk.stem_stride,
                 extra=f"r{r}")

    def build() -> nn.Module:
        stem = ConvBNAct(in_channels, c, 3, sk.stem_stride, act="hswish")
        return nn.Sequential(InputResize(r), stem) if r != sk.input_size else stem

    return LutItem(key, build, (in_channels, sk.input_size, sk.input_size))


def family_head_item(prefix: str, sk: Any, c: int, h: int, num_classes: int) -> LutItem:
    """The family's head (1×1 to ``c·last_pw``, pool, FC ``last_fc``, classifier) on ``c``×h×h."""
    pw = get_divisible_by(c * sk.last_pw, 8)
    key = LutKey(f"{prefix}head", c, sk.last_fc, h, h, 1, extra=f"pw{pw}_cls{num_classes}")
    return LutItem(key, lambda: FBNetV2Head(c, pw, sk.last_fc, num_classes), (c, h, h))

class MaskingSpace(SearchSpace):
    def __init__(self, skeleton: str | MaskingSkeleton = "fbnetv2-fmnist") -> None:
        self.skeleton = SKELETONS.get(skeleton) if isinstance(skeleton, str) else skeleton
        sk = self.skeleton
        self.name = sk.name
        self.default_io = (sk.in_channels, sk.num_classes)
        self.input_size = sk.input_size
        self.blocks: list[BlockSpec] = []
        prev, prev_name = sk.stem, "stem"
        for si, st in enumerate(sk.stages):
            for j in range(st.repeats):
                self.blocks.append(BlockSpec(
                    si, len(self.blocks), st.kernel, st.stride if j == 0 else 1, st.se, st.act,
                    prev_name if j == 0 else f"stage{si}", f"stage{si}",
                    prev if j == 0 else st.widths, st.widths, st.expansions))
            prev, prev_name = st.widths, f"stage{si}"

    # -- decisions -------------------------------------------------------------------------------
    def decisions(self) -> list[tuple[str, tuple]]:
        """Every decision, in a fixed order: (name, options)."""
        sk = self.skeleton
        out: list[tuple[str, tuple]] = [("resolution", sk.resolutions), ("stem", sk.stem)]
        out += [(f"stage{i}", st.widths) for i, st in enumerate(sk.stages)]
        out += [(f"block{b.index}", b.expansions) for b in self.blocks]
        return out

    def arch_from_indices(self, idx: list[int]) -> Arch:
        opts = [o for _, o in self.decisions()]
        v = [o[i] for o, i in zip(opts, idx)]
        ns = len(self.skeleton.stages)
        return self.arch({"resolution": v[0], "stem": v[1], "widths": v[2:2 + ns],
                          "expansions": v[2 + ns:]})

    def indices(self, arch: Arch) -> list[int]:
        self.validate(arch)
        g = arch.genes
        vals = [g["resolution"], g["stem"], *g["widths"], *g["expansions"]]
        return [list(o).index(v) for (_, o), v in zip(self.decisions(), vals)]

    def arch(self, genes: dict) -> Arch:
        a = Arch(self.name, genes)
        self.validate(a)
        return a

    # -- SearchSpace -----------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        return self.arch_from_indices([int(rng.integers(len(o))) for _, o in self.decisions()])

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        idx = self.indices(arch)
        movable = [d for d, (_, o) in enumerate(self.decisions()) if len(o) > 1]
        if not movable:
            raise UserError(f"space {self.name!r} has a single architecture")
        d = movable[int(rng.integers(len(movable)))]
        n = len(self.decisions()[d][1])
        idx[d] = (idx[d] + 1 + int(rng.integers(n - 1))) % n
        return self.arch_from_indices(idx)

    def encode(self, arch: Arch) -> np.ndarray:
        idx = self.indices(arch)
        parts = []
        for (_, o), i in zip(self.decisions(), idx):
            v = np.zeros(len(o), dtype=np.float32)
            v[i] = 1.0
            parts.append(v)
        return np.concatenate(parts)

    def validate(self, arch: Arch) -> None:
        self.check_space(arch)
        g = arch.genes
        keys = {"resolution", "stem", "widths", "expansions"}
        if not isinstance(g, dict) or set(g) != keys:
            raise UserError(f"arch field 'genes' must be an object with keys {sorted(keys)}")
        ns, nb = len(self.skeleton.stages), len(self.blocks)
        for k, n in (("widths", ns), ("expansions", nb)):
            if not isinstance(g[k], (list, tuple)) or len(g[k]) != n:
                raise UserError(f"arch field genes.{k} must be a list of {n} values")
        vals = [("resolution", g["resolution"]), ("stem", g["stem"])]
        vals += [(f"widths[{i}]", v) for i, v in enumerate(g["widths"])]
        vals += [(f"expansions[{i}]", v) for i, v in enumerate(g["expansions"])]
        for (field, v), (_, opts) in zip(vals, self.decisions()):
            if v not in opts:
                raise UserError(f"arch field genes.{field} = {v!r} is not an option; choose "
                                f"from {list(opts)}")

    def setting(self, arch: Arch | None = None) -> ModelSetting:
        """The model setting of ``arch`` (None: the supernet's — every option at its largest)."""
        sk = self.skeleton
        if arch is None:
            stem, widths = max(sk.stem), [max(s.widths) for s in sk.stages]
            exps = [max(b.expansions) for b in self.blocks]
        else:
            self.validate(arch)
            stem, widths = arch.genes["stem"], arch.genes["widths"]
            exps = arch.genes["expansions"]
        stages: list[list[tuple]] = [[] for _ in sk.stages]
        for b, e in zip(self.blocks, exps):
            stages[b.stage].append((b.kernel, widths[b.stage], b.stride, 1, e, int(b.se), b.act))
        return ModelSetting(f"{self.name}-derived" if arch else f"{self.name}-supernet", stem,
                            tuple(tuple(s) for s in stages), last_pw=sk.last_pw,
                            last_fc=sk.last_fc, input_size=sk.input_size, dropout=sk.dropout,
                            always_pw=True, stem_stride=sk.stem_stride)

    def build(self, arch: Arch, num_classes: int, in_channels: int) -> FBNetV2Model:
        res = arch.genes["resolution"] if isinstance(arch.genes, dict) else None
        s = self.setting(arch)
        return FBNetV2Model(s, num_classes, in_channels,
                            input_resize=res if res != self.skeleton.input_size else None)

    def sizes(self, r: int) -> list[int]:
        """Spatial sizes at input resolution ``r``: stem output, then each block's (in, out)."""
        sk = self.skeleton
        h = conv_out(r, 3, sk.stem_stride)
        out = [h]
        for b in self.blocks:
            h2 = conv_out(h, b.kernel, b.stride)
            out += [h, h2]
            h = h2
        return out

    # -- latency table -------------------------------------------------------------------------
    def lut_stem(self, c: int, r: int, in_channels: int) -> LutItem:
        return family_stem_item("v2", self.skeleton, c, r, in_channels)

    def lut_block(self, b: BlockSpec, cin: int, e: float, cout: int, h: int) -> LutItem:
        se = "_se" if b.se else ""
        key = LutKey(f"v2ir_k{b.kernel}_e{e:g}{se}_{b.act}", cin, cout, h, h, b.stride)
        return LutItem(key, lambda: make_block(cin, b.kernel, cout, b.stride, e, b.se, b.act,
                                               {}, always_pw=True), (cin, h, h))

    def lut_head(self, c: int, h: int, num_classes: int) -> LutItem:
        return family_head_item("v2", self.skeleton, c, h, num_classes)

    def lut_items(self, num_classes: int, in_channels: int) -> list[LutItem]:
        """Every (option combination, resolution) of every layer."""
        sk = self.skeleton
        items = []
        for r in sk.resolutions:
            hs = self.sizes(r)
            items += [self.lut_stem(c, r, in_channels) for c in sk.stem]
            for b in self.blocks:
                pairs = (zip(b.in_widths, b.out_widths) if b.in_widths == b.out_widths
                         else itertools.product(b.in_widths, b.out_widths))
                for cin, cout in pairs:
                    items += [self.lut_block(b, cin, e, cout, hs[1 + 2 * b.index])
                              for e in b.expansions]
            items += [self.lut_head(c, hs[-1], num_classes) for c in sk.stages[-1].widths]
        return items

    def lut_keys(self, arch: Arch, num_classes: int, in_channels: int) -> list[LutKey]:
        self.validate(arch)
        g = arch.genes
        r, hs = g["resolution"], self.sizes(g["resolution"])
        keys = [self.lut_stem(g["stem"], r, in_channels).key]
        cin = g["stem"]
        for b, e in zip(self.blocks, g["expansions"]):
            cout = g["widths"][b.stage]
            keys.append(self.lut_block(b, cin, e, cout, hs[1 + 2 * b.index]).key)
            cin = cout
        keys.append(self.lut_head(cin, hs[-1], num_classes).key)
        return keys

    def cardinality(self) -> int:
        return math.prod(len(o) for _, o in self.decisions())

    def check_supernet_widths(self) -> None:
        """The supernet is built at max(c_in)·max(e); every option must fit inside it."""
        for b in self.blocks:
            hid, se = b.hidden_table(), b.se_table()
            hmax = hidden_width(max(b.in_widths), max(b.expansions))
            if max(itertools.chain(*hid)) > hmax:
                raise UserError(f"block {b.index}: a hidden option exceeds the supernet's {hmax}")
            if b.se and max(itertools.chain(*se)) > se_width(hmax, max(b.expansions), False):
                raise UserError(f"block {b.index}: an SE option exceeds the supernet's")


def register_spaces(register) -> None:  # noqa: ANN001
    for n in SKELETONS.names():
        register(n, lambda n=n: MaskingSpace(n))


__all__ = ["MaskingSpace", "MaskingSkeleton", "StageOptions", "SKELETONS", "BlockSpec",
           "register_spaces"]
