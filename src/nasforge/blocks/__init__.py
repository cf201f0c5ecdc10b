"""Building blocks shared by spaces and models."""

from nasforge.blocks.inverted_residual import InvertedResidual, IRMasks, Skip
from nasforge.blocks.layers import (
    ChannelShuffle,
    ConvBNAct,
    DropPath,
    HSigmoid,
    HSwish,
    SqueezeExcite,
    get_divisible_by,
    make_act,
    mask_channels,
)

__all__ = ["InvertedResidual", "IRMasks", "Skip", "ChannelShuffle", "ConvBNAct", "DropPath",
           "HSigmoid", "HSwish", "SqueezeExcite", "get_divisible_by", "make_act", "mask_channels"]
