"""Task registry: ``marlow.envs.make("mpe/simple_spread")``.

Tasks register a zero-argument-or-kwargs factory under a name ``family/task``. Modules holding tasks
are imported lazily on first use (by name, so this module imports none of them) so that importing
``marlow`` stays cheap. A module may also register a *prefix* handler: a task string of the form
``pettingzoo:module:factory`` (or ``pettingzoo:module`` with a ``parallel_env`` factory) builds a
host-side adapter around any PettingZoo Parallel env (``marlow.envs.pettingzoo`` registers it), and
``jax:module:factory`` (or ``jax:path/to/file.py:factory``) a user's own JAX env (``marlow.envs.user``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from marlow.errors import ConfigError

_TASK_MODULES = (
    "marlow.envs.mpe",
    "marlow.envs.games",
    "marlow.envs.pettingzoo",
    "marlow.envs.smax",
    "marlow.envs.mamujoco",
    "marlow.envs.user",
)


@dataclass(frozen=True)
class TaskEntry:
    name: str
    factory: Callable
    description: str


_REGISTRY: dict[str, TaskEntry] = {}
_PREFIXES: dict[str, Callable] = {}
_loaded = False


def register(name: str, description: str = ""):
    """Decorator registering ``factory(**kwargs) -> env`` under ``name``."""

    def deco(factory):
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"task {name!r} registered twice")
        _REGISTRY[name] = TaskEntry(
            name, factory, description or (factory.__doc__ or "").strip().split("\n")[0]
        )
        return factory

    return deco


def register_prefix(prefix: str, factory: Callable) -> None:
    """Route every task name starting with ``prefix`` (e.g. ``"pettingzoo:"``) to
    ``factory(name, **kwargs)``."""
    if prefix in _PREFIXES and _PREFIXES[prefix] is not factory:
        raise ValueError(f"task prefix {prefix!r} registered twice")
    _PREFIXES[prefix] = factory


def _load():
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _TASK_MODULES:
            importlib.import_module(mod)


def task_names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def make(name: str, **kwargs):
    """Build the env registered as ``name`` (or a PettingZoo adapter for ``pettingzoo:...``)."""
    _load()
    for prefix, factory in _PREFIXES.items():
        if name.startswith(prefix):
            return factory(name, **kwargs)
    if name not in _REGISTRY:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    try:
        return _REGISTRY[name].factory(**kwargs)
    except TypeError as e:
        raise ConfigError(f"bad arguments for task {name!r}: {e}") from None
    except ValueError as e:  # a task option out of its range (the factory's own check)
        if not kwargs:
            raise
        options = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ConfigError(f"bad task option for {name!r} ({options}): {e}") from None
