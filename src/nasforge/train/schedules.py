"""Learning-rate schedules as pure functions of progress (so a resumed run recomputes them)."""

from __future__ import annotations

import math


def cosine_lr(base_lr: float, step: float, total: float, warmup: float = 0.0,
              min_lr: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` then cosine decay to ``min_lr`` at ``total``."""
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    t = min(max(step - warmup, 0.0) / max(total - warmup, 1e-9), 1.0)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))


def set_lr(optimizer, lr: float) -> None:  # noqa: ANN001 - any torch optimizer
    for g in optimizer.param_groups:
        g["lr"] = lr
