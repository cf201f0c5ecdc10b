"""Sample-based strategies against random search on a real tabular benchmark (NAS-Bench-Macro).

Every registered strategy, with its default options (the CLI's and the API's), is run on the
same seeds; for the top 1 % and the top 0.1 % of the table it prints the median (and the
quartiles) of the trials taken until the first architecture of that set is asked, and how many
seeds found one within ``--max-trials``. A trial is one ask, repeats included (they are answered
from the store but spend a trial, as the engine counts ``max_trials``); a seed that does not find
one counts as ``max_trials + 1`` in the median and quartiles (shown as ``>N``).

    .venv/bin/python benchmarks/tabular_strategies.py --seeds 50 [--max-trials 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from nasforge.strategies.base import STRATEGIES
from nasforge.testing.tabular import first_hits, load_table

FRACTIONS = (0.01, 0.001)


def summary(trials: list[int | None], cap: int) -> dict:
    q = np.array([t if t is not None else cap + 1 for t in trials], dtype=float)
    return {"median": float(np.median(q)), "q25": float(np.percentile(q, 25)),
            "q75": float(np.percentile(q, 75)),
            "found": int(sum(t is not None for t in trials)), "runs": len(trials)}


def fmt(x: float, cap: int) -> str:
    return f">{cap}" if x > cap else f"{x:.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50, help="seeds 0 … N-1 (same for every strategy)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--max-trials", type=int, default=1000)
    ap.add_argument("--strategies", nargs="*", default=None, help="default: every registered one")
    ap.add_argument("--table", default=None, help="path of nas-bench-macro_cifar10.json")
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    table = load_table(a.table)
    names = a.strategies or STRATEGIES.names()
    if "random" in names:  # the reference first
        names = ["random"] + [n for n in names if n != "random"]
    seeds = list(range(a.first_seed, a.first_seed + a.seeds))
    t_all = time.perf_counter()
    results: dict[str, dict] = {}
    for name in names:
        t0 = time.perf_counter()
        hits = [first_hits(name, s, list(FRACTIONS), a.max_trials, table=table) for s in seeds]
        results[name] = {
            f"top{f * 100:g}%": {**summary([h[i].trials for h in hits], a.max_trials),
                                 "per_seed": [h[i].trials for h in hits]}
            for i, f in enumerate(FRACTIONS)}
        results[name]["distinct_at_top0.1%"] = float(np.median([h[1].distinct for h in hits]))
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
    wall = time.perf_counter() - t_all

    sizes = {f: len(table.top(f)) for f in FRACTIONS}
    print(f"NAS-Bench-Macro ({len(table.acc)} architectures; top 1 % = {sizes[0.01]}, top 0.1 % "
          f"= {sizes[0.001]} incl. ties), seeds {seeds[0]}..{seeds[-1]}, at most "
          f"{a.max_trials} trials; trials until the first top architecture is asked")
    head = (f"{'strategy':<10} {'top 1%: median [IQR]':>24} {'found':>7} {'vs random':>10}   "
            f"{'top 0.1%: median [IQR]':>24} {'found':>7} {'vs random':>10} {'s':>6}")
    print(head)
    print("-" * len(head))
    ref = results.get("random")
    for name in names:
        cells = []
        for f in FRACTIONS:
            r = results[name][f"top{f * 100:g}%"]
            iqr = f"{fmt(r['median'], a.max_trials)} [{fmt(r['q25'], a.max_trials)}–" \
                  f"{fmt(r['q75'], a.max_trials)}]"
            ratio = ""
            if ref is not None and name != "random":
                ratio = f"{ref[f'top{f * 100:g}%']['median'] / r['median']:.1f}x fewer"
            cells.append(f"{iqr:>24} {r['found']:>3}/{r['runs']:<3} {ratio:>10}")
        print(f"{name:<10} {cells[0]}   {cells[1]} {results[name]['seconds']:>6.1f}")
    print(f"wall {wall:.1f} s")
    if a.json:
        print(json.dumps({"benchmark": "nas-bench-macro", "seeds": [seeds[0], seeds[-1]],
                          "max_trials": a.max_trials, "top_sizes": {f"top{f * 100:g}%": n
                                                                    for f, n in sizes.items()},
                          "results": results, "wall_s": round(wall, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
