"""Convergence of a supernet search: the concentration metric, the τ plan under a budget, and
the ``convergence`` field of ``result.json``."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from nasforge.cli import main
from nasforge.cost.loss import CostLoss
from nasforge.cost.model import CostModel
from nasforge.methods import densenas, fbnet
from nasforge.run.result import read_result, validate_result
from nasforge.spaces.dense import SPECS, DenseSpace, DenseSpec
from nasforge.spaces.fbnet import FBNetSpace, Skeleton, cost_tables
from nasforge.spaces.masking import MaskingSpace
from nasforge.strategies import bilevel
from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer
from nasforge.supernets.base import concentration
from nasforge.supernets.densenas import DenseSupernet
from nasforge.supernets.dmasking import DMaskingSupernet
from nasforge.supernets.fbnet import FBNetSupernet
from nasforge.testing import tiny_dataset, tiny_fbnet_supernet

TINY = Skeleton("fbnet-tiny", 12, 8, 2, ((8, 1, 1), (16, 1, 2)), 32, in_channels=1)
#: dense-small's topology (head block, three 1-layer blocks at one size, M = 2) at toy size
SMALL_DENSE_TOY = DenseSpec("dense-small-toy", 8, 8, 2, widths=(8, 8, 12, 16),
                            sizes=(4, 4, 4, 4), layers=(0, 1, 1, 1), last_channels=24, connect=2,
                            in_channels=1)
TINY_DENSE = DenseSpec("dense-tiny", 16, 8, 2, widths=(8, 8, 12, 16, 16), sizes=(8, 8, 8, 4, 4),
                       layers=(0, 1, 2, 1, 1), last_channels=24, connect=3,
                       stages=(0, 1, 1, 2, 2, 3), in_channels=1)


# -- the metric ---------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 5, 9])
def test_uniform_rows_give_one_over_k_and_log_k(k):
    c = concentration([torch.full((k,), 1.0 / k)] * 3)
    assert c["max_prob"] == pytest.approx(1.0 / k)
    assert c["entropy"] == pytest.approx(math.log(k))


def test_one_hot_rows_give_one_and_zero():
    c = concentration([torch.eye(4)[i] for i in range(4)])
    assert c == {"max_prob": pytest.approx(1.0), "entropy": pytest.approx(0.0, abs=1e-12)}


def test_mean_over_decisions_and_single_option_rows_left_out():
    rows = [torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]), torch.tensor([1.0])]
    c = concentration(rows)
    assert c["max_prob"] == pytest.approx((1.0 + 0.5) / 2)
    assert c["entropy"] == pytest.approx(math.log(2) / 2)
    assert concentration([torch.tensor([1.0])]) == {"max_prob": 1.0, "entropy": 0.0}


def _supernets():
    sp = FBNetSpace(TINY)
    tables, _ = cost_tables(sp, 10, 1)
    m, _ = tables.macs_matrix()
    fb = FBNetSupernet(sp, 10, 1, m)
    ms = MaskingSpace("fbnetv2-fmnist")
    dm = DMaskingSupernet(ms, 10, 1)
    ds = DenseSpace(TINY_DENSE)
    dn = DenseSupernet.from_cost_model(ds, CostModel(ds, 10, (1, 16, 16), kind="flops"))
    return {"fbnet": fb, "dmasking": dm, "densenas": dn}


@pytest.mark.parametrize("name", ["fbnet", "dmasking", "densenas"])
def test_every_supernet_reports_its_decisions(name):
    """At equal logits each decision is uniform over its own options (1/K_d, log K_d); driving
    every logit row to one choice drives the metric to (1, 0)."""
    net = _supernets()[name]
    with torch.no_grad():
        for p in net.arch_parameters():
            p.zero_()
    rows = net.probability_rows()
    sizes = [len(r) for r in rows if len(r) > 1]
    assert sizes and all(torch.allclose(r.sum(), torch.tensor(1.0)) for r in rows)
    c = net.concentration()
    assert c["max_prob"] == pytest.approx(sum(1 / k for k in sizes) / len(sizes), rel=1e-5)
    assert c["entropy"] == pytest.approx(sum(math.log(k) for k in sizes) / len(sizes), rel=1e-5)
    with torch.no_grad():
        for p in net.arch_parameters():
            p.view(-1, p.shape[-1])[:, 0] = 60.0  # a first option that wins every row
    c = net.concentration()
    assert c["max_prob"] == pytest.approx(1.0) and c["entropy"] == pytest.approx(0, abs=1e-6)


# -- τ under a budget ----------------------------------------------------------------------------
def _trainer(tmp_path, **kw):
    data = tiny_dataset(n_train=48, n_val=24, size=12)
    net = tiny_fbnet_supernet()
    cfg = SupernetConfig(batch_size=16, **kw)
    return SupernetTrainer(net, data, cfg, CostLoss("paper"), seed=0,
                           checkpoint=tmp_path / "s.ckpt", progress=False)


class _Clock:
    """A fake ``time`` for the loop: an epoch takes what the test says, never the machine's."""

    def __init__(self) -> None:
        self.t = 0.0

    def perf_counter(self) -> float:
        return self.t


