"""One file per search method that declares its parts; the generic differentiable and
sample-based runners do the work."""
