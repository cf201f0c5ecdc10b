"""BlockQNN's Q-learning agent (METHODS §5).

State = the current layer (its position and code), action = the next layer among the valid
successors (the space's ``actions(prefix)``). Actions are ε-greedy with ε decreasing from 1.0
to 0.1 over the run. Each result updates its episode backwards with
``Q(s,a) ← (1−α)·Q(s,a) + α·[r_t + γ·max_a' Q(s',a')]`` (γ = 1, paper), then ``replay`` past
episodes drawn from memory are replayed the same way (experience replay). Reward shaping: every
intermediate step receives ``r_t = r_T / T`` (a share of the final reward), so early in the
search the terminal action's Q value does not dominate and the agent does not collapse to
shallow blocks.

What differs from the paper's constants, and why (measured on NAS-Bench-Macro over 50-200
seeds, ``benchmarks/tabular_strategies.py``; ``docs/sample_based.md`` has the figures). With the
former defaults 8 of 50 runs reached the table's top 0.1 % within 1,000 trials; with these, all
did, after a median of 86–106 trials (random search: 571–626):

- **rewards are normalised** to their rank among the rewards seen so far (a quantile in
  [0, 1]) before they enter the update. The paper's rewards are accuracies; an API user's may be
  percentages, negative losses or anything else, and ε-greedy compares Q values with the
  initial value ``q_init`` — so without normalisation the same defaults mean different things
  on different objectives. Ranks make the agent depend only on the order of the rewards.
- **optimistic start** ``q_init`` = 1, the best normalised reward: an untried action is
  valued as if it led to the best result seen, so it is picked greedily before any tried action
  whose value is below that (the former 0.5 lay below every reward, so untried actions were
  never picked greedily). Not higher: the max in the update carries an untried successor's
  ``q_init`` back up the episode, and at 2 (above any return) that kept the agent exploring long
  after it knew better (top 1 % of NAS-Bench-Macro, seeds 0–19: median 58 trials at 2, 42 at 1).
- **α = 0.1** instead of 0.01: with replay, a state-action is updated many times per result; at
  α = 0.01 its Q stayed close to ``q_init`` plus a term that grows with the number of visits,
  so the greedy choice followed visit counts more than rewards (top 0.1 %, ε over 20 % of the
  run: median 344 trials at α = 0.01, 134 at 0.1; 0.05 and 0.3 gave 141 and 139).
- **ε follows the run**: it decreases linearly from 1.0 to 0.1 over the first ``explore`` =
  10 % of the run (trials of ``max_trials``, or seconds of the budget, whichever is further on,
  as the engine reports in ``progress``) and stays at 0.1 after, so a longer run explores
  longer. The former default reached 0.1 after 100 asks whatever the run's length (the CLI
  overrode it, the API did not); ``decay_episodes`` still sets a fixed count. Over 20 % or 30 %
  of a 1,000-trial run, the top 0.1 % took a median of 134 and 164 trials instead of ~100.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from typing import Any

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Strategy, config_from, sequential


@dataclass
class QLearningConfig:
    alpha: float = 0.1  # (choice; paper 0.01) see the module docstring
    gamma: float = 1.0  # (paper)
    q_init: float = 1.0  # (choice) optimistic: the best normalised reward
    epsilon_start: float = 1.0  # (paper)
    epsilon_end: float = 0.1  # (paper)
    explore: float = 0.1  # (choice) ε reaches epsilon_end at this fraction of the run
    decay_episodes: int | None = None  # a fixed number of asks for the decay instead of the run
    schedule: list[list[float]] | None = None  # [[ε, episodes], …] overrides the linear decay
    replay: int = 32  # (choice) past episodes replayed per result
    shaping: bool = True  # r_t = r_T / T for intermediate steps
    normalise: str = "rank"  # (choice) 'rank': rewards as quantiles; 'none': as given

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1 or not 0 <= self.gamma <= 1:
            raise UserError(f"Q-learning needs 0 < alpha ≤ 1 and 0 ≤ gamma ≤ 1 (got "
                            f"{self.alpha}, {self.gamma})")
        if (self.decay_episodes is not None and self.decay_episodes < 1) or self.replay < 0:
            raise UserError("decay_episodes must be ≥ 1 and replay ≥ 0")
        if not 0 < self.explore <= 1:
            raise UserError(f"explore is the fraction of the run over which ε decays, in (0, 1];"
                            f" got {self.explore}")
        if self.normalise not in ("rank", "none"):
            raise UserError(f"normalise must be 'rank' or 'none', got {self.normalise!r}")
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
        if self.decay_episodes is not None:
            f = episode / self.decay_episodes
        else:
            f = progress / self.explore
        return self.epsilon_start + (self.epsilon_end - self.epsilon_start) * min(1.0, f)


def _key(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class QLearning(Strategy):
    name = "qlearning"
    append_only = ("memory",)

    def __init__(self, space: SearchSpace, seed: int = 0,
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(space, seed)
        self.seq = sequential(space, self.name)
        self.cfg: QLearningConfig = config_from(QLearningConfig, options, self.name)
        self.q: dict[str, dict[str, float]] = {}
        self.memory: list[tuple[list, float]] = []
        self.episode = 0  # asks so far (drives ε)
        self._n_actions: dict[str, int] = {}
        self._keys: list[list[tuple[str, str]]] = []  # (state, action) keys of memory[i]
        self._sorted: list[float] = []  # the rewards told, sorted (rank normalisation)

    # -- values -------------------------------------------------------------------------------
    def _state(self, prefix: list) -> str:
        s = _key([len(prefix), prefix[-1] if prefix else None])
        if s not in self._n_actions:
            self._n_actions[s] = len(self.seq.actions(prefix))
        return s

    def _max_q(self, s: str) -> float:
        row = self.q.get(s)
        if not row:
            return self.cfg.q_init
        best = max(row.values())
        return best if len(row) == self._n_actions[s] else max(best, self.cfg.q_init)

    def value(self, prefix: list, action: Any) -> float:
        return self.q.get(self._state(prefix), {}).get(_key(action), self.cfg.q_init)

    def normalised(self, reward: float) -> float:
        """The reward as the agent learns from it: its mid-rank among the rewards told."""
        if self.cfg.normalise == "none":
            return reward
        lo = bisect.bisect_left(self._sorted, reward)
        hi = bisect.bisect_right(self._sorted, reward)
        return (lo + hi) / (2 * len(self._sorted))

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
                row = self.q.get(self._state(prefix), {})
                vals = [row.get(_key(a), self.cfg.q_init) for a in acts]
                top = max(vals)
                ties = [a for a, v in zip(acts, vals) if v == top]
                a = ties[int(self.rng.integers(len(ties)))]
            prefix.append(a)
        return self.seq.to_arch(prefix)

    def tell(self, arch: Arch, reward: float) -> None:
        self._remember(self.seq.from_arch(arch), float(reward))
        self._update(len(self.memory) - 1)
        if self.cfg.replay and len(self.memory) > 1:
            for i in self.rng.integers(len(self.memory), size=self.cfg.replay):
                self._update(int(i))

    def _remember(self, episode: list, reward: float) -> None:
        self.memory.append((episode, reward))
        self._keys.append([(self._state(episode[:t]), _key(episode[t]))
                           for t in range(len(episode))])
        bisect.insort(self._sorted, reward)

    def _update(self, i: int) -> None:
        c, keys = self.cfg, self._keys[i]
        reward = self.normalised(self.memory[i][1])
        T = len(keys)
        r_step = reward / T if c.shaping else 0.0
        for t in reversed(range(T)):
            s, a = keys[t]
            target = reward if t == T - 1 else r_step + c.gamma * self._max_q(keys[t + 1][0])
            row = self.q.setdefault(s, {})
            row[a] = (1 - c.alpha) * row.get(a, c.q_init) + c.alpha * target

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "q": self.q, "episode": self.episode,
                "memory": [[e, r] for e, r in self.memory]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.q = {s: dict(row) for s, row in state["q"].items()}
        self.episode = int(state["episode"])
        self.memory, self._keys, self._sorted = [], [], []
        for e, r in state["memory"]:
            self._remember(e, float(r))
