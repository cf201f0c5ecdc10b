import pytest
import torch

from nasforge.data import load_dataset, random_crop_flip
from nasforge.data.batches import batch_indices
from nasforge.errors import UserError


def test_digits_splits_are_deterministic_and_disjoint():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=0)
    c = load_dataset("digits", seed=1)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    assert not torch.equal(a.train.y[:50], c.train.y[:50])
    assert a.input_shape == (1, 28, 28) and a.num_classes == 10
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert abs(a.train.x.mean().item()) < 0.05  # normalised with train statistics


def test_missing_dataset_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("nasforge.data.sources.FASHION_MNIST_DIRS", (str(tmp_path),))
    monkeypatch.delenv("NASFORGE_DATA", raising=False)
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    with pytest.raises(UserError, match="unknown dataset 'nope'"):
        load_dataset("nope")


def test_imagefolder(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(5):
            pil.new("RGB", (12, 12), (i * 40, 10, 200 if c == "a" else 0)).save(
                tmp_path / c / f"{i}.png")
    d = load_dataset(f"imagefolder:{tmp_path}", seed=0)
    assert d.num_classes == 2 and d.input_shape == (3, 32, 32)


def test_subset_and_synthetic():
    d = load_dataset("synthetic", subset=100, seed=0)
    assert len(d.train) + len(d.val) == 100 and len(d.test) == 500


def test_batches_cover_every_index_once():
    idx = batch_indices(103, 10, torch.Generator().manual_seed(0))
    allv = torch.cat(idx).tolist()
    assert sorted(allv) == list(range(103))


def test_random_crop_flip_is_a_translation():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    y = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2, flip=False)
    assert y.shape == x.shape
    for b in range(2):
        nz = y[b, 0][y[b, 0] != 0]
        # surviving pixels are original values in original relative order (pure translation)
        assert torch.all(nz.diff() > 0)