@pytest.mark.parametrize("schedule,final", [
    ("exponential", 5.0 * math.exp(-0.045 * 89)),  # FBNet: τ at the paper's last epoch
    ("geometric", 0.1),  # FBNetV2: tau_end
])
def test_budget_replanned_run_ends_at_the_final_tau(tmp_path, monkeypatch, schedule, final):
    """90 epochs planned, the budget fits 5 (warm-up 1 s, search epochs 2 s, 9 s): the loop
    re-plans after epoch 1 and after the first search epoch, and the last epoch it runs is the
    last planned one, at the schedule's final τ."""
    clock = _Clock()
    monkeypatch.setattr(bilevel, "time", clock)
    run_epoch = SupernetTrainer.run_epoch

    def timed(self):
        rec = run_epoch(self)
        clock.t += 1.0 if rec["warmup"] else 2.0
        return rec

    monkeypatch.setattr(SupernetTrainer, "run_epoch", timed)
    t = _trainer(tmp_path, epochs=90, warmup_epochs=10, budget_s=9.0, tau_schedule=schedule)
    st = t.fit()
    assert st.planned_epochs == 5 and st.epoch == 5 and st.planned_warmup == 1
    h = st.history
    assert not any(r["truncated"] for r in h)
    assert h[0]["tau"] == pytest.approx(5.0) and h[-1]["tau"] == pytest.approx(final)
    assert all(a["tau"] > b["tau"] for a, b in zip(h, h[1:]))
    c = t.convergence()
    assert c["tau_final"] == pytest.approx(final) == c["tau_end_planned"]
    assert c["epochs"] == 5 and c["max_prob"] == pytest.approx(h[-1]["max_prob"])


def test_exponential_schedule_is_the_papers_over_90_epochs_and_compressed_below(tmp_path):
    t = _trainer(tmp_path, epochs=90, warmup_epochs=10)
    assert [t.tau(e) for e in (0, 10, 89)] == pytest.approx(
        [5.0 * math.exp(-0.045 * e) for e in (0, 10, 89)])
    t = _trainer(tmp_path, epochs=10, warmup_epochs=1)
    assert t.tau(9) == pytest.approx(5.0 * math.exp(-0.045 * 89))
    assert t.tau(3) == pytest.approx(5.0 * math.exp(-0.045 * 3 * 89 / 9))


def test_epoch_steps_caps_the_steps_of_an_epoch(tmp_path):
    t = _trainer(tmp_path, epochs=3, warmup_epochs=1, epoch_steps=2)
    assert len(t._batches("train")) == 2 and t._steps("train") == 2
    t.fit()
    assert all(r["truncated"] is False for r in t.state.history)


