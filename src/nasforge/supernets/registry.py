"""Every supernet by name: ``SUPERNETS.get(name)(space, cost_model) -> Supernet``.

The contract tests run over this registry, so a new relaxation is tested like the shipped
ones as soon as it is registered (with the spaces it relaxes: ``spaces`` in the entry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nasforge.cost.model import CostModel
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace
from nasforge.supernets.base import Supernet


@dataclass(frozen=True)
class SupernetEntry:
    """``build(space, cost_model)``; ``space_type``: the space class it relaxes; ``costs``:
    the loss costs it supports."""

    build: Callable[[SearchSpace, CostModel], Supernet]
    space_type: type
    costs: tuple[str, ...]


def _builtins(r: Registry[SupernetEntry]) -> None:
    from nasforge.spaces.darts import DartsSpace
    from nasforge.spaces.dense import DenseSpace
    from nasforge.spaces.fbnet import FBNetSpace
    from nasforge.spaces.masking import MaskingSpace
    from nasforge.spaces.nb201 import NB201Space
    from nasforge.supernets.darts import DartsSupernet, NB201Supernet
    from nasforge.supernets.densenas import DenseSupernet
    from nasforge.supernets.dmasking import DMaskingSupernet
    from nasforge.supernets.fbnet import FBNetSupernet

    r.register("fbnet", SupernetEntry(FBNetSupernet.from_cost_model, FBNetSpace,
                                      ("latency", "flops", "params")))
    r.register("dmasking", SupernetEntry(DMaskingSupernet.from_cost_model, MaskingSpace,
                                         ("latency", "flops", "params")))
    r.register("densenas", SupernetEntry(DenseSupernet.from_cost_model, DenseSpace,
                                         ("latency", "flops")))
    r.register("darts", SupernetEntry(DartsSupernet.from_cost_model, DartsSpace,
                                      ("latency", "flops", "params")))
    r.register("darts-nb201", SupernetEntry(NB201Supernet.from_cost_model, NB201Space,
                                            ("latency", "flops", "params")))


SUPERNETS: Registry[SupernetEntry] = Registry("supernet", _builtins)
