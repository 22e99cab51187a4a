"""Strict loading of frozen, typed dataclasses from TOML tables, `--set` overrides, canonical JSON and hashes.

Supported field types: int, float, str, bool, Literal[...] of str/int, tuple[T, ...], dict[str, T], nested
frozen dataclasses, and unions (`X | None`, `int | Literal["all"]`). Every error is a ConfigError naming the
dotted path and what was expected:

    >>> from_mapping(Cfg, {"rank": {"epochs": "3"}})
    ConfigError: rank.epochs: expected an integer, got '3' (str)

A dataclass validates its own fields in `__post_init__`; an error carrying a `field` attribute (qarm's
QarmConfigError, recsys_models' RankConfigError, benchmark's FieldError) is reported at that field's dotted
path. A dataclass may declare `CONFIG_ALIASES: ClassVar[dict[str, str]]` mapping a deprecated key to its
canonical dotted place below it (`{"u2i_dim": "u2i.dim"}`); `canonicalize` rewrites them, so old files and
`--set` keys keep working.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from benchmark.core.errors import ConfigError

T = TypeVar("T")
_MISSING = dataclasses.MISSING


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"a table of {_type_name(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return f"a table [{tp.__name__}]"
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean (true/false)",
            type(None): "none"}.get(tp, str(tp))


def _bad(path: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _convert(tp: Any, value: Any, path: str) -> Any:
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except ConfigError:
                continue
        raise _bad(path, tp, value)
    if origin is Literal:
        if value in get_args(tp) and not isinstance(value, bool):
            return value
        raise _bad(path, tp, value)
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise _bad(path, tp, value)
        elem = args[0]
        return tuple(_convert(elem, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _bad(path, tp, value)
        return {str(k): _convert(get_args(tp)[1], v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _bad(path, tp, value)
        return from_mapping(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _bad(path, tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _bad(path, tp, value)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _bad(path, tp, value)
    if tp is type(None):
        if value is None:
            return None
        raise _bad(path, tp, value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _bad(path, tp, value)
    raise ConfigError(f"{path}: unsupported field type {tp!r} (internal: fix the dataclass)")


def from_mapping(cls: type[T], data: Mapping[str, Any], path: str = "") -> T:
    """Build dataclass `cls` from a TOML table; unknown keys, wrong types and missing fields raise ConfigError."""
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    prefix = f"{path}." if path else ""
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{prefix}{key}: unknown key{hint}; expected one of: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{prefix}{name}")
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError(f"{prefix}{name}: missing required field ({_type_name(hints[name])})")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, ConfigError) as e:  # __post_init__ validation
        if getattr(e, "field", None):
            raise ConfigError(f"{prefix}{e.field}: {e.detail}") from None  # type: ignore[attr-defined]
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{path or cls.__name__}: {e}") from None


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file; a missing file or a syntax error (with line and column) is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


# ---- deprecated keys -----------------------------------------------------------------------------


def _aliases(cls: Any) -> dict[str, str]:
    return dict(getattr(cls, "CONFIG_ALIASES", {}) or {})


def canonicalize(cls: type, data: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """A copy of a raw TOML mapping with every deprecated key (CONFIG_ALIASES, at any depth) moved to its
    canonical place. Giving both a deprecated key and its canonical one is an error."""
    out: dict[str, Any] = {}
    aliases = _aliases(cls)
    hints = _hints(cls)
    prefix = f"{path}." if path else ""
    for key, value in data.items():
        if key in aliases:
            node = out
            *parents, leaf = aliases[key].split(".")
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{prefix}{key}: cannot move it to {prefix}{aliases[key]}")
            if leaf in node:
                raise ConfigError(f"{prefix}{aliases[key]}: given twice (also under its old name {prefix}{key}); "
                                  "keep one")
            node[leaf] = value
            continue
        sub = _unwrap_optional_dataclass(hints.get(key)) if key in hints else None
        if sub is not None and isinstance(value, Mapping):
            value = canonicalize(sub, value, f"{prefix}{key}")
            if isinstance(out.get(key), dict):  # an alias already placed keys here
                clash = sorted(set(out[key]) & set(value))
                if clash:
                    new = f"{key}.{clash[0]}"
                    old = next((a for a, t in aliases.items() if t == new), "?")
                    raise ConfigError(f"{prefix}{new}: given twice (also under its old name {prefix}{old}); keep one")
                value = {**out[key], **value}
        out[key] = value
    return out


def canonical_key(cls: type, dotted: str) -> str:
    """`pairs.u2i_dim` -> `pairs.u2i.dim`: a dotted key with deprecated parts rewritten (unknown parts kept)."""
    tp: Any = cls
    parts = dotted.split(".")
    out: list[str] = []
    i = 0
    while i < len(parts):
        inner = _unwrap_optional_dataclass(tp)
        if inner is None:
            out.extend(parts[i:])
            break
        aliases = _aliases(inner)
        part = parts[i]
        if part in aliases:
            parts[i:i + 1] = aliases[part].split(".")
            continue
        names = {f.name for f in dataclasses.fields(inner)}
        if part not in names:
            out.extend(parts[i:])
            break
        out.append(part)
        tp = _hints(inner)[part]
        i += 1
    return ".".join(out)


# ---- --set overrides ---------------------------------------------------------------------------


def field_type(cls: type, dotted: str) -> Any:
    """The declared type of the field at `dotted` (a.b.c, deprecated keys allowed) in dataclass `cls`."""
    dotted = canonical_key(cls, dotted)
    tp: Any = cls
    walked: list[str] = []
    for part in dotted.split("."):
        inner = _unwrap_optional_dataclass(tp)
        if inner is None:
            raise ConfigError(f"--set {dotted}: '{'.'.join(walked)}' is not a table")
        names = [f.name for f in dataclasses.fields(inner)]
        if part not in names:
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean '{'.'.join([*walked, close[0]])}'?)" if close else ""
            raise ConfigError(f"--set {dotted}: unknown key '{'.'.join([*walked, part])}'{hint}")
        tp = _hints(inner)[part]
        walked.append(part)
    return tp


def _unwrap_optional_dataclass(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp  # type: ignore[return-value]
    if get_origin(tp) in (Union, types.UnionType):
        for arg in get_args(tp):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def parse_value(tp: Any, text: str, path: str) -> Any:
    """Parse an override's text with the field's type: `3`, `0.5`, `true`, `rq_vae`, `[1, 2]` or `1,2`, `none`."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        if text.strip().lower() in ("none", "null") and type(None) in get_args(tp):
            return None
        errors = []
        for arg in get_args(tp):
            if arg is type(None):
                continue
            try:
                return parse_value(arg, text, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{path}: cannot parse {text!r}")
    if tp is str:
        return text
    if origin is Literal:
        return _convert(tp, text if all(isinstance(a, str) for a in get_args(tp)) else _toml_value(text), path)
    if origin is tuple:
        stripped = text.strip()
        if stripped.startswith("["):
            items = _toml_value(stripped)
        else:
            items = [s.strip() for s in stripped.split(",") if s.strip()]
        if not isinstance(items, list):
            raise _bad(path, tp, text)
        return tuple(parse_value(get_args(tp)[0], str(v) if not isinstance(v, str) else v, f"{path}[{i}]")
                     for i, v in enumerate(items))
    if dataclasses.is_dataclass(tp):
        raise ConfigError(f"{path}: is a table; set one of its fields, e.g. {path}.<field>=VALUE")
    value = _toml_value(text)
    if tp is bool and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        value = value.lower() in ("true", "yes", "1")
    if tp is bool and isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        value = bool(value)
    return _convert(tp, value, path)


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(cls: type, raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of the raw TOML mapping with each `a.b.c=value` applied, typed by the field it names."""
    out = json.loads(json.dumps(raw))  # deep copy of plain TOML data
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected KEY=VALUE with a dotted key, e.g. rank.epochs=3")
        key, text = item.split("=", 1)
        key = canonical_key(cls, key.strip())
        tp = field_type(cls, key)
        value = parse_value(tp, text, key)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a table in the config file")
            node = nxt
        node[parts[-1]] = list(value) if isinstance(value, tuple) else value
    return out


# ---- canonical JSON and hashes -----------------------------------------------------------------


def to_plain(obj: Any) -> Any:
    """Dataclasses -> dicts, tuples -> lists; the JSON form of a config (slice)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


def plain_without_defaults(obj: Any, fields: Sequence[str]) -> Any:
    """to_plain(obj) without each dotted field of `fields` whose value equals the dataclass default: a setting
    added after keys were recorded stays out of the hash of every config that leaves it at its default, so
    adding it moves no existing key (benchmark/data/preparation.py LATER_FIELDS is the data stage's list)."""
    out = to_plain(obj)
    default = type(obj)()
    for dotted in fields:
        *parents, name = dotted.split(".")
        node, got, want = out, obj, default
        for part in parents:
            node, got, want = node[part], getattr(got, part), getattr(want, part)
        if getattr(got, name) == getattr(want, name):
            node.pop(name)
    return out


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, floats as Python repr: equal configs give equal strings."""
    return json.dumps(to_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stable_hash(*parts: Any, length: int = 16) -> str:
    """sha256 over the canonical JSON of `parts` (config slices, upstream hashes, versions)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(canonical_json(part).encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()[:length]


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become JSON strings. For MLflow params."""
    plain = to_plain(obj)
    out: dict[str, Any] = {}
    if isinstance(plain, dict):
        for k, v in plain.items():
            key = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                out.update(flatten(v, key))
            elif isinstance(v, list):
                out[key] = json.dumps(v)
            else:
                out[key] = v
    else:
        out[prefix or "value"] = plain
    return out
