"""Arch: an immutable, JSON-serialisable record of architecture choices.

An Arch names its space and holds plain JSON data (``genes``): lists, dicts, strings, numbers.
Which genes are valid is the space's business (``SearchSpace.validate``); this record only
guarantees it is JSON, hashable and stable (the hash is over canonical JSON).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.errors import UserError


def _freeze(value: Any, where: str) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise UserError(f"arch field {where}: keys must be strings, got {k!r}")
        return tuple(sorted((k, _freeze(v, f"{where}.{k}")) for k, v in value.items()))
    raise UserError(
        f"arch field {where}: {type(value).__name__} is not JSON data (use lists, dicts, "
        "strings and numbers)"
    )



@dataclass(frozen=True)
class Arch:
    """A frozen architecture: ``space`` names the search space, ``genes`` the choices."""

    space: str
    genes: Any
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.space, str) or not self.space:
            raise UserError("arch field 'space' must be a non-empty string")
        _freeze(self.genes, "genes")  # validates JSON-ness
        object.__setattr__(self, "genes", json.loads(json.dumps(self.genes)))

    def __hash__(self) -> int:
        return hash(self.key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arch) and self.key() == other.key()

    def key(self) -> str:
        return json.dumps({"space": self.space, "genes": self.genes}, sort_keys=True)

    def hash(self) -> str:
        """Stable short hash (sha1 of canonical JSON)."""
        return hashlib.sha1(self.key().encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"space": self.space, "genes": self.genes}
        if self.meta:
            d["meta"] = self.meta
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
        return cls(space=data["space"], genes=data["genes"], meta=meta)

    @classmethod
    def from_json(cls, text: str) -> Arch:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"arch is not valid JSON: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Arch:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"arch file {str(p)!r} does not exist")
        return cls.from_json(p.read_text())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=2) + "\n")
