"""``nasforge search fbnetv2``: DMaskingNAS end to end (METHODS §2).

(LUT at every option combination, cached per device, when latency is involved) → masking
supernet with the effective-shape cost in the loss → θ/w bilevel loop with τ decaying to
near one-hot → the argmax (+ ``--samples`` K draws from P_θ, default 0), each repaired by the
shared greedy shrink (cheapest loss of log P_θ per unit of cost saved) until it meets
``--flops``/``--params``/``--latency-ms`` → ranked from scratch when several → best trained,
exported, measured (the shared finish stage). This file only declares the parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from nasforge.cost.loss import CostLoss
from nasforge.data import Dataset
from nasforge.data.batches import default_batch_size
from nasforge.methods import differentiable
from nasforge.methods.budget import search_budget
from nasforge.methods.differentiable import DifferentiableMethod, warmup_epochs
from nasforge.methods.settings import CostSupernetSettings, opt
from nasforge.run.rundir import RunDir
from nasforge.spaces.masking import SKELETONS, MaskingSpace
from nasforge.strategies.bilevel import SupernetConfig, epoch_steps_for, short_run_default
from nasforge.supernets.dmasking import DMaskingSupernet


@dataclass
class FBNetV2Settings(CostSupernetSettings):
    # FBNetV2 trains the argmax architecture (the paper); --samples K adds K draws from P_θ,
    # ranked from scratch by the finish stage
    samples: int = opt(0, "architectures sampled from P_θ besides argmax")
    space: str = opt("auto", lambda: f"skeleton: auto | {' | '.join(SKELETONS.names())} "
                     "(auto: by the input size)")
    cost: str = opt("auto", "effective cost in the loss (auto: latency with --latency-ms, "
                    "params with --params alone, else flops)",
                    ("auto", "flops", "params", "latency"))
    loss: str = opt("paper", "paper: CE·α·log(cost)^β; seed: α·CE·β·log(cost); "
                    "additive: CE+λ·log", ("paper", "seed", "additive"))
    alpha: float = opt(0.2, "α of the loss")
    beta: float = opt(0.6, "β of the loss")
    warmup_epochs: int | None = opt(None, "w-only epochs (default: 1/9 of them, at least 1)")
    alternate: str = opt("step", "alternate w/θ by", ("step", "epoch"))
    epoch_steps: int | None = opt(None, "w steps per search epoch at most (default: 8 in a "
                                  "budgeted search, else the whole train split; 0: whole)")
    # not the paper's: one resolution and one-hot masks per step train the shared weights
    # 3–4× faster per step and better per second on CPU (docs/fbnetv2.md, with figures)
    single_path: bool = opt(True, "hard Gumbel (straight-through one-hot; the paper: soft)")
    w_lr: float = opt(0.1, "learning rate of the weights")
    theta_lr: float | None = opt(None, "learning rate of θ (default: 0.5 in a budgeted search, "
                                 "whose few θ steps must move it; the paper's 0.01 otherwise)")
    tau0: float = opt(5.0, "initial Gumbel temperature")
    tau_end: float = opt(0.1, "temperature at the last planned epoch")

    def cost_kind(self) -> str:
        if self.cost != "auto":
            return self.cost
        if self.latency_ms is not None:
            return "latency"
        return "params" if self.params is not None and self.flops is None else "flops"


#: θ lr of a budgeted search (measured on digits, 31–36 s of search: docs/fbnetv2.md)
BUDGET_THETA_LR = 0.5


def _loop(s: FBNetV2Settings, data: Dataset) -> SupernetConfig:
    epochs = s.epochs or 90
    budgeted = search_budget(s) is not None
    return SupernetConfig(
        epochs=epochs, warmup_epochs=warmup_epochs(s, epochs, 1 / 9, minimum=1),
        batch_size=s.batch_size or default_batch_size(len(data.train), cap=192),
        w_lr=s.w_lr, theta_lr=short_run_default(s.theta_lr, budgeted, BUDGET_THETA_LR, 0.01),
        tau0=s.tau0, tau_schedule="geometric",
        tau_end=s.tau_end, alternate=s.alternate, hard=s.single_path, budget_s=search_budget(s),
        epoch_steps=epoch_steps_for(s.epoch_steps, budgeted))


METHOD = DifferentiableMethod(
    name="fbnetv2", family="fbnetv2", skeletons=SKELETONS, space_cls=MaskingSpace,
    cost_kind=lambda s: s.cost_kind(),
    supernet=lambda space, cm, s: DMaskingSupernet.from_cost_model(space, cm),
    loop=_loop, loss=lambda s: CostLoss(form=s.loss, alpha=s.alpha, beta=s.beta))


def run(s: FBNetV2Settings, rd: RunDir) -> dict:
    """Masking supernet → θ/w loop (τ → tau_end) → argmax (+ K draws), repaired → finish."""
    return differentiable.run(METHOD, s, rd)
