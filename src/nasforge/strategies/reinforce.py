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

**Anchor points** (NAS-RL's skip connections, on a space that offers them: :class:`Anchored`,
e.g. ``nasrl``). At layer ``i``'s anchor point the LSTM steps once (its input: the previous
token) and its hidden state ``h_i`` is kept; each earlier anchor point ``j`` is then an input of
layer ``i`` with probability ``sigmoid(vᵀ tanh(W_prev·h_j + W_curr·h_i))`` (the paper's
content-based attention; ``W_prev``, ``W_curr``, ``v`` without biases, initialised like every
controller weight), drawn independently. The anchor's log-probability is the sum of the
Bernoulli log-probabilities of the connections made and not made, its entropy (in the bonus)
the sum of their entropies. The step after an anchor point is fed a learned "anchor" token
(a choice: the paper does not say what the LSTM reads there). On a space without anchor points
the controller has no attention weights and behaves exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
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


@runtime_checkable
class Anchored(Protocol):
    """A sequential space with NAS-RL anchor points: some actions are the set of earlier anchor
    points (layers) that feed the current one."""

    def anchor_sources(self, prefix: list) -> list[int] | None:
        """None when the next action is not an anchor point; otherwise the earlier anchor
        points (their order among the anchor steps so far) it may connect."""
        ...

    def anchor_action(self, prefix: list, chosen: list[int]) -> Any:
        """The action connecting the anchor points ``chosen``."""
        ...

    def anchor_chosen(self, action: Any) -> list[int]:
        """The anchor points an anchor action connects."""
        ...


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


