"""The one ``Supernet`` protocol every differentiable relaxation implements.

The bilevel optimiser (:mod:`nasforge.strategies.bilevel`) and the generic differentiable
runner (:mod:`nasforge.methods.differentiable`) only ever talk to this interface, so a new
relaxation (DARTS mixed ops, …) plugs in without a copied loop:

- parameter groups: ``weight_parameters()`` (w, trained on the train split) and
  ``arch_parameters()`` (θ/α, trained on the val split), disjoint and together every parameter;
- ``sample_relaxation(generator, tau, hard, phase)`` draws one relaxation (Gumbel weights,
  drawn ops, …) and ``forward(x, sample)`` / ``expected_cost(sample)`` read the *same* draw, so
  the output and the cost term always describe one architecture distribution;
- ``after_arch_step(sample, before)``: a hook after each θ update (DenseNAS rescales the drawn
  ops' α), with ``before = snapshot_arch()`` taken before it;
- derivation: ``derive()`` (the method's rule: argmax, Viterbi, …), ``sample(k, rng)`` (K
  architectures from the learned distribution), ``one_hot(arch)`` (the relaxation that selects
  exactly ``arch``: forward at it equals ``extract(arch)``), ``extract(arch)``;
- ``arch_state()``: the JSON the history and reports plot (probabilities per decision);
- ``probability_rows()``: one probability vector per decision (FBNet: a layer's blocks;
  FBNetV2: a resolution/width/expansion; DenseNAS: an op slot or a block's outgoing paths),
  from which :meth:`Supernet.concentration` says how far the search has decided;
- constraint repair: ``moves(arch)`` lists one-decision neighbours with their log-probability
  loss, ``repair_starts(arch)`` the starting points to try (the shared
  :func:`nasforge.cost.targets.repair` does the rest).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.arch import Arch
from nasforge.cost.model import CostModel
from nasforge.cost.targets import Move, Targets, grow, repair


def concentration(rows: Iterable[torch.Tensor]) -> dict[str, float]:
    """How decided a distribution is: the mean over decisions of the largest probability
    (1/K when uniform, 1 when one-hot) and the mean entropy in nats (log K uniform, 0 one-hot).

    Rows with fewer than two options are no decision and are left out; with none at all the
    distribution is trivially decided (1, 0)."""
    pmax, ent = [], []
    for r in rows:
        p = torch.as_tensor(r, dtype=torch.float64).detach().cpu().flatten()
        if p.numel() < 2:
            continue
        p = p / p.sum()
        pmax.append(float(p.max()))
        ent.append(float(-(p * torch.log(p.clamp_min(1e-300))).sum()))
    if not pmax:
        return {"max_prob": 1.0, "entropy": 0.0}
    return {"max_prob": sum(pmax) / len(pmax), "entropy": sum(ent) / len(ent)}


class Supernet(nn.Module):
    """Base class of the differentiable relaxations (see the module docstring)."""

    #: NHWC on the CPU as well when the loop's ``channels_last`` is None (set by the supernets
    #: measured faster that way; on CUDA the loop always runs NHWC)
    cpu_channels_last: bool = False

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        for p in self.parameters():
            if id(p) not in arch:
                yield p

    @abstractmethod
    def arch_parameters(self) -> Iterator[nn.Parameter]: ...

    @abstractmethod
    def sample_relaxation(self, generator: torch.Generator | None, tau: float,
                          hard: bool = False, phase: str = "weight") -> Any:
        """One relaxation draw; ``phase`` is ``weight`` or ``arch`` (methods that draw
        different numbers of ops per phase read it)."""

    @abstractmethod
    def expected_cost(self, sample: Any) -> torch.Tensor: ...

    @abstractmethod
    def one_hot(self, arch: Arch) -> Any: ...

    @abstractmethod
    def derive(self) -> Arch: ...

    @abstractmethod
    def sample(self, k: int, rng: np.random.Generator) -> list[Arch]: ...

    @abstractmethod
    def arch_state(self) -> dict[str, Any]: ...

    #: whether the relaxation reads the loop's temperature (DenseNAS: plain softmax, no τ)
    uses_tau: bool = True

    @abstractmethod
    def probability_rows(self) -> list[torch.Tensor]:
        """One probability vector per decision of the relaxation (see the module docstring)."""

    def concentration(self) -> dict[str, float]:
        """``{"max_prob", "entropy"}`` of :meth:`probability_rows` (:func:`concentration`)."""
        with torch.no_grad():
            return concentration(self.probability_rows())

    @abstractmethod
    def extract(self, arch: Arch) -> nn.Module: ...

    @abstractmethod
    def moves(self, arch: Arch) -> Iterable[Move]: ...

    def repair(self, arch: Arch, targets: Targets, cost_model: CostModel) -> Arch:
        """``arch`` brought within ``targets`` by the shared greedy shrink."""
        return repair(self.repair_starts(arch), targets, cost_model, self.moves,
                      self.max_repair_steps(arch))

    def grow(self, arch: Arch, targets: Targets, cost_model: CostModel) -> Arch:
        """``arch`` grown into the unused share of ``targets`` by the shared greedy growth
        (:func:`~nasforge.cost.targets.grow`)."""
        return grow(arch, targets, cost_model, self.moves, self.max_repair_steps(arch))

    def repair_starts(self, arch: Arch) -> Iterable[Arch]:
        yield arch

    @abstractmethod
    def max_repair_steps(self, arch: Arch) -> int:
        """Bound on greedy moves per start (a safety net: each move lowers the violation)."""

    def snapshot_arch(self) -> Any:
        """What :meth:`after_arch_step` needs from before the θ update (nothing by default)."""
        return None

    def after_arch_step(self, sample: Any, before: Any) -> None:
        """Called after every θ update (nothing by default)."""
