"""The aggregate report of :mod:`marlow.sweep.aggregate`: tables (markdown and JSON) and matplotlib plots
(interval estimates, probability of improvement, performance profiles, learning curves)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from marlow.sweep import aggregate as agg

METRICS = (("iqm", "IQM"), ("mean", "Mean"), ("median", "Median"), ("optimality_gap", "Optimality gap"))


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def _figure(width: float, height: float, cols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, cols, squeeze=False)[0]


def plot_intervals(stats: dict, path: Path) -> None:
    labels = list(stats)
    fig, axes = _figure(4.0 * len(METRICS), 0.6 * len(labels) + 1.6, len(METRICS))
    for ax, (key, title) in zip(axes, METRICS, strict=True):
        for i, label in enumerate(labels):
            point, low, high = stats[label][key]
            ax.barh(i, high - low, left=low, height=0.6, color=f"C{i}", alpha=0.7)
            ax.plot([point, point], [i - 0.3, i + 0.3], color="k")
        ax.set_yticks(range(len(labels)), labels if ax is axes[0] else [""] * len(labels))
        ax.set_title(title)
        ax.set_xlabel("normalised score")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_improvement(poi: dict, path: Path) -> None:
    keys = list(poi)
    fig, (ax,) = _figure(6.0, 0.45 * len(keys) + 1.4)
    for i, k in enumerate(keys):
        point, low, high = poi[k]
        ax.barh(i, high - low, left=low, height=0.6, color="C0", alpha=0.6)
        ax.plot([point, point], [i - 0.3, i + 0.3], color="k")
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    ax.set_yticks(range(len(keys)), [k.replace(" > ", " over ") for k in keys])
    ax.set_xlim(0, 1)
    ax.set_xlabel("P(X > Y)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_profiles(taus: np.ndarray, prof: dict, prof_ci: dict, path: Path) -> None:
    fig, (ax,) = _figure(6.0, 4.0)
    for i, (label, p) in enumerate(prof.items()):
        ax.plot(taus, p, color=f"C{i}", label=label)
        ax.fill_between(taus, prof_ci[label][0], prof_ci[label][1], color=f"C{i}", alpha=0.2)
    ax.set_xlabel("normalised score tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_curves(configs: dict, tasks: list[str], y: str, reps: int, path: Path) -> None:
    fig, axes = _figure(5.0 * len(tasks), 4.0, len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        for i, (label, c) in enumerate(configs.items()):
            x, point, ci = agg.curve_iqm(c, task, reps)
            ax.plot(x, point, color=f"C{i}", label=label)
            ax.fill_between(x, ci[0], ci[1], color=f"C{i}", alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.set_ylabel(f"{y} (IQM over seeds)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write(paths: list[Path], out: Path, y: str = agg.TEAM_RETURN, last: int = 2, reps: int = 2000) -> Path:
    """Aggregate the runs under ``paths`` into ``out`` (see :mod:`marlow.sweep.aggregate`); returns the
    markdown report's path."""
    configs = agg.collect(paths, y)
    tasks, final, auc, norm, notes = agg.scores(configs, last)
    stats = agg.aggregates(norm, reps)
    poi = agg.improvement(final, reps)
    taus, prof, prof_ci = agg.profiles(norm, reps)
    out.mkdir(parents=True, exist_ok=True)
    plot_intervals(stats, out / "intervals.png")
    plot_profiles(taus, prof, prof_ci, out / "profiles.png")
    plot_curves(configs, tasks, y, reps, out / "curves.png")
    if poi:
        plot_improvement(poi, out / "improvement.png")
    (out / "marl_eval.json").write_text(json.dumps(agg.merged_marl_eval(configs)))
    numbers = {
        "y": y,
        "tasks": tasks,
        "final": {k: v.tolist() for k, v in final.items()},
        "auc": {k: v.tolist() for k, v in auc.items()},
        "normalised_final": {k: v.tolist() for k, v in norm.items()},
        "aggregates": stats,
        "probability_of_improvement": poi,
        "notes": notes,
    }
    (out / "aggregate.json").write_text(json.dumps(numbers, indent=1))
    rows = []
    for label in configs:
        for j, t in enumerate(tasks):
            f, a = final[label][:, j], auc[label][:, j]
            rows.append(
                [label, t, str(len(f)), f"{f.mean():.3f} ({_se(f):.3f})", f"{a.mean():.3f} ({_se(a):.3f})"]
            )
    agg_rows = [
        [label, *[f"{s[k][0]:.3f} [{s[k][1]:.3f}, {s[k][2]:.3f}]" for k, _ in METRICS]]
        for label, s in stats.items()
    ]
    lines = [
        "# Aggregate",
        "",
        f"{sum(len(c.run_dirs) for c in configs.values())} runs, metric `{y}`. Final score = mean of the "
        f"last {last} evaluations of trained policies per seed (never the step-0 evaluation); AUC = mean "
        "over the run's env steps; mean (standard error) over seeds.",
        "",
        *[f"**Warning:** {n}." for n in notes],
        *([""] if notes else []),
        _table(["configuration", "task", "seeds", "final", "AUC"], rows),
        "",
        "## Across tasks (normalised final scores, 95% stratified bootstrap intervals)",
        "",
        f"Per task, 0 = the lowest and 1 = the highest evaluation any run here logged; {reps} bootstrap "
        "resamples (rliable). Optimality gap: the mean shortfall below 1 (lower is better).",
        "",
        _table(["configuration", *[t for _, t in METRICS]], agg_rows),
        "",
        "![interval estimates](intervals.png)",
        "",
        "![performance profiles](profiles.png)",
        "",
        "![learning curves](curves.png)",
        "",
    ]
    if poi:
        lines += [
            "## Probability of improvement (final scores, per task then averaged)",
            "",
            _table(
                ["X > Y", "P", "95% interval"],
                [[k, f"{v[0]:.3f}", f"[{v[1]:.3f}, {v[2]:.3f}]"] for k, v in poi.items()],
            ),
            "",
            "![probability of improvement](improvement.png)",
            "",
        ]
    (out / "aggregate.md").write_text("\n".join(lines))
    return out / "aggregate.md"
