"""``nasforge lut validate``: how well the LUT predicts whole networks on this device.

Draws random architectures of a space, builds and measures each end to end with the same
runtime, clock, statistic, batch and dtype as the table (all interleaved with the drift probe,
see :func:`nasforge.cost.measure.measure_many`), and scores the predictions against the
measurements: the ``plain`` sum of entries, the ``corrected`` sum (one runtime overhead), the
calibrated predictor (:mod:`nasforge.cost.latency_predictor`, fitted on other random
architectures, never on the validation ones) as is (``improved_nodrift``) and times the device's
drift since the table was measured (``improved``: probe time now / probe time in the table).
Scores: mean absolute percentage error (``mape``, in percent), share of networks within ±10 %
(``within_10``, a fraction) and Kendall's τ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.arch import Arch
from nasforge.cost.latency_predictor import (
    LatencyPredictor,
    arch_id,
    fit_predictor,
    predictor_path,
    table_digest,
)
from nasforge.cost.lut import DEFAULT_STATISTIC, LatencyTable, cache_path, load_or_build
from nasforge.cost.measure import PROBE_SHAPE, device_fingerprint, measure_many, probe_module
from nasforge.errors import UserError, require
from nasforge.spaces.base import SearchSpace

#: calibration networks measured when no predictor is stored next to the table yet
DEFAULT_CALIBRATION = 20


def metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """``mape`` (percent), ``within_10`` (fraction within ±10 %), ``kendall_tau``."""
    from scipy.stats import kendalltau

    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    if len(p) != len(m) or len(m) == 0:
        raise UserError(f"need as many predictions as measurements (got {len(p)}, {len(m)})")
    rel = np.abs(p - m) / m
    tau = float(kendalltau(p, m)[0]) if len(m) > 1 else float("nan")
    return {"mape": float(rel.mean() * 100), "within_10": float(np.mean(rel <= 0.10)),
            "kendall_tau": tau}


def input_size(space: SearchSpace) -> int:
    """The input height/width a space's networks are built for (from its skeleton/spec)."""
    for obj in (space, getattr(space, "skeleton", None), getattr(space, "spec", None)):
        v = getattr(obj, "input_size", None)
        if isinstance(v, int):
            return v
    raise UserError(f"space {space.name!r} does not declare its input size; pass "
                    "input_hw= to validate_lut")


def draw_archs(space: SearchSpace, n: int, rng: np.random.Generator,
               exclude: set[str] | frozenset[str] = frozenset()) -> list[Arch]:
    """``n`` distinct random architectures whose ids are not in ``exclude``."""
    seen = set(exclude)
    out: list[Arch] = []
    for _ in range(100 * n + 100):
        if len(out) == n:
            break
        a = space.sample(rng)
        i = arch_id(a.genes)
        if i not in seen:
            seen.add(i)
            out.append(a)
    if len(out) < n:
        raise UserError(f"space {space.name!r} has too few distinct architectures for {n} "
                        "samples; ask for fewer --samples")
    return out


def measure_archs(space: SearchSpace, archs: Sequence[Arch], table: LatencyTable, in_ch: int,
                  classes: int, size: int, *, progress: bool = False,
                  desc: str = "measure") -> tuple[list[float], float]:
    """End-to-end µs of each architecture with the table's runtime and protocol, and the
    drift of the device since the table was measured (probe now / probe then; 1 if unknown)."""
    fp = table.fingerprint
    mods = [(probe_module(), PROBE_SHAPE)]
    mods += [(space.build(a, classes, in_ch), (in_ch, size, size)) for a in archs]
    times = measure_many(mods, target=table.target, threads=int(fp.get("threads") or 1),
                         batch=int(fp.get("batch", 1)), dtype=str(fp.get("dtype", "float32")),
                         warmup=table.warmup, repeats=table.repeats,
                         rounds=int(table.extra.get("rounds", 10)), statistic=table.statistic,
                         clock=str(fp.get("clock", "auto")), progress=progress, desc=desc)
    then = table.extra.get("probe_us")
    return times[1:], (times[0] / float(then) if then else 1.0)


def calibrate(space: SearchSpace, table: LatencyTable, in_ch: int, classes: int, size: int, *,
              n: int, rng: np.random.Generator, exclude: set[str] | frozenset[str] = frozenset(),
              progress: bool = False) -> LatencyPredictor:
    """Measure ``n`` random architectures end to end and fit the predictor on them (their times
    referred to the table's device state by the probe, so the fit learns the model error and not
    the load of the moment)."""
    archs = draw_archs(space, n, rng, exclude)
    measured, drift = measure_archs(space, archs, table, in_ch, classes, size,
                                    progress=progress, desc="calibrate")
    keys = [space.lut_keys(a, classes, in_ch) for a in archs]
    pred = fit_predictor(table, keys, [m / drift for m in measured],
                         arch_ids=[arch_id(a.genes) for a in archs])
    pred.calibration["drift"] = drift
    return pred


def load_or_calibrate(space: SearchSpace, table: LatencyTable, table_file: str | Path,
                      in_ch: int, classes: int, size: int, *, n: int,
                      rng: np.random.Generator, recalibrate: bool = False,
                      progress: bool = False) -> tuple[LatencyPredictor, bool]:
    """The predictor stored next to ``table_file`` if it was fitted on this very table, else a
    fresh calibration (saved there). Returns (predictor, freshly calibrated?)."""
    p = predictor_path(table_file)
    if p.is_file() and not recalibrate:
        pred = LatencyPredictor.load(p)
        if pred.table_digest == table_digest(table):
            return pred, False
    pred = calibrate(space, table, in_ch, classes, size, n=n, rng=rng, progress=progress)
    pred.save(p)
    return pred, True


