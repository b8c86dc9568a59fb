"""What every entry point does before training or evaluating: the run directory and its config, the env,
the algorithm and its learner, the seed keys and the schedule checks. Above the config and below
everything that runs or reads a run: the runner and the host loop (:mod:`marlow.runtime`), evaluation,
cross-play and the model diagnostics (:mod:`marlow.analysis`) import it, and it imports none of them."""

from __future__ import annotations

import copy
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from marlow import envs
from marlow.algos import check_supports, get_algo
from marlow.algos.learner import make_learner
from marlow.errors import CheckpointError, ConfigError
from marlow.experiment.config import CONFIG_NAME, RunConfig, load_run_config  # noqa: F401 (re-exported)


def default_run_dir(cfg: RunConfig) -> Path:
    e = cfg.experiment
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{e.algo}-{e.task.replace('/', '_').replace(':', '_')}-s{e.seed}-{stamp}"


def make_env(exp):
    """The task of an experiment config, built with its ``task_options`` (``task.<option>=value``)."""
    return envs.make(exp.task, **exp.task_options)


@dataclass(frozen=True)
class Run:
    """A run built once, handed to the runner, the host loop, evaluation, cross-play and sweeps: its
    config (schedule fitted to whole iterations, replay buffer capped at the run's length: what the run
    directory's config.yaml records), its env, its algorithm and the algorithm's learner
    (:mod:`marlow.algos.learner`). :func:`build` makes it; nothing changes it afterwards."""

    cfg: RunConfig
    env: Any
    algo: Any
    learner: Any


def build(cfg: RunConfig, quiet: bool = False) -> Run:
    """The :class:`Run` of a resolved config: the env, the algorithm and its learner (one-line
    ConfigError when they do not fit), with the schedule fitted to whole iterations (:func:`fit_schedule`;
    its note on stderr unless ``quiet``) and the replay buffer capped at the run's length
    (:func:`cap_buffer`). ``cfg`` itself is left as it is: the run holds its own copy.

    An iteration's length does not depend on the run's, so the learner is bound once for the length asked,
    which fits the schedule, then again for the fitted length (the learning-rate decay and the buffer
    depend on it)."""
    cfg = copy.deepcopy(cfg)
    e = cfg.experiment
    env = make_env(e)
    algo_mod = get_algo(e.algo)
    check_supports(algo_mod, env.spec)
    algo = algo_mod.Algorithm(env.spec, cfg.algo)
    lrn = make_learner(algo_mod, algo, cfg.algo, env.spec, e.num_envs, e.total_steps)
    if lrn.steps_per_iter < 1:
        raise ConfigError(f"num_envs ({e.num_envs}) is more than the env steps of one {e.algo} iteration")
    note = fit_schedule(cfg, lrn.steps_per_iter)
    if note and not quiet:
        print(f"marlow: {note}", file=sys.stderr, flush=True)
    cap_buffer(cfg)  # the algorithm holds cfg.algo: it sees the capped buffer
    lrn = make_learner(algo_mod, algo, cfg.algo, env.spec, e.num_envs, e.total_steps)
    return Run(cfg, env, algo, lrn)


def fit_schedule(cfg: RunConfig, steps_per_iter: int) -> str | None:
    """Fit ``total_steps`` and ``eval_every`` to whole iterations of ``steps_per_iter`` vectorised steps of
    ``num_envs`` envs; returns a one-line note when ``total_steps`` changed.

    A run makes whole iterations: ``total_steps`` is rounded down to a multiple of one iteration's env
    steps (a run never exceeds its budget; less than one iteration is an error), and ``eval_every`` is at
    most that total. Chunks of ``eval_every`` steps each end with an evaluation; the last chunk ends at
    ``total_steps`` and is shorter when ``eval_every`` does not divide it (:func:`chunk_spans`)."""
    e = cfg.experiment
    per_iter = steps_per_iter * e.num_envs
    how = f"{per_iter:,} env steps = {steps_per_iter} steps x num_envs {e.num_envs}"
    if e.total_steps < per_iter:
        raise ConfigError(
            f"total_steps ({e.total_steps:,}) is less than one {e.algo} iteration ({how}); raise "
            "total_steps or lower num_envs or the algorithm's steps per iteration"
        )
    asked = e.total_steps
    e.total_steps = asked - asked % per_iter
    e.eval_every = min(e.eval_every, e.total_steps)
    if e.eval_every % per_iter:
        raise ConfigError(
            f"eval_every ({e.eval_every:,}) must be a multiple of the env steps of one {e.algo} iteration "
            f"({how})"
        )
    if e.total_steps == asked:
        return None
    return (
        f"total_steps={asked:,} is not a whole number of {e.algo} iterations ({how}); "
        f"running {e.total_steps // per_iter:,} iterations = {e.total_steps:,} env steps"
    )


