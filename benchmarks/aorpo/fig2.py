"""AORPO paper Fig. 2 at a scaled budget: AORPO vs MASAC and AORDPG vs MADDPG on mpe/simple_spread and
mpe/simple_speaker_listener (return against env steps), and each against its model-free base with
opponent models on mpe/simple_schedule (return against normalised agent interactions, under the exact
count of real-teammate queries and under the reference code's count, side by side).

    .venv/bin/python -m benchmarks.aorpo.fig2 [--steps N] [--seeds 5] [--tasks spread,...]
        [--algos aorpo,aordpg] [--reuse]

Writes benchmarks/aorpo/fig2.md and fig2_<task>.png (runs under benchmarks/aorpo/runs, git-ignored).

Scaling. The paper's budgets (spread 100 epochs, speaker-listener 40, scheduling 50, an epoch = 300
episodes x 25 steps) take hours per seed on this 2-core machine (profile_s1.md), so every run gets
``--steps`` env steps (default per task, TASKS: 50k spread, 30k speaker-listener and scheduling) and
the model-based algorithms' epoch-based schedules shrink by the same factor: epoch_steps of the task's
Table 1 column (conf/task/mpe/*.yaml) times steps / paper budget, so the rollout length k climbs over the
same fraction of the run as in the paper (the model lr halving interval likewise). The model budgets are
the CPU budget's (marlow.analysis.demo.AORPO_CPU: a 3 x 200 ensemble of 7, at most 500 gradient
steps per retraining, model warm-up and retraining every 5,000 steps, 512 rollout starts, G = 10), for
AORDPG too. Every algorithm starts learning after 5,000 random steps (``warmup_steps``; MASAC's default
25,600 would be half the budget).

The baselines for simple_schedule are "the model-free baselines with opponent models" of the paper's
Appendix G.2: AORPO (AORDPG) with no model data (real_ratio = 1, no model ever trained, so one update
per round on real data, as MASAC and MADDPG), i.e. MASAC (MADDPG) whose policies are conditioned on
fitted opponent models' predictions (Eq. 4).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
import marlow  # noqa: E402
from benchmarks.harness import mean_ci, run_sweep, table  # noqa: E402
from marlow.analysis.demo import AORPO_CPU  # noqa: E402
from marlow.runtime.report import RunData, aligned_seeds, load_run, plot_grid  # noqa: E402

RUNS = HERE / "runs"
# task -> (the paper's budget in env steps, x axis of its Fig. 2 panel, our budget: 1/15, 1/10, 1/12.5 of it)
TASKS = {
    "mpe/simple_spread": (100 * 300 * 25, "env_steps", 50_000),
    "mpe/simple_speaker_listener": (40 * 300 * 25, "env_steps", 30_000),
    "mpe/simple_schedule": (50 * 300 * 25, "agent_interactions", 30_000),
}
COMMON = ["warmup_steps=5000", "eval_every=2500"]
# a model-based algorithm without model data (see above): its model-free base with opponent models
WITHOUT_MODEL = ["real_ratio=1.0", "model_warmup_steps=1000000000", "updates_per_step=1"]
# model-based algorithm -> (its label, its model-free base, the base's label)
PAIRS = {"aorpo": ("AORPO", "masac", "MASAC"), "aordpg": ("AORDPG", "maddpg", "MADDPG")}
REF_X = "normalised agent interactions (reference code's count: N for M)"
AXIS_NAMES = {
    "agent_interactions": "agent interactions (exact count)",
    REF_X: "agent interactions (code's count)",
}
Y = "eval/team_return"


def model_overrides(algo: str, task: str, steps: int) -> list[str]:
    """The demo's model budgets with ``algo``'s epoch-based schedules scaled to ``steps``."""
    budget = TASKS[task][0]
    paper = marlow.config(algo, task).algo
    f = steps / budget
    scaled = {
        **AORPO_CPU,
        "epoch_steps": str(max(1, round(paper.epoch_steps * f))),
        "model_lr_halve_every": str(max(1, round(paper.model_lr_halve_every * f))),
    }
    return [f"{k}={v}" for k, v in scaled.items()]


def reach(run: RunData, x: str, target: float, window: int = 3) -> float:
    """The first x at which the seed-mean curve, smoothed over ``window`` evaluations, reaches ``target``
    (NaN if never)."""
    grid, values = aligned_seeds(run, x, Y)
    mean = values.mean(axis=0)
    smooth = np.convolve(mean, np.ones(window) / window, mode="valid")
    hit = np.nonzero(smooth >= target - 1e-6 * (1.0 + abs(target)))[0]  # float rounding of the same mean
    return float(grid[hit[0] + window - 1]) if hit.size else float("nan")


def final(run: RunData, x: str, last: int = 3) -> np.ndarray:
    """Per seed: the mean of the last ``last`` evaluations."""
    _, values = aligned_seeds(run, x, Y)
    return values[:, -last:].mean(axis=1)


def reference_count(run: RunData) -> RunData:
    """``run`` with the column REF_X: the normalised agent interactions under the reference code's count,
    which multiplies each teammate's (k - n_j) queries of a rollout batch by the number of agents N
    instead of the M rollout start states (``rollout_batch``). The queries are linear in that factor, so
    the logged exact count C = N (L I - T) (I: the logged interactions, T: env steps, L: the episode
    length) becomes C N / M, and I_ref = (T + C / M) / L."""
    cfg = marlow.run_config(run.run_dir)
    spec = marlow.make_env(cfg.experiment.task, **cfg.experiment.task_options).spec
    n, length, m = spec.num_agents, spec.episode_length, cfg.algo.rollout_batch
    metrics = {}
    for seed, cols in run.metrics.items():
        t, i = cols["env_steps"], cols["agent_interactions"]
        exact = n * (length * i - t)
        metrics[seed] = {**cols, REF_X: (t + exact / m) / length}
    return replace(run, metrics=metrics)


def claims(found: list[tuple[str, str, str, str, float]]) -> list[str]:
    """Sec. 6.2's claims, one line per task, algorithm and x axis: the model-based algorithm reaches the
    model-free baseline's final return with fewer env steps (CESO tasks, Fig. 2 left and middle) and with
    fewer normalised agent interactions (the SECO scheduling task, Fig. 2 right)."""
    lines = ["## Claims (Sec. 6.2, Fig. 2), read from these runs", ""]
    for task, label, base, axis, ratio in found:  # scheduling: agent interactions only, as the paper
        what = "env steps" if axis == "env_steps" else AXIS_NAMES[axis]
        if ratio != ratio:
            verdict = "**does not hold** (never reaches it)"
        else:
            verdict = "**holds**" if ratio > 1 else "**does not hold**"
        lines.append(
            f"- {task}: {label} reaches {base}'s final return with fewer {what}: {verdict}"
            + (f" ({ratio:.2f}x)." if ratio == ratio else ".")
        )
    lines.append(
        "- The paper gives Fig. 2 as curves (5 seeds) at 10-15x our budgets; it prints no numbers to set "
        "beside these."
    )
    return lines


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=None, help="env steps per seed (default: per task, TASKS)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--tasks", default=",".join(t.split("/")[1] for t in TASKS))
    p.add_argument("--algos", default=",".join(PAIRS), help="model-based algorithms, each with its baseline")
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--out", type=Path, default=HERE, help="where fig2.md and the plots go")
    p.add_argument("--runs", type=Path, default=RUNS, help="where the run directories go")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = [f"mpe/{t}" for t in args.tasks.split(",")]
    algos = args.algos.split(",")
    bad = [a for a in algos if a not in PAIRS]
    if bad:
        p.error(f"unknown algorithms {bad}; choose from {list(PAIRS)}")
    rows, sections, found = [], [], []
    for task in tasks:
        budget, x, default_steps = TASKS[task]
        steps = args.steps or default_steps
        base = [f"total_steps={steps}", *COMMON]
        runs, times, order = {}, {}, []
        for algo in algos:
            label, free, free_label = PAIRS[algo]
            ov = model_overrides(algo, task, steps)
            if x == "agent_interactions":  # the model-free baseline with opponent models (App. G.2)
                baseline, base_ov, base_label, tag = (
                    algo,
                    [*ov, *WITHOUT_MODEL],
                    f"{free_label}-OM",
                    "_baseline",
                )
            else:
                baseline, base_ov, base_label, tag = free, [], free_label, ""
            for lab, name, o, t in ((label, algo, ov, ""), (base_label, baseline, base_ov, tag)):
                run_dir, wall, _ = run_sweep(
                    name, task, args.seeds, [*base, *o], reuse=args.reuse, tag=t, root=args.runs
                )
                runs[lab], times[lab] = load_run(run_dir, lab), wall
            order.append((label, base_label))
        xs = ["env_steps", x]
        if x == "agent_interactions":
            runs = {k: reference_count(v) for k, v in runs.items()}
            xs.append(REF_X)
        xs = list(dict.fromkeys(xs))
        for label, base_label in order:
            target = float(final(runs[base_label], x).mean())
            for axis in xs[1:] if len(xs) > 1 else xs:
                hit_a, hit_b = reach(runs[label], axis, target), reach(runs[base_label], axis, target)
                ratio = hit_b / hit_a if hit_a == hit_a else float("nan")
                found.append((task, label, base_label, axis, ratio))
                fmt = {k: "{:.1f} ± {:.1f}".format(*mean_ci(final(runs[k], x))) for k in (label, base_label)}
                rows.append(
                    [
                        task,
                        f"{steps:,} ({budget // steps}x less)",
                        AXIS_NAMES.get(axis, axis),
                        f"{label} {fmt[label]}",
                        f"{base_label} {fmt[base_label]}",
                        f"{hit_a:,.0f}" if hit_a == hit_a else "not reached",
                        f"{hit_b:,.0f}",
                        f"{ratio:.2f}x" if ratio == ratio else "-",
                        f"{times[label]:.0f} s / {times[base_label]:.0f} s",
                    ]
                )
                print(rows[-1], flush=True)
        name = task.split("/")[1]
        labels = [lab for pair in order for lab in pair]
        png = plot_grid(
            [runs[lab] for lab in labels],
            args.out / f"fig2_{name}.png",
            xs=tuple(xs),
            labels=labels,
            title=f"{task}: {args.seeds} seeds, {steps} env steps",
        )
        sections.append(f"![{task}]({png.name})")
    cmd = " ".join(["benchmarks/aorpo/fig2.py", *sys.argv[1:]])
    lines = [
        "# AORPO Fig. 2 at a scaled budget: AORPO vs MASAC and AORDPG vs MADDPG",
        "",
        f"`{cmd}`",
        "",
        f"{args.seeds} vmapped seeds per algorithm (see the script's "
        "docstring for the scaling of the paper's budgets and the model-based schedules), evaluation = mean "
        "team return of 10 greedy episodes every 2,500 steps. Final = mean of each seed's last 3 evaluations "
        "(mean ± 95% CI over seeds). 'Reached at' = the first x where the seed-mean curve (smoothed over 3 "
        "evaluations) reaches the baseline's final return; ratio = baseline's x / the model-based "
        "algorithm's x (> 1: the model-based algorithm needs less). On simple_schedule the x axis is the "
        "paper's normalised agent interactions, under the exact count of real-teammate queries and under the "
        "reference code's count (N agents in place of the M rollout start states). Train time: training "
        "wall-clock seconds of all seeds (model-based / baseline), without compilation.",
        "",
        table(
            [
                "task",
                "env steps (vs paper)",
                "x",
                "model-based final",
                "baseline final",
                "model-based reached at",
                "baseline at",
                "ratio",
                "train time",
            ],
            rows,
        ),
        "",
        *claims(found),
        "",
        "More readings: benchmarks/aorpo/README.md.",
        "",
        *sections,
    ]
    (args.out / "fig2.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
