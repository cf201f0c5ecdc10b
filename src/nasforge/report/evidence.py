"""What a run directory holds, gathered once for the report: result.json, config.json,
run.json, search.json, budget, the trial store (sample-based methods) and the scalars a run
logs as it goes (``scalars.jsonl``). Every file is read through :class:`RunDir` /
:mod:`nasforge.files` so a damaged one is one error naming it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.errors import UserError
from nasforge.files import read_text
from nasforge.run.result import read_result
from nasforge.run.rundir import RunDir

SCALARS = "scalars.jsonl"


@dataclass
class Evidence:
    path: Path
    result: dict[str, Any]
    config: dict[str, Any]
    run: dict[str, Any]
    search: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    scalars: list[dict[str, Any]] = field(default_factory=list)

    @property
    def method(self) -> str:
        return str(self.result.get("method") or self.config.get("method", "?"))

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per-epoch records of a differentiable search (empty for sample-based runs)."""
        h = self.search.get("history", [])
        return h if isinstance(h, list) else []

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
                    _trials(rd), read_scalars(rd.path))


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


def read_scalars(run_dir: str | Path) -> list[dict[str, Any]]:
    """The JSON lines of ``RUN_DIR/scalars.jsonl``; a last line cut by a live write is skipped."""
    p = Path(run_dir) / SCALARS
    if not p.exists():
        return []
    out = []
    for line in read_text(p, "scalar log", "delete it; the run rewrites it").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
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
    for cell in ("normal", "reduce", "cell"):
        if cell in first:
            ops = [str(o) for o in first.get("ops", [])]
            edges = first.get("edges", [])
            for e in range(len(first[cell])):
                series = [h[cell][e] for h in hist if cell in h]
                label = f"{cell} {edges[e]}" if e < len(edges) else f"{cell} edge {e}"
                rows.append((label, ops or [str(i) for i in range(len(series[0]))], series))
    return rows


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

        return [str(c) for c in getattr(get_space(ev.result.get("space", "")), "candidates", [])]
    except UserError:
        return []
