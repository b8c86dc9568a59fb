"""Learning curves and summary tables from run directories written by :class:`RunLogger`.

Curves: one per run dir, the mean over seeds with a 95% confidence band (Student-t interval on the
seed mean; a single seed is drawn as a plain line, two seeds with their min-max range, since a 2-seed
t-interval is 12.7 standard errors wide and would swamp the plot).

Seed alignment: seeds are put on a common x grid, the sorted union of all seeds' x values restricted
to the range every seed covers (``[max of the seeds' first x, min of their last x]``); each seed is
linearly interpolated onto that grid (``np.interp``), never extrapolated. Seeds trained together by the
runner share their evaluation points, so for them the grid is exactly those points and nothing is
interpolated.

Labels: from ``config.yaml`` in the run dir (key ``algo``; ``task`` feeds the table), else from
``marl_eval.json``, else the dir name. Auto labels that collide get the task, then the dir name,
appended.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from marlow.errors import ConfigError, did_you_mean
from marlow.runtime.loggers import CSV_NAME, JSON_NAME, read_metrics

__all__ = [
    "MissingMetricError",
    "RunData",
    "aligned_seeds",
    "load_run",
    "final_per_seed",
    "mean_ci",
    "plot_grid",
    "plot_runs",
    "summary_table",
    "write_report",
]

CONFIG_NAME = "config.yaml"
CURVE_NAME = "learning_curve.png"
REPORT_NAME = "report.md"

_AXIS_LABELS = {
    "env_steps": "environment steps",
    "agent_interactions": "normalised agent interactions",
    "wall_time": "wall time (s)",
    "episodes": "episodes",
    "eval/team_return": "team return (evaluation)",
    "eval/win_rate": "win rate (evaluation)",
}


class MissingMetricError(ConfigError, ValueError):
    """A run dir lacks the metric column a plot/table asks for (a user-facing :class:`ConfigError`)."""


@dataclass
class RunData:
    run_dir: Path
    label: str
    algo: str | None
    task: str | None
    metrics: dict[int, dict[str, np.ndarray]]

    @property
    def seeds(self) -> list[int]:
        return sorted(self.metrics)


def _name(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("name")
        return None if value is None else str(value)
    return str(value)


def _run_meta(run_dir: Path) -> tuple[str | None, str | None]:
    """(algo, task) of a run dir: ``config.yaml`` first, then ``marl_eval.json``."""
    algo = task = None
    cfg_path = run_dir / CONFIG_NAME
    if cfg_path.is_file():
        import yaml

        try:
            cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            cfg = None
        if isinstance(cfg, dict):
            algo, task = _name(cfg.get("algo")), _name(cfg.get("task"))
    if algo is None or task is None:
        js_path = run_dir / JSON_NAME
        try:
            data = json.loads(js_path.read_text(encoding="utf-8")) if js_path.is_file() else {}
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict) and len(data) == 1:
            env, tasks = next(iter(data.items()))
            if isinstance(tasks, dict) and len(tasks) == 1:
                tname, algos = next(iter(tasks.items()))
                if task is None:
                    task = tname if tname == env else f"{env}/{tname}"
                if algo is None and isinstance(algos, dict) and len(algos) == 1:
                    algo = next(iter(algos))
    return algo, task


def load_run(run_dir: str | Path, label: str | None = None) -> RunData:
    """Metrics and metadata of one run dir (raises :class:`~marlow.runtime.loggers.RunDirError`)."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    algo, task = _run_meta(run_dir)
    return RunData(run_dir, label or algo or run_dir.name, algo, task, metrics)


def _load_runs(run_dirs: Sequence[str | Path | RunData], labels: Sequence[str] | None) -> list[RunData]:
    """The runs of ``run_dirs``: paths are loaded, :class:`RunData` (e.g. with derived columns) is taken as
    it is; ``labels`` replace the runs' own labels."""
    if isinstance(run_dirs, str | Path | RunData):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise ValueError("no run directories given")
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels for {len(run_dirs)} run dirs")
    runs = []
    for i, d in enumerate(run_dirs):
        label = None if labels is None else labels[i]
        if isinstance(d, RunData):
            runs.append(replace(d, label=label or d.label))  # a copy: the labels below may change
        else:
            runs.append(load_run(d, label))
    if labels is None:
        for attr in ("task", "dir"):
            counts: dict[str, int] = {}
            for r in runs:
                counts[r.label] = counts.get(r.label, 0) + 1
            for r in runs:
                if counts[r.label] > 1:
                    extra = r.task if attr == "task" else r.run_dir.name
                    if extra and extra not in r.label:
                        r.label = f"{r.label} ({extra})"
    return runs


def _column(run: RunData, seed: int, col: str) -> np.ndarray:
    cols = run.metrics[seed]
    if col not in cols or np.all(np.isnan(cols[col])):
        names = [k for k, v in cols.items() if not np.all(np.isnan(v))]
        raise MissingMetricError(
            f"run {run.label!r} ({run.run_dir}) has no {col!r} column (seed {seed}){did_you_mean(col, names)}"
            f"; its columns: {', '.join(names)}"
        )
    return cols[col]


