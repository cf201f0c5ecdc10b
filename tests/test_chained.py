"""Chained cost (DenseNAS): equals the brute-force expectation over paths, differentiable."""

import numpy as np
import pytest
import torch

from nasforge.cost.chained import (
    BlockDAG,
    chained_cost,
    chained_costs,
    expected_cost_brute_force,
    path_cost,
)
from nasforge.errors import UserError


def random_dag(rng: np.random.Generator, n: int, max_out: int) -> BlockDAG:
    """Each block connects to a random non-empty subset of its next ``max_out`` blocks."""
    succ = []
    for i in range(n - 1):
        cand = list(range(i + 1, min(n, i + 1 + max_out)))
        k = int(rng.integers(1, len(cand) + 1))
        succ.append(tuple(sorted(rng.choice(cand, size=k, replace=False).tolist())))
    succ.append(())
    return BlockDAG(tuple(succ))


def random_probs(dag: BlockDAG, g: torch.Generator, dtype=torch.float64):
    return [torch.softmax(torch.randn(len(s), generator=g, dtype=dtype), 0) if s
            else torch.zeros(0, dtype=dtype) for s in dag.successors]


def random_edges(dag: BlockDAG, g: torch.Generator, dtype=torch.float64):
    return [torch.rand(len(s), generator=g, dtype=dtype) * 5 for s in dag.successors]


@pytest.mark.parametrize("seed", range(40))
def test_chained_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    dag = random_dag(rng, int(rng.integers(2, 9)), int(rng.integers(1, 5)))
    costs = torch.rand(dag.num_blocks, generator=g, dtype=torch.float64) * 10
    probs = random_probs(dag, g)
    edges = random_edges(dag, g) if seed % 2 else None
    got = chained_cost(dag, costs, probs, edges)
    want = expected_cost_brute_force(dag, costs, probs, edges)
    torch.testing.assert_close(got, want)
    # every intermediate C̃_i is the expectation of the sub-DAG starting at i
    all_c = chained_costs(dag, costs, probs, edges)
    assert torch.all(all_c[:-1] >= costs[:-1]) and all_c[-1] == costs[-1]


def test_one_hot_probabilities_give_the_path_cost():
    dag = BlockDAG(((1, 2, 3), (2, 3), (3, 4), (4,), ()))
    costs = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0])
    edges = [torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.4, 0.5]), torch.tensor([0.6, 0.7]),
             torch.tensor([0.8]), torch.zeros(0)]
    path = (0, 2, 4)
    probs = [torch.tensor([0.0, 1.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]),
             torch.tensor([1.0]), torch.zeros(0)]
    torch.testing.assert_close(chained_cost(dag, costs, probs, edges),
                               path_cost(dag, path, costs, edges))
    torch.testing.assert_close(path_cost(dag, path, costs, edges), torch.tensor(21.0 + 0.2 + 0.7))


@pytest.mark.parametrize("seed", range(3))
def test_gradcheck(seed):
    rng = np.random.default_rng(100 + seed)
    dag = random_dag(rng, 6, 3)
    g = torch.Generator().manual_seed(seed)
    costs = torch.rand(dag.num_blocks, generator=g, dtype=torch.float64, requires_grad=True)
    logits = [torch.randn(len(s), generator=g, dtype=torch.float64, requires_grad=True)
              for s in dag.successors]
    edges = [e.requires_grad_() for e in random_edges(dag, g)]

    def f(c, *flat):
        k = len(logits)
        probs = [torch.softmax(t, 0) if t.numel() else t for t in flat[:k]]
        return chained_cost(dag, c, probs, list(flat[k:]))

    assert torch.autograd.gradcheck(f, (costs, *logits, *edges))


def test_cost_of_a_list_of_scalars_keeps_gradients():
    dag = BlockDAG(((1, 2), (2,), ()))
    a = torch.tensor(3.0, requires_grad=True)
    probs = [torch.tensor([0.25, 0.75]), torch.tensor([1.0]), torch.zeros(0)]
    c = chained_cost(dag, [a, 2.0, 1.0], probs)
    c.backward()
    assert a.grad == 1.0  # the head is on every path
    torch.testing.assert_close(c, torch.tensor(3.0 + 0.25 * 3.0 + 0.75 * 1.0))


def test_bad_dags_and_shapes_are_refused():
    with pytest.raises(UserError, match="no successor"):
        BlockDAG(((1,), (), ()))
    with pytest.raises(UserError, match="must lie in"):
        BlockDAG(((0,), ()))
    dag = BlockDAG(((1, 2), (2,), ()))
    with pytest.raises(UserError, match="successor"):
        chained_cost(dag, torch.ones(3), [torch.ones(1), torch.ones(1), torch.zeros(0)])
    with pytest.raises(UserError, match="not connected"):
        BlockDAG(((2,), (2,), ())).check_path([0, 1, 2])
    assert sorted(dag.paths()) == [(0, 1, 2), (0, 2)]
