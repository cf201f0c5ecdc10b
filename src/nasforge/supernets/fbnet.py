"""FBNet DNAS supernet (METHODS §1): each searchable layer is a Gumbel-weighted mixed op.

The relaxation sample (an L×K weight matrix) is passed to ``forward`` explicitly, so the same
sample gives the output *and* the expected latency ``LAT(a) = Σ_l Σ_i m_{l,i} · LAT(b_{l,i})``.
``hard=True`` (single path) runs only the chosen block per layer with straight-through weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.arch import Arch
from nasforge.blocks import ConvBNAct
from nasforge.cost.model import CostModel
from nasforge.cost.targets import Move
from nasforge.models.fbnet import FBNetModel, make_block
from nasforge.spaces.fbnet import FBNetSpace
from nasforge.supernets.base import Supernet
from nasforge.supernets.batched import weighted_sum
from nasforge.supernets.gumbel import gumbel_softmax


class MixedOp(nn.Module):
    """Σ_i m_i · b_i(x); with a one-hot straight-through ``m`` only the chosen block runs.
    ``batched``: the candidates sharing ``x`` run batched (:mod:`nasforge.supernets.batched`,
    the same sum)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, m: torch.Tensor, index: int | None = None,
                batched: bool = False) -> torch.Tensor:
        return weighted_sum(self.blocks, x, m, None if index is None else (index,), batched)


class FBNetSupernet(Supernet):
    """Supernet over an :class:`FBNetSpace`; ``cost_table`` is L×K (µs from the LUT, or MACs)."""

    #: NHWC on the CPU too unless the loop says otherwise (1.28× less CPU time per step at
    #: 22×9, 32², batch 32: docs/supernet_speed.md)
    cpu_channels_last = True

    def __init__(self, space: FBNetSpace, num_classes: int, in_channels: int,
                 cost_table: torch.Tensor) -> None:
        super().__init__()
        sk = space.skeleton
        self.space = space
        self.stem = ConvBNAct(in_channels, sk.stem_channels, 3, sk.stem_stride)
        self.layers = nn.ModuleList(
            MixedOp([make_block(c, s.cin, s.cout, s.stride) for c in space.candidates])
            for s in space.specs
        )
        self.head = ConvBNAct(sk.stages[-1][0], sk.head_channels, 1)
        self.classifier = nn.Linear(sk.head_channels, num_classes)
        shape = (space.num_layers, len(space.candidates))
        if tuple(cost_table.shape) != shape:
            raise ValueError(f"cost table has shape {tuple(cost_table.shape)}, expected {shape}")
        self.theta = nn.Parameter(torch.zeros(shape))
        self.register_buffer("cost_table", cost_table.float().clone())
        self.register_buffer("fixed_cost", torch.zeros(()))
        self._tables: Any = None
        #: run each layer's candidates batched (the same sum; False: one forward per block)
        self.batched = True

    @classmethod
    def from_cost_model(cls, space: FBNetSpace, cost_model: CostModel) -> FBNetSupernet:
        """The supernet whose expected cost uses ``cost_model``'s value of every candidate."""
        from nasforge.spaces.fbnet import cost_tables

        cm = cost_model
        tables, _ = cost_tables(space, cm.num_classes, cm.in_channels)
        m = torch.tensor([[cm.unit_cost(k) for k in row] for row in tables.keys])
        net = cls(space, cm.num_classes, cm.in_channels, m)
        net.fixed_cost.fill_(sum(cm.unit_cost(k) for k in tables.fixed_keys) + cm.fixed_cost())
        net._tables = tables
        return net

    def counts(self, arch: Arch) -> tuple[int, int]:
        """Analytic (MACs, params) of ``arch`` from the per-candidate tables."""
        blocks = list(arch.genes)
        return self._tables.arch_macs(blocks), self._tables.arch_params(blocks)

    # -- parameter groups (explicit, never by name substring) --------------------------------
    def arch_parameters(self) -> Iterator[nn.Parameter]:
        yield self.theta

    # -- relaxation ---------------------------------------------------------------------------
    def sample_relaxation(self, generator: torch.Generator | None, tau: float,
                          hard: bool = False,
                          phase: str = "weight") -> tuple[torch.Tensor, list[int] | None]:
        """Gumbel weights m (L×K); in hard mode also the chosen indices (one small host copy
        per step — the price of running a single path)."""
        m = gumbel_softmax(self.theta, tau, generator, hard=hard)
        return m, (m.detach().argmax(-1).tolist() if hard else None)

    def one_hot(self, arch: Arch) -> tuple[torch.Tensor, None]:
        """The relaxation that selects exactly ``arch`` (for equivalence checks)."""
        m = torch.zeros_like(self.theta)
        for li, b in enumerate(arch.genes):
            m[li, self.space.candidates.index(b)] = 1.0
        return m, None

    def forward(self, x: torch.Tensor,
                sample: tuple[torch.Tensor, list[int] | None]) -> torch.Tensor:
        m, indices = sample
        x = self.stem(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, m[i], None if indices is None else indices[i], self.batched)
        x = self.head(x).mean((2, 3))
        return self.classifier(x)

    def expected_cost(self, sample: tuple[torch.Tensor, list[int] | None]) -> torch.Tensor:
        return self.fixed_cost + (sample[0] * self.cost_table).sum()

    # -- derivation ---------------------------------------------------------------------------
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.theta.detach().float(), dim=-1)

    def derive(self) -> Arch:
        idx = self.theta.detach().argmax(-1).tolist()
        return self.space.arch([self.space.candidates[i] for i in idx])

    def arch_state(self) -> dict[str, Any]:
        return {"p_theta": self.probabilities().cpu().tolist()}

    def probability_rows(self) -> list[torch.Tensor]:
        """One row per searchable layer (its blocks)."""
        return list(self.probabilities())

    def moves(self, arch: Arch) -> Iterable[Move]:
        """Every single-layer block change, with its loss of log P_θ."""
        logp = torch.log_softmax(self.theta.detach().float().cpu(), -1).numpy()
        blocks = list(arch.genes)
        cands = self.space.candidates
        for li, b in enumerate(blocks):
            ci = cands.index(b)
            for cj, c in enumerate(cands):
                if cj != ci:
                    yield (self.space.arch(blocks[:li] + [c] + blocks[li + 1:]),
                           float(logp[li, ci] - logp[li, cj]))

    def max_repair_steps(self, arch: Arch) -> int:
        return 10 * len(arch.genes)

    def sample(self, k: int, rng: np.random.Generator) -> list[Arch]:
        """K architectures drawn from P_θ(a) = Π_l softmax(θ_l)."""
        p = self.probabilities().cpu().numpy().astype(np.float64)
        out = []
        for _ in range(k):
            idx = [int(rng.choice(p.shape[1], p=row / row.sum())) for row in p]
            out.append(self.space.arch([self.space.candidates[i] for i in idx]))
        return out

    def extract(self, arch: Arch) -> FBNetModel:
        """The standalone model of ``arch`` carrying this supernet's weights."""
        model = self.space.build(arch, self.classifier.out_features, self.stem[0].in_channels)
        state = {}
        for k, v in self.state_dict().items():
            if k.startswith(("stem.", "head.", "classifier.")):
                state[k] = v
        for li, b in enumerate(arch.genes):
            ci = self.space.candidates.index(b)
            prefix = f"layers.{li}.blocks.{ci}."
            for k, v in self.state_dict().items():
                if k.startswith(prefix):
                    state[f"layers.{li}." + k[len(prefix):]] = v
        model.load_state_dict(state)
        return model
