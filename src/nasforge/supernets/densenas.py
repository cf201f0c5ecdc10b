"""DenseNAS supernet (METHODS §4): softmax-weighted ops, path probabilities, chained cost.

Architecture parameters (all explicit, see :meth:`DenseSupernet.arch_parameters`):

- ``alpha_align[j-1]`` (preds(j) × 6): the op of each shape-alignment branch of block ``j``;
- ``alpha_layers[j-1]`` (layers(j) × 7): the op of each basic layer (``skip`` drops it);
- ``beta[i]`` (succ(i)): block ``i``'s outgoing connections; softmax → ``p_{i→j}``.

Block ``j``'s input is ``Σ_i p_{i→j} · align_{i→j}(x_i)``; each op slot is ``Σ_o w_o · op_o(x)``
with ``w = softmax(α / τ)`` (the official code: plain softmax, τ = 1, no Gumbel noise). The
expected cost is the chained estimate (:mod:`nasforge.cost.chained`) with the alignment
branches as edge costs and the basic layers as block costs, from the same relaxation that
produced the output. Derivation: argmax op per slot, Viterbi over ``p`` for the path.

**Op sampling** (the official code's speed-up, :meth:`DenseSupernet.sampling`): with ``k > 0``
each slot draws ``k`` ops from ``softmax(α)`` (without replacement) and only those run, weighted
by the softmax over the drawn ops; all alignment branches still run, weighted by the full path
probabilities. After an architecture step on ``k`` drawn ops, :meth:`rescale_sampled_` shifts
the drawn ``α`` so their total probability mass is what it was before the step — the ops not
drawn keep their probabilities (as in the official code). ``k = 0`` is the full weighted sum of
the paper's equations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.arch import Arch, thaw
from nasforge.cost.chained import chained_cost
from nasforge.cost.model import CostModel
from nasforge.cost.targets import Move
from nasforge.errors import UserError
from nasforge.models.densenas import DenseModel, make_op, make_stem, make_tail_align
from nasforge.spaces.dense import ALIGN_OPS, LAYER_OPS, DenseCosts, DenseSpace
from nasforge.supernets.base import Supernet
from nasforge.supernets.batched import weighted_sum
from nasforge.supernets.fbnet import MixedOp
from nasforge.supernets.viterbi import viterbi_path


@dataclass
class DenseRelaxation:
    """One relaxation: op weights per slot and path probabilities per block (passed to both
    ``forward`` and ``expected_cost``, so the cost is that of the network that ran)."""

    align: list[torch.Tensor]  # per routing block j ≥ 1: (preds(j), 6)
    layers: list[torch.Tensor | None]  # per routing block j ≥ 1: (layers(j), 7) or None
    paths: list[torch.Tensor]  # per DAG node (tail: empty)
    # op sampling: per α tensor (arch_parameters() order, betas excluded) the drawn-op mask,
    # and per slot the drawn op indices (host lists, so only those ops run); None: all ops
    masks: list[torch.Tensor] | None = None
    align_active: list[list[list[int]]] | None = None
    layer_active: list[list[list[int]] | None] | None = None


def _mixed(op: MixedOp, x: torch.Tensor, w: torch.Tensor, active: list[int] | None,
           batched: bool) -> torch.Tensor:
    """The slot's weighted sum over its ``active`` (drawn) ops, every op when None."""
    return weighted_sum(op.blocks, x, w, active, batched)


class RoutingBlock(nn.Module):
    """Alignment branches (one mixed op per predecessor) + basic layers (mixed ops)."""

    def __init__(self, space: DenseSpace, j: int) -> None:
        super().__init__()
        sp = space.spec
        w = sp.width(j)
        self.align = nn.ModuleList(
            MixedOp([make_op(o, sp.width(i), w, sp.stride(i, j)) for o in ALIGN_OPS])
            for i in space.preds[j])
        self.layers = nn.ModuleList(
            MixedOp([make_op(o, w, w, 1) for o in LAYER_OPS]) for _ in range(sp.layers[j]))


