"""Reading a config value into its declared type, and building a config dataclass from layers of values.

A value comes from a YAML file (already typed by the YAML parser) or from the command line (a string);
:func:`coerce` converts it to the field's declared type (``bool``, ``int``, ``float``, ``str``, a tuple of
one of them, a ``Literal`` choice, or a mapping of option names) and checks its range
(:mod:`marlow.schema.ranges`). :func:`build` instantiates a config dataclass from layers (later wins),
refusing unknown and missing keys with one line naming them (:class:`marlow.errors.ConfigError`).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import fields
from typing import Any

from marlow.errors import ConfigError
from marlow.schema import ranges


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce(key: str, value: Any, tp) -> Any:
    """Convert ``value`` (a YAML value or a command-line string) to ``tp`` or raise ConfigError; floats must
    be finite, an ``Annotated`` type's :class:`~marlow.schema.ranges.Range` must hold and a ``Literal``
    type's value must be one of its choices."""
    base, rng = ranges.split(tp)
    return ranges.check(key, _coerce(key, value, base), rng)


def _coerce(key: str, value: Any, tp) -> Any:
    from_cli = isinstance(value, str)
    origin = typing.get_origin(tp)
    options = ranges.choices(tp)
    if options:
        return ranges.check_choice(key, value, options)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if from_cli and value.lower() in ("true", "yes", "1", "on"):
                return True
            if from_cli and value.lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            f = float(str(value).replace("_", ""))
            if not f.is_integer():
                raise ValueError
            return int(f)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(str(value).replace("_", "")) if from_cli else float(_check_num(value))
        if tp is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if tp == dict[str, Any]:
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ValueError
            return dict(value)
        if origin is tuple:
            (elem, *_rest) = typing.get_args(tp)
            if from_cli:
                s = value.strip().strip("[]()")
                items = [v.strip() for v in s.split(",") if v.strip()]
            elif isinstance(value, list | tuple):
                items = list(value)
            else:
                raise ValueError
            return tuple(coerce(key, v, elem) for v in items)
    except (ValueError, TypeError):
        raise ConfigError(f"config key {key!r} expects {_describe(tp)}, got {value!r}") from None
    raise ConfigError(f"config key {key!r} has an unsupported type {tp}")


def _check_num(v):
    if not isinstance(v, int | float):
        raise ValueError
    return v


def _describe(tp) -> str:
    if tp == dict[str, Any]:
        return "a mapping of option names to values"
    if typing.get_origin(tp) is tuple:
        return f"a comma-separated list of {_type_name(typing.get_args(tp)[0])}"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def field_types(cls) -> dict[str, Any]:
    """Field name -> declared type, with its ``Annotated`` range if any (:func:`ranges.split` parts them)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in fields(cls)}


def build(cls, *layers: dict[str, Any], where: str = "") -> Any:
    """Instantiate ``cls`` from dict layers (later wins), checking keys and types."""
    types = field_types(cls)
    values: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            if k not in types:
                raise ConfigError(f"unknown config key {k!r}{where}; valid keys: {', '.join(sorted(types))}")
            values[k] = coerce(k, v, types[k])
    missing = [k for k in types if k not in values]
    if missing:
        raise ConfigError(f"missing config keys {missing}{where}")
    return cls(**values)


def to_dict(cfg) -> dict[str, Any]:
    out = {}
    for k, v in dataclasses.asdict(cfg).items():
        out[k] = list(v) if isinstance(v, tuple) else v
    return out
