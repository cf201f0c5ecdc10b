"""The calibrated latency predictor: recovers known corrections, chooses the simplest form that
works, stays additive, refuses other tables."""

import numpy as np
import pytest

from nasforge.cost.latency_predictor import (
    FORMS,
    LatencyPredictor,
    fit_predictor,
    predictor_path,
    table_digest,
)
from nasforge.cost.lut import LatencyTable
from nasforge.errors import UserError

OPS = {"a": 100.0, "b": 250.0, "c": 40.0}


def _table() -> LatencyTable:
    entries = {f"{op}|8|8|4|4|{s}": v * s for op, v in OPS.items() for s in (1, 2)}
    entries["id|8|8|4|4|1"] = 10.5  # a no-op: timed like the runtime overhead
    return LatencyTable("syn", "cpu", {"target": "cpu"}, entries, overhead_us=10.0)


def _nets(n: int, rng: np.random.Generator) -> list[list[str]]:
    keys = list(_table().entries)
    return [list(rng.choice(keys, size=int(rng.integers(3, 9)))) for _ in range(n)]


def _truth(t, nets, b0, scale, offset):
    """measured = b0 + Σ scale_op · corrected + offset_op (noop entries: corrected only)."""
    out = []
    for ks in nets:
        v = b0
        for k in ks:
            op = k.split("|")[0]
            c = t.corrected(k)
            v += c if op == "id" else scale.get(op, scale.get("*", 1.0)) * c + offset.get(
                op, offset.get("*", 0.0))
        out.append(v)
    return np.array(out)


def test_recovers_global_scale_and_offset():
    t, rng = _table(), np.random.default_rng(0)
    nets = _nets(30, rng)
    y = _truth(t, nets, 50.0, {"*": 0.9}, {"*": -20.0})
    p = fit_predictor(t, nets, y, forms=["scale_offset"])
    assert p.form == "scale_offset"
    assert p.intercept == pytest.approx(50.0, abs=1e-6)
    assert p.scale["*"] == pytest.approx(0.9, abs=1e-9)
    assert p.offset["*"] == pytest.approx(-20.0, abs=1e-6)
    assert [p.predict(t, k) for k in nets] == pytest.approx(list(y))


def test_recovers_per_op_offsets_without_ridge():
    t, rng = _table(), np.random.default_rng(1)
    nets = _nets(40, rng)
    off = {"a": -30.0, "b": 15.0, "c": -5.0}
    y = _truth(t, nets, 80.0, {}, off)
    p = fit_predictor(t, nets, y, forms=["op_offset"], ridge=0.0)
    for op, v in off.items():
        assert p.offset[op] == pytest.approx(v, abs=1e-6)
    assert p.intercept == pytest.approx(80.0, abs=1e-5)


def test_cross_validation_picks_the_simplest_form_that_explains_the_data():
    t, rng = _table(), np.random.default_rng(2)
    nets = _nets(25, rng)
    noise = 1 + 0.002 * rng.standard_normal(25)
    p = fit_predictor(t, nets, _truth(t, nets, 40.0, {}, {}) * noise)
    assert p.form == "intercept"
    q = fit_predictor(t, nets, _truth(t, nets, 40.0, {}, {"*": -25.0}) * noise)
    assert q.form == "offset"
    assert set(q.calibration["cv_mape"]) == set(FORMS)
    # per-op offsets that differ a lot need the per-op form
    r = fit_predictor(t, nets, _truth(t, nets, 40.0, {}, {"a": -60.0, "b": 60.0}) * noise)
    assert r.form in ("op_offset", "op_scale_offset")


def test_predict_is_additive_over_entries():
    t, rng = _table(), np.random.default_rng(3)
    nets = _nets(20, rng)
    p = fit_predictor(t, nets, _truth(t, nets, 10.0, {"b": 1.2}, {"a": -8.0}),
                      forms=["op_scale_offset"])
    for ks in nets[:5]:
        assert p.predict(t, ks) == pytest.approx(p.intercept + sum(p.entry_cost(t, k)
                                                                   for k in ks))


def test_save_load_and_table_refusal(tmp_path):
    t, rng = _table(), np.random.default_rng(4)
    nets = _nets(10, rng)
    p = fit_predictor(t, nets, _truth(t, nets, 5.0, {}, {"*": -3.0}), arch_ids=["x", "y"])
    f = predictor_path(tmp_path / "lut.json")
    assert f.name == "lut.predictor.json"
    p.save(f)
    q = LatencyPredictor.load(f)
    assert q.to_dict() == p.to_dict() and q.table_digest == table_digest(t)
    assert q.calibration["arch_ids"] == ["x", "y"]
    other = _table()
    other.entries["a|8|8|4|4|1"] += 1.0
    with pytest.raises(UserError, match="another latency table"):
        q.predict(other, nets[0])


def test_bad_input():
    t = _table()
    with pytest.raises(UserError, match="≥ 3"):
        fit_predictor(t, [["a|8|8|4|4|1"]], [100.0])
    nets = _nets(5, np.random.default_rng(5))
    with pytest.raises(UserError, match="unknown predictor form"):
        fit_predictor(t, nets, [100.0] * 5, forms=["quadratic"])
    with pytest.raises(UserError, match="positive"):
        fit_predictor(t, nets, [100.0, -1, 3, 4, 5])
