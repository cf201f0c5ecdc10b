"""The SearchSpace interface every space implements (sample-based strategies need only this)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from torch import nn

from nasforge.arch import Arch
from nasforge.errors import UserError


class SearchSpace(ABC):
    """Declarative space: samples, mutates, encodes, validates and builds architectures."""

    name: str

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch: ...

    @abstractmethod
    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch: ...

    @abstractmethod
    def encode(self, arch: Arch) -> np.ndarray:
        """A fixed-length float vector (for predictors)."""

    @abstractmethod
    def validate(self, arch: Arch) -> None:
        """Raise UserError naming the offending field when ``arch`` is not in this space."""

    @abstractmethod
    def build(self, arch: Arch, num_classes: int, in_channels: int) -> nn.Module:
        """A plain nn.Module with no search machinery in it."""

    @abstractmethod
    def cardinality(self) -> int: ...

    #: (in_channels, num_classes) used when a LUT is built without a data set
    default_io: tuple[int, int] = (3, 10)
    #: the square input resolution the space's networks are designed for (None: a space with
    #: no network to build, such as a categorical one)
    input_size: int | None = None

    def check_space(self, arch: Arch) -> None:
        """The first check of every ``validate``: ``arch`` names this space."""
        if arch.space != self.name:
            raise UserError(f"arch field 'space' is {arch.space!r}, expected {self.name!r} "
                            "(an architecture is rebuilt in the space it was found in)")

    def lut_items(self, num_classes: int, in_channels: int) -> list:
        """Every op of the space to measure for a latency table (``LutItem`` list)."""
        raise UserError(f"space {self.name!r} has no latency table support")

    def lut_keys(self, arch: Arch, num_classes: int, in_channels: int) -> list:
        """The LUT keys whose entries sum to ``arch``'s latency."""
        raise UserError(f"space {self.name!r} has no latency table support")
