"""The asynchronous search engine: a strategy proposes, executors evaluate, the store records.

BlockQNN's master/worker design: up to ``workers`` trials are in flight; whichever result
arrives first is told to the strategy at once and a new trial takes its place. Every change is
written to the trial store together with the strategy's state (one transaction), which gives:

- **resume** — a restarted engine loads the strategy and engine state from the store and re-runs
  the trials that were ``running`` when the previous process died (same trial id, same
  architecture); results are written once per id, so none is lost and none counted twice;
- **faults** — a trial whose worker died (:class:`~nasforge.run.executors.WorkerLost`) or whose
  function raised is retried up to ``max_retries`` times, then marked ``failed``;
- **budget** — no new trial starts after ``budget_s`` seconds of search (summed over resumes)
  or ``max_trials`` trials; trials in flight are finished, so none is left ``running``.

The trial function is ``fn(arch_dict, seed) -> metrics`` with a float ``metrics["reward"]``.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.progress import command_eta
from nasforge.run.executors import Executor, WorkerLost
from nasforge.run.store import Trial, TrialStore
from nasforge.strategies.base import Strategy

TrialFn = Callable[[dict[str, Any], int], dict[str, Any]]


@dataclass
class EngineConfig:
    max_trials: int | None = 100
    budget_s: float | None = None
    max_retries: int = 2
    reuse: bool = True  # a repeated architecture reuses its stored result (no retraining)
    failure_reward: float | None = None  # told to the strategy for a failed trial (None: not)
    seed: int = 0
    progress: bool = True
    desc: str = "search"

    def __post_init__(self) -> None:
        if self.max_trials is None and self.budget_s is None:
            raise UserError("a search needs a stopping rule: give max_trials and/or budget_s")
        if self.max_trials is not None and self.max_trials < 1:
            raise UserError(f"max_trials must be ≥ 1, got {self.max_trials}")
        if self.budget_s is not None and self.budget_s <= 0:
            raise UserError(f"budget must be positive, got {self.budget_s}")


@dataclass
class EngineResult:
    best: Trial | None
    done: int
    failed: int
    elapsed_s: float


def trial_seed(seed: int, trial_id: int) -> int:
    """Per-trial seed derived from the run seed and the trial id (never shared by workers)."""
    return (seed * 1_000_003 + trial_id) % (2**31 - 1)


class Engine:
    def __init__(self, strategy: Strategy, fn: TrialFn, store: TrialStore, executor: Executor,
                 cfg: EngineConfig) -> None:
        self.strategy, self.fn, self.store, self.ex, self.cfg = (strategy, fn, store, executor,
                                                                 cfg)
        self.inflight: dict[cf.Future, tuple[int, Arch]] = {}
        self.elapsed0 = 0.0
        self.t0 = 0.0
        self.told = 0
        self.best: float | None = None

    # -- state ---------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    def _meta(self) -> dict[str, Any]:
        return {"strategy": self.strategy.state_dict(), "strategy_name": self.strategy.name,
                "engine": {"elapsed_s": self.elapsed(), "told": self.told}}

    def _restore(self) -> list[Trial]:
        name = self.store.meta("strategy_name")
        if name is not None and name != self.strategy.name:
            raise UserError(f"the store {str(self.store.path)!r} belongs to a {name!r} search, "
                            f"not {self.strategy.name!r}; resume with the same strategy")
        state = self.store.meta("strategy")
        if state is not None:
            self.strategy.load_state_dict(state)
        eng = self.store.meta("engine", {})
        self.elapsed0 = float(eng.get("elapsed_s", 0.0))
        self.told = int(eng.get("told", 0))
        best = self.store.best(1)
        self.best = best[0].reward if best else None
        return self.store.trials("running")

    def _can_start(self) -> bool:
        c = self.cfg
        if c.budget_s is not None and self.elapsed() >= c.budget_s:
            return False
        if c.max_trials is not None:
            n = sum(self.store.counts().values())
            if n >= c.max_trials:
                return False
        return True

    # -- the loop ------------------------------------------------------------------------------
    def _launch(self, trial_id: int, arch: Arch) -> None:
        fut = self.ex.submit(self.fn, arch.to_dict(), trial_seed(self.cfg.seed, trial_id))
        self.inflight[fut] = (trial_id, arch)

    def _record(self, trial_id: int, arch: Arch, metrics: Any, worker: str | None) -> None:
        if not isinstance(metrics, dict) or not isinstance(metrics.get("reward"), (int, float)):
            raise UserError(f"the trial function must return a dict with a numeric 'reward', "
                            f"got {metrics!r}")
        reward = float(metrics["reward"])
        self.strategy.tell(arch, reward)
        self.told += 1
        if not self.store.finish(trial_id, metrics, worker=worker, meta=self._meta()):
            raise RuntimeError(f"trial {trial_id} was finished twice (store shared with another "
                               "engine?)")
        if self.best is None or reward > self.best:
            self.best = reward

    def _handle(self, fut: cf.Future) -> None:
        trial_id, arch = self.inflight.pop(fut)
        try:
            metrics, worker = fut.result()
        except Exception as e:  # noqa: BLE001 - retried, then recorded as failed
            attempts = self.store.get(trial_id).attempts
            if attempts <= self.cfg.max_retries:
                self.store.retry(trial_id)
                self._launch(trial_id, arch)
                return
            msg = f"{type(e).__name__}: {e}"
            if not isinstance(e, WorkerLost):
                msg += "\n" + "".join(traceback.format_exception(e))[-2000:]
            if self.cfg.failure_reward is not None:
                self.strategy.tell(arch, self.cfg.failure_reward)
                self.told += 1
            self.store.fail(trial_id, msg, meta=self._meta())
            return
        self._record(trial_id, arch, metrics, worker)

    def _progress(self) -> float:
        c, f = self.cfg, 0.0
        if c.budget_s is not None:
            f = self.elapsed() / c.budget_s
        if c.max_trials is not None:
            f = max(f, sum(self.store.counts().values()) / c.max_trials)
        return min(1.0, f)

    def _start_one(self) -> None:
        self.strategy.progress = self._progress()
        arch = self.strategy.ask()
        prev = self.store.find_done(arch) if self.cfg.reuse else None
        trial_id = self.store.create(arch, meta=self._meta())
        if prev is not None:
            self._record(trial_id, arch, {**(prev.metrics or {}), "reused_from": prev.id},
                         "store")
        else:
            self._launch(trial_id, arch)

    def run(self) -> EngineResult:
        self.t0 = time.perf_counter()
        for t in self._restore():  # interrupted trials: run again, same id and architecture
            self.store.retry(t.id)
            self._launch(t.id, t.arch)
        c = self.cfg
        counts = self.store.counts()
        bar = tqdm(total=c.max_trials, initial=counts["done"] + counts["failed"],
                   desc=c.desc, unit="trial", disable=not c.progress, dynamic_ncols=True,
                   bar_format="{desc}: {n_fmt}/{total_fmt} done [{elapsed}, {rate_fmt}"
                              "{postfix}]")  # our ETA knows the budget; tqdm's does not
        try:
            while True:
                while len(self.inflight) < self.ex.workers and self._can_start():
                    before = self.store.counts()["done"]
                    self._start_one()
                    if self.store.counts()["done"] > before:  # reused: finished at once
                        bar.update(1)
                if not self.inflight:
                    break
                timeout = 1.0  # wake up every second (the bar moves) and when the budget ends
                if c.budget_s is not None and c.budget_s > self.elapsed():
                    timeout = min(timeout, c.budget_s - self.elapsed())
                done, _ = cf.wait(list(self.inflight), timeout=timeout,
                                  return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    n0 = sum(self.store.counts()[k] for k in ("done", "failed"))
                    self._handle(fut)
                    bar.update(sum(self.store.counts()[k] for k in ("done", "failed")) - n0)
                bar.set_postfix_str(self._postfix(bar))
        finally:
            bar.close()
        self.store.put_meta(self._meta())
        counts = self.store.counts()
        best = self.store.best(1)
        return EngineResult(best[0] if best else None, counts["done"], counts["failed"],
                            self.elapsed())

    def _postfix(self, bar: tqdm) -> str:
        c = self.cfg
        eta: list[float] = []
        if c.budget_s is not None:
            eta.append(max(0.0, c.budget_s - self.elapsed()))
        if c.max_trials is not None and bar.n:
            eta.append(self.elapsed() / bar.n * max(0, c.max_trials - bar.n))
        best = "-" if self.best is None else f"{self.best:.4f}"
        own = f"best={best} eta={min(eta):.0f}s" if eta else f"best={best}"
        return own + command_eta(min(eta) if eta else None)
