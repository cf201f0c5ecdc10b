"""Compute device selection, seeding and RNG state capture (for exact resume)."""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from nasforge.errors import UserError


def resolve_device(name: str | None = None) -> torch.device:
    """``auto`` (or None) picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for but no CUDA GPU is available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use cpu, cuda or auto") from None


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices). Components still take explicit generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Global RNG states, as tensors/lists that ``torch.save`` stores with weights_only=True."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _np_state_to_plain(np.random.get_state()),
        "python": _py_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(_np_state_from_plain(state["numpy"]))
    random.setstate(_py_state_from_plain(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def generator_state(gen: torch.Generator) -> torch.Tensor:
    return gen.get_state()


def _np_state_to_plain(st: tuple) -> dict[str, Any]:
    return {"keys": torch.from_numpy(st[1].astype(np.int64)), "pos": int(st[2]),
            "has_gauss": int(st[3]), "gauss": float(st[4])}


def _np_state_from_plain(d: dict[str, Any]) -> tuple:
    return ("MT19937", d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["gauss"])


def _py_state_to_plain(st: tuple) -> list[Any]:
    return [st[0], list(st[1]), st[2]]


def _py_state_from_plain(d: list[Any]) -> tuple:
    return (d[0], tuple(d[1]), d[2])


@contextmanager
def num_threads(n: int | None):
    """Temporarily fix torch's intra-op thread count (latency measurement needs it fixed)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def preserved_rng():
    """Run a block without disturbing the global RNG (e.g. LUT measurement)."""
    st = rng_state()
    try:
        yield
    finally:
        set_rng_state(st)
