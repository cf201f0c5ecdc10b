"""The FBNetV3 predictor network and its stored form (METHODS §3).

::

    architecture encoding ─▶ MLP encoder ─▶ embedding ─┬─▶ proxy head ─▶ (log FLOPs, log params)
                                                       └─(+ recipe encoding)─▶ accuracy head ─▶ acc

The proxy head is pretrained on free samples (statistics computed, not trained for), which
teaches the encoder what the architecture *is*; the accuracy head then learns from the few
trained candidates (:mod:`nasforge.predictor.fit`). Without a recipe encoding (a space with no
recipe choices: architecture-only mode) the accuracy head sees the embedding alone.

Targets are standardised (log statistics, accuracy) with the mean and spread stored beside the
weights, so predictions come back in the caller's units. Accuracies are bounded: they are fitted
as ``logit((acc − lo) / (hi − lo))`` (``acc_bounds``, default ``(0, 1)``: fractions, as nasforge
measures them) and predicted through the sigmoid, so a head fitted on a dozen results cannot
extrapolate to an accuracy above 1 (an unbounded head predicted 1.44 for a measured 0.92).

On disk a predictor is ``<name>.json`` (configuration, encodings, target statistics, fit
history) and ``<name>.pt`` (a state dict of tensors only, read with
``torch.load(weights_only=True)``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.errors import UserError
from nasforge.files import load_checkpoint, read_json, save_checkpoint, write_json_atomic
from nasforge.predictor.encoding import Encoding

SCHEMA = "nasforge-predictor/1"
PREDICTOR_FIX = ("give the run directory of a finished `nasforge search jointnas` (its "
                 "predictor.json and predictor.pt), or run the coarse stage again")
PROXY_NAMES = ("flops", "params")
#: (choice) accuracies are clipped to [ε, 1 − ε] of their bounds before the logit (a measured
#: 1.0 on a small validation set maps to logit(1 − ε) ≈ 6.9, not infinity)
LOGIT_EPS = 1e-3


@dataclass
class PredictorConfig:
    hidden: int = 128  # (choice) encoder hidden width
    embedding: int = 64  # (choice) embedding width
    head_hidden: int = 64  # (choice) accuracy head hidden width

    def __post_init__(self) -> None:
        if min(self.hidden, self.embedding, self.head_hidden) < 1:
            raise UserError(f"predictor widths must be ≥ 1, got {asdict(self)}")


class PredictorNet(nn.Module):
    """Encoder MLP with a proxy head and an accuracy head (recipe concatenated to the
    embedding)."""

    def __init__(self, arch_dim: int, recipe_dim: int, cfg: PredictorConfig,
                 n_proxy: int = len(PROXY_NAMES)) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(arch_dim, cfg.hidden), nn.ReLU(),
                                     nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
                                     nn.Linear(cfg.hidden, cfg.embedding), nn.ReLU())
        self.proxy_head = nn.Linear(cfg.embedding, n_proxy)
        self.acc_head = nn.Sequential(nn.Linear(cfg.embedding + recipe_dim, cfg.head_hidden),
                                      nn.ReLU(), nn.Linear(cfg.head_hidden, 1))

    def proxy(self, xa: torch.Tensor) -> torch.Tensor:
        return self.proxy_head(self.encoder(xa))

    def forward(self, xa: torch.Tensor, xr: torch.Tensor | None = None) -> torch.Tensor:
        z = self.encoder(xa)
        if xr is not None and xr.shape[1] > 0:
            z = torch.cat([z, xr], dim=1)
        return self.acc_head(z).squeeze(1)


@dataclass
class Stats:
    """Mean and spread of standardised targets (one per output)."""

    mean: list[float]
    std: list[float]

    @classmethod
    def of(cls, y: np.ndarray) -> Stats:
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return cls([float(v) for v in y.mean(0)], [float(max(v, 1e-8)) for v in y.std(0)])

    def norm(self, y: np.ndarray) -> np.ndarray:
        return ((np.asarray(y, dtype=np.float64).reshape(len(y), -1) - self.mean)
                / self.std).astype(np.float32)

    def denorm(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.std + self.mean


@dataclass
class Predictor:
    """The network, its encodings and target statistics; ``pretrained`` keeps the state after
    the proxy pretraining so every refit of the accuracy head starts from it (a refit depends
    only on the data it is given: a resumed search refits to the same weights)."""

    arch_encoding: Encoding
    recipe_encoding: Encoding | None
    cfg: PredictorConfig = field(default_factory=PredictorConfig)
    seed: int = 0
    proxy_stats: Stats | None = None
    acc_stats: Stats | None = None
    history: dict[str, Any] = field(default_factory=dict)
    #: the range accuracies lie in (fitted in logit space); None: an unbounded regression
    acc_bounds: tuple[float, float] | None = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.acc_bounds is not None:
            lo, hi = map(float, self.acc_bounds)
            if not hi > lo:
                raise UserError(f"predictor acc_bounds must be (lo, hi) with hi > lo, got "
                                f"{self.acc_bounds}")
            self.acc_bounds = (lo, hi)
        self.reset()
        self.pretrained: dict[str, torch.Tensor] | None = None

    # -- the accuracy transform (bounded: logit space) ------------------------------------------
    def acc_to_fit(self, y: np.ndarray) -> np.ndarray:
        """Accuracies → the space the head regresses in (logit of the bounded fraction)."""
        y = np.asarray(y, dtype=np.float64)
        if self.acc_bounds is None:
            return y
        lo, hi = self.acc_bounds
        if y.size and (y.min() < lo or y.max() > hi):
            raise UserError(f"accuracies must lie in [{lo:g}, {hi:g}] (the predictor's "
                            f"acc_bounds), got {y.min():g} … {y.max():g}; pass fractions, or "
                            f"build the Predictor with acc_bounds=(0, 100) for percentages")
        u = np.clip((y - lo) / (hi - lo), LOGIT_EPS, 1 - LOGIT_EPS)
        return np.log(u / (1 - u))

    def acc_from_fit(self, t: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`acc_to_fit` (the sigmoid, back into ``acc_bounds``)."""
        t = np.asarray(t, dtype=np.float64)
        if self.acc_bounds is None:
            return t
        lo, hi = self.acc_bounds
        return lo + (hi - lo) / (1 + np.exp(-t))

    def reset(self) -> None:
        """A freshly initialised network (seeded: the same every time)."""
        rdim = self.recipe_encoding.dim if self.recipe_encoding is not None else 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = PredictorNet(self.arch_encoding.dim, rdim, self.cfg)

    @property
    def architecture_only(self) -> bool:
        return self.recipe_encoding is None

    def _tensor(self, x: np.ndarray | None) -> torch.Tensor | None:
        return None if x is None else torch.as_tensor(np.asarray(x, dtype=np.float32))

    @torch.no_grad()
    def predict(self, xa: np.ndarray, xr: np.ndarray | None = None) -> np.ndarray:
        """Predicted accuracy (the unit it was fitted in) for encoded rows."""
        if self.acc_stats is None:
            raise UserError("the predictor's accuracy head is not fitted yet")
        self.net.eval()
        z = self.net(self._tensor(xa), self._tensor(xr)).numpy()
        return self.acc_from_fit(self.acc_stats.denorm(z[:, None])[:, 0])

    @torch.no_grad()
    def predict_proxy(self, xa: np.ndarray) -> np.ndarray:
        """Predicted (FLOPs, params) for encoded rows."""
        if self.proxy_stats is None:
            raise UserError("the predictor's proxy head is not pretrained yet")
        self.net.eval()
        return np.exp(self.proxy_stats.denorm(self.net.proxy(self._tensor(xa)).numpy()))

    # -- files ---------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "config": asdict(self.cfg), "seed": self.seed,
                "arch_encoding": self.arch_encoding.to_dict(),
                "recipe_encoding": (None if self.recipe_encoding is None
                                    else self.recipe_encoding.to_dict()),
                "proxy_stats": None if self.proxy_stats is None else asdict(self.proxy_stats),
                "acc_stats": None if self.acc_stats is None else asdict(self.acc_stats),
                "acc_bounds": None if self.acc_bounds is None else list(self.acc_bounds),
                "history": self.history}

    def tensors(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "pretrained": self.pretrained}

    def save(self, directory: str | Path, name: str = "predictor") -> None:
        d = Path(directory)
        save_checkpoint(d / f"{name}.pt", self.tensors())
        write_json_atomic(d / f"{name}.json", self.meta(), indent=1)

    @classmethod
    def from_parts(cls, meta: dict[str, Any], tensors: dict[str, Any]) -> Predictor:
        if meta.get("schema") != SCHEMA:
            raise UserError(f"predictor schema {meta.get('schema')!r} is not {SCHEMA!r}")
        renc = meta["recipe_encoding"]
        p = cls(Encoding.from_dict(meta["arch_encoding"]),
                None if renc is None else Encoding.from_dict(renc),
                PredictorConfig(**meta["config"]), int(meta["seed"]),
                None if meta["proxy_stats"] is None else Stats(**meta["proxy_stats"]),
                None if meta["acc_stats"] is None else Stats(**meta["acc_stats"]),
                dict(meta.get("history") or {}),
                # a predictor stored before the bounded head regressed accuracy directly
                None if meta.get("acc_bounds") is None else tuple(meta["acc_bounds"]))
        p.net.load_state_dict(tensors["net"])
        p.pretrained = tensors.get("pretrained")
        return p

    @classmethod
    def load(cls, directory: str | Path, name: str = "predictor") -> Predictor:
        """The predictor stored in ``directory`` (one UserError naming a missing, damaged or
        foreign file)."""
        d = Path(directory)
        meta = read_json(d / f"{name}.json", "predictor", PREDICTOR_FIX)
        tensors = load_checkpoint(d / f"{name}.pt", "predictor weights", PREDICTOR_FIX,
                                  keys=("net", "pretrained"))
        try:
            return cls.from_parts(meta, tensors)
        except (KeyError, TypeError, RuntimeError, UserError) as e:
            raise UserError(f"cannot read predictor {str(d / (name + '.json'))!r}: "
                            f"{type(e).__name__}: {e}; {PREDICTOR_FIX}") from None
