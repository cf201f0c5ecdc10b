"""``--budget SECONDS`` bounds the whole search command: the planner that splits it.

A search command is four stages, run in this order:

- ``search``: data loading, the latency table (loaded, or measured when missing), the supernet
  loop or the sample-based trials, derivation and target repair;
- ``rank``: the candidates' short trainings from scratch;
- ``train``: the final training of the pick;
- ``export_measure``: TorchScript/ONNX export, the latency measurement on the target, the
  result's assembly.

**Default split.** ``export_measure`` is not time-capped (an export cannot stop half-way), so
it is planned as a fixed allowance (:data:`EXPORT_S`; measured on 2 busy CPU cores: 2 s for an
NSC model, 4–10 s for an FBNet one — TorchScript 0.9 s, ONNX 1.8 s, 120 timed forward passes
0.9 s at 1 thread, several times that when torch's threads fight other processes) and comes
off the top. What is
left is split by shares:

============  ==============  ============  =====================================================
stage         differentiable  sample-based  why
============  ==============  ============  =====================================================
search        0.40            0.55          the point of the command; a supernet needs its τ
                                            schedule to run out, trials need numbers
rank          0.10            0.10          short trainings only order the candidates (a
                                            sample-based search ranks its ``--top``, default 3)
train         0.50            0.30          the pick's accuracy: the model the user gets. At
                                            50/15/30 the README command (--budget 90, fbnet,
                                            digits) left the final training 6 s and ended at
                                            test_acc 0.114; at 40/10/50 it gets ~40 s
============  ==============  ============  =====================================================

so a 90-s differentiable budget plans about 33 s search, 8 s ranking, 41 s training and 8 s
export/measure. A stage that does nothing has share 0 (ranking a single candidate, or
``--candidate-epochs 0``), its seconds go to the others.

**Explicit settings override.** ``--epochs`` fixes the search, ``--candidate-epochs`` the
ranking and ``--train-epochs`` the final training (a value other than the settings' default
counts as given: the settings cannot tell a typed default from an omitted one); a fixed stage
runs to its epochs, its planned seconds are only an estimate, and its spent seconds are still
recorded. ``--train-budget`` gives the final training its seconds outright.

**Re-planning.** When a stage starts it is *allowed* its share of the seconds still left
(``total − spent``, less the export allowance), so the seconds an earlier stage did not use —
or overran — move on to the later ones. Fixed costs inside a stage (data loading, a latency
table measured on this device) are handed on the same way: :meth:`Budget.rebase` re-splits
what is left once they are paid, so a table build shortens every later stage a little rather
than the supernet loop alone. A capped stage is given at least :data:`MIN_CAP_S`.

``result.json`` records ``budget: {total, planned, allowed, spent}``: ``planned`` is the split
at the start (it sums to ``total``), ``allowed`` what each stage was given when it started,
``spent`` what it took. Without ``--budget`` only ``spent`` is recorded. A resumed run
continues its budget from ``RUN_DIR/budget.json``, written as each stage ends (a stage's
seconds add up over resumes; a process killed outright loses the time of the stage it was in).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nasforge import progress
from nasforge.methods.settings import SearchSettings, options
from nasforge.progress import CommandClock
from nasforge.run.rundir import RunDir

STAGES = ("search", "rank", "train", "export_measure")
DIFFERENTIABLE = "differentiable"
SAMPLE_BASED = "sample-based"
SHARES = {
    DIFFERENTIABLE: {"search": 0.40, "rank": 0.10, "train": 0.50},
    SAMPLE_BASED: {"search": 0.55, "rank": 0.10, "train": 0.30},
}
#: the export/measure allowance, seconds (see the module docstring)
EXPORT_S = 8.0
#: the least a capped stage is given, seconds (a budget too small to split still makes progress)
MIN_CAP_S = 1.0
#: which setting fixes each stage's length when given
FIXING = {"search": "epochs", "rank": "candidate_epochs", "train": "train_epochs"}


def explicit(s: SearchSettings, name: str) -> bool:
    """Whether setting ``name`` differs from its default in ``s``'s settings class."""
    default = next(o.default for o in options(type(s)) if o.name == name)
    return getattr(s, name) != default


