"""FBNetV2's claim: channel masking keeps supernet memory and time flat as the number of width
options grows; one branch per option does not.

For K = 2, 4, 8, 16, 32 width options per layer, a supernet of ``--layers`` searchable 3×3
conv layers (widths evenly spaced up to ``--cmax``) + pool + classifier is trained for a few
steps with Gumbel weights from θ: the masking form (:class:`MaskedConvBNAct`, one conv at the
largest width, ``y = b(x) ∘ Σ g_i l_i``) and the naive form (:class:`BranchedConvBNAct`, one
conv per option, zero-padded and summed), side by side. Prints step time (median, ms) and peak
memory (MB) per K, then one JSON line. CUDA when present (``max_memory_allocated``), else a
small CPU setting (peak bytes of the tensors the step creates, :func:`peak_tensor_bytes`).

    python benchmarks/fbnetv2_channel_options.py [--device cpu|cuda] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from nasforge.supernets.gumbel import gumbel_softmax
from nasforge.supernets.masking_layers import BranchedConvBNAct, MaskedConvBNAct
from nasforge.testing.memory import peak_tensor_bytes


class ChannelSupernet(nn.Module):
    def __init__(self, layer: type, k: int, layers: int, cmax: int, cin: int = 3,
                 classes: int = 10) -> None:
        super().__init__()
        widths = [max(1, round(cmax * (i + 1) / k)) for i in range(k)]
        self.layers = nn.ModuleList(
            layer(cin if i == 0 else cmax, widths, 3, 2 if i in (1, 3) else 1)
            for i in range(layers))
        self.theta = nn.Parameter(torch.zeros(layers, k))
        self.fc = nn.Linear(cmax, classes)

    def forward(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        g = gumbel_softmax(self.theta, 1.0, gen)
        for i, layer in enumerate(self.layers):
            x = layer(x, g[i])
        return self.fc(x.mean((2, 3)))


def measure(kind: str, k: int, a: argparse.Namespace, dev: torch.device) -> tuple[float, float]:
    torch.manual_seed(0)
    cls = MaskedConvBNAct if kind == "masking" else BranchedConvBNAct
    net = ChannelSupernet(cls, k, a.layers, a.cmax).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(a.batch, 3, a.size, a.size, device=dev)
    y = torch.randint(0, 10, (a.batch,), device=dev)
    gen = torch.Generator(device=dev).manual_seed(0)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x, gen), y).backward()
        opt.step()

    for _ in range(2):
        step()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    for _ in range(a.steps):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        sync()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = peak_tensor_bytes(step)
    return statistics.median(times), peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--options", default="2,4,8,16,32")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--cmax", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads")
    a = ap.parse_args()
    cuda = torch.cuda.is_available() if a.device == "auto" else a.device == "cuda"
    dev = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(a.threads)
    # CUDA: an ImageNet-ish layer size; CPU: small enough for a laptop core
    a.layers = a.layers or (6 if cuda else 4)
    a.cmax = a.cmax or (256 if cuda else 64)
    a.batch = a.batch or (64 if cuda else 16)
    a.size = a.size or (56 if cuda else 32)
    print(f"device {dev}; {a.layers} layers, widths up to {a.cmax}, batch {a.batch}, "
          f"{a.size}×{a.size} input; median of {a.steps} steps")
    print(f"{'options':>7} | {'masking ms':>10} {'MB':>8} | {'naive ms':>10} {'MB':>8}")
    rows = []
    for k in (int(v) for v in a.options.split(",")):
        mt, mm = measure("masking", k, a, dev)
        nt, nm = measure("naive", k, a, dev)
        rows.append({"options": k, "masking_ms": mt, "masking_mb": mm, "naive_ms": nt,
                     "naive_mb": nm})
        print(f"{k:>7} | {mt:>10.1f} {mm:>8.1f} | {nt:>10.1f} {nm:>8.1f}", flush=True)
    first, last = rows[0], rows[-1]
    print(json.dumps({"device": str(dev), "rows": rows,
                      "masking_growth": {"time": last["masking_ms"] / first["masking_ms"],
                                         "memory": last["masking_mb"] / first["masking_mb"]},
                      "naive_growth": {"time": last["naive_ms"] / first["naive_ms"],
                                       "memory": last["naive_mb"] / first["naive_mb"]}}))


if __name__ == "__main__":
    main()
