"""Resource targets and the one constraint repair every method uses.

``Targets`` holds the limits a user asks for (``--flops`` MACs, ``--params``,
``--latency-ms`` on the target device, ``--peak-memory-mb``); ``violation(costs)`` is the sum
of the relative excesses (0 when every limit is met). ``repair`` is the greedy shrink that the
FBNet, FBNetV2 and DenseNAS derivations share: from an architecture that misses a target it
repeatedly takes the single move (one decision changed) that removes the most violation per
unit of log-probability lost under the searched distribution, so the repaired model stays as
close as it can to what the search preferred. ``grow`` is its mirror for an architecture well
inside the targets: it takes the moves that use most of the unused share per unit of
log-probability lost, never leaving the targets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from nasforge.arch import Arch
from nasforge.cost.model import CostModel, Costs
from nasforge.errors import UserError

#: move = (the neighbouring architecture, log P(current choice) − log P(new choice))
Move = tuple[Arch, float]


@dataclass(frozen=True)
class Targets:
    flops: float | None = None  # MACs
    params: float | None = None
    latency_ms: float | None = None
    peak_memory_mb: float | None = None

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            if v is not None and not v > 0:
                raise UserError(f"target --{name.replace('_', '-')} must be positive, got {v}")

    @classmethod
    def from_settings(cls, s: Any) -> Targets:
        return cls(**{k: getattr(s, k, None) for k in ("flops", "params", "latency_ms",
                                                        "peak_memory_mb")})

    def any(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    @property
    def needs_latency(self) -> bool:
        return self.latency_ms is not None

    @property
    def needs_memory(self) -> bool:
        return self.peak_memory_mb is not None

    def violation(self, c: Costs) -> float:
        """Σ relative excess over the limits; 0.0 exactly when ``c`` meets every target."""
        v = 0.0
        if self.flops is not None:
            v += max(0.0, c.macs / self.flops - 1)
        if self.params is not None:
            v += max(0.0, c.params / self.params - 1)
        if self.latency_ms is not None:
            if c.latency_ms is None:
                raise UserError("a latency target needs a latency prediction or measurement; "
                                "give --target (cpu | onnx | cuda) so a table can be built")
            v += max(0.0, c.latency_ms / self.latency_ms - 1)
        if self.peak_memory_mb is not None:
            if c.peak_memory is None:
                raise UserError("a peak-memory target needs the peak memory of the model")
            v += max(0.0, c.peak_memory / 2**20 / self.peak_memory_mb - 1)
        return v

    def meets(self, c: Costs) -> bool:
        return self.violation(c) == 0.0

    def in_loss_unit(self, kind: str) -> float | None:
        """The target on the cost the differentiable loss uses (``kind``, in
        :data:`~nasforge.cost.model.LOSS_UNITS`: latency in µs, flops in kMACs, params in
        kparams), or None when the run has no target of that kind."""
        value = {"latency": self.latency_ms, "flops": self.flops, "params": self.params}.get(kind)
        if value is None:
            return None
        return value * 1e3 if kind == "latency" else value / 1e3

    def fill(self, c: Costs) -> float:
        """The share of its limit that the tightest target's cost uses (1.0: at a limit; 0.0
        without targets)."""
        shares = [0.0]
        if self.flops is not None:
            shares.append(c.macs / self.flops)
        if self.params is not None:
            shares.append(c.params / self.params)
        if self.latency_ms is not None and c.latency_ms is not None:
            shares.append(c.latency_ms / self.latency_ms)
        if self.peak_memory_mb is not None and c.peak_memory is not None:
            shares.append(c.peak_memory / 2**20 / self.peak_memory_mb)
        return max(shares)

    def describe(self) -> str:
        parts = [f"{k}={v:g}" for k, v in asdict(self).items() if v is not None]
        return ", ".join(parts) or "none"

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def _greedy(arch: Arch, targets: Targets, cost: Callable[[Arch], float],
            moves: Callable[[Arch], Iterable[Move]], max_steps: int) -> tuple[Arch, float]:
    cur_arch, cur = arch, cost(arch)
    for _ in range(max_steps):
        if cur == 0.0:
            break
        best, best_score, best_v = None, float("-inf"), cur
        for cand, dlogp in moves(cur_arch):
            v = cost(cand)
            gain = cur - v
            if gain <= 0:
                continue
            score = gain / (dlogp + 1e-3)
            if score > best_score:
                best, best_score, best_v = cand, score, v
        if best is None:
            break
        cur_arch, cur = best, best_v
    return cur_arch, cur


def repair(starts: Iterable[Arch], targets: Targets, cost_model: CostModel,
           moves: Callable[[Arch], Iterable[Move]], max_steps: int) -> Arch:
    """The first start that greedy shrinking brings within ``targets``.

    ``starts`` is tried lazily in order (the derived architecture first; a method may follow it
    with other, less probable starting points — DenseNAS: other paths). ``moves(arch)`` lists
    the one-decision neighbours with their log-probability loss; ``max_steps`` bounds the
    moves per start. Raises a UserError when no start can be brought within the targets.
    """
    memory = targets.needs_memory

    def cost(a: Arch) -> float:
        return targets.violation(cost_model.costs(a, memory=memory))

    if not targets.any():
        return next(iter(starts))
    for start in starts:
        a, v = _greedy(start, targets, cost, moves, max_steps)
        if v == 0.0:
            return a
    raise UserError(f"the target ({targets.describe()}) cannot be met by any architecture of "
                    "this space that the search can reach (even the cheapest options exceed "
                    "it); relax --latency-ms/--flops/--params/--peak-memory-mb")


def grow(arch: Arch, targets: Targets, cost_model: CostModel,
         moves: Callable[[Arch], Iterable[Move]], max_steps: int) -> Arch:
    """``arch`` grown into what ``targets`` leave unused (``arch`` itself when it misses them,
    or without targets).

    Repeatedly takes the single move that stays within every target, computes and holds no
    less (MACs and params not lowered) and raises :meth:`Targets.fill` the most per unit of
    log-probability lost (``moves`` as for :func:`repair`), until no move fits. The first
    condition matters for latency: a measured table can price a smaller model above a larger
    one (FBNetV2's input resize at a lower resolution costs more than it saves on one CPU
    thread), and spending the target on overhead is not growth. A search whose loss is flat
    below the target is indifferent to cost there, so its argmax can stop well short of it;
    the grown architecture is what the same distribution offers at the target, and the finish
    stage's ranking decides between the two."""
    memory = targets.needs_memory

    def costs(a: Arch) -> Costs:
        return cost_model.costs(a, memory=memory)

    c = costs(arch)
    if not targets.any() or not targets.meets(c):
        return arch
    cur = arch
    for _ in range(max_steps):
        used = targets.fill(c)
        best, best_score, best_c = None, float("-inf"), c
        for cand, dlogp in moves(cur):
            cc = costs(cand)
            gain = targets.fill(cc) - used
            if gain <= 0 or cc.macs < c.macs or cc.params < c.params or not targets.meets(cc):
                continue
            score = gain / (max(dlogp, 0.0) + 1e-3)
            if score > best_score:
                best, best_score, best_c = cand, score, cc
        if best is None:
            break
        cur, c = best, best_c
    return cur
