"""nasforge: hardware-aware neural architecture search.

Nothing happens at import time: submodules are imported by the code that needs them.
"""

__version__ = "0.1.0"
