"""AORPO paper Fig. 3: on games/climb both agents' greedy actions should converge to the unique Nash
equilibrium of each state: the lower-left landmark (-0.5, -0.5) in state 1 and the upper-right one
(0.5, 0.5) in state 2 (marlow.envs.games.Climb documents the game and why the equilibrium is unique).

    .venv/bin/python -m benchmarks.aorpo.climb [--steps 20000] [--seeds 5] [--algos aorpo,masac]

Trains through marlow's Loop (the runner's jitted chunk, vmapped over seeds) and, after every chunk of
``eval_every`` env steps, reads each seed's greedy actions (a, b) in both states. Writes
benchmarks/aorpo/climb.md (a seed converged when both agents are within ``--tol`` of the landmark in both
states at the end) and climb.png (the action paths in the (a, b) plane per state, like Fig. 3).

Settings: the paper gives no Climb column in Table 1; AORPO uses the scaled CPU model budgets
(marlow.analysis.demo.AORPO_CPU) with the schedules shrunk to the shorter run (warm-ups and retraining
every 2,000 steps, an epoch of 200 steps so k grows from 1 on); MASAC its defaults with the same
warm-up. Both learn from step 2,000.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

HERE = Path(__file__).resolve().parent
import marlow  # noqa: E402
from benchmarks.harness import table  # noqa: E402
from marlow.analysis.demo import AORPO_CPU  # noqa: E402
from marlow.envs.games import CLIMB_LANDMARKS  # noqa: E402
from marlow.experiment.loop import Loop  # noqa: E402
from marlow.runtime.runner import build, seed_keys  # noqa: E402

TASK = "games/climb"
COMMON = ["warmup_steps=2000", "eval_every=1000"]
AORPO = {**AORPO_CPU, "model_warmup_steps": "2000", "model_train_every": "2000", "epoch_steps": "200"}


def train(algo: str, steps: int, seeds: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Returns (env steps ``[C]``, greedy actions ``[C, seeds, state, agent]``, seconds)."""
    extra = [f"{k}={v}" for k, v in AORPO.items()] if algo == "aorpo" else []
    cfg = marlow.config(
        args=[f"algo={algo}", f"task={TASK}", f"total_steps={steps}", f"num_seeds={seeds}", *COMMON, *extra]
    )
    run = build(cfg)
    cfg, env, alg = run.cfg, run.env, run.algo
    loop = Loop(env, run.learner, cfg.experiment)
    rs = jax.jit(jax.vmap(loop.init))(seed_keys(cfg))
    chunk = jax.jit(jax.vmap(loop.chunk, in_axes=(0, None, None)))
    states = jnp.eye(2, dtype=jnp.float32)  # row s = the observation of state s (both agents see it)

    @jax.jit
    def greedy(algo_states):
        def one(st):
            acts = alg.act(st, {a: states for a in env.spec.agents}, jax.random.PRNGKey(0), False)
            return jnp.stack([acts[a][:, 0] for a in env.spec.agents], axis=-1)  # [state, agent]

        return jax.vmap(one)(algo_states)

    xs, acts = [], []
    t0 = time.perf_counter()
    for c in range(steps // cfg.experiment.eval_every):
        rs, _ = chunk(rs, *loop.span(c))
        xs.append((c + 1) * cfg.experiment.eval_every)
        acts.append(np.asarray(greedy(rs.learner.algo)))
    return np.asarray(xs), np.stack(acts), time.perf_counter() - t0


def plot(results: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * len(results), 9.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(results), squeeze=False)
    for col, (algo, (_, acts, _)) in enumerate(results.items()):
        for s in range(2):
            ax = axes[s, col]
            for seed in range(acts.shape[1]):
                path_ab = acts[:, seed, s]
                ax.plot(path_ab[:, 0], path_ab[:, 1], "-", color=f"C{seed}", alpha=0.6, lw=1)
                ax.plot(*path_ab[-1], "o", color=f"C{seed}")
            for i, (x, y) in enumerate(CLIMB_LANDMARKS):
                ax.plot(x, y, "k*" if i == s else "kx", ms=14)
            ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel="agent 1 action a", ylabel="agent 2 action b")
            ax.set_title(f"{algo}, state {s + 1} (star: its equilibrium)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--algos", default="aorpo,masac")
    p.add_argument("--tol", type=float, default=0.1)
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {a: train(a, args.steps, args.seeds) for a in args.algos.split(",")}
    ne = np.asarray(CLIMB_LANDMARKS, np.float32)  # [state, agent]
    rows = []
    for algo, (xs, acts, secs) in results.items():
        dist = np.abs(acts - ne[None, None])  # [C, seeds, state, agent]
        ok = np.all(dist <= args.tol, axis=(2, 3))  # [C, seeds]
        final = acts[-1]
        first = [int(xs[np.nonzero(ok[:, s])[0][0]]) if ok[-1, s] else None for s in range(acts.shape[1])]
        fmt = " ".join(
            f"({final[s, 0, 0]:+.2f},{final[s, 0, 1]:+.2f})/({final[s, 1, 0]:+.2f},{final[s, 1, 1]:+.2f})"
            for s in range(final.shape[0])
        )
        reached = [f for f in first if f is not None]
        rows.append(
            [
                algo,
                f"{int(ok[-1].sum())}/{acts.shape[1]}",
                f"{np.max(dist[-1]):.3f}",
                f"{np.median(reached):,.0f}" if reached else "-",
                fmt,
                f"{secs:.0f} s",
            ]
        )
        print(rows[-1], flush=True)
    plot(results, args.out / "climb.png")
    cmd = " ".join(["benchmarks/aorpo/climb.py", *sys.argv[1:]])
    lines = [
        "# AORPO Fig. 3: convergence to the Nash equilibrium on games/climb",
        "",
        f"`{cmd}`",
        "",
        f"{args.seeds} vmapped seeds, {args.steps:,} env steps. Greedy actions (a, b) of agent 1 and agent 2 "
        f"in state 1 / state 2 at the end; equilibrium (-0.5, -0.5) / (+0.5, +0.5). A seed has converged "
        f"when all four actions are within {args.tol} of it; 'steps to converge' = the median over converged "
        "seeds of the first evaluation (every 1,000 steps) where they are.",
        "",
        table(
            ["algo", "converged seeds", "max abs(action - NE)", "steps to converge", "final actions", "time"],
            rows,
        ),
        "",
        "![action paths](climb.png)",
    ]
    (args.out / "climb.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
