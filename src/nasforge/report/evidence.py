"""What a run directory holds, gathered once for the report: result.json, config.json,
run.json, search.json, budget, the trial store (sample-based methods), the scalars a run logs as
it goes (``scalars.jsonl``, :mod:`nasforge.run.scalars`) and a LUT validation of the table the
run used (``nasforge lut validate``). Every file is read through :class:`RunDir` /
:mod:`nasforge.files` so a damaged one is one error naming it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.errors import UserError
from nasforge.files import read_json
from nasforge.run.result import read_result
from nasforge.run.rundir import RunDir
from nasforge.run.scalars import read_scalars

#: scalar kinds whose records are a differentiable search's per-epoch history
EPOCH_KINDS = ("supernet", "enas")


@dataclass
class Evidence:
    path: Path
    result: dict[str, Any]
    config: dict[str, Any]
    run: dict[str, Any]
    search: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    scalars: list[dict[str, Any]] = field(default_factory=list)
    #: ``nasforge lut validate``'s report for the table this run used (None: none found)
    validation: dict[str, Any] | None = None

    @property
    def method(self) -> str:
        return str(self.result.get("method") or self.config.get("method", "?"))

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per-epoch records of a differentiable search (empty for sample-based runs): from
        search.json once the search stage ended, else (a live run) the epochs logged so far."""
        h = self.search.get("history", [])
        if isinstance(h, list) and h:
            return h
        return [r for r in self.scalars if r.get("kind") in EPOCH_KINDS]

    @property
    def space(self) -> str:
        return str(self.result.get("space") or self.config.get("space", ""))

    @property
    def targets(self) -> dict[str, float]:
        """The run's cost targets (only those set), keyed by cost name."""
        t = self.search.get("targets") or {k: self.config.get(k) for k in
                                           ("latency_ms", "flops", "params", "peak_memory_mb")}
        return {k: float(v) for k, v in t.items() if v is not None}


def load(run_dir: str | Path, *, live: bool = False) -> Evidence:
    """The evidence of ``run_dir``; ``live``: a run still going (no result.json yet is fine)."""
    rd = RunDir(run_dir)
    if not rd.path.is_dir():
        raise UserError(f"run directory {str(rd.path)!r} does not exist; give the --out folder "
                        "of a `nasforge search`")
    if live and not rd.file("result.json").exists():
        result: dict[str, Any] = {}
    else:
        result = read_result(rd.file("result.json"))
    return Evidence(rd.path, result, rd.read_json("config.json", default={}),
                    rd.read_json("run.json", default={}), rd.read_json("search.json", default={}),
                    _trials(rd), read_scalars(rd.path), lut_validation(rd.path))


def _trials(rd: RunDir) -> list[dict[str, Any]]:
    """Every trial of a sample-based run, from the SQLite store, oldest first."""
    db = rd.file("trials.sqlite")
    if not db.exists():
        return []
    from nasforge.run.store import TrialStore

    store = TrialStore(db)
    try:
        return [{"id": t.id, "status": t.status, "metrics": t.metrics or {},
                 "started_at": t.started_at, "finished_at": t.finished_at,
                 "worker": t.worker, "genes": t.arch.genes} for t in store.trials()]
    finally:
        store.close()


def lut_validation(run_dir: str | Path) -> dict[str, Any] | None:
    """The LUT validation of the table this run used: a ``*.validate.json`` in the run
    directory (``nasforge lut validate --out RUN_DIR/lut.json`` writes ``lut.validate.json``),
    else the one next to the run's ``--lut`` file or the per-device cached table of the run's
    ``lut.json`` (same space and device fingerprint). None when the run used no table or the
    table was never validated."""
    rd = Path(run_dir)
    found = sorted(rd.glob("*.validate.json"))
    table = None
    if (rd / "lut.json").is_file():
        from nasforge.cost.lut import LatencyTable, cache_path

        table = LatencyTable.load(rd / "lut.json")
        cfg = RunDir(rd).read_json("config.json", default={})
        if cfg.get("lut"):
            found.append(_validation_of(Path(cfg["lut"])))
        found.append(_validation_of(cache_path(table.space, table.fingerprint, table.statistic)))
    for p in found:
        if not p.is_file():
            continue
        data = read_json(p, "LUT validation", "run `nasforge lut validate` again")
        if not isinstance(data, dict) or not isinstance(data.get("archs"), list):
            continue
        if table is not None and (data.get("space") != table.space
                                  or data.get("fingerprint") != table.fingerprint):
            continue  # another table's validation
        return {**data, "file": str(p)}
    return None


def _validation_of(table_file: Path) -> Path:
    """Where ``nasforge lut validate`` writes the validation of ``table_file``."""
    return table_file.with_name(table_file.stem + ".validate.json")


