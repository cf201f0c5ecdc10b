"""NAS-Bench-Macro (CIFAR-10) as an in-process objective: real accuracies to test and benchmark
the sample-based strategies against random search, offline and fast.

The table (``nas-bench-macro_cifar10.json``, 6,561 architectures: 8 layers × 3 blocks, ``'0'``
identity, ``'1'`` MobileNetV2 k3 e3, ``'2'`` MobileNetV2 k5 e6) maps an 8-digit string to its
``mean_acc`` over three trainings. It is seen as a :class:`CategoricalSpace` of 8 decisions
``l0`` … ``l7`` with choices ``'0' '1' '2'`` in layer order — the sequential view Q-learning and
REINFORCE walk — and the reward of a configuration is its ``mean_acc / 100`` (an accuracy in
[0, 1], the unit of the CLI's rewards; the strategies do not depend on the unit).

**How queries are counted** (:func:`queries_to_top`): one query per ask, exactly as the engine
counts trials against ``max_trials``. An architecture asked again is answered from the cache
(the engine answers it from its trial store, without training) but is still one trial: it used
one of the run's ``max_trials`` slots and the strategy was told its reward again. The number of
*distinct* architectures evaluated up to that point is returned beside it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from nasforge.errors import UserError
from nasforge.files import read_json
from nasforge.spaces.categorical import CategoricalSpace

#: where the project keeps the table (``../shared`` beside the repository); the environment
#: variable ``NASFORGE_NAS_BENCH_MACRO`` points elsewhere
DEFAULT_PATH = (Path(__file__).resolve().parents[4] / "shared" / "benchmarks" / "nas-bench-macro"
                / "nas-bench-macro_cifar10.json")
LAYERS = 8
CHOICES = ("0", "1", "2")
_FIX = ("get nas-bench-macro_cifar10.json (github.com/xiusu/NAS-Bench-Macro) and pass its path "
        "or set NASFORGE_NAS_BENCH_MACRO")


def default_path() -> Path:
    return Path(os.environ.get("NASFORGE_NAS_BENCH_MACRO") or DEFAULT_PATH)


@dataclass(frozen=True)
class Table:
    """``arch string -> mean_acc`` (percent) with the space it is searched in."""

    path: Path
    acc: dict[str, float] = field(repr=False)

    def space(self) -> CategoricalSpace:
        return CategoricalSpace({f"l{i}": list(CHOICES) for i in range(LAYERS)},
                                name="nas-bench-macro")

    @staticmethod
    def key(config: dict[str, Any]) -> str:
        """The table's 8-digit string of a configuration."""
        return "".join(str(config[f"l{i}"]) for i in range(LAYERS))

    def reward(self, config: dict[str, Any]) -> float:
        """``mean_acc / 100`` of the configuration (the objective :func:`nasforge.api.search`
        takes)."""
        return self.acc[self.key(config)] / 100.0

    __call__ = reward

    def top(self, fraction: float) -> frozenset[str]:
        """The ``ceil(fraction · n)`` best architectures, plus any tied with the last of them."""
        if not 0 < fraction <= 1:
            raise UserError(f"top_fraction must be in (0, 1], got {fraction}")
        ranked = sorted(self.acc.values(), reverse=True)
        cut = ranked[max(1, math.ceil(fraction * len(ranked))) - 1]
        return frozenset(k for k, v in self.acc.items() if v >= cut)


@lru_cache(maxsize=4)
def _load(path: Path) -> Table:
    what = "the NAS-Bench-Macro table"
    data = read_json(path, what, _FIX)
    acc: dict[str, float] = {}
    for k, rec in data.items():
        if (len(k) != LAYERS or set(k) - set(CHOICES) or not isinstance(rec, dict)
                or not isinstance(rec.get("mean_acc"), (int, float))):
            raise UserError(f"cannot read {what} {str(path)!r}: entry {k!r} is not an 8-digit "
                            f"architecture with a numeric 'mean_acc'; {_FIX}")
        acc[k] = float(rec["mean_acc"])
    if len(acc) != len(CHOICES) ** LAYERS:
        raise UserError(f"cannot read {what} {str(path)!r}: it holds {len(acc)} architectures, "
                        f"expected {len(CHOICES) ** LAYERS}; {_FIX}")
    return Table(path, acc)


def load_table(path: str | Path | None = None) -> Table:
    """The table (read once per process); a missing or foreign file is a UserError naming it."""
    return _load(Path(path) if path is not None else default_path())


@dataclass(frozen=True)
class Hit:
    """When a run first asked for an architecture of the top set."""

    trials: int | None  # trials (asks, repeats included) up to and including it; None: not found
    distinct: int  # distinct architectures evaluated by then (or by the end of the run)


def queries_to_top(strategy_name: str, seed: int, top_fraction: float, max_trials: int,
                   options: dict[str, Any] | None = None, table: Table | None = None) -> Hit:
    """Trials ``strategy_name`` (seed ``seed``, default options unless ``options``) takes to ask
    for an architecture of the table's top ``top_fraction``, within ``max_trials``.

    The loop is the engine's with one local worker (ask, evaluate, tell), without the store:
    ``progress`` is set before each ask to trials-so-far / ``max_trials`` as the engine does, and
    a repeated architecture is answered from a cache and counted as a trial (module docstring),
    so the figure equals the trial index an ``api.search`` run with the same seed and
    ``max_trials`` reports.
    """
    return first_hits(strategy_name, seed, [top_fraction], max_trials, options, table)[0]


def first_hits(strategy_name: str, seed: int, top_fractions: list[float], max_trials: int,
               options: dict[str, Any] | None = None, table: Table | None = None) -> list[Hit]:
    """:func:`queries_to_top` for several top fractions in one run (it stops once every top
    set has been hit or ``max_trials`` trials are spent)."""
    from nasforge.strategies.base import create_strategy

    if max_trials < 1:
        raise UserError(f"max_trials must be ≥ 1, got {max_trials}")
    table = table or load_table()
    tops = [table.top(f) for f in top_fractions]
    hits: list[Hit | None] = [None] * len(tops)
    strat = create_strategy(strategy_name, table.space(), seed=seed, options=options)
    seen: set[str] = set()
    for t in range(max_trials):
        strat.progress = t / max_trials
        arch = strat.ask()
        k = table.key(arch.genes)
        seen.add(k)
        for i, top in enumerate(tops):
            if hits[i] is None and k in top:
                hits[i] = Hit(t + 1, len(seen))
        if all(h is not None for h in hits):
            break
        strat.tell(arch, table.acc[k] / 100.0)
    return [h if h is not None else Hit(None, len(seen)) for h in hits]
