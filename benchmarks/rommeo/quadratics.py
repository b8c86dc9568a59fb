"""ROMMEO paper Fig. 2: the Max of Two Quadratics differential game (games/max_of_two_quadratics) with
ROMMEO-AC and the continuous baselines (MASQL, PR2-AC, MADDPG, independent DDPG, DDPG-OM), 20 seeds each,
vmapped in one trial per algorithm; the algorithms are one ``marlow sweep`` (Ray, a fresh process per
trial, finished trials skipped on a rerun), under benchmarks/rommeo/runs/quadratics/ (git-ignored).

Budget: the paper's 200 episodes x 25 steps per seed, one update per step (the task's config), a greedy
evaluation episode every 5 episodes. "Reached the global optimum": the final greedy reward per step is
above 5 (the local optimum (-5, -5) gives at most 0, the global one (5, 5) gives 10).

    .venv/bin/python -m benchmarks.rommeo.quadratics [--seeds 20] [--episodes 200] [--algos a,b,...]
                                                     [--batch N] [--ray-cpus N]

Writes benchmarks/rommeo/quadratics.md and quadratics_fig2{a,b,c}.png; with ``--batch N`` (every
algorithm's minibatch set to N instead of its default, 512 for all of them) quadratics_b{N}.md and
quadratics_b{N}_fig2{a,b,c}.png, from runs kept apart from the default ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.harness import grid_sweep, mean_ci, per_seed, steps, table, whole  # noqa: E402
from marlow.envs.games import max_of_two_quadratics_reward  # noqa: E402
from marlow.runtime.report import plot_runs  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"  # git-ignored run directories

ALGOS = ("rommeo_ac", "masql", "pr2_ac", "maddpg", "ddpg", "ddpg_om")
LABELS = {
    "rommeo_ac": "ROMMEO-AC",
    "masql": "MASQL",
    "pr2_ac": "PR2-AC",
    "maddpg": "MADDPG",
    "ddpg": "DDPG",
    "ddpg_om": "DDPG-OM",
}
TASK = "games/max_of_two_quadratics"
EPISODE = 25


def path_plot(run_dir, seeds: list[int], out) -> None:
    """Fig. 2a: the reward surface and the greedy joint action of some ROMMEO-AC seeds over training."""
    g = np.linspace(-10, 10, 201)
    a1, a2 = np.meshgrid(g, g, indexing="ij")
    r = np.asarray(max_of_two_quadratics_reward(a1, a2))
    fig, ax = plt.subplots(figsize=(6, 5.2))
    cs = ax.contourf(a1, a2, r, levels=np.linspace(-60, 10, 29), cmap="viridis", extend="min")
    fig.colorbar(cs, ax=ax, label="reward")
    x0, x1 = per_seed(run_dir, "diag/pi_mean/agent_0"), per_seed(run_dir, "diag/pi_mean/agent_1")
    for s in seeds:
        ax.plot(x0[s], x1[s], "-", color="white", lw=0.8, alpha=0.8)
        ax.scatter(x0[s], x1[s], c=np.arange(x0.shape[1]), cmap="autumn", s=12, zorder=3)
        ax.plot(x0[s, -1], x1[s, -1], "o", ms=10, mfc="none", mec="red")
    ax.plot(0, 0, "r*", ms=12)
    ax.set(xlabel="agent 0 action", ylabel="agent 1 action", title="ROMMEO-AC learning paths")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def means_plot(run_dir, out) -> None:
    """Fig. 2c: means of pi and rho over training (mean over seeds)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = steps(run_dir) / EPISODE
    for key, style, label in (
        ("rho_mean/agent_0", "-", "rho^0 (agent 0's model of agent 1)"),
        ("rho_mean/agent_1", "-", "rho^1 (agent 1's model of agent 0)"),
        ("pi_mean/agent_1", "--", "pi^1 (agent 1's policy)"),
        ("pi_mean/agent_0", "--", "pi^0 (agent 0's policy)"),
    ):
        ax.plot(x, per_seed(run_dir, f"diag/{key}").mean(0), style, label=label)
    ax.axhline(5, color="grey", lw=0.6)
    ax.axhline(-5, color="grey", lw=0.6)
    ax.set(xlabel="episodes", ylabel="action (mean over seeds)", title="ROMMEO-AC: means of pi and rho")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--algos", default=",".join(ALGOS))
    p.add_argument("--batch", type=int, default=0, help="minibatch size for every algorithm (0: defaults)")
    p.add_argument("--note", default="", help="a remark about these runs, appended to the table file")
    p.add_argument("--ray-cpus", default="", help="CPUs of the local Ray instance (default: all)")
    args = p.parse_args()
    algos = [a for a in args.algos.split(",") if a]
    tag = f"_b{args.batch}" if args.batch else ""
    grid = [
        f"algo={','.join(algos)}",
        f"task={TASK}",
        f"seeds=0-{args.seeds - 1}",
        f"total_steps={EPISODE * args.episodes}",
        "eval_every=125",
        "eval_episodes=1",
        *([f"batch_size={args.batch}"] if args.batch else []),
    ]
    trials = grid_sweep(RUNS / "quadratics" / (tag.lstrip("_") or "defaults"), grid, args.ray_cpus)
    trials = {t["swept"]["algo"]: t for t in trials}
    runs = {algo: Path(trials[algo]["run_dir"]) for algo in algos}
    times = {algo: float(per_seed(runs[algo], "wall_time")[0, -1]) for algo in algos}
    totals = {algo: trials[algo].get("seconds") for algo in algos}  # None: finished by an earlier call

    rows = []
    for algo in algos:
        final = per_seed(runs[algo], "eval/team_return")[:, -1] / EPISODE
        m, ci = mean_ci(final)
        rows.append(
            [
                LABELS[algo],
                f"{np.mean(final > 5.0):.2f}",
                f"{np.mean(np.abs(final) < 0.5):.2f}",
                f"{m:.2f} ± {ci:.2f}",
                f"{times[algo]:.1f}",
            ]
        )
    plot_runs(
        [runs[a] for a in algos],
        HERE / f"quadratics{tag}_fig2b.png",
        y="eval/team_return",
        labels=[LABELS[a] for a in algos],
        title=f"Max of Two Quadratics: greedy return per 25-step episode ({args.seeds} seeds)",
        reference={"global optimum": 10.0 * EPISODE, "local optimum": 0.0},
    )
    if "rommeo_ac" in runs:
        path_plot(runs["rommeo_ac"], list(range(min(5, args.seeds))), HERE / f"quadratics{tag}_fig2a.png")
        means_plot(runs["rommeo_ac"], HERE / f"quadratics{tag}_fig2c.png")
    batch = f"minibatch {args.batch} for every algorithm (default 512)" if args.batch else "minibatch 512"
    md = [
        "# ROMMEO Fig. 2: Max of Two Quadratics",
        "",
        f"`.venv/bin/python -m benchmarks.rommeo.quadratics --seeds {args.seeds} --episodes {args.episodes}"
        + (f" --batch {args.batch}`" if args.batch else "`"),
        "",
        f"{args.seeds} seeds per algorithm (vmapped, one process), {args.episodes} episodes x 25 steps, one "
        f"update per step, {batch}, otherwise default configs (`marlow/conf/algo/*.yaml` with "
        "`marlow/conf/task/games/max_of_two_quadratics.yaml`). Global: final greedy reward per step > 5 "
        "(the joint action is in the basin of (5, 5)); local: within 0.5 of the local optimum's 0. Time: "
        "training wall-clock seconds for all seeds of one algorithm (no compilation), 2-core CPU.",
        "",
        table(["algorithm", "reached global", "at local", "final reward/step (95% CI)", "time (s)"], rows),
        "",
        f"Whole sweep ({len(algos)} algorithms x {args.seeds} seeds): training {sum(times.values()):.1f} s; "
        f"with compilation and evaluation {whole(totals)}.",
        "",
        f"![Fig. 2b](quadratics{tag}_fig2b.png)",
    ]
    if "rommeo_ac" in runs:  # the learning paths and the means of pi and rho are ROMMEO-AC's
        md += [f"![Fig. 2a](quadratics{tag}_fig2a.png)", f"![Fig. 2c](quadratics{tag}_fig2c.png)"]
    if args.note:
        md += ["", f"Note: {args.note}"]
    (HERE / f"quadratics{tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
