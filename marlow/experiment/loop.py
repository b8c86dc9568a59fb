"""The jitted training program for JAX envs.

One *iteration* = ``update_every / num_envs`` vectorised env steps with the exploring policy (stored in
the on-device replay buffer) followed by ``updates_per_step`` gradient updates, once the buffer holds
``warmup_steps`` transitions. One *chunk* = ``eval_every / update_every`` iterations followed by a
greedy evaluation; ``Loop.chunk`` is a pure function of the runner state and is ``jit``-ed and
``vmap``-ed over seeds by the runner, so the host only sees the program between evaluations (to log,
checkpoint and draw progress); there is no host round trip per env step or update.

The warm-up test depends only on the chunk/iteration counters, which are not batched over seeds, so
under ``vmap`` the ``lax.cond`` stays a real branch instead of becoming a select of both branches.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from marlow.buffers import replay
from marlow.envs.api import EnvSpec


@struct.dataclass
class RunnerState:
    algo: Any
    buffer: replay.ReplayBuffer
    env_state: Any  # [num_envs, ...]
    obs: dict  # [num_envs, obs_dim] per agent
    key: jax.Array
    eval_key: jax.Array
    ep_return: jax.Array  # [num_envs] running team return of the current training episodes
    env_steps: jax.Array
    episodes: jax.Array
    evals: jax.Array


def team_reward(spec: EnvSpec, rewards: dict) -> jax.Array:
    """Mean over agents of the step reward (the AORPO evaluation metric summed over time)."""
    return jnp.mean(jnp.stack([rewards[a] for a in spec.agents]), axis=0)


class Loop:
    def __init__(self, env, algo, exp, acfg):
        self.env, self.algo, self.spec = env, algo, env.spec
        self.num_envs = exp.num_envs
        self.steps_per_iter = acfg.update_every // exp.num_envs  # vectorised steps per iteration
        self.iters_per_chunk = exp.eval_every // acfg.update_every
        self.update_every = acfg.update_every
        self.updates_per_step = acfg.updates_per_step
        self.warmup = acfg.warmup_steps
        self.batch_size = acfg.batch_size
        self.eval_episodes = exp.eval_episodes
        self.capacity = acfg.buffer_size

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> RunnerState:
        k_algo, k_env, k_eval, key = jax.random.split(key, 4)
        obs, env_state = jax.vmap(self.env.reset)(jax.random.split(k_env, self.num_envs))
        algo_state = self.algo.init(k_algo)
        example = self._transition(
            jax.tree.map(lambda x: x[0], obs),
            jax.tree.map(lambda x: x[0], self.algo.act(algo_state, obs, k_algo, True)),
            {a: jnp.float32(0) for a in self.spec.agents},
            jax.tree.map(lambda x: x[0], obs),
            jnp.float32(0),
        )
        return RunnerState(
            algo=algo_state,
            buffer=replay.init(example, self.capacity),
            env_state=env_state,
            obs=obs,
            key=key,
            eval_key=k_eval,
            ep_return=jnp.zeros(self.num_envs),
            env_steps=jnp.int32(0),
            episodes=jnp.int32(0),
            evals=jnp.int32(0),
        )

    @staticmethod
    def _transition(obs, actions, rewards, next_obs, done):
        return {"obs": obs, "actions": actions, "rewards": rewards, "next_obs": next_obs, "done": done}

    # ---- collection -------------------------------------------------------------------------------
    def _env_step(self, carry, _):
        rs, ret_sum, ret_cnt = carry
        key, k_act, k_env = jax.random.split(rs.key, 3)
        actions = self.algo.act(rs.algo, rs.obs, k_act, True)
        obs, env_state, rewards, dones, infos = jax.vmap(self.env.step)(
            jax.random.split(k_env, self.num_envs), rs.env_state, actions
        )
        done = dones["__all__"]
        terminated = jnp.logical_and(done, jnp.logical_not(infos["truncated"])).astype(jnp.float32)
        trans = self._transition(rs.obs, actions, rewards, infos["terminal_obs"], terminated)
        ep_return = rs.ep_return + team_reward(self.spec, rewards)
        ret_sum = ret_sum + jnp.sum(jnp.where(done, ep_return, 0.0))
        ret_cnt = ret_cnt + jnp.sum(done)
        rs = rs.replace(
            key=key,
            obs=obs,
            env_state=env_state,
            ep_return=jnp.where(done, 0.0, ep_return),
            env_steps=rs.env_steps + self.num_envs,
            episodes=rs.episodes + jnp.sum(done).astype(jnp.int32),
        )
        return (rs, ret_sum, ret_cnt), trans

    def store(self, rs, trans):
        """Add a batch of transitions to the replay buffer and show them to the algorithm's optional
        ``observe`` hook (also during warm-up). ``rs`` is a RunnerState or the host loop's HostState."""
        algo_state = rs.algo
        if hasattr(self.algo, "observe"):
            algo_state = self.algo.observe(algo_state, trans)
        return rs.replace(buffer=replay.add(rs.buffer, trans), algo=algo_state)

    def updates(self, rs: RunnerState, step: jax.Array):
        """The algorithm's optional ``prepare`` (given the whole real buffer), then ``updates_per_step``
        updates on batches sampled from ``rs.buffer``; returns the new state and the metrics averaged
        over the updates (also used by the host loop). ``step``: env steps per seed done so far, the
        same for every seed (not batched under vmap, so an algorithm's ``lax.cond`` on it, e.g. "retrain
        the world model every n steps", stays a real branch)."""
        key, k_upd = jax.random.split(rs.key)
        algo_state, prep_metrics = rs.algo, {}
        if hasattr(self.algo, "prepare"):
            k_upd, k_prep = jax.random.split(k_upd)
            algo_state, prep_metrics = self.algo.prepare(algo_state, rs.buffer, k_prep, step)

        def one(carry, key):
            algo_state = carry
            batch = replay.sample(rs.buffer, key, self.batch_size)
            return self.algo.update(algo_state, batch, key)

        algo_state, metrics = jax.lax.scan(one, algo_state, jax.random.split(k_upd, self.updates_per_step))
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics.update(prep_metrics)
        return rs.replace(algo=algo_state, key=key), metrics

    def metric_shapes(self, rs: RunnerState):
        return jax.eval_shape(lambda r: self.updates(r, jnp.int32(0))[1], rs)

    def chunk_metric_names(self, rs_batched: RunnerState) -> list[str]:
        """Names of the non-evaluation metrics of :meth:`chunk` (for a seed-batched state)."""
        shapes = jax.eval_shape(
            lambda r: self.updates(jax.tree.map(lambda x: x[0], r), jnp.int32(0))[1], rs_batched
        )
        return [f"loss/{k}" for k in shapes] + ["train/return", "updates"]

    def _iteration(self, carry, it):
        rs, ret_sum, ret_cnt, m_sum, m_cnt = carry
        (rs, ret_sum, ret_cnt), trans = jax.lax.scan(
            self._env_step, (rs, ret_sum, ret_cnt), None, length=self.steps_per_iter
        )
        trans = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), trans)
        rs = self.store(rs, trans)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self.metric_shapes(rs))
        ready = (it + 1) * self.update_every >= self.warmup  # unbatched: a real branch under vmap
        step = ((it + 1) * self.update_every).astype(jnp.int32)
        rs, metrics = jax.lax.cond(ready, lambda r: self.updates(r, step), lambda r: (r, zeros), rs)
        m_sum = jax.tree.map(jnp.add, m_sum, metrics)
        return (rs, ret_sum, ret_cnt, m_sum, m_cnt + ready.astype(jnp.float32)), None

    def chunk(self, rs: RunnerState, chunk_index: jax.Array) -> tuple[RunnerState, dict]:
        """``iters_per_chunk`` iterations then an evaluation. ``chunk_index`` must not be batched."""
        first_iter = chunk_index * self.iters_per_chunk
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self.metric_shapes(rs))
        carry = (rs, jnp.float32(0), jnp.float32(0), zeros, jnp.float32(0))
        (rs, ret_sum, ret_cnt, m_sum, m_cnt), _ = jax.lax.scan(
            self._iteration, carry, first_iter + jnp.arange(self.iters_per_chunk)
        )
        metrics = {
            f"loss/{k}": jnp.where(m_cnt > 0, v / jnp.maximum(m_cnt, 1.0), jnp.nan) for k, v in m_sum.items()
        }
        metrics["train/return"] = jnp.where(ret_cnt > 0, ret_sum / jnp.maximum(ret_cnt, 1.0), jnp.nan)
        metrics["updates"] = m_cnt * self.updates_per_step
        rs, ev = self.evaluate(rs)
        metrics.update(ev)
        metrics["env_steps"] = rs.env_steps
        metrics["episodes"] = rs.episodes
        metrics["agent_interactions"] = agent_interactions(self.spec, self.algo, rs.algo, rs.env_steps)
        return rs, metrics

    # ---- evaluation -------------------------------------------------------------------------------
    def evaluate(self, rs: RunnerState) -> tuple[RunnerState, dict]:
        """``eval_episodes`` greedy episodes on envs seeded from a separate key stream."""
        key = jax.random.fold_in(rs.eval_key, rs.evals)
        returns = evaluate_policy(
            self.env, lambda obs, k: self.algo.act(rs.algo, obs, k, False), key, self.eval_episodes
        )
        returns.update(diagnostics(self.algo, rs.algo))
        return rs.replace(evals=rs.evals + 1), returns


