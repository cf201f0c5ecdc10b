"""Per-candidate cost tables for layer-wise spaces: MACs, params and LUT latency of every
(layer, candidate), plus the fixed parts (stem, head). The differentiable expected cost and the
analytic count of a concrete architecture both read the same table."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nasforge.cost.lut import LatencyTable, LutKey


@dataclass
class CostTables:
    candidates: tuple[str, ...]
    macs: list[list[int]]  # L×K
    params: list[list[int]]
    keys: list[list[LutKey]]  # L×K LUT keys
    fixed_macs: int
    fixed_params: int
    fixed_keys: list[LutKey]

    def arch_macs(self, blocks: list[str]) -> int:
        return self.fixed_macs + sum(self.macs[i][self.candidates.index(b)]
                                     for i, b in enumerate(blocks))

    def arch_params(self, blocks: list[str]) -> int:
        return self.fixed_params + sum(self.params[i][self.candidates.index(b)]
                                       for i, b in enumerate(blocks))

    def arch_keys(self, blocks: list[str]) -> list[LutKey]:
        return self.fixed_keys + [self.keys[i][self.candidates.index(b)]
                                  for i, b in enumerate(blocks)]

    def latency_us(self, lut: LatencyTable, blocks: list[str], mode: str = "corrected") -> float:
        return lut.predict(self.arch_keys(blocks), mode)

    def latency_matrix(self, lut: LatencyTable) -> tuple[torch.Tensor, float]:
        """(L×K corrected µs per candidate, fixed µs incl. one runtime overhead)."""
        m = torch.tensor([[lut.corrected(k) for k in row] for row in self.keys])
        fixed = sum(lut.corrected(k) for k in self.fixed_keys) + lut.overhead_us
        return m, float(fixed)

    def macs_matrix(self) -> tuple[torch.Tensor, float]:
        """(L×K kMACs, fixed kMACs): kMACs keep log(cost) > 0 and well scaled."""
        return (torch.tensor(self.macs, dtype=torch.float32) / 1e3, self.fixed_macs / 1e3)
