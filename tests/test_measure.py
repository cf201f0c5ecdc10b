"""Latency measurement: targets, clocks, fingerprints, interleaving."""

import importlib.util
import time

import numpy as np
import pytest
import torch
from torch import nn

from nasforge.cost import measure as M
from nasforge.errors import UserError

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None


def test_clock_resolution():
    assert M.resolve_clock("cpu", 1) == "thread"
    assert M.resolve_clock("onnx", 1) == "thread"
    assert M.resolve_clock("cpu", 2) == "wall"
    assert M.resolve_clock("cuda", 4) == "cuda"
    assert M.resolve_clock("cpu", 1, "wall") == "wall"
    with pytest.raises(UserError, match="other threads"):
        M.resolve_clock("cpu", 2, "thread")
    with pytest.raises(UserError, match="CUDA events"):
        M.resolve_clock("cpu", 1, "cuda")
    with pytest.raises(UserError, match="unknown clock"):
        M.resolve_clock("cpu", 1, "sundial")


def test_thread_clock_ignores_time_off_cpu():
    """Why the thread clock: time the OS gives to others (here: a sleep) is not counted."""
    call = lambda: time.sleep(0.01)  # noqa: E731
    wall = M._perf_loop(call, 3, time.perf_counter_ns)
    thread = M._perf_loop(call, 3, time.thread_time_ns)
    assert min(wall) >= 10_000 * 0.9
    assert max(thread) < 2_000


def test_fingerprint_fields():
    fp = M.device_fingerprint("cpu", 1, batch=4, dtype="bfloat16")
    for k in ("cpu", "machine", "threads", "batch", "dtype", "clock", "torch", "target"):
        assert k in fp
    assert (fp["batch"], fp["dtype"], fp["threads"], fp["clock"]) == (4, "bfloat16", 1, "thread")
    assert M.device_fingerprint("cpu", 1) != M.device_fingerprint("cpu", 2)
    assert M.device_fingerprint("cpu", 1) != M.device_fingerprint("cpu", 1, batch=8)


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")
def test_onnx_fingerprint_has_runtime_version():
    assert "onnxruntime" in M.device_fingerprint("onnx", 1)


def test_bad_targets_and_dtypes():
    with pytest.raises(UserError, match="unknown latency target"):
        M.check_target("tpu")
    with pytest.raises(UserError, match="unknown dtype"):
        M.check_target("cpu", "int3")
    with pytest.raises(UserError, match="float32"):
        M.check_target("onnx", "bfloat16")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA"):
            M.check_target("cuda")


def test_summarize_matches_numpy():
    s = list(np.random.default_rng(0).exponential(size=101) + 5)
    assert M.summarize(s, "median") == pytest.approx(np.median(s))
    assert M.summarize(s, "p10") == pytest.approx(np.percentile(s, 10))
    assert M.summarize(s, "min") == min(s)
    assert M.summarize(s, "mean") == pytest.approx(np.mean(s))
    with pytest.raises(UserError):
        M.summarize(s, "mode")


def _big():
    return nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=1))


@pytest.mark.parametrize("target", ["cpu", pytest.param("onnx", marks=pytest.mark.skipif(
    not HAS_ORT, reason="onnxruntime not installed"))])
def test_measure_many_orders_work(target):
    small, big = M.measure_many([(nn.Identity(), (32, 16, 16)), (_big(), (32, 16, 16))],
                                target=target, repeats=6, rounds=3, warmup=2)
    assert 0 < small < big
    assert big > 5 * small  # ~10 MMACs vs a no-op


def test_measure_latency_batch_scales():
    one = M.measure_latency(_big(), (32, 16, 16), batch=1, repeats=5, warmup=2)
    four = M.measure_latency(_big(), (32, 16, 16), batch=4, repeats=5, warmup=2)
    assert four > 1.3 * one  # 4× the work; batching makes it cheaper than 4×, never free


def test_measure_leaves_rng_and_threads_alone():
    torch.manual_seed(3)
    a = torch.rand(1)
    torch.manual_seed(3)
    n = torch.get_num_threads()
    M.measure_latency(nn.Identity(), (1, 4, 4), threads=1, repeats=2, warmup=1)
    assert torch.get_num_threads() == n
    assert torch.equal(torch.rand(1), a)


def test_probe_is_deterministic():
    a, b = M.probe_module(), M.probe_module()
    x = torch.randn(1, *M.PROBE_SHAPE)
    assert torch.equal(a(x), b(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_events_time_positive():  # pragma: no cover - GPU only
    t = M.measure_latency(_big(), (32, 16, 16), target="cuda", repeats=10)
    assert t > 0
    assert M.device_fingerprint("cuda", 1)["gpu"]
