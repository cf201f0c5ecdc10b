"""``nasforge report RUN_DIR``: plots + a self-contained report.html (images inlined)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from nasforge.errors import UserError
from nasforge.run.result import read_result
from nasforge.run.rundir import RunDir


def write_html_report(run_dir: str | Path) -> Path:
    rd = Path(run_dir)
    res = read_result(rd / "result.json")
    run = RunDir(rd).read_json("run.json", default={})
    search = RunDir(rd).read_json("search.json", default={})
    images: list[tuple[str, Path]] = []
    try:
        from nasforge.report import plots

        rows = [{**r, "val_acc": a.get("val_acc")} for r, a in
                zip(run.get("candidates", []), _match(run))]
        if any(r["val_acc"] is not None for r in rows):
            images.append(("Candidates: accuracy vs MACs", plots.pareto(rows, rd / "pareto.png")))
        hist = search.get("history", [])
        if any("p_theta" in h for h in hist):
            from nasforge.spaces.registry import get_space

            cands = list(getattr(get_space(res["space"]), "candidates", []))
            if cands:
                images.append(("θ over time", plots.theta_over_time(hist, cands,
                                                                    rd / "theta.png")))
    except UserError as e:  # matplotlib missing: the report still has the tables
        images_note = str(e)
    else:
        images_note = ""
    lat = res["latency_ms"]
    rows_html = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                        for k, v in [("method", res["method"]), ("space", res["space"]),
                                     ("dataset", res["dataset"]), ("test acc", res["test_acc"]),
                                     ("val acc", res["val_acc"]), ("params", res["params"]),
                                     ("MACs", res["flops"]),
                                     ("latency measured (ms)", lat["measured"]),
                                     ("latency predicted (ms)", lat["predicted"]),
                                     ("device", lat["device"]),
                                     ("search s", res["search_seconds"]),
                                     ("train s", res["train_seconds"])])
    imgs = "".join(
        f"<h2>{html.escape(t)}</h2><img src='data:image/png;base64,"
        f"{base64.b64encode(p.read_bytes()).decode()}'/>" for t, p in images)
    doc = (f"<!doctype html><meta charset='utf-8'><title>nasforge {res['method']}</title>"
           f"<h1>nasforge {html.escape(res['method'])} on {html.escape(res['dataset'])}</h1>"
           f"<table>{rows_html}</table><h2>Architecture</h2><pre>"
           f"{html.escape(json.dumps(res['arch']['genes'], indent=1))}</pre>{imgs}"
           + (f"<p>{html.escape(images_note)}</p>" if images_note else ""))
    out = rd / "report.html"
    out.write_text(doc)
    return out


def _match(run: dict) -> list[dict]:
    accs = {json.dumps(r["arch"]): r for r in run.get("ranking", [])}
    return [accs.get(json.dumps(c["arch"]), {}) for c in run.get("candidates", [])]
