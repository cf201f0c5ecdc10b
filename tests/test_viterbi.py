"""Viterbi path derivation equals brute force over every path."""

import numpy as np
import pytest
import torch

from nasforge.cost.chained import BlockDAG
from nasforge.supernets.viterbi import best_path_brute_force, viterbi_path


def random_dag(rng: np.random.Generator, n: int, max_out: int) -> BlockDAG:
    succ = []
    for i in range(n - 1):
        cand = list(range(i + 1, min(n, i + 1 + max_out)))
        k = int(rng.integers(1, len(cand) + 1))
        succ.append(tuple(sorted(rng.choice(cand, size=k, replace=False).tolist())))
    return BlockDAG((*succ, ()))


def random_probs(dag: BlockDAG, g: torch.Generator) -> list[torch.Tensor]:
    # a wide spread of logits, so some paths are much likelier than others
    return [torch.softmax(3 * torch.randn(len(s), generator=g, dtype=torch.float64), 0)
            for s in dag.successors]


@pytest.mark.parametrize("seed", range(100))
def test_viterbi_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    dag = random_dag(rng, int(rng.integers(2, 11)), int(rng.integers(1, 5)))
    probs = random_probs(dag, g)
    path, logp = viterbi_path(dag, probs)
    bf_path, bf_logp = best_path_brute_force(dag, probs)
    assert path == bf_path
    assert logp == pytest.approx(bf_logp, abs=1e-12)
    dag.check_path(path)


def test_viterbi_follows_a_dominant_path_not_the_greedy_one():
    # greedy from the head takes 0→1 (0.6), but 0→2→3 has product 0.4·1.0 > 0.6·0.5
    dag = BlockDAG(((1, 2), (2, 3), (3,), ()))
    probs = [[0.6, 0.4], [0.5, 0.5], [1.0], []]
    assert viterbi_path(dag, probs)[0] == [0, 2, 3]


def test_zero_probabilities_never_win():
    dag = BlockDAG(((1, 2), (2,), ()))
    assert viterbi_path(dag, [[0.0, 1.0], [1.0], []])[0] == [0, 2]
