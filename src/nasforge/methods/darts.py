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
auxiliary head with loss weight 0.4, drop path raised linearly to 0.2, as DARTS trains it);
``result.json``'s ``params`` and ``flops`` are that network's (without the auxiliary head,
which inference does not run).

A budgeted search (``--budget`` without ``--epochs``) shorter than :data:`SHORT_SEARCH_S`
keeps the paper's procedure but not its sizes, which do not fit (docs/darts.md): on 28×28
inputs ``--space auto`` is :data:`SMALL_SPACES` (``darts-small``: 5 cells searched at width 4,
trained at width 8, no auxiliary head or drop path; ``nb201-small``: the NAS-Bench-201 network
at width 8, one cell per stage), first order, α lr :data:`BUDGET_ALPHA_LR`, batch
:data:`BUDGET_BATCH`, rounds of 8 w steps, the first half of them w only
(:data:`BUDGET_WARMUP`); each of them given on the command line wins. Without a budget every
default is the paper's. On ``digits`` the final training does not flip images (a mirrored
digit is another digit).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

from nasforge.arch import Arch, thaw
from nasforge.cost.flops import count_module
from nasforge.cost.loss import CostLoss
from nasforge.data import Dataset
from nasforge.errors import UserError
from nasforge.methods import differentiable
from nasforge.methods.budget import DIFFERENTIABLE, Budget, search_budget
from nasforge.methods.common import Finish, finish, setup
from nasforge.methods.settings import SearchSettings, SupernetSettings, opt
from nasforge.methods.short_budget import ShortBudgetMethod
from nasforge.models.darts import DartsNetwork
from nasforge.run.result import write_result
from nasforge.run.rundir import RunDir
from nasforge.spaces import darts as ds
from nasforge.spaces import nb201 as ns
from nasforge.strategies.bilevel import SupernetConfig, epoch_steps_for, short_run_default
from nasforge.supernets.darts import DartsSupernet, NB201Supernet

CELLS = ("darts", "nb201")
#: DARTS's α optimiser betas (the paper's; not a flag)
ALPHA_BETAS = (0.5, 0.999)
#: planned search seconds below which a budgeted search uses the budgeted defaults: the paper's
#: 8-cell, C = 16 supernet takes ~10 s per second-order step at batch 64 on 28×28 on one busy
#: CPU core, so a short search of it ends inside its first epoch with α at its initial noise,
#: and its final network gets one epoch (docs/darts.md)
SHORT_SEARCH_S = 1800.0
#: ``--space auto`` of a short budgeted search on 28×28 inputs, by cell family
SMALL_SPACES = {"darts": "darts-small", "nb201": "nb201-small"}
#: α's Adam lr in a short budgeted search: the paper's 3e-4 moves α by ~0.01 in the ~30 α steps
#: such a search takes, which leaves the derived cell the argmax of the initial noise
BUDGET_ALPHA_LR = 3e-3
#: the search batch of a short budgeted search: a step of the small supernet at batch 64 took
#: 5–10 s on a busy core, and the loop checks the clock only between steps
BUDGET_BATCH = 32
#: the w-only share of a short budgeted search's epochs: α of convs that have had a few dozen
#: steps prefers the parameter-free ops (two budgeted nb201 searches on digits without it
#: derived 5 and 6 avg_pool edges of 6, whose networks then reached 0.87 and 0.12)
BUDGET_WARMUP = 0.5


def cell_space_names() -> list[str]:
    """Every registered darts- and nb201-family space (shared with ENAS's flag help)."""
    return [*ds.CONFIGS.names(), *ns.CONFIGS.names()]


