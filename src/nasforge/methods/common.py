"""Stages every search pipeline shares: settings, run-dir set-up, and the *finish* stage
(rank candidates from scratch → train the best → export → measure → result.json/report)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nasforge.arch import Arch
from nasforge.cost.flops import count_module
from nasforge.cost.measure import check_target, measure_latency
from nasforge.data import Dataset, load_dataset
from nasforge.device import resolve_device, seed_everything
from nasforge.errors import UserError
from nasforge.export import export_onnx, export_torchscript
from nasforge.run.result import write_result
from nasforge.run.rundir import RunDir
from nasforge.spaces.base import SearchSpace
from nasforge.train.trainer import Recipe, train_model


@dataclass
class SearchSettings:
    """Fields common to every search command (each method's settings extend this)."""

    method: str = ""
    out: str = "runs/latest"
    dataset: str = "digits"
    data_dir: str | None = None
    subset: int | None = None
    target: str = "cpu"
    device: str = "auto"
    seed: int = 0
    budget: float | None = None  # search seconds
    epochs: int | None = None  # search epochs (None: the method's default)
    batch_size: int | None = None
    threads: int = 1  # latency measurement threads
    latency_ms: float | None = None
    flops: float | None = None  # MACs
    params: float | None = None
    samples: int = 6  # K architectures drawn from P_θ besides the argmax
    candidate_epochs: int = 2
    train_epochs: int = 15
    train_budget: float | None = None
    lut: str | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UserError(f"unknown setting(s) {sorted(unknown)} for {cls.__name__}")
        return cls(**d)

    def validate(self) -> None:
        check_target(self.target)
        for name in ("budget", "latency_ms", "flops", "params", "train_budget"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {v}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise UserError(f"--{name.replace('_', '-')} must be ≥ 1, got {v}")
        if self.samples < 0 or self.candidate_epochs < 0 or self.train_epochs < 1:
            raise UserError("--samples and --candidate-epochs must be ≥ 0, --train-epochs ≥ 1")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--dataset", default="digits", help="fashion-mnist | digits | cifar10 | synthetic | "
      "imagefolder:PATH (default: digits, embedded in scikit-learn)")
    a("--data-dir", default=None, help="folder with the data set files (or NASFORGE_DATA)")
    a("--subset", type=int, default=None, help="use this many training images (quick runs)")
    a("--target", default="cpu", help="latency target: cpu | onnx | cuda")
    a("--device", default="auto", help="compute device for search/training: auto | cpu | cuda")
    a("--seed", type=int, default=0)
    a("--budget", type=float, default=None, help="search time budget in seconds")
    a("--epochs", type=int, default=None, help="search epochs (overrides the method default)")
    a("--batch-size", type=int, default=None)
    a("--threads", type=int, default=1, help="CPU threads for latency measurement")
    a("--latency-ms", type=float, default=None, help="latency target for the derived model")
    a("--flops", type=float, default=None, help="MACs target for the derived model")
    a("--params", type=float, default=None, help="parameter-count target")
    a("--samples", type=int, default=6, help="architectures sampled from P_θ besides argmax")
    a("--candidate-epochs", type=int, default=2, help="epochs to rank each candidate")
    a("--train-epochs", type=int, default=15, help="epochs to train the best from scratch")
    a("--train-budget", type=float, default=None, help="seconds for the final training")
    a("--lut", default=None, help="latency table JSON to use / create")
    a("--out", default=None, help="run directory (default: runs/<method>-<time>)")
    a("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run")
    a("--no-progress", action="store_true", help="no progress bars")


def settings_from_args(cls: type[SearchSettings], method: str,
                       args: argparse.Namespace) -> tuple[SearchSettings, RunDir]:
    """Fresh run: settings from the flags; ``--resume``: the saved settings of that run."""
    if args.resume:
        rd, cfg = RunDir.open(args.resume)
        s = cls.from_dict(cfg)
        s.progress = not args.no_progress
        return s, rd
    names = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in vars(args).items() if k in names and v is not None}
    kw["method"] = method
    kw["progress"] = not args.no_progress
    if not kw.get("out"):
        kw["out"] = f"runs/{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    s = cls(**kw)
    s.validate()
    return s, RunDir.create(s.out, s.to_dict())


