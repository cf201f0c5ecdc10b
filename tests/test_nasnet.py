"""The NASNet cell space (issue 12): NASNet's 13 ops, B = 5 blocks of two hidden states and two
ops added, unused block outputs concatenated, the stacked network's shapes on 28×28 and 32×32
inputs, the genotype's round trips (JSON, encode/decode, the sequential view), and every
sample-based strategy running trials through the engine on the new sequential spaces."""

import json

import numpy as np
import pytest
import torch

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.models.nasnet import OPS, NASNetCell, cell_plan, live_cells, unused
from nasforge.run.engine import Engine, EngineConfig
from nasforge.run.executors import LocalExecutor
from nasforge.run.store import TrialStore
from nasforge.spaces.nasnet import NASNetConfig, NASNetSpace
from nasforge.spaces.registry import get_space
from nasforge.strategies.base import STRATEGIES, create_strategy

#: NASNet's op list (Zoph et al. 2018, §3): identity, 1x3 then 3x1, 1x7 then 7x1, 3x3 dilated,
#: 3x3 avg pool, 3x3 / 5x5 / 7x7 max pool, 1x1 conv, 3x3 conv, 3x3 / 5x5 / 7x7 separable
PAPER_OPS = {"identity", "conv_1x3_3x1", "conv_1x7_7x1", "dil_conv_3x3", "avg_pool_3x3",
             "max_pool_3x3", "max_pool_5x5", "max_pool_7x7", "conv_1x1", "conv_3x3",
             "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7"}

#: a hand-written genotype: normal blocks 2 and 4 are read by later blocks (0, 1, 3 and 5 …)
GENES = {
    "normal": [[1, 1, "sep_conv_3x3", "identity"], [0, 1, "sep_conv_5x5", "conv_3x3"],
               [2, 0, "avg_pool_3x3", "identity"], [4, 1, "conv_1x7_7x1", "max_pool_3x3"],
               [3, 2, "dil_conv_3x3", "conv_1x1"]],
    "reduce": [[0, 1, "max_pool_5x5", "sep_conv_7x7"], [1, 0, "max_pool_7x7", "conv_1x3_3x1"],
               [2, 3, "identity", "sep_conv_3x3"], [0, 4, "avg_pool_3x3", "identity"],
               [5, 1, "max_pool_3x3", "sep_conv_5x5"]],
}


def test_the_op_list_is_nasnets_13_and_each_keeps_or_halves_the_size():
    assert len(OPS) == 13 and set(OPS) == PAPER_OPS
    x = torch.randn(2, 8, 14, 14)
    from nasforge.models.nasnet import NASNET_OPS
    for op in OPS:
        assert NASNET_OPS[op](8, 1)(x).shape == (2, 8, 14, 14), op
        assert NASNET_OPS[op](8, 2)(x).shape == (2, 8, 7, 7), op


def test_unused_blocks_are_the_cell_output():
    # normal: states read are 0, 1, 2, 3, 4 → blocks 5 and 6 are unused
    assert unused(GENES["normal"]) == [5, 6]
    # reduce: read 0, 1, 2, 3, 4, 5 → only block 6
    assert unused(GENES["reduce"]) == [6]
    sp = NASNetSpace()
    a = sp.arch(GENES)
    assert sp.concat(a) == {"normal": [5, 6], "reduce": [6]}
    cell = NASNetCell(cell_plan(GENES, 1, 8, 28)[0], GENES["normal"])
    y = cell(torch.randn(2, 24, 28, 28), torch.randn(2, 24, 28, 28))
    assert y.shape == (2, 2 * 8, 28, 28)  # two unused blocks × C


def test_a_block_adds_its_two_ops():
    """Block output = op a(state a) + op b(state b): identity on both inputs of a block that
    reads h_{i-1} twice gives twice the preprocessed h_{i-1}; with no block reading another
    block, all five are unused and the cell output is their concatenation."""
    genes = {c: [[1, 1, "identity", "identity"]] + [[0, 0, "conv_1x1", "max_pool_3x3"]] * 4
             for c in ("normal", "reduce")}
    assert unused(genes["normal"]) == [2, 3, 4, 5, 6]
    cell = NASNetCell(cell_plan(genes, 1, 4, 8)[0], genes["normal"]).eval()
    s0, s1 = torch.randn(1, 12, 8, 8), torch.randn(1, 12, 8, 8)
    with torch.no_grad():
        y = cell(s0, s1)
        h0, h1 = cell.preprocess0(s0), cell.preprocess1(s1)
        b1 = cell.ops[2](h0) + cell.ops[3](h0)
    assert y.shape == (1, 5 * 4, 8, 8)
    torch.testing.assert_close(y[:, :4], 2 * h1)
    torch.testing.assert_close(y[:, 4:8], b1)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_stacked_network_shapes(size, channels):
    sp = NASNetSpace()
    a = sp.arch(GENES)
    model = sp.build(a, 10, channels).eval()
    seen = []
    for cell in model.cells:
        cell.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    y = model(torch.randn(2, channels, size, size))
    assert y.shape == (2, 10)
    half, quarter = size // 2, size // 4
    c = 8
    # N = 1: normal, reduce, normal, reduce, normal; widths = unused blocks × C
    assert seen == [(2, 2 * c, size, size), (2, 1 * 2 * c, half, half),
                    (2, 2 * 2 * c, half, half), (2, 1 * 4 * c, quarter, quarter),
                    (2, 2 * 4 * c, quarter, quarter)]


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_sampled_networks_at_both_sizes_and_n2(size, channels):
    sp = NASNetSpace(NASNetConfig("nasnet-n2", input_size=size, in_channels=channels,
                                  cells_per_stage=2, channels=4))
    rng = np.random.default_rng(0)
    for _ in range(3):
        a = sp.sample(rng)
        model = sp.build(a, 7, channels)
        assert model(torch.randn(2, channels, size, size)).shape == (2, 7)
        assert len(model.cells) == 3 * 2 + 2


