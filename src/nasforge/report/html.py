"""``nasforge report RUN_DIR``: one self-contained ``RUN_DIR/report.html`` (every figure
embedded as a base64 data URI, the architecture as inline SVG) plus the PNG/SVG files it
shows, for any method's run directory: a person opens one file, nothing else to fetch."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from nasforge.files import write_text_atomic
from nasforge.report import evidence as evi

CSS = ("body{font-family:sans-serif;max-width:1400px;margin:1em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;"
       "padding:2px 8px;text-align:left;font-size:13px}th{background:#f3f4f6}"
       "img{max-width:100%;border:1px solid #eee}h2{border-bottom:1px solid #ddd}"
       "pre{background:#f8f8f8;padding:.5em;overflow:auto;font-size:12px}"
       ".grid{display:flex;flex-wrap:wrap;gap:2em}")

#: figure file → what it shows (the page's captions; tests check every promised one)
FIGURES = {
    "tradeoff.png": "Accuracy vs latency / MACs / params of every evaluated or sampled "
                    "architecture: Pareto front (red), chosen model (star), targets (dashed)",
    "distribution.png": "Architecture distribution over the search epochs: per layer / block / "
                        "cell edge, a band of rows (one per epoch, first on top) over the "
                        "options",
    "alpha.png": "Last search epoch, per cell edge: the probability of each op (DARTS "
                 "softmax(α); ENAS the controller's sampling frequency), the strongest "
                 "outlined",
    "theta.png": "Mean P_θ of each candidate block over layers, per search epoch",
    "curves.png": "Temperature τ, weight/architecture loss, expected cost and concentration "
                  "per search epoch",
    "reward.png": "Reward per trial with best and median so far; trials finished per worker",
    "budget.png": "Budget: planned vs allowed vs spent seconds per stage",
    "lut.png": "LUT predicted vs measured latency of the validated random architectures "
               "(nasforge lut validate), ±10 % band, this run's model as a star",
    "live.png": "Scalars logged while the run went (scalars.jsonl), per kind/name",
}


def expected_figures(ev: evi.Evidence) -> list[str]:
    """The figures a report of ``ev`` must have (what the run's files can show)."""
    out = []
    if evi.chosen_point(ev) or any(p.get("val_acc") is not None or p.get("macs") is not None
                                   for p in evi.tradeoff_points(ev)):
        out.append("tradeoff.png")  # a live run may have evaluated nothing yet
    if evi.distributions(ev):
        out.append("distribution.png")
    if evi.cell_probabilities(ev):
        out.append("alpha.png")
    if any("p_theta" in h for h in ev.history) and evi._option_names(ev):
        out.append("theta.png")
    if ev.history:
        out.append("curves.png")
    if ev.trials:
        out.append("reward.png")
    if ev.result.get("budget"):
        out.append("budget.png")
    if ev.validation is not None and evi.lut_points(ev.validation):
        out.append("lut.png")
    if ev.scalars and not ev.result:  # a finished run's curves/reward show the same numbers
        out.append("live.png")
    return out


def _figures(ev: evi.Evidence) -> dict[str, Path]:
    from nasforge.report import plots

    plots._plt()  # matplotlib missing: one UserError with the install hint, before any work
    rd, made = ev.path, {}
    want = expected_figures(ev)
    if "tradeoff.png" in want:
        made["tradeoff.png"] = plots.tradeoff(evi.tradeoff_points(ev), evi.chosen_point(ev),
                                              ev.targets, rd / "tradeoff.png")
    if "distribution.png" in want:
        made["distribution.png"] = plots.distribution_heatmaps(evi.distributions(ev),
                                                               rd / "distribution.png")
    if "alpha.png" in want:
        made["alpha.png"] = plots.alpha_per_edge(
            evi.cell_probabilities(ev), rd / "alpha.png",
            "sampling frequency" if ev.method == "enas" else "softmax(α)")
    if "theta.png" in want:
        made["theta.png"] = plots.theta_over_time(ev.history, evi._option_names(ev),
                                                  rd / "theta.png")
    if "curves.png" in want:
        made["curves.png"] = plots.search_curves(ev.history, rd / "curves.png")
    if "reward.png" in want:
        made["reward.png"] = plots.reward_over_trials(ev.trials, rd / "reward.png")
    if "budget.png" in want:
        made["budget.png"] = plots.budget_bars(ev.result["budget"], rd / "budget.png")
    if "lut.png" in want:
        v = ev.validation or {}
        lat = ev.result.get("latency_ms") or {}
        chosen = ((lat["measured"], lat["predicted"]) if lat.get("predicted") is not None
                  else None)
        made["lut.png"] = plots.lut_validation(
            evi.lut_points(v), v.get("scores", {}), chosen,
            f"{v.get('space')} on {v.get('target')} ({v.get('statistic')}, "
            f"{v.get('samples')} archs)", rd / "lut.png")
    if "live.png" in want:
        made["live.png"] = plots.scalar_lines(ev.scalars, rd / "live.png")
    return made


def _table(rows: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in rows) + "</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict) and v and all(isinstance(x, (int, float)) for x in v.values()):
        return " · ".join(f"{k} {_fmt(x)}" for k, x in v.items())  # e.g. seconds per stage
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def _scores(scores: dict[str, Any]) -> str:
    head = "<tr><th>predictor</th><th>MAPE %</th><th>within ±10 %</th><th>Kendall τ</th></tr>"
    return "<table>" + head + "".join(
        f"<tr><th>{html.escape(str(k))}</th>" + "".join(
            f"<td>{html.escape(_fmt(s.get(f)))}</td>" for f in ("mape", "within_10",
                                                                "kendall_tau")) + "</tr>"
        for k, s in scores.items() if isinstance(s, dict)) + "</table>"


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f"<figure><img alt='{html.escape(path.name)}' src='data:image/png;base64,{data}'/>"
            f"<figcaption>{html.escape(caption)} ({html.escape(path.name)})</figcaption>"
            "</figure>")


