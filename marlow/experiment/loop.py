"""The training loop of every learner (:mod:`marlow.algos.learner`): collect, learn, evaluate.

One *iteration* = ``learner.steps_per_iter`` vectorised steps of the ``num_envs`` envs with the learner's
behaviour policy (:func:`marlow.rollout.collect`), then ``learner.learn`` on that trajectory (an
off-policy learner stores it and updates from its replay buffer once warmed up; an on-policy learner
computes advantages and runs its minibatch epochs). One *chunk* = ``eval_every / iteration_steps``
iterations followed by a greedy evaluation.

:meth:`Loop.chunk` is a pure function of the runner state, ``jit``-ed and ``vmap``-ed over seeds by the
runner, so for JAX envs the host sees the program only between evaluations. For host envs
(:mod:`marlow.experiment.host`) only the collection is a Python loop: the same :meth:`Loop.learn`
(counters, training returns, ``learner.learn``) and :func:`summarize` run jitted on the trajectory it
collects, so there is one schedule.

``step`` (env steps per seed) is derived from the iteration counter, which is not batched over seeds, so
under ``vmap`` a learner's ``lax.cond`` on it (warm-up, "retrain the world model every n steps") stays a
real branch instead of becoming a select of both branches.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from marlow import rollout
from marlow.envs.api import EnvSpec


@struct.dataclass
class RunnerState:
    learner: Any
    env: rollout.EnvCarry | None  # [num_envs] env states and observations (None for host envs)
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
    def __init__(self, env, learner, exp):
        self.env, self.learner, self.spec = env, learner, env.spec
        self.num_envs = exp.num_envs
        self.steps_per_iter = learner.steps_per_iter
        self.iteration_steps = self.steps_per_iter * self.num_envs  # env steps per iteration and seed
        self.iters_per_chunk = exp.eval_every // self.iteration_steps
        self.eval_episodes = exp.eval_episodes

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> RunnerState:
        k_algo, k_env, k_eval, key = jax.random.split(key, 4)
        env = rollout.reset(self.env, k_env, self.num_envs) if self.env.is_jax else None
        return RunnerState(
            learner=self.learner.init(k_algo),
            env=env,
            key=key,
            eval_key=k_eval,
            ep_return=jnp.zeros(self.num_envs),
            env_steps=jnp.int32(0),
            episodes=jnp.int32(0),
            evals=jnp.int32(0),
        )

    # ---- one iteration: learn from what was collected (JAX and host envs) --------------------------
    def learn(self, rs: RunnerState, traj: rollout.Trajectory, it) -> tuple[RunnerState, dict]:
        """Counters and training returns of the collected ``traj`` ``[T, E]``, then ``learner.learn`` at
        ``step = (it + 1) * iteration_steps``. Returns the state and this iteration's sums for
        :func:`summarize`. ``it`` must not be batched over seeds."""

        def track(ep, inp):
            r, done = inp
            ep = ep + team_reward(self.spec, r)
            finished = jnp.sum(jnp.where(done, ep, 0.0)), jnp.sum(done)
            return jnp.where(done, 0.0, ep), finished

        ep_return, (ret, cnt) = jax.lax.scan(track, rs.ep_return, (traj.rewards, traj.done))
        step = ((jnp.asarray(it, jnp.int32) + 1) * self.iteration_steps).astype(jnp.int32)
        ready = self.learner.ready(step)
        key, k_learn = jax.lax.cond(ready, lambda k: tuple(jax.random.split(k)), lambda k: (k, k), rs.key)
        learner_state, metrics = self.learner.learn(rs.learner, traj, step, k_learn)
        metrics = dict(metrics)
        updates = metrics.pop("updates")
        learned = (updates > 0).astype(jnp.float32)
        rs = rs.replace(
            learner=learner_state,
            key=key,
            ep_return=ep_return,
            env_steps=rs.env_steps + self.iteration_steps,
            episodes=rs.episodes + jnp.sum(cnt).astype(jnp.int32),
        )
        sums = {
            "metrics": jax.tree.map(lambda v: v * learned, metrics),
            "learned": learned,
            "updates": updates,
            "ret_sum": jnp.sum(ret),
            "ret_cnt": jnp.sum(cnt).astype(jnp.float32),
        }
        return rs, sums

    def zero_sums(self, rs: RunnerState) -> dict:
        """Zeros shaped like :meth:`learn`'s sums (the start of a chunk's accumulation)."""
        traj = dummy_trajectory(self.spec, self.learner, rs.learner, self.steps_per_iter, self.num_envs)
        shapes = jax.eval_shape(lambda r: self.learn(r, traj, jnp.int32(0))[1], rs)
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def chunk_metric_names(self, rs_batched: RunnerState) -> list[str]:
        """Names of the non-evaluation metrics of :meth:`chunk` (for a seed-batched state)."""
        sums = self.zero_sums(jax.tree.map(lambda x: x[0], rs_batched))
        return [f"loss/{k}" for k in sums["metrics"]] + ["train/return", "updates"]

    # ---- JAX envs: a whole chunk in one program ----------------------------------------------------
    def _iteration(self, carry, it):
        rs, sums = carry
        env_carry, key, traj = rollout.collect(
            self.env, self.learner.policy(rs.learner), rs.env, rs.key, self.steps_per_iter
        )
        rs, s = self.learn(rs.replace(env=env_carry, key=key), traj, it)
        return (rs, jax.tree.map(jnp.add, sums, s)), None

    def chunk(self, rs: RunnerState, chunk_index: jax.Array) -> tuple[RunnerState, dict]:
        """``iters_per_chunk`` iterations then an evaluation. ``chunk_index`` must not be batched."""
        first_iter = chunk_index * self.iters_per_chunk
        (rs, sums), _ = jax.lax.scan(
            self._iteration, (rs, self.zero_sums(rs)), first_iter + jnp.arange(self.iters_per_chunk)
        )
        metrics = summarize(sums)
        rs, ev = self.evaluate(rs)
        metrics.update(ev)
        metrics["env_steps"] = rs.env_steps
        metrics["episodes"] = rs.episodes
        metrics["agent_interactions"] = self.interactions(rs)
        return rs, metrics

    def interactions(self, rs: RunnerState) -> jax.Array:
        return agent_interactions(self.spec, self.learner.communications(rs.learner), rs.env_steps)

    # ---- evaluation -------------------------------------------------------------------------------
    def evaluate(self, rs: RunnerState) -> tuple[RunnerState, dict]:
        """``eval_episodes`` greedy episodes on envs seeded from a separate key stream."""
        key = jax.random.fold_in(rs.eval_key, rs.evals)
        returns = evaluate_policy(
            self.env, lambda obs, k: self.learner.act(rs.learner, obs, k, False), key, self.eval_episodes
        )
        returns.update(diagnostics(self.learner, rs.learner))
        return rs.replace(evals=rs.evals + 1), returns


def summarize(sums: dict) -> dict:
    """A chunk's metrics from its iterations' summed :meth:`Loop.learn` sums: losses averaged over the
    iterations that learned (NaN when none did), the mean return of the training episodes that ended,
    and the number of updates applied."""
    cnt = sums["learned"]
    metrics = {
        f"loss/{k}": jnp.where(cnt > 0, v / jnp.maximum(cnt, 1.0), jnp.nan)
        for k, v in sums["metrics"].items()
    }
    n = sums["ret_cnt"]
    metrics["train/return"] = jnp.where(n > 0, sums["ret_sum"] / jnp.maximum(n, 1.0), jnp.nan)
    metrics["updates"] = sums["updates"]
    return metrics


def dummy_trajectory(spec: EnvSpec, learner, learner_state, steps: int, num_envs: int):
    """Zeros shaped like the trajectory ``collect`` gives the learner (for shape-only tracing)."""
    obs = {a: jnp.zeros((num_envs, spec.obs_dim(a))) for a in spec.agents}
    _, actions, extras = jax.eval_shape(
        lambda s, o: learner.policy(s)(None, o, jnp.int32(0), jax.random.PRNGKey(0)), learner_state, obs
    )

    def tile(x):
        return jnp.zeros((steps,) + tuple(x.shape), x.dtype)

    flags = jnp.zeros((steps, num_envs), jnp.bool_)
    return rollout.Trajectory(
        obs=jax.tree.map(tile, obs),
        actions=jax.tree.map(tile, actions),
        rewards={a: jnp.zeros((steps, num_envs)) for a in spec.agents},
        next_obs=jax.tree.map(tile, obs),
        terminated=flags,
        truncated=flags,
        valid=~flags,
        extras=jax.tree.map(tile, extras),
    )


def agent_interactions(spec: EnvSpec, communications, env_steps) -> jax.Array:
    """The AORPO paper's *normalised agent interactions* (Sec. 6.2, Fig. 2; Appendix F): the number of
    times the agent group completes a full interaction (every agent takes an action), divided by the
    episode length (25 in MPE). Every real env step is one full interaction; an algorithm that queries
    real agents inside model rollouts reports the count of those single-agent queries with the optional
    ``communications(state)``, each counting 1/N of a full interaction (N agents; ours: the paper does
    not weigh them, the reference code weighs each agent by its input and action size)."""
    full = env_steps.astype(jnp.float32) + jnp.asarray(communications, jnp.float32) / spec.num_agents
    return full / spec.episode_length


def diagnostics(learner, learner_state) -> dict:
    """The learner's ``diagnostics(state)`` scalars as ``diag/<name>`` metrics."""
    return {f"diag/{k}": v for k, v in learner.diagnostics(learner_state).items()}


