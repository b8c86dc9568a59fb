"""Ranges and choices of config values, declared on the config dataclasses beside each key's type.

A config field's type may carry a :class:`Range` with :data:`typing.Annotated`; the config system
(:func:`marlow.schema.coerce.coerce`) checks it whenever a value is built from a YAML layer or the
command line, before anything is compiled, and refuses a value outside it with one line naming the key,
the value and the allowed range (:class:`marlow.errors.ConfigError`, exit 2 on the CLI). Every float is
also checked to be finite. The aliases below name the common ranges::

    gamma: Unit            # a discount, Polyak factor, probability or fraction: [0, 1]
    lr_actor: Positive     # a rate, scale or temperature: > 0
    ent_coef: NonNegative  # a coefficient that 0 switches off: >= 0
    batch_size: Size       # a size, width or count that must be >= 1
    warmup_steps: Count    # a count or step number that may be 0
    hidden: Widths         # layer widths, each >= 1

A field whose range is none of these writes its own, e.g. ``window: Annotated[int, Range(lo=2)]``.
Constraints between keys stay where the keys are used (e.g. ``update_every`` a multiple of ``num_envs``).

A key that names one of a few choices is typed with :data:`typing.Literal`, and the choices are read back
from the type where the code needs them (:func:`choices`)::

    Schedule = Literal["constant", "anneal"]
    alpha_schedule: Schedule          # "must be one of constant, anneal" for any other value
    SCHEDULES = choices(Schedule)     # ("constant", "anneal")
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from marlow.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """``lo <= v <= hi`` (``lo < v`` with ``lo_open``, ``v < hi`` with ``hi_open``); None = unbounded."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"in {left}{_num(self.lo)}, {_num(self.hi)}{right}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        return "any value"

    def contains(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        return True

    def check(self, key: str, v: Any) -> None:
        values = v if isinstance(v, tuple) else (v,)
        if not all(self.contains(x) for x in values):
            what = "each value " if isinstance(v, tuple) else ""
            raise ConfigError(f"config key {key!r} = {_show(v)} is out of range: expects {what}{self}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _show(v: Any) -> str:
    return ",".join(str(x) for x in v) if isinstance(v, tuple) else str(v)


Unit = Annotated[float, Range(0, 1)]
Positive = Annotated[float, Range(0, lo_open=True)]
NonNegative = Annotated[float, Range(0)]
Size = Annotated[int, Range(1)]
Count = Annotated[int, Range(0)]
Widths = Annotated[tuple[int, ...], Range(1)]
AnyInt = Annotated[int, Range()]  # explicitly unbounded (e.g. an offset that may be negative)
AnyFloat = Annotated[float, Range()]


def choices(tp) -> tuple:
    """The values of a ``Literal[...]`` type (``()`` for any other type)."""
    return typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else ()


def check_choice(key: str, value: Any, options: tuple) -> Any:
    """``value`` if it is one of ``options``, else :class:`ConfigError` naming the key and the choices (one
    message for every choice a config or a task option offers); returns ``value``."""
    if value not in options:
        raise ConfigError(f"config key {key!r} must be one of {', '.join(map(str, options))}; got {value!r}")
    return value


def split(tp) -> tuple[Any, Range | None]:
    """``Annotated[base, Range(...)]`` -> ``(base, Range)``; any other type -> ``(tp, None)``."""
    if typing.get_origin(tp) is Annotated:
        base, *meta = typing.get_args(tp)
        ranges = [m for m in meta if isinstance(m, Range)]
        return base, (ranges[0] if ranges else None)
    return tp, None


def check(key: str, value: Any, rng: Range | None) -> Any:
    """Finiteness of every float in ``value``, then ``rng``; returns ``value``."""
    values = value if isinstance(value, tuple) else (value,)
    for x in values:
        if isinstance(x, float) and not math.isfinite(x):
            raise ConfigError(f"config key {key!r} = {_show(value)} is not a finite number")
    if rng is not None:
        rng.check(key, value)
    return value


def numeric(tp) -> bool:
    """Whether a (split) field type holds numbers, whose fields must declare a range."""
    base, _ = split(tp)
    if typing.get_origin(base) is tuple:
        base = typing.get_args(base)[0]
    return base in (int, float)


def validate(cfg: Any, where: str = "") -> None:
    """Check a config dataclass built in Python (not through the config system) against its fields'
    declared ranges and choices, e.g. an ``EnsembleConfig`` a user constructs directly."""
    hints = typing.get_type_hints(type(cfg), include_extras=True)
    for name in getattr(cfg, "__dataclass_fields__", {}):
        base, rng = split(hints[name])
        value = getattr(cfg, name)
        try:
            if choices(base):
                check_choice(name, value, choices(base))
            check(name, tuple(value) if isinstance(value, list) else value, rng)
        except ConfigError as e:
            raise ConfigError(f"{e}{where}") from None
