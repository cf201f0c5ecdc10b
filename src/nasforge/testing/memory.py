"""Peak tensor memory of a piece of code, measured on any device (CPU included).

CUDA has ``torch.cuda.max_memory_allocated``; the CPU allocator has no such counter, so
:func:`peak_tensor_bytes` watches every tensor an ATen op creates (a ``TorchDispatchMode``,
which also sees the backward pass) and frees its bytes when the *storage* dies (a
``weakref.finalize`` on the storage; PyTorch keeps a storage's Python object alive as long as
the storage lives, so the finalizer fires exactly at the free). Tensors that exist before the
call (parameters, inputs) are not counted: the figure is the extra memory the call needs.
Allocations *inside* a kernel (scratch space) are invisible — they are the same for any
choice of options, which is what the comparisons here are about.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class _Tracker(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                key = st._cdata
                if key not in self.live:
                    n = st.nbytes()
                    self.live[key] = n
                    self.current += n
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(st, self._free, key)
        return out


def peak_tensor_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes of tensors created (and still alive) while ``fn()`` runs."""
    gc.collect()
    tracker = _Tracker()
    with tracker:
        fn()
    gc.collect()
    return tracker.peak
