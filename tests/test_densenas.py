"""DenseNAS: space as data, alignment shapes, chained cost of the supernet, one-hot equivalence
with the derived network, derivation, op sampling, and a tiny end-to-end search."""

import json
import math

import numpy as np
import pytest
import torch

from nasforge.arch import Arch
from nasforge.cost.chained import BlockDAG, expected_cost_brute_force
from nasforge.cost.flops import count_module
from nasforge.cost.lut import LatencyTable
from nasforge.errors import UserError
from nasforge.models.densenas import make_op, make_tail_align
from nasforge.spaces.dense import ALIGN_OPS, LAYER_OPS, SPECS, DenseSpace, DenseSpec
from nasforge.spaces.registry import get_space
from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer
from nasforge.supernets.densenas import DenseSupernet
from nasforge.testing import tiny_dataset

# a small space that still has both resolutions, stride-2 alignment and a stage rule
TINY = DenseSpec("dense-tiny", 16, 8, 2, widths=(8, 8, 12, 16, 16), sizes=(8, 8, 8, 4, 4),
                 layers=(0, 1, 2, 1, 1), last_channels=24, connect=3,
                 stages=(0, 1, 1, 2, 2, 3), in_channels=1)


@pytest.fixture(scope="module")
def tiny() -> DenseSpace:
    return DenseSpace(TINY)


def test_official_space_is_the_published_one():
    sp = DenseSpace("dense-imagenet")
    s = sp.spec
    assert s.widths == (16, 24, 32, 40, 48, 56, 64, 72, 96, 112, 128, 160, 176, 192, 320, 352,
                        384)
    assert s.sizes == (112, 56, 28, 28, 28, 14, 14, 14, 14, 14, 14, 7, 7, 7, 7, 7, 7)
    assert s.connect == 4 and s.last_channels == 1984
    for i, succ in enumerate(sp.dag.successors[:-1]):
        assert 1 <= len(succ) <= 4 and all(i < j <= i + 4 for j in succ)
        for j in succ:
            assert sp.spec.stride(i, j) in (1, 2)  # resolutions differ by at most 2×
            assert s.stages[j] - s.stages[i] <= 1  # no stage skipped
    # the connections that the 2× rule or the stage rule cut
    assert sp.dag.successors[0] == (1,)  # 112 → 28 would be 4×
    assert 17 not in sp.dag.successors[13]  # block 13 (stage 5) cannot skip stage 6


@pytest.mark.parametrize("name", ["dense-fmnist", "dense-cifar", "dense-imagenet"])
def test_registered_and_valid(name):
    sp = get_space(name)
    rng = np.random.default_rng(0)
    a = sp.sample(rng)
    sp.validate(a)
    assert Arch.from_json(a.to_json()) == a
    assert sp.encode(a).shape == sp.encode(sp.mutate(a, rng)).shape
    assert sp.cardinality() > 1


def test_cardinality_matches_enumeration(tiny):
    per_block = [len(ALIGN_OPS) * len(LAYER_OPS) ** n for n in TINY.layers]
    want = sum(math.prod(per_block[j] for j in p[1:-1]) for p in tiny.dag.paths())
    assert tiny.cardinality() == want


def test_alignment_maps_every_predecessor_shape(tiny):
    x_of = {}
    for name in ["dense-fmnist", "dense-cifar"]:
        sp = DenseSpace(name)
        s = sp.spec
        for j in range(1, s.num_blocks + 1):
            for i in sp.preds[j]:
                x = x_of.setdefault((s.width(i), s.size(i)),
                                    torch.randn(2, s.width(i), s.size(i), s.size(i)))
                ops = ([make_tail_align(s, i)] if j == s.num_blocks else
                       [make_op(o, s.width(i), s.width(j), s.stride(i, j)) for o in ALIGN_OPS])
                for op in ops:
                    assert op(x).shape == (2, s.width(j), s.size(j), s.size(j)), (name, i, j)


