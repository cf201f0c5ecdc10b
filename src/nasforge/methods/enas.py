"""``nasforge search enas``: ENAS (Pham et al., ICML 2018; METHODS §6) on the ``darts`` or the
``nb201`` cell space.

One set of shared weights for every architecture of the space (:mod:`nasforge.supernets.enas`:
the DARTS supernets' per-edge candidate modules, run single path); an LSTM controller samples
cells (:mod:`nasforge.strategies.enas_controller`); the loop alternates an epoch of
shared-weight training, one sampled architecture per minibatch, with REINFORCE updates of the
controller on validation minibatches (reward: the sampled child's accuracy, moving-average
baseline, entropy bonus); derivation samples ``--samples`` architectures and keeps the one
that scores best on a validation minibatch (:mod:`nasforge.strategies.enas`). Then the shared
finish stages: a ``--latency-ms``/``--flops``/``--params`` target met by the shared repair,
final training, export, measurement.

Defaults: the paper's controller (100 LSTM units, Adam lr 3.5e-4, tanh constant 2.5,
temperature 5) and the ENAS code's micro search (150 epochs, batch 160; ω by SGD Nesterov
lr 0.05 cosine to 0.0005, weight decay 1e-4, gradient clip 5; 30 controller updates of 10
architectures per epoch; entropy weight 1e-4, baseline decay 0.99). In a budgeted search
(``--budget`` without ``--epochs``), three of them give way so that a short search has rounds
enough to alternate: batch 64, 8 ω steps per epoch and 1 controller update per epoch (each
given value wins). ``--final-init``: the final network starts from scratch (the paper), or
from the shared weights of the derived architecture (``shared``; ``auto``: in a budgeted run
when the final network is the search network's size).

The derived ``darts`` genotype is trained as the space's final network (``build_final``: the
auxiliary head, drop path), as ``nasforge search darts`` trains it. The controller's per-(edge,
op) sampling frequencies of every epoch are written to ``RUN_DIR/controller.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from nasforge.arch import Arch, thaw
from nasforge.cost.model import CostModel
from nasforge.cost.targets import Targets
from nasforge.data import Dataset
from nasforge.errors import UserError
from nasforge.methods.budget import DIFFERENTIABLE, Budget, search_budget
from nasforge.methods.common import Finish, finish, setup, space_name_for
from nasforge.methods.darts import SMALL_SPACES, cell_space_names, final_training
from nasforge.methods.settings import SearchSettings, opt
from nasforge.run.rundir import RunDir
from nasforge.spaces import darts as ds
from nasforge.spaces import nb201 as ns
from nasforge.strategies.bilevel import epoch_steps_for, short_run_default
from nasforge.strategies.enas import EnasConfig, EnasLoop, EnasState
from nasforge.strategies.enas_controller import ControllerConfig, EnasController, layout_for
from nasforge.supernets.enas import SharedNet, inherit, recalibrate_bn, shared_for

FAMILIES = {"darts": (ds.CONFIGS, ds.DartsSpace), "nb201": (ns.CONFIGS, ns.NB201Space)}
FINAL_INIT = ("auto", "scratch", "shared")
#: a budgeted search's batch size and controller updates per epoch (docs/enas.md)
BUDGET_BATCH = 64
BUDGET_CONTROLLER_STEPS = 1
#: planned search seconds below which a budgeted search on 28×28 inputs takes the family's
#: small space (``SMALL_SPACES``, shared with DARTS): a single-path ω step of the full spaces
#: at batch 64 took 11 s (nb201-fmnist) and 54 s (darts-fmnist) on a busy core, so a shorter
#: search is a few dozen ω steps where ENAS takes ~1,000 (docs/enas.md)
SHORT_SEARCH_S = 1800.0


@dataclass
class EnasSettings(SearchSettings):
    space: str = opt("darts", lambda: "darts | nb201 (that family's space for the data's input "
                     "size; in a budgeted search under 30 min on 28×28: darts-small | "
                     f"nb201-small) or a space: {' | '.join(cell_space_names())}")
    samples: int = opt(10, "architectures the trained controller samples, each scored on one "
                       "validation minibatch; the best is trained (ENAS's derivation)")
    w_lr: float = opt(0.05, "learning rate of the shared weights (cosine to --w-lr-min)")
    w_lr_min: float = opt(0.0005, "the shared weights' final learning rate")
    w_momentum: float = opt(0.9, "Nesterov momentum of the shared weights")
    w_weight_decay: float = opt(1e-4, "weight decay of the shared weights")
    grad_clip: float = opt(5.0, "gradient-norm clip of the shared weights (0: off)")
    epoch_steps: int | None = opt(None, "shared-weight steps per epoch at most (default: 8 in "
                                  "a budgeted search, else the whole train split; 0: whole)")
    controller_steps: int | None = opt(None, "controller updates per epoch (default: 30, 1 in "
                                       "a budgeted search)")
    controller_aggregate: int = opt(10, "architectures sampled per controller update")
    controller_lr: float = opt(3.5e-4, "Adam learning rate of the controller")
    controller_hidden: int = opt(100, "LSTM units of the controller")
    tanh_constant: float = opt(2.5, "controller logits → C·tanh(logits / temperature)")
    temperature: float = opt(5.0, "sampling temperature of the controller's logits")
    entropy_weight: float = opt(1e-4, "entropy bonus in the reward (acc + w·entropy)")
    baseline_decay: float = opt(0.99, "decay of the reward's moving-average baseline")
    final_init: str = opt("auto", "final network's start: scratch (the paper) | shared (the "
                          "derived architecture's shared weights) | auto (shared in a budgeted "
                          "run when the final network is the search network's size)",
                          FINAL_INIT)

    def validate(self) -> None:
        super().validate()
        if self.samples < 1:
            raise UserError(f"--samples must be ≥ 1 (ENAS derives by sampling), got "
                            f"{self.samples}")


def space_for(s: EnasSettings, input_shape: tuple[int, ...]) -> Any:
    """``--space``: a family (its space for the input size) or a space name of either."""
    family = s.space if s.space in FAMILIES else next(
        (f for f in FAMILIES if s.space.startswith(f"{f}-")), None)
    if family is None:
        raise UserError(f"unknown ENAS space {s.space!r}; choose darts, nb201 or one of "
                        f"{', '.join(cell_space_names())}")
    configs, cls = FAMILIES[family]
    names = configs.names()
    sizes = {n: configs.get(n).input_size for n in names}
    name = "auto" if s.space == family else s.space
    if name == "auto" and short_search(s) and tuple(input_shape[1:]) == (28, 28):
        name = SMALL_SPACES[family]
    return cls(space_name_for(name, input_shape, family, names, sizes))


def short_search(s: EnasSettings) -> bool:
    """A budgeted search planned under :data:`SHORT_SEARCH_S` (``--space darts|nb201`` then
    means the family's small space on 28×28 inputs)."""
    b = search_budget(s, n_candidates=1)
    return b is not None and b < SHORT_SEARCH_S


def loop_config(s: EnasSettings) -> EnasConfig:
    """The loop's settings: the defaults of the module docstring, a budgeted search's three."""
    budgeted = search_budget(s, n_candidates=1) is not None  # (None with --epochs)
    return EnasConfig(
        epochs=s.epochs or 150, batch_size=s.batch_size or (BUDGET_BATCH if budgeted else 160),
        w_lr=s.w_lr, w_lr_min=s.w_lr_min, w_momentum=s.w_momentum,
        w_weight_decay=s.w_weight_decay, grad_clip=s.grad_clip or None,
        controller_steps=short_run_default(s.controller_steps, budgeted,
                                           BUDGET_CONTROLLER_STEPS, 30),
        aggregate=s.controller_aggregate, epoch_steps=epoch_steps_for(s.epoch_steps, budgeted),
        derive_samples=max(1, s.samples), budget_s=search_budget(s, n_candidates=1))


def controller_config(s: EnasSettings) -> ControllerConfig:
    return ControllerConfig(hidden=s.controller_hidden, lr=s.controller_lr,
                            tanh_constant=s.tanh_constant, temperature=s.temperature,
                            entropy_weight=s.entropy_weight, baseline_decay=s.baseline_decay)


def same_size(space: Any) -> bool:
    """Whether the final network is the search network's size (its weights can be inherited)."""
    if isinstance(space, ds.DartsSpace):
        c = space.cfg
        return (c.final_cells, c.final_channels) == (c.cells, c.channels)
    return True


def check_final_init(s: EnasSettings, space: Any) -> None:
    if s.final_init == "shared" and not same_size(space):
        raise UserError(f"--final-init shared needs a final network of the search network's "
                        f"size; {space.name}'s final network is larger (use --final-init "
                        "scratch or auto)")


#: training images the BN statistics of an inherited network are recomputed on
RECALIBRATE_IMAGES = 256


class InheritedNetwork:
    """A space as the final training sees it when it starts from the shared weights: ``build``
    is the final network with every tensor the derived architecture has in ``net``, and BN
    statistics of its own (:func:`~nasforge.supernets.enas.recalibrate_bn` on ``images``)."""

    def __init__(self, space: Any, net: SharedNet, images: torch.Tensor) -> None:
        self.space = space
        self.net = net
        self.images = images[:RECALIBRATE_IMAGES].cpu()
        self.name = space.name

    def build(self, arch: Arch, num_classes: int, in_channels: int) -> nn.Module:
        model = self.space.build(arch, num_classes, in_channels)
        inherit(model, self.net.extract(arch))
        recalibrate_bn(model, self.images)
        return model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.space, name)


