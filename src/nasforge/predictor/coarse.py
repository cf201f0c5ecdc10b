"""FBNetV3's coarse stage as an ask/tell strategy (METHODS §3), so the sample-based engine
runs it: trials go through the executors, land in the trial store, and a killed search resumes.

Each round: draw ``pool`` points of a scrambled, seeded Sobol sequence over Ω (one coordinate
per decision, :func:`~nasforge.predictor.decisions.from_unit`), keep those not asked before
(and, given a ``feasible`` test, those it accepts), rank them by the current predictor and
queue the best ``batch`` (a share ``explore`` of the batch is drawn from the rest of the pool
instead, so the predictor keeps seeing architectures it does not yet rate). The first round,
before any result, takes the Sobol points in order: a quasi-random cover of Ω. When a round's
queue is empty the predictor is refitted on every result told so far (from its proxy-pretrained
state, :func:`~nasforge.predictor.fit.fit_accuracy`) and the next round is drawn.

Every candidate a fitted predictor chose is remembered with the accuracy it was predicted
*before* it was trained; :meth:`CoarseStrategy.prospective` pairs those with the measured ones —
an out-of-sample Kendall τ of the predictor on every trial after the first fit (the verified
fine-stage candidates are few and near-identical in score: a τ over them is mostly noise).

The state (``state_dict``) is JSON: the RNG, how many Sobol points were drawn, the queue, every
result, and how many results the predictor was last fitted on. The fit is deterministic (seeded,
one thread), so loading a state refits to the same weights and the engine's replay of logged
asks gives the same architectures.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.predictor.decisions import decisions, from_unit
from nasforge.predictor.early_stop import kendall_tau
from nasforge.predictor.encoding import encode_archs, view_of
from nasforge.predictor.fit import FitConfig, fit_accuracy
from nasforge.predictor.model import Predictor
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Strategy, config_from


@dataclass
class CoarseConfig:
    batch: int = 8  # (choice) candidates trained per round
    pool: int = 256  # (choice) Sobol points ranked per round (a power of 2)
    explore: float = 0.25  # (choice) share of a batch drawn from the pool at random
    min_fit: int = 4  # results before the predictor ranks anything

    def __post_init__(self) -> None:
        if self.batch < 1 or self.pool < self.batch:
            raise UserError(f"coarse stage needs batch ≥ 1 and pool ≥ batch, got {self.batch} "
                            f"and {self.pool}")
        if not 0 <= self.explore <= 1 or self.min_fit < 2:
            raise UserError("coarse stage explore must be in [0, 1] and min_fit ≥ 2")


@contextmanager
def one_thread():  # noqa: ANN201
    """The predictor fit on one thread: bit-identical however many threads torch has."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def refit(predictor: Predictor, space: SearchSpace, results: list[tuple[Arch, float]],
          cfg: FitConfig | None = None) -> None:
    """Fit ``predictor``'s accuracy head on ``results`` (architecture, accuracy)."""
    xa, xr = encode_archs(view_of(space), [a for a, _ in results])
    with one_thread():
        fit_accuracy(predictor, xa, np.array([r for _, r in results]), xr, cfg)


def predict(predictor: Predictor, space: SearchSpace, archs: list[Arch]) -> np.ndarray:
    xa, xr = encode_archs(view_of(space), archs)
    return predictor.predict(xa, xr)