def seed_keys(cfg: RunConfig) -> jax.Array:
    """Seed ``seed + i`` of a ``num_seeds`` run uses exactly the key a single run with that seed uses."""
    e = cfg.experiment
    return jnp.stack([jax.random.PRNGKey(e.seed + i) for i in range(e.num_seeds)])


def num_chunks(cfg: RunConfig) -> int:
    """Chunks of a run (:func:`chunk_spans`): the last one is shorter when ``eval_every`` does not divide
    ``total_steps``."""
    return math.ceil(cfg.experiment.total_steps / cfg.experiment.eval_every)


def chunk_spans(cfg: RunConfig, done: int = 0) -> list[tuple[int, int, int]]:
    """``(chunk, first env step, env steps)`` of every chunk still to run after ``done`` env steps.

    Chunk ``c`` covers env steps ``[c * eval_every, min((c + 1) * eval_every, total_steps))``; a run
    resumed at a step inside a chunk (a run whose shorter last chunk ended it, extended with a larger
    ``total_steps``) first runs the rest of that chunk."""
    e = cfg.experiment
    spans = []
    for c in range(done // e.eval_every, num_chunks(cfg)):
        first = max(c * e.eval_every, done)
        spans.append((c, first, min((c + 1) * e.eval_every, e.total_steps) - first))
    return spans


def cap_buffer(cfg: RunConfig) -> None:
    """A replay buffer never holds more than the run collects: cap ``buffer_size`` at the run's length
    (the saved config records the capped size, so a checkpoint's buffer matches its config). Learners
    without a replay buffer have no ``buffer_size``. Called by :func:`build` only, on its own copy."""
    if hasattr(cfg.algo, "buffer_size"):
        cfg.algo.buffer_size = min(cfg.algo.buffer_size, cfg.experiment.total_steps)


RUN_FILES = (
    CONFIG_NAME,
    "metrics.csv",
    "marl_eval.json",
    "tb",
    "checkpoint.msgpack",
    "checkpoint.tmp",
    "report.md",
    "learning_curve.png",
    "startup.json",
)
"""What a run writes in its directory (``overwrite=true`` removes these, and nothing else)."""


def claim_run_dir(cfg: RunConfig, run_dir: Path) -> None:
    """A new run's directory must not hold another run (its ``config.yaml``): refused with a one-line
    error unless ``overwrite=true`` (:func:`prepare_run_dir` then removes that run's files, once the new
    run is built). A directory without a ``config.yaml`` (empty, or a run killed before it wrote one) is
    used as it is. Called before anything is built, so the refusal is immediate."""
    if cfg.experiment.resume or cfg.experiment.overwrite or not (run_dir / CONFIG_NAME).exists():
        return
    raise ConfigError(
        f"{run_dir} already holds a run; resume it with resume={run_dir}, choose another run_dir, or "
        "pass overwrite=true to replace it"
    )


def prepare_run_dir(run: Run, run_dir: Path) -> None:
    """Create the run directory (a new run with ``overwrite=true``: the old run's :data:`RUN_FILES` removed
    first, and nothing else) and write the run's config.yaml (on a resume too: a larger ``total_steps`` is
    the run's new length)."""
    cfg = run.cfg
    saved = cfg.to_dict()
    saved["resume"] = ""
    try:
        if cfg.experiment.overwrite and not cfg.experiment.resume:
            for name in RUN_FILES:
                path = run_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_NAME).write_text(yaml.safe_dump(saved, sort_keys=False))
    except OSError as e:
        raise CheckpointError(f"cannot write the run directory {run_dir}: {e.strerror or e}") from None


def summary(name: str, results: dict, spec) -> list[str]:
    """Lines for ``marlow eval``: the task's episode-event rates first (SMAX's win rate, its main metric),
    the team return (mean and per seed) and, in competitive tasks, each team's."""

    def per_seed(values) -> str:
        values = np.asarray(values)
        return f"{values.mean():.3f} (per seed: {', '.join(f'{v:.3f}' for v in np.ravel(values))})"

    lines = [f"{name}:"]
    for _, event in spec.episode_events:
        lines.append(f"  {event.replace('_', ' ')} {per_seed(results[f'eval/{event}'])}")
    lines.append(f"  team return {per_seed(results['eval/team_return'])}")
    if len(lines) == 2:  # no events: one line, as before
        lines = [f"{name}: team return {per_seed(results['eval/team_return'])}"]
    if spec.competitive:
        for t, _ in spec.teams:
            lines.append(f"  team {t}: return {np.mean(results[f'eval/team_return/{t}']):.3f}")
    return lines
