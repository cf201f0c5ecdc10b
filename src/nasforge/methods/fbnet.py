"""``nasforge search fbnet``: FBNet DNAS end to end (METHODS §1).

LUT (cached per device) → supernet with Gumbel mixed ops and the latency-aware loss → θ/w
bilevel loop → argmax + K samples from P_θ (repaired to the targets if asked) → ranked from
scratch → best trained, exported, measured. This file only declares the parts; the generic
runner (:mod:`nasforge.methods.differentiable`) does the work.
"""

from __future__ import annotations

from dataclasses import dataclass

from nasforge.cost.loss import CostLoss
from nasforge.data import Dataset
from nasforge.data.batches import default_batch_size
from nasforge.errors import UserError
from nasforge.methods import differentiable
from nasforge.methods.budget import search_budget
from nasforge.methods.differentiable import warmup_epochs
from nasforge.methods.settings import CostSupernetSettings, opt
from nasforge.methods.short_budget import ShortBudgetMethod, short_search
from nasforge.run.rundir import RunDir
from nasforge.spaces.fbnet import SKELETONS, FBNetSpace
from nasforge.strategies.bilevel import SupernetConfig, epoch_steps_for
from nasforge.supernets.fbnet import FBNetSupernet


@dataclass
class FBNetSettings(CostSupernetSettings):
    """The paper's defaults, except in a short budgeted search
    (:mod:`nasforge.methods.short_budget`): θ gets the larger lr its few steps need and
    ``--space auto`` takes the small 28×28 skeleton (docs/fbnet.md, "Convergence")."""

    space: str = opt("auto", lambda: f"skeleton: auto | {' | '.join(SKELETONS.names())} "
                     "(auto: fbnet-fmnist for 28×28 inputs — fbnet-small when the budgeted "
                     "search is short —, fbnet-cifar for 32×32)")
    loss: str = opt("paper", "paper: CE·α·log(LAT)^β; seed: α·CE·β·log(LAT)",
                    ("paper", "seed"))
    alpha: float = opt(0.2, "α of the loss")
    beta: float = opt(0.6, "β of the loss")
    cost: str = opt("latency", "cost in the loss: latency (LUT µs) | flops (kMACs)",
                    ("latency", "flops"))
    warmup_epochs: int | None = opt(None, "w-only epochs (default: 1/9 of the epochs; paper: "
                                    "10 of 90)")
    alternate: str = opt("step", "alternate w/θ by", ("step", "epoch"))
    epoch_steps: int | None = opt(None, "w steps per search epoch at most (default: 8 in a "
                                  "budgeted search, else the whole train split; 0: whole)")
    single_path: bool = opt(False, "hard Gumbel: run one block per layer")
    w_lr: float = opt(0.1, "learning rate of the weights")
    theta_lr: float | None = opt(None, "learning rate of θ (default: 1.0 in a short budgeted "
                                 "search, whose few θ steps must move it; the paper's 0.01 "
                                 "otherwise)")
    tau0: float = opt(5.0, "initial Gumbel temperature")
    tau_decay: float = opt(0.045, "temperature decay: τ = τ0·exp(−decay·epoch) over 90 epochs; "
                           "a shorter plan runs the same range over its own epochs")


def _cost_kind(s: FBNetSettings) -> str:
    if s.cost not in ("latency", "flops"):
        raise UserError(f"--cost must be latency or flops, got {s.cost!r}")
    return s.cost


#: θ lr of a short budgeted search (Adam moves a logit by about its lr a step; measured on
#: digits: docs/fbnet.md)
BUDGET_THETA_LR = 1.0
#: ``--space auto`` on 28×28 inputs in a short budgeted search
SMALL_SKELETON = "fbnet-small"


def _loop(s: FBNetSettings, data: Dataset) -> SupernetConfig:
    epochs = s.epochs or 90
    budgeted = search_budget(s) is not None
    theta_lr = s.theta_lr if s.theta_lr is not None else (
        BUDGET_THETA_LR if short_search(s) else 0.01)  # paper: 0.01
    return SupernetConfig(
        epochs=epochs, warmup_epochs=warmup_epochs(s, epochs, 1 / 9),  # paper: 10 of 90
        batch_size=s.batch_size or default_batch_size(len(data.train), cap=192),
        w_lr=s.w_lr, theta_lr=theta_lr,
        tau0=s.tau0, tau_decay=s.tau_decay,
        tau_schedule="exponential", alternate=s.alternate, hard=s.single_path,
        budget_s=search_budget(s), epoch_steps=epoch_steps_for(s.epoch_steps, budgeted))


METHOD = ShortBudgetMethod(
    name="fbnet", family="fbnet", skeletons=SKELETONS, space_cls=FBNetSpace,
    cost_kind=_cost_kind,
    supernet=lambda space, cm, s: FBNetSupernet.from_cost_model(space, cm),
    loop=_loop, loss=lambda s: CostLoss(form=s.loss, alpha=s.alpha, beta=s.beta),
    small_space=SMALL_SKELETON)


def run(s: FBNetSettings, rd: RunDir) -> dict:
    """LUT → Gumbel supernet → θ/w loop → argmax + K samples (repaired to the targets) → finish."""
    return differentiable.run(METHOD.for_settings(s), s, rd)
