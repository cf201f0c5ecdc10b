"""``nasforge search darts``: DARTS (Liu et al., ICLR 2019; METHODS §6) on the ``darts`` or the
``nb201`` cell space, first or second order, with collapse detection and β-decay.

Every edge of the cell is a softmax(α)-weighted mixture of all candidate ops
(:mod:`nasforge.supernets.darts`); w trains on the train split, α on the val split, alternating
step by step (:mod:`nasforge.strategies.bilevel`; ``--order 2``: the one-step unrolled
architecture gradient of :mod:`nasforge.strategies.darts_step`). Paper defaults: 50 epochs,
batch 64, no warm-up; w by SGD lr 0.025 cosine to 0.001, momentum 0.9, wd 3e-4, gradient
clipping 5; α by Adam lr 3e-4, betas (0.5, 0.999), wd 1e-3; no cost term in the loss (a
``--latency-ms``/``--flops``/``--params`` target is met by the shared repair of the derived
genotype). Derivation: two strongest non-``none`` inputs per node (``darts``), argmax per edge
(``nb201``); ``--samples`` (default 0, DARTS derives one genotype) adds draws from softmax(α).

Beyond the paper: the derived normal cell is checked for DARTS's collapse onto skip connections
(:meth:`~nasforge.supernets.darts.CellSupernet.collapse`: a warning on the progress line each
epoch, ``collapse`` in ``search.json`` and ``result.json``), and ``--beta-decay λ`` adds
β-DARTS's regulariser (Ye et al., CVPR 2022) to the α loss.

The derived ``darts`` genotype is trained as the space's final network (``build_final``: the
auxiliary head with loss weight 0.4, drop path raised linearly to 0.2, as DARTS trains it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

from nasforge.arch import Arch, thaw
from nasforge.cost.loss import CostLoss
from nasforge.data import Dataset
from nasforge.errors import UserError
from nasforge.methods import differentiable
from nasforge.methods.budget import DIFFERENTIABLE, Budget, search_budget
from nasforge.methods.common import Finish, finish, setup
from nasforge.methods.differentiable import DifferentiableMethod
from nasforge.methods.settings import SearchSettings, opt
from nasforge.run.result import write_result
from nasforge.run.rundir import RunDir
from nasforge.spaces import darts as ds
from nasforge.spaces import nb201 as ns
from nasforge.strategies.bilevel import SupernetConfig
from nasforge.supernets.darts import DartsSupernet, NB201Supernet

CELLS = ("darts", "nb201")
#: DARTS's α optimiser betas (the paper's; not a flag)
ALPHA_BETAS = (0.5, 0.999)


def _spaces() -> list[str]:
    return [*ds.CONFIGS.names(), *ns.CONFIGS.names()]


@dataclass
class DartsSettings(SearchSettings):
    cell: str | None = opt(None, "cell family: darts (normal + reduction cell, 8 ops) | nb201 "
                           "(NAS-Bench-201 cell, 5 ops); default: the --space's, else darts",
                           CELLS)
    space: str = opt("auto", lambda: f"space: auto | {' | '.join(_spaces())} (auto: the "
                     "--cell family's space for the input size, 28×28 fmnist, 32×32 cifar)")
    order: int = opt(2, "architecture gradient: 1 (first order) | 2 (one-step unrolled, "
                     "the paper's best)")
    samples: int = opt(0, "genotypes drawn from softmax(α) besides the derived one "
                       "(DARTS: none)")
    w_lr: float = opt(0.025, "learning rate of the weights (cosine to --w-lr-min)")
    w_lr_min: float = opt(0.001, "the weights' final learning rate")
    w_momentum: float = opt(0.9, "SGD momentum of the weights")
    w_weight_decay: float = opt(3e-4, "weight decay of the weights")
    grad_clip: float = opt(5.0, "gradient-norm clip of the weights (0: off)")
    alpha_lr: float = opt(3e-4, "Adam learning rate of α (betas 0.5, 0.999)")
    alpha_weight_decay: float = opt(1e-3, "weight decay of α")
    beta_decay: float = opt(0.0, "β-DARTS regularisation: λ·mean_e logsumexp(α_e) on the α "
                            "loss, λ rising linearly from 0 to LAMBDA/2 over the epochs "
                            "(β-DARTS: 50); 0: off")


def family(s: DartsSettings) -> str:
    """The cell family: ``--cell``, else the one ``--space`` names, else ``darts``."""
    named = next((c for c in CELLS if s.space.startswith(f"{c}-")), None)
    if s.space != "auto" and named is None:
        raise UserError(f"unknown DARTS space {s.space!r}; choose from auto, "
                        f"{', '.join(_spaces())}")
    if s.cell is not None and named is not None and s.cell != named:
        raise UserError(f"--space {s.space} is a {named} space but --cell is {s.cell}; drop "
                        "one of them or make them agree")
    return s.cell or named or "darts"


def _loop(s: DartsSettings, data: Dataset) -> SupernetConfig:
    if s.order not in (1, 2):
        raise UserError(f"--order must be 1 (first order) or 2 (second order), got {s.order}")
    for name in ("w_lr", "alpha_lr"):
        if getattr(s, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got "
                            f"{getattr(s, name)}")
    return SupernetConfig(
        epochs=s.epochs or 50, warmup_epochs=0, batch_size=s.batch_size or 64,
        w_lr=s.w_lr, w_lr_min=s.w_lr_min, w_momentum=s.w_momentum,
        w_weight_decay=s.w_weight_decay, grad_clip=s.grad_clip or None,
        theta_lr=s.alpha_lr, theta_betas=ALPHA_BETAS, theta_weight_decay=s.alpha_weight_decay,
        tau0=1.0, tau_schedule="constant", alternate="step", arch_order=s.order,
        beta_decay=s.beta_decay, budget_s=search_budget(s))


def _method(name: str, configs: Any, space_cls: Any, supernet: Any) -> DifferentiableMethod:
    return DifferentiableMethod(
        name="darts", family=name, skeletons=configs, space_cls=space_cls,
        cost_kind=lambda s: "flops",  # the loss has no cost term; targets use the repair
        supernet=lambda space, cm, s: supernet.from_cost_model(space, cm),
        loop=_loop, loss=lambda s: CostLoss(form="none"))


METHODS = {"darts": _method("darts", ds.CONFIGS, ds.DartsSpace, DartsSupernet),
           "nb201": _method("nb201", ns.CONFIGS, ns.NB201Space, NB201Supernet)}


class FinalNetwork:
    """A DARTS space as the final training sees it: ``build`` is the space's final network
    (``build_final``: final depth and width, auxiliary head); everything else is the space's."""

    def __init__(self, space: ds.DartsSpace) -> None:
        self.space = space
        self.name = space.name

    def build(self, arch: Arch, num_classes: int, in_channels: int) -> Any:
        return self.space.build_final(arch, num_classes, in_channels)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.space, name)


