"""Full-training throughput on mpe/simple_spread: MASAC with the AORPO paper's MASAC schedule and IPPO
with JaxMARL's published IPPO MPE settings.

- MASAC: batch 1024, one update every 100 env steps, replay buffer 500,000 per seed (the AORPO reference
  code, github.com/apexrl/AORPO, its MASAC baseline), chunks of 7,500 env steps.
- IPPO: 16 envs x 128 steps per update, 4 epochs x 4 minibatches, [64, 64] tanh, lr 2.5e-4 annealed
  (github.com/FLAIROx/JaxMARL, baselines/IPPO/config/ippo_ff_mpe.yaml), chunks of 10 updates (20,480 env
  steps).

Each configuration runs in its own subprocess (so peak memory is its own): the jitted training chunk
(collection + learning + evaluation, vmapped over seeds) is compiled, then timed over several chunks.
env-steps/s counts the transitions of all seeds. ``--before DIR`` also times MASAC with the code of
another checkout (e.g. ``git worktree add DIR <commit>``), interleaved with the current code's runs, so
the two are measured side by side in one run.

    python -m benchmarks.throughput --before /tmp/old    # writes benchmarks/RESULTS.md
    python -m benchmarks.throughput --algo ippo --seeds 1 --repeats 1  # one configuration, prints JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def measure(num_seeds: int, chunks: int, extra: list[str], algo: str = "masac") -> dict:
    from marlow.devices import configure_host_devices

    configure_host_devices()

    import marlow
    from marlow.devices import seed_devices

    common = ["task=mpe/simple_spread", f"num_seeds={num_seeds}", "progress=false"]
    if algo == "masac":
        schedule = ["warmup_steps=1024", "batch_size=1024", "update_every=100", "updates_per_step=1"]
        cfg = marlow.config(args=["algo=masac", *common, *schedule, "buffer_size=500000", *extra])
    else:  # JaxMARL's IPPO MPE settings are conf/ppo.yaml's defaults
        cfg = marlow.config(args=["algo=ippo", *common, "eval_every=20480", *extra])
    cfg, compile_s, dt = timed_chunks(cfg, num_seeds, chunks)
    steps = chunks * cfg.experiment.eval_every * num_seeds
    return {
        "num_seeds": num_seeds,
        "num_envs": cfg.experiment.num_envs,
        "devices": len(seed_devices(num_seeds)),
        "env_steps_per_s": steps / dt,
        "updates_per_s": chunks * cfg.experiment.eval_every / _steps_per_update(cfg) * num_seeds / dt,
        "first_chunk_s": compile_s,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "timed_env_steps": steps,
    }


def timed_chunks(cfg, num_seeds: int, chunks: int):
    """The runner's jitted chunk of ``cfg`` (collection, learning, evaluation, vmapped over ``num_seeds``:
    exactly what ``marlow train`` runs), compiled with its first chunk, then ``chunks`` more timed.
    Returns (the run's fitted config, the first chunk's seconds, the timed chunks' seconds)."""
    import jax

    from marlow.devices import shard_seeds
    from marlow.experiment.loop import Loop
    from marlow.runtime.runner import build, jitted_program, seed_keys

    run = build(cfg)
    loop = Loop(run.env, run.learner, run.cfg.experiment)
    init, chunk = jitted_program(loop, num_seeds)
    rs = init(shard_seeds(seed_keys(run.cfg), num_seeds))
    t0 = time.perf_counter()
    rs, m = chunk(rs, *loop.span(0))
    jax.block_until_ready(m)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in range(1, chunks + 1):
        rs, m = chunk(rs, *loop.span(c))
    jax.block_until_ready(m)
    return run.cfg, first, time.perf_counter() - t0


def _steps_per_update(cfg) -> float:
    """Env steps per gradient step (per seed)."""
    if hasattr(cfg.algo, "update_every"):
        return cfg.algo.update_every / cfg.algo.updates_per_step
    per_iter = cfg.algo.rollout_steps * cfg.experiment.num_envs
    return per_iter / (cfg.algo.epochs * cfg.algo.num_minibatches)


def _run(seeds: int, chunks: int, extra: list[str], algo: str = "masac", tree: str | None = None) -> dict:
    """One configuration in a fresh process; ``tree``: time the checkout there instead (MASAC only)."""
    script, env = __file__, dict(os.environ)
    args = ["--seeds", str(seeds), "--chunks", str(chunks), "--repeats", "1"]  # one measurement, JSON out
    if tree:
        script = str(Path(tree) / "benchmarks" / "throughput.py")
        env["PYTHONPATH"] = str(Path(tree).resolve())
    else:
        args += ["--algo", algo]
    out = subprocess.run(
        [sys.executable, script, *args, *extra], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="*", default=None)
    p.add_argument("--chunks", type=int, default=6, help="timed chunks of eval_every=7500 steps")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per configuration")
    p.add_argument("--out", default=str(HERE / "RESULTS.md"))
    p.add_argument("extra", nargs="*", help="key=value overrides")
    p.add_argument("--algo", choices=("masac", "ippo"), default=None, help="one algorithm (default: both)")
    p.add_argument("--before", default=None, help="another checkout whose MASAC to time side by side")
    ns = p.parse_args()
    if ns.seeds and len(ns.seeds) == 1 and ns.repeats == 1:
        print(json.dumps(measure(ns.seeds[0], ns.chunks, ns.extra, ns.algo or "masac")))
        return
    configs = [("masac", "MASAC, this code", None), ("ippo", "IPPO", None)]
    if ns.algo:
        configs = [c for c in configs if c[0] == ns.algo]
    if ns.before:
        rev = subprocess.run(
            ["git", "-C", ns.before, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        configs.insert(1, ("masac", f"MASAC, before (commit {rev.stdout.strip() or ns.before})", ns.before))
    results: dict[str, list[dict]] = {label: [] for _, label, _ in configs}
    for s in ns.seeds or (1, 8):
        runs: dict[str, list[dict]] = {label: [] for _, label, _ in configs}
        for _ in range(ns.repeats):  # interleaved: every configuration sees the same machine state
            for algo, label, tree in configs:
                chunks = ns.chunks if algo == "masac" else max(1, ns.chunks // 2)
                runs[label].append(_run(s, chunks, ns.extra, algo, tree))
        for label, rs in runs.items():
            sps = sorted(r["env_steps_per_s"] for r in rs)
            row = dict(
                rs[0],
                env_steps_per_s=float(np.median(sps)),
                updates_per_s=float(np.median([r["updates_per_s"] for r in rs])),
                sps_min=sps[0],
                sps_max=sps[-1],
                peak_rss_gib=max(r["peak_rss_gib"] for r in rs),
                first_chunk_s=float(np.median([r["first_chunk_s"] for r in rs])),
            )
            results[label].append(row)
            print(label, row, flush=True)
    import jax

    lines = [
        "# Throughput on mpe/simple_spread: full training, env-steps/s",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} ({jax.default_backend()}); measured {time.strftime('%Y-%m-%d')} "
        "by `python -m benchmarks.throughput" + (" --before <worktree>" if ns.before else "") + "`.",
        f"Median (min-max) of {ns.repeats} fresh processes per row, the configurations interleaved; seeds "
        "split over the listed CPU devices; timed after compilation (collection, learning, evaluation).",
        "",
        "- MASAC: the AORPO code's MASAC schedule (batch 1024, one update per 100 env steps, buffer 500,000 "
        f"per seed), 10 envs per seed, {ns.chunks} chunks of 7,500 env steps per seed.",
        "- IPPO: JaxMARL's IPPO MPE settings (16 envs x 128 steps per update, 4 epochs x 4 minibatches, "
        f"[64, 64] tanh, lr 2.5e-4 annealed), {max(1, ns.chunks // 2)} chunks of 20,480 env steps per seed.",
        "",
        "| configuration | seeds | devices | env-steps/s (all seeds) | ratio to 1 seed | gradient steps/s "
        "(all seeds) | first chunk incl. compile (s) | peak RSS (GiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, rows in results.items():
        base = rows[0]["env_steps_per_s"]
        for r in rows:
            lines.append(
                f"| {label} | {r['num_seeds']} | {r['devices']} | {r['env_steps_per_s']:,.0f} "
                f"({r['sps_min']:,.0f}-{r['sps_max']:,.0f}) | {r['env_steps_per_s'] / base:.2f}x | "
                f"{r['updates_per_s']:,.0f} | {r['first_chunk_s']:.1f} | {r['peak_rss_gib']:.2f} |"
            )
    Path(ns.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
