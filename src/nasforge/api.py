"""The library API: run any sample-based strategy on your own categorical space.

>>> from nasforge.api import search
>>> def objective(cfg):                       # e.g. a lookup in a tabular NAS benchmark
...     return TABLE[cfg["op1"], cfg["op2"]]  # a float reward (higher is better), or a dict
>>> res = search({"op1": ["conv3", "conv5", "skip"], "op2": ["conv3", "pool"]}, objective,
...              strategy="evolution", max_trials=50, out="runs/my-search")
>>> res.best_config, res.best_reward

The search uses the same engine, trial store (``out/trials.sqlite``), executors and resume as
the ``nasforge search`` commands: ``resume=True`` continues an interrupted search in ``out``.
With ``executor="process"`` the objective must be picklable (a module-level function);
``ray`` also accepts closures.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasforge.arch import Arch, thaw
from nasforge.errors import UserError
from nasforge.files import read_json
from nasforge.run.engine import Engine, EngineConfig
from nasforge.run.executors import create_executor
from nasforge.run.store import TrialStore
from nasforge.spaces.categorical import CategoricalSpace
from nasforge.strategies.base import create_strategy


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a search. It unpacks as ``config, reward, status`` (the former tuple);
    ``reused_from`` is the id of the earlier trial whose stored result answered it (a repeated
    configuration, not evaluated again), None when the objective was called."""

    id: int
    config: dict[str, Any]
    reward: float | None
    status: str
    reused_from: int | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.config, self.reward, self.status))


@dataclass
class SearchResult:
    best_config: dict[str, Any] | None
    best_reward: float | None
    #: every trial by id; ``max_trials`` counts them all, those answered from the store too
    trials: list[TrialRecord]
    done: int
    failed: int
    elapsed_s: float
    store: Path


@dataclass
class _Objective:
    """Adapts ``objective(config) -> float | dict`` to the engine's trial function."""

    fn: Callable[[dict[str, Any]], Any]

    def __call__(self, arch_dict: dict[str, Any], seed: int) -> dict[str, Any]:
        out = self.fn(thaw(Arch.from_dict(arch_dict).genes))
        if isinstance(out, dict):
            if not isinstance(out.get("reward"), (int, float)):
                raise UserError(f"an objective returning a dict must include a numeric 'reward'"
                                f", got {out!r}")
            return {**out, "reward": float(out["reward"])}
        if isinstance(out, (int, float)) and not isinstance(out, bool):
            return {"reward": float(out)}
        raise UserError(f"the objective must return a number or a dict with 'reward', got "
                        f"{type(out).__name__}")


def search(choices: dict[str, list], objective: Callable[[dict[str, Any]], Any],
           strategy: str = "evolution", *, max_trials: int | None = 100,
           budget_s: float | None = None, executor: str = "local", workers: int = 1,
           ray_address: str | None = None, out: str | Path | None = None, resume: bool = False,
           seed: int = 0, options: dict[str, Any] | None = None, max_retries: int = 2,
           reuse: bool = True, progress: bool = False) -> SearchResult:
    """Maximise ``objective`` over the product of ``choices``.

    ``strategy``: ``random | evolution | reinforce | qlearning`` (``options`` are its settings,
    e.g. ``{"population": 20}``; the rest keep the defaults of the strategy's config dataclass,
    the same as the CLI's); ``executor``: ``local | process | ray``. Results, strategy state
    and RNG live in ``out/trials.sqlite``; ``resume=True`` continues from there.
    """
    space = CategoricalSpace(choices)
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="nasforge-"))
    config = {"choices": space.choices, "strategy": strategy, "options": options or {},
              "seed": seed}
    cfg_file = folder / "search.json"
    if cfg_file.is_file():
        if not resume:
            raise UserError(f"{str(folder)!r} already holds a search; pass resume=True to "
                            "continue it or choose another out")
        saved = read_json(cfg_file, "search configuration", "resume only an `out` an earlier "
                          "nasforge.api.search wrote, or choose another out")
        if saved != json.loads(json.dumps(config)):
            raise UserError(f"cannot resume {str(folder)!r}: its choices/strategy/options/seed "
                            "differ from the ones given")
    elif resume:
        raise UserError(f"nothing to resume in {str(folder)!r} (no search.json)")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        cfg_file.write_text(json.dumps(config, indent=2) + "\n")
    strat = create_strategy(strategy, space, seed=seed, options=options)
    store = TrialStore(folder / "trials.sqlite")
    try:
        with create_executor(executor, workers, ray_address=ray_address,
                             max_retries=max_retries) as ex:
            res = Engine(strat, _Objective(objective), store, ex,
                         EngineConfig(max_trials=max_trials, budget_s=budget_s,
                                      max_retries=max_retries, reuse=reuse, seed=seed,
                                      progress=progress, desc=f"{strategy} trials")).run()
        trials = [TrialRecord(t.id, thaw(t.arch.genes), t.reward, t.status,
                              (t.metrics or {}).get("reused_from")) for t in store.trials()]
    finally:
        store.close()
    best = res.best
    return SearchResult(thaw(best.arch.genes) if best else None, best.reward if best else None,
                        trials, res.done, res.failed, res.elapsed_s, folder / "trials.sqlite")
