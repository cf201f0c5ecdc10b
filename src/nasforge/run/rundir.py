"""A run directory: claimed once, its resolved settings saved, resumed from its own files.

Layout: ``config.json`` (the resolved settings), checkpoints (``*.ckpt``), ``result.json``,
``run.json`` (extras), ``report.md``, ``arch.json``, ``model.pt`` / ``model.ts`` /
``model.onnx``. Every file is read through :mod:`nasforge.files`, so a damaged or foreign file
is one error naming it, never a traceback half-way through a resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasforge.errors import UserError
from nasforge.files import check_fields, fail, parse_as, read_json, write_json_atomic

CONFIG_FIX = ("resume only a directory `nasforge search` created (its config.json holds the "
              "run's settings), or start a new run with --out")
FILE_FIX = "delete it to have the run recompute it, or start a new run with --out"


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any]) -> RunDir:
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise UserError(f"run directory {str(p)!r} is a file; choose a new --out")
        if p.exists() and any(p.iterdir()):
            raise UserError(f"run directory {str(p)!r} already exists and is not empty; resume it "
                            f"with --resume {p} or choose a new --out")
        p.mkdir(parents=True, exist_ok=True)
        rd = cls(p)
        rd.write_json("config.json", config)
        return rd

    @classmethod
    def open(cls, path: str | Path, method: str | None = None,
             settings: type | None = None) -> tuple[RunDir, dict[str, Any]]:
        """A run directory to resume and its saved settings. ``method``: the run must be one of
        that method; ``settings``: a dataclass whose fields (and their JSON types) the saved
        settings must match."""
        p = Path(path)
        cfg = p / "config.json"
        if not p.is_dir() or not cfg.exists():
            raise UserError(f"cannot resume {str(p)!r}: it has no config.json (not a nasforge run "
                            "directory); give the --out folder of an earlier search")
        data = read_json(cfg, "run configuration", CONFIG_FIX)
        saved = data.get("method")
        if not isinstance(saved, str) or not saved:
            raise fail("run configuration", cfg, "it is not a nasforge run configuration (no "
                       "'method' field)", CONFIG_FIX)
        if method is not None and saved != method:
            raise fail("run configuration", cfg, f"it is a {saved!r} run, not {method!r}",
                       f"resume it with `nasforge search {saved} --resume {p}`")
        if settings is not None:
            parse_as(cfg, "run configuration", CONFIG_FIX, data,
                     lambda d: check_fields(d, settings, "setting"))
        return cls(p), data

    def write_json(self, name: str, data: Any) -> None:
        write_json_atomic(self.file(name), data, indent=2)

    def read_json(self, name: str, default: Any = None) -> Any:
        """A JSON file of the run (``default`` when it does not exist yet)."""
        f = self.file(name)
        if not f.exists():
            return default
        return read_json(f, f"run file {name}", FILE_FIX,
                         expect=None if default is None else type(default))
