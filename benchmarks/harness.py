"""The benchmarks' harness: run one algorithm over many vmapped seeds through the marlow runner
(``run_sweep``, in this process) or a grid of them with ``marlow sweep`` (``grid_sweep``, on Ray), time it,
and load the per-seed metrics."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

import marlow
from marlow.devices import configure_host_devices


def run_sweep(
    algo: str,
    task: str,
    seeds: int,
    overrides: list[str],
    reuse: bool = False,
    tag: str = "",
    *,
    root: Path,
) -> tuple[Path, float, float | None]:
    """Train ``seeds`` vmapped seeds of ``algo`` on ``task``; returns (run dir, training wall seconds as
    logged by the runner: the chunks' time, without compilation, and the whole call's seconds with
    compilation, None for a reused run). ``reuse``: keep a finished run of the same config. ``tag``: a
    suffix of the run directory, to keep sweeps with different overrides apart. ``root``: where the run
    directories go (the calling benchmark's git-ignored runs/)."""
    configure_host_devices()  # one XLA host device per core, before JAX starts
    run_dir = root / task.replace("/", "_") / f"{algo}{tag}"
    cfg = marlow.config(algo, task, args=[f"num_seeds={seeds}", f"run_dir={run_dir}", *overrides])
    total = None
    if not (reuse and _finished(run_dir, cfg)):
        shutil.rmtree(run_dir, ignore_errors=True)
        t0 = time.perf_counter()
        marlow.train(run_config=cfg)
        total = time.perf_counter() - t0
        print(f"{algo}: {total:.1f} s with compilation", flush=True)
    return run_dir, float(per_seed(run_dir, "wall_time")[0, -1]), total


def grid_sweep(out: Path, args: list[str], ray_cpus: str = "") -> list[dict]:
    """``marlow sweep out=<out> <args>`` (finished trials skipped, interrupted ones resumed); returns the
    trials of its sweep.json (``run_dir``, ``swept`` values, ``seconds`` of the trial's whole process
    when this call ran it). ``ray_cpus``: the local Ray instance's CPUs (default: all). Exits with the
    sweep's message when a trial failed."""
    from marlow.sweep.grid import SWEEP_FILE
    from marlow.sweep.run import run_sweep as marlow_sweep

    t0 = time.perf_counter()
    opts = [f"out={out}", "aggregate=false", *([f"ray_cpus={ray_cpus}"] if ray_cpus else [])]
    if marlow_sweep([*opts, *args]) != 0:  # the benchmark writes its own page, not the sweep's aggregate
        raise SystemExit(f"{out}: some trials failed (see {out / SWEEP_FILE}); rerun to retry them")
    print(f"{out}: {time.perf_counter() - t0:.0f} s", flush=True)
    return json.loads((out / SWEEP_FILE).read_text())["trials"]


def _finished(run_dir: Path, cfg) -> bool:
    if not (run_dir / "metrics.csv").is_file() or not (run_dir / "config.yaml").is_file():
        return False
    saved = marlow.run_config(run_dir).to_dict()
    want = cfg.to_dict()
    saved.pop("run_dir"), want.pop("run_dir")
    saved["algo_params"].pop("buffer_size", None), want["algo_params"].pop("buffer_size", None)  # capped
    return saved == want and steps(run_dir)[-1] >= cfg.experiment.total_steps


def per_seed(run_dir: Path, column: str) -> np.ndarray:
    """``[seeds, evals]`` array of one metric column."""
    m = marlow.metrics(run_dir)
    return np.stack([m[s][column] for s in sorted(m)])


def steps(run_dir: Path) -> np.ndarray:
    m = marlow.metrics(run_dir)
    return m[sorted(m)[0]]["env_steps"]


def whole(totals: dict) -> str:
    """The trials' whole seconds (import, compilation, training, evaluation) when this call ran them all."""
    if any(t is None for t in totals.values()):
        return "not measured (some trials were finished by an earlier call)"
    return f"{sum(totals.values()):.1f} s in {len(totals)} trial processes"


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def mean_ci(x: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of a normal-approximation 95% interval over the first axis."""
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(1.96 * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0
