"""Cheap evaluation of a candidate network (METHODS §5, "cheap rewards").

:class:`EarlyStopEvaluator` trains an architecture for a small fraction of the normal schedule
with the shared :class:`~nasforge.train.trainer.Trainer` (cosine decay over the *short* run:
BlockQNN's adjusted schedule; ``budget_s`` caps the seconds per trial), then computes
BlockQNN's corrected reward::

    reward = acc_early − μ·log(FLOPs) − ρ·log(Density)

with FLOPs in millions of multiply-accumulates and Density = edges / nodes of the block (spaces
without a block graph contribute no density term). Under a ``--flops`` target the FLOPs term
is flat below it (``macs_floor``; ``--below-target reward`` keeps the paper's term): with ~15 s
trials the accuracies of a Fashion-MNIST search lie within a few points, and −μ·log(FLOPs)
then picked blocks a third of the target's size over better ones at the target.

It is a picklable callable ``(arch_dict, seed) -> metrics``: process pools and Ray ship it to
their workers, which load the data set once per process and keep it. On a Ray cluster the data
set itself travels instead of its name (:meth:`EarlyStopEvaluator.ship`: the driver puts it in
the object store once), so a worker on another machine reads nothing from disk.

Resource targets (``targets``: ``--flops``/``--params``/``--latency-ms``/``--peak-memory-mb``)
are enforced, not ignored: each trial's latency is *measured* on the target device when a
latency target is set, and a trial that misses a target gets ``reward − 1 − violation`` — below
every trial that meets them (accuracy rewards lie in [−1, 1] for any sane μ, ρ), so the
strategies learn to avoid such regions and the best trials are feasible ones whenever the
search found any. ``meets_target`` is stored with the trial. The costs do not depend on the
weights, so they are checked *before* training: a trial that misses a target is not trained
(``val_acc`` None, ``trained`` False) and its reward is that of accuracy 0 (``reward(0) − 1 −
violation``). A search under a tight target thus spends its seconds on feasible trials, and a
strategy hears the price of an infeasible region within a second instead of a training.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from nasforge.arch import Arch
from nasforge.cost.flops import count_module
from nasforge.cost.model import CostModel, Costs, MeasuredLatency
from nasforge.cost.targets import Targets
from nasforge.data import Dataset, TensorSplit, load_dataset
from nasforge.device import resolve_device
from nasforge.spaces.base import SearchSpace
from nasforge.train.trainer import Recipe, train_model


@dataclass(frozen=True)
class DataSpec:
    """What a worker needs to load the data set itself, or (``shipped``: a handle with
    ``get()``, e.g. :class:`~nasforge.run.executors.Shipped`) to fetch the driver's copy."""

    dataset: str = "digits"
    data_dir: str | None = None
    subset: int | None = None
    seed: int = 0
    device: str = "cpu"
    shipped: Any = None


_DATA: dict[DataSpec, Dataset] = {}


def cached_dataset(spec: DataSpec) -> Dataset:
    """One copy per process (workers evaluate many trials on the same data)."""
    if spec not in _DATA and spec.shipped is not None:  # the driver's copy, no disk read
        d = spec.shipped.get()
        dev = resolve_device(spec.device)
        _DATA[spec] = dataclasses.replace(d, train=d.train.to(dev), val=d.val.to(dev),
                                          test=d.test.to(dev))
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
    #: the FLOPs term sees max(MACs, macs_floor): a --flops target's value (sampled searches'
    #: --below-target flat), so that FLOPs saved below the target earn no reward; None: the paper
    macs_floor: float | None = None
    threads: int | None = None  # torch threads inside a worker process
    recipe: dict[str, Any] = field(default_factory=dict)  # other Recipe fields
    targets: dict[str, float | None] = field(default_factory=dict)  # Targets.to_dict()
    target: str = "cpu"  # the device latency targets are measured on
    latency_threads: int = 1
    #: validation images a trial is scored on at most (the split is a seeded random carve, so
    #: its first images are a random sample): all 12,000 of Fashion-MNIST's took most of a
    #: budgeted trial's seconds, and 2,000 give the accuracy to ±0.7 % (one σ at 90 %)
    val_images: int | None = 2000

    def reward(self, acc: float, macs: int, density: float | None) -> float:
        r = acc - self.mu * math.log(max(macs, self.macs_floor or 0, 1) / 1e6)
        if density is not None and density > 0:
            r -= self.rho * math.log(density)
        return r

    def ship(self, share: Callable[[Any], Any]) -> EarlyStopEvaluator:
        """The copy for workers that may sit on other machines: the data set (loaded here, on
        CPU) goes through ``share`` once, so no worker needs this machine's files."""
        data = cached_dataset(dataclasses.replace(self.data, device="cpu", shipped=None))
        return dataclasses.replace(self, data=dataclasses.replace(self.data,
                                                                  shipped=share(data)))

    def __call__(self, arch_dict: dict[str, Any], seed: int) -> dict[str, Any]:
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        arch = Arch.from_dict(arch_dict)
        self.space.validate(arch)
        data = cached_dataset(self.data)
        if self.val_images is not None and len(data.val) > self.val_images:
            n = self.val_images
            data = dataclasses.replace(data, val=TensorSplit(data.val.x[:n], data.val.y[:n]))
        torch.manual_seed(seed)
        model = self.space.build(arch, data.num_classes, data.input_shape[0])
        counts = count_module(model, data.input_shape)
        dens = self.space.density(arch) if hasattr(self.space, "density") else None
        out: dict[str, Any] = {"flops": counts.macs, "params": counts.params, "density": dens}
        targets = Targets(**self.targets)
        v = 0.0
        if targets.any():
            lat = mem = None
            if targets.needs_latency:  # of the untrained model: latency has no use for weights
                lat = MeasuredLatency(self.space, data.num_classes, data.input_shape,
                                      target=self.target, threads=self.latency_threads
                                      ).of_model(model)
            if targets.needs_memory:
                mem = CostModel(self.space, data.num_classes, data.input_shape).peak_memory(arch)
            v = targets.violation(Costs(counts.macs, counts.params, lat, mem))
            out.update(latency_ms=lat, peak_memory=mem, violation=v, meets_target=v == 0.0)
        if v > 0:  # infeasible: not worth a training
            reward = self.reward(0.0, counts.macs, dens) - 1.0 - v
            return {"reward": reward, **out, "val_acc": None, "epochs": 0,
                    "train_seconds": 0.0, "trained": False,
                    "seconds": time.perf_counter() - t0}
        recipe = Recipe(**{**self.recipe, "epochs": self.epochs, "budget_s": self.budget_s})
        _, res = train_model(model, data, recipe, seed=seed, progress=False, test=False)
        reward = self.reward(res.val_acc, counts.macs, dens)
        out.update(val_acc=res.val_acc, epochs=res.epochs, train_seconds=res.seconds)
        return {"reward": reward, **out, "seconds": time.perf_counter() - t0}