def evaluate_policy(env, policy, key: jax.Array, episodes: int) -> dict:
    """Run ``episodes`` parallel episodes of ``env.spec.episode_length`` steps with ``policy(obs, key)``
    and return team/per-agent/per-team returns (means over episodes) and each episode's team return."""
    return return_metrics(env.spec, episode_returns(env, policy, key, episodes))


def episode_returns(env, policy, key: jax.Array, episodes: int) -> dict:
    """Each agent's undiscounted return in ``episodes`` parallel episodes of ``policy(obs, key)``:
    ``{agent: [episodes]}``. The envs are reset with ``split(k_reset, episodes)`` and step ``t`` uses
    ``split(k_run, episode_length)[t]`` (``k_reset, k_run = split(key)``), so an evaluation's keys depend on
    ``key`` only; the rewards after an episode's end are not counted."""
    spec = env.spec
    k_reset, k_run = jax.random.split(key)
    carry = rollout.reset(env, k_reset, episodes)
    T = spec.episode_length
    _, _, traj = rollout.collect(
        env, rollout.stateless(policy), carry, jax.random.split(k_run, T), T, step_keys=True
    )
    alive = rollout.episode_mask(traj)
    return {a: jnp.sum(traj.rewards[a] * alive, axis=0) for a in spec.agents}


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
