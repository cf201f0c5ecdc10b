"""``nasforge search enas``: shared weights, the controller's REINFORCE update, derivation,
end-to-end runs on tiny configs of the darts and nb201 spaces, kill -9 + resume.

The shipped spaces are too slow for a test on CPU, so the runs use tiny configs of the same
spaces (registered for the test; the figures of the shipped spaces are in docs/enas.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from nasforge.cli import main
from nasforge.errors import UserError
from nasforge.methods.enas import (
    EnasSettings,
    InheritedNetwork,
    check_final_init,
    loop_config,
    space_for,
)
from nasforge.models import nb201 as nm
from nasforge.run.result import read_result
from nasforge.spaces import darts as ds
from nasforge.spaces import nb201 as ns
from nasforge.strategies.enas import MIN_BUDGET_EPOCHS, EnasConfig, EnasLoop
from nasforge.strategies.enas_controller import (
    ControllerConfig,
    EnasController,
    layout_for,
    marginals,
    to_arch,
)
from nasforge.supernets.enas import SharedDarts, SharedNB201, candidate
from nasforge.testing import tiny_dataset

TINY_NB201 = ns.NB201Config("nb201-enas-tiny", 28, 1, channels=4, cells_per_stage=1)
TINY_DARTS = ds.DartsConfig("darts-enas-tiny", 28, 1, cells=3, channels=4, final_cells=3,
                            final_channels=4)
DRIVER = ("import sys; from test_enas import register; register(); "
          "from nasforge.cli import main; sys.exit(main(sys.argv[1:]))")
RUN = ["--dataset", "digits", "--subset", "48", "--batch-size", "16", "--train-epochs", "1",
       "--controller-steps", "2", "--controller-aggregate", "3", "--samples", "4",
       "--no-progress"]
NB201_RUN = [*RUN, "--space", TINY_NB201.name, "--epochs", "2"]


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


@pytest.fixture(scope="module")
def nb201_run(tiny_spaces, tmp_path_factory):
    """One uninterrupted tiny nb201 run: checked below and the kill test's reference."""
    out = tmp_path_factory.mktemp("enas") / "ref"
    assert main(["search", "enas", *NB201_RUN, "--out", str(out)]) == 0
    return out


# -- shared weights -------------------------------------------------------------------------------

def _outputs(net, archs, x):
    with torch.no_grad():
        return [net.forward_arch(x, net.path(a)) for a in archs]


def test_one_shared_tensor_changes_every_architecture_that_uses_it(tiny_spaces):
    torch.manual_seed(0)
    space = ns.NB201Space(TINY_NB201.name)
    net = SharedNB201(space, 10, 1).train()
    conv = nm.OPS.index("nor_conv_3x3")
    users = [space.arch(["nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1",
                         "none", "skip_connect"]),
             space.arch(["nor_conv_3x3", "nor_conv_1x1", "nor_conv_3x3", "none",
                         "avg_pool_3x3", "nor_conv_3x3"])]
    other = space.arch(["nor_conv_1x1", "skip_connect", "avg_pool_3x3", "nor_conv_1x1",
                        "none", "skip_connect"])
    x = torch.randn(4, 1, 28, 28)
    before = _outputs(net, [*users, other], x)
    # edge 1←0, nor_conv_3x3, in the first searched cell: one module, one weight tensor
    cell = next(c for c, s in zip(net.cells, net.searched) if s)
    weight = candidate(cell.edges[0], conv)[1].weight
    assert all(net.path(a)[0] == conv for a in users)
    with torch.no_grad():
        weight.add_(0.5 * torch.randn_like(weight))
    after = _outputs(net, [*users, other], x)
    for b, a in zip(before[:2], after[:2]):
        assert (b - a).abs().max() > 1e-4  # every architecture that uses it changed
    assert torch.equal(before[2], after[2])  # one that does not is untouched
    # and training either architecture writes the same tensor
    for a in users:
        net.zero_grad()
        net.forward_arch(x, net.path(a)).sum().backward()
        assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_darts_single_path_is_the_derived_network_with_the_shared_weights(tiny_spaces):
    torch.manual_seed(0)
    space = ds.DartsSpace(TINY_DARTS.name)
    net = SharedDarts(space, 10, 1).train()
    rng = np.random.default_rng(0)
    x = torch.randn(4, 1, 28, 28)
    for _ in range(3):
        a = space.sample(rng)
        model = net.extract(a).train()
        with torch.no_grad():
            assert torch.allclose(net.forward_arch(x, net.path(a)), model(x), atol=1e-5)
    # one op module of one edge, shared by two genotypes that both use it
    a, b = space.sample(rng), space.sample(rng)
    genes_a, genes_b = space.genotype(a), space.genotype(b)
    genes_b["normal"][0] = genes_a["normal"][0]
    b = space.arch(genes_b)
    (e, o) = net.path(a)[0][0]
    assert net.path(b)[0][0] == (e, o)
    params = list(candidate(net.cells[0].edges[e], o).parameters())
    if params:  # a parametric op: perturbing it moves both
        ya, yb = _outputs(net, [a, b], x)
        with torch.no_grad():
            params[0].add_(0.5)
        za, zb = _outputs(net, [a, b], x)
        assert (ya - za).abs().max() > 1e-4 and (yb - zb).abs().max() > 1e-4


