"""A user-defined categorical space: a mapping of decision names to their choices.

This is how the engine searches anything that is not a network — hyper-parameters, or the
cells of a tabular NAS benchmark. An architecture's genes are ``{decision: value}``. Decisions
are made in the mapping's order, which is the sequential view Q-learning and REINFORCE use
(an action is ``[decision, value]``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from torch import nn

from nasforge.arch import Arch, freeze
from nasforge.errors import UserError
from nasforge.spaces.base import SearchSpace


class CategoricalSpace(SearchSpace):
    def __init__(self, choices: dict[str, list], name: str = "categorical") -> None:
        if not isinstance(choices, dict) or not choices:
            raise UserError("choices must be a non-empty dict of decision name -> list of values")
        for k, v in choices.items():
            if not isinstance(k, str):
                raise UserError(f"decision names must be strings, got {k!r}")
            if not isinstance(v, (list, tuple)) or not v:
                raise UserError(f"decision {k!r} needs a non-empty list of choices, got {v!r}")
            try:
                keys = [json.dumps(x, sort_keys=True) for x in v]
            except TypeError:
                raise UserError(f"choices of {k!r} must be JSON values (numbers, strings, lists,"
                                " dicts)") from None
            if len(set(keys)) != len(keys):
                raise UserError(f"decision {k!r} lists a choice twice")
        # frozen like Arch genes, so a list-valued choice compares equal to its gene
        self.choices = {k: [freeze(json.loads(json.dumps(x))) for x in v]
                        for k, v in choices.items()}
        self.names = list(self.choices)
        self.name = name

    def config(self, arch: Arch) -> dict[str, Any]:
        self.validate(arch)
        return dict(arch.genes)

    def arch(self, config: dict[str, Any]) -> Arch:
        a = Arch(self.name, config)
        self.validate(a)
        return a

    # -- SearchSpace --------------------------------------------------------------------------
    def validate(self, arch: Arch) -> None:
        self.check_space(arch)
        g = arch.genes
        if not isinstance(g, dict) or set(g) != set(self.names):
            raise UserError(f"a configuration needs exactly the decisions {self.names}, got "
                            f"{sorted(g) if isinstance(g, dict) else g!r}")
        for k, v in g.items():
            if v not in self.choices[k]:
                raise UserError(f"decision {k!r}: {v!r} is not one of {self.choices[k]}")

    def sample(self, rng: np.random.Generator) -> Arch:
        return Arch(self.name, {k: v[int(rng.integers(len(v)))] for k, v in self.choices.items()})

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        cfg = self.config(arch)
        movable = [k for k in self.names if len(self.choices[k]) > 1]
        if not movable:
            raise UserError("every decision has a single choice: nothing to mutate")
        k = movable[int(rng.integers(len(movable)))]
        others = [v for v in self.choices[k] if v != cfg[k]]
        cfg[k] = others[int(rng.integers(len(others)))]
        return Arch(self.name, cfg)

    def encode(self, arch: Arch) -> np.ndarray:
        cfg = self.config(arch)
        parts = []
        for k in self.names:
            v = np.zeros(len(self.choices[k]), dtype=np.float32)
            v[self.choices[k].index(cfg[k])] = 1
            parts.append(v)
        return np.concatenate(parts)

    def build(self, arch: Arch, num_classes: int, in_channels: int) -> nn.Module:
        raise UserError("a categorical space has no network to build; evaluate configurations "
                        "with your own objective")

    def cardinality(self) -> int:
        return int(np.prod([len(v) for v in self.choices.values()], dtype=object))

    # -- sequential view ------------------------------------------------------------------------
    def actions(self, prefix: list) -> list:
        if len(prefix) >= len(self.names):
            return []
        k = self.names[len(prefix)]
        return [[k, v] for v in self.choices[k]]

    def is_complete(self, prefix: list) -> bool:
        return len(prefix) == len(self.names)

    def to_arch(self, prefix: list) -> Arch:
        return self.arch({k: v for k, v in prefix})

    def from_arch(self, arch: Arch) -> list:
        cfg = self.config(arch)
        return [[k, cfg[k]] for k in self.names]

    def vocabulary(self) -> list:
        return [[k, v] for k in self.names for v in self.choices[k]]

    def token(self, action: Any) -> Any:
        return list(action)
