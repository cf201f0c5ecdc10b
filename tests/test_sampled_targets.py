"""Sample-based methods enforce resource targets: each trial's latency is measured on the
target device and a trial that misses a target is ranked below every trial that meets it."""

from __future__ import annotations

import numpy as np
import pytest

from nasforge.cost.targets import Targets
from nasforge.evaluators import DataSpec, EarlyStopEvaluator
from nasforge.spaces.registry import get_space


@pytest.fixture(scope="module")
def arch_and_space():
    space = get_space("nsc-fast")
    return space, space.sample(np.random.default_rng(0))


def _evaluate(space, arch, **targets):  # noqa: ANN001, ANN202
    ev = EarlyStopEvaluator(space, DataSpec("digits", subset=120), epochs=1,
                            recipe={"batch_size": 32, "flip": False},
                            targets=Targets(**targets).to_dict())
    return ev(arch.to_dict(), 0)


def test_a_missed_latency_target_is_measured_and_penalised(arch_and_space):
    space, arch = arch_and_space
    free = _evaluate(space, arch)
    assert "latency_ms" not in free  # no target: nothing measured
    tight = _evaluate(space, arch, latency_ms=1e-6)
    loose = _evaluate(space, arch, latency_ms=1e6)
    assert tight["latency_ms"] > 0 and loose["latency_ms"] > 0
    assert tight["meets_target"] is False and loose["meets_target"] is True
    assert loose["reward"] == pytest.approx(free["reward"])
    assert tight["reward"] < free["reward"] - 1.0  # below every feasible reward


def test_a_missed_flops_target_is_penalised_by_its_violation(arch_and_space):
    space, arch = arch_and_space
    free = _evaluate(space, arch)
    half = _evaluate(space, arch, flops=free["flops"] / 2)
    assert half["meets_target"] is False
    assert half["violation"] == pytest.approx(1.0)
    # not trained: the reward of accuracy 0, less 1 + violation
    assert half["val_acc"] is None and half["trained"] is False and half["epochs"] == 0
    assert half["reward"] == pytest.approx(free["reward"] - free["val_acc"] - 2.0)


def test_an_infeasible_trial_is_not_trained(arch_and_space, monkeypatch):
    from nasforge import evaluators

    space, arch = arch_and_space
    trained = []
    real = evaluators.train_model
    monkeypatch.setattr(evaluators, "train_model",
                        lambda *a, **k: trained.append(1) or real(*a, **k))
    out = _evaluate(space, arch, latency_ms=1e-6)
    assert trained == [] and out["latency_ms"] > 0 and out["meets_target"] is False
    out = _evaluate(space, arch, latency_ms=1e6)
    assert trained == [1] and out["meets_target"] is True and out["val_acc"] is not None


def test_a_trial_scores_on_at_most_val_images_of_the_validation_split(arch_and_space,
                                                                      monkeypatch):
    from nasforge import evaluators

    space, arch = arch_and_space
    seen = []
    real = evaluators.train_model

    def spy(model, data, recipe, **k):
        seen.append(len(data.val))
        assert k.get("test") is False  # the reward needs no test accuracy: not computed
        return real(model, data, recipe, **k)

    monkeypatch.setattr(evaluators, "train_model", spy)
    spec = DataSpec("digits", subset=400)
    full = len(evaluators.cached_dataset(spec).val)
    for cap, want in ((20, 20), (None, full), (10_000, full)):
        ev = EarlyStopEvaluator(space, spec, epochs=1, val_images=cap,
                                recipe={"batch_size": 32, "flip": False})
        ev(arch.to_dict(), 0)
        assert seen[-1] == want


def test_the_flops_term_is_flat_below_a_flops_target():
    space = get_space("nsc-fast")
    paper = EarlyStopEvaluator(space, DataSpec("digits"))
    flat = EarlyStopEvaluator(space, DataSpec("digits"), macs_floor=2e6)
    # the paper's term: a block a third of the size earns μ·log 3 over an equally accurate one
    assert paper.reward(0.8, 600_000, None) - paper.reward(0.8, 1_800_000, None) == \
        pytest.approx(0.01 * np.log(3))
    # below a 2 M MACs target both see the target: only accuracy separates them
    assert flat.reward(0.8, 600_000, None) == pytest.approx(flat.reward(0.8, 1_800_000, None))
    assert flat.reward(0.81, 1_800_000, None) > flat.reward(0.8, 600_000, None)
    assert flat.reward(0.8, 4e6, None) == pytest.approx(paper.reward(0.8, 4e6, None))  # above


def test_sampled_settings_floor_the_flops_term_at_the_flops_target(monkeypatch, tmp_path):
    from nasforge.methods import sampled
    from nasforge.methods.api import make_settings
    from nasforge.run.rundir import RunDir

    seen = []
    monkeypatch.setattr(sampled, "EarlyStopEvaluator",
                        lambda *a, **k: seen.append(k["macs_floor"]) or (_ for _ in ()).throw(
                            RuntimeError("stop")))
    for extra, want in (({"flops": 3e6}, 3e6), ({"flops": 3e6, "below_target": "reward"}, None),
                        ({}, None)):
        s = make_settings("blockqnn", out="unused", subset=100, **extra)
        with pytest.raises(RuntimeError, match="stop"):
            sampled.run(s, RunDir(tmp_path))
        assert seen[-1] == want
