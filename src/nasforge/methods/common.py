"""Helpers every search method shares: data and device set-up, the space picked by input size,
derived random streams. Settings live in :mod:`nasforge.methods.settings`, the finish stages in
:mod:`nasforge.methods.finish` (re-exported here for the methods that import them from here)."""

from __future__ import annotations

import numpy as np
import torch

from nasforge.data import Dataset, load_dataset
from nasforge.device import resolve_device, seed_everything
from nasforge.errors import UserError
from nasforge.methods.finish import Finish, finish
from nasforge.methods.settings import SearchSettings

__all__ = ["Finish", "SearchSettings", "finish", "rng_for", "setup", "space_name_for"]

SIZE_SUFFIX = {28: "fmnist", 32: "cifar", 224: "imagenet"}


def space_name_for(name: str, input_shape: tuple[int, ...], family: str,
                   known: list[str], expected_size: dict[str, int]) -> str:
    """Resolve ``auto`` to ``<family>-fmnist|cifar|imagenet`` by the input size, and check that
    the space's input size is the data's (every shipped family has those three variants)."""
    h, w = input_shape[1], input_shape[2]
    if name == "auto":
        suffix = SIZE_SUFFIX.get(h) if h == w else None
        name = f"{family}-{suffix}" if suffix else ""
        if name not in known:
            raise UserError(f"no {family} space for {h}×{w} inputs; pass --space "
                            f"({', '.join(known)})")
    if name not in known:
        raise UserError(f"unknown {family} space {name!r}; choose from {', '.join(known)}")
    if expected_size[name] != h or h != w:
        raise UserError(f"space {name!r} expects {expected_size[name]}² inputs, the data set "
                        f"has {h}×{w}")
    return name


def setup(s: SearchSettings) -> tuple[torch.device, Dataset]:
    seed_everything(s.seed)
    dev = resolve_device(s.device)
    data = load_dataset(s.dataset, data_dir=s.data_dir, seed=s.seed, subset=s.subset, device=dev)
    return dev, data


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """A derived, independent numpy generator (never a shared global one)."""
    return np.random.default_rng([seed, stream])
