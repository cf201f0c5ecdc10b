import json

import numpy as np
import pytest
import torch
from torch import nn

from nasforge.arch import Arch
from nasforge.blocks.resample import intersperse_zeros, subsample_nearest
from nasforge.cost.flops import conv_macs, count_module
from nasforge.cost.lut import LatencyTable
from nasforge.cost.model import CostModel
from nasforge.cost.targets import Targets
from nasforge.errors import UserError
from nasforge.spaces.masking import MaskingSkeleton, MaskingSpace, StageOptions
from nasforge.spaces.registry import get_space
from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer
from nasforge.supernets.dmasking import DMaskingSupernet, latency_tensors
from nasforge.supernets.masking_layers import BranchedConvBNAct, MaskedConvBNAct
from nasforge.testing import tiny_dataset
from nasforge.testing.memory import peak_tensor_bytes


def _randomize_bn(net: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g))


# -- channel masking ---------------------------------------------------------------------------
@pytest.mark.parametrize("i", [0, 1, 2])
def test_masked_layer_one_hot_equals_a_plain_conv_of_that_width(i):
    torch.manual_seed(0)
    widths = (8, 12, 16)
    layer = MaskedConvBNAct(4, widths, 3, 2)
    _randomize_bn(layer)
    layer.eval()
    g = torch.zeros(3)
    g[i] = 1.0
    x = torch.randn(2, 4, 9, 9)
    plain = layer.plain(widths[i]).eval()
    y, ref = layer(x, g), plain(x)
    assert torch.allclose(y[:, :widths[i]], ref, atol=1e-6)
    assert (y[:, widths[i]:] == 0).all()  # the masked channels are exactly zero
    # FLOPs: the effective cost of the one-hot layer is the plain conv's
    from nasforge.cost.effective import EffectiveCounts, mix

    c = EffectiveCounts()
    c.conv(4, mix(g, widths), 3, 5, 5, bn=True)
    assert float(c.macs) == count_module(plain, (4, 9, 9)).macs == conv_macs(4, widths[i], 3, 1,
                                                                               5, 5)
    assert float(c.params) == count_module(plain, (4, 9, 9)).params


def test_soft_mask_is_the_gumbel_weighted_sum_of_option_masks():
    layer = MaskedConvBNAct(3, (2, 4), 1)
    g = torch.tensor([0.3, 0.7])
    m = g @ layer.L
    assert m.tolist() == pytest.approx([1.0, 1.0, 0.7, 0.7])


