"""Raw dataset sources. Each returns uint8/float images NCHW and int labels, train and test.

Nothing is downloaded: every source reads local files (or a package that ships its data) and a
missing data set is a :class:`UserError` that says how to install it.
"""

from __future__ import annotations

import gzip
import os
import pickle  # only for the CIFAR-10 format, which *is* a pickle; see _read_cifar_batch
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nasforge.errors import UserError
from nasforge.registry import Registry

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)


@dataclass
class RawData:
    x_train: np.ndarray  # N,C,H,W float32 in [0,1]
    y_train: np.ndarray  # N int64
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str


SourceFn = Callable[[str | None, int], RawData]


def _builtins(reg: Registry[SourceFn]) -> None:
    """The shipped data sets, registered explicitly (``imagefolder:PATH`` is parsed by name)."""
    for name, fn in (("fashion-mnist", fashion_mnist), ("digits", digits),
                     ("cifar10", cifar10), ("synthetic", synthetic)):
        reg.register(name, fn)


#: name -> source ``fn(data_dir, seed)``; user data sets: ``SOURCES.register(name, fn)``
SOURCES: Registry[SourceFn] = Registry("dataset", builtins=_builtins)


def _data_dirs(data_dir: str | None, defaults: tuple[str, ...]) -> list[Path]:
    dirs = []
    if data_dir:
        dirs.append(Path(data_dir))
    env = os.environ.get("NASFORGE_DATA")
    if env:
        dirs += [Path(env), Path(env) / "fashion-mnist"]
    dirs += [Path(d) for d in defaults]
    return dirs


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise UserError(f"{path} is not an idx file of unsigned bytes")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(d: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (d / name).is_file():
            return d / name
    return None


def fashion_mnist(data_dir: str | None, seed: int) -> RawData:
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for d in _data_dirs(data_dir, FASHION_MNIST_DIRS):
        paths = [_find_idx(d, s) for s in stems]
        if all(paths):
            xtr, ytr, xte, yte = (_read_idx(p) for p in paths)  # type: ignore[arg-type]
            return RawData(
                xtr[:, None].astype(np.float32) / 255.0, ytr.astype(np.int64),
                xte[:, None].astype(np.float32) / 255.0, yte.astype(np.int64), 10, "fashion-mnist",
            )
    raise UserError(
        "Fashion-MNIST not found. Install it with `apt-get update && apt-get install "
        "dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist/), or point "
        "--data-dir / NASFORGE_DATA at a folder holding the four idx(.gz) files."
    )


def digits(data_dir: str | None, seed: int) -> RawData:
    """scikit-learn's 8×8 digits, upsampled to 28×28 so the MNIST-sized spaces apply."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).numpy()
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    n_test = len(y) // 5
    te, tr = perm[:n_test], perm[n_test:]
    return RawData(x[tr], y[tr], x[te], y[te], 10, "digits")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    # The CIFAR-10 "python version" is a pickle of numpy arrays; we read it with a restricted
    # unpickler that only admits the numpy reconstruction functions it needs.
    class _Restricted(pickle.Unpickler):
        ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                   ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

        def find_class(self, module: str, name: str):  # noqa: ANN201
            if (module, name) in self.ALLOWED:
                return super().find_class(module, name)
            raise UserError(f"{path}: refusing to unpickle {module}.{name}")

    with open(path, "rb") as f:
        d = _Restricted(f, encoding="bytes").load()
    x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return x.astype(np.float32) / 255.0, np.asarray(d[b"labels"], dtype=np.int64)


def cifar10(data_dir: str | None, seed: int) -> RawData:
    for d in _data_dirs(data_dir, ()):
        for cand in (d, d / "cifar-10-batches-py"):
            files = [cand / f"data_batch_{i}" for i in range(1, 6)]
            if all(f.is_file() for f in files) and (cand / "test_batch").is_file():
                parts = [_read_cifar_batch(f) for f in files]
                xte, yte = _read_cifar_batch(cand / "test_batch")
                return RawData(np.concatenate([p[0] for p in parts]),
                               np.concatenate([p[1] for p in parts]), xte, yte, 10, "cifar10")
    raise UserError(
        "CIFAR-10 not found: give --data-dir (or NASFORGE_DATA) pointing at the extracted "
        "'cifar-10-batches-py' folder (data_batch_1..5, test_batch). nasforge never downloads."
    )


def imagefolder(path: str, seed: int, size: int = 32, test_fraction: float = 0.2) -> RawData:
    """``root/<class>/<image>``; images resized to ``size``; a seeded test split."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"imagefolder {path!r} is not a directory (expected root/<class>/<image>)")
    try:
        from PIL import Image
    except ImportError:
        raise UserError("imagefolder needs Pillow: pip install pillow") from None
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"imagefolder {path!r} has no class sub-folders")
    xs, ys = [], []
    for ci, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
                continue
            img = Image.open(f).convert("RGB").resize((size, size))
            xs.append(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0)
            ys.append(ci)
    if len(xs) < 2:
        raise UserError(f"imagefolder {path!r} holds fewer than 2 images")
    x, y = np.stack(xs), np.asarray(ys, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, int(len(y) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return RawData(x[tr], y[tr], x[te], y[te], len(classes), f"imagefolder:{path}")


def synthetic(data_dir: str | None, seed: int) -> RawData:
    """A learnable 10-class 1×28×28 task (class-dependent blobs + noise), for tests and demos."""
    rng = np.random.default_rng(seed)
    n_train, n_test, k = 2000, 500, 10
    protos = rng.normal(size=(k, 1, 7, 7)).astype(np.float32)
    protos = np.kron(protos, np.ones((1, 1, 4, 4), dtype=np.float32))

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, k, size=n)
        x = protos[y] + 0.8 * rng.normal(size=(n, 1, 28, 28)).astype(np.float32)
        return ((x - x.min()) / (x.max() - x.min())).astype(np.float32), y.astype(np.int64)

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return RawData(xtr, ytr, xte, yte, k, "synthetic")


def load_raw(name: str, data_dir: str | None = None, seed: int = 0) -> RawData:
    if name.startswith("imagefolder:"):
        return imagefolder(name.split(":", 1)[1], seed)
    return SOURCES.get(name)(data_dir, seed)


def dataset_names() -> list[str]:
    return SOURCES.names() + ["imagefolder:PATH"]
