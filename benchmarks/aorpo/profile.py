"""Where AORPO's time goes on mpe/simple_spread at the paper's settings (conf/algo/aorpo.yaml): the cost
of each part of one policy-update round, timed after compilation on a buffer of real transitions, and
the projected time of the paper's budget (100 epochs x 300 episodes x 25 steps = 750k env steps, one
round per 100 steps, a model retraining every ``model_train_every`` steps).

    .venv/bin/python -m benchmarks.aorpo.profile [--seeds 1] [--buffer 100000] [key=value ...]

Writes benchmarks/aorpo/profile_s<seeds>.md. The projection sums measured parts; it is not a timed full
run. FLOPs per part count every loop as it ran (``benchmarks.flops.count``, the early-stopped model and
opponent fits at the epochs they took here); the bound is those FLOPs at the measured matmul peak
(a 1024 x 1024 float32 product), the time no implementation of the same arithmetic can beat here.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import marlow
from benchmarks.flops import count
from benchmarks.profile import peak
from marlow import envs
from marlow.algos import get_algo
from marlow.buffers import replay
from marlow.devices import configure_host_devices

HERE = Path(__file__).resolve().parent
TASK = "mpe/simple_spread"
BUDGET = 750_000


def real_buffer(env, n: int, capacity: int) -> replay.ReplayBuffer:
    trans = replay.random_transitions(env, jax.random.PRNGKey(1), n)
    return replay.add(replay.init(jax.tree.map(lambda x: x[0], trans), capacity), trans)


def timed(fn, *args, repeat: int = 3) -> float:
    jax.block_until_ready(fn(*args))  # compile
    t0 = time.perf_counter()
    for _ in range(repeat):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    configure_host_devices()  # one XLA host device per core, before JAX starts
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--buffer", type=int, default=100_000, help="real transitions in the buffer")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    env = envs.make(TASK)
    cfg = marlow.config(args=["algo=aorpo", f"task={TASK}", *args.overrides]).algo
    algo = get_algo("aorpo").Algorithm(env.spec, cfg)
    S = args.seeds
    state = jax.vmap(algo.init)(jax.random.split(jax.random.PRNGKey(0), S))
    buf = real_buffer(env, args.buffer, args.buffer)
    bufs = jax.tree.map(lambda x: jnp.broadcast_to(x, (S,) + x.shape), buf)
    keys = jax.random.split(jax.random.PRNGKey(5), S)
    warm, every = cfg.model_warmup_steps, cfg.model_train_every

    def prep(step):
        return jax.jit(jax.vmap(lambda s, b, k: algo.prepare(s, b, k, step)))

    # a step that trains the model (the end of warm-up), then rounds that only fit opponents and roll out,
    # at the shortest and the longest rollouts of the schedule (rollout cost is linear in k)
    with_model = prep(warm)
    state_ready, _ = with_model(state, bufs, keys)
    last = BUDGET - cfg.update_every
    k_last = int(algo.rollout_length(last))
    t_k1, t_kmax = (
        timed(prep(warm + cfg.update_every), state_ready, bufs, keys),
        timed(prep(last), state_ready, bufs, keys),
    )
    parts = {
        "prepare with model training": timed(with_model, state, bufs, keys, repeat=1),
        f"prepare at k = {int(algo.rollout_length(warm))} (opponent fit + rollouts)": t_k1,
        f"prepare at k = {k_last}": t_kmax,
    }
    opp_fit = jax.jit(
        jax.vmap(lambda s, b, k: algo.opp.fit(s.opp, replay.recent(b, cfg.opp_window), cfg.opp_window, k))
    )
    parts["opponent fit alone"] = timed(opp_fit, state_ready, bufs, keys)
    model_fit = jax.jit(jax.vmap(lambda s, b, k: algo.dyn.train(s.dyn, b, k)))
    parts["model training alone"] = timed(model_fit, state, bufs, keys, repeat=1)
    # the while loops' trip counts: the model's epochs, then each target's opponent fit (the most epochs
    # of its vmapped copies and seeds: a vmapped loop runs until its last member stops)
    model_epochs = int(np.max(model_fit(state, bufs, keys)[1]["epochs"]))
    opp_epochs = opp_fit(state_ready, bufs, keys)[1]["epochs"]
    opp_trips = [int(max(np.max(opp_epochs[i][j]) for i in algo.opp.egos[j])) for j in algo.opp.targets]
    flops = {
        "model training alone": count(model_fit, state, bufs, keys, trips=[model_epochs]),
        "opponent fit alone": count(opp_fit, state_ready, bufs, keys, trips=opp_trips),
    }

    def round_(s, b, k):
        def one(st, kk):
            batch = replay.sample(b, kk, cfg.batch_size)
            return algo.update(st, batch, kk)[0], None

        return jax.lax.scan(one, s, jax.random.split(k, cfg.updates_per_step))[0]

    t_upd = timed(jax.jit(jax.vmap(round_)), state_ready, bufs, keys)
    upd_name = f"{cfg.updates_per_step} policy updates (one round)"
    parts[upd_name] = t_upd
    flops[upd_name] = count(jax.vmap(round_), state_ready, bufs, keys)
    # rollouts: prepare (model training, opponent fit, rollouts: the largest branch of each cond) less the
    # two fits; the rollouts scan k_max steps whatever k (steps past k are masked), so k leaves them as is
    prepare = jax.vmap(lambda s, b, k: algo.prepare(s, b, k, last))
    fits = flops["model training alone"] + flops["opponent fit alone"]
    f_roll = count(prepare, state_ready, bufs, keys, trips=[model_epochs, *opp_trips]) - fits
    gflops_peak = peak()[0]
    steps = np.arange(warm, BUDGET, cfg.update_every)
    ks = np.asarray(jax.vmap(algo.rollout_length)(jnp.asarray(steps)))
    k0 = int(algo.rollout_length(warm))
    per_k = (t_kmax - t_k1) / max(k_last - k0, 1)
    prep_total = float(np.sum(t_k1 + (ks - k0) * per_k))
    trainings = (BUDGET - warm) // every + 1
    warm_rounds = warm // cfg.update_every
    proj = {
        "model trainings": trainings * (parts["prepare with model training"] - t_k1),
        "opponent fits + rollouts": prep_total,
        "policy updates": len(steps) * t_upd,
        "warm-up rounds (opponent fit + 1 update)": warm_rounds
        * (parts["opponent fit alone"] + t_upd / cfg.updates_per_step),
    }
    bound = {  # seconds of the same parts' FLOPs at the matmul peak
        "model trainings": trainings * flops["model training alone"],
        "opponent fits + rollouts": len(steps) * (flops["opponent fit alone"] + f_roll),
        "policy updates": len(steps) * flops[upd_name],
        "warm-up rounds (opponent fit + 1 update)": warm_rounds
        * (flops["opponent fit alone"] + flops[upd_name] / cfg.updates_per_step),
    }
    bound = {k: v / (gflops_peak * 1e9) for k, v in bound.items()}

    def rate(k):
        return f"{flops[k] / 1e9:.2f} | {flops[k] / parts[k] / 1e9:.0f}" if k in flops else "- | -"

    lines = [
        "# AORPO cost profile on mpe/simple_spread",
        "",
        "`"
        + " ".join(
            ["benchmarks/aorpo/profile.py", f"--seeds {S}", f"--buffer {args.buffer}", *args.overrides]
        )
        + "`",
        "",
        f"{S} vmapped seed(s), {args.buffer} real transitions in the buffer, defaults of "
        f"conf/algo/aorpo.yaml. Seconds per call, compiled, 2-core CPU ({time.strftime('%Y-%m-%d')}); "
        f"GFLOP of each part with its loops counted as they ran (the model fit {model_epochs} epochs, the "
        f"opponent fits {', '.join(map(str, opp_trips))}); the matmul peak here: {gflops_peak:.0f} GFLOP/s. "
        f"The rollouts of one round: {f_roll / 1e9:.2f} GFLOP.",
        "",
        "| part | seconds | GFLOP | GFLOP/s |",
        "|---|---:|---:|---:|",
        *[f"| {k} | {v:.3f} | {rate(k)} |" for k, v in parts.items()],
        "",
        f"Projection for the paper's budget ({BUDGET} env steps, one round per {cfg.update_every} steps, "
        f"{trainings} model trainings, the Table 1 rollout schedule; env stepping and evaluation not "
        "included). A sum of the measured parts, not a timed run:",
        "",
        "| part | minutes | minutes at the matmul peak (bound) | ratio |",
        "|---|---:|---:|---:|",
        *[f"| {k} | {v / 60:.1f} | {bound[k] / 60:.1f} | {v / bound[k]:.1f}x |" for k, v in proj.items()],
        f"| total | {sum(proj.values()) / 60:.1f} | {sum(bound.values()) / 60:.1f} | "
        f"{sum(proj.values()) / sum(bound.values()):.1f}x |",
    ]
    out = HERE / f"profile_s{S}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
