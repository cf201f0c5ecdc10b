"""Export a built model to TorchScript and ONNX, each verified against eager PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nasforge.cost.measure import onnx_bytes, ort_session
from nasforge.files import fail, load_checkpoint


def export_torchscript(model: nn.Module, input_shape: tuple[int, ...], path: str | Path,
                       atol: float = 1e-4) -> float:
    """Trace to TorchScript, save, reload and compare; returns the max abs difference."""
    model = model.cpu().eval()
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, x[:1], check_trace=False)
        traced.save(str(path))
        loaded = torch.jit.load(str(path))
        diff = float((loaded(x) - model(x)).abs().max())
    if diff > atol:
        raise RuntimeError(f"TorchScript export differs from eager by {diff:.2e} (> {atol})")
    return diff


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path,
                atol: float = 1e-4, threads: int = 1) -> float:
    """Export to ONNX, run it in ONNX Runtime and compare; returns the max abs difference."""
    model = model.cpu().eval()
    data = onnx_bytes(model, (1, *input_shape))
    Path(path).write_bytes(data)
    sess = ort_session(data, threads)
    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    diff = float(np.abs(got - ref).max())
    if diff > atol:
        raise RuntimeError(f"ONNX export differs from PyTorch by {diff:.2e} (> {atol})")
    return diff


WEIGHTS_FIX = "give the model.pt that `nasforge train` or `nasforge search` wrote (--weights)"


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A model state dict saved by nasforge (``model.pt``, or the ``model`` entry of a training
    checkpoint), read through :func:`nasforge.files.load_checkpoint` (``weights_only``)."""
    sd = load_checkpoint(path, "model weights", WEIGHTS_FIX)
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not sd or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise fail("model weights", path, "it is not a model state dict (name -> tensor)",
                   WEIGHTS_FIX)
    return sd
