"""Training throughput and peak memory on whatever accelerator JAX finds (written for one H100: the whole
script is sized to finish in under 8 minutes there), issue "Time to result, part 2", step 4.

Rows: MASAC, IPPO and MAPPO on mpe/simple_spread, MAMBA and MAG (their ``paper`` preset) on
smax/3s_vs_3z, each with 1, 8 and 64 vmapped seeds. Every row runs in its own process (its own peak
memory, its own compilation): the runner's jitted chunk (collection, learning, evaluation, vmapped over
seeds; exactly what ``marlow train`` runs) is compiled, then timed over ``--chunks`` chunks.
env-steps/s counts the transitions of all seeds; peak memory is the device's ``peak_bytes_in_use`` (on a
CPU, the process's peak RSS). JAX preallocates a fraction of GPU memory (``XLA_PYTHON_CLIENT_MEM_FRACTION``,
default 0.75) and the peak is what the program used within it.

    python -m benchmarks.gpu.throughput                   # writes benchmarks/gpu/throughput.md
    python -m benchmarks.gpu.throughput --quick           # a CPU check of the script: tiny settings
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = {  # name -> (algo, task, overrides: short chunks, the tasks' own settings otherwise)
    "masac": ("masac", "mpe/simple_spread", ["eval_every=5000", "eval_episodes=8"]),
    "ippo": ("ippo", "mpe/simple_spread", ["eval_every=20480", "eval_episodes=8"]),
    "mappo": ("mappo", "mpe/simple_spread", ["eval_every=20480", "eval_episodes=8"]),
    "mamba": ("mamba", "smax/3s_vs_3z", ["preset=paper", "eval_episodes=8"]),
    "mag": ("mag", "smax/3s_vs_3z", ["preset=paper", "eval_episodes=8"]),
}
QUICK = {  # --quick: a CPU check that every row builds, compiles and runs
    "masac": ["eval_every=200", "warmup_steps=100", "batch_size=32", "hidden=8,8"],
    "ippo": ["eval_every=256", "num_envs=2", "hidden=8,8"],
    "mappo": ["eval_every=256", "num_envs=2", "hidden=8,8"],
    "mamba": ["preset=small", "eval_every=100", "warmup_steps=50", "train_every=50", "buffer_size=200"],
    "mag": ["preset=small", "eval_every=100", "warmup_steps=50", "train_every=50", "buffer_size=200"],
}


def measure(name: str, seeds: int, chunks: int, quick: bool) -> dict:
    """One row, in this process: compile the chunk, time ``chunks`` more."""
    import jax

    import marlow
    from benchmarks.throughput import timed_chunks

    algo, task, extra = ROWS[name]
    extra = QUICK[name] if quick else extra
    cfg = marlow.config(algo, task, args=[f"num_seeds={seeds}", "progress=false", *extra])
    cfg, first, dt = timed_chunks(cfg, seeds, chunks)
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    peak_gib = (
        peak / 2**30 if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {
        "row": name,
        "task": task,
        "seeds": seeds,
        "device": f"{device.platform}: {getattr(device, 'device_kind', '')}",
        "env_steps_per_s": chunks * cfg.experiment.eval_every * seeds / dt,
        "first_chunk_s": first,
        "peak_gib": peak_gib,
        "memory": "device peak" if peak is not None else "process peak RSS",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--seeds", default="1,8,64")
    p.add_argument("--chunks", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny settings, 1 seed: check the script on a CPU")
    p.add_argument("--one", nargs=2, metavar=("ROW", "SEEDS"), help="measure one row here, print JSON")
    p.add_argument("--out", type=Path, default=HERE / "throughput.md")
    ns = p.parse_args()
    if ns.one:
        print(json.dumps(measure(ns.one[0], int(ns.one[1]), ns.chunks, ns.quick)))
        return
    seeds = [1] if ns.quick else [int(s) for s in ns.seeds.split(",")]
    results, failed, t_all = [], [], time.perf_counter()
    for name in ns.rows.split(","):
        for s in seeds:
            cmd = [sys.executable, "-m", "benchmarks.gpu.throughput", "--one", name, str(s)]
            cmd += ["--chunks", str(ns.chunks)] + (["--quick"] if ns.quick else [])
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parents[1])
            if out.returncode:
                tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
                failed.append(f"{name}, {s} seeds: exit {out.returncode}: {tail}")
                print(failed[-1], file=sys.stderr, flush=True)
                continue
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    device = results[0]["device"] if results else "none measured"
    lines = [
        "# Training throughput and peak memory on one accelerator",
        "",
        f"`python -m benchmarks.gpu.throughput{' --quick' if ns.quick else ''}`, "
        f"{time.strftime('%Y-%m-%d')}, {device}, {platform.machine()}; the whole script took "
        f"{time.perf_counter() - t_all:.0f} s. Each row in its own process; env-steps/s of all seeds over "
        "the timed chunks (compilation excluded: the first chunk's seconds are given apart).",
        "",
        "| row | task | seeds | env-steps/s | first chunk s | peak GiB |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['row']} | {r['task']} | {r['seeds']} | {r['env_steps_per_s']:,.0f} | "
            f"{r['first_chunk_s']:.1f} | {r['peak_gib']:.2f} ({r['memory']}) |"
            for r in results
        ],
        *([""] + [f"Failed: {f}" for f in failed] if failed else []),
    ]
    ns.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
