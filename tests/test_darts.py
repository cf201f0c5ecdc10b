"""The DARTS cell space, its networks, the DARTS supernets' derivation, and the second-order
architecture gradient (METHODS §6, issue 12)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasforge.arch import Arch
from nasforge.cost.flops import count_module
from nasforge.cost.loss import CostLoss
from nasforge.cost.model import CostModel
from nasforge.data.dataset import Dataset, TensorSplit
from nasforge.errors import UserError
from nasforge.models.darts import CONCAT, NUM_EDGES, PRIMITIVES, cell_plan, edge_index
from nasforge.spaces.darts import CHOICES, DartsConfig, DartsSpace, derive_genotype
from nasforge.spaces.nb201 import NB201Config, NB201Space
from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer
from nasforge.strategies.darts_step import unrolled_arch_grad
from nasforge.supernets.darts import DartsSupernet, NB201Supernet

#: DARTS (second order) on CIFAR-10, the paper's genotype (DARTS_V2 in its genotypes.py)
DARTS_V2 = {
    "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
               ["sep_conv_3x3", 1], ["skip_connect", 0], ["skip_connect", 0],
               ["dil_conv_3x3", 2]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 2], ["max_pool_3x3", 1],
               ["max_pool_3x3", 0], ["skip_connect", 2], ["skip_connect", 2],
               ["max_pool_3x3", 1]],
    "reduce_concat": [2, 3, 4, 5],
}


def tiny(size: int = 8, channels: int = 2) -> DartsSpace:
    return DartsSpace(DartsConfig("darts-tiny", size, 1, cells=3, channels=channels,
                                  final_cells=3, final_channels=channels))


def _genes(**change):
    g = {k: [list(r) for r in v] if k in ("normal", "reduce") else list(v)
         for k, v in DARTS_V2.items()}
    g.update(change)
    return g


# -- the space ------------------------------------------------------------------------------------
def test_genotype_json_round_trip_and_encode_decode():
    space = DartsSpace("darts-cifar")
    a = space.decode(DARTS_V2)
    assert Arch.from_json(a.to_json()) == a
    back = space.decode(space.encode(a))
    np.testing.assert_array_equal(space.encode(back), space.encode(a))
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = space.sample(rng)
        np.testing.assert_array_equal(space.encode(space.decode(space.encode(s))),
                                      space.encode(s))
        space.validate(space.mutate(s, rng))


@pytest.mark.parametrize("genes, words", [
    (_genes(normal=DARTS_V2["normal"][:7]), "8 [op, input] pairs"),
    (_genes(normal=[["sep_conv_3x3", 0], ["sep_conv_3x3", 0]] + DARTS_V2["normal"][2:]),
     "reads state 0 twice"),
    (_genes(normal=DARTS_V2["normal"][:2] + [["sep_conv_3x3", 3]] + DARTS_V2["normal"][3:]),
     "earlier state"),
    (_genes(reduce=[["none", 0]] + DARTS_V2["reduce"][1:]), "search-only"),
    (_genes(reduce=[["conv_7x1_1x7", 0]] + DARTS_V2["reduce"][1:]), "unknown op"),
    (_genes(normal_concat=[2, 3, 4]), "normal_concat must be"),
    ({k: v for k, v in DARTS_V2.items() if k != "reduce"}, "missing ['reduce']"),
])
def test_validate_names_the_broken_rule(genes, words):
    space = DartsSpace("darts-cifar")
    with pytest.raises(UserError, match=words.replace("[", r"\[").replace("]", r"\]")):
        space.validate(Arch(space.name, genes))


def test_every_sampled_node_reads_two_distinct_earlier_states():
    space = DartsSpace("darts-fmnist")
    rng = np.random.default_rng(1)
    for _ in range(50):
        g = space.genotype(space.sample(rng))
        for cell in ("normal", "reduce"):
            for i in range(4):
                (o1, j1), (o2, j2) = g[cell][2 * i], g[cell][2 * i + 1]
                assert j1 != j2 and max(j1, j2) < i + 2 and {o1, o2} <= set(CHOICES)


def test_cardinality_is_the_papers_count():
    # DARTS §2.4 / A.1: (Π_{k=1..4} k(k+1)/2 · 7²)² ≈ 10¹⁸
    assert DartsSpace("darts-cifar").cardinality() == (1 * 3 * 6 * 10 * 7 ** 8) ** 2


# -- the networks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, shape", [("darts-fmnist", (1, 28, 28)),
                                         ("darts-cifar", (3, 32, 32))])
def test_search_network_shapes_and_reductions_at_a_third_and_two_thirds(name, shape):
    space = DartsSpace(name)
    a = space.decode(DARTS_V2)
    model = space.build(a, 10, shape[0]).eval()
    sizes: list[tuple[int, ...]] = []
    for cell in model.cells:
        cell.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 10)
    h, c = shape[1], 16
    want = []
    for i in range(8):
        if i in (8 // 3, 2 * 8 // 3):  # cells 2 and 5 reduce
            h, c = h // 2, 2 * c
        want.append((4 * c, h, h))
    assert sizes == want
    assert [s.reduction for s in cell_plan(8, 16, shape[1])] == [i in (2, 5) for i in range(8)]


@pytest.mark.parametrize("name, shape, aux_in", [("darts-fmnist", (1, 28, 28), 7),
                                                 ("darts-cifar", (3, 32, 32), 8)])
def test_final_network_auxiliary_head_in_train_mode_only(name, shape, aux_in):
    space = DartsSpace(DartsConfig(name, shape[1], shape[0], final_cells=6, final_channels=8))
    model = space.build_final(space.decode(DARTS_V2), 10, shape[0])
    seen = []
    model.auxiliary_head.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1]))
    x = torch.randn(2, *shape)
    model.train()
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == aux.shape == (2, 10) and seen == [aux_in]  # after cell 2L/3
    model.eval()
    with torch.no_grad():
        assert model.forward_with_aux(x)[1] is None
        assert model(x).shape == (2, 10)


def test_drop_path_acts_in_training_only():
    space = DartsSpace(DartsConfig("d", 32, 3, final_cells=3, final_channels=4))
    model = space.build_final(space.decode(DARTS_V2), 10, 3)
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    model.drop_path_prob = 0.5
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(model(x), ref)  # eval: no drop path
        model.train()
        torch.manual_seed(0)
        a = model(x)
        model.drop_path_prob = 0.0
        b = model(x)
        c = model(x)
    assert not torch.allclose(a, b) and torch.allclose(b, c)


def test_darts_v2_final_network_has_the_papers_params():
    # DARTS Table 1: DARTS (second order) on CIFAR-10, 20 cells, C = 36: 3.3 M params
    space = DartsSpace("darts-cifar")
    model = space.build_final(space.decode(DARTS_V2), 10, 3)
    n = sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name)
    assert n == 3_349_342  # counted here; the paper rounds to 3.3 M
    assert round(n / 1e6, 1) == 3.3


def test_cost_items_sum_to_the_counted_network():
    space = DartsSpace("darts-fmnist")
    rng = np.random.default_rng(3)
    for arch in [space.decode(DARTS_V2), space.sample(rng), space.sample(rng)]:
        counted = count_module(space.build(arch, 10, 1), (1, 28, 28))
        for kind, want in (("flops", counted.macs), ("params", counted.params)):
            cm = CostModel(space, 10, (1, 28, 28), kind=kind)
            got = sum(cm.unit_cost(k) for k in space.lut_keys(arch, 10, 1)) * 1e3
            assert got == pytest.approx(want, rel=1e-9), kind


# -- the supernets' derivation ------------------------------------------------------------------
def test_derive_keeps_the_two_strongest_non_none_inputs_per_node():
    space = tiny()
    net = DartsSupernet(space, 3, 1)
    none, sep3, pool = (PRIMITIVES.index(o) for o in ("none", "sep_conv_3x3", "max_pool_3x3"))
    a = torch.zeros(NUM_EDGES, len(PRIMITIVES))
    a[:, none] = 9.0  # 'none' dominates every edge: it must still never be chosen
    a[edge_index(0, 1), sep3] = 2.0
    a[edge_index(0, 0), pool] = 1.0
    a[edge_index(3, 4), sep3] = 3.0  # node 3: inputs 4 and 2 are the strongest
    a[edge_index(3, 2), pool] = 2.5
    with torch.no_grad():
        net.alphas[0].copy_(a)
        net.alphas[1].copy_(torch.randn(NUM_EDGES, len(PRIMITIVES)))
    g = space.genotype(net.derive())
    assert g["normal"][:2] == [("sep_conv_3x3", 1), ("max_pool_3x3", 0)]  # strongest first
    assert g["normal"][6:] == [("sep_conv_3x3", 4), ("max_pool_3x3", 2)]
    for cell in ("normal", "reduce"):
        assert len(g[cell]) == 8 and g[f"{cell}_concat"] == list(CONCAT)
        for i in range(4):
            (o1, j1), (o2, j2) = g[cell][2 * i: 2 * i + 2]
            assert "none" not in (o1, o2) and j1 != j2 and max(j1, j2) < i + 2
    # the reduction cell follows the same rule on its own α
    p = torch.softmax(net.alphas[1].detach(), -1).numpy()
    assert g["reduce"] == [tuple(r) for r in derive_genotype([p, p])["reduce"]]


def test_nb201_derive_is_the_argmax_per_edge_none_included():
    space = NB201Space(NB201Config("nb201-tiny", 8, 1, channels=2, cells_per_stage=1))
    net = NB201Supernet(space, 3, 1)
    with torch.no_grad():
        net.alphas[0].zero_()
        for e, o in enumerate([0, 3, 1, 4, 2, 0]):
            net.alphas[0][e, o] = 1.0
    assert net.derive().genes == ("|none~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|"
                                  "nor_conv_1x1~1|none~2|")


# -- second-order architecture gradient ---------------------------------------------------------
XI, MOMENTUM, WD = 0.1, 0.9, 3e-4


def tiny_nb201() -> NB201Space:
    return NB201Space(NB201Config("nb201-tiny", 8, 1, channels=2, cells_per_stage=1))


@pytest.fixture(scope="module")
def problem():
    """A tiny cell supernet (NAS-Bench-201 cell, 2 channels, one cell per stage: 6k weights, 30
    α) in double precision with random α, BN statistics and momentum buffers."""
    torch.manual_seed(0)
    net = NB201Supernet(tiny_nb201(), 3, 1).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for a in net.alphas:
            a.copy_(torch.randn(a.shape, generator=g, dtype=torch.float64))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    # eval mode: BN by its running statistics. With the batch statistics of a batch of 8 the
    # loss is so curved in w that DARTS's ε = 0.01/‖v‖ leaves the linear range (the formula is
    # the same; the radius comparison below would measure that curvature instead)
    net.eval()
    data = [torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (8,), generator=g),
            torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (8,), generator=g)]
    state = {p: {"momentum_buffer": 0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64)}
             for p in net.weight_parameters()}
    return net, data, state


def _loss_fn(net):
    return lambda x, y: F.cross_entropy(net(x, net.sample_relaxation(None, 1.0)), y)


def _unrolled_val_loss(net, data, state, alphas) -> float:
    """L_val(w − ξ(μ·buf + ∇_w L_train(w, α) + λw), α) evaluated directly at ``alphas``."""
    xt, yt, xv, yv = data
    loss_fn = _loss_fn(net)
    ws = list(net.weight_parameters())
    keep_a = [a.detach().clone() for a in net.alphas]
    keep_w = [p.detach().clone() for p in ws]
    with torch.no_grad():
        for a, v in zip(net.alphas, alphas):
            a.copy_(v)
    grads = torch.autograd.grad(loss_fn(xt, yt), ws, allow_unused=True)
    with torch.no_grad():
        for p, gr in zip(ws, grads):
            gr = torch.zeros_like(p) if gr is None else gr
            p.sub_(XI * (gr + WD * p + MOMENTUM * state[p]["momentum_buffer"]))
        out = float(loss_fn(xv, yv))
        for p, k in zip(ws, keep_w):
            p.copy_(k)
        for a, k in zip(net.alphas, keep_a):
            a.copy_(k)
    return out


def _second_order(net, data, state, xi=XI, r=0.01):
    unrolled_arch_grad(net, _loss_fn(net), *data, xi=xi, w_momentum=MOMENTUM,
                       w_weight_decay=WD, w_optimizer_state=state, r=r)
    return [a.grad.detach().clone() for a in net.alphas]


def _dist(u, v) -> float:
    return float(torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(u, v))))


def test_second_order_gradient_matches_finite_differences_of_the_unrolled_loss(problem):
    net, data, state = problem
    before = {k: v.clone() for k, v in net.state_dict().items()}
    exact = _second_order(net, data, state, r=1e-6)  # a small radius: the HVP is exact
    darts = _second_order(net, data, state)  # DARTS's radius, ε = 0.01/‖v‖
    first = _second_order(net, data, state, xi=0.0)  # ∇α L_val(w, α)
    # the step leaves weights, α and BN statistics exactly as they were
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    base = [a.detach().clone() for a in net.alphas]
    g = torch.Generator().manual_seed(5)
    h = 1e-6
    for _ in range(3):  # directional derivatives along random directions
        d = [torch.randn(a.shape, generator=g, dtype=torch.float64) for a in base]
        up = _unrolled_val_loss(net, data, state, [a + h * u for a, u in zip(base, d)])
        down = _unrolled_val_loss(net, data, state, [a - h * u for a, u in zip(base, d)])
        along = sum(float((gr * u).sum()) for gr, u in zip(exact, d))
        assert along == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-8)
    # the implicit term matters here (the first-order gradient is > 10 % off) and DARTS's
    # finite-difference product at its radius gets most of it (≥ 4× closer than first order;
    # not exactly: w ± ε·v crosses ReLU kinks, the approximation the paper makes)
    zero = [torch.zeros_like(e) for e in exact]
    assert _dist(first, exact) > 0.1 * _dist(exact, zero)
    assert _dist(darts, exact) < 0.25 * _dist(first, exact)


def test_first_order_is_the_plain_gradient(problem):
    net, data, state = problem
    _, _, xv, yv = data
    got = _second_order(net, data, state, xi=0.0)
    net.zero_grad(set_to_none=True)
    _loss_fn(net)(xv, yv).backward()
    for a, gr in zip(net.alphas, got):
        assert torch.equal(a.grad, gr)


def test_the_bilevel_loop_takes_second_order_steps():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def split(n):
        return TensorSplit(torch.randn(n, 1, 8, 8, generator=g),
                           torch.randint(0, 3, (n,), generator=g))

    data = Dataset("toy", split(16), split(16), split(8), 3, (0.0,), (1.0,))
    with pytest.raises(UserError, match="arch_order"):
        SupernetConfig(epochs=2, warmup_epochs=0, arch_order=2, alternate="epoch")
    runs = {}
    for order in (1, 2):
        torch.manual_seed(0)
        net = NB201Supernet(tiny_nb201(), 3, 1)
        cfg = SupernetConfig(epochs=1, warmup_epochs=0, batch_size=8, w_lr=0.5, theta_lr=0.1,
                             arch_order=order, amp=False, grad_clip=None)
        loop = SupernetTrainer(net, data, cfg, CostLoss("none"), progress=False)
        loop.fit()
        runs[order] = [a.detach().clone() for a in net.alphas]
        assert loop.state.history[0]["a_loss"] is not None
    torch.manual_seed(0)  # the same initial α as both runs
    init = [a.detach().clone() for a in NB201Supernet(tiny_nb201(), 3, 1).alphas]
    assert not torch.allclose(runs[1][0], init[0]) and not torch.allclose(runs[2][0], init[0])
    assert not torch.allclose(runs[1][0], runs[2][0])


def _toy_data(size: int, n: int = 16) -> Dataset:
    g = torch.Generator().manual_seed(1)

    def split(k):
        return TensorSplit(torch.randn(k, 1, size, size, generator=g, dtype=torch.float64),
                           torch.randint(0, 3, (k,), generator=g))

    return Dataset("toy", split(n), split(n), split(4), 3, (0.0,), (1.0,))


@pytest.mark.parametrize(("cell", "order"), [("darts", 1), ("nb201", 1), ("nb201", 2)])
def test_the_fast_search_step_equals_the_plain_mixed_op_sum(cell, order):
    """w steps + α steps (first and second order) through the real loop: the fast cell (none
    skipped, shared ReLU, box-sum avg pool, α folded into BN, channels_last) ends with the same
    w, α and BN statistics as the plain Σ_o w_o·o(x), in float64. (The second order only calls
    the same forward more often; float64 convs are slow on the CPU, so darts runs order 1.)"""
    from nasforge.supernets.darts import FastPath, set_fast

    data = _toy_data(8, 8)
    ends = []
    for fast in (FastPath.plain(), FastPath()):
        torch.manual_seed(0)
        net = (DartsSupernet(tiny(8, 2), 3, 1) if cell == "darts"
               else NB201Supernet(tiny_nb201(), 3, 1)).double()
        set_fast(net, fast)
        cfg = SupernetConfig(epochs=1, warmup_epochs=0, batch_size=4, w_lr=0.5, theta_lr=0.1,
                             arch_order=order, amp=False, grad_clip=5.0)
        loop = SupernetTrainer(net, data, cfg, CostLoss("none"), progress=False)
        for i in range(2 if cell == "nb201" else 1):
            loop.weight_step(data.train.x[4 * i:4 * i + 4], data.train.y[4 * i:4 * i + 4])
            loop.arch_step(data.val.x[4 * i:4 * i + 4], data.val.y[4 * i:4 * i + 4])
        ends.append(net.state_dict())
    plain, fast = ends
    moved = 0
    for k in plain:
        assert torch.allclose(plain[k].double(), fast[k].double(), rtol=1e-7, atol=1e-10), k
        moved += "alphas" in k
    assert moved and not torch.allclose(plain["alphas.0"], torch.zeros_like(plain["alphas.0"]))


def test_each_fast_path_switch_alone_keeps_the_output_and_gradients():
    """Every ablation the benchmark times (one switch off) computes the plain sum too."""
    import dataclasses

    from nasforge.supernets.darts import FastPath, set_fast

    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    torch.manual_seed(0)
    net = DartsSupernet(tiny(8, 2), 3, 1).double()
    with torch.no_grad():
        net.alphas[0].normal_(generator=torch.Generator().manual_seed(2))

    def run(fast):
        set_fast(net, fast)
        out = net(x, net.sample_relaxation(None, 1.0))
        return [out, *torch.autograd.grad(out.square().sum(), list(net.parameters()))]

    plain = run(FastPath.plain())
    for off in ("skip_none", "shared_relu", "box_avg", "fold_bn", "channels_last",
                "space_to_batch", "share_sources"):
        for a, b in zip(plain, run(dataclasses.replace(FastPath(), **{off: False}))):
            assert torch.allclose(a, b, rtol=1e-8, atol=1e-11), off


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_folded_bn_gradients_equal_the_scaled_module_bn(layout):
    """``w·BN(t)`` as one batch_norm whose scale is ``w`` (the fast path's fold_bn): the same
    output, input and ``w`` gradients and running statistics as ``w * m(t)``, for a
    channels_last input and gradient too (where torch's CPU kernel misreads an expanded,
    stride-0 weight: issue 11's DARTS step mismatch)."""
    from nasforge.supernets.darts import _bn

    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(8, 8, 4, 4, generator=g, dtype=torch.float64)
    grad = torch.randn(8, 8, 4, 4, generator=g, dtype=torch.float64)
    ends = []
    for fold in (False, True):
        m = torch.nn.BatchNorm2d(8, affine=False).double().train()
        x = x0.clone().contiguous(memory_format=fmt).requires_grad_()
        w = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        out = _bn(m, x, w) if fold else w * m(x)
        out.backward(grad.contiguous(memory_format=fmt))
        ends.append((out.detach(), x.grad, w.grad, m.running_mean, m.running_var))
    for a, b in zip(*ends):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)



@pytest.mark.parametrize(("size", "stride"), [(8, 1), (6, 2), (7, 2), (7, 1)])
def test_dil_conv_as_a_dense_conv_on_parity_sub_images(size, stride):
    """space_to_batch: a dilation-2 DilConv (3×3 and 5×5) as a dense depthwise conv on the
    parity sub-images (stride 1) or the even one (stride 2) gives the module's output, input
    and weight gradients and BN statistics; an odd size at stride 1 is left to the module."""
    from nasforge.blocks.cell_ops import DARTS_OPS
    from nasforge.supernets.darts import (
        _dense_dil_unit,
        _dil_as_dense,
        from_parity_batch,
        to_parity_batch,
    )

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, size, size, generator=g, dtype=torch.float64)
    if size % 2 == 0:
        assert torch.equal(from_parity_batch(to_parity_batch(x0)), x0)
    for name in ("dil_conv_3x3", "dil_conv_5x5"):
        torch.manual_seed(0)
        op = DARTS_OPS[name](4, stride, False).double()
        if not _dil_as_dense(op, stride, x0):
            assert stride == 1 and size % 2
            continue
        ends = []
        for dense in (False, True):
            m = copy.deepcopy(op)
            x = x0.clone().requires_grad_()
            r = F.relu(x)
            if dense:
                out = _dense_dil_unit(m, to_parity_batch(r) if stride == 1
                                      else r[:, :, ::2, ::2], None)
                out = from_parity_batch(out) if stride == 1 else out
            else:
                out = m[3](m[2](m[1](r)))
            gx, gw = torch.autograd.grad(out.square().sum(), [x, m[1].weight])
            ends.append((out, gx, gw, m[3].running_mean, m[3].running_var))
        for a, b in zip(*ends):
            assert a.shape == b.shape
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), name