def test_inherited_final_network_starts_from_the_shared_weights(tiny_spaces):
    torch.manual_seed(0)
    space = ns.NB201Space(TINY_NB201.name)
    net = SharedNB201(space, 10, 1).train()
    a = space.sample(np.random.default_rng(1))
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():  # poisoned shared running statistics, as an all-skip child leaves
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.fill_(1e12)
    images = torch.randn(32, 1, 28, 28)
    model = InheritedNetwork(space, net, images).build(a, 10, 1).train()
    with torch.no_grad():  # the shared weights' function (train-mode BN) …
        assert torch.allclose(model(x), net.forward_arch(x, net.path(a)), atol=1e-5)
        # … and BN statistics of its own: eval mode is train mode on the images they came from
        model.eval()
        assert float(model.lastact[0].running_var.max()) < 1e6
        ev = model(images)
        model.train()
        assert torch.allclose(ev, model(images), rtol=0.1, atol=0.05)  # (unbiased var)


# -- controller -----------------------------------------------------------------------------------

def test_controller_samples_valid_cells_and_scores_them_consistently(tiny_spaces):
    for space in (ds.DartsSpace(TINY_DARTS.name), ns.NB201Space(TINY_NB201.name)):
        c = EnasController(layout_for(space), seed=0)
        g = torch.Generator().manual_seed(0)
        actions, lp, ent = c.run(16, generator=g)
        for row in actions:
            space.validate(to_arch(space, row))  # darts: two distinct inputs per node
        assert torch.allclose(c.log_prob(actions), lp, atol=1e-5)
        assert (ent > 0).all()
        m = marginals(space, actions)
        for row in m["rows"]:
            assert abs(sum(row) - 1) < 1e-9


@pytest.mark.parametrize("reward,direction", [(0.9, 1), (0.1, -1)])
def test_reinforce_moves_the_log_prob_with_the_sign_of_the_advantage(tiny_spaces, reward,
                                                                     direction):
    space = ns.NB201Space(TINY_NB201.name)
    c = EnasController(layout_for(space), ControllerConfig(lr=1e-2), seed=0)
    a, ent = c.sample(1, torch.Generator().manual_seed(3))
    c.baseline = 0.5
    with torch.no_grad():
        before = float(c.log_prob(a)[0])
    out = c.update(a, [reward], ent)
    assert (out["advantage"] > 0) == (direction > 0)
    assert 0.5 < out["baseline"] < 0.51 if direction > 0 else 0.49 < out["baseline"] < 0.5
    with torch.no_grad():
        after = float(c.log_prob(a)[0])
    assert direction * (after - before) > 1e-3