@dataclass
class Budget:
    """The plan of one command and what each stage spent (see the module docstring)."""

    total: float | None
    shares: dict[str, float]
    fixed: frozenset[str] = frozenset()
    train_s: float | None = None  # --train-budget: the final training's seconds, outright
    export_s: float = EXPORT_S
    planned: dict[str, float] = field(default_factory=dict)
    allowed: dict[str, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)
    run_dir: RunDir | None = None
    clock: CommandClock = field(default_factory=CommandClock)

    def __post_init__(self) -> None:
        if not self.planned and self.total is not None:
            self.planned = self.split(self.total, STAGES)
        self._running: str | None = None
        self._t0 = 0.0

    # -- planning -------------------------------------------------------------------------------
    @classmethod
    def plan(cls, total: float | None, kind: str, *, n_candidates: int = 1,
             rank_epochs: int = 2, fixed: Iterable[str] = (), train_s: float | None = None,
             export_s: float = EXPORT_S, run_dir: RunDir | None = None,
             shares: dict[str, float] | None = None) -> Budget:
        """The plan of a ``kind`` method (``differentiable`` | ``sample-based``) for ``total``
        seconds (None: no budget, only the spent seconds are kept). ``n_candidates``: how many
        the ranking may train (no ranking when ≤ 1 or ``rank_epochs`` is 0); ``fixed``: the
        stages the settings fix; ``train_s``: an explicit final-training budget; ``shares``:
        stage weights replacing the kind's (a method whose ranking is sized by its own
        settings, e.g. JointNAS's ``--top``)."""
        shares = dict(SHARES[kind], **(shares or {}))
        if n_candidates <= 1 or rank_epochs <= 0:
            shares["rank"] = 0.0
        b = cls(total, shares, frozenset(fixed), train_s, export_s, run_dir=run_dir)
        if run_dir is not None:
            b._load()
        return b

    @classmethod
    def for_settings(cls, s: SearchSettings, kind: str, *, n_candidates: int,
                     run_dir: RunDir | None = None,
                     shares: dict[str, float] | None = None) -> Budget:
        """The plan ``s`` asks for: ``s.budget`` seconds, the stages its explicit epochs fix."""
        fixed = [st for st, name in FIXING.items() if explicit(s, name)]
        return cls.plan(s.budget, kind, n_candidates=n_candidates,
                        rank_epochs=s.candidate_epochs, fixed=fixed, train_s=s.train_budget,
                        run_dir=run_dir, shares=shares)

    def split(self, left: float, stages: Iterable[str]) -> dict[str, float]:
        """``left`` seconds over ``stages`` (those still to run): the export allowance and an
        explicit training budget first, the rest by share."""
        stages = list(stages)
        left = max(0.0, left)
        out = {st: 0.0 for st in stages}
        if "export_measure" in stages:
            out["export_measure"] = min(self.export_s, left)
            left -= out["export_measure"]
        if "train" in stages and self.train_s is not None:
            out["train"] = self.train_s
            left = max(0.0, left - self.train_s)
        flex = [st for st in stages if st in self.shares
                and not (st == "train" and self.train_s is not None)]
        weight = sum(self.shares[st] for st in flex)
        for st in flex:
            out[st] = left * self.shares[st] / weight if weight > 0 else 0.0
        if weight == 0 and "export_measure" in stages:
            out["export_measure"] += left  # nothing else to give it to
        return out

    def _later(self, stage: str) -> list[str]:
        return list(STAGES[STAGES.index(stage):])

    # -- stages ---------------------------------------------------------------------------------
    def start(self, name: str) -> None:
        """Stage ``name`` begins: it is allowed its share of what is left and the command clock
        (which the progress bars read) is told. Prefer :meth:`stage`."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages: {STAGES}")
        if self._running is not None:
            self.end()
        self._running, self._t0 = name, time.perf_counter()
        self._allow(0.0)
        progress.push(self.clock)

    def end(self) -> None:
        """The running stage ends: its seconds are added to ``spent`` (and ``budget.json``)."""
        name = self._running
        if name is None:
            return
        self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - self._t0
        self._running = None
        progress.pop(self.clock)
        self._save()

    @contextmanager
    def stage(self, name: str) -> Iterator[Budget]:
        """Run stage ``name`` (:meth:`start` … :meth:`end`, also when it fails)."""
        self.start(name)
        try:
            yield self
        finally:
            self.end()

    def _allow(self, elapsed: float) -> None:
        name = self._running
        assert name is not None
        if self.total is not None:
            left = self.total - sum(self.spent.values()) - elapsed  # spent: finished stages
            plan = self.split(left, self._later(name))
            self.allowed[name] = elapsed + plan[name]
            later = sum(v for k, v in plan.items() if k != name)
        else:  # no budget: only the export allowance is known once the others are done
            later = self.export_s if name == "train" else (0.0 if name == "export_measure"
                                                           else None)
        self.clock.enter(name, self.cap(name), later)
        self.clock.stage_t0 = self._t0

    def rebase(self) -> None:
        """The running stage's time so far was a fixed cost (data, a LUT build): re-split what
        is left over this stage's remaining work and the later stages."""
        if self._running is not None:
            self._allow(time.perf_counter() - self._t0)

    def elapsed(self) -> float:
        """Seconds the running stage has taken so far."""
        return time.perf_counter() - self._t0 if self._running is not None else 0.0

    def capped(self, stage: str) -> bool:
        if stage == "train" and self.train_s is not None:
            return True
        return self.total is not None and stage not in self.fixed and stage != "export_measure"

    def cap(self, stage: str) -> float | None:
        """The seconds ``stage`` may take (None: not capped: no budget, or a fixed stage)."""
        if not self.capped(stage):
            return None
        if self.total is None:  # --train-budget alone
            return self.train_s
        return max(MIN_CAP_S, self.allowed.get(stage, self.planned.get(stage, 0.0)))

    def left(self) -> float | None:
        """Seconds the running stage may still take (None: not capped)."""
        if self._running is None:
            return None
        cap = self.cap(self._running)
        return None if cap is None else max(MIN_CAP_S, cap - self.elapsed())

    def record(self, stage: str, seconds: float) -> None:
        """Count ``seconds`` a stage took outside :meth:`stage` (e.g. a search run elsewhere)."""
        self.spent[stage] = self.spent.get(stage, 0.0) + float(seconds)

    # -- records --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``result.json``'s ``budget``: total, planned, allowed, spent (spent only without a
        budget)."""
        spent = {k: float(self.spent[k]) for k in STAGES if k in self.spent}
        if self.total is None:
            return {"spent": spent}
        return {"total": float(self.total),
                "planned": {k: float(v) for k, v in self.planned.items()},
                "allowed": {k: float(self.allowed[k]) for k in STAGES if k in self.allowed},
                "spent": spent}

    def _save(self) -> None:
        if self.run_dir is not None:
            self.run_dir.write_json("budget.json", {**self.to_dict(), "total": self.total})

    def _load(self) -> None:
        saved = self.run_dir.read_json("budget.json", default={})  # type: ignore[union-attr]
        if saved.get("total") != self.total:
            return
        self.spent.update(_seconds(saved.get("spent")))
        self.allowed.update(_seconds(saved.get("allowed")))
        self.planned.update(_seconds(saved.get("planned")))


def _seconds(d: Any) -> dict[str, float]:
    if not isinstance(d, dict):
        return {}
    return {k: float(v) for k, v in d.items() if k in STAGES and isinstance(v, (int, float))}


def search_budget(s: SearchSettings, kind: str = DIFFERENTIABLE,
                  n_candidates: int | None = None) -> float | None:
    """The search stage's planned seconds for ``s`` (None: not capped). A method's loop
    settings take it; the runner then gives the loop what is left of the stage once the data
    and the latency table are in."""
    n = planned_candidates(s) if n_candidates is None else n_candidates
    return Budget.for_settings(s, kind, n_candidates=n).cap("search")


def planned_candidates(s: SearchSettings) -> int:
    """The candidates a supernet search hands to the ranking: the derived architecture, its
    ``--samples``, and (``fill_target`` with a target) the derived one grown into the target."""
    from nasforge.cost.targets import Targets

    grown = getattr(s, "fill_target", False) and Targets.from_settings(s).any()
    return 1 + int(grown) + getattr(s, "samples", 0)
