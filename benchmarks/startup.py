"""Time to the first training step, cold and warm: ``marlow train`` as a user runs it, once with an empty
compilation cache (``compile_cache=<fresh directory>``), once again with the cache the first run filled
(warm: the whole programs load from marlow's program cache), and once with only JAX's compiled-program
layer of that cache (the ``programs/`` folder removed first: tracing and lowering run, compilation is
loaded), one process after the other in one run of this script, repeated; and ``marlow list``, cold
(an empty cache directory: the task table is built) and warm (read back).

    .venv/bin/python -m benchmarks.startup [--repeats 3] [--algos masac,mappo,aorpo]

Per process: the whole process's wall time measured here, and the run's own ``startup.json`` (seconds
from the process start to the first training step, and per program the tracing, lowering and compilation
seconds). Writes benchmarks/startup.md; runs go to a temporary directory.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARLOW = str(HERE.parent / ".venv" / "bin" / "marlow")
SHORT = ["progress=false"]
RUNS = {  # one short run per algorithm family, two chunks: the first chunk is the first training step
    # off-policy (the "short MASAC run"; learning starts after the warm-up, the update is compiled)
    "masac": ["algo=masac", "task=mpe/simple_spread", "total_steps=2000", "eval_every=1000", *SHORT],
    "maddpg": ["algo=maddpg", "task=mpe/simple_spread", "total_steps=2000", "eval_every=1000", *SHORT],
    # on-policy: shared actors, independent actors, sequential heterogeneous updates
    "mappo": ["algo=mappo", "task=mpe/simple_spread", "total_steps=4096", "eval_every=2048", *SHORT],
    "ippo": ["algo=ippo", "task=mpe/simple_spread", "total_steps=4096", "eval_every=2048", *SHORT],
    "happo": ["algo=happo", "task=mpe/simple_spread", "total_steps=8000", "eval_every=4000", *SHORT],
    # Teammate Lookahead: HAPPO with its team model and the lookahead update from the first iteration
    "la_happo": [
        *("algo=la_happo", "task=mpe/simple_spread", "total_steps=8000", "eval_every=4000"),
        *("la_warmup_steps=0", *SHORT),
    ],
    # maximum-entropy with an opponent model: the actor-critic and the tabular learner
    "rommeo_ac": [
        *("algo=rommeo_ac", "task=games/max_of_two_quadratics", "total_steps=2000", "eval_every=1000"),
        *SHORT,
    ],
    "rommeo_q": [
        *("algo=rommeo_q", "task=games/climbing", "num_envs=1", "total_steps=2000", "eval_every=1000"),
        *SHORT,
    ],
    # model-based: ensemble dynamics, opponent models and rollouts; the world-model learners (small preset)
    "aorpo": ["algo=aorpo", "task=mpe/simple_spread", "total_steps=2000", "eval_every=1000", *SHORT],
    "mamba": ["algo=mamba", "task=smax/3m", "preset=small", "total_steps=2000", "eval_every=1000", *SHORT],
    "mag": ["algo=mag", "task=smax/3m", "preset=small", "total_steps=2000", "eval_every=1000", *SHORT],
}
PROGRAMS = ("init", "chunk")  # the chunk program also makes the step-0 evaluation
KINDS = ("cold", "warm", "jax_only")
KIND_LABEL = {"cold": "cold", "warm": "warm", "jax_only": "warm, JAX's layer only"}
STAGES = ("trace", "lower", "compile", "load")


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"startup: {' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - t


def one_run(args: list[str], cache: Path, run_dir: Path) -> dict:
    env = dict(os.environ)
    env.pop("MARLOW_COMPILE_CACHE", None)
    wall = timed([MARLOW, "train", *args, f"run_dir={run_dir}", f"compile_cache={cache}"], env)
    record = json.loads((run_dir / "startup.json").read_text())
    with open(run_dir / "metrics.csv", newline="") as f:
        chunks = [r for r in csv.DictReader(f) if r["seed"] == "0" and int(r["env_steps"]) > 0]
    # the chunks' own clocks: the first one (its first call) and the last one's env steps per second
    first_chunk, steady = float(chunks[0]["wall_time"]), float(chunks[-1]["steps_per_s"])
    learned = float(chunks[-1]["updates"]) > 0  # else the chunks were the learner's warm-up only
    return {
        "process_s": wall,
        "first_chunk_s": first_chunk,
        "steady_sps": steady,
        "learned": learned,
        **record,
    }


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--algos", default=",".join(RUNS))
    args = p.parse_args()
    algos = args.algos.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="marlow-startup-"))
    list_s = []  # (cold, warm): an empty cache directory builds the task table, the second call reads it
    for r in range(args.repeats):
        env = dict(os.environ, MARLOW_COMPILE_CACHE=str(tmp / f"list-cache-{r}"))
        list_s.append((timed([MARLOW, "list"], env), timed([MARLOW, "list"], env)))
    results: dict[str, dict[str, list[dict]]] = {a: {k: [] for k in KINDS} for a in algos}
    for r in range(args.repeats):
        for algo in algos:
            cache = tmp / f"cache-{algo}-{r}"  # empty: a cold start
            for kind in KINDS:
                if kind == "jax_only":
                    shutil.rmtree(cache / "programs")
                res = one_run(RUNS[algo], cache, tmp / f"{algo}-{r}-{kind}")
                results[algo][kind].append(res)
                first = res["since_process_start_s"]["first_step"]
                print(
                    f"{algo} {kind} {r}: first step {first:.1f} s, process {res['process_s']:.1f} s",
                    flush=True,
                )
    write(results, list_s, args.repeats)


def _first(kinds: dict, kind: str) -> float:
    return median([r["since_process_start_s"]["first_step"] for r in kinds[kind]])


def _cold_share(kinds: dict) -> float:
    """The fraction of a cold start's time to the first step spent waiting for XLA's compilation: from
    the end of set-up to the first step, less Python's tracing and lowering (the programs compile side by
    side in two threads, so their own compile seconds overlap and may sum to more than that)."""
    waits = [
        r["since_process_start_s"]["first_step"]
        - r["since_process_start_s"]["build"]
        - sum(v for k, v in r["phases_s"].items() if k.endswith(("_trace", "_lower")))
        for r in kinds["cold"]
    ]
    return median(waits) / _first(kinds, "cold")


def write(results: dict, list_s: list[tuple[float, float]], repeats: int) -> None:
    lines = [
        "# Time to the first training step, cold and warm compilation cache",
        "",
        f"`.venv/bin/python -m benchmarks.startup --repeats {repeats} --algos {','.join(results)}`",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {repeats} "
        f"round{'s' if repeats != 1 else ''} per algorithm, each one cold process (empty cache directory), "
        "one warm process (the cache the cold "
        "one filled: every program loads whole from the program cache) and one with JAX's layer only (the "
        "program cache's folder removed: tracing and lowering run, XLA's compilation loads from JAX's "
        "cache), all one after the other in one run; medians. First step: seconds from the "
        "process start to the first training chunk (the run's startup.json). Process: the whole "
        "`marlow train` command, to exit (including the training chunks, the report and its plot). "
        "First chunk: the first training chunk's own seconds (its first call); steady env-steps/s: the "
        "last chunk's env steps per second (one seed; short runs, so a rough rate: "
        "benchmarks/throughput.py measures steady state; (warm-up): the run ends inside the learner's "
        "random warm-up, so its chunks made no update, but the update is compiled all the same). "
        f"`marlow list`: {median([c for c, _ in list_s]):.2f} s cold (every algorithm imported and every "
        f"task built for its table), {median([w for _, w in list_s]):.2f} s warm (the table read from the "
        "cache directory, no JAX imported).",
        "",
        "| run | first step (s): cold | warm | warm / cold | JAX's layer only | its / cold "
        "| process (s): cold | warm | JAX's layer only | first chunk (s) | steady env-steps/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for algo, kinds in results.items():
        first = {k: _first(kinds, k) for k in KINDS}
        proc = {k: median([r["process_s"] for r in kinds[k]]) for k in KINDS}
        args = " ".join(a for a in RUNS[algo] if a not in SHORT)
        c, w, j = (first[k] for k in KINDS)
        runs = [r for k in KINDS for r in kinds[k]]  # the same program in every kind of start
        chunk1 = median([r["first_chunk_s"] for r in runs])
        sps = median([r["steady_sps"] for r in runs])
        mark = "" if all(r["learned"] for r in runs) else " (warm-up)"
        lines.append(
            f"| `{args}` | {c:.1f} | {w:.1f} | {w / c:.0%} | {j:.1f} | {j / c:.0%} | "
            + " | ".join(f"{proc[k]:.1f}" for k in KINDS)
            + f" | {chunk1:.2f} | {sps:,.0f}{mark} |"
        )
    ratio = {a: _first(k, "warm") / _first(k, "cold") for a, k in results.items()}
    share = {a: _cold_share(k) for a, k in results.items()}
    lo, hi = min(ratio, key=ratio.get), max(ratio, key=ratio.get)
    big = max(share, key=share.get)
    lines += [
        "",
        f"Reading: a warm start reaches the first training step in {ratio[lo]:.0%} ({lo}) to {ratio[hi]:.0%} "
        f"({hi}) of the cold start's time, {'within' if ratio[hi] <= 0.25 else 'not within'} the 25% "
        "target for every family. Cold, waiting for XLA's compilation is "
        f"{min(share.values()):.0%} to {max(share.values()):.0%} of the time to the first step ({big}: "
        f"{share[big]:.0%}), so the next cut of a cold start is a smaller program (fewer operations to "
        "compile), not a faster start-up around it; with JAX's layer only, Python's tracing and lowering are "
        "the largest part of what a warm start still pays.",
    ]
    lines += [
        "",
        "Where the seconds go (medians; trace: Python tracing to a jaxpr, lower: to StableHLO, compile: "
        "XLA's compilation (the two programs compile side by side in two threads, so these overlap), "
        "or with JAX's layer the load of the compiled program from it; load: the whole "
        "program from the program cache; -: the stage did not run; set-up: from the process start to the "
        "env and algorithm built, i.e. mostly Python's imports):",
        "",
        "| run | start | set-up | "
        + " | ".join(f"{p} trace / lower / compile / load" for p in PROGRAMS)
        + " |",
        "|---|---|---|" + "---|" * len(PROGRAMS),
    ]

    def stage(rs: list[dict], key: str) -> str:
        xs = [r["phases_s"][key] for r in rs if key in r["phases_s"]]
        return f"{median(xs):.2f}" if xs else "-"

    for algo, kinds in results.items():
        for kind in KINDS:
            rs = kinds[kind]
            setup = median([r["since_process_start_s"]["build"] for r in rs])
            cells = [" / ".join(stage(rs, f"{prog}_{s}") for s in STAGES) for prog in PROGRAMS]
            lines.append(f"| {algo} | {KIND_LABEL[kind]} | {setup:.2f} | " + " | ".join(cells) + " |")
    (HERE / "startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
