"""A resumed differentiable run always prices with the latency table in its own run directory.

Every differentiable method goes through the one load-or-build (CostModel.for_run): here the
run directory holds a table whose entries no measurement would give, ``--lut`` points at a
different one, and the search must use — and report — the run directory's."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from nasforge.arch import Arch
from nasforge.cost.lut import LatencyTable
from nasforge.data import load_dataset
from nasforge.methods import differentiable
from nasforge.run.rundir import RunDir

SETTINGS = {"fbnet": "FBNetSettings", "fbnetv2": "FBNetV2Settings",
            "densenas": "DenseNASSettings"}


def _table(space, entries_rng, low, high, overhead):  # noqa: ANN001, ANN202
    items = space.lut_items(10, 1)
    entries = {str(i.key): float(entries_rng.uniform(low, high)) for i in items}
    return LatencyTable(space.name, "cpu", {"target": "cpu"}, entries=entries,
                        overhead_us=overhead)


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_resumed_run_uses_the_table_of_its_own_run_directory(tmp_path, method):
    mod = importlib.import_module(f"nasforge.methods.{method}")
    settings_cls = getattr(mod, SETTINGS[method])
    data = load_dataset("digits", subset=48, seed=0)
    space = mod.METHOD.space_for("auto", data.input_shape)
    own = _table(space, np.random.default_rng(0), 1000.0, 2000.0, 7.0)
    other = _table(space, np.random.default_rng(1), 1.0, 2.0, 0.5)
    other.save(tmp_path / "other.json")
    s = settings_cls(dataset="digits", subset=48, epochs=1, batch_size=16, cost="latency",
                     samples=1, lut=str(tmp_path / "other.json"), out=str(tmp_path / "run"),
                     progress=False, method=method)
    rd = RunDir.create(s.out, s.to_dict())
    own.save(rd.file("lut.json"))

    out = differentiable.search(mod.METHOD, s, rd, data)

    assert out.cost_model.lut.entries == own.entries
    search = json.loads(rd.file("search.json").read_text())
    for c in search["candidates"]:
        arch = Arch(space.name, c["arch"])
        want = own.predict(space.lut_keys(arch, 10, 1)) / 1000.0
        assert c["latency_ms"] == pytest.approx(want, rel=1e-9)
    # and the stored table is still the run's own, untouched
    assert LatencyTable.load(rd.file("lut.json")).entries == own.entries
