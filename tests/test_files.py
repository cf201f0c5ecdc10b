"""Every file nasforge reads goes through nasforge.files: a missing, unreadable, non-UTF-8,
malformed, wrongly typed or foreign file is one UserError naming the file (CLI: exit 2, one
line, no traceback)."""

import json
import os
import pathlib

import pytest
import torch

from nasforge.arch import Arch
from nasforge.cost.latency_predictor import LatencyPredictor, fit_predictor
from nasforge.cost.lut import LatencyTable
from nasforge.errors import UserError
from nasforge.export import load_state
from nasforge.files import load_checkpoint, load_recipe, write_json_atomic
from nasforge.run.rundir import RunDir
from nasforge.testing import tiny_dataset
from nasforge.train.trainer import Recipe, Trainer

BINARY = b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary"
ARCH = {"space": "fbnet-fmnist", "genes": ["k3_e1"] * 9}  # a valid fbnet-fmnist arch
FP = {"target": "cpu", "cpu": "X", "threads": 1, "batch": 1, "dtype": "float32"}


def _table(space="s", fp=FP) -> LatencyTable:
    return LatencyTable(space, "cpu", dict(fp), {f"op{i}|4|4|8|8|1": 10.0 + i for i in range(4)},
                        overhead_us=2.0)


def _predictor(table: LatencyTable) -> LatencyPredictor:
    nets = [[f"op{i % 4}|4|4|8|8|1", f"op{(i + 1) % 4}|4|4|8|8|1"] for i in range(5)]
    return fit_predictor(table, nets, [20.0 + i for i in range(5)], forms=["offset"])


def _unreadable(path: pathlib.Path, monkeypatch) -> None:
    """Make ``path`` unreadable: chmod 000, or (as root, who reads anything) a read that fails
    with EACCES exactly as the OS reports it."""
    path.chmod(0)
    if os.access(path, os.R_OK):
        real = pathlib.Path.read_bytes

        def read_bytes(self):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)


def _write(tmp_path, name, content):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content if isinstance(content, str) else json.dumps(content))
    return p


#: kind -> (loader(path), file name, a valid JSON document of ANOTHER kind, fix hint)
KINDS = {
    "arch": (Arch.load, "arch.json", {"epochs": 3}, "arch.json"),
    "recipe": (load_recipe, "recipe.json", ARCH, "Recipe fields"),
    "lut": (LatencyTable.load, "lut.json", ARCH, "nasforge lut build"),
    "predictor": (LatencyPredictor.load, "lut.predictor.json", _table().to_dict(),
                  "recalibrate"),
    "run config": (lambda p: RunDir.open(p.parent), "config.json", ARCH, "--out"),
}

