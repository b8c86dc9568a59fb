"""ROMMEO Fig. 1 sensitivity: under which settings does each tabular method reach (A, A) in the iterated
climbing game? 100 seeds per setting, one setting changed at a time from the defaults of
``marlow/conf/algo/*.yaml`` (climbing.py's runs).

The settings, and why each is a candidate for the gap between the paper's Fig. 1b (ROMMEO-Q above every
baseline) and our defaults (FMQ and PR2-Q converge in 100/100 seeds, like ROMMEO-Q):

- ``online``, every algorithm: learn from the latest transition only (batch 1 from a one-transition
  buffer), as the ROMMEO reference code does, instead of our 32-transition replay mini-batches, which
  average the noisy miscoordination rewards.
- ``(C,C) = (5,3)``, every algorithm: the payoff the paper prints at (C, C) (agent 2 gets 3) instead of
  the shared 5 of the reference code and of Claus & Boutilier's game.
- FMQ: the heuristic weight ``c`` (Kapetanakis & Kudenko: c = 10; c = 0 is plain Boltzmann Q-learning),
  the temperature's decay rate ``temp_decay`` (K&K: 0.006 per joint action; faster decay stops exploring
  earlier) and the Q learning rate ``lr`` (K&K: 0.9).
- PR2-Q: the temperature ``alpha`` (derivation: 1), kept constant instead of annealed
  (``alpha_decay=0``), and the epsilon-greedy mixing (reference code: 0.1).
- ROMMEO-Q: the same temperature and exploration settings, for comparison.
- Budget: each run's greedy joint action is read after 25, 50 and 100 episodes (the paper plots 100).

Every family is one ``marlow sweep`` (Ray, one fresh process per trial); its trials are
``runs/sensitivity/<family>/games_climbing/<algo>[/<key>=<value>]/seeds=0-99`` (benchmarks/rommeo/runs,
git-ignored), and a rerun skips the finished ones. climbing.py reads the "defaults" family.

    .venv/bin/python -m benchmarks.rommeo.sensitivity [--seeds 100] [--episodes 100] [--ray-cpus N]

Writes benchmarks/rommeo/climbing_sensitivity.md and climbing_sensitivity.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import stats

import marlow
from benchmarks.harness import grid_sweep, per_seed, table

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"  # git-ignored run directories

ALGOS = ("rommeo_q", "rommeo_q_emp", "iql", "jal", "wolf_phc", "fmq", "pr2_q")
LABELS = {
    "rommeo_q": "ROMMEO-Q",
    "rommeo_q_emp": "ROMMEO-Q-EMP",
    "iql": "IQL",
    "jal": "JAL",
    "wolf_phc": "WoLF-PHC",
    "fmq": "FMQ",
    "pr2_q": "PR2-Q",
}
TASK = "games/climbing"
# family -> (algorithms, fixed overrides of the family, {swept key: values})
FAMILIES: dict[str, tuple[tuple[str, ...], list[str], dict[str, str]]] = {
    "defaults": (ALGOS, [], {}),
    "online": (ALGOS, ["batch_size=1", "buffer_size=1", "warmup_steps=1"], {}),
    "payoff_5_3": (ALGOS, ["task.cc_payoff=[5,3]"], {}),
    "fmq_c": (("fmq",), [], {"c": "0,1,3"}),
    "fmq_temp_decay": (("fmq",), [], {"temp_decay": "0.02,0.06"}),
    "fmq_lr": (("fmq",), [], {"lr": "0.1"}),
    "soft_alpha": (("pr2_q", "rommeo_q"), [], {"alpha": "0.1,10"}),
    "soft_alpha_constant": (("pr2_q", "rommeo_q"), ["alpha_decay=0"], {}),
    "soft_epsilon": (("pr2_q", "rommeo_q"), [], {"epsilon": "0,0.3"}),
}
SWEEPS = RUNS / "sensitivity"  # one sweep directory per family
OPTIMUM, STEPS_PER_EPISODE = 11.0, 25


def swept_defaults() -> dict[str, list[str]]:
    """Per algorithm, the config keys its own families change (their defaults are printed on the page;
    the every-algorithm families, online and the payoff, are described in words)."""
    keys: dict[str, dict[str, None]] = {}  # an ordered set per algorithm
    for algos, fixed, swept in FAMILIES.values():
        if algos == ALGOS:
            continue
        for algo in algos:
            keys.setdefault(algo, {}).update(dict.fromkeys([*swept, *(f.split("=")[0] for f in fixed)]))
    return {algo: list(k) for algo, k in keys.items()}


def sweep_family(name: str, seeds: int, episodes: int, ray_cpus: str, runs: Path) -> list[dict]:
    """Run (or skip, when finished) one family's sweep; returns its trials (sweep.json)."""
    algos, fixed, swept = FAMILIES[name]
    args = [
        f"algo={','.join(algos)}",
        f"task={TASK}",
        f"seeds=0-{seeds - 1}",
        f"total_steps={STEPS_PER_EPISODE * episodes}",
        "num_envs=1",
        f"eval_every={STEPS_PER_EPISODE}",
        "eval_episodes=1",
        *fixed,
        *(f"{k}={v}" for k, v in swept.items()),
    ]
    return grid_sweep(runs / name, args, ray_cpus)