class CoarseStrategy(Strategy):
    name = "jointnas-coarse"

    def __init__(self, space: SearchSpace, seed: int = 0,
                 options: dict[str, Any] | None = None, *, predictor: Predictor,
                 feasible: Callable[[Arch], bool] | None = None,
                 fit: FitConfig | None = None) -> None:
        super().__init__(space, seed)
        self.cfg: CoarseConfig = config_from(CoarseConfig, options, self.name)
        self.predictor, self.feasible, self.fit_cfg = predictor, feasible, fit
        self.seed = seed
        self.dim = len(decisions(space))
        self.drawn = 0
        self.queue: list[Arch] = []
        self.asked: set[str] = set()
        self.results: list[tuple[Arch, float]] = []
        self.fitted_on = 0
        self.rounds = 0
        self.predicted: dict[str, float] = {}  # key → predicted before training (fitted rounds)

    # -- rounds --------------------------------------------------------------------------------
    def _sobol(self, n: int) -> np.ndarray:
        from scipy.stats import qmc  # scipy.stats costs ~1 s to import: only when sampling

        s = qmc.Sobol(self.dim, scramble=True, seed=self.seed)
        if self.drawn:
            s.fast_forward(self.drawn)
        self.drawn += n
        return s.random(n)

    def refit(self, final: bool = False) -> None:
        """Fit on every result told (from ``min_fit`` of them; ``final``: from 2, the end of
        the stage, when the predictor must be fitted on whatever there is)."""
        least = 2 if final else self.cfg.min_fit
        if len(self.results) >= least and len(self.results) > self.fitted_on:
            refit(self.predictor, self.space, self.results, self.fit_cfg)
            self.fitted_on = len(self.results)

    def _new_round(self) -> None:
        self.refit()
        cands: list[Arch] = []
        for tries in range(8):  # a pool that is all repeats or infeasible: draw another
            keys = set(self.asked)
            for u in self._sobol(self.cfg.pool):
                a = from_unit(self.space, u)
                if a.key() in keys or (self.feasible is not None and not self.feasible(a)):
                    continue
                keys.add(a.key())
                cands.append(a)
            if len(cands) >= self.cfg.batch or tries == 7:
                break
        if not cands:
            raise UserError("the coarse stage found no new architecture meeting the targets "
                            "(relaxed by --coarse-slack) in 8 Sobol pools; relax the targets")
        b = self.cfg.batch
        if self.fitted_on == 0:
            chosen = cands[:b]
        else:
            scores = predict(self.predictor, self.space, cands)
            order = list(np.argsort(-scores, kind="stable"))
            n_explore = min(int(round(self.cfg.explore * b)), max(0, len(cands) - b))
            top, rest = order[:b - n_explore], order[b - n_explore:]
            extra = (list(self.rng.choice(rest, n_explore, replace=False))
                     if n_explore else [])
            chosen = [cands[int(i)] for i in top + extra]
            for i in top + extra:
                self.predicted[cands[int(i)].key()] = float(scores[int(i)])
        self.queue = chosen
        self.rounds += 1

    # -- Strategy --------------------------------------------------------------------------------
    def ask(self) -> Arch:
        if not self.queue:
            self._new_round()
        a = self.queue.pop(0)
        self.asked.add(a.key())
        return a

    def tell(self, arch: Arch, reward: float) -> None:
        self.results.append((arch, float(reward)))

    def prospective(self) -> dict[str, Any]:
        """Predicted (before training) vs measured accuracy of every trial a fitted predictor
        chose, and their Kendall τ (None below 3 pairs)."""
        pairs = [(self.predicted[a.key()], r) for a, r in self.results
                 if a.key() in self.predicted]
        tau = None
        if len(pairs) >= 3:
            tau = kendall_tau([p for p, _ in pairs], [m for _, m in pairs])
        return {"n": len(pairs), "kendall_tau": tau,
                "pairs": [{"predicted": p, "measured": m} for p, m in pairs]}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "drawn": self.drawn, "rounds": self.rounds,
                "queue": [a.to_dict() for a in self.queue], "asked": sorted(self.asked),
                "results": [[a.to_dict(), r] for a, r in self.results],
                "fitted_on": self.fitted_on, "predicted": self.predicted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.drawn, self.rounds = int(state["drawn"]), int(state["rounds"])
        self.queue = [Arch.from_dict(a) for a in state["queue"]]
        self.asked = set(state["asked"])
        self.results = [(Arch.from_dict(a), float(r)) for a, r in state["results"]]
        self.predicted = {k: float(v) for k, v in state.get("predicted", {}).items()}
        n = int(state["fitted_on"])
        self.fitted_on = 0
        if n:  # the same fit as before: the same results in the same order
            refit(self.predictor, self.space, self.results[:n], self.fit_cfg)
            self.fitted_on = n
