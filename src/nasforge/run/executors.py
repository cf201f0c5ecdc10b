"""Executors run trial functions and hand back :class:`concurrent.futures.Future` objects, so
the engine waits on whichever result arrives first (no sleep-polling), whatever the backend.

- ``local``: in the calling process, at submit time (sequential; for tests and debugging).
- ``process``: a pool of processes forked from a clean *forkserver* that has imported torch and
  nasforge once (a fresh worker starts in well under a second, and no thread state of the
  parent is inherited); one trial per process at a time. A worker that dies
  breaks the pool: every trial in flight fails with :class:`WorkerLost`, the pool is rebuilt on
  the next submit, and the engine retries those trials.
- ``ray``: one Ray task per trial with its CPU/GPU request. ``ray.init(address="local")``
  starts a private local cluster (``num_cpus = workers``) on the loopback address
  (``127.0.0.1``) with no dashboard: nothing of it is reachable from the network, and a
  ``RAY_ADDRESS`` or a cluster started earlier with ``ray start`` is never joined by accident.
  ``ray_address`` joins a running cluster instead (``ray start --head`` + ``ray start
  --address`` on each machine; a loopback address keeps the driver on ``127.0.0.1`` too).
  Nothing a trial reads comes from the driver's disk: a trial function with a ``ship(share)``
  method is replaced by the copy it returns, whose data (``share(obj)``: put once in the
  cluster's object store) every worker fetches from there (:class:`Shipped`), so a worker on
  another machine needs only the installed package. The trial store stays with the driver (the
  engine writes it; workers only return results). Ray's own task retries are off: a trial
  whose worker or node died comes back as :class:`WorkerLost` and the engine retries it once
  per loss, counted in the store's ``attempts`` — one retry layer, so a trial is never run
  twice behind the store's back.

Backends are looked up by name in :data:`EXECUTORS` (a :class:`~nasforge.registry.Registry`
of executor classes, each built by ``cls.create(workers, **options)``).

Every future's value is ``(result, worker)`` where ``worker`` is ``host:pid`` of the process
that ran the trial.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from nasforge.errors import UserError, require
from nasforge.registry import Registry


class WorkerLost(RuntimeError):
    """The process running a trial died (killed, out of memory, node lost): retry the trial."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_tagged(fn: Callable[..., Any], *args: Any) -> tuple[Any, str]:
    return fn(*args), worker_name()


