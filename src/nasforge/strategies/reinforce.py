"""NAS-RL (Zoph & Le): an LSTM controller emits an architecture token by token and is trained
with REINFORCE, ``∇J = (R − b)·∇ Σ_t log π(a_t | a_<t)``, with a moving-average baseline
``b ← β·b + (1 − β)·R``.

Tokens come from the space's vocabulary; at each step the logits of tokens that are not valid
successors are masked out, so every sample is a valid architecture. Results may arrive in any
order: ``tell`` recomputes the log-probability of the told architecture under the current
controller (one gradient step per result). Sampling uses the strategy's numpy generator, so the
controller itself holds no RNG; its weights and Adam state are stored as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import (
    Strategy,
    config_from,
    sequential,
    tensors_from_json,
    tensors_to_json,
)


@dataclass
class ReinforceConfig:
    hidden: int = 35  # (paper) LSTM units
    lr: float = 6e-4  # (paper) Adam
    baseline_decay: float = 0.95  # (choice) β of the moving-average baseline
    entropy: float = 1e-3  # (choice) entropy bonus, keeps exploring

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.lr <= 0 or not 0 <= self.baseline_decay < 1:
            raise UserError("reinforce needs hidden ≥ 1, lr > 0 and 0 ≤ baseline_decay < 1")


class Controller(nn.Module):
    def __init__(self, vocab: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab + 1, hidden)  # the last row is the start token
        self.cell = nn.LSTMCell(hidden, hidden)
        self.head = nn.Linear(hidden, vocab)
        self.start = vocab

    def step(self, prev: int, hc: tuple[torch.Tensor, torch.Tensor] | None
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, c = self.cell(self.embed(torch.tensor([prev])), hc)
        return self.head(h)[0], (h, c)


class Reinforce(Strategy):
    name = "reinforce"

    def __init__(self, space: SearchSpace, seed: int = 0,
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(space, seed)
        self.seq = sequential(space, self.name)
        self.cfg: ReinforceConfig = config_from(ReinforceConfig, options, self.name)
        vocab = self.seq.vocabulary()
        self._index = {repr(t): i for i, t in enumerate(vocab)}
        g = torch.Generator().manual_seed(seed)
        self.net = Controller(len(vocab), self.cfg.hidden)
        with torch.no_grad():
            for p in self.net.parameters():
                p.uniform_(-0.1, 0.1, generator=g)  # NAS-RL's init
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr)
        self.baseline: float | None = None
        self.told = 0

    def _tok(self, action: Any) -> int:
        key = repr(self.seq.token(action))
        if key not in self._index:
            raise UserError(f"action {action!r} is not in the space's vocabulary")
        return self._index[key]

    def _masked(self, logits: torch.Tensor, acts: list) -> tuple[torch.Tensor, list[int]]:
        ids = [self._tok(a) for a in acts]
        mask = torch.full_like(logits, float("-inf"))
        mask[ids] = 0.0
        return torch.log_softmax(logits + mask, -1), ids

    @torch.no_grad()
    def ask(self) -> Arch:
        prefix: list = []
        prev, hc = self.net.start, None
        while not self.seq.is_complete(prefix):
            acts = self.seq.actions(prefix)
            logits, hc = self.net.step(prev, hc)
            logp, ids = self._masked(logits, acts)
            p = logp[ids].double().exp().numpy()
            j = int(self.rng.choice(len(acts), p=p / p.sum()))
            prefix.append(acts[j])
            prev = ids[j]
        return self.seq.to_arch(prefix)

    def log_prob(self, arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ log π of ``arch``'s tokens and the summed entropy of the masked policies."""
        prefix: list = []
        prev, hc = self.net.start, None
        total, ent = torch.zeros(()), torch.zeros(())
        for a in self.seq.from_arch(arch):
            logits, hc = self.net.step(prev, hc)
            logp, ids = self._masked(logits, self.seq.actions(prefix))
            tok = self._tok(a)
            total = total + logp[tok]
            lp = logp[ids]
            ent = ent - (lp.exp() * lp).sum()
            prefix.append(a)
            prev = tok
        return total, ent

    def tell(self, arch: Arch, reward: float) -> None:
        reward = float(reward)
        b = reward if self.baseline is None else self.baseline
        logp, ent = self.log_prob(arch)
        loss = -(reward - b) * logp - self.cfg.entropy * ent
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        d = self.cfg.baseline_decay
        self.baseline = reward if self.baseline is None else d * self.baseline + (1 - d) * reward
        self.told += 1

    def probabilities(self, prefix: list) -> np.ndarray:
        """The policy over ``actions(prefix)`` (for inspection and tests)."""
        with torch.no_grad():
            prev, hc = self.net.start, None
            for a in prefix:
                _, hc = self.net.step(prev, hc)
                prev = self._tok(a)
            logits, _ = self.net.step(prev, hc)
            logp, ids = self._masked(logits, self.seq.actions(prefix))
        return logp[ids].exp().numpy()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "baseline": self.baseline, "told": self.told,
                "net": tensors_to_json(self.net.state_dict()),
                "opt": tensors_to_json(self.opt.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.baseline = state["baseline"]
        self.told = int(state["told"])
        self.net.load_state_dict(tensors_from_json(state["net"]))
        self.opt.load_state_dict(tensors_from_json(state["opt"]))