def test_alignment_shapes_official_space():
    """Every branch of the 224² space, with one op (kernel/expansion do not change shapes)."""
    sp = DenseSpace("dense-imagenet")
    s = sp.spec
    with torch.no_grad():
        for j in range(1, s.num_blocks):
            for i in sp.preds[j]:
                op = make_op("k3_e3", s.width(i), s.width(j), s.stride(i, j))
                y = op(torch.zeros(1, s.width(i), s.size(i), s.size(i)))
                assert y.shape == (1, s.width(j), s.size(j), s.size(j))


def test_table_counts_equal_the_built_network():
    rng = np.random.default_rng(1)
    for name in ["dense-fmnist", "dense-cifar"]:
        sp = DenseSpace(name)
        costs = sp.costs(10, sp.spec.in_channels)
        for _ in range(3):
            a = sp.sample(rng)
            c = count_module(sp.build(a, 10, sp.spec.in_channels),
                             (sp.spec.in_channels, sp.spec.input_size, sp.spec.input_size))
            assert (costs.arch_macs(a), costs.arch_params(a)) == (c.macs, c.params)


def test_validation_names_the_problem(tiny):
    with pytest.raises(UserError, match="does not connect"):
        tiny.arch([{"id": 4, "align": "k3_e3", "layers": ["skip"]}])  # 0 → 4 is too far
    with pytest.raises(UserError, match="unknown op"):
        tiny.arch([{"id": 2, "align": "skip", "layers": ["skip", "skip"]},
                   {"id": 4, "align": "k3_e3", "layers": ["skip"]}])
    with pytest.raises(UserError, match="must list 2"):
        tiny.arch([{"id": 2, "align": "k3_e3", "layers": ["skip"]},
                   {"id": 4, "align": "k3_e3", "layers": ["skip"]}])
    with pytest.raises(UserError, match="tail"):
        tiny.arch([{"id": 1, "align": "k3_e3", "layers": ["skip"]}])
    with pytest.raises(UserError, match="widths"):
        DenseSpec("bad", 16, 8, 2, (8, 4), (8, 8), (0, 1), 8)


def _randomize_bn(net: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))


@pytest.mark.parametrize("seed", range(4))
def test_derived_network_equals_supernet_at_one_hot(tiny, seed):
    torch.manual_seed(seed)
    net = DenseSupernet(tiny, 5, 1, cost="flops")
    _randomize_bn(net, seed)
    arch = tiny.sample(np.random.default_rng(seed))
    model = net.extract(arch)
    rel = net.one_hot(arch)
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
    for train in (False, True):  # running statistics and batch statistics
        net.train(train)
        model.train(train)
        with torch.no_grad():
            torch.testing.assert_close(net(x, rel), model(x), rtol=1e-4, atol=1e-5)
    # and the chained cost at one-hot is the derived network's exact MAC count
    costs = tiny.costs(5, 1)
    assert net.expected_cost(rel).item() * 1e3 == pytest.approx(costs.arch_macs(arch), rel=1e-5)


def _fake_lut(costs, seed: int) -> LatencyTable:
    rng = np.random.default_rng(seed)
    t = LatencyTable("dense-tiny", "cpu", {}, overhead_us=3.0)
    for k in costs.counts:
        t.entries[k] = float(rng.uniform(5, 50))
    return t


def test_latency_cost_at_one_hot_is_the_lut_prediction(tiny):
    costs = tiny.costs(5, 1)
    lut = _fake_lut(costs, 0)
    net = DenseSupernet(tiny, 5, 1, costs, cost="latency", lut=lut)
    rng = np.random.default_rng(3)
    for _ in range(5):
        a = tiny.sample(rng)
        got = net.expected_cost(net.one_hot(a)).item()
        assert got == pytest.approx(costs.arch_latency_us(lut, a), rel=1e-5)


