"""``marlow aggregate``: the statistics of Agarwal et al. 2021 (NeurIPS, "Deep RL at the edge of the
statistical precipice") over a sweep's runs, computed with Google's ``rliable``.

Runs are grouped into *configurations*: the algorithm and the swept values other than the seeds
(``masac lr_actor=0.01``); a configuration's seeds may come from several trials (``seeds=0-4,5-9``). For
every seed of every run, with ``y`` the evaluation metric (the greedy team return by default):

- final score: the mean of the last ``last`` (2) evaluations of trained policies (the step-0 evaluation
  of the untrained policy never counts; a run with fewer trained evaluations than ``last`` is scored on
  those it has, and the report says so); area under the curve (AUC): the mean of ``y`` over the run's env
  steps (trapezoids, the step-0 evaluation included);
- normalised scores for the aggregates across tasks: per task, 0 = the lowest and 1 = the highest
  evaluation any run of the aggregate logged there (so 1 is the best seen, not an optimum);
- IQM, mean, median and optimality gap (gamma = 1) of the normalised final scores, with 95% stratified
  bootstrap confidence intervals (``reps`` resamples of the seeds within each task);
- the probability of improvement for each pair of configurations (Mann-Whitney, averaged over tasks)
  with its bootstrap interval; score-distribution performance profiles with their intervals;
- learning curves: the IQM over seeds at every evaluation, with its bootstrap interval, per task.

Written to ``<out>/``: ``aggregate.md`` (tables and plots), ``aggregate.json`` (every number),
``marl_eval.json`` (the runs' marl-eval files merged, the configuration as the algorithm name) and the PNGs.
The bootstrap needs as many seeds per task within a configuration; more are cut to the fewest, and the
report says so.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from marlow.errors import ConfigError

TEAM_RETURN = "eval/team_return"
# arch 7 (rliable's bootstrap) warns that the RandomState rliable passes is deprecated
warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)


@dataclass
class Config:
    """One configuration's runs: task -> seed -> (env steps, y)."""

    label: str
    curves: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    run_dirs: list[Path] = field(default_factory=list)


def _label(algo: str, swept: dict) -> str:
    rest = [f"{k}={v}" for k, v in swept.items() if k not in ("algo", "task", "seeds")]
    return " ".join([algo, *rest])


def collect(paths: list[Path], y: str = TEAM_RETURN) -> dict[str, Config]:
    """Configurations from sweep directories (their ``sweep.json``) and single run directories."""
    from marlow.experiment.setup import load_run_config
    from marlow.runtime.loggers import read_metrics
    from marlow.sweep.grid import SWEEP_FILE

    runs: list[tuple[Path, dict]] = []
    for p in paths:
        if (p / SWEEP_FILE).is_file():
            record = json.loads((p / SWEEP_FILE).read_text())
            runs += [(Path(t["run_dir"]), t["swept"]) for t in record["trials"] if t["status"] == "finished"]
        elif p.is_dir():
            runs.append((p, {}))
        else:
            raise ConfigError(f"aggregate: {p} is neither a sweep nor a run directory")
    if not runs:
        raise ConfigError("aggregate: no finished runs in " + ", ".join(map(str, paths)))
    configs: dict[str, Config] = {}
    for run_dir, swept in runs:
        exp = load_run_config(run_dir).experiment
        label = _label(exp.algo, swept)
        cfg = configs.setdefault(label, Config(label))
        cfg.run_dirs.append(run_dir)
        for seed, cols in read_metrics(run_dir).items():
            if y not in cols:
                raise ConfigError(f"aggregate: {run_dir} has no column {y!r}")
            ok = np.isfinite(cols[y])
            cfg.curves.setdefault(exp.task, {})[seed] = (cols["env_steps"][ok], cols[y][ok])
    return configs


