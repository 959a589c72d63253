"""Versioned JSON files read into dataclasses: type checks, migrations, warnings, `.bak` on corruption.

Used for `config/exec.json` and `config/generate.json` (see src/settings.py) and for metadata values.
A field's `metadata` may give `minimum`, `maximum` and `choices`; values outside them count as wrong.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from src.atomic import write_json_atomic  # re-exported: callers save settings files through this module

log = logging.getLogger(__name__)

T = TypeVar("T")
# One function per version: takes the data of version N (schema_version removed) and a list to append
# user-facing warnings to, and returns the data of version N + 1.
Migration = Callable[[dict[str, Any], list[str]], dict[str, Any]]
VERSION_KEY = "schema_version"


@dataclass(frozen=True)
class ConfigSchema(Generic[T]):
    """How one kind of file is read.

    Attributes:
        cls: the dataclass the file holds; every field needs a default.
        version: the current schema version written by `save_config`.
        migrations: from-version -> function returning the next version's data.
        what: a name for messages, e.g. "settings file".
    """

    cls: type[T]
    version: int
    migrations: Mapping[int, Migration]
    what: str


@dataclass(frozen=True)
class LoadResult(Generic[T]):
    """A loaded value and everything the user should be told about it.

    Attributes:
        value: the dataclass, defaults filling whatever was missing or wrong.
        warnings: one user-facing sentence per problem (already logged).
        backup_path: where an unreadable file was moved, or None.
        file_version: the schema version found in the file, or None when there was no usable file.
    """

    value: T
    warnings: tuple[str, ...] = ()
    backup_path: Path | None = None
    file_version: int | None = None


def load_config(path: str | os.PathLike[str], schema: ConfigSchema[T]) -> LoadResult[T]:
    """Read `path` into `schema.cls`, migrating old versions and falling back to defaults.

    A missing file gives the defaults silently. A file that is not a JSON object (corrupt, truncated,
    or with a bad schema_version) is moved to `<name>.bak` and the defaults are used. Unknown keys and
    values of the wrong type are reported; wrong values take the field's default.

    Args:
        path: the JSON file.
        schema: the dataclass, current version and migrations.

    Returns:
        The value and the warnings (each also logged).
    """
    path = Path(path)
    if not path.exists():
        return LoadResult(schema.cls())
    warnings: list[str] = []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("the file does not hold a JSON object")
        version = data.pop(VERSION_KEY, 0)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"its schema_version {version!r} is not a whole number")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        backup = path.with_name(path.name + ".bak")
        os.replace(path, backup)
        message = (
            f"The {schema.what} {path} could not be read ({error}); defaults are used and the "
            f"old file was kept as {backup.name}."
        )
        log.warning(message)
        return LoadResult(schema.cls(), (message,), backup, None)

    file_version = version
    if version > schema.version:
        warnings.append(
            f"The {schema.what} {path.name} was written by a newer version (schema {version}); "
            "settings this version does not know are ignored."
        )
    while version < schema.version:
        data = schema.migrations[version](dict(data), warnings)
        version += 1
    values, problems, unknown = coerce_fields(schema.cls, data)
    warnings.extend(f"{schema.what} {path.name}: {problem}" for problem in problems)
    if unknown and file_version <= schema.version:
        names = ", ".join(sorted(unknown))
        warnings.append(f"{schema.what} {path.name}: ignored unknown setting(s): {names}.")
    for message in warnings:
        log.warning(message)
    return LoadResult(schema.cls(**values), tuple(warnings), None, file_version)


def save_config(path: str | os.PathLike[str], value: Any, version: int) -> None:
    """Write a dataclass as tab-indented JSON with its schema_version, atomically."""
    write_json_atomic(path, {VERSION_KEY: version, **dataclasses.asdict(value)})


def coerce_fields(cls: type, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """Check `data` against the fields of dataclass `cls`.

    Returns:
        (values, problems, unknown): the usable values by field name (missing or wrong ones left out so
        the defaults apply), one sentence per wrong value, and the keys that are not fields.
    """
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, raw in data.items():
        f = known.get(key)
        if f is None:
            continue
        try:
            values[key] = check_value(f, hints[key], raw)
        except ValueError as error:
            problems.append(f"'{key}' {error}; using the default {_default_of(f)!r}.")
    unknown = {key: raw for key, raw in data.items() if key not in known}
    return values, problems, unknown


def check_value(f: dataclasses.Field, hint: Any, raw: Any) -> Any:
    """Return `raw` converted to the field's type, or raise ValueError saying what is wrong.

    Whole-number floats are accepted for int fields and ints for float fields; lists become tuples for
    tuple fields. `metadata["minimum"]`, `["maximum"]` and `["choices"]` are enforced.
    """
    value = _convert(hint, raw)
    if value is None:
        return value
    low, high = f.metadata.get("minimum"), f.metadata.get("maximum")
    if low is not None and value < low:
        raise ValueError(f"is {value!r}, below the minimum {low}")
    if high is not None and value > high:
        raise ValueError(f"is {value!r}, above the maximum {high}")
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"is {value!r}, not one of {', '.join(map(str, choices))}")
    return value


def _convert(hint: Any, raw: Any) -> Any:
    options = _options(hint)
    if raw is None:
        if type(None) in options:
            return None
        raise ValueError("is empty (null)")
    for option in options:
        try:
            return _convert_one(option, raw)
        except ValueError:
            continue
    raise ValueError(f"is {raw!r}, which is not {_type_name(hint)}")


def _convert_one(option: Any, raw: Any) -> Any:
    origin = typing.get_origin(option)
    if option is bool and isinstance(raw, bool):
        return raw
    if option is int and not isinstance(raw, bool):
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
    if option is float and not isinstance(raw, bool) and isinstance(raw, (int, float)):
        return float(raw)
    if option is str and isinstance(raw, str):
        return raw
    if origin in (tuple, list) and isinstance(raw, (list, tuple)):
        item = typing.get_args(option)[0]
        items = [_convert_one(item, x) for x in raw]
        return tuple(items) if origin is tuple else items
    if (option is dict or origin is dict) and isinstance(raw, dict):
        return dict(raw)
    raise ValueError(raw)


def _options(hint: Any) -> tuple[Any, ...]:
    """The alternatives of `X | Y` / `Optional[X]`, or `(hint,)`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _type_name(hint: Any) -> str:
    names = {bool: "true/false", int: "a whole number", float: "a number", str: "text"}
    options = _options(hint)
    return " or ".join(names.get(o, "empty" if o is type(None) else "a list") for o in options)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None