def agent_interactions(spec: EnvSpec, algo, algo_state, env_steps) -> jax.Array:
    """The AORPO paper's *normalised agent interactions* (Sec. 6.2, Fig. 2; Appendix F): the number of
    times the agent group completes a full interaction (every agent takes an action), divided by the
    episode length (25 in MPE). Every real env step is one full interaction; an algorithm that queries
    real agents inside model rollouts reports the count of those single-agent queries with the optional
    ``communications(state)``, each counting 1/N of a full interaction (N agents; ours: the paper does
    not weigh them, the reference code weighs each agent by its input and action size)."""
    full = env_steps.astype(jnp.float32)
    if hasattr(algo, "communications"):
        full = full + algo.communications(algo_state).astype(jnp.float32) / spec.num_agents
    return full / spec.episode_length


def diagnostics(algo, algo_state) -> dict:
    """The algorithm's optional ``diagnostics(state)`` scalars as ``diag/<name>`` metrics."""
    if not hasattr(algo, "diagnostics"):
        return {}
    return {f"diag/{k}": v for k, v in algo.diagnostics(algo_state).items()}


def evaluate_policy(env, policy, key: jax.Array, episodes: int) -> dict:
    """Run ``episodes`` parallel episodes of ``env.spec.episode_length`` steps with ``policy(obs, key)``
    and return team/per-agent/per-team returns (means over episodes) and each episode's team return."""
    return return_metrics(env.spec, episode_returns(env, policy, key, episodes))


