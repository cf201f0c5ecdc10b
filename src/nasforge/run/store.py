"""The trial store: one SQLite file (``RUN_DIR/trials.sqlite``) that never loses a result.

Contract (what every writer and reader may rely on):

- ``trials(id, arch_hash, arch_json, status, metrics_json, started_at, finished_at, worker,
  attempts, error)``; ``status`` is ``running``, ``done`` or ``failed``.
- :meth:`TrialStore.create` inserts a ``running`` trial and returns its id.
- :meth:`TrialStore.finish` writes a trial's result **exactly once**: it only changes a
  ``running`` row, and returns False (writing nothing) when the trial is already finished, so a
  retried or duplicated result can never be counted twice. Finished trials are immutable.
- A small ``meta`` key/value table holds JSON (the strategy and engine state); ``create`` and
  ``finish`` may update it in the *same transaction*, so the state on disk always matches the
  trials on disk — the property a resume after ``kill -9`` relies on.
- Two append-only tables let the engine keep what it writes per trial flat however long the
  run (``run/engine.py``): ``events(seq, trial_id, kind, value)`` — each ask (``value`` = the
  run's progress) and tell (``value`` = the reward) of the strategy, written with the trial
  change it belongs to — and ``state_rows(key, idx, value)`` — the rows of the strategy's
  append-only state lists (a replay memory), written once each.
- :attr:`TrialStore.bytes_written` counts the payload bytes this connection has written (SQL
  parameters: architectures, metrics, meta, events, rows; SQLite's page overhead excluded).
- WAL journal + busy timeout: several processes may write the same file concurrently.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasforge.arch import Arch
from nasforge.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    arch_hash TEXT NOT NULL,
    arch_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    metrics_json TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    error TEXT
);
CREATE INDEX IF NOT EXISTS trials_status ON trials (status);
CREATE INDEX IF NOT EXISTS trials_hash ON trials (arch_hash);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    trial_id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('ask', 'tell')),
    value REAL
);
CREATE TABLE IF NOT EXISTS state_rows (
    key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key, idx)
);
"""

#: a strategy event written with a trial change: (seq, 'ask' | 'tell', progress | reward)
Event = tuple[int, str, float | None]


@dataclass
class Trial:
    id: int
    arch: Arch
    status: str
    metrics: dict[str, Any] | None
    started_at: float
    finished_at: float | None
    worker: str | None
    attempts: int
    error: str | None

    @property
    def reward(self) -> float | None:
        return None if self.metrics is None else self.metrics.get("reward")