def test_a_cell_no_one_reads_is_not_built_and_every_parameter_learns():
    """Normal cells that never read h_{i-1} (state 1) leave the cell before them unread by the
    next cell; it is dropped when the cell after next is dropped or ignores h_{i-2} too."""
    never_1 = [[0, 0, "conv_1x1", "identity"]] + [[2, 0, "conv_1x1", "identity"]] * 4
    genes = {"normal": never_1, "reduce": GENES["reduce"]}
    live = live_cells(genes, 1)
    # cells n0 r1 n2 r3 n4: n4 reads n2 (state 0), not r3; n2 reads n0, not r1; r1 would
    # only feed r3 (its state 0), which is dropped itself
    assert live == [True, False, True, False, True]
    sp = NASNetSpace()
    model = sp.build(sp.arch(genes), 10, 3)
    assert sum(p.numel() for c in (1, 3) for p in model.cells[c].parameters()) == 0
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    genes["normal"][1] = [1, 0, "conv_1x1", "identity"]  # now n2 reads r1, and n4 reads r3
    assert live_cells(genes, 1) == [True] * 5
    model = sp.build(sp.arch(genes), 10, 3)
    model.zero_grad()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_genotype_round_trips():
    sp = NASNetSpace()
    rng = np.random.default_rng(4)
    for _ in range(50):
        a = sp.sample(rng)
        back = Arch.from_json(a.to_json())
        assert back == a
        assert sp.decode(json.loads(a.to_json())["genes"]) == a
        assert sp.decode(sp.encode(a)) == a
        assert sp.to_arch(sp.from_arch(a)) == a
        assert len(sp.from_arch(a)) == 2 * 5 * 4


def test_decisions_follow_nasnets_order_and_choices():
    sp = NASNetSpace()
    prefix: list = []
    kinds = []
    while not sp.is_complete(prefix):
        acts = sp.actions(prefix)
        kinds.append((acts[0][0], len(acts)))
        prefix.append(acts[-1])
    block = [("input", 2), ("input", 2), ("op", 13), ("op", 13)]
    assert kinds[:4] == block
    assert kinds[16:20] == [("input", 6), ("input", 6), ("op", 13), ("op", 13)]
    assert kinds[20:24] == block  # the reduction cell starts again at block 0
    assert len(kinds) == 40
    sp.validate(sp.to_arch(prefix))


def test_bad_genotypes_name_the_problem():
    sp = NASNetSpace()
    bad = json.loads(json.dumps(GENES))
    bad["normal"][0][0] = 2  # block 0 can read states 0 and 1 only
    with pytest.raises(UserError, match=r"normal\[0\].*0 … 1"):
        sp.validate(Arch("nasnet", bad))
    bad = json.loads(json.dumps(GENES))
    bad["reduce"][3][2] = "sep_conv_9x9"
    with pytest.raises(UserError, match="sep_conv_9x9.*not a NASNet op"):
        sp.validate(Arch("nasnet", bad))
    with pytest.raises(UserError, match="5 blocks"):
        sp.validate(Arch("nasnet", {"normal": GENES["normal"][:4], "reduce": GENES["reduce"]}))
    with pytest.raises(UserError, match="380 values"):
        sp.decode(np.zeros(3))


def test_cardinality_and_mutation():
    sp = NASNetSpace()
    per_cell = (2 * 3 * 4 * 5 * 6) ** 2 * 13 ** 10
    assert sp.cardinality() == per_cell ** 2
    rng = np.random.default_rng(1)
    a = sp.arch(GENES)
    for _ in range(20):
        m = sp.mutate(a, rng)
        diff = sum(x != y for x, y in zip(sp.decision_values(a), sp.decision_values(m)))
        assert diff == 1


def _cheap_trial(space):
    """Build the trial's network and run it once on a tiny input: the reward is a function of
    the network (fewer parameters is better), so a run exercises build on every trial."""
    def fn(arch_dict, seed):
        arch = Arch.from_dict(arch_dict)
        space.validate(arch)
        torch.manual_seed(seed)
        model = space.build(arch, 3, 1).eval()
        with torch.no_grad():
            y = model(torch.randn(1, 1, 8, 8))
        assert y.shape == (1, 3)
        n = sum(p.numel() for p in model.parameters())
        return {"reward": -float(np.log(n)), "params": n}
    return fn


@pytest.mark.parametrize("space_name", ["nasnet", "nasrl", "nasrl-strided", "nb201-cifar"])
@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_runs_trials_through_the_engine(space_name, strategy, tmp_path):
    space = get_space(space_name)
    if space_name == "nb201-cifar":  # its 15-cell network is the slow part; fewer cells
        from nasforge.spaces.nb201 import NB201Config, NB201Space
        space = NB201Space(NB201Config("nb201-cifar", 32, 3, channels=4, cells_per_stage=1))
    s = create_strategy(strategy, space, seed=0, options={"population": 2, "sample_size": 2}
                        if strategy == "evolution" else None)
    store = TrialStore(tmp_path / "trials.sqlite")
    with LocalExecutor() as ex:
        res = Engine(s, _cheap_trial(space), store, ex,
                     EngineConfig(max_trials=4, progress=False, seed=0)).run()
    assert res.done == 4 and res.failed == 0
    trials = store.trials()
    assert len(trials) == 4
    for t in trials:
        space.validate(t.arch)
    store.close()
