"""The ask/tell interface every sample-based strategy implements, and the helpers they share.

A strategy proposes architectures (:meth:`Strategy.ask`) and learns from their rewards
(:meth:`Strategy.tell`); asks and tells may interleave in any order (results arrive
asynchronously from the executors). ``state_dict()`` is plain JSON — RNG state included — and
a strategy is deterministic given it: the engine stores a snapshot of it in the trial store every
so many events and logs each ask and tell in between (``run/engine.py``); a resume loads the
snapshot and replays the log, and continues exactly. Strategies are looked up by name in
:data:`STRATEGIES` (a :class:`~nasforge.registry.Registry`); each one's defaults are its config
dataclass's, the same for the CLI and the library API.

Sequential strategies (Q-learning, REINFORCE) build an architecture decision by decision; a
space offers that view through the :class:`Sequential` protocol (``actions(prefix)``, …).
"""

from __future__ import annotations

import base64
import dataclasses
from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace


@runtime_checkable
class Sequential(Protocol):
    """A space seen as a sequence of decisions; actions are JSON values."""

    def actions(self, prefix: list) -> list: ...

    def is_complete(self, prefix: list) -> bool: ...

    def to_arch(self, prefix: list) -> Arch: ...

    def from_arch(self, arch: Arch) -> list: ...

    def vocabulary(self) -> list:
        """Every token any step can emit (REINFORCE's output layer)."""
        ...

    def token(self, action: Any) -> Any:
        """The vocabulary entry of ``action`` (position-free)."""
        ...


class Strategy(ABC):
    """ask/tell search strategy over a :class:`SearchSpace`."""

    name: str = ""
    #: ``state_dict()`` keys whose value is a list that only ever grows at its end (a replay
    #: memory): the engine stores only the rows added since its last snapshot, so the bytes it
    #: writes per trial stay flat however long the run
    append_only: tuple[str, ...] = ()
    #: fraction of the run used so far (trials or budget seconds), set by the engine before
    #: each ask; schedules that follow the run's length (Q-learning's ε) read it
    progress: float = 0.0

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.rng = np.random.default_rng(seed)

    @abstractmethod
    def ask(self) -> Arch:
        """The next architecture to evaluate."""

    @abstractmethod
    def tell(self, arch: Arch, reward: float) -> None:
        """The reward of an architecture this strategy asked for (any order)."""

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_to_json(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rng_from_json(self.rng, state["rng"])


def sequential(space: SearchSpace, strategy: str) -> Sequential:
    if not isinstance(space, Sequential):
        raise UserError(f"strategy {strategy!r} builds architectures decision by decision; space "
                        f"{space.name!r} does not offer actions(prefix) (use random or "
                        "evolution, or an NSC / categorical space)")
    return space  # type: ignore[return-value]


def rng_to_json(rng: np.random.Generator) -> dict[str, Any]:
    return rng.bit_generator.state


def rng_from_json(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


def config_from(cls: type, options: dict[str, Any] | None, strategy: str) -> Any:
    """A strategy config dataclass from user options; unknown names are an error."""
    options = dict(options or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise UserError(f"unknown option(s) {unknown} for strategy {strategy!r}; available: "
                        f"{sorted(names)}")
    return cls(**options)


def tensors_to_json(obj: Any) -> Any:
    """Tensors (nested in dicts/lists) as JSON data; :func:`tensors_from_json` inverts it."""
    if isinstance(obj, torch.Tensor):  # exact bytes, base64: compact and lossless
        a = obj.detach().cpu().contiguous().numpy()
        return {"__tensor__": base64.b64encode(a.tobytes()).decode(), "dtype": str(a.dtype),
                "shape": list(a.shape)}
    if isinstance(obj, dict):
        return {"__dict__": [[tensors_to_json(k), tensors_to_json(v)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [tensors_to_json(v) for v in obj]
    return obj


def tensors_from_json(obj: Any) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        raw = base64.b64decode(obj["__tensor__"])
        a = np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
        return torch.from_numpy(a.copy())
    if isinstance(obj, dict) and "__dict__" in obj:
        return {tensors_from_json(k): tensors_from_json(v) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [tensors_from_json(v) for v in obj]
    return obj


class StrategyFactory(Protocol):
    """What the registry holds: a strategy class (or any callable built the same way)."""

    def __call__(self, space: SearchSpace, seed: int = 0,
                 options: dict[str, Any] | None = None) -> Strategy: ...


def _builtins(registry: Registry[StrategyFactory]) -> None:
    """The shipped strategies, registered explicitly (imported on first use of the registry)."""
    from nasforge.strategies.evolution import RegularizedEvolution
    from nasforge.strategies.qlearning import QLearning
    from nasforge.strategies.random import RandomSearch
    from nasforge.strategies.reinforce import Reinforce

    for cls in (RandomSearch, RegularizedEvolution, Reinforce, QLearning):
        registry.register(cls.name, cls)


#: strategy name -> class ``cls(space, seed=, options=)``; register your own with
#: ``STRATEGIES.register("mine", MyStrategy)``
STRATEGIES: Registry[StrategyFactory] = Registry("strategy", builtins=_builtins)

#: other names of registered strategies (the CLI method ``blockqnn`` runs Q-learning)
ALIASES = {"blockqnn": "qlearning"}


def create_strategy(name: str, space: SearchSpace, seed: int = 0,
                    options: dict[str, Any] | None = None) -> Strategy:
    """A registered strategy by name (``blockqnn`` is an alias of ``qlearning``); its defaults
    are its config dataclass's, the same for the CLI and the API."""
    return STRATEGIES.get(ALIASES.get(name, name))(space, seed=seed, options=options)