@dataclass
class DartsSettings(SupernetSettings):
    cell: str | None = opt(None, "cell family: darts (normal + reduction cell, 8 ops) | nb201 "
                           "(NAS-Bench-201 cell, 5 ops); default: the --space's, else darts",
                           CELLS)
    space: str = opt("auto", lambda: f"space: auto | {' | '.join(cell_space_names())} (auto: the "
                     "--cell family's space for the input size, 28×28 fmnist, 32×32 cifar)")
    order: int | None = opt(None, "architecture gradient: 1 (first order) | 2 (one-step "
                            "unrolled, the paper's best; default 2, 1 in a short budgeted "
                            "search)")
    samples: int = opt(0, "genotypes drawn from softmax(α) besides the derived one "
                       "(DARTS: none)")
    w_lr: float = opt(0.025, "learning rate of the weights (cosine to --w-lr-min)")
    w_lr_min: float = opt(0.001, "the weights' final learning rate")
    w_momentum: float = opt(0.9, "SGD momentum of the weights")
    w_weight_decay: float = opt(3e-4, "weight decay of the weights")
    grad_clip: float = opt(5.0, "gradient-norm clip of the weights (0: off)")
    alpha_lr: float | None = opt(None, "Adam learning rate of α, betas 0.5, 0.999 (default "
                                 "3e-4, the paper's; 3e-3 in a short budgeted search)")
    epoch_steps: int | None = opt(None, "w steps per search epoch at most (default: 8 in a "
                                  "budgeted search, else the whole train split; 0: whole)")
    alpha_weight_decay: float = opt(1e-3, "weight decay of α")
    beta_decay: float = opt(0.0, "β-DARTS regularisation: λ·mean_e logsumexp(α_e) on the α "
                            "loss, λ rising linearly from 0 to LAMBDA/2 over the epochs "
                            "(β-DARTS: 50); 0: off")


def family(s: DartsSettings) -> str:
    """The cell family: ``--cell``, else the one ``--space`` names, else ``darts``."""
    named = next((c for c in CELLS if s.space.startswith(f"{c}-")), None)
    if s.space != "auto" and named is None:
        raise UserError(f"unknown DARTS space {s.space!r}; choose from auto, "
                        f"{', '.join(cell_space_names())}")
    if s.cell is not None and named is not None and s.cell != named:
        raise UserError(f"--space {s.space} is a {named} space but --cell is {s.cell}; drop "
                        "one of them or make them agree")
    return s.cell or named or "darts"


def short_search(s: DartsSettings) -> bool:
    """A budgeted search (no ``--epochs``) planned shorter than :data:`SHORT_SEARCH_S` (the
    shared rule of :mod:`nasforge.methods.short_budget` with DARTS's own threshold: its
    supernet step costs several times FBNet's)."""
    b = search_budget(s)
    return b is not None and b < SHORT_SEARCH_S


def _loop(s: DartsSettings, data: Dataset) -> SupernetConfig:
    short = short_search(s)
    order = short_run_default(s.order, short, 1, 2)
    alpha_lr = short_run_default(s.alpha_lr, short, BUDGET_ALPHA_LR, 3e-4)
    if order not in (1, 2):
        raise UserError(f"--order must be 1 (first order) or 2 (second order), got {order}")
    for name, v in (("w-lr", s.w_lr), ("alpha-lr", alpha_lr)):
        if v <= 0:
            raise UserError(f"--{name} must be positive, got {v}")
    epochs = s.epochs or 50
    return SupernetConfig(
        epochs=epochs, warmup_epochs=round(epochs * BUDGET_WARMUP) if short else 0,
        batch_size=s.batch_size or (BUDGET_BATCH if short else 64),
        w_lr=s.w_lr, w_lr_min=s.w_lr_min, w_momentum=s.w_momentum,
        w_weight_decay=s.w_weight_decay, grad_clip=s.grad_clip or None,
        theta_lr=alpha_lr, theta_betas=ALPHA_BETAS, theta_weight_decay=s.alpha_weight_decay,
        tau0=1.0, tau_schedule="constant", alternate="step", arch_order=order,
        beta_decay=s.beta_decay, budget_s=search_budget(s),
        epoch_steps=epoch_steps_for(s.epoch_steps, search_budget(s) is not None))


