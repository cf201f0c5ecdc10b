"""Building blocks shared by spaces and models."""

from nasforge.blocks.inverted_residual import InvertedResidual, Skip
from nasforge.blocks.layers import (
    ChannelShuffle,
    ConvBNAct,
    DropPath,
    HSigmoid,
    HSwish,
    SqueezeExcite,
    get_divisible_by,
    make_act,
)

__all__ = ["InvertedResidual", "Skip", "ChannelShuffle", "ConvBNAct", "DropPath", "HSigmoid",
           "HSwish", "SqueezeExcite", "get_divisible_by", "make_act"]
