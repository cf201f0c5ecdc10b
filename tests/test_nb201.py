"""The NAS-Bench-201 cell space: the benchmark's string form, its macro skeleton, and its
published sizes (issue 12)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from nasforge.arch import Arch
from nasforge.blocks.cell_ops import ReLUConvBN, Zero
from nasforge.cost.flops import count_module
from nasforge.cost.model import CostModel
from nasforge.errors import UserError
from nasforge.models.nb201 import OPS, NB201Cell, ResNetBasicBlock
from nasforge.spaces.nb201 import NB201Space, parse_string, to_string

ALL_CONV3 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
             "nor_conv_3x3~2|")


def test_the_string_round_trips_for_all_15625_cells():
    space = NB201Space("nb201-cifar")
    seen = set()
    for ops in itertools.product(OPS, repeat=6):
        s = to_string(ops)
        a = space.decode(s)
        assert a.genes == s and space.to_string(a) == s and parse_string(s) == ops
        assert space.decode(space.encode(a)) == a
        seen.add(s)
    assert len(seen) == space.cardinality() == 15625


def test_the_string_is_the_benchmarks_layout():
    # node i lists its inputs 0 … i−1; the example string of the benchmark's documentation
    s = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|nor_conv_3x3~1|avg_pool_3x3~2|"
    assert parse_string(s) == ("nor_conv_3x3", "skip_connect", "none", "nor_conv_1x1",
                               "nor_conv_3x3", "avg_pool_3x3")
    assert to_string(parse_string(s)) == s


@pytest.mark.parametrize("bad, words", [
    ("|nor_conv_3x3~0|+|skip_connect~0|none~1|", "3 nodes"),
    ("|nor_conv_3x3~0|+|skip_connect~0|+|none~0|none~1|none~2|", "takes 2 input"),
    ("|nor_conv_3x3~1|+|skip_connect~0|none~1|+|none~0|none~1|none~2|", "op~0"),
    ("|conv_5x5~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|", "unknown op"),
    ("nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|", "must be written"),
    (["nor_conv_3x3"] * 6, "benchmark's string"),
])
def test_bad_strings_are_refused_with_the_reason(bad, words):
    space = NB201Space("nb201-cifar")
    with pytest.raises(UserError, match=words):
        space.validate(Arch(space.name, bad))


@pytest.mark.parametrize("name, shape", [("nb201-fmnist", (1, 28, 28)),
                                         ("nb201-cifar", (3, 32, 32))])
def test_the_network_follows_the_benchmarks_macro_skeleton(name, shape):
    space = NB201Space(name)
    model = space.build(space.decode(ALL_CONV3), 10, shape[0]).eval()
    stem = model.stem
    assert isinstance(stem[0], nn.Conv2d) and stem[0].kernel_size == (3, 3)
    assert (stem[0].in_channels, stem[0].out_channels) == (shape[0], 16)
    assert isinstance(stem[1], nn.BatchNorm2d) and len(stem) == 2
    kinds = [type(c) for c in model.cells]
    assert kinds == [NB201Cell] * 5 + [ResNetBasicBlock] + [NB201Cell] * 5 + [ResNetBasicBlock] \
        + [NB201Cell] * 5
    outs: list[tuple[int, ...]] = []
    for c in model.cells:
        c.register_forward_hook(lambda m, i, o: outs.append(tuple(o.shape[1:])))
    with torch.no_grad():
        y = model(torch.randn(2, *shape))
    h = shape[1]
    want = [(16, h, h)] * 5 + [(32, h // 2, h // 2)] * 6 + [(64, h // 4, h // 4)] * 6
    assert outs == want and y.shape == (2, 10)
    rb = model.cells[5]  # the residual reduction block: ResNet basic block, stride 2
    assert rb.conv_a[1].stride == (2, 2) and rb.conv_b[1].stride == (1, 1)
    assert isinstance(rb.downsample[0], nn.AvgPool2d)
    assert isinstance(model.lastact[0], nn.BatchNorm2d) and isinstance(model.lastact[1], nn.ReLU)
    assert model.classifier.in_features == 64
    # nor_conv is ReLU-Conv-BN; none is zero
    edge = model.cells[0].edges[0]
    assert isinstance(edge, ReLUConvBN) and [type(m) for m in edge] == [
        nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    none = NB201Space(name).build(space.decode(ALL_CONV3.replace("nor_conv_3x3~2", "none~2")),
                                  10, shape[0]).cells[0].edges[5]
    assert isinstance(none, Zero)


@pytest.mark.parametrize("cell, params, macs", [
    # the largest cell: NAS-Bench-201 CIFAR-10 params range [0.073306, 1.531546] M, FLOPs
    # [7.78305, 220.11969] M (the benchmark's cost tables as EvoXBench quotes them; its FLOPs
    # add the classifier's 10 bias additions to our MACs)
    (ALL_CONV3, 1_531_546, 220_119_680),
    # the smallest: every edge without parameters
    ("|skip_connect~0|+|none~0|avg_pool_3x3~1|+|none~0|skip_connect~1|none~2|", 73_306,
     7_783_040),
    # NATS-Bench issue #36: this cell has 0.802426 M parameters on CIFAR-10
    ("|skip_connect~0|+|none~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
     802_426, None),
])
def test_published_sizes_on_cifar10(cell, params, macs):
    space = NB201Space("nb201-cifar")
    c = count_module(space.build(space.decode(cell), 10, 3), (3, 32, 32))
    assert c.params == params
    if macs is not None:
        assert c.macs == macs


def test_cost_items_sum_to_the_counted_network():
    space = NB201Space("nb201-fmnist")
    rng = np.random.default_rng(0)
    for arch in [space.decode(ALL_CONV3), space.sample(rng), space.sample(rng)]:
        counted = count_module(space.build(arch, 10, 1), (1, 28, 28))
        for kind, want in (("flops", counted.macs), ("params", counted.params)):
            cm = CostModel(space, 10, (1, 28, 28), kind=kind)
            got = sum(cm.unit_cost(k) for k in space.lut_keys(arch, 10, 1)) * 1e3
            assert got == pytest.approx(want, rel=1e-9), kind
