import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from nasforge.api import search
from nasforge.arch import Arch
from nasforge.cli import main
from nasforge.errors import UserError
from nasforge.run.engine import Engine, EngineConfig
from nasforge.run.executors import LocalExecutor
from nasforge.run.result import read_result
from nasforge.run.store import TrialStore
from nasforge.strategies.base import STRATEGIES, create_strategy
from nasforge.testing.tabular import load_table
from nasforge.testing.trials import Slow, always_fails, peak

CHOICES = {"a": [0, 1, 2, 3], "b": [0, 1, 2], "c": ["a", "b"]}

KILLABLE = textwrap.dedent("""
    import sys
    from nasforge.api import search
    from nasforge.testing.trials import Slow
    out, log = sys.argv[1], sys.argv[2]
    search({"a": [0, 1, 2, 3], "b": [0, 1, 2], "c": ["a", "b"]}, Slow(0.25, log), "qlearning",
           max_trials=12, out=out, reuse=False, executor="process", workers=2, seed=5,
           options={"decay_episodes": 12})
""")


def brute_force_best(choices):
    configs = [dict(zip(choices, vals)) for vals in itertools.product(*choices.values())]
    return max(configs, key=peak)


def test_api_search_finds_the_brute_force_optimum(tmp_path):
    res = search(CHOICES, peak, "evolution", max_trials=60, out=tmp_path / "s",
                 options={"population": 6, "sample_size": 3}, seed=1)
    assert res.best_config == brute_force_best(CHOICES)
    assert res.best_reward == peak(res.best_config)
    assert res.done == 60 and len(res.trials) == 60
    with pytest.raises(UserError, match="resume=True"):
        search(CHOICES, peak, "evolution", max_trials=60, out=tmp_path / "s")
    with pytest.raises(UserError, match="differ"):
        search(CHOICES, peak, "random", max_trials=60, out=tmp_path / "s", resume=True)


def test_kill_9_then_resume_runs_every_trial_exactly_once(tmp_path):
    out, log = tmp_path / "run", tmp_path / "calls.log"
    p = subprocess.Popen([sys.executable, "-c", KILLABLE, str(out), str(log)],
                         start_new_session=True)
    db = out / "trials.sqlite"
    deadline = time.time() + 90
    while time.time() < deadline:  # kill while some trials are done and others running
        if db.exists():
            try:
                c = TrialStore(db).counts()
            except Exception:  # noqa: BLE001 - the file is being created
                c = {"done": 0, "running": 0}
            if c["done"] >= 3 and c["running"] >= 1:
                break
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)  # the engine and its worker processes
    p.wait()
    before = TrialStore(db)
    c = before.counts()
    assert c["done"] >= 3 and c["running"] >= 1, c
    running_ids = {t.id for t in before.trials("running")}
    res = search(CHOICES, Slow(0.05, str(log)), "qlearning", max_trials=12, out=out,
                 resume=True, reuse=False, seed=5, options={"decay_episodes": 12})
    st = TrialStore(db)
    assert st.counts() == {"running": 0, "done": 12, "failed": 0}
    trials = st.trials()
    assert [t.id for t in trials] == list(range(1, 13))  # none lost, none added twice
    assert all(st.get(i).attempts == 2 for i in running_ids)  # interrupted ones were re-run
    assert st.meta("engine")["told"] == 12  # the strategy heard each result exactly once
    assert len(st.meta("strategy")["memory"]) == 12
    assert res.done == 12


def test_budget_stops_and_leaves_nothing_running(tmp_path):
    t0 = time.perf_counter()
    res = search(CHOICES, Slow(0.1), "random", max_trials=None, budget_s=0.5,
                 out=tmp_path / "b", reuse=False)
    assert time.perf_counter() - t0 < 3
    assert 2 <= res.done <= 7
    assert TrialStore(res.store).counts()["running"] == 0


def test_failing_objective_is_retried_then_failed(tmp_path):
    res = search(CHOICES, always_fails, "random", max_trials=2, out=tmp_path / "f",
                 max_retries=1)
    st = TrialStore(res.store)
    assert res.done == 0 and res.failed == 2 and res.best_config is None
    t = st.trials("failed")[0]
    assert t.attempts == 2 and "broken objective" in t.error


def test_repeated_architecture_reuses_the_stored_result(tmp_path):
    calls = tmp_path / "calls"
    res = search({"a": [0, 1]}, Slow(0.0, str(calls)), "random", max_trials=8,
                 out=tmp_path / "r")
    st = TrialStore(res.store)
    assert res.done == 8
    assert len(calls.read_text().splitlines()) == 2  # only the two distinct configs ran
    assert sum("reused_from" in t.metrics for t in st.trials()) == 6
    assert sum(t.reused_from is not None for t in res.trials) == 6  # the API says which
    assert all(t.reused_from < t.id for t in res.trials if t.reused_from is not None)