def test_expected_cost_is_the_expectation_over_paths_and_ops(tiny):
    """Brute force: every path, each block's and edge's expected op cost under the softmax."""
    torch.manual_seed(0)
    costs = tiny.costs(5, 1)
    lut = _fake_lut(costs, 1)
    net = DenseSupernet(tiny, 5, 1, costs, cost="latency", lut=lut, init_std=1.0)
    with torch.no_grad():
        rel = net.sample_relaxation()
    dag = tiny.dag
    val = lut.corrected
    node = [val(costs.head) + lut.overhead_us]
    for j in range(1, TINY.num_blocks):
        node.append(sum(float(rel.layers[j - 1][li, o]) * (0.0 if k is None else val(k))
                        for li, row in enumerate(costs.layers[j]) for o, k in enumerate(row)))
    node.append(val(costs.end))
    edges = []
    for i, succ in enumerate(dag.successors):
        row = []
        for j in succ:
            b = tiny.preds[j].index(i)
            if j == dag.tail:
                row.append(val(costs.tail[b]))
            else:
                row.append(sum(float(rel.align[j - 1][b, o]) * val(k)
                               for o, k in enumerate(costs.align[j][b])))
        edges.append(torch.tensor(row, dtype=torch.float64))
    want = expected_cost_brute_force(dag, torch.tensor(node, dtype=torch.float64),
                                     [p.double() for p in rel.paths], edges)
    assert net.expected_cost(rel).item() == pytest.approx(want.item(), rel=1e-5)
    # and it is differentiable in every architecture parameter
    net.expected_cost(net.sample_relaxation()).backward()
    for p in net.arch_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_parameter_groups_are_disjoint_and_complete(tiny):
    net = DenseSupernet(tiny, 5, 1, cost="flops")
    a = {id(p) for p in net.arch_parameters()}
    w = {id(p) for p in net.weight_parameters()}
    assert a and w and not a & w and a | w == {id(p) for p in net.parameters()}


def test_derive_takes_argmax_ops_and_the_viterbi_path(tiny):
    net = DenseSupernet(tiny, 5, 1, cost="flops")
    target = tiny.arch([{"id": 2, "align": "k5_e6", "layers": ["k7_e3", "skip"]},
                        {"id": 4, "align": "k3_e6", "layers": ["k5_e3"]}])
    with torch.no_grad():
        for p in net.arch_parameters():
            p.zero_()
        path = tiny.path(target)
        for i, j in zip(path, path[1:]):
            net.beta[i][tiny.dag.edge_index(i, j)] = 2.0
        for i, b in zip(path, target.genes["blocks"]):
            j = b["id"]
            net.alpha_align[j - 1][tiny.preds[j].index(i), ALIGN_OPS.index(b["align"])] = 1.0
            s = net.layer_slots.index(j)
            for li, o in enumerate(b["layers"]):
                net.alpha_layers[s][li, LAYER_OPS.index(o)] = 1.0
    assert net.derive() == target
    # skip removes the layer from the derived network
    assert len(net.extract(target).blocks[0].layers) == 1
    assert all(tiny.validate(a) is None for a in net.sample(5, np.random.default_rng(0)))


def test_op_sampling_draws_k_ops_and_rescale_keeps_the_others(tiny):
    torch.manual_seed(0)
    net = DenseSupernet(tiny, 5, 1, cost="flops", init_std=1.0)
    g = torch.Generator().manual_seed(0)
    with net.sampling(2):
        rel = net.sample_relaxation(g)
    assert net.op_sample == 0  # restored
    for m, w in zip(rel.masks, rel.align + [x for x in rel.layers if x is not None]):
        assert (m.sum(-1) == 2).all()
        assert torch.all(w[~m] == 0) and torch.allclose(w.sum(-1), torch.ones(len(w)))
    before = [a.detach().clone() for a in net.alpha_parameters()]
    probs_before = [torch.softmax(a, -1) for a in before]
    with torch.no_grad():
        for a, m in zip(net.alpha_parameters(), rel.masks):
            a.add_(torch.randn(a.shape, generator=g) * m)  # a step moves only drawn ops
    net.rescale_sampled_(before, rel)
    for a, p0, m in zip(net.alpha_parameters(), probs_before, rel.masks):
        p1 = torch.softmax(a.detach(), -1)
        torch.testing.assert_close(p1[~m], p0[~m])  # ops not drawn keep their probability
    # with sampling, the forward runs only the drawn ops and still gives logits
    x = torch.randn(2, 1, 16, 16)
    assert net(x, rel).shape == (2, 5)


