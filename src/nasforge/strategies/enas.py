"""ENAS's search loop (Pham et al., ICML 2018; METHODS §6): shared weights and controller,
trained in alternation, then derivation by sampling.

Each epoch has two phases, as the paper's:

(a) **shared weights** ω: one pass over the train split (at most ``epoch_steps`` minibatches),
    each minibatch through *one* architecture the controller samples for it, single path
    (:mod:`nasforge.supernets.enas`); SGD with Nesterov momentum, the lr cosine over the
    planned epochs, weight decay, gradient clipping;
(b) **controller** θ: ``controller_steps`` REINFORCE updates
    (:meth:`~nasforge.strategies.enas_controller.EnasController.update`), each on
    ``aggregate`` sampled architectures, each scored by its accuracy on its own random
    validation minibatch with ω fixed.

**Derivation** (the paper's): sample ``derive_samples`` architectures from the trained policy,
score each on one validation minibatch (the same one for all), keep the best.

Children are scored with the BNs in training mode (batch statistics: the shared running
statistics mix every architecture, as ENAS's ``is_training=True`` evaluation avoids) and their
running statistics frozen (the validation batches leave no trace in ω's state).

Every epoch writes the checkpoint (ω, θ, both optimizers, baseline, the plan, every RNG) and
the controller's per-(edge, op) sampling frequencies (``history``; the method writes them to
``controller.json``). With ``budget_s`` the epochs are planned after the first one to what
fits (less the derivation's share), and an epoch that runs out of time stops at its step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.arch import Arch, thaw
from nasforge.data import Dataset
from nasforge.data.batches import batch_indices
from nasforge.device import rng_state, set_rng_state
from nasforge.errors import UserError
from nasforge.files import RESUME_FIX, load_checkpoint, save_checkpoint
from nasforge.progress import Bar
from nasforge.run.scalars import log_scalars
from nasforge.strategies.enas_controller import EnasController, marginals, to_arch
from nasforge.supernets.base import concentration
from nasforge.supernets.enas import SharedNet
from nasforge.train.amp import autocast, fused_kwargs, prepare_input, prepare_module
from nasforge.train.schedules import cosine_lr, set_lr

#: architectures sampled each epoch to record the policy's (edge, op) frequencies
PROBE_SAMPLES = 200
#: a budgeted search plans at least this many epochs (rounds of both phases): when the first
#: ω step shows that the configured epoch would not allow it, the epochs get fewer ω steps
MIN_BUDGET_EPOCHS = 4
#: scoring a child on a minibatch (forward only) costs about this share of an ω step
SCORE_SHARE = 1 / 3
CKPT_KEYS = ("net", "w_opt", "controller", "loop", "data_gen", "ctrl_gen", "rng")


@dataclass
class EnasConfig:
    """Defaults: the ENAS code's micro search (``cifar10_micro_search.sh``) unless noted."""

    epochs: int = 150
    batch_size: int = 160
    w_lr: float = 0.05  # cosine to w_lr_min
    w_lr_min: float = 0.0005
    w_momentum: float = 0.9  # Nesterov (paper)
    w_weight_decay: float = 1e-4
    grad_clip: float | None = 5.0
    controller_steps: int = 30  # θ updates per epoch …
    aggregate: int = 10  # … each over this many sampled architectures
    epoch_steps: int | None = None  # ω minibatches per epoch at most (None: the train split)
    derive_samples: int = 10
    budget_s: float | None = None
    amp: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "aggregate", "derive_samples"):
            if getattr(self, name) < 1:
                raise UserError(f"ENAS {name.replace('_', '-')} must be ≥ 1, got "
                                f"{getattr(self, name)}")
        if self.controller_steps < 0:
            raise UserError(f"ENAS controller-steps must be ≥ 0, got {self.controller_steps}")
        if self.epoch_steps is not None and self.epoch_steps < 1:
            raise UserError(f"ENAS epoch-steps must be ≥ 1 (or None), got {self.epoch_steps}")
        if self.w_lr <= 0 or self.w_lr_min < 0:
            raise UserError(f"ENAS w-lr must be > 0 and w-lr-min ≥ 0, got {self.w_lr} and "
                            f"{self.w_lr_min}")


