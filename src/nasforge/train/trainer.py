"""Train a standalone model from scratch with a training *recipe* (FBNetV3's h): optimizer,
lr, weight decay, label smoothing, mixup, EMA, dropout, drop path, augmentation, epochs — all
fields of :class:`Recipe`. Checkpoints every epoch and resumes exactly.

How each recipe field acts (``tests/test_recipe.py`` checks each):

- ``mixup`` α: each batch is mixed with a permutation of itself, ``x̃ = λx + (1−λ)x[π]``, and
  so are the (label-smoothed) one-hot targets, ``ỹ = λy + (1−λ)y[π]`` (:func:`mixup_batch`),
  with λ ~ Beta(α, α) drawn from the trainer's seeded generator (a resume draws the same λ);
- ``ema`` decay: a copy of the weights follows ``θ̄ ← d·θ̄ + (1−d)·θ`` after every step, with
  the warm-up ``d = min(ema, (1 + t)/(10 + t))`` at step t (TensorFlow's ``num_updates``
  rule; without it a short training's average is mostly the random initialisation); the
  EMA weights are the ones evaluated, returned and exported;
- ``dropout``: sets the classifier dropout of models that have one (``dropout_p``); None
  keeps the model's own;
- ``drop_path``: models with ``drop_path_prob`` (DARTS cells, FBNetV2/V3 residual blocks)
  drop residual branches in training only, raised linearly over the epochs
  (``drop_path_schedule="linear"``, DARTS) or at the full rate from the start
  (``"constant"``, FBNetV3's stochastic depth).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from scipy.special import betaincinv
from torch import nn

from nasforge.data import Dataset, random_crop_flip
from nasforge.data.batches import batch_indices, default_batch_size
from nasforge.device import rng_state, set_rng_state
from nasforge.errors import UserError
from nasforge.files import RESUME_FIX, load_checkpoint, save_checkpoint
from nasforge.progress import Bar
from nasforge.train.amp import autocast, fused_kwargs, prepare_input, prepare_module
from nasforge.train.evaluate import accuracy
from nasforge.train.schedules import cosine_lr, set_lr

OPTIMIZERS = ("sgd", "adamw", "rmsprop")
#: steps timed before a budget plans the schedule (the first one, slow, is left out)
PROBE_STEPS = 4
DROP_PATH_SCHEDULES = ("linear", "constant")


@dataclass
class Recipe:
    epochs: int = 30
    batch_size: int | None = None  # None: n_train // 40 clamped to [32, 128] (small sets get
    # enough steps per epoch for short rankings to mean something)
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.1
    mixup: float = 0.0  # Beta(α, α) mixing; 0 disables
    ema: float = 0.0  # EMA decay of weights; 0 disables
    augment: bool = True  # random translation ±2 px + horizontal flip
    flip: bool = True
    grad_clip: float | None = 5.0
    budget_s: float | None = None
    #: train exactly this many optimizer steps (fewer when the epochs hold fewer), the
    #: learning-rate schedule planned over them: a ranking gives its candidates equal steps,
    #: as their full trainings will have (None: the epochs in full)
    steps: int | None = None
    amp: bool = True
    # DARTS's final training: the auxiliary head's loss weight (models with
    # ``forward_with_aux``) and drop path raised linearly to this (models with
    # ``drop_path_prob``); 0 disables either
    aux_weight: float = 0.0
    drop_path: float = 0.0
    drop_path_schedule: str = "linear"  # linear: p·epoch/epochs (DARTS); constant: p
    dropout: float | None = None  # classifier dropout of models with ``dropout_p``

    def __post_init__(self) -> None:
        if not (self.aux_weight >= 0 and 0 <= self.drop_path < 1):
            raise UserError(f"recipe aux_weight must be ≥ 0 and drop_path in [0, 1), got "
                            f"{self.aux_weight} and {self.drop_path}")
        if self.drop_path_schedule not in DROP_PATH_SCHEDULES:
            raise UserError(f"recipe drop_path_schedule {self.drop_path_schedule!r} unknown; "
                            f"choose from {list(DROP_PATH_SCHEDULES)}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise UserError(f"recipe dropout must be in [0, 1), got {self.dropout}")
        if self.mixup < 0:
            raise UserError(f"recipe mixup must be ≥ 0 (0 disables), got {self.mixup}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"recipe optimizer {self.optimizer!r} unknown; choose from "
                            f"{list(OPTIMIZERS)}")
        if self.epochs < 1:
            raise UserError(f"recipe epochs must be ≥ 1, got {self.epochs}")
        if self.steps is not None and self.steps < 1:
            raise UserError(f"recipe steps must be ≥ 1 (or absent for the epochs in full), got "
                            f"{self.steps}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"recipe batch_size must be ≥ 1, got {self.batch_size}")
        if not 0.0 <= self.ema < 1.0:
            raise UserError(f"recipe ema must be in [0, 1), got {self.ema}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserError(f"unknown recipe field(s) {sorted(unknown)}")
        return cls(**d)


@dataclass
class TrainResult:
    val_acc: float
    test_acc: float
    epochs: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def mixup_batch(x: torch.Tensor, y: torch.Tensor, alpha: float, num_classes: int,
                gen: torch.Generator, label_smoothing: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al.): inputs and their (smoothed) one-hot targets mixed with a
    permutation of the batch by the same λ ~ Beta(α, α), drawn from ``gen`` (inverse CDF of a
    seeded uniform, so a resumed training draws the same λ). Returns (x̃, soft targets, λ)."""
    u = float(torch.rand((), generator=gen))
    lam = float(betaincinv(alpha, alpha, u))
    perm = torch.randperm(len(y), generator=gen).to(x.device)
    soft = F.one_hot(y, num_classes).float()
    if label_smoothing > 0:
        soft = soft * (1 - label_smoothing) + label_smoothing / num_classes
    return (lam * x + (1 - lam) * x.index_select(0, perm),
            lam * soft + (1 - lam) * soft.index_select(0, perm), lam)


