"""The optimised supernet step computes what the plain step computes (issue 11).

For every registered supernet: a (w step + θ step) round with every speed switch on
(exclusive gradients, batched candidate ops, channels_last) against the same round with every
switch off, from the same weights and the same draws; the updated θ, w and batch-norm
statistics must agree to float tolerance. In float64, so that rounding stays far below any
bug (in float32 the cancellations of batch-norm backward on tiny maps differ in the 4th
digit); one round, so that the updates themselves are compared. And the switches do what they
say: the θ step builds no weight gradient, the w step no θ gradient. (The DARTS case once
differed by ~1e-5 in w: torch's CPU batch-norm backward misreads a stride-0 weight when the
input and gradient are channels_last; ``tests/test_darts.py`` pins the folded BN alone.)
"""

from __future__ import annotations

import copy

import pytest
import torch

from nasforge.blocks import InvertedResidual, Skip
from nasforge.cost.loss import CostLoss
from nasforge.cost.model import CostModel
from nasforge.data import Dataset, TensorSplit
from nasforge.spaces.darts import DartsConfig, DartsSpace
from nasforge.spaces.dense import DenseSpace, DenseSpec
from nasforge.spaces.fbnet import FBNetSpace, Skeleton
from nasforge.spaces.masking import MaskingSpace
from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer
from nasforge.supernets.batched import weighted_sum
from nasforge.supernets.darts import FastPath, set_fast
from nasforge.supernets.registry import SUPERNETS

TINY_FBNET = Skeleton("fbnet-eq", 12, 8, 2, ((8, 1, 1), (16, 2, 2), (16, 1, 1)), 32,
                      in_channels=1)
TINY_DENSE = DenseSpec("dense-eq", 16, 8, 2, widths=(8, 8, 12, 16, 16), sizes=(8, 8, 8, 4, 4),
                       layers=(0, 1, 2, 1, 1), last_channels=24, connect=3,
                       stages=(0, 1, 1, 2, 2, 3), in_channels=1)
CASES = {  # name: (space, input size, loss form, DenseNAS ops drawn for w / θ)
    "fbnet": (lambda: FBNetSpace(TINY_FBNET), 12, "paper", None),
    "fbnet-single": (lambda: FBNetSpace(TINY_FBNET), 12, "paper", None),
    "dmasking": (lambda: MaskingSpace("fbnetv2-fmnist"), 28, "paper", None),
    "densenas": (lambda: DenseSpace(TINY_DENSE), 16, "additive", (1, 2)),
    "densenas-all": (lambda: DenseSpace(TINY_DENSE), 16, "additive", (0, 0)),
    "darts": (lambda: DartsSpace(DartsConfig("darts-eq", 16, 1, cells=3, channels=4,
                                             final_cells=3, final_channels=4)), 16, "none",
              None),
}


def _data(size: int) -> Dataset:
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> TensorSplit:
        return TensorSplit(torch.randn(n, 1, size, size, generator=g, dtype=torch.float64),
                           torch.randint(0, 10, (n,), generator=g))

    return Dataset("synthetic", split(8), split(8), split(2), 10, (0.0,), (1.0,))


def _pair(case: str) -> tuple[SupernetTrainer, SupernetTrainer]:
    make, size, loss, ops = CASES[case]
    space = make()
    name = case.split("-")[0]
    cm = CostModel(space, 10, (1, size, size), kind="flops")
    torch.manual_seed(0)
    net = SUPERNETS.get(name).build(space, cm).double()  # float64: rounding far below a bug
    if ops is not None:
        net.set_op_sampling(*ops)
    data = _data(size)
    out = []
    for fast in (False, True):
        n = copy.deepcopy(net)
        if hasattr(n, "batched"):
            n.batched = fast
        if name == "darts":  # the DARTS cell's own switches (none skipped, folded BN, ...)
            set_fast(n, FastPath() if fast else FastPath.plain())
        cfg = SupernetConfig(epochs=2, warmup_epochs=0, batch_size=8, w_lr=0.05, theta_lr=0.05,
                             hard=case.endswith("single"), exclusive_grads=fast,
                             channels_last=fast, grad_clip=None, amp=False)
        out.append(SupernetTrainer(n, data, cfg, CostLoss(loss), seed=0, progress=False))
    return out[0], out[1]


def _steps(tr: SupernetTrainer, k: int = 1) -> None:
    tr.net.train()
    d = tr.data
    for _ in range(k):
        tr.weight_step(d.train.x, d.train.y)
        tr.arch_step(d.val.x, d.val.y)