@dataclass
class EnasState:
    epoch: int = 0
    planned_epochs: int = 0
    epoch_steps: int | None = None  # ω steps per epoch (a budgeted run may plan fewer)
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def frozen_bn_stats(net: nn.Module) -> Iterator[None]:
    """Train-mode BN (batch statistics) that leaves the running statistics as they are."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    old = [m.momentum for m in bns]
    was = net.training
    net.train()
    for m in bns:
        m.momentum = 0.0  # running = (1 − 0)·running + 0·batch
    try:
        yield
    finally:
        for m, mo in zip(bns, old):
            m.momentum = mo
        net.train(was)


class EnasLoop:
    """Shared-weight training and REINFORCE controller training, alternating (module docs)."""

    def __init__(self, net: SharedNet, controller: EnasController, space: Any, data: Dataset,
                 cfg: EnasConfig, *, seed: int = 0, checkpoint: str | Path | None = None,
                 progress: bool = True,
                 on_epoch: Callable[[EnasState], None] | None = None) -> None:
        self.cfg = cfg
        self.space = space
        self.data = data
        self.device = data.device
        self.net = prepare_module(net, self.device)
        self.controller = controller
        self._w_params = list(self.net.weight_parameters())
        self.w_opt = torch.optim.SGD(self._w_params, lr=cfg.w_lr, momentum=cfg.w_momentum,
                                     nesterov=cfg.w_momentum > 0,
                                     weight_decay=cfg.w_weight_decay,
                                     **fused_kwargs(self.device))
        self.data_gen = torch.Generator().manual_seed(seed)
        self.ctrl_gen = torch.Generator().manual_seed(seed + 1)
        self.seed = seed
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.progress = progress
        self.on_epoch = on_epoch
        self.state = EnasState(planned_epochs=cfg.epochs, epoch_steps=cfg.epoch_steps)
        self._paths: dict[str, Any] = {}
        self._score_s: list[float] = []  # seconds per child scored (the derivation's reserve)
        self._step_s: float | None = None  # seconds of the last ω step

    # -- architectures --------------------------------------------------------------------------
    def _sample(self, k: int) -> tuple[torch.Tensor, torch.Tensor, list[Arch]]:
        actions, ent = self.controller.sample(k, self.ctrl_gen)
        return actions, ent, [to_arch(self.space, a) for a in actions]

    def _path(self, arch: Arch) -> Any:
        key = arch.key()
        if key not in self._paths:
            self._paths[key] = self.net.path(arch)
        return self._paths[key]

    def _logits(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        with autocast(self.device, self.cfg.amp):
            return self.net.forward_arch(prepare_input(x), self._path(arch)).float()

    @torch.no_grad()
    def score(self, arch: Arch, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Accuracy of ``arch`` with the shared weights on one minibatch (a device scalar)."""
        t0 = time.perf_counter()
        with frozen_bn_stats(self.net):
            acc = (self._logits(x, arch).argmax(1) == y).float().mean()
        self._score_s = [*self._score_s[-49:], time.perf_counter() - t0]
        return acc

    # -- steps ----------------------------------------------------------------------------------
    def _get(self, split_name: str, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        split = getattr(self.data, split_name)
        idx = idx.to(self.device, non_blocking=True)
        return split.x.index_select(0, idx), split.y.index_select(0, idx)

    def _val_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.data.val)
        idx = torch.randperm(n, generator=self.data_gen)[:min(n, self.cfg.batch_size)]
        return self._get("val", idx)

    def shared_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One ω step on the architecture the controller samples for this minibatch."""
        _, _, (arch,) = self._sample(1)
        self.net.train()
        logits = self._logits(x, arch)
        loss = F.cross_entropy(logits, y)
        self.w_opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self._w_params, self.cfg.grad_clip)
        self.w_opt.step()
        return loss.detach() * len(y), (logits.detach().argmax(1) == y).sum()

    def controller_step(self) -> dict[str, float]:
        """One REINFORCE update over ``aggregate`` architectures, each on its own val batch."""
        actions, ent, archs = self._sample(self.cfg.aggregate)
        accs = torch.stack([self.score(a, *self._val_batch()) for a in archs]).cpu()
        out = self.controller.update(actions, accs, ent)
        return {**out, "val_acc": float(accs.mean()), "policy_entropy": float(ent.mean())}

    # -- epochs ---------------------------------------------------------------------------------
    def _score_time(self) -> float:
        """Seconds to score one child: measured, else estimated from an ω step."""
        if self._score_s:
            return sum(self._score_s) / len(self._score_s)
        return SCORE_SHARE * self._step_s if self._step_s is not None else 0.0

    def _reserve(self) -> float:
        """Seconds the derivation will take (its children at the scoring speed)."""
        return self.cfg.derive_samples * self._score_time()

    def _fit_epoch_steps(self, steps: int) -> None:
        """After the first ω step of a budgeted search: fewer ω steps per epoch if the
        configured epoch leaves fewer than :data:`MIN_BUDGET_EPOCHS` epochs in the budget."""
        cfg = self.cfg
        w = max(self._step_s or 0.0, 1e-6)
        per_epoch = float(cfg.budget_s) / MIN_BUDGET_EPOCHS  # type: ignore[arg-type]
        ctrl = cfg.controller_steps * cfg.aggregate * SCORE_SHARE * w
        fit = max(1, int((per_epoch - ctrl) // w))
        if fit < steps:
            self.state.epoch_steps = fit

    def _out_of_time(self, t_start: float) -> bool:
        b = self.cfg.budget_s
        return b is not None and (self.state.elapsed_s + time.perf_counter() - t_start
                                  + self._reserve() >= b)

    def run_epoch(self, bar: Bar) -> dict[str, Any]:
        st, cfg = self.state, self.cfg
        lr = cosine_lr(cfg.w_lr, st.epoch, st.planned_epochs, min_lr=cfg.w_lr_min)
        set_lr(self.w_opt, lr)
        n = len(self.data.train)
        idxs = batch_indices(n, cfg.batch_size, self.data_gen, shuffle=True,
                             drop_last=n > cfg.batch_size)
        if st.epoch_steps:
            idxs = idxs[:st.epoch_steps]
        total = len(idxs) + cfg.controller_steps
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        seen = steps = 0
        t0 = time.perf_counter()
        truncated = False
        for idx in idxs:
            if self._out_of_time(t0) or (st.epoch_steps and steps >= st.epoch_steps):
                truncated = not (st.epoch_steps and steps >= st.epoch_steps)
                break
            t_step = time.perf_counter()
            ls, c = self.shared_step(*self._get("train", idx))
            if cfg.budget_s is not None and steps == 0:  # an epoch's first step: its time
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                self._step_s = time.perf_counter() - t_step
                if st.epoch == 0:
                    self._fit_epoch_steps(len(idxs))
            loss_sum += ls
            correct += c
            seen += len(idx)
            steps += 1
            bar.advance(1 / total)
        ctrl: list[dict[str, float]] = []
        for _ in range(cfg.controller_steps):
            if truncated or self._out_of_time(t0):
                truncated = True
                break
            ctrl.append(self.controller_step())
            bar.advance(1 / total)
        probe_gen = torch.Generator().manual_seed(self.seed * 100_003 + st.epoch)
        probe = marginals(self.space, self.controller.sample(PROBE_SAMPLES, probe_gen)[0])
        rows = probe.pop("rows")

        def mean(key: str) -> float | None:
            return sum(c[key] for c in ctrl) / len(ctrl) if ctrl else None

        return {"epoch": st.epoch, "lr": lr, "w_loss": float(loss_sum) / max(seen, 1),
                "w_acc": float(correct) / max(seen, 1), "w_steps": steps,
                "controller_updates": len(ctrl), "reward": mean("reward"),
                "val_acc": mean("val_acc"), "advantage": mean("advantage"),
                "baseline": self.controller.baseline,
                "policy_entropy": mean("policy_entropy"), "truncated": truncated,
                **probe, **concentration(torch.as_tensor(r) for r in rows)}

    def fit(self, stop_at: int | None = None) -> EnasState:
        """Train to the planned epochs (or the budget); ``stop_at`` ends this call after that
        epoch, as an interruption would, without changing the plan."""
        st = self.state
        bar = Bar(st.planned_epochs, "enas search", "ep", initial=st.epoch,
                  disable=not self.progress)
        while st.epoch < st.planned_epochs:
            t0 = time.perf_counter()
            rec = self.run_epoch(bar)
            dt = time.perf_counter() - t0
            st.elapsed_s += dt
            rec["seconds"] = dt
            st.history.append(rec)
            log_scalars(self.checkpoint, "enas", st.epoch, rec)  # for a live report
            st.epoch += 1
            if self.cfg.budget_s is not None:
                self._replan(dt, rec["truncated"])
                bar.set_total(st.planned_epochs)
            bar.goto(st.epoch)
            post = {"loss": f"{rec['w_loss']:.3f}", "acc": f"{rec['w_acc']:.3f}"}
            if rec["val_acc"] is not None:
                post["val"] = f"{rec['val_acc']:.3f}"
                post["b"] = f"{rec['baseline']:.3f}"
            post["pmax"], post["H"] = f"{rec['max_prob']:.2f}", f"{rec['entropy']:.2f}"
            bar.set(**post)
            self.save()
            if self.on_epoch is not None:
                self.on_epoch(st)
            if stop_at is not None and st.epoch >= stop_at:
                break
        bar.close()
        return st

    def _replan(self, epoch_s: float, truncated: bool) -> None:
        """With a budget: after the first epoch, plan the epochs that fit (the cosine lr then
        ends with the budget); an epoch cut short by the clock is the last."""
        st = self.state
        if truncated:
            st.planned_epochs = st.epoch
        elif st.epoch == 1:
            left = float(self.cfg.budget_s) - st.elapsed_s - self._reserve()  # type: ignore[arg-type]
            st.planned_epochs = min(self.cfg.epochs, st.epoch + int(left // max(epoch_s, 1e-6)))

    # -- derivation -----------------------------------------------------------------------------
    def derive(self) -> tuple[Arch, list[dict[str, Any]]]:
        """ENAS's derivation: ``derive_samples`` architectures from the policy, each scored on
        the same validation minibatch; the best (the first of equals) and every score."""
        gen = torch.Generator().manual_seed(self.seed * 100_003 + 99_991)
        actions, _ = self.controller.sample(self.cfg.derive_samples, gen)
        n = len(self.data.val)
        x, y = self._get("val", torch.randperm(n, generator=gen)[:min(n, self.cfg.batch_size)])
        best: Arch | None = None
        scored: list[dict[str, Any]] = []
        for row in actions:
            a = to_arch(self.space, row)
            if any(r["key"] == a.key() for r in scored):
                continue
            acc = float(self.score(a, x, y))
            scored.append({"key": a.key(), "arch": thaw(a.genes), "val_acc": acc})
            if best is None or acc > max(r["val_acc"] for r in scored[:-1]):
                best = a
        assert best is not None
        return best, [{k: r[k] for k in ("arch", "val_acc")} for r in scored]

    # -- checkpoint -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "w_opt": self.w_opt.state_dict(),
                "controller": self.controller.checkpoint(), "loop": asdict(self.state),
                "data_gen": self.data_gen.get_state(), "ctrl_gen": self.ctrl_gen.get_state(),
                "score_s": self._score_s[-50:], "rng": rng_state()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.net.load_state_dict(sd["net"])
        self.w_opt.load_state_dict(sd["w_opt"])
        self.controller.restore(sd["controller"])
        self.state = EnasState(**sd["loop"])
        self.data_gen.set_state(sd["data_gen"])
        self.ctrl_gen.set_state(sd["ctrl_gen"])
        self._score_s = [float(v) for v in sd.get("score_s", [])]
        set_rng_state(sd["rng"])

    def save(self) -> None:
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, self.state_dict())

    def resume(self) -> bool:
        """Load the checkpoint if there is one; True when resumed."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return False
        self.load_state_dict(load_checkpoint(self.checkpoint, "ENAS checkpoint", RESUME_FIX,
                                             map_location=self.device, keys=CKPT_KEYS))
        return True
