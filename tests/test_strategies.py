import json

import numpy as np
import pytest

from nasforge.arch import thaw
from nasforge.errors import UserError
from nasforge.spaces.categorical import CategoricalSpace
from nasforge.spaces.nsc import NSCConfig, NSCSpace
from nasforge.spaces.registry import get_space
from nasforge.strategies.base import STRATEGIES, create_strategy
from nasforge.strategies.qlearning import QLearning, QLearningConfig
from nasforge.strategies.random import RandomSearch
from nasforge.testing.trials import peak

BEST = [[1, "conv", 3, 0, 0], [2, "max_pool", 3, 1, 0], [3, "add", 0, 0, 2],
        [4, "terminal", 0, 0, 0]]
SPACE = NSCSpace(NSCConfig("nsc-toy", max_layers=3))  # 4472 blocks


def synthetic_reward(genes):
    """Share of BEST's layers matched as a prefix: the best block (reward 1) is known."""
    m = 0
    for a, b in zip(thaw(genes), BEST):
        if a != b:
            break
        m += 1
    return m / len(BEST)


def episodes_to_find(name, seed, cap, options=None):
    s = create_strategy(name, SPACE, seed=seed, options=options)
    for i in range(cap):
        a = s.ask()
        if thaw(a.genes) == BEST:
            return i + 1
        s.tell(a, synthetic_reward(a.genes))
    return cap + 1  # not found


def test_qlearning_finds_best_block_faster_than_random():
    cap = 1500
    q = [episodes_to_find("qlearning", s, cap, {"decay_episodes": 300}) for s in range(3)]
    r = [episodes_to_find("random", s, cap) for s in range(3)]
    assert all(x <= cap for x in q), q  # paper α = 0.01, γ = 1, replay
    assert all(qi < ri for qi, ri in zip(q, r)), (q, r)
    assert np.mean(q) < np.mean(r) / 2


def test_q_update_matches_hand_computation():
    space = CategoricalSpace({"a": [0, 1], "b": [0, 1]})
    # the paper's update on the raw reward (rank normalisation off), to check it by hand
    q = QLearning(space, options={"replay": 0, "alpha": 0.5, "q_init": 0.0, "normalise": "none"})
    arch = space.arch({"a": 1, "b": 0})
    q.tell(arch, 1.0)
    # backwards: last step Q = 0.5·1; first step target = r/T + γ·max Q(s') = 0.5 + 0.5
    assert q.value([["a", 1]], ["b", 0]) == pytest.approx(0.5)
    assert q.value([], ["a", 1]) == pytest.approx(0.5 * (0.5 + 0.5))
    q2 = QLearning(space, options={"replay": 0, "alpha": 0.5, "q_init": 0.0, "shaping": False,
                                   "normalise": "none"})
    q2.tell(arch, 1.0)
    assert q2.value([], ["a", 1]) == pytest.approx(0.5 * 0.5)


def test_epsilon_schedules():
    c = QLearningConfig(decay_episodes=10)
    assert c.epsilon(0) == 1.0 and c.epsilon(10) == pytest.approx(0.1)
    assert c.epsilon(5) == pytest.approx(0.55) and c.epsilon(99) == pytest.approx(0.1)
    # follows the engine's progress fraction (here over the whole run)
    by_run = QLearningConfig(decay_episodes=None, explore=1.0)
    assert by_run.epsilon(1000, 0.0) == 1.0 and by_run.epsilon(0, 0.5) == pytest.approx(0.55)
    p = QLearningConfig(schedule=[[1.0, 3], [0.5, 2], [0.1, 1]])
    assert [p.epsilon(i) for i in range(7)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.1, 0.1]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("space", [SPACE, CategoricalSpace({"x": [0, 1, 2], "y": ["a", "b"]})],
                         ids=["nsc", "categorical"])
