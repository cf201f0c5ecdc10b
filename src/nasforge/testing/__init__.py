"""Test helpers shared by nasforge's own tests and by users testing their extensions."""

from __future__ import annotations

import torch

from nasforge.data import Dataset, TensorSplit


def tiny_dataset(n_train: int = 64, n_val: int = 32, n_test: int = 32, channels: int = 1,
                 size: int = 28, num_classes: int = 10, seed: int = 0) -> Dataset:
    """A small *learnable* dataset (class-dependent means) held on the CPU."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(num_classes, channels, size, size, generator=g)

    def split(n: int) -> TensorSplit:
        y = torch.randint(0, num_classes, (n,), generator=g)
        x = protos[y] + 0.5 * torch.randn(n, channels, size, size, generator=g)
        return TensorSplit(x, y)

    return Dataset("tiny", split(n_train), split(n_val), split(n_test), num_classes,
                   (0.0,) * channels, (1.0,) * channels)


def tiny_fbnet_supernet(seed: int = 0) -> torch.nn.Module:
    """An FBNet supernet on a 2-layer, 12×12, 1-channel, 10-class skeleton, priced by MACs
    (seeded weights): the smallest real supernet, for trainer and loop tests."""
    from nasforge.spaces.fbnet import FBNetSpace, Skeleton, cost_tables
    from nasforge.supernets.fbnet import FBNetSupernet

    sp = FBNetSpace(Skeleton("fbnet-tiny", 12, 8, 2, ((8, 1, 1), (16, 1, 2)), 32, in_channels=1))
    tables, _ = cost_tables(sp, 10, 1)
    m, fixed = tables.macs_matrix()
    torch.manual_seed(seed)
    net = FBNetSupernet(sp, 10, 1, m)
    net.fixed_cost.fill_(fixed)
    return net
