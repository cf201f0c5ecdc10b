"""The search methods ``nasforge search METHOD`` and :func:`nasforge.search` know.

A method is its settings dataclass (which the CLI flags are generated from) and the module's
``run(settings, run_dir) -> result`` function. Built-ins are registered explicitly below; a
user method is one ``METHODS.register(name, MethodSpec(...))`` away.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nasforge.methods.settings import SearchSettings
from nasforge.registry import Registry
from nasforge.run.rundir import RunDir


@dataclass(frozen=True)
class MethodSpec:
    name: str
    settings_cls: type[SearchSettings]
    run: Callable[[Any, RunDir], dict[str, Any]]
    summary: str


def _builtins(reg: Registry[MethodSpec]) -> None:
    from nasforge.methods import darts, densenas, fbnet, fbnetv2, jointnas, sampled

    reg.register("fbnet", MethodSpec(
        "fbnet", fbnet.FBNetSettings, fbnet.run,
        "FBNet: Gumbel-softmax supernet with a latency-aware loss (LUT on --target)"))
    reg.register("fbnetv2", MethodSpec(
        "fbnetv2", fbnetv2.FBNetV2Settings, fbnetv2.run,
        "FBNetV2 (DMaskingNAS): channel/resolution masking supernet, effective-shape cost"))
    reg.register("densenas", MethodSpec(
        "densenas", densenas.DenseNASSettings, densenas.run,
        "DenseNAS: densely connected supernet searching widths and depths (Viterbi path)"))
    reg.register("darts", MethodSpec(
        "darts", darts.DartsSettings, darts.run,
        "DARTS: softmax-relaxed cell (--cell darts|nb201), first/second order, collapse check"))
    reg.register("jointnas", MethodSpec(
        "jointnas", jointnas.JointNASSettings, jointnas.run,
        "FBNetV3 JointNAS: architecture + training recipe through a reusable accuracy predictor"))
    from nasforge.methods import enas

    reg.register("enas", MethodSpec(
        "enas", enas.EnasSettings, enas.run,
        "ENAS: shared weights + LSTM controller (REINFORCE) over cells (--space darts|nb201)"))
    for name, what in (("blockqnn", "BlockQNN: Q-learning over NSC blocks"),
                       ("evolution", "regularized evolution over NSC blocks"),
                       ("reinforce", "REINFORCE policy gradient over NSC blocks"),
                       ("random", "random search over NSC blocks")):
        reg.register(name, MethodSpec(name, sampled.SampleSettings, sampled.run,
                                      f"{what} (each trial trained briefly, early stop)"))


METHODS: Registry[MethodSpec] = Registry("search method", builtins=_builtins)
