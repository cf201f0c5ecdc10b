"""Progress bars that move within an epoch and show when the whole *command* will end.

A search command runs its stages one after another (search, rank, train, export_measure; see
:mod:`nasforge.methods.budget`). The runner starts one :class:`CommandClock` and tells it, as
each stage starts, the seconds that stage may take (its cap under ``--budget``) and the
seconds planned for the stages after it. Every stage's bar is a :class:`Bar`: callers move it
per batch (by fractions of an epoch) or per item, it redraws at least every second, and its
postfix ends with ``cmd ETA m:ss`` — what is left of this stage (the bar's own rate, at most
the stage's cap) plus the later stages' plan. A ``+`` after the time says later stages are not
estimated yet (no ``--budget``). Without a clock (a trainer called from a script) a bar shows
its own stage only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

_CLOCKS: list[CommandClock] = []


def clock_time(seconds: float) -> str:
    """``83`` -> ``'1:23'``; ``3725`` -> ``'1:02:05'``."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class CommandClock:
    """The whole command's clock: the stage running, its cap, and the later stages' plan."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.stage: str | None = None
        self.stage_t0 = self.t0
        self.cap: float | None = None  # seconds the running stage may take (None: not capped)
        self.later: float | None = None  # seconds planned after it (None: not known)

    def enter(self, stage: str, cap: float | None, later: float | None) -> None:
        self.stage, self.stage_t0, self.cap, self.later = stage, time.perf_counter(), cap, later

    def stage_elapsed(self) -> float:
        return time.perf_counter() - self.stage_t0

    def eta(self, stage_left: float | None = None) -> float | None:
        """Seconds to the command's end: ``stage_left`` (a bar's estimate for this stage) at
        most the cap's remainder, plus the later stages' plan; None when nothing is known."""
        cap_left = None if self.cap is None else max(0.0, self.cap - self.stage_elapsed())
        lefts = [v for v in (stage_left, cap_left) if v is not None]
        if not lefts:
            return None
        return min(lefts) + (self.later or 0.0)

    def label(self, stage_left: float | None = None) -> str:
        e = self.eta(stage_left)
        if e is None:
            return "cmd ETA ?"
        return f"cmd ETA {clock_time(e)}{'+' if self.later is None else ''}"


def push(clock: CommandClock) -> None:
    """Make ``clock`` the one bars read (until :func:`pop`)."""
    _CLOCKS.append(clock)


def pop(clock: CommandClock) -> None:
    if clock in _CLOCKS:
        _CLOCKS.remove(clock)


@contextmanager
def installed(clock: CommandClock) -> Iterator[CommandClock]:
    """Make ``clock`` the one bars read while the block runs."""
    push(clock)
    try:
        yield clock
    finally:
        pop(clock)


def current() -> CommandClock | None:
    return _CLOCKS[-1] if _CLOCKS else None


def command_eta(stage_left: float | None = None) -> str:
    """``' | cmd ETA 1:23'`` for a postfix (``''`` when no command clock runs)."""
    c = current()
    return "" if c is None else f" | {c.label(stage_left)}"


class Bar:
    """A tqdm bar that may move by fractions (``advance(1 / steps)`` per batch) and ends its
    postfix with the command's ETA, redrawn at most every ``every`` seconds.

    ``share=(i, n)``: this bar is the i-th of n like parts of its stage (candidate i of n), so
    the stage's remaining time is this part's plus n − i more of the same length.
    """

    def __init__(self, total: float, desc: str, unit: str = "ep", *, initial: float = 0,
                 disable: bool = False, share: tuple[int, int] = (1, 1), leave: bool = True,
                 digits: int = 1, every: float = 1.0) -> None:
        n = f"{{n:.{digits}f}}"
        fmt = f"{{l_bar}}{{bar}}| {n}/{{total:.0f}} {{unit}} [{{elapsed}}<{{remaining}}{{postfix}}]"
        self._tq = tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable,
                        leave=leave, dynamic_ncols=True, bar_format=fmt)
        self.disabled = disable
        self.share = share
        self.every = every
        self._t0 = time.perf_counter()
        self._n0 = float(initial)
        self._fields = ""
        self._drawn = -math.inf

    @property
    def n(self) -> float:
        return float(self._tq.n)

    @property
    def total(self) -> float:
        return float(self._tq.total or 0)

    def advance(self, n: float = 1.0) -> None:
        if self.disabled:
            return
        self._tq.update(n)
        self._draw()

    def goto(self, n: float) -> None:
        """Move to ``n`` (an epoch's end: the fractions of a cut-short epoch are made whole)."""
        if self.disabled:
            return
        self._tq.update(n - self._tq.n)
        self._draw(force=True)

    def set_total(self, total: float) -> None:
        if self.disabled:
            return
        self._tq.total = total
        self._draw(force=True)

    def set(self, **fields: Any) -> None:
        """The stage's own postfix (loss=…, acc=…); the command's ETA is appended."""
        self._fields = ", ".join(f"{k}={v}" for k, v in fields.items())
        self._draw(force=True)

    def left(self) -> float | None:
        """Seconds left of this bar's stage at its rate so far (None before any progress)."""
        done = self.n - self._n0
        if done <= 0 or self.total <= 0:
            return None
        el = time.perf_counter() - self._t0
        own = el / done * max(0.0, self.total - self.n)
        i, k = self.share
        return own + max(0, k - i) * (el + own)

    def _draw(self, force: bool = False) -> None:
        if self.disabled:
            return
        now = time.perf_counter()
        if not force and now - self._drawn < self.every:
            return
        self._drawn = now
        eta = command_eta(self.left())
        post = self._fields + eta if self._fields else eta.removeprefix(" | ")
        self._tq.set_postfix_str(post, refresh=True)

    def close(self) -> None:
        self._draw(force=True)
        self._tq.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
