"""``marlow sweep``: a grid's trials (marlow.sweep.grid) run as Ray tasks, one process per trial.

A local Ray instance is started unless ``address=`` names a running cluster (``address=auto`` for the
cluster of this node). Each trial is a task with ``cpus_per_trial`` CPUs (its seeds are split over that many
XLA host devices) and ``gpus_per_trial`` GPUs (a fraction shares a GPU: the trial's JAX then takes that
fraction of its memory), in a fresh worker process, so trials share nothing.

Resumable: rerunning the same command (same grid, same ``out``) skips the trials whose run directory
already holds every evaluation, resumes the ones with a checkpoint from it, and starts the rest; another
grid into the same ``out`` is refused. A trial
that fails (a diverged run, a crash, a killed worker) is reported with one line and the others go on; the
command then exits with status 1, and a rerun retries the failed trials. Each trial's output goes to its
run directory's ``train.log`` (its progress: one line per evaluation); ``sweep.json`` in the sweep
directory lists the trials and their outcome.
The aggregate report (marlow.sweep.summary) is written to ``<out>/aggregate`` at the end unless
``aggregate=false``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from marlow.errors import ConfigError
from marlow.sweep.grid import SWEEP_FILE, Trial, expand

LOG_NAME = "train.log"
OPTIONS = {
    "out": None,
    "address": "",
    "cpus_per_trial": "1",
    "gpus_per_trial": "0",
    "ray_cpus": "",
    "aggregate": "true",
}


def split_options(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """The sweep's own options (``out``, ``address``, ``cpus_per_trial``, ``gpus_per_trial``,
    ``ray_cpus``, ``aggregate``) apart from the grid's arguments."""
    opts, grid = dict(OPTIONS), []
    for a in args:
        key = a.split("=", 1)[0]
        if "=" in a and key in OPTIONS:
            opts[key] = a.split("=", 1)[1]
        else:
            grid.append(a)
    if not grid:
        raise ConfigError(
            "sweep: no grid given (for example algo=ippo,mappo task=mpe/simple_spread seeds=0-4)"
        )
    if opts["out"] is None:
        digest = hashlib.sha1(" ".join(sorted(grid)).encode()).hexdigest()[:10]
        opts["out"] = str(Path("runs") / f"sweep-{digest}")
    return opts, grid


def _number(key: str, value: str, kind=float, low: float = 0.0):
    try:
        v = kind(value)
    except ValueError:
        raise ConfigError(f"sweep: {key} expects a number, got {value!r}") from None
    if v < low:
        raise ConfigError(f"sweep: {key} must be at least {low}, got {value}")
    return v


def trial_status(trial: Trial) -> str:
    """``finished`` (every evaluation logged), ``partial`` (a run directory from an earlier, unfinished
    attempt: resumed from its checkpoint, or restarted if it has none) or ``new``. A run directory of
    another config is refused, so a changed command never mixes two configs in one trial."""
    from marlow.experiment.config import HOST_ONLY, resolve
    from marlow.experiment.setup import CONFIG_NAME, build, load_run_config
    from marlow.runtime.loggers import read_metrics

    if not (trial.run_dir / CONFIG_NAME).exists():
        return "new"
    want = build(resolve(list(trial.overrides)), quiet=True).cfg  # fitted and capped, as the saved config
    saved = load_run_config(trial.run_dir)
    a, b = saved.to_dict(), want.to_dict()
    for d in (a, b):
        for host_only in HOST_ONLY:
            d.pop(host_only)
    if a != b:
        diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        raise ConfigError(
            f"sweep: {trial.run_dir} holds a run of another config (differs in {', '.join(diff)}); "
            "give the sweep another out= or remove that directory"
        )
    try:
        metrics = read_metrics(trial.run_dir)
    except Exception:  # no rows yet, or a file cut short by a kill: resume from the checkpoint
        return "partial"
    steps = max((float(m["env_steps"][-1]) for m in metrics.values() if len(m["env_steps"])), default=0)
    return "finished" if steps >= want.experiment.total_steps else "partial"


