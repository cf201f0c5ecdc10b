"""Search algorithms only: sample-based ask/tell strategies and the bilevel optimiser."""
