"""Toy objectives for engine / executor tests: importable (so spawned processes and Ray workers
can unpickle them) and deterministic."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def peak(config: dict[str, Any]) -> float:
    """Known optimum: every numeric decision at 1, every string decision 'b'."""
    r = 0.0
    for v in config.values():
        r -= abs(v - 1) if isinstance(v, (int, float)) else float(v != "b")
    return r


@dataclass
class Slow:
    """``peak`` after ``seconds`` of sleep; logs each finished call to ``log`` (one line)."""

    seconds: float = 0.2
    log: str | None = None

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.seconds)
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{sorted(config.items())}\n")
        return {"reward": peak(config), "pid": os.getpid()}


@dataclass
class KillOnce:
    """Kills its own worker process (SIGKILL) the first time it runs; later calls succeed.

    ``marker`` is a file path shared by all workers: it is created just before the kill.
    """

    marker: str

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        m = Path(self.marker)
        if not m.exists():
            m.write_text(str(os.getpid()))
            os.kill(os.getpid(), 9)
        return {"reward": peak(config), "pid": os.getpid()}


def always_fails(config: dict[str, Any]) -> float:
    raise RuntimeError(f"broken objective for {config}")
