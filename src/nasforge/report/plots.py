"""Plots of a run: accuracy vs cost (Pareto), the architecture distribution over epochs, DARTS
α per edge, search curves, rewards, budget, LUT predicted vs measured, live scalars. Each returns
the PNG path it wrote (matplotlib from the ``plot`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasforge.errors import require


def _plt():  # noqa: ANN202
    mpl = require("matplotlib", "plot")
    mpl.use("Agg")
    return require("matplotlib.pyplot", "plot")


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


def _save(fig: Any, path: Path) -> Path:
    plt = _plt()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def front(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated points (lower cost, higher accuracy), by increasing cost."""
    out, best = [], float("-inf")
    for px, py in sorted(pts, key=lambda p: (p[0], -p[1])):
        if py > best:
            out.append((px, py))
            best = py
    return out


TRADEOFF_AXES = (("latency_ms", "latency (ms)", "latency_ms"), ("macs", "MACs", "flops"),
                 ("params", "params", "params"))


def tradeoff(points: list[dict[str, Any]], chosen: dict[str, Any] | None,
             targets: dict[str, float], path: Path) -> Path:
    """Accuracy against latency, MACs and params of every evaluated/sampled architecture:
    the Pareto front in red, the chosen model as a star, each set target as a dashed line.
    Architectures never trained (no accuracy) are ticks along the bottom."""
    plt = _plt()
    axes_used = [a for a in TRADEOFF_AXES
                 if any(p.get(a[0]) is not None for p in points)
                 or (chosen and chosen.get(a[0]) is not None)]
    fig, axs = plt.subplots(1, max(1, len(axes_used)), figsize=(4.2 * max(1, len(axes_used)), 3.4),
                            squeeze=False)
    for ax, (key, label, tkey) in zip(axs[0], axes_used):
        xy = [(float(p[key]), float(p["val_acc"])) for p in points
              if p.get(key) is not None and p.get("val_acc") is not None]
        untrained = [float(p[key]) for p in points
                     if p.get(key) is not None and p.get("val_acc") is None]
        if xy:
            ax.scatter([p[0] for p in xy], [p[1] for p in xy], s=16, alpha=0.6,
                       label=f"evaluated ({len(xy)})")
            f = front(xy)
            ax.plot([p[0] for p in f], [p[1] for p in f], "o-", color="C3", ms=5, lw=1.5,
                    label="Pareto front")
        if untrained:
            ax.plot(untrained, [0.0] * len(untrained), "|", color="grey", ms=14,
                    label=f"not trained ({len(untrained)})")
        if chosen and chosen.get(key) is not None:
            ax.plot([chosen[key]], [chosen["val_acc"]], "*", color="gold", ms=16, mec="k",
                    label="chosen (final val)")
        if tkey in targets:
            ax.axvline(targets[tkey], ls="--", color="k", lw=1, label="target")
        ax.set_xlabel(label)
        ax.set_ylabel("val accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def distribution_heatmaps(dists: list[tuple[str, list[str], list[list[float]]]],
                          path: Path) -> Path:
    """The distribution over the epochs, one heatmap per group of decisions (FBNet layers,
    DenseNAS blocks, each DARTS cell): each decision is a band of rows (its epochs, first on
    top), options across, colour = probability. One image per group keeps a 22-layer or
    28-edge search to a handful of artists (fast to draw, readable)."""
    plt = _plt()
    import numpy as np

    groups: dict[str, list[tuple[str, list[str], list[list[float]]]]] = {}
    for label, opts, series in dists:
        groups.setdefault(_group_of(label), []).append((label, opts, series))
    fig, axs = plt.subplots(1, len(groups), squeeze=False,
                            figsize=(max(4.5, 4.2 * len(groups)),
                                     min(14.0, 1.6 + 0.32 * max(len(g) for g in groups.values()))))
    im = None
    for ax, (name, rows) in zip(axs[0], groups.items()):
        width = max(len(s[0]) for _, _, s in rows)
        n_ep = max(len(s) for _, _, s in rows)
        band = []
        for _, _, series in rows:
            m = [list(r) + [np.nan] * (width - len(r)) for r in series]
            m += [[np.nan] * width] * (n_ep - len(m))
            band.append(np.array(m))
        img = np.vstack(band)
        im = ax.imshow(img, aspect="auto", vmin=0, vmax=1, cmap="viridis",
                       interpolation="nearest")
        for k in range(1, len(rows)):
            ax.axhline(k * n_ep - 0.5, color="w", lw=1.2)
        ax.set_yticks([k * n_ep + (n_ep - 1) / 2 for k in range(len(rows))])
        ax.set_yticklabels([lab[len(name):].strip() or lab for lab, _, _ in rows], fontsize=6)
        opts = max((o for _, o, _ in rows), key=len)
        ax.set_xticks(range(width))
        ax.set_xticklabels(opts[:width], rotation=60, fontsize=6, ha="right")
        ax.set_title(f"{name}: {n_ep} epoch(s) per band, first on top", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=list(axs.flat), shrink=0.6, label="probability")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _group_of(label: str) -> str:
    """``layer 3`` → ``layer``; ``normal 2<-0`` → ``normal``; ``block 1 paths`` → ``block``."""
    return label.split(" ", 1)[0]


