"""``nasforge search densenas``: DenseNAS end to end (METHODS §4).

Cost table (LUT µs per op on the target, or MACs) → densely connected supernet → two-stage
search in the shared loop (weights only for the first third, then alternating weight and
architecture steps; loss ``CE + λ·log_b(chained cost)``) → argmax ops + Viterbi path, and
K architectures sampled from the relaxation (each repaired to the targets if given; DenseNAS
tries other paths when ops alone cannot meet them) →
ranked from scratch → the best trained, exported, measured; ``path.txt`` says which blocks,
widths and strides the path keeps.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from nasforge.arch import Arch
from nasforge.cost.loss import CostLoss
from nasforge.cost.model import CostModel
from nasforge.data import Dataset
from nasforge.errors import UserError
from nasforge.methods import differentiable
from nasforge.methods.common import (
    SearchSettings,
    add_common_arguments,
    settings_from_args,
)
from nasforge.methods.differentiable import DifferentiableMethod, SearchOutcome, warmup_epochs
from nasforge.run.rundir import RunDir
from nasforge.spaces.dense import SPECS, DenseSpace
from nasforge.strategies.bilevel import SupernetConfig
from nasforge.supernets.densenas import DenseSupernet


@dataclass
class DenseNASSettings(SearchSettings):
    """Defaults are the official code's (ImageNet, MobileNetV2 space)."""

    space: str = "auto"  # auto: dense-fmnist (28²), dense-cifar (32²), dense-imagenet (224²)
    cost: str = "latency"  # latency (LUT µs) | flops (kMACs)
    lam: float = 0.15  # λ of CE + λ·log_b(cost)
    log_base: float = 15.0
    warmup_epochs: int | None = None  # default: a third of the epochs (official 50 of 150)
    alternate: str = "step"
    w_lr: float = 0.2
    w_weight_decay: float = 4e-5
    theta_lr: float = 3e-4
    theta_weight_decay: float = 1e-3
    weight_ops: int = 1  # ops drawn per slot in weight steps (0: all, the full weighted sum)
    arch_ops: int = 2  # ops drawn per slot in architecture steps (0: all)


def _cost_kind(s: DenseNASSettings) -> str:
    if s.cost not in ("latency", "flops"):
        raise UserError(f"--cost must be latency or flops, got {s.cost!r}")
    return s.cost


def _supernet(space: DenseSpace, cm: CostModel, s: DenseNASSettings) -> DenseSupernet:
    net = DenseSupernet.from_cost_model(space, cm)
    net.set_op_sampling(s.weight_ops, s.arch_ops)
    return net


def _loop(s: DenseNASSettings, data: Dataset) -> SupernetConfig:
    epochs = s.epochs or 150
    return SupernetConfig(
        epochs=epochs, warmup_epochs=warmup_epochs(s, epochs, 1 / 3),  # official: 50 of 150
        batch_size=s.batch_size or 128, w_lr=s.w_lr, w_momentum=0.9,
        w_weight_decay=s.w_weight_decay, theta_lr=s.theta_lr,
        theta_weight_decay=s.theta_weight_decay, theta_betas=(0.5, 0.999), tau0=1.0,
        tau_schedule="constant", alternate=s.alternate, budget_s=s.budget)


def _write_path(s: DenseNASSettings, rd: RunDir, data: Dataset, out: SearchOutcome,
                result: dict) -> None:
    """``path.txt``: which blocks, widths and strides the trained architecture keeps."""
    space, net, cm = out.space, out.supernet, out.cost_model
    best = Arch.from_dict(result["arch"])
    c = cm.costs(best)
    lines = [space.describe(best, data.num_classes), "",
             f"log P(path) under the searched path probabilities: {net.path_log_prob(best):.3f}",
             f"MACs {c.macs:,}  params {c.params:,}"
             + (f"  predicted latency {c.latency_ms:.3f} ms" if c.latency_ms is not None else "")]
    if best != out.derived:
        lines += ["", "(the Viterbi/argmax derivation was",
                  space.describe(out.derived, data.num_classes), ")"]
    rd.file("path.txt").write_text("\n".join(lines) + "\n")


METHOD = DifferentiableMethod(
    name="densenas", family="dense", skeletons=SPECS, space_cls=DenseSpace,
    cost_kind=_cost_kind, supernet=_supernet, loop=_loop,
    loss=lambda s: CostLoss(form="additive", lam=s.lam, base=s.log_base), after=_write_path)


def run(s: DenseNASSettings, rd: RunDir) -> dict:
    """Dense supernet → two-stage loop → argmax ops + Viterbi path (+ K samples), repaired →
    finish → path.txt."""
    return differentiable.run(METHOD, s, rd)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    a = p.add_argument
    a("--space", default="auto", help=f"space: auto | {' | '.join(SPECS.names())}")
    a("--cost", default="latency", choices=["latency", "flops"], help="cost in the loss")
    a("--lam", type=float, default=0.15, help="λ of CE + λ·log_b(cost) (official 0.15)")
    a("--log-base", type=float, default=15.0, help="b of log_b(cost) (official 15)")
    a("--warmup-epochs", type=int, default=None, help="weights-only epochs (official 50 of 150)")
    a("--alternate", default="step", choices=["step", "epoch"], help="alternate w/θ by")
    a("--w-lr", type=float, default=0.2)
    a("--w-weight-decay", type=float, default=4e-5)
    a("--theta-lr", type=float, default=3e-4, help="Adam lr of op and path parameters")
    a("--theta-weight-decay", type=float, default=1e-3)
    a("--weight-ops", type=int, default=1,
      help="ops drawn per layer in weight steps (official 1; 0 = all, full weighted sum)")
    a("--arch-ops", type=int, default=2,
      help="ops drawn per layer in architecture steps (official 2; 0 = all)")


def main(args: argparse.Namespace) -> dict:
    s, rd = settings_from_args(DenseNASSettings, "densenas", args)
    assert isinstance(s, DenseNASSettings)
    return run(s, rd)