def lut_points(v: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """(measured ms, predicted ms) of each validated architecture, per predictor."""
    out: dict[str, list[tuple[float, float]]] = {}
    for a in v.get("archs", []):
        m = a.get("measured_us")
        for k, p in a.items():
            if k.endswith("_us") and k != "measured_us" and m and p is not None:
                out.setdefault(k[:-3], []).append((float(m) / 1000, float(p) / 1000))
    return out


def tradeoff_points(ev: Evidence) -> list[dict[str, Any]]:
    """Every evaluated or sampled architecture with what is known of it: ``val_acc`` (None when
    it was never trained), ``macs``, ``params``, ``latency_ms``, and where it came from."""
    pts: list[dict[str, Any]] = []
    for t in ev.trials:
        m = t["metrics"]
        if t["status"] != "done":
            continue
        pts.append({"source": "trial", "arch": t["genes"], "val_acc": m.get("val_acc"),
                    "macs": m.get("flops"), "params": m.get("params"),
                    "latency_ms": m.get("latency_ms")})
    ranked = {json.dumps(r["arch"]): r for r in ev.run.get("ranking", [])}
    for c in ev.run.get("candidates", []):
        r = ranked.get(json.dumps(c["arch"]), {})
        pts.append({"source": "candidate", "arch": c["arch"], "val_acc": r.get("val_acc"),
                    "macs": c.get("macs"), "params": c.get("params"),
                    "latency_ms": c.get("measured_ms", c.get("predicted_ms"))})
    return pts


def chosen_point(ev: Evidence) -> dict[str, Any] | None:
    """The model the run trained and exported (final val accuracy, measured latency)."""
    r = ev.result
    if not r:
        return None
    return {"val_acc": r["val_acc"], "test_acc": r["test_acc"], "macs": r["flops"],
            "params": r["params"], "latency_ms": r["latency_ms"]["measured"]}


def distributions(ev: Evidence) -> list[tuple[str, list[str], list[list[float]]]]:
    """Per decision of a differentiable search, its probabilities over the epochs:
    ``(label, option names, epochs × options)``. FBNet/FBNetV2 ``p_theta`` (one row per
    layer/decision), DenseNAS ``p_paths``, DARTS α per edge (``normal``/``reduce``/``cell``)."""
    hist = [h for h in ev.history if isinstance(h, dict)]
    if not hist:
        return []
    first = hist[0]
    rows: list[tuple[str, list[str], list[list[float]]]] = []
    if "p_theta" in first:
        names = _option_names(ev)
        for d in range(len(_rows(first["p_theta"]))):
            series = [_rows(h["p_theta"])[d] for h in hist if "p_theta" in h]
            n = len(series[0])
            opts = names if names and len(names) == n else [str(i) for i in range(n)]
            rows.append((f"layer {d}", opts, series))
    if "p_paths" in first:
        for d in range(len(_rows(first["p_paths"]))):
            series = [_rows(h["p_paths"])[d] for h in hist if "p_paths" in h]
            rows.append((f"block {d} paths", [str(i) for i in range(len(series[0]))], series))
    for cell in CELLS:
        if cell in first:
            ops = [str(o) for o in first.get("ops", [])]
            edges = first.get("edges", [])
            for e in range(len(first[cell])):
                series = [h[cell][e] for h in hist if cell in h]
                label = f"{cell} {edges[e]}" if e < len(edges) else f"{cell} edge {e}"
                rows.append((label, ops or [str(i) for i in range(len(series[0]))], series))
    return rows


CELLS = ("normal", "reduce", "cell")


def cell_probabilities(ev: Evidence) -> dict[str, tuple[list[str], list[str], list[list[float]]]]:
    """A cell search's last logged epoch, per cell: (edge names, op names, edges × ops) —
    DARTS softmax(α), ENAS the controller's (edge, op) sampling frequencies."""
    last = next((h for h in reversed(ev.history) if any(c in h for c in CELLS)), None)
    if last is None:
        return {}
    ops = [str(o) for o in last.get("ops", [])]
    out = {}
    for cell in CELLS:
        rows = last.get(cell)
        if isinstance(rows, list) and rows and isinstance(rows[0], list):
            edges = [str(e) for e in last.get("edges", [])]
            edges = edges if len(edges) == len(rows) else [f"edge {i}" for i in range(len(rows))]
            out[cell] = (edges, ops if len(ops) == len(rows[0]) else
                         [str(i) for i in range(len(rows[0]))], [list(map(float, r)) for r in rows])
    return out


def _rows(p: Any) -> list[list[float]]:
    """Probability rows of one record: a list of lists, or a mapping of named rows."""
    if isinstance(p, dict):
        return [list(map(float, v)) for v in p.values() if isinstance(v, list)]
    out = []
    for r in p:
        if isinstance(r, list) and r and isinstance(r[0], list):
            out.extend(list(map(float, x)) for x in r)
        elif isinstance(r, list):
            out.append(list(map(float, r)))
    return out


def _option_names(ev: Evidence) -> list[str]:
    try:
        from nasforge.spaces.registry import get_space

        return [str(c) for c in getattr(get_space(ev.space), "candidates", [])]
    except UserError:
        return []
