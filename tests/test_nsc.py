import itertools

import numpy as np
import pytest
import torch

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.models.nsc import NSCBlock, unused
from nasforge.spaces.nsc import (
    KERNELS,
    NSCConfig,
    NSCSpace,
    check_layer,
    density,
    parse_block,
    valid_next,
)
from nasforge.spaces.registry import get_space

RESNETISH = [[1, "conv", 3, 0, 0], [2, "conv", 3, 1, 0], [3, "add", 0, 0, 2],
             [4, "terminal", 0, 0, 0]]
INCEPTIONISH = [[1, "conv", 1, 0, 0], [2, "conv", 3, 0, 0], [3, "max_pool", 3, 0, 0],
                [4, "concat", 0, 1, 2], [5, "terminal", 0, 0, 0]]


@pytest.mark.parametrize("code, msg", [
    ([[2, "conv", 3, 0, 0], [3, "terminal", 0, 0, 0]], "index must be 1"),
    ([[1, "conv", 3, 1, 0], [2, "terminal", 0, 0, 0]], "earlier layer"),
    ([[1, "conv", 3, 0, 0], [2, "add", 0, 1, 1], [3, "terminal", 0, 0, 0]], "two different"),
    ([[1, "conv", 3, 0, 0], [2, "conv", 3, 0, 1], [3, "terminal", 0, 0, 0]], "one predecessor"),
    ([[1, "conv", 7, 0, 0], [2, "terminal", 0, 0, 0]], "kernel 7 not allowed"),
    ([[1, "max_pool", 5, 0, 0], [2, "terminal", 0, 0, 0]], "kernel 5 not allowed"),
    ([[1, "sep_conv", 3, 0, 0], [2, "terminal", 0, 0, 0]], "unknown type"),
    ([[1, "conv", 3, 0, 0]], "must end with"),
    ([[1, "terminal", 0, 0, 0]], "at least one layer"),
    ([[1, "conv", 3, 0, 0], [2, "terminal", 0, 0, 0], [3, "conv", 1, 0, 0]], "must be the last"),
    ([[1, "conv", 3, 0, 0], [2, "terminal", 0, 1, 0]], "no predecessors"),
    ([[1, "conv", 3, 0]], "5-tuple"),
    ([[1, "conv", "3", 0, 0], [2, "terminal", 0, 0, 0]], "must be an integer"),
    ([[i + 1, "identity", 0, i, 0] for i in range(6)] + [[7, "terminal", 0, 0, 0]],
     "maximum depth is 5"),
])
def test_invalid_codes_rejected_with_clear_error(code, msg):
    with pytest.raises(UserError, match=msg):
        parse_block(code, max_layers=5)


def test_valid_codes_parse():
    for code in (RESNETISH, INCEPTIONISH):
        assert [list(x) for x in parse_block(code, 5)] == code


def test_valid_next_equals_brute_force():
    """Every 5-tuple in range that passes the rules is offered, and nothing else."""
    for depth in range(4):
        prefix = [(j + 1, "conv", 1, 0, 0) for j in range(depth)]
        index = depth + 1
        brute = set()
        for typ, k, p1, p2 in itertools.product(KERNELS, (0, 1, 3, 5), range(6), range(6)):
            try:
                check_layer((index, typ, k, p1, p2), index)
            except UserError:
                continue
            if typ == "terminal" and not prefix:
                continue
            if typ in ("add", "concat") and p1 > p2:
                continue  # one order per pair (add/concat are symmetric)
            brute.add((index, typ, k, p1, p2))
        assert set(valid_next(prefix, 5)) == brute
    full = [(j + 1, "conv", 1, 0, 0) for j in range(5)]
    assert valid_next(full, 5) == [(6, "terminal", 0, 0, 0)]


def test_cardinality_matches_enumeration():
    space = NSCSpace(NSCConfig("t", max_layers=3))

    def count(prefix):
        return sum(1 if a[1] == "terminal" else count([*prefix, a])
                   for a in valid_next(prefix, 3))

    assert space.cardinality() == count([])


def test_unused_outputs_are_concatenated():
    layers = parse_block(INCEPTIONISH, 5)
    assert unused(layers) == [3, 4]  # layer 1 and 2 feed the concat
    block = NSCBlock(layers, 8)
    assert block.out[1].in_channels == 8 + 16  # max_pool keeps 8, concat(8, 8) has 16
    y = block(torch.randn(2, 8, 6, 6))
    assert y.shape == (2, 8, 6, 6)


def test_add_of_different_widths_projects_the_narrower():
    code = [[1, "conv", 1, 0, 0], [2, "concat", 0, 0, 1], [3, "add", 0, 1, 2],
            [4, "terminal", 0, 0, 0]]
    block = NSCBlock(parse_block(code, 5), 4)
    assert list(block.proj) == ["3_1"] and block.proj["3_1"][1].out_channels == 8
    assert block(torch.randn(1, 4, 5, 5)).shape == (1, 4, 5, 5)


def test_density_is_edges_over_nodes():
    assert density(parse_block(RESNETISH, 5)) == pytest.approx(4 / 4)  # 1+1+2 edges, 4 nodes
    assert density(parse_block(INCEPTIONISH, 5)) == pytest.approx(5 / 5)


def test_sampled_blocks_build_and_train():
    space = get_space("nsc-fast")
    rng = np.random.default_rng(0)
    for _ in range(4):
        a = space.sample(rng)
        space.validate(a)
        net = space.build(a, 10, 1)
        out = net(torch.randn(2, 1, 28, 28))
        assert out.shape == (2, 10)
        out.sum().backward()
        missing = [n for n, p in net.named_parameters() if p.grad is None]
        assert not missing, missing
        b = space.mutate(a, rng)
        space.validate(b)
        assert b != a
        assert space.encode(a).shape == space.encode(b).shape


def test_network_stacks_repeats_per_stage():
    a1 = Arch("nsc", RESNETISH)
    n1 = get_space("nsc").build(a1, 10, 3)
    n2 = get_space("nsc-n2").build(Arch("nsc-n2", RESNETISH), 10, 3)
    blocks = lambda n: sum(isinstance(m, NSCBlock) for m in n.modules())  # noqa: E731
    assert blocks(n1) == 3 and blocks(n2) == 6
    assert n2(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_block_printout_is_readable():
    text = get_space("nsc").describe(Arch("nsc", INCEPTIONISH))
    assert "3x3 max_pool" in text and "concat(3, 4)" in text and "<- 1, 2" in text
    assert "terminal" not in text.splitlines()[-1] or "output" in text
    net = get_space("nsc").build(Arch("nsc", INCEPTIONISH), 10, 1)
    assert "concat(3, 4)" in repr(net)


def test_arch_of_another_space_rejected():
    with pytest.raises(UserError, match="'nsc-n2', expected 'nsc'"):
        get_space("nsc").validate(Arch("nsc-n2", RESNETISH))
