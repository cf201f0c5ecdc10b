"""A run directory: claimed once, its resolved settings saved, resumed from its own files.

Layout: ``config.json`` (the resolved settings), checkpoints (``*.ckpt``), ``result.json``,
``run.json`` (extras), ``report.md``, ``arch.json``, ``model.pt`` / ``model.ts`` /
``model.onnx``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nasforge.errors import UserError
from nasforge.jsonio import write_json_atomic


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any]) -> RunDir:
        p = Path(path)
        if p.exists() and any(p.iterdir()):
            raise UserError(f"run directory {str(p)!r} already exists and is not empty; resume it "
                            f"with --resume {p} or choose a new --out")
        p.mkdir(parents=True, exist_ok=True)
        rd = cls(p)
        rd.write_json("config.json", config)
        return rd

    @classmethod
    def open(cls, path: str | Path) -> tuple[RunDir, dict[str, Any]]:
        p = Path(path)
        if not (p / "config.json").is_file():
            raise UserError(f"cannot resume {str(p)!r}: it has no config.json (not a nasforge run "
                            "directory)")
        rd = cls(p)
        return rd, rd.read_json("config.json")

    def write_json(self, name: str, data: Any) -> None:
        write_json_atomic(self.file(name), data, indent=2)

    def read_json(self, name: str, default: Any = None) -> Any:
        f = self.file(name)
        if not f.is_file():
            return default
        return json.loads(f.read_text())
