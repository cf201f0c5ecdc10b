"""DenseNAS supernet: time of one weight step + one architecture step, and peak memory.

On CUDA: the official MobileNetV2-based 224² space at batch 88 (100 classes, as the official
search), bf16 autocast + channels_last through the shared loop — comparable with the reference
figure printed next to it. On CPU: the same code at reduced size (the 32² space, small batch).

    python benchmarks/densenas_supernet_step.py [--space NAME] [--batch N] [--steps N]
                                                [--weight-ops K] [--arch-ops K]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from nasforge.cost.loss import CostLoss
from nasforge.data import Dataset, TensorSplit
from nasforge.spaces.dense import DenseSpace
from nasforge.strategies.bilevel import SupernetConfig
from nasforge.supernets.densenas import DenseSupernet, DenseTrainer

REFERENCE = "official DenseNAS, H100, batch 88, MobileNetV2 space: 572 ms/step, 36 GB"


def synthetic(shape: tuple[int, int, int], n: int, classes: int, device: torch.device) -> Dataset:
    g = torch.Generator().manual_seed(0)

    def split() -> TensorSplit:
        return TensorSplit(torch.randn(n, *shape, generator=g),
                           torch.randint(0, classes, (n,), generator=g)).to(device)

    return Dataset("synthetic", split(), split(), split(), classes, (0.0,) * shape[0],
                   (1.0,) * shape[0])


def main() -> None:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="dense-imagenet" if cuda else "dense-cifar")
    ap.add_argument("--batch", type=int, default=88 if cuda else 16)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--steps", type=int, default=10 if cuda else 3)
    ap.add_argument("--warmup", type=int, default=3 if cuda else 1)
    ap.add_argument("--weight-ops", type=int, default=1, help="official 1; 0 = every op")
    ap.add_argument("--arch-ops", type=int, default=2, help="official 2; 0 = every op")
    args = ap.parse_args()
    dev = torch.device("cuda" if cuda else "cpu")
    space = DenseSpace(args.space)
    s = space.spec
    shape = (s.in_channels, s.input_size, s.input_size)
    data = synthetic(shape, 2 * args.batch, args.classes, dev)
    torch.manual_seed(0)
    net = DenseSupernet(space, args.classes, shape[0], cost="flops")
    cfg = SupernetConfig(epochs=2, warmup_epochs=0, batch_size=args.batch, w_lr=0.2,
                         theta_lr=3e-4, theta_betas=(0.5, 0.999), tau0=1.0, tau_decay=0.0)
    loop = DenseTrainer(net, data, cfg, CostLoss(form="additive", lam=0.15, base=15),
                        progress=False, weight_ops=args.weight_ops, arch_ops=args.arch_ops)
    net.train()
    xt, yt = data.train.x[:args.batch], data.train.y[:args.batch]
    xv, yv = data.val.x[:args.batch], data.val.y[:args.batch]

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    times = []
    for i in range(args.warmup + args.steps):
        if i == args.warmup and cuda:
            torch.cuda.reset_peak_memory_stats()
        sync()
        t0 = time.perf_counter()
        loop.weight_step(xt, yt)
        loop.arch_step(xv, yv)
        sync()
        if i >= args.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    if cuda:
        mem = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GB peak allocated " \
              f"({torch.cuda.get_device_name()})"
    else:
        mem = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB peak RSS " \
              f"(CPU, {torch.get_num_threads()} threads)"
    n_w = sum(p.numel() for p in net.weight_parameters())
    print(f"nasforge DenseNAS supernet step (weight+arch), space {args.space}, batch "
          f"{args.batch}, ops drawn {args.weight_ops}/{args.arch_ops}, {n_w / 1e6:.1f}M weights: "
          f"{ms:.0f} ms/step (median of {args.steps}), {mem}")
    print(f"reference: {REFERENCE}")
    if not cuda:
        print("(CPU run at reduced size: not comparable with the CUDA reference)")


if __name__ == "__main__":
    main()
