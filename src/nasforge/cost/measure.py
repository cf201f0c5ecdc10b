"""Latency measurement on a target: ``cpu`` (TorchScript, fixed threads), ``onnx`` (ONNX Runtime
CPU execution provider), ``cuda`` (CUDA events after warm-up). Times are microseconds per forward
pass of a batch of ``batch`` inputs in ``dtype``.

The same code measures LUT entries and whole networks, so a prediction and its measurement always
come from the same runtime. :func:`measure_many` times several modules *interleaved* (round robin,
in a shuffled order each round): on a shared machine a burst of foreign load then slows every
module a little instead of one module a lot, which is what makes a table of many short
measurements consistent with itself. :func:`measure_latency` is the one-module case.
"""

from __future__ import annotations

import io
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.device import num_threads, preserved_rng
from nasforge.errors import UserError, require
from nasforge.progress import Bar
from nasforge.registry import Registry

STATISTICS = ("median", "p10", "min", "mean")
#: ``min`` over interleaved rounds: foreign load on a shared CPU only ever adds time, and on this
#: project's 2-core machine the minimum was the only statistic whose repeat error stayed ≈ 1–2 %
#: (median: up to 60 % under load; see docs/cost_models.md)
DEFAULT_STATISTIC = "min"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CLOCKS = ("auto", "wall", "thread", "cuda")


def resolve_clock(target: str, threads: int, clock: str = "auto") -> str:
    """Which clock times a forward pass. ``auto``: CUDA events on cuda; on cpu/onnx with one
    thread the *thread CPU clock* — the pass runs in the calling thread, and that clock stops
    while the OS runs another process on the core, so a shared machine's load does not inflate
    the time (measured here: median/min 2.7 on the wall clock vs 1.2 on the thread clock with
    3 foreign processes on 2 cores); with more threads the wall clock (work on other threads)."""
    if clock not in CLOCKS:
        raise UserError(f"unknown clock {clock!r}; choose from {list(CLOCKS)}")
    if TARGETS.get(target).device_events:
        if clock not in ("auto", "cuda"):
            raise UserError(f"the {target} target is timed with CUDA events; use --clock auto")
        return "cuda"
    if clock == "cuda":
        raise UserError(f"CUDA events cannot time the {target} target; use auto, wall or thread")
    if clock == "auto":
        return "thread" if threads == 1 else "wall"
    if clock == "thread" and threads != 1:
        raise UserError("the thread CPU clock misses work done on other threads; use it only "
                        "with --threads 1 (or --clock wall)")
    return clock


def check_target(target: str, dtype: str = "float32") -> None:
    """A usable (target, dtype) on this machine, or a UserError saying why not (an unknown
    target lists the registered ones)."""
    t = TARGETS.get(target)
    t.available()
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose from {list(DTYPES)}")
    if dtype not in t.dtypes:
        raise UserError(t.dtype_hint or f"the {target} target measures "
                        f"{', '.join(t.dtypes)} models only; use one of them (--dtype)")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_fingerprint(target: str, threads: int, batch: int = 1, dtype: str = "float32",
                       clock: str = "auto") -> dict[str, Any]:
    """What identifies the device a latency was measured on; LUTs are refused across these.

    Batch size and dtype are part of it: a table measured at batch 1 in float32 says nothing
    about batch 8 in bfloat16. ``threads`` is meaningless on cuda and recorded as 0 there."""
    fp: dict[str, Any] = {
        "target": target, "cpu": _cpu_model(), "machine": platform.machine(),
        "cpu_count": os.cpu_count() or 0,
        "threads": threads if not TARGETS.get(target).device_events else 0,
        "batch": batch, "dtype": dtype, "clock": resolve_clock(target, threads, clock),
        "torch": torch.__version__,
    }
    fp.update(TARGETS.get(target).runtime_info())
    return fp


def summarize(samples: Sequence[float], statistic: str) -> float:
    """One number from timing samples. ``p10``/``min`` resist foreign load (it only adds time);
    ``median`` is the usual choice on a quiet machine."""
    if statistic == "median":
        return float(statistics.median(samples))
    if statistic == "p10":
        return float(np.percentile(samples, 10))
    if statistic == "min":
        return float(min(samples))
    if statistic == "mean":
        return float(statistics.fmean(samples))
    raise UserError(f"unknown statistic {statistic!r}; choose from {list(STATISTICS)}")


