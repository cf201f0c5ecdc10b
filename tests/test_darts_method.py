"""``nasforge search darts``: β-decay's gradient, the collapse check, the trainer's auxiliary
loss and drop path, and tiny end-to-end runs (first and second order, kill -9 + resume).

The shipped spaces are too slow for a test on CPU (one NB201 supernet step at 28² takes seconds),
so the runs use tiny configs of the same spaces, registered for the test."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from nasforge.cli import main
from nasforge.cost.loss import CostLoss
from nasforge.methods.darts import DartsSettings, family
from nasforge.run.result import read_result, validate_result
from nasforge.spaces import darts as ds
from nasforge.spaces import nb201 as ns
from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer, beta_decay_penalty
from nasforge.supernets.darts import DartsSupernet, NB201Supernet
from nasforge.testing import tiny_dataset
from nasforge.train.trainer import Recipe, Trainer

TINY_NB201 = ns.NB201Config("nb201-tiny", 28, 1, channels=4, cells_per_stage=1)
TINY_DARTS = ds.DartsConfig("darts-tiny", 28, 1, cells=3, channels=4, final_cells=3,
                            final_channels=4)
# registers the tiny configs, then runs the CLI (for subprocesses)
DRIVER = ("import sys; from test_darts_method import register; register(); "
          "from nasforge.cli import main; sys.exit(main(sys.argv[1:]))")
RUN = ["--dataset", "digits", "--subset", "48", "--batch-size", "16", "--candidate-epochs",
       "0", "--train-epochs", "1", "--no-progress"]


def register() -> None:
    for reg, cfg in ((ns.CONFIGS, TINY_NB201), (ds.CONFIGS, TINY_DARTS)):
        if cfg.name not in reg:
            reg.register(cfg.name, cfg)


@pytest.fixture(scope="module")
def tiny_spaces():
    register()
    yield
    from nasforge.spaces.registry import SPACES

    for reg, cfg in ((ns.CONFIGS, TINY_NB201), (ds.CONFIGS, TINY_DARTS)):
        reg.unregister(cfg.name)
        SPACES.unregister(cfg.name)  # the space registry lists the configs it saw at load


SECOND_ORDER = [*RUN, "--space", "nb201-tiny", "--epochs", "2", "--order", "2"]


@pytest.fixture(scope="module")
def second_order_run(tiny_spaces, tmp_path_factory):
    """One uninterrupted second-order run: checked below and the kill test's reference."""
    out = tmp_path_factory.mktemp("darts") / "ref"
    assert main(["search", "darts", *SECOND_ORDER, "--out", str(out)]) == 0
    return out


def _trainer(beta: float, net: NB201Supernet) -> SupernetTrainer:
    cfg = SupernetConfig(epochs=4, warmup_epochs=0, batch_size=8, theta_lr=3e-4,
                         tau_schedule="constant", tau0=1.0, beta_decay=beta, amp=False)
    return SupernetTrainer(net, tiny_dataset(16, 8, 8), cfg, CostLoss(form="none"),
                           progress=False)


def test_beta_decay_penalty_gradient_is_softmax_over_edges():
    torch.manual_seed(0)
    a = torch.randn(14, 8, requires_grad=True)
    b = torch.randn(14, 8, requires_grad=True)
    beta_decay_penalty([a, b]).backward()
    assert torch.allclose(a.grad, torch.softmax(a.detach(), -1) / 28, atol=1e-7)
    assert torch.allclose(b.grad, torch.softmax(b.detach(), -1) / 28, atol=1e-7)
    assert float(beta_decay_penalty([a.detach()])) == pytest.approx(
        float(a.detach().logsumexp(-1).mean()))


def test_beta_decay_changes_the_arch_gradient_by_lambda_softmax_over_edges():
    torch.manual_seed(0)
    net = NB201Supernet(ns.NB201Space(TINY_NB201), 10, 1)
    with torch.no_grad():
        net.alphas[0].copy_(torch.randn(6, 5))
    alpha = net.alphas[0].detach().clone()
    off, on = _trainer(0.0, copy.deepcopy(net)), _trainer(50.0, copy.deepcopy(net))
    for t in (off, on):
        t.state.epoch = 2  # λ_2 = 50·2/(2·4) = 12.5
    assert on.beta_decay_weight() == pytest.approx(12.5) and off.beta_decay_weight() == 0
    x, y = tiny_dataset(8, 8, 8).val.x, tiny_dataset(8, 8, 8).val.y
    off.arch_step(x, y)
    on.arch_step(x, y)
    diff = on.net.alphas[0].grad - off.net.alphas[0].grad
    assert torch.allclose(diff, 12.5 * torch.softmax(alpha, -1) / 6, atol=1e-5)


def test_beta_decay_weight_rises_linearly_from_zero():
    t = _trainer(50.0, NB201Supernet(ns.NB201Space(TINY_NB201), 10, 1))
    ws = [t.beta_decay_weight(e) for e in range(4)]
    assert ws == pytest.approx([0.0, 6.25, 12.5, 18.75])


