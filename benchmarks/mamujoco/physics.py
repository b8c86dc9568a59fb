"""How fast MA-MuJoCo can step here, and how far training is from it (issue "Time to result, part 2", step 1).

Side by side in one process, on one robot (default ``mamujoco/halfcheetah_2x3``), with random actions in
[-1, 1]:

- **reference**: Gymnasium-Robotics' own MaMuJoCo ``parallel_env`` stepped one env at a time from Python
  (``env.step(actions)`` with a reset when an episode ends): the issue's yardstick;
- **physics, one core**: the same robot's MuJoCo model advanced ``frame_skip`` physics steps per env step
  by ``mujoco.rollout`` (C, no Python per step) for ``B`` envs x ``T`` steps in one call, one thread: the
  cost of the physics alone, the bound of any env on one core;
- **physics, both cores**: the same with one thread per core;
- **one call per vectorised step**: ``mujoco.rollout`` called once per env step for all ``B`` envs with
  both threads, as a jitted loop calling the simulator once per vectorised step would (the per-call
  overhead on top of the physics);
- **training**: marlow's IPPO on the task (one seed, its task defaults), on the host loop
  (``task.simulator=gymnasium``) and in the jitted loop (``task.simulator=rollout``, the default since
  2026-12-08, :mod:`marlow.envs.mamujoco_rollout`), steady-state env-steps/s from its metrics (the
  chunks after the first, compilation excluded);
- **simulator=rollout alone**: that env stepped with random actions in a jitted scan, no learner.

    .venv/bin/python -m benchmarks.mamujoco.physics [--task mamujoco/halfcheetah_2x3] [--envs B]

Writes ``benchmarks/mamujoco/physics.md``: env-steps/s of each and its ratio to the reference. No
observations or rewards are computed in the physics rows (they cost little next to the physics: a few
gathers per agent), so those rows bound from above what an env without a Python step loop can reach.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def reference(task: str, steps: int) -> float:
    """Gymnasium-Robotics' parallel_env, random actions, one env, resets included: env-steps/s."""
    from marlow.envs.mamujoco import TASKS, _mamujoco, mujoco_compiler_warnings

    scenario, conf = TASKS[task.split("/", 1)[1]]
    if conf == "3x2":
        raise SystemExit("the reference needs one of Gymnasium-Robotics' own splits (2x3, 2x4, 4x2)")
    with mujoco_compiler_warnings():
        env = _mamujoco().parallel_env(scenario, conf)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    spaces = {a: env.action_space(a) for a in env.possible_agents}
    t0 = time.perf_counter()
    for _ in range(steps):
        acts = {a: rng.uniform(-1, 1, s.shape).astype(s.dtype) for a, s in spaces.items()}
        _, _, term, trunc, _ = env.step(acts)
        if any(term.values()) or any(trunc.values()):
            env.reset()
    return steps / (time.perf_counter() - t0)


def physics(task: str, envs: int, steps: int, threads: int, per_call: int) -> float:
    """``mujoco.rollout`` of ``envs`` copies of the task's robot for ``steps`` env steps (``frame_skip``
    physics steps each), ``per_call`` env steps per call, ``threads`` threads: env-steps/s."""
    import mujoco
    from mujoco import rollout

    from marlow.envs.mamujoco import TASKS, _mamujoco, mujoco_compiler_warnings

    scenario, conf = TASKS[task.split("/", 1)[1]]
    with mujoco_compiler_warnings():
        env = _mamujoco().parallel_env(scenario, "2x3" if conf == "3x2" and scenario != "Ant" else conf)
    inner = env.unwrapped.single_agent_env.unwrapped
    model, skip = inner.model, inner.frame_skip
    kind = mujoco.mjtState.mjSTATE_FULLPHYSICS
    data = mujoco.MjData(model)
    state = np.zeros((envs, mujoco.mj_stateSize(model, kind)))
    for i in range(envs):
        mujoco.mj_getState(model, data, state[i], kind)
    rng = np.random.default_rng(0)
    datas = [mujoco.MjData(model) for _ in range(threads)]
    with rollout.Rollout(nthread=threads) as r:
        calls = max(1, steps // per_call)
        ctrl = rng.uniform(-1, 1, (envs, per_call * skip, model.nu))
        r.rollout([model] * envs, datas, state, ctrl)  # warm-up
        t0 = time.perf_counter()
        for _ in range(calls):
            out, _ = r.rollout([model] * envs, datas, state, ctrl)
            state = out[:, -1]
        dt = time.perf_counter() - t0
    return calls * per_call * envs / dt


def env_alone(task: str, envs: int, steps: int) -> float:
    """``task.simulator=rollout`` stepped with random actions in a jitted scan of vmapped steps (auto-reset
    included): env-steps/s."""
    import jax

    from marlow import envs as registry

    env = registry.make(task, simulator="rollout")
    agents = env.spec.agents

    def body(state, key):
        keys = jax.random.split(key, len(agents) + 1)
        acts = {
            a: jax.random.uniform(k, (envs, *env.spec.act_space(a).shape), minval=-1, maxval=1)
            for a, k in zip(agents, keys[1:], strict=True)
        }
        _, state, rewards, _, _ = jax.vmap(env.step)(jax.random.split(keys[0], envs), state, acts)
        return state, rewards[agents[0]].mean()

    n = 500
    run = jax.jit(lambda s, k: jax.lax.scan(body, s, jax.random.split(k, n)))
    _, state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), envs))
    state, _ = jax.block_until_ready(run(state, jax.random.PRNGKey(1)))
    t0 = time.perf_counter()
    jax.block_until_ready(run(state, jax.random.PRNGKey(2)))
    return n * envs / (time.perf_counter() - t0)


