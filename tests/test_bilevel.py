import numpy as np
import pytest
import torch

from nasforge.cost.loss import CostLoss
from nasforge.errors import UserError
from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer
from nasforge.testing import tiny_dataset, tiny_fbnet_supernet


def _trainer(tmp_path, epochs=4, **kw):
    data = tiny_dataset(n_train=48, n_val=24, size=12)
    net = tiny_fbnet_supernet()
    cfg = SupernetConfig(epochs=epochs, warmup_epochs=1, batch_size=16, **kw)
    return SupernetTrainer(net, data, cfg, CostLoss("paper"), seed=0,
                           checkpoint=tmp_path / "s.ckpt", progress=False)


@pytest.mark.parametrize("alternate", ["step", "epoch"])
def test_resume_reproduces_uninterrupted_run(tmp_path, alternate):
    full = _trainer(tmp_path / "a", alternate=alternate)
    full.fit()
    # interrupted after 2 epochs, then a fresh process-like trainer resumes from disk
    part = _trainer(tmp_path / "b", alternate=alternate)
    part.fit(stop_at=2)
    resumed = _trainer(tmp_path / "b", alternate=alternate)
    assert resumed.resume() and resumed.state.epoch == 2
    resumed.fit()
    assert torch.equal(full.net.theta, resumed.net.theta)
    assert full.net.derive() == resumed.net.derive()
    sd_a, sd_b = full.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


def test_theta_moves_only_after_warmup_and_cost_pulls_to_cheap_blocks(tmp_path):
    t = _trainer(tmp_path, epochs=3)
    theta0 = t.net.theta.detach().clone()
    t.fit(stop_at=1)
    assert torch.equal(t.net.theta.detach(), theta0)  # warm-up: w only
    t.fit()
    assert not torch.equal(t.net.theta.detach(), theta0)
    h = t.state.history
    assert h[0]["a_loss"] is None and h[-1]["a_loss"] is not None
    assert h[0]["tau"] > h[-1]["tau"]


def test_latency_term_prefers_cheaper_blocks(tmp_path):
    """With CE switched off (lr 0 on w), θ follows the cost gradient: cheap blocks gain."""
    t = _trainer(tmp_path, epochs=6, w_lr=0.0, theta_lr=0.1)
    t.fit()
    p = t.net.probabilities()
    cost = t.net.cost_table
    for row_p, row_c in zip(p, cost):
        assert np.corrcoef(row_p.numpy(), row_c.numpy())[0, 1] < 0


def test_single_path_runs_and_checkpoint_loads_weights_only(tmp_path):
    t = _trainer(tmp_path, epochs=2, hard=True)
    t.fit()
    sd = torch.load(tmp_path / "s.ckpt", weights_only=True)
    assert sd["loop"]["epoch"] == 2


def test_budget_stops_early(tmp_path):
    t = _trainer(tmp_path, epochs=50, budget_s=0.5)
    st = t.fit()
    assert st.epoch < 50


def test_config_errors():
    with pytest.raises(UserError, match="warmup_epochs"):
        SupernetConfig(epochs=5, warmup_epochs=5)
    with pytest.raises(UserError, match="alternate"):
        SupernetConfig(alternate="sometimes")


# epoch alternation: a θ epoch costs its steps — val 24 images at batch 16 is 1 step (the last
# partial batch dropped), train 48 is 3 — so a search epoch is (1 + 1/3)/2 of a warm-up epoch
@pytest.mark.parametrize("alternate, ratio", [("step", 2.0), ("epoch", (1 + 1 / 3) / 2)])
def test_budget_plan_counts_search_epochs_dearer_than_warmup(tmp_path, alternate, ratio):
    t = _trainer(tmp_path, epochs=90, alternate=alternate, budget_s=100.0)
    t.state.planned_warmup = 10
    t.cfg.warmup_epochs = 10
    t._fit_plan_to_budget(4.0)  # a 4-s warm-up epoch
    st = t.state
    used = st.planned_warmup * 4.0 + (st.planned_epochs - st.planned_warmup) * 4.0 * ratio
    assert used <= 100.0
    # one more epoch would not have fitted
    e = st.planned_epochs + 1
    w = min(max(1, round(e / 9)), e - 1)
    assert w * 4.0 + (e - w) * 4.0 * ratio > 100.0