# -- the two networks of a derived genotype (issue 12: `nasforge train` on a DARTS arch) ---------
def _size(model):
    return len(model.cells), model.stem[0].out_channels // 3, model.auxiliary_head is not None


@pytest.mark.parametrize("name", ["darts-fmnist", "darts-cifar"])
def test_a_genotype_rebuilds_the_papers_final_network_and_the_search_one(name):
    """The derived arch's JSON carries both sizes; the final one is DARTS's (20 cells of 36,
    auxiliary head weight 0.4, drop path 0.2); cells/channels override it for small data."""
    space = DartsSpace(name)
    arch = Arch.from_dict(json.loads(space.decode(DARTS_V2).to_json()))  # through the file
    nets = arch.meta["networks"]
    assert nets["final"] == {"cells": 20, "channels": 36, "aux_weight": 0.4, "drop_path": 0.2}
    assert nets["search"] == {"cells": 8, "channels": 16}
    assert _size(space.network(arch, 10, 1, "final")) == (20, 36, True)
    assert _size(space.network(arch, 10, 1, "search")) == (8, 16, False)
    assert _size(space.build(arch, 10, 1)) == (8, 16, False)  # what a supernet maps onto
    assert _size(space.network(arch, 10, 1, cells=5, channels=8)) == (5, 8, True)
    assert space.final_recipe(arch) == {"aux_weight": 0.4, "drop_path": 0.2}


