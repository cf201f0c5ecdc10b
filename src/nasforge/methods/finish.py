"""The finish stage every search ends with, as stages a library user can also call alone:

:func:`rank` (price the candidates, keep those that meet the targets, train each briefly from
scratch; resumable through ``candidates.json``) → :func:`train_final` (the best, from scratch)
→ :func:`export_model` (arch.json, model.pt, TorchScript, ONNX) → :func:`measure` (latency on
the target, counts, the prediction, peak memory) → :func:`write_outputs` (result.json, run.json,
report.md). :func:`finish` composes them the way every method's ``run()`` uses them, each
stage under its share of the command's ``--budget`` (:mod:`nasforge.methods.budget`): the
ranking's seconds are split over the candidates it trains, the final training gets the train
stage's seconds, and ``result.json`` records the plan and what each stage spent.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasforge.arch import Arch
from nasforge.cost.measure import device_fingerprint, measure_latency
from nasforge.cost.model import CostModel, Costs
from nasforge.cost.targets import Targets
from nasforge.data import Dataset
from nasforge.errors import UserError
from nasforge.export import export_onnx, export_torchscript
from nasforge.methods.budget import DIFFERENTIABLE, Budget
from nasforge.methods.settings import SearchSettings
from nasforge.run.result import write_result
from nasforge.run.rundir import RunDir
from nasforge.spaces.base import SearchSpace
from nasforge.train.trainer import Recipe, Trainer, TrainResult, train_model

MIB = 2**20
#: the least training steps worth a candidate's short training under a budget: a ranking that
#: cannot give each candidate this many (and the validation pass) trains fewer, the derived
#: argmax first, or none. Seconds were the rule before: at 2 s a candidate, Fashion-MNIST
#: rankings on a loaded CPU trained 14 steps each and compared chance accuracies.
MIN_RANK_STEPS = 100
#: a ranking budget under which no candidate is even timed: two candidates' 100 steps and the
#: timing probe do not fit (the probe alone overran a 12 s command's ranking share)
MIN_RANK_S = 3.0


@dataclass
class Finish:
    """What a method's search hands to :func:`finish`."""

    space: SearchSpace
    candidates: list[Arch]
    cost_model: CostModel
    targets: Targets
    search_seconds: float
    search_epochs: int
    extra: dict[str, Any] = field(default_factory=dict)
    convergence: dict[str, Any] | None = None  # result.json's optional field (supernets)
    budget: Budget | None = None  # the command's budget, its search stage done (None: a plan
    # from the settings, the search counted as ``search_seconds``)
    world_size: int | None = None  # result.json's optional field: the search loop's processes


@dataclass(frozen=True)
class Candidate:
    """A priced candidate. ``costs.latency_ms`` is the table's prediction or, for a cost model
    without a table (e.g. with :class:`~nasforge.cost.model.MeasuredLatency`), the latency
    measured on the target (``latency_measured``)."""

    arch: Arch
    costs: Costs
    meets: bool
    latency_measured: bool = False

    def row(self) -> dict[str, Any]:
        c = self.costs
        r = {"arch": self.arch.genes, "macs": c.macs, "params": c.params,
             "predicted_ms": None if self.latency_measured else c.latency_ms,
             "meets": self.meets}
        if self.latency_measured:
            r["measured_ms"] = c.latency_ms
        if c.peak_memory is not None:
            r["peak_memory_mb"] = c.peak_memory / MIB
        return r


@dataclass
class Ranking:
    """The outcome of :func:`rank`: the pick, every priced candidate, and the short trainings
    (rows of :meth:`Candidate.row` plus ``val_acc`` and ``seconds``)."""

    best: Arch
    candidates: list[Candidate]
    ranked: list[dict[str, Any]]


@dataclass(frozen=True)
class Measurement:
    """The final model on the target: counts and peak memory (``costs``), the table's
    prediction (None without a table), and the latency measured on the device ``fingerprint``
    describes."""

    costs: Costs
    predicted_ms: float | None
    latency_ms: float
    fingerprint: dict[str, Any]

    @property
    def device(self) -> str:
        fp = self.fingerprint
        return f"{fp['target']}: {fp.get('gpu', fp['cpu'])} ({fp['threads']} threads)"


