"""One cost interface for every space and method.

``CostModel.costs(arch) -> Costs(macs, params, latency_ms, peak_memory)`` prices a concrete
architecture of any space; the differentiable losses take their per-candidate values from
the *same* object (:meth:`CostModel.unit_cost` of a LUT key, in the loss's unit), so a
search and its final report can never disagree about what an op costs.

The latency table is loaded or built in one place, :meth:`CostModel.for_run`: a fresh run
stores the table it used in its run directory (``lut.json``) and a resumed run always reads
that copy back, so it continues with exactly the costs it started with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasforge.arch import Arch
from nasforge.cost.flops import count_module
from nasforge.cost.lut import LatencyTable, LutItem, LutKey, load_or_build
from nasforge.errors import UserError
from nasforge.spaces.base import SearchSpace

#: the units the relaxed losses use (log(cost) > 0 for a whole network in each)
LOSS_UNITS = {"latency": "µs (corrected LUT entries)", "flops": "kMACs", "params": "kparams"}


@dataclass(frozen=True)
class Costs:
    """What a concrete architecture costs. ``latency_ms`` is the LUT prediction on the target
    (None without a table); ``peak_memory`` the peak activation bytes at batch 1 (None unless
    asked for: it traces the model)."""

    macs: int
    params: int
    latency_ms: float | None = None
    peak_memory: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"macs": self.macs, "params": self.params, "latency_ms": self.latency_ms,
                "peak_memory": self.peak_memory}


Counter = Callable[[Arch], tuple[int, int]]


class MeasuredLatency:
    """Latency (ms) of an architecture *measured* on the target device, cached per
    architecture: the cost model of spaces without a latency table (the sample-based spaces),
    so a latency target is enforced on the device rather than ignored."""

    def __init__(self, space: SearchSpace, num_classes: int, input_shape: tuple[int, ...], *,
                 target: str = "cpu", threads: int = 1, warmup: int = 10,
                 repeats: int = 50) -> None:
        self.space, self.num_classes, self.input_shape = space, num_classes, tuple(input_shape)
        self.target, self.threads, self.warmup, self.repeats = target, threads, warmup, repeats
        self._ms: dict[str, float] = {}

    def of_model(self, model: Any) -> float:
        from nasforge.cost.measure import measure_latency

        return measure_latency(model, self.input_shape, target=self.target,
                               threads=self.threads, warmup=self.warmup,
                               repeats=self.repeats) / 1000.0

    def remember(self, arch: Arch, ms: float) -> None:
        """Take ``ms`` as ``arch``'s latency (a measurement made elsewhere, e.g. by the trial
        that evaluated it), so it is priced as it was judged rather than re-measured."""
        self._ms[arch.key()] = float(ms)

    def __call__(self, arch: Arch) -> float:
        k = arch.key()
        if k not in self._ms:
            self._ms[k] = self.of_model(
                self.space.build(arch, self.num_classes, int(self.input_shape[0])))
        return self._ms[k]


class CostModel:
    """Costs of ``space``'s architectures for ``num_classes`` outputs and ``input_shape`` inputs.

    ``kind`` is the cost the differentiable loss uses (``latency`` | ``flops`` | ``params``);
    ``lut`` the latency table of the target (needed for ``latency`` and for latency targets).
    ``counter`` may replace the default MACs/params count (building the model and counting
    it, cached per architecture) with an analytic one that gives the same numbers faster.
    ``latency`` (ms per architecture, e.g. :class:`MeasuredLatency`) prices latency where
    there is no table.
    """

    def __init__(self, space: SearchSpace, num_classes: int, input_shape: tuple[int, ...], *,
                 kind: str = "flops", lut: LatencyTable | None = None,
                 counter: Counter | None = None,
                 latency: Callable[[Arch], float] | None = None) -> None:
        if kind not in LOSS_UNITS:
            raise UserError(f"unknown cost {kind!r}; choose from {sorted(LOSS_UNITS)}")
        if kind == "latency" and lut is None:
            raise UserError("cost 'latency' needs a latency table; build one with `nasforge lut "
                            "build` or let the search build it (--target)")
        self.space = space
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.in_channels = int(input_shape[0])
        self.kind = kind
        self.lut = lut
        self._latency = latency
        analytic = getattr(space, "analytic_counts", None)
        self._counter = counter or (analytic(num_classes, self.in_channels) if analytic else None)
        self._counts: dict[str, tuple[int, int]] = {}
        self._items: dict[str, LutItem] | None = None
        self._unit: dict[str, float] = {}

    # -- concrete architectures ---------------------------------------------------------------
    def counts(self, arch: Arch) -> tuple[int, int]:
        """(MACs, params) of ``arch``."""
        if self._counter is not None:
            macs, params = self._counter(arch)
            return int(macs), int(params)
        k = arch.key()
        if k not in self._counts:
            c = count_module(self.build(arch), self.input_shape)
            self._counts[k] = (c.macs, c.params)
        return self._counts[k]

    def latency_ms(self, arch: Arch) -> float | None:
        """The LUT's prediction (Σ corrected entries + one call overhead), in ms; without a
        table, the ``latency`` function's value (or None)."""
        if self.lut is None:
            return None if self._latency is None else float(self._latency(arch))
        keys = self.space.lut_keys(arch, self.num_classes, self.in_channels)
        return self.lut.predict(keys) / 1000.0

    def peak_memory(self, arch: Arch) -> int:
        from nasforge.cost.memory import activation_memory

        return int(activation_memory(self.build(arch), self.input_shape).peak_bytes)

    def use_counter(self, counter: Counter) -> None:
        """Count MACs/params with ``counter`` (e.g. a supernet's analytic tables) from now on."""
        self._counter = counter

    def costs(self, arch: Arch, *, memory: bool = False) -> Costs:
        macs, params = self.counts(arch)
        return Costs(macs, params, self.latency_ms(arch),
                     self.peak_memory(arch) if memory else None)

    def build(self, arch: Arch):  # noqa: ANN201 - an nn.Module of the space
        return self.space.build(arch, self.num_classes, self.in_channels)

    # -- the relaxation's per-candidate values ------------------------------------------------
    def _item(self, key: LutKey | str) -> LutItem:
        if self._items is None:
            self._items = {str(i.key): i
                           for i in self.space.lut_items(self.num_classes, self.in_channels)}
        try:
            return self._items[str(key)]
        except KeyError:
            raise UserError(f"space {self.space.name!r} has no op {str(key)!r}") from None

    def unit_cost(self, key: LutKey | str) -> float:
        """One op's cost in the loss unit: corrected LUT µs, kMACs or kparams."""
        k = str(key)
        if k not in self._unit:
            if self.kind == "latency":
                self._unit[k] = self.lut.corrected(k)  # type: ignore[union-attr]
            else:
                item = self._item(k)
                c = count_module(item.build(), item.input_shape)
                self._unit[k] = (c.macs if self.kind == "flops" else c.params) / 1e3
        return self._unit[k]

    def fixed_cost(self) -> float:
        """What every network pays once besides its ops, in the loss unit (the LUT's per-call
        runtime overhead; nothing for counts)."""
        return self.lut.overhead_us if self.kind == "latency" and self.lut else 0.0

    # -- the one load-or-build ----------------------------------------------------------------
    @classmethod
    def for_run(cls, space: SearchSpace, num_classes: int, input_shape: tuple[int, ...], *,
                kind: str, need_latency: bool, target: str, threads: int = 1,
                lut_path: str | None = None, run_dir: Path | None = None,
                progress: bool = False, counter: Counter | None = None) -> CostModel:
        """The cost model of one search run. With latency involved, the table comes from the
        run directory's own ``lut.json`` when it has one (a resumed run), else from
        ``lut_path`` or the per-device cache (measuring what is missing); the table used is
        then stored in the run directory."""
        lut = None
        if kind == "latency" or need_latency:
            own = Path(run_dir) / "lut.json" if run_dir is not None else None
            if own is not None and own.is_file():
                lut = LatencyTable.load(own, space.name)  # its own device: no fingerprint check
            else:
                lut = load_or_build(space.name, space.lut_items(num_classes, int(input_shape[0])),
                                    target=target, threads=threads, path=lut_path,
                                    progress=progress)
                if own is not None:
                    lut.save(own)
        return cls(space, num_classes, input_shape, kind=kind, lut=lut, counter=counter)
