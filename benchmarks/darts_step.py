"""DARTS search step: one weight step + one architecture step, first and second order.

The paper's search settings (METHODS.md §6): the ``darts-cifar`` supernet (8 cells, 16 initial
channels, all 8 candidates on each of 14 edges), batch 64, 32×32×3 inputs; the step is the
bilevel loop's own ``weight_step`` + ``arch_step`` (``strategies/bilevel.py``; second order:
``strategies/darts_step.py``). Prints ms/step (median), images/s (the batch over the step),
peak memory (CUDA: allocated; CPU: the process's peak RSS) and the CPU seconds per step (the
process's, which other processes on a shared machine disturb less than the wall clock).

Reference (issue 12): a widely used PyTorch DARTS reimplementation takes 669 / 2279 ms (first /
second order) on an H100 at batch 64, and 2856 / 6142 ms on this 2-core CPU at batch 8 with 2
threads; nasforge's targets: ≤ 90 / ≤ 300 ms there, ≤ half (1428 / 3071 ms) here.

    python benchmarks/darts_step.py                      # batch 64 (CPU: also batch 8)
    python benchmarks/darts_step.py --batch 8 --json     # one JSON line
    python benchmarks/darts_step.py --batch 8 --ablate   # the plain sum and each speed-up off
    flock /tmp/nasforge-bench.lock python benchmarks/darts_step.py --batch 8 --threads 2

``--ablate`` times the plain ``MixedOp`` sum, every :class:`FastPath` switch off in turn and
all of them on (``supernets/darts.py``), so the note can say what each bought.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import time
from typing import Any

import torch

from nasforge.cost.loss import CostLoss
from nasforge.data import Dataset, TensorSplit
from nasforge.spaces.darts import DartsSpace
from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer
from nasforge.supernets.darts import DartsSupernet, FastPath, set_fast

REF_CPU_MS = {1: 2856.0, 2: 6142.0}  # batch 8, 2 threads, this CPU
REF_H100_MS = {1: 669.0, 2: 2279.0}  # batch 64
SWITCHES = ("skip_none", "shared_relu", "box_avg", "fold_bn", "channels_last",
            "space_to_batch", "share_sources")


def step_time(order: int, batch: int, steps: int, device: torch.device,
              fast: FastPath, compile_: bool = False) -> dict[str, Any]:
    """Median wall and CPU ms of ``steps`` (w + α) steps after one warm-up step."""
    torch.manual_seed(0)
    net = DartsSupernet(DartsSpace("darts-cifar"), 10, 3)
    set_fast(net, fast)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2 * batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (2 * batch,), generator=g).to(device)
    data = Dataset("synthetic", TensorSplit(x[:batch], y[:batch]),
                   TensorSplit(x[batch:], y[batch:]), TensorSplit(x[:1], y[:1]), 10,
                   (0.0,) * 3, (1.0,) * 3)
    extra = {"compile": True} if compile_ else {}
    cfg = SupernetConfig(epochs=2, warmup_epochs=0, batch_size=batch, w_lr=0.025,
                         w_momentum=0.9, w_weight_decay=3e-4, theta_lr=3e-4,
                         theta_betas=(0.5, 0.999), theta_weight_decay=1e-3, tau0=1.0,
                         tau_schedule="constant", arch_order=order, grad_clip=5.0, **extra)
    tr = SupernetTrainer(net, data, cfg, CostLoss(form="none"), progress=False)
    xt, yt, xv, yv = x[:batch], y[:batch], x[batch:], y[batch:]
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    wall, cpu = [], []
    for i in range(steps + 1):
        if cuda:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        tr.weight_step(xt, yt)
        tr.arch_step(xv, yv)
        if cuda:
            torch.cuda.synchronize()
        if i:  # the first step (allocations, kernel selection) is not timed
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
    ms = statistics.median(wall)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"order": order, "batch": batch, "ms": ms, "cpu_ms": statistics.median(cpu),
            "images_per_s": batch / (ms / 1e3), "peak_mb": peak,
            "peak_kind": "cuda allocated" if cuda else "process peak RSS"}


def variants(ablate: bool) -> dict[str, FastPath]:
    if not ablate:
        return {"fast": FastPath()}
    out = {"plain": FastPath.plain()}
    out.update({f"no {s}": dataclasses.replace(FastPath(), **{s: False}) for s in SWITCHES})
    out["fast"] = FastPath()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    ap.add_argument("--batch", type=int, default=None,
                    help="batch size (default: 64; on the CPU 64 and 8)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
    ap.add_argument("--order", type=int, choices=(1, 2), default=None,
                    help="only this order (default: both)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--ablate", action="store_true",
                    help="time the plain sum and each fast-path switch off")
    ap.add_argument("--compile", action="store_true", help="torch.compile the supernet")
    ap.add_argument("--json", action="store_true", help="print one JSON line only")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if cuda else "cpu")
    batches = [args.batch] if args.batch else ([64] if cuda else [64, 8])
    orders = [args.order] if args.order else [1, 2]
    load = os.getloadavg()[0]
    rows = []
    for b in batches:
        for name, fast in variants(args.ablate).items():
            for o in orders:
                r = step_time(o, b, args.steps, dev, fast, args.compile)
                r["variant"] = name
                rows.append(r)
                if not args.json:
                    print(f"batch {b:3d} order {o} {name:18s} {r['ms']:9.1f} ms/step "
                          f"(cpu {r['cpu_ms']:9.1f} ms) {r['images_per_s']:8.1f} img/s "
                          f"peak {r['peak_mb']:8.1f} MB ({r['peak_kind']})", flush=True)
    fast_rows = {(r["batch"], r["order"]): r for r in rows if r["variant"] == "fast"}
    b0 = batches[-1]
    summary = {"device": dev.type, "threads": torch.get_num_threads(), "batch": b0,
               "load_avg_1min_start": load, "load_avg_1min_end": os.getloadavg()[0],
               "torch": torch.__version__, "compile": args.compile}
    for o in orders:
        r = fast_rows.get((b0, o))
        if r is not None:
            key = "first_order" if o == 1 else "second_order"
            summary[f"{key}_ms"] = round(r["ms"], 1)
            summary[f"{key}_cpu_ms"] = round(r["cpu_ms"], 1)
            summary[f"{key}_images_per_s"] = round(r["images_per_s"], 2)
            summary[f"{key}_peak_mb"] = round(r["peak_mb"], 1)
    if args.ablate:
        summary["ablation"] = [{k: r[k] for k in ("variant", "batch", "order", "ms", "cpu_ms")}
                               for r in rows]
    if not args.json:
        ref = REF_H100_MS if cuda else REF_CPU_MS
        where = "H100, batch 64" if cuda else "this CPU, batch 8, 2 threads"
        for o in orders:
            r = fast_rows.get((b0, o))
            if r is not None:
                print(f"order {o}: {r['ms']:.1f} ms vs reference {ref[o]:.0f} ms ({where}): "
                      f"{ref[o] / r['ms']:.2f}x")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
