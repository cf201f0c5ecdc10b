"""The sequential view of a space whose architectures are a fixed list of categorical decisions
(a NASNet cell, a NAS-Bench-201 cell, a NAS-RL network of a fixed depth).

Q-learning and REINFORCE build an architecture decision by decision through the
:class:`~nasforge.strategies.base.Sequential` protocol. A space that is a fixed sequence of
decisions only declares them — :meth:`DecisionSequence.decisions` (``(kind, choices)`` per
position), :meth:`~DecisionSequence.decision_values` and
:meth:`~DecisionSequence.from_decision_values` — and this mixin derives the protocol, so each
space does not write its own copy. An action is ``[kind, value]``; its position in the sequence
says which decision it is, so the token (the controller's input) is the action itself.
"""

from __future__ import annotations

from typing import Any

from nasforge.arch import Arch
from nasforge.errors import UserError


class DecisionSequence:
    """Mixin: :class:`~nasforge.strategies.base.Sequential` from a fixed list of decisions."""

    _decision_cache: list[tuple[str, list]] | None = None

    # -- what a space declares ----------------------------------------------------------------
    def decisions(self) -> list[tuple[str, list]]:
        """``(kind, choices)`` for every decision, in the order they are made."""
        raise NotImplementedError

    def decision_values(self, arch: Arch) -> list:
        """The value ``arch`` takes at each decision (validated)."""
        raise NotImplementedError

    def from_decision_values(self, values: list) -> Arch:
        """The architecture of one value per decision (validated)."""
        raise NotImplementedError

    # -- the Sequential protocol ---------------------------------------------------------------
    def _decisions(self) -> list[tuple[str, list]]:
        if self._decision_cache is None:
            self._decision_cache = [(k, list(c)) for k, c in self.decisions()]
        return self._decision_cache

    def actions(self, prefix: list) -> list:
        d = self._decisions()
        if len(prefix) >= len(d):
            return []
        kind, choices = d[len(prefix)]
        return [[kind, v] for v in choices]

    def is_complete(self, prefix: list) -> bool:
        return len(prefix) == len(self._decisions())

    def to_arch(self, prefix: list) -> Arch:
        d = self._decisions()
        if len(prefix) != len(d):
            raise UserError(f"an architecture takes {len(d)} decisions, {len(prefix)} given")
        values = []
        for t, ((kind, choices), a) in enumerate(zip(d, prefix)):
            if not isinstance(a, (list, tuple)) or len(a) != 2 or a[0] != kind:
                raise UserError(f"decision {t} is a {kind!r}: expected [{kind!r}, value], got "
                                f"{a!r}")
            v = list(a[1]) if isinstance(a[1], (list, tuple)) else a[1]
            if v not in choices:
                raise UserError(f"decision {t} ({kind}): {a[1]!r} is not one of its choices")
            values.append(v)
        return self.from_decision_values(values)

    def from_arch(self, arch: Arch) -> list:
        return [[k, v] for (k, _), v in zip(self._decisions(), self.decision_values(arch),
                                            strict=True)]

    def vocabulary(self) -> list:
        """Every token of every decision, each once, in decision order."""
        seen: dict[str, Any] = {}
        for kind, choices in self._decisions():
            for v in choices:
                t = self.token([kind, v])
                seen.setdefault(repr(t), t)
        return list(seen.values())

    def token(self, action: Any) -> Any:
        return [action[0], list(action[1]) if isinstance(action[1], (list, tuple)) else action[1]]
