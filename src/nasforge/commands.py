"""The non-search CLI commands (train, export, lut, report) as library functions.

Each takes one options dataclass (``TrainOptions``, …) whose fields carry their help in
:func:`~nasforge.methods.settings.opt` metadata: the CLI generates the flags from them
(``COMMANDS``), a library user builds the dataclass and calls the function.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.methods.settings import opt
from nasforge.spaces.base import SearchSpace


@dataclass
class TrainOptions:
    arch: str | None = opt(None, "ARCH.json (or a run directory holding arch.json)",
                           positional=True)
    model: str | None = opt(None, "a named model of the zoo instead of ARCH.json")
    dataset: str = opt("digits", "data set to train on")
    data_dir: str | None = opt(None, "folder with the data set files (or NASFORGE_DATA)")
    subset: int | None = opt(None, "use this many training images")
    device: str = opt("auto", "auto | cpu | cuda")
    seed: int = opt(0, "random seed")
    epochs: int = opt(30, "training epochs")
    budget: float | None = opt(None, "training seconds")
    recipe: str | None = opt(None, "recipe JSON/YAML file (Recipe fields)")
    cells: int | None = opt(None, "cell spaces (darts-*): cells of the trained network "
                            "(default: the arch's final network, DARTS's 20)")
    channels: int | None = opt(None, "cell spaces: initial channels (default: the final "
                               "network's, DARTS's 36)")
    search_size: bool = opt(False, "cell spaces: train the search-sized network (no "
                            "auxiliary head, no drop path) instead of the final one")
    out: str | None = opt(None, "output directory (default runs/train-<time>)")
    progress: bool = opt(True, "progress bars")


@dataclass
class ExportOptions:
    source: str = opt("", "a run directory (arch.json + model.pt) or ARCH.json",
                      positional=True, required=True)
    weights: str | None = opt(None, "model.pt state dict (default: beside arch)")
    dataset: str | None = opt(None, "data set that fixes the input shape/classes")
    input_shape: str | None = opt(None, "C,H,W (instead of --dataset)")
    num_classes: int | None = opt(None, "classes (with --input-shape)")
    onnx: bool = opt(False, "export ONNX only")
    torchscript: bool = opt(False, "export TorchScript only")
    out: str | None = opt(None, "output folder (default: the source folder)")


@dataclass
class LutOptions:
    action: str = opt("build", "build | validate", ("build", "validate"), positional=True,
                      required=True)
    space: str = opt("", "search space whose ops are measured", required=True)
    target: str = opt("cpu", "cpu | onnx | cuda")
    threads: int = opt(1, "CPU threads")
    in_channels: int | None = opt(None, "input channels (default: the space's)")
    num_classes: int | None = opt(None, "classes (default: the space's)")
    statistic: str = opt("min", "min (default: robust to foreign load) | p10 | median | mean")
    out: str | None = opt(None, "table path (default: the per-device cache)")
    samples: int = opt(30, "validate: random architectures")
    calibration: int = opt(20, "validate: random architectures the improved predictor is "
                           "fitted on")
    recalibrate: bool = opt(False, "validate: refit the improved predictor even if one is "
                            "stored")
    seed: int = opt(0, "random seed")
    json: bool = opt(False, "validate: last line is one JSON object")
    progress: bool = opt(True, "progress bars")


@dataclass
class ReportOptions:
    run_dir: str = opt("", "the run directory", positional=True, required=True)
    live: bool = opt(False, "report a run still going (what its files hold so far; no "
                            "result.json needed)")


@dataclass
class CompareOptions:
    run_dirs: list = opt([], "two or more run directories", positional=True, required=True)
    out: str = opt(".", "folder for compare.html and compare.png")


def _load_arch(source: str) -> tuple[Arch, SearchSpace, Path]:
    """An ARCH.json (or a run directory's arch.json), checked against its space: a bad file is
    one UserError naming it (:mod:`nasforge.files`)."""
    from nasforge.files import ARCH_FIX, parse_as
    from nasforge.spaces.registry import get_space

    p = Path(source)
    if p.is_dir():
        p = p / "arch.json"
    arch = Arch.load(p)
    space = parse_as(p, "arch file", ARCH_FIX, arch, lambda a: get_space(a.space))
    parse_as(p, "arch file", ARCH_FIX, arch, space.validate)
    return arch, space, p.parent


def _recipe(path: str | None, defaults: dict | None = None, **over: object):  # noqa: ANN202
    from nasforge.files import load_recipe
    from nasforge.train.trainer import Recipe

    d = {**(defaults or {}), **(load_recipe(path) if path else {})}
    d.update({k: v for k, v in over.items() if v is not None})
    return Recipe.from_dict(d)


def train(args: TrainOptions) -> None:
    from nasforge.cost.flops import count_module
    from nasforge.data import load_dataset
    from nasforge.device import resolve_device, seed_everything
    from nasforge.run.rundir import RunDir
    from nasforge.train.trainer import train_model

    cell_flags = args.cells is not None or args.channels is not None or args.search_size
    defaults: dict = {}
    if args.model is None and args.arch:  # a bad file fails before any data is loaded
        arch, space, _ = _load_arch(args.arch)
        cellular = hasattr(space, "network")  # a cell space: a search and a final network
        if cell_flags and not cellular:
            raise UserError(f"--cells/--channels/--search-size apply to cell-space archs "
                            f"(darts-*); {args.arch!r} is of space {space.name!r}")
        if cellular and not args.search_size:  # DARTS's auxiliary head and drop path
            defaults = space.final_recipe(arch)
    elif cell_flags:
        raise UserError("--cells/--channels/--search-size apply to a cell-space ARCH.json, "
                        "not to --model")
    recipe = _recipe(args.recipe, defaults, epochs=args.epochs, budget_s=args.budget)
    seed_everything(args.seed)
    dev = resolve_device(args.device)
    data = load_dataset(args.dataset, data_dir=args.data_dir, seed=args.seed,
                        subset=args.subset, device=dev)
    if args.model:
        from nasforge.models import create_model  # the model zoo

        model = create_model(args.model, num_classes=data.num_classes,
                             in_channels=data.input_shape[0])
        arch_desc: dict = {"model": args.model}
    elif args.arch:
        from nasforge.methods.finish import trained_arch

        model = (space.network(arch, data.num_classes, data.input_shape[0],
                               "search" if args.search_size else "final", cells=args.cells,
                               channels=args.channels) if cellular
                 else space.build(arch, data.num_classes, data.input_shape[0]))
        arch_desc = trained_arch(arch, model).to_dict()  # the size model.pt is of
    else:
        raise UserError("give ARCH.json or --model NAME")
    c = count_module(model, data.input_shape)
    print(f"params {c.params:,}  MACs {c.macs:,}")
    out = args.out or f"runs/train-{time.strftime('%Y%m%d-%H%M%S')}"
    rd = RunDir(out)
    rd.path.mkdir(parents=True, exist_ok=True)
    model, res = train_model(model, data, recipe, seed=args.seed,
                             checkpoint=rd.file("train.ckpt"), progress=args.progress)
    torch.save(model.cpu().state_dict(), rd.file("model.pt"))
    if "space" in arch_desc:
        Arch.from_dict(arch_desc).save(rd.file("arch.json"))
    summary = {"arch": arch_desc, "dataset": args.dataset, "val_acc": res.val_acc,
               "test_acc": res.test_acc, "params": c.params, "flops": c.macs,
               "epochs": res.epochs, "train_seconds": res.seconds}
    rd.write_json("train.json", summary)
    print(json.dumps(summary))


def export(args: ExportOptions) -> None:
    from nasforge.data import load_dataset
    from nasforge.export import export_onnx, export_torchscript, load_state

    arch, space, folder = _load_arch(args.source)
    if args.input_shape:
        try:
            shape = tuple(int(v) for v in args.input_shape.split(","))
        except ValueError:
            raise UserError(f"--input-shape must be C,H,W, got {args.input_shape!r}") from None
        if len(shape) != 3:
            raise UserError(f"--input-shape must be C,H,W, got {args.input_shape!r}")
        classes = args.num_classes or space.default_io[1]
    elif args.dataset:
        d = load_dataset(args.dataset)
        shape, classes = d.input_shape, d.num_classes
    else:
        from nasforge.files import read_json
        from nasforge.run.rundir import CONFIG_FIX

        cfg = folder / "config.json"
        ds = read_json(cfg, "run configuration", CONFIG_FIX).get("dataset") \
            if cfg.exists() else None
        if ds is not None and not isinstance(ds, str):
            raise UserError(f"cannot read run configuration {str(cfg)!r}: its 'dataset' is "
                            f"{ds!r}, not a name; {CONFIG_FIX}")
        if ds is None:
            raise UserError("give --dataset or --input-shape C,H,W to fix the input shape")
        d = load_dataset(ds)
        shape, classes = d.input_shape, d.num_classes
    model = space.build(arch, classes, shape[0])
    w = Path(args.weights) if args.weights else folder / "model.pt"
    if w.is_file():
        try:
            model.load_state_dict(load_state(w))
        except RuntimeError as e:
            first = str(e).strip().splitlines()[1:2] or [str(e)]
            raise UserError(f"weights {str(w)!r} do not fit the architecture in "
                            f"{args.source!r} ({first[0].strip()}); export the weights "
                            "trained for this arch") from None
    else:
        raise UserError(f"weights {str(w)!r} not found; train first or pass --weights")
    out = Path(args.out) if args.out else folder
    out.mkdir(parents=True, exist_ok=True)
    both = not (args.onnx or args.torchscript)
    if args.torchscript or both:
        diff = export_torchscript(model, shape, out / "model.ts")
        print(f"TorchScript: {out / 'model.ts'} (max diff {diff:.2e})")
    if args.onnx or both:
        diff = export_onnx(model, shape, out / "model.onnx")
        print(f"ONNX: {out / 'model.onnx'} (ONNX Runtime max diff {diff:.2e})")


def lut(args: LutOptions) -> None:
    from nasforge.cost.lut import load_or_build
    from nasforge.cost.measure import check_target
    from nasforge.spaces.registry import get_space

    check_target(args.target)
    space = get_space(args.space)
    in_ch = args.in_channels or space.default_io[0]
    classes = args.num_classes or space.default_io[1]
    items = space.lut_items(classes, in_ch)
    if args.action == "build":
        t = load_or_build(space.name, items, target=args.target, threads=args.threads,
                          statistic=args.statistic, path=args.out,
                          progress=args.progress)
        print(f"{len(t.entries)} entries, overhead {t.overhead_us:.1f} µs, target {t.target}")
        return
    from nasforge.cost.validate import validate_lut

    rep = validate_lut(space, items, in_ch, classes, target=args.target, threads=args.threads,
                       samples=args.samples, rng=np.random.default_rng(args.seed),
                       statistic=args.statistic, lut_path=args.out,
                       progress=args.progress, calibration=args.calibration,
                       recalibrate=args.recalibrate)
    if args.json:
        print(json.dumps(rep))


def report(args: ReportOptions) -> None:
    from nasforge.report.html import write_html_report

    path = write_html_report(args.run_dir, live=args.live)
    print(f"report: {path}")


def compare(args: CompareOptions) -> None:
    from nasforge.report.compare import compare as write_compare

    print(f"compare: {write_compare(args.run_dirs, args.out)}")


#: command -> (options dataclass, help); the CLI's subcommands besides ``search``
COMMANDS: dict[str, tuple[type, str]] = {
    "train": (TrainOptions, "train an architecture (or a named model) from scratch"),
    "export": (ExportOptions, "export a trained model to TorchScript / ONNX"),
    "lut": (LutOptions, "build or validate a latency lookup table"),
    "report": (ReportOptions, "plots + report.html of a run directory"),
    "compare": (CompareOptions, "several runs side by side: one table, one Pareto plot"),
}
