"""``RUN_DIR/scalars.jsonl``: what the loops append while a run goes, read back by a live
report — whole lines only, the last record of a redone step, TensorBoard only when installed."""

import importlib.machinery
import json
import math
import sys
import types

from nasforge.run import scalars


def test_records_round_trip_and_a_cut_last_line_is_skipped(tmp_path):
    scalars.log_scalars(tmp_path, "supernet", 0, {"w_loss": 2.5, "p_theta": [[0.5, 0.5]],
                                                  "cost": math.nan, "note": object()})
    scalars.log_scalars(tmp_path / "supernet.ckpt", "supernet", 1, {"w_loss": 2.0})  # a file
    with open(tmp_path / scalars.FILE, "a") as fh:
        fh.write('{"kind": "supernet", "step": 2, "w_lo')  # a write in progress
    recs = scalars.read_scalars(tmp_path)
    assert [(r["kind"], r["step"], r["w_loss"]) for r in recs] == [("supernet", 0, 2.5),
                                                                   ("supernet", 1, 2.0)]
    assert recs[0]["p_theta"] == [[0.5, 0.5]] and recs[0]["cost"] is None  # NaN: valid JSON
    assert isinstance(recs[0]["note"], str) and recs[0]["time"] > 0
    for line in (tmp_path / scalars.FILE).read_text().splitlines()[:2]:
        json.loads(line)  # strict JSON, one object per line


def test_a_resumed_run_redoing_a_step_keeps_its_last_record(tmp_path):
    for step, v in ((0, 1.0), (1, 2.0), (1, 3.0), (2, 4.0)):
        scalars.log_scalars(tmp_path, "trial", step, {"reward": v})
    scalars.log_scalars(tmp_path, "verify", 0, {"measured": 0.5})
    assert [(r["step"], r["reward"]) for r in scalars.read_scalars(tmp_path, "trial")] == \
        [(0, 1.0), (1, 3.0), (2, 4.0)]
    assert len(scalars.read_scalars(tmp_path)) == 4


def test_nowhere_logs_nothing_and_no_tensorboard_is_no_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scalars.log_scalars(None, "supernet", 0, {"w_loss": 1.0})
    assert not list(tmp_path.iterdir())
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # not installed: find_spec fails
    monkeypatch.setattr(scalars.importlib.util, "find_spec", lambda name: None)
    scalars.log_scalars(tmp_path / "run", "trial", 0, {"reward": 1.0})
    assert [p.name for p in (tmp_path / "run").iterdir()] == [scalars.FILE]


def test_numeric_values_go_to_tensorboard_when_installed(tmp_path, monkeypatch):
    written = []

    class Writer:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            written.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            written.append("closed")

    tb = types.ModuleType("tensorboard")
    tb.__spec__ = importlib.machinery.ModuleSpec("tensorboard", None)
    tut = types.ModuleType("torch.utils.tensorboard")
    tut.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "tensorboard", tb)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", tut)
    monkeypatch.delenv("NASFORGE_TENSORBOARD", raising=False)
    scalars.log_scalars(tmp_path, "enas", 3, {"reward": 0.5, "truncated": False, "rows": [1.0],
                                              "worker": "w0"})
    assert written == [("enas/reward", 0.5, 3)]  # numbers only: no bool, list or string
    assert scalars._tb_writers[tmp_path].log_dir == str(tmp_path / scalars.TB_DIR)
    scalars.close(tmp_path)
    assert written[-1] == "closed"
    monkeypatch.setenv("NASFORGE_TENSORBOARD", "0")  # turned off
    scalars.log_scalars(tmp_path, "enas", 4, {"reward": 0.6})
    assert len(written) == 2
    scalars.close(tmp_path)


def test_the_engine_logs_each_finished_trial_as_it_goes(tmp_path):
    from nasforge.api import search

    seen = []

    def objective(c):
        # the previous trials are in the log before this one starts
        seen.append(len(scalars.read_scalars(tmp_path / "s", "trial")))
        return float(c["a"] * 10 + c["b"])

    search({"a": [0, 1, 2], "b": [0, 1]}, objective, "random", max_trials=5, out=tmp_path / "s",
           reuse=False)
    recs = scalars.read_scalars(tmp_path / "s", "trial")
    assert seen == [0, 1, 2, 3, 4] and [r["step"] for r in recs] == [1, 2, 3, 4, 5]
    assert [r["best"] for r in recs] == [max(r["reward"] for r in recs[:k + 1])
                                         for k in range(5)]
