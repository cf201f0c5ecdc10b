"""The bilevel supernet loop shared by every differentiable method (FBNet, FBNetV2, DenseNAS,
DARTS).

Weights w train on ``train``, architecture parameters on ``val``; the first ``warmup_epochs``
train w only; then w and θ alternate by step (default) or by whole epoch (the FBNet seed code).
The hot loop keeps everything on the device: metrics accumulate in device tensors and are read
once per epoch; bf16 autocast + channels_last + fused optimizers on CUDA. A step builds only
its own gradients (the θ step none for w, the w step none for θ: ``exclusive_grads``); the
gradient clip is off unless the method's paper clips (DARTS); ``compile`` wraps the forward in
``torch.compile``. The run checkpoints every epoch (weights, θ, optimizers, temperature, epoch,
every RNG) and resumes exactly.

The supernet is any :class:`nasforge.supernets.base.Supernet`; method differences are hooks,
never a copied step: the temperature schedule (``tau_schedule``: FBNet's exponential decay,
run over the planned epochs when they are fewer than the ``tau_epochs`` it is defined over;
FBNetV2's geometric decay to ``tau_end`` over the planned epochs; DenseNAS's constant), the
relaxation's ``phase`` (DenseNAS draws different op counts for w and θ steps) and the
supernet's ``after_arch_step`` (DenseNAS rescales the drawn ops' α). Every epoch's record
carries the distribution's concentration (mean largest probability, mean entropy), so a
history shows whether the search decided anything. A budgeted search may run its epochs as
rounds of ``epoch_steps`` steps, so that a short budget on a small data set still has epochs
enough for its schedules (:func:`epoch_steps_for`).

Data parallel (``dist``: a :class:`nasforge.distributed.Context` with world size N > 1):
``batch_size`` stays the global batch; every rank draws the same global batch order (one
``data_gen`` seed) and takes its 1/N shard; after each backward the step's gradients (w in a w
step, θ in a θ step) are averaged over the ranks in one all-reduce before the clip and the
optimiser step, so every rank holds the same w and θ after every step. Each rank draws its own
Gumbel / op-sampling and augmentation noise (rank 0 the single-process streams, rank r > 0
streams seeded from (seed, r)), except the θ-step draw of a supernet whose after-step hook
reads it (DenseNAS's rescale of the drawn ops' α), which comes from one stream all ranks
share; epoch metrics and seconds are reduced over the ranks, so the
history and the time budget are the same on all of them. BatchNorm statistics stay per rank
(batch/N images each, as under DDP). Rank 0 alone writes the checkpoint, which holds every
rank's noise streams (a resume with another N re-seeds the ranks it has no stream for).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.data import Dataset, random_crop_flip
from nasforge.data.batches import batch_indices
from nasforge.device import rng_state, set_rng_state
from nasforge.distributed import SINGLE, Context, seed_for
from nasforge.errors import UserError
from nasforge.progress import Bar
from nasforge.run.scalars import log_scalars
from nasforge.strategies.darts_step import frozen, unrolled_arch_grad
from nasforge.supernets.base import Supernet
from nasforge.train.amp import autocast, fused_kwargs, prepare_module
from nasforge.train.schedules import cosine_lr, set_lr

TAU_SCHEDULES = ("exponential", "geometric", "constant")
T = TypeVar("T")
#: w steps per epoch of a budgeted search unless asked otherwise: on digits (1,150 training
#: images, batch 32: 35 steps an epoch) a ~45-s search is then ~5–12 rounds instead of 1–2
#: passes (figures in docs/fbnetv2.md)
BUDGET_EPOCH_STEPS = 8


def short_run_default(value: T | None, budgeted: bool, short: T, full: T) -> T:
    """A loop setting left at None: ``short`` in a budgeted search (few steps), ``full`` (the
    paper's) when the epochs are given or there is no budget."""
    if value is not None:
        return value
    return short if budgeted else full


def epoch_steps_for(epoch_steps: int | None, budgeted: bool) -> int | None:
    """``--epoch-steps``: None → :data:`BUDGET_EPOCH_STEPS` in a budgeted search (whole epochs
    otherwise: the papers' and bit-reproducible); 0 → whole epochs; n → at most n steps."""
    if epoch_steps is None:
        return short_run_default(None, budgeted, BUDGET_EPOCH_STEPS, None)
    if epoch_steps < 0:
        raise UserError(f"--epoch-steps must be ≥ 0 (0: whole epochs), got {epoch_steps}")
    return epoch_steps or None


@dataclass
class SupernetConfig:
    """Defaults are FBNet's (paper); other methods override them in their settings."""

    epochs: int = 90
    warmup_epochs: int = 10
    batch_size: int = 192
    w_lr: float = 0.1
    w_momentum: float = 0.9
    w_weight_decay: float = 1e-4
    theta_lr: float = 0.01
    theta_weight_decay: float = 5e-4
    theta_betas: tuple[float, float] = (0.9, 0.999)
    tau0: float = 5.0
    tau_decay: float = 0.045  # exponential: τ = τ0 · e^(−decay · epoch) (FBNet)
    # exponential: the epochs that decay is defined over (FBNet: 90, τ 5 → 0.091 at epoch 89).
    # A plan of E < tau_epochs epochs runs the same range, τ(e) = τ0·e^(−decay·e·(tau_epochs−1)
    # /(E−1)), so its last epoch reaches the paper's final τ (the budgeted form of the schedule)
    tau_epochs: int = 90
    tau_schedule: str = "exponential"  # exponential | geometric (τ0 → tau_end) | constant
    tau_end: float = 0.1  # geometric: τ at the last planned epoch (FBNetV2)
    alternate: str = "step"  # step | epoch
    hard: bool = False  # single-path (hard Gumbel, straight-through)
    budget_s: float | None = None
    # w steps per epoch at most (None: the whole train split). A short budgeted run is only a
    # few passes over a small data set; as rounds of ``epoch_steps`` steps its plan has enough
    # epochs for the τ decay, the cosine lr and the warm-up fraction to take effect
    epoch_steps: int | None = None
    # gradient-norm clip of w (None: off). FBNet, FBNetV2 and DenseNAS (paper and official
    # code) do not clip; DARTS does (norm 5), and its method sets it
    grad_clip: float | None = None
    augment: bool = False
    amp: bool = True
    # 2: DARTS's second-order θ step (strategies/darts_step.py), unrolled on the train batch
    # the w step just used (so it needs alternate="step")
    arch_order: int = 1
    w_lr_min: float = 0.0  # the cosine schedule's floor (DARTS: 0.001)
    # β-decay (β-DARTS): λ_e·mean over edges of logsumexp(α_e) added to the θ loss, λ_e =
    # beta_decay·e/(2·planned epochs) (the official schedule 50·e/100 over 50 epochs); 0: off
    beta_decay: float = 0.0
    # speed switches: the same mathematics at less cost (benchmarks/supernet_step.py --ablate
    # times each). exclusive_grads: the θ step computes no w gradients and the w step no θ
    # gradients (requires_grad off for the other group: its backward is never built)
    exclusive_grads: bool = True
    # None: on CUDA, and on the CPU for a supernet whose ``cpu_channels_last`` is True (FBNet,
    # DenseNAS: measured faster, docs/supernet_speed.md)
    channels_last: bool | None = None
    compile: bool = False  # torch.compile the supernet forward (fixed-graph relaxations)

    def __post_init__(self) -> None:
        if self.arch_order not in (1, 2) or (self.arch_order == 2 and self.alternate != "step"):
            raise UserError(f"arch_order must be 1, or 2 with alternate='step', got "
                            f"{self.arch_order} with alternate={self.alternate!r}")
        if self.beta_decay < 0 or self.w_lr_min < 0:
            raise UserError(f"beta_decay and w_lr_min must be ≥ 0, got {self.beta_decay} and "
                            f"{self.w_lr_min}")
        if self.tau_schedule not in TAU_SCHEDULES:
            raise UserError(f"tau_schedule must be one of {list(TAU_SCHEDULES)}, got "
                            f"{self.tau_schedule!r}")
        if self.alternate not in ("step", "epoch"):
            raise UserError(f"alternate must be 'step' or 'epoch', got {self.alternate!r}")
        if self.epochs < 1:
            raise UserError(f"epochs must be ≥ 1, got {self.epochs}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise UserError(f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs} "
                            f"with epochs={self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if self.epoch_steps is not None and self.epoch_steps < 1:
            raise UserError(f"epoch_steps must be ≥ 1 (or None: whole epochs), got "
                            f"{self.epoch_steps}")
        self.theta_betas = tuple(self.theta_betas)  # type: ignore[assignment]


@dataclass
class LoopState:
    epoch: int = 0
    planned_epochs: int = 0
    planned_warmup: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def beta_decay_penalty(alphas: Any) -> torch.Tensor:
    """β-DARTS's Beta-Decay term: the mean over every edge (a row of any α tensor) of
    logsumexp(α_e); its gradient is softmax(α_e)/#edges, which keeps the activated α small
    and even (against DARTS's collapse onto parameter-free ops)."""
    rows = torch.cat([a.reshape(-1, a.shape[-1]).logsumexp(-1) for a in alphas])
    return rows.mean()


class SupernetTrainer:
    """Runs the loop over any :class:`~nasforge.supernets.base.Supernet`."""

    def __init__(self, supernet: Supernet, data: Dataset, config: SupernetConfig,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, seed: int = 0,
                 checkpoint: str | Path | None = None, progress: bool = True,
                 log_arch: Callable[[Supernet], dict[str, Any]] | None = None,
                 dist: Context = SINGLE) -> None:
        self.cfg = config
        self.dist = dist
        self.seed = seed
        self.data = data
        self.device = data.device
        self.net = prepare_module(supernet, self.device)
        cl = config.channels_last
        # getattr: a duck-typed relaxation (not a Supernet subclass) runs NCHW on the CPU
        self._channels_last = ((self.device.type == "cuda"
                                or bool(getattr(supernet, "cpu_channels_last", False)))
                               if cl is None else bool(cl))
        self.net = self.net.to(memory_format=(torch.channels_last if self._channels_last
                                              else torch.contiguous_format))
        # torch.compile'd forward (an option; a relaxation whose draw changes the graph, as
        # DenseNAS op sampling does, recompiles, so it stays off by default)
        self._forward = torch.compile(self.net) if config.compile else self.net
        self.loss_fn = loss_fn
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.progress = progress and dist.is_main
        self.log_arch = log_arch or (lambda net: net.arch_state())
        self.uses_cost = getattr(loss_fn, "form", "x") != "none"
        self._zero = torch.zeros((), device=self.device)
        w_params = list(self.net.weight_parameters())
        self._w_params = w_params  # cached: the hot loop clips / freezes them every step
        a_params = list(self.net.arch_parameters())
        self._a_params = a_params
        fk = fused_kwargs(self.device)
        self.w_opt = torch.optim.SGD(w_params, lr=config.w_lr, momentum=config.w_momentum,
                                     weight_decay=config.w_weight_decay, **fk)
        self.a_opt = (torch.optim.Adam(a_params, lr=config.theta_lr, betas=config.theta_betas,
                                       weight_decay=config.theta_weight_decay, **fk)
                      if a_params else None)
        self.data_gen = torch.Generator().manual_seed(seed)  # the same on every rank
        self.aug_gen = torch.Generator().manual_seed(self._rank_seed(1))
        self.gumbel_gen = torch.Generator(device=self.device).manual_seed(self._rank_seed(2))
        # the same on every rank (used only under data parallelism, see arch_step)
        self.shared_gen = torch.Generator(device=self.device).manual_seed(
            seed_for(seed, 0, 3))
        self._shared_s = 0.0  # data parallel: the ranks' mean seconds into the epoch
        self._t_epoch = time.perf_counter()
        self.state = LoopState(planned_epochs=config.epochs, planned_warmup=config.warmup_epochs)
        self._bar = Bar(0, "supernet", disable=True)  # fit()'s bar; run_epoch moves it per step

    def _rank_seed(self, stream: int, *more: int) -> int:
        """Rank 0: the single-process seeds (seed+1 augmentation, seed+2 noise); rank r > 0:
        its own, from (seed, r, stream, …)."""
        if self.dist.rank == 0 and not more:
            return self.seed + stream
        return seed_for(self.seed, self.dist.rank, stream, *more)

    def _sync_grads(self, params: Sequence[nn.Parameter]) -> None:
        """Data parallel: the step's gradients averaged over the ranks (no-op in one process);
        the ranks' clocks ride along, so the budget check agrees on every rank."""
        if self.dist.active:
            (self._shared_s,) = self.dist.average_grads(
                params, [time.perf_counter() - self._t_epoch])

    # -- steps ----------------------------------------------------------------------------------
    def tau(self, epoch: int | None = None) -> float:
        e = self.state.epoch if epoch is None else epoch
        c = self.cfg
        if c.tau_schedule == "exponential":  # the paper's decay, compressed to a short plan
            stretch = max(1.0, (c.tau_epochs - 1) / max(self.state.planned_epochs - 1, 1))
            return c.tau0 * math.exp(-c.tau_decay * e * stretch)
        if c.tau_schedule == "geometric":  # reaches tau_end at the last planned epoch
            frac = min(e / max(self.state.planned_epochs - 1, 1), 1.0)
            return c.tau0 * math.exp(frac * math.log(c.tau_end / c.tau0))
        return c.tau0

    def _loss(self, x: torch.Tensor, y: torch.Tensor, sample: Any) -> tuple[torch.Tensor, ...]:
        with autocast(self.device, self.cfg.amp):
            logits = self._forward(self._input(x), sample)
        ce = F.cross_entropy(logits.float(), y)
        if self.uses_cost:
            cost = self.net.expected_cost(sample)
            loss = self.loss_fn(ce, cost)
        else:
            cost = self._zero  # no per-step allocation
            loss = ce
        return loss, ce, cost.detach(), logits.detach()

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self._channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.cfg.augment:
            x = random_crop_flip(x, self.aug_gen)
        if self.cfg.arch_order == 2:
            self._train_batch = (x, y)  # the next θ step unrolls on it
        sample = self.net.sample_relaxation(self.gumbel_gen, self.tau(), self.cfg.hard,
                                            phase="weight")
        self.w_opt.zero_grad(set_to_none=True)
        with frozen(self._a_params if self.cfg.exclusive_grads else ()):
            loss, ce, cost, logits = self._loss(x, y, sample)
            loss.backward()
        self._sync_grads(self._w_params)
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self._w_params, self.cfg.grad_clip)
        self.w_opt.step()
        return loss.detach(), (logits.argmax(1) == y).sum(), cost

    def arch_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        before = self.net.snapshot_arch()
        # a supernet whose after-step hook reads the draw (DenseNAS rescales the drawn ops'
        # α) draws its θ-step ops from a stream every rank shares, so θ stays identical
        gen = self.shared_gen if self.dist.active and before is not None else self.gumbel_gen
        sample = self.net.sample_relaxation(gen, self.tau(), self.cfg.hard, phase="arch")
        self.a_opt.zero_grad(set_to_none=True)  # type: ignore[union-attr]
        if self.cfg.arch_order == 2:  # ∇α L_val(w − ξ∇w L_train(w, α), α), ξ = the w lr
            loss, ce, cost, logits = unrolled_arch_grad(
                self.net, lambda xb, yb: self._loss(xb, yb, self.net.sample_relaxation(
                    self.gumbel_gen, self.tau(), self.cfg.hard, phase="arch")),
                *self._train_batch, x, y, xi=self.w_opt.param_groups[0]["lr"],
                w_momentum=self.cfg.w_momentum, w_weight_decay=self.cfg.w_weight_decay,
                w_optimizer_state=self.w_opt.state)
        else:  # first order: no weight gradient is needed, so none is built
            with frozen(self._w_params if self.cfg.exclusive_grads else ()):
                loss, ce, cost, logits = self._loss(x, y, sample)
                loss.backward()
        lam = self.beta_decay_weight()
        if lam > 0:  # independent of w: the same term for first and second order
            (lam * beta_decay_penalty(self.net.arch_parameters())).backward()
        self._sync_grads(self._a_params)
        self.a_opt.step()  # type: ignore[union-attr]
        self.net.after_arch_step(sample, before)
        return loss.detach(), (logits.argmax(1) == y).sum(), cost

    def beta_decay_weight(self, epoch: int | None = None) -> float:
        """β-decay's λ at ``epoch``: linear from 0 over the planned epochs (β-DARTS)."""
        e = self.state.epoch if epoch is None else epoch
        return self.cfg.beta_decay * e / (2 * max(self.state.planned_epochs, 1))

    # -- epochs ---------------------------------------------------------------------------------
    def _batches(self, split_name: str) -> list[torch.Tensor]:
        """The epoch's batches of ``split_name``, at most ``epoch_steps`` of them."""
        split = getattr(self.data, split_name)
        out = batch_indices(len(split), self.cfg.batch_size, self.data_gen, shuffle=True,
                            drop_last=len(split) > self.cfg.batch_size)
        return out[:self.cfg.epoch_steps] if self.cfg.epoch_steps else out

    def _steps(self, split_name: str) -> int:
        """How many batches :meth:`_batches` gives for ``split_name``."""
        n, b = len(getattr(self.data, split_name)), self.cfg.batch_size
        k = n // b if n > b else 1
        return min(k, self.cfg.epoch_steps) if self.cfg.epoch_steps else k

    def _get(self, split_name: str, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        split = getattr(self.data, split_name)
        idx = self.dist.shard(idx).to(self.device, non_blocking=True)
        return split.x.index_select(0, idx), split.y.index_select(0, idx)

    def run_epoch(self) -> dict[str, Any]:
        st = self.state
        e = st.epoch
        lr = cosine_lr(self.cfg.w_lr, e, st.planned_epochs, min_lr=self.cfg.w_lr_min)
        set_lr(self.w_opt, lr)
        warm = e < st.planned_warmup
        train_w = warm or self.cfg.alternate == "step" or (e - st.planned_warmup) % 2 == 0
        train_a = (not warm) and self.a_opt is not None and (
            self.cfg.alternate == "step" or (e - st.planned_warmup) % 2 == 1)
        self.net.train()
        dev = self.device
        acc = {"w_loss": torch.zeros((), device=dev), "w_correct": torch.zeros((), device=dev),
               "a_loss": torch.zeros((), device=dev), "a_correct": torch.zeros((), device=dev),
               "cost": torch.zeros((), device=dev)}
        n_w = n_a = s_w = s_a = 0
        tr = self._batches("train") if train_w else []
        va = self._batches("val") if train_a else []
        if self.cfg.alternate == "step" and train_w and train_a:
            steps = [("w", i) for i in tr]
            merged: list[tuple[str, torch.Tensor]] = []
            for j, s in enumerate(steps):
                merged.append(s)
                merged.append(("a", va[j % len(va)]))
        else:
            merged = [("w", i) for i in tr] + [("a", i) for i in va]
        t_start = self._t_epoch = time.perf_counter()
        self._shared_s = 0.0
        truncated = False
        for kind, idx in merged:
            into = self._shared_s if self.dist.active else time.perf_counter() - t_start
            if self.cfg.budget_s is not None and st.elapsed_s + into >= self.cfg.budget_s:
                truncated = True  # out of time: end this (last) epoch early
                break
            x, y = self._get("train" if kind == "w" else "val", idx)
            if kind == "w":
                loss, correct, cost = self.weight_step(x, y)
                acc["w_loss"] += loss * len(y)
                acc["w_correct"] += correct
                n_w += len(y)
                s_w += 1
            else:
                loss, correct, cost = self.arch_step(x, y)
                acc["a_loss"] += loss * len(y)
                acc["a_correct"] += correct
                acc["cost"] += cost
                n_a += len(y)
                s_a += 1
            self._bar.advance(1 / len(merged))
        if self.dist.active:  # the epoch's sums over every rank's shard
            keys = list(acc)
            tot = self.dist.sum_(torch.stack([acc[k] for k in keys] + [
                torch.tensor(float(n), device=dev) for n in (n_w, n_a)]))
            acc = dict(zip(keys, tot[:len(keys)]))
            acc["cost"] = acc["cost"] / self.dist.world_size  # each rank's own draws' mean
            n_w, n_a = int(tot[-2].item()), int(tot[-1].item())
        vals = {k: float(v) for k, v in acc.items()}  # one host sync per epoch
        rec: dict[str, Any] = {
            "epoch": e, "tau": self.tau(), "lr": lr, "warmup": warm,
            "w_loss": vals["w_loss"] / max(n_w, 1), "w_acc": vals["w_correct"] / max(n_w, 1),
            "a_loss": vals["a_loss"] / max(n_a, 1) if n_a else None,
            "a_acc": vals["a_correct"] / max(n_a, 1) if n_a else None,
            "cost": vals["cost"] / s_a if s_a else None,
            "truncated": truncated,
        }
        rec.update(self.log_arch(self.net))
        rec.update(self.net.concentration())  # max_prob, entropy
        return rec

    def convergence(self) -> dict[str, Any]:
        """Where the search ended: the distribution's concentration, the last epoch's τ and the
        τ the plan ends at (None for a supernet without temperature), the epochs run."""
        st = self.state
        uses_tau = getattr(self.net, "uses_tau", True)
        last = st.history[-1]["tau"] if st.history else self.tau(0)
        return {**self.net.concentration(),
                "tau_final": float(last) if uses_tau else None,
                "tau_end_planned": self.tau(st.planned_epochs - 1) if uses_tau else None,
                "epochs": int(st.epoch)}

    def fit(self, stop_at: int | None = None) -> LoopState:
        """Train until the planned epochs (or the time budget) are done; resumable.

        ``stop_at`` ends this call after that epoch without changing the plan (as if the
        process were interrupted there)."""
        st = self.state
        bar = self._bar = Bar(st.planned_epochs, "supernet", "ep", initial=st.epoch,
                              disable=not self.progress)
        self.dist.broadcast_([*self.net.parameters(), *self.net.buffers()])  # rank 0's start
        while st.epoch < st.planned_epochs:
            t0 = time.perf_counter()
            rec = self.run_epoch()
            (dt,) = self.dist.mean([time.perf_counter() - t0])  # one clock for every rank
            st.elapsed_s += dt
            rec["seconds"] = dt
            st.history.append(rec)
            log_scalars(self.checkpoint if self.dist.is_main else None, "supernet", st.epoch,
                        rec)  # scalars.jsonl: what a live report reads
            st.epoch += 1
            if self.cfg.budget_s is not None and self._replan(dt):
                bar.set_total(st.planned_epochs)
            post = {"loss": f"{rec['w_loss']:.3f}", "acc": f"{rec['w_acc']:.3f}",
                    "tau": f"{rec['tau']:.2f}"}
            if rec["cost"] is not None:
                post["cost"] = f"{rec['cost']:.4g}"
            post["pmax"], post["H"] = f"{rec['max_prob']:.2f}", f"{rec['entropy']:.2f}"
            if rec.get("collapse"):  # a supernet's own warning (DARTS: skip connections)
                post["warn"] = str(rec["collapse"])
            bar.goto(st.epoch)
            bar.set(**post)
            self.save()
            if self.cfg.budget_s is not None and st.elapsed_s >= self.cfg.budget_s:
                break
            if stop_at is not None and st.epoch >= stop_at:
                break
        bar.close()
        return st

    def _replan(self, epoch_seconds: float) -> bool:
        """With a time budget: plan the epochs after the first one (an estimate of a search
        epoch's cost), and again after the first search epoch of step alternation (its measured
        cost), so that the last planned epoch — the one at the schedule's final τ — is the one
        the budget ends in. True when the plan was made."""
        st = self.state
        if st.epoch == 1:
            self._fit_plan_to_budget(epoch_seconds)
            return True
        if (st.planned_warmup > 0 and st.epoch == st.planned_warmup + 1
                and self.cfg.alternate == "step" and self.a_opt is not None):
            left = float(self.cfg.budget_s) - st.elapsed_s  # type: ignore[arg-type]
            more = int(left // max(epoch_seconds, 1e-6))
            st.planned_epochs = min(self.cfg.epochs, st.epoch + max(1, more))
            return True
        return False

    def _fit_plan_to_budget(self, epoch_seconds: float) -> None:
        """With a time budget, plan the cosine schedule and warm-up over the epochs that fit.

        ``epoch_seconds`` is the first epoch's time. When that was a warm-up epoch (w steps
        only), a search epoch costs more: with step alternation every w step is followed by a θ
        step of the same batch size (≈ 2×); with epoch alternation, w epochs and θ epochs over
        the val split alternate (≈ (1 + n_val/n_train) / 2 ×)."""
        st = self.state
        budget = float(self.cfg.budget_s)  # type: ignore[arg-type]
        dt = max(epoch_seconds, 1e-6)
        if st.planned_warmup > 0 and self.a_opt is not None:
            if self.cfg.alternate == "step":
                search_dt = 2.0 * dt
            else:
                search_dt = dt * (1.0 + self._steps("val") / self._steps("train")) / 2
        else:
            search_dt = dt
        frac = self.cfg.warmup_epochs / self.cfg.epochs
        fit = st.planned_epochs
        while fit > 2:
            warm = min(max(1, round(fit * frac)), fit - 1) if frac > 0 else 0
            if warm * dt + (fit - warm) * search_dt <= budget:
                break
            fit -= 1
        if fit < st.planned_epochs:
            st.planned_warmup = (min(max(1, round(fit * frac)), fit - 1) if frac > 0 else 0)
            st.planned_epochs = fit

    # -- checkpoint -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The loop's state (a collective under data parallelism: it gathers every rank's
        noise streams)."""
        aug = self.dist.gather_bytes(self.aug_gen.get_state())
        noise = self.dist.gather_bytes(self.gumbel_gen.get_state())
        return {
            "net": self.net.state_dict(),
            "w_opt": self.w_opt.state_dict(),
            "a_opt": self.a_opt.state_dict() if self.a_opt else None,
            "loop": asdict(self.state),
            "config": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in asdict(self.cfg).items()},
            "data_gen": self.data_gen.get_state(),
            "aug_gen": self.aug_gen.get_state(),
            "gumbel_gen": self.gumbel_gen.get_state(),
            "rng": rng_state(),
            "world_size": self.dist.world_size,
            "shared_gen": self.shared_gen.get_state(),
            "rank_gens": [{"aug": a, "gumbel": g} for a, g in zip(aug, noise)],
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.net.load_state_dict(sd["net"])
        self.w_opt.load_state_dict(sd["w_opt"])
        if self.a_opt and sd["a_opt"]:
            self.a_opt.load_state_dict(sd["a_opt"])
        self.state = LoopState(**sd["loop"])
        self.data_gen.set_state(sd["data_gen"])
        r = self.dist.rank
        ranks = sd.get("rank_gens") or [{"aug": sd["aug_gen"], "gumbel": sd["gumbel_gen"]}]
        if r < len(ranks):  # this rank's own streams, where it left them
            self.aug_gen.set_state(ranks[r]["aug"])
            self.gumbel_gen.set_state(ranks[r]["gumbel"])
        else:  # a rank the saved run did not have: fresh streams from (seed, rank, epoch)
            self.aug_gen.manual_seed(self._rank_seed(1, self.state.epoch))
            self.gumbel_gen.manual_seed(self._rank_seed(2, self.state.epoch))
        if "shared_gen" in sd:
            self.shared_gen.set_state(sd["shared_gen"])
        set_rng_state(sd["rng"])

    def save(self) -> None:
        """Checkpoint (rank 0 writes; under data parallelism every rank takes part)."""
        if self.checkpoint is None and not self.dist.active:
            return
        sd = self.state_dict()
        if self.checkpoint is not None and self.dist.is_main:
            from nasforge.files import save_checkpoint

            save_checkpoint(self.checkpoint, sd)

    def resume(self) -> bool:
        """Load the checkpoint if there is one; True when resumed."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return False
        from nasforge.files import RESUME_FIX, load_checkpoint

        self.load_state_dict(load_checkpoint(
            self.checkpoint, "supernet checkpoint", RESUME_FIX, map_location=self.device,
            keys=("net", "w_opt", "a_opt", "loop", "data_gen", "aug_gen", "gumbel_gen", "rng")))
        return True
