"""FBNetV3's fine stage: adaptive genetic search on the predictor under resource constraints.

The population starts from the best candidates known so far (the coarse stage's) and feasible
random samples; each generation breeds children by uniform crossover of two parents drawn
from the population and mutation of a number of decisions, scores them with the predictor
(no training) and keeps the best ``population`` (elitist). **Children that violate a
constraint are never proposed**: every child is checked against the targets before it is
scored and redrawn (up to ``tries`` times) when it misses one; a start that misses is walked
towards feasibility by violation-lowering mutations first, or dropped. **Adaptive**: the number
of decisions a mutation changes grows by one after a generation that did not improve the best
(explore) and falls back to one after one that did (exploit), up to ``max_mutations``. The search
stops when the best score has not improved for ``patience`` generations (or after
``max_generations``).

The space needs ``sample`` and ``mutate``; crossover uses its decision list
(:mod:`nasforge.predictor.decisions`: categorical and joint spaces), plain mutation otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.predictor.decisions import crossover
from nasforge.spaces.base import SearchSpace

Score = Callable[[Sequence[Arch]], np.ndarray]
Violation = Callable[[Arch], float]


@dataclass
class GeneticConfig:
    population: int = 32  # (choice)
    children: int = 64  # (choice) per generation
    crossover: float = 0.5  # (choice) chance a child is a crossover of two parents
    max_mutations: int = 4  # (choice) the adaptive mutation's ceiling
    patience: int = 5  # (choice) generations without improvement before stopping
    max_generations: int = 200  # (choice) a hard stop
    init_samples: int = 512  # (choice) random draws to fill the first population
    tries: int = 20  # draws of one child before it is given up
    repair_steps: int = 30  # violation-lowering mutations tried on an infeasible start

    def __post_init__(self) -> None:
        if self.population < 1 or self.children < 1 or self.max_mutations < 1:
            raise UserError("genetic population, children and max_mutations must be ≥ 1")
        if self.patience < 1 or self.max_generations < 1 or self.tries < 1:
            raise UserError("genetic patience, max_generations and tries must be ≥ 1")
        if not 0 <= self.crossover <= 1:
            raise UserError(f"genetic crossover must be in [0, 1], got {self.crossover}")


@dataclass
class GeneticResult:
    best: Arch
    score: float
    population: list[tuple[Arch, float]]  # best first
    generations: int
    history: list[float] = field(default_factory=list)  # best score after each generation
    scored: int = 0  # children scored by the predictor

    def to_dict(self) -> dict[str, Any]:
        return {"best": self.best.to_dict(), "score": self.score,
                "population": [[a.to_dict(), s] for a, s in self.population],
                "generations": self.generations, "history": self.history,
                "scored": self.scored}


def _crossover(space: SearchSpace, a: Arch, b: Arch, rng: np.random.Generator) -> Arch | None:
    try:
        return crossover(space, a, b, rng)
    except UserError:  # a space without a decision list: mutation only
        return None


def genetic_search(space: SearchSpace, score: Score, violation: Violation, *,
                   starts: Sequence[Arch] = (), cfg: GeneticConfig | None = None,
                   seed: int = 0) -> GeneticResult:
    """The best architecture by ``score`` (higher is better) with ``violation(arch) == 0``.

    ``score`` takes a batch of architectures (the predictor); ``violation`` is the targets'
    relative excess (:meth:`~nasforge.cost.targets.Targets.violation` of the costs). Raises a
    UserError when no feasible architecture is found to start from."""
    cfg = cfg or GeneticConfig()
    rng = np.random.default_rng(seed)
    vcache: dict[str, float] = {}

    def viol(a: Arch) -> float:
        k = a.key()
        if k not in vcache:
            vcache[k] = float(violation(a))
        return vcache[k]

    def toward_feasible(a: Arch) -> Arch | None:
        cur, v = a, viol(a)
        for _ in range(cfg.repair_steps):
            if v == 0.0:
                return cur
            cands = [space.mutate(cur, rng) for _ in range(8)]
            best = min(cands, key=viol)
            if viol(best) < v:
                cur, v = best, viol(best)
        return cur if v == 0.0 else None

    pool: dict[str, Arch] = {}
    for a in starts:
        f = toward_feasible(a)
        if f is not None:
            pool.setdefault(f.key(), f)
    for _ in range(cfg.init_samples):
        if len(pool) >= cfg.population * 4:
            break
        a = space.sample(rng)
        if viol(a) == 0.0:
            pool.setdefault(a.key(), a)
    if not pool:
        raise UserError("the genetic search found no architecture meeting the constraints among "
                        f"{len(starts)} starts and {cfg.init_samples} random samples; relax "
                        "--flops/--params/--latency-ms")
    archs = list(pool.values())
    scores = np.asarray(score(archs), dtype=np.float64)
    scored = len(archs)
    order = np.argsort(-scores, kind="stable")[:cfg.population]
    pop = [(archs[i], float(scores[i])) for i in order]
    seen = set(pool)
    best = pop[0][1]
    history: list[float] = []
    stale, mutations, gen = 0, 1, 0
    while gen < cfg.max_generations and stale < cfg.patience:
        gen += 1
        kids: list[Arch] = []
        for _ in range(cfg.children):
            for _ in range(cfg.tries):
                p1 = pop[int(rng.integers(len(pop)))][0]
                child = None
                if len(pop) > 1 and rng.random() < cfg.crossover:
                    p2 = pop[int(rng.integers(len(pop)))][0]
                    child = _crossover(space, p1, p2, rng)
                child = child or p1
                for _ in range(mutations):
                    child = space.mutate(child, rng)
                if child.key() not in seen and viol(child) == 0.0:  # never propose a violator
                    seen.add(child.key())
                    kids.append(child)
                    break
        if kids:
            ks = np.asarray(score(kids), dtype=np.float64)
            scored += len(kids)
            merged = pop + [(a, float(s)) for a, s in zip(kids, ks)]
            merged.sort(key=lambda m: -m[1])
            pop = merged[:cfg.population]
        if pop[0][1] > best + 1e-12:
            best, stale, mutations = pop[0][1], 0, 1
        else:
            stale += 1
            mutations = min(cfg.max_mutations, mutations + 1)
        history.append(pop[0][1])
    return GeneticResult(pop[0][0], pop[0][1], pop, gen, history, scored)
