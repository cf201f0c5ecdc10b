"""Arch: an immutable, JSON-serialisable record of architecture choices.

An Arch names its space and holds JSON data (``genes``): lists, dicts, strings, numbers. The
genes are stored *frozen* — lists as tuples, objects as :class:`FrozenDict` (nested too) — so
no caller can change an architecture, or its hash, after it was created (a strategy that edits
a gene in place would otherwise corrupt every dict and set keyed by it). Which genes are valid
is the space's business (``SearchSpace.validate``); this record only guarantees it is JSON,
hashable and stable (equality and hash are over canonical JSON). ``to_dict``/``to_json`` and
:func:`thaw` give plain, mutable JSON data back.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

from nasforge.errors import UserError


class FrozenDict(dict):
    """A ``dict`` that cannot change: every mutating method raises ``TypeError``.

    It stays a ``dict`` subclass so ``isinstance(g, dict)``, ``g["blocks"]``, ``dict(g, x=1)``
    and ``json.dumps`` keep working, and it is hashable (its values are frozen too)."""

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("architecture genes are immutable; build a new Arch from "
                        "thaw(arch.genes) instead")

    __setitem__ = __delitem__ = __ior__ = _readonly
    clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(self, sort_keys=True))

    def __reduce__(self) -> tuple[Any, ...]:  # pickle/copy: rebuild, never item by item
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


def _check_json(value: Any, where: str) -> None:
    """Raise a UserError naming the first field that is not JSON data."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise UserError(f"arch field {where}: keys must be strings, got {k!r}")
            _check_json(v, f"{where}.{k}")
        return
    raise UserError(
        f"arch field {where}: {type(value).__name__} is not JSON data (use lists, dicts, "
        "strings and numbers)"
    )


def freeze(value: Any) -> Any:
    """JSON data with lists as tuples and dicts as :class:`FrozenDict`, all the way down."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return FrozenDict((k, freeze(v)) for k, v in value.items())
    return value


def thaw(value: Any) -> Any:
    """Plain, mutable JSON data (lists and dicts) from frozen genes."""
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Arch:
    """A frozen architecture: ``space`` names the search space, ``genes`` the choices."""

    space: str
    genes: Any
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.space, str) or not self.space:
            raise UserError("arch field 'space' must be a non-empty string")
        _check_json(self.genes, "genes")
        # through JSON once: canonical values (e.g. an int subclass becomes an int)
        object.__setattr__(self, "genes", freeze(json.loads(json.dumps(self.genes))))

    def __hash__(self) -> int:
        return hash(self.key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arch) and self.key() == other.key()

    @cached_property
    def _key(self) -> str:  # genes cannot change, so the canonical JSON is computed once
        return json.dumps({"space": self.space, "genes": self.genes}, sort_keys=True)

    def key(self) -> str:
        """Canonical JSON of (space, genes): what equality and the hash are over."""
        return self._key

    def hash(self) -> str:
        """Stable short hash (sha1 of canonical JSON)."""
        return hashlib.sha1(self.key().encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (mutable lists and dicts): changing it never changes this Arch."""
        d: dict[str, Any] = {"space": self.space, "genes": thaw(self.genes)}
        if self.meta:
            d["meta"] = json.loads(json.dumps(self.meta, default=str))
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> Arch:
        if not isinstance(data, dict):
            raise UserError(f"an arch must be a JSON object, got {type(data).__name__}")
        missing = [k for k in ("space", "genes") if k not in data]
        if missing:
            raise UserError(f"arch JSON is missing field(s) {missing}; expected 'space' and "
                            "'genes'")
        unknown = sorted(set(data) - {"space", "genes", "meta"})
        if unknown:
            raise UserError(f"arch JSON has unknown field(s) {unknown}")
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise UserError("arch field 'meta' must be an object")
        # a copy: an arch must not change when the caller's dict does (nor the other way)
        return cls(space=data["space"], genes=data["genes"], meta=copy.deepcopy(meta))

    @classmethod
    def from_json(cls, text: str) -> Arch:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"arch is not valid JSON: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Arch:
        """An architecture file; any unreadable or foreign file is one UserError naming it."""
        from nasforge.files import load_arch

        return load_arch(path)

    def save(self, path: str | Path) -> None:
        from nasforge.files import write_json_atomic

        write_json_atomic(path, self.to_dict(), indent=2, sort_keys=True)
