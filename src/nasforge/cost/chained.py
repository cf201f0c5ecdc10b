"""Chained cost estimation over a DAG of blocks with path probabilities (DenseNAS, METHODS §4).

In a densely connected supernet a block's cost only counts if the path runs through it, so the
network cost is not a plain sum. DenseNAS chains it from the tail to the head::

    C̃_i = cost_i + Σ_{j ∈ succ(i)} p_{i→j} · (edge_{i→j} + C̃_j),      network cost = C̃_head

``cost_i`` is what block ``i`` costs whatever its input (its basic layers); ``edge_{i→j}`` is
what the connection ``i → j`` costs (the shape-alignment branch of ``j`` that reads ``i``, the
official code's "head" layer); it defaults to zero. When each block's outgoing probabilities
sum to 1 (a softmax), C̃_head is exactly the expected cost of a path drawn from head to tail
with those probabilities: :func:`expected_cost_brute_force` enumerates every path to check it.

Everything is plain torch, so the result is differentiable in the costs (the op weights inside
them) and in the path probabilities.

Conventions: blocks are numbered in topological order, every edge goes from a lower to a
higher index, the head is block 0 and the tail is the last block — the only block without
successors, so every path from the head ends at the tail.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from nasforge.errors import UserError

Probs = Sequence[torch.Tensor]  # per block: a 1-D tensor over its successors (tail: empty)


@dataclass(frozen=True)
class BlockDAG:
    """The connectivity of the blocks: ``successors[i]`` lists the blocks ``i`` feeds."""

    successors: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        succ = tuple(tuple(int(j) for j in s) for s in self.successors)
        object.__setattr__(self, "successors", succ)
        n = len(succ)
        if n < 2:
            raise UserError(f"a block DAG needs at least a head and a tail, got {n} block(s)")
        for i, s in enumerate(succ):
            if list(s) != sorted(set(s)):
                raise UserError(f"block {i}: successors {list(s)} must be strictly increasing")
            if s and (s[0] <= i or s[-1] >= n):
                raise UserError(f"block {i}: successors {list(s)} must lie in ({i}, {n - 1}]")
            if not s and i != n - 1:
                raise UserError(f"block {i} has no successor; only the tail (block {n - 1}) may "
                                "end a path")
        if succ[-1]:
            raise UserError(f"the tail (block {n - 1}) must have no successors")

    @classmethod
    def from_edges(cls, num_blocks: int, edges: Sequence[tuple[int, int]]) -> BlockDAG:
        succ: list[list[int]] = [[] for _ in range(num_blocks)]
        for i, j in edges:
            if not 0 <= i < num_blocks:
                raise UserError(f"edge ({i}, {j}): block {i} out of range")
            succ[i].append(j)
        return cls(tuple(tuple(sorted(s)) for s in succ))

    @property
    def num_blocks(self) -> int:
        return len(self.successors)

    @property
    def tail(self) -> int:
        return len(self.successors) - 1

    def predecessors(self) -> tuple[tuple[int, ...], ...]:
        pred: list[list[int]] = [[] for _ in self.successors]
        for i, s in enumerate(self.successors):
            for j in s:
                pred[j].append(i)
        return tuple(tuple(p) for p in pred)

    def edges(self) -> list[tuple[int, int]]:
        return [(i, j) for i, s in enumerate(self.successors) for j in s]

    def edge_index(self, i: int, j: int) -> int:
        """Position of ``j`` among the successors of ``i`` (its index in ``path_probs[i]``)."""
        try:
            return self.successors[i].index(j)
        except ValueError:
            raise UserError(f"blocks {i} → {j} are not connected; block {i} feeds "
                            f"{list(self.successors[i])}") from None

    def paths(self, head: int = 0) -> Iterator[tuple[int, ...]]:
        """Every path from ``head`` to the tail (exponentially many: for tests and small DAGs)."""
        stack: list[tuple[int, ...]] = [(head,)]
        while stack:
            p = stack.pop()
            s = self.successors[p[-1]]
            if not s:
                yield p
            for j in reversed(s):
                stack.append(p + (j,))

    def check_path(self, path: Sequence[int]) -> None:
        """Raise UserError unless ``path`` runs from the head (0) to the tail along edges."""
        if not path or path[0] != 0 or path[-1] != self.tail:
            raise UserError(f"path {list(path)} must start at block 0 and end at the tail "
                            f"(block {self.tail})")
        for a, b in zip(path, path[1:]):
            self.edge_index(a, b)


def _check(dag: BlockDAG, node_costs: torch.Tensor, path_probs: Probs,
           edge_costs: Probs | None) -> None:
    n = dag.num_blocks
    if node_costs.shape != (n,):
        raise UserError(f"node_costs has shape {tuple(node_costs.shape)}, expected ({n},)")
    for name, vals in (("path_probs", path_probs), ("edge_costs", edge_costs)):
        if vals is None:
            continue
        if len(vals) != n:
            raise UserError(f"{name} has {len(vals)} entries, expected one per block ({n})")
        for i, (v, s) in enumerate(zip(vals, dag.successors)):
            if tuple(v.shape) != (len(s),):
                raise UserError(f"{name}[{i}] has shape {tuple(v.shape)}; block {i} has "
                                f"{len(s)} successor(s)")


def as_costs(values: torch.Tensor | Sequence[torch.Tensor | float]) -> torch.Tensor:
    """A 1-D cost tensor from a tensor or a list of scalars / 0-d tensors (kept differentiable)."""
    if isinstance(values, torch.Tensor):
        return values
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    ref = tensors[0] if tensors else torch.zeros(())
    dtype = ref.dtype if ref.is_floating_point() else torch.float32
    return torch.stack([(v if isinstance(v, torch.Tensor) else torch.tensor(float(v)))
                        .to(ref.device, dtype).reshape(()) for v in values])


def chained_costs(dag: BlockDAG, node_costs: torch.Tensor | Sequence[torch.Tensor | float],
                  path_probs: Probs, edge_costs: Probs | None = None) -> torch.Tensor:
    """``C̃_i`` for every block (tail to head); see the module docstring for the recursion."""
    c = as_costs(node_costs)
    _check(dag, c, path_probs, edge_costs)
    out: list[torch.Tensor | None] = [None] * dag.num_blocks
    for i in range(dag.num_blocks - 1, -1, -1):
        s = dag.successors[i]
        total = c[i]
        if s:
            downstream = torch.stack([out[j] for j in s])  # type: ignore[misc]
            if edge_costs is not None:
                downstream = downstream + edge_costs[i].to(downstream.dtype)
            total = total + (path_probs[i].to(downstream.dtype) * downstream).sum()
        out[i] = total
    return torch.stack(out)  # type: ignore[arg-type]


def chained_cost(dag: BlockDAG, node_costs: torch.Tensor | Sequence[torch.Tensor | float],
                 path_probs: Probs, edge_costs: Probs | None = None) -> torch.Tensor:
    """The network cost ``C̃_head`` (a 0-d tensor, differentiable)."""
    return chained_costs(dag, node_costs, path_probs, edge_costs)[0]


def path_cost(dag: BlockDAG, path: Sequence[int],
              node_costs: torch.Tensor | Sequence[torch.Tensor | float],
              edge_costs: Probs | None = None) -> torch.Tensor:
    """Cost of one concrete path: its blocks' costs plus its edges' costs."""
    c = as_costs(node_costs)
    total = c[list(path)].sum()
    if edge_costs is not None:
        for a, b in zip(path, path[1:]):
            total = total + edge_costs[a][dag.edge_index(a, b)]
    return total


def path_probability(dag: BlockDAG, path: Sequence[int], path_probs: Probs) -> torch.Tensor:
    """Π p_{a→b} along ``path``."""
    p = torch.ones((), dtype=path_probs[0].dtype, device=path_probs[0].device)
    for a, b in zip(path, path[1:]):
        p = p * path_probs[a][dag.edge_index(a, b)]
    return p


def expected_cost_brute_force(dag: BlockDAG,
                              node_costs: torch.Tensor | Sequence[torch.Tensor | float],
                              path_probs: Probs, edge_costs: Probs | None = None) -> torch.Tensor:
    """Σ_paths P(path) · cost(path) by enumerating every head→tail path (tests, small DAGs)."""
    c = as_costs(node_costs)
    _check(dag, c, path_probs, edge_costs)
    terms = [path_probability(dag, p, path_probs) * path_cost(dag, p, c, edge_costs)
             for p in dag.paths()]
    return torch.stack(terms).sum()
