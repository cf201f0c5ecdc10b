import math

import pytest
import torch

from nasforge.cost.loss import CostLoss
from nasforge.errors import UserError
from nasforge.supernets.gumbel import gumbel_softmax, temperature


def test_gumbel_weights_sum_to_one_and_sharpen_as_tau_falls():
    theta = torch.tensor([[0.5, 0.0, -0.5, 1.0]]).repeat(2000, 1)
    maxes = []
    for tau in (5.0, 1.0, 0.1):
        g = torch.Generator().manual_seed(0)
        m = gumbel_softmax(theta, tau, g)
        assert torch.allclose(m.sum(-1), torch.ones(2000), atol=1e-5)
        maxes.append(m.max(-1).values.mean().item())
    assert maxes[0] < maxes[1] < maxes[2]
    assert maxes[2] > 0.95


def test_gumbel_argmax_frequencies_follow_softmax():
    theta = torch.tensor([1.0, 0.0, -1.0]).repeat(20000, 1)
    m = gumbel_softmax(theta, 1.0, torch.Generator().manual_seed(1), hard=True)
    freq = m.mean(0)
    assert torch.allclose(freq, torch.softmax(theta[0], 0), atol=0.02)


def test_hard_gumbel_is_one_hot_with_soft_gradient():
    theta = torch.zeros(3, 5, requires_grad=True)
    m = gumbel_softmax(theta, 1.0, torch.Generator().manual_seed(0), hard=True)
    assert set(m.detach().flatten().tolist()) <= {0.0, 1.0}
    assert torch.equal(m.detach().sum(-1), torch.ones(3))
    (m * torch.arange(5.0)).sum().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0


def test_temperature_schedule_matches_paper():
    assert temperature(0) == pytest.approx(5.0)
    assert temperature(10) == pytest.approx(5.0 * math.exp(-0.45), rel=1e-6)


def test_loss_forms_match_hand_computed_values():
    ce, lat = torch.tensor(2.0), torch.tensor(1000.0)
    paper = CostLoss("paper", alpha=0.2, beta=0.6)(ce, lat)
    assert paper.item() == pytest.approx(2.0 * 0.2 * math.log(1000.0) ** 0.6, rel=1e-6)
    seed = CostLoss("seed", alpha=0.2, beta=0.6)(ce, lat)
    assert seed.item() == pytest.approx(0.2 * 2.0 * 0.6 * math.log(1000.0), rel=1e-6)
    add = CostLoss("additive", lam=0.15, base=15)(ce, lat)
    assert add.item() == pytest.approx(2.0 + 0.15 * math.log(1000.0) / math.log(15), rel=1e-6)
    assert CostLoss("none")(ce, lat).item() == 2.0
    with pytest.raises(UserError, match="unknown loss form"):
        CostLoss("bogus")


def test_loss_gradient_flows_to_cost():
    lat = torch.tensor(500.0, requires_grad=True)
    CostLoss("paper")(torch.tensor(1.0), lat).backward()
    assert lat.grad.item() > 0
