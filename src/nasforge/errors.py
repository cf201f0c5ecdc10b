"""User-facing errors.

A :class:`UserError` is bad input the user can fix; the CLI prints its message and exits with
status 2 (no traceback). It subclasses ``ValueError`` so library callers can catch it as usual.
"""


class UserError(ValueError):
    """Bad input: the message names what is wrong and how to fix it."""


class MissingDependency(UserError):
    """An optional extra is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'nasforge[{extra}]'"
        )
        self.package = package
        self.extra = extra


def require(module: str, extra: str):  # noqa: ANN201 - returns the module
    """Import an optional dependency or raise :class:`MissingDependency` with an install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependency(module.split(".")[0], extra) from e
