"""Typed TOML: decode tables into frozen dataclasses, and write TOML back.

Decoding is strict about types and lenient about names: a value of the wrong
type is a ``ConfigError`` naming the file and the dotted key; a key the
dataclass does not know is logged as a warning and ignored (containerd's TOML
decoder ignores unknown keys silently, which hides typos).

The writer covers what a config needs (strings, integers, floats, booleans,
arrays of those, nested tables); ``tomllib`` reads it back unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

# Field metadata understood by the decoder.
INTERNAL = "internal"  # not a TOML key (e.g. the file a value came from)
RAW = "raw"  # keep the value as parsed (a table whose schema belongs to someone else)


class ConfigError(ValueError):
    """A config value is unusable; the message names the file and the key."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


class FieldError(ValueError):
    """Raised by a config dataclass's ``__post_init__`` about one of its keys;
    ``decode`` turns it into a ``ConfigError`` naming the file and the full key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


def key_path(prefix: str, key: str) -> str:
    part = key if _BARE_KEY.match(key) else json.dumps(key)
    return f"{prefix}.{part}" if prefix else part


def toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def decode(cls: type[T], data: object, source: str, prefix: str = "", warn: bool = True) -> T:
    """``data`` (a parsed TOML table) as an instance of the dataclass ``cls``."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, prefix, f"expected a table, got {toml_type(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = key_path(prefix, key)
        f = known.get(key)
        if f is None or f.metadata.get(INTERNAL):
            if warn:
                log.warning("%s: unknown key %s (ignored)", source, path)
            continue
        if f.metadata.get(RAW):
            kwargs[key] = value
            continue
        kwargs[key] = convert(hints[key], value, source, path, warn)
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise ConfigError(source, key_path(prefix, e.key), e.message) from None


def convert(tp: Any, value: object, source: str, path: str, warn: bool = True) -> Any:
    """``value`` checked against (and shaped into) the annotation ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        last: ConfigError | None = None
        for alt in args:
            if alt is type(None):
                continue
            try:
                return convert(alt, value, source, path, warn)
            except ConfigError as e:
                last = e
        assert last is not None
        raise last
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(source, path, f"expected a string, got {toml_type(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, path, f"expected a boolean, got {toml_type(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, path, f"expected an integer, got {toml_type(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(source, path, f"expected a number, got {toml_type(value)}")
        return float(value)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(source, path, f"expected an array, got {toml_type(value)}")
        item = args[0]
        return tuple(convert(item, v, source, f"{path}[{i}]", warn) for i, v in enumerate(value))
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, path, f"expected a table, got {toml_type(value)}")
        item = args[1] if args else Any
        if item is Any:
            return dict(value)
        return {k: convert(item, v, source, key_path(path, k), warn) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return decode(tp, value, source, path, warn)
    if tp is Any:
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {path}")


def encode(obj: object) -> Any:
    """A dataclass (or plain value) as TOML-ready builtins, internal fields left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            if f.metadata.get(INTERNAL):
                continue
            out[f.name] = encode(getattr(obj, f.name))
        return out
    if isinstance(obj, Mapping):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [encode(v) for v in obj]
    return obj


def _string(s: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes; TOML also
    # forbids a raw DEL.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{key_path('', k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def dumps(doc: Mapping[str, Any]) -> str:
    """``doc`` as a TOML document: plain keys first, then one header per table."""
    lines: list[str] = []

    def table(prefix: str, body: Mapping[str, Any], depth: int) -> None:
        if prefix:
            if lines:
                lines.append("")
            lines.append("  " * (depth - 1) + f"[{prefix}]")
        for k, v in body.items():
            if not isinstance(v, Mapping):
                lines.append("  " * depth + f"{key_path('', k)} = {_value(v)}")
        for k, v in body.items():
            if isinstance(v, Mapping):
                table(key_path(prefix, k), v, depth + 1)

    table("", doc, 0)
    return "\n".join(lines) + "\n"
