import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nasforge.cli import main
from nasforge.run.result import read_result

# fbnet-small: the smallest skeleton (a fbnet-fmnist step costs ~8x more); what these tests
# check — files, schema, resume, errors — does not depend on the skeleton's size
TINY = ["--dataset", "digits", "--subset", "100", "--batch-size", "40", "--samples", "1",
        "--candidate-epochs", "1", "--train-epochs", "1", "--no-progress", "--space", "fbnet-small"]


def _cmd(*args):
    return [sys.executable, "-m", "nasforge.cli", *args]


@pytest.mark.slow
def test_tiny_search_on_digits_writes_a_valid_result(tmp_path):
    out = tmp_path / "run"
    assert main(["search", "fbnet", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    r = read_result(out / "result.json")  # validates the schema
    assert r["method"] == "fbnet" and r["space"] == "fbnet-small"
    assert r["latency_ms"]["measured"] > 0 and r["latency_ms"]["predicted"] > 0
    assert r["epochs"] == {"search": 2, "train": 1}
    for f in ("arch.json", "model.pt", "model.ts", "report.md", "run.json", "lut.json"):
        assert (out / f).is_file(), f
    lut = json.loads((out / "lut.json").read_text())
    assert lut["unit"] == "us" and lut["fingerprint"]["target"] == "cpu"


@pytest.mark.slow
def test_kill_and_resume_ends_with_the_same_architecture(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [*TINY, "--epochs", "4", "--cost", "flops", "--single-path"]
    ref = tmp_path / "ref"
    subprocess.run(_cmd("search", "fbnet", *args, "--out", str(ref)), check=True, env=env,
                   capture_output=True)
    run = tmp_path / "run"
    p = subprocess.Popen(_cmd("search", "fbnet", *args, "--out", str(run)), env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "supernet.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (run / "result.json").exists(), "run finished before it could be killed"
    subprocess.run(_cmd("search", "fbnet", "--resume", str(run), "--no-progress"), check=True,
                   env=env, capture_output=True)
    a, b = read_result(ref / "result.json"), read_result(run / "result.json")
    assert a["arch"] == b["arch"]
    sa = json.loads((ref / "search.json").read_text())
    sb = json.loads((run / "search.json").read_text())
    assert sa["arch_parameters"] == sb["arch_parameters"]
    assert a["test_acc"] == b["test_acc"]


def test_bad_input_exits_2_without_traceback(tmp_path, capsys):
    r = subprocess.run(_cmd("search", "fbnet", "--dataset", "nope", "--out", str(tmp_path / "x")),
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "unknown dataset 'nope'" in r.stderr and "Traceback" not in r.stderr
    assert main(["search", "fbnet", "--budget", "-3", "--out", str(tmp_path / "y")]) == 2
    assert "--budget must be positive" in capsys.readouterr().err
    assert main(["search", "fbnet", "--resume", str(tmp_path / "missing")]) == 2
    assert "no config.json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"space": "fbnet-fmnist", "genes": ["k9"]}')
    assert main(["train", str(bad), "--epochs", "1", "--no-progress"]) == 2
    assert "has 1 layers" in capsys.readouterr().err


def test_existing_run_dir_is_not_overwritten(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "keep.txt").write_text("x")
    assert main(["search", "fbnet", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert (tmp_path / "r" / "keep.txt").read_text() == "x"


def test_report_of_a_run(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert main(["search", "fbnet", *TINY, "--epochs", "2", "--single-path", "--cost", "flops",
                 "--samples", "2", "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "data:image/png;base64" in page and "test acc" in page
    assert (out / "theta.png").is_file()
