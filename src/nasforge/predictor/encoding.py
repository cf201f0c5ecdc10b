"""How an architecture (and a training recipe) becomes the predictor's input vector.

METHODS §3: one-hot for categorical choices, normalised numbers for numeric ones. A
:class:`Feature` is one decision; a numeric one (ordered numbers: a kernel size, a width, a
learning rate) is one input scaled to [0, 1] over its choices (on a log scale when the choices
span more than a factor of 10, as a learning rate does), so the predictor sees that 5 lies
between 3 and 7; a categorical one (an optimizer, an op) is a one-hot block.

An :class:`Encoding` is an ordered list of features and is plain JSON (it is stored with the
predictor, so a reused predictor reads architectures exactly as it was trained on them).

Spaces tell the predictor their features through :class:`PredictorView`: the joint space
splits its genes into architecture and recipe values; a categorical space (a tabular
benchmark) is architecture-only, every decision categorical unless its choices are numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from nasforge.arch import Arch, thaw
from nasforge.errors import UserError
from nasforge.spaces.base import SearchSpace


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class Feature:
    """One decision: ``choices`` in order; ``numeric`` ones are one input in [0, 1]."""

    name: str
    choices: tuple
    numeric: bool
    log: bool = False

    def __post_init__(self) -> None:
        if not self.choices:
            raise UserError(f"feature {self.name!r} has no choices")
        if self.numeric and not all(_is_number(c) for c in self.choices):
            raise UserError(f"numeric feature {self.name!r} has non-number choices "
                            f"{list(self.choices)}")
        if self.log and min(self.choices) <= 0:
            raise UserError(f"log-scaled feature {self.name!r} needs positive choices")

    @classmethod
    def auto(cls, name: str, choices: Sequence) -> Feature:
        """Numeric when every choice is a number and there are more than two; log-scaled when
        they are positive and span more than 10×."""
        ch = tuple(choices)
        numeric = len(ch) > 2 and all(_is_number(c) for c in ch)
        log = numeric and min(ch) > 0 and max(ch) / min(ch) > 10
        return cls(name, ch, numeric, log)

    @property
    def width(self) -> int:
        return 1 if self.numeric else len(self.choices)

    def _scale(self, v: float) -> float:
        return math.log(v) if self.log else float(v)

    def encode(self, v: Any) -> list[float]:
        if self.numeric:
            if not _is_number(v):
                raise UserError(f"feature {self.name!r}: {v!r} is not a number")
            lo, hi = self._scale(min(self.choices)), self._scale(max(self.choices))
            return [0.0 if hi == lo else (self._scale(v) - lo) / (hi - lo)]
        out = [0.0] * len(self.choices)
        try:
            out[list(self.choices).index(v)] = 1.0
        except ValueError:
            raise UserError(f"feature {self.name!r}: {v!r} is not one of "
                            f"{list(self.choices)}") from None
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "choices": thaw(list(self.choices)),
                "numeric": self.numeric, "log": self.log}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Feature:
        return cls(str(d["name"]), tuple(d["choices"]), bool(d["numeric"]), bool(d["log"]))


@dataclass(frozen=True)
class Encoding:
    """An ordered list of features: ``encode(values)`` gives one vector of :attr:`dim`."""

    features: tuple[Feature, ...]

    @property
    def dim(self) -> int:
        return sum(f.width for f in self.features)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def encode(self, values: Mapping[str, Any]) -> np.ndarray:
        missing = [f.name for f in self.features if f.name not in values]
        if missing:
            raise UserError(f"values lack feature(s) {missing} of the predictor's encoding")
        parts: list[float] = []
        for f in self.features:
            parts += f.encode(values[f.name])
        return np.asarray(parts, dtype=np.float32)

    def encode_many(self, rows: Iterable[Mapping[str, Any]]) -> np.ndarray:
        rows = list(rows)
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.encode(r) for r in rows])

    def to_dict(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.features]

    @classmethod
    def from_dict(cls, d: Sequence[Mapping[str, Any]]) -> Encoding:
        return cls(tuple(Feature.from_dict(x) for x in d))


@runtime_checkable
class PredictorView(Protocol):
    """What a space with a recipe part offers the predictor (the joint space does)."""

    def arch_encoding(self) -> Encoding: ...

    def recipe_encoding(self) -> Encoding | None: ...

    def split_values(self, arch: Arch) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(architecture values, recipe values or None) by feature name."""
        ...


class CategoricalView:
    """A categorical space (a tabular benchmark) as an architecture-only predictor input."""

    def __init__(self, space: SearchSpace) -> None:
        choices = getattr(space, "choices", None)
        if not isinstance(choices, dict):
            raise UserError(f"space {space.name!r} offers no predictor features (neither "
                            "arch_encoding() nor a categorical choices mapping)")
        self.space = space
        self._enc = Encoding(tuple(Feature.auto(k, v) for k, v in choices.items()))

    def arch_encoding(self) -> Encoding:
        return self._enc

    def recipe_encoding(self) -> Encoding | None:
        return None

    def split_values(self, arch: Arch) -> tuple[dict[str, Any], dict[str, Any] | None]:
        self.space.validate(arch)
        return dict(arch.genes), None


def view_of(space: SearchSpace) -> PredictorView:
    """The predictor's view of ``space``: its own, or the categorical one."""
    if isinstance(space, PredictorView):
        return space
    return CategoricalView(space)


def encode_archs(view: PredictorView, archs: Sequence[Arch]
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """(architecture matrix, recipe matrix or None) of ``archs``."""
    pairs = [view.split_values(a) for a in archs]
    xa = view.arch_encoding().encode_many(p[0] for p in pairs)
    renc = view.recipe_encoding()
    xr = None if renc is None else renc.encode_many(p[1] or {} for p in pairs)
    return xa, xr