#: input shape (C, H, W) of :func:`probe_module`
PROBE_SHAPE = (16, 14, 14)


def probe_module() -> nn.Module:
    """A fixed reference workload (one inverted residual block) timed alongside any set of
    measurements: the ratio of its times in two sessions is how much faster or slower the device
    was in one than the other (on a shared machine: foreign load, caches, clock)."""
    from nasforge.blocks import InvertedResidual

    with preserved_rng():
        torch.manual_seed(0)
        return InvertedResidual(16, 16, kernel=3, stride=1, hidden=48).eval()


#: a prepared measurement: ``timer(n)`` runs n forward passes and returns n times in µs
Timer = Callable[[int], list[float]]


def measure_latency(module: nn.Module, input_shape: tuple[int, ...], *, target: str = "cpu",
                    threads: int = 1, batch: int = 1, dtype: str = "float32", warmup: int = 10,
                    repeats: int = 50, statistic: str = DEFAULT_STATISTIC,
                    clock: str = "auto") -> float:
    """Microseconds for one forward pass of ``module`` (eval mode) on ``target``."""
    return measure_many([(module, input_shape)], target=target, threads=threads, batch=batch,
                        dtype=dtype, warmup=warmup, repeats=repeats, statistic=statistic,
                        clock=clock, progress=False)[0]


