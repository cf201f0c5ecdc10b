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


@pytest.mark.parametrize("form", ["paper", "seed", "additive"])
def test_floored_loss_stops_rewarding_cost_below_the_target_only(form):
    ce = torch.tensor(1.3)
    floored, plain = CostLoss(form, floor=1000.0), CostLoss(form)
    below = torch.tensor(600.0, requires_grad=True)
    floored(ce, below).backward()
    assert below.grad.item() == 0.0  # nothing to gain by saving cost under the target
    assert floored(ce, below).item() == pytest.approx(plain(ce, torch.tensor(1000.0)).item())
    above = torch.tensor(1500.0, requires_grad=True)
    floored(ce, above).backward()
    above_plain = torch.tensor(1500.0, requires_grad=True)
    plain(ce, above_plain).backward()
    assert above.grad.item() > 0 and above.grad.item() == pytest.approx(above_plain.grad.item())
    with pytest.raises(UserError, match="floor must be positive"):
        CostLoss(form, floor=0.0)


def test_targets_in_the_loss_unit():
    from nasforge.cost.targets import Targets

    t = Targets(latency_ms=1.5, flops=2e6, params=3e5)
    assert t.in_loss_unit("latency") == pytest.approx(1500.0)  # µs
    assert t.in_loss_unit("flops") == pytest.approx(2000.0)  # kMACs
    assert t.in_loss_unit("params") == pytest.approx(300.0)  # kparams
    assert Targets(flops=2e6).in_loss_unit("latency") is None


def test_search_loss_is_floored_at_the_target_of_its_own_cost():
    from nasforge.methods import fbnet, fbnetv2
    from nasforge.methods.differentiable import search_loss

    m = fbnet.METHOD
    assert search_loss(m, fbnet.FBNetSettings(latency_ms=0.8)).floor == pytest.approx(800.0)
    assert search_loss(m, fbnet.FBNetSettings(flops=1e6)).floor is None  # latency cost
    assert search_loss(m, fbnet.FBNetSettings(cost="flops", flops=1e6)).floor == 1000.0
    assert search_loss(m, fbnet.FBNetSettings(latency_ms=0.8, below_target="reward")).floor is None
    assert search_loss(m, fbnet.FBNetSettings()).floor is None
    v2 = fbnetv2.FBNetV2Settings(params=5e4)  # cost auto → params
    assert search_loss(fbnetv2.METHOD, v2).floor == pytest.approx(50.0)
