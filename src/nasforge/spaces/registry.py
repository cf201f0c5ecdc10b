"""Space lookup by name: every space registers a factory, so ``train ARCH.json`` and the
engine can rebuild any architecture from its ``space`` field.

The shipped spaces are registered explicitly by :func:`_builtins`, which the
:class:`~nasforge.registry.Registry` calls once on first use — whatever a user registered
before — so a user space never hides the built-ins and can never replace one.
"""

from __future__ import annotations

from collections.abc import Callable

from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace

SpaceFactory = Callable[[], SearchSpace]


def _builtins(reg: Registry[SpaceFactory]) -> None:
    from nasforge.spaces import darts, dense, joint, masking, nasnet, nasrl, nb201, nsc
    from nasforge.spaces.fbnet import SKELETONS, FBNetSpace

    for n in SKELETONS.names():
        reg.register(n, lambda n=n: FBNetSpace(n))
    masking.register_spaces(reg.register)
    dense.register_spaces(reg.register)
    nsc.register_spaces(reg.register)
    nb201.register_spaces(reg.register)
    darts.register_spaces(reg.register)
    joint.register_spaces(reg.register)
    nasnet.register_spaces(reg.register)
    nasrl.register_spaces(reg.register)


SPACES: Registry[SpaceFactory] = Registry("search space", builtins=_builtins)


def register_space(name: str, factory: SpaceFactory) -> None:
    """Add a user space; a name already taken (built-in or user) is a UserError."""
    SPACES.register(name, factory)


def get_space(name: str) -> SearchSpace:
    """A fresh instance of space ``name``; a miss lists the registered names."""
    return SPACES.get(name)()


def space_names() -> list[str]:
    return SPACES.names()
