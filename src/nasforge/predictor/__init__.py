"""FBNetV3's accuracy predictor (METHODS §3): encoding → MLP encoder → proxy and accuracy heads,
its two-phase fit, and the searches that use it (Sobol coarse stage, genetic fine stage)."""
