"""The asynchronous search engine: a strategy proposes, executors evaluate, the store records.

BlockQNN's master/worker design: up to ``workers`` trials are in flight; whichever result
arrives first is told to the strategy at once and a new trial takes its place. Every change is
written to the trial store together with what it did to the strategy (one transaction), which
gives:

- **resume** — a restarted engine rebuilds the strategy's state and re-runs the trials that
  were ``running`` when the previous process died (same trial id, same architecture); results
  are written once per id, so none is lost and none counted twice;
- **constant cost per trial** — the strategy's full state (REINFORCE's controller and Adam
  moments, ~200 KB; Q-learning's table) is *not* written with every trial: each ask and tell
  is logged as a small event row, and a snapshot of the state is written every
  ``snapshot_every`` events; the strategy's append-only lists (Q-learning's replay memory,
  :attr:`Strategy.append_only`) go to the store as rows, each written once. A resume loads the
  last snapshot and replays the events logged after it (asks must give the logged
  architectures again: strategies are deterministic given their state), so it continues
  exactly as if never stopped, and the bytes written per trial do not grow with the run;
- **faults** — a trial whose worker died (:class:`~nasforge.run.executors.WorkerLost`) or whose
  function raised is retried up to ``max_retries`` times, then marked ``failed``;
- **budget** — no new trial starts after ``budget_s`` seconds of search (summed over resumes)
  or ``max_trials`` trials; trials in flight are finished, so none is left ``running``. Nor
  does one start that would be expected to end past ``budget_s`` (``finish_in_budget``: the
  median seconds of this run's finished trials so far), so a whole command's ``--budget`` is
  not overrun by a last trial started a second before the end.
  ``max_trials`` counts every trial, those answered from the store too (``reuse``: a repeated
  architecture is not trained again, its stored result is told again): each is one ask of the
  strategy, and counting them bounds the run even when a strategy keeps repeating itself.

The trial function is ``fn(arch_dict, seed) -> metrics`` with a float ``metrics["reward"]``.
"""

from __future__ import annotations

