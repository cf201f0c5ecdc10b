"""``nasforge search densenas``: DenseNAS end to end (METHODS §4).

Cost table (LUT µs per op on the target, or MACs) → densely connected supernet → two-stage
search in the shared loop (weights only for the first third, then alternating weight and
architecture steps; loss ``CE + λ·log_b(chained cost)``) → argmax ops + Viterbi path, and
K architectures sampled from the relaxation (each shrunk to meet a target if one is given) →
ranked from scratch → the best trained, exported, measured; ``path.txt`` says which blocks,
widths and strides the path keeps.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nasforge.arch import Arch, thaw
from nasforge.cost.loss import CostLoss
from nasforge.cost.lut import LatencyTable, load_or_build
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
from nasforge.spaces.dense import ALIGN_OPS, LAYER_OPS, SPECS, DenseCosts, DenseSpace
from nasforge.strategies.bilevel import SupernetConfig
from nasforge.supernets.densenas import DenseSupernet, DenseTrainer


@dataclass
class DenseNASSettings(SearchSettings):
    """Defaults are the official code's (ImageNet, MobileNetV2 space)."""

    space: str = "auto"  # auto: dense-fmnist (28²), dense-cifar (32²), dense-imagenet (224²)
    cost: str = "latency"  # latency (LUT µs) | flops (kMACs)
    lam: float = 0.15  # λ of CE + λ·log_b(cost)
    log_base: float = 15.0
    warmup_epochs: int | None = None  # default: a third of the epochs (official 50 of 150)
    alternate: str = "step"
    w_lr: float = 0.2
    w_weight_decay: float = 4e-5
    theta_lr: float = 3e-4
    theta_weight_decay: float = 1e-3
    weight_ops: int = 1  # ops drawn per slot in weight steps (0: all, the full weighted sum)
    arch_ops: int = 2  # ops drawn per slot in architecture steps (0: all)


def space_for(name: str, input_shape: tuple[int, int, int]) -> DenseSpace:
    sizes = {n: SPECS.get(n).input_size for n in SPECS.names()}
    return DenseSpace(space_name_for(name, input_shape, "dense", SPECS.names(), sizes))


Metric = Callable[[Arch], float]


def _violation(a: Arch, s: SearchSettings, costs: DenseCosts, lat_ms: Metric | None) -> float:
    v = 0.0
    if s.flops is not None:
        v += max(0.0, costs.arch_macs(a) / s.flops - 1)
    if s.params is not None:
        v += max(0.0, costs.arch_params(a) / s.params - 1)
    if s.latency_ms is not None and lat_ms is not None:
        v += max(0.0, lat_ms(a) / s.latency_ms - 1)
    return v


def _shrink_ops(arch: Arch, space: DenseSpace, net: DenseSupernet, s: SearchSettings,
                costs: DenseCosts, lat_ms: Metric | None) -> Arch:
    """Greedy op changes on a fixed path, each the one that removes the most violation per
    unit of log-probability lost; returns the best reached (it may still violate)."""
    probs = net.probabilities()
    path = space.path(arch)
    blocks = [dict(b, layers=list(b["layers"])) for b in arch.genes["blocks"]]

    def logp(w: list[float], o: int) -> float:
        return math.log(max(w[o], 1e-12))

    cur_arch = arch
    for _ in range(8 * sum(1 + len(b["layers"]) for b in blocks) + 1):
        cur = _violation(cur_arch, s, costs, lat_ms)
        if cur == 0.0:
            break
        best, best_score = None, -math.inf
        for k, (i, b) in enumerate(zip(path, blocks)):
            j = b["id"]
            w_align = probs["align"][j - 1][space.preds[j].index(i)]
            slots = [("align", None, ALIGN_OPS, w_align)]
            slots += [("layers", li, LAYER_OPS, probs["layers"][j - 1][li])
                      for li in range(len(b["layers"]))]
            for field, li, ops, w in slots:
                now = ops.index(b[field] if li is None else b[field][li])
                for o in range(len(ops)):
                    if o == now:
                        continue
                    trial = [dict(x, layers=list(x["layers"])) for x in blocks]
                    if li is None:
                        trial[k]["align"] = ops[o]
                    else:
                        trial[k]["layers"][li] = ops[o]
                    ta = space.arch(trial)
                    gain = cur - _violation(ta, s, costs, lat_ms)
                    if gain > 0:
                        score = gain / (logp(w, now) - logp(w, o) + 1e-3)
                        if score > best_score:
                            best, best_score = trial, score
        if best is None:
            break
        blocks = best
        cur_arch = space.arch(blocks)
    return cur_arch


def shrink_to_target(arch: Arch, space: DenseSpace, net: DenseSupernet, s: SearchSettings,
                     costs: DenseCosts, lat_ms: Metric | None, max_paths: int = 20000) -> Arch:
    """``arch`` if it meets the targets; else cheaper ops on its path; else the most probable
    other path (argmax ops, then cheaper ops) that meets them."""
    if _violation(arch, s, costs, lat_ms) == 0.0:
        return arch
    a = _shrink_ops(arch, space, net, s, costs, lat_ms)
    if _violation(a, s, costs, lat_ms) == 0.0:
        return a
    paths = []
    for p in space.dag.paths():
        paths.append(p)
        if len(paths) > max_paths:
            raise UserError(f"the derived architecture misses the target and the space has over "
                            f"{max_paths} paths to try; relax --latency-ms/--flops/--params")
    with torch.no_grad():
        rel = net.sample_relaxation()
    scored = sorted(paths, key=lambda p: -sum(
        math.log(float(rel.paths[i][space.dag.edge_index(i, j)])) for i, j in zip(p, p[1:])))
    for p in scored:
        cand = net.arch_for_path(list(p), rel, lambda w: int(w.argmax()))
        cand = _shrink_ops(cand, space, net, s, costs, lat_ms)
        if _violation(cand, s, costs, lat_ms) == 0.0:
            return cand
    raise UserError("the target cannot be met by any architecture of this space (even the "
                    "cheapest path and ops exceed it); relax --latency-ms/--flops/--params")