def test_the_sizes_in_the_json_win_over_the_registry_and_are_checked():
    space = DartsSpace("darts-fmnist")
    d = space.decode(DARTS_V2).to_dict()
    d["meta"]["networks"]["final"] = {"cells": 6, "channels": 4, "aux_weight": 0.0,
                                      "drop_path": 0.1}
    arch = Arch.from_dict(json.loads(json.dumps(d)))
    assert _size(space.build_final(arch, 10, 1)) == (6, 4, False)
    assert space.final_recipe(arch) == {"aux_weight": 0.0, "drop_path": 0.1}
    d["meta"]["networks"]["final"]["cells"] = 2
    with pytest.raises(UserError, match="cells must be an integer ≥ 3"):
        space.build_final(Arch.from_dict(d), 10, 1)
    with pytest.raises(UserError, match="channels must be an integer ≥ 1"):
        space.network(arch, 10, 1, channels=0)


def test_trained_arch_records_the_size_its_weights_fit():
    from nasforge.methods.finish import trained_arch

    space = DartsSpace("darts-fmnist")
    arch = space.decode(DARTS_V2)
    model = space.network(arch, 10, 1, cells=3, channels=2)
    saved = Arch.from_dict(json.loads(trained_arch(arch, model).to_json()))
    assert saved == arch and saved.meta["network"] == {"cells": 3, "channels": 2,
                                                       "auxiliary": True}
    again = space.build(saved, 10, 1)  # what `nasforge export` builds
    again.load_state_dict(model.state_dict())  # strict: the same tensors
    assert trained_arch(arch, torch.nn.Linear(2, 2)) is arch  # other models: unchanged


