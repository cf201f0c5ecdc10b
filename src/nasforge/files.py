"""The one way in (and the atomic way out) for every file nasforge reads or writes.

Every reader — architecture JSON, recipe YAML/JSON, latency table, latency predictor, run
directory, checkpoint — goes through these functions, so a missing, unreadable (permissions, a
directory), non-UTF-8, malformed (bad JSON/YAML), wrongly typed or foreign file (valid data
that is not that kind of file) becomes ONE :class:`~nasforge.errors.UserError` of the form::

    cannot read <what> '<path>': <what is wrong>; <how to fix it>

instead of a ``UnicodeDecodeError`` / ``KeyError`` / zip-reader traceback deep in the code
that used it. Writes are atomic (temporary file + ``os.replace``): a reader, or a resumed run,
never sees a half-written file.

Only JSON, YAML (safe loader) and ``torch.load(weights_only=True)`` are ever used: never pickle.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import types
import typing
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nasforge.errors import UserError

if TYPE_CHECKING:
    from nasforge.arch import Arch

T = TypeVar("T")

ARCH_FIX = "give the arch.json a `nasforge search` or `nasforge train` run wrote"
RECIPE_FIX = "give a YAML (.yml/.yaml) or JSON mapping of Recipe fields"
RESUME_FIX = "delete it to run this stage again from its start (the rest of the run is kept)"


# -- writing ------------------------------------------------------------------------------------

def write_json_atomic(path: str | Path, data: Any, indent: int | None = 1,
                      sort_keys: bool = False) -> None:
    """Write JSON through a temporary file and ``os.replace``."""
    write_text_atomic(path, json.dumps(data, indent=indent, default=str, sort_keys=sort_keys)
                      + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` through a temporary file and ``os.replace``: a kill during the write
    leaves the previous checkpoint intact (read back with :func:`load_checkpoint`)."""
    import torch

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, p)


# -- reading ------------------------------------------------------------------------------------

def fail(what: str, path: str | Path, problem: str, fix: str = "") -> UserError:
    """The error every reader raises: it names the kind of file, the file and the fix (``fix``
    empty: ``problem`` already says it)."""
    return UserError(f"cannot read {what} {str(path)!r}: {problem}" + (f"; {fix}" if fix else ""))


def _check_file(p: Path, what: str, fix: str) -> None:
    if p.is_dir():
        raise fail(what, p, "it is a directory, not a file", fix)
    if not p.exists():
        raise fail(what, p, "it does not exist", fix)


def read_bytes(path: str | Path, what: str, fix: str) -> bytes:
    p = Path(path)
    _check_file(p, what, fix)
    try:
        return p.read_bytes()
    except OSError as e:
        raise fail(what, p, f"it cannot be opened ({e.strerror or e})", fix) from None


def read_text(path: str | Path, what: str, fix: str) -> str:
    """UTF-8 text of a file (a binary file is refused, not decoded into garbage)."""
    raw = read_bytes(path, what, fix)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(what, path, f"it is not UTF-8 text (byte {raw[e.start]:#04x} at offset "
                               f"{e.start}: a binary file?)", fix) from None


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value),
                                                                       type(value).__name__)


def read_json(path: str | Path, what: str, fix: str, *, expect: type | None = dict) -> Any:
    """Parsed JSON; ``expect`` the type the top level must have (None: any)."""
    text = read_text(path, what, fix)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise fail(what, path, f"it is not valid JSON ({e.msg} at line {e.lineno} column "
                               f"{e.colno})", fix) from None
    return _expect(data, expect, path, what, fix)


def _expect(data: Any, expect: type | None, path: str | Path, what: str, fix: str) -> Any:
    if expect is not None and not isinstance(data, expect):
        want = "an object" if expect is dict else _type_name(expect())
        raise fail(what, path, f"it holds {_type_name(data)}, expected {want}", fix)
    return data


def read_mapping(path: str | Path, what: str, fix: str) -> dict[str, Any]:
    """A JSON or (by its .yml/.yaml suffix) YAML file whose top level is a mapping."""
    p = Path(path)
    if p.suffix.lower() not in (".yml", ".yaml"):
        return read_json(p, what, fix)
    import yaml

    text = read_text(p, what, fix)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise fail(what, p, f"it is not valid YAML ({problem}{where})", fix) from None
    return _expect(data, dict, p, what, fix)


