"""AORPO paper Appendix G.3, Table 3: AORPO vs MASAC in cross-play on the competitive MPE tasks.

For each task (mpe/simple_push = keep-away, mpe/simple_adversary = physical deception, mpe/simple_tag =
predator-prey) AORPO and MASAC are trained with ``--seeds`` vmapped seeds each (benchmarks/rommeo/sweep.py's
``run_sweep``; runs under benchmarks/aorpo/runs/, git-ignored), then every pairing plays greedy episodes
(:func:`marlow.analysis.crossplay.crossplay`: seed i of the agents' run against seed i of the adversaries'
run, ``--episodes`` episodes per seed pair). Table 3's layout: rows = the adversaries' algorithm, columns =
the agents' algorithm, entry = the score of the column algorithm (agent-team return minus adversary-team
return per episode; see crossplay.py for the teams), here the mean and 95% CI over seeds x episodes.

    .venv/bin/python -m benchmarks.aorpo.crossplay [--steps 50000] [--seeds 5] [--episodes 100] [--reuse]
        [--tasks mpe/simple_push,...] [--set key=value ...] [--runs DIR] [--out FILE]

Budget: the paper trains N = 200 epochs per task (Table 2; E x 25 env steps per epoch: 250k steps on
keep-away, 1M on the other two); here ``--steps`` per seed (default 50k), with AORPO's epoch-based schedules
scaled like ``marlow demo`` scales them (see :func:`settings`). Writes ``--out`` (default
benchmarks/aorpo/crossplay.md). ``--set key=value`` overrides a setting of both algorithms (keys only AORPO
has go only to AORPO), e.g. for a quick check of the script:

    .venv/bin/python -m benchmarks.aorpo.crossplay --steps 3000 --seeds 2 --episodes 10 \\
        --tasks mpe/simple_push --set batch_size=64 --set hidden=16,16 --set updates_per_step=2 \\
        --set model_hidden=16,16 --set model_weight_decay=0.0001,0.0001,0.0001 --set model_num_members=3 \\
        --set model_num_elites=2 --set model_batch_size=64 --set rollout_batch=32 --set opp_hidden=16 \\
        --runs /tmp/crossplay_runs --out /tmp/crossplay.md

(about 3 minutes on the 2-core machine while another benchmark ran, 45 s of it cross-play compilation).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
import marlow  # noqa: E402
from benchmarks.harness import run_sweep, table  # noqa: E402
from marlow.algos import get_algo  # noqa: E402
from marlow.analysis.crossplay import crossplay, mean_ci  # noqa: E402

TASKS = {
    "mpe/simple_push": "Keep-away",
    "mpe/simple_adversary": "Physical deception",
    "mpe/simple_tag": "Predator-prey",
}
ALGOS = ("masac", "aorpo")  # Table 3's order
LABELS = {"masac": "MASAC", "aorpo": "AORPO"}
PAPER = {  # Table 3: (adversaries' algorithm, agents' algorithm) -> score of the agents' algorithm
    "mpe/simple_push": {("masac", "masac"): -6.68, ("masac", "aorpo"): -6.28,
                        ("aorpo", "masac"): -8.31, ("aorpo", "aorpo"): -7.65},
    "mpe/simple_adversary": {("masac", "masac"): 19.64, ("masac", "aorpo"): 32.49,
                             ("aorpo", "masac"): 16.36, ("aorpo", "aorpo"): 20.89},
    "mpe/simple_tag": {("masac", "masac"): -74.93, ("masac", "aorpo"): -25.69,
                       ("aorpo", "masac"): -47.79, ("aorpo", "aorpo"): -45.70},
}  # fmt: skip
PAPER_EPOCHS = 200  # Table 2: N = 200 epochs on every competitive task
PAPER_MODEL_LR_HALVE = 125_000  # Appendix F: model lr halved every 5,000 episodes x 25 steps (world.yaml)


def world_key(key: str) -> bool:
    """Keys only AORPO has (world models, rollouts), which MASAC is not given."""
    own, base = (set(get_algo(a).Config.__dataclass_fields__) for a in ("aorpo", "masac"))
    return key.removeprefix("algo.") in own - base


def settings(task: str, steps: int) -> dict[str, dict[str, str]]:
    """The overrides of each algorithm on ``task`` for a budget of ``steps`` env steps per seed, on top of
    conf/task/<task>.yaml (Table 2: E, k schedule, B, G and the learning rates)."""
    table2 = marlow.config("aorpo", task).algo  # conf/task/<task>.yaml's aorpo section: Table 2
    paper_steps = PAPER_EPOCHS * table2.epoch_steps  # 250k keep-away, 1M the other two
    both = {  # both algorithms: the budget, and Table 2's policy learning rate (a task setting)
        "total_steps": steps,
        "eval_every": max(100, round(steps / 20 / 100) * 100),  # 20 evaluations (multiple of update_every)
        "warmup_steps": steps // 10,  # the paper's 25,600 = 10% of keep-away's 250k (50% of a 50k run)
        "lr_actor": table2.lr_actor,  # Table 2 "policy learning rate": the model-free part, shared
        "lr_critic": table2.lr_critic,
        "progress": "false",
    }
    aorpo = {  # AORPO_CPU's way of scaling (marlow.analysis.demo) applied to Table 2's schedules
        "epoch_steps": max(1, steps // PAPER_EPOCHS),  # the N = 200 epochs span the run, so the rollout
        # length schedule (k: x -> y over epochs a -> b of 200) covers the same share of it as in the paper
        "model_lr_halve_every": max(1, round(PAPER_MODEL_LR_HALVE * steps / paper_steps)),  # same scale
        "model_warmup_steps": steps // 10,  # demo: 5,000 of 50k (paper 37,500)
        "model_train_every": steps // 10,  # demo: 5,000 of 50k (paper 3,750)
        "rollout_batch": 512,  # demo (paper M = 1,024)
        "model_hidden": "200,200,200",  # demo (paper 4 x 256); B stays Table 2's (8, 8, 10)
        "model_weight_decay": "0.0001,0.00025,0.00025,0.0005",
        "model_max_epochs": 5,  # demo: at most 5 x 100 gradient steps per retraining
        "opp_max_epochs": 5,  # demo: at most 5 epochs per opponent-model refit
    }  # G = 20 policy updates per 100 env steps and the lrs stay Table 2's (conf/task/<task>.yaml)
    out = {"masac": dict(both), "aorpo": {**both, **aorpo}}
    return {algo: {k: str(v) for k, v in s.items()} for algo, s in out.items()}


def fmt(m: float, ci: float) -> str:
    return f"{m:.2f} ± {ci:.2f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50_000, help="env steps per seed (paper: 250k / 1M)")
    p.add_argument("--seeds", type=int, default=5, help="vmapped seeds per algorithm and task")
    p.add_argument("--episodes", type=int, default=100, help="cross-play episodes per seed pair")
    p.add_argument("--eval-seed", type=int, default=12345, help="key of the cross-play episodes")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override of both")
    p.add_argument("--reuse", action="store_true", help="keep finished runs of the same config")
    p.add_argument("--runs", type=Path, default=HERE / "runs", help="where the run directories go")
    p.add_argument("--out", type=Path, default=HERE / "crossplay.md")
    args = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python -m benchmarks.aorpo.crossplay", shlex.join(given)]).strip()
    if bad := [s for s in args.set if "=" not in s]:
        p.error(f"--set takes KEY=VALUE, got {bad[0]!r}")
    extra = dict(s.split("=", 1) for s in args.set)
    tasks = [t for t in args.tasks.split(",") if t]
    for t in tasks:
        if t not in TASKS:
            p.error(f"unknown task {t!r}; Table 3's tasks: {', '.join(TASKS)}")

    sections, readings, times = [], [], []
    for task in tasks:
        over = settings(task, args.steps)
        runs = {}
        for algo in ALGOS:  # --set values win over the script's settings
            over[algo].update({k: v for k, v in extra.items() if algo == "aorpo" or not world_key(k)})
            runs[algo], wall, total = run_sweep(
                algo,
                task,
                args.seeds,
                [f"{k}={v}" for k, v in over[algo].items()],
                reuse=args.reuse,
                root=args.runs,
            )
            times.append((task, algo, wall, total))
        t0 = time.perf_counter()
        res = {
            (adv, ag): crossplay(runs[ag], runs[adv], episodes=args.episodes, seed=args.eval_seed)
            for adv in ALGOS
            for ag in ALGOS
        }
        cross_s = time.perf_counter() - t0
        print(f"{task}: cross-play {cross_s:.1f} s", flush=True)
        sections.append(task_section(task, over, res, runs, cross_s))
        readings.append(reading(task, res))

    lines = [
        "# AORPO vs MASAC in cross-play (AORPO paper Appendix G.3, Table 3)",
        "",
        "Written by `benchmarks/aorpo/crossplay.py`:",
        "",
        "```",
        command,
        "```",
        "",
        f"{args.seeds} seeds per algorithm and task (vmapped), {args.steps:,} env steps per seed (the paper: "
        "200 epochs = 250k steps on keep-away, 1M on the other two). Cross-play: seed i of the agents' run "
        f"plays seed i of the adversaries' run, {args.episodes} greedy episodes per seed pair, the same "
        f"episode keys (eval seed {args.eval_seed}) in every pairing. Rows: the adversaries' algorithm; "
        "columns: the agents' algorithm; entry: the score of the column algorithm, agent-team return minus "
        "adversary-team return per episode (a team's return: the mean over its members of their episode "
        "returns; teams `agent` / `adversary` as in marlow.envs.mpe), mean ± 95% CI (normal approximation) "
        f"over the {args.seeds} x {args.episodes} episodes. The paper's values (Table 3, 30 seeds, full "
        "budget) are beside ours. *AORPO − MASAC*: the AORPO column minus the MASAC column of the row, "
        "paired by episode (same seed index and episode key). MASAC keeps its defaults "
        "(conf/algo/masac.yaml: 1 update of a 1,024 batch per 100 env steps) but for the settings listed "
        "per task; AORPO has Table 2's G = 20 updates per 100 env steps, ensemble size B, rollout schedule "
        "and learning rates (conf/task/<task>.yaml).",
        "",
        "## Reading",
        "",
        f"The AORPO column has the higher mean score in {sum(r[1] for r in readings)} of "
        f"{2 * len(readings)} rows ({sum(r[2] for r in readings)} with the paired 95% CI above zero); in the "
        "paper's Table 3 it is higher in every row. "
        + " ".join(r[0] for r in readings)
        + " The budget is a fraction of the paper's (see above), so the absolute scores are not expected to "
        "match Table 3; the comparison is the sign of AORPO − MASAC within each row.",
        "",
        *sections,
        "## Training time",
        "",
        table(
            ["task", "algorithm", "training s (chunks)", "whole call s (with compilation)"],
            [[t, LABELS[a], f"{w:.0f}", "reused" if tot is None else f"{tot:.0f}"] for t, a, w, tot in times],
        ),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())
    print(f"written: {args.out}")


def task_section(task, over, res, runs, cross_s) -> str:
    header = ["adversaries \\ agents", *(f"{LABELS[a]} (ours)" for a in ALGOS)]
    header += [f"{LABELS[a]} (paper)" for a in ALGOS] + ["AORPO − MASAC (ours)"]
    rows = []
    for adv in ALGOS:
        row = [LABELS[adv]]
        row += [fmt(*mean_ci(res[adv, ag].episode_score)) for ag in ALGOS]
        row += [f"{PAPER[task][adv, ag]:.2f}" for ag in ALGOS]
        row.append(fmt(*mean_ci(diff(res, adv))))
        rows.append(row)
    detail = [
        [
            LABELS[adv],
            LABELS[ag],
            fmt(*mean_ci(r.episode_agent_return)),
            fmt(*mean_ci(r.episode_adversary_return)),
            ", ".join(f"{s:.2f}" for s in r.score),
        ]
        for (adv, ag), r in res.items()
    ]
    aorpo_only = {k: v for k, v in over["aorpo"].items() if over["masac"].get(k) != v}
    return "\n".join(
        [
            f"## {TASKS[task]} ({task})",
            "",
            table(header, rows),
            "",
            table(
                ["adversaries", "agents", "agent-team return", "adversary-team return", "score per seed"],
                detail,
            ),
            "",
            "Settings on top of conf/task/"
            + task
            + ".yaml: both: "
            + ", ".join(f"`{k}={v}`" for k, v in over["masac"].items())
            + "; AORPO only: "
            + ", ".join(f"`{k}={v}`" for k, v in aorpo_only.items())
            + f". Runs: `{_rel(runs['masac'])}`, `{_rel(runs['aorpo'])}`. "
            + f"Cross-play of the 4 pairings: {cross_s:.0f} s.",
            "",
        ]
    )


def _rel(path: Path) -> str:
    return (
        os.path.relpath(path) if Path(path).is_absolute() and Path.cwd() in Path(path).parents else str(path)
    )


def diff(res, adv) -> np.ndarray:
    """AORPO column minus MASAC column of row ``adv``, episode by episode."""
    return res[adv, "aorpo"].episode_score - res[adv, "masac"].episode_score


def reading(task: str, res) -> tuple[str, int, int]:
    """A sentence on ``task``, the number of rows where the AORPO column has the higher mean score, and the
    number of those where the paired 95% CI excludes zero."""
    parts, wins, sure = [], 0, 0
    for adv in ALGOS:
        m, ci = mean_ci(diff(res, adv))
        wins += m > 0
        sure += m > ci
        paper = PAPER[task][adv, "aorpo"] - PAPER[task][adv, "masac"]
        parts.append(f"{m:+.2f} ± {ci:.2f} against {LABELS[adv]} adversaries (paper {paper:+.2f})")
    return f"{TASKS[task]}: AORPO − MASAC = " + ", ".join(parts) + ".", wins, sure


if __name__ == "__main__":
    main()