FAILURES = {
    "binary": (BINARY, "not UTF-8"),
    "malformed": ('{"space": "fbnet-fmnist", "genes": [', "not valid JSON"),
    "wrong type": ([1, 2, 3], "holds a list, expected an object"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_bad_content_is_one_error_naming_the_file(tmp_path, kind, failure):
    load, name, _, fix = KINDS[kind]
    content, needle = FAILURES[failure]
    p = _write(tmp_path, name, content)
    with pytest.raises(UserError) as e:
        load(p)
    msg = str(e.value)
    assert str(p) in msg and needle in msg and fix in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_foreign_json_is_refused_not_half_used(tmp_path, kind):
    load, name, other, fix = KINDS[kind]
    p = _write(tmp_path, name, other)
    with pytest.raises(UserError) as e:
        load(p)
    assert str(p) in str(e.value) and fix in str(e.value), str(e.value)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_missing_directory_and_unreadable(tmp_path, kind, monkeypatch):
    load, name, _, _ = KINDS[kind]
    missing = tmp_path / "nowhere" / name
    with pytest.raises(UserError, match="does not exist|no config.json") as e:
        load(missing)
    assert str(missing.parent if kind == "run config" else missing) in str(e.value)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / name).mkdir()  # a directory where the file should be
    with pytest.raises(UserError, match="directory") as e:
        load(folder / name)
    assert str(folder / name) in str(e.value)
    good = {"arch": ARCH, "recipe": {"epochs": 2}, "lut": _table().to_dict(),
            "predictor": _predictor(_table()).to_dict(),
            "run config": {"method": "fbnet"}}[kind]
    p = _write(tmp_path, name, good)
    load(p)  # readable: accepted
    _unreadable(p, monkeypatch)
    with pytest.raises(UserError, match="cannot be opened") as e:
        load(p)
    assert str(p) in str(e.value)


def test_recipe_yaml_and_field_types(tmp_path):
    ok = _write(tmp_path, "r.yaml", "epochs: 3\nlr: 0.05\noptimizer: adamw\n")
    assert Recipe.from_dict(load_recipe(ok)).epochs == 3
    for text, needle in (("epochs: [3,\n", "not valid YAML"), ("- 1\n- 2\n", "holds a list"),
                         ("epochs: ten\n", "'epochs' must be int"),
                         ("epoch: 3\n", "unknown recipe field(s) ['epoch']"),
                         ("optimizer: adam\n", "optimizer 'adam' unknown")):
        p = _write(tmp_path, "bad.yml", text)
        with pytest.raises(UserError) as e:
            load_recipe(p)
        assert str(p) in str(e.value) and needle in str(e.value), str(e.value)


def test_lut_of_another_space_or_device_names_the_file(tmp_path):
    p = tmp_path / "t.json"
    _table().save(p)
    assert LatencyTable.load(p, "s", FP).entries
    with pytest.raises(UserError, match="built for space 's', not 'other'") as e:
        LatencyTable.load(p, "other", FP)
    assert str(p) in str(e.value)
    with pytest.raises(UserError, match="another device") as e:
        LatencyTable.load(p, "s", {**FP, "cpu": "Y"})
    assert str(p) in str(e.value)
    d = _table().to_dict()
    d["entries"]["op0|4|4|8|8|1"] = "fast"
    with pytest.raises(UserError, match="not a number"):
        LatencyTable.load(_write(tmp_path, "n.json", d))


def test_predictor_of_another_table_names_the_file(tmp_path):
    t = _table()
    p = tmp_path / "t.predictor.json"
    _predictor(t).save(p)
    assert LatencyPredictor.load(p, t).form == "offset"
    other = _table()
    other.entries["op0|4|4|8|8|1"] = 99.0
    with pytest.raises(UserError, match="another latency table") as e:
        LatencyPredictor.load(p, other)
    assert str(p) in str(e.value)


def test_run_directory_refuses_other_methods_and_bad_settings(tmp_path):
    from nasforge.methods.settings import SearchSettings

    rd = RunDir.create(tmp_path / "r", SearchSettings(method="fbnet").to_dict())
    assert RunDir.open(rd.path, "fbnet", SearchSettings)[1]["method"] == "fbnet"
    with pytest.raises(UserError, match="nasforge search fbnet --resume"):
        RunDir.open(rd.path, "densenas")
    cfg = json.loads(rd.file("config.json").read_text())
    for change, needle in (({"seed": "zero"}, "'seed' must be int"),
                           ({"budget": [1]}, "'budget' must be float or null"),
                           ({"bogus": 1}, "unknown setting field(s) ['bogus']")):
        rd.write_json("config.json", {**cfg, **change})
        with pytest.raises(UserError) as e:
            RunDir.open(rd.path, "fbnet", SearchSettings)
        assert needle in str(e.value) and "config.json" in str(e.value), str(e.value)
    # a run file of the wrong JSON type (candidates.json must be a list)
    rd.write_json("candidates.json", {"arch": 1})
    with pytest.raises(UserError, match="candidates.json.*holds an object, expected a list"):
        rd.read_json("candidates.json", default=[])
    assert rd.read_json("absent.json", default=[]) == []


# -- checkpoints --------------------------------------------------------------------------------

class NotWeights:  # torch.load(weights_only=True) refuses instances of arbitrary classes
    pass


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12 * 12, 10))


