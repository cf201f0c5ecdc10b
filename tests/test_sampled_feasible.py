"""A sample-based search under a target hands the finish stage the best trials that MEET it
(issue 10: BlockQNN's best trial missing a latency target failed the command); when none
does, the command ends with exit 2 naming the target and the closest trial, and writes
``infeasible.json``."""

from __future__ import annotations

import json

import numpy as np

from nasforge.cost.targets import Targets
from nasforge.methods.sampled import feasible_best
from nasforge.run.store import TrialStore
from nasforge.spaces.registry import get_space


def _store(tmp_path, rows):
    space = get_space("nsc-fast")
    rng = np.random.default_rng(0)
    store = TrialStore(tmp_path / "trials.sqlite")
    ids = {}
    for name, reward, meets, violation in rows:
        arch = space.sample(rng)
        while store.find_done(arch) is not None:
            arch = space.sample(rng)
        tid = store.create(arch)
        store.finish(tid, {"reward": reward, "meets_target": meets, "violation": violation,
                           "latency_ms": 1.0 + violation})
        ids[tid] = name
    return store, ids


ROWS = [("a", 0.90, False, 0.3), ("b", 0.50, True, 0.0), ("c", 0.40, True, 0.0),
        ("d", 0.95, False, 0.1)]


def test_the_best_trials_that_meet_the_target_are_picked(tmp_path):
    store, ids = _store(tmp_path, ROWS)
    target = Targets(latency_ms=1.0)
    best, closest = feasible_best(store, 1, target)
    assert [ids[t.id] for t in best] == ["b"] and closest is None
    assert [ids[t.id] for t in feasible_best(store, 3, target)[0]] == ["b", "c"]
    # without a target: the best rewards, whatever they cost
    assert [ids[t.id] for t in feasible_best(store, 2, Targets())[0]] == ["d", "a"]


def test_when_none_meets_the_target_the_closest_trial_is_named(tmp_path):
    store, ids = _store(tmp_path, [r for r in ROWS if not r[2]])
    best, closest = feasible_best(store, 2, Targets(latency_ms=1.0))
    assert best == [] and ids[closest.id] == "d"  # least violation, not highest reward


def test_cli_exits_2_with_the_target_and_the_closest_trial(tmp_path, capsys):
    from nasforge.cli import main

    out = tmp_path / "run"
    rc = main(["search", "random", "--dataset", "digits", "--subset", "32", "--max-trials", "1",
               "--eval-epochs", "1", "--workers", "1", "--latency-ms", "1e-6", "--out",
               str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no trial of 1 meets the target (latency_ms=1e-06)" in err and "closest" in err
    info = json.loads((out / "infeasible.json").read_text())
    assert info["targets"]["latency_ms"] == 1e-6 and info["closest"]["latency_ms"] > 0
    assert not (out / "result.json").exists() and (out / "search.json").exists()
