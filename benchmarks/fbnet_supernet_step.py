"""FBNet supernet step: one w step + one θ step, time and peak memory.

Reference (public implementation, H100): 22 layers × 9 blocks, 224×224, batch 192 →
1698 ms and 67.8 GB per (w + θ) step. nasforge's loop (bf16 autocast, channels_last, fused
optimizers, no host sync) is timed on the same space and batch on CUDA; on CPU a reduced
size is run so the script still prints comparable soft vs single-path figures.

    python benchmarks/fbnet_supernet_step.py            # CUDA: paper size; CPU: reduced
    python benchmarks/fbnet_supernet_step.py --batch 192 --size 224 --steps 5
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from nasforge.cost.loss import CostLoss
from nasforge.data import Dataset, TensorSplit
from nasforge.spaces.fbnet import FBNetSpace, cost_tables
from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer
from nasforge.supernets.fbnet import FBNetSupernet

REF_MS, REF_GB = 1698.0, 67.8


def run(mode: str, batch: int, size: int, steps: int, device: torch.device) -> dict:
    sp = FBNetSpace("fbnet-imagenet")
    tables, _ = cost_tables(sp, 1000, 3)
    cost, fixed = tables.macs_matrix()
    torch.manual_seed(0)
    net = FBNetSupernet(sp, 1000, 3, cost)
    net.fixed_cost.fill_(fixed)
    x = torch.randn(batch * 2, 3, size, size, device=device)
    y = torch.randint(0, 1000, (batch * 2,), device=device)
    data = Dataset("synthetic", TensorSplit(x[:batch], y[:batch]), TensorSplit(x[batch:],
                   y[batch:]), TensorSplit(x[:1], y[:1]), 1000, (0.0,) * 3, (1.0,) * 3)
    cfg = SupernetConfig(epochs=2, warmup_epochs=0, batch_size=batch, hard=(mode == "single"))
    tr = SupernetTrainer(net, data, cfg, CostLoss("paper"), progress=False)
    xt, yt = tr._get("train", torch.arange(batch))
    xv, yv = tr._get("val", torch.arange(batch))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        tr.weight_step(xt, yt)
        tr.arch_step(xv, yv)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # warm-up steps excluded
            times.append((time.perf_counter() - t0) * 1e3)
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else float("nan")
    return {"mode": mode, "ms": sorted(times)[len(times) // 2], "peak_gb": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    cuda = torch.cuda.is_available()
    ap.add_argument("--batch", type=int, default=192 if cuda else 4)
    ap.add_argument("--size", type=int, default=224 if cuda else 64)
    ap.add_argument("--steps", type=int, default=5 if cuda else 2)
    args = ap.parse_args()
    dev = torch.device("cuda" if cuda else "cpu")
    rows = [run(m, args.batch, args.size, args.steps, dev) for m in ("soft", "single")]
    paper = args.batch == 192 and args.size == 224 and cuda
    print(f"FBNet supernet 22x9, {args.size}x{args.size}, batch {args.batch}, {dev.type}"
          + ("" if paper else "  (reduced size: ratios to the H100 reference are not comparable)"))
    print(f"{'mode':8s} {'ms/step':>10s} {'peak GB':>9s} {'speed-up':>9s} {'mem ratio':>9s}")
    print(f"{'ref':8s} {REF_MS:10.1f} {REF_GB:9.1f} {'1.00x':>9s} {'1.00':>9s}")
    for r in rows:
        print(f"{r['mode']:8s} {r['ms']:10.1f} {r['peak_gb']:9.2f} "
              f"{REF_MS / r['ms']:8.2f}x {r['peak_gb'] / REF_GB:9.2f}")
    print(json.dumps({"batch": args.batch, "size": args.size, "device": dev.type, "rows": rows}))


if __name__ == "__main__":
    main()
