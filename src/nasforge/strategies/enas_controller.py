"""ENAS's controller (Pham et al., ICML 2018; METHODS §6): an LSTM that samples a cell decision
by decision, trained by REINFORCE on the shared-weight network's validation accuracy.

**Decisions.** On the ``darts`` space (ENAS's micro search): for the normal and then the
reduction cell (one LSTM run through both, as ENAS's sampler continues its state), per
intermediate node: input 1, input 2, op 1, op 2. An input is picked by ENAS's attention over
the *anchors* (the LSTM state after each earlier node; zeros-valued, attention-keyed anchors
for the two cell inputs): ``logits_j = vᵀ tanh(W₁ anchor_j + W₂ h)``; an op by a linear
softmax over DARTS's 7 real ops; the next step's input is the chosen anchor or the op's
embedding. Input 2 may not repeat input 1 (a DARTS genotype has two distinct inputs per node;
ENAS allows repeats — the one change). On ``nb201``: one op (of 5, ``none`` included) per edge
in the benchmark's edge order, each step fed the previous op's embedding.

**Logits** as the paper: ``C · tanh(logits / T)`` with tanh constant C = 2.5 and temperature
T = 5 (both on index and op logits).

**REINFORCE** (ENAS's ``build_trainer``): reward ``R = acc_val + w_H · H`` (H: the sampled
sequence's entropy, no gradient; w_H = 1e-4); baseline ``b ← b − (1 − β)(b − R)`` updated with
each reward *before* its advantage (β = 0.99); loss ``−(R − b) · log π(a)``, averaged over the
``aggregate`` architectures of one update (ENAS: 10); Adam lr 3.5e-4 (the paper's). One change:
the baseline starts at the first update's mean reward, not at 0 (from 0, β = 0.99 needs ~100
updates to reach the accuracies, and until then every architecture sampled is reinforced).

Sampling is batched (K sequences at once: the decision layout does not depend on the choices)
and draws from a ``torch.Generator`` the caller owns, so a checkpointed run resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.arch import Arch
from nasforge.device import num_threads
from nasforge.errors import UserError
from nasforge.models import darts as dm
from nasforge.models import nb201 as nm
from nasforge.spaces.darts import CELLS, CHOICES, DartsSpace
from nasforge.spaces.nb201 import NB201Space


@dataclass(frozen=True)
class ControllerConfig:
    hidden: int = 100  # (paper) LSTM units
    lr: float = 3.5e-4  # (paper) Adam
    tanh_constant: float = 2.5  # (paper) logits → C·tanh(logits / T)
    temperature: float = 5.0  # (paper)
    entropy_weight: float = 1e-4  # (code) w_H: R = acc + w_H·H
    baseline_decay: float = 0.99  # (code) β of the moving-average baseline

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.lr <= 0:
            raise UserError(f"the ENAS controller needs hidden ≥ 1 and lr > 0, got "
                            f"{self.hidden} and {self.lr}")
        if self.tanh_constant <= 0 or self.temperature <= 0:
            raise UserError("the ENAS controller's tanh constant and temperature must be > 0")
        if self.entropy_weight < 0 or not 0 <= self.baseline_decay < 1:
            raise UserError("the ENAS controller needs entropy weight ≥ 0 and 0 ≤ baseline "
                            "decay < 1")


@dataclass(frozen=True)
class CellLayout:
    """The decisions of one space: ``cells`` × ``nodes`` nodes, each choosing two distinct
    inputs among the earlier states (2 cell inputs + earlier nodes) and one of ``ops`` per
    input (the darts space: 2 × 4, 7 ops) — or, with ``nodes == 0``, ``edges`` independent
    op choices (nb201: 6 edges, 5 ops)."""

    ops: int
    cells: int = 0
    nodes: int = 0
    edges: int = 0

    @property
    def length(self) -> int:
        """Actions per architecture."""
        return self.cells * self.nodes * 4 if self.nodes else self.edges


class EnasController(nn.Module):
    """The LSTM policy over a :class:`CellLayout` (see the module docstring)."""

    def __init__(self, layout: CellLayout, cfg: ControllerConfig | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        self.layout = layout
        self.cfg = cfg or ControllerConfig()
        h = self.cfg.hidden
        self.lstm = nn.LSTMCell(h, h)
        self.g_emb = nn.Parameter(torch.empty(1, h))  # the start / "next node" input
        self.op_emb = nn.Embedding(layout.ops, h)
        self.op_head = nn.Linear(h, layout.ops)
        self.attn_1 = nn.Linear(h, h, bias=False)  # keys of the anchors
        self.attn_2 = nn.Linear(h, h, bias=False)  # the query from the current state
        self.attn_v = nn.Linear(h, 1, bias=False)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-0.1, 0.1, generator=g)  # ENAS's initialiser
        self.opt = torch.optim.Adam(self.parameters(), lr=self.cfg.lr)
        self.baseline: float | None = None
        self.updates = 0

    # -- the policy -------------------------------------------------------------------------------
    def _squash(self, logits: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        return c.tanh_constant * torch.tanh(logits / c.temperature)

    def _pick(self, logits: torch.Tensor, mask: torch.Tensor | None,
              given: torch.Tensor | None, gen: torch.Generator | None,
              acc: list[torch.Tensor]) -> torch.Tensor:
        """Choose (or read ``given``) one action per row; log-prob and entropy go to ``acc``."""
        logits = self._squash(logits)
        if mask is not None:
            logits = logits.masked_fill(mask, float("-inf"))
        logp = torch.log_softmax(logits, -1)
        if given is None:
            given = torch.multinomial(logp.detach().exp(), 1, generator=gen)[:, 0]
        p = logp.exp()
        acc[0] = acc[0] + logp.gather(1, given[:, None])[:, 0]
        acc[1] = acc[1] + -(p * logp.masked_fill(p == 0, 0.0)).sum(-1)
        return given

    def run(self, k: int = 1, actions: torch.Tensor | None = None,
            generator: torch.Generator | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample ``k`` action sequences (or score the given ``actions``, k × length); returns
        the actions, their summed log-probabilities and summed entropies (k each). Runs on one
        intra-op thread: its tensors are tiny, and a thread pool on busy cores made every op
        wait (10 darts samples: 5 s with 2 threads at load 11)."""
        with num_threads(1):
            return self._run(k, actions, generator)

    def _run(self, k: int, actions: torch.Tensor | None, generator: torch.Generator | None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lay = self.layout
        if actions is not None:
            actions = torch.as_tensor(actions, dtype=torch.long)
            if actions.dim() != 2 or actions.shape[1] != lay.length:
                raise ValueError(f"actions must be k × {lay.length}, got {tuple(actions.shape)}")
            k = actions.shape[0]
        out: list[torch.Tensor] = []
        acc = [torch.zeros(k), torch.zeros(k)]
        h = torch.zeros(k, self.cfg.hidden)
        c = torch.zeros_like(h)
        x = self.g_emb.expand(k, -1)

        def given() -> torch.Tensor | None:
            return None if actions is None else actions[:, len(out)]

        if not lay.nodes:  # nb201: one op per edge
            for _ in range(lay.edges):
                h, c = self.lstm(x, (h, c))
                a = self._pick(self.op_head(h), None, given(), generator, acc)
                out.append(a)
                x = self.op_emb(a)
            return torch.stack(out, 1), acc[0], acc[1]
        rows = torch.arange(k)
        for _ in range(lay.cells):
            anchors, keys = [], []
            for _ in range(2):  # the two cell inputs
                h, c = self.lstm(x, (h, c))
                anchors.append(torch.zeros_like(h))
                keys.append(self.attn_1(h))
            for node in range(lay.nodes):
                stack_a, stack_k = torch.stack(anchors, 1), torch.stack(keys, 1)
                first = None
                for _ in range(2):  # input 1, input 2
                    h, c = self.lstm(x, (h, c))
                    q = self.attn_v(torch.tanh(stack_k + self.attn_2(h)[:, None]))[..., 0]
                    mask = None
                    if first is not None:
                        mask = torch.zeros(k, node + 2, dtype=torch.bool)
                        mask[rows, first] = True
                    a = self._pick(q, mask, given(), generator, acc)
                    out.append(a)
                    first = a
                    x = stack_a[rows, a]
                for _ in range(2):  # op 1, op 2
                    h, c = self.lstm(x, (h, c))
                    a = self._pick(self.op_head(h), None, given(), generator, acc)
                    out.append(a)
                    x = self.op_emb(a)
                h, c = self.lstm(x, (h, c))
                anchors.append(h)
                keys.append(self.attn_1(h))
                x = self.g_emb.expand(k, -1)
        return torch.stack(out, 1), acc[0], acc[1]

    @torch.no_grad()
    def sample(self, k: int, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` action sequences and their entropies."""
        a, _, ent = self.run(k, generator=generator)
        return a, ent

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """log π of each row of ``actions`` (with gradient)."""
        return self.run(actions=actions)[1]

    # -- REINFORCE --------------------------------------------------------------------------------
    def update(self, actions: torch.Tensor, accuracy: torch.Tensor | list[float],
               entropy: torch.Tensor | list[float]) -> dict[str, float]:
        """One Adam step on ``actions`` (k × length) with rewards ``accuracy + w_H·entropy``
        (see the module docstring); returns the mean reward, advantage and the baseline."""
        cfg = self.cfg
        rewards = (torch.as_tensor(accuracy, dtype=torch.float32)
                   + cfg.entropy_weight * torch.as_tensor(entropy, dtype=torch.float32))
        if self.baseline is None:
            self.baseline = float(rewards.mean())
        adv = []
        for r in rewards.tolist():  # ENAS: the baseline moves with each reward, then R − b
            self.baseline -= (1 - cfg.baseline_decay) * (self.baseline - r)
            adv.append(r - self.baseline)
        advantage = torch.tensor(adv)
        with num_threads(1):
            loss = -(advantage * self._run(0, actions, None)[1]).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self.updates += 1
        return {"reward": float(rewards.mean()), "advantage": float(advantage.mean()),
                "baseline": float(self.baseline)}

    # -- state ------------------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        """Weights, Adam state, baseline and update count (tensors: a weights-only checkpoint)."""
        return {"net": self.state_dict(), "opt": self.opt.state_dict(),
                "baseline": self.baseline, "updates": self.updates}

    def restore(self, state: dict) -> None:
        self.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.updates = int(state["updates"])


# -- the two cell spaces as decisions ----------------------------------------------------------
def layout_for(space: Any) -> CellLayout:
    """The controller's decisions on ``space`` (a :class:`DartsSpace` or :class:`NB201Space`)."""
    if isinstance(space, DartsSpace):
        return CellLayout(ops=len(CHOICES), cells=len(CELLS), nodes=dm.STEPS)
    if isinstance(space, NB201Space):
        return CellLayout(ops=len(nm.OPS), edges=len(nm.EDGES))
    raise TypeError(f"the ENAS controller samples darts or nb201 cells, not {space!r}")


def to_arch(space: Any, actions: torch.Tensor | list[int]) -> Arch:
    """The architecture one action sequence describes (darts: a node's two inputs listed in
    input order, so one network has one genotype)."""
    a = [int(v) for v in actions]
    if isinstance(space, NB201Space):
        return space.arch([nm.OPS[i] for i in a])
    genes: dict[str, Any] = {}
    for t, cell in enumerate(CELLS):
        g = []
        for node in range(dm.STEPS):
            i1, i2, o1, o2 = a[(t * dm.STEPS + node) * 4:(t * dm.STEPS + node) * 4 + 4]
            g += sorted([[CHOICES[o1], i1], [CHOICES[o2], i2]], key=lambda p: p[1])
        genes[cell] = g
        genes[f"{cell}_concat"] = list(dm.CONCAT)
    return space.arch(genes)


def marginals(space: Any, actions: torch.Tensor) -> dict[str, Any]:
    """How often each (edge, op) occurs in ``actions`` (samples of the policy), in the layout
    of the DARTS relaxation's α (darts: ``normal``/``reduce``, 14 edges × 8 ops, an edge's
    row summing to how often it is an input; nb201: ``cell``, 6 edges × 5 ops), plus the
    ``rows`` (each edge's op frequencies given that it is used) for concentration measures."""
    n = max(len(actions), 1)
    if isinstance(space, NB201Space):
        m = np.zeros((len(nm.EDGES), len(nm.OPS)))
        for row in actions.tolist():
            for e, o in enumerate(row):
                m[e, o] += 1
        m /= n
        return {"ops": list(nm.OPS), "edges": [f"{i}<-{j}" for i, j in nm.EDGES],
                "cell": m.tolist(), "rows": list(m)}
    ms = np.zeros((len(CELLS), dm.NUM_EDGES, len(dm.PRIMITIVES)))
    for row in actions.tolist():
        for t in range(len(CELLS)):
            for node in range(dm.STEPS):
                i1, i2, o1, o2 = row[(t * dm.STEPS + node) * 4:(t * dm.STEPS + node) * 4 + 4]
                for j, o in ((i1, o1), (i2, o2)):
                    ms[t, dm.edge_index(node, j), dm.PRIMITIVES.index(CHOICES[o])] += 1
    ms /= n
    rows = [r / r.sum() for t in range(len(CELLS)) for r in ms[t] if r.sum() > 0]
    return {"ops": list(dm.PRIMITIVES),
            "edges": [f"{i + 2}<-{j}" for i in range(dm.STEPS) for j in range(i + 2)],
            "normal": ms[0].tolist(), "reduce": ms[1].tolist(), "rows": rows}