def episode_returns(env, policy, key: jax.Array, episodes: int) -> dict:
    """Each agent's undiscounted return in ``episodes`` parallel episodes of ``policy(obs, key)``:
    ``{agent: [episodes]}`` (:func:`evaluate_policy`'s episodes and keys)."""
    spec = env.spec
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset)(jax.random.split(k_reset, episodes))

    def step(carry, k):
        obs, state, alive = carry
        k_act, k_env = jax.random.split(k)
        actions = policy(obs, k_act)
        obs, state, rewards, dones, _ = jax.vmap(env.step)(jax.random.split(k_env, episodes), state, actions)
        r = {a: rewards[a] * alive for a in spec.agents}
        return (obs, state, alive * (1.0 - dones["__all__"])), r

    _, rewards = jax.lax.scan(
        step, (obs, state, jnp.ones(episodes)), jax.random.split(k_run, spec.episode_length)
    )
    return {a: jnp.sum(rewards[a], axis=0) for a in spec.agents}


def return_metrics(spec: EnvSpec, per_agent: dict) -> dict:
    """Evaluation metrics from each agent's episode returns (arrays ``[..., episodes]``): the team return
    (mean over agents) per episode and its mean, each agent's mean return and, in competitive tasks, each
    team's mean return. Shared by the JAX and the host loops."""
    team = jnp.mean(jnp.stack([per_agent[a] for a in spec.agents]), axis=0)
    out = {"eval/team_return": jnp.mean(team, axis=-1), "eval/episode_returns": team}
    for a in spec.agents:
        out[f"eval/return/{a}"] = jnp.mean(per_agent[a], axis=-1)
    if spec.competitive:
        for name, members in spec.teams:
            out[f"eval/team_return/{name}"] = jnp.mean(
                jnp.stack([per_agent[a] for a in members]), axis=(0, -1)
            )
    return out
