"""Does the search beat random? Each method's found model against ≥ 5 random architectures of
the same space that meet the same target, all trained from scratch alike (issue 10, items 3–4).

Per method and target (one row each):

1. the search runs through the library (``nasforge.search(method, budget=…, latency_ms=…)``)
   under the same ``--budget`` for every method; its own final training is cut to one epoch
   (``train_epochs=1``: the benchmark retrains the pick), which does not change what it picks;
2. ``--random N`` architectures are drawn from the run's space, priced by the run's cost model
   and kept when they meet the run's targets (:mod:`nasforge.testing.random_baseline`);
3. the found one and every random one are trained from scratch with the run's recipe for
   ``--train-epochs`` (:func:`nasforge.methods.finish.train_final`, the run's seed), and briefly
   for each of ``--rank-epochs`` (the ranking :func:`nasforge.methods.finish.rank` does);
4. the row: searched test accuracy, random mean ± std and best, the searched model's rank
   among them (1 = best), the search's seconds (search + ranking stages), and Kendall τ
   between each short ranking's validation accuracy and the full trainings' test accuracy.

The target, when not given, is the ``--target-quantile`` (default the median) of the costs of
30 random architectures of the space (at the median, half the space misses it). The table is
printed and written as JSON to ``--out`` after every row.

    python benchmarks/search_vs_random.py --methods fbnet,blockqnn --dataset fashion-mnist \\
        --budget 240 --train-epochs 6 --out /tmp/svr.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import nasforge
from nasforge.arch import Arch
from nasforge.cost.targets import Targets
from nasforge.errors import UserError
from nasforge.files import read_json, write_json_atomic
from nasforge.methods.api import make_settings
from nasforge.methods.common import rng_for, setup
from nasforge.methods.finish import rank, train_final
from nasforge.progress import Bar
from nasforge.run.rundir import RunDir
from nasforge.testing.random_baseline import (
    DIFFERENTIABLE_METHODS,
    SAMPLED_METHODS,
    cost_quantile,
    kendall_tau,
    run_costs,
    sample_meeting,
)

METHODS = ("fbnet", "fbnetv2", "densenas", "blockqnn", "reinforce", "evolution")
#: target kind -> the search setting that sets it
TARGET_FIELD = {"latency": "latency_ms", "flops": "flops", "params": "params"}
#: a placeholder limit while the space's median cost is measured (the cost model only needs
#: to know that latency is priced)
_PLACEHOLDER = {"latency_ms": 1.0, "flops": 1.0, "params": 1.0}


def row(method: str, *, dataset: str = "fashion-mnist", subset: int | None = None,
        budget: float = 240.0, n_random: int = 5, train_epochs: int = 6,
        rank_epochs: tuple[int, ...] = (1, 2, 4), seed: int = 0,
        target_kind: str = "latency", target: float | None = None, quantile: float = 0.5,
        work_dir: str | Path = "/tmp/svr_runs", data_dir: str | None = None,
        progress: bool = True, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """One method's row (see the module docstring). ``settings``: more search settings (e.g.
    ``max_trials``) for the search call."""
    if method not in DIFFERENTIABLE_METHODS + SAMPLED_METHODS:
        raise UserError(f"unknown method {method!r} for this benchmark; choose from "
                        f"{', '.join(DIFFERENTIABLE_METHODS + SAMPLED_METHODS)}")
    if target_kind not in TARGET_FIELD:
        raise UserError(f"--target-kind must be one of {list(TARGET_FIELD)}, got "
                        f"{target_kind!r}")
    if n_random < 5:
        raise UserError(f"--random must be ≥ 5 (a mean and std of fewer say little), got "
                        f"{n_random}")
    if train_epochs < 1 or not rank_epochs or min(rank_epochs) < 1:
        raise UserError("--train-epochs and every --rank-epochs value must be ≥ 1")
    t_row = time.perf_counter()
    field = TARGET_FIELD[target_kind]
    out = Path(work_dir) / f"{method}-{target_kind}-s{seed}-{time.strftime('%H%M%S')}"
    base = {"dataset": dataset, "subset": subset, "seed": seed, "budget": float(budget),
            "target": "cpu", "train_epochs": 1, "progress": progress, "data_dir": data_dir,
            **(settings or {})}
    s0 = make_settings(method, **base, **{field: _PLACEHOLDER[field]}, out=str(out))
    _, data = setup(s0)
    given_target = target is not None
    if target is None:
        target = cost_quantile(run_costs(s0, data), target_kind, rng_for(seed, 11), quantile)
    kw = {**base, field: float(target)}

    t0 = time.perf_counter()
    try:
        res = nasforge.search(method, out=str(out), **kw)
    except UserError as e:  # e.g. no candidate of the search meets the target: the row says so
        return {"method": method, "dataset": dataset, "subset": subset, "seed": seed,
                "budget": float(budget), "target": {"kind": target_kind, field: float(target)},
                "failed": str(e), "command_s": time.perf_counter() - t0,
                "row_s": time.perf_counter() - t_row}
    command_s = time.perf_counter() - t0
    spent = (res.budget or {}).get("spent", {})
    search_s = float(spent.get("search", res.search_seconds)) + float(spent.get("rank", 0.0))

    s = make_settings(method, **kw, out=str(out))
    targets = Targets.from_settings(s)
    rc = run_costs(s, data, run_dir=res.run_dir)
    if rc.space.name != res.space:  # the random architectures must come from the searched space
        raise RuntimeError(f"the baseline priced space {rc.space.name!r}, the search ran on "
                           f"{res.space!r}")
    run_info = RunDir(res.run_dir).read_json("run.json", default={})
    recipe = run_info.get("settings", {}).get("extra", {}).get("recipe", {})
    found = Arch.from_dict(res.arch)
    found_costs = rc.cost_model.costs(found, memory=targets.needs_memory)
    draws = sample_meeting(rc, targets, n_random, rng_for(seed, 7), exclude=[found])
    cands = [found] + [d.arch for d in draws]

    n_ep = len(cands) * (train_epochs + sum(rank_epochs))
    bar = Bar(n_ep, f"{method} vs random", disable=not progress)
    short: dict[str, list[float]] = {}
    for k in rank_epochs:  # the finish stage's ranking, every candidate trained (no target
        # filter: each already meets it, and a re-measured latency must not drop one)
        r = rank(cands, data, rc.cost_model, Targets(), epochs=k, seed=seed, recipe=recipe)
        accs = {json.dumps(x["arch"], sort_keys=True): x["val_acc"] for x in r.ranked}
        short[str(k)] = [float(accs[json.dumps(a.to_dict()["genes"], sort_keys=True)])
                         for a in cands]
        bar.advance(k * len(cands))
    full = []
    for a in cands:
        _, tr = train_final(rc.space, a, data, epochs=train_epochs, seed=seed, recipe=recipe)
        full.append({"test_acc": float(tr.test_acc), "val_acc": float(tr.val_acc),
                     "seconds": float(tr.seconds)})
        bar.advance(train_epochs)
    bar.close()

    accs = [f["test_acc"] for f in full]
    found_acc, rand = accs[0], accs[1:]
    mean, std = statistics.fmean(rand), statistics.stdev(rand)
    return {
        "method": method, "dataset": dataset, "subset": subset, "seed": seed,
        "budget": float(budget), "target": {"kind": target_kind, field: float(target)},
        "quantile": None if given_target else quantile, "train_epochs": train_epochs,
        "recipe": recipe, "space": rc.space.name,
        "command_s": command_s, "search_s": search_s,
        "searched": {"arch": res.arch["genes"], "costs": found_costs.to_dict(),
                     "meets": targets.meets(found_costs), "command_test_acc": res.test_acc,
                     **full[0]},
        "random": [{"arch": d.arch.to_dict()["genes"], "costs": d.costs,
                    "repaired": d.repaired, **f} for d, f in zip(draws, full[1:])],
        "searched_test_acc": found_acc, "random_mean": mean, "random_std": std,
        "random_best": max(rand), "rank": 1 + sum(a > found_acc for a in rand),
        "of": len(cands), "beats": found_acc > mean + std,
        "short_val_acc": short,
        "tau": {k: kendall_tau(v, accs) for k, v in short.items()},
        "row_s": time.perf_counter() - t_row,
    }


def pooled_tau(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per ranking length: the mean of the rows' τ and τ over all rows' candidates pooled."""
    out: dict[str, dict[str, float]] = {}
    rows = [r for r in rows if "failed" not in r]
    for k in sorted({k for r in rows for k in r["tau"]}, key=int):
        per = [r["tau"][k] for r in rows if k in r["tau"] and not math.isnan(r["tau"][k])]
        short = [v for r in rows if k in r["short_val_acc"] for v in r["short_val_acc"][k]]
        full: list[float] = []
        for r in rows:
            if k in r["short_val_acc"]:
                full += [r["searched_test_acc"]] + [x["test_acc"] for x in r["random"]]
        out[k] = {"mean": statistics.fmean(per) if per else math.nan,
                  "pooled": kendall_tau(short, full), "rows": len(per)}
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| method | target | searched | random mean ± std | best | rank | search s | "
             "command s | beats | τ (short/full) |", "|" + "---|" * 10]
    for r in rows:
        t = r["target"]
        tv = next(f"{v:g}" for k, v in t.items() if k != "kind")
        if "failed" in r:
            lines.append(f"| {r['method']} | {t['kind']} {tv} | search failed: {r['failed']} |")
            continue
        taus = " ".join(f"{k}ep {v:+.2f}" for k, v in r["tau"].items())
        lines.append(
            f"| {r['method']} | {t['kind']} {tv} | {r['searched_test_acc']:.4f} | "
            f"{r['random_mean']:.4f} ± {r['random_std']:.4f} | {r['random_best']:.4f} | "
            f"{r['rank']}/{r['of']} | {r['search_s']:.0f} | {r['command_s']:.0f} | "
            f"{'yes' if r['beats'] else 'no'} | {taus} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=None, help="training images (default: all)")
    ap.add_argument("--budget", type=float, default=240.0, help="--budget of every search")
    ap.add_argument("--random", type=int, default=5, help="random architectures per row (≥ 5)")
    ap.add_argument("--train-epochs", type=int, default=6)
    ap.add_argument("--rank-epochs", default="1,2,4", help="short ranking lengths (epochs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-kind", default=None,
                    help="latency | flops | params, or a comma list (one row per kind); "
                         "default: latency, or flops when --flops is given")
    ap.add_argument("--target-quantile", type=float, default=0.5,
                    help="without a target value: this quantile of the space's costs")
    ap.add_argument("--latency-ms", type=float, default=None)
    ap.add_argument("--flops", type=float, default=None, help="MACs target")
    ap.add_argument("--params", type=float, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (shared machine: 1)")
    ap.add_argument("--work-dir", default="/tmp/svr_runs", help="where the runs go")
    ap.add_argument("--out", default=None, help="JSON file for the table")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="print (and with --out write) the table of earlier --out files; "
                         "runs nothing")
    a = ap.parse_args(argv)
    if a.merge:
        rows = [r for f in a.merge for r in read_json(f, "search_vs_random table",
                                                       "give a file --out wrote")["rows"]]
        report(rows)
        if a.out:
            write_json_atomic(a.out, {"merged": a.merge, "rows": rows, "tau": pooled_tau(rows)})
        return 0
    torch.set_num_threads(a.threads)
    given = {"latency": a.latency_ms, "flops": a.flops, "params": a.params}
    kinds = (a.target_kind.split(",") if a.target_kind else
             [k for k, v in given.items() if v is not None] or ["latency"])
    try:
        rank_epochs = tuple(int(x) for x in a.rank_epochs.split(","))
    except ValueError:
        raise UserError(f"--rank-epochs must be comma-separated integers, got "
                        f"{a.rank_epochs!r}") from None
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for method in a.methods.split(","):
        for kind in kinds:
            r = row(method, dataset=a.dataset, subset=a.subset, budget=a.budget,
                    n_random=a.random, train_epochs=a.train_epochs, rank_epochs=rank_epochs,
                    seed=a.seed, target_kind=kind, target=given[kind],
                    quantile=a.target_quantile, work_dir=a.work_dir,
                    data_dir=a.data_dir, progress=not a.no_progress)
            rows.append(r)
            if "failed" in r:
                print(f"\n{method} ({kind}): search failed: {r['failed']}", flush=True)
            else:
                print(f"\n{method} ({kind}): searched {r['searched_test_acc']:.4f}, random "
                      f"{r['random_mean']:.4f} ± {r['random_std']:.4f} (best "
                      f"{r['random_best']:.4f}), rank {r['rank']}/{r['of']}, search "
                      f"{r['search_s']:.0f} s, row {r['row_s']:.0f} s, τ {r['tau']}",
                      flush=True)
            if a.out:
                write_json_atomic(a.out, {"argv": sys.argv, "rows": rows,
                                          "tau": pooled_tau(rows),
                                          "wall_s": time.perf_counter() - t0}, indent=1)
    report(rows)
    return 0


def report(rows: list[dict[str, Any]]) -> None:
    print(table(rows))
    print("Kendall τ (short-ranking val acc vs full-training test acc):")
    for k, v in pooled_tau(rows).items():
        print(f"  {k} epochs: mean over rows {v['mean']:+.3f} ({v['rows']} rows), pooled "
              f"{v['pooled']:+.3f}")


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
