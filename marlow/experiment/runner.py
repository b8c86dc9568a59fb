"""Host-side orchestration of a run: run directory, config, the jitted program, logging, checkpoints,
progress, resume. The learning itself happens in :mod:`marlow.experiment.loop` (JAX envs) or
:mod:`marlow.experiment.host` (PettingZoo envs)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from marlow import envs
from marlow.algos import check_supports, get_algo
from marlow.devices import seed_sharding, shard_seeds
from marlow.errors import CheckpointError, ConfigError, TrainingDiverged
from marlow.experiment import checkpoint
from marlow.experiment.config import RunConfig, from_dict
from marlow.experiment.logging import RunLogger
from marlow.experiment.loop import Loop
from marlow.experiment.progress import ProgressReporter

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


def check_schedule(cfg: RunConfig) -> None:
    e, a = cfg.experiment, cfg.algo
    if a.update_every % e.num_envs:
        raise ConfigError(f"update_every ({a.update_every}) must be a multiple of num_envs ({e.num_envs})")
    if e.eval_every % a.update_every:
        raise ConfigError(
            f"eval_every ({e.eval_every}) must be a multiple of update_every ({a.update_every})"
        )


def build(cfg: RunConfig):
    """Env, algorithm and (for JAX envs) the training loop of a resolved config."""
    env = envs.make(cfg.experiment.task)
    algo_mod = get_algo(cfg.experiment.algo)
    check_supports(algo_mod, env.spec)
    check_schedule(cfg)
    algo = algo_mod.Algorithm(env.spec, cfg.algo)
    return env, algo


def seed_keys(cfg: RunConfig) -> jax.Array:
    """Seed ``seed + i`` of a ``num_seeds`` run uses exactly the key a single run with that seed uses."""
    e = cfg.experiment
    return jnp.stack([jax.random.PRNGKey(e.seed + i) for i in range(e.num_seeds)])


def num_chunks(cfg: RunConfig) -> int:
    return math.ceil(cfg.experiment.total_steps / cfg.experiment.eval_every)


def _rows(metrics: dict[str, Any], seeds: list[int], wall: float, sps: float) -> list[dict[str, Any]]:
    rows = []
    for i, _ in enumerate(seeds):
        row: dict[str, Any] = {}
        for k, v in metrics.items():
            v = np.asarray(v[i])
            row[k] = v.tolist() if v.ndim else (int(v) if np.issubdtype(v.dtype, np.integer) else float(v))
        row["wall_time"] = wall
        row["steps_per_s"] = sps
        rows.append(row)
    return rows


def _diverged(metrics: dict[str, Any]) -> str | None:
    for k, v in metrics.items():
        if k.startswith("loss/"):
            v = np.asarray(v)
            # NaN means "no update yet" only when no update ran; then every seed's count is 0
            if np.any(~np.isfinite(v) & (np.asarray(metrics["updates"]) > 0)):
                return k
    return None


def train(cfg: RunConfig, run_dir: str | Path | None = None) -> Path:
    """Train (or resume) a run; returns its directory. Raises MarlowError subclasses on bad input."""
    if cfg.experiment.resume:
        run_dir = Path(cfg.experiment.resume)
        progress_flag = cfg.experiment.progress
        cfg = load_run_config(run_dir)
        cfg.experiment.progress = progress_flag
        cfg.experiment.resume = str(run_dir)  # the saved config has resume=""; run_chunks reads it
    else:
        run_dir = Path(run_dir or cfg.experiment.run_dir or default_run_dir(cfg))
    env, algo = build(cfg)
    if not env.is_jax:
        from marlow.experiment.host import train_host

        return train_host(cfg, env, algo, Path(run_dir))

    prepare_run_dir(cfg, run_dir)
    loop = Loop(env, algo, cfg.experiment, cfg.algo)
    init, chunk, evaluate = jitted_program(loop, cfg.experiment.num_seeds)
    keys = seed_keys(cfg)
    # a resumed run overwrites the state with its checkpoint: only its shapes are needed then
    state = (
        checkpoint.template(jax.vmap(loop.init), keys)
        if cfg.experiment.resume
        else init(shard_seeds(keys, cfg.experiment.num_seeds))
    )
    return run_chunks(
        cfg,
        run_dir,
        state,
        loop.chunk_metric_names,
        evaluate,
        lambda rs, c: chunk(rs, jnp.int32(c)),
    )


def jitted_program(loop: Loop, num_seeds: int):
    """``init(keys)``, ``chunk(state, c)`` and ``evaluate(state)`` of a JAX-env run, jitted and vmapped
    over seeds, with the seed axis of every returned state split over :func:`seed_sharding`'s devices
    (without ``out_shardings`` XLA would replicate the state on every device)."""
    sharding = seed_sharding(num_seeds)
    init = jax.jit(jax.vmap(loop.init), out_shardings=sharding)
    chunk = jax.jit(jax.vmap(loop.chunk, in_axes=(0, None)), donate_argnums=0, out_shardings=sharding)
    evaluate = jax.jit(jax.vmap(loop.evaluate), out_shardings=sharding)
    return init, chunk, evaluate


def cap_buffer(cfg: RunConfig) -> None:
    """A replay buffer never holds more than the run collects: cap ``buffer_size`` at the run's length
    (the saved config records the capped size, so a checkpoint's buffer matches its config)."""
    cfg.algo.buffer_size = min(cfg.algo.buffer_size, num_chunks(cfg) * cfg.experiment.eval_every)


def prepare_run_dir(cfg: RunConfig, run_dir: Path) -> None:
    """Cap the buffer at the run's length, create the run directory and (new runs) write config.yaml."""
    e = cfg.experiment
    cap_buffer(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not e.resume:
        (run_dir / CONFIG_NAME).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def run_chunks(cfg: RunConfig, run_dir: Path, state: Any, metric_names, evaluate, run_chunk) -> Path:
    """The host side of a run, shared by the JAX and the host-env loops: restore the checkpoint
    (``cfg.experiment.resume``; ``state`` is the template), log the step-0 evaluation (new runs), run the
    remaining chunks with logging, the divergence check, checkpoints and progress, then write the report.

    ``metric_names(state)``: the non-evaluation chunk metrics; ``evaluate(state) -> (state, eval metrics)``;
    ``run_chunk(state, c) -> (state, metrics)``; metrics are arrays over seeds.
    """
    e = cfg.experiment
    resume = bool(e.resume)
    n_chunks = num_chunks(cfg)
    seeds = [e.seed + i for i in range(e.num_seeds)]
    start, wall0, logged_step = 0, 0.0, None
    if resume:
        state, meta = checkpoint.load(run_dir, state)
        state = shard_seeds(state, e.num_seeds)
        start, wall0, logged_step = int(meta["chunk"]), float(meta["wall_time"]), int(meta["env_steps"])
    logger = RunLogger(run_dir, algo=e.algo, task=e.task, seeds=seeds, resume_step=logged_step)
    reporter = ProgressReporter(e, n_chunks * e.eval_every, enabled=e.progress)
    try:
        with reporter:
            if not resume:
                state, ev = evaluate(state)
                zeros = np.zeros(len(seeds), np.int64)
                first = {k: np.full(len(seeds), np.nan) for k in metric_names(state)}
                first.update(ev, env_steps=zeros, episodes=zeros, updates=zeros, agent_interactions=zeros)
                logger.log(_rows(first, seeds, 0.0, 0.0))
            reporter.advance(start * e.eval_every, None, None)
            wall = wall0
            for c in range(start, n_chunks):
                t0 = time.perf_counter()
                state, m = run_chunk(state, c)
                m = jax.device_get(m)
                dt = time.perf_counter() - t0
                wall += dt
                sps = e.eval_every / dt
                logger.log(_rows(m, seeds, wall, sps))
                bad = _diverged(m)
                if bad:
                    raise TrainingDiverged(
                        f"non-finite {bad} at env step {int(np.max(m['env_steps']))}; stopped, the last good "
                        f"checkpoint in {run_dir} is kept"
                    )
                if (c + 1) % e.checkpoint_every == 0 or c + 1 == n_chunks:
                    checkpoint.save(
                        run_dir,
                        state,
                        {"chunk": c + 1, "env_steps": int(np.max(m["env_steps"])), "wall_time": wall},
                    )
                reporter.advance(
                    (c + 1) * e.eval_every, float(np.mean(m["eval/team_return"])), sps * e.num_seeds
                )
    finally:
        logger.close()
    from marlow.experiment.report import write_report

    write_report(run_dir, run_dir)
    return run_dir