def training(task: str, steps: int, simulator: str, seeds: int = 1) -> float:
    """marlow IPPO on ``task`` with ``task.simulator=<simulator>`` and ``seeds`` vmapped seeds: the
    steady-state env-steps/s of all seeds together, over its chunks after the first."""
    import marlow

    with tempfile.TemporaryDirectory() as tmp:
        cfg = marlow.config(
            "ippo", task, {"simulator": simulator}, total_steps=steps, eval_every=steps // 4,
            eval_episodes=1, num_seeds=seeds, progress=False, run_dir=str(Path(tmp) / "run"),
        )  # fmt: skip
        run = marlow.train(run_config=cfg)
        m = marlow.metrics(run)[0]
    rates = m["steps_per_s"][2:]  # the first row is before training, the second holds the compilation
    return seeds * float(np.median(rates[np.isfinite(rates)]))  # the logged rate is one seed's


def matmul_peak() -> float:
    """GFLOP/s of a jitted 1024 x 1024 float32 matmul (best of 20), the machine's practical peak."""
    import jax

    a = jax.random.normal(jax.random.PRNGKey(0), (1024, 1024))
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    best = min(_timed(f, a) for _ in range(20))
    return 2 * 1024**3 / best / 1e9


def _timed(f, a) -> float:
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(f(a))
    return time.perf_counter() - t0


