"""Training the predictor (METHODS §3): proxy pretraining on free samples, then the accuracy
head in two phases.

1. :func:`pretrain_proxy` — encoder + proxy head regress (log FLOPs, log params) of many
   architectures whose statistics cost nothing to compute (no training runs).
2. :func:`fit_accuracy` — from the pretrained state, a fresh accuracy head (embedding + recipe
   encoding → accuracy, in logit space within the predictor's ``acc_bounds``) is trained with
   the Huber loss: ``frozen_epochs`` with the encoder
   frozen *(paper: 50)*, then ``end_to_end_epochs`` of the whole network with a learning rate
   decaying (cosine) to zero *(paper: 50)*.

Everything is seeded from the predictor's seed: the same data gives the same weights, so a
search that refits on resume gets back exactly the predictor it had.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nasforge.errors import UserError
from nasforge.predictor.model import Predictor, Stats


@dataclass
class FitConfig:
    frozen_epochs: int = 50  # (paper) accuracy head only, encoder frozen
    end_to_end_epochs: int = 50  # (paper) everything, decaying lr
    lr: float = 3e-3  # (choice) Adam, accuracy head phase
    end_to_end_lr: float = 1e-3  # (choice) Adam, start of the decaying phase
    weight_decay: float = 1e-4  # (choice)
    batch_size: int = 16  # (choice) a few hundred results at most: small batches
    min_steps: int = 8  # (choice) steps per epoch at least (a 20-result fit still learns)
    huber_delta: float = 1.0  # (choice) on standardised accuracies
    proxy_epochs: int = 60  # (choice) proxy pretraining
    proxy_lr: float = 2e-3  # (choice)
    proxy_batch_size: int = 64  # (choice)

    def __post_init__(self) -> None:
        if min(self.frozen_epochs, self.end_to_end_epochs, self.proxy_epochs) < 0:
            raise UserError("predictor fit epochs must be ≥ 0")
        if min(self.batch_size, self.proxy_batch_size, self.min_steps) < 1:
            raise UserError("predictor batch sizes and min_steps must be ≥ 1")


def _batches(n: int, bs: int, gen: torch.Generator, min_steps: int = 1):  # noqa: ANN202
    """Shuffled index batches of one epoch (at least ``min_steps`` of them, resampling)."""
    steps = max(min_steps, math.ceil(n / bs))
    order = torch.cat([torch.randperm(n, generator=gen)
                       for _ in range(math.ceil(steps * bs / n))])
    for i in range(steps):
        yield order[i * bs:(i + 1) * bs]


def pretrain_proxy(p: Predictor, xa: np.ndarray, flops: np.ndarray, params: np.ndarray,
                   cfg: FitConfig | None = None) -> list[float]:
    """Fit encoder + proxy head to log(FLOPs), log(params) of free samples; keeps the state as
    the start of every accuracy fit. Returns the loss per epoch."""
    cfg = cfg or FitConfig()
    if len(xa) < 2:
        raise UserError("the proxy pretraining needs at least 2 samples")
    y = np.stack([np.log(np.maximum(flops, 1)), np.log(np.maximum(params, 1))], 1)
    p.proxy_stats = Stats.of(y)
    X = torch.as_tensor(np.asarray(xa, dtype=np.float32))
    Y = torch.as_tensor(p.proxy_stats.norm(y))
    gen = torch.Generator().manual_seed(p.seed + 1)
    net = p.net
    params_ = list(net.encoder.parameters()) + list(net.proxy_head.parameters())
    opt = torch.optim.Adam(params_, lr=cfg.proxy_lr)
    total = cfg.proxy_epochs * max(1, math.ceil(len(X) / cfg.proxy_batch_size))
    step, losses = 0, []
    net.train()
    for _ in range(cfg.proxy_epochs):
        s = 0.0
        for idx in _batches(len(X), cfg.proxy_batch_size, gen):
            for g in opt.param_groups:
                g["lr"] = cfg.proxy_lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.mse_loss(net.proxy(X[idx]), Y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            s += float(loss.detach()) * len(idx)
            step += 1
        losses.append(s / len(X))
    p.pretrained = {k: v.detach().clone() for k, v in net.state_dict().items()}
    p.history["proxy"] = {"samples": len(X), "final_loss": losses[-1] if losses else None}
    return losses


def fit_accuracy(p: Predictor, xa: np.ndarray, y: np.ndarray, xr: np.ndarray | None = None,
                 cfg: FitConfig | None = None) -> list[float]:
    """Fit the accuracy head (then everything) to accuracies ``y`` with the Huber loss, from
    the proxy-pretrained state (or a fresh network when there was none). Returns the loss per
    epoch."""
    cfg = cfg or FitConfig()
    if len(xa) < 2:
        raise UserError(f"the accuracy predictor needs at least 2 results, got {len(xa)}")
    if (xr is None) != p.architecture_only:
        raise UserError("give recipe encodings exactly when the predictor has a recipe part")
    if p.pretrained is None:
        p.reset()  # no proxy pretraining: start from the seeded initialisation
    net = p.net
    with torch.random.fork_rng(devices=[]):  # a fresh, seeded accuracy head
        torch.manual_seed(p.seed + 2)
        if p.pretrained is not None:
            net.load_state_dict(p.pretrained)
        for m in net.acc_head.modules():
            if isinstance(m, torch.nn.Linear):
                m.reset_parameters()
    t = p.acc_to_fit(y)  # logit space for a bounded predictor (UserError out of bounds)
    p.acc_stats = Stats.of(t)
    X = torch.as_tensor(np.asarray(xa, dtype=np.float32))
    R = None if xr is None else torch.as_tensor(np.asarray(xr, dtype=np.float32))
    Y = torch.as_tensor(p.acc_stats.norm(t)[:, 0])
    gen = torch.Generator().manual_seed(p.seed + 3)
    losses: list[float] = []

    def run(params: list, epochs: int, lr: float, decay: bool, frozen: bool) -> None:
        if epochs == 0:
            return
        opt = torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
        steps = max(cfg.min_steps, math.ceil(len(X) / cfg.batch_size))
        total, step = epochs * steps, 0
        for _ in range(epochs):
            net.train()
            if frozen:
                net.encoder.eval()
            s, n = 0.0, 0
            for idx in _batches(len(X), cfg.batch_size, gen, cfg.min_steps):
                if decay:
                    for g in opt.param_groups:
                        g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                out = net(X[idx], None if R is None else R[idx])
                loss = F.huber_loss(out, Y[idx], delta=cfg.huber_delta)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                s += float(loss.detach()) * len(idx)
                n += len(idx)
                step += 1
            losses.append(s / max(n, 1))

    enc = list(net.encoder.parameters())
    for q in enc:
        q.requires_grad_(False)
    run(list(net.acc_head.parameters()), cfg.frozen_epochs, cfg.lr, False, True)
    for q in enc:
        q.requires_grad_(True)
    run(list(net.encoder.parameters()) + list(net.acc_head.parameters()),
        cfg.end_to_end_epochs, cfg.end_to_end_lr, True, False)
    p.history["accuracy"] = {"results": len(X), "final_loss": losses[-1] if losses else None}
    return losses