def test_peak_memory_is_flat_in_the_number_of_width_options():
    """2 vs 16 width options: the masked layer's forward+backward peak differs by < 10 %; the
    naive one-branch-per-option layer (same measurement) grows several-fold."""
    x = torch.randn(8, 16, 24, 24)

    def peak(cls: type, k: int) -> int:
        torch.manual_seed(0)
        widths = [64 * (i + 1) // k for i in range(k)]
        layer = cls(16, widths, 3)
        g = torch.softmax(torch.randn(k), 0)

        def step() -> None:
            layer(x, g).square().mean().backward()

        step()  # warm up lazily allocated state outside the measurement
        layer.zero_grad(set_to_none=True)
        return peak_tensor_bytes(step)

    m2, m16 = peak(MaskedConvBNAct, 2), peak(MaskedConvBNAct, 16)
    n2, n16 = peak(BranchedConvBNAct, 2), peak(BranchedConvBNAct, 16)
    print(f"peak bytes masked {m2} → {m16}, naive {n2} → {n16}")  # noqa: T201 (-s)
    assert abs(m16 - m2) / m2 < 0.10, (m2, m16)
    assert n16 > 2 * n2, (n2, n16)
    assert m16 < n16 / 2


# -- resolution: interspersed zero padding -----------------------------------------------------
def test_interspersed_padding_keeps_pixels_aligned_as_in_the_article_figure():
    # the article's figure: an 8×8 map, a 4×4 (nearest-subsampled, interspersed every other
    # row and column) and a 2×2 one; summed, only the 2×2's pixels hold values of both
    x = torch.arange(64.0).view(1, 1, 8, 8) + 1
    s4, s2 = subsample_nearest(x, 4), subsample_nearest(x, 2)
    p4, p2 = intersperse_zeros(s4, (8, 8), 2.0), intersperse_zeros(s2, (8, 8), 4.0)
    assert set(map(tuple, p4[0, 0].nonzero().tolist())) == {(r, c) for r in range(0, 8, 2)
                                                             for c in range(0, 8, 2)}
    both = (p4[0, 0] != 0) & (p2[0, 0] != 0)
    assert set(map(tuple, both.nonzero().tolist())) == {(0, 0), (0, 4), (4, 0), (4, 4)}
    # aligned: every kept pixel is back where it was sampled from
    for p in (p4, p2):
        nz = p != 0
        assert torch.equal(p[nz], x[nz])
    # border padding (the wrong way) puts the 4×4 in the top-left corner: misaligned
    border = nn.functional.pad(s4, (0, 4, 0, 4))
    assert not torch.equal(border[border != 0], x[border != 0])


def test_intersperse_handles_non_integer_ratios_and_rejects_overflow():
    y = torch.ones(1, 1, 3, 3)
    out = intersperse_zeros(y, (4, 4), 28 / 21)
    assert out.sum() == 9 and out[0, 0, 3].sum() == 0  # positions 0, 1, 2
    with pytest.raises(ValueError):
        intersperse_zeros(torch.ones(1, 1, 3, 3), (4, 4), 2.0)  # positions 0, 2, 4


# -- supernet ↔ derived model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def supernet() -> DMaskingSupernet:
    torch.manual_seed(0)
    net = DMaskingSupernet(MaskingSpace("fbnetv2-fmnist"), 10, 1)
    _randomize_bn(net)
    return net


@pytest.mark.parametrize("res", [28, 21, 14])
def test_exported_model_equals_the_supernet_at_one_hot(supernet, res):
    sp = supernet.space
    rng = np.random.default_rng(res)
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(res))
    for _ in range(3):
        genes = dict(sp.sample(rng).genes, resolution=res)
        a = sp.arch(genes)
        model = supernet.extract(a)
        # no search machinery in the standalone model, and the weights are slices
        assert not any(k.startswith("L_") for k, _ in model.named_buffers())
        assert (model.resize is None) == (res == 28)
        for train in (False, True):  # BN in eval and in batch-statistics mode
            supernet.train(train)
            model.train(train)
            with torch.no_grad():
                y_sup = supernet(x, supernet.one_hot(a))
                y_std = model(x)
            assert torch.allclose(y_sup, y_std, atol=1e-5), (res, train)
    supernet.eval()


def test_hard_single_path_runs_one_resolution(supernet):
    supernet.eval()
    G, r = supernet.sample_relaxation(torch.Generator().manual_seed(3), tau=0.5, hard=True)
    assert r == int(G[0].argmax()) and torch.all(G.sum(-1) == 1)
    a = supernet.space.arch_from_indices(G.argmax(-1).tolist())
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(supernet(x, (G, r)), supernet.extract(a).eval()(x), atol=1e-5)


def test_gradients_reach_weights_and_theta(supernet):
    supernet.train()
    supernet.zero_grad(set_to_none=True)
    s = supernet.sample_relaxation(torch.Generator().manual_seed(0), tau=1.0)
    y = supernet(torch.randn(4, 1, 28, 28), s)
    (nn.functional.cross_entropy(y, torch.arange(4)) + supernet.expected_cost(s) / 1e4).backward()
    assert supernet.theta.grad.abs().sum() > 0
    assert all(p.grad is not None for p in supernet.weight_parameters())
    supernet.eval()


def test_derive_and_samples(supernet):
    sp = supernet.space
    with torch.no_grad():
        supernet.theta.zero_()
        want = [len(o) - 1 for _, o in sp.decisions()]
        for d, i in enumerate(want):
            supernet.theta[d, i] = 5.0
    assert sp.indices(supernet.derive()) == want
    archs = supernet.sample(20, np.random.default_rng(0))
    assert all(a.space == sp.name for a in archs)
    hits = np.mean([sp.indices(a) == want for a in archs])
    assert hits > 0.3  # sampling follows P_θ
    with torch.no_grad():
        supernet.theta.zero_()


# -- space -------------------------------------------------------------------------------------
def test_space_registered_and_json_round_trip():
    sp = get_space("fbnetv2-fmnist")
    assert {"fbnetv2-cifar", "fbnetv2-imagenet"} <= set(
        __import__("nasforge.spaces.registry", fromlist=["x"]).space_names())
    rng = np.random.default_rng(0)
    a = sp.sample(rng)
    b = Arch.from_json(a.to_json())
    assert b == a and sp.indices(b) == sp.indices(a)
    m = sp.mutate(a, rng)
    assert m != a and len(sp.encode(m)) == sum(len(o) for _, o in sp.decisions())
    assert sp.cardinality() == int(np.prod([len(o) for _, o in sp.decisions()]))


