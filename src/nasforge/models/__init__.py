"""The model zoo: FBNetV2/V3 settings buildable by name (``nasforge train --model NAME``)."""

from __future__ import annotations

from torch import nn

from nasforge.models.fbnetv2 import FBNetV2Model, ModelSetting
from nasforge.models.zoo import FBNETV2, FBNETV3
from nasforge.registry import Registry

MODELS: Registry[ModelSetting] = Registry("model")
for _s in (*FBNETV2, *FBNETV3):
    MODELS.register(_s.name, _s)


def model_names() -> list[str]:
    return MODELS.names()


def get_setting(name: str) -> ModelSetting:
    """The setting called ``name`` (case and ``-``/``_`` insensitive)."""
    return MODELS.get(name.lower().replace("-", "_"))


def create_model(name: str, num_classes: int = 1000, in_channels: int = 3,
                 dropout: float | None = None) -> nn.Module:
    return FBNetV2Model(get_setting(name), num_classes, in_channels, dropout=dropout)


__all__ = ["FBNetV2Model", "ModelSetting", "MODELS", "create_model", "get_setting",
           "model_names"]
