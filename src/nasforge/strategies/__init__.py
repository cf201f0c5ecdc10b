"""Search strategies: differentiable supernets and sample-based ask/tell strategies."""