SIZE_SUFFIX = {28: "fmnist", 32: "cifar", 224: "imagenet"}


def space_name_for(name: str, input_shape: tuple[int, ...], family: str,
                   known: list[str], expected_size: dict[str, int]) -> str:
    """Resolve ``auto`` to ``<family>-fmnist|cifar|imagenet`` by the input size, and check that
    the space's input size is the data's (every shipped family has those three variants)."""
    h, w = input_shape[1], input_shape[2]
    if name == "auto":
        suffix = SIZE_SUFFIX.get(h) if h == w else None
        name = f"{family}-{suffix}" if suffix else ""
        if name not in known:
            raise UserError(f"no {family} space for {h}×{w} inputs; pass --space "
                            f"({', '.join(known)})")
    if name not in known:
        raise UserError(f"unknown {family} space {name!r}; choose from {', '.join(known)}")
    if expected_size[name] != h or h != w:
        raise UserError(f"space {name!r} expects {expected_size[name]}² inputs, the data set "
                        f"has {h}×{w}")
    return name


def setup(s: SearchSettings) -> tuple[torch.device, Dataset]:
    seed_everything(s.seed)
    dev = resolve_device(s.device)
    data = load_dataset(s.dataset, data_dir=s.data_dir, seed=s.seed, subset=s.subset, device=dev)
    return dev, data


@dataclass
class Finish:
    """What a pipeline hands to :func:`finish`."""

    space: SearchSpace
    candidates: list[Arch]
    predict_latency_ms: Callable[[Arch], float] | None  # the LUT prediction, if any
    search_seconds: float
    search_epochs: int
    extra: dict[str, Any] = field(default_factory=dict)


def counts_of(space: SearchSpace, arch: Arch, data: Dataset) -> tuple[int, int]:
    m = space.build(arch, data.num_classes, data.input_shape[0])
    c = count_module(m, data.input_shape)
    return c.macs, c.params


def meets(s: SearchSettings, macs: int, params: int, lat_ms: float | None) -> bool:
    if s.flops is not None and macs > s.flops:
        return False
    if s.params is not None and params > s.params:
        return False
    if s.latency_ms is not None and lat_ms is not None and lat_ms > s.latency_ms:
        return False
    return True