def _seed_xy(run: RunData, x: str, y: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed (sorted by seed): valid (x, y) points sorted by x; seeds with no valid point are left out."""
    out = []
    for seed in run.seeds:
        xs, ys = _column(run, seed, x), _column(run, seed, y)
        ok = ~(np.isnan(xs) | np.isnan(ys))
        xs, ys = xs[ok], ys[ok]
        order = np.argsort(xs, kind="stable")
        if xs.size:
            out.append((xs[order], ys[order]))
    if not out:
        raise MissingMetricError(f"run {run.label!r} ({run.run_dir}) has no point with both {x!r} and {y!r}")
    return out


def aligned_seeds(
    run: RunData, x: str = "env_steps", y: str = "eval/team_return"
) -> tuple[np.ndarray, np.ndarray]:
    """``(grid, values)``: the common x grid and a ``[n_seeds, len(grid)]`` array (see module doc)."""
    per_seed = _seed_xy(run, x, y)
    lo = max(float(xs[0]) for xs, _ in per_seed)
    hi = min(float(xs[-1]) for xs, _ in per_seed)
    if lo > hi:
        raise ValueError(f"run {run.label!r} ({run.run_dir}): the seeds share no common range of {x!r}")
    union = np.unique(np.concatenate([xs for xs, _ in per_seed]))
    grid = union[(union >= lo) & (union <= hi)]
    values = np.stack([np.interp(grid, xs, ys) for xs, ys in per_seed])
    return grid, values


def _t975(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def mean_ci(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Seed mean and half-width of its 95% Student-t interval (None for a single seed)."""
    n = values.shape[0]
    mean = values.mean(axis=0)
    if n < 2:
        return mean, None
    sem = values.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, _t975(n - 1) * sem


def _new_figure(ncols: int) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on an Agg canvas: no pyplot global state, no display needed.
    fig = Figure(figsize=(6.0 * ncols, 4.5))
    FigureCanvasAgg(fig)
    return fig


def plot_grid(
    run_dirs: Sequence[str | Path | RunData],
    out_png: str | Path,
    xs: Sequence[str] = ("env_steps",),
    y: str = "eval/team_return",
    labels: Sequence[str] | None = None,
    title: str | None = None,
    reference: dict[str, float] | None = None,
) -> Path:
    """One subplot per x axis in ``xs`` (side by side), each with the same curves: one per run dir (or
    :class:`RunData`, e.g. with a derived column), the seed mean with a 95% confidence band.
    ``reference`` draws labelled horizontal lines (e.g. a random policy's return). Returns the PNG
    path."""
    if isinstance(xs, str):
        xs = (xs,)
    if not xs:
        raise ValueError("plot_grid needs at least one x column")
    runs = _load_runs(run_dirs, labels)
    # Compute everything first so that a missing column fails before anything is drawn.
    curves = [[aligned_seeds(run, x, y) for run in runs] for x in xs]

    fig = _new_figure(len(xs))
    axes = fig.subplots(1, len(xs), squeeze=False)[0]
    for ax, x, per_run in zip(axes, xs, curves, strict=True):
        for i, (run, (grid, values)) in enumerate(zip(runs, per_run, strict=True)):
            color = f"C{i % 10}"
            mean, half = mean_ci(values)
            n = values.shape[0]
            label = f"{run.label} ({n} seed{'s' if n != 1 else ''}{', band: min-max' if n == 2 else ''})"
            marker = "o" if grid.size == 1 else None
            ax.plot(grid, mean, color=color, label=label, marker=marker)
            if n == 2:  # a 2-seed t-interval is 12.7 standard errors wide: show the two seeds' range
                ax.fill_between(grid, values.min(0), values.max(0), color=color, alpha=0.2, linewidth=0)
            elif half is not None:
                ax.fill_between(grid, mean - half, mean + half, color=color, alpha=0.2, linewidth=0)
        for j, (name, value) in enumerate((reference or {}).items()):
            ax.axhline(value, color="0.4", linestyle=("--", ":", "-.")[j % 3], linewidth=1, label=name)
        ax.set_xlabel(_AXIS_LABELS.get(x, x))
        ax.set_ylabel(_AXIS_LABELS.get(y, y))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def plot_runs(
    run_dirs: Sequence[str | Path | RunData],
    out_png: str | Path,
    x: str = "env_steps",
    y: str = "eval/team_return",
    labels: Sequence[str] | None = None,
    title: str | None = None,
    reference: dict[str, float] | None = None,
) -> Path:
    """``y`` against ``x``, one curve per run dir (seed mean, 95% Student-t band), plus optional
    ``reference`` lines. Returns the PNG path.

    Raises :class:`MissingMetricError` (a ValueError) naming the run when a run lacks ``x`` or ``y``
    (e.g. ``x="agent_interactions"`` for a run that does not count them).
    """
    return plot_grid(run_dirs, out_png, xs=(x,), y=y, labels=labels, title=title, reference=reference)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def final_per_seed(run: RunData, y: str, last_frac: float) -> np.ndarray:
    """Per seed: the mean of ``y`` over its last ``ceil(last_frac * n)`` (at least 1) eval points."""
    finals = []
    for _xs, ys in _seed_xy(run, "env_steps", y):
        k = max(1, math.ceil(last_frac * len(ys) - 1e-9))
        finals.append(float(ys[-k:].mean()))
    return np.asarray(finals)


def summary_table(
    run_dirs: Sequence[str | Path | RunData],
    y: str = "eval/team_return",
    last_frac: float = 0.1,
    labels: Sequence[str] | None = None,
) -> str:
    """A markdown table, one row per run dir: label, task, number of seeds, final ``y`` as mean ± std
    over seeds, and best ``y``.

    * final (per seed) = mean of ``y`` over the seed's last ``ceil(last_frac * n_eval_points)`` (at
      least one) evaluation points; the table shows the mean and the sample std (ddof=1; 0 for a single
      seed) of these over seeds.
    * best = the maximum over evaluation points of the seed-mean curve (seeds aligned as in the plots).
    """
    if not 0 < last_frac <= 1:
        raise ValueError(f"last_frac must be in (0, 1], got {last_frac}")
    runs = _load_runs(run_dirs, labels)
    pct = f"{100 * last_frac:g}%"
    lines = [
        f"| run | task | seeds | final {_md(y)} (mean ± std, last {pct} of evals) | best {_md(y)} |",
        "|---|---|---:|---:|---:|",
    ]
    for run in runs:
        finals = final_per_seed(run, y, last_frac)
        spread = f" ± {float(finals.std(ddof=1)):.2f}" if finals.size > 1 else " (one seed)"
        _, values = aligned_seeds(run, "env_steps", y)
        best = float(values.mean(axis=0).max())
        lines.append(
            f"| {_md(run.label)} | {_md(run.task or '-')} | {finals.size} | "
            f"{finals.mean():.2f}{spread} | {best:.2f} |"
        )
    return "\n".join(lines) + "\n"


MAIN_METRICS = ("eval/win_rate",)
"""Evaluation metrics that come before the team return in a report when every run has them: a task's
own measure of success (SMAX's win rate, the metric its papers report)."""


def main_metrics(runs: list[RunData]) -> list[str]:
    """The report's metrics, the curve's first: :data:`MAIN_METRICS` that every run logged, then the
    greedy team return."""

    def logged(run: RunData, col: str) -> bool:
        return all(col in m and not np.all(np.isnan(m[col])) for m in run.metrics.values())

    return [m for m in MAIN_METRICS if all(logged(r, m) for r in runs)] + ["eval/team_return"]


def band_text(runs: list[RunData]) -> str:
    """What the curves' bands are, for the seed counts of ``runs`` (:func:`plot_grid`)."""
    counts = {len(r.seeds) for r in runs}
    parts = []
    if 1 in counts:
        parts.append("no band for one seed")
    if 2 in counts:
        parts.append("band = the range of two seeds")
    if any(n > 2 for n in counts):
        parts.append("band = 95% Student-t confidence interval of the mean")
    return "; ".join(parts)


def write_report(run_dir_or_dirs: str | Path | Sequence[str | Path], out_dir: str | Path) -> Path:
    """Write ``learning_curve.png`` and ``report.md`` (summary table + the image) into ``out_dir``;
    returns the path of ``report.md``."""
    dirs = [run_dir_or_dirs] if isinstance(run_dir_or_dirs, str | Path) else list(run_dir_or_dirs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = _load_runs(dirs, None)
    labels = [r.label for r in runs]
    if len(runs) == 1 and runs[0].task:
        title = f"{runs[0].label} on {runs[0].task}"
    else:
        tasks = sorted({r.task for r in runs if r.task})
        title = "Learning curves" + (f": {', '.join(tasks)}" if tasks else "")
    metrics = main_metrics(runs)
    png = plot_runs(runs, out / CURVE_NAME, y=metrics[0], labels=labels, title=title)
    tables = "\n".join(summary_table(runs, y=y, labels=labels) for y in metrics)
    runs_md = "\n".join(f"- `{r.label}`: `{r.run_dir}`" for r in runs)
    text = (
        f"# {title}\n\n"
        f"{tables}\n"
        f"Runs:\n\n{runs_md}\n\n"
        f"Curve: `{metrics[0]}`, mean over seeds, {band_text(runs)} (metrics from `{CSV_NAME}`).\n\n"
        f"![learning curve]({png.name})\n"
    )
    path = out / REPORT_NAME
    path.write_text(text, encoding="utf-8")
    return path
