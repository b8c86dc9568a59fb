"""LA-HAPPO vs HAPPO on MA-MuJoCo (the Teammate Lookahead paper's Table 1 and Figs. 3-5; Fig. 6 with
``--arms ...,la_happo_r2``) at a budget that fits this 2-core machine.

    .venv/bin/python benchmarks/lookahead/mamujoco.py [--task mamujoco/halfcheetah_2x3] [--seeds 5]
        [--steps 300000] [--arms happo,la_happo,la_happo_r2] [--seeds-r2 3] [--reuse]
        [--out benchmarks/lookahead/mamujoco.md]

Settings: the scaled protocol of ``speed.py`` (SCALED: the paper's Tables 4-5 HalfCheetah values with 10
envs instead of 40, at most 100 model steps and 200 lookahead rollouts of 20 steps per iteration) for
LA-HAPPO, and LA-HAPPO's resolved values of every shared key for HAPPO, so both arms differ only in the
lookahead. ``la_happo_r2`` is LA-HAPPO with two lookahead rounds per iteration (App. C.2). Seeds of an arm
run vmapped in one process. Reported per arm: the final greedy return (mean of the last two evaluations
per seed, mean and standard error over seeds), the area under the greedy-return curve (mean over
evaluations), and for LA-HAPPO the fraction of iterations collected by a lookahead policy whose KL
diagnostic (Sec. 4.3) was positive, beside the paper's Table 1 (5e6 steps in the authors' code).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "rommeo"))
sys.path.insert(0, str(HERE))
from speed import SCALED, arm_args  # noqa: E402
from sweep import run_sweep, table  # noqa: E402

from marlow.experiment.config import resolve  # noqa: E402
from marlow.experiment.report import aligned_seeds, load_run, plot_grid  # noqa: E402

RUNS = HERE / "runs"
# The paper's Table 1 (final return, mean (standard error) over 5 seeds)
PAPER = {
    "mamujoco/halfcheetah_2x3": {"la_happo": "3316 (346)", "happo": "2910 (39)"},
    "mamujoco/halfcheetah_3x2": {"la_happo": "3687 (305)", "happo": "3016 (81)"},
    "mamujoco/ant_2x4": {"la_happo": "3393 (337)", "happo": "2471 (201)"},
    "mamujoco/ant_4x2": {"la_happo": "2858 (541)", "happo": "2120 (168)"},
    "mamujoco/walker2d_2x3": {"la_happo": "2048 (309)", "happo": "2545 (273)"},
    "mamujoco/walker2d_3x2": {"la_happo": "2671 (124)", "happo": "2781 (76)"},
}
ARMS = {"happo": ("happo", []), "la_happo": ("la_happo", []), "la_happo_r2": ("la_happo", ["la_rounds=2"])}


def curve(run_dir: Path, col: str) -> np.ndarray:
    _, v = aligned_seeds(load_run(run_dir), y=col)
    return v  # [seeds, evaluations]


def se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="mamujoco/halfcheetah_2x3")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seeds-r2", type=int, default=3, help="seeds of the la_happo_r2 arm (Fig. 6)")
    p.add_argument("--steps", type=int, default=300_000)
    p.add_argument("--arms", default="happo,la_happo")
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--out", default=str(HERE / "mamujoco.md"))
    ns = p.parse_args()
    per_iter = None
    rows, runs = [], {}
    for arm in ns.arms.split(","):
        algo, extra = ARMS[arm]
        base = arm_args(algo, ns.task, [])[2:] + extra  # without algo= and task=
        cfg = resolve([f"algo={algo}", f"task={ns.task}", *base])
        per_iter = cfg.algo.rollout_steps * cfg.experiment.num_envs
        overrides = [
            *base,
            f"total_steps={ns.steps}",
            f"eval_every={per_iter * 5}",
            "eval_episodes=2",
            "checkpoint_every=1000",
        ]
        seeds = ns.seeds_r2 if arm == "la_happo_r2" else ns.seeds
        run_dir, wall, total = run_sweep(
            algo, ns.task, seeds, overrides, reuse=ns.reuse, tag=arm[len(algo) :], root=RUNS
        )
        runs[arm] = run_dir
        ret = curve(run_dir, "eval/team_return")
        final = np.nanmean(ret[:, -2:], axis=1)
        auc = np.nanmean(ret, axis=1)
        kl = "-"
        if algo == "la_happo":
            pos, col = curve(run_dir, "loss/la_kl_positive"), curve(run_dir, "loss/la_collected")
            frac = np.nansum(pos[:, 1:], axis=1) / np.maximum(np.nansum(col[:, 1:], axis=1), 1e-9)
            kl = f"{frac.mean():.2f} ({se(frac):.2f})"
        rows.append(
            [
                f"{arm} ({seeds} seeds)",
                f"{ns.steps:,}",
                f"{final.mean():.0f} ({se(final):.0f})",
                f"{auc.mean():.0f} ({se(auc):.0f})",
                kl,
                PAPER.get(ns.task, {}).get(algo if not extra else "", "-"),
                f"{wall:.0f}",
            ]
        )
    png = HERE / f"mamujoco_{ns.task.split('/')[-1]}.png"
    plot_grid(list(runs.values()), png, labels=list(runs), title=f"{ns.task}, {ns.seeds} seeds")
    lines = [
        f"# Teammate Lookahead on {ns.task}: LA-HAPPO vs HAPPO (Table 1, Figs. 3-6)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on a 2-core CPU machine by "
        f"`python benchmarks/lookahead/mamujoco.py --task {ns.task} --seeds {ns.seeds} --steps {ns.steps} "
        f"--arms {ns.arms}`. Settings: the task's `la_happo` defaults (the paper's Tables 4-5) with "
        f"`{' '.join(SCALED)}` ({per_iter:,} env steps per iteration, lookahead after 50,000), HAPPO at "
        "LA-HAPPO's values of every shared key. Final = mean of the last two greedy evaluations per seed; "
        "AUC = mean greedy return over all evaluations; both mean (standard error) over seeds. KL > 0 = "
        "fraction of the iterations collected by a lookahead policy whose Sec. 4.3 diagnostic was positive. "
        "The paper's numbers are at 5e6 steps (the authors' code), far beyond this budget.",
        "",
        table(
            [
                "arm",
                "env steps per seed",
                "final return",
                "AUC",
                "KL > 0",
                "paper Table 1 (5e6 steps)",
                "training wall s",
            ],
            rows,
        ),
        "",
        f"![{ns.task}]({png.name})",
        "",
    ]
    Path(ns.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
