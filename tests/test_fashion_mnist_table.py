"""benchmarks/fashion_mnist_table.py: the final training resumes exactly after a kill, the
table reports what the rows reached against their targets, a model over its row's params
target is refused. Tiny: digits, 300 images, 2 epochs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nasforge.cost.flops import count_module
from nasforge.errors import UserError
from nasforge.spaces.registry import get_space

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "fashion_mnist_table.py"
_spec = importlib.util.spec_from_file_location("fashion_mnist_table", _PATH)
fmt = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fmt  # dataclasses look their module up
_spec.loader.exec_module(fmt)  # type: ignore[union-attr]

KW = {"epochs": 2, "dataset": "digits", "seed": 0, "subset": 300, "test_every": 0,
      "val_fraction": 0.2}


@pytest.fixture(scope="module")
def arch_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    space = get_space("fbnet-fmnist")
    p = tmp_path_factory.mktemp("arch") / "arch.json"
    rng = np.random.default_rng(3)
    while True:  # a model of the row's size (< 100K params), small for a fast test
        a = space.sample(rng)
        if count_module(space.build(a, 10, 1), (1, 28, 28)).params < 80_000:
            a.save(p)
            return p


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, arch_path: Path) -> tuple[Path, dict]:
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("work") / "100k"
    d.mkdir()
    return d, fmt.train_final(fmt.ROWS["100k"], d, arch_path, **KW)


def test_killed_training_resumes_to_the_same_model(tmp_path: Path, arch_path: Path,
                                                   straight: tuple[Path, dict],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    d0, ref = straight
    d = tmp_path / "100k"
    d.mkdir()

    def die(msg: str) -> None:  # the process dies right after epoch 1 was checkpointed
        if msg.startswith("epoch 1/"):
            raise KeyboardInterrupt
    monkeypatch.setattr(fmt, "log", die)
    with pytest.raises(KeyboardInterrupt):
        fmt.train_final(fmt.ROWS["100k"], d, arch_path, **KW)
    assert (d / "train.ckpt").is_file() and not (d / "final.json").exists()
    part = fmt.row_entry("100k", fmt.ROWS["100k"], d)
    assert part is not None and part["status"] == "training" and part["epochs"] == 1
    seen: list[str] = []
    monkeypatch.setattr(fmt, "log", seen.append)
    out = fmt.train_final(fmt.ROWS["100k"], d, arch_path, **KW)
    assert any(m.startswith("train: resumed") and "epoch 1/2" in m for m in seen)
    assert out["epochs"] == ref["epochs"] == 2
    assert out["test_acc"] == ref["test_acc"] and out["val_acc"] == ref["val_acc"]
    a = torch.load(d / "model.pt", weights_only=True)
    b = torch.load(d0 / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert out["recipe"]["pad"] == fmt.PAD and out["recipe"]["augment"] and out["recipe"]["flip"]


def test_table_rows_and_targets(straight: tuple[Path, dict]) -> None:
    d, ref = straight
    t = fmt.table(d.parent, ["100k"])
    (row,) = t["rows"]
    assert row["status"] == "done" and row["test_acc"] == ref["test_acc"]
    assert row["met"] == (ref["test_acc"] >= fmt.ROWS["100k"].target_acc)
    assert row["params"] == ref["params"] < 100_000
    md = (d.parent / "table.md").read_text()
    assert all(a["name"] in md for a in fmt.ANCHORS) and fmt.ROWS["100k"].name in md
    assert json.loads((d.parent / "table.json").read_text())["rows"][0]["row"] == "100k"


def test_model_over_the_params_target_is_refused(tmp_path: Path, arch_path: Path) -> None:
    small = fmt.RowSpec("tiny", 1_000, 0.9, "fbnet", "fbnet-fmnist", {})
    with pytest.raises(UserError, match="params"):
        fmt.train_final(small, tmp_path, arch_path, **KW)


def test_stated_padding_is_the_trainers() -> None:
    fmt.check_pad()  # raises if random_crop_flip's default padding is not PAD


def test_arch_option_trains_the_given_model_without_a_search(tmp_path: Path, arch_path: Path,
                                                             capsys: pytest.CaptureFixture
                                                             ) -> None:
    """``--arch FILE``: the row trains that architecture (no search folder is made) and
    final.json names the file; with more than one row it is refused (exit 2)."""
    work = tmp_path / "w"
    rc = fmt.main(["--rows", "100k", "--work", str(work), "--arch", str(arch_path),
                   "--dataset", "digits", "--subset", "200", "--epochs", "1",
                   "--test-every", "0"])
    assert rc == 0
    final = json.loads((work / "100k" / "final.json").read_text())
    assert final["arch_file"] == str(arch_path) and final["epochs"] == 1
    assert final["arch"] == json.loads(arch_path.read_text())
    assert not (work / "100k" / "search").exists()
    rc = fmt.main(["--rows", "100k,1m", "--work", str(tmp_path / "w2"), "--arch",
                   str(arch_path)])
    assert rc == 2 and "--arch trains one row" in capsys.readouterr().err
