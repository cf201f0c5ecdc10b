"""One typed registry for every kind of named part (spaces, methods, strategies, executors,
data sets, cost targets).

Built-ins are registered explicitly by a loader function the registry calls once, on first
use, whatever the user registered before: registering a user entry never hides the built-ins,
and a user entry can never silently replace one. A miss lists what exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from nasforge.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """``name -> T``. ``builtins(registry)`` registers the shipped entries (called lazily)."""

    def __init__(self, kind: str, builtins: Callable[[Registry[T]], None] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._builtins = builtins
        self._loading = False

    def _load(self) -> None:
        if self._builtins is None or self._loading:
            return
        loader, self._builtins = self._builtins, None
        self._loading = True
        try:
            loader(self)
        except BaseException:
            self._builtins = loader  # try again next time; keep what the user registered
            raise
        finally:
            self._loading = False

    def register(self, name: str, item: T) -> T:
        if not isinstance(name, str) or not name:
            raise UserError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        self._load()
        if name in self._items:
            raise UserError(f"{self.kind} {name!r} is already registered; choose another name")
        self._items[name] = item
        return item

    def decorator(self, name: str) -> Callable[[T], T]:
        def wrap(item: T) -> T:
            return self.register(name, item)

        return wrap

    def unregister(self, name: str) -> None:
        """Remove a (user) entry; tests use it to clean up."""
        self._load()
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise UserError(
                f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)
