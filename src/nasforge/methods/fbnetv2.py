"""``nasforge search fbnetv2``: DMaskingNAS end to end (METHODS §2).

(LUT at every option combination, cached per device, when latency is involved) → masking
supernet with the effective-shape cost in the loss → θ/w bilevel loop with τ decaying to
near one-hot → the argmax (+ ``--samples`` K draws from P_θ, default 0), each repaired by the
shared greedy shrink (cheapest loss of log P_θ per unit of cost saved) until it meets
``--flops``/``--params``/``--latency-ms`` → ranked from scratch when several → best trained,
exported, measured (the shared finish stage). This file only declares the parts.
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
from nasforge.spaces.masking import SKELETONS, MaskingSpace
from nasforge.strategies.bilevel import SupernetConfig
from nasforge.supernets.dmasking import DMaskingSupernet


@dataclass
class FBNetV2Settings(SearchSettings):
    space: str = "auto"  # auto: fbnetv2-fmnist (28²), fbnetv2-cifar (32²), fbnetv2-imagenet
    cost: str = "auto"  # auto: latency with --latency-ms, params with --params, else flops
    loss: str = "paper"  # paper | seed | additive
    alpha: float = 0.2
    beta: float = 0.6
    warmup_epochs: int | None = None
    alternate: str = "step"
    single_path: bool = False
    w_lr: float = 0.1
    theta_lr: float = 0.01
    tau0: float = 5.0
    tau_end: float = 0.1

    def cost_kind(self) -> str:
        if self.cost != "auto":
            return self.cost
        if self.latency_ms is not None:
            return "latency"
        return "params" if self.params is not None and self.flops is None else "flops"


def _loop(s: FBNetV2Settings, data: Dataset) -> SupernetConfig:
    epochs = s.epochs or 90
    return SupernetConfig(
        epochs=epochs, warmup_epochs=warmup_epochs(s, epochs, 1 / 9, minimum=1),
        batch_size=s.batch_size or default_batch_size(len(data.train), cap=192),
        w_lr=s.w_lr, theta_lr=s.theta_lr, tau0=s.tau0, tau_schedule="geometric",
        tau_end=s.tau_end, alternate=s.alternate, hard=s.single_path, budget_s=s.budget)


METHOD = DifferentiableMethod(
    name="fbnetv2", family="fbnetv2", skeletons=SKELETONS, space_cls=MaskingSpace,
    cost_kind=lambda s: s.cost_kind(),
    supernet=lambda space, cm, s: DMaskingSupernet.from_cost_model(space, cm),
    loop=_loop, loss=lambda s: CostLoss(form=s.loss, alpha=s.alpha, beta=s.beta))


def run(s: FBNetV2Settings, rd: RunDir) -> dict:
    """Masking supernet → θ/w loop (τ → tau_end) → argmax (+ K draws), repaired → finish."""
    return differentiable.run(METHOD, s, rd)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    # FBNetV2 trains the argmax architecture (the paper); --samples K adds K draws from P_θ,
    # ranked from scratch by the finish stage
    p.set_defaults(samples=0)
    a = p.add_argument
    a("--space", default="auto", help=f"skeleton: auto | {' | '.join(SKELETONS.names())}")
    a("--cost", default="auto", choices=["auto", "flops", "params", "latency"],
      help="effective cost in the loss (auto: follows the target given)")
    a("--loss", default="paper", choices=["paper", "seed", "additive"],
      help="paper: CE·α·log(cost)^β (default); seed: α·CE·β·log(cost); additive: CE+λ·log")
    a("--alpha", type=float, default=0.2)
    a("--beta", type=float, default=0.6)
    a("--warmup-epochs", type=int, default=None, help="w-only epochs (default: 1/9 of them)")
    a("--alternate", default="step", choices=["step", "epoch"], help="alternate w/θ by")
    a("--single-path", action="store_true", help="hard Gumbel (straight-through one-hot)")
    a("--w-lr", type=float, default=0.1)
    a("--theta-lr", type=float, default=0.01)
    a("--tau0", type=float, default=5.0, help="initial Gumbel temperature")
    a("--tau-end", type=float, default=0.1, help="temperature at the last planned epoch")


def main(args: argparse.Namespace) -> dict:
    s, rd = settings_from_args(FBNetV2Settings, "fbnetv2", args)
    if not isinstance(s, FBNetV2Settings):
        raise UserError("internal: fbnetv2 settings expected")
    return run(s, rd)