def _bad_checkpoints(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(_model().state_dict(), good)
    raw = good.read_bytes()
    # a checkpoint of another kind (the supernet loop's), not a model state dict
    torch.save({"net": {"w": torch.zeros(3)}, "loop": {"epoch": 1}}, tmp_path / "foreign.pt")
    torch.save({"model": NotWeights()}, tmp_path / "pickle.pt")
    return {
        "binary": (_write(tmp_path, "bin.pt", BINARY), "not a readable PyTorch checkpoint"),
        "truncated": (_write(tmp_path, "cut.pt", raw[: len(raw) // 2]),
                      "not a readable PyTorch checkpoint"),
        "empty": (_write(tmp_path, "empty.pt", b""), "not a readable PyTorch checkpoint"),
        "json": (_write(tmp_path, "arch.pt", ARCH), "not a readable PyTorch checkpoint"),
        "foreign": (tmp_path / "foreign.pt", "not a nasforge"),
        "pickle": (tmp_path / "pickle.pt", "objects a nasforge checkpoint never does"),
    }


def test_model_weights(tmp_path, monkeypatch):
    good = tmp_path / "w.pt"
    torch.save(_model().state_dict(), good)
    assert set(load_state(good)) == set(_model().state_dict())
    for name, (p, needle) in _bad_checkpoints(tmp_path).items():
        if name == "foreign":
            needle = "not a model state dict"
        with pytest.raises(UserError) as e:
            load_state(p)
        msg = str(e.value)
        assert str(p) in msg and needle in msg and "model.pt" in msg, (name, msg)
    for p in (tmp_path / "missing.pt", tmp_path):
        with pytest.raises(UserError, match="does not exist|directory"):
            load_state(p)
    _unreadable(good, monkeypatch)
    with pytest.raises(UserError, match="cannot be opened"):
        load_state(good)


def test_training_checkpoint_resume(tmp_path):
    data = tiny_dataset(n_train=32, n_val=16, n_test=16, size=12)
    r = Recipe(epochs=1, batch_size=16, augment=False)
    ck = tmp_path / "train.ckpt"
    Trainer(_model(), data, r, seed=0, checkpoint=ck, progress=False).fit()
    assert Trainer(_model(), data, r, seed=0, checkpoint=ck, progress=False).resume()
    for _, (p, needle) in _bad_checkpoints(tmp_path).items():
        ck.write_bytes(p.read_bytes())
        t = Trainer(_model(), data, r, seed=0, checkpoint=ck, progress=False)
        with pytest.raises(UserError) as e:
            t.resume()
        msg = str(e.value)
        assert str(ck) in msg and "training checkpoint" in msg and needle in msg, msg
        assert "delete it" in msg


def test_supernet_checkpoint_resume(tmp_path):
    from nasforge.cost.loss import CostLoss
    from nasforge.spaces.fbnet import FBNetSpace, Skeleton, cost_tables
    from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer
    from nasforge.supernets.fbnet import FBNetSupernet

    sp = FBNetSpace(Skeleton("fbnet-tiny", 12, 8, 2, ((8, 1, 1),), 16, in_channels=1))
    m, _ = cost_tables(sp, 10, 1)[0].macs_matrix()
    data = tiny_dataset(n_train=16, n_val=16, size=12)
    ck = tmp_path / "supernet.ckpt"
    torch.save({"model": _model().state_dict(), "opt": {}}, ck)  # a *training* checkpoint
    loop = SupernetTrainer(FBNetSupernet(sp, 10, 1, m), data,
                           SupernetConfig(epochs=2, warmup_epochs=1), CostLoss("paper"), seed=0,
                           checkpoint=ck, progress=False)
    with pytest.raises(UserError) as e:
        loop.resume()
    assert str(ck) in str(e.value) and "not a nasforge supernet checkpoint" in str(e.value)
    ck.write_bytes(BINARY)
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        loop.resume()


def test_load_checkpoint_checks_keys_and_type(tmp_path):
    p = tmp_path / "list.pt"
    torch.save([1, 2], p)
    assert load_checkpoint(p, "x", "fix") == [1, 2]  # no keys asked: any weights-only data
    with pytest.raises(UserError, match="holds list, not a nasforge x"):
        load_checkpoint(p, "x", "fix", keys=["a"])


def test_atomic_writer_leaves_no_temporary(tmp_path):
    write_json_atomic(tmp_path / "a" / "b.json", {"x": (1, 2)})
    assert json.loads((tmp_path / "a" / "b.json").read_text()) == {"x": [1, 2]}
    assert [f.name for f in (tmp_path / "a").iterdir()] == ["b.json"]


# -- the CLI: exit 2, one line on stderr, no traceback --------------------------------------------

def _cli(argv, capsys):
    from nasforge.cli import main

    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return code, err


def _one_clean_line(code, err, *needles):
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert str(n) in err, err


def test_cli_train_binary_arch(tmp_path, capsys):
    p = _write(tmp_path, "arch.json", BINARY)
    _one_clean_line(*_cli(["train", p, "--epochs", "1", "--no-progress"], capsys), p,
                    "not UTF-8")
    q = _write(tmp_path, "space.json", {"space": "no-such-space", "genes": []})
    _one_clean_line(*_cli(["train", q, "--epochs", "1", "--no-progress"], capsys), q,
                    "unknown search space")
    r = _write(tmp_path, "recipe.yaml", "epochs: [")
    good = _write(tmp_path, "good.json", ARCH)
    _one_clean_line(*_cli(["train", good, "--recipe", r, "--no-progress"], capsys), r,
                    "not valid YAML")


def test_cli_export_of_a_malformed_dir(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _write(run, "arch.json", '{"space": "fbnet-fmnist", "genes": ["skip",')
    _one_clean_line(*_cli(["export", run], capsys), run / "arch.json", "not valid JSON")
    _write(run, "arch.json", ARCH)
    _write(run, "config.json", "[1]")
    _one_clean_line(*_cli(["export", run], capsys), run / "config.json", "holds a list")
    _write(run, "model.pt", BINARY)
    _one_clean_line(*_cli(["export", run, "--input-shape", "1,28,28"], capsys),
                    run / "model.pt", "not a readable PyTorch checkpoint")


@pytest.mark.parametrize("config", [BINARY, "{", "[]", json.dumps(ARCH)],
                         ids=["binary", "malformed", "list", "foreign"])
def test_cli_resume_with_a_corrupt_config(tmp_path, capsys, config):
    run = tmp_path / "run"
    run.mkdir()
    _write(run, "config.json", config)
    _one_clean_line(*_cli(["search", "fbnet", "--resume", run], capsys), run / "config.json")


def test_cli_report_of_a_damaged_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _write(run, "result.json", BINARY)
    _one_clean_line(*_cli(["report", run], capsys), run / "result.json", "not UTF-8")
    _write(run, "result.json", {"test_acc": 1.0})
    _one_clean_line(*_cli(["report", run], capsys), run / "result.json", "fields differ")
