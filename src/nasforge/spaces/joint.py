"""FBNetV3's joint space Ω = architecture × training recipe (METHODS §3).

**Architecture** (the FBNetV2/V3 model family of :mod:`nasforge.models.fbnetv2`): the input
resolution, the stem width, and per stage its kernel, expansion, width and depth (repeats);
an architecture becomes a :class:`~nasforge.models.fbnetv2.ModelSetting` (rows
``[k, c, s, n, e, se, act]``) and is built by the same builder as the zoo models — a
resolution below the data's is a nearest-neighbour subsampling first layer, as in the FBNetV2
space.

**Recipe**: optimizer (SGD / RMSProp / AdamW), initial lr (a multiple of the optimizer's base
lr, so one scale means the same thing for every optimizer), weight decay, mixup α, dropout,
stochastic-depth rate, EMA on/off and epochs — each mapped to a field of
:class:`~nasforge.train.trainer.Recipe` by :meth:`JointSpace.recipe`, which the trainer
implements for real.

Genes::

    {"resolution": 20, "stem": 8, "kernels": [3, 5, 5, 3], "expansions": [1, 3, 4, 6],
     "widths": [12, 24, 48, 80], "depths": [1, 2, 2, 1],
     "recipe": {"optimizer": "sgd", "lr_scale": 1.0, "weight_decay": 5e-05, "mixup": 0.0,
                "dropout": 0.1, "drop_path": 0.05, "ema": true, "epochs": 12}}

Every decision is one entry of :meth:`JointSpace.decisions` (Sobol points map onto them,
crossover mixes them); the predictor sees architecture and recipe decisions apart
(:meth:`arch_encoding`, :meth:`recipe_encoding`: numbers normalised, the rest one-hot).
MACs and params are counted analytically (:func:`~nasforge.models.fbnetv2.setting_counts`),
cheap enough for a genetic search to price thousands of children.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasforge.arch import Arch, thaw
from nasforge.cost.effective import conv_out
from nasforge.cost.flops import Counts
from nasforge.cost.lut import LutItem, LutKey
from nasforge.errors import UserError
from nasforge.models.fbnetv2 import (
    FBNetV2Model,
    ModelSetting,
    make_block,
    setting_counts,
)
from nasforge.predictor.encoding import Encoding, Feature
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace
from nasforge.spaces.masking import family_head_item, family_stem_item

ARCH_LISTS = ("kernels", "expansions", "widths", "depths")
RECIPE_KEYS = ("optimizer", "lr_scale", "weight_decay", "mixup", "dropout", "drop_path",
               "ema", "epochs")


@dataclass(frozen=True)
class JointStage:
    stride: int
    widths: tuple[int, ...]
    kernels: tuple[int, ...] = (3, 5)
    expansions: tuple[float, ...] = (2, 4, 6)
    depths: tuple[int, ...] = (1, 2)
    se: bool = False
    act: str = "relu"


@dataclass(frozen=True)
class RecipeChoices:
    """The recipe half of Ω, and the values a chosen recipe does not search."""

    optimizers: tuple[str, ...] = ("sgd", "rmsprop", "adamw")
    lr_scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    weight_decays: tuple[float, ...] = (1e-5, 5e-5, 1e-4, 5e-4)
    mixups: tuple[float, ...] = (0.0, 0.2, 0.4)
    dropouts: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    drop_paths: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
    emas: tuple[bool, ...] = (False, True)
    epochs: tuple[int, ...] = (8, 12, 16)
    #: (choice) base lr per optimizer: lr = base · lr_scale
    base_lr: tuple[tuple[str, float], ...] = (("sgd", 0.1), ("rmsprop", 0.01),
                                              ("adamw", 0.003))
    ema_decay: float = 0.99  # (choice) small data sets: a few hundred steps per training

    def options(self) -> list[tuple[str, tuple]]:
        return [("optimizer", self.optimizers), ("lr_scale", self.lr_scales),
                ("weight_decay", self.weight_decays), ("mixup", self.mixups),
                ("dropout", self.dropouts), ("drop_path", self.drop_paths),
                ("ema", self.emas), ("epochs", self.epochs)]


#: the recipe the trainer uses when nothing is searched (Recipe's defaults), in genes
DEFAULT_RECIPE = {"optimizer": "sgd", "lr_scale": 1.0, "weight_decay": 5e-4, "mixup": 0.0,
                  "dropout": 0.0, "drop_path": 0.0, "ema": False}


@dataclass(frozen=True)
class JointSkeleton:
    name: str
    input_size: int
    resolutions: tuple[int, ...]
    stem: tuple[int, ...]
    stages: tuple[JointStage, ...]
    last_pw: float = 4.0
    last_fc: int = 256
    stem_stride: int = 2
    in_channels: int = 3
    num_classes: int = 10
    recipe: RecipeChoices = field(default_factory=RecipeChoices)

    def __post_init__(self) -> None:
        if not self.resolutions or max(self.resolutions) != self.input_size:
            raise UserError(f"skeleton {self.name!r}: the largest resolution must be the input "
                            f"size {self.input_size}, got {self.resolutions}")


SKELETONS: Registry[JointSkeleton] = Registry("joint skeleton")
H, R = "hswish", "relu"
# 28×28 (digits, Fashion-MNIST): small enough that a trial trains in seconds on a CPU
SKELETONS.register("joint-fmnist", JointSkeleton(
    "joint-fmnist", 28, (28, 20, 16, 12), (8, 16), (
        JointStage(1, (8, 12, 16), (3, 5), (1, 2), (1, 2)),
        JointStage(2, (16, 24, 32), (3, 5), (2, 3, 4), (1, 2, 3)),
        JointStage(2, (32, 48, 64), (3, 5), (2, 3, 4), (1, 2, 3), se=True, act=H),
        JointStage(1, (64, 80, 96), (3, 5), (3, 4, 6), (1, 2), se=True, act=H),
    ), in_channels=1))
# 32×32 (CIFAR-10): stride-1 stem, three stride-2 stages
SKELETONS.register("joint-cifar", JointSkeleton(
    "joint-cifar", 32, (32, 28, 24), (16, 24), (
        JointStage(1, (8, 16), (3, 5), (1,), (1,)),
        JointStage(2, (24, 32, 40), (3, 5), (2, 4, 6), (1, 2, 3)),
        JointStage(2, (48, 56, 64), (3, 5), (2, 4, 6), (1, 2, 3), se=True, act=H),
        JointStage(1, (80, 96, 112), (3, 5), (2, 4, 6), (1, 2, 3), se=True, act=H),
        JointStage(2, (160, 192), (3, 5), (4, 6), (1, 2), se=True, act=H),
    ), last_pw=6.0, last_fc=512, stem_stride=1,
    recipe=RecipeChoices(epochs=(30, 60, 90))))


class JointSpace(SearchSpace):
    def __init__(self, skeleton: str | JointSkeleton = "joint-fmnist") -> None:
        self.skeleton = SKELETONS.get(skeleton) if isinstance(skeleton, str) else skeleton
        sk = self.skeleton
        self.name = sk.name
        self.input_size = sk.input_size
        self.default_io = (sk.in_channels, sk.num_classes)
        self._base_lr = dict(sk.recipe.base_lr)
        missing = set(sk.recipe.optimizers) - set(self._base_lr)
        if missing:
            raise UserError(f"skeleton {sk.name!r}: no base lr for optimizer(s) {sorted(missing)}")

    # -- decisions -----------------------------------------------------------------------------
    def arch_decisions(self) -> list[tuple[str, tuple]]:
        sk = self.skeleton
        out: list[tuple[str, tuple]] = [("resolution", sk.resolutions), ("stem", sk.stem)]
        for key, attr in zip(ARCH_LISTS, ("kernels", "expansions", "widths", "depths")):
            out += [(f"{key}[{i}]", tuple(getattr(st, attr))) for i, st in
                    enumerate(sk.stages)]
        return out

    def recipe_decisions(self) -> list[tuple[str, tuple]]:
        return [(f"recipe.{k}", v) for k, v in self.skeleton.recipe.options()]

    def decisions(self) -> list[tuple[str, tuple]]:
        """Every decision in a fixed order: architecture, then recipe."""
        return self.arch_decisions() + self.recipe_decisions()

    def _values(self, arch: Arch) -> list[Any]:
        g = arch.genes
        vals = [g["resolution"], g["stem"]]
        for key in ARCH_LISTS:
            vals += list(g[key])
        return vals + [g["recipe"][k] for k in RECIPE_KEYS]

    def indices(self, arch: Arch) -> list[int]:
        self.validate(arch)
        return [list(o).index(v) for (_, o), v in zip(self.decisions(), self._values(arch))]

    def arch_from_indices(self, idx: list[int]) -> Arch:
        dec = self.decisions()
        if len(idx) != len(dec):
            raise UserError(f"{len(idx)} indices for {len(dec)} decisions")
        v = [o[int(i)] for (_, o), i in zip(dec, idx)]
        n = len(self.skeleton.stages)
        genes: dict[str, Any] = {"resolution": v[0], "stem": v[1]}
        for j, key in enumerate(ARCH_LISTS):
            genes[key] = v[2 + j * n:2 + (j + 1) * n]
        genes["recipe"] = dict(zip(RECIPE_KEYS, v[2 + 4 * n:]))
        return self.arch(genes)

    def arch(self, genes: dict[str, Any]) -> Arch:
        a = Arch(self.name, genes)
        self.validate(a)
        return a

    def with_recipe(self, arch: Arch, recipe: dict[str, Any]) -> Arch:
        """``arch`` with its recipe genes replaced (e.g. by :data:`DEFAULT_RECIPE`)."""
        g = thaw(arch.genes)
        g["recipe"] = {**g["recipe"], **recipe}
        return self.arch(g)

    # -- SearchSpace ---------------------------------------------------------------------------
    def validate(self, arch: Arch) -> None:
        self.check_space(arch)
        g = arch.genes
        keys = {"resolution", "stem", *ARCH_LISTS, "recipe"}
        if not isinstance(g, dict) or set(g) != keys:
            raise UserError(f"arch field 'genes' must be an object with keys {sorted(keys)}")
        n = len(self.skeleton.stages)
        for k in ARCH_LISTS:
            if not isinstance(g[k], (list, tuple)) or len(g[k]) != n:
                raise UserError(f"arch field genes.{k} must be a list of {n} values")
        if not isinstance(g["recipe"], dict) or set(g["recipe"]) != set(RECIPE_KEYS):
            raise UserError(f"arch field genes.recipe must be an object with keys "
                            f"{sorted(RECIPE_KEYS)}")
        for (name, opts), v in zip(self.decisions(), self._values(arch)):
            if isinstance(v, bool) != any(isinstance(o, bool) for o in opts) or v not in opts:
                raise UserError(f"arch field genes.{name} = {v!r} is not an option; choose "
                                f"from {list(opts)}")

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.arch_from_indices([int(rng.integers(len(o))) for _, o in self.decisions()])

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        idx = self.indices(arch)
        movable = [d for d, (_, o) in enumerate(self.decisions()) if len(o) > 1]
        d = movable[int(rng.integers(len(movable)))]
        n = len(self.decisions()[d][1])
        idx[d] = (idx[d] + 1 + int(rng.integers(n - 1))) % n
        return self.arch_from_indices(idx)

    def encode(self, arch: Arch) -> np.ndarray:
        a, r = self.split_values(arch)
        return np.concatenate([self.arch_encoding().encode(a), self.recipe_encoding().encode(r)])

    def cardinality(self) -> int:
        return math.prod(len(o) for _, o in self.decisions())

    # -- the predictor's view ------------------------------------------------------------------
    @staticmethod
    def _features(decs: list[tuple[str, tuple]]) -> Encoding:
        feats = []
        for name, opts in decs:
            numeric = all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in opts)
            log = numeric and min(opts) > 0 and max(opts) / min(opts) > 10
            feats.append(Feature(name, tuple(opts), numeric, log))
        return Encoding(tuple(feats))

    def arch_encoding(self) -> Encoding:
        return self._features(self.arch_decisions())

    def recipe_encoding(self) -> Encoding:
        return self._features(self.recipe_decisions())

    def split_values(self, arch: Arch) -> tuple[dict[str, Any], dict[str, Any]]:
        self.validate(arch)
        vals = self._values(arch)
        na = len(self.arch_decisions())
        names = [n for n, _ in self.decisions()]
        return dict(zip(names[:na], vals[:na])), dict(zip(names[na:], vals[na:]))

    # -- the network and its training --------------------------------------------------------
    def setting(self, arch: Arch) -> ModelSetting:
        self.validate(arch)
        g, sk = arch.genes, self.skeleton
        stages = tuple(((k, c, st.stride, n, e, int(st.se), st.act),)
                       for st, k, e, c, n in zip(sk.stages, g["kernels"], g["expansions"],
                                                 g["widths"], g["depths"]))
        return ModelSetting(f"{self.name}-derived", g["stem"], stages, last_pw=sk.last_pw,
                            last_fc=sk.last_fc, input_size=sk.input_size,
                            dropout=g["recipe"]["dropout"], stem_stride=sk.stem_stride)

    def build(self, arch: Arch, num_classes: int, in_channels: int) -> FBNetV2Model:
        res = arch.genes["resolution"] if isinstance(arch.genes, dict) else None
        s = self.setting(arch)
        return FBNetV2Model(s, num_classes, in_channels,
                            input_resize=res if res != self.skeleton.input_size else None,
                            drop_path=arch.genes["recipe"]["drop_path"])

    def counts(self, arch: Arch, num_classes: int, in_channels: int) -> Counts:
        """MACs and params without building the model (the input is subsampled first)."""
        return setting_counts(self.setting(arch), num_classes, in_channels,
                              input_size=arch.genes["resolution"])

    def analytic_counts(self, num_classes: int, in_channels: int):  # noqa: ANN201
        """The counter :class:`~nasforge.cost.model.CostModel` uses for this space."""
        def count(arch: Arch) -> tuple[int, int]:
            c = self.counts(arch, num_classes, in_channels)
            return c.macs, c.params
        return count

    # -- latency table (the FBNetV2/V3 family's: stem, one item per block, head) ---------------
    def _sizes(self, r: int) -> list[int]:
        """Spatial size after the stem, then after each stage, at input resolution ``r``."""
        h = conv_out(r, 3, self.skeleton.stem_stride)
        out = [h]
        for st in self.skeleton.stages:
            h = conv_out(h, 3, st.stride)  # odd kernels, 'same' padding: any k gives this
            out.append(h)
        return out

    def lut_stem(self, c: int, r: int, in_channels: int) -> LutItem:
        return family_stem_item("j", self.skeleton, c, r, in_channels)

    def lut_block(self, st: JointStage, cin: int, k: int, e: float, cout: int, stride: int,
                  h: int) -> LutItem:
        se = "_se" if st.se else ""
        key = LutKey(f"jir_k{k}_e{e:g}{se}_{st.act}", cin, cout, h, h, stride)
        return LutItem(key, lambda: make_block(cin, k, cout, stride, e, st.se, st.act, {}),
                       (cin, h, h))

    def lut_head(self, c: int, h: int, num_classes: int) -> LutItem:
        return family_head_item("j", self.skeleton, c, h, num_classes)

    def lut_items(self, num_classes: int, in_channels: int) -> list[LutItem]:
        """Every (resolution, input width, kernel, expansion, output width) of every stage's
        first block, its repeats (stride 1, width kept), the stems and the heads."""
        sk = self.skeleton
        items: dict[str, LutItem] = {}

        def add(i: LutItem) -> None:
            items.setdefault(str(i.key), i)

        for r in sk.resolutions:
            hs = self._sizes(r)
            for c in sk.stem:
                add(self.lut_stem(c, r, in_channels))
            cins: tuple[int, ...] = sk.stem
            for si, st in enumerate(sk.stages):
                for cin in cins:
                    for cout in st.widths:
                        for k in st.kernels:
                            for e in st.expansions:
                                add(self.lut_block(st, cin, k, e, cout, st.stride, hs[si]))
                                if max(st.depths) > 1:
                                    add(self.lut_block(st, cout, k, e, cout, 1, hs[si + 1]))
                cins = st.widths
            for c in sk.stages[-1].widths:
                add(self.lut_head(c, hs[-1], num_classes))
        return list(items.values())

    def lut_keys(self, arch: Arch, num_classes: int, in_channels: int) -> list[LutKey]:
        """The items ``arch``'s network is made of (its recipe genes cost nothing)."""
        self.validate(arch)
        g, sk = arch.genes, self.skeleton
        hs = self._sizes(g["resolution"])
        keys = [self.lut_stem(g["stem"], g["resolution"], in_channels).key]
        cin = g["stem"]
        for si, st in enumerate(sk.stages):
            k, e, cout, n = (g["kernels"][si], g["expansions"][si], g["widths"][si],
                             g["depths"][si])
            keys.append(self.lut_block(st, cin, k, e, cout, st.stride, hs[si]).key)
            keys += [self.lut_block(st, cout, k, e, cout, 1, hs[si + 1]).key] * (n - 1)
            cin = cout
        keys.append(self.lut_head(cin, hs[-1], num_classes).key)
        return keys

    def recipe(self, arch: Arch) -> dict[str, Any]:
        """The :class:`~nasforge.train.trainer.Recipe` fields ``arch``'s recipe genes set."""
        self.validate(arch)
        r = arch.genes["recipe"]
        return {"optimizer": r["optimizer"],
                "lr": self._base_lr[r["optimizer"]] * r["lr_scale"],
                "weight_decay": r["weight_decay"], "mixup": r["mixup"],
                "dropout": r["dropout"], "drop_path": r["drop_path"],
                "drop_path_schedule": "constant",
                "ema": self.skeleton.recipe.ema_decay if r["ema"] else 0.0,
                "epochs": r["epochs"]}

    def describe(self, arch: Arch) -> str:
        g = arch.genes
        rows = [f"resolution {g['resolution']}, stem {g['stem']}"]
        for i, st in enumerate(self.skeleton.stages):
            rows.append(f"stage {i}: k{g['kernels'][i]} e{g['expansions'][i]:g} "
                        f"c{g['widths'][i]} n{g['depths'][i]} s{st.stride}")
        rows.append("recipe: " + ", ".join(f"{k}={v}" for k, v in self.recipe(arch).items()))
        return "\n".join(rows)


def register_spaces(register) -> None:  # noqa: ANN001
    for n in SKELETONS.names():
        register(n, lambda n=n: JointSpace(n))


__all__ = ["JointSpace", "JointSkeleton", "JointStage", "RecipeChoices", "SKELETONS",
           "DEFAULT_RECIPE", "register_spaces"]
