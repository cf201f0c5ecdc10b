"""Supernet step: ms per (w step + θ step), images/s and peak memory, for every supernet.

One script for every registered supernet (fbnet, dmasking = FBNetV2, densenas, darts), built
through the supernets registry and stepped by the shared loop (``SupernetTrainer``). The two
comparison configurations of issue 11 run by name:

- ``fbnet-22x9-32-b32``: FBNet 22 layers × 9 blocks (``fbnet-imagenet`` skeleton) at 32², batch
  32, 10 classes, soft (every block), the seed's loss form; a w step + a θ step;
- ``densenas-224-b4``: the MobileNetV2 DenseNAS space at 224², batch 4, 1,000 classes, the
  official op sampling (1 op drawn per slot for w, 2 for θ).

``--ablate`` times the plain step (every optimisation off: the step as it was before, with
the gradient clip at 5) and then each optimisation switched on in turn, interleaved round by
round so that a loaded machine slows every variant alike; the last row is the library's
default. images/s counts the images of both steps (2 × batch per step); CPU ms is the
process's CPU time per step (steadier than wall time on a loaded machine; with one thread,
close to the unloaded wall time). Peak memory: CUDA's
peak allocated bytes; on CPU the peak tensor bytes a step creates
(:func:`nasforge.testing.memory.peak_tensor_bytes`, parameters and data excluded).

    python benchmarks/supernet_step.py --config fbnet-22x9-32-b32 --ablate
    python benchmarks/supernet_step.py --config densenas-224-b4 --json
    python benchmarks/supernet_step.py --supernet dmasking --size 32 --batch 16 --mode soft
    python benchmarks/supernet_step.py --supernet all --size 32 --batch 8 --rounds 3
    python benchmarks/supernet_step.py --supernet fbnet --space fbnet-fmnist --size 28 \
        --batch 32 --nproc 1 2

``--nproc N`` (one or more values) times the data-parallel step (:mod:`nasforge.distributed`,
gloo on CPU, NCCL on CUDA, 127.0.0.1): N processes, ``--batch`` the global batch (each rank
batch/N), the w and θ gradients all-reduced. ``--threads`` is then the CPU threads of the whole
job (each rank gets threads/N, at least 1). Per rank: ms/step (median), the step's peak tensor
memory and the process's peak RSS; the job's ms/step is the slowest rank's. With several
values the first is the base of the speed-up (t_base / t_N) and the scaling efficiency
(speed-up × base / N).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from nasforge import distributed
from nasforge.cost.loss import CostLoss
from nasforge.cost.model import CostModel
from nasforge.data import Dataset, TensorSplit
from nasforge.errors import UserError
from nasforge.spaces.registry import get_space
from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer
from nasforge.supernets.registry import SUPERNETS
from nasforge.testing.memory import peak_tensor_bytes

MODES = ("soft", "single", "official", "all")


@dataclass(frozen=True)
class Case:
    supernet: str
    space: str
    size: int
    batch: int
    classes: int
    mode: str  # soft | single (hard Gumbel) | official / all (DenseNAS: 1/2 ops drawn, or all)
    loss: str


CONFIGS = {
    "fbnet-22x9-32-b32": Case("fbnet", "fbnet-imagenet", 32, 32, 10, "soft", "seed"),
    "densenas-224-b4": Case("densenas", "dense-imagenet", 224, 4, 1000, "official", "additive"),
}
#: each supernet's space, input size and loss when only ``--supernet`` is given
DEFAULTS = {
    "fbnet": ("fbnet-imagenet", 32, "seed"),
    "dmasking": ("fbnetv2-cifar", 32, "paper"),
    "densenas": ("dense-imagenet", 224, "additive"),
    "darts": ("darts-cifar", 32, "none"),
}


@dataclass(frozen=True)
class Flags:
    """One variant of the step; :data:`PLAIN` is the step before the optimisations."""

    clip: bool = False  # gradient-norm clip 5 (the old default; DARTS keeps its paper's)
    exclusive: bool = True  # θ step builds no w gradients, w step no θ gradients
    batched: bool = True  # candidate ops sharing an input run batched
    # None: the library's default (CUDA; on the CPU the supernet's cpu_channels_last)
    channels_last: bool | None = None
    compile: bool = False
    amp: bool = True  # bf16 autocast (CUDA only)


PLAIN = Flags(clip=True, exclusive=False, batched=False, channels_last=False, amp=False)
#: (label, change) applied cumulatively by --ablate, after the plain step
STEPS = [("gradient clip off (the paper's)", {"clip": False}),
         ("+ exclusive gradients", {"exclusive": True}),
         ("+ batched candidate ops", {"batched": True}),
         ("+ channels_last", {"channels_last": True}),
         ("+ bf16 autocast", {"amp": True})]


def case_from_args(a: argparse.Namespace, supernet: str) -> Case:
    if a.config:
        c = CONFIGS[a.config]
        return replace(c, **{k: v for k, v in (("size", a.size), ("batch", a.batch),
                                               ("classes", a.classes), ("mode", a.mode))
                             if v is not None})
    if supernet not in DEFAULTS:
        raise UserError(f"unknown supernet {supernet!r}; choose from {sorted(DEFAULTS)} or all")
    space, size, loss = DEFAULTS[supernet]
    mode = a.mode or ("official" if supernet == "densenas" else "soft")
    return Case(supernet, a.space or space, a.size or size, a.batch or 8, a.classes or 10,
                mode, loss)


def _data(shape: tuple[int, ...], batch: int, classes: int, device: torch.device) -> Dataset:
    g = torch.Generator().manual_seed(0)

    def split() -> TensorSplit:
        return TensorSplit(torch.randn(batch, *shape, generator=g),
                           torch.randint(0, classes, (batch,), generator=g)).to(device)

    return Dataset("synthetic", split(), split(), split(), classes, (0.0,) * shape[0],
                   (1.0,) * shape[0])


def build(case: Case, device: torch.device) -> tuple[torch.nn.Module, Dataset]:
    """The supernet of ``case`` (weights seeded, cost = counted kMACs) and its data."""
    if case.mode not in MODES:
        raise UserError(f"unknown --mode {case.mode!r}; choose from {list(MODES)}")
    space = get_space(case.space)
    shape = (space.default_io[0], case.size, case.size)
    cm = CostModel(space, case.classes, shape, kind="flops")
    torch.manual_seed(0)
    net = SUPERNETS.get(case.supernet).build(space, cm)
    if case.supernet == "densenas":
        net.set_op_sampling(*((1, 2) if case.mode == "official" else (0, 0)))
    return net, _data(shape, case.batch, case.classes, device)


def trainer(net: torch.nn.Module, data: Dataset, case: Case, f: Flags,
            dist: distributed.Context = distributed.SINGLE) -> SupernetTrainer:
    """The shared loop over a copy of ``net`` with the switches of ``f``."""
    net = copy.deepcopy(net)
    if hasattr(net, "batched"):
        net.batched = f.batched
    kw: dict[str, Any] = {}
    if case.supernet == "densenas":  # the official loop values
        kw = dict(w_lr=0.2, w_weight_decay=4e-5, theta_lr=3e-4, theta_weight_decay=1e-3,
                  theta_betas=(0.5, 0.999), tau0=1.0, tau_schedule="constant")
    clip = 5.0 if (f.clip or case.supernet == "darts") else None
    cfg = SupernetConfig(epochs=2, warmup_epochs=0, batch_size=case.batch,
                         hard=case.mode == "single", grad_clip=clip, amp=f.amp,
                         exclusive_grads=f.exclusive, channels_last=f.channels_last,
                         compile=f.compile, **kw)
    return SupernetTrainer(net, data, cfg, CostLoss(form=case.loss), progress=False,
                           dist=dist)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step(tr: SupernetTrainer) -> None:
    d = tr.data
    if tr.dist.active:  # this rank's shard of the global batch
        tr.weight_step(*tr._get("train", torch.arange(len(d.train.y))))
        tr.arch_step(*tr._get("val", torch.arange(len(d.val.y))))
        return
    tr.weight_step(d.train.x, d.train.y)
    tr.arch_step(d.val.x, d.val.y)


def peak_mb(tr: SupernetTrainer) -> float:
    dev = tr.device
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(tr)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    return peak_tensor_bytes(lambda: step(tr)) / 2**20


def measure(case: Case, variants: list[tuple[str, Flags]], device: torch.device, rounds: int,
            warmup: int, memory: bool = True,
            dist: distributed.Context = distributed.SINGLE) -> list[dict[str, Any]]:
    """Median ms per step of each variant, the variants interleaved round by round."""
    net, data = build(case, device)
    trs = [trainer(net, data, case, f, dist) for _, f in variants]
    for tr in trs:
        tr.net.train()
    times: list[list[float]] = [[] for _ in trs]
    cpu: list[list[float]] = [[] for _ in trs]
    for r in range(warmup + rounds):
        for i, tr in enumerate(trs):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            step(tr)
            _sync(device)
            if r >= warmup:
                times[i].append((time.perf_counter() - t0) * 1e3)
                cpu[i].append((time.process_time() - c0) * 1e3)
    rows = []
    for (label, f), tr, ts, cs in zip(variants, trs, times, cpu):
        ms = statistics.median(ts)
        rows.append({"label": label, "flags": asdict(f), "ms_per_step": round(ms, 2),
                     "cpu_ms_per_step": round(statistics.median(cs), 2),
                     "images_per_s": round(2 * case.batch / (ms / 1e3), 2),
                     "peak_memory_mb": round(peak_mb(tr), 1) if memory else None,
                     "rounds": len(ts), "min_ms": round(min(ts), 2),
                     "max_rss_mb": round(_max_rss_mb(), 1)})
    return rows


def _max_rss_mb() -> float:
    """This process's peak resident set (Linux: ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rank(case: Case, device: str, rounds: int, warmup: int, memory: bool, out: str) -> None:
    """One rank of ``--nproc``: the default step on this rank's shard; its row to ``out``."""
    dev = torch.device(device)
    ctx = distributed.init(dev)
    if dev.type == "cuda":
        dev = torch.device("cuda", ctx.local_rank)
    row = measure(case, [("default", Flags())], dev, rounds, warmup, memory, ctx)[0]
    with open(f"{out}/rank{ctx.rank}.json", "w", encoding="utf-8") as f:
        json.dump({**row, "rank": ctx.rank, "threads": torch.get_num_threads()}, f)


