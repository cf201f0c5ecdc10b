"""Sample-based search on a real 2-node Ray cluster (``ray start --head`` + ``ray start
--address``, both on 127.0.0.1 with their own temp dirs and resources): the data set reaches
the workers through the object store only, the trial store stays with the driver, and a node
killed mid-trial costs one retry — every trial is done, and done exactly once."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import threading
import time

import pytest

from nasforge.data import load_dataset
from nasforge.data.sources import SOURCES, synthetic
from nasforge.errors import UserError
from nasforge.evaluators import DataSpec, EarlyStopEvaluator
from nasforge.run.engine import Engine, EngineConfig, trial_seed
from nasforge.run.store import TrialStore
from nasforge.spaces.registry import get_space
from nasforge.strategies.base import create_strategy

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="ray is not installed (extra `ray`)")

TRIALS = 4
DRIVER_ONLY = "driver-only-synthetic"  # a data source registered in this process alone


def _small_synthetic(data_dir, seed):  # noqa: ANN001, ANN202 - a SOURCES entry
    raw = synthetic(data_dir, seed)
    return type(raw)(raw.x_train[:80], raw.y_train[:80], raw.x_test[:20], raw.y_test[:20],
                     raw.num_classes, DRIVER_ONLY)


@pytest.fixture
def cluster(monkeypatch):
    from nasforge.testing.ray_cluster import LoopbackCluster

    c = LoopbackCluster()
    try:
        c.start({"name": "head", "num_cpus": 1},
                {"name": "node2", "num_cpus": 1, "resources": {"node2": 1}})
        for k, v in c.driver_env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        yield c
    finally:
        c.close()
        assert not c.pids(), "processes of the test cluster survived its clean-up"


@pytest.mark.slow
def test_search_on_two_nodes_survives_a_node_killed_mid_trial(cluster, tmp_path):
    import ray

    from nasforge.run.executors import RayExecutor
    from nasforge.testing.ray_cluster import HoldOnNode, listening_ips

    t0 = time.monotonic()
    SOURCES.register(DRIVER_ONLY, _small_synthetic)
    try:
        space = get_space("nsc-fast")
        ev = EarlyStopEvaluator(space, DataSpec(DRIVER_ONLY, seed=0), epochs=1, threads=1,
                                recipe={"batch_size": 32, "flip": False})
        killed: dict = {}
        with RayExecutor(2, cluster.address) as ex:
            nodes = ray.nodes()
            assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
            assert ray.get_runtime_context().gcs_address == cluster.address
            node2 = next(n["NodeID"] for n in nodes if "node2" in n["Resources"])
            head = next(n["NodeID"] for n in nodes if "node2" not in n["Resources"])
            ips = listening_ips(cluster.pids() | {os.getpid()})  # the nodes and this driver
            assert ips and ips <= {"127.0.0.1"}, ips  # nothing listens beyond loopback

            # negative control: a worker cannot load the driver-only data set by its name
            with pytest.raises(UserError, match="unknown dataset"):
                ex.submit(load_dataset, DRIVER_ONLY).result(timeout=60)

            def kill_node2_once_a_trial_holds() -> None:
                deadline = time.monotonic() + 45
                while time.monotonic() < deadline and "pid" not in killed:
                    held = list(tmp_path.glob("held.*"))
                    if held:
                        killed["pid"] = int(held[0].suffix[1:])
                        killed["seed"] = int(held[0].read_text())
                        killed["node2_pids"] = cluster.pids("node2")
                        killed["pids"] = cluster.kill("node2")
                        killed["head_alive"] = cluster.pids("head")
                    time.sleep(0.05)

            killer = threading.Thread(target=kill_node2_once_a_trial_holds, daemon=True)
            killer.start()
            store = TrialStore(tmp_path / "trials.sqlite")
            res = Engine(create_strategy("random", space, seed=0),
                         HoldOnNode(ev, node2, str(tmp_path)), store, ex,
                         EngineConfig(max_trials=TRIALS, max_retries=2, reuse=False,
                                      progress=False)).run()
            killer.join(5)
            store.close()
    finally:
        SOURCES.unregister(DRIVER_ONLY)

    # node 2 was killed while a trial ran there, by its own PIDs only: the head lived on
    assert "pid" in killed, "no trial was ever held on node 2"
    assert killed["pid"] in killed["node2_pids"] and killed["pid"] in killed["pids"]
    assert killed["pids"].isdisjoint(killed["head_alive"]) and killed["head_alive"]
    assert res.done == TRIALS and res.failed == 0

    # the store (on the driver's disk) holds every trial exactly once, all done
    db = sqlite3.connect(tmp_path / "trials.sqlite")
    rows = db.execute("SELECT id, status, attempts, metrics_json FROM trials ORDER BY id"
                      ).fetchall()
    assert [r[0] for r in rows] == list(range(1, TRIALS + 1))
    assert all(r[1] == "done" for r in rows)
    seeds = {trial_seed(0, r[0]): r for r in rows}
    lost = seeds[killed["seed"]]  # the trial that was on node 2 when it died
    assert lost[2] == 2 and '"node": "' + head + '"' in lost[3]  # one retry, on the head
    assert all(r[2] == 1 for r in rows if r is not lost)
    tells = db.execute("SELECT trial_id FROM events WHERE kind = 'tell' ORDER BY trial_id"
                       ).fetchall()
    assert [t[0] for t in tells] == list(range(1, TRIALS + 1))  # each told once
    db.close()

    # each trial function ran to its end exactly once; the killed attempt never finished
    finished = [line.split() for line in (tmp_path / "finished").read_text().splitlines()]
    assert sorted(int(s) for s, _ in finished) == sorted(seeds)
    assert all(int(pid) not in killed["pids"] for _, pid in finished)
    print(f"2-node Ray search with a node lost: {time.monotonic() - t0:.1f} s after start")


def test_ray_address_without_a_cluster_is_a_user_error():
    """Ray itself retries a dead address for minutes; the executor says so at once."""
    from nasforge.run.executors import RayExecutor
    from nasforge.testing.ray_cluster import free_port

    t = time.monotonic()
    with pytest.raises(UserError, match="nothing answers there"):
        RayExecutor(1, f"127.0.0.1:{free_port()}")
    assert time.monotonic() - t < 10
