"""``nasforge search blockqnn | evolution | reinforce | random`` (METHODS §5, §6).

Sample-based search over the NSC block space: the strategy proposes blocks, the executor
(local / process pool / Ray) trains each for a few epochs (early stop) and returns BlockQNN's
corrected reward, the engine records every trial in ``RUN_DIR/trials.sqlite`` and checkpoints
the strategy there; then the best block is trained from scratch, exported and measured by the
shared finish stage. ``--resume RUN_DIR`` continues a killed search.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

from nasforge.errors import UserError
from nasforge.evaluators import DataSpec, EarlyStopEvaluator
from nasforge.methods.common import (
    Finish,
    SearchSettings,
    add_common_arguments,
    finish,
    settings_from_args,
    setup,
)
from nasforge.run.engine import Engine, EngineConfig
from nasforge.run.executors import EXECUTORS, create_executor
from nasforge.run.rundir import RunDir
from nasforge.run.store import TrialStore
from nasforge.spaces.registry import get_space
from nasforge.strategies.base import create_strategy

#: CLI method -> strategy
STRATEGY_OF = {"blockqnn": "qlearning", "evolution": "evolution", "reinforce": "reinforce",
               "random": "random"}


@dataclass
class SampleSettings(SearchSettings):
    space: str = "nsc-fast"
    final_space: str | None = None  # e.g. nsc-fast-n2: stack the found block twice per stage
    executor: str = "local"
    workers: int = 2
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_trials: int = 200
    max_retries: int = 2
    eval_epochs: int = 3
    eval_budget: float | None = None  # seconds per trial
    eval_lr: float = 0.05
    eval_batch_size: int = 64
    mu: float = 0.01
    rho: float = 0.01
    top: int = 1
    strategy_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        super().validate()
        if self.executor not in EXECUTORS:
            raise UserError(f"--executor must be one of {list(EXECUTORS)}, got {self.executor!r}")
        if self.workers < 1 or self.max_trials < 1 or self.eval_epochs < 1 or self.top < 1:
            raise UserError("--workers, --max-trials, --eval-epochs and --top must be ≥ 1")


def _options(s: SampleSettings) -> dict[str, Any]:
    opts = dict(s.strategy_options)
    strat = STRATEGY_OF[s.method]
    if strat == "qlearning":  # ε: 1.0 → 0.1 over the run (trials or --budget, what ends first)
        opts.setdefault("decay_episodes", None)
    return opts


def run(s: SampleSettings, rd: RunDir) -> dict:
    dev, data = setup(s)
    if s.dataset == "digits":  # mirrored digits are other digits
        s.extra.setdefault("recipe", {"flip": False})
    space = get_space(s.space)
    final_space = get_space(s.final_space) if s.final_space else space
    recipe = {**s.extra.get("recipe", {}), "lr": s.eval_lr, "batch_size": s.eval_batch_size,
              "label_smoothing": 0.0}
    remote = s.executor != "local"
    ev = EarlyStopEvaluator(space, DataSpec(s.dataset, s.data_dir, s.subset, s.seed, str(dev)),
                            epochs=s.eval_epochs, budget_s=s.eval_budget, mu=s.mu, rho=s.rho,
                            threads=max(1, int(s.cpus_per_trial)) if remote else None,
                            recipe=recipe)
    strategy = create_strategy(STRATEGY_OF[s.method], space, seed=s.seed, options=_options(s))
    store = TrialStore(rd.file("trials.sqlite"))
    cfg = EngineConfig(max_trials=s.max_trials, budget_s=s.budget, max_retries=s.max_retries,
                       seed=s.seed, progress=s.progress, desc=f"{s.method} trials")
    with create_executor(s.executor, s.workers, ray_address=s.ray_address,
                         cpus_per_trial=s.cpus_per_trial, gpus_per_trial=s.gpus_per_trial,
                         max_retries=s.max_retries) as ex:
        res = Engine(strategy, ev, store, ex, cfg).run()
    if res.best is None:
        raise UserError(f"no trial finished ({res.failed} failed); the errors are in "
                        f"{rd.file('trials.sqlite')} (table trials, column error)")
    best = store.best(s.top)
    cands = [final_space.arch(t.arch.genes) if final_space is not space else t.arch
             for t in best]
    summary = {"trials_done": res.done, "trials_failed": res.failed,
               "best_reward": res.best.reward, "best_metrics": res.best.metrics,
               "best_block": space.describe(res.best.arch) if hasattr(space, "describe")
               else None, "counts": store.counts(),
               "trials": [{"id": t.id, "status": t.status, "reward": t.reward,
                           "finished_at": t.finished_at, "genes": t.arch.genes}
                          for t in store.trials()]}
    store.close()
    rd.write_json("search.json", summary)
    result = finish(s, rd, data, Finish(space=final_space, candidates=cands,
                                        predict_latency_ms=None, search_seconds=res.elapsed_s,
                                        search_epochs=res.done, extra={"search": summary}))
    if summary["best_block"]:
        with open(rd.file("report.md"), "a") as f:
            f.write(f"\n## Best block ({res.done} trials, best reward "
                    f"{res.best.reward:.4f})\n\n```\n{summary['best_block']}\n```\n")
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    p.set_defaults(train_epochs=15)  # the final training stays short on CPU
    a = p.add_argument
    a("--space", default="nsc-fast", help="NSC space: nsc | nsc-n2 | nsc-fast (stride-2 stem, "
      "default) | nsc-fast-n2")
    a("--final-space", default=None, help="space to train the best block in (e.g. nsc-fast-n2 "
      "stacks it twice per stage); default: the search space")
    a("--executor", default="local", choices=list(EXECUTORS))
    a("--workers", type=int, default=2, help="trials in flight (process / ray)")
    a("--ray-address", default=None, help="an existing Ray cluster (default: start one locally)")
    a("--cpus-per-trial", type=float, default=1.0)
    a("--gpus-per-trial", type=float, default=0.0)
    a("--max-trials", type=int, default=200)
    a("--max-retries", type=int, default=2, help="re-runs of a trial whose worker died")
    a("--eval-epochs", type=int, default=3, help="early-stop epochs per trial")
    a("--eval-budget", type=float, default=None, help="seconds per trial")
    a("--eval-lr", type=float, default=0.05)
    a("--eval-batch-size", type=int, default=64)
    a("--mu", type=float, default=0.01, help="reward weight of log(MFLOPs)")
    a("--rho", type=float, default=0.01, help="reward weight of log(Density)")
    a("--top", type=int, default=1, help="best trials ranked from scratch by the finish stage")
    a("--strategy-options", type=json.loads, default={},
      help='JSON of strategy options, e.g. \'{"alpha": 0.01, "replay": 32}\' (qlearning), '
           '\'{"population": 20, "sample_size": 5}\' (evolution), \'{"lr": 6e-4}\' (reinforce)')


def main(args: argparse.Namespace) -> dict:
    s, rd = settings_from_args(SampleSettings, args.method, args)
    assert isinstance(s, SampleSettings)
    return run(s, rd)
