"""``nasforge search fbnet``: FBNet DNAS end to end (METHODS §1).

LUT (cached per device) → supernet with Gumbel mixed ops and the latency-aware loss → θ/w
bilevel loop → argmax + K samples from P_θ (shrunk to meet a target if asked) → ranked from
scratch → best trained, exported, measured.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from nasforge.arch import Arch
from nasforge.cost.loss import CostLoss
from nasforge.cost.lut import LatencyTable, load_or_build
from nasforge.cost.tables import CostTables
from nasforge.data.batches import default_batch_size
from nasforge.errors import UserError
from nasforge.methods.common import (
    Finish,
    SearchSettings,
    add_common_arguments,
    finish,
    rng_for,
    settings_from_args,
    setup,
    space_name_for,
)
from nasforge.run.rundir import RunDir
from nasforge.spaces.fbnet import SKELETONS, FBNetSpace, cost_tables
from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer
from nasforge.supernets.fbnet import FBNetSupernet


@dataclass
class FBNetSettings(SearchSettings):
    space: str = "auto"  # auto: fbnet-fmnist for 28×28 inputs, fbnet-cifar for 32×32
    loss: str = "paper"  # paper | seed
    alpha: float = 0.2
    beta: float = 0.6
    cost: str = "latency"  # latency (LUT µs) | flops (kMACs)
    warmup_epochs: int | None = None
    alternate: str = "step"
    single_path: bool = False
    w_lr: float = 0.1
    theta_lr: float = 0.01
    tau0: float = 5.0
    tau_decay: float = 0.045


def space_for(name: str, input_shape: tuple[int, int, int]) -> FBNetSpace:
    sizes = {n: SKELETONS.get(n).input_size for n in SKELETONS.names()}
    return FBNetSpace(space_name_for(name, input_shape, "fbnet", SKELETONS.names(), sizes))


def shrink_to_target(arch: Arch, space: FBNetSpace, tables: CostTables, theta: torch.Tensor,
                     s: SearchSettings, lat_ms) -> Arch:  # noqa: ANN001
    """Greedily replace blocks until ``arch`` meets the targets, each time taking the change
    that saves the most (relative) cost per unit of log P_θ lost."""
    logp = torch.log_softmax(theta.detach().float().cpu(), -1).numpy()
    blocks = list(arch.genes)

    def violation(b: list[str]) -> float:
        v = 0.0
        if s.flops is not None:
            v += max(0.0, tables.arch_macs(b) / s.flops - 1)
        if s.params is not None:
            v += max(0.0, tables.arch_params(b) / s.params - 1)
        if s.latency_ms is not None and lat_ms is not None:
            v += max(0.0, lat_ms(b) / s.latency_ms - 1)
        return v

    for _ in range(10 * len(blocks)):
        cur = violation(blocks)
        if cur == 0.0:
            return space.arch(blocks)
        best, best_score = None, -np.inf
        for li in range(len(blocks)):
            ci = space.candidates.index(blocks[li])
            for cj, c in enumerate(space.candidates):
                if cj == ci:
                    continue
                trial = blocks[:li] + [c] + blocks[li + 1:]
                gain = cur - violation(trial)
                if gain <= 0:
                    continue
                score = gain / (logp[li, ci] - logp[li, cj] + 1e-3)
                if score > best_score:
                    best, best_score = trial, score
        if best is None:
            break
        blocks = best
    if violation(blocks) == 0.0:
        return space.arch(blocks)
    raise UserError("the target cannot be met by any architecture of this space (even the "
                    "cheapest blocks exceed it); relax --latency-ms/--flops/--params")


def run(s: FBNetSettings, rd: RunDir) -> dict:
    dev, data = setup(s)
    space = space_for(s.space, data.input_shape)
    in_ch = data.input_shape[0]
    tables, items = cost_tables(space, data.num_classes, in_ch)
    lut: LatencyTable | None = None
    if s.cost == "latency" or s.latency_ms is not None:
        # a resumed run reuses its own table, so it continues with exactly the same costs
        own = rd.file("lut.json")
        lut = load_or_build(space.name, items, target=s.target, threads=s.threads,
                            path=own if own.is_file() else s.lut, progress=s.progress)
        lut.save(own)
    if s.cost == "latency":
        cost_m, fixed = tables.latency_matrix(lut)  # type: ignore[arg-type]
    elif s.cost == "flops":
        cost_m, fixed = tables.macs_matrix()
    else:
        raise UserError(f"--cost must be latency or flops, got {s.cost!r}")
    torch.manual_seed(s.seed)
    net = FBNetSupernet(space, data.num_classes, in_ch, cost_m)
    net.fixed_cost.fill_(fixed)
    cfg = SupernetConfig(
        epochs=s.epochs or 90,
        warmup_epochs=(s.warmup_epochs if s.warmup_epochs is not None
                       else round(s.epochs / 9) if s.epochs else 10),  # paper: 10 of 90
        batch_size=s.batch_size or default_batch_size(len(data.train), cap=192),
        w_lr=s.w_lr, theta_lr=s.theta_lr, tau0=s.tau0,
        tau_decay=s.tau_decay, alternate=s.alternate, hard=s.single_path, budget_s=s.budget,
    )
    loss = CostLoss(form=s.loss, alpha=s.alpha, beta=s.beta)

    def log_arch(n: FBNetSupernet) -> dict:
        return {"p_theta": n.probabilities().cpu().tolist()}

    loop = SupernetTrainer(net, data, cfg, loss, seed=s.seed,
                           checkpoint=rd.file("supernet.ckpt"), progress=s.progress,
                           log_arch=log_arch)
    loop.resume()
    st = loop.fit()

    def lat_ms_blocks(blocks: list[str]) -> float:
        return tables.latency_us(lut, blocks) / 1000.0  # type: ignore[arg-type]

    lat_ms = lat_ms_blocks if lut is not None else None
    argmax = net.derive()
    samples = net.sample_archs(s.samples, rng_for(s.seed, 1))
    cands = []
    for a in [argmax, *samples]:
        cands.append(shrink_to_target(a, space, tables, net.theta, s, lat_ms))
    rd.write_json("search.json", {"history": st.history, "argmax": argmax.genes,
                                  "samples": [a.genes for a in samples],
                                  "theta": net.theta.detach().cpu().tolist()})
    return finish(s, rd, data, Finish(
        space=space, candidates=cands,
        predict_latency_ms=(lambda a: lat_ms(list(a.genes))) if lat_ms else None,
        search_seconds=st.elapsed_s, search_epochs=st.epoch,
    ))


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    a = p.add_argument
    a("--space", default="auto", help=f"skeleton: auto | {' | '.join(SKELETONS.names())}")
    a("--loss", default="paper", choices=["paper", "seed"],
      help="paper: CE·α·log(LAT)^β (default); seed: α·CE·β·log(LAT)")
    a("--alpha", type=float, default=0.2)
    a("--beta", type=float, default=0.6)
    a("--cost", default="latency", choices=["latency", "flops"], help="cost in the loss")
    a("--warmup-epochs", type=int, default=None, help="w-only epochs (paper: 10 of 90)")
    a("--alternate", default="step", choices=["step", "epoch"], help="alternate w/θ by")
    a("--single-path", action="store_true", help="hard Gumbel: run one block per layer")
    a("--w-lr", type=float, default=0.1)
    a("--theta-lr", type=float, default=0.01)
    a("--tau0", type=float, default=5.0)
    a("--tau-decay", type=float, default=0.045)


def main(args: argparse.Namespace) -> dict:
    s, rd = settings_from_args(FBNetSettings, "fbnet", args)
    assert isinstance(s, FBNetSettings)
    return run(s, rd)

