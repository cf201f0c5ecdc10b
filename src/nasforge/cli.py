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
    if o.positional and o.type is list:  # `compare RUN_DIR...`
        p.add_argument(o.name, nargs="+", help=o.help.replace("%", "%%"))
        return
    if o.positional:
        p.add_argument(o.name, type=kind, choices=o.choices,
                       nargs=None if o.required else "?", help=o.help.replace("%", "%%"))
        return
    p.add_argument(o.flag, dest=o.name, type=kind, choices=o.choices,
                   metavar="JSON" if o.type is dict else None, required=o.required,
                   help=(o.help + ("" if o.required else shown)).replace("%", "%%"))


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


def _add_commands(sub: argparse._SubParsersAction) -> None:
    """``train``, ``export``, ``lut``, ``report``: flags generated from their options."""
    from nasforge import commands
    from nasforge.methods.settings import options

    for name, (cls, what) in commands.COMMANDS.items():
        p = sub.add_parser(name, help=what, description=what,
                           argument_default=argparse.SUPPRESS)
        for o in options(cls):
            if o.cli:
                _add_option(p, o)


def _torchrun_follower(method: str) -> bool:
    """Under torchrun: True on ranks > 0 of a supernet search; any other method is an error."""
    from nasforge import distributed

    if not distributed.under_torchrun():
        return False
    from nasforge.methods.registry import METHODS
    from nasforge.methods.settings import SupernetSettings

    if not issubclass(METHODS.get(method).settings_cls, SupernetSettings):
        raise UserError(f"{method} does not run data-parallel on torch.distributed (only the "
                        "supernet searches fbnet, fbnetv2, densenas, darts do); run it "
                        "without torchrun")
    return distributed.env_context().rank > 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nasforge", description="hardware-aware NAS")
    sub = ap.add_subparsers(dest="command", required=True)
    _add_search(sub)
    _add_commands(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        if args.command == "search" and _torchrun_follower(args.method):
            from nasforge.methods.differentiable import follow

            return follow()  # a torchrun rank > 0: rank 0 runs the command, this one trains
        if args.command == "search":
            from nasforge.methods.api import search

            res = search(args.method, resume=getattr(args, "resume", None),
                         **settings_from_args(args))
            print(json.dumps({k: res[k] for k in ("test_acc", "params", "flops", "latency_ms")}))
        else:
            from nasforge import commands

            cls, _ = commands.COMMANDS[args.command]
            given = {k: v for k, v in vars(args).items() if k != "command"}
            getattr(commands, args.command)(cls(**given))
    except UserError as e:
        print(f"nasforge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasforge: interrupted; resume with --resume RUN_DIR", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