class AnchorAttention(nn.Module):
    """NAS-RL's anchor sigmoid: ``P(j → i) = sigmoid(vᵀ tanh(W_prev·h_j + W_curr·h_i))``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.w_prev = nn.Linear(hidden, hidden, bias=False)
        self.w_curr = nn.Linear(hidden, hidden, bias=False)
        self.v = nn.Linear(hidden, 1, bias=False)

    def forward(self, h_prev: torch.Tensor, h_curr: torch.Tensor) -> torch.Tensor:
        """Logits (pre-sigmoid) of pairs: ``h_prev[k]`` (an earlier anchor point) with
        ``h_curr[k]`` (the current one)."""
        return self.v(torch.tanh(self.w_prev(h_prev) + self.w_curr(h_curr)))[:, 0]


class Controller(nn.Module):
    """Embedding → one-layer LSTM → logits over the vocabulary (the last embedding row is the
    start token), and the anchor attention when the space has anchor points."""

    def __init__(self, vocab: int, hidden: int, anchors: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab + 1, hidden)
        self.lstm = nn.LSTM(hidden, hidden)
        self.head = nn.Linear(hidden, vocab)
        self.start = vocab
        self.anchor = AnchorAttention(hidden) if anchors else None

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """The LSTM's hidden state after each of ``tokens`` (a 1-D sequence, one call)."""
        out, _ = self.lstm(self.embed(tokens)[:, None])
        return out[:, 0]

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
        #: the space's anchor points (NAS-RL's skip connections), None when it has none
        self.anchored: Anchored | None = space if isinstance(space, Anchored) else None
        g = torch.Generator().manual_seed(seed)
        self.net = Controller(len(vocab), self.cfg.hidden, anchors=self.anchored is not None)
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

    def _sources(self, prefix: list) -> list[int] | None:
        return None if self.anchored is None else self.anchored.anchor_sources(prefix)

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
        proj: list[np.ndarray] = []  # W_prev·h_j of every anchor point so far
        while not self.seq.is_complete(prefix):
            sources = self._sources(prefix)
            z = x_proj[prev] + w_hh @ h  # gates i, f, g, o (PyTorch's order)
            sig = 1.0 / (1.0 + np.exp(-z))
            c = sig[hid:2 * hid] * c + sig[:hid] * np.tanh(z[2 * hid:3 * hid])
            h = sig[3 * hid:] * np.tanh(c)
            if sources is not None:  # an anchor point: one sigmoid per earlier anchor point
                chosen: list[int] = []
                if sources:
                    cur = w["anchor.w_curr.weight"] @ h
                    s = (np.tanh(np.stack([proj[j] for j in sources]) + cur)
                         @ w["anchor.v.weight"][0]).astype(np.float64)
                    p = 1.0 / (1.0 + np.exp(-s))
                    u = self.rng.random(len(sources))
                    chosen = [j for j, pj, uj in zip(sources, p, u) if uj < pj]
                proj.append(w["anchor.w_prev.weight"] @ h)
                a = self.anchored.anchor_action(prefix, chosen)  # type: ignore[union-attr]
                prefix.append(a)
                prev = self._tok(a)
                continue
            acts = self.seq.actions(prefix)
            ids = [self._tok(a) for a in acts]
            logits = (w_out[ids] @ h + b_out[ids]).astype(np.float64)
            cdf = np.cumsum(np.exp(logits - logits.max()))
            j = min(int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right")),
                    len(acts) - 1)
            prefix.append(acts[j])
            prev = ids[j]
        return self.seq.to_arch(prefix)

    def _episode(self, arch: Arch) -> tuple[torch.Tensor, torch.Tensor, list[int], list,
                                            list[tuple[int, list[int], set[int]]]]:
        """Input tokens, chosen tokens, the token steps with their masks, and the anchor
        points as ``(step, sources, connected)``, of each step of ``arch``."""
        prefix: list = []
        chosen, steps, masks, anchors = [], [], [], []
        for a in self.seq.from_arch(arch):
            sources = self._sources(prefix)
            if sources is None:
                steps.append(len(chosen))
                masks.append(self._mask([self._tok(b) for b in self.seq.actions(prefix)]))
            else:
                anchors.append((len(chosen), sources,
                                set(self.anchored.anchor_chosen(a))))  # type: ignore[union-attr]
            chosen.append(self._tok(a))
            prefix.append(a)
        out = torch.tensor(chosen)
        return torch.cat([torch.tensor([self.net.start]), out[:-1]]), out, steps, masks, anchors

    def log_prob(self, arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ log π of ``arch``'s decisions and the summed entropy of the policies (masked
        softmax per token, a Bernoulli per anchor connection)."""
        inp, out, steps, masks, anchors = self._episode(arch)
        hs = self.net.hidden(inp)
        total, ent = torch.zeros(()), torch.zeros(())
        if steps:
            m = torch.stack(masks)
            idx = torch.tensor(steps) if anchors else None
            logits = self.net.head(hs if idx is None else hs[idx])
            logp = torch.log_softmax(logits + m, -1)
            p = logp.exp()
            ent = -(p * logp.masked_fill(m.isinf(), 0.0)).sum()
            total = logp.gather(1, (out if idx is None else out[idx])[:, None]).sum()
        pairs = [(j, k, float(j in conn)) for k, (_, src, conn) in enumerate(anchors)
                 for j in src]
        if pairs:
            h_anchor = hs[torch.tensor([t for t, _, _ in anchors])]
            prev, curr, y = (list(v) for v in zip(*pairs))
            s = self.net.anchor(h_anchor[prev], h_anchor[curr])  # type: ignore[misc]
            yt = torch.tensor(y)
            ls, lns = F.logsigmoid(s), F.logsigmoid(-s)
            total = total + (yt * ls + (1 - yt) * lns).sum()
            ps = torch.sigmoid(s)
            ent = ent - (ps * ls + (1 - ps) * lns).sum()
        return total, ent

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

    def anchor_probabilities(self, prefix: list) -> np.ndarray:
        """P(anchor point j is an input) for each source of the anchor point after ``prefix``
        (for inspection and tests): the torch path, the one ``log_prob`` trains."""
        sources = self._sources(prefix)
        if sources is None:
            raise UserError("the next decision is not an anchor point of the space")
        with torch.no_grad():
            hs = self.net.hidden(torch.tensor([self.net.start] + [self._tok(a) for a in prefix]))
            at = [t for t in range(len(prefix)) if self._sources(prefix[:t]) is not None]
            h_anchor = hs[torch.tensor(at + [len(prefix)], dtype=torch.long)]
            if not sources:
                return np.zeros(0)
            s = self.net.anchor(h_anchor[sources],  # type: ignore[misc]
                                h_anchor[-1].expand(len(sources), -1))
        return torch.sigmoid(s).numpy()

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
