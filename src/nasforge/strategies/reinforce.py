"""NAS-RL (Zoph & Le): an LSTM controller emits an architecture token by token and is trained
with REINFORCE, ``∇J = (R − b)·∇ Σ_t log π(a_t | a_<t)``, with a moving-average baseline
``b ← β·b + (1 − β)·R``.

Tokens come from the space's vocabulary; at each step the logits of tokens that are not valid
successors are masked out, so every sample is a valid architecture. Results may arrive in any
order: ``tell`` recomputes the log-probability of the told architecture under the current
controller (one gradient step per result). Sampling uses the strategy's numpy generator, so the
controller itself holds no RNG; its weights and Adam state are stored as JSON.

What differs from the paper's constants, and why (measured on NAS-Bench-Macro over 50 seeds,
``benchmarks/tabular_strategies.py``):

- **the advantage is normalised**: ``(R − b) / σ``, with σ a moving average (same β) of
  ``|R − b|``. NAS-RL's rewards were accuracies near each other; an API user's may be
  percentages or losses, and the step size of the policy then depended on the reward's unit.
  Divided by σ, a step means "this result was so many typical deviations above the baseline",
  whatever the unit.
- **Adam lr 5e-3** instead of 6e-4: NAS-RL averaged each update over a batch of hundreds of
  trained children (800 GPUs); here each result gives one update, and a run has hundreds of
  results, not tens of thousands, so the policy must move further per result (at 6e-4 the top
  0.1 % of NAS-Bench-Macro took a median of ~320 trials, at 5e-3 ~90).
- **entropy bonus 0.1** (was 1e-3): with the larger steps the policy otherwise collapsed onto
  the first good architecture and repeated it (repeats are trials too): at lr 1e-2 and bonus
  1e-2, 3 of 10 runs never reached the top 0.1 % in 1,000 trials.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    lr: float = 5e-3  # (choice; paper 6e-4 with large batches) Adam
    baseline_decay: float = 0.95  # (choice) β of the moving-average baseline (and of σ)
    entropy: float = 0.1  # (choice) entropy bonus, keeps exploring
    normalise: bool = True  # (choice) advantage (R − b) / σ

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.lr <= 0 or not 0 <= self.baseline_decay < 1:
            raise UserError("reinforce needs hidden ≥ 1, lr > 0 and 0 ≤ baseline_decay < 1")
        if self.entropy < 0:
            raise UserError(f"reinforce needs entropy ≥ 0, got {self.entropy}")


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run the controller's torch ops on one intra-op thread, then restore the setting: its
    tensors are tiny, and with a thread pool every op waited on it (a tell cost 140 ms of CPU
    instead of 3.7 ms with 2 threads on 2 busy cores)."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class Controller(nn.Module):
    """Embedding → one-layer LSTM → logits over the vocabulary (the last embedding row is the
    start token)."""

    def __init__(self, vocab: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab + 1, hidden)
        self.lstm = nn.LSTM(hidden, hidden)
        self.head = nn.Linear(hidden, vocab)
        self.start = vocab

    def forward(self, tokens: torch.Tensor, hc: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Logits after each of ``tokens`` (a 1-D sequence, fed in one call)."""
        out, hc = self.lstm(self.embed(tokens)[:, None], hc)
        return self.head(out[:, 0]), hc


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
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr, foreach=True)
        self.baseline: float | None = None
        self.scale: float | None = None  # σ: moving average of |R − b|
        self.told = 0
        self._masks: dict[tuple[int, ...], torch.Tensor] = {}

    def _tok(self, action: Any) -> int:
        key = repr(self.seq.token(action))
        if key not in self._index:
            raise UserError(f"action {action!r} is not in the space's vocabulary")
        return self._index[key]

    def _mask(self, ids: list[int]) -> torch.Tensor:
        """0 on the valid tokens, -inf elsewhere (cached per set of valid tokens)."""
        key = tuple(ids)
        if key not in self._masks:
            m = torch.full((len(self._index),), float("-inf"))
            m[list(key)] = 0.0
            self._masks[key] = m
        return self._masks[key]

    @torch.no_grad()
    def ask(self) -> Arch:
        # the LSTM steps in numpy: one sample is a few tiny steps, where torch's per-call
        # overhead would dominate; the same weights, so the same policy as log_prob's
        n = self.net
        w = {k: v.numpy() for k, v in n.state_dict().items()}
        x_proj = w["embed.weight"] @ w["lstm.weight_ih_l0"].T + w["lstm.bias_ih_l0"] \
            + w["lstm.bias_hh_l0"]
        w_hh, w_out, b_out = w["lstm.weight_hh_l0"], w["head.weight"], w["head.bias"]
        hid = w_hh.shape[1]
        h = np.zeros(hid, dtype=np.float32)
        c = np.zeros_like(h)
        prefix: list = []
        prev = n.start
        while not self.seq.is_complete(prefix):
            acts = self.seq.actions(prefix)
            ids = [self._tok(a) for a in acts]
            z = x_proj[prev] + w_hh @ h  # gates i, f, g, o (PyTorch's order)
            sig = 1.0 / (1.0 + np.exp(-z))
            c = sig[hid:2 * hid] * c + sig[:hid] * np.tanh(z[2 * hid:3 * hid])
            h = sig[3 * hid:] * np.tanh(c)
            logits = (w_out[ids] @ h + b_out[ids]).astype(np.float64)
            cdf = np.cumsum(np.exp(logits - logits.max()))
            j = min(int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right")),
                    len(acts) - 1)
            prefix.append(acts[j])
            prev = ids[j]
        return self.seq.to_arch(prefix)

    def _episode(self, arch: Arch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input tokens, chosen tokens and the masks of each step of ``arch``."""
        prefix: list = []
        chosen, masks = [], []
        for a in self.seq.from_arch(arch):
            masks.append(self._mask([self._tok(b) for b in self.seq.actions(prefix)]))
            chosen.append(self._tok(a))
            prefix.append(a)
        out = torch.tensor(chosen)
        return torch.cat([torch.tensor([self.net.start]), out[:-1]]), out, torch.stack(masks)

    def log_prob(self, arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ log π of ``arch``'s tokens and the summed entropy of the masked policies."""
        inp, out, masks = self._episode(arch)
        logits, _ = self.net(inp)
        logp = torch.log_softmax(logits + masks, -1)
        p = logp.exp()
        ent = -(p * logp.masked_fill(masks.isinf(), 0.0)).sum()
        return logp.gather(1, out[:, None]).sum(), ent

    def tell(self, arch: Arch, reward: float) -> None:
        reward = float(reward)
        b = reward if self.baseline is None else self.baseline
        adv = reward - b
        if self.cfg.normalise:
            adv = adv / self.scale if self.scale else 0.0
        with _one_thread():
            logp, ent = self.log_prob(arch)
            loss = -adv * logp - self.cfg.entropy * ent
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        d = self.cfg.baseline_decay
        if self.baseline is not None:  # σ of the deviations from the baseline so far
            dev = abs(reward - self.baseline)
            self.scale = dev if self.scale is None else d * self.scale + (1 - d) * dev
        self.baseline = reward if self.baseline is None else d * self.baseline + (1 - d) * reward
        self.told += 1

    def probabilities(self, prefix: list) -> np.ndarray:
        """The policy over ``actions(prefix)`` (for inspection and tests)."""
        with torch.no_grad():
            toks = [self.net.start] + [self._tok(a) for a in prefix]
            logits, _ = self.net(torch.tensor(toks))
            ids = [self._tok(a) for a in self.seq.actions(prefix)]
            p = torch.softmax(logits[-1] + self._mask(ids), -1)
        return p[ids].numpy()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "baseline": self.baseline, "scale": self.scale,
                "told": self.told, "net": tensors_to_json(self.net.state_dict()),
                "opt": tensors_to_json(self.opt.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.baseline = state["baseline"]
        self.scale = state["scale"]
        self.told = int(state["told"])
        self.net.load_state_dict(tensors_from_json(state["net"]))
        self.opt.load_state_dict(tensors_from_json(state["opt"]))