@pytest.mark.parametrize("case", sorted(CASES))
def test_optimised_step_equals_plain_step(case):
    plain, fast = _pair(case)
    theta0 = [p.detach().clone() for p in plain.net.arch_parameters()]
    w0 = [p.detach().clone() for p in plain.net.weight_parameters()]
    _steps(plain)
    _steps(fast)
    a, b = plain.net.state_dict(), fast.net.state_dict()
    assert a.keys() == b.keys()
    for k in a:  # weights, θ and every batch-norm statistic
        assert torch.allclose(a[k].double(), b[k].double(), rtol=1e-7, atol=1e-9), k
    # θ and w did move: the comparison is not of two untouched copies
    assert any(not torch.equal(p, q) for p, q in zip(theta0, fast.net.arch_parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(w0, fast.net.weight_parameters()))


@pytest.mark.parametrize("case", ["fbnet", "densenas", "darts"])
def test_each_step_builds_only_its_own_gradients(case):
    _, fast = _pair(case)
    fast.net.train()
    d = fast.data
    w = list(fast.net.weight_parameters())
    a = list(fast.net.arch_parameters())
    fast.weight_step(d.train.x, d.train.y)
    assert all(p.grad is None for p in a), "the w step built θ gradients"
    assert any(p.grad is not None for p in w)
    for p in w:
        p.grad = None
    fast.arch_step(d.val.x, d.val.y)
    assert all(p.grad is None for p in w), "the θ step built weight gradients"
    assert any(p.grad is not None for p in a)
    assert all(p.requires_grad for p in w + a)  # switched back on after each step


def _blocks(cout: int, stride: int) -> list[torch.nn.Module]:
    """FBNet's nine candidates (plain, grouped, skip) plus an SE/hard-swish block."""
    from nasforge.models.fbnet import CANDIDATES, make_block

    return [make_block(n, 8, cout, stride) for n in CANDIDATES] + [
        InvertedResidual(8, cout, kernel=3, stride=stride, hidden=24, se=True, act="hswish")]


@pytest.mark.parametrize("active", [None, (3,), (2, 6), (0, 4, 8)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("cout,stride", [(8, 1), (16, 2)])
@pytest.mark.parametrize("size", [6, 3, 2, 1])  # 1–3: the depthwise kernels are cropped
def test_batched_weighted_sum_equals_the_plain_sum(active, training, cout, stride, size):
    torch.manual_seed(0)
    blocks = [b.double() for b in _blocks(cout, stride)]
    assert isinstance(blocks[8], Skip)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for b in blocks:
            for m in b.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    plain = copy.deepcopy(blocks)
    for b in blocks + plain:
        b.train(training)
    x = torch.randn(4, 8, size, size, generator=g, dtype=torch.float64)
    w = torch.softmax(torch.randn(len(blocks), generator=g, dtype=torch.float64),
                      0).requires_grad_()
    w2 = w.detach().clone().requires_grad_()
    out = weighted_sum(blocks, x, w, active, batched=True)
    ref = weighted_sum(plain, x, w2, active, batched=False)
    assert torch.allclose(out, ref, rtol=1e-9, atol=1e-12)
    out.square().sum().backward()
    ref.square().sum().backward()
    assert torch.allclose(w.grad, w2.grad, rtol=1e-9, atol=1e-12)
    for p, q in zip((p for b in blocks for p in b.parameters()),
                    (q for b in plain for q in b.parameters())):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-12)
    for sa, sb in zip([b.state_dict() for b in blocks], [b.state_dict() for b in plain]):
        for k in sa:
            assert torch.allclose(sa[k].double(), sb[k].double(), rtol=1e-9, atol=1e-12), k


@pytest.mark.parametrize("k,stride,size,taps", [(5, 1, 1, (2, 3)), (5, 1, 2, (1, 4)),
                                                (3, 1, 1, (1, 2)), (3, 2, 2, (1, 3)),
                                                (5, 2, 2, (2, 4)), (5, 1, 3, None),
                                                (3, 1, 2, None), (5, 2, 4, None)])
def test_depthwise_kernel_cropped_to_the_taps_that_touch_the_map(k, stride, size, taps):
    """On a small map a k×k depthwise conv is its central (touching) taps; cropped, the
    output and both gradients are the same."""
    from nasforge.supernets.batched import _dw_conv, _dw_plan, _taps

    assert _taps(k, k // 2, stride, size) == taps
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(6, 6, k, stride, k // 2, groups=6, bias=False).double()
    x = torch.randn(3, 6, size, size, generator=g, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    ref = conv(x)
    out = _dw_conv(x2, [conv.weight], _dw_plan(conv, x2))
    assert out.shape == ref.shape and torch.allclose(out, ref, rtol=1e-12, atol=1e-14)
    gy = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    gx, gw = torch.autograd.grad(ref, (x, conv.weight), gy)
    gx2, gw2 = torch.autograd.grad(out, (x2, conv.weight), gy)
    assert torch.allclose(gx, gx2, rtol=1e-12, atol=1e-14)
    assert torch.allclose(gw, gw2, rtol=1e-12, atol=1e-14)
