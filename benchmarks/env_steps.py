"""Raw env throughput: jitted env steps per second of B vmapped envs (no learner).

Each step samples a uniformly random *available* action per agent (``env.avail_actions``, so masks are
part of the cost) and calls ``env.step`` (with auto-reset) under ``jax.vmap`` inside ``lax.scan``. The
first call (compilation) is timed separately; steps/s counts the steps of all B envs.

    python -m benchmarks.env_steps --task smax/3m --envs 64        # prints JSON
"""

from __future__ import annotations

import argparse
import json
import time


def measure(task: str, num_envs: int, steps: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    from marlow import envs

    env = envs.make(task)
    agents = env.spec.agents

    def one_step(state, key):
        k_act, k_env = jax.random.split(key)
        masks = jax.vmap(env.avail_actions)(state)
        keys = jax.random.split(k_act, len(agents))
        actions = {
            a: jax.random.categorical(k, jnp.where(masks[a], 0.0, -jnp.inf)).astype(jnp.int32)
            for a, k in zip(agents, keys, strict=True)
        }
        _, state, rewards, _, _ = jax.vmap(env.step)(jax.random.split(k_env, num_envs), state, actions)
        return state, rewards[agents[0]].sum()

    @jax.jit
    def run(state, key):
        state, r = jax.lax.scan(one_step, state, jax.random.split(key, steps))
        return state, r.sum()

    _, state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), num_envs))
    t0 = time.perf_counter()
    state, r = jax.block_until_ready(run(state, jax.random.PRNGKey(1)))
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        state, r = jax.block_until_ready(run(state, jax.random.PRNGKey(2 + i)))
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {
        "task": task,
        "num_envs": num_envs,
        "steps_per_call": steps,
        "compile_and_first_call_s": round(compile_s, 2),
        "best_call_s": round(best, 4),
        "env_steps_per_s": round(num_envs * steps / best),
        "backend": jax.default_backend(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="smax/3m")
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200, help="scan length of one jitted call")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure(args.task, args.envs, args.steps, args.repeats)))


if __name__ == "__main__":
    main()
