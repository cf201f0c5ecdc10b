"""A space as a flat list of decisions (name, choices): what Sobol points map onto and what
uniform crossover mixes. Spaces that declare ``decisions()`` / ``indices(arch)`` /
``arch_from_indices(idx)`` (the joint and masking spaces) use theirs; a categorical space's
decisions are its choices mapping."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.spaces.base import SearchSpace


def decisions(space: SearchSpace) -> list[tuple[str, tuple]]:
    if hasattr(space, "decisions"):
        return [(n, tuple(o)) for n, o in space.decisions()]  # type: ignore[attr-defined]
    choices = getattr(space, "choices", None)
    if isinstance(choices, dict):
        return [(k, tuple(v)) for k, v in choices.items()]
    raise UserError(f"space {space.name!r} does not list its decisions (decisions() or a "
                    "categorical choices mapping); the coarse stage cannot sample it")


def indices(space: SearchSpace, arch: Arch) -> list[int]:
    if hasattr(space, "indices"):
        return list(space.indices(arch))  # type: ignore[attr-defined]
    space.validate(arch)
    return [list(o).index(arch.genes[n]) for n, o in decisions(space)]


def from_indices(space: SearchSpace, idx: Sequence[int]) -> Arch:
    if hasattr(space, "arch_from_indices"):
        return space.arch_from_indices(list(idx))  # type: ignore[attr-defined]
    a = Arch(space.name, {n: o[int(i)] for (n, o), i in zip(decisions(space), idx)})
    space.validate(a)
    return a


def from_unit(space: SearchSpace, u: np.ndarray) -> Arch:
    """The architecture at point ``u`` of the unit cube (one coordinate per decision: choice
    ``floor(u · n)``)."""
    dec = decisions(space)
    if len(u) != len(dec):
        raise UserError(f"a point of {len(u)} coordinates for {len(dec)} decisions")
    return from_indices(space, [min(len(o) - 1, int(x * len(o))) for (_, o), x in zip(dec, u)])


def crossover(space: SearchSpace, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
    """Uniform crossover: each decision from ``a`` or ``b`` with equal chance."""
    ia, ib = indices(space, a), indices(space, b)
    pick = rng.random(len(ia)) < 0.5
    return from_indices(space, [x if p else y for x, y, p in zip(ia, ib, pick)])
