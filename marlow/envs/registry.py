"""Task registry: ``marlow.envs.make("mpe/simple_spread")``.

Tasks register a zero-argument-or-kwargs factory under a name ``family/task``. Modules holding tasks
are imported lazily on first use (by name, so this module imports none of them) so that importing
``marlow`` stays cheap. A module may also register a *prefix* handler: a task string of the form
``pettingzoo:module:factory`` (or ``pettingzoo:module`` with a ``parallel_env`` factory) builds a
host-side adapter around any PettingZoo Parallel env (``marlow.envs.pettingzoo`` registers it), and
``jax:module:factory`` (or ``jax:path/to/file.py:factory``) a user's own JAX env (``marlow.envs.user``).

Task options (``make(name, **options)``, ``task.<option>=value``) are checked against the factory's
signature before it is called: an unknown one is a one-line :class:`~marlow.errors.ConfigError` naming it,
the task's options and the closest. A factory taking ``**kwargs`` declares the names it takes through them
(``register(name, options=...)``); one that declares none takes any option.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from marlow.errors import ConfigError, did_you_mean

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
    options: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None


_REGISTRY: dict[str, TaskEntry] = {}
_PREFIXES: dict[str, Callable] = {}
_loaded = False


def register(name: str, description: str = "", options=None):
    """Decorator registering ``factory(**kwargs) -> env`` under ``name``. ``options``: the names a factory
    taking ``**kwargs`` accepts through them (or a function giving them, called when an option is checked)."""

    def deco(factory):
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"task {name!r} registered twice")
        _REGISTRY[name] = TaskEntry(
            name, factory, description or (factory.__doc__ or "").strip().split("\n")[0], options
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


def accepted_options(factory: Callable, declared=None) -> tuple[str, ...] | None:
    """The option names ``factory`` takes: its named parameters, plus ``declared`` (the names it takes
    through ``**kwargs``, or a function giving them). None (any option) for a factory with ``**kwargs``
    and nothing declared, or one without a signature."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    named = tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    if declared is None:
        return None if any(p.kind is p.VAR_KEYWORD for p in params) else named
    return named + tuple(declared() if callable(declared) else declared)


def check_options(task: str, options, accepted: tuple[str, ...] | None) -> None:
    """A one-line ConfigError for the first of ``options`` not in ``accepted`` (None: any is fine)."""
    for key in options if accepted is not None else ():
        if key not in accepted:
            raise ConfigError(
                f"bad arguments for task {task!r}: unknown option {key!r} (its options: "
                f"{', '.join(accepted) or 'none'}){did_you_mean(key, accepted)}"
            )


def make(name: str, **kwargs):
    """Build the env registered as ``name`` (or a PettingZoo adapter for ``pettingzoo:...``)."""
    _load()
    for prefix, factory in _PREFIXES.items():
        if name.startswith(prefix):
            return factory(name, **kwargs)
    if name not in _REGISTRY:
        hint = did_you_mean(name, task_names()) or "; `marlow list` names the tasks"
        raise ConfigError(f"unknown task {name!r}{hint}")
    entry = _REGISTRY[name]
    if kwargs:
        check_options(name, kwargs, accepted_options(entry.factory, entry.options))
    try:
        return entry.factory(**kwargs)
    except TypeError as e:
        raise ConfigError(f"bad arguments for task {name!r}: {e}") from None
    except ValueError as e:  # a task option out of its range (the factory's own check)
        if not kwargs:
            raise
        options = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ConfigError(f"bad task option for {name!r} ({options}): {e}") from None
