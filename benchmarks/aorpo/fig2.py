"""AORPO paper Fig. 2 at a scaled budget: AORPO vs MASAC on mpe/simple_spread and
mpe/simple_speaker_listener (return against env steps) and AORPO vs MASAC with opponent models on
mpe/simple_schedule (return against normalised agent interactions).

    .venv/bin/python benchmarks/aorpo/fig2.py [--steps N] [--seeds 5] [--tasks spread,...] [--reuse]

Writes benchmarks/aorpo/fig2.md and fig2_<task>.png (runs under benchmarks/aorpo/runs, git-ignored).

Scaling. The paper's budgets (spread 100 epochs, speaker-listener 40, scheduling 50, an epoch = 300
episodes x 25 steps) take hours per seed on this 2-core machine (profile_s1.md), so every run gets
``--steps`` env steps (default per task, TASKS: 50k spread, 30k speaker-listener and scheduling) and
AORPO's epoch-based schedules shrink by the same factor: epoch_steps of the task's Table 1 column
(conf/task/mpe/*.yaml) times steps / paper budget, so the rollout length k climbs
over the same fraction of the run as in the paper (the model lr halving interval likewise). The model
budgets are those of the demo (marlow.experiment.demo.AORPO_DEMO: a 3 x 200 ensemble of 7, at most 500
gradient steps per retraining, model warm-up and retraining every 5,000 steps, 512 rollout starts,
G = 10). Both algorithms start
learning after 5,000 random steps (``warmup_steps``; the default 25,600 would be half the budget).

The baseline for simple_schedule is "MASAC with opponent models" as the paper's Appendix G.2 asks: AORPO
with no model data (real_ratio = 1, no model ever trained, so one update per round on real data, as
MASAC), i.e. MASAC whose policies are conditioned on fitted opponent models' predictions (Eq. 4).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "rommeo"))
from sweep import mean_ci, run_sweep, table  # noqa: E402

from marlow.experiment.config import resolve  # noqa: E402
from marlow.experiment.demo import AORPO_DEMO  # noqa: E402
from marlow.experiment.report import aligned_seeds, load_run, plot_grid  # noqa: E402

RUNS = HERE / "runs"
# task -> (the paper's budget in env steps, x axis of its Fig. 2 panel, our budget: 1/15, 1/10, 1/12.5 of it)
TASKS = {
    "mpe/simple_spread": (100 * 300 * 25, "env_steps", 50_000),
    "mpe/simple_speaker_listener": (40 * 300 * 25, "env_steps", 30_000),
    "mpe/simple_schedule": (50 * 300 * 25, "agent_interactions", 30_000),
}
COMMON = ["warmup_steps=5000", "eval_every=2500"]
# AORPO without model data (see above): MASAC with opponent models
MASAC_OM = ["real_ratio=1.0", "model_warmup_steps=1000000000", "updates_per_step=1"]
Y = "eval/team_return"


def aorpo_overrides(task: str, steps: int) -> list[str]:
    budget = TASKS[task][0]
    paper = resolve(["algo=aorpo", f"task={task}"]).algo
    f = steps / budget
    scaled = {
        **AORPO_DEMO,
        "epoch_steps": str(max(1, round(paper.epoch_steps * f))),
        "model_lr_halve_every": str(max(1, round(paper.model_lr_halve_every * f))),
    }
    return [f"{k}={v}" for k, v in scaled.items()]


def reach(run_dir: Path, x: str, target: float, window: int = 3) -> float:
    """The first x at which the seed-mean curve, smoothed over ``window`` evaluations, reaches ``target``
    (NaN if never)."""
    grid, values = aligned_seeds(load_run(run_dir), x, Y)
    mean = values.mean(axis=0)
    smooth = np.convolve(mean, np.ones(window) / window, mode="valid")
    hit = np.nonzero(smooth >= target - 1e-6 * (1.0 + abs(target)))[0]  # float rounding of the same mean
    return float(grid[hit[0] + window - 1]) if hit.size else float("nan")


def final(run_dir: Path, x: str, last: int = 3) -> np.ndarray:
    """Per seed: the mean of the last ``last`` evaluations."""
    _, values = aligned_seeds(load_run(run_dir), x, Y)
    return values[:, -last:].mean(axis=1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=None, help="env steps per seed (default: per task, TASKS)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--tasks", default=",".join(t.split("/")[1] for t in TASKS))
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--out", type=Path, default=HERE, help="where fig2.md and the plots go")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = [f"mpe/{t}" for t in args.tasks.split(",")]
    rows, sections = [], []
    for task in tasks:
        budget, x, default_steps = TASKS[task]
        steps = args.steps or default_steps
        base = [f"total_steps={steps}", *COMMON]
        aorpo_ov = aorpo_overrides(task, steps)
        if x == "agent_interactions":
            baseline, base_ov, base_label = "aorpo", [*aorpo_ov, *MASAC_OM], "MASAC-OM"
        else:
            baseline, base_ov, base_label = "masac", [], "MASAC"
        runs = {}
        times = {}
        for label, algo, ov, tag in (
            ("AORPO", "aorpo", aorpo_ov, ""),
            (base_label, baseline, base_ov, "_baseline" if baseline == "aorpo" else ""),
        ):
            run_dir, wall, total = run_sweep(
                algo, task, args.seeds, [*base, *ov], reuse=args.reuse, tag=tag, root=RUNS
            )
            runs[label], times[label] = run_dir, (wall, total)
        target = float(final(runs[base_label], x).mean())
        fin = {k: final(v, x) for k, v in runs.items()}
        hit_a, hit_b = reach(runs["AORPO"], x, target), reach(runs[base_label], x, target)
        ratio = hit_b / hit_a if hit_a == hit_a else float("nan")
        name = task.split("/")[1]
        png = plot_grid(
            [runs["AORPO"], runs[base_label]],
            args.out / f"fig2_{name}.png",
            xs=tuple(dict.fromkeys(["env_steps", x])),
            labels=["AORPO", base_label],
            title=f"{task}: {args.seeds} seeds, {steps} env steps",
        )
        fmt = {k: "{:.1f} ± {:.1f}".format(*mean_ci(v)) for k, v in fin.items()}
        rows.append(
            [
                task,
                f"{steps:,} ({budget // steps}x less)",
                x,
                fmt["AORPO"],
                f"{base_label} {fmt[base_label]}",
                f"{hit_a:,.0f}" if hit_a == hit_a else "not reached",
                f"{hit_b:,.0f}",
                f"{ratio:.2f}x" if ratio == ratio else "-",
                " / ".join(f"{k} {w:.0f} s" for k, (w, _) in times.items()),
            ]
        )
        sections.append(f"![{task}]({png.name})")
        print(rows[-1], flush=True)
    cmd = " ".join(["benchmarks/aorpo/fig2.py", *sys.argv[1:]])
    lines = [
        "# AORPO Fig. 2 at a scaled budget",
        "",
        f"`{cmd}`",
        "",
        f"{args.seeds} vmapped seeds per algorithm (see the script's "
        "docstring for the scaling of the paper's budgets and AORPO's schedules), evaluation = mean team "
        "return of 10 greedy episodes every 2,500 steps. Final = mean of each seed's last 3 evaluations "
        "(mean ± 95% CI over seeds). 'Reached at' = the first x where the seed-mean curve (smoothed over 3 "
        "evaluations) reaches the baseline's final return; ratio = baseline's x / AORPO's x (> 1: AORPO "
        "needs less).",
        "",
        table(
            [
                "task",
                "env steps (vs paper)",
                "x",
                "AORPO final",
                "baseline final",
                "AORPO reached at",
                "baseline at",
                "ratio",
                "train time",
            ],
            rows,
        ),
        "",
        *sections,
    ]
    (args.out / "fig2.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
