"""MAG's learner step against MAMBA's, measured side by side in one run, next to the ratio of their FLOPs.

    .venv/bin/python -m benchmarks.mag.speed [--task smax/3s_vs_3z] [--preset small] [--repeats 7]

Both learners are built for the task with the same preset (the world model, the schedule and the
imagination are identical; MAG adds its error predictor's updates and plans every imagination step with the
task's L and H, conf/task/smax/<map>.yaml). Their buffers are filled with the same real steps; then each
part of the learner step (``train_model``, ``train_extra``: MAG's error predictor, ``train_agent``:
imagination and PPO, and the whole ``updates``) is jitted and timed alternately, MAMBA then MAG, the median
of ``--repeats`` runs after a warm-up. FLOPs: benchmarks/flops.py's count, which counts every loop as many
times as it runs (XLA's cost analysis counts a loop body once; on a loop-free piece the two agree, checked
here). Target (the MAG issue): MAG's time ratio at most 1.2 x its FLOP ratio, i.e. planning runs as
efficiently as plain imagination. Writes benchmarks/mag/speed.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

HERE = Path(__file__).resolve().parent
import marlow  # noqa: E402
from benchmarks.flops import count, xla_flops  # noqa: E402
from marlow import envs, rollout  # noqa: E402
from marlow.algos import get_algo  # noqa: E402
from marlow.buffers import sequence  # noqa: E402
from marlow.devices import configure_host_devices  # noqa: E402
from marlow.world import rssm  # noqa: E402


def build(algo: str, task: str, preset: str, num_envs: int = 2):
    env = envs.make(task)
    cfg = marlow.config(algo, task, preset=preset, num_envs=num_envs)
    alg = get_algo(algo).Algorithm(env.spec, cfg.algo)
    alg.bind(num_envs=num_envs, total_steps=cfg.experiment.total_steps)
    return env, alg, cfg


def filled_state(env, alg, steps: int):
    """A learner state whose buffer holds ``steps`` real steps per env of its own (initial) policy."""
    state = alg.init(jax.random.PRNGKey(0))
    carry = rollout.reset(env, jax.random.PRNGKey(1), alg.num_envs, alg.init_pstate(alg.num_envs))
    _, _, traj = jax.jit(
        lambda c: rollout.collect(
            env,
            alg.policy(state),
            c,
            jax.random.PRNGKey(2),
            steps,
            rollout.Options(env_info=True, reset_pstate=alg.reset_pstate),
        )
    )(carry)
    rows = alg.steps_of(traj)
    state = state.replace(buffer=sequence.add(state.buffer, rows))
    fresh = jax.tree.map(lambda x: x[-alg.steps_per_iter :], rows)
    return state, fresh


def parts(alg, fresh):
    key = jax.random.PRNGKey(3)
    return {
        "train_model": lambda s: alg.train_model(s, key),
        "train_extra": lambda s: alg.train_extra(s, key),
        "train_agent": lambda s: alg.train_agent(s, key),
        "updates": lambda s: alg.updates(s, fresh, key),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="smax/3s_vs_3z")
    p.add_argument("--preset", default="small")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=str(HERE / "speed.md"))
    ns = p.parse_args()
    configure_host_devices()
    built = {a: build(a, ns.task, ns.preset) for a in ("mamba", "mag")}
    states, fns, flops = {}, {}, {}
    for a, (env, alg, _) in built.items():
        states[a], fresh = filled_state(env, alg, 400)
        fns[a] = {k: jax.jit(f) for k, f in parts(alg, fresh).items()}
        flops[a] = {k: count(f, states[a]) for k, f in parts(alg, fresh).items()}
        for f in fns[a].values():  # compile and warm up
            jax.block_until_ready(f(states[a]))
    times = {a: {k: [] for k in fns[a]} for a in fns}
    for _ in range(ns.repeats):
        for k in fns["mamba"]:
            for a in ("mamba", "mag"):  # alternately, so both see the same machine
                t0 = time.perf_counter()
                jax.block_until_ready(fns[a][k](states[a]))
                times[a][k].append(time.perf_counter() - t0)
    med = {a: {k: statistics.median(v) for k, v in times[a].items()} for a in times}

    # the FLOP counter against XLA's cost analysis on a loop-free piece (one transition of a batch)
    _, alg, _ = built["mag"]
    s = alg.sizes
    args = (
        jnp.ones((64, alg.n, s.deter)),
        jnp.ones((64, alg.n, s.stoch)),
        jnp.ones((64, alg.n, alg.n_actions)),
    )

    def transition(d, z, a):
        return alg.model.apply(states["mag"].model, d, z, a, method=rssm.WorldModel.transition)

    ours, xla = count(transition, *args), xla_flops(transition, *args)

    cfg_mag = built["mag"][2].algo
    rows = []
    for k in fns["mamba"]:
        fa, fb = flops["mamba"][k], flops["mag"][k]
        ta, tb = med["mamba"][k], med["mag"][k]
        ratio_t = tb / ta if ta > 0 else float("nan")
        ratio_f = fb / fa if fa > 0 else float("nan")
        rows.append(
            f"| {k} | {ta * 1e3:.1f} | {tb * 1e3:.1f} | {fa / 1e9:.3f} | {fb / 1e9:.3f} | "
            f"{fa / ta / 1e9:.1f} | {fb / tb / 1e9:.1f} | {ratio_t:.2f} | {ratio_f:.2f} |"
        )
    whole_t = med["mag"]["updates"] / med["mamba"]["updates"]
    whole_f = flops["mag"]["updates"] / flops["mamba"]["updates"]
    lines = [
        f"# MAG's learner step against MAMBA's ({ns.task}, preset {ns.preset})",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on this 2-core CPU machine by "
        f"`python -m benchmarks.mag.speed --task {ns.task} --preset {ns.preset} --repeats {ns.repeats}`: "
        f"each part jitted, the median of {ns.repeats} runs, MAMBA and MAG alternately in one process. MAG "
        f"plans with L = {cfg_mag.plan_candidates} candidates of H = {cfg_mag.plan_horizon} steps at every "
        f"one of the {cfg_mag.horizon} imagination steps. GFLOP: every loop counted as many times as it runs "
        "(benchmarks/flops.py); on one loop-free transition of 64 samples it counts "
        f"{ours / 1e6:.2f} MFLOP where XLA's cost analysis counts {xla / 1e6:.2f}.",
        "",
        "| part | MAMBA ms | MAG ms | MAMBA GFLOP | MAG GFLOP | MAMBA GFLOP/s | MAG GFLOP/s | time ratio | "
        "FLOP ratio |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Whole learner step: MAG takes {whole_t:.2f}x MAMBA's time for {whole_f:.2f}x its FLOPs, a "
        f"time / FLOP ratio of {whole_t / whole_f:.2f} (target <= 1.2: "
        f"{'met' if whole_t / whole_f <= 1.2 else 'not met'}).",
        "",
    ]
    Path(ns.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