def alpha_per_edge(cells: dict[str, tuple[list[str], list[str], list[list[float]]]],
                   path: Path, what: str = "softmax(α)") -> Path:
    """A cell search's last epoch: each edge's probabilities (rows) over the ops (columns) —
    DARTS softmax(α), ENAS the controller's sampling frequencies — one panel per cell, each
    value written in its square, the edge's strongest op outlined."""
    plt = _plt()
    import numpy as np

    fig, axs = plt.subplots(1, len(cells), squeeze=False,
                            figsize=(4.8 * len(cells),
                                     1.4 + 0.3 * max(len(e) for e, _, _ in cells.values())))
    im = None
    for ax, (cell, (edges, ops, probs)) in zip(axs[0], cells.items()):
        m = np.array(probs, dtype=float)
        im = ax.imshow(m, aspect="auto", vmin=0, vmax=max(0.3, float(m.max())), cmap="magma_r")
        for i in range(m.shape[0]):
            j = int(m[i].argmax())
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="C0", lw=1.5))
            for k in range(m.shape[1]):
                ax.text(k, i, f"{m[i, k]:.2f}", ha="center", va="center", fontsize=5,
                        color="w" if m[i, k] > 0.6 * m.max() else "k")
        ax.set_yticks(range(len(edges)))
        ax.set_yticklabels(edges, fontsize=6)
        ax.set_xticks(range(len(ops)))
        ax.set_xticklabels(ops, rotation=60, fontsize=6, ha="right")
        ax.set_title(f"{cell} cell: {what} per edge (node<-input)", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=list(axs.flat), shrink=0.7, label=what)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def lut_validation(points: dict[str, list[tuple[float, float]]], scores: dict[str, Any],
                   chosen: tuple[float, float] | None, title: str, path: Path) -> Path:
    """Predicted against measured latency of the validated architectures, one marker per
    predictor (legend: its MAPE), the ±10 % band, and this run's model (its LUT prediction vs
    its measured latency) as a star."""
    plt = _plt()
    import numpy as np

    allv = [v for pts in points.values() for p in pts for v in p] + list(chosen or ())
    lo, hi = min(allv) * 0.9, max(allv) * 1.08
    xs = np.array([lo, hi])
    fig, ax = plt.subplots(figsize=(5, 4.6))
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.88", label="±10 %", zorder=0)
    ax.plot(xs, xs, "k-", lw=0.8, zorder=1)
    for (name, pts), mk in zip(points.items(), "o^sv<>"):
        mape = (scores.get(name) or {}).get("mape")
        lab = name + (f" (MAPE {mape:.1f} %)" if isinstance(mape, (int, float)) else "")
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, marker=mk, label=lab,
                   zorder=2)
    if chosen is not None:
        ax.plot([chosen[0]], [chosen[1]], "*", color="gold", ms=16, mec="k", zorder=3,
                label="this run's model")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured (ms)", ylabel="predicted (ms)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    return _save(fig, path)