class Executor(ABC):
    name: str = ""
    workers: int = 1

    @classmethod
    def create(cls, workers: int = 1, *, ray_address: str | None = None,
               cpus_per_trial: float = 1, gpus_per_trial: float = 0,
               max_retries: int = 3) -> Executor:
        """Build from the options every backend is offered (each takes the ones it uses)."""
        return cls(workers)  # type: ignore[call-arg]

    @abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        """Start ``fn(*args)``; the future's value is ``(result, worker)``."""

    def close(self) -> None:  # noqa: B027 - most executors hold nothing to release
        """Release workers (a no-op where there are none)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, workers: int = 1) -> None:
        self.workers = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(run_tagged(fn, *args))
        except BaseException as e:  # noqa: BLE001 - handed to the engine like any backend
            fut.set_exception(e)
        return fut


#: imported once by the forkserver, inherited by every worker it forks
PRELOAD = ["torch", "nasforge.evaluators", "nasforge.api"]


class ProcessExecutor(Executor):
    name = "process"

    def __init__(self, workers: int = 2, context: str = "forkserver") -> None:
        if workers < 1:
            raise UserError(f"--workers must be ≥ 1, got {workers}")
        self.workers = workers
        self._ctx = mp.get_context(context)
        if context == "forkserver":
            self._ctx.set_forkserver_preload(PRELOAD)
        self._pool: cf.ProcessPoolExecutor | None = None

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=self._ctx,
                                                initializer=_exit_with, initargs=(os.getpid(),))
        return self._pool

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        try:
            inner = self._get_pool().submit(run_tagged, fn, *args)
        except (BrokenProcessPool, OSError):
            # OSError: a worker died and the pool is breaking but not yet marked broken — the
            # replacement worker's start-up then finds the pool's pipe closed ("handle is
            # closed"); either way the pool is rebuilt once
            self._pool.shutdown(wait=False, cancel_futures=True)  # type: ignore[union-attr]
            self._pool = None
            inner = self._get_pool().submit(run_tagged, fn, *args)
        return _translate(inner, (BrokenProcessPool,))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed parent stays a zombie until reaped: that is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _exit_with(pid: int, period_s: float = 1.0) -> None:
    """Worker initializer: exit when the engine process is gone (``kill -9`` of a search must
    not leave workers behind; their pool's pipes never report the loss)."""
    import threading

    def watch() -> None:
        while _alive(pid):
            time.sleep(period_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="nasforge-parent-watch").start()


#: where the local Ray cluster listens: loopback only, never the machine's network address
RAY_LOCAL_IP = "127.0.0.1"


@contextlib.contextmanager
def _ray_loopback(ray: Any) -> Iterator[None]:
    """While a local cluster starts, let Ray keep ``127.0.0.1`` as the node address.

    ``ray.init(_node_ip_address="127.0.0.1")`` alone is not enough on Linux: Ray (checked on
    2.60) resolves a localhost node address to the machine's network address unless its
    cluster mode is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read into
    ``ray_constants.ENABLE_RAY_CLUSTER`` when ray is imported). With it off, the GCS, raylet,
    workers and agents all listen on 127.0.0.1 only. Both are restored afterwards."""
    consts = getattr(getattr(ray, "_private", None), "ray_constants", None)
    var = getattr(consts, "ENABLE_RAY_CLUSTERS_ENV_VAR", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    old_env, old_flag = os.environ.get(var), getattr(consts, "ENABLE_RAY_CLUSTER", None)
    os.environ[var] = "0"
    if old_flag is not None:
        consts.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old_env
        if old_flag is not None:
            consts.ENABLE_RAY_CLUSTER = old_flag


def _check_loopback(ray: Any) -> None:
    """Refuse a local cluster that listens on anything but the loopback address."""
    addrs = {n.get("NodeManagerAddress") for n in ray.nodes()}
    if addrs != {RAY_LOCAL_IP}:
        ray.shutdown()
        raise RuntimeError(f"the local Ray cluster bound to {sorted(map(str, addrs))}, not "
                           f"{RAY_LOCAL_IP}; refusing to run trials on a network-reachable "
                           "cluster (start one yourself and pass --ray-address)")


def _host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` split (None for anything else: ``auto``, ``ray://...``)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in address:
        return None
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reread_ray_token(ray: Any) -> None:
    """Make Ray read its authentication token again (``RAY_AUTH_TOKEN`` /
    ``RAY_AUTH_TOKEN_PATH`` / ``~/.ray/auth_token``) when this driver joins a cluster: Ray
    caches the first token it read in the process, e.g. that of a local cluster run before."""
    loader = getattr(getattr(ray, "_raylet", None), "AuthenticationTokenLoader", None)
    with contextlib.suppress(Exception):  # Ray versions without token authentication
        loader.instance().reset_cache()  # type: ignore[union-attr]


def _chain(e: BaseException | None) -> str:
    """The messages of ``e`` and of every exception it was raised from."""
    out = []
    while e is not None and len(out) < 10:
        out.append(f"{type(e).__name__}: {e}")
        e = e.__cause__ or e.__context__
    return "\n".join(out)


@dataclass(frozen=True)
class Shipped:
    """An object the driver put in the Ray object store once (``ray.put``); a worker on any
    node fetches it with :meth:`get` instead of reading the driver's files."""

    ref: Any

    def get(self) -> Any:
        import ray

        return ray.get(self.ref)


class RayExecutor(Executor):
    name = "ray"

    @classmethod
    def create(cls, workers: int = 1, *, ray_address: str | None = None,
               cpus_per_trial: float = 1, gpus_per_trial: float = 0,
               max_retries: int = 3) -> Executor:
        return cls(workers, ray_address, cpus_per_trial, gpus_per_trial)

    def __init__(self, workers: int = 2, address: str | None = None, cpus_per_trial: float = 1,
                 gpus_per_trial: float = 0) -> None:
        self.ray = require("ray", "ray")
        self.workers = workers
        self._started = False
        if not self.ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                self._connect(address, kw)
            else:  # a new private local cluster: every Ray process on the loopback address
                with _ray_loopback(self.ray):
                    self.ray.init(address="local",
                                  num_cpus=max(workers, int(cpus_per_trial * workers + 0.999)),
                                  _node_ip_address=RAY_LOCAL_IP, dashboard_host=RAY_LOCAL_IP,
                                  **kw)
                _check_loopback(self.ray)
            self._started = True
        # max_retries=0: the engine is the one retry layer (counted in the store)
        self._remote = self.ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial,
                                       max_retries=0)(run_tagged)
        ex = self.ray.exceptions
        self._lost = tuple(getattr(ex, n) for n in ("WorkerCrashedError", "NodeDiedError",
                                                     "LocalRayletDiedError", "OutOfMemoryError",
                                                     "TaskCancelledError") if hasattr(ex, n))
        self._task_error = ex.RayTaskError
        #: id(fn) -> (fn, the copy sent to workers): each fn is shipped once per executor
        self._portable: dict[int, tuple[Any, Any]] = {}

    def _connect(self, address: str, kw: dict[str, Any]) -> None:
        """Join the running cluster at ``address`` (``host:port`` of its head's GCS)."""
        hp = _host_port(address)
        if hp is not None:  # Ray itself retries a dead address for minutes: ask once, now
            try:
                socket.create_connection(hp, timeout=5).close()
            except OSError as e:
                raise UserError(
                    f"cannot join the Ray cluster at --ray-address {address!r}: nothing "
                    f"answers there ({e}). Start the head first (`ray start --head --port "
                    f"{hp[1]}`), or pass the HOST:PORT that `ray start --head` printed") from None
        _reread_ray_token(self.ray)
        try:
            if hp is not None and _is_loopback(hp[0]):  # a cluster on 127.0.0.1: so this driver
                with _ray_loopback(self.ray):
                    self.ray.init(address=address, _node_ip_address=RAY_LOCAL_IP, **kw)
            else:
                self.ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            if "InvalidAuthToken" in _chain(e):
                raise UserError(
                    f"the Ray cluster at --ray-address {address!r} refused this driver's "
                    "authentication token: `export RAY_AUTH_MODE=token` and give the head's "
                    "token (copy its ~/.ray/auth_token here, or set RAY_AUTH_TOKEN / "
                    "RAY_AUTH_TOKEN_PATH)") from None
            raise UserError(
                f"cannot join the Ray cluster at --ray-address {address!r}: {e}. Start it "
                "first (`ray start --head --port PORT` on the head machine, `ray start "
                "--address HEAD:PORT` on each worker), run the search on a machine of that "
                "cluster, and pass the head's HOST:PORT") from None

    def share(self, obj: Any) -> Shipped:
        """Put ``obj`` in the object store once; workers fetch it from there."""
        return Shipped(self.ray.put(obj))

    def _to_ship(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The copy of ``fn`` that workers get: ``fn.ship(self.share)`` where it has one."""
        hit = self._portable.get(id(fn))
        if hit is None or hit[0] is not fn:
            ship = getattr(fn, "ship", None)
            hit = self._portable[id(fn)] = (fn, ship(self.share) if callable(ship) else fn)
        return hit[1]

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        inner = self._remote.remote(self._to_ship(fn), *args).future()
        out: cf.Future = cf.Future()

        def done(f: cf.Future) -> None:
            e = f.exception()
            if e is None:
                out.set_result(f.result())
            elif isinstance(e, self._lost):
                out.set_exception(WorkerLost(f"ray worker lost: {type(e).__name__}"))
            elif isinstance(e, self._task_error):  # re-raise the trial's own exception type
                cause = getattr(e, "cause", None)
                out.set_exception(cause if isinstance(cause, BaseException) else e)
            else:
                out.set_exception(e)

        inner.add_done_callback(done)
        return out

    def close(self) -> None:
        self._portable.clear()
        if self._started:
            self.ray.shutdown()
            self._started = False


def _translate(inner: cf.Future, lost: tuple[type[BaseException], ...]) -> cf.Future:
    """A future that reports backend-specific worker deaths as :class:`WorkerLost`."""
    out: cf.Future = cf.Future()

    def done(f: cf.Future) -> None:
        if f.cancelled():
            out.set_exception(WorkerLost("trial cancelled (its pool was shut down)"))
            return
        e = f.exception()
        if e is None:
            out.set_result(f.result())
        elif isinstance(e, lost):
            out.set_exception(WorkerLost(f"worker process died: {e}"))
        else:
            out.set_exception(e)

    inner.add_done_callback(done)
    return out


def _builtins(reg: Registry[type[Executor]]) -> None:
    for cls in (LocalExecutor, ProcessExecutor, RayExecutor):
        reg.register(cls.name, cls)


#: name -> executor class; user backends: ``EXECUTORS.register("mine", MyExecutor)``
EXECUTORS: Registry[type[Executor]] = Registry("executor", builtins=_builtins)


def create_executor(name: str, workers: int = 1, *, ray_address: str | None = None,
                    cpus_per_trial: float = 1, gpus_per_trial: float = 0,
                    max_retries: int = 3) -> Executor:
    """The executor ``name`` (a miss lists the registered ones)."""
    return EXECUTORS.get(name).create(workers, ray_address=ray_address,
                                      cpus_per_trial=cpus_per_trial,
                                      gpus_per_trial=gpus_per_trial, max_retries=max_retries)
