"""Full-training throughput of MASAC on mpe/simple_spread with the AORPO paper's MASAC schedule.

Schedule (AORPO code, shared/reference/aorpo.md): batch 1024, one update every 100 env steps, replay
buffer 500,000 per seed. Each configuration runs in its own subprocess (so peak memory is its own):
the jitted training chunk (collect + buffer + updates + evaluation, vmapped over seeds) is compiled,
then timed over several chunks. env-steps/s counts the transitions of all seeds.

    python benchmarks/throughput.py            # 1 and 8 seeds, writes benchmarks/RESULTS.md
    python benchmarks/throughput.py --seeds 1 --repeats 1  # one configuration, prints JSON
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


def measure(num_seeds: int, chunks: int, extra: list[str]) -> dict:
    import jax
    import jax.numpy as jnp

    from marlow.devices import seed_devices, shard_seeds
    from marlow.experiment.config import resolve
    from marlow.experiment.loop import Loop
    from marlow.experiment.runner import build, jitted_program, seed_keys
    from marlow.experiment.setup import learner

    cfg = resolve(
        [
            "algo=masac",
            "task=mpe/simple_spread",
            f"num_seeds={num_seeds}",
            "warmup_steps=1024",
            "batch_size=1024",
            "update_every=100",
            "updates_per_step=1",
            "buffer_size=500000",
            "progress=false",
            *extra,
        ]
    )
    env, algo = build(cfg)
    loop = Loop(env, learner(cfg, algo), cfg.experiment)
    init, chunk, _ = jitted_program(loop, num_seeds)  # exactly what `marlow train` runs
    rs = init(shard_seeds(seed_keys(cfg), num_seeds))
    t0 = time.perf_counter()
    rs, m = chunk(rs, jnp.int32(0))
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in range(1, chunks + 1):
        rs, m = chunk(rs, jnp.int32(c))
    jax.block_until_ready(m)
    dt = time.perf_counter() - t0
    steps = chunks * cfg.experiment.eval_every * num_seeds
    return {
        "num_seeds": num_seeds,
        "num_envs": cfg.experiment.num_envs,
        "devices": len(seed_devices(num_seeds)),
        "env_steps_per_s": steps / dt,
        "updates_per_s": chunks * cfg.experiment.eval_every / cfg.algo.update_every * num_seeds / dt,
        "first_chunk_s": compile_s,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "timed_env_steps": steps,
    }


def _run(seeds: int, chunks: int, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--seeds", str(seeds), "--chunks", str(chunks), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="*", default=None)
    p.add_argument("--chunks", type=int, default=6, help="timed chunks of eval_every=7500 steps")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per configuration")
    p.add_argument("--out", default=str(HERE / "RESULTS.md"))
    p.add_argument("extra", nargs="*", help="key=value overrides")
    ns = p.parse_args()
    if ns.seeds and len(ns.seeds) == 1 and ns.repeats == 1:
        print(json.dumps(measure(ns.seeds[0], ns.chunks, ns.extra)))
        return
    rows = []
    for s in ns.seeds or (1, 8):
        runs = [_run(s, ns.chunks, ["--repeats", "1", *ns.extra]) for _ in range(ns.repeats)]
        sps = sorted(r["env_steps_per_s"] for r in runs)
        row = dict(
            runs[0],
            env_steps_per_s=float(np.median(sps)),
            updates_per_s=float(np.median([r["updates_per_s"] for r in runs])),
            sps_min=sps[0],
            sps_max=sps[-1],
            peak_rss_gib=max(r["peak_rss_gib"] for r in runs),
            first_chunk_s=float(np.median([r["first_chunk_s"] for r in runs])),
        )
        rows.append(row)
        print(row, flush=True)
    base = rows[0]["env_steps_per_s"]
    import jax

    lines = [
        "# Throughput: MASAC on mpe/simple_spread, AORPO MASAC schedule",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} ({jax.default_backend()}); measured {time.strftime('%Y-%m-%d')} "
        "by `python benchmarks/throughput.py`.",
        "Batch 1024, one update per 100 env steps, buffer 500,000 per seed, "
        f"{rows[0]['num_envs']} parallel envs per seed; {ns.chunks} chunks of 7,500 env steps per seed "
        "timed after compilation (full training: collection, buffer, updates, evaluation); "
        f"median (min-max) of {ns.repeats} fresh processes; seeds split over the listed CPU devices.",
        "",
        "| seeds | devices | env-steps/s (all seeds) | ratio to 1 seed | updates/s (all seeds) "
        "| first chunk incl. compile (s) | peak RSS (GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['num_seeds']} | {r['devices']} | {r['env_steps_per_s']:,.0f} "
            f"({r['sps_min']:,.0f}-{r['sps_max']:,.0f}) | {r['env_steps_per_s'] / base:.2f}x | "
            f"{r['updates_per_s']:,.0f} | {r['first_chunk_s']:.1f} | {r['peak_rss_gib']:.2f} |"
        )
    Path(ns.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
