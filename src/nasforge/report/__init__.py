"""Plots and the HTML report of a run directory (matplotlib is the optional ``plot`` extra)."""
