"""``nasforge compare RUN_DIR...``: several finished runs side by side — one table of their
result.json figures and one accuracy-vs-latency plot with the runs' Pareto front — in one
self-contained ``compare.html`` (the plot embedded)."""

from __future__ import annotations

import html
from pathlib import Path

from nasforge.errors import UserError
from nasforge.files import write_text_atomic
from nasforge.report import evidence as evi
from nasforge.report.html import CSS, _img, _table

COLUMNS = ("method", "space", "dataset", "test acc", "val acc", "params", "MACs",
           "latency measured (ms)", "latency predicted (ms)", "search s", "train s")


def compare(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write ``out/compare.html`` and ``out/compare.png`` for ``run_dirs``; returns the page."""
    if len(run_dirs) < 2:
        raise UserError("compare needs at least two run directories (nasforge compare A B ...)")
    evs = [evi.load(d) for d in run_dirs]
    od = Path(out)
    od.mkdir(parents=True, exist_ok=True)
    from nasforge.report import plots

    png = plots.runs_pareto([(str(e.path.name), evi.chosen_point(e)) for e in evs],
                            od / "compare.png")
    head = "<tr><th>run</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS) + "</tr>"
    rows = []
    for e in evs:
        r, lat = e.result, e.result["latency_ms"]
        vals = [r["method"], r["space"], r["dataset"], r["test_acc"], r["val_acc"],
                r["params"], r["flops"], lat["measured"], lat["predicted"],
                r["search_seconds"], r["train_seconds"]]
        rows.append(f"<tr><th>{html.escape(str(e.path))}</th>" + "".join(
            f"<td>{html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</td>"
            for v in vals) + "</tr>")
    devices = _table([(str(e.path), e.result["latency_ms"]["device"]) for e in evs])
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>nasforge compare</title>"
           f"<style>{CSS}</style></head><body><h1>nasforge compare ({len(evs)} runs)</h1>"
           f"<table>{head}{''.join(rows)}</table>"
           + _img(png, "test accuracy vs measured latency of each run's final model; the "
                       "runs' Pareto front in red") + f"<h2>Devices</h2>{devices}</body></html>\n")
    page = od / "compare.html"
    write_text_atomic(page, doc)
    return page
