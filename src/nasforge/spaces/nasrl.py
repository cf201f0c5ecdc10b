"""NAS-RL's CIFAR-10 macro space (Zoph & Le; METHODS §6, issue 12): a chain of ``layers``
convolutions, each choosing a filter height and width ∈ {1, 3, 5, 7}, a number of filters ∈
{24, 36, 48, 64} (and, in the paper's second experiment, a stride ∈ {1, 2, 3}), and its skip
connections: the set of earlier layers it takes as input. The network and the paper's rules for
merging inputs (depth concatenation, zero padding, the image when a layer takes none, the
unconnected outputs into the classifier) are :mod:`nasforge.models.nasrl`.

Genes are a list of layers::

    [{"kh": 3, "kw": 3, "filters": 36, "stride": 1, "inputs": []},
     {"kh": 5, "kw": 1, "filters": 48, "stride": 1, "inputs": [0]}, …]

(``inputs``: earlier layer indices, ascending; empty for the first layer, which takes the
image). The decisions per layer, in the paper's order: filter height, filter width, stride (when
the space has more than one), number of filters, then the **anchor point**: the layer's inputs.
Q-learning and random walks take an anchor as one action (a subset of the earlier layers);
REINFORCE samples it as NAS-RL does, one sigmoid per earlier layer
(:mod:`nasforge.strategies.reinforce`; :meth:`NASRLSpace.anchor_sources`).

Spaces: ``nasrl`` (strides fixed to 1, the paper's first CIFAR-10 experiment) and
``nasrl-strided`` (strides ∈ {1, 2, 3}, its second), both with 6 layers — the depth NAS-RL's
search started from (it grew by 2 every 1,600 samples; ``layers`` is a space parameter).
Declared at 32² (CIFAR-10); the network takes any input size.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasforge.arch import Arch, thaw
from nasforge.errors import UserError
from nasforge.models.nasrl import LayerSpec, NASRLNetwork, unconnected
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace
from nasforge.spaces.decisions import DecisionSequence

KEYS = ("kh", "kw", "filters", "stride", "inputs")
#: the most layers a space may have (an anchor action enumerates up to 2^(layers-1) subsets)
MAX_LAYERS = 16


@dataclass(frozen=True)
class NASRLConfig:
    name: str
    layers: int = 6  # (paper) the search's starting depth
    kernels: tuple[int, ...] = (1, 3, 5, 7)  # (paper) filter height and width
    filters: tuple[int, ...] = (24, 36, 48, 64)  # (paper)
    strides: tuple[int, ...] = (1,)  # (paper) 1, or (1, 2, 3) in the second experiment
    input_size: int = 32
    in_channels: int = 3
    num_classes: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.layers <= MAX_LAYERS:
            raise UserError(f"NAS-RL space {self.name!r}: layers must be in 1 … {MAX_LAYERS}, "
                            f"got {self.layers}")
        for what, vals in (("kernels", self.kernels), ("filters", self.filters),
                           ("strides", self.strides)):
            if not vals or any(not isinstance(v, int) or v < 1 for v in vals) \
                    or len(set(vals)) != len(vals):
                raise UserError(f"NAS-RL space {self.name!r}: {what} must be distinct positive "
                                f"integers, got {vals}")
        if any(k % 2 == 0 for k in self.kernels):
            raise UserError(f"NAS-RL space {self.name!r}: kernels must be odd ('same' padding), "
                            f"got {self.kernels}")


CONFIGS: Registry[NASRLConfig] = Registry("NAS-RL space")
CONFIGS.register("nasrl", NASRLConfig("nasrl"))
CONFIGS.register("nasrl-strided", NASRLConfig("nasrl-strided", strides=(1, 2, 3)))


def subsets(n: int) -> list[list[int]]:
    """Every subset of ``0 … n − 1`` as an ascending list (the anchor actions of layer n)."""
    return [list(c) for r in range(n + 1) for c in itertools.combinations(range(n), r)]


class NASRLSpace(DecisionSequence, SearchSpace):
    """NAS-RL's layers and skip connections; ``build`` gives the network."""

    def __init__(self, config: str | NASRLConfig = "nasrl") -> None:
        self.cfg = CONFIGS.get(config) if isinstance(config, str) else config
        self.name = self.cfg.name
        self.input_size = self.cfg.input_size
        self.default_io = (self.cfg.in_channels, self.cfg.num_classes)
        c = self.cfg
        self._fields: list[tuple[str, tuple[int, ...]]] = [("kh", c.kernels), ("kw", c.kernels)]
        if len(c.strides) > 1:
            self._fields.append(("stride", c.strides))
        self._fields.append(("filters", c.filters))
        self._per_layer = len(self._fields) + 1  # + the anchor point

    # -- the layers ---------------------------------------------------------------------------
    def layers(self, arch: Arch) -> list[LayerSpec]:
        """The validated layers of ``arch``."""
        self.check_space(arch)
        return self.parse(thaw(arch.genes))

    def parse(self, genes: object) -> list[LayerSpec]:
        c = self.cfg
        if not isinstance(genes, list) or len(genes) != c.layers:
            raise UserError(f"a {self.name} architecture is a list of {c.layers} layers "
                            f"{{{', '.join(KEYS)}}}, got "
                            f"{len(genes) if isinstance(genes, list) else type(genes).__name__}"
                            f"{' layers' if isinstance(genes, list) else ''}")
        out = []
        for i, row in enumerate(genes):
            where = f"{self.name} layer {i}"
            if not isinstance(row, dict) or set(row) != set(KEYS):
                raise UserError(f"{where}: expected an object with keys {list(KEYS)}, got "
                                f"{row!r}")
            for key, allowed in (("kh", c.kernels), ("kw", c.kernels), ("filters", c.filters),
                                 ("stride", c.strides)):
                v = row[key]
                if isinstance(v, bool) or v not in allowed:
                    raise UserError(f"{where}: {key} {v!r} is not one of {list(allowed)}")
            inputs = row["inputs"]
            if not isinstance(inputs, list) or any(
                    not isinstance(j, int) or isinstance(j, bool) for j in inputs):
                raise UserError(f"{where}: inputs must be a list of earlier layer indices, got "
                                f"{inputs!r}")
            if any(not 0 <= j < i for j in inputs) or inputs != sorted(set(inputs)):
                raise UserError(f"{where}: inputs {inputs} must be distinct earlier layers "
                                f"(0 … {i - 1}) in ascending order; [] takes the image")
            out.append(LayerSpec(row["kh"], row["kw"], row["filters"], row["stride"],
                                 tuple(inputs)))
        return out

    def arch(self, layers: list[dict[str, Any]]) -> Arch:
        a = Arch(self.name, layers)
        self.validate(a)
        return a

    def decode(self, code: list | np.ndarray) -> Arch:
        """An ``Arch`` from genes JSON (a list of layer objects) or an :meth:`encode` vector
        (per choice the largest entry; an input bit > 0.5 is a connection)."""
        if isinstance(code, list) and all(isinstance(r, dict) for r in code):
            return self.arch(code)
        c, n = self.cfg, self.cfg.layers
        v = np.asarray(code, dtype=np.float64)
        per = 2 * len(c.kernels) + len(c.filters) + len(c.strides) + n
        if v.shape != (n * per,):
            raise UserError(f"an encoded {self.name} architecture has {n * per} values, got "
                            f"shape {v.shape}")
        layers = []
        for i, row in enumerate(v.reshape(n, per)):
            parts, o = [], 0
            for vals in (c.kernels, c.kernels, c.filters, c.strides):
                parts.append(vals[int(row[o:o + len(vals)].argmax())])
                o += len(vals)
            layers.append({"kh": parts[0], "kw": parts[1], "filters": parts[2],
                           "stride": parts[3],
                           "inputs": [j for j in range(i) if row[o + j] > 0.5]})
        return self.arch(layers)

    def describe(self, arch: Arch) -> str:
        lays = self.layers(arch)
        out = [f"  {i}  {s.kh}x{s.kw} conv, {s.filters} filters, stride {s.stride}  <- "
               + (", ".join(map(str, s.inputs)) if s.inputs else "image")
               for i, s in enumerate(lays)]
        out.append("  classifier <- concat(" + ", ".join(map(str, unconnected(lays))) + ")")
        return "\n".join(out)

    # -- decisions (the sequential view) and anchor points -------------------------------------
    def decisions(self) -> list[tuple[str, list]]:
        out: list[tuple[str, list]] = []
        for i in range(self.cfg.layers):
            out += [(k, list(v)) for k, v in self._fields]
            out.append(("inputs", subsets(i)))
        return out

    def decision_values(self, arch: Arch) -> list:
        return [v for s in self.layers(arch) for v in
                [getattr(s, k) for k, _ in self._fields] + [list(s.inputs)]]

    def from_decision_values(self, values: list) -> Arch:
        n = self._per_layer
        if len(values) != n * self.cfg.layers:
            raise UserError(f"a {self.name} architecture takes {n * self.cfg.layers} decisions, "
                            f"got {len(values)}")
        layers = []
        for i in range(self.cfg.layers):
            row = dict(zip([k for k, _ in self._fields], values[i * n:i * n + n - 1]))
            row.setdefault("stride", self.cfg.strides[0])
            row["inputs"] = list(values[i * n + n - 1])
            layers.append(row)
        return self.arch(layers)

    def token(self, action: Any) -> Any:
        """An anchor point's token is ``["inputs"]`` (its value is a set of layers, sampled by
        REINFORCE's sigmoids, not a vocabulary entry)."""
        return ["inputs"] if action[0] == "inputs" else [action[0], action[1]]

    def anchor_sources(self, prefix: list) -> list[int] | None:
        """The earlier anchor points (= layers) the next decision may connect, when it is
        layer ``i``'s anchor point; None for any other decision."""
        t = len(prefix)
        if t >= self._per_layer * self.cfg.layers or t % self._per_layer != self._per_layer - 1:
            return None
        return list(range(t // self._per_layer))

    def anchor_action(self, prefix: list, chosen: list[int]) -> list:
        return ["inputs", sorted(int(j) for j in chosen)]

    def anchor_chosen(self, action: Any) -> list[int]:
        return [int(j) for j in action[1]]

    # -- SearchSpace --------------------------------------------------------------------------
    def validate(self, arch: Arch) -> None:
        self.layers(arch)

    def sample(self, rng: np.random.Generator) -> Arch:
        c = self.cfg
        layers = []
        for i in range(c.layers):
            row = {k: int(v[int(rng.integers(len(v)))]) for k, v in
                   (("kh", c.kernels), ("kw", c.kernels), ("filters", c.filters),
                    ("stride", c.strides))}
            row["inputs"] = [j for j in range(i) if rng.random() < 0.5]
            layers.append(row)
        return self.arch(layers)

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """Change one choice of one layer (another kernel height or width, number of filters
        or stride), or add or remove one of its skip connections."""
        c = self.cfg
        layers = thaw(arch.genes)
        self.validate(arch)
        for _ in range(100):
            i = int(rng.integers(c.layers))
            fields = [(k, v) for k, v in (("kh", c.kernels), ("kw", c.kernels),
                                          ("filters", c.filters), ("stride", c.strides))
                      if len(v) > 1] + ([("inputs", None)] if i else [])
            if not fields:
                continue
            key, vals = fields[int(rng.integers(len(fields)))]
            if key == "inputs":
                j = int(rng.integers(i))
                layers[i]["inputs"] = sorted(set(layers[i]["inputs"]) ^ {j})
            else:
                others = [v for v in vals if v != layers[i][key]]
                layers[i][key] = int(others[int(rng.integers(len(others)))])
            return self.arch(layers)
        raise UserError(f"space {self.name!r} has a single architecture: nothing to mutate")

    def encode(self, arch: Arch) -> np.ndarray:
        """Per layer: one-hot filter height, width, number of filters and stride, and one bit
        per layer it takes as input (fixed length)."""
        c, n = self.cfg, self.cfg.layers
        per = 2 * len(c.kernels) + len(c.filters) + len(c.strides) + n
        v = np.zeros((n, per), dtype=np.float32)
        for i, s in enumerate(self.layers(arch)):
            o = 0
            for vals, x in ((c.kernels, s.kh), (c.kernels, s.kw), (c.filters, s.filters),
                            (c.strides, s.stride)):
                v[i, o + vals.index(x)] = 1.0
                o += len(vals)
            for j in s.inputs:
                v[i, o + j] = 1.0
        return v.ravel()

    def build(self, arch: Arch, num_classes: int, in_channels: int) -> NASRLNetwork:
        return NASRLNetwork(self.layers(arch), num_classes, in_channels)

    def cardinality(self) -> int:
        """(|kernels|² · |filters| · |strides|)^layers · 2^(layers(layers − 1)/2)."""
        c = self.cfg
        per = len(c.kernels) ** 2 * len(c.filters) * len(c.strides)
        return per ** c.layers * 2 ** (c.layers * (c.layers - 1) // 2)


def register_spaces(register) -> None:  # noqa: ANN001 - the registry's register
    for n in CONFIGS.names():
        register(n, lambda n=n: NASRLSpace(n))