def measure_many(modules: Sequence[tuple[nn.Module, tuple[int, ...]]], *, target: str = "cpu",
                 threads: int = 1, batch: int = 1, dtype: str = "float32", warmup: int = 10,
                 repeats: int = 50, rounds: int = 10, statistic: str = DEFAULT_STATISTIC,
                 clock: str = "auto", seed: int = 0, progress: bool = False,
                 desc: str = "measure") -> list[float]:
    """Microseconds per forward pass of each ``(module, input_shape)``, timed interleaved.

    Every module is prepared (traced / exported / moved) and warmed up first; then ``rounds``
    rounds each time every module ``ceil(repeats / rounds)`` times, in an order shuffled per
    round (seeded), so the timing order is not systematically tied to a module.
    """
    check_target(target, dtype)
    tick = _CLOCK_FNS.get(resolve_clock(target, threads, clock))
    if repeats < 1 or warmup < 0 or rounds < 1:
        raise UserError(f"need repeats ≥ 1, warmup ≥ 0, rounds ≥ 1 (got {repeats}, {warmup}, "
                        f"{rounds})")
    rounds = min(rounds, repeats)
    per_round = -(-repeats // rounds)
    order_rng = np.random.default_rng(seed)
    with preserved_rng(), num_threads(None if TARGETS.get(target).device_events else threads):
        bar = Bar(len(modules) * (rounds + 1), desc, "meas", disable=not progress,
                  leave=False, digits=0)  # per module: its warm-up, then each round's timing
        timers = []
        for m, shape in modules:
            timers.append(_prepare(m, (batch, *shape), target, threads, dtype, warmup, tick))
            bar.advance()
        samples: list[list[float]] = [[] for _ in timers]
        for _ in range(rounds):
            for i in order_rng.permutation(len(timers)):
                samples[i] += timers[i](per_round)
                bar.advance()
        bar.close()
    return [summarize(s, statistic) for s in samples]


_CLOCK_FNS: dict[str, Callable[[], int]] = {"wall": time.perf_counter_ns,
                                             "thread": time.thread_time_ns}


def _prepare(module: nn.Module, shape: tuple[int, ...], target: str, threads: int, dtype: str,
             warmup: int, tick: Callable[[], int] | None = None) -> Timer:
    module = module.eval()
    tick = tick or time.perf_counter_ns
    timer = TARGETS.get(target).timer(module, shape, threads, DTYPES[dtype], tick)
    if warmup:
        timer(warmup)
    return timer


def _perf_loop(call: Callable[[], Any], n: int, tick: Callable[[], int]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = tick()
        call()
        out.append((tick() - t0) / 1e3)
    return out


def _cpu_timer(module: nn.Module, shape: tuple[int, ...], threads: int, dtype: torch.dtype,
               tick: Callable[[], int]) -> Timer:
    module = module.cpu().to(dtype)
    x = torch.randn(shape).to(dtype)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, x, check_trace=False)

    def timer(n: int) -> list[float]:
        with torch.inference_mode():
            return _perf_loop(lambda: traced(x), n, tick)

    return timer


def onnx_bytes(module: nn.Module, shape: tuple[int, ...]) -> bytes:
    """Export ``module`` to ONNX in memory (TorchScript-based exporter: fast and quiet)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.cpu().float().eval(), (torch.randn(shape),), buf, dynamo=False,
                          input_names=["input"], output_names=["output"], opset_version=17)
    return buf.getvalue()


def ort_session(model: bytes | str, threads: int) -> Any:
    ort = require("onnxruntime", "onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _onnx_timer(module: nn.Module, shape: tuple[int, ...], threads: int, dtype: torch.dtype,
                tick: Callable[[], int]) -> Timer:
    sess = ort_session(onnx_bytes(module, shape), threads)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    feed = {sess.get_inputs()[0].name: x}
    return lambda n: _perf_loop(lambda: sess.run(None, feed), n, tick)


def _cuda_timer(module: nn.Module, shape: tuple[int, ...], threads: int, dtype: torch.dtype,
                tick: Callable[[], int]) -> Timer:  # pragma: no cover - needs a GPU
    module = module.cuda().to(dtype)
    x = torch.randn(shape, device="cuda", dtype=dtype)

    def timer(n: int) -> list[float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        with torch.inference_mode():
            torch.cuda.synchronize()
            for s, e in zip(starts, ends):
                s.record()
                module(x)
                e.record()
            torch.cuda.synchronize()
        return [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)]

    return timer


# -- the measurement back-ends ------------------------------------------------------------------

#: a back-end's timer factory: (module, batch shape, threads, dtype, CPU clock) -> timer
TimerFactory = Callable[[nn.Module, tuple[int, ...], int, torch.dtype, Callable[[], int]], Timer]


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class MeasureTarget:
    """A latency measurement back-end (``--target``): how it times a module, which dtypes it
    runs, whether it can run here, and what of its runtime enters the device fingerprint."""

    name: str
    timer: TimerFactory
    dtypes: tuple[str, ...]
    dtype_hint: str = ""  # the message when another dtype is asked for
    device_events: bool = False  # timed with device events: no CPU clock, threads meaningless
    available: Callable[[], None] = _nothing  # raises UserError when it cannot run here
    runtime_info: Callable[[], dict[str, Any]] = field(default=dict)


def _need_cuda() -> None:
    if not torch.cuda.is_available():
        raise UserError("--target cuda needs a CUDA GPU; none is available (use cpu or onnx)")


def _need_onnxruntime() -> None:
    require("onnxruntime", "onnx")


def _onnx_info() -> dict[str, Any]:
    return {"onnxruntime": require("onnxruntime", "onnx").__version__}


def _cuda_info() -> dict[str, Any]:  # pragma: no cover - needs a GPU
    return {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}


def _builtins(reg: Registry[MeasureTarget]) -> None:
    reg.register("cpu", MeasureTarget(
        "cpu", _cpu_timer, ("float32", "bfloat16"),
        dtype_hint="float16 convolutions are not a CPU inference path; use float32 or "
                   "bfloat16 on cpu, float16 on cuda"))
    reg.register("onnx", MeasureTarget(
        "onnx", _onnx_timer, ("float32",),
        dtype_hint="the onnx target measures float32 models only; use --dtype float32",
        available=_need_onnxruntime, runtime_info=_onnx_info))
    reg.register("cuda", MeasureTarget(
        "cuda", _cuda_timer, ("float32", "bfloat16", "float16"), device_events=True,
        available=_need_cuda, runtime_info=_cuda_info))


#: ``--target`` name -> measurement back-end (user back-ends: ``TARGETS.register(name, ...)``)
TARGETS: Registry[MeasureTarget] = Registry("latency target", builtins=_builtins)
