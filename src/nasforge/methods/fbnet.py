"""``nasforge search fbnet``: FBNet DNAS end to end (METHODS §1).

LUT (cached per device) → supernet with Gumbel mixed ops and the latency-aware loss → θ/w
bilevel loop → argmax + K samples from P_θ (repaired to the targets if asked) → ranked from
scratch → best trained, exported, measured. This file only declares the parts; the generic
runner (:mod:`nasforge.methods.differentiable`) does the work.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from nasforge.cost.loss import CostLoss
from nasforge.data import Dataset
from nasforge.data.batches import default_batch_size
from nasforge.errors import UserError
from nasforge.methods import differentiable
from nasforge.methods.common import (
    SearchSettings,
    add_common_arguments,
    settings_from_args,
)
from nasforge.methods.differentiable import DifferentiableMethod, warmup_epochs
from nasforge.run.rundir import RunDir
from nasforge.spaces.fbnet import SKELETONS, FBNetSpace
from nasforge.strategies.bilevel import SupernetConfig
from nasforge.supernets.fbnet import FBNetSupernet


@dataclass
class FBNetSettings(SearchSettings):
    space: str = "auto"  # auto: fbnet-fmnist for 28×28 inputs, fbnet-cifar for 32×32
    loss: str = "paper"  # paper | seed
    alpha: float = 0.2
    beta: float = 0.6
    cost: str = "latency"  # latency (LUT µs) | flops (kMACs)
    warmup_epochs: int | None = None
    alternate: str = "step"
    single_path: bool = False
    w_lr: float = 0.1
    theta_lr: float = 0.01
    tau0: float = 5.0
    tau_decay: float = 0.045


def _cost_kind(s: FBNetSettings) -> str:
    if s.cost not in ("latency", "flops"):
        raise UserError(f"--cost must be latency or flops, got {s.cost!r}")
    return s.cost


def _loop(s: FBNetSettings, data: Dataset) -> SupernetConfig:
    epochs = s.epochs or 90
    return SupernetConfig(
        epochs=epochs, warmup_epochs=warmup_epochs(s, epochs, 1 / 9),  # paper: 10 of 90
        batch_size=s.batch_size or default_batch_size(len(data.train), cap=192),
        w_lr=s.w_lr, theta_lr=s.theta_lr, tau0=s.tau0, tau_decay=s.tau_decay,
        tau_schedule="exponential", alternate=s.alternate, hard=s.single_path,
        budget_s=s.budget)


METHOD = DifferentiableMethod(
    name="fbnet", family="fbnet", skeletons=SKELETONS, space_cls=FBNetSpace,
    cost_kind=_cost_kind,
    supernet=lambda space, cm, s: FBNetSupernet.from_cost_model(space, cm),
    loop=_loop, loss=lambda s: CostLoss(form=s.loss, alpha=s.alpha, beta=s.beta))


def run(s: FBNetSettings, rd: RunDir) -> dict:
    """LUT → Gumbel supernet → θ/w loop → argmax + K samples (repaired to the targets) → finish."""
    return differentiable.run(METHOD, s, rd)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    a = p.add_argument
    a("--space", default="auto", help=f"skeleton: auto | {' | '.join(SKELETONS.names())}")
    a("--loss", default="paper", choices=["paper", "seed"],
      help="paper: CE·α·log(LAT)^β (default); seed: α·CE·β·log(LAT)")
    a("--alpha", type=float, default=0.2)
    a("--beta", type=float, default=0.6)
    a("--cost", default="latency", choices=["latency", "flops"], help="cost in the loss")
    a("--warmup-epochs", type=int, default=None, help="w-only epochs (paper: 10 of 90)")
    a("--alternate", default="step", choices=["step", "epoch"], help="alternate w/θ by")
    a("--single-path", action="store_true", help="hard Gumbel: run one block per layer")
    a("--w-lr", type=float, default=0.1)
    a("--theta-lr", type=float, default=0.01)
    a("--tau0", type=float, default=5.0)
    a("--tau-decay", type=float, default=0.045)


def main(args: argparse.Namespace) -> dict:
    s, rd = settings_from_args(FBNetSettings, "fbnet", args)
    assert isinstance(s, FBNetSettings)
    return run(s, rd)

