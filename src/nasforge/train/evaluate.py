"""Accuracy of a model on a device-resident split (one host sync at the end)."""

from __future__ import annotations

import torch
from torch import nn

from nasforge.data import TensorSplit, iterate
from nasforge.train.amp import autocast, prepare_input


@torch.no_grad()
def accuracy(model: nn.Module, split: TensorSplit, batch_size: int = 512,
             amp: bool = True) -> float:
    was = model.training
    model.eval()
    correct = torch.zeros((), device=split.x.device, dtype=torch.long)
    for x, y in iterate(split, batch_size, shuffle=False):
        with autocast(split.x.device, amp):
            logits = model(prepare_input(x))
        correct += (logits.argmax(1) == y).sum()
    model.train(was)
    return float(correct) / max(len(split), 1)