def parse_as(path: str | Path, what: str, fix: str, data: Any, parse: Callable[[Any], T]) -> T:
    """``parse(data)``; a UserError (or a KeyError/TypeError/ValueError of a foreign file) is
    reported against the file (``fix`` empty: the parser's own message says how to fix it)."""
    try:
        return parse(data)
    except UserError as e:
        raise fail(what, path, str(e), fix) from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        detail = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise fail(what, path, f"it is not a {what} ({detail})", fix) from None


def check_fields(data: dict[str, Any], cls: type, what: str = "") -> None:
    """Raise a UserError naming the first field of ``data`` that is not a field of dataclass
    ``cls`` or whose JSON value does not have the field's type (int/float/bool/str/list/dict,
    optional or not); fields with other types are not checked."""
    assert is_dataclass(cls)
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation only a type checker resolves: names only
        hints = {}
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UserError(f"unknown {what + ' ' if what else ''}field(s) {unknown}; known: "
                        f"{', '.join(names)}")
    for k, v in data.items():
        allowed = _json_types(hints.get(k, Any))
        if allowed is not None and not _isinstance_json(v, allowed):
            names_ = " or ".join(sorted({t.__name__ if t is not type(None) else "null"
                                         for t in allowed}))
            raise UserError(f"field {k!r} must be {names_}, got {v!r}")


def _json_types(hint: Any) -> tuple[type, ...] | None:
    """The JSON value types a type hint admits, or None when it is not checked here."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_json_types(a) for a in typing.get_args(hint)]
        if any(p is None for p in parts):
            return None
        return tuple(t for p in parts for t in p)  # type: ignore[union-attr]
    base = origin or hint
    if base is type(None):
        return (type(None),)
    if base in (int, float, bool, str):
        return (base,)
    if base in (list, tuple):
        return (list,)
    if base is dict:
        return (dict,)
    return None


def _isinstance_json(value: Any, allowed: Iterable[type]) -> bool:
    for t in allowed:
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t not in (int, float) and isinstance(value, t):
            return True
    return False


# -- the kinds of file ----------------------------------------------------------------------------

def load_arch(path: str | Path) -> Arch:
    """An ``arch.json`` (``{"space", "genes"[, "meta"]}``)."""
    from nasforge.arch import Arch

    data = read_json(path, "arch file", ARCH_FIX)
    return parse_as(path, "arch file", ARCH_FIX, data, Arch.from_dict)


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A training recipe as a checked mapping of Recipe fields (``Recipe.from_dict`` input)."""
    from nasforge.train.trainer import Recipe

    data = read_mapping(path, "recipe", RECIPE_FIX)

    def check(d: dict[str, Any]) -> None:
        check_fields(d, Recipe, "recipe")
        Recipe.from_dict(d)  # its own range checks, reported against this file

    parse_as(path, "recipe", RECIPE_FIX, data, check)
    return data


def load_checkpoint(path: str | Path, what: str, fix: str, *, keys: Iterable[str] = (),
                    map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of a nasforge checkpoint; ``keys`` are the entries a
    checkpoint of this kind must hold (a foreign or corrupt file is refused, not half-used)."""
    import io

    import torch

    p = Path(path)
    raw = read_bytes(p, what, fix)
    if not zipfile.is_zipfile(io.BytesIO(raw)):  # torch.save writes a zip archive
        raise fail(what, p, "it is not a readable PyTorch checkpoint (not a zip archive: "
                            "corrupt, truncated or another kind of file)", fix)
    try:
        data = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused an object: not ours
        m = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        detail = f"e.g. {m.group(1)}" if m else "refused by weights_only loading"
        raise fail(what, p, f"it holds objects a nasforge checkpoint never does ({detail})",
                   fix) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise fail(what, p, f"it is not a readable PyTorch checkpoint (corrupt or truncated: "
                            f"{first})", fix) from None
    want = list(keys)
    if want:
        if not isinstance(data, dict):
            raise fail(what, p, f"it holds {type(data).__name__}, not a nasforge {what}", fix)
        missing = [k for k in want if k not in data]
        if missing:
            raise fail(what, p, f"it is not a nasforge {what} (missing {missing})", fix)
    return data
