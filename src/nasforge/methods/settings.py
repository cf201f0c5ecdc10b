"""Search settings: one dataclass field per option, with its default and help in one place.

Each field is declared with :func:`opt`, which puts the help text (and the allowed values) in the
field's metadata. The CLI generates its flags from these fields (``cli.py``), the library API
(:func:`nasforge.search`) takes them as keywords, and :meth:`SearchSettings.validate` checks
them, so a flag, its default and its check can never drift apart. A method's settings subclass
adds its own fields and changes a shared default by redeclaring the field.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from nasforge.cost.measure import check_target
from nasforge.errors import UserError

Text = str | Callable[[], str]
Choices = tuple[str, ...] | Callable[[], list[str]] | None


def opt(default: Any, help: Text, choices: Choices = None, *, cli: bool = True,
        positional: bool = False, required: bool = False) -> Any:
    """A settings field: ``default``, its ``help`` text and allowed ``choices`` (either may be a
    function, evaluated when the CLI is built, for lists that come from a registry).
    ``cli=False`` keeps a field out of the command line (library-only); ``positional`` makes
    it a positional argument; ``required`` makes the CLI insist on it."""
    md = {"help": help, "choices": choices, "cli": cli, "positional": positional,
          "required": required}
    if isinstance(default, (dict, list, set)):
        return dataclasses.field(default_factory=lambda d=default: copy.deepcopy(d), metadata=md)
    return dataclasses.field(default=default, metadata=md)


@dataclass(frozen=True)
class Option:
    """One settings field as the CLI and the checks see it."""

    name: str
    type: type  # str | int | float | bool | dict
    optional: bool  # ``X | None``
    default: Any
    help: str
    choices: tuple[str, ...] | None
    cli: bool
    positional: bool = False
    required: bool = False

    @property
    def flag(self) -> str:
        return self.name if self.positional else "--" + self.name.replace("_", "-")


def _unwrap(hint: Any) -> tuple[type, bool]:
    """``int`` -> (int, False); ``float | None`` -> (float, True); ``dict[str, Any]`` -> dict."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"settings fields take one type or X | None, got {hint}")
        return _unwrap(args[0])[0], True
    if origin is not None:
        return origin, False
    return hint, False


def options(cls: type) -> list[Option]:
    """The fields of ``cls`` in declaration order (a redeclared field keeps its place)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        base, optional = _unwrap(hints[f.name])
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        h = f.metadata.get("help", "")
        ch = f.metadata.get("choices")
        out.append(Option(f.name, base, optional, default, h() if callable(h) else h,
                          tuple(ch() if callable(ch) else ch) if ch else None,
                          f.metadata.get("cli", True), f.metadata.get("positional", False),
                          f.metadata.get("required", False)))
    return out


def _type_ok(o: Option, v: Any) -> bool:
    if v is None:
        return o.optional
    if o.type is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if o.type is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, o.type)


@dataclass
class SearchSettings:
    """Fields common to every search command (each method's settings extend this)."""

    method: str = opt("", "the search method (set by nasforge.search)", cli=False)
    out: str | None = opt(None, "run directory (default: runs/<method>-<time>)")
    dataset: str = opt("digits", "fashion-mnist | digits | cifar10 | synthetic | "
                       "imagefolder:PATH (digits is embedded in scikit-learn)")
    data_dir: str | None = opt(None, "folder with the data set files (or NASFORGE_DATA)")
    subset: int | None = opt(None, "use this many training images (quick runs)")
    target: str = opt("cpu", "latency target: cpu | onnx | cuda")
    device: str = opt("auto", "compute device for search/training: auto | cpu | cuda")
    seed: int = opt(0, "random seed of the search, the ranking and the final training")
    budget: float | None = opt(None, "search time budget in seconds")
    epochs: int | None = opt(None, "search epochs (default: the method's)")
    batch_size: int | None = opt(None, "search batch size (default: the method's)")
    threads: int = opt(1, "CPU threads for latency measurement")
    latency_ms: float | None = opt(None, "latency target of the derived model, ms on --target")
    flops: float | None = opt(None, "MACs target for the derived model")
    params: float | None = opt(None, "parameter-count target")
    peak_memory_mb: float | None = opt(None, "peak activation memory target of the derived "
                                       "model, MiB at batch 1")
    samples: int = opt(6, "architectures sampled from P_θ besides argmax")
    candidate_epochs: int = opt(2, "epochs to rank each candidate")
    train_epochs: int = opt(15, "epochs to train the best from scratch")
    train_budget: float | None = opt(None, "seconds for the final training")
    lut: str | None = opt(None, "latency table JSON to use / create")
    progress: bool = opt(True, "progress bars")
    extra: dict[str, Any] = opt({}, "library-only extras, e.g. {'recipe': {Recipe fields}}",
                                cli=False)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UserError(f"unknown setting(s) {sorted(unknown)} for {cls.__name__}")
        return cls(**d)

    def validate(self) -> None:
        for o in options(type(self)):
            v = getattr(self, o.name)
            if not _type_ok(o, v):
                want = o.type.__name__ + (" or None" if o.optional else "")
                raise UserError(f"{o.flag} must be {want}, got {v!r}")
            if o.choices and v is not None and v not in o.choices:
                raise UserError(f"{o.flag} must be one of {list(o.choices)}, got {v!r}")
        check_target(self.target)
        for name in ("budget", "latency_ms", "flops", "params", "peak_memory_mb",
                     "train_budget"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {v}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise UserError(f"--{name.replace('_', '-')} must be ≥ 1, got {v}")
        if self.samples < 0 or self.candidate_epochs < 0 or self.train_epochs < 1:
            raise UserError("--samples and --candidate-epochs must be ≥ 0, --train-epochs ≥ 1")


@dataclass
class SupernetSettings(SearchSettings):
    """Fields of every supernet (differentiable) search: FBNet, FBNetV2, DenseNAS, DARTS."""

    nproc: int = opt(1, "data-parallel processes for the supernet search on this machine "
                     "(torch.distributed: gloo on CPU, NCCL on CUDA, one GPU each); "
                     "--batch-size stays the global batch. Under torchrun, its world size "
                     "(docs/distributed.md). A resume may change it")

    def validate(self) -> None:
        super().validate()
        if self.nproc < 1:
            raise UserError(f"--nproc must be ≥ 1, got {self.nproc}")


@dataclass
class CostSupernetSettings(SupernetSettings):
    """A supernet search whose loss has a cost term (FBNet, FBNetV2, DenseNAS)."""

    below_target: str = opt("flat", "the loss's cost term below a target of its own cost "
                            "(--latency-ms with a latency cost, --flops with flops, --params "
                            "with params): flat (the loss sees max(cost, target), so cost saved "
                            "below the target earns nothing) | reward (the paper: lower is "
                            "always better)", ("flat", "reward"))
    fill_target: bool = opt(True, "also offer the derived architecture grown into what the "
                            "targets leave unused (single moves, the searched distribution's "
                            "likeliest first, never past a target); the ranking picks between "
                            "them, and without time to rank the grown one is trained")
