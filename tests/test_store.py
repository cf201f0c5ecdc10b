import sqlite3
import subprocess
import sys
import textwrap

import pytest

from nasforge.arch import Arch
from nasforge.run.store import TrialStore

WRITER = textwrap.dedent("""
    import sys
    from nasforge.arch import Arch
    from nasforge.run.store import TrialStore
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    st = TrialStore(path)
    for i in range(n):
        tid = st.create(Arch("toy", {"w": tag, "i": i}), meta={"last_" + tag: i})
        assert st.finish(tid, {"reward": i, "writer": tag}, worker=tag)
""")


def test_schema_and_wal(tmp_path):
    st = TrialStore(tmp_path / "trials.sqlite")
    cols = [r[1] for r in st.db.execute("PRAGMA table_info(trials)")]
    for c in ("id", "arch_hash", "arch_json", "status", "metrics_json", "started_at",
              "finished_at", "worker"):
        assert c in cols
    assert st.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.IntegrityError):  # status is constrained
        st.db.execute("INSERT INTO trials (arch_hash, arch_json, status, started_at) "
                      "VALUES ('h', '{}', 'lost', 0)")


def test_result_written_exactly_once(tmp_path):
    st = TrialStore(tmp_path / "t.sqlite")
    a = Arch("toy", {"x": 1})
    tid = st.create(a)
    assert st.get(tid).status == "running"
    assert st.finish(tid, {"reward": 0.5}, worker="w1", meta={"k": 1})
    assert not st.finish(tid, {"reward": 0.9}, worker="w2", meta={"k": 2})  # duplicate result
    assert not st.fail(tid, "late failure")
    t = st.get(tid)
    assert (t.status, t.reward, t.worker) == ("done", 0.5, "w1")
    assert st.meta("k") == 1  # the refused write changed no state either
    assert st.find_done(a).id == tid
    assert t.finished_at >= t.started_at


def test_best_is_distinct_and_ordered(tmp_path):
    st = TrialStore(tmp_path / "t.sqlite")
    for x, r in [(1, 0.1), (2, 0.9), (2, 0.9), (3, 0.5)]:
        st.finish(st.create(Arch("toy", {"x": x})), {"reward": r})
    assert [t.arch.genes["x"] for t in st.best(3)] == [2, 3, 1]


def test_two_writer_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "trials.sqlite")
    TrialStore(path).close()
    n = 300
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, path, tag, str(n)])
             for tag in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    st = TrialStore(path)
    done = st.trials("done")
    assert st.counts() == {"running": 0, "done": 2 * n, "failed": 0}
    assert len({t.id for t in done}) == 2 * n
    for tag in ("a", "b"):
        mine = sorted(t.metrics["reward"] for t in done if t.metrics["writer"] == tag)
        assert mine == list(range(n))
        assert st.meta("last_" + tag) == n - 1


def test_events_and_rows_go_with_the_trial_change_or_not_at_all(tmp_path):
    st = TrialStore(tmp_path / "t.sqlite")
    tid = st.create(Arch("toy", {"x": 1}), event=(1, "ask", 0.25))
    n0 = st.bytes_written
    assert st.finish(tid, {"reward": 0.5}, event=(2, "tell", 0.5), rows={"memory": (0, [[1], [2]])})
    assert st.bytes_written > n0
    # a refused (duplicate) result writes no event and no row either
    assert not st.finish(tid, {"reward": 0.9}, event=(3, "tell", 0.9),
                         rows={"memory": (2, [[3]])})
    assert st.events() == [(1, tid, "ask", 0.25), (2, tid, "tell", 0.5)]
    assert st.events(after=1) == [(2, tid, "tell", 0.5)] and st.last_event() == 2
    assert st.rows("memory") == [[1], [2]] and st.rows("memory", 1) == [[1]]
    st.put_meta({}, rows={"memory": (1, [[9], [3]])})  # row 1 is kept, row 2 appended
    assert st.rows("memory") == [[1], [2], [3]] and st.row_count("memory") == 3