def update_flops_per_step(task: str) -> float:
    """IPPO's FLOPs per env step at the task's settings: each agent's actor and critic MLP, forward and
    backward (3x the forward) over every sample in ``epochs`` epochs, plus the rollout's forward passes."""
    import marlow

    cfg = marlow.config("ippo", task)
    spec = marlow.build(cfg).env.spec
    hidden = list(cfg.algo.hidden)
    macs = 0
    for a in spec.agents:
        for out in (spec.act_space(a).flat_dim, 1):  # actor mean, critic value
            widths = [spec.obs_dim(a), *hidden, out]
            macs += sum(i * o for i, o in zip(widths[:-1], widths[1:], strict=True))
    return 2 * macs * (3 * cfg.algo.epochs + 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="mamujoco/halfcheetah_2x3")
    p.add_argument("--envs", type=int, default=0, help="B, the vectorised envs (default: IPPO's num_envs)")
    p.add_argument("--steps", type=int, default=20_000, help="env steps per physics measurement")
    p.add_argument("--train-steps", type=int, default=80_000)
    p.add_argument("--out", type=Path, default=HERE / "physics.md")
    ns = p.parse_args()
    import marlow

    B = ns.envs or marlow.config("ippo", ns.task).experiment.num_envs
    ref = reference(ns.task, ns.steps)
    one, two = (physics(ns.task, B, ns.steps, n, 100) for n in (1, 2))
    per_step = physics(ns.task, B, ns.steps, 2, 1)
    per_step_64 = physics(ns.task, 64, ns.steps, 2, 1)
    host, jitted = (training(ns.task, ns.train_steps, sim) for sim in ("gymnasium", "rollout"))
    four = training(
        ns.task, 48_000, "rollout", seeds=4
    )  # 4 x 48k env steps, an evaluation every 3 iterations
    rows = [
        ("reference: Gymnasium-Robotics parallel_env, 1 env, Python loop", ref),
        (f"physics, 1 core: mujoco.rollout, {B} envs x 100 steps per call", one),
        (f"physics, 2 cores: mujoco.rollout, {B} envs x 100 steps per call", two),
        (f"one call per vectorised step: mujoco.rollout, {B} envs x 1 step, 2 threads", per_step),
        ("one call per vectorised step: mujoco.rollout, 64 envs x 1 step, 2 threads", per_step_64),
        ("training: marlow IPPO, host loop (simulator=gymnasium), 1 seed", host),
        ("training: marlow IPPO, jitted loop (simulator=rollout), 1 seed", jitted),
        ("training: the same, 4 vmapped seeds (all seeds' env steps)", four),
        (f"simulator=rollout alone: {B} envs, random actions, jitted loop", env_alone(ns.task, B, ns.steps)),
    ]  # fmt: skip
    lines = [
        f"# MA-MuJoCo: the physics bound and where training stands ({ns.task})",
        "",
        f"`python -m benchmarks.mamujoco.physics --task {ns.task} --envs {B}`, one process, "
        f"{platform.machine()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}. Random actions; "
        "env-steps/s counts the steps of all envs. What each row measures: the script's docstring.",
        "",
        "| what | env-steps/s | x reference |",
        "|---|---|---|",
        *[f"| {name} | {rate:,.0f} | {rate / ref:.2f} |" for name, rate in rows],
    ]
    train, fast = rows[-4][1], rows[-3][1]
    peak, flops = matmul_peak(), update_flops_per_step(ns.task)
    share = 2.5 * ref / two
    lines += [
        "",
        "## Reading",
        "",
        f"- The issue's target, on-policy training at 2.5x the reference, is {2.5 * ref:,.0f} env-steps/s. "
        f"The physics alone on both cores runs at {two:,.0f} ({two / ref:.2f}x), so it does not rule the "
        f"target out, but at the target the physics takes {share:.0%} of both cores' time and the "
        f"policy's forward passes and the PPO update must fit in the other {1 - share:.0%}.",
        f"- Calling the simulator once per vectorised step for all {B} envs (a callback from the jitted "
        f"loop) reaches {per_step:,.0f} env-steps/s ({per_step / ref:.2f}x) with random actions and no "
        "learner: the per-call overhead costs "
        f"{(1 / per_step - 1 / two) * B * 1e6:,.0f} us per call here; more envs per call amortise it "
        f"({per_step_64:,.0f} with 64).",
        f"- Training on the host loop runs at {train:,.0f} env-steps/s ({train / ref:.2f}x the reference, "
        f"{train / two:.0%} of the two-core physics bound): it steps the {B} envs one at a time in Python on "
        "one core, then the policy, then the update, with nothing overlapped.",
        f"- With `task.simulator=rollout` (the env inside the jitted loop, one `mujoco.rollout` call per "
        f"vectorised step) the env alone runs at {rows[-1][1]:,.0f} env-steps/s and training at {fast:,.0f} "
        f"({fast / ref:.2f}x the reference, {fast / train:.2f}x the host loop): the learner's own time is "
        "now most of an iteration, the next thing to shrink. Four vmapped seeds train at "
        f"{four:,.0f} together ({four / fast:.2f}x one seed): the update's FLOPs grow with the seeds.",
        f"- The learner's own bound at these settings (the task's IPPO config, HARL's tuned values): "
        f"{flops / 1e6:.1f} MFLOP per env step (actor and critic of every agent, forward and backward over "
        f"every epoch), against a measured matmul peak of {peak:.0f} GFLOP/s on both cores: at most "
        f"{peak * 1e9 / flops:,.0f} env-steps/s even if the update ran at the peak and the env were free "
        f"({peak * 1e9 / flops / ref:.2f}x the reference). The 2.5x target is beyond this machine for these "
        "settings; training reaches "
        f"{fast / (peak * 1e9 / flops):.0%} of that update-only bound.",
    ]
    ns.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