import concurrent.futures as cf
import statistics
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
from nasforge.run.scalars import log_scalars
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
    snapshot_every: int = 100  # strategy events (asks + tells) between snapshots of its state
    finish_in_budget: bool = True  # no trial starts that is expected to end past budget_s

    def __post_init__(self) -> None:
        if self.max_trials is None and self.budget_s is None:
            raise UserError("a search needs a stopping rule: give max_trials and/or budget_s")
        if self.max_trials is not None and self.max_trials < 1:
            raise UserError(f"max_trials must be ≥ 1, got {self.max_trials}")
        if self.budget_s is not None and self.budget_s <= 0:
            raise UserError(f"budget must be positive, got {self.budget_s}")
        if self.snapshot_every < 1:
            raise UserError(f"snapshot_every must be ≥ 1, got {self.snapshot_every}")


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
        self.inflight: dict[cf.Future, tuple[int, Arch, float]] = {}  # id, arch, launched at
        self.trial_seconds: list[float] = []  # this process's finished trials (wall seconds)
        self.elapsed0 = 0.0
        self.t0 = 0.0
        self.told = 0
        self.best: float | None = None
        self.seq = 0  # the last strategy event written
        self.snap_seq = 0  # the event the stored snapshot of the strategy reflects
        self.rows_stored: dict[str, int] = {}  # append-only rows in the store, per key
        #: trials by status, kept here (a COUNT over the store per check grew with the run)
        self.counts = {"running": 0, "done": 0, "failed": 0}

    # -- state ---------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    def _engine_meta(self) -> dict[str, Any]:
        return {"engine": {"elapsed_s": self.elapsed(), "told": self.told}}

    def _snapshot(self, full: bool = False) -> tuple[dict[str, Any], dict[str, tuple[int, list]]]:
        """Meta and rows of a snapshot of the strategy after event ``self.seq``; ``full`` keeps
        the append-only lists inline (the end of a run: the state readable in one piece)."""
        state = self.strategy.state_dict()
        rows: dict[str, tuple[int, list]] = {}
        if not full:
            for key in self.strategy.append_only:
                values, start = state[key], self.rows_stored.get(key, 0)
                rows[key] = (start, values[start:])
                self.rows_stored[key] = len(values)
                state = {**state, key: {"__rows__": len(values)}}
        self.snap_seq = self.seq
        return ({"strategy": state, "strategy_name": self.strategy.name,
                 "strategy_seq": self.seq, **self._engine_meta()}, rows)

    def _state_write(self, kind: str | None, value: float | None = None) -> dict[str, Any]:
        """The store-write keywords for a trial change that made the strategy ``ask`` / ``tell``
        (``kind``) or did not touch it (None): the event, and a snapshot when one is due."""
        if kind is None:
            return {"meta": self._engine_meta()}
        self.seq += 1
        if self.seq - self.snap_seq >= self.cfg.snapshot_every:
            meta, rows = self._snapshot()
            return {"meta": meta, "rows": rows, "event": (self.seq, kind, value)}
        return {"meta": self._engine_meta(), "event": (self.seq, kind, value)}

    def _restore(self) -> list[Trial]:
        st = self.store
        name = st.meta("strategy_name")
        if name is not None and name != self.strategy.name:
            raise UserError(f"the store {str(st.path)!r} belongs to a {name!r} search, "
                            f"not {self.strategy.name!r}; resume with the same strategy")
        eng = st.meta("engine", {})
        self.elapsed0 = float(eng.get("elapsed_s", 0.0))
        self.told = int(eng.get("told", 0))
        best = st.best(1)
        self.best = best[0].reward if best else None
        self.seq = st.last_event()
        self.counts = st.counts()
        state = st.meta("strategy")
        if state is None:  # a new run: its initial state is the first snapshot
            meta, rows = self._snapshot()
            st.put_meta(meta, rows=rows)
            return st.trials("running")
        for key in self.strategy.append_only:
            marker = state.get(key)
            if isinstance(marker, dict) and "__rows__" in marker:
                state = {**state, key: st.rows(key, int(marker["__rows__"]))}
            self.rows_stored[key] = st.row_count(key)
        self.strategy.load_state_dict(state)
        self.snap_seq = int(st.meta("strategy_seq", self.seq))  # older stores: state is current
        self._replay(st.events(after=self.snap_seq))
        return st.trials("running")

    def _replay(self, events: list[tuple[int, int, str, float | None]]) -> None:
        """Re-apply the asks and tells logged after the snapshot, in their order."""
        for _, trial_id, kind, value in events:
            arch = self.store.get(trial_id).arch
            if kind == "tell":
                self.strategy.tell(arch, float(value))  # type: ignore[arg-type]
                continue
            self.strategy.progress = float(value or 0.0)
            asked = self.strategy.ask()
            if asked != arch:
                raise UserError(
                    f"cannot resume {str(self.store.path)!r} exactly: replaying the logged asks "
                    f"of strategy {self.strategy.name!r} gave {asked.to_json()} where trial "
                    f"{trial_id} had {arch.to_json()}; a strategy must ask the same given the "
                    "same state (seeded RNG in state_dict()) for a resume to continue")

    def _moved(self, status: str) -> None:
        self.counts["running"] -= 1
        self.counts[status] += 1

    def _can_start(self) -> bool:
        c = self.cfg
        if c.budget_s is not None and self.elapsed() >= c.budget_s:
            return False
        if (c.budget_s is not None and c.finish_in_budget and self.trial_seconds
                and self.elapsed() + statistics.median(self.trial_seconds) > c.budget_s):
            return False  # a trial started now would be expected to end past the budget
        if c.max_trials is not None and sum(self.counts.values()) >= c.max_trials:
            return False
        return True

    # -- the loop ------------------------------------------------------------------------------
    def _launch(self, trial_id: int, arch: Arch) -> None:
        t = time.perf_counter()  # before submit: the local executor runs the trial in it
        fut = self.ex.submit(self.fn, arch.to_dict(), trial_seed(self.cfg.seed, trial_id))
        self.inflight[fut] = (trial_id, arch, t)

    def _record(self, trial_id: int, arch: Arch, metrics: Any, worker: str | None) -> None:
        if not isinstance(metrics, dict) or not isinstance(metrics.get("reward"), (int, float)):
            raise UserError(f"the trial function must return a dict with a numeric 'reward', "
                            f"got {metrics!r}")
        reward = float(metrics["reward"])
        self.strategy.tell(arch, reward)
        self.told += 1
        if not self.store.finish(trial_id, metrics, worker=worker,
                                 **self._state_write("tell", reward)):
            raise RuntimeError(f"trial {trial_id} was finished twice (store shared with another "
                               "engine?)")
        self._moved("done")
        if self.best is None or reward > self.best:
            self.best = reward
        log_scalars(self.store.path, "trial", trial_id,  # scalars.jsonl, for a live report
                    {**metrics, "best": self.best, "worker": worker, "elapsed_s": self.elapsed()})

    def _handle(self, fut: cf.Future) -> None:
        trial_id, arch, t_launch = self.inflight.pop(fut)
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
            told = self.cfg.failure_reward
            if told is not None:
                self.strategy.tell(arch, told)
                self.told += 1
            if self.store.fail(trial_id, msg,
                               **self._state_write(None if told is None else "tell", told)):
                self._moved("failed")
            return
        self.trial_seconds.append(time.perf_counter() - t_launch)
        self._record(trial_id, arch, metrics, worker)

    def _progress(self) -> float:
        c, f = self.cfg, 0.0
        if c.budget_s is not None:
            f = self.elapsed() / c.budget_s
        if c.max_trials is not None:
            f = max(f, sum(self.counts.values()) / c.max_trials)
        return min(1.0, f)

    def _start_one(self) -> None:
        progress = self.strategy.progress = self._progress()
        arch = self.strategy.ask()
        prev = self.store.find_done(arch) if self.cfg.reuse else None
        trial_id = self.store.create(arch, **self._state_write("ask", progress))
        self.counts["running"] += 1
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
        counts = self.counts
        bar = tqdm(total=c.max_trials, initial=counts["done"] + counts["failed"],
                   desc=c.desc, unit="trial", disable=not c.progress, dynamic_ncols=True,
                   bar_format="{desc}: {n_fmt}/{total_fmt} done [{elapsed}, {rate_fmt}"
                              "{postfix}]")  # our ETA knows the budget; tqdm's does not
        try:
            while True:
                while len(self.inflight) < self.ex.workers and self._can_start():
                    before = counts["done"]
                    self._start_one()
                    if counts["done"] > before:  # reused: finished at once
                        bar.update(1)
                if not self.inflight:
                    break
                timeout = 1.0  # wake up every second (the bar moves) and when the budget ends
                if c.budget_s is not None and c.budget_s > self.elapsed():
                    timeout = min(timeout, c.budget_s - self.elapsed())
                done, _ = cf.wait(list(self.inflight), timeout=timeout,
                                  return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    n0 = counts["done"] + counts["failed"]
                    self._handle(fut)
                    bar.update(counts["done"] + counts["failed"] - n0)
                bar.set_postfix_str(self._postfix(bar))
        finally:
            bar.close()
        self.store.put_meta(self._snapshot(full=True)[0])  # the state in one piece, at the end
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