def _summary(ev: evi.Evidence) -> str:
    r = ev.result
    if not r:
        return "<p>The run has not finished: no result.json yet (a live report).</p>"
    lat = r["latency_ms"]
    return _table([("method", r["method"]), ("space", r["space"]), ("dataset", r["dataset"]),
                   ("seed", r["seed"]), ("test acc", r["test_acc"]), ("val acc", r["val_acc"]),
                   ("params", r["params"]), ("MACs", r["flops"]),
                   ("latency measured (ms)", lat["measured"]),
                   ("latency predicted (ms)", lat["predicted"]), ("device", lat["device"]),
                   ("search s", r["search_seconds"]), ("train s", r["train_seconds"]),
                   ("epochs", r["epochs"])])


def render(ev: evi.Evidence, figures: dict[str, Path], svg: str | None) -> str:
    """The page's HTML from the evidence, the written figures and the architecture SVG."""
    r, parts = ev.result, []
    title = f"nasforge {ev.method}" + (f" on {r['dataset']}" if r else " (running)")
    parts.append(f"<h1>{html.escape(title)}</h1><p>{html.escape(str(ev.path))}</p>")
    parts.append("<h2>Result</h2>" + _summary(ev))
    if svg is not None:
        parts.append("<h2>Derived architecture</h2>" + svg + "<details><summary>genes"
                     f"</summary><pre>{html.escape(json.dumps(r['arch']['genes']))}</pre>"
                     "</details>")
    block = ev.search.get("best_block")
    if block:
        parts.append(f"<h3>Best block (text)</h3><pre>{html.escape(block)}</pre>")
    parts.append("<h2>Figures</h2>")
    for name, p in figures.items():
        parts.append(_img(p, FIGURES[name]))
    v = ev.validation
    if v is not None:
        parts.append("<h2>LUT validation</h2><p>" + html.escape(
            f"{v.get('samples')} random architectures of {v.get('space')} measured end to end "
            f"on {v.get('target')} against the table's predictions ({v['file']})") + "</p>"
            + _scores(v.get("scores", {})))
    if r.get("budget"):
        b = r["budget"]
        parts.append("<h2>Budget</h2>" + _table(
            [("total s", b.get("total"))] + [(f"{k} s", b[k]) for k in
                                            ("planned", "allowed", "spent") if k in b]))
    if r.get("convergence"):
        parts.append("<h2>Convergence</h2>" + _table(list(r["convergence"].items())))
    fp = ev.run.get("fingerprint")
    if fp:
        parts.append("<h2>Device fingerprint</h2>" + _table(list(fp.items())))
    parts.append("<h2>Configuration</h2>" + _table(sorted(ev.config.items())))
    if r:
        parts.append("<h2>result.json</h2><pre>" + html.escape(json.dumps(r, indent=1))
                     + "</pre>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")


def write_html_report(run_dir: str | Path, *, live: bool = False) -> Path:
    """Write the figures, ``arch.svg`` and ``report.html`` of ``run_dir``; returns the page."""
    from nasforge.report.diagram import arch_svg

    ev = evi.load(run_dir, live=live)
    figures = _figures(ev)
    svg = None
    if ev.result:
        svg = arch_svg(ev.result["space"], ev.result["arch"]["genes"])
        write_text_atomic(ev.path / "arch.svg", svg)
    out = ev.path / "report.html"
    write_text_atomic(out, render(ev, figures, svg))
    return out
