"""The random baseline a search must beat: architectures drawn from the *same* space as a
method's run, priced by the *same* cost model, kept only when they meet the *same* targets.

Why a module of its own: ``benchmarks/search_vs_random.py`` and its test both need the run's
space and cost model rebuilt the way the method's runner builds them (the differentiable
runner's ``CostModel.for_run`` reading the run's own ``lut.json``; the sample-based runner's
counts plus measured latency), and the constrained draw. Nothing here repairs on its own: a
draw that misses the targets is rejected (uniform over the feasible part of the space); only
when rejection finds too few, the shared greedy shrink (:func:`nasforge.cost.targets.repair`,
through a freshly built supernet whose θ is uniform) brings draws within the targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasforge.arch import Arch
from nasforge.cost.model import CostModel, MeasuredLatency
from nasforge.cost.targets import Targets
from nasforge.data import Dataset
from nasforge.errors import UserError
from nasforge.methods.settings import SearchSettings
from nasforge.spaces.base import SearchSpace

#: methods whose runner is :mod:`nasforge.methods.differentiable`
DIFFERENTIABLE_METHODS = ("fbnet", "fbnetv2", "densenas")
#: methods whose runner is :mod:`nasforge.methods.sampled`
SAMPLED_METHODS = ("blockqnn", "evolution", "reinforce", "random")


@dataclass
class RunCosts:
    """A run's space, its cost model and (differentiable spaces) the shared repair."""

    space: SearchSpace
    cost_model: CostModel
    repair: Callable[[Arch, Targets], Arch] | None = None


def run_costs(s: SearchSettings, data: Dataset, run_dir: str | Path | None = None) -> RunCosts:
    """The space and cost model run ``s`` uses (``run_dir``: read the run's own latency table,
    as a resumed run would; None: the per-device cache, building what is missing)."""
    targets = Targets.from_settings(s)
    if s.method in DIFFERENTIABLE_METHODS:
        from nasforge.methods.differentiable import method_for

        m = method_for(s)  # as s runs it: a short budget's small skeleton, the space searched
        space = m.space_for(s.space, data.input_shape)  # type: ignore[attr-defined]
        cm = CostModel.for_run(space, data.num_classes, data.input_shape, kind=m.cost_kind(s),
                               need_latency=targets.needs_latency, target=s.target,
                               threads=s.threads, lut_path=s.lut,
                               run_dir=None if run_dir is None else Path(run_dir))
        net = None

        def repair(a: Arch, t: Targets) -> Arch:
            nonlocal net
            if net is None:  # a fresh supernet: θ uniform, so no choice is preferred
                torch.manual_seed(s.seed)
                net = m.supernet(space, cm, s)
            return net.repair(a, t, cm)

        return RunCosts(space, cm, repair)
    if s.method in SAMPLED_METHODS:
        from nasforge.spaces.registry import get_space

        name = getattr(s, "final_space", None) or s.space  # type: ignore[attr-defined]
        space = get_space(name)
        lat = (MeasuredLatency(space, data.num_classes, data.input_shape, target=s.target,
                               threads=s.threads) if targets.needs_latency else None)
        return RunCosts(space, CostModel(space, data.num_classes, data.input_shape,
                                         latency=lat))
    raise UserError(f"no random baseline for method {s.method!r}; choose from "
                    f"{', '.join(DIFFERENTIABLE_METHODS + SAMPLED_METHODS)}")


def cost_of(costs: Any, kind: str) -> float:
    """The figure a ``kind`` target (``latency`` | ``flops`` | ``params``) limits."""
    if kind == "latency":
        if costs.latency_ms is None:
            raise UserError("a latency target needs a cost model that prices latency")
        return float(costs.latency_ms)
    if kind == "flops":
        return float(costs.macs)
    if kind == "params":
        return float(costs.params)
    raise UserError(f"unknown target kind {kind!r}; choose latency, flops or params")


def cost_quantile(rc: RunCosts, kind: str, rng: np.random.Generator, q: float = 0.5,
                  draws: int = 30) -> float:
    """The ``q``-quantile ``kind`` cost of ``draws`` random architectures: a target that a
    fraction 1 − ``q`` of the space misses (the median: half), so it binds without being out
    of reach."""
    if draws < 1 or not 0.0 < q <= 1.0:
        raise UserError(f"draws must be ≥ 1 and the quantile in (0, 1], got {draws} and {q}")
    vals = [cost_of(rc.cost_model.costs(rc.space.sample(rng)), kind) for _ in range(draws)]
    return float(np.quantile(vals, q))


@dataclass(frozen=True)
class Draw:
    arch: Arch
    costs: dict[str, Any]
    repaired: bool


def sample_meeting(rc: RunCosts, targets: Targets, n: int, rng: np.random.Generator, *,
                   max_draws: int = 400, exclude: Sequence[Arch] = ()) -> list[Draw]:
    """``n`` distinct architectures of the space that meet ``targets`` (none of ``exclude``):
    draws that miss are rejected; when ``max_draws`` leave too few, the rest are repaired draws
    (the shared greedy shrink), or a UserError says the targets are out of the space's reach."""
    if n < 1:
        raise UserError(f"--random must be ≥ 1, got {n}")
    seen = {a.key() for a in exclude}
    out: list[Draw] = []
    missed: list[Arch] = []
    for _ in range(max_draws):
        if len(out) == n:
            return out
        a = rc.space.sample(rng)
        if a.key() in seen:
            continue
        c = rc.cost_model.costs(a, memory=targets.needs_memory)
        if targets.meets(c):
            seen.add(a.key())
            out.append(Draw(a, c.to_dict(), False))
        else:
            missed.append(a)
    if rc.repair is not None:
        for a in missed:
            if len(out) == n:
                break
            r = rc.repair(a, targets)
            c = rc.cost_model.costs(r, memory=targets.needs_memory)
            if r.key() not in seen and targets.meets(c):
                seen.add(r.key())
                out.append(Draw(r, c.to_dict(), True))
    if len(out) < n:
        raise UserError(f"only {len(out)} of {n} random architectures of {rc.space.name!r} "
                        f"meet the target ({targets.describe()}) in {max_draws} draws; relax "
                        "the target")
    return out


def kendall_tau(short: Sequence[float], full: Sequence[float]) -> float:
    """Kendall τ-b between a short ranking's accuracies and the full trainings' (NaN when
    either side is constant or there are fewer than two)."""
    from scipy.stats import kendalltau

    if len(short) != len(full):
        raise ValueError("short and full accuracies must pair up")
    if len(short) < 2:
        return math.nan
    return float(kendalltau(short, full).statistic)
