"""Data-parallel plumbing on ``torch.distributed`` for the supernet loop (nothing home-made: the
process group, its collectives and timeouts are torch's; process start and monitoring are
``torch.multiprocessing``'s or ``torchrun``'s elastic agent).

- :class:`Context`: a process's rank, world size and local rank, and the three collectives the
  loop needs (gradient average, sum, gather). The single-process context does nothing, so the
  loop has one code path.
- :func:`init`: the process group from the environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``: what ``torchrun`` and :func:`launch` set);
  gloo on CPU, NCCL on CUDA, with a timeout so that a stuck collective fails instead of hanging.
- :func:`launch`: ``--nproc N`` on one machine: N processes on 127.0.0.1 and a free port,
  watched by the parent; a rank that dies (an error, ``kill -9``) stops the others and raises
  :class:`RankFailed` within about a second.
- :func:`seed_for`: each rank's own random streams from (seed, rank, stream).
"""

from __future__ import annotations

import ctypes
import datetime
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nasforge.errors import UserError

MASTER_ADDR = "127.0.0.1"
#: seconds a collective may wait for the other ranks before the group fails (a peer that is
#: alive but stuck); a dead peer is caught sooner by the launcher or torchrun's agent
TIMEOUT_ENV = "NASFORGE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 120.0
#: seconds the launcher gives the other ranks to stop after one failed, before SIGKILL
GRACE_S = 1.0
_SPAWNED = "NASFORGE_SPAWNED"


class RankFailed(UserError):
    """A rank of a data-parallel run died or raised; the others were stopped. One line (the CLI
    prints it and exits with status 2), naming the rank and how to resume."""


@dataclass(frozen=True)
class Context:
    """Where this process stands in the job. ``Context()`` is the single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch of indices (N near-equal contiguous parts)."""
        return idx.tensor_split(self.world_size)[self.rank] if self.active else idx

    def average_grads(self, params: Sequence[torch.Tensor],
                      extras: Sequence[float] = ()) -> list[float]:
        """Replace every ``p.grad`` by its mean over the ranks, in one all-reduce; returns the
        ranks' mean of ``extras``. A gradient missing (None) on a rank counts as zero there;
        missing on every rank it stays None, as in a single-process step (SGD then skips the
        parameter: no weight decay, no momentum)."""
        if not self.active:
            return list(extras)
        if not params:
            return self.mean(extras)
        dtype, dev = params[0].dtype, params[0].device
        parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dtype)
                 for p in params]
        flags = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=dev)
        buf = torch.cat([*parts, flags, torch.tensor(list(extras), dtype=dtype, device=dev)])
        torch.distributed.all_reduce(buf)
        buf /= self.world_size
        off = 0
        for p in params:
            n = p.numel()
            p.grad = buf[off:off + n].view_as(p).to(p.dtype).clone()
            off += n
        seen = buf[off:off + len(params)]
        for p, f in zip(params, seen.tolist()):
            if f == 0:
                p.grad = None
        return buf[off + len(params):].tolist()

    def mean(self, values: Sequence[float]) -> list[float]:
        """The ranks' mean of each value (float64)."""
        if not self.active:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=self._device())
        torch.distributed.all_reduce(t)
        return (t / self.world_size).tolist()

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the ranks, in place."""
        if self.active:
            torch.distributed.all_reduce(t)
        return t

    def broadcast_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Rank 0's values of ``tensors`` on every rank (the start DDP would enforce)."""
        if self.active:
            with torch.no_grad():  # in place on the storage, outside autograd
                for t in tensors:
                    torch.distributed.broadcast(t.detach(), src=0)

    def gather_bytes(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's uint8 tensor of one common size (a generator state), on the CPU."""
        if not self.active:
            return [t]
        dev = self._device()
        out = [torch.empty_like(t, device=dev) for _ in range(self.world_size)]
        torch.distributed.all_gather(out, t.to(dev))
        return [o.cpu() for o in out]

    def _device(self) -> torch.device:
        """Where a collective's tensors live: the rank's GPU under NCCL, else the CPU."""
        if torch.distributed.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


SINGLE = Context()


def env_context() -> Context:
    """The context the environment describes (``torchrun`` / :func:`launch` variables)."""
    try:
        return Context(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                       int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun); "
                        "unset them to run in one process") from None


def under_torchrun() -> bool:
    """True in a process ``torchrun`` (or another env:// launcher) started with WORLD_SIZE > 1,
    as opposed to one of :func:`launch`'s workers."""
    return env_context().active and os.environ.get(_SPAWNED) != "1"


def timeout_s() -> float:
    v = os.environ.get(TIMEOUT_ENV)
    try:
        t = float(v) if v else DEFAULT_TIMEOUT_S
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV} must be a number of seconds, got {v!r}") from None
    if t <= 0:
        raise UserError(f"{TIMEOUT_ENV} must be positive, got {v!r}")
    return t


