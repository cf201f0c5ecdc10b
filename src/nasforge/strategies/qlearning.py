"""BlockQNN's Q-learning agent (METHODS §5).

State = the current layer (its position and code), action = the next layer among the valid
successors (the space's ``actions(prefix)``). Actions are ε-greedy; ε follows a schedule from
1.0 to 0.1 over the run. Each result updates the episode backwards with
``Q(s,a) ← (1−α)·Q(s,a) + α·[r_t + γ·max_a' Q(s',a')]`` (α = 0.01, γ = 1, paper), then
``replay`` past episodes drawn from memory are replayed the same way (experience replay).

Reward shaping: every intermediate step receives ``r_t = r_T / T`` (a share of the final
reward), so early in the search the terminal action's Q value does not dominate and the agent
does not collapse to shallow blocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Strategy, config_from, sequential


@dataclass
class QLearningConfig:
    alpha: float = 0.01  # (paper)
    gamma: float = 1.0  # (paper)
    q_init: float = 0.5  # (choice) optimistic start, as MetaQNN
    epsilon_start: float = 1.0  # (paper)
    epsilon_end: float = 0.1  # (paper)
    decay_episodes: int | None = 100  # (choice) ε decays linearly over these episodes;
    # None: over the run's progress (trials or seconds of budget used), as the engine reports
    schedule: list[list[float]] | None = None  # [[ε, episodes], …] overrides the linear decay
    replay: int = 32  # (choice) past episodes replayed per result
    shaping: bool = True  # r_t = r_T / T for intermediate steps

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1 or not 0 <= self.gamma <= 1:
            raise UserError(f"Q-learning needs 0 < alpha ≤ 1 and 0 ≤ gamma ≤ 1 (got "
                            f"{self.alpha}, {self.gamma})")
        if (self.decay_episodes is not None and self.decay_episodes < 1) or self.replay < 0:
            raise UserError("decay_episodes must be ≥ 1 and replay ≥ 0")
        for row in self.schedule or []:
            if len(row) != 2 or not 0 <= row[0] <= 1 or row[1] < 0:
                raise UserError(f"schedule rows are [epsilon in [0,1], episodes ≥ 0]; got {row}")

    def epsilon(self, episode: int, progress: float = 0.0) -> float:
        if self.schedule:
            for eps, n in self.schedule:
                if episode < n:
                    return float(eps)
                episode -= int(n)
            return float(self.schedule[-1][0])
        f = min(1.0, progress if self.decay_episodes is None else episode / self.decay_episodes)
        return self.epsilon_start + (self.epsilon_end - self.epsilon_start) * f


def _key(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class QLearning(Strategy):
    name = "qlearning"

    def __init__(self, space: SearchSpace, seed: int = 0,
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(space, seed)
        self.seq = sequential(space, self.name)
        self.cfg: QLearningConfig = config_from(QLearningConfig, options, self.name)
        self.q: dict[str, dict[str, float]] = {}
        self.memory: list[tuple[list, float]] = []
        self.episode = 0  # asks so far (drives ε)
        self._n_actions: dict[str, int] = {}

    # -- values -------------------------------------------------------------------------------
    def _state(self, prefix: list) -> str:
        return _key([len(prefix), prefix[-1] if prefix else None])

    def _max_q(self, prefix: list) -> float:
        s = self._state(prefix)
        row = self.q.get(s, {})
        if s not in self._n_actions:
            self._n_actions[s] = len(self.seq.actions(prefix))
        best = max(row.values()) if row else self.cfg.q_init
        return best if len(row) == self._n_actions[s] else max(best, self.cfg.q_init)

    def value(self, prefix: list, action: Any) -> float:
        return self.q.get(self._state(prefix), {}).get(_key(action), self.cfg.q_init)

    # -- ask / tell ---------------------------------------------------------------------------
    def ask(self) -> Arch:
        eps = self.cfg.epsilon(self.episode, self.progress)
        self.episode += 1
        prefix: list = []
        while not self.seq.is_complete(prefix):
            acts = self.seq.actions(prefix)
            if self.rng.random() < eps:
                a = acts[int(self.rng.integers(len(acts)))]
            else:
                vals = [self.value(prefix, a) for a in acts]
                top = max(vals)
                ties = [a for a, v in zip(acts, vals) if v == top]
                a = ties[int(self.rng.integers(len(ties)))]
            prefix.append(a)
        return self.seq.to_arch(prefix)

    def tell(self, arch: Arch, reward: float) -> None:
        episode = self.seq.from_arch(arch)
        self.memory.append((episode, float(reward)))
        self._update(episode, float(reward))
        if self.cfg.replay and len(self.memory) > 1:
            for i in self.rng.integers(len(self.memory), size=self.cfg.replay):
                self._update(*self.memory[int(i)])

    def _update(self, episode: list, reward: float) -> None:
        c, T = self.cfg, len(episode)
        r_step = reward / T if c.shaping else 0.0
        for t in reversed(range(T)):
            prefix = episode[:t]
            if t == T - 1:
                target = reward
            else:
                target = r_step + c.gamma * self._max_q(episode[: t + 1])
            row = self.q.setdefault(self._state(prefix), {})
            k = _key(episode[t])
            row[k] = (1 - c.alpha) * row.get(k, c.q_init) + c.alpha * target

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "q": self.q, "episode": self.episode,
                "memory": [[e, r] for e, r in self.memory]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.q = {s: dict(row) for s, row in state["q"].items()}
        self.episode = int(state["episode"])
        self.memory = [(e, float(r)) for e, r in state["memory"]]
