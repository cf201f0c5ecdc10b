"""Trials per minute of the sample-based engine with 1 and 2 workers, process pool vs Ray.

Each trial is a real early-stopped evaluation of a random NSC block (the ``nasforge search``
evaluator: build, count FLOPs, train on a digits subset, reward); the same trial seeds and
blocks are run by every configuration. The figure is finished trials / wall minute of the
engine loop, start-up of the workers included (Ray's cluster start is reported apart);
``train s/trial`` is the mean training time inside a trial, which shows whether the workers
slow each other down (shared cores, memory bandwidth).

    flock /tmp/nasforge-heavy.lock .venv/bin/python benchmarks/sample_trials_per_minute.py
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

from nasforge.evaluators import DataSpec, EarlyStopEvaluator
from nasforge.run.engine import Engine, EngineConfig
from nasforge.run.executors import create_executor
from nasforge.run.store import TrialStore
from nasforge.spaces.registry import get_space
from nasforge.strategies.base import create_strategy


def one(executor: str, workers: int, trials: int, ev: EarlyStopEvaluator, root: Path) -> dict:
    t0 = time.perf_counter()
    ex = create_executor(executor, workers)
    startup = time.perf_counter() - t0
    store = TrialStore(root / f"{executor}-{workers}.sqlite")
    strategy = create_strategy("random", ev.space, seed=0)
    t1 = time.perf_counter()
    try:
        res = Engine(strategy, ev, store, ex, EngineConfig(max_trials=trials, reuse=False,
                                                            progress=False)).run()
    finally:
        ex.close()
    wall = time.perf_counter() - t1
    train = [t.metrics["train_seconds"] for t in store.trials("done")]
    store.close()
    return {"executor": executor, "workers": workers, "done": res.done, "wall_s": wall,
            "startup_s": startup, "per_min": 60.0 * res.done / wall,
            "train_s": sum(train) / max(len(train), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--subset", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--executors", default="process,ray")
    args = ap.parse_args()
    ev = EarlyStopEvaluator(get_space("nsc-fast"), DataSpec("digits", subset=args.subset),
                            epochs=args.epochs, threads=1,
                            recipe={"flip": False, "batch_size": 64, "lr": 0.05})
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.executors.split(","):
            if name == "ray" and importlib.util.find_spec("ray") is None:
                print("ray not installed: skipped")
                continue
            for w in (1, 2):
                rows.append(one(name, w, args.trials, ev, Path(d)))
    print(f"\ntrials/min, {args.trials} trials of {args.epochs} epoch(s) on {args.subset} digits "
          "images (nsc-fast, random blocks, 1 torch thread per worker)")
    print(f"{'executor':<10}{'workers':>8}{'trials':>8}{'wall s':>9}{'start s':>9}"
          f"{'train s/trial':>15}{'trials/min':>12}{'speed-up':>10}")
    base = {r["executor"]: r["per_min"] for r in rows if r["workers"] == 1}
    for r in rows:
        print(f"{r['executor']:<10}{r['workers']:>8}{r['done']:>8}{r['wall_s']:>9.1f}"
              f"{r['startup_s']:>9.1f}{r['train_s']:>15.2f}{r['per_min']:>12.1f}"
              f"{r['per_min'] / base[r['executor']]:>9.2f}x")


if __name__ == "__main__":
    main()
