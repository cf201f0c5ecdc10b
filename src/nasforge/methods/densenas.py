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

from dataclasses import dataclass

from nasforge.arch import Arch
from nasforge.cost.loss import CostLoss
from nasforge.cost.model import CostModel
from nasforge.data import Dataset
from nasforge.data.batches import default_batch_size
from nasforge.errors import UserError
from nasforge.methods import differentiable
from nasforge.methods.budget import search_budget
from nasforge.methods.differentiable import SearchOutcome, warmup_epochs
from nasforge.methods.settings import CostSupernetSettings, opt
from nasforge.methods.short_budget import ShortBudgetMethod, short_search
from nasforge.run.rundir import RunDir
from nasforge.spaces.dense import SPECS, DenseSpace
from nasforge.strategies.bilevel import SupernetConfig, epoch_steps_for, short_run_default
from nasforge.supernets.densenas import DenseSupernet


@dataclass
class DenseNASSettings(CostSupernetSettings):
    """Defaults are the official code's (ImageNet, MobileNetV2 space), except in a budgeted
    search, whose few steps get a larger θ lr and rounds of 8 steps, a short one
    (:mod:`nasforge.methods.short_budget`) also the small 28×28 space with every op run in
    weight steps and no θ weight decay (docs/densenas.md), and the batch, sized by the data
    set (128 from 5,120 training images up)."""

    space: str = opt("auto", lambda: f"space: auto | {' | '.join(SPECS.names())} (auto: "
                     "dense-fmnist for 28² — dense-small when the budgeted search is short —, "
                     "dense-cifar for 32², dense-imagenet for 224²)")
    cost: str = opt("latency", "cost in the loss: latency (LUT µs) | flops (kMACs)",
                    ("latency", "flops"))
    lam: float = opt(0.15, "λ of CE + λ·log_b(cost) (official 0.15)")
    log_base: float = opt(15.0, "b of log_b(cost) (official 15)")
    warmup_epochs: int | None = opt(None, "weights-only epochs (default: a third of the "
                                    "epochs; official 50 of 150)")
    alternate: str = opt("step", "alternate w/θ by", ("step", "epoch"))
    epoch_steps: int | None = opt(None, "w steps per search epoch at most (default: 8 in a "
                                  "budgeted search, else the whole train split; 0: whole)")
    w_lr: float = opt(0.2, "SGD learning rate of the weights")
    w_weight_decay: float = opt(4e-5, "weight decay of the weights")
    theta_lr: float | None = opt(None, "Adam lr of op and path parameters (default: 2.0 in a "
                                 "short budgeted search, 0.3 in a longer one, whose few θ "
                                 "steps must move them; otherwise the official 3e-4)")
    theta_weight_decay: float | None = opt(None, "weight decay of op and path parameters "
                                           "(default: 0 in a short budgeted search, whose "
                                           "few large θ steps it pulls back; otherwise the "
                                           "official 1e-3)")
    weight_ops: int | None = opt(None, "ops drawn per layer in weight steps (0 = all, the full "
                                 "weighted sum; default: 0 on dense-small, where drawn single "
                                 "ops do not train in a short search, else the official 1)")
    arch_ops: int = opt(2, "ops drawn per layer in architecture steps (official 2; 0 = all)")


def _cost_kind(s: DenseNASSettings) -> str:
    if s.cost not in ("latency", "flops"):
        raise UserError(f"--cost must be latency or flops, got {s.cost!r}")
    return s.cost


#: ``--space auto`` on 28×28 inputs in a short budgeted search
SMALL_SPACE = "dense-small"
#: θ lr of a budgeted search: a short one (the small space, ~30 s of search on digits; with
#: the weight decay off, 2.0 concentrates as far as FBNet's 1.0 in the same 16 θ steps) and a
#: longer one (docs/densenas.md)
SHORT_THETA_LR = 2.0
BUDGET_THETA_LR = 0.3
#: θ weight decay of a short budgeted search: Adam's L2 term (wd·α, added to the gradient Adam
#: normalises) pulls the logits back steadily against the noisy data gradient; at the
#: official 1e-3 a short search on digits (16 θ steps, lr 2.0) ends at mean pmax 0.81,
#: without it at 0.95 (docs/densenas.md)
SHORT_THETA_WD = 0.0
THETA_WD = 1e-3  # official


def weight_ops_for(s: DenseNASSettings, space: DenseSpace) -> int:
    """``--weight-ops``, else every op (0) on :data:`SMALL_SPACE` and the official 1 elsewhere:
    drawn single ops give each op a fraction of the few steps of a short search and the
    following layers inconsistent inputs (on digits the supernet stays at chance; with every op
    run it learns: docs/densenas.md)."""
    if s.weight_ops is not None:
        return s.weight_ops
    return 0 if space.name == SMALL_SPACE else 1


def _supernet(space: DenseSpace, cm: CostModel, s: DenseNASSettings) -> DenseSupernet:
    net = DenseSupernet.from_cost_model(space, cm)
    net.set_op_sampling(weight_ops_for(s, space), s.arch_ops)
    return net


def _loop(s: DenseNASSettings, data: Dataset) -> SupernetConfig:
    epochs = s.epochs or 150
    budgeted = search_budget(s) is not None
    return SupernetConfig(
        epochs=epochs, warmup_epochs=warmup_epochs(s, epochs, 1 / 3),  # official: 50 of 150
        # official 128; small data sets get enough steps per epoch (digits: 32)
        batch_size=s.batch_size or default_batch_size(len(data.train), cap=128),
        w_lr=s.w_lr, w_momentum=0.9, w_weight_decay=s.w_weight_decay,
        theta_lr=short_run_default(s.theta_lr, budgeted,
                                   SHORT_THETA_LR if short_search(s) else BUDGET_THETA_LR, 3e-4),
        theta_weight_decay=(s.theta_weight_decay if s.theta_weight_decay is not None
                            else SHORT_THETA_WD if short_search(s) else THETA_WD),
        theta_betas=(0.5, 0.999), tau0=1.0,
        tau_schedule="constant", alternate=s.alternate, budget_s=search_budget(s),
        epoch_steps=epoch_steps_for(s.epoch_steps, budgeted))


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


METHOD = ShortBudgetMethod(
    name="densenas", family="dense", skeletons=SPECS, space_cls=DenseSpace,
    cost_kind=_cost_kind, supernet=_supernet, loop=_loop,
    loss=lambda s: CostLoss(form="additive", lam=s.lam, base=s.log_base), after=_write_path,
    small_space=SMALL_SPACE)


def run(s: DenseNASSettings, rd: RunDir) -> dict:
    """Dense supernet → two-stage loop → argmax ops + Viterbi path (+ K samples), repaired →
    finish → path.txt."""
    return differentiable.run(METHOD.for_settings(s), s, rd)