def outcome(run_dir: Path, episodes: int) -> dict:
    """Per setting: the fraction of seeds whose greedy joint action is (A, A) after 25, 50 and all
    ``episodes`` episodes, the final greedy (A,A)/(B,B)/(C,C) counts and the mean final P(A) x P(A)."""
    ret = per_seed(run_dir, "eval/team_return") / STEPS_PER_EPISODE  # greedy reward per step
    at = {e: np.mean(np.isclose(ret[:, e - 1], OPTIMUM)) for e in (25, 50, episodes) if e <= ret.shape[1]}
    p_aa = per_seed(run_dir, "diag/pi_a0/agent_0")[:, -1] * per_seed(run_dir, "diag/pi_a0/agent_1")[:, -1]
    cc = np.mean(marlow.run_config(run_dir).experiment.task_options.get("cc_payoff", (5.0, 5.0)))
    joint = [int(np.sum(np.isclose(ret[:, -1], v))) for v in (11.0, 7.0, cc)]  # team reward per step
    wall = float(per_seed(run_dir, "wall_time")[0, -1])  # the runner's training time, all seeds
    return {
        "at": at,
        "joint": joint,
        "p_aa": float(np.mean(p_aa)),
        "curve": np.isclose(ret, OPTIMUM),
        "wall": wall,
    }


def setting_label(name: str, trial: dict) -> str:
    """The setting a trial changes from the defaults (its family's fixed and swept overrides)."""
    _, fixed, swept = FAMILIES[name]
    if name == "online":
        return "online (latest transition only)"
    if name == "payoff_5_3":
        return "(C,C) = (5,3)"
    chosen = [o for o in trial["overrides"] if o.split("=", 1)[0] in swept]  # one value: not in "swept"
    return ", ".join(chosen + fixed) or "defaults"


def claims(results: list[tuple[str, str, dict]], seeds: int, episodes: int) -> list[str]:
    """The Fig. 1b claim (ROMMEO-Q reaches (A, A) significantly more often than every baseline) tested
    setting by setting: ROMMEO-Q at the same setting where it was run, else at its defaults, against each
    baseline; one-sided Fisher exact test on the seeds at (A, A), p < 0.05."""
    hits = {(a, st): int(round(r["at"][episodes] * seeds)) for a, st, r in results}
    wins, ties = [], []
    for algo, setting, _ in results:
        if algo == "rommeo_q":
            continue
        ours = hits.get(("rommeo_q", setting), hits[("rommeo_q", "defaults")])
        theirs = hits[(algo, setting)]
        p = stats.fisher_exact([[ours, seeds - ours], [theirs, seeds - theirs]], "greater").pvalue
        (wins if p < 0.05 else ties).append(
            f"{LABELS[algo]} {setting} ({theirs} vs ROMMEO-Q {ours}, p = {p:.2g})"
        )
    strong = [f"{LABELS[a]} {st}" for a, st, _ in results if a in ("fmq", "pr2_q") and hits[(a, st)] >= 95]
    return [
        "## The Fig. 1b claim, setting by setting",
        "",
        "ROMMEO-Q at the same setting where it was run (defaults, online, (C,C) = (5,3), its alpha and "
        "epsilon settings), else at its defaults, against each baseline at that setting (one-sided Fisher "
        f"exact test on the seeds at (A, A) after {episodes} episodes, p < 0.05).",
        "",
        f"- ROMMEO-Q significantly ahead ({len(wins)}): " + ("; ".join(wins) or "none") + ".",
        f"- Not significantly ahead ({len(ties)}): " + ("; ".join(ties) or "none") + ".",
        f"- Baseline settings at 95 or more of {seeds} seeds: " + (", ".join(strong) or "none") + ".",
    ]


