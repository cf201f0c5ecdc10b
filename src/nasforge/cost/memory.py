"""Peak activation memory of a derived network, computed from its graph (and measured, to check).

Why: on a small device the activations that are alive at the same time, not the parameter
count, decide whether a network fits. No article of the seeds has this cost.

:func:`activation_memory` traces the network with ``torch.fx``, runs the graph once node by node
(inference mode, batch ``batch``) to learn the size of every node's output and which outputs are
*views* of an earlier tensor (same storage: ``view``, ``transpose``, an identity ``skip``…), then
replays the schedule: a storage is allocated when its first node runs and freed after the last
node that reads it (or any of its views); the input is held by the caller for the whole pass and
the output until the end. The peak is the largest sum of live storages. Temporaries *inside* a
leaf op (a convolution's workspace, oneDNN reorders) are not in the graph; :func:`measured_peak`
reads the real allocations from the PyTorch profiler to check the computed figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from nasforge.cost.measure import DTYPES
from nasforge.errors import UserError


@dataclass(frozen=True)
class MemoryReport:
    """Bytes. ``peak_bytes`` includes the input (the caller holds it during the pass);
    ``peak_node`` is the node at which the peak is reached."""

    peak_bytes: int
    input_bytes: int
    output_bytes: int
    peak_node: str
    timeline: list[tuple[str, int]] = field(default_factory=list, repr=False)

    @property
    def peak_intermediate_bytes(self) -> int:
        """The peak without the caller's input: what a forward pass allocates at most."""
        return self.peak_bytes - self.input_bytes


def _storage(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


class _Recorder(fx.Interpreter):
    """Runs the graph and records, per node, the storages of its tensor outputs."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.storages: dict[str, list[tuple[int, int]]] = {}
        self.keep: list[Any] = []  # every output stays alive: no address is reused

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.keep.append(out)
        seq = out if isinstance(out, (tuple, list)) else [out]
        ts = [v for v in seq if isinstance(v, torch.Tensor)]
        self.storages[n.name] = [_storage(t) for t in ts]
        return out


def activation_memory(module: nn.Module, input_shape: tuple[int, ...], *, batch: int = 1,
                      dtype: str = "float32") -> MemoryReport:
    """Peak bytes of activations alive at once during one inference pass of ``module``."""
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose from {list(DTYPES)}")
    module = module.eval()
    try:
        gm = fx.symbolic_trace(module)
    except Exception as e:  # fx raises many types for untraceable control flow
        raise UserError(f"cannot trace {type(module).__name__} with torch.fx to compute its "
                        f"activation memory ({type(e).__name__}: {e}); the network's forward "
                        "must not branch on tensor values") from None
    x = torch.randn(batch, *input_shape).to(DTYPES[dtype])
    gm = gm.to(DTYPES[dtype])
    rec = _Recorder(gm)
    with torch.inference_mode():
        rec.run(x)
    nodes = list(gm.graph.nodes)
    # the first node that produced each storage, and the last node that reads it
    born: dict[int, tuple[int, int]] = {}  # ptr -> (node index, bytes)
    last: dict[int, int] = {}
    for i, n in enumerate(nodes):
        for ptr, nbytes in rec.storages.get(n.name, []):
            if ptr not in born:
                born[ptr] = (i, nbytes)
            last[ptr] = max(last.get(ptr, i), i)
        for a in n.all_input_nodes:
            for ptr, _ in rec.storages.get(a.name, []):
                last[ptr] = max(last[ptr], i)
    input_ptrs = {p for n in nodes if n.op == "placeholder" for p, _ in rec.storages[n.name]}
    output_ptrs = {p for n in nodes if n.op == "output" for p, _ in rec.storages[n.name]}
    for p in input_ptrs | output_ptrs:
        last[p] = len(nodes)  # held by the caller
    live = 0
    peak, peak_node = 0, ""
    timeline: list[tuple[str, int]] = []
    dying: dict[int, list[int]] = {}
    for p, i in last.items():
        dying.setdefault(i, []).append(p)
    for i, n in enumerate(nodes):
        live += sum(b for p, (j, b) in born.items() if j == i)
        timeline.append((n.name, live))
        if live > peak:
            peak, peak_node = live, n.name
        live -= sum(born[p][1] for p in dying.get(i, []))
    in_bytes = sum(born[p][1] for p in input_ptrs)
    out_bytes = sum(born[p][1] for p in output_ptrs)
    return MemoryReport(peak, in_bytes, out_bytes, peak_node, timeline)


def measured_peak(module: nn.Module, input_shape: tuple[int, ...], *, batch: int = 1,
                  dtype: str = "float32") -> int:
    """Peak bytes the CPU allocator holds during one eager inference pass, beyond the input,
    from the PyTorch profiler's memory events (allocations and frees in time order)."""
    from torch.profiler import ProfilerActivity, profile

    module = module.eval().cpu().to(DTYPES[dtype])
    x = torch.randn(batch, *input_shape).to(DTYPES[dtype])
    with torch.inference_mode():
        module(x)  # first call: lazy initialisation outside the profile
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            y = module(x)
    del y
    allocs = []  # (time, signed bytes) of every allocation/free, nested ones included
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        n = stack.pop()
        stack.extend(n.children)
        size = getattr(n.extra_fields, "alloc_size", None)
        if n.name == "[memory]" and size is not None:
            allocs.append((n.start_time_ns, int(size)))
    live = peak = 0
    for _, b in sorted(allocs):
        live += b
        peak = max(peak, live)
    return int(peak)
