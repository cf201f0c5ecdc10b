"""Scalars a run logs while it goes, so a report can be made before it ends (``nasforge report
--live``): one JSON object per line in ``RUN_DIR/scalars.jsonl`` — ``{"kind", "step", "time",
...values}`` — appended by every search loop (the supernet trainer per epoch, the sample-based
engine per finished trial, ENAS per epoch, JointNAS per verified candidate). When TensorBoard is
installed the numeric values also go to ``RUN_DIR/tensorboard/`` (``kind/name`` tags); when it
is not, nothing is said or needed (``NASFORGE_TENSORBOARD=0`` turns it off).

Each record is one ``write`` of a whole line followed by a flush, so a reader sees whole lines
except perhaps a last one being written, which :func:`read_scalars` skips. A resumed run appends:
the reader keeps the last record of each ``(kind, step)``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nasforge.files import read_text

FILE = "scalars.jsonl"
TB_DIR = "tensorboard"

_tb_writers: dict[Path, Any] = {}


def _clean(v: Any) -> Any:
    """JSON data for a value: numbers (NaN/inf as None), strings, bools, lists and mappings of
    them; anything else (a tensor, an Arch) as its float or its string."""
    if v is None or isinstance(v, (bool, str, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    try:
        return _clean(float(v))
    except (TypeError, ValueError):
        return str(v)


def run_dir_of(where: str | Path) -> Path:
    """The run directory of ``where``: a directory (existing, or a path without a file suffix)
    itself, or the folder of a file in it (``supernet.ckpt``, ``trials.sqlite``)."""
    p = Path(where)
    return p if p.is_dir() or not p.suffix else p.parent


def _tensorboard(rd: Path) -> Any:
    """The run's TensorBoard writer, or None when TensorBoard is not installed / turned off."""
    if rd in _tb_writers:
        return _tb_writers[rd]
    writer = None
    if os.environ.get("NASFORGE_TENSORBOARD", "1") != "0" \
            and importlib.util.find_spec("tensorboard") is not None:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(rd / TB_DIR))
        except Exception:  # noqa: BLE001 - optional: a broken install must not stop a search
            writer = None
    _tb_writers[rd] = writer
    return writer


def log_scalars(where: str | Path | None, kind: str, step: int,
                values: Mapping[str, Any]) -> None:
    """Append one record to the run's ``scalars.jsonl`` (and its numeric values to TensorBoard
    when installed). ``where``: the run directory or a file in it; None logs nothing (a loop
    run outside a run directory, e.g. in a test)."""
    if where is None:
        return
    rd = run_dir_of(where)
    rec = {"kind": kind, "step": int(step), "time": time.time(),
           **{str(k): _clean(v) for k, v in values.items() if k not in ("kind", "step", "time")}}
    line = json.dumps(rec, separators=(",", ":")) + "\n"
    rd.mkdir(parents=True, exist_ok=True)
    with open(rd / FILE, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
    tb = _tensorboard(rd)
    if tb is not None:
        for k, v in rec.items():
            if k not in ("step", "time") and isinstance(v, (int, float)) \
                    and not isinstance(v, bool):
                tb.add_scalar(f"{kind}/{k}", v, int(step))
        tb.flush()


def close(where: str | Path) -> None:
    """Close the run's TensorBoard writer (the JSON lines need no closing)."""
    w = _tb_writers.pop(run_dir_of(where), None)
    if w is not None:
        w.close()


def read_scalars(run_dir: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of ``RUN_DIR/scalars.jsonl`` in order (only ``kind``'s when given), the last
    of each ``(kind, step)`` (a resumed run logs again what it redid); a line cut by a write in
    progress is skipped."""
    p = Path(run_dir) / FILE
    if not p.exists():
        return []
    last: dict[tuple[str, int], dict[str, Any]] = {}
    for line in read_text(p, "scalar log", "delete it; the run appends a new one").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict) or (kind is not None and rec.get("kind") != kind):
            continue
        key = (str(rec.get("kind")), int(rec["step"]) if isinstance(rec.get("step"), int)
               else len(last))
        last.pop(key, None)  # re-inserted: order follows the latest write
        last[key] = rec
    return list(last.values())