def wilson(p: float, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of a proportion ``p`` of ``n`` seeds."""
    z = 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def plot(results: list[tuple[str, str, dict]], episodes: int, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), sharey=True)
    groups = {
        "every algorithm: defaults / online / (C,C)=(5,3)": lambda algo, s: (
            s in ("defaults", "online (latest transition only)", "(C,C) = (5,3)")
        ),
        "FMQ settings": lambda algo, s: algo == "fmq",
        "PR2-Q and ROMMEO-Q settings": lambda algo, s: algo in ("pr2_q", "rommeo_q"),
    }
    colour = {a: f"C{i}" for i, a in enumerate(ALGOS)}
    for i, (ax, (title, keep)) in enumerate(zip(axes, groups.items(), strict=True)):
        for algo, setting, r in results:
            if keep(algo, setting):
                ls = "--" if setting.startswith("online") else (":" if setting.startswith("(C,C)") else "-")
                style = {"color": colour[algo]} if i == 0 else {}  # the first panel: a colour per algorithm
                x = np.arange(1, len(r["curve"][0]) + 1)
                ax.plot(x, r["curve"].mean(0), ls, label=f"{LABELS[algo]}: {setting}", **style)
        ax.set(title=title, xlabel="episodes")
        ax.legend(fontsize=6.5, loc="center right")
    axes[0].set_ylabel("fraction of seeds with greedy (A, A)")
    fig.suptitle(f"Iterated climbing game: convergence to the global optimum ({episodes} episodes)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--ray-cpus", default="", help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--runs", type=Path, default=SWEEPS, help="where the sweeps go")
    p.add_argument("--out", type=Path, default=HERE, help="where the page and the plot go")
    args = p.parse_args()
    families = args.families.split(",")
    bad = [f for f in families if f not in FAMILIES]
    if bad:
        p.error(f"unknown families {bad}; choose from {list(FAMILIES)}")
    t0 = time.perf_counter()
    records = {
        name: sweep_family(name, args.seeds, args.episodes, args.ray_cpus, args.runs) for name in families
    }
    wall = time.perf_counter() - t0

    results = []  # (algo, setting, outcome)
    for name, trials in records.items():
        for trial in trials:
            algo = trial["swept"]["algo"]
            results.append((algo, setting_label(name, trial), outcome(Path(trial["run_dir"]), args.episodes)))
    order = {a: i for i, a in enumerate(ALGOS)}
    results.sort(key=lambda r: (order[r[0]], r[1] != "defaults"))
    eps = [e for e in (25, 50, args.episodes) if e <= args.episodes]
    rows = []
    for algo, setting, r in results:
        lo, hi = wilson(r["at"][args.episodes], args.seeds)
        rows.append(
            [
                LABELS[algo],
                setting,
                *(f"{r['at'][e]:.2f}" for e in eps[:-1]),
                f"**{r['at'][args.episodes]:.2f}** [{lo:.2f}, {hi:.2f}]",
                " / ".join(map(str, r["joint"])),
                f"{r['p_aa']:.3f}",
            ]
        )
    plot(results, args.episodes, args.out / "climbing_sensitivity.png")
    defaults = "; ".join(
        f"{LABELS[algo]}: " + ", ".join(f"{k}={getattr(marlow.config(algo, TASK).algo, k):g}" for k in keys)
        for algo, keys in swept_defaults().items()
    )
    md = [
        "# ROMMEO Fig. 1 sensitivity: which settings reach (A, A) in the iterated climbing game",
        "",
        "`.venv/bin/python -m benchmarks.rommeo.sensitivity "
        f"--seeds {args.seeds} --episodes {args.episodes}`",
        "",
        f"{args.seeds} seeds per setting (vmapped in one trial), {args.episodes} episodes x 25 steps, one "
        "update per step; every family is one `marlow sweep`. A setting changes one thing from the "
        f"defaults of `marlow/conf/algo/<algo>.yaml` (for reference: {defaults}). 'Greedy (A,A) after e "
        "episodes': the fraction of seeds whose greedy joint action is (A, A) after e episodes, with the "
        "95% Wilson interval at the end. P(A,A): the mean over seeds of the product of the two final "
        f"policies' probabilities of A. Training time of all {len(results)} trials: "
        f"{sum(r['wall'] for _, _, r in results):.0f} s on this 2-core machine (the runner's logged "
        "training time, without start-up and compilation; each trial's process added about 30-75 s of "
        f"those). This call took {wall:.0f} s (finished trials of an earlier call are skipped).",
        "",
        table(
            [
                "algorithm",
                "setting",
                *(f"greedy (A,A) after {e}" for e in eps[:-1]),
                f"greedy (A,A) after {args.episodes} [95% CI]",
                "final greedy (A,A) / (B,B) / (C,C) seeds",
                "P(A,A)",
            ],
            rows,
        ),
        "",
        *claims(results, args.seeds, args.episodes),
        "",
        "Readings: benchmarks/rommeo/README.md.",
        "",
        "![sensitivity](climbing_sensitivity.png)",
    ]
    (args.out / "climbing_sensitivity.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