def test_darts_controller_learns_to_prefer_a_rewarded_op(tiny_spaces):
    """A reward for how many of a cell's ops are sep_conv_3x3 raises its sampling frequency."""
    space = ds.DartsSpace(TINY_DARTS.name)
    c = EnasController(layout_for(space), ControllerConfig(lr=3e-2), seed=0)
    g = torch.Generator().manual_seed(0)
    sep = ds.CHOICES.index("sep_conv_3x3")

    def freq() -> float:
        a, _ = c.sample(100, torch.Generator().manual_seed(1))
        return float((a.view(-1, 4)[:, 2:] == sep).float().mean())

    start = freq()
    for _ in range(20):
        a, ent = c.sample(8, g)
        c.update(a, (a.view(8, -1, 4)[:, :, 2:] == sep).float().mean((1, 2)), ent)
    assert freq() > start + 0.15


# -- settings -------------------------------------------------------------------------------------

def test_space_family_resolves_by_input_size(tiny_spaces):
    assert space_for(EnasSettings(space="darts"), (1, 28, 28)).name == "darts-fmnist"
    assert space_for(EnasSettings(space="nb201"), (3, 32, 32)).name == "nb201-cifar"
    # a short budgeted search on 28×28 takes the family's small space (as DARTS's)
    assert space_for(EnasSettings(space="darts", budget=120), (1, 28, 28)).name == "darts-small"
    assert space_for(EnasSettings(space="nb201", budget=120), (1, 28, 28)).name == "nb201-small"
    assert space_for(EnasSettings(space="nb201", budget=120, epochs=3),
                     (1, 28, 28)).name == "nb201-fmnist"  # --epochs: not budgeted
    assert space_for(EnasSettings(space="nb201-fmnist", budget=120),
                     (1, 28, 28)).name == "nb201-fmnist"  # a named space is kept
    with pytest.raises(UserError, match="expects 32"):
        space_for(EnasSettings(space="nb201-cifar"), (1, 28, 28))
    with pytest.raises(UserError, match="unknown ENAS space"):
        space_for(EnasSettings(space="nasnet"), (1, 28, 28))
    cifar = space_for(EnasSettings(space="darts"), (3, 32, 32))  # final: 20 cells, C = 36
    with pytest.raises(UserError, match="final-init shared"):
        check_final_init(EnasSettings(final_init="shared"), cifar)
    check_final_init(EnasSettings(final_init="shared"),
                     space_for(EnasSettings(space="nb201"), (1, 28, 28)))


def test_budgeted_search_gives_way_on_three_settings():
    full = loop_config(EnasSettings())
    assert (full.batch_size, full.epoch_steps, full.controller_steps, full.epochs) == \
        (160, None, 30, 150)
    short = loop_config(EnasSettings(budget=120))
    assert (short.batch_size, short.epoch_steps, short.controller_steps) == (64, 8, 1)
    assert short.budget_s is not None and 0 < short.budget_s < 120
    given = loop_config(EnasSettings(budget=120, batch_size=32, controller_steps=5))
    assert (given.batch_size, given.controller_steps) == (32, 5)


