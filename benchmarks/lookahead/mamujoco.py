"""The Teammate Lookahead paper's Table 1 and Figs. 3-6 on MA-MuJoCo at a budget that fits this 2-core
machine: LA-HAPPO (1 or 2 lookahead rounds) against HAPPO, MAPPO, IPPO, TAPPO and MADDPG.

    .venv/bin/python -m benchmarks.lookahead.mamujoco [--task mamujoco/halfcheetah_2x3] [--seeds 5]
        [--steps 300000] [--arms happo,la_happo,la_happo_r2] [--arm-seeds la_happo_r2=3]
        [--arm-steps maddpg=200000] [--reuse] [--out benchmarks/lookahead/mamujoco.md]

Settings: the scaled protocol of ``speed.py`` (SCALED: the paper's Tables 4-5 HalfCheetah values with 10
envs instead of 40, at most 100 model steps and 200 lookahead rollouts of 20 steps per iteration) for
LA-HAPPO; the on-policy baselines (HAPPO, MAPPO, IPPO, TAPPO) take LA-HAPPO's resolved values of every key
they share with it (``speed.arm_args``), so they differ from LA-HAPPO only in the lookahead and in what
defines them (MAPPO's shared critic and actor, IPPO's local critics, TAPPO's teammate encoder).
``la_happo_r2`` is LA-HAPPO with two lookahead rounds per iteration (App. C.2). MADDPG, off-policy, has no
keys in common and runs at its own MA-MuJoCo task defaults (HARL's tuned values). Seeds of an arm run
vmapped in one process; ``--arm-seeds`` and ``--arm-steps`` set an arm's seeds and budget apart from
``--seeds`` and ``--steps``. Reported per arm: the final greedy return (mean of the last two evaluations
per seed, mean and standard error over seeds), the area under the greedy-return curve (mean over
evaluations), and for LA-HAPPO the fraction of iterations collected by a lookahead policy whose KL
diagnostic (Sec. 4.3) was positive, beside the paper's Table 1 (5e6 steps in the authors' code).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
import marlow  # noqa: E402
from benchmarks.harness import run_sweep, table  # noqa: E402
from benchmarks.lookahead.speed import SCALED, arm_args  # noqa: E402
from marlow.runtime.report import aligned_seeds, load_run, plot_grid  # noqa: E402

RUNS = HERE / "runs"
# The paper's Table 1 (final return, mean (standard error) over 5 seeds; "Lookahead" is LA-HAPPO)
_TASKS = ["ant_2x4", "ant_4x2", "halfcheetah_2x3", "halfcheetah_3x2", "walker2d_2x3", "walker2d_3x2"]
_TABLE1 = {
    "la_happo": ["3393 (337)", "2858 (541)", "3316 (346)", "3687 (305)", "2048 (309)", "2671 (124)"],
    "happo": ["2471 (201)", "2120 (168)", "2910 (39)", "3016 (81)", "2545 (273)", "2781 (76)"],
    "tappo": ["2055 (182)", "2504 (208)", "2155 (443)", "3488 (712)", "1476 (215)", "1446 (350)"],
    "mappo": ["1034 (19)", "1002 (18)", "2160 (504)", "2350 (477)", "1853 (41)", "1813 (139)"],
    "ippo": ["885 (46)", "876 (21)", "2652 (635)", "2478 (566)", "2022 (68)", "1775 (122)"],
    "maddpg": ["1866 (10)", "1701 (13)", "1554 (252)", "1296 (385)", "72 (15)", "101 (35)"],
}
PAPER = {f"mamujoco/{t}": {a: v[i] for a, v in _TABLE1.items()} for i, t in enumerate(_TASKS)}
# arm -> (algorithm, extra overrides); every on-policy arm but LA-HAPPO at LA-HAPPO's shared values
ARMS = {
    "happo": ("happo", []),
    "la_happo": ("la_happo", []),
    "la_happo_r2": ("la_happo", ["la_rounds=2"]),
    "mappo": ("mappo", []),
    "ippo": ("ippo", []),
    "tappo": ("tappo", []),
    "maddpg": ("maddpg", []),
}
OWN_DEFAULTS = {"maddpg"}  # off-policy: its own task defaults (no keys in common with LA-HAPPO)


def per_arm(text: str, cast=int) -> dict[str, int]:
    """``"a=1,b=2"`` -> ``{"a": 1, "b": 2}``."""
    return {k: cast(v) for k, v in (kv.split("=") for kv in text.split(",") if kv)}


def curve(run_dir: Path, col: str) -> np.ndarray:
    _, v = aligned_seeds(load_run(run_dir), y=col)
    return v  # [seeds, evaluations]


def se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="mamujoco/halfcheetah_2x3")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--arm-seeds", default="la_happo_r2=3", help="arm=seeds,...: an arm's seeds")
    p.add_argument("--arm-steps", default="", help="arm=steps,...: an arm's budget (env steps per seed)")
    p.add_argument("--steps", type=int, default=300_000)
    p.add_argument("--arms", default="happo,la_happo")
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--out", default=str(HERE / "mamujoco.md"))
    ns = p.parse_args()
    arm_seeds, arm_steps = per_arm(ns.arm_seeds), per_arm(ns.arm_steps)
    la = marlow.config(args=arm_args("la_happo", ns.task, []))
    per_iter = la.algo.rollout_steps * la.experiment.num_envs
    rows, runs = [], {}
    for arm in ns.arms.split(","):
        algo, extra = ARMS[arm]
        base = ([] if arm in OWN_DEFAULTS else arm_args(algo, ns.task, [])[2:]) + extra  # no algo=, task=
        steps = arm_steps.get(arm, ns.steps)
        overrides = [
            *base,
            f"total_steps={steps}",
            f"eval_every={per_iter * 5}",  # every arm evaluated at the same env steps
            "eval_episodes=2",
            "checkpoint_every=1000",
        ]
        seeds = arm_seeds.get(arm, ns.seeds)
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
                f"{steps:,}",
                f"{final.mean():.0f} ({se(final):.0f})",
                f"{auc.mean():.0f} ({se(auc):.0f})",
                kl,
                PAPER.get(ns.task, {}).get(algo if not extra else "", "-"),
                f"{wall:.0f}",
            ]
        )
    out = Path(ns.out)
    png = out.parent / f"{out.stem}_{ns.task.split('/')[-1]}.png"
    plot_grid(list(runs.values()), png, labels=list(runs), title=f"{ns.task}, {ns.seeds} seeds")
    cmd = f"--task {ns.task} --seeds {ns.seeds} --steps {ns.steps} --arms {ns.arms}"
    cmd += f" --arm-seeds {ns.arm_seeds}" if ns.arm_seeds else ""
    cmd += f" --arm-steps {ns.arm_steps}" if ns.arm_steps else ""
    names = {"la_happo": "LA-HAPPO", "happo": "HAPPO", "mappo": "MAPPO", "ippo": "IPPO", "tappo": "TAPPO"}
    title = " vs ".join(dict.fromkeys(names.get(ARMS[a][0], ARMS[a][0].upper()) for a in runs))
    lines = [
        f"# Teammate Lookahead on {ns.task}: {title} (Table 1, Figs. 3-6)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on a 2-core CPU machine by "
        f"`python -m benchmarks.lookahead.mamujoco {cmd}"
        + (f" --out {out.name}`" if out.name != "mamujoco.md" else "`")
        + f". Settings: the task's `la_happo` defaults (the paper's Tables 4-5) with "
        f"`{' '.join(SCALED)}` ({per_iter:,} env steps per iteration, lookahead after 50,000); the other "
        "on-policy arms at LA-HAPPO's values of every shared key; MADDPG at its own task defaults. "
        "Final = mean of the last two greedy evaluations per seed; "
        "AUC = mean greedy return over all evaluations; both mean (standard error) over seeds. KL > 0 = "
        "fraction of the iterations collected by a lookahead policy whose Sec. 4.3 diagnostic was positive. "
        "The paper's numbers are at 5e6 steps (the authors' code), far beyond this budget. "
        f"MA-MuJoCo simulator: `task.simulator={la.experiment.task_options.get('simulator', 'gymnasium')}`.",
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
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
