"""Moved: the atomic writers live in :mod:`nasforge.files` with every reader; this name stays
so older imports keep working."""

from nasforge.files import write_json_atomic, write_text_atomic

__all__ = ["write_json_atomic", "write_text_atomic"]
