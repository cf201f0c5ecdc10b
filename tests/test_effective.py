import numpy as np
import pytest
import torch
from torch import nn

from nasforge.blocks import ConvBNAct
from nasforge.cost.effective import EffectiveCounts, conv_out, mix, mix2
from nasforge.cost.flops import count_module
from nasforge.spaces.masking import MaskingSpace
from nasforge.supernets.dmasking import DMaskingSupernet


def test_mix_is_the_weighted_option_value_and_differentiable():
    g = torch.tensor([0.8, 0.2], requires_grad=True)
    c = mix(g, [16, 12])
    assert float(c.detach()) == pytest.approx(15.2)  # the article's example: 0.8·16 + 0.2·12
    c.backward()
    assert g.grad.tolist() == [16.0, 12.0]
    assert mix(None, [7]) == 7.0
    t = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert float(mix2(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]), t)) == 3.0
    with pytest.raises(ValueError):
        mix(g, [1, 2, 3])


@pytest.mark.parametrize("cin,cout,k,s,groups,dw,bias", [
    (8, 16, 3, 1, 1, False, False), (8, 16, 1, 2, 2, False, True), (12, 12, 5, 2, 12, True, False),
])
def test_one_conv_matches_the_hook_counter(cin, cout, k, s, groups, dw, bias):
    conv = nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=bias)
    ref = count_module(nn.Sequential(conv, nn.BatchNorm2d(cout)), (cin, 11, 11))
    h = conv_out(11, k, s)
    c = EffectiveCounts()
    c.conv(cin, cout, k, h, h, groups=1 if dw else groups, depthwise=dw, bias=bias, bn=True)
    assert (c.macs, c.params) == (ref.macs, ref.params)


def test_depthwise_propagates_the_effective_input_width():
    g = torch.tensor([0.25, 0.75])
    c = EffectiveCounts()
    cin = mix(g, [8, 16])
    out = c.conv(cin, 999, 3, 4, 4, depthwise=True)
    assert float(out) == float(cin) == 14.0
    assert float(c.macs) == 9 * 16 * 14.0  # k²·h̄w̄·C̄, not ·C̄²/γ


@pytest.mark.parametrize("space", ["fbnetv2-fmnist", "fbnetv2-cifar"])
def test_supernet_cost_at_one_hot_equals_the_derived_network(space):
    sp = MaskingSpace(space)
    ch = sp.skeleton.in_channels
    net = DMaskingSupernet(sp, 10, ch)
    rng = np.random.default_rng(0)
    size = sp.skeleton.input_size
    for _ in range(4):
        a = sp.sample(rng)
        ref = count_module(sp.build(a, 10, ch), (ch, size, size))
        got = net.arch_cost(a)
        assert (got["macs"], got["params"]) == (ref.macs, ref.params)


def test_effective_cost_is_differentiable_and_between_the_extremes():
    sp = MaskingSpace("fbnetv2-fmnist")
    net = DMaskingSupernet(sp, 10, 1)
    G, _ = net.sample_relaxation(torch.Generator().manual_seed(0), tau=1.0)
    c = net.effective_counts(G.double())
    idx_min = [int(np.argmin(o)) for _, o in sp.decisions()]
    idx_max = [int(np.argmax(o)) for _, o in sp.decisions()]
    lo = net.arch_cost(sp.arch_from_indices(idx_min))["macs"]
    hi = net.arch_cost(sp.arch_from_indices(idx_max))["macs"]
    assert lo < float(c.macs.detach()) < hi
    net.expected_cost(net.sample_relaxation(None, 1.0)).backward()
    assert net.theta.grad is not None and net.theta.grad.abs().sum() > 0
    # more weight on a wider stem option raises the cost: d cost / d θ_wide > d cost / d θ_narrow
    g = net.theta.grad[net.dindex["stem"]]
    assert g[1] > g[0]


def test_effective_shape_of_a_resolution_mixture():
    sp = MaskingSpace("fbnetv2-fmnist")
    net = DMaskingSupernet(sp, 10, 1)
    G = torch.zeros_like(net.theta)
    G[:, 0] = 1.0
    G[0, :3] = torch.tensor([0.5, 0.0, 0.5])  # resolutions 28 and 14, half each
    stem = ConvBNAct(1, 8, 3, 2)
    c28, c14 = count_module(stem, (1, 28, 28)).macs, count_module(stem, (1, 14, 14)).macs
    c = EffectiveCounts()
    h = 0.5 * 14 + 0.5 * 7  # h̄ = Σ g_r h_r
    c.conv(1, 8, 3, h, h, bn=True)
    full = net.effective_counts(G.double())
    assert float(c.macs) == 9 * 8 * h * h and c14 < float(c.macs) < c28
    assert float(full.macs) > 0