def test_budgeted_loop_plans_short_epochs_and_stops_in_time(tiny_spaces):
    """A budget that the configured epoch would overrun: fewer ω steps per epoch (at least
    MIN_BUDGET_EPOCHS epochs), the derivation's time reserved, the loop ends within it."""
    space = ns.NB201Space(TINY_NB201.name)
    net = SharedNB201(space, 10, 1)
    cfg = EnasConfig(epochs=50, batch_size=8, controller_steps=1, aggregate=2,
                     derive_samples=3, budget_s=20.0, amp=False)
    loop = EnasLoop(net, EnasController(layout_for(space), seed=0), space,
                    tiny_dataset(80, 16, 8), cfg, progress=False)
    loop._step_s = 1.0  # as if an ω step took 1 s: an epoch of 10 steps + 2 scores = 10.7 s
    loop._fit_epoch_steps(10)
    assert loop.state.epoch_steps == int((20.0 / MIN_BUDGET_EPOCHS - 2 / 3) // 1.0)
    assert loop._reserve() == pytest.approx(3 / 3)
    # far more epochs than 3 s hold (a tiny epoch takes ~0.06 s), so the budget must end it
    loop.cfg = EnasConfig(epochs=2000, batch_size=8, controller_steps=1, aggregate=2,
                          derive_samples=3, budget_s=3.0, amp=False)
    t0 = time.perf_counter()
    st = loop.fit()
    assert st.epoch < 2000 and st.planned_epochs == st.epoch
    assert time.perf_counter() - t0 < 3.0 + 3 * max(h["seconds"] for h in st.history)


# -- end to end -----------------------------------------------------------------------------------

def test_tiny_nb201_run_writes_result_controller_history_and_derivation(nb201_run):
    res = read_result(nb201_run / "result.json")
    assert res["method"] == "enas" and res["space"] == TINY_NB201.name
    assert res["convergence"]["epochs"] == 2 and 0 <= res["test_acc"] <= 1
    ctrl = json.loads((nb201_run / "controller.json").read_text())
    assert [h["epoch"] for h in ctrl["history"]] == [0, 1]
    for h in ctrl["history"]:
        assert np.asarray(h["cell"]).shape == (6, 5)
        assert np.allclose(np.asarray(h["cell"]).sum(1), 1)
    search = json.loads((nb201_run / "search.json").read_text())
    assert 1 <= len(search["derivation"]) <= 4
    best = max(search["derivation"], key=lambda r: r["val_acc"])
    assert search["derived"] == best["arch"]
    assert search["controller"]["updates"] == 2 * 2
    assert all(h["controller_updates"] == 2 for h in search["history"])


def test_tiny_darts_run_trains_the_final_network_from_the_shared_weights(tiny_spaces, tmp_path):
    out = tmp_path / "darts"
    assert main(["search", "enas", *RUN, "--space", TINY_DARTS.name, "--epochs", "1",
                 "--final-init", "shared", "--out", str(out)]) == 0
    res = read_result(out / "result.json")
    assert res["space"] == TINY_DARTS.name
    run = json.loads((out / "run.json").read_text())
    assert run["final_init"] == "shared"
    state = torch.load(out / "model.pt", weights_only=True)
    assert any(k.startswith("auxiliary_head.") for k in state)  # build_final's network
    ctrl = json.loads((out / "controller.json").read_text())
    normal = np.asarray(ctrl["history"][-1]["normal"])
    assert normal.shape == (14, 8) and np.allclose(normal.sum(), 8)  # 8 inputs per cell


@pytest.mark.slow
def test_kill_and_resume_ends_with_the_same_controller_and_architecture(tmp_path, nb201_run):
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__),
                                          os.environ.get("PYTHONPATH", "")])}
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-c", DRIVER, "search", "enas", *NB201_RUN,
                          "--out", str(run)], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    ckpt = run / "enas.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert ckpt.exists() and not (run / "result.json").exists(), \
        "the run was not killed between its first checkpoint and its end"
    subprocess.run([sys.executable, "-c", DRIVER, "search", "enas", "--resume", str(run),
                    "--no-progress"], check=True, env=env, capture_output=True)
    sa = json.loads((nb201_run / "search.json").read_text())
    sb = json.loads((run / "search.json").read_text())
    drop = ("seconds",)
    assert [{k: v for k, v in h.items() if k not in drop} for h in sa["history"]] == \
        [{k: v for k, v in h.items() if k not in drop} for h in sb["history"]]
    assert sa["controller"] == sb["controller"] and sa["derivation"] == sb["derivation"]
    assert read_result(nb201_run / "result.json")["arch"] == \
        read_result(run / "result.json")["arch"]