# -- the short-budget defaults ------------------------------------------------------------------
@pytest.mark.parametrize("kw,shape,space", [
    ({"budget": 90.0}, (1, 28, 28), "fbnet-small"),  # the README command: a short search
    ({"budget": 2000.0}, (1, 28, 28), "fbnet-fmnist"),  # search share ≥ SHORT_SEARCH_S
    ({}, (1, 28, 28), "fbnet-fmnist"),  # no budget: the paper's path
    ({"budget": 90.0, "epochs": 5}, (1, 28, 28), "fbnet-fmnist"),  # epochs given: not capped
    ({"budget": 90.0, "space": "fbnet-fmnist"}, (1, 28, 28), "fbnet-fmnist"),  # asked for
    ({"budget": 90.0}, (3, 32, 32), "fbnet-cifar"),  # only 28² has a small skeleton
])
def test_fbnet_short_budgeted_search_takes_the_small_skeleton(kw, shape, space):
    s = fbnet.FBNetSettings(**kw)
    assert fbnet.METHOD.for_settings(s).space_for(s.space, shape).name == space


def test_fbnet_theta_lr_is_the_budget_default_only_in_a_short_budgeted_search():
    data = tiny_dataset(n_train=48, n_val=24, size=28)
    assert fbnet._loop(fbnet.FBNetSettings(budget=90.0), data).theta_lr == fbnet.BUDGET_THETA_LR
    assert fbnet._loop(fbnet.FBNetSettings(), data).theta_lr == 0.01  # the paper's
    assert fbnet._loop(fbnet.FBNetSettings(budget=2000.0), data).theta_lr == 0.01
    assert fbnet._loop(fbnet.FBNetSettings(budget=90.0, theta_lr=0.02), data).theta_lr == 0.02


@pytest.mark.parametrize("kw,space,weight_ops", [
    ({"budget": 90.0}, "dense-small", 0),  # short: the small space, every op in w steps
    ({"budget": 2000.0}, "dense-fmnist", 1),  # the official op sampling
    ({}, "dense-fmnist", 1),
    ({"budget": 90.0, "space": "dense-fmnist"}, "dense-fmnist", 1),
    ({"budget": 90.0, "weight_ops": 2}, "dense-small", 2),  # asked for
])
def test_densenas_short_budgeted_search_takes_the_small_space(kw, space, weight_ops):
    s = densenas.DenseNASSettings(**kw)
    sp = densenas.METHOD.for_settings(s).space_for(s.space, (1, 28, 28))
    assert sp.name == space and densenas.weight_ops_for(s, sp) == weight_ops


def test_densenas_theta_lr_by_the_budget():
    data = tiny_dataset(n_train=48, n_val=24, size=28)
    lr = {b: densenas._loop(densenas.DenseNASSettings(budget=b), data).theta_lr
          for b in (90.0, 2000.0, None)}
    assert lr == {90.0: densenas.SHORT_THETA_LR, 2000.0: densenas.BUDGET_THETA_LR,
                  None: 3e-4}


def test_densenas_theta_weight_decay_is_off_only_in_a_short_budgeted_search():
    data = tiny_dataset(n_train=48, n_val=24, size=28)
    wd = {b: densenas._loop(densenas.DenseNASSettings(budget=b), data).theta_weight_decay
          for b in (90.0, 2000.0, None)}
    assert wd == {90.0: densenas.SHORT_THETA_WD, 2000.0: 1e-3, None: 1e-3}  # 1e-3: official
    s = densenas.DenseNASSettings(budget=90.0, theta_weight_decay=5e-4)
    assert densenas._loop(s, data).theta_weight_decay == 5e-4