def run(s: DartsSettings, rd: RunDir) -> dict[str, Any]:
    """Supernet search → derive (→ repair to the targets) → collapse check → final training
    (``darts``: the final network with auxiliary head and drop path) → export → measure."""
    m = METHODS[family(s)]
    budget = Budget.for_settings(s, DIFFERENTIABLE, n_candidates=1 + s.samples, run_dir=rd)
    with budget.stage("search"):
        _, data = setup(s)
        out = differentiable.search(m, s, rd, data, budget)
    collapse = out.supernet.collapse()
    rd.write_json("search.json", {**rd.read_json("search.json"), "collapse": collapse})
    if collapse["warning"] and s.progress:
        print(f"nasforge darts: warning: {collapse['warning']} (try --beta-decay 50)",
              file=sys.stderr)
    space: Any = out.space
    fs = s
    if isinstance(space, ds.DartsSpace):
        cfg = space.cfg
        recipe = {"aux_weight": cfg.auxiliary_weight if cfg.auxiliary else 0.0,
                  "drop_path": cfg.drop_path_prob, **s.extra.get("recipe", {})}
        fs = replace(s, extra={**s.extra, "recipe": recipe})
        space = FinalNetwork(space)
    result = finish(fs, rd, data, Finish(
        space=space, candidates=out.candidates, cost_model=out.cost_model,
        targets=out.targets, search_seconds=out.state.elapsed_s,
        search_epochs=out.state.epoch,
        extra={"derived": thaw(out.derived.genes), "collapse": collapse},
        convergence=out.convergence, budget=budget))
    result["collapse"] = collapse
    write_result(rd.file("result.json"), result)
    return result
