"""The host side of a run, shared by the JAX and the host-env loops (:func:`run_chunks`): restore the
checkpoint, run the chunks with logging, the divergence check, checkpoints and progress, and write the
report."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from marlow.devices import shard_seeds
from marlow.errors import ConfigError, RunInterrupted, TrainingDiverged
from marlow.experiment.config import RunConfig
from marlow.experiment.setup import chunk_spans, num_chunks
from marlow.runtime import checkpoint
from marlow.runtime.loggers import RunLogger
from marlow.runtime.progress import ProgressReporter
from marlow.runtime.signals import GracefulStop, wait
from marlow.runtime.startup import Startup

COUNTS = ("env_steps", "episodes", "updates")
"""Metrics that count things: logged as integers (``updates`` is summed in float32 inside the chunk)."""


def _scalar(key: str, v: np.ndarray) -> int | float:
    """A logged number as its type reads: an integer for integer arrays and counts, a float32 as its
    shortest decimal (819.2, not 819.199951171875, the float64 it widens to)."""
    if np.issubdtype(v.dtype, np.integer) or (key in COUNTS and np.isfinite(v) and float(v).is_integer()):
        return int(v)
    return float(str(v)) if v.dtype == np.float32 else float(v)


def _rows(metrics: dict[str, Any], seeds: list[int], wall: float, sps: float) -> list[dict[str, Any]]:
    rows = []
    for i, _ in enumerate(seeds):
        row: dict[str, Any] = {}
        for k, v in metrics.items():
            v = np.asarray(v[i])
            row[k] = v.tolist() if v.ndim else _scalar(k, v)
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


def finished(cfg: RunConfig, run_dir: Path, done: int) -> bool:
    """Whether a resumed run that has made ``done`` env steps has nothing left to do (said on stderr; its
    report written if it has none)."""
    e = cfg.experiment
    if done > e.total_steps:
        raise ConfigError(
            f"{run_dir} has made {done:,} env steps already: total_steps ({e.total_steps:,}) must be at "
            "least that"
        )
    if done < e.total_steps:
        return False
    print(
        f"marlow: {run_dir} is finished ({done:,} env steps); to train it further, resume it with a "
        "larger total_steps",
        file=sys.stderr,
    )
    from marlow.runtime.report import REPORT_NAME, write_report

    if not (run_dir / REPORT_NAME).exists():  # killed after its last checkpoint, before its report
        write_report(run_dir, run_dir)
    return True


def run_chunks(
    cfg: RunConfig,
    run_dir: Path,
    state: Any,
    metric_names,
    evaluate,
    run_chunk,
    startup: Startup | None = None,
    payload: dict | None = None,
) -> Path:
    """The host side of a run, shared by the JAX and the host-env loops: restore the checkpoint
    (``cfg.experiment.resume``; ``state`` is the template), log the step-0 evaluation (new runs), run the
    remaining chunks with logging, the divergence check, checkpoints and progress, then write the report.

    ``metric_names(state)``: the non-evaluation chunk metrics, logged as NaN at step 0 (the JAX loop: none,
    its step-0 evaluation is the chunk program with no iterations and has them all); ``evaluate(state) ->
    (state, eval metrics)``;
    ``run_chunk(state, c, first_step, steps) -> (state, metrics)`` runs chunk ``c``'s ``steps`` env steps
    from ``first_step`` (:func:`chunk_spans`); metrics are arrays over seeds. ``startup``: the start-up
    timings, written to the run directory when the first training chunk starts. ``payload``: the
    checkpoint, if the caller read it already (:func:`checkpoint.read`)
    """
    e = cfg.experiment
    resume = bool(e.resume)
    n_chunks = num_chunks(cfg)
    seeds = [e.seed + i for i in range(e.num_seeds)]
    done, wall0, logged_step = 0, 0.0, None
    if resume:
        state, meta = checkpoint.load(run_dir, state, payload)
        state = shard_seeds(state, e.num_seeds)
        done, wall0, logged_step = int(meta["env_steps"]), float(meta["wall_time"]), int(meta["env_steps"])
        if finished(cfg, run_dir, done):
            return run_dir
    spans = chunk_spans(cfg, done)
    logger = RunLogger(run_dir, algo=e.algo, task=e.task, seeds=seeds, resume_step=logged_step)
    reporter = ProgressReporter(e, e.total_steps, enabled=e.progress)
    try:
        with reporter, GracefulStop() as stop:
            if not resume:
                state, ev = evaluate(state)
                zeros = np.zeros(len(seeds), np.int64)
                first = {k: np.full(len(seeds), np.nan) for k in metric_names(state)}
                first.update(ev, env_steps=zeros, episodes=zeros, updates=zeros, agent_interactions=zeros)
                logger.log(_rows(first, seeds, 0.0, 0.0))
            reporter.advance(done, None, None)
            wall = wall0
            for i, (c, first_step, steps) in enumerate(spans):
                if startup is not None and i == 0:
                    startup.mark("first_step")
                    startup.write(run_dir)
                t0 = time.perf_counter()
                state, m = run_chunk(state, c, first_step, steps)
                m = wait(m)  # in short sleeps: a SIGINT/SIGTERM handler runs meanwhile
                dt = time.perf_counter() - t0
                wall += dt
                sps = steps / dt
                logger.log(_rows(m, seeds, wall, sps))
                bad = _diverged(m)
                if bad:
                    raise TrainingDiverged(
                        f"non-finite {bad} at env step {int(np.max(m['env_steps']))}; stopped, the last good "
                        f"checkpoint in {run_dir} is kept"
                    )
                step = int(np.max(m["env_steps"]))
                if (c + 1) % e.checkpoint_every == 0 or c + 1 == n_chunks or stop.signum is not None:
                    checkpoint.save(run_dir, state, {"chunk": c + 1, "env_steps": step, "wall_time": wall})
                if stop.signum is not None and c + 1 < n_chunks:
                    raise RunInterrupted(
                        f"{signal.Signals(stop.signum).name}: stopped after env step {step:,}, checkpointed; "
                        f"resume with `marlow train resume={run_dir}`",
                        stop.signum,
                    )
                reporter.advance(first_step + steps, float(np.mean(m["eval/team_return"])), sps * e.num_seeds)
    finally:
        logger.close()
    from marlow.runtime.report import write_report

    write_report(run_dir, run_dir)
    return run_dir
