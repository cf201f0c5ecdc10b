import numpy as np
import pytest
import torch

from nasforge.cost.flops import count_module, flop_counter_macs
from nasforge.spaces.fbnet import SKELETONS, FBNetSpace, cost_tables
from nasforge.supernets.fbnet import FBNetSupernet


def test_paper_skeleton_has_22_layers_and_cardinality():
    sp = FBNetSpace("fbnet-imagenet")
    assert sp.num_layers == 22
    assert sp.cardinality() == 9**22
    assert sp.skeleton.final_size() == 7
    strides = [s.stride for s in sp.specs]
    assert strides.count(2) == 4  # + the stem: 224 -> 7


@pytest.mark.parametrize("name", ["fbnet-fmnist", "fbnet-cifar"])
def test_small_skeletons_build_and_run(name):
    sp = FBNetSpace(name)
    size, ch = sp.skeleton.input_size, sp.skeleton.in_channels
    a = sp.sample(np.random.default_rng(0))
    m = sp.build(a, 10, ch)
    out = m(torch.randn(2, ch, size, size))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_analytic_counts_match_hooks_and_flop_counter():
    sp = FBNetSpace("fbnet-fmnist")
    tables, _ = cost_tables(sp, 10, 1)
    rng = np.random.default_rng(3)
    for _ in range(4):
        a = sp.sample(rng)
        m = sp.build(a, 10, 1)
        c = count_module(m, (1, 28, 28))
        assert tables.arch_macs(a.genes) == c.macs
        assert tables.arch_params(a.genes) == c.params == sum(p.numel() for p in m.parameters())
        assert flop_counter_macs(m, (1, 28, 28)) == c.macs


def _randomize_bn(module):
    g = torch.Generator().manual_seed(0)
    for mod in module.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)


def test_one_hot_supernet_equals_built_model_with_same_weights():
    sp = FBNetSpace("fbnet-fmnist")
    tables, _ = cost_tables(sp, 10, 1)
    torch.manual_seed(0)
    net = FBNetSupernet(sp, 10, 1, tables.macs_matrix()[0])
    _randomize_bn(net)
    net.eval()
    x = torch.randn(3, 1, 28, 28)
    for seed in range(3):
        a = sp.sample(np.random.default_rng(seed))
        sample = net.one_hot(a)
        y_super = net(x, sample)
        standalone = sp.build(a, 10, 1)
        standalone.load_state_dict(net.extract(a).state_dict())
        standalone.eval()
        assert torch.allclose(y_super, standalone(x), atol=1e-5)
        # the hard (single-path) forward agrees too
        idx = [sp.candidates.index(b) for b in a.genes]
        assert torch.allclose(net(x, (sample[0], idx)), y_super, atol=1e-5)
        # and the expected cost at one-hot is the architecture's exact MAC count (in kMACs)
        net.fixed_cost.fill_(tables.fixed_macs / 1e3)
        assert net.expected_cost(sample).item() == pytest.approx(tables.arch_macs(a.genes) / 1e3,
                                                                 rel=1e-6)


def test_sampling_from_p_theta_and_argmax():
    sp = FBNetSpace("fbnet-fmnist")
    net = FBNetSupernet(sp, 10, 1, torch.ones(sp.num_layers, 9))
    with torch.no_grad():
        net.theta.zero_()
        net.theta[:, sp.candidates.index("k5_e6")] = 8.0
    assert list(net.derive().genes) == ["k5_e6"] * sp.num_layers
    samples = net.sample(6, np.random.default_rng(0))
    share = np.mean([g == "k5_e6" for a in samples for g in a.genes])
    assert share > 0.9
    assert len(SKELETONS.names()) >= 3