def scores(configs: dict[str, Config], last: int = 2) -> tuple[list[str], dict, dict, dict, list[str]]:
    """(tasks, final, auc, normalised final, notes): ``final[label]`` is ``[seeds, tasks]``."""
    tasks = sorted({t for c in configs.values() for t in c.curves})
    notes = []
    for c in configs.values():
        missing = [t for t in tasks if t not in c.curves]
        if missing:
            raise ConfigError(f"aggregate: {c.label} has no runs on {', '.join(missing)}")
    lo = {t: min(float(y.min()) for c in configs.values() for _, y in c.curves[t].values()) for t in tasks}
    hi = {t: max(float(y.max()) for c in configs.values() for _, y in c.curves[t].values()) for t in tasks}
    low = np.asarray([lo[t] for t in tasks])
    span = np.asarray([hi[t] - lo[t] for t in tasks])
    final, auc, norm = {}, {}, {}
    for label, c in configs.items():
        n = min(len(c.curves[t]) for t in tasks)
        if any(len(c.curves[t]) != n for t in tasks):
            notes.append(f"{label}: seeds cut to {n} per task (the fewest on any task)")
        f = np.zeros((n, len(tasks)))
        a = np.zeros((n, len(tasks)))
        for j, t in enumerate(tasks):
            short = 0
            for i, seed in enumerate(sorted(c.curves[t])[:n]):
                x, y = c.curves[t][seed]
                trained = y[x > 0]
                if len(trained) == 0:
                    raise ConfigError(f"aggregate: {c.label} seed {seed} on {t}: no evaluation after step 0")
                short = max(short, last - len(trained))
                f[i, j] = np.mean(trained[-last:])
                a[i, j] = np.trapezoid(y, x) / (x[-1] - x[0]) if len(x) > 1 else y[-1]
            if short:
                notes.append(
                    f"{label} on {t}: fewer trained evaluations than last={last} (as few as {last - short}); "
                    "its final score is their mean"
                )
        final[label], auc[label] = f, a
        norm[label] = (f - low) / np.where(span > 0, span, 1.0)
    return tasks, final, auc, norm, notes


def aggregates(norm: dict, reps: int, seed: int = 0) -> dict:
    """IQM, mean, median and optimality gap with 95% stratified bootstrap intervals (rliable)."""
    from rliable import library as rly
    from rliable import metrics

    def func(x):
        return np.array(
            [
                metrics.aggregate_iqm(x),
                metrics.aggregate_mean(x),
                metrics.aggregate_median(x),
                metrics.aggregate_optimality_gap(x, 1.0),
            ]
        )

    point, ci = rly.get_interval_estimates(norm, func, reps=reps, random_state=np.random.RandomState(seed))
    names = ("iqm", "mean", "median", "optimality_gap")
    return {
        label: {m: [float(point[label][i]), *map(float, ci[label][:, i])] for i, m in enumerate(names)}
        for label in norm
    }


def improvement(final: dict, reps: int, seed: int = 0) -> dict:
    """P(X > Y) for each pair of configurations, X listed before Y (P(Y > X) = 1 - P(X > Y)), on the raw
    final scores task by task, with its interval."""
    from rliable import library as rly
    from rliable import metrics

    labels = list(final)
    pairs = {f"{x} > {y}": (final[x], final[y]) for i, x in enumerate(labels) for y in labels[i + 1 :]}
    if not pairs:
        return {}
    point, ci = rly.get_interval_estimates(
        pairs, metrics.probability_of_improvement, reps=reps, random_state=np.random.RandomState(seed)
    )
    return {k: [float(point[k]), *map(float, np.ravel(ci[k]))] for k in pairs}


def profiles(norm: dict, reps: int) -> tuple[np.ndarray, dict, dict]:
    from rliable import library as rly

    taus = np.linspace(0.0, 1.0, 51)
    prof, prof_ci = rly.create_performance_profile(norm, taus, reps=reps)
    return taus, prof, prof_ci


def curve_iqm(c: Config, task: str, reps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(env steps, IQM over seeds, [2, evals] interval) at the evaluations every seed logged."""
    from rliable import library as rly
    from rliable import metrics

    runs = list(c.curves[task].values())
    n = min(len(y) for _, y in runs)
    x = runs[0][0][:n]
    ys = np.stack([y[:n] for _, y in runs])[:, None, :]  # [seeds, 1 task, evals]

    def func(s):
        return np.array([metrics.aggregate_iqm(s[..., k]) for k in range(n)])

    point, ci = rly.get_interval_estimates(
        {"c": ys}, func, reps=reps, random_state=np.random.RandomState(seed)
    )
    return x, point["c"], ci["c"]


def merged_marl_eval(configs: dict[str, Config]) -> dict:
    """The runs' ``marl_eval.json`` files in one, each configuration's label as its algorithm name."""
    from marlow.runtime.loggers import JSON_NAME

    out: dict = defaultdict(lambda: defaultdict(dict))
    for label, c in configs.items():
        for run_dir in c.run_dirs:
            data = json.loads((run_dir / JSON_NAME).read_text())
            for env, tasks in data.items():
                for task, algos in tasks.items():
                    for runs in algos.values():
                        out[env][task].setdefault(label, {}).update(runs)
    return json.loads(json.dumps(out))