def price(candidates: Sequence[Arch], cost_model: CostModel,
          targets: Targets) -> list[Candidate]:
    """The distinct candidates with their costs and whether each meets ``targets`` (a latency
    target needs a cost model that prices latency: a table or a measurement)."""
    seen: set[str] = set()
    out = []
    for a in candidates:
        if a.key() in seen:
            continue
        seen.add(a.key())
        c = cost_model.costs(a, memory=targets.needs_memory)
        measured = cost_model.lut is None and c.latency_ms is not None
        out.append(Candidate(a, c, targets.meets(c), measured))
    return out


def rank(candidates: Sequence[Arch], data: Dataset, cost_model: CostModel, targets: Targets, *,
         epochs: int = 2, seed: int = 0, recipe: dict[str, Any] | None = None,
         run_dir: RunDir | None = None, progress: bool = False,
         budget_s: float | None = None) -> Ranking:
    """Pick the candidate to train: of those that meet ``targets``, the best after ``epochs``
    of training from scratch (when there are several and ``epochs`` > 0), else the first.
    With ``run_dir`` each finished short training is recorded in ``candidates.json`` and a
    resumed call skips it.

    ``budget_s``: seconds for all the short trainings. Every candidate trained gets the same
    number of steps, as their full trainings will (equal seconds gave a bigger candidate fewer
    steps and ranked it below a smaller one it would beat): each candidate's time per step is
    probed (:func:`step_probe`), and as many are trained, in order, as get
    :data:`MIN_RANK_STEPS` steps and a validation pass each; the steps are then what the
    seconds left buy them all (:func:`equal_steps`), at most ``epochs``' worth. Each training
    also gets its share of the seconds as a budget, so a machine that slows down cuts the
    ranking short instead of running past the command's budget."""
    t0 = time.perf_counter()
    priced = price(candidates, cost_model, targets)
    ok = [c for c in priced if c.meets]
    if not ok:
        desc = "; ".join(f"{r['macs']} MACs, {r['params']} params, "
                         f"{r.get('measured_ms', r['predicted_ms'])} ms"
                         for r in (c.row() for c in priced))
        raise UserError(f"no derived candidate meets the target ({targets.describe()}); "
                        f"candidates: {desc}. Relax the target or search longer.")
    ranked: list[dict[str, Any]] = run_dir.read_json("candidates.json", default=[]) \
        if run_dir is not None else []
    if len(ok) == 1 or epochs <= 0:
        return Ranking(ok[0].arch, priced, ranked)
    done = {json.dumps(r["arch"]) for r in ranked}
    todo = [c for c in ok if json.dumps(c.arch.genes) not in done]
    if budget_s is not None and budget_s < MIN_RANK_S and not ranked:
        return Ranking(ok[0].arch, priced, ranked)
    steps: int | None = None
    probes: list[StepProbe] = []
    if budget_s is not None and todo:
        resumed = next((r["steps"] for r in ranked if r.get("steps")), None)
        for c in todo:  # probe while the candidates probed so far still fit
            probes.append(step_probe(c.arch, data, cost_model, recipe, seed=seed,
                                     epochs=epochs))
            left = budget_s - (time.perf_counter() - t0)
            if sum(p.seconds(MIN_RANK_STEPS) for p in probes) > left:
                probes.pop()
                break
        todo = todo[:len(probes)]
        if not ranked and len(todo) <= 1:  # no time to compare candidates: the first
            return Ranking(ok[0].arch, priced, ranked)
        left = budget_s - (time.perf_counter() - t0)
        steps = resumed or equal_steps(probes, left)
    for k, c in enumerate(todo):
        given: dict[str, Any] = {}
        if steps is not None:
            left = budget_s - (time.perf_counter() - t0)  # type: ignore[operator]
            need = [p.seconds(steps) for p in probes[k:]]
            if len(ranked) >= 2 and left < probes[k].seconds(MIN_RANK_STEPS):
                break  # out of time: rank those trained
            given = {"steps": steps, "budget_s": max(0.0, left * need[0] / sum(need))}
        short = Recipe(epochs=epochs, **{**(recipe or {}), **given})
        torch.manual_seed(seed)
        model = cost_model.build(c.arch)
        _, res = train_model(model, data, short, seed=seed, progress=progress,
                             desc=f"candidate {len(ranked) + 1}/{len(ok)}",
                             share=(k + 1, len(todo)), test=False)
        row = {**c.row(), "val_acc": res.val_acc, "seconds": res.seconds}
        ranked.append(row if steps is None else {**row, "steps": steps})
        if run_dir is not None:
            run_dir.write_json("candidates.json", ranked)
    best_genes = json.dumps(pick_ranked(ranked, len(data.val))["arch"])
    best = next(c.arch for c in ok if json.dumps(c.arch.genes) == best_genes)
    return Ranking(best, priced, ranked)