def _make_optimizer(params: list[nn.Parameter], r: Recipe,
                    device: torch.device) -> torch.optim.Optimizer:
    fk = fused_kwargs(device)
    if r.optimizer == "sgd":
        return torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, nesterov=r.nesterov,
                               weight_decay=r.weight_decay, **fk)
    if r.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay, **fk)
    return torch.optim.RMSprop(params, lr=r.lr, momentum=r.momentum, alpha=0.9, eps=0.02,
                               weight_decay=r.weight_decay)


class Trainer:
    def __init__(self, model: nn.Module, data: Dataset, recipe: Recipe, *, seed: int = 0,
                 checkpoint: str | Path | None = None, progress: bool = True,
                 desc: str = "train", share: tuple[int, int] = (1, 1)) -> None:
        self.r = recipe
        self.data = data
        self.device = data.device
        self.model = prepare_module(model, self.device)
        if recipe.dropout is not None and hasattr(self.model, "dropout_p"):
            self.model.dropout_p = recipe.dropout
        self.opt = _make_optimizer(list(self.model.parameters()), recipe, self.device)
        self.ema_model = copy.deepcopy(self.model).eval() if recipe.ema > 0 else None
        self.gen = torch.Generator().manual_seed(seed)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.progress = progress
        self.desc = desc
        self.share = share  # the bar is part i of n of its stage (candidate i of n)
        self._test = True  # fit(test=...): the final evaluation includes the test split
        #: (seconds, images) of the first step (allocations, kernel selection: often several
        #: times a later one); the evaluation reserve's time per image leaves it out
        self._first: tuple[float, int] | None = None
        self.epoch = 0
        self.steps = 0  # optimizer steps taken (the EMA warm-up follows it)
        self.planned_epochs = recipe.epochs
        #: the learning-rate schedule's length in steps once a budget has cut it (None: the
        #: recipe's epochs): a budget-cut training still warms up and decays to the end
        self.total_steps: int | None = None
        self.elapsed_s = 0.0
        self.history: list[dict[str, Any]] = []

    def _step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, ...]:
        r = self.r
        set_lr(self.opt, lr)
        if r.augment:
            x = random_crop_flip(x, self.gen, flip=r.flip)
        target: torch.Tensor = y
        if r.mixup > 0:
            x, target, _ = mixup_batch(x, y, r.mixup, self.data.num_classes, self.gen,
                                       r.label_smoothing)
        aux = None
        with autocast(self.device, r.amp):
            if r.aux_weight > 0 and hasattr(self.model, "forward_with_aux"):
                logits, aux = self.model.forward_with_aux(prepare_input(x))
            else:
                logits = self.model(prepare_input(x))
        logits = logits.float()

        def ce(out: torch.Tensor) -> torch.Tensor:
            if r.mixup > 0:  # soft targets, already smoothed
                return torch.sum(-target * F.log_softmax(out, 1), 1).mean()
            return F.cross_entropy(out, y, label_smoothing=r.label_smoothing)

        loss = ce(logits)
        if aux is not None:
            loss = loss + r.aux_weight * ce(aux.float())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if r.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), r.grad_clip)
        self.opt.step()
        self.steps += 1
        if self.ema_model is not None:
            decay = min(r.ema, self.steps / (self.steps + 9))  # (1 + t)/(10 + t), t = steps − 1
            with torch.no_grad():
                for pe, pm in zip(self.ema_model.parameters(), self.model.parameters()):
                    pe.lerp_(pm, 1.0 - decay)
                for be, bm in zip(self.ema_model.buffers(), self.model.buffers()):
                    be.copy_(bm)
        return loss.detach() * len(y), (logits.detach().argmax(1) == y).sum()

    def batch_size(self) -> int:
        if self.r.batch_size is not None:
            return self.r.batch_size
        return default_batch_size(len(self.data.train), cap=128)

    def steps_per_epoch(self) -> int:
        """Optimizer steps an epoch takes: the last partial batch is dropped (a batch of a few
        images would step on a noisy gradient), so the schedule's last step is one taken."""
        n, bs = len(self.data.train), self.batch_size()
        return n // bs if n > bs else 1

    def fit(self, stop_at: int | None = None, *, test: bool = True) -> TrainResult:
        """Train to the planned epochs; ``stop_at`` ends this call early (as an interruption
        would) without changing the schedule. ``test=False`` skips the test-set accuracy
        (``nan``): a ranking needs only the validation accuracy.

        With ``recipe.budget_s`` the training is cut to what fits, and so is its learning-rate
        schedule: after :data:`PROBE_STEPS` steps the schedule (warm-up share and cosine decay)
        is planned over the steps whose measured time, plus the final evaluation's, fits the
        budget. A cut training thus ends with its rate decayed, not a few steps into a schedule
        planned for all the epochs (which left short budgeted rankings at chance accuracy).
        Each epoch's end plans again with the epoch's time, only ever shorter (the machine
        slowed down); a step that would run past the budget anyway stops the training."""
        r = self.r
        n = len(self.data.train)
        bs = self.batch_size()
        steps_per_epoch = self.steps_per_epoch()
        self._test = test
        if r.steps is not None and self.total_steps is None:
            self.total_steps = min(r.steps, r.epochs * steps_per_epoch)
            self.planned_epochs = min(self.planned_epochs,
                                      -(-self.total_steps // steps_per_epoch))
        bar = Bar(self.planned_epochs, self.desc, "ep", initial=self.epoch,
                  disable=not self.progress, share=self.share)
        while self.epoch < self.planned_epochs:
            t0 = time.perf_counter()
            self.model.train()
            if r.drop_path > 0 and hasattr(self.model, "drop_path_prob"):
                self.model.drop_path_prob = (r.drop_path if r.drop_path_schedule == "constant"
                                             else r.drop_path * self.epoch / self.planned_epochs)
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), device=self.device, dtype=torch.long)
            idxs = batch_indices(n, bs, self.gen, drop_last=n > bs)
            seen = 0
            truncated = False
            for i, idx in enumerate(idxs):
                step = self.epoch * steps_per_epoch + i
                if r.budget_s is not None:
                    spent = self.elapsed_s + time.perf_counter() - t0
                    if self.total_steps is None and self.steps >= PROBE_STEPS:
                        self._plan_steps(spent, step, steps_per_epoch)
                if self.total_steps is not None and step >= self.total_steps:
                    truncated = True  # the planned steps are done
                    break
                if r.budget_s is not None:
                    if i > 0 and not (self.epoch == 0 and i == 1) and spent + \
                            self._eval_reserve(spent, self.epoch * n + seen) >= r.budget_s:
                        truncated = True  # out of time inside an epoch: this is the last one
                        break
                total, warmup = self._schedule(steps_per_epoch)
                lr = cosine_lr(r.lr, step, total, warmup=warmup)
                ls, c = self._train_batch(idx, lr)
                if self._first is None:  # the warm-up step: kept out of the time per image
                    self._first = (self.elapsed_s + time.perf_counter() - t0, len(idx))
                loss_sum += ls
                correct += c
                seen += len(idx)
                bar.advance(1 / len(idxs))
            dt = time.perf_counter() - t0
            self.elapsed_s += dt
            rec = {"epoch": self.epoch, "loss": float(loss_sum) / max(seen, 1),
                   "train_acc": float(correct) / max(seen, 1), "seconds": dt,
                   "truncated": truncated}
            self.history.append(rec)
            self.epoch += 1
            if r.budget_s is not None:
                self._fit_to_budget(truncated, steps_per_epoch)
                bar.set_total(self.planned_epochs)
            bar.goto(self.epoch)
            bar.set(loss=f"{rec['loss']:.3f}", acc=f"{rec['train_acc']:.3f}")
            self.save()
            if stop_at is not None and self.epoch >= stop_at:
                break
        bar.close()
        final = self.final_model()
        return TrainResult(val_acc=accuracy(final, self.data.val),
                           test_acc=accuracy(final, self.data.test) if test else float("nan"),
                           epochs=self.epoch, seconds=self.elapsed_s, history=self.history)

    def _train_batch(self, idx: torch.Tensor, lr: float) -> tuple[torch.Tensor, ...]:
        idx = idx.to(self.device, non_blocking=True)
        return self._step(self.data.train.x.index_select(0, idx),
                          self.data.train.y.index_select(0, idx), lr)

    def eval_seconds(self, seconds_per_image: float, *, test: bool) -> float:
        """Seconds the final evaluation takes at a training time per image: forward passes
        only (≈ a third of a training step per image) over val (and test)."""
        n_eval = len(self.data.val) + (len(self.data.test) if test else 0)
        return seconds_per_image * n_eval / 3

    def _eval_reserve(self, seconds: float, images: int) -> float:
        """:meth:`eval_seconds` at the training time per image so far (the first, slow step
        left out)."""
        if self._first is not None and images > self._first[1]:
            seconds, images = seconds - self._first[0], images - self._first[1]
        return self.eval_seconds(max(seconds, 0.0) / max(images, 1), test=self._test)

    def seconds_per_step(self, steps: int = PROBE_STEPS) -> float:
        """Seconds one training step takes here: ``steps`` timed after an untimed first one
        (allocations, kernel selection), on the first batches, at the recipe's rate. It
        trains the model, so probe a copy or a model that is thrown away."""
        n = len(self.data.train)
        idxs = batch_indices(n, self.batch_size(), self.gen, drop_last=n > self.batch_size())
        self.model.train()
        times = []
        for i in range(steps + 1):  # a split of one batch repeats it
            t0 = time.perf_counter()
            ls, _ = self._train_batch(idxs[i % len(idxs)], self.r.lr)
            float(ls)  # the step is done (CUDA runs ahead)
            if i > 0:
                times.append(time.perf_counter() - t0)
        return sum(times) / len(times)

    def _schedule(self, steps_per_epoch: int) -> tuple[float, float]:
        """(total, warm-up) steps of the learning-rate schedule: the recipe's epochs, or the
        steps a budget planned, the warm-up keeping its share of the schedule."""
        full = self.r.epochs * steps_per_epoch
        total = full if self.total_steps is None else min(self.total_steps, full)
        return total, self.r.warmup_epochs * steps_per_epoch * total / full

    def _plan_steps(self, spent: float, step: int, steps_per_epoch: int) -> None:
        """The schedule's length: this step plus the steps that fit what is left of the budget
        after the final evaluation, at the time per step so far (the first step left out)."""
        if self._first is not None and self.steps > 1:
            per_step = (spent - self._first[0]) / (self.steps - 1)
        else:
            per_step = spent / max(self.steps, 1)
        reserve = self.eval_seconds(per_step / self.batch_size(), test=self._test)
        fit = int((self.r.budget_s - spent - reserve) / max(per_step, 1e-9))  # type: ignore[operator]
        self.total_steps = min(self.r.epochs * steps_per_epoch, step + max(fit, 1))
        self.planned_epochs = min(self.planned_epochs, -(-self.total_steps // steps_per_epoch))

    def _fit_to_budget(self, truncated: bool, steps_per_epoch: int) -> None:
        """Cut the planned epochs to those that fit ``budget_s`` at the mean epoch time so far,
        keeping room for the final evaluation, and the schedule with them (never longer than
        planned, never more epochs than the recipe's)."""
        if truncated:
            self.planned_epochs = self.epoch
            return
        per_epoch = self.elapsed_s / max(self.epoch, 1)
        reserve = self._eval_reserve(self.elapsed_s, self.epoch * len(self.data.train))
        left = self.r.budget_s - reserve - self.elapsed_s  # type: ignore[operator]
        fit = int(left / max(per_epoch, 1e-6))
        if self.epoch == 1 or self.epoch + fit < self.planned_epochs:
            self.planned_epochs = max(self.epoch, min(self.planned_epochs, self.epoch + fit))
        end = self.planned_epochs * steps_per_epoch
        if self.total_steps is None or end < self.total_steps:
            self.total_steps = end

    def final_model(self) -> nn.Module:
        return self.ema_model if self.ema_model is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "ema": self.ema_model.state_dict() if self.ema_model is not None else None,
                "gen": self.gen.get_state(), "epoch": self.epoch, "steps": self.steps,
                "planned_epochs": self.planned_epochs, "total_steps": self.total_steps,
                "elapsed_s": self.elapsed_s,
                "history": self.history, "recipe": asdict(self.r), "rng": rng_state()}

    def save(self) -> None:
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, self.state_dict())

    def resume(self) -> bool:
        if self.checkpoint is None or not self.checkpoint.is_file():
            return False
        sd = load_checkpoint(self.checkpoint, "training checkpoint", RESUME_FIX,
                             map_location=self.device,
                             keys=("model", "opt", "ema", "gen", "epoch", "planned_epochs",
                                   "elapsed_s", "history", "rng"))
        self.model.load_state_dict(sd["model"])
        self.opt.load_state_dict(sd["opt"])
        if self.ema_model is not None and sd["ema"] is not None:
            self.ema_model.load_state_dict(sd["ema"])
        self.gen.set_state(sd["gen"])
        self.epoch, self.planned_epochs = sd["epoch"], sd["planned_epochs"]
        self.steps = int(sd.get("steps", 0))
        total = sd.get("total_steps")  # absent from a checkpoint written before budgets cut it
        self.total_steps = None if total is None else int(total)
        self.elapsed_s, self.history = sd["elapsed_s"], sd["history"]
        set_rng_state(sd["rng"])
        return True


def train_model(model: nn.Module, data: Dataset, recipe: Recipe, *, seed: int = 0,
                checkpoint: str | Path | None = None, progress: bool = True,
                desc: str = "train", share: tuple[int, int] = (1, 1),
                test: bool = True) -> tuple[nn.Module, TrainResult]:
    """Train (resuming from ``checkpoint`` when present); returns the final (EMA) model.
    ``share``: this training is part i of n of its stage (for the command's ETA); ``test``:
    measure the test accuracy too."""
    t = Trainer(model, data, recipe, seed=seed, checkpoint=checkpoint, progress=progress,
                desc=desc, share=share)
    t.resume()
    res = t.fit(test=test)
    return t.final_model(), res
