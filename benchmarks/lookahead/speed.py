"""LA-HAPPO's wall time per iteration against HAPPO's at the same settings, measured side by side in one run,
with a breakdown of LA-HAPPO's iteration (real collection, ego update, model training, lookahead rollouts
and update). Target (issue): at most 2x HAPPO's.

    .venv/bin/python -m benchmarks.lookahead.speed [--task mamujoco/halfcheetah_2x3] [--iters 6]
                                                   [--out benchmarks/lookahead/speed.md] [key=value ...]

Settings: the scaled protocol of benchmarks/lookahead/SCALED (below, shared with the MA-MuJoCo
reproduction), overridable with key=value pairs. Whole-iteration times come from two ``marlow train`` runs
(HAPPO, then LA-HAPPO; one seed; an evaluation of one episode every ``ITERS_PER_EVAL`` iterations, as in
both runs): the time between the first and the last evaluation row of metrics.csv divided by the
iterations between them (the first chunk, with compilation, is left out). The breakdown times each jitted
piece of LA-HAPPO's ``learn`` on one trajectory of the run's shape (median of 3 calls after compiling);
collection is HAPPO's iteration time minus HAPPO's jitted update, timed the same way.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import marlow
from marlow import envs, rollout
from marlow.algos import get_algo
from marlow.buffers import replay
from marlow.devices import configure_host_devices
from marlow.experiment.loop import dummy_trajectory
from marlow.schema.coerce import field_types, to_dict

HERE = Path(__file__).resolve().parent
# The scaled protocol (ours): the paper's Tables 4-5 HalfCheetah settings with 10 envs instead of 40, 100
# model steps per iteration instead of 2,000 and 200 lookahead rollouts of 20 steps instead of 4,000
# (the same ratio of model samples to real samples per round, 4000 / 16000 vs 4000 x 20 / 40 x 400).
SCALED = [
    "num_envs=10",
    "model_max_epochs=1",
    "model_term_steps=100",
    "la_rollouts=200",
]
# the timed LA-HAPPO run looks ahead from its first iteration (the protocol's warm-up is 50,000 steps)
TIMED = ["la_warmup_steps=0"]
ITERS_PER_EVAL = 2


def arm_args(algo: str, task: str, extra: list[str]) -> list[str]:
    """LA-HAPPO: its task defaults with SCALED and ``extra``; any other on-policy algorithm (HAPPO, MAPPO,
    IPPO, TAPPO): LA-HAPPO's resolved values of every key the two share, and the algorithm's own task
    defaults for the keys LA-HAPPO lacks (MAPPO's ``share_actor``, TAPPO's encoder)."""
    la = marlow.config(args=["algo=la_happo", f"task={task}", *SCALED, *extra])
    if algo == "la_happo":
        return [f"algo={algo}", f"task={task}", *SCALED, *extra]
    if algo == "la_happo_timed":
        return ["algo=la_happo", f"task={task}", *SCALED, *TIMED, *extra]
    keys = field_types(get_algo(algo).Config)
    shared = [f"{k}={_fmt(v)}" for k, v in to_dict(la.algo).items() if k in keys]
    return [f"algo={algo}", f"task={task}", f"num_envs={la.experiment.num_envs}", *shared]


def _fmt(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list | tuple):
        return ",".join(str(x) for x in v)
    return str(v)


def run_time(algo: str, task: str, iters: int, extra: list[str], work: Path) -> tuple[float, dict]:
    base = arm_args(algo, task, extra)
    cfg = marlow.config(args=base)
    per_iter = cfg.algo.rollout_steps * cfg.experiment.num_envs
    args = [
        *base,
        f"total_steps={per_iter * iters}",
        f"eval_every={per_iter * ITERS_PER_EVAL}",
        "eval_episodes=1",
        "progress=false",
        f"run_dir={work / algo}",
    ]
    run = marlow.train(run_config=marlow.config(args=args))
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    pts = [(int(r["env_steps"]), float(r["wall_time"])) for r in rows if int(r["env_steps"]) > 0]
    (s0, t0), (s1, t1) = pts[0], pts[-1]
    return (t1 - t0) / ((s1 - s0) / per_iter), {"per_iter_steps": per_iter, "cfg": cfg}


def timed(fn, *args, reps: int = 3) -> float:
    jax.block_until_ready(fn(*args))
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def breakdown(task: str, extra: list[str]) -> dict[str, float]:
    """Seconds of each jitted piece of one LA-HAPPO iteration and of HAPPO's update, on random data."""
    spec = envs.make(task).spec
    out = {}
    cfgs = {a: marlow.config(args=arm_args(a, task, extra)) for a in ("happo", "la_happo_timed")}
    num_envs = cfgs["happo"].experiment.num_envs
    happo = get_algo("happo").Algorithm(spec, cfgs["happo"].algo)
    la = get_algo("la_happo").Algorithm(spec, cfgs["la_happo_timed"].algo)
    for a in (happo, la):
        a.bind(num_envs, 10**7)
    key = jax.random.PRNGKey(0)
    state = la.init(key)
    traj = dummy_trajectory(spec, la, state, cfgs["la_happo_timed"].algo.rollout_steps, num_envs)
    noise = lambda x: jax.random.normal(key, x.shape, x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x  # noqa: E731
    traj = traj.replace(obs=jax.tree.map(noise, traj.obs), next_obs=jax.tree.map(noise, traj.next_obs))
    traj = traj.replace(actions=jax.tree.map(lambda x: jnp.tanh(noise(x)), traj.actions))
    traj = traj.replace(extras=jax.tree.map(lambda x: x - 1.0, traj.extras))
    step = 10**6  # past the warm-up
    h_state = happo.init(key)
    out["HAPPO update"] = timed(jax.jit(happo.learn), h_state, traj, step, key)
    out["ego update (V-trace HAPPO)"] = timed(jax.jit(la.ego.learn), state.ego, traj, step, key)
    trans = rollout.transitions(traj)
    buf = replay.add(state.buf, trans)
    for _ in range(10):  # a buffer of several iterations
        buf = replay.add(buf, trans)
    out["model training"] = timed(jax.jit(la.model.train), state.model, buf, key)

    def look(ego, opt, model, buf, k):
        return la.lookahead(ego, opt, la.model_env(model), buf, step, k)

    out["lookahead rollouts + update"] = timed(jax.jit(look), state.ego, state.la.opt, state.model, buf, key)
    out["whole learn (jitted)"] = timed(jax.jit(la.learn), state, traj, step, key)
    return out


def main() -> None:
    configure_host_devices()
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="mamujoco/halfcheetah_2x3")
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--out", default=str(HERE / "speed.md"))
    ns, extra = p.parse_known_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        t_happo, info = run_time("happo", ns.task, ns.iters, extra, work)
        t_la, _ = run_time("la_happo_timed", ns.task, ns.iters, extra, work)
    parts = breakdown(ns.task, extra)
    collect = t_happo - parts["HAPPO update"]
    lines = [
        f"# LA-HAPPO vs HAPPO: wall time per iteration on {ns.task}",
        "",
        f"`benchmarks/lookahead/speed.py` (one seed, {info['per_iter_steps']} env steps per iteration; "
        f"settings: the task's `la_happo` defaults with {' '.join(SCALED + extra)}, and "
        f"{' '.join(TIMED)} so that every timed iteration looks ahead; HAPPO at the same values of every key "
        "they share; MA-MuJoCo's default simulator, `task.simulator=rollout`). Measured side by side in one "
        "run on this machine (2 CPU cores).",
        "",
        "| | seconds per iteration |",
        "|---|---|",
        f"| HAPPO (whole iteration, from its run) | {t_happo:.2f} |",
        f"| LA-HAPPO (whole iteration, from its run) | {t_la:.2f} |",
        f"| **ratio LA-HAPPO / HAPPO** | **{t_la / t_happo:.2f}** |",
        "",
        "Breakdown (each jitted piece timed alone on data of the run's shape; collection = HAPPO's iteration "
        "minus HAPPO's update):",
        "",
        "| piece | seconds |",
        "|---|---|",
        f"| real collection (host MuJoCo + the jitted policy) | {collect:.2f} |",
        *(f"| {k} | {v:.2f} |" for k, v in parts.items()),
        "",
    ]
    Path(ns.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