def test_collapse_is_flagged_when_skips_dominate_the_normal_cell():
    net = NB201Supernet(ns.NB201Space(TINY_NB201), 10, 1)
    skip, conv = ns.OPS.index("skip_connect"), ns.OPS.index("nor_conv_3x3")
    with torch.no_grad():
        net.alphas[0].zero_()
        net.alphas[0][:, conv] = 1.0
    c = net.collapse()
    assert c == {"skip_edges": 0, "edges": 6, "warning": None}
    with torch.no_grad():  # near-uniform α, skip's mean weight a hair above conv's: noise
        net.alphas[0].zero_()
        net.alphas[0][:2, skip] = 0.05
        net.alphas[0][2:, conv] = 0.02
    p = net.probabilities()[0].mean(0)
    assert p[skip] > p[conv] and net.collapse() == {"skip_edges": 2, "edges": 6,
                                                     "warning": None}
    with torch.no_grad():
        net.alphas[0].zero_()
        net.alphas[0][:, conv] = 1.0
    with torch.no_grad():
        net.alphas[0][:3, skip] = 2.0  # 3 of 6 edges: half
    c = net.collapse()
    assert c["skip_edges"] == 3 and "3/6" in c["warning"]
    assert net.arch_state()["collapse"] == c["warning"]
    with torch.no_grad():  # argmax conv everywhere, but skip's mean weight above every conv
        net.alphas[0].zero_()
        net.alphas[0][:, conv] = 1.0
        net.alphas[0][:2, skip] = 5.0
        net.alphas[0][:2, conv] = -5.0
    c = net.collapse()
    assert c["skip_edges"] == 2 and "mean skip weight" in c["warning"]
    d = DartsSupernet(ds.DartsSpace(TINY_DARTS), 10, 1)
    with torch.no_grad():
        d.alphas[0][:, ds.PRIMITIVES.index("skip_connect")] = 3.0
    c = d.collapse()
    assert c["skip_edges"] == 8 and c["edges"] == 8 and c["warning"]
    r = {"skip_edges": 8, "edges": 8, "warning": None}
    validate_result_collapse = {**_minimal_result(), "collapse": r}
    validate_result(validate_result_collapse)
    with pytest.raises(ValueError, match="collapse"):
        validate_result({**_minimal_result(), "collapse": {"skip_edges": "8"}})


def _minimal_result() -> dict:
    return {"method": "darts", "space": "s", "dataset": "d", "seed": 0, "arch": {},
            "val_acc": 0.0, "test_acc": 0.0, "params": 0, "flops": 0,
            "latency_ms": {"predicted": None, "measured": 1.0, "device": "cpu"},
            "search_seconds": 0.0, "train_seconds": 0.0, "epochs": {"search": 1, "train": 1}}


