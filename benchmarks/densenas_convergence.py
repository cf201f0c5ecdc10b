"""How far DenseNAS's architecture distribution concentrates in a fixed number of steps
(issue 10, item 2; figures in docs/densenas.md, "Convergence").

Each run is the search loop of ``nasforge search densenas`` — the method's own settings,
supernet and loss (``methods/densenas.py``: ``_loop``, ``_supernet``), on the space a short
budgeted search takes — with the epochs, warm-up and rounds given as step counts instead of a
wall-clock budget, so the outcome does not depend on the machine's load. Printed per run: the
final ``max_prob`` (mean over decisions of the largest probability) and ``entropy`` (nats), the
op rows' and the path rows' pmax apart, the supernet's last-epoch accuracy on its train / val
batches, and the derived path.

    nice -n 19 .venv/bin/python benchmarks/densenas_convergence.py --grid default \\
        --seeds 0,1 > /tmp/dn_conv.txt
    # one setting: any DenseNASSettings field, loop field (epochs, warmup_epochs, epoch_steps,
    # theta_betas ...) or tau=
    .venv/bin/python benchmarks/densenas_convergence.py --set theta_lr=3.0 --set arch_ops=0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

import torch

#: the step counts of a ``--budget 90`` search on digits on one idle core (~30 s of loop:
#: 1 warm-up round + 2 search rounds of 8 weight + 8 architecture steps; docs/densenas.md)
BASE = {"budget": 90.0, "cost": "flops", "epochs": 3, "warmup_epochs": 1, "epoch_steps": 8}

#: the short budgeted defaults before issue 10's DenseNAS study (θ lr 1.0, official θ wd); the
#: grids below vary one setting from them
PREVIOUS = {"theta_lr": 1.0, "theta_weight_decay": 1e-3}

GRIDS: dict[str, list[dict[str, Any]]] = {
    "default": [
        {},
        {"theta_lr": 0.3}, {"theta_lr": 3.0},
        {"arch_ops": 0}, {"arch_ops": 0, "theta_lr": 3.0},
        {"theta_weight_decay": 0.0},
        {"theta_betas": (0.9, 0.999)},
        {"warmup_epochs": 0, "epochs": 3},
        {"epochs": 6, "warmup_epochs": 2, "epoch_steps": 4},
        {"tau": 0.5},
        {"path_lr_mult": 3.0},
        {"epochs": 4, "warmup_epochs": 1},
    ],
    # the decay and the lr apart, on more seeds
    "check": [
        {"theta_lr": 1.0, "theta_weight_decay": 1e-3},
        {"theta_lr": 1.0, "theta_weight_decay": 0.0},
        {"theta_lr": 2.0, "theta_weight_decay": 1e-3},
        {"theta_lr": 2.0, "theta_weight_decay": 0.0},
    ],
    # without the θ weight decay (the official 1e-3 pulls the logits back: see the docs)
    "wd": [
        {"theta_weight_decay": 0.0, "theta_lr": 3.0},
        {"theta_weight_decay": 0.0, "theta_lr": 0.3},
        {"theta_weight_decay": 0.0, "arch_ops": 0},
        {"theta_weight_decay": 0.0, "theta_betas": (0.9, 0.999)},
        {"theta_weight_decay": 1e-4},
        {"theta_weight_decay": 0.0, "epochs": 4, "warmup_epochs": 1},
    ],
    # the θ lr without weight decay, and a loaded machine's single search round
    "pick": [
        {"theta_weight_decay": 0.0, "theta_lr": 2.0},
        {"epochs": 2, "warmup_epochs": 1},
        {"theta_weight_decay": 0.0, "epochs": 2, "warmup_epochs": 1},
        {"theta_weight_decay": 0.0, "theta_lr": 2.0, "epochs": 2, "warmup_epochs": 1},
        {"theta_weight_decay": 0.0, "theta_lr": 3.0, "epochs": 2, "warmup_epochs": 1},
    ],
}


def _parse(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def run(over: dict[str, Any], seed: int, dataset: str = "digits") -> dict[str, Any]:
    """One fixed-step search loop; returns its concentration and accuracies."""
    from nasforge.cost.model import CostModel
    from nasforge.methods import densenas
    from nasforge.methods.common import setup
    from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer

    kw = {**BASE, **over}
    tau = kw.pop("tau", 1.0)
    path_mult = float(kw.pop("path_lr_mult", 1.0))  # study only: β's lr = mult × α's
    loop_keys = {f.name for f in dataclasses.fields(SupernetConfig)}
    set_keys = {f.name for f in dataclasses.fields(densenas.DenseNASSettings)}
    # the step counts go to the loop only: given to the settings they would make the search
    # un-budgeted (``--epochs`` fixes it), and so not the short search being studied
    steps = ("epochs", "warmup_epochs", "epoch_steps")
    s = densenas.DenseNASSettings(dataset=dataset, seed=seed, progress=False,
                                  **{k: v for k, v in kw.items()
                                     if k in set_keys and k not in steps})
    _, data = setup(s)
    cfg = densenas._loop(s, data)
    extra = {k: v for k, v in kw.items()
             if k in loop_keys and k not in set_keys and k not in steps}
    cfg = dataclasses.replace(cfg, epochs=kw["epochs"], warmup_epochs=kw["warmup_epochs"],
                              epoch_steps=kw["epoch_steps"], budget_s=None, **extra)
    m = densenas.METHOD.for_settings(s)
    space = m.space_for(s.space, data.input_shape)
    cm = CostModel(space, data.num_classes, data.input_shape, kind="flops")
    torch.manual_seed(seed)
    net = densenas._supernet(space, cm, s)
    net.tau = float(tau)
    t = SupernetTrainer(net, data, cfg, m.loss(s), seed=seed, progress=False)
    if path_mult != 1.0:  # the same Adam, the path parameters in a group of their own
        t.a_opt = torch.optim.Adam(
            [{"params": net.alpha_parameters()},
             {"params": list(net.beta), "lr": cfg.theta_lr * path_mult}],
            lr=cfg.theta_lr, betas=cfg.theta_betas, weight_decay=cfg.theta_weight_decay)
    t0 = time.process_time()
    st = t.fit()
    c = t.convergence()
    net.tau = 1.0  # the metric always at τ = 1 (a lower τ would sharpen it by itself)
    rows = net.probability_rows()
    n_path = len([r for r in net.sample_relaxation().paths[:-1] if len(r) > 1])
    ops = [r for r in rows[:len(rows) - len(net.beta)] if len(r) > 1]
    paths = [r for r in rows[len(rows) - len(net.beta):] if len(r) > 1]
    assert len(paths) == n_path
    h = st.history[-1]
    return {"over": over, "seed": seed, "pmax": net.concentration()["max_prob"],
            "H": net.concentration()["entropy"], "pmax_loop": c["max_prob"],
            "pmax_ops": float(sum(r.max() for r in ops) / len(ops)),
            "pmax_paths": float(sum(r.max() for r in paths) / len(paths)),
            "w_acc": h["w_acc"], "a_acc": h["a_acc"],
            "w_steps": sum(t._steps("train") for _ in range(cfg.epochs)),
            "a_steps": (cfg.epochs - cfg.warmup_epochs) * t._steps("train"),
            "theta_lr": cfg.theta_lr, "arch_ops": net.arch_ops, "weight_ops": net.weight_ops,
            "space": space.name, "derived": net.derive().genes, "cpu_s": time.process_time() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", default=None, choices=list(GRIDS))
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE (one setting)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    one = {k: _parse(v) for k, v in (x.split("=", 1) for x in a.set)}
    grid = GRIDS[a.grid] if a.grid else [one]
    if a.grid in ("default", "wd", "pick"):  # variations of the previous defaults
        grid = [{**PREVIOUS, **g} for g in grid]
    seeds = [int(x) for x in a.seeds.split(",")]
    print("| setting | seed | pmax | H | pmax ops / paths | w / θ acc | θ steps | cpu s |")
    print("|---|---|---|---|---|---|---|---|")
    for over in grid:
        for seed in seeds:
            r = run(over, seed, a.dataset)
            name = ", ".join(f"{k}={v}" for k, v in over.items()) or "defaults"
            print(f"| {name} | {seed} | {r['pmax']:.3f} | {r['H']:.3f} | {r['pmax_ops']:.3f} / "
                  f"{r['pmax_paths']:.3f} | {r['w_acc']:.2f} / {r['a_acc'] or 0:.2f} | "
                  f"{r['a_steps']} | {r['cpu_s']:.0f} |", flush=True)
            print(json.dumps(r, default=str), file=sys.stderr, flush=True)  # full record
    return 0


if __name__ == "__main__":
    sys.exit(main())
