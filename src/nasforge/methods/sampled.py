"""``nasforge search blockqnn | evolution | reinforce | random`` (METHODS §5, §6).

Sample-based search over the NSC block space: the strategy proposes blocks, the executor
(local / process pool / Ray) trains each for a few epochs (early stop) and returns BlockQNN's
corrected reward, the engine records every trial in ``RUN_DIR/trials.sqlite`` and checkpoints
the strategy there; then the best block is trained from scratch, exported and measured by the
shared finish stage. ``--resume RUN_DIR`` continues a killed search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nasforge.cost.model import CostModel, MeasuredLatency
from nasforge.cost.targets import Targets
from nasforge.errors import UserError
from nasforge.evaluators import DataSpec, EarlyStopEvaluator
from nasforge.methods.budget import SAMPLE_BASED, Budget
from nasforge.methods.common import setup
from nasforge.methods.finish import Finish, finish
from nasforge.methods.settings import SearchSettings, opt
from nasforge.run.engine import Engine, EngineConfig
from nasforge.run.executors import EXECUTORS, create_executor
from nasforge.run.rundir import RunDir
from nasforge.run.store import Trial, TrialStore
from nasforge.spaces.registry import get_space, space_names
from nasforge.strategies.base import Sequential, create_strategy

#: CLI method -> strategy
STRATEGY_OF = {"blockqnn": "qlearning", "evolution": "evolution", "reinforce": "reinforce",
               "random": "random"}


def space_help() -> str:
    """``--space``'s help from the space registry: the spaces every strategy runs on (they
    offer decisions, as BlockQNN's Q-learning and REINFORCE need) and the ones only random
    search and evolution take (any space: they only sample and mutate)."""
    seq, other = [], []
    for n in space_names():
        (seq if isinstance(get_space(n), Sequential) else other).append(n)
    return (f"space; blockqnn, reinforce, evolution, random: {' | '.join(seq)}; evolution and "
            f"random also: {' | '.join(other)} (default nsc-fast: NSC, stride-2 stem)")


#: trials a budgeted search plans room for when --eval-budget is not given
BUDGET_TRIALS = 24


@dataclass
class SampleSettings(SearchSettings):
    space: str = opt("nsc-fast", space_help)
    final_space: str | None = opt(None, "space to train the best block in (e.g. nsc-fast-n2 "
                                  "stacks it twice per stage); default: the search space")
    executor: str = opt("local", "where trials run", lambda: list(EXECUTORS))
    workers: int = opt(2, "trials in flight (process / ray)")
    ray_address: str | None = opt(None, "an existing Ray cluster (default: start one locally)")
    cpus_per_trial: float = opt(1.0, "CPUs per trial (process / ray)")
    gpus_per_trial: float = opt(0.0, "GPUs per trial (ray)")
    max_trials: int = opt(200, "trials to run")
    max_retries: int = opt(2, "re-runs of a trial whose worker died")
    eval_epochs: int = opt(3, "early-stop epochs per trial")
    eval_budget: float | None = opt(None, "seconds per trial (default: with --budget, the "
                                    f"search's seconds for {BUDGET_TRIALS} trials; else the "
                                    "epochs in full)")
    eval_lr: float = opt(0.05, "learning rate of the trial trainings")
    eval_batch_size: int = opt(64, "batch size of the trial trainings")
    mu: float = opt(0.01, "reward weight of log(MFLOPs)")
    rho: float = opt(0.01, "reward weight of log(Density)")
    below_target: str = opt("flat", "the reward's FLOPs term below a --flops target: flat "
                            "(it sees max(FLOPs, target), so FLOPs saved below the target "
                            "earn nothing, as in the supernet searches) | reward (BlockQNN: "
                            "fewer FLOPs always earn reward)", ("flat", "reward"))
    top: int = opt(3, "best trials (by reward, meeting the targets) trained briefly from "
                   "scratch by the finish stage, the best of them trained in full: a reward "
                   "won by the cost terms alone is checked against accuracy")
    strategy_options: dict[str, Any] = opt(
        {}, 'JSON of strategy options, e.g. \'{"alpha": 0.01, "replay": 32}\' (qlearning), '
        '\'{"population": 20, "sample_size": 5}\' (evolution), \'{"lr": 6e-4}\' (reinforce)')

    def validate(self) -> None:
        super().validate()  # --executor is checked against its choices there
        if self.workers < 1 or self.max_trials < 1 or self.eval_epochs < 1 or self.top < 1:
            raise UserError("--workers, --max-trials, --eval-epochs and --top must be ≥ 1")


def feasible_best(store: TrialStore, k: int, targets: Targets) -> tuple[list[Trial],
                                                                       Trial | None]:
    """The ``k`` done trials of highest reward (distinct architectures) that meet ``targets``
    by their own measurement (``meets_target``: the trained model measured on the target in
    the trial), and, when none meets them, the closest trial (least violation) — else None.
    The best trial by reward can miss the target (all trials missing, or a violator's reward
    still above the rest), so the finish stage is handed only trials that meet it."""
    if not targets.any():
        return store.best(k), None
    done = sorted((t for t in store.trials("done") if t.reward is not None),
                  key=lambda t: -t.reward)  # type: ignore[operator]
    out: list[Trial] = []
    seen: set[str] = set()
    for t in done:
        if t.metrics.get("meets_target") and t.arch.hash() not in seen:  # type: ignore[union-attr]
            seen.add(t.arch.hash())
            out.append(t)
        if len(out) == k:
            break
    closest = None if out or not done else min(
        done, key=lambda t: t.metrics.get("violation", float("inf")))  # type: ignore[union-attr]
    return out, closest


def infeasible(rd: RunDir, targets: Targets, closest: Trial, done: int) -> UserError:
    """``infeasible.json`` (the target, the closest trial and its costs) and the error the
    command ends with (exit 2): no trial met the target, so nothing is trained or exported."""
    m = closest.metrics or {}
    info = {"targets": targets.to_dict(), "trials_done": done,
            "closest": {"trial": closest.id, "genes": closest.arch.genes,
                        **{k: m.get(k) for k in ("violation", "latency_ms", "flops", "params",
                                                 "peak_memory", "val_acc", "reward")}}}
    rd.write_json("infeasible.json", info)
    costs = ", ".join(f"{k} {m[k]:g}" for k in ("latency_ms", "flops", "params")
                      if isinstance(m.get(k), (int, float)))
    return UserError(f"no trial of {done} meets the target ({targets.describe()}); the "
                     f"closest, trial {closest.id} ({costs}; violation "
                     f"{m.get('violation', float('nan')):.3g}), is in "
                     f"{rd.file('infeasible.json')}. Relax the target, or run more trials "
                     "(--max-trials, --budget)")


def trial_budget(s: SampleSettings, search_s: float | None) -> float | None:
    """Seconds per trial: ``--eval-budget`` when given; in a budgeted run, the search stage's
    seconds for :data:`BUDGET_TRIALS` trials (``--workers`` at a time), so that a large data
    set's full early-stop epochs (348 s a trial on all of Fashion-MNIST) do not spend the whole
    search on one or two trials; else None (the ``--eval-epochs`` in full)."""
    if s.eval_budget is not None or search_s is None:
        return s.eval_budget
    return max(search_s * s.workers / BUDGET_TRIALS, 1.0)


def _options(s: SampleSettings) -> dict[str, Any]:
    """The user's strategy options only: every default lives in the strategy's config dataclass,
    the same for the CLI and ``nasforge.api.search`` (Q-learning's ε already follows the run)."""
    return dict(s.strategy_options)


def run(s: SampleSettings, rd: RunDir) -> dict:
    budget = Budget.for_settings(s, SAMPLE_BASED, n_candidates=s.top, run_dir=rd)
    budget.start("search")  # trials get what is left of the stage once the data is in
    dev, data = setup(s)
    if s.dataset == "digits":  # mirrored digits are other digits
        s.extra.setdefault("recipe", {"flip": False})
    space = get_space(s.space)
    final_space = get_space(s.final_space) if s.final_space else space
    recipe = {**s.extra.get("recipe", {}), "lr": s.eval_lr, "batch_size": s.eval_batch_size,
              "label_smoothing": 0.0}
    remote = s.executor != "local"
    targets = Targets.from_settings(s)
    ev = EarlyStopEvaluator(space, DataSpec(s.dataset, s.data_dir, s.subset, s.seed, str(dev)),
                            epochs=s.eval_epochs, budget_s=trial_budget(s, budget.left()),
                            mu=s.mu, rho=s.rho,
                            macs_floor=targets.flops if s.below_target == "flat" else None,
                            threads=max(1, int(s.cpus_per_trial)) if remote else None,
                            recipe=recipe, targets=targets.to_dict(), target=s.target,
                            latency_threads=s.threads)
    strategy = create_strategy(STRATEGY_OF[s.method], space, seed=s.seed, options=_options(s))
    store = TrialStore(rd.file("trials.sqlite"))
    budget.rebase()
    cfg = EngineConfig(max_trials=s.max_trials, budget_s=budget.left(), max_retries=s.max_retries,
                       seed=s.seed, progress=s.progress, desc=f"{s.method} trials")
    with create_executor(s.executor, s.workers, ray_address=s.ray_address,
                         cpus_per_trial=s.cpus_per_trial, gpus_per_trial=s.gpus_per_trial,
                         max_retries=s.max_retries) as ex:
        res = Engine(strategy, ev, store, ex, cfg).run()
    if res.best is None:
        raise UserError(f"no trial finished ({res.failed} failed); the errors are in "
                        f"{rd.file('trials.sqlite')} (table trials, column error)")
    best, closest = feasible_best(store, s.top, targets)
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
    budget.end()
    if not best:  # every trial missed the target: nothing to train
        raise infeasible(rd, targets, closest, res.done)  # type: ignore[arg-type]
    latency = (MeasuredLatency(final_space, data.num_classes, data.input_shape,
                               target=s.target, threads=s.threads)
               if targets.needs_latency else None)
    if latency is not None and final_space is space:  # priced as the search measured them:
        for t in best:  # a re-measurement's noise must not turn a feasible pick infeasible
            latency.remember(t.arch, t.metrics["latency_ms"])  # type: ignore[index]
    result = finish(s, rd, data, Finish(
        space=final_space, candidates=cands,
        cost_model=CostModel(final_space, data.num_classes, data.input_shape, latency=latency),
        targets=targets, search_seconds=res.elapsed_s,
        search_epochs=res.done, extra={"search": summary}, budget=budget))
    if summary["best_block"]:
        with open(rd.file("report.md"), "a") as f:
            f.write(f"\n## Best block ({res.done} trials, best reward "
                    f"{res.best.reward:.4f})\n\n```\n{summary['best_block']}\n```\n")
    return result