def _train(tmp_path, arch_file, *flags):
    from nasforge.cli import main

    out = tmp_path / "out"
    rc = main(["train", str(arch_file), "--dataset", "digits", "--subset", "32", "--epochs",
               "1", "--out", str(out), "--no-progress", *flags])
    return rc, out


def test_cli_train_builds_the_final_network_and_export_rebuilds_it(tmp_path, capsys):
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(json.dumps({"space": "darts-fmnist", "genes": DARTS_V2}))  # no meta
    rc, out = _train(tmp_path, arch_file, "--cells", "3", "--channels", "2")
    assert rc == 0
    sd = torch.load(out / "model.pt", weights_only=True)
    assert any(k.startswith("auxiliary_head.") for k in sd)  # the final network, not search
    saved = Arch.load(out / "arch.json")
    assert saved.meta["network"] == {"cells": 3, "channels": 2, "auxiliary": True}
    space = DartsSpace("darts-fmnist")
    space.build(saved, 10, 1).load_state_dict(sd)
    summary = json.loads((out / "train.json").read_text())
    net = space.network(saved, 10, 1, cells=3, channels=2).eval()
    assert summary["params"] == count_module(net, (1, 28, 28)).params
    # --search-size: DARTS's search network, no auxiliary head
    rc, out = _train(tmp_path, arch_file, "--search-size", "--cells", "3", "--channels", "2",
                     "--out", str(tmp_path / "s"))
    sd = torch.load(tmp_path / "s" / "model.pt", weights_only=True)
    assert rc == 0 and not any(k.startswith("auxiliary_head.") for k in sd)


def test_cli_train_refuses_cell_flags_for_other_spaces(tmp_path, capsys):
    from nasforge.spaces.registry import get_space

    arch_file = tmp_path / "fb.json"
    space = get_space("fbnet-fmnist")
    space.sample(np.random.default_rng(0)).save(arch_file)
    rc, _ = _train(tmp_path, arch_file, "--cells", "5")
    assert rc == 2
    assert "--cells/--channels/--search-size apply to cell-space" in capsys.readouterr().err


def test_second_order_step_refuses_a_non_finite_validation_gradient(problem):
    """A NaN ∇w L_val used to skip the Hessian-vector correction silently (the old stride-0 BN
    weight did exactly that on darts-cifar): now it names the problem."""
    net, data, state = problem
    xt, yt, xv, yv = data
    bad = (xt, yt, torch.full_like(xv, float("nan")), yv)
    with pytest.raises(FloatingPointError, match="non-finite validation gradient"):
        _second_order(net, bad, state)