def _write_controller(rd: RunDir, st: EnasState) -> None:
    keys = ("epoch", "normal", "reduce", "cell", "max_prob", "entropy", "policy_entropy",
            "baseline", "val_acc")
    first = st.history[0] if st.history else {}
    rd.write_json("controller.json", {
        "ops": first.get("ops"), "edges": first.get("edges"),
        "note": "per epoch: how often the controller samples each (edge, op), over "
                "200 samples (darts: 14 edges × 8 ops per cell, an edge's row sums to how "
                "often it is an input; nb201: 6 edges × 5 ops)",
        "history": [{k: h[k] for k in keys if k in h} for h in st.history]})


@dataclass
class SearchOutcome:
    space: Any
    net: SharedNet
    cost_model: CostModel
    targets: Targets
    state: EnasState
    derived: Arch
    candidate: Arch
    convergence: dict[str, Any]


def search(s: EnasSettings, rd: RunDir, data: Dataset, budget: Budget | None = None
           ) -> SearchOutcome:
    """The search stage: shared weights + controller, derivation, target repair, search.json."""
    space = space_for(s, data.input_shape)
    check_final_init(s, space)  # before the search, not after it
    targets = Targets.from_settings(s)
    cm = CostModel.for_run(space, data.num_classes, data.input_shape, kind="flops",
                           need_latency=targets.needs_latency, target=s.target,
                           threads=s.threads, lut_path=s.lut, run_dir=rd.path,
                           progress=s.progress)
    torch.manual_seed(s.seed)
    net = shared_for(space, data.num_classes, data.input_shape[0])
    cm.use_counter(net.counts)
    controller = EnasController(layout_for(space), controller_config(s), seed=s.seed)
    loop = EnasLoop(net, controller, space, data, loop_config(s), seed=s.seed,
                    checkpoint=rd.file("enas.ckpt"), progress=s.progress,
                    on_epoch=lambda st: _write_controller(rd, st))
    loop.resume()
    if budget is not None:  # data and the latency table were fixed costs
        budget.rebase()
        if loop.cfg.budget_s is not None:
            loop.cfg = replace(loop.cfg, budget_s=budget.left())
    st = loop.fit()
    derived, scored = loop.derive()
    net = loop.net.cpu()
    cand = net.repair(derived, targets, cm)
    last = st.history[-1] if st.history else {}
    convergence = {"max_prob": float(last.get("max_prob", 0.0)),
                   "entropy": float(last.get("entropy", 0.0)), "tau_final": None,
                   "tau_end_planned": None, "epochs": int(st.epoch)}
    rd.write_json("search.json", {
        "history": st.history, "derived": thaw(derived.genes), "derivation": scored,
        "candidates": [{"arch": thaw(cand.genes), **cm.costs(cand).to_dict()}],
        "controller": {"baseline": controller.baseline, "updates": controller.updates},
        "convergence": convergence, "cost": cm.kind, "targets": targets.to_dict(),
        "cardinality": space.cardinality()})
    return SearchOutcome(space, net, cm, targets, st, derived, cand, convergence)


