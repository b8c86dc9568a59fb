"""The MAG paper's Figs. 2-5 on SMAX at a low-data budget that fits this 2-core machine: MAG against MAMBA
(the same world model and schedule; planning is the only difference) and the model-free baselines
Attention-PPO, G2A and CommNet; with ``--ablation`` also MAG's L and H on one map (Figs. 4-5).

    .venv/bin/python -m benchmarks.mag.smax [--tasks smax/3s_vs_3z=24000,smax/2s3z=16000] [--seeds 3]
        [--arms mag,mamba,attention_ppo,g2a,commnet] [--ablation smax/3s_vs_3z=24000] [--ablation-seeds 2]
        [--reuse] [--out benchmarks/mag/smax.md]

SMAX stands in for SMAC (the StarCraft II binary cannot be installed here): its battles, enemy AI, reward
and episode lengths differ (marlow/envs/smax.py), so none of these numbers is comparable with the paper's.

Schedule (MAMBA and MAG): the ``small`` preset (a 64-wide world model with 8 x 8 latents and one
attention layer; 10 model updates of 16 windows x 20 steps and, for MAG, 10 error-predictor updates, then
one imagination round, every 100 env steps) with ``agent_batch=8`` windows per imagination round
(imagination from 8 x 20 = 160 posterior states) and MAG's model learning rate 5e-4 for both. MAMBA's
SMAC schedule (MAG's fork) runs 60 model updates of 40 x 20 windows and 4 imagination rounds of 40 windows
after every episode (about every 50 env steps): per env step about 1/30 of its model updates and 1/60 of
its imagination. MAG plans with the paper's Table 1 L and H of each map (conf/task/smax/<map>.yaml).
Attention-PPO, G2A and CommNet run at the SMAX defaults (conf/task/smax.yaml) over the same env steps.
Seeds of an arm run vmapped in one process. Reported: the greedy win rate (32 battles per evaluation)
against env steps (Fig. 2 style), the final win rate (last two evaluations) and its area under the curve;
for the Fig. 3 analogue the accumulated model error along the imagination horizon: predicted by MAG's R_m
for the states MAG's planning keeps against random candidates (what MAMBA's prior draw keeps), and the
realised open-loop reconstruction error on freshly collected steps for MAG and MAMBA, averaged over the
run's second half. The Figs. 4-5 analogue reports the same for MAG at other L and H.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
from benchmarks.harness import run_sweep, table  # noqa: E402
from marlow.runtime.report import aligned_seeds, load_run, plot_grid  # noqa: E402

RUNS = HERE / "runs"
WORLD = ["preset=small", "agent_batch=8", "model_lr=0.0005"]
MODEL_FREE = ("attention_ppo", "g2a", "commnet")
ARMS = {
    "mag": ("mag", WORLD),
    "mamba": ("mamba", WORLD),
    **{name: (name, []) for name in MODEL_FREE},
    # Figs. 4-5 analogue: MAG with other L (candidates) or H (planning horizon); L = 1 is MAMBA exactly
    # (tests/test_mag.py), so the ``mamba`` arm stands for it
    "mag_L3": ("mag", [*WORLD, "plan_candidates=3"]),
    "mag_H2": ("mag", [*WORLD, "plan_horizon=2"]),
    "mag_H6": ("mag", [*WORLD, "plan_horizon=6"]),
}


def curve(run_dir: Path, col: str) -> tuple[np.ndarray, np.ndarray]:
    return aligned_seeds(load_run(run_dir), y=col)  # (env steps, [seeds, evaluations])


def se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def horizon(run_dir: Path, prefix: str) -> np.ndarray | None:
    """``prefix_kXX`` columns averaged over the second half of the evaluations and the seeds: ``[K]``."""
    run = load_run(run_dir)
    cols = sorted(c for c in next(iter(run.metrics.values())) if c.startswith(prefix + "_k"))
    if not cols:
        return None
    vals = []
    for c in cols:
        _, v = curve(run_dir, c)
        vals.append(np.nanmean(v[:, v.shape[1] // 2 :]))
    return np.asarray(vals)


def plot_horizon(curves: dict[str, np.ndarray], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, v in curves.items():
        ax.plot(np.arange(1, len(v) + 1), v, marker="o", label=label)
    ax.set_xlabel("imagination / prediction step k")
    ax.set_ylabel("accumulated model error")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def at_k(run_dir: Path, prefix: str, k: int) -> str:
    v = horizon(run_dir, prefix)
    return f"{v[min(k, len(v)) - 1]:.2f}" if v is not None else "-"


def ablation(ns, out: Path, arm_seeds: dict[str, int]) -> list[str]:
    """Figs. 4-5 analogue: MAG's win rate and model error against L (candidates) and H (planning horizon)
    on one map, the other fixed at the map's Table 1 value; L = 1 is MAMBA (same seeds' runs)."""
    task, steps = ns.ablation.split("=")
    arms = {"mamba": "1, -", "mag_L3": "3, 10", "mag": "5, 10", "mag_H2": "5, 2", "mag_H6": "5, 6"}
    runs, rows = {}, []
    for arm, lh in arms.items():
        algo, extra = ARMS[arm]
        overrides = [*extra, f"total_steps={steps}", f"eval_every={ns.eval_every}", "eval_episodes=32"]
        overrides.append("checkpoint_every=1000")
        seeds = arm_seeds.get(arm, ns.seeds if arm in ("mag", "mamba") else ns.ablation_seeds)
        run_dir, wall, _ = run_sweep(
            algo, task, seeds, overrides, reuse=True, tag=arm[len(algo) :], root=RUNS
        )
        runs[f"{arm} (L, H = {lh})"] = run_dir
        _, win = curve(run_dir, "eval/win_rate")
        final, auc = np.nanmean(win[:, -2:], axis=1), np.nanmean(win, axis=1)
        rows.append(
            [
                arm,
                lh,
                str(seeds),
                f"{final.mean():.2f} ({se(final):.2f})",
                f"{auc.mean():.2f} ({se(auc):.2f})",
                at_k(run_dir, "loss/pred_err_acc", 15),
                at_k(run_dir, "loss/pred_err_random_acc", 15),
                at_k(run_dir, "loss/real_err_acc", 10),
                f"{wall:.0f}",
            ]
        )
    png = out.parent / f"{out.stem}_ablation.png"
    plot_grid(list(runs.values()), png, y="eval/win_rate", labels=list(runs), title=f"{task}: MAG's L and H")
    head = [
        "arm",
        "L, H",
        "seeds",
        "final win rate",
        "AUC",
        "pred. err k=15, planned",
        "random",
        "real err k=10",
    ]
    return [
        f"## Figs. 4-5 analogue: L and H on {task}",
        "",
        f"MAG with L (candidates) in {{1, 3, 5}} at H = 10 and H (planning horizon) in {{2, 6, 10}} at L = 5 "
        f"(`--ablation {ns.ablation}`), {steps} env steps; L = 1 is MAMBA exactly (tests/test_mag.py), so "
        "the MAMBA run above stands for it, and L, H = 5, 10 is the MAG run above. The predicted errors are "
        "R_m's accumulated error at k = 15 of the states planning keeps and of random candidates, the "
        "realised one the open-loop error after 10 steps on fresh real steps (as in the Fig. 3 analogue).",
        "",
        table([*head, "training wall s"], rows),
        "",
        f"![{task} L and H]({png.name})",
        "",
    ]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", default="smax/3s_vs_3z=24000,smax/2s3z=16000", help="task=env steps,...")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--arms", default="mag,mamba,attention_ppo,g2a,commnet")
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--out", default=str(HERE / "smax.md"))
    p.add_argument("--arm-seeds", default="", help="arm=seeds,... (e.g. the ablation arms at 2 seeds)")
    p.add_argument("--ablation", default="", help="task=env steps: Figs. 4-5 analogue (L, H) on that task")
    p.add_argument("--ablation-seeds", type=int, default=2)
    ns = p.parse_args()
    arm_seeds = {k: int(v) for k, v in (kv.split("=") for kv in ns.arm_seeds.split(",") if kv)}
    out = Path(ns.out)
    lines = [
        "# MAG vs MAMBA vs the model-free baselines on SMAX (the MAG paper's Figs. 2-5, low-data budget)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on a 2-core CPU machine by `python -m benchmarks.mag.smax "
        f"--tasks {ns.tasks} --seeds {ns.seeds} --arms {ns.arms} --eval-every {ns.eval_every}"
        + (f" --ablation {ns.ablation} --ablation-seeds {ns.ablation_seeds}" if ns.ablation else "")
        + "`. **SMAX, not "
        "SMAC**: JaxMARL's re-implementation with a heuristic enemy, 100-step battles and its own reward, so "
        "no number here is comparable with the paper's. Schedule: benchmarks/mag/smax.py's docstring (the "
        f"`small` preset with `{' '.join(WORLD)}` for MAMBA and MAG; Attention-PPO, G2A and CommNet at the "
        "SMAX defaults). "
        "Win rate = greedy battles won of 32 per evaluation; final = mean of the last two evaluations per "
        "seed; AUC = mean over all evaluations; mean (standard error) over seeds.",
        "",
    ]
    for spec in ns.tasks.split(","):
        task, steps = spec.split("=")
        steps = int(steps)
        runs, rows = {}, []
        for arm in ns.arms.split(","):
            algo, extra = ARMS[arm]
            overrides = [
                *extra,
                f"total_steps={steps}",
                f"eval_every={ns.eval_every}",
                "eval_episodes=32",
                "checkpoint_every=1000",
            ]
            if algo in MODEL_FREE:  # whole iterations (16 envs x 125 steps) per evaluation
                overrides += ["num_envs=16", "rollout_steps=125"]
            seeds = arm_seeds.get(arm, ns.seeds)
            tag = arm[len(algo) :]
            run_dir, wall, _ = run_sweep(algo, task, seeds, overrides, reuse=ns.reuse, tag=tag, root=RUNS)
            runs[arm] = run_dir
            _, win = curve(run_dir, "eval/win_rate")
            final, auc = np.nanmean(win[:, -2:], axis=1), np.nanmean(win, axis=1)
            rows.append(
                [
                    f"{arm} ({seeds} seeds)",
                    f"{steps:,}",
                    f"{final.mean():.2f} ({se(final):.2f})",
                    f"{auc.mean():.2f} ({se(auc):.2f})",
                    f"{wall:.0f}",
                ]
            )
        name = task.split("/")[-1]
        png = out.parent / f"{out.stem}_{name}.png"
        plot_grid(
            list(runs.values()), png, y="eval/win_rate", labels=list(runs), title=f"{task} (SMAX), win rate"
        )
        lines += [
            f"## {task}",
            "",
            table(["arm", "env steps per seed", "final win rate", "AUC", "training wall s"], rows),
            "",
            f"![{task}]({png.name})",
            "",
        ]
        err = {}
        if "mag" in runs:
            for label, prefix in (
                ("MAG: planned states, predicted (R_m)", "loss/pred_err_acc"),
                ("MAG: random candidates, predicted (R_m)", "loss/pred_err_random_acc"),
                ("MAG: realised", "loss/real_err_acc"),
            ):
                v = horizon(runs["mag"], prefix)
                if v is not None:
                    err[label] = v
        if "mamba" in runs:
            v = horizon(runs["mamba"], "loss/real_err_acc")
            if v is not None:
                err["MAMBA: realised"] = v
        if err:
            epng = out.parent / f"{out.stem}_{name}_error.png"
            plot_horizon(err, epng, f"{task}: accumulated model error (second half of the run)")
            ks = max(len(v) for v in err.values())
            pick = [k for k in (1, 2, 5, 10, ks) if k <= ks]
            erows = [
                [lab, *[f"{v[k - 1]:.2f}" if k <= len(v) else "-" for k in pick]] for lab, v in err.items()
            ]
            lines += [
                f"Fig. 3 analogue on {task}: accumulated model error after k steps (mean over the second "
                "half of the run and the seeds). Predicted = MAG's R_m summed over the agents for the "
                "imagined states; realised = the open-loop observation error (smooth L1, summed over "
                "features, mean over agents) on freshly collected steps, with the real actions.",
                "",
                table(["error", *[f"k = {k}" for k in pick]], erows),
                "",
                f"![{task} error]({epng.name})",
                "",
            ]
        out.write_text("\n".join(lines) + "\n")  # each task's section as soon as it is measured
    if ns.ablation:
        lines += ablation(ns, out, arm_seeds)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
