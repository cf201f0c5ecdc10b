"""Latency lookup tables: measured once per (op, shape, stride) on a device, stored as JSON.

File format (schema 1)::

    {"schema": 1, "unit": "us", "space": "...", "target": "cpu", "fingerprint": {...},
     "statistic": "min", "warmup": 10, "repeats": 50, "overhead_us": 12.3,
     "entries": {"k3_e6|16|24|28|28|2": 140.2, ...}}

A key names the op (its name encodes kernel, expansion and groups, e.g. ``k5_e3``, ``k3_e1_g2``),
input channels, output channels, input height and width, stride and any further field that
changes the time (``extra``). Batch size, dtype and thread count are the same for every entry of
a table and live in its ``fingerprint`` (with the CPU model, GPU name and runtime versions).
All entries of a table are measured interleaved (:func:`nasforge.cost.measure.measure_many`).

The unit is microseconds so that ``log(LAT)`` stays positive across every space we ship (the
smallest network sums to well over 1 µs). ``overhead_us`` is the per-call cost of the runtime
(an identity module), measured with the table: every entry includes it once, so the
``corrected`` prediction takes it off each entry and adds it back once per network.
``extra.probe_us`` is the time of a fixed reference block (:func:`~nasforge.cost.measure.
probe_module`) measured with the entries: later sessions compare their own probe time with it to
tell how much the device's speed has drifted (and entries added later are rescaled by it).
A table is never applied to another device fingerprint or another space.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from nasforge.cost.measure import (
    DEFAULT_STATISTIC,
    PROBE_SHAPE,
    device_fingerprint,
    measure_latency,
    measure_many,
    probe_module,
)
from nasforge.errors import UserError
from nasforge.files import parse_as, read_json, write_json_atomic

SCHEMA = 1
LUT_FIX = ("rebuild it with `nasforge lut build` (or delete it: it is re-measured when next "
           "needed)")


@dataclass(frozen=True, order=True)
class LutKey:
    """Everything about one op that changes its time.

    Batch, dtype and threads are fixed per table and live in its fingerprint."""

    op: str
    cin: int
    cout: int
    h: int
    w: int
    stride: int
    extra: str = ""

    def __str__(self) -> str:
        base = f"{self.op}|{self.cin}|{self.cout}|{self.h}|{self.w}|{self.stride}"
        return base + (f"|{self.extra}" if self.extra else "")

    @classmethod
    def parse(cls, s: str) -> LutKey:
        parts = s.split("|")
        if len(parts) not in (6, 7):
            raise UserError(f"malformed LUT key {s!r}")
        op, *nums = parts[:6]
        return cls(op, *(int(n) for n in nums), extra=parts[6] if len(parts) == 7 else "")


@dataclass(frozen=True)
class LutItem:
    """A thing to measure: its key, how to build it, and its input shape (C, H, W)."""

    key: LutKey
    build: Callable[[], nn.Module]
    input_shape: tuple[int, int, int]


@dataclass
class LatencyTable:
    space: str
    target: str
    fingerprint: dict[str, Any]
    entries: dict[str, float] = field(default_factory=dict)
    overhead_us: float = 0.0
    statistic: str = DEFAULT_STATISTIC
    warmup: int = 10
    repeats: int = 50
    unit: str = "us"
    schema: int = SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: LutKey | str) -> float:
        k = str(key)
        if k not in self.entries:
            raise UserError(f"latency table for space {self.space!r} has no entry {k!r}; "
                            "rebuild it with `nasforge lut build`")
        return self.entries[k]

    def __contains__(self, key: object) -> bool:
        return str(key) in self.entries

    def corrected(self, key: LutKey | str) -> float:
        """Entry without the per-call runtime overhead (never below 1 % of the entry)."""
        v = self[key]
        return max(v - self.overhead_us, 0.01 * v)

    def predict(self, keys: Iterable[LutKey | str], mode: str = "corrected") -> float:
        """Network latency (µs): ``plain`` = Σ entries; ``corrected`` = Σ (entry − overhead)
        + one overhead."""
        keys = list(keys)
        if mode == "plain":
            return float(sum(self[k] for k in keys))
        if mode == "corrected":
            return float(sum(self.corrected(k) for k in keys) + self.overhead_us)
        raise UserError(f"unknown LUT prediction mode {mode!r}; use plain or corrected")

    def check_compatible(self, space: str, fingerprint: dict[str, Any]) -> None:
        if self.space != space:
            raise UserError(f"latency table was built for space {self.space!r}, not {space!r}; "
                            "build one for this space with `nasforge lut build`")
        diff = {k: (self.fingerprint.get(k), v) for k, v in fingerprint.items()
                if self.fingerprint.get(k) != v}
        if diff:
            desc = ", ".join(f"{k}: table {a!r} vs this device {b!r}" for k, (a, b) in diff.items())
            raise UserError(f"latency table was measured on another device ({desc}); a LUT is "
                            "never applied to another device — rebuild it here")

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "unit": self.unit, "space": self.space,
                "target": self.target, "fingerprint": self.fingerprint,
                "statistic": self.statistic, "warmup": self.warmup, "repeats": self.repeats,
                "overhead_us": self.overhead_us, "extra": self.extra,
                "entries": dict(sorted(self.entries.items()))}

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyTable:
        """A table from its JSON form; anything else (another kind of file, another schema,
        a field of the wrong type) is a UserError saying which."""
        if "entries" not in d or "fingerprint" not in d:
            raise UserError("it is not a latency table (no 'entries' / 'fingerprint')")
        if d.get("schema") != SCHEMA:
            raise UserError(f"it has schema {d.get('schema')!r}; this nasforge reads schema "
                            f"{SCHEMA}")
        if d.get("unit") != "us":
            raise UserError(f"it has unit {d.get('unit')!r}, expected 'us'")
        for name, kind in (("space", str), ("target", str), ("fingerprint", dict),
                           ("entries", dict), ("extra", dict)):
            if name in d and not isinstance(d[name], kind):
                raise UserError(f"its field {name!r} must be a JSON "
                                f"{'object' if kind is dict else 'string'}")
        bad = [k for k, v in d["entries"].items()
               if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            raise UserError(f"entry {bad[0]!r} is not a number of microseconds")
        return cls(space=d["space"], target=d["target"], fingerprint=d["fingerprint"],
                   entries={k: float(v) for k, v in d["entries"].items()},
                   overhead_us=float(d.get("overhead_us", 0.0)),
                   statistic=d.get("statistic", "median"), warmup=int(d.get("warmup", 10)),
                   repeats=int(d.get("repeats", 50)), extra=d.get("extra", {}))

    @classmethod
    def load(cls, path: str | Path, space: str | None = None,
             fingerprint: dict[str, Any] | None = None) -> LatencyTable:
        """The table in ``path`` (through :mod:`nasforge.files`: any unreadable or foreign file
        is one UserError naming it); with ``space``/``fingerprint``, refused unless it was
        built for that space on that device."""
        data = read_json(path, "latency table", LUT_FIX)
        table = parse_as(path, "latency table", LUT_FIX, data, cls.from_dict)
        if space is not None:
            parse_as(path, "latency table", "", None,
                     lambda _: table.check_compatible(space, fingerprint or table.fingerprint))
        return table


def measure_overhead(target: str, threads: int, input_shape: tuple[int, int, int],
                     statistic: str, warmup: int, repeats: int, batch: int = 1,
                     dtype: str = "float32") -> float:
    """The runtime's per-call cost: the time of an identity module."""
    return measure_latency(nn.Identity(), input_shape, target=target, threads=threads,
                           batch=batch, dtype=dtype, warmup=warmup, repeats=repeats,
                           statistic=statistic)