def final_space(s: EnasSettings, out: SearchOutcome, data: Dataset
                ) -> tuple[Any, EnasSettings, bool]:
    """The space the final training builds from, its settings (the DARTS final recipe on
    ``darts``) and whether it starts from the shared weights."""
    check_final_init(s, out.space)
    shared = s.final_init == "shared" or (s.final_init == "auto" and s.budget is not None
                                          and same_size(out.space))
    space, recipe = final_training(out.space, s)
    if shared:
        space = InheritedNetwork(space, out.net, data.train.x)
    return space, replace(s, extra={**s.extra, "recipe": recipe}), shared


def run(s: EnasSettings, rd: RunDir) -> dict[str, Any]:
    """Search → derive (→ repair to the targets) → final training → export → measure."""
    budget = Budget.for_settings(s, DIFFERENTIABLE, n_candidates=1, run_dir=rd)
    with budget.stage("search"):
        _, data = setup(s)
        out = search(s, rd, data, budget)
    space, fs, shared = final_space(s, out, data)
    return finish(fs, rd, data, Finish(
        space=space, candidates=[out.candidate], cost_model=out.cost_model,
        targets=out.targets, search_seconds=out.state.elapsed_s,
        search_epochs=out.state.epoch,
        extra={"derived": thaw(out.derived.genes), "final_init": "shared" if shared
               else "scratch"},
        convergence=out.convergence, budget=budget))