def _method(name: str, configs: Any, space_cls: Any, supernet: Any) -> ShortBudgetMethod:
    return ShortBudgetMethod(
        name="darts", family=name, skeletons=configs, space_cls=space_cls,
        cost_kind=lambda s: "flops",  # the loss has no cost term; targets use the repair
        supernet=lambda space, cm, s: supernet.from_cost_model(space, cm),
        loop=_loop, loss=lambda s: CostLoss(form="none"), small_space=SMALL_SPACES[name])


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


def final_training(space: Any, s: SearchSettings) -> tuple[Any, dict[str, Any]]:
    """What the final training of a cell search builds and its recipe overrides: on ``darts``
    the final network with DARTS's auxiliary loss and drop path (the user's ``recipe`` wins),
    on ``nb201`` the benchmark's network; digits are never mirrored. Shared by DARTS and
    ENAS."""
    recipe = dict(s.extra.get("recipe", {}))
    if s.dataset == "digits":  # mirrored digits are other digits
        recipe.setdefault("flip", False)
    if isinstance(space, ds.DartsSpace):
        cfg = space.cfg
        recipe = {"aux_weight": cfg.auxiliary_weight if cfg.auxiliary else 0.0,
                  "drop_path": cfg.drop_path_prob, **recipe}
        space = FinalNetwork(space)
    return space, recipe


def method_for(s: DartsSettings) -> ShortBudgetMethod:
    """The method ``s`` runs (its cell's family; the small space in a short search): also what
    a data-parallel worker rebuilds (:func:`nasforge.methods.differentiable.method_for`)."""
    return replace(METHODS[family(s)], small=short_search(s))


def run(s: DartsSettings, rd: RunDir) -> dict[str, Any]:
    """Supernet search → derive (→ repair to the targets) → collapse check → final training
    (``darts``: the final network with auxiliary head and drop path) → export → measure."""
    m = method_for(s)
    budget = Budget.for_settings(s, DIFFERENTIABLE, n_candidates=1 + s.samples, run_dir=rd)
    with budget.stage("search"):
        _, data = setup(s)
        out = differentiable.search(m, s, rd, data, budget)
    collapse = out.supernet.collapse()
    rd.write_json("search.json", {**rd.read_json("search.json"), "collapse": collapse})
    if collapse["warning"] and s.progress:
        print(f"nasforge darts: warning: {collapse['warning']} (try --beta-decay 50)",
              file=sys.stderr)
    space, recipe = final_training(out.space, s)
    fs = replace(s, extra={**s.extra, "recipe": recipe})
    result = finish(fs, rd, data, Finish(
        space=space, candidates=out.candidates, cost_model=out.cost_model,
        targets=out.targets, search_seconds=out.state.elapsed_s,
        search_epochs=out.state.epoch,
        extra={"derived": thaw(out.derived.genes), "collapse": collapse},
        convergence=out.convergence, budget=budget, world_size=out.world_size))
    result["collapse"] = collapse
    if isinstance(out.space, ds.DartsSpace):
        counts = final_counts(out.space, Arch.from_dict(result["arch"]), data)
        result["params"], result["flops"] = counts["params"], counts["flops"]
        if not counts["search_sized"]:
            result["latency_ms"]["predicted"] = None
    write_result(rd.file("result.json"), result)
    return result


def final_counts(space: ds.DartsSpace, arch: Arch, data: Dataset) -> dict[str, Any]:
    """``params``/``flops`` of the network the final training trained (``build_final``'s size,
    without the auxiliary head inference does not run), and whether it is the search size;
    when it is not (``darts-cifar``: 20 cells of 36) ``run`` drops the latency table's
    prediction, which is of the search-sized network (the measured latency is the final
    network's)."""
    cfg = space.cfg
    net = DartsNetwork(space.genotype(arch), data.num_classes, data.input_shape[0],
                       cfg.final_cells, cfg.final_channels, space.input_size)
    c = count_module(net.eval(), tuple(data.input_shape))
    return {"params": int(c.params), "flops": int(c.macs),
            "search_sized": (cfg.final_cells, cfg.final_channels) == (cfg.cells, cfg.channels)}
