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


def test_cpu_training_runs_channels_last_with_the_nchw_result(monkeypatch):
    """The CPU trainer runs the model in NHWC (faster on oneDNN) and that changes nothing that
    is computed: float64 weights after two epochs equal an NCHW run's to float tolerance."""
    import dataclasses

    from nasforge.train import amp

    data = tiny_dataset(n_train=64, n_val=16, n_test=16, size=12)
    r = Recipe(epochs=2, batch_size=16, lr=0.05, augment=False)
    from torch import nn

    def model() -> nn.Module:  # a dense 3×3 conv: NHWC and NCHW weights differ in strides
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.Conv2d(8, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).double()

    ends = []
    for devices in (amp.CHANNELS_LAST_DEVICES, ("cuda",)):
        monkeypatch.setattr(amp, "CHANNELS_LAST_DEVICES", devices)
        data_d = dataclasses.replace(data, **{
            k: dataclasses.replace(getattr(data, k), x=getattr(data, k).x.double())
            for k in ("train", "val", "test")})
        m, _ = train_model(model(), data_d, r, seed=0, progress=False, test=False)
        conv = m[3].weight
        ends.append((conv.is_contiguous(memory_format=torch.channels_last)
                     and not conv.is_contiguous(), m.state_dict()))
    (cl_a, a), (cl_b, b) = ends
    assert cl_a and not cl_b
    for k in a:
        assert torch.allclose(a[k].double(), b[k].double(), rtol=1e-6, atol=1e-9), k
