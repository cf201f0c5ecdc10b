"""``--budget`` bounds the whole command: the plan, its re-planning, and two timed runs."""

import json
import subprocess
import sys
import time

import pytest

from nasforge.errors import UserError
from nasforge.methods import budget as bmod
from nasforge.methods.budget import DIFFERENTIABLE, SAMPLE_BASED, STAGES, Budget
from nasforge.methods.fbnet import FBNetSettings
from nasforge.methods.sampled import SampleSettings
from nasforge.progress import Bar, CommandClock, current, installed
from nasforge.run.result import validate_result
from nasforge.run.rundir import RunDir
from nasforge.testing import tiny_dataset
from nasforge.train.trainer import Recipe, Trainer


class FakeTime:
    """``time.perf_counter`` of the budget module, moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def perf_counter(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(bmod, "time", fake)
    return fake


@pytest.mark.parametrize("total", [20.0, 90.0, 600.0, 3600.0])
@pytest.mark.parametrize("kind", [DIFFERENTIABLE, SAMPLE_BASED])
@pytest.mark.parametrize("over", [{}, {"fixed": ["search"]}, {"fixed": ["rank", "train"]},
                                  {"n_candidates": 1}, {"rank_epochs": 0},
                                  {"train_s": 7.0}])
def test_the_plan_sums_to_the_budget(total, kind, over):
    b = Budget.plan(total, kind, **{"n_candidates": 7, **over})
    assert set(b.planned) == set(STAGES)
    assert sum(b.planned.values()) == pytest.approx(total)
    assert all(v >= 0 for v in b.planned.values())
    if over.get("n_candidates") == 1 or over.get("rank_epochs") == 0:
        assert b.planned["rank"] == 0.0  # no ranking: its share goes to the others
    if "train_s" in over:
        assert b.planned["train"] == 7.0
    for st in over.get("fixed", []):
        assert b.cap(st) is None  # fixed by explicit epochs: planned, never capped


def test_the_default_split_and_caps():
    b = Budget.plan(90.0, DIFFERENTIABLE, n_candidates=7)
    flex = 90.0 - bmod.EXPORT_S
    assert b.planned["export_measure"] == bmod.EXPORT_S
    sh = bmod.SHARES[DIFFERENTIABLE]
    tot = sum(sh.values())
    assert b.planned["search"] == pytest.approx(flex * sh["search"] / tot)
    assert b.planned["rank"] == pytest.approx(flex * sh["rank"] / tot)
    assert b.planned["train"] == pytest.approx(flex * sh["train"] / tot)
    assert b.cap("search") == b.planned["search"] and b.cap("export_measure") is None
    none = Budget.plan(None, DIFFERENTIABLE, n_candidates=7)
    assert none.planned == {} and all(none.cap(st) is None for st in STAGES)
    assert Budget.plan(None, DIFFERENTIABLE, train_s=12.0).cap("train") == 12.0


def test_unused_seconds_move_on_to_later_stages(clock):
    b = Budget.plan(100.0, DIFFERENTIABLE, n_candidates=3)
    planned = dict(b.planned)
    with b.stage("search"):
        assert b.cap("search") == pytest.approx(planned["search"])
        clock.t += 10.0  # ends 37.5 s early
    with b.stage("rank"):
        # what is left (100 − 10), less the export allowance, by the shares of rank and train
        sh = bmod.SHARES[DIFFERENTIABLE]
        assert b.allowed["rank"] == pytest.approx(
            (90.0 - bmod.EXPORT_S) * sh["rank"] / (sh["rank"] + sh["train"]))
        assert b.allowed["rank"] > planned["rank"]
        clock.t += 1.0
    with b.stage("train"):
        assert b.allowed["train"] == pytest.approx(89.0 - bmod.EXPORT_S)
        clock.t += 50.0
    with b.stage("export_measure"):
        assert b.allowed["export_measure"] == pytest.approx(39.0)  # the rest
        clock.t += 2.0
    assert b.spent == pytest.approx({"search": 10.0, "rank": 1.0, "train": 50.0,
                                     "export_measure": 2.0})
    d = b.to_dict()
    assert d["planned"] == planned and d["total"] == 100.0
    validate_result({**_result(), "budget": d})


def test_an_overrun_shortens_the_later_stages_and_rebase_pays_fixed_costs(clock):
    b = Budget.plan(100.0, DIFFERENTIABLE, n_candidates=3, export_s=5.0)
    with b.stage("search"):
        clock.t += 20.0  # data and a LUT build, before the loop
        b.rebase()
        # the 20 s come off the whole budget: the loop gets its share of the 75 s left
        sh = bmod.SHARES[DIFFERENTIABLE]
        assert b.left() == pytest.approx(75.0 * sh["search"] / sum(sh.values()))
        clock.t += 70.0  # the loop overran
    with b.stage("rank"):
        assert b.allowed["rank"] == pytest.approx(5.0 * sh["rank"] / (sh["rank"] + sh["train"]))
        clock.t += 1.0
    with b.stage("train"):
        assert b.allowed["train"] == pytest.approx(4.0)
    tiny = Budget.plan(4.0, DIFFERENTIABLE, n_candidates=3, export_s=5.0)  # all for export
    assert tiny.planned["search"] == 0.0 and tiny.cap("search") == bmod.MIN_CAP_S


def test_explicit_settings_fix_stages():
    assert not bmod.explicit(FBNetSettings(), "train_epochs")
    s = FBNetSettings(budget=90.0, epochs=3, train_epochs=4)
    b = Budget.for_settings(s, DIFFERENTIABLE, n_candidates=7)
    assert b.fixed == {"search", "train"} and b.cap("search") is None
    assert b.cap("rank") == pytest.approx(b.planned["rank"])
    assert bmod.search_budget(FBNetSettings(budget=90.0)) == pytest.approx(
        Budget.plan(90.0, DIFFERENTIABLE, n_candidates=7).planned["search"])
    assert bmod.search_budget(FBNetSettings(budget=90.0, epochs=5)) is None
    assert bmod.search_budget(FBNetSettings()) is None
    sb = Budget.for_settings(SampleSettings(budget=60.0), SAMPLE_BASED, n_candidates=1)
    assert sb.planned["rank"] == 0.0


def test_a_resumed_run_continues_its_budget(tmp_path, clock):
    rd = RunDir(tmp_path)
    b = Budget.plan(60.0, SAMPLE_BASED, run_dir=rd)
    with b.stage("search"):
        clock.t += 30.0
    again = Budget.plan(60.0, SAMPLE_BASED, run_dir=rd)
    assert again.spent == {"search": 30.0} and again.planned == b.planned
    with again.stage("search"):  # the resumed search adds its seconds
        clock.t += 2.0
    assert again.spent["search"] == 32.0
    assert Budget.plan(90.0, SAMPLE_BASED, run_dir=rd).spent == {}  # another budget: fresh


def test_the_result_schema_takes_an_optional_budget():
    validate_result(_result())  # absent is fine
    validate_result({**_result(), "budget": {"spent": {"search": 1.0}}})
    for bad in ({"spent": {"lunch": 1.0}}, {"total": 9.0, "spent": {}},
                {"total": -1.0, "planned": {}, "allowed": {}, "spent": {}}, [1]):
        with pytest.raises(ValueError, match="budget"):
            validate_result({**_result(), "budget": bad})


def test_bars_move_within_an_epoch_and_show_the_commands_eta():
    c = CommandClock()
    c.enter("train", 30.0, 12.0)
    assert c.label() == "cmd ETA 0:42"  # the cap's rest plus the later stages
    assert c.label(5.0) == "cmd ETA 0:17"  # the bar knows better: 5 s left of this stage
    c.later = None
    assert c.label(5.0).endswith("+")  # later stages not estimated (no --budget)
    with installed(c):
        assert current() is c
        bar = Bar(2, "x", every=0.0)
        bar.advance(0.25)
        assert bar.n == 0.25 and bar.left() is not None
        assert "cmd ETA" in bar._tq.postfix
        bar.close()
    assert current() is None


def test_the_trainer_cuts_its_epochs_to_the_budget():
    data = tiny_dataset(n_train=64, n_val=16, n_test=16, size=8)
    import torch

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    t = Trainer(model, data, Recipe(epochs=10_000, batch_size=8, budget_s=0.5, augment=False),
                progress=False)
    res = t.fit()
    assert 1 <= res.epochs < 10_000 and t.planned_epochs == res.epochs
    last = res.history[-1]
    assert res.seconds <= 0.5 + last["seconds"]  # at most the epoch it ran out in


def test_a_budget_cut_training_plans_its_schedule_to_decay_within_the_budget():
    """A first epoch longer than the budget (a short ranking on a large training set): the
    schedule is planned over the steps that fit, so the training ends with its rate decayed
    instead of a few steps into a schedule planned for every epoch (chance accuracy)."""
    import time

    import torch

    class Slow(torch.nn.Module):  # 50 ms a step: 64 steps an epoch take 3.2 s
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            time.sleep(0.05)
            return self.lin(x.flatten(1))

    data = tiny_dataset(n_train=512, n_val=16, n_test=16, size=8)
    r = Recipe(epochs=3, batch_size=8, budget_s=1.5, augment=False, lr=0.1, warmup_epochs=0.3)
    t = Trainer(Slow(), data, r, progress=False)
    res = t.fit()
    assert t.opt.param_groups[0]["lr"] < 0.05 * r.lr  # the last step: the end of the cosine
    assert res.epochs == 1 and t.total_steps is not None and 4 <= t.total_steps < 64
    assert t.steps == t.total_steps  # it ran the steps it planned, no more
    total, warmup = t._schedule(64)
    assert total == t.total_steps and warmup == pytest.approx(0.1 * total)  # the same share
    unbudgeted = Trainer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), data,
                         Recipe(epochs=1, batch_size=8, augment=False), progress=False)
    unbudgeted.fit()
    assert unbudgeted.total_steps is None and unbudgeted.steps == 64


def test_recipe_steps_trains_exactly_those_steps_with_the_schedule_over_them():
    """A ranking's equal steps: ``Recipe.steps`` ends the training after that many optimizer
    steps (a partial last batch is dropped, so every step of the schedule is taken) with the
    rate decayed to the end of its cosine, and never more than the epochs hold."""
    import torch

    data = tiny_dataset(n_train=100, n_val=16, n_test=16, size=8)  # 100 // 8: 12 steps an epoch

    def linear() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    r = Recipe(epochs=5, batch_size=8, steps=30, augment=False, lr=0.1)
    t = Trainer(linear(), data, r, progress=False)
    assert t.steps_per_epoch() == 12
    res = t.fit()
    assert t.steps == 30 and res.epochs == 3 and t.planned_epochs == 3
    assert t.opt.param_groups[0]["lr"] < 0.01 * r.lr  # step 29 of a 30-step cosine
    t = Trainer(linear(), data, Recipe(epochs=2, batch_size=8, steps=10**6, augment=False),
                progress=False)
    t.fit()
    assert t.steps == 24  # capped at the epochs
    with pytest.raises(UserError, match="recipe steps must be ≥ 1"):
        Recipe(steps=0)


def _result():
    return {"method": "fbnet", "space": "s", "dataset": "d", "seed": 0, "arch": {},
            "val_acc": 0.5, "test_acc": 0.5, "params": 1, "flops": 1,
            "latency_ms": {"predicted": None, "measured": 1.0, "device": "cpu"},
            "search_seconds": 1.0, "train_seconds": 1.0, "epochs": {"search": 1, "train": 1}}


#: seconds a command may take beyond budget + 10 %: interpreter and torch start-up, imports and
#: the least work a stage does however short its share (one supernet step — the first is the
#: slowest —, one batch of final training, the export) on 2 shared CPU cores
STARTUP_S = 15.0


@pytest.mark.slow
@pytest.mark.parametrize("method,flags", [
    ("fbnet", ["--cost", "flops", "--samples", "2"]),
    ("random", ["--eval-epochs", "1"]),
])
def test_a_budgeted_run_ends_within_its_budget(tmp_path, method, flags):
    budget = 12.0
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "import sys; from nasforge.cli import main; "
           "sys.exit(main(sys.argv[1:]))", "search", method, "--dataset", "digits",
           "--subset", "200", "--budget", str(budget), "--out", str(out), "--no-progress",
           *flags]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-2000:]
    assert wall <= budget * 1.1 + STARTUP_S, wall
    rec = json.loads((out / "result.json").read_text())["budget"]
    assert rec["total"] == budget and set(rec["spent"]) == set(STAGES)
    assert sum(rec["planned"].values()) == pytest.approx(budget)
    assert sum(rec["spent"].values()) <= wall
    # the stages' seconds are what they were given (the least work aside), never the 15
    # final-training epochs of an unbudgeted run
    assert rec["spent"]["train"] <= rec["allowed"]["train"] + 5.0


def test_a_budget_must_be_positive():
    with pytest.raises(UserError, match="--budget must be positive"):
        FBNetSettings(budget=0.0).validate()


def test_a_budgeted_sampled_search_gives_each_trial_a_share_of_the_search():
    from nasforge.methods.sampled import BUDGET_TRIALS, SampleSettings, trial_budget

    s = SampleSettings(budget=300.0, workers=2)
    assert trial_budget(s, 120.0) == pytest.approx(120.0 * 2 / BUDGET_TRIALS)
    assert trial_budget(SampleSettings(budget=300.0, eval_budget=7.0), 120.0) == 7.0  # given
    assert trial_budget(SampleSettings(), None) is None  # no budget: the epochs in full
    assert trial_budget(SampleSettings(budget=5.0, workers=1), 2.0) == 1.0  # at least 1 s


def test_a_step_is_timed_on_a_split_of_one_batch():
    import torch

    data = tiny_dataset(n_train=8, n_val=8, n_test=8, size=8)
    t = Trainer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), data,
                Recipe(epochs=1, batch_size=8, augment=False), progress=False)
    assert t.seconds_per_step() > 0 and t.steps == 5  # the one batch, five times
    assert t.eval_seconds(0.3, test=True) == pytest.approx(0.3 * 16 / 3)
