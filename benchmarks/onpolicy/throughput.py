"""Full-training env-steps/s of IPPO, MAPPO and HAPPO on mpe/simple_spread, mamujoco/halfcheetah_2x3 and
smax/3m, for 1 and 8 vmapped seeds, each at the task's published settings (conf/algo/*.yaml and
conf/task/*.yaml: JaxMARL/MAPPO on MPE, HARL on MA-MuJoCo, JaxMARL on SMAX).

Each configuration runs in a fresh process: the training program (collection, learning, a 2-episode
greedy evaluation per chunk; vmapped over seeds) runs one chunk (compilation included, reported
separately), then ``--chunks`` timed chunks. JAX tasks run ``marlow train``'s jitted program
(:func:`marlow.runtime.runner.jitted_program`), MA-MuJoCo too with its default simulator (``rollout``:
MuJoCo advanced for every env and seed by one ``mujoco.rollout`` call per vectorised step);
``--simulators rollout,gymnasium`` adds MA-MuJoCo rows on the host loop
(:class:`marlow.runtime.host.HostLoop`: Gymnasium-Robotics stepped in Python, one jitted policy call for
all envs and seeds per step, the learning step jitted). A chunk is 2 iterations (``eval_every`` = 2 x
num_envs x rollout_steps). env-steps/s counts all seeds' transitions.

    .venv/bin/python -m benchmarks.onpolicy.throughput            # writes benchmarks/onpolicy/throughput.md
    .venv/bin/python -m benchmarks.onpolicy.throughput --algos ippo --tasks smax/3m --seeds 1
    .venv/bin/python -m benchmarks.onpolicy.throughput --tasks mamujoco/halfcheetah_2x3 \
        --simulators rollout,gymnasium --out benchmarks/onpolicy/throughput_mamujoco.md
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

HERE = Path(__file__).resolve().parent
TASKS = ("mpe/simple_spread", "mamujoco/halfcheetah_2x3", "smax/3m")
ALGOS = ("ippo", "mappo", "happo")


def measure(algo: str, task: str, seeds: int, chunks: int, simulator: str = "") -> dict:
    from marlow.devices import configure_host_devices

    configure_host_devices()
    import jax

    import marlow
    from marlow.devices import shard_seeds
    from marlow.runtime.runner import build, jitted_program, seed_keys

    sim = [f"task.simulator={simulator}"] if simulator else []
    base = marlow.config(args=[f"algo={algo}", f"task={task}", *sim])
    per_iter = base.algo.rollout_steps * base.experiment.num_envs
    cfg = marlow.config(
        args=[
            f"algo={algo}",
            f"task={task}",
            *sim,
            f"num_seeds={seeds}",
            f"eval_every={2 * per_iter}",
            "eval_episodes=2",
            f"total_steps={2 * per_iter * (chunks + 1)}",
            "progress=false",
        ]
    )
    run = build(cfg)
    cfg, env = run.cfg, run.env
    if env.is_jax:
        from marlow.experiment.loop import Loop

        loop = Loop(env, run.learner, cfg.experiment)
        init, chunk = jitted_program(loop, seeds)
        rs = init(shard_seeds(seed_keys(cfg), seeds))

        def run(rs, c):
            rs, m = chunk(rs, *loop.span(c))
            jax.block_until_ready(m)
            return rs
    else:
        from marlow.runtime.host import HostLoop

        host = HostLoop(run)
        rs = jax.jit(jax.vmap(host.init))(seed_keys(cfg))

        def run(rs, c):
            rs, m = host.chunk(rs, c)
            return rs

    t0 = time.perf_counter()
    rs = run(rs, 0)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in range(1, chunks + 1):
        rs = run(rs, c)
    dt = time.perf_counter() - t0
    steps = chunks * cfg.experiment.eval_every * seeds
    return {
        "algo": algo,
        "task": f"{task} ({simulator})" if simulator else task,
        "seeds": seeds,
        "num_envs": cfg.experiment.num_envs,
        "rollout_steps": cfg.algo.rollout_steps,
        "env_steps_per_s": steps / dt,
        "first_chunk_s": first,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--algos", default=",".join(ALGOS))
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--seeds", default="1,8")
    p.add_argument("--chunks", type=int, default=3)
    p.add_argument("--simulators", default="", help="MA-MuJoCo's task.simulator values to measure (a list)")
    p.add_argument("--one", action="store_true", help="measure one configuration here, print JSON")
    p.add_argument("--out", default=str(HERE / "throughput.md"))
    ns = p.parse_args()
    if ns.one:
        print(json.dumps(measure(ns.algos, ns.tasks, int(ns.seeds), ns.chunks, ns.simulators)))
        return
    rows, failed = [], []
    for task in ns.tasks.split(","):
        sims = ns.simulators.split(",") if ns.simulators and task.startswith("mamujoco/") else [""]
        for sim in sims:
            for seeds in (int(s) for s in ns.seeds.split(",")):
                for algo in ns.algos.split(","):
                    args = ["--one", "--algos", algo, "--tasks", task, "--seeds", str(seeds)]
                    args += ["--simulators", sim, "--chunks", str(ns.chunks)]
                    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
                    if out.returncode:
                        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
                        what = f"{algo} on {task} {sim} ({seeds} seeds)"
                        failed.append(f"{what}: exit {out.returncode}: {tail}")
                        print(failed[-1], file=sys.stderr, flush=True)
                    else:
                        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                        print(rows[-1], flush=True)
                    write_table(Path(ns.out), rows, failed, ns.chunks)  # a stopped run keeps its rows
    print(Path(ns.out).read_text())
    if failed:
        raise SystemExit(1)


def command_args() -> str:
    """This run's arguments as written in the table's header (``--out`` left out)."""
    args, skip = [], False
    for a in sys.argv[1:]:
        if skip or a.startswith("--out"):
            skip = a == "--out"
            continue
        args.append(a)
    return "".join(f" {a}" for a in args)


def write_table(path: Path, rows: list[dict], failed: list[str], chunks: int) -> None:
    import jax

    lines = [
        "# On-policy throughput: IPPO, MAPPO, HAPPO, env-steps/s of full training",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} ({jax.default_backend()}); measured {time.strftime('%Y-%m-%d')} by "
        f"`python -m benchmarks.onpolicy.throughput{command_args()}`. One fresh process per row; each at the "
        f"task's published settings; {chunks} timed chunks of 2 iterations after a first chunk that includes "
        "compilation; a chunk includes a 2-episode greedy evaluation. env-steps/s counts all seeds.",
        "",
        "| task | algo | seeds | envs x steps per iteration | env-steps/s (all seeds) | ratio to 1 seed | "
        "first chunk incl. compile (s) | peak RSS (GiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    one = {(r["task"], r["algo"]): r["env_steps_per_s"] for r in rows if r["seeds"] == 1}
    for r in rows:
        ratio = (
            r["env_steps_per_s"] / one[(r["task"], r["algo"])]
            if (r["task"], r["algo"]) in one
            else float("nan")
        )
        lines.append(
            f"| {r['task']} | {r['algo']} | {r['seeds']} | {r['num_envs']} x {r['rollout_steps']} | "
            f"{r['env_steps_per_s']:,.0f} | {ratio:.2f}x | {r['first_chunk_s']:.1f} | "
            f"{r['peak_rss_gib']:.2f} |"
        )
    lines += ["", *(f"- failed: {f}" for f in failed)] if failed else []
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