def validate_lut(space: SearchSpace, items: list, in_ch: int, classes: int, *,
                 target: str = "cpu", threads: int = 1, samples: int = 30,
                 rng: np.random.Generator | None = None, statistic: str = DEFAULT_STATISTIC,
                 lut_path: str | Path | None = None, progress: bool = True,
                 calibration: int = DEFAULT_CALIBRATION, recalibrate: bool = False,
                 batch: int = 1, dtype: str = "float32", input_hw: int | None = None,
                 out: str | Path | None = None) -> dict[str, Any]:
    """Validate the (built or cached) LUT of ``space`` on ``samples`` random architectures.

    Prints the three predictors side by side, saves the report as JSON (and a
    predicted-vs-measured PNG when matplotlib is installed) next to the table, or under ``out``,
    and returns ``{"plain": {...}, "improved": {...}, "samples": N}``.
    """
    if samples < 2:
        raise UserError(f"--samples must be at least 2 to rank architectures, got {samples}")
    rng = rng if rng is not None else np.random.default_rng(0)
    size = input_hw or input_size(space)
    fp = device_fingerprint(target, threads, batch, dtype)
    table_file = Path(lut_path) if lut_path else cache_path(space.name, fp, statistic)
    table = load_or_build(space.name, items, target=target, threads=threads,
                          statistic=statistic, path=table_file, progress=progress, batch=batch,
                          dtype=dtype)
    pred, fresh = load_or_calibrate(space, table, table_file, in_ch, classes, size,
                                    n=calibration, rng=rng, recalibrate=recalibrate,
                                    progress=progress)
    calib_ids = set(pred.calibration.get("arch_ids", []))
    archs = draw_archs(space, samples, rng, exclude=calib_ids)
    measured, drift = measure_archs(space, archs, table, in_ch, classes, size,
                                    progress=progress, desc="validate")
    keys = [space.lut_keys(a, classes, in_ch) for a in archs]
    raw = [pred.predict(table, k) for k in keys]
    preds = {"plain": [table.predict(k, "plain") for k in keys],
             "corrected": [table.predict(k, "corrected") for k in keys],
             "improved_nodrift": raw,
             "improved": [v * drift for v in raw]}
    scores = {name: metrics(v, measured) for name, v in preds.items()}
    folder = Path(out) if out else table_file.parent
    stem = table_file.stem
    report = {
        "space": space.name, "target": target, "fingerprint": table.fingerprint,
        "statistic": table.statistic, "samples": samples, "table": str(table_file),
        "predictor": {"path": str(predictor_path(table_file)), "form": pred.form,
                      "freshly_calibrated": fresh, "calibration": pred.calibration,
                      "intercept": pred.intercept, "scale": pred.scale, "offset": pred.offset},
        "overhead_us": table.overhead_us, "drift": drift, "scores": scores,
        "archs": [{"genes": a.genes, "measured_us": m,
                   **{f"{k}_us": v[i] for k, v in preds.items()}}
                  for i, (a, m) in enumerate(zip(archs, measured))],
    }
    folder.mkdir(parents=True, exist_ok=True)
    report_file = folder / f"{stem}.validate.json"
    report_file.write_text(json.dumps(report, indent=1) + "\n")
    plot = _plot(preds, measured, folder / f"{stem}.validate.png",
                 f"{space.name} @ {target} ({table.statistic}, {samples} archs)")
    _print(scores, report, report_file, plot)
    return {"plain": scores["plain"], "improved": scores["improved"], "samples": samples}


def _print(scores: dict[str, dict[str, float]], report: dict[str, Any], report_file: Path,
           plot: Path | None) -> None:
    fp = report["fingerprint"]
    print(f"LUT validation: {report['space']} on {report['target']} "
          f"({fp.get('gpu', fp.get('cpu'))}, {fp.get('threads')} threads, batch "
          f"{fp.get('batch')}, {fp.get('dtype')}), statistic {report['statistic']}, "
          f"{report['samples']} random architectures")
    pr = report["predictor"]
    print(f"improved predictor: form {pr['form']!r} calibrated on {pr['calibration']['n']} "
          f"other architectures{' (just now)' if pr['freshly_calibrated'] else ''}")
    print(f"device drift since the table was measured (probe now / then): "
          f"{report['drift']:.3f}")
    print(f"{'predictor':<17} {'MAPE %':>8} {'within ±10%':>12} {'Kendall τ':>10}")
    for name, s in scores.items():
        print(f"{name:<17} {s['mape']:8.2f} {s['within_10']:12.2f} {s['kendall_tau']:10.3f}")
    print(f"report: {report_file}" + (f"  plot: {plot}" if plot else ""))


def _plot(preds: dict[str, list[float]], measured: list[float], path: Path,
          title: str) -> Path | None:
    try:
        require("matplotlib", "plot")
    except UserError:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(measured) / 1000
    allv = np.concatenate([m] + [np.asarray(v) / 1000 for v in preds.values()])
    xs = np.array([allv.min() * 0.9, allv.max() * 1.05])
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.88", label="±10 %", zorder=0)
    ax.plot(xs, xs, "k-", lw=0.8, zorder=1)
    for (name, v), mk in zip(preds.items(), "o^sv"):
        ax.scatter(m, np.asarray(v) / 1000, s=14, marker=mk, label=name, zorder=2)
    ax.set_xlim(*xs)
    ax.set_ylim(*xs)
    ax.set(xlabel="measured (ms)", ylabel="predicted (ms)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