def search_curves(history: list[dict[str, Any]], path: Path) -> Path:
    """τ, the weight and architecture losses, the expected cost and the distribution's
    concentration per search epoch."""
    plt = _plt()
    ep = [h.get("epoch", i) for i, h in enumerate(history)]
    panels = [("τ (temperature)", ["tau"]), ("loss", ["w_loss", "a_loss"]),
              ("expected cost", ["cost"]), ("concentration", ["max_prob", "entropy"])]
    fig, axs = plt.subplots(1, 4, figsize=(14, 3), squeeze=False)
    for ax, (title, keys) in zip(axs[0], panels):
        for k in keys:
            xs = [e for e, h in zip(ep, history) if h.get(k) is not None]
            ys = [h[k] for h in history if h.get(k) is not None]
            if ys:
                ax.plot(xs, ys, "o-", ms=3, label=k)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("search epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def reward_over_trials(trials: list[dict[str, Any]], path: Path) -> Path:
    """Best-so-far and running median reward by trial, and finished trials per worker over
    time."""
    plt = _plt()
    import numpy as np

    done = sorted((t for t in trials if t["status"] == "done"
                   and t["metrics"].get("reward") is not None),
                  key=lambda t: t["finished_at"] or 0.0)
    r = [float(t["metrics"]["reward"]) for t in done]
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.3))
    n = np.arange(1, len(r) + 1)
    axs[0].scatter(n, r, s=10, alpha=0.5, label="trial reward")
    axs[0].plot(n, np.maximum.accumulate(r) if r else [], color="C3", label="best so far")
    axs[0].plot(n, [float(np.median(r[:k])) for k in n], color="C2", label="median so far")
    axs[0].set_xlabel("finished trial")
    axs[0].set_ylabel("reward")
    axs[0].grid(alpha=0.3)
    axs[0].legend(fontsize=7)
    t0 = min((t["started_at"] for t in trials), default=0.0)
    workers = sorted({str(t["worker"]) for t in done})
    for w in workers:
        ts = sorted(t["finished_at"] - t0 for t in done if str(t["worker"]) == w)
        axs[1].step(ts, range(1, len(ts) + 1), where="post", label=w)
    axs[1].set_xlabel("seconds since the first trial")
    axs[1].set_ylabel("trials finished")
    axs[1].set_title("trials per worker", fontsize=9)
    axs[1].grid(alpha=0.3)
    if workers:
        axs[1].legend(fontsize=7)
    return _save(fig, path)


def budget_bars(budget: dict[str, Any], path: Path) -> Path:
    """Seconds per stage: the plan, what each stage was allowed when it started, spent."""
    plt = _plt()
    import numpy as np

    stages = ["search", "rank", "train", "export_measure"]
    kinds = [k for k in ("planned", "allowed", "spent") if k in budget]
    fig, ax = plt.subplots(figsize=(6, 3))
    x = np.arange(len(stages))
    w = 0.8 / max(1, len(kinds))
    for i, k in enumerate(kinds):
        ax.bar(x + i * w, [float(budget[k].get(s, 0.0)) for s in stages], w, label=k)
    ax.set_xticks(x + w * (len(kinds) - 1) / 2)
    ax.set_xticklabels(stages)
    ax.set_ylabel("seconds")
    if budget.get("total"):
        ax.set_title(f"budget {budget['total']:.0f} s, spent "
                     f"{sum(budget['spent'].values()):.0f} s", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


SCALAR_SKIP = ("step", "time", "kind", "epoch", "seconds", "elapsed_s")


def scalar_lines(records: list[dict[str, Any]], path: Path, max_panels: int = 8) -> Path:
    """Each numeric scalar of ``scalars.jsonl`` against its step, one panel per
    ``kind/name`` (supernet/ENAS epochs, trials, verified candidates)."""
    plt = _plt()
    keys: list[tuple[str, str]] = []
    for r in records:
        for k, v in r.items():
            if k not in SCALAR_SKIP and isinstance(v, (int, float)) \
                    and not isinstance(v, bool) and (r.get("kind"), k) not in keys:
                keys.append((str(r.get("kind")), k))
    keys = keys[:max_panels] or [("", "(none)")]
    cols = min(4, len(keys))
    rows = -(-len(keys) // cols)
    fig, axs = plt.subplots(rows, cols, figsize=(3.5 * cols, 2.5 * rows), squeeze=False)
    for ax, (kind, k) in zip(axs.flat, keys):
        pts = [(r.get("step", i), r[k]) for i, r in enumerate(records)
               if r.get("kind") == kind and isinstance(r.get(k), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-")
        ax.set_title(f"{kind}/{k}", fontsize=9)
        ax.set_xlabel("epoch" if kind in ("supernet", "enas") else "step", fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axs.flat)[len(keys):]:
        ax.axis("off")
    return _save(fig, path)


def runs_pareto(runs: list[tuple[str, dict[str, Any] | None]], path: Path) -> Path:
    """Test accuracy vs measured latency of each run's final model, labelled, with the
    runs' Pareto front."""
    plt = _plt()
    pts = [(name, float(p["latency_ms"]), float(p["test_acc"])) for name, p in runs
           if p is not None and p.get("latency_ms") is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, x, y) in enumerate(pts):
        ax.scatter([x], [y], s=40, color=f"C{i % 10}", label=name, zorder=3)
    f = front([(x, y) for _, x, y in pts])
    ax.plot([p[0] for p in f], [p[1] for p in f], "-", color="C3", lw=1.5, zorder=2,
            label="Pareto front")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
