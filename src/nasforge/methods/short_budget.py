"""Short budgeted supernet searches: a smaller default space on 28×28 inputs (issue 10).

A supernet search converges only when its weights learn enough for the cross-entropy to tell
the choices apart before θ decides; on 2 CPU cores the 28×28 spaces' soft supernets
(``fbnet-fmnist``, ``dense-fmnist``) cost seconds a step, so the ~30 s of search a
``--budget 90`` leaves end before that (docs/fbnet.md, docs/densenas.md). In a *short* search
— budgeted, its planned seconds under :data:`SHORT_SEARCH_S` — ``--space auto`` on 28×28
inputs therefore resolves to the method's small space instead. Without a budget, with
``--epochs``, with a longer budget or with an explicit ``--space`` nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from nasforge.methods.budget import search_budget
from nasforge.methods.differentiable import DifferentiableMethod
from nasforge.methods.settings import SearchSettings
from nasforge.spaces.base import SearchSpace

#: planned search seconds below which a budgeted search is short: fbnet-fmnist's soft step
#: costs ~1.3 s on one idle core and its weights need ~30 w steps (0.69 train accuracy on
#: digits) before θ steps start to mean something, i.e. ≥ 80–100 s with the θ steps
SHORT_SEARCH_S = 120.0
#: the input size the small spaces are for
SMALL_INPUT = (28, 28)


def short_search(s: SearchSettings) -> bool:
    """A budgeted search whose planned seconds are fewer than :data:`SHORT_SEARCH_S`."""
    b = search_budget(s)
    return b is not None and b < SHORT_SEARCH_S


@dataclass(frozen=True)
class ShortBudgetMethod(DifferentiableMethod):
    """A differentiable method with a small space for short searches: ``small_space`` is
    what ``--space auto`` on 28×28 inputs resolves to when ``small`` (set per run by
    :meth:`for_settings`)."""

    small_space: str | None = None
    small: bool = False

    def space_for(self, name: str, input_shape: tuple[int, ...]) -> SearchSpace:
        if (self.small and self.small_space and name == "auto"
                and tuple(input_shape[1:]) == SMALL_INPUT):
            name = self.small_space
        return super().space_for(name, input_shape)

    def for_settings(self, s: Any) -> ShortBudgetMethod:
        """This method as ``s`` runs it (the small space when ``s`` is a short search)."""
        return replace(self, small=short_search(s))