#: ranking accuracies within this many binomial standard errors of the best one are a tie that
#: the short training cannot break (on 2,000 validation images one SE is about 0.009)
RANK_TIE_SE = 1.0


def pick_ranked(ranked: Sequence[dict[str, Any]], n_val: int) -> dict[str, Any]:
    """The ranking's winner: the best validation accuracy, except that among the candidates
    tied with it (within :data:`RANK_TIE_SE` standard errors of the best, √(p(1−p)/n) on
    ``n_val`` images) the one that computes most (MACs) wins. Why: at equal measured accuracy a
    short training favours the smaller model, which learns faster, while the full training
    favours capacity. At stop 21 the grown candidate beat the derived argmax after full
    training in 4 rows of 4, and the best random architectures were those nearest the target
    (docs/search_vs_random.md)."""
    top = max(ranked, key=lambda r: r["val_acc"])
    p = float(top["val_acc"])
    se = math.sqrt(max(p * (1.0 - p), 0.0) / max(n_val, 1))
    tied = [r for r in ranked if r["val_acc"] >= p - RANK_TIE_SE * se]
    return max(tied, key=lambda r: (r.get("macs") or 0, r["val_acc"]))


#: the share of a ranking's seconds planned for steps: the rest absorbs what a probe of a few
#: steps does not see (epoch ends, a machine that slows down), so that the planned steps finish
RANK_SLACK = 0.9


@dataclass(frozen=True)
class StepProbe:
    """A candidate's measured cost in a ranking: seconds per training step, the validation
    pass, and the steps its ``epochs`` hold."""

    per_step: float
    eval_s: float
    max_steps: int

    def seconds(self, steps: int) -> float:
        """Seconds for ``steps`` training steps (at most its epochs') and the validation."""
        return self.per_step * min(steps, self.max_steps) + self.eval_s


def step_probe(arch: Arch, data: Dataset, cost_model: CostModel,
               recipe: dict[str, Any] | None, *, seed: int = 0, epochs: int = 2) -> StepProbe:
    """Time a few training steps of ``arch`` (a throw-away model) and estimate its validation
    pass (forward only, about a third of a step per image)."""
    torch.manual_seed(seed)
    tr = Trainer(cost_model.build(arch), data, Recipe(epochs=epochs, **(recipe or {})),
                 seed=seed, progress=False)
    per_step = tr.seconds_per_step()
    bs = tr.batch_size()
    return StepProbe(per_step, tr.eval_seconds(per_step / bs, test=False),
                     epochs * tr.steps_per_epoch())


def equal_steps(probes: Sequence[StepProbe], seconds: float) -> int:
    """The steps every probed candidate can train in ``seconds`` together (:data:`RANK_SLACK`
    of them), validation passes included; at most their epochs', at least 1."""
    fit = (RANK_SLACK * seconds - sum(p.eval_s for p in probes)) / \
        max(sum(p.per_step for p in probes), 1e-9)
    return max(1, min(int(fit), max(p.max_steps for p in probes)))


