"""HAPPO, MAPPO and IPPO on the new task families at a small budget: mamujoco/halfcheetah_2x3 and smax/3m,
3 vmapped seeds each, at the task families' published settings (conf/task/mamujoco.yaml with
conf/task/mamujoco/halfcheetah_2x3.yaml: HARL's tuned HalfCheetah values; conf/task/smax.yaml: JaxMARL's
SMAX settings).

    .venv/bin/python -m benchmarks.onpolicy.learning [--tasks mamujoco/halfcheetah_2x3,smax/3m]
        [--algos happo,mappo,ippo] [--seeds 3] [--steps-halfcheetah N] [--steps-smax N] [--ray-cpus N]

Writes benchmarks/onpolicy/learning.md and learning_<task>.png. Each task's algorithms are one
``marlow sweep`` (Ray, a fresh process per trial, side by side on the machine's cores; finished trials
are skipped and interrupted ones resumed on a rerun), under benchmarks/onpolicy/runs/ (git-ignored).
The budgets are a small fraction of the papers' (HARL: 10M steps on MA-MuJoCo; the Teammate Lookahead
authors' code 5M; JaxMARL's SMAX baselines 10M): these runs show that each learner learns on each task
on 2 CPU cores, not the papers' final numbers. SMAX results are not comparable with
SMAC's (docs/tasks/smax.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
from benchmarks.harness import grid_sweep, per_seed, table  # noqa: E402
from marlow.runtime.report import aligned_seeds, load_run, plot_grid  # noqa: E402

RUNS = HERE / "runs"
# task -> (env steps per seed, evaluation interval, extra overrides, reported columns)
TASKS = {
    "mamujoco/halfcheetah_2x3": (200_000, 20_000, ["eval_episodes=2"], ["eval/team_return", "train/return"]),
    "smax/3m": (1_000_000, 81_920, ["eval_episodes=32"], ["eval/team_return", "eval/win_rate"]),
}


def summarise(run_dir: Path, col: str, last: int = 2) -> tuple[float, float]:
    """Mean over seeds of the mean of the last ``last`` evaluations, and its standard error."""
    run = load_run(run_dir)
    _, v = aligned_seeds(run, y=col)
    finals = np.nanmean(v[:, -last:], axis=1)
    return float(finals.mean()), float(finals.std(ddof=1) / np.sqrt(len(finals))) if len(finals) > 1 else 0.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--algos", default="happo,mappo,ippo")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps-halfcheetah", type=int, default=None)
    p.add_argument("--steps-smax", type=int, default=None)
    p.add_argument("--ray-cpus", default="", help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--out", default=str(HERE / "learning.md"))
    ns = p.parse_args()
    algos = ns.algos.split(",")
    lines = [
        "# HAPPO, MAPPO and IPPO on MA-MuJoCo and SMAX at a small budget",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on a 2-core CPU machine by "
        "`python -m benchmarks.onpolicy.learning`; "
        f"{ns.seeds} vmapped seeds per algorithm; the task families' published settings "
        "(conf/task/mamujoco*.yaml: HARL's tuned HalfCheetah configuration; conf/task/smax.yaml: JaxMARL's "
        "SMAX settings). Final = mean of the last two greedy evaluations per seed, then mean +- standard "
        "error over seeds; train/return is the mean return of the stochastic policy's training episodes "
        "that ended in the chunk (the greedy policy acts with the Gaussian's mean). The wall time is the "
        "runner's logged training time of all seeds together (without compilation). SMAX is a stand-in for "
        "SMAC: its numbers are not comparable with SMAC's. MA-MuJoCo runs with its default simulator "
        "(`task.simulator=rollout`: MuJoCo inside the jitted loop).",
        "",
    ]
    for task in ns.tasks.split(","):
        steps, every, extra, cols = TASKS[task]
        if task.startswith("mamujoco") and ns.steps_halfcheetah:
            steps = ns.steps_halfcheetah
        if task.startswith("smax") and ns.steps_smax:
            steps = ns.steps_smax
        grid = [f"algo={','.join(algos)}", f"task={task}", f"seeds=0-{ns.seeds - 1}"]
        overrides = [f"total_steps={steps}", f"eval_every={every}", "checkpoint_every=1000", *extra]
        trials = grid_sweep(RUNS / task.replace("/", "_"), [*grid, *overrides], ns.ray_cpus)
        trial_dirs = {t["swept"]["algo"]: Path(t["run_dir"]) for t in trials}
        runs, rows = {}, []
        for algo in algos:
            run_dir = runs[algo] = trial_dirs[algo]
            wall = float(per_seed(run_dir, "wall_time")[0, -1])
            cells = [f"{m:.3g} +- {s:.2g}" for m, s in (summarise(run_dir, c) for c in cols)]
            first, _ = summarise_first(run_dir, cols[0])
            rows.append([algo, f"{steps:,}", f"{first:.3g}", *cells, f"{wall:.0f}"])
        png = HERE / f"learning_{task.replace('/', '_')}.png"
        plot_grid(list(runs.values()), png, labels=list(runs), title=f"{task}, {ns.seeds} seeds")
        lines += [
            f"## {task}",
            "",
            table(
                [
                    "algo",
                    "env steps per seed",
                    "first eval",
                    *[f"final {c}" for c in cols],
                    "training wall s",
                ],
                rows,
            ),
            "",
            f"![{task}]({png.name})",
            "",
        ]
        if "eval/win_rate" in cols:
            png_w = HERE / f"learning_{task.replace('/', '_')}_win_rate.png"
            plot_grid(
                list(runs.values()), png_w, y="eval/win_rate", labels=list(runs), title=f"{task} win rate"
            )
            lines += [f"![{task} win rate]({png_w.name})", ""]
        Path(ns.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def summarise_first(run_dir: Path, col: str) -> tuple[float, float]:
    run = load_run(run_dir)
    _, v = aligned_seeds(run, y=col)
    return float(v[:, 0].mean()), 0.0


if __name__ == "__main__":
    main()