def measure_parallel(case: Case, nproc: int, device: torch.device, threads: int, rounds: int,
                     warmup: int, memory: bool) -> dict[str, Any]:
    """The data-parallel step on ``nproc`` ranks: each rank's row and the job's ms/step."""
    import tempfile

    if case.batch % nproc:
        raise UserError(f"--batch {case.batch} is not divisible by --nproc {nproc}")
    with tempfile.TemporaryDirectory() as out:
        distributed.launch(nproc, _rank, (case, device.type, rounds, warmup, memory, out),
                           threads=max(1, threads // nproc))
        ranks = [json.load(open(f"{out}/rank{r}.json", encoding="utf-8"))
                 for r in range(nproc)]
    ms = max(r["ms_per_step"] for r in ranks)
    return {"nproc": nproc, "ms_per_step": ms,
            "images_per_s": round(2 * case.batch / (ms / 1e3), 2),
            "threads_per_rank": ranks[0]["threads"],
            "peak_memory_mb": [r["peak_memory_mb"] for r in ranks],
            "max_rss_mb": [r["max_rss_mb"] for r in ranks],
            "rank_ms_per_step": [r["ms_per_step"] for r in ranks]}


def main_parallel(a: argparse.Namespace, device: torch.device) -> int:
    """``--nproc N…``: the step on each N, speed-up and scaling efficiency against the first."""
    if a.ablate or a.compile or a.supernet == "all":
        raise UserError("--nproc times the default step of one supernet: drop --ablate, "
                        "--compile and --supernet all")
    case = case_from_args(a, a.config or a.supernet)
    load0 = os.getloadavg()
    rows = [measure_parallel(case, n, device, a.threads, a.rounds, a.warmup, not a.no_memory)
            for n in a.nproc]
    base = rows[0]
    for r in rows:
        r["speedup"] = round(base["ms_per_step"] / r["ms_per_step"], 3)
        r["efficiency"] = round(r["speedup"] * base["nproc"] / r["nproc"], 3)
    load1 = os.getloadavg()
    if a.json:
        for r in rows:
            print(json.dumps({"case": asdict(case), "device": device.type,
                              "threads_total": a.threads,
                              "load_before": [round(v, 2) for v in load0],
                              "load_after": [round(v, 2) for v in load1], **r}))
        return 0
    print(f"{case.supernet}: {case.space} {case.size}², global batch {case.batch}, "
          f"{case.classes} classes, {case.mode}; {device.type}, {a.threads} threads in all, "
          f"median of {a.rounds} rounds; load {load0[0]:.1f} → {load1[0]:.1f}")
    print(f"  {'nproc':>5s} {'ms/step':>9s} {'img/s':>8s} {'speed-up':>9s} {'effic.':>7s} "
          f"{'threads/rank':>12s}  step peak MB / peak RSS MB per rank")
    for r in rows:
        mem = ", ".join(f"{m if m is not None else '-'} / {rss:.0f}"
                        for m, rss in zip(r["peak_memory_mb"], r["max_rss_mb"]))
        print(f"  {r['nproc']:5d} {r['ms_per_step']:9.1f} {r['images_per_s']:8.1f} "
              f"{r['speedup']:8.2f}× {r['efficiency']:7.2f} {r['threads_per_rank']:12d}  {mem}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(CONFIGS))
    ap.add_argument("--supernet", default="fbnet", help=f"{sorted(DEFAULTS)} or all")
    ap.add_argument("--space", help="a registered space of that supernet")
    ap.add_argument("--size", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--classes", type=int)
    ap.add_argument("--mode", choices=MODES)
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--ablate", action="store_true",
                    help="plain step, then each optimisation on in turn (interleaved)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory step")
    ap.add_argument("--json", action="store_true", help="one JSON line per case")
    ap.add_argument("--nproc", type=int, nargs="+",
                    help="data-parallel processes (one or more values: 1 2)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if a.nproc:
        try:
            return main_parallel(a, device)
        except UserError as e:
            print(f"supernet_step: {e}", file=sys.stderr)
            return 2
    load0 = os.getloadavg()
    # a named config labels its line (its own supernet, not the --supernet default)
    names = [a.config] if a.config else sorted(DEFAULTS) if a.supernet == "all" else [a.supernet]
    for name in names:
        case = case_from_args(a, name)
        default = Flags()
        variants: list[tuple[str, Flags]] = []
        if a.ablate:
            variants.append(("plain (before)", PLAIN))
            f = PLAIN
            for label, change in STEPS:
                if "amp" in change and device.type != "cuda":
                    continue
                f = replace(f, **change)
                variants.append((label, f))
        variants.append(("default", default))
        if a.compile:
            variants.append(("default + torch.compile", replace(default, compile=True)))
        try:
            rows = measure(case, variants, device, a.rounds, a.warmup, not a.no_memory)
        except UserError as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 2
        out = {"case": asdict(case), "device": device.type, "threads": a.threads,
               "load_before": [round(v, 2) for v in load0],
               "load_after": [round(v, 2) for v in os.getloadavg()], **rows[-1 - a.compile]}
        if a.json:
            if a.ablate or a.compile:
                out["variants"] = rows
            print(json.dumps(out))
            continue
        print(f"{name}: {case.space} {case.size}², batch {case.batch}, {case.classes} classes, "
              f"{case.mode}; {device.type}, {a.threads} threads, median of {a.rounds} "
              f"interleaved rounds; load {out['load_before'][0]:.1f} → "
              f"{out['load_after'][0]:.1f}")
        base = rows[0]["ms_per_step"]
        prev = base
        print(f"  {'variant':34s} {'ms/step':>9s} {'img/s':>8s} {'peak MB':>8s} "
              f"{'vs prev':>8s} {'vs first':>8s} {'CPU ms':>9s}")
        for r in rows:
            ms = r["ms_per_step"]
            mem = "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"
            print(f"  {r['label']:34s} {ms:9.1f} {r['images_per_s']:8.1f} {mem:>8s} "
                  f"{prev / ms:7.2f}× {base / ms:7.2f}× {r['cpu_ms_per_step']:9.1f}")
            prev = ms
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
