"""Latency measurement on a target: ``cpu`` (TorchScript, fixed threads), ``onnx`` (ONNX Runtime
CPU execution provider), ``cuda`` (CUDA events). Times are microseconds per forward pass.

The same function measures LUT entries and whole exported models, so a prediction and its
measurement always come from the same runtime.
"""

from __future__ import annotations

import io
import platform
import statistics
import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.device import num_threads, preserved_rng
from nasforge.errors import UserError, require

TARGETS = ("cpu", "onnx", "cuda")
STATISTICS = ("median", "p10", "min", "mean")


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise UserError(f"unknown latency target {target!r}; choose from {list(TARGETS)}")
    if target == "cuda" and not torch.cuda.is_available():
        raise UserError("--target cuda needs a CUDA GPU; none is available (use cpu or onnx)")
    if target == "onnx":
        require("onnxruntime", "onnx")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_fingerprint(target: str, threads: int, batch: int = 1,
                       dtype: str = "float32") -> dict[str, Any]:
    """What identifies the device a latency was measured on; LUTs are refused across these."""
    fp: dict[str, Any] = {
        "target": target, "cpu": _cpu_model(), "machine": platform.machine(),
        "threads": threads, "batch": batch, "dtype": dtype, "torch": torch.__version__,
    }
    if target == "onnx":
        fp["onnxruntime"] = require("onnxruntime", "onnx").__version__
    if target == "cuda":
        fp["gpu"] = torch.cuda.get_device_name()
        fp["cuda"] = torch.version.cuda
    return fp


def summarize(samples: list[float], statistic: str) -> float:
    if statistic == "median":
        return float(statistics.median(samples))
    if statistic == "p10":
        return float(np.percentile(samples, 10))
    if statistic == "min":
        return float(min(samples))
    if statistic == "mean":
        return float(statistics.fmean(samples))
    raise UserError(f"unknown statistic {statistic!r}; choose from {list(STATISTICS)}")


def measure_latency(module: nn.Module, input_shape: tuple[int, ...], *, target: str = "cpu",
                    threads: int = 1, batch: int = 1, warmup: int = 10, repeats: int = 50,
                    statistic: str = "median") -> float:
    """Microseconds for one forward pass of ``module`` (eval mode) on ``target``."""
    check_target(target)
    module = module.eval()
    shape = (batch, *input_shape)
    with preserved_rng(), num_threads(threads if target != "cuda" else None):
        if target == "cpu":
            samples = _time_cpu(module, shape, warmup, repeats)
        elif target == "onnx":
            samples = _time_onnx(module, shape, warmup, repeats, threads)
        else:
            samples = _time_cuda(module, shape, warmup, repeats)
    return summarize(samples, statistic)


def _time_cpu(module: nn.Module, shape: tuple[int, ...], warmup: int,
              repeats: int) -> list[float]:
    module = module.cpu()
    x = torch.randn(shape)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, x, check_trace=False)
        for _ in range(warmup):
            traced(x)
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            traced(x)
            out.append((time.perf_counter() - t0) * 1e6)
    return out


def onnx_bytes(module: nn.Module, shape: tuple[int, ...]) -> bytes:
    """Export ``module`` to ONNX in memory (TorchScript-based exporter: fast and quiet)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.cpu().eval(), (torch.randn(shape),), buf, dynamo=False,
                          input_names=["input"], output_names=["output"], opset_version=17)
    return buf.getvalue()


def ort_session(model: bytes | str, threads: int) -> Any:
    ort = require("onnxruntime", "onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _time_onnx(module: nn.Module, shape: tuple[int, ...], warmup: int, repeats: int,
               threads: int) -> list[float]:
    sess = ort_session(onnx_bytes(module, shape), threads)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(warmup):
        sess.run(None, {name: x})
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def _time_cuda(module: nn.Module, shape: tuple[int, ...], warmup: int,
               repeats: int) -> list[float]:
    module = module.cuda()
    x = torch.randn(shape, device="cuda")
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        torch.cuda.synchronize()
        for s, e in zip(starts, ends):
            s.record()
            module(x)
            e.record()
        torch.cuda.synchronize()
    return [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)]
