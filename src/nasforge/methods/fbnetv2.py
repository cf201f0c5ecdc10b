"""``nasforge search fbnetv2``: DMaskingNAS end to end (METHODS §2).

(LUT at every option combination, cached per device, when latency is involved) → masking
supernet with the effective-shape cost in the loss → θ/w bilevel loop with τ decaying to
near one-hot → the argmax (+ ``--samples`` K draws from P_θ, default 0), each shrunk
greedily (cheapest loss of log P_θ per unit of cost saved) until it meets
``--flops``/``--params``/``--latency-ms`` → ranked from scratch when several → best trained,
exported, measured (the shared finish stage).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from nasforge.arch import Arch
from nasforge.cost.loss import CostLoss
from nasforge.cost.lut import load_or_build
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
from nasforge.spaces.masking import SKELETONS, MaskingSpace
from nasforge.strategies.bilevel import SupernetConfig
from nasforge.supernets.dmasking import DMaskingSupernet, DMaskingTrainer, latency_tensors


@dataclass
class FBNetV2Settings(SearchSettings):
    space: str = "auto"  # auto: fbnetv2-fmnist (28²), fbnetv2-cifar (32²), fbnetv2-imagenet
    cost: str = "auto"  # auto: latency with --latency-ms, params with --params, else flops
    loss: str = "paper"  # paper | seed | additive
    alpha: float = 0.2
    beta: float = 0.6
    warmup_epochs: int | None = None
    alternate: str = "step"
    single_path: bool = False
    w_lr: float = 0.1
    theta_lr: float = 0.01
    tau0: float = 5.0
    tau_end: float = 0.1

    def cost_kind(self) -> str:
        if self.cost != "auto":
            return self.cost
        if self.latency_ms is not None:
            return "latency"
        return "params" if self.params is not None and self.flops is None else "flops"


def space_for(name: str, input_shape: tuple[int, int, int]) -> MaskingSpace:
    sizes = {n: SKELETONS.get(n).input_size for n in SKELETONS.names()}
    return MaskingSpace(space_name_for(name, input_shape, "fbnetv2", SKELETONS.names(), sizes))


def violation(cost: dict[str, float], s: SearchSettings) -> float:
    v = 0.0
    if s.flops is not None:
        v += max(0.0, cost["macs"] / s.flops - 1)
    if s.params is not None:
        v += max(0.0, cost["params"] / s.params - 1)
    if s.latency_ms is not None:
        v += max(0.0, cost["latency_us"] / 1e3 / s.latency_ms - 1)
    return v


def shrink_to_target(arch: Arch, net: DMaskingSupernet, s: SearchSettings) -> Arch:
    """Greedily move single decisions to other options until ``arch`` meets the targets, each
    time taking the move that removes the most violation per unit of log P_θ lost."""
    space = net.space
    logp = [np.log(np.maximum(p, 1e-12)) for p in net.probabilities()]
    idx = space.indices(arch)
    cur = violation(net.arch_cost(arch), s)
    for _ in range(10 * len(idx)):
        if cur == 0.0:
            break
        best, best_score, best_v = None, -np.inf, cur
        for d, (_, opts) in enumerate(space.decisions()):
            for j in range(len(opts)):
                if j == idx[d]:
                    continue
                trial = idx[:d] + [j] + idx[d + 1:]
                v = violation(net.arch_cost(space.arch_from_indices(trial)), s)
                gain = cur - v
                if gain <= 0:
                    continue
                score = gain / (logp[d][idx[d]] - logp[d][j] + 1e-3)
                if score > best_score:
                    best, best_score, best_v = trial, score, v
        if best is None:
            break
        idx, cur = best, best_v
    if cur > 0.0:
        raise UserError("the target cannot be met by any architecture of this space (even the "
                        "smallest options exceed it); relax --flops/--params/--latency-ms")
    return space.arch_from_indices(idx)


def run(s: FBNetV2Settings, rd: RunDir) -> dict:
    _, data = setup(s)
    space = space_for(s.space, data.input_shape)
    in_ch, nc = data.input_shape[0], data.num_classes
    kind = s.cost_kind()
    lat = None
    if kind == "latency" or s.latency_ms is not None:
        lut = load_or_build(space.name, space.lut_items(nc, in_ch), target=s.target,
                            threads=s.threads, path=s.lut, progress=s.progress)
        rd.write_json("lut.json", lut.to_dict())
        lat = latency_tensors(space, lut, nc, in_ch)
    torch.manual_seed(s.seed)
    net = DMaskingSupernet(space, nc, in_ch, cost=kind, latency=lat)
    epochs = s.epochs or 90
    cfg = SupernetConfig(
        epochs=epochs,
        warmup_epochs=(s.warmup_epochs if s.warmup_epochs is not None
                       else max(1, round(epochs / 9)) if epochs > 1 else 0),
        batch_size=s.batch_size or default_batch_size(len(data.train), cap=192),
        w_lr=s.w_lr, theta_lr=s.theta_lr, tau0=s.tau0,
        alternate=s.alternate, hard=s.single_path, budget_s=s.budget,
    )
    loss = CostLoss(form=s.loss, alpha=s.alpha, beta=s.beta)

    def log_arch(n: DMaskingSupernet) -> dict:
        return {"p_theta": n.probabilities()}

    loop = DMaskingTrainer(net, data, cfg, loss, seed=s.seed,
                           checkpoint=rd.file("supernet.ckpt"), progress=s.progress,
                           log_arch=log_arch)
    loop.tau_end = s.tau_end
    loop.resume()
    st = loop.fit()
    net = net.cpu()
    argmax = net.derive()
    samples = net.sample_archs(s.samples, rng_for(s.seed, 1))
    cands = [shrink_to_target(a, net, s) for a in [argmax, *samples]]
    rd.write_json("search.json", {
        "history": st.history, "argmax": argmax.genes, "samples": [a.genes for a in samples],
        "candidates": [{"arch": a.genes, **net.arch_cost(a)} for a in cands],
        "theta": net.theta.detach().tolist(), "cost": kind,
        "cardinality": space.cardinality(),
    })

    def predict_ms(a: Arch) -> float:
        return net.arch_cost(a)["latency_us"] / 1e3

    return finish(s, rd, data, Finish(
        space=space, candidates=cands, predict_latency_ms=predict_ms if lat else None,
        search_seconds=st.elapsed_s, search_epochs=st.epoch,
    ))


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    # FBNetV2 trains the argmax architecture (the paper); --samples K adds K draws from P_θ,
    # ranked from scratch by the finish stage
    p.set_defaults(samples=0)
    a = p.add_argument
    a("--space", default="auto", help=f"skeleton: auto | {' | '.join(SKELETONS.names())}")
    a("--cost", default="auto", choices=["auto", "flops", "params", "latency"],
      help="effective cost in the loss (auto: follows the target given)")
    a("--loss", default="paper", choices=["paper", "seed", "additive"],
      help="paper: CE·α·log(cost)^β (default); seed: α·CE·β·log(cost); additive: CE+λ·log")
    a("--alpha", type=float, default=0.2)
    a("--beta", type=float, default=0.6)
    a("--warmup-epochs", type=int, default=None, help="w-only epochs (default: 1/9 of them)")
    a("--alternate", default="step", choices=["step", "epoch"], help="alternate w/θ by")
    a("--single-path", action="store_true", help="hard Gumbel (straight-through one-hot)")
    a("--w-lr", type=float, default=0.1)
    a("--theta-lr", type=float, default=0.01)
    a("--tau0", type=float, default=5.0, help="initial Gumbel temperature")
    a("--tau-end", type=float, default=0.1, help="temperature at the last planned epoch")


def main(args: argparse.Namespace) -> dict:
    s, rd = settings_from_args(FBNetV2Settings, "fbnetv2", args)
    if not isinstance(s, FBNetV2Settings):
        raise UserError("internal: fbnetv2 settings expected")
    return run(s, rd)