class DenseSupernet(Supernet):
    """Supernet over a :class:`DenseSpace`; ``costs`` + ``cost`` pick the per-op cost table
    (``flops``: kMACs; ``latency``: corrected LUT µs, ``lut`` required)."""

    uses_tau = False  # plain softmax at :attr:`tau` = 1: the loop's temperature is never read
    #: NHWC on the CPU too unless the loop says otherwise (1.3× less CPU time per step at 224²,
    #: batch 4, official sampling: docs/supernet_speed.md)
    cpu_channels_last = True

    def __init__(self, space: DenseSpace, num_classes: int, in_channels: int,
                 costs: DenseCosts | None = None, cost: str = "flops", lut=None,  # noqa: ANN001
                 init_std: float = 1e-3) -> None:
        super().__init__()
        sp = space.spec
        self.space = space
        self.dag = space.dag
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.stem = make_stem(sp, in_channels)
        self.blocks = nn.ModuleList(RoutingBlock(space, j) for j in range(1, sp.num_blocks))
        self.tail = nn.ModuleList(make_tail_align(sp, i) for i in space.preds[space.tail])
        self.classifier = nn.Linear(sp.last_channels, num_classes)
        # architecture parameters: small random init as in the official code
        self.alpha_align = nn.ParameterList(
            nn.Parameter(init_std * torch.randn(len(space.preds[j]), len(ALIGN_OPS)))
            for j in range(1, sp.num_blocks))
        self.layer_slots = [j for j in range(1, sp.num_blocks) if sp.layers[j] > 0]
        self.alpha_layers = nn.ParameterList(
            nn.Parameter(init_std * torch.randn(sp.layers[j], len(LAYER_OPS)))
            for j in self.layer_slots)
        self.beta = nn.ParameterList(
            nn.Parameter(init_std * torch.randn(len(s))) for s in self.dag.successors[:-1])
        # (i, position of j in succ(i)) for every input of block j, in preds(j) order
        self.in_edges = [[(i, self.dag.edge_index(i, j)) for i in space.preds[j]]
                         for j in range(self.dag.num_blocks)]
        self.tau = 1.0
        self.op_sample = 0  # ops drawn per slot; 0 = all (set through sampling())
        self.weight_ops = self.arch_ops = 0  # per-phase op sampling (set_op_sampling)
        #: each slot's ops run batched (the same sum; False: one forward per op)
        self.batched = True
        self._costs = costs or space.costs(num_classes, in_channels)
        self._init_costs(self._costs, cost, lut)

    @classmethod
    def from_cost_model(cls, space: DenseSpace, cost_model: CostModel,
                        init_std: float = 1e-3) -> DenseSupernet:
        """The supernet whose op costs are ``cost_model``'s (its LUT, or counted kMACs)."""
        cm = cost_model
        return cls(space, cm.num_classes, cm.in_channels, cost=cm.kind, lut=cm.lut,
                   init_std=init_std)

    def counts(self, arch: Arch) -> tuple[int, int]:
        """Analytic (MACs, params) of ``arch`` from the per-op cost items."""
        return self._costs.arch_macs(arch), self._costs.arch_params(arch)

    def set_op_sampling(self, weight_ops: int, arch_ops: int) -> None:
        """Ops drawn per slot in weight and architecture steps (official code: 1 and 2;
        0 = every op, the full weighted sum)."""
        if weight_ops < 0 or arch_ops < 0 or arch_ops == 1:
            raise UserError(f"op sampling must be 0 (all ops) or ≥ 1 for weights and ≠ 1 for "
                            f"architecture steps (one drawn op has no gradient); got "
                            f"{weight_ops}, {arch_ops}")
        self.weight_ops, self.arch_ops = int(weight_ops), int(arch_ops)

    # -- costs ------------------------------------------------------------------------------
    def _init_costs(self, costs: DenseCosts, cost: str, lut) -> None:  # noqa: ANN001
        val = costs.value_fn(cost, lut)
        sp = self.space.spec
        for j in range(1, sp.num_blocks):
            self.register_buffer(f"align_cost_{j}", torch.tensor(
                [[val(k) for k in row] for row in costs.align[j]], dtype=torch.float32))
            if sp.layers[j]:
                self.register_buffer(f"layer_cost_{j}", torch.tensor(
                    [[0.0 if k is None else val(k) for k in row] for row in costs.layers[j]],
                    dtype=torch.float32))
        self.register_buffer("tail_cost", torch.tensor([val(k) for k in costs.tail]))
        self.register_buffer("head_cost", torch.tensor(
            val(costs.head) + costs.fixed_overhead(cost, lut)))
        self.register_buffer("end_cost", torch.tensor(val(costs.end)))
        # flat edge-cost vector (alignment branches in block order, then the tail's) → the
        # per-source rows chained_cost wants
        flat = {}
        pos = 0
        for j in range(1, self.dag.num_blocks):
            for i, k in self.in_edges[j]:
                flat[(i, k)] = pos
                pos += 1
        for i, s in enumerate(self.dag.successors[:-1]):
            self.register_buffer(f"edge_index_{i}", torch.tensor(
                [flat[(i, k)] for k in range(len(s))], dtype=torch.long), persistent=False)

    # -- parameter groups (explicit, never by name substring) --------------------------------
    def arch_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.alpha_align
        yield from self.alpha_layers
        yield from self.beta

    # -- relaxation ---------------------------------------------------------------------------
    @contextmanager
    def sampling(self, k: int) -> Iterator[None]:
        """Within the block, relaxations draw ``k`` ops per slot (0: all ops)."""
        old = self.op_sample
        self.op_sample = int(k)
        try:
            yield
        finally:
            self.op_sample = old

    def alpha_parameters(self) -> list[nn.Parameter]:
        """The op parameters (align rows, then layer rows), without the path parameters."""
        return [*self.alpha_align, *self.alpha_layers]

    def sample_relaxation(self, generator: torch.Generator | None = None, tau: float = 1.0,
                          hard: bool = False, phase: str | None = None) -> DenseRelaxation:
        """Softmax weights (DenseNAS has no Gumbel noise; the loop's τ is ignored, the
        temperature is :attr:`tau`). With op sampling on, ``generator`` (on the parameters'
        device) draws the ops — and the drawn indices come to the host once per call.
        ``phase`` ``weight``/``arch`` draws :attr:`weight_ops`/:attr:`arch_ops` ops; no phase
        draws :attr:`op_sample` (set by :meth:`sampling`)."""
        if hard:
            raise UserError("DenseNAS has no single-path (hard) mode; use op sampling")
        t = self.tau
        alphas = self.alpha_parameters()
        k = {"weight": self.weight_ops, "arch": self.arch_ops}.get(phase or "", self.op_sample)
        masks = None
        if 0 < k < len(ALIGN_OPS):
            masks = []
            for a in alphas:
                p = torch.softmax(a.detach().float() / t, -1)
                idx = torch.multinomial(p, min(k, a.shape[1]), replacement=False,
                                        generator=generator)
                masks.append(torch.zeros_like(a, dtype=torch.bool).scatter_(1, idx, True))
            weights = [torch.softmax((a / t).masked_fill(~m, float("-inf")), -1)
                       for a, m in zip(alphas, masks)]
            drawn = torch.cat([m.flatten() for m in masks]).cpu().tolist()  # the one sync
            actives, pos = [], 0
            for m in masks:
                r, c = m.shape
                flat = drawn[pos:pos + r * c]
                actives.append([[o for o in range(c) if flat[row * c + o]] for row in range(r)])
                pos += r * c
        else:
            weights = [torch.softmax(a / t, -1) for a in alphas]
        n_align = len(self.alpha_align)
        layers: list[torch.Tensor | None] = [None] * n_align
        layer_active: list[list[list[int]] | None] = [None] * n_align
        for s, j in enumerate(self.layer_slots):
            layers[j - 1] = weights[n_align + s]
            if masks is not None:
                layer_active[j - 1] = actives[n_align + s]
        empty = self.beta[0].new_zeros(0)
        return DenseRelaxation(
            align=weights[:n_align], layers=layers,
            paths=[torch.softmax(b / t, -1) for b in self.beta] + [empty], masks=masks,
            align_active=actives[:n_align] if masks is not None else None,
            layer_active=layer_active if masks is not None else None)

    def snapshot_arch(self) -> list[torch.Tensor] | None:
        return [a.detach().clone() for a in self.alpha_parameters()] if self.arch_ops else None

    def after_arch_step(self, sample: DenseRelaxation, before: Any) -> None:
        if before is not None:
            self.rescale_sampled_(before, sample)

    @torch.no_grad()
    def rescale_sampled_(self, before: list[torch.Tensor], rel: DenseRelaxation) -> None:
        """After a step on drawn ops: shift them so their log-sum-exp is what it was, keeping
        the probabilities of the ops that were not drawn (official code)."""
        if rel.masks is None:
            return
        for a, old, m in zip(self.alpha_parameters(), before, rel.masks):
            inf = float("-inf")
            shift = (old.masked_fill(~m, inf).logsumexp(-1)
                     - a.detach().masked_fill(~m, inf).logsumexp(-1))
            a.add_(m * shift[:, None])

    def one_hot(self, arch: Arch) -> DenseRelaxation:
        """The relaxation that selects exactly ``arch``: one-hot ops, and path probability 1 on
        its edges and 0 everywhere else (blocks off the path then feed nothing)."""
        self.space.validate(arch)
        rel = self.sample_relaxation()
        rel = DenseRelaxation([torch.zeros_like(a) for a in rel.align],
                              [None if m is None else torch.zeros_like(m) for m in rel.layers],
                              [torch.zeros_like(p) for p in rel.paths])
        path = self.space.path(arch)
        for i, j in zip(path, path[1:]):
            rel.paths[i][self.dag.edge_index(i, j)] = 1.0
        for i, b in zip(path, arch.genes["blocks"]):
            j = b["id"]
            rel.align[j - 1][self.space.preds[j].index(i), ALIGN_OPS.index(b["align"])] = 1.0
            for li, o in enumerate(b["layers"]):
                rel.layers[j - 1][li, LAYER_OPS.index(o)] = 1.0  # type: ignore[index]
        return rel

    def forward(self, x: torch.Tensor, sample: DenseRelaxation | None = None) -> torch.Tensor:
        rel = sample if sample is not None else self.sample_relaxation()
        outs = [self.stem(x)]
        for j, blk in enumerate(self.blocks, start=1):
            y: torch.Tensor | None = None
            act = rel.align_active[j - 1] if rel.align_active is not None else None
            for b, (i, k) in enumerate(self.in_edges[j]):
                if self.batched:  # p_{i→j} folded into the op weights (the same sum)
                    t = _mixed(blk.align[b], outs[i], rel.align[j - 1][b] * rel.paths[i][k],
                               None if act is None else act[b], True)
                else:
                    t = _mixed(blk.align[b], outs[i], rel.align[j - 1][b],
                               None if act is None else act[b], False) * rel.paths[i][k]
                y = t if y is None else y + t
            m = rel.layers[j - 1]
            lact = rel.layer_active[j - 1] if rel.layer_active is not None else None
            for li, layer in enumerate(blk.layers):
                y = _mixed(layer, y, m[li], None if lact is None else lact[li],  # type: ignore
                           self.batched)
            outs.append(y)  # type: ignore[arg-type]
        y = None
        for b, (i, k) in enumerate(self.in_edges[self.dag.tail]):
            t = self.tail[b](outs[i]) * rel.paths[i][k]
            y = t if y is None else y + t
        return self.classifier(y.mean((2, 3)))  # type: ignore[union-attr]

    def expected_cost(self, sample: DenseRelaxation) -> torch.Tensor:
        """Chained cost: block cost = its layers' expected cost; edge cost = the expected cost
        of the alignment branch it feeds (the tail's: its 1×1 conv)."""
        n = self.dag.num_blocks
        node = [self.head_cost]
        edge_parts = []
        for j in range(1, n - 1):
            m = sample.layers[j - 1]
            node.append((m * getattr(self, f"layer_cost_{j}")).sum() if m is not None
                        else self.end_cost.new_zeros(()))
            edge_parts.append((sample.align[j - 1] * getattr(self, f"align_cost_{j}")).sum(-1))
        node.append(self.end_cost)
        flat = torch.cat(edge_parts + [self.tail_cost])
        edges = [flat[getattr(self, f"edge_index_{i}")] for i in range(n - 1)]
        edges.append(flat.new_zeros(0))
        return chained_cost(self.dag, torch.stack(node), sample.paths, edges)

    # -- derivation ---------------------------------------------------------------------------
    @torch.no_grad()
    def probabilities(self) -> dict[str, list]:
        rel = self.sample_relaxation()
        return {"paths": [p.float().cpu().tolist() for p in rel.paths[:-1]],
                "align": [a.float().cpu().tolist() for a in rel.align],
                "layers": [None if m is None else m.float().cpu().tolist() for m in rel.layers]}

    def arch_for_path(self, path: list[int], rel: DenseRelaxation,
                      pick) -> Arch:  # noqa: ANN001 - pick(weights row) -> index
        """The architecture on ``path`` with the op ``pick(weights)`` chooses per slot."""
        blocks = []
        for i, j in zip(path, path[1:-1]):
            a = rel.align[j - 1][self.space.preds[j].index(i)]
            m = rel.layers[j - 1]
            blocks.append({"id": j, "align": ALIGN_OPS[pick(a)],
                           "layers": [] if m is None else [LAYER_OPS[pick(r)] for r in m]})
        return self.space.arch(blocks)

    @torch.no_grad()
    def derive(self) -> Arch:
        """Argmax op per slot (skip drops the layer); Viterbi path over the path probabilities."""
        rel = self.sample_relaxation()
        path, _ = viterbi_path(self.dag, rel.paths)
        return self.arch_for_path(path, rel, lambda w: int(w.argmax()))

    @torch.no_grad()
    def path_log_prob(self, arch: Arch) -> float:
        rel = self.sample_relaxation()
        path = self.space.path(arch)
        return float(sum(torch.log(rel.paths[i][self.dag.edge_index(i, j)])
                         for i, j in zip(path, path[1:])))

    def arch_state(self) -> dict[str, Any]:
        return {"p_paths": self.probabilities()["paths"], "argmax": thaw(self.derive().genes)}

    @torch.no_grad()
    def probability_rows(self) -> list[torch.Tensor]:
        """Op rows (every alignment branch and basic layer, full softmax) and path rows (each
        block's outgoing connections; a block with one successor decides nothing)."""
        rel = self.sample_relaxation()
        rows = [r for a in rel.align for r in a]
        rows += [r for m in rel.layers if m is not None for r in m]
        return rows + list(rel.paths[:-1])

    def moves(self, arch: Arch) -> Iterable[Move]:
        """Every single op change on ``arch``'s path (alignment branch or basic layer), with
        its loss of log-probability under the op softmax."""
        probs = self.probabilities()
        space = self.space
        path = space.path(arch)
        blocks = [dict(b, layers=list(b["layers"])) for b in arch.genes["blocks"]]

        def logp(w: list[float], o: int) -> float:
            return math.log(max(w[o], 1e-12))

        for k, (i, b) in enumerate(zip(path, blocks)):
            j = b["id"]
            w_align = probs["align"][j - 1][space.preds[j].index(i)]
            slots = [("align", None, ALIGN_OPS, w_align)]
            slots += [("layers", li, LAYER_OPS, probs["layers"][j - 1][li])
                      for li in range(len(b["layers"]))]
            for field, li, ops, w in slots:
                now = ops.index(b[field] if li is None else b[field][li])
                for o in range(len(ops)):
                    if o == now:
                        continue
                    trial = [dict(x, layers=list(x["layers"])) for x in blocks]
                    if li is None:
                        trial[k]["align"] = ops[o]
                    else:
                        trial[k]["layers"][li] = ops[o]
                    yield space.arch(trial), logp(w, now) - logp(w, o)

    def max_repair_steps(self, arch: Arch) -> int:
        return 8 * sum(1 + len(b["layers"]) for b in arch.genes["blocks"]) + 1

    def repair_starts(self, arch: Arch, max_paths: int = 20000) -> Iterator[Arch]:
        """``arch``, then the argmax ops of every other path, most probable path first."""
        yield arch
        paths = []
        for p in self.dag.paths():
            paths.append(p)
            if len(paths) > max_paths:
                raise UserError(f"the derived architecture misses the target and the space has "
                                f"over {max_paths} paths to try; relax --latency-ms/--flops/"
                                "--params")
        with torch.no_grad():
            rel = self.sample_relaxation()
        scored = sorted(paths, key=lambda p: -sum(
            math.log(float(rel.paths[i][self.dag.edge_index(i, j)])) for i, j in zip(p, p[1:])))
        for p in scored:
            yield self.arch_for_path(list(p), rel, lambda w: int(w.argmax()))

    @torch.no_grad()
    def sample(self, k: int, rng: np.random.Generator) -> list[Arch]:
        """K architectures: a path walked by the path probabilities, ops by their softmax."""
        rel = self.sample_relaxation()
        probs = [p.double().cpu().numpy() for p in rel.paths]

        def pick(w: torch.Tensor) -> int:
            p = w.double().cpu().numpy()
            return int(rng.choice(len(p), p=p / p.sum()))

        out = []
        for _ in range(k):
            path = [0]
            while path[-1] != self.dag.tail:
                p = probs[path[-1]]
                path.append(self.dag.successors[path[-1]][int(rng.choice(len(p),
                                                                         p=p / p.sum()))])
            out.append(self.arch_for_path(path, rel, pick))
        return out

    def extract(self, arch: Arch) -> DenseModel:
        """The standalone network of ``arch`` carrying this supernet's weights."""
        model = self.space.build(arch, self.num_classes, self.in_channels)
        model.stem.load_state_dict(self.stem.state_dict())
        path = self.space.path(arch)
        for i, b, dst in zip(path, arch.genes["blocks"], model.blocks):
            j = b["id"]
            src = self.blocks[j - 1]
            align = src.align[self.space.preds[j].index(i)].blocks[ALIGN_OPS.index(b["align"])]
            dst.align.load_state_dict(align.state_dict())
            kept = [src.layers[li].blocks[LAYER_OPS.index(o)] for li, o in enumerate(b["layers"])
                    if o != "skip"]
            for s, d in zip(kept, dst.layers):
                d.load_state_dict(s.state_dict())
        model.tail.load_state_dict(
            self.tail[self.space.preds[self.dag.tail].index(path[-2])].state_dict())
        model.classifier.load_state_dict(self.classifier.state_dict())
        return model
