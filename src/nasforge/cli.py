"""The ``nasforge`` command. It only parses flags into settings and calls the library; bad
input (a :class:`~nasforge.errors.UserError`) prints one line and exits with status 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from nasforge.errors import UserError


def _json_object(text: str) -> dict:
    try:
        v = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e.msg}): {text!r}") from None
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError(f"a JSON object is expected, got {text!r}")
    return v


def _add_option(p: argparse.ArgumentParser, o: Any) -> None:
    """One flag from one settings field (:class:`nasforge.methods.settings.Option`)."""
    shown = "" if "default" in o.help else f" (default: {o.default})"
    if o.type is bool:
        if o.default:  # on by default: the flag turns it off
            p.add_argument("--no-" + o.flag[2:], dest=o.name, action="store_false",
                           help=f"turn off {o.help}".replace("%", "%%"))
        else:
            p.add_argument(o.flag, dest=o.name, action="store_true",
                           help=o.help.replace("%", "%%"))
        return
    kind = _json_object if o.type is dict else None if o.type is str else o.type
    p.add_argument(o.flag, dest=o.name, type=kind, choices=o.choices,
                   metavar="JSON" if o.type is dict else None,
                   help=(o.help + shown).replace("%", "%%"))


def _add_search(sub: argparse._SubParsersAction) -> None:
    from nasforge.methods.registry import METHODS
    from nasforge.methods.settings import options

    ps = sub.add_parser("search", help="search an architecture, train, export and measure it")
    msub = ps.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name, spec in METHODS.items():
        # only the flags given reach nasforge.search: the defaults live in the settings class
        mp = msub.add_parser(name, help=spec.summary, description=spec.summary,
                             argument_default=argparse.SUPPRESS)
        for o in options(spec.settings_cls):
            if o.cli:
                _add_option(mp, o)
        mp.add_argument("--resume", metavar="RUN_DIR",
                        help="continue an interrupted run with the settings it was started with")


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings a ``search`` command line gives (``--resume`` and the command aside)."""
    return {k: v for k, v in vars(args).items() if k not in ("command", "method", "resume")}


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an architecture (or a named model) from scratch")
    p.add_argument("arch", nargs="?", help="ARCH.json (or a run directory holding arch.json)")
    p.add_argument("--model", default=None, help="a named model of the zoo instead of ARCH.json")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--subset", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--budget", type=float, default=None, help="training seconds")
    p.add_argument("--recipe", default=None, help="recipe JSON/YAML file (Recipe fields)")
    p.add_argument("--out", default=None, help="output directory (default runs/train-<time>)")
    p.add_argument("--no-progress", action="store_true")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained model to TorchScript / ONNX")
    p.add_argument("source", help="a run directory (arch.json + model.pt) or ARCH.json")
    p.add_argument("--weights", default=None, help="model.pt state dict (default: beside arch)")
    p.add_argument("--dataset", default=None, help="data set that fixes the input shape/classes")
    p.add_argument("--input-shape", default=None, help="C,H,W (instead of --dataset)")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--onnx", action="store_true")
    p.add_argument("--torchscript", action="store_true")
    p.add_argument("--out", default=None, help="output folder (default: the source folder)")


def _add_lut(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lut", help="build or validate a latency lookup table")
    p.add_argument("action", choices=["build", "validate"])
    p.add_argument("--space", required=True)
    p.add_argument("--target", default="cpu", help="cpu | onnx | cuda")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--in-channels", type=int, default=None)
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--statistic", default="min",
                   help="min (default: robust to foreign load) | p10 | median | mean")
    p.add_argument("--out", default=None, help="table path (default: the per-device cache)")
    p.add_argument("--samples", type=int, default=30, help="validate: random architectures")
    p.add_argument("--calibration", type=int, default=20,
                   help="validate: random architectures the improved predictor is fitted on")
    p.add_argument("--recalibrate", action="store_true",
                   help="validate: refit the improved predictor even if one is stored")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="validate: last line is one JSON object")
    p.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nasforge", description="hardware-aware NAS")
    sub = ap.add_subparsers(dest="command", required=True)
    _add_search(sub)
    _add_train(sub)
    _add_export(sub)
    _add_lut(sub)
    pr = sub.add_parser("report", help="plots + report.html of a run directory")
    pr.add_argument("run_dir")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        if args.command == "search":
            from nasforge.methods.api import search

            res = search(args.method, resume=getattr(args, "resume", None),
                         **settings_from_args(args))
            print(json.dumps({k: res[k] for k in ("test_acc", "params", "flops", "latency_ms")}))
        else:
            from nasforge import commands

            getattr(commands, args.command)(args)
    except UserError as e:
        print(f"nasforge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasforge: interrupted; resume with --resume RUN_DIR", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