def test_trainer_runs_both_stages_with_sampling(tiny):
    from nasforge.cost.loss import CostLoss

    torch.manual_seed(0)
    data = tiny_dataset(32, 16, 16, size=16, num_classes=5)
    net = DenseSupernet(tiny, 5, 1, cost="flops")
    before = [p.detach().clone() for p in net.arch_parameters()]
    cfg = SupernetConfig(epochs=2, warmup_epochs=1, batch_size=16, w_lr=0.2, theta_lr=3e-2,
                         tau0=1.0, tau_decay=0.0)
    net.set_op_sampling(weight_ops=1, arch_ops=2)
    loop = SupernetTrainer(net, data, cfg, CostLoss(form="additive", lam=0.15, base=15),
                           progress=False)
    st = loop.fit()
    assert [h["warmup"] for h in st.history] == [True, False]
    assert st.history[1]["cost"] is not None and st.history[1]["cost"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, net.arch_parameters()))
    with pytest.raises(UserError, match="op sampling"):
        net.set_op_sampling(weight_ops=1, arch_ops=1)


def test_every_registered_spec_builds_a_supernet_forward():
    for name in ["dense-fmnist"]:  # the others are covered by the shape tests (CPU time)
        sp = DenseSpace(name)
        net = DenseSupernet(sp, 10, sp.spec.in_channels, cost="flops")
        x = torch.randn(2, sp.spec.in_channels, sp.spec.input_size, sp.spec.input_size)
        with net.sampling(1):
            out = net(x, net.sample_relaxation(torch.Generator().manual_seed(0)))
        out.sum().backward()
        assert out.shape == (2, 10)
    assert set(SPECS.names()) == {"dense-fmnist", "dense-cifar", "dense-imagenet",
                                  "dense-small"}  # dense-small: short budgets (issue 10)


def test_dag_of_the_space_is_a_block_dag(tiny):
    assert isinstance(tiny.dag, BlockDAG)
    # stages: block 1 (stage 1) may not reach block 5 = tail (stage 3)
    assert tiny.dag.tail not in tiny.dag.successors[1]


@pytest.mark.slow
def test_search_end_to_end(tmp_path):
    from nasforge.cli import main
    from nasforge.run.result import read_result

    out = tmp_path / "run"
    rc = main(["search", "densenas", "--dataset", "digits", "--subset", "60", "--epochs", "2",
               "--batch-size", "16", "--cost", "flops", "--samples", "1",
               "--candidate-epochs", "0", "--train-epochs", "1", "--out", str(out),
               "--no-progress", "--flops", "2e7"])
    assert rc == 0
    res = read_result(out / "result.json")
    assert res["method"] == "densenas" and res["space"] == "dense-fmnist"
    assert res["flops"] <= 2e7
    text = (out / "path.txt").read_text()
    assert "path 0 →" in text and "tail" in text
    search = json.loads((out / "search.json").read_text())
    assert [h["warmup"] for h in search["history"]] == [True, False]
    arch = Arch.from_dict(res["arch"])
    DenseSpace("dense-fmnist").validate(arch)
    # without a ranking (--candidate-epochs 0) the grown candidate, offered first, is trained
    assert search["grown"] is not None and search["candidates"][0]["arch"] == search["grown"]
    assert res["arch"]["genes"] == search["grown"]


def test_shrink_to_target_meets_a_flops_target_or_says_it_cannot(tiny):
    from nasforge.cost.model import CostModel
    from nasforge.cost.targets import Targets

    torch.manual_seed(0)
    costs = tiny.costs(5, 1)
    net = DenseSupernet(tiny, 5, 1, costs, cost="flops", init_std=1.0)
    derived = net.derive()
    cheapest = min(costs.arch_macs(tiny.arch(
        [{"id": j, "align": "k3_e3", "layers": ["skip"] * TINY.layers[j]} for j in p[1:-1]]))
        for p in tiny.dag.paths())
    assert cheapest < costs.arch_macs(derived)
    for target in (costs.arch_macs(derived) - 1, (cheapest + costs.arch_macs(derived)) // 2,
                   cheapest):
        cm = CostModel(tiny, 5, (1, tiny.spec.input_size, tiny.spec.input_size),
                       counter=net.counts)
        got = net.repair(derived, Targets(flops=target), cm)
        assert costs.arch_macs(got) <= target
    with pytest.raises(UserError, match="cannot be met"):
        net.repair(derived, Targets(flops=cheapest - 1), cm)
