"""Latency tables: keys, fingerprint refusal, JSON round trip, building, validation."""

import json

import numpy as np
import pytest
from torch import nn

from nasforge.cost import lut as L
from nasforge.cost.measure import device_fingerprint
from nasforge.errors import UserError
from nasforge.spaces.fbnet import FBNetSpace, Skeleton, cost_tables


def tiny_space(size: int = 8) -> FBNetSpace:
    return FBNetSpace(Skeleton("tiny-fbnet", size, 8, 2, ((8, 2, 1), (16, 1, 2)), 16,
                               in_channels=1, candidates=("k3_e1", "k5_e3", "skip")))


def _items(n=3):
    return [L.LutItem(L.LutKey(f"conv{i}", 4, 4, 8, 8, 1), lambda: nn.Conv2d(4, 4, 3, padding=1),
                      (4, 8, 8)) for i in range(n)]


def test_key_string_round_trip():
    k = L.LutKey("k3_e6", 16, 24, 28, 28, 2, extra="classes=10")
    assert L.LutKey.parse(str(k)) == k
    assert L.LutKey.parse(str(L.LutKey("skip", 8, 8, 7, 7, 1))).extra == ""
    with pytest.raises(UserError):
        L.LutKey.parse("k3|1|2")


def test_stride_and_shape_change_the_key():
    sp = tiny_space()
    tables, items = cost_tables(sp, 10, 1)
    # layers 0 and 2 are the stride-1 and the stride-2 first layers of their stages
    strides = [s.stride for s in sp.specs]
    i1, i2 = strides.index(1), strides.index(2)
    k1 = tables.keys[i1][sp.candidates.index("k3_e1")]
    k2 = tables.keys[i2][sp.candidates.index("k3_e1")]
    assert (k1.stride, k2.stride) == (1, 2) and str(k1) != str(k2)
    # layers of identical shape share keys (same op, same time); different shapes never do
    flat = [str(k) for row in tables.keys for k in row]
    shapes = {(s.cin, s.cout, s.h, s.w, s.stride) for s in sp.specs}
    assert len(set(flat)) == len(shapes) * len(sp.candidates)
    # another input size changes every key's shape
    other, _ = cost_tables(tiny_space(16), 10, 1)
    assert not set(flat) & {str(k) for row in other.keys for k in row}
    # the head key knows the number of classes
    assert str(tables.fixed_keys[1]) != str(cost_tables(sp, 7, 1)[0].fixed_keys[1])


def test_fingerprint_refusal(tmp_path):
    fp = device_fingerprint("cpu", 1)
    t = L.LatencyTable("s", "cpu", fp, {"a|1|1|1|1|1": 5.0})
    t.check_compatible("s", fp)
    for other in ({**fp, "cpu": "Some Other CPU"}, device_fingerprint("cpu", 2),
                  device_fingerprint("cpu", 1, batch=8), device_fingerprint("cpu", 1,
                                                                            dtype="bfloat16")):
        with pytest.raises(UserError, match="another device"):
            t.check_compatible("s", other)
    with pytest.raises(UserError, match="space"):
        t.check_compatible("other-space", fp)
    # load_or_build refuses a stored table of another device instead of mixing entries
    alien = L.LatencyTable("s", "cpu", {**fp, "torch": "0.0.1"}, {"a|1|1|1|1|1": 5.0})
    p = tmp_path / "t.json"
    alien.save(p)
    with pytest.raises(UserError, match="another device"):
        L.load_or_build("s", _items(1), path=p, progress=False)


def test_save_load_round_trip(tmp_path):
    t = L.LatencyTable("s", "cpu", device_fingerprint("cpu", 1),
                       {"b|1|2|3|4|1": 2.5, "a|1|2|3|4|2|x=1": 7.25}, overhead_us=1.5,
                       statistic="p10", warmup=3, repeats=9, extra={"probe_us": 4.0})
    p = tmp_path / "sub" / "t.json"
    t.save(p)
    u = L.LatencyTable.load(p)
    assert u.to_dict() == t.to_dict()
    d = json.loads(p.read_text())
    assert d["unit"] == "us" and d["schema"] == L.SCHEMA
    d["schema"] = 99
    p.write_text(json.dumps(d))
    with pytest.raises(UserError, match="schema"):
        L.LatencyTable.load(p)
    with pytest.raises(UserError, match="cannot read"):
        L.LatencyTable.load(tmp_path / "missing.json")


