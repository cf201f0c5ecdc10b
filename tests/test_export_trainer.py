import numpy as np
import pytest
import torch

from nasforge.export import export_onnx, export_torchscript
from nasforge.spaces.fbnet import FBNetSpace
from nasforge.testing import tiny_dataset
from nasforge.train.trainer import Recipe, train_model


def test_torchscript_and_onnx_exports_match_eager(tmp_path):
    pytest.importorskip("onnxruntime")
    sp = FBNetSpace("fbnet-fmnist")
    m = sp.build(sp.sample(np.random.default_rng(0)), 10, 1).eval()
    assert export_torchscript(m, (1, 28, 28), tmp_path / "m.ts") < 1e-4
    assert export_onnx(m, (1, 28, 28), tmp_path / "m.onnx") < 1e-4
    assert (tmp_path / "m.onnx").stat().st_size > 1000


def test_trainer_learns_and_resumes_exactly(tmp_path):
    data = tiny_dataset(n_train=96, n_val=48, n_test=48, size=12)

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, 2), torch.nn.ReLU(),
                                   torch.nn.Flatten(), torch.nn.Linear(8 * 25, 10))

    r = Recipe(epochs=6, batch_size=16, lr=0.05, augment=False, ema=0.5)
    m1, res1 = train_model(model(), data, r, seed=0, progress=False)
    assert res1.test_acc > 0.5  # class means are well separated: chance is 0.1
    from nasforge.train.trainer import Trainer

    # interrupted after 3 epochs, resumed by a fresh trainer: equals the uninterrupted run
    Trainer(model(), data, r, seed=0, checkpoint=tmp_path / "c.ckpt",
            progress=False).fit(stop_at=3)
    t = Trainer(model(), data, r, seed=0, checkpoint=tmp_path / "c.ckpt", progress=False)
    assert t.resume() and t.epoch == 3
    res2 = t.fit()
    assert res2.test_acc == res1.test_acc
    for a, b in zip(m1.state_dict().values(), t.final_model().state_dict().values()):
        assert torch.equal(a, b)
