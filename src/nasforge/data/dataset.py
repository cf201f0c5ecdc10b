"""Datasets as tensors on the compute device, with seeded train/val/test splits.

Small image datasets fit in device memory, so they are normalised once, moved once, and batched
by index (:mod:`nasforge.data.batches`) — no DataLoader, no host round trip per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nasforge.data.sources import load_raw
from nasforge.errors import UserError


@dataclass
class TensorSplit:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device) -> TensorSplit:
        return TensorSplit(self.x.to(device), self.y.to(device))


@dataclass
class Dataset:
    """``train`` trains weights, ``val`` ranks candidates / trains θ, ``test`` is held out."""

    name: str
    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]

    @property
    def device(self) -> torch.device:
        return self.train.x.device


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    subset: int | None = None,
    device: torch.device | str = "cpu",
) -> Dataset:
    """Load ``name``; carve ``val_fraction`` of the training set off as ``val`` (seeded).

    ``subset`` keeps the first ``subset`` training images of a seeded permutation (for quick
    runs); the test set is never subsampled.
    """
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction must be in (0, 1), got {val_fraction}")
    raw = load_raw(name, data_dir, seed)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(raw.y_train))
    if subset is not None:
        if subset < 10:
            raise UserError(f"--subset must be at least 10, got {subset}")
        perm = perm[:subset]
    n_val = max(1, int(round(len(perm) * val_fraction)))
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    xtr = raw.x_train[tr_idx]
    mean = xtr.mean(axis=(0, 2, 3))
    std = xtr.std(axis=(0, 2, 3)) + 1e-6

    def split(x: np.ndarray, y: np.ndarray) -> TensorSplit:
        xn = (x - mean[None, :, None, None]) / std[None, :, None, None]
        return TensorSplit(torch.from_numpy(np.ascontiguousarray(xn, dtype=np.float32)),
                           torch.from_numpy(np.ascontiguousarray(y))).to(torch.device(device))

    return Dataset(
        name=raw.name,
        train=split(xtr, raw.y_train[tr_idx]),
        val=split(raw.x_train[val_idx], raw.y_train[val_idx]),
        test=split(raw.x_test, raw.y_test),
        num_classes=raw.num_classes,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
    )