def run(s: DenseNASSettings, rd: RunDir) -> dict:
    dev, data = setup(s)
    space = space_for(s.space, data.input_shape)
    in_ch, ncls = data.input_shape[0], data.num_classes
    costs = space.costs(ncls, in_ch)
    if s.cost not in ("latency", "flops"):
        raise UserError(f"--cost must be latency or flops, got {s.cost!r}")
    lut: LatencyTable | None = None
    if s.cost == "latency" or s.latency_ms is not None:
        lut = load_or_build(space.name, costs.items(), target=s.target, threads=s.threads,
                            path=s.lut, progress=s.progress)
        rd.write_json("lut.json", lut.to_dict())
    torch.manual_seed(s.seed)
    net = DenseSupernet(space, ncls, in_ch, costs, cost=s.cost, lut=lut)
    epochs = s.epochs or 150
    cfg = SupernetConfig(
        epochs=epochs,
        warmup_epochs=(s.warmup_epochs if s.warmup_epochs is not None
                       else min(round(epochs / 3), epochs - 1)),  # official: 50 of 150
        batch_size=s.batch_size or 128, w_lr=s.w_lr, w_momentum=0.9,
        w_weight_decay=s.w_weight_decay, theta_lr=s.theta_lr,
        theta_weight_decay=s.theta_weight_decay, theta_betas=(0.5, 0.999), tau0=1.0,
        tau_decay=0.0, alternate=s.alternate, budget_s=s.budget,
    )
    loss = CostLoss(form="additive", lam=s.lam, base=s.log_base)

    def log_arch(n: DenseSupernet) -> dict:
        return {"p_paths": n.probabilities()["paths"], "argmax": thaw(n.derive().genes)}

    loop = DenseTrainer(net, data, cfg, loss, seed=s.seed, checkpoint=rd.file("supernet.ckpt"),
                        progress=s.progress, log_arch=log_arch, weight_ops=s.weight_ops,
                        arch_ops=s.arch_ops)
    loop.resume()
    st = loop.fit()
    net = net.cpu()

    def lat_ms(a: Arch) -> float:
        return costs.arch_latency_us(lut, a) / 1000.0  # type: ignore[arg-type]

    pred = lat_ms if lut is not None else None
    derived = net.derive()
    samples = net.sample_archs(s.samples, rng_for(s.seed, 1))
    cands = [shrink_to_target(a, space, net, s, costs, pred) for a in [derived, *samples]]
    rd.write_json("search.json", {
        "history": st.history, "derived": derived.genes, "samples": [a.genes for a in samples],
        "probabilities": net.probabilities(),
        "arch_parameters": [p.detach().tolist() for p in net.arch_parameters()]})
    result = finish(s, rd, data, Finish(
        space=space, candidates=cands, predict_latency_ms=pred,
        search_seconds=st.elapsed_s, search_epochs=st.epoch,
        extra={"derived": derived.genes},
    ))
    best = Arch.from_dict(result["arch"])
    lines = [space.describe(best, ncls), "",
             f"log P(path) under the searched path probabilities: {net.path_log_prob(best):.3f}",
             f"MACs {costs.arch_macs(best):,}  params {costs.arch_params(best):,}"
             + (f"  predicted latency {pred(best):.3f} ms" if pred else "")]
    if best != derived:
        lines += ["", "(the Viterbi/argmax derivation was", space.describe(derived, ncls), ")"]
    rd.file("path.txt").write_text("\n".join(lines) + "\n")
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    a = p.add_argument
    a("--space", default="auto", help=f"space: auto | {' | '.join(SPECS.names())}")
    a("--cost", default="latency", choices=["latency", "flops"], help="cost in the loss")
    a("--lam", type=float, default=0.15, help="λ of CE + λ·log_b(cost) (official 0.15)")
    a("--log-base", type=float, default=15.0, help="b of log_b(cost) (official 15)")
    a("--warmup-epochs", type=int, default=None, help="weights-only epochs (official 50 of 150)")
    a("--alternate", default="step", choices=["step", "epoch"], help="alternate w/θ by")
    a("--w-lr", type=float, default=0.2)
    a("--w-weight-decay", type=float, default=4e-5)
    a("--theta-lr", type=float, default=3e-4, help="Adam lr of op and path parameters")
    a("--theta-weight-decay", type=float, default=1e-3)
    a("--weight-ops", type=int, default=1,
      help="ops drawn per layer in weight steps (official 1; 0 = all, full weighted sum)")
    a("--arch-ops", type=int, default=2,
      help="ops drawn per layer in architecture steps (official 2; 0 = all)")


def main(args: argparse.Namespace) -> dict:
    s, rd = settings_from_args(DenseNASSettings, "densenas", args)
    assert isinstance(s, DenseNASSettings)
    return run(s, rd)
