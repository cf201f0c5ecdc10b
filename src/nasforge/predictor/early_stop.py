"""FBNetV3's early-stopping length (METHODS §3): train ``n`` architectures fully, keep each one's
accuracy after every epoch, and take the shortest epoch count whose ranking agrees with the
full trainings' to Kendall τ ≥ 0.92 *(paper)*."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nasforge.errors import UserError

THRESHOLD = 0.92  # (paper)


@dataclass(frozen=True)
class EarlyStopChoice:
    epochs: int  # the early-stop length chosen
    taus: list[float]  # τ(full, after e epochs) for e = 1 … len(curve)
    reached: bool  # whether any length reached the threshold (else: the full length)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall τ-b of two score lists (0.0 where it is undefined: constant scores)."""
    from scipy.stats import kendalltau  # ~1 s to import: not on the CLI's start-up path

    t = kendalltau(np.asarray(a, dtype=float), np.asarray(b, dtype=float))[0]
    return 0.0 if t is None or np.isnan(t) else float(t)


def select_early_stop(curves: Sequence[Sequence[float]], full: Sequence[float] | None = None,
                      threshold: float = THRESHOLD) -> EarlyStopChoice:
    """``curves[i][e]``: architecture i's accuracy after e + 1 epochs; ``full``: its accuracy
    after the full training (default: the last point of each curve)."""
    c = np.asarray(curves, dtype=float)
    if c.ndim != 2 or len(c) < 3 or c.shape[1] < 1:
        raise UserError("the early-stop selector needs the per-epoch accuracies of at least 3 "
                        f"architectures (equal lengths), got shape {c.shape}")
    f = c[:, -1] if full is None else np.asarray(full, dtype=float)
    if len(f) != len(c):
        raise UserError(f"{len(f)} full accuracies for {len(c)} curves")
    taus = [kendall_tau(f, c[:, e]) for e in range(c.shape[1])]
    for e, t in enumerate(taus):
        if t >= threshold:
            return EarlyStopChoice(e + 1, taus, True)
    return EarlyStopChoice(c.shape[1], taus, False)