def init(device: torch.device | str = "cpu") -> Context:
    """Join the process group the environment describes: NCCL when ``device`` is CUDA (each
    rank on GPU ``LOCAL_RANK``), else gloo."""
    ctx = env_context()
    if not ctx.active or torch.distributed.is_initialized():
        return ctx
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(ctx.local_rank)
    for k in ("MASTER_ADDR", "MASTER_PORT"):
        if k not in os.environ:
            raise UserError(f"{k} is not set: start data-parallel runs with --nproc N or with "
                            "torchrun (docs/distributed.md)")
    torch.distributed.init_process_group(
        backend="nccl" if cuda else "gloo", init_method="env://", rank=ctx.rank,
        world_size=ctx.world_size, timeout=datetime.timedelta(seconds=timeout_s()))
    return ctx


def shutdown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def seed_for(seed: int, rank: int, stream: int, *more: int) -> int:
    """A seed for rank ``rank``'s random ``stream``, independent across ranks and streams
    (numpy's SeedSequence over (seed, rank, stream, …))."""
    ss = np.random.SeedSequence([int(seed) % 2**63, rank, stream, *more])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def free_port(host: str = MASTER_ADDR) -> int:
    """A TCP port free on ``host`` now (the OS's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the launching process dies (even by kill -9), so no
    orphaned rank keeps training."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _entry(index: int, fn: Callable[..., Any], world: int, port: int, threads: int,
           args: tuple[Any, ...]) -> None:
    """A :func:`launch` worker: the env:// variables torchrun would set, then ``fn(*args)``."""
    _die_with_parent()
    os.environ.update({"MASTER_ADDR": MASTER_ADDR, "MASTER_PORT": str(port),
                       "RANK": str(index), "LOCAL_RANK": str(index),
                       "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world),
                       _SPAWNED: "1"})
    # one machine: keep gloo / NCCL's sockets on the loopback interface
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
    torch.set_num_threads(threads)
    try:
        fn(*args)
    except BaseException:
        shutdown()
        raise
    _leave_together()


def _leave_together() -> None:
    """A rank's clean exit: wait for every rank, close the group, then end the process without
    the interpreter's teardown. The ranks' work is done and saved by now; what remains is C++
    static destruction, where a gloo thread still joinable aborts the process (``terminate
    called without an active exception``, SIGABRT), which the launcher would report as a failed
    rank although nothing failed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def launch(nproc: int, fn: Callable[..., Any], args: tuple[Any, ...] = (), *,
           threads: int | None = None, poll_s: float = 0.25) -> None:
    """Run ``fn(*args)`` in ``nproc`` new processes (ranks 0…N−1 on 127.0.0.1) and wait.

    ``fn`` must be importable (spawn start: CUDA-safe, nothing inherited). Each rank gets
    ``threads`` intra-op threads (default: the cores split evenly, or ``OMP_NUM_THREADS``).
    When a rank raises or is killed, torch.multiprocessing stops the others (SIGTERM, then
    SIGKILL after :data:`GRACE_S`) and this raises :class:`RankFailed`."""
    if nproc < 1:
        raise UserError(f"--nproc must be ≥ 1, got {nproc}")
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS")
        threads = int(env) if env and env.isdigit() else max(1, (os.cpu_count() or 1) // nproc)
    import torch.multiprocessing as mp

    ctx = mp.start_processes(_entry, args=(fn, nproc, free_port(), threads, args),
                             nprocs=nproc, join=False, start_method="spawn")
    try:
        while not ctx.join(timeout=poll_s, grace_period=GRACE_S):
            pass
    except mp.ProcessExitedException as e:
        sig = f"was killed by {e.signal_name}" if e.signal_name else f"exited with {e.exit_code}"
        pid = ctx.processes[e.error_index].pid
        raise RankFailed(f"data-parallel search: rank {e.error_index} (pid {pid}) {sig}; the "
                         "other ranks were stopped. Resume with --resume RUN_DIR (any "
                         "--nproc)") from None
    except mp.ProcessRaisedException as e:
        raise RankFailed(f"data-parallel search: rank {e.error_index} failed: "
                         f"{_last_line(str(e))}; the other ranks were stopped. Fix it and "
                         "resume with --resume RUN_DIR") from None
    except BaseException:  # KeyboardInterrupt in the parent: stop every rank, then re-raise
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
        for p in ctx.processes:
            p.join(GRACE_S)
            if p.is_alive():
                p.kill()
        raise


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


def broadcast_text(text: str | None, ctx: Context) -> str:
    """Rank 0's ``text`` on every rank (UTF-8 bytes in a tensor: no pickling)."""
    dev = ctx._device()
    data = (text or "").encode() if ctx.is_main else b""
    n = torch.tensor([len(data)], dtype=torch.int64, device=dev)
    torch.distributed.broadcast(n, src=0)
    buf = (torch.tensor(list(data), dtype=torch.uint8, device=dev) if ctx.is_main
           else torch.empty(int(n.item()), dtype=torch.uint8, device=dev))
    torch.distributed.broadcast(buf, src=0)
    return bytes(buf.cpu().tolist()).decode()
