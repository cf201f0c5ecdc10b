"""nasforge: hardware-aware neural architecture search.

Nothing heavy happens at import time: ``nasforge.search`` and ``nasforge.Result`` (every search
method as one library call, :mod:`nasforge.methods.api`) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Result", "search"]

if TYPE_CHECKING:
    from nasforge.methods.api import Result, search


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nasforge.methods import api

        return getattr(api, name)
    raise AttributeError(f"module 'nasforge' has no attribute {name!r}")
