"""Index batching over device-resident tensors, with on-device augmentation."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from nasforge.data.dataset import TensorSplit


def default_batch_size(n: int, cap: int = 128, floor: int = 32) -> int:
    """``n // 40`` clamped to ``[floor, cap]``: large sets get the method's batch, small ones
    (digits: 1150 images) enough steps per epoch for a short schedule to learn something."""
    return int(min(cap, max(floor, n // 40)))


def batch_indices(n: int, batch_size: int, generator: torch.Generator | None,
                  shuffle: bool = True, drop_last: bool = False) -> list[torch.Tensor]:
    """The epoch's batches of indices (drawn with ``generator`` on the CPU: deterministic)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - (n % batch_size) if drop_last and n >= batch_size else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


def iterate(split: TensorSplit, batch_size: int, generator: torch.Generator | None = None,
            shuffle: bool = True, drop_last: bool = False) -> Iterator[tuple[torch.Tensor,
                                                                             torch.Tensor]]:
    dev = split.x.device
    for idx in batch_indices(len(split), batch_size, generator, shuffle, drop_last):
        idx = idx.to(dev, non_blocking=True)
        yield split.x.index_select(0, idx), split.y.index_select(0, idx)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 2,
                     flip: bool = True) -> torch.Tensor:
    """Per-sample random translation by up to ``pad`` pixels (zero fill) and horizontal flip.

    Offsets are drawn on the CPU generator (deterministic) and applied with gathers on the
    tensor's own device, so the whole batch is augmented without a host loop.
    """
    b, c, h, w = x.shape
    dev = x.device
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    rows = (dy[:, None] + torch.arange(h, device=dev)[None])  # b,h
    cols = (dx[:, None] + torch.arange(w, device=dev)[None])  # b,w
    if flip:
        f = (torch.rand(b, generator=generator) < 0.5).to(dev)
        cols = torch.where(f[:, None], cols.flip(1), cols)
    xp = xp.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))
    return xp.gather(3, cols[:, None, None, :].expand(b, c, h, w))
