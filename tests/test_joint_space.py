"""The joint architecture × recipe space: decisions round-trip, analytic counts equal the
built model's, the recipe genes map onto Recipe fields, the predictor's view splits them."""

import numpy as np
import pytest

from nasforge.arch import Arch, thaw
from nasforge.cost.flops import count_module
from nasforge.errors import UserError
from nasforge.predictor.decisions import from_unit
from nasforge.predictor.encoding import PredictorView, encode_archs
from nasforge.spaces.joint import DEFAULT_RECIPE, JointSpace
from nasforge.spaces.registry import get_space
from nasforge.train.trainer import Recipe


@pytest.mark.parametrize("name", ["joint-fmnist", "joint-cifar"])
def test_counts_decisions_and_recipe(name):
    sp = get_space(name)
    assert isinstance(sp, PredictorView)
    rng = np.random.default_rng(0)
    in_ch = sp.default_io[0]
    for _ in range(3):
        a = sp.sample(rng)
        assert sp.arch_from_indices(sp.indices(a)) == a
        c = sp.counts(a, 10, in_ch)
        m = count_module(sp.build(a, 10, in_ch), (in_ch, sp.input_size, sp.input_size))
        assert (c.macs, c.params) == (m.macs, m.params)
        r = Recipe(**sp.recipe(a))  # every recipe gene is a Recipe field
        assert r.epochs == a.genes["recipe"]["epochs"]
        assert (r.ema > 0) == a.genes["recipe"]["ema"]
    xa, xr = encode_archs(sp, [sp.sample(rng) for _ in range(4)])
    assert xa.shape == (4, sp.arch_encoding().dim) and xr.shape == (4, sp.recipe_encoding().dim)
    assert 0 <= xa.min() and xa.max() <= 1


def test_resolution_and_recipe_change_what_they_should():
    sp = JointSpace("joint-fmnist")
    lo = from_unit(sp, np.zeros(len(sp.decisions())))
    hi = from_unit(sp, np.full(len(sp.decisions()), 0.999))
    assert lo.genes["resolution"] == 28 and hi.genes["resolution"] == 12
    assert sp.counts(hi, 10, 1).macs != sp.counts(lo, 10, 1).macs
    d = sp.with_recipe(hi, DEFAULT_RECIPE)
    assert sp.recipe(d)["lr"] == 0.1 and sp.recipe(d)["optimizer"] == "sgd"
    assert sp.split_values(d)[0] == sp.split_values(hi)[0]  # same architecture


def test_validate_refuses_a_bool_for_a_number_and_a_missing_recipe():
    sp = JointSpace("joint-fmnist")
    g = thaw(sp.sample(np.random.default_rng(1)).genes)
    g["recipe"]["mixup"] = False  # == 0.0, but not an option of a numeric decision
    with pytest.raises(UserError, match="mixup"):
        sp.validate(Arch(sp.name, g))
    g["recipe"].pop("mixup")
    with pytest.raises(UserError, match="recipe"):
        sp.validate(Arch(sp.name, g))