@pytest.mark.parametrize("kw,concentrates", [
    ({}, True),  # the short budgeted defaults
    ({"theta_lr": 1.0, "theta_weight_decay": 1e-3}, False),  # the previous ones
    ({"theta_lr": 3e-4, "theta_weight_decay": 1e-3}, False),  # the official θ optimiser
])
def test_densenas_budget_defaults_concentrate_in_the_steps_a_short_search_has(kw, concentrates):
    """The loop settings and op sampling of a short budgeted DenseNAS search (θ lr 2.0, no θ
    weight decay, every op in weight steps, 2 drawn in architecture steps) on dense-small's
    topology at toy size, run for a warm-up round and 2 rounds of 4 w + 4 θ steps (half the
    steps of an idle ``--budget 90`` search on digits): the distribution concentrates (uniform:
    pmax 0.251, H 1.534); with the previous defaults' weight decay, which holds the logits
    back, it stays lower, and the official lr leaves it uniform (docs/densenas.md)."""
    data = tiny_dataset(n_train=64, n_val=32, size=8)
    s = densenas.DenseNASSettings(budget=90.0, batch_size=8, cost="flops", **kw)
    assert densenas.short_search(s)
    cfg = dataclasses.replace(densenas._loop(s, data), epochs=3, warmup_epochs=1,
                              epoch_steps=4, budget_s=None)
    space = DenseSpace(SMALL_DENSE_TOY)
    torch.manual_seed(0)
    net = DenseSupernet.from_cost_model(space, CostModel(space, 10, (1, 8, 8), kind="flops"))
    small = DenseSpace(SPECS.get(densenas.SMALL_SPACE))
    net.set_op_sampling(densenas.weight_ops_for(s, small), s.arch_ops)
    assert (net.weight_ops, net.arch_ops) == (0, 2)
    t = SupernetTrainer(net, data, cfg, densenas.METHOD.loss(s), seed=0, progress=False)
    t.fit()
    c = t.convergence()
    if concentrates:
        assert c["max_prob"] > 0.75 and c["entropy"] < 0.6, c
    else:
        assert c["max_prob"] < 0.75 and c["entropy"] > 0.7, c


@pytest.mark.parametrize("theta_lr,concentrates", [(None, True), (0.01, False)])
def test_fbnet_budget_defaults_concentrate_theta_in_the_steps_a_short_search_has(
        tmp_path, theta_lr, concentrates):
    """The loop settings of a budgeted search (its θ lr, rounds of steps), run for a warm-up
    round and 3 rounds of 4 w + 4 θ steps (fewer than the ~6 rounds of 8 a 30-s search on
    fbnet-small gets on one idle core) on a 2-layer skeleton: θ concentrates (pmax well above
    the uniform 1/9) and τ ends at its final value; the paper's θ lr in the same steps leaves
    P_θ near uniform."""
    data = tiny_dataset(n_train=64, n_val=32, size=12)
    cfg = fbnet._loop(fbnet.FBNetSettings(budget=90.0, theta_lr=theta_lr, batch_size=8,
                                          cost="flops"), data)
    assert cfg.epoch_steps is not None  # a budgeted search runs rounds
    cfg = dataclasses.replace(cfg, epochs=4, warmup_epochs=1, epoch_steps=4, budget_s=None)
    net = tiny_fbnet_supernet()
    t = SupernetTrainer(net, data, cfg, CostLoss("paper"), seed=0, progress=False)
    t.fit()
    c = t.convergence()
    assert c["tau_final"] == pytest.approx(c["tau_end_planned"])
    if concentrates:
        assert c["max_prob"] > 0.5 and c["entropy"] < 1.5, c
    else:
        assert c["max_prob"] < 0.15, c


# -- result.json ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_cli_run_writes_convergence(tmp_path):
    out = tmp_path / "run"
    assert main(["search", "fbnet", "--dataset", "digits", "--subset", "100", "--batch-size",
                 "40", "--samples", "0", "--candidate-epochs", "0", "--train-epochs", "1",
                 "--cost", "flops", "--epochs", "2", "--no-progress", "--out", str(out)]) == 0
    r = read_result(out / "result.json")
    c = r["convergence"]
    assert set(c) == {"max_prob", "entropy", "tau_final", "tau_end_planned", "epochs"}
    assert 1 / 9 - 1e-9 <= c["max_prob"] <= 1 and 0 <= c["entropy"] <= math.log(9) + 1e-9
    assert c["epochs"] == 2 and c["tau_final"] == pytest.approx(c["tau_end_planned"])
    bad = dict(r, convergence={"max_prob": 0.5})
    with pytest.raises(ValueError, match="convergence"):
        validate_result(bad)
