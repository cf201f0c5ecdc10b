import concurrent.futures as cf
import importlib.util
import os
import subprocess
import sys
import textwrap
import time

import pytest

from nasforge.api import _Objective, search
from nasforge.errors import UserError
from nasforge.run.executors import (
    LocalExecutor,
    ProcessExecutor,
    WorkerLost,
    _alive,
    create_executor,
)
from nasforge.testing.ray_cluster import descendants, listening_ips
from nasforge.testing.trials import KillOnce, Slow, always_fails, peak

HAS_RAY = importlib.util.find_spec("ray") is not None
CHOICES = {"a": [0, 1, 2], "b": ["a", "b"]}


def test_local_runs_inline_and_keeps_exceptions():
    ex = LocalExecutor()
    value, worker = ex.submit(_Objective(peak), {"space": "categorical", "genes": {"a": 1}},
                              0).result()
    assert value == {"reward": 0.0} and worker.endswith(f":{os.getpid()}")
    fut = ex.submit(_Objective(always_fails), {"space": "categorical", "genes": {"a": 1}}, 0)
    with pytest.raises(RuntimeError, match="broken objective"):
        fut.result()


def test_unknown_executor():
    with pytest.raises(UserError, match="unknown executor"):
        create_executor("mpi")


def test_process_pool_survives_a_killed_worker(tmp_path):
    marker = str(tmp_path / "killed")
    arch = {"space": "categorical", "genes": {"a": 1}}
    with ProcessExecutor(2) as ex:
        futs = [ex.submit(_Objective(Slow(0.05)), arch, 0) for _ in range(2)]
        pids = {f.result()[0]["pid"] for f in futs}
        assert all(p != os.getpid() for p in pids)
        lost = ex.submit(_Objective(KillOnce(marker)), arch, 0)
        with pytest.raises(WorkerLost):
            lost.result(timeout=60)
        again = ex.submit(_Objective(KillOnce(marker)), arch, 0)  # pool rebuilt on submit
        assert again.result(timeout=60)[0]["reward"] == 0.0


ORPHANS = textwrap.dedent("""
    import time
    from nasforge.api import _Objective
    from nasforge.run.executors import ProcessExecutor
    from nasforge.testing.trials import Slow
    ex = ProcessExecutor(2)
    arch = {"space": "categorical", "genes": {"a": 1}}
    futs = [ex.submit(_Objective(Slow(0.3)), arch, 0) for _ in range(2)]
    print(" ".join(str(f.result()[0]["pid"]) for f in futs), flush=True)
    time.sleep(120)
""")


def test_workers_exit_when_the_engine_is_killed():
    p = subprocess.Popen([sys.executable, "-c", ORPHANS], stdout=subprocess.PIPE, text=True)
    pids = [int(x) for x in p.stdout.readline().split()]
    assert pids and os.getpid() not in pids
    p.kill()  # SIGKILL: no clean-up code runs in the engine process
    p.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(q) for q in pids):
        time.sleep(0.2)
    assert not any(_alive(q) for q in pids)


def test_engine_retries_trial_whose_process_died(tmp_path):
    res = search(CHOICES, KillOnce(str(tmp_path / "killed")), "random", max_trials=4,
                 executor="process", workers=2, out=tmp_path / "run", reuse=False)
    assert res.done == 4 and res.failed == 0
    assert (tmp_path / "killed").exists()
    assert all(status == "done" for _, _, status in res.trials)


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed")
def test_ray_local_cluster_runs_trials_and_survives_a_killed_worker(tmp_path, monkeypatch):
    import ray

    from nasforge.run.executors import RayExecutor
    from nasforge.run.store import TrialStore

    seen: dict = {}
    close = RayExecutor.close

    def record_then_close(self):  # inspect the cluster the search started, before it goes
        if self._started:
            seen["nodes"] = {n["NodeManagerAddress"] for n in ray.nodes()}
            seen["gcs"] = ray.get_runtime_context().gcs_address
            seen["task_ip"] = ray.get(ray.remote(ray.util.get_node_ip_address).remote())
            if os.path.isdir("/proc/self/fd"):
                seen["listening"] = listening_ips(descendants({os.getpid()}))
        close(self)

    monkeypatch.setattr(RayExecutor, "close", record_then_close)
    res = search(CHOICES, KillOnce(str(tmp_path / "killed")), "evolution", max_trials=4,
                 executor="ray", workers=2, out=tmp_path / "run", reuse=False,
                 options={"population": 2, "sample_size": 1})
    # the local cluster binds to the loopback address only, never the machine's network one
    assert seen["nodes"] == {"127.0.0.1"} and seen["task_ip"] == "127.0.0.1"
    assert seen["gcs"].startswith("127.0.0.1:")
    if "listening" in seen:  # every socket of every Ray process: loopback only
        assert seen["listening"], "found no listening socket of the Ray processes"
        assert seen["listening"] <= {"127.0.0.1", "::ffff:7f00:1"}, seen["listening"]
    assert not ray.is_initialized()  # the executor shut down the cluster it started
    assert (tmp_path / "killed").exists()
    assert res.done == 4 and res.failed == 0
    st = TrialStore(res.store)
    workers = {t.worker for t in st.trials("done")}
    assert st.counts()["running"] == 0
    assert all(w and not w.endswith(f":{os.getpid()}") for w in workers)


def test_futures_are_standard():
    assert isinstance(LocalExecutor().submit(len, [1]), cf.Future)