def run_trial(overrides: list[str], run_dir: str, resume: bool, host_devices: int, gpu_fraction: float):
    """One trial, in its own worker process: returns ``{"status": "finished" | "failed", ...}``."""
    if 0 < gpu_fraction < 1:  # share the GPU: JAX otherwise preallocates 75% of its memory
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 * gpu_fraction:.3f}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from marlow.devices import configure_host_devices

    configure_host_devices(host_devices)
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(path / LOG_NAME, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        try:
            from marlow.experiment.config import resolve
            from marlow.runtime.runner import train

            # progress on: stderr is train.log (not a terminal), so one line per evaluation goes there
            args = [f"resume={run_dir}"] if resume else [*overrides, f"run_dir={run_dir}"]
            args.append("progress=true")
            train(resolve(args))
            return {"status": "finished", "seconds": time.perf_counter() - t0}
        except Exception as e:  # reported as one line; the traceback goes to train.log
            import traceback

            traceback.print_exc()
            line = str(e).splitlines()[0] if str(e) else ""
            return {"status": "failed", "error": f"{type(e).__name__}: {line}" if line else type(e).__name__}
        finally:
            log.flush()


def run_sweep(args: list[str]) -> int:
    opts, grid = split_options(args)
    out = Path(opts["out"])
    cpus = _number("cpus_per_trial", opts["cpus_per_trial"], float, 0.0)
    gpus = _number("gpus_per_trial", opts["gpus_per_trial"], float, 0.0)
    if cpus <= 0:
        raise ConfigError(f"sweep: cpus_per_trial must be positive, got {opts['cpus_per_trial']}")
    if gpus > 1 and not gpus.is_integer():
        raise ConfigError(f"sweep: gpus_per_trial is a fraction below 1 or a whole number, got {gpus}")
    if opts["aggregate"] not in ("true", "false"):
        raise ConfigError(f"sweep: aggregate expects true or false, got {opts['aggregate']!r}")
    _check_same_grid(out, grid)
    trials = expand(grid, out)
    status = {t.run_dir: trial_status(t) for t in trials}
    todo = [t for t in trials if status[t.run_dir] != "finished"]
    done = len(trials) - len(todo)
    print(f"sweep {out}: {len(trials)} trials, {done} finished before, {len(todo)} to run", flush=True)
    outcome = {t.run_dir: {"status": "finished", "note": "finished before"} for t in trials if t not in todo}
    if todo:
        outcome.update(_run_on_ray(todo, status, opts, cpus, gpus))
    _write_record(out, grid, trials, outcome)
    failed = [t for t in trials if outcome[t.run_dir]["status"] != "finished"]
    print(f"sweep {out}: {len(trials) - len(failed)} of {len(trials)} trials finished", flush=True)
    if len(failed) < len(trials) and opts["aggregate"] == "true":
        from marlow.sweep.summary import write

        try:
            print(f"aggregate: {write([out], out / 'aggregate')}", flush=True)
        except ConfigError as e:  # e.g. a configuration with no finished run on some task
            print(f"sweep: no aggregate yet: {e}", flush=True)
    if failed:
        print(f"sweep: {len(failed)} failed (above); rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


def _run_on_ray(todo: list[Trial], status: dict, opts: dict, cpus: float, gpus: float) -> dict:
    import warnings

    import ray

    # Ray starts its processes by fork + exec, which is safe although JAX is loaded (the grid's check)
    warnings.filterwarnings("ignore", message="os.fork\\(\\) was called", category=RuntimeWarning)
    started_here = not ray.is_initialized()
    if started_here:
        init = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if opts["address"]:
            init["address"] = opts["address"]
        elif opts["ray_cpus"]:
            init["num_cpus"] = int(_number("ray_cpus", opts["ray_cpus"], int, 1))
        # Ray's notice about its token authentication (on by default for a local instance), printed on
        # every sweep: the setting stays Ray's, only the notice goes
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        try:
            ray.init(**init)
        except Exception as e:  # an unreachable address, a cluster of another Ray version
            where = opts["address"] or "a local instance"
            raise ConfigError(
                f"sweep: cannot start or reach Ray ({where}): {str(e).splitlines()[0]}"
            ) from None
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_calls=1, max_retries=0)(run_trial)
    devices = max(1, int(cpus))
    pending = {
        task.remote(list(t.overrides), str(t.run_dir), status[t.run_dir] == "partial", devices, gpus): t
        for t in todo
    }
    outcome, n = {}, 0
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            trial = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as e:  # the worker died (killed, out of memory) or Ray lost the task
                result = {"status": "failed", "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
            n += 1
            outcome[trial.run_dir] = result
            what = f"{result['seconds']:.0f} s" if result["status"] == "finished" else result["error"]
            print(f"[{n}/{len(todo)}] {result['status']}: {trial.label} ({what})", flush=True)
    finally:
        if started_here:
            ray.shutdown()
    return outcome


def _check_same_grid(out: Path, grid: list[str]) -> None:
    """A sweep directory holds one grid: rerunning the same command resumes it; another grid there would
    rewrite its ``sweep.json`` and aggregate, so it is refused."""
    path = out / SWEEP_FILE
    if not path.is_file():
        return
    try:
        before = json.loads(path.read_text())["grid"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"sweep: {path} is unreadable; give another out= or remove it") from None
    if sorted(before) != sorted(grid):
        raise ConfigError(
            f"sweep: {out} holds another sweep ({' '.join(before)}); rerun that command to resume it, or "
            "give this one another out="
        )


def _write_record(out: Path, grid: list[str], trials: list[Trial], outcome: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "grid": grid,
        "trials": [
            {
                "run_dir": str(t.run_dir),
                "swept": dict(t.swept),
                "overrides": list(t.overrides),
                **outcome[t.run_dir],
            }
            for t in trials
        ],
    }
    (out / SWEEP_FILE).write_text(json.dumps(record, indent=1))
