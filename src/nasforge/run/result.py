"""``RUN_DIR/result.json``: the contract every search writes (field names are read by tests and
benchmarks). Extras go to ``run.json`` and ``report.md``, never into this file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nasforge.errors import UserError

RESULT_FIELDS: dict[str, Any] = {
    "method": str, "space": str, "dataset": str, "seed": int, "arch": dict, "val_acc": float,
    "test_acc": float, "params": int, "flops": int, "latency_ms": dict,
    "search_seconds": float, "train_seconds": float, "epochs": dict,
}
LATENCY_FIELDS = {"predicted": (float, type(None)), "measured": (float, type(None)),
                  "device": str}
EPOCH_FIELDS = {"search": int, "train": int}
#: fields a result may carry (name -> check raising ValueError); absent is fine
OPTIONAL_FIELDS: dict[str, Any] = {}


def _check_convergence(v: Any) -> None:
    """``convergence`` (differentiable methods): how decided the searched distribution ended."""
    keys = {"max_prob", "entropy", "tau_final", "tau_end_planned", "epochs"}
    if not isinstance(v, dict) or set(v) != keys:
        raise ValueError(f"convergence must be an object with {sorted(keys)}, got {v!r}")
    num = (int, float)
    if not (isinstance(v["max_prob"], num) and isinstance(v["entropy"], num)
            and all(v[k] is None or isinstance(v[k], num) for k in ("tau_final",
                                                                   "tau_end_planned"))
            and isinstance(v["epochs"], int)):
        raise ValueError(f"convergence has bad types: {v!r}")


OPTIONAL_FIELDS["convergence"] = _check_convergence


def _check_budget(v: Any) -> None:
    """``budget`` (:mod:`nasforge.methods.budget`): ``spent`` seconds per stage, and with a
    ``--budget`` its ``total``, the ``planned`` split and what each stage was ``allowed``."""
    keys = {"total", "planned", "allowed", "spent"}
    if not isinstance(v, dict) or set(v) not in (keys, {"spent"}):
        raise ValueError(f"budget must be an object with {sorted(keys)} (or only 'spent'), "
                         f"got {v!r}")
    stages = {"search", "rank", "train", "export_measure"}
    for k in keys & set(v):
        if k == "total":
            ok = isinstance(v[k], (int, float)) and not isinstance(v[k], bool) and v[k] > 0
        else:
            ok = isinstance(v[k], dict) and set(v[k]) <= stages and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0
                for x in v[k].values())
        if not ok:
            want = ("positive seconds" if k == "total"
                    else f"seconds ≥ 0 per stage of {sorted(stages)}")
            raise ValueError(f"budget.{k} must be {want}, got {v[k]!r}")


OPTIONAL_FIELDS["budget"] = _check_budget


def _check_collapse(v: Any) -> None:
    """``collapse`` (DARTS): skip connections in the derived normal cell, and the warning
    when they dominate it (None when they do not)."""
    if not (isinstance(v, dict) and set(v) == {"skip_edges", "edges", "warning"}
            and all(isinstance(v[k], int) and not isinstance(v[k], bool) and v[k] >= 0
                    for k in ("skip_edges", "edges"))
            and (v["warning"] is None or isinstance(v["warning"], str))):
        raise ValueError(f"collapse must be {{skip_edges: int, edges: int, warning: str | "
                         f"None}}, got {v!r}")


OPTIONAL_FIELDS["collapse"] = _check_collapse


def _check_world_size(v: Any) -> None:
    """``world_size`` (supernet searches): the processes the search loop ran on."""
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        raise ValueError(f"world_size must be an integer ≥ 1, got {v!r}")


OPTIONAL_FIELDS["world_size"] = _check_world_size


def validate_result(d: dict[str, Any]) -> None:
    """Raise ValueError when ``d`` is not exactly the DESIGN.md schema."""
    extra = set(d) - set(RESULT_FIELDS) - set(OPTIONAL_FIELDS)
    if not set(RESULT_FIELDS) <= set(d) or extra:
        raise ValueError(f"result.json fields differ: missing {sorted(set(RESULT_FIELDS) - set(d))}"
                         f", extra {sorted(extra)}")
    for k, check in OPTIONAL_FIELDS.items():
        if k in d:
            check(d[k])
    for k, t in RESULT_FIELDS.items():
        ok = isinstance(d[k], t) and not (t is int and isinstance(d[k], bool))
        if t is float:
            ok = isinstance(d[k], (int, float)) and not isinstance(d[k], bool)
        if not ok:
            raise ValueError(f"result.json field {k!r} should be {t.__name__}, got {d[k]!r}")
    if set(d["latency_ms"]) != set(LATENCY_FIELDS):
        raise ValueError(f"latency_ms fields must be {sorted(LATENCY_FIELDS)}")
    for k, t in LATENCY_FIELDS.items():
        v = d["latency_ms"][k]
        if not (isinstance(v, t) or (t is not str and isinstance(v, int))):
            raise ValueError(f"latency_ms.{k} has bad type: {v!r}")
    if set(d["epochs"]) != set(EPOCH_FIELDS) or not all(
            isinstance(v, int) for v in d["epochs"].values()):
        raise ValueError("epochs must be {'search': int, 'train': int}")


def write_result(path: str | Path, d: dict[str, Any]) -> None:
    validate_result(d)
    Path(path).write_text(json.dumps(d, indent=2) + "\n")


def read_result(path: str | Path) -> dict[str, Any]:
    """A run's result.json, read through :mod:`nasforge.files` (a damaged one is one error)."""
    from nasforge.files import parse_as, read_json

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{str(p)!r} has no result.json (was the run finished?)")
    fix = "it is written when a search finishes: resume the run (--resume) to rewrite it"
    d = read_json(p, "run result", fix)
    parse_as(p, "run result", fix, d, validate_result)
    return d
