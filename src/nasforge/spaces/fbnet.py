"""The FBNet layer-wise space (METHODS §1): a fixed skeleton, one of 9 blocks per layer.

Skeletons are data (:class:`Skeleton` rows ``(channels, repeats, stride)``): the paper's
ImageNet skeleton (22 searchable layers) and scaled ones for 28×28 and 32×32 inputs. The stride
of a stage applies to its first layer. An architecture's genes are the list of block names, one
per searchable layer. ``build`` returns :class:`nasforge.models.fbnet.FBNetModel`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nasforge.arch import Arch
from nasforge.blocks import ConvBNAct
from nasforge.errors import UserError
from nasforge.models.fbnet import CANDIDATES, FBNetHead, FBNetModel, make_block
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace

CANDIDATE_NAMES: tuple[str, ...] = tuple(CANDIDATES)


@dataclass(frozen=True)
class LayerSpec:
    """A searchable layer's shape: what the LUT key and the cost tables are indexed by."""

    cin: int
    cout: int
    stride: int
    h: int  # input height
    w: int  # input width


@dataclass(frozen=True)
class Skeleton:
    name: str
    input_size: int
    stem_channels: int
    stem_stride: int
    stages: tuple[tuple[int, int, int], ...]  # (channels, repeats, stride)
    head_channels: int
    in_channels: int = 3  # defaults for LUT building without a data set
    num_classes: int = 10
    candidates: tuple[str, ...] = CANDIDATE_NAMES

    def layer_specs(self) -> list[LayerSpec]:
        h = _out_size(self.input_size, self.stem_stride)
        cin = self.stem_channels
        out: list[LayerSpec] = []
        for c, n, s in self.stages:
            for i in range(n):
                stride = s if i == 0 else 1
                out.append(LayerSpec(cin, c, stride, h, h))
                h = _out_size(h, stride)
                cin = c
        return out

    def final_size(self) -> int:
        specs = self.layer_specs()
        last = specs[-1]
        return _out_size(last.h, last.stride)


def _out_size(h: int, stride: int) -> int:
    return (h + stride - 1) // stride


SKELETONS: Registry[Skeleton] = Registry("FBNet skeleton")
SKELETONS.register("fbnet-imagenet", Skeleton(
    "fbnet-imagenet", 224, 16, 2,
    ((16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1)),
    1984, in_channels=3, num_classes=1000,
))
# 28×28 (Fashion-MNIST, digits): stride-2 stem (14²), one more stride-2 stage (7²), narrow,
# 9 searchable layers — sized so the found models sit around 100K params / a few MMACs.
SKELETONS.register("fbnet-fmnist", Skeleton(
    "fbnet-fmnist", 28, 16, 2,
    ((16, 1, 1), (24, 2, 1), (32, 2, 2), (48, 3, 1), (64, 1, 1)),
    256, in_channels=1,
))
# 28×28 under a short search budget (methods/fbnet.py picks it for `--space auto` when the
# planned search is short): 5 searchable layers at 7² and 4², so a soft supernet step costs
# about a quarter of fbnet-fmnist's and the supernet learns within a budget of seconds
# (figures in docs/fbnet.md).
SKELETONS.register("fbnet-small", Skeleton(
    "fbnet-small", 28, 16, 2,
    ((16, 1, 2), (24, 1, 1), (32, 1, 2), (48, 1, 1), (64, 1, 1)),
    256, in_channels=1,
))
# 32×32 (CIFAR-10): three stride-2 stages, 13 searchable layers.
SKELETONS.register("fbnet-cifar", Skeleton(
    "fbnet-cifar", 32, 16, 1,
    ((16, 1, 1), (24, 2, 1), (32, 3, 2), (64, 3, 2), (96, 2, 1), (160, 1, 2), (320, 1, 1)),
    640,
))


