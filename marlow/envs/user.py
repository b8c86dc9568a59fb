"""Envs from a user's own code: ``task=jax:<module or file.py>[:<factory>]`` builds a JAX env (a
:class:`~marlow.envs.api.MultiAgentEnv`) from the user's factory, trained inside the jitted loop like a
registered task; ``pettingzoo:`` (:mod:`marlow.envs.pettingzoo`) does the same for a PettingZoo Parallel
env. The module part is a dotted module name, importable from the current directory too (as with
``python -m``), or the path of a ``.py`` file. Task options (``task.<name>=value``) are passed to the
factory as keyword arguments (an option it does not take is refused).

A user's JAX env is reset and stepped once when it is built, abstractly (:func:`check_jax_env`, with
``jax.eval_shape``: traced, not compiled or run), so that an output marlow reads but the env lacks (e.g.
``infos["truncated"]``, without which time-limit ends would silently not be bootstrapped) is a one-line
ConfigError saying what to return, not a wrong result or a traceback inside the training loop."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import jax

from marlow.envs.api import EnvSpec, MultiAgentEnv, random_actions
from marlow.envs.registry import accepted_options, check_options, register_prefix
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
    check_options(task, kwargs, accepted_options(factory))
    try:
        env = factory(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{task}: bad arguments for {module_name}:{factory_name}: {e}") from None
    if not isinstance(env, MultiAgentEnv):
        raise ConfigError(
            f"{task}: {module_name}:{factory_name}() returned {type(env).__name__}, not a "
            "marlow.envs.MultiAgentEnv"
        )
    check_jax_env(task, env)
    return env


def check_jax_env(task: str, env: MultiAgentEnv) -> None:
    """Check a user env's spec and what marlow reads from one ``reset`` and ``step_env`` (random actions):
    every agent's observation (of its space's shape), reward and done (scalars), and ``dones["__all__"]``
    and ``infos["truncated"]`` (bool scalars). The first problem is a one-line ConfigError."""

    def fail(what: str, fix: str):
        raise ConfigError(f"{task}: user env {what}: {fix}")

    spec = getattr(env, "spec", None)
    if not isinstance(spec, EnvSpec):
        fail("has no spec", "set self.spec = marlow.envs.EnvSpec(...) in __init__")
    for name, value in env.__dict__.get("_assigned", {}).items():  # JaxMARL style: self.agents = [...]
        if value != getattr(env, name):
            fail(f"sets self.{name} = {value!r}", f"its spec says {getattr(env, name)!r}")

    def reset_and_step(key):
        obs, state = env.reset(key)
        return obs, env.step_env(key, state, random_actions(spec, key))

    obs, out = jax.eval_shape(reset_and_step, jax.random.PRNGKey(0))
    if not (isinstance(out, tuple) and len(out) == 5):
        fail("step_env() does not return 5 values", "return (obs, state, rewards, dones, infos)")
    step_obs, _, rewards, dones, infos = out
    obs_shapes = {a: spec.obs_space(a).shape for a in spec.agents}
    scalars = dict.fromkeys(spec.agents, ())
    for what, d, shapes in [
        ("reset() obs", obs, obs_shapes),
        ("step_env() obs", step_obs, obs_shapes),
        ("step_env() rewards", rewards, scalars),
        ("step_env() dones", dones, {**scalars, "__all__": ()}),
    ]:
        for key, shape in shapes.items():
            if not isinstance(d, dict) or key not in d:
                fail(f"{what} has no entry {key!r}", f"return a dict with {', '.join(map(repr, shapes))}")
            if tuple(d[key].shape) != tuple(shape):
                fail(f"{what}[{key!r}] has shape {tuple(d[key].shape)}", f"its spec says {tuple(shape)}")
    if not isinstance(infos, dict) or "truncated" not in infos:
        fail(
            "step_env() infos has no 'truncated' entry",
            "return infos['truncated'] (bool per env) so time-limit ends are bootstrapped",
        )
    for what, x in (("infos['truncated']", infos["truncated"]), ("dones['__all__']", dones["__all__"])):
        if x.shape != () or x.dtype != bool:
            fail(f"step_env() {what} is {x.dtype}{list(x.shape)}", "return a bool scalar per env")


register_prefix("jax:", make_jax)
