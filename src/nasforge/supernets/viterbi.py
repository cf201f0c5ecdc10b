"""Viterbi derivation of the DenseNAS path (METHODS §4).

After the search each block has a probability per outgoing connection; the derived network is
the head→tail path with the highest product of those probabilities. On a DAG in topological
order that is one forward dynamic programme (best product into each block, then backtrack from
the tail), done in log space so long paths of small probabilities do not underflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from nasforge.cost.chained import BlockDAG

ProbRows = Sequence[torch.Tensor | Sequence[float]]


def _log_rows(dag: BlockDAG, path_probs: ProbRows) -> list[list[float]]:
    rows = []
    for i, (p, s) in enumerate(zip(path_probs, dag.successors)):
        vals = (p.detach().double().cpu().tolist() if isinstance(p, torch.Tensor)
                else [float(v) for v in p])
        if len(vals) != len(s):
            raise ValueError(f"path_probs[{i}] has {len(vals)} entries; block {i} has "
                             f"{len(s)} successor(s)")
        rows.append([math.log(v) if v > 0 else -math.inf for v in vals])
    if len(rows) != dag.num_blocks:
        raise ValueError(f"path_probs has {len(rows)} rows, expected {dag.num_blocks}")
    return rows


def viterbi_path(dag: BlockDAG, path_probs: ProbRows) -> tuple[list[int], float]:
    """(the most probable head→tail path, its log-probability). Ties go to the lower block."""
    logp = _log_rows(dag, path_probs)
    n = dag.num_blocks
    best = [-math.inf] * n
    back = [-1] * n
    best[0] = 0.0
    for i in range(n):  # topological order: every predecessor of i is settled before i
        if best[i] == -math.inf:
            continue
        for k, j in enumerate(dag.successors[i]):
            v = best[i] + logp[i][k]
            if v > best[j]:
                best[j], back[j] = v, i
    if back[dag.tail] < 0 and dag.tail != 0:
        raise ValueError("no head→tail path has a non-zero probability")
    path = [dag.tail]
    while path[-1] != 0:
        path.append(back[path[-1]])
    return path[::-1], best[dag.tail]


def best_path_brute_force(dag: BlockDAG, path_probs: ProbRows) -> tuple[list[int], float]:
    """The same answer by scoring every path (tests, small DAGs)."""
    logp = _log_rows(dag, path_probs)
    best_p: tuple[int, ...] = ()
    best_v = -math.inf
    for p in dag.paths():
        v = sum(logp[a][dag.successors[a].index(b)] for a, b in zip(p, p[1:]))
        if v > best_v:
            best_p, best_v = p, v
    return list(best_p), best_v
