"""The one runner of every differentiable method (FBNet, FBNetV2, DenseNAS, …).

A method only *declares* its parts (:class:`DifferentiableMethod`): which space family, which
supernet, which loop settings (temperature schedule, warm-up, optimisers) and loss. The
runner does the rest, the same way for all of them:

data → space (by input size) → :class:`~nasforge.cost.model.CostModel` (one load-or-build of
the LUT; a resumed run reads its own ``lut.json``) → supernet → the bilevel loop
(:mod:`nasforge.strategies.bilevel`, checkpointed every epoch) → ``derive()`` + ``sample(K)``
→ each repaired to the :class:`~nasforge.cost.targets.Targets` by the shared greedy shrink →
``search.json`` → the shared finish stages (rank from scratch, train, export, measure).

Data parallel (``--nproc N``, or N processes started by ``torchrun``): only the bilevel loop
runs on N ranks (:mod:`nasforge.distributed`; the loop's side in
:mod:`nasforge.strategies.bilevel`). This process prepares the run (data, LUT, ``lut.json``),
then ``--nproc`` spawns N workers (:func:`search_worker`) that rebuild the method from the run
directory's ``config.json`` and train, rank 0 writing ``supernet.ckpt``; under torchrun this
process is rank 0 and the others run :func:`follow`. Once the loop is done, this process alone
resumes the finished checkpoint and derives, repairs, ranks, trains, exports and measures.
``result.json`` records ``world_size``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from nasforge import distributed
from nasforge.arch import Arch, thaw
from nasforge.cost.loss import CostLoss
from nasforge.cost.model import CostModel
from nasforge.cost.targets import Targets
from nasforge.data import Dataset
from nasforge.errors import UserError
from nasforge.methods.budget import DIFFERENTIABLE, Budget, planned_candidates
from nasforge.methods.common import Finish, SearchSettings, finish, rng_for, setup, space_name_for
from nasforge.registry import Registry
from nasforge.run.rundir import RunDir
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.bilevel import LoopState, SupernetConfig, SupernetTrainer
from nasforge.supernets.base import Supernet


@dataclass(frozen=True)
class DifferentiableMethod:
    """The parts of one differentiable method.

    ``family``/``skeletons``/``space_cls``: the spaces it searches (``<family>-fmnist|cifar|
    imagenet``, picked by input size when ``--space auto``); ``cost_kind(s)``: the loss's cost
    (latency | flops | params); ``supernet(space, cost_model, s)``; ``loop(s, data)``: the
    bilevel loop's settings; ``loss(s)``; ``after(s, rd, data, net, cost_model, result)``: an
    optional last step (DenseNAS writes ``path.txt``).
    """

    name: str
    family: str
    skeletons: Registry[Any]
    space_cls: Callable[[str], SearchSpace]
    cost_kind: Callable[[Any], str]
    supernet: Callable[[SearchSpace, CostModel, Any], Supernet]
    loop: Callable[[Any, Dataset], SupernetConfig]
    loss: Callable[[Any], CostLoss]
    after: Callable[..., None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def space_for(self, name: str, input_shape: tuple[int, ...]) -> SearchSpace:
        names = self.skeletons.names()
        sizes = {n: self.skeletons.get(n).input_size for n in names}
        return self.space_cls(space_name_for(name, input_shape, self.family, names, sizes))


def warmup_epochs(s: SearchSettings, epochs: int, fraction: float, minimum: int = 0) -> int:
    """``--warmup-epochs`` if given, else ``fraction`` of the epochs (at least ``minimum``,
    leaving one search epoch)."""
    if getattr(s, "warmup_epochs", None) is not None:
        return int(s.warmup_epochs)  # type: ignore[attr-defined]
    if epochs <= 1:
        return 0
    return min(max(minimum, round(epochs * fraction)), epochs - 1)


@dataclass
class SearchOutcome:
    """What the search stage hands to the finish stages."""

    space: SearchSpace
    supernet: Supernet
    cost_model: CostModel
    targets: Targets
    state: LoopState
    convergence: dict[str, Any]
    derived: Arch
    samples: list[Arch]
    candidates: list[Arch]
    world_size: int = 1


def method_for(s: SearchSettings) -> DifferentiableMethod:
    """The method ``s`` runs, rebuilt from its settings (a data-parallel worker has only the
    run directory): the method module's ``method_for(s)``, else its ``METHOD`` (as
    ``for_settings(s)`` when it has one)."""
    from nasforge.methods.registry import METHODS

    mod = importlib.import_module(METHODS.get(s.method).run.__module__)
    if hasattr(mod, "method_for"):
        return mod.method_for(s)
    m = mod.METHOD
    return m.for_settings(s) if hasattr(m, "for_settings") else m


def _parts(m: DifferentiableMethod, s: SearchSettings, rd: RunDir,
           data: Dataset) -> tuple[SearchSpace, Targets, CostModel, Supernet]:
    """Space, targets, cost model (the one LUT load-or-build) and the supernet, seeded: the
    same on every rank."""
    space = m.space_for(s.space, data.input_shape)  # type: ignore[attr-defined]
    targets = Targets.from_settings(s)
    cm = CostModel.for_run(space, data.num_classes, data.input_shape, kind=m.cost_kind(s),
                           need_latency=targets.needs_latency, target=s.target,
                           threads=s.threads, lut_path=s.lut, run_dir=rd.path,
                           progress=s.progress)
    torch.manual_seed(s.seed)
    net = m.supernet(space, cm, s)
    counts = getattr(net, "counts", None)
    if counts is not None:  # the supernet's analytic tables: same numbers, no model builds
        cm.use_counter(counts)
    return space, targets, cm, net


def _trainer(m: DifferentiableMethod, s: SearchSettings, rd: RunDir, data: Dataset,
             net: Supernet, dist: distributed.Context = distributed.SINGLE) -> SupernetTrainer:
    return SupernetTrainer(net, data, m.loop(s, data), search_loss(m, s), seed=s.seed,
                           checkpoint=rd.file("supernet.ckpt"), progress=s.progress, dist=dist)


def search_loss(m: DifferentiableMethod, s: SearchSettings) -> CostLoss:
    """The method's loss, floored at the run's target of the loss's cost unless
    ``--below-target reward`` (:class:`~nasforge.cost.loss.CostLoss`)."""
    loss = m.loss(s)
    if loss.form == "none" or getattr(s, "below_target", "flat") == "reward":
        return loss
    return replace(loss, floor=Targets.from_settings(s).in_loss_unit(m.cost_kind(s)))


def _train_rank(ctx: distributed.Context, payload: dict[str, Any],
                data: Dataset | None = None) -> None:
    """One rank's share of the loop: the method rebuilt from ``payload['run_dir']``'s
    settings, the checkpoint resumed, fit for ``payload['budget_s']`` seconds."""
    from nasforge.methods.registry import METHODS

    rd, cfg = RunDir.open(payload["run_dir"])
    s = METHODS.get(cfg["method"]).settings_cls.from_dict(cfg)
    s.progress = bool(payload.get("progress", True)) and ctx.is_main
    m = method_for(s)
    if data is None:
        _, data = setup(s)
    _, _, _, net = _parts(m, s, rd, data)
    loop = _trainer(m, s, rd, data, net, ctx)
    loop.resume()
    if payload.get("budget_s") is not None:
        loop.cfg = replace(loop.cfg, budget_s=float(payload["budget_s"]))
    loop.fit()


def search_worker(payload: dict[str, Any]) -> None:
    """A ``--nproc`` worker (:func:`nasforge.distributed.launch` sets its rank)."""
    from nasforge.device import resolve_device

    _, cfg = RunDir.open(payload["run_dir"])
    ctx = distributed.init(resolve_device(cfg.get("device", "auto")))
    _train_rank(ctx, payload)


def follow() -> int:
    """A torchrun rank > 0 of ``nasforge search METHOD``: take part in rank 0's loop (the run
    directory and budget come from rank 0), write nothing, return the exit status."""
    from nasforge.device import resolve_device

    ctx = distributed.init(resolve_device(_device_flag()))
    try:
        payload = json.loads(distributed.broadcast_text(None, ctx))
        _train_rank(ctx, payload)
    finally:
        distributed.shutdown()
    return 0


def _device_flag() -> str:
    """``--device`` of this command line (a torchrun follower has not parsed settings)."""
    import sys

    argv = sys.argv
    for i, a in enumerate(argv):
        if a == "--device" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--device="):
            return a.split("=", 1)[1]
    return "auto"


def _run_distributed(s: SearchSettings, rd: RunDir, data: Dataset,
                     budget_s: float | None) -> int:
    """The loop on N ranks (``--nproc`` spawns them; under torchrun this process is rank 0);
    returns N, or 1 when the loop should run here in one process."""
    nproc = int(getattr(s, "nproc", 1))
    payload = {"run_dir": str(rd.path), "budget_s": budget_s, "progress": s.progress}
    if distributed.under_torchrun():
        if nproc > 1 and nproc != distributed.env_context().world_size:
            raise UserError(f"--nproc {nproc} under torchrun, whose world size is "
                            f"{distributed.env_context().world_size}: drop --nproc (torchrun "
                            "sets the processes)")
        ctx = distributed.init(data.device)
        try:
            distributed.broadcast_text(json.dumps(payload), ctx)
            _train_rank(ctx, payload, data)
        finally:
            distributed.shutdown()
        return ctx.world_size
    if nproc > 1:
        distributed.launch(nproc, search_worker, (payload,))
    return nproc


def search(m: DifferentiableMethod, s: SearchSettings, rd: RunDir, data: Dataset,
           budget: Budget | None = None) -> SearchOutcome:
    """The search stage alone: supernet training, derivation, target repair, search.json.
    Within ``budget``'s search stage the loop gets what is left of it once the data, the
    latency table and the supernet are in (else the seconds the method's loop settings say)."""
    space, targets, cm, net = _parts(m, s, rd, data)
    budget_s = None
    if budget is not None:  # data, LUT, supernet were fixed costs: re-split what is left
        budget.rebase()
        budget_s = budget.left()
    world = _run_distributed(s, rd, data, budget_s)
    loop = _trainer(m, s, rd, data, net)
    loop.resume()  # after a data-parallel loop: its finished state, fit() is not run again
    if budget_s is not None:
        loop.cfg = replace(loop.cfg, budget_s=budget_s)
    st = loop.fit() if world == 1 else loop.state
    convergence = loop.convergence()
    net = net.cpu()
    derived = net.derive()
    samples = net.sample(s.samples, rng_for(s.seed, 1))
    cands = [net.repair(a, targets, cm) for a in [derived, *samples]]
    grown = None
    if getattr(s, "fill_target", False) and targets.any():
        grown = net.grow(cands[0], targets, cm)
        # first: when the ranking has no time to compare candidates, the grown one is trained
        # (in every search_vs_random row where the ranking could not run, the grown candidate
        # trained better than the argmax; docs/search_vs_random.md)
        cands.insert(0, grown)  # priced and deduplicated by the ranking
    rd.write_json("search.json", {
        "history": st.history, "derived": thaw(derived.genes),
        "samples": [thaw(a.genes) for a in samples],
        "grown": None if grown is None else thaw(grown.genes),
        "candidates": [{"arch": thaw(a.genes), **cm.costs(a).to_dict()} for a in cands],
        "arch_state": net.arch_state(), "convergence": convergence,
        "arch_parameters": [p.detach().tolist() for p in net.arch_parameters()],
        "cost": cm.kind, "targets": targets.to_dict(), "cardinality": space.cardinality(),
        "loss": asdict(search_loss(m, s)),
    })
    return SearchOutcome(space, net, cm, targets, st, convergence, derived, samples, cands,
                         world_size=world)


def run(m: DifferentiableMethod, s: SearchSettings, rd: RunDir) -> dict[str, Any]:
    """Search → derive → repair → rank → train → export → measure, within ``--budget``
    (:mod:`nasforge.methods.budget`); returns result.json."""
    budget = Budget.for_settings(s, DIFFERENTIABLE, n_candidates=planned_candidates(s),
                                 run_dir=rd)
    with budget.stage("search"):
        _, data = setup(s)
        out = search(m, s, rd, data, budget)
    result = finish(s, rd, data, Finish(
        space=out.space, candidates=out.candidates, cost_model=out.cost_model,
        targets=out.targets, search_seconds=out.state.elapsed_s,
        search_epochs=out.state.epoch, extra={"derived": thaw(out.derived.genes)},
        convergence=out.convergence, budget=budget, world_size=out.world_size))
    if m.after is not None:
        m.after(s, rd, data, out, result)
    return result
