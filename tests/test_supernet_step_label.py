"""``benchmarks/supernet_step.py --config NAME`` labels its line with NAME (it printed the
``--supernet`` default, ``fbnet``, for ``densenas-224-b4``). The timing itself is stubbed:
this checks the label and the case handed to it, not a speed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("supernet_step",
                                                  ROOT / "benchmarks" / "supernet_step.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "supernet_step", mod)  # its dataclasses look it up
    spec.loader.exec_module(mod)
    seen = []

    def measure(case, variants, device, rounds, warmup, memory=True):
        seen.append(case)
        return [{"label": label, "flags": {}, "ms_per_step": 1.0, "cpu_ms_per_step": 1.0,
                 "images_per_s": 1.0, "peak_memory_mb": None, "rounds": rounds,
                 "min_ms": 1.0} for label, _ in variants]

    monkeypatch.setattr(mod, "measure", measure)
    # main() sets the thread count (default 2): keep this process's (other tests' numerics)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    mod.seen = seen
    return mod


@pytest.mark.parametrize("config", ["densenas-224-b4", "fbnet-22x9-32-b32"])
def test_a_named_config_labels_its_line_and_runs_its_own_supernet(bench, capsys, config):
    assert bench.main(["--config", config, "--threads", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{config}: "), out
    assert [c.supernet for c in bench.seen] == [bench.CONFIGS[config].supernet]
    assert bench.main(["--config", config, "--json", "--device", "cpu"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["case"]["supernet"] == bench.CONFIGS[config].supernet
