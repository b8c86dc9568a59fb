"""The Python API: what ``marlow train`` / ``marlow eval`` do, callable from a script or a notebook.

    import marlow
    run_dir = marlow.train("mappo", "smax/3m", total_steps=200_000, num_seeds=4, hidden=[64, 64])
    print(marlow.evaluate(run_dir, episodes=20)["team_return"])
    marlow.train(resume=run_dir)                    # continue a stopped run

Keyword arguments are the command line's ``key=value`` pairs with Python values (lists and tuples for
list keys, booleans, numbers); ``task_options`` holds a task's factory options (the CLI's
``task.<option>=value``). They are validated exactly like the command line (unknown keys, types, ranges:
:class:`marlow.errors.ConfigError`) before anything is compiled. Unlike the CLI, the API leaves JAX's
device setup alone: call :func:`marlow.devices.configure_host_devices` first, before JAX starts, to spread
seeds over the cores as the CLI does. ``progress`` defaults to False here (True on the CLI).

For a loop of one's own: :func:`make_env` builds a task (registered, ``jax:``, ``pettingzoo:``),
:func:`config` resolves a :class:`~marlow.experiment.config.RunConfig`, :func:`build` makes its env,
algorithm and learner (:class:`~marlow.experiment.setup.Run`), and ``marlow.algos.get_algo(name)`` gives an
algorithm module whose ``Algorithm(env.spec, cfg.algo)`` is the learner (:mod:`marlow.algos.learner`
describes the protocol; :func:`marlow.rollout.collect` is the rollout engine). A finished run's config and
per-seed metrics are :func:`run_config` and :func:`metrics`; its plots and tables,
:mod:`marlow.runtime.report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from marlow.errors import ConfigError


def cli_value(v: Any) -> str:
    """A Python value as the command line writes it (``true``, ``64,64``)."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list | tuple):
        return ",".join(cli_value(x) for x in v)
    return repr(v) if isinstance(v, float) else str(v)


def _args(algo: str | None, task: str | None, task_options: dict | None, overrides: dict) -> list[str]:
    args = [f"algo={algo}"] if algo else []
    args += [f"task={task}"] if task else []
    args += [f"task.{k}={cli_value(v)}" for k, v in (task_options or {}).items()]
    return args + [f"{k}={cli_value(v)}" for k, v in overrides.items()]


def config(
    algo: str | None = None,
    task: str | None = None,
    task_options: dict | None = None,
    *,
    args: Sequence[str] = (),
    **overrides,
):
    """The resolved, validated :class:`~marlow.experiment.config.RunConfig` (defaults < task < overrides).
    ``args``: more ``key=value`` strings as the command line writes them (``"hidden=64,64"``,
    ``"task.cc_payoff=5,5"``), applied after the keyword overrides."""
    from marlow.experiment.config import resolve

    return resolve(_args(algo, task, task_options, overrides) + list(args))


def build(cfg, quiet: bool = True):
    """The env, algorithm and learner of a resolved config, built once and checked
    (:class:`~marlow.experiment.setup.Run`), for a loop or a measurement of one's own; ``quiet=False``
    says on stderr how the schedule was fitted to whole iterations."""
    from marlow.experiment.setup import build as build_run

    return build_run(cfg, quiet)


def run_config(run_dir: str | Path):
    """The :class:`~marlow.experiment.config.RunConfig` a run directory was trained with."""
    from marlow.experiment.config import load_run_config

    return load_run_config(run_dir)


def metrics(run_dir: str | Path) -> dict:
    """A run's ``metrics.csv`` as ``{seed: {column: float64 array over its evaluations}}``."""
    from marlow.runtime.loggers import read_metrics

    return read_metrics(run_dir)


def train(
    algo: str | None = None,
    task: str | None = None,
    *,
    resume: str | Path | None = None,
    task_options: dict | None = None,
    run_config=None,
    **overrides,
) -> Path:
    """Train ``algo`` on ``task`` (or resume the run in ``resume``, where ``overrides`` may set the keys
    a resume can change: ``total_steps`` to extend it, ``checkpoint_every``, ``progress``,
    ``compile_cache``); returns the run directory. ``run_config``: train a config :func:`config` resolved
    instead (nothing else given). Progress is shown as by the CLI (``progress=False`` for none): a bar on a
    terminal, else one line per evaluation on stderr."""
    from marlow.runtime.runner import train as run

    if run_config is not None:
        if algo or task or resume is not None or task_options or overrides:
            raise ConfigError("marlow.train takes a run_config alone (its keys are already resolved)")
        return Path(run(run_config))
    if resume is None and not (algo and task):
        raise ConfigError("marlow.train needs an algorithm and a task (or resume=<run_dir>)")
    if resume is not None:
        return Path(run(config(algo, task, task_options, resume=str(resume), **overrides)))
    return Path(run(config(algo, task, task_options, **overrides)))


def evaluate(run_dir: str | Path, episodes: int = 100, seed: int = 12345) -> dict:
    """Greedy evaluation of a run's checkpointed policies (``marlow eval``), as numbers:
    ``team_return`` (mean over seeds), ``team_return_per_seed``, ``agent_returns``, in competitive tasks
    ``team_returns`` (per team), episode event rates such as ``win_rate``, ``env_steps`` and ``episodes``
    (:meth:`marlow.analysis.evaluate.Evaluation.numbers`)."""
    from marlow.analysis.evaluate import evaluation

    return evaluation(str(run_dir), episodes=episodes, seed=seed).numbers()


def make_env(task: str, **options):
    """Build a task by name, with its factory options."""
    from marlow.envs import make

    return make(task, **options)
