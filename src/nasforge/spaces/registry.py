"""Space lookup by name: every space registers a resolver, so ``train ARCH.json`` and the
engine can rebuild any architecture from its ``space`` field."""

from __future__ import annotations

from collections.abc import Callable

from nasforge.errors import UserError
from nasforge.spaces.base import SearchSpace

# name -> factory; filled by register() calls below and by each space module's own call
_FACTORIES: dict[str, Callable[[], SearchSpace]] = {}


def register_space(name: str, factory: Callable[[], SearchSpace]) -> None:
    if name in _FACTORIES:
        raise ValueError(f"space {name!r} is already registered")
    _FACTORIES[name] = factory


def _load_builtin() -> None:
    if _FACTORIES:
        return
    from nasforge.spaces.fbnet import SKELETONS, FBNetSpace

    for n in SKELETONS.names():
        register_space(n, lambda n=n: FBNetSpace(n))
    for mod in _OPTIONAL_MODULES:
        import importlib

        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a space module not (yet) in this build
            if e.name != mod:
                raise
            continue
        m.register_spaces(register_space)


# space modules that define register_spaces(register); missing ones are skipped
_OPTIONAL_MODULES = ["nasforge.spaces.masking", "nasforge.spaces.dense", "nasforge.spaces.nsc",
                     "nasforge.spaces.cell"]


def get_space(name: str) -> SearchSpace:
    _load_builtin()
    if name not in _FACTORIES:
        raise UserError(f"unknown search space {name!r}; available: "
                        f"{', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name]()


def space_names() -> list[str]:
    _load_builtin()
    return sorted(_FACTORIES)