class TrialStore:
    """A connection to one trials database (open one per process; cheap)."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None)
        except sqlite3.Error as e:
            raise UserError(f"cannot open trial store {str(self.path)!r}: {e}") from None
        self.bytes_written = 0
        self.db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        with self._tx():
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    self.db.execute(stmt)

    def _tx(self) -> _Tx:
        return _Tx(self.db)

    def close(self) -> None:
        self.db.close()

    # -- writes -------------------------------------------------------------------------------
    def _exec(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        """Execute a write, counting its payload in :attr:`bytes_written`."""
        self.bytes_written += sum(len(a) for a in args if isinstance(a, (str, bytes)))
        self.bytes_written += 8 * sum(isinstance(a, (int, float)) for a in args)
        return self.db.execute(sql, args)

    def create(self, arch: Arch, *, meta: dict[str, Any] | None = None,
               event: Event | None = None,
               rows: dict[str, tuple[int, list]] | None = None) -> int:
        """Insert a running trial (with the state that goes with it); returns its id."""
        with self._tx():
            cur = self._exec(
                "INSERT INTO trials (arch_hash, arch_json, status, started_at) "
                "VALUES (?, ?, 'running', ?)", (arch.hash(), arch.to_json(), time.time()))
            trial_id = int(cur.lastrowid)  # type: ignore[arg-type]
            self._put_state(trial_id, meta, event, rows)
            return trial_id

    def finish(self, trial_id: int, metrics: dict[str, Any], *, worker: str | None = None,
               meta: dict[str, Any] | None = None, event: Event | None = None,
               rows: dict[str, tuple[int, list]] | None = None) -> bool:
        """Record a result once; False (and nothing written) if the trial is not running."""
        with self._tx():
            cur = self._exec(
                "UPDATE trials SET status='done', metrics_json=?, finished_at=?, worker=? "
                "WHERE id=? AND status='running'",
                (json.dumps(metrics), time.time(), worker, trial_id))
            if cur.rowcount != 1:
                return False
            self._put_state(trial_id, meta, event, rows)
            return True

    def fail(self, trial_id: int, error: str, *, worker: str | None = None,
             meta: dict[str, Any] | None = None, event: Event | None = None,
             rows: dict[str, tuple[int, list]] | None = None) -> bool:
        with self._tx():
            cur = self._exec(
                "UPDATE trials SET status='failed', error=?, finished_at=?, worker=? "
                "WHERE id=? AND status='running'", (error, time.time(), worker, trial_id))
            if cur.rowcount != 1:
                return False
            self._put_state(trial_id, meta, event, rows)
            return True

    def retry(self, trial_id: int) -> None:
        """A running trial is started again (after a lost worker or an interrupted run)."""
        with self._tx():
            self._exec("UPDATE trials SET attempts = attempts + 1, started_at=? "
                            "WHERE id=? AND status='running'", (time.time(), trial_id))

    def put_meta(self, values: dict[str, Any], *,
                 rows: dict[str, tuple[int, list]] | None = None) -> None:
        with self._tx():
            self._put_meta(values)
            self._put_rows(rows)

    def _put_state(self, trial_id: int, meta: dict[str, Any] | None, event: Event | None,
                   rows: dict[str, tuple[int, list]] | None) -> None:
        if event is not None:
            seq, kind, value = event
            self._exec("INSERT INTO events (seq, trial_id, kind, value) VALUES (?, ?, ?, ?)",
                       (seq, trial_id, kind, value))
        self._put_rows(rows)
        self._put_meta(meta)

    def _put_meta(self, values: dict[str, Any] | None) -> None:
        for k, v in (values or {}).items():
            self._exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) "
                       "DO UPDATE SET value=excluded.value", (k, json.dumps(v)))

    def _put_rows(self, rows: dict[str, tuple[int, list]] | None) -> None:
        """Append rows ``start, start+1, …`` of each key (a row already there is kept)."""
        for key, (start, values) in (rows or {}).items():
            for i, v in enumerate(values):
                self._exec("INSERT OR IGNORE INTO state_rows (key, idx, value) VALUES (?, ?, ?)",
                           (key, start + i, json.dumps(v)))

    # -- reads --------------------------------------------------------------------------------
    def meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def events(self, after: int = 0) -> list[tuple[int, int, str, float | None]]:
        """The strategy events ``(seq, trial_id, kind, value)`` with ``seq > after``, in order."""
        return [tuple(r) for r in self.db.execute(  # type: ignore[misc]
            "SELECT seq, trial_id, kind, value FROM events WHERE seq > ? ORDER BY seq",
            (after,))]

    def last_event(self) -> int:
        """The highest event ``seq`` written (0: none)."""
        return int(self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def rows(self, key: str, n: int | None = None) -> list[Any]:
        """The first ``n`` (all) rows of an append-only state list, in order."""
        cur = self.db.execute("SELECT value FROM state_rows WHERE key=? AND idx < ? ORDER BY idx",
                              (key, n if n is not None else 2**62))
        return [json.loads(r[0]) for r in cur.fetchall()]

    def row_count(self, key: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM state_rows WHERE key=?",
                                   (key,)).fetchone()[0])

    def get(self, trial_id: int) -> Trial:
        rows = self._select("WHERE id=?", (trial_id,))
        if not rows:
            raise UserError(f"no trial {trial_id} in {str(self.path)!r}")
        return rows[0]

    def trials(self, status: str | None = None) -> list[Trial]:
        if status is None:
            return self._select("ORDER BY id", ())
        return self._select("WHERE status=? ORDER BY id", (status,))

    def counts(self) -> dict[str, int]:
        out = {"running": 0, "done": 0, "failed": 0}
        for s, n in self.db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status"):
            out[s] = n
        return out

    def find_done(self, arch: Arch) -> Trial | None:
        rows = self._select("WHERE arch_hash=? AND status='done' ORDER BY id LIMIT 1",
                            (arch.hash(),))
        return rows[0] if rows else None

    def best(self, k: int = 1) -> list[Trial]:
        """The ``k`` done trials of highest reward, distinct architectures."""
        out: list[Trial] = []
        seen: set[str] = set()
        done = sorted(self.trials("done"), key=lambda t: -(t.reward if t.reward is not None
                                                              else float("-inf")))
        for t in done:
            if t.arch.hash() not in seen and t.reward is not None:
                seen.add(t.arch.hash())
                out.append(t)
            if len(out) == k:
                break
        return out

    def _select(self, where: str, args: tuple) -> list[Trial]:
        cur = self.db.execute(
            "SELECT id, arch_json, status, metrics_json, started_at, finished_at, worker, "
            f"attempts, error FROM trials {where}", args)
        return [Trial(r[0], Arch.from_json(r[1]), r[2], None if r[3] is None else json.loads(r[3]),
                      r[4], r[5], r[6], r[7], r[8]) for r in cur.fetchall()]


class _Tx:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error): writers queue on the busy timeout."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
