"""The host side of a run, shared by the JAX and the host-env loops (:func:`run_chunks`): restore the
checkpoint, run the chunks with logging, the divergence check, checkpoints and progress, and write the
report."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from marlow.devices import shard_seeds
from marlow.errors import RunInterrupted, TrainingDiverged
from marlow.experiment import checkpoint
from marlow.experiment.config import RunConfig
from marlow.experiment.logging import RunLogger
from marlow.experiment.progress import ProgressReporter
from marlow.experiment.setup import num_chunks
from marlow.experiment.signals import GracefulStop, wait
from marlow.experiment.startup import Startup


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


def run_chunks(
    cfg: RunConfig,
    run_dir: Path,
    state: Any,
    metric_names,
    evaluate,
    run_chunk,
    startup: Startup | None = None,
) -> Path:
    """The host side of a run, shared by the JAX and the host-env loops: restore the checkpoint
    (``cfg.experiment.resume``; ``state`` is the template), log the step-0 evaluation (new runs), run the
    remaining chunks with logging, the divergence check, checkpoints and progress, then write the report.

    ``metric_names(state)``: the non-evaluation chunk metrics; ``evaluate(state) -> (state, eval metrics)``;
    ``run_chunk(state, c) -> (state, metrics)``; metrics are arrays over seeds. ``startup``: the start-up
    timings, written to the run directory when the first training chunk starts.
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
        with reporter, GracefulStop() as stop:
            if not resume:
                state, ev = evaluate(state)
                zeros = np.zeros(len(seeds), np.int64)
                first = {k: np.full(len(seeds), np.nan) for k in metric_names(state)}
                first.update(ev, env_steps=zeros, episodes=zeros, updates=zeros, agent_interactions=zeros)
                logger.log(_rows(first, seeds, 0.0, 0.0))
            reporter.advance(start * e.eval_every, None, None)
            wall = wall0
            for c in range(start, n_chunks):
                if startup is not None and c == start:
                    startup.mark("first_step")
                    startup.write(run_dir)
                t0 = time.perf_counter()
                state, m = run_chunk(state, c)
                m = wait(m)  # in short sleeps: a SIGINT/SIGTERM handler runs meanwhile
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
                step = int(np.max(m["env_steps"]))
                if (c + 1) % e.checkpoint_every == 0 or c + 1 == n_chunks or stop.signum is not None:
                    checkpoint.save(run_dir, state, {"chunk": c + 1, "env_steps": step, "wall_time": wall})
                if stop.signum is not None and c + 1 < n_chunks:
                    raise RunInterrupted(
                        f"{signal.Signals(stop.signum).name}: stopped after env step {step:,}, checkpointed; "
                        f"resume with `marlow train resume={run_dir}`",
                        stop.signum,
                    )
                reporter.advance(
                    (c + 1) * e.eval_every, float(np.mean(m["eval/team_return"])), sps * e.num_seeds
                )
    finally:
        logger.close()
    from marlow.experiment.report import write_report

    write_report(run_dir, run_dir)
    return run_dir
