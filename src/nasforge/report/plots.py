"""Plots of a run: candidates' accuracy vs cost (Pareto), θ over time, LUT predicted vs
measured. Each returns the PNG path it wrote (matplotlib from the ``plot`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasforge.errors import require


def _plt():  # noqa: ANN202
    mpl = require("matplotlib", "plot")
    mpl.use("Agg")
    return require("matplotlib.pyplot", "plot")


def pareto(rows: list[dict[str, Any]], path: Path, x: str = "macs", y: str = "val_acc") -> Path:
    """Scatter of candidates with the non-dominated front (lower x, higher y) drawn."""
    plt = _plt()
    pts = sorted((r[x], r[y]) for r in rows if r.get(y) is not None)
    front, best = [], -1.0
    for px, py in pts:
        if py > best:
            front.append((px, py))
            best = py
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, label="candidates")
    if front:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="C3",
                label="Pareto front")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def theta_over_time(history: list[dict[str, Any]], candidates: list[str], path: Path) -> Path:
    """P_θ of each candidate, averaged over layers, per search epoch."""
    plt = _plt()
    import numpy as np

    recs = [h for h in history if "p_theta" in h]
    p = np.array([np.array(h["p_theta"]).mean(0) for h in recs])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for k, name in enumerate(candidates):
        ax.plot([h["epoch"] for h in recs], p[:, k], label=name)
    ax.set_xlabel("search epoch")
    ax.set_ylabel("mean P_θ over layers")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def predicted_vs_measured(pred: list[float], meas: list[float], path: Path,
                          label: str = "") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(meas, pred, s=14, label=label or None)
    lo, hi = min(meas + pred), max(meas + pred)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.plot([lo, hi], [lo * 1.1, hi * 1.1], ":", color="grey", lw=1)
    ax.plot([lo, hi], [lo * 0.9, hi * 0.9], ":", color="grey", lw=1)
    ax.set_xlabel("measured ms")
    ax.set_ylabel("predicted ms")
    if label:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