class _AuxNet(nn.Module):
    """Records the drop-path probability each epoch and whether the aux path ran."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
        self.aux = nn.Linear(28 * 28, 10)
        self.drop_path_prob = 0.0
        self.seen: list[float] = []
        self.aux_calls = 0

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.aux_calls += 1
        if not self.seen or self.seen[-1] != self.drop_path_prob:
            self.seen.append(self.drop_path_prob)
        return self.body(x), self.aux(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_trainer_adds_the_auxiliary_loss_and_raises_drop_path():
    data = tiny_dataset(32, 8, 8)
    m = _AuxNet()
    t = Trainer(m, data, Recipe(epochs=4, batch_size=16, aux_weight=0.4, drop_path=0.2,
                                augment=False), progress=False)
    t.fit(test=False)
    assert m.aux_calls == 8 and m.seen == pytest.approx([0.0, 0.05, 0.1, 0.15])
    # the aux head gets gradient only through the auxiliary loss
    m2 = _AuxNet()
    Trainer(m2, data, Recipe(epochs=1, batch_size=16, augment=False), progress=False).fit(
        test=False)
    assert m2.aux_calls == 0
    with pytest.raises(Exception, match="drop_path"):
        Recipe(drop_path=1.5)


def test_family_follows_cell_and_space():
    assert family(DartsSettings()) == "darts"
    assert family(DartsSettings(space="nb201-cifar")) == "nb201"
    assert family(DartsSettings(cell="nb201")) == "nb201"
    assert main(["search", "darts", "--cell", "darts", "--space", "nb201-cifar",
                 "--no-progress"]) == 2
    assert main(["search", "darts", "--space", "resnet", "--no-progress"]) == 2


def _run(out, *extra) -> dict:
    assert main(["search", "darts", *RUN, *extra, "--out", str(out)]) == 0
    return read_result(out / "result.json")


@pytest.mark.parametrize("order", ["1", "2"])
def test_tiny_nb201_search_writes_result_alpha_history_and_collapse(tmp_path, tiny_spaces,
                                                                    second_order_run, order):
    out = second_order_run
    if order == "1":
        out = tmp_path / "run"
        _run(out, "--space", "nb201-tiny", "--epochs", "2", "--order", order)
    assert json.loads((out / "run.json").read_text())["settings"]["order"] == int(order)
    r = read_result(out / "result.json")
    assert r["method"] == "darts" and r["space"] == "nb201-tiny"
    assert r["epochs"] == {"search": 2, "train": 1}
    assert set(r["collapse"]) == {"skip_edges", "edges", "warning"}
    s = json.loads((out / "search.json").read_text())
    assert len(s["history"]) == 2
    for rec in s["history"]:  # α (as softmax weights) per epoch, 6 edges × 5 ops
        assert len(rec["cell"]) == 6 and all(len(row) == 5 for row in rec["cell"])
        assert "skip_edges" in rec
    assert s["history"][0]["cell"] != s["history"][1]["cell"]  # α moved
    assert s["derived"] == r["arch"]["genes"]  # the derived cell is the one trained
    assert s["collapse"] == r["collapse"]


def test_tiny_darts_cell_trains_the_final_network_with_aux_and_drop_path(tmp_path,
                                                                         tiny_spaces):
    out = tmp_path / "run"
    r = _run(out, "--space", "darts-tiny", "--epochs", "1", "--order", "1",
             "--beta-decay", "50")
    assert r["space"] == "darts-tiny" and r["collapse"]["edges"] == 8
    run = json.loads((out / "run.json").read_text())
    # digits: no flips in the final training (a mirrored digit is another digit)
    assert run["settings"]["extra"]["recipe"] == {"aux_weight": 0.4, "drop_path": 0.2,
                                                  "flip": False}
    sd = torch.load(out / "model.pt", weights_only=True)
    assert any(k.startswith("auxiliary_head.") for k in sd)  # build_final's network


@pytest.mark.slow
def test_kill_and_resume_ends_with_the_same_alpha(tmp_path, second_order_run):
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__),
                                          os.environ.get("PYTHONPATH", "")])}
    ref = second_order_run
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-c", DRIVER, "search", "darts", *SECOND_ORDER,
                          "--out", str(run)], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    ckpt = run / "supernet.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (run / "result.json").exists(), "run finished before it could be killed"
    subprocess.run([sys.executable, "-c", DRIVER, "search", "darts", "--resume", str(run),
                    "--no-progress"], check=True, env=env, capture_output=True)
    sa = json.loads((ref / "search.json").read_text())
    sb = json.loads((run / "search.json").read_text())
    assert sa["arch_parameters"] == sb["arch_parameters"]
    assert read_result(ref / "result.json")["arch"] == read_result(run / "result.json")["arch"]


def test_a_short_budget_uses_the_budgeted_defaults_and_given_flags_win():
    from nasforge.methods.darts import (
        BUDGET_ALPHA_LR,
        BUDGET_BATCH,
        METHODS,
        SMALL_SPACES,
        _loop,
        short_search,
    )

    data = tiny_dataset(16, 8, 8)
    paper = _loop(DartsSettings(), data)
    assert (paper.arch_order, paper.theta_lr, paper.batch_size, paper.epoch_steps,
            paper.budget_s) == (2, 3e-4, 64, None, None)
    short = DartsSettings(budget=120)
    assert short_search(short)
    b = _loop(short, data)
    assert (b.arch_order, b.theta_lr, b.batch_size, b.epoch_steps, b.warmup_epochs) == (
        1, BUDGET_ALPHA_LR, BUDGET_BATCH, 8, 25)
    assert paper.warmup_epochs == 0
    assert 0 < b.budget_s < 120
    given = _loop(DartsSettings(budget=120, order=2, alpha_lr=1e-3, batch_size=64,
                                epoch_steps=0), data)
    assert (given.arch_order, given.theta_lr, given.batch_size, given.epoch_steps) == (
        2, 1e-3, 64, None)
    assert not short_search(DartsSettings(budget=120, epochs=3))  # --epochs fixes the search
    assert not short_search(DartsSettings(budget=100000))
    from dataclasses import replace
    for fam, small in SMALL_SPACES.items():
        m = replace(METHODS[fam], small=True)
        assert m.space_for("auto", (1, 28, 28)).name == small
        assert m.space_for("auto", (3, 32, 32)).name == f"{fam}-cifar"
        assert METHODS[fam].space_for("auto", (1, 28, 28)).name == f"{fam}-fmnist"


def test_result_params_are_the_final_networks_without_the_auxiliary_head():
    from nasforge.cost.flops import count_module
    from nasforge.methods.darts import final_counts
    from nasforge.models.darts import DartsNetwork

    data = tiny_dataset(16, 8, 8)  # 1×8×8
    space = ds.DartsSpace(ds.DartsConfig("d8", 8, 1, cells=3, channels=2, final_cells=6,
                                         final_channels=4))
    arch = space.sample(__import__("numpy").random.default_rng(0))
    c = final_counts(space, arch, data)
    final = DartsNetwork(space.genotype(arch), data.num_classes, 1, 6, 4, 8)
    assert c["params"] == count_module(final, (1, 8, 8)).params
    assert c["params"] != count_module(space.build(arch, data.num_classes, 1), (1, 8, 8)).params
    assert c["params"] < count_module(space.build_final(arch, data.num_classes, 1),
                                      (1, 8, 8)).params  # the auxiliary head is left out
    assert not c["search_sized"]
