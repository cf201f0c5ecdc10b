"""Random search: the baseline every strategy must beat (uniform ``space.sample``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nasforge.arch import Arch
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Strategy, config_from


@dataclass
class RandomConfig:
    """Random search has no options."""


class RandomSearch(Strategy):
    name = "random"

    def __init__(self, space: SearchSpace, seed: int = 0,
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(space, seed)
        config_from(RandomConfig, options, self.name)

    def ask(self) -> Arch:
        return self.space.sample(self.rng)

    def tell(self, arch: Arch, reward: float) -> None:
        pass
