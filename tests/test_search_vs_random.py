"""benchmarks/search_vs_random.py: a row has ≥ 5 random architectures of the run's space that
meet the run's target (re-priced here by a cost model of our own), a rank in range and a
finite Kendall τ; and the random baseline's draws reject, or refuse, honestly."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from nasforge.arch import Arch
from nasforge.cost.model import CostModel
from nasforge.cost.targets import Targets
from nasforge.errors import UserError
from nasforge.spaces.registry import get_space
from nasforge.testing.random_baseline import RunCosts, kendall_tau, sample_meeting

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "search_vs_random.py"
FLOPS = 6e6  # MACs: most nsc-fast blocks on 28×28 inputs fit (0.2–7.2 M), some do not


def _bench():
    spec = importlib.util.spec_from_file_location("search_vs_random", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_row_on_digits(tmp_path: Path) -> None:
    r = _bench().row("blockqnn", dataset="digits", subset=200, budget=30, n_random=5,
                     train_epochs=2, rank_epochs=(1,), seed=0, target_kind="flops",
                     target=FLOPS, work_dir=tmp_path, progress=False,
                     settings={"max_trials": 1, "eval_epochs": 1})
    space = get_space(r["space"])
    cm = CostModel(space, 10, (1, 28, 28))
    targets = Targets(flops=FLOPS)
    assert len(r["random"]) >= 5
    keys = {Arch(space.name, x["arch"]).key() for x in r["random"]}
    assert len(keys) == len(r["random"])  # distinct
    assert Arch(space.name, r["searched"]["arch"]).key() not in keys
    for x in r["random"]:
        assert targets.meets(cm.costs(Arch(space.name, x["arch"])))
        assert 0.0 <= x["test_acc"] <= 1.0
    assert r["searched"]["meets"]
    assert 1 <= r["rank"] <= r["of"] == 1 + len(r["random"])
    assert r["rank"] == 1 + sum(x["test_acc"] > r["searched_test_acc"] for x in r["random"])
    assert len(r["short_val_acc"]["1"]) == r["of"]
    assert math.isfinite(r["tau"]["1"]) and -1.0 <= r["tau"]["1"] <= 1.0
    assert r["search_s"] > 0 and r["command_s"] >= r["search_s"] - 1.0


def test_row_refuses_fewer_than_five_random(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--random must be ≥ 5"):
        _bench().row("blockqnn", dataset="digits", n_random=4, work_dir=tmp_path)


def test_sample_meeting_rejects_and_refuses() -> None:
    space = get_space("nsc-fast")
    rc = RunCosts(space, CostModel(space, 10, (1, 28, 28)))
    draws = sample_meeting(rc, Targets(flops=FLOPS), 5, np.random.default_rng(0))
    assert len(draws) == 5 and not any(d.repaired for d in draws)
    assert all(d.costs["macs"] <= FLOPS for d in draws)
    with pytest.raises(UserError, match="meet the target"):  # no block is this cheap
        sample_meeting(rc, Targets(flops=10.0), 5, np.random.default_rng(0), max_draws=20)


def test_kendall_tau() -> None:
    assert kendall_tau([0.1, 0.2, 0.3], [0.5, 0.6, 0.7]) == pytest.approx(1.0)
    assert kendall_tau([0.1, 0.2, 0.3], [0.7, 0.6, 0.5]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau([0.2, 0.2, 0.2], [0.5, 0.6, 0.7]))


@pytest.mark.parametrize("budget, space", [(90.0, "fbnet-small"), (None, "fbnet-fmnist")])
def test_baseline_draws_from_the_space_the_search_runs_on(budget, space) -> None:
    """A short --budget searches the small skeleton: the random architectures (and the target
    quantile) must come from it too, not from the space --space auto names without a budget."""
    from nasforge.methods.api import make_settings
    from nasforge.methods.common import setup
    from nasforge.testing.random_baseline import run_costs

    s = make_settings("fbnet", dataset="digits", budget=budget, flops=1e9, progress=False)
    _, data = setup(s)
    assert run_costs(s, data).space.name == space
