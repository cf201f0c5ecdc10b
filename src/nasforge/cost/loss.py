"""Cost-aware search losses, selected by name.

- ``paper`` (FBNet, default): ``CE · α · log(LAT)^β``  (α = 0.2, β = 0.6)
- ``seed``  (the FBNet code in the seed article): ``α · CE · β · log(LAT)``
- ``additive`` (DenseNAS): ``CE + λ · log_b(cost)``  (λ = 0.15, b = 15)
- ``none``: ``CE`` (no cost term)

``cost`` must be in a unit where ``log(cost) > 0`` (the LUT's µs, or kMACs).

``floor`` (a target in the cost's unit, set when the run has one) makes the loss see
``max(cost, floor)``: the cost term still pushes down a supernet above the target, and no longer
rewards cost saved below it. Without it the paper's term keeps trading accuracy for latency that
nobody asked to save (docs/search_vs_random.md: FBNet picked 727 K MACs under a target that
random architectures of 1.5 M MACs met).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nasforge.errors import UserError

FORMS = ("paper", "seed", "additive", "none")


@dataclass(frozen=True)
class CostLoss:
    form: str = "paper"
    alpha: float = 0.2
    beta: float = 0.6
    lam: float = 0.15
    base: float = 15.0
    floor: float | None = None

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise UserError(f"unknown loss form {self.form!r}; choose from {list(FORMS)}")
        if self.floor is not None and not self.floor > 0:
            raise UserError(f"the loss's cost floor must be positive, got {self.floor}")

    def __call__(self, ce: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        if self.form == "none":
            return ce
        if self.floor is not None:
            cost = cost.clamp_min(self.floor)
        log_cost = torch.log(cost)
        if self.form == "paper":
            return ce * self.alpha * log_cost.clamp_min(1e-6) ** self.beta
        if self.form == "seed":
            return self.alpha * ce * self.beta * log_cost
        return ce + self.lam * log_cost / math.log(self.base)
