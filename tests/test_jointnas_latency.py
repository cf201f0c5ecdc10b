"""JointNAS latency targets (issue 13): the joint space is priced by the FBNetV2/V3-family
latency table (stem, one item per block, head), and the genetic fine stage under a latency
target never proposes nor returns a violator (property test over random targets, like the
FLOPs one in tests/test_predictor.py; the table's values are synthetic so the test measures
nothing)."""

from __future__ import annotations

import numpy as np
import pytest

from nasforge.arch import Arch
from nasforge.cost.flops import count_module
from nasforge.cost.lut import LatencyTable
from nasforge.cost.model import CostModel
from nasforge.cost.targets import Targets
from nasforge.errors import UserError
from nasforge.methods.jointnas import JointNASSettings
from nasforge.predictor.genetic import GeneticConfig, genetic_search
from nasforge.spaces.joint import JointSpace


@pytest.fixture(scope="module")
def priced():
    space = JointSpace("joint-fmnist")
    items = space.lut_items(10, 1)
    rng = np.random.default_rng(0)
    # synthetic µs per item, uniform at random: the latency order is not the FLOPs order
    table = LatencyTable(space.name, "cpu", {}, {
        str(i.key): float(rng.uniform(5, 50)) for i in items})
    return space, items, CostModel(space, 10, (1, 28, 28), lut=table)


def test_the_table_covers_every_network_and_its_items_add_up_to_the_model(priced):
    space, items, _ = priced
    by = {str(i.key): i for i in items}
    rng = np.random.default_rng(1)
    for _ in range(3):
        a = space.sample(rng)
        keys = [str(k) for k in space.lut_keys(a, 10, 1)]
        assert all(k in by for k in keys)
        assert len(keys) == 2 + sum(a.genes["depths"])  # stem, every block, head
        macs = sum(count_module(by[k].build().eval(), by[k].input_shape).macs for k in keys)
        assert macs == count_module(space.build(a, 10, 1).eval(), (1, 28, 28)).macs


@pytest.mark.parametrize("seed", range(4))
def test_genetic_search_never_proposes_or_returns_a_latency_violator(priced, seed):
    space, _, cm = priced
    rng = np.random.default_rng(100 + seed)
    lats = [cm.costs(space.sample(rng)).latency_ms for _ in range(200)]
    targets = Targets(latency_ms=float(np.quantile(lats, rng.uniform(0.05, 0.6))))

    def violation(a: Arch) -> float:
        return targets.violation(cm.costs(a))

    def score(batch):  # bigger is "better": the optimum lies on the latency boundary
        for a in batch:
            assert violation(a) == 0.0, "a violating architecture was proposed"
        return np.array([cm.costs(a).latency_ms for a in batch])

    res = genetic_search(space, score, violation, starts=[space.sample(rng) for _ in range(5)],
                         cfg=GeneticConfig(init_samples=100), seed=seed)
    assert violation(res.best) == 0.0
    assert all(violation(a) == 0.0 for a, _ in res.population)
    assert cm.costs(res.best).latency_ms <= targets.latency_ms


def test_jointnas_takes_a_latency_target_but_not_a_memory_one():
    JointNASSettings(latency_ms=1.0, target="cpu").validate()  # refused before issue 13
    with pytest.raises(UserError, match="--peak-memory-mb"):
        JointNASSettings(peak_memory_mb=1.0).validate()
