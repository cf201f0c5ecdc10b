"""A multi-node Ray cluster on this machine's loopback address, for tests and rehearsals.

Each node is a real ``ray start`` (``--head`` for the first, ``--address`` for the others) with
its own temp dir, CPU count and custom resources, every process bound to ``127.0.0.1``. Ray 2.60
on Linux rewrites a ``127.0.0.1`` node or head address to the machine's network address (and
refuses a second node when its cluster mode is off), so ``ray start`` runs here with that
rewrite disabled (:data:`RAY_START`); on real machines plain ``ray start`` is what you use.

A node is stopped by SIGKILL of *its own* processes (those naming its temp dir, and everything
they started: agents, workers) — ``ray stop`` would stop every Ray process of the machine, other
users' included. :meth:`LoopbackCluster.close` kills every process of the cluster the same way.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ``ray start`` with Ray's localhost-to-network-address rewrite turned off
RAY_START = [sys.executable, "-c",
             "import ray._private.services as s; s.resolve_ip_for_localhost = lambda h: h; "
             "from ray.scripts.scripts import main; main()", "start"]
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _ppids() -> dict[int, int]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    out[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return out


def descendants(pids: set[int]) -> set[int]:
    """``pids`` and every process below them (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _ppids().items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(pids), list(pids)
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def naming(text: str) -> set[int]:
    """The processes whose command line contains ``text``."""
    found = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.add(int(d))
            except OSError:
                continue
    return found


def listening_ips(pids: set[int]) -> set[str]:
    """The local addresses of the TCP sockets ``pids`` listen on (Linux /proc/net/tcp*)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    ips = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/net/{table}") as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(cols[1].split(":")[0])
                words = [raw[i:i + 4][::-1] for i in range(0, len(raw), 4)]  # host order
                ip = ipaddress.ip_address(b"".join(words))
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                    ip = ip.ipv4_mapped
                ips.add(ip.compressed)
    return ips


def _kill(pids: set[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    out = set()
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.add(p)
        except OSError:
            continue
    return out


class LoopbackCluster:
    """``ray start`` nodes on 127.0.0.1, each in its own temp dir under one private root.

    ``env`` is what every node (and a driver, for :meth:`driver_env`) runs with: token
    authentication on (the token in ``ROOT/token``), no usage stats, and a fast node-death
    detector so a killed node is declared dead within a couple of seconds.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nfray", dir="/tmp"))  # short: socket paths
        (self.root / "token").write_text(os.urandom(32).hex())
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.nodes: dict[str, Path] = {}
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env.update(self.driver_env())
        self.env.update(RAY_USAGE_STATS_ENABLED="0", RAY_health_check_initial_delay_ms="0",
                        RAY_health_check_period_ms="500", RAY_health_check_timeout_ms="500",
                        RAY_health_check_failure_threshold="3")

    def driver_env(self) -> dict[str, str]:
        """The variables a driver joining this cluster needs (its token)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.root / "token")}

    def start(self, *nodes: dict[str, Any], timeout_s: float = 60) -> None:
        """Start ``nodes`` (``{"name", "num_cpus", "resources"}``; the first one of a new cluster
        is its head) at the same time: workers wait for the head's GCS by themselves."""
        procs = []
        for n in nodes:
            name = n["name"]
            tmp = self.root / name
            args = [*RAY_START, "--node-ip-address", LOOPBACK, "--temp-dir", str(tmp),
                    "--num-cpus", str(n.get("num_cpus", 1)), "--disable-usage-stats",
                    "--resources", json.dumps(n.get("resources", {})),
                    "--dashboard-agent-listen-port", str(free_port()),
                    "--include-log-monitor", "false"]  # workers' logs stay in their files
            if not self.nodes:
                args += ["--head", "--port", str(self.port), "--include-dashboard", "false",
                         "--dashboard-port", str(free_port())]
            else:
                args += ["--address", self.address]
            self.nodes[name] = tmp
            log = open(self.root / f"{name}.log", "w")  # noqa: SIM115 - closed below
            procs.append((name, log, subprocess.Popen(args, env=self.env, stdout=log,
                                                      stderr=subprocess.STDOUT)))
        deadline = time.monotonic() + timeout_s
        for name, log, p in procs:
            try:
                rc = p.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                rc = -9
            log.close()
            if rc != 0:
                raise RuntimeError(f"`ray start` of node {name!r} failed (rc {rc}):\n"
                                   + (self.root / f"{name}.log").read_text()[-3000:])

    def pids(self, name: str | None = None) -> set[int]:
        """The live processes of node ``name`` (every node: None)."""
        mark = self.root / name if name else self.root
        return _alive(descendants(naming(f"{mark}/") | naming(f"{mark} ")
                                  | naming(f"{mark}\0")))

    def kill(self, name: str, timeout_s: float = 10) -> set[int]:
        """SIGKILL node ``name``'s processes (only those); returns their PIDs."""
        pids = self.pids(name)
        deadline = time.monotonic() + timeout_s
        while (left := _alive(pids | self.pids(name))) and time.monotonic() < deadline:
            _kill(left)
            pids |= left
            time.sleep(0.05)
        return pids

    def close(self) -> None:
        """Kill every process of the cluster and remove its files."""
        for _ in range(100):
            left = self.pids()
            if not left:
                break
            _kill(left)
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class HoldOnNode:
    """A trial function for node-loss tests: ``inner``, except that on the node ``node_id``
    it first writes ``marker_dir/held.PID`` (its seed) and sleeps ``hold_s``, so the node can be
    killed while the trial runs. Every call that finishes appends ``seed pid`` to
    ``marker_dir/finished``: a trial run to the end twice would show there."""

    inner: Any
    node_id: str
    marker_dir: str
    hold_s: float = 120.0

    def ship(self, share: Any) -> HoldOnNode:
        ship = getattr(self.inner, "ship", None)
        return dataclasses.replace(self, inner=ship(share)) if callable(ship) else self

    def __call__(self, arch_dict: dict[str, Any], seed: int) -> dict[str, Any]:
        import ray

        node = ray.get_runtime_context().get_node_id()
        if node == self.node_id:
            (Path(self.marker_dir) / f"held.{os.getpid()}").write_text(str(seed))
            time.sleep(self.hold_s)
        out = self.inner(arch_dict, seed)
        with open(Path(self.marker_dir) / "finished", "a") as f:
            f.write(f"{seed} {os.getpid()}\n")
        return {**out, "node": node}
