"""Envs from a user's own code: ``task=jax:<module or file.py>[:<factory>]`` builds a JAX env (a
:class:`~marlow.envs.api.MultiAgentEnv`) from the user's factory, trained inside the jitted loop like a
registered task; ``pettingzoo:`` (:mod:`marlow.envs.pettingzoo`) does the same for a PettingZoo Parallel
env. The module part is a dotted module name, importable from the current directory too (as with
``python -m``), or the path of a ``.py`` file. Task options (``task.<name>=value``) are passed to the
factory as keyword arguments."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from marlow.envs.api import MultiAgentEnv
from marlow.envs.registry import register_prefix
from marlow.errors import ConfigError


def split_task(task: str, prefix: str, default_factory: str, kind: str) -> tuple[str, str]:
    """``"<prefix>module[:factory]"`` -> ``(module, factory)``; the module may be a ``.py`` path."""
    spec = task.removeprefix(prefix)
    module, sep, factory = spec.rpartition(":")
    if not sep:
        module, factory = spec, default_factory
    if not module or not factory or (":" in module and not module.endswith(".py")):
        raise ConfigError(
            f"bad {kind} task {task!r}; expected '{prefix}module.path[:factory]' or "
            f"'{prefix}file.py[:factory]'"
        )
    return module, factory


def load_factory(task: str, module_name: str, factory_name: str):
    """The callable ``factory_name`` of a module given by dotted name or ``.py`` path."""
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            if not path.is_file():
                raise ConfigError(f"{task}: no such file {module_name!r}")
            name = f"marlow_user_{path.stem}_{abs(hash(str(path)))}"
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.append(str(Path.cwd()))  # as `python -m`: modules in the working directory
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except ImportError as e:
        raise ConfigError(f"{task}: cannot import module {module_name!r} ({e})") from None
    except Exception as e:  # an error while executing the user's module: one line
        raise ConfigError(f"{task}: importing {module_name!r} failed: {type(e).__name__}: {e}") from None
    factory = getattr(module, factory_name, None)
    if factory is None:
        raise ConfigError(f"{task}: module {module_name!r} has no attribute {factory_name!r}")
    if not callable(factory):
        raise ConfigError(f"{task}: {module_name}:{factory_name} is not callable")
    return factory


def make_jax(task: str, **kwargs) -> MultiAgentEnv:
    """Build ``jax:module[:factory]`` (factory name default ``make_env``)."""
    module_name, factory_name = split_task(task, "jax:", "make_env", "JAX")
    factory = load_factory(task, module_name, factory_name)
    try:
        env = factory(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{task}: bad arguments for {module_name}:{factory_name}: {e}") from None
    if not isinstance(env, MultiAgentEnv):
        raise ConfigError(
            f"{task}: {module_name}:{factory_name}() returned {type(env).__name__}, not a "
            "marlow.envs.MultiAgentEnv"
        )
    return env


register_prefix("jax:", make_jax)
