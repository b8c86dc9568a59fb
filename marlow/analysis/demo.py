"""``marlow demo``: a short side-by-side training of AORPO and MASAC on mpe/simple_spread, with a report
and a plot of the team return against env steps and against normalised agent interactions.

Trains AORPO and MASAC (``num_seeds`` seeds each, vmapped) for ``total_steps`` env steps per seed,
evaluates a uniformly random policy as the reference line, and writes ``runs/demo/report.md`` with
``runs/demo/learning_curve.png``. Extra ``key=value`` arguments are passed to both trainings (AORPO's
world-model keys only to AORPO).

The demo budget is 30k env steps per seed, a twenty-fifth of the paper's simple_spread run (750k), so
AORPO's epoch-based schedules are scaled by the same factor (``AORPO_DEMO``: an epoch of 300 steps
instead of 7,500, so the rollout length grows from 1 to 6 over the run as in Table 1; model warm-up and
retraining every 3,000 steps; the model lr halved every 5,000 instead of 125,000 steps), and its models
get smaller budgets than the paper's (a 3 x 200 world model with 7 members, at most 3 x 100 gradient
steps per retraining, at most 5 epochs per opponent-model refit, 256 rollout start states per ego and
round instead of 1,024, G = 10 instead of 20) so that it finishes in minutes on a 2-core CPU
(benchmarks/aorpo/profile_s1.md shows where the time goes at the paper's settings). Every arm starts
learning after 3,000 random steps instead of MASAC's default 25,600, which is most of the budget.

A third arm makes the comparison honest: MASAC with AORPO's demo update ratio (``updates_per_step=10``
policy updates per round of 100 env steps, against MASAC's default 1). AORPO's lead over MASAC at this
budget could come from its model-generated data or merely from its ten times more policy updates; the
report puts the three side by side with the random policy for scale and reads the difference between
AORPO and the equal-update MASAC against the seeds' spread.
"""

from __future__ import annotations

import time
from pathlib import Path

from marlow.analysis.evaluate import random_policy_return
from marlow.experiment.config import parse_overrides, resolve
from marlow.runtime.report import plot_grid, summary_table
from marlow.runtime.runner import train

DEMO_TASK = "mpe/simple_spread"
# every arm learns after 3,000 random steps (the default 25,600 would be most of the budget)
DEMO_DEFAULTS = {"total_steps": "30000", "num_seeds": "2", "eval_every": "1500", "warmup_steps": "3000"}
AORPO_CPU = {  # the paper's schedules scaled to 50k of 750k steps (an epoch of 500 steps), small models
    "epoch_steps": "500",
    "model_warmup_steps": "5000",
    "model_train_every": "5000",
    "model_lr_halve_every": "8333",  # 125,000 / 15
    "updates_per_step": "10",
    "rollout_batch": "512",
    "model_hidden": "200,200,200",
    "model_weight_decay": "0.0001,0.00025,0.00025,0.0005",
    "model_num_members": "7",
    "model_num_elites": "5",
    "model_max_epochs": "5",
    "opp_max_epochs": "5",
}
"""AORPO's settings for a 50k-step simple_spread run on a 2-core CPU: the benchmarks in benchmarks/aorpo
(fig2, climb, schemes, crossplay) and the tests build on them; the demo used them up to 2026-12-07."""
AORPO_DEMO = {  # the same scaled to the demo's 30k steps (an epoch of 300 steps), cheaper rollouts and fits
    **AORPO_CPU,
    "epoch_steps": "300",
    "model_warmup_steps": "3000",
    "model_train_every": "3000",
    "model_lr_halve_every": "5000",  # 125,000 / 25
    "rollout_batch": "256",
    "model_max_epochs": "3",
}
DEMO_ARMS = {  # run directory: (algorithm, its own keys, label)
    "aorpo": ("aorpo", AORPO_DEMO, "AORPO"),
    "masac": ("masac", {}, "MASAC (1 update per round)"),
    "masac_10_updates": (
        "masac",
        {"updates_per_step": AORPO_DEMO["updates_per_step"]},
        "MASAC (10 updates per round, AORPO's ratio)",
    ),
}