def build_table(space: str, items: Iterable[LutItem], *, target: str = "cpu", threads: int = 1,
                statistic: str = DEFAULT_STATISTIC, warmup: int = 10, repeats: int = 100,
                table: LatencyTable | None = None, progress: bool = True, batch: int = 1,
                dtype: str = "float32", rounds: int = 20, clock: str = "auto") -> LatencyTable:
    """Measure every item not yet in ``table`` (one measurement per distinct key), all of them
    and the per-call overhead (identity module) interleaved in ``rounds`` rounds."""
    fp = device_fingerprint(target, threads, batch, dtype, clock)
    if table is None:
        table = LatencyTable(space, target, fp, statistic=statistic, warmup=warmup,
                             repeats=repeats)
    else:
        table.check_compatible(space, fp)
        if table.statistic != statistic:
            raise UserError(f"latency table holds {table.statistic!r} times, not {statistic!r}; "
                            "use the same --statistic or build a new table (--out)")
    todo: dict[str, LutItem] = {}
    for it in items:
        k = str(it.key)
        if k not in table.entries and k not in todo:
            todo[k] = it
    if not todo:
        return table
    first = next(iter(todo.values()))
    mods = [(nn.Identity(), first.input_shape), (probe_module(), PROBE_SHAPE)]
    mods += [(it.build(), it.input_shape) for it in todo.values()]
    times = measure_many(mods, target=target, threads=threads, batch=batch, dtype=dtype,
                         warmup=warmup, repeats=repeats, rounds=rounds, statistic=statistic,
                         clock=clock, progress=progress, desc=f"LUT {space}@{target}")
    if table.entries and table.extra.get("probe_us"):  # new entries join an older table:
        f = table.extra["probe_us"] / times[1]  # refer them to its device state
        times = [times[0], times[1]] + [t * f for t in times[2:]]
    else:
        table.overhead_us = times[0]
        table.extra["probe_us"] = times[1]
    table.entries.update(zip(todo, times[2:]))
    table.extra["rounds"] = rounds
    return table


def cache_dir() -> Path:
    return Path(os.environ.get("NASFORGE_CACHE", Path.home() / ".cache" / "nasforge"))


def cache_path(space: str, fingerprint: dict[str, Any],
               statistic: str = DEFAULT_STATISTIC) -> Path:
    h = hashlib.sha1(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    stat = f"-{statistic}"
    return cache_dir() / "luts" / f"{space}-{fingerprint['target']}{stat}-{h}.json"


def load_or_build(space: str, items: list[LutItem], *, target: str = "cpu", threads: int = 1,
                  statistic: str = DEFAULT_STATISTIC, path: str | Path | None = None,
                  progress: bool = True, batch: int = 1, dtype: str = "float32",
                  clock: str = "auto") -> LatencyTable:
    """The table for (space, this device): from ``path`` or the cache, measuring what's missing."""
    fp = device_fingerprint(target, threads, batch, dtype, clock)
    p = Path(path) if path else cache_path(space, fp, statistic)
    table = None
    if p.exists():
        table = LatencyTable.load(p, space, fp)
    n_before = len(table.entries) if table else -1
    table = build_table(space, items, target=target, threads=threads, statistic=statistic,
                        table=table, progress=progress, batch=batch, dtype=dtype, clock=clock)
    if len(table.entries) != n_before:
        table.save(p)
    return table
