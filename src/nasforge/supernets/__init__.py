"""Differentiable relaxations of search spaces (FBNet Gumbel mixed ops, FBNetV2 masking,
DenseNAS routing), each implementing :class:`nasforge.supernets.base.Supernet`."""
