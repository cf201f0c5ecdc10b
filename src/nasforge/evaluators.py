"""Cheap evaluation of a candidate network (METHODS §5, "cheap rewards").

:class:`EarlyStopEvaluator` trains an architecture for a small fraction of the normal schedule
with the shared :class:`~nasforge.train.trainer.Trainer` (cosine decay over the *short* run:
BlockQNN's adjusted schedule; ``budget_s`` caps the seconds per trial), then computes
BlockQNN's corrected reward::

    reward = acc_early − μ·log(FLOPs) − ρ·log(Density)

with FLOPs in millions of multiply-accumulates and Density = edges / nodes of the block (spaces
without a block graph contribute no density term). It is a picklable callable
``(arch_dict, seed) -> metrics``: process pools and Ray ship it to their workers, which load the
data set once per process and keep it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from nasforge.arch import Arch
from nasforge.cost.flops import count_module
from nasforge.data import Dataset, load_dataset
from nasforge.device import resolve_device
from nasforge.spaces.base import SearchSpace
from nasforge.train.trainer import Recipe, train_model


@dataclass(frozen=True)
class DataSpec:
    """What a worker needs to load the data set itself (tensors are not shipped)."""

    dataset: str = "digits"
    data_dir: str | None = None
    subset: int | None = None
    seed: int = 0
    device: str = "cpu"


_DATA: dict[DataSpec, Dataset] = {}


def cached_dataset(spec: DataSpec) -> Dataset:
    """One copy per process (workers evaluate many trials on the same data)."""
    if spec not in _DATA:
        _DATA[spec] = load_dataset(spec.dataset, data_dir=spec.data_dir, seed=spec.seed,
                                   subset=spec.subset, device=resolve_device(spec.device))
    return _DATA[spec]


@dataclass
class EarlyStopEvaluator:
    space: SearchSpace
    data: DataSpec
    epochs: int = 3  # (choice) BlockQNN: 12 of ~360 CIFAR epochs
    budget_s: float | None = None  # seconds per trial (caps the epochs)
    mu: float = 0.01  # (choice) weight of log(MFLOPs)
    rho: float = 0.01  # (choice) weight of log(Density)
    threads: int | None = None  # torch threads inside a worker process
    recipe: dict[str, Any] = field(default_factory=dict)  # other Recipe fields

    def reward(self, acc: float, macs: int, density: float | None) -> float:
        r = acc - self.mu * math.log(max(macs, 1) / 1e6)
        if density is not None and density > 0:
            r -= self.rho * math.log(density)
        return r

    def __call__(self, arch_dict: dict[str, Any], seed: int) -> dict[str, Any]:
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        arch = Arch.from_dict(arch_dict)
        self.space.validate(arch)
        data = cached_dataset(self.data)
        torch.manual_seed(seed)
        model = self.space.build(arch, data.num_classes, data.input_shape[0])
        counts = count_module(model, data.input_shape)
        recipe = Recipe(**{**self.recipe, "epochs": self.epochs, "budget_s": self.budget_s})
        _, res = train_model(model, data, recipe, seed=seed, progress=False)
        dens = self.space.density(arch) if hasattr(self.space, "density") else None
        return {"reward": self.reward(res.val_acc, counts.macs, dens), "val_acc": res.val_acc,
                "flops": counts.macs, "params": counts.params, "density": dens,
                "epochs": res.epochs, "train_seconds": res.seconds,
                "seconds": time.perf_counter() - t0}
