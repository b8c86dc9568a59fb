"""Where one training chunk's time goes, per learner family: every part of the chunk timed on its own
(compiled, on the state of a run past its warm-up), with its FLOPs and the GFLOP/s it reaches against the
matrix-product peak measured in the same run.

    .venv/bin/python -m benchmarks.profile [--seeds 1] [--only masac,mappo,aorpo,mamba]

Parts (each ``jit(vmap(...))`` over the seeds, as the runner compiles the chunk):

- collect: one iteration's vectorised env steps with the behaviour policy (``rollout.collect``);
- off-policy learners: store (the iteration's transitions into the replay buffer), sample (one
  minibatch), update (one gradient update of the algorithm); AORPO's ``prepare`` also: model training
  (the ensemble), opponent fit, model rollouts;
- on-policy and world-model learners: learn (``learner.learn`` on the iteration's trajectory: advantages
  and minibatch epochs, or world-model training, imagination and the actor-critic updates);
- evaluation: the chunk's greedy evaluation episodes.

Calls per chunk come from the run's schedule. "Sum of parts" adds the parts x their calls; "chunk" is the
jitted chunk itself, timed (its difference from the sum is what running the parts in one program saves
or costs). FLOPs: benchmarks/flops.py's count (XLA's per-operation rule, every ``scan`` counted as many
times as it runs; a ``while`` loop, such as the ensemble's early-stopped epochs, counted once, so the
model-training FLOPs are a lower bound). Peak: the GFLOP/s of a 1024 x 1024 x 1024 float32 matrix
product on one device, and of one such product per device on all host devices at once.

Writes benchmarks/profile_s<seeds>.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

from marlow.devices import configure_host_devices  # noqa: E402

configure_host_devices()  # one XLA host device per core, before JAX starts

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import marlow  # noqa: E402
from benchmarks.flops import count  # noqa: E402
from marlow import rollout  # noqa: E402
from marlow.analysis.demo import AORPO_CPU  # noqa: E402
from marlow.buffers import replay  # noqa: E402
from marlow.devices import shard_seeds  # noqa: E402
from marlow.experiment.loop import Loop  # noqa: E402
from marlow.runtime.runner import build, jitted_program, seed_keys  # noqa: E402

CONFIGS = {  # MASAC: the AORPO paper's MASAC schedule (batch 1024, an update per 100 steps, 500k buffer)
    "masac": ["algo=masac", "task=mpe/simple_spread", "warmup_steps=7500"],
    "mappo": ["algo=mappo", "task=mpe/simple_spread"],
    "aorpo": ["algo=aorpo", "task=mpe/simple_spread", "eval_every=2500", "warmup_steps=5000"]
    + [f"{k}={v}" for k, v in AORPO_CPU.items()],
    "mamba": ["algo=mamba", "task=smax/3m", "preset=small"],
}
NOTES = {
    "masac": "MASAC, mpe/simple_spread, the AORPO paper's MASAC schedule (defaults)",
    "mappo": "MAPPO, mpe/simple_spread, defaults (MAPPO paper's MPE settings)",
    "aorpo": "AORPO, mpe/simple_spread, the demo's scaled schedule (marlow/analysis/demo.py)",
    "mamba": "MAMBA, smax/3m, preset=small",
}


def timed(fn, *args, repeat: int = 3, chain: bool = False) -> float:
    """Seconds per call of a compiled ``fn``; ``chain``: feed each call's first output to the next (for
    functions that donate their first argument)."""
    out = jax.block_until_ready(fn(*args))  # compile
    t0 = time.perf_counter()
    for _ in range(repeat):
        if chain:
            args = (out[0] if isinstance(out, tuple) else out, *args[1:])
        out = jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t0) / repeat


def peak() -> tuple[float, float]:
    n = 1024
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    one = jax.jit(lambda x: x @ x)
    t1 = timed(one, a, repeat=20)
    d = len(jax.devices())
    many = jax.jit(jax.vmap(lambda x: x @ x))
    ab = shard_seeds(jnp.stack([a] * d), d)
    td = timed(many, ab, repeat=20)
    return 2 * n**3 / t1 / 1e9, d * 2 * n**3 / td / 1e9


class Profile:
    def __init__(self, name: str, seeds: int):
        self.name, self.seeds = name, seeds
        run = build(marlow.config(args=[*CONFIGS[name], f"num_seeds={seeds}", "progress=false"]))
        self.cfg, self.env, self.algo, self.learner = run.cfg, run.env, run.algo, run.learner
        cfg, env = run.cfg, run.env
        self.loop = Loop(env, self.learner, cfg.experiment)
        init, self.chunk = jitted_program(self.loop, seeds)
        self.rs = init(shard_seeds(seed_keys(cfg), seeds))
        self.c = 0
        self.rows: list[tuple[str, float, float, float]] = []  # part, calls per chunk, s per call, FLOPs

    def warm_up(self, steps: int) -> None:
        """Run chunks until every seed has ``steps`` env steps (the state is then past warm-up)."""
        while int(self.rs.env_steps[0]) < steps:
            self.rs, _ = self.chunk(self.rs, *self.loop.span(self.c))
            self.c += 1

    def part(self, label: str, calls: float, fn, *args, chain: bool = False):
        """Time and count ``vmap(fn)`` on ``args`` (batched over seeds); returns its output. ``chain``: the
        first argument is donated and each call's first output is the next call's first argument, as the
        chunk updates its state in place (a copy of the argument is donated, so it stays usable)."""
        vf = jax.vmap(fn)
        flops = count(vf, *args) / self.seeds
        if chain:
            jf = jax.jit(vf, donate_argnums=0)
            seconds = timed(jf, jax.tree.map(jnp.copy, args[0]), *args[1:], chain=True)
        else:
            jf = jax.jit(vf)
            seconds = timed(jf, *args)
        self.rows.append((label, calls, seconds, flops))
        return None if chain else jf(*args)

    def chunk_seconds(self) -> float:
        def run(rs):
            rs, m = self.chunk(rs, *self.loop.span(self.c))
            return rs, m

        return timed(run, self.rs, repeat=2, chain=True)


def profile(name: str, seeds: int) -> tuple[Profile, float]:
    p = Profile(name, seeds)
    lr, loop, cfg = p.learner, p.loop, p.cfg
    warm = getattr(cfg.algo, "warmup_steps", 0)
    model_warm = getattr(cfg.algo, "model_warmup_steps", 0)
    p.warm_up(max(warm, model_warm) + loop.iteration_steps)
    step = int(p.rs.env_steps[0])
    iters = loop.iters_per_chunk

    def collect(rs):
        return rollout.collect(
            p.env,
            lr.policy(rs.learner),
            rs.env,
            rs.key,
            loop.steps_per_iter,
            rollout.Options(env_info=loop.env_info, reset_pstate=getattr(lr, "reset_pstate", None)),
        )[2]

    traj = p.part("collect", iters, collect, p.rs)
    ls = p.rs.learner
    keys = jax.random.split(jax.random.PRNGKey(7), seeds)
    if lr.kind == "off_policy":
        trans = jax.vmap(rollout.transitions)(traj)
        p.part("store", iters, lr.store, ls, trans, chain=True)
        n = lr.updates_per_step
        batch = p.part("sample", iters * n, lambda b, k: replay.sample(b, k, lr.batch_size), ls.buffer, keys)
        algo, a = lr.algo, ls.algo
        if hasattr(algo, "prepare"):
            trains = cfg.experiment.eval_every / cfg.algo.model_train_every
            p.part("model training", trains, algo.dyn.train, a.dyn, ls.buffer, keys, chain=True)
            window = min(cfg.algo.opp_window, ls.buffer.capacity)

            def opp_fit(opp, b, k):
                return algo.opp.fit(opp, replay.recent(b, window), jnp.minimum(b.size, window), k)

            p.part("opponent fit", iters, opp_fit, a.opp, ls.buffer, keys, chain=True)
            p.part(
                "model rollouts",
                iters,
                lambda s, b, k: algo.rollouts(s, b, k, step),
                a,
                ls.buffer,
                keys,
                chain=True,
            )
        if hasattr(algo, "full_round") and not bool(algo.full_round(step)):
            n = min(algo.REDUCED_UPDATES, n)
        p.part("update", iters * n, algo.update, a, batch, keys, chain=True)
    else:
        p.part("learn", iters, lambda s, t, k: lr.learn(s, t, step, k), ls, traj, keys, chain=True)
    p.part("evaluation", 1, loop.evaluate, p.rs)
    return p, p.chunk_seconds()


def table(p: Profile, chunk_s: float, peak1: float, peak_all: float) -> list[str]:
    e = p.cfg.experiment
    total = sum(c * s for _, c, s, _ in p.rows)
    lines = [
        f"### {NOTES[p.name]}",
        "",
        f"`{' '.join(CONFIGS[p.name])}`; {p.seeds} seed(s); a chunk = {e.eval_every:,} env steps per seed "
        f"({p.loop.iters_per_chunk} iterations of {p.loop.iteration_steps} env steps, then "
        f"{e.eval_episodes} evaluation episodes).",
        "",
        "| part | calls per chunk | ms per call | share of the sum | GFLOP per call and seed | GFLOP/s "
        "| % of one device's peak |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, calls, s, flops in p.rows:
        rate = p.seeds * flops / s / 1e9
        lines.append(
            f"| {label} | {calls:g} | {1e3 * s:.2f} | {calls * s / total:.0%} | {flops / 1e9:.4f} | "
            f"{rate:.1f} | {rate / peak1:.0%} |"
        )
    chunk_flops = sum(c * f for _, c, _, f in p.rows) * p.seeds
    lines += [
        f"| sum of parts | | {1e3 * total:.0f} | | {chunk_flops / p.seeds / 1e9:.2f} | "
        f"{chunk_flops / total / 1e9:.1f} | {chunk_flops / total / 1e9 / peak1:.0%} |",
        f"| chunk (one program) | 1 | {1e3 * chunk_s:.0f} | | | {chunk_flops / chunk_s / 1e9:.1f} | "
        f"{chunk_flops / chunk_s / 1e9 / peak1:.0%} |",
        "",
        f"Env steps/s (all seeds): {p.seeds * e.eval_every / chunk_s:,.0f}; the all-device peak is "
        f"{peak_all:.0f} GFLOP/s, so the chunk reaches {chunk_flops / chunk_s / 1e9 / peak_all:.0%} of it.",
        "",
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--only", default=",".join(CONFIGS))
    args = ap.parse_args()
    peak1, peak_all = peak()
    lines = [
        f"# One training chunk, part by part ({args.seeds} seed(s))",
        "",
        f"`.venv/bin/python -m benchmarks.profile --seeds {args.seeds} --only {args.only}` (the script's "
        "docstring defines the parts and the counts).",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {len(jax.devices())} XLA "
        f"host devices. Matrix-product peak measured in this run: {peak1:.0f} GFLOP/s on one device, "
        f"{peak_all:.0f} GFLOP/s on all devices at once.",
        "",
    ]
    for name in args.only.split(","):
        p, chunk_s = profile(name, args.seeds)
        block = table(p, chunk_s, peak1, peak_all)
        print("\n".join(block), flush=True)
        lines += block
    (HERE / f"profile_s{args.seeds}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