def run_demo(args: list[str], out_dir: str | Path = "runs/demo") -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {**DEMO_DEFAULTS, **parse_overrides(args)}
    overrides["task"] = DEMO_TASK
    run_dirs, labels, times = [], [], {}
    for name, (algo, extra, label) in DEMO_ARMS.items():
        mine = {k: v for k, v in overrides.items() if algo == "aorpo" or not _world_key(k)}
        cfg = resolve({**extra, **mine, "algo": algo, "run_dir": str(out / name), "overwrite": "true"})
        t0 = time.perf_counter()
        run_dirs.append(train(cfg))
        labels.append(label)
        times[label] = time.perf_counter() - t0
    rand = random_policy_return(DEMO_TASK, episodes=1000)
    png = plot_grid(
        run_dirs,
        out / "learning_curve.png",
        xs=("env_steps", "agent_interactions"),
        labels=labels,
        title=f"{DEMO_TASK}: greedy team return",
        reference={f"uniformly random policy ({rand:.1f})": rand},
    )
    lines = [
        f"# marlow demo: {DEMO_TASK}",
        "",
        f"{overrides['total_steps']} env steps per seed, {overrides['num_seeds']} seeds per arm "
        f"(vmapped), evaluation = mean team return of {cfg.experiment.eval_episodes} greedy episodes. "
        "Right: against the paper's normalised agent interactions (env steps plus AORPO's real-teammate "
        "queries inside model rollouts, each 1/N of a full interaction, divided by the episode length).",
        "",
        summary_table(run_dirs, labels=labels),
        "",
        f"Uniformly random policy (1000 episodes): team return {rand:.2f}.",
        "",
        reading(run_dirs, labels),
        "",
        "Wall time (including compilation): " + ", ".join(f"{a} {t:.0f} s" for a, t in times.items()),
        "",
        f"![learning curves]({png.name})",
        "",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    print(report.read_text())
    print(f"report: {report}")
    return report


def reading(run_dirs: list[Path], labels: list[str]) -> str:
    """What the three arms show: AORPO against MASAC at the same number of policy updates, the
    difference of their final returns (the last 10% of evaluations, as the table) against its standard
    error over seeds."""
    import math

    from marlow.runtime.report import final_per_seed, load_run

    finals = [final_per_seed(load_run(d), "eval/team_return", 0.1) for d in run_dirs]
    aorpo, masac1, masac10 = finals
    diff = float(aorpo.mean() - masac10.mean())
    se = math.sqrt(sum(float(f.var(ddof=1)) / f.size for f in (aorpo, masac10) if f.size > 1))
    if se > 0 and diff > 2 * se:
        verdict = (
            "AORPO is ahead of MASAC at equal updates beyond two standard errors: its models add to what "
            "the update ratio gives"
        )
    elif se > 0 and diff < -2 * se:
        verdict = (
            "MASAC at equal updates is ahead of AORPO beyond two standard errors: at this budget AORPO's "
            "lead over MASAC's default comes from its update ratio, not from its models"
        )
    else:
        verdict = "the difference is within two standard errors: inconclusive"
    return (
        f"Reading: AORPO's final return is {aorpo.mean() - masac1.mean():+.1f} against {labels[1]} and "
        f"{diff:+.1f} (standard error {se:.1f}) against {labels[2]}, which does as many policy updates per "
        f"env step; {verdict}. With {min(f.size for f in finals)} seeds per arm the standard error itself is "
        "rough: a check of the setting, not a reproduction (benchmarks/aorpo/ has those)."
    )


def _world_key(key: str) -> bool:
    """Keys only AORPO has (world models, rollouts)."""
    from marlow.algos.model_based.aorpo import Config
    from marlow.algos.offpolicy.masac import Config as Base

    name = key.removeprefix("algo.")
    return name in Config.__dataclass_fields__ and name not in Base.__dataclass_fields__
