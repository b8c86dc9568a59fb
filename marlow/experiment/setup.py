"""What every entry point does before training or evaluating: the run directory and its config, the env,
the algorithm and its learner, the seed keys and the schedule checks. The lowest module of
``marlow.experiment`` above the config: the runner, the host loop, evaluation, cross-play and the model
diagnostics import it, and it imports none of them."""

from __future__ import annotations

import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from marlow import envs
from marlow.algos import check_supports, get_algo
from marlow.algos.learner import make_learner
from marlow.errors import CheckpointError, ConfigError
from marlow.experiment.config import RunConfig, from_dict

CONFIG_NAME = "config.yaml"


def default_run_dir(cfg: RunConfig) -> Path:
    e = cfg.experiment
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{e.algo}-{e.task.replace('/', '_').replace(':', '_')}-s{e.seed}-{stamp}"


def load_run_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_NAME
    if not path.exists():
        raise CheckpointError(f"{run_dir} is not a run directory (no {CONFIG_NAME})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CheckpointError(f"unreadable {path}: {e}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"unreadable {path}: not a mapping")
    return from_dict(data)


def make_env(exp):
    """The task of an experiment config, built with its ``task_options`` (``task.<option>=value``)."""
    return envs.make(exp.task, **exp.task_options)


def build(cfg: RunConfig):
    """Env and algorithm of a resolved config (one-line ConfigError when they do not fit)."""
    env = make_env(cfg.experiment)
    algo_mod = get_algo(cfg.experiment.algo)
    check_supports(algo_mod, env.spec)
    algo = algo_mod.Algorithm(env.spec, cfg.algo)
    learner(cfg, algo)  # checks the schedule
    return env, algo


def learner(cfg: RunConfig, algo):
    """The learner (:mod:`marlow.algos.learner`) of a built algorithm, with the schedule checked: one
    iteration's env steps must divide ``eval_every``. An off-policy learner's buffer is capped at the
    run's length (:func:`cap_buffer`)."""
    e = cfg.experiment
    cap_buffer(cfg)
    run_steps = num_chunks(cfg) * e.eval_every  # the steps the run really makes (whole chunks)
    lrn = make_learner(get_algo(e.algo), algo, cfg.algo, algo.spec, e.num_envs, run_steps)
    per_iter = lrn.steps_per_iter * e.num_envs
    if lrn.steps_per_iter < 1 or e.eval_every % per_iter:
        raise ConfigError(
            f"eval_every ({e.eval_every}) must be a multiple of the env steps of one {e.algo} iteration "
            f"({per_iter} = {lrn.steps_per_iter} steps x num_envs {e.num_envs})"
        )
    return lrn


def seed_keys(cfg: RunConfig) -> jax.Array:
    """Seed ``seed + i`` of a ``num_seeds`` run uses exactly the key a single run with that seed uses."""
    e = cfg.experiment
    return jnp.stack([jax.random.PRNGKey(e.seed + i) for i in range(e.num_seeds)])


def num_chunks(cfg: RunConfig) -> int:
    return math.ceil(cfg.experiment.total_steps / cfg.experiment.eval_every)


def cap_buffer(cfg: RunConfig) -> None:
    """A replay buffer never holds more than the run collects: cap ``buffer_size`` at the run's length
    (the saved config records the capped size, so a checkpoint's buffer matches its config). Learners
    without a replay buffer have no ``buffer_size``."""
    if hasattr(cfg.algo, "buffer_size"):
        cfg.algo.buffer_size = min(cfg.algo.buffer_size, num_chunks(cfg) * cfg.experiment.eval_every)


def prepare_run_dir(cfg: RunConfig, run_dir: Path) -> None:
    """Cap the buffer at the run's length, create the run directory and (new runs) write config.yaml."""
    cap_buffer(cfg)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not cfg.experiment.resume:
            (run_dir / CONFIG_NAME).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    except OSError as e:
        raise CheckpointError(f"cannot write the run directory {run_dir}: {e.strerror or e}") from None


def summary(name: str, results: dict, spec) -> list[str]:
    """Lines for ``marlow eval``: the team return (mean and per seed) and, in competitive tasks, each
    team's."""
    team = np.asarray(results["eval/team_return"])
    lines = [
        f"{name}: team return {team.mean():.3f} (per seed: {', '.join(f'{v:.3f}' for v in np.ravel(team))})"
    ]
    if spec.competitive:
        for t, _ in spec.teams:
            lines.append(f"  team {t}: return {np.mean(results[f'eval/team_return/{t}']):.3f}")
    return lines