def test_bad_genes_name_the_field():
    sp = MaskingSpace("fbnetv2-fmnist")
    a = sp.sample(np.random.default_rng(0))
    with pytest.raises(UserError, match="genes.widths\\[1\\]"):
        sp.validate(Arch(sp.name, dict(a.genes, widths=[a.genes["widths"][0], 999,
                                                        *a.genes["widths"][2:]])))
    with pytest.raises(UserError, match="resolution"):
        sp.validate(Arch(sp.name, dict(a.genes, resolution=27)))
    with pytest.raises(UserError, match="keys"):
        sp.validate(Arch(sp.name, {"widths": []}))


def test_skeleton_rejects_widths_that_would_change_the_residual_structure():
    with pytest.raises(UserError, match="disjoint"):
        MaskingSkeleton("bad", 28, (28,), (8, 16), (StageOptions(3, (16, 24), 1, 1, (1,)),))


# -- cost targets and latency ------------------------------------------------------------------
def test_shrink_meets_a_flops_target_and_refuses_an_impossible_one(supernet):
    sp = supernet.space
    big = sp.arch_from_indices([int(np.argmax(o)) for _, o in sp.decisions()])
    cm = CostModel(supernet.space, 10, (1, 28, 28), counter=supernet.counts)
    small = supernet.repair(big, Targets(flops=1.0e6), cm)
    assert supernet.arch_cost(small)["macs"] <= 1.0e6 < supernet.arch_cost(big)["macs"]
    with pytest.raises(UserError, match="cannot be met"):
        supernet.repair(big, Targets(flops=10.0), cm)


def test_latency_mix_at_one_hot_is_the_lut_sum():
    sp = MaskingSpace("fbnetv2-fmnist")
    items = sp.lut_items(10, 1)
    rng = np.random.default_rng(0)
    lut = LatencyTable(sp.name, "cpu", {}, entries={str(i.key): float(rng.uniform(5, 50))
                                                    for i in items}, overhead_us=3.0)
    lat = latency_tensors(sp, lut, 10, 1)
    net = DMaskingSupernet(sp, 10, 1, cost="latency", latency=lat)
    for _ in range(5):
        a = sp.sample(rng)
        want = lut.predict(sp.lut_keys(a, 10, 1))
        assert net.arch_cost(a)["latency_us"] == pytest.approx(want, rel=1e-9)
    s = net.sample_relaxation(None, 1.0)
    c = net.expected_cost(s)
    c.backward()
    assert c > 0 and net.theta.grad.abs().sum() > 0
    # a latency (and params) target is met by the same greedy shrink
    big = sp.arch_from_indices([int(np.argmax(o)) for _, o in sp.decisions()])
    cost = net.arch_cost(big)
    target = Targets(latency_ms=cost["latency_us"] / 1e3 * 0.7, params=cost["params"] * 0.8)
    cm = CostModel(sp, 10, (1, 28, 28), lut=lut, counter=net.counts)
    small = net.arch_cost(net.repair(big, target, cm))
    assert small["latency_us"] / 1e3 <= target.latency_ms and small["params"] <= target.params


def test_temperature_decays_to_near_one_hot_over_the_planned_epochs():
    sp = MaskingSpace("fbnetv2-fmnist")
    net = DMaskingSupernet(sp, 10, 1)
    cfg = SupernetConfig(epochs=5, warmup_epochs=1, tau_schedule="geometric", tau_end=0.1)
    loop = SupernetTrainer(net, tiny_dataset(), cfg, lambda ce, cost: ce, progress=False)
    taus = [loop.tau(e) for e in range(5)]
    assert taus[0] == pytest.approx(5.0) and taus[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(taus, taus[1:]))


@pytest.mark.slow
def test_cli_search_meets_a_flops_target(tmp_path):
    from nasforge.cli import main
    from nasforge.run.result import read_result

    out = tmp_path / "run"
    rc = main(["search", "fbnetv2", "--dataset", "digits", "--subset", "150", "--budget", "4",
               "--flops", "1.2e6", "--samples", "1", "--candidate-epochs", "0",
               "--train-epochs", "1", "--batch-size", "64", "--out", str(out), "--no-progress"])
    assert rc == 0
    r = read_result(out / "result.json")
    assert r["method"] == "fbnetv2" and r["flops"] <= 1.2e6
    assert r["space"] == "fbnetv2-fmnist"
    search = json.loads((out / "search.json").read_text())
    assert all(c["macs"] <= 1.2e6 for c in search["candidates"])