def finish(s: SearchSettings, rd: RunDir, data: Dataset, f: Finish) -> dict[str, Any]:
    """Rank the candidates by short from-scratch training, train the best, export, measure."""
    seen: set[str] = set()
    cands: list[Arch] = []
    for a in f.candidates:
        if a.key() not in seen:
            seen.add(a.key())
            cands.append(a)
    rows = []
    for a in cands:
        macs, params = counts_of(f.space, a, data)
        pred = f.predict_latency_ms(a) if f.predict_latency_ms else None
        rows.append({"arch": a.genes, "macs": macs, "params": params, "predicted_ms": pred,
                     "meets": meets(s, macs, params, pred)})
    ok = [i for i, r in enumerate(rows) if r["meets"]]
    if not ok:
        desc = "; ".join(f"{r['macs']} MACs, {r['params']} params, {r['predicted_ms']} ms"
                         for r in rows)
        raise UserError(f"no derived candidate meets the target (flops={s.flops}, "
                        f"params={s.params}, latency_ms={s.latency_ms}); candidates: {desc}. "
                        "Relax the target or search longer.")
    # -- rank (resumable: each finished candidate is recorded) -------------------------------
    ranked = rd.read_json("candidates.json", default=[])
    done = {json.dumps(r["arch"]) for r in ranked}
    recipe = Recipe(epochs=max(1, s.candidate_epochs), **s.extra.get("recipe", {}))
    if len(ok) > 1 and s.candidate_epochs > 0:
        for i in ok:
            if json.dumps(rows[i]["arch"]) in done:
                continue
            a = cands[i]
            torch.manual_seed(s.seed)
            model = f.space.build(a, data.num_classes, data.input_shape[0])
            _, res = train_model(model, data, recipe, seed=s.seed, progress=s.progress,
                                 desc=f"candidate {len(ranked) + 1}/{len(ok)}")
            ranked.append({**rows[i], "val_acc": res.val_acc, "seconds": res.seconds})
            rd.write_json("candidates.json", ranked)
        best_genes = max(ranked, key=lambda r: r["val_acc"])["arch"]
        best = next(a for a in cands if a == Arch(a.space, best_genes))
    else:
        best = cands[ok[0]]
    # -- final training from scratch ------------------------------------------------------------
    torch.manual_seed(s.seed)
    model = f.space.build(best, data.num_classes, data.input_shape[0])
    final_recipe = Recipe(epochs=s.train_epochs, budget_s=s.train_budget,
                          **s.extra.get("recipe", {}))
    model, res = train_model(model, data, final_recipe, seed=s.seed,
                             checkpoint=rd.file("final.ckpt"), progress=s.progress,
                             desc="final training")
    best.save(rd.file("arch.json"))
    model = model.cpu().eval()
    torch.save(model.state_dict(), rd.file("model.pt"))
    exports = {"torchscript_max_diff": export_torchscript(model, data.input_shape,
                                                          rd.file("model.ts"))}
    try:
        exports["onnx_max_diff"] = export_onnx(model, data.input_shape, rd.file("model.onnx"))
    except UserError as e:  # onnx extra not installed
        exports["onnx"] = str(e)
    measured_us = measure_latency(model, data.input_shape, target=s.target, threads=s.threads,
                                  warmup=20, repeats=100)
    macs, params = counts_of(f.space, best, data)
    pred = f.predict_latency_ms(best) if f.predict_latency_ms else None
    from nasforge.cost.measure import device_fingerprint

    fp = device_fingerprint(s.target, s.threads)
    result = {
        "method": s.method, "space": f.space.name, "dataset": s.dataset, "seed": s.seed,
        "arch": best.to_dict(), "val_acc": float(res.val_acc), "test_acc": float(res.test_acc),
        "params": int(params), "flops": int(macs),
        "latency_ms": {"predicted": None if pred is None else float(pred),
                       "measured": float(measured_us / 1000.0),
                       "device": f"{fp['target']}: {fp.get('gpu', fp['cpu'])} "
                                 f"({fp['threads']} threads)"},
        "search_seconds": float(f.search_seconds), "train_seconds": float(res.seconds),
        "epochs": {"search": int(f.search_epochs), "train": int(res.epochs)},
    }
    write_result(rd.file("result.json"), result)
    rd.write_json("run.json", {"settings": s.to_dict(), "candidates": rows, "ranking": ranked,
                               "exports": exports, "train_history": res.history,
                               "fingerprint": fp, **f.extra})
    write_report(rd, result, rows, ranked)
    return result


def write_report(rd: RunDir, result: dict[str, Any], rows: list[dict[str, Any]],
                 ranked: list[dict[str, Any]]) -> None:
    lat = result["latency_ms"]
    pred = "n/a" if lat["predicted"] is None else f"{lat['predicted']:.3f} ms"
    lines = [
        f"# nasforge {result['method']} on {result['dataset']}", "",
        f"- space: `{result['space']}`, seed {result['seed']}",
        f"- test accuracy: **{result['test_acc']:.4f}** (val {result['val_acc']:.4f})",
        f"- params: {result['params']:,}; MACs: {result['flops']:,}",
        f"- latency: measured {lat['measured']:.3f} ms, predicted {pred} on {lat['device']}",
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
        acc = accs.get(json.dumps(r["arch"]))
        lines.append(f"| {i} | {r['macs']:,} | {r['params']:,} | {p} | {r['meets']} | "
                     f"{'-' if acc is None else f'{acc:.4f}'} |")
    rd.file("report.md").write_text("\n".join(lines) + "\n")


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """A derived, independent numpy generator (never a shared global one)."""
    return np.random.default_rng([seed, stream])
