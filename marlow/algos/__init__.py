"""Algorithms. Each module defines ``NAME``, ``DESCRIPTION``, ``SUPPORTED_ACTIONS``, a ``Config``
dataclass (defaults in conf/algo/<name>.yaml) and an ``Algorithm(spec, cfg)`` class whose ``init``,
``act`` and ``update`` are pure functions over an explicit state pytree."""

from __future__ import annotations

import importlib
from types import ModuleType

from marlow.errors import ConfigError

ALGORITHMS = ("masac", "maddpg")


def get_algo(name: str) -> ModuleType:
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {name!r}; known algorithms: {', '.join(ALGORITHMS)}")
    return importlib.import_module(f"marlow.algos.{name}")


def check_supports(algo: ModuleType, spec) -> None:
    """One-line error when an algorithm cannot handle one of the task's action spaces."""
    missing = sorted(spec.action_kinds - algo.SUPPORTED_ACTIONS)
    if missing:
        raise ConfigError(
            f"algorithm {algo.NAME!r} does not support {', '.join(missing)} action spaces "
            f"of task {spec.name!r} "
            f"(it supports: {', '.join(sorted(algo.SUPPORTED_ACTIONS))})"
        )