def test_predict_plain_and_corrected():
    t = L.LatencyTable("s", "cpu", {}, {"a|1|1|1|1|1": 10.0, "b|1|1|1|1|1": 30.0},
                       overhead_us=4.0)
    keys = ["a|1|1|1|1|1", "b|1|1|1|1|1", "b|1|1|1|1|1"]
    assert t.predict(keys, "plain") == 70.0
    assert t.predict(keys, "corrected") == pytest.approx(70.0 - 3 * 4.0 + 4.0)
    with pytest.raises(UserError, match="no entry"):
        t.predict(["zz|1|1|1|1|1"])
    with pytest.raises(UserError, match="mode"):
        t.predict(keys, "magic")


def test_build_measures_each_key_once_and_extends(tmp_path):
    items = _items(3) + _items(2)  # duplicate keys
    t = L.build_table("s", items, repeats=4, rounds=2, warmup=1, progress=False)
    assert len(t.entries) == 3 and all(v > 0 for v in t.entries.values())
    assert t.overhead_us > 0 and t.extra["probe_us"] > 0
    p = tmp_path / "t.json"
    L.load_or_build("s", _items(3), path=p, progress=False)
    mtime = p.stat().st_mtime_ns
    again = L.load_or_build("s", _items(3), path=p, progress=False)  # nothing to measure
    assert p.stat().st_mtime_ns == mtime and len(again.entries) == 3
    more = L.load_or_build("s", _items(4), path=p, progress=False)
    assert len(more.entries) == 4 and len(L.LatencyTable.load(p).entries) == 4
    with pytest.raises(UserError, match="statistic"):
        L.load_or_build("s", _items(5), path=p, statistic="median", progress=False)


def test_cache_path_separates_devices_and_statistics():
    fp = device_fingerprint("cpu", 1)
    assert L.cache_path("s", fp) != L.cache_path("s", device_fingerprint("cpu", 2))
    assert L.cache_path("s", fp, "min") != L.cache_path("s", fp, "median")


def test_validate_on_tiny_space_returns_the_json_shape(tmp_path, capsys):
    from nasforge.cost.validate import validate_lut

    sp = tiny_space()
    items = sp.lut_items(10, 1)
    rep = validate_lut(sp, items, 1, 10, samples=4, calibration=5,
                       rng=np.random.default_rng(0), lut_path=tmp_path / "t.json",
                       progress=False)
    assert set(rep) == {"plain", "improved", "samples"} and rep["samples"] == 4
    for name in ("plain", "improved"):
        assert set(rep[name]) == {"mape", "within_10", "kendall_tau"}
        assert rep[name]["mape"] >= 0 and 0 <= rep[name]["within_10"] <= 1
        assert -1 <= rep[name]["kendall_tau"] <= 1
    json.dumps(rep)
    saved = json.loads((tmp_path / "t.validate.json").read_text())
    assert len(saved["archs"]) == 4 and saved["predictor"]["freshly_calibrated"]
    # calibration and validation architectures are disjoint
    from nasforge.cost.latency_predictor import arch_id

    calib = set(saved["predictor"]["calibration"]["arch_ids"])
    assert not calib & {arch_id(a["genes"]) for a in saved["archs"]}
    assert (tmp_path / "t.predictor.json").is_file()
    out = capsys.readouterr().out
    assert "plain" in out and "improved" in out
    # a second run reuses the stored predictor
    validate_lut(sp, items, 1, 10, samples=3, calibration=5, rng=np.random.default_rng(1),
                 lut_path=tmp_path / "t.json", progress=False)
    assert not json.loads((tmp_path / "t.validate.json").read_text())["predictor"][
        "freshly_calibrated"]


@pytest.mark.slow
def test_cli_lut_build_and_validate_json(tmp_path, capsys):
    from nasforge.cli import main

    t = tmp_path / "fm.json"
    assert main(["lut", "build", "--space", "fbnet-fmnist", "--out", str(t),
                 "--no-progress"]) == 0
    assert L.LatencyTable.load(t).fingerprint["clock"] == "thread"
    capsys.readouterr()
    assert main(["lut", "validate", "--space", "fbnet-fmnist", "--out", str(t), "--samples",
                 "3", "--calibration", "4", "--json", "--no-progress"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    rep = json.loads(last)
    assert list(rep) == ["plain", "improved", "samples"] and rep["samples"] == 3
    assert set(rep["improved"]) == {"mape", "within_10", "kendall_tau"}
    assert main(["lut", "validate", "--space", "fbnet-fmnist", "--target", "tpu"]) == 2
