"""Nearest-neighbour subsampling and interspersed zero padding (FBNetV2 resolution search).

A smaller input resolution is made by *nearest-neighbour subsampling*: output pixel ``i`` takes
input pixel ``floor(i · H / h)``. To sum a small feature map with a large one, the small map is
padded with zeros *interspersed* between its pixels (``intersperse_zeros``): small pixel ``i``
goes back to position ``floor(i · ratio)``, i.e. to where it was taken from, so pixels of every
resolution stay aligned. Padding around the border instead would shift every pixel.
"""

from __future__ import annotations

import torch
from torch import nn


def nearest_indices(size: int, full: int, device: torch.device | None = None) -> torch.Tensor:
    """Indices into a length-``full`` axis that nearest-neighbour subsampling to ``size`` keeps."""
    if not 0 < size <= full:
        raise ValueError(f"subsampled size must be in [1, {full}], got {size}")
    return torch.div(torch.arange(size, device=device) * full, size, rounding_mode="floor")


def subsample_nearest(x: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest-neighbour subsampling of the last two dims to ``size × size``."""
    h, w = x.shape[-2:]
    if size == h and size == w:
        return x
    return x.index_select(-2, nearest_indices(size, h, x.device)).index_select(
        -1, nearest_indices(size, w, x.device))


def intersperse_positions(small: int, full: int, ratio: float,
                          device: torch.device | None = None) -> torch.Tensor:
    """Where the ``small`` pixels of one axis go in a length-``full`` axis: ``floor(i·ratio)``."""
    if ratio < 1.0:
        raise ValueError(f"intersperse ratio must be ≥ 1, got {ratio}")
    pos = torch.floor(torch.arange(small, dtype=torch.float64) * ratio + 1e-9).long()
    if small and int(pos[-1]) >= full:
        raise ValueError(f"{small} pixels at ratio {ratio:.3f} do not fit in {full}")
    return pos.to(device)


def intersperse_zeros(y: torch.Tensor, full: tuple[int, int], ratio: float) -> torch.Tensor:
    """Pad ``y`` (…, h, w) to (…, H, W) with zeros *between* its pixels (never at the border).

    ``ratio`` is the input-resolution ratio (full input size / subsampled input size): the
    pixel that came from input position ``floor(i·ratio)`` lands at that same position.
    """
    h, w = y.shape[-2:]
    H, W = full
    if (h, w) == (H, W):
        return y
    ph = intersperse_positions(h, H, ratio, y.device)
    pw = intersperse_positions(w, W, ratio, y.device)
    cols = y.new_zeros((*y.shape[:-2], h, W)).index_copy(-1, pw, y)
    return y.new_zeros((*y.shape[:-2], H, W)).index_copy(-2, ph, cols)


class InputResize(nn.Module):
    """First layer of a model searched at a smaller input resolution: subsample the input."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return subsample_nearest(x, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}"