def test_state_dict_round_trip_continues_exactly(name, space):
    opts = {"population": 4, "sample_size": 2} if name == "evolution" else None
    s = create_strategy(name, space, seed=3, options=opts)
    reward = (lambda g: synthetic_reward(g)) if space is SPACE else (lambda g: peak(g))
    pending = [s.ask() for _ in range(3)]  # asynchronous: asks ahead of tells
    for _ in range(6):
        a = pending.pop(0)
        s.tell(a, reward(a.genes))
        pending.append(s.ask())
    state = json.loads(json.dumps(s.state_dict()))  # must be plain JSON
    clone = create_strategy(name, space, seed=99, options=opts)
    clone.load_state_dict(state)
    for a in pending:
        s.tell(a, reward(a.genes))
        clone.tell(a, reward(a.genes))
    for _ in range(5):
        a, b = s.ask(), clone.ask()
        assert a == b
        s.tell(a, reward(a.genes))
        clone.tell(b, reward(b.genes))


def test_aging_evolution_removes_the_oldest():
    space = CategoricalSpace({"x": list(range(10))})
    s = create_strategy("evolution", space, seed=0, options={"population": 3, "sample_size": 2})
    archs = [space.arch({"x": i}) for i in range(5)]
    for i, a in enumerate(archs):
        s.tell(a, 10.0 - i)  # the oldest is the best: aging must still drop it
    assert [a.genes["x"] for a, _ in s.population] == [2, 3, 4]


# (The toy-optimum test that stood here passed for a uniform sampler too: 120 draws of a
# 48-point space. tests/test_contract_strategies.py holds the replacement: every registered
# strategy against random search on the same seeds of a real tabular benchmark.)


def test_default_epsilon_follows_the_run():
    c = QLearningConfig()  # ε 1.0 → 0.1 over the first `explore` fraction of the run, then 0.1
    assert c.epsilon(0, 0.0) == 1.0
    assert c.epsilon(0, c.explore / 2) == pytest.approx(0.55)
    assert c.epsilon(0, c.explore) == pytest.approx(0.1) and c.epsilon(0, 0.9) == pytest.approx(0.1)
    assert c.epsilon(10_000, 0.0) == 1.0  # the number of asks alone does not decay it


def test_reinforce_moves_probability_towards_reward():
    space = CategoricalSpace({"a": [0, 1, 2]})
    s = create_strategy("reinforce", space, seed=0, options={"lr": 0.05, "entropy": 0.0})
    p0 = s.probabilities([])[1]
    for _ in range(60):
        a = s.ask()
        s.tell(a, 1.0 if a.genes["a"] == 1 else 0.0)
    assert s.probabilities([])[1] > max(p0, 0.8)
    assert s.baseline is not None


def test_bad_options_and_spaces_are_user_errors():
    with pytest.raises(UserError, match="unknown option"):
        create_strategy("evolution", SPACE, options={"populaton": 3})
    with pytest.raises(UserError, match="unknown strategy"):
        create_strategy("bayes", SPACE)
    with pytest.raises(UserError, match="available: evolution, qlearning, random, reinforce"):
        create_strategy("bayes", SPACE)  # a miss lists what exists
    with pytest.raises(UserError, match="decision by decision"):
        create_strategy("qlearning", get_space("fbnet-fmnist"))
    with pytest.raises(UserError, match="alpha"):
        create_strategy("qlearning", SPACE, options={"alpha": 0.0})


def test_registry_takes_user_strategies_beside_the_builtins():
    class Fixed(RandomSearch):
        name = "fixed"

    STRATEGIES.register("fixed", Fixed)
    try:
        assert isinstance(create_strategy("fixed", SPACE), Fixed)
        assert {"random", "evolution", "reinforce", "qlearning"} <= set(STRATEGIES.names())
        assert isinstance(create_strategy("blockqnn", SPACE), QLearning)  # the CLI's alias
        with pytest.raises(UserError, match="already registered"):
            STRATEGIES.register("random", Fixed)  # a built-in is never replaced
    finally:
        STRATEGIES.unregister("fixed")