class FBNetSpace(SearchSpace):
    def __init__(self, skeleton: str | Skeleton = "fbnet-fmnist") -> None:
        self.skeleton = SKELETONS.get(skeleton) if isinstance(skeleton, str) else skeleton
        self.name = self.skeleton.name
        self.specs = self.skeleton.layer_specs()
        self.candidates = self.skeleton.candidates
        self.default_io = (self.skeleton.in_channels, self.skeleton.num_classes)
        self.input_size = self.skeleton.input_size

    @property
    def num_layers(self) -> int:
        return len(self.specs)

    def arch(self, blocks: list[str]) -> Arch:
        a = Arch(self.name, list(blocks))
        self.validate(a)
        return a

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.arch([self.candidates[i] for i in rng.integers(0, len(self.candidates),
                                                                    self.num_layers)])

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        genes = list(arch.genes)
        i = int(rng.integers(self.num_layers))
        others = [c for c in self.candidates if c != genes[i]]
        genes[i] = others[int(rng.integers(len(others)))]
        return self.arch(genes)

    def encode(self, arch: Arch) -> np.ndarray:
        self.validate(arch)
        v = np.zeros((self.num_layers, len(self.candidates)), dtype=np.float32)
        for i, b in enumerate(arch.genes):
            v[i, self.candidates.index(b)] = 1.0
        return v.ravel()

    def validate(self, arch: Arch) -> None:
        self.check_space(arch)
        g = arch.genes
        if not isinstance(g, (list, tuple)):
            raise UserError(f"arch field 'genes' must be a list of block names, got "
                            f"{type(g).__name__}")
        if len(g) != self.num_layers:
            raise UserError(f"arch field 'genes' has {len(g)} layers; space {self.name!r} has "
                            f"{self.num_layers} searchable layers")
        for i, b in enumerate(g):
            if not isinstance(b, str):
                raise UserError(f"arch field genes[{i}] must be a block name string, got "
                                f"{type(b).__name__}")
            if b not in self.candidates:
                raise UserError(f"arch field genes[{i}]: unknown block {b!r}; choose from "
                                f"{list(self.candidates)}")

    def build(self, arch: Arch, num_classes: int, in_channels: int,
              dropout: float = 0.0) -> FBNetModel:
        self.validate(arch)
        return FBNetModel(self.skeleton, list(arch.genes), num_classes, in_channels, dropout)

    def cardinality(self) -> int:
        return len(self.candidates) ** self.num_layers

    def lut_items(self, num_classes: int, in_channels: int) -> list:
        return cost_tables(self, num_classes, in_channels)[1]

    def lut_keys(self, arch: Arch, num_classes: int, in_channels: int) -> list:
        self.validate(arch)
        # cost_tables counts MACs of every candidate (seconds): keep it per (classes, channels)
        cache = self.__dict__.setdefault("_lut_tables", {})
        if (num_classes, in_channels) not in cache:
            cache[num_classes, in_channels] = cost_tables(self, num_classes, in_channels)[0]
        return cache[num_classes, in_channels].arch_keys(list(arch.genes))


def cost_tables(space: FBNetSpace, num_classes: int, in_channels: int):  # noqa: ANN201
    """MACs/params/LUT keys of every (layer, candidate) and of the stem and head."""
    from nasforge.cost.flops import count_module
    from nasforge.cost.lut import LutItem, LutKey
    from nasforge.cost.tables import CostTables

    sk = space.skeleton
    h = sk.input_size
    items: list[LutItem] = []
    macs, params, keys = [], [], []
    for s in space.specs:
        rm, rp, rk = [], [], []
        for c in space.candidates:
            key = LutKey(c, s.cin, s.cout, s.h, s.w, s.stride)
            c_ = count_module(make_block(c, s.cin, s.cout, s.stride), (s.cin, s.h, s.w))
            rm.append(c_.macs)
            rp.append(c_.params)
            rk.append(key)
            items.append(LutItem(key, lambda c=c, s=s: make_block(c, s.cin, s.cout, s.stride),
                                 (s.cin, s.h, s.w)))
        macs.append(rm)
        params.append(rp)
        keys.append(rk)
    stem_key = LutKey("stem", in_channels, sk.stem_channels, h, h, sk.stem_stride)
    stem_shape = (in_channels, h, h)
    stem_build = lambda: ConvBNAct(in_channels, sk.stem_channels, 3, sk.stem_stride)  # noqa: E731
    fh = sk.final_size()
    last = sk.stages[-1][0]
    head_key = LutKey("head", last, sk.head_channels, fh, fh, 1, extra=f"classes={num_classes}")
    head_build = lambda: FBNetHead(last, sk.head_channels, num_classes)  # noqa: E731
    head_shape = (last, fh, fh)
    items += [LutItem(stem_key, stem_build, stem_shape), LutItem(head_key, head_build, head_shape)]
    fixed = count_module(stem_build(), stem_shape) + count_module(head_build(), head_shape)
    tables = CostTables(space.candidates, macs, params, keys, fixed.macs, fixed.params,
                        [stem_key, head_key])
    return tables, items
