"""``nasforge.search(method, **settings) -> Result``: every search method as one library call.

It is the call ``nasforge search METHOD --flag …`` makes (the CLI only turns flags into these
keywords), so a script and the command line get the same run directory and the same result.
Not to be confused with :func:`nasforge.api.search`, which searches a user's categorical space.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasforge.errors import UserError
from nasforge.methods.registry import METHODS
from nasforge.methods.settings import SearchSettings, options
from nasforge.run.result import OPTIONAL_FIELDS, read_result
from nasforge.run.rundir import RunDir


@dataclass(frozen=True)
class Result:
    """A finished run: the ``result.json`` fields as attributes (and ``result[name]``), and the
    paths of the files the run wrote. ``model_onnx`` is None when the ONNX export was skipped
    (the onnx extra is not installed)."""

    method: str
    space: str
    dataset: str
    seed: int
    arch: dict[str, Any]
    val_acc: float
    test_acc: float
    params: int
    flops: int
    latency_ms: dict[str, Any]
    search_seconds: float
    train_seconds: float
    epochs: dict[str, int]
    run_dir: Path
    convergence: dict[str, Any] | None = None  # optional result.json field (supernets)
    budget: dict[str, Any] | None = None  # optional result.json field (planned/spent seconds)
    collapse: dict[str, Any] | None = None  # optional result.json field (DARTS skip collapse)
    world_size: int | None = None  # optional result.json field (supernet search processes)

    @classmethod
    def load(cls, run_dir: str | Path) -> Result:
        """The result of a finished run directory (validated against the schema)."""
        d = Path(run_dir)
        return cls(**read_result(d / "result.json"), run_dir=d)

    def to_dict(self) -> dict[str, Any]:
        """Exactly the ``result.json`` fields."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.pop("run_dir")
        return {k: v for k, v in d.items() if not (k in OPTIONAL_FIELDS and v is None)}

    def __getitem__(self, name: str) -> Any:
        return self.to_dict()[name]

    @property
    def result_json(self) -> Path:
        return self.run_dir / "result.json"

    @property
    def arch_json(self) -> Path:
        return self.run_dir / "arch.json"

    @property
    def model_pt(self) -> Path:
        return self.run_dir / "model.pt"

    @property
    def model_ts(self) -> Path:
        return self.run_dir / "model.ts"

    @property
    def model_onnx(self) -> Path | None:
        p = self.run_dir / "model.onnx"
        return p if p.is_file() else None

    @property
    def report_md(self) -> Path:
        return self.run_dir / "report.md"


def _names(cls: type[SearchSettings]) -> list[str]:
    return [o.name for o in options(cls) if o.name != "method"]


def make_settings(method: str, **settings: Any) -> SearchSettings:
    """The validated settings of a fresh ``method`` run: ``settings`` over the defaults."""
    spec = METHODS.get(method)
    valid = _names(spec.settings_cls)
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise UserError(f"unknown setting(s) {unknown} for method {method!r}; valid settings: "
                        f"{', '.join(valid)}")
    kw = dict(settings)
    if kw.get("out") is None:
        kw["out"] = f"runs/{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    kw["out"] = str(kw["out"])
    s = spec.settings_cls(method=method, **kw)
    s.validate()
    return s


def search(method: str, *, resume: str | Path | None = None, **settings: Any) -> Result:
    """Run search ``method`` (see ``nasforge search METHOD --help`` for the settings; the
    keywords are the flags' names with ``_``, e.g. ``latency_ms=2.0``) to the end: search,
    rank, train, export, measure. ``resume=RUN_DIR`` continues an interrupted run with the
    settings it was started with (only ``progress`` and ``nproc`` may be given with it)."""
    spec = METHODS.get(method)
    if resume is not None:
        given = sorted(set(settings) - {"progress", "nproc"})
        if given:
            raise UserError(f"a resumed run keeps the settings it was started with; drop "
                            f"{', '.join('--' + k.replace('_', '-') for k in given)} (or start a "
                            "new run without --resume)")
        rd, cfg = RunDir.open(resume, method=method, settings=spec.settings_cls)
        if cfg.get("method") != method:
            raise UserError(f"{str(resume)!r} is a {cfg.get('method')!r} run; resume it with "
                            f"`nasforge search {cfg.get('method')} --resume {resume}`")
        s = spec.settings_cls.from_dict(cfg)
        s.progress = bool(settings.get("progress", True))
        if "nproc" in settings:  # a data-parallel search may resume on another N
            s.nproc = settings["nproc"]  # type: ignore[attr-defined]
            s.validate()
        if (rd.path / "result.json").is_file():  # written last: nothing is left to do
            print(f"{rd.path}: the run is complete (result.json); nothing to resume",
                  file=sys.stderr)
            return Result.load(rd.path)
    else:
        s = make_settings(method, **settings)
        rd = RunDir.create(s.out, s.to_dict())  # type: ignore[arg-type]
    spec.run(s, rd)
    return Result.load(rd.path)
