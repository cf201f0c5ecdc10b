"""Contract tests every registered supernet must pass (nasforge.supernets.registry).

The central one: at a one-hot choice the supernet *is* the model its derivation builds — same
outputs (with the supernet's weights) and same cost (counted independently, on the built
model). A new relaxation is covered as soon as it is registered and given a small space here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nasforge.cost.model import CostModel
from nasforge.cost.targets import Targets
from nasforge.spaces.darts import DartsConfig, DartsSpace
from nasforge.spaces.dense import DenseSpace, DenseSpec
from nasforge.spaces.fbnet import FBNetSpace
from nasforge.spaces.masking import MaskingSpace
from nasforge.spaces.nb201 import NB201Config, NB201Space
from nasforge.supernets.registry import SUPERNETS

TINY_DENSE = DenseSpec("dense-tiny", 16, 8, 2, widths=(8, 8, 12, 16, 16), sizes=(8, 8, 8, 4, 4),
                       layers=(0, 1, 2, 1, 1), last_channels=24, connect=3,
                       stages=(0, 1, 1, 2, 2, 3), in_channels=1)

#: a small space of each registered supernet, with its input shape
SPACES = {
    "fbnet": (lambda: FBNetSpace("fbnet-fmnist"), (1, 28, 28)),
    "dmasking": (lambda: MaskingSpace("fbnetv2-fmnist"), (1, 28, 28)),
    "densenas": (lambda: DenseSpace(TINY_DENSE), (1, 16, 16)),
    "darts": (lambda: DartsSpace(DartsConfig("darts-tiny", 16, 1, cells=3, channels=4,
                                             final_cells=3, final_channels=4)), (1, 16, 16)),
    "darts-nb201": (lambda: NB201Space(NB201Config("nb201-tiny", 16, 1, channels=4,
                                                   cells_per_stage=1)), (1, 16, 16)),
}
NAMES = SUPERNETS.names()


def test_every_registered_supernet_has_a_contract_space():
    assert set(NAMES) == set(SPACES), "register a small space for the new supernet in SPACES"


def _randomize(net: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.arch_parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    make_space, shape = SPACES[request.param]
    space = make_space()
    cm = CostModel(space, 10, shape, kind="flops")  # counts by building and counting
    torch.manual_seed(0)
    net = SUPERNETS.get(request.param).build(space, cm)
    _randomize(net, 1)
    return request.param, space, shape, cm, net


def test_parameter_groups_are_disjoint_and_complete(case):
    _, _, _, _, net = case
    w = {id(p) for p in net.weight_parameters()}
    a = {id(p) for p in net.arch_parameters()}
    assert a and w and not (w & a)
    assert w | a == {id(p) for p in net.parameters()}


def test_one_hot_choice_equals_the_derived_model(case):
    name, space, shape, cm, net = case
    net.eval()
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(2))
    archs = [net.derive(), *net.sample(3, np.random.default_rng(0))]
    for arch in archs:
        space.validate(arch)
        model = net.extract(arch).eval()
        built = space.build(arch, 10, shape[0])
        assert set(model.state_dict()) == set(built.state_dict()), name
        with torch.no_grad():
            assert torch.allclose(net(x, net.one_hot(arch)), model(x), atol=1e-5), name
        # the relaxed cost at one-hot is the counted cost of the built model (kMACs)
        got = float(net.expected_cost(net.one_hot(arch)))
        assert got == pytest.approx(cm.costs(arch).macs / 1e3, rel=1e-5), name
    net.train()


def test_relaxed_loss_reaches_the_arch_parameters(case):
    _, _, shape, _, net = case
    net.train()
    net.zero_grad(set_to_none=True)
    x = torch.randn(4, *shape)
    sample = net.sample_relaxation(torch.Generator().manual_seed(0), 1.0, False, phase="arch")
    (net(x, sample).logsumexp(1).mean() + torch.log(net.expected_cost(sample))).backward()
    grads = [p.grad for p in net.arch_parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_arch_state_is_json_and_moves_are_neighbours(case):
    _, space, _, _, net = case
    json.dumps(net.arch_state())
    arch = net.derive()
    moves = list(net.moves(arch))
    assert moves
    for cand, dlogp in moves[:40]:
        space.validate(cand)
        assert cand != arch and np.isfinite(dlogp)


def test_repair_meets_a_flops_target_between_cheapest_and_derived(case):
    name, space, _, cm, net = case
    arch = net.derive()
    macs = cm.costs(arch).macs
    target = Targets(flops=macs * 0.9)
    try:
        got = net.repair(arch, target, cm)
    except Exception as e:  # only a clear 'cannot be met' is acceptable
        assert "cannot be met" in str(e), name
        return
    assert cm.costs(got).macs <= macs * 0.9
    space.validate(got)


def test_grow_uses_the_targets_slack_and_stops_where_no_move_fits(case):
    """The mirror of the repair: from an architecture well inside a FLOPs target, grow stays
    inside it, uses at least as much of it, and ends where no single move would use more
    without leaving it; an architecture that misses the target is left as it is."""
    name, space, _, cm, net = case
    arch = net.derive()
    macs = cm.costs(arch).macs
    target = Targets(flops=macs * 1.3)
    got = net.grow(arch, target, cm)
    space.validate(got)
    assert macs <= cm.costs(got).macs <= macs * 1.3, name
    used = target.fill(cm.costs(got))
    for cand, _ in net.moves(got):
        c = cm.costs(cand)
        assert not (target.meets(c) and target.fill(c) > used), name
    assert net.grow(arch, Targets(flops=macs * 0.5), cm) == arch  # misses: not grown
    assert net.grow(arch, Targets(), cm) == arch  # no target: nothing to fill