def train_final(space: SearchSpace, arch: Arch, data: Dataset, *, epochs: int = 15,
                budget_s: float | None = None, seed: int = 0,
                recipe: dict[str, Any] | None = None, checkpoint: str | Path | None = None,
                progress: bool = False) -> tuple[nn.Module, TrainResult]:
    """Train ``arch`` from scratch (resuming from ``checkpoint`` when present); returns the
    final model on the CPU in eval mode and the training result."""
    torch.manual_seed(seed)
    model = space.build(arch, data.num_classes, data.input_shape[0])
    rec = Recipe(epochs=epochs, budget_s=budget_s, **(recipe or {}))
    model, res = train_model(model, data, rec, seed=seed, checkpoint=checkpoint,
                             progress=progress, desc="final training")
    return model.cpu().eval(), res


def trained_arch(arch: Arch, model: nn.Module) -> Arch:
    """``arch`` with ``meta["network"]``, the size ``model`` was built at, for a model that
    can say (``describe_network``: the DARTS networks, whose final size differs from the
    search size); any other model leaves ``arch`` as it is. Written beside the weights, it lets
    the space's ``build`` rebuild the network those weights fit."""
    describe = getattr(model, "describe_network", None)
    if describe is None:
        return arch
    return Arch(arch.space, arch.genes, meta={**arch.meta, "network": describe()})