@pytest.mark.slow
def test_cli_search_writes_result_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["search", "random", "--dataset", "digits", "--subset", "200", "--executor", "local",
            "--max-trials", "2", "--eval-epochs", "1", "--train-epochs", "1", "--no-progress"]
    cmd = [sys.executable, "-m", "nasforge.cli", *args]
    # the run in this process (same code path as the command; no second interpreter start-up),
    # the resume as a real command
    assert main([*args, "--out", str(out)]) == 0
    res = read_result(out / "result.json")
    assert res["method"] == "random" and res["space"] == "nsc-fast"
    assert res["epochs"]["search"] == 2
    st = TrialStore(out / "trials.sqlite")
    assert st.counts() == {"running": 0, "done": 2, "failed": 0}
    search_json = json.loads((out / "search.json").read_text())
    assert "output" in search_json["best_block"]
    before = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    r2 = subprocess.run([*cmd[:5], "--resume", str(out), "--no-progress"],
                        capture_output=True, text=True, timeout=120)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "the run is complete" in r2.stderr
    assert TrialStore(out / "trials.sqlite").counts()["done"] == 2  # nothing re-run
    # a finished run is not trained, exported or measured again: no file rewritten
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == before


class _Stop(BaseException):
    """Raised by the objective to end a run abruptly (no final state write), like a kill."""


@dataclass
class _Table:
    """The NAS-Bench-Macro reward as an engine trial function; ``stop_at``: calls before a
    :class:`_Stop`."""

    table: Any
    stop_at: int | None = None
    calls: int = 0

    def __call__(self, arch_dict, seed):
        self.calls += 1
        if self.stop_at is not None and self.calls > self.stop_at:
            raise _Stop
        return {"reward": self.table(Arch.from_dict(arch_dict).genes)}


def _engine(path, name, fn, n, **cfg):
    table = load_table()
    strat = create_strategy(name, table.space(), seed=4)
    return Engine(strat, fn, TrialStore(path), LocalExecutor(),
                  EngineConfig(max_trials=n, progress=False, seed=4, **cfg))


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_resume_from_snapshot_and_event_log_continues_exactly(tmp_path, name):
    """Stopped between snapshots (the last one 7 events back at most), a resumed run replays
    the logged asks and tells and goes on exactly as the run that never stopped."""
    table = load_table()
    cfg = {"snapshot_every": 7, "reuse": False}  # 2 events per trial: 37 told + 1 asked = 75
    whole = _engine(tmp_path / "a.sqlite", name, _Table(table), 60, **cfg)
    whole.run()
    cut = _engine(tmp_path / "b.sqlite", name, _Table(table, stop_at=37), 60, **cfg)
    with pytest.raises(_Stop):
        cut.run()
    st = TrialStore(tmp_path / "b.sqlite")
    assert (st.meta("strategy_seq"), st.last_event()) == (70, 75)  # 5 events to replay
    assert st.counts() == {"running": 1, "done": 37, "failed": 0}
    resumed = _engine(tmp_path / "b.sqlite", name, _Table(table), 60, **cfg)
    resumed.run()
    a, b = TrialStore(tmp_path / "a.sqlite").trials(), TrialStore(tmp_path / "b.sqlite").trials()
    assert [(t.arch, t.reward, t.status) for t in a] == [(t.arch, t.reward, t.status) for t in b]
    assert (json.dumps(whole.strategy.state_dict(), sort_keys=True)
            == json.dumps(resumed.strategy.state_dict(), sort_keys=True))


@pytest.mark.parametrize("name", ["qlearning", "reinforce"])
def test_bytes_written_per_trial_do_not_grow_with_the_run(tmp_path, name):
    """Bytes the engine writes per trial around trial 1,000 are within 2x of those around
    trial 100 (a count of payload bytes, not a timing)."""
    eng = _engine(tmp_path / "t.sqlite", name, _Table(load_table()), 1050)
    after: list[int] = []
    finish = eng.store.finish

    def counted(*args, **kwargs):
        ok = finish(*args, **kwargs)
        after.append(eng.store.bytes_written)
        return ok

    eng.store.finish = counted
    eng.run()
    per_trial = np.diff(after)  # trial i: its create and its finish (+ snapshots when due)
    early, late = per_trial[50:150].mean(), per_trial[950:1050].mean()
    assert late <= 2 * early, (early, late)
    # and the bar means something: the state itself is large (REINFORCE) or grows (Q-learning)
    state = len(json.dumps(eng.strategy.state_dict()))
    assert late < state / 4, (late, state)


@pytest.mark.parametrize("finish_in_budget, trials", [(True, 2), (False, 3)])
def test_no_trial_starts_that_would_end_past_the_budget(tmp_path, finish_in_budget, trials):
    """Trials of 0.5 s under a 1.2-s budget: the third would start at 1.0 s and end at 1.5 s.
    The engine does not start it (the command's --budget is not overrun by a last trial);
    without the rule it starts, and the search ends 0.3 s past its budget."""

    def half_second(arch_dict, seed):  # noqa: ARG001
        time.sleep(0.5)
        return {"reward": 0.5}

    eng = _engine(tmp_path / "t.sqlite", "random", half_second, 50, budget_s=1.2,
                  reuse=False, finish_in_budget=finish_in_budget)
    res = eng.run()
    assert res.done == trials
    if finish_in_budget:
        assert res.elapsed_s < 1.2