def export_model(model: nn.Module, arch: Arch, input_shape: tuple[int, ...],
                 out_dir: str | Path) -> dict[str, Any]:
    """Write ``arch.json`` (with the network's size: :func:`trained_arch`), ``model.pt`` (state
    dict), ``model.ts`` and ``model.onnx`` (when the onnx extra is installed) to ``out_dir``;
    returns each export's largest difference from the eager model (or why the ONNX export was
    skipped)."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    trained_arch(arch, model).save(d / "arch.json")
    torch.save(model.state_dict(), d / "model.pt")
    exports: dict[str, Any] = {
        "torchscript_max_diff": export_torchscript(model, input_shape, d / "model.ts")}
    try:
        exports["onnx_max_diff"] = export_onnx(model, input_shape, d / "model.onnx")
    except UserError as e:  # onnx extra not installed
        exports["onnx"] = str(e)
    return exports


def measure(model: nn.Module, arch: Arch, cost_model: CostModel, targets: Targets, *,
            target: str = "cpu", threads: int = 1) -> Measurement:
    """The final model's latency measured on ``target``, with its counts, the table's
    prediction and (when a memory target is set) its peak activation memory."""
    us = measure_latency(model.cpu().eval(), cost_model.input_shape, target=target,
                         threads=threads, warmup=20, repeats=100)
    c = cost_model.costs(arch, memory=targets.needs_memory)
    return Measurement(c, c.latency_ms if cost_model.lut is not None else None,
                       float(us / 1000.0), device_fingerprint(target, threads))


def result_of(*, method: str, space: str, dataset: str, seed: int, arch: Arch,
              train: TrainResult, m: Measurement, search_seconds: float,
              search_epochs: int) -> dict[str, Any]:
    """The ``result.json`` fields (the schema of :mod:`nasforge.run.result`)."""
    pred = m.predicted_ms
    return {
        "method": method, "space": space, "dataset": dataset, "seed": int(seed),
        "arch": arch.to_dict(), "val_acc": float(train.val_acc),
        "test_acc": float(train.test_acc), "params": int(m.costs.params),
        "flops": int(m.costs.macs),
        "latency_ms": {"predicted": None if pred is None else float(pred),
                       "measured": float(m.latency_ms), "device": m.device},
        "search_seconds": float(search_seconds), "train_seconds": float(train.seconds),
        "epochs": {"search": int(search_epochs), "train": int(train.epochs)},
    }


def write_outputs(rd: RunDir, result: dict[str, Any], *, run_info: dict[str, Any],
                  ranking: Ranking, peak_memory_mb: float | None = None) -> None:
    """``result.json`` (validated against the schema), ``run.json`` (``run_info``: settings,
    candidates, exports, history…) and ``report.md``."""
    write_result(rd.file("result.json"), result)
    rd.write_json("run.json", run_info)
    write_report(rd, result, [c.row() for c in ranking.candidates], ranking.ranked,
                 peak_memory_mb)


def finish(s: SearchSettings, rd: RunDir, data: Dataset, f: Finish) -> dict[str, Any]:
    """Rank the candidates by short from-scratch training, train the best, export, measure,
    write the run's outputs, each stage within its part of ``f.budget``; returns the
    result.json fields."""
    budget = f.budget
    if budget is None:
        budget = Budget.for_settings(s, DIFFERENTIABLE, n_candidates=len(f.candidates))
        budget.record("search", f.search_seconds)
    recipe = s.extra.get("recipe", {})
    with budget.stage("rank"):
        r = rank(f.candidates, data, f.cost_model, f.targets, epochs=s.candidate_epochs,
                 seed=s.seed, recipe=recipe, run_dir=rd, progress=s.progress,
                 budget_s=budget.left())
    with budget.stage("train"):
        model, res = train_final(f.space, r.best, data, epochs=s.train_epochs,
                                 budget_s=budget.left(), seed=s.seed, recipe=recipe,
                                 checkpoint=rd.file("final.ckpt"), progress=s.progress)
    with budget.stage("export_measure"):
        exports = export_model(model, r.best, data.input_shape, rd.path)
        m = measure(model, r.best, f.cost_model, f.targets, target=s.target,
                    threads=s.threads)
        result = result_of(method=s.method, space=f.space.name, dataset=s.dataset,
                           seed=s.seed, arch=trained_arch(r.best, model), train=res, m=m,
                           search_seconds=f.search_seconds, search_epochs=f.search_epochs)
    if f.convergence is not None:
        result["convergence"] = f.convergence
    if f.world_size is not None:
        result["world_size"] = f.world_size
    result["budget"] = budget.to_dict()
    peak = None if m.costs.peak_memory is None else m.costs.peak_memory / MIB
    run_info = {"settings": s.to_dict(), "candidates": [c.row() for c in r.candidates],
                "ranking": r.ranked, "exports": exports, "train_history": res.history,
                "fingerprint": m.fingerprint, **f.extra}
    if peak is not None:
        run_info["peak_memory_mb"] = peak
    write_outputs(rd, result, run_info=run_info, ranking=r, peak_memory_mb=peak)
    return result


def write_report(rd: RunDir, result: dict[str, Any], rows: list[dict[str, Any]],
                 ranked: list[dict[str, Any]], peak_memory_mb: float | None = None) -> None:
    lat = result["latency_ms"]
    pred = "n/a" if lat["predicted"] is None else f"{lat['predicted']:.3f} ms"
    lines = [
        f"# nasforge {result['method']} on {result['dataset']}", "",
        f"- space: `{result['space']}`, seed {result['seed']}",
        f"- test accuracy: **{result['test_acc']:.4f}** (val {result['val_acc']:.4f})",
        f"- params: {result['params']:,}; MACs: {result['flops']:,}",
        f"- latency: measured {lat['measured']:.3f} ms, predicted {pred} on {lat['device']}",
    ]
    if peak_memory_mb is not None:
        lines.append(f"- peak activation memory (batch 1): {peak_memory_mb:.3f} MiB")
    lines += [
        f"- search {result['search_seconds']:.1f} s ({result['epochs']['search']} epochs); "
        f"final training {result['train_seconds']:.1f} s ({result['epochs']['train']} epochs)",
        "", "## Architecture", "", "```json", json.dumps(result["arch"]["genes"]), "```", "",
        "## Candidates", "",
        "| # | MACs | params | predicted ms | meets target | val acc (short) |",
        "|---|---|---|---|---|---|",
    ]
    accs = {json.dumps(r["arch"]): r["val_acc"] for r in ranked}
    for i, r in enumerate(rows):
        p = "n/a" if r["predicted_ms"] is None else f"{r['predicted_ms']:.3f}"
        if r.get("measured_ms") is not None:
            p = f"{r['measured_ms']:.3f} (measured)"
        acc = accs.get(json.dumps(r["arch"]))
        lines.append(f"| {i} | {r['macs']:,} | {r['params']:,} | {p} | {r['meets']} | "
                     f"{'-' if acc is None else f'{acc:.4f}'} |")
    rd.file("report.md").write_text("\n".join(lines) + "\n")
